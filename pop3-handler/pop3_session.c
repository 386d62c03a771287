/*
 * pop3_session: the POP3 command loop of pop3-handler (RFC 1939 with the
 * CAPA extension of RFC 2449 and STLS of RFC 2595): greeting, reading and
 * bounding command lines, dispatch by state, CAPA, STLS, QUIT in the
 * AUTHORIZATION state, the bad-command limit and the session's one log
 * line.  Logins are in pop3_auth.c, the maildrop commands in
 * pop3_maildrop.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "pop3.h"

static void pop3_vreply(struct pop3_session *s, const char *status,
			const char *fmt, va_list ap)
{
	struct str line = STR_INIT;
	str_append(&line, status);
	str_vprintf(&line, fmt, ap);
	if (line.len == strlen(status))	/* no text: "+OK" alone */
		str_truncate(&line, line.len - 1);
	str_append(&line, "\r\n");
	stream_write(&s->io, line.data, line.len);
	str_free(&line);
}

void pop3_ok(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pop3_vreply(s, "+OK ", fmt, ap);
	va_end(ap);
}

void pop3_err_nocount(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pop3_vreply(s, "-ERR ", fmt, ap);
	va_end(ap);
}

/* One reply per command, so the error that reaches the limit is answered
 * with the limit's own text, and the connection closes. */
void pop3_err(struct pop3_session *s, const char *fmt, ...)
{
	if (++s->errors >= s->cfg->max_bad_commands) {
		pop3_err_nocount(s, "Too many bad commands, closing connection");
		pop3_exit(s, "too many errors");
	}
	va_list ap;
	va_start(ap, fmt);
	pop3_vreply(s, "-ERR ", fmt, ap);
	va_end(ap);
}

/* Lines of multi-line replies (CAPA, LIST, UIDL, AUTH): none of them can
 * start with '.', so no stuffing is needed here. */
void pop3_line(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	stream_vline(&s->io, fmt, ap);
	va_end(ap);
}

void pop3_end(struct pop3_session *s)
{
	stream_write(&s->io, ".\r\n", 3);
}

void pop3_exit(struct pop3_session *s, const char *result)
{
	stream_flush(&s->io);
	char retr[16], top[16], dele[16];
	snprintf(retr, sizeof retr, "%u", s->retrieved);
	snprintf(top, sizeof top, "%u", s->tops);
	snprintf(dele, sizeof dele, "%u", s->deleted);
	log_kv(LOG_INFO, "session end", "PEER", s->peer[0] ? s->peer : NULL,
	       "USER", s->auth_user, "TLS", s->tls ? str_c(&s->tls_info) : NULL,
	       "RETR", retr, "TOP", top, "DELE", dele, "RESULT", result, NULL);
	if (s->tls != NULL)
		tls_conn_close(s->tls);
	/* Free everything, so that LeakSanitizer sees a clean exit and a
	 * real leak stands out. */
	pop3_maildrop_close(s);
	str_free(&s->maildir);
	str_free(&s->tls_info);
	free(s->user_arg);
	free(s->auth_user);
	if (s->users != NULL)
		userdb_close(s->users);
	stream_free(&s->io);
	config_free((struct config *)s->cfg);
	exit(0);
}

void pop3_start_tls(struct pop3_session *s)
{
	struct str err = STR_INIT;
	s->tls = tls_server_start(s->cfg, 0, 1, s->timeout, &err);
	if (s->tls == NULL) {
		log_kv(LOG_NOTICE, "TLS handshake failed", "PEER",
		       s->peer[0] ? s->peer : NULL, "ERROR", str_c(&err), NULL);
		str_free(&err);
		s->io.status = STREAM_ERROR;	/* nothing more can be said */
		pop3_exit(s, "TLS handshake failed");
	}
	stream_set_transport(&s->io, tls_conn_transport(s->tls));
	tls_conn_describe(s->tls, &s->tls_info);
}

/* RFC 2449 5; USER and SASL only where they would be accepted. */
static void cmd_capa(struct pop3_session *s)
{
	bool authz = s->state == POP3_AUTHORIZATION;
	pop3_ok(s, "Capability list follows");
	pop3_line(s, "TOP");
	pop3_line(s, "UIDL");
	if (authz && pop3_auth_allowed(s)) {
		pop3_line(s, "USER");
		pop3_line(s, "SASL PLAIN");
	}
	if (authz && s->tls == NULL && tls_configured(s->cfg))
		pop3_line(s, "STLS");
	pop3_line(s, "RESP-CODES");
	pop3_line(s, "AUTH-RESP-CODE");
	pop3_line(s, "PIPELINING");
	pop3_line(s, "EXPIRE NEVER");
	pop3_line(s, "IMPLEMENTATION sockmail");
	pop3_end(s);
}

/* RFC 2595 4.  Whatever the client sent after STLS in plaintext is
 * dropped, never executed inside TLS, and what USER said is forgotten. */
static void cmd_stls(struct pop3_session *s)
{
	if (s->tls != NULL) {
		pop3_err(s, "TLS is already active");
		return;
	}
	if (!tls_configured(s->cfg)) {
		pop3_err(s, "TLS is not available");
		return;
	}
	pop3_ok(s, "Begin TLS negotiation now");
	if (stream_flush(&s->io) != STREAM_OK)
		pop3_exit(s, "lost connection");
	stream_discard_input(&s->io);
	pop3_start_tls(s);
	free(s->user_arg);
	s->user_arg = NULL;
}

static void parse_error(struct pop3_session *s, enum pop3_parse r,
			const struct pop3_command *c)
{
	switch (r) {
	case POP3_PARSE_EMPTY:
		pop3_err(s, "Empty command");
		break;
	case POP3_PARSE_UNKNOWN:
		pop3_err(s, "Unknown command");
		break;
	case POP3_PARSE_NUMBER:
		if (c->verb != POP3_TOP)
			pop3_err(s, "Invalid message number");
		else
			pop3_err(s, "Syntax: %s", pop3_verb_usage(c->verb));
		break;
	default:
		pop3_err(s, "Syntax: %s", pop3_verb_usage(c->verb));
		break;
	}
}

static void authorization(struct pop3_session *s, const struct pop3_command *c)
{
	switch (c->verb) {
	case POP3_USER:
		pop3_cmd_user(s, c);
		break;
	case POP3_PASS:
		pop3_cmd_pass(s, c);
		break;
	case POP3_AUTH:
		pop3_cmd_auth(s, c);
		break;
	case POP3_APOP:
		pop3_err(s, "APOP is not supported");
		break;
	case POP3_STLS:
		cmd_stls(s);
		break;
	case POP3_QUIT:
		pop3_ok(s, "Logging out");
		pop3_exit(s, "ok");
	default:
		pop3_err(s, "Command not valid before login");
		break;
	}
}

static void pop3_command(struct pop3_session *s, char *line)
{
	struct pop3_command c;
	enum pop3_parse r = pop3_parse_command(line, &c);
	if (r != POP3_PARSE_OK) {
		parse_error(s, r, &c);
	} else if (c.verb == POP3_CAPA) {
		cmd_capa(s);
	} else if (s->state == POP3_AUTHORIZATION) {
		authorization(s, &c);
	} else {
		pop3_transaction(s, &c);
	}
}

/* Common to command lines and AUTH responses: read a line of at most max
 * bytes into buf; NULL after replying to a bad one. */
static char *read_line(struct pop3_session *s, size_t max, char *buf,
		       size_t *out_len)
{
	const char *line;
	size_t len;
	int r = stream_getline(&s->io, POP3_AUTH_LINE_MAX, &line, &len);
	if (r == STREAM_TOOLONG) {
		if (stream_skip_line(&s->io) == STREAM_OK) {
			pop3_err(s, "Line too long");
			return NULL;
		}
		r = STREAM_EOF;
	}
	/* RFC 1939 3: an expired autologout timer closes the connection
	 * without a response and without entering UPDATE. */
	if (r == STREAM_TIMEOUT)
		pop3_exit(s, "timeout");
	if (r != STREAM_OK)
		pop3_exit(s, "lost connection");
	size_t raw_len = len;
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (raw_len > max && !(max == POP3_LINE_MAX &&
			       strncasecmp(line, "AUTH ", 5) == 0)) {
		pop3_err(s, "Line too long");
		return NULL;
	}
	if (memchr(line, '\0', len) != NULL) {
		pop3_err(s, "NUL character in command");
		return NULL;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	*out_len = len;
	return buf;
}

const char *pop3_read_auth_line(struct pop3_session *s)
{
	static char buf[POP3_AUTH_LINE_MAX + 1];
	size_t len;
	return read_line(s, POP3_AUTH_LINE_MAX, buf, &len);
}

void pop3_session_run(struct pop3_session *s)
{
	/* AUTH lines with an initial response may exceed 255 octets (RFC
	 * 5034 4); every other command is held to it. */
	static char buf[POP3_AUTH_LINE_MAX + 1];
	pop3_ok(s, "%s POP3 server ready", s->cfg->hostname);
	for (;;) {
		size_t len;
		char *line = read_line(s, POP3_LINE_MAX, buf, &len);
		if (line == NULL)
			continue;
		pop3_command(s, line);
		/* the line may have held a password */
		explicit_bzero(buf, len);
	}
}
