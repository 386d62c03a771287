/*
 * pop3_auth: logging in to pop3-handler: USER/PASS (RFC 1939 7) and AUTH
 * PLAIN with or without an initial response (RFC 5034, RFC 4616).  Only
 * over TLS unless auth_plaintext = loopback and the client is on loopback;
 * guarded by the shared brute-force limit, which refuses an over-limit
 * address before its password is even looked at.  Errors carry the RFC
 * 3206 response codes: [AUTH] for a credentials problem, [SYS/TEMP] for
 * trouble on our side or the brute-force block, [IN-USE] (from the
 * maildrop lock) when another session holds the maildrop.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "authlimit.h"
#include "log.h"
#include "pop3.h"

#define PLAINTEXT_REFUSED \
	"[AUTH] Plaintext authentication disallowed on non-secure connections: use STLS"

bool pop3_auth_allowed(const struct pop3_session *s)
{
	return auth_login_allowed(s->cfg, s->tls != NULL, s->peer);
}

/* Check the credentials and, if they are good, open the maildrop (which
 * replies either way). */
static void login(struct pop3_session *s, const char *user,
		  const char *password)
{
	struct str canonical = STR_INIT;
	enum auth_result r = AUTH_TEMPFAIL;
	if (userdb_open_once(&s->users, s->cfg->state_dir))
		r = auth_check_password(s->users, user, password, &canonical);
	if (r == AUTH_OK) {
		s->auth_user = xstrdup(str_c(&canonical));
		log_kv(LOG_INFO, "authenticated", "PEER",
		       s->peer[0] ? s->peer : NULL, "USER", s->auth_user, NULL);
		if (!pop3_maildrop_open(s)) {
			free(s->auth_user);
			s->auth_user = NULL;
		}
	} else if (r == AUTH_FAILED) {
		authlimit_failure(s->cfg, s->peer, user, "pop3", time(NULL));
		pop3_err(s, "[AUTH] Authentication failed");
	} else {
		pop3_err_nocount(s, "[SYS/TEMP] Temporary authentication failure, try again later");
	}
	str_free(&canonical);
}

static bool over_limit(struct pop3_session *s)
{
	if (!authlimit_blocked(s->cfg, s->peer, time(NULL)))
		return false;
	pop3_err_nocount(s, "[SYS/TEMP] Too many failed logins from your address, try again later");
	return true;
}

void pop3_cmd_user(struct pop3_session *s, const struct pop3_command *c)
{
	if (!pop3_auth_allowed(s)) {
		pop3_err(s, PLAINTEXT_REFUSED);
		return;
	}
	free(s->user_arg);
	s->user_arg = xstrdup(c->argv[0]);
	/* the same answer whether the user exists or not */
	pop3_ok(s, "Send PASS");
}

void pop3_cmd_pass(struct pop3_session *s, const struct pop3_command *c)
{
	if (!pop3_auth_allowed(s)) {
		pop3_err(s, PLAINTEXT_REFUSED);
		return;
	}
	if (s->user_arg == NULL) {
		pop3_err(s, "Send USER first");
		return;
	}
	/* RFC 1939 7: after PASS, right or wrong, USER starts over */
	char *user = s->user_arg;
	s->user_arg = NULL;
	if (!over_limit(s))
		login(s, user, c->argv[0]);
	free(user);
}

/* The PLAIN response: from the AUTH line, or after a "+ " continuation.
 * Returns true with *msg filled, false after replying. */
static bool plain_response(struct pop3_session *s, const struct pop3_command *c,
			   struct str *msg)
{
	const char *text;
	if (c->argc == 2) {
		text = c->argv[1];
		if (strcmp(text, "=") == 0)	/* an empty initial response */
			return true;
	} else {
		stream_write(&s->io, "+ \r\n", 4);
		text = pop3_read_auth_line(s);
		if (text == NULL)
			return false;
		if (strcmp(text, "*") == 0) {
			pop3_err(s, "Authentication cancelled");
			return false;
		}
	}
	if (base64_decode(text, strlen(text), msg) != 0) {
		pop3_err(s, "Invalid base64 data");
		return false;
	}
	return true;
}

void pop3_cmd_auth(struct pop3_session *s, const struct pop3_command *c)
{
	if (c->argc == 0) {
		/* the mechanism list of the pre-RFC 5034 AUTH (RFC 1734) that
		 * some clients still ask for */
		pop3_ok(s, "Supported mechanisms follow");
		if (pop3_auth_allowed(s))
			pop3_line(s, "PLAIN");
		pop3_end(s);
		return;
	}
	if (strcasecmp(c->argv[0], "PLAIN") != 0) {
		pop3_err(s, "Unsupported authentication mechanism");
		return;
	}
	if (!pop3_auth_allowed(s)) {
		pop3_err(s, PLAINTEXT_REFUSED);
		return;
	}
	if (over_limit(s))
		return;
	struct str msg = STR_INIT, authzid = STR_INIT, user = STR_INIT,
		   password = STR_INIT;
	if (plain_response(s, c, &msg)) {
		if (sasl_plain_parse(msg.data ? msg.data : "", msg.len, &authzid,
				     &user, &password) != 0)
			pop3_err(s, "[AUTH] Malformed PLAIN response");
		else if (authzid.len > 0 &&
			 strcasecmp(str_c(&authzid), str_c(&user)) != 0)
			/* acting as another user is not something we offer */
			pop3_err(s, "[AUTH] Authorization identity refused");
		else
			login(s, str_c(&user), str_c(&password));
	}
	str_free_secret(&msg);
	str_free_secret(&password);
	str_free(&authzid);
	str_free(&user);
}
