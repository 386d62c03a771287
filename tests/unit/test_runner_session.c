/*
 * test_runner_session: the queue runner's SMTP client (queue-runner/
 * smtpc.c) against a scripted server on a loopback port, forked by the
 * test: PIPELINING sends MAIL, every RCPT and DATA before reading a reply
 * (the script would deadlock otherwise), per-recipient 2xx/4xx/5xx, the
 * dot-stuffed CRLF message without the spool's Return-Path line, HELO
 * after a refused EHLO, 421 and a broken greeting leaving recipients
 * undecided, and the limits the server announces (8BITMIME, SIZE)
 * deciding before MAIL is sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../queue-runner/runner.h"

/* One step: read a line that must start with expect (NULL: read
 * nothing), then write reply (NULL: nothing).  expect "<DATA>" reads the
 * message up to "." and checks it against reply's... see server_run. */
struct step {
	const char *expect;
	const char *reply;
};

#define DATA_STEP "<DATA>"

static const char *expected_data;	/* what <DATA> must receive */

/* Read one CRLF line from fd (byte by byte: tests are small). */
static int read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;
	while (n + 1 < size) {
		if (read(fd, buf + n, 1) != 1)
			return -1;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return (int)n;
}

static int server_data(int fd)
{
	char line[2048];
	struct str got = STR_INIT;
	for (;;) {
		if (read_line(fd, line, sizeof line) < 0)
			return -1;
		str_append(&got, line);
		if (strcmp(line, ".\r\n") == 0)
			break;
	}
	int ok = strcmp(str_c(&got), expected_data) == 0 ? 0 : -1;
	if (ok != 0)
		fprintf(stderr, "server got DATA:\n%s\n", str_c(&got));
	str_free(&got);
	return ok;
}

/* The child: accept one connection and play the script. */
static int server_run(int lfd, const struct step *script)
{
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return 2;
	for (const struct step *s = script; s->expect || s->reply; s++) {
		char line[2048];
		if (s->expect != NULL && strcmp(s->expect, DATA_STEP) == 0) {
			if (server_data(fd) < 0)
				return 3;
		} else if (s->expect != NULL) {
			if (read_line(fd, line, sizeof line) < 0) {
				fprintf(stderr, "server: EOF, wanted %s\n",
					s->expect);
				return 4;
			}
			if (strncmp(line, s->expect, strlen(s->expect)) != 0) {
				fprintf(stderr, "server: got %s wanted %s\n",
					line, s->expect);
				return 5;
			}
		}
		if (s->reply != NULL &&
		    write(fd, s->reply, strlen(s->reply)) < 0)
			return 6;
	}
	close(fd);
	return 0;
}

struct fixture {
	struct config cfg;
	struct runner r;
	struct runner_msg m;
	struct queue_rcpt rcpts[3];
	int lfd;
	unsigned port;
	pid_t server;
	struct dns_addr addr;
};

static void fixture_server(struct fixture *f, const struct step *script)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(f->lfd, 1), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	f->server = fork();
	assert_true(f->server >= 0);
	if (f->server == 0) {
		alarm(10);	/* a client that never comes */
		_exit(server_run(f->lfd, script));
	}
	close(f->lfd);
}

static void fixture_init(struct fixture *f, const char *message,
			 const char *const *rcpts, size_t n)
{
	memset(f, 0, sizeof *f);
	config_defaults(&f->cfg);
	free(f->cfg.hostname);
	f->cfg.hostname = xstrdup("client.example");
	f->cfg.smtp_timeout = 2;
	f->r.cfg = &f->cfg;
	f->m.r = &f->r;
	strcpy(f->m.env.id, "TEST1");
	f->m.env.sender = (char *)"s@client.example";
	f->m.env.rcpts = f->rcpts;
	f->m.env.n_rcpts = n;
	for (size_t i = 0; i < n; i++)
		f->rcpts[i].address = (char *)rcpts[i];
	char path[] = "/tmp/test_runner_session.XXXXXX";
	f->m.fd = mkstemp(path);
	assert_true(f->m.fd >= 0);
	unlink(path);
	size_t len = strlen(message), lf = 0;
	assert_int_equal(write(f->m.fd, message, len), (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		lf += message[i] == '\n';
	f->m.env.size = len;
	f->m.body_off = runner_spool_body(f->m.fd);
	f->m.crlf_size = len + lf;
	f->addr.family = AF_INET;
	f->addr.u.v4.s_addr = htonl(INADDR_LOOPBACK);
}

/* Run one session; returns the outcome, attempts in att[0..n). */
static enum smtpc_outcome fixture_deliver(struct fixture *f,
					  struct attempt *att, struct str *err,
					  char status[DSN_STATUS_MAX])
{
	struct smtpc_target t = {
		.host = "mx.test", .addr = &f->addr, .port = f->port,
		.try_tls = true,
	};
	for (size_t i = 0; i < f->m.env.n_rcpts; i++) {
		memset(&att[i], 0, sizeof att[i]);
		att[i].index = i;
		att[i].address = f->rcpts[i].address;
	}
	return smtpc_deliver(&f->m, &t, att, f->m.env.n_rcpts, err, status);
}

static void fixture_done(struct fixture *f, struct attempt *att)
{
	int st;
	assert_int_equal(waitpid(f->server, &st, 0), f->server);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	for (size_t i = 0; i < f->m.env.n_rcpts; i++)
		attempt_free(&att[i]);
	close(f->m.fd);
	config_free(&f->cfg);
}

static const char message[] = "Subject: hi\n\n.dot\nline\n..\n";
static const char message_wire[] = "Subject: hi\r\n\r\n..dot\r\nline\r\n"
				   "...\r\n.\r\n";

static void test_pipelining(void **state)
{
	(void)state;
	static const struct step script[] = {
		{ NULL, "220 mx.test ESMTP\r\n" },
		{ "EHLO client.example\r\n",
		  "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n"
		  "250 8BITMIME\r\n" },
		/* All of the envelope before any reply. */
		{ "MAIL FROM:<s@client.example> SIZE=31\r\n", NULL },
		{ "RCPT TO:<ok@mx.test>\r\n", NULL },
		{ "RCPT TO:<bad@mx.test>\r\n", NULL },
		{ "RCPT TO:<later@mx.test>\r\n", NULL },
		{ "DATA\r\n", "250 2.1.0 ok\r\n250 2.1.5 ok\r\n"
			      "550 5.1.1 <bad@mx.test>: no such user\r\n"
			      "451 4.3.0 try later\r\n354 go on\r\n" },
		{ DATA_STEP, "250 2.0.0 queued as X\r\n" },
		{ "QUIT\r\n", "221 2.0.0 bye\r\n" },
		{ NULL, NULL },
	};
	static const char *const rcpts[] = {
		"ok@mx.test", "bad@mx.test", "later@mx.test",
	};
	struct fixture f;
	struct attempt att[3];
	struct str err = STR_INIT;
	char status[DSN_STATUS_MAX] = "";
	fixture_init(&f, message, rcpts, 3);
	expected_data = message_wire;
	fixture_server(&f, script);
	assert_int_equal(fixture_deliver(&f, att, &err, status), SMTPC_DONE);
	assert_int_equal(att[0].result, ATTEMPT_OK);
	assert_string_equal(att[0].status, "2.0.0");
	assert_string_equal(str_c(&att[0].text), "mx.test[127.0.0.1] said: "
			    "250 2.0.0 queued as X (in reply to end of DATA "
			    "command)");
	assert_int_equal(att[1].result, ATTEMPT_PERM);
	assert_string_equal(att[1].status, "5.1.1");
	assert_string_equal(str_c(&att[1].text), "mx.test[127.0.0.1] said: "
			    "550 5.1.1 <bad@mx.test>: no such user (in reply "
			    "to RCPT TO command)");
	assert_int_equal(att[2].result, ATTEMPT_TEMP);
	assert_string_equal(att[2].status, "4.3.0");
	fixture_done(&f, att);
	str_free(&err);
}

/* The spool's first line, the Return-Path, is for final delivery only:
 * never relayed, and not counted in SIZE. */
static void test_return_path_not_relayed(void **state)
{
	(void)state;
	static const struct step script[] = {
		{ NULL, "220 mx.test\r\n" },
		{ "EHLO client.example\r\n", "250-mx.test\r\n250 SIZE\r\n" },
		{ "MAIL FROM:<s@client.example> SIZE=31\r\n", "250 ok\r\n" },
		{ "RCPT TO:<a@mx.test>\r\n", "250 ok\r\n" },
		{ "DATA\r\n", "354 go\r\n" },
		{ DATA_STEP, "250 ok\r\n" },
		{ "QUIT\r\n", "221 bye\r\n" },
		{ NULL, NULL },
	};
	static const char *const rcpts[] = { "a@mx.test" };
	struct fixture f;
	struct attempt att[1];
	struct str err = STR_INIT, spool = STR_INIT;
	char status[DSN_STATUS_MAX] = "";
	str_append(&spool, "Return-Path: <s@client.example>\n");
	str_append(&spool, message);
	fixture_init(&f, str_c(&spool), rcpts, 1);
	assert_int_equal(f.m.body_off, 32);
	f.m.crlf_size = 31;	/* as runner_msg.c counts it */
	expected_data = message_wire;
	fixture_server(&f, script);
	assert_int_equal(fixture_deliver(&f, att, &err, status), SMTPC_DONE);
	assert_int_equal(att[0].result, ATTEMPT_OK);
	fixture_done(&f, att);
	str_free(&err);
	str_free(&spool);
}

/* No PIPELINING: one command, one reply; EHLO refused, HELO used; an
 * 8-bit message needs BODY=8BITMIME, which HELO cannot give: 5.6.3 before
 * MAIL is sent. */
static void test_helo_8bit(void **state)
{
	(void)state;
	static const struct step script[] = {
		{ NULL, "220 mx.test\r\n" },
		{ "EHLO client.example\r\n", "502 5.5.1 what?\r\n" },
		{ "HELO client.example\r\n", "250 mx.test\r\n" },
		{ "QUIT\r\n", "221 bye\r\n" },
		{ NULL, NULL },
	};
	static const char *const rcpts[] = { "a@mx.test" };
	struct fixture f;
	struct attempt att[1];
	struct str err = STR_INIT;
	char status[DSN_STATUS_MAX] = "";
	fixture_init(&f, "Subject: \xc3\xa4\n\nx\n", rcpts, 1);
	f.m.env.body_8bit = true;
	fixture_server(&f, script);
	assert_int_equal(fixture_deliver(&f, att, &err, status), SMTPC_DONE);
	assert_int_equal(att[0].result, ATTEMPT_PERM);
	assert_string_equal(att[0].status, "5.6.3");
	fixture_done(&f, att);
	str_free(&err);
}

static void test_no_pipelining(void **state)
{
	(void)state;
	static const struct step script[] = {
		{ NULL, "220 mx.test\r\n" },
		{ "EHLO client.example\r\n", "250-mx.test\r\n250 SIZE\r\n" },
		{ "MAIL FROM:<s@client.example> SIZE=31\r\n", "250 ok\r\n" },
		{ "RCPT TO:<a@mx.test>\r\n", "250 ok\r\n" },
		{ "RCPT TO:<b@mx.test>\r\n", "550 no\r\n" },
		{ "DATA\r\n", "354 go\r\n" },
		{ DATA_STEP, "554 rejected by content filter\r\n" },
		{ "QUIT\r\n", "221 bye\r\n" },
		{ NULL, NULL },
	};
	static const char *const rcpts[] = { "a@mx.test", "b@mx.test" };
	struct fixture f;
	struct attempt att[2];
	struct str err = STR_INIT;
	char status[DSN_STATUS_MAX] = "";
	fixture_init(&f, message, rcpts, 2);
	expected_data = message_wire;
	fixture_server(&f, script);
	assert_int_equal(fixture_deliver(&f, att, &err, status), SMTPC_DONE);
	assert_int_equal(att[0].result, ATTEMPT_PERM);
	assert_string_equal(att[0].status, "5.0.0");
	assert_non_null(strstr(str_c(&att[0].text),
			       "(in reply to end of DATA command)"));
	assert_int_equal(att[1].result, ATTEMPT_PERM);
	assert_non_null(strstr(str_c(&att[1].text),
			       "(in reply to RCPT TO command)"));
	fixture_done(&f, att);
	str_free(&err);
}

/* 421 in the middle: nobody is decided, the next host gets them all --
 * the one accepted before too. */
static void test_421(void **state)
{
	(void)state;
	static const struct step script[] = {
		{ NULL, "220 mx.test\r\n" },
		{ "EHLO client.example\r\n", "250 mx.test\r\n" },
		{ "MAIL FROM:<s@client.example>\r\n", "250 ok\r\n" },
		{ "RCPT TO:<a@mx.test>\r\n", "250 ok\r\n" },
		{ "RCPT TO:<b@mx.test>\r\n", "421 4.3.2 shutting down\r\n" },
		{ NULL, NULL },
	};
	static const char *const rcpts[] = { "a@mx.test", "b@mx.test" };
	struct fixture f;
	struct attempt att[2];
	struct str err = STR_INIT;
	char status[DSN_STATUS_MAX] = "";
	fixture_init(&f, message, rcpts, 2);
	fixture_server(&f, script);
	assert_int_equal(fixture_deliver(&f, att, &err, status), SMTPC_NEXT);
	assert_int_equal(att[0].result, ATTEMPT_NONE);
	assert_int_equal(att[1].result, ATTEMPT_NONE);
	assert_string_equal(status, "4.3.2");
	assert_string_equal(str_c(&err), "mx.test[127.0.0.1] said: 421 4.3.2 "
			    "shutting down (in reply to RCPT TO command)");
	fixture_done(&f, att);
	str_free(&err);
}

/* A refused greeting and a server that is no SMTP server: next host. */
static void test_bad_greeting(void **state)
{
	(void)state;
	static const struct step refuse[] = {
		{ NULL, "554 5.7.1 go away\r\n" },
		{ "QUIT\r\n", "221 bye\r\n" },
		{ NULL, NULL },
	};
	static const struct step garbage[] = {
		{ NULL, "SSH-2.0-OpenSSH_9.2\r\n" },
		{ NULL, NULL },
	};
	static const char *const rcpts[] = { "a@mx.test" };
	struct fixture f;
	struct attempt att[1];
	struct str err = STR_INIT;
	char status[DSN_STATUS_MAX] = "";

	fixture_init(&f, message, rcpts, 1);
	fixture_server(&f, refuse);
	assert_int_equal(fixture_deliver(&f, att, &err, status), SMTPC_NEXT);
	assert_int_equal(att[0].result, ATTEMPT_NONE);
	assert_string_equal(status, "4.7.1");	/* temporary: next host */
	assert_string_equal(str_c(&err), "mx.test[127.0.0.1] refused to talk "
			    "to me: 554 5.7.1 go away");
	fixture_done(&f, att);

	str_clear(&err);
	fixture_init(&f, message, rcpts, 1);
	fixture_server(&f, garbage);
	assert_int_equal(fixture_deliver(&f, att, &err, status), SMTPC_NEXT);
	assert_string_equal(status, "4.5.0");
	fixture_done(&f, att);
	str_free(&err);
}

/* SIZE announced and exceeded: permanent, nothing sent. */
static void test_size_limit(void **state)
{
	(void)state;
	static const struct step script[] = {
		{ NULL, "220 mx.test\r\n" },
		{ "EHLO client.example\r\n", "250-mx.test\r\n250 SIZE 10\r\n" },
		{ "QUIT\r\n", "221 bye\r\n" },
		{ NULL, NULL },
	};
	static const char *const rcpts[] = { "a@mx.test" };
	struct fixture f;
	struct attempt att[1];
	struct str err = STR_INIT;
	char status[DSN_STATUS_MAX] = "";
	fixture_init(&f, message, rcpts, 1);
	fixture_server(&f, script);
	assert_int_equal(fixture_deliver(&f, att, &err, status), SMTPC_DONE);
	assert_int_equal(att[0].result, ATTEMPT_PERM);
	assert_string_equal(att[0].status, "5.3.4");
	fixture_done(&f, att);
	str_free(&err);
}

/* Nobody listening: connect fails, 4.4.1. */
static void test_refused(void **state)
{
	(void)state;
	static const char *const rcpts[] = { "a@mx.test" };
	struct fixture f;
	struct attempt att[1];
	struct str err = STR_INIT;
	char status[DSN_STATUS_MAX] = "";
	fixture_init(&f, message, rcpts, 1);
	/* A port just freed: nothing listens there. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
	close(s);
	f.port = ntohs(sin.sin_port);
	assert_int_equal(fixture_deliver(&f, att, &err, status), SMTPC_NEXT);
	assert_string_equal(status, "4.4.1");
	assert_non_null(strstr(str_c(&err), "Connection refused"));
	attempt_free(&att[0]);
	close(f.m.fd);
	config_free(&f.cfg);
	str_free(&err);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_return_path_not_relayed),
		cmocka_unit_test(test_helo_8bit),
		cmocka_unit_test(test_no_pipelining),
		cmocka_unit_test(test_421),
		cmocka_unit_test(test_bad_greeting),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
