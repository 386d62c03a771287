/*
 * imap_mutf7: the modified UTF-7 of RFC 3501 5.1.3 that IMAP mailbox names
 * travel in, to and from UTF-8.
 */
#ifndef SOCKMAIL_IMAP_MUTF7_H
#define SOCKMAIL_IMAP_MUTF7_H

#include <stddef.h>

#include "str.h"

/* Decode an mUTF-7 name into UTF-8, appended to *out.  Strict: -1 for
 * bad base64, a non-canonical encoding ("&AGE-" for "a"), unpaired
 * surrogates, a '&' not closed by '-', or octets above 0x7e; *out is then
 * as it was. */
int mutf7_to_utf8(const char *in, size_t len, struct str *out);

/* Encode UTF-8 into mUTF-7, appended.  -1 for invalid UTF-8. */
int utf8_to_mutf7(const char *in, size_t len, struct str *out);

#endif
