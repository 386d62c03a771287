/*
 * smtp_session: the SMTP command loop of smtp-handler (RFC 5321 with
 * PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES): greeting,
 * EHLO/HELO, MAIL, RCPT, RSET, NOOP, VRFY, HELP, QUIT.  DATA is in
 * smtp_data.c.  Inbound MX mode: only local recipients are accepted.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"
#include "smtp.h"

void smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	stream_vline(&s->io, fmt, ap);
	va_end(ap);
}

void smtp_reply_error(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	stream_vline(&s->io, fmt, ap);
	va_end(ap);
	if (++s->errors >= s->cfg->max_bad_commands) {
		smtp_reply(s, "421 4.7.0 %s Error: too many errors",
			   s->cfg->hostname);
		smtp_exit(s, "too many errors");
	}
}

void smtp_transaction_reset(struct smtp_session *s)
{
	s->in_mail = false;
	str_clear(&s->sender);
	s->smtputf8 = false;
	s->body_8bit = false;
	s->declared_size = 0;
	s->rcpt_count = 0;
	strlist_clear(&s->rcpts);
	strlist_clear(&s->mailboxes);
	strlist_clear(&s->remote);
	s->queue_id[0] = '\0';
}

void smtp_exit(struct smtp_session *s, const char *result)
{
	stream_flush(&s->io);
	char msgs[16];
	snprintf(msgs, sizeof msgs, "%u", s->messages);
	log_kv(LOG_INFO, "session end", "PEER", s->peer[0] ? s->peer : NULL,
	       "HELO", s->helo, "USER", s->auth_user,
	       "TLS", s->tls ? str_c(&s->tls_info) : NULL, "MESSAGES", msgs,
	       "RESULT", result, NULL);
	if (s->tls != NULL)
		tls_conn_close(s->tls);
	/* Free everything, so that valgrind and LeakSanitizer see a clean
	 * exit and a real leak stands out. */
	smtp_transaction_reset(s);
	str_free(&s->sender);
	strlist_free(&s->rcpts);
	strlist_free(&s->mailboxes);
	strlist_free(&s->remote);
	free(s->helo);
	free(s->auth_user);
	str_free(&s->tls_info);
	if (s->users != NULL)
		userdb_close(s->users);
	stream_free(&s->io);
	config_free((struct config *)s->cfg);
	exit(0);
}

const char *smtp_path_arg(const char *arg, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncasecmp(arg, prefix, n) != 0)
		return NULL;
	arg += n;
	while (*arg == ' ')
		arg++;
	return arg;
}

static void cmd_helo(struct smtp_session *s, const char *arg, bool esmtp)
{
	if (*arg == '\0') {
		smtp_reply_error(s, "501 5.5.4 Syntax: %s hostname",
				 esmtp ? "EHLO" : "HELO");
		return;
	}
	free(s->helo);
	s->helo = xstrdup(arg);
	s->esmtp = esmtp;
	smtp_transaction_reset(s);
	if (!esmtp) {
		smtp_reply(s, "250 %s", s->cfg->hostname);
		return;
	}
	smtp_reply(s, "250-%s", s->cfg->hostname);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %llu",
		   (unsigned long long)s->cfg->message_size_limit);
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-SMTPUTF8");
	if (s->tls == NULL && tls_configured(s->cfg))
		smtp_reply(s, "250-STARTTLS");
	if (smtp_auth_allowed(s))
		smtp_reply(s, "250-AUTH PLAIN LOGIN");
	smtp_reply(s, "250 ENHANCEDSTATUSCODES");
}

enum smtp_params_error smtp_parse_mail_params(char *params,
					      struct smtp_mail_params *p,
					      const char **bad)
{
	char *save = NULL;
	memset(p, 0, sizeof *p);
	for (char *tok = strtok_r(params, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		char *val = strchr(tok, '=');
		if (val)
			*val++ = '\0';
		if (strcasecmp(tok, "SIZE") == 0 && val) {
			char *end;
			unsigned long long n = strtoull(val, &end, 10);
			if (*val < '0' || *val > '9' || *end != '\0')
				return SMTP_PARAMS_BAD_SIZE;
			p->size = n;
		} else if (strcasecmp(tok, "BODY") == 0 && val &&
			   (strcasecmp(val, "7BIT") == 0 ||
			    strcasecmp(val, "8BITMIME") == 0)) {
			/* 8-bit data is accepted either way; the queue needs
			 * to know, so it is not relayed to a 7-bit server */
			p->body_8bit = strcasecmp(val, "8BITMIME") == 0;
		} else if (strcasecmp(tok, "SMTPUTF8") == 0 && !val) {
			p->smtputf8 = true;
		} else {
			*bad = tok;
			return SMTP_PARAMS_UNSUPPORTED;
		}
	}
	return SMTP_PARAMS_OK;
}

/* MAIL FROM parameters: returns false after replying. */
static bool mail_params(struct smtp_session *s, char *params)
{
	struct smtp_mail_params p;
	const char *bad = NULL;
	enum smtp_params_error e = smtp_parse_mail_params(params, &p, &bad);
	s->declared_size = p.size;
	s->body_8bit = p.body_8bit;
	s->smtputf8 = p.smtputf8;
	if (e == SMTP_PARAMS_BAD_SIZE) {
		smtp_reply_error(s, "501 5.5.4 Bad SIZE parameter");
		return false;
	}
	if (e == SMTP_PARAMS_UNSUPPORTED) {
		smtp_reply_error(s, "555 5.5.4 Unsupported parameter %s", bad);
		return false;
	}
	return true;
}

static void cmd_mail(struct smtp_session *s, char *arg)
{
	if (s->helo == NULL) {
		smtp_reply_error(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->in_mail) {
		smtp_reply_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (s->mode == SMTP_MODE_SUBMISSION && s->auth_user == NULL) {
		smtp_reply_error(s, "530 5.7.0 Authentication required");
		return;
	}
	const char *p = smtp_path_arg(arg, "FROM:");
	if (p == NULL) {
		smtp_reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	struct mailaddr a;
	size_t used;
	enum addr_error e = addr_parse_path(p, strlen(p), true, &a, &used);
	if (e != ADDR_OK) {
		smtp_reply_error(s, "501 5.1.7 Bad sender address syntax: %s",
				 addr_strerror(e));
		return;
	}
	char *params = xstrdup(p + used);
	bool ok = mail_params(s, params);
	free(params);
	if (ok && a.utf8 && !s->smtputf8) {
		smtp_reply_error(s, "553 5.6.7 Non-ASCII sender address needs SMTPUTF8");
		ok = false;
	}
	if (ok && s->declared_size > s->cfg->message_size_limit) {
		smtp_reply_error(s, "552 5.3.4 Message size exceeds fixed limit");
		ok = false;
	}
	str_clear(&s->sender);
	addr_format(&a, &s->sender);
	if (ok && s->mode == SMTP_MODE_SUBMISSION &&
	    (a.null || !smtp_sender_owned(s, str_c(&s->sender)))) {
		smtp_reply_error(s, "553 5.7.1 <%s>: Sender address rejected: not owned by user %s",
				 str_c(&s->sender), s->auth_user);
		ok = false;
	}
	if (ok) {
		s->in_mail = true;
		queue_new_id(s->queue_id);
		smtp_reply(s, "250 2.1.0 Ok");
	}
	mailaddr_free(&a);
}

bool smtp_open_users(struct smtp_session *s)
{
	return userdb_open_once(&s->users, s->cfg->state_dir);
}

bool smtp_may_relay(const struct smtp_session *s)
{
	return s->auth_user != NULL || s->mode == SMTP_MODE_LOCAL;
}

bool smtp_sender_owned(struct smtp_session *s, const char *address)
{
	if (s->auth_user == NULL)
		return s->mode == SMTP_MODE_LOCAL;
	if (strcasecmp(address, s->auth_user) == 0)
		return true;
	struct mailaddr a;
	if (addr_parse_mailbox(address, &a) != ADDR_OK)
		return false;
	struct strlist boxes = STRLIST_INIT, remote = STRLIST_INIT;
	bool owned = smtp_open_users(s) &&
		     userdb_resolve_explicit(s->users, a.local, a.domain,
					     &boxes, &remote) == RESOLVE_OK &&
		     strlist_contains(&boxes, s->auth_user);
	strlist_free(&boxes);
	strlist_free(&remote);
	mailaddr_free(&a);
	return owned;
}

/* <postmaster> with no domain (RFC 5321 4.5.1 says it must be accepted):
 * the configured postmaster address, else postmaster@hostname, else
 * postmaster at the first local domain that has one. */
static enum userdb_resolve rcpt_resolve_postmaster(struct smtp_session *s,
						   struct strlist *remote)
{
	struct strlist domains = STRLIST_INIT;
	if (s->cfg->postmaster[0] != '\0') {
		struct mailaddr p;
		enum userdb_resolve r = RESOLVE_NO_USER;
		if (addr_parse_mailbox(s->cfg->postmaster, &p) == ADDR_OK) {
			r = userdb_resolve(s->users, p.local, p.domain,
					   &s->mailboxes, remote);
			mailaddr_free(&p);
		}
		return r;
	}
	enum userdb_resolve r = userdb_resolve(s->users, "postmaster",
					       s->cfg->hostname,
					       &s->mailboxes, remote);
	if (r == RESOLVE_NO_DOMAIN && userdb_list_domains(s->users, &domains) == 0) {
		r = RESOLVE_NO_USER;
		for (size_t i = 0; i < domains.n && r == RESOLVE_NO_USER; i++)
			r = userdb_resolve(s->users, "postmaster",
					   domains.items[i], &s->mailboxes,
					   remote);
	}
	strlist_free(&domains);
	return r;
}

/* Resolve the recipient and reply; true if accepted. */
static bool rcpt_resolve(struct smtp_session *s, const struct mailaddr *a,
			 const char *shown)
{
	if (!smtp_open_users(s)) {
		smtp_reply(s, "451 4.3.0 <%s>: Temporary lookup failure", shown);
		return false;
	}
	struct strlist remote = STRLIST_INIT;
	size_t before = s->mailboxes.n;
	enum userdb_resolve r;
	if (a->domain[0] == '\0')
		r = rcpt_resolve_postmaster(s, &remote);
	else
		r = userdb_resolve(s->users, a->local, a->domain, &s->mailboxes,
				   &remote);
	if (r == RESOLVE_OK) {
		/* alias targets elsewhere: forwarded through the queue */
		for (size_t i = 0; i < remote.n; i++)
			strlist_add_unique(&s->remote, remote.items[i]);
	} else {
		while (s->mailboxes.n > before)
			free(s->mailboxes.items[--s->mailboxes.n]);
	}
	strlist_free(&remote);
	switch (r) {
	case RESOLVE_OK:
		return true;
	case RESOLVE_NO_DOMAIN:
		if (smtp_may_relay(s) && a->domain[0] != '\0') {
			strlist_add_unique(&s->remote, shown);
			return true;
		}
		smtp_reply_error(s, "554 5.7.1 <%s>: Relay access denied", shown);
		return false;
	case RESOLVE_NO_USER:
		smtp_reply_error(s, "550 5.1.1 <%s>: Recipient address rejected: User unknown",
				 shown);
		return false;
	case RESOLVE_LOOP:
		smtp_reply_error(s, "554 5.4.6 <%s>: Alias expansion loop", shown);
		return false;
	default:
		smtp_reply(s, "451 4.3.0 <%s>: Temporary lookup failure", shown);
		return false;
	}
}

static void cmd_rcpt(struct smtp_session *s, char *arg)
{
	if (!s->in_mail) {
		smtp_reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	const char *p = smtp_path_arg(arg, "TO:");
	if (p == NULL) {
		smtp_reply_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	struct mailaddr a;
	size_t used;
	enum addr_error e = addr_parse_path(p, strlen(p), false, &a, &used);
	if (e != ADDR_OK) {
		smtp_reply_error(s, "501 5.1.3 Bad recipient address syntax: %s",
				 addr_strerror(e));
		return;
	}
	struct str shown = STR_INIT;
	addr_format(&a, &shown);
	if (p[used] != '\0') {
		smtp_reply_error(s, "555 5.5.4 Unsupported RCPT parameter");
	} else if (a.utf8 && !s->smtputf8) {
		smtp_reply_error(s, "553 5.6.7 <%s>: Non-ASCII address needs SMTPUTF8",
				 str_c(&shown));
	} else if (s->rcpt_count >= s->cfg->max_recipients) {
		smtp_reply(s, "452 4.5.3 Too many recipients");
	} else if (rcpt_resolve(s, &a, str_c(&shown))) {
		s->rcpt_count++;
		strlist_add(&s->rcpts, str_c(&shown));
		smtp_reply(s, "250 2.1.5 Ok");
	}
	str_free(&shown);
	mailaddr_free(&a);
}

void smtp_start_tls(struct smtp_session *s)
{
	struct str err = STR_INIT;
	s->tls = tls_server_start(s->cfg, 0, 1, s->cfg->smtp_timeout, &err);
	if (s->tls == NULL) {
		log_kv(LOG_NOTICE, "TLS handshake failed", "PEER",
		       s->peer[0] ? s->peer : NULL, "ERROR", str_c(&err), NULL);
		str_free(&err);
		s->io.status = STREAM_ERROR;	/* nothing more can be said */
		smtp_exit(s, "TLS handshake failed");
	}
	stream_set_transport(&s->io, tls_conn_transport(s->tls));
	tls_conn_describe(s->tls, &s->tls_info);
}

/* RFC 3207.  Whatever the client sent after STARTTLS in plaintext is
 * dropped, never executed inside TLS (CVE-2011-0411), and the session
 * starts over: the client must EHLO again. */
static void cmd_starttls(struct smtp_session *s, const char *arg)
{
	if (*arg != '\0') {
		smtp_reply_error(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->tls != NULL) {
		smtp_reply_error(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (!tls_configured(s->cfg)) {
		smtp_reply_error(s, "454 4.7.0 TLS not available");
		return;
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	if (stream_flush(&s->io) != STREAM_OK)
		smtp_exit(s, "lost connection");
	stream_discard_input(&s->io);
	smtp_start_tls(s);
	/* RFC 3207 4.2: forget everything learnt before TLS, AUTH too. */
	free(s->helo);
	s->helo = NULL;
	free(s->auth_user);
	s->auth_user = NULL;
	s->esmtp = false;
	smtp_transaction_reset(s);
}

static void cmd_data(struct smtp_session *s, const char *arg)
{
	if (*arg != '\0') {
		smtp_reply_error(s, "501 5.5.4 Syntax: DATA");
	} else if (!s->in_mail) {
		smtp_reply_error(s, "503 5.5.1 Error: need MAIL command");
	} else if (s->rcpt_count == 0) {
		smtp_reply_error(s, "554 5.5.1 No valid recipients");
	} else {
		smtp_data(s);
		smtp_transaction_reset(s);
	}
}

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
	{ "EHLO", SMTP_VERB_EHLO }, { "HELO", SMTP_VERB_HELO },
	{ "MAIL", SMTP_VERB_MAIL }, { "RCPT", SMTP_VERB_RCPT },
	{ "DATA", SMTP_VERB_DATA }, { "STARTTLS", SMTP_VERB_STARTTLS },
	{ "AUTH", SMTP_VERB_AUTH }, { "RSET", SMTP_VERB_RSET },
	{ "NOOP", SMTP_VERB_NOOP }, { "QUIT", SMTP_VERB_QUIT },
	{ "VRFY", SMTP_VERB_VRFY }, { "EXPN", SMTP_VERB_EXPN },
	{ "HELP", SMTP_VERB_HELP },
};

enum smtp_verb smtp_parse_verb(char *line, char **arg)
{
	*arg = strchr(line, ' ');
	if (*arg != NULL)
		*(*arg)++ = '\0';
	else
		*arg = line + strlen(line);
	for (size_t i = 0; i < sizeof smtp_verbs / sizeof *smtp_verbs; i++)
		if (strcasecmp(line, smtp_verbs[i].name) == 0)
			return smtp_verbs[i].verb;
	return SMTP_VERB_UNKNOWN;
}

/* One command line, CRLF (or a lone LF) stripped. */
static void smtp_command(struct smtp_session *s, char *line)
{
	char *arg;
	switch (smtp_parse_verb(line, &arg)) {
	case SMTP_VERB_EHLO:
		cmd_helo(s, arg, true);
		break;
	case SMTP_VERB_HELO:
		cmd_helo(s, arg, false);
		break;
	case SMTP_VERB_MAIL:
		cmd_mail(s, arg);
		break;
	case SMTP_VERB_RCPT:
		cmd_rcpt(s, arg);
		break;
	case SMTP_VERB_DATA:
		cmd_data(s, arg);
		break;
	case SMTP_VERB_STARTTLS:
		cmd_starttls(s, arg);
		break;
	case SMTP_VERB_AUTH:
		smtp_auth(s, arg);
		break;
	case SMTP_VERB_RSET:
		smtp_transaction_reset(s);
		smtp_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_NOOP:
		smtp_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_QUIT:
		smtp_reply(s, "221 2.0.0 Bye");
		smtp_exit(s, "ok");
	case SMTP_VERB_VRFY:
		smtp_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
		break;
	case SMTP_VERB_EXPN:
		smtp_reply_error(s, "502 5.5.1 EXPN not available");
		break;
	case SMTP_VERB_HELP:
		smtp_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
		break;
	case SMTP_VERB_UNKNOWN:
		smtp_reply_error(s, "500 5.5.2 Error: command not recognized");
		break;
	}
}

enum smtp_line_check smtp_command_line(const char *line, size_t len,
				       char *buf)
{
	size_t raw_len = len;
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (raw_len > SMTP_LINE_MAX && strncasecmp(line, "AUTH ", 5) != 0)
		return SMTP_LINE_TOO_LONG;
	if (memchr(line, '\0', len) != NULL)
		return SMTP_LINE_NUL;
	memcpy(buf, line, len);
	buf[len] = '\0';
	return SMTP_LINE_OK;
}

/* Read one command line; returns NULL after handling a bad one. */
static char *smtp_read_command(struct smtp_session *s, char *buf)
{
	const char *line;
	size_t len;
	/* AUTH lines may be long (RFC 4954); every other command must fit
	 * in 512 octets, checked below. */
	int r = stream_getline(&s->io, SMTP_AUTH_LINE_MAX, &line, &len);
	if (r == STREAM_TOOLONG) {
		if (stream_skip_line(&s->io) == STREAM_OK) {
			smtp_reply_error(s, "500 5.5.2 Line too long");
			return NULL;
		}
		r = STREAM_EOF;
	}
	if (r == STREAM_TIMEOUT) {
		smtp_reply(s, "421 4.4.2 %s Error: timeout exceeded",
			   s->cfg->hostname);
		smtp_exit(s, "timeout");
	}
	if (r != STREAM_OK)
		smtp_exit(s, "lost connection");
	switch (smtp_command_line(line, len, buf)) {
	case SMTP_LINE_TOO_LONG:
		smtp_reply_error(s, "500 5.5.2 Line too long");
		return NULL;
	case SMTP_LINE_NUL:
		smtp_reply_error(s, "500 5.5.2 Error: NUL character in command");
		return NULL;
	case SMTP_LINE_OK:
		break;
	}
	return buf;
}

void smtp_session_run(struct smtp_session *s)
{
	static char buf[SMTP_AUTH_LINE_MAX + 1];
	smtp_reply(s, "220 %s ESMTP sockmail", s->cfg->hostname);
	for (;;) {
		char *line = smtp_read_command(s, buf);
		if (line != NULL)
			smtp_command(s, line);
	}
}
