/*
 * pop3_blast: a POP3 load generator for the benchmarks.  Commands go one
 * at a time, each waiting for its reply, as poplib and most clients do
 * (and as the Dovecot reference figures were taken).
 *
 *   -m sessions: N sessions of greeting, USER, PASS, STAT, QUIT over C
 *      concurrent connections (threads); -u may name several users
 *      separated by commas, and worker k logs in as user k modulo their
 *      number (a POP3 maildrop is locked for one session at a time, so
 *      concurrent clients need users of their own); prints
 *        sessions=N failed=N seconds=X rate=Y
 *        session_ms median=X p90=X
 *   -m retrdele: one session: login, STAT (at least N messages), then RETR
 *      and DELE of messages 1..N, QUIT; every RETR is read to its final
 *      "." and its octets counted; prints
 *        messages=N bytes=B seconds=X login_s=X retr_s=X quit_s=X mbps=Y
 *
 * Usage: pop3_blast -h HOST -p PORT -u USER -w PASSWORD -m sessions|retrdele
 *                   -n COUNT [-c CONCURRENCY]
 * Exit status: 0 when everything got +OK, 1 otherwise, 2 on usage.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS	60000
#define LINE_MAX_LEN	4096
#define MAX_REPORTED	5

struct options {
	const char *host, *port, *user, *password, *mode;
	unsigned long count, concurrency;
};

static struct options opt;
static struct addrinfo *server;
static atomic_ulong next_session, done_count, failed_count;
static double *session_ms;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long reported;

struct conn {
	const char *user;		/* who this worker logs in as */
	int fd;
	char buf[65536];
	size_t start, end;
	char line[LINE_MAX_LEN + 1];	/* the last line read, NUL-terminated */
	unsigned long long bytes;	/* data bytes read */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noreturn)) static void usage(void)
{
	fprintf(stderr, "usage: pop3_blast -h HOST -p PORT -u USER -w PASSWORD "
		"-m sessions|retrdele -n COUNT [-c CONCURRENCY]\n");
	exit(2);
}

static unsigned long parse_count(const char *text)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < 1 ||
	    text[0] == '-' || v > 100000000UL) {
		fprintf(stderr, "pop3_blast: bad number: %s\n", text);
		usage();
	}
	return v;
}

static void report(const char *what, const struct conn *c, int err)
{
	pthread_mutex_lock(&report_lock);
	if (reported++ < MAX_REPORTED) {
		if (err != 0)
			fprintf(stderr, "pop3_blast: %s: %s\n", what,
				strerror(err));
		else
			fprintf(stderr, "pop3_blast: %s: unexpected reply: %.200s\n",
				what, c ? c->line : "");
	}
	pthread_mutex_unlock(&report_lock);
}

static int wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	for (;;) {
		int n = poll(&p, 1, IO_TIMEOUT_MS);
		if (n > 0)
			return 0;
		if (n == 0)
			return ETIMEDOUT;
		if (errno != EINTR)
			return errno;
	}
}

static int send_all(struct conn *c, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			return n < 0 ? errno : EPIPE;
		}
	}
	return 0;
}

/* Next line into c->line (CRLF removed); 0 or an errno. */
static int read_line(struct conn *c)
{
	for (;;) {
		char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
		if (nl != NULL) {
			size_t len = (size_t)(nl - (c->buf + c->start));
			size_t raw = len + 1;
			if (len > 0 && c->buf[c->start + len - 1] == '\r')
				len--;
			if (len > LINE_MAX_LEN)
				return EMSGSIZE;
			memcpy(c->line, c->buf + c->start, len);
			c->line[len] = '\0';
			c->start += raw;
			c->bytes += raw;
			return 0;
		}
		if (c->start > 0) {
			memmove(c->buf, c->buf + c->start, c->end - c->start);
			c->end -= c->start;
			c->start = 0;
		}
		if (c->end == sizeof c->buf)
			return EMSGSIZE;
		int w = wait_fd(c->fd, POLLIN);
		if (w != 0)
			return w;
		ssize_t n = recv(c->fd, c->buf + c->end, sizeof c->buf - c->end, 0);
		if (n > 0)
			c->end += (size_t)n;
		else if (n == 0)
			return ECONNRESET;
		else if (errno != EINTR && errno != EAGAIN)
			return errno;
	}
}

/* Send a command and expect a +OK line; 0, -1 for -ERR, or an errno. */
static int command(struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int command(struct conn *c, const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof cmd - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof cmd - 2)
		return EMSGSIZE;
	memcpy(cmd + n, "\r\n", 2);
	int r = send_all(c, cmd, (size_t)n + 2);
	if (r == 0)
		r = read_line(c);
	if (r == 0 && strncmp(c->line, "+OK", 3) != 0)
		r = -1;
	return r;
}

/* The data of a multi-line reply, up to ".". */
static int read_data(struct conn *c)
{
	for (;;) {
		int r = read_line(c);
		if (r != 0)
			return r;
		if (strcmp(c->line, ".") == 0)
			return 0;
	}
}

static int conn_open(struct conn *c)
{
	const char *user = c->user;
	memset(c, 0, sizeof *c);
	c->user = user;
	c->fd = socket(server->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return errno;
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, server->ai_addr, server->ai_addrlen) != 0) {
		int e = errno;
		close(c->fd);
		return e;
	}
	int r = read_line(c);
	if (r == 0 && strncmp(c->line, "+OK", 3) != 0)
		r = -1;
	return r;
}

static int login(struct conn *c)
{
	int r = command(c, "USER %s", c->user);
	if (r == 0)
		r = command(c, "PASS %s", opt.password);
	return r;
}

static bool check(int r, const char *what, struct conn *c)
{
	if (r == 0)
		return true;
	report(what, c, r > 0 ? r : 0);
	return false;
}

static bool one_session(struct conn *c)
{
	if (!check(conn_open(c), "connect", c))
		return false;
	bool ok = check(login(c), "login", c) &&
		  check(command(c, "STAT"), "STAT", c) &&
		  check(command(c, "QUIT"), "QUIT", c);
	close(c->fd);
	return ok;
}

static void *session_worker(void *arg)
{
	struct conn *c = arg;
	for (;;) {
		unsigned long i = atomic_fetch_add(&next_session, 1);
		if (i >= opt.count)
			break;
		double t0 = now_s();
		bool ok = one_session(c);
		session_ms[i] = (now_s() - t0) * 1000.0;
		if (ok)
			atomic_fetch_add(&done_count, 1);
		else
			atomic_fetch_add(&failed_count, 1);
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int run_sessions(void)
{
	unsigned long n = opt.concurrency;
	if (n > opt.count)
		n = opt.count;
	pthread_t *threads = calloc(n, sizeof *threads);
	struct conn *conns = calloc(n, sizeof *conns);
	session_ms = calloc(opt.count, sizeof *session_ms);
	char *users = strdup(opt.user);
	if (!threads || !conns || !session_ms || !users) {
		fprintf(stderr, "pop3_blast: out of memory\n");
		return 1;
	}
	char *list[256];
	size_t nusers = 0;
	for (char *u = strtok(users, ","); u && nusers < 256; u = strtok(NULL, ","))
		list[nusers++] = u;
	if (nusers == 0)
		usage();
	for (unsigned long i = 0; i < n; i++)
		conns[i].user = list[i % nusers];
	double t0 = now_s();
	for (unsigned long i = 0; i < n; i++)
		if (pthread_create(&threads[i], NULL, session_worker, &conns[i]) != 0) {
			fprintf(stderr, "pop3_blast: pthread_create failed\n");
			return 1;
		}
	for (unsigned long i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	double secs = now_s() - t0;
	unsigned long done = atomic_load(&done_count);
	unsigned long failed = atomic_load(&failed_count);
	printf("sessions=%lu failed=%lu seconds=%.3f rate=%.1f\n", done, failed,
	       secs, secs > 0 ? (double)done / secs : 0.0);
	qsort(session_ms, opt.count, sizeof *session_ms, cmp_double);
	printf("session_ms median=%.2f p90=%.2f\n", session_ms[opt.count / 2],
	       session_ms[(opt.count * 9) / 10]);
	free(threads);
	free(conns);
	free(session_ms);
	free(users);
	return failed == 0 && done == opt.count ? 0 : 1;
}

static int run_retrdele(void)
{
	static struct conn c;
	c.user = opt.user;
	double t0 = now_s();
	if (!check(conn_open(&c), "connect", &c) || !check(login(&c), "login", &c) ||
	    !check(command(&c, "STAT"), "STAT", &c))
		return 1;
	unsigned long have = strtoul(c.line + 4, NULL, 10);
	if (have < opt.count) {
		fprintf(stderr, "pop3_blast: STAT says %lu messages, need %lu\n",
			have, opt.count);
		return 1;
	}
	double t1 = now_s();
	unsigned long long data = 0;
	for (unsigned long i = 1; i <= opt.count; i++) {
		if (!check(command(&c, "RETR %lu", i), "RETR", &c))
			return 1;
		unsigned long long before = c.bytes;
		if (!check(read_data(&c), "RETR data", &c))
			return 1;
		data += c.bytes - before;
		if (!check(command(&c, "DELE %lu", i), "DELE", &c))
			return 1;
	}
	double t2 = now_s();
	if (!check(command(&c, "QUIT"), "QUIT", &c))
		return 1;
	double t3 = now_s();
	close(c.fd);
	printf("messages=%lu bytes=%llu seconds=%.4f login_s=%.4f retr_s=%.4f "
	       "quit_s=%.4f mbps=%.2f\n", opt.count, data, t3 - t0, t1 - t0,
	       t2 - t1, t3 - t2, (double)data / (t3 - t0) / 1e6);
	return 0;
}

int main(int argc, char **argv)
{
	int ch;
	opt.concurrency = 1;
	while ((ch = getopt(argc, argv, "h:p:u:w:m:n:c:")) != -1) {
		switch (ch) {
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = optarg; break;
		case 'u': opt.user = optarg; break;
		case 'w': opt.password = optarg; break;
		case 'm': opt.mode = optarg; break;
		case 'n': opt.count = parse_count(optarg); break;
		case 'c': opt.concurrency = parse_count(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || !opt.host || !opt.port || !opt.user ||
	    !opt.password || !opt.mode || !opt.count ||
	    strpbrk(opt.user, "\r\n") || strpbrk(opt.password, "\r\n"))
		usage();
	if (opt.concurrency > 256)
		opt.concurrency = 256;
	signal(SIGPIPE, SIG_IGN);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	int e = getaddrinfo(opt.host, opt.port, &hints, &server);
	if (e != 0) {
		fprintf(stderr, "pop3_blast: %s:%s: %s\n", opt.host, opt.port,
			gai_strerror(e));
		return 1;
	}
	int ret;
	if (strcmp(opt.mode, "sessions") == 0)
		ret = run_sessions();
	else if (strcmp(opt.mode, "retrdele") == 0)
		ret = run_retrdele();
	else
		usage();
	freeaddrinfo(server);
	return ret;
}
