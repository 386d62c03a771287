/*
 * maildir_scan: list a Maildir folder's messages for the readers (POP3,
 * IMAP), and move or delete them.  See maildir_scan.h.
 */
#include "maildir_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maildir.h"

/* First allocations: big enough to come from mmap, so that pages a small
 * maildrop never touches cost nothing, and growth is an mremap, not a copy
 * that leaves the old block dirty on the heap. */
#define ARENA_INITIAL (256 * 1024)
#define MSGS_INITIAL (ARENA_INITIAL / sizeof(struct maildir_msg))
/* A host part shorter than this is not worth a table entry. */
#define HOST_MIN 4

static const char *const subdir_name[2] = { "new", "cur" };

static void list_reset(struct maildir_list *l)
{
	memset(l, 0, sizeof *l);
	l->dir_fd[0] = l->dir_fd[1] = -1;
}

void maildir_list_free(struct maildir_list *l)
{
	for (int k = 0; k < 2; k++)
		if (l->dir_fd[k] >= 0)
			close(l->dir_fd[k]);
	for (unsigned h = 0; h < l->n_hosts; h++)
		free(l->hosts[h]);
	free(l->msgs);
	free(l->arena);
	list_reset(l);
}

static const char *stored(const struct maildir_list *l,
			  const struct maildir_msg *m)
{
	return l->arena + m->name;
}

/* Where the host part of a unique name "<time>.<id>.<host>[,...][:...]"
 * starts and how long it is; false if the name has no such part. */
static bool host_span(const char *name, size_t len, size_t *start,
		      size_t *hlen)
{
	const char *dot = memchr(name, '.', len);
	if (dot == NULL)
		return false;
	dot = memchr(dot + 1, '.', len - (size_t)(dot + 1 - name));
	if (dot == NULL)
		return false;
	size_t s = (size_t)(dot + 1 - name), e = s;
	while (e < len && name[e] != ',' && name[e] != ':')
		e++;
	*start = s;
	*hlen = e - s;
	return true;
}

/* The decoded file name of m into out (MAILDIR_NAME_MAX + 1 bytes). */
static const char *msg_decode(const struct maildir_list *l,
			      const struct maildir_msg *m, char *out)
{
	const char *st = stored(l, m);
	if (m->host == 0)
		return st;
	size_t hs, unused, slen = strlen(st);
	if (!host_span(st, slen, &hs, &unused))	/* cannot happen */
		hs = slen;
	unsigned h = m->host - 1u;
	memcpy(out, st, hs);
	memcpy(out + hs, l->hosts[h], l->host_len[h]);
	memcpy(out + hs + l->host_len[h], st + hs, slen - hs + 1);
	return out;
}

const char *maildir_msg_name(struct maildir_list *l, size_t i)
{
	return msg_decode(l, &l->msgs[i], l->namebuf);
}

const char *maildir_msg_info_flags(const struct maildir_list *l, size_t i)
{
	/* the info is never in the host part, so the stored name has it */
	const char *info = strstr(stored(l, &l->msgs[i]), ":2,");
	return info != NULL ? info + 3 : "";
}

static int msg_sub(const struct maildir_msg *m)
{
	return (m->flags & MAILDIR_MSG_NEW) ? MAILDIR_SUB_NEW : MAILDIR_SUB_CUR;
}

static size_t base_length(const char *name, size_t len)
{
	const char *colon = memchr(name, ':', len);
	return colon != NULL ? (size_t)(colon - name) : len;
}

/* The table index + 1 of a host part, added if new; 0 when the table is
 * full (the name is then stored whole). */
static uint8_t host_index(struct maildir_list *l, const char *host, size_t len)
{
	if (l->n_hosts > 0) {
		unsigned h = l->last_host;
		if (l->host_len[h] == len && memcmp(l->hosts[h], host, len) == 0)
			return (uint8_t)(h + 1);
	}
	for (unsigned h = 0; h < l->n_hosts; h++) {
		if (l->host_len[h] == len && memcmp(l->hosts[h], host, len) == 0) {
			l->last_host = h;
			return (uint8_t)(h + 1);
		}
	}
	if (l->n_hosts == MAILDIR_MAX_HOSTS)
		return 0;
	l->hosts[l->n_hosts] = xstrndup(host, len);
	l->host_len[l->n_hosts] = (uint8_t)len;
	l->last_host = l->n_hosts++;
	return (uint8_t)l->n_hosts;
}

/* Make room for need more arena bytes; -1 (E2BIG) past 32-bit offsets. */
static int arena_reserve(struct maildir_list *l, size_t need)
{
	if (l->arena_len + need > UINT32_MAX) {
		errno = E2BIG;
		return -1;
	}
	if (l->arena_len + need > l->arena_cap) {
		size_t cap = l->arena_cap ? l->arena_cap * 2 : ARENA_INITIAL;
		while (cap < l->arena_len + need)
			cap *= 2;
		l->arena = xrealloc(l->arena, cap);
		l->arena_cap = cap;
	}
	return 0;
}

/* Store file name name in entry m: at the end of the arena, or in place
 * when the old stored name is as long or longer. */
static int msg_store_name(struct maildir_list *l, struct maildir_msg *m,
			  const char *name, size_t len, bool in_place)
{
	size_t hs = 0, hl = 0;
	uint8_t host = 0;
	if (host_span(name, len, &hs, &hl) && hl >= HOST_MIN)
		host = host_index(l, name + hs, hl);
	size_t cut = host ? hl : 0;
	size_t slen = len - cut;
	size_t off;
	if (in_place && strlen(stored(l, m)) >= slen) {
		off = m->name;
	} else {
		if (arena_reserve(l, slen + 1) != 0)
			return -1;
		off = l->arena_len;
		l->arena_len += slen + 1;
	}
	char *dst = l->arena + off;
	if (host) {
		memmove(dst, name, hs);
		memmove(dst + hs, name + hs + hl, len - hs - hl);
	} else {
		memmove(dst, name, len);
	}
	dst[slen] = '\0';
	m->name = (uint32_t)off;
	m->name_len = (uint8_t)len;
	m->base_len = (uint8_t)base_length(name, len);
	m->host = host;
	return 0;
}

/* The CRLF size of a file without ",W=": its size plus the line feeds
 * that a reader turns into CRLF (those not preceded by a CR already). */
static int count_crlf_size(int dir_fd, const char *name, uint64_t *size)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	char buf[8192];
	uint64_t total = 0;
	bool prev_cr = false;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		for (ssize_t j = 0; j < n; j++) {
			if (buf[j] == '\n' && !prev_cr)
				total++;
			prev_cr = buf[j] == '\r';
		}
	}
	close(fd);
	*size = total;
	return 0;
}

static bool has_key(const char *name, const char *key)
{
	const char *info = strchr(name, ':');
	const char *p = strstr(name, key);
	return p != NULL && (info == NULL || p < info);
}

/* True if the directory entry is a regular file (not a link, not a
 * directory, not a fifo a hostile user put there). */
static bool entry_is_file(int dir_fd, const struct dirent *de)
{
	if (de->d_type == DT_REG)
		return true;
	if (de->d_type != DT_UNKNOWN)
		return false;
	struct stat st;
	return fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISREG(st.st_mode);
}

/* Add one file of subdirectory sub.  Returns 0, 1 if it was skipped (it
 * vanished while we looked), -1 on error. */
static int list_add(struct maildir_list *l, int sub, const char *name,
		    size_t len)
{
	uint64_t size = maildir_name_size(name, 'W');
	if (size == 0 && !has_key(name, ",W=") &&
	    count_crlf_size(l->dir_fd[sub], name, &size) != 0)
		return errno == ENOENT ? 1 : -1;
	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : MSGS_INITIAL;
		l->msgs = xrealloc(l->msgs, cap * sizeof *l->msgs);
		l->cap = cap;
	}
	struct maildir_msg *m = &l->msgs[l->count];
	if (msg_store_name(l, m, name, len, false) != 0)
		return -1;
	m->size = size;
	m->flags = sub == MAILDIR_SUB_NEW ? MAILDIR_MSG_NEW : 0;
	l->count++;
	return 0;
}

/* A DIR* reading dir_fd from the start, leaving dir_fd itself open. */
static DIR *open_dir_stream(int dir_fd)
{
	int fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return NULL;
	}
	rewinddir(d);	/* a dup shares the offset of earlier readers */
	return d;
}

static int scan_subdir(struct maildir_list *l, int sub, size_t max,
		       struct str *err)
{
	DIR *d = open_dir_stream(l->dir_fd[sub]);
	if (d == NULL) {
		str_printf(err, "%s/: %s", subdir_name[sub], strerror(errno));
		return -1;
	}
	int ret = 0;
	struct dirent *de;
	errno = 0;
	while (ret == 0 && (de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len > MAILDIR_NAME_MAX ||
		    !entry_is_file(l->dir_fd[sub], de)) {
			errno = 0;
			continue;
		}
		if (l->count >= max) {
			errno = E2BIG;
			str_printf(err, "more than %zu messages", max);
			ret = -1;
			break;
		}
		if (list_add(l, sub, de->d_name, len) < 0) {
			str_printf(err, "%s/%s: %s", subdir_name[sub],
				   de->d_name, strerror(errno));
			ret = -1;
		}
		errno = 0;
	}
	if (ret == 0 && errno != 0) {
		str_printf(err, "%s/: %s", subdir_name[sub], strerror(errno));
		ret = -1;
	}
	int saved = errno;
	closedir(d);
	errno = saved;
	return ret;
}

/* The delivery time at the start of a unique name ("1700000000.M..."),
 * 0 if it does not start with digits. */
static uint64_t name_time(const char *name)
{
	uint64_t t = 0;
	for (int n = 0; n < 19 && *name >= '0' && *name <= '9'; n++)
		t = t * 10 + (uint64_t)(*name++ - '0');
	return t;
}

static int msg_compare(const void *a, const void *b, void *arg)
{
	const struct maildir_list *l = arg;
	const struct maildir_msg *x = a, *y = b;
	const char *nx = stored(l, x), *ny = stored(l, y);
	uint64_t tx = name_time(nx), ty = name_time(ny);
	if (tx != ty)
		return tx < ty ? -1 : 1;
	/* With the same host cut out of both (or none), the stored bases
	 * compare like the whole ones: the parts before the host, up to the
	 * second '.', cannot be a prefix of one another unless equal. */
	size_t bx = x->base_len, by = y->base_len;
	char bufx[MAILDIR_NAME_MAX + 1], bufy[MAILDIR_NAME_MAX + 1];
	if (x->host == y->host) {
		if (x->host != 0) {
			bx -= l->host_len[x->host - 1];
			by -= l->host_len[x->host - 1];
		}
	} else {
		nx = msg_decode(l, x, bufx);
		ny = msg_decode(l, y, bufy);
	}
	size_t n = bx < by ? bx : by;
	int c = memcmp(nx, ny, n);
	if (c != 0)
		return c;
	if (bx != by)
		return bx < by ? -1 : 1;
	/* the same unique name twice: new/ first, then by the whole name */
	if ((x->flags & MAILDIR_MSG_NEW) != (y->flags & MAILDIR_MSG_NEW))
		return (x->flags & MAILDIR_MSG_NEW) ? -1 : 1;
	return strcmp(msg_decode(l, x, bufx), msg_decode(l, y, bufy));
}

int maildir_list_scan(struct maildir_list *l, const char *path,
		      size_t max_messages, struct str *err)
{
	list_reset(l);
	int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		str_printf(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	int ret = 0;
	for (int k = 0; k < 2 && ret == 0; k++) {
		l->dir_fd[k] = openat(root, subdir_name[k],
				      O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (l->dir_fd[k] < 0) {
			str_printf(err, "%s/%s: %s", path, subdir_name[k],
				   strerror(errno));
			ret = -1;
		}
	}
	int saved = errno;
	close(root);
	errno = saved;
	for (int k = 0; k < 2 && ret == 0; k++)
		ret = scan_subdir(l, k, max_messages, err);
	if (ret != 0) {
		saved = errno;
		maildir_list_free(l);
		errno = saved;
		return -1;
	}
	if (l->count > 1)
		qsort_r(l->msgs, l->count, sizeof *l->msgs, msg_compare, l);
	return 0;
}

/* Find message i again by its unique name after a rename by someone else;
 * 0 and the entry updated, or -1 (ENOENT: gone, marked so). */
static int msg_locate(struct maildir_list *l, size_t i)
{
	struct maildir_msg *m = &l->msgs[i];
	char base[MAILDIR_NAME_MAX + 1];
	memcpy(base, maildir_msg_name(l, i), m->base_len);
	size_t blen = m->base_len;
	for (int k = 0; k < 2; k++) {
		DIR *d = open_dir_stream(l->dir_fd[k]);
		if (d == NULL)
			return -1;
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			size_t len = strlen(de->d_name);
			if (len > MAILDIR_NAME_MAX || len < blen ||
			    memcmp(de->d_name, base, blen) != 0 ||
			    (len > blen && de->d_name[blen] != ':'))
				continue;
			int r = msg_store_name(l, &l->msgs[i], de->d_name, len,
					       true);
			closedir(d);
			if (r != 0)
				return -1;
			m = &l->msgs[i];
			m->flags = (uint8_t)((m->flags & ~MAILDIR_MSG_NEW) |
					     (k == MAILDIR_SUB_NEW ? MAILDIR_MSG_NEW : 0));
			return 0;
		}
		closedir(d);
	}
	l->msgs[i].flags |= MAILDIR_MSG_GONE;
	errno = ENOENT;
	return -1;
}

int maildir_msg_open(struct maildir_list *l, size_t i)
{
	for (int tries = 0; tries < 2; tries++) {
		struct maildir_msg *m = &l->msgs[i];
		if (m->flags & MAILDIR_MSG_GONE)
			break;
		int fd = openat(l->dir_fd[msg_sub(m)], maildir_msg_name(l, i),
				O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0 || errno != ENOENT)
			return fd;
		if (msg_locate(l, i) != 0)
			return -1;
	}
	errno = ENOENT;
	return -1;
}

/* The name message i gets when seen: ":2,S" added, or S put into the
 * flags in ASCII order as the Maildir specification wants.  A name with
 * other (non ":2,") info is left alone. */
static void seen_name(const char *name, char out[MAILDIR_NAME_MAX + 8])
{
	const char *info = strstr(name, ":2,");
	if (info == NULL) {
		if (strchr(name, ':') != NULL)
			snprintf(out, MAILDIR_NAME_MAX + 8, "%s", name);
		else
			snprintf(out, MAILDIR_NAME_MAX + 8, "%s:2,S", name);
		return;
	}
	const char *flags = info + 3;
	if (strchr(flags, 'S') != NULL) {
		snprintf(out, MAILDIR_NAME_MAX + 8, "%s", name);
		return;
	}
	size_t before = (size_t)(flags - name);
	const char *p = flags;
	while (*p != '\0' && (unsigned char)*p < 'S')
		p++;
	snprintf(out, MAILDIR_NAME_MAX + 8, "%.*s%.*sS%s", (int)before, name,
		 (int)(p - flags), flags, p);
}

static int rename_noreplace(int from_dir, const char *from, int to_dir,
			    const char *to)
{
	int r = renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE);
	if (r != 0 && errno == EINVAL)	/* file system without it */
		r = renameat(from_dir, from, to_dir, to);
	return r;
}

int maildir_msg_mark_seen(struct maildir_list *l, size_t i)
{
	for (int tries = 0; tries < 2; tries++) {
		struct maildir_msg *m = &l->msgs[i];
		if (m->flags & MAILDIR_MSG_GONE) {
			errno = ENOENT;
			return -1;
		}
		const char *old = maildir_msg_name(l, i);
		char target[MAILDIR_NAME_MAX + 8];
		seen_name(old, target);
		size_t tlen = strlen(target);
		int sub = msg_sub(m);
		if (sub == MAILDIR_SUB_CUR && strcmp(old, target) == 0)
			return 0;
		if (tlen > MAILDIR_NAME_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (rename_noreplace(l->dir_fd[sub], old,
				     l->dir_fd[MAILDIR_SUB_CUR], target) == 0) {
			l->dirty[sub] = l->dirty[MAILDIR_SUB_CUR] = true;
			if (msg_store_name(l, &l->msgs[i], target, tlen,
					   true) != 0)
				return -1;
			l->msgs[i].flags &= (uint8_t)~MAILDIR_MSG_NEW;
			return 0;
		}
		if (errno != ENOENT || msg_locate(l, i) != 0)
			return -1;
	}
	errno = ENOENT;
	return -1;
}

int maildir_msg_delete(struct maildir_list *l, size_t i)
{
	for (int tries = 0; tries < 2; tries++) {
		struct maildir_msg *m = &l->msgs[i];
		if (m->flags & MAILDIR_MSG_GONE)
			return 0;
		int sub = msg_sub(m);
		if (unlinkat(l->dir_fd[sub], maildir_msg_name(l, i), 0) == 0) {
			l->dirty[sub] = true;
			m->flags |= MAILDIR_MSG_GONE;
			return 0;
		}
		if (errno != ENOENT)
			return -1;
		if (msg_locate(l, i) != 0)
			return errno == ENOENT ? 0 : -1;
	}
	return 0;
}

int maildir_list_sync(struct maildir_list *l)
{
	for (int k = 0; k < 2; k++) {
		if (!l->dirty[k])
			continue;
		if (fsync(l->dir_fd[k]) != 0)
			return -1;
		l->dirty[k] = false;
	}
	return 0;
}
