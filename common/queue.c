/*
 * queue: the outbound queue in spool_dir -- message files in msg/, one
 * envelope record per message in queue.tdb.  See queue.h for the layout,
 * durability and locking.
 *
 * Envelope record (the value of key "Q:<id>"), version 1: text lines, each
 * ending in "\n", in exactly this order; [ ] marks a line that is left out
 * when the field is NULL:
 *
 *   sockmail-queue 1
 *   id <id>
 *   sender <text>                      ("" is the null sender <>)
 *   [auth <text>]
 *   arrival <seconds>
 *   size <bytes>
 *   smtputf8 <0|1>
 *   8bitmime <0|1>
 *   delay-warned <0|1>
 *   then per recipient, 1 to QUEUE_MAX_RCPTS of them:
 *   rcpt <pending|delivered|failed> <attempts> <next_try> <dsn_sent 0|1>
 *        <local 0|1> <address text>          (one line)
 *   [orcpt <text>]
 *   [error <text>]
 *   end <number of recipients>
 *
 * Fields are separated by one space.  Numbers are decimal without sign or
 * leading zeros.  <text> is the rest of the line, any bytes but NUL, with
 * "\\" written as "\\\\" and every byte below 0x20 and 0x7f as "\\xHH"
 * (upper-case hex), so no text can break a line.  Bounds: a line is at most
 * QUEUE_LINE_MAX bytes, a record QUEUE_RECORD_MAX; addresses, sender and
 * auth at most QUEUE_FIELD_MAX bytes, an error text QUEUE_ERROR_MAX
 * (longer ones are cut when stored).  The parser accepts exactly what the
 * formatter writes and nothing else, and never reads past the buffer.
 * A new version gets a new first line; old records are then converted
 * when read.
 */
#include "queue.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <tdb.h>

#define QUEUE_DB_FILE "queue.tdb"
#define QUEUE_DB_HASH_SIZE 1021	/* chains; thousands of messages is normal */
#define QUEUE_VERSION_LINE "sockmail-queue 1"

#define QUEUE_MAX_RCPTS 10000
#define QUEUE_LINE_MAX 4096		/* bytes, without the "\n" */
#define QUEUE_RECORD_MAX (4 * 1024 * 1024)
#define QUEUE_FIELD_MAX 1000	/* escaped, 4000: a line stays in bounds */

#define TIME_T_LIMIT (sizeof(time_t) == 8 ? (uint64_t)INT64_MAX \
					  : (uint64_t)INT32_MAX)

static const char *const state_names[] = {
	[RCPT_PENDING] = "pending",
	[RCPT_DELIVERED] = "delivered",
	[RCPT_FAILED] = "failed",
};

/* ---- time and ids ---- */

time_t queue_now(void)
{
	const char *t = getenv("SOCKMAIL_TEST_NOW");
	if (t != NULL && *t != '\0') {
		char *end;
		errno = 0;
		long long v = strtoll(t, &end, 10);
		if (errno == 0 && *end == '\0' && v >= 0 &&
		    (uint64_t)v <= TIME_T_LIMIT)
			return (time_t)v;
	}
	return time(NULL);
}

/* Microseconds, pid and a per-process counter in hex, with P and Q (not
 * hex digits) between them so no two combinations read the same.  Linux
 * pids fit 22 bits: at most 14 + 1 + 6 + 1 + 8 characters. */
void queue_new_id(char id[QUEUE_ID_MAX])
{
	static unsigned counter;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	unsigned long long us = (unsigned long long)tv.tv_sec * 1000000ULL +
				(unsigned long long)tv.tv_usec;
	snprintf(id, QUEUE_ID_MAX, "%llXP%lXQ%X", us,
		 (unsigned long)getpid() & 0xFFFFFFul, ++counter);
}

bool queue_id_valid(const char *id)
{
	size_t n = 0;
	for (; id[n] != '\0'; n++) {
		char c = id[n];
		if (n >= QUEUE_ID_MAX - 1 ||
		    !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		      (c >= 'a' && c <= 'z')))
			return false;
	}
	return n > 0;
}

/* ---- envelopes in memory ---- */

void queue_envelope_free(struct queue_envelope *env)
{
	for (size_t i = 0; i < env->n_rcpts; i++) {
		free(env->rcpts[i].address);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].last_error);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->auth_user);
	memset(env, 0, sizeof *env);
}

bool queue_envelope_done(const struct queue_envelope *env)
{
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		if (r->state == RCPT_PENDING ||
		    (r->state == RCPT_FAILED && !r->dsn_sent))
			return false;
	}
	return true;
}

time_t queue_envelope_next(const struct queue_envelope *env)
{
	time_t next = 0;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		if (r->state == RCPT_PENDING && (next == 0 || r->next_try < next))
			next = r->next_try;
	}
	return next;
}

/* ---- the record format (see the top of the file) ---- */

static void format_text(struct str *out, const char *text, size_t max)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < max && text[i] != '\0'; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '\\') {
			str_append(out, "\\\\");
		} else if (c < 0x20 || c == 0x7f) {
			char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
			str_append_n(out, esc, 4);
		} else {
			str_append_c(out, (char)c);
		}
	}
}

static long long format_time(time_t t)
{
	return t < 0 ? 0 : (long long)t;
}

void queue_envelope_format(const struct queue_envelope *env, struct str *out)
{
	str_printf(out, QUEUE_VERSION_LINE "\nid %s\nsender ", env->id);
	format_text(out, env->sender != NULL ? env->sender : "",
		    QUEUE_FIELD_MAX);
	if (env->auth_user != NULL) {
		str_append(out, "\nauth ");
		format_text(out, env->auth_user, QUEUE_FIELD_MAX);
	}
	str_printf(out, "\narrival %lld\nsize %" PRIu64 "\nsmtputf8 %d\n"
		   "8bitmime %d\ndelay-warned %d\n",
		   format_time(env->arrival), env->size, env->smtputf8,
		   env->body_8bit, env->delay_warned);
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		unsigned st = (unsigned)r->state <= RCPT_FAILED ? r->state
								 : RCPT_PENDING;
		str_printf(out, "rcpt %s %u %lld %d %d ", state_names[st],
			   r->attempts, format_time(r->next_try), r->dsn_sent,
			   r->local);
		format_text(out, r->address != NULL ? r->address : "",
			    QUEUE_FIELD_MAX);
		if (r->orcpt != NULL) {
			str_append(out, "\norcpt ");
			format_text(out, r->orcpt, QUEUE_FIELD_MAX);
		}
		if (r->last_error != NULL) {
			str_append(out, "\nerror ");
			format_text(out, r->last_error, QUEUE_ERROR_MAX);
		}
		str_append_c(out, '\n');
	}
	str_printf(out, "end %zu\n", env->n_rcpts);
}

/* Parsing: one line at a time out of a bounded buffer. */
struct reader {
	const char *p, *end;	/* what is left */
	const char *line;	/* the current line, without "\n" */
	size_t len;
};

static bool next_line(struct reader *r)
{
	if (r->p >= r->end)
		return false;
	const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
	if (nl == NULL || (size_t)(nl - r->p) > QUEUE_LINE_MAX)
		return false;
	r->line = r->p;
	r->len = (size_t)(nl - r->p);
	r->p = nl + 1;
	return true;
}

/* Is the current line "<key> ..."?  *val is what follows the space. */
static bool line_key(const struct reader *r, const char *key,
		     const char **val, size_t *vlen)
{
	size_t k = strlen(key);
	if (r->len < k + 1 || memcmp(r->line, key, k) != 0 || r->line[k] != ' ')
		return false;
	*val = r->line + k + 1;
	*vlen = r->len - k - 1;
	return true;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Undo format_text into a fresh string; NULL if malformed or longer than
 * max bytes. */
static char *parse_text(const char *s, size_t len, size_t max)
{
	struct str out = STR_INIT;
	str_append(&out, "");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			goto bad;
		if (c == '\\') {
			if (i + 1 < len && s[i + 1] == '\\') {
				i++;
			} else if (i + 3 < len && s[i + 1] == 'x') {
				int hi = hex_value(s[i + 2]);
				int lo = hex_value(s[i + 3]);
				if (hi < 0 || lo < 0)
					goto bad;
				c = (unsigned char)(hi << 4 | lo);
				/* only what the formatter escapes */
				if (c >= 0x20 && c != 0x7f)
					goto bad;
				if (c == 0)
					goto bad;
				i += 3;
			} else {
				goto bad;
			}
		}
		if (out.len >= max)
			goto bad;
		str_append_c(&out, (char)c);
	}
	return out.data;
bad:
	str_free(&out);
	return NULL;
}

static bool parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static bool parse_bool(const char *s, size_t len, bool *out)
{
	if (len != 1 || (s[0] != '0' && s[0] != '1'))
		return false;
	*out = s[0] == '1';
	return true;
}

/* The current line must be "<key> <number>". */
static bool line_u64(const struct reader *r, const char *key, uint64_t max,
		     uint64_t *out)
{
	const char *v;
	size_t n;
	return line_key(r, key, &v, &n) && parse_u64(v, n, max, out);
}

static bool line_bool(const struct reader *r, const char *key, bool *out)
{
	const char *v;
	size_t n;
	return line_key(r, key, &v, &n) && parse_bool(v, n, out);
}

/* Cut the next space-separated token off *s (of *len bytes). */
static bool token(const char **s, size_t *len, const char **tok,
		  size_t *tlen)
{
	const char *sp = memchr(*s, ' ', *len);
	if (sp == NULL || sp == *s)
		return false;
	*tok = *s;
	*tlen = (size_t)(sp - *s);
	*len -= *tlen + 1;
	*s = sp + 1;
	return true;
}

/* "rcpt <state> <attempts> <next_try> <dsn_sent> <local> <address>" */
static bool parse_rcpt_line(const struct reader *r, struct queue_rcpt *rc)
{
	const char *s, *t;
	size_t len, tl;
	uint64_t v;

	if (!line_key(r, "rcpt", &s, &len) || !token(&s, &len, &t, &tl))
		return false;
	bool known = false;
	for (unsigned i = 0; i <= RCPT_FAILED && !known; i++) {
		if (strlen(state_names[i]) == tl &&
		    memcmp(state_names[i], t, tl) == 0) {
			rc->state = (enum rcpt_state)i;
			known = true;
		}
	}
	if (!known || !token(&s, &len, &t, &tl) ||
	    !parse_u64(t, tl, UINT_MAX, &v))
		return false;
	rc->attempts = (unsigned)v;
	if (!token(&s, &len, &t, &tl) || !parse_u64(t, tl, TIME_T_LIMIT, &v))
		return false;
	rc->next_try = (time_t)v;
	if (!token(&s, &len, &t, &tl) || !parse_bool(t, tl, &rc->dsn_sent) ||
	    !token(&s, &len, &t, &tl) || !parse_bool(t, tl, &rc->local) ||
	    len == 0)
		return false;
	rc->address = parse_text(s, len, QUEUE_FIELD_MAX);
	return rc->address != NULL;
}

/* Recipients from the current line on, through "end N". */
static bool parse_rcpts(struct reader *r, struct queue_envelope *env)
{
	size_t cap = 0;
	const char *v;
	size_t n;

	for (;;) {
		uint64_t count;
		if (line_u64(r, "end", QUEUE_MAX_RCPTS, &count))
			return count == env->n_rcpts && env->n_rcpts > 0;
		if (env->n_rcpts == QUEUE_MAX_RCPTS)
			return false;
		if (env->n_rcpts == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			if (cap > QUEUE_MAX_RCPTS)
				cap = QUEUE_MAX_RCPTS;
			env->rcpts = xrealloc(env->rcpts, cap * sizeof *env->rcpts);
		}
		struct queue_rcpt *rc = &env->rcpts[env->n_rcpts];
		memset(rc, 0, sizeof *rc);
		env->n_rcpts++;	/* so a failure below frees what is in rc */
		if (!parse_rcpt_line(r, rc) || !next_line(r))
			return false;
		if (line_key(r, "orcpt", &v, &n)) {
			if ((rc->orcpt = parse_text(v, n, QUEUE_FIELD_MAX)) ==
			    NULL || !next_line(r))
				return false;
		}
		if (line_key(r, "error", &v, &n)) {
			if ((rc->last_error = parse_text(v, n, QUEUE_ERROR_MAX)) ==
			    NULL || !next_line(r))
				return false;
		}
	}
}

static bool parse_header(struct reader *r, struct queue_envelope *env)
{
	const char *v;
	size_t n;
	uint64_t u;

	if (!next_line(r) || r->len != strlen(QUEUE_VERSION_LINE) ||
	    memcmp(r->line, QUEUE_VERSION_LINE, r->len) != 0)
		return false;
	if (!next_line(r) || !line_key(r, "id", &v, &n) || n == 0 ||
	    n >= QUEUE_ID_MAX)
		return false;
	memcpy(env->id, v, n);
	env->id[n] = '\0';
	if (strlen(env->id) != n || !queue_id_valid(env->id))
		return false;
	if (!next_line(r) || !line_key(r, "sender", &v, &n) ||
	    (env->sender = parse_text(v, n, QUEUE_FIELD_MAX)) == NULL ||
	    !next_line(r))
		return false;
	if (line_key(r, "auth", &v, &n)) {
		if ((env->auth_user = parse_text(v, n, QUEUE_FIELD_MAX)) == NULL ||
		    !next_line(r))
			return false;
	}
	if (!line_u64(r, "arrival", TIME_T_LIMIT, &u))
		return false;
	env->arrival = (time_t)u;
	if (!next_line(r) || !line_u64(r, "size", UINT64_MAX, &env->size))
		return false;
	return next_line(r) && line_bool(r, "smtputf8", &env->smtputf8) &&
	       next_line(r) && line_bool(r, "8bitmime", &env->body_8bit) &&
	       next_line(r) && line_bool(r, "delay-warned", &env->delay_warned) &&
	       next_line(r);
}

int queue_envelope_parse(const char *data, size_t len,
			 struct queue_envelope *env)
{
	memset(env, 0, sizeof *env);
	if (data == NULL || len > QUEUE_RECORD_MAX)
		return -1;
	struct reader r = { data, data + len, NULL, 0 };
	if (!parse_header(&r, env) || !parse_rcpts(&r, env) || r.p != r.end) {
		queue_envelope_free(env);
		return -1;
	}
	return 0;
}

/* What queue_store and queue_commit refuse to write: what the formatter
 * would have to cut or could not read back. */
static int envelope_check(const struct queue_envelope *env, struct str *err)
{
	if (!queue_id_valid(env->id)) {
		str_printf(err, "invalid queue id");
		return -1;
	}
	if (env->sender == NULL || strlen(env->sender) > QUEUE_FIELD_MAX ||
	    (env->auth_user != NULL &&
	     strlen(env->auth_user) > QUEUE_FIELD_MAX)) {
		str_printf(err, "queue %s: sender or user missing or too long",
			   env->id);
		return -1;
	}
	if (env->n_rcpts == 0 || env->n_rcpts > QUEUE_MAX_RCPTS) {
		str_printf(err, "queue %s: %zu recipients (1 to %d allowed)",
			   env->id, env->n_rcpts, QUEUE_MAX_RCPTS);
		return -1;
	}
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		if (r->address == NULL || r->address[0] == '\0' ||
		    strlen(r->address) > QUEUE_FIELD_MAX ||
		    (r->orcpt != NULL && strlen(r->orcpt) > QUEUE_FIELD_MAX) ||
		    (unsigned)r->state > RCPT_FAILED || r->next_try < 0) {
			str_printf(err, "queue %s: recipient %zu is invalid",
				   env->id, i + 1);
			return -1;
		}
	}
	if (env->arrival < 0) {
		str_printf(err, "queue %s: invalid arrival time", env->id);
		return -1;
	}
	return 0;
}

/* ---- files and the database ---- */

static void spool_path(const struct config *cfg, const char *name,
		       struct str *out)
{
	str_clear(out);
	str_printf(out, "%s/%s", cfg->spool_dir, name);
}

void queue_message_path(const struct config *cfg, const char *id,
			struct str *out)
{
	str_printf(out, "%s/msg/%s", cfg->spool_dir, id);
}

static TDB_DATA record_key(const char *id, char buf[QUEUE_ID_MAX + 2])
{
	size_t n = strlen(id);
	buf[0] = 'Q';
	buf[1] = ':';
	memcpy(buf + 2, id, n);
	TDB_DATA k = { (unsigned char *)buf, n + 2 };
	return k;
}

/* Running as root (sockmailctl, tests), hand what we create to the owner
 * of spool_dir: the handlers and the runner run as that user. */
static void give_to_spool_owner(const struct config *cfg, int fd,
				const char *path)
{
	struct stat spool, st;
	if (geteuid() != 0 || stat(cfg->spool_dir, &spool) != 0 ||
	    spool.st_uid == 0)
		return;
	int r = fd >= 0 ? fstat(fd, &st) : lstat(path, &st);
	if (r != 0 || (st.st_uid == spool.st_uid && st.st_gid == spool.st_gid))
		return;
	if (fd >= 0)
		(void)fchown(fd, spool.st_uid, spool.st_gid);
	else
		(void)lchown(path, spool.st_uid, spool.st_gid);
}

/*
 * Make queue.tdb: written aside in tmp/, fsynced, linked into place, then
 * the spool directory fsynced.  tdb_open(O_CREAT) in place can fail half
 * way (disk full) and leave a file no reader can open, and a database
 * whose directory entry is not durable could vanish after its first
 * envelope was acknowledged.  A second process creating it at the same
 * time finds EEXIST and uses the first one's.  0, or -1 with errno.
 */
static int db_create(const struct config *cfg, const char *path)
{
	struct str tmp = STR_INIT;
	str_printf(&tmp, "%s/tmp/" QUEUE_DB_FILE ".%ld", cfg->spool_dir,
		   (long)getpid());
	(void)unlink(str_c(&tmp));	/* a crashed namesake's */
	struct tdb_context *t = tdb_open(str_c(&tmp), QUEUE_DB_HASH_SIZE,
					 TDB_DEFAULT,
					 O_RDWR | O_CREAT | O_EXCL, 0600);
	int ret = -1;
	if (t != NULL) {
		give_to_spool_owner(cfg, tdb_fd(t), NULL);
		ret = fsync(tdb_fd(t));
		if (tdb_close(t) != 0)
			ret = -1;
	}
	if (ret == 0 && link(str_c(&tmp), path) != 0 && errno != EEXIST)
		ret = -1;
	if (ret == 0)
		ret = fsync_dir(cfg->spool_dir);
	int saved = errno;
	(void)unlink(str_c(&tmp));
	str_free(&tmp);
	errno = saved;
	return ret;
}

/* Open queue.tdb read-write (tdb locks only then), with create making it
 * when it is missing.  Returns 0, 1 when it does not exist and create is
 * false, -1 with *err. */
static int db_open(const struct config *cfg, bool create,
		   struct tdb_context **tdb, struct str *err)
{
	struct str path = STR_INIT;
	spool_path(cfg, QUEUE_DB_FILE, &path);
	*tdb = tdb_open(str_c(&path), QUEUE_DB_HASH_SIZE, TDB_DEFAULT, O_RDWR,
			0600);
	if (*tdb == NULL && create && errno == ENOENT) {
		if (db_create(cfg, str_c(&path)) == 0)
			*tdb = tdb_open(str_c(&path), QUEUE_DB_HASH_SIZE,
					TDB_DEFAULT, O_RDWR, 0600);
	}
	int ret = 0;
	if (*tdb == NULL) {
		if (!create && errno == ENOENT) {
			ret = 1;
		} else {
			str_printf(err, "cannot open the queue %s: %s",
				   str_c(&path), errno ? strerror(errno)
						       : "not a tdb file");
			ret = -1;
		}
	}
	str_free(&path);
	return ret;
}

/* Store (flag TDB_REPLACE or TDB_INSERT) or delete (rec NULL) one record,
 * and store a second one (also_id, also_rec) when also_id is not NULL,
 * all in one transaction, fsynced by the commit.  0, 1 when the record to
 * delete is not there, -1 with *err, or -2 with *err when the commit
 * failed: the change may be in the file all the same (tdb leaves what it
 * wrote when the last fsync fails). */
static int db_write2(struct tdb_context *tdb, const char *id,
		     const struct str *rec, int flag, const char *also_id,
		     const struct str *also_rec, struct str *err)
{
	char kbuf[QUEUE_ID_MAX + 2], abuf[QUEUE_ID_MAX + 2];
	TDB_DATA key = record_key(id, kbuf);

	if (tdb_transaction_start(tdb) != 0) {
		str_printf(err, "queue %s: cannot start a transaction: %s", id,
			   tdb_errorstr(tdb));
		return -1;
	}
	int r;
	if (rec != NULL) {
		TDB_DATA val = { (unsigned char *)rec->data, rec->len };
		r = tdb_store(tdb, key, val, flag);
	} else {
		r = tdb_delete(tdb, key);
	}
	if (r == 0 && also_id != NULL) {
		TDB_DATA val = { (unsigned char *)also_rec->data,
				 also_rec->len };
		r = tdb_store(tdb, record_key(also_id, abuf), val,
			      TDB_REPLACE);
		id = r != 0 ? also_id : id;
	}
	if (r != 0) {
		bool missing = rec == NULL && tdb_error(tdb) == TDB_ERR_NOEXIST;
		if (!missing)
			str_printf(err, "queue %s: cannot %s the envelope: %s",
				   id, rec ? "store" : "delete",
				   tdb_errorstr(tdb));
		tdb_transaction_cancel(tdb);
		return missing ? 1 : -1;
	}
	if (tdb_transaction_commit(tdb) != 0) {
		str_printf(err, "queue %s: cannot commit: %s", id,
			   tdb_errorstr(tdb));
		return -2;
	}
	return 0;
}

static int db_write(struct tdb_context *tdb, const char *id,
		    const struct str *rec, int flag, struct str *err)
{
	return db_write2(tdb, id, rec, flag, NULL, NULL, err);
}

/* Fetch and parse one record: 0, 1 when absent, -1 with *err. */
static int db_load(struct tdb_context *tdb, const char *id,
		   struct queue_envelope *env, struct str *err)
{
	char kbuf[QUEUE_ID_MAX + 2];
	TDB_DATA v = tdb_fetch(tdb, record_key(id, kbuf));
	if (v.dptr == NULL) {
		if (tdb_error(tdb) == TDB_ERR_NOEXIST)
			return 1;
		str_printf(err, "queue %s: cannot read the envelope: %s", id,
			   tdb_errorstr(tdb));
		return -1;
	}
	int r = queue_envelope_parse((const char *)v.dptr, v.dsize, env);
	free(v.dptr);
	if (r == 0 && strcmp(env->id, id) != 0) {
		queue_envelope_free(env);
		r = -1;
	}
	if (r != 0)
		str_printf(err, "queue %s: the envelope is corrupt", id);
	return r;
}

/* Format for storing: -1 with *err if too large. */
static int format_checked(const struct queue_envelope *env, struct str *rec,
			  struct str *err)
{
	if (envelope_check(env, err) < 0)
		return -1;
	queue_envelope_format(env, rec);
	if (rec->len > QUEUE_RECORD_MAX) {
		str_printf(err, "queue %s: the envelope is too large", env->id);
		return -1;
	}
	return 0;
}

int queue_load(const struct config *cfg, const char *id,
	       struct queue_envelope *env, struct str *err)
{
	struct tdb_context *tdb;

	memset(env, 0, sizeof *env);
	if (!queue_id_valid(id))
		return 1;
	int r = db_open(cfg, false, &tdb, err);
	if (r != 0)
		return r;
	r = db_load(tdb, id, env, err);
	tdb_close(tdb);
	return r;
}

int queue_store(const struct config *cfg, const struct queue_envelope *env,
		struct str *err)
{
	struct str rec = STR_INIT;
	struct tdb_context *tdb = NULL;

	int r = format_checked(env, &rec, err);
	if (r == 0) {
		r = db_open(cfg, false, &tdb, err);
		if (r == 1) {
			str_printf(err, "queue %s: no queue database", env->id);
			r = -1;
		}
	}
	if (r == 0 && db_write(tdb, env->id, &rec, TDB_REPLACE, err) != 0)
		r = -1;
	if (tdb != NULL)
		tdb_close(tdb);
	str_free(&rec);
	return r;
}

int queue_update(const struct config *cfg, const char *id,
		 int (*fn)(struct queue_envelope *env, void *arg), void *arg,
		 struct str *err)
{
	struct tdb_context *tdb;
	struct queue_envelope env;
	struct str rec = STR_INIT;

	if (!queue_id_valid(id))
		return 1;
	int r = db_open(cfg, false, &tdb, err);
	if (r != 0)
		return r;
	/* The transaction's lock spans the read, so no writer comes between
	 * our read and our write. */
	if (tdb_transaction_start(tdb) != 0) {
		str_printf(err, "queue %s: cannot start a transaction: %s", id,
			   tdb_errorstr(tdb));
		tdb_close(tdb);
		return -1;
	}
	int changed = 0;
	r = db_load(tdb, id, &env, err);
	if (r == 0) {
		changed = fn(&env, arg);
		if (changed < 0) {
			if (err->len == 0)
				str_printf(err, "queue %s: update refused", id);
			r = -1;
		} else if (changed > 0) {
			r = format_checked(&env, &rec, err);
			char kbuf[QUEUE_ID_MAX + 2];
			TDB_DATA val = { (unsigned char *)rec.data, rec.len };
			if (r == 0 && tdb_store(tdb, record_key(id, kbuf), val,
						TDB_REPLACE) != 0) {
				str_printf(err, "queue %s: cannot store the "
					   "envelope: %s", id,
					   tdb_errorstr(tdb));
				r = -1;
			}
		}
		queue_envelope_free(&env);
	}
	if (r != 0 || changed == 0) {
		tdb_transaction_cancel(tdb);	/* nothing to fsync */
	} else if (tdb_transaction_commit(tdb) != 0) {
		str_printf(err, "queue %s: cannot commit: %s", id,
			   tdb_errorstr(tdb));
		r = -1;
	}
	tdb_close(tdb);
	str_free(&rec);
	return r;
}

/*
 * The record goes first, then the file.  A crash in between leaves a file
 * with no envelope: invisible (nothing lists or delivers it) and removed
 * by queue_clean_orphans later.  The other order could leave an envelope
 * whose file is gone, which a runner would find and fail on.
 */
int queue_remove(const struct config *cfg, const char *id, struct str *err)
{
	struct tdb_context *tdb;

	if (!queue_id_valid(id))
		return 1;
	int r = db_open(cfg, false, &tdb, err);
	if (r != 0)
		return r;
	r = db_write(tdb, id, NULL, 0, err);
	tdb_close(tdb);
	if (r != 0)	/* no envelope, or maybe still one: leave the file */
		return r < 0 ? -1 : r;
	/* Not fsynced, and a failure is no error: the message is out of the
	 * queue either way, and a file left behind is an orphan. */
	struct str path = STR_INIT;
	queue_message_path(cfg, id, &path);
	(void)unlink(str_c(&path));
	str_free(&path);
	return 0;
}

/* ---- listing ---- */

struct list_item {
	time_t arrival;
	char id[QUEUE_ID_MAX];
};

struct list_state {
	struct list_item *items;
	size_t n, cap;
};

static int list_one(struct tdb_context *tdb, TDB_DATA k, TDB_DATA v,
		    void *arg)
{
	struct list_state *l = arg;
	struct queue_envelope env;
	(void)tdb;

	if (k.dsize < 3 || k.dsize > QUEUE_ID_MAX + 1 || k.dptr[0] != 'Q' ||
	    k.dptr[1] != ':')
		return 0;
	struct list_item it = { 0 };
	memcpy(it.id, k.dptr + 2, k.dsize - 2);
	if (strlen(it.id) != k.dsize - 2 || !queue_id_valid(it.id))
		return 0;
	/* An unreadable record sorts first (arrival 0): see queue.h. */
	if (queue_envelope_parse((const char *)v.dptr, v.dsize, &env) == 0) {
		it.arrival = env.arrival;
		queue_envelope_free(&env);
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->items = xrealloc(l->items, l->cap * sizeof *l->items);
	}
	l->items[l->n++] = it;
	return 0;
}

static int list_cmp(const void *a, const void *b)
{
	const struct list_item *x = a, *y = b;
	if (x->arrival != y->arrival)
		return x->arrival < y->arrival ? -1 : 1;
	return strcmp(x->id, y->id);
}

int queue_list(const struct config *cfg, struct strlist *ids, struct str *err)
{
	struct tdb_context *tdb;
	struct list_state l = { 0 };

	int r = db_open(cfg, false, &tdb, err);
	if (r == 1)
		return 0;	/* never written to: empty */
	if (r < 0)
		return -1;
	if (tdb_traverse_read(tdb, list_one, &l) < 0) {
		str_printf(err, "cannot read the queue: %s", tdb_errorstr(tdb));
		r = -1;
	} else {
		if (l.n > 0)	/* qsort(NULL, 0) is undefined */
			qsort(l.items, l.n, sizeof *l.items, list_cmp);
		for (size_t i = 0; i < l.n; i++)
			strlist_add(ids, l.items[i].id);
	}
	tdb_close(tdb);
	free(l.items);
	return r;
}

/* ---- writing a new message ---- */

/* mkdir path (mode 0700) unless it is a directory already. */
static int make_dir(const struct config *cfg, const char *path)
{
	if (mkdir(path, 0700) == 0) {
		give_to_spool_owner(cfg, -1, path);
		return 0;
	}
	struct stat st;
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (errno == EEXIST)
		errno = ENOTDIR;
	return -1;
}

/* spool_dir (with its parents), spool_dir/tmp, spool_dir/msg. */
static int make_spool_dirs(const struct config *cfg)
{
	struct str p = STR_INIT;
	int ret = 0;
	struct stat st;

	str_append(&p, cfg->spool_dir);
	if (stat(p.data, &st) != 0) {
		for (char *s = p.data + 1; ret == 0 && (s = strchr(s, '/'));
		     s++) {
			*s = '\0';
			ret = make_dir(cfg, p.data);
			*s = '/';
		}
		if (ret == 0)
			ret = make_dir(cfg, p.data);
	}
	static const char *const sub[] = { "tmp", "msg" };
	for (size_t i = 0; i < 2 && ret == 0; i++) {
		spool_path(cfg, sub[i], &p);
		ret = make_dir(cfg, str_c(&p));
	}
	str_free(&p);
	return ret;
}

int queue_open_file(const struct config *cfg, struct mailfile *f)
{
	if (make_spool_dirs(cfg) != 0)
		return -1;
	if (mailfile_open(f, cfg->spool_dir) != 0)
		return -1;
	give_to_spool_owner(cfg, f->fd, NULL);
	return 0;
}

/*
 * After a failed commit of a new envelope (db_write's -2): a commit whose
 * last fsync fails has written the record all the same (tdb leaves it;
 * only the recovery marker goes when the database is closed), so it is
 * deleted again.  Returns 0 when it is surely gone, and the message file
 * may go too; 1 when it is gone from the file but maybe not from the disk
 * (the delete was committed without fsync, TDB_NOSYNC, as the disk
 * refused every sync): then the file stays, an orphan for
 * queue_clean_orphans now, and beside its envelope if a crash brings that
 * back; -1 when the envelope may still be there: the file stays with it
 * (the message goes out although the client heard 451: a duplicate at
 * worst, never an envelope without its file).
 */
static int take_back(const struct config *cfg, const char *id)
{
	struct tdb_context *tdb;
	struct str err = STR_INIT, path = STR_INIT;
	int r = db_open(cfg, false, &tdb, &err);
	if (r == 0) {
		r = db_write(tdb, id, NULL, 0, &err);
		tdb_close(tdb);
	}
	if (r == 0 || r == 1) {
		r = 0;
	} else {
		spool_path(cfg, QUEUE_DB_FILE, &path);
		tdb = tdb_open(str_c(&path), QUEUE_DB_HASH_SIZE, TDB_NOSYNC,
			       O_RDWR, 0600);
		r = tdb != NULL && db_write(tdb, id, NULL, 0, &err) >= 0 ? 1
									 : -1;
		if (tdb != NULL)
			tdb_close(tdb);
	}
	str_free(&err);
	str_free(&path);
	return r;
}

int queue_commit(const struct config *cfg, struct mailfile *f,
		 struct queue_envelope *env, struct str *err)
{
	return queue_commit_with(cfg, f, env, NULL, err);
}

int queue_commit_with(const struct config *cfg, struct mailfile *f,
		      struct queue_envelope *env,
		      const struct queue_envelope *also, struct str *err)
{
	struct str path = STR_INIT, rec = STR_INIT, also_rec = STR_INIT;
	struct tdb_context *tdb = NULL;
	bool linked = false;
	int ret = -1, saved = 0, w = 0;

	if (env->id[0] == '\0')
		queue_new_id(env->id);
	/* Every recipient due now, from the start. */
	env->arrival = queue_now();
	env->size = f->size;
	env->delay_warned = false;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		struct queue_rcpt *r = &env->rcpts[i];
		r->state = RCPT_PENDING;
		r->attempts = 0;
		r->next_try = env->arrival;
		r->dsn_sent = false;
		free(r->last_error);
		r->last_error = NULL;
	}
	if (format_checked(env, &rec, err) < 0 ||
	    (also != NULL && format_checked(also, &also_rec, err) < 0)) {
		errno = EINVAL;
		goto out;
	}

	/* f may have been opened in a Maildir: the spool may be new */
	queue_message_path(cfg, env->id, &path);
	if (make_spool_dirs(cfg) != 0 || mailfile_finish(f) != 0 ||
	    mailfile_link_as(f, str_c(&path), cfg->spool_dir) != 0) {
		saved = errno;
		str_printf(err, "queue %s: cannot write %s: %s", env->id,
			   str_c(&path), strerror(errno));
		goto out;
	}
	linked = true;
	if (db_open(cfg, true, &tdb, err) != 0 ||
	    (w = db_write2(tdb, env->id, &rec, TDB_INSERT,
			   also ? also->id : NULL, &also_rec, err)) != 0) {
		saved = errno ? errno : EIO;
		if (w == -2 && also != NULL) {
			/* Both records or neither: taking the new one back
			 * could leave the other saying it was queued.  Keep
			 * both; the caller retries, a duplicate at worst. */
			linked = false;
		} else if (w == -2) {
			tdb_close(tdb);	/* ends the failed transaction */
			tdb = NULL;
			if (take_back(cfg, env->id) != 0)
				linked = false;	/* the file stays: see there */
		}
		goto out;
	}
	ret = 0;
	queue_trigger(cfg);
out:
	if (tdb != NULL)
		tdb_close(tdb);
	if (ret != 0 && linked) {
		/* Nothing queued: the file must not stay as an orphan either
		 * (it would only go after the grace period). */
		unlink(str_c(&path));
	}
	str_free(&path);
	str_free(&rec);
	str_free(&also_rec);
	if (ret != 0 && saved != 0)
		errno = saved;
	return ret;
}

void queue_trigger(const struct config *cfg)
{
	struct str path = STR_INIT;
	spool_path(cfg, "trigger", &path);
	int fd = open(str_c(&path), O_WRONLY | O_CREAT | O_NOFOLLOW |
				    O_CLOEXEC | O_NONBLOCK, 0600);
	if (fd >= 0) {
		/* IN_ATTRIB for PathModified=, IN_CLOSE_WRITE for
		 * PathChanged= */
		(void)futimens(fd, NULL);
		give_to_spool_owner(cfg, fd, NULL);
		close(fd);
	}
	str_free(&path);
}

/* ---- locking and cleaning ---- */

int queue_lock(const struct config *cfg, const char *id)
{
	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	struct str path = STR_INIT;
	queue_message_path(cfg, id, &path);
	int fd = open(str_c(&path), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int saved = errno;
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
		saved = errno == EINTR ? EWOULDBLOCK : errno;
		close(fd);
		fd = -1;
	}
	/* We may have opened the file just before its last holder removed
	 * it: a lock on an unlinked file protects nothing. */
	struct stat a, b;
	if (fd >= 0 && (fstat(fd, &a) != 0 || stat(str_c(&path), &b) != 0 ||
			a.st_ino != b.st_ino || a.st_dev != b.st_dev)) {
		saved = ENOENT;
		close(fd);
		fd = -1;
	}
	str_free(&path);
	errno = saved;
	return fd;
}

/* Is an envelope stored for id?  1, 0, -1 (with *err). */
static int db_has(struct tdb_context *tdb, const char *id, struct str *err)
{
	char kbuf[QUEUE_ID_MAX + 2];
	TDB_DATA v = tdb_fetch(tdb, record_key(id, kbuf));
	if (v.dptr != NULL) {
		free(v.dptr);
		return 1;
	}
	/* a failed read must not look like "absent": we would delete mail */
	if (tdb_error(tdb) == TDB_ERR_NOEXIST)
		return 0;
	str_printf(err, "queue %s: cannot read the envelope: %s", id,
		   tdb_errorstr(tdb));
	return -1;
}

static bool old_enough(int dirfd, const char *name, time_t older_than)
{
	struct stat st;
	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISREG(st.st_mode) && time(NULL) - st.st_mtime >= older_than;
}

/* msg/: old files whose envelope is missing, unless someone holds them. */
static int clean_msg(const struct config *cfg, struct tdb_context *tdb,
		     time_t older_than, struct str *err)
{
	struct str path = STR_INIT;
	spool_path(cfg, "msg", &path);
	DIR *d = opendir(str_c(&path));
	int removed = 0;
	if (d == NULL) {
		if (errno != ENOENT) {
			str_printf(err, "cannot read %s: %s", str_c(&path),
				   strerror(errno));
			removed = -1;
		}
		str_free(&path);
		return removed;
	}
	struct dirent *e;
	while (removed >= 0 && (e = readdir(d)) != NULL) {
		if (!queue_id_valid(e->d_name) ||
		    !old_enough(dirfd(d), e->d_name, older_than))
			continue;
		int has = db_has(tdb, e->d_name, err);
		if (has < 0) {
			removed = -1;
		} else if (has == 0) {
			int fd = queue_lock(cfg, e->d_name);
			if (fd >= 0 && unlinkat(dirfd(d), e->d_name, 0) == 0)
				removed++;
			if (fd >= 0)
				close(fd);
		}
	}
	closedir(d);
	str_free(&path);
	return removed;
}

/* tmp/: a named writing file is never used once its writer is gone. */
static int clean_tmp(const struct config *cfg, time_t older_than)
{
	struct str path = STR_INIT;
	spool_path(cfg, "tmp", &path);
	DIR *d = opendir(str_c(&path));
	int removed = 0;
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.' &&
		    old_enough(dirfd(d), e->d_name, older_than) &&
		    unlinkat(dirfd(d), e->d_name, 0) == 0)
			removed++;
	}
	if (d != NULL)
		closedir(d);
	str_free(&path);
	return removed;
}

int queue_clean_orphans(const struct config *cfg, time_t older_than,
			struct str *err)
{
	struct tdb_context *tdb;

	int r = db_open(cfg, false, &tdb, err);
	if (r != 0)
		return r > 0 ? 0 : -1;	/* no database: judge nothing */
	int removed = clean_msg(cfg, tdb, older_than, err);
	tdb_close(tdb);
	if (removed < 0)
		return -1;
	return removed + clean_tmp(cfg, older_than);
}
