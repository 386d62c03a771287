/*
 * fuzz_mime: the MIME structure parser (common/mime.c) and what FETCH
 * builds from its tree (imap_envelope.c, imap_bodystructure.c): the input
 * is a message, in an exactly sized buffer so that ASan sees any read past
 * its end.
 *
 * Invariants:
 *  - tree: every part's header <= body <= end lies inside the message and
 *    inside its parent's body; siblings are in order without overlap;
 *    parent pointers are right; type/subtype are set and lower case;
 *    body_lines counts the part's lines; depth and part count stay within
 *    MIME_MAX_DEPTH / MIME_MAX_PARTS; mime_find_part finds every part
 *    under its IMAP section number;
 *  - ENVELOPE, BODY and BODYSTRUCTURE of the message (and of every
 *    encapsulated message) parse with imap_command_parse as one list and
 *    follow RFC 3501's grammar (field counts, strings/NIL/numbers where
 *    they belong, addresses of four nstrings), with sizes, line counts and
 *    the number of parts matching the tree;
 *  - sections: for section specs built from the tree and the input
 *    (part numbers, .MIME, .HEADER, .TEXT, HEADER.FIELDS (.NOT) with
 *    field names of the message), imap_fetch_section's data lies inside
 *    the message (or the built buffer), and imap_section_format's text
 *    parses back to the same text.  mime_header_next walks each header
 *    block in bounds and mime_header_get agrees with it on presence, its
 *    value a terminated string.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_fetch_build.h"
#include "imap_parser.h"
#include "mime.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PATHS_MAX 40		/* parts whose sections are fetched */

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_mime: invariant broken: %s\n", what);
		abort();
	}
}

static const char *msg;
static size_t msg_len;

/* ------------------------------------------------------------ the tree */

static bool lower_text(const char *s)
{
	if (s == NULL)
		return false;
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			return false;
	return true;
}

static size_t count_lines(size_t from, size_t to)
{
	size_t n = 0;
	for (size_t i = from; i < to; i++)
		n += msg[i] == '\n';
	return n + (to > from && msg[to - 1] != '\n');
}

static bool is_message(const struct mime_part *p)
{
	return strcmp(p->type, "message") == 0 &&
	       (strcmp(p->subtype, "rfc822") == 0 ||
		strcmp(p->subtype, "global") == 0);
}

static size_t n_parts;

static void check_params(const struct mime_param *p, size_t n)
{
	check(n <= MIME_MAX_PARAMS, "too many parameters");
	for (size_t i = 0; i < n; i++)
		check(p[i].name != NULL && p[i].value != NULL, "parameter");
}

static void check_part(const struct mime_part *p,
		       const struct mime_part *parent, unsigned depth)
{
	n_parts++;
	check(depth <= MIME_MAX_DEPTH, "tree too deep");
	check(p->parent == parent, "parent pointer");
	check(p->header <= p->body && p->body <= p->end && p->end <= msg_len,
	      "offsets outside the message");
	if (parent != NULL)
		check(p->header >= parent->body && p->end <= parent->end,
		      "part outside its parent's body");
	check(lower_text(p->type) && lower_text(p->subtype),
	      "type/subtype missing or not lower case");
	check(p->disposition == NULL || lower_text(p->disposition),
	      "disposition not lower case");
	check_params(p->params, p->n_params);
	check_params(p->disp_params, p->n_disp_params);
	check(p->body_lines == count_lines(p->body, p->end), "body_lines");
	check(p->n_children == 0 || p->children != NULL, "children");
	if (strcmp(p->type, "multipart") != 0)
		check(p->n_children <= (is_message(p) ? 1u : 0u),
		      "children of a leaf");
	for (size_t i = 0; i < p->n_children; i++) {
		const struct mime_part *c = &p->children[i];
		check_part(c, p, depth + 1);
		if (i > 0)
			check(c->header >= p->children[i - 1].end,
			      "siblings overlap");
	}
	if (is_message(p) && p->n_children == 1)
		check(p->children[0].header == p->body &&
		      p->children[0].end == p->end,
		      "encapsulated message is not the body");
}

/* Every part with its IMAP section number (RFC 3501 6.4.5). */
struct path {
	const struct mime_part *part;
	char name[IMAP_SECTION_PART_MAX + 16];
};

static struct path paths[PATHS_MAX];
static size_t n_paths;

static void add_path(const struct mime_part *p, const char *prefix,
		     size_t number);

/* The numbered parts inside p (a multipart's parts, or those of a
 * message/rfc822's message), numbered below name. */
static void number_inside(const struct mime_part *p, const char *name)
{
	const struct mime_part *m = p;
	if (is_message(p)) {
		if (p->n_children == 0)
			return;
		m = &p->children[0];
	}
	if (strcmp(m->type, "multipart") == 0) {
		for (size_t i = 0; i < m->n_children; i++)
			add_path(&m->children[i], name, i + 1);
	} else if (m != p) {
		add_path(m, name, 1);
	}
}

static void add_path(const struct mime_part *p, const char *prefix,
		     size_t number)
{
	if (n_paths == PATHS_MAX)
		return;
	struct path *x = &paths[n_paths];
	int n = snprintf(x->name, sizeof x->name, "%s%s%zu", prefix,
			 *prefix != '\0' ? "." : "", number);
	if (n < 0 || (size_t)n > IMAP_SECTION_PART_MAX)
		return;
	x->part = p;
	n_paths++;
	char name[sizeof x->name];
	memcpy(name, x->name, sizeof name);
	number_inside(p, name);
}

static void number_parts(const struct mime_part *root)
{
	n_paths = 0;
	if (strcmp(root->type, "multipart") == 0) {
		for (size_t i = 0; i < root->n_children; i++)
			add_path(&root->children[i], "", i + 1);
	} else {
		add_path(root, "", 1);
	}
}

/* ----------------------------------------------- response grammar */

static bool is_str(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL;
}

static bool is_nstr(const struct imap_arg *a)
{
	return is_str(a) || a->type == IMAP_ARG_NIL;
}

static bool is_number(const struct imap_arg *a, uint64_t *v)
{
	return a->type == IMAP_ARG_ATOM && imap_parse_u64(a->str, v) == 0;
}

/*
 * body-type-mpart is "1*body SP media-subtype": its bodies follow each
 * other without a space, ")(", which a command's argument list does not
 * allow.  Copy text with a space put there, strings and literals copied
 * as they are.
 */
static void space_bodies(const char *t, size_t len, struct str *out)
{
	size_t i = 0;
	while (i < len) {
		char c = t[i];
		if (c == '"') {
			size_t j = i + 1;
			while (j < len && t[j] != '"')
				j += t[j] == '\\' ? 2 : 1;
			j = j < len ? j + 1 : len;
			str_append_n(out, t + i, j - i);
			i = j;
			continue;
		}
		if (c == '{' && i + 1 < len && isdigit((unsigned char)t[i + 1])) {
			/* t is a struct str's text: NUL-terminated */
			char *end;
			unsigned long long n = strtoull(t + i + 1, &end, 10);
			size_t head = (size_t)(end - (t + i));
			if (end > t + i + 1 && (size_t)(end - t) + 3 <= len &&
			    memcmp(end, "}\r\n", 3) == 0 &&
			    n <= len - (size_t)(end - t) - 3) {
				size_t total = head + 3 + (size_t)n;
				str_append_n(out, t + i, total);
				i += total;
				continue;
			}
		}
		str_append_c(out, c);
		if (c == ')' && i + 1 < len && t[i + 1] == '(')
			str_append_c(out, ' ');
		i++;
	}
}

/* Parse "a X <text>" into cmd: one argument expected. */
static const struct imap_arg *parse_one(const char *text, size_t len,
					struct imap_command *cmd)
{
	struct str line = STR_INIT, err = STR_INIT;
	str_append(&line, "a X ");
	space_bodies(text, len, &line);
	str_append(&line, "\r\n");
	enum imap_read_result r = imap_command_parse(str_c(&line), line.len,
						     0, cmd, &err);
	if (r != IMAP_READ_OK)
		fprintf(stderr, "refused (%s): %.*s\n", str_c(&err),
			(int)(len < 400 ? len : 400), text);
	check(r == IMAP_READ_OK, "output does not parse");
	check(cmd->argc == 1, "output is not one item");
	str_free(&line);
	str_free(&err);
	return &cmd->args[0];
}

static void check_address_list(const struct imap_arg *a)
{
	if (a->type == IMAP_ARG_NIL)
		return;
	check(a->type == IMAP_ARG_LIST && a->count > 0, "address list");
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *ad = &a->list[i];
		check(ad->type == IMAP_ARG_LIST && ad->count == 4, "address");
		for (size_t j = 0; j < 4; j++)
			check(is_nstr(&ad->list[j]), "address field");
	}
}

static void check_envelope(const struct imap_arg *a)
{
	check(a->type == IMAP_ARG_LIST && a->count == 10, "envelope fields");
	check(is_nstr(&a->list[0]) && is_nstr(&a->list[1]),
	      "envelope date/subject");
	for (size_t i = 2; i < 8; i++)
		check_address_list(&a->list[i]);
	check(is_nstr(&a->list[8]) && is_nstr(&a->list[9]),
	      "envelope in-reply-to/message-id");
}

static void check_param_list(const struct imap_arg *a)
{
	if (a->type == IMAP_ARG_NIL)
		return;
	check(a->type == IMAP_ARG_LIST && a->count > 0 && a->count % 2 == 0,
	      "body-fld-param");
	for (size_t i = 0; i < a->count; i++)
		check(is_str(&a->list[i]), "body-fld-param member");
}

/* body-ext: dsp lang loc */
static void check_common_ext(const struct imap_arg *a)
{
	if (a[0].type != IMAP_ARG_NIL) {
		check(a[0].type == IMAP_ARG_LIST && a[0].count == 2 &&
		      is_str(&a[0].list[0]), "body-fld-dsp");
		check_param_list(&a[0].list[1]);
	}
	if (a[1].type == IMAP_ARG_LIST) {
		check(a[1].count > 0, "body-fld-lang list");
		for (size_t i = 0; i < a[1].count; i++)
			check(is_str(&a[1].list[i]), "body-fld-lang member");
	} else {
		check(is_nstr(&a[1]), "body-fld-lang");
	}
	check(is_nstr(&a[2]), "body-fld-loc");
}

static void check_body(const struct imap_arg *a, const struct mime_part *p,
		       bool extended)
{
	check(a->type == IMAP_ARG_LIST && a->count > 0, "body");
	const struct imap_arg *v = a->list;
	if (strcmp(p->type, "multipart") == 0) {
		size_t n = 0;
		while (n < a->count && v[n].type == IMAP_ARG_LIST)
			n++;
		check(n == (p->n_children > 0 ? p->n_children : 1),
		      "multipart body count");
		check(a->count == n + 1 + (extended ? 4 : 0),
		      "multipart field count");
		for (size_t i = 0; i < p->n_children; i++)
			check_body(&v[i], &p->children[i], extended);
		check(is_str(&v[n]), "multipart subtype");
		if (extended) {
			check_param_list(&v[n + 1]);
			check_common_ext(&v[n + 2]);
		}
		return;
	}
	bool text = strcmp(p->type, "text") == 0;
	bool rfc822 = strcmp(p->type, "message") == 0 &&
		      strcmp(p->subtype, "rfc822") == 0;
	size_t want = 7 + (rfc822 ? 3 : 0) + (text ? 1 : 0) +
		      (extended ? 4 : 0);
	check(a->count == want, "single part field count");
	check(is_str(&v[0]) && is_str(&v[1]), "type/subtype");
	check(strcasecmp(v[0].str, p->type) == 0 &&
	      strcasecmp(v[1].str, p->subtype) == 0, "type/subtype text");
	check_param_list(&v[2]);
	check(is_nstr(&v[3]) && is_nstr(&v[4]), "body-fld-id/desc");
	check(is_str(&v[5]), "body-fld-enc");
	uint64_t size, lines;
	check(is_number(&v[6], &size) && size == p->end - p->body,
	      "body-fld-octets");
	size_t i = 7;
	if (rfc822) {
		check_envelope(&v[7]);
		if (p->n_children > 0)
			check_body(&v[8], &p->children[0], extended);
		else
			check(v[8].type == IMAP_ARG_LIST, "rfc822 body");
		i = 9;
	}
	if (text || rfc822) {
		check(is_number(&v[i], &lines) && lines == p->body_lines,
		      "body-fld-lines");
		i++;
	}
	if (extended) {
		check(is_nstr(&v[i]), "body-fld-md5");
		check_common_ext(&v[i + 1]);
	}
}

static void check_structure(const struct mime_part *p, bool extended)
{
	struct str out = STR_INIT;
	struct imap_command cmd;
	imap_bodystructure_build(msg, p, extended, &out);
	check_body(parse_one(out.data, out.len, &cmd), p, extended);
	imap_command_free(&cmd);
	str_free(&out);
}

static void check_envelope_of(const struct mime_part *p)
{
	struct str out = STR_INIT;
	struct imap_command cmd;
	imap_envelope_build(msg, p->header, p->body, &out);
	check_envelope(parse_one(out.data, out.len, &cmd));
	imap_command_free(&cmd);
	str_free(&out);
}

/* ---------------------------------------------------------- headers */

/* The names of the header fields of [start, end), for HEADER.FIELDS. */
static void header_walk(size_t start, size_t end, struct strlist *names)
{
	size_t pos = start, name_len, field_len, n = 0;
	const char *name, *field;
	while (mime_header_next(msg, end, &pos, &name, &name_len, &field,
				&field_len)) {
		check(pos <= end && n++ <= end - start, "header walk");
		check(field >= msg + start && field + field_len <= msg + end &&
		      name >= field && name + name_len <= field + field_len,
		      "field outside the header");
		if (name_len == 0 || name_len > 40 || names->n >= 6)
			continue;
		bool atom = true;
		for (size_t i = 0; i < name_len; i++)
			atom = atom && name[i] > ' ' && name[i] < 0x7f &&
			       strchr("()\"\\{%*:", name[i]) == NULL;
		if (!atom)
			continue;
		char buf[41];
		memcpy(buf, name, name_len);
		buf[name_len] = '\0';
		struct str value = STR_INIT;
		check(mime_header_get(msg, start, end, buf, &value),
		      "mime_header_get misses a field mime_header_next found");
		check(value.data != NULL && value.data[value.len] == '\0' &&
		      strlen(value.data) <= value.len,
		      "header value not terminated");
		str_free(&value);
		strlist_add(names, buf);
	}
}

/* ---------------------------------------------------------- sections */

static bool printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static void fetch_spec(const struct mime_part *root, const char *spec)
{
	struct imap_section sec;
	if (imap_section_parse(spec, &sec) < 0)
		return;
	struct str built = STR_INIT, fmt = STR_INIT, fmt2 = STR_INIT;
	const char *d;
	size_t dlen;
	if (imap_fetch_section(msg, msg_len, root, &sec, &built, &d, &dlen)) {
		bool in_msg = d >= msg && d + dlen <= msg + msg_len;
		bool in_built = built.data != NULL && d >= built.data &&
				d + dlen <= built.data + built.len;
		check(in_msg || in_built || dlen == 0,
		      "section data outside the message");
	}
	imap_section_format(&sec, &fmt);
	if (printable(spec)) {
		struct imap_section again;
		check(imap_section_parse(str_c(&fmt), &again) == 0,
		      "formatted section refused");
		imap_section_format(&again, &fmt2);
		check(fmt.len == fmt2.len &&
		      memcmp(str_c(&fmt), str_c(&fmt2), fmt.len) == 0,
		      "formatted section changes");
		imap_section_free(&again);
	}
	imap_section_free(&sec);
	str_free(&built);
	str_free(&fmt);
	str_free(&fmt2);
}

static void fetch_sections(const struct mime_part *root,
			   const struct strlist *names)
{
	static const char *const fixed[] = {
		"", "HEADER", "TEXT", "1", "1.MIME", "2", "1.2.3", "MIME",
		"0", "1.", "HEADER.FIELDS ()", "4294967296",
	};
	for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
		fetch_spec(root, fixed[i]);

	struct str list = STR_INIT, spec = STR_INIT;
	str_append(&list, "(");
	for (size_t i = 0; i < names->n; i++) {
		if (i > 0)
			str_append_c(&list, ' ');
		if (i % 2)	/* as a quoted string, every other one */
			imap_append_string(&list, names->items[i],
					   strlen(names->items[i]));
		else
			str_append(&list, names->items[i]);
	}
	str_append(&list, names->n > 0 ? ")" : "Subject)");

	str_printf(&spec, "HEADER.FIELDS %s", str_c(&list));
	fetch_spec(root, str_c(&spec));
	str_clear(&spec);
	str_printf(&spec, "HEADER.FIELDS.NOT %s", str_c(&list));
	fetch_spec(root, str_c(&spec));

	static const char *const suffix[] = {
		"", ".MIME", ".HEADER", ".TEXT", ".HEADER.FIELDS (FROM TO)",
		".HEADER.FIELDS.NOT (Received)",
	};
	for (size_t i = 0; i < n_paths; i++) {
		const struct mime_part *found =
			mime_find_part(root, paths[i].name,
				       strlen(paths[i].name));
		if (found != paths[i].part)
			fprintf(stderr, "section %s\n", paths[i].name);
		check(found == paths[i].part, "mime_find_part");
		for (size_t j = 0; j < sizeof suffix / sizeof *suffix; j++) {
			str_clear(&spec);
			str_printf(&spec, "%s%s", paths[i].name, suffix[j]);
			fetch_spec(root, str_c(&spec));
		}
	}
	str_free(&list);
	str_free(&spec);
}

/* ---------------------------------------------------------- the rest */

static void per_message(const struct mime_part *p, unsigned depth,
			size_t *budget)
{
	if (*budget == 0)
		return;
	if (is_message(p) && p->n_children == 1) {
		(*budget)--;
		check_envelope_of(&p->children[0]);
		struct strlist names = STRLIST_INIT;
		header_walk(p->children[0].header, p->children[0].body,
			    &names);
		strlist_free(&names);
	}
	for (size_t i = 0; i < p->n_children; i++)
		per_message(&p->children[i], depth + 1, budget);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size > 0 ? size : 1);
	memcpy(buf, data, size);
	msg = buf;
	msg_len = size;

	struct mime_part root;
	mime_parse(msg, msg_len, &root);
	n_parts = 0;
	check_part(&root, NULL, 0);
	check(root.header == 0 && root.end == msg_len, "root bounds");
	check(n_parts <= MIME_MAX_PARTS + 1, "too many parts");

	check_envelope_of(&root);
	check_structure(&root, true);
	check_structure(&root, false);
	size_t budget = 20;
	per_message(&root, 0, &budget);

	struct strlist names = STRLIST_INIT;
	header_walk(root.header, root.body, &names);
	number_parts(&root);
	fetch_sections(&root, &names);
	strlist_free(&names);

	mime_free(&root);
	free(buf);
	return 0;
}
