/*
 * imap.h: the IMAP server's session state and the command handlers of
 * imap-handler's files.  Nothing here is used outside this program.
 *
 * Each command handler gets the parsed command and writes every response
 * itself: untagged data with stream_* on s->io, the tagged completion with
 * imap_ok / imap_no / imap_bad.  The session loop checks the state a
 * command needs before calling it, and after it sends the updates of the
 * selected folder (no EXPUNGE after FETCH, STORE, SEARCH, RFC 3501 7.4.1).
 */
#ifndef SOCKMAIL_IMAP_H
#define SOCKMAIL_IMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "imap_folder.h"
#include "imap_parser.h"
#include "peer.h"
#include "str.h"
#include "stream.h"
#include "tls.h"
#include "users.h"

#define IMAP_SEPARATOR '/'
/* mailbox names: octets of the client's (mUTF-7) name */
#define IMAP_MAILBOX_NAME_MAX 200

enum imap_state {
	IMAP_NOT_AUTHENTICATED,
	IMAP_AUTHENTICATED,
	IMAP_SELECTED,
	IMAP_LOGOUT,
};

struct imap_message;

struct imap_session {
	const struct config *cfg;
	struct stream io;
	struct imap_reader reader;
	char peer[PEER_MAX];
	enum imap_state state;
	unsigned errors;		/* BADs so far: max_bad_commands */
	struct tls_conn *tls;		/* NULL until STARTTLS / implicit */
	struct str tls_info;
	struct userdb *users;		/* opened at the first login */
	char *user;			/* canonical address once logged in */
	struct str maildir;		/* the user's Maildir++ root */

	/* SELECTED */
	struct imap_folder *sel;	/* NULL unless SELECTED */
	char *sel_name;			/* its name as the client gave it */

	struct imap_message *msg_cache;	/* imap_message.c's last message */

	/* for the session's log line */
	unsigned long fetched, stored, appended, expunged;
};

/* Completions.  imap_bad counts towards max_bad_commands (then * BYE);
 * the text may start with a response code ("[TRYCREATE] ..."). */
void imap_ok(struct imap_session *s, const struct imap_command *c,
	     const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void imap_no(struct imap_session *s, const struct imap_command *c,
	     const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void imap_bad(struct imap_session *s, const struct imap_command *c,
	      const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "* <text>\r\n" */
void imap_untagged(struct imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* End the session: flush, log, free, exit. */
__attribute__((noreturn)) void imap_exit(struct imap_session *s,
					 const char *result);

/* imap_session.c */
/* The CAPABILITY list for the session's state, appended. */
void imap_capabilities(const struct imap_session *s, struct str *out);
void imap_start_tls(struct imap_session *s);
__attribute__((noreturn)) void imap_session_run(struct imap_session *s);

/* imap_select.c: SELECT, EXAMINE, CLOSE, UNSELECT, CHECK, and leaving the
 * selected folder (also for SELECT of another one, DELETE of it). */
void imap_cmd_select(struct imap_session *s, struct imap_command *c);
void imap_cmd_close(struct imap_session *s, struct imap_command *c);
void imap_cmd_unselect(struct imap_session *s, struct imap_command *c);
void imap_unselect(struct imap_session *s);

/* imap_auth.c: LOGIN, AUTHENTICATE PLAIN (SASL-IR). */
bool imap_login_allowed(const struct imap_session *s);
void imap_cmd_login(struct imap_session *s, struct imap_command *c);
void imap_cmd_authenticate(struct imap_session *s, struct imap_command *c);

/* imap_mailbox.c: names and the mailbox commands. */
/*
 * Map a mailbox name as the client sent it (mUTF-7, '/' separated, INBOX
 * any case) to its directory: the Maildir root for INBOX, else
 * <root>/.<level>.<level> (a '.' inside a level is stored as "&AC4-").
 * Refuses (-1, reason in *err): invalid mUTF-7, empty levels, "." and ".."
 * levels, control characters, names over IMAP_MAILBOX_NAME_MAX.
 */
int imap_mailbox_path(const struct imap_session *s, const char *name,
		      struct str *path, struct str *err);
/* The special-use attribute of a folder name ("\\Sent") or NULL. */
const char *imap_mailbox_special_use(const char *name);
void imap_cmd_create(struct imap_session *s, struct imap_command *c);
void imap_cmd_delete(struct imap_session *s, struct imap_command *c);
void imap_cmd_rename(struct imap_session *s, struct imap_command *c);
void imap_cmd_subscribe(struct imap_session *s, struct imap_command *c);
void imap_cmd_unsubscribe(struct imap_session *s, struct imap_command *c);
void imap_cmd_list(struct imap_session *s, struct imap_command *c);
void imap_cmd_lsub(struct imap_session *s, struct imap_command *c);
void imap_cmd_status(struct imap_session *s, struct imap_command *c);

/* imap_fetch.c */
void imap_cmd_fetch(struct imap_session *s, struct imap_command *c);

/* imap_search.c */
void imap_cmd_search(struct imap_session *s, struct imap_command *c);

/* imap_store.c: STORE, COPY, MOVE, EXPUNGE (and UID EXPUNGE), APPEND. */
void imap_cmd_store(struct imap_session *s, struct imap_command *c);
void imap_cmd_copy(struct imap_session *s, struct imap_command *c);
void imap_cmd_move(struct imap_session *s, struct imap_command *c);
void imap_cmd_expunge(struct imap_session *s, struct imap_command *c);
void imap_cmd_append(struct imap_session *s, struct imap_command *c);

/*
 * Resolve a sequence set argument (c->uid decides: UIDs or sequence
 * numbers) against the selected folder into the indexes it names, in
 * ascending order (messages marked IMAP_MSG_GONE included: the caller
 * decides).  Returns 0, or -1 after replying BAD (malformed, or a sequence
 * number beyond the mailbox).  Free *idx with free().  In imap_select.c. 
 */
int imap_resolve_set(struct imap_session *s, struct imap_command *c,
		     const struct imap_arg *arg, size_t **idx, size_t *n);

#endif
