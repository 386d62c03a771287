/*
 * peer: the client's address on fd 0, and the early refusal a handler
 * sends when it cannot even load its config.
 */
#include "peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

void peer_address(int fd, char out[PEER_MAX])
{
	out[0] = '\0';
	const char *fake = getenv("SOCKMAIL_TEST_PEER");
	if (fake != NULL && *fake != '\0') {
		snprintf(out, PEER_MAX, "%s", fake);
		return;
	}
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, out, PEER_MAX);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		char buf[INET6_ADDRSTRLEN];
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], out,
				  PEER_MAX);
		else if (inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf))
			snprintf(out, PEER_MAX, "IPv6:%s", buf);
	}
}

bool peer_is_loopback(const char *peer)
{
	return strncmp(peer, "127.", 4) == 0 || strcmp(peer, "IPv6:::1") == 0;
}

void peer_refuse(const char *line, const char *why)
{
	log_msg(LOG_ERR, "%s", why);
	size_t len = strlen(line);
	char *buf = malloc(len + 2);
	if (buf != NULL) {
		memcpy(buf, line, len);
		memcpy(buf + len, "\r\n", 2);
		ssize_t n = write(1, buf, len + 2);
		(void)n;
		free(buf);
	}
	exit(1);
}
