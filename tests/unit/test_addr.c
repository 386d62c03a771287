/*
 * test_addr: unit tests for common/addr.c, the RFC 5321/6531 path and
 * mailbox parser.  Inputs are copied into heap buffers of exactly their
 * length (no terminating NUL), so ASan catches any read past len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "str.h"

/* An input and its length, which may include NUL bytes. */
#define IN(s) s, sizeof(s) - 1

/* Parse text[0..len) from a buffer holding exactly len bytes. */
static enum addr_error parse_exact(const char *text, size_t len,
				   bool allow_null, struct mailaddr *out,
				   size_t *consumed)
{
	char *buf = xmalloc(len);
	enum addr_error e;

	memcpy(buf, text, len);
	e = addr_parse_path(buf, len, allow_null, out, consumed);
	free(buf);
	return e;
}

struct good_path {
	const char *in;
	size_t len;
	bool allow_null;
	const char *local;
	const char *domain;
	bool null, utf8, literal;
	size_t consumed;
};

static const struct good_path good_paths[] = {
	{ IN("<user@example.org>"), false, "user", "example.org",
	  false, false, false, 18 },
	{ IN("<user@example.org> SIZE=123 BODY=8BITMIME"), false,
	  "user", "example.org", false, false, false, 18 },
	{ IN("<First.Last+tag@Sub.Example.ORG>"), false,
	  "First.Last+tag", "Sub.Example.ORG", false, false, false, 32 },
	{ IN("<!#$%&'*+-/=?^_`{|}~@example.org>"), false,
	  "!#$%&'*+-/=?^_`{|}~", "example.org", false, false, false, 33 },
	{ IN("<a@b.c>garbage"), false, "a", "b.c", false, false, false, 7 },
	{ IN("<user@localhost>"), false, "user", "localhost",
	  false, false, false, 16 },
	{ IN("<user@xn--bcher-kva.example>"), false,
	  "user", "xn--bcher-kva.example", false, false, false, 28 },
	{ IN("<u@123.4example.org>"), false, "u", "123.4example.org",
	  false, false, false, 20 },
	/* quoted local parts: stored unquoted, escapes resolved */
	{ IN("<\"john doe\"@example.org>"), false, "john doe", "example.org",
	  false, false, false, 24 },
	{ IN("<\"a\\\"b\\\\c\"@example.org>"), false, "a\"b\\c",
	  "example.org", false, false, false, 23 },
	{ IN("<\"\"@example.org>"), false, "", "example.org",
	  false, false, false, 16 },
	{ IN("<\"a>b\"@example.org> X"), false, "a>b", "example.org",
	  false, false, false, 19 },
	{ IN("<\"a@b\"@example.org>"), false, "a@b", "example.org",
	  false, false, false, 19 },
	{ IN("<\"\\a\"@x.org>"), false, "a", "x.org", false, false, false, 12 },
	/* source routes are parsed and dropped */
	{ IN("<@a.example,@b.example:user@c.example>"), false,
	  "user", "c.example", false, false, false, 38 },
	{ IN("<@a.example:user@c.example>"), false,
	  "user", "c.example", false, false, false, 27 },
	/* address literals */
	{ IN("<user@[192.0.2.1]>"), false, "user", "[192.0.2.1]",
	  false, false, true, 18 },
	{ IN("<user@[IPv6:2001:db8::1]>"), false,
	  "user", "[IPv6:2001:db8::1]", false, false, true, 25 },
	{ IN("<user@[ipv6:::ffff:192.0.2.1]>"), false,
	  "user", "[ipv6:::ffff:192.0.2.1]", false, false, true, 30 },
	/* the null path */
	{ IN("<>"), true, "", "", true, false, false, 2 },
	{ IN("<> SIZE=10"), true, "", "", true, false, false, 2 },
	/* missing brackets, tolerated */
	{ IN("user@example.org"), false, "user", "example.org",
	  false, false, false, 16 },
	{ IN("user@example.org SIZE=5"), false, "user", "example.org",
	  false, false, false, 16 },
	{ IN("\"a b\"@example.org SIZE=5"), false, "a b", "example.org",
	  false, false, false, 17 },
	/* RCPT TO:<Postmaster> */
	{ IN("<postmaster>"), false, "postmaster", "", false, false, false, 12 },
	{ IN("<PostMaster> NOTIFY=NEVER"), false, "PostMaster", "",
	  false, false, false, 12 },
	/* UTF-8 (RFC 6531) */
	{ IN("<j\xc3\xb8rn@example.org>"), false, "j\xc3\xb8rn",
	  "example.org", false, true, false, 19 },
	{ IN("<user@b\xc3\xbc" "cher.example>"), false, "user",
	  "b\xc3\xbc" "cher.example", false, true, false, 22 },
	{ IN("<\"\xe2\x82\xac 1\"@example.org>"), false, "\xe2\x82\xac 1",
	  "example.org", false, true, false, 21 },
	{ IN("<\xf0\x9f\x98\x80@example.org>"), false, "\xf0\x9f\x98\x80",
	  "example.org", false, true, false, 18 },
	{ IN("<\xf4\x8f\xbf\xbf@example.org>"), false, "\xf4\x8f\xbf\xbf",
	  "example.org", false, true, false, 18 },
	{ IN("<\xe0\xa0\x80\xed\x9f\xbf@example.org>"), false,
	  "\xe0\xa0\x80\xed\x9f\xbf", "example.org", false, true, false, 20 },
	{ IN("<@r\xc3\xa9.example:u@example.org>"), false, "u", "example.org",
	  false, true, false, 28 },
	/* len cuts the input: what lies beyond is never looked at */
	{ "<u@example.org>XYZ", 15, false, "u", "example.org",
	  false, false, false, 15 },
	{ "u@example.org@@@", 13, false, "u", "example.org",
	  false, false, false, 13 },
};

static void test_good_paths(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof good_paths / sizeof good_paths[0]; i++) {
		const struct good_path *g = &good_paths[i];
		struct mailaddr a;
		size_t consumed = 999;

		enum addr_error e = parse_exact(g->in, g->len, g->allow_null,
						&a, &consumed);
		/* say which row failed; cmocka only gives the line */
		if (e != ADDR_OK || strcmp(a.local, g->local) != 0 ||
		    strcmp(a.domain, g->domain) != 0 || a.null != g->null ||
		    a.utf8 != g->utf8 || a.literal != g->literal ||
		    consumed != g->consumed)
			print_message("good path %zu: %.*s\n", i,
				      (int)g->len, g->in);
		assert_int_equal(e, ADDR_OK);
		assert_string_equal(a.local, g->local);
		assert_string_equal(a.domain, g->domain);
		assert_int_equal(a.null, g->null);
		assert_int_equal(a.utf8, g->utf8);
		assert_int_equal(a.literal, g->literal);
		assert_int_equal(consumed, g->consumed);
		mailaddr_free(&a);
		assert_null(a.local);
		assert_null(a.domain);
	}
}

struct bad_path {
	const char *in;
	size_t len;
	bool allow_null;
	enum addr_error err;
};

static const struct bad_path bad_paths[] = {
	{ IN(""), true, ADDR_SYNTAX },
	{ IN("<"), true, ADDR_SYNTAX },
	{ IN("<user@example.org"), false, ADDR_SYNTAX },
	{ IN("user@example.org>"), false, ADDR_SYNTAX },
	{ IN("<user>"), false, ADDR_SYNTAX },
	{ IN("<user@>"), false, ADDR_SYNTAX },
	{ IN("<@example.org>"), false, ADDR_SYNTAX },
	{ IN("<user@@example.org>"), false, ADDR_SYNTAX },
	{ IN("<user@example.org@example.net>"), false, ADDR_SYNTAX },
	{ IN("<user@example..org>"), false, ADDR_SYNTAX },
	{ IN("<user@example.org.>"), false, ADDR_SYNTAX },
	{ IN("<user@.example.org>"), false, ADDR_SYNTAX },
	{ IN("<.user@example.org>"), false, ADDR_SYNTAX },
	{ IN("<user.@example.org>"), false, ADDR_SYNTAX },
	{ IN("<us..er@example.org>"), false, ADDR_SYNTAX },
	{ IN("<us er@example.org>"), false, ADDR_SYNTAX },
	{ IN("< user@example.org>"), false, ADDR_SYNTAX },
	{ IN("<user@example.org >"), false, ADDR_SYNTAX },
	{ IN(" <user@example.org>"), false, ADDR_SYNTAX },
	{ IN("<user@-example.org>"), false, ADDR_SYNTAX },
	{ IN("<user@example-.org>"), false, ADDR_SYNTAX },
	{ IN("<user@exa_mple.org>"), false, ADDR_SYNTAX },
	{ IN("<us\ter@example.org>"), false, ADDR_SYNTAX },
	{ IN("<us\x7f" "er@example.org>"), false, ADDR_SYNTAX },
	{ IN("<us(er@example.org>"), false, ADDR_SYNTAX },
	{ IN("<user@example.org\r\n"), false, ADDR_SYNTAX },
	/* one label of 64 octets */
	{ IN("<u@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org>"),
	  false, ADDR_SYNTAX },
	/* quoted strings */
	{ IN("<\"unterminated@example.org>"), false, ADDR_SYNTAX },
	{ IN("<\"a\\\"@example.org>"), false, ADDR_SYNTAX },
	{ IN("<\"a\\"), false, ADDR_SYNTAX },
	{ IN("<\"a\tb\"@example.org>"), false, ADDR_SYNTAX },
	{ IN("<\"a\\\tb\"@example.org>"), false, ADDR_SYNTAX },
	{ IN("<\"a\\\x7f\"@example.org>"), false, ADDR_SYNTAX },
	{ IN("<\"a\x7f\"@example.org>"), false, ADDR_SYNTAX },
	{ IN("<\"a\\\xc3\xa9\"@example.org>"), false, ADDR_SYNTAX },
	{ IN("<\"a\"b@example.org>"), false, ADDR_SYNTAX },
	{ IN("<a\"b\"@example.org>"), false, ADDR_SYNTAX },
	/* address literals */
	{ IN("<user@[192.0.2.256]>"), false, ADDR_SYNTAX },
	{ IN("<user@[192.0.2]>"), false, ADDR_SYNTAX },
	{ IN("<user@[192.0.2.1.5]>"), false, ADDR_SYNTAX },
	{ IN("<user@[IPv6:2001:db8::g]>"), false, ADDR_SYNTAX },
	{ IN("<user@[IPv6:192.0.2.1]>"), false, ADDR_SYNTAX },
	{ IN("<user@[2001:db8::1]>"), false, ADDR_SYNTAX },
	{ IN("<user@[x-tag:foo]>"), false, ADDR_SYNTAX },
	{ IN("<user@[192.0.2.1>"), false, ADDR_SYNTAX },
	{ IN("<user@[]>"), false, ADDR_SYNTAX },
	{ IN("<user@[IPv6:]>"), false, ADDR_SYNTAX },
	{ IN("<user@[ 192.0.2.1]>"), false, ADDR_SYNTAX },
	{ IN("<user@[192.0.2.1].org>"), false, ADDR_SYNTAX },
	{ IN("<user@[\xc3\xa9]>"), false, ADDR_SYNTAX },
	/* null path where a mailbox is required */
	{ IN("<>"), false, ADDR_NULL },
	{ IN("<> SIZE=10"), false, ADDR_NULL },
	/* source routes */
	{ IN("<@a.example:>"), true, ADDR_SYNTAX },
	{ IN("<@a.example>"), false, ADDR_SYNTAX },
	{ IN("<@a.example,user@b.example>"), false, ADDR_SYNTAX },
	{ IN("<@:user@b.example>"), false, ADDR_SYNTAX },
	{ IN("<@a.example,:user@b.example>"), false, ADDR_SYNTAX },
	{ IN("<@a..example:user@b.example>"), false, ADDR_SYNTAX },
	/* postmaster without a domain: only exactly <postmaster> */
	{ IN("<@a.example:postmaster>"), false, ADDR_SYNTAX },
	{ IN("<\"postmaster\">"), false, ADDR_SYNTAX },
	{ IN("<postmasterx>"), false, ADDR_SYNTAX },
	{ IN("<post.master>"), false, ADDR_SYNTAX },
	{ IN("<postmaster"), false, ADDR_SYNTAX },
	{ IN("postmaster"), false, ADDR_SYNTAX },
	/* malformed UTF-8 */
	{ IN("<\xc0\x80@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\xc1\xbf@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<u@\xc0\x80.example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\xed\xa0\x80@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<u@\xed\xbf\xbf.example>"), false, ADDR_BAD_UTF8 },
	{ IN("<\xe0\x80\xaf@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\xf0\x80\x80\xaf@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\xf4\x90\x80\x80@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\xf5\x80\x80\x80@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\xff@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\x80@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\xc3@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\xe2\x82@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<\"\xc0\x80\"@example.org>"), false, ADDR_BAD_UTF8 },
	{ IN("<u@example.\xe2\x82"), false, ADDR_BAD_UTF8 },
	{ IN("u@example.\xc3"), false, ADDR_BAD_UTF8 },
	{ IN("<@\xed\xa0\x80:u@example.org>"), false, ADDR_BAD_UTF8 },
	/* NUL bytes inside len */
	{ IN("\0"), true, ADDR_SYNTAX },
	{ IN("<\0>"), true, ADDR_SYNTAX },
	{ IN("<us\0er@example.org>"), false, ADDR_SYNTAX },
	{ IN("<user@exa\0mple.org>"), false, ADDR_SYNTAX },
	{ IN("<user@example.org\0>"), false, ADDR_SYNTAX },
	{ IN("<\"a\0b\"@example.org>"), false, ADDR_SYNTAX },
	{ IN("<user@[192.0.2.1\0]>"), false, ADDR_SYNTAX },
	{ IN("user@example.org\0"), false, ADDR_SYNTAX },
	/* missing brackets: the path ends only at a space or the end */
	{ IN("user@example.org\tSIZE=1"), false, ADDR_SYNTAX },
	{ IN("user@example.org,x"), false, ADDR_SYNTAX },
	{ IN("@a.example:user@example.org"), false, ADDR_SYNTAX },
	/* len cuts the path short */
	{ "<u@example.org>", 14, false, ADDR_SYNTAX },
	{ "<\"a\"@example.org>", 3, false, ADDR_SYNTAX },
	{ "<u@[192.0.2.1]>", 13, false, ADDR_SYNTAX },
};

static void test_bad_paths(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
		const struct bad_path *b = &bad_paths[i];
		struct mailaddr a;
		size_t consumed = 999;

		enum addr_error e = parse_exact(b->in, b->len, b->allow_null,
						&a, &consumed);
		if (e != b->err)
			print_message("bad path %zu: %.*s\n", i,
				      (int)b->len, b->in);
		assert_int_equal(e, b->err);
		/* nothing to free, nothing consumed */
		assert_null(a.local);
		assert_null(a.domain);
		assert_false(a.null);
		assert_int_equal(consumed, 0);
		mailaddr_free(&a);
	}
}

/* consumed may be NULL when the caller does not care. */
static void test_consumed_optional(void **state)
{
	struct mailaddr a;

	(void)state;
	assert_int_equal(addr_parse_path(IN("<a@b.c> X"), false, &a, NULL),
			 ADDR_OK);
	assert_string_equal(a.local, "a");
	mailaddr_free(&a);
	assert_int_equal(addr_parse_path(IN("<a@b..c>"), false, &a, NULL),
			 ADDR_SYNTAX);
}

/* ---- length limits ---- */

static char *repeat(char c, size_t n)
{
	char *s = xmalloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* A domain of exactly n octets made of valid labels of at most 63 octets. */
static char *domain_of(size_t n)
{
	struct str s = STR_INIT;

	while (s.len < n) {
		size_t left = n - s.len;
		size_t label = left > 63 ? 63 : left;

		/* don't leave a lone '.' or an empty last label behind */
		if (left > 63 && left - 63 < 2)
			label = 61;
		for (size_t i = 0; i < label; i++)
			str_append_c(&s, 'd');
		if (s.len < n)
			str_append_c(&s, '.');
	}
	char *r = xstrdup(str_c(&s));
	str_free(&s);
	return r;
}

static enum addr_error parse_str(const char *text, struct mailaddr *a,
				 size_t *consumed)
{
	return parse_exact(text, strlen(text), false, a, consumed);
}

static void test_domain_of(void **state)
{
	(void)state;
	for (size_t n = 1; n <= 300; n++) {
		char *d = domain_of(n);
		assert_int_equal(strlen(d), n);
		assert_int_equal(addr_valid_domain(d), n <= 255);
		free(d);
	}
}

static void test_local_length(void **state)
{
	struct str s = STR_INIT;
	struct mailaddr a;
	size_t consumed;
	char *l64 = repeat('l', 64), *l65 = repeat('l', 65);
	char *q62 = repeat('q', 62), *q63 = repeat('q', 63);

	(void)state;
	str_printf(&s, "<%s@example.org>", l64);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_OK);
	assert_int_equal(strlen(a.local), 64);
	assert_int_equal(consumed, s.len);
	mailaddr_free(&a);

	str_truncate(&s, 0);
	str_printf(&s, "<%s@example.org>", l65);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_TOO_LONG);
	assert_null(a.local);

	/* counted as written: quotes are part of the 64 */
	str_truncate(&s, 0);
	str_printf(&s, "<\"%s\"@example.org>", q62);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_OK);
	assert_string_equal(a.local, q62);
	mailaddr_free(&a);

	str_truncate(&s, 0);
	str_printf(&s, "<\"%s\"@example.org>", q63);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_TOO_LONG);

	/* and so are backslashes: 31 escaped pairs + quotes = 64 */
	str_truncate(&s, 0);
	str_append(&s, "<\"");
	for (int i = 0; i < 31; i++)
		str_append(&s, "\\x");
	str_append(&s, "\"@example.org>");
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_OK);
	assert_int_equal(strlen(a.local), 31);
	mailaddr_free(&a);
	str_truncate(&s, 0);
	str_append(&s, "<\"x");
	for (int i = 0; i < 31; i++)
		str_append(&s, "\\x");
	str_append(&s, "\"@example.org>");
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_TOO_LONG);

	/* a syntax error wins over the length */
	str_truncate(&s, 0);
	str_printf(&s, "<%s@example..org>", l65);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_SYNTAX);

	free(l64);
	free(l65);
	free(q62);
	free(q63);
	str_free(&s);
}

static void test_domain_length(void **state)
{
	struct str s = STR_INIT;
	struct mailaddr a;
	size_t consumed;
	char *d255 = domain_of(255), *d256 = domain_of(256);

	(void)state;
	assert_true(addr_valid_domain(d255));
	assert_false(addr_valid_domain(d256));

	str_printf(&s, "<a@%s>", d256);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_TOO_LONG);
	str_truncate(&s, 0);
	str_printf(&s, "a@%s", d256);
	assert_int_equal(addr_parse_mailbox(str_c(&s), &a), ADDR_TOO_LONG);
	/* a 255-octet domain is valid alone but cannot fit in a path */
	str_truncate(&s, 0);
	str_printf(&s, "a@%s", d255);
	assert_int_equal(addr_parse_mailbox(str_c(&s), &a), ADDR_TOO_LONG);

	free(d255);
	free(d256);
	str_free(&s);
}

static void test_path_length(void **state)
{
	struct str s = STR_INIT;
	struct mailaddr a;
	size_t consumed;
	char *l64 = repeat('l', 64);
	char *d189 = domain_of(189), *d190 = domain_of(190);
	char *d188 = domain_of(188);

	(void)state;
	/* "<" 64 "@" 189 ">" = 256 */
	str_printf(&s, "<%s@%s> SIZE=1", l64, d189);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_OK);
	assert_int_equal(consumed, 256);
	assert_string_equal(a.domain, d189);
	mailaddr_free(&a);

	str_truncate(&s, 0);
	str_printf(&s, "<%s@%s>", l64, d190);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_TOO_LONG);

	/* without brackets the limit is the same: the mailbox is 254 */
	str_truncate(&s, 0);
	str_printf(&s, "%s@%s SIZE=1", l64, d189);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_OK);
	assert_int_equal(consumed, 254);
	mailaddr_free(&a);
	str_truncate(&s, 0);
	str_printf(&s, "%s@%s", l64, d190);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_TOO_LONG);

	/* addr_parse_mailbox applies the same bound */
	str_truncate(&s, 0);
	str_printf(&s, "%s@%s", l64, d189);
	assert_int_equal(addr_parse_mailbox(str_c(&s), &a), ADDR_OK);
	mailaddr_free(&a);
	str_truncate(&s, 0);
	str_printf(&s, "%s@%s", l64, d190);
	assert_int_equal(addr_parse_mailbox(str_c(&s), &a), ADDR_TOO_LONG);

	/* a source route counts towards the 256: "@r:" is 3 more */
	str_truncate(&s, 0);
	str_printf(&s, "<@r:%s@%s>", l64, d188 + 2);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_OK);
	assert_int_equal(consumed, 256);
	mailaddr_free(&a);
	str_truncate(&s, 0);
	str_printf(&s, "<@r:%s@%s>", l64, d188 + 1);
	assert_int_equal(parse_str(str_c(&s), &a, &consumed), ADDR_TOO_LONG);

	free(l64);
	free(d188);
	free(d189);
	free(d190);
	str_free(&s);
}

/* ---- addr_format ---- */

static void check_format(const char *path, const char *want)
{
	struct mailaddr a, b;
	struct str s = STR_INIT;
	size_t consumed;

	assert_int_equal(parse_str(path, &a, &consumed), ADDR_OK);
	addr_format(&a, &s);
	if (strcmp(str_c(&s), want) != 0)
		print_message("format %s\n", path);
	assert_string_equal(str_c(&s), want);
	/* and the formatted mailbox parses back to the same thing */
	if (a.domain[0] != '\0') {
		assert_int_equal(addr_parse_mailbox(str_c(&s), &b), ADDR_OK);
		assert_string_equal(b.local, a.local);
		assert_string_equal(b.domain, a.domain);
		assert_int_equal(b.utf8, a.utf8);
		mailaddr_free(&b);
	}
	mailaddr_free(&a);
	str_free(&s);
}

static void test_format(void **state)
{
	(void)state;
	check_format("<user@example.org>", "user@example.org");
	check_format("<A.B@Example.ORG>", "A.B@Example.ORG");
	check_format("<\"john doe\"@example.org>", "\"john doe\"@example.org");
	check_format("<\"a\\\"b\\\\c\"@example.org>",
		     "\"a\\\"b\\\\c\"@example.org");
	/* needless quotes and escapes are dropped */
	check_format("<\"abc\"@example.org>", "abc@example.org");
	check_format("<\"\\a\\b\"@example.org>", "ab@example.org");
	check_format("<\"a..b\"@example.org>", "\"a..b\"@example.org");
	check_format("<\".a\"@example.org>", "\".a\"@example.org");
	check_format("<\"a.\"@example.org>", "\"a.\"@example.org");
	check_format("<\"\"@example.org>", "\"\"@example.org");
	check_format("<\"a@b\"@example.org>", "\"a@b\"@example.org");
	check_format("<\"a>b\"@example.org>", "\"a>b\"@example.org");
	check_format("<@a.example,@b.example:u@c.example>", "u@c.example");
	check_format("<u@[192.0.2.1]>", "u@[192.0.2.1]");
	check_format("<u@[IPv6:2001:db8::1]>", "u@[IPv6:2001:db8::1]");
	check_format("<j\xc3\xb8rn@b\xc3\xbc" "cher.example>",
		     "j\xc3\xb8rn@b\xc3\xbc" "cher.example");
	check_format("<\"\xe2\x82\xac 1\"@example.org>",
		     "\"\xe2\x82\xac 1\"@example.org");
	check_format("<Postmaster>", "Postmaster");
}

static void test_format_null_and_append(void **state)
{
	struct mailaddr a;
	struct str s = STR_INIT;
	size_t consumed;

	(void)state;
	assert_int_equal(addr_parse_path(IN("<>"), true, &a, &consumed),
			 ADDR_OK);
	addr_format(&a, &s);
	assert_string_equal(str_c(&s), "");
	mailaddr_free(&a);

	/* addr_format appends */
	str_append(&s, "<");
	assert_int_equal(addr_parse_mailbox("\"x y\"@example.org", &a),
			 ADDR_OK);
	addr_format(&a, &s);
	str_append(&s, ">");
	assert_string_equal(str_c(&s), "<\"x y\"@example.org>");
	mailaddr_free(&a);
	str_free(&s);
}

/* ---- addr_parse_mailbox ---- */

static void test_parse_mailbox(void **state)
{
	static const char *const bad[] = {
		"", "<user@example.org>", "user@example.org ",
		" user@example.org", "user", "postmaster", "Postmaster",
		"user@example.org>", "@a.example:user@example.org",
		"user@", "@example.org", "user@example.org.", "a..b@example.org",
		"user@[192.0.2.999]", "us er@example.org",
	};
	struct mailaddr a;

	(void)state;
	assert_int_equal(addr_parse_mailbox("user@example.org", &a), ADDR_OK);
	assert_string_equal(a.local, "user");
	assert_string_equal(a.domain, "example.org");
	assert_false(a.null);
	assert_false(a.utf8);
	assert_false(a.literal);
	mailaddr_free(&a);

	assert_int_equal(addr_parse_mailbox("\"a b\"@example.org", &a), ADDR_OK);
	assert_string_equal(a.local, "a b");
	mailaddr_free(&a);

	assert_int_equal(addr_parse_mailbox("u@[192.0.2.1]", &a), ADDR_OK);
	assert_string_equal(a.domain, "[192.0.2.1]");
	assert_true(a.literal);
	mailaddr_free(&a);

	assert_int_equal(addr_parse_mailbox("\xc3\xa9@\xc3\xa9.example", &a),
			 ADDR_OK);
	assert_true(a.utf8);
	mailaddr_free(&a);

	assert_int_equal(addr_parse_mailbox("\xc3@example.org", &a),
			 ADDR_BAD_UTF8);
	assert_null(a.local);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		enum addr_error e = addr_parse_mailbox(bad[i], &a);
		if (e != ADDR_SYNTAX)
			print_message("bad mailbox %zu: %s\n", i, bad[i]);
		assert_int_equal(e, ADDR_SYNTAX);
		assert_null(a.local);
		assert_null(a.domain);
	}
	assert_int_equal(addr_parse_mailbox(NULL, &a), ADDR_SYNTAX);
}

/* ---- addr_valid_domain, addr_lowercase, addr_strerror ---- */

static void test_valid_domain(void **state)
{
	static const char *const good[] = {
		"example.org", "a", "localhost", "EXAMPLE.org",
		"xn--bcher-kva.example", "b\xc3\xbc" "cher.example",
		"1.2.3.4", "a-b.c-d.e", "a--b.org", "\xe4\xbe\x8b.\xe4\xbe\x8b",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org",
	};
	static const char *const bad[] = {
		"", ".", "example.org.", ".example.org", "a..b", "exa mple.org",
		"-a.org", "a-.org", "a.-b.org", "[192.0.2.1]", "[IPv6:::1]",
		"a_b.org", "user@example.org", "\xc0\x80.org", "\xc3.org",
		"a.\xed\xa0\x80", "a\tb", "a/b",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org",
	};

	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		if (!addr_valid_domain(good[i]))
			print_message("good domain %zu: %s\n", i, good[i]);
		assert_true(addr_valid_domain(good[i]));
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (addr_valid_domain(bad[i]))
			print_message("bad domain %zu: %s\n", i, bad[i]);
		assert_false(addr_valid_domain(bad[i]));
	}
	assert_false(addr_valid_domain(NULL));
}

static void test_lowercase(void **state)
{
	char s1[] = "UsEr@ExAmPlE.ORG";
	char s2[] = "\xc3\x84" "B\xc3\x9c" "c@[IPv6:ABCD::1]";
	char s3[] = "";
	char s4[] = "@[]^_`{Z}";

	(void)state;
	addr_lowercase(s1);
	assert_string_equal(s1, "user@example.org");
	addr_lowercase(s2);
	assert_string_equal(s2, "\xc3\x84" "b\xc3\x9c" "c@[ipv6:abcd::1]");
	addr_lowercase(s3);
	assert_string_equal(s3, "");
	addr_lowercase(s4);
	assert_string_equal(s4, "@[]^_`{z}");
}

static void test_strerror(void **state)
{
	const enum addr_error all[] = {
		ADDR_OK, ADDR_SYNTAX, ADDR_TOO_LONG, ADDR_NULL, ADDR_BAD_UTF8,
	};

	(void)state;
	for (size_t i = 0; i < 5; i++) {
		const char *m = addr_strerror(all[i]);
		assert_non_null(m);
		assert_true(strlen(m) > 0);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(m, addr_strerror(all[j]));
	}
	assert_string_equal(addr_strerror(ADDR_TOO_LONG), "Address too long");
	assert_non_null(addr_strerror((enum addr_error)42));
}

/* RFC 5322 address lists from header fields (sendmail -t, From: checks). */
static void test_header_list(void **state)
{
	(void)state;
	static const struct {
		const char *value;
		const char *expect[4];
	} cases[] = {
		{ " alice@example.org\r\n", { "alice@example.org" } },
		{ "Alice <alice@example.org>, bob@example.net",
		  { "alice@example.org", "bob@example.net" } },
		{ "\"Smith, Bob\" <bob@x.example>", { "bob@x.example" } },
		{ "carol@x.example (Carol, the <boss>)", { "carol@x.example" } },
		{ "friends: a@x.example, B <b@y.example>;",
		  { "a@x.example", "b@y.example" } },
		{ "  ,, ", { NULL } },
		{ "<>", { NULL } },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct strlist l = STRLIST_INIT;
		addr_header_list(cases[i].value, &l);
		size_t n = 0;
		while (n < 4 && cases[i].expect[n])
			n++;
		assert_int_equal(l.n, n);
		for (size_t j = 0; j < n; j++)
			assert_string_equal(l.items[j], cases[i].expect[j]);
		strlist_free(&l);
	}
}

/* fuzz_smtp_path: "<><user@..." made the list take the text between a
 * later '<' and an earlier '>' (a negative length).  An element with two
 * <...> is no one mailbox: it comes out whole and does not parse. */
static void test_header_list_two_angles(void **state)
{
	(void)state;
	static const struct {
		const char *value, *expect;
	} cases[] = {
		{ "<><user@xn--bcher-kv", "<><user@xn--bcher-kv" },
		{ "<victim@x.example> <me@y.example>",
		  "<victim@x.example><me@y.example>" },
		{ "a>b<c@d.example", "a>b<c@d.example" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct strlist l = STRLIST_INIT;
		struct mailaddr a;
		addr_header_list(cases[i].value, &l);
		assert_int_equal(l.n, 1);
		assert_string_equal(l.items[0], cases[i].expect);
		assert_int_equal(addr_parse_mailbox(l.items[0], &a), ADDR_SYNTAX);
		strlist_free(&l);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_paths),
		cmocka_unit_test(test_bad_paths),
		cmocka_unit_test(test_consumed_optional),
		cmocka_unit_test(test_domain_of),
		cmocka_unit_test(test_local_length),
		cmocka_unit_test(test_domain_length),
		cmocka_unit_test(test_path_length),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_null_and_append),
		cmocka_unit_test(test_parse_mailbox),
		cmocka_unit_test(test_valid_domain),
		cmocka_unit_test(test_lowercase),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_header_list),
		cmocka_unit_test(test_header_list_two_angles),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
