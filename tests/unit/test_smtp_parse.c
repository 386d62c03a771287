/*
 * test_smtp_parse: smtp-handler's command syntax (smtp_command_line,
 * smtp_parse_verb, smtp_path_arg, smtp_parse_mail_params) and its DATA
 * reader (smtp_data_read) fed through a pipe exactly as a client's bytes
 * arrive: the end of data, dot-unstuffing, bare CR / LF, the line bound,
 * and that the next command is read in step after every kind of refusal.
 * The fuzzers (tests/fuzz/fuzz_smtp_*) found two of the cases kept here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtp.h"

/* ---- command lines ---- */

static void test_command_line(void **state)
{
	(void)state;
	static char buf[SMTP_AUTH_LINE_MAX + 1];
	assert_int_equal(smtp_command_line("NOOP\r\n", 6, buf), SMTP_LINE_OK);
	assert_string_equal(buf, "NOOP");
	assert_int_equal(smtp_command_line("NOOP\n", 5, buf), SMTP_LINE_OK);
	assert_string_equal(buf, "NOOP");
	assert_int_equal(smtp_command_line("NO\0OP\r\n", 7, buf),
			 SMTP_LINE_NUL);

	/* 512 octets with CRLF is the limit (RFC 5321 4.5.3.1.4); AUTH
	 * lines may be longer (RFC 4954) */
	char line[SMTP_AUTH_LINE_MAX];
	memset(line, 'x', sizeof line);
	memcpy(line, "NOOP ", 5);
	memcpy(line + SMTP_LINE_MAX - 2, "\r\n", 2);
	assert_int_equal(smtp_command_line(line, SMTP_LINE_MAX, buf),
			 SMTP_LINE_OK);
	memcpy(line + SMTP_LINE_MAX - 2, "xx\r\n", 4);
	assert_int_equal(smtp_command_line(line, SMTP_LINE_MAX + 2, buf),
			 SMTP_LINE_TOO_LONG);
	memcpy(line, "AUTH ", 5);
	assert_int_equal(smtp_command_line(line, SMTP_LINE_MAX + 2, buf),
			 SMTP_LINE_OK);
}

static void test_verbs(void **state)
{
	(void)state;
	static const struct {
		const char *line, *arg;
		enum smtp_verb verb;
	} cases[] = {
		{ "EHLO client.example", "client.example", SMTP_VERB_EHLO },
		{ "ehlo x", "x", SMTP_VERB_EHLO },
		{ "HeLo x", "x", SMTP_VERB_HELO },
		{ "MAIL FROM:<a@b>", "FROM:<a@b>", SMTP_VERB_MAIL },
		{ "RCPT TO:<a@b>", "TO:<a@b>", SMTP_VERB_RCPT },
		{ "DATA", "", SMTP_VERB_DATA },
		{ "STARTTLS", "", SMTP_VERB_STARTTLS },
		{ "AUTH PLAIN", "PLAIN", SMTP_VERB_AUTH },
		{ "RSET", "", SMTP_VERB_RSET },
		{ "NOOP anything", "anything", SMTP_VERB_NOOP },
		{ "QUIT", "", SMTP_VERB_QUIT },
		{ "VRFY x", "x", SMTP_VERB_VRFY },
		{ "EXPN x", "x", SMTP_VERB_EXPN },
		{ "HELP", "", SMTP_VERB_HELP },
		{ "DATAX", "", SMTP_VERB_UNKNOWN },
		{ "MAILFROM:<a@b>", "", SMTP_VERB_UNKNOWN },
		{ "", "", SMTP_VERB_UNKNOWN },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char line[64];
		char *arg = NULL;
		snprintf(line, sizeof line, "%s", cases[i].line);
		enum smtp_verb v = smtp_parse_verb(line, &arg);
		assert_int_equal(v, cases[i].verb);
		if (v != SMTP_VERB_UNKNOWN)
			assert_string_equal(arg, cases[i].arg);
	}
}

static void test_path_arg(void **state)
{
	(void)state;
	assert_string_equal(smtp_path_arg("FROM:<a@b>", "FROM:"), "<a@b>");
	assert_string_equal(smtp_path_arg("from: <a@b>", "FROM:"), "<a@b>");
	assert_string_equal(smtp_path_arg("To:<>", "TO:"), "<>");
	assert_null(smtp_path_arg("FROM <a@b>", "FROM:"));
	assert_null(smtp_path_arg("TO:<a@b>", "FROM:"));
	assert_null(smtp_path_arg("", "FROM:"));
}

static void test_mail_params(void **state)
{
	(void)state;
	struct smtp_mail_params p;
	const char *bad = NULL;
	char ok[] = "SIZE=1000 BODY=8BITMIME SMTPUTF8";
	memset(&p, 0, sizeof p);
	assert_int_equal(smtp_parse_mail_params(ok, &p, &bad), SMTP_PARAMS_OK);
	assert_int_equal(p.size, 1000);
	assert_true(p.body_8bit);
	assert_true(p.smtputf8);

	char seven[] = "body=7bit size=0";
	memset(&p, 0, sizeof p);
	assert_int_equal(smtp_parse_mail_params(seven, &p, &bad),
			 SMTP_PARAMS_OK);
	assert_false(p.body_8bit);

	static const char *const bad_size[] = {
		"SIZE=", "SIZE=12x", "SIZE=-1", "SIZE=+5", "SIZE= 5",
	};
	for (size_t i = 0; i < sizeof bad_size / sizeof bad_size[0]; i++) {
		char b[64];
		snprintf(b, sizeof b, "%s", bad_size[i]);
		memset(&p, 0, sizeof p);
		assert_int_equal(smtp_parse_mail_params(b, &p, &bad),
				 SMTP_PARAMS_BAD_SIZE);
	}
	/* beyond 2^64: the largest size, which every limit refuses (552) */
	char huge[] = "SIZE=99999999999999999999999";
	assert_int_equal(smtp_parse_mail_params(huge, &p, &bad),
			 SMTP_PARAMS_OK);
	assert_true(p.size == UINT64_MAX);

	char unknown[] = "SIZE=5 FOO=bar";
	memset(&p, 0, sizeof p);
	assert_int_equal(smtp_parse_mail_params(unknown, &p, &bad),
			 SMTP_PARAMS_UNSUPPORTED);
	assert_non_null(bad);
	assert_true(strncmp(bad, "FOO", 3) == 0);
	assert_int_equal(p.size, 5);
}

/* ---- the DATA reader ---- */

static char maildir[64];
static struct config cfg;

static int setup(void **state)
{
	(void)state;
	snprintf(maildir, sizeof maildir, "/tmp/test_smtp_parse.XXXXXX");
	if (mkdtemp(maildir) == NULL)
		return -1;
	char tmp[96];
	snprintf(tmp, sizeof tmp, "%s/tmp", maildir);
	if (mkdir(tmp, 0700) != 0)
		return -1;
	config_defaults(&cfg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char tmp[96];
	snprintf(tmp, sizeof tmp, "%s/tmp", maildir);
	rmdir(tmp);
	rmdir(maildir);
	config_free(&cfg);
	return 0;
}

struct data_result {
	bool ended;
	enum data_problem problem;
	uint64_t size;
	struct str stored;	/* the file, when DATA_FINE */
	struct str rest;	/* what the stream holds after the reader */
};

/* Send in (len octets) after 354 and read it as the session does. */
static void data_run(const char *in, size_t len, bool submission,
		     struct data_result *res)
{
	struct smtp_session s;
	memset(&s, 0, sizeof s);
	memset(res, 0, sizeof *res);
	s.cfg = &cfg;
	s.mode = submission ? SMTP_MODE_SUBMISSION : SMTP_MODE_MX;
	str_append(&s.sender, "alice@example.org");
	snprintf(s.queue_id, sizeof s.queue_id, "TEST1");
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	assert_true(len < 65536);	/* fits in the pipe */
	assert_int_equal(write(fds[1], in, len), (ssize_t)len);
	close(fds[1]);
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_true(null >= 0);
	stream_init(&s.io, fds[0], null, 5, SMTP_AUTH_LINE_MAX + 2);

	struct mailfile f;
	assert_int_equal(mailfile_open(&f, maildir), 0);
	struct data_reader d = {
		.file = &f, .at_line_start = true, .in_headers = true,
		.submission = submission,
	};
	res->ended = smtp_data_read(&s, &d);
	res->problem = d.problem;
	res->size = d.size;
	if (res->ended && d.problem == DATA_FINE) {
		assert_int_equal(mailfile_finish(&f), 0);
		str_reserve(&res->stored, f.size);
		assert_int_equal(pread(f.fd, res->stored.data, f.size, 0),
				 (ssize_t)f.size);
		res->stored.len = f.size;
		res->stored.data[f.size] = '\0';
	}
	for (;;) {
		const char *line;
		size_t n;
		int r = stream_getline(&s.io, s.io.ibuf_size, &line, &n);
		if (r != STREAM_OK && r != STREAM_TOOLONG)
			break;
		str_append_n(&res->rest, line, n);
	}
	mailfile_close(&f);
	str_free(&d.from);
	str_free(&s.sender);
	stream_free(&s.io);
	close(fds[0]);
	close(null);
}

static void data_free(struct data_result *res)
{
	str_free(&res->stored);
	str_free(&res->rest);
}

#define DATA(lit, sub, res) data_run(lit, sizeof lit - 1, sub, res)

static void test_data_plain(void **state)
{
	(void)state;
	struct data_result r;
	DATA("Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n", false, &r);
	assert_true(r.ended);
	assert_int_equal(r.problem, DATA_FINE);
	assert_string_equal(str_c(&r.stored), "Subject: x\n\n.dot\n");
	assert_int_equal(r.size, 20);	/* unstuffed, CRLF counted as 2 */
	assert_string_equal(str_c(&r.rest), "QUIT\r\n");
	data_free(&r);

	/* an empty message, and no end at all */
	DATA(".\r\nNOOP\r\n", false, &r);
	assert_true(r.ended);
	assert_string_equal(str_c(&r.rest), "NOOP\r\n");
	data_free(&r);
	DATA("Subject: x\r\n\r\nno end\r\n", false, &r);
	assert_false(r.ended);
	data_free(&r);
	/* "." CRLF after a bare LF is no end: the rest is message text */
	DATA("a\r\n.\n.\r\nQUIT\r\n", false, &r);
	assert_false(r.ended);
	data_free(&r);
}

/* Bare CR and bare LF are refused (SMTP smuggling); "." after a bare LF
 * or a bare CR does not end the data, and the real end is found. */
static void test_data_bare_newlines(void **state)
{
	(void)state;
	static const char *const cases[] = {
		"a\n.\r\nb\r\n.\r\nQUIT\r\n",
		"a\r.\r\nb\r\n.\r\nQUIT\r\n",
		"a\r\n.\nb\r\n.\r\nQUIT\r\n",
		"a\r\n.\r.\r\nb\r\n.\r\nQUIT\r\n",
		"lone\rcr\r\n.\r\nQUIT\r\n",
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct data_result r;
		data_run(cases[i], strlen(cases[i]), false, &r);
		if (!r.ended)
			fail_msg("case %zu did not end", i);
		assert_int_equal(r.problem, DATA_BARE_NEWLINE);
		assert_string_equal(str_c(&r.rest), "QUIT\r\n");
		data_free(&r);
	}
}

/* Lines over 1000 octets are refused and the reader stays in step,
 * wherever the cut falls -- also when the 1000th octet is the CR of the
 * line's CRLF (found by fuzz_smtp_data: the end of data was missed and
 * the client's next commands became message text). */
static void test_data_long_lines(void **state)
{
	(void)state;
	for (size_t len = SMTP_TEXT_MAX - 3; len <= SMTP_TEXT_MAX + 3; len++) {
		struct str in = STR_INIT;
		for (size_t i = 0; i < len; i++)
			str_append_c(&in, 'x');
		str_append(&in, "\r\n.\r\nQUIT\r\n");
		struct data_result r;
		data_run(str_c(&in), in.len, false, &r);
		assert_true(r.ended);
		/* the limit counts the CRLF */
		assert_int_equal(r.problem, len + 2 <= SMTP_TEXT_MAX
				 ? DATA_FINE : DATA_LONG_LINE);
		assert_string_equal(str_c(&r.rest), "QUIT\r\n");
		data_free(&r);
		str_free(&in);
	}
}

/* Two overlong chunks in a row, each ending in CR, the second starting
 * with one: the CR that ends the second is the real line end, and the
 * "." line after it ends the data (found by fuzz_smtp_data: the second
 * chunk's CR was dropped with the first's, the end missed, and the
 * client's next commands read as message text). */
static void test_data_cr_at_chunk_ends(void **state)
{
	(void)state;
	struct str in = STR_INIT;
	for (size_t i = 0; i < SMTP_TEXT_MAX - 1; i++)
		str_append_c(&in, 'x');
	str_append_c(&in, '\r');		/* chunk 1 ends in CR */
	str_append_c(&in, '\r');		/* chunk 2 starts with one */
	for (size_t i = 0; i < SMTP_TEXT_MAX - 2; i++)
		str_append_c(&in, 'y');
	str_append(&in, "\r\n.\r\nQUIT\r\n");	/* CR at chunk 2's end */
	struct data_result r;
	data_run(str_c(&in), in.len, false, &r);
	assert_true(r.ended);
	assert_int_equal(r.problem, DATA_LONG_LINE);
	assert_string_equal(str_c(&r.rest), "QUIT\r\n");
	data_free(&r);
	str_free(&in);
}

static void test_data_submission_headers(void **state)
{
	(void)state;
	struct data_result r;
	DATA("Subject: hi\r\n\r\nbody\r\n.\r\n", true, &r);
	assert_true(r.ended);
	assert_int_equal(r.problem, DATA_FINE);
	/* From:, Date: and Message-ID: added at the end of the header */
	assert_true(strncmp(str_c(&r.stored), "Subject: hi\n", 12) == 0);
	assert_non_null(strstr(str_c(&r.stored), "\nFrom: "));
	assert_non_null(strstr(str_c(&r.stored), "\nDate: "));
	assert_non_null(strstr(str_c(&r.stored), "\nMessage-ID: <"));
	const char *blank = strstr(str_c(&r.stored), "\n\n");
	assert_non_null(blank);
	assert_string_equal(blank, "\n\nbody\n");
	data_free(&r);
}

static void test_data_loop(void **state)
{
	(void)state;
	struct str in = STR_INIT;
	for (int i = 0; i <= SMTP_MAX_RECEIVED; i++)
		str_append(&in, "Received: from x by y; Mon, 1 Jan 2024 "
			   "00:00:00 +0000\r\n");
	str_append(&in, "\r\nbody\r\n.\r\nQUIT\r\n");
	struct data_result r;
	data_run(str_c(&in), in.len, false, &r);
	assert_true(r.ended);
	assert_int_equal(r.problem, DATA_LOOP);
	assert_string_equal(str_c(&r.rest), "QUIT\r\n");
	data_free(&r);
	str_free(&in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_line),
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_path_arg),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_data_plain),
		cmocka_unit_test(test_data_bare_newlines),
		cmocka_unit_test(test_data_long_lines),
		cmocka_unit_test(test_data_cr_at_chunk_ends),
		cmocka_unit_test(test_data_submission_headers),
		cmocka_unit_test(test_data_loop),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
