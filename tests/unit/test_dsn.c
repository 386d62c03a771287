/*
 * test_dsn: unit tests for common/dsn.c: the status and remote-MTA
 * extraction from error texts, reading a message's header block, and the
 * structure of a generated bounce and delay warning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <unistd.h>

#include "dsn.h"
#include "str.h"

static void test_error_status(void **state)
{
	(void)state;
	char st[DSN_STATUS_MAX];
	dsn_error_status("mx.example.org[192.0.2.1] said: 550 5.1.1 "
			 "<u@example.org>: unknown (in reply to RCPT TO "
			 "command)", DSN_FAILED, st);
	assert_string_equal(st, "5.1.1");
	dsn_error_status("4.4.7 message expired; last error: "
			 "mx[192.0.2.1] said: 451 4.3.0 later", DSN_FAILED, st);
	assert_string_equal(st, "4.4.7");
	/* No enhanced code: the reply's class. */
	dsn_error_status("mx[192.0.2.1] said: 554 go away (in reply to "
			 "end of DATA)", DSN_FAILED, st);
	assert_string_equal(st, "5.0.0");
	dsn_error_status("mx[192.0.2.1] said: 452 full", DSN_DELAYED, st);
	assert_string_equal(st, "4.0.0");
	/* IP addresses and versions are no status codes. */
	dsn_error_status("connect to 4.2.3.4[4.2.3.4]:25: refused",
			 DSN_DELAYED, st);
	assert_string_equal(st, "4.0.0");
	dsn_error_status("x 2.1.2.3 y", DSN_FAILED, st);
	assert_string_equal(st, "5.0.0");
	dsn_error_status("5.1234.1 too many digits", DSN_FAILED, st);
	assert_string_equal(st, "5.0.0");
	dsn_error_status("(5.7.1) in parentheses", DSN_FAILED, st);
	assert_string_equal(st, "5.7.1");
	dsn_error_status(NULL, DSN_FAILED, st);
	assert_string_equal(st, "5.0.0");
	dsn_error_status(NULL, DSN_DELAYED, st);
	assert_string_equal(st, "4.0.0");
}

static void test_error_remote(void **state)
{
	(void)state;
	struct str mta = STR_INIT, diag = STR_INIT;
	assert_true(dsn_error_remote("mx.example.org[192.0.2.1] said: 550 "
				     "5.1.1 no such user (in reply to RCPT "
				     "TO command)", &mta, &diag));
	assert_string_equal(str_c(&mta), "mx.example.org");
	assert_string_equal(str_c(&diag), "550 5.1.1 no such user");
	str_clear(&mta);
	str_clear(&diag);
	assert_true(dsn_error_remote("4.4.7 message expired; last error: "
				     "b.example[::1] said: 451 later",
				     &mta, &diag));
	assert_string_equal(str_c(&mta), "b.example");
	assert_string_equal(str_c(&diag), "451 later");
	str_clear(&mta);
	str_clear(&diag);
	assert_false(dsn_error_remote("4.4.1 connect to a[1.2.3.4]:25: "
				      "refused", &mta, &diag));
	/* a line break in the host part cannot add a field (fuzz_dsn) */
	str_clear(&mta);
	str_clear(&diag);
	assert_true(dsn_error_remote("e\nAction:delivered\nx[1.2.3.4] said: "
				     "550 no", &mta, &diag));
	assert_null(strchr(str_c(&mta), '\n'));
	str_clear(&mta);
	str_clear(&diag);
	assert_false(dsn_error_remote("[1.2.3.4] said: no host", &mta, &diag));
	assert_false(dsn_error_remote(NULL, &mta, &diag));
	assert_int_equal(mta.len, 0);
	assert_int_equal(diag.len, 0);
	str_free(&mta);
	str_free(&diag);
}

/* A temp file holding text; returns its fd (unlinked already). */
static int temp_with(const char *text)
{
	char path[] = "/tmp/test_dsn.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	return fd;
}

static void test_read_headers(void **state)
{
	(void)state;
	struct str h = STR_INIT;
	int fd = temp_with("Received: from x\n\tby y\nSubject: hi\n\nbody\n"
			   "Not-A-Header: no\n");
	assert_int_equal(dsn_read_headers(fd, DSN_HEADERS_MAX, &h), 0);
	assert_string_equal(str_c(&h), "Received: from x\n\tby y\n"
			    "Subject: hi\n");
	close(fd);

	/* The bound cuts at a line end. */
	str_clear(&h);
	fd = temp_with("A: 1\nB: 22222\nC: 3\n\nbody\n");
	assert_int_equal(dsn_read_headers(fd, 12, &h), 0);
	assert_string_equal(str_c(&h), "A: 1\n");
	close(fd);

	/* No body, no final newline. */
	str_clear(&h);
	fd = temp_with("A: 1\nB: 2");
	assert_int_equal(dsn_read_headers(fd, DSN_HEADERS_MAX, &h), 0);
	assert_string_equal(str_c(&h), "A: 1\n");
	close(fd);

	/* No header at all. */
	str_clear(&h);
	fd = temp_with("\nbody only\n");
	assert_int_equal(dsn_read_headers(fd, DSN_HEADERS_MAX, &h), 0);
	assert_int_equal(h.len, 0);
	close(fd);

	/* A header block longer than one read chunk. */
	str_clear(&h);
	struct str big = STR_INIT;
	for (int i = 0; i < 1000; i++)
		str_printf(&big, "X-Filler-%04d: some text to fill\n", i);
	size_t hlen = big.len;
	str_append(&big, "\nbody\n");
	fd = temp_with(str_c(&big));
	assert_int_equal(dsn_read_headers(fd, DSN_HEADERS_MAX, &h), 0);
	assert_int_equal(h.len, hlen);
	assert_memory_equal(h.data, big.data, hlen);
	close(fd);
	str_free(&big);

	assert_int_equal(dsn_read_headers(-1, 100, &h), -1);
	str_free(&h);
}

static struct queue_rcpt test_rcpts[3];

static void make_envelope(struct queue_envelope *env)
{
	memset(env, 0, sizeof *env);
	strcpy(env->id, "ABC123");
	env->sender = (char *)"alice@example.org";
	env->arrival = 1700000000;
	env->size = 100;
	memset(test_rcpts, 0, sizeof test_rcpts);
	test_rcpts[0].address = (char *)"bob@remote.example";
	test_rcpts[0].state = RCPT_FAILED;
	test_rcpts[0].attempts = 1;
	test_rcpts[0].last_error = (char *)"mx.remote.example[192.0.2.1] "
		"said: 550 5.1.1 <bob@remote.example>: User unknown (in "
		"reply to RCPT TO command)";
	test_rcpts[0].orcpt = (char *)"rfc822;Bob@Remote.Example";
	test_rcpts[1].address = (char *)"carol@remote.example";
	test_rcpts[1].state = RCPT_DELIVERED;
	test_rcpts[2].address = (char *)"dave@gone.example";
	test_rcpts[2].state = RCPT_FAILED;
	test_rcpts[2].attempts = 0;
	test_rcpts[2].last_error = (char *)"5.1.10 domain gone.example does "
		"not accept mail (null MX)";
	env->rcpts = test_rcpts;
	env->n_rcpts = 3;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* needles appear in hay in this order. */
static void assert_in_order(const char *hay, const char *const *needles)
{
	const char *at = hay;
	for (size_t i = 0; needles[i] != NULL; i++) {
		const char *p = strstr(at, needles[i]);
		if (p == NULL)
			fail_msg("missing or out of order: %s", needles[i]);
		at = p + strlen(needles[i]);
	}
}

static void test_build_failed(void **state)
{
	(void)state;
	struct queue_envelope env;
	make_envelope(&env);
	struct dsn_info info = {
		.kind = DSN_FAILED, .hostname = "mail.example.org",
		.to = "alice@example.org", .id = "DSN1",
		.now = 1700003600, .queue_lifetime = 5 * 86400,
	};
	static const char headers[] = "Received: from a\n\tby b\n"
				      "Subject: Hello\nFrom: alice@example.org\n";
	size_t which[2] = { 0, 2 };
	struct str out = STR_INIT;
	dsn_build(&info, &env, which, 2, headers, sizeof headers - 1, &out);
	const char *m = str_c(&out);

	assert_null(strchr(m, '\r'));
	assert_true(out.len > 0 && m[out.len - 1] == '\n');
	/* The header block ends at the first empty line. */
	const char *body = strstr(m, "\n\n");
	assert_non_null(body);
	struct str head = STR_INIT;
	str_append_n(&head, m, (size_t)(body - m) + 1);
	assert_non_null(strstr(str_c(&head),
		"\nFrom: MAILER-DAEMON@mail.example.org (Mail Delivery System)\n"));
	assert_non_null(strstr(str_c(&head), "\nTo: <alice@example.org>\n"));
	assert_non_null(strstr(str_c(&head),
		"\nSubject: Undelivered Mail Returned to Sender\n"));
	assert_non_null(strstr(str_c(&head),
		"\nMessage-ID: <DSN1.dsn@mail.example.org>\n"));
	assert_non_null(strstr(str_c(&head), "\nAuto-Submitted: auto-replied\n"));
	assert_non_null(strstr(str_c(&head), "\nMIME-Version: 1.0\n"));
	assert_non_null(strstr(str_c(&head),
		"\nContent-Type: multipart/report; report-type=delivery-status;\n"
		"\tboundary=\"DSN1.1700003600/mail.example.org\"\n"));
	assert_true(strncmp(m, "Date: ", 6) == 0);
	str_free(&head);

	/* Three parts, in order, closed once. */
	const char *b = "--DSN1.1700003600/mail.example.org\n";
	assert_int_equal(count(m, b), 3);
	assert_int_equal(count(m, "--DSN1.1700003600/mail.example.org--\n"), 1);
	static const char *const order[] = {
		"--DSN1.1700003600/mail.example.org\n"
		"Content-Description: Notification\n"
		"Content-Type: text/plain; charset=us-ascii\n\n",
		"This is the mail system at host mail.example.org.",
		"<bob@remote.example>: mx.remote.example[192.0.2.1] said: 550",
		"<dave@gone.example>: 5.1.10 domain gone.example",
		"--DSN1.1700003600/mail.example.org\n"
		"Content-Description: Delivery report\n"
		"Content-Type: message/delivery-status\n\n"
		"Reporting-MTA: dns; mail.example.org\n"
		"X-Sockmail-Queue-ID: ABC123\n"
		"X-Sockmail-Sender: rfc822; alice@example.org\n"
		"Arrival-Date: ",
		"\n\nOriginal-Recipient: rfc822;Bob@Remote.Example\n"
		"Final-Recipient: rfc822; bob@remote.example\n"
		"Action: failed\n"
		"Status: 5.1.1\n"
		"Remote-MTA: dns; mx.remote.example\n"
		"Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.example>: "
		"User unknown\n"
		"Last-Attempt-Date: ",
		"\n\nFinal-Recipient: rfc822; dave@gone.example\n"
		"Action: failed\n"
		"Status: 5.1.10\n"
		"Diagnostic-Code: X-Sockmail; 5.1.10 domain gone.example does "
		"not accept mail (null MX)\n\n"
		"--DSN1.1700003600/mail.example.org\n"
		"Content-Description: Undelivered Message Headers\n"
		"Content-Type: text/rfc822-headers\n\n"
		"Received: from a\n\tby b\nSubject: Hello\n"
		"From: alice@example.org\n\n"
		"--DSN1.1700003600/mail.example.org--\n",
		NULL,
	};
	assert_in_order(m, order);
	/* The delivered recipient is not reported. */
	assert_null(strstr(m, "carol"));
	/* Never attempted: no Last-Attempt-Date for dave. */
	assert_int_equal(count(m, "Last-Attempt-Date: "), 1);
	assert_null(strstr(m, "Will-Retry-Until"));
	str_free(&out);
}

static void test_build_delayed(void **state)
{
	(void)state;
	struct queue_envelope env;
	make_envelope(&env);
	test_rcpts[1].state = RCPT_PENDING;
	test_rcpts[1].attempts = 3;
	test_rcpts[1].last_error = (char *)"4.4.1 connect to "
		"mx.remote.example[192.0.2.1]:25: Connection refused";
	struct dsn_info info = {
		.kind = DSN_DELAYED, .hostname = "mail.example.org",
		.to = "alice@example.org", .id = "DSN2",
		.now = 1700000000 + 5 * 3600, .queue_lifetime = 5 * 86400,
	};
	size_t which[1] = { 1 };
	struct str out = STR_INIT;
	dsn_build(&info, &env, which, 1, "", 0, &out);
	const char *m = str_c(&out);
	static const char *const order[] = {
		"\nSubject: Delayed Mail (still being retried)\n",
		"Content-Type: multipart/report; report-type=delivery-status;",
		"Content-Transfer-Encoding: 7bit\n",
		"THIS IS A WARNING ONLY",
		"Your message could not be delivered for 5 hours.\n"
		"It will be retried until it is 5 days old.\n",
		"<carol@remote.example>: 4.4.1 connect to",
		"Content-Type: message/delivery-status\n",
		"Final-Recipient: rfc822; carol@remote.example\n"
		"Action: delayed\nStatus: 4.4.1\n"
		"Diagnostic-Code: X-Sockmail; 4.4.1 connect to "
		"mx.remote.example[192.0.2.1]:25: Connection refused\n"
		"Last-Attempt-Date: ",
		"\nWill-Retry-Until: ",
		"Content-Type: text/rfc822-headers\n\n\n--DSN2.",
		NULL,
	};
	assert_in_order(m, order);
	assert_null(strstr(m, "bob@"));
	str_free(&out);
}

/* UTF-8 anywhere: the RFC 6533 types; control characters in a remote
 * reply do not break the report's lines. */
static void test_build_utf8(void **state)
{
	(void)state;
	struct queue_envelope env;
	make_envelope(&env);
	env.smtputf8 = true;
	test_rcpts[0].address = (char *)"b\xc3\xb6" "b@remote.example";
	test_rcpts[0].last_error = (char *)"mx[192.0.2.1] said: 550 5.1.1 "
		"evil\r\nInjected: yes";
	struct dsn_info info = {
		.kind = DSN_FAILED, .hostname = "h.example",
		.to = "alice@example.org", .id = "DSN3", .now = 1700000100,
		.queue_lifetime = 86400, .postmaster_copy = true,
	};
	size_t which[1] = { 0 };
	struct str out = STR_INIT;
	dsn_build(&info, &env, which, 1, "Subject: x\n", 11, &out);
	const char *m = str_c(&out);
	assert_non_null(strstr(m, "\nSubject: Postmaster Copy: Undelivered Mail\n"));
	assert_non_null(strstr(m, "Content-Transfer-Encoding: 8bit\n"));
	assert_non_null(strstr(m, "Content-Type: text/plain; charset=utf-8\n"));
	assert_non_null(strstr(m, "Content-Type: message/global-delivery-status\n"));
	assert_non_null(strstr(m, "Content-Type: message/global-headers\n"));
	assert_non_null(strstr(m, "Final-Recipient: utf-8; b\xc3\xb6" "b@remote.example\n"));
	assert_non_null(strstr(m, "Diagnostic-Code: smtp; 550 5.1.1 evil  Injected: yes\n"));
	assert_null(strstr(m, "\nInjected"));
	str_free(&out);
}

/* A quoted header holding the delimiter line does not end the part: the
 * boundary changes. */
static void test_build_boundary_in_header(void **state)
{
	(void)state;
	struct queue_envelope env;
	make_envelope(&env);
	struct dsn_info info = {
		.kind = DSN_FAILED, .hostname = "h.example",
		.to = "alice@example.org", .id = "DSN4", .now = 1700000100,
		.queue_lifetime = 86400,
	};
	const char *h = "Subject: x\n--DSN4.1700000100/h.example--\n"
			"--DSN4.1700000100/h.example=0\n";
	size_t which[1] = { 0 };
	struct str out = STR_INIT;
	dsn_build(&info, &env, which, 1, h, strlen(h), &out);
	assert_non_null(strstr(str_c(&out),
			       "boundary=\"DSN4.1700000100/h.example=0=1\""));
	assert_int_equal(count(str_c(&out),
			       "\n--DSN4.1700000100/h.example=0=1"), 4);
	str_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_status),
		cmocka_unit_test(test_error_remote),
		cmocka_unit_test(test_read_headers),
		cmocka_unit_test(test_build_failed),
		cmocka_unit_test(test_build_delayed),
		cmocka_unit_test(test_build_utf8),
		cmocka_unit_test(test_build_boundary_in_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
