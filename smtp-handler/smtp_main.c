/*
 * smtp-handler: one SMTP session on fd 0/1, started per connection by a
 * systemd socket unit (Accept=yes), inetd or systemd-socket-activate.
 * Parses the command line, loads the config, learns the peer's address and
 * hands over to the session loop.  A broken config still gets the client a
 * proper 421 rather than a dropped connection.
 */
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmdline.h"
#include "log.h"
#include "peer.h"
#include "smtp.h"

static const char usage[] =
	"usage: smtp-handler [-c FILE|--config=FILE] [--submission | --local]\n"
	"                    [--tls=implicit] [--help] [--version]\n"
	"Serves one SMTP session on standard input/output.\n"
	"  (no mode)        inbound MX (port 25): local recipients only\n"
	"  --submission     message submission (587, 465): AUTH required,\n"
	"                   the sender must be the user's, relaying allowed\n"
	"  --local          the sendmail socket: the caller's uid is the login\n"
	"  --tls=implicit   TLS from the first byte (port 465)\n";

/* The config could not be loaded: say so to the operator and the client. */
__attribute__((noreturn)) static void smtp_config_failure(const char *msg)
{
	char host[256] = "localhost";
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	struct str line = STR_INIT;
	str_printf(&line, "421 4.3.0 %s Service temporarily unavailable", host);
	peer_refuse(str_c(&line), msg);
}

/* The sendmail socket's caller, from the kernel (SO_PEERCRED): no setuid
 * program, no password, and no way to lie about who you are. */
static bool smtp_local_peer(struct smtp_session *s)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(0, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return false;
	s->local_uid = cred.uid;
	return true;
}

int main(int argc, char **argv)
{
	struct cmdline cl = {
		.program = "smtp-handler", .usage = usage,
		.accepts = CMDLINE_TLS | CMDLINE_SUBMISSION | CMDLINE_LOCAL,
	};
	cmdline_parse(&cl, argc, argv);

	static struct config cfg;
	struct str err = STR_INIT;
	if (config_load(&cfg, config_path(cl.config), &err) != 0)
		smtp_config_failure(str_c(&err));

	static struct smtp_session s;
	s.cfg = &cfg;
	s.mode = cl.submission ? SMTP_MODE_SUBMISSION
		 : cl.local    ? SMTP_MODE_LOCAL : SMTP_MODE_MX;
	if (cl.local && !smtp_local_peer(&s))
		smtp_config_failure("--local: standard input is not a unix "
				    "socket with peer credentials");
	peer_address(0, s.peer);
	stream_init(&s.io, 0, 1, cfg.smtp_timeout, SMTP_AUTH_LINE_MAX + 2);
	if (cl.implicit_tls)
		smtp_start_tls(&s);
	smtp_session_run(&s);
}
