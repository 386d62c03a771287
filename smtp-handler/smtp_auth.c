/*
 * smtp_auth: the AUTH command of smtp-handler (RFC 4954) with the PLAIN
 * (RFC 4616, with initial response) and LOGIN mechanisms.  Offered only
 * over TLS unless auth_plaintext = loopback and the client is on loopback;
 * guarded by the shared brute-force limit, which refuses an over-limit
 * address before its password is even looked at.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "authlimit.h"
#include "log.h"
#include "peer.h"
#include "smtp.h"

bool smtp_auth_allowed(const struct smtp_session *s)
{
	return auth_login_allowed(s->cfg, s->tls != NULL, s->peer);
}

/* A client response to a 334 challenge, base64-decoded into *out.
 * Returns 1 on success, 0 after replying (cancelled or malformed). */
static int auth_response(struct smtp_session *s, const char *challenge,
			 struct str *out)
{
	smtp_reply(s, "334 %s", challenge);
	const char *line;
	size_t len;
	int r = stream_getline(&s->io, SMTP_AUTH_LINE_MAX, &line, &len);
	if (r == STREAM_TOOLONG) {
		if (stream_skip_line(&s->io) != STREAM_OK)
			smtp_exit(s, "lost connection");
		smtp_reply_error(s, "500 5.5.6 Authentication exchange line is too long");
		return 0;
	}
	if (r == STREAM_TIMEOUT) {
		smtp_reply(s, "421 4.4.2 %s Error: timeout exceeded",
			   s->cfg->hostname);
		smtp_exit(s, "timeout");
	}
	if (r != STREAM_OK)
		smtp_exit(s, "lost connection");
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len == 1 && line[0] == '*') {
		smtp_reply_error(s, "501 5.7.0 Authentication cancelled");
		return 0;
	}
	if (base64_decode(line, len, out) != 0) {
		smtp_reply_error(s, "501 5.5.2 Cannot decode response");
		return 0;
	}
	return 1;
}

/* The initial response on the AUTH line: "=" is an empty one. */
static int auth_initial(struct smtp_session *s, const char *ir, struct str *out)
{
	if (strcmp(ir, "=") == 0)
		return 1;
	if (base64_decode(ir, strlen(ir), out) != 0) {
		smtp_reply_error(s, "501 5.5.2 Cannot decode response");
		return 0;
	}
	return 1;
}

/* PLAIN: fills user and password, or replies and returns false. */
static bool auth_plain(struct smtp_session *s, const char *ir,
		       struct str *user, struct str *password)
{
	struct str msg = STR_INIT, authzid = STR_INIT;
	int ok = ir ? auth_initial(s, ir, &msg) : auth_response(s, "", &msg);
	if (ok && sasl_plain_parse(msg.data ? msg.data : "", msg.len, &authzid,
				   user, password) != 0) {
		smtp_reply_error(s, "501 5.5.2 Malformed PLAIN response");
		ok = 0;
	}
	if (ok && authzid.len > 0 && strcasecmp(str_c(&authzid), str_c(user)) != 0) {
		/* acting as another user is not something we offer */
		smtp_reply_error(s, "535 5.7.8 Error: authorization identity refused");
		ok = 0;
	}
	str_free_secret(&msg);
	str_free(&authzid);
	return ok;
}

/* LOGIN: "Username:" and "Password:" challenges; some clients send the
 * user name as an initial response. */
static bool auth_login(struct smtp_session *s, const char *ir,
		       struct str *user, struct str *password)
{
	int ok = ir ? auth_initial(s, ir, user)
		    : auth_response(s, "VXNlcm5hbWU6", user);
	if (ok)
		ok = auth_response(s, "UGFzc3dvcmQ6", password);
	if (ok && (user->len == 0 || password->len == 0 ||
		   user->len > AUTH_MAX_FIELD || password->len > AUTH_MAX_FIELD ||
		   memchr(str_c(user), '\0', user->len) ||
		   memchr(str_c(password), '\0', password->len))) {
		smtp_reply_error(s, "501 5.5.2 Malformed LOGIN response");
		ok = 0;
	}
	return ok;
}

static void auth_verify(struct smtp_session *s, const char *user,
			const char *password)
{
	struct str canonical = STR_INIT;
	enum auth_result r = AUTH_TEMPFAIL;
	if (smtp_open_users(s))
		r = auth_check_password(s->users, user, password, &canonical);
	if (r == AUTH_OK) {
		s->auth_user = xstrdup(str_c(&canonical));
		log_kv(LOG_INFO, "authenticated", "PEER",
		       s->peer[0] ? s->peer : NULL, "USER", s->auth_user, NULL);
		smtp_reply(s, "235 2.7.0 Authentication successful");
	} else if (r == AUTH_FAILED) {
		authlimit_failure(s->cfg, s->peer, user, "smtp", time(NULL));
		smtp_reply_error(s, "535 5.7.8 Error: authentication failed");
	} else {
		smtp_reply(s, "454 4.7.0 Temporary authentication failure");
	}
	str_free(&canonical);
}

void smtp_auth(struct smtp_session *s, char *arg)
{
	if (s->helo == NULL || !s->esmtp) {
		smtp_reply_error(s, "503 5.5.1 Error: send EHLO first");
		return;
	}
	if (!smtp_auth_allowed(s)) {
		smtp_reply_error(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	if (s->auth_user != NULL || s->in_mail) {
		smtp_reply_error(s, "503 5.5.1 Error: %s",
				 s->in_mail ? "MAIL transaction in progress"
					    : "already authenticated");
		return;
	}
	char *ir = strchr(arg, ' ');
	if (ir != NULL)
		*ir++ = '\0';
	bool plain = strcasecmp(arg, "PLAIN") == 0;
	if (!plain && strcasecmp(arg, "LOGIN") != 0) {
		smtp_reply_error(s, "504 5.5.4 Unrecognized authentication type");
		return;
	}
	if (authlimit_blocked(s->cfg, s->peer, time(NULL))) {
		smtp_reply(s, "454 4.7.0 Temporary authentication failure: too many failed attempts, try later");
		return;
	}
	struct str user = STR_INIT, password = STR_INIT;
	bool got = plain ? auth_plain(s, ir, &user, &password)
			 : auth_login(s, ir, &user, &password);
	if (got)
		auth_verify(s, str_c(&user), str_c(&password));
	str_free_secret(&password);
	str_free(&user);
}
