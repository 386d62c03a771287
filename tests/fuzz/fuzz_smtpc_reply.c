/*
 * fuzz_smtpc_reply: the queue runner's SMTP client protocol pieces
 * (queue-runner/runner.h): smtpc_reply_line on the input's first line,
 * smtpc_reply_read for every reply in the input read through a struct
 * stream on a pipe (as from a remote server), smtpc_reply_status and
 * smtpc_caps_parse on each reply, and the DATA writer dotstuff_feed /
 * dotstuff_end on the input taken as a message.  Invariants checked:
 *   - nothing is read outside the input or the stream buffer (ASan);
 *   - smtpc_reply_line gives a code of three digits 2-5, 0-5, 0-9 and a
 *     text inside the line, "more" exactly for a '-' separator;
 *   - smtpc_reply_read agrees with a reference reading written here:
 *     lines cut at SMTPC_LINE_MAX with the rest dropped, at most
 *     SMTPC_REPLY_LINES_MAX lines, the last line's code, each line's text
 *     kept, the enhanced code of the first line only when its class
 *     matches, the one-line summary bounded and free of control octets;
 *   - the status is "x.y.z" with the reply's class (or 4 for none);
 *   - dot-stuffed DATA has only CRLF line ends (no bare CR or LF: a
 *     lone CR in the message becomes a line end), ends in CRLF "." CRLF
 *     with no "." line before, and unstuffs back to the message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runner.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_line(const char *in, size_t size)
{
	const char *nl = memchr(in, '\n', size);
	size_t len = nl != NULL ? (size_t)(nl - in) + 1 : size;
	char *line = xmalloc(len ? len : 1);	/* exact size for ASan */
	memcpy(line, in, len);
	int code = -1;
	bool more = false;
	const char *text = NULL;
	size_t tl = 0;
	int r = smtpc_reply_line(line, len, &code, &more, &text, &tl);
	if (r == 0) {
		CHECK(len >= 3 && line[0] >= '2' && line[0] <= '5' &&
		      line[1] >= '0' && line[1] <= '5' && line[2] >= '0' &&
		      line[2] <= '9');
		CHECK(code == (line[0] - '0') * 100 + (line[1] - '0') * 10 +
			      (line[2] - '0'));
		CHECK(text >= line + 3 && text + tl <= line + len);
		CHECK(more == (len > 3 && line[3] == '-'));
	} else {
		CHECK(r == SMTPC_PROTO);
	}
	free(line);
}

/* The reference reading of one reply from buf[*pos..len). */
struct ref_reply {
	int ret;
	int code;		/* the last line's */
	int first_code;
	size_t nlines;
	const char *text[SMTPC_REPLY_LINES_MAX];	/* each line's text */
	size_t tlen[SMTPC_REPLY_LINES_MAX];
};

/* One line as the stream gives it: at most SMTPC_LINE_MAX octets with the
 * rest of a longer line dropped; a last line without LF at EOF. */
static int ref_line(const char *buf, size_t len, size_t *pos,
		    const char **line, size_t *llen, bool *has_lf)
{
	if (*pos == len)
		return STREAM_EOF;
	const char *start = buf + *pos;
	size_t avail = len - *pos;
	const char *nl = memchr(start, '\n', avail);
	size_t n = nl != NULL ? (size_t)(nl - start) + 1 : avail;
	*line = start;
	*has_lf = nl != NULL;
	if (n > SMTPC_LINE_MAX) {
		*llen = SMTPC_LINE_MAX;
		*has_lf = true;	/* cut lines are taken as they are */
		*pos += n;	/* the rest is skipped (to EOF if no LF) */
		return 0;
	}
	*llen = n;
	*pos += n;
	return 0;
}

static void ref_read(const char *buf, size_t len, size_t *pos,
		     struct ref_reply *rr)
{
	memset(rr, 0, sizeof *rr);
	for (size_t n = 0;; n++) {
		const char *line, *text;
		size_t llen, tl;
		bool lf;
		int code;
		bool more;
		if (n == SMTPC_REPLY_LINES_MAX) {
			rr->ret = SMTPC_PROTO;
			return;
		}
		int r = ref_line(buf, len, pos, &line, &llen, &lf);
		if (r == 0 && !lf)
			r = STREAM_EOF;	/* cut off by the peer */
		if (r != 0) {
			rr->ret = r;
			return;
		}
		if (smtpc_reply_line(line, llen, &code, &more, &text, &tl)) {
			rr->ret = SMTPC_PROTO;
			return;
		}
		if (n == 0)
			rr->first_code = code;
		rr->code = code;
		rr->text[n] = text;
		rr->tlen[n] = tl;
		rr->nlines++;
		if (!more)
			return;
	}
}

/* RFC 3463 at the start of the first line's text: c.ddd.ddd, then a
 * space or the end, class c matching the first and the last code. */
static void ref_enh(const struct ref_reply *rr, char *out)
{
	const char *t = rr->text[0];
	size_t len = rr->tlen[0], i = 1;
	out[0] = '\0';
	if (len == 0 || t[0] != '0' + rr->first_code / 100 ||
	    t[0] != '0' + rr->code / 100)
		return;
	for (int part = 0; part < 2; part++) {
		if (i >= len || t[i] != '.')
			return;
		size_t start = ++i;
		while (i < len && t[i] >= '0' && t[i] <= '9')
			i++;
		if (i == start || i - start > 3)
			return;
	}
	if (i < len && t[i] != ' ')
		return;
	memcpy(out, t, i);
	out[i] = '\0';
}

static void check_reply(const struct smtpc_reply *r,
			const struct ref_reply *rr)
{
	CHECK(r->code == rr->code && r->lines.n == rr->nlines);
	CHECK(r->code >= 200 && r->code <= 559);
	/* each line's text, as far as a C string holds it */
	for (size_t i = 0; i < rr->nlines; i++) {
		const char *nul = memchr(rr->text[i], '\0', rr->tlen[i]);
		size_t k = nul != NULL ? (size_t)(nul - rr->text[i])
				       : rr->tlen[i];
		CHECK(strlen(r->lines.items[i]) == k &&
		      memcmp(r->lines.items[i], rr->text[i], k) == 0);
	}
	char enh[DSN_STATUS_MAX];
	ref_enh(rr, enh);
	CHECK(strcmp(enh, r->enh) == 0);

	/* the summary: "ddd text", bounded, no control octets */
	char code[4];
	snprintf(code, sizeof code, "%03d", rr->first_code);
	CHECK(r->text.len >= 3 && r->text.len <= SMTPC_TEXT_MAX);
	CHECK(memcmp(r->text.data, code, 3) == 0);
	for (size_t i = 0; i < r->text.len; i++) {
		unsigned char c = (unsigned char)r->text.data[i];
		CHECK(c >= 0x20 && c != 0x7f);
	}

	char status[DSN_STATUS_MAX];
	smtpc_reply_status(r, status);
	CHECK(status[0] == '0' + r->code / 100 && status[1] == '.');
	if (r->enh[0] != '\0')
		CHECK(strcmp(status, r->enh) == 0);
	else
		CHECK(strcmp(status + 1, ".0.0") == 0);

	struct smtpc_caps caps;
	smtpc_caps_parse(r, &caps);
	if (!caps.size)
		CHECK(caps.size_max == 0);
}

static void check_replies(const char *in, size_t size)
{
	int fds[2];
	CHECK(pipe(fds) == 0);
	/* a pipe holds 64 KiB: the whole input goes in at once */
	CHECK(write(fds[1], in, size) == (ssize_t)size);
	close(fds[1]);
	struct stream io;
	stream_init(&io, fds[0], fds[0], 5, SMTPC_LINE_MAX + 2);

	struct smtpc_reply r = { 0 };
	static struct ref_reply rr;
	size_t pos = 0;
	for (;;) {
		ref_read(in, size, &pos, &rr);
		int ret = smtpc_reply_read(&io, &r);
		CHECK(ret == rr.ret);
		if (ret != 0)
			break;
		check_reply(&r, &rr);
	}
	smtpc_reply_free(&r);
	stream_free(&io);
	close(fds[0]);
}

/* Undo the stuffing: drop the final "." line, one leading dot per line,
 * CRLF to LF. */
static void check_dotstuff(const char *in, size_t size, size_t cut)
{
	struct dotstuff d;
	struct str out = STR_INIT;
	dotstuff_init(&d);
	dotstuff_feed(&d, in, cut, &out);
	dotstuff_feed(&d, in + cut, size - cut, &out);
	dotstuff_end(&d, &out);

	const char *o = out.data;
	size_t n = out.len;
	CHECK(n >= 3 && memcmp(o + n - 3, ".\r\n", 3) == 0);
	CHECK(n == 3 || (n >= 5 && memcmp(o + n - 5, "\r\n.\r\n", 5) == 0));

	for (size_t j = 0; j < n; j++) {
		if (o[j] == '\r')
			CHECK(j + 1 < n && o[j + 1] == '\n');
		if (o[j] == '\n')
			CHECK(j > 0 && o[j - 1] == '\r');
	}
	struct str back = STR_INIT;
	size_t i = 0;
	while (i < n - 3) {
		const char *nl = memchr(o + i, '\n', n - 3 - i);
		CHECK(nl != NULL && nl > o + i && nl[-1] == '\r');
		size_t l = (size_t)(nl - (o + i)) - 1;	/* without CRLF */
		const char *p = o + i;
		if (l > 0 && p[0] == '.') {
			CHECK(l >= 2 && p[1] == '.');	/* stuffed */
			p++;
			l--;
		}
		str_append_n(&back, p, l);
		str_append_c(&back, '\n');
		i = (size_t)(nl - o) + 1;
	}
	/* the message with CRLF and lone CR as LF and a final line end */
	struct str want = STR_INIT;
	for (size_t j = 0; j < size; j++) {
		if (in[j] == '\r' && j + 1 < size && in[j + 1] == '\n')
			continue;
		str_append_c(&want, in[j] == '\r' ? '\n' : in[j]);
	}
	if (size > 0 && in[size - 1] != '\n' && in[size - 1] != '\r')
		str_append_c(&want, '\n');
	CHECK(back.len == want.len &&
	      (want.len == 0 || memcmp(back.data, want.data, want.len) == 0));
	str_free(&want);
	str_free(&back);
	str_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	const char *in = (const char *)data;
	check_line(in, size);
	check_replies(in, size);
	check_dotstuff(in, size, size > 0 ? data[0] % (size + 1) : 0);
	return 0;
}
