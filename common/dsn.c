/*
 * dsn: builds delivery status notifications (RFC 3464, RFC 6522, and the
 * RFC 6533 variants for UTF-8).  See dsn.h.
 */
#include "dsn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "maildate.h"
#include "str.h"

#define DSN_READ_CHUNK 8192

static bool dsn_has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* Text from outside (a remote reply, an address) made safe for one header
 * line: control characters become spaces. */
static void dsn_append_clean(struct str *out, const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		str_append_c(out, *p < 0x20 || *p == 0x7f ? ' ' : (char)*p);
}

/* "4h", "2 days": for the human-readable text. */
static void dsn_duration(unsigned seconds, struct str *out)
{
	if (seconds >= 2 * 86400)
		str_printf(out, "%u days", seconds / 86400);
	else if (seconds >= 2 * 3600)
		str_printf(out, "%u hours", seconds / 3600);
	else if (seconds >= 120)
		str_printf(out, "%u minutes", seconds / 60);
	else
		str_printf(out, "%u seconds", seconds);
}

/* Is s[0..) a "class.subject.detail" code standing as a word?  Its length
 * or 0. */
static size_t dsn_code_at(const char *s)
{
	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	size_t i = 1;
	for (int part = 0; part < 2; part++) {
		if (s[i] != '.')
			return 0;
		i++;
		size_t digits = 0;
		while (s[i] >= '0' && s[i] <= '9' && digits < 4) {
			i++;
			digits++;
		}
		if (digits == 0 || digits > 3)
			return 0;
	}
	if (s[i] != '\0' && strchr(" ,;:)", s[i]) == NULL)
		return 0;
	return i;
}

void dsn_error_status(const char *error, enum dsn_kind kind,
		      char status[DSN_STATUS_MAX])
{
	const char *fallback = kind == DSN_FAILED ? "5.0.0" : "4.0.0";
	snprintf(status, DSN_STATUS_MAX, "%s", fallback);
	if (error == NULL)
		return;
	for (const char *p = error; *p; p++) {
		if (p != error && p[-1] != ' ' && p[-1] != '(')
			continue;
		size_t n = dsn_code_at(p);
		if (n > 0) {
			snprintf(status, DSN_STATUS_MAX, "%.*s", (int)n, p);
			return;
		}
	}
	/* A reply without an enhanced code: its class. */
	const char *said = strstr(error, " said: ");
	if (said != NULL && (said[7] == '4' || said[7] == '5'))
		snprintf(status, DSN_STATUS_MAX, "%c.0.0", said[7]);
}

bool dsn_error_remote(const char *error, struct str *mta, struct str *diag)
{
	if (error == NULL)
		return false;
	const char *said = strstr(error, "] said: ");
	if (said == NULL)
		return false;
	const char *open = said;
	while (open > error && *open != '[')
		open--;
	const char *host = open;
	while (host > error && host[-1] != ' ')
		host--;
	if (*open != '[' || host == open)
		return false;
	char *name = xstrndup(host, (size_t)(open - host));
	dsn_append_clean(mta, name);	/* a header line of its own */
	free(name);
	const char *reply = said + 8;
	const char *end = strstr(reply, " (in reply to ");
	size_t len = end != NULL ? (size_t)(end - reply) : strlen(reply);
	char *copy = xstrndup(reply, len);
	dsn_append_clean(diag, copy);
	free(copy);
	return true;
}

/* How much of p[0..n) is whole header lines: through the line before the
 * empty one, or the last complete line when there is no empty line. */
static size_t dsn_header_length(const char *p, size_t n)
{
	size_t last_nl = 0;	/* length through the last '\n' seen */
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i == 0 || p[i - 1] == '\n')
			return i;	/* the empty line: the header ends */
		last_nl = i + 1;
	}
	return last_nl;
}

int dsn_read_headers(int fd, size_t max, struct str *out)
{
	char *buf = xmalloc(max + 1);
	size_t len = 0;
	while (len < max) {
		size_t want = max - len < DSN_READ_CHUNK ? max - len
							  : DSN_READ_CHUNK;
		ssize_t n = pread(fd, buf + len, want, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return -1;
		}
		if (n == 0)
			break;
		/* Only the new bytes and the one before can hold the end. */
		size_t from = len > 0 ? len - 1 : 0;
		len += (size_t)n;
		if (buf[0] == '\n' ||
		    memmem(buf + from, len - from, "\n\n", 2) != NULL)
			break;
	}
	str_append_n(out, buf, dsn_header_length(buf, len));
	free(buf);
	return 0;
}

static bool dsn_needs_utf8(const struct queue_envelope *env,
			   const size_t *rcpts, size_t n,
			   const char *headers, size_t headers_len,
			   const char *to)
{
	if (env->smtputf8 || dsn_has_8bit(to, strlen(to)) ||
	    dsn_has_8bit(headers, headers_len))
		return true;
	for (size_t i = 0; i < n; i++) {
		const char *a = env->rcpts[rcpts[i]].address;
		if (dsn_has_8bit(a, strlen(a)))
			return true;
	}
	return false;
}

static void dsn_header(const struct dsn_info *info, const char *boundary,
		       bool utf8, struct str *out)
{
	str_append(out, "Date: ");
	mail_date(info->now, out);
	str_printf(out, "\nFrom: MAILER-DAEMON@%s (Mail Delivery System)\n",
		   info->hostname);
	str_append(out, "To: <");
	dsn_append_clean(out, info->to);
	str_append(out, ">\nSubject: ");
	if (info->postmaster_copy)
		str_append(out, "Postmaster Copy: Undelivered Mail\n");
	else if (info->kind == DSN_FAILED)
		str_append(out, "Undelivered Mail Returned to Sender\n");
	else
		str_append(out, "Delayed Mail (still being retried)\n");
	str_printf(out, "Message-ID: <%s.dsn@%s>\n", info->id, info->hostname);
	/* RFC 3834: no auto-responder answers this. */
	str_append(out, "Auto-Submitted: auto-replied\n"
		   "MIME-Version: 1.0\n"
		   "Content-Type: multipart/report; "
		   "report-type=delivery-status;\n");
	str_printf(out, "\tboundary=\"%s\"\n", boundary);
	str_printf(out, "Content-Transfer-Encoding: %s\n\n"
		   "This is a MIME-encapsulated message.\n\n",
		   utf8 ? "8bit" : "7bit");
}

static void dsn_human(const struct dsn_info *info,
		      const struct queue_envelope *env, const size_t *rcpts,
		      size_t n, struct str *out)
{
	str_printf(out, "This is the mail system at host %s.\n\n",
		   info->hostname);
	if (info->postmaster_copy) {
		str_append(out, "A delivery status notification (sent from "
			   "the null sender <>) could not be\n"
			   "delivered.  The details and the notification's "
			   "header follow.\n\n");
	} else if (info->kind == DSN_FAILED) {
		str_append(out, "I'm sorry to have to inform you that your "
			   "message could not\nbe delivered to one or more "
			   "recipients.  The header of your message\n"
			   "is attached below.\n\n");
	} else {
		str_append(out, "####################################"
			   "################################\n"
			   "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO "
			   "RESEND YOUR MESSAGE. #\n"
			   "####################################"
			   "################################\n\n"
			   "Your message could not be delivered for ");
		time_t age = info->now > env->arrival
			     ? info->now - env->arrival : 0;
		dsn_duration((unsigned)age, out);
		str_append(out, ".\nIt will be retried until it is ");
		dsn_duration(info->queue_lifetime, out);
		str_append(out, " old.\n\n");
	}
	for (size_t i = 0; i < n; i++) {
		const struct queue_rcpt *r = &env->rcpts[rcpts[i]];
		str_append(out, "<");
		dsn_append_clean(out, r->address);
		str_append(out, ">: ");
		dsn_append_clean(out, r->last_error != NULL ? r->last_error
				 : info->kind == DSN_FAILED
				   ? "delivery failed" : "not delivered yet");
		str_append(out, "\n");
	}
}

/* "rfc822; a@b" or, for UTF-8, "utf-8; a@b" (RFC 6533). */
static void dsn_address(const char *addr, struct str *out)
{
	str_append(out, dsn_has_8bit(addr, strlen(addr)) ? "utf-8; "
						       : "rfc822; ");
	dsn_append_clean(out, addr);
}

static void dsn_rcpt_fields(const struct dsn_info *info,
			    const struct queue_envelope *env,
			    const struct queue_rcpt *r, struct str *out)
{
	char status[DSN_STATUS_MAX];
	struct str mta = STR_INIT, diag = STR_INIT;

	str_append(out, "\n");
	if (r->orcpt != NULL && r->orcpt[0] != '\0') {
		str_append(out, "Original-Recipient: ");
		if (strchr(r->orcpt, ';') != NULL)
			dsn_append_clean(out, r->orcpt);
		else
			dsn_address(r->orcpt, out);
		str_append(out, "\n");
	}
	str_append(out, "Final-Recipient: ");
	dsn_address(r->address, out);
	str_printf(out, "\nAction: %s\n",
		   info->kind == DSN_FAILED ? "failed" : "delayed");
	dsn_error_status(r->last_error, info->kind, status);
	str_printf(out, "Status: %s\n", status);
	if (dsn_error_remote(r->last_error, &mta, &diag)) {
		str_printf(out, "Remote-MTA: dns; %s\n", str_c(&mta));
		str_printf(out, "Diagnostic-Code: smtp; %s\n", str_c(&diag));
	} else if (r->last_error != NULL && r->last_error[0] != '\0') {
		str_append(out, "Diagnostic-Code: X-Sockmail; ");
		dsn_append_clean(out, r->last_error);
		str_append(out, "\n");
	}
	if (r->attempts > 0) {
		str_append(out, "Last-Attempt-Date: ");
		mail_date(info->now, out);
		str_append(out, "\n");
	}
	if (info->kind == DSN_DELAYED) {
		str_append(out, "Will-Retry-Until: ");
		mail_date(env->arrival + (time_t)info->queue_lifetime, out);
		str_append(out, "\n");
	}
	str_free(&mta);
	str_free(&diag);
}

static void dsn_status_part(const struct dsn_info *info,
			    const struct queue_envelope *env,
			    const size_t *rcpts, size_t n, struct str *out)
{
	str_printf(out, "Reporting-MTA: dns; %s\n", info->hostname);
	str_printf(out, "X-Sockmail-Queue-ID: %s\n", env->id);
	if (env->sender[0] != '\0') {
		str_append(out, "X-Sockmail-Sender: ");
		dsn_address(env->sender, out);
		str_append(out, "\n");
	}
	str_append(out, "Arrival-Date: ");
	mail_date(env->arrival, out);
	str_append(out, "\n");
	for (size_t i = 0; i < n; i++)
		dsn_rcpt_fields(info, env, &env->rcpts[rcpts[i]], out);
}

void dsn_build(const struct dsn_info *info, const struct queue_envelope *env,
	       const size_t *rcpts, size_t n, const char *headers,
	       size_t headers_len, struct str *out)
{
	bool utf8 = dsn_needs_utf8(env, rcpts, n, headers, headers_len,
				   info->to);
	struct str boundary = STR_INIT, delim = STR_INIT;
	/* The queue id and time make the boundary unique; the original
	 * header is the only quoted text (the rest is cleaned of line
	 * breaks), and should it hold the delimiter, the boundary grows
	 * until it does not. */
	str_printf(&boundary, "%s.%lld/%s", info->id, (long long)info->now,
		   info->hostname);
	for (unsigned k = 0;; k++) {
		str_clear(&delim);
		str_printf(&delim, "--%s", str_c(&boundary));
		if (headers_len == 0 || memmem(headers, headers_len, delim.data,
					       delim.len) == NULL)
			break;
		str_printf(&boundary, "=%u", k);
	}
	str_free(&delim);

	dsn_header(info, str_c(&boundary), utf8, out);

	str_printf(out, "--%s\nContent-Description: Notification\n"
		   "Content-Type: text/plain; charset=%s\n\n",
		   str_c(&boundary), utf8 ? "utf-8" : "us-ascii");
	dsn_human(info, env, rcpts, n, out);

	str_printf(out, "\n--%s\nContent-Description: Delivery report\n"
		   "Content-Type: message/%sdelivery-status\n\n",
		   str_c(&boundary), utf8 ? "global-" : "");
	dsn_status_part(info, env, rcpts, n, out);

	str_printf(out, "\n--%s\nContent-Description: %s\n"
		   "Content-Type: %s\n\n", str_c(&boundary),
		   info->postmaster_copy ? "Undelivered Notification Headers"
					 : "Undelivered Message Headers",
		   utf8 ? "message/global-headers" : "text/rfc822-headers");
	str_append_n(out, headers, headers_len);
	if (headers_len > 0 && headers[headers_len - 1] != '\n')
		str_append(out, "\n");
	str_printf(out, "\n--%s--\n", str_c(&boundary));
	str_free(&boundary);
}
