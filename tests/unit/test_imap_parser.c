/*
 * test_imap_parser: the IMAP command reader against well-formed and
 * hostile input: tags, names, UID, every argument type, fetch sections,
 * nesting bombs, bounds, literals (sync, LITERAL+, refused, lying, with
 * NUL), overlong lines, and above all that the reader stays in step with
 * the client after each error (the next command is read correctly) and
 * sends "+ Ready" exactly when the client is to send a literal.  Also the
 * argument helpers, reply string formatting and dates.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "imap_parser.h"

#define READY "+ Ready for literal data\r\n"

/* ---- buffer parsing ---- */

static struct imap_command cmd;
static struct str msg = STR_INIT;

static enum imap_read_result parse_n(const char *text, size_t len,
				     uint64_t limit)
{
	imap_command_free(&cmd);
	return imap_command_parse(text, len, limit, &cmd, &msg);
}

static enum imap_read_result parse(const char *text)
{
	return parse_n(text, strlen(text), 1000);
}

static int teardown(void **state)
{
	(void)state;
	imap_command_free(&cmd);
	str_free(&msg);
	return 0;
}

static void assert_atom(const struct imap_arg *a, const char *text)
{
	assert_int_equal(a->type, IMAP_ARG_ATOM);
	assert_string_equal(a->str, text);
	assert_int_equal(a->len, strlen(text));
}

/* ---- stream harness: a child writes the client's input into a pipe ---- */

struct harness {
	int in[2];	/* child writes in[1], the stream reads in[0] */
	int out[2];	/* the stream writes out[1], we read out[0] */
	pid_t writer;
	struct stream io;
	struct imap_reader r;
};

static void start_n(struct harness *h, const char *data, size_t len,
		    bool close_input)
{
	memset(h, 0, sizeof *h);
	assert_int_equal(pipe(h->in), 0);
	assert_int_equal(pipe(h->out), 0);
	h->writer = fork();
	assert_true(h->writer >= 0);
	if (h->writer == 0) {
		close(h->in[0]);
		while (len > 0) {
			ssize_t n = write(h->in[1], data, len);
			if (n <= 0)
				_exit(1);
			data += n;
			len -= (size_t)n;
		}
		if (!close_input)
			pause();	/* keep the pipe open: a silent client */
		_exit(0);
	}
	close(h->in[1]);
	h->in[1] = -1;
	stream_init(&h->io, h->in[0], h->out[1], 5, IMAP_LINE_MAX);
	h->r.io = &h->io;
	h->r.append_limit = 1000;
	h->r.literal_plus = true;
	int fl = fcntl(h->out[0], F_GETFL);
	assert_int_equal(fcntl(h->out[0], F_SETFL, fl | O_NONBLOCK), 0);
}

static void start(struct harness *h, const char *data)
{
	start_n(h, data, strlen(data), true);
}

static enum imap_read_result next(struct harness *h)
{
	imap_command_free(&cmd);
	return imap_command_read(&h->r, &cmd, &msg);
}

/* Everything the reader has written to the client so far. */
static void output(struct harness *h, struct str *out)
{
	str_clear(out);
	stream_flush(&h->io);
	char buf[4096];
	ssize_t n;
	while ((n = read(h->out[0], buf, sizeof buf)) > 0)
		str_append_n(out, buf, (size_t)n);
}

static void assert_output(struct harness *h, const char *want)
{
	struct str out = STR_INIT;
	output(h, &out);
	assert_string_equal(str_c(&out), want);
	str_free(&out);
}

static void finish(struct harness *h)
{
	stream_free(&h->io);
	close(h->in[0]);
	close(h->out[0]);
	close(h->out[1]);
	kill(h->writer, SIGTERM);
	waitpid(h->writer, NULL, 0);
}

/* ---- commands and tags ---- */

static void test_simple(void **state)
{
	(void)state;
	assert_int_equal(parse("a001 NOOP\r\n"), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "a001");
	assert_string_equal(cmd.name, "NOOP");
	assert_false(cmd.uid);
	assert_int_equal(cmd.argc, 0);
	assert_int_equal(cmd.bytes, 11);

	/* name upper-cased; bare LF; trailing and repeated spaces */
	assert_int_equal(parse("x noop\n"), IMAP_READ_OK);
	assert_string_equal(cmd.name, "NOOP");
	assert_int_equal(parse("t1 select  INBOX   \r\n"), IMAP_READ_OK);
	assert_string_equal(cmd.name, "SELECT");
	assert_int_equal(cmd.argc, 1);
	assert_atom(&cmd.args[0], "INBOX");
	/* the buffer form takes a last line without its line end */
	assert_int_equal(parse("a CAPABILITY"), IMAP_READ_OK);
	assert_string_equal(cmd.name, "CAPABILITY");
	/* ']' is an ASTRING-CHAR: allowed in tags */
	assert_int_equal(parse("a]1 NOOP\r\n"), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "a]1");

	/* freeing resets everything */
	imap_command_free(&cmd);
	assert_null(cmd.pool);
	assert_null(cmd.args);
	assert_string_equal(cmd.tag, "");
	imap_command_free(&cmd);	/* twice is harmless */
}

static void test_empty(void **state)
{
	(void)state;
	assert_int_equal(parse("\r\n"), IMAP_READ_EMPTY);
	assert_int_equal(parse("\n"), IMAP_READ_EMPTY);
	assert_int_equal(parse(""), IMAP_READ_EOF);
}

static void test_bad_tags(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"+ NOOP\r\n", "* NOOP\r\n", "a+b NOOP\r\n", " NOOP\r\n",
		"a\"b NOOP\r\n", "a\\b NOOP\r\n", "a(b NOOP\r\n", "a{ NOOP\r\n",
		"a%b NOOP\r\n", "a*b NOOP\r\n", "\x01 NOOP\r\n",
		"t\xc3\xa4 NOOP\r\n", "\r\r\n", " \r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(parse(bad[i]), IMAP_READ_BAD);
		assert_string_equal(cmd.tag, "");
		assert_true(msg.len > 0);
	}
	char line[200];
	memset(line, 'a', IMAP_TAG_MAX);
	strcpy(line + IMAP_TAG_MAX, " NOOP\r\n");
	assert_int_equal(parse(line), IMAP_READ_OK);
	assert_int_equal(strlen(cmd.tag), IMAP_TAG_MAX);
	memset(line, 'a', IMAP_TAG_MAX + 1);
	strcpy(line + IMAP_TAG_MAX + 1, " NOOP\r\n");
	assert_int_equal(parse(line), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "");
}

static void test_bad_names(void **state)
{
	(void)state;
	/* a tag alone: the BAD carries it */
	assert_int_equal(parse("NOOP\r\n"), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "NOOP");
	assert_int_equal(parse("a \r\n"), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(parse("a NO\"OP\r\n"), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(parse("a NOOP(\r\n"), IMAP_READ_BAD);
	assert_int_equal(parse("a (NOOP)\r\n"), IMAP_READ_BAD);
	assert_int_equal(parse("a N\xc3\xa4\r\n"), IMAP_READ_BAD);
	assert_int_equal(parse("a ABCDEFGHIJKLMNOPQRSTUVWXYZABCDE\r\n"),
			 IMAP_READ_OK);
	assert_int_equal(strlen(cmd.name), 31);
	assert_int_equal(parse("a ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF\r\n"),
			 IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
}

static void test_uid(void **state)
{
	(void)state;
	assert_int_equal(parse("a UID fetch 1:* (FLAGS)\r\n"), IMAP_READ_OK);
	assert_true(cmd.uid);
	assert_string_equal(cmd.name, "FETCH");
	assert_int_equal(cmd.argc, 2);
	assert_atom(&cmd.args[0], "1:*");
	static const char *const subs[] = {
		"STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "fetch",
	};
	char line[64];
	for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
		snprintf(line, sizeof line, "a uid %s 1\r\n", subs[i]);
		assert_int_equal(parse(line), IMAP_READ_OK);
		assert_true(cmd.uid);
	}
	static const char *const bad[] = {
		"a UID\r\n", "a UID \r\n", "a UID NOOP\r\n", "a UID UID FETCH\r\n",
		"a UID (FETCH)\r\n", "a UID FETCHX 1\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(parse(bad[i]), IMAP_READ_BAD);
		assert_string_equal(cmd.tag, "a");
	}
}

/* ---- arguments ---- */

static void test_arg_types(void **state)
{
	(void)state;
	assert_int_equal(parse("a STORE 1:3,5 +FLAGS.SILENT (\\Seen \\* $Label"
			       " \\Answered) nil \"q \\\"x\\\\\" \"\" ()\r\n"),
			 IMAP_READ_OK);
	assert_int_equal(cmd.argc, 7);
	assert_atom(&cmd.args[0], "1:3,5");
	assert_atom(&cmd.args[1], "+FLAGS.SILENT");
	const struct imap_arg *l = &cmd.args[2];
	assert_int_equal(l->type, IMAP_ARG_LIST);
	assert_int_equal(l->count, 4);
	assert_atom(&l->list[0], "\\Seen");
	assert_atom(&l->list[1], "\\*");
	assert_atom(&l->list[2], "$Label");
	assert_atom(&l->list[3], "\\Answered");
	assert_int_equal(cmd.args[3].type, IMAP_ARG_NIL);
	assert_string_equal(cmd.args[3].str, "nil");
	assert_int_equal(cmd.args[4].type, IMAP_ARG_QUOTED);
	assert_string_equal(cmd.args[4].str, "q \"x\\");
	assert_int_equal(cmd.args[4].len, 5);
	assert_int_equal(cmd.args[5].type, IMAP_ARG_QUOTED);
	assert_int_equal(cmd.args[5].len, 0);
	assert_int_equal(cmd.args[6].type, IMAP_ARG_LIST);
	assert_int_equal(cmd.args[6].count, 0);

	/* LIST patterns, UTF-8 in quoted strings, nested lists */
	assert_int_equal(parse("a LIST \"\" %/*\r\n"), IMAP_READ_OK);
	assert_atom(&cmd.args[1], "%/*");
	assert_int_equal(parse("a X \"caf\xc3\xa9\" ((a (b)) c)\r\n"),
			 IMAP_READ_OK);
	assert_string_equal(cmd.args[0].str, "caf\xc3\xa9");
	l = &cmd.args[1];
	assert_int_equal(l->count, 2);
	assert_int_equal(l->list[0].count, 2);
	assert_int_equal(l->list[0].list[1].type, IMAP_ARG_LIST);
	assert_atom(&l->list[0].list[1].list[0], "b");
	assert_atom(&l->list[1], "c");
	/* spaces inside parentheses are tolerated */
	assert_int_equal(parse("a X ( a  b )\r\n"), IMAP_READ_OK);
	assert_int_equal(cmd.args[0].count, 2);
	/* NILs: only the whole atom */
	assert_int_equal(parse("a X NIL NILS \"NIL\"\r\n"), IMAP_READ_OK);
	assert_int_equal(cmd.args[0].type, IMAP_ARG_NIL);
	assert_int_equal(cmd.args[1].type, IMAP_ARG_ATOM);
	assert_int_equal(cmd.args[2].type, IMAP_ARG_QUOTED);
}

static void test_sections(void **state)
{
	(void)state;
	assert_int_equal(parse("a FETCH 1 (BODY[HEADER.FIELDS (From To)]<0.100>"
			       " BODY.PEEK[] UID BODY[1.2.MIME] "
			       "BINARY[HEADER.FIELDS.NOT (\"X]\" Y)])\r\n"),
			 IMAP_READ_OK);
	assert_int_equal(cmd.argc, 2);
	const struct imap_arg *l = &cmd.args[1];
	assert_int_equal(l->count, 5);
	assert_atom(&l->list[0], "BODY[HEADER.FIELDS (From To)]<0.100>");
	assert_atom(&l->list[1], "BODY.PEEK[]");
	assert_atom(&l->list[2], "UID");
	assert_atom(&l->list[3], "BODY[1.2.MIME]");
	assert_atom(&l->list[4], "BINARY[HEADER.FIELDS.NOT (\"X]\" Y)]");
	/* a section does not count as nesting: no ')' imbalance */
	assert_int_equal(parse("a FETCH 1 BODY[(((]\r\n"), IMAP_READ_OK);
	assert_atom(&cmd.args[1], "BODY[(((]");
	assert_int_equal(parse("a FETCH 1 BODY[)]\r\n"), IMAP_READ_OK);
	assert_atom(&cmd.args[1], "BODY[)]");
	/* mailbox names with brackets are atoms */
	assert_int_equal(parse("a SELECT [Gmail]/Sent\r\n"), IMAP_READ_OK);
	assert_atom(&cmd.args[0], "[Gmail]/Sent");
	/* an unmatched '[' is an ordinary atom character */
	assert_int_equal(parse("a SELECT foo[bar\r\n"), IMAP_READ_OK);
	assert_atom(&cmd.args[0], "foo[bar");
	assert_int_equal(parse("a X [ ]\r\n"), IMAP_READ_OK);
	assert_atom(&cmd.args[0], "[ ]");
	assert_int_equal(parse("a X BODY[[[[\r\n"), IMAP_READ_OK);
	assert_atom(&cmd.args[0], "BODY[[[[");
	assert_int_equal(parse("a X ]]] [[]]\r\n"), IMAP_READ_OK);
	assert_atom(&cmd.args[0], "]]]");
	assert_atom(&cmd.args[1], "[[]]");
	/* "BODY[HEADER.FIELDS (From" with no ']': the '(' opens a list
	 * that is never closed */
	assert_int_equal(parse("a FETCH 1 BODY[HEADER.FIELDS (From\r\n"),
			 IMAP_READ_BAD);
	/* a section may not hide control characters or a literal */
	assert_int_equal(parse("a FETCH 1 BODY[\x01]\r\n"), IMAP_READ_BAD);
	assert_int_equal(parse("a FETCH 1 BODY[{3}]\r\n"), IMAP_READ_BAD);
	assert_int_equal(parse("a FETCH 1 BODY[\"a\\\x01\"]\r\n"),
			 IMAP_READ_BAD);
	/* an unterminated quoted string inside: not a section */
	assert_int_equal(parse("a FETCH 1 BODY[\"]\r\n"), IMAP_READ_BAD);
}

static void test_bad_args(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"a X \"abc\r\n",		/* unterminated */
		"a X \"a\\b\"\r\n",		/* bad escape */
		"a X \"a\\\"\r\n",		/* escaped closing quote */
		"a X \"a\rb\"\r\n",		/* CR inside */
		"a X (\r\n", "a X )\r\n", "a X ((a)\r\n", "a X (a))\r\n",
		"a X (a)(b)\r\n", "a X \"a\"\"b\"\r\n", "a X a\"b\"\r\n",
		"a X \\\r\n", "a X \\ \r\n", "a X \\(\r\n", "a X \\\\Seen\r\n",
		"a X {\r\n", "a X {}\r\n", "a X {5} x\r\n", "a X {5x}\r\n",
		"a X {-1}\r\n", "a X {5}}\r\n", "a X {5++}\r\n", "a X ~{5}\r\n",
		"a X \x01\r\n", "a X \x7f\r\n", "a X caf\xc3\xa9\r\n",
		"a X a{5}\r\n", "a X \"x\"{1}\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(parse(bad[i]), IMAP_READ_BAD);
		assert_string_equal(cmd.tag, "a");
		assert_null(cmd.args);
		assert_int_equal(cmd.argc, 0);
	}
	/* NUL bytes anywhere on the line */
	assert_int_equal(parse_n("a X \"a\0b\"\r\n", 11, 0), IMAP_READ_BAD);
	assert_int_equal(parse_n("a X a\0b\r\n", 9, 0), IMAP_READ_BAD);
	assert_int_equal(parse_n("a N\0OP\r\n", 8, 0), IMAP_READ_BAD);
	assert_int_equal(parse_n("a\0 NOOP\r\n", 9, 0), IMAP_READ_BAD);
	/* a bare CR is not a line end */
	assert_int_equal(parse("a NOOP\rb NOOP\r\n"), IMAP_READ_BAD);
}

static void test_nesting(void **state)
{
	(void)state;
	struct str line = STR_INIT;
	str_append(&line, "a X ");
	for (int i = 0; i < IMAP_MAX_DEPTH; i++)
		str_append_c(&line, '(');
	str_append(&line, "x");
	for (int i = 0; i < IMAP_MAX_DEPTH; i++)
		str_append_c(&line, ')');
	str_append(&line, "\r\n");
	assert_int_equal(parse(str_c(&line)), IMAP_READ_OK);
	const struct imap_arg *a = &cmd.args[0];
	for (int i = 0; i < IMAP_MAX_DEPTH; i++) {
		assert_int_equal(a->type, IMAP_ARG_LIST);
		assert_int_equal(a->count, 1);
		a = &a->list[0];
	}
	assert_atom(a, "x");

	str_clear(&line);
	str_append(&line, "a X ");
	for (int i = 0; i <= IMAP_MAX_DEPTH; i++)
		str_append_c(&line, '(');
	for (int i = 0; i <= IMAP_MAX_DEPTH; i++)
		str_append_c(&line, ')');
	str_append(&line, "\r\n");
	assert_int_equal(parse(str_c(&line)), IMAP_READ_BAD);

	/* a bomb: as many '(' as fit on a line */
	str_clear(&line);
	str_append(&line, "a X ");
	while (line.len < IMAP_LINE_MAX - 10)
		str_append_c(&line, '(');
	str_append(&line, "\r\n");
	assert_int_equal(parse(str_c(&line)), IMAP_READ_BAD);
	str_free(&line);
}

static void test_literals(void **state)
{
	(void)state;
	assert_int_equal(parse("a LOGIN {3}\r\nfoo {5+}\r\nb\"r\n)\r\n"),
			 IMAP_READ_OK);
	assert_string_equal(cmd.name, "LOGIN");
	assert_int_equal(cmd.argc, 2);
	assert_int_equal(cmd.args[0].type, IMAP_ARG_LITERAL);
	assert_string_equal(cmd.args[0].str, "foo");
	assert_int_equal(cmd.args[1].type, IMAP_ARG_LITERAL);
	assert_int_equal(cmd.args[1].len, 5);
	assert_string_equal(cmd.args[1].str, "b\"r\n)");
	assert_int_equal(cmd.bytes, strlen("a LOGIN {3}\r\nfoo {5+}\r\n"
					   "b\"r\n)\r\n"));
	/* inside a list, empty, followed by more arguments */
	assert_int_equal(parse("a X ({0}\r\n {2}\r\n()) y\r\n"), IMAP_READ_OK);
	assert_int_equal(cmd.argc, 2);
	assert_int_equal(cmd.args[0].count, 2);
	assert_int_equal(cmd.args[0].list[0].len, 0);
	assert_string_equal(cmd.args[0].list[0].str, "");
	assert_string_equal(cmd.args[0].list[1].str, "()");
	assert_atom(&cmd.args[1], "y");
	/* 8-bit in a literal is fine, NUL is not */
	assert_int_equal(parse("a X {2}\r\n\xff\xfe\r\n"), IMAP_READ_OK);
	assert_int_equal(parse_n("a X {3}\r\na\0b\r\n", 14, 0), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	/* the literal's data must follow at once */
	assert_int_equal(parse("a X {3}\r\nab"), IMAP_READ_EOF);
	/* what follows a literal must be a separator */
	assert_int_equal(parse("a X {1}\r\nab\r\n"), IMAP_READ_BAD);
	assert_int_equal(parse("a X {1}\r\na(\r\n"), IMAP_READ_BAD);
	/* a list open across the literal must be closed */
	assert_int_equal(parse("a X ({1}\r\na\r\n"), IMAP_READ_BAD);
}

static void test_literal_bounds(void **state)
{
	(void)state;
	/* absurd sizes */
	assert_int_equal(parse("a X {999999999999999999999}\r\n"),
			 IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(parse("a X {18446744073709551616}\r\n"),
			 IMAP_READ_BAD);
	assert_int_equal(parse("a X {999999999999999999999+}\r\n"),
			 IMAP_READ_BYE);
	/* outside APPEND: IMAP_LITERAL_MAX */
	char line[128];
	snprintf(line, sizeof line, "a X {%d}\r\n", IMAP_LITERAL_MAX + 1);
	assert_int_equal(parse(line), IMAP_READ_BAD);
	snprintf(line, sizeof line, "a X {%d+}\r\n", IMAP_LITERAL_MAX + 1);
	assert_int_equal(parse(line), IMAP_READ_BYE);
	/* APPEND: the caller's limit (1000 here); TOOBIG for sync */
	assert_int_equal(parse("a APPEND INBOX {1001}\r\n"), IMAP_READ_TOOBIG);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(parse("a append INBOX (\\Seen) {1001+}\r\n"),
			 IMAP_READ_BYE);
	/* the mailbox name literal of APPEND falls under the same limit */
	assert_int_equal(parse("a APPEND {1001}\r\n"), IMAP_READ_TOOBIG);
	struct str big = STR_INIT;
	str_append(&big, "a APPEND INBOX {1000}\r\n");
	for (int i = 0; i < 1000; i++)
		str_append_c(&big, 'x');
	str_append(&big, "\r\n");
	assert_int_equal(parse_n(big.data, big.len, 1000), IMAP_READ_OK);
	assert_int_equal(cmd.args[1].len, 1000);
	/* APPEND may be bigger than IMAP_LITERAL_MAX when allowed */
	str_clear(&big);
	str_printf(&big, "a APPEND INBOX {%d}\r\n", IMAP_LITERAL_MAX + 1);
	size_t head = big.len;
	str_reserve(&big, IMAP_LITERAL_MAX + 4);
	memset(big.data + head, 'y', IMAP_LITERAL_MAX + 1);
	big.len += IMAP_LITERAL_MAX + 1;
	str_append(&big, "\r\n");
	assert_int_equal(parse_n(big.data, big.len, 10 * 1000 * 1000),
			 IMAP_READ_OK);
	assert_int_equal(cmd.args[1].len, IMAP_LITERAL_MAX + 1);
	assert_int_equal(parse_n(big.data, big.len, IMAP_LITERAL_MAX),
			 IMAP_READ_TOOBIG);
	str_free(&big);
}

/* Five literals of 250000 octets each pass IMAP_COMMAND_MAX. */
static void test_command_bound(void **state)
{
	(void)state;
	struct str big = STR_INIT;
	str_append(&big, "a X");
	for (int i = 0; i < 5; i++) {
		str_append(&big, " {250000+}\r\n");
		size_t at = big.len;
		str_reserve(&big, 250000 + 1);
		memset(big.data + at, 'z', 250000);
		big.len += 250000;
		big.data[big.len] = '\0';
	}
	str_append(&big, "\r\n");
	assert_int_equal(parse_n(big.data, big.len, 0), IMAP_READ_BYE);
	str_free(&big);
}

static void test_too_many_args(void **state)
{
	(void)state;
	/* 100002 arguments over four lines joined by empty literals */
	struct str text = STR_INIT;
	str_append(&text, "a X");
	size_t args = 0;
	for (int line = 0; line < 4; line++) {
		for (int i = 0; i < 25000; i++, args++)
			str_append(&text, " 1");
		str_append(&text, " {0+}\r\n");
		args++;
	}
	str_append(&text, " 1\r\n");
	args++;
	assert_true(args > IMAP_MAX_ARGS);
	assert_int_equal(parse_n(text.data, text.len, 0), IMAP_READ_BAD);
	/* one line fewer is fine */
	str_clear(&text);
	str_append(&text, "a X");
	for (int line = 0; line < 3; line++) {
		for (int i = 0; i < 25000; i++)
			str_append(&text, " 1");
		str_append(&text, " ({0+}\r\n)");
	}
	str_append(&text, "\r\n");
	assert_int_equal(parse_n(text.data, text.len, 0), IMAP_READ_OK);
	assert_int_equal(cmd.argc, 75003);
	assert_int_equal(cmd.args[25000].type, IMAP_ARG_LIST);
	assert_int_equal(cmd.args[25000].list[0].type, IMAP_ARG_LITERAL);
	str_free(&text);
}

static void test_overlong_buffer(void **state)
{
	(void)state;
	struct str line = STR_INIT;
	str_append(&line, "tag7 X ");
	while (line.len < IMAP_LINE_MAX + 100)
		str_append_c(&line, 'x');
	size_t base = line.len;
	str_append(&line, "\r\n");
	assert_int_equal(parse_n(line.data, line.len, 0), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "tag7");
	str_truncate(&line, base);
	str_append(&line, " {5+}\r\nhello\r\n");
	assert_int_equal(parse_n(line.data, line.len, 0), IMAP_READ_BYE);
	str_truncate(&line, base);
	str_append(&line, " {5}\r\n");
	assert_int_equal(parse_n(line.data, line.len, 0), IMAP_READ_BAD);
	/* exactly at the bound: fine */
	str_clear(&line);
	str_append(&line, "a X ");
	while (line.len < IMAP_LINE_MAX - 2)
		str_append_c(&line, 'y');
	str_append(&line, "\r\n");
	assert_int_equal(line.len, IMAP_LINE_MAX);
	assert_int_equal(parse_n(line.data, line.len, 0), IMAP_READ_OK);
	assert_int_equal(cmd.args[0].len, IMAP_LINE_MAX - 6);
	str_free(&line);
}

/* ---- over a stream: continuation requests and staying in step ---- */

static void test_stream_sync_literal(void **state)
{
	(void)state;
	struct harness h;
	start(&h, "a LOGIN {3}\r\nfoo {3}\r\nbar\r\nb NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.args[0].str, "foo");
	assert_string_equal(cmd.args[1].str, "bar");
	/* one "+" per synchronising literal */
	assert_output(&h, READY READY);
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	assert_output(&h, "");
	assert_int_equal(next(&h), IMAP_READ_EOF);
	finish(&h);
}

static void test_stream_literal_plus(void **state)
{
	(void)state;
	struct harness h;
	start(&h, "a LOGIN {3+}\r\nfoo {3+}\r\nbar\r\nb NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.args[1].str, "bar");
	assert_output(&h, "");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	finish(&h);

	/* not advertised: BAD, but the literal is read and dropped */
	start(&h, "a LOGIN {3+}\r\nfoo {3+}\r\nbar\r\nb NOOP\r\n");
	h.r.literal_plus = false;
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	assert_output(&h, "");
	finish(&h);
}

static void test_stream_refused_literals(void **state)
{
	(void)state;
	struct harness h;
	/* too big, synchronising: no "+", so the client sends nothing */
	start(&h, "a LOGIN {999999}\r\nb NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	assert_output(&h, "");
	finish(&h);

	start(&h, "a APPEND INBOX {1001}\r\nb NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_TOOBIG);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	assert_output(&h, "");
	finish(&h);

	/* too big, non-synchronising: cannot resynchronise */
	start(&h, "a X {300000+}\r\nxxxx\r\n");
	assert_int_equal(next(&h), IMAP_READ_BYE);
	finish(&h);
	start(&h, "a X {99999999999999999999999+}\r\nxxxx\r\n");
	assert_int_equal(next(&h), IMAP_READ_BYE);
	finish(&h);
}

static void test_stream_bad_then_literal(void **state)
{
	(void)state;
	struct harness h;
	/* BAD early in a line that announces LITERAL+ data: the data and
	 * the lines after it are consumed, literal after literal */
	start(&h, "a X ) {5+}\r\nhello rest {3+}\r\nabc\r\nb NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	assert_output(&h, "");
	finish(&h);

	/* a bad tag, a synchronising literal: nothing to skip */
	start(&h, "+ LOGIN {5}\r\nb NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	assert_output(&h, "");
	finish(&h);

	/* a bad tag with LITERAL+ data containing a fake command */
	start(&h, "* LOGIN {10+}\r\nc NOOP\r\nxx\r\nb NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	finish(&h);

	/* a BAD whose dropped literal is too big to skip */
	start(&h, "a X ) {300000+}\r\n");
	assert_int_equal(next(&h), IMAP_READ_BYE);
	finish(&h);

	/* "UID" alone, with a literal after a nesting error */
	start(&h, "a UID\r\nb X (((( {2+}\r\n()\r\nc NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "b");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "c");
	finish(&h);
}

static void test_stream_nul_literal(void **state)
{
	(void)state;
	struct harness h;
	static const char in1[] = "a X {3}\r\na\0b more\r\nb NOOP\r\n";
	start_n(&h, in1, sizeof in1 - 1, true);
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_output(&h, READY);
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	finish(&h);

	/* ... and a LITERAL+ after it on the continuation line */
	static const char in2[] = "a X {3}\r\na\0b {2+}\r\nxy\r\nb NOOP\r\n";
	start_n(&h, in2, sizeof in2 - 1, true);
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	assert_output(&h, READY);
	finish(&h);
}

static void test_stream_lying_literals(void **state)
{
	(void)state;
	struct harness h;
	/* announces more than it sends, then leaves */
	start(&h, "a X {10}\r\nabc");
	assert_int_equal(next(&h), IMAP_READ_EOF);
	assert_output(&h, READY);
	finish(&h);

	/* ... or stays silent: the stream's timeout ends it */
	start_n(&h, "a X {10}\r\nabc", 13, false);
	h.io.timeout = 1;
	assert_int_equal(next(&h), IMAP_READ_EOF);
	finish(&h);

	/* announces fewer: the rest is parsed as the rest of the line */
	start(&h, "a LOGIN {2}\r\nabc def\r\nb NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	assert_int_equal(cmd.argc, 0);
	assert_false(cmd.uid);
	assert_int_equal(cmd.bytes, 8);
	finish(&h);

	/* the literal swallows the next command's tag */
	start(&h, "a LOGIN x {2}\r\nxy\r\nzz NOOP\r\nb NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.args[1].str, "xy");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "zz");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	finish(&h);
}

static void test_stream_eof(void **state)
{
	(void)state;
	struct harness h;
	start(&h, "");
	assert_int_equal(next(&h), IMAP_READ_EOF);
	finish(&h);
	/* a command without its line end: the client is gone */
	start(&h, "a NOOP");
	assert_int_equal(next(&h), IMAP_READ_EOF);
	finish(&h);
	start(&h, "a LOGIN {1}\r\nx");
	assert_int_equal(next(&h), IMAP_READ_EOF);
	finish(&h);
	start(&h, "\r\n\r\na NOOP\r\n");
	assert_int_equal(next(&h), IMAP_READ_EMPTY);
	assert_int_equal(next(&h), IMAP_READ_EMPTY);
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_int_equal(next(&h), IMAP_READ_EOF);
	finish(&h);
}

static void test_stream_overlong(void **state)
{
	(void)state;
	struct str in = STR_INIT;
	str_append(&in, "t1 X ");
	while (in.len < 3 * IMAP_LINE_MAX)
		str_append(&in, "abcdefgh");
	size_t base = in.len;
	str_append(&in, "\r\nb NOOP\r\n");
	struct harness h;
	start_n(&h, in.data, in.len, true);
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "t1");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	finish(&h);

	/* ending in a refused synchronising literal: BAD, in step */
	str_truncate(&in, base);
	str_append(&in, " {5}\r\nb NOOP\r\n");
	start_n(&h, in.data, in.len, true);
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	assert_output(&h, "");
	finish(&h);

	/* ending in LITERAL+: BYE */
	str_truncate(&in, base);
	str_append(&in, " {5+}\r\nhello\r\n");
	start_n(&h, in.data, in.len, true);
	assert_int_equal(next(&h), IMAP_READ_BYE);
	finish(&h);

	/* an overlong line after a literal */
	str_clear(&in);
	str_append(&in, "a X {1+}\r\nx ");
	while (in.len < 2 * IMAP_LINE_MAX)
		str_append(&in, "abcdefgh");
	str_append(&in, "\r\nb NOOP\r\n");
	start_n(&h, in.data, in.len, true);
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	finish(&h);
	str_free(&in);
}

static void test_stream_too_many_args(void **state)
{
	(void)state;
	struct str in = STR_INIT;
	str_append(&in, "a X");
	for (int line = 0; line < 5; line++) {
		for (int i = 0; i < 25000; i++)
			str_append(&in, " 1");
		str_append(&in, " {2+}\r\n()");
	}
	str_append(&in, "\r\nb NOOP\r\n");
	struct harness h;
	start_n(&h, in.data, in.len, true);
	assert_int_equal(next(&h), IMAP_READ_BAD);
	assert_string_equal(cmd.tag, "a");
	assert_int_equal(next(&h), IMAP_READ_OK);
	assert_string_equal(cmd.tag, "b");
	finish(&h);
	str_free(&in);
}

/* The buffer and the stream give the same results. */
static void test_same_results(void **state)
{
	(void)state;
	static const char *const inputs[] = {
		"a NOOP\r\n", "\r\n", "a X (\r\n", "a X {3+}\r\nabc\r\n",
		"a X {300000+}\r\n", "a APPEND x {1001}\r\n", "a UID\r\n",
		"a X \"\\x\"\r\n", "a X {2}\r\nab\r\n",
	};
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		enum imap_read_result want = parse(inputs[i]);
		struct harness h;
		start(&h, inputs[i]);
		assert_int_equal(next(&h), want);
		finish(&h);
	}
}

/* ---- helpers, formatting, dates ---- */

static void test_arg_helpers(void **state)
{
	(void)state;
	assert_int_equal(parse("a X atom \"q\" {1}\r\nl nil (x)\r\n"),
			 IMAP_READ_OK);
	const struct imap_arg *a = cmd.args;
	assert_false(imap_arg_is_string(&a[0]));
	assert_true(imap_arg_is_string(&a[1]));
	assert_true(imap_arg_is_string(&a[2]));
	assert_false(imap_arg_is_string(&a[3]));
	assert_true(imap_arg_is_astring(&a[0]));
	assert_true(imap_arg_is_astring(&a[1]));
	assert_true(imap_arg_is_astring(&a[2]));
	assert_true(imap_arg_is_astring(&a[3]));	/* NIL is an atom */
	assert_false(imap_arg_is_astring(&a[4]));
	assert_string_equal(imap_arg_astring(&a[0]), "atom");
	assert_string_equal(imap_arg_astring(&a[2]), "l");
	assert_string_equal(imap_arg_astring(&a[3]), "nil");
	assert_null(imap_arg_astring(&a[4]));
	assert_true(imap_arg_atom_is(&a[0], "ATOM"));
	assert_false(imap_arg_atom_is(&a[0], "ato"));
	assert_false(imap_arg_atom_is(&a[1], "q"));
	assert_true(imap_arg_atom_is(&a[3], "NIL"));
	assert_false(imap_arg_atom_is(&a[4], "x"));

	uint32_t u;
	uint64_t v;
	assert_int_equal(imap_parse_u32("0", &u), 0);
	assert_int_equal(u, 0);
	assert_int_equal(imap_parse_u32("4294967295", &u), 0);
	assert_int_equal(u, 4294967295u);
	assert_int_equal(imap_parse_u32("4294967296", &u), -1);
	assert_int_equal(imap_parse_u32("", &u), -1);
	assert_int_equal(imap_parse_u32("-1", &u), -1);
	assert_int_equal(imap_parse_u32("1 ", &u), -1);
	assert_int_equal(imap_parse_u32("0x10", &u), -1);
	assert_int_equal(imap_parse_u64("9223372036854775807", &v), 0);
	assert_int_equal(v, INT64_MAX);
	assert_int_equal(imap_parse_u64("9223372036854775808", &v), -1);
	assert_int_equal(imap_parse_u64("99999999999999999999999", &v), -1);
	assert_int_equal(imap_parse_u64("42", &v), 0);
	assert_int_equal(v, 42);
}

static void test_formatting(void **state)
{
	(void)state;
	struct str out = STR_INIT;
	imap_append_string(&out, "a \"b\" \\c", 8);
	assert_string_equal(str_c(&out), "\"a \\\"b\\\" \\\\c\"");
	str_clear(&out);
	imap_append_string(&out, "", 0);
	assert_string_equal(str_c(&out), "\"\"");
	str_clear(&out);
	imap_append_string(&out, "a\r\nb", 4);
	assert_string_equal(str_c(&out), "{4}\r\na\r\nb");
	str_clear(&out);
	imap_append_string(&out, "caf\xc3\xa9", 5);
	assert_string_equal(str_c(&out), "{5}\r\ncaf\xc3\xa9");
	str_clear(&out);
	imap_append_string(&out, "a\0b", 3);
	assert_int_equal(out.len, 8);
	assert_memory_equal(out.data, "{3}\r\na\0b", 8);
	str_clear(&out);
	/* long text goes as a literal */
	char longtext[5000];
	memset(longtext, 'x', sizeof longtext);
	imap_append_string(&out, longtext, sizeof longtext);
	assert_memory_equal(out.data, "{5000}\r\nxxx", 11);
	assert_int_equal(out.len, 8 + sizeof longtext);

	str_clear(&out);
	imap_append_nstring(&out, NULL);
	str_append_c(&out, ' ');
	imap_append_nstring(&out, "NIL");
	str_append_c(&out, ' ');
	imap_append_nstring(&out, "x");
	assert_string_equal(str_c(&out), "NIL \"NIL\" \"x\"");

	str_clear(&out);
	static const char *const in[] = {
		"INBOX", "nil", "", "a b", "a]", "a%", "a*", "a\"", "a(",
		"Sent/2024", "caf\xc3\xa9", "x{1}",
	};
	for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
		imap_append_astring(&out, in[i]);
		str_append_c(&out, '|');
	}
	assert_string_equal(str_c(&out),
			    "INBOX|\"nil\"|\"\"|\"a b\"|\"a]\"|\"a%\"|\"a*\"|"
			    "\"a\\\"\"|\"a(\"|Sent/2024|{5}\r\ncaf\xc3\xa9|"
			    "\"x{1}\"|");
	str_free(&out);
}

static void test_dates(void **state)
{
	(void)state;
	int64_t t;
	assert_int_equal(imap_parse_date("1-Feb-1994", &t), 0);
	assert_int_equal(t, 760060800);
	assert_int_equal(imap_parse_date("01-feb-1994", &t), 0);
	assert_int_equal(t, 760060800);
	assert_int_equal(imap_parse_date("29-FEB-2024", &t), 0);
	assert_int_equal(t, 1709164800);
	assert_int_equal(imap_parse_date("1-Jan-1970", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(imap_parse_date("1-Jan-1000", &t), 0);
	assert_int_equal(t, -30610224000LL);
	assert_int_equal(imap_parse_date("31-Dec-9999", &t), 0);
	assert_int_equal(t, 253402214400LL);
	static const char *const bad_dates[] = {
		"", "0-Feb-1994", "32-Jan-1994", "30-Feb-2024", "29-Feb-2023",
		"31-Apr-2024", "1-Feb-999", "1-Feb-0999", "1-Feb-19944",
		"1-Foo-1994", "1-Fe-1994", "1 Feb 1994", "1-Feb-1994 ",
		" 1-Feb-1994", "001-Feb-1994", "1-Feb-94", "\"1-Feb-1994\"",
		"1-Feb-1994 00:00:00 +0000", "a-Feb-1994", "1-February-1994",
	};
	for (size_t i = 0; i < sizeof bad_dates / sizeof bad_dates[0]; i++)
		assert_int_equal(imap_parse_date(bad_dates[i], &t), -1);

	assert_int_equal(imap_parse_datetime("17-Jul-1996 02:44:25 -0700",
					     &t), 0);
	assert_int_equal(t, 837596665);
	assert_int_equal(imap_parse_datetime(" 1-Jan-1970 00:00:00 +0000",
					     &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(imap_parse_datetime("01-Jan-1970 01:00:00 +0100",
					     &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(imap_parse_datetime("05-Nov-2026 23:59:60 +0530",
					     &t), 0);
	assert_int_equal(t, 1793903400);
	/* found by fuzz_imap_datetime: the zone must not carry the instant
	 * out of 1000-9999 in UTC; and formatting keeps four digits */
	assert_int_equal(imap_parse_datetime("31-Dec-9999 23:59:59 -2359",
					     &t), -1);
	assert_int_equal(imap_parse_datetime("01-Jan-1000 00:00:00 +0001",
					     &t), -1);
	struct str y = STR_INIT;
	imap_format_datetime(400000000000LL, &y);
	assert_string_equal(str_c(&y), "\"31-Dec-9999 23:59:59 +0000\"");
	str_free(&y);
	static const char *const bad[] = {
		"", "1-Jan-1970 00:00:00 +0000", "17-Jul-1996 02:44:25",
		"17-Jul-1996 02:44:25 0700", "17-Jul-1996 2:44:25 -0700",
		"17-Jul-1996 24:00:00 -0700", "17-Jul-1996 02:60:00 -0700",
		"17-Jul-1996 02:44:61 -0700", "17-Jul-1996 02:44:25 -0760",
		"17-Jul-1996 02:44:25 -07000", "17-Jul-1996 02:44:25  -0700",
		"00-Jul-1996 02:44:25 -0700", "32-Jul-1996 02:44:25 -0700",
		"17-Jul-996 02:44:25 -0700", "17-Jux-1996 02:44:25 -0700",
		"17-Jul-1996T02:44:25 -0700", "  1-Jan-1970 00:00:00 +0000",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(imap_parse_datetime(bad[i], &t), -1);
}

static void test_format_datetime(void **state)
{
	(void)state;
	char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
	struct str out = STR_INIT;
	setenv("TZ", "UTC0", 1);
	tzset();
	imap_format_datetime(0, &out);
	assert_string_equal(str_c(&out), "\"01-Jan-1970 00:00:00 +0000\"");
	str_clear(&out);
	imap_format_datetime(1795774927, &out);
	assert_string_equal(str_c(&out), "\"27-Nov-2026 10:22:07 +0000\"");
	/* POSIX zones: east is "-" in TZ, "+" in IMAP */
	setenv("TZ", "XYZ-5:30", 1);
	tzset();
	str_clear(&out);
	imap_format_datetime(0, &out);
	assert_string_equal(str_c(&out), "\"01-Jan-1970 05:30:00 +0530\"");
	setenv("TZ", "ABC7", 1);
	tzset();
	str_clear(&out);
	imap_format_datetime(837596665, &out);
	assert_string_equal(str_c(&out), "\"17-Jul-1996 02:44:25 -0700\"");
	/* and it parses back */
	int64_t t;
	str_truncate(&out, out.len - 1);
	assert_int_equal(imap_parse_datetime(str_c(&out) + 1, &t), 0);
	assert_int_equal(t, 837596665);
	if (old != NULL)
		setenv("TZ", old, 1);
	else
		unsetenv("TZ");
	tzset();
	free(old);
	str_free(&out);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_simple, teardown),
		cmocka_unit_test_teardown(test_empty, teardown),
		cmocka_unit_test_teardown(test_bad_tags, teardown),
		cmocka_unit_test_teardown(test_bad_names, teardown),
		cmocka_unit_test_teardown(test_uid, teardown),
		cmocka_unit_test_teardown(test_arg_types, teardown),
		cmocka_unit_test_teardown(test_sections, teardown),
		cmocka_unit_test_teardown(test_bad_args, teardown),
		cmocka_unit_test_teardown(test_nesting, teardown),
		cmocka_unit_test_teardown(test_literals, teardown),
		cmocka_unit_test_teardown(test_literal_bounds, teardown),
		cmocka_unit_test_teardown(test_command_bound, teardown),
		cmocka_unit_test_teardown(test_too_many_args, teardown),
		cmocka_unit_test_teardown(test_overlong_buffer, teardown),
		cmocka_unit_test_teardown(test_stream_sync_literal, teardown),
		cmocka_unit_test_teardown(test_stream_literal_plus, teardown),
		cmocka_unit_test_teardown(test_stream_refused_literals,
					  teardown),
		cmocka_unit_test_teardown(test_stream_bad_then_literal,
					  teardown),
		cmocka_unit_test_teardown(test_stream_nul_literal, teardown),
		cmocka_unit_test_teardown(test_stream_lying_literals, teardown),
		cmocka_unit_test_teardown(test_stream_eof, teardown),
		cmocka_unit_test_teardown(test_stream_overlong, teardown),
		cmocka_unit_test_teardown(test_stream_too_many_args, teardown),
		cmocka_unit_test_teardown(test_same_results, teardown),
		cmocka_unit_test_teardown(test_arg_helpers, teardown),
		cmocka_unit_test_teardown(test_formatting, teardown),
		cmocka_unit_test_teardown(test_dates, teardown),
		cmocka_unit_test_teardown(test_format_datetime, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
