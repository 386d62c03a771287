/*
 * Unit tests for common/maildate.c: the RFC 5322 date-time format.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <time.h>

#include "maildate.h"

static void test_utc(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	struct str d = STR_INIT;
	mail_date(0, &d);
	assert_string_equal(str_c(&d), "Thu, 01 Jan 1970 00:00:00 +0000");
	str_clear(&d);
	mail_date(1795766732, &d);
	assert_string_equal(str_c(&d), "Fri, 27 Nov 2026 08:05:32 +0000");
	str_free(&d);
}

static void test_offset_and_append(void **state)
{
	(void)state;
	setenv("TZ", "EST5", 1);
	tzset();
	struct str d = STR_INIT;
	str_append(&d, "Date: ");
	mail_date(0, &d);
	assert_string_equal(str_c(&d), "Date: Wed, 31 Dec 1969 19:00:00 -0500");
	str_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utc),
		cmocka_unit_test(test_offset_and_append),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
