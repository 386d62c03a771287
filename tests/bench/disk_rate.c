/*
 * disk_rate: the physical limit a Maildir delivery runs into.  Each of
 * WRITERS threads repeats what one delivery costs the disk: create a file
 * in DIR/tmp/, write SIZE bytes, fsync it, rename it into DIR/new/, and
 * fsync new/ (opened O_DIRECTORY each time, as a handler must).  The files
 * are left in new/ for the caller to remove, as deliveries would be.
 *
 * Usage: disk_rate DIR N SIZE [WRITERS]
 * Prints: ops=N seconds=X rate=Y per s
 * Exit status: 0 when all N operations succeeded, 1 otherwise, 2 on usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "maildir.h"
#include "str.h"

#define MAX_WRITERS	256
#define MAX_SIZE	(64UL << 20)

static const char *dir;
static unsigned long total_ops, size, writers;
static char *payload;
static atomic_ulong done_ops;
static atomic_bool failed;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: disk_rate DIR N SIZE [WRITERS]\n");
	exit(2);
}

static unsigned long parse_count(const char *text, unsigned long max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' ||
	    v < 1 || v > max) {
		fprintf(stderr, "disk_rate: bad number: %s (1..%lu)\n", text,
			max);
		usage();
	}
	return v;
}

/* Report the first error only: the others are the same trouble. */
static void fail(const char *what, const char *path)
{
	int err = errno;
	if (!atomic_exchange(&failed, true))
		fprintf(stderr, "disk_rate: %s %s: %s\n", what, path,
			strerror(err));
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One delivery's worth of disk work; 0 or -1 (reported). */
static int one_op(unsigned long writer, unsigned long i, struct str *tmp,
		  struct str *new, const char *newdir)
{
	str_clear(tmp);
	str_clear(new);
	str_printf(tmp, "%s/tmp/%ld.W%luI%lu.bench", dir, (long)getpid(),
		   writer, i);
	str_printf(new, "%s/new/%ld.W%luI%lu.bench,S=%lu", dir,
		   (long)getpid(), writer, i, size);

	int fd = open(str_c(tmp), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		      0600);
	if (fd < 0) {
		fail("create", str_c(tmp));
		return -1;
	}
	if (write_all(fd, payload, size) != 0 || fsync(fd) != 0) {
		fail("write+fsync", str_c(tmp));
		close(fd);
		unlink(str_c(tmp));
		return -1;
	}
	if (close(fd) != 0) {
		fail("close", str_c(tmp));
		return -1;
	}
	if (rename(str_c(tmp), str_c(new)) != 0) {
		fail("rename", str_c(tmp));
		unlink(str_c(tmp));
		return -1;
	}
	if (fsync_dir(newdir) != 0) {
		fail("fsync", newdir);
		return -1;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	unsigned long w = (unsigned long)(uintptr_t)arg;
	/* Writer w does operations w, w + writers, w + 2 * writers, ... */
	struct str tmp = STR_INIT, new = STR_INIT, newdir = STR_INIT;
	str_printf(&newdir, "%s/new", dir);

	for (unsigned long i = w; i < total_ops && !atomic_load(&failed);
	     i += writers) {
		if (one_op(w, i, &tmp, &new, str_c(&newdir)) != 0)
			break;
		atomic_fetch_add(&done_ops, 1);
	}
	str_free(&tmp);
	str_free(&new);
	str_free(&newdir);
	return NULL;
}

static void make_dir(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "disk_rate: mkdir %s: %s\n", path,
			strerror(errno));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5)
		usage();
	dir = argv[1];
	total_ops = parse_count(argv[2], ULONG_MAX >> 8);
	size = parse_count(argv[3], MAX_SIZE);
	writers = argc == 5 ? parse_count(argv[4], MAX_WRITERS) : 1;
	if (writers > total_ops)
		writers = total_ops;

	struct str p = STR_INIT;
	make_dir(dir);
	str_printf(&p, "%s/tmp", dir);
	make_dir(str_c(&p));
	str_clear(&p);
	str_printf(&p, "%s/new", dir);
	make_dir(str_c(&p));
	str_free(&p);

	/* Text-like content, LF lines, as a delivered message has. */
	payload = xmalloc(size);
	for (unsigned long i = 0; i < size; i++)
		payload[i] = i % 73 == 72 ? '\n' : (char)('a' + i % 26);

	pthread_t threads[MAX_WRITERS];
	unsigned long started = 0;
	double t0 = now_s();
	for (; started < writers; started++) {
		int err = pthread_create(&threads[started], NULL, writer_main,
					 (void *)(uintptr_t)started);
		if (err != 0) {
			fprintf(stderr, "disk_rate: pthread_create: %s\n",
				strerror(err));
			atomic_store(&failed, true);
			break;
		}
	}
	for (unsigned long i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	double secs = now_s() - t0;

	unsigned long ops = atomic_load(&done_ops);
	printf("ops=%lu seconds=%.3f rate=%.1f per s\n", ops, secs,
	       secs > 0 ? (double)ops / secs : 0.0);
	free(payload);
	return ops == total_ops && !atomic_load(&failed) ? 0 : 1;
}
