/*
 * test_pop3_parse: pop3-handler's command-line parser: keywords in any
 * case, argument counts per command, message-number syntax and range,
 * PASS with spaces, AUTH with and without an initial response, and the
 * exact result for each way a line can be wrong.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../pop3-handler/pop3_cmd.h"

/* Parse a copy of text; the copy lives until the next call. */
static enum pop3_parse parse(const char *text, struct pop3_command *c)
{
	static char buf[512];
	snprintf(buf, sizeof buf, "%s", text);
	return pop3_parse_command(buf, c);
}

static void test_no_argument_commands(void **state)
{
	(void)state;
	static const struct { const char *line; enum pop3_verb verb; } ok[] = {
		{ "STAT", POP3_STAT }, { "stat", POP3_STAT },
		{ "NOOP", POP3_NOOP }, { "rSeT", POP3_RSET },
		{ "QUIT", POP3_QUIT }, { "CAPA", POP3_CAPA },
		{ "STLS", POP3_STLS }, { "quit ", POP3_QUIT },
		{ "LIST", POP3_LIST }, { "UIDL", POP3_UIDL },
		{ "AUTH", POP3_AUTH },
	};
	struct pop3_command c;
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		assert_int_equal(parse(ok[i].line, &c), POP3_PARSE_OK);
		assert_int_equal(c.verb, ok[i].verb);
		assert_int_equal(c.argc, 0);
	}
	assert_int_equal(parse("stat", &c), POP3_PARSE_OK);
	assert_string_equal(c.keyword, "STAT");
	static const char *const extra[] = {
		"STAT 1", "NOOP x", "RSET 1", "QUIT now", "CAPA x", "STLS x",
	};
	for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
		assert_int_equal(parse(extra[i], &c), POP3_PARSE_ARGS);
}

static void test_numbers(void **state)
{
	(void)state;
	struct pop3_command c;
	assert_int_equal(parse("LIST 1", &c), POP3_PARSE_OK);
	assert_int_equal(c.verb, POP3_LIST);
	assert_int_equal(c.argc, 1);
	assert_int_equal(c.num[0], 1);
	assert_int_equal(parse("retr 42", &c), POP3_PARSE_OK);
	assert_int_equal(c.verb, POP3_RETR);
	assert_int_equal(c.num[0], 42);
	assert_int_equal(parse("DELE 0", &c), POP3_PARSE_OK);
	assert_int_equal(c.num[0], 0);	/* range is the session's business */
	assert_int_equal(parse("UIDL 4294967295", &c), POP3_PARSE_OK);
	assert_int_equal(c.num[0], 4294967295UL);
	assert_int_equal(parse("TOP 3 0", &c), POP3_PARSE_OK);
	assert_int_equal(c.verb, POP3_TOP);
	assert_int_equal(c.argc, 2);
	assert_int_equal(c.num[0], 3);
	assert_int_equal(c.num[1], 0);
	/* blanks between arguments: runs tolerated */
	assert_int_equal(parse("TOP  3   10 ", &c), POP3_PARSE_OK);
	assert_int_equal(c.num[1], 10);

	static const char *const bad_number[] = {
		"RETR x", "RETR -1", "RETR +1", "RETR 1x", "DELE 4294967296",
		"LIST 12345678901", "TOP 1 x", "TOP x 1", "UIDL 0x1",
		"RETR 1.0",
	};
	for (size_t i = 0; i < sizeof bad_number / sizeof bad_number[0]; i++)
		if (parse(bad_number[i], &c) != POP3_PARSE_NUMBER)
			fail_msg("'%s' not a number error", bad_number[i]);
	static const char *const bad_args[] = {
		"RETR", "DELE", "TOP", "TOP 1", "TOP 1 2 3", "LIST 1 2",
		"UIDL 1 2", "RETR 1 2", "USER", "PASS", "PASS ", "USER a b",
	};
	for (size_t i = 0; i < sizeof bad_args / sizeof bad_args[0]; i++)
		if (parse(bad_args[i], &c) != POP3_PARSE_ARGS)
			fail_msg("'%s' not an argument error", bad_args[i]);
}

static void test_parse_number(void **state)
{
	(void)state;
	unsigned long n = 7;
	assert_int_equal(pop3_parse_number("0", &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(pop3_parse_number("0000000001", &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(pop3_parse_number("00000000001", &n), -1);
	assert_int_equal(pop3_parse_number("", &n), -1);
	assert_int_equal(pop3_parse_number(" 1", &n), -1);
	assert_int_equal(pop3_parse_number("4294967296", &n), -1);
	assert_int_equal(n, 1);
}

static void test_user_pass(void **state)
{
	(void)state;
	struct pop3_command c;
	assert_int_equal(parse("USER alice@example.org", &c), POP3_PARSE_OK);
	assert_int_equal(c.verb, POP3_USER);
	assert_int_equal(c.argc, 1);
	assert_string_equal(c.argv[0], "alice@example.org");
	/* the password is the rest of the line, spaces and all */
	assert_int_equal(parse("pass  my secret pw ", &c), POP3_PARSE_OK);
	assert_int_equal(c.verb, POP3_PASS);
	assert_int_equal(c.argc, 1);
	assert_string_equal(c.argv[0], " my secret pw ");
	assert_int_equal(parse("PASS x", &c), POP3_PARSE_OK);
	assert_string_equal(c.argv[0], "x");
}

static void test_auth(void **state)
{
	(void)state;
	struct pop3_command c;
	assert_int_equal(parse("AUTH PLAIN", &c), POP3_PARSE_OK);
	assert_int_equal(c.verb, POP3_AUTH);
	assert_int_equal(c.argc, 1);
	assert_string_equal(c.argv[0], "PLAIN");
	assert_int_equal(parse("auth plain AGFsaWNlAHB3", &c), POP3_PARSE_OK);
	assert_int_equal(c.argc, 2);
	assert_string_equal(c.argv[0], "plain");
	assert_string_equal(c.argv[1], "AGFsaWNlAHB3");
	assert_int_equal(parse("AUTH PLAIN =", &c), POP3_PARSE_OK);
	assert_string_equal(c.argv[1], "=");
	assert_int_equal(parse("AUTH PLAIN a b", &c), POP3_PARSE_ARGS);
}

static void test_unknown_and_empty(void **state)
{
	(void)state;
	struct pop3_command c;
	assert_int_equal(parse("", &c), POP3_PARSE_EMPTY);
	assert_int_equal(parse("   ", &c), POP3_PARSE_EMPTY);
	assert_int_equal(parse("LAST", &c), POP3_PARSE_UNKNOWN);
	assert_int_equal(c.verb, POP3_UNKNOWN);
	assert_string_equal(c.keyword, "");
	assert_int_equal(parse("RETRX 1", &c), POP3_PARSE_UNKNOWN);
	assert_int_equal(parse("RET 1", &c), POP3_PARSE_UNKNOWN);
	assert_int_equal(parse("XTND XMIT", &c), POP3_PARSE_UNKNOWN);
	/* leading blanks are tolerated */
	assert_int_equal(parse(" STAT", &c), POP3_PARSE_OK);
	assert_int_equal(c.verb, POP3_STAT);
	/* APOP is known (to be refused by the session) */
	assert_int_equal(parse("APOP mrose c4c9334bac560ecc979e58001b3e22fb", &c),
			 POP3_PARSE_OK);
	assert_int_equal(c.verb, POP3_APOP);
}

static void test_usage(void **state)
{
	(void)state;
	assert_string_equal(pop3_verb_usage(POP3_TOP), "TOP msg lines");
	assert_string_equal(pop3_verb_usage(POP3_LIST), "LIST [msg]");
	assert_string_equal(pop3_verb_usage(POP3_UNKNOWN), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_argument_commands),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_parse_number),
		cmocka_unit_test(test_user_pass),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_unknown_and_empty),
		cmocka_unit_test(test_usage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
