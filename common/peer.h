/*
 * peer: who is on the other end of fd 0, as every handler needs it for
 * logs, Received: headers, the brute-force limit and the plaintext-login
 * rule.  Addresses are written "192.0.2.1" or "IPv6:2001:db8::1" (the
 * RFC 5321 address-literal form, so it drops into Received: as is); ""
 * when fd 0 is not a socket (a pipe in a test, or a local caller).
 */
#ifndef SOCKMAIL_PEER_H
#define SOCKMAIL_PEER_H

#include <stdbool.h>
#include <stddef.h>

#define PEER_MAX 64

/* The peer of fd.  The environment variable SOCKMAIL_TEST_PEER, when set,
 * replaces it: test-only, so the suite can play a client that is not on
 * loopback (only whoever writes the unit or the activator's command line
 * can set it). */
void peer_address(int fd, char out[PEER_MAX]);
bool peer_is_loopback(const char *peer);

/* Tell the client we cannot serve it before any protocol state exists
 * (a broken config): write line (with CRLF) to fd 1, log why, exit(1). */
__attribute__((noreturn)) void peer_refuse(const char *line, const char *why);

#endif
