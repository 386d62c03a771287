/*
 * runner_remote: where remote mail goes and the order of trying: the
 * domain's mail exchangers by preference (RFC 5321 5.1; implicit MX, null
 * MX RFC 7505, an address literal as is), every address of each (IPv6
 * first), or the relayhost -- with STARTTLS required there and AUTH PLAIN
 * from relayhost_auth_file.  A session that breaks moves on to the next
 * address; what nobody decided ends temporary.  Permanent at once: a
 * domain that does not exist (NXDOMAIN) or has a null MX.  An exchanger
 * without an address is temporary: someone may be fixing the DNS, and
 * queue_lifetime bounds the wait.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "auth.h"
#include "log.h"
#include "runner.h"

#define RELAY_AUTH_MAX 1024	/* bytes read from relayhost_auth_file */

int relay_parse(const char *spec, unsigned default_port,
		struct relay_dest *out)
{
	const char *host = spec, *end, *port = NULL;
	memset(out, 0, sizeof *out);
	out->port = default_port;
	out->mx_lookup = spec[0] != '[';
	if (spec[0] == '[') {
		host = spec + 1;
		end = strchr(host, ']');
		if (end == NULL)
			return -1;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return -1;
		if (strncasecmp(host, "IPv6:", 5) == 0)
			host += 5;
	} else {
		end = strrchr(spec, ':');
		if (end != NULL)
			port = end + 1;
		else
			end = spec + strlen(spec);
	}
	size_t len = (size_t)(end - host);
	if (len == 0 || len >= sizeof out->host)
		return -1;
	memcpy(out->host, host, len);
	out->host[len] = '\0';
	if (strchr(out->host, ':') != NULL && out->mx_lookup)
		return -1;	/* an IPv6 address needs brackets */
	if (port != NULL) {
		char *pe;
		if (*port < '0' || *port > '9')
			return -1;
		errno = 0;
		unsigned long p = strtoul(port, &pe, 10);
		if (errno != 0 || *pe != '\0' || p == 0 || p > 65535)
			return -1;
		out->port = (unsigned)p;
	}
	/* An address needs no MX lookup, brackets or not. */
	unsigned char ip[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, out->host, ip) == 1 ||
	    inet_pton(AF_INET6, out->host, ip) == 1)
		out->mx_lookup = false;
	return 0;
}

/* The first line of buf: user, then a blank or ':', then the password
 * (which may hold either). */
static int relay_auth_split(char *buf, struct str *user, struct str *pass)
{
	buf[strcspn(buf, "\r\n")] = '\0';
	size_t at = strcspn(buf, " \t:");
	size_t skip = at;
	if (buf[skip] == ':')
		skip++;
	else
		while (buf[skip] == ' ' || buf[skip] == '\t')
			skip++;
	if (at == 0 || buf[at] == '\0' || buf[skip] == '\0')
		return -1;
	str_append_n(user, buf, at);
	str_append(pass, buf + skip);
	return 0;
}

int relay_auth_load(const char *path, struct str *user, struct str *pass,
		    struct str *err)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		str_printf(err, "cannot read relayhost_auth_file %s: %s", path,
			   strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* Like ssh with a private key: a secret others can read is no
	 * secret, and using it would hide the mistake. */
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0 ||
	    (st.st_uid != geteuid() && st.st_uid != 0)) {
		str_printf(err, "relayhost_auth_file %s must be a regular file "
			   "owned by us or root with no group or other "
			   "access (mode %03o): not used", path,
			   (unsigned)(st.st_mode & 0777));
		close(fd);
		return -1;
	}
	char buf[RELAY_AUTH_MAX + 1];
	ssize_t n;
	do
		n = read(fd, buf, RELAY_AUTH_MAX);
	while (n < 0 && errno == EINTR);
	int e = errno;
	close(fd);
	int ret = -1;
	if (n < 0) {
		str_printf(err, "cannot read relayhost_auth_file %s: %s", path,
			   strerror(e));
	} else {
		buf[n] = '\0';
		ret = relay_auth_split(buf, user, pass);
		if (ret < 0)
			str_printf(err, "relayhost_auth_file %s: expected "
				   "\"user password\" or \"user:password\"",
				   path);
	}
	explicit_bzero(buf, sizeof buf);
	return ret;
}

struct destination {
	struct dns_mx_list hosts;
	unsigned port;
	bool require_tls;
	struct str user, pass;	/* AUTH PLAIN when user is set */
	bool use_auth;
};

/* Decide every undecided attempt the same way. */
static void remote_decide_rest(struct attempt *att, size_t n,
			       enum attempt_result res, const char *status,
			       const char *text, const char *relay)
{
	for (size_t i = 0; i < n; i++) {
		if (att[i].result != ATTEMPT_NONE)
			continue;
		attempt_set(&att[i], res, status, "%s", text);
		str_clear(&att[i].relay);
		str_append(&att[i].relay, relay);
	}
}

static struct dns_resolver *remote_dns(struct runner *r)
{
	if (!r->dns_tried) {
		r->dns_tried = true;
		r->dns = dns_open(r->cfg->dns_server, &r->dns_error);
		if (r->dns == NULL)
			log_msg(LOG_ERR, "%s", str_c(&r->dns_error));
	}
	return r->dns;
}

/* RFC 5321 5.1: if we are one of the exchangers, only the more preferred
 * ones may be tried (we are a backup MX).  False when none is left. */
static bool remote_drop_self(const struct config *cfg, struct dns_mx_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcasecmp(l->mx[i].host, cfg->hostname) != 0)
			continue;
		unsigned own = l->mx[i].pref;
		size_t k = 0;
		for (size_t j = 0; j < l->n; j++)
			if (l->mx[j].pref < own)
				l->mx[k++] = l->mx[j];
		l->n = k;
		return k > 0;
	}
	return true;
}

/* The exchangers of name.  0, or -1 with every attempt decided. */
static int remote_lookup(struct runner_msg *m, const char *name,
			 struct destination *d, struct attempt *att, size_t n)
{
	struct str err = STR_INIT;
	struct dns_resolver *dns = remote_dns(m->r);
	int ret = 0;
	if (dns == NULL) {
		str_append(&err, str_c(&m->r->dns_error));
		remote_decide_rest(att, n, ATTEMPT_TEMP, "4.3.5", str_c(&err),
				   "none");
		str_free(&err);
		return -1;
	}
	struct str why = STR_INIT;
	switch (dns_lookup_mx(dns, name, &d->hosts, &why)) {
	case DNS_OK:
		if (remote_drop_self(m->r->cfg, &d->hosts))
			break;
		/* Temporary: a users.tdb we could not read makes one of
		 * our own domains look remote, and that must not bounce. */
		str_printf(&err, "mail for %s loops back to myself",
			   name);
		remote_decide_rest(att, n, ATTEMPT_TEMP, "4.4.6", str_c(&err),
				   "none");
		ret = -1;
		break;
	case DNS_NOTFOUND:
		str_append(&err, str_c(&why));
		remote_decide_rest(att, n, ATTEMPT_PERM, "5.1.2", str_c(&err),
				   "none");
		ret = -1;
		break;
	case DNS_NULLMX:
		str_append(&err, str_c(&why));
		remote_decide_rest(att, n, ATTEMPT_PERM, "5.1.10", str_c(&err),
				   "none");
		ret = -1;
		break;
	default:
		str_append(&err, str_c(&why));
		remote_decide_rest(att, n, ATTEMPT_TEMP, "4.4.3", str_c(&err),
				   "none");
		ret = -1;
		break;
	}
	str_free(&why);
	str_free(&err);
	return ret;
}

/* One host as the whole list (relayhost in brackets, address literal). */
static void remote_single(struct destination *d, const char *host)
{
	d->hosts.n = 1;
	d->hosts.mx[0].pref = 0;
	snprintf(d->hosts.mx[0].host, sizeof d->hosts.mx[0].host, "%s", host);
}

/* Where the relayhost is.  0, or -1 with every attempt decided. */
static int remote_relay(struct runner_msg *m, struct destination *d,
			struct attempt *att, size_t n)
{
	const struct config *cfg = m->r->cfg;
	struct relay_dest rd;
	struct str err = STR_INIT;
	if (relay_parse(cfg->relayhost, cfg->outbound_port, &rd) < 0) {
		str_printf(&err, "relayhost %s is malformed",
			   cfg->relayhost);
		log_msg(LOG_ERR, "%s", str_c(&err));
		remote_decide_rest(att, n, ATTEMPT_TEMP, "4.3.5", str_c(&err),
				   "none");
		str_free(&err);
		return -1;
	}
	d->port = rd.port;
	d->require_tls = true;
	if (cfg->relayhost_auth_file[0] != '\0') {
		struct str why = STR_INIT;
		if (relay_auth_load(cfg->relayhost_auth_file, &d->user,
				    &d->pass, &why) < 0) {
			log_msg(LOG_ERR, "%s", str_c(&why));
			remote_decide_rest(att, n, ATTEMPT_TEMP, "4.7.0",
					   str_c(&why), "none");
			str_free(&why);
			str_free(&err);
			return -1;
		}
		d->use_auth = true;
	}
	str_free(&err);
	if (rd.mx_lookup)
		return remote_lookup(m, rd.host, d, att, n);
	remote_single(d, rd.host);
	return 0;
}

/* "[192.0.2.1]", "[IPv6:2001:db8::1]" (RFC 5321 4.1.3): the address
 * itself.  0, or -1 with every attempt decided. */
static int remote_literal(const char *domain, struct destination *d,
			  struct attempt *att, size_t n)
{
	char host[DNS_NAME_MAX];
	unsigned char ip[sizeof(struct in6_addr)];
	size_t len = strlen(domain);
	const char *text = host;
	bool ok = len >= 3 && domain[len - 1] == ']' &&
		  len - 2 < sizeof host;
	if (ok) {
		memcpy(host, domain + 1, len - 2);
		host[len - 2] = '\0';
		if (strncasecmp(host, "IPv6:", 5) == 0)
			ok = inet_pton(AF_INET6, text = host + 5, ip) == 1;
		else
			ok = inet_pton(AF_INET, host, ip) == 1;
	}
	if (!ok) {
		struct str err = STR_INIT;
		str_printf(&err, "bad address literal %s", domain);
		remote_decide_rest(att, n, ATTEMPT_PERM, "5.1.2", str_c(&err),
				   "none");
		str_free(&err);
		return -1;
	}
	remote_single(d, text);
	return 0;
}

/* The addresses of one exchanger, or why there are none (into *why,
 * *temp telling a failed lookup from a name that does not exist). */
static size_t remote_addrs(struct runner_msg *m, const char *host,
			   struct dns_addr *addrs, struct str *why, bool *temp)
{
	size_t na = 0;
	unsigned char ip[sizeof(struct in6_addr)];
	struct dns_resolver *dns = NULL;
	if (inet_pton(AF_INET, host, ip) != 1 &&
	    inet_pton(AF_INET6, host, ip) != 1) {
		dns = remote_dns(m->r);
		if (dns == NULL) {
			str_append(why, str_c(&m->r->dns_error));
			*temp = true;
			return 0;
		}
	}
	enum dns_result res = dns_lookup_addrs(dns, host, addrs, DNS_MAX_ADDRS,
					       &na, why);
	*temp = res == DNS_TEMPFAIL;
	return res == DNS_OK ? na : 0;
}

/* Try every address of every exchanger until a session decides. */
static void remote_try_hosts(struct runner_msg *m, struct destination *d,
			     struct attempt *att, size_t n)
{
	struct str error = STR_INIT, relay = STR_INIT;
	struct str dns_error = STR_INIT, dns_host = STR_INIT;
	char status[DSN_STATUS_MAX] = "4.4.0";
	bool dns_temp = false, connected = false;
	unsigned tries = 0;

	for (size_t h = 0; h < d->hosts.n && tries < RUNNER_MAX_ADDR_TRIES;
	     h++) {
		const char *host = d->hosts.mx[h].host;
		struct dns_addr addrs[DNS_MAX_ADDRS];
		struct str why = STR_INIT;
		bool temp = false;
		size_t na = remote_addrs(m, host, addrs, &why, &temp);
		if (na == 0) {
			/* Keep the first reason, but a failed lookup
			 * outweighs a name that does not exist. */
			if (dns_error.len == 0 || (temp && !dns_temp)) {
				str_clear(&dns_error);
				str_append(&dns_error, str_c(&why));
				str_clear(&dns_host);
				str_append(&dns_host, host);
			}
			dns_temp |= temp;
			str_free(&why);
			continue;
		}
		str_free(&why);
		for (size_t a = 0; a < na && tries < RUNNER_MAX_ADDR_TRIES;
		     a++, tries++) {
			struct smtpc_target t = {
				.host = host, .addr = &addrs[a],
				.port = d->port, .try_tls = true,
				.require_tls = d->require_tls,
				.auth_user = d->use_auth ? str_c(&d->user)
							 : NULL,
				.auth_pass = d->use_auth ? str_c(&d->pass)
							 : NULL,
			};
			str_clear(&relay);
			str_append(&relay, host);
			str_append_c(&relay, '[');
			dns_addr_format(&addrs[a], &relay);
			str_printf(&relay, "]:%u", d->port);
			str_clear(&error);
			enum smtpc_outcome o = smtpc_deliver(m, &t, att, n,
							     &error, status);
			if (o == SMTPC_TLS_FAILED) {
				/* Opportunistic TLS: a broken TLS stack
				 * must not keep mail out (RFC 7435). */
				log_kv(LOG_NOTICE, "TLS failed, retrying "
				       "without", "QUEUE_ID", m->env.id,
				       "RELAY", str_c(&relay), "TEXT",
				       str_c(&error), NULL);
				t.try_tls = false;
				str_clear(&error);
				o = smtpc_deliver(m, &t, att, n, &error,
						  status);
			}
			connected = true;
			if (o == SMTPC_DONE)
				goto out;
			log_kv(LOG_INFO, "connection failed", "QUEUE_ID",
			       m->env.id, "RELAY", str_c(&relay), "STATUS",
			       status, "TEXT", str_c(&error), NULL);
		}
	}
	if (connected)
		remote_decide_rest(att, n, ATTEMPT_TEMP, status, str_c(&error),
				   str_c(&relay));
	else if (dns_temp)
		remote_decide_rest(att, n, ATTEMPT_TEMP, "4.4.3",
				   str_c(&dns_error), str_c(&dns_host));
	else if (dns_error.len > 0)	/* no address: someone may fix it */
		remote_decide_rest(att, n, ATTEMPT_TEMP, "4.4.4",
				   str_c(&dns_error), str_c(&dns_host));
	else
		remote_decide_rest(att, n, ATTEMPT_TEMP, "4.4.0",
				   "no mail exchanger to try", "none");
out:
	str_free(&error);
	str_free(&relay);
	str_free(&dns_error);
	str_free(&dns_host);
}

void remote_deliver(struct runner_msg *m, struct attempt *att, size_t n,
		    const char *domain)
{
	struct destination d = { .port = m->r->cfg->outbound_port };
	int r;
	if (domain == NULL)
		r = remote_relay(m, &d, att, n);
	else if (domain[0] == '[')
		r = remote_literal(domain, &d, att, n);
	else if (domain[0] == '\0' || !addr_valid_domain(domain)) {
		remote_decide_rest(att, n, ATTEMPT_PERM, "5.1.2",
				   "recipient address has no valid domain",
				   "none");
		r = -1;
	} else
		r = remote_lookup(m, domain, &d, att, n);
	if (r == 0)
		remote_try_hosts(m, &d, att, n);
	str_free_secret(&d.user);
	str_free_secret(&d.pass);
}
