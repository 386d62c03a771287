/*
 * cmdline: shared option parsing for the handlers and the queue runner.
 */
#include "cmdline.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void cmdline_usage(const struct cmdline *c, FILE *out, int status)
{
	fputs(c->usage, out);
	exit(status);
}

static void cmdline_option(struct cmdline *c, int opt)
{
	switch (opt) {
	case 'c':
		c->config = optarg;
		break;
	case 'h':
		cmdline_usage(c, stdout, 0);
		break;
	case 'V':
		printf("%s (sockmail) %s\n", c->program, SOCKMAIL_VERSION);
		exit(0);
	case 'T':
		if (!(c->accepts & CMDLINE_TLS) || strcmp(optarg, "implicit") != 0) {
			fprintf(stderr, "%s: --tls takes \"implicit\"\n", c->program);
			exit(2);
		}
		c->implicit_tls = true;
		break;
	case 'S':
		if (!(c->accepts & CMDLINE_SUBMISSION))
			cmdline_usage(c, stderr, 2);
		c->submission = true;
		break;
	case 'L':
		if (!(c->accepts & CMDLINE_LOCAL))
			cmdline_usage(c, stderr, 2);
		c->local = true;
		break;
	default:
		cmdline_usage(c, stderr, 2);
	}
}

void cmdline_parse(struct cmdline *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "tls", required_argument, NULL, 'T' },
		{ "submission", no_argument, NULL, 'S' },
		{ "local", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:", opts, NULL)) != -1)
		cmdline_option(c, opt);
	if (optind != argc || (c->submission && c->local))
		cmdline_usage(c, stderr, 2);
	log_open(c->program);
	signal(SIGPIPE, SIG_IGN);
}
