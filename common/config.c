/*
 * config: load sockmail.conf.  A table maps each key to a field of struct
 * config and a value type; the file is read with one bounded read and split
 * into lines in place, because every handler loads it once per connection.
 * The first problem found ends the load with "file:line: what".
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_LINE_MAX 4096		/* bytes per line, without the LF */
#define CONFIG_FILE_MAX (1024 * 1024)	/* a config file is a few KiB */

#define DEFAULT_TLS_PRIORITY \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"

enum value_type {
	V_STRING,	/* anything, may be empty */
	V_NONEMPTY,	/* anything but empty */
	V_HOSTNAME,	/* letters, digits, '-', '.' */
	V_ABSPATH,	/* must start with '/' */
	V_OPTPATH,	/* empty, or starts with '/' */
	V_SIZE,		/* bytes, with k/M/G units, at least 1 */
	V_DURATION,	/* seconds, with s/m/h/d/w units */
	V_TIMEOUT,	/* a duration of at least 1 second */
	V_COUNT,	/* unsigned, at least 1 */
	V_PORT,		/* 1..65535 */
	V_AUTH,		/* never | loopback */
};

struct key_def {
	const char *name;
	enum value_type type;
	size_t offset;
};

#define KEY(name, type) { #name, type, offsetof(struct config, name) }

static const struct key_def keys[] = {
	KEY(hostname, V_HOSTNAME),
	KEY(mail_dir, V_ABSPATH),
	KEY(state_dir, V_ABSPATH),
	KEY(spool_dir, V_ABSPATH),
	KEY(tls_cert, V_OPTPATH),
	KEY(tls_key, V_OPTPATH),
	KEY(tls_cert_dir, V_OPTPATH),
	KEY(tls_priority, V_NONEMPTY),
	KEY(sendmail_socket, V_ABSPATH),
	KEY(dns_server, V_STRING),
	KEY(outbound_port, V_PORT),
	KEY(message_size_limit, V_SIZE),
	KEY(max_recipients, V_COUNT),
	KEY(max_bad_commands, V_COUNT),
	KEY(smtp_timeout, V_TIMEOUT),
	KEY(imap_idle_timeout, V_TIMEOUT),
	KEY(pop3_timeout, V_TIMEOUT),
	KEY(auth_plaintext, V_AUTH),
	KEY(relayhost, V_STRING),
	KEY(relayhost_auth_file, V_OPTPATH),
	KEY(queue_lifetime, V_TIMEOUT),
	KEY(delay_warning, V_DURATION),
	KEY(postmaster, V_STRING),
	KEY(auth_fail_limit, V_COUNT),
	KEY(auth_fail_window, V_TIMEOUT),
	KEY(tls_ticket_key_lifetime, V_TIMEOUT),
};

#define N_KEYS (sizeof keys / sizeof keys[0])

const char *config_path(const char *from_command_line)
{
	if (from_command_line != NULL)
		return from_command_line;
	const char *env = getenv("SOCKMAIL_CONFIG");
	if (env != NULL && *env != '\0')
		return env;
	return CONFIG_DEFAULT_PATH;
}

/* The host name as the kernel has it, lower-cased, without a trailing dot.
 * No DNS lookup: that would cost every connection a round trip, and a short
 * name is better fixed by setting hostname in the file. */
static char *default_hostname(void)
{
	char name[HOST_NAME_MAX + 1];

	if (gethostname(name, sizeof name) < 0 || name[0] == '\0')
		return xstrdup("localhost");
	name[sizeof name - 1] = '\0';
	size_t len = strlen(name);
	if (len > 1 && name[len - 1] == '.')
		name[--len] = '\0';
	for (size_t i = 0; i < len; i++)
		name[i] = (char)tolower((unsigned char)name[i]);
	return xstrdup(name);
}

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->path = NULL;
	cfg->hostname = default_hostname();
	cfg->mail_dir = xstrdup("/var/lib/sockmail/mail");
	cfg->state_dir = xstrdup("/var/lib/sockmail");
	cfg->spool_dir = xstrdup("/var/spool/sockmail");
	cfg->tls_cert = xstrdup("");
	cfg->tls_key = xstrdup("");
	cfg->tls_cert_dir = xstrdup("");
	cfg->tls_priority = xstrdup(DEFAULT_TLS_PRIORITY);
	cfg->sendmail_socket = xstrdup("/run/sockmail/sendmail.sock");
	cfg->dns_server = xstrdup("");
	cfg->outbound_port = 25;
	cfg->message_size_limit = 50 * 1024 * 1024;
	cfg->max_recipients = 100;
	cfg->max_bad_commands = 20;
	cfg->smtp_timeout = 300;
	cfg->imap_idle_timeout = 30 * 60;
	cfg->pop3_timeout = 10 * 60;
	cfg->auth_plaintext = AUTH_PLAINTEXT_LOOPBACK;
	cfg->relayhost = xstrdup("");
	cfg->relayhost_auth_file = xstrdup("");
	cfg->queue_lifetime = 5 * 24 * 3600;
	cfg->delay_warning = 4 * 3600;
	cfg->postmaster = xstrdup("");
	cfg->auth_fail_limit = 10;
	cfg->auth_fail_window = 15 * 60;
	cfg->tls_ticket_key_lifetime = 24 * 3600;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		switch (keys[i].type) {
		case V_STRING: case V_NONEMPTY: case V_HOSTNAME:
		case V_ABSPATH: case V_OPTPATH: {
			char **field = (char **)((char *)cfg + keys[i].offset);
			free(*field);
			*field = NULL;
			break;
		}
		default:
			break;
		}
	}
}

/* Leading decimal digits into *n; returns the first byte after them, or NULL
 * if there are none or they overflow. */
static const char *parse_digits(const char *p, uint64_t *n)
{
	uint64_t v = 0;
	const char *start = p;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return NULL;
		v = v * 10 + d;
	}
	if (p == start)
		return NULL;
	*n = v;
	return p;
}

int config_parse_size(const char *text, uint64_t *bytes)
{
	uint64_t n, mult = 1;
	const char *p = parse_digits(text, &n);

	if (p == NULL)
		return -1;
	switch (*p) {
	case 'k': case 'K': mult = 1024; p++; break;
	case 'm': case 'M': mult = 1024 * 1024; p++; break;
	case 'g': case 'G': mult = 1024 * 1024 * 1024; p++; break;
	default: break;
	}
	if (*p == 'b' || *p == 'B')
		p++;
	if (*p != '\0' || n > UINT64_MAX / mult)
		return -1;
	*bytes = n * mult;
	return 0;
}

int config_parse_duration(const char *text, unsigned *seconds)
{
	uint64_t n, mult = 1;
	const char *p = parse_digits(text, &n);

	if (p == NULL)
		return -1;
	switch (*p) {
	case 's': case 'S': mult = 1; p++; break;
	case 'm': case 'M': mult = 60; p++; break;
	case 'h': case 'H': mult = 3600; p++; break;
	case 'd': case 'D': mult = 86400; p++; break;
	case 'w': case 'W': mult = 7 * 86400; p++; break;
	default: break;
	}
	if (*p != '\0' || n > UINT_MAX / mult)
		return -1;
	*seconds = (unsigned)(n * mult);
	return 0;
}

/* A plain unsigned decimal number no larger than max. */
static int parse_unsigned(const char *text, unsigned max, unsigned *out)
{
	uint64_t n;
	const char *p = parse_digits(text, &n);

	if (p == NULL || *p != '\0' || n > max)
		return -1;
	*out = (unsigned)n;
	return 0;
}

static bool valid_hostname(const char *s)
{
	if (*s == '\0' || *s == '.' || *s == '-')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.')
			return false;
	return true;
}

static void replace_string(struct config *cfg, size_t offset, const char *v)
{
	char **field = (char **)((char *)cfg + offset);
	free(*field);
	*field = xstrdup(v);
}

/* Check value v for key k and store it; NULL on success, else what is
 * wrong with it. */
static const char *set_value(struct config *cfg, const struct key_def *k,
			     const char *v)
{
	void *field = (char *)cfg + k->offset;
	uint64_t size;
	unsigned n;

	switch (k->type) {
	case V_NONEMPTY:
		if (*v == '\0')
			return "must not be empty";
		break;
	case V_HOSTNAME:
		if (!valid_hostname(v))
			return "not a valid host name";
		break;
	case V_ABSPATH:
		if (v[0] != '/')
			return "must be an absolute path";
		break;
	case V_OPTPATH:
		if (v[0] != '\0' && v[0] != '/')
			return "must be an absolute path (or empty)";
		break;
	case V_SIZE:
		if (config_parse_size(v, &size) < 0)
			return "not a valid size (like 50M, 512k, 1G)";
		if (size == 0)
			return "must not be 0";
		*(uint64_t *)field = size;
		return NULL;
	case V_DURATION:
	case V_TIMEOUT:
		if (config_parse_duration(v, &n) < 0)
			return "not a valid duration (like 90s, 15m, 4h, 5d)";
		if (n == 0 && k->type == V_TIMEOUT)
			return "must not be 0";
		*(unsigned *)field = n;
		return NULL;
	case V_COUNT:
		if (parse_unsigned(v, UINT_MAX, &n) < 0 || n == 0)
			return "must be a number of at least 1";
		*(unsigned *)field = n;
		return NULL;
	case V_PORT:
		if (parse_unsigned(v, 65535, &n) < 0 || n == 0)
			return "must be a port number from 1 to 65535";
		*(unsigned *)field = n;
		return NULL;
	case V_AUTH:
		if (strcmp(v, "never") == 0)
			*(enum auth_plaintext *)field = AUTH_PLAINTEXT_NEVER;
		else if (strcmp(v, "loopback") == 0)
			*(enum auth_plaintext *)field = AUTH_PLAINTEXT_LOOPBACK;
		else
			return "must be never or loopback";
		return NULL;
	case V_STRING:
		break;
	}
	replace_string(cfg, k->offset, v);
	return NULL;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Trim blanks from both ends of [*start, *end). */
static void trim(char **start, char **end)
{
	while (*start < *end && is_blank(**start))
		(*start)++;
	while (*end > *start && is_blank((*end)[-1]))
		(*end)--;
}

struct parser {
	struct config *cfg;
	const char *path;
	struct str *err;
	unsigned seen_line[N_KEYS];	/* 0 = key not set yet */
};

static int line_error(struct parser *ps, unsigned lineno, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int line_error(struct parser *ps, unsigned lineno, const char *fmt, ...)
{
	va_list ap;

	str_clear(ps->err);
	str_printf(ps->err, "%s:%u: ", ps->path, lineno);
	va_start(ap, fmt);
	str_vprintf(ps->err, fmt, ap);
	va_end(ap);
	return -1;
}

/* One line without its LF, NUL-terminated in place. */
static int parse_line(struct parser *ps, char *line, size_t len,
		      unsigned lineno)
{
	char *start = line, *end = line + len;

	if (end > start && end[-1] == '\r')	/* CRLF file */
		end--;
	for (char *p = start; p < end; p++)
		if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
			return line_error(ps, lineno,
					  "control character in line");
	trim(&start, &end);
	if (start == end || *start == '#')
		return 0;

	char *eq = memchr(start, '=', (size_t)(end - start));
	if (eq == NULL)
		return line_error(ps, lineno, "missing '=' in line");

	/* A '#' after a blank starts a trailing comment. */
	char *vstart = eq + 1, *vend = end;
	for (char *p = vstart; p < vend; p++) {
		if (*p == '#' && is_blank(p[-1])) {
			vend = p;
			break;
		}
	}
	char *kstart = start, *kend = eq;
	trim(&kstart, &kend);
	trim(&vstart, &vend);
	*kend = '\0';
	*vend = '\0';

	if (*kstart == '\0')
		return line_error(ps, lineno, "missing key before '='");
	size_t i;
	for (i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].name, kstart) == 0)
			break;
	if (i == N_KEYS)
		return line_error(ps, lineno, "unknown key '%s'", kstart);
	if (ps->seen_line[i] != 0)
		return line_error(ps, lineno,
				  "duplicate key '%s' (first set on line %u)",
				  kstart, ps->seen_line[i]);
	ps->seen_line[i] = lineno;

	const char *why = set_value(ps->cfg, &keys[i], vstart);
	if (why != NULL)
		return line_error(ps, lineno, "%s = '%s': %s", kstart, vstart,
				  why);
	return 0;
}

/* The whole file into buf, bounded by CONFIG_FILE_MAX. */
static int read_file(const char *path, struct str *buf, struct str *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		goto fail;
	for (;;) {
		str_reserve(buf, 4096);
		size_t room = buf->cap - buf->len - 1;
		ssize_t n = read(fd, buf->data + buf->len, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			goto fail;
		}
		if (n == 0)
			break;
		buf->len += (size_t)n;
		buf->data[buf->len] = '\0';
		if (buf->len > CONFIG_FILE_MAX) {
			close(fd);
			str_clear(err);
			str_printf(err, "%s: file larger than %d bytes", path,
				   CONFIG_FILE_MAX);
			return -1;
		}
	}
	close(fd);
	return 0;
fail:
	str_clear(err);
	str_printf(err, "%s: %s", path, strerror(errno));
	return -1;
}

int config_load(struct config *cfg, const char *path, struct str *err)
{
	struct str buf = STR_INIT;
	struct parser ps = { .cfg = cfg, .path = path, .err = err };
	int ret = 0;

	config_defaults(cfg);
	cfg->path = path;
	if (read_file(path, &buf, err) < 0) {
		str_free(&buf);
		return -1;
	}

	char *p = buf.data, *end = buf.data + buf.len;
	for (unsigned lineno = 1; p < end && ret == 0; lineno++) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *eol = nl != NULL ? nl : end;
		size_t len = (size_t)(eol - p);

		if (memchr(p, '\0', len) != NULL)
			ret = line_error(&ps, lineno, "NUL byte in line");
		else if (len > CONFIG_LINE_MAX)
			ret = line_error(&ps, lineno,
					 "line longer than %d bytes",
					 CONFIG_LINE_MAX);
		else {
			*eol = '\0';
			ret = parse_line(&ps, p, len, lineno);
		}
		p = eol + 1;
	}
	str_free(&buf);
	return ret;
}
