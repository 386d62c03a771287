/*
 * test_imap_folder: the IMAP view of a Maildir folder: UID assignment and
 * its persistence, UIDs under concurrent sessions (processes), \Recent
 * going to one session, flags and keywords in file names, expunge, adding
 * messages (commit and abort), the untagged responses of an update, the
 * cache (batched writes that never wait for a busy cache) and the
 * snapshot that spares an open the directory scan (trusted only when
 * nothing can have changed).
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
#include <tdb.h>
#include <time.h>
#include <unistd.h>

#include "imap_folder.h"
#include "maildir.h"
#include "str.h"

struct fixture {
	char dir[64];		/* the folder */
	char dir2[80];		/* a second folder inside it, for adds */
	int pipefd[2];
	struct stream io;
};

static void make_maildir(const char *path)
{
	char p[256];
	assert_int_equal(mkdir(path, 0700), 0);
	const char *sub[] = { "cur", "new", "tmp" };
	for (int k = 0; k < 3; k++) {
		snprintf(p, sizeof p, "%s/%s", path, sub[k]);
		assert_int_equal(mkdir(p, 0700), 0);
	}
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);
	strcpy(fx->dir, "/tmp/test_imap_folder.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	assert_int_equal(rmdir(fx->dir), 0);
	make_maildir(fx->dir);
	snprintf(fx->dir2, sizeof fx->dir2, "%s/.Other", fx->dir);
	make_maildir(fx->dir2);
	assert_int_equal(pipe(fx->pipefd), 0);
	stream_init(&fx->io, fx->pipefd[0], fx->pipefd[1], 5, 4096);
	*state = fx;
	return 0;
}

static void rm_tree(const char *path)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	stream_free(&fx->io);
	close(fx->pipefd[0]);
	close(fx->pipefd[1]);
	rm_tree(fx->dir);
	free(fx);
	return 0;
}

/* Everything written to the stream so far. */
static char *output(struct fixture *fx)
{
	static char buf[65536];
	assert_int_equal(stream_flush(&fx->io), STREAM_OK);
	ssize_t n = read(fx->pipefd[0], buf, sizeof buf - 1);
	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		n = 0;
	}
	buf[n] = '\0';
	return buf;
}

static void write_file(const char *dir, const char *sub, const char *name,
		       const char *text)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static bool exists(const char *dir, const char *sub, const char *name)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name);
	return access(p, F_OK) == 0;
}

static size_t count_files(const char *dir, const char *sub)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	DIR *d = opendir(p);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void do_rename(const char *dir, const char *from, const char *to)
{
	char a[512], b[512];
	snprintf(a, sizeof a, "%s/%s", dir, from);
	snprintf(b, sizeof b, "%s/%s", dir, to);
	assert_int_equal(rename(a, b), 0);
}

static const char *uid_name(struct imap_folder *f, uint32_t uid)
{
	long i = imap_folder_find_uid(f, uid);
	assert_true(i >= 0);
	return imap_folder_msg_name(f, (size_t)i);
}

/* UIDs follow delivery order (leading seconds, then the name), stay
 * across opens, and new files get the next ones. */
static void test_uid_order_and_persistence(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->dir, "new", "1000.B.host,S=6,W=7", "hello\n");
	write_file(fx->dir, "new", "999.Z.host", "a\nb\n");
	write_file(fx->dir, "cur", "1000.A.host:2,S", "x\n");
	write_file(fx->dir, "new", ".hidden", "x\n");

	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.count, 3);
	assert_string_equal(uid_name(&f, 1), "999.Z.host:2,");
	assert_string_equal(uid_name(&f, 2), "1000.A.host:2,S");
	assert_string_equal(uid_name(&f, 3), "1000.B.host,S=6,W=7:2,");
	assert_int_equal(f.uidnext, 4);
	/* sizes: ,W= or counted (two lone LFs) */
	assert_int_equal(f.msgs[0].size, 6);
	assert_int_equal(f.msgs[1].size, 3);
	assert_int_equal(f.msgs[2].size, 7);
	assert_int_equal(f.msgs[1].flags, IMAP_FLAG_SEEN | IMAP_FLAG_RECENT);
	assert_int_equal(f.recent, 3);
	/* read-write: moved to cur/ */
	assert_int_equal(count_files(fx->dir, "new"), 0);	/* but .hidden */
	assert_int_equal(count_files(fx->dir, "cur"), 3);
	uint32_t validity = f.uidvalidity;
	assert_true(validity != 0);
	imap_folder_close(&f);

	write_file(fx->dir, "new", "500.old.host", "late but old\n");
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.uidvalidity, validity);
	assert_int_equal(f.count, 4);
	assert_string_equal(uid_name(&f, 1), "999.Z.host:2,");
	assert_string_equal(uid_name(&f, 3), "1000.B.host,S=6,W=7:2,");
	assert_string_equal(uid_name(&f, 4), "500.old.host:2,");
	assert_int_equal(f.uidnext, 5);
	/* \Recent was claimed by the first open: only the new one now */
	assert_int_equal(f.recent, 1);
	assert_int_equal(f.msgs[3].flags & IMAP_FLAG_RECENT, IMAP_FLAG_RECENT);
	assert_int_equal(imap_folder_first_unseen(&f), 1);
	assert_int_equal(imap_folder_unseen(&f), 3);
	imap_folder_close(&f);
	str_free(&err);
}

static void test_readonly_open(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->dir, "new", "100.a.host", "x\n");
	write_file(fx->dir, "new", "101.b.host", "y\n");
	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, true, &err), 0);
	assert_int_equal(f.count, 2);
	assert_int_equal(f.recent, 2);
	assert_int_equal(count_files(fx->dir, "new"), 2);	/* left alone */
	assert_int_equal(imap_folder_set_flags(&f, 0, IMAP_FLAG_SEEN, 0), -1);
	assert_int_equal(errno, EROFS);
	assert_int_equal(imap_folder_expunge(&f, NULL, NULL, false), -1);
	struct str fl = STR_INIT;
	imap_folder_format_permanent_flags(&f, &fl);
	assert_string_equal(str_c(&fl), "()");
	str_free(&fl);
	imap_folder_close(&f);
	/* nothing claimed: a read-write open still gets both */
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.recent, 2);
	assert_int_equal(f.msgs[0].uid, 1);
	assert_int_equal(f.msgs[1].uid, 2);
	imap_folder_close(&f);
	/* a missing folder: ENOENT */
	char missing[128];
	snprintf(missing, sizeof missing, "%s/.Nope", fx->dir);
	assert_int_equal(imap_folder_open(&f, missing, false, &err), -1);
	assert_int_equal(errno, ENOENT);
	str_free(&err);
}

/* Two sessions (processes) open at once: \Recent goes to exactly one. */
static void test_recent_claimed_once(void **state)
{
	struct fixture *fx = *state;
	char name[64];
	for (int j = 0; j < 20; j++) {
		snprintf(name, sizeof name, "%d.x%d.host", 1000 + j, j);
		write_file(fx->dir, "new", name, "m\n");
	}
	int go[2];
	assert_int_equal(pipe(go), 0);
	pid_t pid[2];
	for (int k = 0; k < 2; k++) {
		pid[k] = fork();
		assert_true(pid[k] >= 0);
		if (pid[k] == 0) {
			char c;
			close(go[1]);
			if (read(go[0], &c, 1) != 0)
				_exit(100);
			struct imap_folder f;
			struct str err = STR_INIT;
			if (imap_folder_open(&f, fx->dir, false, &err) != 0 ||
			    f.count != 20)
				_exit(101);
			unsigned r = f.recent;
			imap_folder_close(&f);
			_exit((int)r);
		}
	}
	close(go[0]);
	close(go[1]);	/* both start now */
	int total = 0, product = 1;
	for (int k = 0; k < 2; k++) {
		int status;
		assert_int_equal(waitpid(pid[k], &status, 0), pid[k]);
		assert_true(WIFEXITED(status));
		total += WEXITSTATUS(status);
		product *= WEXITSTATUS(status);
	}
	assert_int_equal(total, 20);
	assert_int_equal(product, 0);
}

/* Two sessions assign UIDs while 200 messages each are delivered: every
 * file gets one UID, no UID two files, and both agree. */
static void test_concurrent_uids(void **state)
{
	struct fixture *fx = *state;
	pid_t pid[2];
	for (int k = 0; k < 2; k++) {
		pid[k] = fork();
		assert_true(pid[k] >= 0);
		if (pid[k] != 0)
			continue;
		struct imap_folder f;
		struct str err = STR_INIT;
		if (imap_folder_open(&f, fx->dir, k == 1, &err) != 0)
			_exit(1);
		char name[64];
		for (int j = 0; j < 200; j++) {
			snprintf(name, sizeof name, "%d.P%dQ%d.host",
				 2000 + j / 10, k, j);
			write_file(fx->dir, "new", name, "msg\n");
			if (j % 7 == 0 && imap_folder_update(&f, NULL, true) != 0)
				_exit(2);
		}
		if (imap_folder_update(&f, NULL, true) != 0)
			_exit(3);
		/* the other child may still be delivering: its map goes
		 * into a file the parent compares */
		char path[128];
		snprintf(path, sizeof path, "%s/map%d", fx->dir, k);
		FILE *fp = fopen(path, "w");
		if (fp == NULL)
			_exit(4);
		for (size_t i = 0; i < f.count; i++) {
			const char *n = imap_folder_msg_name(&f, i);
			fprintf(fp, "%u %.*s\n", f.msgs[i].uid,
				(int)strcspn(n, ":"), n);
			if (i > 0 && f.msgs[i].uid <= f.msgs[i - 1].uid)
				_exit(5);
		}
		fclose(fp);
		imap_folder_close(&f);
		_exit(0);
	}
	for (int k = 0; k < 2; k++) {
		int status;
		assert_int_equal(waitpid(pid[k], &status, 0), pid[k]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(count_files(fx->dir, "new") +
			 count_files(fx->dir, "cur"), 400);
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.count, 400);
	for (size_t i = 1; i < f.count; i++)
		assert_true(f.msgs[i].uid > f.msgs[i - 1].uid);
	/* no UID was given to a file that then lost it: 1..400 */
	assert_int_equal(f.msgs[399].uid, 400);
	/* what each child saw agrees with the final view */
	for (int k = 0; k < 2; k++) {
		char path[128], line[128], base[100];
		snprintf(path, sizeof path, "%s/map%d", fx->dir, k);
		FILE *fp = fopen(path, "r");
		assert_non_null(fp);
		size_t lines = 0;
		while (fgets(line, sizeof line, fp) != NULL) {
			unsigned uid;
			assert_int_equal(sscanf(line, "%u %99s", &uid, base), 2);
			const char *n = uid_name(&f, uid);
			assert_int_equal(strncmp(n, base, strlen(base)), 0);
			assert_int_equal(n[strlen(base)], ':');
			lines++;
		}
		fclose(fp);
		assert_true(lines >= 200);
		unlink(path);
	}
	imap_folder_close(&f);
	str_free(&err);
}

static void test_flags_and_keywords(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->dir, "cur", "100.a.host:2,", "x\n");
	write_file(fx->dir, "cur", "101.b.host:2,T", "y\n");
	struct imap_folder f;
	struct str err = STR_INIT, out = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);

	uint8_t flag = 0;
	int kw = -1;
	assert_int_equal(imap_folder_flag(&f, "\\seen", false, &flag, &kw), 1);
	assert_int_equal(flag, IMAP_FLAG_SEEN);
	assert_int_equal(imap_folder_flag(&f, "\\Draft", true, &flag, &kw), 1);
	assert_int_equal(flag, IMAP_FLAG_DRAFT);
	assert_int_equal(imap_folder_flag(&f, "\\Recent", true, &flag, &kw), 0);
	assert_int_equal(imap_folder_flag(&f, "\\Foo", true, &flag, &kw), 0);
	assert_int_equal(imap_folder_flag(&f, "$Forwarded", false, &flag, &kw),
			 0);
	assert_int_equal(imap_folder_flag(&f, "a]b", true, &flag, &kw), 0);
	assert_int_equal(imap_folder_flag(&f, "$Forwarded", true, &flag, &kw),
			 2);
	assert_int_equal(kw, 0);
	assert_int_equal(imap_folder_flag(&f, "Work", true, &flag, &kw), 2);
	assert_int_equal(kw, 1);
	assert_int_equal(imap_folder_flag(&f, "$forwarded", false, &flag, &kw),
			 2);
	assert_int_equal(kw, 0);

	assert_int_equal(imap_folder_set_flags(&f, 0, IMAP_FLAG_SEEN |
					       IMAP_FLAG_FLAGGED, 3), 0);
	assert_string_equal(imap_folder_msg_name(&f, 0), "100.a.host:2,FSab");
	assert_true(exists(fx->dir, "cur", "100.a.host:2,FSab"));
	imap_folder_format_flags(&f, 0, &out);
	assert_string_equal(str_c(&out),
			    "(\\Seen \\Flagged \\Recent $Forwarded Work)");
	str_clear(&out);
	imap_folder_format_flags(&f, 1, &out);
	assert_string_equal(str_c(&out), "(\\Deleted \\Recent)");
	str_clear(&out);
	imap_folder_format_all_flags(&f, &out);
	assert_string_equal(str_c(&out), "(\\Answered \\Flagged \\Deleted "
			    "\\Seen \\Draft $Forwarded Work)");
	str_clear(&out);
	imap_folder_format_permanent_flags(&f, &out);
	assert_string_equal(str_c(&out), "(\\Answered \\Flagged \\Deleted "
			    "\\Seen \\Draft $Forwarded Work \\*)");
	str_clear(&out);
	assert_int_equal(imap_folder_set_flags(&f, 1, IMAP_FLAG_ANSWERED |
					       IMAP_FLAG_DRAFT, 2), 0);
	assert_string_equal(imap_folder_msg_name(&f, 1), "101.b.host:2,DRb");
	imap_folder_close(&f);

	/* round trip through the names */
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.n_keywords, 2);
	assert_int_equal(f.msgs[0].flags, IMAP_FLAG_SEEN | IMAP_FLAG_FLAGGED);
	assert_int_equal(f.msgs[0].keywords, 3);
	assert_int_equal(f.msgs[1].flags, IMAP_FLAG_ANSWERED | IMAP_FLAG_DRAFT);
	assert_int_equal(f.msgs[1].keywords, 2);
	/* fill the table: 26 keywords, then no room */
	char name[16];
	for (int k = 2; k < IMAP_MAX_KEYWORDS; k++) {
		snprintf(name, sizeof name, "kw%d", k);
		assert_int_equal(imap_folder_flag(&f, name, true, &flag, &kw),
				 2);
		assert_int_equal(kw, k);
	}
	assert_int_equal(imap_folder_flag(&f, "onemore", true, &flag, &kw), -1);
	imap_folder_format_permanent_flags(&f, &out);
	assert_null(strstr(str_c(&out), "\\*"));
	imap_folder_close(&f);
	str_free(&out);
	str_free(&err);
}

static void test_expunge(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->dir, "cur", "100.a.host:2,", "1\n");
	write_file(fx->dir, "cur", "101.b.host:2,T", "2\n");
	write_file(fx->dir, "cur", "102.c.host:2,", "3\n");
	write_file(fx->dir, "cur", "103.d.host:2,T", "4\n");
	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(imap_folder_expunge(&f, &fx->io, NULL, true), 2);
	assert_string_equal(output(fx), "* 4 EXPUNGE\r\n* 2 EXPUNGE\r\n");
	assert_int_equal(f.count, 2);
	assert_int_equal(f.exists_reported, 2);
	assert_int_equal(f.msgs[0].uid, 1);
	assert_int_equal(f.msgs[1].uid, 3);
	assert_false(exists(fx->dir, "cur", "101.b.host:2,T"));
	assert_int_equal(count_files(fx->dir, "cur"), 2);

	/* by UID, flags ignored */
	struct imap_seqset set = { 0 };
	assert_int_equal(imap_seqset_parse("3:*", &set), 0);
	assert_int_equal(imap_folder_expunge(&f, &fx->io, &set, false), 1);
	imap_seqset_free(&set);
	assert_string_equal(output(fx), "* 2 EXPUNGE\r\n");
	assert_int_equal(f.count, 1);
	assert_int_equal(f.uidnext, 5);
	imap_folder_close(&f);

	/* the UIDs stay gone; the next one is 5 */
	write_file(fx->dir, "new", "200.e.host", "5\n");
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.count, 2);
	assert_int_equal(f.msgs[0].uid, 1);
	assert_int_equal(f.msgs[1].uid, 5);
	imap_folder_close(&f);
	str_free(&err);
}

/* The responses of imap_folder_update for changes made behind its back. */
static void test_update_reports(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->dir, "cur", "100.a.host:2,", "1\n");
	write_file(fx->dir, "cur", "101.b.host:2,", "2\n");
	write_file(fx->dir, "cur", "102.c.host:2,", "3\n");
	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	f.exists_reported = f.count;	/* as SELECT does */
	f.recent_reported = f.recent;
	assert_int_equal(imap_folder_update(&f, &fx->io, true), 0);
	assert_string_equal(output(fx), "");

	/* another session sets \Seen on 2 and expunges 3 */
	do_rename(fx->dir, "cur/101.b.host:2,", "cur/101.b.host:2,S");
	char p[256];
	snprintf(p, sizeof p, "%s/cur/102.c.host:2,", fx->dir);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(imap_folder_update(&f, &fx->io, false), 0);
	assert_string_equal(output(fx),
			    "* 2 FETCH (FLAGS (\\Seen \\Recent))\r\n");
	assert_int_equal(f.count, 3);
	assert_int_equal(f.msgs[2].state & IMAP_MSG_GONE, IMAP_MSG_GONE);
	assert_int_equal(imap_folder_msg_open(&f, 2), -1);
	assert_int_equal(errno, ENOENT);

	/* a delivery; now expunges may be sent */
	write_file(fx->dir, "new", "200.d.host", "4\n");
	assert_int_equal(imap_folder_update(&f, &fx->io, true), 0);
	assert_string_equal(output(fx),
			    "* 3 EXPUNGE\r\n* 3 EXISTS\r\n* 3 RECENT\r\n");
	assert_int_equal(f.msgs[2].uid, 4);
	assert_string_equal(imap_folder_msg_name(&f, 2), "200.d.host:2,");

	/* a rename by someone else is followed when opening */
	do_rename(fx->dir, "cur/100.a.host:2,", "cur/100.a.host:2,F");
	int fd = imap_folder_msg_open(&f, 0);
	assert_true(fd >= 0);
	char buf[8];
	assert_int_equal(read(fd, buf, sizeof buf), 2);
	close(fd);
	assert_string_equal(imap_folder_msg_name(&f, 0), "100.a.host:2,F");
	/* ... and its flags are still reported */
	assert_int_equal(imap_folder_update(&f, &fx->io, true), 0);
	assert_string_equal(output(fx),
			    "* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n");
	int64_t when = 0;
	assert_int_equal(imap_folder_msg_internaldate(&f, 0, &when), 0);
	assert_true(when > 1000000000);
	imap_folder_close(&f);
	str_free(&err);
}

static void test_add_commit_and_abort(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->dir, "cur", "100.a.host,S=6,W=8:2,S", "a\nbcd\n");
	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	f.exists_reported = f.count;
	f.recent_reported = f.recent;

	/* COPY of message 1 and an APPEND into the other folder */
	struct imap_folder_add a;
	assert_int_equal(imap_folder_add_begin(&a, &f, fx->dir2, &err), 0);
	assert_ptr_equal(a.folder, &a.own);
	struct str src = STR_INIT;
	imap_folder_msg_path(&f, 0, &src);
	const char *kws[] = { "$Label1", "Work" };
	uint32_t uid = 0, validity = 0;
	assert_int_equal(imap_folder_add_file(&a, str_c(&src), f.msgs[0].size,
					      f.msgs[0].flags, kws, 2, &uid), 0);
	assert_int_equal(uid, 1);
	struct mailfile mf;
	assert_int_equal(mailfile_open(&mf, fx->dir2), 0);
	mailfile_write(&mf, "Subject: x\n\nbody\n", 17);
	assert_int_equal(mailfile_finish(&mf), 0);
	assert_int_equal(imap_folder_add_mailfile(&a, &mf, IMAP_FLAG_DRAFT,
						  kws + 1, 1, 1000000000, &uid),
			 0);
	mailfile_close(&mf);
	assert_int_equal(uid, 2);
	assert_int_equal(imap_folder_add_commit(&a, &validity), 0);
	assert_null(a.folder);

	struct imap_folder g;
	assert_int_equal(imap_folder_open(&g, fx->dir2, true, &err), 0);
	assert_int_equal(g.uidvalidity, validity);
	assert_int_equal(g.count, 2);
	assert_int_equal(g.msgs[0].uid, 1);
	assert_int_equal(g.msgs[0].size, 8);
	assert_int_equal(g.msgs[0].flags & IMAP_FLAGS_STORABLE, IMAP_FLAG_SEEN);
	assert_int_equal(g.msgs[0].keywords, 3);
	assert_int_equal(g.msgs[1].size, 17 + 3);
	assert_int_equal(g.msgs[1].flags & IMAP_FLAGS_STORABLE,
			 IMAP_FLAG_DRAFT);
	assert_int_equal(g.msgs[1].keywords, 2);
	assert_int_equal(g.uidnext, 3);
	struct str fl = STR_INIT;
	imap_folder_format_flags(&g, 0, &fl);
	assert_string_equal(str_c(&fl), "(\\Seen \\Recent $Label1 Work)");
	str_free(&fl);
	int64_t when = 0;
	assert_int_equal(imap_folder_msg_internaldate(&g, 1, &when), 0);
	assert_int_equal(when, 1000000000);
	assert_true(strstr(imap_folder_msg_name(&g, 1), ",S=17,W=20:2,Db") !=
		    NULL);
	imap_folder_close(&g);

	/* abort: nothing left */
	assert_int_equal(imap_folder_add_begin(&a, NULL, fx->dir2, &err), 0);
	assert_int_equal(imap_folder_add_file(&a, str_c(&src), 8, 0, NULL, 0,
					      &uid), 0);
	assert_int_equal(uid, 3);
	const char *newkw[] = { "Fresh" };
	assert_int_equal(imap_folder_add_file(&a, str_c(&src), 8, 0, newkw, 1,
					      &uid), 0);
	assert_int_equal(count_files(fx->dir2, "cur"), 4);
	imap_folder_add_abort(&a);
	assert_int_equal(count_files(fx->dir2, "cur"), 2);
	assert_int_equal(count_files(fx->dir2, "tmp"), 0);
	assert_int_equal(imap_folder_open(&g, fx->dir2, true, &err), 0);
	assert_int_equal(g.count, 2);
	/* the new keyword was committed before the file naming it was
	 * linked (a checkpoint that also made UID 3 durable): after the
	 * abort the keyword stays defined and UID 3 is never reused */
	assert_int_equal(g.uidnext, 4);
	assert_int_equal(g.n_keywords, 3);
	imap_folder_close(&g);

	/* into the selected folder: reported by the next update */
	assert_int_equal(imap_folder_add_begin(&a, &f, fx->dir, &err), 0);
	assert_ptr_equal(a.folder, &f);
	assert_int_equal(imap_folder_add_file(&a, str_c(&src), 8, 0, NULL, 0,
					      &uid), 0);
	assert_int_equal(uid, 2);
	assert_int_equal(imap_folder_add_commit(&a, &validity), 0);
	assert_int_equal(validity, f.uidvalidity);
	assert_int_equal(f.count, 1);
	assert_int_equal(imap_folder_update(&f, &fx->io, true), 0);
	assert_string_equal(output(fx), "* 2 EXISTS\r\n* 2 RECENT\r\n");
	assert_int_equal(f.msgs[1].uid, 2);

	/* a missing destination */
	char missing[128];
	snprintf(missing, sizeof missing, "%s/.Nope", fx->dir);
	assert_int_equal(imap_folder_add_begin(&a, &f, missing, &err), -1);
	assert_int_equal(errno, ENOENT);
	imap_folder_close(&f);
	str_free(&src);
	str_free(&err);
}

static void test_cache(void **state)
{
	struct fixture *fx = *state;
	struct imap_folder f;
	struct str err = STR_INIT, out = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_false(imap_folder_cache_get(&f, 7, 'E', &out));
	imap_folder_cache_put(&f, 7, 'E', "(envelope)", 10);
	imap_folder_cache_put(&f, 7, 'B', "(body)", 6);
	assert_true(imap_folder_cache_get(&f, 7, 'E', &out));
	assert_string_equal(str_c(&out), "(envelope)");
	str_clear(&out);
	assert_false(imap_folder_cache_get(&f, 8, 'E', &out));
	assert_string_equal(str_c(&out), "");
	imap_folder_close(&f);

	/* kept across opens */
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_true(imap_folder_cache_get(&f, 7, 'B', &out));
	assert_string_equal(str_c(&out), "(body)");
	str_clear(&out);
	imap_folder_close(&f);

	/* another UIDVALIDITY: the old cache is dropped */
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	f.uidvalidity++;
	assert_false(imap_folder_cache_get(&f, 7, 'B', &out));
	imap_folder_cache_put(&f, 7, 'B', "(new)", 5);
	assert_true(imap_folder_cache_get(&f, 7, 'B', &out));
	assert_string_equal(str_c(&out), "(new)");
	str_clear(&out);
	imap_folder_close(&f);

	/* a corrupt file is replaced */
	char p[256];
	snprintf(p, sizeof p, "%s/%s", fx->dir, IMAP_CACHE_DB);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	for (int j = 0; j < 1000; j++)
		fputs("garbage!", fp);
	fclose(fp);
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_false(imap_folder_cache_get(&f, 7, 'B', &out));
	imap_folder_cache_put(&f, 9, 'E', "(e9)", 4);
	assert_true(imap_folder_cache_get(&f, 9, 'E', &out));
	assert_string_equal(str_c(&out), "(e9)");
	imap_folder_close(&f);
	str_free(&out);
	str_free(&err);
}


/* The first open of a big folder gives its UIDs in one transaction on a
 * tdb opened without mmap (then opened again as usual): the same UIDs as
 * any other way, kept, and the folder works on after it. */
static void test_big_first_open(void **state)
{
	struct fixture *fx = *state;
	char name[64];
	for (int j = 0; j < 1100; j++) {
		snprintf(name, sizeof name, "%d.N%04d.host", 3000 + j / 3, j);
		write_file(fx->dir, "new", name, "m\n");
	}
	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.count, 1100);
	assert_int_equal(f.uidnext, 1101);
	assert_int_equal(f.recent, 1100);
	assert_string_equal(uid_name(&f, 1), "3000.N0000.host:2,");
	assert_string_equal(uid_name(&f, 1100), "3366.N1099.host:2,");
	assert_int_equal(count_files(fx->dir, "cur"), 1100);
	uint32_t validity = f.uidvalidity;
	/* the tdb works on: a keyword, a delivery */
	uint8_t flag = 0;
	int kw = -1;
	assert_int_equal(imap_folder_flag(&f, "Work", true, &flag, &kw), 2);
	write_file(fx->dir, "new", "9999.late.host", "l\n");
	assert_int_equal(imap_folder_update(&f, NULL, true), 0);
	assert_int_equal(f.count, 1101);
	assert_string_equal(uid_name(&f, 1101), "9999.late.host:2,");
	imap_folder_close(&f);

	assert_int_equal(imap_folder_open(&f, fx->dir, true, &err), 0);
	assert_int_equal(f.uidvalidity, validity);
	assert_int_equal(f.count, 1101);
	assert_int_equal(f.recent, 0);
	assert_int_equal(f.n_keywords, 1);
	for (size_t i = 0; i < 1100; i++) {
		snprintf(name, sizeof name, "%zu.N%04zu.host:2,", 3000 + i / 3, i);
		assert_string_equal(imap_folder_msg_name(&f, i), name);
		assert_int_equal(f.msgs[i].uid, i + 1);
	}
	imap_folder_close(&f);
	str_free(&err);
}

/* ---- the cache: batches, and a busy cache is not waited for ---- */

static void test_cache_batches(void **state)
{
	struct fixture *fx = *state;
	struct imap_folder f;
	struct str err = STR_INIT, out = STR_INIT;
	char v[32];
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	/* more than one batch: some are written during the puts */
	for (uint32_t uid = 1; uid <= 5000; uid++) {
		int n = snprintf(v, sizeof v, "(env %u)", uid);
		imap_folder_cache_put(&f, uid, 'E', v, (size_t)n);
	}
	imap_folder_cache_put(&f, 4999, 'E', "(again)", 7);
	for (uint32_t uid = 1; uid <= 5000; uid += 7) {
		str_clear(&out);
		assert_true(imap_folder_cache_get(&f, uid, 'E', &out));
		if (uid == 4999)
			snprintf(v, sizeof v, "(again)");
		else
			snprintf(v, sizeof v, "(env %u)", uid);
		assert_string_equal(str_c(&out), v);
	}
	str_clear(&out);
	assert_true(imap_folder_cache_get(&f, 4999, 'E', &out));
	assert_string_equal(str_c(&out), "(again)");
	imap_folder_cache_flush(&f);
	imap_folder_close(&f);

	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	for (uint32_t uid = 1; uid <= 5000; uid++) {
		str_clear(&out);
		assert_true(imap_folder_cache_get(&f, uid, 'E', &out));
		if (uid == 4999)
			snprintf(v, sizeof v, "(again)");
		else
			snprintf(v, sizeof v, "(env %u)", uid);
		assert_string_equal(str_c(&out), v);
	}
	str_clear(&out);
	assert_false(imap_folder_cache_get(&f, 5001, 'E', &out));
	imap_folder_close(&f);
	str_free(&out);
	str_free(&err);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Another session in the middle of a FETCH holds the cache's read lock
 * (for as long as its client takes): a write does not wait for it, it
 * is dropped; once the reader is done, writes go through again. */
static void test_cache_busy_not_waited_for(void **state)
{
	struct fixture *fx = *state;
	struct imap_folder f;
	struct str err = STR_INIT, out = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	imap_folder_cache_put(&f, 1, 'E', "(one)", 5);
	imap_folder_close(&f);

	int ready[2], done[2];
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(done), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct imap_folder g;
		struct str e = STR_INIT, o = STR_INIT;
		char c = 'r';
		alarm(10);	/* a writer that waits fails, not hangs */
		if (imap_folder_open(&g, fx->dir, false, &e) != 0 ||
		    !imap_folder_cache_get(&g, 1, 'E', &o) ||
		    write(ready[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
			_exit(1);
		imap_folder_cache_flush(&g);	/* the command ends */
		if (write(ready[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
			_exit(2);
		imap_folder_close(&g);
		_exit(0);
	}
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);	/* it holds the lock */
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_true(imap_folder_cache_get(&f, 1, 'E', &out));	/* reads do */
	assert_string_equal(str_c(&out), "(one)");
	imap_folder_cache_put(&f, 2, 'E', "(two)", 5);
	double t0 = now_s();
	imap_folder_cache_flush(&f);
	assert_true(now_s() - t0 < 1.0);
	str_clear(&out);
	assert_false(imap_folder_cache_get(&f, 2, 'E', &out));	/* dropped */
	imap_folder_cache_flush(&f);

	c = 'd';
	assert_int_equal(write(done[1], &c, 1), 1);
	assert_int_equal(read(ready[0], &c, 1), 1);	/* lock released */
	imap_folder_cache_put(&f, 2, 'E', "(two)", 5);
	imap_folder_cache_flush(&f);
	assert_true(imap_folder_cache_get(&f, 2, 'E', &out));
	assert_string_equal(str_c(&out), "(two)");
	assert_int_equal(write(done[1], &c, 1), 1);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	imap_folder_close(&f);
	for (int k = 0; k < 2; k++) {
		close(ready[k]);
		close(done[k]);
	}
	str_free(&out);
	str_free(&err);
}

/* ---- the snapshot ---- */

#define SNAP_N 300	/* above the size below which none is kept */

static void make_many(struct fixture *fx, const char *sub, int n)
{
	char name[96];
	for (int j = 0; j < n; j++) {
		snprintf(name, sizeof name, "%d.M%dP7.host,S=2,W=3%s", 1000 + j,
			 j, strcmp(sub, "cur") == 0 ? ":2,S" : "");
		write_file(fx->dir, sub, name, "x\n");
	}
}

/* Both directories' mtime (a delivery or another session would move it;
 * setting it back to an earlier value imitates a change made in the same
 * clock tick, which the mtime cannot show). */
static void set_mtimes(struct fixture *fx, time_t t)
{
	const char *sub[] = { "cur", "new" };
	for (int k = 0; k < 2; k++) {
		char p[256];
		snprintf(p, sizeof p, "%s/%s", fx->dir, sub[k]);
		struct timespec ts[2] = { { t, 0 }, { t, 0 } };
		assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	}
}

static struct tdb_context *open_tdb(struct fixture *fx, const char *name)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", fx->dir, name);
	struct tdb_context *db = tdb_open(p, 0, TDB_DEFAULT, O_RDWR, 0600);
	assert_non_null(db);
	return db;
}

#define SNAPSHOT_FILE "sockmail-snapshot"

static bool have_snapshot(struct fixture *fx)
{
	return exists(fx->dir, ".", SNAPSHOT_FILE);
}

static void put_u32(struct tdb_context *db, const char *key, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)v, (unsigned char)(v >> 8),
			       (unsigned char)(v >> 16),
			       (unsigned char)(v >> 24) };
	TDB_DATA k = { (unsigned char *)(uintptr_t)key, strlen(key) };
	TDB_DATA d = { b, 4 };
	assert_int_equal(tdb_store(db, k, d, TDB_REPLACE), 0);
}

/* Open and close (the close keeps the snapshot); the message count. */
static size_t open_count(struct fixture *fx, bool readonly, uint32_t *validity,
			 uint32_t *last_uid)
{
	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, readonly, &err), 0);
	size_t n = f.count;
	if (validity != NULL)
		*validity = f.uidvalidity;
	if (last_uid != NULL)
		*last_uid = n > 0 ? f.msgs[n - 1].uid : 0;
	for (size_t i = 1; i < n; i++)
		assert_true(f.msgs[i].uid > f.msgs[i - 1].uid);
	imap_folder_close(&f);
	str_free(&err);
	return n;
}

/* A folder quiet for long enough gets a snapshot, and the next open uses
 * it: a file slipped in behind an mtime set back (which nothing real
 * does) proves that it did not read the directory; a real change of the
 * mtime makes it read the directory again. */
static void test_snapshot_used(void **state)
{
	struct fixture *fx = *state;
	time_t old = time(NULL) - 100;
	make_many(fx, "cur", SNAP_N);
	set_mtimes(fx, old);
	assert_int_equal(open_count(fx, false, NULL, NULL), SNAP_N);
	assert_true(have_snapshot(fx));

	write_file(fx->dir, "cur", "5000.hidden.host:2,", "y\n");
	set_mtimes(fx, old);
	uint32_t last = 0;
	assert_int_equal(open_count(fx, false, NULL, &last), SNAP_N);
	assert_int_equal(last, SNAP_N);

	/* the directory changed (long enough ago to be past the slack) */
	set_mtimes(fx, old + 10);
	assert_int_equal(open_count(fx, false, NULL, &last), SNAP_N + 1);
	assert_int_equal(last, SNAP_N + 1);
}

/* A delivery after the snapshot moves the mtime: the snapshot is not
 * used.  The open that then scans is too close to that mtime to leave a
 * snapshot behind, so a second delivery in the same clock tick (the mtime
 * does not move) is still seen. */
static void test_snapshot_stale_same_second(void **state)
{
	struct fixture *fx = *state;
	time_t old = time(NULL) - 100;
	make_many(fx, "cur", SNAP_N);
	set_mtimes(fx, old);
	assert_int_equal(open_count(fx, false, NULL, NULL), SNAP_N);
	assert_true(have_snapshot(fx));

	time_t tick = time(NULL);
	write_file(fx->dir, "new", "6000.first.host", "1\n");
	set_mtimes(fx, tick);
	assert_int_equal(open_count(fx, true, NULL, NULL), SNAP_N + 1);
	write_file(fx->dir, "new", "6000.second.host", "2\n");
	set_mtimes(fx, tick);
	uint32_t last = 0;
	assert_int_equal(open_count(fx, true, NULL, &last), SNAP_N + 2);
	assert_int_equal(last, SNAP_N + 2);
	/* and a read-write open takes them to cur/, UIDs unchanged */
	assert_int_equal(open_count(fx, false, NULL, &last), SNAP_N + 2);
	assert_int_equal(last, SNAP_N + 2);
	assert_int_equal(count_files(fx->dir, "new"), 0);
}

/* The folder tdb now has another UIDVALIDITY: the snapshot is ignored
 * and the folder scanned. */
static void test_snapshot_other_uidvalidity(void **state)
{
	struct fixture *fx = *state;
	time_t old = time(NULL) - 100;
	make_many(fx, "cur", SNAP_N);
	set_mtimes(fx, old);
	uint32_t validity = 0, now_validity = 0;
	assert_int_equal(open_count(fx, false, &validity, NULL), SNAP_N);
	assert_true(have_snapshot(fx));

	struct tdb_context *db = open_tdb(fx, IMAP_FOLDER_DB);
	put_u32(db, "uidvalidity", validity + 1);
	tdb_close(db);
	write_file(fx->dir, "cur", "5000.hidden.host:2,", "y\n");
	set_mtimes(fx, old);
	assert_int_equal(open_count(fx, false, &now_validity, NULL), SNAP_N + 1);
	assert_int_equal(now_validity, validity + 1);
}

/* A UID assigned since (UIDNEXT moved) or a damaged record: ignored. */
static void test_snapshot_uidnext_and_damage(void **state)
{
	struct fixture *fx = *state;
	time_t old = time(NULL) - 100;
	make_many(fx, "cur", SNAP_N);
	set_mtimes(fx, old);
	assert_int_equal(open_count(fx, false, NULL, NULL), SNAP_N);
	assert_true(have_snapshot(fx));

	/* as if another session had given some file UID 301 */
	struct tdb_context *db = open_tdb(fx, IMAP_FOLDER_DB);
	put_u32(db, "uidnext", SNAP_N + 2);
	tdb_close(db);
	write_file(fx->dir, "cur", "5000.hidden.host:2,", "y\n");
	set_mtimes(fx, old);
	uint32_t last = 0;
	assert_int_equal(open_count(fx, false, NULL, &last), SNAP_N + 1);
	assert_int_equal(last, SNAP_N + 2);
	/* that open scanned a quiet folder: a new snapshot with it */
	write_file(fx->dir, "cur", "5001.hidden.host:2,", "z\n");
	set_mtimes(fx, old);
	assert_int_equal(open_count(fx, false, NULL, NULL), SNAP_N + 1);

	/* one octet of a name changed: the checksum catches it */
	char p[256];
	snprintf(p, sizeof p, "%s/%s", fx->dir, SNAPSHOT_FILE);
	int fd = open(p, O_RDWR);
	assert_true(fd >= 0);
	off_t end = lseek(fd, 0, SEEK_END);
	assert_true(end > 1000);
	char c;
	assert_int_equal(pread(fd, &c, 1, end - 10), 1);
	c ^= 0x01;
	assert_int_equal(pwrite(fd, &c, 1, end - 10), 1);
	close(fd);
	set_mtimes(fx, old);
	assert_int_equal(open_count(fx, false, NULL, &last), SNAP_N + 2);
	assert_int_equal(last, SNAP_N + 3);
}

/* A snapshot taken by a read-only open lists files in new/: a read-write
 * open from it claims their \Recent and moves them to cur/ as a scan
 * would; the file it could not know about is found once the moves have
 * changed the mtimes. */
static void test_snapshot_new_and_recent(void **state)
{
	struct fixture *fx = *state;
	time_t old = time(NULL) - 100;
	make_many(fx, "new", SNAP_N);
	set_mtimes(fx, old);
	assert_int_equal(open_count(fx, true, NULL, NULL), SNAP_N);
	assert_true(have_snapshot(fx));
	write_file(fx->dir, "new", "5000.hidden.host", "y\n");
	set_mtimes(fx, old);

	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.count, SNAP_N);
	assert_int_equal(f.recent, SNAP_N);
	assert_int_equal(f.msgs[0].size, 3);
	assert_string_equal(imap_folder_msg_name(&f, 0), "1000.M0P7.host,S=2,W=3:2,");
	imap_folder_close(&f);
	assert_int_equal(count_files(fx->dir, "cur"), SNAP_N);
	assert_int_equal(count_files(fx->dir, "new"), 1);

	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.count, SNAP_N + 1);
	assert_int_equal(f.recent, 1);
	assert_int_equal(f.msgs[SNAP_N].uid, SNAP_N + 1);
	assert_int_equal(f.msgs[SNAP_N].flags, IMAP_FLAG_RECENT);
	imap_folder_close(&f);
	str_free(&err);
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *fp = fopen(p, "rb");
	assert_non_null(fp);
	char *buf = malloc(1 << 20);
	*len = fread(buf, 1, 1 << 20, fp);
	fclose(fp);
	return buf;
}

/* A view from the snapshot takes changes like any other: flag changes
 * (a name as long or shorter is changed in place, in our private copy of
 * the page; a longer one moves the names to memory of our own), an
 * expunge, a delivery; the snapshot file itself never changes. */
static void test_snapshot_view_changes(void **state)
{
	struct fixture *fx = *state;
	time_t old = time(NULL) - 100;
	make_many(fx, "cur", SNAP_N);
	set_mtimes(fx, old);
	assert_int_equal(open_count(fx, false, NULL, NULL), SNAP_N);
	size_t len0 = 0, len1 = 0;
	char *before = slurp(fx->dir, SNAPSHOT_FILE, &len0);
	/* (this open must come from the snapshot: it cannot know this one) */
	write_file(fx->dir, "cur", "5000.hidden.host:2,", "y\n");
	set_mtimes(fx, old);

	struct imap_folder f;
	struct str err = STR_INIT;
	assert_int_equal(imap_folder_open(&f, fx->dir, false, &err), 0);
	assert_int_equal(f.count, SNAP_N);
	f.exists_reported = f.count;
	f.recent_reported = f.recent;
	/* "S" -> "": shorter, in place */
	assert_int_equal(imap_folder_set_flags(&f, 1, 0, 0), 0);
	assert_string_equal(imap_folder_msg_name(&f, 1),
			    "1001.M1P7.host,S=2,W=3:2,");
	/* "S" -> "FS": longer */
	assert_int_equal(imap_folder_set_flags(&f, 2, IMAP_FLAG_SEEN |
					       IMAP_FLAG_FLAGGED, 0), 0);
	assert_string_equal(imap_folder_msg_name(&f, 2),
			    "1002.M2P7.host,S=2,W=3:2,FS");
	assert_string_equal(imap_folder_msg_name(&f, 1),
			    "1001.M1P7.host,S=2,W=3:2,");
	assert_string_equal(imap_folder_msg_name(&f, 299),
			    "1299.M299P7.host,S=2,W=3:2,S");
	assert_true(exists(fx->dir, "cur", "1002.M2P7.host,S=2,W=3:2,FS"));
	struct imap_seqset set = { 0 };
	assert_int_equal(imap_seqset_parse("1:3", &set), 0);
	assert_int_equal(imap_folder_expunge(&f, &fx->io, &set, false), 3);
	imap_seqset_free(&set);
	assert_string_equal(output(fx),
			    "* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n");
	write_file(fx->dir, "new", "7000.late.host", "l\n");
	assert_int_equal(imap_folder_update(&f, &fx->io, true), 0);
	assert_string_equal(output(fx), "* 299 EXISTS\r\n* 2 RECENT\r\n");
	assert_string_equal(imap_folder_msg_name(&f, 297),
			    "5000.hidden.host:2,");
	assert_int_equal(f.msgs[298].uid, SNAP_N + 2);
	int fd = imap_folder_msg_open(&f, 0);
	assert_true(fd >= 0);
	close(fd);
	assert_string_equal(imap_folder_msg_name(&f, 0),
			    "1003.M3P7.host,S=2,W=3:2,S");
	imap_folder_close(&f);

	char *after = slurp(fx->dir, SNAPSHOT_FILE, &len1);
	assert_int_equal(len0, len1);
	assert_memory_equal(before, after, len0);
	free(before);
	free(after);
	assert_int_equal(open_count(fx, false, NULL, NULL), SNAP_N - 1);
	str_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_uid_order_and_persistence,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_open, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_recent_claimed_once, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_uids, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flags_and_keywords, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_expunge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_reports, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_add_commit_and_abort, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_first_open, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cache_batches, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cache_busy_not_waited_for,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_used, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_stale_same_second,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_other_uidvalidity,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_uidnext_and_damage,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_new_and_recent,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_view_changes,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
