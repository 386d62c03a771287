/*
 * test_mime_decode: unit tests for common/mime_decode.c: RFC 2047 encoded
 * words (the examples of RFC 2047 section 8 and broken ones), base64 and
 * quoted-printable, charset conversion through iconv, and the
 * case-insensitive UTF-8 substring search.  Inputs are copied into heap
 * buffers of exactly their length, so ASan catches reads past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mime_decode.h"
#include "str.h"

#define FFFD "\xEF\xBF\xBD"

/* An input and its length, which may include NUL bytes. */
#define IN(s) s, sizeof(s) - 1

static char *exact(const char *s, size_t len)
{
	char *b = xmalloc(len ? len : 1);

	memcpy(b, s, len);
	return b;
}

static void check_2047(const char *in, size_t len, const char *want)
{
	char *b = exact(in, len);
	struct str out = STR_INIT;

	str_append(&out, "prefix:");	/* the functions append */
	rfc2047_decode(b, len, &out);
	assert_string_equal(str_c(&out) + 7, want);
	assert_int_equal(out.len, 7 + strlen(want));
	str_free(&out);
	free(b);
}

static void check_transfer(const char *enc, const char *in, size_t len,
			   const char *want, size_t want_len)
{
	char *b = exact(in, len);
	struct str out = STR_INIT;

	mime_transfer_decode(enc, b, len, &out);
	assert_int_equal(out.len, want_len);
	assert_memory_equal(str_c(&out), want, want_len);
	str_free(&out);
	free(b);
}

static void check_charset(const char *charset, const char *in, size_t len,
			  const char *want)
{
	char *b = exact(in, len);
	struct str out = STR_INIT;

	mime_charset_to_utf8(charset, b, len, &out);
	assert_string_equal(str_c(&out), want);
	assert_int_equal(out.len, strlen(want));
	str_free(&out);
	free(b);
}

static bool contains(const char *h, const char *n)
{
	size_t hl = strlen(h), nl = strlen(n);
	char *hb = exact(h, hl), *nb = exact(n, nl);
	bool r = mime_utf8_contains(hb, hl, nb, nl);

	free(hb);
	free(nb);
	return r;
}

/* --- RFC 2047 ------------------------------------------------------- */

struct case_2047 {
	const char *in, *want;
};

static const struct case_2047 rfc2047_section8[] = {
	{ "(=?ISO-8859-1?Q?a?=)", "(a)" },
	{ "(=?ISO-8859-1?Q?a?= b)", "(a b)" },
	{ "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)" },
	{ "(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)" },
	{ "(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)" },
	{ "(=?ISO-8859-1?Q?a_b?=)", "(a b)" },
	{ "(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)" },
	{ "=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>",
	  "Keith Moore <moore@cs.utk.edu>" },
	{ "=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>",
	  "Keld J\xc3\xb8rn Simonsen <keld@dkuug.dk>" },
	{ "=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
	  "Andr\xc3\xa9 Pirard <PIRARD@vm1.ulg.ac.be>" },
	{ "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n"
	  "    =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
	  "If you can read this you understand the example." },
	{ "=?ISO-8859-1?Q?Olle_J=E4rvinen?= <ojarnef@admin.kth.se>",
	  "Olle J\xc3\xa4rvinen <ojarnef@admin.kth.se>" },
	{ "Nathaniel Borenstein <nsb@thumper.bellcore.com>\r\n"
	  "    (=?iso-8859-8?b?7eXs+SDv4SDp7Oj08A==?=)",
	  "Nathaniel Borenstein <nsb@thumper.bellcore.com>\r\n    ("
	  "\xd7\x9d\xd7\x95\xd7\x9c\xd7\xa9 \xd7\x9f\xd7\x91 "
	  "\xd7\x99\xd7\x9c\xd7\x98\xd7\xa4\xd7\xa0)" },
	/* RFC 2231 section 5: a language in the charset */
	{ "=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore" },
};

static const struct case_2047 rfc2047_odd[] = {
	{ "", "" },
	{ "plain text", "plain text" },
	{ "a =?utf-8?q?b?= c", "a b c" },
	{ "=?utf-8?q?a?=x=?utf-8?q?b?=", "axb" },
	{ "=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b" },
	{ "=?utf-8?Q?=c3=a4?=", "\xc3\xa4" },
	{ "=?UTF-8?B?w6TDtsO8?=", "\xc3\xa4\xc3\xb6\xc3\xbc" },
	/* a character split between two words */
	{ "=?utf-8?q?=C3?= =?UTF-8?q?=A4?=", "\xc3\xa4" },
	{ "=?utf-8?b?ww==?= =?utf-8?b?pA==?=", "\xc3\xa4" },
	{ "=?utf-8?q?=C3?= x", FFFD " x" },
	{ "=?utf-8?q?=C3?= =?iso-8859-1?q?=A4?=", FFFD "\xc2\xa4" },
	/* malformed: left alone */
	{ "=?utf-8?q?abc", "=?utf-8?q?abc" },
	{ "=?utf-8?q?abc?", "=?utf-8?q?abc?" },
	{ "=?utf-8?x?abc?=", "=?utf-8?x?abc?=" },
	{ "=??q?abc?=", "=??q?abc?=" },
	{ "=?utf-8?q?a b?=", "=?utf-8?q?a b?=" },
	{ "=?utf-8?q?", "=?utf-8?q?" },
	{ "=?", "=?" },
	{ "=", "=" },
	{ "x=?=?utf-8?q?y?=", "x=?y" },
	{ "=?utf-8?q?a?= =?bad", "a =?bad" },
	/* empty encoded text */
	{ "=?utf-8?q?\?=", "" },
	{ "=?utf-8?q?=zz=4?=", "=zz=4" },
	/* an unknown charset: valid UTF-8 passes, the rest is U+FFFD */
	{ "=?x-unknown?q?a=FFb=C3=A9?=", "a" FFFD "b\xc3\xa9" },
	{ "=?../etc/passwd?q?a?=", "a" },
	/* raw 8-bit header text: UTF-8 stays, else ISO-8859-1 */
	{ "Gr\xc3\xbc\xc3\x9f" "e", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "Gr\xfc\xdf" "e", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "\xc3\xa4 \xe4 =?utf-8?q?=C3=A4?=", "\xc3\xa4 \xc3\xa4 \xc3\xa4" },
};

static void test_rfc2047(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof rfc2047_section8 / sizeof rfc2047_section8[0]; i++)
		check_2047(rfc2047_section8[i].in,
			   strlen(rfc2047_section8[i].in),
			   rfc2047_section8[i].want);
	for (size_t i = 0; i < sizeof rfc2047_odd / sizeof rfc2047_odd[0]; i++)
		check_2047(rfc2047_odd[i].in, strlen(rfc2047_odd[i].in),
			   rfc2047_odd[i].want);
}

static void test_rfc2047_nul(void **state)
{
	(void)state;
	/* a NUL octet is text like any other, and "=00" decodes to it */
	char in[] = "a\0b =?utf-8?q?c=00d?=";
	char *b = exact(in, sizeof in - 1);
	struct str out = STR_INIT;

	rfc2047_decode(b, sizeof in - 1, &out);
	assert_int_equal(out.len, 7);
	assert_memory_equal(out.data, "a\0b c\0d", 7);
	str_free(&out);
	free(b);
}

/* --- transfer encodings --------------------------------------------- */

static void test_base64(void **state)
{
	(void)state;
	check_transfer("base64", IN("SGVsbG8="), "Hello", 5);
	check_transfer("BASE64", IN("SGVs\r\nbG8=\r\n"), "Hello", 5);
	check_transfer(" Base64 ", IN("SG!Vs*bG8 \t"), "Hello", 5);
	check_transfer("base64", IN("SGVsbA"), "Hell", 4);
	check_transfer("base64", IN("SGVsbA="), "Hell", 4);
	check_transfer("base64", IN("SGVsb"), "Hel", 3);	/* 1 left over */
	check_transfer("base64", IN("SGk=SGk="), "Hi", 2);	/* stops at = */
	check_transfer("base64", IN(""), "", 0);
	check_transfer("base64", IN("===="), "", 0);
	check_transfer("base64", IN("AAEC/+8="), "\x00\x01\x02\xff\xef", 5);
	check_transfer("base64", IN("YWJj\r\nZGVm\r\nZ2hp"), "abcdefghi", 9);
}

static void test_quoted_printable(void **state)
{
	(void)state;
	check_transfer("quoted-printable", IN("a=3Db=3db"), "a=b=b", 5);
	check_transfer("Quoted-Printable", IN("abc=\r\ndef=\nghi"),
		       "abcdefghi", 9);
	/* transport padding after a soft break */
	check_transfer("quoted-printable", IN("abc= \t\r\ndef"), "abcdef", 6);
	/* a hard line break stays as written */
	check_transfer("quoted-printable", IN("a\r\nb\nc"), "a\r\nb\nc", 6);
	/* invalid "=" sequences are kept */
	check_transfer("quoted-printable", IN("a=Zb=4"), "a=Zb=4", 6);
	check_transfer("quoted-printable", IN("a=\tb"), "a=\tb", 4);
	check_transfer("quoted-printable", IN("100% = 1"), "100% = 1", 8);
	check_transfer("quoted-printable", IN("x=\r"), "x=\r", 3);
	/* "=" at the very end is a soft break whose line end went with
	 * the boundary */
	check_transfer("quoted-printable", IN("abc="), "abc", 3);
	check_transfer("quoted-printable", IN("abc=  "), "abc", 3);
	/* trailing blanks of a line were added in transport */
	check_transfer("quoted-printable", IN("abc  \r\ndef\t\nghi "),
		       "abc\r\ndef\nghi", 12);
	check_transfer("quoted-printable", IN("a  b\t c"), "a  b\t c", 7);
	check_transfer("quoted-printable", IN("=C3=A4=c3=b6=00"),
		       "\xc3\xa4\xc3\xb6\x00", 5);
	check_transfer("quoted-printable", IN(""), "", 0);
	check_transfer("quoted-printable", IN("="), "", 0);
}

static void test_other_encodings(void **state)
{
	(void)state;
	check_transfer(NULL, IN("a=3D\r\nb"), "a=3D\r\nb", 7);
	check_transfer("7bit", IN("SGVsbG8="), "SGVsbG8=", 8);
	check_transfer("8bit", IN("\xe4\0x"), "\xe4\0x", 3);
	check_transfer("x-uuencode", IN("begin"), "begin", 5);
	check_transfer("base64x", IN("SGk="), "SGk=", 4);
}

static void test_big_decode(void **state)
{
	struct str in = STR_INIT, out = STR_INIT;

	(void)state;
	for (int i = 0; i < 100000; i++)
		str_append(&in, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ego=\r\n");
	/* stops at the first padding */
	mime_transfer_decode("base64", in.data, in.len, &out);
	assert_int_equal(out.len, 53);
	str_clear(&in);
	str_clear(&out);
	for (int i = 0; i < 100000; i++)
		str_append(&in, "caf=C3=A9 =\r\n");
	mime_transfer_decode("quoted-printable", in.data, in.len, &out);
	assert_int_equal(out.len, 100000 * 6);
	assert_memory_equal(out.data, "caf\xc3\xa9 caf\xc3\xa9 ", 12);
	str_free(&in);
	str_free(&out);
}

/* --- charsets ------------------------------------------------------- */

static void test_charsets(void **state)
{
	(void)state;
	check_charset("ISO-8859-1", IN("\xe4\xf6\xfc\xdf"),
		      "\xc3\xa4\xc3\xb6\xc3\xbc\xc3\x9f");
	check_charset("latin1", IN("caf\xe9"), "caf\xc3\xa9");
	check_charset("windows-1252", IN("\x80\x93x\x94"),
		      "\xe2\x82\xac\xe2\x80\x9cx\xe2\x80\x9d");
	/* 0x81 is undefined in windows-1252 */
	check_charset("windows-1252", IN("a\x81" "b"), "a" FFFD "b");
	check_charset("KOI8-R", IN("\xf0\xd2\xc9\xd7\xc5\xd4"),
		      "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
	check_charset("koi8-r", IN(""), "");
	/* the cached converter is reset between uses */
	check_charset("ISO-2022-JP", IN("\x1b$B$3$s$K$A$O\x1b(B"),
		      "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1"
		      "\xe3\x81\xaf");
	check_charset("ISO-2022-JP", IN("\x1b$B$3"), "\xe3\x81\x93");
	check_charset("iso-2022-jp", IN("ab"), "ab");
	/* a truncated multi-byte character at the end */
	check_charset("Shift_JIS", IN("a\x82"), "a" FFFD);
	check_charset("Shift_JIS", IN("\x82\xa0"), "\xe3\x81\x82");
	check_charset(" iso-8859-1 ", IN("\xe4"), "\xc3\xa4");
	check_charset("ks_c_5601-1987", IN("\xb0\xa1"), "\xea\xb0\x80");
}

static void test_charset_utf8_and_unknown(void **state)
{
	static const char *const passthrough[] = {
		NULL, "", "us-ascii", "US-ASCII", "utf-8", "UTF8", "x-unknown",
		"../../etc", "utf-8//IGNORE", "a-charset-name-that-is-far-too-long-"
		"to-be-a-charset-name-at-all-really",
	};

	(void)state;
	for (size_t i = 0; i < sizeof passthrough / sizeof passthrough[0]; i++) {
		const char *cs = passthrough[i];

		check_charset(cs, IN("plain"), "plain");
		check_charset(cs, IN("\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80"),
			      "\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80");
		check_charset(cs, IN("a\xe4" "b"), "a" FFFD "b");
		check_charset(cs, IN("a\xc3(b"), "a" FFFD "(b");
		/* overlong, surrogate, beyond U+10FFFF, truncated */
		check_charset(cs, IN("\xc0\xaf"), FFFD FFFD);
		check_charset(cs, IN("\xe0\x80\xaf"), FFFD FFFD FFFD);
		check_charset(cs, IN("\xed\xa0\x80"), FFFD FFFD FFFD);
		check_charset(cs, IN("\xf4\x90\x80\x80"), FFFD FFFD FFFD FFFD);
		check_charset(cs, IN("\xe2\x82"), FFFD FFFD);
		check_charset(cs, IN("\xff"), FFFD);
	}
}

/*
 * Empty input into an empty string: the result is "" (terminated), not an
 * allocated but unterminated buffer (found by tests/fuzz/fuzz_rfc2047's
 * termination check).  A freed 64-octet block full of 'x' waits for the
 * next small malloc, so a missing terminator shows.
 */
static void test_empty_input_terminated(void **state)
{
	static const char *const charsets[] = {
		NULL, "utf-8", "x-unknown", "iso-8859-1",
	};

	(void)state;
	for (size_t i = 0; i < sizeof charsets / sizeof charsets[0]; i++) {
		struct str out = STR_INIT;
		char *p = xmalloc(64);

		memset(p, 'x', 64);
		free(p);
		mime_charset_to_utf8(charsets[i], "", 0, &out);
		assert_int_equal(out.len, 0);
		assert_true(out.data == NULL || out.data[0] == '\0');
		str_free(&out);
	}
	for (int enc = 0; enc < 3; enc++) {
		static const char *const encodings[] = {
			"base64", "quoted-printable", "7bit",
		};
		struct str out = STR_INIT;
		char *p = xmalloc(64);

		memset(p, 'x', 64);
		free(p);
		mime_transfer_decode(encodings[enc], "", 0, &out);
		assert_true(out.data == NULL || out.data[0] == '\0');
		str_free(&out);
	}
	struct str out = STR_INIT;
	char *p = xmalloc(64);

	memset(p, 'x', 64);
	free(p);
	rfc2047_decode("", 0, &out);
	assert_true(out.data == NULL || out.data[0] == '\0');
	str_free(&out);
}

/*
 * glibc's iconv writes code points above U+10FFFF (from UCS-4) and passes
 * the old 5- and 6-octet forms (UTF-8 under a name glibc knows but we do
 * not, "+utf-8") as they are: not UTF-8, so they become U+FFFD (found by
 * tests/fuzz/fuzz_rfc2047).
 */
static void test_charset_iconv_output_checked(void **state)
{
	(void)state;
	check_charset("UCS-4", IN("\0\0\0A\x7f\xff\xff\xff\0\0\0B"),
		      "A" FFFD FFFD FFFD FFFD FFFD FFFD "B");
	check_charset("ISO-10646", IN("\0\0\0A\x61\xbd\xed\xa0"),
		      "A" FFFD FFFD FFFD FFFD FFFD FFFD);
	check_charset("+utf-8", IN("x\xfd\xbd\xbd\xbd\xbd\xbdy"),
		      "x" FFFD FFFD FFFD FFFD FFFD FFFD "y");
	check_charset("+utf-8", IN("\xc3\xa4"), "\xc3\xa4");
}

static void test_charset_alternating(void **state)
{
	(void)state;
	for (int i = 0; i < 50; i++) {
		check_charset("iso-8859-1", IN("\xe9"), "\xc3\xa9");
		check_charset("koi8-r", IN("\xe1"), "\xd0\x90");
		check_charset("x-nonsense", IN("\xe9"), FFFD);
		check_charset("ISO-8859-1", IN("\xe9"), "\xc3\xa9");
	}
}

/* --- contains ------------------------------------------------------- */

static void test_contains(void **state)
{
	(void)state;
	assert_true(contains("\xc3\x84" "BC", "\xc3\xa4" "bc"));	/* ÄBC */
	assert_true(contains("\xc3\xa4" "bc", "\xc3\x84" "BC"));
	assert_true(contains("xx\xc3\x84" "bCyy", "\xc3\xa4" "Bc"));
	assert_false(contains("\xc3\x84" "BD", "\xc3\xa4" "bc"));
	assert_false(contains("abc", "\xc3\xa4" "bc"));
	assert_true(contains("Hello World", "WORLD"));
	assert_true(contains("Hello World", "o w"));
	assert_false(contains("Hello", "Hello World"));
	assert_true(contains("anything", ""));
	assert_true(contains("", ""));
	assert_false(contains("", "a"));
	/* Latin-1 supplement; the multiplication sign has no case */
	assert_true(contains("\xc3\x80\xc3\x9e", "\xc3\xa0\xc3\xbe"));
	assert_false(contains("\xc3\x97", "\xc3\xb7"));
	assert_true(contains("\xc3\x9f", "\xc3\x9f"));		/* ß */
	/* Latin Extended-A: Łódź / ŁÓDŹ, Ÿ / ÿ, ſ / s */
	assert_true(contains("\xc5\x81\xc3\xb3" "d\xc5\xba",
			     "\xc5\x82\xc3\x93" "D\xc5\xb9"));
	assert_true(contains("\xc5\xb8", "\xc3\xbf"));
	assert_true(contains("Ma\xc5\xbf", "MAS"));
	assert_true(contains("\xc4\x8c" "esk\xc3\xbd", "\xc4\x8d" "ESK\xc3\x9d"));
	/* Greek, with tonos and final sigma */
	assert_true(contains("\xce\xa3\xce\x9f\xce\xa6\xce\x99\xce\x91",
			     "\xcf\x83\xce\xbf\xcf\x86\xce\xb9\xce\xb1"));
	assert_true(contains("\xce\x86\xce\xbd\xce\xbf\xce\xb4\xce\xbf\xcf\x82",
			     "\xce\xac\xce\x9d\xce\x9f\xce\x94\xce\x9f\xce\xa3"));
	/* Cyrillic: ПРИВЕТ / привет, Ё / ё, Ѣ / ѣ */
	assert_true(contains("\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2",
			     "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"));
	assert_true(contains("\xd0\x81", "\xd1\x91"));
	assert_true(contains("\xd1\xa2", "\xd1\xa3"));
	assert_false(contains("\xd0\x9f", "\xd0\xbe"));
	/* other scripts compare as they are */
	assert_true(contains("\xe3\x81\x93\xe3\x82\x93", "\xe3\x82\x93"));
	/* invalid octets are compared as octets */
	assert_true(contains("a\xff" "B", "\xff" "b"));
	assert_false(contains("a\xfe" "B", "\xff" "b"));
}

static void test_contains_long(void **state)
{
	struct str h = STR_INIT;

	(void)state;
	assert_true(contains("\xc3\xa9t\xc3\xa9", "\xc3\x89T\xc3\x89"));
	for (int i = 0; i < 100000; i++)
		str_append(&h, "\xd0\x9f\xd1\x80\xd0\xb8 ");
	str_append(&h, "\xc3\x84rger");
	assert_true(mime_utf8_contains(h.data, h.len, "\xc3\xa4RGER", 6));
	assert_true(mime_utf8_contains(h.data, h.len, "\xd0\xb8 \xc3\xa4", 5));
	assert_false(mime_utf8_contains(h.data, h.len, "\xc3\xa4RGERN", 7));
	str_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc2047),
		cmocka_unit_test(test_rfc2047_nul),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_quoted_printable),
		cmocka_unit_test(test_other_encodings),
		cmocka_unit_test(test_big_decode),
		cmocka_unit_test(test_charsets),
		cmocka_unit_test(test_charset_utf8_and_unknown),
		cmocka_unit_test(test_charset_alternating),
		cmocka_unit_test(test_empty_input_terminated),
		cmocka_unit_test(test_charset_iconv_output_checked),
		cmocka_unit_test(test_contains),
		cmocka_unit_test(test_contains_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
