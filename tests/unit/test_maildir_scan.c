/*
 * test_maildir_scan: the readers' view of a Maildir: listing order across
 * new/ and cur/, sizes with and without ",W=", flags, junk that must be
 * skipped, the message limit, moving to cur/ as seen, deleting, and
 * finding a message again after someone else renamed it.
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
#include <sys/stat.h>
#include <unistd.h>

#include "maildir_scan.h"
#include "str.h"

static char root[] = "/tmp/test_maildir_scan.XXXXXX";
static char md[512];

static void make_dir(const char *sub)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/%s", md, sub);
	assert_int_equal(mkdir(p, 0700), 0);
}

/* A fresh Maildir (cur/ new/ tmp/) per test. */
static int setup(void **state)
{
	static int n;
	(void)state;
	snprintf(md, sizeof md, "%s/md%d", root, ++n);
	if (mkdir(md, 0700) != 0)
		return -1;
	make_dir("cur");
	make_dir("new");
	make_dir("tmp");
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	return mkdtemp(root) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	return system(cmd);
}

static void put(const char *sub, const char *name, const char *content)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/%s/%s", md, sub, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	size_t len = strlen(content);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	close(fd);
}

static bool exists(const char *sub, const char *name)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/%s/%s", md, sub, name);
	return access(p, F_OK) == 0;
}

static void scan_ok(struct maildir_list *l)
{
	struct str err = STR_INIT;
	if (maildir_list_scan(l, md, 100000, &err) != 0)
		fail_msg("scan: %s", str_c(&err));
	str_free(&err);
}

static void test_empty(void **state)
{
	(void)state;
	struct maildir_list l;
	scan_ok(&l);
	assert_int_equal(l.count, 0);
	maildir_list_free(&l);
}

static void test_order_new_and_cur(void **state)
{
	(void)state;
	/* delivery order is by the leading time, then by the unique name,
	 * whichever directory the file is in and whatever its flags */
	put("cur", "1700000300.M000001P1Q1.h,S=1,W=2:2,S", "c\n");
	put("new", "1700000100.M000002P1Q1.h,S=1,W=2", "b\n");
	put("new", "1700000100.M000001P1Q1.h,S=1,W=2", "a\n");
	put("cur", "999999999.M000001P1Q1.h,S=1,W=2:2,", "z\n");
	put("new", "1700000200.M000000P9Q1.h,S=1,W=2", "m\n");
	struct maildir_list l;
	scan_ok(&l);
	assert_int_equal(l.count, 5);
	assert_string_equal(maildir_msg_name(&l, 0),
			    "999999999.M000001P1Q1.h,S=1,W=2:2,");
	assert_string_equal(maildir_msg_name(&l, 1),
			    "1700000100.M000001P1Q1.h,S=1,W=2");
	assert_string_equal(maildir_msg_name(&l, 2),
			    "1700000100.M000002P1Q1.h,S=1,W=2");
	assert_string_equal(maildir_msg_name(&l, 3),
			    "1700000200.M000000P9Q1.h,S=1,W=2");
	assert_string_equal(maildir_msg_name(&l, 4),
			    "1700000300.M000001P1Q1.h,S=1,W=2:2,S");
	assert_int_equal(l.msgs[0].flags, 0);
	assert_int_equal(l.msgs[1].flags, MAILDIR_MSG_NEW);
	assert_int_equal(l.msgs[4].flags, 0);
	/* base name = unique name up to ':' */
	assert_int_equal(l.msgs[4].base_len,
			 strlen("1700000300.M000001P1Q1.h,S=1,W=2"));
	assert_int_equal(l.msgs[1].base_len, l.msgs[1].name_len);
	maildir_list_free(&l);
}

static void test_sizes(void **state)
{
	(void)state;
	/* ,W= is trusted (no read); without it the file is read and LFs not
	 * preceded by CR are counted */
	put("new", "1700000001.A.h,S=6,W=999", "ab\ncd\n");
	put("new", "1700000002.B.h,S=6", "ab\ncd\n");
	put("new", "1700000003.C.h", "x\r\ny\nz");
	put("cur", "1700000004.D.h:2,S", "");
	put("cur", "1700000005.E.h,W=0:2,", "");
	struct maildir_list l;
	scan_ok(&l);
	assert_int_equal(l.count, 5);
	assert_int_equal(l.msgs[0].size, 999);
	assert_int_equal(l.msgs[1].size, 8);
	assert_int_equal(l.msgs[2].size, 6 + 1);	/* 6 bytes, one bare LF */
	assert_int_equal(l.msgs[3].size, 0);
	assert_int_equal(l.msgs[4].size, 0);
	maildir_list_free(&l);
}

static void test_flags(void **state)
{
	(void)state;
	put("cur", "1.A.h,S=1,W=2:2,FRS", "a\n");
	put("cur", "2.B.h,S=1,W=2:2,", "a\n");
	put("new", "3.C.h,S=1,W=2", "a\n");
	struct maildir_list l;
	scan_ok(&l);
	assert_string_equal(maildir_msg_info_flags(&l, 0), "FRS");
	assert_string_equal(maildir_msg_info_flags(&l, 1), "");
	assert_string_equal(maildir_msg_info_flags(&l, 2), "");
	maildir_list_free(&l);
}

static void test_skip_junk(void **state)
{
	(void)state;
	put("new", ".hidden", "x\n");
	put("cur", ".1700000000.dot.h", "x\n");
	put("new", "1700000001.real.h,S=2,W=3", "x\n");
	char p[PATH_MAX], t[PATH_MAX];
	snprintf(p, sizeof p, "%s/new/1700000002.adir.h", md);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof p, "%s/cur/1700000003.link.h", md);
	snprintf(t, sizeof t, "%s/new/1700000001.real.h,S=2,W=3", md);
	assert_int_equal(symlink(t, p), 0);
	snprintf(p, sizeof p, "%s/cur/1700000004.fifo.h", md);
	assert_int_equal(mkfifo(p, 0600), 0);
	struct maildir_list l;
	scan_ok(&l);
	assert_int_equal(l.count, 1);
	assert_string_equal(maildir_msg_name(&l, 0), "1700000001.real.h,S=2,W=3");
	maildir_list_free(&l);
}

static void test_limit_and_errors(void **state)
{
	(void)state;
	put("new", "1.A.h,S=1,W=2", "a\n");
	put("new", "2.B.h,S=1,W=2", "a\n");
	struct maildir_list l;
	struct str err = STR_INIT;
	assert_int_equal(maildir_list_scan(&l, md, 1, &err), -1);
	assert_int_equal(errno, E2BIG);
	assert_string_equal(str_c(&err), "more than 1 messages");
	assert_int_equal(l.count, 0);
	maildir_list_free(&l);
	str_clear(&err);
	assert_int_equal(maildir_list_scan(&l, md, 2, &err), 0);
	assert_int_equal(l.count, 2);
	maildir_list_free(&l);

	char missing[PATH_MAX];
	snprintf(missing, sizeof missing, "%s/nope", md);
	str_clear(&err);
	assert_int_equal(maildir_list_scan(&l, missing, 10, &err), -1);
	assert_int_equal(errno, ENOENT);
	struct str expect = STR_INIT;
	str_printf(&expect, "%s: No such file or directory", missing);
	assert_string_equal(str_c(&err), str_c(&expect));
	str_free(&expect);
	maildir_list_free(&l);
	str_free(&err);
}

static void test_mark_seen(void **state)
{
	(void)state;
	put("new", "1.A.h,S=2,W=3", "x\n");
	put("cur", "2.B.h,S=2,W=3:2,FR", "x\n");
	put("cur", "3.C.h,S=2,W=3:2,S", "x\n");
	put("new", "4.D.h,S=2,W=3:2,T", "x\n");
	struct maildir_list l;
	scan_ok(&l);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(maildir_msg_mark_seen(&l, i), 0);
	assert_string_equal(maildir_msg_name(&l, 0), "1.A.h,S=2,W=3:2,S");
	assert_string_equal(maildir_msg_name(&l, 1), "2.B.h,S=2,W=3:2,FRS");
	assert_string_equal(maildir_msg_name(&l, 2), "3.C.h,S=2,W=3:2,S");
	assert_string_equal(maildir_msg_name(&l, 3), "4.D.h,S=2,W=3:2,ST");
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(l.msgs[i].flags & MAILDIR_MSG_NEW, 0);
	assert_int_equal(maildir_list_sync(&l), 0);
	assert_true(exists("cur", "1.A.h,S=2,W=3:2,S"));
	assert_false(exists("new", "1.A.h,S=2,W=3"));
	assert_true(exists("cur", "2.B.h,S=2,W=3:2,FRS"));
	assert_false(exists("cur", "2.B.h,S=2,W=3:2,FR"));
	assert_true(exists("cur", "3.C.h,S=2,W=3:2,S"));
	assert_true(exists("cur", "4.D.h,S=2,W=3:2,ST"));
	/* the entries still open */
	int fd = maildir_msg_open(&l, 0);
	assert_true(fd >= 0);
	close(fd);
	maildir_list_free(&l);

	/* the order does not change with the move */
	scan_ok(&l);
	assert_string_equal(maildir_msg_name(&l, 0), "1.A.h,S=2,W=3:2,S");
	assert_string_equal(maildir_msg_name(&l, 3), "4.D.h,S=2,W=3:2,ST");
	maildir_list_free(&l);
}

static void test_delete(void **state)
{
	(void)state;
	put("new", "1.A.h,S=2,W=3", "x\n");
	put("cur", "2.B.h,S=2,W=3:2,S", "x\n");
	put("cur", "3.C.h,S=2,W=3:2,S", "x\n");
	struct maildir_list l;
	scan_ok(&l);
	assert_int_equal(maildir_msg_delete(&l, 0), 0);
	assert_int_equal(maildir_msg_delete(&l, 2), 0);
	assert_int_equal(maildir_list_sync(&l), 0);
	assert_false(exists("new", "1.A.h,S=2,W=3"));
	assert_true(exists("cur", "2.B.h,S=2,W=3:2,S"));
	assert_false(exists("cur", "3.C.h,S=2,W=3:2,S"));
	/* deleting again, or what someone else deleted, is fine */
	assert_int_equal(maildir_msg_delete(&l, 0), 0);
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/cur/2.B.h,S=2,W=3:2,S", md);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(maildir_msg_delete(&l, 1), 0);
	assert_int_equal(maildir_msg_open(&l, 1), -1);
	assert_int_equal(errno, ENOENT);
	maildir_list_free(&l);
	scan_ok(&l);
	assert_int_equal(l.count, 0);
	maildir_list_free(&l);
}

static void test_renamed_by_someone_else(void **state)
{
	(void)state;
	put("new", "1.A.h,S=2,W=3", "x\n");
	put("cur", "2.B.h,S=2,W=3:2,S", "y\n");
	struct maildir_list l;
	scan_ok(&l);
	/* another client moves 1 to cur/ and flags 2 */
	char a[PATH_MAX], b[PATH_MAX];
	snprintf(a, sizeof a, "%s/new/1.A.h,S=2,W=3", md);
	snprintf(b, sizeof b, "%s/cur/1.A.h,S=2,W=3:2,", md);
	assert_int_equal(rename(a, b), 0);
	snprintf(a, sizeof a, "%s/cur/2.B.h,S=2,W=3:2,S", md);
	snprintf(b, sizeof b, "%s/cur/2.B.h,S=2,W=3:2,FRST", md);
	assert_int_equal(rename(a, b), 0);

	int fd = maildir_msg_open(&l, 0);
	assert_true(fd >= 0);
	char c;
	assert_int_equal(read(fd, &c, 1), 1);
	assert_int_equal(c, 'x');
	close(fd);
	assert_string_equal(maildir_msg_name(&l, 0), "1.A.h,S=2,W=3:2,");
	assert_int_equal(l.msgs[0].flags & MAILDIR_MSG_NEW, 0);
	assert_int_equal(maildir_msg_mark_seen(&l, 1), 0);	/* has S */
	assert_int_equal(maildir_msg_delete(&l, 1), 0);
	assert_string_equal(maildir_msg_name(&l, 1), "2.B.h,S=2,W=3:2,FRST");
	assert_false(exists("cur", "2.B.h,S=2,W=3:2,FRST"));
	assert_int_equal(maildir_msg_mark_seen(&l, 0), 0);
	assert_true(exists("cur", "1.A.h,S=2,W=3:2,S"));
	assert_int_equal(maildir_list_sync(&l), 0);
	maildir_list_free(&l);
}

static void test_many(void **state)
{
	(void)state;
	/* 3000 messages in reverse creation order come out sorted; the arena
	 * and the index grow past their first allocation */
	char name[64];
	for (int i = 2999; i >= 0; i--) {
		snprintf(name, sizeof name,
			 "%d.M%06dP1Q1.host.example.org,S=2,W=3", 1600000000 + i / 10, i);
		put(i % 3 ? "new" : "cur", name, "x\n");
	}
	struct maildir_list l;
	scan_ok(&l);
	assert_int_equal(l.count, 3000);
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof name,
			 "%d.M%06dP1Q1.host.example.org,S=2,W=3", 1600000000 + i / 10, i);
		assert_string_equal(maildir_msg_name(&l, (size_t)i), name);
		assert_int_equal(l.msgs[i].size, 3);
	}
	maildir_list_free(&l);
}

/* Host parts are kept once in a table and cut out of the stored names:
 * names with different, short, missing or too many hosts all come back
 * whole, sort as whole names, and survive renames. */
static void test_hosts(void **state)
{
	(void)state;
	put("new", "1700000001.M1P1Q1.mx.example.org,S=2,W=3", "a\n");
	put("cur", "1700000001.M1P1Q2.mx.example.org,S=2,W=3:2,S", "b\n");
	put("new", "1700000001.M1P1Q1.other.example.net,S=2,W=3", "c\n");
	put("new", "1700000001.M1P1Q1.ab,S=2,W=3", "d\n");
	put("new", "1700000001_nodots", "e\n");
	put("cur", "1700000001.M1P1Q1.mx.example.org:2,", "f\n");
	struct maildir_list l;
	scan_ok(&l);
	assert_int_equal(l.count, 6);
	static const char *const want[] = {
		"1700000001.M1P1Q1.ab,S=2,W=3",
		"1700000001.M1P1Q1.mx.example.org:2,",
		"1700000001.M1P1Q1.mx.example.org,S=2,W=3",
		"1700000001.M1P1Q1.other.example.net,S=2,W=3",
		"1700000001.M1P1Q2.mx.example.org,S=2,W=3:2,S",
		"1700000001_nodots",
	};
	for (size_t i = 0; i < 6; i++) {
		assert_string_equal(maildir_msg_name(&l, i), want[i]);
		assert_int_equal(l.msgs[i].name_len, strlen(want[i]));
	}
	assert_int_equal(l.n_hosts, 2);
	assert_int_equal(l.msgs[0].host, 0);	/* "ab": too short to share */
	assert_int_equal(l.msgs[5].host, 0);
	assert_int_not_equal(l.msgs[2].host, 0);
	assert_int_equal(l.msgs[2].host, l.msgs[4].host);
	assert_string_equal(maildir_msg_info_flags(&l, 4), "S");
	assert_int_equal(l.msgs[4].base_len,
			 strlen("1700000001.M1P1Q2.mx.example.org,S=2,W=3"));
	/* moved and renamed: the host stays cut out */
	assert_int_equal(maildir_msg_mark_seen(&l, 2), 0);
	assert_string_equal(maildir_msg_name(&l, 2),
			    "1700000001.M1P1Q1.mx.example.org,S=2,W=3:2,S");
	assert_true(exists("cur", "1700000001.M1P1Q1.mx.example.org,S=2,W=3:2,S"));
	char a[PATH_MAX], b[PATH_MAX];
	snprintf(a, sizeof a, "%s/new/1700000001.M1P1Q1.other.example.net,S=2,W=3", md);
	snprintf(b, sizeof b, "%s/cur/1700000001.M1P1Q1.other.example.net,S=2,W=3:2,RS", md);
	assert_int_equal(rename(a, b), 0);
	int fd = maildir_msg_open(&l, 3);
	assert_true(fd >= 0);
	close(fd);
	assert_string_equal(maildir_msg_name(&l, 3),
			    "1700000001.M1P1Q1.other.example.net,S=2,W=3:2,RS");
	maildir_list_free(&l);
}

static void test_host_table_full(void **state)
{
	(void)state;
	char name[128];
	for (int i = 0; i < MAILDIR_MAX_HOSTS + 45; i++) {
		snprintf(name, sizeof name, "%d.M%dP1Q1.host%03d.example,S=2,W=3",
			 1700000000 + i, i, i);
		put("new", name, "x\n");
	}
	struct maildir_list l;
	scan_ok(&l);
	assert_int_equal(l.count, MAILDIR_MAX_HOSTS + 45);
	assert_int_equal(l.n_hosts, MAILDIR_MAX_HOSTS);
	/* which names got a table entry depends on the readdir order */
	int whole = 0;
	for (int i = 0; i < MAILDIR_MAX_HOSTS + 45; i++) {
		snprintf(name, sizeof name, "%d.M%dP1Q1.host%03d.example,S=2,W=3",
			 1700000000 + i, i, i);
		assert_string_equal(maildir_msg_name(&l, (size_t)i), name);
		whole += l.msgs[i].host == 0;
	}
	assert_int_equal(whole, 45);
	maildir_list_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_empty, setup),
		cmocka_unit_test_setup(test_order_new_and_cur, setup),
		cmocka_unit_test_setup(test_sizes, setup),
		cmocka_unit_test_setup(test_flags, setup),
		cmocka_unit_test_setup(test_skip_junk, setup),
		cmocka_unit_test_setup(test_limit_and_errors, setup),
		cmocka_unit_test_setup(test_mark_seen, setup),
		cmocka_unit_test_setup(test_delete, setup),
		cmocka_unit_test_setup(test_renamed_by_someone_else, setup),
		cmocka_unit_test_setup(test_many, setup),
		cmocka_unit_test_setup(test_hosts, setup),
		cmocka_unit_test_setup(test_host_table_full, setup),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
