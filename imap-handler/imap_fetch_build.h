/*
 * imap_fetch_build: the parts of FETCH that are pure functions of a
 * message's text and MIME tree: ENVELOPE, BODY/BODYSTRUCTURE (RFC 3501
 * 7.4.2) and body sections (RFC 3501 6.4.5).  No session here, so they can
 * be unit-tested and fuzzed on their own.
 */
#ifndef SOCKMAIL_IMAP_FETCH_BUILD_H
#define SOCKMAIL_IMAP_FETCH_BUILD_H

#include <stdbool.h>
#include <stddef.h>

#include "mime.h"
#include "str.h"
#include "strlist.h"

/*
 * Append the ENVELOPE of the header block [header_start, header_end) of
 * msg: "(date subject from sender reply-to to cc bcc in-reply-to
 * message-id)".  Values are the raw (RFC 2047 still encoded), unfolded
 * header values; address lists follow the RFC 5322 grammar as far as the
 * input allows (groups, routes, comments as names) and never fail.
 */
void imap_envelope_build(const char *msg, size_t header_start,
			 size_t header_end, struct str *out);

/* Append the BODYSTRUCTURE (extended) or BODY (!extended) of part. */
void imap_bodystructure_build(const char *msg, const struct mime_part *part,
			      bool extended, struct str *out);

/* A body section spec, the text between '[' and ']' of BODY[...]. */
enum imap_section_kind {
	IMAP_SECTION_ALL,		/* "" or a part number alone */
	IMAP_SECTION_HEADER,
	IMAP_SECTION_HEADER_FIELDS,
	IMAP_SECTION_HEADER_FIELDS_NOT,
	IMAP_SECTION_TEXT,
	IMAP_SECTION_MIME,		/* only after a part number */
};

#define IMAP_SECTION_PART_MAX 256	/* octets of "1.2.3" */
#define IMAP_SECTION_FIELDS_MAX 1000	/* names in a HEADER.FIELDS list */

struct imap_section {
	enum imap_section_kind kind;
	char *part;			/* "1.2.3", NULL for the message */
	struct strlist fields;		/* HEADER.FIELDS (.NOT) names */
};

/*
 * Parse spec (NUL-terminated).  0, or -1 if it is not valid RFC 3501
 * section-spec syntax (sec is then empty).  imap_section_format appends
 * the canonical form for the response (keywords and field names upper
 * case): "1.HEADER.FIELDS (FROM TO)".
 */
int imap_section_parse(const char *spec, struct imap_section *sec);
void imap_section_format(const struct imap_section *sec, struct str *out);
void imap_section_free(struct imap_section *sec);

/*
 * The content of a section of the message msg (len octets, CRLF) whose
 * MIME tree is root: true with [*data, *data + *data_len) pointing into
 * msg, or, for HEADER.FIELDS (.NOT), into *built (text assembled there).
 * false when the message has no such part, or HEADER/TEXT/HEADER.FIELDS
 * follow a part number that is not a message/rfc822 part (reply NIL).
 */
bool imap_fetch_section(const char *msg, size_t len,
			const struct mime_part *root,
			const struct imap_section *sec, struct str *built,
			const char **data, size_t *data_len);

/* The header fields of [start, end) whose names are (!negate) or are not
 * (negate) in names, any case, in message order, then the blank line. */
void imap_header_fields(const char *msg, size_t start, size_t end,
			const struct strlist *names, bool negate,
			struct str *out);

#endif
