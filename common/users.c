/*
 * users: the users.tdb database (domains, users, aliases) and recipient
 * resolution.  Handlers open it read-only; sockmailctl is the one writer and
 * makes every change inside a tdb transaction.
 *
 * tdb does no locking at all on a read-only handle, so a reader could see a
 * commit half-written.  A reader therefore holds a shared fcntl lock on the
 * whole file for the length of each lookup: every tdb write takes a write
 * lock somewhere in the file (chain lock, or the all-record lock a
 * transaction commit holds), so the reader sees either the old or the new
 * state and a commit waits for the few microseconds a lookup takes.
 */
#include "users.h"
#include "log.h"

#include <sys/types.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tdb.h>

#include "addr.h"

/* Bounds: what one alias may hold, and what we accept from the file. */
#define USERDB_MAX_TARGETS 1000
#define USERDB_MAX_VALUE (1024 * 1024)
#define USERDB_MAX_HASH 512
/* Total alias expansions for one resolve: fan-out times depth can explode. */
#define USERDB_MAX_EXPANSIONS 1000

struct userdb {
	struct tdb_context *tdb;
	char *path;
	bool writable;
	unsigned lock_depth;	/* nesting of reader_lock() */
};

/* ---- opening ---- */

/*
 * A read-only tdb_open fails while users.tdb holds a transaction to roll
 * back: after a writer (sockmailctl) was killed inside a commit, or while
 * one is committing (a read-only open takes no locks).  Only a read-write
 * opener recovers it, under tdb's locks (waiting for a live commit).  The
 * handlers run as the database's owner, who may write it: open it so once,
 * then read-only again as before.  NULL (errno of the first failure) if
 * that does not help.
 */
static struct tdb_context *open_recovered(const char *path)
{
	int saved = errno;
	struct tdb_context *rw = tdb_open(path, 0, TDB_DEFAULT, O_RDWR, 0);
	struct tdb_context *tdb = NULL;
	if (rw != NULL) {
		tdb_close(rw);
		tdb = tdb_open(path, 0, TDB_DEFAULT, O_RDONLY, 0);
	}
	if (tdb == NULL)
		errno = saved;
	return tdb;
}

struct userdb *userdb_open(const char *state_dir, bool writable,
			   struct str *err)
{
	struct str path = STR_INIT;
	struct stat st;
	bool created = false;

	str_clear(err);
	str_printf(&path, "%s/%s", state_dir, USERDB_FILE);
	if (writable && stat(path.data, &st) < 0 && errno == ENOENT)
		created = true;

	struct tdb_context *tdb = tdb_open(path.data, 0, TDB_DEFAULT,
					   writable ? O_RDWR | O_CREAT
						    : O_RDONLY, 0640);
	if (tdb == NULL && !writable && errno != ENOENT)
		tdb = open_recovered(path.data);
	if (tdb == NULL) {
		if (!writable && errno == ENOENT)
			str_printf(err, "users database %s does not exist "
				   "(it is created by: sockmailctl domain add "
				   "DOMAIN)", path.data);
		else
			str_printf(err, "cannot open users database %s: %s",
				   path.data, errno ? strerror(errno)
						    : "not a tdb file");
		str_free(&path);
		return NULL;
	}
	if (created) {
		/* Handlers run as the owner of state_dir and must read it. */
		int fd = tdb_fd(tdb);
		if (fchmod(fd, 0640) < 0 ||
		    (geteuid() == 0 &&
		     (stat(state_dir, &st) < 0 ||
		      fchown(fd, st.st_uid, st.st_gid) < 0))) {
			str_printf(err, "cannot set owner/mode of %s: %s",
				   path.data, strerror(errno));
			tdb_close(tdb);
			unlink(path.data);
			str_free(&path);
			return NULL;
		}
	}

	struct userdb *db = xcalloc(1, sizeof *db);
	db->tdb = tdb;
	db->path = path.data;	/* keeps the buffer */
	db->writable = writable;
	return db;
}

void userdb_close(struct userdb *db)
{
	if (db == NULL)
		return;
	tdb_close(db->tdb);
	free(db->path);
	free(db);
}

/* ---- reader locking (see the top of the file) ---- */

static int reader_lock_op(struct userdb *db, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET,
			    .l_start = 0, .l_len = 0 };
	int r;

	/* Open-file-description locks: closing some other descriptor of the
	 * same file in this process does not drop them. */
	do
		r = fcntl(tdb_fd(db->tdb), F_OFD_SETLKW, &fl);
	while (r < 0 && errno == EINTR);
	return r;
}

static int reader_lock(struct userdb *db)
{
	if (db->writable || db->lock_depth++ > 0)
		return 0;
	if (reader_lock_op(db, F_RDLCK) < 0) {
		db->lock_depth = 0;
		return -1;
	}
	return 0;
}

static void reader_unlock(struct userdb *db)
{
	if (db->writable || db->lock_depth == 0 || --db->lock_depth > 0)
		return;
	(void)reader_lock_op(db, F_UNLCK);
}

/* ---- records ---- */

static TDB_DATA key_of(const struct str *k)
{
	TDB_DATA d = { (unsigned char *)k->data, k->len };
	return d;
}

/* "<prefix><lower-cased text>" */
static void make_key(struct str *key, char prefix, const char *text)
{
	str_clear(key);
	str_append_c(key, prefix);
	str_append_c(key, ':');
	str_append(key, text);
	addr_lowercase(key->data + 2);
}

/* 1 found (value appended to *val unless NULL), 0 absent, -1 error. */
static int fetch(struct userdb *db, const struct str *key, struct str *val)
{
	if (reader_lock(db) < 0)
		return -1;
	TDB_DATA d = tdb_fetch(db->tdb, key_of(key));
	int ret;
	if (d.dptr == NULL) {
		ret = tdb_error(db->tdb) == TDB_ERR_NOEXIST ||
		      tdb_error(db->tdb) == TDB_SUCCESS ? 0 : -1;
	} else if (d.dsize > USERDB_MAX_VALUE ||
		   memchr(d.dptr, '\0', d.dsize) != NULL) {
		ret = -1;	/* not something we wrote */
	} else {
		if (val != NULL)
			str_append_n(val, d.dptr, d.dsize);
		ret = 1;
	}
	free(d.dptr);
	reader_unlock(db);
	return ret;
}

static int exists(struct userdb *db, const struct str *key)
{
	return fetch(db, key, NULL);
}

/* Split "t1\nt2\n" into the list. */
static void split_targets(const char *val, struct strlist *out)
{
	while (*val != '\0') {
		size_t n = strcspn(val, "\n");
		if (n > 0)
			strlist_add_n(out, val, n);
		val += n;
		if (*val == '\n')
			val++;
	}
}

/* ---- lookups ---- */

int userdb_domain_exists(struct userdb *db, const char *domain)
{
	struct str key = STR_INIT;
	make_key(&key, 'D', domain);
	int r = exists(db, &key);
	str_free(&key);
	return r;
}

int userdb_user_hash(struct userdb *db, const char *address, struct str *hash)
{
	struct str key = STR_INIT;
	make_key(&key, 'U', address);
	int r = fetch(db, &key, hash);
	str_free(&key);
	return r;
}

int userdb_alias_targets(struct userdb *db, const char *address,
			 struct strlist *targets)
{
	struct str key = STR_INIT, val = STR_INIT;
	make_key(&key, 'A', address);
	int r = fetch(db, &key, &val);
	if (r == 1)
		split_targets(str_c(&val), targets);
	str_free(&key);
	str_free(&val);
	return r;
}

/* ---- resolution ---- */

struct resolve_ctx {
	struct userdb *db;
	struct strlist *mailboxes, *remote;
	struct strlist path;		/* alias keys being expanded */
	struct strlist done_ok;		/* alias keys that reached someone */
	struct strlist done_none;	/* alias keys that reached nobody */
	unsigned expansions;
	bool no_catchall;		/* explicit names only (sender checks) */
};

static enum userdb_resolve resolve_local(struct resolve_ctx *c,
					 const char *local, const char *domain,
					 unsigned depth);

/* Fold a branch's result into the alias's result so far: an error wins,
 * then anyone reached, then a loop, then nobody. */
static enum userdb_resolve merge(enum userdb_resolve acc,
				 enum userdb_resolve r)
{
	if (acc == RESOLVE_ERROR || r == RESOLVE_ERROR)
		return RESOLVE_ERROR;
	if (acc == RESOLVE_OK || r == RESOLVE_OK)
		return RESOLVE_OK;
	if (acc == RESOLVE_LOOP || r == RESOLVE_LOOP)
		return RESOLVE_LOOP;
	return RESOLVE_NO_USER;
}

/* One alias target (as stored: local part as written, domain lower case):
 * a remote address, the alias's own mailbox, or a local address to resolve
 * further.  self is the alias's own address. */
static enum userdb_resolve resolve_target(struct resolve_ctx *c,
					  const char *self, const char *target,
					  unsigned depth)
{
	struct mailaddr ma;

	if (addr_parse_mailbox(target, &ma) != ADDR_OK)
		return RESOLVE_NO_USER;	/* not written by us: ignore */
	addr_lowercase(ma.domain);

	enum userdb_resolve r;
	int d = userdb_domain_exists(c->db, ma.domain);
	if (d < 0) {
		r = RESOLVE_ERROR;
	} else if (d == 0) {
		strlist_add_unique(c->remote, target);
		r = RESOLVE_OK;
	} else {
		struct str addr = STR_INIT, key = STR_INIT;
		str_printf(&addr, "%s@%s", ma.local, ma.domain);
		addr_lowercase(addr.data);
		make_key(&key, 'U', addr.data);
		int u = strcmp(addr.data, self) == 0 ? exists(c->db, &key) : 0;
		if (u < 0) {
			r = RESOLVE_ERROR;
		} else if (u == 1) {
			/* "keep a copy": the alias names its own user */
			strlist_add_unique(c->mailboxes, addr.data);
			r = RESOLVE_OK;
		} else {
			r = resolve_local(c, ma.local, ma.domain, depth);
		}
		str_free(&addr);
		str_free(&key);
	}
	mailaddr_free(&ma);
	return r;
}

/* Expand the alias record *key (value in *val), named self ("l@d" or
 * "@d"), found at nesting depth. */
static enum userdb_resolve expand_alias(struct resolve_ctx *c,
					const struct str *key,
					const char *val, const char *self,
					unsigned depth)
{
	if (strlist_contains(&c->done_ok, key->data))
		return RESOLVE_OK;
	if (strlist_contains(&c->done_none, key->data))
		return RESOLVE_NO_USER;
	/* Back on our own path: this branch is a cycle.  Past the depth or
	 * work limit: too deep a chain. */
	if (strlist_contains(&c->path, key->data) ||
	    depth > USERDB_MAX_DEPTH || ++c->expansions > USERDB_MAX_EXPANSIONS)
		return RESOLVE_LOOP;

	struct strlist targets = STRLIST_INIT;
	enum userdb_resolve acc = RESOLVE_NO_USER;

	split_targets(val, &targets);
	strlist_add(&c->path, key->data);
	for (size_t i = 0; i < targets.n && acc != RESOLVE_ERROR; i++)
		acc = merge(acc, resolve_target(c, self, targets.items[i],
						depth + 1));
	/* Pop ourselves; the entry is the last one. */
	free(c->path.items[--c->path.n]);
	strlist_free(&targets);

	/* Remember settled results so shared sub-aliases expand once; a loop
	 * is not settled (a shallower path may still get through). */
	if (acc == RESOLVE_OK)
		strlist_add(&c->done_ok, key->data);
	else if (acc == RESOLVE_NO_USER)
		strlist_add(&c->done_none, key->data);
	return acc;
}

/* try_address() found neither an alias nor a user. */
#define NOT_FOUND (-1)

/* Try alias, then user, for local@domain: a result, or NOT_FOUND. */
static int try_address(struct resolve_ctx *c, const char *local,
		       const char *domain, unsigned depth)
{
	struct str key = STR_INIT, val = STR_INIT, self = STR_INIT;
	int r;

	str_printf(&self, "%s@%s", local, domain);
	addr_lowercase(self.data);
	make_key(&key, 'A', self.data);
	int a = fetch(c->db, &key, &val);
	if (a == 1) {
		r = (int)expand_alias(c, &key, val.data, self.data, depth);
	} else if (a < 0) {
		r = RESOLVE_ERROR;
	} else {
		make_key(&key, 'U', self.data);
		int u = exists(c->db, &key);
		if (u == 1) {
			strlist_add_unique(c->mailboxes, self.data);
			r = RESOLVE_OK;
		} else {
			r = u < 0 ? RESOLVE_ERROR : NOT_FOUND;
		}
	}
	str_free(&key);
	str_free(&val);
	str_free(&self);
	return r;
}

static enum userdb_resolve resolve_local(struct resolve_ctx *c,
					 const char *local, const char *domain,
					 unsigned depth)
{
	int r = NOT_FOUND;

	/* An empty local part would look up the catch-all key itself. */
	if (*local != '\0')
		r = try_address(c, local, domain, depth);
	const char *delim = strchr(local, USERDB_SUBADDR_DELIM);
	if (r == NOT_FOUND && delim != NULL && delim != local) {
		char *base = xstrndup(local, (size_t)(delim - local));
		r = try_address(c, base, domain, depth);
		free(base);
	}
	if (r == NOT_FOUND && c->no_catchall) {
		r = RESOLVE_NO_USER;
	} else if (r == NOT_FOUND) {
		struct str key = STR_INIT, val = STR_INIT, self = STR_INIT;
		str_printf(&self, "@%s", domain);
		addr_lowercase(self.data);
		make_key(&key, 'A', self.data);
		r = fetch(c->db, &key, &val);
		if (r == 1)
			r = (int)expand_alias(c, &key, val.data, self.data,
					      depth);
		else if (r == 0)
			r = RESOLVE_NO_USER;
		else
			r = RESOLVE_ERROR;
		str_free(&key);
		str_free(&val);
		str_free(&self);
	}
	return (enum userdb_resolve)r;
}

static void strlist_shrink(struct strlist *l, size_t n)
{
	while (l->n > n)
		free(l->items[--l->n]);
}

static enum userdb_resolve resolve(struct userdb *db, const char *local,
				   const char *domain, struct strlist *mailboxes,
				   struct strlist *remote, bool no_catchall)
{
	struct resolve_ctx c = { db, mailboxes, remote, STRLIST_INIT,
				 STRLIST_INIT, STRLIST_INIT, 0, no_catchall };
	size_t n_mailboxes = mailboxes->n, n_remote = remote->n;
	enum userdb_resolve r;

	/* One lock for the whole walk: every step sees the same state. */
	if (reader_lock(db) < 0)
		return RESOLVE_ERROR;
	int d = userdb_domain_exists(db, domain);
	if (d < 0)
		r = RESOLVE_ERROR;
	else if (d == 0)
		r = RESOLVE_NO_DOMAIN;
	else
		r = resolve_local(&c, local, domain, 1);
	reader_unlock(db);

	if (r != RESOLVE_OK) {
		/* A failed resolve adds nothing. */
		strlist_shrink(mailboxes, n_mailboxes);
		strlist_shrink(remote, n_remote);
	}
	strlist_free(&c.path);
	strlist_free(&c.done_ok);
	strlist_free(&c.done_none);
	return r;
}

enum userdb_resolve userdb_resolve(struct userdb *db, const char *local,
				   const char *domain, struct strlist *mailboxes,
				   struct strlist *remote)
{
	return resolve(db, local, domain, mailboxes, remote, false);
}

enum userdb_resolve userdb_resolve_explicit(struct userdb *db,
					    const char *local,
					    const char *domain,
					    struct strlist *mailboxes,
					    struct strlist *remote)
{
	return resolve(db, local, domain, mailboxes, remote, true);
}

/* ---- validation for the writers ---- */

static void lower_first(struct str *s, const char *text)
{
	size_t at = s->len;
	str_append(s, text);
	if (s->data[at] >= 'A' && s->data[at] <= 'Z')
		s->data[at] = (char)(s->data[at] - 'A' + 'a');
}

/* Parse a mailbox address given on the command line into *ma (domain
 * lower-cased; the caller frees). */
static int parse_address(const char *what, const char *address,
			 struct mailaddr *ma, struct str *err)
{
	enum addr_error e = addr_parse_mailbox(address, ma);
	if (e != ADDR_OK) {
		str_printf(err, "invalid %s %s: ", what, address);
		lower_first(err, addr_strerror(e));
		return -1;
	}
	if (ma->literal || !addr_valid_domain(ma->domain)) {
		str_printf(err, "invalid %s %s: the domain must be a name, "
			   "not an address literal", what, address);
		mailaddr_free(ma);
		return -1;
	}
	addr_lowercase(ma->domain);
	return 0;
}

static bool user_char_ok(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '_' || ch == '-' || ch >= 0x80;
}

/* The user's local part (lower-cased) names a directory under mail_dir. */
static int check_user_local(const char *address, const char *local,
			    struct str *err)
{
	size_t len = strlen(local);

	if (strchr(local, USERDB_SUBADDR_DELIM) != NULL) {
		str_printf(err, "invalid user %s: the user name must not "
			   "contain '%c' (it starts a subaddress tag)",
			   address, USERDB_SUBADDR_DELIM);
		return -1;
	}
	if (len == 0 || len > ADDR_MAX_LOCAL) {
		str_printf(err, "invalid user %s: the user name must be 1 to "
			   "%d octets", address, ADDR_MAX_LOCAL);
		return -1;
	}
	for (const char *p = local; *p != '\0'; p++) {
		if (!user_char_ok((unsigned char)*p)) {
			str_printf(err, "invalid user %s: the user name may "
				   "only contain letters, digits, '.', '_' "
				   "and '-'", address);
			return -1;
		}
	}
	if (local[0] == '.' || strstr(local, "..") != NULL) {
		str_printf(err, "invalid user %s: the user name must not "
			   "start with '.' or contain \"..\"", address);
		return -1;
	}
	return 0;
}

static int check_hash(const char *address, const char *hash, struct str *err)
{
	size_t len = strlen(hash);
	bool ok = len > 0 && len <= USERDB_MAX_HASH;

	for (const char *p = hash; ok && *p != '\0'; p++)
		ok = *p > ' ' && *p < 0x7f;
	if (!ok)
		str_printf(err, "invalid password hash for %s", address);
	return ok ? 0 : -1;
}

/* ---- transactions ---- */

static int txn_start(struct userdb *db, struct str *err)
{
	if (!db->writable) {
		str_printf(err, "users database %s is open read-only",
			   db->path);
		return -1;
	}
	if (tdb_transaction_start(db->tdb) != 0) {
		str_printf(err, "cannot start a transaction on %s: %s",
			   db->path, tdb_errorstr(db->tdb));
		return -1;
	}
	return 0;
}

/* Commit if ok == 0, else cancel.  Returns 0 only if committed. */
static int txn_end(struct userdb *db, int ok, struct str *err)
{
	if (ok != 0) {
		tdb_transaction_cancel(db->tdb);
		return -1;
	}
	if (tdb_transaction_commit(db->tdb) != 0) {
		str_printf(err, "cannot commit to %s: %s", db->path,
			   tdb_errorstr(db->tdb));
		return -1;
	}
	return 0;
}

static int db_store(struct userdb *db, const struct str *key,
		    const char *val, struct str *err)
{
	TDB_DATA v = { (unsigned char *)val, strlen(val) };
	if (tdb_store(db->tdb, key_of(key), v, TDB_REPLACE) != 0) {
		str_printf(err, "cannot write %s: %s", db->path,
			   tdb_errorstr(db->tdb));
		return -1;
	}
	return 0;
}

static int db_delete(struct userdb *db, const struct str *key,
		     struct str *err)
{
	if (tdb_delete(db->tdb, key_of(key)) != 0) {
		str_printf(err, "cannot delete from %s: %s", db->path,
			   tdb_errorstr(db->tdb));
		return -1;
	}
	return 0;
}

static int db_read_error(struct userdb *db, struct str *err)
{
	str_printf(err, "cannot read %s: %s", db->path,
		   tdb_errorstr(db->tdb));
	return -1;
}

/* The domain must be local: 0 yes, -1 no (err set). */
static int need_domain(struct userdb *db, const char *domain, struct str *err)
{
	int d = userdb_domain_exists(db, domain);
	if (d < 0)
		return db_read_error(db, err);
	if (d == 0) {
		str_printf(err, "domain %s is not a local domain; add it with: "
			   "sockmailctl domain add %s", domain, domain);
		return -1;
	}
	return 0;
}

/* ---- domains ---- */

static int domain_add(struct userdb *db, const char *domain, struct str *err)
{
	struct str key = STR_INIT;
	int r = -1;

	make_key(&key, 'D', domain);
	int d = exists(db, &key);
	if (d < 0)
		db_read_error(db, err);
	else if (d == 1)
		str_printf(err, "domain %s is already a local domain",
			   key.data + 2);
	else
		r = db_store(db, &key, "1", err);
	str_free(&key);
	return r;
}

int userdb_domain_add(struct userdb *db, const char *domain, struct str *err)
{
	str_clear(err);
	char *d = xstrdup(domain);
	addr_lowercase(d);
	int r = -1;
	if (!addr_valid_domain(d))
		str_printf(err, "invalid domain %s", domain);
	else if (txn_start(db, err) == 0)
		r = txn_end(db, domain_add(db, d, err), err);
	free(d);
	return r;
}

static bool key_in_domain(TDB_DATA k, const char *suffix);

/* Users and aliases that still belong to a domain. */
struct domain_use {
	const char *suffix;	/* "@domain" */
	unsigned users, aliases;
};

static int count_domain_use(struct tdb_context *tdb, TDB_DATA k, TDB_DATA v,
			    void *priv)
{
	struct domain_use *u = priv;
	(void)tdb;
	(void)v;
	if (k.dsize < 2 || k.dptr[1] != ':' || !key_in_domain(k, u->suffix))
		return 0;
	if (k.dptr[0] == 'U')
		u->users++;
	else if (k.dptr[0] == 'A')
		u->aliases++;
	return 0;
}

static int domain_del(struct userdb *db, const char *domain, struct str *err)
{
	struct str key = STR_INIT, suffix = STR_INIT;
	struct domain_use use = { NULL, 0, 0 };
	int r = -1;

	make_key(&key, 'D', domain);
	str_printf(&suffix, "@%s", key.data + 2);
	use.suffix = suffix.data;
	int d = exists(db, &key);
	if (d < 0) {
		db_read_error(db, err);
	} else if (d == 0) {
		str_printf(err, "domain %s is not a local domain",
			   key.data + 2);
	} else if (tdb_traverse(db->tdb, count_domain_use, &use) < 0) {
		db_read_error(db, err);
	} else if (use.users > 0 || use.aliases > 0) {
		str_printf(err, "domain %s still has ", key.data + 2);
		if (use.users > 0)
			str_printf(err, "%u user%s", use.users,
				   use.users == 1 ? "" : "s");
		if (use.users > 0 && use.aliases > 0)
			str_append(err, " and ");
		if (use.aliases > 0)
			str_printf(err, "%u alias%s", use.aliases,
				   use.aliases == 1 ? "" : "es");
		str_printf(err, "; delete %s first",
			   use.users + use.aliases == 1 ? "it" : "them");
	} else {
		r = db_delete(db, &key, err);
	}
	str_free(&key);
	str_free(&suffix);
	return r;
}

int userdb_domain_del(struct userdb *db, const char *domain, struct str *err)
{
	str_clear(err);
	if (txn_start(db, err) < 0)
		return -1;
	return txn_end(db, domain_del(db, domain, err), err);
}

/* ---- users ---- */

/* Parse and check a user address; *canon gets "local@domain". */
static int user_address(struct userdb *db, const char *address,
			bool for_add, struct str *canon, struct str *err)
{
	struct mailaddr ma;

	if (parse_address("user", address, &ma, err) < 0)
		return -1;
	addr_lowercase(ma.local);
	int r = for_add ? check_user_local(address, ma.local, err) : 0;
	if (r == 0)
		r = need_domain(db, ma.domain, err);
	if (r == 0)
		str_printf(canon, "%s@%s", ma.local, ma.domain);
	mailaddr_free(&ma);
	return r;
}

static int user_check_new(struct userdb *db, const char *address,
			  struct str *canon, struct str *err)
{
	struct str key = STR_INIT;
	int r = user_address(db, address, true, canon, err);

	if (r == 0) {
		make_key(&key, 'U', canon->data);
		int u = exists(db, &key);
		if (u < 0) {
			r = db_read_error(db, err);
		} else if (u == 1) {
			str_printf(err, "user %s already exists", canon->data);
			r = -1;
		}
	}
	str_free(&key);
	return r;
}

int userdb_user_check_new(struct userdb *db, const char *address,
			  struct str *canon, struct str *err)
{
	str_clear(err);
	str_clear(canon);
	return user_check_new(db, address, canon, err);
}

/* Store a user's hash; must_exist: change, else: add. */
static int user_put(struct userdb *db, const char *address, const char *hash,
		    bool must_exist, struct str *err)
{
	struct str canon = STR_INIT, key = STR_INIT;
	int r;

	if (must_exist)
		r = user_address(db, address, false, &canon, err);
	else
		r = user_check_new(db, address, &canon, err);
	if (r == 0)
		r = check_hash(canon.data, hash, err);
	make_key(&key, 'U', str_c(&canon));
	if (r == 0 && must_exist) {
		int u = exists(db, &key);
		if (u < 0) {
			r = db_read_error(db, err);
		} else if (u == 0) {
			str_printf(err, "no such user %s", canon.data);
			r = -1;
		}
	}
	if (r == 0)
		r = db_store(db, &key, hash, err);
	str_free(&canon);
	str_free(&key);
	return r;
}

int userdb_user_add(struct userdb *db, const char *address, const char *hash,
		    struct str *err)
{
	str_clear(err);
	if (txn_start(db, err) < 0)
		return -1;
	return txn_end(db, user_put(db, address, hash, false, err), err);
}

int userdb_user_set_hash(struct userdb *db, const char *address,
			 const char *hash, struct str *err)
{
	str_clear(err);
	if (txn_start(db, err) < 0)
		return -1;
	return txn_end(db, user_put(db, address, hash, true, err), err);
}

static int user_del(struct userdb *db, const char *address, struct str *err)
{
	struct str canon = STR_INIT, key = STR_INIT;
	int r = -1;

	if (user_address(db, address, false, &canon, err) == 0) {
		make_key(&key, 'U', canon.data);
		int u = exists(db, &key);
		if (u < 0)
			db_read_error(db, err);
		else if (u == 0)
			str_printf(err, "no such user %s", canon.data);
		else
			r = db_delete(db, &key, err);
	}
	str_free(&canon);
	str_free(&key);
	return r;
}

int userdb_user_del(struct userdb *db, const char *address, struct str *err)
{
	str_clear(err);
	if (txn_start(db, err) < 0)
		return -1;
	return txn_end(db, user_del(db, address, err), err);
}

/* ---- aliases ---- */

/* "local@domain" or "@domain" (catch-all), lower-cased, into *canon. */
static int alias_address(struct userdb *db, const char *address,
			 struct str *canon, struct str *err)
{
	if (address[0] == '@') {
		char *d = xstrdup(address + 1);
		addr_lowercase(d);
		int r = -1;
		if (!addr_valid_domain(d))
			str_printf(err, "invalid catch-all %s: bad domain",
				   address);
		else if ((r = need_domain(db, d, err)) == 0)
			str_printf(canon, "@%s", d);
		free(d);
		return r;
	}

	struct mailaddr ma;
	if (parse_address("alias", address, &ma, err) < 0)
		return -1;
	addr_lowercase(ma.local);
	int r = need_domain(db, ma.domain, err);
	if (r == 0)
		str_printf(canon, "%s@%s", ma.local, ma.domain);
	mailaddr_free(&ma);
	return r;
}

/* A target as stored: local part as written (quoted if it must be) and the
 * domain lower-cased; all lower case when the domain is ours. */
static int target_canon(struct userdb *db, const char *target,
			struct str *out, struct str *err)
{
	struct mailaddr ma;

	if (parse_address("target", target, &ma, err) < 0)
		return -1;
	int d = userdb_domain_exists(db, ma.domain);
	if (d < 0) {
		mailaddr_free(&ma);
		return db_read_error(db, err);
	}
	addr_format(&ma, out);
	if (d == 1)
		addr_lowercase(out->data);
	mailaddr_free(&ma);
	return 0;
}

static void join_targets(const struct strlist *l, struct str *out)
{
	for (size_t i = 0; i < l->n; i++) {
		str_append(out, l->items[i]);
		str_append_c(out, '\n');
	}
}

/* After a change inside the transaction: refuse an alias that now loops. */
static int check_no_loop(struct userdb *db, const struct str *key,
			 const char *self, const char *val, struct str *err)
{
	struct strlist mb = STRLIST_INIT, rem = STRLIST_INIT;
	struct resolve_ctx c = { db, &mb, &rem, STRLIST_INIT, STRLIST_INIT,
				 STRLIST_INIT, 0, false };
	enum userdb_resolve r = expand_alias(&c, key, val, self, 1);
	int ret = 0;

	if (r == RESOLVE_LOOP) {
		str_printf(err, "alias %s would loop (it leads back to itself "
			   "or nests deeper than %d aliases)", self,
			   USERDB_MAX_DEPTH);
		ret = -1;
	} else if (r == RESOLVE_ERROR) {
		ret = db_read_error(db, err);
	}
	strlist_free(&mb);
	strlist_free(&rem);
	strlist_free(&c.path);
	strlist_free(&c.done_ok);
	strlist_free(&c.done_none);
	return ret;
}

static int alias_add(struct userdb *db, const char *address,
		     const struct strlist *targets, struct str *err)
{
	struct str canon = STR_INIT, key = STR_INIT, val = STR_INIT;
	struct str t = STR_INIT;
	struct strlist list = STRLIST_INIT;
	int r = -1;

	if (targets->n == 0) {
		str_printf(err, "alias %s needs at least one target", address);
		return -1;
	}
	if (alias_address(db, address, &canon, err) < 0)
		return -1;
	make_key(&key, 'A', canon.data);
	int a = fetch(db, &key, &val);
	if (a < 0) {
		db_read_error(db, err);
		goto out;
	}
	split_targets(str_c(&val), &list);
	for (size_t i = 0; i < targets->n; i++) {
		str_clear(&t);
		if (target_canon(db, targets->items[i], &t, err) < 0)
			goto out;
		strlist_add_unique(&list, t.data);
	}
	if (list.n > USERDB_MAX_TARGETS) {
		str_printf(err, "alias %s would have %zu targets; the limit "
			   "is %d", canon.data, list.n, USERDB_MAX_TARGETS);
		goto out;
	}
	str_clear(&val);
	join_targets(&list, &val);
	if (db_store(db, &key, val.data, err) == 0)
		r = check_no_loop(db, &key, canon.data, val.data, err);
out:
	strlist_free(&list);
	str_free(&canon);
	str_free(&key);
	str_free(&val);
	str_free(&t);
	return r;
}

int userdb_alias_add(struct userdb *db, const char *address,
		     const struct strlist *targets, struct str *err)
{
	str_clear(err);
	if (txn_start(db, err) < 0)
		return -1;
	return txn_end(db, alias_add(db, address, targets, err), err);
}

/* Remove the given targets from list; every one must be there. */
static int remove_targets(struct userdb *db, const char *alias,
			  struct strlist *list, const struct strlist *targets,
			  struct str *err)
{
	struct str t = STR_INIT;
	int r = 0;

	for (size_t i = 0; i < targets->n && r == 0; i++) {
		str_clear(&t);
		r = target_canon(db, targets->items[i], &t, err);
		size_t j = 0;
		while (r == 0 && j < list->n && strcmp(list->items[j], t.data))
			j++;
		if (r == 0 && j == list->n) {
			str_printf(err, "alias %s has no target %s", alias,
				   targets->items[i]);
			r = -1;
		} else if (r == 0) {
			free(list->items[j]);
			memmove(&list->items[j], &list->items[j + 1],
				(list->n - j - 1) * sizeof *list->items);
			list->n--;
		}
	}
	str_free(&t);
	return r;
}

static int alias_del(struct userdb *db, const char *address,
		     const struct strlist *targets, struct str *err)
{
	struct str canon = STR_INIT, key = STR_INIT, val = STR_INIT;
	struct strlist list = STRLIST_INIT;
	int r = -1;

	if (alias_address(db, address, &canon, err) < 0)
		return -1;
	make_key(&key, 'A', canon.data);
	int a = fetch(db, &key, &val);
	if (a < 0) {
		db_read_error(db, err);
	} else if (a == 0) {
		str_printf(err, "no such alias %s", canon.data);
	} else {
		/* No targets given: remove them all. */
		if (targets->n > 0)
			split_targets(val.data, &list);
		r = remove_targets(db, canon.data, &list, targets, err);
		str_clear(&val);
		join_targets(&list, &val);
		/* An alias without targets is no alias. */
		if (r == 0 && list.n == 0)
			r = db_delete(db, &key, err);
		else if (r == 0)
			r = db_store(db, &key, val.data, err);
	}
	strlist_free(&list);
	str_free(&canon);
	str_free(&key);
	str_free(&val);
	return r;
}

int userdb_alias_del(struct userdb *db, const char *address,
		     const struct strlist *targets, struct str *err)
{
	str_clear(err);
	if (txn_start(db, err) < 0)
		return -1;
	return txn_end(db, alias_del(db, address, targets, err), err);
}

/* ---- listings ---- */

struct lister {
	char prefix;		/* 'D', 'U' or 'A' */
	const char *suffix;	/* "@domain" filter or NULL */
	struct strlist *out;
};

/* "X:local@domain" ends in "@domain"; the domain holds no '@', so this is
 * exact ("a@x.example" is not in "example"). */
static bool key_in_domain(TDB_DATA k, const char *suffix)
{
	size_t slen = strlen(suffix);
	return k.dsize >= 2 + slen &&
	       memcmp(k.dptr + k.dsize - slen, suffix, slen) == 0;
}

static int list_one(struct tdb_context *tdb, TDB_DATA k, TDB_DATA v,
		    void *priv)
{
	struct lister *l = priv;
	(void)tdb;

	if (k.dsize < 2 || k.dptr[0] != (unsigned char)l->prefix ||
	    k.dptr[1] != ':')
		return 0;
	if (l->suffix != NULL && !key_in_domain(k, l->suffix))
		return 0;
	if (l->prefix != 'A') {
		strlist_add_n(l->out, (const char *)k.dptr + 2, k.dsize - 2);
		return 0;
	}

	/* "address: t1, t2" */
	struct str line = STR_INIT, val = STR_INIT;
	struct strlist t = STRLIST_INIT;
	str_append_n(&line, k.dptr + 2, k.dsize - 2);
	str_append(&line, ":");
	str_append_n(&val, v.dptr, v.dsize);
	split_targets(val.data, &t);
	for (size_t i = 0; i < t.n; i++)
		str_printf(&line, "%s %s", i > 0 ? "," : "", t.items[i]);
	strlist_add(l->out, line.data);
	strlist_free(&t);
	str_free(&line);
	str_free(&val);
	return 0;
}

static int cmp_items(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_keys(struct userdb *db, char prefix, const char *domain,
		     struct strlist *out)
{
	struct str suffix = STR_INIT;
	struct lister l = { prefix, NULL, out };
	size_t before = out->n;

	if (domain != NULL) {
		str_printf(&suffix, "@%s", domain);
		addr_lowercase(suffix.data);
		l.suffix = suffix.data;
	}
	if (reader_lock(db) < 0) {
		str_free(&suffix);
		return -1;
	}
	int r = tdb_traverse_read(db->tdb, list_one, &l);
	reader_unlock(db);
	str_free(&suffix);
	if (r < 0) {
		strlist_shrink(out, before);
		return -1;
	}
	if (out->n - before > 1)
		qsort(out->items + before, out->n - before, sizeof *out->items,
		      cmp_items);
	return 0;
}

int userdb_list_domains(struct userdb *db, struct strlist *out)
{
	return list_keys(db, 'D', NULL, out);
}

int userdb_list_users(struct userdb *db, const char *domain_or_null,
		      struct strlist *out)
{
	return list_keys(db, 'U', domain_or_null, out);
}

int userdb_list_aliases(struct userdb *db, const char *domain_or_null,
			struct strlist *out)
{
	return list_keys(db, 'A', domain_or_null, out);
}

bool userdb_open_once(struct userdb **db, const char *state_dir)
{
	if (*db != NULL)
		return true;
	struct str err = STR_INIT;
	*db = userdb_open(state_dir, false, &err);
	if (*db == NULL)
		log_msg(LOG_ERR, "cannot open users database: %s", str_c(&err));
	str_free(&err);
	return *db != NULL;
}
