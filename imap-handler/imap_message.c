/*
 * imap_message: loads a message of the selected folder in the CRLF form
 * IMAP serves (Maildir files have LF line ends), whole or just its header,
 * and parses its MIME structure on demand.  The session keeps the last
 * message loaded, since clients tend to fetch one message's parts in a row
 * of commands (BODYSTRUCTURE, then BODY[1], then BODY[2]...).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap.h"
#include "imap_message.h"

#define READ_CHUNK (64 * 1024)
/* a header longer than this without its blank line: read it all */
#define HEADER_READ_MAX (1024 * 1024)

void imap_crlf_append(struct str *out, const char *src, size_t len)
{
	size_t i = 0;
	str_reserve(out, len + len / 32 + 2);
	while (i < len) {
		const char *lf = memchr(src + i, '\n', len - i);
		size_t n = lf != NULL ? (size_t)(lf - (src + i)) : len - i;
		str_append_n(out, src + i, n);
		i += n;
		if (lf == NULL)
			break;
		/* lone LF -> CRLF; an existing CRLF stays as it is */
		if (i == 0 || src[i - 1] != '\r')
			str_append_c(out, '\r');
		str_append_c(out, '\n');
		i++;
	}
}

static void message_reset(struct imap_message *m)
{
	if (m->parsed)
		mime_free(&m->mime);
	m->parsed = false;
	m->whole = false;
	m->uid = 0;
	str_clear(&m->text);
}

/* The end of the header block (after its blank line) in CRLF text, or 0
 * if there is none yet. */
static size_t crlf_header_end(const char *text, size_t len, size_t from)
{
	if (len >= 2 && text[0] == '\r' && text[1] == '\n')
		return 2;	/* an empty header */
	if (len < 4)
		return 0;
	const char *p = memmem(text + from, len - from, "\r\n\r\n", 4);
	return p != NULL ? (size_t)(p - text) + 4 : 0;
}

/*
 * Read fd into m->text as CRLF, at most limit octets of file.  With
 * header_only stop after the header's blank line (unless the header is
 * overlong).  A CR ending one chunk is held back until the next, so that
 * a CRLF split between two reads is not taken for a lone LF.
 */
static int read_message(int fd, struct imap_message *m, uint64_t limit,
			bool header_only)
{
	char *buf = xmalloc(READ_CHUNK + 1);
	size_t carry = 0;	/* a held-back CR at buf[0] */
	uint64_t total = 0;
	size_t hdr_end = 0;
	int ret = 0;

	m->whole = true;
	for (;;) {
		ssize_t r = read(fd, buf + carry, READ_CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -1;
			break;
		}
		total += (uint64_t)r;
		if (total > limit) {
			errno = EFBIG;
			ret = -1;
			break;
		}
		size_t n = carry + (size_t)r;
		if (r == 0) {
			imap_crlf_append(&m->text, buf, n);
			break;
		}
		carry = buf[n - 1] == '\r' ? 1 : 0;
		size_t before = m->text.len;
		imap_crlf_append(&m->text, buf, n - carry);
		if (carry)
			buf[0] = '\r';
		if (!header_only || m->text.len > HEADER_READ_MAX)
			continue;
		hdr_end = crlf_header_end(m->text.data, m->text.len,
					  before >= 3 ? before - 3 : 0);
		if (hdr_end > 0) {
			str_truncate(&m->text, hdr_end);
			m->whole = false;
			break;
		}
	}
	free(buf);
	return ret;
}

struct imap_message *imap_message_get(struct imap_session *s, size_t idx,
				      bool header_only)
{
	struct imap_folder *f = s->sel;
	if (f == NULL || idx >= f->count) {
		errno = ENOENT;
		return NULL;
	}
	uint32_t uid = f->msgs[idx].uid;
	if (s->msg_cache == NULL)
		s->msg_cache = xcalloc(1, sizeof *s->msg_cache);
	struct imap_message *m = s->msg_cache;
	if (m->uid == uid && uid != 0 && (m->whole || header_only))
		return m;

	message_reset(m);
	int fd = imap_folder_msg_open(f, idx);
	if (fd < 0)
		return NULL;
	/* the file's CRLF size is at most twice its LF size; beyond what
	 * the server would ever have accepted, refuse */
	uint64_t limit = s->cfg->message_size_limit * 2 + 1024 * 1024;
	struct stat st;
	int ret = fstat(fd, &st);
	if (ret == 0 && (uint64_t)st.st_size > limit) {
		errno = EFBIG;
		ret = -1;
	}
	if (ret == 0) {
		if (!header_only)
			str_reserve(&m->text, (size_t)st.st_size +
					      (size_t)st.st_size / 16 + 1);
		ret = read_message(fd, m, limit, header_only);
	}
	int saved = errno;
	close(fd);
	if (ret < 0) {
		message_reset(m);
		errno = saved;
		return NULL;
	}
	if (m->text.data == NULL)
		str_append(&m->text, "");	/* an empty file */
	m->uid = uid;
	return m;
}

const struct mime_part *imap_message_mime(struct imap_message *m)
{
	if (!m->parsed) {
		mime_parse(str_c(&m->text), m->text.len, &m->mime);
		m->parsed = true;
	}
	return &m->mime;
}

size_t imap_message_header_end(const struct imap_message *m)
{
	if (m->parsed)
		return m->mime.body;
	size_t end = crlf_header_end(str_c(&m->text), m->text.len, 0);
	return end > 0 ? end : m->text.len;
}

void imap_message_forget(struct imap_session *s)
{
	struct imap_message *m = s->msg_cache;
	if (m == NULL)
		return;
	message_reset(m);
	str_free(&m->text);
	free(m);
	s->msg_cache = NULL;
}
