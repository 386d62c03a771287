/*
 * auth: base64, the SASL PLAIN message format, and the password check
 * against users.tdb's crypt(3) hashes (libxcrypt, yescrypt by default).
 *
 * Secrets pass through here: every buffer that held a password, decoded
 * SASL data or a computed hash is wiped with explicit_bzero before it is
 * freed or reused, and output strings are sized before they are written so
 * that no realloc leaves an unwiped copy behind.
 */
#include "auth.h"
#include "peer.h"

#include <crypt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

/*
 * The hash an unknown user's password is checked against, so that an
 * unknown user costs one yescrypt computation like a known one.  Made once
 * with crypt_gensalt("$y$", 0, NULL, 0) (libxcrypt 4.4.33's default cost,
 * "j9T", the same crypt_gensalt_ra("$y$", 0, ...) that sockmailctl uses for
 * real users) and crypt() of a throw-away phrase.  Nothing logs in with it:
 * a match against it is still AUTH_FAILED.  If libxcrypt's default cost
 * changes, regenerate it so both paths keep costing the same.
 */
static const char dummy_hash[] =
	"$y$j9T$Cy1mWGie8mo40FhkRcam91$"
	"FdR0oIx1/fHt1JMQwFkUnMXUYz0dCXIcvsvTeQ/3Ia6";

/* Longest user name we look up: an address is at most 64 + 1 + 255. */
#define AUTH_MAX_USER 320

/* ---- secrets ---- */

static void wipe_str(struct str *s)
{
	if (s->data != NULL)
		explicit_bzero(s->data, s->cap);
	s->len = 0;
	if (s->data != NULL)
		s->data[0] = '\0';
}

void str_free_secret(struct str *s)
{
	if (s->data != NULL)
		explicit_bzero(s->data, s->cap);
	str_free(s);
}

/* ---- base64 (RFC 4648 section 4) ---- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(const void *data, size_t len, struct str *out)
{
	const unsigned char *p = data;
	char quad[4];

	str_reserve(out, (len + 2) / 3 * 4);
	out->data[out->len] = '\0';	/* for len 0: reserved, not written */
	for (; len >= 3; p += 3, len -= 3) {
		quad[0] = b64_alphabet[p[0] >> 2];
		quad[1] = b64_alphabet[((p[0] & 0x03) << 4) | (p[1] >> 4)];
		quad[2] = b64_alphabet[((p[1] & 0x0f) << 2) | (p[2] >> 6)];
		quad[3] = b64_alphabet[p[2] & 0x3f];
		str_append_n(out, quad, 4);
	}
	if (len == 0)
		return;
	unsigned b1 = len == 2 ? p[1] : 0;
	quad[0] = b64_alphabet[p[0] >> 2];
	quad[1] = b64_alphabet[((p[0] & 0x03) << 4) | (b1 >> 4)];
	quad[2] = len == 2 ? b64_alphabet[(b1 & 0x0f) << 2] : '=';
	quad[3] = '=';
	str_append_n(out, quad, 4);
}

/* The 6-bit value of a base64 character, -1 if it is not one. */
static int b64_value(unsigned char c)
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

/* Decode one group of 4 characters into bytes[]; the number of bytes (1-3),
 * or -1.  Padding is allowed only in the last group, and the bits it leaves
 * over must be zero (canonical encoding, RFC 4648 section 3.5). */
static int b64_quad(const unsigned char *q, bool last, unsigned char bytes[3])
{
	int v[4], n = 3;

	if (last && q[3] == '=')
		n = q[2] == '=' ? 1 : 2;
	for (int i = 0; i < 4; i++) {
		if (i > n) {
			v[i] = 0;	/* one of the '=' checked above */
			continue;
		}
		v[i] = b64_value(q[i]);
		if (v[i] < 0)
			return -1;
	}
	if ((n == 1 && (v[1] & 0x0f) != 0) || (n == 2 && (v[2] & 0x03) != 0))
		return -1;
	bytes[0] = (unsigned char)((v[0] << 2) | (v[1] >> 4));
	bytes[1] = (unsigned char)(((v[1] & 0x0f) << 4) | (v[2] >> 2));
	bytes[2] = (unsigned char)(((v[2] & 0x03) << 6) | v[3]);
	return n;
}

int base64_decode(const char *text, size_t len, struct str *out)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t start = out->len;
	unsigned char bytes[3];

	if (len % 4 != 0)
		return -1;
	/* Room for everything now: the output may be a secret, and a realloc
	 * half-way would leave a copy of its first part behind. */
	str_reserve(out, len / 4 * 3);
	out->data[out->len] = '\0';
	for (size_t i = 0; i < len; i += 4) {
		int n = b64_quad(p + i, i + 4 == len, bytes);
		if (n < 0) {
			explicit_bzero(out->data + start, out->cap - start);
			str_truncate(out, start);
			explicit_bzero(bytes, sizeof bytes);
			return -1;
		}
		str_append_n(out, bytes, (size_t)n);
	}
	explicit_bzero(bytes, sizeof bytes);
	return 0;
}

/* ---- SASL PLAIN (RFC 4616) ---- */

/* Set *s to p[0..len), wiping what it held: it may have been a secret. */
static void set_field(struct str *s, const char *p, size_t len)
{
	wipe_str(s);
	str_reserve(s, len);
	str_append_n(s, p, len);
}

int sasl_plain_parse(const char *msg, size_t len, struct str *authzid,
		     struct str *authcid, struct str *password)
{
	const char *nul1 = memchr(msg, '\0', len);
	const char *nul2 = nul1 == NULL ? NULL
			 : memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - msg));

	wipe_str(authzid);
	wipe_str(authcid);
	wipe_str(password);
	if (nul2 == NULL)
		return -1;	/* fewer than two NULs */
	const char *end = msg + len;
	size_t zlen = (size_t)(nul1 - msg);
	size_t clen = (size_t)(nul2 - (nul1 + 1));
	size_t plen = (size_t)(end - (nul2 + 1));
	if (memchr(nul2 + 1, '\0', plen) != NULL)
		return -1;	/* a third NUL */
	if (clen == 0 || plen == 0 || zlen > AUTH_MAX_FIELD ||
	    clen > AUTH_MAX_FIELD || plen > AUTH_MAX_FIELD)
		return -1;
	set_field(authzid, msg, zlen);
	set_field(authcid, nul1 + 1, clen);
	set_field(password, nul2 + 1, plen);
	return 0;
}

/* ---- the password check ---- */

/* Compare two NUL-terminated strings in time that depends only on their
 * lengths (which are no secret: every hash of a method has one length). */
static bool equal_const_time(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	volatile unsigned char diff = la != lb;

	for (size_t i = 0; i < lb; i++)
		diff |= (unsigned char)((i < la ? a[i] : 0) ^ b[i]);
	return diff == 0;
}

/* Can crypt(3) check a password against this stored hash?  A locked
 * account ("!..." or "*...") or garbage is not. */
static bool hash_usable(const struct str *hash)
{
	if (hash->len == 0 || hash->len >= CRYPT_OUTPUT_SIZE)
		return false;
	int r = crypt_checksalt(hash->data);
	return r == CRYPT_SALT_OK || r == CRYPT_SALT_METHOD_LEGACY;
}

unsigned long auth_hash_count;
char auth_last_setting[AUTH_SETTING_PREFIX_MAX];

/* crypt(password, setting) == setting?  One full hash computation. */
static bool crypt_matches(const char *password, const char *setting)
{
	auth_hash_count++;
	/* algorithm and cost only: "$y$j9T$" (never the salt or hash) */
	size_t n = 0;
	for (int dollars = 0; setting[n] && dollars < 3 &&
			      n + 1 < sizeof auth_last_setting; n++)
		dollars += setting[n] == '$';
	memcpy(auth_last_setting, setting, n);
	auth_last_setting[n] = '\0';
	struct crypt_data *data = xcalloc(1, sizeof *data);
	const char *h = crypt_rn(password, setting, data, (int)sizeof *data);
	bool ok = h != NULL && h[0] != '*' && equal_const_time(h, setting);

	explicit_bzero(data, sizeof *data);
	free(data);
	return ok;
}

enum auth_result auth_check_password(struct userdb *db, const char *user,
				     const char *password,
				     struct str *canonical)
{
	struct str hash = STR_INIT;
	char name[AUTH_MAX_USER + 1];
	size_t len = strnlen(user, AUTH_MAX_USER + 1);

	if (db == NULL)
		return AUTH_TEMPFAIL;
	int found = 0;
	if (len > 0 && len <= AUTH_MAX_USER) {
		memcpy(name, user, len + 1);
		addr_lowercase(name);
		found = userdb_user_hash(db, name, &hash);
		if (found < 0) {
			str_free_secret(&hash);
			return AUTH_TEMPFAIL;
		}
	}
	/* Unknown or unusable: the same work against the dummy hash. */
	bool real = found == 1 && hash_usable(&hash);
	bool match = crypt_matches(password, real ? hash.data : dummy_hash);
	str_free_secret(&hash);
	if (!real || !match)
		return AUTH_FAILED;
	str_clear(canonical);
	str_append(canonical, name);
	return AUTH_OK;
}

bool auth_login_allowed(const struct config *cfg, bool tls, const char *peer)
{
	return tls || (cfg->auth_plaintext == AUTH_PLAINTEXT_LOOPBACK &&
		       peer_is_loopback(peer));
}
