/*
 * log: structured logging to the journal or to stderr.
 *
 * The journal is spoken to directly over its native protocol (one datagram
 * of FIELD=value lines to /run/systemd/journal/socket) instead of through
 * libsystemd, whose load time every per-connection handler would pay.
 *
 * Both sinks carry the same one-line text: control characters in the
 * message are escaped, and values that need it are quoted, so a line can
 * neither be split nor forged by what a client sent, and fail2ban-style
 * regexes keep working.  The journal also gets each value raw in its own
 * SOCKMAIL_<KEY> field.  Every line and value is bounded.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "str.h"

#define LOG_IDENT_MAX 64	/* bytes of the ident kept */
#define LOG_TEXT_MAX 8000	/* message plus KEY=value pairs */
#define LOG_MESSAGE_MAX 4096	/* the free-text part of that */
#define LOG_VALUE_MAX 1024	/* one value, escaped or raw */
#define LOG_KEY_MAX 55		/* so SOCKMAIL_<KEY> fits journald's 64 */
#define LOG_FIELDS_MAX 65536	/* SOCKMAIL_ fields in one datagram */

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

enum sink { SINK_STDERR, SINK_JOURNAL };

static struct {
	bool opened;
	enum sink sink;
	char ident[LOG_IDENT_MAX + 1];
	int journal_fd;			/* -1 until the first journal entry */
	struct sockaddr_un journal_addr;
	socklen_t journal_addrlen;
} log_state = { .journal_fd = -1 };

/* Does $JOURNAL_STREAM ("dev:ino") name the file our fd 2 is? */
static bool stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	struct stat st;
	char *end;

	if (env == NULL || *env == '\0' || fstat(2, &st) < 0)
		return false;
	errno = 0;
	unsigned long long dev = strtoull(env, &end, 10);
	if (errno != 0 || end == env || *end != ':')
		return false;
	const char *ino_text = end + 1;
	unsigned long long ino = strtoull(ino_text, &end, 10);
	if (errno != 0 || end == ino_text || *end != '\0')
		return false;
	return dev == (unsigned long long)st.st_dev &&
	       ino == (unsigned long long)st.st_ino;
}

/* The journal socket address; false if the path does not fit. */
static bool set_journal_addr(void)
{
	const char *path = getenv("SOCKMAIL_JOURNAL_SOCKET");
	if (path == NULL || *path == '\0')
		path = JOURNAL_SOCKET;
	size_t len = strlen(path);

	memset(&log_state.journal_addr, 0, sizeof log_state.journal_addr);
	log_state.journal_addrlen = 0;
	if (len >= sizeof log_state.journal_addr.sun_path)
		return false;
	log_state.journal_addr.sun_family = AF_UNIX;
	memcpy(log_state.journal_addr.sun_path, path, len + 1);
	log_state.journal_addrlen =
		(socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	return true;
}

void log_open(const char *ident)
{
	int saved_errno = errno;
	const char *force = getenv("SOCKMAIL_LOG");

	if (ident == NULL || *ident == '\0')
		ident = "sockmail";
	size_t len = strnlen(ident, LOG_IDENT_MAX);
	memcpy(log_state.ident, ident, len);
	log_state.ident[len] = '\0';

	if (force != NULL && strcmp(force, "stderr") == 0)
		log_state.sink = SINK_STDERR;
	else if (force != NULL && strcmp(force, "journal") == 0)
		log_state.sink = SINK_JOURNAL;
	else
		log_state.sink = stderr_is_journal() ? SINK_JOURNAL
						     : SINK_STDERR;
	if (log_state.sink == SINK_JOURNAL && !set_journal_addr())
		log_state.sink = SINK_STDERR;
	log_state.opened = true;
	errno = saved_errno;
}

/* ---- text formatting ---- */

static bool is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static bool needs_quotes(const char *v)
{
	if (*v == '\0')
		return true;
	for (; *v != '\0'; v++)
		if (*v == ' ' || *v == '"' || *v == '\\' ||
		    is_control((unsigned char)*v))
			return true;
	return false;
}

/* The escaped form of byte c into unit (at most 5 bytes); its length.  In
 * a quoted value '"' and '\\' are escaped too; in free text only control
 * characters are. */
static size_t escape_byte(unsigned char c, bool quoted, char unit[5])
{
	static const char hex[] = "0123456789abcdef";

	switch (c) {
	case '\n': memcpy(unit, "\\n", 2); return 2;
	case '\r': memcpy(unit, "\\r", 2); return 2;
	case '\t': memcpy(unit, "\\t", 2); return 2;
	case '"': case '\\':
		if (!quoted)
			break;
		unit[0] = '\\';
		unit[1] = (char)c;
		return 2;
	default:
		if (!is_control(c))
			break;
		unit[0] = '\\';
		unit[1] = 'x';
		unit[2] = hex[c >> 4];
		unit[3] = hex[c & 15];
		return 4;
	}
	unit[0] = (char)c;
	return 1;
}

static size_t escaped_len(const char *s, bool quoted)
{
	char unit[5];
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += escape_byte((unsigned char)*s, quoted, unit);
	return n;
}

/* Append s escaped, using at most limit bytes of out (limit >= 5).  A value
 * that does not fit is cut at a whole escape and a whole UTF-8 character and
 * ends in "...". */
static void append_escaped(struct str *out, const char *s, bool quoted,
			   size_t limit)
{
	char unit[5];
	size_t room = limit;
	bool cut = escaped_len(s, quoted) > limit;

	if (cut)
		room = limit - 3;
	size_t start = out->len, safe = out->len;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		size_t n = escape_byte(c, quoted, unit);
		if ((c & 0xc0) != 0x80)
			safe = out->len;	/* a character starts here */
		if (out->len - start + n > room) {
			if ((c & 0xc0) == 0x80)
				str_truncate(out, safe);
			break;
		}
		str_append_n(out, unit, n);
	}
	if (cut)
		str_append(out, "...");
}

/* Journal field names allow A-Z 0-9 _ only. */
static void sanitize_key(const char *key, char out[LOG_KEY_MAX + 1])
{
	size_t i;

	for (i = 0; key[i] != '\0' && i < LOG_KEY_MAX; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c >= 'a' && c <= 'z')
			c = (unsigned char)(c - 'a' + 'A');
		else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			c = '_';
		out[i] = (char)c;
	}
	if (i == 0)
		out[i++] = '_';
	out[i] = '\0';
}

/* Append " KEY=value" to text within the budget; false once full. */
static bool append_pair(struct str *text, size_t start, const char *key,
			const char *value)
{
	bool quoted = needs_quotes(value);
	size_t used = text->len - start;
	size_t need = 1 + strlen(key) + 1 + (quoted ? 2 : 0);
	/* Keep room for a closing " ..." and for a value of a few bytes. */
	if (used + need + 8 + 4 > LOG_TEXT_MAX) {
		str_append(text, " ...");
		return false;
	}
	size_t limit = LOG_TEXT_MAX - 4 - used - need;
	if (limit > LOG_VALUE_MAX)
		limit = LOG_VALUE_MAX;

	str_append_c(text, ' ');
	str_append(text, key);
	str_append_c(text, '=');
	if (quoted)
		str_append_c(text, '"');
	append_escaped(text, value, quoted, limit);
	if (quoted)
		str_append_c(text, '"');
	return true;
}

/* The one-line text: message, then the pairs from *pairs if not NULL. */
static void format_text(struct str *text, const char *message, va_list *pairs)
{
	size_t start = text->len;
	char key[LOG_KEY_MAX + 1];
	va_list ap;

	append_escaped(text, message, false, LOG_MESSAGE_MAX);
	if (pairs == NULL)
		return;
	va_copy(ap, *pairs);
	const char *k;
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);
		if (v == NULL)
			continue;
		sanitize_key(k, key);
		if (!append_pair(text, start, key, v))
			break;
	}
	va_end(ap);
}

/* ---- sinks ---- */

static void write_stderr(const char *text)
{
	struct str line = STR_INIT;

	str_printf(&line, "%s[%ld]: %s\n", log_state.ident, (long)getpid(),
		   text);
	/* One write, so concurrent handlers' lines do not interleave. */
	size_t off = 0;
	while (off < line.len) {
		ssize_t n = write(2, line.data + off, line.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	str_free(&line);
}

/* One journal field: "NAME=value\n", or when the value holds a newline
 * "NAME\n" + 64-bit little-endian length + value + "\n". */
static void journal_field(struct str *d, const char *name, const char *value,
			  size_t len)
{
	str_append(d, name);
	if (memchr(value, '\n', len) == NULL) {
		str_append_c(d, '=');
		str_append_n(d, value, len);
	} else {
		unsigned char le[8];
		uint64_t n = len;
		for (int i = 0; i < 8; i++)
			le[i] = (unsigned char)(n >> (8 * i));
		str_append_c(d, '\n');
		str_append_n(d, le, sizeof le);
		str_append_n(d, value, len);
	}
	str_append_c(d, '\n');
}

/* Add SOCKMAIL_<KEY> fields with the raw values; a value longer than
 * LOG_VALUE_MAX is cut and ends in "...". */
static void journal_pairs(struct str *d, va_list *pairs)
{
	char key[LOG_KEY_MAX + 1], name[sizeof "SOCKMAIL_" + LOG_KEY_MAX];
	struct str cut = STR_INIT;
	size_t start = d->len;
	va_list ap;
	const char *k;

	va_copy(ap, *pairs);
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);
		if (v == NULL)
			continue;
		if (d->len - start > LOG_FIELDS_MAX)
			break;
		sanitize_key(k, key);
		memcpy(name, "SOCKMAIL_", 9);
		memcpy(name + 9, key, strlen(key) + 1);
		size_t len = strnlen(v, LOG_VALUE_MAX + 1);
		if (len > LOG_VALUE_MAX) {
			str_clear(&cut);
			str_append_n(&cut, v, LOG_VALUE_MAX - 3);
			str_append(&cut, "...");
			v = cut.data;
			len = cut.len;
		}
		journal_field(d, name, v, len);
	}
	va_end(ap);
	str_free(&cut);
}

static bool send_journal(int priority, const char *text, va_list *pairs)
{
	struct str d = STR_INIT;
	char num[24];

	if (log_state.journal_fd < 0) {
		log_state.journal_fd =
			socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (log_state.journal_fd < 0)
			return false;
	}
	snprintf(num, sizeof num, "%d", priority);
	journal_field(&d, "PRIORITY", num, strlen(num));
	journal_field(&d, "SYSLOG_IDENTIFIER", log_state.ident,
		      strlen(log_state.ident));
	snprintf(num, sizeof num, "%ld", (long)getpid());
	journal_field(&d, "SYSLOG_PID", num, strlen(num));
	journal_field(&d, "MESSAGE", text, strlen(text));
	if (pairs != NULL)
		journal_pairs(&d, pairs);

	ssize_t n;
	do {
		n = sendto(log_state.journal_fd, d.data, d.len, MSG_NOSIGNAL,
			   (const struct sockaddr *)&log_state.journal_addr,
			   log_state.journal_addrlen);
	} while (n < 0 && errno == EINTR);
	str_free(&d);
	return n >= 0;
}

static void emit(int priority, const char *message, va_list *pairs)
{
	struct str text = STR_INIT;

	if (!log_state.opened)
		log_open(NULL);
	priority &= LOG_PRIMASK;
	format_text(&text, message != NULL ? message : "", pairs);
	if (log_state.sink != SINK_JOURNAL ||
	    !send_journal(priority, str_c(&text), pairs))
		write_stderr(str_c(&text));
	str_free(&text);
}

void log_msg(int priority, const char *fmt, ...)
{
	int saved_errno = errno;
	struct str message = STR_INIT;
	va_list ap;

	va_start(ap, fmt);
	str_vprintf(&message, fmt, ap);	/* %m still sees the caller's errno */
	va_end(ap);
	emit(priority, str_c(&message), NULL);
	str_free(&message);
	errno = saved_errno;
}

void log_kv(int priority, const char *message, ...)
{
	int saved_errno = errno;
	va_list ap;

	va_start(ap, message);
	emit(priority, message, &ap);
	va_end(ap);
	errno = saved_errno;
}
