/*
 * mime: the structure of an RFC 5322 message with RFC 2045-2049 MIME, for
 * IMAP's BODYSTRUCTURE, ENVELOPE and body sections, and for searching.
 *
 * The parser works on the message text as IMAP serves it (CRLF line ends;
 * bare LFs are tolerated as line ends too) and records offsets into it; it
 * copies nothing but the few header values it interprets.  It is tolerant
 * of the broken mail found in the wild: a missing closing boundary ends
 * the part at the end of its parent, a header line without a colon ends
 * nothing, 8-bit octets in headers are kept as they are, and nesting
 * deeper than MIME_MAX_DEPTH or more than MIME_MAX_PARTS parts makes the
 * deepest parts opaque (text/plain-like leaves) instead of failing.  It
 * never reads outside [msg, msg + len).
 */
#ifndef SOCKMAIL_MIME_H
#define SOCKMAIL_MIME_H

#include <stdbool.h>
#include <stddef.h>

#include "str.h"

#define MIME_MAX_DEPTH 50
#define MIME_MAX_PARTS 10000
#define MIME_MAX_PARAMS 64

struct mime_param {
	char *name;		/* as written (compare case-insensitively) */
	char *value;		/* unquoted; RFC 2231 continuations joined,
				 * charset'lang' prefix kept verbatim */
};

struct mime_part {
	/* Offsets into the message.  The header runs [header, body); body
	 * starts after the blank line (== header end when there is none)
	 * and runs to end.  For a multipart child, end is where the CRLF
	 * before the next boundary starts. */
	size_t header, body, end;
	size_t body_lines;	/* lines in [body, end) */

	/* Content-Type, defaulted per RFC 2045 5.2 (text/plain; or
	 * message/rfc822 inside multipart/digest), lower-cased. */
	char *type, *subtype;
	struct mime_param *params;	/* Content-Type parameters */
	size_t n_params;

	/* Other MIME header fields, unfolded, NULL when absent. */
	char *id, *description, *encoding, *md5, *language, *location;
	char *disposition;		/* the disposition value, lower-cased */
	struct mime_param *disp_params;
	size_t n_disp_params;

	/* multipart/ *: the parts (a multipart without any boundary in it
	 * has none).  message/rfc822 (and message/global): children[0] is
	 * the encapsulated message, whose header/body are its own. */
	struct mime_part *children;
	size_t n_children;
	struct mime_part *parent;
};

/* Parse msg; the root part covers the whole message.  Always succeeds
 * (broken input gives a best-effort tree); free with mime_free. */
void mime_parse(const char *msg, size_t len, struct mime_part *root);
void mime_free(struct mime_part *root);

/* The value of a Content-Type parameter, any case, or NULL. */
const char *mime_param(const struct mime_part *p, const char *name);

/*
 * Header fields of the header block [start, end) of msg.
 * mime_header_get: the first field named name (any case), unfolded (CRLF
 * followed by a blank is removed, leading/trailing blanks trimmed), into
 * *value.  Returns true if found.
 * mime_header_next: iterate fields: *pos starts at start; each call gives
 * the field name [name, name+name_len) and the raw field text [field,
 * field+field_len) including name, colon, folded lines and the final
 * CRLF.  Returns false at the end.
 */
bool mime_header_get(const char *msg, size_t start, size_t end,
		     const char *name, struct str *value);
bool mime_header_next(const char *msg, size_t end, size_t *pos,
		      const char **name, size_t *name_len,
		      const char **field, size_t *field_len);

/* Find part "1.2.3" (IMAP section numbering: for a non-multipart message
 * part 1 is its body; message/rfc822 parts number their message's parts).
 * NULL if there is no such part. */
const struct mime_part *mime_find_part(const struct mime_part *root,
				       const char *section, size_t len);

#endif
