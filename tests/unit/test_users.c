/*
 * test_users: users.tdb in a temp dir: records, lookups through a fresh
 * read-only handle, recipient resolution (aliases, catch-all, subaddress,
 * loops), and the writers' refusals, each of which must change nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tdb.h>

#include "str.h"
#include "strlist.h"
#include "users.h"

struct fixture {
	char dir[64];
	struct userdb *db;	/* the writer, open during a test */
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	struct str err = STR_INIT;

	strcpy(f->dir, "/tmp/test_users.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->db = userdb_open(f->dir, true, &err);
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

static struct userdb *open_reader(const char *dir)
{
	struct str err = STR_INIT;
	struct userdb *db = userdb_open(dir, false, &err);
	if (db == NULL)
		fail_msg("reader open: %s", str_c(&err));
	str_free(&err);
	return db;
}

/* Close the writer and open a fresh reader (tdb allows one handle per file
 * and process). */
static struct userdb *reopen_reader(struct fixture *f)
{
	userdb_close(f->db);
	f->db = NULL;
	return open_reader(f->dir);
}

static struct strlist targets_of(const char *first, ...)
{
	struct strlist l = STRLIST_INIT;
	va_list ap;
	va_start(ap, first);
	for (const char *t = first; t != NULL; t = va_arg(ap, const char *))
		strlist_add(&l, t);
	va_end(ap);
	return l;
}

#define T(...) targets_of(__VA_ARGS__, (const char *)NULL)

static void ok_domain(struct userdb *db, const char *d)
{
	struct str err = STR_INIT;
	if (userdb_domain_add(db, d, &err) != 0)
		fail_msg("domain add %s: %s", d, str_c(&err));
	str_free(&err);
}

static void ok_user(struct userdb *db, const char *a, const char *hash)
{
	struct str err = STR_INIT;
	if (userdb_user_add(db, a, hash, &err) != 0)
		fail_msg("user add %s: %s", a, str_c(&err));
	str_free(&err);
}

static void ok_alias(struct userdb *db, const char *a, struct strlist t)
{
	struct str err = STR_INIT;
	if (userdb_alias_add(db, a, &t, &err) != 0)
		fail_msg("alias add %s: %s", a, str_c(&err));
	strlist_free(&t);
	str_free(&err);
}

/* Every record, as text: what "nothing changed" is compared on. */
static char *snapshot(struct userdb *db)
{
	struct strlist l = STRLIST_INIT;
	struct str s = STR_INIT, hash = STR_INIT;

	assert_int_equal(userdb_list_domains(db, &l), 0);
	for (size_t i = 0; i < l.n; i++)
		str_printf(&s, "D %s\n", l.items[i]);
	strlist_clear(&l);
	assert_int_equal(userdb_list_users(db, NULL, &l), 0);
	for (size_t i = 0; i < l.n; i++) {
		str_clear(&hash);
		assert_int_equal(userdb_user_hash(db, l.items[i], &hash), 1);
		str_printf(&s, "U %s %s\n", l.items[i], hash.data);
	}
	strlist_clear(&l);
	assert_int_equal(userdb_list_aliases(db, NULL, &l), 0);
	for (size_t i = 0; i < l.n; i++)
		str_printf(&s, "A %s\n", l.items[i]);
	strlist_free(&l);
	str_free(&hash);
	return s.data;
}

/* The standard population most tests start from. */
static void populate(struct userdb *db)
{
	ok_domain(db, "example.org");
	ok_domain(db, "Example.NET");
	ok_user(db, "alice@example.org", "$y$hashA");
	ok_user(db, "Bob@Example.Org", "$y$hashB");
	ok_user(db, "carol@example.net", "$y$hashC");
	ok_alias(db, "info@example.org",
		 T("alice@example.org", "bob@example.org", "ext@remote.test"));
	ok_alias(db, "Sales@Example.org",
		 T("Alice@EXAMPLE.org", "Foo.Bar@Remote.Test"));
	ok_alias(db, "@example.net", T("carol@example.net"));
	ok_alias(db, "alice+lists@example.org", T("bob@example.org"));
}

static void assert_list(const struct strlist *l, const char *const *want)
{
	size_t n = 0;
	while (want[n] != NULL)
		n++;
	if (l->n != n) {
		for (size_t i = 0; i < l->n; i++)
			print_message("  got[%zu] = %s\n", i, l->items[i]);
		fail_msg("list has %zu items, want %zu", l->n, n);
	}
	for (size_t i = 0; i < n; i++)
		assert_string_equal(l->items[i], want[i]);
}

#define LIST(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define EMPTY ((const char *const[]){ NULL })

static void check_resolve(struct userdb *db, const char *local,
			  const char *domain, enum userdb_resolve want,
			  const char *const *mailboxes,
			  const char *const *remote)
{
	struct strlist mb = STRLIST_INIT, rem = STRLIST_INIT;
	enum userdb_resolve r = userdb_resolve(db, local, domain, &mb, &rem);
	if (r != want)
		fail_msg("resolve %s@%s = %d, want %d", local, domain, r, want);
	assert_list(&mb, mailboxes);
	assert_list(&rem, remote);
	strlist_free(&mb);
	strlist_free(&rem);
}

/* Store a raw record, as an older or foreign writer might have. */
static void raw_store(const char *dir, const char *key, const char *val)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, USERDB_FILE);
	struct tdb_context *tdb = tdb_open(path, 0, TDB_DEFAULT, O_RDWR, 0);
	assert_non_null(tdb);
	TDB_DATA k = { (unsigned char *)key, strlen(key) };
	TDB_DATA v = { (unsigned char *)val, strlen(val) };
	assert_int_equal(tdb_store(tdb, k, v, TDB_REPLACE), 0);
	tdb_close(tdb);
}

/* ---- open ---- */

static void test_open_reader_missing(void **state)
{
	struct str err = STR_INIT;
	char dir[] = "/tmp/test_users.XXXXXX";
	(void)state;

	assert_non_null(mkdtemp(dir));
	assert_null(userdb_open(dir, false, &err));
	assert_non_null(strstr(str_c(&err), "does not exist"));
	assert_non_null(strstr(str_c(&err), dir));
	rmdir(dir);
	str_free(&err);
}

static void test_open_creates_0640(void **state)
{
	struct fixture *f = *state;
	char path[128];
	struct stat st;

	snprintf(path, sizeof path, "%s/%s", f->dir, USERDB_FILE);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
}

static void test_open_chowns_like_state_dir(void **state)
{
	struct fixture *f = *state;
	struct str err = STR_INIT;
	char path[128];
	struct stat st;

	if (geteuid() != 0)
		skip();
	userdb_close(f->db);
	snprintf(path, sizeof path, "%s/%s", f->dir, USERDB_FILE);
	unlink(path);
	assert_int_equal(chown(f->dir, 65534, 65534), 0);
	f->db = userdb_open(f->dir, true, &err);
	assert_non_null(f->db);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 65534);
	/* An existing file keeps its owner. */
	assert_int_equal(chown(path, 0, 0), 0);
	userdb_close(f->db);
	f->db = userdb_open(f->dir, true, &err);
	assert_non_null(f->db);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, 0);
	str_free(&err);
}

/* ---- lookups through a fresh reader ---- */

static void test_lookups(void **state)
{
	struct fixture *f = *state;
	struct str hash = STR_INIT;
	struct strlist t = STRLIST_INIT;

	populate(f->db);
	struct userdb *r = reopen_reader(f);

	assert_int_equal(userdb_domain_exists(r, "example.org"), 1);
	assert_int_equal(userdb_domain_exists(r, "EXAMPLE.net"), 1);
	assert_int_equal(userdb_domain_exists(r, "remote.test"), 0);
	assert_int_equal(userdb_domain_exists(r, "org"), 0);

	assert_int_equal(userdb_user_hash(r, "alice@example.org", &hash), 1);
	assert_string_equal(hash.data, "$y$hashA");
	str_clear(&hash);
	assert_int_equal(userdb_user_hash(r, "BOB@example.ORG", &hash), 1);
	assert_string_equal(hash.data, "$y$hashB");
	str_clear(&hash);
	assert_int_equal(userdb_user_hash(r, "info@example.org", &hash), 0);
	assert_int_equal(userdb_user_hash(r, "alice@example.net", &hash), 0);
	assert_int_equal(hash.len, 0);

	assert_int_equal(userdb_alias_targets(r, "INFO@example.org", &t), 1);
	assert_list(&t, LIST("alice@example.org", "bob@example.org",
			     "ext@remote.test"));
	strlist_clear(&t);
	/* Local targets are stored lower-cased; remote ones keep their
	 * local part. */
	assert_int_equal(userdb_alias_targets(r, "sales@example.org", &t), 1);
	assert_list(&t, LIST("alice@example.org", "Foo.Bar@remote.test"));
	strlist_clear(&t);
	assert_int_equal(userdb_alias_targets(r, "@Example.net", &t), 1);
	assert_list(&t, LIST("carol@example.net"));
	strlist_clear(&t);
	assert_int_equal(userdb_alias_targets(r, "alice@example.org", &t), 0);
	assert_int_equal(t.n, 0);

	userdb_close(r);
	strlist_free(&t);
	str_free(&hash);
}

static void test_raw_records(void **state)
{
	struct fixture *f = *state;
	char path[128];

	ok_domain(f->db, "example.org");
	ok_user(f->db, "alice@example.org", "$y$h");
	ok_alias(f->db, "x@example.org", T("alice@example.org", "a@b.test"));
	userdb_close(f->db);
	f->db = NULL;

	/* The header fixes the format: check it with tdb itself. */
	snprintf(path, sizeof path, "%s/%s", f->dir, USERDB_FILE);
	struct tdb_context *tdb = tdb_open(path, 0, TDB_DEFAULT, O_RDONLY, 0);
	assert_non_null(tdb);
	const char *keys[] = { "D:example.org", "U:alice@example.org",
			       "A:x@example.org" };
	const char *vals[] = { "1", "$y$h", "alice@example.org\na@b.test\n" };
	for (int i = 0; i < 3; i++) {
		TDB_DATA k = { (unsigned char *)keys[i], strlen(keys[i]) };
		TDB_DATA v = tdb_fetch(tdb, k);
		assert_non_null(v.dptr);
		assert_int_equal(v.dsize, strlen(vals[i]));
		assert_memory_equal(v.dptr, vals[i], v.dsize);
		free(v.dptr);
	}
	tdb_close(tdb);
}

static void test_listings(void **state)
{
	struct fixture *f = *state;
	struct strlist l = STRLIST_INIT;

	populate(f->db);
	ok_domain(f->db, "a.example.org");
	ok_user(f->db, "zed@a.example.org", "$y$z");
	struct userdb *r = reopen_reader(f);

	assert_int_equal(userdb_list_domains(r, &l), 0);
	assert_list(&l, LIST("a.example.org", "example.net", "example.org"));
	strlist_clear(&l);
	assert_int_equal(userdb_list_users(r, NULL, &l), 0);
	assert_list(&l, LIST("alice@example.org", "bob@example.org",
			     "carol@example.net", "zed@a.example.org"));
	strlist_clear(&l);
	/* A domain filter is exact: example.org is not a.example.org. */
	assert_int_equal(userdb_list_users(r, "Example.Org", &l), 0);
	assert_list(&l, LIST("alice@example.org", "bob@example.org"));
	strlist_clear(&l);
	assert_int_equal(userdb_list_users(r, "nowhere.test", &l), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(userdb_list_aliases(r, NULL, &l), 0);
	assert_list(&l, LIST("@example.net: carol@example.net",
			     "alice+lists@example.org: bob@example.org",
			     "info@example.org: alice@example.org, "
			     "bob@example.org, ext@remote.test",
			     "sales@example.org: alice@example.org, "
			     "Foo.Bar@remote.test"));
	strlist_clear(&l);
	assert_int_equal(userdb_list_aliases(r, "example.net", &l), 0);
	assert_list(&l, LIST("@example.net: carol@example.net"));
	userdb_close(r);
	strlist_free(&l);
}

/* ---- resolution ---- */

static void test_resolve_basic(void **state)
{
	struct fixture *f = *state;

	populate(f->db);
	struct userdb *r = reopen_reader(f);

	check_resolve(r, "alice", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	/* case-insensitive, canonical lower-case mailbox */
	check_resolve(r, "ALICE", "Example.ORG", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	check_resolve(r, "info", "example.org", RESOLVE_OK,
		      LIST("alice@example.org", "bob@example.org"),
		      LIST("ext@remote.test"));
	check_resolve(r, "SALES", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), LIST("Foo.Bar@remote.test"));
	/* catch-all, and a real user of a catch-all domain */
	check_resolve(r, "whoever", "example.net", RESOLVE_OK,
		      LIST("carol@example.net"), EMPTY);
	check_resolve(r, "carol", "EXAMPLE.NET", RESOLVE_OK,
		      LIST("carol@example.net"), EMPTY);
	/* unknown user, foreign domain */
	check_resolve(r, "nobody", "example.org", RESOLVE_NO_USER, EMPTY,
		      EMPTY);
	check_resolve(r, "alice", "remote.test", RESOLVE_NO_DOMAIN, EMPTY,
		      EMPTY);
	check_resolve(r, "alice", "org", RESOLVE_NO_DOMAIN, EMPTY, EMPTY);
	check_resolve(r, "", "example.org", RESOLVE_NO_USER, EMPTY, EMPTY);
	userdb_close(r);
}

/* userdb_resolve_explicit: the same, but a catch-all owns nothing (a
 * sender check must not let carol send as anyone@example.net). */
static void test_resolve_explicit(void **state)
{
	struct fixture *f = *state;

	populate(f->db);
	struct userdb *r = reopen_reader(f);
	struct strlist mb = STRLIST_INIT, rem = STRLIST_INIT;
	assert_int_equal(userdb_resolve_explicit(r, "whoever", "example.net",
						 &mb, &rem), RESOLVE_NO_USER);
	assert_int_equal(mb.n, 0);
	assert_int_equal(userdb_resolve_explicit(r, "carol", "example.net",
						 &mb, &rem), RESOLVE_OK);
	assert_int_equal(mb.n, 1);
	assert_string_equal(mb.items[0], "carol@example.net");
	strlist_clear(&mb);
	assert_int_equal(userdb_resolve_explicit(r, "info", "example.org",
						 &mb, &rem), RESOLVE_OK);
	assert_true(strlist_contains(&mb, "alice@example.org"));
	strlist_free(&mb);
	strlist_free(&rem);
	userdb_close(r);
}

static void test_resolve_subaddress(void **state)
{
	struct fixture *f = *state;

	populate(f->db);
	struct userdb *r = reopen_reader(f);

	check_resolve(r, "bob+news", "example.org", RESOLVE_OK,
		      LIST("bob@example.org"), EMPTY);
	check_resolve(r, "Bob+News+More", "example.org", RESOLVE_OK,
		      LIST("bob@example.org"), EMPTY);
	check_resolve(r, "bob+", "example.org", RESOLVE_OK,
		      LIST("bob@example.org"), EMPTY);
	/* "alice+lists" is an alias of its own: exact match wins */
	check_resolve(r, "alice+lists", "example.org", RESOLVE_OK,
		      LIST("bob@example.org"), EMPTY);
	check_resolve(r, "alice+other", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	/* an alias through its subaddress */
	check_resolve(r, "info+x", "example.org", RESOLVE_OK,
		      LIST("alice@example.org", "bob@example.org"),
		      LIST("ext@remote.test"));
	/* nothing before the '+': no stripping */
	check_resolve(r, "+bob", "example.org", RESOLVE_NO_USER, EMPTY,
		      EMPTY);
	check_resolve(r, "nobody+x", "example.org", RESOLVE_NO_USER, EMPTY,
		      EMPTY);
	/* catch-all after the subaddress fails */
	check_resolve(r, "carol+x", "example.net", RESOLVE_OK,
		      LIST("carol@example.net"), EMPTY);
	check_resolve(r, "zz+x", "example.net", RESOLVE_OK,
		      LIST("carol@example.net"), EMPTY);
	userdb_close(r);
}

static void test_resolve_alias_over_user(void **state)
{
	struct fixture *f = *state;

	populate(f->db);
	ok_user(f->db, "dave@example.org", "$y$d");
	/* carol is a user and an alias: the alias wins, no copy for her */
	ok_alias(f->db, "carol@example.net", T("alice@example.org"));
	/* bob keeps a copy and forwards one */
	ok_alias(f->db, "bob@example.org",
		 T("BOB@example.org", "bob@remote.test"));
	/* the same through a subaddress */
	ok_alias(f->db, "dave@example.org",
		 T("dave@example.org", "alice@example.org"));
	struct userdb *r = reopen_reader(f);

	check_resolve(r, "carol", "example.net", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	check_resolve(r, "bob", "example.org", RESOLVE_OK,
		      LIST("bob@example.org"), LIST("bob@remote.test"));
	check_resolve(r, "dave+tag", "example.org", RESOLVE_OK,
		      LIST("dave@example.org", "alice@example.org"), EMPTY);
	/* info -> bob -> (bob's mailbox, bob@remote.test) */
	check_resolve(r, "info", "example.org", RESOLVE_OK,
		      LIST("alice@example.org", "bob@example.org"),
		      LIST("bob@remote.test", "ext@remote.test"));
	userdb_close(r);
}

static void test_resolve_nested_dedup_dangling(void **state)
{
	struct fixture *f = *state;

	populate(f->db);
	ok_alias(f->db, "all@example.org",
		 T("info@example.org", "sales@example.org",
		   "alice@example.org", "ext@remote.test"));
	ok_alias(f->db, "half@example.org",
		 T("ghost@example.org", "alice@example.org"));
	ok_alias(f->db, "gone@example.org", T("ghost@example.org"));
	/* a local target reaching the catch-all of its domain */
	ok_alias(f->db, "tonet@example.org", T("anyone@example.net"));
	struct userdb *r = reopen_reader(f);

	check_resolve(r, "all", "example.org", RESOLVE_OK,
		      LIST("alice@example.org", "bob@example.org"),
		      LIST("ext@remote.test", "Foo.Bar@remote.test"));
	check_resolve(r, "half", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	check_resolve(r, "gone", "example.org", RESOLVE_NO_USER, EMPTY,
		      EMPTY);
	check_resolve(r, "tonet", "example.org", RESOLVE_OK,
		      LIST("carol@example.net"), EMPTY);
	userdb_close(r);
}

static void test_resolve_appends_only_on_success(void **state)
{
	struct fixture *f = *state;
	struct strlist mb = STRLIST_INIT, rem = STRLIST_INIT;

	populate(f->db);
	struct userdb *r = reopen_reader(f);
	strlist_add(&mb, "bob@example.org");
	strlist_add(&rem, "x@y.test");
	assert_int_equal(userdb_resolve(r, "info", "example.org", &mb, &rem),
			 RESOLVE_OK);
	assert_list(&mb, LIST("bob@example.org", "alice@example.org"));
	assert_list(&rem, LIST("x@y.test", "ext@remote.test"));
	assert_int_equal(userdb_resolve(r, "nobody", "example.org", &mb,
					&rem), RESOLVE_NO_USER);
	assert_int_equal(mb.n, 2);
	assert_int_equal(rem.n, 2);
	userdb_close(r);
	strlist_free(&mb);
	strlist_free(&rem);
}

static void test_resolve_loops(void **state)
{
	struct fixture *f = *state;
	struct str key = STR_INIT, val = STR_INIT;

	populate(f->db);
	userdb_close(f->db);
	f->db = NULL;
	/* Loops cannot be added through the API (see test_alias_add_loop),
	 * but a file may hold them: write the records directly. */
	raw_store(f->dir, "A:loop1@example.org", "loop2@example.org\n");
	raw_store(f->dir, "A:loop2@example.org", "loop1@example.org\n");
	raw_store(f->dir, "A:self@example.org", "self@example.org\n");
	/* A cycle that also reaches a mailbox is harmless. */
	raw_store(f->dir, "A:c1@example.org",
		  "c2@example.org\nalice@example.org\n");
	raw_store(f->dir, "A:c2@example.org", "c1@example.org\n");
	/* A catch-all whose target falls back to the catch-all. */
	raw_store(f->dir, "A:@example.net", "missing@example.net\n");
	/* Chains: d1 .. d10 -> alice is 10 aliases deep (fine); e1 .. e11 is
	 * one too many. */
	for (int i = 1; i <= 10; i++) {
		str_clear(&key);
		str_clear(&val);
		str_printf(&key, "A:d%d@example.org", i);
		if (i < 10)
			str_printf(&val, "d%d@example.org\n", i + 1);
		else
			str_append(&val, "alice@example.org\n");
		raw_store(f->dir, key.data, val.data);
	}
	for (int i = 1; i <= 11; i++) {
		str_clear(&key);
		str_clear(&val);
		str_printf(&key, "A:e%d@example.org", i);
		if (i < 11)
			str_printf(&val, "e%d@example.org\n", i + 1);
		else
			str_append(&val, "alice@example.org\n");
		raw_store(f->dir, key.data, val.data);
	}
	/* Fan-out cycles must not take exponential time. */
	for (int i = 0; i < 10; i++) {
		str_clear(&key);
		str_clear(&val);
		str_printf(&key, "A:f%d@example.org", i);
		for (int j = 0; j < 10; j++)
			str_printf(&val, "f%d@example.org\n", j);
		raw_store(f->dir, key.data, val.data);
	}

	struct userdb *r = open_reader(f->dir);
	check_resolve(r, "loop1", "example.org", RESOLVE_LOOP, EMPTY, EMPTY);
	check_resolve(r, "self", "example.org", RESOLVE_LOOP, EMPTY, EMPTY);
	check_resolve(r, "c1", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	check_resolve(r, "c2", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	check_resolve(r, "x", "example.net", RESOLVE_LOOP, EMPTY, EMPTY);
	check_resolve(r, "carol", "example.net", RESOLVE_OK,
		      LIST("carol@example.net"), EMPTY);
	check_resolve(r, "d1", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	check_resolve(r, "e1", "example.org", RESOLVE_LOOP, EMPTY, EMPTY);
	check_resolve(r, "e2", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	check_resolve(r, "f0", "example.org", RESOLVE_LOOP, EMPTY, EMPTY);
	userdb_close(r);
	str_free(&key);
	str_free(&val);
}

/* A reader opened before a commit sees the commit afterwards. */
static void test_reader_sees_later_commit(void **state)
{
	struct fixture *f = *state;

	populate(f->db);
	struct userdb *r = reopen_reader(f);
	check_resolve(r, "new", "example.org", RESOLVE_NO_USER, EMPTY, EMPTY);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* tdb refuses a second handle on a file in one process */
		userdb_close(r);
		struct str err = STR_INIT;
		struct userdb *w = userdb_open(f->dir, true, &err);
		/* grow the file well past the reader's mapping */
		for (int i = 0; w != NULL && i < 200; i++) {
			struct str a = STR_INIT;
			str_printf(&a, "u%d@example.org", i);
			if (userdb_user_add(w, a.data, "$y$x", &err) != 0)
				_exit(2);
			str_free(&a);
		}
		if (w == NULL || userdb_user_add(w, "new@example.org", "$y$n",
						 &err) != 0)
			_exit(1);
		userdb_close(w);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	check_resolve(r, "new", "example.org", RESOLVE_OK,
		      LIST("new@example.org"), EMPTY);
	check_resolve(r, "u199", "example.org", RESOLVE_OK,
		      LIST("u199@example.org"), EMPTY);
	userdb_close(r);
}

/* A reader racing a writer sees the alias whole or not at all, never a
 * torn commit (tdb does no locking on a read-only handle; users.c does). */
static void test_reader_never_sees_torn_commit(void **state)
{
	struct fixture *f = *state;
	struct strlist t = STRLIST_INIT;
	long lookups = 0, whole = 0, absent = 0, torn = 0;
	int status;

	ok_domain(f->db, "e.test");
	ok_user(f->db, "u@e.test", "$y$x");
	userdb_close(f->db);
	f->db = NULL;
	for (int i = 0; i < 60; i++) {
		char b[64];
		snprintf(b, sizeof b, "r%d@remote%d.test", i, i);
		strlist_add(&t, b);
	}
	strlist_add(&t, "u@e.test");
	setenv("TDB_NO_FSYNC", "1", 1);	/* speed only */

	struct userdb *r = open_reader(f->dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct str err = STR_INIT;
		struct strlist none = STRLIST_INIT;
		userdb_close(r);
		struct userdb *w = userdb_open(f->dir, true, &err);
		for (int i = 0; w != NULL && i < 150; i++) {
			char b[64];
			snprintf(b, sizeof b, "f%d@e.test", i);
			if (userdb_alias_add(w, "a@e.test", &t, &err) != 0 ||
			    userdb_user_add(w, b, "$y$ffffffffffffffff",
					    &err) != 0 ||
			    userdb_alias_del(w, "a@e.test", &none, &err) != 0)
				_exit(1);
		}
		_exit(w == NULL ? 1 : 0);
	}
	while (waitpid(pid, &status, WNOHANG) == 0) {
		struct strlist mb = STRLIST_INIT, rem = STRLIST_INIT;
		enum userdb_resolve res = userdb_resolve(r, "a", "e.test", &mb,
							 &rem);
		lookups++;
		if (res == RESOLVE_OK && mb.n == 1 && rem.n == 60)
			whole++;
		else if (res == RESOLVE_NO_USER && mb.n == 0 && rem.n == 0)
			absent++;
		else
			torn++;
		strlist_free(&mb);
		strlist_free(&rem);
	}
	unsetenv("TDB_NO_FSYNC");
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	print_message("  %ld lookups: %ld whole, %ld absent, %ld torn\n",
		      lookups, whole, absent, torn);
	assert_int_equal(torn, 0);
	userdb_close(r);
	strlist_free(&t);
}

/* ---- writers that succeed ---- */

static void test_writers_ok(void **state)
{
	struct fixture *f = *state;
	struct str err = STR_INIT, hash = STR_INIT;
	struct strlist t = STRLIST_INIT, l = STRLIST_INIT;

	populate(f->db);
	assert_int_equal(userdb_user_set_hash(f->db, "ALICE@example.org",
					      "$y$new", &err), 0);
	assert_int_equal(userdb_user_hash(f->db, "alice@example.org", &hash),
			 1);
	assert_string_equal(hash.data, "$y$new");

	/* targets are added without duplicates */
	t = T("ext@remote.test", "dave@remote.test");
	assert_int_equal(userdb_alias_add(f->db, "info@example.org", &t,
					  &err), 0);
	strlist_free(&t);
	assert_int_equal(userdb_alias_targets(f->db, "info@example.org", &l),
			 1);
	assert_list(&l, LIST("alice@example.org", "bob@example.org",
			     "ext@remote.test", "dave@remote.test"));
	strlist_clear(&l);

	/* remove some targets, then the last one removes the alias */
	t = T("EXT@remote.test", "Alice@Example.org");
	assert_int_equal(userdb_alias_targets(f->db, "info@example.org", &l),
			 1);
	strlist_clear(&l);
	/* a remote local part is compared as written */
	assert_int_equal(userdb_alias_del(f->db, "info@example.org", &t,
					  &err), -1);
	strlist_free(&t);
	t = T("ext@REMOTE.test", "Alice@Example.org");
	assert_int_equal(userdb_alias_del(f->db, "info@example.org", &t,
					  &err), 0);
	strlist_free(&t);
	assert_int_equal(userdb_alias_targets(f->db, "info@example.org", &l),
			 1);
	assert_list(&l, LIST("bob@example.org", "dave@remote.test"));
	strlist_clear(&l);
	t = T("bob@example.org", "dave@remote.test");
	assert_int_equal(userdb_alias_del(f->db, "info@example.org", &t,
					  &err), 0);
	strlist_free(&t);
	assert_int_equal(userdb_alias_targets(f->db, "info@example.org", &l),
			 0);

	/* whole alias, catch-all */
	assert_int_equal(userdb_alias_del(f->db, "SALES@example.org", &t,
					  &err), 0);
	assert_int_equal(userdb_alias_targets(f->db, "sales@example.org", &l),
			 0);
	assert_int_equal(userdb_alias_del(f->db, "@example.net", &t, &err),
			 0);
	assert_int_equal(userdb_alias_targets(f->db, "@example.net", &l), 0);

	/* empty a domain, then delete it */
	assert_int_equal(userdb_user_del(f->db, "carol@example.net", &err),
			 0);
	assert_int_equal(userdb_domain_del(f->db, "EXAMPLE.net", &err), 0);
	assert_int_equal(userdb_domain_exists(f->db, "example.net"), 0);

	/* UTF-8 user names are allowed */
	ok_user(f->db, "j\xc3\xb6rg@example.org", "$y$j");
	assert_int_equal(userdb_user_hash(f->db, "J\xc3\xb6rg@example.org",
					  &hash), 1);

	char *snap = snapshot(f->db);
	assert_string_equal(snap,
			    "D example.org\n"
			    "U alice@example.org $y$new\n"
			    "U bob@example.org $y$hashB\n"
			    "U j\xc3\xb6rg@example.org $y$j\n"
			    "A alice+lists@example.org: bob@example.org\n");
	free(snap);
	strlist_free(&l);
	str_free(&err);
	str_free(&hash);
}

/* ---- writers that must refuse and change nothing ---- */

enum op { DOM_ADD, DOM_DEL, USER_ADD, USER_PASSWD, USER_DEL, ALIAS_ADD,
	  ALIAS_DEL };

static void refuse(struct userdb *db, enum op op, const char *arg,
		   const char *hash, struct strlist t, const char *want_err)
{
	struct str err = STR_INIT;
	char *before = snapshot(db);
	int r = -2;

	switch (op) {
	case DOM_ADD: r = userdb_domain_add(db, arg, &err); break;
	case DOM_DEL: r = userdb_domain_del(db, arg, &err); break;
	case USER_ADD: r = userdb_user_add(db, arg, hash, &err); break;
	case USER_PASSWD: r = userdb_user_set_hash(db, arg, hash, &err); break;
	case USER_DEL: r = userdb_user_del(db, arg, &err); break;
	case ALIAS_ADD: r = userdb_alias_add(db, arg, &t, &err); break;
	case ALIAS_DEL: r = userdb_alias_del(db, arg, &t, &err); break;
	}
	if (r != -1)
		fail_msg("op %d on %s returned %d, want -1", op, arg, r);
	assert_string_equal(str_c(&err), want_err);
	assert_null(strchr(str_c(&err), '\n'));
	char *after = snapshot(db);
	assert_string_equal(before, after);
	free(before);
	free(after);
	strlist_free(&t);
	str_free(&err);
}

#define NONE ((struct strlist)STRLIST_INIT)

static void test_writer_errors(void **state)
{
	struct fixture *f = *state;
	struct userdb *db = f->db;

	populate(db);

	refuse(db, DOM_ADD, "bad..domain", NULL, NONE,
	       "invalid domain bad..domain");
	refuse(db, DOM_ADD, "[1.2.3.4]", NULL, NONE,
	       "invalid domain [1.2.3.4]");
	refuse(db, DOM_ADD, "EXAMPLE.org", NULL, NONE,
	       "domain example.org is already a local domain");
	refuse(db, DOM_DEL, "nope.test", NULL, NONE,
	       "domain nope.test is not a local domain");
	refuse(db, DOM_DEL, "example.org", NULL, NONE,
	       "domain example.org still has 2 users and 3 aliases; "
	       "delete them first");
	refuse(db, DOM_DEL, "example.net", NULL, NONE,
	       "domain example.net still has 1 user and 1 alias; "
	       "delete them first");
	ok_domain(db, "only-alias.test");
	ok_alias(db, "@only-alias.test", T("alice@example.org"));
	refuse(db, DOM_DEL, "only-alias.test", NULL, NONE,
	       "domain only-alias.test still has 1 alias; delete it first");
	ok_user(db, "u1@only-alias.test", "$y$1");
	ok_user(db, "u2@only-alias.test", "$y$2");
	struct str err = STR_INIT;
	struct strlist none = STRLIST_INIT;
	assert_int_equal(userdb_alias_del(db, "@only-alias.test", &none, &err),
			 0);
	refuse(db, DOM_DEL, "only-alias.test", NULL, NONE,
	       "domain only-alias.test still has 2 users; delete them first");
	str_free(&err);

	refuse(db, USER_ADD, "dave@unknown.test", "$y$x", NONE,
	       "domain unknown.test is not a local domain; add it with: "
	       "sockmailctl domain add unknown.test");
	refuse(db, USER_ADD, "ALICE@example.org", "$y$x", NONE,
	       "user alice@example.org already exists");
	refuse(db, USER_ADD, "a+b@example.org", "$y$x", NONE,
	       "invalid user a+b@example.org: the user name must not contain "
	       "'+' (it starts a subaddress tag)");
	refuse(db, USER_ADD, "\"a..b\"@example.org", "$y$x", NONE,
	       "invalid user \"a..b\"@example.org: the user name must not "
	       "start with '.' or contain \"..\"");
	refuse(db, USER_ADD, "\".a\"@example.org", "$y$x", NONE,
	       "invalid user \".a\"@example.org: the user name must not "
	       "start with '.' or contain \"..\"");
	refuse(db, USER_ADD, "\"a/b\"@example.org", "$y$x", NONE,
	       "invalid user \"a/b\"@example.org: the user name may only "
	       "contain letters, digits, '.', '_' and '-'");
	refuse(db, USER_ADD, "a=b@example.org", "$y$x", NONE,
	       "invalid user a=b@example.org: the user name may only "
	       "contain letters, digits, '.', '_' and '-'");
	refuse(db, USER_ADD, "no-at-sign", "$y$x", NONE,
	       "invalid user no-at-sign: syntax error in mailbox address");
	refuse(db, USER_ADD, "x@[1.2.3.4]", "$y$x", NONE,
	       "invalid user x@[1.2.3.4]: the domain must be a name, not an "
	       "address literal");
	refuse(db, USER_ADD, "dave@example.org", "", NONE,
	       "invalid password hash for dave@example.org");
	refuse(db, USER_ADD, "dave@example.org", "$y$a b", NONE,
	       "invalid password hash for dave@example.org");
	refuse(db, USER_PASSWD, "nobody@example.org", "$y$x", NONE,
	       "no such user nobody@example.org");
	refuse(db, USER_PASSWD, "alice@example.org", "", NONE,
	       "invalid password hash for alice@example.org");
	refuse(db, USER_DEL, "Nobody@example.org", NULL, NONE,
	       "no such user nobody@example.org");
	refuse(db, USER_DEL, "info@example.org", NULL, NONE,
	       "no such user info@example.org");
	refuse(db, USER_DEL, "x@unknown.test", NULL, NONE,
	       "domain unknown.test is not a local domain; add it with: "
	       "sockmailctl domain add unknown.test");

	refuse(db, ALIAS_ADD, "x@example.org", NULL, NONE,
	       "alias x@example.org needs at least one target");
	refuse(db, ALIAS_ADD, "x@unknown.test", NULL, T("alice@example.org"),
	       "domain unknown.test is not a local domain; add it with: "
	       "sockmailctl domain add unknown.test");
	refuse(db, ALIAS_ADD, "@unknown.test", NULL, T("alice@example.org"),
	       "domain unknown.test is not a local domain; add it with: "
	       "sockmailctl domain add unknown.test");
	refuse(db, ALIAS_ADD, "@bad..domain", NULL, T("alice@example.org"),
	       "invalid catch-all @bad..domain: bad domain");
	/* atomic: the good first target is not added either */
	refuse(db, ALIAS_ADD, "info@example.org", NULL,
	       T("new@remote.test", "not an address"),
	       "invalid target not an address: syntax error in mailbox "
	       "address");
	refuse(db, ALIAS_DEL, "nobody@example.org", NULL, NONE,
	       "no such alias nobody@example.org");
	refuse(db, ALIAS_DEL, "@example.org", NULL, NONE,
	       "no such alias @example.org");
	refuse(db, ALIAS_DEL, "info@example.org", NULL,
	       T("alice@example.org", "zed@remote.test"),
	       "alias info@example.org has no target zed@remote.test");
}

static void test_user_check_new(void **state)
{
	struct fixture *f = *state;
	struct str canon = STR_INIT, err = STR_INIT;

	populate(f->db);
	char *before = snapshot(f->db);
	assert_int_equal(userdb_user_check_new(f->db, "Dave@Example.ORG",
					       &canon, &err), 0);
	assert_string_equal(canon.data, "dave@example.org");
	assert_string_equal(str_c(&err), "");
	assert_int_equal(userdb_user_check_new(f->db, "bob@example.org",
					       &canon, &err), -1);
	assert_string_equal(err.data, "user bob@example.org already exists");
	assert_int_equal(userdb_user_check_new(f->db, "x+y@example.org",
					       &canon, &err), -1);
	assert_non_null(strstr(err.data, "must not contain '+'"));
	assert_int_equal(userdb_user_check_new(f->db, "x@nowhere.test",
					       &canon, &err), -1);
	assert_non_null(strstr(err.data, "not a local domain"));
	char *after = snapshot(f->db);
	assert_string_equal(before, after);
	free(before);
	free(after);
	str_free(&canon);
	str_free(&err);
}

static void test_alias_add_loop(void **state)
{
	struct fixture *f = *state;

	populate(f->db);
	/* dangling for now: allowed */
	ok_alias(f->db, "loop1@example.org", T("loop2@example.org"));
	/* closing the cycle is refused (the store is rolled back) */
	refuse(f->db, ALIAS_ADD, "loop2@example.org", NULL,
	       T("loop1@example.org"),
	       "alias loop2@example.org would loop (it leads back to itself "
	       "or nests deeper than 10 aliases)");
	refuse(f->db, ALIAS_ADD, "me@example.org", NULL,
	       T("me@example.org"),
	       "alias me@example.org would loop (it leads back to itself "
	       "or nests deeper than 10 aliases)");
	refuse(f->db, ALIAS_ADD, "@example.org", NULL,
	       T("someone@example.org"),
	       "alias @example.org would loop (it leads back to itself "
	       "or nests deeper than 10 aliases)");
	/* a cycle that also reaches a mailbox is fine */
	ok_alias(f->db, "loop2@example.org",
		 T("loop1@example.org", "alice@example.org"));
	struct userdb *r = reopen_reader(f);
	check_resolve(r, "loop1", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	userdb_close(r);
}

/* A writer killed inside its commit (here after tdb's prepare step, which
 * writes the recovery record, and before the commit) leaves a transaction
 * to roll back, which a read-only tdb_open refuses to do.  The reader's
 * open must roll it back and see the state before the commit, not fail
 * ("not a tdb file", every RCPT 451, every login refused) until some
 * later sockmailctl write happens to open the file read-write. */
static void test_reader_after_killed_commit(void **state)
{
	struct fixture *f = *state;
	char path[128];
	int status;

	populate(f->db);
	userdb_close(f->db);
	f->db = NULL;
	snprintf(path, sizeof path, "%s/%s", f->dir, USERDB_FILE);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct tdb_context *t = tdb_open(path, 0, TDB_DEFAULT, O_RDWR, 0);
		TDB_DATA k = { (unsigned char *)"U:late@example.org", 18 };
		TDB_DATA v = { (unsigned char *)"$y$late", 7 };
		if (t == NULL || tdb_transaction_start(t) != 0 ||
		    tdb_store(t, k, v, TDB_INSERT) != 0 ||
		    tdb_transaction_prepare_commit(t) != 0)
			_exit(1);
		_exit(0);	/* as if killed: neither commit nor cancel */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the state is the one meant: tdb alone cannot open it read-only */
	assert_null(tdb_open(path, 0, TDB_DEFAULT, O_RDONLY, 0));

	struct userdb *r = open_reader(f->dir);
	check_resolve(r, "alice", "example.org", RESOLVE_OK,
		      LIST("alice@example.org"), EMPTY);
	check_resolve(r, "late", "example.org", RESOLVE_NO_USER, EMPTY, EMPTY);
	userdb_close(r);
	/* rolled back for good: a plain read-only open works again */
	struct tdb_context *ro = tdb_open(path, 0, TDB_DEFAULT, O_RDONLY, 0);
	assert_non_null(ro);
	tdb_close(ro);
}

static void test_reader_refuses_writes(void **state)
{
	struct fixture *f = *state;
	struct str err = STR_INIT;
	char path[128];

	populate(f->db);
	struct userdb *r = reopen_reader(f);
	assert_int_equal(userdb_domain_add(r, "new.test", &err), -1);
	snprintf(path, sizeof path, "users database %s/%s is open read-only",
		 f->dir, USERDB_FILE);
	assert_string_equal(str_c(&err), path);
	assert_int_equal(userdb_domain_exists(r, "new.test"), 0);
	userdb_close(r);
	str_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_reader_missing),
		cmocka_unit_test_setup_teardown(test_open_creates_0640, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_open_chowns_like_state_dir,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookups, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_records, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_listings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve_basic, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resolve_explicit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resolve_subaddress, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resolve_alias_over_user,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_resolve_nested_dedup_dangling, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_resolve_appends_only_on_success, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve_loops, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reader_sees_later_commit,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_reader_never_sees_torn_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writers_ok, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_writer_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_user_check_new, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alias_add_loop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reader_refuses_writes,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_after_killed_commit,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
