/*
 * fuzz_pop3_command: pop3-handler's command-line parser (pop3_cmd.h:
 * pop3_parse_command, pop3_parse_number, pop3_verb_usage), fed lines the
 * way the session hands them over: at most POP3_AUTH_LINE_MAX octets, CRLF
 * (or LF) removed, no NUL (the session refuses those before parsing).
 * Invariants checked:
 *   - nothing is read or written outside the line (ASan: an exact-size
 *     copy) and every argv[] points into it;
 *   - the result agrees with an independent split of the line: EMPTY for
 *     nothing but blanks, the keyword is the line's first word (any case),
 *     an unknown one gives UNKNOWN with verb POP3_UNKNOWN and keyword "";
 *   - an OK command's arguments are exactly the line's further words
 *     (PASS: the rest after one separator), within the verb's count, and
 *     its message numbers are what pop3_parse_number makes of them;
 *   - pop3_parse_number accepts exactly 1 to 10 digits up to 4294967295.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pop3_cmd.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The reference: words of [p, end) split on blanks. */
static size_t split_words(const char *p, const char *end, const char **w,
			  size_t *wlen, size_t max)
{
	size_t n = 0;
	while (p < end) {
		while (p < end && blank(*p))
			p++;
		if (p == end)
			break;
		const char *s = p;
		while (p < end && !blank(*p))
			p++;
		if (n < max) {
			w[n] = s;
			wlen[n] = (size_t)(p - s);
		}
		n++;
	}
	return n;
}

static void check_number(const char *s)
{
	unsigned long v = 99;
	size_t n = strlen(s);
	bool digits = n >= 1 && n <= 10 && strspn(s, "0123456789") == n;
	int r = pop3_parse_number(s, &v);
	if (!digits) {
		CHECK(r == -1 && v == 99);
		return;
	}
	unsigned long long want = strtoull(s, NULL, 10);
	if (want > 4294967295ULL) {
		CHECK(r == -1);
	} else {
		CHECK(r == 0 && v == want);
	}
}

static void check_command(const char *orig, size_t len)
{
	/* the parser splits in place: give it an exact-size copy */
	char *line = xmalloc(len + 1);
	memcpy(line, orig, len + 1);
	const char *end = orig + len;
	const char *w[8];
	size_t wl[8];
	size_t nw = split_words(orig, end, w, wl, 8);

	struct pop3_command c;
	enum pop3_parse r = pop3_parse_command(line, &c);
	CHECK(c.keyword != NULL && c.argc <= POP3_MAX_ARGS);
	CHECK(pop3_verb_usage(c.verb) != NULL);
	for (unsigned i = 0; i < c.argc; i++)
		CHECK(c.argv[i] >= line && c.argv[i] <= line + len &&
		      c.argv[i] + strlen(c.argv[i]) <= line + len);

	if (nw == 0) {
		CHECK(r == POP3_PARSE_EMPTY && c.verb == POP3_UNKNOWN);
		free(line);
		return;
	}
	CHECK(r != POP3_PARSE_EMPTY);
	if (r == POP3_PARSE_UNKNOWN) {
		CHECK(c.verb == POP3_UNKNOWN && c.keyword[0] == '\0');
		free(line);
		return;
	}
	/* a known keyword: the first word, whatever its case */
	CHECK(c.verb != POP3_UNKNOWN);
	CHECK(strlen(c.keyword) == wl[0] &&
	      strncasecmp(c.keyword, w[0], wl[0]) == 0);
	CHECK(pop3_verb_usage(c.verb)[0] != '\0');

	if (c.verb == POP3_PASS) {
		const char *rest = w[0] + wl[0];
		if (rest < end)
			rest++;	/* the one separator */
		if (r == POP3_PARSE_OK) {
			CHECK(c.argc == 1 && rest < end);
			CHECK(strlen(c.argv[0]) == (size_t)(end - rest) &&
			      memcmp(c.argv[0], rest, (size_t)(end - rest)) == 0);
		} else {
			CHECK(r == POP3_PARSE_ARGS && rest == end);
		}
		free(line);
		return;
	}
	if (r == POP3_PARSE_OK || r == POP3_PARSE_NUMBER) {
		CHECK(c.argc == nw - 1);
		for (unsigned i = 0; i < c.argc; i++)
			CHECK(strlen(c.argv[i]) == wl[i + 1] &&
			      memcmp(c.argv[i], w[i + 1], wl[i + 1]) == 0);
	}
	if (r == POP3_PARSE_OK) {
		bool numbers = c.verb == POP3_LIST || c.verb == POP3_RETR ||
			       c.verb == POP3_DELE || c.verb == POP3_TOP ||
			       c.verb == POP3_UIDL;
		for (unsigned i = 0; numbers && i < c.argc; i++) {
			unsigned long v;
			CHECK(pop3_parse_number(c.argv[i], &v) == 0 &&
			      v == c.num[i]);
		}
	} else {
		CHECK(r == POP3_PARSE_ARGS || r == POP3_PARSE_NUMBER);
	}
	free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > POP3_AUTH_LINE_MAX)
		return 0;
	size_t len = size;
	const char *p = (const char *)data;
	if (len > 0 && p[len - 1] == '\n')
		len--;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	char *orig = xstrndup(p, len);	/* stops at a NUL */
	if (strlen(orig) == len)	/* the session refuses NUL */
		check_command(orig, len);
	check_number(orig);
	free(orig);
	return 0;
}
