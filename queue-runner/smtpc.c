/*
 * smtpc: one SMTP client session of the queue runner (RFC 5321): connect
 * with a bounded timeout, greeting, EHLO (HELO when EHLO is refused),
 * STARTTLS (RFC 3207; opportunistic, or required for the relayhost),
 * AUTH PLAIN (RFC 4954) for the relayhost, then one mail transaction:
 * MAIL FROM with SIZE / BODY=8BITMIME / SMTPUTF8, the RCPTs, DATA -- all
 * in one flight with PIPELINING (RFC 2920) -- and the dot-stuffed message.
 *
 * Timeouts (RFC 5321 4.5.3.2): connect min(smtp_timeout, 30s) -- the RFC
 * has no connect figure and 5 minutes per address would stall a whole
 * run; every command reply smtp_timeout (300s default, the RFC's 5 min;
 * its 2 min for DATA initiation is not worth a separate knob); the reply
 * to the final "." twice smtp_timeout (the RFC's 10 min at the default),
 * since the server may be scanning the message.
 *
 * Results: a reply decides the recipients it concerns (2xx delivered, 4xx
 * later, 5xx failed); a session that breaks before that (no connection,
 * 421, a refused greeting, a timeout, garbage) leaves them undecided, so
 * the caller tries the next address.  After the final "." only a reply
 * decides; a connection lost while waiting for it leaves the accepted
 * recipients for a later retry (the one place a duplicate can happen, as
 * with every MTA: RFC 1047).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "log.h"
#include "runner.h"
#include "tls.h"

#define SMTPC_IBUF (SMTPC_LINE_MAX + 2)
#define SMTPC_READ_CHUNK 65536

struct smtpc {
	struct runner_msg *m;
	const struct config *cfg;
	const struct smtpc_target *t;
	int fd;
	struct stream io;
	bool io_ready;
	struct tls_conn *tls;
	struct smtpc_caps caps;
	bool abandon;		/* replies are out of step: close, no QUIT */
	struct smtpc_reply reply;
	struct str peer;	/* "mx.example.org[192.0.2.1]" for texts */
	struct str *error;	/* why the session failed (undecided ones) */
	char *status;
};

/* The session failed before deciding: say why (status and text). */
static void smtpc_fail(struct smtpc *c, const char *status, const char *fmt,
		       ...) __attribute__((format(printf, 3, 4)));
static void smtpc_fail(struct smtpc *c, const char *status, const char *fmt,
		       ...)
{
	va_list ap;
	str_clear(c->error);
	va_start(ap, fmt);
	str_vprintf(c->error, fmt, ap);
	va_end(ap);
	snprintf(c->status, DSN_STATUS_MAX, "%s", status);
}

/* A reply that was no success, as the session's failure. */
static void smtpc_fail_reply(struct smtpc *c, const char *stage)
{
	char st[DSN_STATUS_MAX];
	smtpc_reply_status(&c->reply, st);
	/* A 5xx here (greeting, EHLO, MAIL...) still means "try another
	 * host", so the recipients stay temporary: 4.x.x. */
	if (st[0] == '5')
		st[0] = '4';
	smtpc_fail(c, st, "%s said: %s (in reply to %s)", str_c(&c->peer),
		   str_c(&c->reply.text), stage);
}

/* A read that gave no reply: timeout, lost connection, garbage. */
static void smtpc_fail_read(struct smtpc *c, int r, const char *stage)
{
	c->abandon = true;	/* no QUIT into a dead or confused session */
	if (r == STREAM_TIMEOUT)
		smtpc_fail(c, "4.4.2", "conversation with %s timed out "
			   "while %s", str_c(&c->peer), stage);
	else if (r == SMTPC_PROTO)
		smtpc_fail(c, "4.5.0", "%s sent a malformed reply while %s",
			   str_c(&c->peer), stage);
	else
		smtpc_fail(c, "4.4.2", "lost connection with %s while %s",
			   str_c(&c->peer), stage);
}

static int smtpc_connect(struct smtpc *c)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof ss);
	if (c->t->addr->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)c->t->port);
		s6->sin6_addr = c->t->addr->u.v6;
		len = sizeof *s6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)c->t->port);
		s4->sin_addr = c->t->addr->u.v4;
		len = sizeof *s4;
	}
	c->fd = socket(c->t->addr->family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		goto fail;
	if (connect(c->fd, (struct sockaddr *)&ss, len) == 0)
		return 0;
	if (errno != EINPROGRESS)
		goto fail;
	unsigned timeout = c->cfg->smtp_timeout;
	if (timeout == 0 || timeout > RUNNER_CONNECT_TIMEOUT)
		timeout = RUNNER_CONNECT_TIMEOUT;
	struct pollfd p = { .fd = c->fd, .events = POLLOUT };
	int n;
	do
		n = poll(&p, 1, (int)timeout * 1000);
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		errno = ETIMEDOUT;
		goto fail;
	}
	int soerr = 0;
	socklen_t sl = sizeof soerr;
	if (n < 0 || getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		goto fail;
	if (soerr == 0)
		return 0;
	errno = soerr;
fail:;
	int e = errno;
	smtpc_fail(c, "4.4.1", "connect to %s:%u: %s", str_c(&c->peer),
		   c->t->port, strerror(e));
	return -1;
}

/* Send one command line and read its reply.  0, or a read failure. */
static int smtpc_command(struct smtpc *c, const char *stage,
			 const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int smtpc_command(struct smtpc *c, const char *stage,
			 const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	stream_vline(&c->io, fmt, ap);
	va_end(ap);
	int r = smtpc_reply_read(&c->io, &c->reply);
	if (r != 0)
		smtpc_fail_read(c, r, stage);
	return r;
}

/* EHLO, or HELO when the server refuses EHLO permanently. */
static bool smtpc_hello(struct smtpc *c)
{
	if (smtpc_command(c, "sending EHLO", "EHLO %s", c->cfg->hostname) != 0)
		return false;
	if (c->reply.code / 100 == 2) {
		smtpc_caps_parse(&c->reply, &c->caps);
		return true;
	}
	if (c->reply.code / 100 != 5 || c->reply.code == 421) {
		smtpc_fail_reply(c, "EHLO command");
		return false;
	}
	memset(&c->caps, 0, sizeof c->caps);
	if (smtpc_command(c, "sending HELO", "HELO %s", c->cfg->hostname) != 0)
		return false;
	if (c->reply.code / 100 != 2) {
		smtpc_fail_reply(c, "HELO command");
		return false;
	}
	return true;
}

/* STARTTLS and the handshake.  Returns SMTPC_DONE to go on (with or
 * without TLS), SMTPC_NEXT or SMTPC_TLS_FAILED. */
static enum smtpc_outcome smtpc_starttls(struct smtpc *c)
{
	if (!c->caps.starttls || !c->t->try_tls) {
		if (!c->t->require_tls)
			return SMTPC_DONE;
		smtpc_fail(c, "4.7.4", "%s does not offer STARTTLS, which "
			   "the relayhost must", str_c(&c->peer));
		return SMTPC_NEXT;
	}
	if (smtpc_command(c, "sending STARTTLS", "STARTTLS") != 0)
		return SMTPC_NEXT;
	if (c->reply.code / 100 != 2) {
		if (!c->t->require_tls && c->reply.code != 421)
			return SMTPC_DONE;	/* opportunistic: carry on */
		smtpc_fail_reply(c, "STARTTLS command");
		return SMTPC_NEXT;
	}
	/* Anything the server sent after its 220 came in plaintext and
	 * must not be read as if it came through TLS. */
	stream_discard_input(&c->io);
	struct str why = STR_INIT;
	unsigned char ip[sizeof(struct in6_addr)];
	bool named = c->t->host[0] != '\0' &&
		     inet_pton(AF_INET, c->t->host, ip) != 1 &&
		     inet_pton(AF_INET6, c->t->host, ip) != 1;
	c->tls = tls_client_start(c->cfg, c->fd, named ? c->t->host : NULL,
				  c->cfg->smtp_timeout, &why);
	if (c->tls == NULL) {
		smtpc_fail(c, "4.7.5", "TLS handshake with %s failed: %s",
			   str_c(&c->peer), str_c(&why));
		str_free(&why);
		c->abandon = true;
		return c->t->require_tls ? SMTPC_NEXT : SMTPC_TLS_FAILED;
	}
	str_free(&why);
	stream_set_transport(&c->io, tls_conn_transport(c->tls));
	/* RFC 3207 4.2: forget what was learnt before, and ask again. */
	if (!smtpc_hello(c))
		return SMTPC_NEXT;
	return SMTPC_DONE;
}

/* AUTH PLAIN with the relayhost credentials (RFC 4954, RFC 4616). */
static bool smtpc_auth(struct smtpc *c)
{
	if (c->t->auth_user == NULL)
		return true;
	if (!c->caps.auth_plain) {
		smtpc_fail(c, "4.7.0", "%s does not offer AUTH PLAIN",
			   str_c(&c->peer));
		return false;
	}
	struct str msg = STR_INIT, b64 = STR_INIT;
	str_append_c(&msg, '\0');
	str_append(&msg, c->t->auth_user);
	str_append_c(&msg, '\0');
	str_append(&msg, c->t->auth_pass);
	base64_encode(msg.data, msg.len, &b64);
	str_free_secret(&msg);
	stream_write(&c->io, "AUTH PLAIN ", 11);
	stream_write(&c->io, b64.data, b64.len);
	stream_write(&c->io, "\r\n", 2);
	str_free_secret(&b64);
	int r = smtpc_reply_read(&c->io, &c->reply);
	if (r != 0) {
		smtpc_fail_read(c, r, "authenticating");
		return false;
	}
	if (c->reply.code / 100 != 2) {
		/* Credentials the relay refuses are our configuration's
		 * fault: the mail waits for a fix (4.7.x), never bounces. */
		smtpc_fail_reply(c, "AUTH command");
		return false;
	}
	return true;
}

/* Decide every undecided attempt at once (a limit the server announced,
 * a reply to MAIL FROM ...). */
static void smtpc_decide_all(struct smtpc *c, struct attempt *att, size_t n,
			     enum attempt_result res, const char *status,
			     const char *text)
{
	for (size_t i = 0; i < n; i++) {
		if (att[i].result != ATTEMPT_NONE)
			continue;
		attempt_set(&att[i], res, status, "%s", text);
		str_clear(&att[i].relay);
		str_append(&att[i].relay, str_c(&c->peer));
		str_printf(&att[i].relay, ":%u", c->t->port);
	}
}

/* Decide one attempt from the current reply. */
static void smtpc_decide_reply(struct smtpc *c, struct attempt *a,
			       const char *stage)
{
	char st[DSN_STATUS_MAX];
	int cls = c->reply.code / 100;
	smtpc_reply_status(&c->reply, st);
	enum attempt_result res = cls == 2 ? ATTEMPT_OK
				  : cls == 5 ? ATTEMPT_PERM : ATTEMPT_TEMP;
	attempt_set(a, res, st, "%s said: %s (in reply to %s)",
		    str_c(&c->peer), str_c(&c->reply.text), stage);
	str_clear(&a->relay);
	str_printf(&a->relay, "%s:%u", str_c(&c->peer), c->t->port);
}

/* What the server announced forbids this message: decide them all. */
static bool smtpc_check_limits(struct smtpc *c, struct attempt *att,
			       size_t n)
{
	const struct queue_envelope *env = &c->m->env;
	struct str why = STR_INIT;
	const char *status = NULL;
	if (env->body_8bit && !c->caps.eightbitmime) {
		status = "5.6.3";
		str_printf(&why, "%s does not support 8BITMIME, which "
			   "the message needs", str_c(&c->peer));
	} else if (env->smtputf8 && !c->caps.smtputf8) {
		status = "5.6.7";
		str_printf(&why, "%s does not support SMTPUTF8, which "
			   "the message needs", str_c(&c->peer));
	} else if (c->caps.size_max > 0 && c->m->crlf_size > c->caps.size_max) {
		status = "5.3.4";
		str_printf(&why, "message size %llu exceeds the size "
			   "limit %llu of %s",
			   (unsigned long long)c->m->crlf_size,
			   (unsigned long long)c->caps.size_max,
			   str_c(&c->peer));
	}
	if (status != NULL)
		smtpc_decide_all(c, att, n, ATTEMPT_PERM, status, str_c(&why));
	str_free(&why);
	return status == NULL;
}

static void smtpc_send_line(struct smtpc *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void smtpc_send_line(struct smtpc *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	stream_vline(&c->io, fmt, ap);
	va_end(ap);
}

static void smtpc_send_mail(struct smtpc *c)
{
	const struct queue_envelope *env = &c->m->env;
	struct str line = STR_INIT;
	str_printf(&line, "MAIL FROM:<%s>", env->sender);
	if (c->caps.size)
		str_printf(&line, " SIZE=%llu",
			   (unsigned long long)c->m->crlf_size);
	if (env->body_8bit)
		str_append(&line, " BODY=8BITMIME");
	if (env->smtputf8)
		str_append(&line, " SMTPUTF8");
	smtpc_send_line(c, "%s", str_c(&line));
	str_free(&line);
}

/* The message, dot-stuffed, and the final ".".  -1 if the spool file
 * could not be read (the caller drops the connection: no "." sent). */
static int smtpc_send_message(struct smtpc *c)
{
	char *buf = xmalloc(SMTPC_READ_CHUNK);
	struct str out = STR_INIT;
	struct dotstuff d;
	off_t off = c->m->body_off;	/* the Return-Path is not relayed */
	int ret = 0;
	dotstuff_init(&d);
	for (;;) {
		ssize_t n = pread(c->m->fd, buf, SMTPC_READ_CHUNK, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -1;
			break;
		}
		if (n == 0)
			break;
		off += n;
		str_clear(&out);
		dotstuff_feed(&d, buf, (size_t)n, &out);
		stream_write(&c->io, out.data, out.len);
		if (c->io.status != STREAM_OK)
			break;
	}
	if (ret == 0) {
		str_clear(&out);
		dotstuff_end(&d, &out);
		stream_write(&c->io, out.data, out.len);
	}
	free(buf);
	str_free(&out);
	return ret;
}

/* Recipients accepted but the transaction did not complete: they are
 * undecided again (another host may take them). */
static void smtpc_unaccept(struct attempt *att, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (att[i].accepted) {
			att[i].result = ATTEMPT_NONE;
			str_clear(&att[i].text);
		}
		att[i].accepted = false;
	}
}

/* After DATA's reply: the message and the final reply.  Returns false
 * when the session broke before the message was complete. */
static bool smtpc_data(struct smtpc *c, struct attempt *att, size_t n,
		       size_t accepted)
{
	if (c->reply.code != 354) {
		if (accepted == 0)
			return true;
		if (c->reply.code == 421 || c->reply.code / 100 < 4) {
			smtpc_fail_reply(c, "DATA command");
			smtpc_unaccept(att, n);
			return false;
		}
		for (size_t i = 0; i < n; i++)
			if (att[i].accepted)
				smtpc_decide_reply(c, &att[i], "DATA command");
		return true;
	}
	if (accepted == 0) {
		/* RFC 2920 3.1: a pipelined DATA that got 354 although no
		 * recipient was taken is ended with an empty message. */
		smtpc_send_line(c, ".");
		(void)smtpc_reply_read(&c->io, &c->reply);
		return true;
	}
	if (smtpc_send_message(c) < 0) {
		/* The fault is ours, not the host's: no next host.  The
		 * connection is dropped without the final ".", so nothing
		 * is delivered. */
		int e = errno;
		smtpc_unaccept(att, n);
		struct str t = STR_INIT;
		str_printf(&t, "cannot read the queued message: %s",
			   strerror(e));
		smtpc_decide_all(c, att, n, ATTEMPT_TEMP, "4.3.0", str_c(&t));
		str_free(&t);
		c->abandon = true;
		return true;
	}
	if (c->io.status != STREAM_OK) {
		/* Cut off while sending: the final "." never went out, so
		 * nothing was delivered and another host may take it. */
		smtpc_fail_read(c, c->io.status, "sending the message");
		smtpc_unaccept(att, n);
		return false;
	}
	unsigned saved = c->io.timeout;
	c->io.timeout = c->cfg->smtp_timeout * 2;
	int r = smtpc_reply_read(&c->io, &c->reply);
	c->io.timeout = saved;
	if (r != 0) {
		/* The server may have taken it: retry later, not elsewhere
		 * now, so at most one duplicate can come of it. */
		smtpc_fail_read(c, r, "waiting for the reply to end of DATA");
		for (size_t i = 0; i < n; i++)
			if (att[i].accepted)
				attempt_set(&att[i], ATTEMPT_TEMP, c->status,
					    "%s", str_c(c->error));
		c->abandon = true;
		return true;
	}
	for (size_t i = 0; i < n; i++)
		if (att[i].accepted)
			smtpc_decide_reply(c, &att[i], "end of DATA command");
	return true;
}

/* The reply to MAIL FROM.  True to go on with the recipients. */
static bool smtpc_mail_reply(struct smtpc *c, struct attempt *att, size_t n,
			     bool *done)
{
	int r = smtpc_reply_read(&c->io, &c->reply);
	*done = false;
	if (r != 0) {
		smtpc_fail_read(c, r, "sending MAIL FROM");
		return false;
	}
	if (c->reply.code / 100 == 2)
		return true;
	/* With PIPELINING the replies to the RCPTs and DATA are still
	 * due: the session cannot go on in step, so it is dropped. */
	c->abandon = c->caps.pipelining;
	if (c->reply.code / 100 == 5) {
		char st[DSN_STATUS_MAX];
		struct str t = STR_INIT;
		smtpc_reply_status(&c->reply, st);
		str_printf(&t, "%s said: %s (in reply to MAIL FROM command)",
			   str_c(&c->peer), str_c(&c->reply.text));
		smtpc_decide_all(c, att, n, ATTEMPT_PERM, st, str_c(&t));
		str_free(&t);
		*done = true;
	} else {
		smtpc_fail_reply(c, "MAIL FROM command");	/* next MX */
	}
	return false;
}

/* The mail transaction.  True when it ran to its end (every attempt is
 * decided), false when the session broke (the caller tries elsewhere). */
static bool smtpc_transaction(struct smtpc *c, struct attempt *att, size_t n)
{
	if (!smtpc_check_limits(c, att, n))
		return true;
	bool pipelined = c->caps.pipelining, done;
	size_t accepted = 0;

	smtpc_send_mail(c);
	if (pipelined) {
		for (size_t i = 0; i < n; i++)
			smtpc_send_line(c, "RCPT TO:<%s>", att[i].address);
		smtpc_send_line(c, "DATA");
	}
	if (!smtpc_mail_reply(c, att, n, &done))
		return done;
	for (size_t i = 0; i < n; i++) {
		if (!pipelined)
			smtpc_send_line(c, "RCPT TO:<%s>", att[i].address);
		int r = smtpc_reply_read(&c->io, &c->reply);
		if (r != 0 || c->reply.code == 421) {
			if (r != 0)
				smtpc_fail_read(c, r, "sending RCPT TO");
			else
				smtpc_fail_reply(c, "RCPT TO command");
			smtpc_unaccept(att, n);
			return false;
		}
		smtpc_decide_reply(c, &att[i], "RCPT TO command");
		if (att[i].result == ATTEMPT_OK) {
			/* Accepted is not delivered: DATA decides. */
			att[i].accepted = true;
			att[i].result = ATTEMPT_NONE;
			accepted++;
		}
	}
	if (!pipelined && accepted == 0)
		return true;
	if (!pipelined)
		smtpc_send_line(c, "DATA");
	int r = smtpc_reply_read(&c->io, &c->reply);
	if (r != 0) {
		smtpc_fail_read(c, r, "sending DATA");
		smtpc_unaccept(att, n);
		return false;
	}
	return smtpc_data(c, att, n, accepted);
}

static void smtpc_quit(struct smtpc *c)
{
	if (!c->io_ready || c->io.status != STREAM_OK || c->abandon)
		return;
	unsigned saved = c->io.timeout;
	c->io.timeout = c->cfg->smtp_timeout < 10 ? c->cfg->smtp_timeout : 10;
	smtpc_send_line(c, "QUIT");
	(void)smtpc_reply_read(&c->io, &c->reply);
	c->io.timeout = saved;
}

static void smtpc_close(struct smtpc *c)
{
	if (c->tls != NULL)
		tls_conn_close(c->tls);
	if (c->io_ready)
		stream_free(&c->io);
	if (c->fd >= 0)
		close(c->fd);
	smtpc_reply_free(&c->reply);
	str_free(&c->peer);
}

/* The session up to the transaction: greeting, EHLO, TLS, AUTH. */
static enum smtpc_outcome smtpc_open(struct smtpc *c)
{
	if (smtpc_connect(c) < 0)
		return SMTPC_NEXT;
	stream_init(&c->io, c->fd, c->fd, c->cfg->smtp_timeout, SMTPC_IBUF);
	c->io_ready = true;
	int r = smtpc_reply_read(&c->io, &c->reply);
	if (r != 0) {
		smtpc_fail_read(c, r, "receiving the initial greeting");
		return SMTPC_NEXT;
	}
	if (c->reply.code / 100 != 2) {
		char st[DSN_STATUS_MAX];
		smtpc_reply_status(&c->reply, st);
		st[0] = '4';
		smtpc_fail(c, st, "%s refused to talk to me: %s",
			   str_c(&c->peer), str_c(&c->reply.text));
		return SMTPC_NEXT;
	}
	if (!smtpc_hello(c))
		return SMTPC_NEXT;
	enum smtpc_outcome o = smtpc_starttls(c);
	if (o != SMTPC_DONE)
		return o;
	if (!smtpc_auth(c))
		return SMTPC_NEXT;
	return SMTPC_DONE;
}

enum smtpc_outcome smtpc_deliver(struct runner_msg *m,
				 const struct smtpc_target *t,
				 struct attempt *att, size_t n,
				 struct str *error,
				 char status[DSN_STATUS_MAX])
{
	struct smtpc c = {
		.m = m, .cfg = m->r->cfg, .t = t, .fd = -1,
		.error = error, .status = status,
	};
	str_append(&c.peer, t->host);
	str_append_c(&c.peer, '[');
	dns_addr_format(t->addr, &c.peer);
	str_append_c(&c.peer, ']');
	for (size_t i = 0; i < n; i++)
		att[i].accepted = false;

	enum smtpc_outcome o = smtpc_open(&c);
	if (o == SMTPC_DONE) {
		if (!smtpc_transaction(&c, att, n)) {
			o = SMTPC_NEXT;
		} else if (c.tls != NULL) {
			struct str desc = STR_INIT;
			tls_conn_describe(c.tls, &desc);
			log_kv(LOG_INFO, "tls session", "QUEUE_ID", m->env.id,
			       "RELAY", str_c(&c.peer), "TLS", str_c(&desc),
			       "VERIFIED",
			       tls_conn_verified(c.tls) ? "yes" : "no", NULL);
			str_free(&desc);
		}
	}
	smtpc_quit(&c);
	/* Whatever stayed undecided is the next address's, unless the
	 * session has nothing left to say about it. */
	bool undecided = false;
	for (size_t i = 0; i < n; i++)
		undecided |= att[i].result == ATTEMPT_NONE;
	if (o == SMTPC_DONE && undecided)
		o = SMTPC_NEXT;
	smtpc_close(&c);
	return o;
}
