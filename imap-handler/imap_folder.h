/*
 * imap_folder: one Maildir++ folder as IMAP sees it: its messages in UID
 * order with flags, keywords and sizes, kept in step with the disk.
 *
 * Per folder, <folder>/sockmail-imap.tdb holds UIDVALIDITY, UIDNEXT, the
 * unique-name -> UID map, the keyword names (keyword i is the letter
 * 'a' + i after ":2,", as Dovecot does) and the highest UID handed out as
 * \Recent.  New UIDs are assigned inside a tdb transaction that re-reads
 * UIDNEXT, so two sessions (processes) never give two messages one UID or
 * one message two.  System flags live in the file name (":2," letters D F
 * P R S T), INTERNALDATE is the file's mtime, RFC822.SIZE comes from ",W=".
 * <folder>/sockmail-cache.tdb caches what is costly to compute (ENVELOPE,
 * BODYSTRUCTURE); it is only a cache: a broken one is deleted and rebuilt.
 * <folder>/sockmail-snapshot (likewise only an accelerator) keeps the view
 * of a quiet folder, so that the next open need not scan it.
 *
 * The message array is the session's view: msgs[i] is sequence number i+1.
 * Changes by others (deliveries, other sessions' flag changes and
 * expunges) are found by imap_folder_update, which writes the untagged
 * responses; a message that vanished from disk stays in the array (marked
 * IMAP_MSG_GONE) until an EXPUNGE response may be sent.
 */
#ifndef SOCKMAIL_IMAP_FOLDER_H
#define SOCKMAIL_IMAP_FOLDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap_seqset.h"
#include "maildir.h"
#include "str.h"
#include "strlist.h"
#include "stream.h"

#define IMAP_FOLDER_DB "sockmail-imap.tdb"
#define IMAP_CACHE_DB "sockmail-cache.tdb"
#define IMAP_MAX_KEYWORDS 26
#define IMAP_KEYWORD_MAX 64		/* octets in a keyword name */
#define IMAP_FOLDER_MAX_MESSAGES 1000000

/* imap_msg.flags: the system flags */
#define IMAP_FLAG_SEEN		0x01	/* S */
#define IMAP_FLAG_ANSWERED	0x02	/* R */
#define IMAP_FLAG_FLAGGED	0x04	/* F */
#define IMAP_FLAG_DELETED	0x08	/* T */
#define IMAP_FLAG_DRAFT		0x10	/* D */
#define IMAP_FLAG_RECENT	0x20	/* this session's \Recent, not on disk */
#define IMAP_FLAGS_STORABLE	0x1f

/* imap_msg.state */
#define IMAP_MSG_GONE		0x01	/* vanished from disk, EXPUNGE not sent */
#define IMAP_MSG_NEW_DIR	0x02	/* the file is in new/, else cur/ */

struct imap_msg {
	uint32_t uid;
	uint32_t keywords;	/* bit i: the folder's keyword i */
	uint64_t size;		/* RFC822.SIZE (CRLF) */
	uint32_t name;		/* offset of the file name in the arena */
	uint8_t flags;		/* IMAP_FLAG_* */
	uint8_t state;		/* IMAP_MSG_* */
};

struct tdb_context;

struct imap_folder {
	char *path;		/* the folder's directory (the Maildir root
				 * for INBOX) */
	bool readonly;		/* EXAMINE, STATUS: no flag changes, no
				 * \Recent claimed, new/ left alone */
	uint32_t uidvalidity, uidnext;
	struct imap_msg *msgs;
	size_t count, cap;
	unsigned recent;	/* messages with IMAP_FLAG_RECENT */
	char *keywords[IMAP_MAX_KEYWORDS];
	unsigned n_keywords;
	struct tdb_context *db, *cache;
	/* file names, private to imap_folder.c */
	char *arena;
	size_t arena_len, arena_cap;
	size_t exists_reported;	/* the last EXISTS the client was told */
	unsigned recent_reported;
	struct imap_folder_private *priv;	/* imap_folder.c's own state */
};

/*
 * Open the folder at path (which must exist with cur/ new/ tmp/; they are
 * not created), creating its tdb when missing, list it and give new files
 * UIDs.  Read-write opens move files from new/ to cur/ and claim the
 * \Recent ones: messages whose UID no session has seen as recent get
 * IMAP_FLAG_RECENT here and in no other session.  A read-only open counts
 * in f->recent what would be recent, claiming nothing.  0, or -1 with the
 * reason in *err (errno ENOENT when the folder does not exist).
 */
int imap_folder_open(struct imap_folder *f, const char *path, bool readonly,
		     struct str *err);
void imap_folder_close(struct imap_folder *f);

/* The sequence number of the first message without \Seen (0 if none);
 * how many lack \Seen. */
size_t imap_folder_first_unseen(const struct imap_folder *f);
size_t imap_folder_unseen(const struct imap_folder *f);

/*
 * Bring the view up to date with the disk and write the untagged
 * responses to io: "* n FETCH (FLAGS (...))" for flags others changed,
 * "* n EXPUNGE" for messages gone (only when allow_expunge; otherwise they
 * wait, marked IMAP_MSG_GONE), "* n EXISTS" and "* n RECENT" when the
 * count changed.  0, or -1 on a disk or database error (logged).
 */
int imap_folder_update(struct imap_folder *f, struct stream *io,
		       bool allow_expunge);

/* The index (sequence number - 1) of uid, or -1 if not in the view. */
long imap_folder_find_uid(const struct imap_folder *f, uint32_t uid);

/* The message's file name (no directory) and its path "<path>/cur/<name>"
 * into *out; open it for reading (finding it again if another session
 * renamed it: the entry is then updated).  msg_open: an fd, or -1 with
 * errno ENOENT if it is gone. */
const char *imap_folder_msg_name(const struct imap_folder *f, size_t i);
void imap_folder_msg_path(const struct imap_folder *f, size_t i,
			  struct str *out);
int imap_folder_msg_open(struct imap_folder *f, size_t i);
/* INTERNALDATE: the file's mtime.  0 or -1 (gone). */
int imap_folder_msg_internaldate(struct imap_folder *f, size_t i,
				 int64_t *when);

/* "(\Seen \Recent $Forwarded)": the message's flags as a FETCH FLAGS list,
 * appended.  The folder's FLAGS list (system flags and every keyword), and
 * its PERMANENTFLAGS list (with \* while keywords can be added). */
void imap_folder_format_flags(const struct imap_folder *f, size_t i,
			      struct str *out);
void imap_folder_format_all_flags(const struct imap_folder *f,
				  struct str *out);
void imap_folder_format_permanent_flags(const struct imap_folder *f,
					struct str *out);

/* A flag name as in STORE/APPEND: "\Seen" etc. give their bit in *flag,
 * a keyword gives its index in *keyword (created in the folder's tdb when
 * create is true and there is room).  Returns 1 system flag, 2 keyword,
 * 0 unknown system flag ("\Recent" included: not storable) or keyword not
 * defined (create false), -1 no room for another keyword or a database
 * error. */
int imap_folder_flag(struct imap_folder *f, const char *name, bool create,
		     uint8_t *flag, int *keyword);

/* Set message i's flags and keywords (the whole set): rename its file.
 * 0, or -1 with errno (ENOENT: gone, the view is not changed). */
int imap_folder_set_flags(struct imap_folder *f, size_t i, uint8_t flags,
			  uint32_t keywords);
/* Make the renames of set_flags durable (fsync new/ and cur/ when they
 * changed): once per command, before its OK.  0, or -1 with errno. */
int imap_folder_sync_flags(struct imap_folder *f);

/*
 * Expunge: unlink the messages with \Deleted (only_deleted) or every
 * message whose UID is in uids (NULL: no UID restriction), fsync, forget
 * their UIDs, write "* n EXPUNGE" for each (and for messages already GONE)
 * and drop them from the view.  Returns the number expunged, or -1.
 */
long imap_folder_expunge(struct imap_folder *f, struct stream *io,
			 const struct imap_seqset *uids, bool only_deleted);

/*
 * Adding messages to a folder (APPEND, COPY, MOVE): begin, add any number,
 * commit.  Each file is linked into <dest>/cur/ under a fresh unique name
 * with ",S=", ",W=" and ":2,<flags>" and gets the next UID; commit fsyncs
 * the directory and commits the UIDs in one tdb transaction, so nothing is
 * answered OK before it is durable.  If the destination is the selected
 * folder pass it as sel (tdb allows one open per process); it is then
 * not updated: the next imap_folder_update reports the new messages.
 * Keywords are given by name (the destination has its own table).
 */
struct imap_folder_add {
	struct imap_folder *folder;	/* sel, or a private read-only open */
	struct imap_folder own;
	bool in_transaction;
	struct strlist *added;		/* paths linked so far (for abort) */
	uint32_t first_uid, n;
};

int imap_folder_add_begin(struct imap_folder_add *a, struct imap_folder *sel,
			  const char *path, struct str *err);
/* A message written through a mailfile (APPEND). */
int imap_folder_add_mailfile(struct imap_folder_add *a, struct mailfile *mf,
			     uint8_t flags, const char *const *keywords,
			     size_t n_keywords, int64_t internaldate,
			     uint32_t *uid);
/* An existing message file (COPY/MOVE): hard-linked, or copied when the
 * link fails (EXDEV); its mtime (INTERNALDATE) is kept. */
int imap_folder_add_file(struct imap_folder_add *a, const char *src_path,
			 uint64_t size_crlf, uint8_t flags,
			 const char *const *keywords, size_t n_keywords,
			 uint32_t *uid);
/* Commit: 0 with the destination's UIDVALIDITY, or -1 (everything added
 * is removed again). */
int imap_folder_add_commit(struct imap_folder_add *a, uint32_t *uidvalidity);
void imap_folder_add_abort(struct imap_folder_add *a);

/* The cache: field 'E' ENVELOPE, 'B' BODYSTRUCTURE, 'b' BODY.  get: true
 * with the value appended to *out; put: best effort. */
bool imap_folder_cache_get(struct imap_folder *f, uint32_t uid, char field,
			   struct str *out);
void imap_folder_cache_put(struct imap_folder *f, uint32_t uid, char field,
			   const char *data, size_t len);
/* The end of a command's use of the cache: the values put are written (in
 * one batch) and the read lock the gets took is released.  Call it when a
 * command that used the cache ends; imap_folder_update and
 * imap_folder_close do it too. */
void imap_folder_cache_flush(struct imap_folder *f);

#endif
