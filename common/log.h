/*
 * log: one place every program logs through.  Under systemd (JOURNAL_STREAM
 * names our stderr, or the journal socket is asked for) entries go to the
 * journal with structured fields over its native protocol; otherwise one
 * line to stderr: "ident[pid]: message KEY=value ...".
 *
 * Field names are journal field names without the SOCKMAIL_ prefix, which
 * log_kv adds: log_kv(LOG_INFO, "session end", "PEER", peer, "RESULT", "ok",
 * NULL).  Secrets (passwords, AUTH data) are never passed here.
 */
#ifndef SOCKMAIL_LOG_H
#define SOCKMAIL_LOG_H

#include <syslog.h>

void log_open(const char *ident);
void log_msg(int priority, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* key/value pairs, NULL-terminated; a NULL value is left out. */
void log_kv(int priority, const char *message, ...)
	__attribute__((sentinel));

#endif
