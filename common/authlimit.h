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

/* The counting key for a peer: the address, or "a:b:c:d::/64" for IPv6
 * (peer as smtp-handler formats it: "1.2.3.4" or "IPv6:..."). */
void authlimit_key(const char *peer, char *out, size_t size);

/* True if peer is over the limit now.  Errors opening the database count as
 * not blocked (logged): a broken rate limiter must not lock everyone out. */
bool authlimit_blocked(const struct config *cfg, const char *peer, time_t now);

/* Count one failure for peer and log it.  user may be NULL or "". */
void authlimit_failure(const struct config *cfg, const char *peer,
		       const char *user, const char *service, time_t now);

#endif
