/*
 * fuzz_imap_seqset: RFC 3501 sequence sets (imap_seqset) on arbitrary
 * text: parse, contains, beyond, normalize, format and format_list.
 *
 * Invariants: parse accepts exactly the grammar (comma-separated n or
 * n:m, n = '*' or a non-zero number up to 2^32-1) and leaves the set
 * empty on failure; for several values of '*' (fixed ones and numbers
 * taken from the set), normalize keeps membership (contains) the same,
 * yields sorted, disjoint, non-adjacent ranges without '*' or 0, and is
 * idempotent; beyond agrees with the normalised maximum; format's text
 * parses back to a set with the same membership for every '*' (up to '*'
 * when the set has one: format merges "3:*,1:2" into "1:*") and is
 * canonical (formatting it again gives the same text); a list of
 * numbers formatted with format_list parses back to exactly those
 * numbers among the probes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap_seqset.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PROBES_MAX 64

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_imap_seqset: invariant broken: %s\n",
			what);
		abort();
	}
}

/* The grammar, written independently of the parser. */
static bool valid_number(const char *s, size_t len)
{
	if (len == 1 && s[0] == '*')
		return true;
	if (len == 0)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX)
			return false;
	}
	return v > 0;	/* leading zeros are tolerated ("007") */
}

static bool valid_set(const char *s)
{
	for (;;) {
		size_t len = strcspn(s, ",");
		const char *colon = memchr(s, ':', len);
		if (colon == NULL) {
			if (!valid_number(s, len))
				return false;
		} else if (!valid_number(s, (size_t)(colon - s)) ||
			   !valid_number(colon + 1, len - (size_t)(colon - s) - 1)) {
			return false;
		}
		if (s[len] == '\0')
			return true;
		s += len + 1;
	}
}

static struct imap_seqset copy_set(const struct imap_seqset *set)
{
	struct imap_seqset c = { NULL, 0, 0 };
	if (set->n > 0) {
		c.r = xmalloc(set->n * sizeof *c.r);
		memcpy(c.r, set->r, set->n * sizeof *c.r);
		c.n = c.cap = set->n;
	}
	return c;
}

static void add_probe(uint32_t *p, size_t *n, uint64_t v)
{
	if (*n < PROBES_MAX && v <= UINT32_MAX)
		p[(*n)++] = (uint32_t)v;
}

static void check_normalized(const struct imap_seqset *set)
{
	for (size_t i = 0; i < set->n; i++) {
		check(set->r[i].lo >= 1 && set->r[i].lo <= set->r[i].hi,
		      "normalised range order");
		check(set->r[i].hi <= UINT32_MAX, "normalised range has '*'");
		if (i > 0)
			check(set->r[i].lo > set->r[i - 1].hi + 1,
			      "normalised ranges overlap or touch");
	}
}

static void check_star(const struct imap_seqset *set, uint32_t star,
		       const uint32_t *probes, size_t n_probes)
{
	struct imap_seqset norm = copy_set(set);
	imap_seqset_normalize(&norm, star);
	check_normalized(&norm);

	struct imap_seqset twice = copy_set(&norm);
	imap_seqset_normalize(&twice, star);
	check(twice.n == norm.n && (norm.n == 0 ||
	      memcmp(twice.r, norm.r, norm.n * sizeof *norm.r) == 0),
	      "normalize not idempotent");
	imap_seqset_free(&twice);

	/* With star 0 (an empty mailbox) contains() matches nothing, by
	 * definition, whatever the ranges: nothing to compare. */
	if (star > 0) {
		for (size_t i = 0; i < n_probes; i++)
			check(imap_seqset_contains(set, probes[i], star) ==
			      imap_seqset_contains(&norm, probes[i], star),
			      "normalize changed membership");
	}
	bool beyond = norm.n > 0 && norm.r[norm.n - 1].hi > star;
	check(imap_seqset_beyond(set, star) == beyond,
	      "beyond disagrees with the normalised set");

	/* format_list of the members among the probes. */
	uint32_t members[PROBES_MAX];
	size_t n_members = 0;
	for (size_t i = 0; i < n_probes; i++) {
		if (probes[i] > 0 && imap_seqset_contains(&norm, probes[i], star))
			members[n_members++] = probes[i];
	}
	if (n_members > 0) {
		/* sorted, duplicates kept: format_list merges them */
		for (size_t i = 1; i < n_members; i++) {
			for (size_t j = i; j > 0 && members[j - 1] > members[j];
			     j--) {
				uint32_t t = members[j];
				members[j] = members[j - 1];
				members[j - 1] = t;
			}
		}
		struct str text = STR_INIT;
		imap_seqset_format_list(members, n_members, &text);
		struct imap_seqset back;
		check(imap_seqset_parse(str_c(&text), &back) == 0,
		      "format_list output refused");
		for (size_t i = 0; i < n_probes; i++) {
			bool want = false;
			for (size_t j = 0; j < n_members; j++)
				want = want || members[j] == probes[i];
			check(imap_seqset_contains(&back, probes[i],
						   UINT32_MAX) == want,
			      "format_list round trip");
		}
		imap_seqset_free(&back);
		str_free(&text);
	}
	imap_seqset_free(&norm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';

	struct imap_seqset set;
	int rc = imap_seqset_parse(text, &set);
	check((rc == 0) == valid_set(text), "parser and grammar disagree");
	if (rc < 0) {
		check(set.n == 0, "failed parse left ranges");
		free(text);
		return 0;
	}
	check(set.n > 0, "empty set parsed");

	/* Probes: edges, and the numbers of the set and their neighbours. */
	uint32_t probes[PROBES_MAX];
	size_t n_probes = 0;
	static const uint32_t fixed[] = { 0, 1, 2, 3, 7, 100, UINT32_MAX - 1,
					  UINT32_MAX };
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		add_probe(probes, &n_probes, fixed[i]);
	for (size_t i = 0; i < set.n && n_probes + 6 <= PROBES_MAX; i++) {
		uint64_t ends[2] = { set.r[i].lo, set.r[i].hi };
		for (int e = 0; e < 2; e++) {
			if (ends[e] == IMAP_SEQ_STAR)
				continue;
			add_probe(probes, &n_probes, ends[e] - 1);
			add_probe(probes, &n_probes, ends[e]);
			add_probe(probes, &n_probes, ends[e] + 1);
		}
	}

	/* '*' values: fixed ones and a few of the probes. */
	uint32_t stars[12] = { 0, 1, 5, 100, UINT32_MAX };
	size_t n_stars = 5;
	for (size_t i = 8; i < n_probes && n_stars < 12; i += 3)
		stars[n_stars++] = probes[i];
	for (size_t i = 0; i < n_stars; i++)
		check_star(&set, stars[i], probes, n_probes);

	/* format: its text parses to the same membership for every '*'. */
	struct str out = STR_INIT;
	imap_seqset_format(&set, &out);
	struct imap_seqset back;
	check(imap_seqset_parse(str_c(&out), &back) == 0, "format refused");
	bool has_star = false;
	for (size_t i = 0; i < set.n; i++)
		has_star = has_star || set.r[i].lo == IMAP_SEQ_STAR ||
			   set.r[i].hi == IMAP_SEQ_STAR;
	for (size_t s = 0; s < n_stars; s++) {
		/* Format merges with '*' unresolved ("3:*,1:2" is "1:*"),
		 * which only differs above '*', where nothing exists. */
		for (size_t i = 0; i < n_probes; i++) {
			if (has_star && probes[i] > stars[s])
				continue;
			check(imap_seqset_contains(&set, probes[i], stars[s]) ==
			      imap_seqset_contains(&back, probes[i], stars[s]),
			      "format changed membership");
		}
		check(has_star || imap_seqset_beyond(&set, stars[s]) ==
		      imap_seqset_beyond(&back, stars[s]),
		      "format changed beyond");
	}
	/* and formatting is canonical: once more gives the same text */
	struct str again = STR_INIT;
	imap_seqset_format(&back, &again);
	check(out.len == again.len && memcmp(out.data, again.data, out.len) == 0,
	      "format not canonical");
	imap_seqset_free(&back);
	str_free(&out);
	str_free(&again);
	imap_seqset_free(&set);
	free(text);
	return 0;
}
