/*
 * fuzz_dsn: the bounces and delay notices (common/dsn.c).  Everything a
 * report quotes comes from outside: the sender and recipient addresses,
 * the error texts (a remote server's reply), the original header.  The
 * input: one octet of flags (failed or delayed, postmaster copy, with
 * ORCPT), then NUL-separated fields: sender, and up to three recipients
 * as address, error, then the original header (the rest).  The header is
 * also read back through dsn_read_headers from a memfd.  Invariants:
 *   - the report parses (common/mime) as multipart/report with exactly
 *     three parts: text/plain, message/(global-)delivery-status and
 *     text/rfc822-headers or message/global-headers, whatever was quoted;
 *   - the delivery-status part has exactly one Final-Recipient, Action
 *     and Status line per recipient (nothing quoted adds a field), and
 *     outside the quoted header no control octet but LF and TAB;
 *   - the quoted header is the original's, whole;
 *   - dsn_read_headers gives a prefix of the file that ends at a line end
 *     (or is empty), at most the bound, and stops at the blank line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dsn.h"
#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define MAX_RCPTS 3

/* The next NUL-terminated field of [*p, end), or NULL at the end. */
static char *next_field(const char **p, const char *end)
{
	if (*p >= end)
		return NULL;
	const char *nul = memchr(*p, '\0', (size_t)(end - *p));
	size_t n = nul ? (size_t)(nul - *p) : (size_t)(end - *p);
	char *f = xstrndup(*p, n);
	*p += n + (nul != NULL);
	return f;
}

static size_t count_lines(const char *p, size_t len, const char *prefix)
{
	size_t n = 0, pl = strlen(prefix);
	for (size_t i = 0; i < len; i++)
		if ((i == 0 || p[i - 1] == '\n') && len - i >= pl &&
		    strncasecmp(p + i, prefix, pl) == 0)
			n++;
	return n;
}

static void check_read_headers(const char *text, size_t len)
{
	int fd = memfd_create("fuzz_dsn", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(write(fd, text, len) == (ssize_t)len);
	size_t max = len > 0 ? (unsigned char)text[0] % 64 + 16 : 16;
	struct str out = STR_INIT;
	CHECK(dsn_read_headers(fd, max, &out) == 0);
	CHECK(out.len <= max && out.len <= len);
	CHECK(out.len == 0 || memcmp(out.data, text, out.len) == 0);
	CHECK(out.len == 0 || out.data[out.len - 1] == '\n');
	/* no blank line inside: the header stops there */
	CHECK(out.len == 0 || out.data[0] != '\n');
	CHECK(memmem(out.data ? out.data : "", out.len, "\n\n", 2) == NULL);
	str_free(&out);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	const char *p = (const char *)data + 1, *end = (const char *)data + size;
	struct queue_envelope env;
	memset(&env, 0, sizeof env);
	snprintf(env.id, sizeof env.id, "FUZZQ1");
	env.arrival = 1700000000;
	env.sender = next_field(&p, end);
	if (env.sender == NULL)
		env.sender = xstrdup("");
	env.rcpts = xcalloc(MAX_RCPTS, sizeof *env.rcpts);
	size_t idx[MAX_RCPTS];
	while (env.n_rcpts < MAX_RCPTS) {
		char *addr = next_field(&p, end);
		if (addr == NULL)
			break;
		struct queue_rcpt *r = &env.rcpts[env.n_rcpts];
		r->address = addr;
		r->last_error = next_field(&p, end);
		r->state = RCPT_FAILED;
		r->attempts = 1;
		if (data[0] & 4)
			r->orcpt = xstrdup(addr);
		idx[env.n_rcpts] = env.n_rcpts;
		env.n_rcpts++;
	}
	const char *headers = p < end ? p : "";
	size_t headers_len = p < end ? (size_t)(end - p) : 0;

	struct dsn_info info = {
		.kind = data[0] & 1 ? DSN_DELAYED : DSN_FAILED,
		.hostname = "mx.example.org",
		.to = env.sender[0] ? env.sender : "postmaster@example.org",
		.id = "FUZZD1", .now = 1700003600,
		.queue_lifetime = 5 * 86400,
		.postmaster_copy = (data[0] & 2) != 0,
	};
	struct str out = STR_INIT;
	dsn_build(&info, &env, idx, env.n_rcpts, headers, headers_len, &out);

	struct mime_part root;
	mime_parse(out.data, out.len, &root);
	CHECK(strcmp(root.type, "multipart") == 0 &&
	      strcmp(root.subtype, "report") == 0);
	CHECK(root.n_children == 3);
	const struct mime_part *h = &root.children[0];
	const struct mime_part *st = &root.children[1];
	const struct mime_part *q = &root.children[2];
	CHECK(strcmp(h->type, "text") == 0 && strcmp(h->subtype, "plain") == 0);
	CHECK(strcmp(st->type, "message") == 0 &&
	      (strcmp(st->subtype, "delivery-status") == 0 ||
	       strcmp(st->subtype, "global-delivery-status") == 0));
	CHECK((strcmp(q->type, "text") == 0 &&
	       strcmp(q->subtype, "rfc822-headers") == 0) ||
	      (strcmp(q->type, "message") == 0 &&
	       strcmp(q->subtype, "global-headers") == 0));
	/* the status fields: one set per recipient, nothing injected */
	const char *sb = out.data + st->body;
	size_t sl = st->end - st->body;
	CHECK(count_lines(sb, sl, "Final-Recipient:") == env.n_rcpts);
	CHECK(count_lines(sb, sl, "Action:") == env.n_rcpts);
	CHECK(count_lines(sb, sl, "Status:") == env.n_rcpts);
	CHECK(count_lines(sb, sl, "Reporting-MTA:") == 1);
	/* no control octets outside the quoted header */
	for (size_t i = 0; i < q->body; i++) {
		unsigned char c = (unsigned char)out.data[i];
		CHECK(c >= 0x20 || c == '\n' || c == '\t');
		CHECK(c != 0x7f);
	}
	/* the quoted header, whole, right after its part's header */
	CHECK(out.len - q->body >= headers_len);
	CHECK(headers_len == 0 ||
	      memcmp(out.data + q->body, headers, headers_len) == 0);
	mime_free(&root);
	str_free(&out);

	check_read_headers(headers, headers_len);
	queue_envelope_free(&env);
	return 0;
}
