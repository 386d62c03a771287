/*
 * pop3_null: a POP3 responder that does nothing, for the benchmarks' floor:
 * started per connection by the same activator as pop3-handler, it greets,
 * answers +OK to every command (STAT with an empty maildrop) and exits
 * after QUIT.  What process-per-connection itself costs on the machine.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void reply(const char *text)
{
	size_t len = strlen(text);
	while (len > 0) {
		ssize_t n = write(1, text, len);
		if (n <= 0)
			_exit(1);
		text += n;
		len -= (size_t)n;
	}
}

int main(void)
{
	char line[1024];
	size_t used = 0;
	reply("+OK pop3_null ready\r\n");
	for (;;) {
		ssize_t n = read(0, line + used, sizeof line - 1 - used);
		if (n <= 0)
			return 0;
		used += (size_t)n;
		line[used] = '\0';
		char *nl;
		while ((nl = strchr(line, '\n')) != NULL) {
			if (strncasecmp(line, "QUIT", 4) == 0) {
				reply("+OK bye\r\n");
				return 0;
			}
			reply(strncasecmp(line, "STAT", 4) == 0 ? "+OK 0 0\r\n"
								 : "+OK\r\n");
			used -= (size_t)(nl + 1 - line);
			memmove(line, nl + 1, used + 1);
		}
		if (used == sizeof line - 1)
			used = 0;	/* an overlong line: forget it */
	}
}
