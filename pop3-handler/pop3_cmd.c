/*
 * pop3_cmd: split a POP3 command line into keyword and arguments and check
 * their count and number syntax against a table.  See pop3_cmd.h.
 */
#include "pop3_cmd.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

struct verb_def {
	const char *name;
	enum pop3_verb verb;
	unsigned min_args, max_args;
	bool numbers;		/* every argument is a number */
	const char *usage;
};

static const struct verb_def verbs[] = {
	{ "USER", POP3_USER, 1, 1, false, "USER name" },
	{ "PASS", POP3_PASS, 1, 1, false, "PASS password" },
	{ "APOP", POP3_APOP, 0, 2, false, "APOP name digest" },
	{ "AUTH", POP3_AUTH, 0, 2, false, "AUTH [mechanism [initial-response]]" },
	{ "CAPA", POP3_CAPA, 0, 0, false, "CAPA" },
	{ "STLS", POP3_STLS, 0, 0, false, "STLS" },
	{ "QUIT", POP3_QUIT, 0, 0, false, "QUIT" },
	{ "STAT", POP3_STAT, 0, 0, false, "STAT" },
	{ "LIST", POP3_LIST, 0, 1, true, "LIST [msg]" },
	{ "RETR", POP3_RETR, 1, 1, true, "RETR msg" },
	{ "DELE", POP3_DELE, 1, 1, true, "DELE msg" },
	{ "NOOP", POP3_NOOP, 0, 0, false, "NOOP" },
	{ "RSET", POP3_RSET, 0, 0, false, "RSET" },
	{ "TOP", POP3_TOP, 2, 2, true, "TOP msg lines" },
	{ "UIDL", POP3_UIDL, 0, 1, true, "UIDL [msg]" },
};

#define N_VERBS (sizeof verbs / sizeof verbs[0])

int pop3_parse_number(const char *text, unsigned long *out)
{
	unsigned long v = 0;
	size_t n = 0;
	for (; text[n] != '\0'; n++) {
		if (text[n] < '0' || text[n] > '9' || n == 10)
			return -1;
		v = v * 10 + (unsigned long)(text[n] - '0');
	}
	if (n == 0 || v > 4294967295UL)
		return -1;
	*out = v;
	return 0;
}

const char *pop3_verb_usage(enum pop3_verb verb)
{
	for (size_t i = 0; i < N_VERBS; i++)
		if (verbs[i].verb == verb)
			return verbs[i].usage;
	return "";
}

static char *skip_blanks(char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Cut the next blank-separated word off *p; NULL when none is left. */
static char *next_word(char **p)
{
	char *w = skip_blanks(*p);
	if (*w == '\0')
		return NULL;
	char *e = w;
	while (*e != '\0' && *e != ' ' && *e != '\t')
		e++;
	if (*e != '\0')
		*e++ = '\0';
	*p = e;
	return w;
}

enum pop3_parse pop3_parse_command(char *line, struct pop3_command *cmd)
{
	memset(cmd, 0, sizeof *cmd);
	cmd->keyword = "";
	char *p = skip_blanks(line);
	char *kw = p;
	while (*p != '\0' && *p != ' ' && *p != '\t')
		p++;
	if (p == kw)
		return POP3_PARSE_EMPTY;
	char sep = *p;
	if (*p != '\0')
		*p++ = '\0';
	const struct verb_def *def = NULL;
	for (size_t i = 0; i < N_VERBS && def == NULL; i++)
		if (strcasecmp(kw, verbs[i].name) == 0)
			def = &verbs[i];
	if (def == NULL)
		return POP3_PARSE_UNKNOWN;
	cmd->verb = def->verb;
	cmd->keyword = def->name;

	if (def->verb == POP3_PASS) {
		/* the password is everything after one separator */
		if (sep == '\0' || *p == '\0')
			return POP3_PARSE_ARGS;
		cmd->argv[cmd->argc++] = p;
		return POP3_PARSE_OK;
	}
	char *w;
	while ((w = next_word(&p)) != NULL) {
		if (cmd->argc == def->max_args)
			return POP3_PARSE_ARGS;
		cmd->argv[cmd->argc++] = w;
	}
	if (cmd->argc < def->min_args)
		return POP3_PARSE_ARGS;
	for (unsigned i = 0; def->numbers && i < cmd->argc; i++)
		if (pop3_parse_number(cmd->argv[i], &cmd->num[i]) != 0)
			return POP3_PARSE_NUMBER;
	return POP3_PARSE_OK;
}
