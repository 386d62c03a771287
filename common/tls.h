/*
 * tls: TLS 1.2/1.3 for the handlers (server side) and the queue runner
 * (client side), over GnuTLS.
 *
 * GnuTLS and the libraries it pulls in cost several milliseconds to load,
 * which a per-connection handler would pay on every plain-text session.  So
 * the GnuTLS code lives in a loadable module, sockmail-tls.so, installed
 * beside the programs, and this loader dlopen()s it only when a session
 * actually starts TLS (STARTTLS, STLS, or an implicit-TLS port).
 *
 * Server side: certificate chain and key per domain by SNI from
 * tls_cert_dir in certbot's layout (<dir>/<name>/fullchain.pem and
 * privkey.pem), else tls_cert/tls_key (tls_key empty: the key is in the
 * tls_cert file), else <dir>/<hostname>/; session tickets with a key
 * kept in <state_dir>/tls-ticket.key (created 0600 when missing, replaced
 * when older than tls_ticket_key_lifetime), so a client resumes across
 * handler processes.
 */
#ifndef SOCKMAIL_TLS_H
#define SOCKMAIL_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "str.h"
#include "stream.h"

#define TLS_MODULE_NAME "sockmail-tls.so"
#define TLS_TICKET_KEY_FILE "tls-ticket.key"

struct tls_conn;

/* True if the config names a certificate that can be read (tls_cert) or
 * a tls_cert_dir, so STARTTLS can be offered.  Loads nothing. */
bool tls_configured(const struct config *cfg);

/*
 * Handshake as the server on in_fd/out_fd (the same socket, usually 0/1;
 * made non-blocking), the whole handshake bounded by timeout seconds
 * (0 = none).  Returns NULL with a one-line reason appended to *err on
 * failure (module missing, bad certificate, handshake cut, refused or
 * timed out); the caller logs it and ends the session.
 */
struct tls_conn *tls_server_start(const struct config *cfg, int in_fd,
				  int out_fd, unsigned timeout,
				  struct str *err);

/*
 * Handshake as a client (the queue runner's opportunistic STARTTLS) on
 * fd (made non-blocking), bounded by timeout like the server side:
 * server_name is sent as SNI when not NULL; the peer certificate is not
 * required to verify (opportunistic TLS, RFC 7435) but the result of
 * checking it against the system trust store (and server_name, if given)
 * can be read with tls_conn_verified().
 */
struct tls_conn *tls_client_start(const struct config *cfg, int fd,
				  const char *server_name, unsigned timeout,
				  struct str *err);

/* The transport to give stream_set_transport(). */
const struct stream_transport *tls_conn_transport(struct tls_conn *c);
/* Appends "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
 * for Received: headers and logs. */
void tls_conn_describe(struct tls_conn *c, struct str *out);
bool tls_conn_resumed(struct tls_conn *c);
/* Server: the SNI name the client sent, lower-cased ("" if none, or if
 * it is not a plain DNS name).  Client: the name it sent. */
const char *tls_conn_server_name(struct tls_conn *c);
bool tls_conn_verified(struct tls_conn *c);
/* Something worth a log line although the handshake worked (session
 * tickets disabled because the key file could not be written), or NULL. */
const char *tls_conn_warning(struct tls_conn *c);
/* Send close_notify (best effort) and free.  NULL is allowed. */
void tls_conn_close(struct tls_conn *c);

#endif
