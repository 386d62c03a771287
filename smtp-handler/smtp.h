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

/* The DATA reader's state, exposed with smtp_data_read for the fuzzer. */
enum data_problem {
	DATA_FINE,
	DATA_TOO_BIG,
	DATA_BARE_NEWLINE,
	DATA_LONG_LINE,
	DATA_LOOP,
	DATA_WRITE_ERROR,
	DATA_FROM_NOT_OWNED,
};

struct data_reader {
	struct mailfile *file;
	uint64_t size;		/* message size as sent, CRLF = 2 */
	enum data_problem problem;
	bool at_line_start;	/* the next chunk begins a line */
	bool pending_cr;	/* previous chunk ended in CR */
	bool in_headers;
	unsigned received;	/* Received: headers seen */
	bool submission;	/* add Date:/Message-ID:/From: when missing */
	bool seen_date, seen_msgid, seen_from;
	bool in_from;		/* continuation lines belong to From: */
	struct str from;	/* the From: field's value, bounded */
};

/* Read the message text that follows 354 from s->io up to the end of data
 * (CRLF "." CRLF) into d->file: dot-stuffing undone, LF line ends, a
 * submission's missing headers added at the end of its header section (if
 * the data ends inside it, d->submission is still true and smtp_data adds
 * them).  What is wrong with the message goes to d->problem (the first
 * problem found) and the rest is still read, so the session stays in
 * step.  Returns false if the client is gone (EOF, error, or timeout with
 * 421 said) before the end.  Start with d zeroed but for file,
 * at_line_start and in_headers (true) and submission. */
bool smtp_data_read(struct smtp_session *s, struct data_reader *d);

void smtp_transaction_reset(struct smtp_session *s);

/* smtp_session.c: the command-line syntax, kept apart from the session
 * so it can be tested and fuzzed without one. */
enum smtp_verb {
	SMTP_VERB_UNKNOWN, SMTP_VERB_EHLO, SMTP_VERB_HELO, SMTP_VERB_MAIL,
	SMTP_VERB_RCPT, SMTP_VERB_DATA, SMTP_VERB_STARTTLS, SMTP_VERB_AUTH,
	SMTP_VERB_RSET, SMTP_VERB_NOOP, SMTP_VERB_QUIT, SMTP_VERB_VRFY,
	SMTP_VERB_EXPN, SMTP_VERB_HELP,
};
enum smtp_line_check {
	SMTP_LINE_OK,
	SMTP_LINE_TOO_LONG,	/* over SMTP_LINE_MAX and not AUTH */
	SMTP_LINE_NUL,		/* a NUL octet in the command */
};
/* A line as stream_getline gave it (at most SMTP_AUTH_LINE_MAX octets):
 * checked, its CRLF (or lone LF) removed and copied NUL-terminated into
 * buf, which holds SMTP_AUTH_LINE_MAX + 1. */
enum smtp_line_check smtp_command_line(const char *line, size_t len,
				       char *buf);
/* Split a command line in place at its first space: the verb (any case),
 * and in *arg the rest ("" when there is none). */
enum smtp_verb smtp_parse_verb(char *line, char **arg);
/* MAIL's "FROM:" or RCPT's "TO:" (prefix, any case) at the start of arg:
 * the path after it and any spaces, or NULL without the prefix. */
const char *smtp_path_arg(const char *arg, const char *prefix);

struct smtp_mail_params {
	uint64_t size;		/* SIZE=, 0 when not given */
	bool body_8bit;		/* BODY=8BITMIME */
	bool smtputf8;		/* SMTPUTF8 */
};
enum smtp_params_error {
	SMTP_PARAMS_OK,
	SMTP_PARAMS_BAD_SIZE,	/* SIZE= without a plain number */
	SMTP_PARAMS_UNSUPPORTED,	/* *bad names the parameter */
};
/* MAIL FROM's ESMTP parameters after the path (RFC 1870, 6152, 6531),
 * space-separated, cut up in place.  *p holds what was read up to an
 * error. */
enum smtp_params_error smtp_parse_mail_params(char *params,
					      struct smtp_mail_params *p,
					      const char **bad);

/* smtp_session.c: greet and serve commands until the client leaves. */
__attribute__((noreturn)) void smtp_session_run(struct smtp_session *s);

/* End the session now: flush, log, exit. */
__attribute__((noreturn)) void smtp_exit(struct smtp_session *s,
					 const char *result);

#endif
