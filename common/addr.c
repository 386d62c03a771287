/*
 * addr: RFC 5321 section 4.1.2 path and mailbox parsing, with the RFC 6531
 * SMTPUTF8 extension (UTF-8 in atext, qtextSMTP and domain U-labels).
 *
 * The parser is a cursor over text[0..len) that never looks past len; NUL
 * and other control octets are simply characters no production accepts.
 * Syntax is checked first, lengths afterwards, so a long address that is
 * also malformed is reported as malformed.  On any error *out is left
 * zeroed (nothing to free) and *consumed is 0.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ADDR_MAX_LABEL 63
/* Longest literal body we hand to inet_pton ("IPv6:" + a full address with
 * an embedded IPv4 part fits easily). */
#define ADDR_MAX_LITERAL 63

struct scan {
	const unsigned char *p;
	const unsigned char *end;
	bool utf8;	/* saw a well-formed non-ASCII sequence */
};

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 section 4, which
 * excludes overlongs, surrogates and code points above U+10FFFF), or 0. */
static size_t utf8_seq_len(const unsigned char *p, const unsigned char *end)
{
	size_t avail = (size_t)(end - p);
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;	/* ASCII, continuation, C0/C1 overlong, F5+ */

	/* The second octet carries the overlong/surrogate/range limits. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;

	if (avail < n)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return n;
}

/* Step over one UTF8-non-ascii character; the caller saw an octet >= 0x80. */
static enum addr_error scan_utf8(struct scan *s)
{
	size_t n = utf8_seq_len(s->p, s->end);

	if (n == 0)
		return ADDR_BAD_UTF8;
	s->p += n;
	s->utf8 = true;
	return ADDR_OK;
}

/* RFC 5322 atext, ASCII part. */
static bool is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_let_dig(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9');
}

/* Dot-string = Atom *("." Atom); stops at the first octet that cannot
 * continue it and leaves that to the caller. */
static enum addr_error scan_dot_string(struct scan *s)
{
	for (;;) {
		const unsigned char *atom = s->p;

		while (s->p < s->end) {
			if (is_atext(*s->p)) {
				s->p++;
			} else if (*s->p >= 0x80) {
				enum addr_error e = scan_utf8(s);
				if (e != ADDR_OK)
					return e;
			} else {
				break;
			}
		}
		if (s->p == atom)
			return ADDR_SYNTAX;	/* empty atom: "..", leading or trailing "." */
		if (s->p < s->end && *s->p == '.') {
			s->p++;
			continue;
		}
		return ADDR_OK;
	}
}

/* Quoted-string at s->p (which is '"'); the unquoted text goes to out. */
static enum addr_error scan_quoted(struct scan *s, struct str *out)
{
	s->p++;
	while (s->p < s->end) {
		unsigned char c = *s->p;

		if (c == '"') {
			s->p++;
			return ADDR_OK;
		}
		if (c == '\\') {
			/* quoted-pairSMTP = %d92 %d32-126 */
			if (s->end - s->p < 2 || s->p[1] < 32 || s->p[1] > 126)
				return ADDR_SYNTAX;
			str_append_c(out, (char)s->p[1]);
			s->p += 2;
		} else if (c >= 0x80) {
			const unsigned char *start = s->p;
			enum addr_error e = scan_utf8(s);
			if (e != ADDR_OK)
				return e;
			str_append_n(out, start, (size_t)(s->p - start));
		} else if (c >= 32 && c <= 126) {
			/* qtextSMTP: '"' and '\\' were taken above */
			str_append_c(out, (char)c);
			s->p++;
		} else {
			return ADDR_SYNTAX;
		}
	}
	return ADDR_SYNTAX;	/* no closing quote */
}

/* sub-domain: Let-dig [Ldh-str], or a U-label.  The 63-octet limit is
 * applied to the label as written, U-labels included. */
static enum addr_error scan_label(struct scan *s)
{
	const unsigned char *start = s->p;

	while (s->p < s->end) {
		if (is_let_dig(*s->p) || *s->p == '-') {
			s->p++;
		} else if (*s->p >= 0x80) {
			enum addr_error e = scan_utf8(s);
			if (e != ADDR_OK)
				return e;
		} else {
			break;
		}
	}
	if (s->p == start || s->p - start > ADDR_MAX_LABEL)
		return ADDR_SYNTAX;
	if (*start == '-' || s->p[-1] == '-')
		return ADDR_SYNTAX;
	return ADDR_OK;
}

/* Domain = sub-domain *("." sub-domain); no trailing dot. */
static enum addr_error scan_domain(struct scan *s)
{
	for (;;) {
		enum addr_error e = scan_label(s);
		if (e != ADDR_OK)
			return e;
		if (s->p < s->end && *s->p == '.') {
			s->p++;
			continue;
		}
		return ADDR_OK;
	}
}

/* address-literal at s->p (which is '['): IPv4 or "IPv6:" only; the
 * General-address-literal form is refused as a syntax error. */
static enum addr_error scan_literal(struct scan *s)
{
	const unsigned char *body = s->p + 1;
	const unsigned char *q = body;
	char buf[ADDR_MAX_LITERAL + 1];
	unsigned char addr[16];
	int af = AF_INET;

	while (q < s->end && *q != ']') {
		/* dcontent = %d33-90 / %d94-126 */
		if (*q < 33 || *q > 126 || *q == '[' || *q == '\\')
			return ADDR_SYNTAX;
		q++;
	}
	if (q == s->end)
		return ADDR_SYNTAX;

	size_t n = (size_t)(q - body);
	if (n >= 5 && strncasecmp((const char *)body, "IPv6:", 5) == 0) {
		af = AF_INET6;
		body += 5;
		n -= 5;
	}
	if (n == 0 || n > ADDR_MAX_LITERAL)
		return ADDR_SYNTAX;
	memcpy(buf, body, n);
	buf[n] = '\0';
	if (inet_pton(af, buf, addr) != 1)
		return ADDR_SYNTAX;
	s->p = q + 1;
	return ADDR_OK;
}

/* A-d-l = At-domain *( "," At-domain ) ":" at s->p (which is '@'). */
static enum addr_error scan_source_route(struct scan *s)
{
	for (;;) {
		if (s->p == s->end || *s->p != '@')
			return ADDR_SYNTAX;
		s->p++;
		enum addr_error e = scan_domain(s);
		if (e != ADDR_OK)
			return e;
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == ':') {
			s->p++;
			return ADDR_OK;
		}
		return ADDR_SYNTAX;
	}
}

static bool is_postmaster(const unsigned char *p, size_t n)
{
	return n == 10 && strncasecmp((const char *)p, "postmaster", 10) == 0;
}

/*
 * Mailbox = Local-part "@" ( Domain / address-literal ).  Fills out and
 * reports the local part and domain lengths as written, for the length
 * checks the caller makes once the whole syntax is known to be right.
 * With postmaster_ok a bare "postmaster" (any case, unquoted) is taken with
 * an empty domain; the caller makes sure '>' follows.
 */
static enum addr_error scan_mailbox(struct scan *s, bool postmaster_ok,
				    struct mailaddr *out,
				    size_t *local_len, size_t *domain_len)
{
	const unsigned char *local = s->p;
	struct str unquoted = STR_INIT;
	bool quoted = false;
	enum addr_error e;

	if (s->p == s->end)
		return ADDR_SYNTAX;
	if (*s->p == '"') {
		quoted = true;
		e = scan_quoted(s, &unquoted);
	} else {
		e = scan_dot_string(s);
	}
	if (e != ADDR_OK) {
		str_free(&unquoted);
		return e;
	}
	*local_len = (size_t)(s->p - local);

	const unsigned char *domain = s->p;
	bool literal = false;

	if (s->p < s->end && *s->p == '@') {
		s->p++;
		domain = s->p;
		if (s->p < s->end && *s->p == '[') {
			literal = true;
			e = scan_literal(s);
		} else {
			e = scan_domain(s);
		}
	} else if (!(postmaster_ok && is_postmaster(local, *local_len))) {
		/* no domain; a quoted "postmaster" is 12 octets as written
		 * and so is not the special case */
		e = ADDR_SYNTAX;
	}
	if (e != ADDR_OK) {
		str_free(&unquoted);
		return e;
	}
	*domain_len = (size_t)(s->p - domain);

	if (quoted) {
		out->local = xstrdup(str_c(&unquoted));
		str_free(&unquoted);
	} else {
		out->local = xstrndup((const char *)local, *local_len);
	}
	out->domain = xstrndup((const char *)domain, *domain_len);
	out->literal = literal;
	return ADDR_OK;
}

/* path_len counts the angle brackets (added for a bare mailbox). */
static enum addr_error check_lengths(size_t local_len, size_t domain_len,
				     size_t path_len)
{
	if (local_len > ADDR_MAX_LOCAL || domain_len > ADDR_MAX_DOMAIN ||
	    path_len > ADDR_MAX_PATH)
		return ADDR_TOO_LONG;
	return ADDR_OK;
}

static enum addr_error fail(struct mailaddr *out, size_t *consumed,
			    enum addr_error e)
{
	mailaddr_free(out);
	if (consumed != NULL)
		*consumed = 0;
	return e;
}

/* The bracketed path after its '<': "<>", or [ A-d-l ":" ] Mailbox ">". */
static enum addr_error scan_bracketed(struct scan *s, bool allow_null,
				      struct mailaddr *out,
				      size_t *local_len, size_t *domain_len)
{
	bool route = false;
	enum addr_error e;

	if (s->p < s->end && *s->p == '>') {
		if (!allow_null)
			return ADDR_NULL;
		s->p++;
		out->local = xstrdup("");
		out->domain = xstrdup("");
		out->null = true;
		return ADDR_OK;
	}
	if (s->p < s->end && *s->p == '@') {
		/* RFC 5321 appendix C: accept the source route, ignore it. */
		route = true;
		e = scan_source_route(s);
		if (e != ADDR_OK)
			return e;
	}
	e = scan_mailbox(s, !route, out, local_len, domain_len);
	if (e != ADDR_OK)
		return e;
	if (s->p == s->end || *s->p != '>')
		return ADDR_SYNTAX;
	s->p++;
	return ADDR_OK;
}

enum addr_error addr_parse_path(const char *text, size_t len, bool allow_null,
				struct mailaddr *out, size_t *consumed)
{
	const unsigned char *start = (const unsigned char *)text;
	struct scan s = { start, start + len, false };
	size_t local_len = 0, domain_len = 0, path_len;
	enum addr_error e;

	memset(out, 0, sizeof *out);
	if (consumed != NULL)
		*consumed = 0;
	if (len == 0)
		return ADDR_SYNTAX;

	if (*s.p == '<') {
		s.p++;
		e = scan_bracketed(&s, allow_null, out, &local_len, &domain_len);
		if (e != ADDR_OK)
			return fail(out, consumed, e);
		path_len = (size_t)(s.p - start);
	} else {
		/* Broken clients send MAIL FROM:user@domain (Postfix takes
		 * it too); such a path ends at a space or the end of input
		 * and is measured as if it had its brackets. */
		e = scan_mailbox(&s, false, out, &local_len, &domain_len);
		if (e != ADDR_OK)
			return fail(out, consumed, e);
		if (s.p < s.end && *s.p != ' ')
			return fail(out, consumed, ADDR_SYNTAX);
		path_len = (size_t)(s.p - start) + 2;
	}
	e = check_lengths(local_len, domain_len, path_len);
	if (e != ADDR_OK)
		return fail(out, consumed, e);
	out->utf8 = s.utf8;
	if (consumed != NULL)
		*consumed = (size_t)(s.p - start);
	return ADDR_OK;
}

enum addr_error addr_parse_mailbox(const char *text, struct mailaddr *out)
{
	size_t len = text != NULL ? strlen(text) : 0;
	const unsigned char *start = (const unsigned char *)text;
	struct scan s = { start, start + len, false };
	size_t local_len = 0, domain_len = 0;
	enum addr_error e;

	memset(out, 0, sizeof *out);
	if (len == 0)
		return ADDR_SYNTAX;
	e = scan_mailbox(&s, false, out, &local_len, &domain_len);
	if (e == ADDR_OK && s.p != s.end)
		e = ADDR_SYNTAX;	/* trailing junk */
	if (e == ADDR_OK)
		e = check_lengths(local_len, domain_len, len + 2);
	if (e != ADDR_OK)
		return fail(out, NULL, e);
	out->utf8 = s.utf8;
	return ADDR_OK;
}

const char *addr_strerror(enum addr_error e)
{
	switch (e) {
	case ADDR_OK:
		return "Address OK";
	case ADDR_SYNTAX:
		return "Syntax error in mailbox address";
	case ADDR_TOO_LONG:
		return "Address too long";
	case ADDR_NULL:
		return "Null address not allowed here";
	case ADDR_BAD_UTF8:
		return "Malformed UTF-8 in address";
	}
	return "Unknown address error";
}

/* True if local can be written as a Dot-string without quotes.  Octets
 * >= 0x80 count as atext: a parsed local part holds only well-formed UTF-8. */
static bool is_dot_string(const char *local)
{
	const unsigned char *p = (const unsigned char *)local;
	bool atom_empty = true;

	for (; *p != '\0'; p++) {
		if (*p == '.') {
			if (atom_empty)
				return false;
			atom_empty = true;
		} else if (is_atext(*p) || *p >= 0x80) {
			atom_empty = false;
		} else {
			return false;
		}
	}
	return !atom_empty;
}

/* Appends to out, so callers can wrap it in "<" ">" or a header. */
void addr_format(const struct mailaddr *a, struct str *out)
{
	if (a->null || a->local == NULL) {
		str_append(out, "");
		return;
	}
	if (is_dot_string(a->local)) {
		str_append(out, a->local);
	} else {
		str_append_c(out, '"');
		for (const char *p = a->local; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				str_append_c(out, '\\');
			str_append_c(out, *p);
		}
		str_append_c(out, '"');
	}
	/* <postmaster> has no domain and is written back without one. */
	if (a->domain != NULL && a->domain[0] != '\0') {
		str_append_c(out, '@');
		str_append(out, a->domain);
	}
}

void addr_lowercase(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

bool addr_valid_domain(const char *s)
{
	if (s == NULL)
		return false;
	size_t len = strlen(s);
	const unsigned char *start = (const unsigned char *)s;
	struct scan sc = { start, start + len, false };

	if (len == 0 || len > ADDR_MAX_DOMAIN)
		return false;
	return scan_domain(&sc) == ADDR_OK && sc.p == sc.end;
}

void mailaddr_free(struct mailaddr *a)
{
	free(a->local);
	free(a->domain);
	memset(a, 0, sizeof *a);
}

/* One element of an address list, [p, end): the part in <> if there is
 * one, else the element without white space. */
static void header_list_item(const char *p, const char *end, const char *lt,
			     const char *gt, struct strlist *out)
{
	struct str addr = STR_INIT;
	if (lt != NULL && gt != NULL) {
		str_append_n(&addr, lt + 1, (size_t)(gt - lt - 1));
	} else {
		const char *colon = NULL;	/* "group: a@b" */
		for (const char *c = p; c < end; c++)
			if (*c == ':' && colon == NULL && !memchr(p, '@', (size_t)(c - p)))
				colon = c;
		int depth = 0;	/* comments go */
		for (const char *c = colon ? colon + 1 : p; c < end; c++) {
			if (*c == '(')
				depth++;
			else if (*c == ')' && depth > 0)
				depth--;
			else if (depth == 0 && *c != ' ' && *c != '\t' &&
				 *c != '\r' && *c != '\n' && *c != ';')
				str_append_c(&addr, *c);
		}
	}
	if (addr.len > 0)
		strlist_add(out, str_c(&addr));
	str_free(&addr);
}

void addr_header_list(const char *value, struct strlist *out)
{
	const char *p = value;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' ||
		       *p == ',')
			p++;
		if (*p == '\0')
			break;
		const char *end = p, *lt = NULL, *gt = NULL;
		int depth = 0;
		unsigned angles = 0;
		bool quoted = false;
		for (; *end && (quoted || depth || *end != ','); end++) {
			if (*end == '\\' && end[1] != '\0')
				end++;
			else if (*end == '"')
				quoted = !quoted;
			else if (!quoted && *end == '(')
				depth++;
			else if (!quoted && *end == ')' && depth > 0)
				depth--;
			else if (!quoted && !depth && *end == '<') {
				lt = end;
				angles++;
			} else if (!quoted && !depth && *end == '>' && lt)
				gt = end;
		}
		/* "<a@x> <b@y>" (or "<>x<y"): not one mailbox, and picking
		 * either would let a sender check pass on the other.  Taken
		 * whole, it is no valid address. */
		if (angles > 1)
			lt = gt = NULL;
		header_list_item(p, end, lt, gt, out);
		p = end;
	}
}
