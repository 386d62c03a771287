/*
 * sendmail: the sendmail(8) interface for local programs (cron, PHP's
 * mail(), scripts):  sendmail [-t] [-i|-oi] [-f FROM] [-F NAME] [RCPT...]
 * reads a message on standard input and hands it over SMTP to
 * `smtp-handler --local` listening on the unix socket sendmail_socket
 * (sockmail-sendmail.socket).  The handler learns our uid from the kernel,
 * so this program needs no setuid or setgid bit and no password.
 *
 * Input is LF text (CRLF is accepted too); without -i a line holding only
 * "." ends it, as with the traditional sendmail.  -t takes the recipients
 * from To:, Cc: and Bcc: and removes Bcc:.  Exit codes are sysexits(3).
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "stream.h"
#include "str.h"
#include "strlist.h"

#define HEADER_MAX (1024 * 1024)	/* -t reads the header section in memory */
#define LINE_MAX_LEN 65536

struct options {
	bool from_headers;	/* -t */
	bool dot_ends;		/* without -i */
	const char *from;	/* -f */
	const char *name;	/* -F */
	const char *config;
	bool list_queue;	/* -bp, or called as mailq */
	struct strlist rcpts;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: sendmail [-t] [-i|-oi] [-f FROM] [-F NAME] "
		     "[-c FILE] [RCPT...] < message\n"
		     "       sendmail -bp | mailq   (the queue: sockmailctl queue list)\n");
}

__attribute__((noreturn)) static void die(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("sendmail: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(code);
}

/* mailq, and sendmail -bp: the queue listing is sockmailctl's, installed
 * beside this program. */
__attribute__((noreturn)) static void list_queue(const char *config)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 32);
	if (n <= 0)
		die(EX_OSERR, "cannot find sockmailctl: %s", strerror(errno));
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	strcpy(slash + 1, "sockmailctl");
	if (config != NULL)
		execl(self, "sockmailctl", "-c", config, "queue", "list",
		      (char *)NULL);
	else
		execl(self, "sockmailctl", "queue", "list", (char *)NULL);
	die(EX_UNAVAILABLE, "cannot run %s: %s", self, strerror(errno));
}

/* Traditional options: -oi, -odb, -oem and friends are accepted; only -oi
 * means something here. */
static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	o->dot_ends = true;
	while ((c = getopt_long(argc, argv, "tif:F:o:B:b:c:r:N:R:vU", longopts,
				NULL)) != -1) {
		switch (c) {
		case 't': o->from_headers = true; break;
		case 'i': o->dot_ends = false; break;
		case 'f': case 'r': o->from = optarg; break;
		case 'F': o->name = optarg; break;
		case 'c': o->config = optarg; break;
		case 'o':
			if (strcmp(optarg, "i") == 0)
				o->dot_ends = false;
			break;
		case 'b':
			if (strcmp(optarg, "p") == 0)
				o->list_queue = true;
			else if (strcmp(optarg, "m") != 0)
				die(EX_USAGE, "-b%s is not supported", optarg);
			break;
		case 'B': case 'N': case 'R': case 'v': case 'U':
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			puts("sendmail (sockmail) " SOCKMAIL_VERSION);
			exit(0);
		default:
			usage(stderr);
			exit(EX_USAGE);
		}
	}
	const char *base = strrchr(argv[0], '/');
	if (o->list_queue || strcmp(base ? base + 1 : argv[0], "mailq") == 0)
		list_queue(o->config);
	for (int i = optind; i < argc; i++) {
		/* "a@b, c@d" as one argument is common in scripts */
		addr_header_list(argv[i], &o->rcpts);
	}
}

/* One input line (LF or CRLF), without its line end; false at EOF. */
static bool read_line(struct str *line, bool *overlong)
{
	str_clear(line);
	*overlong = false;
	int ch;
	while ((ch = getchar()) != EOF) {
		if (ch == '\n')
			break;
		if (line->len >= LINE_MAX_LEN) {
			*overlong = true;
			continue;
		}
		str_append_c(line, (char)ch);
	}
	if (ch == EOF && line->len == 0)
		return false;
	if (line->len > 0 && line->data[line->len - 1] == '\r')
		str_truncate(line, line->len - 1);
	return true;
}

struct header_state {
	struct strlist headers;	/* whole header fields with continuations */
	bool has_from;
};

static bool header_name_is(const char *field, const char *name)
{
	size_t n = strlen(name);
	return strncasecmp(field, name, n) == 0 && field[n] == ':';
}

/* Read the header section (bounded) into h. */
static void read_headers(struct header_state *h, struct str *first_body,
			 bool *have_body, bool dot_ends)
{
	struct str line = STR_INIT;
	size_t total = 0;
	bool overlong;
	*have_body = false;
	while (read_line(&line, &overlong)) {
		if (overlong)
			die(EX_DATAERR, "input line longer than %d bytes", LINE_MAX_LEN);
		if (dot_ends && strcmp(str_c(&line), ".") == 0)
			break;
		total += line.len + 1;
		if (total > HEADER_MAX)
			die(EX_DATAERR, "header section larger than %d bytes", HEADER_MAX);
		if ((line.data && (line.data[0] == ' ' || line.data[0] == '\t')) &&
		    h->headers.n > 0) {
			struct str f = STR_INIT;
			str_printf(&f, "%s\n%s", h->headers.items[h->headers.n - 1],
				   str_c(&line));
			free(h->headers.items[h->headers.n - 1]);
			h->headers.items[h->headers.n - 1] = xstrdup(str_c(&f));
			str_free(&f);
			continue;
		}
		if (line.len == 0 || !memchr(str_c(&line), ':', line.len)) {
			/* end of headers: an empty line, or a body line
			 * without any header before it */
			*have_body = true;
			str_append(first_body, str_c(&line));
			break;
		}
		strlist_add(&h->headers, str_c(&line));
		if (header_name_is(str_c(&line), "From"))
			h->has_from = true;
	}
	str_free(&line);
}

static void rcpts_from_headers(const struct header_state *h,
			       struct strlist *rcpts)
{
	for (size_t i = 0; i < h->headers.n; i++) {
		const char *f = h->headers.items[i];
		if (header_name_is(f, "To") || header_name_is(f, "Cc"))
			addr_header_list(strchr(f, ':') + 1, rcpts);
		else if (header_name_is(f, "Bcc"))
			addr_header_list(strchr(f, ':') + 1, rcpts);
	}
}

/* ---- the SMTP conversation with smtp-handler --local ---- */

static int smtp_code(struct stream *s, struct str *text)
{
	str_clear(text);
	for (;;) {
		const char *line;
		size_t len;
		if (stream_getline(s, 4096, &line, &len) != STREAM_OK)
			return -1;
		str_append_n(text, line, len);
		if (len < 4 || line[3] != '-')
			return atoi(line);
	}
}

static void smtp_send_piece(struct stream *s, const char *text, size_t len)
{
	if (len > 0 && text[0] == '.')
		stream_write(s, ".", 1);	/* dot-stuffing */
	stream_write(s, text, len);
	stream_write(s, "\r\n", 2);
}

/* One line of the message.  A lone CR inside it (a cron job's progress
 * output, say) ends a line as well: the server refuses a bare CR (the
 * SMTP smuggling defence), and the queue runner sends one the same way. */
static void smtp_send_line(struct stream *s, const char *text, size_t len)
{
	const char *cr;
	while ((cr = memchr(text, '\r', len)) != NULL) {
		size_t n = (size_t)(cr - text);
		smtp_send_piece(s, text, n);
		text += n + 1;
		len -= n + 1;
	}
	smtp_send_piece(s, text, len);
}

static int connect_socket(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sun.sun_path)
		die(EX_CONFIG, "sendmail_socket path too long: %s", path);
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0)
		die(EX_TEMPFAIL, "cannot connect to %s: %s (is "
		    "sockmail-sendmail.socket running?)", path, strerror(errno));
	return fd;
}

/* Expect a code class, or die with the server's words. */
static void expect(struct stream *s, int want, const char *what)
{
	struct str text = STR_INIT;
	int code = smtp_code(s, &text);
	if (code / 100 != want) {
		if (code < 0)
			die(EX_TEMPFAIL, "%s: the mail server closed the connection", what);
		while (text.len && (text.data[text.len - 1] == '\n' ||
				    text.data[text.len - 1] == '\r'))
			str_truncate(&text, text.len - 1);
		die(code >= 500 ? EX_DATAERR : EX_TEMPFAIL, "%s: %s", what,
		    str_c(&text));
	}
	str_free(&text);
}

static void default_sender(const struct config *cfg, struct str *out)
{
	struct passwd *pw = getpwuid(getuid());
	str_printf(out, "%s@%s", pw ? pw->pw_name : "nobody", cfg->hostname);
}

int main(int argc, char **argv)
{
	struct options o = { .rcpts = STRLIST_INIT };
	parse_args(argc, argv, &o);
	struct config cfg;
	struct str err = STR_INIT;
	if (config_load(&cfg, config_path(o.config), &err) != 0)
		die(EX_CONFIG, "%s", str_c(&err));

	struct header_state h = { .headers = STRLIST_INIT };
	struct str first_body = STR_INIT;
	bool have_body;
	read_headers(&h, &first_body, &have_body, o.dot_ends);
	if (o.from_headers)
		rcpts_from_headers(&h, &o.rcpts);
	if (o.rcpts.n == 0)
		die(EX_USAGE, "no recipients (give them as arguments, or use -t)");

	struct str sender = STR_INIT;
	if (o.from)
		str_append(&sender, o.from);
	else
		default_sender(&cfg, &sender);

	int fd = connect_socket(cfg.sendmail_socket);
	struct stream s;
	stream_init(&s, fd, fd, cfg.smtp_timeout, 8192);
	expect(&s, 2, "greeting");
	stream_puts(&s, "EHLO localhost\r\n");
	expect(&s, 2, "EHLO");
	stream_printf(&s, "MAIL FROM:<%s>\r\n", str_c(&sender));
	expect(&s, 2, "MAIL FROM");
	size_t accepted = 0, refused = 0;
	struct str text = STR_INIT;
	for (size_t i = 0; i < o.rcpts.n; i++) {
		stream_printf(&s, "RCPT TO:<%s>\r\n", o.rcpts.items[i]);
		int code = smtp_code(&s, &text);
		if (code / 100 == 2) {
			accepted++;
		} else {
			refused++;
			fprintf(stderr, "sendmail: <%s>: %s", o.rcpts.items[i],
				str_c(&text));
		}
	}
	if (accepted == 0)
		die(EX_NOUSER, "no recipient was accepted");
	stream_puts(&s, "DATA\r\n");
	expect(&s, 3, "DATA");
	if (!h.has_from && o.name) {
		struct str from = STR_INIT;
		str_printf(&from, "From: \"%s\" <%s>", o.name, str_c(&sender));
		smtp_send_line(&s, from.data, from.len);
		str_free(&from);
	}
	for (size_t i = 0; i < h.headers.n; i++) {
		char *f = h.headers.items[i];
		if (o.from_headers && header_name_is(f, "Bcc"))
			continue;
		/* in a header a lone CR is a space: a line break there
		 * would cut the field in two */
		for (char *cr = f; (cr = strchr(cr, '\r')) != NULL; )
			*cr = ' ';
		for (const char *p = f, *nl; ; p = nl + 1) {
			nl = strchr(p, '\n');
			smtp_send_line(&s, p, nl ? (size_t)(nl - p) : strlen(p));
			if (nl == NULL)
				break;
		}
	}
	if (have_body) {
		stream_puts(&s, "\r\n");
		if (first_body.len > 0)
			smtp_send_line(&s, first_body.data, first_body.len);
		struct str line = STR_INIT;
		bool overlong;
		while (read_line(&line, &overlong)) {
			if (overlong)
				die(EX_DATAERR, "input line longer than %d bytes",
				    LINE_MAX_LEN);
			if (o.dot_ends && strcmp(str_c(&line), ".") == 0)
				break;
			smtp_send_line(&s, str_c(&line), line.len);
		}
		str_free(&line);
	}
	stream_puts(&s, ".\r\n");
	expect(&s, 2, "end of data");
	stream_puts(&s, "QUIT\r\n");
	stream_flush(&s);
	stream_free(&s);
	close(fd);
	str_free(&text);
	str_free(&sender);
	str_free(&first_body);
	strlist_free(&h.headers);
	strlist_free(&o.rcpts);
	config_free(&cfg);
	return refused ? EX_NOUSER : EX_OK;
}
