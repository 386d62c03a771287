/*
 * tls_module: the interface between the TLS loader (tls.c, in libcommon)
 * and the GnuTLS module (tls_module.c, built as sockmail-tls.so).
 *
 * The loader dlopen()s the module and calls its one exported symbol,
 * sockmail_tls_module(), for a table of functions.  Nothing crosses the
 * boundary but plain C types, so the module needs none of libcommon and
 * neither side depends on the other's struct layouts beyond this file; the
 * abi number is bumped whenever this file changes incompatibly.
 */
#ifndef SOCKMAIL_TLS_MODULE_H
#define SOCKMAIL_TLS_MODULE_H

#include <stdbool.h>
#include <stddef.h>

#define TLS_MODULE_ABI 1
#define TLS_MODULE_SYMBOL "sockmail_tls_module"
/* Error messages and descriptions are copied into buffers this size. */
#define TLS_MODULE_MSG_MAX 512

/* The config the module needs, as plain strings ("" = not set). */
struct tls_settings {
	const char *cert;		/* full chain PEM */
	const char *key;
	const char *cert_dir;		/* certbot layout, by SNI */
	const char *priority;		/* GnuTLS priority string */
	const char *state_dir;		/* where the ticket key lives, */
	const char *ticket_key_name;	/* ... in this file */
	const char *hostname;		/* the server's name: cert_dir fallback */
	unsigned ticket_key_lifetime;	/* seconds */
};

struct tls_session;

struct tls_module {
	unsigned abi;			/* TLS_MODULE_ABI */
	/* Handshakes: NULL with a one-line reason in err on failure. */
	struct tls_session *(*server_start)(const struct tls_settings *set,
					    int in_fd, int out_fd,
					    unsigned timeout, char *err,
					    size_t errlen);
	struct tls_session *(*client_start)(const struct tls_settings *set,
					    int fd, const char *server_name,
					    unsigned timeout, char *err,
					    size_t errlen);
	/* The stream transport; ctx is the struct tls_session. */
	long (*read)(void *ctx, void *buf, size_t len);
	long (*write)(void *ctx, const void *buf, size_t len);
	size_t (*pending)(void *ctx);
	void (*describe)(struct tls_session *t, char *buf, size_t len);
	bool (*resumed)(struct tls_session *t);
	const char *(*server_name)(struct tls_session *t);
	bool (*verified)(struct tls_session *t);
	/* Something the caller should log although the handshake worked
	 * (e.g. the ticket key could not be written), or NULL. */
	const char *(*warning)(struct tls_session *t);
	void (*close)(struct tls_session *t);
	/* The SNI check, exposed for tests: 0 and the lower-cased name in
	 * out if sni may be used as a directory name, else -1. */
	int (*sni_dir_name)(const char *sni, char *out, size_t outlen);
};

typedef const struct tls_module *tls_module_entry(void);

#endif
