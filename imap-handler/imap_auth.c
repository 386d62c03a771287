/*
 * imap_auth: logging in to imap-handler: LOGIN (RFC 3501 6.2.3) and
 * AUTHENTICATE PLAIN with or without the initial response of SASL-IR (RFC
 * 4959, RFC 4616).  Only over TLS unless auth_plaintext = loopback and the
 * client is on loopback (otherwise CAPABILITY says LOGINDISABLED); guarded
 * by the shared brute-force limit.  Responses carry the RFC 5530 codes
 * clients act on: AUTHENTICATIONFAILED, PRIVACYREQUIRED, UNAVAILABLE.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "auth.h"
#include "authlimit.h"
#include "imap.h"
#include "log.h"
#include "maildir.h"

#define AUTH_LINE_MAX 8192	/* a SASL response line */

bool imap_login_allowed(const struct imap_session *s)
{
	return auth_login_allowed(s->cfg, s->tls != NULL, s->peer);
}

/* The user's Maildir++, created if a delivery never made it yet. */
static bool open_maildir(struct imap_session *s)
{
	struct str cur = STR_INIT;
	maildir_path(s->cfg->mail_dir, s->user, &s->maildir);
	str_printf(&cur, "%s/cur", str_c(&s->maildir));
	struct stat st;
	bool ok = stat(str_c(&cur), &st) == 0 ||
		  maildir_create(str_c(&s->maildir), (uid_t)-1, (gid_t)-1) == 0;
	if (!ok)
		log_kv(LOG_ERR, "cannot open Maildir", "USER", s->user,
		       "PATH", str_c(&s->maildir), "ERROR", strerror(errno),
		       NULL);
	str_free(&cur);
	return ok;
}

static void login(struct imap_session *s, const struct imap_command *c,
		  const char *user, const char *password)
{
	struct str canonical = STR_INIT;
	enum auth_result r = AUTH_TEMPFAIL;
	if (userdb_open_once(&s->users, s->cfg->state_dir))
		r = auth_check_password(s->users, user, password, &canonical);
	if (r == AUTH_OK) {
		s->user = xstrdup(str_c(&canonical));
		if (!open_maildir(s)) {
			free(s->user);
			s->user = NULL;
			str_clear(&s->maildir);
			imap_no(s, c, "[UNAVAILABLE] Mailbox unavailable, try again later");
		} else {
			log_kv(LOG_INFO, "authenticated", "PEER",
			       s->peer[0] ? s->peer : NULL, "USER", s->user,
			       NULL);
			s->state = IMAP_AUTHENTICATED;
			s->reader.append_limit = s->cfg->message_size_limit;
			struct str caps = STR_INIT;
			imap_capabilities(s, &caps);
			imap_ok(s, c, "[CAPABILITY %s] Logged in", str_c(&caps));
			str_free(&caps);
		}
	} else if (r == AUTH_FAILED) {
		authlimit_failure(s->cfg, s->peer, user, "imap", time(NULL));
		imap_no(s, c, "[AUTHENTICATIONFAILED] Authentication failed");
	} else {
		imap_no(s, c, "[UNAVAILABLE] Temporary authentication failure, try again later");
	}
	str_free(&canonical);
}

/* Refusals common to both commands; true after replying. */
static bool refused(struct imap_session *s, const struct imap_command *c)
{
	if (!imap_login_allowed(s)) {
		imap_no(s, c, "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections: use STARTTLS");
		return true;
	}
	if (authlimit_blocked(s->cfg, s->peer, time(NULL))) {
		imap_no(s, c, "[UNAVAILABLE] Too many failed logins from your address, try again later");
		return true;
	}
	return false;
}

void imap_cmd_login(struct imap_session *s, struct imap_command *c)
{
	if (c->argc != 2 || !imap_arg_is_astring(&c->args[0]) ||
	    !imap_arg_is_astring(&c->args[1])) {
		imap_bad(s, c, "Syntax: LOGIN user password");
	} else if (!refused(s, c)) {
		login(s, c, c->args[0].str, c->args[1].str);
	}
	/* the parser's copy of the password dies here, not at free */
	for (size_t i = 0; i < c->argc; i++)
		if (c->args[i].str != NULL)
			explicit_bzero(c->args[i].str, c->args[i].len);
}

/* The client's PLAIN response: the initial response, or a line after
 * "+ ".  Returns true with *msg filled, false after replying. */
static bool plain_response(struct imap_session *s, struct imap_command *c,
			   struct str *msg)
{
	const char *text;
	size_t len;
	if (c->argc == 2) {
		text = c->args[1].str;
		len = c->args[1].len;
		if (strcmp(text, "=") == 0)	/* an empty initial response */
			return true;
	} else {
		stream_write(&s->io, "+ \r\n", 4);
		int r = stream_getline(&s->io, AUTH_LINE_MAX, &text, &len);
		if (r == STREAM_TOOLONG) {
			if (stream_skip_line(&s->io) != STREAM_OK)
				imap_exit(s, "lost connection");
			imap_bad(s, c, "Response too long");
			return false;
		}
		if (r != STREAM_OK)
			imap_exit(s, r == STREAM_TIMEOUT ? "timeout" :
				  "lost connection");
		while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
			len--;
		if (len == 1 && text[0] == '*') {
			imap_bad(s, c, "Authentication cancelled");
			return false;
		}
	}
	if (base64_decode(text, len, msg) != 0) {
		imap_bad(s, c, "Invalid base64 data");
		return false;
	}
	return true;
}

void imap_cmd_authenticate(struct imap_session *s, struct imap_command *c)
{
	if (c->argc < 1 || c->argc > 2 || c->args[0].type != IMAP_ARG_ATOM ||
	    (c->argc == 2 && c->args[1].type != IMAP_ARG_ATOM)) {
		imap_bad(s, c, "Syntax: AUTHENTICATE mechanism [initial-response]");
		return;
	}
	if (strcasecmp(c->args[0].str, "PLAIN") != 0) {
		imap_no(s, c, "Unsupported authentication mechanism");
		return;
	}
	if (refused(s, c))
		return;
	struct str msg = STR_INIT, authzid = STR_INIT, user = STR_INIT,
		   password = STR_INIT;
	if (plain_response(s, c, &msg)) {
		if (sasl_plain_parse(msg.data ? msg.data : "", msg.len, &authzid,
				     &user, &password) != 0)
			imap_bad(s, c, "Malformed PLAIN response");
		else if (authzid.len > 0 &&
			 strcasecmp(str_c(&authzid), str_c(&user)) != 0)
			/* acting as another user is not something we offer */
			imap_no(s, c, "[AUTHORIZATIONFAILED] Authorization identity refused");
		else
			login(s, c, str_c(&user), str_c(&password));
	}
	if (c->argc == 2)
		explicit_bzero(c->args[1].str, c->args[1].len);
	str_free_secret(&msg);
	str_free_secret(&password);
	str_free(&authzid);
	str_free(&user);
}
