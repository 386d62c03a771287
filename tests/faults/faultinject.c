/*
 * faultinject: an LD_PRELOAD shim for the fault-injection tests (issue 8,
 * tests/e2e/test_faults.py).  It makes the Nth call of one chosen file
 * system function fail with a chosen errno, so that a test can sweep N
 * over every write, fsync, rename, link, open, mkdir ... a handler makes
 * and check what the client was told against what is on disk.
 *
 * Configured by the environment, read at the first intercepted call:
 *   SOCKMAIL_FAULT_CALL    the function: write, writev, pwrite, fsync,
 *                          fdatasync, msync, rename, renameat, renameat2,
 *                          link, linkat, open, openat, creat, fopen,
 *                          mkdir, mkdirat, unlink, unlinkat, rmdir,
 *                          ftruncate, truncate, fallocate, posix_fallocate,
 *                          copy_file_range (the *64 variants count as
 *                          their base name); unset: only count
 *   SOCKMAIL_FAULT_N       which call fails, 1-based (0 or unset: none)
 *   SOCKMAIL_FAULT_ERRNO   ENOSPC (default), EIO or EDQUOT
 *   SOCKMAIL_FAULT_STICKY  1: every call from the Nth on fails, not only it
 *   SOCKMAIL_FAULT_PATH    count only calls whose path (for an fd: its
 *                          /proc/self/fd link) contains this substring
 *   SOCKMAIL_FAULT_SOCKETS 1: count fds 0-2, sockets, pipes and character
 *                          devices too (by default writes to the client,
 *                          to stderr or to /dev/null are not disk writes)
 *   SOCKMAIL_FAULT_LOG     a file the shim appends to:
 *                            "fired write#3 ENOSPC <pid> <path>"
 *                          when it makes a call fail, and at exit
 *                            "calls write 12 <pid>"
 *                            "counts <pid> write=12 fsync=3 ..."
 *                          (the calls of the chosen function, and of every
 *                          function with a nonzero count), so a sweep
 *                          knows when N is past the last call.  A sync
 *                          that fails (fsync, fdatasync, msync) adds
 *                            "where fdatasync#3 <pid> libtdb.so.1+0x5f2a ..."
 *                          its callers as library-relative addresses: the
 *                          tests tell libtdb's own syncs apart by them.
 *
 * Counters live in a MAP_SHARED page made at the first call, so the calls
 * of forked children (the queue runner's workers) count in the same
 * sequence as their parent's; an exec starts afresh.  The exit lines come
 * from a destructor, so a process that ends by _exit() or a signal writes
 * none: the test treats a missing line as an abnormal end.
 *
 * Never built with the sanitizers (they interpose on the same functions;
 * an ASan program needs ASAN_OPTIONS=verify_asan_link_order=0 to accept
 * this library first).  The real functions come from dlsym(RTLD_NEXT).
 */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* The functions that can be made to fail, by the name they count as. */
enum fi_call {
	FI_WRITE, FI_WRITEV, FI_PWRITE, FI_FSYNC, FI_FDATASYNC, FI_MSYNC,
	FI_RENAME, FI_RENAMEAT, FI_RENAMEAT2, FI_LINK, FI_LINKAT, FI_OPEN,
	FI_OPENAT, FI_CREAT, FI_FOPEN, FI_MKDIR, FI_MKDIRAT, FI_UNLINK,
	FI_UNLINKAT, FI_RMDIR, FI_FTRUNCATE, FI_TRUNCATE, FI_FALLOCATE,
	FI_POSIX_FALLOCATE, FI_COPY_FILE_RANGE,
	FI_NCALLS
};

static const char *const fi_names[FI_NCALLS] = {
	"write", "writev", "pwrite", "fsync", "fdatasync", "msync",
	"rename", "renameat", "renameat2", "link", "linkat", "open",
	"openat", "creat", "fopen", "mkdir", "mkdirat", "unlink",
	"unlinkat", "rmdir", "ftruncate", "truncate", "fallocate",
	"posix_fallocate", "copy_file_range",
};

struct fi_shared {
	atomic_ulong count[FI_NCALLS];
};

static struct {
	bool ready;
	int call;		/* enum fi_call, -1: count only */
	unsigned long n;	/* 0: never fire */
	int err;
	const char *err_name;
	bool sticky;
	bool sockets;
	const char *path;	/* substring filter, NULL: none */
	const char *log;
	struct fi_shared *sh;
	struct fi_shared local;	/* if the shared page cannot be made */
} fi = { .call = -1 };

/* ---- the real functions ---- */

#define REAL(name) real_##name
#define DECLARE_REAL(ret, name, params) \
	static ret (*real_##name) params
#define LOAD_REAL(name) \
	(real_##name != NULL ? (void)0 \
	 : (void)(*(void **)&real_##name = dlsym(RTLD_NEXT, #name)))

DECLARE_REAL(ssize_t, write, (int, const void *, size_t));
DECLARE_REAL(ssize_t, writev, (int, const struct iovec *, int));
DECLARE_REAL(ssize_t, pwrite, (int, const void *, size_t, off_t));
DECLARE_REAL(ssize_t, pwrite64, (int, const void *, size_t, off64_t));
DECLARE_REAL(int, fsync, (int));
DECLARE_REAL(int, fdatasync, (int));
DECLARE_REAL(int, msync, (void *, size_t, int));
DECLARE_REAL(int, rename, (const char *, const char *));
DECLARE_REAL(int, renameat, (int, const char *, int, const char *));
DECLARE_REAL(int, renameat2, (int, const char *, int, const char *,
			      unsigned));
DECLARE_REAL(int, link, (const char *, const char *));
DECLARE_REAL(int, linkat, (int, const char *, int, const char *, int));
DECLARE_REAL(int, open, (const char *, int, ...));
DECLARE_REAL(int, open64, (const char *, int, ...));
DECLARE_REAL(int, openat, (int, const char *, int, ...));
DECLARE_REAL(int, openat64, (int, const char *, int, ...));
DECLARE_REAL(int, creat, (const char *, mode_t));
DECLARE_REAL(int, creat64, (const char *, mode_t));
DECLARE_REAL(FILE *, fopen, (const char *, const char *));
DECLARE_REAL(FILE *, fopen64, (const char *, const char *));
DECLARE_REAL(int, mkdir, (const char *, mode_t));
DECLARE_REAL(int, mkdirat, (int, const char *, mode_t));
DECLARE_REAL(int, unlink, (const char *));
DECLARE_REAL(int, unlinkat, (int, const char *, int));
DECLARE_REAL(int, rmdir, (const char *));
DECLARE_REAL(int, ftruncate, (int, off_t));
DECLARE_REAL(int, ftruncate64, (int, off64_t));
DECLARE_REAL(int, truncate, (const char *, off_t));
DECLARE_REAL(int, truncate64, (const char *, off64_t));
DECLARE_REAL(int, fallocate, (int, int, off_t, off_t));
DECLARE_REAL(int, fallocate64, (int, int, off64_t, off64_t));
DECLARE_REAL(int, posix_fallocate, (int, off_t, off_t));
DECLARE_REAL(int, posix_fallocate64, (int, off64_t, off64_t));
DECLARE_REAL(ssize_t, copy_file_range, (int, off64_t *, int, off64_t *,
					size_t, unsigned));

/* ---- configuration and logging ---- */

static void fi_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fi_log(const char *fmt, ...)
{
	if (fi.log == NULL)
		return;
	char line[PATH_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	if ((size_t)len > sizeof line - 2)
		len = (int)sizeof line - 2;
	line[len++] = '\n';
	LOAD_REAL(open);
	LOAD_REAL(write);
	int saved = errno;
	int fd = REAL(open)(fi.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
			    0644);
	if (fd >= 0) {
		/* one write: O_APPEND keeps lines of several processes whole */
		(void)!REAL(write)(fd, line, (size_t)len);
		close(fd);
	}
	errno = saved;
}

static bool env_flag(const char *name)
{
	const char *v = getenv(name);
	return v != NULL && strcmp(v, "1") == 0;
}

static void fi_init(void)
{
	if (fi.ready)
		return;
	fi.ready = true;	/* first: the calls below may come back here */
	fi.log = getenv("SOCKMAIL_FAULT_LOG");
	void *p = mmap(NULL, sizeof *fi.sh, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	fi.sh = p != MAP_FAILED ? p : &fi.local;

	const char *call = getenv("SOCKMAIL_FAULT_CALL");
	if (call != NULL && *call != '\0') {
		for (int i = 0; i < FI_NCALLS; i++)
			if (strcmp(call, fi_names[i]) == 0)
				fi.call = i;
		if (fi.call < 0) {
			fi_log("error unknown SOCKMAIL_FAULT_CALL %s", call);
			fprintf(stderr, "faultinject: unknown "
				"SOCKMAIL_FAULT_CALL %s\n", call);
		}
	}
	const char *n = getenv("SOCKMAIL_FAULT_N");
	if (n != NULL && *n != '\0') {
		char *end;
		fi.n = strtoul(n, &end, 10);
		if (*end != '\0') {
			fi_log("error bad SOCKMAIL_FAULT_N %s", n);
			fi.n = 0;
		}
	}
	const char *e = getenv("SOCKMAIL_FAULT_ERRNO");
	fi.err = ENOSPC;
	fi.err_name = "ENOSPC";
	if (e != NULL && strcmp(e, "EIO") == 0) {
		fi.err = EIO;
		fi.err_name = "EIO";
	} else if (e != NULL && strcmp(e, "EDQUOT") == 0) {
		fi.err = EDQUOT;
		fi.err_name = "EDQUOT";
	} else if (e != NULL && *e != '\0' && strcmp(e, "ENOSPC") != 0) {
		fi_log("error bad SOCKMAIL_FAULT_ERRNO %s", e);
	}
	fi.sticky = env_flag("SOCKMAIL_FAULT_STICKY");
	fi.sockets = env_flag("SOCKMAIL_FAULT_SOCKETS");
	const char *path = getenv("SOCKMAIL_FAULT_PATH");
	fi.path = path != NULL && *path != '\0' ? path : NULL;
}

__attribute__((constructor)) static void fi_start(void)
{
	fi_init();
}

__attribute__((destructor)) static void fi_end(void)
{
	if (fi.log == NULL || fi.sh == NULL)
		return;
	char all[FI_NCALLS * 40] = "";
	size_t o = 0;
	for (int i = 0; i < FI_NCALLS; i++) {
		unsigned long c = atomic_load(&fi.sh->count[i]);
		if (c > 0 && o < sizeof all)
			o += (size_t)snprintf(all + o, sizeof all - o, " %s=%lu",
					      fi_names[i], c);
	}
	if (fi.call >= 0)
		fi_log("calls %s %lu %ld", fi_names[fi.call],
		       atomic_load(&fi.sh->count[fi.call]), (long)getpid());
	fi_log("counts %ld%s", (long)getpid(), all);
}

/* ---- which calls count ---- */

/* The file an fd refers to, into buf ("" if unknown). */
static void fd_path(int fd, char *buf, size_t size)
{
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, buf, size - 1);
	buf[n > 0 ? n : 0] = '\0';
}

/* dirfd + path as an absolute path (best effort), into buf. */
static void at_path(int dirfd, const char *path, char *buf, size_t size)
{
	buf[0] = '\0';
	if (path == NULL)
		return;
	if (strncmp(path, "/proc/self/fd/", 14) == 0) {
		fd_path(atoi(path + 14), buf, size);	/* linkat of a tmpfile */
		return;
	}
	if (path[0] == '/') {
		snprintf(buf, size, "%s", path);
		return;
	}
	char dir[PATH_MAX];
	if (dirfd == AT_FDCWD) {
		if (getcwd(dir, sizeof dir) == NULL)
			dir[0] = '\0';
	} else {
		fd_path(dirfd, dir, sizeof dir);
	}
	snprintf(buf, size, "%s/%s", dir, path);
}

/* The file a mapped address belongs to, from /proc/self/maps. */
static void map_path(const void *addr, char *buf, size_t size)
{
	buf[0] = '\0';
	FILE *(*op)(const char *, const char *);
	LOAD_REAL(fopen);
	op = REAL(fopen);
	FILE *maps = op != NULL ? op("/proc/self/maps", "re") : NULL;
	if (maps == NULL)
		return;
	char line[PATH_MAX + 128];
	uintptr_t a = (uintptr_t)addr;
	while (fgets(line, sizeof line, maps) != NULL) {
		unsigned long lo, hi;
		int off = 0;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi,
			   &off) < 2 || a < lo || a >= hi)
			continue;
		if (off > 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(buf, size, "%s", line + off);
		}
		break;
	}
	fclose(maps);
}

/* Is fd the client, stderr, a pipe or a device rather than a file? */
static bool fd_is_not_disk(int fd)
{
	if (fi.sockets)
		return false;
	if (fd >= 0 && fd <= 2)
		return true;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return false;
	return S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode) ||
	       S_ISCHR(st.st_mode);
}

/* What a call is about: one or two paths, or an fd, or a mapping. */
struct fi_target {
	int fd;			/* -1: none */
	int dirfd1, dirfd2;
	const char *path1, *path2;
	const void *addr;	/* msync */
};

#define FD_TARGET(f) \
	((struct fi_target){ .fd = (f), .dirfd1 = AT_FDCWD, \
			     .dirfd2 = AT_FDCWD })
#define PATH_TARGET(d1, p1, d2, p2) \
	((struct fi_target){ .fd = -1, .dirfd1 = (d1), .path1 = (p1), \
			     .dirfd2 = (d2), .path2 = (p2) })

/* The paths of t, "a -> b" for two, into buf. */
static void target_describe(const struct fi_target *t, char *buf, size_t size)
{
	if (t->fd >= 0) {
		fd_path(t->fd, buf, size);
	} else if (t->addr != NULL) {
		map_path(t->addr, buf, size);
	} else {
		char a[PATH_MAX], b[PATH_MAX];
		at_path(t->dirfd1, t->path1, a, sizeof a);
		at_path(t->dirfd2, t->path2, b, sizeof b);
		snprintf(buf, size, "%s%s%s", a, b[0] ? " -> " : "", b);
	}
}

/* Inside fi_where: backtrace() may dlopen its unwinder (an open()). */
static __thread bool fi_busy;

/* The callers of a failing sync, library-relative ("libtdb.so.1+0x5f2a"):
 * the same in every process that maps the same build of a library. */
static void fi_where(enum fi_call call, unsigned long n)
{
	void *frames[12];
	fi_busy = true;
	int depth = backtrace(frames, 12);
	char line[12 * 80] = "";
	size_t o = 0;
	Dl_info self;
	if (dladdr((void *)fi_where, &self) == 0)
		self.dli_fbase = NULL;
	for (int i = 0; i < depth && o < sizeof line; i++) {
		Dl_info info;
		const char *lib = "?";
		uintptr_t off = (uintptr_t)frames[i];
		if (dladdr(frames[i], &info) != 0 &&
		    info.dli_fbase == self.dli_fbase)
			continue;	/* the shim's own frames */
		if (dladdr(frames[i], &info) != 0 && info.dli_fname != NULL) {
			const char *slash = strrchr(info.dli_fname, '/');
			lib = slash != NULL ? slash + 1 : info.dli_fname;
			off -= (uintptr_t)info.dli_fbase;
		}
		o += (size_t)snprintf(line + o, sizeof line - o, " %s+%#lx",
				      lib, (unsigned long)off);
	}
	fi_log("where %s#%lu %ld%s", fi_names[call], n, (long)getpid(), line);
	fi_busy = false;
}

/* Count the call; true if it is to fail (errno is set then). */
static bool fi_hit(enum fi_call call, const struct fi_target *t)
{
	if (fi_busy)
		return false;
	int saved = errno;
	fi_init();
	if (t->fd >= 0 && (call == FI_WRITE || call == FI_WRITEV ||
			   call == FI_PWRITE || call == FI_FSYNC ||
			   call == FI_FDATASYNC) && fd_is_not_disk(t->fd)) {
		errno = saved;
		return false;
	}
	char what[2 * PATH_MAX + 8] = "";
	if (fi.path != NULL) {
		target_describe(t, what, sizeof what);
		if (strstr(what, fi.path) == NULL) {
			errno = saved;
			return false;
		}
	}
	unsigned long c = atomic_fetch_add(&fi.sh->count[call], 1) + 1;
	if ((int)call != fi.call || fi.n == 0 ||
	    (fi.sticky ? c < fi.n : c != fi.n)) {
		errno = saved;
		return false;
	}
	if (fi.path == NULL)
		target_describe(t, what, sizeof what);
	fi_log("fired %s#%lu %s %ld %s", fi_names[call], c, fi.err_name,
	       (long)getpid(), what);
	if (call == FI_FSYNC || call == FI_FDATASYNC || call == FI_MSYNC)
		fi_where(call, c);
	errno = fi.err;
	return true;
}

/* ---- the wrappers ---- */

#define FAIL_IF(call, target, ret) \
	do { \
		struct fi_target t_ = (target); \
		if (fi_hit((call), &t_)) \
			return (ret); \
	} while (0)

/* open()'s mode argument is there only with O_CREAT or O_TMPFILE. */
#define OPEN_MODE(flags, mode) \
	do { \
		if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) { \
			va_list ap_; \
			va_start(ap_, flags); \
			(mode) = va_arg(ap_, mode_t); \
			va_end(ap_); \
		} \
	} while (0)

ssize_t write(int fd, const void *buf, size_t len)
{
	LOAD_REAL(write);
	FAIL_IF(FI_WRITE, FD_TARGET(fd), -1);
	return REAL(write)(fd, buf, len);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	LOAD_REAL(writev);
	FAIL_IF(FI_WRITEV, FD_TARGET(fd), -1);
	return REAL(writev)(fd, iov, n);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	LOAD_REAL(pwrite);
	FAIL_IF(FI_PWRITE, FD_TARGET(fd), -1);
	return REAL(pwrite)(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	LOAD_REAL(pwrite64);
	FAIL_IF(FI_PWRITE, FD_TARGET(fd), -1);
	return REAL(pwrite64)(fd, buf, len, off);
}

int fsync(int fd)
{
	LOAD_REAL(fsync);
	FAIL_IF(FI_FSYNC, FD_TARGET(fd), -1);
	return REAL(fsync)(fd);
}

int fdatasync(int fd)
{
	LOAD_REAL(fdatasync);
	FAIL_IF(FI_FDATASYNC, FD_TARGET(fd), -1);
	return REAL(fdatasync)(fd);
}

int msync(void *addr, size_t len, int flags)
{
	LOAD_REAL(msync);
	struct fi_target t = { .fd = -1, .dirfd1 = AT_FDCWD,
			       .dirfd2 = AT_FDCWD, .addr = addr };
	FAIL_IF(FI_MSYNC, t, -1);
	return REAL(msync)(addr, len, flags);
}

int rename(const char *from, const char *to)
{
	LOAD_REAL(rename);
	FAIL_IF(FI_RENAME, PATH_TARGET(AT_FDCWD, from, AT_FDCWD, to), -1);
	return REAL(rename)(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
	LOAD_REAL(renameat);
	FAIL_IF(FI_RENAMEAT, PATH_TARGET(fd1, from, fd2, to), -1);
	return REAL(renameat)(fd1, from, fd2, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to,
	      unsigned flags)
{
	LOAD_REAL(renameat2);
	FAIL_IF(FI_RENAMEAT2, PATH_TARGET(fd1, from, fd2, to), -1);
	return REAL(renameat2)(fd1, from, fd2, to, flags);
}

int link(const char *from, const char *to)
{
	LOAD_REAL(link);
	FAIL_IF(FI_LINK, PATH_TARGET(AT_FDCWD, from, AT_FDCWD, to), -1);
	return REAL(link)(from, to);
}

int linkat(int fd1, const char *from, int fd2, const char *to, int flags)
{
	LOAD_REAL(linkat);
	FAIL_IF(FI_LINKAT, PATH_TARGET(fd1, from, fd2, to), -1);
	return REAL(linkat)(fd1, from, fd2, to, flags);
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	OPEN_MODE(flags, mode);
	LOAD_REAL(open);
	FAIL_IF(FI_OPEN, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), -1);
	return REAL(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	OPEN_MODE(flags, mode);
	LOAD_REAL(open64);
	FAIL_IF(FI_OPEN, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), -1);
	return REAL(open64)(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	OPEN_MODE(flags, mode);
	LOAD_REAL(openat);
	FAIL_IF(FI_OPENAT, PATH_TARGET(dirfd, path, AT_FDCWD, NULL), -1);
	return REAL(openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	OPEN_MODE(flags, mode);
	LOAD_REAL(openat64);
	FAIL_IF(FI_OPENAT, PATH_TARGET(dirfd, path, AT_FDCWD, NULL), -1);
	return REAL(openat64)(dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode)
{
	LOAD_REAL(creat);
	FAIL_IF(FI_CREAT, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), -1);
	return REAL(creat)(path, mode);
}

int creat64(const char *path, mode_t mode)
{
	LOAD_REAL(creat64);
	FAIL_IF(FI_CREAT, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), -1);
	return REAL(creat64)(path, mode);
}

FILE *fopen(const char *path, const char *mode)
{
	LOAD_REAL(fopen);
	FAIL_IF(FI_FOPEN, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), NULL);
	return REAL(fopen)(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
	LOAD_REAL(fopen64);
	FAIL_IF(FI_FOPEN, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), NULL);
	return REAL(fopen64)(path, mode);
}

int mkdir(const char *path, mode_t mode)
{
	LOAD_REAL(mkdir);
	FAIL_IF(FI_MKDIR, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), -1);
	return REAL(mkdir)(path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
	LOAD_REAL(mkdirat);
	FAIL_IF(FI_MKDIRAT, PATH_TARGET(dirfd, path, AT_FDCWD, NULL), -1);
	return REAL(mkdirat)(dirfd, path, mode);
}

int unlink(const char *path)
{
	LOAD_REAL(unlink);
	FAIL_IF(FI_UNLINK, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), -1);
	return REAL(unlink)(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
	LOAD_REAL(unlinkat);
	FAIL_IF(FI_UNLINKAT, PATH_TARGET(dirfd, path, AT_FDCWD, NULL), -1);
	return REAL(unlinkat)(dirfd, path, flags);
}

int rmdir(const char *path)
{
	LOAD_REAL(rmdir);
	FAIL_IF(FI_RMDIR, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), -1);
	return REAL(rmdir)(path);
}

int ftruncate(int fd, off_t len)
{
	LOAD_REAL(ftruncate);
	FAIL_IF(FI_FTRUNCATE, FD_TARGET(fd), -1);
	return REAL(ftruncate)(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
	LOAD_REAL(ftruncate64);
	FAIL_IF(FI_FTRUNCATE, FD_TARGET(fd), -1);
	return REAL(ftruncate64)(fd, len);
}

int truncate(const char *path, off_t len)
{
	LOAD_REAL(truncate);
	FAIL_IF(FI_TRUNCATE, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), -1);
	return REAL(truncate)(path, len);
}

int truncate64(const char *path, off64_t len)
{
	LOAD_REAL(truncate64);
	FAIL_IF(FI_TRUNCATE, PATH_TARGET(AT_FDCWD, path, AT_FDCWD, NULL), -1);
	return REAL(truncate64)(path, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	LOAD_REAL(fallocate);
	FAIL_IF(FI_FALLOCATE, FD_TARGET(fd), -1);
	return REAL(fallocate)(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	LOAD_REAL(fallocate64);
	FAIL_IF(FI_FALLOCATE, FD_TARGET(fd), -1);
	return REAL(fallocate64)(fd, mode, off, len);
}

/* posix_fallocate returns the error rather than setting errno. */
int posix_fallocate(int fd, off_t off, off_t len)
{
	LOAD_REAL(posix_fallocate);
	struct fi_target t = FD_TARGET(fd);
	if (fi_hit(FI_POSIX_FALLOCATE, &t))
		return fi.err;
	return REAL(posix_fallocate)(fd, off, len);
}

int posix_fallocate64(int fd, off64_t off, off64_t len)
{
	LOAD_REAL(posix_fallocate64);
	struct fi_target t = FD_TARGET(fd);
	if (fi_hit(FI_POSIX_FALLOCATE, &t))
		return fi.err;
	return REAL(posix_fallocate64)(fd, off, len);
}

ssize_t copy_file_range(int in, off64_t *in_off, int out, off64_t *out_off,
			size_t len, unsigned flags)
{
	LOAD_REAL(copy_file_range);
	FAIL_IF(FI_COPY_FILE_RANGE, FD_TARGET(out), -1);
	return REAL(copy_file_range)(in, in_off, out, out_off, len, flags);
}
