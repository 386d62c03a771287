/*
 * tls_module: sockmail's TLS over GnuTLS, built as the loadable module
 * sockmail-tls.so (see tls.h for why it is a module, tls_module.h for the
 * interface).  It is self-contained: no libcommon, fixed bounded buffers,
 * errors as one line of text.
 *
 * Server: the certificate is chosen per connection in a post-client-hello
 * hook: <tls_cert_dir>/<SNI>/ (certbot layout), else tls_cert/tls_key,
 * else <tls_cert_dir>/<hostname>/; it is loaded from disk then, so a
 * renewed certificate is used by the next connection.  Session tickets use a master key kept in
 * <state_dir>/tls-ticket.key, shared by every handler process and replaced
 * when older than tls_ticket_key_lifetime.
 *
 * Client: opportunistic (RFC 7435): the peer is checked against the system
 * trust store for the record, but an unverified peer is not refused.
 *
 * Every wait is a poll() on the caller's non-blocking fds, so a stalled or
 * hostile peer costs at most the timeout.
 */
#include "tls_module.h"

#include <errno.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>


/* gnutls_session_ticket_key_generate() makes keys this size (GnuTLS's
 * TICKET_MASTER_KEY_SIZE); a key file of any other size is replaced. */
#define TICKET_KEY_SIZE 64
/* A key file whose mtime is this far in the future is not trusted to
 * expire: replace it. */
#define TICKET_KEY_CLOCK_SLACK 300
/* Longest SNI name used (DNS names are at most 253 octets). */
#define SNI_MAX 253
/* How long tls close waits for room to send close_notify, in ms. */
#define CLOSE_WAIT_MS 1000
/* Warning alerts tolerated during one handshake before giving up. */
#define HANDSHAKE_MAX_WARNINGS 4

struct tls_session {
	gnutls_session_t gs;
	gnutls_certificate_credentials_t cred;
	int in_fd, out_fd;
	bool verified;
	const struct tls_settings *set;	/* during the server handshake */
	char server_name[SNI_MAX + 1];	/* validated SNI, or "" */
	char error[TLS_MODULE_MSG_MAX];	/* set by the hello hook */
	char warning[TLS_MODULE_MSG_MAX];
};

static bool gnutls_ready;

/* snprintf for messages, where cutting a long path short is fine. */
static void msgf(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void msgf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* GnuTLS's own initialisation, once, at the first handshake. */
static int tls_global_init(char *err, size_t errlen)
{
	if (gnutls_ready)
		return 0;
	int r = gnutls_global_init();
	if (r < 0) {
		msgf(err, errlen, "GnuTLS initialisation failed: %s",
			 gnutls_strerror(r));
		return -1;
	}
	gnutls_ready = true;
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Wait for the fd GnuTLS is blocked on, until deadline (ms on the
 * monotonic clock, 0 = none).  1 ready, 0 timed out, -1 error. */
static int tls_poll(struct tls_session *t, long long deadline)
{
	struct pollfd p;
	if (gnutls_record_get_direction(t->gs) == 1)
		p = (struct pollfd){ .fd = t->out_fd, .events = POLLOUT };
	else
		p = (struct pollfd){ .fd = t->in_fd, .events = POLLIN };
	for (;;) {
		int ms = -1;
		if (deadline != 0) {
			long long left = deadline - now_ms();
			if (left <= 0)
				return 0;
			ms = left > 1000000000 ? 1000000000 : (int)left;
		}
		int n = poll(&p, 1, ms);
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

/* ---- SNI and certificates ---- */

/* A client-sent server name, lower-cased into out, if it is safe as a
 * directory name under tls_cert_dir: only [a-z0-9.-], no leading dot, no
 * "..", at most SNI_MAX octets.  "/" can never appear, so the name cannot
 * leave the directory. */
static int sni_dir_name(const char *sni, char *out, size_t outlen)
{
	size_t n = strlen(sni);
	if (n == 0 || n > SNI_MAX || n >= outlen || sni[0] == '.')
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = sni[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '-' || c == '.';
		if (!ok || (c == '.' && i > 0 && sni[i - 1] == '.'))
			return -1;
		out[i] = c;
	}
	out[n] = '\0';
	return 0;
}

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* <cert_dir>/<name>/fullchain.pem and privkey.pem, if both exist. */
static bool cert_dir_pair(const struct tls_settings *set, const char *name,
			  char *cert, char *key, size_t len)
{
	if (set->cert_dir[0] == '\0' || name[0] == '\0')
		return false;
	int a = snprintf(cert, len, "%s/%s/fullchain.pem", set->cert_dir,
			 name);
	int b = snprintf(key, len, "%s/%s/privkey.pem", set->cert_dir, name);
	if (a < 0 || b < 0 || (size_t)a >= len || (size_t)b >= len)
		return false;
	return file_exists(cert) && file_exists(key);
}

static int load_pair(struct tls_session *t, const char *cert,
		     const char *key)
{
	int r = gnutls_certificate_allocate_credentials(&t->cred);
	if (r >= 0)
		r = gnutls_certificate_set_x509_key_file2(
			t->cred, cert, key, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (r < 0) {
		msgf(t->error, sizeof t->error,
			 "cannot load certificate %s with key %s: %s", cert,
			 key, gnutls_strerror(r));
		return -1;
	}
	return 0;
}

/* Pick and load the certificate once the ClientHello (with its SNI) is
 * in: <cert_dir>/<sni>/, else tls_cert, else <cert_dir>/<hostname>/. */
static int tls_hello_hook(gnutls_session_t gs)
{
	struct tls_session *t = gnutls_session_get_ptr(gs);
	const struct tls_settings *set = t->set;
	/* a second ClientHello (after a HelloRetryRequest) has the same
	 * name: the credentials are set already */
	if (t->cred != NULL)
		return 0;
	if (set == NULL)	/* not during tls_server_start: refuse */
		return GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET;

	char raw[SNI_MAX + 2];
	size_t len = sizeof raw;
	unsigned type = 0;
	if (gnutls_server_name_get(gs, raw, &len, &type, 0) != 0 ||
	    type != GNUTLS_NAME_DNS || len >= sizeof raw ||
	    strlen(raw) != len ||
	    sni_dir_name(raw, t->server_name, sizeof t->server_name) < 0)
		t->server_name[0] = '\0';	/* none, or unusable: ignore */

	char cert[4096], key[4096];
	char host[SNI_MAX + 1];
	int r;
	if (cert_dir_pair(set, t->server_name, cert, key, sizeof cert))
		r = load_pair(t, cert, key);
	else if (set->cert[0] != '\0')
		r = load_pair(t, set->cert, set->key);
	else if (sni_dir_name(set->hostname, host, sizeof host) == 0 &&
		 cert_dir_pair(set, host, cert, key, sizeof cert))
		r = load_pair(t, cert, key);
	else {
		msgf(t->error, sizeof t->error,
			 "no certificate for \"%s\" in %s and no tls_cert",
			 t->server_name[0] ? t->server_name : set->hostname,
			 set->cert_dir);
		r = -1;
	}
	if (r == 0)
		r = gnutls_credentials_set(gs, GNUTLS_CRD_CERTIFICATE, t->cred);
	if (r < 0) {
		if (t->error[0] == '\0')
			msgf(t->error, sizeof t->error,
				 "cannot use certificate: %s",
				 gnutls_strerror(r));
		return GNUTLS_E_CERTIFICATE_ERROR;
	}
	return 0;
}

/* ---- session ticket key ---- */

/* The key file's key, if it is ours, private, the right size and younger
 * than the lifetime.  0 with the key in key[], else -1. */
static int ticket_key_read(const char *path, unsigned lifetime,
			   unsigned char *key)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	time_t now = time(NULL);
	int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		 st.st_size == TICKET_KEY_SIZE && st.st_uid == geteuid() &&
		 (st.st_mode & 077) == 0 &&
		 st.st_mtime <= now + TICKET_KEY_CLOCK_SLACK &&
		 now - st.st_mtime < (time_t)lifetime;
	size_t got = 0;
	while (ok && got < TICKET_KEY_SIZE) {
		ssize_t n = read(fd, key + got, TICKET_KEY_SIZE - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			ok = 0;
		else
			got += (size_t)n;
	}
	close(fd);
	if (!ok)
		explicit_bzero(key, TICKET_KEY_SIZE);
	return ok ? 0 : -1;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A new key in key[], written to path atomically: a 0600 temp file in
 * the same directory, fsync, rename over.  Handlers racing here each
 * install a valid key; the last rename wins, and a ticket made with a
 * losing key only costs its client a full handshake. */
static int ticket_key_create(const char *dir, const char *name,
			     const char *path, unsigned char *key, char *warn,
			     size_t wlen)
{
	gnutls_datum_t d = { NULL, 0 };
	int r = gnutls_session_ticket_key_generate(&d);
	if (r < 0 || d.size != TICKET_KEY_SIZE) {
		msgf(warn, wlen, "session tickets disabled: cannot make "
			 "a key: %s", r < 0 ? gnutls_strerror(r) : "odd size");
		if (d.data != NULL) {
			gnutls_memset(d.data, 0, d.size);
			gnutls_free(d.data);
		}
		return -1;
	}
	memcpy(key, d.data, TICKET_KEY_SIZE);
	gnutls_memset(d.data, 0, d.size);
	gnutls_free(d.data);

	char tmp[4096];
	int n = snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, name);
	if (n < 0 || (size_t)n >= sizeof tmp) {
		msgf(warn, wlen, "session tickets disabled: state_dir "
			 "path too long");
		goto fail;
	}
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		msgf(warn, wlen, "session tickets disabled: cannot create "
			 "a file in %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (fchmod(fd, 0600) < 0 || write_all(fd, key, TICKET_KEY_SIZE) < 0 ||
	    fsync(fd) < 0) {
		msgf(warn, wlen, "session tickets disabled: cannot write "
			 "%s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto fail;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		msgf(warn, wlen, "session tickets disabled: cannot rename "
			 "%s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		goto fail;
	}
	/* make the rename itself durable, so a crash cannot bring back an
	 * old key that clients' tickets no longer match */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	explicit_bzero(key, TICKET_KEY_SIZE);
	return -1;
}

/* Turn on session tickets with the shared key, making it if needed.  A
 * failure only disables tickets; the reason goes to t->warning. */
static void tls_tickets_enable(struct tls_session *t,
			       const struct tls_settings *set)
{
	char path[4096];
	int n = snprintf(path, sizeof path, "%s/%s", set->state_dir,
			 set->ticket_key_name);
	if (set->state_dir[0] == '\0' || n < 0 || (size_t)n >= sizeof path) {
		msgf(t->warning, sizeof t->warning,
			 "session tickets disabled: no usable state_dir");
		return;
	}
	unsigned char key[TICKET_KEY_SIZE];
	if (ticket_key_read(path, set->ticket_key_lifetime, key) < 0 &&
	    ticket_key_create(set->state_dir, set->ticket_key_name, path, key,
			      t->warning, sizeof t->warning) < 0)
		return;
	gnutls_datum_t d = { key, TICKET_KEY_SIZE };
	int r = gnutls_session_ticket_enable_server(t->gs, &d);
	/* GnuTLS keeps its own copy */
	explicit_bzero(key, sizeof key);
	if (r < 0)
		msgf(t->warning, sizeof t->warning,
			 "session tickets disabled: %s", gnutls_strerror(r));
}

/* ---- handshake ---- */

static void handshake_error(struct tls_session *t, int r, char *err,
			    size_t errlen)
{
	if (t->error[0] != '\0')
		msgf(err, errlen, "TLS handshake failed: %s", t->error);
	else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
		msgf(err, errlen, "TLS handshake failed: peer sent "
			 "alert: %s",
			 gnutls_alert_get_name(gnutls_alert_get(t->gs)));
	else if (r == GNUTLS_E_PREMATURE_TERMINATION)
		msgf(err, errlen, "TLS handshake failed: connection "
			 "closed by peer");
	else if (r == GNUTLS_E_PUSH_ERROR || r == GNUTLS_E_PULL_ERROR)
		msgf(err, errlen, "TLS handshake failed: connection "
			 "lost while %s", r == GNUTLS_E_PUSH_ERROR ? "sending"
							    : "receiving");
	else
		msgf(err, errlen, "TLS handshake failed: %s",
			 gnutls_strerror(r));
}

/* Drive gnutls_handshake() to the end, within timeout seconds in all
 * (0: no limit): a client dribbling bytes cannot stretch it. */
static int tls_handshake(struct tls_session *t, unsigned timeout, char *err,
			 size_t errlen)
{
	long long deadline = timeout ? now_ms() + (long long)timeout * 1000
				     : 0;
	int warnings = 0;
	for (;;) {
		int r = gnutls_handshake(t->gs);
		if (r == 0)
			return 0;
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			int w = tls_poll(t, deadline);
			if (w > 0)
				continue;
			if (w == 0)
				msgf(err, errlen, "TLS handshake timed "
					 "out after %u seconds", timeout);
			else
				msgf(err, errlen, "TLS handshake: poll: "
					 "%s", strerror(errno));
			return -1;
		}
		if (r == GNUTLS_E_WARNING_ALERT_RECEIVED &&
		    ++warnings <= HANDSHAKE_MAX_WARNINGS)
			continue;
		handshake_error(t, r, err, errlen);
		/* Tell the peer why (RFC 8446 6.2: e.g. protocol_version for
		 * TLS 1.1), best effort: it may be gone already. */
		if (r != GNUTLS_E_PREMATURE_TERMINATION &&
		    r != GNUTLS_E_PUSH_ERROR && r != GNUTLS_E_PULL_ERROR)
			(void)gnutls_alert_send_appropriate(t->gs, r);
		return -1;
	}
}

static struct tls_session *tls_session_new(unsigned flags, int in_fd,
					   int out_fd, const char *priority,
					   char *err, size_t errlen)
{
	if (tls_global_init(err, errlen) < 0)
		return NULL;
	struct tls_session *t = calloc(1, sizeof *t);
	if (t == NULL) {
		msgf(err, errlen, "out of memory");
		return NULL;
	}
	t->in_fd = in_fd;
	t->out_fd = out_fd;
	/* NONBLOCK: every wait is ours (tls_poll), with a deadline;
	 * NO_SIGNAL: a vanished peer is an error, not SIGPIPE. */
	int r = gnutls_init(&t->gs, flags | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	if (r < 0) {
		msgf(err, errlen, "gnutls_init: %s", gnutls_strerror(r));
		free(t);
		return NULL;
	}
	const char *bad = NULL;
	r = gnutls_priority_set_direct(t->gs, priority, &bad);
	if (r < 0) {
		msgf(err, errlen, "bad tls_priority at \"%.40s\": %s",
			 bad != NULL ? bad : priority, gnutls_strerror(r));
		gnutls_deinit(t->gs);
		free(t);
		return NULL;
	}
	gnutls_session_set_ptr(t->gs, t);
	set_nonblock(in_fd);
	set_nonblock(out_fd);
	gnutls_transport_set_int2(t->gs, in_fd, out_fd);
	return t;
}

static void tls_session_free(struct tls_session *t)
{
	gnutls_deinit(t->gs);
	if (t->cred != NULL)
		gnutls_certificate_free_credentials(t->cred);
	free(t);
}

static struct tls_session *mod_server_start(const struct tls_settings *set,
					    int in_fd, int out_fd,
					    unsigned timeout, char *err,
					    size_t errlen)
{
	struct tls_session *t = tls_session_new(GNUTLS_SERVER, in_fd, out_fd,
						set->priority, err, errlen);
	if (t == NULL)
		return NULL;
	t->set = set;
	tls_tickets_enable(t, set);
	gnutls_handshake_set_post_client_hello_function(t->gs,
							tls_hello_hook);
	int r = tls_handshake(t, timeout, err, errlen);
	t->set = NULL;	/* the caller's, valid only during the call */
	if (r < 0) {
		tls_session_free(t);
		return NULL;
	}
	/* The client's Finished needs no answer, so the kernel would delay
	 * its ACK, and a client with Nagle on holds its first command back
	 * until that ACK comes: 40 ms on every connection.  ACK at once. */
	int one = 1;
	(void)setsockopt(in_fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	return t;
}

static struct tls_session *mod_client_start(const struct tls_settings *set,
					    int fd, const char *server_name,
					    unsigned timeout, char *err,
					    size_t errlen)
{
	struct tls_session *t = tls_session_new(GNUTLS_CLIENT, fd, fd,
						set->priority, err, errlen);
	if (t == NULL)
		return NULL;
	int r = gnutls_certificate_allocate_credentials(&t->cred);
	if (r >= 0) {
		/* no trust anchors only means "not verified" */
		(void)gnutls_certificate_set_x509_system_trust(t->cred);
		r = gnutls_credentials_set(t->gs, GNUTLS_CRD_CERTIFICATE,
					   t->cred);
	}
	if (r >= 0 && server_name != NULL && server_name[0] != '\0') {
		snprintf(t->server_name, sizeof t->server_name, "%s",
			 server_name);
		r = gnutls_server_name_set(t->gs, GNUTLS_NAME_DNS, server_name,
					   strlen(server_name));
	}
	if (r < 0) {
		msgf(err, errlen, "TLS client setup: %s",
			 gnutls_strerror(r));
		tls_session_free(t);
		return NULL;
	}
	if (tls_handshake(t, timeout, err, errlen) < 0) {
		tls_session_free(t);
		return NULL;
	}
	unsigned status = 0;
	r = gnutls_certificate_verify_peers3(
		t->gs, t->server_name[0] ? t->server_name : NULL, &status);
	t->verified = r == 0 && status == 0;
	return t;
}

/* ---- the stream transport ---- */

static long tls_read(void *ctx, void *buf, size_t len)
{
	struct tls_session *t = ctx;
	ssize_t r = gnutls_record_recv(t->gs, buf, len);
	if (r >= 0)
		return (long)r;	/* 0: close_notify */
	switch (r) {
	case GNUTLS_E_AGAIN:
		errno = EAGAIN;
		return -1;
	case GNUTLS_E_INTERRUPTED:
	case GNUTLS_E_WARNING_ALERT_RECEIVED:
		/* nothing for the caller yet: poll and come again */
		errno = EINTR;
		return -1;
	case GNUTLS_E_PREMATURE_TERMINATION:
		return 0;	/* the peer closed without close_notify */
	default:
		/* renegotiation attempts, bad records, fatal alerts */
		errno = EIO;
		return -1;
	}
}

static long tls_write(void *ctx, const void *buf, size_t len)
{
	struct tls_session *t = ctx;
	ssize_t r = gnutls_record_send(t->gs, buf, len);
	if (r >= 0)
		return (long)r;
	if (r == GNUTLS_E_AGAIN)
		errno = EAGAIN;
	else if (r == GNUTLS_E_INTERRUPTED)
		errno = EINTR;
	else
		errno = EIO;
	return -1;
}

static size_t tls_pending(void *ctx)
{
	struct tls_session *t = ctx;
	return gnutls_record_check_pending(t->gs);
}

/* ---- the rest of the interface ---- */

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", the
 * wording of Postfix's Received: headers. */
static void tls_describe(struct tls_session *t, char *buf, size_t len)
{
	const char *proto = gnutls_protocol_get_name(
		gnutls_protocol_get_version(t->gs));
	const char *suite = gnutls_ciphersuite_get(t->gs);
	unsigned bits = (unsigned)gnutls_cipher_get_key_size(
				gnutls_cipher_get(t->gs)) * 8;
	if (proto == NULL)
		proto = "unknown";
	/* GnuTLS says "TLS1.3", mail headers say "TLSv1.3" */
	if (strncmp(proto, "TLS", 3) == 0 && proto[3] >= '0' &&
	    proto[3] <= '9')
		msgf(buf, len, "TLSv%s with cipher %s (%u/%u bits)",
			 proto + 3, suite ? suite : "unknown", bits, bits);
	else
		msgf(buf, len, "%s with cipher %s (%u/%u bits)", proto,
			 suite ? suite : "unknown", bits, bits);
}

static bool tls_resumed(struct tls_session *t)
{
	return gnutls_session_is_resumed(t->gs) != 0;
}

static const char *tls_server_name(struct tls_session *t)
{
	return t->server_name;
}

static bool tls_verified(struct tls_session *t)
{
	return t->verified;
}

static const char *tls_warning(struct tls_session *t)
{
	return t->warning[0] != '\0' ? t->warning : NULL;
}

/* close_notify, best effort and briefly: a peer that stopped reading
 * does not get to hold the process. */
static void tls_close(struct tls_session *t)
{
	if (t == NULL)
		return;
	long long deadline = now_ms() + CLOSE_WAIT_MS;
	for (;;) {
		int r = gnutls_bye(t->gs, GNUTLS_SHUT_WR);
		if ((r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) ||
		    tls_poll(t, deadline) <= 0)
			break;
	}
	tls_session_free(t);
}

static const struct tls_module module = {
	.abi = TLS_MODULE_ABI,
	.server_start = mod_server_start,
	.client_start = mod_client_start,
	.read = tls_read,
	.write = tls_write,
	.pending = tls_pending,
	.describe = tls_describe,
	.resumed = tls_resumed,
	.server_name = tls_server_name,
	.verified = tls_verified,
	.warning = tls_warning,
	.close = tls_close,
	.sni_dir_name = sni_dir_name,
};

/* The one exported symbol (the module is built with default visibility,
 * but everything else here is static). */
const struct tls_module *sockmail_tls_module(void);
const struct tls_module *sockmail_tls_module(void)
{
	return &module;
}
