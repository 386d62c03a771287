/*
 * imap_seqset: RFC 3501 sequence sets ("1,3:5,7:*") for message sequence
 * numbers and UIDs.  Ranges may be given in any order ("5:3" is 3:5) and
 * may overlap; '*' stands for the largest number in use, supplied when the
 * set is used, not when it is parsed.
 */
#ifndef SOCKMAIL_IMAP_SEQSET_H
#define SOCKMAIL_IMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

#define IMAP_SEQ_STAR UINT64_MAX	/* '*' as stored in a range */
#define IMAP_SEQSET_MAX_RANGES 100000

struct imap_seq_range {
	uint64_t lo, hi;	/* as written, either may be IMAP_SEQ_STAR */
};

struct imap_seqset {
	struct imap_seq_range *r;
	size_t n, cap;
};

/* Parse text (the whole string).  0 is never a valid number.  0 on
 * success, -1 if malformed (the set is then empty).  The special "$"
 * (RFC 5182) is not supported. */
int imap_seqset_parse(const char *text, struct imap_seqset *set);
void imap_seqset_free(struct imap_seqset *set);

/* Is n in the set, '*' meaning star?  (With star = 0, an empty mailbox,
 * nothing matches.)  "n:*" with n > star matches star, per RFC 3501 6.4.8
 * ("UID 7:*" includes the highest UID even below 7). */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n,
			  uint32_t star);

/* Any number in the set above star (a message sequence number beyond the
 * mailbox: a BAD for sequence numbers, silently ignored for UIDs)? */
bool imap_seqset_beyond(const struct imap_seqset *set, uint32_t star);

/* Sort and merge (resolving '*' to star) into canonical ascending ranges. */
void imap_seqset_normalize(struct imap_seqset *set, uint32_t star);

/* Append the set as text ("1:3,5") after normalising: COPYUID/APPENDUID.
 * From a sorted array of numbers too. */
void imap_seqset_format(const struct imap_seqset *set, struct str *out);
void imap_seqset_format_list(const uint32_t *nums, size_t n, struct str *out);

#endif
