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
#include "maildir.h"
#include "smtp.h"

enum data_problem {
	DATA_FINE,
	DATA_TOO_BIG,
	DATA_BARE_NEWLINE,
	DATA_LONG_LINE,
	DATA_LOOP,
	DATA_WRITE_ERROR,
};

struct data_reader {
	struct mailfile *file;
	uint64_t size;		/* message size as sent, CRLF = 2 */
	enum data_problem problem;
	bool at_line_start;	/* the next chunk begins a line */
	bool pending_cr;	/* previous chunk ended in CR */
	bool in_headers;
	unsigned received;	/* Received: headers seen */
};

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
		if (p[0] != '\n')
			data_flag(d, DATA_BARE_NEWLINE);
		return 0;	/* this chunk is the "\n" of a split CRLF */
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

static void data_watch_headers(struct data_reader *d, const char *p,
			       size_t len)
{
	if (!d->in_headers || !d->at_line_start)
		return;
	if (len == 2 && p[0] == '\r') {
		d->in_headers = false;
	} else if (len >= 9 && strncasecmp(p, "Received:", 9) == 0) {
		if (++d->received > SMTP_MAX_RECEIVED)
			data_flag(d, DATA_LOOP);
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
	data_watch_headers(d, p, len);
	d->size += len;
	if (d->size > s->cfg->message_size_limit)
		data_flag(d, DATA_TOO_BIG);
	if (!whole)
		data_flag(d, DATA_LONG_LINE);
	bool had_cr = d->pending_cr;
	size_t body = data_check_newlines(d, p, len, whole);
	/* A line starts only after CRLF: after a bare LF, "." CRLF is not the
	 * end of the data (SMTP smuggling). */
	bool crlf = whole && (had_cr ? p[0] == '\n'
				     : len >= 2 && p[len - 2] == '\r');
	if (d->problem == DATA_FINE) {
		mailfile_write(d->file, p, body);
		if (whole)
			mailfile_write(d->file, "\n", 1);
	}
	d->at_line_start = crlf;
	return false;
}

/* Read to the end of data.  Returns false if the client is gone. */
static bool data_read(struct smtp_session *s, struct data_reader *d)
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

/* The trace headers (RFC 5321 4.4): Return-Path and our Received. */
static void data_trace_headers(struct smtp_session *s, struct mailfile *f)
{
	struct str h = STR_INIT;
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);

	str_printf(&h, "Return-Path: <%s>\nReceived: from ", str_c(&s->sender));
	for (const char *c = s->helo; *c; c++)	/* printable ASCII only */
		str_append_c(&h, (*c > ' ' && *c < 0x7f) ? *c : '?');
	if (s->peer[0] != '\0')
		str_printf(&h, " ([%s])", s->peer);
	if (s->tls != NULL)
		str_printf(&h, "\n\t(using %s)", str_c(&s->tls_info));
	/* RFC 3848 / 6531 protocol names: ESMTPS, ESMTPSA, UTF8SMTPA, ... */
	str_printf(&h, "\n\tby %s (sockmail) with %s%s%s id %s",
		   s->cfg->hostname,
		   s->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP",
		   s->tls ? "S" : "", s->auth_user ? "A" : "", s->queue_id);
	if (s->rcpts.n == 1)
		str_printf(&h, "\n\tfor <%s>", s->rcpts.items[0]);
	str_printf(&h, "; %s\n", date);
	mailfile_write(f, h.data, h.len);
	str_free(&h);
}

/* Open the message file in the first recipient Maildir that lets us. */
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
	str_free(&path);
	return ok;
}

/* Link the finished file into every Maildir; all or none. */
static bool data_deliver(struct smtp_session *s, struct mailfile *f)
{
	struct strlist done = STRLIST_INIT;	/* "maildir" then "name" */
	struct str path = STR_INIT, name = STR_INIT;
	bool ok = mailfile_finish(f) == 0;
	if (!ok)
		log_msg(LOG_ERR, "cannot write message %s: %s", s->queue_id,
			strerror(errno));
	for (size_t i = 0; ok && i < s->mailboxes.n; i++) {
		str_clear(&path);
		str_clear(&name);
		maildir_path(s->cfg->mail_dir, s->mailboxes.items[i], &path);
		ok = mailfile_deliver(f, str_c(&path), &name) == 0;
		if (ok) {
			strlist_add(&done, str_c(&path));
			strlist_add(&done, str_c(&name));
		} else {
			log_msg(LOG_ERR, "cannot deliver %s to %s: %s",
				s->queue_id, str_c(&path), strerror(errno));
		}
	}
	/* Until the outbound queue exists, a copy that cannot be written
	 * makes the whole message a temporary failure: take back the copies
	 * already made, so the sender's retry duplicates nothing. */
	for (size_t i = 0; !ok && i + 1 < done.n; i += 2)
		maildir_undeliver(done.items[i], done.items[i + 1]);
	strlist_free(&done);
	str_free(&path);
	str_free(&name);
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
	default:
		smtp_reply(s, "451 4.3.0 Error: local delivery failed, try again later");
		break;
	}
}

static const char *const data_problem_names[] = {
	"ok", "too big", "bare newline", "long line", "loop", "write error",
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
	};
	data_trace_headers(s, &f);
	if (!data_read(s, &d)) {
		mailfile_close(&f);
		data_log(s, &d, "lost connection in DATA");
		smtp_exit(s, "lost connection in DATA");
	}
	if (d.problem == DATA_FINE && !data_deliver(s, &f))
		d.problem = DATA_WRITE_ERROR;
	mailfile_close(&f);
	data_log(s, &d, data_problem_names[d.problem]);
	if (d.problem != DATA_FINE) {
		data_reply_problem(s, d.problem);
		return;
	}
	s->messages++;
	smtp_reply(s, "250 2.0.0 Ok: queued as %s", s->queue_id);
}
