/*
 * test_imap_seqset: sequence set syntax (and every malformed shape),
 * membership and "beyond" with '*' resolved at use, reversed ranges, the
 * 32-bit edge, normalising and formatting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "imap_seqset.h"

static void test_parse_ok(void **state)
{
	(void)state;
	struct imap_seqset s;
	assert_int_equal(imap_seqset_parse("1", &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.r[0].lo, 1);
	assert_int_equal(s.r[0].hi, 1);
	imap_seqset_free(&s);

	assert_int_equal(imap_seqset_parse("1,3:5,7:*,*,9:2", &s), 0);
	assert_int_equal(s.n, 5);
	assert_int_equal(s.r[1].lo, 3);
	assert_int_equal(s.r[1].hi, 5);
	assert_int_equal(s.r[2].lo, 7);
	assert_int_equal(s.r[2].hi, IMAP_SEQ_STAR);
	assert_int_equal(s.r[3].lo, IMAP_SEQ_STAR);
	assert_int_equal(s.r[3].hi, IMAP_SEQ_STAR);
	/* as written: reversed stays reversed until used */
	assert_int_equal(s.r[4].lo, 9);
	assert_int_equal(s.r[4].hi, 2);
	imap_seqset_free(&s);

	assert_int_equal(imap_seqset_parse("4294967295", &s), 0);
	assert_int_equal(s.r[0].lo, 4294967295u);
	/* an explicit 4294967295 is not '*': it names no message of five */
	assert_false(imap_seqset_contains(&s, 5, 5));
	assert_false(imap_seqset_beyond(&s, 4294967295u));
	imap_seqset_free(&s);
	assert_int_equal(imap_seqset_parse("1:4294967295", &s), 0);
	imap_seqset_free(&s);
	assert_int_equal(imap_seqset_parse("*:1", &s), 0);
	imap_seqset_free(&s);
}

static void test_parse_bad(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "0", "0:5", "5:0", ",", "1,", ",1", "1,,2", "1:", ":1",
		"1::2", "1:2:3", "a", "1a", "1 ", " 1", "-1", "+1", "1.5",
		"4294967296", "1:4294967296", "99999999999999999999", "**",
		"*1", "1*", "$", "1,$", "1;2", "1:*:2",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct imap_seqset s;
		assert_int_equal(imap_seqset_parse(bad[i], &s), -1);
		/* empty after a failure */
		assert_int_equal(s.n, 0);
		assert_null(s.r);
		imap_seqset_free(&s);
	}
}

static void test_too_many_ranges(void **state)
{
	(void)state;
	struct str text = STR_INIT;
	for (unsigned i = 0; i < IMAP_SEQSET_MAX_RANGES; i++)
		str_printf(&text, "%s%u", i ? "," : "", 2 * i + 1);
	struct imap_seqset s;
	assert_int_equal(imap_seqset_parse(str_c(&text), &s), 0);
	assert_int_equal(s.n, IMAP_SEQSET_MAX_RANGES);
	imap_seqset_free(&s);
	str_append(&text, ",1");
	assert_int_equal(imap_seqset_parse(str_c(&text), &s), -1);
	assert_int_equal(s.n, 0);
	str_free(&text);
}

static void test_contains(void **state)
{
	(void)state;
	struct imap_seqset s;
	assert_int_equal(imap_seqset_parse("2,4:6,9:8", &s), 0);
	static const struct { uint32_t n; bool in; } cases[] = {
		{ 1, false }, { 2, true }, { 3, false }, { 4, true },
		{ 5, true }, { 6, true }, { 7, false }, { 8, true },
		{ 9, true }, { 10, false }, { 0, false },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(imap_seqset_contains(&s, cases[i].n, 20),
				 cases[i].in);
	imap_seqset_free(&s);

	/* '*' is the star given at use */
	assert_int_equal(imap_seqset_parse("*", &s), 0);
	assert_true(imap_seqset_contains(&s, 10, 10));
	assert_false(imap_seqset_contains(&s, 9, 10));
	assert_true(imap_seqset_contains(&s, 9, 9));
	/* empty mailbox: nothing */
	assert_false(imap_seqset_contains(&s, 0, 0));
	assert_false(imap_seqset_contains(&s, 1, 0));
	imap_seqset_free(&s);

	/* "7:*" with star 5 is 5:7: includes the highest (RFC 3501 6.4.8) */
	assert_int_equal(imap_seqset_parse("7:*", &s), 0);
	assert_true(imap_seqset_contains(&s, 5, 5));
	assert_false(imap_seqset_contains(&s, 4, 5));
	assert_true(imap_seqset_contains(&s, 7, 100));
	assert_true(imap_seqset_contains(&s, 100, 100));
	assert_false(imap_seqset_contains(&s, 6, 100));
	imap_seqset_free(&s);

	assert_int_equal(imap_seqset_parse("*:3", &s), 0);
	assert_true(imap_seqset_contains(&s, 3, 8));
	assert_true(imap_seqset_contains(&s, 8, 8));
	assert_false(imap_seqset_contains(&s, 2, 8));
	imap_seqset_free(&s);

	assert_int_equal(imap_seqset_parse("1:4294967295", &s), 0);
	assert_true(imap_seqset_contains(&s, 1, 7));
	assert_true(imap_seqset_contains(&s, 7, 7));
	assert_true(imap_seqset_contains(&s, 4294967295u, 4294967295u));
	/* an explicit number past the mailbox, unlike '*' */
	assert_true(imap_seqset_beyond(&s, 7));
	imap_seqset_free(&s);
}

static void test_beyond(void **state)
{
	(void)state;
	struct imap_seqset s;
	assert_int_equal(imap_seqset_parse("1:5", &s), 0);
	assert_false(imap_seqset_beyond(&s, 5));
	assert_true(imap_seqset_beyond(&s, 4));
	assert_true(imap_seqset_beyond(&s, 0));
	imap_seqset_free(&s);
	assert_int_equal(imap_seqset_parse("3,1:*", &s), 0);
	assert_false(imap_seqset_beyond(&s, 3));
	assert_true(imap_seqset_beyond(&s, 2));
	imap_seqset_free(&s);
	assert_int_equal(imap_seqset_parse("*", &s), 0);
	assert_false(imap_seqset_beyond(&s, 0));
	assert_false(imap_seqset_beyond(&s, 1));
	imap_seqset_free(&s);
	assert_int_equal(imap_seqset_parse("9:2", &s), 0);
	assert_true(imap_seqset_beyond(&s, 8));
	assert_false(imap_seqset_beyond(&s, 9));
	imap_seqset_free(&s);
}

static void check_norm(const char *text, uint32_t star, const char *want)
{
	struct imap_seqset s;
	struct str out = STR_INIT;
	assert_int_equal(imap_seqset_parse(text, &s), 0);
	imap_seqset_normalize(&s, star);
	for (size_t i = 0; i < s.n; i++) {
		assert_true(s.r[i].lo <= s.r[i].hi);
		if (i > 0)
			assert_true(s.r[i].lo > s.r[i - 1].hi + 1);
		str_printf(&out, "%s%llu:%llu", i ? "," : "",
			   (unsigned long long)s.r[i].lo,
			   (unsigned long long)s.r[i].hi);
	}
	assert_string_equal(str_c(&out), want);
	imap_seqset_free(&s);
	str_free(&out);
}

static void test_normalize(void **state)
{
	(void)state;
	check_norm("5,1,3", 10, "1:1,3:3,5:5");
	check_norm("1:3,4:6", 10, "1:6");	/* adjacent */
	check_norm("5:1,2:8", 10, "1:8");	/* overlap, reversed */
	check_norm("7:*", 5, "5:7");
	check_norm("*", 5, "5:5");
	check_norm("*:*,1", 3, "1:1,3:3");
	check_norm("1:*", 0, "1:1");		/* '*' of an empty box */
	check_norm("*", 0, "");
	check_norm("4294967295,1", 4294967295u, "1:1,4294967295:4294967295");
	check_norm("1:4294967294,4294967295", 4294967295u, "1:4294967295");
	check_norm("10:20,1:100,50", 100, "1:100");
}

static void test_format(void **state)
{
	(void)state;
	struct imap_seqset s;
	struct str out = STR_INIT;
	assert_int_equal(imap_seqset_parse("5,3,1:2,9:7,8", &s), 0);
	imap_seqset_format(&s, &out);
	assert_string_equal(str_c(&out), "1:3,5,7:9");
	/* the set itself is not changed */
	assert_int_equal(s.n, 5);
	assert_int_equal(s.r[0].lo, 5);
	imap_seqset_free(&s);

	str_clear(&out);
	assert_int_equal(imap_seqset_parse("4:*", &s), 0);
	imap_seqset_format(&s, &out);
	assert_string_equal(str_c(&out), "4:*");
	imap_seqset_free(&s);

	str_clear(&out);
	static const uint32_t nums[] = { 1, 2, 3, 5, 7, 7, 8, 100 };
	imap_seqset_format_list(nums, sizeof nums / sizeof nums[0], &out);
	assert_string_equal(str_c(&out), "1:3,5,7:8,100");
	str_clear(&out);
	imap_seqset_format_list(nums, 0, &out);
	assert_string_equal(str_c(&out), "");
	str_clear(&out);
	imap_seqset_format_list(nums + 7, 1, &out);
	assert_string_equal(str_c(&out), "100");
	str_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_too_many_ranges),
		cmocka_unit_test(test_contains),
		cmocka_unit_test(test_beyond),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
