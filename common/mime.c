/*
 * mime: the RFC 5322 / RFC 2045-2049 structure of a message as offsets
 * into its text, for IMAP BODYSTRUCTURE, BODY[section] and SEARCH.
 *
 * Everything here is lenient, because the mail it reads comes from
 * anywhere: junk header lines are skipped, an invalid Content-Type is the
 * RFC 2045 default, a missing close delimiter ends the last part at its
 * parent's end, and MIME_MAX_DEPTH / MIME_MAX_PARTS bound the tree (and
 * the recursion, which is at most MIME_MAX_DEPTH deep).  Boundary scanning
 * is one memmem pass per multipart level, so parsing is linear in the
 * message size for any sane nesting.
 */
#include "mime.h"

#include <stdlib.h>
#include <string.h>

/* Longest RFC 2231 section number we take ("name*999"). */
#define MIME_MAX_SECTION 999

struct mime_ctx {
	const char *msg;
	size_t n_parts;		/* parts in the tree so far, root included */
};

/* A parameter as written, before RFC 2231 sections are joined. */
struct raw_param {
	char *name;		/* without the "*N*" suffix */
	int section;		/* -1: not a continuation */
	bool extended;		/* "name*=" or "name*N*=" */
	char *value;
};

/* The MIME fields read from a part's header, first occurrence each. */
enum {
	F_TYPE, F_ENCODING, F_ID, F_DESCRIPTION, F_MD5, F_LANGUAGE,
	F_LOCATION, F_DISPOSITION, F_COUNT
};

static const char *const field_names[F_COUNT] = {
	"content-type", "content-transfer-encoding", "content-id",
	"content-description", "content-md5", "content-language",
	"content-location", "content-disposition",
};

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static void lower_in_place(char *s)
{
	for (; *s != '\0'; s++)
		*s = ascii_lower(*s);
}

/* ASCII-only case-insensitive compare of a[0..alen) with C string b
 * (strcasecmp would fold 8-bit octets in some locales). */
static bool name_eq(const char *a, size_t alen, const char *b)
{
	size_t i;

	for (i = 0; i < alen; i++) {
		if (b[i] == '\0' || ascii_lower(a[i]) != ascii_lower(b[i]))
			return false;
	}
	return b[i] == '\0';
}

static bool str_eq_ci(const char *a, const char *b)
{
	return name_eq(a, strlen(a), b);
}

/* RFC 2045 token characters (US-ASCII only). */
static bool is_token_char(char c)
{
	unsigned char u = (unsigned char)c;

	if (u <= 0x20 || u >= 0x7f)
		return false;
	return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* --- lines and header fields --------------------------------------- */

/* The offset after the line starting at pos (past its LF), or end. */
static size_t next_line(const char *msg, size_t pos, size_t end)
{
	const char *nl = memchr(msg + pos, '\n', end - pos);

	return nl == NULL ? end : (size_t)(nl - msg) + 1;
}

static bool is_blank_line(const char *msg, size_t pos, size_t end)
{
	if (msg[pos] == '\n')
		return true;
	return msg[pos] == '\r' && pos + 1 < end && msg[pos + 1] == '\n';
}

/* Where the body of the entity at [start, end) starts: after the first
 * empty line, or end when there is none. */
static size_t find_body(const char *msg, size_t start, size_t end)
{
	size_t pos = start;

	while (pos < end) {
		if (msg[pos] == '\n')
			return pos + 1;
		if (msg[pos] == '\r' && pos + 1 < end && msg[pos + 1] == '\n')
			return pos + 2;
		pos = next_line(msg, pos, end);
	}
	return end;
}

/* The length of the field name if the line [pos, line_end) starts a
 * header field ("Name:" or, leniently, "Name :"), else 0. */
static size_t field_name_len(const char *msg, size_t pos, size_t line_end)
{
	size_t i = pos, n;

	while (i < line_end && (unsigned char)msg[i] > 0x20 &&
	       msg[i] != ':' && msg[i] != 0x7f)
		i++;
	n = i - pos;
	if (n == 0)
		return 0;
	while (i < line_end && is_wsp(msg[i]))
		i++;
	return i < line_end && msg[i] == ':' ? n : 0;
}

bool mime_header_next(const char *msg, size_t end, size_t *pos,
		      const char **name, size_t *name_len,
		      const char **field, size_t *field_len)
{
	size_t p = *pos;

	while (p < end && !is_blank_line(msg, p, end)) {
		size_t next = next_line(msg, p, end);
		size_t nlen = field_name_len(msg, p, next);
		size_t fend = next;

		if (nlen == 0) {
			/* Junk, or a continuation without a field: skip. */
			p = next;
			continue;
		}
		while (fend < end && is_wsp(msg[fend]))
			fend = next_line(msg, fend, end);
		*name = msg + p;
		*name_len = nlen;
		*field = msg + p;
		*field_len = fend - p;
		*pos = fend;
		return true;
	}
	*pos = p;
	return false;
}

/* Append the unfolded, trimmed value of a raw field (name included). */
static void field_value(const char *f, size_t flen, struct str *out)
{
	const char *colon = memchr(f, ':', flen);
	size_t i = (size_t)(colon - f) + 1;
	size_t base = out->len;

	str_reserve(out, flen - i);
	/* terminated even when nothing follows the colon ("Subject:" at the
	 * end of the block): a new buffer from str_reserve is not */
	out->data[out->len] = '\0';
	while (i < flen) {
		const char *nl = memchr(f + i, '\n', flen - i);
		size_t stop = nl == NULL ? flen : (size_t)(nl - f);
		size_t seg_end = stop;

		/* Drop the line end: the CRLF (or LF) of a fold or the field's
		 * last one. */
		if (nl != NULL && seg_end > i && f[seg_end - 1] == '\r')
			seg_end--;
		if (out->len == base) {
			while (i < seg_end && is_wsp(f[i]))
				i++;
		}
		str_append_n(out, f + i, seg_end - i);
		i = nl == NULL ? flen : stop + 1;
	}
	while (out->len > base && is_wsp(out->data[out->len - 1]))
		str_truncate(out, out->len - 1);
}

bool mime_header_get(const char *msg, size_t start, size_t end,
		     const char *name, struct str *value)
{
	size_t pos = start, nlen, flen;
	const char *n, *f;

	str_truncate(value, 0);
	while (mime_header_next(msg, end, &pos, &n, &nlen, &f, &flen)) {
		if (name_eq(n, nlen, name)) {
			field_value(f, flen, value);
			if (value->data == NULL)
				str_append_n(value, "", 0);
			return true;
		}
	}
	return false;
}

/* --- structured field values (Content-Type, Content-Disposition) ---- */

/* s[i] == '(': skip the (nested) comment. */
static size_t skip_comment(const char *s, size_t len, size_t i)
{
	size_t depth = 0;

	for (; i < len; i++) {
		if (s[i] == '\\' && i + 1 < len)
			i++;
		else if (s[i] == '(')
			depth++;
		else if (s[i] == ')' && --depth == 0)
			return i + 1;
	}
	return len;
}

static size_t skip_cfws(const char *s, size_t len, size_t i)
{
	while (i < len) {
		if (is_space(s[i]))
			i++;
		else if (s[i] == '(')
			i = skip_comment(s, len, i);
		else
			break;
	}
	return i;
}

/* s[i] == '"': append the unquoted content; returns the offset after
 * the closing quote (or len when it is missing). */
static size_t read_quoted(const char *s, size_t len, size_t i, struct str *out)
{
	for (i++; i < len; i++) {
		if (s[i] == '"')
			return i + 1;
		if (s[i] == '\\' && i + 1 < len)
			i++;
		str_append_c(out, s[i]);
	}
	return len;
}

/* s[i] == '"': the offset after the quoted string. */
static size_t skip_quoted(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '"')
			return i + 1;
		if (s[i] == '\\')
			i++;
	}
	return len;
}

/* Skip to the next ';' outside quoted strings and comments. */
static size_t skip_to_semicolon(const char *s, size_t len, size_t i)
{
	while (i < len && s[i] != ';') {
		if (s[i] == '"')
			i = skip_quoted(s, len, i);
		else if (s[i] == '(')
			i = skip_comment(s, len, i);
		else
			i++;
	}
	return i;
}

/* An unquoted value runs to the next ';'.  Leniently it may contain
 * tspecials and blanks (boundary=----=_Part, name=my file.pdf);
 * comments go, and blank runs become one space. */
static size_t read_unquoted(const char *s, size_t len, size_t i, struct str *out)
{
	bool pending_space = false;

	while (i < len && s[i] != ';') {
		if (s[i] == '(') {
			i = skip_comment(s, len, i);
			pending_space = true;
		} else if (is_space(s[i])) {
			i++;
			pending_space = true;
		} else {
			if (pending_space && out->len > 0)
				str_append_c(out, ' ');
			pending_space = false;
			str_append_c(out, s[i++]);
		}
	}
	return i;
}

/* Split an attribute "name*N*" into raw->name, section, extended. */
static void split_attribute(const char *a, size_t alen, struct raw_param *raw)
{
	const char *star = memchr(a, '*', alen);
	size_t rest, i, num = 0;

	raw->section = -1;
	raw->extended = false;
	if (star == NULL) {
		raw->name = xstrndup(a, alen);
		return;
	}
	i = (size_t)(star - a) + 1;
	rest = alen - i;
	if (star == a) {
		raw->name = xstrndup(a, alen);
		return;
	}
	if (rest == 0) {		/* name* */
		raw->extended = true;
	} else {			/* name*N or name*N* */
		size_t digits = 0;

		while (i < alen && a[i] >= '0' && a[i] <= '9' && digits < 4) {
			num = num * 10 + (size_t)(a[i] - '0');
			i++;
			digits++;
		}
		if (digits == 0 || digits > 3 || num > MIME_MAX_SECTION ||
		    (digits > 1 && star[1] == '0') ||
		    !(i == alen || (i + 1 == alen && a[i] == '*'))) {
			raw->name = xstrndup(a, alen);	/* not RFC 2231 */
			return;
		}
		raw->section = (int)num;
		raw->extended = i + 1 == alen;
	}
	raw->name = xstrndup(a, (size_t)(star - a));
}

/* Read "; attr=value" pairs from s[i..len) into raw (at most max). */
static size_t read_raw_params(const char *s, size_t len, size_t i,
			      struct raw_param *raw, size_t max)
{
	size_t n = 0;

	while (n < max) {
		struct str value = STR_INIT;
		size_t a0, alen;

		i = skip_cfws(s, len, i);
		if (i >= len)
			break;
		if (s[i] == ';') {
			i++;
			continue;
		}
		a0 = i;
		while (i < len && (unsigned char)s[i] > 0x20 && s[i] != '=' &&
		       s[i] != ';' && s[i] != '(' && s[i] != '"' &&
		       s[i] != 0x7f)
			i++;
		alen = i - a0;
		i = skip_cfws(s, len, i);
		if (alen == 0 || i >= len || s[i] != '=') {
			/* Junk without a value: on to the next ';'. */
			i = skip_to_semicolon(s, len, i);
			continue;
		}
		i = skip_cfws(s, len, i + 1);
		if (i < len && s[i] == '"') {
			i = read_quoted(s, len, i, &value);
			i = skip_to_semicolon(s, len, i);
		} else {
			i = read_unquoted(s, len, i, &value);
		}
		split_attribute(s + a0, alen, &raw[n]);
		raw[n].value = xstrndup(str_c(&value), value.len);
		str_free(&value);
		n++;
	}
	return n;
}

/* Append an unencoded section to an extended (percent-encoded) value. */
static void append_percent_safe(struct str *out, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '%')
			str_append(out, "%25");
		else
			str_append_c(out, *v);
	}
}

/* Join the RFC 2231 sections of raw[first].name, in section order
 * (duplicates dropped, gaps ignored).  If any section is extended the
 * result is named "name*" and is one extended value, as Dovecot does. */
static void join_sections(const struct raw_param *raw, size_t n_raw,
			  size_t first, struct mime_param *out)
{
	size_t idx[MIME_MAX_PARAMS], n = 0, i, j;
	struct str v = STR_INIT;
	bool ext = false;

	for (i = first; i < n_raw; i++) {
		if (raw[i].section < 0 || !str_eq_ci(raw[i].name, raw[first].name))
			continue;
		/* insertion sort by section; equal sections: keep the first */
		for (j = 0; j < n && raw[idx[j]].section < raw[i].section; j++)
			;
		if (j < n && raw[idx[j]].section == raw[i].section)
			continue;
		memmove(idx + j + 1, idx + j, (n - j) * sizeof *idx);
		idx[j] = i;
		n++;
		ext = ext || raw[i].extended;
	}
	if (ext && !raw[idx[0]].extended)
		str_append(&v, "''");
	for (j = 0; j < n; j++) {
		if (ext && !raw[idx[j]].extended)
			append_percent_safe(&v, raw[idx[j]].value);
		else
			str_append(&v, raw[idx[j]].value);
	}
	if (ext) {
		struct str name = STR_INIT;

		str_printf(&name, "%s*", raw[first].name);
		out->name = xstrdup(str_c(&name));
		str_free(&name);
	} else {
		out->name = xstrdup(raw[first].name);
	}
	out->value = xstrdup(str_c(&v));
	str_free(&v);
}

/* Parse the parameters in s[i..len) into *params / *n_params. */
static void parse_params(const char *s, size_t len, size_t i,
			 struct mime_param **params, size_t *n_params)
{
	struct raw_param raw[MIME_MAX_PARAMS];
	struct mime_param *out;
	size_t n_raw, n = 0;

	n_raw = read_raw_params(s, len, i, raw, MIME_MAX_PARAMS);
	*params = NULL;
	*n_params = 0;
	if (n_raw == 0)
		return;
	out = xcalloc(n_raw, sizeof *out);
	for (i = 0; i < n_raw; i++) {
		bool seen = false;

		if (raw[i].section < 0) {
			if (raw[i].extended) {
				struct str name = STR_INIT;

				str_printf(&name, "%s*", raw[i].name);
				out[n].name = xstrdup(str_c(&name));
				str_free(&name);
			} else {
				out[n].name = xstrdup(raw[i].name);
			}
			out[n++].value = xstrdup(raw[i].value);
			continue;
		}
		for (size_t j = 0; j < i && !seen; j++)
			seen = raw[j].section >= 0 &&
			       str_eq_ci(raw[j].name, raw[i].name);
		if (!seen)
			join_sections(raw, n_raw, i, &out[n++]);
	}
	for (i = 0; i < n_raw; i++) {
		free(raw[i].name);
		free(raw[i].value);
	}
	*params = out;
	*n_params = n;
}

static void add_param(struct mime_part *p, const char *name, const char *value)
{
	p->params = xrealloc(p->params, (p->n_params + 1) * sizeof *p->params);
	p->params[p->n_params].name = xstrdup(name);
	p->params[p->n_params].value = xstrdup(value);
	p->n_params++;
}

/* A token starting at s[*i], lower-cased, or NULL. */
static char *read_token_lower(const char *s, size_t len, size_t *i)
{
	size_t start = *i;
	char *t;

	while (*i < len && is_token_char(s[*i]))
		(*i)++;
	if (*i == start)
		return NULL;
	t = xstrndup(s + start, *i - start);
	lower_in_place(t);
	return t;
}

/* Content-Type: type "/" subtype *(";" parameter).  False if invalid. */
static bool parse_content_type(const char *s, size_t len, struct mime_part *p)
{
	size_t i = skip_cfws(s, len, 0);
	char *type, *subtype;

	type = read_token_lower(s, len, &i);
	if (type == NULL)
		return false;
	i = skip_cfws(s, len, i);
	if (i >= len || s[i] != '/') {
		free(type);
		return false;
	}
	i = skip_cfws(s, len, i + 1);
	subtype = read_token_lower(s, len, &i);
	if (subtype == NULL) {
		free(type);
		return false;
	}
	p->type = type;
	p->subtype = subtype;
	parse_params(s, len, i, &p->params, &p->n_params);
	return true;
}

/* Content-Disposition: disposition-type *(";" parameter). */
static void parse_disposition(const char *s, size_t len, struct mime_part *p)
{
	size_t i = skip_cfws(s, len, 0);

	p->disposition = read_token_lower(s, len, &i);
	if (p->disposition != NULL)
		parse_params(s, len, i, &p->disp_params, &p->n_disp_params);
}

/* RFC 2045 5.2: text/plain; charset=us-ascii, or message/rfc822 as the
 * default inside multipart/digest. */
static void set_default_type(struct mime_part *p, bool in_digest)
{
	p->type = xstrdup(in_digest ? "message" : "text");
	p->subtype = xstrdup(in_digest ? "rfc822" : "plain");
	if (!in_digest)
		add_param(p, "charset", "us-ascii");
}

/* A simple field's value: unfolded, trimmed, NULL when empty. */
static char *simple_value(const char *f, size_t flen)
{
	struct str v = STR_INIT;
	char *r = NULL;

	field_value(f, flen, &v);
	if (v.len > 0)
		r = xstrndup(v.data, v.len);
	str_free(&v);
	return r;
}

/* Read the MIME fields of p's header [p->header, p->body). */
static void read_fields(const char *msg, struct mime_part *p, bool in_digest)
{
	const char *fields[F_COUNT] = { NULL };
	size_t flens[F_COUNT] = { 0 };
	size_t pos = p->header, nlen, flen;
	const char *name, *f;
	char **simple[F_COUNT] = {
		[F_ENCODING] = &p->encoding, [F_ID] = &p->id,
		[F_DESCRIPTION] = &p->description, [F_MD5] = &p->md5,
		[F_LANGUAGE] = &p->language, [F_LOCATION] = &p->location,
	};

	while (mime_header_next(msg, p->body, &pos, &name, &nlen, &f, &flen)) {
		if (nlen < 8 || !name_eq(name, 8, "content-"))
			continue;
		for (int k = 0; k < F_COUNT; k++) {
			if (fields[k] == NULL && name_eq(name, nlen, field_names[k])) {
				fields[k] = f;
				flens[k] = flen;
			}
		}
	}
	for (int k = 0; k < F_COUNT; k++) {
		if (simple[k] != NULL && fields[k] != NULL)
			*simple[k] = simple_value(fields[k], flens[k]);
	}
	if (fields[F_TYPE] != NULL) {
		struct str v = STR_INIT;

		field_value(fields[F_TYPE], flens[F_TYPE], &v);
		if (!parse_content_type(str_c(&v), v.len, p))
			set_default_type(p, in_digest);
		str_free(&v);
	} else {
		set_default_type(p, in_digest);
	}
	if (fields[F_DISPOSITION] != NULL) {
		struct str v = STR_INIT;

		field_value(fields[F_DISPOSITION], flens[F_DISPOSITION], &v);
		parse_disposition(str_c(&v), v.len, p);
		str_free(&v);
	}
}

/* --- the tree ------------------------------------------------------ */

struct delimiter {
	size_t before;		/* where the line end preceding it starts */
	size_t after;		/* after its own line end */
	bool close;
};

static void parse_part(struct mime_ctx *ctx, struct mime_part *p,
		       struct mime_part *parent, size_t start, size_t end,
		       unsigned depth, bool in_digest);

/* Whether the "--boundary" at pos (blen octets, already matched, at a
 * line start) is a delimiter line: followed by "--" for the close
 * delimiter, then optional transport padding and the line end. */
static bool delimiter_at(const char *msg, size_t pos, size_t blen,
			 size_t end, struct delimiter *d)
{
	size_t i = pos + blen;

	d->close = false;
	if (i + 1 < end && msg[i] == '-' && msg[i + 1] == '-') {
		d->close = true;
		i += 2;
	}
	while (i < end && is_wsp(msg[i]))
		i++;
	if (i == end || (msg[i] == '\r' && i + 1 == end)) {
		d->after = end;
		return true;
	}
	if (msg[i] == '\n') {
		d->after = i + 1;
		return true;
	}
	if (msg[i] == '\r' && msg[i + 1] == '\n') {
		d->after = i + 2;
		return true;
	}
	return false;
}

/* memmem over growing windows: as fast, but the sanitizers' check of the
 * whole haystack on each call stays proportional to what is scanned
 * (else many delimiters in a big body cost quadratic time under ASan).
 * *window is reset after a hit. */
static const char *find_pattern(const char *msg, size_t from, size_t end,
				const char *pat, size_t plen, size_t *window)
{
	size_t min_window = plen * 2 > 4096 ? plen * 2 : 4096;

	if (*window < min_window)
		*window = min_window;
	while (end - from >= plen) {
		size_t w = *window < end - from ? *window : end - from;
		const char *hit = memmem(msg + from, w, pat, plen);

		if (hit != NULL) {
			*window = min_window;
			return hit;
		}
		if (w == end - from)
			break;
		from += w - (plen - 1);		/* a match may straddle */
		if (*window < (size_t)1 << 24)
			*window *= 2;
	}
	return NULL;
}

/* Find up to max delimiter lines of boundary in p's body, stopping after
 * the close delimiter.  Returns how many (in *out, caller frees). */
static size_t find_delimiters(const char *msg, const struct mime_part *p,
			      const char *boundary, size_t max,
			      struct delimiter **out)
{
	size_t blen = strlen(boundary), from = p->body, n = 0, cap = 0;
	size_t window = 0;
	char *pattern;
	struct delimiter *d = NULL;

	/* RFC 2046 boundaries do not end in a blank; a delimiter line
	 * may (transport padding), so a trailing blank cannot matter. */
	while (blen > 0 && is_wsp(boundary[blen - 1]))
		blen--;
	if (blen == 0) {
		*out = NULL;
		return 0;
	}
	blen += 2;
	pattern = xmalloc(blen + 1);
	memcpy(pattern, "--", 2);
	memcpy(pattern + 2, boundary, blen - 2);
	while (n < max && from < p->end) {
		const char *hit = find_pattern(msg, from, p->end, pattern, blen,
					       &window);
		size_t pos;
		struct delimiter cur;

		if (hit == NULL)
			break;
		pos = (size_t)(hit - msg);
		if ((pos > p->body && msg[pos - 1] != '\n') ||
		    !delimiter_at(msg, pos, blen, p->end, &cur)) {
			/* Delimiters start lines: go on from the next one,
			 * which keeps the scan linear. */
			from = next_line(msg, pos, p->end);
			continue;
		}
		/* The line end before the delimiter belongs to it. */
		cur.before = pos;
		if (pos > p->body) {
			cur.before--;
			if (cur.before > p->body && msg[cur.before - 1] == '\r')
				cur.before--;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			d = xrealloc(d, cap * sizeof *d);
		}
		d[n++] = cur;
		if (cur.close)
			break;
		from = cur.after;
	}
	free(pattern);
	*out = d;
	return n;
}

static void parse_multipart(struct mime_ctx *ctx, struct mime_part *p,
			    unsigned depth)
{
	const char *boundary = mime_param(p, "boundary");
	size_t budget = MIME_MAX_PARTS - ctx->n_parts, n, n_open;
	struct delimiter *d;
	bool digest = strcmp(p->subtype, "digest") == 0;

	if (boundary == NULL || *boundary == '\0' || budget == 0)
		return;
	/* One more than the budget: the last part taken needs its end. */
	n = find_delimiters(ctx->msg, p, boundary, budget + 1, &d);
	n_open = n > 0 && d[n - 1].close ? n - 1 : n;
	if (n_open > budget)
		n_open = budget;
	if (n_open > 0) {
		p->children = xcalloc(n_open, sizeof *p->children);
		p->n_children = n_open;
		ctx->n_parts += n_open;
	}
	for (size_t i = 0; i < n_open; i++) {
		size_t start = d[i].after, end = p->end;

		if (i + 1 < n)
			end = d[i + 1].before > start ? d[i + 1].before : start;
		parse_part(ctx, &p->children[i], p, start, end, depth + 1,
			   digest);
	}
	free(d);
}

static bool is_message(const struct mime_part *p)
{
	return strcmp(p->type, "message") == 0 &&
	       (strcmp(p->subtype, "rfc822") == 0 ||
		strcmp(p->subtype, "global") == 0);
}

static void parse_part(struct mime_ctx *ctx, struct mime_part *p,
		       struct mime_part *parent, size_t start, size_t end,
		       unsigned depth, bool in_digest)
{
	memset(p, 0, sizeof *p);
	p->parent = parent;
	p->header = start;
	p->end = end;
	p->body = find_body(ctx->msg, start, end);
	read_fields(ctx->msg, p, in_digest);
	if (depth >= MIME_MAX_DEPTH)
		return;		/* too deep: an opaque leaf */
	if (strcmp(p->type, "multipart") == 0) {
		parse_multipart(ctx, p, depth);
	} else if (is_message(p) && ctx->n_parts < MIME_MAX_PARTS) {
		p->children = xcalloc(1, sizeof *p->children);
		p->n_children = 1;
		ctx->n_parts++;
		parse_part(ctx, p->children, p, p->body, p->end, depth + 1,
			   false);
	}
}

/* --- line counts ---------------------------------------------------- */

/* Counting each part's lines on its own would read nested parts once per
 * level; instead all the offsets are sorted and the message is read once,
 * noting how many LFs come before each offset. */
struct line_query {
	size_t offset;
	size_t index;		/* into the parts: 2 * part + (is end) */
};

static void collect_parts(struct mime_part *p, struct mime_part **parts,
			  size_t *n)
{
	parts[(*n)++] = p;
	for (size_t i = 0; i < p->n_children; i++)
		collect_parts(&p->children[i], parts, n);
}

static int query_cmp(const void *a, const void *b)
{
	const struct line_query *qa = a, *qb = b;

	return qa->offset < qb->offset ? -1 : qa->offset > qb->offset;
}

static size_t count_lf(const char *msg, size_t from, size_t to)
{
	size_t n = 0;

	while (from < to) {
		const char *nl = memchr(msg + from, '\n', to - from);

		if (nl == NULL)
			break;
		n++;
		from = (size_t)(nl - msg) + 1;
	}
	return n;
}

static void count_body_lines(const char *msg, struct mime_part *root,
			     size_t n_parts)
{
	struct mime_part **parts = xcalloc(n_parts, sizeof *parts);
	struct line_query *q = xcalloc(2 * n_parts, sizeof *q);
	size_t *lf_before = xcalloc(2 * n_parts, sizeof *lf_before);
	size_t n = 0, pos = 0, lfs = 0;

	collect_parts(root, parts, &n);
	for (size_t i = 0; i < n; i++) {
		q[2 * i] = (struct line_query){ parts[i]->body, 2 * i };
		q[2 * i + 1] = (struct line_query){ parts[i]->end, 2 * i + 1 };
	}
	qsort(q, 2 * n, sizeof *q, query_cmp);
	for (size_t i = 0; i < 2 * n; i++) {
		lfs += count_lf(msg, pos, q[i].offset);
		pos = q[i].offset;
		lf_before[q[i].index] = lfs;
	}
	for (size_t i = 0; i < n; i++) {
		struct mime_part *p = parts[i];

		/* a last line without line end counts too */
		p->body_lines = lf_before[2 * i + 1] - lf_before[2 * i] +
				(p->end > p->body && msg[p->end - 1] != '\n');
	}
	free(parts);
	free(q);
	free(lf_before);
}

void mime_parse(const char *msg, size_t len, struct mime_part *root)
{
	struct mime_ctx ctx = { msg, 1 };

	parse_part(&ctx, root, NULL, 0, len, 0, false);
	count_body_lines(msg, root, ctx.n_parts);
}

static void free_params(struct mime_param *params, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(params[i].name);
		free(params[i].value);
	}
	free(params);
}

void mime_free(struct mime_part *root)
{
	/* Recursion depth is bounded by MIME_MAX_DEPTH. */
	for (size_t i = 0; i < root->n_children; i++)
		mime_free(&root->children[i]);
	free(root->children);
	free(root->type);
	free(root->subtype);
	free_params(root->params, root->n_params);
	free(root->id);
	free(root->description);
	free(root->encoding);
	free(root->md5);
	free(root->language);
	free(root->location);
	free(root->disposition);
	free_params(root->disp_params, root->n_disp_params);
	memset(root, 0, sizeof *root);
}

const char *mime_param(const struct mime_part *p, const char *name)
{
	for (size_t i = 0; i < p->n_params; i++) {
		if (str_eq_ci(p->params[i].name, name))
			return p->params[i].value;
	}
	return NULL;
}

/* --- section numbers ----------------------------------------------- */

/* Read a nonzero part number without leading zeros at section[*i]. */
static size_t read_part_number(const char *section, size_t len, size_t *i)
{
	size_t n = 0, start = *i;

	while (*i < len && section[*i] >= '0' && section[*i] <= '9') {
		if (*i - start >= 9)
			return 0;	/* absurd: no such part */
		n = n * 10 + (size_t)(section[*i] - '0');
		(*i)++;
	}
	if (*i == start || section[start] == '0')
		return 0;
	return n;
}

const struct mime_part *mime_find_part(const struct mime_part *root,
				       const char *section, size_t len)
{
	const struct mime_part *cur = root;
	size_t i = 0;
	bool first = true;

	if (len == 0)
		return root;
	while (i <= len) {
		const struct mime_part *node = cur;
		size_t n = read_part_number(section, len, &i);

		if (n == 0 || (i < len && section[i] != '.'))
			return NULL;
		if (!first && is_message(cur)) {
			/* numbers inside message/rfc822 are its message's */
			if (cur->n_children == 0)
				return NULL;
			node = cur->children;
		} else if (!first && strcmp(cur->type, "multipart") != 0) {
			return NULL;
		}
		if (strcmp(node->type, "multipart") == 0) {
			if (n > node->n_children)
				return NULL;
			cur = &node->children[n - 1];
		} else {
			if (n != 1)
				return NULL;
			cur = node;
		}
		first = false;
		if (i == len)
			break;
		i++;		/* the '.' */
		if (i == len)
			return NULL;	/* trailing dot */
	}
	return cur;
}
