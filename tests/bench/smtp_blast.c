/*
 * smtp_blast: an SMTP load generator for the benchmarks, in the manner of
 * Postfix's smtp-source.  Worker threads each open a connection, take the
 * 220 greeting, say EHLO and send one message (or -m messages) with MAIL,
 * RCPT and DATA pipelined when the server offers PIPELINING, then QUIT.
 * Every reply code is checked; a message counts as sent only on the 250
 * after its final dot.  Prints the rate and the connect-to-220 latency:
 *
 *   sent=N failed=N seconds=X rate=Y msg/s
 *   greeting_ms n=N median=X p90=X min=X max=X
 *
 * Usage: smtp_blast -h HOST -p PORT -n MESSAGES -c CONCURRENCY
 *                   -s MSG_SIZE_BYTES -t RCPT@DOMAIN [-m MSGS_PER_CONN]
 *                   [-f MAX_FAILURES]
 * Exit status: 0 when every message was sent, 1 otherwise, 2 on usage.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "str.h"

#define SENDER		"bench@remote.example"
#define HELO_NAME	"remote.example"
#define IO_TIMEOUT	30		/* seconds, per read or write */
#define LINE_MAX_LEN	1024		/* a reply line longer than this is an error */
#define REPLY_MAX_LINES	100		/* a multi-line reply longer than this too */
#define BODY_LINE_LEN	72
#define MAX_REPORTED	5		/* errors printed in full; the rest counted */

struct options {
	const char *host;
	const char *port;
	const char *rcpt;
	unsigned long messages;
	unsigned long concurrency;
	unsigned long size;
	unsigned long per_conn;
	unsigned long max_failures;
};

/* State the workers share; counters are atomics, the error report a mutex. */
static struct options opt;
static struct addrinfo *server;
static const char *body;		/* the shared message body, ending CRLF */
static size_t body_len;
static size_t msg_size;			/* headers + body, without the dot */
static atomic_ulong next_msg;		/* next message number to claim */
static atomic_ulong sent_count;
static atomic_ulong failed_count;
static atomic_bool giving_up;
static double *greet_ms;		/* one slot per connection */
static atomic_ulong greet_count;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long reported;

/* One connection: the socket and its bounded read buffer. */
struct conn {
	int fd;
	char buf[LINE_MAX_LEN * 4];
	size_t start, end;
	struct str last;		/* the last reply line read, for messages */
	bool pipelining;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: smtp_blast -h HOST -p PORT -n MESSAGES "
		"-c CONCURRENCY -s MSG_SIZE_BYTES -t RCPT@DOMAIN\n"
		"                  [-m MSGS_PER_CONN] [-f MAX_FAILURES]\n");
	exit(2);
}

static unsigned long parse_count(const char *text, unsigned long min)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < min ||
	    text[0] == '-' || v > (ULONG_MAX >> 8)) {
		fprintf(stderr, "smtp_blast: bad number: %s\n", text);
		usage();
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	int c;
	opt.per_conn = 1;
	opt.max_failures = 10;
	while ((c = getopt(argc, argv, "h:p:n:c:s:t:m:f:")) != -1) {
		switch (c) {
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = optarg; break;
		case 'n': opt.messages = parse_count(optarg, 1); break;
		case 'c': opt.concurrency = parse_count(optarg, 1); break;
		case 's': opt.size = parse_count(optarg, 1); break;
		case 't': opt.rcpt = optarg; break;
		case 'm': opt.per_conn = parse_count(optarg, 1); break;
		case 'f': opt.max_failures = parse_count(optarg, 1); break;
		default: usage();
		}
	}
	if (optind != argc || !opt.host || !opt.port || !opt.rcpt ||
	    !opt.messages || !opt.concurrency || !opt.size)
		usage();
	if (opt.concurrency > 1000)
		opt.concurrency = 1000;
	if (opt.concurrency > opt.messages)
		opt.concurrency = opt.messages;
	/* An address with CR, LF or <> would break the command line. */
	if (strpbrk(opt.rcpt, "\r\n<> ") || strlen(opt.rcpt) > 256) {
		fprintf(stderr, "smtp_blast: bad recipient: %s\n", opt.rcpt);
		usage();
	}
}

/* The fixed-width header block of message number n: its length does not
 * depend on n, so the body can be built once for the requested size. */
static void build_headers(struct str *h, unsigned long n)
{
	str_clear(h);
	str_printf(h, "From: <%s>\r\nTo: <%s>\r\nSubject: bench message "
		   "%010lu\r\nMessage-ID: <%010lu.%010ld@" HELO_NAME ">\r\n"
		   "\r\n", SENDER, opt.rcpt, n, n, (long)getpid());
}

/* Body lines of BODY_LINE_LEN printable characters, none starting with a
 * dot (so no dot-stuffing), the last one shortened to land on len bytes
 * exactly; every line ends CRLF and none is empty. */
static void build_body(size_t len)
{
	static const char chars[] =
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	struct str b = STR_INIT;
	size_t line = 0;

	if (len < 3)
		len = 3;
	str_reserve(&b, len);
	while (b.len < len) {
		size_t left = len - b.len;
		size_t n = left <= BODY_LINE_LEN + 2 ? left - 2 : BODY_LINE_LEN;
		/* Leave at least one character plus CRLF for the last line. */
		if (left > BODY_LINE_LEN + 2 && left - (n + 2) < 3)
			n -= 3;
		for (size_t i = 0; i < n; i++)
			str_append_c(&b, chars[(line + i) % (sizeof chars - 1)]);
		str_append(&b, "\r\n");
		line++;
	}
	body_len = b.len;
	body = b.data;
}

static void report(const char *what, const struct conn *c, int err)
{
	pthread_mutex_lock(&report_lock);
	if (reported++ < MAX_REPORTED) {
		if (err != 0)
			fprintf(stderr, "smtp_blast: %s: %s\n", what,
				strerror(err));
		else
			fprintf(stderr, "smtp_blast: %s: unexpected reply: "
				"%.200s\n", what, c ? str_c(&c->last) : "");
	}
	pthread_mutex_unlock(&report_lock);
}

static int write_all(int fd, const struct iovec *iov_in, int iovcnt)
{
	struct iovec iov[4];
	if (iovcnt > 4)
		return EINVAL;
	memcpy(iov, iov_in, sizeof iov[0] * (size_t)iovcnt);
	struct iovec *v = iov;
	while (iovcnt > 0) {
		ssize_t n = writev(fd, v, iovcnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? ETIMEDOUT : errno;
		size_t done = (size_t)n;
		while (iovcnt > 0 && done >= v->iov_len) {
			done -= v->iov_len;
			v++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			v->iov_base = (char *)v->iov_base + done;
			v->iov_len -= done;
		}
	}
	return 0;
}

static int send_text(struct conn *c, const char *text)
{
	struct iovec v = { (void *)text, strlen(text) };
	return write_all(c->fd, &v, 1);
}

/* Read one CRLF-terminated line into c->last (without CRLF).  Returns 0,
 * or an errno value; EPROTO for a line that is too long or a closed
 * connection. */
static int read_line(struct conn *c)
{
	for (;;) {
		char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
		if (nl != NULL) {
			size_t n = (size_t)(nl - (c->buf + c->start));
			if (n > 0 && nl[-1] == '\r')
				n--;
			str_clear(&c->last);
			str_append_n(&c->last, c->buf + c->start, n);
			c->start = (size_t)(nl - c->buf) + 1;
			return 0;
		}
		if (c->end - c->start >= LINE_MAX_LEN)
			return EPROTO;
		if (c->start > 0) {
			memmove(c->buf, c->buf + c->start, c->end - c->start);
			c->end -= c->start;
			c->start = 0;
		}
		ssize_t n = read(c->fd, c->buf + c->end, sizeof c->buf - c->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? ETIMEDOUT : errno;
		if (n == 0)
			return ECONNRESET;
		c->end += (size_t)n;
	}
}

/* Read a whole (possibly multi-line) reply; returns its code, or -errno.
 * With pipelining_check, notes whether a line offers PIPELINING. */
static int read_reply(struct conn *c, bool pipelining_check)
{
	for (int lines = 0; lines < REPLY_MAX_LINES; lines++) {
		int err = read_line(c);
		if (err != 0)
			return -err;
		const char *l = str_c(&c->last);
		if (c->last.len < 3 || l[0] < '1' || l[0] > '5' ||
		    l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' ||
		    (c->last.len > 3 && l[3] != ' ' && l[3] != '-'))
			return -EPROTO;
		if (pipelining_check && c->last.len >= 14 &&
		    strncasecmp(l + 4, "PIPELINING", 10) == 0 &&
		    (l[14] == '\0' || l[14] == ' '))
			c->pipelining = true;
		if (c->last.len == 3 || l[3] == ' ')
			return (l[0] - '0') * 100 + (l[1] - '0') * 10 +
			       (l[2] - '0');
	}
	return -EPROTO;
}

/* Expect a reply with the given code; report and return false otherwise. */
static bool expect(struct conn *c, int code, const char *what, bool ehlo)
{
	int got = read_reply(c, ehlo);
	if (got == code)
		return true;
	report(what, c, got < 0 ? -got : 0);
	return false;
}

static int open_conn(struct conn *c)
{
	struct timeval tv = { IO_TIMEOUT, 0 };
	int one = 1;

	c->fd = socket(server->ai_family, server->ai_socktype | SOCK_CLOEXEC,
		       server->ai_protocol);
	if (c->fd < 0)
		return errno;
	/* Linux applies SO_SNDTIMEO to connect() too. */
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
	    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
	    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
		return errno;
	while (connect(c->fd, server->ai_addr, server->ai_addrlen) != 0) {
		if (errno != EINTR)
			return errno == EINPROGRESS ? ETIMEDOUT : errno;
	}
	return 0;
}

static void close_conn(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->start = c->end = 0;
	c->pipelining = false;
}

/* The connection up to a successful EHLO, with the greeting timed. */
static bool start_session(struct conn *c)
{
	int err = open_conn(c);
	if (err != 0) {
		report("connect", NULL, err);
		return false;
	}
	double t0 = now_s();
	if (!expect(c, 220, "greeting", false))
		return false;
	unsigned long slot = atomic_fetch_add(&greet_count, 1);
	if (slot < opt.messages)
		greet_ms[slot] = (now_s() - t0) * 1000.0;
	if ((err = send_text(c, "EHLO " HELO_NAME "\r\n")) != 0) {
		report("EHLO", NULL, err);
		return false;
	}
	return expect(c, 250, "EHLO", true);
}

/* MAIL, RCPT and DATA in one write, then their three replies in order, as
 * RFC 2920 allows; all three are read even after a refusal, to stay in
 * step. */
static bool envelope_pipelined(struct conn *c, const struct str *cmd)
{
	int err = send_text(c, str_c(cmd));
	if (err != 0) {
		report("MAIL/RCPT/DATA", NULL, err);
		return false;
	}
	bool ok = expect(c, 250, "MAIL", false);
	ok = expect(c, 250, "RCPT", false) && ok;
	return expect(c, 354, "DATA", false) && ok;
}

/* The same without PIPELINING: one command, one reply. */
static bool envelope_lockstep(struct conn *c, const struct str *cmd)
{
	static const char *const names[3] = { "MAIL", "RCPT", "DATA" };
	static const int codes[3] = { 250, 250, 354 };
	const char *p = str_c(cmd);

	for (int i = 0; i < 3; i++) {
		const char *eol = strchr(p, '\n');
		struct iovec v = { (void *)p, (size_t)(eol - p) + 1 };
		int err = write_all(c->fd, &v, 1);
		if (err != 0) {
			report(names[i], NULL, err);
			return false;
		}
		if (!expect(c, codes[i], names[i], false))
			return false;
		p = eol + 1;
	}
	return true;
}

/* One message transaction on an open session: true on 250 after the dot. */
static bool send_message(struct conn *c, unsigned long n, struct str *cmd,
			 struct str *hdr)
{
	str_clear(cmd);
	str_printf(cmd, "MAIL FROM:<" SENDER "> SIZE=%zu\r\n"
		   "RCPT TO:<%s>\r\nDATA\r\n", msg_size, opt.rcpt);
	if (!(c->pipelining ? envelope_pipelined(c, cmd)
			    : envelope_lockstep(c, cmd)))
		return false;

	build_headers(hdr, n);
	struct iovec m[3] = { { hdr->data, hdr->len },
			      { (void *)body, body_len },
			      { (void *)".\r\n", 3 } };
	int err = write_all(c->fd, m, 3);
	if (err != 0) {
		report("message", NULL, err);
		return false;
	}
	return expect(c, 250, "end of data", false);
}

/* Claim the next message number; false when all are taken or we gave up. */
static bool claim(unsigned long *n)
{
	if (atomic_load(&giving_up))
		return false;
	*n = atomic_fetch_add(&next_msg, 1);
	return *n < opt.messages;
}

static void count_failure(void)
{
	if (atomic_fetch_add(&failed_count, 1) + 1 >= opt.max_failures)
		atomic_store(&giving_up, true);
}

static void *worker(void *arg)
{
	struct conn *c = xcalloc(1, sizeof *c);
	struct str cmd = STR_INIT, hdr = STR_INIT;
	unsigned long n;
	(void)arg;

	c->fd = -1;
	while (claim(&n)) {
		if (!start_session(c)) {
			count_failure();
			close_conn(c);
			continue;
		}
		/* The first claimed message, then up to per_conn - 1 more. */
		unsigned long done = 0;
		bool ok;
		do {
			ok = send_message(c, n, &cmd, &hdr);
			if (ok)
				atomic_fetch_add(&sent_count, 1);
			else
				count_failure();
		} while (ok && ++done < opt.per_conn && claim(&n));
		if (ok) {
			int err = send_text(c, "QUIT\r\n");
			if (err != 0)
				report("QUIT", NULL, err);
			else
				(void)expect(c, 221, "QUIT", false);
		}
		close_conn(c);
	}
	str_free(&cmd);
	str_free(&hdr);
	str_free(&c->last);
	free(c);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double percentile(const double *v, size_t n, double p)
{
	size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

static void print_greeting_stats(void)
{
	size_t n = atomic_load(&greet_count);
	if (n > opt.messages)
		n = opt.messages;
	if (n == 0) {
		printf("greeting_ms n=0\n");
		return;
	}
	qsort(greet_ms, n, sizeof greet_ms[0], cmp_double);
	double median = n % 2 ? greet_ms[n / 2]
			      : (greet_ms[n / 2 - 1] + greet_ms[n / 2]) / 2;
	printf("greeting_ms n=%zu median=%.3f p90=%.3f min=%.3f max=%.3f\n",
	       n, median, percentile(greet_ms, n, 90), greet_ms[0],
	       greet_ms[n - 1]);
}

static void resolve(void)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	int err = getaddrinfo(opt.host, opt.port, &hints, &server);
	if (err != 0) {
		fprintf(stderr, "smtp_blast: %s port %s: %s\n", opt.host,
			opt.port, gai_strerror(err));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	/* A server that closes early must give EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	resolve();

	struct str probe = STR_INIT;
	build_headers(&probe, 0);
	if (probe.len + 3 > opt.size)
		build_body(3);
	else
		build_body(opt.size - probe.len);
	msg_size = probe.len + body_len;
	str_free(&probe);
	greet_ms = xcalloc(opt.messages, sizeof greet_ms[0]);

	pthread_t *threads = xcalloc(opt.concurrency, sizeof threads[0]);
	unsigned long started = 0;
	double t0 = now_s();
	for (; started < opt.concurrency; started++) {
		int err = pthread_create(&threads[started], NULL, worker, NULL);
		if (err != 0) {
			fprintf(stderr, "smtp_blast: pthread_create: %s\n",
				strerror(err));
			break;
		}
	}
	for (unsigned long i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	double secs = now_s() - t0;

	unsigned long sent = atomic_load(&sent_count);
	unsigned long failed = atomic_load(&failed_count);
	if (reported > MAX_REPORTED)
		fprintf(stderr, "smtp_blast: %lu more errors not shown\n",
			reported - MAX_REPORTED);
	if (atomic_load(&giving_up))
		fprintf(stderr, "smtp_blast: gave up after %lu failures; "
			"%lu messages not attempted\n", failed,
			opt.messages - sent - failed);
	printf("sent=%lu failed=%lu seconds=%.3f rate=%.1f msg/s\n", sent,
	       failed, secs, secs > 0 ? (double)sent / secs : 0.0);
	print_greeting_stats();
	fflush(stdout);

	freeaddrinfo(server);
	free(threads);
	free(greet_ms);
	free((void *)body);
	return sent == opt.messages && failed == 0 ? 0 : 1;
}
