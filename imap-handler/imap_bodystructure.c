/*
 * imap_bodystructure: BODY and BODYSTRUCTURE (RFC 3501 7.4.2) from the MIME
 * tree of common/mime.c.  Type, subtype, encoding, disposition and
 * parameter names are sent upper case; values as written.  The output
 * always follows the RFC's grammar, however broken the message: a
 * multipart without parts is given one empty text/plain part, since
 * body-type-mpart needs at least one body.  Body sections (BODY[1.2.MIME]
 * etc.), also a walk of the MIME tree, are found here too.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_fetch_build.h"
#include "imap_parser.h"
#include "mime.h"
#include "str.h"

static void append_upper(struct str *out, const char *s)
{
	struct str up = STR_INIT;
	for (; *s != '\0'; s++)
		str_append_c(&up, (char)toupper((unsigned char)*s));
	imap_append_string(out, str_c(&up), up.len);
	str_free(&up);
}

static void append_upper_or(struct str *out, const char *s, const char *def)
{
	append_upper(out, s != NULL && *s != '\0' ? s : def);
}

static bool is_type(const struct mime_part *p, const char *type,
		    const char *subtype)
{
	return p->type != NULL && strcasecmp(p->type, type) == 0 &&
	       (subtype == NULL ||
		(p->subtype != NULL && strcasecmp(p->subtype, subtype) == 0));
}

/* body-fld-param: ("NAME" "value" ...) or NIL.  add_charset: text without
 * a charset parameter gets the RFC 2045 default. */
static void append_params(struct str *out, const struct mime_param *params,
			  size_t n, bool add_charset)
{
	if (n == 0 && !add_charset) {
		str_append(out, "NIL");
		return;
	}
	str_append_c(out, '(');
	bool first = true;
	if (add_charset) {
		str_append(out, "\"CHARSET\" \"us-ascii\"");
		first = false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!first)
			str_append_c(out, ' ');
		first = false;
		append_upper(out, params[i].name != NULL ? params[i].name : "");
		str_append_c(out, ' ');
		const char *v = params[i].value != NULL ? params[i].value : "";
		imap_append_string(out, v, strlen(v));
	}
	str_append_c(out, ')');
}

/* body-fld-dsp: ("ATTACHMENT" ("FILENAME" "x")) or NIL */
static void append_disposition(struct str *out, const struct mime_part *p)
{
	if (p->disposition == NULL || p->disposition[0] == '\0') {
		str_append(out, "NIL");
		return;
	}
	str_append_c(out, '(');
	append_upper(out, p->disposition);
	str_append_c(out, ' ');
	append_params(out, p->disp_params, p->n_disp_params, false);
	str_append_c(out, ')');
}

/* body-fld-lang: NIL, "en" or ("en" "de") from Content-Language's
 * comma-separated list. */
static void append_language(struct str *out, const char *lang)
{
	struct str tags[16];
	size_t n = 0;
	const char *p = lang;

	while (p != NULL && *p != '\0' && n < sizeof tags / sizeof *tags) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		size_t len = strcspn(p, ", \t");
		if (len > 0) {
			tags[n] = (struct str)STR_INIT;
			str_append_n(&tags[n], p, len);
			n++;
		}
		p += len;
	}
	if (n == 0) {
		str_append(out, "NIL");
	} else if (n == 1) {
		imap_append_string(out, tags[0].data, tags[0].len);
	} else {
		str_append_c(out, '(');
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				str_append_c(out, ' ');
			imap_append_string(out, tags[i].data, tags[i].len);
		}
		str_append_c(out, ')');
	}
	for (size_t i = 0; i < n; i++)
		str_free(&tags[i]);
}

/* disposition language location */
static void append_common_ext(struct str *out, const struct mime_part *p)
{
	str_append_c(out, ' ');
	append_disposition(out, p);
	str_append_c(out, ' ');
	append_language(out, p->language);
	str_append_c(out, ' ');
	imap_append_nstring(out, p->location);
}

static size_t part_size(const struct mime_part *p)
{
	return p->end > p->body ? p->end - p->body : 0;
}

static void build(const char *msg, const struct mime_part *p, bool extended,
		  struct str *out);

static void build_multipart(const char *msg, const struct mime_part *p,
			    bool extended, struct str *out)
{
	str_append_c(out, '(');
	if (p->n_children == 0) {
		/* keep the grammar: one empty text/plain part */
		str_append(out, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\")"
			   " NIL NIL \"7BIT\" 0 0");
		if (extended)
			str_append(out, " NIL NIL NIL NIL");
		str_append_c(out, ')');
	}
	for (size_t i = 0; i < p->n_children; i++)
		build(msg, &p->children[i], extended, out);
	str_append_c(out, ' ');
	append_upper_or(out, p->subtype, "MIXED");
	if (extended) {
		str_append_c(out, ' ');
		append_params(out, p->params, p->n_params, false);
		append_common_ext(out, p);
	}
	str_append_c(out, ')');
}

static void build_single(const char *msg, const struct mime_part *p,
			 bool extended, struct str *out)
{
	bool text = is_type(p, "text", NULL);
	/* only message/rfc822 has the envelope form in IMAP4rev1's
	 * grammar (media-message); message/global etc. are basic */
	bool rfc822 = is_type(p, "message", "rfc822");

	str_append_c(out, '(');
	append_upper_or(out, p->type, "TEXT");
	str_append_c(out, ' ');
	append_upper_or(out, p->subtype, "PLAIN");
	str_append_c(out, ' ');
	append_params(out, p->params, p->n_params,
		      text && mime_param(p, "charset") == NULL);
	str_append_c(out, ' ');
	imap_append_nstring(out, p->id);
	str_append_c(out, ' ');
	imap_append_nstring(out, p->description);
	str_append_c(out, ' ');
	append_upper_or(out, p->encoding, "7BIT");
	str_printf(out, " %zu", part_size(p));

	if (rfc822) {
		str_append_c(out, ' ');
		if (p->n_children > 0) {
			const struct mime_part *m = &p->children[0];
			imap_envelope_build(msg, m->header, m->body, out);
			str_append_c(out, ' ');
			build(msg, m, extended, out);
		} else {
			/* no encapsulated message parsed: an empty one */
			imap_envelope_build(msg, p->body, p->body, out);
			str_printf(out, " (\"TEXT\" \"PLAIN\" (\"CHARSET\" "
				   "\"us-ascii\") NIL NIL \"7BIT\" %zu %zu)",
				   part_size(p), p->body_lines);
		}
	}
	if (text || rfc822)
		str_printf(out, " %zu", p->body_lines);
	if (extended) {
		str_append_c(out, ' ');
		imap_append_nstring(out, p->md5);
		append_common_ext(out, p);
	}
	str_append_c(out, ')');
}

static void build(const char *msg, const struct mime_part *p, bool extended,
		  struct str *out)
{
	if (is_type(p, "multipart", NULL))
		build_multipart(msg, p, extended, out);
	else
		build_single(msg, p, extended, out);
}

void imap_bodystructure_build(const char *msg, const struct mime_part *part,
			      bool extended, struct str *out)
{
	build(msg, part, extended, out);
}

/*
 * Body sections (BODY[...], RFC 3501 6.4.5).  They are walked along the
 * same MIME tree and live here, not in imap_fetch.c, so that they stay
 * free of the session and can be tested and fuzzed alone.
 */

void imap_section_free(struct imap_section *sec)
{
	free(sec->part);
	sec->part = NULL;
	strlist_free(&sec->fields);
	sec->kind = IMAP_SECTION_ALL;
}

/* "1.2.3" at s: its length (0 if s does not start with a digit), or -1
 * if malformed (a zero, an overflow, too long). */
static long parse_part_number(const char *s)
{
	size_t i = 0;
	while (isdigit((unsigned char)s[i])) {
		if (s[i] == '0')
			return -1;		/* nz-number */
		size_t digits = 0;
		while (isdigit((unsigned char)s[i + digits]))
			digits++;
		if (digits > 9)
			return -1;		/* far beyond MIME_MAX_PARTS */
		i += digits;
		if (i > IMAP_SECTION_PART_MAX)
			return -1;
		if (s[i] != '.' || !isdigit((unsigned char)s[i + 1]))
			break;
		i++;
	}
	return (long)i;
}

/* header-list: "(" astring *(SP astring) ")" ending the spec. */
static int parse_field_list(const char *s, struct strlist *fields)
{
	if (*s++ != '(')
		return -1;
	for (;;) {
		struct str name = STR_INIT;
		if (*s == '"') {
			for (s++; *s != '"'; s++) {
				if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
					s++;
				if (*s == '\0' || *s == '\r' || *s == '\n') {
					str_free(&name);
					return -1;
				}
				str_append_c(&name, *s);
			}
			s++;
		} else {
			while (*s != '\0' && *s != ' ' && *s != ')' &&
			       *s != '(' && *s != '"' && *s != '\\' &&
			       *s != '{' && *s != '%' && *s != '*' &&
			       (unsigned char)*s > ' ' && (unsigned char)*s < 0x7f)
				str_append_c(&name, *s++);
		}
		if (name.len == 0 || fields->n >= IMAP_SECTION_FIELDS_MAX) {
			str_free(&name);
			return -1;
		}
		strlist_add_n(fields, name.data, name.len);
		str_free(&name);
		if (*s == ')')
			return s[1] == '\0' ? 0 : -1;
		if (*s != ' ')
			return -1;
		while (*s == ' ')
			s++;
	}
}

/* The section-text / section-msgtext after the part number (if any). */
static int parse_section_text(const char *s, bool has_part,
			      struct imap_section *sec)
{
	if (strcasecmp(s, "HEADER") == 0) {
		sec->kind = IMAP_SECTION_HEADER;
	} else if (strcasecmp(s, "TEXT") == 0) {
		sec->kind = IMAP_SECTION_TEXT;
	} else if (strcasecmp(s, "MIME") == 0 && has_part) {
		sec->kind = IMAP_SECTION_MIME;
	} else if (strncasecmp(s, "HEADER.FIELDS.NOT ", 18) == 0) {
		sec->kind = IMAP_SECTION_HEADER_FIELDS_NOT;
		return parse_field_list(s + 18, &sec->fields);
	} else if (strncasecmp(s, "HEADER.FIELDS ", 14) == 0) {
		sec->kind = IMAP_SECTION_HEADER_FIELDS;
		return parse_field_list(s + 14, &sec->fields);
	} else {
		return -1;
	}
	return 0;
}

int imap_section_parse(const char *spec, struct imap_section *sec)
{
	*sec = (struct imap_section){ IMAP_SECTION_ALL, NULL, STRLIST_INIT };
	long plen = parse_part_number(spec);
	if (plen < 0)
		return -1;
	if (plen > 0)
		sec->part = xstrndup(spec, (size_t)plen);
	const char *rest = spec + plen;
	if (*rest == '\0')
		return 0;
	if (plen > 0 && *rest++ != '.')
		goto bad;
	if (parse_section_text(rest, plen > 0, sec) == 0)
		return 0;
bad:
	imap_section_free(sec);
	return -1;
}

void imap_section_format(const struct imap_section *sec, struct str *out)
{
	static const char *const names[] = {
		[IMAP_SECTION_ALL] = "",
		[IMAP_SECTION_HEADER] = "HEADER",
		[IMAP_SECTION_HEADER_FIELDS] = "HEADER.FIELDS",
		[IMAP_SECTION_HEADER_FIELDS_NOT] = "HEADER.FIELDS.NOT",
		[IMAP_SECTION_TEXT] = "TEXT",
		[IMAP_SECTION_MIME] = "MIME",
	};
	if (sec->part != NULL) {
		str_append(out, sec->part);
		if (sec->kind != IMAP_SECTION_ALL)
			str_append_c(out, '.');
	}
	str_append(out, names[sec->kind]);
	if (sec->kind != IMAP_SECTION_HEADER_FIELDS &&
	    sec->kind != IMAP_SECTION_HEADER_FIELDS_NOT)
		return;
	str_append(out, " (");
	for (size_t i = 0; i < sec->fields.n; i++) {
		struct str up = STR_INIT;
		for (const char *p = sec->fields.items[i]; *p != '\0'; p++)
			str_append_c(&up, (char)toupper((unsigned char)*p));
		if (i > 0)
			str_append_c(out, ' ');
		imap_append_astring(out, str_c(&up));
		str_free(&up);
	}
	str_append_c(out, ')');
}

static bool name_listed(const struct strlist *names, const char *name,
			size_t len)
{
	for (size_t i = 0; i < names->n; i++)
		if (strlen(names->items[i]) == len &&
		    strncasecmp(names->items[i], name, len) == 0)
			return true;
	return false;
}

void imap_header_fields(const char *msg, size_t start, size_t end,
			const struct strlist *names, bool negate,
			struct str *out)
{
	size_t pos = start;
	const char *name, *field;
	size_t name_len, field_len;

	while (mime_header_next(msg, end, &pos, &name, &name_len, &field,
				&field_len)) {
		/* the blank line or a line without a name: not a field */
		if (name_len == 0 || field_len == 0 || field[0] == '\r' ||
		    field[0] == '\n')
			continue;
		if (name_listed(names, name, name_len) == negate)
			continue;
		str_append_n(out, field, field_len);
		if (field[field_len - 1] != '\n')
			str_append(out, "\r\n");
	}
	str_append(out, "\r\n");
}

/* Set [*data, *data + *len) to [from, to) of msg, clamped to msg's
 * length (a broken tree must not make us read outside). */
static bool range(const char *msg, size_t len, size_t from, size_t to,
		  const char **data, size_t *data_len)
{
	if (to > len)
		to = len;
	if (from > to)
		from = to;
	*data = msg + from;
	*data_len = to - from;
	return true;
}

bool imap_fetch_section(const char *msg, size_t len,
			const struct mime_part *root,
			const struct imap_section *sec, struct str *built,
			const char **data, size_t *data_len)
{
	const struct mime_part *m = root;	/* the message HEADER etc.
						 * refer to */
	*data = msg;
	*data_len = 0;
	if (sec->part != NULL) {
		const struct mime_part *p =
			mime_find_part(root, sec->part, strlen(sec->part));
		if (p == NULL)
			return false;
		if (sec->kind == IMAP_SECTION_ALL)
			return range(msg, len, p->body, p->end, data, data_len);
		if (sec->kind == IMAP_SECTION_MIME)
			return range(msg, len, p->header, p->body, data,
				     data_len);
		/* HEADER, TEXT, HEADER.FIELDS: of an encapsulated message */
		if (!is_type(p, "message", NULL) || p->n_children == 0 ||
		    is_type(p, "message", "partial") ||
		    is_type(p, "message", "external-body"))
			return false;
		m = &p->children[0];
	} else if (sec->kind == IMAP_SECTION_ALL) {
		return range(msg, len, 0, len, data, data_len);
	}

	switch (sec->kind) {
	case IMAP_SECTION_HEADER:
		return range(msg, len, m->header, m->body, data, data_len);
	case IMAP_SECTION_TEXT:
		return range(msg, len, m->body, m->end, data, data_len);
	case IMAP_SECTION_HEADER_FIELDS:
	case IMAP_SECTION_HEADER_FIELDS_NOT: {
		size_t from = m->header, to = m->body > len ? len : m->body;
		str_clear(built);
		imap_header_fields(msg, from < to ? from : to, to,
				   &sec->fields,
				   sec->kind == IMAP_SECTION_HEADER_FIELDS_NOT,
				   built);
		*data = built->data;
		*data_len = built->len;
		return true;
	}
	default:
		return false;
	}
}
