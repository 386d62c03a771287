/*
 * pop3.h: the POP3 server's session state, shared by the files of
 * pop3-handler (command loop, login, maildrop commands).  Nothing here is
 * used outside this program.
 */
#ifndef SOCKMAIL_POP3_H
#define SOCKMAIL_POP3_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "maildir_scan.h"
#include "peer.h"
#include "pop3_cmd.h"
#include "str.h"
#include "stream.h"
#include "tls.h"
#include "users.h"

/* The exclusive maildrop lock, a file in the user's Maildir (RFC 1939 8). */
#define POP3_LOCK_FILE ".sockmail-pop3.lock"
/* More messages than this in one maildrop: refused as a temporary error
 * rather than eating the machine's memory (about 80 MiB of listing). */
#define POP3_MAX_MESSAGES 1000000

/* Caller bits in maildir_msg.flags. */
#define POP3_MSG_DELETED	0x10	/* DELE: unlinked in UPDATE */
#define POP3_MSG_RETRIEVED	0x20	/* RETR sent it whole: seen in UPDATE */

enum pop3_state { POP3_AUTHORIZATION, POP3_TRANSACTION };

struct pop3_session {
	const struct config *cfg;
	struct stream io;
	unsigned timeout;	/* seconds of inactivity before we hang up */
	char peer[PEER_MAX];	/* "127.0.0.1", "IPv6:::1"; "" when unknown */
	enum pop3_state state;
	unsigned errors;	/* client errors so far: max_bad_commands */
	struct tls_conn *tls;	/* NULL until STLS or implicit TLS */
	struct str tls_info;
	struct userdb *users;	/* opened at the first login attempt */
	char *user_arg;		/* USER's argument, waiting for PASS */
	char *auth_user;	/* canonical address once logged in */

	/* TRANSACTION: the maildrop as listed at login. */
	struct str maildir;
	int lock_fd;
	struct maildir_list list;
	size_t live_count;	/* messages not marked deleted */
	uint64_t live_size;	/* their octets */
	unsigned retrieved;	/* messages RETR sent whole */
	unsigned tops;		/* TOP replies sent (fetchmail's way to fetch) */
	unsigned deleted;	/* files unlinked in UPDATE */
};

/* Replies.  pop3_err counts towards the max_bad_commands limit and closes
 * the session when it is reached; pop3_err_nocount is for failures that
 * are not the client's fault ([SYS/TEMP], [IN-USE]). */
void pop3_ok(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void pop3_err(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void pop3_err_nocount(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A line of a multi-line reply, dot-stuffed, and the final ".". */
void pop3_line(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void pop3_end(struct pop3_session *s);

/* Read a line for an AUTH exchange (bounded by POP3_AUTH_LINE_MAX), CRLF
 * removed, NUL-terminated in a buffer owned by the session code; NULL
 * after replying if it was too long.  Ends the session on EOF/timeout. */
const char *pop3_read_auth_line(struct pop3_session *s);

/* pop3_auth.c: USER, PASS, AUTH; on success the maildrop is opened and the
 * session is in TRANSACTION. */
bool pop3_auth_allowed(const struct pop3_session *s);
void pop3_cmd_user(struct pop3_session *s, const struct pop3_command *c);
void pop3_cmd_pass(struct pop3_session *s, const struct pop3_command *c);
void pop3_cmd_auth(struct pop3_session *s, const struct pop3_command *c);

/* pop3_maildrop.c: the TRANSACTION commands and UPDATE. */
bool pop3_maildrop_open(struct pop3_session *s);
void pop3_maildrop_close(struct pop3_session *s);
void pop3_transaction(struct pop3_session *s, const struct pop3_command *c);
/* QUIT in TRANSACTION: UPDATE, the reply, and the end of the session. */
__attribute__((noreturn)) void pop3_update(struct pop3_session *s);

/* pop3_session.c */
void pop3_start_tls(struct pop3_session *s);
__attribute__((noreturn)) void pop3_session_run(struct pop3_session *s);
/* End the session now: flush, log the outcome, free, exit. */
__attribute__((noreturn)) void pop3_exit(struct pop3_session *s,
					 const char *result);

#endif
