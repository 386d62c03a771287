/*
 * imap_parser: reads one IMAP command (RFC 3501 9, RFC 7888 LITERAL+) from
 * the client's stream into a tree of arguments, and formats strings for
 * replies.  Kept apart from the session so unit tests can drive it from a
 * pipe with hostile input.
 *
 * Bounds: a command line (one physical line, without literals) is at most
 * IMAP_LINE_MAX octets; a whole command at most IMAP_COMMAND_MAX octets of
 * arguments; lists nest at most IMAP_MAX_DEPTH deep; at most IMAP_MAX_ARGS
 * arguments in all; a literal at most IMAP_LITERAL_MAX octets, except in
 * APPEND where the limit is the caller's (message_size_limit).
 *
 * Fetch attributes such as BODY[HEADER.FIELDS (From To)]<0.100> come back
 * as ONE atom: inside an atom, '[' starts a section that runs to the
 * matching ']' (spaces, parentheses and quoted strings allowed inside),
 * after which atom characters (e.g. "<0.100>") continue the atom.
 */
#ifndef SOCKMAIL_IMAP_PARSER_H
#define SOCKMAIL_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"
#include "stream.h"

#define IMAP_LINE_MAX (64 * 1024)
#define IMAP_COMMAND_MAX (1024 * 1024)
#define IMAP_LITERAL_MAX (256 * 1024)
#define IMAP_MAX_DEPTH 32
#define IMAP_MAX_ARGS 100000
#define IMAP_TAG_MAX 64

enum imap_arg_type {
	IMAP_ARG_ATOM,		/* also numbers, flags (\Seen), sequence sets */
	IMAP_ARG_QUOTED,	/* "..." with \" and \\ unescaped */
	IMAP_ARG_LITERAL,	/* {n} or {n+}: may contain any octet but NUL
				 * (literal8 ~{n} is not supported) */
	IMAP_ARG_NIL,		/* the atom NIL, any case */
	IMAP_ARG_LIST,		/* ( ... ) */
};

struct imap_arg {
	enum imap_arg_type type;
	char *str;		/* ATOM/QUOTED/LITERAL: NUL-terminated text */
	size_t len;		/* its length */
	struct imap_arg *list;	/* LIST: its members */
	size_t count;
};

struct imap_command {
	char tag[IMAP_TAG_MAX + 1];	/* "" if the line had none */
	char name[32];		/* upper-cased command name; for "UID FETCH"
				 * this is "FETCH" and uid is true */
	bool uid;
	struct imap_arg *args;	/* the arguments after the name */
	size_t argc;
	size_t bytes;		/* octets read for this command */
	/* private: allocations, freed by imap_command_free */
	void *pool;
};

enum imap_read_result {
	IMAP_READ_OK,
	IMAP_READ_BAD,		/* syntax error or bound breached: reply
				 * "<tag> BAD <msg>" (tag may be "" -> "*") */
	IMAP_READ_TOOBIG,	/* APPEND literal over the limit, refused
				 * before the client sent it: "<tag> NO
				 * [TOOBIG] <msg>" */
	IMAP_READ_BYE,		/* cannot resynchronise (non-synchronising
				 * literal over the limit, line over the line
				 * bound with a literal pending): "* BYE <msg>"
				 * and close */
	IMAP_READ_EOF,		/* client went away or timed out: close */
	IMAP_READ_EMPTY,	/* an empty line: ignore it */
};

struct imap_reader {
	struct stream *io;
	uint64_t append_limit;	/* literal bound inside APPEND */
	bool literal_plus;	/* accept {n+} (advertised LITERAL+) */
};

/*
 * Read one command.  For a synchronising literal the reader writes
 * "+ Ready for literal data" and flushes before reading it.  After
 * IMAP_READ_BAD the rest of the offending line has been consumed (and
 * literals announced on it are handled so that the session stays in step:
 * a refused synchronising literal is never sent by the client, a
 * non-synchronising one is read and dropped when within bounds, else BYE).
 * *msg gets the human text for BAD/TOOBIG/BYE.  cmd->tag is filled as soon
 * as it is known, so BAD replies carry it.
 */
enum imap_read_result imap_command_read(struct imap_reader *r,
					struct imap_command *cmd,
					struct str *msg);
void imap_command_free(struct imap_command *cmd);

/*
 * Parse a complete command from a buffer (no literals continuing on other
 * lines, but inline "{n}\r\n<data>" is accepted): for unit tests and the
 * fuzzer.  Same results as imap_command_read.
 */
enum imap_read_result imap_command_parse(const char *buf, size_t len,
					 uint64_t append_limit,
					 struct imap_command *cmd,
					 struct str *msg);

/* Argument helpers. */
bool imap_arg_is_string(const struct imap_arg *a);	/* quoted/literal */
bool imap_arg_is_astring(const struct imap_arg *a);	/* atom/quoted/literal */
/* The astring's text, or NULL if a is not an astring. */
const char *imap_arg_astring(const struct imap_arg *a);
/* Atom equal to word, any case. */
bool imap_arg_atom_is(const struct imap_arg *a, const char *word);
/* A number (1*DIGIT up to 2^32-1 / 2^63-1). 0 or -1. */
int imap_parse_u32(const char *s, uint32_t *out);
int imap_parse_u64(const char *s, uint64_t *out);

/*
 * Reply formatting.  imap_append_string writes a quoted string when the
 * text is short 7-bit text without CR, LF or NUL (escaping " and \), else a
 * literal "{n}\r\n<text>".  nstring: NULL gives NIL.  astring: an atom when
 * every octet is an ATOM-CHAR (and not "NIL"), else as a string.
 */
void imap_append_string(struct str *out, const char *s, size_t len);
void imap_append_nstring(struct str *out, const char *s);
void imap_append_astring(struct str *out, const char *s);

/*
 * Dates.  date-time "dd-Mon-yyyy hh:mm:ss +zzzz" (APPEND, INTERNALDATE;
 * a leading space for one-digit days is accepted) and date "d-Mon-yyyy"
 * (SEARCH).  Return 0 with the time, -1 if malformed.  imap_format_datetime
 * writes the quoted INTERNALDATE form in UTC offset of the local zone.
 */
int imap_parse_datetime(const char *s, int64_t *when);
int imap_parse_date(const char *s, int64_t *day_start_utc);
void imap_format_datetime(int64_t when, struct str *out);

#endif
