/*
 * test_runner_client: unit tests for the queue runner's SMTP client
 * pieces that need no network (queue-runner/smtpc_proto.c): reply lines
 * and whole (multi-line, overlong, malformed) replies read through a
 * stream from a pipe, enhanced status codes, the EHLO extension list and
 * the dot-stuffing CRLF writer; from runner_msg.c the retry schedule,
 * when a message is due and where the spool's Return-Path line ends; from
 * runner_remote.c the relayhost syntax and the relayhost_auth_file checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../queue-runner/runner.h"

/* ---- reply lines ---- */

static void test_reply_line(void **state)
{
	(void)state;
	int code;
	bool more;
	const char *text;
	size_t tl;
	assert_int_equal(smtpc_reply_line("250 ok\r\n", 8, &code, &more, &text,
					  &tl), 0);
	assert_int_equal(code, 250);
	assert_false(more);
	assert_int_equal(tl, 2);
	assert_memory_equal(text, "ok", 2);
	assert_int_equal(smtpc_reply_line("250-PIPELINING\r\n", 16, &code,
					  &more, &text, &tl), 0);
	assert_true(more);
	assert_int_equal(tl, 10);
	/* A bare code is a whole reply; LF alone is tolerated. */
	assert_int_equal(smtpc_reply_line("354\n", 4, &code, &more, &text, &tl),
			 0);
	assert_int_equal(code, 354);
	assert_false(more);
	assert_int_equal(tl, 0);
	static const char *const bad[] = {
		"", "25", "25x ok", "650 no", "160 no", "2a0 x", "250:x",
		"250x", "HTTP/1.1 400", "  250 x",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(smtpc_reply_line(bad[i], strlen(bad[i]), &code,
						  &more, &text, &tl),
				 SMTPC_PROTO);
}

/* A stream reading what was written into a pipe (then closed). */
struct feed {
	int fds[2];
	struct stream io;
};

static void feed_open(struct feed *f, const char *data, size_t len)
{
	assert_int_equal(pipe(f->fds), 0);
	/* The pipe holds 64 KiB: enough for every test here. */
	assert_int_equal(write(f->fds[1], data, len), (ssize_t)len);
	close(f->fds[1]);
	int null = open("/dev/null", O_WRONLY);
	stream_init(&f->io, f->fds[0], null, 2, SMTPC_LINE_MAX + 2);
}

static void feed_close(struct feed *f)
{
	close(f->io.out_fd);
	close(f->fds[0]);
	stream_free(&f->io);
}

static void test_reply_read_multiline(void **state)
{
	(void)state;
	static const char in[] =
		"250-mx.example.org greets you\r\n"
		"250-PIPELINING\r\n"
		"250-SIZE 10240000\r\n"
		"250-8BITMIME\r\n"
		"250-ENHANCEDSTATUSCODES\r\n"
		"250-STARTTLS\r\n"
		"250-AUTH LOGIN PLAIN\r\n"
		"250 SMTPUTF8\r\n"
		"550-5.1.1 The email account that you tried to reach does\r\n"
		"550-5.1.1 not exist.\r\n"
		"550 5.1.1 Try again.\r\n"
		"220\r\n";
	struct feed f;
	struct smtpc_reply r = { 0 };
	struct smtpc_caps caps;
	char st[DSN_STATUS_MAX];
	feed_open(&f, in, sizeof in - 1);

	assert_int_equal(smtpc_reply_read(&f.io, &r), 0);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.lines.n, 8);
	assert_string_equal(r.lines.items[0], "mx.example.org greets you");
	assert_string_equal(r.enh, "");
	smtpc_caps_parse(&r, &caps);
	assert_true(caps.pipelining);
	assert_true(caps.size);
	assert_int_equal(caps.size_max, 10240000);
	assert_true(caps.eightbitmime);
	assert_true(caps.enhanced);
	assert_true(caps.starttls);
	assert_true(caps.auth_plain);
	assert_true(caps.smtputf8);

	assert_int_equal(smtpc_reply_read(&f.io, &r), 0);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.enh, "5.1.1");
	assert_string_equal(str_c(&r.text),
		"550 5.1.1 The email account that you tried to reach does "
		"5.1.1 not exist. 5.1.1 Try again.");
	smtpc_reply_status(&r, st);
	assert_string_equal(st, "5.1.1");

	assert_int_equal(smtpc_reply_read(&f.io, &r), 0);
	assert_int_equal(r.code, 220);
	assert_string_equal(str_c(&r.text), "220");
	smtpc_reply_status(&r, st);
	assert_string_equal(st, "2.0.0");

	assert_int_equal(smtpc_reply_read(&f.io, &r), STREAM_EOF);
	smtpc_reply_free(&r);
	feed_close(&f);
}

static void test_reply_enhanced(void **state)
{
	(void)state;
	static const char in[] =
		"451 4.7.1 Greylisted\r\n"
		"550 4.1.1 class does not match\r\n"	/* not the reply's */
		"550 5.1.10 null MX\r\n"
		"552 5.3.4x no space after\r\n"
		"421 mx.example.org closing\r\n"
		"250 2.0.0\r\n";
	struct feed f;
	struct smtpc_reply r = { 0 };
	char st[DSN_STATUS_MAX];
	feed_open(&f, in, sizeof in - 1);
	static const char *const want[][2] = {
		{ "4.7.1", "4.7.1" }, { "", "5.0.0" }, { "5.1.10", "5.1.10" },
		{ "", "5.0.0" }, { "", "4.0.0" }, { "2.0.0", "2.0.0" },
	};
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(smtpc_reply_read(&f.io, &r), 0);
		assert_string_equal(r.enh, want[i][0]);
		smtpc_reply_status(&r, st);
		assert_string_equal(st, want[i][1]);
	}
	smtpc_reply_free(&r);
	feed_close(&f);
}

static void test_reply_garbage(void **state)
{
	(void)state;
	struct smtpc_reply r = { 0 };
	struct feed f;
	static const char *const bad[] = {
		"SSH-2.0-OpenSSH_9.2\r\n",
		"250-first line then garbage\r\nxyz\r\n",
		"250-ok\r\n354 another code? fine\r\n*\r\n",
	};
	feed_open(&f, bad[0], strlen(bad[0]));
	assert_int_equal(smtpc_reply_read(&f.io, &r), SMTPC_PROTO);
	feed_close(&f);
	feed_open(&f, bad[1], strlen(bad[1]));
	assert_int_equal(smtpc_reply_read(&f.io, &r), SMTPC_PROTO);
	feed_close(&f);
	/* Lines with different codes: the last one's counts. */
	feed_open(&f, bad[2], strlen(bad[2]));
	assert_int_equal(smtpc_reply_read(&f.io, &r), 0);
	assert_int_equal(r.code, 354);
	assert_int_equal(smtpc_reply_read(&f.io, &r), SMTPC_PROTO);
	feed_close(&f);

	/* A reply cut off in its middle (no final line). */
	static const char cut[] = "250-one\r\n250-two\r\n";
	feed_open(&f, cut, sizeof cut - 1);
	assert_int_equal(smtpc_reply_read(&f.io, &r), STREAM_EOF);
	feed_close(&f);
	/* A last line without its line end. */
	static const char nonl[] = "250 ok";
	feed_open(&f, nonl, sizeof nonl - 1);
	assert_int_equal(smtpc_reply_read(&f.io, &r), STREAM_EOF);
	feed_close(&f);
	/* Control characters never reach the text. */
	static const char ctl[] = "550 5.7.1 a\tb\x01" "c\x7f\r\n";
	feed_open(&f, ctl, sizeof ctl - 1);
	assert_int_equal(smtpc_reply_read(&f.io, &r), 0);
	assert_string_equal(str_c(&r.text), "550 5.7.1 a b c ");
	feed_close(&f);
	smtpc_reply_free(&r);
}

/* Lines longer than SMTPC_LINE_MAX are cut, the rest skipped; too many
 * lines end the reply as an error; the kept text is bounded. */
static void test_reply_bounds(void **state)
{
	(void)state;
	struct smtpc_reply r = { 0 };
	struct feed f;
	struct str in = STR_INIT;
	str_append(&in, "250-");
	for (int i = 0; i < 3 * SMTPC_LINE_MAX; i++)
		str_append_c(&in, 'x');
	str_append(&in, "\r\n250 SIZE 1000\r\n");
	feed_open(&f, in.data, in.len);
	assert_int_equal(smtpc_reply_read(&f.io, &r), 0);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.lines.n, 2);
	assert_int_equal(strlen(r.lines.items[0]), SMTPC_LINE_MAX - 4);
	assert_string_equal(r.lines.items[1], "SIZE 1000");
	assert_true(r.text.len <= SMTPC_TEXT_MAX);
	feed_close(&f);

	str_clear(&in);
	for (int i = 0; i < SMTPC_REPLY_LINES_MAX + 5; i++)
		str_append(&in, "250-more\r\n");
	str_append(&in, "250 end\r\n");
	feed_open(&f, in.data, in.len);
	assert_int_equal(smtpc_reply_read(&f.io, &r), SMTPC_PROTO);
	feed_close(&f);
	str_free(&in);
	smtpc_reply_free(&r);
}

static void test_caps(void **state)
{
	(void)state;
	struct smtpc_reply r = { 0 };
	struct smtpc_caps c;
	static const char *const lines[] = {
		"greeting", "pipelining", "AUTH=LOGIN PLAIN", "SIZE",
		"8BITMIMEX", "STARTTLSX", "XPIPELINING",
	};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
		strlist_add(&r.lines, lines[i]);
	smtpc_caps_parse(&r, &c);
	assert_true(c.pipelining);	/* keywords are case-insensitive */
	assert_true(c.auth_plain);	/* the old AUTH= form */
	assert_true(c.size);
	assert_int_equal(c.size_max, 0);	/* no number: no limit */
	assert_false(c.eightbitmime);
	assert_false(c.starttls);
	assert_false(c.smtputf8);

	strlist_clear(&r.lines);
	strlist_add(&r.lines, "greeting");
	strlist_add(&r.lines, "AUTH LOGIN CRAM-MD5 PLAINX");
	strlist_add(&r.lines, "SIZE abc");
	smtpc_caps_parse(&r, &c);
	assert_false(c.auth_plain);
	assert_int_equal(c.size_max, 0);
	/* The first line (the server's name) is no extension. */
	strlist_clear(&r.lines);
	strlist_add(&r.lines, "PIPELINING");
	smtpc_caps_parse(&r, &c);
	assert_false(c.pipelining);
	smtpc_reply_free(&r);
}

/* ---- dot-stuffing ---- */

/* Feed in as pieces of `chunk` bytes, return the DATA text. */
static void stuff(const char *in, size_t chunk, struct str *out)
{
	struct dotstuff d;
	size_t len = strlen(in);
	dotstuff_init(&d);
	str_clear(out);
	for (size_t i = 0; i < len; i += chunk)
		dotstuff_feed(&d, in + i, len - i < chunk ? len - i : chunk,
			      out);
	dotstuff_end(&d, out);
}

static void test_dotstuff(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{ "a\nb\n", "a\r\nb\r\n.\r\n" },
		{ ".\n", "..\r\n.\r\n" },
		{ ".a\n..b\nc.d\n.", "..a\r\n...b\r\nc.d\r\n..\r\n.\r\n" },
		{ "no newline", "no newline\r\n.\r\n" },
		{ "", ".\r\n" },
		{ "\n.\n\n", "\r\n..\r\n\r\n.\r\n" },
		/* CRLF already there: not doubled. */
		{ "a\r\n.b\r\n", "a\r\n..b\r\n.\r\n" },
		/* A lone CR ends a line as well (never sent bare: SMTP
		 * smuggling), and the dot after it is stuffed. */
		{ "a\rb\n\r.x\n", "a\r\nb\r\n\r\n..x\r\n.\r\n" },
		{ "x\r.\r\nrest\n", "x\r\n..\r\nrest\r\n.\r\n" },
		{ "end\r", "end\r\n.\r\n" },
		{ "\r\r\n", "\r\n\r\n.\r\n" },
	};
	struct str out = STR_INIT;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t chunk = 1; chunk <= 8; chunk++) {
			stuff(cases[i][0], chunk, &out);
			assert_string_equal(str_c(&out), cases[i][1]);
		}
		stuff(cases[i][0], 4096, &out);
		assert_string_equal(str_c(&out), cases[i][1]);
	}
	str_free(&out);
}

/* ---- retry schedule and due times ---- */

static void test_backoff(void **state)
{
	(void)state;
	assert_int_equal(runner_backoff(0), 15 * 60);
	assert_int_equal(runner_backoff(1), 15 * 60);
	assert_int_equal(runner_backoff(2), 30 * 60);
	assert_int_equal(runner_backoff(3), 60 * 60);
	assert_int_equal(runner_backoff(4), 2 * 60 * 60);
	assert_int_equal(runner_backoff(5), 4 * 60 * 60);
	assert_int_equal(runner_backoff(6), 4 * 60 * 60);
	assert_int_equal(runner_backoff(1000), 4 * 60 * 60);
}

static void test_due(void **state)
{
	(void)state;
	struct config cfg;
	config_defaults(&cfg);
	struct queue_rcpt rc[2];
	memset(rc, 0, sizeof rc);
	struct queue_envelope env = {
		.sender = (char *)"a@b.example", .arrival = 1000000,
		.rcpts = rc, .n_rcpts = 2,
	};
	rc[0].address = (char *)"x@y.example";
	rc[1].address = (char *)"z@y.example";
	rc[0].state = RCPT_PENDING;
	rc[0].next_try = 1000000 + 900;
	rc[1].state = RCPT_DELIVERED;
	assert_int_equal(runner_due(&cfg, &env), 1000000 + 900);
	/* The delay warning comes before a far retry. */
	rc[0].next_try = 1000000 + 5 * 3600;
	assert_int_equal(runner_due(&cfg, &env), 1000000 + 4 * 3600);
	env.delay_warned = true;
	assert_int_equal(runner_due(&cfg, &env), 1000000 + 5 * 3600);
	/* ... and expiry before a retry past it. */
	rc[0].next_try = 1000000 + 6 * 86400;
	assert_int_equal(runner_due(&cfg, &env), 1000000 + 5 * 86400);
	/* No warning for mail from <>. */
	env.delay_warned = false;
	env.sender = (char *)"";
	rc[0].next_try = 1000000 + 5 * 3600;
	assert_int_equal(runner_due(&cfg, &env), 1000000 + 5 * 3600);
	/* A failure not reported yet: due now. */
	rc[1].state = RCPT_FAILED;
	assert_int_equal(runner_due(&cfg, &env), 0);
	rc[1].dsn_sent = true;
	assert_int_equal(runner_due(&cfg, &env), 1000000 + 5 * 3600);
	/* Nothing pending: only the removal is left, now. */
	rc[0].state = RCPT_DELIVERED;
	assert_int_equal(runner_due(&cfg, &env), 0);
	config_free(&cfg);
}

/* The spool's Return-Path line, which a relay leaves out. */
static void test_spool_body(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{ "Return-Path: <a@b.example>\nReceived: x\n\nbody\n", "27" },
		{ "return-path: <>\nSubject: x\n", "16" },
		{ "Received: x\nReturn-Path: <a@b>\n\n", "0" },
		{ "Return-Path: <no line end>", "0" },
		{ "", "0" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char path[] = "/tmp/test_runner_spool.XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		unlink(path);
		size_t len = strlen(cases[i][0]);
		assert_int_equal(write(fd, cases[i][0], len), (ssize_t)len);
		assert_int_equal(runner_spool_body(fd), atoi(cases[i][1]));
		close(fd);
	}
}

/* ---- relayhost ---- */

static void test_relay_parse(void **state)
{
	(void)state;
	struct relay_dest d;
	assert_int_equal(relay_parse("[smtp.example.net]:587", 25, &d), 0);
	assert_string_equal(d.host, "smtp.example.net");
	assert_int_equal(d.port, 587);
	assert_false(d.mx_lookup);
	assert_int_equal(relay_parse("[smtp.example.net]", 25, &d), 0);
	assert_int_equal(d.port, 25);
	assert_false(d.mx_lookup);
	assert_int_equal(relay_parse("example.net:2525", 25, &d), 0);
	assert_string_equal(d.host, "example.net");
	assert_int_equal(d.port, 2525);
	assert_true(d.mx_lookup);
	assert_int_equal(relay_parse("example.net", 26, &d), 0);
	assert_int_equal(d.port, 26);
	assert_true(d.mx_lookup);
	assert_int_equal(relay_parse("192.0.2.1:25", 25, &d), 0);
	assert_false(d.mx_lookup);
	assert_int_equal(relay_parse("[IPv6:2001:db8::1]:25", 25, &d), 0);
	assert_string_equal(d.host, "2001:db8::1");
	assert_int_equal(relay_parse("[::1]:2525", 25, &d), 0);
	assert_string_equal(d.host, "::1");
	assert_int_equal(d.port, 2525);
	static const char *const bad[] = {
		"[host", "[host]x", "[host]:", "host:0", "host:65536",
		"host:25x", "[]:25", ":25", "2001:db8::1", "",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(relay_parse(bad[i], 25, &d), -1);
}

static void test_relay_auth(void **state)
{
	(void)state;
	char path[] = "/tmp/test_runner_auth.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	struct str user = STR_INIT, pass = STR_INIT, err = STR_INIT;

	static const char *const good[][3] = {
		{ "me@example.net  pass word\n", "me@example.net", "pass word" },
		{ "me:secret\r\nsecond line\n", "me", "secret" },
		{ "me\tx:y", "me", "x:y" },
		{ "me:pass word\n", "me", "pass word" },
	};
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(ftruncate(fd, 0), 0);
		assert_int_equal(pwrite(fd, good[i][0], strlen(good[i][0]), 0),
				 (ssize_t)strlen(good[i][0]));
		str_clear(&user);
		str_clear(&pass);
		assert_int_equal(relay_auth_load(path, &user, &pass, &err), 0);
		assert_string_equal(str_c(&user), good[i][1]);
		assert_string_equal(str_c(&pass), good[i][2]);
	}
	static const char *const bad[] = { "justone\n", ":nouser\n", "user:\n",
					   "\n" };
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(ftruncate(fd, 0), 0);
		assert_int_equal(pwrite(fd, bad[i], strlen(bad[i]), 0),
				 (ssize_t)strlen(bad[i]));
		assert_int_equal(relay_auth_load(path, &user, &pass, &err), -1);
	}
	/* Readable by others: refused, whatever it holds. */
	assert_int_equal(pwrite(fd, "u p\n", 4, 0), 4);
	assert_int_equal(fchmod(fd, 0640), 0);
	str_clear(&err);
	assert_int_equal(relay_auth_load(path, &user, &pass, &err), -1);
	assert_non_null(strstr(str_c(&err), "mode 640"));
	assert_int_equal(fchmod(fd, 0604), 0);
	assert_int_equal(relay_auth_load(path, &user, &pass, &err), -1);
	assert_int_equal(fchmod(fd, 0400), 0);
	assert_int_equal(relay_auth_load(path, &user, &pass, &err), 0);
	close(fd);
	unlink(path);
	assert_int_equal(relay_auth_load(path, &user, &pass, &err), -1);
	str_free(&user);
	str_free(&pass);
	str_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_line),
		cmocka_unit_test(test_reply_read_multiline),
		cmocka_unit_test(test_reply_enhanced),
		cmocka_unit_test(test_reply_garbage),
		cmocka_unit_test(test_reply_bounds),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_dotstuff),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_due),
		cmocka_unit_test(test_spool_body),
		cmocka_unit_test(test_relay_parse),
		cmocka_unit_test(test_relay_auth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
