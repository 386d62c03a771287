/*
 * tls: the loader half of sockmail's TLS.  See tls.h.
 *
 * This file has no GnuTLS in it: it finds sockmail-tls.so, dlopen()s it on
 * the first tls_*_start() call and forwards everything to the module's
 * function table (tls_module.h).  A session that never starts TLS pays for
 * nothing but this file's few hundred bytes of code.
 */
#include "tls.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls_module.h"

struct tls_conn {
	const struct tls_module *m;
	struct tls_session *s;
	struct stream_transport transport;
};

/* The module, loaded at most once per process.  When loading failed the
 * reason is kept, so every later caller gets the same message. */
static const struct tls_module *tls_module;
static char *tls_module_error;

bool tls_configured(const struct config *cfg)
{
	/* One access() rather than a promise we cannot keep: offering
	 * STARTTLS with an unreadable certificate would turn a working
	 * plaintext session into a dead one (the client gets 454 instead). */
	if (cfg->tls_cert[0] != '\0')
		return access(cfg->tls_cert, R_OK) == 0;
	return cfg->tls_cert_dir[0] != '\0';
}

/* $SOCKMAIL_TLS_MODULE (for tests; ignored in a setuid program), else
 * TLS_MODULE_NAME beside the running program. */
static int tls_module_path(struct str *path, struct str *err)
{
	const char *env = secure_getenv("SOCKMAIL_TLS_MODULE");
	if (env != NULL && env[0] != '\0') {
		str_append(path, env);
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0 || (size_t)n >= sizeof exe - 1) {
		str_append(err, "cannot find the TLS module: "
			   "/proc/self/exe unreadable");
		return -1;
	}
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash == NULL) {
		str_append(err, "cannot find the TLS module: odd /proc/self/exe");
		return -1;
	}
	str_append_n(path, exe, (size_t)(slash - exe) + 1);
	str_append(path, TLS_MODULE_NAME);
	return 0;
}

static const struct tls_module *tls_module_open(struct str *err)
{
	struct str path = STR_INIT;
	const struct tls_module *m = NULL;
	void *h = NULL;

	if (tls_module_path(&path, err) < 0)
		goto out;
	h = dlopen(str_c(&path), RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		/* dlerror() names the file and the reason */
		str_printf(err, "cannot load the TLS module: %s", dlerror());
		goto out;
	}
	tls_module_entry *entry;
	/* POSIX's sanctioned way to turn a dlsym() result into a function
	 * pointer without a cast between object and function types. */
	*(void **)&entry = dlsym(h, TLS_MODULE_SYMBOL);
	if (entry == NULL) {
		str_printf(err, "%s: no %s symbol", str_c(&path),
			   TLS_MODULE_SYMBOL);
		goto out;
	}
	m = entry();
	if (m == NULL || m->abi != TLS_MODULE_ABI) {
		str_printf(err, "%s: interface version %u, expected %u",
			   str_c(&path), m != NULL ? m->abi : 0,
			   TLS_MODULE_ABI);
		m = NULL;
	}
out:
	/* A module with the wrong interface stays mapped (h is dropped):
	 * unloading GnuTLS again is not worth it on an error path. */
	str_free(&path);
	return m;
}

/* The module, loading it on first use. */
static const struct tls_module *tls_module_get(struct str *err)
{
	if (tls_module != NULL)
		return tls_module;
	if (tls_module_error == NULL) {
		struct str why = STR_INIT;
		tls_module = tls_module_open(&why);
		if (tls_module != NULL) {
			str_free(&why);
			return tls_module;
		}
		tls_module_error = xstrdup(str_c(&why));
		str_free(&why);
	}
	str_append(err, tls_module_error);
	return NULL;
}

static void tls_settings_from(struct tls_settings *set,
			      const struct config *cfg)
{
	set->cert = cfg->tls_cert;
	/* a key kept in the certificate's PEM file is common enough */
	set->key = cfg->tls_key[0] != '\0' ? cfg->tls_key : cfg->tls_cert;
	set->cert_dir = cfg->tls_cert_dir;
	set->priority = cfg->tls_priority;
	set->state_dir = cfg->state_dir;
	set->ticket_key_name = TLS_TICKET_KEY_FILE;
	set->hostname = cfg->hostname != NULL ? cfg->hostname : "";
	set->ticket_key_lifetime = cfg->tls_ticket_key_lifetime;
}

static struct tls_conn *tls_conn_new(const struct tls_module *m,
				     struct tls_session *s)
{
	struct tls_conn *c = xcalloc(1, sizeof *c);
	c->m = m;
	c->s = s;
	c->transport.read = m->read;
	c->transport.write = m->write;
	c->transport.pending = m->pending;
	c->transport.ctx = s;
	return c;
}

struct tls_conn *tls_server_start(const struct config *cfg, int in_fd,
				  int out_fd, unsigned timeout,
				  struct str *err)
{
	if (!tls_configured(cfg)) {
		str_append(err, "TLS not configured (no tls_cert or "
			   "tls_cert_dir)");
		return NULL;
	}
	const struct tls_module *m = tls_module_get(err);
	if (m == NULL)
		return NULL;
	struct tls_settings set;
	tls_settings_from(&set, cfg);
	char why[TLS_MODULE_MSG_MAX] = "";
	struct tls_session *s = m->server_start(&set, in_fd, out_fd, timeout,
						why, sizeof why);
	if (s == NULL) {
		str_append(err, why[0] != '\0' ? why : "TLS handshake failed");
		return NULL;
	}
	return tls_conn_new(m, s);
}

struct tls_conn *tls_client_start(const struct config *cfg, int fd,
				  const char *server_name, unsigned timeout,
				  struct str *err)
{
	const struct tls_module *m = tls_module_get(err);
	if (m == NULL)
		return NULL;
	struct tls_settings set;
	tls_settings_from(&set, cfg);
	char why[TLS_MODULE_MSG_MAX] = "";
	struct tls_session *s = m->client_start(&set, fd, server_name,
						timeout, why, sizeof why);
	if (s == NULL) {
		str_append(err, why[0] != '\0' ? why : "TLS handshake failed");
		return NULL;
	}
	return tls_conn_new(m, s);
}

const struct stream_transport *tls_conn_transport(struct tls_conn *c)
{
	return &c->transport;
}

void tls_conn_describe(struct tls_conn *c, struct str *out)
{
	char buf[TLS_MODULE_MSG_MAX] = "";
	c->m->describe(c->s, buf, sizeof buf);
	str_append(out, buf);
}

bool tls_conn_resumed(struct tls_conn *c)
{
	return c->m->resumed(c->s);
}

const char *tls_conn_server_name(struct tls_conn *c)
{
	return c->m->server_name(c->s);
}

bool tls_conn_verified(struct tls_conn *c)
{
	return c->m->verified(c->s);
}

const char *tls_conn_warning(struct tls_conn *c)
{
	return c->m->warning(c->s);
}

void tls_conn_close(struct tls_conn *c)
{
	if (c == NULL)
		return;
	c->m->close(c->s);
	free(c);
}
