/*
 * test_config: defaults, every key, size and duration units, and the exact
 * "file:line: what" error for each way a config file can be wrong.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "str.h"

static char tmpdir[] = "/tmp/test_config.XXXXXX";
static char conf_path[PATH_MAX];
static struct str expect = STR_INIT;

static int group_setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(conf_path);
	str_free(&expect);
	return rmdir(tmpdir);
}

/* Write len bytes of text to the test's config file; returns its path. */
static const char *write_conf_n(const char *text, size_t len)
{
	snprintf(conf_path, sizeof conf_path, "%s/sockmail.conf", tmpdir);
	int fd = open(conf_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return conf_path;
}

static const char *write_conf(const char *text)
{
	return write_conf_n(text, strlen(text));
}

/* Load text; expect failure with exactly "<path>:<what>". */
static void assert_load_error(const char *text, const char *what)
{
	struct config cfg;
	struct str err = STR_INIT;
	const char *path = write_conf(text);

	assert_int_equal(config_load(&cfg, path, &err), -1);
	str_clear(&expect);
	str_printf(&expect, "%s:%s", path, what);
	assert_string_equal(str_c(&err), str_c(&expect));
	config_free(&cfg);
	str_free(&err);
}

static void load_ok(struct config *cfg, const char *text)
{
	struct str err = STR_INIT;
	const char *path = write_conf(text);

	if (config_load(cfg, path, &err) != 0)
		fail_msg("config_load: %s", str_c(&err));
	assert_ptr_equal(cfg->path, path);
	str_free(&err);
}

static void test_defaults(void **state)
{
	struct config cfg;
	char host[HOST_NAME_MAX + 1];

	(void)state;
	assert_int_equal(gethostname(host, sizeof host), 0);
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);

	config_defaults(&cfg);
	assert_string_equal(cfg.hostname, host);
	assert_string_equal(cfg.mail_dir, "/var/lib/sockmail/mail");
	assert_string_equal(cfg.state_dir, "/var/lib/sockmail");
	assert_string_equal(cfg.spool_dir, "/var/spool/sockmail");
	assert_string_equal(cfg.tls_cert, "");
	assert_string_equal(cfg.tls_key, "");
	assert_string_equal(cfg.tls_cert_dir, "");
	assert_string_equal(cfg.tls_priority,
		"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE");
	assert_string_equal(cfg.sendmail_socket, "/run/sockmail/sendmail.sock");
	assert_string_equal(cfg.dns_server, "");
	assert_int_equal(cfg.outbound_port, 25);
	assert_int_equal(cfg.message_size_limit, 52428800);
	assert_int_equal(cfg.max_recipients, 100);
	assert_int_equal(cfg.max_bad_commands, 20);
	assert_int_equal(cfg.smtp_timeout, 300);
	assert_int_equal(cfg.imap_idle_timeout, 1800);
	assert_int_equal(cfg.auth_plaintext, AUTH_PLAINTEXT_LOOPBACK);
	assert_string_equal(cfg.relayhost, "");
	assert_string_equal(cfg.relayhost_auth_file, "");
	assert_int_equal(cfg.queue_lifetime, 5 * 86400);
	assert_int_equal(cfg.delay_warning, 4 * 3600);
	assert_string_equal(cfg.postmaster, "");
	assert_null(cfg.path);
	config_free(&cfg);
	assert_null(cfg.hostname);
	assert_null(cfg.postmaster);
}

static void test_empty_file_gives_defaults(void **state)
{
	struct config cfg;

	(void)state;
	load_ok(&cfg, "");
	assert_string_equal(cfg.mail_dir, "/var/lib/sockmail/mail");
	assert_int_equal(cfg.message_size_limit, 52428800);
	config_free(&cfg);
}

static void test_every_key(void **state)
{
	struct config cfg;

	(void)state;
	load_ok(&cfg,
		"hostname = mx.example.org\n"
		"mail_dir = /srv/mail\n"
		"state_dir = /srv/state\n"
		"spool_dir = /srv/spool\n"
		"tls_cert = /etc/ssl/cert.pem\n"
		"tls_key = /etc/ssl/key.pem\n"
		"tls_cert_dir = /etc/letsencrypt/live\n"
		"tls_priority = SECURE256:-VERS-ALL:+VERS-TLS1.3\n"
		"sendmail_socket = /tmp/sm.sock\n"
		"dns_server = 127.0.0.53\n"
		"outbound_port = 2525\n"
		"message_size_limit = 10M\n"
		"max_recipients = 7\n"
		"max_bad_commands = 3\n"
		"smtp_timeout = 5m\n"
		"imap_idle_timeout = 29m\n"
		"auth_plaintext = never\n"
		"relayhost = [smtp.example.net]:587\n"
		"relayhost_auth_file = /etc/sockmail/relay-auth\n"
		"queue_lifetime = 2d\n"
		"delay_warning = 90m\n"
		"postmaster = admin@example.org\n");
	assert_string_equal(cfg.hostname, "mx.example.org");
	assert_string_equal(cfg.mail_dir, "/srv/mail");
	assert_string_equal(cfg.state_dir, "/srv/state");
	assert_string_equal(cfg.spool_dir, "/srv/spool");
	assert_string_equal(cfg.tls_cert, "/etc/ssl/cert.pem");
	assert_string_equal(cfg.tls_key, "/etc/ssl/key.pem");
	assert_string_equal(cfg.tls_cert_dir, "/etc/letsencrypt/live");
	assert_string_equal(cfg.tls_priority, "SECURE256:-VERS-ALL:+VERS-TLS1.3");
	assert_string_equal(cfg.sendmail_socket, "/tmp/sm.sock");
	assert_string_equal(cfg.dns_server, "127.0.0.53");
	assert_int_equal(cfg.outbound_port, 2525);
	assert_int_equal(cfg.message_size_limit, 10 * 1024 * 1024);
	assert_int_equal(cfg.max_recipients, 7);
	assert_int_equal(cfg.max_bad_commands, 3);
	assert_int_equal(cfg.smtp_timeout, 300);
	assert_int_equal(cfg.imap_idle_timeout, 29 * 60);
	assert_int_equal(cfg.auth_plaintext, AUTH_PLAINTEXT_NEVER);
	assert_string_equal(cfg.relayhost, "[smtp.example.net]:587");
	assert_string_equal(cfg.relayhost_auth_file, "/etc/sockmail/relay-auth");
	assert_int_equal(cfg.queue_lifetime, 2 * 86400);
	assert_int_equal(cfg.delay_warning, 90 * 60);
	assert_string_equal(cfg.postmaster, "admin@example.org");
	config_free(&cfg);

	/* The other ends of the ranges. */
	load_ok(&cfg, "auth_plaintext = loopback\noutbound_port = 65535\n"
		      "max_recipients = 4294967295\nhostname = host-1\n");
	assert_int_equal(cfg.auth_plaintext, AUTH_PLAINTEXT_LOOPBACK);
	assert_int_equal(cfg.outbound_port, 65535);
	assert_int_equal(cfg.max_recipients, UINT_MAX);
	assert_string_equal(cfg.hostname, "host-1");
	config_free(&cfg);
	load_ok(&cfg, "outbound_port = 1\n");
	assert_int_equal(cfg.outbound_port, 1);
	config_free(&cfg);
}

static void test_syntax(void **state)
{
	struct config cfg;

	(void)state;
	load_ok(&cfg,
		"# a comment\n"
		"\n"
		"   \t\n"
		"   # an indented comment\n"
		"\thostname\t=\tA.Example  \n"
		"relayhost =\n"				/* empty value */
		"dns_server=::1   # trailing comment\n"
		"postmaster = pm#x@example.org\n"	/* '#' without blank */
		"mail_dir = /m \t# tab and space before '#'\n"
		"state_dir = /s\r\n"			/* CRLF */
		"tls_priority = NORMAL:%COMPAT\n"
		"spool_dir = /q");			/* no final LF */
	assert_string_equal(cfg.hostname, "A.Example");
	assert_string_equal(cfg.relayhost, "");
	assert_string_equal(cfg.dns_server, "::1");
	assert_string_equal(cfg.postmaster, "pm#x@example.org");
	assert_string_equal(cfg.mail_dir, "/m");
	assert_string_equal(cfg.state_dir, "/s");
	assert_string_equal(cfg.tls_priority, "NORMAL:%COMPAT");
	assert_string_equal(cfg.spool_dir, "/q");
	config_free(&cfg);

	/* "key = # comment" is an empty value. */
	load_ok(&cfg, "relayhost = # none\n");
	assert_string_equal(cfg.relayhost, "");
	config_free(&cfg);

	/* A value may contain '=' and inner blanks. */
	load_ok(&cfg, "tls_priority = A=B  C\n");
	assert_string_equal(cfg.tls_priority, "A=B  C");
	config_free(&cfg);
}

static void test_sizes(void **state)
{
	static const struct { const char *text; uint64_t bytes; } good[] = {
		{ "0", 0 }, { "1234", 1234 }, { "1234B", 1234 },
		{ "512k", 512 * 1024 }, { "512K", 512 * 1024 },
		{ "512kb", 512 * 1024 }, { "50M", 50ULL << 20 },
		{ "50m", 50ULL << 20 }, { "50MB", 50ULL << 20 },
		{ "1G", 1ULL << 30 }, { "1gB", 1ULL << 30 },
		{ "007", 7 }, { "18446744073709551615", UINT64_MAX },
		{ "17179869183G", 17179869183ULL << 30 },
	};
	static const char *const bad[] = {
		"", "-1", "+1", " 1", "1 ", "1 M", "M", "1.5M", "12x", "1T",
		"5MBB", "5BM", "0x10", "18446744073709551616",
		"17179869184G", "18014398509481984k",
	};
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		v = 42;
		if (config_parse_size(good[i].text, &v) != 0)
			fail_msg("rejected size '%s'", good[i].text);
		assert_int_equal(v, good[i].bytes);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = 42;
		if (config_parse_size(bad[i], &v) != -1)
			fail_msg("accepted size '%s'", bad[i]);
		assert_int_equal(v, 42);
	}
}

static void test_durations(void **state)
{
	static const struct { const char *text; unsigned secs; } good[] = {
		{ "0", 0 }, { "30", 30 }, { "90s", 90 }, { "90S", 90 },
		{ "15m", 900 }, { "4h", 14400 }, { "5d", 432000 },
		{ "2w", 1209600 }, { "4294967295", UINT_MAX },
		{ "4294967295s", UINT_MAX }, { "71582788m", 4294967280U },
		{ "7101w", 7101U * 604800U },
	};
	static const char *const bad[] = {
		"", "-1", "+5", " 5", "5 ", "5 m", "1.5h", "s", "5x", "5ms",
		"5y", "4294967296", "71582789m", "1193047h", "49711d", "7102w",
		"99999999999999999999999",
	};
	unsigned v;

	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		v = 42;
		if (config_parse_duration(good[i].text, &v) != 0)
			fail_msg("rejected duration '%s'", good[i].text);
		assert_int_equal(v, good[i].secs);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = 42;
		if (config_parse_duration(bad[i], &v) != -1)
			fail_msg("accepted duration '%s'", bad[i]);
		assert_int_equal(v, 42);
	}
}

static void test_units_in_file(void **state)
{
	struct config cfg;

	(void)state;
	load_ok(&cfg, "message_size_limit = 1G\nsmtp_timeout = 90s\n"
		      "imap_idle_timeout = 1h\nqueue_lifetime = 1w\n"
		      "delay_warning = 0\n");
	assert_int_equal(cfg.message_size_limit, 1ULL << 30);
	assert_int_equal(cfg.smtp_timeout, 90);
	assert_int_equal(cfg.imap_idle_timeout, 3600);
	assert_int_equal(cfg.queue_lifetime, 604800);
	assert_int_equal(cfg.delay_warning, 0);
	config_free(&cfg);
}

static void test_errors(void **state)
{
	(void)state;
	assert_load_error("# c\nfoo = bar\n", "2: unknown key 'foo'");
	assert_load_error("Hostname = x\n", "1: unknown key 'Hostname'");
	assert_load_error("\n\nhostname\n", "3: missing '=' in line");
	assert_load_error("= x\n", "1: missing key before '='");
	assert_load_error("relayhost = a\nrelayhost = b\n",
			  "2: duplicate key 'relayhost' (first set on line 1)");
	assert_load_error("message_size_limit = 50X\n",
			  "1: message_size_limit = '50X': not a valid size "
			  "(like 50M, 512k, 1G)");
	assert_load_error("message_size_limit = 0\n",
			  "1: message_size_limit = '0': must not be 0");
	assert_load_error("message_size_limit =\n",
			  "1: message_size_limit = '': not a valid size "
			  "(like 50M, 512k, 1G)");
	assert_load_error("smtp_timeout = 5 min\n",
			  "1: smtp_timeout = '5 min': not a valid duration "
			  "(like 90s, 15m, 4h, 5d)");
	assert_load_error("queue_lifetime = -5d\n",
			  "1: queue_lifetime = '-5d': not a valid duration "
			  "(like 90s, 15m, 4h, 5d)");
	assert_load_error("smtp_timeout = 0\n",
			  "1: smtp_timeout = '0': must not be 0");
	assert_load_error("mail_dir = var/mail\n",
			  "1: mail_dir = 'var/mail': must be an absolute path");
	assert_load_error("state_dir = \n",
			  "1: state_dir = '': must be an absolute path");
	assert_load_error("spool_dir = ./spool\n",
			  "1: spool_dir = './spool': must be an absolute path");
	assert_load_error("tls_cert = cert.pem\n",
			  "1: tls_cert = 'cert.pem': must be an absolute path "
			  "(or empty)");
	assert_load_error("outbound_port = 0\n",
			  "1: outbound_port = '0': must be a port number from "
			  "1 to 65535");
	assert_load_error("outbound_port = 65536\n",
			  "1: outbound_port = '65536': must be a port number "
			  "from 1 to 65535");
	assert_load_error("outbound_port = 25s\n",
			  "1: outbound_port = '25s': must be a port number "
			  "from 1 to 65535");
	assert_load_error("max_recipients = 0\n",
			  "1: max_recipients = '0': must be a number of at "
			  "least 1");
	assert_load_error("max_bad_commands = -1\n",
			  "1: max_bad_commands = '-1': must be a number of at "
			  "least 1");
	assert_load_error("max_recipients = 4294967296\n",
			  "1: max_recipients = '4294967296': must be a number "
			  "of at least 1");
	assert_load_error("auth_plaintext = always\n",
			  "1: auth_plaintext = 'always': must be never or "
			  "loopback");
	assert_load_error("hostname = \n",
			  "1: hostname = '': not a valid host name");
	assert_load_error("hostname = mx example\n",
			  "1: hostname = 'mx example': not a valid host name");
	assert_load_error("tls_priority =\n",
			  "1: tls_priority = '': must not be empty");
	assert_load_error("relayhost = a\033b\n",
			  "1: control character in line");
	assert_load_error("relayhost = a\rb\n",
			  "1: control character in line");
}

static void test_nul_byte(void **state)
{
	static const char text[] = "relayhost = a\nrelayhost_auth_file = /x\0y\n";
	struct config cfg;
	struct str err = STR_INIT;
	const char *path = write_conf_n(text, sizeof text - 1);

	(void)state;
	assert_int_equal(config_load(&cfg, path, &err), -1);
	str_clear(&expect);
	str_printf(&expect, "%s:2: NUL byte in line", path);
	assert_string_equal(str_c(&err), str_c(&expect));
	config_free(&cfg);
	str_free(&err);
}

static void test_line_length(void **state)
{
	struct config cfg;
	struct str text = STR_INIT, err = STR_INIT;

	(void)state;
	/* Exactly 4096 bytes is fine... */
	str_append(&text, "relayhost = ");
	while (text.len < 4096)
		str_append_c(&text, 'x');
	str_append_c(&text, '\n');
	load_ok(&cfg, str_c(&text));
	assert_int_equal(strlen(cfg.relayhost), 4096 - strlen("relayhost = "));
	config_free(&cfg);

	/* ...one more is not, even in a comment. */
	str_clear(&text);
	str_append(&text, "# ok\n#");
	while (text.len < 5 + 4097)
		str_append_c(&text, 'x');
	str_append_c(&text, '\n');
	const char *path = write_conf(str_c(&text));
	assert_int_equal(config_load(&cfg, path, &err), -1);
	str_clear(&expect);
	str_printf(&expect, "%s:2: line longer than 4096 bytes", path);
	assert_string_equal(str_c(&err), str_c(&expect));
	config_free(&cfg);
	str_free(&text);
	str_free(&err);
}

static void test_error_keeps_earlier_values(void **state)
{
	struct config cfg;
	struct str err = STR_INIT;
	const char *path = write_conf("relayhost = r.example\nbogus = 1\n"
				      "dns_server = 1.1.1.1\n");

	(void)state;
	assert_int_equal(config_load(&cfg, path, &err), -1);
	assert_string_equal(cfg.relayhost, "r.example");
	assert_string_equal(cfg.dns_server, "");	/* never reached */
	assert_ptr_equal(cfg.path, path);
	config_free(&cfg);
	str_free(&err);
}

static void test_unreadable(void **state)
{
	struct config cfg;
	struct str err = STR_INIT;
	char missing[PATH_MAX];

	(void)state;
	snprintf(missing, sizeof missing, "%s/nope.conf", tmpdir);
	assert_int_equal(config_load(&cfg, missing, &err), -1);
	str_clear(&expect);
	str_printf(&expect, "%s: No such file or directory", missing);
	assert_string_equal(str_c(&err), str_c(&expect));
	assert_string_equal(cfg.mail_dir, "/var/lib/sockmail/mail");
	config_free(&cfg);

	assert_int_equal(config_load(&cfg, tmpdir, &err), -1);
	str_clear(&expect);
	str_printf(&expect, "%s: Is a directory", tmpdir);
	assert_string_equal(str_c(&err), str_c(&expect));
	config_free(&cfg);
	str_free(&err);
}

static void test_config_path(void **state)
{
	(void)state;
	assert_int_equal(unsetenv("SOCKMAIL_CONFIG"), 0);
	assert_string_equal(config_path(NULL), CONFIG_DEFAULT_PATH);
	assert_string_equal(config_path(NULL), "/etc/sockmail/sockmail.conf");
	assert_string_equal(config_path("/x/y.conf"), "/x/y.conf");

	assert_int_equal(setenv("SOCKMAIL_CONFIG", "/env/s.conf", 1), 0);
	assert_string_equal(config_path(NULL), "/env/s.conf");
	assert_string_equal(config_path("/x/y.conf"), "/x/y.conf");

	assert_int_equal(setenv("SOCKMAIL_CONFIG", "", 1), 0);
	assert_string_equal(config_path(NULL), CONFIG_DEFAULT_PATH);
	unsetenv("SOCKMAIL_CONFIG");
}

/* pop3_timeout: 10 minutes by default (the RFC 1939 minimum), any other
 * duration of at least 1 second when set. */
static void test_pop3_timeout(void **state)
{
	struct config cfg;

	(void)state;
	config_defaults(&cfg);
	assert_int_equal(cfg.pop3_timeout, 600);
	config_free(&cfg);
	load_ok(&cfg, "pop3_timeout = 15m\n");
	assert_int_equal(cfg.pop3_timeout, 900);
	config_free(&cfg);
	load_ok(&cfg, "pop3_timeout = 2\n");
	assert_int_equal(cfg.pop3_timeout, 2);
	config_free(&cfg);
	assert_load_error("pop3_timeout = 0\n",
			  "1: pop3_timeout = '0': must not be 0");
	assert_load_error("pop3_timeout = 10x\n",
			  "1: pop3_timeout = '10x': not a valid duration "
			  "(like 90s, 15m, 4h, 5d)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_empty_file_gives_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_units_in_file),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_error_keeps_earlier_values),
		cmocka_unit_test(test_unreadable),
		cmocka_unit_test(test_config_path),
		cmocka_unit_test(test_pop3_timeout),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
