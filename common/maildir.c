/*
 * maildir: unique names, Maildir++ creation and crash-safe delivery.  See
 * maildir.h for the on-disk contract.
 */
#include "maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MAILFILE_BUF_SIZE 65536

const char *const maildir_default_folders[] = {
	".Sent", ".Drafts", ".Trash", ".Junk", ".Archive", NULL
};

void maildir_path(const char *mail_dir, const char *mailbox_address,
		  struct str *out)
{
	const char *at = strrchr(mailbox_address, '@');
	str_append(out, mail_dir);
	str_append_c(out, '/');
	if (at == NULL) {
		str_append(out, mailbox_address);
		return;
	}
	str_append(out, at + 1);
	str_append_c(out, '/');
	str_append_n(out, mailbox_address, (size_t)(at - mailbox_address));
}

/* This host's name made safe for a Maildir file name: '/' and ':' are
 * written as octal escapes, as the specification says. */
static const char *maildir_hostname(void)
{
	static char host[256];
	if (host[0] != '\0')
		return host;
	char raw[128];
	if (gethostname(raw, sizeof raw) != 0)
		strcpy(raw, "localhost");
	raw[sizeof raw - 1] = '\0';
	size_t o = 0;
	for (const char *p = raw; *p != '\0' && o + 5 < sizeof host; p++) {
		if (*p == '/' || *p == ':' || *p == ',')
			o += (size_t)snprintf(host + o, sizeof host - o,
					      "\\%03o", (unsigned char)*p);
		else
			host[o++] = *p;
	}
	host[o] = '\0';
	return host;
}

void maildir_unique_name(struct str *out)
{
	static unsigned counter;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	str_printf(out, "%lld.M%06ldP%ldQ%u.%s", (long long)tv.tv_sec,
		   (long)tv.tv_usec, (long)getpid(), ++counter,
		   maildir_hostname());
}

static int mkdir_owned(const char *path, uid_t uid, gid_t gid)
{
	if (mkdir(path, 0700) != 0) {
		if (errno != EEXIST)
			return -1;
		struct stat st;
		if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return -1;
		}
		return 0;
	}
	if (uid != (uid_t)-1 && chown(path, uid, gid) != 0)
		return -1;
	return 0;
}

/* path/cur, path/new, path/tmp (path itself must exist). */
static int maildir_make_subdirs(const char *path, uid_t uid, gid_t gid)
{
	static const char *const sub[] = { "cur", "new", "tmp" };
	struct str p = STR_INIT;
	int ret = 0;
	for (size_t i = 0; i < 3 && ret == 0; i++) {
		str_clear(&p);
		str_printf(&p, "%s/%s", path, sub[i]);
		ret = mkdir_owned(str_c(&p), uid, gid);
	}
	str_free(&p);
	return ret;
}

static int maildir_make_folder(const char *path, const char *folder,
			       uid_t uid, gid_t gid)
{
	struct str p = STR_INIT;
	str_printf(&p, "%s/%s", path, folder);
	int ret = mkdir_owned(str_c(&p), uid, gid);
	if (ret == 0)
		ret = maildir_make_subdirs(str_c(&p), uid, gid);
	if (ret == 0) {
		/* Maildir++ marks folders with an empty maildirfolder file. */
		str_append(&p, "/maildirfolder");
		int fd = open(str_c(&p), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			ret = -1;
		else if (uid != (uid_t)-1 && fchown(fd, uid, gid) != 0)
			ret = -1;
		if (fd >= 0)
			close(fd);
	}
	str_free(&p);
	return ret;
}

int maildir_create(const char *path, uid_t uid, gid_t gid)
{
	/* Create missing parents too (the domain's directory). */
	struct str p = STR_INIT;
	str_append(&p, path);
	int ret = 0;
	for (char *s = p.data + 1; ret == 0 && (s = strchr(s, '/')); s++) {
		*s = '\0';
		ret = mkdir_owned(p.data, uid, gid);
		*s = '/';
	}
	if (ret == 0)
		ret = mkdir_owned(path, uid, gid);
	if (ret == 0)
		ret = maildir_make_subdirs(path, uid, gid);
	for (size_t i = 0; ret == 0 && maildir_default_folders[i]; i++)
		ret = maildir_make_folder(path, maildir_default_folders[i], uid,
					  gid);
	str_free(&p);
	return ret;
}

static void mailfile_reset(struct mailfile *f)
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
}

int mailfile_open(struct mailfile *f, const char *maildir)
{
	mailfile_reset(f);
	struct str p = STR_INIT;
	str_printf(&p, "%s/tmp", maildir);
	/* Unnamed until delivered: a crash or kill leaves nothing behind. */
	/* O_RDWR, not O_WRONLY: the cross-file-system copy reads it back. */
	f->fd = open(str_c(&p), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (f->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR ||
			  errno == EINVAL)) {
		str_append_c(&p, '/');
		maildir_unique_name(&p);
		f->fd = open(str_c(&p), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
			     0600);
		if (f->fd >= 0)
			f->tmp_path = xstrdup(str_c(&p));
	}
	str_free(&p);
	if (f->fd < 0)
		return -1;
	f->maildir = xstrdup(maildir);
	f->buf = xmalloc(MAILFILE_BUF_SIZE);
	return 0;
}

static void mailfile_flush(struct mailfile *f)
{
	size_t done = 0;
	while (f->error == 0 && done < f->buf_len) {
		ssize_t n = write(f->fd, f->buf + done, f->buf_len - done);
		if (n > 0)
			done += (size_t)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else
			f->error = n < 0 ? errno : EIO;
	}
	f->buf_len = 0;
}

void mailfile_write(struct mailfile *f, const void *data, size_t len)
{
	if (len == 0)	/* data may be NULL then (an empty str) */
		return;
	const char *p = data;
	for (const char *nl = p; (nl = memchr(nl, '\n', len - (size_t)(nl - p)));
	     nl++)
		f->newlines++;
	f->size += len;
	while (len > 0 && f->error == 0) {
		if (f->buf_len == MAILFILE_BUF_SIZE)
			mailfile_flush(f);
		size_t n = MAILFILE_BUF_SIZE - f->buf_len;
		if (n > len)
			n = len;
		memcpy(f->buf + f->buf_len, p, n);
		f->buf_len += n;
		p += n;
		len -= n;
	}
}

int mailfile_finish(struct mailfile *f)
{
	mailfile_flush(f);
	if (f->error == 0 && fsync(f->fd) != 0)
		f->error = errno;
	if (f->error != 0) {
		errno = f->error;
		return -1;
	}
	return 0;
}

int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int ret = fsync(fd);
	int saved = errno;
	close(fd);
	errno = saved;
	return ret;
}

/* Write the finished file's bytes to out.  copy_file_range() refuses
 * most copies across file systems (EXDEV), which is the case this is for,
 * so it falls back to pread/write through the (flushed, empty) buffer. */
static int mailfile_copy_data(struct mailfile *f, int out)
{
	off_t off = 0;
	bool plain = false;

	while ((uint64_t)off < f->size) {
		size_t want = (size_t)(f->size - (uint64_t)off);
		ssize_t n;
		if (!plain) {
			n = copy_file_range(f->fd, &off, out, NULL, want, 0);
			if (n < 0 && errno != EINTR && errno != EIO &&
			    errno != ENOSPC && errno != EDQUOT) {
				plain = true;
				continue;
			}
		} else {
			if (want > MAILFILE_BUF_SIZE)
				want = MAILFILE_BUF_SIZE;
			n = pread(f->fd, f->buf, want, off);
			if (n > 0) {
				for (ssize_t done = 0, w; done < n; done += w) {
					w = write(out, f->buf + done,
						  (size_t)(n - done));
					if (w < 0 && errno == EINTR)
						w = 0;
					else if (w <= 0)
						return -1;
				}
				off += n;
			}
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;	/* shorter than written */
			return -1;
		}
	}
	return 0;
}

/* Copy the finished file into maildir/tmp/, fsync it and link it as
 * target: for a Maildir on another file system than the first one, or
 * when /proc is missing for linking an O_TMPFILE. */
static int mailfile_copy_to(struct mailfile *f, const char *maildir,
			    const char *name, const char *target)
{
	struct str tmp = STR_INIT;
	str_printf(&tmp, "%s/tmp/%s", maildir, name);
	int out = open(str_c(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		       0600);
	int ret = -1;
	if (out >= 0) {
		ret = mailfile_copy_data(f, out);
		if (ret == 0)
			ret = fsync(out);
		close(out);
		/* link, not rename: an existing target stays (EEXIST) */
		if (ret == 0)
			ret = link(str_c(&tmp), target);
		int saved = errno;
		unlink(str_c(&tmp));
		errno = saved;
	}
	str_free(&tmp);
	return ret;
}

static int mailfile_link_to(struct mailfile *f, const char *target)
{
	if (f->tmp_path != NULL)
		return link(f->tmp_path, target);
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
	return linkat(AT_FDCWD, proc, AT_FDCWD, target, AT_SYMLINK_FOLLOW);
}

/* Link (or copy through copy_dir/tmp/) the finished file as target, which
 * must not exist yet, then fsync target's directory; a target that cannot
 * be made durable is removed again. */
static int mailfile_place(struct mailfile *f, const char *copy_dir,
			  const char *target)
{
	int ret = mailfile_link_to(f, target);
	if (ret != 0 && (errno == EXDEV || errno == ENOENT)) {
		const char *slash = strrchr(target, '/');
		ret = mailfile_copy_to(f, copy_dir, slash ? slash + 1 : target,
				       target);
	}
	if (ret != 0)
		return -1;

	const char *slash = strrchr(target, '/');
	struct str dir = STR_INIT;
	if (slash == NULL)
		str_append(&dir, ".");
	else if (slash == target)
		str_append(&dir, "/");
	else
		str_append_n(&dir, target, (size_t)(slash - target));
	ret = fsync_dir(str_c(&dir));
	if (ret != 0) {
		int saved = errno;
		unlink(target);
		errno = saved;
	}
	str_free(&dir);
	return ret;
}

int mailfile_link_as(struct mailfile *f, const char *path,
		     const char *copy_dir)
{
	return mailfile_place(f, copy_dir, path);
}

int mailfile_deliver(struct mailfile *f, const char *maildir, struct str *name)
{
	struct str base = STR_INIT, target = STR_INIT;
	int ret;
	do {
		str_clear(&base);
		maildir_unique_name(&base);
		str_printf(&base, ",S=%" PRIu64 ",W=%" PRIu64, f->size,
			   f->size + f->newlines);
		str_clear(&target);
		str_printf(&target, "%s/new/%s", maildir, str_c(&base));
		ret = mailfile_place(f, maildir, str_c(&target));
	} while (ret != 0 && errno == EEXIST);
	if (ret == 0 && name != NULL)
		str_append(name, str_c(&base));
	str_free(&base);
	str_free(&target);
	return ret;
}

/* Whether maildir/sub/ has a file whose name starts with prefix; 1, 0,
 * or -1 + errno.  A found one's directory is fsynced again: the run that
 * linked it may have died before its own fsync. */
static int maildir_sub_has(const char *maildir, const char *sub,
			   const char *prefix)
{
	struct str dir = STR_INIT;
	str_printf(&dir, "%s/%s", maildir, sub);
	DIR *d = opendir(str_c(&dir));
	int found = d == NULL ? -1 : 0;
	size_t plen = strlen(prefix);
	struct dirent *e;
	while (found == 0 && (e = readdir(d)) != NULL)
		found = strncmp(e->d_name, prefix, plen) == 0;
	if (d != NULL)
		closedir(d);
	if (found == 1 && fsync_dir(str_c(&dir)) != 0)
		found = -1;
	str_free(&dir);
	return found;
}

int mailfile_deliver_once(struct mailfile *f, const char *maildir,
			  time_t when, const char *unique, struct str *name)
{
	struct str prefix = STR_INIT, target = STR_INIT;
	str_printf(&prefix, "%lld.%s.", (long long)when, unique);
	int ret = maildir_sub_has(maildir, "new", str_c(&prefix));
	if (ret == 0)
		ret = maildir_sub_has(maildir, "cur", str_c(&prefix));
	if (ret == 0) {
		str_append(&prefix, maildir_hostname());
		str_printf(&prefix, ",S=%" PRIu64 ",W=%" PRIu64, f->size,
			   f->size + f->newlines);
		str_printf(&target, "%s/new/%s", maildir, str_c(&prefix));
		ret = mailfile_place(f, maildir, str_c(&target));
		if (ret == 0 && name != NULL)
			str_append(name, str_c(&prefix));
	}
	str_free(&prefix);
	str_free(&target);
	return ret;
}

void mailfile_close(struct mailfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->tmp_path != NULL)
		unlink(f->tmp_path);
	free(f->tmp_path);
	free(f->maildir);
	free(f->buf);
	mailfile_reset(f);
}

int maildir_undeliver(const char *maildir, const char *name)
{
	struct str p = STR_INIT;
	str_printf(&p, "%s/new/%s", maildir, name);
	int ret = unlink(str_c(&p));
	if (ret == 0) {
		str_truncate(&p, p.len - strlen(name) - 1);
		ret = fsync_dir(str_c(&p));
	}
	str_free(&p);
	return ret;
}

uint64_t maildir_name_size(const char *name, char which)
{
	char key[4] = { ',', which, '=', '\0' };
	const char *end = strstr(name, ":2,");
	for (const char *p = strstr(name, key); p && (!end || p < end);
	     p = strstr(p + 1, key)) {
		char *stop;
		errno = 0;
		unsigned long long v = strtoull(p + 3, &stop, 10);
		if (stop != p + 3 && errno == 0 &&
		    (*stop == ',' || *stop == ':' || *stop == '\0'))
			return v;
	}
	return 0;
}
