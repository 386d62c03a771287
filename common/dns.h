/*
 * dns: the MX and address lookups of the queue runner, over the libc stub
 * resolver (res_ninit/res_nsend, answers parsed with ns_initparse), not
 * getaddrinfo(): the config key dns_server ("IP" or "IP:PORT") must be able
 * to replace the system's name servers, so tests can run a dnsmasq on a
 * loopback port.  The resolver retries over TCP when an answer is
 * truncated, as it always does.
 *
 * MX rules (RFC 5321 5.1, RFC 7505): hosts sorted by preference, shuffled
 * among equal preferences; no MX records for a domain that exists means
 * the domain itself is the one host ("implicit MX"); a nonexistent domain
 * and a null MX (one record with target ".") are permanent failures; a
 * server failure or timeout is temporary.  Everything is bounded:
 * DNS_MAX_MX hosts, DNS_MAX_ADDRS addresses per host.
 */
#ifndef SOCKMAIL_DNS_H
#define SOCKMAIL_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>

#include "str.h"

#define DNS_MAX_MX 20
#define DNS_MAX_ADDRS 10
#define DNS_NAME_MAX 256	/* a host name with its NUL */

enum dns_result {
	DNS_OK = 0,
	DNS_NOTFOUND,		/* NXDOMAIN: the name does not exist */
	DNS_NODATA,		/* the name exists, no records of the type */
	DNS_NULLMX,		/* RFC 7505: the domain accepts no mail */
	DNS_TEMPFAIL,		/* SERVFAIL, timeout, refused, garbage */
};

struct dns_mx {
	unsigned pref;
	char host[DNS_NAME_MAX];	/* lower case, no trailing dot */
};

struct dns_mx_list {
	struct dns_mx mx[DNS_MAX_MX];
	size_t n;
	bool implicit;		/* no MX records: the domain itself */
};

struct dns_addr {
	int family;		/* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} u;
};

struct dns_resolver;

/* A resolver from /etc/resolv.conf, with its name servers replaced by
 * server ("IP" or "IP:PORT", IPv4) unless server is NULL or "".  NULL with
 * *err on a malformed server or a resolver that cannot start. */
struct dns_resolver *dns_open(const char *server, struct str *err);
void dns_close(struct dns_resolver *r);

/*
 * The mail exchangers of domain, in the order to try them.  DNS_OK fills
 * *out (out->implicit when the domain had no MX records); every other
 * result leaves a one-line reason in *err: DNS_NOTFOUND and DNS_NULLMX are
 * permanent, DNS_TEMPFAIL temporary.  Never returns DNS_NODATA.
 */
enum dns_result dns_lookup_mx(struct dns_resolver *r, const char *domain,
			      struct dns_mx_list *out, struct str *err);

/*
 * The addresses of host: AAAA records first, then A (both queried), at
 * most max in all.  A host that is an IP address in text needs no lookup.
 * DNS_OK with *n > 0; DNS_NOTFOUND or DNS_NODATA when the host has no
 * address; DNS_TEMPFAIL when a lookup failed and nothing was found.
 */
enum dns_result dns_lookup_addrs(struct dns_resolver *r, const char *host,
				 struct dns_addr *out, size_t max, size_t *n,
				 struct str *err);

/* "1.2.3.4" / "2001:db8::1". */
void dns_addr_format(const struct dns_addr *a, struct str *out);

/* Parse "IP" or "IP:PORT" (IPv4, port 1-65535, default 53).  0 or -1. */
int dns_parse_server(const char *spec, struct sockaddr_in *out);

/*
 * The packet parsers under the lookups, exposed for tests.  answer is a
 * whole DNS response.  The rcode decides first (NXDOMAIN -> DNS_NOTFOUND,
 * any other failure -> DNS_TEMPFAIL); then only records of the asked type
 * in the answer section count (CNAMEs are followed by the server).
 * dns_parse_mx gives DNS_OK (out->n > 0, in the order received),
 * DNS_NODATA or DNS_NULLMX; dns_sort_mx then orders it.
 */
enum dns_result dns_parse_mx(const unsigned char *answer, size_t len,
			     struct dns_mx_list *out, struct str *err);
enum dns_result dns_parse_addrs(const unsigned char *answer, size_t len,
				int type /* ns_t_a or ns_t_aaaa */,
				struct dns_addr *out, size_t max, size_t *n,
				struct str *err);

/* Sort by preference; equal preferences in random order, drawn from rnd
 * (random() when NULL). */
void dns_sort_mx(struct dns_mx_list *l, long (*rnd)(void));

#endif
