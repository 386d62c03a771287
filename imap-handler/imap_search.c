/*
 * imap_search: SEARCH and UID SEARCH.  The arguments become a tree of
 * search keys (parse), every message of the view is matched against it
 * (evaluate), and the matching numbers are written out in chunks.
 *
 * Evaluation asks its data source for costly data only when a key needs
 * it and once per message: flags, keywords, sizes and UIDs come from
 * memory, INTERNALDATE from a stat, header keys read the header block
 * only, and only BODY/TEXT read the whole message.  Every AND and OR has
 * its cheap keys sorted first, so "UNSEEN SUBJECT x" reads the header of
 * the unseen messages only, and "SEARCH UNSEEN" opens no file at all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap.h"
#include "imap_message.h"
#include "imap_search.h"
#include "mime_decode.h"

/* Bounds on what one message's header gives the header keys. */
#define SEARCH_MAX_FIELDS 2000
/* How much of a client's text goes into an error message. */
#define SEARCH_ECHO_MAX 40

/* ---------------------------------------------------------------- parse */

struct search_parser {
	size_t n_keys;
	struct str *err;
};

static const struct {
	const char *name;
	uint8_t set, clear;
} flag_keys[] = {
	{ "ANSWERED", IMAP_FLAG_ANSWERED, 0 },
	{ "DELETED", IMAP_FLAG_DELETED, 0 },
	{ "DRAFT", IMAP_FLAG_DRAFT, 0 },
	{ "FLAGGED", IMAP_FLAG_FLAGGED, 0 },
	{ "RECENT", IMAP_FLAG_RECENT, 0 },
	{ "SEEN", IMAP_FLAG_SEEN, 0 },
	{ "UNANSWERED", 0, IMAP_FLAG_ANSWERED },
	{ "UNDELETED", 0, IMAP_FLAG_DELETED },
	{ "UNDRAFT", 0, IMAP_FLAG_DRAFT },
	{ "UNFLAGGED", 0, IMAP_FLAG_FLAGGED },
	{ "UNSEEN", 0, IMAP_FLAG_SEEN },
	{ "NEW", IMAP_FLAG_RECENT, IMAP_FLAG_SEEN },
	{ "OLD", 0, IMAP_FLAG_RECENT },
};

/* System flags named in KEYWORD/UNKEYWORD ("\Seen") mean the flag. */
static const struct {
	const char *name;
	uint8_t flag;
} system_flags[] = {
	{ "\\Answered", IMAP_FLAG_ANSWERED },
	{ "\\Deleted", IMAP_FLAG_DELETED },
	{ "\\Draft", IMAP_FLAG_DRAFT },
	{ "\\Flagged", IMAP_FLAG_FLAGGED },
	{ "\\Recent", IMAP_FLAG_RECENT },
	{ "\\Seen", IMAP_FLAG_SEEN },
};

static const struct {
	const char *name, *field;
} header_keys[] = {
	{ "BCC", "Bcc" }, { "CC", "Cc" }, { "FROM", "From" },
	{ "SUBJECT", "Subject" }, { "TO", "To" },
};

static const struct {
	const char *name;
	enum imap_search_op op;
} date_keys[] = {
	{ "BEFORE", IMAP_SK_BEFORE }, { "ON", IMAP_SK_ON },
	{ "SINCE", IMAP_SK_SINCE }, { "SENTBEFORE", IMAP_SK_SENTBEFORE },
	{ "SENTON", IMAP_SK_SENTON }, { "SENTSINCE", IMAP_SK_SENTSINCE },
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Client text in an error message: bounded and printable. */
static void append_echo(struct str *out, const char *s, size_t len)
{
	size_t n = len < SEARCH_ECHO_MAX ? len : SEARCH_ECHO_MAX;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		str_append_c(out, c >= 0x20 && c < 0x7f ? (char)c : '?');
	}
	if (n < len)
		str_append(out, "...");
}

static void parse_error(struct search_parser *p, const char *what,
			const struct imap_arg *a)
{
	if (p->err->len > 0)
		return;		/* keep the first, innermost reason */
	str_append(p->err, what);
	if (a != NULL && a->type != IMAP_ARG_LIST && a->str != NULL) {
		str_append(p->err, ": ");
		append_echo(p->err, a->str, a->len);
	}
}

static struct imap_search_key *key_new(struct search_parser *p,
				       enum imap_search_op op)
{
	if (++p->n_keys > IMAP_SEARCH_MAX_KEYS) {
		parse_error(p, "Too many search keys", NULL);
		return NULL;
	}
	struct imap_search_key *k = xcalloc(1, sizeof *k);
	k->op = op;
	k->keyword = -1;
	return k;
}

void imap_search_key_free(struct imap_search_key *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->n_sub; i++)
		imap_search_key_free(k->sub[i]);
	free(k->sub);
	free(k->name);
	free(k->value);
	imap_seqset_free(&k->set);
	free(k);
}

static void key_add_sub(struct imap_search_key *k, struct imap_search_key *sub)
{
	k->sub = xrealloc(k->sub, (k->n_sub + 1) * sizeof *k->sub);
	k->sub[k->n_sub++] = sub;
}

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

/* Set k's cost and order its subkeys cheapest first (a stable insertion
 * sort: the client's order is kept among keys of one cost). */
static void key_finish(struct imap_search_key *k)
{
	if (k->n_sub == 0) {
		k->cost = leaf_cost(k->op);
		return;
	}
	for (size_t i = 1; i < k->n_sub; i++) {
		struct imap_search_key *x = k->sub[i];
		size_t j = i;
		for (; j > 0 && k->sub[j - 1]->cost > x->cost; j--)
			k->sub[j] = k->sub[j - 1];
		k->sub[j] = x;
	}
	k->cost = k->sub[k->n_sub - 1]->cost;
}

/* The next argument as text (an astring; the atom NIL is text too). */
static const struct imap_arg *next_text(struct search_parser *p,
					const struct imap_arg *args,
					size_t argc, size_t *pos,
					const struct imap_arg *keyarg)
{
	if (*pos >= argc) {
		parse_error(p, "Missing argument to search key", keyarg);
		return NULL;
	}
	const struct imap_arg *a = &args[(*pos)++];
	if (a->type == IMAP_ARG_LIST || a->str == NULL) {
		parse_error(p, "Search key needs a string argument", keyarg);
		return NULL;
	}
	return a;
}

static void set_value(struct imap_search_key *k, const struct imap_arg *a)
{
	const char *s = a->str;
	size_t len = a->len;
	k->value = xmalloc(len + 1);
	memcpy(k->value, s, len);
	k->value[len] = '\0';
	k->value_len = len;
	k->value_ascii = true;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			k->value_ascii = false;
	/* the fast matcher compares with a lower-cased needle */
	if (k->value_ascii)
		for (size_t i = 0; i < len; i++)
			k->value[i] = (char)ascii_lower((unsigned char)s[i]);
}

static struct imap_search_key *parse_key(struct search_parser *p,
					 const struct imap_arg *args,
					 size_t argc, size_t *pos,
					 unsigned depth);

/* Keys args[*pos..end) ANDed into k, at least one. */
static int parse_and(struct search_parser *p, struct imap_search_key *k,
		     const struct imap_arg *args, size_t argc, unsigned depth)
{
	size_t pos = 0;
	if (argc == 0) {
		parse_error(p, "Missing search key", NULL);
		return -1;
	}
	while (pos < argc) {
		struct imap_search_key *sub = parse_key(p, args, argc, &pos,
							depth);
		if (sub == NULL)
			return -1;
		key_add_sub(k, sub);
	}
	key_finish(k);
	return 0;
}

static struct imap_search_key *parse_list(struct search_parser *p,
					  const struct imap_arg *a,
					  unsigned depth)
{
	if (a->count == 0) {
		parse_error(p, "Empty search key list", NULL);
		return NULL;
	}
	if (a->count == 1) {	/* "(KEY)" is KEY */
		size_t pos = 0;
		return parse_key(p, a->list, 1, &pos, depth + 1);
	}
	struct imap_search_key *k = key_new(p, IMAP_SK_AND);
	if (k == NULL)
		return NULL;
	if (parse_and(p, k, a->list, a->count, depth + 1) < 0) {
		imap_search_key_free(k);
		return NULL;
	}
	return k;
}

static struct imap_search_key *parse_set(struct search_parser *p,
					 const struct imap_arg *a,
					 enum imap_search_op op)
{
	struct imap_search_key *k = key_new(p, op);
	if (k == NULL)
		return NULL;
	if (a->type != IMAP_ARG_ATOM ||
	    imap_seqset_parse(a->str, &k->set) < 0) {
		parse_error(p, "Invalid sequence set", a);
		imap_search_key_free(k);
		return NULL;
	}
	key_finish(k);
	return k;
}

/* KEYWORD / UNKEYWORD flag: a system flag name means that flag. */
static struct imap_search_key *parse_keyword(struct search_parser *p,
					     const struct imap_arg *a, bool un)
{
	struct imap_search_key *k;
	if (a->type != IMAP_ARG_ATOM) {
		parse_error(p, "Invalid keyword", a);
		return NULL;
	}
	for (size_t i = 0; i < N_ELEMS(system_flags); i++)
		if (strcasecmp(a->str, system_flags[i].name) == 0) {
			if ((k = key_new(p, IMAP_SK_FLAGS)) == NULL)
				return NULL;
			if (un)
				k->flags_clear = system_flags[i].flag;
			else
				k->flags_set = system_flags[i].flag;
			return k;
		}
	k = key_new(p, un ? IMAP_SK_UNKEYWORD : IMAP_SK_KEYWORD);
	if (k != NULL)
		k->name = xstrndup(a->str, a->len);
	return k;
}

/* NOT key, OR key key: n operands. */
static struct imap_search_key *parse_operator(struct search_parser *p,
					      enum imap_search_op op,
					      size_t n,
					      const struct imap_arg *args,
					      size_t argc, size_t *pos,
					      unsigned depth)
{
	struct imap_search_key *k = key_new(p, op);
	if (k == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		struct imap_search_key *sub = NULL;
		if (*pos >= argc)
			parse_error(p, op == IMAP_SK_NOT ?
				    "NOT needs a search key" :
				    "OR needs two search keys", NULL);
		else
			sub = parse_key(p, args, argc, pos, depth + 1);
		if (sub == NULL) {
			imap_search_key_free(k);
			return NULL;
		}
		key_add_sub(k, sub);
	}
	return k;
}

/* Keys without arguments: ALL and the flag keys. */
static struct imap_search_key *parse_simple(struct search_parser *p,
					    const char *name, bool *known)
{
	struct imap_search_key *k;
	*known = true;
	if (strcasecmp(name, "ALL") == 0)
		return key_new(p, IMAP_SK_ALL);
	for (size_t i = 0; i < N_ELEMS(flag_keys); i++)
		if (strcasecmp(name, flag_keys[i].name) == 0) {
			if ((k = key_new(p, IMAP_SK_FLAGS)) == NULL)
				return NULL;
			k->flags_set = flag_keys[i].set;
			k->flags_clear = flag_keys[i].clear;
			return k;
		}
	*known = false;
	return NULL;
}

/* Keys with one argument other than a search key. */
static struct imap_search_key *parse_with_arg(struct search_parser *p,
					      const struct imap_arg *ka,
					      const struct imap_arg *a,
					      bool *known)
{
	const char *name = ka->str;
	struct imap_search_key *k;
	*known = true;
	for (size_t i = 0; i < N_ELEMS(header_keys); i++)
		if (strcasecmp(name, header_keys[i].name) == 0) {
			if ((k = key_new(p, IMAP_SK_HEADER)) == NULL)
				return NULL;
			k->name = xstrdup(header_keys[i].field);
			set_value(k, a);
			return k;
		}
	for (size_t i = 0; i < N_ELEMS(date_keys); i++)
		if (strcasecmp(name, date_keys[i].name) == 0) {
			int64_t day;
			if (imap_parse_date(a->str, &day) < 0) {
				parse_error(p, "Invalid date", a);
				return NULL;
			}
			if ((k = key_new(p, date_keys[i].op)) != NULL)
				k->day = day;
			return k;
		}
	if (strcasecmp(name, "BODY") == 0 || strcasecmp(name, "TEXT") == 0) {
		k = key_new(p, (name[0] | 0x20) == 'b' ? IMAP_SK_BODY :
			    IMAP_SK_TEXT);
		if (k != NULL)
			set_value(k, a);
		return k;
	}
	if (strcasecmp(name, "KEYWORD") == 0 ||
	    strcasecmp(name, "UNKEYWORD") == 0)
		return parse_keyword(p, a, (name[0] | 0x20) == 'u');
	if (strcasecmp(name, "LARGER") == 0 ||
	    strcasecmp(name, "SMALLER") == 0) {
		uint64_t n;
		if (a->type != IMAP_ARG_ATOM || imap_parse_u64(a->str, &n) < 0) {
			parse_error(p, "Invalid number", a);
			return NULL;
		}
		k = key_new(p, (name[0] | 0x20) == 'l' ? IMAP_SK_LARGER :
			    IMAP_SK_SMALLER);
		if (k != NULL)
			k->number = n;
		return k;
	}
	*known = false;
	return NULL;
}

static bool takes_arg(const char *name)
{
	static const char *const names[] = {
		"BCC", "CC", "FROM", "SUBJECT", "TO", "BEFORE", "ON", "SINCE",
		"SENTBEFORE", "SENTON", "SENTSINCE", "BODY", "TEXT",
		"KEYWORD", "UNKEYWORD", "LARGER", "SMALLER",
	};
	for (size_t i = 0; i < N_ELEMS(names); i++)
		if (strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

/* HEADER field-name string */
static struct imap_search_key *parse_header(struct search_parser *p,
					    const struct imap_arg *args,
					    size_t argc, size_t *pos,
					    const struct imap_arg *ka)
{
	const struct imap_arg *fa, *a;
	struct imap_search_key *k;
	if ((fa = next_text(p, args, argc, pos, ka)) == NULL ||
	    (a = next_text(p, args, argc, pos, ka)) == NULL)
		return NULL;
	if (fa->type == IMAP_ARG_NIL || memchr(fa->str, ':', fa->len) != NULL) {
		parse_error(p, "Invalid header field name", fa);
		return NULL;
	}
	if ((k = key_new(p, IMAP_SK_HEADER)) == NULL)
		return NULL;
	k->name = xstrndup(fa->str, fa->len);
	set_value(k, a);
	return k;
}

/* A key with its arguments, from its name (an atom, args[*pos - 1]). */
static struct imap_search_key *parse_named(struct search_parser *p,
					   const struct imap_arg *args,
					   size_t argc, size_t *pos,
					   unsigned depth)
{
	const struct imap_arg *ka = &args[*pos - 1], *a;
	const char *name = ka->str;
	struct imap_search_key *k = NULL;
	bool known;

	k = parse_simple(p, name, &known);
	if (!known && takes_arg(name)) {
		if ((a = next_text(p, args, argc, pos, ka)) == NULL)
			return NULL;
		k = parse_with_arg(p, ka, a, &known);
	}
	if (known) {
		/* fall through to key_finish */
	} else if (strcasecmp(name, "HEADER") == 0) {
		k = parse_header(p, args, argc, pos, ka);
	} else if (strcasecmp(name, "UID") == 0) {
		if (*pos >= argc) {
			parse_error(p, "Missing argument to search key", ka);
			return NULL;
		}
		return parse_set(p, &args[(*pos)++], IMAP_SK_UID);
	} else if (strcasecmp(name, "NOT") == 0) {
		k = parse_operator(p, IMAP_SK_NOT, 1, args, argc, pos, depth);
	} else if (strcasecmp(name, "OR") == 0) {
		k = parse_operator(p, IMAP_SK_OR, 2, args, argc, pos, depth);
	} else {
		parse_error(p, "Unknown search key", ka);
		return NULL;
	}
	if (k != NULL)
		key_finish(k);
	return k;
}

static struct imap_search_key *parse_key(struct search_parser *p,
					 const struct imap_arg *args,
					 size_t argc, size_t *pos,
					 unsigned depth)
{
	if (depth >= IMAP_SEARCH_MAX_DEPTH) {
		parse_error(p, "Search keys nested too deeply", NULL);
		return NULL;
	}
	const struct imap_arg *a = &args[(*pos)++];
	if (a->type == IMAP_ARG_LIST)
		return parse_list(p, a, depth);
	if (a->type != IMAP_ARG_ATOM || a->len == 0) {
		parse_error(p, "Search key expected", a);
		return NULL;
	}
	if ((a->str[0] >= '0' && a->str[0] <= '9') || a->str[0] == '*')
		return parse_set(p, a, IMAP_SK_SEQSET);
	return parse_named(p, args, argc, pos, depth);
}

enum imap_search_parse_result imap_search_parse(const struct imap_arg *args,
						size_t argc,
						struct imap_search_key **key,
						struct str *err)
{
	struct search_parser p = { 0, err };
	str_clear(err);
	*key = NULL;
	struct imap_search_key *k = key_new(&p, IMAP_SK_AND);
	if (parse_and(&p, k, args, argc, 0) < 0) {
		imap_search_key_free(k);
		return IMAP_SEARCH_PARSE_BAD;
	}
	if (k->n_sub == 1) {	/* one key: no AND around it */
		struct imap_search_key *only = k->sub[0];
		k->n_sub = 0;
		imap_search_key_free(k);
		k = only;
	}
	*key = k;
	return IMAP_SEARCH_PARSE_OK;
}

enum imap_search_parse_result imap_search_parse_command(
	const struct imap_arg *args, size_t argc,
	struct imap_search_key **key, struct str *err)
{
	*key = NULL;
	str_clear(err);
	if (argc > 0 && args[0].type == IMAP_ARG_ATOM &&
	    strcasecmp(args[0].str, "CHARSET") == 0) {
		if (argc < 2 || args[1].type == IMAP_ARG_LIST ||
		    args[1].type == IMAP_ARG_NIL || args[1].str == NULL) {
			str_append(err, "CHARSET needs a charset name");
			return IMAP_SEARCH_PARSE_BAD;
		}
		if (strcasecmp(args[1].str, "UTF-8") != 0 &&
		    strcasecmp(args[1].str, "US-ASCII") != 0) {
			str_append(err, "Unsupported charset");
			return IMAP_SEARCH_PARSE_BADCHARSET;
		}
		args += 2;
		argc -= 2;
	}
	return imap_search_parse(args, argc, key, err);
}

/* ---------------------------------------------------------------- dates */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned mp = m > 2 ? m - 3 : m + 9;
	unsigned doy = (153 * mp + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* The local calendar date of t, as that day's midnight UTC (the form
 * imap_parse_date gives). */
static int64_t local_day(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (localtime_r(&tt, &tm) == NULL)
		return t - (((t % 86400) + 86400) % 86400);
	return days_from_civil((int64_t)tm.tm_year + 1900,
			       (unsigned)tm.tm_mon + 1,
			       (unsigned)tm.tm_mday) * 86400;
}

struct date_scan {
	const char *s, *e;
};

/* Blanks, line breaks and (nested, bounded) comments. */
static void skip_cfws(struct date_scan *d)
{
	while (d->s < d->e) {
		char c = *d->s;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			d->s++;
		} else if (c == '(') {
			int level = 0;
			while (d->s < d->e) {
				c = *d->s++;
				if (c == '\\' && d->s < d->e)
					d->s++;
				else if (c == '(' && ++level > 20)
					return;
				else if (c == ')' && --level == 0)
					break;
			}
		} else {
			return;
		}
	}
}

static bool scan_number(struct date_scan *d, unsigned max_digits,
			unsigned *n, unsigned *digits)
{
	*n = 0;
	*digits = 0;
	while (d->s < d->e && *d->s >= '0' && *d->s <= '9') {
		if (++*digits > max_digits)
			return false;
		*n = *n * 10 + (unsigned)(*d->s++ - '0');
	}
	return *digits > 0;
}

static size_t scan_word(struct date_scan *d, char *buf, size_t size)
{
	size_t n = 0;
	while (d->s < d->e &&
	       ((*d->s >= 'a' && *d->s <= 'z') || (*d->s >= 'A' && *d->s <= 'Z'))) {
		if (n + 1 < size)
			buf[n++] = (char)ascii_lower((unsigned char)*d->s);
		d->s++;
	}
	buf[n] = '\0';
	return n;
}

static unsigned month_of(const char *w)
{
	static const char names[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	if (strlen(w) < 3)
		return 0;
	for (unsigned i = 0; i < 12; i++)
		if (strncmp(w, names + 3 * i, 3) == 0)
			return i + 1;
	return 0;
}

/* An alphabetic zone (RFC 5322 4.3): minutes east of UTC.  Military and
 * unknown zones count as +0000, as 4.3 says they should. */
static int zone_of(const char *w)
{
	static const struct {
		const char *name;
		int minutes;
	} zones[] = {
		{ "est", -300 }, { "edt", -240 }, { "cst", -360 },
		{ "cdt", -300 }, { "mst", -420 }, { "mdt", -360 },
		{ "pst", -480 }, { "pdt", -420 },
	};
	for (size_t i = 0; i < N_ELEMS(zones); i++)
		if (strcmp(w, zones[i].name) == 0)
			return zones[i].minutes;
	return 0;
}

/* "hh:mm[:ss]" */
static bool scan_time(struct date_scan *d, unsigned *h, unsigned *mi,
		      unsigned *sec)
{
	unsigned digits;
	*sec = 0;
	if (!scan_number(d, 2, h, &digits) || d->s >= d->e || *d->s != ':')
		return false;
	d->s++;
	if (!scan_number(d, 2, mi, &digits))
		return false;
	if (d->s < d->e && *d->s == ':') {
		d->s++;
		if (!scan_number(d, 2, sec, &digits))
			return false;
	}
	if (*h > 23 || *mi > 59 || *sec > 60)
		return false;
	if (*sec == 60)
		*sec = 59;	/* a leap second is still that day */
	return true;
}

static bool scan_zone(struct date_scan *d, int *zone)
{
	char w[16];
	*zone = 0;
	skip_cfws(d);
	if (d->s >= d->e)
		return true;	/* no zone: taken as UTC */
	if (*d->s == '+' || *d->s == '-') {
		int sign = *d->s++ == '-' ? -1 : 1;
		unsigned n, digits;
		if (!scan_number(d, 4, &n, &digits) || digits != 4 ||
		    n % 100 > 59)
			return false;
		*zone = sign * (int)(n / 100 * 60 + n % 100);
		return true;
	}
	if (scan_word(d, w, sizeof w) > 0)
		*zone = zone_of(w);
	return true;
}

static int64_t full_year(unsigned y, unsigned digits)
{
	if (digits == 2)	/* RFC 5322 4.3 */
		return y < 50 ? 2000 + y : 1900 + y;
	if (digits == 3)
		return 1900 + y;
	return y;
}

int imap_search_parse_mail_date(const char *s, size_t len, int64_t *when,
				int *zone)
{
	struct date_scan d = { s, s + len };
	char w[16];
	unsigned day, mon = 0, year, ydigits, h = 0, mi = 0, sec = 0, digits;
	bool asctime_form = false;

	skip_cfws(&d);
	if (scan_word(&d, w, sizeof w) > 0) {	/* day of week, or month */
		skip_cfws(&d);
		if (d.s < d.e && *d.s == ',')
			d.s++;
		skip_cfws(&d);
		if (scan_word(&d, w, sizeof w) > 0) {
			/* "Mon Jan  2 10:00:00 2023" (asctime, seen in
			 * the wild) */
			if ((mon = month_of(w)) == 0)
				return -1;
			asctime_form = true;
			skip_cfws(&d);
		}
	}
	if (!scan_number(&d, 2, &day, &digits) || day < 1 || day > 31)
		return -1;
	skip_cfws(&d);
	if (!asctime_form) {
		if (d.s < d.e && *d.s == '-')
			d.s++;
		skip_cfws(&d);
		if (scan_word(&d, w, sizeof w) == 0 || (mon = month_of(w)) == 0)
			return -1;
		skip_cfws(&d);
		if (d.s < d.e && *d.s == '-')
			d.s++;
		skip_cfws(&d);
		if (!scan_number(&d, 4, &year, &ydigits) || ydigits < 2)
			return -1;
		skip_cfws(&d);
		if (d.s < d.e && *d.s >= '0' && *d.s <= '9' &&
		    !scan_time(&d, &h, &mi, &sec))
			return -1;
	} else {
		if (!scan_time(&d, &h, &mi, &sec))
			return -1;
		skip_cfws(&d);
		if (!scan_number(&d, 4, &year, &ydigits) || ydigits < 2)
			return -1;
	}
	if (!scan_zone(&d, zone))
		return -1;
	int64_t y = full_year(year, ydigits);
	if (y < 1)
		return -1;
	*when = days_from_civil(y, mon, day) * 86400 + h * 3600 + mi * 60 +
		sec - (int64_t)*zone * 60;
	return 0;
}

/* ----------------------------------------------------------- evaluation */

static void resolve_keywords(struct imap_search_ctx *ctx,
			     struct imap_search_key *k)
{
	for (size_t i = 0; i < k->n_sub; i++)
		resolve_keywords(ctx, k->sub[i]);
	if (k->op != IMAP_SK_KEYWORD && k->op != IMAP_SK_UNKEYWORD)
		return;
	k->keyword = -1;
	for (unsigned i = 0; i < ctx->src->n_keywords && i < 32; i++)
		if (ctx->src->keywords[i] != NULL &&
		    strcasecmp(ctx->src->keywords[i], k->name) == 0) {
			k->keyword = (int)i;
			break;
		}
}

void imap_search_init(struct imap_search_ctx *ctx,
		      const struct imap_search_source *src,
		      struct imap_search_key *key)
{
	memset(ctx, 0, sizeof *ctx);
	ctx->src = src;
	ctx->key = key;
	ctx->max_uid = src->count > 0 ? src->msgs[src->count - 1].uid : 0;
	resolve_keywords(ctx, key);
}

void imap_search_deinit(struct imap_search_ctx *ctx)
{
	str_free(&ctx->hdr);
	str_free(&ctx->body);
	str_free(&ctx->tmp);
	free(ctx->fields);
	free(ctx->segs);
	memset(ctx, 0, sizeof *ctx);
}

/*
 * Case-insensitive search for a 7-bit needle (lower-cased already):
 * memchr finds the candidates for its first octet in either case.  A
 * 7-bit needle matches the same octets in any UTF-8 or 8-bit text.
 */
static bool ascii_rest_equal(const char *h, const char *n, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (ascii_lower((unsigned char)h[i]) != (unsigned char)n[i])
			return false;
	return true;
}

static bool ascii_icase_find(const char *h, size_t hlen, const char *n,
			     size_t nlen)
{
	if (nlen > hlen)
		return false;
	unsigned char lo = (unsigned char)n[0];
	unsigned char up = lo >= 'a' && lo <= 'z' ? (unsigned char)(lo - 32) : lo;
	const char *end = h + (hlen - nlen) + 1;	/* last start + 1 */
	if (lo == up) {
		for (const char *p = h; p < end; p++) {
			p = memchr(p, lo, (size_t)(end - p));
			if (p == NULL)
				return false;
			if (ascii_rest_equal(p + 1, n + 1, nlen - 1))
				return true;
		}
		return false;
	}
	const char *pl = memchr(h, lo, (size_t)(end - h));
	const char *pu = memchr(h, up, (size_t)(end - h));
	while (pl != NULL || pu != NULL) {
		const char *p = pu == NULL || (pl != NULL && pl < pu) ? pl : pu;
		if (ascii_rest_equal(p + 1, n + 1, nlen - 1))
			return true;
		if (p == pl)
			pl = memchr(p + 1, lo, (size_t)(end - (p + 1)));
		else
			pu = memchr(p + 1, up, (size_t)(end - (p + 1)));
	}
	return false;
}

static bool text_contains(const char *h, size_t hlen,
			  const struct imap_search_key *k)
{
	if (k->value_len == 0)
		return true;
	if (hlen == 0)
		return false;
	if (k->value_ascii)
		return ascii_icase_find(h, hlen, k->value, k->value_len);
	return mime_utf8_contains(h, hlen, k->value, k->value_len);
}

static bool load_idate(struct imap_search_ctx *ctx)
{
	if (!ctx->have_idate) {
		int64_t when;
		ctx->have_idate = true;
		ctx->idate_ok = ctx->src->internaldate(ctx->src->ctx, ctx->idx,
						       &when) == 0;
		if (ctx->idate_ok)
			ctx->idate_day = local_day(when);
	}
	if (!ctx->idate_ok)
		ctx->unavailable = true;
	return ctx->idate_ok;
}

static bool load_header(struct imap_search_ctx *ctx)
{
	if (ctx->text != NULL)
		return true;	/* the header, or the whole message */
	if (ctx->tried_header || ctx->tried_whole) {
		ctx->unavailable = true;
		return false;
	}
	ctx->tried_header = true;
	size_t len;
	const char *h = ctx->src->header(ctx->src->ctx, ctx->idx, &len);
	if (h == NULL) {
		ctx->unavailable = true;
		return false;
	}
	ctx->text = h;
	ctx->text_len = ctx->header_len = len;
	return true;
}

static bool load_whole(struct imap_search_ctx *ctx)
{
	if (ctx->whole)
		return true;
	if (ctx->tried_whole) {
		ctx->unavailable = true;
		return false;
	}
	ctx->tried_whole = true;
	size_t len, hlen;
	const struct mime_part *mime;
	const char *t = ctx->src->message(ctx->src->ctx, ctx->idx, &len, &hlen,
					  &mime);
	if (t == NULL || mime == NULL) {
		ctx->unavailable = true;
		return false;
	}
	/* field offsets stay valid: they point into ctx->hdr */
	ctx->text = t;
	ctx->text_len = len;
	ctx->header_len = hlen <= len ? hlen : len;
	ctx->mime = mime;
	ctx->whole = true;
	return true;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A raw field value: unfolded, trimmed, RFC 2047 words decoded, appended
 * to ctx->hdr. */
static void append_field_value(struct imap_search_ctx *ctx, const char *v,
			       size_t len)
{
	while (len > 0 && is_blank(*v)) {
		v++;
		len--;
	}
	while (len > 0 && is_blank(v[len - 1]))
		len--;
	if (memchr(v, '\n', len) != NULL || memchr(v, '\r', len) != NULL) {
		str_clear(&ctx->tmp);
		for (size_t i = 0; i < len; i++)
			if (v[i] != '\r' && v[i] != '\n')
				str_append_c(&ctx->tmp, v[i]);
		v = str_c(&ctx->tmp);
		len = ctx->tmp.len;
	}
	if (len > 1 && memmem(v, len, "=?", 2) != NULL)
		rfc2047_decode(v, len, &ctx->hdr);
	else
		str_append_n(&ctx->hdr, v, len);
}

static bool load_fields(struct imap_search_ctx *ctx)
{
	if (ctx->have_fields)
		return true;
	if (!load_header(ctx))
		return false;
	ctx->have_fields = true;
	str_clear(&ctx->hdr);
	ctx->n_fields = 0;
	size_t pos = 0, name_len, field_len;
	const char *name, *field;
	while (ctx->n_fields < SEARCH_MAX_FIELDS &&
	       mime_header_next(ctx->text, ctx->header_len, &pos, &name,
				&name_len, &field, &field_len)) {
		const char *colon = memchr(field, ':', field_len);
		if (colon == NULL || name_len == 0)
			continue;
		if (ctx->n_fields == ctx->fields_cap) {
			ctx->fields_cap = ctx->fields_cap ? ctx->fields_cap * 2
							  : 32;
			ctx->fields = xrealloc(ctx->fields, ctx->fields_cap *
					       sizeof *ctx->fields);
		}
		struct imap_search_field *f = &ctx->fields[ctx->n_fields++];
		f->name = ctx->hdr.len;
		f->name_len = name_len;
		str_append_n(&ctx->hdr, name, name_len);
		str_append_n(&ctx->hdr, ": ", 2);
		f->value = ctx->hdr.len;
		colon++;
		append_field_value(ctx, colon,
				   field_len - (size_t)(colon - field));
		f->value_len = ctx->hdr.len - f->value;
		str_append_c(&ctx->hdr, '\n');
	}
	return true;
}

static bool header_match(struct imap_search_ctx *ctx,
			 const struct imap_search_key *k)
{
	if (!load_fields(ctx))
		return false;
	size_t nlen = strlen(k->name);
	for (size_t i = 0; i < ctx->n_fields; i++) {
		const struct imap_search_field *f = &ctx->fields[i];
		if (f->name_len != nlen ||
		    strncasecmp(ctx->hdr.data + f->name, k->name, nlen) != 0)
			continue;
		if (text_contains(ctx->hdr.data + f->value, f->value_len, k))
			return true;
	}
	return false;
}

/* The Date: field's day in its own zone, else INTERNALDATE's local day. */
static bool load_sent(struct imap_search_ctx *ctx)
{
	if (ctx->have_sent)
		return ctx->sent_ok;
	ctx->have_sent = true;
	if (!load_fields(ctx))
		return false;
	for (size_t i = 0; i < ctx->n_fields; i++) {
		const struct imap_search_field *f = &ctx->fields[i];
		int64_t when;
		int zone;
		if (f->name_len != 4 ||
		    strncasecmp(ctx->hdr.data + f->name, "Date", 4) != 0)
			continue;
		if (imap_search_parse_mail_date(ctx->hdr.data + f->value,
						f->value_len, &when,
						&zone) < 0)
			break;
		int64_t local = when + (int64_t)zone * 60;
		ctx->sent_day = (local >= 0 ? local / 86400 :
				 -((-local + 86399) / 86400)) * 86400;
		ctx->sent_ok = true;
		return true;
	}
	if (!load_idate(ctx))
		return false;
	ctx->sent_day = ctx->idate_day;
	ctx->sent_ok = true;
	return true;
}

static bool identity_encoding(const char *enc)
{
	return enc == NULL || (strcasecmp(enc, "base64") != 0 &&
			       strcasecmp(enc, "quoted-printable") != 0);
}

static bool utf8_charset(const char *cs)
{
	return cs == NULL || *cs == '\0' || strcasecmp(cs, "utf-8") == 0 ||
	       strcasecmp(cs, "us-ascii") == 0 || strcasecmp(cs, "utf8") == 0;
}

static void add_seg(struct imap_search_ctx *ctx, size_t off, size_t len,
		    bool decoded)
{
	if (len == 0)
		return;
	if (ctx->n_segs == ctx->segs_cap) {
		ctx->segs_cap = ctx->segs_cap ? ctx->segs_cap * 2 : 16;
		ctx->segs = xrealloc(ctx->segs,
				     ctx->segs_cap * sizeof *ctx->segs);
	}
	ctx->segs[ctx->n_segs++] = (struct imap_search_seg){ off, len,
							     decoded };
}

/* Text [off, off+len) of the message in the given encoding and charset:
 * searched where it is when it is UTF-8 already, else decoded. */
static void add_text(struct imap_search_ctx *ctx, size_t off, size_t len,
		     const char *enc, const char *charset)
{
	if (len == 0)
		return;
	if (identity_encoding(enc) && utf8_charset(charset)) {
		add_seg(ctx, off, len, false);
		return;
	}
	const char *data = ctx->text + off;
	if (!identity_encoding(enc)) {
		str_clear(&ctx->tmp);
		mime_transfer_decode(strcasecmp(enc, "base64") == 0 ?
				     "base64" : "quoted-printable",
				     data, len, &ctx->tmp);
		data = str_c(&ctx->tmp);
		len = ctx->tmp.len;
	}
	size_t start = ctx->body.len;
	if (utf8_charset(charset))
		str_append_n(&ctx->body, data, len);
	else
		mime_charset_to_utf8(charset, data, len, &ctx->body);
	add_seg(ctx, start, ctx->body.len - start, true);
}

static void add_header_block(struct imap_search_ctx *ctx, size_t off,
			     size_t len)
{
	const char *h = ctx->text + off;
	if (len > 1 && memmem(h, len, "=?", 2) != NULL) {
		size_t start = ctx->body.len;
		rfc2047_decode(h, len, &ctx->body);
		add_seg(ctx, start, ctx->body.len - start, true);
	} else {
		add_seg(ctx, off, len, false);
	}
}

/* Every text/ * and message/ * leaf under p; an encapsulated message's
 * header is text of its parent's body too. */
static void collect_parts(struct imap_search_ctx *ctx,
			  const struct mime_part *p, unsigned depth)
{
	if (depth > MIME_MAX_DEPTH + 2)
		return;
	if (p->end > ctx->text_len || p->body > p->end)
		return;		/* not this text's tree: be safe */
	const char *type = p->type != NULL ? p->type : "text";
	bool message = strcasecmp(type, "message") == 0;
	if (p->n_children > 0) {
		for (size_t i = 0; i < p->n_children; i++) {
			const struct mime_part *c = &p->children[i];
			if (message && c->header <= c->body &&
			    c->body <= ctx->text_len)
				add_header_block(ctx, c->header,
						 c->body - c->header);
			collect_parts(ctx, c, depth + 1);
		}
		return;
	}
	if (!message && strcasecmp(type, "text") != 0)
		return;		/* attachments are not text */
	add_text(ctx, p->body, p->end - p->body, p->encoding,
		 message ? NULL : mime_param(p, "charset"));
}

static bool load_body(struct imap_search_ctx *ctx)
{
	if (ctx->have_body)
		return true;
	if (!load_whole(ctx))
		return false;
	ctx->have_body = true;
	str_clear(&ctx->body);
	ctx->n_segs = 0;
	collect_parts(ctx, ctx->mime, 0);
	return true;
}

static bool body_match(struct imap_search_ctx *ctx,
		       const struct imap_search_key *k)
{
	if (!load_body(ctx))
		return false;
	if (k->value_len == 0)
		return true;
	for (size_t i = 0; i < ctx->n_segs; i++) {
		const struct imap_search_seg *g = &ctx->segs[i];
		const char *base = g->decoded ? ctx->body.data : ctx->text;
		if (text_contains(base + g->off, g->len, k))
			return true;
	}
	return false;
}

static bool text_match(struct imap_search_ctx *ctx,
		       const struct imap_search_key *k)
{
	/* the body is needed unless the header matches, which is rare:
	 * read the message once rather than the header and then all */
	if (!load_whole(ctx) || !load_fields(ctx))
		return false;
	if (text_contains(str_c(&ctx->hdr), ctx->hdr.len, k))
		return true;
	return body_match(ctx, k);
}

static bool eval(struct imap_search_ctx *ctx, const struct imap_search_key *k)
{
	const struct imap_msg *m = ctx->msg;
	switch (k->op) {
	case IMAP_SK_AND:
		for (size_t i = 0; i < k->n_sub; i++)
			if (!eval(ctx, k->sub[i]))
				return false;
		return true;
	case IMAP_SK_OR:
		for (size_t i = 0; i < k->n_sub; i++)
			if (eval(ctx, k->sub[i]))
				return true;
		return false;
	case IMAP_SK_NOT:
		return !eval(ctx, k->sub[0]);
	case IMAP_SK_ALL:
		return true;
	case IMAP_SK_FLAGS:
		return (m->flags & k->flags_set) == k->flags_set &&
		       (m->flags & k->flags_clear) == 0;
	case IMAP_SK_KEYWORD:
		return k->keyword >= 0 && ((m->keywords >> k->keyword) & 1);
	case IMAP_SK_UNKEYWORD:
		return k->keyword < 0 || !((m->keywords >> k->keyword) & 1);
	case IMAP_SK_LARGER:
		return m->size > k->number;
	case IMAP_SK_SMALLER:
		return m->size < k->number;
	case IMAP_SK_SEQSET:
		return imap_seqset_contains(&k->set, (uint32_t)ctx->idx + 1,
					    (uint32_t)ctx->src->count);
	case IMAP_SK_UID:
		return imap_seqset_contains(&k->set, m->uid, ctx->max_uid);
	case IMAP_SK_BEFORE:
		return load_idate(ctx) && ctx->idate_day < k->day;
	case IMAP_SK_ON:
		return load_idate(ctx) && ctx->idate_day == k->day;
	case IMAP_SK_SINCE:
		return load_idate(ctx) && ctx->idate_day >= k->day;
	case IMAP_SK_SENTBEFORE:
		return load_sent(ctx) && ctx->sent_day < k->day;
	case IMAP_SK_SENTON:
		return load_sent(ctx) && ctx->sent_day == k->day;
	case IMAP_SK_SENTSINCE:
		return load_sent(ctx) && ctx->sent_day >= k->day;
	case IMAP_SK_HEADER:
		return header_match(ctx, k);
	case IMAP_SK_BODY:
		return body_match(ctx, k);
	case IMAP_SK_TEXT:
		return text_match(ctx, k);
	}
	return false;
}

bool imap_search_match(struct imap_search_ctx *ctx, size_t idx)
{
	if (idx >= ctx->src->count)
		return false;
	ctx->idx = idx;
	ctx->msg = &ctx->src->msgs[idx];
	ctx->unavailable = false;
	ctx->have_idate = ctx->idate_ok = false;
	ctx->have_sent = ctx->sent_ok = false;
	ctx->text = NULL;
	ctx->text_len = ctx->header_len = 0;
	ctx->mime = NULL;
	ctx->tried_header = ctx->tried_whole = ctx->whole = false;
	ctx->have_fields = ctx->have_body = false;
	bool match = eval(ctx, ctx->key);
	/* content that is not there (a message gone from disk) matches
	 * nothing, NOT included */
	return match && !ctx->unavailable;
}

/* -------------------------------------------------------------- command */

static bool sel_gone(const struct imap_session *s, size_t idx)
{
	return (s->sel->msgs[idx].state & IMAP_MSG_GONE) != 0;
}

static int sel_internaldate(void *ctx, size_t idx, int64_t *when)
{
	struct imap_session *s = ctx;
	if (sel_gone(s, idx))
		return -1;
	return imap_folder_msg_internaldate(s->sel, idx, when);
}

static const char *sel_header(void *ctx, size_t idx, size_t *len)
{
	struct imap_session *s = ctx;
	if (sel_gone(s, idx))
		return NULL;
	struct imap_message *m = imap_message_get(s, idx, true);
	if (m == NULL)
		return NULL;
	*len = m->whole ? imap_message_header_end(m) : m->text.len;
	return str_c(&m->text);
}

static const char *sel_message(void *ctx, size_t idx, size_t *len,
			       size_t *header_len,
			       const struct mime_part **mime)
{
	struct imap_session *s = ctx;
	if (sel_gone(s, idx))
		return NULL;
	struct imap_message *m = imap_message_get(s, idx, false);
	if (m == NULL)
		return NULL;
	*mime = imap_message_mime(m);
	*len = m->text.len;
	*header_len = imap_message_header_end(m);
	return str_c(&m->text);
}

/* Output in chunks: "* SEARCH" and " n" for each match. */
struct search_out {
	struct stream *io;
	size_t len;
	char buf[4096];
};

static void out_number(struct search_out *o, uint32_t n)
{
	char digits[12];
	size_t d = 0;
	do {
		digits[d++] = (char)('0' + n % 10);
		n /= 10;
	} while (n > 0);
	if (o->len + d + 1 > sizeof o->buf) {
		stream_write(o->io, o->buf, o->len);
		o->len = 0;
	}
	o->buf[o->len++] = ' ';
	while (d > 0)
		o->buf[o->len++] = digits[--d];
}

void imap_cmd_search(struct imap_session *s, struct imap_command *c)
{
	struct str err = STR_INIT;
	struct imap_search_key *key;

	switch (imap_search_parse_command(c->args, c->argc, &key, &err)) {
	case IMAP_SEARCH_PARSE_BAD:
		imap_bad(s, c, "%s", str_c(&err));
		str_free(&err);
		return;
	case IMAP_SEARCH_PARSE_BADCHARSET:
		imap_no(s, c, "[BADCHARSET (UTF-8 US-ASCII)] %s", str_c(&err));
		str_free(&err);
		return;
	case IMAP_SEARCH_PARSE_OK:
		break;
	}
	str_free(&err);
	if (s->sel == NULL) {	/* the session checks; be safe anyway */
		imap_search_key_free(key);
		imap_bad(s, c, "No mailbox selected");
		return;
	}

	struct imap_folder *f = s->sel;
	struct imap_search_source src = {
		.msgs = f->msgs,
		.count = f->count,
		.keywords = f->keywords,
		.n_keywords = f->n_keywords,
		.ctx = s,
		.internaldate = sel_internaldate,
		.header = sel_header,
		.message = sel_message,
	};
	struct imap_search_ctx ctx;
	struct search_out out;
	out.io = &s->io;
	out.len = 0;
	memcpy(out.buf, "* SEARCH", 8);
	out.len = 8;

	imap_search_init(&ctx, &src, key);
	for (size_t i = 0; i < src.count; i++)
		if (imap_search_match(&ctx, i))
			out_number(&out, c->uid ? f->msgs[i].uid
						: (uint32_t)(i + 1));
	imap_search_deinit(&ctx);
	imap_search_key_free(key);

	stream_write(&s->io, out.buf, out.len);
	stream_write(&s->io, "\r\n", 2);
	imap_ok(s, c, "Search completed");
}
