/*
 * test_authlimit: the counting key (IPv4, IPv6 /64, unknown), counting and
 * blocking at exactly the limit, window expiry with a fake clock, /64
 * grouping, the fail2ban log line as captured from stderr, concurrent
 * failures from forked processes, the sweep that keeps authfail.tdb from
 * growing, and that a broken database blocks nobody.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tdb.h>

#include "authlimit.h"
#include "config.h"
#include "log.h"
#include "str.h"

#define T0 ((time_t)1700000000)

struct fixture {
	char dir[64];
	char path[128];
	struct config cfg;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);

	strcpy(f->dir, "/tmp/test_authlimit.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/%s", f->dir, AUTHLIMIT_FILE);
	config_defaults(&f->cfg);
	free(f->cfg.state_dir);
	f->cfg.state_dir = xstrdup(f->dir);
	f->cfg.auth_fail_limit = 3;
	f->cfg.auth_fail_window = 900;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->path);
	rmdir(f->dir);
	config_free(&f->cfg);
	free(f);
	return 0;
}

/* ---- stderr capture ---- */

static int saved_stderr = -1;
static char capture_path[128];

static void capture_start(const char *dir)
{
	snprintf(capture_path, sizeof capture_path, "%s/stderr", dir);
	int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	fflush(stderr);
	saved_stderr = dup(2);
	assert_true(saved_stderr >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	close(fd);
}

/* Stop capturing; what was written. */
static void capture_end(struct str *out)
{
	char buf[4096];
	ssize_t n;

	assert_int_equal(dup2(saved_stderr, 2), 2);
	close(saved_stderr);
	int fd = open(capture_path, O_RDONLY);
	assert_true(fd >= 0);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		str_append_n(out, buf, (size_t)n);
	close(fd);
	unlink(capture_path);
}

/* Failures logged to /dev/null: tests that only count. */
static void fail_quietly(const struct config *cfg, const char *peer,
			 time_t now)
{
	fflush(stderr);
	int saved = dup(2);
	int fd = open("/dev/null", O_WRONLY);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, 2);
	close(fd);
	authlimit_failure(cfg, peer, "user@example.org", "smtp", now);
	dup2(saved, 2);
	close(saved);
}

/* Records in the file, the meta record included; -1 if there is none. */
static int records(const char *path)
{
	struct tdb_context *tdb = tdb_open(path, 0, TDB_DEFAULT, O_RDWR, 0);
	if (tdb == NULL)
		return -1;
	int n = tdb_traverse_read(tdb, NULL, NULL);
	tdb_close(tdb);
	return n;
}

/* ---- keys ---- */

static void check_key(const char *peer, const char *want)
{
	char key[AUTHLIMIT_KEY_MAX];

	memset(key, 'x', sizeof key);
	authlimit_key(peer, key, sizeof key);
	assert_string_equal(key, want);
}

static void test_key(void **state)
{
	(void)state;
	check_key("192.0.2.1", "192.0.2.1");
	check_key("255.255.255.255", "255.255.255.255");
	check_key("IPv6:2001:db8::1", "2001:db8::/64");
	check_key("IPv6:2001:DB8:0:0:ffff:ffff:ffff:ffff", "2001:db8::/64");
	check_key("IPv6:2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64");
	check_key("ipv6:2001:db8:a:b::1", "2001:db8:a:b::/64");
	check_key("2001:db8:a:b::1", "2001:db8:a:b::/64");
	check_key("IPv6:::1", "::/64");
	check_key("IPv6:fe80::1234", "fe80::/64");
	check_key("IPv6:::ffff:192.0.2.9", "192.0.2.9");	/* mapped */
	check_key("", "unknown");
	check_key(NULL, "unknown");
	check_key("IPv6:", "unknown");
	check_key("garbage", "unknown");
	check_key("192.0.2.1 ", "unknown");
	check_key("192.0.2", "unknown");
	check_key("192.0.2.256", "unknown");
	check_key("IPv6:2001:db8::g", "unknown");
	check_key("IPv6:fe80::1%eth0", "unknown");
	check_key("IPv6:2001:db8:0:0:0:0:0:0:1", "unknown");
	char longpeer[300];
	memset(longpeer, '1', sizeof longpeer - 1);
	longpeer[sizeof longpeer - 1] = '\0';
	check_key(longpeer, "unknown");

	/* A short buffer is cut, still terminated. */
	char small[5];
	authlimit_key("IPv6:2001:db8::1", small, sizeof small);
	assert_string_equal(small, "2001");
}

/* ---- counting ---- */

static void test_count_and_block(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	/* Asking does not create the file. */
	assert_false(authlimit_blocked(&f->cfg, "192.0.2.1", T0));
	assert_int_equal(authlimit_count(&f->cfg, "192.0.2.1", T0), 0);
	assert_int_equal(stat(f->path, &st), -1);
	assert_int_equal(errno, ENOENT);

	fail_quietly(&f->cfg, "192.0.2.1", T0);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(authlimit_count(&f->cfg, "192.0.2.1", T0), 1);
	fail_quietly(&f->cfg, "192.0.2.1", T0 + 1);
	assert_false(authlimit_blocked(&f->cfg, "192.0.2.1", T0 + 1));
	fail_quietly(&f->cfg, "192.0.2.1", T0 + 2);
	/* Exactly the limit: blocked. */
	assert_int_equal(authlimit_count(&f->cfg, "192.0.2.1", T0 + 2), 3);
	assert_true(authlimit_blocked(&f->cfg, "192.0.2.1", T0 + 2));
	/* Other addresses are not. */
	assert_false(authlimit_blocked(&f->cfg, "192.0.2.2", T0 + 2));
	assert_false(authlimit_blocked(&f->cfg, "IPv6:2001:db8::1", T0 + 2));
	assert_false(authlimit_blocked(&f->cfg, "", T0 + 2));

	/* The default: 10 failures block the 11th attempt. */
	f->cfg.auth_fail_limit = 10;
	for (int i = 0; i < 9; i++)
		fail_quietly(&f->cfg, "198.51.100.7", T0);
	assert_false(authlimit_blocked(&f->cfg, "198.51.100.7", T0));
	fail_quietly(&f->cfg, "198.51.100.7", T0);
	assert_true(authlimit_blocked(&f->cfg, "198.51.100.7", T0));
}

static void test_window(void **state)
{
	struct fixture *f = *state;
	const char *p = "203.0.113.5";

	fail_quietly(&f->cfg, p, T0);
	fail_quietly(&f->cfg, p, T0 + 100);
	fail_quietly(&f->cfg, p, T0 + 200);
	/* The window runs from the first failure. */
	assert_true(authlimit_blocked(&f->cfg, p, T0 + 899));
	assert_int_equal(authlimit_count(&f->cfg, p, T0 + 899), 3);
	assert_false(authlimit_blocked(&f->cfg, p, T0 + 900));
	assert_int_equal(authlimit_count(&f->cfg, p, T0 + 900), 0);

	/* A failure after the window starts counting again. */
	fail_quietly(&f->cfg, p, T0 + 950);
	assert_int_equal(authlimit_count(&f->cfg, p, T0 + 950), 1);
	fail_quietly(&f->cfg, p, T0 + 960);
	fail_quietly(&f->cfg, p, T0 + 1840);
	assert_true(authlimit_blocked(&f->cfg, p, T0 + 1849));
	assert_false(authlimit_blocked(&f->cfg, p, T0 + 1850));

	/* A clock set back does not block for the time it jumped. */
	assert_false(authlimit_blocked(&f->cfg, p, T0));
}

static void test_ipv6_prefix(void **state)
{
	struct fixture *f = *state;

	fail_quietly(&f->cfg, "IPv6:2001:db8:1:1::a", T0);
	fail_quietly(&f->cfg, "IPv6:2001:db8:1:1:ffff:2:3:4", T0);
	assert_int_equal(authlimit_count(&f->cfg, "IPv6:2001:db8:1:1::b", T0),
			 2);
	assert_false(authlimit_blocked(&f->cfg, "IPv6:2001:db8:1:1::b", T0));
	fail_quietly(&f->cfg, "2001:db8:1:1::99", T0);
	/* Any address of that /64 is now blocked ... */
	assert_true(authlimit_blocked(&f->cfg, "IPv6:2001:db8:1:1::c", T0));
	assert_true(authlimit_blocked(&f->cfg, "IPv6:2001:db8:1:1::a", T0));
	/* ... and the neighbouring /64s are not. */
	assert_false(authlimit_blocked(&f->cfg, "IPv6:2001:db8:1:2::a", T0));
	assert_false(authlimit_blocked(&f->cfg, "IPv6:2001:db8:1:0::a", T0));
	assert_int_equal(authlimit_count(&f->cfg, "IPv6:2001:db8:1:2::a", T0),
			 0);
}

/* ---- the log line ---- */

static void test_log_line(void **state)
{
	struct fixture *f = *state;
	struct str out = STR_INIT, want = STR_INIT;

	setenv("SOCKMAIL_LOG", "stderr", 1);
	log_open("authtest");
	capture_start(f->dir);
	authlimit_failure(&f->cfg, "IPv6:2001:db8::7", "bob@example.org",
			  "smtp", T0);
	authlimit_failure(&f->cfg, "192.0.2.1", NULL, "pop3", T0);
	authlimit_failure(&f->cfg, "", "a b\"c", "imap", T0);
	capture_end(&out);

	long pid = (long)getpid();
	str_printf(&want,
		   "authtest[%ld]: authentication failed PEER=IPv6:2001:db8::7"
		   " USER=bob@example.org SERVICE=smtp\n"
		   "authtest[%ld]: authentication failed PEER=192.0.2.1"
		   " USER=\"\" SERVICE=pop3\n"
		   "authtest[%ld]: authentication failed PEER=unknown"
		   " USER=\"a b\\\"c\" SERVICE=imap\n", pid, pid, pid);
	assert_string_equal(str_c(&out), str_c(&want));
	assert_int_equal(authlimit_count(&f->cfg, "IPv6:2001:db8::8", T0), 1);
	assert_int_equal(authlimit_count(&f->cfg, "", T0), 1);
	str_free(&out);
	str_free(&want);
}

/* The logged user name is cut at 320 octets, and a shorter one is read
 * only up to its NUL: a heap copy of exactly its size (as the handlers
 * pass it) must not be read past its end (valgrind found the 320-byte
 * copy of a short name; ASan sees it here). */
static void test_log_user_bounds(void **state)
{
	struct fixture *f = *state;
	struct str out = STR_INIT, want = STR_INIT;
	char *shortname = xstrdup("eve@example.org");
	char *longname = xmalloc(401);

	memset(longname, 'a', 400);
	longname[400] = '\0';
	setenv("SOCKMAIL_LOG", "stderr", 1);
	log_open("authtest");
	capture_start(f->dir);
	authlimit_failure(&f->cfg, "192.0.2.3", shortname, "pop3", T0);
	authlimit_failure(&f->cfg, "192.0.2.3", longname, "pop3", T0);
	capture_end(&out);

	long pid = (long)getpid();
	str_printf(&want, "authtest[%ld]: authentication failed PEER=192.0.2.3"
			  " USER=eve@example.org SERVICE=pop3\n"
			  "authtest[%ld]: authentication failed PEER=192.0.2.3"
			  " USER=%.320s SERVICE=pop3\n", pid, pid, longname);
	assert_string_equal(str_c(&out), str_c(&want));
	free(shortname);
	free(longname);
	str_free(&out);
	str_free(&want);
}

/* ---- concurrency ---- */

static void test_concurrent(void **state)
{
	struct fixture *f = *state;
	enum { PROCS = 8, EACH = 100 };
	pid_t pids[PROCS];

	f->cfg.auth_fail_limit = 1000000;
	for (int i = 0; i < PROCS; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			int fd = open("/dev/null", O_WRONLY);
			dup2(fd, 2);
			/* Different peers of one /64 and one IPv4 address,
			 * and times that cross sweeps. */
			for (int j = 0; j < EACH; j++) {
				char peer[64];
				snprintf(peer, sizeof peer,
					 "IPv6:2001:db8:5:5::%x", i * EACH + j);
				authlimit_failure(&f->cfg, peer, "u", "smtp",
						  T0 + j);
				authlimit_failure(&f->cfg, "192.0.2.77", "u",
						  "smtp", T0 + j);
			}
			_exit(0);
		}
	}
	for (int i = 0; i < PROCS; i++) {
		int status;
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(authlimit_count(&f->cfg, "IPv6:2001:db8:5:5::1",
					 T0 + EACH), PROCS * EACH);
	assert_int_equal(authlimit_count(&f->cfg, "192.0.2.77", T0 + EACH),
			 PROCS * EACH);
	assert_int_equal(records(f->path), 3);	/* two keys and the meta */
}

/* ---- keeping the file small ---- */

static void fail_many(const struct config *cfg, int cycle, int n, time_t now)
{
	fflush(stderr);
	int saved = dup(2);
	int fd = open("/dev/null", O_WRONLY);
	dup2(fd, 2);
	close(fd);
	for (int i = 0; i < n; i++) {
		char peer[32];
		snprintf(peer, sizeof peer, "10.%d.%d.%d", cycle, i / 256,
			 i % 256);
		authlimit_failure(cfg, peer, "u", "smtp", now);
	}
	dup2(saved, 2);
	close(saved);
}

static void test_sweep(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	f->cfg.auth_fail_limit = 1000;
	fail_many(&f->cfg, 0, 2000, T0);		/* sweeps at T0 */
	assert_int_equal(records(f->path), 2000 + 1);

	/* Not expired at the next sweep (T0+100), expired by T0+1001. */
	fail_quietly(&f->cfg, "192.0.2.100", T0 + 100);
	assert_int_equal(records(f->path), 2002);

	/* T0+950: the 2000 have expired and are swept; 192.0.2.100 not. */
	fail_quietly(&f->cfg, "192.0.2.200", T0 + 950);
	assert_int_equal(records(f->path), 3);
	assert_int_equal(authlimit_count(&f->cfg, "192.0.2.100", T0 + 950),
			 1);

	/* At most one sweep a minute: 192.0.2.100 has expired by T0+1001,
	 * but the last sweep was 51 s before. */
	fail_quietly(&f->cfg, "192.0.2.201", T0 + 1001);
	assert_int_equal(records(f->path), 4);
	fail_quietly(&f->cfg, "192.0.2.202", T0 + 1009);
	assert_int_equal(records(f->path), 5);
	fail_quietly(&f->cfg, "192.0.2.203", T0 + 1011);
	assert_int_equal(records(f->path), 5);		/* .100 gone */
	assert_int_equal(authlimit_count(&f->cfg, "192.0.2.200", T0 + 1011),
			 1);

	/* Waves of new addresses, a window apart: the file stops growing,
	 * tdb reuses what the sweeps freed. */
	off_t size[9];
	for (int cycle = 1; cycle <= 8; cycle++) {
		fail_many(&f->cfg, cycle, 2000, T0 + cycle * 2000);
		assert_int_equal(stat(f->path, &st), 0);
		size[cycle] = st.st_size;
		assert_true(records(f->path) <= 2000 + 1);
	}
	printf("authfail.tdb after waves of 2000 addresses: %lld, %lld ... "
	       "%lld bytes\n", (long long)size[1], (long long)size[2],
	       (long long)size[8]);
	assert_true(size[8] <= size[2] + size[2] / 10);
}

/* ---- a broken database blocks nobody ---- */

static size_t count_of(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void test_db_errors(void **state)
{
	struct fixture *f = *state;
	struct str out = STR_INIT;

	/* Something tdb cannot open where the file should be. */
	assert_int_equal(mkdir(f->path, 0700), 0);
	setenv("SOCKMAIL_LOG", "stderr", 1);
	log_open("authtest");
	capture_start(f->dir);
	for (int i = 0; i < 20; i++) {
		authlimit_failure(&f->cfg, "192.0.2.9", "x", "smtp", T0);
		assert_false(authlimit_blocked(&f->cfg, "192.0.2.9", T0));
	}
	/* A state_dir that is not there. */
	char *saved = f->cfg.state_dir;
	f->cfg.state_dir = xstrdup("/nonexistent/sockmail-test");
	authlimit_failure(&f->cfg, "192.0.2.9", "x", "smtp", T0);
	assert_false(authlimit_blocked(&f->cfg, "192.0.2.9", T0));
	free(f->cfg.state_dir);
	f->cfg.state_dir = saved;
	capture_end(&out);
	assert_int_equal(rmdir(f->path), 0);

	/* Every failure logged, the trouble once. */
	const char *text = str_c(&out);
	assert_int_equal(count_of(text, "\n"), 22);
	assert_int_equal(count_of(text, "]: authentication failed "
				  "PEER=192.0.2.9 USER=x SERVICE=smtp\n"), 21);
	assert_int_equal(count_of(text, "]: auth rate limit disabled: "
				  "cannot open "), 1);
	assert_non_null(strstr(text, f->path));
	str_free(&out);
}

/* A file that is not a tdb: not blocked, and the next failure makes a
 * fresh database of it (tdb_open with O_CREAT does), so counting resumes. */
static void test_junk_file(void **state)
{
	struct fixture *f = *state;
	static const char junk[] = "this is not a tdb file, not at all....";

	int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(write(fd, junk, sizeof junk - 1),
				 (ssize_t)(sizeof junk - 1));
	close(fd);
	assert_false(authlimit_blocked(&f->cfg, "192.0.2.9", T0));
	assert_int_equal(authlimit_count(&f->cfg, "192.0.2.9", T0), 0);
	for (int i = 0; i < 3; i++)
		fail_quietly(&f->cfg, "192.0.2.9", T0);
	assert_true(authlimit_blocked(&f->cfg, "192.0.2.9", T0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key),
		cmocka_unit_test_setup_teardown(test_count_and_block, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipv6_prefix, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_log_line, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_log_user_bounds, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
		/* Last: the error is logged once per process. */
		cmocka_unit_test_setup_teardown(test_db_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_junk_file, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
