/*
 * dns: MX and address lookups for the queue runner over the libc stub
 * resolver, with an optional name server override (dns_server).  See
 * dns.h.
 *
 * Queries go out through res_nmkquery + res_nsend, which is what
 * res_nquery does underneath, so that the whole answer (its rcode
 * included) reaches one parser: NXDOMAIN, NODATA and SERVFAIL are told
 * apart there, and the unit tests feed that parser hand-made packets.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"

/* The largest DNS message (TCP), so no answer is ever cut by us. */
#define DNS_ANSWER_MAX 65536

struct dns_resolver {
	struct __res_state res;
	unsigned char *answer;
};

int dns_parse_server(const char *spec, struct sockaddr_in *out)
{
	char ip[INET_ADDRSTRLEN];
	const char *colon = strchr(spec, ':');
	size_t iplen = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
	unsigned long port = 53;

	if (iplen == 0 || iplen >= sizeof ip)
		return -1;
	memcpy(ip, spec, iplen);
	ip[iplen] = '\0';
	if (colon != NULL) {
		char *end;
		if (colon[1] < '0' || colon[1] > '9')
			return -1;
		errno = 0;
		port = strtoul(colon + 1, &end, 10);
		if (errno != 0 || *end != '\0' || port == 0 || port > 65535)
			return -1;
	}
	memset(out, 0, sizeof *out);
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, ip, &out->sin_addr) != 1)
		return -1;
	return 0;
}

struct dns_resolver *dns_open(const char *server, struct str *err)
{
	struct dns_resolver *r = xcalloc(1, sizeof *r);
	struct sockaddr_in ns;

	if (server != NULL && server[0] != '\0' &&
	    dns_parse_server(server, &ns) < 0) {
		str_printf(err, "dns_server: not an IPv4 address[:port]: %s",
			   server);
		free(r);
		return NULL;
	}
	if (res_ninit(&r->res) != 0) {
		str_append(err, "cannot initialise the DNS resolver");
		free(r);
		return NULL;
	}
	if (server != NULL && server[0] != '\0') {
		/* glibc sends to nsaddr_list[i] whenever its family is set,
		 * ahead of any IPv6 servers read from resolv.conf. */
		r->res.nsaddr_list[0] = ns;
		r->res.nscount = 1;
	}
	r->answer = xmalloc(DNS_ANSWER_MAX);
	return r;
}

void dns_close(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	res_nclose(&r->res);
	free(r->answer);
	free(r);
}

/* Copy a host name: lower case, no trailing dot; the root is "".  -1 if
 * it is too long. */
static int dns_copy_name(const char *name, char out[DNS_NAME_MAX])
{
	size_t len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len >= DNS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[len] = '\0';
	return 0;
}

/* A name from the packet, as dns_copy_name leaves it.  -1 when malformed
 * or too long. */
static int dns_expand_name(const ns_msg *msg, const unsigned char *at,
			   char out[DNS_NAME_MAX])
{
	char name[NS_MAXDNAME];
	if (dn_expand(ns_msg_base(*msg), ns_msg_end(*msg), at, name,
		      sizeof name) < 0)
		return -1;
	return dns_copy_name(name, out);
}

/* Open the packet and judge its rcode.  DNS_OK means "look at the
 * answer section". */
static enum dns_result dns_open_answer(const unsigned char *answer,
				       size_t len, ns_msg *msg,
				       struct str *err)
{
	if (len > DNS_ANSWER_MAX || ns_initparse(answer, (int)len, msg) < 0) {
		str_append(err, "malformed DNS answer");
		return DNS_TEMPFAIL;
	}
	int rcode = ns_msg_getflag(*msg, ns_f_rcode);
	if (rcode == ns_r_nxdomain) {
		str_append(err, "not found");
		return DNS_NOTFOUND;
	}
	if (rcode != ns_r_noerror) {
		str_printf(err, "name server failure (rcode %d)", rcode);
		return DNS_TEMPFAIL;
	}
	return DNS_OK;
}

/* Keep the DNS_MAX_MX most preferred records when there are more. */
static void dns_mx_add(struct dns_mx_list *l, unsigned pref,
		       const char *host)
{
	size_t slot = l->n;
	if (l->n == DNS_MAX_MX) {
		size_t worst = 0;
		for (size_t i = 1; i < l->n; i++)
			if (l->mx[i].pref > l->mx[worst].pref)
				worst = i;
		if (l->mx[worst].pref <= pref)
			return;
		slot = worst;
	} else {
		l->n++;
	}
	l->mx[slot].pref = pref;
	memcpy(l->mx[slot].host, host, strlen(host) + 1);
}

enum dns_result dns_parse_mx(const unsigned char *answer, size_t len,
			     struct dns_mx_list *out, struct str *err)
{
	ns_msg msg;
	memset(out, 0, sizeof *out);
	enum dns_result res = dns_open_answer(answer, len, &msg, err);
	if (res != DNS_OK)
		return res;

	unsigned records = 0, roots = 0;
	int count = ns_msg_count(msg, ns_s_an);
	for (int i = 0; i < count; i++) {
		ns_rr rr;
		char host[DNS_NAME_MAX];
		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) {
			str_append(err, "malformed DNS answer");
			return DNS_TEMPFAIL;
		}
		if (ns_rr_type(rr) != ns_t_mx || ns_rr_class(rr) != ns_c_in)
			continue;
		const unsigned char *rd = ns_rr_rdata(rr);
		if (ns_rr_rdlen(rr) < 3 ||
		    dns_expand_name(&msg, rd + 2, host) < 0) {
			str_append(err, "malformed MX record");
			return DNS_TEMPFAIL;
		}
		records++;
		if (host[0] == '\0') {	/* "." */
			roots++;
			continue;
		}
		dns_mx_add(out, (unsigned)rd[0] << 8 | rd[1], host);
	}
	if (records == 0) {
		str_append(err, "no MX records");
		return DNS_NODATA;
	}
	/* RFC 7505: "." alone says "no mail here".  Mixed with real hosts
	 * (which 3 forbids) the real hosts win. */
	if (out->n == 0 && roots > 0) {
		str_append(err, "null MX");
		return DNS_NULLMX;
	}
	return DNS_OK;
}

enum dns_result dns_parse_addrs(const unsigned char *answer, size_t len,
				int type, struct dns_addr *out, size_t max,
				size_t *n, struct str *err)
{
	ns_msg msg;
	size_t rdlen = type == ns_t_aaaa ? 16 : 4;
	size_t found = 0;
	*n = 0;
	enum dns_result res = dns_open_answer(answer, len, &msg, err);
	if (res != DNS_OK)
		return res;

	int count = ns_msg_count(msg, ns_s_an);
	for (int i = 0; i < count && *n < max; i++) {
		ns_rr rr;
		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) {
			str_append(err, "malformed DNS answer");
			return *n > 0 ? DNS_OK : DNS_TEMPFAIL;
		}
		if ((int)ns_rr_type(rr) != type || ns_rr_class(rr) != ns_c_in)
			continue;
		found++;
		if (ns_rr_rdlen(rr) != rdlen)
			continue;	/* malformed record: skip it */
		struct dns_addr *a = &out[(*n)++];
		memset(a, 0, sizeof *a);
		a->family = type == ns_t_aaaa ? AF_INET6 : AF_INET;
		memcpy(&a->u, ns_rr_rdata(rr), rdlen);
	}
	if (*n > 0)
		return DNS_OK;
	str_append(err, found > 0 ? "malformed address records"
		   : "no address records");
	return found > 0 ? DNS_TEMPFAIL : DNS_NODATA;
}

/* Ask the name server; the answer is left in r->answer. */
static enum dns_result dns_query(struct dns_resolver *r, const char *name,
				 int type, size_t *len, struct str *err)
{
	unsigned char query[NS_PACKETSZ];
	int qlen = res_nmkquery(&r->res, ns_o_query, name, ns_c_in, type,
				NULL, 0, NULL, query, sizeof query);
	if (qlen < 0) {
		str_append(err, "malformed name");
		return DNS_NOTFOUND;
	}
	errno = 0;
	int alen = res_nsend(&r->res, query, qlen, r->answer, DNS_ANSWER_MAX);
	if (alen < 0) {
		/* No usable answer from any server: timed out, refused, or
		 * SERVFAIL everywhere. */
		str_append(err, errno == ETIMEDOUT ? "DNS lookup timed out"
			   : "no answer from the name servers");
		return DNS_TEMPFAIL;
	}
	*len = (size_t)alen;
	return DNS_OK;
}

static void dns_swap(struct dns_mx *a, struct dns_mx *b)
{
	struct dns_mx t = *a;
	*a = *b;
	*b = t;
}

void dns_sort_mx(struct dns_mx_list *l, long (*rnd)(void))
{
	long keys[DNS_MAX_MX];
	for (size_t i = 0; i < l->n; i++)
		keys[i] = rnd != NULL ? rnd() : random();
	/* Insertion sort on (pref, random key): n is at most 20. */
	for (size_t i = 1; i < l->n; i++) {
		for (size_t j = i; j > 0; j--) {
			struct dns_mx *a = &l->mx[j - 1], *b = &l->mx[j];
			if (a->pref < b->pref ||
			    (a->pref == b->pref && keys[j - 1] <= keys[j]))
				break;
			dns_swap(a, b);
			long t = keys[j - 1];
			keys[j - 1] = keys[j];
			keys[j] = t;
		}
	}
}

static bool dns_valid_query_name(const char *name)
{
	size_t len = strlen(name);
	return len > 0 && len < DNS_NAME_MAX - 1;
}

enum dns_result dns_lookup_mx(struct dns_resolver *r, const char *domain,
			      struct dns_mx_list *out, struct str *err)
{
	struct str why = STR_INIT;
	size_t len = 0;
	memset(out, 0, sizeof *out);
	if (!dns_valid_query_name(domain)) {
		str_printf(err, "bad domain name: %s", domain);
		return DNS_NOTFOUND;
	}
	enum dns_result res = dns_query(r, domain, ns_t_mx, &len, &why);
	if (res == DNS_OK)
		res = dns_parse_mx(r->answer, len, out, &why);
	switch (res) {
	case DNS_OK:
		dns_sort_mx(out, NULL);
		break;
	case DNS_NODATA:	/* RFC 5321 5.1: the implicit MX */
		out->n = 1;
		out->implicit = true;
		out->mx[0].pref = 0;
		if (dns_copy_name(domain, out->mx[0].host) < 0) {
			str_printf(err, "bad domain name: %s", domain);
			res = DNS_NOTFOUND;
			break;
		}
		res = DNS_OK;
		break;
	case DNS_NOTFOUND:
		str_printf(err, "domain %s not found", domain);
		break;
	case DNS_NULLMX:
		str_printf(err, "domain %s does not accept mail (null MX)",
			   domain);
		break;
	default:
		str_printf(err, "MX lookup for %s failed: %s", domain,
			   str_c(&why));
		break;
	}
	str_free(&why);
	return res;
}

/* One address family's records for host, appended to out[*n..max). */
static enum dns_result dns_lookup_family(struct dns_resolver *r,
					 const char *host, int type,
					 struct dns_addr *out, size_t max,
					 size_t *n, struct str *why)
{
	size_t len = 0, got = 0;
	enum dns_result res = dns_query(r, host, type, &len, why);
	if (res != DNS_OK)
		return res;
	res = dns_parse_addrs(r->answer, len, type, out + *n, max - *n, &got,
			      why);
	*n += got;
	return res;
}

enum dns_result dns_lookup_addrs(struct dns_resolver *r, const char *host,
				 struct dns_addr *out, size_t max, size_t *n,
				 struct str *err)
{
	*n = 0;
	if (max == 0)
		return DNS_NODATA;
	memset(&out[0], 0, sizeof out[0]);
	if (inet_pton(AF_INET6, host, &out[0].u.v6) == 1) {
		out[0].family = AF_INET6;
		*n = 1;
		return DNS_OK;
	}
	if (inet_pton(AF_INET, host, &out[0].u.v4) == 1) {
		out[0].family = AF_INET;
		*n = 1;
		return DNS_OK;
	}
	if (!dns_valid_query_name(host)) {
		str_printf(err, "bad host name: %s", host);
		return DNS_NOTFOUND;
	}
	struct str why6 = STR_INIT, why4 = STR_INIT;
	enum dns_result r6 = dns_lookup_family(r, host, ns_t_aaaa, out, max, n,
					       &why6);
	enum dns_result r4 = DNS_NODATA;
	if (*n < max)
		r4 = dns_lookup_family(r, host, ns_t_a, out, max, n, &why4);
	enum dns_result res;
	if (*n > 0)
		res = DNS_OK;
	else if (r6 == DNS_TEMPFAIL || r4 == DNS_TEMPFAIL)
		res = DNS_TEMPFAIL;
	else if (r6 == DNS_NOTFOUND || r4 == DNS_NOTFOUND)
		res = DNS_NOTFOUND;
	else
		res = DNS_NODATA;
	if (res == DNS_TEMPFAIL)
		str_printf(err, "address lookup for %s failed: %s", host,
			   str_c(r4 == DNS_TEMPFAIL ? &why4 : &why6));
	else if (res == DNS_NOTFOUND)
		str_printf(err, "host %s not found", host);
	else if (res == DNS_NODATA)
		str_printf(err, "host %s has no address", host);
	str_free(&why6);
	str_free(&why4);
	return res;
}

void dns_addr_format(const struct dns_addr *a, struct str *out)
{
	char buf[INET6_ADDRSTRLEN];
	if (inet_ntop(a->family, &a->u, buf, sizeof buf) == NULL)
		str_append(out, "?");
	else
		str_append(out, buf);
}
