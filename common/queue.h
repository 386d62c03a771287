/*
 * queue: the outbound mail queue in spool_dir, shared by smtp-handler (which
 * enqueues), queue-runner (which delivers) and sockmailctl (which shows and
 * edits).
 *
 * Layout:
 *   <spool_dir>/msg/<id>     the message: LF line ends, exactly the bytes a
 *                            Maildir copy has, so one file serves both: it
 *                            starts with "Return-Path: <sender>" and our
 *                            Received:.  A runner relaying it to another
 *                            MTA leaves out that first Return-Path line;
 *                            local delivery uses the file as it is.
 *                            Written once, never changed
 *   <spool_dir>/tmp/         where a message file is written (O_TMPFILE)
 *   <spool_dir>/queue.tdb    one envelope record per message, key "Q:<id>"
 *   <spool_dir>/trigger      touched after each enqueue: the systemd path
 *                            unit watches it to start a runner at once
 *
 * Enqueue is durable before it returns 0: the message file is fsynced and
 * linked into msg/ (directory fsynced), then the envelope is committed in
 * a tdb transaction (fsynced).  A crash in between leaves a message file
 * with no envelope, which is invisible to everyone and removed by the
 * runner after a grace period; so a message is either wholly queued or
 * absent.
 *
 * Locking: whoever works on a message (a runner delivering it, sockmailctl
 * deleting it) holds flock(LOCK_EX) on its msg/<id> file; the lock dies
 * with the process, so kill -9 leaves nothing stale.  Envelope updates are
 * tdb transactions.
 *
 * Each call opens queue.tdb and closes it again, so a process may fork
 * freely; but tdb's fcntl locks belong to the process, so threads of one
 * process must not call these functions at once (parallel deliveries are
 * processes).
 *
 * The envelope record format and its bounds are described in queue.c.
 */
#ifndef SOCKMAIL_QUEUE_H
#define SOCKMAIL_QUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "maildir.h"
#include "str.h"
#include "strlist.h"

#define QUEUE_ID_MAX 32
#define QUEUE_ERROR_MAX 512	/* last error text kept per recipient */

enum rcpt_state {
	RCPT_PENDING,		/* to be tried (again) at next_try */
	RCPT_DELIVERED,		/* 2xx from the remote, or in a Maildir */
	RCPT_FAILED,		/* permanent failure: DSN due / sent */
};

struct queue_rcpt {
	char *address;		/* the envelope recipient */
	char *orcpt;		/* DSN ORCPT, NULL when none */
	enum rcpt_state state;
	unsigned attempts;
	time_t next_try;
	char *last_error;	/* "451 4.3.0 ..." or "connect: ..."; may be NULL */
	bool dsn_sent;		/* failure reported to the sender */
	bool local;		/* a local mailbox (retry into Maildir) */
};

struct queue_envelope {
	char id[QUEUE_ID_MAX];
	char *sender;		/* "" for the null sender <> */
	char *auth_user;	/* who submitted it: address or "uid:1000"; may be NULL */
	time_t arrival;
	uint64_t size;		/* bytes of the message file */
	bool smtputf8;		/* needs SMTPUTF8 at the next hop */
	bool body_8bit;		/* needs 8BITMIME at the next hop */
	bool delay_warned;	/* one delay notice was sent */
	struct queue_rcpt *rcpts;
	size_t n_rcpts;
};

/* The time: time(NULL), or $SOCKMAIL_TEST_NOW (seconds since the epoch)
 * when set -- test-only, so the suite can prove retry and expiry times
 * without sleeping.  Every queue decision uses this. */
time_t queue_now(void);

/* A fresh queue id: unique among all processes of this host. */
void queue_new_id(char id[QUEUE_ID_MAX]);

/*
 * Writing a new message: open a mailfile in <spool_dir>/tmp, write with
 * mailfile_write() (LF line ends), then queue_commit() with the envelope
 * (id, sender, rcpts filled by the caller; arrival, next_try and states set
 * here: every recipient RCPT_PENDING, due now).  queue_commit returns 0
 * once the message is durable, -1 with errno or *err otherwise (nothing is
 * left queued).  queue_open_file creates the spool's directories if needed.
 * An empty env->id gets a fresh one; env->size is set from the file.  f
 * may also have been opened in a Maildir (the same file delivered locally
 * too): it is linked into the spool, or copied across file systems.  The
 * caller closes f with mailfile_close() afterwards either way.
 */
int queue_open_file(const struct config *cfg, struct mailfile *f);
int queue_commit(const struct config *cfg, struct mailfile *f,
		 struct queue_envelope *env, struct str *err);
/* The same, and in the same transaction the envelope *also (an existing
 * message, locked by the caller) is stored: a DSN and the note in the
 * message it reports on that it was sent, both or neither, so a crash can
 * neither lose the DSN nor make it twice. */
int queue_commit_with(const struct config *cfg, struct mailfile *f,
		      struct queue_envelope *env,
		      const struct queue_envelope *also, struct str *err);

/* Envelope records: load one, store one (a transaction), delete one (with
 * its message file).  Return 0, 1 for "no such message" (load/delete), -1
 * on error with *err. */
int queue_load(const struct config *cfg, const char *id,
	       struct queue_envelope *env, struct str *err);
int queue_store(const struct config *cfg, const struct queue_envelope *env,
		struct str *err);
int queue_remove(const struct config *cfg, const char *id, struct str *err);
void queue_envelope_free(struct queue_envelope *env);

/* Read-modify-write one envelope inside one transaction, so no concurrent
 * change (a runner's results, a flush) is lost.  fn gets the current
 * envelope and returns 1 to store it as changed, 0 to leave the record as
 * it was, -1 to fail (it may fill *err).  fn must not call other queue_
 * functions (the database is busy).  Returns 0, 1 for "no such message",
 * -1 on error with *err. */
int queue_update(const struct config *cfg, const char *id,
		 int (*fn)(struct queue_envelope *env, void *arg), void *arg,
		 struct str *err);

/* Serialise / parse an envelope record (exposed for tests and fuzzing).
 * Parsing is strict and bounded: -1 on anything malformed. */
void queue_envelope_format(const struct queue_envelope *env, struct str *out);
int queue_envelope_parse(const char *data, size_t len,
			 struct queue_envelope *env);

/* Every message id in the queue, sorted by arrival, then id (ids are
 * appended to *ids).  A record that does not parse is listed first, so
 * that its queue_load error is seen rather than hidden. */
int queue_list(const struct config *cfg, struct strlist *ids, struct str *err);

/* True for a well-formed queue id: 1 to QUEUE_ID_MAX - 1 characters of
 * [0-9A-Za-z], so it is safe as a file name. */
bool queue_id_valid(const char *id);

/* The message file's path, appended to *out. */
void queue_message_path(const struct config *cfg, const char *id,
			struct str *out);

/* Lock a message for work: returns an fd holding flock(LOCK_EX) on its
 * file, -1 with errno EWOULDBLOCK when someone else has it, -1/ENOENT when
 * it is gone (EINVAL for a malformed id).  Close the fd to unlock.  Load
 * the envelope after taking the lock, not before: the holder before us
 * may have changed or removed it. */
int queue_lock(const struct config *cfg, const char *id);

/* Remove what a crash can leave behind: msg/ files with no envelope (a
 * crash between link and commit, or between removing an envelope and its
 * file) and tmp/ files (the named fallback for O_TMPFILE), when their
 * mtime is at least older_than seconds old by the real clock.  Messages
 * being committed right now are that young, so they are safe.  Does
 * nothing if queue.tdb does not exist.  Returns the number of files
 * removed, or -1 with *err. */
int queue_clean_orphans(const struct config *cfg, time_t older_than,
			struct str *err);

/* Touch <spool_dir>/trigger (best effort) so a runner starts now. */
void queue_trigger(const struct config *cfg);

/* True when every recipient is delivered, or failed with its DSN sent. */
bool queue_envelope_done(const struct queue_envelope *env);
/* Earliest next_try among pending recipients (0 if none). */
time_t queue_envelope_next(const struct queue_envelope *env);

#endif
