/*
 * Unit tests for common/tls.c and the module sockmail-tls.so: handshakes,
 * the description string, SNI certificate selection (and hostile names),
 * the session ticket key file, resumption between two server processes,
 * refused protocol versions, cut and stalled handshakes, the client side.
 *
 * Each server runs tls_server_start() in a forked child on one end of a
 * socketpair and reports what it saw through a pipe; the parent plays the
 * client, mostly with GnuTLS directly so it can look at the peer
 * certificate and keep session data.  Certificates are made at setup with
 * certtool.  The module is $SOCKMAIL_TLS_MODULE, else ../sockmail-tls.so
 * relative to this binary ($BUILD/tests/ -> $BUILD/).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "config.h"
#include "str.h"
#include "stream.h"
#include "tls.h"
#include "tls_module.h"

#define SERVER_TIMEOUT 5	/* seconds, for the server side */
#define CHILD_WAIT_MS 10000	/* the longest a server child may take */

static char tmpdir[PATH_MAX];
static struct config cfg;
/* The last session() as the client saw it, in tls_conn_describe's words. */
static char client_describe[160];

/* ---- setup: certificates, config ---- */

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	struct str cmd = STR_INIT;
	va_list ap;
	va_start(ap, fmt);
	str_vprintf(&cmd, fmt, ap);
	va_end(ap);
	int r = system(str_c(&cmd));
	if (r != 0)
		fail_msg("command failed (%d): %s", r, str_c(&cmd));
	str_free(&cmd);
}

/* A self-signed certificate for cn with its key, at cert and key. */
static void make_cert(const char *type, const char *cn, const char *cert,
		      const char *key)
{
	sh("cd %s && printf 'cn = \"%s\"\\ndns_name = \"%s\"\\ntls_www_server\\n"
	   "signing_key\\nencryption_key\\nexpiration_days = 30\\n' > tmpl && "
	   "certtool --generate-privkey --key-type=%s %s --outfile '%s' "
	   ">/dev/null 2>&1 && "
	   "certtool --generate-self-signed --load-privkey '%s' --template tmpl "
	   "--outfile '%s' >/dev/null 2>&1 && rm tmpl",
	   tmpdir, cn, cn, type, strcmp(type, "rsa") == 0 ? "--bits=2048" : "",
	   key, key, cert);
}

static char *path_in(const char *rel)
{
	struct str p = STR_INIT;
	str_printf(&p, "%s/%s", tmpdir, rel);
	return p.data;
}

static void cfg_set(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

static void cfg_set_path(char **field, const char *rel)
{
	free(*field);
	*field = rel[0] ? path_in(rel) : xstrdup("");
}

/* The default test config: the ECDSA default pair and the cert dir. */
static void cfg_reset(void)
{
	config_free(&cfg);
	config_defaults(&cfg);
	cfg_set_path(&cfg.tls_cert, "ec.pem");
	cfg_set_path(&cfg.tls_key, "ec.key");
	cfg_set_path(&cfg.tls_cert_dir, "certs");
	cfg_set_path(&cfg.state_dir, "state");
	cfg_set(&cfg.hostname, "host.invalid");
}

static int group_setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof tmpdir, "%s/test_tls.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	sh("cd %s && mkdir -p state certs/mail.example.org certs/mx.example.net"
	   " evil certs/a/b", tmpdir);
	make_cert("ecdsa", "default.test", "ec.pem", "ec.key");
	make_cert("rsa", "rsa.test", "rsa.pem", "rsa.key");
	make_cert("rsa", "mail.example.org", "certs/mail.example.org/fullchain.pem",
		  "certs/mail.example.org/privkey.pem");
	make_cert("ecdsa", "mx.example.net", "certs/mx.example.net/fullchain.pem",
		  "certs/mx.example.net/privkey.pem");
	/* where a path-traversing SNI name would lead */
	make_cert("ecdsa", "evil.test", "evil/fullchain.pem", "evil/privkey.pem");
	make_cert("ecdsa", "evil.test", "certs/a/b/fullchain.pem",
		  "certs/a/b/privkey.pem");
	make_cert("ecdsa", "evil.test", "fullchain.pem", "privkey.pem");
	make_cert("ecdsa", "evil.test", "certs/fullchain.pem",
		  "certs/privkey.pem");

	if (getenv("SOCKMAIL_TLS_MODULE") == NULL) {
		char exe[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
		if (n <= 0)
			return -1;
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		struct str m = STR_INIT;
		str_printf(&m, "%s/../%s", exe, TLS_MODULE_NAME);
		setenv("SOCKMAIL_TLS_MODULE", str_c(&m), 1);
		str_free(&m);
	}
	config_defaults(&cfg);
	cfg_reset();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	config_free(&cfg);
	sh("rm -rf '%s'", tmpdir);
	return 0;
}

static int test_setup(void **state)
{
	(void)state;
	cfg_reset();
	return 0;
}

/* ---- the server child ---- */

struct srv_result {
	int started;		/* tls_server_start succeeded */
	int resumed;
	int end_status;		/* stream status after the exchange */
	char err[512];
	char describe[160];
	char sni[256];
	char warning[512];
	char line[64];		/* what the client sent */
};

struct server {
	pid_t pid;
	int result_fd;
	int client_fd;		/* the parent's end of the socketpair */
};

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src != NULL ? src : "");
}

/* In the child: handshake, then read one line and answer "OK <line>",
 * then read until the client is gone. */
static void server_run(int fd, unsigned timeout, struct srv_result *r)
{
	struct str err = STR_INIT;
	struct tls_conn *c = tls_server_start(&cfg, fd, fd, timeout, &err);
	copy(r->err, sizeof r->err, str_c(&err));
	str_free(&err);
	if (c == NULL)
		return;
	r->started = 1;
	r->resumed = tls_conn_resumed(c);
	struct str d = STR_INIT;
	tls_conn_describe(c, &d);
	copy(r->describe, sizeof r->describe, str_c(&d));
	str_free(&d);
	copy(r->sni, sizeof r->sni, tls_conn_server_name(c));
	copy(r->warning, sizeof r->warning, tls_conn_warning(c));

	struct stream s;
	stream_init(&s, fd, fd, timeout, 1024);
	stream_set_transport(&s, tls_conn_transport(c));
	const char *line;
	size_t len;
	int st = stream_getline(&s, 1024, &line, &len);
	if (st == STREAM_OK) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		snprintf(r->line, sizeof r->line, "%.*s", (int)len, line);
		stream_printf(&s, "OK %s\r\n", r->line);
		st = stream_flush(&s);
		while (st == STREAM_OK)
			st = stream_getline(&s, 1024, &line, &len);
	}
	r->end_status = st;
	stream_free(&s);
	tls_conn_close(c);
}

static struct server server_start(unsigned timeout)
{
	struct server srv;
	int sv[2], p[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pipe(p), 0);
	fflush(stdout);
	fflush(stderr);
	srv.pid = fork();
	assert_true(srv.pid >= 0);
	if (srv.pid == 0) {
		close(sv[0]);
		close(p[0]);
		struct srv_result r;
		memset(&r, 0, sizeof r);
		server_run(sv[1], timeout, &r);
		close(sv[1]);
		ssize_t n = write(p[1], &r, sizeof r);
		/* exit(), not _exit(): the sanitizers check the child too */
		exit(n == (ssize_t)sizeof r ? 0 : 3);
	}
	close(sv[1]);
	close(p[1]);
	srv.result_fd = p[0];
	srv.client_fd = sv[0];
	return srv;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The child's report; it must exit 0 within max_ms of this call. */
static void server_finish(struct server *srv, struct srv_result *r,
			  int max_ms)
{
	if (srv->client_fd >= 0)
		close(srv->client_fd);
	srv->client_fd = -1;
	memset(r, 0, sizeof *r);
	long long deadline = now_ms() + max_ms;
	struct pollfd pf = { .fd = srv->result_fd, .events = POLLIN };
	int n = poll(&pf, 1, max_ms);
	ssize_t got = n > 0 ? read(srv->result_fd, r, sizeof *r) : -1;
	close(srv->result_fd);
	int status = -1;
	for (;;) {
		pid_t w = waitpid(srv->pid, &status, WNOHANG);
		if (w == srv->pid)
			break;
		if (now_ms() > deadline) {
			kill(srv->pid, SIGKILL);
			waitpid(srv->pid, &status, 0);
			fail_msg("server child did not exit within %d ms", max_ms);
		}
		usleep(5000);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("server child: status 0x%x", status);
	assert_int_equal(got, (ssize_t)sizeof *r);
}

/* ---- the client, GnuTLS directly ---- */

struct client {
	gnutls_session_t s;
	gnutls_certificate_credentials_t cred;
	int fd;
};

/* Handshake on fd; 0 or the GnuTLS error. */
static int client_handshake(struct client *c, int fd, const char *sni,
			    const char *priority, const gnutls_datum_t *resume)
{
	memset(c, 0, sizeof *c);
	c->fd = fd;
	struct timeval tv = { 10, 0 };	/* hang guard */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	assert_int_equal(gnutls_certificate_allocate_credentials(&c->cred), 0);
	assert_int_equal(gnutls_init(&c->s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL), 0);
	assert_int_equal(gnutls_priority_set_direct(c->s, priority ? priority : "NORMAL", NULL), 0);
	assert_int_equal(gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, c->cred), 0);
	if (sni != NULL)
		assert_int_equal(gnutls_server_name_set(c->s, GNUTLS_NAME_DNS, sni, strlen(sni)), 0);
	if (resume != NULL)
		assert_int_equal(gnutls_session_set_data(c->s, resume->data, resume->size), 0);
	gnutls_transport_set_int(c->s, fd);
	gnutls_handshake_set_timeout(c->s, 10000);
	int r;
	do {
		r = gnutls_handshake(c->s);
	} while (r < 0 && !gnutls_error_is_fatal(r));
	return r;
}

static void client_free(struct client *c)
{
	gnutls_deinit(c->s);
	gnutls_certificate_free_credentials(c->cred);
}

/* Send "HELLO", expect "OK HELLO" back. */
static void client_exchange(struct client *c)
{
	assert_int_equal(gnutls_record_send(c->s, "HELLO\r\n", 7), 7);
	char buf[256];
	size_t got = 0;
	while (got < sizeof buf - 1 && memchr(buf, '\n', got) == NULL) {
		ssize_t n = gnutls_record_recv(c->s, buf + got, sizeof buf - 1 - got);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n <= 0)
			fail_msg("client read: %s", gnutls_strerror((int)n));
		got += (size_t)n;
	}
	buf[got] = '\0';
	assert_string_equal(buf, "OK HELLO\r\n");
}

/* The peer certificate's CN. */
static void peer_cn(struct client *c, char *cn, size_t len)
{
	unsigned n = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(c->s, &n);
	assert_non_null(certs);
	assert_true(n >= 1);
	gnutls_x509_crt_t crt;
	assert_int_equal(gnutls_x509_crt_init(&crt), 0);
	assert_int_equal(gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER), 0);
	size_t sz = len;
	assert_int_equal(gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME,
						       0, 0, cn, &sz), 0);
	gnutls_x509_crt_deinit(crt);
}

/* A whole session: handshake, exchange, close_notify.  The server's
 * report in *r, the peer's CN in cn (if not NULL), session data for a
 * resumption in *save (if not NULL); returns whether it was resumed. */
static bool session(const char *sni, const char *priority,
		    const gnutls_datum_t *resume, gnutls_datum_t *save,
		    char *cn, size_t cnlen, struct srv_result *r)
{
	struct server srv = server_start(SERVER_TIMEOUT);
	struct client c;
	int h = client_handshake(&c, srv.client_fd, sni, priority, resume);
	if (h < 0) {
		server_finish(&srv, r, CHILD_WAIT_MS);
		fail_msg("client handshake: %s; server: %s", gnutls_strerror(h), r->err);
	}
	client_exchange(&c);
	bool resumed = gnutls_session_is_resumed(c.s) != 0;
	unsigned bits = (unsigned)gnutls_cipher_get_key_size(gnutls_cipher_get(c.s)) * 8;
	snprintf(client_describe, sizeof client_describe,
		 "TLSv%s with cipher %s (%u/%u bits)",
		 gnutls_protocol_get_name(gnutls_protocol_get_version(c.s)) + 3,
		 gnutls_ciphersuite_get(c.s), bits, bits);
	if (cn != NULL)
		peer_cn(&c, cn, cnlen);
	if (save != NULL)
		assert_int_equal(gnutls_session_get_data2(c.s, save), 0);
	gnutls_bye(c.s, GNUTLS_SHUT_WR);
	client_free(&c);
	server_finish(&srv, r, CHILD_WAIT_MS);
	assert_int_equal(r->started, 1);
	assert_string_equal(r->line, "HELLO");
	assert_int_equal(r->end_status, STREAM_EOF);
	return resumed;
}

static void expect_cn(const char *sni, const char *want_cn, const char *want_sni)
{
	struct srv_result r;
	char cn[256];
	session(sni, NULL, NULL, NULL, cn, sizeof cn, &r);
	assert_string_equal(cn, want_cn);
	assert_string_equal(r.sni, want_sni);
}

/* ---- tests ---- */

static bool module_mapped(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	char line[1024];
	bool found = false;
	while (fgets(line, sizeof line, f) != NULL)
		if (strstr(line, TLS_MODULE_NAME) != NULL)
			found = true;
	fclose(f);
	return found;
}

/* In a fresh child (the parent may have loaded the module): nothing is
 * loaded before the first handshake, and the module is after it. */
static void test_lazy_load(void **state)
{
	(void)state;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int code = 0;
		if (!tls_configured(&cfg) || module_mapped())
			code = 1;
		int sv[2];
		if (code == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
			close(sv[0]);	/* the handshake fails at once */
			struct str err = STR_INIT;
			if (tls_server_start(&cfg, sv[1], sv[1], 1, &err) != NULL ||
			    err.len == 0)
				code = 2;
			else if (!module_mapped())
				code = 3;
			str_free(&err);
			close(sv[1]);
		}
		exit(code);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_configured(void **state)
{
	(void)state;
	assert_true(tls_configured(&cfg));
	cfg_set(&cfg.tls_cert, "");
	assert_true(tls_configured(&cfg));	/* cert_dir alone */
	cfg_set(&cfg.tls_cert_dir, "");
	assert_false(tls_configured(&cfg));
	struct str err = STR_INIT;
	assert_null(tls_server_start(&cfg, -1, -1, 1, &err));
	assert_string_equal(str_c(&err), "TLS not configured (no tls_cert or tls_cert_dir)");
	str_free(&err);
}

static void test_module_missing(void **state)
{
	(void)state;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("SOCKMAIL_TLS_MODULE", "/nonexistent/sockmail-tls.so", 1);
		struct str e1 = STR_INIT, e2 = STR_INIT;
		struct tls_conn *a = tls_server_start(&cfg, 0, 1, 1, &e1);
		struct tls_conn *b = tls_client_start(&cfg, 0, NULL, 1, &e2);
		int code = a != NULL || b != NULL ||
			   strncmp(str_c(&e1), "cannot load the TLS module: ", 28) != 0 ||
			   strstr(str_c(&e1), "/nonexistent/sockmail-tls.so") == NULL ||
			   strcmp(str_c(&e1), str_c(&e2)) != 0;
		str_free(&e1);
		str_free(&e2);
		exit(code);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_handshake_tls13(void **state)
{
	(void)state;
	struct srv_result r;
	char cn[256];
	assert_false(session(NULL, NULL, NULL, NULL, cn, sizeof cn, &r));
	assert_string_equal(cn, "default.test");
	/* what GnuTLS picks first depends on the CPU (AES-NI or not): the
	 * server must report what the client negotiated */
	assert_string_equal(r.describe, client_describe);
	if (strcmp(r.describe, "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)") != 0 &&
	    strcmp(r.describe, "TLSv1.3 with cipher TLS_CHACHA20_POLY1305_SHA256 (256/256 bits)") != 0)
		fail_msg("describe: %s", r.describe);
	assert_string_equal(r.sni, "");
	assert_string_equal(r.err, "");
	assert_string_equal(r.warning, "");
	assert_int_equal(r.resumed, 0);
}

static void test_handshake_tls12_rsa(void **state)
{
	(void)state;
	cfg_set_path(&cfg.tls_cert, "rsa.pem");
	cfg_set_path(&cfg.tls_key, "rsa.key");
	struct srv_result r;
	char cn[256];
	session(NULL, "NORMAL:-VERS-ALL:+VERS-TLS1.2", NULL, NULL, cn, sizeof cn, &r);
	assert_string_equal(cn, "rsa.test");
	assert_string_equal(r.describe, client_describe);
	assert_true(strncmp(r.describe, "TLSv1.2 with cipher TLS_ECDHE_RSA_WITH_", 38) == 0);
}

/* The key in the certificate file, tls_key empty. */
static void test_key_in_cert_file(void **state)
{
	(void)state;
	sh("cd %s && cat ec.pem ec.key > both.pem", tmpdir);
	cfg_set_path(&cfg.tls_cert, "both.pem");
	cfg_set(&cfg.tls_key, "");
	expect_cn(NULL, "default.test", "");
}

static void test_sni(void **state)
{
	(void)state;
	expect_cn("mail.example.org", "mail.example.org", "mail.example.org");
	expect_cn("mx.example.net", "mx.example.net", "mx.example.net");
	/* names are case-insensitive; the lower-cased form is reported */
	expect_cn("MX.Example.NET", "mx.example.net", "mx.example.net");
	/* unknown name: the default certificate */
	expect_cn("unknown.example.com", "default.test", "unknown.example.com");
}

/* A name that could lead out of tls_cert_dir is never used as a path:
 * GnuTLS itself refuses names with characters other than [A-Za-z0-9.-]
 * (a failed handshake), and the module refuses leading dots and ".."
 * (the default certificate).  Either way evil.test is never served. */
static void hostile(const char *sni, bool gnutls_refuses)
{
	struct server srv = server_start(SERVER_TIMEOUT);
	struct client c;
	int h = client_handshake(&c, srv.client_fd, sni, NULL, NULL);
	struct srv_result r;
	if (gnutls_refuses) {
		assert_true(h < 0);
		client_free(&c);
		server_finish(&srv, &r, CHILD_WAIT_MS);
		assert_int_equal(r.started, 0);
		assert_string_equal(r.err, "TLS handshake failed: A disallowed "
				    "SNI server name has been received.");
		return;
	}
	if (h < 0)
		fail_msg("\"%s\": handshake failed: %s", sni, gnutls_strerror(h));
	char cn[256];
	peer_cn(&c, cn, sizeof cn);
	client_exchange(&c);
	gnutls_bye(c.s, GNUTLS_SHUT_WR);
	client_free(&c);
	server_finish(&srv, &r, CHILD_WAIT_MS);
	assert_string_equal(cn, "default.test");
	assert_string_equal(r.sni, "");
}

static void test_sni_hostile(void **state)
{
	(void)state;
	/* evil.test waits at certs/../evil, certs/a/b, certs/.. and certs/ */
	hostile("..", false);
	hostile(".", false);
	hostile(".evil", false);
	hostile("mail..example.org", false);
	hostile("../evil", true);
	hostile("../../etc", true);
	hostile("a/b", true);
}

/* The name check itself, through the module's table. */
static void test_sni_dir_name(void **state)
{
	(void)state;
	void *h = dlopen(getenv("SOCKMAIL_TLS_MODULE"), RTLD_NOW | RTLD_LOCAL);
	assert_non_null(h);
	tls_module_entry *entry;
	*(void **)&entry = dlsym(h, TLS_MODULE_SYMBOL);
	assert_non_null(entry);
	const struct tls_module *m = entry();
	assert_int_equal(m->abi, TLS_MODULE_ABI);
	char out[300];
	assert_int_equal(m->sni_dir_name("Mail.Example-1.ORG", out, sizeof out), 0);
	assert_string_equal(out, "mail.example-1.org");
	const char *bad[] = { "", ".", "..", "../etc", "../../etc", "a/b", "/etc",
			      ".hidden", "a..b", "a b", "a_b", "a\\b", "caf\xc3\xa9.fr",
			      "a\tb", "x:y" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (m->sni_dir_name(bad[i], out, sizeof out) != -1)
			fail_msg("\"%s\" accepted", bad[i]);
	char name[300];
	memset(name, 'a', 253);
	name[253] = '\0';
	assert_int_equal(m->sni_dir_name(name, out, sizeof out), 0);
	name[253] = 'a';
	name[254] = '\0';
	assert_int_equal(m->sni_dir_name(name, out, sizeof out), -1);
	/* the output buffer bounds it too */
	assert_int_equal(m->sni_dir_name("example.org", out, 5), -1);
	dlclose(h);
}

/* tls_cert_dir without a default pair */
static void test_cert_dir_only(void **state)
{
	(void)state;
	cfg_set(&cfg.tls_cert, "");
	cfg_set(&cfg.tls_key, "");
	expect_cn("mail.example.org", "mail.example.org", "mail.example.org");
	/* no SNI: the server's own hostname's directory */
	cfg_set(&cfg.hostname, "mx.example.net");
	expect_cn(NULL, "mx.example.net", "");

	/* neither: the handshake fails with a clear reason */
	cfg_set(&cfg.hostname, "host.invalid");
	struct server srv = server_start(SERVER_TIMEOUT);
	struct client c;
	assert_true(client_handshake(&c, srv.client_fd, "nowhere.example", NULL, NULL) < 0);
	client_free(&c);
	struct srv_result r;
	server_finish(&srv, &r, CHILD_WAIT_MS);
	assert_int_equal(r.started, 0);
	struct str want = STR_INIT;
	str_printf(&want, "TLS handshake failed: no certificate for "
		   "\"nowhere.example\" in %s and no tls_cert", cfg.tls_cert_dir);
	assert_string_equal(r.err, str_c(&want));
	str_free(&want);
}

static void test_bad_certificate(void **state)
{
	(void)state;
	cfg_set_path(&cfg.tls_key, "rsa.key");	/* not ec.pem's key */
	struct server srv = server_start(SERVER_TIMEOUT);
	struct client c;
	assert_true(client_handshake(&c, srv.client_fd, NULL, NULL, NULL) < 0);
	client_free(&c);
	struct srv_result r;
	server_finish(&srv, &r, CHILD_WAIT_MS);
	assert_int_equal(r.started, 0);
	assert_non_null(strstr(r.err, "cannot load certificate"));
	assert_non_null(strstr(r.err, "ec.pem"));
}

/* ---- the ticket key file ---- */

static char *key_path(void)
{
	return path_in("state/" TLS_TICKET_KEY_FILE);
}

static void read_key(unsigned char *key, struct stat *st)
{
	char *p = key_path();
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, st), 0);
	assert_int_equal(st->st_size, 64);
	assert_int_equal(st->st_mode & 07777, 0600);
	assert_int_equal(read(fd, key, 64), 64);
	close(fd);
	free(p);
}

static void age_key(time_t seconds)
{
	char *p = key_path();
	struct timeval tv[2];
	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec -= seconds;
	tv[1] = tv[0];
	assert_int_equal(utimes(p, tv), 0);
	free(p);
}

/* Only the key file in state_dir: no temp files left behind. */
static void state_dir_clean(void)
{
	char *p = path_in("state");
	struct str cmd = STR_INIT;
	str_printf(&cmd, "test \"$(ls -A '%s')\" = '%s'", p, TLS_TICKET_KEY_FILE);
	assert_int_equal(system(str_c(&cmd)), 0);
	str_free(&cmd);
	free(p);
}

static void one_session(void)
{
	struct srv_result r;
	session(NULL, NULL, NULL, NULL, NULL, 0, &r);
	assert_string_equal(r.warning, "");
}

static void test_ticket_key_file(void **state)
{
	(void)state;
	sh("rm -f %s/state/*", tmpdir);
	cfg.tls_ticket_key_lifetime = 3600;
	unsigned char k1[64], k2[64], k3[64];
	struct stat st1, st2, st3;

	one_session();		/* made: 0600, 64 bytes */
	read_key(k1, &st1);
	state_dir_clean();

	age_key(3000);		/* fresh: reused */
	one_session();
	read_key(k2, &st2);
	assert_memory_equal(k1, k2, 64);
	assert_int_equal(st1.st_ino, st2.st_ino);

	age_key(3700);		/* older than the lifetime: replaced */
	one_session();
	read_key(k3, &st3);
	assert_memory_not_equal(k2, k3, 64);
	assert_true(time(NULL) - st3.st_mtime < 60);
	state_dir_clean();
}

static void test_ticket_key_bad_files(void **state)
{
	(void)state;
	unsigned char k[64];
	struct stat st;
	char *p = key_path();
	/* wrong size */
	sh("rm -f %s/state/*; printf short > '%s'; chmod 600 '%s'", tmpdir, p, p);
	one_session();
	read_key(k, &st);
	/* readable by others: not trusted, replaced by a private one */
	sh("chmod 644 '%s'", p);
	unsigned char k2[64];
	one_session();
	read_key(k2, &st);
	assert_memory_not_equal(k, k2, 64);
	/* a symlink is not followed */
	sh("cd %s/state && mv %s real && ln -s real %s", tmpdir,
	   TLS_TICKET_KEY_FILE, TLS_TICKET_KEY_FILE);
	one_session();
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	sh("rm -f %s/state/real", tmpdir);
	state_dir_clean();
	free(p);
}

static void test_ticket_key_unwritable(void **state)
{
	(void)state;
	cfg_set_path(&cfg.state_dir, "no-such-dir");
	struct srv_result r;
	session(NULL, NULL, NULL, NULL, NULL, 0, &r);
	assert_non_null(strstr(r.warning, "session tickets disabled: cannot create a file in"));
}

/* ---- resumption between two server processes ---- */

static void resume_test(const char *priority, const char *version)
{
	sh("rm -f %s/state/*", tmpdir);
	gnutls_datum_t data = { NULL, 0 };
	struct srv_result r1, r2, r3;
	assert_false(session(NULL, priority, NULL, &data, NULL, 0, &r1));
	assert_int_equal(r1.resumed, 0);
	assert_non_null(strstr(r1.describe, version));

	/* another child: another process, same key file */
	assert_true(session(NULL, priority, &data, NULL, NULL, 0, &r2));
	assert_int_equal(r2.resumed, 1);
	assert_non_null(strstr(r2.describe, version));

	/* a new key (the old one expired): a full handshake again */
	age_key((time_t)cfg.tls_ticket_key_lifetime + 10);
	assert_false(session(NULL, priority, &data, NULL, NULL, 0, &r3));
	assert_int_equal(r3.resumed, 0);
	gnutls_free(data.data);
}

static void test_resume_tls13(void **state)
{
	(void)state;
	resume_test("NORMAL", "TLSv1.3");
}

static void test_resume_tls12(void **state)
{
	(void)state;
	resume_test("NORMAL:-VERS-ALL:+VERS-TLS1.2", "TLSv1.2");
}

/* ---- refusals and broken handshakes ---- */

static void refused(const char *priority)
{
	struct server srv = server_start(SERVER_TIMEOUT);
	struct client c;
	assert_true(client_handshake(&c, srv.client_fd, NULL, priority, NULL) < 0);
	client_free(&c);
	struct srv_result r;
	server_finish(&srv, &r, CHILD_WAIT_MS);
	assert_int_equal(r.started, 0);
	assert_true(strncmp(r.err, "TLS handshake failed: ", 22) == 0);
}

static void test_old_versions_refused(void **state)
{
	(void)state;
	refused("NORMAL:-VERS-ALL:+VERS-TLS1.1");
	refused("NORMAL:-VERS-ALL:+VERS-TLS1.0");
}

static void test_bad_priority(void **state)
{
	(void)state;
	cfg_set(&cfg.tls_priority, "NORMAL:+NO-SUCH-THING");
	struct server srv = server_start(SERVER_TIMEOUT);
	struct srv_result r;
	server_finish(&srv, &r, CHILD_WAIT_MS);
	assert_int_equal(r.started, 0);
	assert_non_null(strstr(r.err, "bad tls_priority at \"+NO-SUCH-THING\""));
}

/* The client sends its ClientHello and hangs up. */
static void test_cut_handshake(void **state)
{
	(void)state;
	struct server srv = server_start(SERVER_TIMEOUT);
	struct client c;
	memset(&c, 0, sizeof c);
	assert_int_equal(gnutls_certificate_allocate_credentials(&c.cred), 0);
	assert_int_equal(gnutls_init(&c.s, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL), 0);
	assert_int_equal(gnutls_set_default_priority(c.s), 0);
	assert_int_equal(gnutls_credentials_set(c.s, GNUTLS_CRD_CERTIFICATE, c.cred), 0);
	fcntl(srv.client_fd, F_SETFL, O_NONBLOCK);
	gnutls_transport_set_int(c.s, srv.client_fd);
	assert_int_equal(gnutls_handshake(c.s), GNUTLS_E_AGAIN);	/* hello sent */
	/* wait for the server's answer, so the cut is mid-way */
	struct pollfd pf = { .fd = srv.client_fd, .events = POLLIN };
	assert_int_equal(poll(&pf, 1, 5000), 1);
	client_free(&c);
	struct srv_result r;
	server_finish(&srv, &r, (SERVER_TIMEOUT - 1) * 1000);	/* closes */
	/* it noticed the cut rather than waiting for its timeout (asserted
	 * on what it said, not on a stopwatch: a busy machine is slow) */
	assert_null(strstr(r.err, "timed out"));
	assert_int_equal(r.started, 0);
	/* EOF, ECONNRESET or EPIPE: depends on how far the server got */
	if (strcmp(r.err, "TLS handshake failed: connection closed by peer") != 0 &&
	    strcmp(r.err, "TLS handshake failed: connection lost while sending") != 0 &&
	    strcmp(r.err, "TLS handshake failed: connection lost while receiving") != 0)
		fail_msg("unexpected: %s", r.err);
}

/* The client connects and says nothing. */
static void test_handshake_timeout(void **state)
{
	(void)state;
	long long t0 = now_ms();
	struct server srv = server_start(1);
	struct srv_result r;
	/* read the result before closing our end */
	struct pollfd pf = { .fd = srv.result_fd, .events = POLLIN };
	assert_int_equal(poll(&pf, 1, 3000), 1);
	long long took = now_ms() - t0;
	server_finish(&srv, &r, 1000);
	assert_true(took >= 900 && took < 2500);
	assert_int_equal(r.started, 0);
	assert_string_equal(r.err, "TLS handshake timed out after 1 seconds");
}

/* A dribbling client: one byte of ClientHello a second does not stretch
 * the handshake past the timeout. */
static void test_handshake_deadline(void **state)
{
	(void)state;
	long long t0 = now_ms();
	struct server srv = server_start(2);
	static const unsigned char hello[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01 };
	size_t i = 0;
	struct pollfd pf = { .fd = srv.result_fd, .events = POLLIN };
	while (poll(&pf, 1, 700) == 0 && i < sizeof hello) {
		ssize_t n = send(srv.client_fd, hello + i, 1, MSG_NOSIGNAL);
		assert_int_equal(n, 1);
		i++;
	}
	long long took = now_ms() - t0;
	struct srv_result r;
	server_finish(&srv, &r, 1000);
	assert_true(took >= 1900 && took < 3000);
	assert_int_equal(r.started, 0);
	assert_string_equal(r.err, "TLS handshake timed out after 2 seconds");
}

static void test_plaintext_garbage(void **state)
{
	(void)state;
	struct server srv = server_start(SERVER_TIMEOUT);
	const char *junk = "EHLO example.org\r\n";
	assert_int_equal(send(srv.client_fd, junk, strlen(junk), MSG_NOSIGNAL),
			 (ssize_t)strlen(junk));
	struct pollfd pf = { .fd = srv.result_fd, .events = POLLIN };
	assert_int_equal(poll(&pf, 1, 3000), 1);
	struct srv_result r;
	server_finish(&srv, &r, 1000);
	assert_int_equal(r.started, 0);
	assert_true(strncmp(r.err, "TLS handshake failed: ", 22) == 0);
}

/* The client leaves without close_notify: EOF for the stream. */
static void test_eof_without_close_notify(void **state)
{
	(void)state;
	struct server srv = server_start(SERVER_TIMEOUT);
	struct client c;
	assert_int_equal(client_handshake(&c, srv.client_fd, NULL, NULL, NULL), 0);
	client_exchange(&c);
	client_free(&c);
	struct srv_result r;
	server_finish(&srv, &r, CHILD_WAIT_MS);	/* closes the socket */
	assert_int_equal(r.started, 1);
	assert_int_equal(r.end_status, STREAM_EOF);
}

/* tls_client_start() against our own server, through a stream. */
static void test_client_start(void **state)
{
	(void)state;
	struct server srv = server_start(SERVER_TIMEOUT);
	struct str err = STR_INIT;
	struct tls_conn *c = tls_client_start(&cfg, srv.client_fd,
					      "mail.example.org", 5, &err);
	if (c == NULL)
		fail_msg("tls_client_start: %s", str_c(&err));
	/* self-signed: not verified, but the session is up */
	assert_false(tls_conn_verified(c));
	assert_false(tls_conn_resumed(c));
	assert_string_equal(tls_conn_server_name(c), "mail.example.org");
	assert_null(tls_conn_warning(c));
	struct str d = STR_INIT;
	tls_conn_describe(c, &d);

	struct stream s;
	stream_init(&s, srv.client_fd, srv.client_fd, 5, 256);
	stream_set_transport(&s, tls_conn_transport(c));
	stream_puts(&s, "HELLO\r\n");
	const char *line;
	size_t len;
	assert_int_equal(stream_getline(&s, 256, &line, &len), STREAM_OK);
	assert_int_equal(len, 10);
	assert_memory_equal(line, "OK HELLO\r\n", 10);
	stream_free(&s);
	tls_conn_close(c);	/* close_notify */

	struct srv_result r;
	server_finish(&srv, &r, CHILD_WAIT_MS);
	assert_int_equal(r.started, 1);
	assert_string_equal(r.sni, "mail.example.org");
	assert_int_equal(r.end_status, STREAM_EOF);
	/* both ends describe the session the same way */
	assert_string_equal(str_c(&d), r.describe);
	assert_true(strncmp(r.describe, "TLSv1.3 with cipher TLS_", 24) == 0);
	str_free(&d);
	str_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* these two fork a child that must not have the module */
		cmocka_unit_test_setup(test_lazy_load, test_setup),
		cmocka_unit_test_setup(test_module_missing, test_setup),
		cmocka_unit_test_setup(test_configured, test_setup),
		cmocka_unit_test_setup(test_handshake_tls13, test_setup),
		cmocka_unit_test_setup(test_handshake_tls12_rsa, test_setup),
		cmocka_unit_test_setup(test_key_in_cert_file, test_setup),
		cmocka_unit_test_setup(test_sni, test_setup),
		cmocka_unit_test_setup(test_sni_hostile, test_setup),
		cmocka_unit_test_setup(test_sni_dir_name, test_setup),
		cmocka_unit_test_setup(test_cert_dir_only, test_setup),
		cmocka_unit_test_setup(test_bad_certificate, test_setup),
		cmocka_unit_test_setup(test_ticket_key_file, test_setup),
		cmocka_unit_test_setup(test_ticket_key_bad_files, test_setup),
		cmocka_unit_test_setup(test_ticket_key_unwritable, test_setup),
		cmocka_unit_test_setup(test_resume_tls13, test_setup),
		cmocka_unit_test_setup(test_resume_tls12, test_setup),
		cmocka_unit_test_setup(test_old_versions_refused, test_setup),
		cmocka_unit_test_setup(test_bad_priority, test_setup),
		cmocka_unit_test_setup(test_cut_handshake, test_setup),
		cmocka_unit_test_setup(test_handshake_timeout, test_setup),
		cmocka_unit_test_setup(test_handshake_deadline, test_setup),
		cmocka_unit_test_setup(test_plaintext_garbage, test_setup),
		cmocka_unit_test_setup(test_eof_without_close_notify, test_setup),
		cmocka_unit_test_setup(test_client_start, test_setup),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
