/*
 * pop3_cmd: the POP3 command-line parser of pop3-handler, kept apart from
 * the session so the unit tests can drive it without a socket.  It knows
 * the keywords (RFC 1939, CAPA/UIDL/TOP/USER of RFC 2449, STLS of RFC 2595,
 * AUTH of RFC 5034), how many arguments each takes and which are message
 * numbers; which state allows which command is the session's business.
 */
#ifndef SOCKMAIL_POP3_CMD_H
#define SOCKMAIL_POP3_CMD_H

#include <stdbool.h>

#define POP3_LINE_MAX 255	/* command line with CRLF, RFC 2449 4 */
#define POP3_AUTH_LINE_MAX 8192	/* AUTH lines and SASL responses */

enum pop3_verb {
	POP3_UNKNOWN,
	POP3_USER, POP3_PASS, POP3_APOP, POP3_AUTH, POP3_CAPA, POP3_STLS,
	POP3_QUIT, POP3_STAT, POP3_LIST, POP3_RETR, POP3_DELE, POP3_NOOP,
	POP3_RSET, POP3_TOP, POP3_UIDL,
};

enum pop3_parse {
	POP3_PARSE_OK,
	POP3_PARSE_EMPTY,	/* nothing but blanks */
	POP3_PARSE_UNKNOWN,	/* keyword not known (verb = POP3_UNKNOWN) */
	POP3_PARSE_ARGS,	/* wrong number of arguments */
	POP3_PARSE_NUMBER,	/* an argument is not a number */
};

#define POP3_MAX_ARGS 2

struct pop3_command {
	enum pop3_verb verb;
	const char *keyword;	/* upper-case name of a known verb, else "" */
	unsigned argc;		/* words after the keyword (PASS: 1) */
	const char *argv[POP3_MAX_ARGS];
	/* Message numbers / line counts of LIST, UIDL, RETR, DELE, TOP. */
	unsigned long num[POP3_MAX_ARGS];
};

/*
 * Parse one command line (CRLF already removed), splitting it in place.
 * Keywords are case-insensitive; arguments are separated by blanks (runs
 * of them tolerated).  PASS takes the rest of the line after one space as
 * its one argument, spaces included (RFC 1939 7), and it may be empty only
 * if nothing follows the keyword (then argc is 0 and ARGS is returned).
 */
enum pop3_parse pop3_parse_command(char *line, struct pop3_command *cmd);

/* A message number or line count: 1 to 10 decimal digits, no sign, value
 * up to 4294967295.  0 or -1. */
int pop3_parse_number(const char *text, unsigned long *out);

/* A usage hint for a verb's syntax error ("LIST [msg]"). */
const char *pop3_verb_usage(enum pop3_verb verb);

#endif
