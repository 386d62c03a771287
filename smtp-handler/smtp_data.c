/*
 * smtp_data: the DATA phase of smtp-handler.  Reads the message up to the
 * one true end (CRLF "." CRLF), undoing dot-stuffing and storing LF line
 * ends; refuses bare CR or LF anywhere (the SMTP smuggling defence), lines
 * over 1000 octets, messages over message_size_limit and mail loops; then
 * delivers one fsynced copy into every recipient's Maildir before it says
 * 250.  Whatever goes wrong, the whole message is read to its end, so the
 * session stays in step with a pipelining client.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "maildate.h"
#include "maildir.h"
#include "smtp.h"

#define DATA_FROM_MAX 4096

static void data_flag(struct data_reader *d, enum data_problem p)
{
	if (d->problem == DATA_FINE)
		d->problem = p;
}

/* Check a chunk's line ends.  A chunk is a whole line through '\n', or the
 * first part of an overlong one (no '\n').  CR is allowed only right before
 * LF, and LF only right after CR.  Returns the length of the content to
 * store, without the CRLF. */
static size_t data_check_newlines(struct data_reader *d, const char *p,
				  size_t len, bool whole)
{
	if (d->pending_cr) {
		d->pending_cr = false;
		if (p[0] == '\n')
			return 0;	/* the "\n" of a split CRLF, alone */
		/* The CR was bare; this chunk is checked as any other (it
		 * may end in a CR of its own: found by fuzz_smtp_data, the
		 * end of data after it was missed). */
		data_flag(d, DATA_BARE_NEWLINE);
	}
	if (!whole) {
		size_t body = len;
		if (p[len - 1] == '\r') {
			d->pending_cr = true;
			body--;
		}
		if (memchr(p, '\r', body) != NULL)
			data_flag(d, DATA_BARE_NEWLINE);
		return body;
	}
	if (len < 2 || p[len - 2] != '\r') {
		data_flag(d, DATA_BARE_NEWLINE);
		return len - 1;
	}
	if (memchr(p, '\r', len - 2) != NULL)
		data_flag(d, DATA_BARE_NEWLINE);
	return len - 2;
}

static bool header_is(const char *p, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len > n && strncasecmp(p, name, n) == 0 && p[n] == ':';
}

/* The headers a submission must carry (RFC 6409 8): added at the end of
 * the header section when the client left them out. */
static void data_add_headers(struct smtp_session *s, struct data_reader *d)
{
	struct str h = STR_INIT;
	if (!d->seen_from)
		str_printf(&h, "From: <%s>\n", str_c(&s->sender));
	if (!d->seen_date) {
		str_append(&h, "Date: ");
		mail_date(time(NULL), &h);
		str_append(&h, "\n");
	}
	if (!d->seen_msgid)
		str_printf(&h, "Message-ID: <%s@%s>\n", s->queue_id,
			   s->cfg->hostname);
	if (d->problem == DATA_FINE)
		mailfile_write(d->file, h.data, h.len);
	str_free(&h);
	d->submission = false;	/* done */
}

/* Watch the header section: count Received: (loops), note Date:,
 * Message-ID: and From: (a submission's sender check needs From:). */
static void data_watch_headers(struct smtp_session *s, struct data_reader *d,
			       const char *p, size_t len)
{
	if (!d->in_headers || !d->at_line_start)
		return;
	if (len == 2 && p[0] == '\r') {
		d->in_headers = false;
		if (d->submission)
			data_add_headers(s, d);
		return;
	}
	if (d->in_from && (p[0] == ' ' || p[0] == '\t')) {
		if (d->from.len + len <= DATA_FROM_MAX)
			str_append_n(&d->from, p, len);
		return;
	}
	d->in_from = false;
	if (header_is(p, len, "Received")) {
		if (++d->received > SMTP_MAX_RECEIVED)
			data_flag(d, DATA_LOOP);
	} else if (header_is(p, len, "Date")) {
		d->seen_date = true;
	} else if (header_is(p, len, "Message-ID")) {
		d->seen_msgid = true;
	} else if (header_is(p, len, "From")) {
		d->seen_from = d->in_from = true;
		str_append_n(&d->from, p + 5, len - 5 < DATA_FROM_MAX
					       ? len - 5 : DATA_FROM_MAX);
	}
}

/* One chunk from the stream (see data_check_newlines); returns true at the
 * end of the data. */
static bool data_chunk(struct smtp_session *s, struct data_reader *d,
		       const char *p, size_t len, bool whole)
{
	bool line_start = d->at_line_start && !d->pending_cr;
	if (line_start && len == 3 && memcmp(p, ".\r\n", 3) == 0)
		return true;
	if (line_start && p[0] == '.') {	/* dot-stuffing */
		p++;
		len--;
	}
	data_watch_headers(s, d, p, len);
	d->size += len;
	if (d->size > s->cfg->message_size_limit)
		data_flag(d, DATA_TOO_BIG);
	if (!whole)
		data_flag(d, DATA_LONG_LINE);
	bool had_cr = d->pending_cr;
	size_t body = data_check_newlines(d, p, len, whole);
	/* A line starts only after CRLF: after a bare LF, "." CRLF is not the
	 * end of the data (SMTP smuggling).  A one-octet chunk is the LF of a
	 * CR that ended the previous (overlong) chunk; any longer one carries
	 * its own CR, even after a stray CR, so the end of data is found
	 * exactly where the client's CRLF "." CRLF is. */
	bool crlf = whole && (len >= 2 ? p[len - 2] == '\r' : had_cr);
	if (d->problem == DATA_FINE) {
		mailfile_write(d->file, p, body);
		if (whole)
			mailfile_write(d->file, "\n", 1);
	}
	d->at_line_start = crlf;
	return false;
}

bool smtp_data_read(struct smtp_session *s, struct data_reader *d)
{
	for (;;) {
		const char *line;
		size_t len;
		int r = stream_getline(&s->io, SMTP_TEXT_MAX, &line, &len);
		if (r == STREAM_TOOLONG) {
			data_chunk(s, d, line, len, false);
			continue;
		}
		if (r == STREAM_TIMEOUT) {
			smtp_reply(s, "421 4.4.2 %s Error: timeout exceeded",
				   s->cfg->hostname);
			return false;
		}
		if (r != STREAM_OK || line[len - 1] != '\n')
			return false;	/* EOF or error mid-DATA */
		if (data_chunk(s, d, line, len, true))
			return true;
	}
}

/* The client part of our Received: "from helo ([ip])", or for the sendmail
 * socket "from local (uid 1000)". */
static void data_received_from(struct smtp_session *s, struct str *h)
{
	if (s->mode == SMTP_MODE_LOCAL) {
		str_printf(h, "from local (uid %lu)", (unsigned long)s->local_uid);
		return;
	}
	str_append(h, "from ");
	for (const char *c = s->helo; *c; c++)	/* printable ASCII only */
		str_append_c(h, (*c > ' ' && *c < 0x7f) ? *c : '?');
	if (s->peer[0] != '\0')
		str_printf(h, " ([%s])", s->peer);
	if (s->tls != NULL)
		str_printf(h, "\n\t(using %s)", str_c(&s->tls_info));
}

/* The trace headers (RFC 5321 4.4): Return-Path and our Received. */
static void data_trace_headers(struct smtp_session *s, struct mailfile *f)
{
	struct str h = STR_INIT;
	str_printf(&h, "Return-Path: <%s>\nReceived: ", str_c(&s->sender));
	data_received_from(s, &h);
	/* RFC 3848 / 6531 protocol names: ESMTPS, ESMTPSA, UTF8SMTPA, ... */
	str_printf(&h, "\n\tby %s (sockmail) with %s%s%s id %s",
		   s->cfg->hostname,
		   s->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP",
		   s->tls ? "S" : "", s->auth_user ? "A" : "", s->queue_id);
	if (s->rcpts.n == 1)
		str_printf(&h, "\n\tfor <%s>", s->rcpts.items[0]);
	str_append(&h, "; ");
	mail_date(time(NULL), &h);
	str_append(&h, "\n");
	mailfile_write(f, h.data, h.len);
	str_free(&h);
}

/* Open the message file in the first recipient Maildir that lets us, else
 * in the queue (remote recipients only, or every Maildir failing: then the
 * local copies are retried by the queue runner). */
static bool data_open_file(struct smtp_session *s, struct mailfile *f)
{
	struct str path = STR_INIT;
	bool ok = false;
	for (size_t i = 0; i < s->mailboxes.n && !ok; i++) {
		str_clear(&path);
		maildir_path(s->cfg->mail_dir, s->mailboxes.items[i], &path);
		ok = mailfile_open(f, str_c(&path)) == 0;
		if (!ok)
			log_msg(LOG_ERR, "cannot write in %s/tmp: %s",
				str_c(&path), strerror(errno));
	}
	if (!ok) {
		ok = queue_open_file(s->cfg, f) == 0;
		if (!ok)
			log_msg(LOG_ERR, "cannot write in the queue: %s",
				strerror(errno));
	}
	str_free(&path);
	return ok;
}

static void envelope_add(struct queue_envelope *env, const char *address,
			 bool local)
{
	env->rcpts = xrealloc(env->rcpts, (env->n_rcpts + 1) *
						  sizeof *env->rcpts);
	env->rcpts[env->n_rcpts++] = (struct queue_rcpt){
		.address = xstrdup(address), .local = local,
	};
}

/* Queue the recipients the Maildirs could not take and the remote ones. */
static bool data_enqueue(struct smtp_session *s, struct mailfile *f,
			 const struct strlist *failed_local)
{
	struct queue_envelope env = { .smtputf8 = s->smtputf8,
				      .body_8bit = s->body_8bit,
				      .size = f->size };
	snprintf(env.id, sizeof env.id, "%s", s->queue_id);
	env.sender = xstrdup(str_c(&s->sender));
	if (s->auth_user != NULL) {
		env.auth_user = xstrdup(s->auth_user);
	} else if (s->mode == SMTP_MODE_LOCAL) {
		struct str u = STR_INIT;
		str_printf(&u, "uid:%lu", (unsigned long)s->local_uid);
		env.auth_user = xstrdup(str_c(&u));
		str_free(&u);
	}
	for (size_t i = 0; i < failed_local->n; i++)
		envelope_add(&env, failed_local->items[i], true);
	for (size_t i = 0; i < s->remote.n; i++)
		envelope_add(&env, s->remote.items[i], false);
	struct str err = STR_INIT;
	bool ok = queue_commit(s->cfg, f, &env, &err) == 0;
	if (!ok)
		log_msg(LOG_ERR, "cannot queue %s: %s", s->queue_id,
			err.len ? str_c(&err) : strerror(errno));
	str_free(&err);
	queue_envelope_free(&env);
	return ok;
}

/* Link the finished file into every Maildir; what a Maildir cannot take
 * and what goes elsewhere is queued.  If even the queue fails, the copies
 * made are taken back and the whole message is a temporary failure, so the
 * sender's retry neither loses nor duplicates anything. */
static bool data_deliver(struct smtp_session *s, struct mailfile *f)
{
	struct strlist done = STRLIST_INIT;	/* "maildir" then "name" */
	struct strlist failed = STRLIST_INIT;
	struct str path = STR_INIT, name = STR_INIT;
	bool ok = mailfile_finish(f) == 0;
	if (!ok)
		log_msg(LOG_ERR, "cannot write message %s: %s", s->queue_id,
			strerror(errno));
	for (size_t i = 0; ok && i < s->mailboxes.n; i++) {
		str_clear(&path);
		str_clear(&name);
		maildir_path(s->cfg->mail_dir, s->mailboxes.items[i], &path);
		if (mailfile_deliver(f, str_c(&path), &name) == 0) {
			strlist_add(&done, str_c(&path));
			strlist_add(&done, str_c(&name));
		} else {
			log_msg(LOG_WARNING, "cannot deliver %s to %s now, "
				"queued for retry: %s", s->queue_id,
				str_c(&path), strerror(errno));
			strlist_add(&failed, s->mailboxes.items[i]);
		}
	}
	if (ok && (failed.n > 0 || s->remote.n > 0))
		ok = data_enqueue(s, f, &failed);
	for (size_t i = 0; !ok && i + 1 < done.n; i += 2)
		maildir_undeliver(done.items[i], done.items[i + 1]);
	strlist_free(&done);
	strlist_free(&failed);
	str_free(&path);
	str_free(&name);
	return ok;
}

/* A submission's From: must name the user too (RFC 6409 does not require
 * it, but a server that checks only the envelope lets anyone sign as
 * anyone).  Every address in the field is checked. */
static bool data_from_owned(struct smtp_session *s, const char *from)
{
	struct strlist addrs = STRLIST_INIT;
	addr_header_list(from, &addrs);
	bool ok = addrs.n > 0;
	for (size_t i = 0; ok && i < addrs.n; i++)
		ok = smtp_sender_owned(s, addrs.items[i]);
	strlist_free(&addrs);
	return ok;
}

static void data_log(struct smtp_session *s, const struct data_reader *d,
		     const char *result)
{
	char size[24], nrcpt[16];
	snprintf(size, sizeof size, "%llu", (unsigned long long)d->size);
	snprintf(nrcpt, sizeof nrcpt, "%u", s->rcpt_count);
	log_kv(LOG_INFO, "message", "PEER", s->peer[0] ? s->peer : NULL,
	       "USER", s->auth_user, "QUEUE_ID", s->queue_id,
	       "FROM", str_c(&s->sender),
	       "RCPTS", nrcpt, "SIZE", size, "RESULT", result, NULL);
}

static void data_reply_problem(struct smtp_session *s, enum data_problem p)
{
	switch (p) {
	case DATA_TOO_BIG:
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		break;
	case DATA_BARE_NEWLINE:
		smtp_reply(s, "550 5.6.0 Bare CR or LF in message data not allowed");
		break;
	case DATA_LONG_LINE:
		smtp_reply(s, "550 5.6.0 Message has a line longer than 1000 octets");
		break;
	case DATA_LOOP:
		smtp_reply(s, "554 5.4.6 Too many Received headers: mail loop");
		break;
	case DATA_FROM_NOT_OWNED:
		smtp_reply(s, "553 5.7.1 From: header address not owned by user %s",
			   s->auth_user);
		break;
	default:
		smtp_reply(s, "451 4.3.0 Error: local delivery failed, try again later");
		break;
	}
}

static const char *const data_problem_names[] = {
	"ok", "too big", "bare newline", "long line", "loop", "write error",
	"From: not owned",
};

void smtp_data(struct smtp_session *s)
{
	struct mailfile f;
	if (!data_open_file(s, &f)) {
		smtp_reply(s, "451 4.3.0 Error: local delivery failed, try again later");
		return;
	}
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	struct data_reader d = {
		.file = &f, .at_line_start = true, .in_headers = true,
		.submission = s->mode != SMTP_MODE_MX,
	};
	data_trace_headers(s, &f);
	if (!smtp_data_read(s, &d)) {
		mailfile_close(&f);
		str_free(&d.from);
		data_log(s, &d, "lost connection in DATA");
		smtp_exit(s, "lost connection in DATA");
	}
	if (d.submission)	/* the data ended inside the header section */
		data_add_headers(s, &d);
	if (d.problem == DATA_FINE && s->mode == SMTP_MODE_SUBMISSION &&
	    d.seen_from && !data_from_owned(s, str_c(&d.from)))
		d.problem = DATA_FROM_NOT_OWNED;
	if (d.problem == DATA_FINE && !data_deliver(s, &f))
		d.problem = DATA_WRITE_ERROR;
	mailfile_close(&f);
	str_free(&d.from);
	data_log(s, &d, data_problem_names[d.problem]);
	if (d.problem != DATA_FINE) {
		data_reply_problem(s, d.problem);
		return;
	}
	s->messages++;
	smtp_reply(s, "250 2.0.0 Ok: queued as %s", s->queue_id);
}
