/*
 * fuzz_smtp_data: smtp-handler's DATA reader (smtp_data_read in
 * smtp_data.c): dot-unstuffing, the end of data, bare CR / LF refusal,
 * the 1000-octet line bound, the size limit and the Received: loop count.
 * The first input octet picks the mode (bit 0: submission, which adds the
 * missing From:/Date:/Message-ID:) and the size limit (bit 1: 2000 octets,
 * else the default); the rest is what the client sends after 354, written
 * into a pipe that is then closed and read through a struct stream exactly
 * as the session reads its client.  The message goes into a real mailfile
 * in a Maildir on tmpfs.  Invariants checked, against a reference reading
 * of the same octets written here:
 *   - the data ends exactly at the first "." line that follows a CRLF (or
 *     starts the data), and the stream is left right after it, so the
 *     next command is read in step (no SMTP smuggling); without one the
 *     reader reports the client gone;
 *   - a message is accepted exactly when it has no bare CR or LF, no line
 *     over 1000 octets, no more than the size limit and at most 100
 *     Received: headers; when refused, the reason is one of those found;
 *   - the size counted is the unstuffed size with CRLF line ends;
 *   - an accepted message is stored as the reference makes it: one dot
 *     removed from stuffed lines, CRLF as LF, so it never holds a CR; a
 *     submission gets only whole added header lines, at the end of its
 *     header section.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct model {
	bool end_found;
	size_t end;		/* offset of the "." line */
	bool bare, long_line, loop;
	uint64_t size;		/* unstuffed, CRLF = 2 */
	struct str out;		/* the stored text */
	size_t header_end;	/* offset in out of the blank line, or out.len */
};

/* A line starts the data or follows a CRLF. */
static bool line_start(const char *c, size_t i)
{
	return i == 0 || (i >= 2 && c[i - 2] == '\r' && c[i - 1] == '\n');
}

static void model_read(const char *c, size_t len, struct model *m)
{
	memset(m, 0, sizeof *m);
	size_t i;
	for (i = 0; i < len; i++) {
		if (line_start(c, i) && len - i >= 3 &&
		    memcmp(c + i, ".\r\n", 3) == 0) {
			m->end_found = true;
			break;
		}
	}
	m->end = i;
	if (!m->end_found)
		return;
	const char *b = c;
	size_t blen = m->end;
	for (size_t k = 0; k < blen; k++) {
		if (b[k] == '\r' && (k + 1 == blen || b[k + 1] != '\n'))
			m->bare = true;
		if (b[k] == '\n' && (k == 0 || b[k - 1] != '\r'))
			m->bare = true;
	}
	bool in_headers = true;
	unsigned received = 0;
	m->header_end = (size_t)-1;
	for (size_t j = 0; j < blen;) {
		const char *nl = memchr(b + j, '\n', blen - j);
		size_t l = (size_t)(nl - (b + j)) + 1;	/* B ends in CRLF */
		if (l > SMTP_TEXT_MAX)
			m->long_line = true;
		const char *p = b + j;
		size_t pl = l;
		bool ls = line_start(b, j);
		if (ls && p[0] == '.') {
			p++;
			pl--;
		}
		if (ls && in_headers) {
			if (pl == 2 && p[0] == '\r') {
				in_headers = false;
				m->header_end = m->out.len;
			} else if (pl > 9 && strncasecmp(p, "Received:", 9) == 0) {
				received++;
			}
		}
		m->size += pl;
		/* stored: without the CRLF (or LF), then LF */
		size_t body = pl >= 2 && p[pl - 2] == '\r' ? pl - 2 : pl - 1;
		str_append_n(&m->out, p, body);
		str_append_c(&m->out, '\n');
		j += l;
	}
	if (m->header_end == (size_t)-1)
		m->header_end = m->out.len;
	m->loop = received > SMTP_MAX_RECEIVED;
}

static char maildir[64];
static struct config cfg;

static void cleanup(void)
{
	char tmp[96];
	snprintf(tmp, sizeof tmp, "%s/tmp", maildir);
	rmdir(tmp);
	rmdir(maildir);
	config_free(&cfg);
}

static void setup(void)
{
	strcpy(maildir, "/dev/shm/fuzz_smtp_data.XXXXXX");
	if (mkdtemp(maildir) == NULL) {
		strcpy(maildir, "/tmp/fuzz_smtp_data.XXXXXX");
		CHECK(mkdtemp(maildir) != NULL);
	}
	char tmp[96];
	snprintf(tmp, sizeof tmp, "%s/tmp", maildir);
	CHECK(mkdir(tmp, 0700) == 0);
	config_defaults(&cfg);
	atexit(cleanup);
}

/* Everything the stream still holds after the reader returned. */
static void stream_rest(struct stream *io, struct str *out)
{
	for (;;) {
		const char *line;
		size_t len;
		int r = stream_getline(io, io->ibuf_size, &line, &len);
		if (r != STREAM_OK && r != STREAM_TOOLONG)
			return;
		str_append_n(out, line, len);
	}
}

static void read_file(struct mailfile *f, struct str *out)
{
	CHECK(mailfile_finish(f) == 0);
	str_reserve(out, f->size);
	ssize_t n = pread(f->fd, out->data, f->size, 0);
	CHECK(n == (ssize_t)f->size);
	out->len = (size_t)n;
	out->data[out->len] = '\0';
}

static void check_submission(const struct model *m, const struct str *got)
{
	size_t hlen = m->header_end, tail = m->out.len - hlen;
	CHECK(got->len >= m->out.len);
	CHECK(memcmp(str_c(got), str_c(&m->out), hlen) == 0);
	CHECK(memcmp(str_c(got) + got->len - tail, str_c(&m->out) + hlen,
		     tail) == 0);
	/* in between: whole added header lines */
	const char *p = str_c(got) + hlen;
	const char *end = str_c(got) + got->len - tail;
	while (p < end) {
		CHECK(strncmp(p, "From: ", 6) == 0 || strncmp(p, "Date: ", 6) == 0 ||
		      strncmp(p, "Message-ID: ", 12) == 0);
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		CHECK(nl != NULL);
		p = nl + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65537)
		return 0;
	if (maildir[0] == '\0')
		setup();
	const char *c = (const char *)data + 1;
	size_t len = size - 1;
	struct smtp_session s;
	memset(&s, 0, sizeof s);
	s.cfg = &cfg;
	s.mode = data[0] & 1 ? SMTP_MODE_SUBMISSION : SMTP_MODE_MX;
	cfg.message_size_limit = data[0] & 2 ? 2000 : 50 * 1024 * 1024;
	str_append(&s.sender, "alice@example.org");
	snprintf(s.queue_id, sizeof s.queue_id, "FUZZ1");

	int fds[2];
	CHECK(pipe(fds) == 0);
	/* a pipe holds 64 KiB: all of it goes in at once */
	CHECK(write(fds[1], c, len) == (ssize_t)len);
	close(fds[1]);
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	CHECK(null >= 0);
	stream_init(&s.io, fds[0], null, 5, SMTP_AUTH_LINE_MAX + 2);

	struct mailfile f;
	CHECK(mailfile_open(&f, maildir) == 0);
	struct data_reader d = {
		.file = &f, .at_line_start = true, .in_headers = true,
		.submission = s.mode != SMTP_MODE_MX,
	};
	bool ended = smtp_data_read(&s, &d);

	struct model m;
	model_read(c, len, &m);
	CHECK(ended == m.end_found);
	if (ended) {
		struct str rest = STR_INIT;
		stream_rest(&s.io, &rest);
		CHECK(rest.len == len - m.end - 3 &&
		      memcmp(str_c(&rest), c + m.end + 3, rest.len) == 0);
		str_free(&rest);

		CHECK(d.size == m.size);
		bool too_big = m.size > cfg.message_size_limit;
		bool fine = !m.bare && !m.long_line && !m.loop && !too_big;
		CHECK((d.problem == DATA_FINE) == fine);
		CHECK(d.problem == DATA_FINE ||
		      (d.problem == DATA_BARE_NEWLINE && m.bare) ||
		      (d.problem == DATA_LONG_LINE && m.long_line) ||
		      (d.problem == DATA_LOOP && m.loop) ||
		      (d.problem == DATA_TOO_BIG && too_big));
		if (fine) {
			struct str got = STR_INIT;
			read_file(&f, &got);
			CHECK(memchr(str_c(&got), '\r', got.len) == NULL);
			if (s.mode == SMTP_MODE_MX)
				CHECK(got.len == m.out.len &&
				      memcmp(str_c(&got), str_c(&m.out),
					     got.len) == 0);
			else
				check_submission(&m, &got);
			str_free(&got);
		}
	}
	str_free(&m.out);
	mailfile_close(&f);
	str_free(&d.from);
	str_free(&s.sender);
	stream_free(&s.io);
	close(fds[0]);
	close(null);
	return 0;
}
