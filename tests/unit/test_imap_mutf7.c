/*
 * test_imap_mutf7: modified UTF-7 both ways: the RFC 3501 example, "&-",
 * surrogate pairs, round trips, and the strict decoder's refusals
 * (non-canonical spellings, bad padding, unpaired surrogates, 8-bit).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "imap_mutf7.h"

static int dec(const char *in, struct str *out)
{
	str_clear(out);
	return mutf7_to_utf8(in, strlen(in), out);
}

static int enc(const char *in, struct str *out)
{
	str_clear(out);
	return utf8_to_mutf7(in, strlen(in), out);
}

static void check_pair(const char *mutf7, const char *utf8)
{
	struct str out = STR_INIT;
	assert_int_equal(dec(mutf7, &out), 0);
	assert_string_equal(str_c(&out), utf8);
	assert_int_equal(enc(utf8, &out), 0);
	assert_string_equal(str_c(&out), mutf7);
	str_free(&out);
}

static void test_rfc_examples(void **state)
{
	(void)state;
	check_pair("~peter/mail/&U,BTFw-/&ZeVnLIqe-",
		   "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
		   "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
	check_pair("&-", "&");
	check_pair("A&-B", "A&B");
	check_pair("INBOX", "INBOX");
	check_pair("", "");
	/* one, two and three characters: all padding lengths */
	check_pair("&AOQ-", "\xc3\xa4");			/* ä */
	check_pair("&AOQA9g-", "\xc3\xa4\xc3\xb6");		/* äö */
	check_pair("&AOQA9gD8-", "\xc3\xa4\xc3\xb6\xc3\xbc");	/* äöü */
	check_pair("Entw&APw-rfe", "Entw\xc3\xbc" "rfe");
	/* '.' as the mailbox code stores it inside a level */
	check_pair("a.b", "a.b");
	/* control characters are not printable: they are shifted */
	check_pair("&AAk-", "\t");
	check_pair("&AH8-", "\x7f");
}

static void test_surrogates(void **state)
{
	(void)state;
	/* U+1F600 = D83D DE00 */
	check_pair("&2D3eAA-", "\xf0\x9f\x98\x80");
	check_pair("x&2D3eANg93gE-y", "x\xf0\x9f\x98\x80\xf0\x9f\x98\x81y");
	/* U+10FFFF = DBFF DFFF */
	check_pair("&2,,f,w-", "\xf4\x8f\xbf\xbf");
}

static void test_decode_rejects(void **state)
{
	(void)state;
	struct str out = STR_INIT;
	static const char *const bad[] = {
		"&",		/* not closed */
		"&AOQ",		/* not closed */
		"abc&",
		"&AGE-",	/* "a": printable ASCII must stand for itself */
		"&ACY-",	/* "&" must be "&-" */
		"&ACA-",	/* space */
		"&AOR-",	/* non-zero padding bits */
		"&AOQA-",	/* stray sextet */
		"&A-",		/* six bits, no character */
		"&AAA-",	/* U+0000 */
		"&2D0-",	/* lone high surrogate */
		"&3gA-",	/* lone low surrogate */
		"&2D3YPQ-",	/* high followed by high */
		"&2D0-&3gA-",	/* a pair split over two shifts */
		"&AO/-",	/* '/' is not modified base64 */
		"&AO=-",
		"a\tb",		/* control character unshifted */
		"a\x7f",
		"caf\xc3\xa9",	/* 8-bit */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		str_clear(&out);
		str_append(&out, "keep");
		assert_int_equal(mutf7_to_utf8(bad[i], strlen(bad[i]), &out),
				 -1);
		/* untouched on failure */
		assert_string_equal(str_c(&out), "keep");
	}
	/* NUL inside the given length */
	assert_int_equal(mutf7_to_utf8("a\0b", 3, &out), -1);
	str_free(&out);
}

static void test_decode_accepts(void **state)
{
	(void)state;
	struct str out = STR_INIT;
	/* adjacent shifts are not canonical: refused (found by fuzz_mutf7:
	 * one name must have one spelling, one directory) */
	assert_int_equal(dec("&AOQ-&APY-", &out), -1);
	assert_int_equal(dec("m&FVnLVnse-&FVnLVnse-", &out), -1);
	assert_int_equal(dec("&AOQA9g-", &out), 0);
	assert_string_equal(str_c(&out), "\xc3\xa4\xc3\xb6");
	/* "&-" between runs is fine */
	str_clear(&out);
	assert_int_equal(dec("&AOQ-&-&APY-", &out), 0);
	/* appends to what is there */
	str_clear(&out);
	str_append(&out, "x/");
	assert_int_equal(mutf7_to_utf8("&AOQ-", 5, &out), 0);
	assert_string_equal(str_c(&out), "x/\xc3\xa4");
	/* a trailing '-' outside a shift is an ordinary character */
	assert_int_equal(dec("&AOQ--", &out), 0);
	assert_string_equal(str_c(&out), "\xc3\xa4-");
	str_free(&out);
}

static void test_encode_rejects(void **state)
{
	(void)state;
	struct str out = STR_INIT;
	static const char *const bad[] = {
		"\x80",			/* continuation without lead */
		"\xc3",			/* truncated */
		"\xc3(",
		"\xc0\xaf",		/* overlong '/' */
		"\xe0\x80\xaf",		/* overlong */
		"\xed\xa0\x80",		/* UTF-16 surrogate D800 */
		"\xf4\x90\x80\x80",	/* above U+10FFFF */
		"\xf8\x88\x80\x80\x80",
		"ok\xff",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		str_clear(&out);
		str_append(&out, "keep");
		assert_int_equal(utf8_to_mutf7(bad[i], strlen(bad[i]), &out),
				 -1);
		assert_string_equal(str_c(&out), "keep");
	}
	assert_int_equal(utf8_to_mutf7("a\0b", 3, &out), -1);
	str_free(&out);
}

/* Every BMP character and some astral ones survive both directions. */
static void test_round_trip_all(void **state)
{
	(void)state;
	struct str u = STR_INIT, m = STR_INIT, back = STR_INIT;
	for (uint32_t cp = 1; cp < 0x110000; cp += (cp < 0x10000 ? 1 : 977)) {
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		str_clear(&u);
		char b[5];
		size_t n;
		if (cp < 0x80) {
			b[0] = (char)cp, n = 1;
		} else if (cp < 0x800) {
			b[0] = (char)(0xc0 | cp >> 6);
			b[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
		} else if (cp < 0x10000) {
			b[0] = (char)(0xe0 | cp >> 12);
			b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
			b[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
		} else {
			b[0] = (char)(0xf0 | cp >> 18);
			b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
			b[2] = (char)(0x80 | (cp >> 6 & 0x3f));
			b[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
		}
		str_append(&u, "a");
		str_append_n(&u, b, n);
		str_append_n(&u, b, n);
		str_append(&u, "z");
		str_clear(&m);
		str_clear(&back);
		assert_int_equal(utf8_to_mutf7(u.data, u.len, &m), 0);
		for (size_t i = 0; i < m.len; i++)
			assert_true(m.data[i] >= 0x20 && m.data[i] <= 0x7e);
		assert_int_equal(mutf7_to_utf8(m.data, m.len, &back), 0);
		assert_int_equal(back.len, u.len);
		assert_memory_equal(back.data, u.data, u.len);
	}
	str_free(&u);
	str_free(&m);
	str_free(&back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc_examples),
		cmocka_unit_test(test_surrogates),
		cmocka_unit_test(test_decode_rejects),
		cmocka_unit_test(test_decode_accepts),
		cmocka_unit_test(test_encode_rejects),
		cmocka_unit_test(test_round_trip_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
