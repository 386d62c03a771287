/*
 * imap_mailbox: mailbox names and the commands on mailboxes as a whole:
 * CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB and STATUS
 * (RFC 3501 6.3, CHILDREN RFC 3348, SPECIAL-USE RFC 6154, a little of
 * LIST-EXTENDED RFC 5258).
 *
 * Layout (Maildir++): INBOX is the Maildir root, folder "A/B" is the
 * directory <root>/.A.B with cur/ new/ tmp/ and an empty "maildirfolder"
 * file; a '.' inside a level is stored as "&AC4-" (which no client can send:
 * it is non-canonical mUTF-7), so the mapping is one-to-one and a name can
 * never leave the root: every directory name starts with one '.' followed
 * by something else, and contains no '/'.  Folders are flat on disk, so a
 * folder's superiors need not exist; LIST shows a missing superior of an
 * existing folder as \Noselect.
 *
 * DELETE renames the folder to a hidden "..deleted-*" name first (atomic
 * for other sessions; LIST never shows ".."-names), then removes it, and
 * any such directory over an hour old that an earlier DELETE left.
 * Subscriptions are <root>/subscriptions, one mUTF-7 name a line, replaced
 * atomically, changed under a lock (subscriptions.lock).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imap.h"
#include "imap_mailbox.h"
#include "imap_mutf7.h"
#include "log.h"
#include "maildir.h"
#include "strlist.h"

#define SUBS_FILE "subscriptions"
#define SUBS_MAX_BYTES (1024 * 1024)
#define MAX_FOLDERS 20000		/* directory entries LIST looks at */
#define PATTERN_MAX 1024		/* reference + pattern */
#define SEP_STR "/"

/* ------------------------------------------------------------------ */
/* Names                                                              */
/* ------------------------------------------------------------------ */

static bool is_inbox(const char *name)
{
	return strcasecmp(name, "INBOX") == 0;
}

/* "INBOX" or "INBOX/...", any case. */
static bool has_inbox_level(const char *name)
{
	return strncasecmp(name, "INBOX", 5) == 0 &&
	       (name[5] == '\0' || name[5] == IMAP_SEPARATOR);
}

static int refuse(struct str *err, const char *why)
{
	str_clear(err);
	str_printf(err, "Invalid mailbox name: %s", why);
	return -1;
}

/* C0, DEL and C1 controls in UTF-8 text. */
static bool utf8_has_control(const struct str *u)
{
	const unsigned char *p = (const unsigned char *)str_c(u);
	for (size_t i = 0; i < u->len; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			return true;
		if (p[i] == 0xc2 && i + 1 < u->len && p[i + 1] >= 0x80 &&
		    p[i + 1] <= 0x9f)
			return true;
	}
	return false;
}

/* Append one level, '.' escaped; the first level INBOX canonical. */
static void append_level(struct str *dir, const char *level, size_t n,
			 bool first)
{
	if (first && n == 5 && strncasecmp(level, "INBOX", 5) == 0) {
		str_append(dir, "INBOX");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (level[i] == '.')
			str_append(dir, "&AC4-");
		else
			str_append_c(dir, level[i]);
	}
}

int imap_mailbox_dirname(const char *name, struct str *dir, struct str *err)
{
	size_t len = strlen(name);
	if (len == 0)
		return refuse(err, "empty");
	if (len > IMAP_MAILBOX_NAME_MAX)
		return refuse(err, "too long");
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return refuse(err, "control characters");
	struct str utf8 = STR_INIT;
	bool bad = mutf7_to_utf8(name, len, &utf8) != 0 ||
		   utf8_has_control(&utf8);
	str_free(&utf8);
	if (bad)
		return refuse(err, "not valid modified UTF-7");
	if (is_inbox(name))
		return 1;

	size_t start = dir->len;
	str_append_c(dir, '.');
	for (const char *level = name;;) {
		const char *end = strchrnul(level, IMAP_SEPARATOR);
		size_t n = (size_t)(end - level);
		const char *why = NULL;
		if (n == 0)
			why = "empty hierarchy level";
		else if ((n == 1 && level[0] == '.') ||
			 (n == 2 && level[0] == '.' && level[1] == '.'))
			why = "\".\" or \"..\" level";
		if (why != NULL) {
			str_truncate(dir, start);
			return refuse(err, why);
		}
		append_level(dir, level, n, level == name);
		if (*end == '\0')
			break;
		str_append_c(dir, '.');
		level = end + 1;
	}
	if (dir->len - start > IMAP_MAILBOX_DIRNAME_MAX) {
		str_truncate(dir, start);
		return refuse(err, "too long");
	}
	return 0;
}

/* The Maildir root without trailing '/'. */
static void root_path(const struct imap_session *s, struct str *out)
{
	const char *r = str_c(&s->maildir);
	size_t n = strlen(r);
	while (n > 1 && r[n - 1] == '/')
		n--;
	str_append_n(out, r, n);
}

int imap_mailbox_path(const struct imap_session *s, const char *name,
		      struct str *path, struct str *err)
{
	struct str dir = STR_INIT;
	int r = imap_mailbox_dirname(name, &dir, err);
	if (r >= 0) {
		root_path(s, path);
		if (r == 0) {
			str_append_c(path, '/');
			str_append(path, str_c(&dir));
		}
	}
	str_free(&dir);
	return r < 0 ? -1 : 0;
}

int imap_mailbox_from_dirname(const char *dirname, struct str *name)
{
	size_t len = strlen(dirname);
	if (len < 2 || len > IMAP_MAILBOX_DIRNAME_MAX || dirname[0] != '.' ||
	    dirname[1] == '.')
		return -1;
	struct str n = STR_INIT;
	const char *p = dirname + 1;
	while (*p != '\0') {
		if (*p == '.') {
			str_append_c(&n, IMAP_SEPARATOR);
			p++;
		} else if (*p == '&') {
			/* a shifted run: "&AC4-" is our '.', else as it is */
			size_t t = strcspn(p + 1, "-.");
			if (p[1 + t] != '-') {
				str_free(&n);
				return -1;
			}
			if (t == 3 && memcmp(p, "&AC4", 4) == 0)
				str_append_c(&n, '.');
			else
				str_append_n(&n, p, t + 2);
			p += t + 2;
		} else {
			str_append_c(&n, *p++);
		}
	}
	/* Valid only if it maps back to exactly this directory. */
	struct str back = STR_INIT, err = STR_INIT;
	bool ok = imap_mailbox_dirname(str_c(&n), &back, &err) == 0 &&
		  strcmp(str_c(&back), dirname) == 0;
	if (ok)
		str_append(name, str_c(&n));
	str_free(&back);
	str_free(&err);
	str_free(&n);
	return ok ? 0 : -1;
}

/* The name as stored and listed: INBOX's level upper-cased. */
static char *canonical_name(const char *name)
{
	char *c = xstrdup(name);
	if (has_inbox_level(c))
		memcpy(c, "INBOX", 5);
	return c;
}

const char *imap_mailbox_special_use(const char *name)
{
	static const struct {
		const char *name, *attr;
	} special[] = {
		{ "Sent", "\\Sent" },	  { "Drafts", "\\Drafts" },
		{ "Trash", "\\Trash" },	  { "Junk", "\\Junk" },
		{ "Archive", "\\Archive" },
	};
	for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
		if (strcmp(name, special[i].name) == 0)
			return special[i].attr;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* LIST patterns                                                      */
/* ------------------------------------------------------------------ */

/* The pattern with each run of wildcards made one ('*' if the run has
 * one, else '%': the same matches), or NULL when it has more literal
 * octets than the name is long and so cannot match.  Bounds the work by
 * the name, however long a pattern a client sends. */
static char *list_pattern_compact(const char *pattern, size_t name_len)
{
	size_t literals = 0;
	for (const char *p = pattern; *p; p++)
		literals += *p != '*' && *p != '%';
	if (literals > name_len)
		return NULL;
	char *out = xmalloc(2 * literals + 2), *o = out;
	for (const char *p = pattern; *p;) {
		if (*p != '*' && *p != '%') {
			*o++ = *p++;
			continue;
		}
		bool star = false;
		for (; *p == '*' || *p == '%'; p++)
			star |= *p == '*';
		*o++ = star ? '*' : '%';
	}
	*o = '\0';
	return out;
}

bool imap_list_match(const char *pattern, const char *name)
{
	/* Dynamic programming over the name: no backtracking blow-up on
	 * patterns like "*a*a*a*a*b". */
	size_t k = strlen(name);
	char *pat = list_pattern_compact(pattern, k);
	if (pat == NULL)
		return false;
	size_t fold = has_inbox_level(name) ? 5 : 0;
	bool *prev = xcalloc(k + 1, sizeof *prev);
	bool *cur = xcalloc(k + 1, sizeof *cur);
	prev[0] = true;
	for (const char *p = pat; *p; p++) {
		cur[0] = (*p == '*' || *p == '%') && prev[0];
		for (size_t j = 1; j <= k; j++) {
			char n = name[j - 1];
			if (*p == '*')
				cur[j] = prev[j] || cur[j - 1];
			else if (*p == '%')
				cur[j] = prev[j] ||
					 (cur[j - 1] && n != IMAP_SEPARATOR);
			else if (j <= fold)
				cur[j] = prev[j - 1] &&
					 toupper((unsigned char)*p) ==
						 toupper((unsigned char)n);
			else
				cur[j] = prev[j - 1] && *p == n;
		}
		bool *t = prev;
		prev = cur;
		cur = t;
	}
	bool m = prev[k];
	free(prev);
	free(cur);
	free(pat);
	return m;
}

/* ------------------------------------------------------------------ */
/* Disk                                                               */
/* ------------------------------------------------------------------ */

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A folder of its own: the directory has cur/. */
static bool folder_exists(const char *path)
{
	struct str p = STR_INIT;
	str_printf(&p, "%s/cur", path);
	bool r = is_dir(str_c(&p));
	str_free(&p);
	return r;
}

static int mkdir_ok(const char *path)
{
	return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

/* One Maildir++ folder: the directory, cur/ new/ tmp/, maildirfolder.
 * Existing pieces are fine (a concurrent CREATE, a half-made folder). */
static int make_folder(const char *path)
{
	static const char *const sub[] = { "cur", "new", "tmp" };
	struct str p = STR_INIT;
	int r = mkdir_ok(path);
	for (size_t i = 0; r == 0 && i < 3; i++) {
		str_clear(&p);
		str_printf(&p, "%s/%s", path, sub[i]);
		r = mkdir_ok(str_c(&p));
	}
	if (r == 0) {
		str_clear(&p);
		str_printf(&p, "%s/maildirfolder", path);
		int fd = open(str_c(&p), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			r = -1;
		else
			close(fd);
	}
	if (r == 0)
		r = fsync_dir(path);
	int e = errno;
	str_free(&p);
	errno = e;
	return r;
}

/* Create the missing superiors of a (valid, canonical) name as folders;
 * INBOX is always there. */
static int make_superiors(const struct imap_session *s, const char *name)
{
	struct str path = STR_INIT, err = STR_INIT;
	int r = 0;
	for (const char *p = strchr(name, IMAP_SEPARATOR); r == 0 && p;
	     p = strchr(p + 1, IMAP_SEPARATOR)) {
		char *up = xstrndup(name, (size_t)(p - name));
		str_clear(&path);
		if (imap_mailbox_path(s, up, &path, &err) == 0 &&
		    !is_inbox(up) && !folder_exists(str_c(&path)))
			r = make_folder(str_c(&path));
		free(up);
	}
	int e = errno;
	str_free(&path);
	str_free(&err);
	errno = e;
	return r;
}

/* rename(2) that never replaces an existing target. */
static int rename_noreplace(const char *from, const char *to)
{
#ifdef RENAME_NOREPLACE
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
#endif
	struct stat st;
	if (lstat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

/* Remove a deleted folder: its files and the files of its directories
 * (cur/ new/ tmp/), no deeper; whatever is left stays hidden. */
static void remove_tree(const char *path, int depth)
{
	DIR *d = opendir(path);
	if (d == NULL) {
		log_msg(LOG_WARNING, "imap: opendir %s: %s", path,
			strerror(errno));
		return;
	}
	struct str p = STR_INIT;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		str_clear(&p);
		str_printf(&p, "%s/%s", path, e->d_name);
		if (unlink(str_c(&p)) == 0)
			continue;
		if ((errno == EISDIR || errno == EPERM) && depth == 0)
			remove_tree(str_c(&p), depth + 1);
		else
			log_msg(LOG_WARNING, "imap: unlink %s: %s", str_c(&p),
				strerror(errno));
	}
	closedir(d);
	str_free(&p);
	if (rmdir(path) != 0)
		log_msg(LOG_WARNING, "imap: rmdir %s: %s", path,
			strerror(errno));
}

/* ------------------------------------------------------------------ */
/* Subscriptions                                                      */
/* ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sort_unique(struct strlist *l)
{
	if (l->n < 2)
		return;
	qsort(l->items, l->n, sizeof *l->items, cmp_str);
	size_t o = 1;
	for (size_t i = 1; i < l->n; i++) {
		if (strcmp(l->items[i], l->items[o - 1]) == 0)
			free(l->items[i]);
		else
			l->items[o++] = l->items[i];
	}
	l->n = o;
}

static bool sorted_contains(const struct strlist *l, const char *name)
{
	return l->n > 0 &&
	       bsearch(&name, l->items, l->n, sizeof *l->items, cmp_str);
}

/* Two sessions changing the subscriptions at once would each write back
 * what it read and lose the other's change: the read-modify-write holds
 * flock on <root>/subscriptions.lock (released by close, or by the
 * kernel when a session dies).  The fd, or -1 (logged). */
static int subs_lock(const char *root)
{
	struct str path = STR_INIT;
	str_printf(&path, "%s/" SUBS_FILE ".lock", root);
	int fd = open(str_c(&path), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	while (fd >= 0 && flock(fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0)
		log_msg(LOG_ERR, "imap: lock %s: %s", str_c(&path),
			strerror(errno));
	str_free(&path);
	return fd;
}

/* Read the subscriptions (sorted, unique).  A missing file is empty;
 * beyond SUBS_MAX_BYTES the rest is ignored. */
static int subs_read(const char *root, struct strlist *out)
{
	struct str path = STR_INIT, buf = STR_INIT;
	str_printf(&path, "%s/" SUBS_FILE, root);
	int fd = open(str_c(&path), O_RDONLY | O_CLOEXEC);
	int r = 0;
	if (fd < 0) {
		r = errno == ENOENT ? 0 : -1;
		goto out;
	}
	str_reserve(&buf, 4096);
	buf.data[0] = '\0';
	for (;;) {
		if (buf.len >= SUBS_MAX_BYTES) {
			log_msg(LOG_WARNING, "imap: %s: over %d bytes, rest ignored",
				str_c(&path), SUBS_MAX_BYTES);
			break;
		}
		str_reserve(&buf, 4096);
		ssize_t n = read(fd, buf.data + buf.len, 4096);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -1;
			break;
		}
		if (n == 0)
			break;
		buf.len += (size_t)n;
		buf.data[buf.len] = '\0';
	}
	close(fd);
	for (char *line = buf.data; r == 0 && line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl == NULL)
			break;	/* an unfinished last line */
		*nl = '\0';
		size_t n = (size_t)(nl - line);
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n > 0 && n <= IMAP_MAILBOX_NAME_MAX)
			strlist_add(out, line);
		line = nl + 1;
	}
	sort_unique(out);
out:
	if (r != 0)
		log_msg(LOG_ERR, "imap: read %s: %s", str_c(&path),
			strerror(errno));
	str_free(&path);
	str_free(&buf);
	return r;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Replace the subscriptions file: tmp, fsync, rename, fsync the root. */
static int subs_write(const char *root, const struct strlist *l)
{
	struct str path = STR_INIT, tmp = STR_INIT, text = STR_INIT;
	str_printf(&path, "%s/" SUBS_FILE, root);
	str_printf(&tmp, "%s/" SUBS_FILE ".tmp.%ld", root, (long)getpid());
	for (size_t i = 0; i < l->n; i++)
		str_printf(&text, "%s\n", l->items[i]);
	int r = -1;
	int fd = open(str_c(&tmp), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		      0600);
	if (fd >= 0) {
		r = write_all(fd, str_c(&text), text.len);
		if (r == 0)
			r = fsync(fd);
		if (close(fd) != 0)
			r = -1;
		if (r == 0)
			r = rename(str_c(&tmp), str_c(&path));
		if (r == 0)
			r = fsync_dir(root);
		if (r != 0) {
			int e = errno;
			unlink(str_c(&tmp));
			errno = e;
		}
	}
	if (r != 0)
		log_msg(LOG_ERR, "imap: write %s: %s", str_c(&path),
			strerror(errno));
	str_free(&path);
	str_free(&tmp);
	str_free(&text);
	return r;
}

/* ------------------------------------------------------------------ */
/* The set of names LIST and LSUB look at                             */
/* ------------------------------------------------------------------ */

struct mbox {
	char *name;		/* canonical mUTF-7 name */
	bool exists;		/* a folder of its own */
	bool subscribed;
	bool superior;		/* only there as a superior of another */
};

struct mbox_set {
	struct mbox *v;
	size_t n, cap;
};

static void set_add(struct mbox_set *set, const char *name, bool exists,
		    bool subscribed, bool superior)
{
	if (set->n == set->cap) {
		set->cap = set->cap ? set->cap * 2 : 64;
		set->v = xrealloc(set->v, set->cap * sizeof *set->v);
	}
	set->v[set->n++] = (struct mbox){ xstrdup(name), exists, subscribed,
					  superior };
}

static int cmp_mbox(const void *a, const void *b)
{
	return strcmp(((const struct mbox *)a)->name,
		      ((const struct mbox *)b)->name);
}

/* Add every superior of every name, then sort and merge duplicates. */
static void set_finish(struct mbox_set *set)
{
	size_t n = set->n;
	for (size_t i = 0; i < n; i++) {
		const char *name = set->v[i].name;
		for (const char *p = strchr(name, IMAP_SEPARATOR); p;
		     p = strchr(p + 1, IMAP_SEPARATOR)) {
			char *up = xstrndup(name, (size_t)(p - name));
			set_add(set, up, false, false, true);
			free(up);
			name = set->v[i].name;	/* set_add may move v */
		}
	}
	if (set->n > 1)
		qsort(set->v, set->n, sizeof *set->v, cmp_mbox);
	size_t o = 0;
	for (size_t i = 0; i < set->n; i++) {
		if (o > 0 && strcmp(set->v[i].name, set->v[o - 1].name) == 0) {
			struct mbox *m = &set->v[o - 1];
			m->exists |= set->v[i].exists;
			m->subscribed |= set->v[i].subscribed;
			m->superior = m->superior && set->v[i].superior;
			free(set->v[i].name);
		} else {
			set->v[o++] = set->v[i];
		}
	}
	set->n = o;
}

static void set_free(struct mbox_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		free(set->v[i].name);
	free(set->v);
	set->v = NULL;
	set->n = set->cap = 0;
}

/* The first entry not below key (names with one prefix are contiguous
 * in strcmp order). */
static size_t set_lower_bound(const struct mbox_set *set, const char *key)
{
	size_t lo = 0, hi = set->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(set->v[mid].name, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The range [*first, *end) of entries below name ("name/..."). */
static void set_inferiors(const struct mbox_set *set, const char *name,
			  size_t *first, size_t *end)
{
	struct str key = STR_INIT;
	str_printf(&key, "%s" SEP_STR, name);
	size_t i = set_lower_bound(set, str_c(&key));
	*first = i;
	while (i < set->n && strncmp(set->v[i].name, str_c(&key), key.len) == 0)
		i++;
	*end = i;
	str_free(&key);
}

static bool has_children(const struct mbox_set *set, const char *name)
{
	size_t i, end;
	set_inferiors(set, name, &i, &end);
	for (; i < end; i++)
		if (set->v[i].exists)
			return true;
	return false;
}

/* INBOX and every folder directory in the root. */
static void scan_folders(const char *root, struct mbox_set *set)
{
	set_add(set, "INBOX", true, false, false);
	DIR *d = opendir(root);
	if (d == NULL) {
		log_msg(LOG_ERR, "imap: opendir %s: %s", root, strerror(errno));
		return;
	}
	struct str name = STR_INIT, path = STR_INIT;
	struct dirent *e;
	size_t seen = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.')
			continue;
		if (++seen > MAX_FOLDERS) {
			log_msg(LOG_WARNING, "imap: %s: over %d folders, "
				"rest not listed", root, MAX_FOLDERS);
			break;
		}
		if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN &&
		    e->d_type != DT_LNK)
			continue;
		str_clear(&name);
		if (imap_mailbox_from_dirname(e->d_name, &name) != 0)
			continue;
		str_clear(&path);
		str_printf(&path, "%s/%s", root, e->d_name);
		/* A directory without cur/ is no folder; its inferiors
		 * still make it a superior. */
		if (folder_exists(str_c(&path)))
			set_add(set, str_c(&name), true, false, false);
	}
	closedir(d);
	str_free(&name);
	str_free(&path);
}

/* Reference + pattern (RFC 3501 6.3.8): concatenated, a pattern that
 * starts with the separator stands alone. */
static void full_pattern(const char *ref, const char *pat, struct str *out)
{
	if (pat[0] != IMAP_SEPARATOR)
		str_append(out, ref);
	str_append(out, pat);
}

/* The "root" answer to an empty pattern. */
static void list_root(struct imap_session *s, const char *cmd, const char *ref)
{
	struct str line = STR_INIT;
	const char *slash = strchr(ref, IMAP_SEPARATOR);
	char *root = xstrndup(ref, slash ? (size_t)(slash - ref) + 1 : 0);
	str_printf(&line, "* %s (\\Noselect) \"" SEP_STR "\" ", cmd);
	imap_append_astring(&line, root);
	str_append(&line, "\r\n");
	stream_write(&s->io, line.data, line.len);
	str_free(&line);
	free(root);
}

static void list_line(struct imap_session *s, const char *cmd,
		      const char *attrs, const char *name)
{
	struct str line = STR_INIT;
	str_printf(&line, "* %s (%s) \"" SEP_STR "\" ", cmd, attrs);
	imap_append_astring(&line, name);
	str_append(&line, "\r\n");
	stream_write(&s->io, line.data, line.len);
	str_free(&line);
}

static void add_attr(struct str *attrs, const char *a)
{
	if (attrs->len > 0)
		str_append_c(attrs, ' ');
	str_append(attrs, a);
}

static bool match_any(const struct strlist *patterns, const char *name)
{
	for (size_t i = 0; i < patterns->n; i++)
		if (imap_list_match(patterns->items[i], name))
			return true;
	return false;
}

/* ------------------------------------------------------------------ */
/* Commands                                                           */
/* ------------------------------------------------------------------ */

/* The i-th argument as an astring, or NULL. */
static const char *arg_astring(const struct imap_command *c, size_t i)
{
	return i < c->argc ? imap_arg_astring(&c->args[i]) : NULL;
}

/* Map a name that must exist; replies NO and returns -1 otherwise. */
static int existing_path(struct imap_session *s, struct imap_command *c,
			 const char *name, struct str *path)
{
	struct str err = STR_INIT;
	int r = imap_mailbox_path(s, name, path, &err);
	if (r != 0)
		imap_no(s, c, "[NONEXISTENT] %s", str_c(&err));
	else if (!is_inbox(name) && !folder_exists(str_c(path))) {
		imap_no(s, c, "[NONEXISTENT] Mailbox doesn't exist");
		r = -1;
	}
	str_free(&err);
	return r;
}

/* Map a name to be created; replies NO and returns -1 if refused. */
static int new_path(struct imap_session *s, struct imap_command *c,
		    const char *name, struct str *path)
{
	struct str err = STR_INIT;
	int r = -1;
	if (is_inbox(name))
		imap_no(s, c, "[ALREADYEXISTS] Mailbox exists");
	else if (strpbrk(name, "*%") != NULL)
		imap_no(s, c, "[CANNOT] Invalid mailbox name: wildcards");
	else if (imap_mailbox_path(s, name, path, &err) != 0)
		imap_no(s, c, "[CANNOT] %s", str_c(&err));
	else if (folder_exists(str_c(path)))
		imap_no(s, c, "[ALREADYEXISTS] Mailbox exists");
	else
		r = 0;
	str_free(&err);
	return r;
}

void imap_cmd_create(struct imap_session *s, struct imap_command *c)
{
	const char *arg = arg_astring(c, 0);
	if (arg == NULL || c->argc != 1) {
		imap_bad(s, c, "Syntax: CREATE mailbox");
		return;
	}
	/* RFC 3501 6.3.3: a trailing separator only declares intent */
	char *name = xstrdup(arg);
	size_t len = strlen(name);
	if (len > 1 && name[len - 1] == IMAP_SEPARATOR)
		name[len - 1] = '\0';
	char *canon = canonical_name(name);
	struct str path = STR_INIT, root = STR_INIT;
	root_path(s, &root);
	if (new_path(s, c, name, &path) != 0)
		goto out;
	if (make_superiors(s, canon) != 0 || make_folder(str_c(&path)) != 0 ||
	    fsync_dir(str_c(&root)) != 0) {
		log_msg(LOG_ERR, "imap: CREATE %s: %s", str_c(&path),
			strerror(errno));
		imap_no(s, c, "[SERVERBUG] CREATE failed: %s", strerror(errno));
		goto out;
	}
	imap_ok(s, c, "CREATE completed");
out:
	free(name);
	free(canon);
	str_free(&path);
	str_free(&root);
}

/* A DELETE whose removal failed half way (or whose session was killed)
 * leaves its hidden "..deleted-<pid>-<time>-<n>" directory: the next
 * DELETE removes those over an hour old (younger ones may be another
 * session's, being removed right now). */
static void sweep_deleted(const char *root)
{
	DIR *d = opendir(root);
	if (d == NULL)
		return;
	struct strlist old = STRLIST_INIT;
	struct dirent *e;
	long long now = (long long)time(NULL);
	while ((e = readdir(d)) != NULL) {
		long pid;
		long long when;
		if (sscanf(e->d_name, "..deleted-%ld-%lld-", &pid, &when) == 2 &&
		    when < now - 3600)
			strlist_add(&old, e->d_name);
	}
	closedir(d);
	struct str p = STR_INIT;
	for (size_t i = 0; i < old.n; i++) {
		str_clear(&p);
		str_printf(&p, "%s/%s", root, old.items[i]);
		remove_tree(str_c(&p), 0);
	}
	str_free(&p);
	strlist_free(&old);
}

void imap_cmd_delete(struct imap_session *s, struct imap_command *c)
{
	static unsigned counter;
	const char *arg = arg_astring(c, 0);
	if (arg == NULL || c->argc != 1) {
		imap_bad(s, c, "Syntax: DELETE mailbox");
		return;
	}
	/* Thunderbird may send the name with a trailing separator */
	char *name = xstrdup(arg);
	size_t len = strlen(name);
	if (len > 1 && name[len - 1] == IMAP_SEPARATOR)
		name[len - 1] = '\0';
	struct str path = STR_INIT, root = STR_INIT, hidden = STR_INIT;
	if (is_inbox(name)) {
		imap_no(s, c, "Cannot delete INBOX");
		goto out;
	}
	if (existing_path(s, c, name, &path) != 0)
		goto out;
	/* RFC 3501 allows deleting the selected mailbox: leave it first */
	if (s->sel != NULL && strcmp(s->sel->path, str_c(&path)) == 0)
		imap_unselect(s);
	root_path(s, &root);
	str_printf(&hidden, "%s/..deleted-%ld-%lld-%u", str_c(&root),
		   (long)getpid(), (long long)time(NULL), counter++);
	if (rename_noreplace(str_c(&path), str_c(&hidden)) != 0) {
		if (errno == ENOENT) {	/* another session was quicker */
			imap_no(s, c, "[NONEXISTENT] Mailbox doesn't exist");
			goto out;
		}
		log_msg(LOG_ERR, "imap: DELETE rename %s: %s", str_c(&path),
			strerror(errno));
		imap_no(s, c, "[SERVERBUG] DELETE failed: %s", strerror(errno));
		goto out;
	}
	if (fsync_dir(str_c(&root)) != 0)
		log_msg(LOG_WARNING, "imap: fsync %s: %s", str_c(&root),
			strerror(errno));
	remove_tree(str_c(&hidden), 0);
	sweep_deleted(str_c(&root));
	imap_ok(s, c, "DELETE completed");
out:
	free(name);
	str_free(&path);
	str_free(&root);
	str_free(&hidden);
}

/* The directory names in the root that are inferiors of dir (".a" ->
 * ".a.x", ".a.x.y"). */
static void inferior_dirs(const char *root, const char *dir,
			  struct strlist *out)
{
	DIR *d = opendir(root);
	if (d == NULL)
		return;
	size_t n = strlen(dir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, dir, n) == 0 && e->d_name[n] == '.')
			strlist_add(out, e->d_name);
	closedir(d);
}

/* RENAME INBOX (RFC 3501 6.3.5): move its messages into a new folder;
 * INBOX stays, empty, and keeps its inferiors. */
static void rename_inbox(struct imap_session *s, struct imap_command *c,
			 const char *newcanon, const char *newpath)
{
	struct str root = STR_INIT, from = STR_INIT, to = STR_INIT;
	root_path(s, &root);
	if (make_superiors(s, newcanon) != 0 || make_folder(newpath) != 0)
		goto fail;
	static const char *const sub[] = { "cur", "new" };
	for (size_t i = 0; i < 2; i++) {
		str_clear(&from);
		str_printf(&from, "%s/%s", str_c(&root), sub[i]);
		DIR *d = opendir(str_c(&from));
		if (d == NULL)
			continue;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			str_clear(&from);
			str_clear(&to);
			str_printf(&from, "%s/%s/%s", str_c(&root), sub[i],
				   e->d_name);
			str_printf(&to, "%s/%s/%s", newpath, sub[i], e->d_name);
			/* ENOENT: another session moved or expunged it */
			if (rename(str_c(&from), str_c(&to)) != 0 &&
			    errno != ENOENT) {
				closedir(d);
				goto fail;
			}
		}
		closedir(d);
		str_clear(&from);
		str_clear(&to);
		str_printf(&from, "%s/%s", str_c(&root), sub[i]);
		str_printf(&to, "%s/%s", newpath, sub[i]);
		if (fsync_dir(str_c(&to)) != 0 || fsync_dir(str_c(&from)) != 0)
			goto fail;
	}
	if (fsync_dir(str_c(&root)) != 0)
		goto fail;
	imap_ok(s, c, "RENAME completed");
	goto out;
fail:
	log_msg(LOG_ERR, "imap: RENAME INBOX %s: %s", newpath, strerror(errno));
	imap_no(s, c, "[SERVERBUG] RENAME failed: %s", strerror(errno));
out:
	str_free(&root);
	str_free(&from);
	str_free(&to);
}

/* After a rename of old to new, what was under old is under new: the
 * selected folder's path and name, the subscriptions. */
static char *renamed(const char *name, const char *old, const char *new,
		     char sep)
{
	size_t n = strlen(old);
	if (strncmp(name, old, n) != 0 || (name[n] != '\0' && name[n] != sep))
		return NULL;
	struct str r = STR_INIT;
	str_printf(&r, "%s%s", new, name + n);
	return r.data ? r.data : xstrdup("");
}

static void rename_selected(struct imap_session *s, const char *oldpath,
			    const char *newpath, const char *oldcanon,
			    const char *newcanon)
{
	if (s->sel == NULL)
		return;
	char *p = renamed(s->sel->path, oldpath, newpath, '.');
	if (p == NULL)
		return;
	free(s->sel->path);
	s->sel->path = p;
	char *canon = canonical_name(s->sel_name ? s->sel_name : "");
	char *n = renamed(canon, oldcanon, newcanon, IMAP_SEPARATOR);
	if (n != NULL) {
		free(s->sel_name);
		s->sel_name = n;
	}
	free(canon);
}

static void rename_subscriptions(const char *root, const char *oldcanon,
				 const char *newcanon)
{
	struct strlist subs = STRLIST_INIT;
	int lock = subs_lock(root);
	if (lock < 0 || subs_read(root, &subs) != 0) {
		if (lock >= 0)
			close(lock);
		return;
	}
	bool changed = false;
	for (size_t i = 0; i < subs.n; i++) {
		char *n = renamed(subs.items[i], oldcanon, newcanon,
				  IMAP_SEPARATOR);
		if (n != NULL) {
			free(subs.items[i]);
			subs.items[i] = n;
			changed = true;
		}
	}
	if (changed) {
		sort_unique(&subs);
		subs_write(root, &subs);
	}
	close(lock);
	strlist_free(&subs);
}

/* Check that every inferior can move, then move the folder and them. */
static int rename_tree(const char *root, const char *olddir,
		       const char *newdir, struct str *why)
{
	struct strlist inf = STRLIST_INIT;
	struct str from = STR_INIT, to = STR_INIT;
	int r = 0;
	inferior_dirs(root, olddir, &inf);
	size_t on = strlen(olddir);
	for (size_t i = 0; r == 0 && i < inf.n; i++) {
		str_clear(&to);
		str_printf(&to, "%s%s", newdir, inf.items[i] + on);
		str_clear(&from);
		str_printf(&from, "%s/%s", root, str_c(&to));
		struct stat st;
		if (to.len > IMAP_MAILBOX_DIRNAME_MAX) {
			str_append(why, "[CANNOT] Invalid mailbox name: too long");
			r = -1;
		} else if (lstat(str_c(&from), &st) == 0) {
			str_append(why, "[ALREADYEXISTS] An inferior exists "
					"under the new name");
			r = -1;
		}
	}
	for (size_t i = 0; r == 0 && i <= inf.n; i++) {
		const char *o = i == 0 ? olddir : inf.items[i - 1];
		str_clear(&from);
		str_clear(&to);
		str_printf(&from, "%s/%s", root, o);
		str_printf(&to, "%s/%s%s", root, newdir, o + on);
		if (rename_noreplace(str_c(&from), str_c(&to)) != 0) {
			/* an inferior another session moved is no error */
			if (i == 0 && (errno == EEXIST || errno == ENOTEMPTY)) {
				str_append(why, "[ALREADYEXISTS] Mailbox exists");
				r = -1;
			} else if (i == 0 || errno != ENOENT) {
				str_printf(why, "[SERVERBUG] RENAME failed: %s",
					   strerror(errno));
				log_msg(LOG_ERR, "imap: RENAME %s: %s",
					str_c(&from), strerror(errno));
				r = -1;
			}
		}
	}
	if (r == 0 && fsync_dir(root) != 0)
		log_msg(LOG_WARNING, "imap: fsync %s: %s", root,
			strerror(errno));
	strlist_free(&inf);
	str_free(&from);
	str_free(&to);
	return r;
}

void imap_cmd_rename(struct imap_session *s, struct imap_command *c)
{
	const char *oldname = arg_astring(c, 0), *newarg = arg_astring(c, 1);
	if (oldname == NULL || newarg == NULL || c->argc != 2) {
		imap_bad(s, c, "Syntax: RENAME old new");
		return;
	}
	char *newname = xstrdup(newarg);
	size_t len = strlen(newname);
	if (len > 1 && newname[len - 1] == IMAP_SEPARATOR)
		newname[len - 1] = '\0';
	char *oldcanon = canonical_name(oldname);
	char *newcanon = canonical_name(newname);
	struct str oldpath = STR_INIT, newpath = STR_INIT, root = STR_INIT;
	struct str olddir = STR_INIT, newdir = STR_INIT, why = STR_INIT;
	root_path(s, &root);
	if (existing_path(s, c, oldname, &oldpath) != 0 ||
	    new_path(s, c, newname, &newpath) != 0)
		goto out;
	if (is_inbox(oldname)) {
		rename_inbox(s, c, newcanon, str_c(&newpath));
		goto out;
	}
	size_t on = strlen(oldcanon);
	if (strncmp(newcanon, oldcanon, on) == 0 &&
	    newcanon[on] == IMAP_SEPARATOR) {
		imap_no(s, c, "[CANNOT] Cannot move a mailbox under itself");
		goto out;
	}
	str_append(&olddir, str_c(&oldpath) + root.len + 1);
	str_append(&newdir, str_c(&newpath) + root.len + 1);
	if (make_superiors(s, newcanon) != 0) {
		imap_no(s, c, "[SERVERBUG] RENAME failed: %s", strerror(errno));
		goto out;
	}
	if (rename_tree(str_c(&root), str_c(&olddir), str_c(&newdir),
			&why) != 0) {
		imap_no(s, c, "%s", str_c(&why));
		goto out;
	}
	rename_selected(s, str_c(&oldpath), str_c(&newpath), oldcanon,
			newcanon);
	rename_subscriptions(str_c(&root), oldcanon, newcanon);
	imap_ok(s, c, "RENAME completed");
out:
	free(newname);
	free(oldcanon);
	free(newcanon);
	str_free(&oldpath);
	str_free(&newpath);
	str_free(&root);
	str_free(&olddir);
	str_free(&newdir);
	str_free(&why);
}

/* SUBSCRIBE and UNSUBSCRIBE (c->name tells which). */
static void subscription(struct imap_session *s, struct imap_command *c,
			 bool subscribe)
{
	const char *name = arg_astring(c, 0);
	if (name == NULL || c->argc != 1) {
		imap_bad(s, c, "Syntax: %s mailbox", c->name);
		return;
	}
	struct str root = STR_INIT, dir = STR_INIT, err = STR_INIT;
	struct strlist subs = STRLIST_INIT;
	char *canon = canonical_name(name);
	int lock = -1;
	root_path(s, &root);
	/* Only valid names go in; any name in the file can come out. */
	if (subscribe && imap_mailbox_dirname(name, &dir, &err) < 0) {
		imap_no(s, c, "[CANNOT] %s", str_c(&err));
		goto out;
	}
	lock = subs_lock(str_c(&root));
	if (lock < 0 || subs_read(str_c(&root), &subs) != 0) {
		imap_no(s, c, "[SERVERBUG] %s failed", c->name);
		goto out;
	}
	bool changed = false;
	if (subscribe && !sorted_contains(&subs, canon)) {
		strlist_add(&subs, canon);
		sort_unique(&subs);
		changed = true;
	}
	for (size_t i = 0; !subscribe && i < subs.n; i++) {
		if (strcmp(subs.items[i], canon) == 0) {
			free(subs.items[i]);
			memmove(&subs.items[i], &subs.items[i + 1],
				(subs.n - i - 1) * sizeof *subs.items);
			subs.n--;
			changed = true;
			break;
		}
	}
	if (changed && subs_write(str_c(&root), &subs) != 0) {
		imap_no(s, c, "[SERVERBUG] %s failed: %s", c->name,
			strerror(errno));
		goto out;
	}
	imap_ok(s, c, "%s completed", c->name);
out:
	if (lock >= 0)
		close(lock);
	free(canon);
	strlist_free(&subs);
	str_free(&root);
	str_free(&dir);
	str_free(&err);
}

void imap_cmd_subscribe(struct imap_session *s, struct imap_command *c)
{
	subscription(s, c, true);
}

void imap_cmd_unsubscribe(struct imap_session *s, struct imap_command *c)
{
	subscription(s, c, false);
}

/* LIST options (RFC 5258 selection, RFC 5258/6154 return). */
#define SEL_SUBSCRIBED	0x01
#define SEL_SPECIAL_USE	0x02
#define RET_SUBSCRIBED	0x04

static int list_options(const struct imap_arg *a, bool selection,
			unsigned *opts)
{
	if (a->type != IMAP_ARG_LIST)
		return -1;
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *o = &a->list[i];
		if (imap_arg_atom_is(o, "SUBSCRIBED"))
			*opts |= selection ? SEL_SUBSCRIBED : RET_SUBSCRIBED;
		else if (imap_arg_atom_is(o, "SPECIAL-USE"))
			*opts |= selection ? SEL_SPECIAL_USE : 0;
		else if (selection && (imap_arg_atom_is(o, "REMOTE") ||
				       imap_arg_atom_is(o, "RECURSIVEMATCH")))
			continue;	/* no remote mailboxes; no CHILDINFO */
		else if (!selection && imap_arg_atom_is(o, "CHILDREN"))
			continue;	/* always sent */
		else
			return -1;
	}
	return 0;
}

/* Parse LIST's arguments: [(selection)] reference pattern(s) [RETURN
 * (options)]; the full patterns (reference applied) into *patterns,
 * whether an empty pattern was among them into *root. */
static int list_args(const struct imap_command *c, unsigned *opts,
		     const char **ref, struct strlist *patterns, bool *root)
{
	size_t i = 0;
	if (c->argc > 0 && c->args[0].type == IMAP_ARG_LIST) {
		if (list_options(&c->args[0], true, opts) != 0)
			return -1;
		i = 1;
	}
	if (c->argc < i + 2 || (*ref = arg_astring(c, i)) == NULL)
		return -1;
	const struct imap_arg *p = &c->args[i + 1];
	const struct imap_arg *pats = p->type == IMAP_ARG_LIST ? p->list : p;
	size_t npats = p->type == IMAP_ARG_LIST ? p->count : 1;
	if (npats == 0)
		return -1;
	for (size_t k = 0; k < npats; k++) {
		const char *pat = imap_arg_astring(&pats[k]);
		if (pat == NULL)
			return -1;
		if (*pat == '\0') {
			*root = true;
			continue;
		}
		struct str full = STR_INIT;
		full_pattern(*ref, pat, &full);
		bool ok = full.len <= PATTERN_MAX;
		if (ok)
			strlist_add(patterns, str_c(&full));
		str_free(&full);
		if (!ok)
			return -1;
	}
	i += 2;
	if (i == c->argc)
		return 0;
	if (i + 2 != c->argc || !imap_arg_atom_is(&c->args[i], "RETURN"))
		return -1;
	return list_options(&c->args[i + 1], false, opts);
}

/* The LIST attributes of one entry, or false if it is not listed. */
static bool list_attrs(const struct mbox_set *set, const struct mbox *m,
		       unsigned opts, struct str *attrs)
{
	bool children = has_children(set, m->name);
	const char *special = m->exists ? imap_mailbox_special_use(m->name)
					: NULL;
	if ((opts & SEL_SUBSCRIBED) && !m->subscribed)
		return false;
	if ((opts & SEL_SPECIAL_USE) && special == NULL)
		return false;
	if (!m->exists && !children && !(opts & SEL_SUBSCRIBED))
		return false;
	if (!m->exists)
		add_attr(attrs, (opts & SEL_SUBSCRIBED) ? "\\NonExistent"
						       : "\\Noselect");
	add_attr(attrs, children ? "\\HasChildren" : "\\HasNoChildren");
	if (special != NULL)
		add_attr(attrs, special);
	if ((opts & (SEL_SUBSCRIBED | RET_SUBSCRIBED)) && m->subscribed)
		add_attr(attrs, "\\Subscribed");
	return true;
}

void imap_cmd_list(struct imap_session *s, struct imap_command *c)
{
	unsigned opts = 0;
	const char *ref = NULL;
	bool root_wanted = false;
	struct strlist patterns = STRLIST_INIT, subs = STRLIST_INIT;
	if (list_args(c, &opts, &ref, &patterns, &root_wanted) != 0) {
		strlist_free(&patterns);
		imap_bad(s, c, "Syntax: LIST [(options)] reference pattern "
			       "[RETURN (options)]");
		return;
	}
	if (root_wanted)
		list_root(s, "LIST", ref);
	struct str root = STR_INIT, attrs = STR_INIT;
	struct mbox_set set = { 0 };
	root_path(s, &root);
	if (patterns.n > 0) {
		scan_folders(str_c(&root), &set);
		if (opts & (SEL_SUBSCRIBED | RET_SUBSCRIBED))
			subs_read(str_c(&root), &subs);
		for (size_t i = 0; (opts & SEL_SUBSCRIBED) && i < subs.n; i++)
			set_add(&set, subs.items[i], false, true, false);
		set_finish(&set);
		for (size_t i = 0; i < set.n; i++)
			if (sorted_contains(&subs, set.v[i].name))
				set.v[i].subscribed = true;
	}
	/* INBOX first, then the rest in name order */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < set.n; i++) {
			const struct mbox *m = &set.v[i];
			if ((strcmp(m->name, "INBOX") == 0) != (pass == 0))
				continue;
			if (!match_any(&patterns, m->name))
				continue;
			str_clear(&attrs);
			if (list_attrs(&set, m, opts, &attrs))
				list_line(s, "LIST", str_c(&attrs), m->name);
		}
	}
	imap_ok(s, c, "LIST completed");
	set_free(&set);
	strlist_free(&patterns);
	strlist_free(&subs);
	str_free(&root);
	str_free(&attrs);
}

/* RFC 3501 6.3.9: with '%', a subscribed inferior the pattern hides makes
 * its unsubscribed superior appear, \Noselect. */
static bool hides_subscribed(const struct mbox_set *set, const char *name,
			     const struct strlist *patterns)
{
	size_t i, end;
	set_inferiors(set, name, &i, &end);
	for (; i < end; i++)
		if (set->v[i].subscribed && !match_any(patterns, set->v[i].name))
			return true;
	return false;
}

void imap_cmd_lsub(struct imap_session *s, struct imap_command *c)
{
	const char *ref = arg_astring(c, 0), *pat = arg_astring(c, 1);
	if (ref == NULL || pat == NULL || c->argc != 2) {
		imap_bad(s, c, "Syntax: LSUB reference pattern");
		return;
	}
	if (*pat == '\0') {
		list_root(s, "LSUB", ref);
		imap_ok(s, c, "LSUB completed");
		return;
	}
	struct strlist patterns = STRLIST_INIT, subs = STRLIST_INIT;
	struct str full = STR_INIT, root = STR_INIT, path = STR_INIT;
	struct str err = STR_INIT;
	struct mbox_set set = { 0 };
	full_pattern(ref, pat, &full);
	if (full.len > PATTERN_MAX) {
		imap_bad(s, c, "Pattern too long");
		goto out;
	}
	strlist_add(&patterns, str_c(&full));
	root_path(s, &root);
	subs_read(str_c(&root), &subs);
	for (size_t i = 0; i < subs.n; i++) {
		str_clear(&path);
		bool exists = imap_mailbox_path(s, subs.items[i], &path,
						&err) == 0 &&
			      (is_inbox(subs.items[i]) ||
			       folder_exists(str_c(&path)));
		set_add(&set, subs.items[i], exists, true, false);
	}
	set_finish(&set);
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < set.n; i++) {
			const struct mbox *m = &set.v[i];
			if ((strcmp(m->name, "INBOX") == 0) != (pass == 0) ||
			    !match_any(&patterns, m->name))
				continue;
			if (m->subscribed)
				list_line(s, "LSUB", m->exists ? "" : "\\Noselect",
					  m->name);
			else if (hides_subscribed(&set, m->name, &patterns))
				list_line(s, "LSUB", "\\Noselect", m->name);
		}
	}
	imap_ok(s, c, "LSUB completed");
out:
	set_free(&set);
	strlist_free(&patterns);
	strlist_free(&subs);
	str_free(&full);
	str_free(&root);
	str_free(&path);
	str_free(&err);
}

/* STATUS items, in the order the client asked. */
enum status_item { ST_MESSAGES, ST_RECENT, ST_UIDNEXT, ST_UIDVALIDITY,
		   ST_UNSEEN };
static const char *const status_names[] = { "MESSAGES", "RECENT", "UIDNEXT",
					    "UIDVALIDITY", "UNSEEN" };
#define STATUS_ITEMS_MAX 16

static int status_items(const struct imap_arg *a, enum status_item *items,
			size_t *n)
{
	*n = 0;
	if (a->type != IMAP_ARG_LIST || a->count == 0 ||
	    a->count > STATUS_ITEMS_MAX)
		return -1;
	for (size_t i = 0; i < a->count; i++) {
		size_t k = 0;
		while (k < 5 && !imap_arg_atom_is(&a->list[i], status_names[k]))
			k++;
		if (k == 5)
			return -1;
		items[(*n)++] = (enum status_item)k;
	}
	return 0;
}

static void status_line(struct imap_session *s, const char *name,
			const struct imap_folder *f,
			const enum status_item *items, size_t n)
{
	struct str line = STR_INIT;
	str_append(&line, "* STATUS ");
	imap_append_astring(&line, name);
	str_append(&line, " (");
	for (size_t i = 0; i < n; i++) {
		unsigned long v = 0;
		switch (items[i]) {
		case ST_MESSAGES: v = f->count; break;
		case ST_RECENT: v = f->recent; break;
		case ST_UIDNEXT: v = f->uidnext; break;
		case ST_UIDVALIDITY: v = f->uidvalidity; break;
		case ST_UNSEEN: v = imap_folder_unseen(f); break;
		}
		str_printf(&line, "%s%s %lu", i ? " " : "",
			   status_names[items[i]], v);
	}
	str_append(&line, ")\r\n");
	stream_write(&s->io, line.data, line.len);
	str_free(&line);
}

void imap_cmd_status(struct imap_session *s, struct imap_command *c)
{
	const char *name = arg_astring(c, 0);
	enum status_item items[STATUS_ITEMS_MAX];
	size_t n;
	if (name == NULL || c->argc != 2 ||
	    status_items(&c->args[1], items, &n) != 0) {
		imap_bad(s, c, "Syntax: STATUS mailbox (MESSAGES RECENT "
			       "UIDNEXT UIDVALIDITY UNSEEN)");
		return;
	}
	struct str path = STR_INIT, err = STR_INIT;
	if (existing_path(s, c, name, &path) != 0)
		goto out;
	/* tdb opens a database once per process: the selected one is ours */
	if (s->sel != NULL && strcmp(s->sel->path, str_c(&path)) == 0) {
		status_line(s, name, s->sel, items, n);
		imap_ok(s, c, "STATUS completed");
		goto out;
	}
	struct imap_folder f;
	memset(&f, 0, sizeof f);
	if (imap_folder_open(&f, str_c(&path), true, &err) != 0) {
		if (errno == ENOENT)
			imap_no(s, c, "[NONEXISTENT] Mailbox doesn't exist");
		else
			imap_no(s, c, "[UNAVAILABLE] Cannot open mailbox, "
				      "try again later");
		goto out;
	}
	status_line(s, name, &f, items, n);
	imap_folder_close(&f);
	imap_ok(s, c, "STATUS completed");
out:
	str_free(&path);
	str_free(&err);
}
