/*
 * stream: bounded, buffered line I/O for a protocol session on fd 0/1.
 *
 * Every handler reads its client through this and nothing else: each read
 * waits at most `timeout` seconds, each line has a caller-given bound, and
 * output is buffered and flushed only when the input buffer runs dry, so
 * pipelined commands get their replies in one write, in order.  A transport
 * (TLS) slots in underneath via stream_set_transport(); protocol code does
 * not change.
 */
#ifndef SOCKMAIL_STREAM_H
#define SOCKMAIL_STREAM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum stream_status {
	STREAM_OK = 0,
	STREAM_EOF = -1,	/* peer closed (at a line boundary or not) */
	STREAM_TIMEOUT = -2,	/* no input (or no progress writing) in time */
	STREAM_ERROR = -3,	/* I/O error, errno or transport error */
	STREAM_TOOLONG = -4,	/* line longer than the bound: see getline */
};

/* A transport under the stream.  read/write return like read(2)/write(2)
 * (-1 with errno EAGAIN to be polled for again); pending tells how many
 * bytes are already decrypted and waiting, so poll() is skipped. */
struct stream_transport {
	long (*read)(void *ctx, void *buf, size_t len);
	long (*write)(void *ctx, const void *buf, size_t len);
	size_t (*pending)(void *ctx);
	void *ctx;
};

struct stream {
	int in_fd, out_fd;
	unsigned timeout;	/* seconds per read or write wait; 0 = none */
	const struct stream_transport *transport;	/* NULL: plain fds */
	char *ibuf;
	size_t ibuf_size, ipos, ilen;
	char *obuf;
	size_t obuf_size, olen;
	int status;		/* sticky error status once I/O failed */
	unsigned long long bytes_in, bytes_out;
};

/* ibuf_size bounds the longest line getline can return whole. */
void stream_init(struct stream *s, int in_fd, int out_fd, unsigned timeout,
		 size_t ibuf_size);
void stream_free(struct stream *s);
void stream_set_transport(struct stream *s, const struct stream_transport *t);

/*
 * Next line, through its '\n', as a pointer into the stream's buffer (valid
 * until the next read call) and its length.  A line longer than max bytes
 * (max <= ibuf_size) gives STREAM_TOOLONG with its first max bytes; the next
 * call continues the same line, so a caller that wants to discard it calls
 * stream_skip_line().  At EOF a last line without '\n' is returned as OK;
 * then STREAM_EOF.
 */
int stream_getline(struct stream *s, size_t max, const char **line,
		   size_t *len);
/* Discard input up to and including the next '\n'. */
int stream_skip_line(struct stream *s);
/* Read exactly len bytes (IMAP literals, SASL), or fewer at EOF (error). */
int stream_read(struct stream *s, void *buf, size_t len);

/* True if input is buffered already (pipelined or injected). */
bool stream_input_buffered(const struct stream *s);
/* Drop buffered input (after STARTTLS: nothing sent in plaintext may be
 * executed inside TLS). */
void stream_discard_input(struct stream *s);

void stream_write(struct stream *s, const void *data, size_t len);
void stream_puts(struct stream *s, const char *text);
void stream_printf(struct stream *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A protocol line: the formatted text and CRLF. */
void stream_vline(struct stream *s, const char *fmt, va_list ap);
void stream_line(struct stream *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Write out what is buffered; STREAM_OK or the sticky error. */
int stream_flush(struct stream *s);

#endif
