/*
 * sockmailctl: the sysadmin's tool.  Domains, users (with their Maildirs and
 * password hashes), aliases, and a check of the configuration and the
 * directories it names.  It is the only writer of users.tdb.
 *
 * The queue commands show and edit the outbound queue (see queue.h); a
 * message a queue runner is working on is not deleted or bounced.
 *
 * Exit status: 0 done, 1 refused or failed (one line on stderr, nothing
 * changed), 2 bad usage.
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <crypt.h>

#include "addr.h"
#include "config.h"
#include "maildir.h"
#include "queue.h"
#include "str.h"
#include "strlist.h"
#include "users.h"

#ifndef SOCKMAIL_VERSION
#define SOCKMAIL_VERSION "unknown"
#endif

#define PASSWORD_MAX 1024	/* bytes, without the line end */

#define EXIT_USER 1
#define EXIT_USAGE 2

static const char usage_text[] =
	"Usage: sockmailctl [-c FILE|--config=FILE] COMMAND ...\n"
	"\n"
	"Commands:\n"
	"  domain add DOMAIN                  add a local domain\n"
	"  domain del DOMAIN                  delete a domain without users "
	"or aliases\n"
	"  domain list                        list the local domains\n"
	"  user add ADDRESS [--password-stdin]\n"
	"                                     add a user and create its "
	"Maildir\n"
	"  user del ADDRESS                   delete a user (the Maildir is "
	"kept)\n"
	"  user passwd ADDRESS [--password-stdin]\n"
	"                                     set a user's password\n"
	"  user list [DOMAIN]                 list users\n"
	"  alias add ADDRESS TARGET...        add targets to an alias\n"
	"  alias del ADDRESS [TARGET...]      delete an alias, or some of "
	"its targets\n"
	"  alias list [DOMAIN]                list aliases\n"
	"  queue list                         list the queued messages "
	"(mailq)\n"
	"  queue show ID                      show a message's envelope and "
	"headers\n"
	"  queue flush                        make every queued message due "
	"now\n"
	"  queue delete ID                    remove a message from the "
	"queue\n"
	"  queue bounce ID                    return a message to its sender "
	"now\n"
	"  check                              check the configuration and "
	"its directories\n"
	"\n"
	"An alias ADDRESS of the form @DOMAIN is the domain's catch-all.\n"
	"Without --password-stdin the password is asked twice on the "
	"terminal.\n"
	"\n"
	"Options:\n"
	"  -c, --config=FILE  the config file (default: $SOCKMAIL_CONFIG, "
	"else\n"
	"                     " CONFIG_DEFAULT_PATH ")\n"
	"      --help         show this help\n"
	"      --version      show the version\n";

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("sockmailctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	fputs(usage_text, stderr);
	exit(EXIT_USAGE);
}

static void fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void fatal(const char *fmt, ...)
{
	va_list ap;
	fputs("sockmailctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_USER);
}

/* What every command works with. */
struct ctl {
	const char *config_file;
	bool loaded;
	struct config cfg;
	struct userdb *db;
};

static void ctl_close(struct ctl *c)
{
	userdb_close(c->db);
	c->db = NULL;
	if (c->loaded)
		config_free(&c->cfg);
}

/* Open users.tdb (loading the config first: the command line has been
 * checked by now, so a usage error wins over a config error).  Only
 * "domain add" may create it: for everything else a missing database is an
 * error, not an empty file left behind. */
static void open_db(struct ctl *c, bool writable, bool create)
{
	struct str err = STR_INIT, path = STR_INIT;
	struct stat st;

	if (config_load(&c->cfg, c->config_file, &err) < 0)
		fatal("%s", str_c(&err));
	c->loaded = true;
	str_printf(&path, "%s/%s", c->cfg.state_dir, USERDB_FILE);
	if (writable && !create && stat(path.data, &st) < 0 && errno == ENOENT)
		writable = false;	/* the reader says it is missing */
	c->db = userdb_open(c->cfg.state_dir, writable, &err);
	if (c->db == NULL)
		fatal("%s", str_c(&err));
	str_free(&err);
	str_free(&path);
}

/* "local@domain", lower-cased, from what the sysadmin typed. */
static void canonical_address(const char *address, struct str *out)
{
	struct mailaddr ma;
	str_clear(out);
	if (addr_parse_mailbox(address, &ma) != ADDR_OK) {
		str_append(out, address);
		addr_lowercase(out->data);
		return;
	}
	str_printf(out, "%s@%s", ma.local, ma.domain);
	addr_lowercase(out->data);
	mailaddr_free(&ma);
}

/* ---- passwords ---- */

/* The terminal as it was, for the signal handler to put back. */
static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;

static void tty_restore(void)
{
	if (tty_echo_off) {
		tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
		tty_echo_off = 0;
	}
}

static void tty_signal(int sig)
{
	tty_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Read one line (at most PASSWORD_MAX bytes) from fd into buf, without the
 * "\n" or "\r\n".  Byte by byte, so no copy of the secret sits in a stdio
 * buffer.  Returns the length, or -1 with *why set. */
static ssize_t read_secret_line(int fd, char *buf, const char **why)
{
	size_t n = 0;
	char ch;

	for (;;) {
		ssize_t r = read(fd, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*why = strerror(errno);
			return -1;
		}
		if (r == 0 || ch == '\n')
			break;
		if (n == PASSWORD_MAX + 1) {	/* room for a final '\r' */
			*why = "the password is longer than 1024 bytes";
			return -1;
		}
		buf[n++] = ch;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (n > PASSWORD_MAX) {
		*why = "the password is longer than 1024 bytes";
		return -1;
	}
	if (memchr(buf, '\0', n) != NULL) {
		*why = "the password contains a NUL byte";
		return -1;
	}
	if (n == 0) {
		*why = "the password is empty";
		return -1;
	}
	return (ssize_t)n;
}

static ssize_t tty_ask(const char *prompt, char *buf, const char **why)
{
	struct termios t = tty_saved;
	ssize_t r;

	/* Echo off (flushing what was typed ahead) before the prompt, so
	 * nothing typed after the prompt is lost or shown. */
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	tty_echo_off = 1;
	if (tcsetattr(tty_fd, TCSAFLUSH, &t) < 0) {
		tty_echo_off = 0;
		*why = strerror(errno);
		return -1;
	}
	if (write(tty_fd, prompt, strlen(prompt)) < 0) {
		*why = strerror(errno);
		tty_restore();
		return -1;
	}
	r = read_secret_line(tty_fd, buf, why);
	tty_restore();
	return r;
}

/* Ask twice on /dev/tty with echo off; both must match.  0 or -1. */
static int password_from_tty(const char *address, char *buf, char *again,
			     const char **why)
{
	struct str prompt = STR_INIT;
	int ret = -1;

	tty_fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (tty_fd < 0) {
		*why = "no terminal to ask for the password on (use "
		       "--password-stdin)";
		return -1;
	}
	if (tcgetattr(tty_fd, &tty_saved) < 0) {
		*why = "cannot read the terminal settings (use "
		       "--password-stdin)";
		close(tty_fd);
		return -1;
	}
	signal(SIGINT, tty_signal);
	signal(SIGTERM, tty_signal);
	signal(SIGHUP, tty_signal);
	signal(SIGQUIT, tty_signal);
	str_printf(&prompt, "Password for %s: ", address);
	if (tty_ask(prompt.data, buf, why) >= 0 &&
	    tty_ask("Retype the password: ", again, why) >= 0) {
		if (strcmp(buf, again) == 0)
			ret = 0;
		else
			*why = "the passwords do not match";
	}
	explicit_bzero(again, PASSWORD_MAX + 2);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	close(tty_fd);
	tty_fd = -1;
	str_free(&prompt);
	return ret;
}

/* Read or ask for a password and put its yescrypt hash in *hash. */
static void password_hash(const char *address, bool from_stdin,
			  struct str *hash)
{
	/* Fixed buffers rather than struct str: a growing buffer would leave
	 * copies of the password in freed memory. */
	static char pw[PASSWORD_MAX + 2], again[PASSWORD_MAX + 2];
	const char *why = "";
	int r;

	if (from_stdin)
		r = read_secret_line(0, pw, &why) < 0 ? -1 : 0;
	else
		r = password_from_tty(address, pw, again, &why);
	if (r == 0 && strlen(pw) >= CRYPT_MAX_PASSPHRASE_SIZE) {
		r = -1;
		why = "the password is longer than the 511 bytes crypt(3) "
		      "takes";
	}
	if (r < 0) {
		explicit_bzero(pw, sizeof pw);
		fatal("%s", why);
	}

	errno = 0;
	char *setting = crypt_gensalt_ra("$y$", 0, NULL, 0);
	struct crypt_data *data = xcalloc(1, sizeof *data);
	const char *h = setting != NULL ? crypt_r(pw, setting, data) : NULL;
	explicit_bzero(pw, sizeof pw);
	if (h == NULL || h[0] == '*') {
		explicit_bzero(data, sizeof *data);
		free(data);
		free(setting);
		fatal("cannot hash the password with yescrypt: %s",
		      errno ? strerror(errno) : "crypt failed");
	}
	str_append(hash, h);
	explicit_bzero(data, sizeof *data);
	free(data);
	free(setting);
}

/* ---- domains ---- */

static int cmd_domain(struct ctl *c, int argc, char **argv)
{
	struct str err = STR_INIT;
	struct strlist l = STRLIST_INIT;

	if (argc < 1)
		usage_error("domain: add, del or list?");
	const char *sub = argv[0];
	if (strcmp(sub, "list") == 0) {
		if (argc != 1)
			usage_error("domain list takes no arguments");
		open_db(c, false, false);
		if (userdb_list_domains(c->db, &l) < 0)
			fatal("cannot list the domains");
		for (size_t i = 0; i < l.n; i++)
			printf("%s\n", l.items[i]);
		strlist_free(&l);
		return 0;
	}
	if (strcmp(sub, "add") != 0 && strcmp(sub, "del") != 0)
		usage_error("domain: unknown subcommand %s", sub);
	if (argc != 2)
		usage_error("domain %s takes one DOMAIN", sub);

	char *domain = xstrdup(argv[1]);
	addr_lowercase(domain);
	if (strcmp(sub, "add") == 0) {
		/* Checked before the database may be created. */
		if (!addr_valid_domain(domain))
			fatal("invalid domain %s", argv[1]);
		open_db(c, true, true);
		if (userdb_domain_add(c->db, domain, &err) < 0)
			fatal("%s", str_c(&err));
		printf("added domain %s\n", domain);
	} else {
		open_db(c, true, false);
		if (userdb_domain_del(c->db, domain, &err) < 0)
			fatal("%s", str_c(&err));
		printf("deleted domain %s\n", domain);
	}
	free(domain);
	str_free(&err);
	return 0;
}

/* ---- users ---- */

/* Split user add/passwd arguments: ADDRESS and --password-stdin. */
static const char *user_args(const char *sub, int argc, char **argv,
			     bool *from_stdin)
{
	const char *address = NULL;

	*from_stdin = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--password-stdin") == 0)
			*from_stdin = true;
		else if (strncmp(argv[i], "--", 2) == 0)
			usage_error("user %s: unknown option %s", sub, argv[i]);
		else if (address == NULL)
			address = argv[i];
		else
			usage_error("user %s takes one ADDRESS", sub);
	}
	if (address == NULL)
		usage_error("user %s needs an ADDRESS", sub);
	return address;
}

/* Who should own a new Maildir: the owner of mail_dir when we are root
 * (the handlers run as that user), else whoever runs us. */
static void maildir_owner(const char *mail_dir, uid_t *uid, gid_t *gid)
{
	struct stat st;

	if (stat(mail_dir, &st) < 0)
		fatal("mail_dir %s: %s", mail_dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		fatal("mail_dir %s is not a directory", mail_dir);
	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (geteuid() == 0) {
		*uid = st.st_uid;
		*gid = st.st_gid;
	}
}

static int rm_one(const char *path, const struct stat *st, int type,
		  struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

/* Undo a Maildir we created ourselves and then could not finish. */
static void remove_new_tree(const char *path)
{
	(void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* mkdir mail_dir/<domain> if missing; *created says if we did. */
static int make_domain_dir(const char *dir, uid_t uid, gid_t gid,
			   bool *created)
{
	*created = false;
	if (mkdir(dir, 0700) < 0)
		return errno == EEXIST ? 0 : -1;
	*created = true;
	if (uid != (uid_t)-1 && chown(dir, uid, gid) < 0) {
		int e = errno;
		rmdir(dir);
		*created = false;
		errno = e;
		return -1;
	}
	return 0;
}

static void user_add(struct ctl *c, const char *address, bool from_stdin)
{
	struct str err = STR_INIT, canon = STR_INIT, hash = STR_INIT;
	struct str path = STR_INIT, domain_dir = STR_INIT;
	struct stat st;
	uid_t uid;
	gid_t gid;
	bool domain_created;

	/* Everything that can refuse comes before anything is created. */
	open_db(c, true, false);
	if (userdb_user_check_new(c->db, address, &canon, &err) < 0)
		fatal("%s", str_c(&err));
	maildir_owner(c->cfg.mail_dir, &uid, &gid);
	password_hash(canon.data, from_stdin, &hash);

	maildir_path(c->cfg.mail_dir, canon.data, &path);
	str_printf(&domain_dir, "%s/%s", c->cfg.mail_dir,
		   strrchr(canon.data, '@') + 1);
	bool existed = stat(path.data, &st) == 0;
	if (make_domain_dir(domain_dir.data, uid, gid, &domain_created) < 0)
		fatal("cannot create %s: %s", domain_dir.data,
		      strerror(errno));
	if (maildir_create(path.data, uid, gid) < 0) {
		int e = errno;
		if (!existed)
			remove_new_tree(path.data);
		if (domain_created)
			rmdir(domain_dir.data);
		fatal("cannot create the Maildir %s: %s; user %s not added",
		      path.data, strerror(e), canon.data);
	}
	if (userdb_user_add(c->db, canon.data, hash.data, &err) < 0)
		fatal("%s; the empty Maildir %s was left in place", str_c(&err),
		      path.data);
	explicit_bzero(hash.data, hash.len);

	printf("added user %s, Maildir %s%s\n", canon.data, path.data,
	       existed ? " (it existed already and was kept)" : "");

	/* An alias of the same name takes the user's mail. */
	struct strlist targets = STRLIST_INIT;
	if (userdb_alias_targets(c->db, canon.data, &targets) == 1 &&
	    !strlist_contains(&targets, canon.data))
		printf("note: %s is also an alias, which takes its mail; to "
		       "keep a copy in its Maildir run: sockmailctl alias add "
		       "%s %s\n", canon.data, canon.data, canon.data);
	strlist_free(&targets);
	str_free(&err);
	str_free(&canon);
	str_free(&hash);
	str_free(&path);
	str_free(&domain_dir);
}

static void user_passwd(struct ctl *c, const char *address, bool from_stdin)
{
	struct str err = STR_INIT, canon = STR_INIT, hash = STR_INIT;

	open_db(c, true, false);
	canonical_address(address, &canon);
	/* Ask for no password for a user who is not there. */
	int u = userdb_user_hash(c->db, canon.data, &hash);
	if (u < 0)
		fatal("cannot read the users database");
	if (u == 0)
		fatal("no such user %s", canon.data);
	explicit_bzero(hash.data, hash.len);
	str_clear(&hash);
	password_hash(canon.data, from_stdin, &hash);
	if (userdb_user_set_hash(c->db, address, hash.data, &err) < 0)
		fatal("%s", str_c(&err));
	explicit_bzero(hash.data, hash.len);
	printf("changed the password of %s\n", canon.data);
	str_free(&err);
	str_free(&canon);
	str_free(&hash);
}

static void user_del(struct ctl *c, const char *address)
{
	struct str err = STR_INIT, canon = STR_INIT, path = STR_INIT;

	open_db(c, true, false);
	if (userdb_user_del(c->db, address, &err) < 0)
		fatal("%s", str_c(&err));
	canonical_address(address, &canon);
	maildir_path(c->cfg.mail_dir, canon.data, &path);
	printf("deleted user %s; the Maildir %s was kept (remove it by hand "
	       "when it is no longer needed)\n", canon.data, path.data);
	str_free(&err);
	str_free(&canon);
	str_free(&path);
}

/* user list / alias list: [DOMAIN], which must be local. */
static const char *list_domain(struct ctl *c, const char *what, int argc,
			       char **argv)
{
	if (argc > 2)
		usage_error("%s list takes at most one DOMAIN", what);
	open_db(c, false, false);
	if (argc < 2)
		return NULL;
	int d = userdb_domain_exists(c->db, argv[1]);
	if (d < 0)
		fatal("cannot read the users database");
	if (d == 0)
		fatal("domain %s is not a local domain", argv[1]);
	return argv[1];
}

static int cmd_user(struct ctl *c, int argc, char **argv)
{
	struct strlist l = STRLIST_INIT;
	bool from_stdin = false;

	if (argc < 1)
		usage_error("user: add, del, passwd or list?");
	const char *sub = argv[0];
	if (strcmp(sub, "add") == 0) {
		const char *address = user_args(sub, argc, argv, &from_stdin);
		user_add(c, address, from_stdin);
	} else if (strcmp(sub, "passwd") == 0) {
		const char *address = user_args(sub, argc, argv, &from_stdin);
		user_passwd(c, address, from_stdin);
	} else if (strcmp(sub, "del") == 0) {
		if (argc != 2)
			usage_error("user del takes one ADDRESS");
		user_del(c, argv[1]);
	} else if (strcmp(sub, "list") == 0) {
		const char *domain = list_domain(c, "user", argc, argv);
		if (userdb_list_users(c->db, domain, &l) < 0)
			fatal("cannot list the users");
		for (size_t i = 0; i < l.n; i++)
			printf("%s\n", l.items[i]);
		strlist_free(&l);
	} else {
		usage_error("user: unknown subcommand %s", sub);
	}
	return 0;
}

/* ---- aliases ---- */

/* The alias's line as "alias list" shows it. */
static void print_alias(struct ctl *c, const char *address)
{
	struct strlist t = STRLIST_INIT;
	struct str canon = STR_INIT;

	if (address[0] == '@') {
		str_append(&canon, address);
		addr_lowercase(canon.data);
	} else {
		canonical_address(address, &canon);
	}
	if (userdb_alias_targets(c->db, canon.data, &t) == 1) {
		printf("alias %s:", canon.data);
		for (size_t i = 0; i < t.n; i++)
			printf("%s %s", i > 0 ? "," : "", t.items[i]);
		printf("\n");
	} else {
		printf("deleted alias %s\n", canon.data);
	}
	strlist_free(&t);
	str_free(&canon);
}

/* A user who is also an alias gets no copy unless the alias lists itself. */
static void note_alias_over_user(struct ctl *c, const char *address)
{
	struct str canon = STR_INIT, hash = STR_INIT;
	struct strlist t = STRLIST_INIT;

	canonical_address(address, &canon);
	if (address[0] != '@' &&
	    userdb_user_hash(c->db, canon.data, &hash) == 1 &&
	    userdb_alias_targets(c->db, canon.data, &t) == 1 &&
	    !strlist_contains(&t, canon.data))
		printf("note: %s is a user too; its mail now goes only to the "
		       "alias targets; to keep a copy in its Maildir run: "
		       "sockmailctl alias add %s %s\n", canon.data, canon.data,
		       canon.data);
	strlist_free(&t);
	str_free(&canon);
	str_free(&hash);
}

static int cmd_alias(struct ctl *c, int argc, char **argv)
{
	struct str err = STR_INIT;
	struct strlist l = STRLIST_INIT;

	if (argc < 1)
		usage_error("alias: add, del or list?");
	const char *sub = argv[0];
	if (strcmp(sub, "list") == 0) {
		const char *domain = list_domain(c, "alias", argc, argv);
		if (userdb_list_aliases(c->db, domain, &l) < 0)
			fatal("cannot list the aliases");
		for (size_t i = 0; i < l.n; i++)
			printf("%s\n", l.items[i]);
		strlist_free(&l);
		return 0;
	}
	bool add = strcmp(sub, "add") == 0;
	if (!add && strcmp(sub, "del") != 0)
		usage_error("alias: unknown subcommand %s", sub);
	if (argc < 2 || (add && argc < 3))
		usage_error(add ? "alias add needs an ADDRESS and at least one "
				  "TARGET"
				: "alias del needs an ADDRESS");

	for (int i = 2; i < argc; i++)
		strlist_add(&l, argv[i]);
	open_db(c, true, false);
	int r = add ? userdb_alias_add(c->db, argv[1], &l, &err)
		    : userdb_alias_del(c->db, argv[1], &l, &err);
	if (r < 0)
		fatal("%s", str_c(&err));
	print_alias(c, argv[1]);
	if (add)
		note_alias_over_user(c, argv[1]);
	strlist_free(&l);
	str_free(&err);
	return 0;
}

/* ---- queue ---- */

#define QUEUE_HEADERS_MAX 65536		/* bytes of headers "queue show" prints */
#define QUEUE_HEADER_LINES_MAX 500

static void load_config(struct ctl *c)
{
	struct str err = STR_INIT;

	if (config_load(&c->cfg, c->config_file, &err) < 0)
		fatal("%s", str_c(&err));
	c->loaded = true;
	str_free(&err);
}

/* Text from the queue (a remote server's error, a sender) made safe for a
 * terminal: valid UTF-8 other than control characters is kept, every other
 * byte is shown as \xHH. */
static void append_safe(struct str *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		size_t n = 0;
		unsigned cp = 0;
		if (*p >= 0x20 && *p < 0x7f) {
			n = 1;
			cp = *p;
		} else if (*p >= 0xc2 && *p <= 0xf4) {
			size_t want = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;
			cp = *p & (0x7f >> want);
			n = 1;
			while (n < want && (p[n] & 0xc0) == 0x80)
				cp = cp << 6 | (p[n++] & 0x3f);
			/* short, overlong, surrogate, too large, or C1 */
			if (n != want || cp < 0xa0 ||
			    (want == 3 && cp < 0x800) ||
			    (want == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
			    (cp >= 0xd800 && cp <= 0xdfff))
				n = 0;
		}
		if (n == 0) {
			str_printf(out, "\\x%02X", *p);
			p++;
		} else {
			str_append_n(out, p, n);
			p += n;
		}
	}
}

/* "45s", "12m", "3h05m", "2d04h" */
static void append_duration(struct str *out, long long s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		str_printf(out, "%llds", s);
	else if (s < 3600)
		str_printf(out, "%lldm", s / 60);
	else if (s < 86400)
		str_printf(out, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		str_printf(out, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

/* When a pending recipient is tried next, relative to now. */
static void append_next(struct str *out, time_t next, time_t now)
{
	if (next == 0)
		str_append(out, "-");
	else if (next <= now)
		str_append(out, "now");
	else {
		str_append(out, "in ");
		append_duration(out, (long long)(next - now));
	}
}

static void append_time(struct str *out, time_t t)
{
	struct tm tm;
	char buf[64];

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %z", &tm) == 0)
		str_printf(out, "@%lld", (long long)t);
	else
		str_append(out, buf);
}

static void append_sender(struct str *out, const char *sender)
{
	str_append_c(out, '<');
	append_safe(out, sender);
	str_append_c(out, '>');
}

struct rcpt_counts {
	size_t pending, delivered, failed;
};

static struct rcpt_counts count_rcpts(const struct queue_envelope *env)
{
	struct rcpt_counts n = { 0, 0, 0 };

	for (size_t i = 0; i < env->n_rcpts; i++) {
		if (env->rcpts[i].state == RCPT_PENDING)
			n.pending++;
		else if (env->rcpts[i].state == RCPT_DELIVERED)
			n.delivered++;
		else
			n.failed++;
	}
	return n;
}

/* The id the sysadmin typed, checked before anything is opened. */
static const char *queue_id_arg(const char *sub, int argc, char **argv)
{
	if (argc != 2)
		usage_error("queue %s takes one queue ID", sub);
	if (!queue_id_valid(argv[1]))
		fatal("invalid queue ID %s (letters and digits only)", argv[1]);
	return argv[1];
}

static void queue_list_line(const struct queue_envelope *env, time_t now)
{
	struct str age = STR_INIT, next = STR_INIT, sender = STR_INIT;
	struct str counts = STR_INIT, error = STR_INIT;
	struct rcpt_counts n = count_rcpts(env);

	append_duration(&age, (long long)(now - env->arrival));
	append_next(&next, queue_envelope_next(env), now);
	append_sender(&sender, env->sender);
	str_printf(&counts, "%zu/%zu/%zu", n.pending, n.delivered, n.failed);
	for (size_t i = 0; i < env->n_rcpts && error.len == 0; i++)
		if (env->rcpts[i].state == RCPT_PENDING &&
		    env->rcpts[i].last_error != NULL)
			append_safe(&error, env->rcpts[i].last_error);
	if (error.len == 0 && n.pending == 0 && n.failed > 0)
		str_append(&error, "(delivery status notification due)");
	printf("%-24s %6s %9llu %-8s %-7s %-30s %s\n", env->id, age.data,
	       (unsigned long long)env->size, counts.data, next.data,
	       sender.data, error.len ? error.data : "-");
	str_free(&age);
	str_free(&next);
	str_free(&sender);
	str_free(&counts);
	str_free(&error);
}

static int queue_cmd_list(struct ctl *c)
{
	struct strlist ids = STRLIST_INIT;
	struct str err = STR_INIT;
	unsigned long long bytes = 0;
	size_t shown = 0, pending = 0;
	int ret = 0;

	load_config(c);
	if (queue_list(&c->cfg, &ids, &err) < 0)
		fatal("%s", str_c(&err));
	time_t now = queue_now();
	for (size_t i = 0; i < ids.n; i++) {
		struct queue_envelope env;
		str_clear(&err);
		int r = queue_load(&c->cfg, ids.items[i], &env, &err);
		if (r == 1)
			continue;	/* delivered or deleted meanwhile */
		if (shown++ == 0)
			printf("%-24s %6s %9s %-8s %-7s %-30s %s\n", "QUEUE ID",
			       "AGE", "SIZE", "P/D/F", "NEXT", "SENDER",
			       "LAST ERROR");
		if (r < 0) {
			printf("%-24s (%s)\n", ids.items[i], str_c(&err));
			ret = EXIT_USER;
			continue;
		}
		queue_list_line(&env, now);
		bytes += env.size;
		pending += count_rcpts(&env).pending;
		queue_envelope_free(&env);
	}
	if (shown == 0)
		printf("Mail queue is empty\n");
	else
		printf("-- %zu message%s, %llu bytes, %zu recipient%s pending "
		       "(P/D/F: pending/delivered/failed recipients)\n", shown,
		       shown == 1 ? "" : "s", bytes, pending,
		       pending == 1 ? "" : "s");
	strlist_free(&ids);
	str_free(&err);
	return ret;
}

/* The message's header lines, up to the blank line, bounded. */
static void queue_show_headers(struct ctl *c, const char *id)
{
	struct str path = STR_INIT, line = STR_INIT;
	size_t total = 0, lines = 0;
	int ch;

	queue_message_path(&c->cfg, id, &path);
	FILE *fp = fopen(path.data, "re");
	if (fp == NULL) {
		printf("  (cannot read %s: %s)\n", path.data, strerror(errno));
		str_free(&path);
		return;
	}
	for (;;) {
		str_clear(&line);
		while ((ch = getc(fp)) != EOF && ch != '\n' &&
		       total < QUEUE_HEADERS_MAX) {
			if (ch == '\0')
				str_append(&line, "\\x00");	/* as text */
			else
				str_append_c(&line, (char)ch);
			total++;
		}
		if (ch == EOF && line.len == 0)
			break;	/* no body */
		if (line.len == 0)
			break;	/* the blank line */
		struct str safe = STR_INIT;
		append_safe(&safe, line.data);
		printf("  %s\n", safe.data);
		str_free(&safe);
		if (total >= QUEUE_HEADERS_MAX ||
		    ++lines >= QUEUE_HEADER_LINES_MAX) {
			printf("  [... cut: more than %s of headers]\n",
			       total >= QUEUE_HEADERS_MAX ? "64 KiB"
							  : "500 lines");
			break;
		}
		if (ch == EOF)
			break;
	}
	fclose(fp);
	str_free(&path);
	str_free(&line);
}

static int queue_cmd_show(struct ctl *c, const char *id)
{
	struct queue_envelope env;
	struct str err = STR_INIT, s = STR_INIT;

	load_config(c);
	int r = queue_load(&c->cfg, id, &env, &err);
	if (r < 0)
		fatal("%s", str_c(&err));
	if (r == 1)
		fatal("no such message %s in the queue", id);
	time_t now = queue_now();
	struct rcpt_counts n = count_rcpts(&env);

	printf("Queue ID:      %s\n", env.id);
	append_sender(&s, env.sender);
	printf("Sender:        %s\n", s.data);
	str_clear(&s);
	if (env.auth_user != NULL)
		append_safe(&s, env.auth_user);
	printf("Submitted by:  %s\n", env.auth_user ? s.data : "-");
	str_clear(&s);
	append_time(&s, env.arrival);
	str_append(&s, " (");
	append_duration(&s, (long long)(now - env.arrival));
	printf("Arrival:       %s ago)\n", s.data);
	printf("Size:          %llu bytes\n", (unsigned long long)env.size);
	printf("Needs:         %s%s%s\n", env.smtputf8 ? "SMTPUTF8 " : "",
	       env.body_8bit ? "8BITMIME" : "",
	       env.smtputf8 || env.body_8bit ? "" : "-");
	printf("Delay notice:  %s\n", env.delay_warned ? "sent" : "not sent");
	int fd = queue_lock(&c->cfg, id);
	printf("Status:        %s\n",
	       fd >= 0 ? "waiting" :
	       errno == EWOULDBLOCK ? "being delivered by a queue runner now" :
	       "the message file is missing");
	if (fd >= 0)
		close(fd);
	printf("Recipients:    %zu (%zu pending, %zu delivered, %zu failed)\n",
	       env.n_rcpts, n.pending, n.delivered, n.failed);
	for (size_t i = 0; i < env.n_rcpts; i++) {
		const struct queue_rcpt *rc = &env.rcpts[i];
		static const char *const names[] = { "pending", "delivered",
						     "failed" };
		str_clear(&s);
		append_sender(&s, rc->address);
		printf("  %s%s\n", s.data, rc->local ? " (local mailbox)" : "");
		printf("    state %s, %u attempt%s", names[rc->state],
		       rc->attempts, rc->attempts == 1 ? "" : "s");
		if (rc->state == RCPT_PENDING) {
			str_clear(&s);
			append_next(&s, rc->next_try, now);
			str_append(&s, " (");
			append_time(&s, rc->next_try);
			printf(", next try %s)", s.data);
		} else if (rc->state == RCPT_FAILED) {
			printf(", %s", rc->dsn_sent ? "sender notified"
						    : "notice to the sender due");
		}
		printf("\n");
		if (rc->last_error != NULL) {
			str_clear(&s);
			append_safe(&s, rc->last_error);
			printf("    last error: %s\n", s.data);
		}
		if (rc->orcpt != NULL) {
			str_clear(&s);
			append_safe(&s, rc->orcpt);
			printf("    original recipient: %s\n", s.data);
		}
	}
	printf("Headers:\n");
	queue_show_headers(c, id);
	queue_envelope_free(&env);
	str_free(&err);
	str_free(&s);
	return 0;
}

struct flush_arg {
	time_t now;
	size_t changed;		/* recipients changed */
};

/* flush: every pending recipient due now. */
static int flush_one(struct queue_envelope *env, void *arg)
{
	struct flush_arg *a = arg;
	int changed = 0;

	for (size_t i = 0; i < env->n_rcpts; i++) {
		struct queue_rcpt *rc = &env->rcpts[i];
		if (rc->state == RCPT_PENDING && rc->next_try > a->now) {
			rc->next_try = a->now;
			a->changed++;
			changed = 1;
		}
	}
	return changed;
}

static int queue_cmd_flush(struct ctl *c)
{
	struct strlist ids = STRLIST_INIT;
	struct str err = STR_INIT;
	struct flush_arg a = { queue_now(), 0 };
	size_t messages = 0;
	int ret = 0;

	load_config(c);
	if (queue_list(&c->cfg, &ids, &err) < 0)
		fatal("%s", str_c(&err));
	for (size_t i = 0; i < ids.n; i++) {
		size_t before = a.changed;
		str_clear(&err);
		/* one transaction each: a runner's results are never lost */
		if (queue_update(&c->cfg, ids.items[i], flush_one, &a,
				 &err) < 0) {
			fprintf(stderr, "sockmailctl: %s\n", str_c(&err));
			ret = EXIT_USER;
		}
		messages += a.changed > before;
	}
	queue_trigger(&c->cfg);
	printf("%zu message%s made due now (%zu recipient%s); queue runner "
	       "triggered\n", messages, messages == 1 ? "" : "s", a.changed,
	       a.changed == 1 ? "" : "s");
	strlist_free(&ids);
	str_free(&err);
	return ret;
}

/* Lock a message for delete/bounce, or exit saying why not. */
static int queue_lock_or_die(struct ctl *c, const char *id, const char *what)
{
	int fd = queue_lock(&c->cfg, id);
	if (fd < 0 && errno == EWOULDBLOCK)
		fatal("message %s is being delivered by a queue runner right "
		      "now; not %s (try again when the run is over)", id, what);
	if (fd < 0 && errno != ENOENT)
		fatal("cannot lock message %s: %s", id, strerror(errno));
	return fd;
}

static int queue_cmd_delete(struct ctl *c, const char *id)
{
	struct str err = STR_INIT;

	load_config(c);
	int fd = queue_lock_or_die(c, id, "deleted");
	/* Without its file the envelope is dead weight: removed too. */
	int r = queue_remove(&c->cfg, id, &err);
	if (fd >= 0)
		close(fd);
	if (r < 0)
		fatal("%s", str_c(&err));
	if (r == 1)
		fatal("no such message %s in the queue", id);
	printf("deleted message %s\n", id);
	str_free(&err);
	return 0;
}

#define BOUNCE_TEXT "5.0.0 bounced by the administrator"

struct bounce_arg {
	time_t now;
	size_t bounced;
};

static int bounce_one(struct queue_envelope *env, void *arg)
{
	struct bounce_arg *a = arg;

	for (size_t i = 0; i < env->n_rcpts; i++) {
		struct queue_rcpt *rc = &env->rcpts[i];
		if (rc->state != RCPT_PENDING)
			continue;
		rc->state = RCPT_FAILED;
		rc->dsn_sent = false;
		rc->next_try = a->now;
		free(rc->last_error);
		rc->last_error = xstrdup(BOUNCE_TEXT);
		a->bounced++;
	}
	return a->bounced > 0;
}

static int queue_cmd_bounce(struct ctl *c, const char *id)
{
	struct str err = STR_INIT;
	struct bounce_arg a = { queue_now(), 0 };

	load_config(c);
	int fd = queue_lock_or_die(c, id, "bounced");
	if (fd < 0)
		fatal("no such message %s in the queue", id);
	int r = queue_update(&c->cfg, id, bounce_one, &a, &err);
	close(fd);
	if (r < 0)
		fatal("%s", str_c(&err));
	if (r == 1)
		fatal("no such message %s in the queue", id);
	if (a.bounced == 0)
		fatal("message %s has no pending recipient to bounce", id);
	queue_trigger(&c->cfg);
	printf("bounced %zu recipient%s of message %s; the queue runner sends "
	       "the sender a delivery status notification\n", a.bounced,
	       a.bounced == 1 ? "" : "s", id);
	str_free(&err);
	return 0;
}

static int cmd_queue(struct ctl *c, int argc, char **argv)
{
	if (argc < 1)
		usage_error("queue: list, show, flush, delete or bounce?");
	const char *sub = argv[0];
	if (strcmp(sub, "list") == 0 || strcmp(sub, "flush") == 0) {
		if (argc != 1)
			usage_error("queue %s takes no arguments", sub);
		return sub[0] == 'l' ? queue_cmd_list(c) : queue_cmd_flush(c);
	}
	if (strcmp(sub, "show") == 0)
		return queue_cmd_show(c, queue_id_arg(sub, argc, argv));
	if (strcmp(sub, "delete") == 0)
		return queue_cmd_delete(c, queue_id_arg(sub, argc, argv));
	if (strcmp(sub, "bounce") == 0)
		return queue_cmd_bounce(c, queue_id_arg(sub, argc, argv));
	usage_error("queue: unknown subcommand %s", sub);
}

/* ---- check ---- */

struct checker {
	unsigned failures;
};

static void report(struct checker *k, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(struct checker *k, bool ok, const char *fmt, ...)
{
	va_list ap;
	printf("%s ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!ok)
		k->failures++;
}

/* Could uid read a file with this owner and mode (by its bits, counting
 * the user's supplementary groups)? */
static bool uid_can_read(const struct stat *st, uid_t uid)
{
	if (uid == 0)
		return true;
	if (st->st_uid == uid)
		return (st->st_mode & S_IRUSR) != 0;

	bool in_group = false;
	struct passwd *pw = getpwuid(uid);
	if (pw != NULL) {
		gid_t groups[256];
		int n = 256;
		if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
			n = 256;	/* the first 256 are filled in */
		for (int i = 0; i < n && !in_group; i++)
			in_group = groups[i] == st->st_gid;
	}
	if (in_group)
		return (st->st_mode & S_IRGRP) != 0;
	return (st->st_mode & S_IROTH) != 0;
}

/* A directory a handler writes to or reads from; *st is filled. */
static bool check_dir(struct checker *k, const char *key, const char *dir,
		      struct stat *st)
{
	if (stat(dir, st) < 0) {
		report(k, false, "%s %s: %s", key, dir, strerror(errno));
		return false;
	}
	if (!S_ISDIR(st->st_mode)) {
		report(k, false, "%s %s: not a directory", key, dir);
		return false;
	}
	if ((st->st_mode & S_IWUSR) == 0) {
		report(k, false, "%s %s: not writable by its owner (mode %04o)",
		       key, dir, (unsigned)(st->st_mode & 07777));
		return false;
	}
	if ((st->st_mode & S_IWOTH) != 0) {
		report(k, false, "%s %s: world-writable (mode %04o)", key, dir,
		       (unsigned)(st->st_mode & 07777));
		return false;
	}
	report(k, true, "%s %s (owner uid %u, mode %04o)", key, dir,
	       (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777));
	return true;
}

static void check_users_db(struct checker *k, const struct config *cfg,
			   const struct stat *state_st)
{
	struct str err = STR_INIT, path = STR_INIT;
	struct strlist d = STRLIST_INIT, u = STRLIST_INIT, a = STRLIST_INIT;
	struct stat st;

	str_printf(&path, "%s/%s", cfg->state_dir, USERDB_FILE);
	struct userdb *db = userdb_open(cfg->state_dir, false, &err);
	if (db == NULL) {
		report(k, false, "%s", str_c(&err));
	} else if (userdb_list_domains(db, &d) < 0 ||
		   userdb_list_users(db, NULL, &u) < 0 ||
		   userdb_list_aliases(db, NULL, &a) < 0) {
		report(k, false, "users database %s: cannot be read",
		       path.data);
	} else if (state_st != NULL && stat(path.data, &st) == 0 &&
		   !uid_can_read(&st, state_st->st_uid)) {
		report(k, false, "users database %s: not readable by uid %u, "
		       "the owner of state_dir that the handlers run as",
		       path.data, (unsigned)state_st->st_uid);
	} else {
		report(k, true, "users database %s (%zu domain%s, %zu user%s, "
		       "%zu alias%s)", path.data, d.n, d.n == 1 ? "" : "s",
		       u.n, u.n == 1 ? "" : "s", a.n, a.n == 1 ? "" : "es");
	}
	userdb_close(db);
	strlist_free(&d);
	strlist_free(&u);
	strlist_free(&a);
	str_free(&err);
	str_free(&path);
}

/* tls_cert / tls_key: readable; the key by nobody but its owner. */
static void check_tls_file(struct checker *k, const char *key,
			   const char *path, bool secret,
			   const struct stat *state_st)
{
	struct stat st;

	if (path[0] == '\0')
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		report(k, false, "%s %s: %s", key, path, strerror(errno));
		return;
	}
	int r = fstat(fd, &st);
	close(fd);
	if (r < 0 || !S_ISREG(st.st_mode)) {
		report(k, false, "%s %s: not a regular file", key, path);
	} else if (secret && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		report(k, false, "%s %s: readable or writable by group or "
		       "others (mode %04o); chmod 600 it", key, path,
		       (unsigned)(st.st_mode & 07777));
	} else if (state_st != NULL && !uid_can_read(&st, state_st->st_uid)) {
		report(k, false, "%s %s: not readable by uid %u, the owner of "
		       "state_dir that the handlers run as", key, path,
		       (unsigned)state_st->st_uid);
	} else {
		report(k, true, "%s %s", key, path);
	}
}

static int cmd_check(const char *config_file, int argc)
{
	struct checker k = { 0 };
	struct config cfg;
	struct str err = STR_INIT;
	struct stat mail_st, state_st, spool_st;

	if (argc != 0)
		usage_error("check takes no arguments");
	if (config_load(&cfg, config_file, &err) < 0) {
		report(&k, false, "config %s", str_c(&err));
		config_free(&cfg);
		str_free(&err);
		return EXIT_USER;
	}
	report(&k, true, "config %s", config_file);

	bool mail_ok = check_dir(&k, "mail_dir", cfg.mail_dir, &mail_st);
	bool state_ok = check_dir(&k, "state_dir", cfg.state_dir, &state_st);
	bool spool_ok = check_dir(&k, "spool_dir", cfg.spool_dir, &spool_st);
	if (mail_ok && state_ok && spool_ok) {
		/* The handlers run as one user: it writes Maildirs and the
		 * queue and reads state_dir. */
		bool same = mail_st.st_uid == state_st.st_uid &&
			    spool_st.st_uid == state_st.st_uid;
		report(&k, same, "mail_dir, state_dir and spool_dir %s "
		       "(uids %u, %u, %u)", same ? "have one owner"
						: "must have one owner",
		       (unsigned)mail_st.st_uid, (unsigned)state_st.st_uid,
		       (unsigned)spool_st.st_uid);
	}
	/* Readability by the handlers' user only matters when we are root:
	 * otherwise we probably are that user, and open() tells. */
	const struct stat *handler = state_ok && geteuid() == 0 ? &state_st
								 : NULL;
	check_users_db(&k, &cfg, handler);
	check_tls_file(&k, "tls_cert", cfg.tls_cert, false, handler);
	check_tls_file(&k, "tls_key", cfg.tls_key, true, handler);
	if ((cfg.tls_cert[0] == '\0') != (cfg.tls_key[0] == '\0'))
		report(&k, false, "tls_cert and tls_key must be set together");
	if (cfg.tls_cert_dir[0] != '\0') {
		struct stat st;
		bool ok = stat(cfg.tls_cert_dir, &st) == 0 &&
			  S_ISDIR(st.st_mode);
		report(&k, ok, "tls_cert_dir %s%s", cfg.tls_cert_dir,
		       ok ? "" : ": not a directory");
	}
	config_free(&cfg);
	str_free(&err);
	return k.failures > 0 ? EXIT_USER : 0;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_arg = NULL;
	int opt;

	opterr = 0;
	/* "+": options end at the command; its own options are its own. */
	while ((opt = getopt_long(argc, argv, "+c:", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_arg = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("sockmailctl %s\n", SOCKMAIL_VERSION);
			return 0;
		default:
			if (optopt == 'c')
				usage_error("option %s needs a FILE",
					    argv[optind - 1]);
			if (optopt == 0)
				usage_error("unknown option %s",
					    argv[optind - 1]);
			usage_error("unknown option -%c", optopt);
		}
	}
	if (optind >= argc)
		usage_error("no command given");

	const char *config_file = config_path(config_arg);
	const char *cmd = argv[optind];
	int cargc = argc - optind - 1;
	char **cargv = argv + optind + 1;
	struct ctl c = { .config_file = config_file };
	int ret;

	if (strcmp(cmd, "check") == 0)
		ret = cmd_check(config_file, cargc);
	else if (strcmp(cmd, "domain") == 0)
		ret = cmd_domain(&c, cargc, cargv);
	else if (strcmp(cmd, "user") == 0)
		ret = cmd_user(&c, cargc, cargv);
	else if (strcmp(cmd, "alias") == 0)
		ret = cmd_alias(&c, cargc, cargv);
	else if (strcmp(cmd, "queue") == 0)
		ret = cmd_queue(&c, cargc, cargv);
	else
		usage_error("unknown command %s", cmd);
	ctl_close(&c);
	if (fflush(stdout) != 0 || ferror(stdout))
		fatal("cannot write the output: %s", strerror(errno));
	return ret;
}
