/*
 * Unit tests for imap-handler/imap_mailbox.c: the name <-> directory
 * mapping (with hostile names), LIST pattern matching, and CREATE, DELETE,
 * RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB and STATUS on a Maildir in a
 * temp directory through a minimal session whose output goes to a pipe.
 *
 * The session's completions, imap_unselect and the folder storage belong
 * to other files; small stand-ins for them are defined here (the folder
 * stand-in counts the files in cur/ and new/).
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
#include <time.h>
#include <unistd.h>

#include "imap.h"
#include "imap_mailbox.h"
#include "maildir.h"

/* ---- stand-ins for the session and storage ---- */

static void tagged(struct imap_session *s, const struct imap_command *c,
		   const char *status, const char *fmt, va_list ap)
{
	struct str line = STR_INIT;
	str_printf(&line, "%s %s ", c->tag, status);
	str_vprintf(&line, fmt, ap);
	str_append(&line, "\r\n");
	stream_write(&s->io, line.data, line.len);
	str_free(&line);
}

void imap_ok(struct imap_session *s, const struct imap_command *c,
	     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tagged(s, c, "OK", fmt, ap);
	va_end(ap);
}

void imap_no(struct imap_session *s, const struct imap_command *c,
	     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tagged(s, c, "NO", fmt, ap);
	va_end(ap);
}

void imap_bad(struct imap_session *s, const struct imap_command *c,
	      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tagged(s, c, "BAD", fmt, ap);
	va_end(ap);
}

static int unselects;

void imap_unselect(struct imap_session *s)
{
	if (s->sel == NULL)
		return;
	imap_folder_close(s->sel);
	free(s->sel);
	free(s->sel_name);
	s->sel = NULL;
	s->sel_name = NULL;
	s->state = IMAP_AUTHENTICATED;
	unselects++;
}

/* Files in dir; those whose name lacks the S flag into *unseen. */
static size_t count_files(const char *dir, size_t *unseen)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	if (d == NULL)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		const char *info = strstr(e->d_name, ":2,");
		if (unseen && (info == NULL || strchr(info, 'S') == NULL))
			(*unseen)++;
	}
	closedir(d);
	return n;
}

int imap_folder_open(struct imap_folder *f, const char *path, bool readonly,
		     struct str *err)
{
	struct str p = STR_INIT;
	memset(f, 0, sizeof *f);
	str_printf(&p, "%s/cur", path);
	struct stat st;
	if (stat(str_c(&p), &st) != 0) {
		str_free(&p);
		str_append(err, "no such folder");
		errno = ENOENT;
		return -1;
	}
	size_t unseen = 0;
	f->count = count_files(str_c(&p), &unseen);
	str_clear(&p);
	str_printf(&p, "%s/new", path);
	f->recent = (unsigned)count_files(str_c(&p), &unseen);
	f->count += f->recent;
	f->uidvalidity = 1234;
	f->uidnext = (uint32_t)f->count + 1;
	f->readonly = readonly;
	f->path = xstrdup(path);
	f->n_keywords = (unsigned)unseen;	/* the stand-in keeps it here */
	str_free(&p);
	return 0;
}

void imap_folder_close(struct imap_folder *f)
{
	free(f->path);
	f->path = NULL;
}

size_t imap_folder_unseen(const struct imap_folder *f)
{
	return f->n_keywords;
}

/* ---- fixture ---- */

static char base[] = "/var/tmp/sockmail-test-imap-mailbox-XXXXXX";
static char root[sizeof base + 16];
static struct imap_session sess;
static int pipefd[2];
static struct str out;

static int setup(void **state)
{
	(void)state;
	if (mkdtemp(base) == NULL)
		return -1;
	snprintf(root, sizeof root, "%s/user", base);
	if (maildir_create(root, (uid_t)-1, (gid_t)-1) != 0)
		return -1;
	if (pipe(pipefd) != 0)
		return -1;
	memset(&sess, 0, sizeof sess);
	str_append(&sess.maildir, root);
	str_append(&sess.maildir, "/");	/* a trailing '/' is fine */
	stream_init(&sess.io, pipefd[0], pipefd[1], 5, 4096);
	sess.state = IMAP_AUTHENTICATED;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	imap_unselect(&sess);
	stream_free(&sess.io);
	str_free(&sess.maildir);
	str_free(&out);
	close(pipefd[0]);
	close(pipefd[1]);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	return system(cmd);
}

/* Run one command line through the handler, return everything written. */
static const char *run(const char *line)
{
	struct imap_command c;
	struct str msg = STR_INIT;
	memset(&c, 0, sizeof c);
	enum imap_read_result r = imap_command_parse(line, strlen(line), 0,
						     &c, &msg);
	assert_int_equal(r, IMAP_READ_OK);
	static const struct {
		const char *name;
		void (*fn)(struct imap_session *, struct imap_command *);
	} cmds[] = {
		{ "CREATE", imap_cmd_create },	 { "DELETE", imap_cmd_delete },
		{ "RENAME", imap_cmd_rename },	 { "LIST", imap_cmd_list },
		{ "LSUB", imap_cmd_lsub },	 { "STATUS", imap_cmd_status },
		{ "SUBSCRIBE", imap_cmd_subscribe },
		{ "UNSUBSCRIBE", imap_cmd_unsubscribe },
	};
	size_t i = 0;
	while (i < sizeof cmds / sizeof cmds[0] &&
	       strcmp(cmds[i].name, c.name) != 0)
		i++;
	assert_true(i < sizeof cmds / sizeof cmds[0]);
	cmds[i].fn(&sess, &c);
	imap_command_free(&c);
	str_free(&msg);
	assert_int_equal(stream_flush(&sess.io), STREAM_OK);
	str_clear(&out);
	char buf[4096];
	ssize_t n;
	while ((n = read(pipefd[0], buf, sizeof buf)) > 0)
		str_append_n(&out, buf, (size_t)n);
	return str_c(&out);
}

static bool exists_in_root(const char *rel)
{
	char p[512];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", root, rel);
	return lstat(p, &st) == 0;
}

static void touch(const char *rel)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", root, rel);
	int fd = open(p, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x\n", 2), 2);
	close(fd);
}

static void make_dir(const char *rel)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", root, rel);
	assert_int_equal(mkdir(p, 0700), 0);
}

/* Files in a directory of the Maildir (dot files not counted). */
static size_t count_in(const char *rel)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", root, rel);
	return count_files(p, NULL);
}

/* ---- pure functions ---- */

static void test_dirname_table(void **state)
{
	(void)state;
	char long200[201], long201[202], dots[200];
	memset(long200, 'a', 200);
	long200[200] = '\0';
	memset(long201, 'a', 201);
	long201[201] = '\0';
	/* 60 "a." pairs: 120 octets, 60 * 6 + 1 = 361 on disk */
	for (int i = 0; i < 120; i += 2)
		dots[i] = 'a', dots[i + 1] = '.';
	dots[120] = '\0';
	char dir200[202];
	dir200[0] = '.';
	memcpy(dir200 + 1, long200, 201);
	const struct {
		const char *name;
		int ret;
		const char *dir;
	} t[] = {
		{ "INBOX", 1, "" },
		{ "inbox", 1, "" },
		{ "InBoX", 1, "" },
		{ "Inbox/Sub", 0, ".INBOX.Sub" },
		{ "INBOX/a.b", 0, ".INBOX.a&AC4-b" },
		{ "INBOXes", 0, ".INBOXes" },
		{ "INBOX.x", 0, ".INBOX&AC4-x" },
		{ "a/b", 0, ".a.b" },
		{ "a/b/c", 0, ".a.b.c" },
		{ "a.b", 0, ".a&AC4-b" },
		{ ".hidden", 0, ".&AC4-hidden" },
		{ "a/.b", 0, ".a.&AC4-b" },
		{ "a\\b", 0, ".a\\b" },
		{ "My Folder", 0, ".My Folder" },
		{ "&Jjo-!", 0, ".&Jjo-!" },
		{ "&-", 0, ".&-" },
		{ "Entw&APw-rfe", 0, ".Entw&APw-rfe" },
		{ "../x", -1, NULL },
		{ "..", -1, NULL },
		{ ".", -1, NULL },
		{ "a/../b", -1, NULL },
		{ "a/./b", -1, NULL },
		{ "a/..", -1, NULL },
		{ "a//b", -1, NULL },
		{ "/a", -1, NULL },
		{ "a/", -1, NULL },
		{ "/", -1, NULL },
		{ "", -1, NULL },
		{ "&", -1, NULL },
		{ "&Jjo", -1, NULL },
		{ "&AGE-", -1, NULL },	/* "a", not canonical */
		{ "&AC4-", -1, NULL },	/* ".", not canonical: our escape */
		{ "&AC8-", -1, NULL },	/* "/", not canonical */
		{ "&AAE-", -1, NULL },	/* U+0001 */
		{ "a\x01", -1, NULL },
		{ "a\tb", -1, NULL },
		{ "a\x7f", -1, NULL },
		{ "caf\xc3\xa9", -1, NULL },	/* raw 8-bit */
		{ long201, -1, NULL },
		{ dots, -1, NULL },
		{ long200, 0, dir200 },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct str dir = STR_INIT, err = STR_INIT;
		int r = imap_mailbox_dirname(t[i].name, &dir, &err);
		if (r != t[i].ret)
			fail_msg("%s: %d, expected %d (%s)", t[i].name, r,
				 t[i].ret, str_c(&err));
		if (t[i].dir != NULL)
			assert_string_equal(str_c(&dir), t[i].dir);
		else
			assert_int_equal(dir.len, 0);
		if (r < 0)
			assert_non_null(strstr(str_c(&err),
					       "Invalid mailbox name: "));
		str_free(&dir);
		str_free(&err);
	}
}

static void test_path(void **state)
{
	(void)state;
	struct str p = STR_INIT, err = STR_INIT;
	assert_int_equal(imap_mailbox_path(&sess, "inbox", &p, &err), 0);
	assert_string_equal(str_c(&p), root);
	str_clear(&p);
	assert_int_equal(imap_mailbox_path(&sess, "a/b.c", &p, &err), 0);
	char want[512];
	snprintf(want, sizeof want, "%s/.a.b&AC4-c", root);
	assert_string_equal(str_c(&p), want);
	str_clear(&p);
	assert_int_equal(imap_mailbox_path(&sess, "../../etc", &p, &err), -1);
	assert_string_equal(str_c(&err),
			    "Invalid mailbox name: \".\" or \"..\" level");
	str_free(&p);
	str_free(&err);
}

static void test_from_dirname(void **state)
{
	(void)state;
	static const char *const good[][2] = {
		{ ".Sent", "Sent" },
		{ ".a.b", "a/b" },
		{ ".a&AC4-b", "a.b" },
		{ ".&AC4-hidden", ".hidden" },
		{ ".INBOX.x", "INBOX/x" },
		{ ".&Jjo-!", "&Jjo-!" },
		{ ".&-.&AC4-&-", "&-/.&-" },
		{ ".a\\b", "a\\b" },
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		struct str n = STR_INIT, d = STR_INIT, err = STR_INIT;
		assert_int_equal(imap_mailbox_from_dirname(good[i][0], &n), 0);
		assert_string_equal(str_c(&n), good[i][1]);
		/* and back */
		assert_int_equal(imap_mailbox_dirname(str_c(&n), &d, &err), 0);
		assert_string_equal(str_c(&d), good[i][0]);
		str_free(&n);
		str_free(&d);
		str_free(&err);
	}
	static const char *const bad[] = {
		"", ".", "..", "..deleted-1-2-0", "...x", "Sent", "cur",
		".a..b", ".a.", ".&Jjo", ".&Jjo.x-", ".INBOX", ".inbox.x",
		".Inbox.x", ".&AGE-", ".&AC4-", ".&AC4-&AC4-", ".a.&AC4-.b",
		".a\x01", ".caf\xc3\xa9",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct str n = STR_INIT;
		if (imap_mailbox_from_dirname(bad[i], &n) != -1)
			fail_msg("%s accepted as %s", bad[i], str_c(&n));
		assert_int_equal(n.len, 0);
		str_free(&n);
	}
}

static void test_special_use(void **state)
{
	(void)state;
	assert_string_equal(imap_mailbox_special_use("Sent"), "\\Sent");
	assert_string_equal(imap_mailbox_special_use("Drafts"), "\\Drafts");
	assert_string_equal(imap_mailbox_special_use("Trash"), "\\Trash");
	assert_string_equal(imap_mailbox_special_use("Junk"), "\\Junk");
	assert_string_equal(imap_mailbox_special_use("Archive"), "\\Archive");
	assert_null(imap_mailbox_special_use("sent"));
	assert_null(imap_mailbox_special_use("INBOX"));
	assert_null(imap_mailbox_special_use("x/Sent"));
}

static void test_list_match(void **state)
{
	(void)state;
	static const struct {
		const char *pat, *name;
		bool match;
	} t[] = {
		{ "*", "a", true },
		{ "*", "a/b/c", true },
		{ "%", "a", true },
		{ "%", "a/b", false },
		{ "%/%", "a/b", true },
		{ "%/%", "a/b/c", false },
		{ "a/*", "a/b/c", true },
		{ "a/*", "a", false },
		{ "a*", "a", true },
		{ "a%", "ab", true },
		{ "a%", "a/b", false },
		{ "a/%", "a/b", true },
		{ "", "a", false },
		{ "a", "a", true },
		{ "a", "A", false },
		{ "Sent", "Sent", true },
		{ "sent", "Sent", false },
		{ "inbox", "INBOX", true },
		{ "InBox", "INBOX", true },
		{ "in%", "INBOX", true },
		{ "INBOX/%", "INBOX/x", true },
		{ "inbox/%", "INBOX/x", true },
		{ "inbox/X", "INBOX/x", false },
		{ "inbox*", "INBOXes", false },	/* not INBOX: exact case */
		{ "INBOX*", "INBOXes", true },
		{ "*b", "a/b", true },
		{ "%b", "a/b", false },
		{ "*a*a*a*a*a*a*a*a*b",
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false },
		{ "%%%%*%%", "x", true },
		{ "%o%", "INBOX", true },
		{ "a*%", "a/b", true },
		/* runs of wildcards are one; more literals than the name
		 * has octets never match */
		{ "a**b", "ab", true },
		{ "%*", "a/b", true },
		{ "*%", "a/b", true },
		{ "%%", "a/b", false },
		{ "aaaa", "aaa", false },
		{ "a%*%b", "a/x/b", true },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (imap_list_match(t[i].pat, t[i].name) != t[i].match)
			fail_msg("\"%s\" vs \"%s\": expected %d", t[i].pat,
				 t[i].name, t[i].match);
	/* a client's 256 KiB pattern costs what a short one does */
	size_t big = 256 * 1024;
	char *pat = malloc(big + 2);
	assert_non_null(pat);
	memset(pat, '*', big);
	strcpy(pat + big, "x");
	assert_true(imap_list_match(pat, "a/x"));
	memset(pat, 'a', big);
	assert_false(imap_list_match(pat, "aaa"));
	free(pat);
}

/* ---- commands ---- */

static void test_create(void **state)
{
	(void)state;
	assert_string_equal(run("a1 CREATE Foo"), "a1 OK CREATE completed\r\n");
	assert_true(exists_in_root(".Foo/cur"));
	assert_true(exists_in_root(".Foo/new"));
	assert_true(exists_in_root(".Foo/tmp"));
	assert_true(exists_in_root(".Foo/maildirfolder"));
	assert_string_equal(run("a2 CREATE Foo"),
			    "a2 NO [ALREADYEXISTS] Mailbox exists\r\n");
	assert_string_equal(run("a3 CREATE inbox"),
			    "a3 NO [ALREADYEXISTS] Mailbox exists\r\n");
	/* superiors made too; the trailing separator ignored */
	assert_string_equal(run("a4 CREATE x/y/z/"), "a4 OK CREATE completed\r\n");
	assert_true(exists_in_root(".x/cur"));
	assert_true(exists_in_root(".x.y/cur"));
	assert_true(exists_in_root(".x.y.z/maildirfolder"));
	assert_string_equal(run("a5 CREATE a.b"), "a5 OK CREATE completed\r\n");
	assert_true(exists_in_root(".a&AC4-b/cur"));
	assert_string_equal(run("a6 CREATE \"My Folder\""),
			    "a6 OK CREATE completed\r\n");
	assert_string_equal(run("a7 CREATE INBOX/kid"),
			    "a7 OK CREATE completed\r\n");
	assert_true(exists_in_root(".INBOX.kid/cur"));
	assert_false(exists_in_root(".INBOX"));

	/* evil */
	assert_string_equal(run("b1 CREATE ../evil"),
			    "b1 NO [CANNOT] Invalid mailbox name: "
			    "\".\" or \"..\" level\r\n");
	assert_string_equal(run("b2 CREATE a//b"),
			    "b2 NO [CANNOT] Invalid mailbox name: "
			    "empty hierarchy level\r\n");
	assert_string_equal(run("b3 CREATE /etc"),
			    "b3 NO [CANNOT] Invalid mailbox name: "
			    "empty hierarchy level\r\n");
	assert_string_equal(run("b4 CREATE {3+}\r\na\001b\r\n"),
			    "b4 NO [CANNOT] Invalid mailbox name: "
			    "control characters\r\n");
	assert_string_equal(run("b5 CREATE &Jjo"),
			    "b5 NO [CANNOT] Invalid mailbox name: "
			    "not valid modified UTF-7\r\n");
	assert_string_equal(run("b6 CREATE a%b"),
			    "b6 NO [CANNOT] Invalid mailbox name: wildcards\r\n");
	assert_string_equal(run("b7 CREATE"), "b7 BAD Syntax: CREATE mailbox\r\n");
	assert_string_equal(run("b8 CREATE a b"),
			    "b8 BAD Syntax: CREATE mailbox\r\n");
	char p[512];
	snprintf(p, sizeof p, "%s/evil", base);
	assert_int_equal(access(p, F_OK), -1);
	/* the root: the 5 defaults, Foo, x, x/y, x/y/z, a.b, My Folder,
	 * INBOX/kid and nothing else */
	DIR *d = opendir(root);
	assert_non_null(d);
	struct dirent *e;
	int folders = 0;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 &&
		    strcmp(e->d_name, "..") != 0)
			folders++;
	closedir(d);
	assert_int_equal(folders, 5 + 7);
	assert_int_equal(count_in("."), 3);	/* cur new tmp */
}

static const char *const list_all =
	"* LIST (\\HasChildren) \"/\" INBOX\r\n"
	"* LIST (\\HasNoChildren \\Archive) \"/\" Archive\r\n"
	"* LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n"
	"* LIST (\\HasNoChildren) \"/\" Foo\r\n"
	"* LIST (\\HasNoChildren) \"/\" INBOX/kid\r\n"
	"* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n"
	"* LIST (\\HasNoChildren) \"/\" \"My Folder\"\r\n"
	"* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
	"* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\n"
	"* LIST (\\HasNoChildren) \"/\" a.b\r\n"
	"* LIST (\\HasChildren) \"/\" x\r\n"
	"* LIST (\\HasChildren) \"/\" x/y\r\n"
	"* LIST (\\HasNoChildren) \"/\" x/y/z\r\n"
	"l1 OK LIST completed\r\n";

static void test_list(void **state)
{
	(void)state;
	assert_string_equal(run("l1 LIST \"\" *"), list_all);
	assert_string_equal(run("l2 LIST \"\" \"\""),
			    "* LIST (\\Noselect) \"/\" \"\"\r\n"
			    "l2 OK LIST completed\r\n");
	assert_string_equal(run("l3 LIST \"\" %"),
			    "* LIST (\\HasChildren) \"/\" INBOX\r\n"
			    "* LIST (\\HasNoChildren \\Archive) \"/\" Archive\r\n"
			    "* LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n"
			    "* LIST (\\HasNoChildren) \"/\" Foo\r\n"
			    "* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n"
			    "* LIST (\\HasNoChildren) \"/\" \"My Folder\"\r\n"
			    "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
			    "* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\n"
			    "* LIST (\\HasNoChildren) \"/\" a.b\r\n"
			    "* LIST (\\HasChildren) \"/\" x\r\n"
			    "l3 OK LIST completed\r\n");
	assert_string_equal(run("l4 LIST \"\" inbox"),
			    "* LIST (\\HasChildren) \"/\" INBOX\r\n"
			    "l4 OK LIST completed\r\n");
	assert_string_equal(run("l5 LIST x/ %"),
			    "* LIST (\\HasChildren) \"/\" x/y\r\n"
			    "l5 OK LIST completed\r\n");
	assert_string_equal(run("l6 LIST \"\" x/*"),
			    "* LIST (\\HasChildren) \"/\" x/y\r\n"
			    "* LIST (\\HasNoChildren) \"/\" x/y/z\r\n"
			    "l6 OK LIST completed\r\n");
	assert_string_equal(run("l7 LIST (SPECIAL-USE) \"\" *"),
			    "* LIST (\\HasNoChildren \\Archive) \"/\" Archive\r\n"
			    "* LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n"
			    "* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n"
			    "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
			    "* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\n"
			    "l7 OK LIST completed\r\n");
	/* RETURN (SPECIAL-USE CHILDREN) changes nothing */
	const char *r = run("l1 LIST \"\" * RETURN (SPECIAL-USE CHILDREN)");
	assert_string_equal(r, list_all);
	assert_string_equal(run("l8 LIST \"\" nothing*"),
			    "l8 OK LIST completed\r\n");
	assert_string_equal(run("l9 LIST \"\" (Sent Junk)"),
			    "* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n"
			    "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
			    "l9 OK LIST completed\r\n");
	assert_string_equal(run("m1 LIST \"\" * RETURN (STATUS (MESSAGES))"),
			    "m1 BAD Syntax: LIST [(options)] reference pattern "
			    "[RETURN (options)]\r\n");
	assert_string_equal(run("m2 LIST \"\""),
			    "m2 BAD Syntax: LIST [(options)] reference pattern "
			    "[RETURN (options)]\r\n");

	/* junk in the root is not listed; a superior with no folder of its
	 * own is \Noselect */
	make_dir(".p.q");
	make_dir(".p.q/cur");
	make_dir(".nocur");
	make_dir("..deleted-1-2-3");
	make_dir("..deleted-1-2-3/cur");
	make_dir(".bad&Jjo");
	make_dir(".bad&Jjo/cur");
	touch(".file");
	assert_string_equal(run("n1 LIST \"\" p*"),
			    "* LIST (\\Noselect \\HasChildren) \"/\" p\r\n"
			    "* LIST (\\HasNoChildren) \"/\" p/q\r\n"
			    "n1 OK LIST completed\r\n");
	/* INBOX is "inbox" too */
	assert_string_equal(run("n2 LIST \"\" %o%"),
			    "* LIST (\\HasChildren) \"/\" INBOX\r\n"
			    "* LIST (\\HasNoChildren) \"/\" Foo\r\n"
			    "* LIST (\\HasNoChildren) \"/\" \"My Folder\"\r\n"
			    "n2 OK LIST completed\r\n");
	assert_string_equal(run("n3 LIST \"\" %"),
			    "* LIST (\\HasChildren) \"/\" INBOX\r\n"
			    "* LIST (\\HasNoChildren \\Archive) \"/\" Archive\r\n"
			    "* LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n"
			    "* LIST (\\HasNoChildren) \"/\" Foo\r\n"
			    "* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n"
			    "* LIST (\\HasNoChildren) \"/\" \"My Folder\"\r\n"
			    "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
			    "* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\n"
			    "* LIST (\\HasNoChildren) \"/\" a.b\r\n"
			    "* LIST (\\Noselect \\HasChildren) \"/\" p\r\n"
			    "* LIST (\\HasChildren) \"/\" x\r\n"
			    "n3 OK LIST completed\r\n");
}

static void test_status(void **state)
{
	(void)state;
	touch(".Sent/new/1.M1P1.h,S=2,W=3");
	touch(".Sent/cur/2.M1P1.h,S=2,W=3:2,S");
	touch(".Sent/cur/3.M1P1.h,S=2,W=3:2,F");
	assert_string_equal(run("s1 STATUS Sent (MESSAGES UNSEEN UIDNEXT "
				"RECENT UIDVALIDITY)"),
			    "* STATUS Sent (MESSAGES 3 UNSEEN 2 UIDNEXT 4 "
			    "RECENT 1 UIDVALIDITY 1234)\r\n"
			    "s1 OK STATUS completed\r\n");
	assert_string_equal(run("s2 STATUS \"My Folder\" (messages)"),
			    "* STATUS \"My Folder\" (MESSAGES 0)\r\n"
			    "s2 OK STATUS completed\r\n");
	assert_string_equal(run("s3 STATUS inbox (MESSAGES)"),
			    "* STATUS inbox (MESSAGES 0)\r\n"
			    "s3 OK STATUS completed\r\n");
	assert_string_equal(run("s4 STATUS nope (MESSAGES)"),
			    "s4 NO [NONEXISTENT] Mailbox doesn't exist\r\n");
	assert_string_equal(run("s5 STATUS p (MESSAGES)"),
			    "s5 NO [NONEXISTENT] Mailbox doesn't exist\r\n");
	assert_string_equal(run("s6 STATUS ../x (MESSAGES)"),
			    "s6 NO [NONEXISTENT] Invalid mailbox name: "
			    "\".\" or \"..\" level\r\n");
	const char *bad = "BAD Syntax: STATUS mailbox (MESSAGES RECENT "
			  "UIDNEXT UIDVALIDITY UNSEEN)\r\n";
	char want[256];
	snprintf(want, sizeof want, "s7 %s", bad);
	assert_string_equal(run("s7 STATUS Sent (FOO)"), want);
	snprintf(want, sizeof want, "s8 %s", bad);
	assert_string_equal(run("s8 STATUS Sent ()"), want);
	snprintf(want, sizeof want, "s9 %s", bad);
	assert_string_equal(run("s9 STATUS Sent MESSAGES"), want);

	/* the selected folder is answered from the session's view */
	struct imap_folder *f = xcalloc(1, sizeof *f);
	char p[512];
	snprintf(p, sizeof p, "%s/.Sent", root);
	f->path = xstrdup(p);
	f->count = 7;
	f->uidnext = 99;
	sess.sel = f;
	sess.sel_name = xstrdup("Sent");
	assert_string_equal(run("t1 STATUS Sent (MESSAGES UIDNEXT)"),
			    "* STATUS Sent (MESSAGES 7 UIDNEXT 99)\r\n"
			    "t1 OK STATUS completed\r\n");
	imap_unselect(&sess);
}

static void test_subscriptions(void **state)
{
	(void)state;
	assert_string_equal(run("u1 SUBSCRIBE Sent"),
			    "u1 OK SUBSCRIBE completed\r\n");
	assert_string_equal(run("u2 SUBSCRIBE inbox"),
			    "u2 OK SUBSCRIBE completed\r\n");
	assert_string_equal(run("u3 SUBSCRIBE gone/child"),
			    "u3 OK SUBSCRIBE completed\r\n");
	assert_string_equal(run("u4 SUBSCRIBE Sent"),
			    "u4 OK SUBSCRIBE completed\r\n");
	assert_string_equal(run("u5 SUBSCRIBE x/y/z"),
			    "u5 OK SUBSCRIBE completed\r\n");
	assert_string_equal(run("u6 SUBSCRIBE a//b"),
			    "u6 NO [CANNOT] Invalid mailbox name: "
			    "empty hierarchy level\r\n");
	assert_string_equal(run("u7 SUBSCRIBE Junk"),
			    "u7 OK SUBSCRIBE completed\r\n");
	assert_string_equal(run("u8 UNSUBSCRIBE Junk"),
			    "u8 OK UNSUBSCRIBE completed\r\n");
	assert_string_equal(run("u9 UNSUBSCRIBE never"),
			    "u9 OK UNSUBSCRIBE completed\r\n");

	char p[512], buf[256];
	snprintf(p, sizeof p, "%s/subscriptions", root);
	FILE *fp = fopen(p, "r");
	assert_non_null(fp);
	size_t n = fread(buf, 1, sizeof buf - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	assert_string_equal(buf, "INBOX\nSent\ngone/child\nx/y/z\n");

	assert_string_equal(run("v1 LSUB \"\" *"),
			    "* LSUB () \"/\" INBOX\r\n"
			    "* LSUB () \"/\" Sent\r\n"
			    "* LSUB (\\Noselect) \"/\" gone/child\r\n"
			    "* LSUB () \"/\" x/y/z\r\n"
			    "v1 OK LSUB completed\r\n");
	/* '%' hides gone/child and x/y/z: their superiors stand in */
	assert_string_equal(run("v2 LSUB \"\" %"),
			    "* LSUB () \"/\" INBOX\r\n"
			    "* LSUB () \"/\" Sent\r\n"
			    "* LSUB (\\Noselect) \"/\" gone\r\n"
			    "* LSUB (\\Noselect) \"/\" x\r\n"
			    "v2 OK LSUB completed\r\n");
	assert_string_equal(run("v3 LSUB x/ %"),
			    "* LSUB (\\Noselect) \"/\" x/y\r\n"
			    "v3 OK LSUB completed\r\n");
	assert_string_equal(run("v4 LSUB \"\" \"\""),
			    "* LSUB (\\Noselect) \"/\" \"\"\r\n"
			    "v4 OK LSUB completed\r\n");
	assert_string_equal(run("v5 LIST \"\" S* RETURN (SUBSCRIBED)"),
			    "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" "
			    "Sent\r\n"
			    "v5 OK LIST completed\r\n");
	assert_string_equal(run("v6 LIST (SUBSCRIBED) \"\" *"),
			    "* LIST (\\HasChildren \\Subscribed) \"/\" INBOX\r\n"
			    "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" "
			    "Sent\r\n"
			    "* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "
			    "\"/\" gone/child\r\n"
			    "* LIST (\\HasNoChildren \\Subscribed) \"/\" x/y/z\r\n"
			    "v6 OK LIST completed\r\n");
}

static void test_delete(void **state)
{
	(void)state;
	touch(".Foo/cur/1.M1P1.h,S=2,W=3:2,S");
	touch(".Foo/new/2.M1P1.h,S=2,W=3");
	touch(".Foo/sockmail-imap.tdb");
	/* what earlier DELETEs left: an old one goes, a young one stays */
	char old[64], young[64], sub[80];
	snprintf(old, sizeof old, "..deleted-1-%lld-0",
		 (long long)time(NULL) - 7200);
	snprintf(young, sizeof young, "..deleted-2-%lld-0",
		 (long long)time(NULL));
	make_dir(old);
	make_dir(young);
	snprintf(sub, sizeof sub, "%s/cur", old);
	make_dir(sub);
	snprintf(sub, sizeof sub, "%s/cur/x", old);
	touch(sub);
	assert_string_equal(run("d1 DELETE Foo"), "d1 OK DELETE completed\r\n");
	assert_false(exists_in_root(".Foo"));
	assert_false(exists_in_root(old));
	assert_true(exists_in_root(young));
	assert_string_equal(run("d2 DELETE Foo"),
			    "d2 NO [NONEXISTENT] Mailbox doesn't exist\r\n");
	assert_string_equal(run("d3 DELETE inbox"),
			    "d3 NO Cannot delete INBOX\r\n");
	assert_string_equal(run("d3 DELETE INBOX/"),
			    "d3 NO Cannot delete INBOX\r\n");
	assert_string_equal(run("d3 DELETE Junk/"),
			    "d3 OK DELETE completed\r\n");
	assert_false(exists_in_root(".Junk"));
	assert_string_equal(run("d4 DELETE p"),
			    "d4 NO [NONEXISTENT] Mailbox doesn't exist\r\n");
	assert_string_equal(run("d5 DELETE ../user"),
			    "d5 NO [NONEXISTENT] Invalid mailbox name: "
			    "\".\" or \"..\" level\r\n");
	/* a folder with inferiors: they stay, it becomes \Noselect */
	assert_string_equal(run("d6 DELETE x"), "d6 OK DELETE completed\r\n");
	assert_false(exists_in_root(".x"));
	assert_true(exists_in_root(".x.y/cur"));
	assert_string_equal(run("l1 LIST \"\" x*"),
			    "* LIST (\\Noselect \\HasChildren) \"/\" x\r\n"
			    "* LIST (\\HasChildren) \"/\" x/y\r\n"
			    "* LIST (\\HasNoChildren) \"/\" x/y/z\r\n"
			    "l1 OK LIST completed\r\n");
	/* the selected folder: unselected first */
	struct imap_folder *f = xcalloc(1, sizeof *f);
	char p[512];
	snprintf(p, sizeof p, "%s/.a&AC4-b", root);
	f->path = xstrdup(p);
	sess.sel = f;
	sess.sel_name = xstrdup("a.b");
	sess.state = IMAP_SELECTED;
	int before = unselects;
	assert_string_equal(run("d7 DELETE a.b"), "d7 OK DELETE completed\r\n");
	assert_null(sess.sel);
	assert_int_equal(sess.state, IMAP_AUTHENTICATED);
	assert_int_equal(unselects, before + 1);
	/* only our test's own hidden directory is left */
	DIR *d = opendir(root);
	assert_non_null(d);
	struct dirent *e;
	int hidden = 0;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "..deleted", 9) == 0)
			hidden++;
	closedir(d);
	assert_int_equal(hidden, 1);
}

static void test_rename(void **state)
{
	(void)state;
	assert_string_equal(run("r1 RENAME x/y q/r"), "r1 OK RENAME completed\r\n");
	assert_false(exists_in_root(".x.y"));
	assert_false(exists_in_root(".x.y.z"));
	assert_true(exists_in_root(".q/cur"));	/* superior made */
	assert_true(exists_in_root(".q.r/cur"));
	assert_true(exists_in_root(".q.r.z/cur"));
	/* subscriptions follow */
	assert_string_equal(run("v1 LSUB \"\" q*"),
			    "* LSUB () \"/\" q/r/z\r\n"
			    "v1 OK LSUB completed\r\n");
	assert_string_equal(run("r2 RENAME nope other"),
			    "r2 NO [NONEXISTENT] Mailbox doesn't exist\r\n");
	assert_string_equal(run("r3 RENAME Sent Drafts"),
			    "r3 NO [ALREADYEXISTS] Mailbox exists\r\n");
	assert_string_equal(run("r4 RENAME Sent inbox"),
			    "r4 NO [ALREADYEXISTS] Mailbox exists\r\n");
	assert_string_equal(run("r5 RENAME q q/sub"),
			    "r5 NO [CANNOT] Cannot move a mailbox under itself\r\n");
	assert_string_equal(run("r6 RENAME Sent ../../x"),
			    "r6 NO [CANNOT] Invalid mailbox name: "
			    "\".\" or \"..\" level\r\n");
	assert_string_equal(run("r7 RENAME Sent"),
			    "r7 BAD Syntax: RENAME old new\r\n");
	/* an inferior would land on an existing folder: nothing moves */
	make_dir(".w.z");
	make_dir(".w.z/cur");
	assert_string_equal(run("r8 RENAME q/r w"),
			    "r8 NO [ALREADYEXISTS] An inferior exists under "
			    "the new name\r\n");
	assert_true(exists_in_root(".q.r/cur"));
	assert_false(exists_in_root(".w/cur"));

	/* the selected folder is renamed under the session */
	struct imap_folder *f = xcalloc(1, sizeof *f);
	char p[512];
	snprintf(p, sizeof p, "%s/.q.r.z", root);
	f->path = xstrdup(p);
	sess.sel = f;
	sess.sel_name = xstrdup("q/r/z");
	assert_string_equal(run("r9 RENAME q/r Top"), "r9 OK RENAME completed\r\n");
	snprintf(p, sizeof p, "%s/.Top.z", root);
	assert_string_equal(sess.sel->path, p);
	assert_string_equal(sess.sel_name, "Top/z");
	imap_unselect(&sess);
	assert_true(exists_in_root(".Top.z/cur"));
	assert_true(exists_in_root(".q/cur"));

	/* RENAME INBOX: its messages move, INBOX and its inferiors stay */
	touch("new/1.M1P1.h,S=2,W=3");
	touch("cur/2.M1P1.h,S=2,W=3:2,S");
	touch("cur/3.M1P1.h,S=2,W=3:2,");
	assert_string_equal(run("ri RENAME INBOX Old/Inbox"),
			    "ri OK RENAME completed\r\n");
	assert_int_equal(count_in("new"), 0);
	assert_int_equal(count_in("cur"), 0);
	assert_int_equal(count_in(".Old.Inbox/new"), 1);
	assert_int_equal(count_in(".Old.Inbox/cur"), 2);
	assert_true(exists_in_root(".Old/cur"));
	assert_true(exists_in_root(".INBOX.kid/cur"));
	assert_string_equal(run("rj RENAME INBOX Old/Inbox"),
			    "rj NO [ALREADYEXISTS] Mailbox exists\r\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dirname_table),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_from_dirname),
		cmocka_unit_test(test_special_use),
		cmocka_unit_test(test_list_match),
		/* these run in order on one Maildir */
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_subscriptions),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_rename),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
