/*
 * imap_seqset: RFC 3501 sequence sets: parsing ("1,3:5,7:*"), membership
 * with '*' resolved at use, normalising into sorted disjoint ranges, and
 * formatting for COPYUID/APPENDUID.
 *
 * Ranges are kept in 64 bits so '*' (IMAP_SEQ_STAR, UINT64_MAX) can never
 * be confused with an explicit 4294967295: "UID FETCH 4294967295" names a
 * UID that does not exist, not the last message.
 */
#include "imap_seqset.h"

#include <stdlib.h>
#include <string.h>

void imap_seqset_free(struct imap_seqset *set)
{
	free(set->r);
	memset(set, 0, sizeof *set);
}

static void seqset_add(struct imap_seqset *set, uint64_t lo, uint64_t hi)
{
	if (set->n == set->cap) {
		set->cap = set->cap ? set->cap * 2 : 8;
		set->r = xrealloc(set->r, set->cap * sizeof *set->r);
	}
	set->r[set->n].lo = lo;
	set->r[set->n].hi = hi;
	set->n++;
}

/* seq-number = nz-number / "*"; *s advanced past it. */
static int parse_seq_number(const char **s, uint64_t *out)
{
	const char *p = *s;
	if (*p == '*') {
		*out = IMAP_SEQ_STAR;
		*s = p + 1;
		return 0;
	}
	uint64_t v = 0;
	const char *start = p;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	if (p == start || v == 0)
		return -1;
	*out = v;
	*s = p;
	return 0;
}

int imap_seqset_parse(const char *text, struct imap_seqset *set)
{
	memset(set, 0, sizeof *set);
	const char *p = text;
	for (;;) {
		uint64_t lo, hi;
		if (parse_seq_number(&p, &lo) < 0)
			goto bad;
		hi = lo;
		if (*p == ':') {
			p++;
			if (parse_seq_number(&p, &hi) < 0)
				goto bad;
		}
		if (set->n == IMAP_SEQSET_MAX_RANGES)
			goto bad;
		seqset_add(set, lo, hi);
		if (*p == '\0')
			return 0;
		if (*p != ',')
			goto bad;
		p++;
	}
bad:
	imap_seqset_free(set);
	return -1;
}

/* A range with '*' resolved, lo <= hi. */
static void resolve(const struct imap_seq_range *r, uint64_t star,
		    uint64_t *lo, uint64_t *hi)
{
	uint64_t a = r->lo == IMAP_SEQ_STAR ? star : r->lo;
	uint64_t b = r->hi == IMAP_SEQ_STAR ? star : r->hi;
	*lo = a < b ? a : b;
	*hi = a < b ? b : a;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n,
			  uint32_t star)
{
	if (star == 0 || n == 0)
		return false;
	for (size_t i = 0; i < set->n; i++) {
		uint64_t lo, hi;
		resolve(&set->r[i], star, &lo, &hi);
		if (lo <= n && n <= hi)
			return true;
	}
	return false;
}

bool imap_seqset_beyond(const struct imap_seqset *set, uint32_t star)
{
	for (size_t i = 0; i < set->n; i++) {
		uint64_t lo, hi;
		resolve(&set->r[i], star, &lo, &hi);
		if (hi > star)
			return true;
	}
	return false;
}

static int range_cmp(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return 0;
}

static void normalize(struct imap_seqset *set, uint64_t star)
{
	size_t n = 0;
	for (size_t i = 0; i < set->n; i++) {
		uint64_t lo, hi;
		resolve(&set->r[i], star, &lo, &hi);
		if (hi == 0)
			continue;	/* '*' of an empty mailbox */
		if (lo == 0)
			lo = 1;
		set->r[n].lo = lo;
		set->r[n].hi = hi;
		n++;
	}
	set->n = n;
	if (n == 0)
		return;
	qsort(set->r, n, sizeof *set->r, range_cmp);
	size_t out = 0;
	for (size_t i = 1; i < n; i++) {
		struct imap_seq_range *last = &set->r[out];
		/* overlapping or adjacent (careful: hi may be UINT64_MAX) */
		if (last->hi == UINT64_MAX || set->r[i].lo <= last->hi + 1) {
			if (set->r[i].hi > last->hi)
				last->hi = set->r[i].hi;
		} else {
			set->r[++out] = set->r[i];
		}
	}
	set->n = out + 1;
}

void imap_seqset_normalize(struct imap_seqset *set, uint32_t star)
{
	normalize(set, star);
}

static void format_number(struct str *out, uint64_t v)
{
	if (v == IMAP_SEQ_STAR)
		str_append_c(out, '*');
	else
		str_printf(out, "%llu", (unsigned long long)v);
}

static void format_range(struct str *out, uint64_t lo, uint64_t hi,
			 bool first)
{
	if (!first)
		str_append_c(out, ',');
	format_number(out, lo);
	if (hi != lo) {
		str_append_c(out, ':');
		format_number(out, hi);
	}
}

void imap_seqset_format(const struct imap_seqset *set, struct str *out)
{
	struct imap_seqset copy = { NULL, 0, 0 };
	if (set->n > 0) {
		copy.r = xmalloc(set->n * sizeof *copy.r);
		memcpy(copy.r, set->r, set->n * sizeof *copy.r);
		copy.n = copy.cap = set->n;
	}
	/* '*' kept as itself: resolving it to IMAP_SEQ_STAR prints it back */
	normalize(&copy, IMAP_SEQ_STAR);
	for (size_t i = 0; i < copy.n; i++)
		format_range(out, copy.r[i].lo, copy.r[i].hi, i == 0);
	imap_seqset_free(&copy);
}

void imap_seqset_format_list(const uint32_t *nums, size_t n, struct str *out)
{
	size_t i = 0;
	bool first = true;
	while (i < n) {
		uint32_t lo = nums[i], hi = nums[i];
		i++;
		/* extend over duplicates and consecutive numbers */
		while (i < n && (nums[i] == hi ||
				 (hi != UINT32_MAX && nums[i] == hi + 1))) {
			hi = nums[i];
			i++;
		}
		format_range(out, lo, hi, first);
		first = false;
	}
}
