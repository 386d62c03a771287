/*
 * runner.h: the queue runner's internals, shared by its files (the main
 * loop, per-message processing, local and remote delivery, the SMTP
 * client).  Nothing here is used outside this program and its unit tests.
 */
#ifndef SOCKMAIL_RUNNER_H
#define SOCKMAIL_RUNNER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "dns.h"
#include "dsn.h"
#include "queue.h"
#include "str.h"
#include "stream.h"
#include "strlist.h"
#include "users.h"

#define RUNNER_MAX_WORKERS 4	/* messages delivered at once */
#define RUNNER_MAX_PASSES 3	/* re-list for DSNs queued during a pass */
#define RUNNER_ORPHAN_AGE 3600	/* seconds before an orphan file goes */
#define RUNNER_CONNECT_TIMEOUT 30	/* seconds, at most smtp_timeout */
#define RUNNER_MAX_ADDR_TRIES 10	/* addresses tried per destination */
#define RUNNER_RCPTS_PER_SESSION 100	/* RFC 5321 4.5.3.1.8 minimum */
#define RUNNER_MAX_RCPTS 1000	/* an envelope grown by alias expansion */

/* auth_user of the messages the runner queues itself: a DSN to a sender,
 * and the postmaster copy of a DSN that failed (which is never reported
 * further). */
#define RUNNER_USER_DSN "MAILER-DAEMON"
#define RUNNER_USER_POSTMASTER_COPY "MAILER-DAEMON/postmaster-copy"

/* One process's state (the parent's, or a worker's). */
struct runner {
	const struct config *cfg;
	struct userdb *users;	/* opened on first need */
	bool users_tried;
	struct dns_resolver *dns;	/* opened on first need */
	bool dns_tried;
	struct str dns_error;	/* why it could not be opened */
	/* What happened, for the exit status and the progress line. */
	unsigned delivered, deferred, bounced, dsns;
	bool error;
};

/* The outcome for one recipient in one delivery attempt. */
enum attempt_result {
	ATTEMPT_NONE,		/* not decided (yet): try the next host */
	ATTEMPT_OK,
	ATTEMPT_TEMP,
	ATTEMPT_PERM,
};

struct attempt {
	size_t index;		/* into env->rcpts */
	const char *address;
	enum attempt_result result;
	char status[DSN_STATUS_MAX];	/* "2.0.0", "4.4.1", "5.1.1" */
	struct str text;	/* the reply or the error, one line */
	struct str relay;	/* "mx.example.org[192.0.2.1]:25", "local" */
	bool accepted;		/* RCPT got 2xx in the current session */
};

/* A message being worked on, locked. */
struct runner_msg {
	struct runner *r;
	struct queue_envelope env;
	int fd;			/* the message file, read-only */
	off_t body_off;		/* after the spool's Return-Path line */
	uint64_t crlf_size;	/* size on the wire; 0 until computed */
	time_t now;
	bool changed;		/* env differs from the stored record */
};

/* runner_msg.c */

/* Deliver one message if it is due and nobody else holds it.  Returns
 * false if the message could not be worked on because of an error. */
bool runner_process(struct runner *r, const char *id);
/* When the message needs the runner next: the earliest next_try of a
 * pending recipient, its expiry, or its delay warning; 0 when there is
 * work now (a DSN to send, or nothing left but removing it). */
time_t runner_due(const struct config *cfg, const struct queue_envelope *env);
/* The length of the spool file's first line when it is the Return-Path
 * (see queue.h: a relay leaves it out, a local delivery keeps it), else
 * 0. */
off_t runner_spool_body(int fd);
/* Seconds to wait before retrying after the n-th failed attempt (n >= 1):
 * 15m, 30m, 1h, 2h, then 4h. */
time_t runner_backoff(unsigned attempts);
/* Record the attempts' results in the envelope and the log. */
void runner_apply(struct runner_msg *m, struct attempt *att, size_t n);
void attempt_set(struct attempt *a, enum attempt_result res,
		 const char *status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void attempt_free(struct attempt *a);

/* The user database (NULL if there is none or it cannot be opened) and
 * whether an address's domain is one of ours. */
struct userdb *runner_users(struct runner *r);
bool runner_domain_is_local(struct runner *r, const char *domain);
/* The domain of "local@domain" (after the last '@'), "" if none. */
const char *runner_address_domain(const char *address);

/* runner_local.c: deliver the attempts (local recipients) into their
 * Maildirs.  Recipients that turn out not to be local any more get
 * ATTEMPT_NONE and their local flag cleared; alias targets elsewhere are
 * appended to the envelope as new recipients. */
void local_deliver(struct runner_msg *m, struct attempt *att, size_t n);

/* runner_remote.c: deliver the attempts to domain's mail exchangers, or
 * to the relayhost when domain is NULL.  Every attempt ends decided. */
void remote_deliver(struct runner_msg *m, struct attempt *att, size_t n,
		    const char *domain);

/* The relayhost credentials: "user password" or "user:password" on the
 * first line of a file nobody else may read.  0, or -1 with *err. */
int relay_auth_load(const char *path, struct str *user, struct str *pass,
		    struct str *err);

/* The relayhost setting: "[host]:port", "[host]", "host:port", "host".
 * Brackets mean no MX lookup.  0, or -1 for a malformed value. */
struct relay_dest {
	char host[DNS_NAME_MAX];
	unsigned port;
	bool mx_lookup;
};
int relay_parse(const char *spec, unsigned default_port,
		struct relay_dest *out);

/* smtpc.c: one SMTP client session. */

struct smtpc_target {
	const char *host;	/* the name, for texts and SNI */
	const struct dns_addr *addr;
	unsigned port;
	bool try_tls;		/* STARTTLS when offered */
	bool require_tls;	/* ... and fail without it */
	const char *auth_user;	/* AUTH PLAIN when not NULL */
	const char *auth_pass;
};

enum smtpc_outcome {
	SMTPC_DONE,		/* every attempt decided */
	SMTPC_NEXT,		/* undecided ones: try the next address */
	SMTPC_TLS_FAILED,	/* the handshake failed: retry without TLS */
};

/* Deliver m to the target: attempts that get an answer are decided,
 * the rest stay ATTEMPT_NONE with *error / status saying why (connection
 * failure, 421, timeout, refused greeting...). */
enum smtpc_outcome smtpc_deliver(struct runner_msg *m,
				 const struct smtpc_target *t,
				 struct attempt *att, size_t n,
				 struct str *error,
				 char status[DSN_STATUS_MAX]);

/* smtpc_proto.c: the protocol pieces, testable without a network. */

#define SMTPC_LINE_MAX 2048	/* a reply line kept whole (RFC: 512) */
#define SMTPC_REPLY_LINES_MAX 100	/* lines in one reply */
#define SMTPC_TEXT_MAX 400	/* reply text kept for logs and DSNs */
#define SMTPC_PROTO (-10)	/* not an SMTP reply */

struct smtpc_reply {
	int code;		/* 250; 0 when none was read */
	char enh[DSN_STATUS_MAX];	/* enhanced code, "" if none */
	struct str text;	/* "250 2.0.0 Ok" on one line, bounded */
	struct strlist lines;	/* each line's text after "250-" */
};

void smtpc_reply_free(struct smtpc_reply *r);
/* Parse one line (without or with its CRLF): 0 with the code, whether
 * more lines follow, and the text; SMTPC_PROTO if malformed. */
int smtpc_reply_line(const char *line, size_t len, int *code, bool *more,
		     const char **text, size_t *text_len);
/* Read one (multi-line) reply: 0, SMTPC_PROTO, or a STREAM_ status.
 * Overlong lines are cut (the rest discarded), never an error. */
int smtpc_reply_read(struct stream *io, struct smtpc_reply *r);
/* The status code of a reply: its enhanced code, else "<class>.0.0". */
void smtpc_reply_status(const struct smtpc_reply *r,
			char status[DSN_STATUS_MAX]);

struct smtpc_caps {
	bool pipelining, eightbitmime, smtputf8, starttls, enhanced;
	bool auth_plain;
	bool size;
	uint64_t size_max;	/* 0: no limit announced */
};
/* The extensions in an EHLO reply (lines after the first). */
void smtpc_caps_parse(const struct smtpc_reply *ehlo, struct smtpc_caps *c);

/* LF text to SMTP DATA: CRLF line ends, dot-stuffed; a CR already
 * before an LF is not doubled, and a lone CR is sent as CRLF.  Feed chunks, then end adds the final
 * CRLF if the text lacks one and the "." line. */
struct dotstuff {
	bool line_start;
	bool pending_cr;
};
void dotstuff_init(struct dotstuff *d);
void dotstuff_feed(struct dotstuff *d, const char *in, size_t len,
		   struct str *out);
void dotstuff_end(struct dotstuff *d, struct str *out);

#endif
