/*
 * imap-handler: one IMAP session on fd 0/1, started per connection by a
 * systemd socket unit (Accept=yes), inetd or systemd-socket-activate.
 * Parses the command line, loads the config, learns the peer's address and
 * hands over to the session loop.  A broken config still gets the client a
 * proper "* BYE" rather than a dropped connection.
 */
#include <stdlib.h>

#include "cmdline.h"
#include "imap.h"
#include "log.h"
#include "peer.h"

static const char usage[] =
	"usage: imap-handler [-c FILE|--config=FILE] [--tls=implicit]\n"
	"                    [--help] [--version]\n"
	"Serves one IMAP session on standard input/output.\n"
	"  --tls=implicit   TLS from the first byte (port 993)\n";

int main(int argc, char **argv)
{
	struct cmdline cl = {
		.program = "imap-handler", .usage = usage,
		.accepts = CMDLINE_TLS,
	};
	cmdline_parse(&cl, argc, argv);

	static struct config cfg;
	struct str err = STR_INIT;
	if (config_load(&cfg, config_path(cl.config), &err) != 0)
		peer_refuse("* BYE [UNAVAILABLE] Service temporarily unavailable",
			    str_c(&err));

	static struct imap_session s;
	s.cfg = &cfg;
	peer_address(0, s.peer);
	/* RFC 3501 5.4: the autologout timer is at least 30 minutes once
	 * logged in; imap_idle_timeout is that timer. */
	stream_init(&s.io, 0, 1, cfg.imap_idle_timeout, IMAP_LINE_MAX + 2);
	s.reader.io = &s.io;
	/* message-sized literals only once logged in: before that a
	 * stranger could make every connection allocate 50 MiB */
	s.reader.append_limit = IMAP_LITERAL_MAX;
	s.reader.literal_plus = true;
	if (cl.implicit_tls)
		imap_start_tls(&s);
	imap_session_run(&s);
}
