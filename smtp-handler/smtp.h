/*
 * smtp.h: the SMTP server's session state, shared by the files of
 * smtp-handler (command loop, DATA reader, delivery).  Nothing here is used
 * outside this program.
 */
#ifndef SOCKMAIL_SMTP_H
#define SOCKMAIL_SMTP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"
#include "config.h"
#include "peer.h"
#include "queue.h"
#include "stream.h"
#include "strlist.h"
#include "tls.h"
#include "users.h"

#define SMTP_LINE_MAX 512	/* command line with CRLF, RFC 5321 4.5.3.1.4 */
#define SMTP_AUTH_LINE_MAX 12288	/* AUTH and its responses, RFC 4954 4 */
#define SMTP_TEXT_MAX 1000	/* text line with CRLF, RFC 5321 4.5.3.1.6 */
#define SMTP_MAX_RECEIVED 100	/* more Received: headers = a mail loop */

enum smtp_mode {
	SMTP_MODE_MX,		/* port 25: only local recipients, no AUTH needed */
	SMTP_MODE_SUBMISSION,	/* 587/465: AUTH first, sender must be the user's */
	SMTP_MODE_LOCAL,	/* the sendmail socket: the peer's uid is trusted */
};

struct smtp_session {
	const struct config *cfg;
	enum smtp_mode mode;
	uid_t local_uid;	/* SMTP_MODE_LOCAL: from SO_PEERCRED */
	struct stream io;
	char peer[PEER_MAX];	/* "127.0.0.1", "IPv6:::1"; "" when unknown */
	char *helo;		/* NULL until HELO/EHLO */
	bool esmtp;
	unsigned errors;	/* client errors so far: max_bad_commands */
	unsigned messages;	/* accepted in this session */
	struct userdb *users;	/* opened at the first RCPT or AUTH */
	struct tls_conn *tls;	/* NULL until STARTTLS or implicit TLS */
	struct str tls_info;	/* "TLSv1.3 with cipher ..." for Received: */
	char *auth_user;	/* canonical address once AUTH succeeded */

	/* The mail transaction: MAIL, RCPT..., DATA. */
	bool in_mail;
	struct str sender;	/* formatted, "" for <> */
	bool smtputf8;
	bool body_8bit;		/* BODY=8BITMIME */
	uint64_t declared_size;
	unsigned rcpt_count;	/* accepted RCPTs */
	struct strlist rcpts;	/* accepted recipient addresses */
	struct strlist mailboxes;	/* the Maildirs they resolve to */
	struct strlist remote;	/* addresses to relay through the queue */
	char queue_id[QUEUE_ID_MAX];
};

/* Reply with a full "code text" line; client errors count towards the
 * max_bad_commands limit. */
void smtp_reply(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void smtp_reply_error(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* May this session send mail to remote domains?  (Authenticated, or the
 * local sendmail socket.) */
bool smtp_may_relay(const struct smtp_session *s);
/* Does address (MAIL FROM or a From: header) belong to the session's
 * user: the login itself, or an alias or subaddress that resolves to it? */
bool smtp_sender_owned(struct smtp_session *s, const char *address);

/* Open users.tdb on first use; false (logged) if it cannot be. */
bool smtp_open_users(struct smtp_session *s);

/* smtp_auth.c: AUTH PLAIN and LOGIN (RFC 4954). */
bool smtp_auth_allowed(const struct smtp_session *s);
void smtp_auth(struct smtp_session *s, char *arg);

/* Start TLS on the session's fds (STARTTLS, or --tls=implicit before the
 * greeting); a failed handshake ends the process with one log line. */
void smtp_start_tls(struct smtp_session *s);

/* smtp_data.c: the DATA command, after its preconditions were checked. */
void smtp_data(struct smtp_session *s);

void smtp_transaction_reset(struct smtp_session *s);

/* smtp_session.c: greet and serve commands until the client leaves. */
__attribute__((noreturn)) void smtp_session_run(struct smtp_session *s);

/* End the session now: flush, log, exit. */
__attribute__((noreturn)) void smtp_exit(struct smtp_session *s,
					 const char *result);

#endif
