/*
 * Unit tests for common/queue.c: the envelope record format (round trip
 * with hostile text, a table of malformed records, truncation and random
 * mutation), enqueue, load, list order, update, remove, message locking
 * across processes, orphan cleanup, the test clock, and a commit whose
 * database write fails.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue.h"

static char root[] = "/var/tmp/sockmail-test-queue-XXXXXX";
static struct config cfg;
static unsigned spool_seq;

static int setup(void **state)
{
	(void)state;
	if (mkdtemp(root) == NULL)
		return -1;
	config_defaults(&cfg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	config_free(&cfg);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	return system(cmd);
}

/* A fresh spool for each test (created by the queue itself). */
static int fresh_spool(void **state)
{
	(void)state;
	free(cfg.spool_dir);
	struct str p = STR_INIT;
	str_printf(&p, "%s/spool%u", root, ++spool_seq);
	cfg.spool_dir = p.data;
	unsetenv("SOCKMAIL_TEST_NOW");
	return 0;
}

static char *spool_file(const char *rel)
{
	struct str p = STR_INIT;
	str_printf(&p, "%s/%s", cfg.spool_dir, rel);
	return p.data;
}

static int count_entries(const char *rel)
{
	char *dir = spool_file(rel);
	DIR *d = opendir(dir);
	free(dir);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool exists(const char *rel)
{
	char *p = spool_file(rel);
	bool r = access(p, F_OK) == 0;
	free(p);
	return r;
}

/* ---- envelopes in memory ---- */

static void env_init(struct queue_envelope *env, const char *id,
		     const char *sender, size_t n)
{
	memset(env, 0, sizeof *env);
	snprintf(env->id, sizeof env->id, "%s", id);
	env->sender = xstrdup(sender);
	env->rcpts = xcalloc(n, sizeof *env->rcpts);
	env->n_rcpts = n;
	for (size_t i = 0; i < n; i++) {
		struct str a = STR_INIT;
		str_printf(&a, "rcpt%zu@example.net", i);
		env->rcpts[i].address = a.data;
	}
}

static void assert_env_equal(const struct queue_envelope *a,
			     const struct queue_envelope *b)
{
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->sender, b->sender);
	if (a->auth_user == NULL)
		assert_null(b->auth_user);
	else
		assert_string_equal(a->auth_user, b->auth_user);
	assert_true(a->arrival == b->arrival);
	assert_true(a->size == b->size);
	assert_int_equal(a->smtputf8, b->smtputf8);
	assert_int_equal(a->body_8bit, b->body_8bit);
	assert_int_equal(a->delay_warned, b->delay_warned);
	assert_int_equal(a->n_rcpts, b->n_rcpts);
	for (size_t i = 0; i < a->n_rcpts; i++) {
		const struct queue_rcpt *x = &a->rcpts[i], *y = &b->rcpts[i];
		assert_string_equal(x->address, y->address);
		if (x->orcpt == NULL)
			assert_null(y->orcpt);
		else
			assert_string_equal(x->orcpt, y->orcpt);
		if (x->last_error == NULL)
			assert_null(y->last_error);
		else
			assert_string_equal(x->last_error, y->last_error);
		assert_int_equal(x->state, y->state);
		assert_int_equal(x->attempts, y->attempts);
		assert_true(x->next_try == y->next_try);
		assert_int_equal(x->dsn_sent, y->dsn_sent);
		assert_int_equal(x->local, y->local);
	}
}

/* Parse from an exact-size heap copy, so ASan sees any read past it. */
static int parse_exact(const char *data, size_t len,
		       struct queue_envelope *env)
{
	char *copy = xmalloc(len);
	memcpy(copy, data, len);
	int r = queue_envelope_parse(copy, len, env);
	free(copy);
	return r;
}

/* ---- format ---- */

static void test_format_exact(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str out = STR_INIT;

	env_init(&env, "ABC123", "alice@example.org", 2);
	env.auth_user = xstrdup("alice@example.org");
	env.arrival = 1700000000;
	env.size = 42;
	env.body_8bit = true;
	env.rcpts[0].state = RCPT_FAILED;
	env.rcpts[0].attempts = 3;
	env.rcpts[0].next_try = 1700000900;
	env.rcpts[0].dsn_sent = true;
	env.rcpts[0].last_error = xstrdup("550 5.1.1 no\r\nsuch \\ user\x7f");
	env.rcpts[0].orcpt = xstrdup("rfc822;Rcpt0@example.net");
	env.rcpts[1].local = true;
	queue_envelope_format(&env, &out);
	assert_string_equal(str_c(&out),
		"sockmail-queue 1\n"
		"id ABC123\n"
		"sender alice@example.org\n"
		"auth alice@example.org\n"
		"arrival 1700000000\n"
		"size 42\n"
		"smtputf8 0\n"
		"8bitmime 1\n"
		"delay-warned 0\n"
		"rcpt failed 3 1700000900 1 0 rcpt0@example.net\n"
		"orcpt rfc822;Rcpt0@example.net\n"
		"error 550 5.1.1 no\\x0D\\x0Asuch \\\\ user\\x7F\n"
		"rcpt pending 0 0 0 1 rcpt1@example.net\n"
		"end 2\n");
	queue_envelope_free(&env);
	str_free(&out);
}

/* Every byte but NUL, in every text field, comes back as it was. */
static void test_round_trip_hostile(void **state)
{
	(void)state;
	char all[256];
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	const char *texts[] = {
		"", " ", "\\", "\\x41", "\n", "end 1\nrcpt pending 0 0 0 0 x",
		"sockmail-queue 1\n", "a b  c ", "\xff\xfe\xc3\xa9", all,
	};
	size_t nt = sizeof texts / sizeof *texts;

	for (size_t i = 0; i < nt; i++) {
		struct queue_envelope env, back;
		struct str out = STR_INIT;
		env_init(&env, "Zz09", texts[i], 3);
		env.auth_user = xstrdup(texts[(i + 1) % nt]);
		env.arrival = 0;
		env.size = UINT64_MAX;
		env.smtputf8 = env.delay_warned = true;
		free(env.rcpts[0].address);
		/* an address is never empty */
		env.rcpts[0].address = xstrdup(texts[i][0] ? texts[i] : "x");
		env.rcpts[0].last_error = xstrdup(texts[i]);
		env.rcpts[1].orcpt = xstrdup(texts[(i + 2) % nt]);
		env.rcpts[1].state = RCPT_DELIVERED;
		env.rcpts[1].attempts = 4294967295u;
		env.rcpts[2].next_try = (time_t)9223372036854775807LL;
		env.rcpts[2].last_error = xstrdup("");
		queue_envelope_format(&env, &out);
		/* nothing but the line ends breaks lines */
		size_t lines = 0;
		for (size_t k = 0; k < out.len; k++)
			lines += out.data[k] == '\n';
		assert_int_equal(lines, 9 + 1 + 3 + 3);
		assert_int_equal(parse_exact(out.data, out.len, &back), 0);
		assert_env_equal(&env, &back);
		queue_envelope_free(&env);
		queue_envelope_free(&back);
		str_free(&out);
	}
}

/* An error text longer than QUEUE_ERROR_MAX is cut to it, and still
 * parses. */
static void test_error_cut(void **state)
{
	(void)state;
	struct queue_envelope env, back;
	struct str out = STR_INIT;
	env_init(&env, "A", "", 1);
	char *long_err = xmalloc(2000);
	memset(long_err, '\n', 1999);
	long_err[1999] = '\0';
	env.rcpts[0].last_error = long_err;
	queue_envelope_format(&env, &out);
	assert_int_equal(parse_exact(out.data, out.len, &back), 0);
	assert_int_equal(strlen(back.rcpts[0].last_error), QUEUE_ERROR_MAX);
	queue_envelope_free(&env);
	queue_envelope_free(&back);
	str_free(&out);
}

/* ---- parse rejects ---- */

#define HDR "sockmail-queue 1\nid A1\nsender s@x\narrival 5\nsize 9\n" \
	    "smtputf8 0\n8bitmime 0\ndelay-warned 0\n"
#define RC "rcpt pending 0 5 0 0 r@y\n"

static const char good_record[] = HDR RC "end 1\n";

static void test_parse_good_base(void **state)
{
	(void)state;
	struct queue_envelope env;
	assert_int_equal(parse_exact(good_record, sizeof good_record - 1, &env),
			 0);
	assert_string_equal(env.id, "A1");
	assert_string_equal(env.sender, "s@x");
	assert_null(env.auth_user);
	assert_int_equal(env.arrival, 5);
	assert_int_equal(env.size, 9);
	assert_int_equal(env.n_rcpts, 1);
	assert_string_equal(env.rcpts[0].address, "r@y");
	assert_int_equal(env.rcpts[0].next_try, 5);
	queue_envelope_free(&env);
}

static void test_parse_bad_table(void **state)
{
	(void)state;
	static const struct { const char *data; size_t len; } bad[] = {
#define B(s) { s, sizeof s - 1 }
		B(""),
		B("\n"),
		B("sockmail-queue 2\nid A1\n"),
		B("sockmail-queue 1 \nid A1\n"),
		B("Sockmail-queue 1\n" "id A1\n"),
		/* the header */
		B("sockmail-queue 1\nid \nsender s\n"),
		B("sockmail-queue 1\nid A-1\nsender s\narrival 5\n"),
		B("sockmail-queue 1\nid A 1\nsender s\narrival 5\n"),
		B("sockmail-queue 1\nid 0123456789012345678901234567890123\n"),
		B("sockmail-queue 1\nid A1\nsender s@x\n"),
		B("sockmail-queue 1\nid A1\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender s\narrival 5\nsize 9\n"
		  "smtputf8 0\n8bitmime 0\n" RC "end 1\n"),
		B("sockmail-queue 1\nid A1\nsender s\nauth u\nauth u\n"
		  "arrival 5\nsize 9\nsmtputf8 0\n8bitmime 0\ndelay-warned 0\n"
		  RC "end 1\n"),
		B("sockmail-queue 1\nid A1\nsender s\narrival -5\nsize 9\n"
		  "smtputf8 0\n8bitmime 0\ndelay-warned 0\n" RC "end 1\n"),
		B("sockmail-queue 1\nid A1\nsender s\narrival 05\nsize 9\n"
		  "smtputf8 0\n8bitmime 0\ndelay-warned 0\n" RC "end 1\n"),
		B("sockmail-queue 1\nid A1\nsender s\narrival  5\nsize 9\n"
		  "smtputf8 0\n8bitmime 0\ndelay-warned 0\n" RC "end 1\n"),
		B("sockmail-queue 1\nid A1\nsender s\narrival 5\nsize "
		  "18446744073709551616\nsmtputf8 0\n8bitmime 0\n"
		  "delay-warned 0\n" RC "end 1\n"),
		B("sockmail-queue 1\nid A1\nsender s\narrival "
		  "9223372036854775808\nsize 9\nsmtputf8 0\n8bitmime 0\n"
		  "delay-warned 0\n" RC "end 1\n"),
		B("sockmail-queue 1\nid A1\nsender s\narrival 5\nsize 9\n"
		  "smtputf8 2\n8bitmime 0\ndelay-warned 0\n" RC "end 1\n"),
		B("sockmail-queue 1\nid A1\nsender s\narrival 5\nsize 9\n"
		  "smtputf8 0\n8bitmime 0\ndelay-warned 0\nbogus 1\n" RC
		  "end 1\n"),
		/* escapes and raw bytes in text */
		B("sockmail-queue 1\nid A1\nsender a\\\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender a\\x4\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender a\\x0a\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender a\\x41\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender a\\x00\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender a\\n\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender a\tb\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender a\rb\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender a\x7f\narrival 5\n"),
		B("sockmail-queue 1\nid A1\nsender a\0b\narrival 5\n"),
		B("sockmail-queue 1\nid A\0\nsender s\narrival 5\n"),
		/* recipients */
		B(HDR "end 0\n"),
		B(HDR "end 1\n"),
		B(HDR RC "end 2\n"),
		B(HDR RC "end 01\n"),
		B(HDR RC "end 1\nend 1\n"),
		B(HDR RC "end 1\n\n"),
		B(HDR RC "end 1\nx"),
		B(HDR RC "end 1"),
		B(HDR RC),
		B(HDR "rcpt waiting 0 5 0 0 r@y\nend 1\n"),
		B(HDR "rcpt pending 0 5 0 0 \nend 1\n"),
		B(HDR "rcpt pending 0 5 0 0\nend 1\n"),
		B(HDR "rcpt pending 0 5 0 r@y\nend 1\n"),
		B(HDR "rcpt pending  0 5 0 0 r@y\nend 1\n"),
		B(HDR "rcpt pending 0 5 2 0 r@y\nend 1\n"),
		B(HDR "rcpt pending 4294967296 5 0 0 r@y\nend 1\n"),
		B(HDR "rcpt pending 0 -5 0 0 r@y\nend 1\n"),
		B(HDR "rcpt pending 0 5 0 0 r@y\\\nend 1\n"),
		B(HDR "orcpt x\n" RC "end 1\n"),
		B(HDR RC "error e\norcpt o\nend 1\n"),
		B(HDR RC "error e\nerror e\nend 1\n"),
		B(HDR RC "orcpt o\norcpt o\nend 1\n"),
		B(HDR RC "error\nend 1\n"),
#undef B
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct queue_envelope env;
		int r = parse_exact(bad[i].data, bad[i].len, &env);
		if (r != -1)
			fail_msg("bad record %zu parsed", i);
		/* a failed parse leaves nothing to free */
		assert_null(env.rcpts);
		assert_null(env.sender);
		assert_int_equal(env.n_rcpts, 0);
	}
}

/* Every proper prefix of a valid record is truncated, hence invalid. */
static void test_parse_truncated(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str out = STR_INIT;
	env_init(&env, "T1", "s@x", 2);
	env.auth_user = xstrdup("u");
	env.rcpts[0].orcpt = xstrdup("rfc822;a");
	env.rcpts[1].last_error = xstrdup("451 4.0.0 later\n");
	queue_envelope_format(&env, &out);
	queue_envelope_free(&env);
	for (size_t len = 0; len < out.len; len++)
		assert_int_equal(parse_exact(out.data, len, &env), -1);
	assert_int_equal(parse_exact(out.data, out.len, &env), 0);
	queue_envelope_free(&env);
	str_free(&out);
}

static void test_parse_bounds(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str rec = STR_INIT;

	/* 10,000 recipients is the limit; 10,001 is too many */
	str_append(&rec, HDR);
	for (int i = 0; i < 10000; i++)
		str_append(&rec, RC);
	size_t at = rec.len;
	str_append(&rec, "end 10000\n");
	assert_int_equal(parse_exact(rec.data, rec.len, &env), 0);
	assert_int_equal(env.n_rcpts, 10000);
	queue_envelope_free(&env);
	str_truncate(&rec, at);
	str_append(&rec, RC "end 10001\n");
	assert_int_equal(parse_exact(rec.data, rec.len, &env), -1);

	/* a line over 4 KiB */
	str_clear(&rec);
	str_append(&rec, "sockmail-queue 1\nid A1\nsender ");
	for (int i = 0; i < 4100; i++)
		str_append_c(&rec, 'a');
	str_append(&rec, "\narrival 5\n");
	assert_int_equal(parse_exact(rec.data, rec.len, &env), -1);

	/* a sender over 1000 bytes, even in a short enough line */
	str_clear(&rec);
	str_append(&rec, "sockmail-queue 1\nid A1\nsender ");
	for (int i = 0; i < 1001; i++)
		str_append_c(&rec, 'a');
	str_append(&rec, "\narrival 5\nsize 9\nsmtputf8 0\n8bitmime 0\n"
		   "delay-warned 0\n" RC "end 1\n");
	assert_int_equal(parse_exact(rec.data, rec.len, &env), -1);

	/* an error text over QUEUE_ERROR_MAX */
	str_clear(&rec);
	str_append(&rec, HDR RC "error ");
	for (int i = 0; i < QUEUE_ERROR_MAX + 1; i++)
		str_append_c(&rec, 'e');
	str_append(&rec, "\nend 1\n");
	assert_int_equal(parse_exact(rec.data, rec.len, &env), -1);

	/* a record over 4 MiB is refused before it is looked at */
	assert_int_equal(queue_envelope_parse(good_record, 4 * 1024 * 1024 + 1,
					      &env), -1);
	assert_int_equal(queue_envelope_parse(NULL, 0, &env), -1);
	str_free(&rec);
}

/* Random damage: never a crash; whatever parses formats back to itself. */
static void test_parse_mutations(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str rec = STR_INIT, again = STR_INIT;
	env_init(&env, "M1", "a\\b\nc", 2);
	env.auth_user = xstrdup("uid:1000");
	env.rcpts[0].last_error = xstrdup("421 \x01\x1f bye");
	env.rcpts[1].orcpt = xstrdup("rfc822;x");
	queue_envelope_format(&env, &rec);
	queue_envelope_free(&env);

	static const char alphabet[] = "\n \\x0F9A-rcpt\0\x7f\xff";
	srand(12345);
	char *buf = xmalloc(rec.len + 8);
	int parsed = 0;
	for (int n = 0; n < 20000; n++) {
		size_t len = rec.len;
		memcpy(buf, rec.data, len);
		int edits = 1 + rand() % 4;
		for (int e = 0; e < edits && len > 0; e++) {
			size_t pos = (size_t)rand() % len;
			switch (rand() % 3) {
			case 0:
				buf[pos] = alphabet[rand() %
						    (sizeof alphabet - 1)];
				break;
			case 1:	/* delete a byte */
				memmove(buf + pos, buf + pos + 1,
					len - pos - 1);
				len--;
				break;
			default:	/* cut */
				len = pos + 1;
			}
		}
		if (parse_exact(buf, len, &env) == 0) {
			parsed++;
			str_clear(&again);
			queue_envelope_format(&env, &again);
			assert_int_equal(again.len, len);
			assert_memory_equal(again.data, buf, len);
			queue_envelope_free(&env);
		}
	}
	/* some damage is harmless (a changed letter in a text): those
	 * records were really checked above */
	assert_true(parsed > 100);
	free(buf);
	str_free(&rec);
	str_free(&again);
}

/* ---- done / next / ids / clock ---- */

static void test_done_next(void **state)
{
	(void)state;
	struct queue_envelope env;
	env_init(&env, "D1", "", 3);
	env.rcpts[0].state = RCPT_PENDING;
	env.rcpts[0].next_try = 300;
	env.rcpts[1].state = RCPT_PENDING;
	env.rcpts[1].next_try = 200;
	env.rcpts[2].state = RCPT_DELIVERED;
	env.rcpts[2].next_try = 100;
	assert_false(queue_envelope_done(&env));
	assert_int_equal(queue_envelope_next(&env), 200);
	env.rcpts[1].state = RCPT_FAILED;
	assert_int_equal(queue_envelope_next(&env), 300);
	env.rcpts[0].state = RCPT_DELIVERED;
	assert_int_equal(queue_envelope_next(&env), 0);
	assert_false(queue_envelope_done(&env));	/* DSN not sent yet */
	env.rcpts[1].dsn_sent = true;
	assert_true(queue_envelope_done(&env));
	queue_envelope_free(&env);
}

static void test_new_id(void **state)
{
	(void)state;
	struct strlist ids = STRLIST_INIT;
	char id[QUEUE_ID_MAX];
	for (int i = 0; i < 2000; i++) {
		queue_new_id(id);
		assert_true(queue_id_valid(id));
		assert_true(strlist_add_unique(&ids, id));
	}
	/* and from other processes at the same time */
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	for (int c = 0; c < 4; c++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			for (int i = 0; i < 200; i++) {
				memset(id, 0, sizeof id);
				queue_new_id(id);
				if (write(fds[1], id, QUEUE_ID_MAX) !=
				    QUEUE_ID_MAX)
					_exit(1);
			}
			_exit(0);
		}
	}
	close(fds[1]);
	while (read(fds[0], id, QUEUE_ID_MAX) == QUEUE_ID_MAX)
		assert_true(strlist_add_unique(&ids, id));
	close(fds[0]);
	assert_int_equal(ids.n, 2000 + 4 * 200);
	while (wait(NULL) > 0)
		;
	strlist_free(&ids);

	assert_false(queue_id_valid(""));
	assert_false(queue_id_valid("a/b"));
	assert_false(queue_id_valid(".."));
	assert_false(queue_id_valid("0123456789012345678901234567890123"));
	assert_true(queue_id_valid("0123456789012345678901234567890"));
	assert_false(queue_id_valid("01234567890123456789012345678901"));
}

static void test_clock(void **state)
{
	(void)state;
	unsetenv("SOCKMAIL_TEST_NOW");
	time_t t = time(NULL);
	assert_true(queue_now() >= t && queue_now() <= t + 2);
	setenv("SOCKMAIL_TEST_NOW", "1234567890", 1);
	assert_int_equal(queue_now(), 1234567890);
	setenv("SOCKMAIL_TEST_NOW", "12x", 1);
	assert_true(queue_now() >= t && queue_now() <= t + 2);
	unsetenv("SOCKMAIL_TEST_NOW");
}

/* ---- on disk ---- */

/* Enqueue "text" for n recipients; returns 0 or -1 (err in *err). */
static int enqueue(const char *id, const char *text, size_t n,
		   struct queue_envelope *env, struct str *err)
{
	struct mailfile f;
	env_init(env, id, "sender@example.org", n);
	if (queue_open_file(&cfg, &f) != 0)
		return -1;
	mailfile_write(&f, text, strlen(text));
	int r = queue_commit(&cfg, &f, env, err);
	mailfile_close(&f);
	return r;
}

static char *read_file(const char *path)
{
	FILE *fp = fopen(path, "r");
	if (fp == NULL)
		return NULL;
	static char buf[4096];
	size_t n = fread(buf, 1, sizeof buf - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static void test_commit_load(void **state)
{
	(void)state;
	struct queue_envelope env, back;
	struct str err = STR_INIT, path = STR_INIT;
	static const char msg[] = "Return-Path: <sender@example.org>\n"
				  "Subject: hi\n\nbody\n";

	setenv("SOCKMAIL_TEST_NOW", "1700000000", 1);
	assert_int_equal(enqueue("", msg, 2, &env, &err), 0);
	assert_true(queue_id_valid(env.id));	/* given one */
	assert_int_equal(env.arrival, 1700000000);

	assert_int_equal(queue_load(&cfg, env.id, &back, &err), 0);
	assert_env_equal(&env, &back);
	assert_int_equal(back.size, strlen(msg));
	for (size_t i = 0; i < back.n_rcpts; i++) {
		assert_int_equal(back.rcpts[i].state, RCPT_PENDING);
		assert_int_equal(back.rcpts[i].attempts, 0);
		assert_int_equal(back.rcpts[i].next_try, 1700000000);
		assert_null(back.rcpts[i].last_error);
	}
	queue_message_path(&cfg, env.id, &path);
	assert_string_equal(read_file(str_c(&path)), msg);
	assert_int_equal(count_entries("tmp"), 0);
	assert_true(exists("trigger"));

	struct stat st;
	char *db = spool_file("queue.tdb");
	assert_int_equal(stat(db, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(db);
	char *msgdir = spool_file("msg");
	assert_int_equal(stat(msgdir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	free(msgdir);

	/* absent ids, malformed ids */
	struct queue_envelope none;
	assert_int_equal(queue_load(&cfg, "NOSUCH", &none, &err), 1);
	assert_null(none.rcpts);
	assert_int_equal(queue_load(&cfg, "../x", &none, &err), 1);

	/* store: results come back */
	back.rcpts[0].state = RCPT_DELIVERED;
	back.rcpts[1].attempts = 1;
	back.rcpts[1].next_try = 1700000900;
	back.rcpts[1].last_error = xstrdup("451 4.7.1 greylisted\r\n");
	back.delay_warned = true;
	assert_int_equal(queue_store(&cfg, &back, &err), 0);
	struct queue_envelope third;
	assert_int_equal(queue_load(&cfg, env.id, &third, &err), 0);
	assert_env_equal(&back, &third);
	queue_envelope_free(&third);

	/* a record the format could not hold is refused */
	free(back.rcpts[0].address);
	back.rcpts[0].address = xstrdup("");
	str_clear(&err);
	assert_int_equal(queue_store(&cfg, &back, &err), -1);
	assert_true(err.len > 0);

	queue_envelope_free(&env);
	queue_envelope_free(&back);
	str_free(&err);
	str_free(&path);
}

static void test_list_order(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str err = STR_INIT;
	struct strlist ids = STRLIST_INIT;

	/* empty spool, no database: an empty list */
	assert_int_equal(queue_list(&cfg, &ids, &err), 0);
	assert_int_equal(ids.n, 0);

	static const struct { const char *id; const char *now; } m[] = {
		{ "C", "300" }, { "A", "100" }, { "Z", "200" }, { "B", "200" },
	};
	for (size_t i = 0; i < 4; i++) {
		setenv("SOCKMAIL_TEST_NOW", m[i].now, 1);
		assert_int_equal(enqueue(m[i].id, "x\n", 1, &env, &err), 0);
		queue_envelope_free(&env);
	}
	assert_int_equal(queue_list(&cfg, &ids, &err), 0);
	assert_int_equal(ids.n, 4);
	assert_string_equal(ids.items[0], "A");
	assert_string_equal(ids.items[1], "B");
	assert_string_equal(ids.items[2], "Z");
	assert_string_equal(ids.items[3], "C");
	strlist_free(&ids);
	str_free(&err);
}

static int set_all_due(struct queue_envelope *env, void *arg)
{
	time_t *now = arg;
	int changed = 0;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		if (env->rcpts[i].state == RCPT_PENDING) {
			env->rcpts[i].next_try = *now;
			changed = 1;
		}
	}
	return changed;
}

static int refuse(struct queue_envelope *env, void *arg)
{
	(void)arg;
	env->rcpts[0].state = RCPT_FAILED;
	return -1;
}

static void test_update(void **state)
{
	(void)state;
	struct queue_envelope env, back;
	struct str err = STR_INIT;

	assert_int_equal(enqueue("U1", "x\n", 2, &env, &err), 0);
	env.rcpts[0].state = RCPT_DELIVERED;
	env.rcpts[1].next_try = 99999;
	env.rcpts[0].next_try = 88888;
	assert_int_equal(queue_store(&cfg, &env, &err), 0);

	time_t now = 5;
	assert_int_equal(queue_update(&cfg, "U1", set_all_due, &now, &err), 0);
	assert_int_equal(queue_load(&cfg, "U1", &back, &err), 0);
	assert_int_equal(back.rcpts[0].next_try, 88888);	/* delivered */
	assert_int_equal(back.rcpts[1].next_try, 5);
	queue_envelope_free(&back);

	/* a refusing callback changes nothing */
	str_clear(&err);
	assert_int_equal(queue_update(&cfg, "U1", refuse, NULL, &err), -1);
	assert_true(err.len > 0);
	assert_int_equal(queue_load(&cfg, "U1", &back, &err), 0);
	assert_int_equal(back.rcpts[0].state, RCPT_DELIVERED);
	queue_envelope_free(&back);

	assert_int_equal(queue_update(&cfg, "NONE", set_all_due, &now, &err),
			 1);
	queue_envelope_free(&env);
	str_free(&err);
}

/* A DSN and the note in the message it reports on: one transaction. */
static void test_commit_with(void **state)
{
	(void)state;
	struct queue_envelope env, dsn, back;
	struct str err = STR_INIT;
	struct mailfile f;

	assert_int_equal(enqueue("W1", "x\n", 1, &env, &err), 0);
	env.rcpts[0].state = RCPT_FAILED;
	env.rcpts[0].dsn_sent = true;
	assert_int_equal(queue_open_file(&cfg, &f), 0);
	mailfile_write(&f, "bounce\n", 7);
	env_init(&dsn, "W2", "", 1);
	if (queue_commit_with(&cfg, &f, &dsn, &env, &err) != 0)
		fail_msg("%s", str_c(&err));
	mailfile_close(&f);
	queue_envelope_free(&dsn);
	assert_int_equal(queue_load(&cfg, "W1", &back, &err), 0);
	assert_int_equal(back.rcpts[0].state, RCPT_FAILED);
	assert_true(back.rcpts[0].dsn_sent);
	queue_envelope_free(&back);
	assert_int_equal(queue_load(&cfg, "W2", &back, &err), 0);
	queue_envelope_free(&back);

	/* the new one cannot be stored (its id is taken): the other record
	 * stays as it was, and no file is left */
	env.rcpts[0].dsn_sent = false;
	assert_int_equal(queue_open_file(&cfg, &f), 0);
	mailfile_write(&f, "again\n", 6);
	env_init(&dsn, "W2", "", 1);
	assert_int_equal(queue_commit_with(&cfg, &f, &dsn, &env, &err), -1);
	mailfile_close(&f);
	queue_envelope_free(&dsn);
	assert_int_equal(queue_load(&cfg, "W1", &back, &err), 0);
	assert_true(back.rcpts[0].dsn_sent);
	queue_envelope_free(&back);
	char *p = spool_file("msg/W2");
	assert_string_equal(read_file(p), "bounce\n");
	free(p);
	assert_int_equal(count_entries("msg"), 2);
	queue_envelope_free(&env);
	str_free(&err);
}

static void test_remove(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str err = STR_INIT;

	assert_int_equal(enqueue("R1", "x\n", 1, &env, &err), 0);
	assert_true(exists("msg/R1"));
	assert_int_equal(queue_remove(&cfg, "R1", &err), 0);
	assert_false(exists("msg/R1"));
	struct queue_envelope back;
	assert_int_equal(queue_load(&cfg, "R1", &back, &err), 1);
	assert_int_equal(queue_remove(&cfg, "R1", &err), 1);

	/* a file without an envelope is not remove's to touch */
	char *p = spool_file("msg/R2");
	int fd = open(p, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(queue_remove(&cfg, "R2", &err), 1);
	assert_true(exists("msg/R2"));
	free(p);
	queue_envelope_free(&env);
	str_free(&err);
}

static void test_lock(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str err = STR_INIT;
	int up[2], down[2];
	char c;

	assert_int_equal(enqueue("L1", "x\n", 1, &env, &err), 0);
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = queue_lock(&cfg, "L1");
		c = fd >= 0 ? 'y' : 'n';
		if (write(up[1], &c, 1) != 1 || read(down[0], &c, 1) != 1)
			_exit(2);
		_exit(fd >= 0 ? 0 : 1);
	}
	assert_int_equal(read(up[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	errno = 0;
	assert_int_equal(queue_lock(&cfg, "L1"), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	/* the child ends: the lock is free */
	assert_int_equal(write(down[1], "x", 1), 1);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	int fd = queue_lock(&cfg, "L1");
	assert_true(fd >= 0);
	close(fd);

	/* a lock held until the message is removed, then: gone */
	fd = queue_lock(&cfg, "L1");
	assert_true(fd >= 0);
	assert_int_equal(queue_remove(&cfg, "L1", &err), 0);
	close(fd);
	errno = 0;
	assert_int_equal(queue_lock(&cfg, "L1"), -1);
	assert_int_equal(errno, ENOENT);
	errno = 0;
	assert_int_equal(queue_lock(&cfg, "../../etc/passwd"), -1);
	assert_int_equal(errno, EINVAL);

	for (int i = 0; i < 2; i++) {
		close(up[i]);
		close(down[i]);
	}
	queue_envelope_free(&env);
	str_free(&err);
}

static void make_old_file(const char *rel, time_t age)
{
	char *p = spool_file(rel);
	int fd = open(p, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	struct timespec ts[2] = { { time(NULL) - age, 0 },
				  { time(NULL) - age, 0 } };
	assert_int_equal(futimens(fd, ts), 0);
	close(fd);
	free(p);
}

static void test_orphans(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str err = STR_INIT;

	/* no database yet: nothing is judged */
	assert_int_equal(enqueue("K1", "x\n", 1, &env, &err), 0);
	queue_envelope_free(&env);
	char *db = spool_file("queue.tdb");
	char *db2 = spool_file("queue.tdb.away");
	assert_int_equal(rename(db, db2), 0);
	make_old_file("msg/OLD", 7200);
	assert_int_equal(queue_clean_orphans(&cfg, 3600, &err), 0);
	assert_true(exists("msg/OLD"));
	assert_int_equal(rename(db2, db), 0);
	free(db);
	free(db2);

	make_old_file("msg/K1", 7200);		/* queued, old: stays */
	make_old_file("msg/FRESH", 60);		/* orphan, young: stays */
	make_old_file("msg/LOCKED", 7200);	/* orphan held by someone */
	make_old_file("msg/bad-name", 7200);	/* not ours */
	make_old_file("tmp/leftover", 7200);	/* a dead writer's file */
	make_old_file("tmp/writing", 10);

	/* flock belongs to the open file, so this conflicts with the
	 * cleaner's own open of it, as another process's lock would */
	int fd = queue_lock(&cfg, "LOCKED");
	assert_true(fd >= 0);
	assert_int_equal(queue_clean_orphans(&cfg, 3600, &err), 2);
	close(fd);

	assert_false(exists("msg/OLD"));
	assert_false(exists("tmp/leftover"));
	assert_true(exists("msg/K1"));
	assert_true(exists("msg/FRESH"));
	assert_true(exists("msg/LOCKED"));
	assert_true(exists("msg/bad-name"));
	assert_true(exists("tmp/writing"));
	assert_int_equal(queue_load(&cfg, "K1", &env, &err), 0);
	queue_envelope_free(&env);

	/* unlocked now, it goes */
	assert_int_equal(queue_clean_orphans(&cfg, 3600, &err), 1);
	assert_false(exists("msg/LOCKED"));
	str_free(&err);
}

/* A message written in a Maildir on another file system (tmpfs) is
 * copied into the spool; nothing is left in either tmp/. */
static void test_commit_cross_fs(void **state)
{
	(void)state;
	char shm[] = "/dev/shm/sockmail-test-queue-XXXXXX";
	struct stat a, b;
	if (mkdtemp(shm) == NULL || stat(shm, &a) != 0 ||
	    stat(root, &b) != 0 || a.st_dev == b.st_dev) {
		rmdir(shm);
		skip();
	}
	struct str tmp = STR_INIT, err = STR_INIT;
	str_printf(&tmp, "%s/tmp", shm);
	assert_int_equal(mkdir(str_c(&tmp), 0700), 0);

	struct mailfile f;
	struct queue_envelope env;
	assert_int_equal(mailfile_open(&f, shm), 0);
	mailfile_write(&f, "Subject: far\n\nbody\n", 19);
	env_init(&env, "X1", "s@x", 1);
	int r = queue_commit(&cfg, &f, &env, &err);
	if (r != 0)
		fail_msg("%s", str_c(&err));
	mailfile_close(&f);
	char *p = spool_file("msg/X1");
	assert_string_equal(read_file(p), "Subject: far\n\nbody\n");
	free(p);
	assert_int_equal(count_entries("tmp"), 0);
	assert_int_equal(rmdir(str_c(&tmp)), 0);
	assert_int_equal(rmdir(shm), 0);
	queue_envelope_free(&env);
	str_free(&tmp);
	str_free(&err);
}

/* Processes enqueueing at once, one of them also rewriting envelopes:
 * every message is there once, whole. */
static void test_concurrent(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str err = STR_INIT;
	struct strlist ids = STRLIST_INIT;
	enum { CHILDREN = 4, EACH = 25 };

	for (int c = 0; c < CHILDREN; c++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid != 0)
			continue;
		int bad = 0;
		for (int i = 0; i < EACH; i++) {
			bad += enqueue("", "concurrent\n", 2, &env, &err) != 0;
			time_t now = 7;
			bad += queue_update(&cfg, env.id, set_all_due, &now,
					    &err) != 0;
			queue_envelope_free(&env);
			strlist_clear(&ids);
			bad += queue_list(&cfg, &ids, &err) != 0;
		}
		_exit(bad == 0 ? 0 : 1);
	}
	for (int c = 0; c < CHILDREN; c++) {
		int status;
		assert_true(wait(&status) > 0);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(queue_list(&cfg, &ids, &err), 0);
	assert_int_equal(ids.n, CHILDREN * EACH);
	for (size_t i = 0; i < ids.n; i++) {
		assert_int_equal(queue_load(&cfg, ids.items[i], &env, &err), 0);
		assert_int_equal(env.n_rcpts, 2);
		assert_int_equal(env.rcpts[1].next_try, 7);
		queue_envelope_free(&env);
	}
	assert_int_equal(count_entries("msg"), CHILDREN * EACH);
	strlist_free(&ids);
	str_free(&err);
}

/* The database cannot be written: nothing may stay in msg/. */
static void test_commit_db_fails(void **state)
{
	(void)state;
	struct queue_envelope env;
	struct str err = STR_INIT;

	char *spool = spool_file("");
	assert_int_equal(mkdir(spool, 0700), 0);
	char *db = spool_file("queue.tdb");
	assert_int_equal(mkdir(db, 0700), 0);
	assert_int_equal(enqueue("F1", "x\n", 1, &env, &err), -1);
	assert_true(err.len > 0);
	assert_int_equal(count_entries("msg"), 0);
	assert_int_equal(count_entries("tmp"), 0);
	queue_envelope_free(&env);
	assert_int_equal(rmdir(db), 0);

	/* a second commit under the same id fails and leaves the first */
	assert_int_equal(enqueue("F2", "first\n", 1, &env, &err), 0);
	queue_envelope_free(&env);
	str_clear(&err);
	assert_int_equal(enqueue("F2", "second\n", 1, &env, &err), -1);
	assert_true(err.len > 0);
	queue_envelope_free(&env);
	char *p = spool_file("msg/F2");
	assert_string_equal(read_file(p), "first\n");
	free(p);
	assert_int_equal(count_entries("msg"), 1);

	/* an envelope with an invalid id or no recipients is refused */
	struct mailfile f;
	assert_int_equal(queue_open_file(&cfg, &f), 0);
	env_init(&env, "bad/id", "s", 1);
	assert_int_equal(queue_commit(&cfg, &f, &env, &err), -1);
	queue_envelope_free(&env);
	env_init(&env, "OK", "s", 0);
	assert_int_equal(queue_commit(&cfg, &f, &env, &err), -1);
	queue_envelope_free(&env);
	mailfile_close(&f);
	assert_int_equal(count_entries("msg"), 1);

	free(spool);
	free(db);
	str_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_exact),
		cmocka_unit_test(test_round_trip_hostile),
		cmocka_unit_test(test_error_cut),
		cmocka_unit_test(test_parse_good_base),
		cmocka_unit_test(test_parse_bad_table),
		cmocka_unit_test(test_parse_truncated),
		cmocka_unit_test(test_parse_bounds),
		cmocka_unit_test(test_parse_mutations),
		cmocka_unit_test(test_done_next),
		cmocka_unit_test(test_new_id),
		cmocka_unit_test(test_clock),
		cmocka_unit_test_setup(test_commit_load, fresh_spool),
		cmocka_unit_test_setup(test_list_order, fresh_spool),
		cmocka_unit_test_setup(test_update, fresh_spool),
		cmocka_unit_test_setup(test_commit_with, fresh_spool),
		cmocka_unit_test_setup(test_remove, fresh_spool),
		cmocka_unit_test_setup(test_lock, fresh_spool),
		cmocka_unit_test_setup(test_orphans, fresh_spool),
		cmocka_unit_test_setup(test_commit_cross_fs, fresh_spool),
		cmocka_unit_test_setup(test_concurrent, fresh_spool),
		cmocka_unit_test_setup(test_commit_db_fails, fresh_spool),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
