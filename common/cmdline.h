/*
 * cmdline: the command line every sockmail daemon-side program shares:
 * -c FILE / --config=FILE, --help, --version, and where the program takes
 * them, --tls=implicit, --submission and --local.  Also the start-up steps
 * that follow it everywhere (log_open, SIGPIPE ignored).
 */
#ifndef SOCKMAIL_CMDLINE_H
#define SOCKMAIL_CMDLINE_H

#include <stdbool.h>

enum cmdline_option {
	CMDLINE_TLS = 1 << 0,		/* --tls=implicit */
	CMDLINE_SUBMISSION = 1 << 1,	/* --submission */
	CMDLINE_LOCAL = 1 << 2,		/* --local */
};

struct cmdline {
	/* in */
	const char *program;	/* "pop3-handler": log ident and --version */
	const char *usage;	/* printed by --help and on errors */
	unsigned accepts;	/* enum cmdline_option bits */
	/* out */
	const char *config;	/* -c FILE, or NULL */
	bool implicit_tls;
	bool submission;
	bool local;
};

/* Parse argv.  --help and --version print and exit(0); a bad option or a
 * stray argument prints the usage and exits 2.  Then opens the log and
 * ignores SIGPIPE (a client gone mid-write is an EPIPE, not a death). */
void cmdline_parse(struct cmdline *c, int argc, char **argv);

#endif
