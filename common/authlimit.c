/*
 * authlimit: failed-login counting in <state_dir>/authfail.tdb.
 *
 * One record per key (an IPv4 address, an IPv6 /64, or "unknown"): a fixed
 * window that starts at the first failure and the failures counted in it.
 * Every handler process opens the file when it needs it and closes it
 * again (a handler sees a handful of AUTH commands), and updates a record
 * under the record's tdb chain lock, so that concurrent handlers never lose
 * a count.  No transactions: a count is not worth an fsync.
 *
 * Expired records are swept by whichever failure first finds that
 * AUTHLIMIT_SWEEP_INTERVAL has passed since the last sweep (claimed in a
 * meta record, so one process sweeps), visiting at most AUTHLIMIT_SWEEP_MAX
 * records and deleting at most AUTHLIMIT_SWEEP_DELETE_MAX.  The file's
 * size is then bounded by the failures one window can hold, and tdb reuses
 * the space that sweeps free.
 *
 * A broken database never locks anyone out: errors count as "not blocked"
 * and are logged once per process.
 */
#include "authlimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <tdb.h>

#include "log.h"
#include "str.h"

#define AUTHLIMIT_VERSION 1
#define AUTHLIMIT_RECORD_SIZE 16
/* Hash chains: sized for the AUTHLIMIT_SWEEP_MAX records of a bad day. */
#define AUTHLIMIT_HASH_SIZE 10007
#define AUTHLIMIT_SWEEP_INTERVAL 60	/* seconds between sweeps, at most */
#define AUTHLIMIT_SWEEP_MAX 100000	/* records one sweep visits */
#define AUTHLIMIT_SWEEP_DELETE_MAX 20000	/* and deletes */
#define AUTHLIMIT_SWEEP_KEY_MAX 256	/* longer keys are not ours */
/* Not an address, so it never meets a peer's key. */
#define AUTHLIMIT_META_KEY "!sweep"

/* A record: version byte, 3 zero bytes, count (u32 LE), window start or,
 * in the meta record, the last sweep (i64 LE). */
struct failrec {
	uint32_t count;
	int64_t start;
};

static bool error_logged;

/* Log a database problem, once per process: a handler that cannot count
 * failures should not also flood the log. */
static void db_error(const char *what, const char *path, const char *why)
{
	if (error_logged)
		return;
	error_logged = true;
	log_msg(LOG_ERR, "auth rate limit disabled: cannot %s %s: %s", what,
		path, why);
}

/* ---- keys ---- */

void authlimit_key(const char *peer, char *out, size_t size)
{
	char text[INET6_ADDRSTRLEN + 8];
	unsigned char a[16];
	size_t len;

	if (size == 0)
		return;
	if (peer == NULL)
		peer = "";
	if (strncasecmp(peer, "IPv6:", 5) == 0)
		peer += 5;
	len = strnlen(peer, sizeof text);
	if (len == 0 || len >= sizeof text)
		goto unknown;
	memcpy(text, peer, len + 1);

	if (inet_pton(AF_INET, text, a) == 1) {
		inet_ntop(AF_INET, a, text, sizeof text);
		snprintf(out, size, "%s", text);
		return;
	}
	if (inet_pton(AF_INET6, text, a) != 1)
		goto unknown;
	if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a)) {
		inet_ntop(AF_INET, a + 12, text, sizeof text);
		snprintf(out, size, "%s", text);
		return;
	}
	/* One customer gets a /64: count them as one. */
	memset(a + 8, 0, 8);
	inet_ntop(AF_INET6, a, text, sizeof text);
	snprintf(out, size, "%s/64", text);
	return;
unknown:
	snprintf(out, size, "unknown");
}

/* ---- records ---- */

static void rec_encode(const struct failrec *r,
		       unsigned char buf[AUTHLIMIT_RECORD_SIZE])
{
	uint64_t start = (uint64_t)r->start;

	memset(buf, 0, AUTHLIMIT_RECORD_SIZE);
	buf[0] = AUTHLIMIT_VERSION;
	for (int i = 0; i < 4; i++)
		buf[4 + i] = (unsigned char)(r->count >> (8 * i));
	for (int i = 0; i < 8; i++)
		buf[8 + i] = (unsigned char)(start >> (8 * i));
}

/* False for a value we did not write (other size or version). */
static bool rec_decode(TDB_DATA d, struct failrec *r)
{
	uint64_t start = 0;

	if (d.dptr == NULL || d.dsize != AUTHLIMIT_RECORD_SIZE ||
	    d.dptr[0] != AUTHLIMIT_VERSION)
		return false;
	r->count = 0;
	for (int i = 0; i < 4; i++)
		r->count |= (uint32_t)d.dptr[4 + i] << (8 * i);
	for (int i = 0; i < 8; i++)
		start |= (uint64_t)d.dptr[8 + i] << (8 * i);
	r->start = (int64_t)start;
	return true;
}

/* Has the window that began at start ended by now?  A start in the future
 * (the clock was set back) ends it too, rather than block for that long. */
static bool window_over(const struct config *cfg, int64_t start, time_t now)
{
	return (int64_t)now < start ||
	       (int64_t)now - start >= (int64_t)cfg->auth_fail_window;
}

static TDB_DATA tdb_key(const char *key)
{
	TDB_DATA k = { (unsigned char *)(uintptr_t)key, strlen(key) };
	return k;
}

/* 1 and *r filled, 0 absent or not ours, -1 error. */
static int fetch(struct tdb_context *tdb, const char *key, struct failrec *r)
{
	TDB_DATA d = tdb_fetch(tdb, tdb_key(key));
	if (d.dptr == NULL)
		return tdb_error(tdb) == TDB_ERR_NOEXIST ? 0 : -1;
	int ret = rec_decode(d, r) ? 1 : 0;
	free(d.dptr);
	return ret;
}

static int store(struct tdb_context *tdb, const char *key,
		 const struct failrec *r)
{
	unsigned char buf[AUTHLIMIT_RECORD_SIZE];
	TDB_DATA d = { buf, sizeof buf };

	rec_encode(r, buf);
	return tdb_store(tdb, tdb_key(key), d, TDB_REPLACE);
}

/* ---- the database ---- */

/* Open the database; NULL if it does not exist and !create, or on error
 * (logged). */
static struct tdb_context *db_open(const struct config *cfg, bool create,
				   struct str *path)
{
	str_printf(path, "%s/%s", cfg->state_dir, AUTHLIMIT_FILE);
	errno = 0;
	struct tdb_context *tdb = tdb_open(path->data, AUTHLIMIT_HASH_SIZE,
					   TDB_DEFAULT,
					   O_RDWR | (create ? O_CREAT : 0),
					   0600);
	if (tdb == NULL && !(errno == ENOENT && !create))
		db_error("open", path->data,
			 errno ? strerror(errno) : "not a tdb file");
	return tdb;
}

/* ---- queries ---- */

unsigned authlimit_count(const struct config *cfg, const char *peer,
			 time_t now)
{
	char key[AUTHLIMIT_KEY_MAX];
	struct str path = STR_INIT;
	struct failrec r;
	unsigned count = 0;

	authlimit_key(peer, key, sizeof key);
	struct tdb_context *tdb = db_open(cfg, false, &path);
	if (tdb != NULL) {
		int found = fetch(tdb, key, &r);
		if (found < 0)
			db_error("read", path.data, tdb_errorstr(tdb));
		else if (found == 1 && !window_over(cfg, r.start, now))
			count = r.count;
		tdb_close(tdb);
	}
	str_free(&path);
	return count;
}

bool authlimit_blocked(const struct config *cfg, const char *peer, time_t now)
{
	return authlimit_count(cfg, peer, now) >= cfg->auth_fail_limit;
}

/* ---- counting ---- */

/* Add one failure to key's record, under its chain lock. */
static int count_failure(struct tdb_context *tdb, const struct config *cfg,
			 const char *key, time_t now)
{
	struct failrec r;

	if (tdb_chainlock(tdb, tdb_key(key)) != 0)
		return -1;
	int found = fetch(tdb, key, &r);
	if (found == 0 || (found == 1 && window_over(cfg, r.start, now))) {
		r.count = 0;
		r.start = (int64_t)now;
	}
	int ret = -1;
	if (found >= 0) {
		if (r.count < UINT32_MAX)
			r.count++;
		ret = store(tdb, key, &r);
	}
	tdb_chainunlock(tdb, tdb_key(key));
	return ret;
}

/* Is a sweep due?  Claims it (records now as the last sweep) if so, so
 * that of many concurrent failures only one sweeps. */
static bool sweep_due(struct tdb_context *tdb, time_t now)
{
	struct failrec m;
	bool due;

	if (tdb_chainlock(tdb, tdb_key(AUTHLIMIT_META_KEY)) != 0)
		return false;
	int found = fetch(tdb, AUTHLIMIT_META_KEY, &m);
	due = found == 0 ||
	      (found == 1 && ((int64_t)now < m.start ||
			      (int64_t)now - m.start >=
				      AUTHLIMIT_SWEEP_INTERVAL));
	if (due) {
		m.count = 0;
		m.start = (int64_t)now;
		due = store(tdb, AUTHLIMIT_META_KEY, &m) == 0;
	}
	tdb_chainunlock(tdb, tdb_key(AUTHLIMIT_META_KEY));
	return due;
}

/* Expired keys found by a sweep's read-only traversal, deleted after it:
 * a record deleted inside a writing traversal is only marked dead, and
 * its space is not reused until some later traversal. */
struct sweep {
	const struct config *cfg;
	time_t now;
	unsigned visited;
	size_t n;
	struct str keys;	/* n times: size_t length, then the bytes */
};

static int sweep_fn(struct tdb_context *tdb, TDB_DATA key, TDB_DATA data,
		    void *private_data)
{
	struct sweep *sw = private_data;
	struct failrec r;
	static const char meta[] = AUTHLIMIT_META_KEY;

	(void)tdb;
	if (key.dsize == sizeof meta - 1 &&
	    memcmp(key.dptr, meta, key.dsize) == 0)
		return 0;
	if (key.dsize <= AUTHLIMIT_SWEEP_KEY_MAX &&
	    (!rec_decode(data, &r) || window_over(sw->cfg, r.start, sw->now))) {
		str_append_n(&sw->keys, &key.dsize, sizeof key.dsize);
		str_append_n(&sw->keys, key.dptr, key.dsize);
		sw->n++;
	}
	return ++sw->visited >= AUTHLIMIT_SWEEP_MAX ||
	       sw->n >= AUTHLIMIT_SWEEP_DELETE_MAX;
}

/* Delete key if its window is over (or it is not ours), checked again under
 * its chain lock: a handler may have counted a new failure meanwhile. */
static void sweep_one(struct tdb_context *tdb, TDB_DATA key,
		      const struct sweep *sw)
{
	TDB_DATA d;
	struct failrec r;

	if (tdb_chainlock(tdb, key) != 0)
		return;
	d = tdb_fetch(tdb, key);
	if (d.dptr != NULL &&
	    (!rec_decode(d, &r) || window_over(sw->cfg, r.start, sw->now)))
		tdb_delete(tdb, key);
	free(d.dptr);
	tdb_chainunlock(tdb, key);
}

static void sweep(struct tdb_context *tdb, const struct config *cfg,
		  time_t now)
{
	struct sweep sw = { cfg, now, 0, 0, STR_INIT };
	size_t off = 0;

	tdb_traverse_read(tdb, sweep_fn, &sw);
	for (size_t i = 0; i < sw.n; i++) {
		TDB_DATA key;
		memcpy(&key.dsize, sw.keys.data + off, sizeof key.dsize);
		key.dptr = (unsigned char *)sw.keys.data + off +
			   sizeof key.dsize;
		off += sizeof key.dsize + key.dsize;
		sweep_one(tdb, key, &sw);
	}
	str_free(&sw.keys);
}

void authlimit_failure(const struct config *cfg, const char *peer,
		       const char *user, const char *service, time_t now)
{
	char key[AUTHLIMIT_KEY_MAX];
	struct str path = STR_INIT;

	if (peer == NULL || *peer == '\0')
		peer = "unknown";
	/* The one line fail2ban reads; logged even if counting fails.  The
	 * user name is the client's: no address is longer than 320 octets,
	 * so more is cut rather than letting a client fill the journal.
	 * xstrndup() copies n bytes: strnlen() keeps it inside a short
	 * name. */
	if (user == NULL)
		user = "";
	char *shown = xstrndup(user, strnlen(user, 320));
	log_kv(LOG_WARNING, "authentication failed", "PEER", peer, "USER",
	       shown, "SERVICE", service != NULL ? service : "unknown", NULL);
	free(shown);

	authlimit_key(peer, key, sizeof key);
	struct tdb_context *tdb = db_open(cfg, true, &path);
	if (tdb == NULL) {
		str_free(&path);
		return;
	}
	if (count_failure(tdb, cfg, key, now) != 0)
		db_error("update", path.data, tdb_errorstr(tdb));
	else if (sweep_due(tdb, now))
		sweep(tdb, cfg, now);
	tdb_close(tdb);
	str_free(&path);
}
