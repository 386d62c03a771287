/*
 * maildir: Maildir++ storage primitives shared by delivery (SMTP, the queue
 * runner), sockmailctl and the POP3/IMAP handlers.
 *
 * Delivery writes a message once (struct mailfile) and links it into every
 * recipient's new/ under a unique name per the Maildir specification:
 *   <sec>.M<usec>P<pid>Q<n>.<host>,S=<size on disk>,W=<size with CRLF>
 * Files are stored with LF line ends.  The data is fsynced before the link,
 * and new/ is fsynced after it, so once mailfile_deliver() returns 0 the
 * message survives a crash.  The writing file is an O_TMPFILE in the first
 * Maildir's tmp/ when the file system allows, so a killed process leaves
 * nothing behind; otherwise a named file in tmp/ that close removes.
 */
#ifndef SOCKMAIL_MAILDIR_H
#define SOCKMAIL_MAILDIR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "str.h"

/* The folders every new Maildir++ gets, with their IMAP special use. */
extern const char *const maildir_default_folders[];	/* NULL-terminated */

struct mailfile {
	int fd;
	char *tmp_path;		/* named fallback file, NULL with O_TMPFILE */
	char *maildir;		/* where it was opened */
	uint64_t size;		/* bytes written (on disk) */
	uint64_t newlines;	/* LFs written: CRLF size = size + newlines */
	char *buf;
	size_t buf_len;
	int error;		/* first errno seen, 0 if none */
};

/* Path of an address's Maildir: <mail_dir>/<domain>/<local>. */
void maildir_path(const char *mail_dir, const char *mailbox_address,
		  struct str *out);

/* Create a Maildir++ at path (cur/ new/ tmp/ and the default folders, each
 * with a maildirfolder file), owned by uid/gid unless they are -1.  Existing
 * directories are fine. */
int maildir_create(const char *path, uid_t uid, gid_t gid);

/* A fresh unique base name (without ,S= ,W= or :2,). */
void maildir_unique_name(struct str *out);

int mailfile_open(struct mailfile *f, const char *maildir);
/* Buffered write of LF-terminated text.  Errors stick: see finish. */
void mailfile_write(struct mailfile *f, const void *data, size_t len);
/* Flush and fsync.  Returns 0, or -1 with errno (also for earlier write
 * errors). */
int mailfile_finish(struct mailfile *f);
/* Link the finished file into maildir/new/ and fsync new/.  The name given
 * (base name only) is appended to *name if name is not NULL.  -1 + errno. */
int mailfile_deliver(struct mailfile *f, const char *maildir, struct str *name);
/* Deliver at most once: the same as mailfile_deliver, under the name
 * <when>.<unique>.<host>,S=..,W=.. that the caller makes the same on every
 * retry of one delivery (unique: [0-9A-Za-z]), unless a file whose name
 * starts with "<when>.<unique>." is in new/ or cur/ already -- delivered
 * by a run that died before it could note so.  0 when linked, 1 when
 * found, -1 + errno. */
int mailfile_deliver_once(struct mailfile *f, const char *maildir,
			  time_t when, const char *unique, struct str *name);
/* Link the finished file under exactly path (which must not exist: EEXIST)
 * and fsync path's directory: for a spool that names its files itself.
 * Across file systems the file is copied through copy_dir/tmp/, which must
 * be on path's file system.  0, or -1 + errno with nothing left at path. */
int mailfile_link_as(struct mailfile *f, const char *path,
		     const char *copy_dir);
/* Close and remove what is left of the writing file. */
void mailfile_close(struct mailfile *f);

/* fsync a directory (opened by path), so the names just linked, renamed
 * or removed in it survive a crash.  0, or -1 + errno. */
int fsync_dir(const char *path);

/* Take back a delivery that must not stand (a later recipient failed). */
int maildir_undeliver(const char *maildir, const char *name);

/* Parse ,S= and ,W= from a Maildir file name; 0 when absent. */
uint64_t maildir_name_size(const char *name, char which /* 'S' or 'W' */);

#endif
