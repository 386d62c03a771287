/*
 * imap_folder: a Maildir++ folder as IMAP sees it: UIDs from the folder's
 * tdb, flags and keywords from the file names, the session's view kept in
 * step with the disk, and adding messages (APPEND, COPY).  See
 * imap_folder.h for the contract.
 *
 * The tdb (<folder>/sockmail-imap.tdb) holds
 *   "uidvalidity", "uidnext", "recent"	4 octets each, little-endian
 *   "keywords"				names, each NUL-terminated
 *   "u:<base>"				the UID of the file whose name
 *					starts with <base> (up to ':')
 * Every write happens inside a transaction, so a reader holding
 * tdb_lockall_read sees a consistent state and readers that take the
 * transaction lock (assigning UIDs, claiming \Recent) are serialised.
 * A new tdb gets its UIDVALIDITY in the same transaction as the first
 * UIDs.
 *
 * Two accelerators, neither needed for correctness: <folder>/
 * sockmail-snapshot, the view of a quiet folder, spares a SELECT the
 * directory scan (see "the snapshot"); <folder>/sockmail-cache.tdb keeps
 * ENVELOPE and BODYSTRUCTURE, read under one lock per command and written
 * in batches (see "the cache").
 */
#include "imap_folder.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <tdb.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define DB_HASH_SIZE 10007
#define UID_PREFIX "u:"
#define UID_PREFIX_LEN 2
#define NAME_MAX_LEN 255
#define DIRENT_BUF_SIZE (64 * 1024)
/* How long after a directory's mtime a scan still cannot trust it: a
 * change in the same clock tick leaves the mtime as it was. */
#define MTIME_SLACK_NS 1000000000LL
#define ARENA_COMPACT_MIN (256 * 1024)
#define SCAN_RESERVE_MAX (64 * 1024 * 1024)

enum { SUB_NEW = 0, SUB_CUR = 1 };
static const char *const sub_name[2] = { "new", "cur" };

/* Cache values put during a command, not yet written (see the cache). */
struct cache_ent {
	uint32_t uid;
	char field;
	size_t off, len;		/* the value in data */
};

struct cache_batch {
	struct str data;
	struct cache_ent *e;
	size_t n, cap;
	uint32_t *slot;			/* open addressing: index + 1, 0 free */
	size_t slots;			/* a power of two, at least 2n */
};

struct imap_folder_private {
	int dir_fd[2];			/* new/, cur/ */
	bool scanned;
	int64_t scan_mtime[2];		/* their mtimes at the last scan */
	int64_t scan_start;		/* when that scan began */
	size_t arena_garbage;		/* arena bytes no entry uses */
	unsigned keywords_reported;	/* n_keywords the client knows */
	int cache_resets;		/* cache files replaced so far */
	bool db_new;			/* the tdb awaits its UIDVALIDITY */
	uint32_t lookup_uidnext;	/* UIDNEXT the last scan's UIDs match */
	bool opening;			/* in imap_folder_open's sync */
	bool snap_used;			/* the open's view is the snapshot's */
	void *map;			/* the snapshot mapped: f->arena is in */
	size_t map_len;			/* it until it must grow */
	/* the open's view may become the snapshot when the folder is closed
	 * if the disk is then still as the open's scan found it */
	bool snap_candidate;
	int64_t snap_taken, snap_mtime[2];
	uint32_t snap_uidnext;
	bool cache_read_locked;		/* tdb_lockall_read on f->cache */
	uint32_t cache_validity;	/* the UIDVALIDITY f->cache matches */
	struct cache_batch batch;	/* cache values not yet written */
	bool flags_dirty[2];		/* renamed out of new/, into cur/ */
};

#define SIZE_UNKNOWN UINT64_MAX

/* One file found by a scan. */
struct scan_ent {
	uint32_t off;			/* its name in scan.names */
	uint32_t uid;			/* 0: none yet */
	uint8_t len, base_len, sub;
};

struct scan {
	struct str names;
	struct scan_ent *e;
	size_t n, cap;
};

/* the cache, last in this file */
static void batch_clear(struct cache_batch *b);
static void cache_check_size(struct imap_folder *f);

/* ---- small helpers ---- */

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return ts_ns(&t);
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static TDB_DATA mkkey(const char *s, size_t len)
{
	TDB_DATA k = { (unsigned char *)(uintptr_t)s, len };
	return k;
}

static int parse_u32_cb(TDB_DATA key, TDB_DATA data, void *priv)
{
	(void)key;
	if (data.dsize != 4)
		return -2;
	*(uint32_t *)priv = get_le32(data.dptr);
	return 0;
}

/* 1 found, 0 missing (or malformed: treated as missing), -1 error. */
static int db_get_u32(struct tdb_context *db, const char *key, size_t len,
		      uint32_t *out)
{
	int ret = tdb_parse_record(db, mkkey(key, len), parse_u32_cb, out);
	if (ret == 0)
		return 1;
	if (ret == -2 || tdb_error(db) == TDB_ERR_NOEXIST)
		return 0;
	return -1;
}

static int db_put_u32(struct tdb_context *db, const char *key, size_t len,
		      uint32_t v)
{
	unsigned char buf[4];
	put_le32(buf, v);
	TDB_DATA d = { buf, 4 };
	return tdb_store(db, mkkey(key, len), d, TDB_REPLACE);
}

static int db_get(struct tdb_context *db, const char *key, uint32_t *out)
{
	return db_get_u32(db, key, strlen(key), out);
}

static int db_put(struct tdb_context *db, const char *key, uint32_t v)
{
	return db_put_u32(db, key, strlen(key), v);
}

/* The "u:<base>" key of a file name into key (a buffer of at least
 * NAME_MAX_LEN + 3 octets); its length. */
static size_t uid_key(char *key, const char *name, size_t base_len)
{
	memcpy(key, UID_PREFIX, UID_PREFIX_LEN);
	memcpy(key + UID_PREFIX_LEN, name, base_len);
	return UID_PREFIX_LEN + base_len;
}

static size_t base_length(const char *name, size_t len)
{
	const char *colon = memchr(name, ':', len);
	return colon != NULL ? (size_t)(colon - name) : len;
}

static void db_log(struct imap_folder *f, const char *what)
{
	log_msg(LOG_ERR, "%s/%s: %s: %s", f->path, IMAP_FOLDER_DB, what,
		tdb_errorstr(f->db));
}

static int fsync_fd(const char *path, const char *sub, int fd)
{
	if (fsync(fd) == 0)
		return 0;
	log_msg(LOG_ERR, "fsync %s/%s: %s", path, sub, strerror(errno));
	return -1;
}

/* ---- flags in file names ---- */

/* System flags and keyword bits from the letters after ":2,". */
static void parse_info(const char *name, size_t len, size_t base_len,
		       uint8_t *flags, uint32_t *keywords)
{
	*flags = 0;
	*keywords = 0;
	if (len < base_len + 3 || memcmp(name + base_len, ":2,", 3) != 0)
		return;
	for (size_t j = base_len + 3; j < len; j++) {
		char c = name[j];
		switch (c) {
		case 'D': *flags |= IMAP_FLAG_DRAFT; break;
		case 'F': *flags |= IMAP_FLAG_FLAGGED; break;
		case 'R': *flags |= IMAP_FLAG_ANSWERED; break;
		case 'S': *flags |= IMAP_FLAG_SEEN; break;
		case 'T': *flags |= IMAP_FLAG_DELETED; break;
		default:
			if (c >= 'a' && c <= 'z')
				*keywords |= 1u << (c - 'a');
			break;
		}
	}
}

/* ":2," and the letters, in ASCII order as the Maildir spec wants. */
static void append_info(struct str *out, uint8_t flags, uint32_t keywords)
{
	str_append(out, ":2,");
	if (flags & IMAP_FLAG_DRAFT)
		str_append_c(out, 'D');
	if (flags & IMAP_FLAG_FLAGGED)
		str_append_c(out, 'F');
	if (flags & IMAP_FLAG_ANSWERED)
		str_append_c(out, 'R');
	if (flags & IMAP_FLAG_SEEN)
		str_append_c(out, 'S');
	if (flags & IMAP_FLAG_DELETED)
		str_append_c(out, 'T');
	for (unsigned k = 0; k < IMAP_MAX_KEYWORDS; k++)
		if (keywords & (1u << k))
			str_append_c(out, (char)('a' + k));
}

/* ---- the name arena ---- */

static const char *msg_name(const struct imap_folder *f,
			    const struct imap_msg *m)
{
	return f->arena + m->name;
}

/* Give the arena up: unmapped if it is the snapshot's, else freed. */
static void arena_free(struct imap_folder *f)
{
	if (f->priv != NULL && f->priv->map != NULL) {
		munmap(f->priv->map, f->priv->map_len);
		f->priv->map = NULL;
	} else {
		free(f->arena);
	}
	f->arena = NULL;
	f->arena_len = f->arena_cap = 0;
}

/* Room for cap octets (more than arena_len); the snapshot's names are
 * copied into memory of our own first. */
static void arena_grow(struct imap_folder *f, size_t cap)
{
	if (f->priv->map != NULL) {
		char *a = xmalloc(cap);
		memcpy(a, f->arena, f->arena_len);
		size_t len = f->arena_len;
		arena_free(f);
		f->arena = a;
		f->arena_len = len;
	} else {
		f->arena = xrealloc(f->arena, cap);
	}
	f->arena_cap = cap;
}

static int arena_store(struct imap_folder *f, struct imap_msg *m,
		       const char *name, size_t len, bool replace)
{
	if (replace) {
		size_t old = strlen(msg_name(f, m));
		if (old >= len) {
			memcpy(f->arena + m->name, name, len);
			f->arena[m->name + len] = '\0';
			f->priv->arena_garbage += old - len;
			return 0;
		}
		f->priv->arena_garbage += old + 1;
	}
	if (f->arena_len + len + 1 > UINT32_MAX) {
		errno = E2BIG;
		return -1;
	}
	if (f->arena_len + len + 1 > f->arena_cap) {
		size_t cap = f->arena_cap ? f->arena_cap * 2 : 64 * 1024;
		while (cap < f->arena_len + len + 1)
			cap *= 2;
		arena_grow(f, cap);
	}
	memcpy(f->arena + f->arena_len, name, len);
	f->arena[f->arena_len + len] = '\0';
	m->name = (uint32_t)f->arena_len;
	f->arena_len += len + 1;
	return 0;
}

/* Renames leave old names behind; rebuild when they are most of it. */
static void arena_compact(struct imap_folder *f)
{
	if (f->priv->arena_garbage < ARENA_COMPACT_MIN ||
	    f->priv->arena_garbage < f->arena_len / 2)
		return;
	char *old = f->arena;
	void *map = f->priv->map;	/* old is in it, or our own */
	f->priv->map = NULL;
	f->arena = NULL;
	f->arena_len = f->arena_cap = 0;
	f->priv->arena_garbage = 0;
	for (size_t i = 0; i < f->count; i++) {
		const char *n = old + f->msgs[i].name;
		arena_store(f, &f->msgs[i], n, strlen(n), false);
	}
	if (map != NULL)
		munmap(map, f->priv->map_len);
	else
		free(old);
}

static int msg_sub(const struct imap_msg *m)
{
	return (m->state & IMAP_MSG_NEW_DIR) ? SUB_NEW : SUB_CUR;
}

static size_t msg_base_len(const struct imap_folder *f, size_t i)
{
	const char *n = msg_name(f, &f->msgs[i]);
	return base_length(n, strlen(n));
}

/* ---- keywords ---- */

static void keywords_free(struct imap_folder *f)
{
	for (unsigned k = 0; k < f->n_keywords; k++)
		free(f->keywords[k]);
	f->n_keywords = 0;
}

/* Read the keyword table.  It only grows, so in the usual case the names
 * we have stay (callers may hold pointers to them) and new ones are
 * added; a table that shrank (a cancelled transaction) is rebuilt. */
static int keywords_load(struct imap_folder *f)
{
	TDB_DATA d = tdb_fetch(f->db, mkkey("keywords", 8));
	if (d.dptr == NULL && tdb_error(f->db) != TDB_ERR_NOEXIST) {
		db_log(f, "reading keywords");
		return -1;
	}
	unsigned k = 0;
	size_t p = 0;
	while (p < d.dsize && k < IMAP_MAX_KEYWORDS) {
		const char *s = (const char *)d.dptr + p;
		size_t len = strnlen(s, d.dsize - p);
		if (len == 0 || len > IMAP_KEYWORD_MAX)
			break;
		if (k < f->n_keywords && (strlen(f->keywords[k]) != len ||
					  memcmp(f->keywords[k], s, len) != 0)) {
			/* not a prefix of what we had: start over */
			while (f->n_keywords > k)
				free(f->keywords[--f->n_keywords]);
		}
		if (k == f->n_keywords)
			f->keywords[f->n_keywords++] = xstrndup(s, len);
		k++;
		p += len + 1;
	}
	while (f->n_keywords > k)
		free(f->keywords[--f->n_keywords]);
	free(d.dptr);
	return 0;
}

static int keywords_store(struct imap_folder *f)
{
	struct str v = STR_INIT;
	for (unsigned k = 0; k < f->n_keywords; k++)
		str_append_n(&v, f->keywords[k], strlen(f->keywords[k]) + 1);
	TDB_DATA d = { (unsigned char *)v.data, v.len };
	int ret = tdb_store(f->db, mkkey("keywords", 8), d, TDB_REPLACE);
	str_free(&v);
	if (ret != 0)
		db_log(f, "storing keywords");
	return ret;
}

static int keyword_find(const struct imap_folder *f, const char *name)
{
	for (unsigned k = 0; k < f->n_keywords; k++)
		if (strcasecmp(f->keywords[k], name) == 0)
			return (int)k;
	return -1;
}

/* An atom that may be a keyword (RFC 3501 flag-keyword). */
static bool keyword_valid(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > IMAP_KEYWORD_MAX)
		return false;
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c))
			return false;
	}
	return true;
}

/* Inside a transaction: the index of name, added if missing.  -1 when
 * the table is full (errno EMLINK) or on a database error. */
static int keyword_get_locked(struct imap_folder *f, const char *name)
{
	int k = keyword_find(f, name);
	if (k >= 0)
		return k;
	if (f->n_keywords >= IMAP_MAX_KEYWORDS) {
		errno = EMLINK;
		return -1;
	}
	f->keywords[f->n_keywords++] = xstrdup(name);
	if (keywords_store(f) != 0) {
		free(f->keywords[--f->n_keywords]);
		errno = EIO;
		return -1;
	}
	return (int)f->n_keywords - 1;
}

/* ---- opening ---- */

static int open_dirs(struct imap_folder *f, struct str *err)
{
	int root = open(f->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		int saved = errno;
		str_printf(err, "%s: %s", f->path, strerror(errno));
		errno = saved;
		return -1;
	}
	int ret = 0;
	for (int k = 0; k < 2 && ret == 0; k++) {
		f->priv->dir_fd[k] = openat(root, sub_name[k],
					    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (f->priv->dir_fd[k] < 0) {
			int saved = errno;
			str_printf(err, "%s/%s: %s", f->path, sub_name[k],
				   strerror(errno));
			errno = saved;
			ret = -1;
		}
	}
	int saved = errno;
	close(root);
	errno = saved;
	return ret;
}

/* Inside a transaction: UIDVALIDITY and UIDNEXT, set up first (now, 1)
 * if the tdb is new or was never initialised. */
static int db_init_locked(struct imap_folder *f, uint32_t *validity,
			  uint32_t *next)
{
	int r = db_get(f->db, "uidvalidity", validity);
	if (r == 1)
		r = db_get(f->db, "uidnext", next);
	if (r != 0)
		return r < 0 ? -1 : 0;
	*validity = (uint32_t)time(NULL);
	*next = 1;
	if (db_put(f->db, "uidvalidity", *validity) != 0 ||
	    db_put(f->db, "uidnext", 1) != 0 || db_put(f->db, "recent", 0) != 0)
		return -1;
	return 0;
}

/* Commit, and make sure a failed commit leaves no transaction behind:
 * tdb does not cancel one whose final fsync failed, and its locks would
 * then stall every other session on this folder until we exit. */
static int db_commit(struct tdb_context *db)
{
	if (tdb_transaction_commit(db) == 0)
		return 0;
	if (tdb_transaction_active(db))
		tdb_transaction_cancel(db);
	return -1;
}

/* Initialise a new tdb in a transaction of its own. */
static int db_init(struct imap_folder *f, struct str *err)
{
	if (tdb_transaction_start(f->db) != 0)
		goto fail;
	if (db_init_locked(f, &f->uidvalidity, &f->uidnext) != 0) {
		tdb_transaction_cancel(f->db);
		goto fail;
	}
	if (db_commit(f->db) != 0)
		goto fail;
	f->priv->db_new = false;
	return 0;
fail:
	db_log(f, "initialising");
	str_printf(err, "%s/%s: %s", f->path, IMAP_FOLDER_DB,
		   tdb_errorstr(f->db));
	errno = EIO;
	return -1;
}

/* Open the tdb, creating it if missing.  A new one is initialised now,
 * or with defer (an open, which scans next) by the transaction that gives
 * the folder's files their UIDs: one commit (and its fsyncs), not two. */
static int open_db(struct imap_folder *f, bool defer, struct str *err)
{
	struct str p = STR_INIT;
	str_printf(&p, "%s/%s", f->path, IMAP_FOLDER_DB);
	f->db = tdb_open(str_c(&p), DB_HASH_SIZE,
			 TDB_DEFAULT | TDB_INCOMPATIBLE_HASH | TDB_DISALLOW_NESTING,
			 O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f->db == NULL) {
		int saved = errno ? errno : EIO;
		str_printf(err, "%s: %s", str_c(&p), strerror(saved));
		log_msg(LOG_ERR, "tdb_open %s: %s", str_c(&p),
			strerror(saved));
		str_free(&p);
		errno = saved == ENOENT ? EIO : saved;
		return -1;
	}
	str_free(&p);
	int r = db_get(f->db, "uidvalidity", &f->uidvalidity);
	if (r == 1 && db_get(f->db, "uidnext", &f->uidnext) == 1)
		return 0;
	if (defer && r >= 0) {
		f->uidvalidity = 0;
		f->uidnext = 1;
		f->priv->db_new = true;
		return 0;
	}
	return db_init(f, err);
}

/* Everything but the scan: for imap_folder_open and for the destination
 * of an add. */
static int folder_init(struct imap_folder *f, const char *path, bool readonly,
		       bool defer_db_init, struct str *err)
{
	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	f->readonly = readonly;
	f->priv = xcalloc(1, sizeof *f->priv);
	f->priv->dir_fd[0] = f->priv->dir_fd[1] = -1;
	if (open_dirs(f, err) != 0 || open_db(f, defer_db_init, err) != 0)
		return -1;
	if (keywords_load(f) != 0) {
		str_printf(err, "%s: cannot read keywords", f->path);
		errno = EIO;
		return -1;
	}
	f->priv->keywords_reported = f->n_keywords;
	return 0;
}

/* ---- scanning ---- */

static void scan_free(struct scan *sc)
{
	str_free(&sc->names);
	free(sc->e);
	memset(sc, 0, sizeof *sc);
}

static const char *scan_name(const struct scan *sc, const struct scan_ent *e)
{
	return sc->names.data + e->off;
}

static bool dirent_is_file(int dir_fd, const struct dirent64 *de)
{
	if (de->d_type == DT_REG)
		return true;
	if (de->d_type != DT_UNKNOWN)
		return false;
	struct stat st;
	return fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISREG(st.st_mode);
}

static int scan_add(struct scan *sc, const char *name, size_t len, int sub)
{
	if (sc->n >= IMAP_FOLDER_MAX_MESSAGES) {
		errno = E2BIG;
		return -1;
	}
	if (sc->n == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 1024;
		sc->e = xrealloc(sc->e, sc->cap * sizeof *sc->e);
	}
	struct scan_ent *e = &sc->e[sc->n++];
	e->off = (uint32_t)sc->names.len;
	e->len = (uint8_t)len;
	e->base_len = (uint8_t)base_length(name, len);
	e->sub = (uint8_t)sub;
	e->uid = 0;
	str_append_n(&sc->names, name, len + 1);
	return 0;
}

/* Read one of new/ and cur/ with getdents64 (one system call per 64 KiB
 * of entries). */
static int scan_dir(struct imap_folder *f, int sub, struct scan *sc)
{
	int fd = f->priv->dir_fd[sub];
	if (lseek(fd, 0, SEEK_SET) < 0)
		goto fail;
	char *buf = xmalloc(DIRENT_BUF_SIZE);
	for (;;) {
		ssize_t n = getdents64(fd, buf, DIRENT_BUF_SIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;
			free(buf);
			errno = saved;
			goto fail;
		}
		if (n == 0)
			break;
		for (ssize_t p = 0; p < n;) {
			struct dirent64 *de = (struct dirent64 *)(buf + p);
			p += de->d_reclen;
			size_t len = strlen(de->d_name);
			if (de->d_name[0] == '.' || len > NAME_MAX_LEN ||
			    !dirent_is_file(fd, de))
				continue;
			if (scan_add(sc, de->d_name, len, sub) != 0) {
				free(buf);
				log_msg(LOG_ERR, "%s: more than %d messages",
					f->path, IMAP_FOLDER_MAX_MESSAGES);
				return -1;
			}
		}
	}
	free(buf);
	return 0;
fail:
	log_msg(LOG_ERR, "reading %s/%s: %s", f->path, sub_name[sub],
		strerror(errno));
	return -1;
}

/* Scan both directories, noting their mtimes first so that a change made
 * while we read shows up as a changed mtime next time. */
static int scan_folder(struct imap_folder *f, struct scan *sc)
{
	memset(sc, 0, sizeof *sc);
	int64_t start = now_ns();
	int64_t mt[2];
	size_t dir_bytes = 0;
	for (int k = 0; k < 2; k++) {
		struct stat st;
		if (fstat(f->priv->dir_fd[k], &st) != 0) {
			log_msg(LOG_ERR, "stat %s/%s: %s", f->path,
				sub_name[k], strerror(errno));
			return -1;
		}
		mt[k] = ts_ns(&st.st_mtim);
		dir_bytes += (size_t)st.st_size;
	}
	/* A directory's size is about the size of its entries: allocate
	 * once instead of growing (each growth a copy into fresh pages). */
	if (dir_bytes > SCAN_RESERVE_MAX)
		dir_bytes = SCAN_RESERVE_MAX;
	str_reserve(&sc->names, dir_bytes);
	sc->cap = dir_bytes / 24 + 64;
	sc->e = xmalloc(sc->cap * sizeof *sc->e);
	for (int k = 0; k < 2; k++)
		if (scan_dir(f, k, sc) != 0)
			return -1;
	f->priv->scanned = true;
	f->priv->scan_start = start;
	f->priv->scan_mtime[0] = mt[0];
	f->priv->scan_mtime[1] = mt[1];
	return 0;
}

/* Nothing can have changed since the last scan: the directories' mtimes
 * are as they were and old enough to be trusted. */
static bool scan_unchanged(struct imap_folder *f)
{
	struct imap_folder_private *p = f->priv;
	if (!p->scanned)
		return false;
	for (int k = 0; k < 2; k++) {
		struct stat st;
		if (fstat(p->dir_fd[k], &st) != 0)
			return false;
		int64_t mt = ts_ns(&st.st_mtim);
		if (mt != p->scan_mtime[k] || p->scan_start - mt < MTIME_SLACK_NS)
			return false;
	}
	return true;
}

/* Look up the UID of every scanned file under one read lock; *recent
 * gets the "recent" record.  Holding tdb_lockall_read lets tdb skip the
 * per-chain locks. */
static int scan_lookup(struct imap_folder *f, struct scan *sc,
		       uint32_t *recent)
{
	/* a tdb no one has initialised holds no UIDs: every file is
	 * pending, and assign_uids looks each up again anyway */
	if (f->priv->db_new) {
		if (recent != NULL)
			*recent = 0;
		return 0;
	}
	if (tdb_lockall_read(f->db) != 0) {
		db_log(f, "read lock");
		return -1;
	}
	char key[NAME_MAX_LEN + 3];
	int ret = 0;
	if (recent != NULL && db_get(f->db, "recent", recent) < 0)
		ret = -1;
	if (ret == 0 && db_get(f->db, "uidnext", &f->priv->lookup_uidnext) < 0)
		ret = -1;
	for (size_t j = 0; j < sc->n && ret == 0; j++) {
		struct scan_ent *e = &sc->e[j];
		size_t kl = uid_key(key, scan_name(sc, e), e->base_len);
		if (db_get_u32(f->db, key, kl, &e->uid) < 0)
			ret = -1;
	}
	if (ret != 0)
		db_log(f, "reading UIDs");
	tdb_unlockall_read(f->db);
	return ret;
}

/* ---- the view ---- */

long imap_folder_find_uid(const struct imap_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->msgs[mid].uid == uid)
			return (long)mid;
		if (f->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static uint32_t max_uid(const struct imap_folder *f)
{
	return f->count > 0 ? f->msgs[f->count - 1].uid : 0;
}

/* The CRLF size of a file without ",W=": count its lone LFs (once). */
static int count_crlf_size(int dir_fd, const char *name, uint64_t *size)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	char buf[16384];
	uint64_t total = 0;
	bool prev_cr = false;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			if (n < 0)
				return -1;
			break;
		}
		total += (uint64_t)n;
		for (ssize_t j = 0; j < n; j++) {
			if (buf[j] == '\n' && !prev_cr)
				total++;
			prev_cr = buf[j] == '\r';
		}
	}
	*size = total;
	return 0;
}

/* The CRLF size from ",W=<digits>" in the base name (as delivery and
 * add_make_name write it): true with *size, false if there is none. */
static bool name_w_size(const char *name, size_t base_len, uint64_t *size)
{
	const char *end = name + base_len;
	for (const char *p = name;
	     (p = memmem(p, (size_t)(end - p), ",W=", 3)) != NULL; p++) {
		const char *d = p + 3;
		uint64_t v = 0;
		while (d < end && *d >= '0' && *d <= '9' &&
		       v <= (UINT64_MAX - 9) / 10)
			v = v * 10 + (uint64_t)(*d++ - '0');
		if (d > p + 3 && (d == end || *d == ',')) {
			*size = v;
			return true;
		}
	}
	return false;
}

/* Append a scanned file to the view (its UID above every other).  A file
 * without ",W=" that moved since the scan (another session took it to
 * cur/) gets its size later: *unknown is set. */
static int view_append(struct imap_folder *f, const struct scan *sc,
		       const struct scan_ent *e, bool adopted, bool *unknown)
{
	const char *name = scan_name(sc, e);
	uint64_t size = 0;
	if (name_w_size(name, e->base_len, &size)) {
		/* as delivery counted it */
	} else if (count_crlf_size(f->priv->dir_fd[e->sub], name, &size) != 0) {
		if (errno != ENOENT)
			return -1;
		size = SIZE_UNKNOWN;
		*unknown = true;
	}
	if (f->count == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 1024;
		f->msgs = xrealloc(f->msgs, f->cap * sizeof *f->msgs);
	}
	struct imap_msg *m = &f->msgs[f->count];
	memset(m, 0, sizeof *m);
	if (adopted)
		m->name = e->off;	/* the arena is the scan's names */
	else if (arena_store(f, m, name, e->len, false) != 0)
		return -1;
	m->uid = e->uid;
	m->size = size;
	parse_info(name, e->len, e->base_len, &m->flags, &m->keywords);
	m->state = e->sub == SUB_NEW ? IMAP_MSG_NEW_DIR : 0;
	f->count++;
	return 0;
}

/* Give an existing entry the name a scan found it under.  The flags are
 * left alone: the caller compares and reports them. */
static int view_rename(struct imap_folder *f, size_t i, const struct scan *sc,
		       const struct scan_ent *e)
{
	struct imap_msg *m = &f->msgs[i];
	const char *name = scan_name(sc, e);
	m->state &= (uint8_t)~IMAP_MSG_NEW_DIR;
	if (e->sub == SUB_NEW)
		m->state |= IMAP_MSG_NEW_DIR;
	if (strcmp(msg_name(f, m), name) == 0)
		return 0;
	return arena_store(f, m, name, e->len, true);
}

/* Find every view entry again by UID after renames by others: names only,
 * flags untouched (imap_folder_update reports those). */
static int view_refresh_names(struct imap_folder *f)
{
	struct scan sc;
	uint8_t *seen = xcalloc(f->count + 1, 1);
	int ret = scan_folder(f, &sc);
	if (ret == 0)
		ret = scan_lookup(f, &sc, NULL);
	for (size_t j = 0; ret == 0 && j < sc.n; j++) {
		if (sc.e[j].uid == 0)
			continue;
		long i = imap_folder_find_uid(f, sc.e[j].uid);
		if (i < 0 || seen[i])
			continue;
		seen[i] = 1;
		f->msgs[i].state &= (uint8_t)~IMAP_MSG_GONE;
		if (view_rename(f, (size_t)i, &sc, &sc.e[j]) != 0)
			ret = -1;
	}
	/* Not found: gone, so that a FETCH over many messages another
	 * session expunged costs one scan, not one each.  (A later update
	 * brings back one that only slipped past this readdir.) */
	for (size_t i = 0; ret == 0 && i < f->count; i++)
		if (!seen[i])
			f->msgs[i].state |= IMAP_MSG_GONE;
	free(seen);
	scan_free(&sc);
	/* the view's flags may now lag behind: rescan on the next update */
	f->priv->scanned = false;
	return ret;
}

/* ---- UID assignment ---- */

static uint64_t name_time(const char *name)
{
	uint64_t t = 0;
	for (int n = 0; n < 19 && *name >= '0' && *name <= '9'; n++)
		t = t * 10 + (uint64_t)(*name++ - '0');
	return t;
}

/* A pending entry with its delivery time, parsed once for the sort. */
struct delivery_key {
	uint64_t t;
	size_t j;		/* index into the scan */
};

/* Delivery order: the leading seconds, then the base name. */
static int delivery_cmp(const void *a, const void *b, void *arg)
{
	const struct scan *sc = arg;
	const struct delivery_key *kx = a, *ky = b;
	if (kx->t != ky->t)
		return kx->t < ky->t ? -1 : 1;
	const struct scan_ent *x = &sc->e[kx->j], *y = &sc->e[ky->j];
	const char *nx = scan_name(sc, x), *ny = scan_name(sc, y);
	size_t n = x->base_len < y->base_len ? x->base_len : y->base_len;
	int c = memcmp(nx, ny, n);
	if (c != 0)
		return c;
	return (int)x->base_len - (int)y->base_len;
}

/* The pending entries in delivery order, the order their UIDs follow. */
static void sort_by_delivery(const struct scan *sc, size_t *pending, size_t n)
{
	if (n < 2)
		return;
	struct delivery_key *k = xmalloc(n * sizeof *k);
	for (size_t j = 0; j < n; j++) {
		k[j].t = name_time(scan_name(sc, &sc->e[pending[j]]));
		k[j].j = pending[j];
	}
	qsort_r(k, n, sizeof *k, delivery_cmp, (void *)(uintptr_t)sc);
	for (size_t j = 0; j < n; j++)
		pending[j] = k[j].j;
	free(k);
}

static int uid_cmp(const void *a, const void *b, void *arg)
{
	const struct scan *sc = arg;
	uint32_t x = sc->e[*(const size_t *)a].uid;
	uint32_t y = sc->e[*(const size_t *)b].uid;
	return x < y ? -1 : x > y;
}

/* \Recent as this sync hands it out: read-write, the UID ranges
 * (lo, hi] this session claimed; read-only, UIDs above the record. */
struct recent_claim {
	uint32_t lo[2], hi[2];
	int n;
	uint32_t above;		/* read-only */
};

static bool recent_is(const struct imap_folder *f,
		      const struct recent_claim *rc, uint32_t uid)
{
	if (f->readonly)
		return uid > rc->above;
	for (int k = 0; k < rc->n; k++)
		if (uid > rc->lo[k] && uid <= rc->hi[k])
			return true;
	return false;
}

/*
 * In one transaction: give the pending entries (no UID, or one that
 * cannot go into the view because it is not above its highest) a UID,
 * re-reading each first since another session may have done it meanwhile,
 * and, read-write, claim \Recent for UIDs above "recent" up to top (or
 * the highest UID handed out here): the range goes into *rc.
 */
static int assign_uids_tx(struct imap_folder *f, struct scan *sc,
			  const size_t *pending, size_t n_pending,
			  uint32_t top, struct recent_claim *rc)
{
	uint32_t recent_v = 0, *recent = &recent_v;
	uint32_t floor = max_uid(f);
	char key[NAME_MAX_LEN + 3];
	if (tdb_transaction_start(f->db) != 0) {
		db_log(f, "transaction start");
		return -1;
	}
	uint32_t next = 0, validity = f->uidvalidity;
	if (f->priv->db_new && db_init_locked(f, &validity, &next) != 0)
		goto fail;
	if (db_get(f->db, "uidnext", &next) != 1 || next == 0 ||
	    db_get(f->db, "recent", recent) < 0)
		goto fail;
	for (size_t j = 0; j < n_pending; j++) {
		struct scan_ent *e = &sc->e[pending[j]];
		size_t kl = uid_key(key, scan_name(sc, e), e->base_len);
		uint32_t uid = 0;
		int r = db_get_u32(f->db, key, kl, &uid);
		if (r < 0)
			goto fail;
		if (r == 1 && uid > floor && uid < next) {
			e->uid = uid;	/* another session was first */
		} else {
			if (next >= UINT32_MAX - 1) {
				log_msg(LOG_ERR, "%s: UIDs exhausted", f->path);
				goto fail;
			}
			e->uid = next++;
			if (db_put_u32(f->db, key, kl, e->uid) != 0)
				goto fail;
		}
		if (e->uid > top)
			top = e->uid;
	}
	if (n_pending > 0 && db_put(f->db, "uidnext", next) != 0)
		goto fail;
	if (!f->readonly && top > *recent && db_put(f->db, "recent", top) != 0)
		goto fail;
	if (db_commit(f->db) != 0) {
		db_log(f, "transaction commit");
		return -1;
	}
	f->uidnext = next;
	f->uidvalidity = validity;
	f->priv->db_new = false;
	f->priv->lookup_uidnext = next;
	if (f->readonly) {
		rc->above = *recent;
	} else if (top > *recent && rc->n < 2) {
		rc->lo[rc->n] = *recent;
		rc->hi[rc->n++] = top;
	}
	return 0;
fail:
	db_log(f, "assigning UIDs");
	tdb_transaction_cancel(f->db);
	return -1;
}

/* The folder tdb opened again, with extra open flags (or none). */
static int db_reopen(struct imap_folder *f, int flags)
{
	struct str p = STR_INIT;
	str_printf(&p, "%s/%s", f->path, IMAP_FOLDER_DB);
	tdb_close(f->db);
	f->db = tdb_open(str_c(&p), DB_HASH_SIZE,
			 TDB_DEFAULT | TDB_INCOMPATIBLE_HASH |
			 TDB_DISALLOW_NESTING | flags,
			 O_RDWR | O_CLOEXEC, 0600);
	if (f->db == NULL)
		log_msg(LOG_ERR, "tdb_open %s: %s", str_c(&p),
			strerror(errno ? errno : EIO));
	str_free(&p);
	if (f->db == NULL)
		return -1;
	uint32_t v = 0;
	if (!f->priv->db_new && (db_get(f->db, "uidvalidity", &v) != 1 ||
				 v != f->uidvalidity)) {
		log_msg(LOG_ERR, "%s/%s: replaced while open", f->path,
			IMAP_FOLDER_DB);
		return -1;
	}
	return 0;
}

/* Many UIDs at once (the first open of a big folder): the transaction's
 * commit writes with pwrite instead of through the map, which costs a
 * page fault per page written and, at the fsync, a TLB shootdown to write-
 * protect them again; about half the commit's time.  Only while opening,
 * where a failure to open the tdb again just fails the open. */
#define BIG_ASSIGN 1024

static int assign_uids(struct imap_folder *f, struct scan *sc,
		       const size_t *pending, size_t n_pending, uint32_t top,
		       struct recent_claim *rc)
{
	bool big = f->priv->opening && n_pending >= BIG_ASSIGN;
	if (big && db_reopen(f, TDB_NOMMAP) != 0)
		return -1;
	int ret = assign_uids_tx(f, sc, pending, n_pending, top, rc);
	if (big && db_reopen(f, 0) != 0)
		ret = -1;
	return ret;
}

/* Read-write: move the view's files from index from on out of new/ into
 * cur/ (adding ":2,"), then make the moves durable.  Failures leave a
 * consistent state (the file is in one place or the other, and found by
 * its unique name), so they are logged and otherwise ignored. */
static void move_new_to_cur(struct imap_folder *f, size_t from)
{
	struct str name = STR_INIT;
	bool moved = false;
	for (size_t i = from; i < f->count; i++) {
		struct imap_msg *m = &f->msgs[i];
		if (!(m->state & IMAP_MSG_NEW_DIR) || (m->state & IMAP_MSG_GONE))
			continue;
		const char *old = msg_name(f, m);
		str_clear(&name);
		str_append(&name, old);
		if (strchr(old, ':') == NULL)
			str_append(&name, ":2,");
		if (renameat(f->priv->dir_fd[SUB_NEW], old,
			     f->priv->dir_fd[SUB_CUR], str_c(&name)) != 0) {
			if (errno == ENOENT)
				continue;	/* moved by another session */
			log_msg(LOG_WARNING, "rename %s/new/%s: %s", f->path,
				old, strerror(errno));
			break;
		}
		moved = true;
		m->state &= (uint8_t)~IMAP_MSG_NEW_DIR;
		if (arena_store(f, m, name.data, name.len, true) != 0)
			break;
	}
	str_free(&name);
	if (moved) {
		fsync_fd(f->path, "cur", f->priv->dir_fd[SUB_CUR]);
		fsync_fd(f->path, "new", f->priv->dir_fd[SUB_NEW]);
	}
}

/* ---- the snapshot ---- */

/*
 * A SELECT of a big folder that nothing changed since the last one need
 * not read the directories and look up every name again: the view an
 * open built is kept in <folder>/sockmail-snapshot (UID, size and name of
 * every message, the directories' mtimes, when the scan began, and the
 * folder tdb's UIDVALIDITY, UIDNEXT and identity).  It is only an
 * accelerator, trusted when
 *   - both directories' mtimes are still those it was taken at, and it
 *     was taken SNAPSHOT_SLACK_NS after the later one (a change in the
 *     same clock tick as the mtime would not have moved it),
 *   - the folder tdb is the same file with the same UIDVALIDITY and
 *     UIDNEXT (no UID assigned since: every UID in it is one the folder
 *     tdb still gives the same file), and
 *   - the file is whole (checksum) and sane (UIDs ascending and below
 *     UIDNEXT, names within bounds).
 * Otherwise the folder is scanned as always, and the view of a scan that
 * can be trusted later becomes the new snapshot when the folder is closed
 * (after the client's last answer; only if the directories and UIDNEXT
 * are still as the scan found them).
 *
 * A file, not a tdb record: it is mapped privately and the names in it
 * become the view's name arena as they are (page cache pages, copied only
 * when written), where a tdb record would be copied into fresh memory, a
 * page fault per page; that copy was most of the cost of such a SELECT.
 * It is written to a name of its own and renamed into place, never
 * changed once there (a mapping must not see it change), and not synced:
 * a crash may lose it or leave it torn, which the checksum catches.
 */

#define SNAP_FILE "sockmail-snapshot"
#define SNAP_MAGIC "SMSNAP1"		/* 8 octets with the NUL */
#define SNAP_HDR 72
#define SNAP_ENT 16			/* uid, name offset | new/, size */
#define SNAP_IN_NEW 0x80000000u
#define SNAP_MAX_BYTES ((size_t)IMAP_FOLDER_MAX_MESSAGES * \
			(SNAP_ENT + NAME_MAX_LEN + 1) + SNAP_HDR)
#define SNAPSHOT_SLACK_NS 2000000000LL
#define SNAPSHOT_MIN 256		/* messages: fewer are scanned fast */

struct snap_hdr {
	uint32_t uidvalidity, uidnext;
	uint64_t db_dev, db_ino;
	int64_t mtime[2];		/* new/, cur/ */
	int64_t taken;			/* when the scan began */
	uint32_t count, names_len;
};

static void put_le64(unsigned char *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get_le64(const unsigned char *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static uint64_t rotl64(uint64_t x, int r)
{
	return x << r | x >> (64 - r);
}

/* A checksum against torn or stale bytes (not against malice: the file
 * is the user's own): four multiply-xorshift lanes over 8-octet words. */
static uint64_t snap_sum(uint64_t seed, const unsigned char *p, size_t len)
{
	const uint64_t k = 0x9e3779b97f4a7c15ULL;
	uint64_t l[4] = { seed, seed ^ 0x243f6a8885a308d3ULL,
			  seed ^ 0x13198a2e03707344ULL,
			  seed ^ 0xa4093822299f31d0ULL };
	size_t j = 0;
	for (; j + 32 <= len; j += 32) {
		for (int q = 0; q < 4; q++) {
			uint64_t w;
			memcpy(&w, p + j + 8 * q, 8);
			l[q] = (l[q] ^ w) * k;
			l[q] ^= l[q] >> 29;
		}
	}
	uint64_t h = l[0] ^ rotl64(l[1], 17) ^ rotl64(l[2], 31) ^
		     rotl64(l[3], 47) ^ (uint64_t)len;
	for (; j < len; j++)
		h = (h ^ p[j]) * 0x100000001b3ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static void snap_hdr_encode(unsigned char *p, const struct snap_hdr *h)
{
	memcpy(p, SNAP_MAGIC, 8);
	put_le64(p + 8, 0);		/* the checksum, filled in later */
	put_le32(p + 16, h->uidvalidity);
	put_le32(p + 20, h->uidnext);
	put_le64(p + 24, h->db_dev);
	put_le64(p + 32, h->db_ino);
	put_le64(p + 40, (uint64_t)h->mtime[0]);
	put_le64(p + 48, (uint64_t)h->mtime[1]);
	put_le64(p + 56, (uint64_t)h->taken);
	put_le32(p + 64, h->count);
	put_le32(p + 68, h->names_len);
}

static void snap_hdr_decode(const unsigned char *p, struct snap_hdr *h)
{
	h->uidvalidity = get_le32(p + 16);
	h->uidnext = get_le32(p + 20);
	h->db_dev = get_le64(p + 24);
	h->db_ino = get_le64(p + 32);
	h->mtime[0] = (int64_t)get_le64(p + 40);
	h->mtime[1] = (int64_t)get_le64(p + 48);
	h->taken = (int64_t)get_le64(p + 56);
	h->count = get_le32(p + 64);
	h->names_len = get_le32(p + 68);
}

/* The checksum of the three parts: the header after the checksum field,
 * the entries, the names. */
static uint64_t snap_record_sum(const unsigned char *hdr,
				const unsigned char *ents, size_t ents_len,
				const unsigned char *names, size_t names_len)
{
	uint64_t h = snap_sum(1, hdr + 16, SNAP_HDR - 16);
	h = snap_sum(h, ents, ents_len);
	return snap_sum(h, names, names_len);
}

/* Where the folder stands now, for taking or checking a snapshot. */
static int snap_current(struct imap_folder *f, int64_t mtime[2],
			uint64_t *dev, uint64_t *ino)
{
	struct stat st;
	for (int k = 0; k < 2; k++) {
		if (fstat(f->priv->dir_fd[k], &st) != 0)
			return -1;
		mtime[k] = ts_ns(&st.st_mtim);
	}
	if (fstat(tdb_fd(f->db), &st) != 0)
		return -1;
	*dev = (uint64_t)st.st_dev;
	*ino = (uint64_t)st.st_ino;
	return 0;
}

static bool snap_old_enough(const int64_t mtime[2], int64_t taken)
{
	int64_t later = mtime[0] > mtime[1] ? mtime[0] : mtime[1];
	return taken - later >= SNAPSHOT_SLACK_NS;
}

/* The snapshot file mapped privately: *len octets, or NULL. */
static unsigned char *snap_map(struct imap_folder *f, size_t *len)
{
	struct str p = STR_INIT;
	str_printf(&p, "%s/%s", f->path, SNAP_FILE);
	int fd = open(str_c(&p), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	str_free(&p);
	if (fd < 0)
		return NULL;
	struct stat st;
	void *map = MAP_FAILED;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size >= SNAP_HDR && (uint64_t)st.st_size <= SNAP_MAX_BYTES) {
		*len = (size_t)st.st_size;
		/* writable: the view renames in place; copy on write */
		map = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
			   0);
	}
	close(fd);
	return map == MAP_FAILED ? NULL : map;
}

/* Check a mapped snapshot against want (what the folder says now) and
 * build the view from it: the entries into f->msgs, the names mapped as
 * they are as the arena.  False (f untouched) if it cannot be trusted. */
static bool snap_to_view(struct imap_folder *f, const unsigned char *p,
			 size_t len, const struct snap_hdr *want,
			 int64_t *taken)
{
	struct snap_hdr h;
	if (memcmp(p, SNAP_MAGIC, 8) != 0)
		return false;
	snap_hdr_decode(p, &h);
	size_t ents_len = (size_t)h.count * SNAP_ENT;
	if (h.count == 0 || h.count > IMAP_FOLDER_MAX_MESSAGES ||
	    h.names_len == 0 || len != SNAP_HDR + ents_len + h.names_len)
		return false;
	const unsigned char *ents = p + SNAP_HDR, *names = ents + ents_len;
	if (h.uidvalidity != want->uidvalidity ||
	    h.uidnext != want->uidnext || h.db_dev != want->db_dev ||
	    h.db_ino != want->db_ino || h.mtime[0] != want->mtime[0] ||
	    h.mtime[1] != want->mtime[1] || !snap_old_enough(h.mtime, h.taken)
	    || names[h.names_len - 1] != '\0' ||
	    get_le64(p + 8) != snap_record_sum(p, ents, ents_len, names,
					       h.names_len))
		return false;
	struct imap_msg *msgs = xmalloc((size_t)h.count * sizeof *msgs);
	size_t used = 0;
	uint32_t last = 0;
	for (uint32_t j = 0; j < h.count; j++) {
		const unsigned char *q = ents + (size_t)j * SNAP_ENT;
		uint32_t uid = get_le32(q), off = get_le32(q + 4);
		struct imap_msg *m = &msgs[j];
		memset(m, 0, sizeof *m);
		m->uid = uid;
		m->size = get_le64(q + 8);
		m->state = (off & SNAP_IN_NEW) ? IMAP_MSG_NEW_DIR : 0;
		off &= ~SNAP_IN_NEW;
		m->name = off;
		const char *name = (const char *)names + off;
		size_t nl = off < h.names_len ?
			    strnlen(name, h.names_len - off) : 0;
		if (uid <= last || uid >= h.uidnext || nl == 0 ||
		    nl > NAME_MAX_LEN || name[0] == '.' ||
		    memchr(name, '/', nl) != NULL || m->size == SIZE_UNKNOWN) {
			free(msgs);
			return false;
		}
		parse_info(name, nl, base_length(name, nl), &m->flags,
			   &m->keywords);
		used += nl + 1;
		last = uid;
	}
	free(f->msgs);
	f->msgs = msgs;
	f->count = f->cap = h.count;
	f->arena = (char *)(uintptr_t)names;
	f->arena_len = f->arena_cap = h.names_len;
	f->priv->arena_garbage = h.names_len - used;
	*taken = h.taken;
	return true;
}

/* \Recent for a view that came from the snapshot, as sync_pass gives it
 * to scanned files: read-write, claim what no session has claimed. */
static int snap_claim_recent(struct imap_folder *f, uint32_t recent)
{
	struct recent_claim rc;
	memset(&rc, 0, sizeof rc);
	rc.above = recent;
	uint32_t top = max_uid(f);
	if (!f->readonly && top > recent &&
	    assign_uids(f, NULL, NULL, 0, top, &rc) != 0)
		return -1;
	for (size_t i = 0; i < f->count; i++) {
		if (recent_is(f, &rc, f->msgs[i].uid)) {
			f->msgs[i].flags |= IMAP_FLAG_RECENT;
			f->recent++;
		}
	}
	return 0;
}

/*
 * At open: the view from the snapshot if it can be trusted (true), or
 * false with the view still empty, to be scanned.
 */
static bool open_from_snapshot(struct imap_folder *f)
{
	struct imap_folder_private *p = f->priv;
	struct snap_hdr want = { .uidvalidity = f->uidvalidity };
	if (p->db_new ||
	    snap_current(f, want.mtime, &want.db_dev, &want.db_ino) != 0 ||
	    !snap_old_enough(want.mtime, now_ns()))
		return false;
	size_t len = 0;
	unsigned char *map = snap_map(f, &len);
	if (map == NULL)
		return false;
	/* UIDNEXT and the \Recent mark as they are now, read together */
	uint32_t recent = 0;
	int r = -1;
	if (tdb_lockall_read(f->db) == 0) {
		r = db_get(f->db, "uidnext", &want.uidnext);
		if (r == 1 && db_get(f->db, "recent", &recent) != 1)
			r = -1;
		tdb_unlockall_read(f->db);
	}
	int64_t taken = 0;
	if (r != 1 || !snap_to_view(f, map, len, &want, &taken)) {
		munmap(map, len);
		return false;
	}
	p->map = map;
	p->map_len = len;
	p->snap_used = true;
	/* as if the snapshot's scan had been ours */
	p->scanned = true;
	p->scan_start = taken;
	p->scan_mtime[0] = want.mtime[0];
	p->scan_mtime[1] = want.mtime[1];
	f->uidnext = p->lookup_uidnext = want.uidnext;
	if (snap_claim_recent(f, recent) != 0) {
		/* nothing claimed, as when a scan cannot assign */
		f->recent = 0;
		for (size_t i = 0; i < f->count; i++)
			f->msgs[i].flags &= (uint8_t)~IMAP_FLAG_RECENT;
	}
	if (!f->readonly)
		move_new_to_cur(f, 0);
	return true;
}

/* After an open that scanned: remember whether its view may become the
 * snapshot (the scan began long enough after the directories' last
 * change), with what the save must find unchanged. */
static void snapshot_note(struct imap_folder *f)
{
	struct imap_folder_private *p = f->priv;
	p->snap_candidate = !p->snap_used && p->scanned &&
			    f->count >= SNAPSHOT_MIN &&
			    snap_old_enough(p->scan_mtime, p->scan_start);
	p->snap_taken = p->scan_start;
	p->snap_mtime[0] = p->scan_mtime[0];
	p->snap_mtime[1] = p->scan_mtime[1];
	p->snap_uidnext = p->lookup_uidnext;
}

static int write_all(int fd, const char *buf, size_t len);

/* Write the snapshot under a name of its own and rename it into place. */
static void snap_write(struct imap_folder *f, const unsigned char *hdr,
		       const unsigned char *ents, size_t ents_len)
{
	struct str tmp = STR_INIT, dst = STR_INIT;
	/* a name no other writer has: the inode is written by us alone */
	str_printf(&tmp, "%s/%s.tmp.%ld.%" PRId64, f->path, SNAP_FILE,
		   (long)getpid(), now_ns());
	str_printf(&dst, "%s/%s", f->path, SNAP_FILE);
	int fd = open(str_c(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		      O_NOFOLLOW, 0600);
	bool ok = fd >= 0 &&
		  write_all(fd, (const char *)hdr, SNAP_HDR) == 0 &&
		  write_all(fd, (const char *)ents, ents_len) == 0 &&
		  write_all(fd, f->arena, f->arena_len) == 0;
	int saved = errno;
	if (fd >= 0 && close(fd) != 0 && ok) {
		saved = errno;
		ok = false;
	}
	if (ok && rename(str_c(&tmp), str_c(&dst)) != 0) {
		saved = errno;
		ok = false;
	}
	if (!ok) {
		/* only an accelerator: the next open scans */
		log_msg(LOG_NOTICE, "%s: %s", str_c(&dst), strerror(saved));
		if (fd >= 0)
			unlink(str_c(&tmp));
	}
	str_free(&tmp);
	str_free(&dst);
}

/* When the folder is closed: keep the open's view as the snapshot if the
 * disk is still as the open's scan found it (our own flag changes and
 * moves from new/ change the mtimes too) and nobody assigned a UID. */
static void snapshot_save(struct imap_folder *f)
{
	struct imap_folder_private *p = f->priv;
	if (!p->snap_candidate || f->db == NULL ||
	    f->arena_len >= SNAP_IN_NEW)
		return;
	p->snap_candidate = false;
	struct snap_hdr h = { .uidvalidity = f->uidvalidity,
			      .uidnext = p->snap_uidnext, .taken = p->snap_taken,
			      .count = (uint32_t)f->count,
			      .names_len = (uint32_t)f->arena_len };
	uint32_t next = 0;
	if (snap_current(f, h.mtime, &h.db_dev, &h.db_ino) != 0 ||
	    h.mtime[0] != p->snap_mtime[0] || h.mtime[1] != p->snap_mtime[1] ||
	    db_get(f->db, "uidnext", &next) != 1 || next != p->snap_uidnext)
		return;
	size_t ents_len = f->count * SNAP_ENT;
	unsigned char *ents = xmalloc(ents_len);
	bool ok = true;
	for (size_t i = 0; i < f->count && ok; i++) {
		const struct imap_msg *m = &f->msgs[i];
		unsigned char *q = ents + i * SNAP_ENT;
		ok = !(m->state & IMAP_MSG_GONE) && m->size != SIZE_UNKNOWN &&
		     m->uid < next;
		put_le32(q, m->uid);
		put_le32(q + 4, m->name |
			 ((m->state & IMAP_MSG_NEW_DIR) ? SNAP_IN_NEW : 0));
		put_le64(q + 8, m->size);
	}
	unsigned char hdr[SNAP_HDR];
	snap_hdr_encode(hdr, &h);
	put_le64(hdr + 8, snap_record_sum(hdr, ents, ents_len,
					  (const unsigned char *)f->arena,
					  f->arena_len));
	if (ok)
		snap_write(f, hdr, ents, ents_len);
	free(ents);
}

/* ---- the sync: open and update ---- */

#define MARK_SEEN	0x01
#define MARK_CHANGED	0x02

struct sync_state {
	struct scan sc;
	uint8_t *mark;		/* per view entry */
	size_t *pending, n_pending;
	size_t *fresh, n_fresh;
};

/* Match one scan against the view: entries found are marked seen (and
 * renamed, flag changes marked); files not in the view are collected as
 * fresh (UID above the view's highest) or pending (no UID, or a UID that
 * would not keep the view in UID order). */
static int sync_match(struct imap_folder *f, struct sync_state *st,
		      bool collect)
{
	struct scan *sc = &st->sc;
	uint32_t top = max_uid(f);
	for (size_t j = 0; j < sc->n; j++) {
		struct scan_ent *e = &sc->e[j];
		long i = e->uid != 0 ? imap_folder_find_uid(f, e->uid) : -1;
		if (i >= 0) {
			if (st->mark[i] & MARK_SEEN)
				continue;	/* same base in new/ and cur/ */
			st->mark[i] |= MARK_SEEN;
			struct imap_msg *m = &f->msgs[i];
			m->state &= (uint8_t)~IMAP_MSG_GONE;
			if (view_rename(f, (size_t)i, sc, e) != 0)
				return -1;
			uint8_t fl;
			uint32_t kw;
			parse_info(scan_name(sc, e), e->len, e->base_len, &fl,
				   &kw);
			uint8_t old = m->flags & IMAP_FLAGS_STORABLE;
			if (fl != old || kw != m->keywords) {
				m->flags = (uint8_t)(fl |
						     (m->flags & IMAP_FLAG_RECENT));
				m->keywords = kw;
				st->mark[i] |= MARK_CHANGED;
			}
		} else if (!collect) {
			continue;
		} else if (e->uid > top) {
			st->fresh[st->n_fresh++] = j;
		} else {
			if (e->uid != 0)
				log_msg(LOG_NOTICE, "%s: %s: UID %u out of order "
					"(view ends at %u), given a new one",
					f->path, scan_name(sc, e), e->uid, top);
			st->pending[st->n_pending++] = j;
		}
	}
	return 0;
}

/* Entries not seen by the first scan may only have been renamed while we
 * read (a rename can slip past readdir): look once more before calling
 * them gone. */
static int sync_confirm_missing(struct imap_folder *f, struct sync_state *st)
{
	bool missing = false;
	for (size_t i = 0; i < f->count && !missing; i++)
		if (!(st->mark[i] & MARK_SEEN))
			missing = true;
	if (!missing)
		return 0;
	struct sync_state again = { .mark = st->mark };
	int ret = scan_folder(f, &again.sc);
	if (ret == 0)
		ret = scan_lookup(f, &again.sc, NULL);
	if (ret == 0)
		ret = sync_match(f, &again, false);
	scan_free(&again.sc);
	if (ret != 0)
		return -1;
	for (size_t i = 0; i < f->count; i++)
		if (!(st->mark[i] & MARK_SEEN))
			f->msgs[i].state |= IMAP_MSG_GONE;
	return 0;
}

/* Remove duplicates (one file seen twice) from the fresh list, sorted by
 * UID, and drop any not above the view's highest UID. */
static void sort_by_uid(struct sync_state *st)
{
	size_t n = st->n_fresh;
	uint32_t lo = UINT32_MAX, hi = 0;
	for (size_t j = 0; j < n; j++) {
		uint32_t u = st->sc.e[st->fresh[j]].uid;
		lo = u < lo ? u : lo;
		hi = u > hi ? u : hi;
	}
	if (n < 64 || (uint64_t)hi - lo >= 4 * (uint64_t)n + 1024) {
		qsort_r(st->fresh, n, sizeof *st->fresh, uid_cmp, &st->sc);
		return;
	}
	/* dense UIDs (the usual case at SELECT): place them directly */
	size_t range = (size_t)(hi - lo) + 1;
	size_t *slot = xmalloc(range * sizeof *slot);
	memset(slot, 0xff, range * sizeof *slot);
	for (size_t j = 0; j < n; j++) {
		size_t u = st->sc.e[st->fresh[j]].uid - lo;
		if (slot[u] == SIZE_MAX)
			slot[u] = st->fresh[j];	/* else the same file twice */
	}
	size_t o = 0;
	for (size_t u = 0; u < range; u++)
		if (slot[u] != SIZE_MAX)
			st->fresh[o++] = slot[u];
	st->n_fresh = o;
	free(slot);
}

static void sync_sort_fresh(struct imap_folder *f, struct sync_state *st)
{
	sort_by_uid(st);
	uint32_t last = max_uid(f);
	size_t o = 0;
	for (size_t j = 0; j < st->n_fresh; j++) {
		uint32_t uid = st->sc.e[st->fresh[j]].uid;
		if (uid <= last)
			continue;
		st->fresh[o++] = st->fresh[j];
		last = uid;
	}
	st->n_fresh = o;
}

static void write_flags_fetch(struct imap_folder *f, struct stream *io,
			      size_t i)
{
	struct str fl = STR_INIT;
	imap_folder_format_flags(f, i, &fl);
	stream_printf(io, "* %zu FETCH (FLAGS %s)\r\n", i + 1, str_c(&fl));
	str_free(&fl);
}

static void recount_recent(struct imap_folder *f)
{
	unsigned r = 0;
	for (size_t i = 0; i < f->count; i++)
		if (f->msgs[i].flags & IMAP_FLAG_RECENT)
			r++;
	f->recent = r;
}

/* Write "* n EXPUNGE" for the GONE entries, highest first (each number
 * stays valid), and drop them.  The number dropped. */
static size_t view_drop_gone(struct imap_folder *f, struct stream *io)
{
	size_t n = 0;
	for (size_t i = f->count; i-- > 0;) {
		if (!(f->msgs[i].state & IMAP_MSG_GONE))
			continue;
		if (io != NULL)
			stream_printf(io, "* %zu EXPUNGE\r\n", i + 1);
		n++;
	}
	if (n == 0)
		return 0;
	size_t o = 0;
	for (size_t i = 0; i < f->count; i++) {
		if (f->msgs[i].state & IMAP_MSG_GONE) {
			f->priv->arena_garbage +=
				strlen(msg_name(f, &f->msgs[i])) + 1;
			continue;
		}
		f->msgs[o++] = f->msgs[i];
	}
	f->count = o;
	f->exists_reported = f->exists_reported >= n ?
			     f->exists_reported - n : 0;
	recount_recent(f);
	if (f->recent_reported > f->recent)
		f->recent_reported = f->recent;
	arena_compact(f);
	return n;
}

/* Sizes of files that moved before they could be counted: find them
 * again; one that is really gone is marked so. */
static int view_fix_sizes(struct imap_folder *f, size_t from)
{
	if (view_refresh_names(f) != 0)
		return -1;
	for (size_t i = from; i < f->count; i++) {
		struct imap_msg *m = &f->msgs[i];
		if (m->size != SIZE_UNKNOWN)
			continue;
		if (count_crlf_size(f->priv->dir_fd[msg_sub(m)],
				    msg_name(f, m), &m->size) != 0) {
			if (errno != ENOENT)
				return -1;
			m->size = 0;
			m->state |= IMAP_MSG_GONE;
		}
	}
	return 0;
}

/* Add the fresh files to the view, claiming \Recent above recent. */
static int sync_append(struct imap_folder *f, struct sync_state *st,
		       const struct recent_claim *rc)
{
	size_t from = f->count;
	bool unknown = false;
	/* room for all of them at once */
	size_t bytes = 0;
	for (size_t j = 0; j < st->n_fresh; j++)
		bytes += st->sc.e[st->fresh[j]].len + 1u;
	if (f->count + st->n_fresh > f->cap) {
		f->cap = f->count + st->n_fresh + f->count / 4 + 16;
		f->msgs = xrealloc(f->msgs, f->cap * sizeof *f->msgs);
	}
	/* an empty view (SELECT) takes the scanned names as its arena
	 * instead of copying them */
	bool adopt = f->count == 0 && f->arena_len == 0 && st->n_fresh > 0 &&
		     st->sc.names.len < UINT32_MAX;
	if (adopt) {
		arena_free(f);
		f->arena = st->sc.names.data;
		f->arena_len = st->sc.names.len;
		f->arena_cap = st->sc.names.cap;
		f->priv->arena_garbage = f->arena_len - bytes;
		/* the scan entries still point into it through f->arena */
		st->sc.names.data = f->arena;
	} else if (f->arena_len + bytes > f->arena_cap &&
		   f->arena_len + bytes < UINT32_MAX) {
		arena_grow(f, f->arena_len + bytes + f->arena_len / 4 + 4096);
	}
	int ret = 0;
	for (size_t j = 0; j < st->n_fresh && ret == 0; j++) {
		const struct scan_ent *e = &st->sc.e[st->fresh[j]];
		if (view_append(f, &st->sc, e, adopt, &unknown) != 0) {
			log_msg(LOG_ERR, "%s/%s/%s: %s", f->path,
				sub_name[e->sub], scan_name(&st->sc, e),
				strerror(errno));
			ret = -1;
		} else if (recent_is(f, rc, e->uid)) {
			f->msgs[f->count - 1].flags |= IMAP_FLAG_RECENT;
			f->recent++;
		}
	}
	if (adopt) {
		/* the names are the view's now, not the scan's to free */
		st->sc.names.data = NULL;
		st->sc.names.len = st->sc.names.cap = 0;
	}
	if (ret != 0)
		return -1;
	if (unknown && view_fix_sizes(f, from) != 0) {
		/* nothing sensible to show for them: drop them again */
		f->count = from;
		recount_recent(f);
		return -1;
	}
	if (!f->readonly)
		move_new_to_cur(f, from);
	return 0;
}

/* A UID between the view's highest and the highest fresh one that no
 * fresh file has: another session gave it to a file our scan did not
 * see yet (or to one expunged since).  Appending now would put that file
 * out of UID order later, so the caller scans once more first. */
static bool fresh_has_gap(const struct imap_folder *f,
			  const struct sync_state *st)
{
	uint32_t expect = max_uid(f) + 1;
	for (size_t j = 0; j < st->n_fresh; j++) {
		uint32_t uid = st->sc.e[st->fresh[j]].uid;
		if (uid != expect)
			return true;
		expect = uid + 1;
	}
	return false;
}

/* One pass: scan, match, assign.  1: scan again (a gap), 0 done, -1
 * failed before anything could be added, -2 UIDs could not be assigned
 * (what had them already may still be added). */
static int sync_pass(struct imap_folder *f, struct sync_state *st,
		     struct recent_claim *rc, bool first)
{
	uint32_t recent = 0;
	if (scan_folder(f, &st->sc) != 0 ||
	    scan_lookup(f, &st->sc, &recent) != 0)
		return -1;
	st->pending = xmalloc((st->sc.n + 1) * sizeof *st->pending);
	st->fresh = xmalloc((st->sc.n + 1) * sizeof *st->fresh);
	st->n_pending = st->n_fresh = 0;
	if (sync_match(f, st, true) != 0 || sync_confirm_missing(f, st) != 0)
		return -1;
	sync_sort_fresh(f, st);
	uint32_t top = st->n_fresh ? st->sc.e[st->fresh[st->n_fresh - 1]].uid : 0;
	if (f->readonly)
		rc->above = recent;
	if (st->n_pending > 0 || (!f->readonly && top > recent)) {
		sort_by_delivery(&st->sc, st->pending, st->n_pending);
		if (assign_uids(f, &st->sc, st->pending, st->n_pending, top,
				rc) != 0)
			return -2;
		for (size_t j = 0; j < st->n_pending; j++)
			st->fresh[st->n_fresh++] = st->pending[j];
		sync_sort_fresh(f, st);
	}
	return first && fresh_has_gap(f, st) ? 1 : 0;
}

static void sync_state_reset(struct sync_state *st)
{
	free(st->pending);
	free(st->fresh);
	st->pending = st->fresh = NULL;
	st->n_pending = st->n_fresh = 0;
	scan_free(&st->sc);
}

/*
 * The scan part of open and update: list the disk, match it against the
 * view, give new files UIDs and append them.  *marks gets one mark per
 * entry the view had before (MARK_CHANGED: its flags changed on disk),
 * *n_old their number.
 */
static int sync_scan(struct imap_folder *f, uint8_t **marks, size_t *n_old)
{
	struct sync_state st;
	memset(&st, 0, sizeof st);
	struct recent_claim rc;
	memset(&rc, 0, sizeof rc);
	*n_old = f->count;
	st.mark = xcalloc(f->count + 1, 1);
	*marks = st.mark;
	if (keywords_load(f) != 0)
		return -1;
	int r = sync_pass(f, &st, &rc, true);
	if (r == 1) {
		sync_state_reset(&st);
		r = sync_pass(f, &st, &rc, false);
	}
	int ret = r == 0 ? 0 : -1;
	if (f->db == NULL) {		/* lost in db_reopen: give up */
		sync_state_reset(&st);
		return -1;
	}
	if (r == -2)
		rc.n = 0, rc.above = UINT32_MAX;	/* nothing claimed */
	if (r >= 0 || r == -2) {
		if (sync_append(f, &st, &rc) != 0)
			ret = -1;
	}
	if (f->uidnext <= max_uid(f))
		f->uidnext = max_uid(f) + 1;
	/* keyword letters we cannot name: the table grew meanwhile */
	uint32_t all = 0;
	for (size_t i = 0; i < f->count; i++)
		all |= f->msgs[i].keywords;
	if (f->n_keywords < IMAP_MAX_KEYWORDS && (all >> f->n_keywords) != 0 &&
	    keywords_load(f) != 0)
		ret = -1;
	sync_state_reset(&st);
	if (ret != 0)
		f->priv->scanned = false;	/* try again next time */
	return ret;
}

int imap_folder_open(struct imap_folder *f, const char *path, bool readonly,
		     struct str *err)
{
	if (folder_init(f, path, readonly, true, err) != 0)
		goto fail;
	uint8_t *marks = NULL;
	size_t n_old;
	f->priv->opening = true;
	int ret = open_from_snapshot(f) ? 0 : sync_scan(f, &marks, &n_old);
	f->priv->opening = false;
	free(marks);
	if (ret != 0) {
		str_printf(err, "%s: cannot list the folder", path);
		errno = EIO;
		goto fail;
	}
	/* a new tdb that no UID assignment initialised (nothing to assign) */
	if (f->priv->db_new && db_init(f, err) != 0)
		goto fail;
	cache_check_size(f);
	snapshot_note(f);
	f->exists_reported = f->count;
	f->recent_reported = f->recent;
	return 0;
fail:;
	int saved = errno;
	imap_folder_close(f);
	errno = saved;
	return -1;
}


void imap_folder_close(struct imap_folder *f)
{
	if (f->priv != NULL)
		snapshot_save(f);
	imap_folder_cache_flush(f);
	if (f->priv != NULL)
		batch_clear(&f->priv->batch);
	if (f->db != NULL)
		tdb_close(f->db);
	if (f->cache != NULL)
		tdb_close(f->cache);
	arena_free(f);
	if (f->priv != NULL) {
		for (int k = 0; k < 2; k++)
			if (f->priv->dir_fd[k] >= 0)
				close(f->priv->dir_fd[k]);
		free(f->priv);
	}
	keywords_free(f);
	free(f->msgs);
	free(f->path);
	memset(f, 0, sizeof *f);
}

size_t imap_folder_first_unseen(const struct imap_folder *f)
{
	for (size_t i = 0; i < f->count; i++)
		if (!(f->msgs[i].flags & IMAP_FLAG_SEEN))
			return i + 1;
	return 0;
}

size_t imap_folder_unseen(const struct imap_folder *f)
{
	size_t n = 0;
	for (size_t i = 0; i < f->count; i++)
		if (!(f->msgs[i].flags & IMAP_FLAG_SEEN))
			n++;
	return n;
}

static void write_flags_responses(struct imap_folder *f, struct stream *io)
{
	struct str fl = STR_INIT;
	imap_folder_format_all_flags(f, &fl);
	stream_printf(io, "* FLAGS %s\r\n", str_c(&fl));
	str_clear(&fl);
	imap_folder_format_permanent_flags(f, &fl);
	stream_printf(io, "* OK [PERMANENTFLAGS %s] Flags permitted\r\n",
		      str_c(&fl));
	str_free(&fl);
}

int imap_folder_update(struct imap_folder *f, struct stream *io,
		       bool allow_expunge)
{
	int ret = 0;
	uint8_t *marks = NULL;
	size_t n_old = 0;
	/* the end of a command: no cache lock may outlive it */
	imap_folder_cache_flush(f);
	if (!scan_unchanged(f))
		ret = sync_scan(f, &marks, &n_old);
	if (io != NULL && f->n_keywords != f->priv->keywords_reported) {
		write_flags_responses(f, io);
		f->priv->keywords_reported = f->n_keywords;
	}
	for (size_t i = 0; io != NULL && marks != NULL && i < n_old; i++)
		if ((marks[i] & MARK_CHANGED) &&
		    !(f->msgs[i].state & IMAP_MSG_GONE))
			write_flags_fetch(f, io, i);
	free(marks);
	if (allow_expunge)
		view_drop_gone(f, io);
	if (f->count != f->exists_reported) {
		if (io != NULL) {
			stream_printf(io, "* %zu EXISTS\r\n", f->count);
			stream_printf(io, "* %u RECENT\r\n", f->recent);
		}
		f->exists_reported = f->count;
		f->recent_reported = f->recent;
	} else if (f->recent != f->recent_reported) {
		if (io != NULL)
			stream_printf(io, "* %u RECENT\r\n", f->recent);
		f->recent_reported = f->recent;
	}
	return ret;
}

/* ---- one message's file ---- */

const char *imap_folder_msg_name(const struct imap_folder *f, size_t i)
{
	return msg_name(f, &f->msgs[i]);
}

void imap_folder_msg_path(const struct imap_folder *f, size_t i,
			  struct str *out)
{
	const struct imap_msg *m = &f->msgs[i];
	str_printf(out, "%s/%s/%s", f->path, sub_name[msg_sub(m)],
		   msg_name(f, m));
}

/* Run op on message i's file; when it is not there (renamed by another
 * session), find the file again by its UID and retry once. */
static int msg_retry(struct imap_folder *f, size_t i,
		     int (*op)(int dir_fd, const char *name, void *arg),
		     void *arg)
{
	struct imap_msg *m = &f->msgs[i];
	if (m->state & IMAP_MSG_GONE) {
		errno = ENOENT;
		return -1;
	}
	int ret = op(f->priv->dir_fd[msg_sub(m)], msg_name(f, m), arg);
	if (ret >= 0 || errno != ENOENT)
		return ret;
	if (view_refresh_names(f) != 0) {
		errno = EIO;
		return -1;
	}
	if (m->state & IMAP_MSG_GONE) {
		errno = ENOENT;
		return -1;
	}
	return op(f->priv->dir_fd[msg_sub(m)], msg_name(f, m), arg);
}

static int open_op(int dir_fd, const char *name, void *arg)
{
	(void)arg;
	return openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

int imap_folder_msg_open(struct imap_folder *f, size_t i)
{
	return msg_retry(f, i, open_op, NULL);
}

static int stat_op(int dir_fd, const char *name, void *arg)
{
	return fstatat(dir_fd, name, arg, AT_SYMLINK_NOFOLLOW);
}

int imap_folder_msg_internaldate(struct imap_folder *f, size_t i,
				 int64_t *when)
{
	struct stat st;
	if (msg_retry(f, i, stat_op, &st) != 0)
		return -1;
	*when = (int64_t)st.st_mtim.tv_sec;
	return 0;
}

/* ---- flags ---- */

static const struct {
	const char *name;
	uint8_t bit;
} system_flags[] = {
	{ "\\Seen", IMAP_FLAG_SEEN },
	{ "\\Answered", IMAP_FLAG_ANSWERED },
	{ "\\Flagged", IMAP_FLAG_FLAGGED },
	{ "\\Deleted", IMAP_FLAG_DELETED },
	{ "\\Draft", IMAP_FLAG_DRAFT },
	{ "\\Recent", IMAP_FLAG_RECENT },
};

#define N_SYSTEM_FLAGS (sizeof system_flags / sizeof system_flags[0])

static void sep(struct str *out)
{
	if (out->len > 0 && out->data[out->len - 1] != '(')
		str_append_c(out, ' ');
}

void imap_folder_format_flags(const struct imap_folder *f, size_t i,
			      struct str *out)
{
	const struct imap_msg *m = &f->msgs[i];
	str_append_c(out, '(');
	for (size_t k = 0; k < N_SYSTEM_FLAGS; k++) {
		if (m->flags & system_flags[k].bit) {
			sep(out);
			str_append(out, system_flags[k].name);
		}
	}
	for (unsigned k = 0; k < f->n_keywords; k++) {
		if (m->keywords & (1u << k)) {
			sep(out);
			str_append(out, f->keywords[k]);
		}
	}
	str_append_c(out, ')');
}

static void format_defined(const struct imap_folder *f, struct str *out)
{
	str_append(out, "(\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	for (unsigned k = 0; k < f->n_keywords; k++) {
		str_append_c(out, ' ');
		str_append(out, f->keywords[k]);
	}
}

void imap_folder_format_all_flags(const struct imap_folder *f,
				  struct str *out)
{
	format_defined(f, out);
	str_append_c(out, ')');
}

void imap_folder_format_permanent_flags(const struct imap_folder *f,
					struct str *out)
{
	if (f->readonly) {
		str_append(out, "()");
		return;
	}
	format_defined(f, out);
	if (f->n_keywords < IMAP_MAX_KEYWORDS)
		str_append(out, " \\*");
	str_append_c(out, ')');
}

int imap_folder_flag(struct imap_folder *f, const char *name, bool create,
		     uint8_t *flag, int *keyword)
{
	if (name[0] == '\\') {
		/* \Recent is last in the table and is not storable */
		for (size_t k = 0; k + 1 < N_SYSTEM_FLAGS; k++) {
			if (strcasecmp(name, system_flags[k].name) == 0) {
				*flag = system_flags[k].bit;
				return 1;
			}
		}
		return 0;
	}
	if (!keyword_valid(name))
		return 0;
	int k = keyword_find(f, name);
	if (k < 0 && !create)
		return 0;
	if (k < 0) {
		if (tdb_transaction_start(f->db) != 0) {
			db_log(f, "transaction start");
			return -1;
		}
		if (keywords_load(f) != 0 ||
		    (k = keyword_get_locked(f, name)) < 0) {
			int saved = errno;
			tdb_transaction_cancel(f->db);
			keywords_load(f);
			errno = saved;
			return -1;
		}
		if (db_commit(f->db) != 0) {
			db_log(f, "storing keywords");
			keywords_load(f);
			errno = EIO;
			return -1;
		}
	}
	*keyword = k;
	return 2;
}

static int rename_op(struct imap_folder *f, size_t i, const char *to)
{
	struct imap_msg *m = &f->msgs[i];
	return renameat(f->priv->dir_fd[msg_sub(m)], msg_name(f, m),
			f->priv->dir_fd[SUB_CUR], to);
}

int imap_folder_set_flags(struct imap_folder *f, size_t i, uint8_t flags,
			  uint32_t keywords)
{
	if (f->readonly) {
		errno = EROFS;
		return -1;
	}
	struct imap_msg *m = &f->msgs[i];
	if (m->state & IMAP_MSG_GONE) {
		errno = ENOENT;
		return -1;
	}
	flags &= IMAP_FLAGS_STORABLE;
	struct str name = STR_INIT;
	str_append_n(&name, msg_name(f, m), msg_base_len(f, i));
	append_info(&name, flags, keywords);
	int ret = 0;
	if (strcmp(name.data, msg_name(f, m)) != 0 || msg_sub(m) != SUB_CUR) {
		ret = rename_op(f, i, name.data);
		if (ret != 0 && errno == ENOENT) {
			if (view_refresh_names(f) != 0)
				errno = EIO;
			else if (m->state & IMAP_MSG_GONE)
				errno = ENOENT;
			else
				ret = rename_op(f, i, name.data);
		}
		if (ret != 0 && errno != ENOENT)
			log_msg(LOG_ERR, "rename %s/%s: %s", f->path,
				msg_name(f, m), strerror(errno));
		if (ret == 0) {
			f->priv->flags_dirty[msg_sub(m)] = true;
			f->priv->flags_dirty[SUB_CUR] = true;
			m->state &= (uint8_t)~IMAP_MSG_NEW_DIR;
			ret = arena_store(f, m, name.data, name.len, true);
		}
	}
	str_free(&name);
	if (ret != 0)
		return -1;
	m->flags = (uint8_t)(flags | (m->flags & IMAP_FLAG_RECENT));
	m->keywords = keywords;
	return 0;
}

int imap_folder_sync_flags(struct imap_folder *f)
{
	int ret = 0;
	for (int k = 0; k < 2; k++) {
		if (!f->priv->flags_dirty[k])
			continue;
		f->priv->flags_dirty[k] = false;
		if (fsync_fd(f->path, sub_name[k], f->priv->dir_fd[k]) != 0)
			ret = -1;
	}
	return ret;
}

/* ---- expunge ---- */

/* A copy of the UID set in canonical ranges, for binary search. */
static bool uid_in(const struct imap_seqset *set, uint32_t uid)
{
	size_t lo = 0, hi = set->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (uid < set->r[mid].lo)
			hi = mid;
		else if (uid > set->r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static int unlink_op(int dir_fd, const char *name, void *arg)
{
	(void)arg;
	return unlinkat(dir_fd, name, 0);
}

/* Forget the UIDs of expunged files (best effort: a stale record names
 * a file that can never come back, and harms nothing). */
static void forget_uids(struct imap_folder *f, const size_t *idx, size_t n)
{
	if (n == 0)
		return;
	if (tdb_transaction_start(f->db) != 0) {
		db_log(f, "transaction start");
		return;
	}
	char key[NAME_MAX_LEN + 3];
	for (size_t j = 0; j < n; j++) {
		size_t kl = uid_key(key, msg_name(f, &f->msgs[idx[j]]),
				    msg_base_len(f, idx[j]));
		if (tdb_delete(f->db, mkkey(key, kl)) != 0 &&
		    tdb_error(f->db) != TDB_ERR_NOEXIST) {
			db_log(f, "deleting UIDs");
			tdb_transaction_cancel(f->db);
			return;
		}
	}
	if (db_commit(f->db) != 0)
		db_log(f, "deleting UIDs");
}

static void cache_forget(struct imap_folder *f, const uint32_t *uids,
			 size_t n);

long imap_folder_expunge(struct imap_folder *f, struct stream *io,
			 const struct imap_seqset *uids, bool only_deleted)
{
	if (f->readonly) {
		errno = EROFS;
		return -1;
	}
	struct imap_seqset set = { 0 };
	if (uids != NULL) {
		set.n = set.cap = uids->n;
		set.r = xmalloc((uids->n + 1) * sizeof *set.r);
		memcpy(set.r, uids->r, uids->n * sizeof *set.r);
		imap_seqset_normalize(&set, max_uid(f));
	}
	size_t *done = xmalloc((f->count + 1) * sizeof *done);
	size_t n_done = 0;
	bool touched[2] = { false, false };
	int ret = 0;
	for (size_t i = 0; i < f->count; i++) {
		struct imap_msg *m = &f->msgs[i];
		if ((m->state & IMAP_MSG_GONE) ||
		    (only_deleted && !(m->flags & IMAP_FLAG_DELETED)) ||
		    (uids != NULL && !uid_in(&set, m->uid)))
			continue;
		if (msg_retry(f, i, unlink_op, NULL) != 0) {
			if (errno == ENOENT) {	/* someone else did it */
				m->state |= IMAP_MSG_GONE;
				continue;
			}
			log_msg(LOG_ERR, "unlink %s/%s: %s", f->path,
				msg_name(f, m), strerror(errno));
			ret = -1;
			continue;
		}
		touched[msg_sub(m)] = true;
		m->state |= IMAP_MSG_GONE;
		done[n_done++] = i;
	}
	for (int k = 0; k < 2; k++)
		if (touched[k] &&
		    fsync_fd(f->path, sub_name[k], f->priv->dir_fd[k]) != 0)
			ret = -1;
	forget_uids(f, done, n_done);
	uint32_t *gone = xmalloc((n_done + 1) * sizeof *gone);
	for (size_t j = 0; j < n_done; j++)
		gone[j] = f->msgs[done[j]].uid;
	cache_forget(f, gone, n_done);
	free(gone);
	free(done);
	free(set.r);
	size_t n = view_drop_gone(f, io);
	return ret != 0 ? -1 : (long)n;
}

/* ---- adding messages ---- */

static bool same_folder(const char *a, const char *b)
{
	if (strcmp(a, b) == 0)
		return true;
	struct stat x, y;
	return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev &&
	       x.st_ino == y.st_ino;
}

static void add_cleanup(struct imap_folder_add *a)
{
	if (a->added != NULL) {
		strlist_free(a->added);
		free(a->added);
		a->added = NULL;
	}
	if (a->folder == &a->own)
		imap_folder_close(&a->own);
	a->folder = NULL;
}

int imap_folder_add_begin(struct imap_folder_add *a, struct imap_folder *sel,
			  const char *path, struct str *err)
{
	memset(a, 0, sizeof *a);
	if (sel != NULL && same_folder(sel->path, path)) {
		a->folder = sel;
	} else {
		a->folder = &a->own;
		if (folder_init(&a->own, path, true, false, err) != 0) {
			int saved = errno;
			add_cleanup(a);
			errno = saved;
			return -1;
		}
	}
	struct imap_folder *f = a->folder;
	if (tdb_transaction_start(f->db) != 0) {
		db_log(f, "transaction start");
		str_printf(err, "%s: database locked or broken", path);
		add_cleanup(a);
		errno = EIO;
		return -1;
	}
	a->in_transaction = true;
	uint32_t next = 0;
	if (db_get(f->db, "uidnext", &next) != 1 || next == 0 ||
	    keywords_load(f) != 0) {
		db_log(f, "reading UIDNEXT");
		str_printf(err, "%s: database broken", path);
		tdb_transaction_cancel(f->db);
		a->in_transaction = false;
		keywords_load(f);
		add_cleanup(a);
		errno = EIO;
		return -1;
	}
	a->first_uid = next;
	a->added = xcalloc(1, sizeof *a->added);
	return 0;
}

/*
 * Make what this add has done so far durable and go on in a new
 * transaction.  Done right after a keyword is created, before any file
 * naming it is linked: otherwise a crash before the commit would leave a
 * file in cur/ whose keyword letter names nothing (or, later, a keyword
 * it never had).
 */
static int add_checkpoint(struct imap_folder_add *a)
{
	struct imap_folder *f = a->folder;
	if (a->n > 0 &&
	    (fsync_fd(f->path, "cur", f->priv->dir_fd[SUB_CUR]) != 0 ||
	     db_put(f->db, "uidnext", a->first_uid + a->n) != 0))
		return -1;
	a->in_transaction = false;
	if (db_commit(f->db) != 0) {
		db_log(f, "transaction commit");
		return -1;
	}
	if (tdb_transaction_start(f->db) != 0) {
		db_log(f, "transaction start");
		return -1;
	}
	a->in_transaction = true;
	return 0;
}

/* The added file's name: a fresh unique base with its sizes, then the
 * info with the flags and the keywords of the destination's table. */
static int add_make_name(struct imap_folder_add *a, uint64_t disk,
			 uint64_t crlf, uint8_t flags,
			 const char *const *keywords, size_t n_keywords,
			 struct str *name, size_t *base_len)
{
	struct imap_folder *f = a->folder;
	uint32_t kw = 0;
	for (size_t j = 0; j < n_keywords; j++) {
		if (!keyword_valid(keywords[j]))
			continue;
		bool known = keyword_find(f, keywords[j]) >= 0;
		int k = keyword_get_locked(f, keywords[j]);
		if (k < 0 && errno == EMLINK) {
			log_msg(LOG_WARNING, "%s: keyword table full, %s "
				"dropped", f->path, keywords[j]);
			continue;
		}
		if (k < 0 || (!known && add_checkpoint(a) != 0))
			return -1;
		kw |= 1u << k;
	}
	str_clear(name);
	maildir_unique_name(name);
	str_printf(name, ",S=%" PRIu64 ",W=%" PRIu64, disk, crlf);
	*base_len = name->len;
	append_info(name, flags & IMAP_FLAGS_STORABLE, kw);
	return 0;
}

/* Record the UID of a file just linked as target; on failure the file is
 * removed again. */
static int add_record(struct imap_folder_add *a, const char *name,
		      size_t base_len, const char *target, uint32_t *uid)
{
	struct imap_folder *f = a->folder;
	uint32_t u = a->first_uid + a->n;
	char key[NAME_MAX_LEN + 3];
	if (u < a->first_uid || u >= UINT32_MAX - 1 ||
	    base_len > NAME_MAX_LEN) {
		unlink(target);
		errno = EOVERFLOW;
		return -1;
	}
	size_t kl = uid_key(key, name, base_len);
	if (db_put_u32(f->db, key, kl, u) != 0) {
		db_log(f, "storing a UID");
		unlink(target);
		errno = EIO;
		return -1;
	}
	strlist_add(a->added, target);
	a->n++;
	if (uid != NULL)
		*uid = u;
	return 0;
}

int imap_folder_add_mailfile(struct imap_folder_add *a, struct mailfile *mf,
			     uint8_t flags, const char *const *keywords,
			     size_t n_keywords, int64_t internaldate,
			     uint32_t *uid)
{
	if (a->folder == NULL || !a->in_transaction) {
		errno = EINVAL;
		return -1;
	}
	struct imap_folder *f = a->folder;
	/* INTERNALDATE is the mtime, and every link shares the inode */
	struct timespec ts[2] = { { (time_t)internaldate, 0 },
				  { (time_t)internaldate, 0 } };
	if (futimens(mf->fd, ts) != 0) {
		log_msg(LOG_ERR, "futimens: %s", strerror(errno));
		return -1;
	}
	struct str name = STR_INIT, target = STR_INIT;
	size_t base_len = 0;
	int ret = -1;
	for (int tries = 0; tries < 5; tries++) {
		if (add_make_name(a, mf->size, mf->size + mf->newlines, flags,
				  keywords, n_keywords, &name, &base_len) != 0)
			goto out;
		str_clear(&target);
		str_printf(&target, "%s/cur/%s", f->path, str_c(&name));
		ret = mailfile_link_as(mf, str_c(&target), f->path);
		if (ret == 0 || errno != EEXIST)
			break;
	}
	if (ret != 0) {
		log_msg(LOG_ERR, "adding %s: %s", str_c(&target),
			strerror(errno));
		goto out;
	}
	ret = add_record(a, str_c(&name), base_len, str_c(&target), uid);
out:
	str_free(&name);
	str_free(&target);
	return ret;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Copy src through <folder>/tmp/<name> to target, keeping the mtime:
 * when a hard link cannot be made (another file system). */
static int copy_file(struct imap_folder *f, const char *src,
		     const struct stat *st, const char *name,
		     const char *target)
{
	struct str tmp = STR_INIT;
	str_printf(&tmp, "%s/tmp/%s", f->path, name);
	int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int out = -1, ret = -1;
	if (in < 0)
		goto out;
	out = open(str_c(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		goto out;
	char *buf = xmalloc(65536);
	for (;;) {
		ssize_t n = read(in, buf, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (n > 0 && write_all(out, buf, (size_t)n) != 0)) {
			free(buf);
			goto out;
		}
		if (n == 0)
			break;
	}
	free(buf);
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	if (fsync(out) != 0 || futimens(out, ts) != 0)
		goto out;
	ret = link(str_c(&tmp), target);
out:;
	int saved = errno;
	if (in >= 0)
		close(in);
	if (out >= 0) {
		close(out);
		unlink(str_c(&tmp));
	}
	str_free(&tmp);
	errno = saved;
	return ret;
}

int imap_folder_add_file(struct imap_folder_add *a, const char *src_path,
			 uint64_t size_crlf, uint8_t flags,
			 const char *const *keywords, size_t n_keywords,
			 uint32_t *uid)
{
	if (a->folder == NULL || !a->in_transaction) {
		errno = EINVAL;
		return -1;
	}
	struct imap_folder *f = a->folder;
	struct stat st;
	if (stat(src_path, &st) != 0)
		return -1;	/* ENOENT: the caller finds it again */
	struct str name = STR_INIT, target = STR_INIT;
	size_t base_len = 0;
	int ret = -1;
	for (int tries = 0; tries < 5; tries++) {
		if (add_make_name(a, (uint64_t)st.st_size, size_crlf, flags,
				  keywords, n_keywords, &name, &base_len) != 0)
			goto out;
		str_clear(&target);
		str_printf(&target, "%s/cur/%s", f->path, str_c(&name));
		ret = link(src_path, str_c(&target));
		if (ret != 0 && (errno == EXDEV || errno == EPERM ||
				 errno == EMLINK))
			ret = copy_file(f, src_path, &st, str_c(&name),
					str_c(&target));
		if (ret == 0 || errno != EEXIST)
			break;
	}
	if (ret != 0) {
		if (errno != ENOENT)
			log_msg(LOG_ERR, "adding %s: %s", str_c(&target),
				strerror(errno));
		goto out;
	}
	ret = add_record(a, str_c(&name), base_len, str_c(&target), uid);
out:
	str_free(&name);
	str_free(&target);
	return ret;
}

void imap_folder_add_abort(struct imap_folder_add *a)
{
	struct imap_folder *f = a->folder;
	if (f == NULL)
		return;
	for (size_t j = 0; a->added != NULL && j < a->added->n; j++)
		if (unlink(a->added->items[j]) != 0 && errno != ENOENT)
			log_msg(LOG_ERR, "unlink %s: %s", a->added->items[j],
				strerror(errno));
	/* no fsync: a file that comes back after a crash has no UID and is
	 * simply found as a new message */
	if (a->in_transaction) {
		tdb_transaction_cancel(f->db);
		a->in_transaction = false;
	}
	keywords_load(f);	/* forget keywords the transaction made */
	add_cleanup(a);
}

int imap_folder_add_commit(struct imap_folder_add *a, uint32_t *uidvalidity)
{
	struct imap_folder *f = a->folder;
	if (f == NULL || !a->in_transaction) {
		errno = EINVAL;
		return -1;
	}
	uint32_t next = a->first_uid + a->n;
	if (a->n > 0) {
		if (fsync_fd(f->path, "cur", f->priv->dir_fd[SUB_CUR]) != 0)
			goto fail;
		if (db_put(f->db, "uidnext", next) != 0) {
			db_log(f, "storing UIDNEXT");
			goto fail;
		}
	}
	if (db_commit(f->db) != 0) {
		db_log(f, "transaction commit");
		a->in_transaction = false;
		goto fail;
	}
	a->in_transaction = false;
	if (f->uidnext < next)
		f->uidnext = next;
	if (uidvalidity != NULL)
		*uidvalidity = f->uidvalidity;
	add_cleanup(a);
	return 0;
fail:
	imap_folder_add_abort(a);
	errno = EIO;
	return -1;
}

/* ---- the cache ---- */

/*
 * Reads during a command share one tdb_lockall_read, taken by the first
 * imap_folder_cache_get and held until imap_folder_cache_flush, so that a
 * FETCH over many messages costs no fcntl calls per message.  Puts are
 * collected in memory (found again by cache_get) and written in batches
 * under one tdb_lockall.  Writers never wait for the lock: a session
 * holding the read lock may sit blocked on a slow client, and a cache
 * write that cannot be done now is simply not done (it is only a cache).
 */

#define CACHE_VALUE_MAX (4 * 1024 * 1024)
#define CACHE_MAX_RESETS 2
#define CACHE_BATCH_BYTES (256 * 1024)	/* write the batch beyond this */
#define CACHE_BATCH_MAX 4096		/* ... or this many values */
#define CACHE_LOCK_TRIES 5		/* for the write lock, then drop */
#define CACHE_LOCK_WAIT_US 2000
/* Chains longer than this on average: the cache is made again, bigger. */
#define CACHE_MAX_LOAD 4

static const unsigned cache_hash_sizes[] = {
	1009, 2003, 4001, 8009, 16001, 32003, 64007, 128021, 256019
};

/* A prime about the number of messages: one or two records per chain. */
static unsigned cache_hash_size(size_t count)
{
	size_t n = sizeof cache_hash_sizes / sizeof cache_hash_sizes[0];
	for (size_t j = 0; j < n; j++)
		if (cache_hash_sizes[j] >= count)
			return cache_hash_sizes[j];
	return cache_hash_sizes[n - 1];
}

static void cache_key(unsigned char key[5], uint32_t uid, char field)
{
	key[0] = (unsigned char)field;
	key[1] = (unsigned char)(uid >> 24);
	key[2] = (unsigned char)(uid >> 16);
	key[3] = (unsigned char)(uid >> 8);
	key[4] = (unsigned char)uid;
}

/* ---- the batch of values put and not yet written ---- */

static void batch_clear(struct cache_batch *b)
{
	str_free(&b->data);
	free(b->e);
	free(b->slot);
	memset(b, 0, sizeof *b);
}

static size_t batch_hash(uint32_t uid, char field, size_t slots)
{
	uint32_t h = (uid ^ ((uint32_t)(unsigned char)field << 24)) *
		     2654435761u;
	return (size_t)h & (slots - 1);
}

/* The index of (uid, field) in the batch, or -1. */
static long batch_find(const struct cache_batch *b, uint32_t uid, char field)
{
	if (b->n == 0)
		return -1;
	for (size_t s = batch_hash(uid, field, b->slots);; s = (s + 1) &
							    (b->slots - 1)) {
		uint32_t j = b->slot[s];
		if (j == 0)
			return -1;
		const struct cache_ent *e = &b->e[j - 1];
		if (e->uid == uid && e->field == field)
			return (long)j - 1;
	}
}

static void batch_rehash(struct cache_batch *b)
{
	free(b->slot);
	b->slots = b->slots ? b->slots * 2 : 256;
	b->slot = xcalloc(b->slots, sizeof *b->slot);
	for (size_t j = 0; j < b->n; j++) {
		size_t s = batch_hash(b->e[j].uid, b->e[j].field, b->slots);
		while (b->slot[s] != 0)
			s = (s + 1) & (b->slots - 1);
		b->slot[s] = (uint32_t)j + 1;
	}
}

static void batch_add(struct cache_batch *b, uint32_t uid, char field,
		      const char *data, size_t len)
{
	long found = batch_find(b, uid, field);
	struct cache_ent *e;
	if (found >= 0) {
		e = &b->e[found];	/* the old value stays as garbage */
	} else {
		if (b->n == b->cap) {
			b->cap = b->cap ? b->cap * 2 : 64;
			b->e = xrealloc(b->e, b->cap * sizeof *b->e);
		}
		e = &b->e[b->n++];
		e->uid = uid;
		e->field = field;
		if (2 * b->n > b->slots) {
			batch_rehash(b);
		} else {
			size_t s = batch_hash(uid, field, b->slots);
			while (b->slot[s] != 0)
				s = (s + 1) & (b->slots - 1);
			b->slot[s] = (uint32_t)b->n;
		}
	}
	e->off = b->data.len;
	e->len = len;
	str_append_n(&b->data, data, len);
}

/* ---- opening, locking, writing ---- */

static void cache_unlock_read(struct imap_folder *f)
{
	if (f->priv != NULL && f->priv->cache_read_locked) {
		if (f->cache != NULL)
			tdb_unlockall_read(f->cache);
		f->priv->cache_read_locked = false;
	}
}

/* A cache that failed: close it and delete the file, so that the next
 * use starts a fresh one (only a few times per session). */
static void cache_reset(struct imap_folder *f)
{
	if (f->cache != NULL) {
		tdb_close(f->cache);	/* drops its locks */
		f->cache = NULL;
	}
	f->priv->cache_read_locked = false;
	batch_clear(&f->priv->batch);
	struct str p = STR_INIT;
	str_printf(&p, "%s/%s", f->path, IMAP_CACHE_DB);
	if (unlink(str_c(&p)) != 0 && errno != ENOENT)
		log_msg(LOG_WARNING, "unlink %s: %s", str_c(&p),
			strerror(errno));
	str_free(&p);
	f->priv->cache_resets++;
}

/* The cache, opened (created if missing) and checked against the
 * folder's UIDVALIDITY; a big folder gets a bigger hash table. */
static struct tdb_context *cache_open(struct imap_folder *f)
{
	if (f->cache != NULL && f->priv->cache_validity == f->uidvalidity)
		return f->cache;
	if (f->cache != NULL)	/* checked against another UIDVALIDITY */
		cache_reset(f);
	if (f->priv == NULL || f->priv->cache_resets > CACHE_MAX_RESETS)
		return NULL;
	struct str p = STR_INIT;
	str_printf(&p, "%s/%s", f->path, IMAP_CACHE_DB);
	while (f->cache == NULL &&
	       f->priv->cache_resets <= CACHE_MAX_RESETS) {
		f->cache = tdb_open(str_c(&p), (int)cache_hash_size(f->count),
				    TDB_NOSYNC | TDB_INCOMPATIBLE_HASH,
				    O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (f->cache == NULL) {
			log_msg(LOG_WARNING, "%s: broken, replaced",
				str_c(&p));
			cache_reset(f);
			continue;
		}
		uint32_t v = 0;
		int r = db_get(f->cache, "uidvalidity", &v);
		if (r == 0) {
			unsigned char buf[4];
			put_le32(buf, f->uidvalidity);
			TDB_DATA d = { buf, 4 };
			if (tdb_store(f->cache, mkkey("uidvalidity", 11), d,
				      TDB_INSERT) == 0)
				break;
			r = db_get(f->cache, "uidvalidity", &v);
		}
		if (r != 1 || v != f->uidvalidity)
			cache_reset(f);
	}
	str_free(&p);
	f->priv->cache_validity = f->uidvalidity;
	return f->cache;
}

/* A cache made for far fewer messages than the folder has now: start a
 * bigger one (its contents are rebuilt by the next FETCH). */
static void cache_check_size(struct imap_folder *f)
{
	if (f->cache != NULL && f->count > (size_t)CACHE_MAX_LOAD *
	    (size_t)tdb_hash_size(f->cache) && f->count > cache_hash_sizes[0])
		cache_reset(f);
}

/* A failed operation on an existing cache: drop it if it is broken. */
static void cache_failed(struct imap_folder *f)
{
	enum TDB_ERROR e = tdb_error(f->cache);
	if (e == TDB_ERR_CORRUPT || e == TDB_ERR_IO || e == TDB_ERR_OOM) {
		log_msg(LOG_WARNING, "%s/%s: %s, replaced", f->path,
			IMAP_CACHE_DB, tdb_errorstr(f->cache));
		cache_reset(f);
	}
}

/* The write lock on the whole cache, without waiting long: another
 * session may hold the read lock for as long as its client is slow. */
static bool cache_lock_write(struct imap_folder *f)
{
	cache_unlock_read(f);
	for (int tries = 0; tries < CACHE_LOCK_TRIES; tries++) {
		if (tries > 0)
			usleep(CACHE_LOCK_WAIT_US);
		if (tdb_lockall_nonblock(f->cache) == 0)
			return true;
	}
	return false;
}

/* Write the batch in one locked pass (or drop it: the cache is busy). */
static void cache_write_batch(struct imap_folder *f)
{
	struct cache_batch *b = &f->priv->batch;
	if (b->n == 0 || f->cache == NULL || !cache_lock_write(f)) {
		batch_clear(b);
		return;
	}
	bool failed = false;
	for (size_t j = 0; j < b->n && !failed; j++) {
		unsigned char key[5];
		cache_key(key, b->e[j].uid, b->e[j].field);
		TDB_DATA k = { key, 5 };
		TDB_DATA d = { (unsigned char *)b->data.data + b->e[j].off,
			       b->e[j].len };
		failed = tdb_store(f->cache, k, d, TDB_REPLACE) != 0;
	}
	if (failed)
		log_msg(LOG_WARNING, "%s/%s: %s", f->path, IMAP_CACHE_DB,
			tdb_errorstr(f->cache));
	tdb_unlockall(f->cache);
	if (failed)
		cache_failed(f);
	batch_clear(b);
}

void imap_folder_cache_flush(struct imap_folder *f)
{
	if (f->priv == NULL)
		return;
	cache_write_batch(f);
	cache_unlock_read(f);
}

static int cache_append_cb(TDB_DATA key, TDB_DATA data, void *priv)
{
	(void)key;
	str_append_n(priv, data.dptr, data.dsize);
	return 0;
}

bool imap_folder_cache_get(struct imap_folder *f, uint32_t uid, char field,
			   struct str *out)
{
	struct tdb_context *db = cache_open(f);
	if (db == NULL)
		return false;
	struct cache_batch *b = &f->priv->batch;
	long j = batch_find(b, uid, field);
	if (j >= 0) {
		str_append_n(out, b->data.data + b->e[j].off, b->e[j].len);
		return true;
	}
	/* one read lock for the rest of the command; if it cannot be had,
	 * tdb locks each record itself */
	if (!f->priv->cache_read_locked && tdb_lockall_read(db) == 0)
		f->priv->cache_read_locked = true;
	unsigned char key[5];
	cache_key(key, uid, field);
	TDB_DATA k = { key, 5 };
	size_t before = out->len;
	if (tdb_parse_record(db, k, cache_append_cb, out) == 0)
		return true;
	str_truncate(out, before);
	if (tdb_error(db) != TDB_ERR_NOEXIST)
		cache_failed(f);
	return false;
}

void imap_folder_cache_put(struct imap_folder *f, uint32_t uid, char field,
			   const char *data, size_t len)
{
	if (len > CACHE_VALUE_MAX || cache_open(f) == NULL)
		return;
	struct cache_batch *b = &f->priv->batch;
	batch_add(b, uid, field, data, len);
	if (b->data.len >= CACHE_BATCH_BYTES || b->n >= CACHE_BATCH_MAX)
		cache_write_batch(f);
}

/* Expunged UIDs: their values can never be asked for again (UIDs are not
 * reused), so this only saves room; skipped when the cache is busy. */
static void cache_forget(struct imap_folder *f, const uint32_t *uids,
			 size_t n)
{
	static const char fields[] = "EBb";
	cache_write_batch(f);
	if (n == 0 || f->cache == NULL || !cache_lock_write(f))
		return;
	for (size_t j = 0; j < n; j++) {
		for (const char *c = fields; *c; c++) {
			unsigned char key[5];
			cache_key(key, uids[j], *c);
			TDB_DATA k = { key, 5 };
			tdb_delete(f->cache, k);
		}
	}
	tdb_unlockall(f->cache);
}
