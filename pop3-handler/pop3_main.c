/*
 * pop3-handler: one POP3 session on fd 0/1, started per connection by a
 * systemd socket unit (Accept=yes), inetd or systemd-socket-activate.
 * Parses the command line, loads the config, learns the peer's address and
 * hands over to the session loop.  A broken config still gets the client a
 * proper "-ERR [SYS/TEMP]" rather than a dropped connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmdline.h"
#include "log.h"
#include "peer.h"
#include "pop3.h"

static const char usage[] =
	"usage: pop3-handler [-c FILE|--config=FILE] [--tls=implicit]\n"
	"                    [--help] [--version]\n"
	"Serves one POP3 session on standard input/output.\n"
	"  --tls=implicit   TLS from the first byte (port 995)\n";

int main(int argc, char **argv)
{
	struct cmdline cl = {
		.program = "pop3-handler", .usage = usage,
		.accepts = CMDLINE_TLS,
	};
	cmdline_parse(&cl, argc, argv);

	static struct config cfg;
	struct str err = STR_INIT;
	if (config_load(&cfg, config_path(cl.config), &err) != 0)
		peer_refuse("-ERR [SYS/TEMP] Service temporarily unavailable",
			    str_c(&err));

	static struct pop3_session s;
	s.cfg = &cfg;
	s.lock_fd = -1;
	/* RFC 1939 3: the autologout timer must be at least 10 minutes. */
	s.timeout = cfg.pop3_timeout;
	peer_address(0, s.peer);
	stream_init(&s.io, 0, 1, s.timeout, POP3_AUTH_LINE_MAX + 2);
	if (cl.implicit_tls)
		pop3_start_tls(&s);
	pop3_session_run(&s);
}
