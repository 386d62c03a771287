/*
 * imap_mutf7: modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8 for mailbox names.
 *
 * Printable US-ASCII (0x20-0x7e) stands for itself, '&' is written "&-",
 * everything else is UTF-16 in base64 with ',' for '/', between '&' and
 * '-'.  Decoding is strict, so every name has one spelling and two
 * spellings of a name cannot become two folders: printable ASCII inside a
 * shift, non-zero padding bits, stray bits, unpaired surrogates and U+0000
 * are refused.
 */
#include "imap_mutf7.h"

#include <stdbool.h>
#include <stdint.h>

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

static void put_utf8(struct str *out, uint32_t cp)
{
	if (cp < 0x80) {
		str_append_c(out, (char)cp);
	} else if (cp < 0x800) {
		str_append_c(out, (char)(0xc0 | cp >> 6));
		str_append_c(out, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		str_append_c(out, (char)(0xe0 | cp >> 12));
		str_append_c(out, (char)(0x80 | (cp >> 6 & 0x3f)));
		str_append_c(out, (char)(0x80 | (cp & 0x3f)));
	} else {
		str_append_c(out, (char)(0xf0 | cp >> 18));
		str_append_c(out, (char)(0x80 | (cp >> 12 & 0x3f)));
		str_append_c(out, (char)(0x80 | (cp >> 6 & 0x3f)));
		str_append_c(out, (char)(0x80 | (cp & 0x3f)));
	}
}

/* One shifted run, in[0] just after '&', up to but not including '-'. */
static int decode_run(const char *in, size_t len, struct str *out)
{
	uint32_t bits = 0, high = 0;
	unsigned nbits = 0;
	size_t units = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		bits = (bits << 6 | (uint32_t)v) & 0xffffff;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t u = bits >> nbits & 0xffff;
		units++;
		if (high != 0) {
			if (u < 0xdc00 || u > 0xdfff)
				return -1;
			put_utf8(out, 0x10000 + ((high - 0xd800) << 10) +
				      (u - 0xdc00));
			high = 0;
		} else if (u >= 0xd800 && u <= 0xdbff) {
			high = u;
		} else if (u >= 0xdc00 && u <= 0xdfff) {
			return -1;
		} else if (u == 0 || (u >= 0x20 && u <= 0x7e)) {
			/* NUL, or printable ASCII that must stand for
			 * itself */
			return -1;
		} else {
			put_utf8(out, u);
		}
	}
	/* leftover: fewer than 6 bits, all zero; something decoded */
	if (units == 0 || high != 0 || nbits >= 6 ||
	    (bits & ((1u << nbits) - 1)) != 0)
		return -1;
	return 0;
}

/* Only the canonical form decodes: two shifted runs back to back
 * ("&AOQ-&APY-") spell what one run would, and two spellings of one name
 * would be two folders on disk. */
int mutf7_to_utf8(const char *in, size_t len, struct str *out)
{
	size_t old = out->len;
	bool after_run = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c < 0x20 || c > 0x7e)
			goto bad;
		if (c != '&') {
			str_append_c(out, (char)c);
			after_run = false;
			continue;
		}
		size_t start = ++i;
		while (i < len && in[i] != '-')
			i++;
		if (i == len)
			goto bad;	/* '&' not closed */
		if (i == start) {
			str_append_c(out, '&');
			after_run = false;
		} else if (after_run || decode_run(in + start, i - start, out) < 0) {
			goto bad;
		} else {
			after_run = true;
		}
	}
	return 0;
bad:
	str_truncate(out, old);
	return -1;
}

/* Next code point of strict UTF-8 (no overlongs, surrogates or values
 * above U+10FFFF); *i advanced.  -1 if invalid. */
static int next_utf8(const unsigned char *s, size_t len, size_t *i,
		     uint32_t *cp)
{
	unsigned char c = s[*i];
	unsigned n;
	uint32_t v, min;
	if (c < 0x80) {
		*cp = c;
		(*i)++;
		return 0;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 1, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3, v = c & 0x07, min = 0x10000;
	} else {
		return -1;
	}
	if (len - *i <= n)
		return -1;
	for (unsigned k = 1; k <= n; k++) {
		unsigned char cc = s[*i + k];
		if ((cc & 0xc0) != 0x80)
			return -1;
		v = v << 6 | (cc & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return -1;
	*cp = v;
	*i += n + 1;
	return 0;
}

struct encoder {
	struct str *out;
	uint32_t bits;
	unsigned nbits;
	bool shifted;
};

static void enc_unit(struct encoder *e, uint32_t u)
{
	if (!e->shifted) {
		str_append_c(e->out, '&');
		e->shifted = true;
	}
	e->bits = (e->bits << 16 | u) & 0xffffff;
	e->nbits += 16;
	while (e->nbits >= 6) {
		e->nbits -= 6;
		str_append_c(e->out, b64chars[e->bits >> e->nbits & 0x3f]);
	}
}

static void enc_close(struct encoder *e)
{
	if (!e->shifted)
		return;
	if (e->nbits > 0)
		str_append_c(e->out,
			     b64chars[e->bits << (6 - e->nbits) & 0x3f]);
	str_append_c(e->out, '-');
	e->shifted = false;
	e->bits = 0;
	e->nbits = 0;
}

int utf8_to_mutf7(const char *in, size_t len, struct str *out)
{
	size_t old = out->len;
	const unsigned char *s = (const unsigned char *)in;
	struct encoder e = { .out = out };
	size_t i = 0;
	while (i < len) {
		uint32_t cp;
		if (next_utf8(s, len, &i, &cp) < 0 || cp == 0) {
			str_truncate(out, old);
			return -1;
		}
		if (cp >= 0x20 && cp <= 0x7e) {
			enc_close(&e);
			str_append_c(out, (char)cp);
			if (cp == '&')
				str_append_c(out, '-');	/* "&-" */
		} else if (cp >= 0x10000) {
			cp -= 0x10000;
			enc_unit(&e, 0xd800 + (cp >> 10));
			enc_unit(&e, 0xdc00 + (cp & 0x3ff));
		} else {
			enc_unit(&e, cp);
		}
	}
	enc_close(&e);
	return 0;
}
