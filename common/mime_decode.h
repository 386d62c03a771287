/*
 * mime_decode: turning MIME-encoded text into UTF-8 for searching (IMAP
 * SEARCH with CHARSET UTF-8) and display: RFC 2047 encoded words in header
 * fields, the base64 and quoted-printable transfer encodings of bodies, and
 * charset conversion through iconv (glibc's: every charset a mail client
 * uses, no extra library).
 *
 * Decoding is lenient, as mail in the wild needs: bad base64 or QP is
 * decoded as far as it makes sense, an unknown charset is passed through
 * with invalid UTF-8 sequences replaced by U+FFFD.
 */
#ifndef SOCKMAIL_MIME_DECODE_H
#define SOCKMAIL_MIME_DECODE_H

#include <stdbool.h>
#include <stddef.h>

#include "str.h"

/* Append the header field value text with its RFC 2047 encoded words
 * decoded (whitespace between adjacent encoded words dropped, per RFC 2047
 * 6.2), converted to UTF-8. */
void rfc2047_decode(const char *text, size_t len, struct str *out);

/* Append data decoded from the transfer encoding ("base64",
 * "quoted-printable", anything else: as is). */
void mime_transfer_decode(const char *encoding, const char *data, size_t len,
			  struct str *out);

/* Append data converted from charset (NULL or "" = us-ascii/utf-8) to
 * valid UTF-8. */
void mime_charset_to_utf8(const char *charset, const char *data, size_t len,
			  struct str *out);

/* Case-insensitive (ASCII and simple Unicode case folding of Latin,
 * Greek and Cyrillic letters) substring search of UTF-8 needle in UTF-8
 * haystack, as SEARCH needs. */
bool mime_utf8_contains(const char *haystack, size_t hlen,
			const char *needle, size_t nlen);

#endif
