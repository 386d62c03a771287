/*
 * fuzz_mailbox_name: what a client's mailbox name becomes on disk
 * (imap_mailbox_dirname), the way back (imap_mailbox_from_dirname) and
 * LIST pattern matching (imap_list_match).  The input is taken whole as a
 * mailbox name and as a directory name, and, split at its first NUL, as a
 * LIST pattern and a name.  Invariants checked:
 *   - a folder's directory is one path component of printable ASCII: it
 *     starts with "." (not ".."), has no '/', is at most 255 octets, and
 *     maps back to a name that maps to the same directory;
 *   - INBOX (1) is returned exactly for "INBOX" in any case;
 *   - a refused name leaves the output as it was and gives a reason;
 *   - a directory accepted by from_dirname maps back to itself;
 *   - imap_list_match agrees with a plain memoised reference matcher.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap.h"
#include "imap_mailbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define REF_MAX 300

static void check_dirname(const char *name)
{
	struct str dir = STR_INIT, err = STR_INIT, back = STR_INIT;
	str_append(&dir, "pre");
	int r = imap_mailbox_dirname(name, &dir, &err);
	CHECK(r >= -1 && r <= 1);
	if (r != 0) {
		CHECK(strcmp(str_c(&dir), "pre") == 0);
		CHECK(r == 1 ? strcasecmp(name, "INBOX") == 0 : err.len > 0);
		goto out;
	}
	const char *d = str_c(&dir) + 3;
	size_t n = strlen(d);
	CHECK(n == dir.len - 3);		/* no NUL inside */
	CHECK(n >= 2 && n <= IMAP_MAILBOX_DIRNAME_MAX);
	CHECK(d[0] == '.' && d[1] != '.');
	for (size_t i = 0; i < n; i++)
		CHECK(d[i] > 0x20 - 1 && d[i] < 0x7f && d[i] != '/');
	/* back to a name, which gives the same directory again */
	CHECK(imap_mailbox_from_dirname(d, &back) == 0);
	struct str again = STR_INIT;
	CHECK(imap_mailbox_dirname(str_c(&back), &again, &err) == 0);
	CHECK(strcmp(str_c(&again), d) == 0);
	str_free(&again);
out:
	str_free(&dir);
	str_free(&err);
	str_free(&back);
}

static void check_from_dirname(const char *dirname)
{
	struct str name = STR_INIT, dir = STR_INIT, err = STR_INIT;
	if (imap_mailbox_from_dirname(dirname, &name) == 0) {
		CHECK(imap_mailbox_dirname(str_c(&name), &dir, &err) == 0);
		CHECK(strcmp(str_c(&dir), dirname) == 0);
	} else {
		CHECK(name.len == 0);
	}
	str_free(&name);
	str_free(&dir);
	str_free(&err);
}

/* ---- the reference LIST matcher ---- */

static const char *ref_pat, *ref_name;
static size_t ref_plen, ref_nlen, ref_fold;
static signed char memo[REF_MAX + 1][REF_MAX + 1];

static bool is_letter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* The INBOX level compares letters in any case. */
static bool octet_eq(char p, char n, size_t j)
{
	if (j < ref_fold && is_letter(p) && is_letter(n))
		return (p | 0x20) == (n | 0x20);
	return p == n;
}

static bool ref_match(size_t i, size_t j)
{
	if (memo[i][j] >= 0)
		return memo[i][j];
	bool m;
	if (i == ref_plen) {
		m = j == ref_nlen;
	} else if (ref_pat[i] == '*' || ref_pat[i] == '%') {
		m = ref_match(i + 1, j);
		for (size_t k = j; !m && k < ref_nlen; k++) {
			if (ref_pat[i] == '%' && ref_name[k] == '/')
				break;
			m = ref_match(i + 1, k + 1);
		}
	} else {
		m = j < ref_nlen && octet_eq(ref_pat[i], ref_name[j], j) &&
		    ref_match(i + 1, j + 1);
	}
	memo[i][j] = m;
	return m;
}

static void check_list(const char *pat, const char *name)
{
	bool got = imap_list_match(pat, name);
	ref_pat = pat;
	ref_name = name;
	ref_plen = strlen(pat);
	ref_nlen = strlen(name);
	if (ref_plen > REF_MAX || ref_nlen > REF_MAX)
		return;
	ref_fold = strncasecmp(name, "INBOX", 5) == 0 &&
			   (name[5] == '\0' || name[5] == '/') ? 5 : 0;
	memset(memo, -1, sizeof memo);
	CHECK(got == ref_match(0, 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	size_t first = strlen(s);
	if (first == size) {
		check_dirname(s);
		check_from_dirname(s);
	} else {
		check_list(s, s + first + 1);
	}
	free(s);
	return 0;
}
