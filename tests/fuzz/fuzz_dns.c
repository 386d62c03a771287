/*
 * fuzz_dns: the queue runner's DNS answer parsers (common/dns.c), which
 * read packets from the network: dns_parse_mx and dns_parse_addrs for A
 * and AAAA on the same input, then dns_sort_mx.  Invariants: nothing is
 * read outside the packet (ASan); every result is one of the enum's; on
 * DNS_OK the counts are within their bounds, each MX host a NUL-
 * terminated lower-case name without a trailing dot, the addresses of the
 * family asked for; sorting keeps the same hosts in preference order;
 * any other result leaves a reason in *err.
 */
#include <arpa/nameser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static long fixed_rnd(void)
{
	return 12345;
}

static void check_mx(const uint8_t *data, size_t size)
{
	struct dns_mx_list l;
	struct str err = STR_INIT;
	memset(&l, 0, sizeof l);
	enum dns_result r = dns_parse_mx(data, size, &l, &err);
	CHECK(r <= DNS_TEMPFAIL);
	if (r == DNS_OK) {
		CHECK(l.n > 0 && l.n <= DNS_MAX_MX);
		unsigned total = 0;
		for (size_t i = 0; i < l.n; i++) {
			const char *h = l.mx[i].host;
			size_t n = strnlen(h, DNS_NAME_MAX);
			CHECK(n < DNS_NAME_MAX);
			CHECK(n == 0 || h[n - 1] != '.');
			for (size_t j = 0; j < n; j++)
				CHECK(h[j] < 'A' || h[j] > 'Z');
			total += l.mx[i].pref;
		}
		dns_sort_mx(&l, fixed_rnd);
		unsigned after = 0;
		for (size_t i = 0; i < l.n; i++) {
			after += l.mx[i].pref;
			CHECK(i == 0 || l.mx[i - 1].pref <= l.mx[i].pref);
		}
		CHECK(after == total);
	} else if (r != DNS_NODATA) {
		CHECK(err.len > 0);
	}
	str_free(&err);
}

static void check_addrs(const uint8_t *data, size_t size, int type)
{
	struct dns_addr a[DNS_MAX_ADDRS];
	size_t n = 0;
	struct str err = STR_INIT;
	enum dns_result r = dns_parse_addrs(data, size, type, a, DNS_MAX_ADDRS,
					    &n, &err);
	CHECK(r <= DNS_TEMPFAIL);
	CHECK(n <= DNS_MAX_ADDRS);
	if (r == DNS_OK) {
		CHECK(n > 0);
		for (size_t i = 0; i < n; i++)
			CHECK(a[i].family == (type == ns_t_a ? AF_INET
							      : AF_INET6));
	}
	str_free(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65535)
		return 0;
	check_mx(data, size);
	check_addrs(data, size, ns_t_a);
	check_addrs(data, size, ns_t_aaaa);
	return 0;
}
