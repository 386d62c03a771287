/*
 * Unit tests for imap-handler/imap_search.c: parsing every SEARCH key (and
 * the errors), the Date: parser, evaluation against in-memory messages
 * through the data source interface (flags, keywords, UIDs, dates, RFC
 * 2047 headers, multipart bodies in base64/QP/latin-1, OR/NOT nesting),
 * the laziness of the data source, and imap_cmd_search's output with the
 * session functions it calls stubbed here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imap.h"
#include "imap_message.h"
#include "imap_search.h"
#include "mime.h"

/* ------------------------------------------------------ the test mailbox */

#define BOX_MAX 4000

struct box {
	struct imap_msg msgs[BOX_MAX];
	struct str text[BOX_MAX];	/* CRLF */
	size_t hlen[BOX_MAX];
	int64_t idate[BOX_MAX];
	bool gone[BOX_MAX];
	struct mime_part mime[BOX_MAX];
	bool parsed[BOX_MAX];
	size_t count;
	char *keywords[IMAP_MAX_KEYWORDS];
	unsigned n_keywords;
	unsigned header_calls, message_calls, idate_calls;
};

static size_t header_length(const char *t, size_t len)
{
	const char *e = memmem(t, len, "\r\n\r\n", 4);
	return e != NULL ? (size_t)(e - t) + 4 : len;
}

static void to_crlf(const char *lf, struct str *out)
{
	for (const char *p = lf; *p != '\0'; p++) {
		if (*p == '\n')
			str_append_c(out, '\r');
		str_append_c(out, *p);
	}
}

static void box_add(struct box *b, uint32_t uid, uint8_t flags,
		    uint32_t keywords, uint64_t size, int64_t idate,
		    const char *lf)
{
	size_t i = b->count++;
	b->msgs[i] = (struct imap_msg){ .uid = uid, .flags = flags,
					.keywords = keywords, .size = size };
	to_crlf(lf, &b->text[i]);
	b->hlen[i] = header_length(b->text[i].data, b->text[i].len);
	b->idate[i] = idate;
}

static void box_free(struct box *b)
{
	for (size_t i = 0; i < b->count; i++) {
		str_free(&b->text[i]);
		if (b->parsed[i])
			mime_free(&b->mime[i]);
	}
	free(b);
}

static int src_internaldate(void *ctx, size_t idx, int64_t *when)
{
	struct box *b = ctx;
	b->idate_calls++;
	if (b->gone[idx])
		return -1;
	*when = b->idate[idx];
	return 0;
}

static const char *src_header(void *ctx, size_t idx, size_t *len)
{
	struct box *b = ctx;
	b->header_calls++;
	if (b->gone[idx])
		return NULL;
	*len = b->hlen[idx];
	return b->text[idx].data;
}

static const char *src_message(void *ctx, size_t idx, size_t *len,
			       size_t *header_len,
			       const struct mime_part **mime)
{
	struct box *b = ctx;
	b->message_calls++;
	if (b->gone[idx])
		return NULL;
	if (!b->parsed[idx]) {
		mime_parse(b->text[idx].data, b->text[idx].len, &b->mime[idx]);
		b->parsed[idx] = true;
	}
	*len = b->text[idx].len;
	*header_len = b->hlen[idx];
	*mime = &b->mime[idx];
	return b->text[idx].data;
}

static void box_source(struct box *b, struct imap_search_source *src)
{
	*src = (struct imap_search_source){
		.msgs = b->msgs, .count = b->count,
		.keywords = b->keywords, .n_keywords = b->n_keywords,
		.ctx = b, .internaldate = src_internaldate,
		.header = src_header, .message = src_message,
	};
}

/* ------------------------------------------------------------- parsing */

static struct imap_command cmd;
static struct str err = STR_INIT;

/* Parse "X SEARCH <keys>" with the real command parser. */
static enum imap_search_parse_result parse(const char *keys,
					   struct imap_search_key **k)
{
	struct str line = STR_INIT, msg = STR_INIT;
	str_printf(&line, "X SEARCH %s\r\n", keys);
	imap_command_free(&cmd);
	memset(&cmd, 0, sizeof cmd);
	enum imap_read_result r = imap_command_parse(line.data, line.len, 0,
						     &cmd, &msg);
	if (r != IMAP_READ_OK)
		fail_msg("command parser refused \"%s\": %s", keys, str_c(&msg));
	str_free(&line);
	str_free(&msg);
	return imap_search_parse_command(cmd.args, cmd.argc, k, &err);
}

static struct imap_search_key *parse_ok(const char *keys)
{
	struct imap_search_key *k = NULL;
	if (parse(keys, &k) != IMAP_SEARCH_PARSE_OK)
		fail_msg("\"%s\" refused: %s", keys, str_c(&err));
	assert_non_null(k);
	return k;
}

static void parse_bad(const char *keys, const char *message)
{
	struct imap_search_key *k = (void *)1;
	assert_int_equal(parse(keys, &k), IMAP_SEARCH_PARSE_BAD);
	assert_null(k);
	assert_string_equal(str_c(&err), message);
}

static void test_parse_flag_keys(void **state)
{
	(void)state;
	static const struct {
		const char *key;
		uint8_t set, clear;
	} t[] = {
		{ "ANSWERED", IMAP_FLAG_ANSWERED, 0 },
		{ "deleted", IMAP_FLAG_DELETED, 0 },
		{ "Draft", IMAP_FLAG_DRAFT, 0 },
		{ "FLAGGED", IMAP_FLAG_FLAGGED, 0 },
		{ "RECENT", IMAP_FLAG_RECENT, 0 },
		{ "SEEN", IMAP_FLAG_SEEN, 0 },
		{ "UNANSWERED", 0, IMAP_FLAG_ANSWERED },
		{ "UNDELETED", 0, IMAP_FLAG_DELETED },
		{ "UNDRAFT", 0, IMAP_FLAG_DRAFT },
		{ "UNFLAGGED", 0, IMAP_FLAG_FLAGGED },
		{ "UNSEEN", 0, IMAP_FLAG_SEEN },
		{ "NEW", IMAP_FLAG_RECENT, IMAP_FLAG_SEEN },
		{ "OLD", 0, IMAP_FLAG_RECENT },
		{ "KEYWORD \\Seen", IMAP_FLAG_SEEN, 0 },
		{ "UNKEYWORD \\flagged", 0, IMAP_FLAG_FLAGGED },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct imap_search_key *k = parse_ok(t[i].key);
		assert_int_equal(k->op, IMAP_SK_FLAGS);
		assert_int_equal(k->flags_set, t[i].set);
		assert_int_equal(k->flags_clear, t[i].clear);
		assert_int_equal(k->cost, IMAP_SEARCH_COST_MEMORY);
		imap_search_key_free(k);
	}
	struct imap_search_key *k = parse_ok("ALL");
	assert_int_equal(k->op, IMAP_SK_ALL);
	imap_search_key_free(k);
}

static void test_parse_string_keys(void **state)
{
	(void)state;
	static const struct {
		const char *key, *field;
	} t[] = {
		{ "BCC Bob", "Bcc" }, { "CC Bob", "Cc" },
		{ "FROM Bob", "From" }, { "SUBJECT Bob", "Subject" },
		{ "to \"Bob\"", "To" }, { "HEADER X-Mailer Bob", "X-Mailer" },
		{ "HEADER \"X-Mailer\" {3}\r\nBob", "X-Mailer" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct imap_search_key *k = parse_ok(t[i].key);
		assert_int_equal(k->op, IMAP_SK_HEADER);
		assert_string_equal(k->name, t[i].field);
		/* 7-bit needles are kept lower-cased for the fast matcher */
		assert_string_equal(k->value, "bob");
		assert_int_equal(k->value_len, 3);
		assert_true(k->value_ascii);
		assert_int_equal(k->cost, IMAP_SEARCH_COST_HEADER);
		imap_search_key_free(k);
	}

	struct imap_search_key *k = parse_ok("SUBJECT \"Caf\xc3\xa9 Bar\"");
	assert_false(k->value_ascii);
	assert_string_equal(k->value, "Caf\xc3\xa9 Bar");
	imap_search_key_free(k);

	k = parse_ok("BODY \"a b\"");
	assert_int_equal(k->op, IMAP_SK_BODY);
	assert_string_equal(k->value, "a b");
	assert_int_equal(k->cost, IMAP_SEARCH_COST_BODY);
	imap_search_key_free(k);

	k = parse_ok("TEXT {5}\r\nHello");
	assert_int_equal(k->op, IMAP_SK_TEXT);
	assert_string_equal(k->value, "hello");
	imap_search_key_free(k);

	k = parse_ok("SUBJECT NIL");	/* the atom NIL is text here */
	assert_string_equal(k->value, "nil");
	imap_search_key_free(k);

	k = parse_ok("HEADER Message-ID \"\"");
	assert_string_equal(k->name, "Message-ID");
	assert_int_equal(k->value_len, 0);
	imap_search_key_free(k);

	k = parse_ok("KEYWORD $Forwarded");
	assert_int_equal(k->op, IMAP_SK_KEYWORD);
	assert_string_equal(k->name, "$Forwarded");
	imap_search_key_free(k);
	k = parse_ok("UNKEYWORD Work");
	assert_int_equal(k->op, IMAP_SK_UNKEYWORD);
	imap_search_key_free(k);
}

static void test_parse_other_keys(void **state)
{
	(void)state;
	static const struct {
		const char *key;
		enum imap_search_op op;
		int64_t day;
	} dates[] = {
		{ "BEFORE 1-Feb-1994", IMAP_SK_BEFORE, 760060800 },
		{ "ON 01-Feb-1994", IMAP_SK_ON, 760060800 },
		{ "SINCE \"1-Feb-1994\"", IMAP_SK_SINCE, 760060800 },
		{ "SENTBEFORE 2-Jan-2023", IMAP_SK_SENTBEFORE, 1672617600 },
		{ "SENTON 2-jan-2023", IMAP_SK_SENTON, 1672617600 },
		{ "SENTSINCE 2-JAN-2023", IMAP_SK_SENTSINCE, 1672617600 },
	};
	for (size_t i = 0; i < sizeof dates / sizeof dates[0]; i++) {
		struct imap_search_key *k = parse_ok(dates[i].key);
		assert_int_equal(k->op, dates[i].op);
		assert_int_equal(k->day, dates[i].day);
		imap_search_key_free(k);
	}

	struct imap_search_key *k = parse_ok("LARGER 1000");
	assert_int_equal(k->op, IMAP_SK_LARGER);
	assert_int_equal(k->number, 1000);
	imap_search_key_free(k);
	k = parse_ok("SMALLER 5");
	assert_int_equal(k->op, IMAP_SK_SMALLER);
	assert_int_equal(k->number, 5);
	imap_search_key_free(k);

	k = parse_ok("UID 1:5,7:*");
	assert_int_equal(k->op, IMAP_SK_UID);
	assert_true(imap_seqset_contains(&k->set, 7, 9));
	assert_false(imap_seqset_contains(&k->set, 6, 9));
	imap_search_key_free(k);

	k = parse_ok("2:4");
	assert_int_equal(k->op, IMAP_SK_SEQSET);
	assert_true(imap_seqset_contains(&k->set, 3, 10));
	imap_search_key_free(k);
	k = parse_ok("*");
	assert_int_equal(k->op, IMAP_SK_SEQSET);
	imap_search_key_free(k);

	k = parse_ok("NOT SEEN");
	assert_int_equal(k->op, IMAP_SK_NOT);
	assert_int_equal(k->n_sub, 1);
	assert_int_equal(k->sub[0]->op, IMAP_SK_FLAGS);
	imap_search_key_free(k);

	k = parse_ok("OR SEEN (DRAFT FLAGGED)");
	assert_int_equal(k->op, IMAP_SK_OR);
	assert_int_equal(k->n_sub, 2);
	assert_int_equal(k->sub[1]->op, IMAP_SK_AND);
	assert_int_equal(k->sub[1]->n_sub, 2);
	imap_search_key_free(k);

	k = parse_ok("(SEEN)");		/* a list of one is that key */
	assert_int_equal(k->op, IMAP_SK_FLAGS);
	imap_search_key_free(k);

	k = parse_ok("CHARSET UTF-8 SEEN DRAFT");
	assert_int_equal(k->op, IMAP_SK_AND);
	assert_int_equal(k->n_sub, 2);
	imap_search_key_free(k);
	k = parse_ok("charset us-ascii ALL");
	assert_int_equal(k->op, IMAP_SK_ALL);
	imap_search_key_free(k);
}

/* Cheap keys run first: memory, INTERNALDATE, header, body. */
static void test_parse_order(void **state)
{
	(void)state;
	struct imap_search_key *k =
		parse_ok("TEXT x SUBJECT y SINCE 1-Jan-2020 UNSEEN "
			 "(BODY z FROM w) 1:3 OR SEEN FROM q");
	assert_int_equal(k->op, IMAP_SK_AND);
	assert_int_equal(k->n_sub, 7);
	assert_int_equal(k->sub[0]->op, IMAP_SK_FLAGS);
	assert_int_equal(k->sub[1]->op, IMAP_SK_SEQSET);
	assert_int_equal(k->sub[2]->op, IMAP_SK_SINCE);
	assert_int_equal(k->sub[3]->op, IMAP_SK_HEADER);	/* SUBJECT */
	assert_int_equal(k->sub[4]->op, IMAP_SK_OR);
	assert_int_equal(k->sub[5]->op, IMAP_SK_TEXT);
	assert_int_equal(k->sub[6]->op, IMAP_SK_AND);
	/* inside the list and the OR too */
	assert_int_equal(k->sub[6]->sub[0]->op, IMAP_SK_HEADER);
	assert_int_equal(k->sub[6]->sub[1]->op, IMAP_SK_BODY);
	assert_int_equal(k->sub[4]->sub[0]->op, IMAP_SK_FLAGS);
	assert_int_equal(k->cost, IMAP_SEARCH_COST_BODY);
	assert_int_equal(k->sub[4]->cost, IMAP_SEARCH_COST_HEADER);
	imap_search_key_free(k);
}

static void test_parse_errors(void **state)
{
	(void)state;
	parse_bad("", "Missing search key");
	parse_bad("FOO", "Unknown search key: FOO");
	parse_bad("SEEN BLAH DRAFT", "Unknown search key: BLAH");
	parse_bad("SUBJECT", "Missing argument to search key: SUBJECT");
	parse_bad("HEADER X-Foo", "Missing argument to search key: HEADER");
	parse_bad("HEADER", "Missing argument to search key: HEADER");
	parse_bad("HEADER \"a:b\" x", "Invalid header field name: a:b");
	parse_bad("SUBJECT (a)",
		  "Search key needs a string argument: SUBJECT");
	parse_bad("BEFORE", "Missing argument to search key: BEFORE");
	parse_bad("SINCE 32-Jan-2020", "Invalid date: 32-Jan-2020");
	parse_bad("SINCE 1-Foo-2020", "Invalid date: 1-Foo-2020");
	parse_bad("ON 2020-01-01", "Invalid date: 2020-01-01");
	parse_bad("SENTON \"1-Jan-2020 10:00:00 +0000\"",
		  "Invalid date: 1-Jan-2020 10:00:00 +0000");
	parse_bad("OR SEEN", "OR needs two search keys");
	parse_bad("OR", "OR needs two search keys");
	parse_bad("NOT", "NOT needs a search key");
	parse_bad("SEEN NOT", "NOT needs a search key");
	parse_bad("LARGER", "Missing argument to search key: LARGER");
	parse_bad("LARGER abc", "Invalid number: abc");
	parse_bad("SMALLER -1", "Invalid number: -1");
	parse_bad("LARGER 99999999999999999999999",
		  "Invalid number: 99999999999999999999999");
	parse_bad("UID", "Missing argument to search key: UID");
	parse_bad("UID abc", "Invalid sequence set: abc");
	parse_bad("1:x", "Invalid sequence set: 1:x");
	parse_bad("0", "Invalid sequence set: 0");
	parse_bad("KEYWORD", "Missing argument to search key: KEYWORD");
	parse_bad("KEYWORD \"a b\"", "Invalid keyword: a b");
	parse_bad("\"SEEN\"", "Search key expected: SEEN");
	parse_bad("(SEEN FOO)", "Unknown search key: FOO");
	parse_bad("CHARSET", "CHARSET needs a charset name");
	parse_bad("CHARSET UTF-8", "Missing search key");
	/* client text is echoed bounded and printable */
	parse_bad("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
		  "Unknown search key: XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX...");

	struct imap_search_key *k = (void *)1;
	assert_int_equal(parse("CHARSET ISO-8859-1 SUBJECT x", &k),
			 IMAP_SEARCH_PARSE_BADCHARSET);
	assert_null(k);
	assert_string_equal(str_c(&err), "Unsupported charset");
	assert_int_equal(parse("CHARSET UTF-7 ALL", &k),
			 IMAP_SEARCH_PARSE_BADCHARSET);
}

static void test_parse_empty_list(void **state)
{
	(void)state;
	/* the command parser may refuse "()" itself; build it directly */
	struct imap_arg list = { .type = IMAP_ARG_LIST, .list = NULL,
				 .count = 0 };
	struct imap_search_key *k = (void *)1;
	assert_int_equal(imap_search_parse(&list, 1, &k, &err),
			 IMAP_SEARCH_PARSE_BAD);
	assert_null(k);
	assert_string_equal(str_c(&err), "Empty search key list");
}

static void test_parse_bounds(void **state)
{
	(void)state;
	struct str s = STR_INIT;
	struct imap_search_key *k;

	/* NOT NOT ... SEEN: 20 deep is fine, 40 is not */
	for (int i = 0; i < 20; i++)
		str_append(&s, "NOT ");
	str_append(&s, "SEEN");
	k = parse_ok(str_c(&s));
	imap_search_key_free(k);
	str_clear(&s);
	for (int i = 0; i < 40; i++)
		str_append(&s, "NOT ");
	str_append(&s, "SEEN");
	parse_bad(str_c(&s), "Search keys nested too deeply");

	/* OR chains nest too */
	str_clear(&s);
	for (int i = 0; i < 40; i++)
		str_append(&s, "OR SEEN ");
	str_append(&s, "DRAFT");
	parse_bad(str_c(&s), "Search keys nested too deeply");

	/* lists 40 deep, built by hand (the command parser stops at 32) */
	struct imap_arg lists[41];
	for (int i = 0; i < 40; i++)
		lists[i] = (struct imap_arg){ .type = IMAP_ARG_LIST,
					      .list = &lists[i + 1],
					      .count = 1 };
	lists[40] = (struct imap_arg){ .type = IMAP_ARG_ATOM, .str = "SEEN",
				       .len = 4 };
	k = (void *)1;
	assert_int_equal(imap_search_parse(lists, 1, &k, &err),
			 IMAP_SEARCH_PARSE_BAD);
	assert_string_equal(str_c(&err), "Search keys nested too deeply");
	assert_int_equal(imap_search_parse(&lists[20], 1, &k, &err),
			 IMAP_SEARCH_PARSE_OK);
	assert_int_equal(k->op, IMAP_SK_FLAGS);
	imap_search_key_free(k);

	/* key count */
	str_clear(&s);
	for (int i = 0; i < 500; i++)
		str_append(&s, "SEEN ");
	k = parse_ok(str_c(&s));
	assert_int_equal(k->n_sub, 500);
	imap_search_key_free(k);
	str_clear(&s);
	for (int i = 0; i < 1001; i++)
		str_append(&s, "SEEN ");
	parse_bad(str_c(&s), "Too many search keys");
	str_free(&s);
}

/* -------------------------------------------------------- the Date: parser */

static void date_ok(const char *s, int64_t when, int zone)
{
	int64_t w = -1;
	int z = -99999;
	if (imap_search_parse_mail_date(s, strlen(s), &w, &z) != 0)
		fail_msg("date refused: %s", s);
	assert_int_equal(w, when);
	assert_int_equal(z, zone);
}

static void date_bad(const char *s)
{
	int64_t w;
	int z;
	if (imap_search_parse_mail_date(s, strlen(s), &w, &z) != -1)
		fail_msg("date accepted: %s", s);
}

static void test_mail_date(void **state)
{
	(void)state;
	date_ok("Mon, 2 Jan 2023 00:30:00 +1400", 1672569000, 840);
	date_ok("2 Jan 2023 00:30 +1400", 1672569000, 840);
	date_ok("Mon,02 Jan 2023 00:30:00 -0000", 1672619400, 0);
	date_ok("Sun, 1 Jan 2023 23:30:00 -1000", 1672651800, -600);
	date_ok("Mon, 02 Jan 23 10:30:00 GMT", 1672655400, 0);
	date_ok("3 Feb 94 10:00 EST", 760287600, -300);
	date_ok("Thu, 3 Feb 1994 07:00:00 PST", 760287600, -480);
	date_ok("2 Jan 123 00:00:00 +0000", 1672617600, 0);	/* obs year */
	date_ok("Tue, 1 Jul 2003 10:52:37 +0200 (CEST)", 1057049557, 120);
	date_ok("(comment) Tue, (c) 1 Jul 2003 10:52:37 +0200", 1057049557,
		120);
	date_ok("Mon, 2 Jan 2023 10:30:00 Z", 1672655400, 0);
	date_ok("Mon, 2 Jan 2023 10:30:00 A", 1672655400, 0);
	date_ok("Mon, 2 Jan 2023 10:30:00", 1672655400, 0);
	date_ok("Mon, 2 Jan 2023", 1672617600, 0);
	date_ok("Mon, 2 January 2023 10:30:00 +0000", 1672655400, 0);
	date_ok("Mon Jan  2 10:30:00 2023", 1672655400, 0);	/* asctime */
	date_ok("2-Jan-2023 10:30:60 +0000", 1672655459, 0);	/* leap */
	date_ok("  Mon,\r\n 2 Jan 2023 10:30:00 +0000", 1672655400, 0);
	date_bad("");
	date_bad("garbage");
	date_bad("Mon, 32 Jan 2023 10:30:00 +0000");
	date_bad("Mon, 2 Foo 2023 10:30:00 +0000");
	date_bad("Mon, 2 Jan 2023 25:30:00 +0000");
	date_bad("Mon, 2 Jan 2023 10:30:00 +01");
	date_bad("Mon, 2 Jan 2023 10:30:00 +0160");
	date_bad("Mon, 2 Jan 2023 10:");
	date_bad("Mon, 2 Jan 2 10:30:00 +0000");
	date_bad("Mon, 2 Jan 123456 10:30:00 +0000");
}

/* ------------------------------------------------------------ evaluation */

#define M1_TEXT \
	"From: Alice Example <alice@example.org>\n" \
	"To: bob@example.com\n" \
	"Cc: carol@example.net\n" \
	"Subject: =?UTF-8?B?Q2Fmw6kgbWVldGluZw==?=\n" \
	"Date: Mon, 2 Jan 2023 00:30:00 +1400\n" \
	"Received: from a by b\n" \
	"Received: from relay.example by mx\n" \
	"Message-ID: <1@x>\n" \
	"\n" \
	"Plain body with the word giraffe.\n"

#define M2_TEXT \
	"From: =?ISO-8859-1?Q?J=F6rg?= <jorg@example.de>\n" \
	"To: alice@example.org\n" \
	"Subject: Parts\n" \
	"Date: Sun, 1 Jan 2023 23:30:00 -1000\n" \
	"MIME-Version: 1.0\n" \
	"Content-Type: multipart/mixed; boundary=\"XX\"\n" \
	"\n" \
	"preamble penguin\n" \
	"--XX\n" \
	"Content-Type: text/plain; charset=utf-8\n" \
	"Content-Transfer-Encoding: base64\n" \
	"\n" \
	"R3LDtsOfZSBtYXR0ZXJzOiB6ZWJyYSBjcm9zc2luZwo=\n" \
	"--XX\n" \
	"Content-Type: text/html; charset=utf-8\n" \
	"Content-Transfer-Encoding: quoted-printable\n" \
	"\n" \
	"<p>The quick brown fox =\n" \
	"jumps</p> caf=C3=A9\n" \
	"--XX\n" \
	"Content-Type: text/plain; charset=iso-8859-1\n" \
	"Content-Transfer-Encoding: 8bit\n" \
	"\n" \
	"Gr\xfc\xdf" "e aus K\xf6ln\n" \
	"--XX\n" \
	"Content-Type: application/octet-stream\n" \
	"Content-Transfer-Encoding: base64\n" \
	"\n" \
	"c2VjcmV0LWF0dGFjaG1lbnQtd29yZCBoaXBwbwo=\n" \
	"--XX\n" \
	"Content-Type: image/png\n" \
	"\n" \
	"hippopotamus raw\n" \
	"--XX--\n"

#define M3_TEXT \
	"From: dave@example.com\n" \
	"Subject: Re: status\n" \
	" folded continuation line\n" \
	"\n" \
	"Nothing to see.\n"

#define M4_TEXT \
	"From: eve@example.com\n" \
	"To: frank@example.com\n" \
	"Subject: Fwd: inner\n" \
	"Date: 3 Feb 94 10:00 EST\n" \
	"MIME-Version: 1.0\n" \
	"Content-Type: message/rfc822\n" \
	"\n" \
	"From: inner@example.com\n" \
	"Subject: =?utf-8?q?Inner_=C3=9Cber?=\n" \
	"\n" \
	"inner body text ostrich\n"

static struct box *sample_box(void)
{
	struct box *b = xcalloc(1, sizeof *b);
	b->keywords[0] = "$Forwarded";
	b->keywords[1] = "Work";
	b->n_keywords = 2;
	box_add(b, 3, IMAP_FLAG_SEEN, 0, 100, 1672569000, M1_TEXT);
	box_add(b, 7, IMAP_FLAG_RECENT, 1u << 1, 5000, 1672651800, M2_TEXT);
	box_add(b, 9, IMAP_FLAG_DELETED | IMAP_FLAG_FLAGGED |
		IMAP_FLAG_RECENT | IMAP_FLAG_SEEN, 0, 20000, 1678881600,
		M3_TEXT);
	box_add(b, 20, IMAP_FLAG_ANSWERED | IMAP_FLAG_SEEN | IMAP_FLAG_DRAFT,
		1u << 0, 300, 760287600, M4_TEXT);
	return b;
}

/* The sequence numbers matching keys, as "1 3". */
static const char *run(struct box *b, const char *keys)
{
	static struct str out = STR_INIT;
	struct imap_search_key *k = parse_ok(keys);
	struct imap_search_source src;
	struct imap_search_ctx ctx;
	box_source(b, &src);
	imap_search_init(&ctx, &src, k);
	str_clear(&out);
	for (size_t i = 0; i < b->count; i++)
		if (imap_search_match(&ctx, i))
			str_printf(&out, "%s%zu", out.len ? " " : "", i + 1);
	imap_search_deinit(&ctx);
	imap_search_key_free(k);
	return str_c(&out);
}

static void expect(struct box *b, const char *keys, const char *result)
{
	const char *got = run(b, keys);
	if (strcmp(got, result) != 0)
		fail_msg("SEARCH %s: got \"%s\", expected \"%s\"", keys, got,
			 result);
}

static void test_eval_flags(void **state)
{
	(void)state;
	struct box *b = sample_box();
	expect(b, "ALL", "1 2 3 4");
	expect(b, "SEEN", "1 3 4");
	expect(b, "UNSEEN", "2");
	expect(b, "NEW", "2");
	expect(b, "OLD", "1 4");
	expect(b, "RECENT", "2 3");
	expect(b, "ANSWERED", "4");
	expect(b, "UNANSWERED", "1 2 3");
	expect(b, "DELETED", "3");
	expect(b, "UNDELETED", "1 2 4");
	expect(b, "DRAFT", "4");
	expect(b, "UNDRAFT", "1 2 3");
	expect(b, "FLAGGED", "3");
	expect(b, "UNFLAGGED", "1 2 4");
	expect(b, "KEYWORD work", "2");
	expect(b, "KEYWORD $Forwarded", "4");
	expect(b, "KEYWORD nothere", "");
	expect(b, "UNKEYWORD nothere", "1 2 3 4");
	expect(b, "UNKEYWORD Work", "1 3 4");
	expect(b, "KEYWORD \\Seen", "1 3 4");
	expect(b, "LARGER 300", "2 3");
	expect(b, "SMALLER 300", "1");
	expect(b, "LARGER 99 SMALLER 5001", "1 2 4");
	/* nothing but memory was needed */
	assert_int_equal(b->header_calls, 0);
	assert_int_equal(b->message_calls, 0);
	assert_int_equal(b->idate_calls, 0);
	box_free(b);
}

static void test_eval_sets(void **state)
{
	(void)state;
	struct box *b = sample_box();	/* UIDs 3 7 9 20 */
	expect(b, "UID 8:*", "3 4");
	expect(b, "UID 25:*", "4");	/* n:* includes the highest */
	expect(b, "UID *", "4");
	expect(b, "UID 1:7", "1 2");
	expect(b, "UID 4,9", "3");
	expect(b, "UID 21:30", "");
	expect(b, "2:*", "2 3 4");
	expect(b, "*", "4");
	expect(b, "3:2", "2 3");
	expect(b, "1,4", "1 4");
	expect(b, "7", "");		/* beyond the mailbox: no match */
	expect(b, "NOT UID 3:9", "4");
	box_free(b);
}

static void test_eval_logic(void **state)
{
	(void)state;
	struct box *b = sample_box();
	expect(b, "OR SEEN RECENT", "1 2 3 4");
	expect(b, "NOT SEEN", "2");
	expect(b, "NOT NOT NOT SEEN", "2");
	expect(b, "NOT (SEEN FLAGGED)", "1 2 4");
	expect(b, "OR (UNSEEN KEYWORD work) (DELETED SUBJECT status)", "2 3");
	expect(b, "OR NOT SEEN UID 20", "2 4");
	expect(b, "(OR ANSWERED DRAFT) NOT FROM eve", "");
	expect(b, "OR OR DRAFT FLAGGED (NEW (FROM jorg))", "2 3 4");
	expect(b, "SEEN (UNDELETED (NOT (OR TO bob CC nobody)))", "4");
	expect(b, "OR SUBJECT parts BODY giraffe", "1 2");
	box_free(b);
}

static void test_eval_headers(void **state)
{
	(void)state;
	struct box *b = sample_box();
	expect(b, "FROM alice", "1");
	expect(b, "FROM ALICE@EXAMPLE.ORG", "1");
	expect(b, "FROM \"J\xc3\xb6rg\"", "2");		/* RFC 2047 Q */
	expect(b, "FROM \"J\xc3\x96RG\"", "2");		/* any case */
	expect(b, "TO alice", "2");
	expect(b, "CC carol", "1");
	expect(b, "BCC carol", "");
	expect(b, "SUBJECT \"caf\xc3\xa9 meet\"", "1");	/* RFC 2047 B */
	expect(b, "SUBJECT \"CAF\xc3\x89\"", "1");
	expect(b, "SUBJECT Q2Fmw6k", "");	/* not the encoded form */
	expect(b, "SUBJECT \"status folded continuation\"", "3");
	expect(b, "SUBJECT inner", "4");
	expect(b, "SUBJECT \"\xc3\x9c" "ber\"", "");	/* inner header */
	expect(b, "SUBJECT \"\"", "1 2 3 4");
	expect(b, "HEADER Received relay", "1");	/* any occurrence */
	expect(b, "HEADER received \"from a\"", "1");
	expect(b, "HEADER Message-ID \"\"", "1");	/* has the field */
	expect(b, "HEADER X-Nothing \"\"", "");
	expect(b, "HEADER Content-Type multipart/mixed", "2");
	expect(b, "HEADER Subject \"Fwd:\"", "4");
	/* header keys read headers only */
	assert_int_equal(b->message_calls, 0);
	box_free(b);
}

static void test_eval_bodies(void **state)
{
	(void)state;
	struct box *b = sample_box();
	expect(b, "BODY giraffe", "1");
	expect(b, "BODY GIRAFFE", "1");
	expect(b, "BODY \"gr\xc3\xb6\xc3\x9f" "e matters\"", "2"); /* base64 */
	expect(b, "BODY \"GR\xc3\x96\xc3\x9f" "E\"", "2");
	expect(b, "BODY zebra", "2");
	expect(b, "BODY \"fox jumps\"", "2");	/* QP soft line break */
	expect(b, "BODY \"caf\xc3\xa9\"", "2");	/* QP, not M1's subject */
	expect(b, "BODY \"K\xc3\x96LN\"", "2");	/* latin-1 part */
	expect(b, "BODY \"gr\xc3\xbc\xc3\x9f" "e aus\"", "2");
	expect(b, "BODY hippo", "");		/* attachments are not text */
	expect(b, "BODY c2VjcmV0", "");
	expect(b, "BODY ostrich", "4");		/* message/rfc822 */
	expect(b, "BODY inner@example.com", "4");
	expect(b, "BODY \"\xc3\xbc" "ber\"", "4");	/* its header */
	expect(b, "BODY Subject", "4");
	expect(b, "BODY alice", "");
	expect(b, "BODY \"\"", "1 2 3 4");
	expect(b, "TEXT \"caf\xc3\xa9\"", "1 2");	/* header or body */
	expect(b, "TEXT giraffe", "1");
	expect(b, "TEXT dave", "3");
	expect(b, "TEXT \"subject: re: status\"", "3");
	expect(b, "TEXT hippo", "");
	expect(b, "TEXT nowhere-at-all", "");
	box_free(b);
}

static void test_eval_dates(void **state)
{
	(void)state;
	struct box *b = sample_box();
	setenv("TZ", "UTC", 1);
	tzset();
	/* sent dates in the header's own zone: M1 is 2 Jan at +1400 (1 Jan
	 * UTC), M2 1 Jan at -1000 (2 Jan UTC), M3 has no Date: and uses
	 * INTERNALDATE (15 Mar 2023), M4 is 3 Feb 1994 */
	expect(b, "SENTSINCE 2-Jan-2023", "1 3");
	expect(b, "SENTON 2-Jan-2023", "1");
	expect(b, "SENTON 1-Jan-2023", "2");
	expect(b, "SENTBEFORE 2-Jan-2023", "2 4");
	expect(b, "SENTON 15-Mar-2023", "3");
	expect(b, "SENTON 3-Feb-1994", "4");
	expect(b, "SENTBEFORE 1-Jan-1990", "");

	/* INTERNALDATE in the server's zone */
	expect(b, "ON 1-Jan-2023", "1");
	expect(b, "ON 2-Jan-2023", "2");
	expect(b, "BEFORE 1-Jan-2023", "4");
	expect(b, "SINCE 1-Mar-2023", "3");
	expect(b, "SINCE 1-Jan-2023 BEFORE 3-Jan-2023", "1 2");
	setenv("TZ", "XYZ-14", 1);	/* UTC+14 */
	tzset();
	expect(b, "ON 1-Jan-2023", "");
	expect(b, "ON 2-Jan-2023", "1 2");
	setenv("TZ", "XYZ+10", 1);	/* UTC-10 */
	tzset();
	expect(b, "ON 1-Jan-2023", "1 2");
	/* sent dates do not depend on the server's zone */
	expect(b, "SENTSINCE 2-Jan-2023", "1 3");
	setenv("TZ", "UTC", 1);
	tzset();
	box_free(b);
}

/* Messages gone from disk: memory keys work, content keys never match. */
static void test_eval_gone(void **state)
{
	(void)state;
	struct box *b = sample_box();
	b->gone[1] = true;
	b->msgs[1].state = IMAP_MSG_GONE;
	expect(b, "UNSEEN", "2");
	expect(b, "ALL", "1 2 3 4");
	expect(b, "SUBJECT parts", "");
	expect(b, "NOT SUBJECT zzz", "1 3 4");
	expect(b, "NOT BODY zzz", "1 3 4");
	expect(b, "NOT TEXT zzz", "1 3 4");
	expect(b, "NOT BEFORE 1-Jan-1900", "1 3 4");
	expect(b, "NOT SENTBEFORE 1-Jan-1900", "1 3 4");
	expect(b, "OR UNSEEN SUBJECT zzz", "2");	/* decided by memory */
	expect(b, "UNSEEN SUBJECT parts", "");
	box_free(b);
}

/* The data source is asked only for what the keys need, once. */
static void test_eval_laziness(void **state)
{
	(void)state;
	struct box *b = sample_box();

	run(b, "UNSEEN SUBJECT parts");
	assert_int_equal(b->header_calls, 1);	/* the unseen one only */
	assert_int_equal(b->message_calls, 0);

	b->header_calls = 0;
	run(b, "SUBJECT a FROM b TO c HEADER Date 2023");
	assert_int_equal(b->header_calls, 4);	/* once per message */
	assert_int_equal(b->message_calls, 0);

	b->header_calls = 0;
	run(b, "SUBJECT zzz BODY giraffe");
	assert_int_equal(b->header_calls, 4);
	assert_int_equal(b->message_calls, 0);	/* no subject matched */

	b->header_calls = 0;
	run(b, "TEXT x BODY y TEXT z SENTON 1-Jan-2000 SUBJECT \"\"");
	assert_int_equal(b->message_calls, 0);	/* SENTON failed first */

	b->header_calls = 0;
	run(b, "TEXT x BODY y TEXT z");
	assert_int_equal(b->message_calls, 4);
	assert_int_equal(b->header_calls, 0);

	b->idate_calls = b->header_calls = b->message_calls = 0;
	run(b, "SINCE 1-Jan-2000 BEFORE 1-Jan-2030 ON 1-Jan-2023");
	assert_int_equal(b->idate_calls, 4);
	assert_int_equal(b->header_calls, 0);
	box_free(b);
}

/* Many messages, some broken: no crash, the right count. */
static void test_eval_many(void **state)
{
	(void)state;
	struct box *b = xcalloc(1, sizeof *b);
	struct str t = STR_INIT;
	for (uint32_t i = 0; i < 1000; i++) {
		str_clear(&t);
		str_printf(&t, "Subject: message %u\n", i);
		if (i % 11 == 0)
			str_append(&t, "Content-Type: multipart/mixed; "
				   "boundary=b\n");
		else if (i % 7 == 0)
			str_append(&t, "Content-Type: text/plain; "
				   "charset=koi8-r\n"
				   "Content-Transfer-Encoding: "
				   "quoted-printable\n");
		str_printf(&t, "\nbody %s end =3D\n",
			   i % 3 == 0 ? "needle" : "hay");
		box_add(b, i + 1, 0, 0, t.len, 0, str_c(&t));
	}
	str_free(&t);
	struct imap_search_key *k = parse_ok("BODY needle");
	struct imap_search_source src;
	struct imap_search_ctx ctx;
	box_source(b, &src);
	imap_search_init(&ctx, &src, k);
	size_t n = 0;
	for (size_t i = 0; i < b->count; i++)
		if (imap_search_match(&ctx, i)) {
			n++;
			assert_int_equal(i % 3, 0);
		}
	imap_search_deinit(&ctx);
	imap_search_key_free(k);
	/* multipart ones without a boundary in the body have no text */
	size_t want = 0;
	for (size_t i = 0; i < 1000; i++)
		if (i % 3 == 0 && i % 11 != 0)
			want++;
	assert_int_equal(n, want);
	box_free(b);
}

/* ---------------------------------------------- imap_cmd_search, stubbed */

static struct box *g_box;
static struct imap_message g_msg;
static struct str g_reply = STR_INIT;

static void record(const char *kind, const char *fmt, va_list ap)
{
	str_clear(&g_reply);
	str_append(&g_reply, kind);
	str_append_c(&g_reply, ' ');
	str_vprintf(&g_reply, fmt, ap);
}

void imap_ok(struct imap_session *s, const struct imap_command *c,
	     const char *fmt, ...)
{
	(void)s;
	(void)c;
	va_list ap;
	va_start(ap, fmt);
	record("OK", fmt, ap);
	va_end(ap);
}

void imap_no(struct imap_session *s, const struct imap_command *c,
	     const char *fmt, ...)
{
	(void)s;
	(void)c;
	va_list ap;
	va_start(ap, fmt);
	record("NO", fmt, ap);
	va_end(ap);
}

void imap_bad(struct imap_session *s, const struct imap_command *c,
	      const char *fmt, ...)
{
	(void)s;
	(void)c;
	va_list ap;
	va_start(ap, fmt);
	record("BAD", fmt, ap);
	va_end(ap);
}

struct imap_message *imap_message_get(struct imap_session *s, size_t idx,
				      bool header_only)
{
	(void)s;
	if (g_msg.parsed)
		mime_free(&g_msg.mime);
	g_msg.parsed = false;
	if (g_box->gone[idx])
		return NULL;
	if (header_only)
		g_box->header_calls++;
	else
		g_box->message_calls++;
	str_clear(&g_msg.text);
	str_append_n(&g_msg.text, g_box->text[idx].data,
		     header_only ? g_box->hlen[idx] : g_box->text[idx].len);
	g_msg.uid = g_box->msgs[idx].uid;
	g_msg.whole = !header_only;
	return &g_msg;
}

const struct mime_part *imap_message_mime(struct imap_message *m)
{
	if (!m->parsed) {
		mime_parse(m->text.data, m->text.len, &m->mime);
		m->parsed = true;
	}
	return &m->mime;
}

size_t imap_message_header_end(const struct imap_message *m)
{
	return header_length(m->text.data, m->text.len);
}

int imap_folder_msg_internaldate(struct imap_folder *f, size_t i,
				 int64_t *when)
{
	(void)f;
	g_box->idate_calls++;
	*when = g_box->idate[i];
	return 0;
}

/* Run a SEARCH command on a session over g_box; the untagged output. */
static char *command(const char *line)
{
	struct imap_folder f;
	memset(&f, 0, sizeof f);
	f.msgs = g_box->msgs;
	f.count = g_box->count;
	for (unsigned i = 0; i < g_box->n_keywords; i++)
		f.keywords[i] = g_box->keywords[i];
	f.n_keywords = g_box->n_keywords;

	struct imap_session *s = xcalloc(1, sizeof *s);
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	stream_init(&s->io, -1, fileno(tmp), 0, 1024);
	s->state = IMAP_SELECTED;
	s->sel = &f;

	struct str msg = STR_INIT;
	imap_command_free(&cmd);
	memset(&cmd, 0, sizeof cmd);
	assert_int_equal(imap_command_parse(line, strlen(line), 0, &cmd, &msg),
			 IMAP_READ_OK);
	str_free(&msg);
	str_clear(&g_reply);
	imap_cmd_search(s, &cmd);
	assert_int_equal(stream_flush(&s->io), STREAM_OK);

	long size = ftell(tmp);
	assert_true(size >= 0);
	char *out = xmalloc((size_t)size + 1);
	rewind(tmp);
	assert_int_equal(fread(out, 1, (size_t)size, tmp), (size_t)size);
	out[size] = '\0';
	fclose(tmp);
	stream_free(&s->io);
	free(s);
	return out;
}

static void test_command(void **state)
{
	(void)state;
	g_box = sample_box();
	char *out = command("A1 SEARCH SEEN\r\n");
	assert_string_equal(out, "* SEARCH 1 3 4\r\n");
	assert_string_equal(str_c(&g_reply), "OK Search completed");
	free(out);

	out = command("A2 UID SEARCH SEEN\r\n");
	assert_string_equal(out, "* SEARCH 3 9 20\r\n");
	assert_string_equal(str_c(&g_reply), "OK Search completed");
	free(out);

	out = command("A3 SEARCH CHARSET UTF-8 SUBJECT \"CAF\xc3\x89\"\r\n");
	assert_string_equal(out, "* SEARCH 1\r\n");
	free(out);

	out = command("A4 UID SEARCH BODY nothing-matches\r\n");
	assert_string_equal(out, "* SEARCH\r\n");
	assert_string_equal(str_c(&g_reply), "OK Search completed");
	free(out);

	out = command("A5 SEARCH TEXT \"fox jumps\" UID 1:*\r\n");
	assert_string_equal(out, "* SEARCH 2\r\n");
	free(out);

	out = command("A6 SEARCH CHARSET KOI8-R ALL\r\n");
	assert_string_equal(out, "");
	assert_string_equal(str_c(&g_reply),
			    "NO [BADCHARSET (UTF-8 US-ASCII)] "
			    "Unsupported charset");
	free(out);

	out = command("A7 SEARCH FOO\r\n");
	assert_string_equal(out, "");
	assert_string_equal(str_c(&g_reply),
			    "BAD Unknown search key: FOO");
	free(out);

	out = command("A8 SEARCH\r\n");
	assert_string_equal(out, "");
	assert_string_equal(str_c(&g_reply), "BAD Missing search key");
	free(out);

	/* a gone message is never read */
	g_box->gone[0] = true;
	g_box->msgs[0].state = IMAP_MSG_GONE;
	g_box->header_calls = g_box->message_calls = 0;
	out = command("A9 SEARCH NOT SUBJECT zzz\r\n");
	assert_string_equal(out, "* SEARCH 2 3 4\r\n");
	assert_int_equal(g_box->header_calls, 3);
	free(out);
	out = command("A10 SEARCH SEEN\r\n");
	assert_string_equal(out, "* SEARCH 1 3 4\r\n");
	free(out);

	if (g_msg.parsed)
		mime_free(&g_msg.mime);
	g_msg.parsed = false;
	str_free(&g_msg.text);
	box_free(g_box);
	g_box = NULL;
}

/* Thousands of matches: written in chunks, every number once, in order. */
static void test_command_many(void **state)
{
	(void)state;
	g_box = xcalloc(1, sizeof *g_box);
	for (uint32_t i = 0; i < 3000; i++)
		box_add(g_box, 100000 + i * 3, i % 2 ? IMAP_FLAG_SEEN : 0, 0,
			10, 0, "Subject: x\n\nbody\n");
	char *out = command("B UID SEARCH UNSEEN\r\n");
	struct str want = STR_INIT;
	str_append(&want, "* SEARCH");
	for (uint32_t i = 0; i < 3000; i += 2)
		str_printf(&want, " %u", 100000 + i * 3);
	str_append(&want, "\r\n");
	assert_true(want.len > 4096 * 2);
	assert_string_equal(out, str_c(&want));
	assert_int_equal(g_box->header_calls + g_box->message_calls +
			 g_box->idate_calls, 0);
	free(out);
	str_free(&want);
	box_free(g_box);
	g_box = NULL;
}

static int teardown(void **state)
{
	(void)state;
	imap_command_free(&cmd);
	memset(&cmd, 0, sizeof cmd);
	return 0;
}

int main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_flag_keys),
		cmocka_unit_test(test_parse_string_keys),
		cmocka_unit_test(test_parse_other_keys),
		cmocka_unit_test(test_parse_order),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_empty_list),
		cmocka_unit_test(test_parse_bounds),
		cmocka_unit_test(test_mail_date),
		cmocka_unit_test(test_eval_flags),
		cmocka_unit_test(test_eval_sets),
		cmocka_unit_test(test_eval_logic),
		cmocka_unit_test(test_eval_headers),
		cmocka_unit_test(test_eval_bodies),
		cmocka_unit_test(test_eval_dates),
		cmocka_unit_test(test_eval_gone),
		cmocka_unit_test(test_eval_laziness),
		cmocka_unit_test(test_eval_many),
		cmocka_unit_test(test_command),
		cmocka_unit_test(test_command_many),
	};
	int r = cmocka_run_group_tests(tests, NULL, teardown);
	str_free(&err);
	str_free(&g_reply);
	return r;
}
