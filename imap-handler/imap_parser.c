/*
 * imap_parser: reads one IMAP command (RFC 3501 section 9, RFC 7888
 * LITERAL+) into a tree of arguments, staying in step with the client
 * whatever it sends; plus reply string formatting and the IMAP dates.
 *
 * The reader works on a "source" (next line, next n octets, send the
 * continuation request), backed either by the client's stream or by a
 * buffer, so imap_command_read and imap_command_parse share every rule.
 * A command is parsed one physical line at a time; a literal announced at
 * the end of a line is read and the next line continues the command.
 *
 * After an error the rest of the command is consumed without parsing:
 * the current line is already read whole, and if it announces a literal
 * the client's behaviour decides: a synchronising literal is never sent
 * (no "+" went out), a non-synchronising one is read and dropped when
 * within bounds (else the session cannot resynchronise: BYE).
 */
#include "imap_parser.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- memory: one chained arena per command ---- */

#define POOL_BLOCK 8192
#define POOL_ALIGN 16

struct pool_block {
	struct pool_block *next;
	size_t used, size;
};

#define POOL_HDR ((sizeof(struct pool_block) + POOL_ALIGN - 1) & \
		  ~(size_t)(POOL_ALIGN - 1))

static char *pool_data(struct pool_block *b)
{
	return (char *)b + POOL_HDR;
}

static void *pool_alloc(struct imap_command *cmd, size_t n)
{
	if (n > SIZE_MAX - POOL_HDR - POOL_ALIGN)
		abort();	/* callers bound n far below this */
	n = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
	struct pool_block *b = cmd->pool;
	if (b != NULL && b->size - b->used >= n) {
		void *p = pool_data(b) + b->used;
		b->used += n;
		return p;
	}
	size_t size = n > POOL_BLOCK / 2 ? n : POOL_BLOCK;
	struct pool_block *nb = xmalloc(POOL_HDR + size);
	nb->size = size;
	nb->used = n;
	if (b != NULL && size != POOL_BLOCK) {
		/* A big one-off block: keep filling the current one. */
		nb->next = b->next;
		b->next = nb;
	} else {
		nb->next = b;
		cmd->pool = nb;
	}
	return pool_data(nb);
}

static char *pool_strndup(struct imap_command *cmd, const char *s, size_t n)
{
	char *p = pool_alloc(cmd, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void imap_command_free(struct imap_command *cmd)
{
	struct pool_block *b = cmd->pool;
	while (b != NULL) {
		struct pool_block *next = b->next;
		free(b);
		b = next;
	}
	memset(cmd, 0, sizeof *cmd);
}

/* ---- sources: a stream or a buffer ---- */

struct source {
	int (*getline)(struct source *src, size_t max, const char **line,
		       size_t *len);
	int (*read)(struct source *src, void *buf, size_t len);
	int (*ready)(struct source *src);	/* "+" before a sync literal */
	bool eol_optional;	/* buffer: the last line may lack its LF */
	struct stream *io;
	const char *buf;
	size_t len, pos;
};

static int stream_src_getline(struct source *src, size_t max,
			      const char **line, size_t *len)
{
	return stream_getline(src->io, max, line, len);
}

static int stream_src_read(struct source *src, void *buf, size_t len)
{
	return stream_read(src->io, buf, len);
}

static int stream_src_ready(struct source *src)
{
	stream_puts(src->io, "+ Ready for literal data\r\n");
	return stream_flush(src->io);
}

/* Same contract as stream_getline, over the buffer. */
static int buf_src_getline(struct source *src, size_t max, const char **line,
			   size_t *len)
{
	size_t avail = src->len - src->pos;
	const char *start = src->buf + src->pos;
	if (avail == 0)
		return STREAM_EOF;
	size_t limit = avail < max ? avail : max;
	const char *nl = memchr(start, '\n', limit);
	*line = start;
	if (nl != NULL) {
		*len = (size_t)(nl - start) + 1;
		src->pos += *len;
		return STREAM_OK;
	}
	*len = limit;
	src->pos += limit;
	return avail >= max ? STREAM_TOOLONG : STREAM_OK;
}

static int buf_src_read(struct source *src, void *buf, size_t len)
{
	size_t avail = src->len - src->pos;
	if (avail < len) {
		src->pos = src->len;
		return STREAM_EOF;
	}
	memcpy(buf, src->buf + src->pos, len);
	src->pos += len;
	return STREAM_OK;
}

static int buf_src_ready(struct source *src)
{
	(void)src;
	return STREAM_OK;
}

/* ---- character classes (RFC 3501 section 9) ---- */

/* ATOM-CHAR: any CHAR except atom-specials. */
static bool is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

/* tag = 1*<any ASTRING-CHAR except "+"> */
static bool is_tag_char(unsigned char c)
{
	return c != '+' && (c == ']' || is_atom_char(c));
}

/*
 * In argument atoms we also take ']' (ASTRING-CHAR), and '*' and '%':
 * sequence sets ("1:*") and LIST patterns are atoms to us; the command
 * decides whether they fit.
 */
static bool is_arg_atom_char(unsigned char c)
{
	return is_atom_char(c) || c == ']' || c == '*' || c == '%';
}

/* ---- the parser ---- */

/* What the error path still owes the client's stream. */
enum pending {
	PEND_NONE,		/* nothing: the command's input is all read */
	PEND_LINE_TAIL,		/* the current line may announce a literal */
	PEND_NEXT_LINE,		/* a literal was read: its line follows */
};

struct parser {
	struct source *src;
	struct imap_command *cmd;
	struct str *msg;
	uint64_t append_limit;
	bool literal_plus;
	bool append;		/* the command is APPEND */
	struct str line;	/* current line without its line end */
	const char *p, *end;
	size_t nargs;
	enum pending pending;
	enum imap_read_result res;
};

struct argv {
	struct imap_arg *v;
	size_t n, cap;
};

static int severity(enum imap_read_result r)
{
	switch (r) {
	case IMAP_READ_EOF:
		return 3;
	case IMAP_READ_BYE:
		return 2;
	case IMAP_READ_BAD:
	case IMAP_READ_TOOBIG:
		return 1;
	default:
		return 0;
	}
}

/* Record a failure (the first one's text wins unless a later one is
 * worse: BYE or EOF); always -1 for the caller to return. */
static int fail(struct parser *st, enum imap_read_result res, const char *text)
{
	if (severity(res) > severity(st->res)) {
		st->res = res;
		str_clear(st->msg);
		str_append(st->msg, text);
	}
	return -1;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t literal_limit(const struct parser *st)
{
	return st->append ? st->append_limit : IMAP_LITERAL_MAX;
}

static uint64_t command_limit(const struct parser *st)
{
	return sat_add(IMAP_COMMAND_MAX, st->append ? st->append_limit : 0);
}

/*
 * Does text end in a literal announcement "{n}" or "{n+}"?  n saturates
 * at UINT64_MAX, so "{99999999999999999999999}" is simply too big.
 * If start is given, the '{' must be exactly there.
 */
static bool literal_at_end(const char *text, size_t len, const char *start,
			   uint64_t *n, bool *plus)
{
	if (len < 3 || text[len - 1] != '}')
		return false;
	size_t i = len - 1;
	*plus = text[i - 1] == '+';
	if (*plus)
		i--;
	size_t digits_end = i;
	while (i > 0 && isdigit((unsigned char)text[i - 1]))
		i--;
	if (i == digits_end || i == 0 || text[i - 1] != '{')
		return false;
	if (start != NULL && text + i - 1 != start)
		return false;
	uint64_t v = 0;
	for (size_t k = i; k < digits_end; k++) {
		unsigned d = (unsigned)(text[k] - '0');
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	*n = v;
	return true;
}

/* Strip "\n" or "\r\n".  False if there was no LF. */
static bool strip_eol(const char *line, size_t *len)
{
	if (*len == 0 || line[*len - 1] != '\n')
		return false;
	(*len)--;
	if (*len > 0 && line[*len - 1] == '\r')
		(*len)--;
	return true;
}

/* The tag at the start of p..end followed by a space or the end: its
 * length, or 0. */
static size_t tag_length(const char *p, const char *end)
{
	size_t n = 0;
	while (p + n < end && is_tag_char((unsigned char)p[n]))
		n++;
	if (n == 0 || n > IMAP_TAG_MAX || (p + n < end && p[n] != ' '))
		return 0;
	return n;
}

/* Keep the last sizeof tail->buf octets of an overlong line. */
struct tail {
	char buf[64];
	size_t len;
};

static void tail_add(struct tail *t, const char *data, size_t len)
{
	if (len >= sizeof t->buf) {
		memcpy(t->buf, data + len - sizeof t->buf, sizeof t->buf);
		t->len = sizeof t->buf;
		return;
	}
	size_t keep = t->len + len > sizeof t->buf ? sizeof t->buf - len
						   : t->len;
	memmove(t->buf, t->buf + t->len - keep, keep);
	memcpy(t->buf + keep, data, len);
	t->len = keep + len;
}

/*
 * A line over IMAP_LINE_MAX: take what we can (the tag, for the reply),
 * drop the rest, and decide from its last octets whether the client is
 * about to send a literal we cannot place.
 */
static int overlong_line(struct parser *st, const char *chunk, size_t len,
			 bool first)
{
	if (first) {
		size_t n = tag_length(chunk, chunk + len);
		if (n > 0 && n < len)
			memcpy(st->cmd->tag, chunk, n);
	}
	struct tail tail = { .len = 0 };
	int rc;
	do {
		tail_add(&tail, chunk, len);
		st->cmd->bytes += len;
		rc = st->src->getline(st->src, IMAP_LINE_MAX, &chunk, &len);
	} while (rc == STREAM_TOOLONG);
	st->pending = PEND_NONE;
	if (rc != STREAM_OK)
		return fail(st, IMAP_READ_EOF, "Connection closed");
	tail_add(&tail, chunk, len);
	st->cmd->bytes += len;
	if (!strip_eol(tail.buf, &tail.len) && !st->src->eol_optional)
		return fail(st, IMAP_READ_EOF, "Connection closed");
	uint64_t n;
	bool plus;
	if (literal_at_end(tail.buf, tail.len, NULL, &n, &plus) && plus)
		return fail(st, IMAP_READ_BYE, "Line too long");
	return fail(st, IMAP_READ_BAD, "Line too long");
}

/* Read the next physical line into st->line. */
static int get_line(struct parser *st, bool first)
{
	const char *line;
	size_t len;
	int rc = st->src->getline(st->src, IMAP_LINE_MAX, &line, &len);
	if (rc == STREAM_TOOLONG)
		return overlong_line(st, line, len, first);
	if (rc != STREAM_OK) {
		st->pending = PEND_NONE;
		return fail(st, IMAP_READ_EOF, "Connection closed");
	}
	st->cmd->bytes += len;
	if (!strip_eol(line, &len) && !st->src->eol_optional) {
		/* the client left in the middle of a line */
		st->pending = PEND_NONE;
		return fail(st, IMAP_READ_EOF, "Connection closed");
	}
	str_clear(&st->line);
	str_append_n(&st->line, line, len);
	st->p = str_c(&st->line);
	st->end = st->p + len;
	st->pending = PEND_LINE_TAIL;
	return 0;
}

/* Read and drop n octets of a literal nobody will look at. */
static int discard(struct parser *st, uint64_t n)
{
	char buf[16384];
	while (n > 0) {
		size_t chunk = n < sizeof buf ? (size_t)n : sizeof buf;
		if (st->src->read(st->src, buf, chunk) != STREAM_OK)
			return fail(st, IMAP_READ_EOF, "Connection closed");
		n -= chunk;
	}
	return 0;
}

/*
 * After a BAD/TOOBIG: consume what is left of the command.  Each line is
 * already whole; a non-synchronising literal at its end is read and
 * dropped, then its continuation line is examined in turn.
 */
static void resync(struct parser *st)
{
	if (severity(st->res) > 1)
		return;
	for (;;) {
		if (st->pending == PEND_NEXT_LINE) {
			if (get_line(st, false) < 0)
				return;	/* overlong_line decided, or EOF */
		}
		if (st->pending != PEND_LINE_TAIL)
			return;
		uint64_t n;
		bool plus;
		const char *line = str_c(&st->line);
		size_t len = (size_t)(st->end - line);
		if (!literal_at_end(line, len, NULL, &n, &plus) || !plus) {
			/* no literal, or one the client waits for a "+" to
			 * send, which never comes */
			st->pending = PEND_NONE;
			return;
		}
		if (n > literal_limit(st)) {
			fail(st, IMAP_READ_BYE, "Literal too big");
			return;
		}
		if (discard(st, n) < 0)
			return;
		st->pending = PEND_NEXT_LINE;
	}
}

static struct imap_arg *argv_push(struct parser *st, struct argv *a)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 8;
		struct imap_arg *v = pool_alloc(st->cmd, cap * sizeof *v);
		if (a->n > 0)
			memcpy(v, a->v, a->n * sizeof *v);
		a->v = v;
		a->cap = cap;
	}
	struct imap_arg *arg = &a->v[a->n++];
	memset(arg, 0, sizeof *arg);
	return arg;
}

static int parse_quoted(struct parser *st, struct imap_arg *a)
{
	const char *p = st->p + 1;
	struct str text = STR_INIT;
	for (;;) {
		if (p == st->end) {
			str_free(&text);
			return fail(st, IMAP_READ_BAD,
				    "Unterminated quoted string");
		}
		unsigned char c = (unsigned char)*p++;
		if (c == '"')
			break;
		if (c == '\\') {
			if (p == st->end || (*p != '\\' && *p != '"')) {
				str_free(&text);
				return fail(st, IMAP_READ_BAD,
					    "Invalid escape in quoted string");
			}
			c = (unsigned char)*p++;
		} else if (c == '\r' || c == '\n' || c == '\0') {
			str_free(&text);
			return fail(st, IMAP_READ_BAD,
				    "Invalid character in quoted string");
		}
		/* 8-bit octets pass: UTF-8 from clients that send it */
		str_append_c(&text, (char)c);
	}
	a->type = IMAP_ARG_QUOTED;
	a->len = text.len;
	a->str = pool_strndup(st->cmd, str_c(&text), text.len);
	str_free(&text);
	st->p = p;
	return 0;
}

/*
 * p at '[': the matching ']' of a fetch section, or NULL if there is none
 * on this line (then the '[' is an ordinary atom character, as RFC 3501's
 * ATOM-CHAR has it, e.g. in a mailbox name).
 */
static const char *section_end(const char *p, const char *end)
{
	bool quoted = false;
	for (p++; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c >= 0x7f)
			return NULL;
		if (quoted) {
			if (c == '\\' && p + 1 < end) {
				c = (unsigned char)*++p;
				if (c < 0x20 || c >= 0x7f)
					return NULL;
			} else if (c == '"') {
				quoted = false;
			}
		} else if (c == '"') {
			quoted = true;
		} else if (c == ']') {
			return p;
		} else if (c == '[' || c == '{') {
			return NULL;
		}
	}
	return NULL;
}

static int parse_atom(struct parser *st, struct imap_arg *a)
{
	const char *start = st->p, *p = st->p;
	if (*p == '\\') {
		/* a flag: \Seen, or \* in PERMANENTFLAGS-like lists */
		p++;
		if (p < st->end && *p == '*')
			p++;
		else if (p == st->end || !is_atom_char((unsigned char)*p))
			return fail(st, IMAP_READ_BAD, "Invalid flag");
	}
	while (p < st->end) {
		unsigned char c = (unsigned char)*p;
		if (c == '[') {
			const char *e = section_end(p, st->end);
			p = e != NULL ? e + 1 : p + 1;
		} else if (is_arg_atom_char(c)) {
			p++;
		} else {
			break;
		}
	}
	if (p == start)
		return fail(st, IMAP_READ_BAD, "Invalid character");
	size_t len = (size_t)(p - start);
	a->type = len == 3 && strncasecmp(start, "NIL", 3) == 0 ?
		IMAP_ARG_NIL : IMAP_ARG_ATOM;
	a->str = pool_strndup(st->cmd, start, len);
	a->len = len;
	st->p = p;
	return 0;
}

static int parse_literal(struct parser *st, struct imap_arg *a)
{
	uint64_t n;
	bool plus;
	const char *line = str_c(&st->line);
	if (!literal_at_end(line, (size_t)(st->end - line), st->p, &n, &plus))
		return fail(st, IMAP_READ_BAD, "Invalid literal");
	st->p = st->end;
	if (plus && !st->literal_plus)
		return fail(st, IMAP_READ_BAD, "LITERAL+ not supported");
	if (n > literal_limit(st) ||
	    n > command_limit(st) - st->cmd->bytes) {
		if (plus)
			return fail(st, IMAP_READ_BYE, "Literal too big");
		if (st->append)
			return fail(st, IMAP_READ_TOOBIG, "Message too big");
		return fail(st, IMAP_READ_BAD, "Literal too big");
	}
	if (!plus && st->src->ready(st->src) != STREAM_OK) {
		st->pending = PEND_NONE;
		return fail(st, IMAP_READ_EOF, "Connection closed");
	}
	char *data = pool_alloc(st->cmd, (size_t)n + 1);
	if (st->src->read(st->src, data, (size_t)n) != STREAM_OK) {
		st->pending = PEND_NONE;
		return fail(st, IMAP_READ_EOF, "Connection closed");
	}
	data[n] = '\0';
	st->cmd->bytes += n;
	st->pending = PEND_NEXT_LINE;
	if (memchr(data, '\0', (size_t)n) != NULL)
		return fail(st, IMAP_READ_BAD, "NUL in literal");
	a->type = IMAP_ARG_LITERAL;
	a->str = data;
	a->len = (size_t)n;
	/* the command goes on in the next line */
	if (get_line(st, false) < 0)
		return -1;
	if (st->cmd->bytes > command_limit(st))
		return fail(st, IMAP_READ_BAD, "Command too long");
	return 0;
}

static int parse_args(struct parser *st, unsigned depth, struct argv *out)
{
	for (;;) {
		while (st->p < st->end && *st->p == ' ')
			st->p++;
		if (st->p == st->end) {
			if (depth > 0)
				return fail(st, IMAP_READ_BAD, "Missing ')'");
			return 0;
		}
		if (*st->p == ')') {
			if (depth == 0)
				return fail(st, IMAP_READ_BAD,
					    "Unexpected ')'");
			st->p++;
			return 0;
		}
		if (++st->nargs > IMAP_MAX_ARGS)
			return fail(st, IMAP_READ_BAD, "Too many arguments");
		struct imap_arg a = { .type = IMAP_ARG_ATOM };
		int rc;
		if (*st->p == '(') {
			if (depth >= IMAP_MAX_DEPTH)
				return fail(st, IMAP_READ_BAD,
					    "Lists nested too deeply");
			st->p++;
			struct argv sub = { NULL, 0, 0 };
			rc = parse_args(st, depth + 1, &sub);
			a.type = IMAP_ARG_LIST;
			a.list = sub.v;
			a.count = sub.n;
		} else if (*st->p == '"') {
			rc = parse_quoted(st, &a);
		} else if (*st->p == '{') {
			rc = parse_literal(st, &a);
		} else {
			rc = parse_atom(st, &a);
		}
		if (rc < 0)
			return -1;
		*argv_push(st, out) = a;
		if (st->p < st->end && *st->p != ' ' && *st->p != ')')
			return fail(st, IMAP_READ_BAD,
				    "Missing space after argument");
	}
}

/* An atom naming a command, upper-cased into out[32]. */
static int parse_name(struct parser *st, char *out, const char *missing)
{
	while (st->p < st->end && *st->p == ' ')
		st->p++;
	const char *start = st->p;
	while (st->p < st->end && is_atom_char((unsigned char)*st->p))
		st->p++;
	size_t len = (size_t)(st->p - start);
	if (len == 0)
		return fail(st, IMAP_READ_BAD,
			    start == st->end ? missing : "Invalid command name");
	if (len > 31)
		return fail(st, IMAP_READ_BAD, "Command name too long");
	if (st->p < st->end && *st->p != ' ')
		return fail(st, IMAP_READ_BAD, "Invalid command name");
	for (size_t i = 0; i < len; i++)
		out[i] = (char)toupper((unsigned char)start[i]);
	out[len] = '\0';
	return 0;
}

static int parse_head(struct parser *st)
{
	size_t n = tag_length(st->p, st->end);
	if (n == 0) {
		const char *p = st->p;
		while (p < st->end && is_tag_char((unsigned char)*p))
			p++;
		return fail(st, IMAP_READ_BAD,
			    p == st->p ? "Missing tag" : "Invalid tag");
	}
	memcpy(st->cmd->tag, st->p, n);
	st->cmd->tag[n] = '\0';
	st->p += n;
	if (parse_name(st, st->cmd->name, "Missing command") < 0)
		return -1;
	if (strcmp(st->cmd->name, "UID") == 0) {
		static const char *const subs[] = {
			"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE",
		};
		st->cmd->uid = true;
		if (parse_name(st, st->cmd->name, "Missing UID command") < 0)
			return -1;
		bool known = false;
		for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
			known = known || strcmp(st->cmd->name, subs[i]) == 0;
		if (!known)
			return fail(st, IMAP_READ_BAD, "Invalid UID command");
	}
	st->append = strcmp(st->cmd->name, "APPEND") == 0;
	return 0;
}

static enum imap_read_result run_parser(struct source *src,
					uint64_t append_limit,
					bool literal_plus,
					struct imap_command *cmd,
					struct str *msg)
{
	memset(cmd, 0, sizeof *cmd);
	str_clear(msg);
	struct parser st = {
		.src = src, .cmd = cmd, .msg = msg,
		.append_limit = append_limit, .literal_plus = literal_plus,
		.line = STR_INIT, .res = IMAP_READ_OK,
	};
	struct argv args = { NULL, 0, 0 };
	if (get_line(&st, true) == 0) {
		if (st.p == st.end) {
			st.res = IMAP_READ_EMPTY;
		} else if (parse_head(&st) < 0 || parse_args(&st, 0, &args) < 0) {
			resync(&st);
		} else {
			cmd->args = args.v;
			cmd->argc = args.n;
		}
	}
	str_free(&st.line);
	return st.res;
}

enum imap_read_result imap_command_read(struct imap_reader *r,
					struct imap_command *cmd,
					struct str *msg)
{
	struct source src = {
		.getline = stream_src_getline, .read = stream_src_read,
		.ready = stream_src_ready, .io = r->io,
	};
	return run_parser(&src, r->append_limit, r->literal_plus, cmd, msg);
}

enum imap_read_result imap_command_parse(const char *buf, size_t len,
					 uint64_t append_limit,
					 struct imap_command *cmd,
					 struct str *msg)
{
	struct source src = {
		.getline = buf_src_getline, .read = buf_src_read,
		.ready = buf_src_ready, .eol_optional = true,
		.buf = buf, .len = len,
	};
	return run_parser(&src, append_limit, true, cmd, msg);
}

/* ---- argument helpers ---- */

bool imap_arg_is_string(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL;
}

/* NIL is lexically an atom, so it is a valid astring ("LOGIN nil x"). */
bool imap_arg_is_astring(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL ||
	       imap_arg_is_string(a);
}

const char *imap_arg_astring(const struct imap_arg *a)
{
	return imap_arg_is_astring(a) ? a->str : NULL;
}

bool imap_arg_atom_is(const struct imap_arg *a, const char *word)
{
	return (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL) &&
	       strcasecmp(a->str, word) == 0;
}

static int parse_number(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (s == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		unsigned d = (unsigned)(*s - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int imap_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;
	if (parse_number(s, UINT32_MAX, &v) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int imap_parse_u64(const char *s, uint64_t *out)
{
	return parse_number(s, INT64_MAX, out);
}

/* ---- reply formatting ---- */

#define QUOTED_MAX 1024		/* longer text goes as a literal */

void imap_append_string(struct str *out, const char *s, size_t len)
{
	bool quotable = len <= QUOTED_MAX;
	for (size_t i = 0; quotable && i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		quotable = c != '\0' && c != '\r' && c != '\n' && c < 0x80;
	}
	if (!quotable) {
		str_printf(out, "{%zu}\r\n", len);
		str_append_n(out, s, len);
		return;
	}
	str_reserve(out, len + 2);
	str_append_c(out, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			str_append_c(out, '\\');
		str_append_c(out, s[i]);
	}
	str_append_c(out, '"');
}

void imap_append_nstring(struct str *out, const char *s)
{
	if (s == NULL)
		str_append(out, "NIL");
	else
		imap_append_string(out, s, strlen(s));
}

void imap_append_astring(struct str *out, const char *s)
{
	bool atom = *s != '\0' && strcasecmp(s, "NIL") != 0;
	for (const char *p = s; atom && *p != '\0'; p++)
		atom = is_atom_char((unsigned char)*p);
	if (atom)
		str_append(out, s);
	else
		imap_append_string(out, s, strlen(s));
}

/* ---- dates ---- */

static const char months[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int days[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31,
	};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : days[m - 1];
}

/* n decimal digits exactly. */
static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* "-Mon-yyyy" after the day: month 1..12 and year; s advanced. */
static bool month_year(const char **s, int day, int *month, int *year)
{
	const char *p = *s;
	if (*p != '-')
		return false;
	p++;
	*month = 0;
	for (int i = 0; i < 12; i++) {
		if (strncasecmp(p, months[i], 3) == 0)
			*month = i + 1;
	}
	if (*month == 0 || p[3] != '-' || !digits(p + 4, 4, year))
		return false;
	if (*year < 1000 || day < 1 || day > days_in_month(*year, *month))
		return false;
	*s = p + 8;
	return true;
}

int imap_parse_date(const char *s, int64_t *day_start_utc)
{
	int day, month, year;
	if (!digits(s, 1, &day))
		return -1;
	s++;
	if (*s >= '0' && *s <= '9') {
		day = day * 10 + (*s - '0');
		s++;
	}
	if (!month_year(&s, day, &month, &year) || *s != '\0')
		return -1;
	*day_start_utc = days_from_civil(year, month, day) * 86400;
	return 0;
}

/* 1000-01-01T00:00:00Z and 9999-12-31T23:59:59Z */
#define DATETIME_MIN (-30610224000LL)
#define DATETIME_MAX (253402300799LL)

int imap_parse_datetime(const char *s, int64_t *when)
{
	int day, month, year, hh, mm, ss, zh, zm;
	/* date-day-fixed = (SP DIGIT) / 2DIGIT */
	if (s[0] == ' ' ? !digits(s + 1, 1, &day) : !digits(s, 2, &day))
		return -1;
	s += 2;
	if (!month_year(&s, day, &month, &year))
		return -1;
	if (s[0] != ' ' || !digits(s + 1, 2, &hh) || s[3] != ':' ||
	    !digits(s + 4, 2, &mm) || s[6] != ':' || !digits(s + 7, 2, &ss) ||
	    s[9] != ' ' || (s[10] != '+' && s[10] != '-') ||
	    !digits(s + 11, 2, &zh) || !digits(s + 13, 2, &zm) ||
	    s[15] != '\0')
		return -1;
	if (hh > 23 || mm > 59 || ss > 60 || zh > 23 || zm > 59)
		return -1;
	int64_t zone = (int64_t)(zh * 60 + zm) * 60;
	if (s[10] == '-')
		zone = -zone;
	*when = days_from_civil(year, month, day) * 86400 +
		hh * 3600 + mm * 60 + ss - zone;
	/* the zone may carry it out of 1000-9999 in UTC, where the
	 * four-digit date-year of an INTERNALDATE could not say it
	 * (found by fuzz_imap_datetime) */
	if (*when < DATETIME_MIN || *when > DATETIME_MAX)
		return -1;
	return 0;
}

void imap_format_datetime(int64_t when, struct str *out)
{
	time_t t = (time_t)when;
	struct tm tm;
	if (localtime_r(&t, &tm) == NULL) {
		str_append(out, "\"01-Jan-1970 00:00:00 +0000\"");
		return;
	}
	/* a file's mtime can be anything: date-year has four digits, and
	 * what we print must parse back (1000-9999 in UTC too) */
	if (tm.tm_year + 1900 < 1000 || when < DATETIME_MIN) {
		str_append(out, "\"01-Jan-1000 00:00:00 +0000\"");
		return;
	}
	if (tm.tm_year + 1900 > 9999 || when > DATETIME_MAX) {
		str_append(out, "\"31-Dec-9999 23:59:59 +0000\"");
		return;
	}
	long off = tm.tm_gmtoff;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	str_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d %c%02ld%02ld\"",
		   tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
		   tm.tm_hour, tm.tm_min, tm.tm_sec, sign,
		   off / 3600, off % 3600 / 60);
}
