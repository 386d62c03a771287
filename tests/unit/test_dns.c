/*
 * test_dns: unit tests for common/dns.c.  The packet parsers are fed DNS
 * answers built by hand here (a tiny packet builder); the lookups run
 * against a canned name server on a loopback UDP port forked by the test,
 * reached through the dns_server override.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dns.h"
#include "str.h"

/* ---- a tiny DNS packet builder ---- */

struct pkt {
	unsigned char b[4096];
	size_t len;
	unsigned ancount;
};

static void put8(struct pkt *p, unsigned v)
{
	assert_true(p->len < sizeof p->b);
	p->b[p->len++] = (unsigned char)v;
}

static void put16(struct pkt *p, unsigned v)
{
	put8(p, v >> 8 & 0xff);
	put8(p, v & 0xff);
}

static void put32(struct pkt *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p, v & 0xffff);
}

/* "a.b.c" as labels; "" or "." is the root. */
static void put_name(struct pkt *p, const char *name)
{
	while (*name != '\0' && strcmp(name, ".") != 0) {
		const char *dot = strchr(name, '.');
		size_t n = dot ? (size_t)(dot - name) : strlen(name);
		put8(p, (unsigned)n);
		for (size_t i = 0; i < n; i++)
			put8(p, (unsigned char)name[i]);
		name += n;
		if (*name == '.')
			name++;
	}
	put8(p, 0);
}

/* Header and the question; answers follow with pkt_answer_*. */
static void pkt_start(struct pkt *p, unsigned id, unsigned rcode,
		      const char *qname, unsigned qtype)
{
	memset(p, 0, sizeof *p);
	put16(p, id);
	put16(p, 0x8180 | rcode);	/* QR, RD, RA */
	put16(p, 1);
	put16(p, 0);		/* ancount: patched as answers are added */
	put16(p, 0);
	put16(p, 0);
	put_name(p, qname);
	put16(p, qtype);
	put16(p, ns_c_in);
}

/* An answer owned by the question's name (compression pointer to 12). */
static void pkt_rr_head(struct pkt *p, unsigned type, unsigned rdlen)
{
	put16(p, 0xc00c);
	put16(p, type);
	put16(p, ns_c_in);
	put32(p, 300);
	put16(p, rdlen);
	p->ancount++;
	p->b[6] = (unsigned char)(p->ancount >> 8);
	p->b[7] = (unsigned char)(p->ancount & 0xff);
}

static size_t name_len(const char *name)
{
	struct pkt t = { .len = 0 };
	put_name(&t, name);
	return t.len;
}

static void pkt_mx(struct pkt *p, unsigned pref, const char *host)
{
	pkt_rr_head(p, ns_t_mx, 2 + (unsigned)name_len(host));
	put16(p, pref);
	put_name(p, host);
}

static void pkt_cname(struct pkt *p, const char *target)
{
	pkt_rr_head(p, ns_t_cname, (unsigned)name_len(target));
	put_name(p, target);
}

static void pkt_a(struct pkt *p, const char *ip)
{
	struct in_addr a;
	assert_int_equal(inet_pton(AF_INET, ip, &a), 1);
	pkt_rr_head(p, ns_t_a, 4);
	for (int i = 0; i < 4; i++)
		put8(p, ((unsigned char *)&a)[i]);
}

static void pkt_aaaa(struct pkt *p, const char *ip)
{
	struct in6_addr a;
	assert_int_equal(inet_pton(AF_INET6, ip, &a), 1);
	pkt_rr_head(p, ns_t_aaaa, 16);
	for (int i = 0; i < 16; i++)
		put8(p, a.s6_addr[i]);
}

/* ---- MX parsing ---- */

static void test_parse_mx_basic(void **state)
{
	(void)state;
	struct pkt p;
	struct dns_mx_list l;
	struct str err = STR_INIT;
	pkt_start(&p, 1, ns_r_noerror, "example.org", ns_t_mx);
	pkt_mx(&p, 20, "MX2.Example.ORG.");
	pkt_mx(&p, 10, "mx1.example.org");
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_OK);
	assert_int_equal(l.n, 2);
	assert_false(l.implicit);
	assert_int_equal(l.mx[0].pref, 20);
	assert_string_equal(l.mx[0].host, "mx2.example.org");
	assert_int_equal(l.mx[1].pref, 10);
	assert_string_equal(l.mx[1].host, "mx1.example.org");
	dns_sort_mx(&l, NULL);
	assert_string_equal(l.mx[0].host, "mx1.example.org");
	assert_string_equal(l.mx[1].host, "mx2.example.org");
	str_free(&err);
}

static void test_parse_mx_cname(void **state)
{
	(void)state;
	struct pkt p;
	struct dns_mx_list l;
	struct str err = STR_INIT;
	pkt_start(&p, 1, ns_r_noerror, "alias.example", ns_t_mx);
	pkt_cname(&p, "real.example");
	pkt_mx(&p, 5, "mail.real.example");
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_OK);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.mx[0].host, "mail.real.example");
	str_free(&err);
}

static void test_parse_mx_null(void **state)
{
	(void)state;
	struct pkt p;
	struct dns_mx_list l;
	struct str err = STR_INIT;
	pkt_start(&p, 1, ns_r_noerror, "nomail.example", ns_t_mx);
	pkt_mx(&p, 0, ".");
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_NULLMX);
	assert_int_equal(l.n, 0);

	/* "." beside real hosts (forbidden by RFC 7505): the hosts win. */
	str_clear(&err);
	pkt_start(&p, 1, ns_r_noerror, "odd.example", ns_t_mx);
	pkt_mx(&p, 0, ".");
	pkt_mx(&p, 10, "mx.odd.example");
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_OK);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.mx[0].host, "mx.odd.example");
	str_free(&err);
}

static void test_parse_mx_rcodes(void **state)
{
	(void)state;
	struct pkt p;
	struct dns_mx_list l;
	struct str err = STR_INIT;

	pkt_start(&p, 1, ns_r_nxdomain, "nx.example", ns_t_mx);
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_NOTFOUND);
	pkt_start(&p, 1, ns_r_servfail, "sf.example", ns_t_mx);
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_TEMPFAIL);
	pkt_start(&p, 1, ns_r_refused, "ref.example", ns_t_mx);
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_TEMPFAIL);
	/* NOERROR without MX records: the domain exists (implicit MX). */
	pkt_start(&p, 1, ns_r_noerror, "a-only.example", ns_t_mx);
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_NODATA);
	/* A CNAME alone is no MX either. */
	pkt_start(&p, 1, ns_r_noerror, "c.example", ns_t_mx);
	pkt_cname(&p, "d.example");
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_NODATA);
	str_free(&err);
}

static void test_parse_mx_malformed(void **state)
{
	(void)state;
	struct pkt p;
	struct dns_mx_list l;
	struct str err = STR_INIT;
	static const unsigned char junk[] = { 1, 2, 3 };
	assert_int_equal(dns_parse_mx(junk, sizeof junk, &l, &err),
			 DNS_TEMPFAIL);

	/* An answer cut in the middle of its record. */
	pkt_start(&p, 1, ns_r_noerror, "cut.example", ns_t_mx);
	pkt_mx(&p, 10, "mx.cut.example");
	assert_int_equal(dns_parse_mx(p.b, p.len - 4, &l, &err), DNS_TEMPFAIL);

	/* An MX rdata too short for a preference and a name. */
	pkt_start(&p, 1, ns_r_noerror, "short.example", ns_t_mx);
	pkt_rr_head(&p, ns_t_mx, 1);
	put8(&p, 0);
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_TEMPFAIL);

	/* A compression pointer that loops onto itself. */
	pkt_start(&p, 1, ns_r_noerror, "loop.example", ns_t_mx);
	size_t at = p.len + 14;	/* where the MX target will start */
	pkt_rr_head(&p, ns_t_mx, 4);
	put16(&p, 10);
	put16(&p, 0xc000 | (unsigned)at);
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_TEMPFAIL);
	str_free(&err);
}

/* More than DNS_MAX_MX records: the most preferred ones are kept. */
static void test_parse_mx_bound(void **state)
{
	(void)state;
	struct pkt p;
	struct dns_mx_list l;
	struct str err = STR_INIT;
	char host[32];
	pkt_start(&p, 1, ns_r_noerror, "many.example", ns_t_mx);
	for (unsigned i = 30; i > 0; i--) {	/* worst first */
		snprintf(host, sizeof host, "mx%u.many.example", i);
		pkt_mx(&p, i, host);
	}
	assert_int_equal(dns_parse_mx(p.b, p.len, &l, &err), DNS_OK);
	assert_int_equal(l.n, DNS_MAX_MX);
	dns_sort_mx(&l, NULL);
	for (unsigned i = 0; i < DNS_MAX_MX; i++) {
		snprintf(host, sizeof host, "mx%u.many.example", i + 1);
		assert_int_equal(l.mx[i].pref, i + 1);
		assert_string_equal(l.mx[i].host, host);
	}
	str_free(&err);
}

/* A fake random() for the shuffle among equal preferences. */
static long fake_seq[8];
static size_t fake_pos;

static long fake_random(void)
{
	return fake_seq[fake_pos++ % 8];
}

static void test_sort_mx_shuffle(void **state)
{
	(void)state;
	struct dns_mx_list l = { .n = 4 };
	static const struct { unsigned pref; const char *host; } in[4] = {
		{ 20, "c" }, { 10, "a" }, { 10, "b" }, { 5, "first" },
	};
	/* Keys 4,3,2,1: b before a. */
	for (size_t i = 0; i < 4; i++) {
		l.mx[i].pref = in[i].pref;
		strcpy(l.mx[i].host, in[i].host);
		fake_seq[i] = 4 - (long)i;
	}
	fake_pos = 0;
	dns_sort_mx(&l, fake_random);
	assert_string_equal(l.mx[0].host, "first");
	assert_string_equal(l.mx[1].host, "b");
	assert_string_equal(l.mx[2].host, "a");
	assert_string_equal(l.mx[3].host, "c");

	/* Keys 1,2,3,4: a before b. */
	for (size_t i = 0; i < 4; i++) {
		l.mx[i].pref = in[i].pref;
		strcpy(l.mx[i].host, in[i].host);
		fake_seq[i] = (long)i + 1;
	}
	fake_pos = 0;
	dns_sort_mx(&l, fake_random);
	assert_string_equal(l.mx[0].host, "first");
	assert_string_equal(l.mx[1].host, "a");
	assert_string_equal(l.mx[2].host, "b");
	assert_string_equal(l.mx[3].host, "c");
}

/* ---- address parsing ---- */

static void test_parse_addrs(void **state)
{
	(void)state;
	struct pkt p;
	struct dns_addr a[DNS_MAX_ADDRS];
	size_t n = 99;
	struct str err = STR_INIT, txt = STR_INIT;

	pkt_start(&p, 1, ns_r_noerror, "h.example", ns_t_a);
	pkt_a(&p, "192.0.2.1");
	pkt_aaaa(&p, "2001:db8::1");	/* wrong type for the question */
	pkt_a(&p, "192.0.2.2");
	assert_int_equal(dns_parse_addrs(p.b, p.len, ns_t_a, a, DNS_MAX_ADDRS,
					 &n, &err), DNS_OK);
	assert_int_equal(n, 2);
	assert_int_equal(a[0].family, AF_INET);
	dns_addr_format(&a[0], &txt);
	str_append(&txt, " ");
	dns_addr_format(&a[1], &txt);
	assert_string_equal(str_c(&txt), "192.0.2.1 192.0.2.2");

	/* The bound. */
	assert_int_equal(dns_parse_addrs(p.b, p.len, ns_t_a, a, 1, &n, &err),
			 DNS_OK);
	assert_int_equal(n, 1);

	pkt_start(&p, 1, ns_r_noerror, "h.example", ns_t_aaaa);
	pkt_aaaa(&p, "2001:db8::1");
	assert_int_equal(dns_parse_addrs(p.b, p.len, ns_t_aaaa, a,
					 DNS_MAX_ADDRS, &n, &err), DNS_OK);
	assert_int_equal(n, 1);
	assert_int_equal(a[0].family, AF_INET6);
	str_clear(&txt);
	dns_addr_format(&a[0], &txt);
	assert_string_equal(str_c(&txt), "2001:db8::1");

	/* An A record with 5 bytes of data is skipped. */
	pkt_start(&p, 1, ns_r_noerror, "bad.example", ns_t_a);
	pkt_rr_head(&p, ns_t_a, 5);
	for (int i = 0; i < 5; i++)
		put8(&p, 1);
	assert_int_equal(dns_parse_addrs(p.b, p.len, ns_t_a, a, DNS_MAX_ADDRS,
					 &n, &err), DNS_TEMPFAIL);
	assert_int_equal(n, 0);

	pkt_start(&p, 1, ns_r_noerror, "none.example", ns_t_a);
	assert_int_equal(dns_parse_addrs(p.b, p.len, ns_t_a, a, DNS_MAX_ADDRS,
					 &n, &err), DNS_NODATA);
	pkt_start(&p, 1, ns_r_nxdomain, "nx.example", ns_t_a);
	assert_int_equal(dns_parse_addrs(p.b, p.len, ns_t_a, a, DNS_MAX_ADDRS,
					 &n, &err), DNS_NOTFOUND);
	str_free(&err);
	str_free(&txt);
}

static void test_parse_server(void **state)
{
	(void)state;
	struct sockaddr_in sin;
	assert_int_equal(dns_parse_server("127.0.0.1:5353", &sin), 0);
	assert_int_equal(ntohs(sin.sin_port), 5353);
	assert_int_equal(ntohl(sin.sin_addr.s_addr), 0x7f000001);
	assert_int_equal(dns_parse_server("192.0.2.53", &sin), 0);
	assert_int_equal(ntohs(sin.sin_port), 53);
	assert_int_equal(dns_parse_server("127.0.0.1:", &sin), -1);
	assert_int_equal(dns_parse_server("127.0.0.1:0", &sin), -1);
	assert_int_equal(dns_parse_server("127.0.0.1:65536", &sin), -1);
	assert_int_equal(dns_parse_server("127.0.0.1:53x", &sin), -1);
	assert_int_equal(dns_parse_server("localhost:53", &sin), -1);
	assert_int_equal(dns_parse_server(":53", &sin), -1);
	assert_int_equal(dns_parse_server("", &sin), -1);

	struct str err = STR_INIT;
	assert_null(dns_open("::1", &err));
	assert_non_null(strstr(str_c(&err), "dns_server"));
	str_free(&err);
}

static void test_lookup_literal(void **state)
{
	(void)state;
	struct dns_addr a[2];
	size_t n = 0;
	struct str err = STR_INIT, txt = STR_INIT;
	/* No resolver is needed for an address in text. */
	assert_int_equal(dns_lookup_addrs(NULL, "127.0.0.1", a, 2, &n, &err),
			 DNS_OK);
	assert_int_equal(n, 1);
	assert_int_equal(a[0].family, AF_INET);
	assert_int_equal(dns_lookup_addrs(NULL, "::1", a, 2, &n, &err), DNS_OK);
	assert_int_equal(a[0].family, AF_INET6);
	dns_addr_format(&a[0], &txt);
	assert_string_equal(str_c(&txt), "::1");
	str_free(&err);
	str_free(&txt);
}

/* ---- lookups against a canned name server on loopback ---- */

static pid_t server_pid;
static char server_spec[32];

/* The question's name (lower case) and type from a query. */
static int query_question(const unsigned char *q, size_t len, char *name,
			  size_t size, unsigned *type)
{
	size_t i = 12, o = 0;
	while (i < len && q[i] != 0) {
		size_t n = q[i++];
		if (i + n > len || o + n + 1 >= size)
			return -1;
		if (o > 0)
			name[o++] = '.';
		memcpy(name + o, q + i, n);
		o += n;
		i += n;
	}
	name[o] = '\0';
	if (i + 5 > len)
		return -1;
	*type = (unsigned)q[i + 1] << 8 | q[i + 2];
	return 0;
}

static void answer_query(const char *name, unsigned type, unsigned id,
			 struct pkt *p)
{
	if (strcmp(name, "nx.test") == 0) {
		pkt_start(p, id, ns_r_nxdomain, name, type);
	} else if (strcmp(name, "fail.test") == 0) {
		pkt_start(p, id, ns_r_servfail, name, type);
	} else if (strcmp(name, "mx.test") == 0 && type == ns_t_mx) {
		pkt_start(p, id, ns_r_noerror, name, type);
		pkt_mx(p, 20, "backup.mx.test");
		pkt_mx(p, 10, "primary.mx.test");
	} else if (strcmp(name, "null.test") == 0 && type == ns_t_mx) {
		pkt_start(p, id, ns_r_noerror, name, type);
		pkt_mx(p, 0, ".");
	} else if (strcmp(name, "primary.mx.test") == 0 && type == ns_t_a) {
		pkt_start(p, id, ns_r_noerror, name, type);
		pkt_a(p, "127.0.0.1");
		pkt_a(p, "127.0.0.2");
	} else if (strcmp(name, "primary.mx.test") == 0 && type == ns_t_aaaa) {
		pkt_start(p, id, ns_r_noerror, name, type);
		pkt_aaaa(p, "::1");
	} else if (strcmp(name, "nomx.test") == 0 && type == ns_t_a) {
		pkt_start(p, id, ns_r_noerror, name, type);
		pkt_a(p, "192.0.2.7");
	} else {	/* exists, no records of the type */
		pkt_start(p, id, ns_r_noerror, name, type);
	}
}

static void serve_dns(int fd)
{
	for (;;) {
		unsigned char q[512];
		struct sockaddr_storage from;
		socklen_t flen = sizeof from;
		ssize_t n = recvfrom(fd, q, sizeof q, 0,
				     (struct sockaddr *)&from, &flen);
		char name[256];
		unsigned type;
		if (n < 12 || query_question(q, (size_t)n, name, sizeof name,
					     &type) < 0)
			continue;
		struct pkt p;
		answer_query(name, type, (unsigned)q[0] << 8 | q[1], &p);
		p.b[2] |= q[2] & 0x01;	/* echo RD */
		sendto(fd, p.b, p.len, 0, (struct sockaddr *)&from, flen);
	}
}

static int server_start(void **state)
{
	(void)state;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		return -1;
	snprintf(server_spec, sizeof server_spec, "127.0.0.1:%u",
		 ntohs(sin.sin_port));
	server_pid = fork();
	if (server_pid < 0)
		return -1;
	if (server_pid == 0) {
		alarm(60);	/* never outlive a crashed test for long */
		serve_dns(fd);
		_exit(0);
	}
	close(fd);
	return 0;
}

static int server_stop(void **state)
{
	(void)state;
	kill(server_pid, SIGTERM);
	waitpid(server_pid, NULL, 0);
	return 0;
}

static void test_lookup_mx(void **state)
{
	(void)state;
	struct str err = STR_INIT;
	struct dns_resolver *r = dns_open(server_spec, &err);
	assert_non_null(r);
	struct dns_mx_list l;

	assert_int_equal(dns_lookup_mx(r, "mx.test", &l, &err), DNS_OK);
	assert_int_equal(l.n, 2);
	assert_false(l.implicit);
	assert_string_equal(l.mx[0].host, "primary.mx.test");
	assert_string_equal(l.mx[1].host, "backup.mx.test");

	/* No MX, the domain exists: implicit MX, the domain itself. */
	assert_int_equal(dns_lookup_mx(r, "NoMX.test", &l, &err), DNS_OK);
	assert_int_equal(l.n, 1);
	assert_true(l.implicit);
	assert_int_equal(l.mx[0].pref, 0);
	assert_string_equal(l.mx[0].host, "nomx.test");

	str_clear(&err);
	assert_int_equal(dns_lookup_mx(r, "nx.test", &l, &err), DNS_NOTFOUND);
	assert_string_equal(str_c(&err), "domain nx.test not found");
	str_clear(&err);
	assert_int_equal(dns_lookup_mx(r, "null.test", &l, &err), DNS_NULLMX);
	assert_string_equal(str_c(&err),
			    "domain null.test does not accept mail (null MX)");
	str_clear(&err);
	assert_int_equal(dns_lookup_mx(r, "fail.test", &l, &err), DNS_TEMPFAIL);
	assert_non_null(strstr(str_c(&err), "MX lookup for fail.test failed"));
	dns_close(r);
	str_free(&err);
}

static void test_lookup_addrs(void **state)
{
	(void)state;
	struct str err = STR_INIT, txt = STR_INIT;
	struct dns_resolver *r = dns_open(server_spec, &err);
	assert_non_null(r);
	struct dns_addr a[DNS_MAX_ADDRS];
	size_t n = 0;

	assert_int_equal(dns_lookup_addrs(r, "primary.mx.test", a,
					  DNS_MAX_ADDRS, &n, &err), DNS_OK);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		dns_addr_format(&a[i], &txt);
		str_append(&txt, " ");
	}
	assert_string_equal(str_c(&txt), "::1 127.0.0.1 127.0.0.2 ");

	/* The bound holds across both families. */
	assert_int_equal(dns_lookup_addrs(r, "primary.mx.test", a, 2, &n, &err),
			 DNS_OK);
	assert_int_equal(n, 2);

	str_clear(&err);
	assert_int_equal(dns_lookup_addrs(r, "nx.test", a, DNS_MAX_ADDRS, &n,
					  &err), DNS_NOTFOUND);
	assert_string_equal(str_c(&err), "host nx.test not found");
	str_clear(&err);
	assert_int_equal(dns_lookup_addrs(r, "empty.test", a, DNS_MAX_ADDRS,
					  &n, &err), DNS_NODATA);
	assert_string_equal(str_c(&err), "host empty.test has no address");
	str_clear(&err);
	assert_int_equal(dns_lookup_addrs(r, "fail.test", a, DNS_MAX_ADDRS, &n,
					  &err), DNS_TEMPFAIL);
	dns_close(r);
	str_free(&err);
	str_free(&txt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_mx_basic),
		cmocka_unit_test(test_parse_mx_cname),
		cmocka_unit_test(test_parse_mx_null),
		cmocka_unit_test(test_parse_mx_rcodes),
		cmocka_unit_test(test_parse_mx_malformed),
		cmocka_unit_test(test_parse_mx_bound),
		cmocka_unit_test(test_sort_mx_shuffle),
		cmocka_unit_test(test_parse_addrs),
		cmocka_unit_test(test_parse_server),
		cmocka_unit_test(test_lookup_literal),
		cmocka_unit_test(test_lookup_mx),
		cmocka_unit_test(test_lookup_addrs),
	};
	return cmocka_run_group_tests(tests, server_start, server_stop);
}
