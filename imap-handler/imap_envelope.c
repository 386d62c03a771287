/*
 * imap_envelope: the ENVELOPE of a message (RFC 3501 7.4.2) from its
 * header block.  Address lists are parsed with the RFC 5322 grammar (and
 * its obsolete forms: routes, dotted phrases) by a small tokenizer and a
 * forgiving parser: whatever the header contains, the output is a valid
 * envelope.  Header values are passed on raw (RFC 2047 words still
 * encoded): decoding is the client's business.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "imap_fetch_build.h"
#include "imap_parser.h"
#include "mime.h"
#include "str.h"

/* Dovecot's placeholders for the parts an address lacks: a NIL host
 * would make the address a group marker. */
#define MISSING_MAILBOX "MISSING_MAILBOX"
#define MISSING_DOMAIN "MISSING_DOMAIN"

enum tok_type {
	TOK_ATOM,	/* atext run (8-bit octets included) */
	TOK_QUOTED,	/* "..." with the quotes */
	TOK_DOMLIT,	/* [...] with the brackets */
	TOK_COMMENT,	/* (...) without the outer parentheses */
	TOK_SPECIAL,	/* one of < > : ; @ , . ] \ */
};

struct tok {
	enum tok_type type;
	const char *p;
	size_t len;
	bool space_before;	/* whitespace or a comment came before it */
};

struct toks {
	struct tok *t;
	size_t n, cap;
};

static bool is_special(unsigned char c)
{
	return c != '\0' && strchr("()<>[]:;@\\,.\"", c) != NULL;
}

static bool is_blank(unsigned char c)
{
	/* control characters are noise: treat them as white space */
	return c <= ' ' || c == 0x7f;
}

static void tok_push(struct toks *ts, enum tok_type type, const char *p,
		     size_t len, bool space)
{
	if (ts->n == ts->cap) {
		ts->cap = ts->cap ? ts->cap * 2 : 16;
		ts->t = xrealloc(ts->t, ts->cap * sizeof *ts->t);
	}
	ts->t[ts->n++] = (struct tok){ type, p, len, space };
}

/* Length of a quoted string or domain literal starting at s[i] (the
 * opening character), through its closing character or the end. */
static size_t delimited_len(const char *s, size_t len, size_t i, char close)
{
	size_t j = i + 1;
	while (j < len && s[j] != close) {
		if (s[j] == '\\' && j + 1 < len)
			j++;
		j++;
	}
	return (j < len ? j + 1 : len) - i;
}

/* Length of a (nested) comment starting at s[i] == '('. */
static size_t comment_len(const char *s, size_t len, size_t i)
{
	size_t j = i + 1;
	unsigned depth = 1;
	while (j < len && depth > 0) {
		if (s[j] == '\\' && j + 1 < len)
			j++;
		else if (s[j] == '(')
			depth++;
		else if (s[j] == ')')
			depth--;
		j++;
	}
	return j - i;
}

static void tokenize(const char *s, size_t len, struct toks *ts)
{
	bool space = false;
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t n;
		if (is_blank(c)) {
			space = true;
			i++;
			continue;
		}
		if (c == '(') {
			n = comment_len(s, len, i);
			/* content without the parentheses (the closing one may
			 * be missing at the end of garbage) */
			size_t inner = n - 1;
			if (i + n <= len && s[i + n - 1] == ')' && n >= 2)
				inner = n - 2;
			tok_push(ts, TOK_COMMENT, s + i + 1, inner, space);
			space = true;
			i += n;
			continue;
		}
		if (c == '"') {
			n = delimited_len(s, len, i, '"');
			tok_push(ts, TOK_QUOTED, s + i, n, space);
		} else if (c == '[') {
			n = delimited_len(s, len, i, ']');
			tok_push(ts, TOK_DOMLIT, s + i, n, space);
		} else if (is_special(c)) {
			n = 1;
			tok_push(ts, TOK_SPECIAL, s + i, n, space);
		} else {
			n = 1;
			while (i + n < len && !is_blank((unsigned char)s[i + n]) &&
			       !is_special((unsigned char)s[i + n]))
				n++;
			tok_push(ts, TOK_ATOM, s + i, n, space);
		}
		space = false;
		i += n;
	}
}

static bool tok_is(const struct toks *ts, size_t i, char c)
{
	return i < ts->n && ts->t[i].type == TOK_SPECIAL && ts->t[i].p[0] == c;
}

/* Append a quoted string's or comment's content, backslash escapes
 * removed. */
static void append_unescaped(struct str *out, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\\' && i + 1 < len)
			i++;
		str_append_c(out, p[i]);
	}
}

static void append_quoted_content(struct str *out, const struct tok *t)
{
	size_t len = t->len - 1;	/* without the opening quote */
	if (len > 0 && t->p[t->len - 1] == '"' && t->len >= 2)
		len--;
	append_unescaped(out, t->p + 1, len);
}

/* A display name: words joined by single spaces where the header had
 * white space, quoted strings unquoted, comments dropped. */
static void phrase_text(const struct toks *ts, size_t from, size_t to,
			struct str *out)
{
	for (size_t i = from; i < to; i++) {
		const struct tok *t = &ts->t[i];
		if (t->type == TOK_COMMENT)
			continue;
		if (t->space_before && out->len > 0)
			str_append_c(out, ' ');
		if (t->type == TOK_QUOTED)
			append_quoted_content(out, t);
		else
			str_append_n(out, t->p, t->len);
	}
}

/* Raw concatenation (no white space, no comments): local parts,
 * domains, routes. */
static void raw_text(const struct toks *ts, size_t from, size_t to,
		     struct str *out)
{
	for (size_t i = from; i < to; i++)
		if (ts->t[i].type != TOK_COMMENT)
			str_append_n(out, ts->t[i].p, ts->t[i].len);
}

struct addr_list {
	struct str out;		/* "(" addresses so far */
	size_t count;
};

static void emit_address(struct addr_list *l, const char *name,
			 const char *adl, const char *mailbox,
			 const char *host)
{
	if (l->count == 0)
		str_append_c(&l->out, '(');
	str_append_c(&l->out, '(');
	imap_append_nstring(&l->out, name);
	str_append_c(&l->out, ' ');
	imap_append_nstring(&l->out, adl);
	str_append_c(&l->out, ' ');
	imap_append_nstring(&l->out, mailbox);
	str_append_c(&l->out, ' ');
	imap_append_nstring(&l->out, host);
	str_append_c(&l->out, ')');
	l->count++;
}

static const char *nonempty(const struct str *s)
{
	return s->len > 0 ? str_c(s) : NULL;
}

/* Skip to the end of this address: the next ',' or ';' (not consumed)
 * or the end.  A comment met on the way may serve as the name. */
static size_t skip_to_delim(const struct toks *ts, size_t i, struct str *comment)
{
	while (i < ts->n && !tok_is(ts, i, ',') && !tok_is(ts, i, ';')) {
		if (ts->t[i].type == TOK_COMMENT && comment != NULL &&
		    comment->len == 0)
			append_unescaped(comment, ts->t[i].p, ts->t[i].len);
		i++;
	}
	return i;
}

/* A domain (atoms, dots, domain literals) from i; returns the index
 * after it.  The first comment met is kept in *comment (if not NULL and
 * still empty): "user@host (Real Name)". */
static size_t parse_domain(const struct toks *ts, size_t i, struct str *host,
			   struct str *comment)
{
	while (i < ts->n) {
		const struct tok *t = &ts->t[i];
		if (t->type == TOK_COMMENT) {
			if (comment != NULL && comment->len == 0)
				append_unescaped(comment, t->p, t->len);
			i++;
			continue;
		}
		if (t->type != TOK_ATOM && t->type != TOK_DOMLIT &&
		    !tok_is(ts, i, '.'))
			break;
		str_append_n(host, t->p, t->len);
		i++;
	}
	return i;
}

/* "<" [route ":"] addr-spec ">" with ts->t[i] == '<'.  Returns the index
 * after the '>' (or where the garbage stopped). */
static size_t parse_angle(const struct toks *ts, size_t i, struct str *adl,
			  struct str *mailbox, struct str *host, bool *has_at)
{
	i++;
	if (tok_is(ts, i, '@')) {
		/* obs-route: "@a,@b:" up to the colon, if there is one
		 * before the '>' */
		size_t j = i;
		while (j < ts->n && !tok_is(ts, j, ':') && !tok_is(ts, j, '>'))
			j++;
		if (tok_is(ts, j, ':')) {
			raw_text(ts, i, j, adl);
			i = j + 1;
		}
	}
	size_t start = i;
	while (i < ts->n && (ts->t[i].type == TOK_ATOM ||
			     ts->t[i].type == TOK_QUOTED ||
			     ts->t[i].type == TOK_COMMENT || tok_is(ts, i, '.')))
		i++;
	raw_text(ts, start, i, mailbox);
	*has_at = tok_is(ts, i, '@');
	if (*has_at)
		i = parse_domain(ts, i + 1, host, NULL);
	while (i < ts->n && !tok_is(ts, i, '>') && !tok_is(ts, i, ',') &&
	       !tok_is(ts, i, ';'))
		i++;
	if (tok_is(ts, i, '>'))
		i++;
	return i;
}

struct addr_parse {
	const struct toks *ts;
	struct addr_list *list;
	bool in_group;
};

/* One address (mailbox or group start) from i; returns the next index. */
static size_t parse_address(struct addr_parse *ap, size_t i)
{
	const struct toks *ts = ap->ts;
	struct str name = STR_INIT, adl = STR_INIT, mailbox = STR_INIT;
	struct str host = STR_INIT, comment = STR_INIT;
	size_t start = i;

	/* a phrase, or the local part of a bare addr-spec */
	while (i < ts->n && (ts->t[i].type == TOK_ATOM ||
			     ts->t[i].type == TOK_QUOTED ||
			     ts->t[i].type == TOK_COMMENT || tok_is(ts, i, '.')))
		i++;
	size_t end = i;

	if (tok_is(ts, i, '<')) {
		bool has_at;
		phrase_text(ts, start, end, &name);
		i = parse_angle(ts, i, &adl, &mailbox, &host, &has_at);
		i = skip_to_delim(ts, i, name.len == 0 ? &comment : NULL);
		if (name.len == 0 && comment.len > 0)
			str_append_n(&name, comment.data, comment.len);
		if (mailbox.len > 0 || host.len > 0 || name.len > 0)
			emit_address(ap->list, nonempty(&name), nonempty(&adl),
				     mailbox.len ? str_c(&mailbox) : MISSING_MAILBOX,
				     host.len ? str_c(&host) : MISSING_DOMAIN);
	} else if (tok_is(ts, i, ':') && !ap->in_group) {
		phrase_text(ts, start, end, &name);
		emit_address(ap->list, NULL, NULL, str_c(&name), NULL);
		ap->in_group = true;
		i++;
	} else if (tok_is(ts, i, '@') || end > start) {
		/* addr-spec, maybe without its domain */
		raw_text(ts, start, end, &mailbox);
		/* "user@host (Real Name)": the comment names it, as
		 * Dovecot and UW IMAP do */
		for (size_t j = start; j < end && comment.len == 0; j++)
			if (ts->t[j].type == TOK_COMMENT)
				append_unescaped(&comment, ts->t[j].p,
						 ts->t[j].len);
		if (tok_is(ts, i, '@'))
			i = parse_domain(ts, i + 1, &host, &comment);
		i = skip_to_delim(ts, i, &comment);
		if (mailbox.len > 0 || host.len > 0)
			emit_address(ap->list, nonempty(&comment), NULL,
				     mailbox.len ? str_c(&mailbox) : MISSING_MAILBOX,
				     host.len ? str_c(&host) : MISSING_DOMAIN);
	} else {
		/* garbage (a stray '>', ':', ...): drop up to the next
		 * delimiter */
		i = skip_to_delim(ts, i + 1, NULL);
	}
	str_free(&name);
	str_free(&adl);
	str_free(&mailbox);
	str_free(&host);
	str_free(&comment);
	return i;
}

/* Append the address list of the header field value (NIL if it holds no
 * address). */
static void address_list(const char *value, size_t len, struct str *out)
{
	struct toks ts = { NULL, 0, 0 };
	struct addr_list list = { STR_INIT, 0 };
	struct addr_parse ap = { &ts, &list, false };

	tokenize(value, len, &ts);
	size_t i = 0;
	while (i < ts.n) {
		if (tok_is(&ts, i, ',')) {
			i++;
		} else if (tok_is(&ts, i, ';')) {
			if (ap.in_group)
				emit_address(&list, NULL, NULL, NULL, NULL);
			ap.in_group = false;
			i++;
		} else {
			size_t next = parse_address(&ap, i);
			i = next > i ? next : i + 1;
		}
	}
	if (ap.in_group)
		emit_address(&list, NULL, NULL, NULL, NULL);

	if (list.count == 0) {
		str_append(out, "NIL");
	} else {
		str_append_n(out, list.out.data, list.out.len);
		str_append_c(out, ')');
	}
	str_free(&list.out);
	free(ts.t);
}

static void envelope_string(const char *msg, size_t start, size_t end,
			    const char *field, struct str *out)
{
	struct str v = STR_INIT;
	if (mime_header_get(msg, start, end, field, &v))
		imap_append_nstring(out, str_c(&v));
	else
		str_append(out, "NIL");
	str_free(&v);
}

/* The address list of field into *list; false when absent or empty
 * (NIL), as Sender and Reply-To then take From's value. */
static bool envelope_addresses(const char *msg, size_t start, size_t end,
			       const char *field, struct str *list)
{
	struct str v = STR_INIT;
	str_clear(list);
	if (mime_header_get(msg, start, end, field, &v))
		address_list(str_c(&v), v.len, list);
	else
		str_append(list, "NIL");
	str_free(&v);
	return strcmp(str_c(list), "NIL") != 0;
}

void imap_envelope_build(const char *msg, size_t header_start,
			 size_t header_end, struct str *out)
{
	static const char *const addr_fields[] = {
		"From", "Sender", "Reply-To", "To", "Cc", "Bcc",
	};
	struct str from = STR_INIT, list = STR_INIT;

	str_append_c(out, '(');
	envelope_string(msg, header_start, header_end, "Date", out);
	str_append_c(out, ' ');
	envelope_string(msg, header_start, header_end, "Subject", out);

	envelope_addresses(msg, header_start, header_end, "From", &from);
	for (size_t i = 0; i < sizeof addr_fields / sizeof *addr_fields; i++) {
		str_append_c(out, ' ');
		if (i == 0) {
			str_append_n(out, from.data, from.len);
			continue;
		}
		bool found = envelope_addresses(msg, header_start, header_end,
						addr_fields[i], &list);
		/* RFC 3501 7.4.2: absent or empty Sender and Reply-To are
		 * set to From */
		if (!found && i <= 2)
			str_append_n(out, from.data, from.len);
		else
			str_append_n(out, list.data, list.len);
	}
	str_append_c(out, ' ');
	envelope_string(msg, header_start, header_end, "In-Reply-To", out);
	str_append_c(out, ' ');
	envelope_string(msg, header_start, header_end, "Message-ID", out);
	str_append_c(out, ')');
	str_free(&from);
	str_free(&list);
}
