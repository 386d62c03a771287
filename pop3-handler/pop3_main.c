/*
 * pop3-handler: one POP3 session on fd 0/1, started per connection by a
 * systemd socket unit (Accept=yes), inetd or systemd-socket-activate.
 * Parses the command line, loads the config, learns the peer's address and
 * hands over to the session loop.  A broken config still gets the client a
 * proper "-ERR [SYS/TEMP]" rather than a dropped connection.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "peer.h"
#include "pop3.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pop3-handler [-c FILE|--config=FILE] [--tls=implicit]\n"
		"                    [--help] [--version]\n"
		"Serves one POP3 session on standard input/output.\n"
		"  --tls=implicit   TLS from the first byte (port 995)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "tls", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_arg = NULL;
	bool implicit_tls = false;
	int c;
	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_arg = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'T':
			if (strcmp(optarg, "implicit") != 0) {
				fprintf(stderr, "pop3-handler: --tls takes \"implicit\"\n");
				return 2;
			}
			implicit_tls = true;
			break;
		case 'V':
			puts("pop3-handler (sockmail) " SOCKMAIL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	log_open("pop3-handler");
	signal(SIGPIPE, SIG_IGN);

	static struct config cfg;
	struct str err = STR_INIT;
	if (config_load(&cfg, config_path(config_arg), &err) != 0)
		peer_refuse("-ERR [SYS/TEMP] Service temporarily unavailable",
			    str_c(&err));

	static struct pop3_session s;
	s.cfg = &cfg;
	s.lock_fd = -1;
	/* RFC 1939 3: the autologout timer must be at least 10 minutes. */
	s.timeout = cfg.pop3_timeout;
	peer_address(0, s.peer);
	stream_init(&s.io, 0, 1, s.timeout, POP3_AUTH_LINE_MAX + 2);
	if (implicit_tls)
		pop3_start_tls(&s);
	pop3_session_run(&s);
}
