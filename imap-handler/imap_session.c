/*
 * imap_session: the command loop of imap-handler: greeting, reading
 * commands through the parser, dispatch by state (RFC 3501 3), the
 * completions and the updates of the selected folder sent before them,
 * the bad-command limit, and the commands that belong to the session
 * rather than to a mailbox: CAPABILITY, NOOP, CHECK, LOGOUT, STARTTLS,
 * ID (RFC 2971), ENABLE (RFC 5161), NAMESPACE (RFC 2342) and IDLE
 * (RFC 2177, woken by inotify on the folder's new/ and cur/).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "imap.h"
#include "imap_message.h"
#include "log.h"

#define ID_MAX_FIELDS 30	/* RFC 2971 3.3 */

/* The parser's error text; static so that imap_exit frees it whichever
 * command ends the session. */
static struct str read_msg;

/* RFC 3501 7.4.1: no EXPUNGE while answering FETCH, STORE or SEARCH (by
 * sequence number: their UID forms may see one). */
static bool expunge_allowed(const struct imap_command *c)
{
	if (c->uid)
		return true;
	return strcmp(c->name, "FETCH") != 0 && strcmp(c->name, "STORE") != 0 &&
	       strcmp(c->name, "SEARCH") != 0;
}

/* Changes others made to the selected folder, reported before a
 * completion. */
static void send_updates(struct imap_session *s, const struct imap_command *c)
{
	if (s->sel != NULL && strcmp(c->name, "LOGOUT") != 0)
		imap_folder_update(s->sel, &s->io, expunge_allowed(c));
}

static void tagged(struct imap_session *s, const struct imap_command *c,
		   const char *status, const char *fmt, va_list ap)
{
	struct str line = STR_INIT;
	str_printf(&line, "%s %s ", c->tag[0] ? c->tag : "*", status);
	str_vprintf(&line, fmt, ap);
	str_append(&line, "\r\n");
	stream_write(&s->io, line.data, line.len);
	str_free(&line);
}

void imap_ok(struct imap_session *s, const struct imap_command *c,
	     const char *fmt, ...)
{
	send_updates(s, c);
	va_list ap;
	va_start(ap, fmt);
	tagged(s, c, "OK", fmt, ap);
	va_end(ap);
}

void imap_no(struct imap_session *s, const struct imap_command *c,
	     const char *fmt, ...)
{
	send_updates(s, c);
	va_list ap;
	va_start(ap, fmt);
	tagged(s, c, "NO", fmt, ap);
	va_end(ap);
}

/* One reply per command, so the BAD that reaches the limit is answered
 * and the connection closes after it. */
void imap_bad(struct imap_session *s, const struct imap_command *c,
	      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tagged(s, c, "BAD", fmt, ap);
	va_end(ap);
	if (++s->errors >= s->cfg->max_bad_commands) {
		imap_untagged(s, "BYE Too many bad commands, closing connection");
		imap_exit(s, "too many errors");
	}
}

void imap_untagged(struct imap_session *s, const char *fmt, ...)
{
	struct str line = STR_INIT;
	va_list ap;
	va_start(ap, fmt);
	str_append(&line, "* ");
	str_vprintf(&line, fmt, ap);
	va_end(ap);
	str_append(&line, "\r\n");
	stream_write(&s->io, line.data, line.len);
	str_free(&line);
}

void imap_exit(struct imap_session *s, const char *result)
{
	stream_flush(&s->io);
	char counts[4][24];
	snprintf(counts[0], sizeof counts[0], "%lu", s->fetched);
	snprintf(counts[1], sizeof counts[1], "%lu", s->stored);
	snprintf(counts[2], sizeof counts[2], "%lu", s->appended);
	snprintf(counts[3], sizeof counts[3], "%lu", s->expunged);
	log_kv(LOG_INFO, "session end", "PEER", s->peer[0] ? s->peer : NULL,
	       "USER", s->user, "TLS", s->tls ? str_c(&s->tls_info) : NULL,
	       "FETCHED", counts[0], "STORED", counts[1],
	       "APPENDED", counts[2], "EXPUNGED", counts[3],
	       "RESULT", result, NULL);
	if (s->tls != NULL)
		tls_conn_close(s->tls);
	/* Free everything, so that LeakSanitizer and valgrind see a clean
	 * exit and a real leak stands out. */
	imap_unselect(s);
	imap_message_forget(s);
	str_free(&s->maildir);
	str_free(&s->tls_info);
	str_free(&read_msg);
	free(s->user);
	if (s->users != NULL)
		userdb_close(s->users);
	stream_free(&s->io);
	config_free((struct config *)s->cfg);
	exit(0);
}

void imap_start_tls(struct imap_session *s)
{
	struct str err = STR_INIT;
	s->tls = tls_server_start(s->cfg, 0, 1, s->cfg->smtp_timeout, &err);
	if (s->tls == NULL) {
		log_kv(LOG_NOTICE, "TLS handshake failed", "PEER",
		       s->peer[0] ? s->peer : NULL, "ERROR", str_c(&err), NULL);
		str_free(&err);
		s->io.status = STREAM_ERROR;	/* nothing more can be said */
		imap_exit(s, "TLS handshake failed");
	}
	stream_set_transport(&s->io, tls_conn_transport(s->tls));
	tls_conn_describe(s->tls, &s->tls_info);
}

void imap_capabilities(const struct imap_session *s, struct str *out)
{
	str_append(out, "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE "
		   "UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE");
	str_printf(out, " APPENDLIMIT=%" PRIu64, s->cfg->message_size_limit);
	if (s->state != IMAP_NOT_AUTHENTICATED)
		return;
	if (s->tls == NULL && tls_configured(s->cfg))
		str_append(out, " STARTTLS");
	str_append(out, imap_login_allowed(s) ? " AUTH=PLAIN" : " LOGINDISABLED");
}

static void cmd_capability(struct imap_session *s, struct imap_command *c)
{
	struct str caps = STR_INIT;
	imap_capabilities(s, &caps);
	imap_untagged(s, "CAPABILITY %s", str_c(&caps));
	str_free(&caps);
	imap_ok(s, c, "Capability completed");
}

/* NOOP and CHECK: the updates go out with the completion. */
static void cmd_noop(struct imap_session *s, struct imap_command *c)
{
	imap_ok(s, c, "%s completed", c->name);
}

static void cmd_logout(struct imap_session *s, struct imap_command *c)
{
	imap_untagged(s, "BYE Logging out");
	imap_ok(s, c, "Logout completed");
	imap_exit(s, "ok");
}

/* RFC 3501 6.2.1: plaintext sent after STARTTLS is dropped, never run
 * inside TLS. */
static void cmd_starttls(struct imap_session *s, struct imap_command *c)
{
	if (s->tls != NULL) {
		imap_bad(s, c, "TLS is already active");
		return;
	}
	if (!tls_configured(s->cfg)) {
		imap_no(s, c, "TLS is not available");
		return;
	}
	imap_ok(s, c, "Begin TLS negotiation now");
	if (stream_flush(&s->io) != STREAM_OK)
		imap_exit(s, "lost connection");
	stream_discard_input(&s->io);
	imap_start_tls(s);
}

/* RFC 2971: the client's list is checked and otherwise ignored. */
static void cmd_id(struct imap_session *s, struct imap_command *c)
{
	const struct imap_arg *a = c->argc == 1 ? &c->args[0] : NULL;
	bool ok = a != NULL && (a->type == IMAP_ARG_NIL ||
				(a->type == IMAP_ARG_LIST &&
				 a->count % 2 == 0 &&
				 a->count <= 2 * ID_MAX_FIELDS));
	if (!ok) {
		imap_bad(s, c, "Syntax: ID NIL | ID (\"field\" \"value\" ...)");
		return;
	}
	imap_untagged(s, "ID (\"name\" \"sockmail\" \"version\" \"%s\")",
		      SOCKMAIL_VERSION);
	imap_ok(s, c, "ID completed");
}

/* RFC 5161: nothing we offer needs enabling, so nothing is enabled. */
static void cmd_enable(struct imap_session *s, struct imap_command *c)
{
	if (c->argc == 0) {
		imap_bad(s, c, "Syntax: ENABLE capability ...");
		return;
	}
	imap_untagged(s, "ENABLED");
	imap_ok(s, c, "Enable completed");
}

static void cmd_namespace(struct imap_session *s, struct imap_command *c)
{
	imap_untagged(s, "NAMESPACE ((\"\" \"%c\")) NIL NIL", IMAP_SEPARATOR);
	imap_ok(s, c, "Namespace completed");
}

/* Watch the selected folder's new/ and cur/: -1 when not selected or
 * inotify is unavailable (then IDLE polls). */
static int idle_watch(struct imap_session *s)
{
	if (s->sel == NULL)
		return -1;
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		return -1;
	static const char *const subdirs[] = { "new", "cur" };
	struct str path = STR_INIT;
	for (size_t i = 0; i < 2; i++) {
		str_clear(&path);
		str_printf(&path, "%s/%s", s->sel->path, subdirs[i]);
		if (inotify_add_watch(fd, str_c(&path), IN_CREATE | IN_DELETE |
				      IN_MOVED_FROM | IN_MOVED_TO) < 0) {
			log_msg(LOG_WARNING, "inotify on %s: %s", str_c(&path),
				strerror(errno));
			close(fd);
			fd = -1;
			break;
		}
	}
	str_free(&path);
	return fd;
}

static void idle_drain(int fd)
{
	char buf[4096];
	while (read(fd, buf, sizeof buf) > 0)
		;
}

static bool input_pending(const struct imap_session *s)
{
	const struct stream_transport *t = s->io.transport;
	return stream_input_buffered(&s->io) ||
	       (t != NULL && t->pending(t->ctx) > 0);
}

/* Wait for the client (true) or a change in the folder (false); a BYE
 * at the idle timeout. */
static bool idle_wait(struct imap_session *s, int watch, time_t deadline)
{
	for (;;) {
		if (input_pending(s))
			return true;
		time_t now = time(NULL);
		if (now >= deadline) {
			imap_untagged(s, "BYE Idle timeout, logging out");
			imap_exit(s, "idle timeout");
		}
		/* without inotify, look every 30 seconds */
		long wait = (long)(deadline - now);
		if (watch < 0 && s->sel != NULL && wait > 30)
			wait = 30;
		struct pollfd p[2] = { { s->io.in_fd, POLLIN, 0 },
				       { watch, POLLIN, 0 } };
		int r = poll(p, watch >= 0 ? 2 : 1, (int)wait * 1000);
		if (r < 0 && errno != EINTR)
			imap_exit(s, "poll failed");
		if (p[0].revents != 0)
			return true;
		if (r == 0 && (watch >= 0 || s->sel == NULL))
			continue;
		if (watch >= 0)
			idle_drain(watch);
		return false;
	}
}

static void cmd_idle(struct imap_session *s, struct imap_command *c)
{
	/* The watch first, then "+", then one look at the folder: a change
	 * made between the last command's look and the watch (a client that
	 * acts on the "+" at once, say) is reported too, never lost. */
	int watch = idle_watch(s);
	stream_puts(&s->io, "+ idling\r\n");
	if (stream_flush(&s->io) != STREAM_OK)
		imap_exit(s, "lost connection");
	if (s->sel != NULL) {
		imap_folder_update(s->sel, &s->io, true);
		stream_flush(&s->io);
	}
	time_t deadline = time(NULL) + s->cfg->imap_idle_timeout;
	for (;;) {
		if (!idle_wait(s, watch, deadline)) {
			imap_folder_update(s->sel, &s->io, true);
			stream_flush(&s->io);
			continue;
		}
		const char *line;
		size_t len;
		int r = stream_getline(&s->io, 64, &line, &len);
		if (r == STREAM_TOOLONG)
			r = stream_skip_line(&s->io) == STREAM_OK ? STREAM_OK : r;
		if (r != STREAM_OK)
			imap_exit(s, r == STREAM_TIMEOUT ? "timeout" :
				  "lost connection");
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		if (watch >= 0)
			close(watch);
		if (len == 4 && strncasecmp(line, "DONE", 4) == 0)
			imap_ok(s, c, "Idle completed");
		else
			imap_bad(s, c, "Expected DONE");
		return;
	}
}

enum need { ANY, NOT_AUTH, AUTH, SELECTED };

struct command_def {
	const char *name;
	void (*run)(struct imap_session *, struct imap_command *);
	enum need need;
};

static const struct command_def commands[] = {
	{ "CAPABILITY", cmd_capability, ANY },
	{ "NOOP", cmd_noop, ANY },
	{ "LOGOUT", cmd_logout, ANY },
	{ "ID", cmd_id, ANY },
	{ "STARTTLS", cmd_starttls, NOT_AUTH },
	{ "AUTHENTICATE", imap_cmd_authenticate, NOT_AUTH },
	{ "LOGIN", imap_cmd_login, NOT_AUTH },
	{ "SELECT", imap_cmd_select, AUTH },
	{ "EXAMINE", imap_cmd_select, AUTH },
	{ "CREATE", imap_cmd_create, AUTH },
	{ "DELETE", imap_cmd_delete, AUTH },
	{ "RENAME", imap_cmd_rename, AUTH },
	{ "SUBSCRIBE", imap_cmd_subscribe, AUTH },
	{ "UNSUBSCRIBE", imap_cmd_unsubscribe, AUTH },
	{ "LIST", imap_cmd_list, AUTH },
	{ "LSUB", imap_cmd_lsub, AUTH },
	{ "STATUS", imap_cmd_status, AUTH },
	{ "APPEND", imap_cmd_append, AUTH },
	{ "NAMESPACE", cmd_namespace, AUTH },
	{ "ENABLE", cmd_enable, AUTH },
	{ "IDLE", cmd_idle, AUTH },
	{ "CHECK", cmd_noop, SELECTED },
	{ "CLOSE", imap_cmd_close, SELECTED },
	{ "UNSELECT", imap_cmd_unselect, SELECTED },
	{ "EXPUNGE", imap_cmd_expunge, SELECTED },
	{ "SEARCH", imap_cmd_search, SELECTED },
	{ "FETCH", imap_cmd_fetch, SELECTED },
	{ "STORE", imap_cmd_store, SELECTED },
	{ "COPY", imap_cmd_copy, SELECTED },
	{ "MOVE", imap_cmd_move, SELECTED },
};

static bool state_allows(const struct imap_session *s, enum need need)
{
	switch (need) {
	case ANY:
		return true;
	case NOT_AUTH:
		return s->state == IMAP_NOT_AUTHENTICATED;
	case AUTH:
		return s->state == IMAP_AUTHENTICATED ||
		       s->state == IMAP_SELECTED;
	case SELECTED:
		return s->state == IMAP_SELECTED;
	}
	return false;
}

static void dispatch(struct imap_session *s, struct imap_command *c)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		const struct command_def *d = &commands[i];
		if (strcmp(c->name, d->name) != 0)
			continue;
		if (c->uid && d->need != SELECTED)
			imap_bad(s, c, "UID %s is not a command", c->name);
		else if (!state_allows(s, d->need))
			imap_bad(s, c, "%s not allowed %s", c->name,
				 s->state == IMAP_NOT_AUTHENTICATED ?
				 "before login" : "now");
		else
			d->run(s, c);
		return;
	}
	imap_bad(s, c, "Unknown command %s", c->name);
}

void imap_session_run(struct imap_session *s)
{
	struct str caps = STR_INIT;
	imap_capabilities(s, &caps);
	imap_untagged(s, "OK [CAPABILITY %s] %s IMAP4rev1 server ready",
		      str_c(&caps), s->cfg->hostname);
	str_free(&caps);
	for (;;) {
		struct imap_command c = { 0 };
		str_clear(&read_msg);
		switch (imap_command_read(&s->reader, &c, &read_msg)) {
		case IMAP_READ_OK:
			dispatch(s, &c);
			break;
		case IMAP_READ_BAD:
			imap_bad(s, &c, "%s", str_c(&read_msg));
			break;
		case IMAP_READ_TOOBIG:
			imap_no(s, &c, "[TOOBIG] %s", str_c(&read_msg));
			break;
		case IMAP_READ_BYE:
			imap_untagged(s, "BYE %s", str_c(&read_msg));
			imap_command_free(&c);
			imap_exit(s, "protocol error");
		case IMAP_READ_EOF:
			/* a timeout (autologout) or a client gone: the BYE
			 * costs nothing if nobody reads it */
			imap_untagged(s, "BYE Autologout");
			imap_command_free(&c);
			imap_exit(s, "disconnected");
		case IMAP_READ_EMPTY:
			break;
		}
		imap_command_free(&c);
	}
}
