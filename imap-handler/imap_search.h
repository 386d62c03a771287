/*
 * imap_search: SEARCH and UID SEARCH (RFC 3501 6.4.4) in two layers, so
 * both can be unit-tested and fuzzed without a folder:
 *
 *  - parse: the command's arguments into a tree of search keys (bounded in
 *    depth and size), with the cheap keys of every AND/OR sorted first;
 *  - evaluate: one message at a time against a data source given as
 *    callbacks, asking for the costly data (INTERNALDATE, the header, the
 *    whole message) only when a key needs it, and at most once per
 *    message.
 *
 * imap_cmd_search (declared in imap.h) joins them with a source backed by
 * the selected folder.
 */
#ifndef SOCKMAIL_IMAP_SEARCH_H
#define SOCKMAIL_IMAP_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap_folder.h"
#include "imap_parser.h"
#include "imap_seqset.h"
#include "mime.h"
#include "str.h"

#define IMAP_SEARCH_MAX_DEPTH 32	/* nested lists, NOT and OR */
#define IMAP_SEARCH_MAX_KEYS 1000

enum imap_search_op {
	IMAP_SK_AND,		/* a list, or the top-level keys */
	IMAP_SK_OR,		/* two subkeys */
	IMAP_SK_NOT,		/* one subkey */
	IMAP_SK_ALL,
	IMAP_SK_FLAGS,		/* flags_set all set, flags_clear all clear:
				 * ANSWERED ... UNSEEN, NEW, OLD, RECENT */
	IMAP_SK_KEYWORD,
	IMAP_SK_UNKEYWORD,
	IMAP_SK_LARGER,
	IMAP_SK_SMALLER,
	IMAP_SK_SEQSET,
	IMAP_SK_UID,
	IMAP_SK_BEFORE,		/* INTERNALDATE, local date */
	IMAP_SK_ON,
	IMAP_SK_SINCE,
	IMAP_SK_SENTBEFORE,	/* Date:, date in its own zone */
	IMAP_SK_SENTON,
	IMAP_SK_SENTSINCE,
	IMAP_SK_HEADER,		/* FROM TO CC BCC SUBJECT HEADER */
	IMAP_SK_BODY,
	IMAP_SK_TEXT,
};

/* What a key costs to evaluate, cheapest first. */
enum imap_search_cost {
	IMAP_SEARCH_COST_MEMORY,	/* flags, keywords, size, UID, seq */
	IMAP_SEARCH_COST_DATE,		/* INTERNALDATE (a stat) */
	IMAP_SEARCH_COST_HEADER,	/* the header block */
	IMAP_SEARCH_COST_BODY,		/* the whole message */
};

struct imap_search_key {
	enum imap_search_op op;
	enum imap_search_cost cost;	/* of this key and its subkeys */
	struct imap_search_key **sub;	/* AND (n_sub >= 1), OR (2), NOT (1) */
	size_t n_sub;
	uint8_t flags_set, flags_clear;	/* FLAGS */
	char *name;		/* HEADER: the field name; KEYWORD: the keyword */
	char *value;		/* HEADER BODY TEXT: the string (UTF-8),
				 * lower-cased when value_ascii */
	size_t value_len;
	bool value_ascii;	/* value is 7-bit: the fast matcher applies */
	uint64_t number;	/* LARGER SMALLER */
	int64_t day;		/* dates: the day's midnight UTC, epoch s */
	struct imap_seqset set;	/* SEQSET UID */
	int keyword;		/* KEYWORD UNKEYWORD: index, -1 unknown;
				 * set by imap_search_init */
};

enum imap_search_parse_result {
	IMAP_SEARCH_PARSE_OK,
	IMAP_SEARCH_PARSE_BAD,		/* syntax: reply BAD with *err */
	IMAP_SEARCH_PARSE_BADCHARSET,	/* reply NO [BADCHARSET (...)] */
};

/*
 * The search keys args[0..argc) (after any CHARSET), ANDed.  On success
 * *key is the tree (free with imap_search_key_free); else *err gets the
 * reason and *key is NULL.
 */
enum imap_search_parse_result imap_search_parse(const struct imap_arg *args,
						size_t argc,
						struct imap_search_key **key,
						struct str *err);
/* The whole argument list of SEARCH: "[CHARSET name] key...".  Charsets
 * UTF-8 and US-ASCII (any case) are accepted. */
enum imap_search_parse_result imap_search_parse_command(
	const struct imap_arg *args, size_t argc,
	struct imap_search_key **key, struct str *err);
void imap_search_key_free(struct imap_search_key *key);

/*
 * Where the evaluator gets a message's data.  msgs/count is the view
 * (msgs[i] is sequence number i+1, UIDs ascending), keywords the folder's
 * keyword names.  The callbacks return data for message idx; pointers
 * stay valid until the next header/message call.  Each returns failure
 * (-1 / NULL) when the content is unavailable (message gone): the message
 * then does not match, whatever the keys.
 */
struct imap_search_source {
	const struct imap_msg *msgs;
	size_t count;
	char *const *keywords;
	unsigned n_keywords;
	void *ctx;
	int (*internaldate)(void *ctx, size_t idx, int64_t *when);
	/* The header block, blank line included, CRLF text. */
	const char *(*header)(void *ctx, size_t idx, size_t *len);
	/* The whole message (CRLF text), its header's length and its MIME
	 * tree (offsets into the text). */
	const char *(*message)(void *ctx, size_t idx, size_t *len,
			       size_t *header_len,
			       const struct mime_part **mime);
};

/* A decoded header field: offsets into imap_search_ctx.hdr. */
struct imap_search_field {
	size_t name, name_len;	/* "Subject" */
	size_t value, value_len;	/* unfolded, RFC 2047 decoded */
};

/* A piece of body text to search: in the message text, or decoded into
 * imap_search_ctx.body. */
struct imap_search_seg {
	size_t off, len;
	bool decoded;
};

/* The evaluator's state: per search, with per-message caches whose
 * buffers are reused from message to message. */
struct imap_search_ctx {
	const struct imap_search_source *src;
	struct imap_search_key *key;
	uint32_t max_uid;

	/* the message being evaluated */
	size_t idx;
	const struct imap_msg *msg;
	bool unavailable;	/* a key needed content that is not there */

	bool have_idate, idate_ok;
	int64_t idate_day;
	bool have_sent, sent_ok;
	int64_t sent_day;

	const char *text;	/* header only, or the whole message */
	size_t text_len, header_len;
	const struct mime_part *mime;
	bool tried_header, tried_whole, whole;

	bool have_fields;
	struct str hdr;		/* "Name: value\n" per field, decoded */
	struct imap_search_field *fields;
	size_t n_fields, fields_cap;

	bool have_body;
	struct str body, tmp;
	struct imap_search_seg *segs;
	size_t n_segs, segs_cap;
};

/* Prepare to evaluate key (resolving keyword names) over src. */
void imap_search_init(struct imap_search_ctx *ctx,
		      const struct imap_search_source *src,
		      struct imap_search_key *key);
/* Does message idx (sequence number idx+1) match? */
bool imap_search_match(struct imap_search_ctx *ctx, size_t idx);
void imap_search_deinit(struct imap_search_ctx *ctx);

/*
 * An RFC 5322 Date: value, leniently (day of week optional, 2- and 3-digit
 * years, seconds optional, obsolete and military zones, comments).  0 with
 * the instant in *when and the zone's offset in minutes in *zone, or -1.
 */
int imap_search_parse_mail_date(const char *s, size_t len, int64_t *when,
				int *zone);

#endif
