/*
 * smtp.h: the SMTP server's session state, shared by the files of
 * smtp-handler (command loop, DATA reader, delivery).  Nothing here is used
 * outside this program.
 */
#ifndef SOCKMAIL_SMTP_H
#define SOCKMAIL_SMTP_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "stream.h"
#include "strlist.h"
#include "users.h"

#define SMTP_LINE_MAX 512	/* command line with CRLF, RFC 5321 4.5.3.1.4 */
#define SMTP_TEXT_MAX 1000	/* text line with CRLF, RFC 5321 4.5.3.1.6 */
#define SMTP_MAX_RECEIVED 100	/* more Received: headers = a mail loop */

struct smtp_session {
	const struct config *cfg;
	struct stream io;
	char peer[64];		/* "127.0.0.1", "IPv6:::1"; "" when unknown */
	char *helo;		/* NULL until HELO/EHLO */
	bool esmtp;
	unsigned errors;	/* client errors so far: max_bad_commands */
	unsigned messages;	/* accepted in this session */
	struct userdb *users;	/* opened at the first RCPT */

	/* The mail transaction: MAIL, RCPT..., DATA. */
	bool in_mail;
	struct str sender;	/* formatted, "" for <> */
	bool smtputf8;
	uint64_t declared_size;
	unsigned rcpt_count;	/* accepted RCPTs */
	struct strlist rcpts;	/* accepted recipient addresses */
	struct strlist mailboxes;	/* the Maildirs they resolve to */
	char queue_id[32];
};

/* Reply with a full "code text" line; client errors count towards the
 * max_bad_commands limit. */
void smtp_reply(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void smtp_reply_error(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* smtp_data.c: the DATA command, after its preconditions were checked. */
void smtp_data(struct smtp_session *s);

void smtp_transaction_reset(struct smtp_session *s);

/* smtp_session.c: greet and serve commands until the client leaves. */
__attribute__((noreturn)) void smtp_session_run(struct smtp_session *s);

/* End the session now: flush, log, exit. */
__attribute__((noreturn)) void smtp_exit(struct smtp_session *s,
					 const char *result);

#endif
