/*
 * mime_decode: MIME-encoded text to UTF-8 for SEARCH and display: RFC 2047
 * encoded words, the base64 and quoted-printable transfer encodings,
 * charset conversion through glibc's iconv, and a case-insensitive UTF-8
 * substring search.  Lenient throughout: what cannot be decoded is kept
 * (or becomes U+FFFD) rather than failing.
 */
#include "mime_decode.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REPLACEMENT "\xEF\xBF\xBD"	/* U+FFFD */
#define CHARSET_NAME_MAX 64

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* ASCII case-insensitive equality of s[0..len) and C string b. */
static bool eq_ci(const char *s, size_t len, const char *b)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (b[i] == '\0' || ascii_lower(s[i]) != ascii_lower(b[i]))
			return false;
	}
	return b[i] == '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* --- UTF-8 --------------------------------------------------------- */

/* The length of the valid (shortest form, no surrogate, <= U+10FFFF)
 * UTF-8 sequence at s, storing its code point, or 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t left, uint32_t *cp)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xBF;
	size_t n;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		*cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		*cp = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		*cp = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (left < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if (i > 1 && (s[i] < 0x80 || s[i] > 0xBF))
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3F);
	}
	return n;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Append data with each invalid UTF-8 octet replaced by U+FFFD (or, when
 * latin1, taken as an ISO-8859-1 character). */
static void utf8_sanitize(const char *data, size_t len, bool latin1,
			  struct str *out)
{
	const unsigned char *s = (const unsigned char *)data;
	size_t i = 0;

	str_reserve(out, len);
	out->data[out->len] = '\0';	/* a new buffer is not, and len may be 0 */
	while (i < len) {
		size_t run = i, n;
		uint32_t cp;

		while (run < len && s[run] < 0x80)
			run++;
		str_append_n(out, data + i, run - i);
		i = run;
		if (i == len)
			break;
		n = utf8_decode(s + i, len - i, &cp);
		if (n > 0) {
			str_append_n(out, data + i, n);
			i += n;
		} else if (latin1) {
			char buf[2];

			str_append_n(out, buf, utf8_encode(s[i], buf));
			i++;
		} else {
			str_append(out, REPLACEMENT);
			i++;
		}
	}
}

/* --- charsets ------------------------------------------------------ */

/* The last converter opened: a session tends to meet one charset over
 * and over.  Closed at exit so nothing is left behind. */
static iconv_t cached_cd = (iconv_t)-1;
static char cached_name[CHARSET_NAME_MAX + 1];

static void close_cached(void)
{
	if (cached_cd != (iconv_t)-1)
		iconv_close(cached_cd);
	cached_cd = (iconv_t)-1;
	cached_name[0] = '\0';
}

/* Names mail uses that glibc spells differently. */
static const char *charset_alias(const char *name)
{
	static const char *const aliases[][2] = {
		{ "ks_c_5601-1987", "CP949" },
		{ "gb2312", "GBK" },
		{ "x-gbk", "GBK" },
		{ "iso-8859-8-i", "ISO-8859-8" },
		{ "x-sjis", "SHIFT_JIS" },
		{ "x-euc-jp", "EUC-JP" },
	};

	for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
		if (eq_ci(name, strlen(name), aliases[i][0]))
			return aliases[i][1];
	}
	return name;
}

/* A converter from charset to UTF-8 (reset), or (iconv_t)-1. */
static iconv_t charset_open(const char *charset)
{
	static bool atexit_set;
	iconv_t cd;

	if (cached_cd != (iconv_t)-1 && strcmp(cached_name, charset) == 0) {
		iconv(cached_cd, NULL, NULL, NULL, NULL);
		return cached_cd;
	}
	cd = iconv_open("UTF-8", charset_alias(charset));
	if (cd == (iconv_t)-1)
		return cd;
	close_cached();
	cached_cd = cd;
	strcpy(cached_name, charset);
	if (!atexit_set) {
		atexit(close_cached);
		atexit_set = true;
	}
	return cd;
}

static void iconv_convert(iconv_t cd, const char *data, size_t len,
			  struct str *out)
{
	char buf[4096], *in = (char *)data, *o;
	size_t inleft = len, oleft;

	while (inleft > 0) {
		size_t r;

		o = buf;
		oleft = sizeof buf;
		r = iconv(cd, &in, &inleft, &o, &oleft);
		str_append_n(out, buf, (size_t)(o - buf));
		if (r != (size_t)-1 || errno == E2BIG)
			continue;
		str_append(out, REPLACEMENT);
		if (errno != EILSEQ)
			break;		/* EINVAL: truncated at the end */
		in++;
		inleft--;
	}
	/* Return a stateful converter to its initial state. */
	o = buf;
	oleft = sizeof buf;
	iconv(cd, NULL, NULL, &o, &oleft);
	str_append_n(out, buf, (size_t)(o - buf));
}

/* Copy charset (trimmed) into name if it looks like a charset name. */
static bool charset_name(const char *charset, char *name)
{
	size_t len, i;

	while (is_space(*charset))
		charset++;
	len = strlen(charset);
	while (len > 0 && is_space(charset[len - 1]))
		len--;
	if (len == 0 || len > CHARSET_NAME_MAX)
		return false;
	for (i = 0; i < len; i++) {
		char c = charset[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("-_.:+()", c) != NULL))
			return false;
	}
	memcpy(name, charset, len);
	name[len] = '\0';
	return true;
}

static bool is_utf8_or_ascii(const char *name)
{
	static const char *const names[] = {
		"us-ascii", "ascii", "utf-8", "utf8", "ansi_x3.4-1968",
		"iso646-us", "us",
	};
	size_t len = strlen(name);

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (eq_ci(name, len, names[i]))
			return true;
	}
	return false;
}

void mime_charset_to_utf8(const char *charset, const char *data, size_t len,
			  struct str *out)
{
	char name[CHARSET_NAME_MAX + 1];
	iconv_t cd;

	if (charset == NULL || !charset_name(charset, name) ||
	    is_utf8_or_ascii(name)) {
		utf8_sanitize(data, len, false, out);
		return;
	}
	cd = charset_open(name);
	if (cd == (iconv_t)-1) {
		utf8_sanitize(data, len, false, out);	/* unknown charset */
		return;
	}
	/* glibc's "UTF-8" output is not always UTF-8: code points above
	 * U+10FFFF (from UCS-4) and the old 5- and 6-octet forms (from UTF-8
	 * under a name of its own, "+utf-8") come out as they are. */
	struct str conv = STR_INIT;
	iconv_convert(cd, data, len, &conv);
	utf8_sanitize(str_c(&conv), conv.len, false, out);
	str_free(&conv);
}

/* --- transfer encodings -------------------------------------------- */

static int base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Other characters are skipped; decoding stops at the padding. */
static void base64_decode(const char *s, size_t len, struct str *out)
{
	unsigned acc = 0;
	int bits = 0;
	char *d;

	str_reserve(out, len / 4 * 3 + 3);
	d = out->data + out->len;
	for (size_t i = 0; i < len && s[i] != '='; i++) {
		int v = base64_value(s[i]);

		if (v < 0)
			continue;
		acc = ((acc << 6) | (unsigned)v) & 0x3FFF;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			*d++ = (char)((acc >> bits) & 0xFF);
		}
	}
	out->len = (size_t)(d - out->data);
	out->data[out->len] = '\0';
}

/* Where the line end at s[i] ends (i + 1 or i + 2), or 0 if there is no
 * line end (CRLF or LF) at i. */
static size_t line_end_at(const char *s, size_t len, size_t i)
{
	if (i < len && s[i] == '\n')
		return i + 1;
	if (i + 1 < len && s[i] == '\r' && s[i + 1] == '\n')
		return i + 2;
	return 0;
}

/* RFC 2045 6.7: "=XX", soft line breaks ("=" before the line end, with
 * transport padding allowed), trailing blanks of a line dropped; any
 * other "=" is kept as it is. */
static void qp_decode(const char *s, size_t len, struct str *out)
{
	size_t i = 0;
	char *d;

	str_reserve(out, len);
	d = out->data + out->len;
	while (i < len) {
		size_t j, e;

		if (s[i] == '=') {
			int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
			int lo = i + 2 < len ? hex_value(s[i + 2]) : -1;

			if (hi >= 0 && lo >= 0) {
				*d++ = (char)(hi << 4 | lo);
				i += 3;
				continue;
			}
			for (j = i + 1; j < len && is_wsp(s[j]); j++)
				;
			if (j == len) {
				i = len;	/* soft break before the end */
				continue;
			}
			if ((e = line_end_at(s, len, j)) != 0) {
				i = e;
				continue;
			}
			*d++ = s[i++];
			continue;
		}
		if (is_wsp(s[i])) {
			for (j = i; j < len && is_wsp(s[j]); j++)
				;
			if (j < len && line_end_at(s, len, j) == 0) {
				memcpy(d, s + i, j - i);
				d += j - i;
			}
			i = j;
			continue;
		}
		*d++ = s[i++];
	}
	out->len = (size_t)(d - out->data);
	out->data[out->len] = '\0';
}

/* Whether the encoding name (as written, blanks around) is want. */
static bool encoding_is(const char *encoding, const char *want)
{
	size_t len;

	while (is_space(*encoding))
		encoding++;
	len = strlen(encoding);
	while (len > 0 && is_space(encoding[len - 1]))
		len--;
	return eq_ci(encoding, len, want);
}

void mime_transfer_decode(const char *encoding, const char *data, size_t len,
			  struct str *out)
{
	if (encoding != NULL && encoding_is(encoding, "base64"))
		base64_decode(data, len, out);
	else if (encoding != NULL && encoding_is(encoding, "quoted-printable"))
		qp_decode(data, len, out);
	else
		str_append_n(out, data, len);
}

/* --- RFC 2047 ------------------------------------------------------ */

struct encoded_word {
	char charset[CHARSET_NAME_MAX + 1];	/* without "*lang" */
	char encoding;				/* 'b' or 'q' */
	const char *text;
	size_t text_len;
	size_t end;				/* after "?=" */
};

/* Parse "=?charset?X?text?=" at s[i]. */
static bool parse_encoded_word(const char *s, size_t len, size_t i,
			       struct encoded_word *w)
{
	size_t p = i + 2, cs = p, cs_len;
	const char *star;

	while (p < len && s[p] != '?' && !is_space(s[p]))
		p++;
	cs_len = p - cs;
	if (p + 2 >= len || s[p] != '?' || cs_len == 0)
		return false;
	star = memchr(s + cs, '*', cs_len);
	if (star != NULL)
		cs_len = (size_t)(star - (s + cs));
	if (cs_len == 0 || cs_len > CHARSET_NAME_MAX)
		return false;
	w->encoding = ascii_lower(s[p + 1]);
	if ((w->encoding != 'b' && w->encoding != 'q') || s[p + 2] != '?')
		return false;
	p += 3;
	w->text = s + p;
	while (p < len && s[p] != '?' && !is_space(s[p]))
		p++;
	if (p + 1 >= len || s[p] != '?' || s[p + 1] != '=')
		return false;
	w->text_len = (size_t)(s + p - w->text);
	w->end = p + 2;
	memcpy(w->charset, s + cs, cs_len);
	w->charset[cs_len] = '\0';
	return true;
}

/* Q: "_" is a space, "=XX" an octet, the rest as is. */
static void q_decode(const char *s, size_t len, struct str *out)
{
	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (s[i] == '_') {
			str_append_c(out, ' ');
		} else if (s[i] == '=' && i + 2 < len &&
			   (hi = hex_value(s[i + 1])) >= 0 &&
			   (lo = hex_value(s[i + 2])) >= 0) {
			str_append_c(out, (char)(hi << 4 | lo));
			i += 2;
		} else {
			str_append_c(out, s[i]);
		}
	}
}

/* Non-encoded header text: UTF-8 stays, other 8-bit octets are taken as
 * ISO-8859-1, which is what raw 8-bit headers usually are. */
static void raw_text(const char *s, size_t len, struct str *out)
{
	utf8_sanitize(s, len, true, out);
}

static bool all_space(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!is_space(s[i]))
			return false;
	}
	return true;
}

void rfc2047_decode(const char *text, size_t len, struct str *out)
{
	/* Octets of adjacent encoded words in one charset are converted
	 * together: mailers split multi-byte characters between words. */
	struct str pending = STR_INIT;
	char pending_cs[CHARSET_NAME_MAX + 1] = "";
	bool have_pending = false;
	size_t i = 0, run = 0;

	while (i < len) {
		struct encoded_word w;

		if (text[i] != '=' || i + 1 >= len || text[i + 1] != '?' ||
		    !parse_encoded_word(text, len, i, &w)) {
			i++;
			continue;
		}
		/* Blanks between two encoded words go (RFC 2047 6.2). */
		bool joined = have_pending && all_space(text + run, i - run);

		if (!joined || !eq_ci(w.charset, strlen(w.charset), pending_cs)) {
			if (have_pending)
				mime_charset_to_utf8(pending_cs, str_c(&pending),
						     pending.len, out);
			str_truncate(&pending, 0);
			if (!joined)
				raw_text(text + run, i - run, out);
			strcpy(pending_cs, w.charset);
		}
		have_pending = true;
		if (w.encoding == 'b')
			base64_decode(w.text, w.text_len, &pending);
		else
			q_decode(w.text, w.text_len, &pending);
		i = w.end;
		run = i;
	}
	if (have_pending)
		mime_charset_to_utf8(pending_cs, str_c(&pending), pending.len, out);
	raw_text(text + run, len - run, out);
	str_free(&pending);
}

/* --- case-insensitive search --------------------------------------- */

/* Simple case folding of Latin-1, Latin Extended-A, Greek and Cyrillic
 * (the letters a SEARCH is likely to meet); other code points as is. */
static uint32_t fold_cp(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 0x20 : c;
	if (c == 0xB5)
		return 0x3BC;			/* micro sign -> mu */
	if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
		return c + 0x20;
	if (c >= 0x100 && c <= 0x17F) {
		if (c == 0x130)
			return 'i';
		if (c == 0x178)
			return 0xFF;
		if (c == 0x17F)
			return 's';
		if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
			return c & 1 ? c + 1 : c;
		if (c == 0x131 || c == 0x138 || c == 0x149)
			return c;
		return c & 1 ? c : c + 1;
	}
	if (c >= 0x370 && c <= 0x3FF) {
		if (c >= 0x391 && c <= 0x3AB && c != 0x3A2)
			return c + 0x20;
		if (c == 0x386)
			return 0x3AC;
		if (c >= 0x388 && c <= 0x38A)
			return c + 0x25;
		if (c == 0x38C)
			return 0x3CC;
		if (c == 0x38E || c == 0x38F)
			return c + 0x3F;
		if (c == 0x3C2)
			return 0x3C3;		/* final sigma */
		return c;
	}
	if (c >= 0x400 && c <= 0x52F) {
		if (c <= 0x40F)
			return c + 0x50;
		if (c <= 0x42F)
			return c + 0x20;
		if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) ||
		    (c >= 0x4D0 && c <= 0x52F))
			return c & 1 ? c : c + 1;
		if (c == 0x4C0)
			return 0x4CF;
		if (c >= 0x4C1 && c <= 0x4CE)
			return c & 1 ? c + 1 : c;
	}
	return c;
}

/* Fold s into dst (at least len octets: folding never grows the text);
 * invalid octets are copied.  Returns the folded length. */
static size_t fold_utf8(const char *s, size_t len, char *dst)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0;

	while (i < len) {
		uint32_t cp;
		size_t n;

		if (u[i] < 0x80) {
			dst[o++] = u[i] >= 'A' && u[i] <= 'Z' ?
				   (char)(u[i] + 0x20) : s[i];
			i++;
			continue;
		}
		n = utf8_decode(u + i, len - i, &cp);
		if (n == 0) {
			dst[o++] = s[i++];
			continue;
		}
		o += utf8_encode(fold_cp(cp), dst + o);
		i += n;
	}
	return o;
}

bool mime_utf8_contains(const char *haystack, size_t hlen,
			const char *needle, size_t nlen)
{
	char *h, *n;
	size_t hl, nl;
	bool found;

	if (nlen == 0)
		return true;
	h = xmalloc(hlen);
	n = xmalloc(nlen);
	hl = fold_utf8(haystack, hlen, h);
	nl = fold_utf8(needle, nlen, n);
	found = memmem(h, hl, n, nl) != NULL;
	free(h);
	free(n);
	return found;
}
