/*
 * smtp-handler: one SMTP session on fd 0/1, started per connection by a
 * systemd socket unit (Accept=yes), inetd or systemd-socket-activate.
 * Parses the command line, loads the config, learns the peer's address and
 * hands over to the session loop.  A broken config still gets the client a
 * proper 421 rather than a dropped connection.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "smtp.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: smtp-handler [-c FILE|--config=FILE] [--help] [--version]\n"
		"Serves one SMTP session on standard input/output (inbound MX mode).\n");
}

/* The peer's address for Received: and the logs, "" when fd 0 is not a
 * socket (a pipe in a test, or a local caller). */
static void smtp_peer(struct smtp_session *s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	s->peer[0] = '\0';
	if (getpeername(0, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, s->peer, sizeof s->peer);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		char buf[INET6_ADDRSTRLEN];
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12],
				  s->peer, sizeof s->peer);
		else if (inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf))
			snprintf(s->peer, sizeof s->peer, "IPv6:%s", buf);
	}
}

/* The config could not be loaded: say so to the operator and the client. */
__attribute__((noreturn)) static void smtp_config_failure(const char *msg)
{
	log_msg(LOG_ERR, "%s", msg);
	char host[256] = "localhost";
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	char reply[320];
	int n = snprintf(reply, sizeof reply,
			 "421 4.3.0 %s Service temporarily unavailable\r\n",
			 host);
	ssize_t w = write(1, reply, (size_t)n < sizeof reply ? (size_t)n
							      : sizeof reply - 1);
	(void)w;
	exit(1);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_arg = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_arg = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			puts("smtp-handler (sockmail) " SOCKMAIL_VERSION);
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
	log_open("smtp-handler");
	signal(SIGPIPE, SIG_IGN);

	static struct config cfg;
	struct str err = STR_INIT;
	if (config_load(&cfg, config_path(config_arg), &err) != 0)
		smtp_config_failure(str_c(&err));

	static struct smtp_session s;
	s.cfg = &cfg;
	smtp_peer(&s);
	stream_init(&s.io, 0, 1, cfg.smtp_timeout, 4096);
	smtp_session_run(&s);
}
