/*
 * fuzz_users_record: users.tdb records as the handlers read them
 * (common/users.c).  The input is a set of raw records -- key 0xFE value,
 * records separated by 0xFF (octets that UTF-8 never uses), anything else
 * allowed, NUL included -- stored as they are into a fresh tdb in a tmpfs
 * directory, which is then opened read-only through userdb_open like a
 * handler does and read with every lookup: userdb_domain_exists,
 * userdb_user_hash, userdb_alias_targets, userdb_resolve and
 * userdb_resolve_explicit (alias chains, loops, catch-alls, subaddresses)
 * and the three listings.  Invariants checked:
 *   - nothing is read outside a record (ASan) and nothing leaks (LSan),
 *     whatever the values hold; the expansion work is bounded (timeout);
 *   - a value we could not have written (a NUL in it) is a lookup error,
 *     never data; a good one comes back exactly (hash, alias targets);
 *   - a resolve that fails adds nothing; one that succeeds adds someone;
 *     no address is added twice; every mailbox has a "U:" record; every
 *     remote address is a mailbox whose domain has no "D:" record;
 *   - listings are sorted and list exactly the records of their kind.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <tdb.h>

#include "addr.h"
#include "str.h"
#include "strlist.h"
#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

#define MAX_RECORDS 64
#define MAX_QUERIES 16

struct record {
	const char *key, *val;
	size_t klen, vlen;
};

static struct record recs[MAX_RECORDS];
static size_t n_recs;

/* The last record stored under exactly this key (tdb replaces). */
static const struct record *find(const char *key, size_t klen)
{
	for (size_t i = n_recs; i-- > 0;)
		if (recs[i].klen == klen && memcmp(recs[i].key, key, klen) == 0)
			return &recs[i];
	return NULL;
}

static const struct record *find2(char prefix, const char *text)
{
	struct str k = STR_INIT;
	str_append_c(&k, prefix);
	str_append_c(&k, ':');
	str_append(&k, text);
	const struct record *r = find(k.data, k.len);
	str_free(&k);
	return r;
}

static bool value_ok(const struct record *r)
{
	return memchr(r->val, '\0', r->vlen) == NULL;
}

static bool is_lower(const char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			return false;
	return true;
}

static void split_input(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	n_recs = 0;
	while (p < end && n_recs < MAX_RECORDS) {
		const char *e = memchr(p, 0xff, (size_t)(end - p));
		if (e == NULL)
			e = end;
		const char *sep = memchr(p, 0xfe, (size_t)(e - p));
		struct record *r = &recs[n_recs++];
		r->key = p;
		r->klen = (size_t)((sep != NULL ? sep : e) - p);
		r->val = sep != NULL ? sep + 1 : e;
		r->vlen = (size_t)(e - r->val);
		p = e + (e < end);
	}
}

static bool no_duplicates(const struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		for (size_t j = i + 1; j < l->n; j++)
			if (strcmp(l->items[i], l->items[j]) == 0)
				return false;
	return true;
}

static void check_resolve(struct userdb *db, const char *local,
			  const char *domain, bool explicit_only)
{
	struct strlist mb = STRLIST_INIT, rem = STRLIST_INIT;
	enum userdb_resolve r = explicit_only
		? userdb_resolve_explicit(db, local, domain, &mb, &rem)
		: userdb_resolve(db, local, domain, &mb, &rem);
	CHECK(r >= RESOLVE_OK && r <= RESOLVE_ERROR);
	if (r != RESOLVE_OK) {
		CHECK(mb.n == 0 && rem.n == 0);
	} else {
		CHECK(mb.n + rem.n >= 1);
		CHECK(no_duplicates(&mb) && no_duplicates(&rem));
	}
	for (size_t i = 0; i < mb.n; i++) {
		const struct record *u = find2('U', mb.items[i]);
		CHECK(u != NULL && value_ok(u) && is_lower(mb.items[i]));
	}
	for (size_t i = 0; i < rem.n; i++) {
		struct mailaddr a;
		CHECK(addr_parse_mailbox(rem.items[i], &a) == ADDR_OK);
		addr_lowercase(a.domain);
		CHECK(find2('D', a.domain) == NULL);
		mailaddr_free(&a);
	}
	strlist_free(&mb);
	strlist_free(&rem);
}

/* Lookups of one "U:" / "A:" record's address, as given and as a
 * recipient (with a subaddress too). */
static void check_address_record(struct userdb *db, const struct record *rec)
{
	char *text = xstrndup(rec->key + 2, rec->klen - 2);
	bool plain = strlen(text) == rec->klen - 2 && is_lower(text);
	const struct record *last = find(rec->key, rec->klen);

	if (plain && rec->key[0] == 'U') {
		struct str hash = STR_INIT;
		int r = userdb_user_hash(db, text, &hash);
		if (value_ok(last))
			CHECK(r == 1 && hash.len == last->vlen &&
			      memcmp(str_c(&hash), last->val, last->vlen) == 0);
		else
			CHECK(r == -1 && hash.len == 0);
		str_free(&hash);
	}
	if (plain && rec->key[0] == 'A') {
		struct strlist t = STRLIST_INIT;
		int r = userdb_alias_targets(db, text, &t);
		if (value_ok(last)) {
			CHECK(r == 1);
			size_t n = 0, off = 0;	/* non-empty LF-separated pieces */
			while (off < last->vlen) {
				const char *nl = memchr(last->val + off, '\n',
							last->vlen - off);
				size_t l = nl ? (size_t)(nl - last->val) - off
					      : last->vlen - off;
				if (l > 0) {
					CHECK(n < t.n && strlen(t.items[n]) == l &&
					      memcmp(t.items[n], last->val + off,
						     l) == 0);
					n++;
				}
				off += l + 1;
			}
			CHECK(n == t.n);
		} else {
			CHECK(r == -1 && t.n == 0);
		}
		strlist_free(&t);
	}

	char *at = strrchr(text, '@');
	if (at != NULL) {
		*at = '\0';
		const char *domain = at + 1;
		struct str tagged = STR_INIT;
		str_printf(&tagged, "%s+fuzz", text);
		check_resolve(db, text, domain, false);
		check_resolve(db, text, domain, true);
		check_resolve(db, str_c(&tagged), domain, false);
		check_resolve(db, "nobody-here", domain, false);
		str_free(&tagged);
	}
	free(text);
}

static void check_listing(struct userdb *db, char prefix, const char *domain)
{
	struct strlist l = STRLIST_INIT;
	int r = prefix == 'D' ? userdb_list_domains(db, &l)
		: prefix == 'U' ? userdb_list_users(db, domain, &l)
				: userdb_list_aliases(db, domain, &l);
	CHECK(r == 0);
	for (size_t i = 1; i < l.n; i++)
		CHECK(strcmp(l.items[i - 1], l.items[i]) <= 0);
	/* count the distinct keys of that kind (and domain) */
	size_t want = 0;
	size_t slen = domain ? strlen(domain) + 1 : 0;
	for (size_t i = 0; i < n_recs; i++) {
		const struct record *k = &recs[i];
		if (k->klen < 2 || k->key[0] != prefix || k->key[1] != ':' ||
		    find(k->key, k->klen) != k)
			continue;
		if (domain != NULL &&
		    (k->klen < 2 + slen ||
		     k->key[k->klen - slen] != '@' ||
		     memcmp(k->key + k->klen - slen + 1, domain, slen - 1) != 0))
			continue;
		want++;
	}
	CHECK(l.n == want);
	strlist_free(&l);
}

static char dir[64];
static char path[128];

static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	if (dir[0] == '\0') {
		strcpy(dir, "/dev/shm/fuzz_users.XXXXXX");
		if (mkdtemp(dir) == NULL) {
			strcpy(dir, "/tmp/fuzz_users.XXXXXX");
			CHECK(mkdtemp(dir) != NULL);
		}
		snprintf(path, sizeof path, "%s/%s", dir, USERDB_FILE);
		atexit(cleanup);
	}
	split_input(data, size);

	unlink(path);
	struct tdb_context *tdb = tdb_open(path, 0, TDB_DEFAULT,
					   O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(tdb != NULL);
	for (size_t i = 0; i < n_recs; i++) {
		TDB_DATA k = { (unsigned char *)recs[i].key, recs[i].klen };
		TDB_DATA v = { (unsigned char *)recs[i].val, recs[i].vlen };
		CHECK(tdb_store(tdb, k, v, TDB_REPLACE) == 0);
	}
	tdb_close(tdb);

	struct str err = STR_INIT;
	struct userdb *db = userdb_open(dir, false, &err);
	CHECK(db != NULL);
	str_free(&err);

	size_t queries = 0;
	for (size_t i = 0; i < n_recs && queries < MAX_QUERIES; i++) {
		const struct record *k = &recs[i];
		if (k->klen < 2 || k->key[1] != ':')
			continue;
		if (k->key[0] == 'U' || k->key[0] == 'A') {
			check_address_record(db, k);
			queries++;
		} else if (k->key[0] == 'D' && find(k->key, k->klen) == k) {
			char *d = xstrndup(k->key + 2, k->klen - 2);
			const struct record *last = find(k->key, k->klen);
			if (strlen(d) == k->klen - 2 && is_lower(d))
				CHECK(userdb_domain_exists(db, d) ==
				      (value_ok(last) ? 1 : -1));
			check_resolve(db, "postmaster", d, false);
			if (strlen(d) == k->klen - 2 && strchr(d, '@') == NULL &&
			    is_lower(d)) {
				check_listing(db, 'U', d);
				check_listing(db, 'A', d);
			}
			free(d);
			queries++;
		}
	}
	check_listing(db, 'D', NULL);
	check_listing(db, 'U', NULL);
	check_listing(db, 'A', NULL);
	userdb_close(db);
	unlink(path);
	return 0;
}
