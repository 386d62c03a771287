/*
 * runner_msg: one queued message, from the lock to its removal: local
 * recipients into Maildirs, remote ones grouped by domain (or all to the
 * relayhost), each result recorded in the queue as soon as its domain is
 * done (a kill -9 loses at most the domain in flight), then expiry after
 * queue_lifetime, bounces for permanent failures and one delay warning
 * after delay_warning -- all as DSNs queued like any other message.
 *
 * Retry schedule: a temporary failure waits 15 min, then 30 min, 1 h,
 * 2 h, and 4 h from then on, counted per recipient.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "log.h"
#include "maildir.h"
#include "runner.h"

#define MSG_READ_CHUNK 65536

off_t runner_spool_body(int fd)
{
	char line[QUEUE_ERROR_MAX + 64];	/* "Return-Path: <path>\n" */
	ssize_t n = pread(fd, line, sizeof line, 0);
	if (n < 13 || strncasecmp(line, "Return-Path:", 12) != 0)
		return 0;
	const char *nl = memchr(line, '\n', (size_t)n);
	return nl != NULL ? (off_t)(nl - line) + 1 : 0;
}

time_t runner_backoff(unsigned attempts)
{
	static const time_t steps[] = {
		15 * 60, 30 * 60, 60 * 60, 2 * 60 * 60, 4 * 60 * 60,
	};
	size_t n = sizeof steps / sizeof steps[0];
	if (attempts == 0)
		attempts = 1;
	return attempts <= n ? steps[attempts - 1] : steps[n - 1];
}

time_t runner_due(const struct config *cfg, const struct queue_envelope *env)
{
	bool pending = false;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		if (r->state == RCPT_FAILED && !r->dsn_sent)
			return 0;	/* a bounce to send */
		pending |= r->state == RCPT_PENDING;
	}
	if (!pending)
		return 0;		/* only the removal is left */
	time_t due = queue_envelope_next(env);
	time_t expire = env->arrival + (time_t)cfg->queue_lifetime;
	if (expire < due)
		due = expire;
	if (!env->delay_warned && env->sender[0] != '\0' &&
	    cfg->delay_warning > 0 &&
	    cfg->delay_warning < cfg->queue_lifetime) {
		time_t warn = env->arrival + (time_t)cfg->delay_warning;
		if (warn < due)
			due = warn;
	}
	return due;
}

void attempt_set(struct attempt *a, enum attempt_result res,
		 const char *status, const char *fmt, ...)
{
	va_list ap;
	a->result = res;
	snprintf(a->status, sizeof a->status, "%s", status);
	str_clear(&a->text);
	va_start(ap, fmt);
	str_vprintf(&a->text, fmt, ap);
	va_end(ap);
}

void attempt_free(struct attempt *a)
{
	str_free(&a->text);
	str_free(&a->relay);
}

const char *runner_address_domain(const char *address)
{
	const char *at = strrchr(address, '@');
	return at != NULL ? at + 1 : "";
}

struct userdb *runner_users(struct runner *r)
{
	if (!r->users_tried) {
		struct str err = STR_INIT, path = STR_INIT;
		r->users_tried = true;
		r->users = userdb_open(r->cfg->state_dir, false, &err);
		str_printf(&path, "%s/%s", r->cfg->state_dir, USERDB_FILE);
		/* No users.tdb at all is a host without local domains. */
		if (r->users == NULL && access(str_c(&path), F_OK) == 0)
			log_msg(LOG_ERR, "%s", str_c(&err));
		str_free(&err);
		str_free(&path);
	}
	return r->users;
}

bool runner_domain_is_local(struct runner *r, const char *domain)
{
	struct userdb *db = domain[0] != '\0' ? runner_users(r) : NULL;
	return db != NULL && userdb_domain_exists(db, domain) == 1;
}

/* "5.1.1 mx[192.0.2.1] said: ...": the status leads every stored error,
 * so the DSN and `sockmailctl queue list` show the decision. */
static void runner_error_text(const struct attempt *a, struct str *out)
{
	size_t sl = strlen(a->status);
	if (strncmp(str_c(&a->text), a->status, sl) != 0 ||
	    (a->text.len > sl && a->text.data[sl] != ' ')) {
		str_append(out, a->status);
		str_append_c(out, ' ');
	}
	str_append(out, str_c(&a->text));
	if (out->len >= QUEUE_ERROR_MAX)
		str_truncate(out, QUEUE_ERROR_MAX - 1);
}

void runner_apply(struct runner_msg *m, struct attempt *att, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct attempt *a = &att[i];
		struct queue_rcpt *rc = &m->env.rcpts[a->index];
		struct str text = STR_INIT;
		const char *result;
		char count[16];
		runner_error_text(a, &text);
		rc->attempts++;
		free(rc->last_error);
		rc->last_error = xstrdup(str_c(&text));
		if (a->result == ATTEMPT_OK) {
			rc->state = RCPT_DELIVERED;
			result = "sent";
			m->r->delivered++;
		} else if (a->result == ATTEMPT_PERM) {
			rc->state = RCPT_FAILED;
			rc->dsn_sent = false;
			result = "bounced";
			m->r->bounced++;
		} else {
			rc->state = RCPT_PENDING;
			rc->next_try = m->now + runner_backoff(rc->attempts);
			result = "deferred";
			m->r->deferred++;
		}
		snprintf(count, sizeof count, "%u", rc->attempts);
		log_kv(a->result == ATTEMPT_OK ? LOG_INFO : LOG_NOTICE,
		       "delivery", "QUEUE_ID", m->env.id, "RCPT", rc->address,
		       "RELAY", a->relay.len ? str_c(&a->relay) : "none",
		       "STATUS", a->status, "RESULT", result,
		       "ATTEMPT", count, "TEXT", str_c(&text), NULL);
		str_free(&text);
	}
	if (n > 0)
		m->changed = true;
}

/* Write the envelope back if it changed.  Not when the message is done:
 * runner_finish removes it next, and storing first would only double
 * the fsyncs of the commonest case. */
static void runner_store(struct runner_msg *m)
{
	struct str err = STR_INIT;
	if (!m->changed || queue_envelope_done(&m->env))
		return;
	if (queue_store(m->r->cfg, &m->env, &err) != 0) {
		/* The results are lost: those recipients are retried, the
		 * delivered ones once more (logged above). */
		log_msg(LOG_ERR, "%s", str_c(&err));
		m->r->error = true;
	}
	m->changed = false;
	str_free(&err);
}

static bool runner_rcpt_due(const struct runner_msg *m, size_t i)
{
	const struct queue_rcpt *r = &m->env.rcpts[i];
	return r->state == RCPT_PENDING && r->next_try <= m->now;
}

static void attempts_free(struct attempt *att, size_t n)
{
	for (size_t i = 0; i < n; i++)
		attempt_free(&att[i]);
	free(att);
}

/* Local recipients first: what they resolve to may add remote ones. */
static void runner_local_step(struct runner_msg *m, bool *handled)
{
	size_t n = 0, total = m->env.n_rcpts;
	struct attempt *att = xcalloc(total, sizeof *att);
	for (size_t i = 0; i < total; i++) {
		struct queue_rcpt *r = &m->env.rcpts[i];
		if (!runner_rcpt_due(m, i))
			continue;
		if (!r->local && !runner_domain_is_local(
			    m->r, runner_address_domain(r->address)))
			continue;
		att[n].index = i;
		att[n].address = r->address;
		n++;
	}
	if (n > 0) {
		local_deliver(m, att, n);
		/* Undecided ones are remote now: not attempted yet. */
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			if (att[i].result == ATTEMPT_NONE) {
				attempt_free(&att[i]);
				continue;
			}
			handled[att[i].index] = true;
			att[k++] = att[i];
		}
		runner_apply(m, att, k);
		n = k;
	}
	runner_store(m);
	attempts_free(att, n);
}

/* Size with CRLF line ends, for SIZE= (RFC 1870). */
static void runner_wire_size(struct runner_msg *m)
{
	char *buf = xmalloc(MSG_READ_CHUNK);
	uint64_t lf = 0;
	off_t off = m->body_off;
	for (;;) {
		ssize_t n = pread(m->fd, buf, MSG_READ_CHUNK, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		const char *p = buf, *end = buf + n;
		while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
			lf++;
			p++;
		}
		off += n;
	}
	free(buf);
	m->crlf_size = (uint64_t)(off - m->body_off) + lf;
}

/* One domain's (or the relayhost's) due recipients, at most
 * RUNNER_RCPTS_PER_SESSION of them per session. */
static void runner_remote_group(struct runner_msg *m, bool *handled,
				const char *domain, bool relay)
{
	size_t total = m->env.n_rcpts;
	struct attempt *att = xcalloc(RUNNER_RCPTS_PER_SESSION, sizeof *att);
	size_t n = 0;
	for (size_t i = 0; i <= total; i++) {
		if (i < total && !handled[i] &&
		    (relay || strcasecmp(runner_address_domain(
				 m->env.rcpts[i].address), domain) == 0)) {
			handled[i] = true;
			att[n].index = i;
			att[n].address = m->env.rcpts[i].address;
			n++;
		}
		if (n == RUNNER_RCPTS_PER_SESSION || (i == total && n > 0)) {
			remote_deliver(m, att, n, relay ? NULL : domain);
			runner_apply(m, att, n);
			runner_store(m);
			for (size_t j = 0; j < n; j++)
				attempt_free(&att[j]);
			memset(att, 0, RUNNER_RCPTS_PER_SESSION * sizeof *att);
			n = 0;
		}
	}
	free(att);
}

static void runner_remote_step(struct runner_msg *m, bool *handled)
{
	size_t total = m->env.n_rcpts;
	bool relay = m->r->cfg->relayhost[0] != '\0';
	/* Not due, or decided: not this step's. */
	for (size_t i = 0; i < total; i++)
		if (!runner_rcpt_due(m, i))
			handled[i] = true;
	for (size_t i = 0; i < total; i++) {
		if (handled[i])
			continue;
		if (m->crlf_size == 0)
			runner_wire_size(m);
		char *domain = xstrdup(runner_address_domain(
			m->env.rcpts[i].address));
		addr_lowercase(domain);
		runner_remote_group(m, handled, domain, relay);
		free(domain);
	}
}

static const char *runner_postmaster(const struct config *cfg,
				     struct str *buf)
{
	if (cfg->postmaster[0] != '\0')
		return cfg->postmaster;
	str_printf(buf, "postmaster@%s", cfg->hostname);
	return str_c(buf);
}

static bool runner_has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* Queue a DSN about env->rcpts[idx[0..n)] to `to`, storing m->env (which
 * the caller has marked as reported) in the same transaction.  0, or -1
 * (logged) with nothing stored. */
static int runner_send_dsn(struct runner_msg *m, enum dsn_kind kind,
			   const size_t *idx, size_t n, const char *to,
			   bool postmaster_copy)
{
	const struct config *cfg = m->r->cfg;
	struct queue_envelope d;
	struct str headers = STR_INIT, text = STR_INIT, err = STR_INIT;
	struct mailfile f;
	int ret = -1;

	memset(&d, 0, sizeof d);
	queue_new_id(d.id);
	d.sender = xstrdup("");
	d.auth_user = xstrdup(postmaster_copy ? RUNNER_USER_POSTMASTER_COPY
					      : RUNNER_USER_DSN);
	d.rcpts = xcalloc(1, sizeof *d.rcpts);
	d.n_rcpts = 1;
	d.rcpts[0].address = xstrdup(to);
	d.rcpts[0].local = runner_domain_is_local(m->r,
						  runner_address_domain(to));
	if (dsn_read_headers(m->fd, DSN_HEADERS_MAX, &headers) < 0)
		log_msg(LOG_ERR, "%s: cannot read the message header: %s",
			m->env.id, strerror(errno));
	struct dsn_info info = {
		.kind = kind, .hostname = cfg->hostname, .to = to,
		.id = d.id, .now = m->now,
		.queue_lifetime = cfg->queue_lifetime,
		.postmaster_copy = postmaster_copy,
	};
	/* Like every spool file, it starts with its Return-Path. */
	str_append(&text, "Return-Path: <>\n");
	dsn_build(&info, &m->env, idx, n, str_c(&headers), headers.len, &text);
	d.body_8bit = runner_has_8bit(str_c(&text), text.len);
	d.smtputf8 = runner_has_8bit(to, strlen(to));

	if (queue_open_file(cfg, &f) != 0) {
		log_msg(LOG_ERR, "%s: cannot queue a DSN: %s", m->env.id,
			strerror(errno));
	} else {
		mailfile_write(&f, text.data, text.len);
		if (queue_commit_with(cfg, &f, &d, &m->env, &err) != 0)
			log_msg(LOG_ERR, "%s: cannot queue a DSN: %s",
				m->env.id, str_c(&err));
		else
			ret = 0;
		mailfile_close(&f);
	}
	if (ret == 0) {
		m->changed = false;	/* stored with the DSN */
		m->r->dsns++;
		log_kv(LOG_INFO, kind == DSN_FAILED ? "bounce queued"
						    : "delay warning queued",
		       "QUEUE_ID", m->env.id, "DSN_ID", d.id, "TO", to, NULL);
	} else {
		m->r->error = true;
	}
	queue_envelope_free(&d);
	str_free(&headers);
	str_free(&text);
	str_free(&err);
	return ret;
}

/* Pending recipients past queue_lifetime fail now. */
static void runner_expire(struct runner_msg *m)
{
	const struct config *cfg = m->r->cfg;
	if (m->env.arrival + (time_t)cfg->queue_lifetime > m->now)
		return;
	for (size_t i = 0; i < m->env.n_rcpts; i++) {
		struct queue_rcpt *r = &m->env.rcpts[i];
		if (r->state != RCPT_PENDING)
			continue;
		struct str t = STR_INIT;
		str_append(&t, "4.4.7 message expired: not delivered in ");
		str_printf(&t, "%u days", cfg->queue_lifetime / 86400);
		if (cfg->queue_lifetime % 86400 != 0)
			str_printf(&t, " %us", cfg->queue_lifetime % 86400);
		if (r->last_error != NULL)
			str_printf(&t, "; last error: %s", r->last_error);
		if (t.len >= QUEUE_ERROR_MAX)
			str_truncate(&t, QUEUE_ERROR_MAX - 1);
		free(r->last_error);
		r->last_error = xstrdup(str_c(&t));
		r->state = RCPT_FAILED;
		r->dsn_sent = false;
		m->r->bounced++;
		log_kv(LOG_NOTICE, "delivery", "QUEUE_ID", m->env.id,
		       "RCPT", r->address, "RELAY", "none", "STATUS", "4.4.7",
		       "RESULT", "expired", "TEXT", str_c(&t), NULL);
		str_free(&t);
		m->changed = true;
	}
}

/* Mark (or unmark) recipients as reported. */
static void runner_mark_reported(struct queue_envelope *env, const size_t *idx,
				 size_t n, bool sent)
{
	for (size_t i = 0; i < n; i++)
		env->rcpts[idx[i]].dsn_sent = sent;
}

/* Bounce the failed recipients not reported yet: to the sender; for mail
 * from <>, a postmaster copy; for a postmaster copy, nothing.  The marks
 * are set first because runner_send_dsn stores them with the DSN. */
static void runner_bounce(struct runner_msg *m)
{
	struct queue_envelope *env = &m->env;
	size_t *idx = xcalloc(env->n_rcpts, sizeof *idx);
	size_t n = 0;
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (env->rcpts[i].state == RCPT_FAILED &&
		    !env->rcpts[i].dsn_sent)
			idx[n++] = i;
	if (n == 0) {
		free(idx);
		return;
	}
	runner_mark_reported(env, idx, n, true);
	int ok = 0;
	if (env->sender[0] != '\0') {
		ok = runner_send_dsn(m, DSN_FAILED, idx, n, env->sender, false);
	} else if (env->auth_user != NULL &&
		   strcmp(env->auth_user, RUNNER_USER_POSTMASTER_COPY) == 0) {
		log_kv(LOG_WARNING, "undeliverable postmaster copy discarded",
		       "QUEUE_ID", env->id, NULL);
		m->changed = true;
	} else {
		struct str pm = STR_INIT;
		ok = runner_send_dsn(m, DSN_FAILED, idx, n,
				     runner_postmaster(m->r->cfg, &pm), true);
		str_free(&pm);
	}
	if (ok != 0)
		runner_mark_reported(env, idx, n, false);
	free(idx);
}

/* One "still trying" notice per message, after delay_warning. */
static void runner_delay_warning(struct runner_msg *m)
{
	const struct config *cfg = m->r->cfg;
	struct queue_envelope *env = &m->env;
	if (env->delay_warned || env->sender[0] == '\0' ||
	    cfg->delay_warning == 0 ||
	    env->arrival + (time_t)cfg->delay_warning > m->now)
		return;
	size_t *idx = xcalloc(env->n_rcpts, sizeof *idx);
	size_t n = 0;
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (env->rcpts[i].state == RCPT_PENDING)
			idx[n++] = i;
	if (n > 0) {
		env->delay_warned = true;	/* stored with the notice */
		if (runner_send_dsn(m, DSN_DELAYED, idx, n, env->sender,
				    false) != 0)
			env->delay_warned = false;
	}
	free(idx);
}

static void runner_finish(struct runner_msg *m)
{
	struct str err = STR_INIT;
	runner_expire(m);
	runner_bounce(m);
	runner_delay_warning(m);
	runner_store(m);
	if (queue_envelope_done(&m->env)) {
		if (queue_remove(m->r->cfg, m->env.id, &err) < 0) {
			log_msg(LOG_ERR, "%s", str_c(&err));
			m->r->error = true;
		} else {
			log_kv(LOG_INFO, "removed", "QUEUE_ID", m->env.id,
			       NULL);
		}
	}
	str_free(&err);
}

bool runner_process(struct runner *r, const char *id)
{
	struct runner_msg m = { .r = r, .fd = -1 };
	struct str err = STR_INIT;
	/* queue_lock's fd is the message file, open for reading. */
	m.fd = queue_lock(r->cfg, id);
	if (m.fd < 0) {
		bool busy = errno == EWOULDBLOCK || errno == ENOENT;
		if (!busy)
			log_msg(LOG_ERR, "cannot lock queued message %s: %s",
				id, strerror(errno));
		return busy;
	}
	int l = queue_load(r->cfg, id, &m.env, &err);
	bool ok = l >= 0;
	if (l < 0)
		log_msg(LOG_ERR, "%s", str_c(&err));
	m.now = queue_now();
	/* Under the lock, the record may differ from what the caller saw:
	 * another runner may have just tried it. */
	if (l == 0 && runner_due(r->cfg, &m.env) <= m.now) {
		m.body_off = runner_spool_body(m.fd);
		bool *handled = xcalloc(m.env.n_rcpts + RUNNER_MAX_RCPTS,
					sizeof *handled);
		runner_local_step(&m, handled);
		runner_remote_step(&m, handled);
		free(handled);
		runner_finish(&m);
	}
	if (l == 0)
		queue_envelope_free(&m.env);
	close(m.fd);
	str_free(&err);
	return ok;
}
