/*
 * smtpc_proto: the protocol pieces of the queue runner's SMTP client that
 * need no network: reading (multi-line) replies with their enhanced status
 * codes (RFC 5321 4.2, RFC 3463), the EHLO extension list, and turning
 * the spool's LF text into dot-stuffed CRLF DATA (RFC 5321 4.5.2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runner.h"

void smtpc_reply_free(struct smtpc_reply *r)
{
	str_free(&r->text);
	strlist_free(&r->lines);
	r->code = 0;
	r->enh[0] = '\0';
}

static void smtpc_reply_clear(struct smtpc_reply *r)
{
	str_clear(&r->text);
	strlist_clear(&r->lines);
	r->code = 0;
	r->enh[0] = '\0';
}

int smtpc_reply_line(const char *line, size_t len, int *code, bool *more,
		     const char **text, size_t *text_len)
{
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '5' || line[2] < '0' || line[2] > '9')
		return SMTPC_PROTO;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (len == 3) {
		*more = false;
		*text = line + 3;
		*text_len = 0;
		return 0;
	}
	if (line[3] != ' ' && line[3] != '-')
		return SMTPC_PROTO;
	*more = line[3] == '-';
	*text = line + 4;
	*text_len = len - 4;
	return 0;
}

/* An enhanced code at the start of text whose class matches the reply's
 * (RFC 3463: "x.y.z" then a space or the end). */
static void smtpc_reply_enh(struct smtpc_reply *r, const char *text,
			    size_t len)
{
	size_t i = 0;
	if (len == 0 || text[0] != (char)('0' + r->code / 100))
		return;
	i = 1;
	for (int part = 0; part < 2; part++) {
		if (i >= len || text[i] != '.')
			return;
		size_t start = ++i;
		while (i < len && i - start < 4 && text[i] >= '0' &&
		       text[i] <= '9')
			i++;
		if (i == start || i - start > 3)
			return;
	}
	if (i < len && text[i] != ' ')
		return;
	memcpy(r->enh, text, i);
	r->enh[i] = '\0';
}

/* Append a line's text to the one-line summary, cleaned and bounded. */
static void smtpc_reply_add_text(struct smtpc_reply *r, const char *text,
				 size_t len)
{
	if (r->text.len >= SMTPC_TEXT_MAX)
		return;
	if (r->text.len == 0)
		str_printf(&r->text, "%03d", r->code);
	if (len == 0)
		return;
	str_append_c(&r->text, ' ');
	for (size_t i = 0; i < len && r->text.len < SMTPC_TEXT_MAX; i++) {
		unsigned char c = (unsigned char)text[i];
		str_append_c(&r->text, c < 0x20 || c == 0x7f ? ' ' : (char)c);
	}
}

int smtpc_reply_read(struct stream *io, struct smtpc_reply *r)
{
	char cut[SMTPC_LINE_MAX];
	smtpc_reply_clear(r);
	for (unsigned n = 0;; n++) {
		const char *line;
		size_t len;
		if (n == SMTPC_REPLY_LINES_MAX)
			return SMTPC_PROTO;
		int s = stream_getline(io, SMTPC_LINE_MAX, &line, &len);
		if (s == STREAM_TOOLONG) {
			/* Keep the start, drop the rest of the line. */
			memcpy(cut, line, len);
			line = cut;
			s = stream_skip_line(io);
			if (s != STREAM_OK)
				return s;
		} else if (s != STREAM_OK) {
			return s;
		} else if (line[len - 1] != '\n') {
			return STREAM_EOF;	/* cut off by the peer */
		}
		int code;
		bool more;
		const char *text;
		size_t tlen;
		if (smtpc_reply_line(line, len, &code, &more, &text,
				     &tlen) != 0)
			return SMTPC_PROTO;
		/* RFC 5321 4.2.1: every line has the same code; a server
		 * that differs gets the last line's, as Postfix does. */
		r->code = code;
		if (n == 0)
			smtpc_reply_enh(r, text, tlen);
		smtpc_reply_add_text(r, text, tlen);
		strlist_add_n(&r->lines, text, tlen);
		if (!more)
			break;
	}
	if (r->enh[0] != '\0' && r->enh[0] != (char)('0' + r->code / 100))
		r->enh[0] = '\0';
	return 0;
}

void smtpc_reply_status(const struct smtpc_reply *r,
			char status[DSN_STATUS_MAX])
{
	if (r->enh[0] != '\0')
		snprintf(status, DSN_STATUS_MAX, "%s", r->enh);
	else
		snprintf(status, DSN_STATUS_MAX, "%d.0.0",
			 r->code >= 200 && r->code < 600 ? r->code / 100 : 4);
}

/* Does the line start with keyword as a whole word?  *rest is what
 * follows it (spaces or '=' skipped). */
static bool smtpc_keyword(const char *line, const char *kw,
			  const char **rest)
{
	size_t n = strlen(kw);
	if (strncasecmp(line, kw, n) != 0 ||
	    (line[n] != '\0' && line[n] != ' ' && line[n] != '='))
		return false;
	line += n;
	while (*line == ' ' || *line == '=')
		line++;
	*rest = line;
	return true;
}

/* Is mech among the space-separated mechanisms in list? */
static bool smtpc_has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	while (*list != '\0') {
		while (*list == ' ')
			list++;
		size_t len = strcspn(list, " ");
		if (len == n && strncasecmp(list, word, n) == 0)
			return true;
		list += len;
	}
	return false;
}

void smtpc_caps_parse(const struct smtpc_reply *ehlo, struct smtpc_caps *c)
{
	memset(c, 0, sizeof *c);
	for (size_t i = 1; i < ehlo->lines.n; i++) {
		const char *l = ehlo->lines.items[i], *rest;
		if (smtpc_keyword(l, "PIPELINING", &rest))
			c->pipelining = true;
		else if (smtpc_keyword(l, "8BITMIME", &rest))
			c->eightbitmime = true;
		else if (smtpc_keyword(l, "SMTPUTF8", &rest))
			c->smtputf8 = true;
		else if (smtpc_keyword(l, "STARTTLS", &rest))
			c->starttls = true;
		else if (smtpc_keyword(l, "ENHANCEDSTATUSCODES", &rest))
			c->enhanced = true;
		else if (smtpc_keyword(l, "AUTH", &rest))
			c->auth_plain |= smtpc_has_word(rest, "PLAIN");
		else if (smtpc_keyword(l, "SIZE", &rest)) {
			char *end;
			unsigned long long v = strtoull(rest, &end, 10);
			c->size = true;
			/* RFC 1870: 0 or no number means no fixed limit */
			if (end != rest && (*end == '\0' || *end == ' '))
				c->size_max = v;
		}
	}
}

void dotstuff_init(struct dotstuff *d)
{
	d->line_start = true;
	d->pending_cr = false;
}

void dotstuff_feed(struct dotstuff *d, const char *in, size_t len,
		   struct str *out)
{
	size_t i = 0;
	str_reserve(out, len + len / 8 + 16);
	while (i < len) {
		if (d->pending_cr) {
			/* A CR we held back: before LF it is the line end
			 * (written with the LF); alone it ends a line too.
			 * Sent bare, "<CR>.<CR><LF>" would end DATA early at
			 * a server that takes a bare CR for a line end (SMTP
			 * smuggling); as CRLF the "." that follows is
			 * stuffed. */
			d->pending_cr = false;
			if (in[i] != '\n') {
				str_append_n(out, "\r\n", 2);
				d->line_start = true;
			}
		}
		if (d->line_start && in[i] == '.')
			str_append_c(out, '.');
		/* Copy up to the next CR or LF in one go. */
		size_t span = i;
		while (span < len && in[span] != '\n' && in[span] != '\r')
			span++;
		if (span > i) {
			str_append_n(out, in + i, span - i);
			d->line_start = false;
			i = span;
			continue;
		}
		if (in[i] == '\r') {
			d->pending_cr = true;
		} else {
			str_append_n(out, "\r\n", 2);
			d->line_start = true;
		}
		i++;
	}
}

void dotstuff_end(struct dotstuff *d, struct str *out)
{
	if (d->pending_cr) {
		str_append_n(out, "\r\n", 2);
		d->pending_cr = false;
		d->line_start = true;
	}
	if (!d->line_start)
		str_append_n(out, "\r\n", 2);
	str_append_n(out, ".\r\n", 3);
	d->line_start = true;
}
