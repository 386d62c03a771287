/*
 * fuzz_smtp_path: the RFC 5321 path and mailbox parsers of common/addr.h
 * (addr_parse_path with and without <>, addr_parse_mailbox,
 * addr_valid_domain, addr_lowercase, addr_format) and the RFC 5322
 * address-list splitter addr_header_list.  Invariants checked:
 *   - a parse never reads past its input (ASan: the input is an exact-size
 *     copy), and a failed parse leaves nothing to free and consumed 0;
 *   - an accepted path is within its bounds: consumed <= len, local part
 *     <= 64 octets, domain <= 255, <> only with allow_null, the utf8 flag
 *     set exactly when the path had octets >= 0x80;
 *   - what addr_format writes parses back to the same address (in <> and,
 *     with a domain, as a bare mailbox), and formatting is idempotent;
 *   - addr_valid_domain agrees with the mailbox parser's idea of a domain;
 *   - addr_lowercase leaves no upper-case ASCII and touches nothing else;
 *   - addr_header_list yields non-empty items, no more than the value has
 *     comma-separated elements, none longer than the value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "str.h"
#include "strlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static bool has_high_octet(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return true;
	return false;
}

static bool same_addr(const struct mailaddr *a, const struct mailaddr *b)
{
	return strcmp(a->local, b->local) == 0 &&
	       strcmp(a->domain, b->domain) == 0 && a->null == b->null &&
	       a->literal == b->literal;
}

/* A parsed address must survive addr_format and a second parse. */
static void check_round_trip(const struct mailaddr *a)
{
	struct str text = STR_INIT, path = STR_INIT, again = STR_INIT;
	struct mailaddr b;
	size_t used;

	addr_format(a, &text);
	str_append_c(&path, '<');
	str_append_n(&path, str_c(&text), text.len);
	str_append_c(&path, '>');
	char *exact = xmalloc(path.len);
	memcpy(exact, path.data, path.len);
	CHECK(addr_parse_path(exact, path.len, true, &b, &used) == ADDR_OK);
	CHECK(used == path.len);
	CHECK(same_addr(a, &b));
	/* (a source route may have carried the original's UTF-8) */
	CHECK(b.utf8 == has_high_octet(text.data, text.len));
	addr_format(&b, &again);
	CHECK(again.len == text.len && strcmp(str_c(&again), str_c(&text)) == 0);
	mailaddr_free(&b);
	free(exact);

	if (!a->null && a->domain[0] != '\0') {
		CHECK(addr_parse_mailbox(str_c(&text), &b) == ADDR_OK);
		CHECK(same_addr(a, &b));
		mailaddr_free(&b);
	}
	str_free(&text);
	str_free(&path);
	str_free(&again);
}

static void check_path(const char *in, size_t len, bool allow_null)
{
	struct mailaddr a;
	size_t used = 12345;
	enum addr_error e = addr_parse_path(in, len, allow_null, &a, &used);

	CHECK(addr_strerror(e) != NULL);
	if (e != ADDR_OK) {
		CHECK(used == 0);
		CHECK(a.local == NULL && a.domain == NULL);
		return;
	}
	CHECK(used > 0 && used <= len);
	CHECK(a.local != NULL && a.domain != NULL);
	CHECK(strlen(a.local) <= ADDR_MAX_LOCAL);
	CHECK(strlen(a.domain) <= ADDR_MAX_DOMAIN);
	CHECK(a.utf8 == has_high_octet(in, used));
	if (a.null)
		CHECK(allow_null && a.local[0] == '\0' && a.domain[0] == '\0' &&
		      used == 2);
	if (a.literal)
		CHECK(a.domain[0] == '[');
	/* A path with its brackets may be followed by anything; a bare
	 * mailbox only by a space or the end. */
	if (in[0] != '<')
		CHECK(used == len || in[used] == ' ');
	check_round_trip(&a);
	mailaddr_free(&a);
}

static void check_mailbox(const char *s)
{
	struct mailaddr a;
	enum addr_error e = addr_parse_mailbox(s, &a);
	if (e != ADDR_OK) {
		CHECK(a.local == NULL && a.domain == NULL);
		return;
	}
	CHECK(!a.null && a.domain[0] != '\0');
	CHECK(strlen(s) + 2 <= ADDR_MAX_PATH);
	check_round_trip(&a);
	mailaddr_free(&a);
}

static void check_domain(const char *s)
{
	size_t n = strlen(s);
	if (!addr_valid_domain(s) || n > 200)
		return;
	struct str box = STR_INIT;
	struct mailaddr a;
	str_printf(&box, "x@%s", s);
	CHECK(addr_parse_mailbox(str_c(&box), &a) == ADDR_OK);
	CHECK(!a.literal && strcmp(a.domain, s) == 0);
	mailaddr_free(&a);
	str_free(&box);
}

static void check_lowercase(const char *s)
{
	char *c = xstrdup(s);
	addr_lowercase(c);
	size_t m = strlen(s);
	CHECK(strlen(c) == m);
	for (size_t i = 0; i < m; i++) {
		char want = s[i] >= 'A' && s[i] <= 'Z'
			? (char)(s[i] - 'A' + 'a') : s[i];
		CHECK(c[i] == want);
	}
	free(c);
}

static void check_header_list(const char *s)
{
	struct strlist l = STRLIST_INIT;
	size_t commas = 0, n = strlen(s);
	for (size_t i = 0; i < n; i++)
		commas += s[i] == ',';
	addr_header_list(s, &l);
	CHECK(l.n <= commas + 1);
	for (size_t i = 0; i < l.n; i++) {
		size_t len = strlen(l.items[i]);
		CHECK(len > 0 && len <= n);
		/* what the list gives is then checked like a From: address */
		check_mailbox(l.items[i]);
	}
	strlist_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)	/* paths are short; a header line is bounded */
		return 0;
	/* Exact-size copy: any read past the end is an ASan report. */
	char *in = xmalloc(size);
	memcpy(in, data, size);
	check_path(in, size, true);
	check_path(in, size, false);
	free(in);

	char *s = xstrndup((const char *)data, size);	/* stops at a NUL */
	check_mailbox(s);
	check_domain(s);
	check_lowercase(s);
	check_header_list(s);
	free(s);
	return 0;
}
