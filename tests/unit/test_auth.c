/*
 * test_auth: base64 against RFC 4648's vectors and malformed input, the
 * SASL PLAIN message parser, and the password check against a users.tdb
 * made in a temp dir (right and wrong passwords, unknown and upper-case
 * users, locked accounts, a corrupt record), including that an unknown
 * user costs as much time as a known one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tdb.h>

#include "auth.h"
#include "str.h"
#include "users.h"

/* ---- base64 ---- */

static const struct {
	const char *plain, *encoded;
} rfc4648[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

static void test_base64_rfc_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
		struct str enc = STR_INIT, dec = STR_INIT;
		const char *p = rfc4648[i].plain, *e = rfc4648[i].encoded;

		base64_encode(p, strlen(p), &enc);
		assert_string_equal(str_c(&enc), e);
		assert_int_equal(base64_decode(e, strlen(e), &dec), 0);
		assert_int_equal(dec.len, strlen(p));
		assert_string_equal(str_c(&dec), p);
		str_free(&enc);
		str_free(&dec);
	}
}

static void test_base64_binary_roundtrip(void **state)
{
	unsigned char bytes[256];
	(void)state;

	for (int i = 0; i < 256; i++)
		bytes[i] = (unsigned char)(255 - i);
	for (size_t len = 0; len <= sizeof bytes; len++) {
		struct str enc = STR_INIT, dec = STR_INIT;
		base64_encode(bytes, len, &enc);
		assert_int_equal(enc.len, (len + 2) / 3 * 4);
		assert_int_equal(base64_decode(enc.data, enc.len, &dec), 0);
		assert_int_equal(dec.len, len);
		if (len > 0)
			assert_memory_equal(dec.data, bytes, len);
		str_free(&enc);
		str_free(&dec);
	}
	/* The SASL PLAIN message of RFC 4616's example. */
	struct str enc = STR_INIT;
	base64_encode("\0tim\0tanstaaftanstaaf", 21, &enc);
	assert_string_equal(str_c(&enc), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	str_free(&enc);
}

static void test_base64_appends(void **state)
{
	struct str s = STR_INIT;
	(void)state;

	str_append(&s, "x:");
	base64_encode("foo", 3, &s);
	assert_string_equal(str_c(&s), "x:Zm9v");
	assert_int_equal(base64_decode("YmFy", 4, &s), 0);
	assert_string_equal(str_c(&s), "x:Zm9vbar");
	assert_int_equal(base64_decode("", 0, &s), 0);
	assert_string_equal(str_c(&s), "x:Zm9vbar");
	str_free(&s);
}

static void test_base64_malformed(void **state)
{
	static const char *const bad[] = {
		"Z", "Zg", "Zg=", "Zm9", "Zm9vY",	/* length */
		"Zg==Zg==", "Zm8=Zm9v",			/* padding inside */
		"====", "Z===", "=Zg=", "Zg=a", "Z=g=", "Zm=v",
		"Zm9v====",
		"Zh==", "Zm9=",				/* pad bits set */
		" Zm9v", "Zm9v ", "Zm9v\r\n", "Zm\r\n9v", "Zm 9",
		"Zm-v", "Zm_v", "Zm.v", "Zm9\x80", "Zm9\xff",
	};
	(void)state;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct str out = STR_INIT;
		str_reserve(&out, 64);
		memset(out.data, 0, out.cap);
		str_append(&out, "keep");
		assert_int_equal(base64_decode(bad[i], strlen(bad[i]), &out),
				 -1);
		/* Left as it was, and nothing decoded behind the end. */
		assert_int_equal(out.len, 4);
		assert_string_equal(str_c(&out), "keep");
		for (size_t j = out.len + 1; j < out.cap; j++)
			assert_int_equal(out.data[j], 0);
		str_free(&out);
	}
	/* A NUL inside the given length is not base64 either. */
	struct str out = STR_INIT;
	assert_int_equal(base64_decode("Zm\0v", 4, &out), -1);
	assert_int_equal(out.len, 0);
	/* Only len bytes are read. */
	assert_int_equal(base64_decode("Zm9vgarbage", 4, &out), 0);
	assert_string_equal(str_c(&out), "foo");
	str_free(&out);
}

/* ---- SASL PLAIN ---- */

static int parse(const char *msg, size_t len, struct str *z, struct str *c,
		 struct str *p)
{
	return sasl_plain_parse(msg, len, z, c, p);
}

#define MSG(lit) lit, sizeof lit - 1

static void test_sasl_plain_good(void **state)
{
	struct str z = STR_INIT, c = STR_INIT, p = STR_INIT;
	(void)state;

	assert_int_equal(parse(MSG("\0alice@example.org\0s3cret pw"), &z, &c,
			       &p), 0);
	assert_int_equal(z.len, 0);
	assert_string_equal(str_c(&c), "alice@example.org");
	assert_string_equal(str_c(&p), "s3cret pw");

	/* Replaced, not appended. */
	assert_int_equal(parse(MSG("admin\0bob\0x"), &z, &c, &p), 0);
	assert_string_equal(str_c(&z), "admin");
	assert_string_equal(str_c(&c), "bob");
	assert_string_equal(str_c(&p), "x");

	/* Fields of exactly AUTH_MAX_FIELD bytes. */
	struct str m = STR_INIT;
	for (int f = 0; f < 3; f++) {
		for (int i = 0; i < AUTH_MAX_FIELD; i++)
			str_append_c(&m, (char)('a' + f));
		if (f < 2)
			str_append_c(&m, '\0');
	}
	assert_int_equal(parse(m.data, m.len, &z, &c, &p), 0);
	assert_int_equal(z.len, AUTH_MAX_FIELD);
	assert_int_equal(c.len, AUTH_MAX_FIELD);
	assert_int_equal(p.len, AUTH_MAX_FIELD);
	assert_int_equal(p.data[0], 'c');
	str_free(&m);
	str_free_secret(&z);
	str_free_secret(&c);
	str_free_secret(&p);
	assert_null(p.data);
	assert_int_equal(p.len, 0);
}

static void test_sasl_plain_bad(void **state)
{
	static const struct {
		const char *msg;
		size_t len;
	} bad[] = {
		{ MSG("") },
		{ MSG("alice") },			/* no NUL */
		{ MSG("\0alice") },			/* one NUL */
		{ MSG("alice\0secret") },
		{ MSG("\0alice\0secret\0") },		/* three NULs */
		{ MSG("\0alice\0sec\0ret") },
		{ MSG("\0\0\0") },
		{ MSG("\0\0secret") },			/* empty authcid */
		{ MSG("\0alice\0") },			/* empty password */
		{ MSG("bob\0\0") },
	};
	struct str z = STR_INIT, c = STR_INIT, p = STR_INIT;
	(void)state;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		str_append(&p, "old secret");
		assert_int_equal(parse(bad[i].msg, bad[i].len, &z, &c, &p),
				 -1);
		/* Nothing half-parsed, and the old contents are gone. */
		assert_int_equal(z.len + c.len + p.len, 0);
		for (size_t j = 0; j < p.cap; j++)
			assert_int_equal(p.data[j], 0);
	}

	/* One byte too many in each field in turn. */
	for (int over = 0; over < 3; over++) {
		struct str m = STR_INIT;
		for (int f = 0; f < 3; f++) {
			int n = AUTH_MAX_FIELD + (f == over);
			for (int i = 0; i < n; i++)
				str_append_c(&m, 'x');
			if (f < 2)
				str_append_c(&m, '\0');
		}
		assert_int_equal(parse(m.data, m.len, &z, &c, &p), -1);
		assert_int_equal(z.len + c.len + p.len, 0);
		str_free(&m);
	}
	str_free_secret(&z);
	str_free_secret(&c);
	str_free_secret(&p);
}

/* ---- the password check ---- */

struct fixture {
	char dir[64];
	struct userdb *db;	/* a reader, as a handler has */
};

static char *make_hash(const char *prefix, const char *password)
{
	char *setting = crypt_gensalt_ra(prefix, 0, NULL, 0);
	struct crypt_data *data = xcalloc(1, sizeof *data);
	assert_non_null(setting);
	const char *h = crypt_r(password, setting, data);
	assert_non_null(h);
	assert_true(h[0] != '*');
	char *copy = xstrdup(h);
	free(setting);
	free(data);
	return copy;
}

static void add_user(struct userdb *w, const char *address, const char *hash)
{
	struct str err = STR_INIT;
	assert_int_equal(userdb_user_add(w, address, hash, &err), 0);
	str_free(&err);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	struct str err = STR_INIT;

	strcpy(f->dir, "/tmp/test_auth.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	struct userdb *w = userdb_open(f->dir, true, &err);
	assert_non_null(w);
	assert_int_equal(userdb_domain_add(w, "example.org", &err), 0);

	char *y = make_hash("$y$", "correct horse");
	assert_memory_equal(y, "$y$j9T$", 7);	/* the default cost */
	add_user(w, "alice@example.org", y);
	char *sha = make_hash("$6$", "sha pass");
	add_user(w, "carol@example.org", sha);
	/* A locked account, as usermod -L would leave it. */
	struct str locked = STR_INIT;
	str_printf(&locked, "!%s", y);
	add_user(w, "dave@example.org", locked.data);
	str_free(&locked);
	free(y);
	free(sha);
	userdb_close(w);

	f->db = userdb_open(f->dir, false, &err);
	assert_non_null(f->db);
	str_free(&err);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];

	userdb_close(f->db);
	snprintf(path, sizeof path, "%s/%s", f->dir, USERDB_FILE);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_check_ok(void **state)
{
	struct fixture *f = *state;
	struct str canon = STR_INIT;

	str_append(&canon, "old");
	assert_int_equal(auth_check_password(f->db, "alice@example.org",
					     "correct horse", &canon),
			 AUTH_OK);
	assert_string_equal(str_c(&canon), "alice@example.org");
	/* Any case in the user name, canonical out. */
	assert_int_equal(auth_check_password(f->db, "ALICE@Example.ORG",
					     "correct horse", &canon),
			 AUTH_OK);
	assert_string_equal(str_c(&canon), "alice@example.org");
	/* Another method crypt(3) knows. */
	assert_int_equal(auth_check_password(f->db, "Carol@example.org",
					     "sha pass", &canon),
			 AUTH_OK);
	assert_string_equal(str_c(&canon), "carol@example.org");
	str_free(&canon);
}

static void test_check_failed(void **state)
{
	struct fixture *f = *state;
	struct str canon = STR_INIT;
	static const struct {
		const char *user, *password;
	} bad[] = {
		{ "alice@example.org", "Correct horse" },	/* wrong case */
		{ "alice@example.org", "correct horse " },
		{ "alice@example.org", "correct hors" },
		{ "alice@example.org", "" },
		{ "carol@example.org", "correct horse" },
		{ "nobody@example.org", "correct horse" },	/* unknown */
		{ "alice@example.net", "correct horse" },
		{ "alice", "correct horse" },
		{ "", "correct horse" },
		/* The dummy hash's phrase logs nobody in. */
		{ "nobody@example.org",
		  "sockmail-dummy-password-not-a-secret" },
		/* A locked account, right password. */
		{ "dave@example.org", "correct horse" },
	};
	(void)state;

	str_append(&canon, "untouched");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(auth_check_password(f->db, bad[i].user,
						     bad[i].password, &canon),
				 AUTH_FAILED);
	/* Longer than crypt(3) takes, or than an address can be. */
	char *longpw = xcalloc(1, 2000);
	memset(longpw, 'a', 1999);
	assert_int_equal(auth_check_password(f->db, "alice@example.org",
					     longpw, &canon), AUTH_FAILED);
	assert_int_equal(auth_check_password(f->db, longpw, "correct horse",
					     &canon), AUTH_FAILED);
	free(longpw);
	assert_string_equal(str_c(&canon), "untouched");
	str_free(&canon);
}

static void test_check_tempfail(void **state)
{
	struct fixture *f = *state;
	struct str canon = STR_INIT, err = STR_INIT;
	char path[128];

	assert_int_equal(auth_check_password(NULL, "alice@example.org",
					     "correct horse", &canon),
			 AUTH_TEMPFAIL);
	/* A record users.c would never write (a NUL inside) is a database
	 * error, not "unknown user". */
	userdb_close(f->db);
	snprintf(path, sizeof path, "%s/%s", f->dir, USERDB_FILE);
	struct tdb_context *tdb = tdb_open(path, 0, TDB_DEFAULT, O_RDWR, 0);
	assert_non_null(tdb);
	TDB_DATA k = { (unsigned char *)"U:eve@example.org", 17 };
	TDB_DATA v = { (unsigned char *)"$y$\0x", 5 };
	assert_int_equal(tdb_store(tdb, k, v, TDB_INSERT), 0);
	tdb_close(tdb);
	f->db = userdb_open(f->dir, false, &err);
	assert_non_null(f->db);
	assert_int_equal(auth_check_password(f->db, "eve@example.org", "x",
					     &canon), AUTH_TEMPFAIL);
	assert_int_equal(canon.len, 0);
	str_free(&err);
}

/* One failed check of user: exactly one hash computation, and returns the
 * algorithm-and-cost prefix of the setting it used. */
static char *check_once(struct userdb *db, const char *user)
{
	struct str canon = STR_INIT;
	unsigned long before = auth_hash_count;
	assert_int_equal(auth_check_password(db, user, "wrong", &canon),
			 AUTH_FAILED);
	assert_int_equal(auth_hash_count, before + 1);
	str_free(&canon);
	return xstrdup(auth_last_setting);
}

/* No user-existence oracle: an unknown or locked user costs what a known
 * one does -- the same number of hash computations with the same
 * algorithm and cost (asserted on the work done, not on a stopwatch, so
 * a busy machine cannot make it flake). */
static void test_check_same_work(void **state)
{
	struct fixture *f = *state;

	char *known = check_once(f->db, "alice@example.org");
	char *unknown = check_once(f->db, "nobody@example.org");
	char *locked = check_once(f->db, "dave@example.org");
	assert_string_equal(unknown, known);
	assert_string_equal(locked, known);
	/* and it is what new hashes get (libxcrypt's default cost) */
	char *fresh = crypt_gensalt_ra("$y$", 0, NULL, 0);
	assert_non_null(fresh);
	assert_int_equal(strncmp(fresh, known, strlen(known)), 0);
	free(fresh);
	free(known);
	free(unknown);
	free(locked);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64_rfc_vectors),
		cmocka_unit_test(test_base64_binary_roundtrip),
		cmocka_unit_test(test_base64_appends),
		cmocka_unit_test(test_base64_malformed),
		cmocka_unit_test(test_sasl_plain_good),
		cmocka_unit_test(test_sasl_plain_bad),
		cmocka_unit_test_setup_teardown(test_check_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_failed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_check_tempfail, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_check_same_work, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
