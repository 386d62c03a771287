/*
 * config: the one sockmail.conf file, `key = value` lines with `#` comments.
 * Every program loads it the same way: -c FILE, else $SOCKMAIL_CONFIG, else
 * /etc/sockmail/sockmail.conf.  An unknown key, a bad value or an unreadable
 * file is an error naming file:line; the caller decides how to fail (a
 * handler answers 421 / * BYE, a command-line tool exits).
 */
#ifndef SOCKMAIL_CONFIG_H
#define SOCKMAIL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "str.h"

#define CONFIG_DEFAULT_PATH "/etc/sockmail/sockmail.conf"

enum auth_plaintext { AUTH_PLAINTEXT_NEVER, AUTH_PLAINTEXT_LOOPBACK };

struct config {
	const char *path;		/* the file loaded */

	char *hostname;			/* default: gethostname(), canonical */
	char *mail_dir;			/* /var/lib/sockmail/mail */
	char *state_dir;		/* /var/lib/sockmail */
	char *spool_dir;		/* /var/spool/sockmail */
	char *tls_cert;			/* "" = none */
	char *tls_key;
	char *tls_cert_dir;
	char *tls_priority;
	char *sendmail_socket;		/* /run/sockmail/sendmail.sock */
	char *dns_server;		/* "" = system resolver */
	unsigned outbound_port;		/* 25 */
	uint64_t message_size_limit;	/* bytes, 50M */
	unsigned max_recipients;	/* 100 */
	unsigned max_bad_commands;	/* 20: then 421 / BYE and close */
	unsigned smtp_timeout;		/* seconds, 300 */
	unsigned imap_idle_timeout;	/* seconds, 30 min */
	unsigned pop3_timeout;		/* seconds, 10 min (RFC 1939 3 minimum) */
	enum auth_plaintext auth_plaintext;
	char *relayhost;
	char *relayhost_auth_file;
	unsigned queue_lifetime;	/* seconds, 5d */
	unsigned delay_warning;		/* seconds, 4h */
	char *postmaster;		/* "" = postmaster@hostname */
	unsigned auth_fail_limit;	/* failed logins per address ... */
	unsigned auth_fail_window;	/* ... within this many seconds: 10, 15m */
	unsigned tls_ticket_key_lifetime;	/* seconds, 1d: then a new key */
};

/* The path to load: the -c argument if not NULL, else $SOCKMAIL_CONFIG, else
 * the default. */
const char *config_path(const char *from_command_line);

/* Fill *cfg with defaults, then read path.  On error returns -1 with a
 * "file:line: what" message in *err; *cfg then holds defaults plus whatever
 * was read before the error. */
int config_load(struct config *cfg, const char *path, struct str *err);

/* Defaults only (for tools that run without a file, and for tests). */
void config_defaults(struct config *cfg);
void config_free(struct config *cfg);

/* Value parsers, exposed for tests and for other readers: "50M", "512k",
 * "1G", "1234" bytes; "90s", "15m", "4h", "5d", "2w", "30" seconds.  Return
 * -1 on a malformed or overflowing value. */
int config_parse_size(const char *text, uint64_t *bytes);
int config_parse_duration(const char *text, unsigned *seconds);

#endif
