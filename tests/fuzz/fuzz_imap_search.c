/*
 * fuzz_imap_search: SEARCH keys (imap_search) from hostile input.  The
 * input is "<keys>" or "<keys>\0<message>": "a SEARCH <keys>" goes through
 * imap_command_parse and imap_search_parse_command; the key tree is then
 * evaluated over a few fixed in-memory messages (plain, RFC 2047 header,
 * multipart with base64/QP/latin-1, message/rfc822, no Date, one gone
 * from disk) plus the message from the input, through the search source
 * interface (callbacks, no folder).
 *
 * Invariants: parse results are consistent (a tree iff OK, a reason iff
 * not); the tree is well formed (AND has >= 1 subkey, OR 2, NOT 1, leaves
 * none; depth <= IMAP_SEARCH_MAX_DEPTH, at most IMAP_SEARCH_MAX_KEYS keys;
 * each key's cost is its leaf cost or its costliest subkey's, AND/OR
 * subkeys sorted cheapest first; values NUL-terminated, lower-cased when
 * 7-bit).  Evaluation: a gone message never matches; the source is asked
 * for each kind of data at most once per message, and never for data
 * costlier than the key's cost; every AND/OR/NOT node's result is the
 * combination of its subkeys' results evaluated on their own; memory
 * keys agree with a reference; BODY x and HEADER f x imply TEXT x; an
 * empty BODY/TEXT string matches every available message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parser.h"
#include "imap_search.h"
#include "mime.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BOX_MAX 8
#define CHECK_NODES_MAX 200	/* per-node evaluation only for small trees */

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_imap_search: invariant broken: %s\n",
			what);
		abort();
	}
}

/* ------------------------------------------------------------ the box */

struct box {
	struct imap_msg msgs[BOX_MAX];
	char *text[BOX_MAX];	/* CRLF, exactly len octets: ASan sees
				 * any read past the end */
	size_t len[BOX_MAX];
	size_t hlen[BOX_MAX];
	int64_t idate[BOX_MAX];
	bool gone[BOX_MAX];
	struct mime_part mime[BOX_MAX];
	bool parsed[BOX_MAX];
	size_t count;
	char *keywords[4];
	unsigned idate_calls[BOX_MAX], header_calls[BOX_MAX],
		 message_calls[BOX_MAX];
};

static void to_crlf(const char *lf, size_t len, struct str *out)
{
	for (size_t i = 0; i < len; i++) {
		if (lf[i] == '\n' && (i == 0 || lf[i - 1] != '\r'))
			str_append_c(out, '\r');
		str_append_c(out, lf[i]);
	}
}

static size_t header_length(const char *t, size_t len)
{
	const char *e = memmem(t, len, "\r\n\r\n", 4);
	return e != NULL ? (size_t)(e - t) + 4 : len;
}

static void box_add(struct box *b, uint32_t uid, uint8_t flags,
		    uint32_t keywords, int64_t idate, const char *lf,
		    size_t len)
{
	size_t i = b->count++;
	struct str t = STR_INIT;
	to_crlf(lf, len, &t);
	b->len[i] = t.len;
	b->text[i] = xmalloc(t.len > 0 ? t.len : 1);
	memcpy(b->text[i], str_c(&t), t.len);
	str_free(&t);
	b->msgs[i] = (struct imap_msg){ .uid = uid, .flags = flags,
					.keywords = keywords,
					.size = b->len[i] };
	b->hlen[i] = header_length(b->text[i], b->len[i]);
	b->idate[i] = idate;
	b->gone[i] = false;
}

static int src_internaldate(void *ctx, size_t idx, int64_t *when)
{
	struct box *b = ctx;
	b->idate_calls[idx]++;
	if (b->gone[idx])
		return -1;
	*when = b->idate[idx];
	return 0;
}

static const char *src_header(void *ctx, size_t idx, size_t *len)
{
	struct box *b = ctx;
	b->header_calls[idx]++;
	if (b->gone[idx])
		return NULL;
	*len = b->hlen[idx];
	return b->text[idx];
}

static const char *src_message(void *ctx, size_t idx, size_t *len,
			       size_t *header_len,
			       const struct mime_part **mime)
{
	struct box *b = ctx;
	b->message_calls[idx]++;
	if (b->gone[idx])
		return NULL;
	if (!b->parsed[idx]) {
		mime_parse(b->text[idx], b->len[idx], &b->mime[idx]);
		b->parsed[idx] = true;
	}
	*len = b->len[idx];
	*header_len = b->hlen[idx];
	*mime = &b->mime[idx];
	return b->text[idx];
}

static const char msg_plain[] =
	"Date: Tue, 5 Mar 2024 10:11:12 +0100\n"
	"From: Alice Example <alice@example.org>\n"
	"To: bob@example.net, \"Carol C.\" <carol@example.net>\n"
	"Cc: dave@example.com\n"
	"Subject: Quarterly report\n"
	"Message-ID: <1234@example.org>\n"
	"\n"
	"Hello Bob,\n"
	"the numbers are in. See you on Friday.\n";

static const char msg_2047[] =
	"Date: 29 Feb 2024 23:59:60 -0800 (PST)\n"
	"From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <jm@example.de>\n"
	"To: undisclosed-recipients:;\n"
	"Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=\n"
	"\t=?UTF-8?Q?_und_=CE=A9mega?=\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"Content-Transfer-Encoding: 8bit\n"
	"\n"
	"Schöne Grüße, ΑΒΓ and Привет.\n";

static const char msg_multi[] =
	"Date: Mon, 01 Jan 2024 00:00:00 +0000\n"
	"From: news@example.com\n"
	"Subject: multipart\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"XX\"\n"
	"\n"
	"preamble\n"
	"--XX\n"
	"Content-Type: multipart/alternative; boundary=YY\n"
	"\n"
	"--YY\n"
	"Content-Type: text/plain; charset=iso-8859-1\n"
	"Content-Transfer-Encoding: quoted-printable\n"
	"\n"
	"Caf=E9 cr=E8me =\n"
	"soft break\n"
	"--YY\n"
	"Content-Type: text/html; charset=utf-8\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"PGI+Q2Fmw6kgY3LDqG1lPC9iPg==\n"
	"--YY--\n"
	"--XX\n"
	"Content-Type: message/rfc822\n"
	"\n"
	"From: inner@example.com\n"
	"Subject: =?utf-8?q?inner_subject?=\n"
	"\n"
	"inner body text\n"
	"--XX\n"
	"Content-Type: application/octet-stream\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"AAECAwQFBgc=\n"
	"--XX--\n";

static const char msg_nodate[] =
	"From alice Thu Jan  1 00:00:00 1970\n"
	"X-Broken header without colon\n"
	"Subject:\n"
	"Date: not a date at all\n"
	"\n"
	"body only\n";

static void box_fill(struct box *b, const char *extra, size_t extra_len)
{
	b->count = 0;
	box_add(b, 3, IMAP_FLAG_SEEN | IMAP_FLAG_ANSWERED, 1, 1709629872,
		msg_plain, sizeof msg_plain - 1);
	box_add(b, 7, IMAP_FLAG_FLAGGED | IMAP_FLAG_RECENT, 2, 1709280000,
		msg_2047, sizeof msg_2047 - 1);
	box_add(b, 8, IMAP_FLAG_DELETED | IMAP_FLAG_SEEN, 5, 1704067200,
		msg_multi, sizeof msg_multi - 1);
	box_add(b, 12, IMAP_FLAG_DRAFT, 0, 0, msg_nodate,
		sizeof msg_nodate - 1);
	box_add(b, 13, 0, 0, 1600000000, msg_plain, sizeof msg_plain - 1);
	b->gone[b->count - 1] = true;
	box_add(b, 4000000000u, IMAP_FLAG_SEEN, 7, -86400 * 400, extra,
		extra_len);
	b->keywords[0] = "$Forwarded";
	b->keywords[1] = "Junk";
	b->keywords[2] = "$label1";
	b->keywords[3] = NULL;
}

static void box_reset_counts(struct box *b)
{
	memset(b->idate_calls, 0, sizeof b->idate_calls);
	memset(b->header_calls, 0, sizeof b->header_calls);
	memset(b->message_calls, 0, sizeof b->message_calls);
}

static void box_free(struct box *b)
{
	for (size_t i = 0; i < b->count; i++) {
		free(b->text[i]);
		b->text[i] = NULL;
		if (b->parsed[i])
			mime_free(&b->mime[i]);
		b->parsed[i] = false;
	}
}

/* ------------------------------------------------------ the key tree */

static enum imap_search_cost leaf_cost(enum imap_search_op op)
{
	switch (op) {
	case IMAP_SK_BEFORE:
	case IMAP_SK_ON:
	case IMAP_SK_SINCE:
		return IMAP_SEARCH_COST_DATE;
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
	case IMAP_SK_HEADER:
		return IMAP_SEARCH_COST_HEADER;
	case IMAP_SK_BODY:
	case IMAP_SK_TEXT:
		return IMAP_SEARCH_COST_BODY;
	default:
		return IMAP_SEARCH_COST_MEMORY;
	}
}

/* Well-formedness; returns the number of keys. */
static size_t check_tree(const struct imap_search_key *k, unsigned depth)
{
	check(k != NULL, "NULL key");
	check(depth <= IMAP_SEARCH_MAX_DEPTH + 1, "tree too deep");
	size_t n = 1;
	switch (k->op) {
	case IMAP_SK_AND:
		check(k->n_sub >= 1, "AND without subkeys");
		break;
	case IMAP_SK_OR:
		check(k->n_sub == 2, "OR without two subkeys");
		break;
	case IMAP_SK_NOT:
		check(k->n_sub == 1, "NOT without one subkey");
		break;
	default:
		check(k->n_sub == 0, "leaf with subkeys");
		check(k->cost == leaf_cost(k->op), "leaf cost");
	}
	enum imap_search_cost max = IMAP_SEARCH_COST_MEMORY;
	for (size_t i = 0; i < k->n_sub; i++) {
		n += check_tree(k->sub[i], depth + 1);
		if (k->sub[i]->cost > max)
			max = k->sub[i]->cost;
		if (i > 0 && k->op != IMAP_SK_NOT)
			check(k->sub[i - 1]->cost <= k->sub[i]->cost,
			      "subkeys not sorted by cost");
	}
	if (k->n_sub > 0)
		check(k->cost == max, "node cost");
	if (k->value != NULL) {
		check(k->value[k->value_len] == '\0', "value not terminated");
		bool ascii = true;
		for (size_t i = 0; i < k->value_len; i++)
			ascii = ascii && (unsigned char)k->value[i] < 0x80;
		check(ascii == k->value_ascii, "value_ascii");
		for (size_t i = 0; ascii && i < k->value_len; i++)
			check(k->value[i] < 'A' || k->value[i] > 'Z',
			      "7-bit value not lower-cased");
	}
	if (k->op == IMAP_SK_HEADER || k->op == IMAP_SK_BODY ||
	    k->op == IMAP_SK_TEXT)
		check(k->value != NULL, "string key without value");
	if (k->op == IMAP_SK_HEADER)
		check(k->name != NULL && strchr(k->name, ':') == NULL,
		      "header key name");
	if (k->op == IMAP_SK_KEYWORD || k->op == IMAP_SK_UNKEYWORD)
		check(k->name != NULL, "keyword key name");
	if (k->op == IMAP_SK_SEQSET || k->op == IMAP_SK_UID)
		check(k->set.n > 0, "empty set");
	return n;
}

/* ------------------------------------------------------ evaluation */

struct eval {
	struct box *box;
	struct imap_search_source src;
};

/* Match key against message idx on its own, checking the laziness. */
static bool match_one(struct eval *e, struct imap_search_key *k, size_t idx)
{
	struct imap_search_ctx ctx;
	box_reset_counts(e->box);
	imap_search_init(&ctx, &e->src, k);
	bool m = imap_search_match(&ctx, idx);
	imap_search_deinit(&ctx);
	struct box *b = e->box;
	for (size_t i = 0; i < b->count; i++) {
		check(b->idate_calls[i] <= 1 && b->header_calls[i] <= 1 &&
		      b->message_calls[i] <= 1, "data asked for twice");
		if (i != idx)
			check(b->idate_calls[i] + b->header_calls[i] +
			      b->message_calls[i] == 0,
			      "data of another message asked for");
	}
	if (k->cost < IMAP_SEARCH_COST_DATE)
		check(b->idate_calls[idx] == 0, "memory key read the date");
	if (k->cost < IMAP_SEARCH_COST_HEADER)
		check(b->header_calls[idx] + b->message_calls[idx] == 0,
		      "cheap key read the message");
	if (k->cost < IMAP_SEARCH_COST_BODY)
		check(b->message_calls[idx] == 0, "header key read the body");
	if (b->gone[idx])
		check(!m || (b->idate_calls[idx] + b->header_calls[idx] +
			     b->message_calls[idx] == 0),
		      "a gone message matched on its content");
	return m;
}

static uint32_t keyword_bit(const struct box *b, const char *name)
{
	for (unsigned i = 0; b->keywords[i] != NULL; i++)
		if (strcasecmp(b->keywords[i], name) == 0)
			return 1u << i;
	return 0;
}

/* What a memory key must give, or -1 for keys not checked here. */
static int reference(const struct eval *e, const struct imap_search_key *k,
		     size_t idx)
{
	const struct imap_msg *m = &e->box->msgs[idx];
	uint32_t bit;
	switch (k->op) {
	case IMAP_SK_ALL:
		return 1;
	case IMAP_SK_FLAGS:
		return (m->flags & k->flags_set) == k->flags_set &&
		       (m->flags & k->flags_clear) == 0;
	case IMAP_SK_KEYWORD:
		bit = keyword_bit(e->box, k->name);
		return bit != 0 && (m->keywords & bit) != 0;
	case IMAP_SK_UNKEYWORD:
		bit = keyword_bit(e->box, k->name);
		return bit == 0 || (m->keywords & bit) == 0;
	case IMAP_SK_LARGER:
		return m->size > k->number;
	case IMAP_SK_SMALLER:
		return m->size < k->number;
	case IMAP_SK_SEQSET:
		return imap_seqset_contains(&k->set, (uint32_t)idx + 1,
					    (uint32_t)e->box->count);
	case IMAP_SK_UID:
		return imap_seqset_contains(&k->set, m->uid,
				e->box->msgs[e->box->count - 1].uid);
	default:
		return -1;
	}
}

/* A TEXT key with k's value. */
static bool text_implied(struct eval *e, const struct imap_search_key *k,
			 size_t idx)
{
	struct imap_search_key text = {
		.op = IMAP_SK_TEXT, .cost = IMAP_SEARCH_COST_BODY,
		.value = k->value, .value_len = k->value_len,
		.value_ascii = k->value_ascii, .keyword = -1,
	};
	return match_one(e, &text, idx);
}

static void check_node(struct eval *e, struct imap_search_key *k,
		       size_t idx, bool m)
{
	struct box *b = e->box;
	if (b->gone[idx])
		return;	/* content unavailable: only "no match" is known */
	bool want;
	switch (k->op) {
	case IMAP_SK_AND:
		want = true;
		for (size_t i = 0; i < k->n_sub; i++)
			want = match_one(e, k->sub[i], idx) && want;
		check(m == want, "AND is not the AND of its subkeys");
		break;
	case IMAP_SK_OR:
		want = false;
		for (size_t i = 0; i < k->n_sub; i++)
			want = match_one(e, k->sub[i], idx) || want;
		check(m == want, "OR is not the OR of its subkeys");
		break;
	case IMAP_SK_NOT:
		check(m == !match_one(e, k->sub[0], idx),
		      "NOT is not the negation of its subkey");
		break;
	case IMAP_SK_BODY:
	case IMAP_SK_TEXT:
		if (k->value_len == 0)
			check(m, "empty string did not match");
		if (k->op == IMAP_SK_BODY && m)
			check(text_implied(e, k, idx), "BODY x without TEXT x");
		break;
	case IMAP_SK_HEADER:
		if (m)
			check(text_implied(e, k, idx),
			      "HEADER f x without TEXT x");
		break;
	default: {
		int r = reference(e, k, idx);
		if (r >= 0)
			check(m == (r == 1), "memory key disagrees");
	}
	}
	for (size_t i = 0; i < k->n_sub; i++)
		check_node(e, k->sub[i], idx, match_one(e, k->sub[i], idx));
}

static void evaluate(struct box *b, struct imap_search_key *key,
		     size_t n_keys)
{
	struct eval e = { .box = b };
	e.src = (struct imap_search_source){
		.msgs = b->msgs, .count = b->count,
		.keywords = b->keywords, .n_keywords = 3,
		.ctx = b, .internaldate = src_internaldate,
		.header = src_header, .message = src_message,
	};
	/* One context over all messages, as the command does. */
	struct imap_search_ctx ctx;
	bool all[BOX_MAX];
	box_reset_counts(b);
	imap_search_init(&ctx, &e.src, key);
	for (size_t i = 0; i < b->count; i++)
		all[i] = imap_search_match(&ctx, i);
	check(!imap_search_match(&ctx, b->count), "match beyond the view");
	imap_search_deinit(&ctx);
	for (size_t i = 0; i < b->count; i++) {
		check(b->idate_calls[i] <= 1 && b->header_calls[i] <= 1 &&
		      b->message_calls[i] <= 1, "data asked for twice");
		if (b->gone[i])
			check(!all[i] || (b->idate_calls[i] +
					  b->header_calls[i] +
					  b->message_calls[i] == 0),
			      "a gone message matched on its content");
	}
	/* Message by message with fresh contexts: the same answers. */
	for (size_t i = 0; i < b->count; i++) {
		bool m = match_one(&e, key, i);
		check(m == all[i], "result depends on the previous message");
		if (n_keys <= CHECK_NODES_MAX)
			check_node(&e, key, i, m);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nul = memchr(data, '\0', size);
	size_t keys_len = nul != NULL ? (size_t)(nul - (const char *)data)
				      : size;
	const char *extra = nul != NULL ? nul + 1 : "";
	size_t extra_len = nul != NULL ? size - keys_len - 1 : 0;

	struct str line = STR_INIT, msg = STR_INIT;
	str_append(&line, "a SEARCH ");
	str_append_n(&line, (const char *)data, keys_len);
	str_append(&line, "\r\n");
	struct imap_command cmd;
	enum imap_read_result r = imap_command_parse(str_c(&line), line.len,
						     0, &cmd, &msg);
	if (r == IMAP_READ_OK) {
		struct imap_search_key *key = (void *)1;
		struct str err = STR_INIT;
		enum imap_search_parse_result pr =
			imap_search_parse_command(cmd.args, cmd.argc, &key,
						  &err);
		if (pr == IMAP_SEARCH_PARSE_OK) {
			check(key != NULL, "OK without a key");
			size_t n = check_tree(key, 0);
			check(n <= IMAP_SEARCH_MAX_KEYS, "too many keys");
			static struct box box;
			box_fill(&box, extra, extra_len);
			evaluate(&box, key, n);
			box_free(&box);
			imap_search_key_free(key);
		} else {
			check(pr == IMAP_SEARCH_PARSE_BAD ||
			      pr == IMAP_SEARCH_PARSE_BADCHARSET,
			      "parse result");
			check(key == NULL, "refused with a key");
			check(err.len > 0, "refused without a reason");
		}
		str_free(&err);
	}
	imap_command_free(&cmd);
	str_free(&line);
	str_free(&msg);
	return 0;
}
