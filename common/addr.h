/*
 * addr: RFC 5321 mailbox and path syntax (with the RFC 6531 UTF-8 extension):
 * "<local@domain>", "<>", quoted local parts, domain literals, source routes
 * (accepted and ignored, RFC 5321 appendix C).  Used by the SMTP server for
 * MAIL/RCPT, by sockmailctl to validate what it stores, and by the queue.
 */
#ifndef SOCKMAIL_ADDR_H
#define SOCKMAIL_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#include "str.h"
#include "strlist.h"

#define ADDR_MAX_LOCAL 64
#define ADDR_MAX_DOMAIN 255
#define ADDR_MAX_PATH 256

struct mailaddr {
	char *local;	/* local part, unquoted: "a b" for "\"a b\"" ("" for <>) */
	char *domain;	/* as written, "[1.2.3.4]" for literals ("" for <>) */
	bool null;	/* the null path <> */
	bool utf8;	/* has octets >= 0x80 (needs SMTPUTF8) */
	bool literal;	/* domain is an address literal */
};

enum addr_error {
	ADDR_OK = 0,
	ADDR_SYNTAX,	/* malformed */
	ADDR_TOO_LONG,	/* local part > 64, domain > 255 or path > 256 */
	ADDR_NULL,	/* <> where a real mailbox is required */
	ADDR_BAD_UTF8,	/* octets >= 0x80 that are not well-formed UTF-8 */
};

/*
 * Parse a path at the start of text[0..len): "<...>".  Tolerates a missing
 * pair of angle brackets around a plain mailbox (as Postfix does), and a
 * space between "FROM:" and the path is the caller's to skip.  allow_null
 * permits "<>".  On success *consumed is the length of the path syntax, so
 * the caller can go on to the ESMTP parameters.  The caller frees with
 * mailaddr_free.  "<postmaster>" (any case, RFC 5321 4.5.1) is the one path
 * accepted without a domain: local as written, domain "".
 */
enum addr_error addr_parse_path(const char *text, size_t len, bool allow_null,
				struct mailaddr *out, size_t *consumed);

/* Parse a bare mailbox "local@domain" (no brackets, whole string). */
enum addr_error addr_parse_mailbox(const char *text, struct mailaddr *out);

/* A short English reason for an error, for replies. */
const char *addr_strerror(enum addr_error e);

/* "local@domain" with the local part quoted when it needs to be; "" for <>. */
void addr_format(const struct mailaddr *a, struct str *out);

/* Lower-case ASCII letters in place (domains, lookup keys); UTF-8 octets are
 * left as they are. */
void addr_lowercase(char *s);

/* True if s is a syntactically valid domain (dot-atom of LDH labels, or
 * UTF-8 U-labels), not a literal. */
bool addr_valid_domain(const char *s);

void mailaddr_free(struct mailaddr *a);

/* The addr-specs of an RFC 5322 address-list header field value (To:, Cc:,
 * From: ...): "Name <a@b>", bare a@b, comma-separated lists, comments and
 * quoted display names skipped, groups' members taken.  Appended to *out
 * as written (not validated: check with addr_parse_mailbox). */
void addr_header_list(const char *value, struct strlist *out);

#endif
