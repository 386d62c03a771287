/*
 * stream: bounded, buffered line I/O on a pair of file descriptors, with an
 * optional transport (TLS) underneath.  See stream.h.
 */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "str.h"

#define STREAM_OBUF_SIZE 16384

static void stream_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void stream_init(struct stream *s, int in_fd, int out_fd, unsigned timeout,
		 size_t ibuf_size)
{
	memset(s, 0, sizeof *s);
	s->in_fd = in_fd;
	s->out_fd = out_fd;
	s->timeout = timeout;
	s->ibuf_size = ibuf_size;
	s->ibuf = xmalloc(ibuf_size);
	s->obuf_size = STREAM_OBUF_SIZE;
	s->obuf = xmalloc(s->obuf_size);
	/* Non-blocking, so a client that stops reading cannot hold a write
	 * forever: every wait goes through poll() with the timeout. */
	stream_set_nonblock(in_fd);
	stream_set_nonblock(out_fd);
	/* Replies leave in whole flushes already; Nagle would only hold a
	 * TLS flight or a lone reply back for a delayed ACK.  Not a socket
	 * (a pipe in a test): nothing to do. */
	int one = 1;
	(void)setsockopt(out_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void stream_free(struct stream *s)
{
	free(s->ibuf);
	free(s->obuf);
	s->ibuf = s->obuf = NULL;
}

void stream_set_transport(struct stream *s, const struct stream_transport *t)
{
	s->transport = t;
}

/* Wait until fd is ready for events, at most the stream's timeout. */
static int stream_wait(struct stream *s, int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int ms = s->timeout ? (int)s->timeout * 1000 : -1;
	for (;;) {
		int n = poll(&p, 1, ms);
		if (n > 0)
			return STREAM_OK;
		if (n == 0)
			return STREAM_TIMEOUT;
		if (errno != EINTR)
			return STREAM_ERROR;
	}
}

static long stream_raw_read(struct stream *s, void *buf, size_t len)
{
	if (s->transport)
		return s->transport->read(s->transport->ctx, buf, len);
	return read(s->in_fd, buf, len);
}

static long stream_raw_write(struct stream *s, const void *buf, size_t len)
{
	if (s->transport)
		return s->transport->write(s->transport->ctx, buf, len);
	return write(s->out_fd, buf, len);
}

static bool stream_transport_pending(struct stream *s)
{
	return s->transport && s->transport->pending &&
	       s->transport->pending(s->transport->ctx) > 0;
}

int stream_flush(struct stream *s)
{
	size_t done = 0;
	while (s->status == STREAM_OK && done < s->olen) {
		long n = stream_raw_write(s, s->obuf + done, s->olen - done);
		if (n > 0) {
			done += (size_t)n;
			s->bytes_out += (unsigned long long)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			s->status = stream_wait(s, s->out_fd, POLLOUT);
		} else {
			s->status = STREAM_ERROR;
		}
	}
	s->olen = 0;
	return s->status;
}

/* Read more input into ibuf, compacting it first.  Flushes pending output
 * before blocking, so that replies to a pipelined group leave together. */
static int stream_fill(struct stream *s)
{
	if (s->status != STREAM_OK)
		return s->status;
	if (s->ipos > 0) {
		memmove(s->ibuf, s->ibuf + s->ipos, s->ilen - s->ipos);
		s->ilen -= s->ipos;
		s->ipos = 0;
	}
	if (s->ilen == s->ibuf_size)
		return STREAM_TOOLONG;
	if (s->olen > 0 && stream_flush(s) != STREAM_OK)
		return s->status;
	for (;;) {
		if (!stream_transport_pending(s)) {
			int w = stream_wait(s, s->in_fd, POLLIN);
			if (w != STREAM_OK)
				return w;	/* a timeout is not sticky */
		}
		long n = stream_raw_read(s, s->ibuf + s->ilen,
					 s->ibuf_size - s->ilen);
		if (n > 0) {
			s->ilen += (size_t)n;
			s->bytes_in += (unsigned long long)n;
			return STREAM_OK;
		}
		if (n == 0)
			return STREAM_EOF;
		if (errno != EINTR && errno != EAGAIN) {
			s->status = STREAM_ERROR;
			return s->status;
		}
	}
}

int stream_getline(struct stream *s, size_t max, const char **line,
		   size_t *len)
{
	if (max > s->ibuf_size)
		max = s->ibuf_size;
	size_t scanned = 0;
	for (;;) {
		const char *start = s->ibuf + s->ipos;
		size_t avail = s->ilen - s->ipos;
		size_t limit = avail < max ? avail : max;
		const char *nl = memchr(start + scanned, '\n', limit - scanned);
		if (nl != NULL) {
			*line = start;
			*len = (size_t)(nl - start) + 1;
			s->ipos += *len;
			return STREAM_OK;
		}
		if (avail >= max) {
			*line = start;
			*len = max;
			s->ipos += max;
			return STREAM_TOOLONG;
		}
		scanned = limit;	/* relative to ipos, which fill may move */
		int r = stream_fill(s);
		if (r == STREAM_EOF && avail > 0) {
			*line = s->ibuf + s->ipos;
			*len = avail;
			s->ipos += avail;
			return STREAM_OK;
		}
		if (r != STREAM_OK)
			return r;
	}
}

int stream_skip_line(struct stream *s)
{
	for (;;) {
		const char *line;
		size_t len;
		int r = stream_getline(s, s->ibuf_size, &line, &len);
		if (r == STREAM_OK)
			return STREAM_OK;
		if (r != STREAM_TOOLONG)
			return r;
	}
}

int stream_read(struct stream *s, void *buf, size_t len)
{
	char *out = buf;
	while (len > 0) {
		if (s->ipos == s->ilen) {
			s->ipos = s->ilen = 0;
			int r = stream_fill(s);
			if (r != STREAM_OK)
				return r;
		}
		size_t n = s->ilen - s->ipos;
		if (n > len)
			n = len;
		memcpy(out, s->ibuf + s->ipos, n);
		s->ipos += n;
		out += n;
		len -= n;
	}
	return STREAM_OK;
}

bool stream_input_buffered(const struct stream *s)
{
	return s->ipos < s->ilen;
}

void stream_discard_input(struct stream *s)
{
	s->ipos = s->ilen = 0;
}

void stream_write(struct stream *s, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0 && s->status == STREAM_OK) {
		if (s->olen == s->obuf_size)
			stream_flush(s);
		size_t n = s->obuf_size - s->olen;
		if (n > len)
			n = len;
		memcpy(s->obuf + s->olen, p, n);
		s->olen += n;
		p += n;
		len -= n;
	}
}

void stream_puts(struct stream *s, const char *text)
{
	stream_write(s, text, strlen(text));
}

void stream_vline(struct stream *s, const char *fmt, va_list ap)
{
	struct str buf = STR_INIT;
	str_vprintf(&buf, fmt, ap);
	str_append(&buf, "\r\n");
	stream_write(s, buf.data, buf.len);
	str_free(&buf);
}

void stream_line(struct stream *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	stream_vline(s, fmt, ap);
	va_end(ap);
}

void stream_printf(struct stream *s, const char *fmt, ...)
{
	struct str buf = STR_INIT;
	va_list ap;
	va_start(ap, fmt);
	str_vprintf(&buf, fmt, ap);
	va_end(ap);
	stream_write(s, str_c(&buf), buf.len);
	str_free(&buf);
}
