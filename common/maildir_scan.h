/*
 * maildir_scan: read side of a Maildir folder for the POP3 and IMAP
 * handlers: the list of messages in new/ and cur/, in delivery order, with
 * each message's unique name, sizes and flags, and the few changes a
 * reader makes (new/ -> cur/ as seen, delete).
 *
 * The list is a snapshot: files delivered after the scan are not in it.
 * It is kept small because a handler holds it for a whole session: one
 * 16-byte entry per message plus the file names in one growing arena (no
 * allocation per message).  The host part of a unique name
 * ("<time>.<id>.<host>,S=...") is the same for every message one server
 * delivered, so it is kept once in a small table and cut out of the
 * stored names; a 10,000-message maildrop costs about 600 KiB.
 *
 * Order: by the seconds that start the unique name (the delivery time),
 * then by the unique name's base (the part before ':'), so the order is
 * the delivery order, and the same in every session while messages only
 * move between new/ and cur/ or change flags.
 *
 * Sizes: the CRLF size (what POP3 sends and IMAP calls RFC822.SIZE) comes
 * from ",W=" in the name; without it the file is read once and its line
 * feeds that are not preceded by a CR are counted.
 */
#ifndef SOCKMAIL_MAILDIR_SCAN_H
#define SOCKMAIL_MAILDIR_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

/* Bits of maildir_msg.flags.  The low nibble is this module's; the high
 * nibble is left to the caller (POP3: deleted, retrieved). */
#define MAILDIR_MSG_NEW		0x01	/* the file is in new/, else cur/ */
#define MAILDIR_MSG_GONE	0x02	/* vanished (deleted by someone else) */
#define MAILDIR_MSG_CALLER_MASK	0xf0

#define MAILDIR_NAME_MAX 255

struct maildir_msg {
	uint64_t size;		/* CRLF size */
	uint32_t name;		/* offset of the stored name in the arena */
	uint8_t name_len;	/* file name length (without NUL) */
	uint8_t base_len;	/* unique name: up to ':' or the whole name */
	uint8_t host;		/* 0: stored whole; k: host k-1 cut out */
	uint8_t flags;		/* MAILDIR_MSG_* and caller bits */
};

#define MAILDIR_MAX_HOSTS 255

struct maildir_list {
	struct maildir_msg *msgs;
	size_t count, cap;
	char *arena;		/* NUL-terminated stored names, back to back */
	size_t arena_len, arena_cap;
	char *hosts[MAILDIR_MAX_HOSTS];	/* host parts cut out of names */
	uint8_t host_len[MAILDIR_MAX_HOSTS];
	unsigned n_hosts, last_host;
	int dir_fd[2];		/* new/ and cur/, open for *at() calls */
	bool dirty[2];		/* a change not yet fsynced */
	char namebuf[MAILDIR_NAME_MAX + 1];	/* maildir_msg_name's result */
};

enum { MAILDIR_SUB_NEW = 0, MAILDIR_SUB_CUR = 1 };

/*
 * List path/new and path/cur.  Skips names starting with '.', names longer
 * than MAILDIR_NAME_MAX and anything that is not a regular file.  More
 * than max_messages messages is an error (E2BIG).  Returns 0, or -1 with
 * errno and a message in *err; the list is then empty but must still be
 * freed.
 */
int maildir_list_scan(struct maildir_list *l, const char *path,
		      size_t max_messages, struct str *err);
void maildir_list_free(struct maildir_list *l);

/* The file name of message i (in new/ or cur/ as its flags say); valid
 * until the next call for the same list. */
const char *maildir_msg_name(struct maildir_list *l, size_t i);
/* The flags after ":2," ("" when none). */
const char *maildir_msg_info_flags(const struct maildir_list *l, size_t i);

/* Open message i for reading (O_RDONLY|O_CLOEXEC).  If the file was
 * renamed meanwhile (moved to cur/, flags changed by another client) it is
 * found again by its unique name and the entry updated.  -1 with errno
 * ENOENT when it is gone (the entry is then marked MAILDIR_MSG_GONE). */
int maildir_msg_open(struct maildir_list *l, size_t i);

/* Move message i from new/ to cur/ and add the S (seen) flag; a message in
 * cur/ just gets S added when it lacks it.  0 on success (also when there
 * was nothing to do), -1 with errno. */
int maildir_msg_mark_seen(struct maildir_list *l, size_t i);

/* Unlink message i.  A message already gone counts as deleted.  0 or -1
 * with errno. */
int maildir_msg_delete(struct maildir_list *l, size_t i);

/* fsync new/ and cur/ if a move or delete touched them: after this returns
 * 0 the changes survive a crash.  -1 with errno. */
int maildir_list_sync(struct maildir_list *l);

#endif
