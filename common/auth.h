/*
 * auth: what every handler needs to log a user in: base64, the SASL PLAIN
 * (RFC 4616) and LOGIN mechanisms' message formats, and the password check
 * against users.tdb's crypt hashes.  The check does the same work for an
 * unknown user as for a known one, so timing tells nothing about which
 * users exist.
 */
#ifndef SOCKMAIL_AUTH_H
#define SOCKMAIL_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "str.h"
#include "users.h"

#define AUTH_MAX_FIELD 1024	/* authzid, authcid, password each */

/* RFC 4648 base64; both append to *out.  decode: strict (no whitespace,
 * correct padding, zero pad bits), 0 ok, -1 on malformed input with *out
 * as it was.  Decoding "" gives nothing (SASL's "=" is the caller's). */
void base64_encode(const void *data, size_t len, struct str *out);
int base64_decode(const char *text, size_t len, struct str *out);

/* Decode a SASL PLAIN message (already base64-decoded): authzid NUL
 * authcid NUL password; the three strings are wiped and replaced (msg must
 * not point into them).  -1 if malformed (not exactly two NULs, empty
 * authcid or password) or a field is longer than AUTH_MAX_FIELD. */
int sasl_plain_parse(const char *msg, size_t len, struct str *authzid,
		     struct str *authcid, struct str *password);

enum auth_result {
	AUTH_OK,
	AUTH_FAILED,	/* unknown user or wrong password: same answer */
	AUTH_TEMPFAIL,	/* database trouble */
};

/*
 * Check user (an address, any case) and password.  On AUTH_OK the canonical
 * (lower-case) address is put in *canonical.  Burns a yescrypt computation
 * for unknown users too.  The caller wipes the password.
 */
enum auth_result auth_check_password(struct userdb *db, const char *user,
				     const char *password,
				     struct str *canonical);

/* May a client log in on this connection: always over TLS, and in
 * plaintext only from loopback when auth_plaintext = loopback. */
bool auth_login_allowed(const struct config *cfg, bool tls, const char *peer);

/* For tests of the "no user-existence oracle" promise: how many hash
 * computations auth_check_password has made, and the algorithm and cost
 * ("$y$j9T$") of the setting the last one used (the stored hash, or the
 * dummy).  Deterministic, unlike a stopwatch. */
#define AUTH_SETTING_PREFIX_MAX 32
extern unsigned long auth_hash_count;
extern char auth_last_setting[AUTH_SETTING_PREFIX_MAX];

/* Wipe and free a string that held a secret. */
void str_free_secret(struct str *s);

#endif
