/*
 * fuzz_smtp_command: smtp-handler's command-line parsing, line by line as
 * the session does it (smtp.h: smtp_command_line, smtp_parse_verb,
 * smtp_path_arg, smtp_parse_mail_params; then addr_parse_path for MAIL and
 * RCPT, and for AUTH the initial response through base64_decode and
 * sasl_plain_parse).  The input is split into lines at LF, each at most
 * SMTP_AUTH_LINE_MAX octets like stream_getline hands them over.
 * Invariants checked:
 *   - no read or write outside the line or the command buffer (ASan: both
 *     exact-size heap copies);
 *   - a line is refused as too long exactly when it is over SMTP_LINE_MAX
 *     and not AUTH, for NUL exactly when it holds one, and otherwise
 *     comes out as the line without its CRLF;
 *   - the verb is the first word in any case, the argument what follows
 *     the first space;
 *   - the MAIL parameters agree with a reference reading (SIZE=digits,
 *     BODY=7BIT|8BITMIME, SMTPUTF8; the first bad one named);
 *   - paths obey the addr.h bounds; RCPT's whole argument must be used;
 *   - base64 is strict (what decodes encodes back to the same text) and
 *     PLAIN splits into authzid, authcid, password with their bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static const char *const verb_names[] = {
	[SMTP_VERB_EHLO] = "EHLO", [SMTP_VERB_HELO] = "HELO",
	[SMTP_VERB_MAIL] = "MAIL", [SMTP_VERB_RCPT] = "RCPT",
	[SMTP_VERB_DATA] = "DATA", [SMTP_VERB_STARTTLS] = "STARTTLS",
	[SMTP_VERB_AUTH] = "AUTH", [SMTP_VERB_RSET] = "RSET",
	[SMTP_VERB_NOOP] = "NOOP", [SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_VRFY] = "VRFY", [SMTP_VERB_EXPN] = "EXPN",
	[SMTP_VERB_HELP] = "HELP",
};
#define N_VERBS (sizeof verb_names / sizeof *verb_names)

/* The reference reading of MAIL parameters, on its own copy. */
static enum smtp_params_error ref_params(const char *text,
					 struct smtp_mail_params *p,
					 char *bad, size_t bad_size)
{
	char *copy = xstrdup(text), *save = NULL;
	enum smtp_params_error e = SMTP_PARAMS_OK;
	memset(p, 0, sizeof *p);
	for (char *t = strtok_r(copy, " ", &save); t && e == SMTP_PARAMS_OK;
	     t = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(t, '=');
		size_t klen = eq ? (size_t)(eq - t) : strlen(t);
		const char *v = eq ? eq + 1 : NULL;
		if (klen == 4 && strncasecmp(t, "SIZE", 4) == 0 && v) {
			size_t n = strlen(v);
			if (n == 0 || strspn(v, "0123456789") != n) {
				e = SMTP_PARAMS_BAD_SIZE;
				break;
			}
			p->size = strtoull(v, NULL, 10);
		} else if (klen == 4 && strncasecmp(t, "BODY", 4) == 0 && v &&
			   (strcasecmp(v, "7BIT") == 0 ||
			    strcasecmp(v, "8BITMIME") == 0)) {
			p->body_8bit = strcasecmp(v, "8BITMIME") == 0;
		} else if (klen == 8 && strncasecmp(t, "SMTPUTF8", 8) == 0 && !v) {
			p->smtputf8 = true;
		} else {
			size_t n = klen < bad_size - 1 ? klen : bad_size - 1;
			memcpy(bad, t, n);
			bad[n] = '\0';
			e = SMTP_PARAMS_UNSUPPORTED;
		}
	}
	free(copy);
	return e;
}

static void check_mail(const char *arg)
{
	const char *p = smtp_path_arg(arg, "FROM:");
	CHECK((p != NULL) == (strncasecmp(arg, "FROM:", 5) == 0));
	if (p == NULL)
		return;
	CHECK(p >= arg + 5 && p <= arg + strlen(arg) && *p != ' ');
	struct mailaddr a;
	size_t used;
	if (addr_parse_path(p, strlen(p), true, &a, &used) != ADDR_OK)
		return;
	CHECK(used <= strlen(p));
	CHECK(strlen(a.local) <= ADDR_MAX_LOCAL &&
	      strlen(a.domain) <= ADDR_MAX_DOMAIN);
	mailaddr_free(&a);

	char *params = xstrdup(p + used);
	size_t plen = strlen(params);
	struct smtp_mail_params mp, want;
	char bad_want[600];
	const char *bad = NULL;
	enum smtp_params_error e = smtp_parse_mail_params(params, &mp, &bad);
	enum smtp_params_error we = ref_params(p + used, &want, bad_want,
					       sizeof bad_want);
	CHECK(e == we);
	if (e == SMTP_PARAMS_OK)
		CHECK(mp.size == want.size && mp.body_8bit == want.body_8bit &&
		      mp.smtputf8 == want.smtputf8);
	if (e == SMTP_PARAMS_UNSUPPORTED) {
		CHECK(bad >= params && bad < params + plen);
		CHECK(strcmp(bad, bad_want) == 0);
	}
	free(params);
}

static void check_rcpt(const char *arg)
{
	const char *p = smtp_path_arg(arg, "TO:");
	CHECK((p != NULL) == (strncasecmp(arg, "TO:", 3) == 0));
	if (p == NULL)
		return;
	struct mailaddr a;
	size_t used;
	if (addr_parse_path(p, strlen(p), false, &a, &used) != ADDR_OK)
		return;
	CHECK(!a.null && used <= strlen(p));
	/* what the session then shows in replies and Received: */
	struct str shown = STR_INIT;
	addr_format(&a, &shown);
	CHECK(shown.len > 0 && memchr(shown.data, '\r', shown.len) == NULL &&
	      memchr(shown.data, '\n', shown.len) == NULL);
	str_free(&shown);
	mailaddr_free(&a);
}

static void check_auth(const char *arg)
{
	const char *ir = strchr(arg, ' ');
	if (ir == NULL)
		return;
	ir++;
	size_t len = strlen(ir);
	struct str dec = STR_INIT, enc = STR_INIT;
	if (base64_decode(ir, len, &dec) == 0) {
		CHECK(dec.len <= len / 4 * 3);
		base64_encode(dec.data, dec.len, &enc);
		CHECK(enc.len == len && memcmp(str_c(&enc), ir, len) == 0);
		struct str z = STR_INIT, c = STR_INIT, pw = STR_INIT;
		if (sasl_plain_parse(str_c(&dec), dec.len, &z, &c, &pw) == 0) {
			CHECK(z.len + c.len + pw.len + 2 == dec.len);
			CHECK(c.len > 0 && pw.len > 0 &&
			      z.len <= AUTH_MAX_FIELD && c.len <= AUTH_MAX_FIELD &&
			      pw.len <= AUTH_MAX_FIELD);
		}
		str_free(&z);
		str_free(&c);
		str_free(&pw);
	} else {
		CHECK(dec.len == 0);
	}
	str_free(&dec);
	str_free(&enc);
}

static void check_line(const char *raw, size_t len, char *buf)
{
	char *line = xmalloc(len ? len : 1);	/* exact size for ASan */
	memcpy(line, raw, len);
	size_t stripped = len;
	if (stripped > 0 && raw[stripped - 1] == '\n')
		stripped--;
	if (stripped > 0 && raw[stripped - 1] == '\r')
		stripped--;

	enum smtp_line_check r = smtp_command_line(line, len, buf);
	bool too_long = len > SMTP_LINE_MAX &&
			!(len >= 5 && strncasecmp(raw, "AUTH ", 5) == 0);
	bool nul = memchr(raw, '\0', stripped) != NULL;
	free(line);
	if (too_long) {
		CHECK(r == SMTP_LINE_TOO_LONG);
		return;
	}
	if (nul) {
		CHECK(r == SMTP_LINE_NUL);
		return;
	}
	CHECK(r == SMTP_LINE_OK);
	CHECK(strlen(buf) == stripped && memcmp(buf, raw, stripped) == 0);

	/* the verb: the first word, any case */
	char *arg = NULL;
	const char *sp = memchr(raw, ' ', stripped);
	size_t wlen = sp != NULL ? (size_t)(sp - raw) : stripped;
	enum smtp_verb v = smtp_parse_verb(buf, &arg);
	CHECK(v < N_VERBS);
	if (v == SMTP_VERB_UNKNOWN) {
		for (size_t i = 1; i < N_VERBS; i++)
			CHECK(strlen(verb_names[i]) != wlen ||
			      strncasecmp(verb_names[i], raw, wlen) != 0);
	} else {
		CHECK(strlen(verb_names[v]) == wlen &&
		      strncasecmp(verb_names[v], raw, wlen) == 0);
	}
	CHECK(arg >= buf && arg <= buf + stripped);
	size_t alen = sp != NULL ? stripped - wlen - 1 : 0;
	CHECK(strlen(arg) == alen &&
	      (alen == 0 || memcmp(arg, sp + 1, alen) == 0));

	if (v == SMTP_VERB_MAIL)
		check_mail(arg);
	else if (v == SMTP_VERB_RCPT)
		check_rcpt(arg);
	else if (v == SMTP_VERB_AUTH)
		check_auth(arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	char *buf = xmalloc(SMTP_AUTH_LINE_MAX + 1);
	for (int n = 0; n < 64 && p < end; n++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl != NULL ? (size_t)(nl - p) + 1
					: (size_t)(end - p);
		/* what stream_getline gives whole; longer is skipped */
		if (len <= SMTP_AUTH_LINE_MAX)
			check_line(p, len, buf);
		p += len;
	}
	free(buf);
	return 0;
}
