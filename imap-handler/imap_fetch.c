/*
 * imap_fetch: the FETCH command (RFC 3501 6.4.5, 7.4.2).  The attribute
 * list is parsed and checked before any output; then each message gets one
 * "* n FETCH (...)" response.  What can come from memory (UID, FLAGS,
 * RFC822.SIZE) or from the folder's cache (ENVELOPE, BODY, BODYSTRUCTURE)
 * does not open the message file; ENVELOPE alone reads only the header.
 * Message text goes out as literals written straight from the loaded
 * message, never copied into the response.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap.h"
#include "imap_fetch_build.h"
#include "imap_message.h"

#define FETCH_MAX_ATTS 1000

enum fetch_kind {
	FETCH_UID,
	FETCH_FLAGS,
	FETCH_INTERNALDATE,
	FETCH_RFC822_SIZE,
	FETCH_ENVELOPE,
	FETCH_BODY,		/* BODY without a section: the structure */
	FETCH_BODYSTRUCTURE,
	FETCH_RFC822,
	FETCH_RFC822_HEADER,
	FETCH_RFC822_TEXT,
	FETCH_SECTION,		/* BODY[...] and BODY.PEEK[...] */
};

struct fetch_item {
	enum fetch_kind kind;
	bool peek;
	bool partial;
	uint32_t origin, octets;
	struct imap_section sec;
	char *name;		/* FETCH_SECTION: "BODY[...]<origin>" */
};

struct fetch_ctx {
	struct fetch_item *items;
	size_t n;
	bool uid, flags;	/* UID / FLAGS requested */
	bool sets_seen;		/* some item implies \Seen */
	/* per message */
	struct str envelope, body, bodystructure, built, line;
	bool have_envelope, have_body, have_bodystructure;
	bool expunged, failed;
};

static const struct {
	const char *name;
	enum fetch_kind kind;
} simple_atts[] = {
	{ "UID", FETCH_UID },
	{ "FLAGS", FETCH_FLAGS },
	{ "INTERNALDATE", FETCH_INTERNALDATE },
	{ "RFC822.SIZE", FETCH_RFC822_SIZE },
	{ "ENVELOPE", FETCH_ENVELOPE },
	{ "BODY", FETCH_BODY },
	{ "BODYSTRUCTURE", FETCH_BODYSTRUCTURE },
	{ "RFC822", FETCH_RFC822 },
	{ "RFC822.HEADER", FETCH_RFC822_HEADER },
	{ "RFC822.TEXT", FETCH_RFC822_TEXT },
};

static struct fetch_item *add_item(struct fetch_ctx *x, enum fetch_kind kind)
{
	x->items = xrealloc(x->items, (x->n + 1) * sizeof *x->items);
	struct fetch_item *it = &x->items[x->n++];
	memset(it, 0, sizeof *it);
	it->kind = kind;
	if (kind == FETCH_UID)
		x->uid = true;
	if (kind == FETCH_FLAGS)
		x->flags = true;
	if (kind == FETCH_RFC822 || kind == FETCH_RFC822_TEXT)
		x->sets_seen = true;
	return it;
}

/* A number of 1..10 digits up to 2^32-1 from *p, advancing it. */
static int parse_number(const char **p, uint32_t *out)
{
	uint64_t v = 0;
	size_t n = 0;
	while (isdigit((unsigned char)**p) && n < 11) {
		v = v * 10 + (uint64_t)(**p - '0');
		(*p)++;
		n++;
	}
	if (n == 0 || n > 10 || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* The "]" closing the section that starts after open ('[' at open[-1]),
 * skipping quoted strings; NULL if there is none. */
static const char *section_end(const char *p)
{
	bool quoted = false;
	for (; *p != '\0'; p++) {
		if (quoted) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				quoted = false;
		} else if (*p == '"') {
			quoted = true;
		} else if (*p == ']') {
			return p;
		}
	}
	return NULL;
}

/* BODY[section]<partial> / BODY.PEEK[...]: 0 or -1 (syntax). */
static int parse_section_att(struct fetch_ctx *x, const char *att)
{
	bool peek;
	const char *p;
	if (strncasecmp(att, "BODY[", 5) == 0) {
		peek = false;
		p = att + 5;
	} else if (strncasecmp(att, "BODY.PEEK[", 10) == 0) {
		peek = true;
		p = att + 10;
	} else {
		return -1;
	}
	const char *end = section_end(p);
	if (end == NULL)
		return -1;
	char *spec = xstrndup(p, (size_t)(end - p));
	struct imap_section sec;
	int ret = imap_section_parse(spec, &sec);
	free(spec);
	if (ret < 0)
		return -1;

	struct fetch_item *it = add_item(x, FETCH_SECTION);
	it->sec = sec;
	it->peek = peek;
	if (!peek)
		x->sets_seen = true;
	p = end + 1;
	if (*p == '<') {
		p++;
		if (parse_number(&p, &it->origin) < 0 || *p++ != '.' ||
		    parse_number(&p, &it->octets) < 0 || it->octets == 0 ||
		    *p++ != '>')
			return -1;
		it->partial = true;
	}
	if (*p != '\0')
		return -1;
	struct str name = STR_INIT;
	str_append(&name, "BODY[");
	imap_section_format(&it->sec, &name);
	str_append_c(&name, ']');
	if (it->partial)
		str_printf(&name, "<%u>", it->origin);
	it->name = xstrdup(str_c(&name));
	str_free(&name);
	return 0;
}

static int parse_att(struct fetch_ctx *x, const struct imap_arg *a)
{
	if (a->type != IMAP_ARG_ATOM)
		return -1;
	for (size_t i = 0; i < sizeof simple_atts / sizeof *simple_atts; i++)
		if (strcasecmp(a->str, simple_atts[i].name) == 0) {
			add_item(x, simple_atts[i].kind);
			return 0;
		}
	return parse_section_att(x, a->str);
}

/* The macros of RFC 3501 6.4.5 (only as the whole attribute argument). */
static bool parse_macro(struct fetch_ctx *x, const struct imap_arg *a)
{
	static const enum fetch_kind fast[] = {
		FETCH_FLAGS, FETCH_INTERNALDATE, FETCH_RFC822_SIZE,
	};
	int extra;
	if (imap_arg_atom_is(a, "FAST"))
		extra = 0;
	else if (imap_arg_atom_is(a, "ALL"))
		extra = 1;
	else if (imap_arg_atom_is(a, "FULL"))
		extra = 2;
	else
		return false;
	for (size_t i = 0; i < sizeof fast / sizeof *fast; i++)
		add_item(x, fast[i]);
	if (extra >= 1)
		add_item(x, FETCH_ENVELOPE);
	if (extra >= 2)
		add_item(x, FETCH_BODY);
	return true;
}

static int parse_atts(struct fetch_ctx *x, const struct imap_arg *a)
{
	if (a->type == IMAP_ARG_LIST) {
		if (a->count == 0 || a->count > FETCH_MAX_ATTS)
			return -1;
		for (size_t i = 0; i < a->count; i++)
			if (parse_att(x, &a->list[i]) < 0)
				return -1;
		return 0;
	}
	if (parse_macro(x, a))
		return 0;
	return parse_att(x, a);
}

static void fetch_ctx_free(struct fetch_ctx *x)
{
	for (size_t i = 0; i < x->n; i++) {
		imap_section_free(&x->items[i].sec);
		free(x->items[i].name);
	}
	free(x->items);
	str_free(&x->envelope);
	str_free(&x->body);
	str_free(&x->bodystructure);
	str_free(&x->built);
	str_free(&x->line);
}

/* ---- output ---- */

static void flush_line(struct imap_session *s, struct fetch_ctx *x)
{
	stream_write(&s->io, x->line.data, x->line.len);
	str_clear(&x->line);
}

/* Message text as a literal (a quoted "" when empty).  IMAP4rev1 has no
 * NUL in a literal: a NUL octet goes out as 0x80, as Dovecot does. */
static void write_literal(struct imap_session *s, struct fetch_ctx *x,
			  const char *data, size_t len)
{
	if (len == 0) {
		str_append(&x->line, "\"\"");
		return;
	}
	str_printf(&x->line, "{%zu}\r\n", len);
	flush_line(s, x);
	while (len > 0) {
		const char *nul = memchr(data, '\0', len);
		size_t n = nul != NULL ? (size_t)(nul - data) : len;
		stream_write(&s->io, data, n);
		if (nul == NULL)
			break;
		stream_write(&s->io, "\x80", 1);
		data += n + 1;
		len -= n + 1;
	}
}

static void write_partial(struct imap_session *s, struct fetch_ctx *x,
			  const struct fetch_item *it, const char *data,
			  size_t len)
{
	if (it->partial) {
		if (it->origin >= len) {
			len = 0;
		} else {
			data += it->origin;
			len -= it->origin;
			if (len > it->octets)
				len = it->octets;
		}
	}
	write_literal(s, x, data, len);
}

static void write_section(struct imap_session *s, struct fetch_ctx *x,
			  const struct fetch_item *it, struct imap_message *m)
{
	const char *text = str_c(&m->text);
	size_t len = m->text.len;
	/* sections of the message itself need only its header offsets,
	 * not the MIME parse */
	struct mime_part top = { 0 };
	const struct mime_part *root = &top;
	if (it->sec.part != NULL) {
		root = imap_message_mime(m);
	} else {
		top.body = imap_message_header_end(m);
		top.end = len;
	}
	const char *data;
	size_t data_len;
	str_append(&x->line, it->name);
	str_append_c(&x->line, ' ');
	if (!imap_fetch_section(text, len, root, &it->sec, &x->built, &data,
				&data_len))
		str_append(&x->line, "NIL");
	else
		write_partial(s, x, it, data, data_len);
}

/* ---- per message ---- */

/* Does the item need the message's header / whole text (after looking
 * in the cache)? */
static void item_needs(struct imap_session *s, struct fetch_ctx *x,
		       const struct fetch_item *it, uint32_t uid,
		       bool *header, bool *whole)
{
	switch (it->kind) {
	case FETCH_ENVELOPE:
		if (!x->have_envelope)
			x->have_envelope = imap_folder_cache_get(s->sel, uid,
								 'E', &x->envelope);
		*header |= !x->have_envelope;
		break;
	case FETCH_BODY:
		if (!x->have_body)
			x->have_body = imap_folder_cache_get(s->sel, uid, 'b',
							     &x->body);
		*whole |= !x->have_body;
		break;
	case FETCH_BODYSTRUCTURE:
		if (!x->have_bodystructure)
			x->have_bodystructure = imap_folder_cache_get(
				s->sel, uid, 'B', &x->bodystructure);
		*whole |= !x->have_bodystructure;
		break;
	case FETCH_RFC822_HEADER:
		*header = true;
		break;
	case FETCH_RFC822:
	case FETCH_RFC822_TEXT:
		*whole = true;
		break;
	case FETCH_SECTION:
		if (it->sec.part == NULL &&
		    (it->sec.kind == IMAP_SECTION_HEADER ||
		     it->sec.kind == IMAP_SECTION_HEADER_FIELDS ||
		     it->sec.kind == IMAP_SECTION_HEADER_FIELDS_NOT))
			*header = true;
		else
			*whole = true;
		break;
	default:
		break;
	}
}

/* Compute (and cache) what the cache did not have. */
static void compute_missing(struct imap_session *s, struct fetch_ctx *x,
			    struct imap_message *m, uint32_t uid)
{
	bool want_env = false, want_body = false, want_bs = false;
	for (size_t j = 0; j < x->n; j++) {
		want_env |= x->items[j].kind == FETCH_ENVELOPE;
		want_body |= x->items[j].kind == FETCH_BODY;
		want_bs |= x->items[j].kind == FETCH_BODYSTRUCTURE;
	}
	if (want_env && !x->have_envelope) {
		str_clear(&x->envelope);
		imap_envelope_build(str_c(&m->text), 0,
				    imap_message_header_end(m), &x->envelope);
		imap_folder_cache_put(s->sel, uid, 'E', x->envelope.data,
				      x->envelope.len);
	}
	if (want_body && !x->have_body) {
		str_clear(&x->body);
		imap_bodystructure_build(str_c(&m->text), imap_message_mime(m),
					 false, &x->body);
		imap_folder_cache_put(s->sel, uid, 'b', x->body.data,
				      x->body.len);
	}
	if (want_bs && !x->have_bodystructure) {
		str_clear(&x->bodystructure);
		imap_bodystructure_build(str_c(&m->text), imap_message_mime(m),
					 true, &x->bodystructure);
		imap_folder_cache_put(s->sel, uid, 'B', x->bodystructure.data,
				      x->bodystructure.len);
	}
}

static void write_item(struct imap_session *s, struct fetch_ctx *x,
		       const struct fetch_item *it, size_t i,
		       struct imap_message *m, int64_t internaldate)
{
	const struct imap_msg *msg = &s->sel->msgs[i];
	size_t hdr_end = m != NULL ? imap_message_header_end(m) : 0;

	switch (it->kind) {
	case FETCH_UID:
		break;		/* written first */
	case FETCH_FLAGS:
		str_append(&x->line, "FLAGS ");
		imap_folder_format_flags(s->sel, i, &x->line);
		break;
	case FETCH_INTERNALDATE:
		str_append(&x->line, "INTERNALDATE ");
		imap_format_datetime(internaldate, &x->line);
		break;
	case FETCH_RFC822_SIZE:
		str_printf(&x->line, "RFC822.SIZE %llu",
			   (unsigned long long)msg->size);
		break;
	case FETCH_ENVELOPE:
		str_append(&x->line, "ENVELOPE ");
		str_append_n(&x->line, x->envelope.data, x->envelope.len);
		break;
	case FETCH_BODY:
		str_append(&x->line, "BODY ");
		str_append_n(&x->line, x->body.data, x->body.len);
		break;
	case FETCH_BODYSTRUCTURE:
		str_append(&x->line, "BODYSTRUCTURE ");
		str_append_n(&x->line, x->bodystructure.data,
			     x->bodystructure.len);
		break;
	case FETCH_RFC822:
		str_append(&x->line, "RFC822 ");
		write_literal(s, x, m->text.data, m->text.len);
		break;
	case FETCH_RFC822_HEADER:
		str_append(&x->line, "RFC822.HEADER ");
		write_literal(s, x, m->text.data, hdr_end);
		break;
	case FETCH_RFC822_TEXT:
		str_append(&x->line, "RFC822.TEXT ");
		write_literal(s, x, m->text.data + hdr_end,
			      m->text.len - hdr_end);
		break;
	case FETCH_SECTION:
		write_section(s, x, it, m);
		break;
	}
}

/* Set \Seen implied by a body fetch (RFC 3501 6.4.5); true if the flags
 * changed, so that FLAGS must be sent. */
static bool mark_seen(struct imap_session *s, const struct fetch_ctx *x,
		      size_t i)
{
	struct imap_folder *f = s->sel;
	const struct imap_msg *msg = &f->msgs[i];
	if (!x->sets_seen || f->readonly || (msg->flags & IMAP_FLAG_SEEN) ||
	    (msg->state & IMAP_MSG_GONE))
		return false;
	return imap_folder_set_flags(f, i, msg->flags | IMAP_FLAG_SEEN,
				     msg->keywords) == 0;
}

static void fetch_one(struct imap_session *s, struct fetch_ctx *x, size_t i)
{
	struct imap_folder *f = s->sel;
	uint32_t uid = f->msgs[i].uid;
	bool gone = (f->msgs[i].state & IMAP_MSG_GONE) != 0;
	bool header = false, whole = false, date = false;
	int64_t internaldate = 0;
	struct imap_message *m = NULL;

	str_clear(&x->envelope);
	str_clear(&x->body);
	str_clear(&x->bodystructure);
	x->have_envelope = x->have_body = x->have_bodystructure = false;
	for (size_t j = 0; j < x->n; j++) {
		item_needs(s, x, &x->items[j], uid, &header, &whole);
		date |= x->items[j].kind == FETCH_INTERNALDATE;
	}
	if (gone && (header || whole || date)) {
		/* expunged by another session: the text is lost */
		x->expunged = true;
		return;
	}
	if (date && imap_folder_msg_internaldate(f, i, &internaldate) < 0) {
		x->expunged = true;
		return;
	}
	if (header || whole) {
		m = imap_message_get(s, i, !whole);
		if (m == NULL) {
			if (errno == ENOENT)
				x->expunged = true;
			else
				x->failed = true;
			return;
		}
		compute_missing(s, x, m, uid);
	}
	bool add_flags = mark_seen(s, x, i) && !x->flags;

	str_printf(&x->line, "* %zu FETCH (", i + 1);
	bool first = true;
	if (x->uid) {
		str_printf(&x->line, "UID %u", uid);
		first = false;
	}
	for (size_t j = 0; j < x->n; j++) {
		if (x->items[j].kind == FETCH_UID)
			continue;
		if (!first)
			str_append_c(&x->line, ' ');
		first = false;
		write_item(s, x, &x->items[j], i, m, internaldate);
	}
	if (add_flags) {
		str_append(&x->line, first ? "FLAGS " : " FLAGS ");
		imap_folder_format_flags(f, i, &x->line);
	}
	str_append(&x->line, ")\r\n");
	flush_line(s, x);
	s->fetched++;
}

void imap_cmd_fetch(struct imap_session *s, struct imap_command *c)
{
	struct fetch_ctx x = { 0 };
	size_t *idx = NULL, n = 0;

	if (c->argc != 2) {
		imap_bad(s, c, "FETCH needs a sequence set and attributes");
		return;
	}
	if (parse_atts(&x, &c->args[1]) < 0 || x.n > FETCH_MAX_ATTS) {
		fetch_ctx_free(&x);
		imap_bad(s, c, "Invalid fetch attributes");
		return;
	}
	if (c->uid && !x.uid)
		add_item(&x, FETCH_UID);
	if (imap_resolve_set(s, c, &c->args[0], &idx, &n) < 0) {
		fetch_ctx_free(&x);
		return;
	}
	for (size_t k = 0; k < n && s->io.status == STREAM_OK; k++)
		fetch_one(s, &x, idx[k]);
	free(idx);
	/* the cache's batched values written, its read lock released */
	imap_folder_cache_flush(s->sel);
	/* the implicit \Seen made durable before OK */
	if (imap_folder_sync_flags(s->sel) != 0)
		x.failed = true;

	bool expunged = x.expunged, failed = x.failed;
	fetch_ctx_free(&x);
	if (expunged)
		imap_no(s, c, "Some messages were expunged");
	else if (failed)
		imap_no(s, c, "Some messages could not be read");
	else
		imap_ok(s, c, "Fetch completed");
}
