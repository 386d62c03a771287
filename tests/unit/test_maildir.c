/*
 * Unit tests for common/maildir.c: Maildir++ creation, unique names, and
 * delivery of one written file into several Maildirs with ,S= and ,W=.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maildir.h"

static char root[] = "/var/tmp/sockmail-test-maildir-XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	return system(cmd);
}

static int count_entries(const char *dir, char *first, size_t first_size)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n++ == 0 && first)
			snprintf(first, first_size, "%s", e->d_name);
	}
	closedir(d);
	return n;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_create(void **state)
{
	(void)state;
	struct str p = STR_INIT;
	maildir_path(root, "alice@example.org", &p);
	assert_int_equal(maildir_create(str_c(&p), (uid_t)-1, (gid_t)-1), 0);
	const char *subs[] = { "cur", "new", "tmp", ".Sent/cur", ".Drafts/new",
			       ".Trash/tmp", ".Junk/cur", ".Archive/new" };
	for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
		struct str d = STR_INIT;
		str_printf(&d, "%s/%s", str_c(&p), subs[i]);
		assert_true(is_dir(str_c(&d)));
		str_free(&d);
	}
	struct str mf = STR_INIT;
	str_printf(&mf, "%s/.Sent/maildirfolder", str_c(&p));
	assert_int_equal(access(str_c(&mf), F_OK), 0);
	/* again: existing directories are fine */
	assert_int_equal(maildir_create(str_c(&p), (uid_t)-1, (gid_t)-1), 0);
	str_free(&mf);
	str_free(&p);
}

static void test_path(void **state)
{
	(void)state;
	struct str p = STR_INIT;
	maildir_path("/m", "bob@example.net", &p);
	assert_string_equal(str_c(&p), "/m/example.net/bob");
	str_free(&p);
}

static void test_unique_names_differ(void **state)
{
	(void)state;
	struct str a = STR_INIT, b = STR_INIT;
	maildir_unique_name(&a);
	maildir_unique_name(&b);
	assert_string_not_equal(str_c(&a), str_c(&b));
	assert_null(strchr(str_c(&a), '/'));
	assert_null(strchr(str_c(&a), ':'));
	str_free(&a);
	str_free(&b);
}

static void test_deliver_two(void **state)
{
	(void)state;
	struct str m1 = STR_INIT, m2 = STR_INIT, name = STR_INIT;
	maildir_path(root, "one@example.org", &m1);
	maildir_path(root, "two@example.org", &m2);
	assert_int_equal(maildir_create(str_c(&m1), (uid_t)-1, (gid_t)-1), 0);
	assert_int_equal(maildir_create(str_c(&m2), (uid_t)-1, (gid_t)-1), 0);

	struct mailfile f;
	assert_int_equal(mailfile_open(&f, str_c(&m1)), 0);
	const char text[] = "Subject: hi\n\nline one\nline two\n";
	mailfile_write(&f, text, 10);
	mailfile_write(&f, text + 10, sizeof text - 1 - 10);
	assert_int_equal(mailfile_finish(&f), 0);
	assert_int_equal(mailfile_deliver(&f, str_c(&m1), &name), 0);
	char expect[64];
	snprintf(expect, sizeof expect, ",S=%zu,W=%zu", sizeof text - 1,
		 sizeof text - 1 + 4);
	assert_non_null(strstr(str_c(&name), expect));
	assert_int_equal(mailfile_deliver(&f, str_c(&m2), NULL), 0);
	mailfile_close(&f);

	/* each Maildir has the file in new/ with the exact content, and
	 * nothing is left in tmp/ */
	struct str d = STR_INIT;
	char first[256];
	for (int i = 0; i < 2; i++) {
		const char *m = str_c(i ? &m2 : &m1);
		str_clear(&d);
		str_printf(&d, "%s/new", m);
		assert_int_equal(count_entries(str_c(&d), first, sizeof first), 1);
		assert_non_null(strstr(first, expect));
		str_printf(&d, "/%s", first);
		FILE *fp = fopen(str_c(&d), "r");
		assert_non_null(fp);
		char got[128];
		size_t n = fread(got, 1, sizeof got, fp);
		fclose(fp);
		assert_int_equal(n, sizeof text - 1);
		assert_memory_equal(got, text, n);
		str_clear(&d);
		str_printf(&d, "%s/tmp", m);
		assert_int_equal(count_entries(str_c(&d), NULL, 0), 0);
	}
	/* take one back */
	assert_int_equal(maildir_undeliver(str_c(&m1), str_c(&name)), 0);
	str_clear(&d);
	str_printf(&d, "%s/new", str_c(&m1));
	assert_int_equal(count_entries(str_c(&d), NULL, 0), 0);
	str_free(&d);
	str_free(&m1);
	str_free(&m2);
	str_free(&name);
}

/* A retried delivery under the same unique part makes no second copy,
 * whether the first is still in new/ or a client moved it to cur/. */
static void test_deliver_once(void **state)
{
	(void)state;
	struct str m = STR_INIT, d = STR_INIT, name = STR_INIT, to = STR_INIT;
	maildir_path(root, "once@example.org", &m);
	assert_int_equal(maildir_create(str_c(&m), (uid_t)-1, (gid_t)-1), 0);
	struct mailfile f;
	assert_int_equal(mailfile_open(&f, str_c(&m)), 0);
	mailfile_write(&f, "Subject: once\n\nbody\n", 21);
	assert_int_equal(mailfile_finish(&f), 0);

	assert_int_equal(mailfile_deliver_once(&f, str_c(&m), 1700000000,
					       "QabcR0", &name), 0);
	assert_true(strncmp(str_c(&name), "1700000000.QabcR0.", 18) == 0);
	assert_non_null(strstr(str_c(&name), ",S=21,W=24"));
	assert_int_equal(mailfile_deliver_once(&f, str_c(&m), 1700000000,
					       "QabcR0", NULL), 1);
	str_printf(&d, "%s/new", str_c(&m));
	assert_int_equal(count_entries(str_c(&d), NULL, 0), 1);

	/* read by a client: now cur/<name>:2,S */
	str_printf(&d, "/%s", str_c(&name));
	str_printf(&to, "%s/cur/%s:2,S", str_c(&m), str_c(&name));
	assert_int_equal(rename(str_c(&d), str_c(&to)), 0);
	assert_int_equal(mailfile_deliver_once(&f, str_c(&m), 1700000000,
					       "QabcR0", NULL), 1);
	/* another recipient (index), another time: copies of their own; a
	 * unique part that only starts like another's is not confused */
	assert_int_equal(mailfile_deliver_once(&f, str_c(&m), 1700000000,
					       "QabcR1", NULL), 0);
	assert_int_equal(mailfile_deliver_once(&f, str_c(&m), 1700000000,
					       "Qab", NULL), 0);
	assert_int_equal(mailfile_deliver_once(&f, str_c(&m), 1700000001,
					       "QabcR0", NULL), 0);
	str_clear(&d);
	str_printf(&d, "%s/new", str_c(&m));
	assert_int_equal(count_entries(str_c(&d), NULL, 0), 3);
	mailfile_close(&f);
	str_free(&m);
	str_free(&d);
	str_free(&name);
	str_free(&to);
}

static void test_abandoned_leaves_nothing(void **state)
{
	(void)state;
	struct str m = STR_INIT, d = STR_INIT;
	maildir_path(root, "gone@example.org", &m);
	assert_int_equal(maildir_create(str_c(&m), (uid_t)-1, (gid_t)-1), 0);
	struct mailfile f;
	assert_int_equal(mailfile_open(&f, str_c(&m)), 0);
	mailfile_write(&f, "half a message\n", 15);
	mailfile_close(&f);
	str_printf(&d, "%s/tmp", str_c(&m));
	assert_int_equal(count_entries(str_c(&d), NULL, 0), 0);
	str_clear(&d);
	str_printf(&d, "%s/new", str_c(&m));
	assert_int_equal(count_entries(str_c(&d), NULL, 0), 0);
	str_free(&d);
	str_free(&m);
}

static void test_open_missing_maildir_fails(void **state)
{
	(void)state;
	struct mailfile f;
	struct str m = STR_INIT;
	str_printf(&m, "%s/no/such/maildir", root);
	assert_int_equal(mailfile_open(&f, str_c(&m)), -1);
	str_free(&m);
}

static void test_name_size(void **state)
{
	(void)state;
	assert_int_equal(maildir_name_size("1.M2P3.h,S=120,W=124:2,S", 'S'), 120);
	assert_int_equal(maildir_name_size("1.M2P3.h,S=120,W=124:2,S", 'W'), 124);
	assert_int_equal(maildir_name_size("1.M2P3.h,W=7", 'W'), 7);
	assert_int_equal(maildir_name_size("1.M2P3.h:2,S", 'S'), 0);
	assert_int_equal(maildir_name_size("1.M2P3.h,S=x1", 'S'), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_unique_names_differ),
		cmocka_unit_test(test_deliver_two),
		cmocka_unit_test(test_deliver_once),
		cmocka_unit_test(test_abandoned_leaves_nothing),
		cmocka_unit_test(test_open_missing_maildir_fails),
		cmocka_unit_test(test_name_size),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
