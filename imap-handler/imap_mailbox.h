/*
 * imap_mailbox.h: the pure pieces of imap_mailbox.c (name <-> directory
 * mapping, LIST pattern matching), apart from the session so unit tests can
 * drive them.  The commands themselves are declared in imap.h.
 */
#ifndef SOCKMAIL_IMAP_MAILBOX_H
#define SOCKMAIL_IMAP_MAILBOX_H

#include <stdbool.h>

#include "str.h"

/* The longest directory name a folder may get (NAME_MAX of the usual file
 * systems). */
#define IMAP_MAILBOX_DIRNAME_MAX 255

/*
 * The Maildir++ directory name of a mailbox name as the client sent it:
 * ".A.B" for "A/B" (a '.' in a level stored as "&AC4-"), appended to *dir.
 * Returns 1 for INBOX (any case; *dir untouched: it is the root), 0 for a
 * folder, -1 with the reason in *err for a name that is refused.  A first
 * level "INBOX" in any case is stored as "INBOX".
 */
int imap_mailbox_dirname(const char *name, struct str *dir, struct str *err);

/*
 * The reverse: the IMAP name of a directory in the Maildir root, appended
 * to *name.  -1 (nothing appended) for anything that is not the directory
 * name of a valid mailbox name (".", "..", hidden "..x" entries, names
 * that do not map back to themselves).
 */
int imap_mailbox_from_dirname(const char *dirname, struct str *name);

/*
 * LIST pattern matching (RFC 3501 6.3.8): '*' matches any run of octets,
 * '%' any run without the separator '/'.  Octets compare exactly, except
 * that a name's first level "INBOX" matches in any case.
 */
bool imap_list_match(const char *pattern, const char *name);

#endif
