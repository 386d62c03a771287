/*
 * fuzz_config: the sockmail.conf reader (common/config.h).  The input is
 * written to a memfd and loaded through /proc/self/fd/N with config_load,
 * exactly as a handler loads its file; each of its first lines also goes
 * to config_parse_size and config_parse_duration.  Invariants checked:
 *   - a load that fails says "<path>:<line>: ..." (or "<path>: ..."), a
 *     load that succeeds leaves every field valid: strings set, paths
 *     absolute where they must be, hostname a host name, timeouts, counts,
 *     size and port in range, auth_plaintext one of its values;
 *   - config_free releases everything either way (LeakSanitizer);
 *   - the size and duration parsers agree with a reference written here:
 *     digits, one optional unit, no overflow (sizes up to UINT64_MAX,
 *     durations up to UINT_MAX seconds).
 */
#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/* Reference: leading digits then a unit from units[] with its factor,
 * optionally one of the tail characters, then the end. */
static bool ref_parse(const char *s, const char *units,
		      const uint64_t *factors, const char *tail,
		      uint64_t limit, uint64_t *out)
{
	unsigned __int128 v = 0;
	const char *p = s;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > UINT64_MAX)
			return false;	/* parse_digits refuses it too */
		p++;
	}
	if (p == s)
		return false;
	uint64_t mult = 1;
	const char *u = *p != '\0' ? strchr(units, *p) : NULL;
	if (u != NULL) {
		mult = factors[u - units];
		p++;
	}
	if (*p != '\0' && strchr(tail, *p) != NULL)
		p++;
	if (*p != '\0' || v * mult > limit)
		return false;
	*out = (uint64_t)(v * mult);
	return true;
}

static void check_value_parsers(const char *s)
{
	static const uint64_t size_f[] = { 1024, 1024, 1 << 20, 1 << 20,
					   1 << 30, 1 << 30 };
	static const uint64_t dur_f[] = { 1, 1, 60, 60, 3600, 3600, 86400,
					  86400, 604800, 604800 };
	uint64_t want, bytes = 7;
	unsigned secs = 7;

	bool ok = ref_parse(s, "kKmMgG", size_f, "bB", UINT64_MAX, &want);
	int r = config_parse_size(s, &bytes);
	CHECK(ok ? r == 0 && bytes == want : r == -1 && bytes == 7);

	ok = ref_parse(s, "sSmMhHdDwW", dur_f, "", UINT_MAX, &want);
	r = config_parse_duration(s, &secs);
	CHECK(ok ? r == 0 && secs == want : r == -1 && secs == 7);
}

static bool host_name_ok(const char *s)
{
	if (*s == '\0' || *s == '.' || *s == '-')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.')
			return false;
	return true;
}

static void check_loaded(const struct config *c)
{
	const char *paths[] = { c->mail_dir, c->state_dir, c->spool_dir,
				c->sendmail_socket };
	const char *optpaths[] = { c->tls_cert, c->tls_key, c->tls_cert_dir,
				   c->relayhost_auth_file };
	for (size_t i = 0; i < 4; i++) {
		CHECK(paths[i] != NULL && paths[i][0] == '/');
		CHECK(optpaths[i] != NULL &&
		      (optpaths[i][0] == '\0' || optpaths[i][0] == '/'));
	}
	/* the default host name comes from the kernel, a set one is checked */
	CHECK(c->hostname != NULL && c->hostname[0] != '\0');
	CHECK(c->tls_priority != NULL && c->tls_priority[0] != '\0');
	CHECK(c->dns_server != NULL && c->relayhost != NULL &&
	      c->postmaster != NULL);
	CHECK(c->outbound_port >= 1 && c->outbound_port <= 65535);
	CHECK(c->message_size_limit >= 1);
	CHECK(c->max_recipients >= 1 && c->max_bad_commands >= 1 &&
	      c->auth_fail_limit >= 1);
	CHECK(c->smtp_timeout >= 1 && c->imap_idle_timeout >= 1 &&
	      c->pop3_timeout >= 1 && c->queue_lifetime >= 1 &&
	      c->auth_fail_window >= 1 && c->tls_ticket_key_lifetime >= 1);
	CHECK(c->auth_plaintext == AUTH_PLAINTEXT_NEVER ||
	      c->auth_plaintext == AUTH_PLAINTEXT_LOOPBACK);
	/* every string must be a proper C string: touch them all */
	const char *all[] = { c->hostname, c->mail_dir, c->state_dir,
			      c->spool_dir, c->tls_cert, c->tls_key,
			      c->tls_cert_dir, c->tls_priority,
			      c->sendmail_socket, c->dns_server, c->relayhost,
			      c->relayhost_auth_file, c->postmaster };
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		for (const char *p = all[i]; *p; p++)
			CHECK(((unsigned char)*p >= 0x20 || *p == '\t') &&
			      *p != 0x7f);
}

static int memfd = -1;
static char path[64];
static char *default_host;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memfd < 0) {
		memfd = memfd_create("fuzz_config", MFD_CLOEXEC);
		CHECK(memfd >= 0);
		snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
		struct config d;
		config_defaults(&d);
		default_host = xstrdup(d.hostname);
		config_free(&d);
	}
	CHECK(ftruncate(memfd, 0) == 0);
	CHECK(pwrite(memfd, data, size, 0) == (ssize_t)size);

	struct config cfg;
	struct str err = STR_INIT;
	int r = config_load(&cfg, path, &err);
	if (r == 0) {
		CHECK(err.len == 0);
		check_loaded(&cfg);
		if (strcmp(cfg.hostname, default_host) != 0)
			CHECK(host_name_ok(cfg.hostname));
	} else {
		CHECK(r == -1);
		size_t n = strlen(path);
		CHECK(err.len > n + 2 && strncmp(str_c(&err), path, n) == 0 &&
		      err.data[n] == ':');
	}
	config_free(&cfg);
	str_free(&err);

	/* The value parsers on the first few lines, as they are. */
	const char *p = (const char *)data, *end = p + size;
	for (int i = 0; i < 8 && p < end; i++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl != NULL ? nl : end;
		char *line = xstrndup(p, (size_t)(eol - p));
		check_value_parsers(line);
		free(line);
		p = eol + (nl != NULL);
	}
	return 0;
}
