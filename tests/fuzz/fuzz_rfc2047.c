/*
 * fuzz_rfc2047: the decoders of common/mime_decode.c: RFC 2047 encoded
 * words (rfc2047_decode), the base64 and quoted-printable transfer
 * encodings (mime_transfer_decode), charset conversion through iconv
 * (mime_charset_to_utf8) and the case-insensitive UTF-8 search
 * (mime_utf8_contains).
 *
 * Input: "<charset>\n<data>" when the first line is short, else <data>
 * alone; a second charset is picked from a table of the ones mail uses.
 *
 * Invariants: the output of rfc2047_decode and mime_charset_to_utf8 is
 * always valid UTF-8, and every output string is NUL-terminated; text without "=?" and valid UTF-8 data in UTF-8
 * pass unchanged; text encoded by the target itself as B and Q encoded
 * words (also split in two adjacent words at any octet, even inside a
 * character) decodes to the same text; data base64- or QP-encoded by the
 * target decodes back to itself; decoding arbitrary data stays within the
 * encodings' size bounds; an unknown encoding is the identity; a text
 * contains itself, its middle and its ASCII upper-cased form.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime_decode.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_rfc2047: invariant broken: %s\n", what);
		abort();
	}
}

/* Strict UTF-8: shortest form, no surrogates, at most U+10FFFF. */
static bool valid_utf8(const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned char lo = 0x80, hi = 0xBF;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			n = 2;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 3;
			if (c == 0xE0)
				lo = 0xA0;
			if (c == 0xED)
				hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 4;
			if (c == 0xF0)
				lo = 0x90;
			if (c == 0xF4)
				hi = 0x8F;
		} else {
			return false;
		}
		if (len - i < n || s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t k = 2; k < n; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xBF)
				return false;
		i += n;
	}
	return true;
}

/* A struct str's text is NUL-terminated whenever it has a buffer:
 * str_c() callers rely on it. */
static void check_terminated(const struct str *s, const char *who)
{
	if (s->data != NULL && s->data[s->len] != '\0') {
		fprintf(stderr, "fuzz_rfc2047: %s: output not terminated\n", who);
		abort();
	}
}

static bool same(const struct str *s, const char *p, size_t len)
{
	return s->len == len && (len == 0 || memcmp(s->data, p, len) == 0);
}

/* ---- encoders of our own ---- */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64_encode(const char *p, size_t len, bool lines,
			  struct str *out)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t col = 0;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)s[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)s[i + 1] << 8;
		if (i + 2 < len)
			v |= s[i + 2];
		char q[4] = { b64[v >> 18 & 63], b64[v >> 12 & 63],
			      i + 1 < len ? b64[v >> 6 & 63] : '=',
			      i + 2 < len ? b64[v & 63] : '=' };
		str_append_n(out, q, 4);
		col += 4;
		if (lines && col >= 76) {
			str_append(out, "\r\n");
			col = 0;
		}
	}
}

/* Quoted-printable with everything but letters and digits as =XX, soft
 * breaks every 60 columns. */
static void qp_encode(const char *p, size_t len, struct str *out)
{
	size_t col = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9')) {
			str_append_c(out, (char)c);
			col++;
		} else {
			str_printf(out, "=%02X", c);
			col += 3;
		}
		if (col >= 60) {
			str_append(out, i % 2 ? "=\r\n" : "= \t\n");
			col = 0;
		}
	}
}

/* Q encoding (RFC 2047 4.2): letters and digits as they are. */
static void q_encode(const char *p, size_t len, struct str *out)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9'))
			str_append_c(out, (char)c);
		else if (c == ' ')
			str_append_c(out, '_');
		else
			str_printf(out, "=%02X", c);
	}
}

/* ---- the checks ---- */

static void check_transfer(const char *data, size_t len)
{
	struct str enc = STR_INIT, dec = STR_INIT;

	/* arbitrary input: bounded output */
	mime_transfer_decode("base64", data, len, &dec);
	check_terminated(&dec, "base64");
	check(dec.len <= len / 4 * 3 + 3, "base64 output too long");
	str_clear(&dec);
	mime_transfer_decode(" Quoted-Printable ", data, len, &dec);
	check_terminated(&dec, "quoted-printable");
	check(dec.len <= len, "QP output too long");
	str_clear(&dec);
	mime_transfer_decode("8bit", data, len, &dec);
	check(same(&dec, data, len), "8bit is not the identity");
	str_clear(&dec);
	mime_transfer_decode(NULL, data, len, &dec);
	check(same(&dec, data, len), "no encoding is not the identity");
	str_clear(&dec);

	/* round trips */
	base64_encode(data, len, true, &enc);
	mime_transfer_decode("BASE64", enc.data, enc.len, &dec);
	check(same(&dec, data, len), "base64 round trip");
	str_clear(&enc);
	str_clear(&dec);
	qp_encode(data, len, &enc);
	mime_transfer_decode("quoted-printable", enc.data, enc.len, &dec);
	check(same(&dec, data, len), "QP round trip");
	str_free(&enc);
	str_free(&dec);
}

static void check_contains(const char *s, size_t len)
{
	check(mime_utf8_contains(s, len, s, len), "text does not contain itself");
	check(mime_utf8_contains(s, len, "", 0), "empty needle");
	if (len == 0)
		return;
	/* the middle third, cut at character boundaries */
	size_t a = len / 3, b = len - len / 3;
	while (a > 0 && ((unsigned char)s[a] & 0xC0) == 0x80)
		a--;
	while (b < len && ((unsigned char)s[b] & 0xC0) == 0x80)
		b++;
	if (a < b)
		check(mime_utf8_contains(s, len, s + a, b - a),
		      "text does not contain its middle");
	char *up = malloc(len);
	for (size_t i = 0; i < len; i++)
		up[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) : s[i];
	check(mime_utf8_contains(up, len, s, len) &&
	      mime_utf8_contains(s, len, up, len),
	      "ASCII case not ignored");
	free(up);
}

/* text (valid UTF-8) as encoded words in charset UTF-8. */
static void check_words(const char *text, size_t len)
{
	struct str hdr = STR_INIT, out = STR_INIT;

	str_append(&hdr, "Subject: =?UTF-8?B?");
	base64_encode(text, len, false, &hdr);
	str_append(&hdr, "?= tail");
	rfc2047_decode(hdr.data, hdr.len, &out);
	str_clear(&hdr);
	str_append(&hdr, "Subject: ");
	str_append_n(&hdr, text, len);
	str_append(&hdr, " tail");
	if (len > 0)	/* an empty word decodes to nothing, same thing */
		check(same(&out, hdr.data, hdr.len), "B word round trip");
	str_clear(&out);

	/* Two Q words split at an arbitrary octet, folded between. */
	size_t cut = len / 2;
	str_clear(&hdr);
	str_append(&hdr, "=?utf-8*en?q?");
	q_encode(text, cut, &hdr);
	str_append(&hdr, "?=\r\n =?UTF-8?Q?");
	q_encode(text + cut, len - cut, &hdr);
	str_append(&hdr, "?=");
	rfc2047_decode(hdr.data, hdr.len, &out);
	if (cut > 0 && len - cut > 0)
		check(same(&out, text, len), "split Q words round trip");
	str_free(&hdr);
	str_free(&out);
}

static const char *const charsets[] = {
	"utf-8", "iso-8859-1", "windows-1252", "koi8-r", "iso-2022-jp",
	"shift_jis", "gb2312", "big5", "utf-16", "utf-16le", "utf-32",
	"utf-7", "ks_c_5601-1987", "euc-kr", "x-unknown", "", "us-ascii",
	"iso-8859-8-i", "cp1255", "tis-620",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	char charset[48] = "iso-8859-15";
	const char *nl = memchr(in, '\n', size < 41 ? size : 41);
	if (nl != NULL) {
		size_t n = (size_t)(nl - in);
		memcpy(charset, in, n);
		charset[n] = '\0';
		in = nl + 1;
		size -= n + 1;
	}
	/* exactly sized, so ASan sees over-reads */
	char *buf = malloc(size > 0 ? size : 1);
	memcpy(buf, in, size);

	struct str out = STR_INIT, utf8 = STR_INIT;

	/* header decoding */
	rfc2047_decode(buf, size, &out);
	check_terminated(&out, "rfc2047_decode");
	check(valid_utf8(out.data, out.len), "rfc2047_decode: invalid UTF-8");
	if (memmem(buf, size, "=?", 2) == NULL && valid_utf8(buf, size))
		check(same(&out, buf, size), "plain text changed");
	str_clear(&out);

	/* charsets */
	mime_charset_to_utf8(charset, buf, size, &out);
	check_terminated(&out, "mime_charset_to_utf8");
	check(valid_utf8(out.data, out.len), "charset: invalid UTF-8");
	check_contains(out.data != NULL ? out.data : "", out.len);
	str_clear(&out);
	const char *cs = charsets[size % (sizeof charsets / sizeof *charsets)];
	mime_charset_to_utf8(cs, buf, size, &out);
	check_terminated(&out, "mime_charset_to_utf8");
	check(valid_utf8(out.data, out.len), "table charset: invalid UTF-8");
	str_clear(&out);
	mime_charset_to_utf8("UTF-8", buf, size, &utf8);
	check(valid_utf8(utf8.data, utf8.len), "UTF-8: invalid UTF-8");
	if (valid_utf8(buf, size))
		check(same(&utf8, buf, size), "valid UTF-8 changed");

	/* encoded words of the text, transfer encodings of the octets */
	check_words(utf8.data != NULL ? utf8.data : "", utf8.len);
	check_transfer(buf, size);
	check(mime_utf8_contains(buf, size, buf, size),
	      "octets do not contain themselves");

	str_free(&out);
	str_free(&utf8);
	free(buf);
	return 0;
}
