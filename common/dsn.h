/*
 * dsn: delivery status notifications (RFC 3464 in an RFC 6522
 * multipart/report): the bounces and delay warnings the queue runner sends
 * to a message's sender, and the "postmaster copy" of a bounce that could
 * not be delivered itself.
 *
 * A report has three parts: a human-readable explanation, the
 * message/delivery-status part (Reporting-MTA, Arrival-Date, then per
 * recipient Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
 * Last-Attempt-Date) and the original message's header as
 * text/rfc822-headers.  When addresses or headers are UTF-8 the RFC 6533
 * types (message/global-delivery-status, message/global-headers, "utf-8;"
 * addresses) are used instead.  Output has LF line ends: it is written into
 * the queue through a mailfile.
 *
 * The per-recipient details come from the recipient's last_error text as
 * the queue runner writes it: an enhanced status code ("5.1.1") anywhere
 * in it as a word, and "host[ip] said: <SMTP reply> (in reply to ...)"
 * when a remote server answered.
 */
#ifndef SOCKMAIL_DSN_H
#define SOCKMAIL_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "queue.h"
#include "str.h"

#define DSN_STATUS_MAX 16	/* "5.123.123" with room */
#define DSN_HEADERS_MAX (64 * 1024)	/* original header bytes quoted */

enum dsn_kind {
	DSN_FAILED,		/* bounce: Action: failed */
	DSN_DELAYED,		/* warning: Action: delayed */
};

struct dsn_info {
	enum dsn_kind kind;
	const char *hostname;	/* Reporting-MTA, MAILER-DAEMON@hostname */
	const char *to;		/* recipient of the report (an address) */
	const char *id;		/* the report's queue id, for Message-ID */
	time_t now;		/* Date:, Last-Attempt-Date */
	unsigned queue_lifetime;	/* seconds, for the delay text */
	bool postmaster_copy;	/* to the postmaster: a bounce that failed */
};

/*
 * Append the whole report message (header and body) for the recipients
 * env->rcpts[rcpts[0..n)] to *out.  headers/headers_len is the original
 * message's header block (see dsn_read_headers); may be empty.
 */
void dsn_build(const struct dsn_info *info, const struct queue_envelope *env,
	       const size_t *rcpts, size_t n, const char *headers,
	       size_t headers_len, struct str *out);

/* Read the header block of the message in fd (from offset 0 up to the
 * empty line), at most max bytes, cut at a line end.  0, or -1 with errno. */
int dsn_read_headers(int fd, size_t max, struct str *out);

/* The status code for a recipient's error text: the first enhanced code
 * in it, else one made from an SMTP reply code ("said: 550" -> "5.0.0"),
 * else "5.0.0" for failed and "4.0.0" for delayed. */
void dsn_error_status(const char *error, enum dsn_kind kind,
		      char status[DSN_STATUS_MAX]);

/* From "... host[ip] said: 550 5.1.1 text (in reply to RCPT TO command)":
 * the host into *mta and "550 5.1.1 text" into *diag; false (nothing
 * appended) when the error is not a remote server's reply. */
bool dsn_error_remote(const char *error, struct str *mta, struct str *diag);

#endif
