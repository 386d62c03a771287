/*
 * fuzz_imap_command: the IMAP command reader (imap_parser) on hostile
 * input, three ways:
 *
 *  - imap_command_parse on the input as one buffer (literals inline,
 *    nested lists, BODY[...] sections, LITERAL+, APPEND's own bound);
 *  - imap_command_read over a struct stream on a socketpair (input
 *    written, then shutdown), command after command until EOF or BYE, as
 *    the session reads its client;
 *  - the reply formatters imap_append_string/nstring/astring on the
 *    arguments found and on the input itself.
 *
 * Invariants: every result is one of the enum values; after OK the tag is
 * a non-empty NUL-terminated tag within IMAP_TAG_MAX, the name is upper
 * case, and the argument tree is well formed (lists nest at most
 * IMAP_MAX_DEPTH deep, at most IMAP_MAX_ARGS arguments, every string is
 * NUL-terminated at its length with no NUL inside, lists have members
 * iff count > 0, bytes <= input size); the tree written back out as IMAP
 * text parses to the same tree; the stream path agrees with the buffer
 * path on the first command; a formatted string parses back to the same
 * octets.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "imap_parser.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define APPEND_LIMIT 4096	/* small, so TOOBIG is reachable */
#define STREAM_COMMANDS_MAX 200

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_imap_command: invariant broken: %s\n",
			what);
		abort();
	}
}

static bool is_text(const char *s, size_t len)
{
	return s != NULL && s[len] == '\0' && strlen(s) == len;
}

/* Walk the tree: returns the number of arguments in it. */
static size_t check_args(const struct imap_arg *args, size_t n,
			 unsigned depth)
{
	size_t total = n;
	check(depth <= IMAP_MAX_DEPTH, "lists nested too deep");
	check(n == 0 || args != NULL, "members missing");
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		switch (a->type) {
		case IMAP_ARG_LIST:
			check(a->count == 0 || a->list != NULL, "list members");
			total += check_args(a->list, a->count, depth + 1);
			break;
		case IMAP_ARG_ATOM:
		case IMAP_ARG_NIL:
			check(is_text(a->str, a->len) && a->len > 0,
			      "atom text");
			check(a->type != IMAP_ARG_NIL ||
			      strcasecmp(a->str, "NIL") == 0, "NIL text");
			check(a->type != IMAP_ARG_ATOM ||
			      strcasecmp(a->str, "NIL") != 0, "NIL as atom");
			check(a->count == 0, "atom with members");
			break;
		case IMAP_ARG_QUOTED:
		case IMAP_ARG_LITERAL:
			check(is_text(a->str, a->len), "string text");
			check(a->count == 0, "string with members");
			break;
		default:
			check(false, "argument type");
		}
	}
	return total;
}

static void check_command(const struct imap_command *cmd, size_t input)
{
	size_t tag_len = strnlen(cmd->tag, sizeof cmd->tag);
	check(tag_len > 0 && tag_len <= IMAP_TAG_MAX, "tag");
	size_t name_len = strnlen(cmd->name, sizeof cmd->name);
	check(name_len > 0 && name_len < sizeof cmd->name, "name");
	for (size_t i = 0; i < name_len; i++)
		check(cmd->name[i] < 'a' || cmd->name[i] > 'z', "name case");
	check(cmd->bytes <= input, "bytes beyond input");
	check(check_args(cmd->args, cmd->argc, 0) <= IMAP_MAX_ARGS,
	      "too many arguments");
}

static void check_result(enum imap_read_result r, const struct str *msg)
{
	check(r == IMAP_READ_OK || r == IMAP_READ_BAD ||
	      r == IMAP_READ_TOOBIG || r == IMAP_READ_BYE ||
	      r == IMAP_READ_EOF || r == IMAP_READ_EMPTY, "result");
	if (r == IMAP_READ_BAD || r == IMAP_READ_TOOBIG || r == IMAP_READ_BYE)
		check(msg->len > 0, "error without text");
}

/* ---- writing the tree back out ---- */

static bool has_long_string(const struct imap_arg *args, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (args[i].type == IMAP_ARG_LIST) {
			if (has_long_string(args[i].list, args[i].count))
				return true;
		} else if (args[i].len > APPEND_LIMIT) {
			return true;
		}
	}
	return false;
}

/* Literals stay literals (they end their line, which matters to the
 * BODY[ section scan); quoted strings go through imap_append_string. */
static void write_args(const struct imap_arg *args, size_t n, struct str *out)
{
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		if (i > 0)
			str_append_c(out, ' ');
		switch (a->type) {
		case IMAP_ARG_LIST:
			str_append_c(out, '(');
			write_args(a->list, a->count, out);
			str_append_c(out, ')');
			break;
		case IMAP_ARG_LITERAL:
			str_printf(out, "{%zu}\r\n", a->len);
			str_append_n(out, a->str, a->len);
			break;
		case IMAP_ARG_QUOTED:
			imap_append_string(out, a->str, a->len);
			break;
		default:
			str_append_n(out, a->str, a->len);
		}
	}
}

static bool is_string(enum imap_arg_type t)
{
	return t == IMAP_ARG_QUOTED || t == IMAP_ARG_LITERAL;
}

static bool same_args(const struct imap_arg *a, size_t na,
		      const struct imap_arg *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		bool strings = is_string(a[i].type) && is_string(b[i].type);
		if (a[i].type != b[i].type && !strings)
			return false;
		if (a[i].type == IMAP_ARG_LIST) {
			if (!same_args(a[i].list, a[i].count, b[i].list,
				       b[i].count))
				return false;
		} else if (a[i].len != b[i].len ||
			   memcmp(a[i].str, b[i].str, a[i].len) != 0) {
			return false;
		}
	}
	return true;
}

static bool same_command(const struct imap_command *a,
			 const struct imap_command *b)
{
	return strcmp(a->tag, b->tag) == 0 && strcmp(a->name, b->name) == 0 &&
	       a->uid == b->uid && same_args(a->args, a->argc, b->args, b->argc);
}

/* The tree written out parses to the same tree. */
static void check_rewrite(const struct imap_command *cmd)
{
	struct str text = STR_INIT, msg = STR_INIT;
	str_printf(&text, "%s %s%s", cmd->tag, cmd->uid ? "UID " : "",
		   cmd->name);
	if (cmd->argc > 0)
		str_append_c(&text, ' ');
	write_args(cmd->args, cmd->argc, &text);
	str_append(&text, "\r\n");

	struct imap_command again;
	enum imap_read_result r = imap_command_parse(text.data, text.len,
						     APPEND_LIMIT, &again, &msg);
	/* A quoted string over the APPEND bound comes back as a literal,
	 * which APPEND refuses: not the parser's fault. */
	bool skip = strcmp(cmd->name, "APPEND") == 0 &&
		    has_long_string(cmd->args, cmd->argc);
	if (!skip) {
		if (r != IMAP_READ_OK)
			fprintf(stderr, "rewrite refused: %s\n", str_c(&msg));
		check(r == IMAP_READ_OK, "rewritten command refused");
		check(same_command(cmd, &again), "rewritten command differs");
	}
	imap_command_free(&again);
	str_free(&text);
	str_free(&msg);
}

/* ---- reply formatting ---- */

/* "a X <string> <nstring> <astring>" parses back to s three times.  The
 * astring goes last: an atom with '[' scans its line for a ']'. */
static void check_format(const char *s, size_t len)
{
	struct str text = STR_INIT, msg = STR_INIT;
	str_append(&text, "a X ");
	imap_append_string(&text, s, len);
	str_append_c(&text, ' ');
	imap_append_nstring(&text, s);
	str_append_c(&text, ' ');
	imap_append_astring(&text, s);
	str_append(&text, "\r\n");

	struct imap_command cmd;
	enum imap_read_result r = imap_command_parse(text.data, text.len, 0,
						     &cmd, &msg);
	check(r == IMAP_READ_OK, "formatted string refused");
	check(cmd.argc == 3, "formatted string count");
	for (size_t i = 0; i < 3; i++) {
		const struct imap_arg *a = &cmd.args[i];
		check(is_string(a->type) || (i == 2 && a->type == IMAP_ARG_ATOM),
		      "formatted string type");
		check(a->len == len && memcmp(a->str, s, len) == 0,
		      "formatted string text");
	}
	imap_command_free(&cmd);
	str_free(&text);
	str_free(&msg);
}

static void check_format_args(const struct imap_arg *args, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (args[i].type == IMAP_ARG_LIST)
			check_format_args(args[i].list, args[i].count);
		else if (args[i].len < 4096)
			check_format(args[i].str, args[i].len);
	}
}

/* ---- the stream path ---- */

static int devnull = -1;

/* Input on one end of a socketpair, the write side shut down; replies
 * ("+ Ready for literal data") go to /dev/null.  -1 if the input does
 * not fit in the socket buffer at once (then the path is skipped). */
static int feed(const uint8_t *data, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	int buf = 1 << 20;
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
	(void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
	(void)fcntl(sv[0], F_SETFL, O_NONBLOCK);
	size_t done = 0;
	while (done < size) {
		ssize_t n = write(sv[0], data + done, size - done);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(sv[0]);	/* EOF after the input */
	if (done < size) {
		close(sv[1]);
		return -1;
	}
	return sv[1];
}

static void stream_path(const uint8_t *data, size_t size,
			enum imap_read_result first_r,
			const struct imap_command *first)
{
	if (devnull < 0)
		devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	int fd = feed(data, size);
	if (fd < 0 || devnull < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct stream io;
	stream_init(&io, fd, devnull, 5, IMAP_LINE_MAX + 2);
	struct imap_reader reader = {
		.io = &io, .append_limit = APPEND_LIMIT, .literal_plus = true,
	};
	struct str msg = STR_INIT;
	size_t total = 0;
	for (int i = 0; i < STREAM_COMMANDS_MAX; i++) {
		struct imap_command cmd;
		enum imap_read_result r = imap_command_read(&reader, &cmd,
							    &msg);
		check_result(r, &msg);
		if (r == IMAP_READ_OK)
			check_command(&cmd, size);
		total += cmd.bytes;
		/* The first command: the same as the buffer parser's,
		 * unless the buffer parser took an unterminated last line
		 * that the stream sees as the client leaving. */
		if (i == 0 && first_r == IMAP_READ_OK && r == IMAP_READ_OK)
			check(same_command(first, &cmd),
			      "stream and buffer parsers differ");
		if (i == 0 && first_r != IMAP_READ_OK)
			check(r != IMAP_READ_OK,
			      "stream accepted what the buffer refused");
		imap_command_free(&cmd);
		if (r == IMAP_READ_EOF || r == IMAP_READ_BYE)
			break;
	}
	check(total <= size, "stream read more than was sent");
	str_free(&msg);
	stream_free(&io);
	close(fd);
}

/*
 * Inputs starting "\xffBIG<unit>\n<rest>" stand for <unit> repeated past
 * IMAP_LINE_MAX, then <rest>: the fuzzer's inputs are shorter than a line
 * may be, and the overlong-line paths (a tag to keep, a literal announced
 * at the end to refuse) deserve inputs too.
 */
static uint8_t *expand(const uint8_t *data, size_t *size)
{
	const uint8_t *unit = data + 4, *end = data + *size;
	const uint8_t *nl = memchr(unit, '\n', (size_t)(end - unit));
	if (nl == NULL || nl == unit)
		return NULL;
	size_t ulen = (size_t)(nl - unit), rest = (size_t)(end - nl - 1);
	size_t reps = (IMAP_LINE_MAX + 16) / ulen + 1;
	uint8_t *big = malloc(reps * ulen + rest);
	for (size_t i = 0; i < reps; i++)
		memcpy(big + i * ulen, unit, ulen);
	memcpy(big + reps * ulen, nl + 1, rest);
	*size = reps * ulen + rest;
	return big;
}

static void one_input(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= 4 && memcmp(data, "\xff" "BIG", 4) == 0) {
		uint8_t *big = expand(data, &size);
		if (big != NULL) {
			one_input(big, size);
			free(big);
		}
		return 0;
	}
	one_input(data, size);
	return 0;
}

static void one_input(const uint8_t *data, size_t size)
{
	struct imap_command cmd;
	struct str msg = STR_INIT;
	enum imap_read_result r = imap_command_parse((const char *)data, size,
						     APPEND_LIMIT, &cmd, &msg);
	check_result(r, &msg);
	if (r == IMAP_READ_OK) {
		check_command(&cmd, size);
		check_rewrite(&cmd);
		check_format_args(cmd.args, cmd.argc);
	}
	if (r == IMAP_READ_BAD || r == IMAP_READ_TOOBIG)
		check(strnlen(cmd.tag, sizeof cmd.tag) <= IMAP_TAG_MAX,
		      "tag of a refused command");

	stream_path(data, size, r, &cmd);
	imap_command_free(&cmd);

	/* The input itself as a reply string (up to a NUL). */
	size_t len = strnlen((const char *)data, size < 8192 ? size : 8192);
	char *s = malloc(len + 1);
	memcpy(s, data, len);
	s[len] = '\0';
	check_format(s, len);
	free(s);
	str_free(&msg);
}
