/*
 * fuzz_sasl: what every handler decodes from a client before it knows who
 * it is -- base64 (common/auth.c) and the SASL PLAIN message.  The input
 * is taken as base64 text and as a decoded PLAIN message.  Invariants:
 *   - base64_decode is strict: what it accepts encodes back to exactly
 *     the input; a refusal leaves the output as it was;
 *   - any octets encode to text that decodes back to them;
 *   - a PLAIN message accepted is exactly authzid NUL authcid NUL
 *     password, authcid and password not empty, no field over
 *     AUTH_MAX_FIELD; a refusal is for one of those reasons.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_base64(const char *in, size_t len)
{
	struct str dec = STR_INIT, enc = STR_INIT;
	str_append(&dec, "x");
	if (base64_decode(in, len, &dec) == 0) {
		base64_encode(dec.data + 1, dec.len - 1, &enc);
		CHECK(enc.len == len && (len == 0 ||
					 memcmp(enc.data, in, len) == 0));
	} else {
		CHECK(dec.len == 1 && dec.data[0] == 'x');
	}
	str_clear(&enc);
	str_clear(&dec);
	base64_encode(in, len, &enc);
	CHECK(enc.len % 4 == 0);
	CHECK(base64_decode(str_c(&enc), enc.len, &dec) == 0);
	CHECK(dec.len == len && (len == 0 || memcmp(dec.data, in, len) == 0));
	str_free(&enc);
	str_free(&dec);
}

static void check_plain(const char *msg, size_t len)
{
	struct str z = STR_INIT, c = STR_INIT, p = STR_INIT;
	int r = sasl_plain_parse(msg, len, &z, &c, &p);
	const char *nul1 = memchr(msg, '\0', len);
	const char *nul2 = nul1 ? memchr(nul1 + 1, '\0',
					 len - (size_t)(nul1 + 1 - msg)) : NULL;
	bool two = nul2 != NULL &&
		   memchr(nul2 + 1, '\0', len - (size_t)(nul2 + 1 - msg)) == NULL;
	if (r == 0) {
		CHECK(two);
		size_t zl = (size_t)(nul1 - msg);
		size_t cl = (size_t)(nul2 - nul1 - 1);
		size_t pl = len - (size_t)(nul2 + 1 - msg);
		CHECK(z.len == zl && memcmp(z.data ? z.data : "", msg, zl) == 0);
		CHECK(c.len == cl && cl > 0 && memcmp(c.data, nul1 + 1, cl) == 0);
		CHECK(p.len == pl && pl > 0 && memcmp(p.data, nul2 + 1, pl) == 0);
		CHECK(zl <= AUTH_MAX_FIELD && cl <= AUTH_MAX_FIELD &&
		      pl <= AUTH_MAX_FIELD);
	} else if (two) {
		size_t zl = (size_t)(nul1 - msg);
		size_t cl = (size_t)(nul2 - nul1 - 1);
		size_t pl = len - (size_t)(nul2 + 1 - msg);
		CHECK(cl == 0 || pl == 0 || zl > AUTH_MAX_FIELD ||
		      cl > AUTH_MAX_FIELD || pl > AUTH_MAX_FIELD);
	}
	str_free_secret(&z);
	str_free_secret(&c);
	str_free_secret(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	check_base64((const char *)data, size);
	check_plain((const char *)data, size);
	return 0;
}
