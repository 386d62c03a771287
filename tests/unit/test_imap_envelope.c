/*
 * test_imap_envelope: ENVELOPE, BODY/BODYSTRUCTURE and body sections
 * (imap_fetch_build.h) against exact expected strings, and random input
 * that must always give grammatical output.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap_fetch_build.h"
#include "mime.h"
#include "str.h"

static void check_envelope(const char *msg, const char *expected)
{
	struct str out = STR_INIT;
	size_t len = strlen(msg);
	struct mime_part root;
	mime_parse(msg, len, &root);
	imap_envelope_build(msg, root.header, root.body, &out);
	assert_string_equal(str_c(&out), expected);
	mime_free(&root);
	str_free(&out);
}

static void check_structure(const char *msg, bool extended,
			    const char *expected)
{
	struct str out = STR_INIT;
	struct mime_part root;
	mime_parse(msg, strlen(msg), &root);
	imap_bodystructure_build(msg, &root, extended, &out);
	assert_string_equal(str_c(&out), expected);
	mime_free(&root);
	str_free(&out);
}

/* ---- ENVELOPE ---- */

static void test_envelope_rfc3501(void **state)
{
	(void)state;
	/* the example of RFC 3501 8 */
	check_envelope(
		"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
		"From: Terry Gray <gray@cac.washington.edu>\r\n"
		"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
		"To: imap@cac.washington.edu\r\n"
		"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
		"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
		"\r\n"
		"body\r\n",
		"(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
		"\"IMAP4rev1 WG mtg summary and minutes\" "
		"((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
		"((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
		"((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
		"((NIL NIL \"imap\" \"cac.washington.edu\")) "
		"((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")"
		"(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) "
		"NIL NIL \"<B27397-0100000@cac.washington.edu>\")");
}

static void test_envelope_missing(void **state)
{
	(void)state;
	check_envelope("Subject: hi\r\n\r\nbody\r\n",
		       "(NIL \"hi\" NIL NIL NIL NIL NIL NIL NIL NIL)");
	check_envelope("", "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	check_envelope("\r\nno header\r\n",
		       "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	/* present but empty: "" for strings, NIL for address lists */
	check_envelope("Subject:\r\nTo:  \r\nIn-Reply-To: <a@b>\r\n\r\n",
		       "(NIL \"\" NIL NIL NIL NIL NIL NIL \"<a@b>\" NIL)");
}

static void test_envelope_sender_reply_to(void **state)
{
	(void)state;
	/* explicit Sender and Reply-To win; an empty one takes From */
	check_envelope("From: a@b.c\r\nSender: s@b.c\r\nReply-To:\r\n\r\n",
		       "(NIL NIL ((NIL NIL \"a\" \"b.c\")) "
		       "((NIL NIL \"s\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) "
		       "NIL NIL NIL NIL NIL)");
}

static void test_envelope_groups(void **state)
{
	(void)state;
	check_envelope(
		"To: undisclosed-recipients:;\r\n"
		"Cc: Friends: a@b.c, \"Q, X\" <q@x.y>;, z@w\r\n"
		"Bcc: Empty Group : ; last@x\r\n\r\n",
		"(NIL NIL NIL NIL NIL "
		"((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
		"((NIL NIL \"Friends\" NIL)(NIL NIL \"a\" \"b.c\")"
		"(\"Q, X\" NIL \"q\" \"x.y\")(NIL NIL NIL NIL)"
		"(NIL NIL \"z\" \"w\")) "
		"((NIL NIL \"Empty Group\" NIL)(NIL NIL NIL NIL)"
		"(NIL NIL \"last\" \"x\")) NIL NIL)");
	/* an unterminated group is closed */
	check_envelope("To: G: a@b\r\n\r\n",
		       "(NIL NIL NIL NIL NIL ((NIL NIL \"G\" NIL)"
		       "(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL)) "
		       "NIL NIL NIL NIL)");
}

static void test_envelope_odd_addresses(void **state)
{
	(void)state;
	check_envelope(
		"From: <@a.b,@c.d:joe@e.f>\r\n"
		"To: joe (Joe Bloggs), x@y (Real Name), \"q\\\"t\" <u@v>\r\n"
		"Cc: John Q. Public <john.q.public@example.com>,\r\n"
		" \"a b\"@example.com, (comment) <c@d>\r\n"
		"Bcc: =?utf-8?q?J=C3=B6rg?= <j@x>, <>\r\n\r\n",
		"(NIL NIL "
		"((NIL \"@a.b,@c.d\" \"joe\" \"e.f\")) "
		"((NIL \"@a.b,@c.d\" \"joe\" \"e.f\")) "
		"((NIL \"@a.b,@c.d\" \"joe\" \"e.f\")) "
		"((\"Joe Bloggs\" NIL \"joe\" \"MISSING_DOMAIN\")"
		"(\"Real Name\" NIL \"x\" \"y\")"
		"(\"q\\\"t\" NIL \"u\" \"v\")) "
		"((\"John Q. Public\" NIL \"john.q.public\" \"example.com\")"
		"(NIL NIL \"\\\"a b\\\"\" \"example.com\")"
		"(NIL NIL \"c\" \"d\")) "
		"((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x\")) "
		"NIL NIL)");
}

static void test_envelope_folded_8bit(void **state)
{
	(void)state;
	check_envelope("Subject: caf\xc3\xa9\r\nMessage-ID:\r\n <x@y>\r\n"
		       "Date: Mon,\r\n\t1 Jan 2024 00:00:00 +0000\r\n\r\n",
		       "(\"Mon,\t1 Jan 2024 00:00:00 +0000\" "
		       "{5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL "
		       "\"<x@y>\")");
	/* 8-bit display name: a literal too */
	check_envelope("From: J\xc3\xb6rg <j@x>\r\n\r\n",
		       "(NIL NIL (({5}\r\nJ\xc3\xb6rg NIL \"j\" \"x\")) "
		       "(({5}\r\nJ\xc3\xb6rg NIL \"j\" \"x\")) "
		       "(({5}\r\nJ\xc3\xb6rg NIL \"j\" \"x\")) "
		       "NIL NIL NIL NIL NIL)");
}

/* ---- BODYSTRUCTURE ---- */

static void test_structure_text(void **state)
{
	(void)state;
	const char *msg = "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
			  "Hello\r\nWorld\r\n";
	check_structure(msg, true,
			"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL "
			"\"7BIT\" 14 2 NIL NIL NIL NIL)");
	check_structure(msg, false,
			"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL "
			"\"7BIT\" 14 2)");
	/* no Content-Type: the RFC 2045 default */
	check_structure("Subject: x\r\n\r\nabc\r\n", true,
			"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
			"\"7BIT\" 5 1 NIL NIL NIL NIL)");
	/* text with other parameters but no charset */
	check_structure("Content-Type: text/plain; format=flowed\r\n\r\n", false,
			"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\" "
			"\"FORMAT\" \"flowed\") NIL NIL \"7BIT\" 0 0)");
}

static void test_structure_all_fields(void **state)
{
	(void)state;
	check_structure(
		"Content-Type: application/octet-stream; name=\"a b.bin\"\r\n"
		"Content-ID: <id1@x>\r\n"
		"Content-Description: a file\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
		"Content-Disposition: attachment; filename=\"a b.bin\"\r\n"
		"Content-Language: en, de\r\n"
		"Content-Location: http://x/y\r\n"
		"\r\n"
		"AAAA\r\n",
		true,
		"(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"a b.bin\") "
		"\"<id1@x>\" \"a file\" \"BASE64\" 6 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" "
		"(\"ATTACHMENT\" (\"FILENAME\" \"a b.bin\")) (\"en\" \"de\") "
		"\"http://x/y\")");
	check_structure("Content-Type: image/png\r\nContent-Language: fr\r\n"
			"Content-Disposition: inline\r\n\r\nxx", true,
			"(\"IMAGE\" \"PNG\" NIL NIL NIL \"7BIT\" 2 NIL "
			"(\"INLINE\" NIL) \"fr\" NIL)");
}

static const char alternative[] =
	"Content-Type: multipart/alternative; boundary=\"XX\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--XX\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"plain\r\n"
	"\r\n"
	"--XX\r\n"
	"Content-Type: text/html\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"<b>html</b>\r\n"
	"\r\n"
	"--XX--\r\n";

static void test_structure_alternative(void **state)
{
	(void)state;
	check_structure(alternative, true,
		"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" "
		"7 1 NIL NIL NIL NIL)"
		"(\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL "
		"\"QUOTED-PRINTABLE\" 13 1 NIL NIL NIL NIL) "
		"\"ALTERNATIVE\" (\"BOUNDARY\" \"XX\") NIL NIL NIL)");
	check_structure(alternative, false,
		"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" "
		"7 1)"
		"(\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL "
		"\"QUOTED-PRINTABLE\" 13 1) \"ALTERNATIVE\")");
}

static const char mixed[] =
	"From: a@b.c\r\n"
	"Subject: outer\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=B\r\n"
	"\r\n"
	"--B\r\n"
	"\r\n"
	"see attached\r\n"
	"\r\n"
	"--B\r\n"
	"Content-Type: message/rfc822\r\n"
	"Content-Disposition: attachment; filename=inner.eml\r\n"
	"\r\n"
	"Subject: inner\r\n"
	"From: X <x@y.z>\r\n"
	"\r\n"
	"inner body\r\n"
	"\r\n"
	"--B--\r\n";

#define INNER_MSG "Subject: inner\r\nFrom: X <x@y.z>\r\n\r\ninner body\r\n"

static void test_structure_rfc822_in_mixed(void **state)
{
	(void)state;
	char expected[1024];
	snprintf(expected, sizeof expected,
		 "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
		 "\"7BIT\" 14 1 NIL NIL NIL NIL)"
		 "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" %zu "
		 "(NIL \"inner\" ((\"X\" NIL \"x\" \"y.z\")) "
		 "((\"X\" NIL \"x\" \"y.z\")) ((\"X\" NIL \"x\" \"y.z\")) "
		 "NIL NIL NIL NIL NIL) "
		 "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
		 "\"7BIT\" 12 1 NIL NIL NIL NIL) 4 NIL "
		 "(\"ATTACHMENT\" (\"FILENAME\" \"inner.eml\")) NIL NIL) "
		 "\"MIXED\" (\"BOUNDARY\" \"B\") NIL NIL NIL)",
		 strlen(INNER_MSG));
	check_structure(mixed, true, expected);

	snprintf(expected, sizeof expected,
		 "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
		 "\"7BIT\" 14 1)"
		 "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" %zu "
		 "(NIL \"inner\" ((\"X\" NIL \"x\" \"y.z\")) "
		 "((\"X\" NIL \"x\" \"y.z\")) ((\"X\" NIL \"x\" \"y.z\")) "
		 "NIL NIL NIL NIL NIL) "
		 "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
		 "\"7BIT\" 12 1) 4) \"MIXED\")",
		 strlen(INNER_MSG));
	check_structure(mixed, false, expected);
}

static void test_structure_empty_multipart(void **state)
{
	(void)state;
	check_structure("Content-Type: multipart/mixed; boundary=Q\r\n\r\n"
			"no parts here\r\n", true,
			"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
			"\"7BIT\" 0 0 NIL NIL NIL NIL) \"MIXED\" "
			"(\"BOUNDARY\" \"Q\") NIL NIL NIL)");
	check_structure("Content-Type: multipart/mixed; boundary=Q\r\n\r\n",
			false,
			"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
			"\"7BIT\" 0 0) \"MIXED\")");
}

/* ---- sections ---- */

static void check_section(const char *msg, const char *spec,
			  const char *expected)
{
	struct imap_section sec;
	struct mime_part root;
	struct str built = STR_INIT;
	const char *data;
	size_t len;

	assert_int_equal(imap_section_parse(spec, &sec), 0);
	mime_parse(msg, strlen(msg), &root);
	bool found = imap_fetch_section(msg, strlen(msg), &root, &sec, &built,
					&data, &len);
	if (expected == NULL) {
		assert_false(found);
	} else {
		assert_true(found);
		char *got = xstrndup(data, len);
		assert_string_equal(got, expected);
		free(got);
	}
	mime_free(&root);
	imap_section_free(&sec);
	str_free(&built);
}

static void test_section_parse(void **state)
{
	(void)state;
	static const struct {
		const char *spec, *canonical;
	} good[] = {
		{ "", "" },
		{ "HEADER", "HEADER" },
		{ "text", "TEXT" },
		{ "1", "1" },
		{ "1.2.3", "1.2.3" },
		{ "2.mime", "2.MIME" },
		{ "4.header", "4.HEADER" },
		{ "4.TEXT", "4.TEXT" },
		{ "header.fields (From to)", "HEADER.FIELDS (FROM TO)" },
		{ "HEADER.FIELDS.NOT (\"X-a b\" Subject)",
		  "HEADER.FIELDS.NOT (\"X-A B\" SUBJECT)" },
		{ "1.HEADER.FIELDS (Date)", "1.HEADER.FIELDS (DATE)" },
	};
	static const char *const bad[] = {
		"MIME", "0", "1.", "1..2", "1.0", ".1", "HEADER.FIELDS ()",
		"HEADER.FIELDS", "HEADER.FIELDS (a", "HEADER.FIELDS (a) x",
		"TEXT.X", "1.TEXTX", "HEADERS", "1 ", "x", "1.2.MIME.TEXT",
		"HEADER.FIELDS (\"a)", "12345678901",
	};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		struct imap_section sec;
		struct str out = STR_INIT;
		assert_int_equal(imap_section_parse(good[i].spec, &sec), 0);
		imap_section_format(&sec, &out);
		assert_string_equal(str_c(&out), good[i].canonical);
		imap_section_free(&sec);
		str_free(&out);
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct imap_section sec;
		if (imap_section_parse(bad[i], &sec) == 0)
			fail_msg("accepted \"%s\"", bad[i]);
	}
}

static void test_section_mixed(void **state)
{
	(void)state;
	check_section(mixed, "", mixed);
	check_section(mixed, "HEADER",
		      "From: a@b.c\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
		      "Content-Type: multipart/mixed; boundary=B\r\n\r\n");
	check_section(mixed, "TEXT", strstr(mixed, "--B\r\n"));
	check_section(mixed, "HEADER.FIELDS (subject FROM)",
		      "From: a@b.c\r\nSubject: outer\r\n\r\n");
	check_section(mixed, "HEADER.FIELDS.NOT (Subject From MIME-Version)",
		      "Content-Type: multipart/mixed; boundary=B\r\n\r\n");
	check_section(mixed, "HEADER.FIELDS (X-None)", "\r\n");
	check_section(mixed, "1", "see attached\r\n");
	check_section(mixed, "1.MIME", "\r\n");
	check_section(mixed, "2", INNER_MSG);
	check_section(mixed, "2.MIME",
		      "Content-Type: message/rfc822\r\n"
		      "Content-Disposition: attachment; filename=inner.eml\r\n"
		      "\r\n");
	check_section(mixed, "2.HEADER",
		      "Subject: inner\r\nFrom: X <x@y.z>\r\n\r\n");
	check_section(mixed, "2.TEXT", "inner body\r\n");
	check_section(mixed, "2.HEADER.FIELDS (From)", "From: X <x@y.z>\r\n\r\n");
	check_section(mixed, "2.1", "inner body\r\n");
	/* HEADER/TEXT only after a message/rfc822 part; missing parts */
	check_section(mixed, "1.HEADER", NULL);
	check_section(mixed, "1.TEXT", NULL);
	check_section(mixed, "3", NULL);
	check_section(mixed, "1.1", NULL);
	check_section(mixed, "2.2", NULL);
}

static void test_section_folded_fields(void **state)
{
	(void)state;
	const char *msg = "To: a@b,\r\n c@d\r\nX-Y: 1\r\nto: e@f\r\n\r\nbody";
	check_section(msg, "HEADER.FIELDS (TO)",
		      "To: a@b,\r\n c@d\r\nto: e@f\r\n\r\n");
	check_section(msg, "HEADER.FIELDS.NOT (to)", "X-Y: 1\r\n\r\n");
	/* a single-part message: part 1 is its body */
	check_section(msg, "1", "body");
	check_section(msg, "TEXT", "body");
	check_section(msg, "2", NULL);
	/* no header block at all */
	check_section("just text", "HEADER.FIELDS (A)", "\r\n");
}

/* ---- garbage in, grammar out ---- */

/* Skip one IMAP value (atom/NIL/number, quoted, literal, list) at *p;
 * false if malformed.  Returns the count of list members in *members
 * when it was a list. */
static bool skip_value(const char **p, size_t depth)
{
	const char *s = *p;
	if (depth > 200)
		return false;
	if (*s == '"') {
		for (s++; *s != '"'; s++) {
			if (*s == '\0' || *s == '\r' || *s == '\n' ||
			    (unsigned char)*s >= 0x80)
				return false;
			if (*s == '\\') {
				s++;
				if (*s != '\\' && *s != '"')
					return false;
			}
		}
		*p = s + 1;
		return true;
	}
	if (*s == '{') {
		char *end;
		unsigned long n = strtoul(s + 1, &end, 10);
		if (end == s + 1 || strncmp(end, "}\r\n", 3) != 0)
			return false;
		s = end + 3;
		if (strlen(s) < n)
			return false;
		*p = s + n;
		return true;
	}
	if (*s == '(') {
		s++;
		if (*s == ')')
			return false;	/* no empty lists in these grammars */
		for (;;) {
			if (!skip_value(&s, depth + 1))
				return false;
			if (*s == ')')
				break;
			if (*s == '(' && s[-1] == ')')
				continue;	/* 1*body of a multipart */
			if (*s++ != ' ')
				return false;
		}
		*p = s + 1;
		return true;
	}
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
	if (n == 0)
		return false;
	*p = s + n;
	return true;
}

static bool grammatical(const char *s)
{
	return skip_value(&s, 0) && *s == '\0';
}

static void test_random_input(void **state)
{
	(void)state;
	static const char *const pieces[] = {
		"From: ", "To: ", "Cc: ", "Sender: ", "Subject: ", "\r\n",
		"\r\n\r\n", " ", "<", ">", "@", ",", ";", ":", "\"", "\\",
		"(", ")", "[", "]", ".", "a", "b@c", "Group:", "\x80\xff",
		"\t", "Content-Type: multipart/mixed; boundary=Z\r\n",
		"Content-Type: message/rfc822\r\n", "--Z\r\n", "--Z--\r\n",
		"\n", "Content-Disposition: x; a=b\r\n", "=?x?q?y?=",
		"Content-Language: ,,\r\n", "\0",
	};
	const size_t npieces = sizeof pieces / sizeof *pieces;
	srand(4711);
	for (int round = 0; round < 3000; round++) {
		struct str msg = STR_INIT;
		int n = rand() % 60;
		for (int i = 0; i < n; i++) {
			size_t k = (size_t)rand() % npieces;
			if (pieces[k][0] == '\0')
				str_append_c(&msg, 'x');	/* keep C strings */
			else
				str_append(&msg, pieces[k]);
		}
		struct mime_part root;
		struct str out = STR_INIT;
		mime_parse(str_c(&msg), msg.len, &root);
		imap_envelope_build(str_c(&msg), root.header, root.body, &out);
		if (!grammatical(str_c(&out)))
			fail_msg("envelope of \"%s\": %s", str_c(&msg),
				 str_c(&out));
		str_clear(&out);
		imap_bodystructure_build(str_c(&msg), &root, round % 2, &out);
		if (!grammatical(str_c(&out)))
			fail_msg("structure of \"%s\": %s", str_c(&msg),
				 str_c(&out));
		mime_free(&root);
		str_free(&out);
		str_free(&msg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_envelope_rfc3501),
		cmocka_unit_test(test_envelope_missing),
		cmocka_unit_test(test_envelope_sender_reply_to),
		cmocka_unit_test(test_envelope_groups),
		cmocka_unit_test(test_envelope_odd_addresses),
		cmocka_unit_test(test_envelope_folded_8bit),
		cmocka_unit_test(test_structure_text),
		cmocka_unit_test(test_structure_all_fields),
		cmocka_unit_test(test_structure_alternative),
		cmocka_unit_test(test_structure_rfc822_in_mixed),
		cmocka_unit_test(test_structure_empty_multipart),
		cmocka_unit_test(test_section_parse),
		cmocka_unit_test(test_section_mixed),
		cmocka_unit_test(test_section_folded_fields),
		cmocka_unit_test(test_random_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
