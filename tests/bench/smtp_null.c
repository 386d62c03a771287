/*
 * smtp_null: the floor under the SMTP benchmark.  A do-nothing SMTP
 * responder on fd 0/1 for systemd-socket-activate --inetd --accept: it
 * greets, says yes to EHLO/HELO, MAIL, RCPT, DATA, RSET and NOOP, reads
 * and discards the message, answers 250 to the final dot and 221 to QUIT.
 * No config, no database, no disk.  What smtp_blast gets from it is the
 * ceiling set by process-per-connection on this machine (fork, exec,
 * dynamic linking, the activator's accept loop), which the real handler's
 * figures can be read against.
 *
 * Bounds: lines longer than LINE_MAX are answered 500 (and discarded);
 * the whole session is cut off by alarm() after SESSION_LIMIT seconds.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LINE_MAX_LEN	1024
#define SESSION_LIMIT	120

static char obuf[4096];
static size_t olen;
static char ibuf[8192];
static size_t istart, iend;

static void flush_out(void)
{
	size_t done = 0;
	while (done < olen) {
		ssize_t n = write(1, obuf + done, olen - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(1);
		done += (size_t)n;
	}
	olen = 0;
}

static void reply(const char *text)
{
	size_t len = strlen(text);
	if (olen + len > sizeof obuf)
		flush_out();
	memcpy(obuf + olen, text, len);
	olen += len;
}

/* Next line into *line (with its LF); 0 at EOF, -1 for an overlong line,
 * else its length.  Replies are flushed only when no more input waits, so
 * pipelined commands get their replies in one write, as a real server
 * does. */
static long read_line(char **line)
{
	bool overlong = false;
	for (;;) {
		char *nl = memchr(ibuf + istart, '\n', iend - istart);
		if (nl != NULL) {
			*line = ibuf + istart;
			long len = nl + 1 - (ibuf + istart);
			istart += (size_t)len;
			return overlong || len > LINE_MAX_LEN ? -1 : len;
		}
		if (iend - istart >= LINE_MAX_LEN) {
			overlong = true;	/* drop what we have */
			istart = iend = 0;
		}
		if (istart > 0) {
			memmove(ibuf, ibuf + istart, iend - istart);
			iend -= istart;
			istart = 0;
		}
		flush_out();
		ssize_t n = read(0, ibuf + iend, sizeof ibuf - iend);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		iend += (size_t)n;
	}
}

static bool is_cmd(const char *line, long len, const char *cmd)
{
	return len >= 4 && strncasecmp(line, cmd, 4) == 0;
}

int main(void)
{
	char *line;
	long len;
	bool data = false;

	alarm(SESSION_LIMIT);
	reply("220 null.example ESMTP smtp_null\r\n");
	while ((len = read_line(&line)) != 0) {
		if (data) {
			if (len == 3 && memcmp(line, ".\r\n", 3) == 0) {
				data = false;
				reply("250 2.0.0 Ok: discarded\r\n");
			}
		} else if (len < 0) {
			reply("500 5.5.2 Line too long\r\n");
		} else if (is_cmd(line, len, "EHLO")) {
			reply("250-null.example\r\n250-PIPELINING\r\n"
			      "250 8BITMIME\r\n");
		} else if (is_cmd(line, len, "DATA")) {
			reply("354 End data with <CR><LF>.<CR><LF>\r\n");
			data = true;
		} else if (is_cmd(line, len, "QUIT")) {
			reply("221 2.0.0 Bye\r\n");
			break;
		} else if (is_cmd(line, len, "HELO") ||
			   is_cmd(line, len, "MAIL") ||
			   is_cmd(line, len, "RCPT") ||
			   is_cmd(line, len, "RSET") ||
			   is_cmd(line, len, "NOOP")) {
			reply("250 2.0.0 Ok\r\n");
		} else {
			reply("500 5.5.2 Error: command not recognized\r\n");
		}
	}
	flush_out();
	return 0;
}
