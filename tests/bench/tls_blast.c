/*
 * tls_blast: TLS connection-rate benchmark for the handlers.  Each of N
 * connections, one after another: connect, read the 220, EHLO, STARTTLS,
 * TLS handshake (with -r, resuming the session saved from the first
 * connection), EHLO, QUIT.  With -i the TLS starts at once (port 465
 * style).  Prints
 *
 *   conns=N failed=N resumed=N seconds=X rate=Y conn/s
 *
 * Usage: tls_blast -h HOST -p PORT -n CONNECTIONS [-r] [-i]
 * Exit status 0 when every connection completed, 1 otherwise.
 */
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT 30

struct conn {
	int fd;
	gnutls_session_t tls;	/* NULL while plain */
	char buf[4096];
	size_t len;
};

static int conn_read(struct conn *c, char *dst, size_t size)
{
	if (c->tls) {
		ssize_t n;
		do
			n = gnutls_record_recv(c->tls, dst, size);
		while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
		return n > 0 ? (int)n : -1;
	}
	ssize_t n = read(c->fd, dst, size);
	return n > 0 ? (int)n : -1;
}

static int conn_write(struct conn *c, const char *text)
{
	size_t len = strlen(text);
	if (c->tls)
		return gnutls_record_send(c->tls, text, len) == (ssize_t)len ? 0 : -1;
	return write(c->fd, text, len) == (ssize_t)len ? 0 : -1;
}

/* Read one whole reply (last line "NNN ") and return its code. */
static int conn_reply(struct conn *c)
{
	for (;;) {
		char *start = c->buf;
		char *nl;
		while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
			bool last = nl - start >= 4 && start[3] == ' ';
			int code = atoi(start);
			start = nl + 1;
			if (last) {
				c->len -= (size_t)(start - c->buf);
				memmove(c->buf, start, c->len);
				return code;
			}
		}
		if (c->len == sizeof c->buf)
			return -1;
		int n = conn_read(c, c->buf + c->len, sizeof c->buf - c->len);
		if (n <= 0)
			return -1;
		c->len += (size_t)n;
	}
}

static int dial(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	struct timeval tv = { IO_TIMEOUT, 0 };
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		int one = 1;	/* as mail clients do: no Nagle delays */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	return fd;
}

static gnutls_certificate_credentials_t creds;
static gnutls_datum_t saved;	/* session data for resumption */

static int start_tls(struct conn *c, bool resume, bool *resumed)
{
	gnutls_init(&c->tls, GNUTLS_CLIENT);
	gnutls_set_default_priority(c->tls);
	gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, creds);
	gnutls_transport_set_int(c->tls, c->fd);
	if (resume && saved.data)
		gnutls_session_set_data(c->tls, saved.data, saved.size);
	int r;
	do
		r = gnutls_handshake(c->tls);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0) {
		fprintf(stderr, "tls_blast: handshake: %s\n", gnutls_strerror(r));
		return -1;
	}
	*resumed = gnutls_session_is_resumed(c->tls);
	return 0;
}

/* One whole session; returns 0 on success. */
static int session(const char *host, const char *port, bool implicit,
		   bool resume, bool *resumed)
{
	struct conn c = { .fd = dial(host, port) };
	int ok = c.fd >= 0 ? 0 : -1;
	if (ok == 0 && implicit)
		ok = start_tls(&c, resume, resumed);
	if (ok == 0 && conn_reply(&c) != 220)
		ok = -1;
	if (ok == 0 && !implicit) {
		if (conn_write(&c, "EHLO bench.example\r\n") || conn_reply(&c) != 250 ||
		    conn_write(&c, "STARTTLS\r\n") || conn_reply(&c) != 220 ||
		    start_tls(&c, resume, resumed))
			ok = -1;
	}
	if (ok == 0 && (conn_write(&c, "EHLO bench.example\r\n") ||
			conn_reply(&c) != 250 || conn_write(&c, "QUIT\r\n") ||
			conn_reply(&c) != 221))
		ok = -1;
	if (c.tls) {
		/* With TLS 1.3 the ticket arrives after the handshake; it is
		 * in hand once the first records were read. */
		if (ok == 0 && resume && saved.data == NULL)
			gnutls_session_get_data2(c.tls, &saved);
		gnutls_bye(c.tls, GNUTLS_SHUT_WR);
		gnutls_deinit(c.tls);
	}
	if (c.fd >= 0)
		close(c.fd);
	return ok;
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *port = NULL;
	unsigned long n = 100;
	bool resume = false, implicit = false;
	int opt;
	while ((opt = getopt(argc, argv, "h:p:n:ri")) != -1) {
		switch (opt) {
		case 'h': host = optarg; break;
		case 'p': port = optarg; break;
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'r': resume = true; break;
		case 'i': implicit = true; break;
		default:
			fprintf(stderr, "usage: tls_blast -h HOST -p PORT -n N [-r] [-i]\n");
			return 2;
		}
	}
	if (port == NULL || n == 0) {
		fprintf(stderr, "usage: tls_blast -h HOST -p PORT -n N [-r] [-i]\n");
		return 2;
	}
	gnutls_global_init();
	gnutls_certificate_allocate_credentials(&creds);
	/* prime the session cache outside the timing */
	bool resumed = false;
	if (resume && session(host, port, implicit, true, &resumed) != 0)
		return 1;
	unsigned long failed = 0, nresumed = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned long i = 0; i < n; i++) {
		resumed = false;
		if (session(host, port, implicit, resume, &resumed) != 0)
			failed++;
		nresumed += resumed;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) +
		      (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("conns=%lu failed=%lu resumed=%lu seconds=%.3f rate=%.1f conn/s\n",
	       n, failed, nresumed, secs, (double)(n - failed) / secs);
	gnutls_free(saved.data);
	gnutls_certificate_free_credentials(creds);
	gnutls_global_deinit();
	return failed ? 1 : 0;
}
