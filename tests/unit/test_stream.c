/*
 * Unit tests for common/stream.c: line bounds, overlong lines, EOF without
 * newline, timeouts, raw reads, output buffering.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "stream.h"

struct pipes {
	int in[2];	/* test writes in[1], stream reads in[0] */
	int out[2];	/* stream writes out[1], test reads out[0] */
};

static void pipes_open(struct pipes *p)
{
	assert_int_equal(pipe(p->in), 0);
	assert_int_equal(pipe(p->out), 0);
}

static void pipes_close(struct pipes *p)
{
	for (int i = 0; i < 2; i++) {
		close(p->in[i]);
		close(p->out[i]);
	}
}

static void feed(struct pipes *p, const char *text)
{
	assert_int_equal(write(p->in[1], text, strlen(text)), (ssize_t)strlen(text));
}

static void test_lines(void **state)
{
	(void)state;
	struct pipes p;
	pipes_open(&p);
	struct stream s;
	stream_init(&s, p.in[0], p.out[1], 5, 64);
	feed(&p, "EHLO a\r\nNOOP\nlast");
	close(p.in[1]);
	p.in[1] = -1;
	const char *line;
	size_t len;
	assert_int_equal(stream_getline(&s, 64, &line, &len), STREAM_OK);
	assert_int_equal(len, 8);
	assert_memory_equal(line, "EHLO a\r\n", 8);
	assert_int_equal(stream_getline(&s, 64, &line, &len), STREAM_OK);
	assert_memory_equal(line, "NOOP\n", 5);
	/* the last line without a newline comes whole, then EOF */
	assert_int_equal(stream_getline(&s, 64, &line, &len), STREAM_OK);
	assert_int_equal(len, 4);
	assert_memory_equal(line, "last", 4);
	assert_int_equal(stream_getline(&s, 64, &line, &len), STREAM_EOF);
	stream_free(&s);
	pipes_close(&p);
}

static void test_overlong(void **state)
{
	(void)state;
	struct pipes p;
	pipes_open(&p);
	struct stream s;
	stream_init(&s, p.in[0], p.out[1], 5, 32);
	char big[100];
	memset(big, 'x', sizeof big);
	assert_int_equal(write(p.in[1], big, sizeof big), (ssize_t)sizeof big);
	feed(&p, "\r\nok\r\n");
	const char *line;
	size_t len;
	/* the first 10 bytes, then the caller skips the rest */
	assert_int_equal(stream_getline(&s, 10, &line, &len), STREAM_TOOLONG);
	assert_int_equal(len, 10);
	assert_int_equal(stream_skip_line(&s), STREAM_OK);
	assert_int_equal(stream_getline(&s, 10, &line, &len), STREAM_OK);
	assert_int_equal(len, 4);
	assert_memory_equal(line, "ok\r\n", 4);
	/* continuing an overlong line chunk by chunk */
	assert_int_equal(write(p.in[1], big, 25), 25);
	feed(&p, "\n");
	assert_int_equal(stream_getline(&s, 10, &line, &len), STREAM_TOOLONG);
	assert_int_equal(stream_getline(&s, 10, &line, &len), STREAM_TOOLONG);
	assert_int_equal(stream_getline(&s, 10, &line, &len), STREAM_OK);
	assert_int_equal(len, 6);
	stream_free(&s);
	pipes_close(&p);
}

static void test_timeout(void **state)
{
	(void)state;
	struct pipes p;
	pipes_open(&p);
	struct stream s;
	stream_init(&s, p.in[0], p.out[1], 1, 64);
	const char *line;
	size_t len;
	feed(&p, "partial");
	assert_int_equal(stream_getline(&s, 64, &line, &len), STREAM_TIMEOUT);
	/* a timeout is not sticky: the line completes later */
	feed(&p, " line\n");
	assert_int_equal(stream_getline(&s, 64, &line, &len), STREAM_OK);
	assert_memory_equal(line, "partial line\n", 13);
	stream_free(&s);
	pipes_close(&p);
}

static void test_output_buffered_until_read(void **state)
{
	(void)state;
	struct pipes p;
	pipes_open(&p);
	struct stream s;
	stream_init(&s, p.in[0], p.out[1], 5, 64);
	feed(&p, "A\nB\n");
	const char *line;
	size_t len;
	assert_int_equal(stream_getline(&s, 64, &line, &len), STREAM_OK);
	stream_puts(&s, "250 one\r\n");
	assert_true(stream_input_buffered(&s));
	assert_int_equal(stream_getline(&s, 64, &line, &len), STREAM_OK);
	stream_printf(&s, "250 %s\r\n", "two");
	/* nothing written yet: replies to a pipelined group leave together */
	int fl = fcntl(p.out[0], F_GETFL);
	fcntl(p.out[0], F_SETFL, fl | O_NONBLOCK);
	char buf[64];
	assert_int_equal(read(p.out[0], buf, sizeof buf), -1);
	feed(&p, "C\n");
	assert_int_equal(stream_getline(&s, 64, &line, &len), STREAM_OK);
	ssize_t n = read(p.out[0], buf, sizeof buf);
	assert_int_equal(n, 18);
	assert_memory_equal(buf, "250 one\r\n250 two\r\n", 18);
	stream_free(&s);
	pipes_close(&p);
}

static void test_read_exact_and_discard(void **state)
{
	(void)state;
	struct pipes p;
	pipes_open(&p);
	struct stream s;
	stream_init(&s, p.in[0], p.out[1], 5, 16);
	feed(&p, "0123456789abcdefghijKLMN\n");
	char buf[21] = { 0 };
	assert_int_equal(stream_read(&s, buf, 20), STREAM_OK);
	assert_string_equal(buf, "0123456789abcdefghij");
	stream_discard_input(&s);
	assert_false(stream_input_buffered(&s));
	feed(&p, "next\n");
	const char *line;
	size_t len;
	assert_int_equal(stream_getline(&s, 16, &line, &len), STREAM_OK);
	assert_memory_equal(line, "next\n", 5);
	stream_free(&s);
	pipes_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_overlong),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_output_buffered_until_read),
		cmocka_unit_test(test_read_exact_and_discard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
