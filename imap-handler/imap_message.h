/*
 * imap_message: a message's text as IMAP serves it (CRLF line ends, the
 * Maildir file stores LF) and its MIME structure, for FETCH and SEARCH.
 * The last message loaded is kept, because clients fetch one message's
 * parts in several commands in a row.
 */
#ifndef SOCKMAIL_IMAP_MESSAGE_H
#define SOCKMAIL_IMAP_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mime.h"
#include "str.h"

struct imap_session;

struct imap_message {
	uint32_t uid;
	struct str text;	/* CRLF text: whole, or just the header */
	bool whole;		/* false: text ends after the header block */
	bool parsed;
	struct mime_part mime;	/* valid when parsed */
};

/* Message idx (sequence number - 1) of the selected folder, the header
 * only when header_only (the blank line included).  NULL if it is gone or
 * unreadable (errno set). */
struct imap_message *imap_message_get(struct imap_session *s, size_t idx,
				      bool header_only);
/* Its MIME tree, parsed on first use (needs the whole text). */
const struct mime_part *imap_message_mime(struct imap_message *m);
/* Where the header ends (the body's offset) in a loaded message. */
size_t imap_message_header_end(const struct imap_message *m);
void imap_message_forget(struct imap_session *s);

/* Append src with lone LFs turned into CRLF (bare CR left alone). */
void imap_crlf_append(struct str *out, const char *src, size_t len);

#endif
