/*
 * authlimit: brute-force protection shared by every handler.  Failed logins
 * are counted per client address (per /64 for IPv6) in
 * <state_dir>/authfail.tdb; once an address has auth_fail_limit failures
 * within auth_fail_window, further attempts are refused without the
 * password even being checked, until the window passes.  Each failure is
 * logged as one stable line, for fail2ban:
 *   <ident>[pid]: authentication failed PEER=<ip> USER=<user> SERVICE=<smtp|pop3|imap>
 */
#ifndef SOCKMAIL_AUTHLIMIT_H
#define SOCKMAIL_AUTHLIMIT_H

#include <stdbool.h>
#include <time.h>

#include "config.h"

#define AUTHLIMIT_FILE "authfail.tdb"
/* Room for any key authlimit_key makes, with its NUL. */
#define AUTHLIMIT_KEY_MAX 64

/* The counting key for a peer: the address, or "a:b:c:d::/64" for IPv6
 * (peer as smtp-handler formats it: "1.2.3.4" or "IPv6:..."; a bare IPv6
 * address and an IPv4-mapped one work too); "unknown" for an empty or
 * unparsable peer.  size should be AUTHLIMIT_KEY_MAX. */
void authlimit_key(const char *peer, char *out, size_t size);

/* Failures counted for peer in its current window (0 if none, if the
 * window is over, or on a database error). */
unsigned authlimit_count(const struct config *cfg, const char *peer,
			 time_t now);

/* True if peer is over the limit now.  Errors opening the database count as
 * not blocked (logged): a broken rate limiter must not lock everyone out. */
bool authlimit_blocked(const struct config *cfg, const char *peer, time_t now);

/* Count one failure for peer and log it (the line above; an empty peer is
 * logged as "unknown").  user may be NULL or "" (logged as USER=""). */
void authlimit_failure(const struct config *cfg, const char *peer,
		       const char *user, const char *service, time_t now);

#endif
