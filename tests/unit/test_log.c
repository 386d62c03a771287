/*
 * test_log: the exact stderr line (quoting, escaping, bounds), and the exact
 * journal datagram, received on our own socket named by
 * SOCKMAIL_JOURNAL_SOCKET.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "str.h"

static char tmpdir[] = "/tmp/test_log.XXXXXX";
static char sock_path[PATH_MAX];
static char capture_path[PATH_MAX];
static int saved_stderr = -1;
static int capture_fd = -1;

static int group_setup(void **state)
{
	(void)state;
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(sock_path, sizeof sock_path, "%s/journal.sock", tmpdir);
	snprintf(capture_path, sizeof capture_path, "%s/stderr", tmpdir);
	unsetenv("JOURNAL_STREAM");
	unsetenv("SOCKMAIL_JOURNAL_SOCKET");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(sock_path);
	unlink(capture_path);
	return rmdir(tmpdir);
}

/* Point fd 2 at a fresh file until capture_end(). */
static void capture_begin(void)
{
	capture_fd = open(capture_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(capture_fd >= 0);
	saved_stderr = dup(2);
	assert_true(saved_stderr >= 0);
	assert_int_equal(dup2(capture_fd, 2), 2);
}

/* Restore fd 2; out gets what was written to it. */
static void capture_end(struct str *out)
{
	char buf[4096];
	ssize_t n;

	assert_int_equal(dup2(saved_stderr, 2), 2);
	close(saved_stderr);
	assert_int_equal(lseek(capture_fd, 0, SEEK_SET), 0);
	str_clear(out);
	while ((n = read(capture_fd, buf, sizeof buf)) > 0)
		str_append_n(out, buf, (size_t)n);
	close(capture_fd);
}

static void open_stderr_sink(const char *ident)
{
	assert_int_equal(setenv("SOCKMAIL_LOG", "stderr", 1), 0);
	log_open(ident);
}

/* "ident[pid]: " + rest */
static void expect_line(struct str *e, const char *ident, const char *rest)
{
	str_clear(e);
	str_printf(e, "%s[%ld]: %s", ident, (long)getpid(), rest);
}

static int bind_journal(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	assert_true(fd >= 0);
	unlink(sock_path);
	strcpy(sa.sun_path, sock_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(setenv("SOCKMAIL_JOURNAL_SOCKET", sock_path, 1), 0);
	return fd;
}

/* The next datagram, or an empty string if none is waiting. */
static void recv_datagram(int fd, struct str *out)
{
	static char buf[256 * 1024];
	ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

	str_clear(out);
	if (n > 0)
		str_append_n(out, buf, (size_t)n);
}

static void assert_bytes_equal(const struct str *got, const struct str *want)
{
	if (got->len != want->len || memcmp(str_c(got), str_c(want),
					    want->len) != 0)
		fail_msg("got %zu bytes:\n%s\nwant %zu bytes:\n%s", got->len,
			 str_c(got), want->len, str_c(want));
}

/* The fixed fields that open every datagram. */
static void expect_journal_head(struct str *e, int priority, const char *ident)
{
	str_clear(e);
	str_printf(e, "PRIORITY=%d\nSYSLOG_IDENTIFIER=%s\nSYSLOG_PID=%ld\n",
		   priority, ident, (long)getpid());
}

/* Must run first: logging before log_open uses ident "sockmail". */
static void test_without_open(void **state)
{
	struct str got = STR_INIT, want = STR_INIT;

	(void)state;
	assert_int_equal(setenv("SOCKMAIL_LOG", "stderr", 1), 0);
	capture_begin();
	log_msg(LOG_INFO, "early");
	capture_end(&got);
	expect_line(&want, "sockmail", "early\n");
	assert_string_equal(str_c(&got), str_c(&want));
	str_free(&got);
	str_free(&want);
}

static void test_stderr_msg(void **state)
{
	struct str got = STR_INIT, want = STR_INIT;

	(void)state;
	open_stderr_sink("smtp-handler");
	capture_begin();
	log_msg(LOG_INFO, "hello %s %d", "world", 42);
	log_msg(LOG_ERR, "two\nlines\r\x1b[31m tab\there \"q\" back\\slash");
	capture_end(&got);
	expect_line(&want, "smtp-handler", "hello world 42\n");
	str_printf(&want, "smtp-handler[%ld]: two\\nlines\\r\\x1b[31m "
		   "tab\\there \"q\" back\\slash\n", (long)getpid());
	assert_string_equal(str_c(&got), str_c(&want));
	str_free(&got);
	str_free(&want);
}

static void test_stderr_kv(void **state)
{
	struct str got = STR_INIT, want = STR_INIT;

	(void)state;
	open_stderr_sink("smtp");
	capture_begin();
	log_kv(LOG_NOTICE, "auth failed",
	       "PEER", "192.0.2.1",
	       "USER", "bob smith",
	       "EMPTY", "",
	       "SKIPPED", (const char *)NULL,
	       "Q", "say \"hi\" \\o/",
	       "CTL", "a\nb\r\tc\x01\x7f",
	       "BS", "a\\b",
	       "lower-case.key", "v=w",
	       "UTF8", "\xc3\xa9t\xc3\xa9",
	       (const char *)NULL);
	log_kv(LOG_INFO, "no pairs", (const char *)NULL);
	capture_end(&got);
	expect_line(&want, "smtp",
		    "auth failed PEER=192.0.2.1 USER=\"bob smith\" EMPTY=\"\" "
		    "Q=\"say \\\"hi\\\" \\\\o/\" "
		    "CTL=\"a\\nb\\r\\tc\\x01\\x7f\" BS=\"a\\\\b\" "
		    "LOWER_CASE_KEY=v=w UTF8=\xc3\xa9t\xc3\xa9\n");
	str_printf(&want, "smtp[%ld]: no pairs\n", (long)getpid());
	assert_string_equal(str_c(&got), str_c(&want));
	str_free(&got);
	str_free(&want);
}

static void test_errno_kept(void **state)
{
	struct str got = STR_INIT, want = STR_INIT;

	(void)state;
	open_stderr_sink("t");
	capture_begin();
	errno = ENOENT;
	log_msg(LOG_ERR, "open x: %m");
	assert_int_equal(errno, ENOENT);
	log_kv(LOG_ERR, "kv", "K", "v", (const char *)NULL);
	assert_int_equal(errno, ENOENT);
	capture_end(&got);
	expect_line(&want, "t", "open x: No such file or directory\n");
	str_printf(&want, "t[%ld]: kv K=v\n", (long)getpid());
	assert_string_equal(str_c(&got), str_c(&want));
	str_free(&got);
	str_free(&want);
}

static void test_bounds(void **state)
{
	struct str got = STR_INIT, want = STR_INIT, big = STR_INIT;
	struct str rest = STR_INIT;

	(void)state;
	open_stderr_sink("t");

	/* A long value: 1021 bytes kept, then "...". */
	for (int i = 0; i < 5000; i++)
		str_append_c(&big, 'a');
	capture_begin();
	log_kv(LOG_INFO, "m", "K", str_c(&big), "NEXT", "n", (const char *)NULL);
	capture_end(&got);
	str_append(&rest, "m K=");
	str_append_n(&rest, big.data, 1021);
	str_append(&rest, "... NEXT=n\n");
	expect_line(&want, "t", str_c(&rest));
	assert_string_equal(str_c(&got), str_c(&want));

	/* A quoted one: the quotes count, and an escape is never split. */
	str_clear(&big);
	for (int i = 0; i < 600; i++)
		str_append(&big, " \n");
	capture_begin();
	log_kv(LOG_INFO, "m", "K", str_c(&big), (const char *)NULL);
	capture_end(&got);
	str_clear(&rest);
	str_append(&rest, "m K=\"");
	for (int i = 0; i < 340; i++)	/* 340 * 3 + 1 = 1024 - 3 */
		str_append(&rest, " \\n");
	str_append(&rest, " ...\"\n");
	expect_line(&want, "t", str_c(&rest));
	assert_string_equal(str_c(&got), str_c(&want));

	/* UTF-8 is cut between characters: 510 of 600 "é", then "...". */
	str_clear(&big);
	for (int i = 0; i < 600; i++)
		str_append(&big, "\xc3\xa9");
	capture_begin();
	log_kv(LOG_INFO, "m", "K", str_c(&big), (const char *)NULL);
	capture_end(&got);
	str_clear(&rest);
	str_append(&rest, "m K=");
	str_append_n(&rest, big.data, 1020);
	str_append(&rest, "...\n");
	expect_line(&want, "t", str_c(&rest));
	assert_string_equal(str_c(&got), str_c(&want));

	/* A long message: 4093 bytes kept. */
	str_clear(&big);
	for (int i = 0; i < 10000; i++)
		str_append_c(&big, 'm');
	capture_begin();
	log_msg(LOG_INFO, "%s", str_c(&big));
	capture_end(&got);
	str_clear(&rest);
	str_append_n(&rest, big.data, 4093);
	str_append(&rest, "...\n");
	expect_line(&want, "t", str_c(&rest));
	assert_string_equal(str_c(&got), str_c(&want));

	/* Many long pairs: the line stays bounded, ends in " ...", and is
	 * still one line. */
	str_clear(&big);
	for (int i = 0; i < 1000; i++)
		str_append_c(&big, 'v');
	const char *v = str_c(&big);
	capture_begin();
	log_kv(LOG_INFO, "many", "A", v, "B", v, "C", v, "D", v, "E", v,
	       "F", v, "G", v, "H", v, "I", v, "J", v, "K", v, "L", v,
	       (const char *)NULL);
	capture_end(&got);
	expect_line(&want, "t", "many A=");
	assert_true(got.len <= want.len - strlen("many A=") + 8000 + 1);
	assert_true(got.len > 7000);
	assert_memory_equal(got.data, want.data, want.len);
	assert_string_equal(got.data + got.len - 5, " ...\n");
	assert_ptr_equal(strchr(got.data, '\n'), got.data + got.len - 1);

	str_free(&got);
	str_free(&want);
	str_free(&big);
	str_free(&rest);
}

static void test_journal_datagram(void **state)
{
	struct str got = STR_INIT, want = STR_INIT, err = STR_INIT;
	int fd = bind_journal();

	(void)state;
	assert_int_equal(setenv("SOCKMAIL_LOG", "journal", 1), 0);
	log_open("jtest");
	capture_begin();
	log_kv(LOG_WARNING, "session end",
	       "peer", "192.0.2.1",
	       "Body", "a\nb",
	       "none", (const char *)NULL,
	       "user", "x y",
	       (const char *)NULL);
	capture_end(&err);
	assert_string_equal(str_c(&err), "");	/* nothing on stderr */

	recv_datagram(fd, &got);
	expect_journal_head(&want, LOG_WARNING, "jtest");
	str_append(&want, "MESSAGE=session end PEER=192.0.2.1 BODY=\"a\\nb\" "
			  "USER=\"x y\"\n");
	str_append(&want, "SOCKMAIL_PEER=192.0.2.1\n");
	/* Binary form: name, LF, 64-bit LE length, bytes, LF. */
	str_append(&want, "SOCKMAIL_BODY\n");
	str_append_n(&want, "\x03\0\0\0\0\0\0\0", 8);
	str_append(&want, "a\nb\n");
	str_append(&want, "SOCKMAIL_USER=x y\n");
	assert_bytes_equal(&got, &want);

	/* log_msg: the facility is masked off; the message stays one line. */
	log_msg(LOG_MAIL | LOG_ERR, "bad\nthing %d", 7);
	recv_datagram(fd, &got);
	expect_journal_head(&want, LOG_ERR, "jtest");
	str_append(&want, "MESSAGE=bad\\nthing 7\n");
	assert_bytes_equal(&got, &want);

	/* A long raw value is cut to 1024 bytes ending in "...". */
	struct str big = STR_INIT;
	for (int i = 0; i < 3000; i++)
		str_append_c(&big, 'z');
	log_kv(LOG_DEBUG, "m", "K", str_c(&big), (const char *)NULL);
	recv_datagram(fd, &got);
	expect_journal_head(&want, LOG_DEBUG, "jtest");
	str_append(&want, "MESSAGE=m K=");
	str_append_n(&want, big.data, 1021);
	str_append(&want, "...\nSOCKMAIL_K=");
	str_append_n(&want, big.data, 1021);
	str_append(&want, "...\n");
	assert_bytes_equal(&got, &want);

	/* Nothing else was sent. */
	recv_datagram(fd, &got);
	assert_int_equal(got.len, 0);

	close(fd);
	unlink(sock_path);
	str_free(&big);
	str_free(&got);
	str_free(&want);
	str_free(&err);
}

static void test_journal_unreachable_falls_back(void **state)
{
	struct str got = STR_INIT, want = STR_INIT;

	(void)state;
	unlink(sock_path);
	assert_int_equal(setenv("SOCKMAIL_JOURNAL_SOCKET", sock_path, 1), 0);
	assert_int_equal(setenv("SOCKMAIL_LOG", "journal", 1), 0);
	log_open("fb");
	capture_begin();
	log_kv(LOG_INFO, "lost?", "K", "v", (const char *)NULL);
	capture_end(&got);
	expect_line(&want, "fb", "lost? K=v\n");
	assert_string_equal(str_c(&got), str_c(&want));
	str_free(&got);
	str_free(&want);
}

/* JOURNAL_STREAM naming our stderr picks the journal; anything else not. */
static void test_journal_stream_detection(void **state)
{
	struct str got = STR_INIT, want = STR_INIT, err = STR_INIT;
	char env[64];
	struct stat st;
	int fd = bind_journal();

	(void)state;
	assert_int_equal(unsetenv("SOCKMAIL_LOG"), 0);
	capture_begin();
	assert_int_equal(fstat(2, &st), 0);

	snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);
	log_open("det");
	log_msg(LOG_INFO, "to journal");

	snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", env, 1);
	log_open("det");
	log_msg(LOG_INFO, "to stderr 1");

	setenv("JOURNAL_STREAM", "garbage", 1);
	log_open("det");
	log_msg(LOG_INFO, "to stderr 2");

	unsetenv("JOURNAL_STREAM");
	log_open("det");
	log_msg(LOG_INFO, "to stderr 3");

	/* SOCKMAIL_LOG=stderr beats a matching JOURNAL_STREAM. */
	snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);
	setenv("SOCKMAIL_LOG", "stderr", 1);
	log_open("det");
	log_msg(LOG_INFO, "to stderr 4");
	capture_end(&err);
	unsetenv("JOURNAL_STREAM");

	recv_datagram(fd, &got);
	expect_journal_head(&want, LOG_INFO, "det");
	str_append(&want, "MESSAGE=to journal\n");
	assert_bytes_equal(&got, &want);
	recv_datagram(fd, &got);
	assert_int_equal(got.len, 0);

	str_clear(&want);
	for (int i = 1; i <= 4; i++)
		str_printf(&want, "det[%ld]: to stderr %d\n", (long)getpid(), i);
	assert_string_equal(str_c(&err), str_c(&want));

	close(fd);
	unlink(sock_path);
	str_free(&got);
	str_free(&want);
	str_free(&err);
}

static void test_journal_field_names(void **state)
{
	struct str got = STR_INIT, want = STR_INIT;
	int fd = bind_journal();
	const char *longkey =
		"k123456789012345678901234567890123456789012345678901234567890";

	(void)state;
	setenv("SOCKMAIL_LOG", "journal", 1);
	log_open("names");
	log_kv(LOG_INFO, "n", "msg-id", "1", "", "2", longkey, "3",
	       "\xc3\xa9", "4", (const char *)NULL);
	recv_datagram(fd, &got);
	expect_journal_head(&want, LOG_INFO, "names");
	str_append(&want, "MESSAGE=n MSG_ID=1 _=2 "
		   "K123456789012345678901234567890123456789012345678901234=3 "
		   "__=4\n"
		   "SOCKMAIL_MSG_ID=1\nSOCKMAIL__=2\n"
		   "SOCKMAIL_K123456789012345678901234567890123456789012345678901234=3\n"
		   "SOCKMAIL___=4\n");
	assert_bytes_equal(&got, &want);
	close(fd);
	unlink(sock_path);
	str_free(&got);
	str_free(&want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_without_open),
		cmocka_unit_test(test_stderr_msg),
		cmocka_unit_test(test_stderr_kv),
		cmocka_unit_test(test_errno_kept),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_journal_datagram),
		cmocka_unit_test(test_journal_unreachable_falls_back),
		cmocka_unit_test(test_journal_stream_detection),
		cmocka_unit_test(test_journal_field_names),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
