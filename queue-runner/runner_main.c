/*
 * queue-runner: one run over the outbound queue, started by the systemd
 * timer every 15 minutes and by the path unit when mail is queued.  It
 * lists the queue, starts up to RUNNER_MAX_WORKERS worker processes that
 * take the due messages one at a time from a shared index (so a slow
 * remote host holds up only the worker talking to it), and exits when all
 * are done.  Each worker reports every message on a pipe, which gives the
 * progress line and, at EOF, the end.  DSNs the workers queue are
 * delivered by a further pass of the same run.
 *
 * An idle run must cost next to nothing, as it happens every 15 minutes
 * forever: it loads the config, removes crash leftovers, reads queue.tdb
 * once per message and exits; nothing else (DNS, users.tdb, TLS) is
 * touched before a message needs it.  For the same reason the progress
 * messages to systemd are sent here (the sd_notify protocol: one datagram
 * to $NOTIFY_SOCKET) rather than through libsystemd, whose loading alone
 * took 1.8 ms, half of an idle run.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdatomic.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmdline.h"
#include "log.h"
#include "runner.h"

/* What a worker reports per message: one byte down the "done" pipe. */
#define DONE_BASE 0x40
#define DONE_ERROR 0x01
#define DONE_DSN 0x02

/* Shared by the parent and its workers (a MAP_SHARED page): the index
 * of the next due message to take, so a slow message holds up nothing
 * but its own worker. */
struct shared {
	atomic_size_t next;
};

struct run {
	const struct config *cfg;
	unsigned due, done, failed;
	size_t n_workers;
	bool dsn_queued, error;
};

static const char usage[] =
	"usage: queue-runner [-c FILE|--config=FILE] [--help] [--version]\n"
	"Delivers every due message in the outbound queue once, then exits.\n"
	"Test only: SOCKMAIL_TEST_NOW=<seconds since the epoch> sets the\n"
	"clock that retry, expiry and warning times are judged by.\n";

/* sd_notify(3)'s protocol: the text as one datagram to the unix socket
 * named by $NOTIFY_SOCKET ("@..." is an abstract one).  Best effort. */
static void run_notify(const char *text)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = path != NULL ? strlen(path) : 0;
	if (len < 2 || len >= sizeof sa.sun_path ||
	    (path[0] != '/' && path[0] != '@'))
		return;
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)sendto(fd, text, strlen(text), MSG_NOSIGNAL,
		     (struct sockaddr *)&sa,
		     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	close(fd);
}

/* Progress for `systemctl status` (nothing when not under systemd). */
static void run_status(const struct run *run)
{
	char text[128];
	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	snprintf(text, sizeof text,
		 "STATUS=%u of %u due messages done, %zu workers",
		 run->done, run->due, run->n_workers);
	run_notify(text);
}

/* Take due messages until none is left; report each on done_fd (or
 * into *flags when running in-process, done_fd < 0). */
static void worker_loop(const struct config *cfg, struct shared *sh,
			const struct strlist *due, int done_fd,
			unsigned char *flags)
{
	struct runner r = { .cfg = cfg };
	for (;;) {
		size_t i = atomic_fetch_add(&sh->next, 1);
		if (i >= due->n)
			break;
		unsigned dsns = r.dsns;
		r.error = false;
		bool ok = runner_process(&r, due->items[i]);
		unsigned char b = DONE_BASE;
		if (!ok || r.error)
			b |= DONE_ERROR;
		if (r.dsns > dsns)
			b |= DONE_DSN;
		if (done_fd < 0) {
			*flags |= b;
			continue;
		}
		while (write(done_fd, &b, 1) < 0 && errno == EINTR)
			;
	}
	if (r.users != NULL)
		userdb_close(r.users);
	dns_close(r.dns);
	str_free(&r.dns_error);
}

static void run_account(struct run *run, unsigned char b, size_t messages)
{
	run->done += (unsigned)messages;
	if (b & DONE_ERROR) {
		run->failed++;
		run->error = true;
	}
	if (b & DONE_DSN)
		run->dsn_queued = true;
}

/* Start up to RUNNER_MAX_WORKERS workers; -1 if not even one. */
static int run_fork_workers(struct run *run, struct shared *sh,
			    const struct strlist *due, int done[2])
{
	size_t want = due->n < RUNNER_MAX_WORKERS ? due->n
						   : RUNNER_MAX_WORKERS;
	for (size_t k = 0; k < want; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			close(done[0]);
			worker_loop(run->cfg, sh, due, done[1], NULL);
			/* exit, not _exit: nothing is buffered in stdio,
			 * and leak checkers run at exit. */
			exit(0);
		}
		if (pid < 0) {
			log_msg(LOG_WARNING, "fork: %s", strerror(errno));
			break;
		}
		run->n_workers++;
	}
	return run->n_workers > 0 ? 0 : -1;
}

/* Wait for every worker; one that crashed is an error (the message it
 * held is retried by the next run: its lock died with it). */
static void run_reap(struct run *run)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, 0)) > 0 || (pid < 0 && errno == EINTR)) {
		if (pid < 0)
			continue;
		run->n_workers--;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			continue;
		log_msg(LOG_ERR, "worker %ld %s %d", (long)pid,
			WIFSIGNALED(st) ? "died of signal" : "exited with",
			WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		run->failed++;
		run->error = true;
	}
	run->n_workers = 0;
}

/* Deliver the due messages with a pool of workers. */
static void run_workers(struct run *run, const struct strlist *due)
{
	int done[2];
	struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		log_msg(LOG_ERR, "mmap: %s", strerror(errno));
		run->error = true;
		return;
	}
	atomic_init(&sh->next, 0);
	bool piped = pipe2(done, O_CLOEXEC) == 0;
	if (!piped || run_fork_workers(run, sh, due, done) < 0) {
		/* No process to spare: deliver here, one at a time. */
		unsigned char flags = 0;
		if (piped) {
			close(done[0]);
			close(done[1]);
		}
		worker_loop(run->cfg, sh, due, -1, &flags);
		run_account(run, flags, due->n);
	} else {
		close(done[1]);
		run_status(run);
		unsigned char b;
		ssize_t n;
		while ((n = read(done[0], &b, 1)) != 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				break;
			run_account(run, b, 1);
			run_status(run);
		}
		close(done[0]);
		run_reap(run);
	}
	munmap(sh, sizeof *sh);
}

/* Is the message due?  Read without the lock: the worker checks again
 * under it. */
static bool run_is_due(const struct config *cfg, const char *id, time_t now,
		       struct run *run)
{
	struct queue_envelope env;
	struct str err = STR_INIT;
	int r = queue_load(cfg, id, &env, &err);
	bool due = false;
	if (r < 0) {
		log_msg(LOG_ERR, "%s", str_c(&err));
		run->error = true;
	} else if (r == 0) {
		due = runner_due(cfg, &env) <= now;
		queue_envelope_free(&env);
	}
	str_free(&err);
	return due;
}

static int run_cmp_ids(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Was id in an earlier pass?  seen is sorted (run_pass keeps it so): a
 * queue of thousands of deferred messages is listed every time. */
static bool run_seen(const struct strlist *seen, const char *id)
{
	return seen->n > 0 &&
	       bsearch(&id, seen->items, seen->n, sizeof *seen->items,
		       run_cmp_ids) != NULL;
}

/* One pass over the queue: every due message not seen before. */
static int run_pass(struct run *run, struct strlist *seen)
{
	struct strlist ids = STRLIST_INIT, due = STRLIST_INIT;
	struct str err = STR_INIT;
	if (queue_list(run->cfg, &ids, &err) < 0) {
		log_msg(LOG_ERR, "%s", str_c(&err));
		str_free(&err);
		return -1;
	}
	time_t now = queue_now();
	run->dsn_queued = false;
	size_t old = seen->n;	/* ids are unique within one listing */
	for (size_t i = 0; i < ids.n; i++) {
		struct strlist before = { seen->items, old, seen->cap };
		if (run_seen(&before, ids.items[i]))
			continue;
		strlist_add(seen, ids.items[i]);
		if (run_is_due(run->cfg, ids.items[i], now, run))
			strlist_add(&due, ids.items[i]);
	}
	if (seen->n > 0)
		qsort(seen->items, seen->n, sizeof *seen->items, run_cmp_ids);
	run->due += (unsigned)due.n;
	if (due.n > 0)
		run_workers(run, &due);
	strlist_free(&ids);
	strlist_free(&due);
	str_free(&err);
	return 0;
}

static void run_clean(const struct config *cfg)
{
	struct str err = STR_INIT;
	int n = queue_clean_orphans(cfg, RUNNER_ORPHAN_AGE, &err);
	if (n < 0)
		log_msg(LOG_ERR, "%s", str_c(&err));
	else if (n > 0)
		log_msg(LOG_NOTICE, "removed %d orphaned queue file%s", n,
			n == 1 ? "" : "s");
	str_free(&err);
}

int main(int argc, char **argv)
{
	struct cmdline cl = { .program = "queue-runner", .usage = usage };
	cmdline_parse(&cl, argc, argv);

	struct config cfg;
	struct str err = STR_INIT;
	if (config_load(&cfg, config_path(cl.config), &err) != 0) {
		log_msg(LOG_ERR, "%s", str_c(&err));
		str_free(&err);
		config_free(&cfg);
		return 1;
	}
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());

	struct run run = { .cfg = &cfg };
	struct strlist seen = STRLIST_INIT;
	run_clean(&cfg);
	for (int pass = 0; pass < RUNNER_MAX_PASSES; pass++) {
		if (run_pass(&run, &seen) < 0) {
			run.error = true;
			break;
		}
		if (!run.dsn_queued)
			break;
	}
	if (run.due > 0) {
		char due[16], failed[16];
		snprintf(due, sizeof due, "%u", run.due);
		snprintf(failed, sizeof failed, "%u", run.failed);
		log_kv(LOG_INFO, "run done", "MESSAGES", due, "ERRORS", failed,
		       NULL);
	}
	run_status(&run);
	strlist_free(&seen);
	str_free(&err);
	config_free(&cfg);
	return run.error ? 1 : 0;
}
