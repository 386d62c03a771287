/*
 * runner_local: queued mail for local mailboxes (a delivery that failed
 * temporarily at SMTP time, a DSN to a local sender, a local alias).
 * Each recipient is resolved through users.tdb again -- users and aliases
 * may have changed while the mail waited -- and the spool file (which has
 * the Return-Path on top already) is copied once and linked into every
 * mailbox, fsynced, as smtp-handler does it, under a name that makes a
 * retry after a crash find the copies already made.  Alias targets elsewhere join the envelope as
 * new remote recipients; a domain that is no longer ours goes remote too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "log.h"
#include "maildir.h"
#include "runner.h"

#define LOCAL_READ_CHUNK 65536

struct local_rcpt {
	struct strlist boxes;	/* the Maildirs' addresses */
	bool resolved;
};

static void local_decide(struct attempt *a, enum attempt_result res,
			 const char *status, const char *text)
{
	attempt_set(a, res, status, "%s", text);
	str_clear(&a->relay);
	str_append(&a->relay, "local");
}

/* Resolve one recipient: its mailboxes, and remote targets into *remote.
 * Leaves the attempt undecided when it is to be delivered here. */
static void local_resolve(struct runner_msg *m, struct userdb *db,
			  struct attempt *a, struct local_rcpt *lr,
			  struct strlist *remote)
{
	struct mailaddr ma;
	if (addr_parse_mailbox(a->address, &ma) != ADDR_OK ||
	    ma.domain[0] == '\0') {
		mailaddr_free(&ma);
		local_decide(a, ATTEMPT_PERM, "5.1.3", "bad recipient address");
		return;
	}
	struct strlist targets = STRLIST_INIT;
	enum userdb_resolve res = userdb_resolve(db, ma.local, ma.domain,
						 &lr->boxes, &targets);
	switch (res) {
	case RESOLVE_OK:
		lr->resolved = true;
		for (size_t i = 0; i < targets.n; i++)
			strlist_add_unique(remote, targets.items[i]);
		if (lr->boxes.n == 0)
			local_decide(a, ATTEMPT_OK, "2.0.0", targets.n > 0
				     ? "forwarded by alias"
				     : "alias without targets");
		break;
	case RESOLVE_NO_DOMAIN:
		/* Not ours any more: deliver it like any remote address. */
		m->env.rcpts[a->index].local = false;
		m->changed = true;
		break;
	case RESOLVE_NO_USER:
		local_decide(a, ATTEMPT_PERM, "5.1.1",
			     "user unknown in local recipient table");
		break;
	case RESOLVE_LOOP:
		local_decide(a, ATTEMPT_PERM, "5.4.6", "alias loop");
		break;
	default:
		local_decide(a, ATTEMPT_TEMP, "4.3.0",
			     "cannot read the user database");
		break;
	}
	strlist_free(&targets);
	mailaddr_free(&ma);
}

/* Copy the queued message into f: as it is, since a spool file starts
 * with the Return-Path a final delivery adds (queue.h); one that lacks it
 * gets it here. */
static int local_write(struct runner_msg *m, struct mailfile *f)
{
	if (m->body_off == 0) {
		struct str rp = STR_INIT;
		str_printf(&rp, "Return-Path: <%s>\n", m->env.sender);
		mailfile_write(f, rp.data, rp.len);
		str_free(&rp);
	}
	char *buf = xmalloc(LOCAL_READ_CHUNK);
	off_t off = 0;
	int ret = 0;
	for (;;) {
		ssize_t n = pread(m->fd, buf, LOCAL_READ_CHUNK, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -1 : 0;
			break;
		}
		mailfile_write(f, buf, (size_t)n);
		off += n;
	}
	free(buf);
	if (ret == 0)
		ret = mailfile_finish(f);
	return ret;
}

/* Open the file in the first mailbox whose Maildir lets us. */
static bool local_open(struct runner_msg *m, struct local_rcpt *lr, size_t n,
		       struct mailfile *f)
{
	struct str path = STR_INIT;
	bool ok = false;
	for (size_t i = 0; i < n && !ok; i++) {
		for (size_t j = 0; j < lr[i].boxes.n && !ok; j++) {
			str_clear(&path);
			maildir_path(m->r->cfg->mail_dir, lr[i].boxes.items[j],
				     &path);
			ok = mailfile_open(f, str_c(&path)) == 0;
			if (!ok)
				log_msg(LOG_ERR, "cannot write in %s/tmp: %s",
					str_c(&path), strerror(errno));
		}
	}
	str_free(&path);
	return ok;
}

/* Link the file into one recipient's mailboxes, each at most once however
 * often this is retried: the name is made of the queue id and the
 * recipient's index, and a mailbox that has it already (a run killed
 * before it could note the delivery) is not given a second copy.  done
 * holds the mailboxes served in this run. */
static void local_link(struct runner_msg *m, struct mailfile *f,
		       struct attempt *a, struct local_rcpt *lr,
		       struct strlist *done)
{
	struct str path = STR_INIT, unique = STR_INIT;
	bool ok = true;
	str_printf(&unique, "Q%sR%zu", m->env.id, a->index);
	for (size_t j = 0; j < lr->boxes.n && ok; j++) {
		const char *box = lr->boxes.items[j];
		if (strlist_contains(done, box))
			continue;	/* one copy per mailbox */
		str_clear(&path);
		maildir_path(m->r->cfg->mail_dir, box, &path);
		int r = mailfile_deliver_once(f, str_c(&path), m->env.arrival,
					      str_c(&unique), NULL);
		if (r == 1)
			log_kv(LOG_NOTICE, "delivered before",
			       "QUEUE_ID", m->env.id, "MAILDIR", str_c(&path),
			       NULL);
		ok = r >= 0;
		if (!ok)
			log_msg(LOG_ERR, "cannot deliver %s to %s: %s",
				m->env.id, str_c(&path), strerror(errno));
	}
	if (ok) {
		for (size_t j = 0; j < lr->boxes.n; j++)
			strlist_add_unique(done, lr->boxes.items[j]);
		local_decide(a, ATTEMPT_OK, "2.0.0", "delivered to maildir");
	} else {
		/* The mailboxes served stay: the retry skips them. */
		local_decide(a, ATTEMPT_TEMP, "4.3.0",
			     "cannot write into the mailbox");
	}
	str_free(&path);
	str_free(&unique);
}

/* Alias targets elsewhere become recipients of this message. */
static void local_add_remote(struct runner_msg *m, const struct strlist *add)
{
	struct queue_envelope *env = &m->env;
	for (size_t i = 0; i < add->n; i++) {
		bool known = false;
		for (size_t j = 0; j < env->n_rcpts && !known; j++)
			known = strcmp(env->rcpts[j].address,
				       add->items[i]) == 0;
		if (known)
			continue;
		if (env->n_rcpts >= RUNNER_MAX_RCPTS) {
			log_msg(LOG_ERR, "%s: too many recipients, alias "
				"target %s dropped", env->id, add->items[i]);
			continue;
		}
		env->rcpts = xrealloc(env->rcpts,
				      (env->n_rcpts + 1) * sizeof *env->rcpts);
		struct queue_rcpt *r = &env->rcpts[env->n_rcpts++];
		memset(r, 0, sizeof *r);
		r->address = xstrdup(add->items[i]);
		r->state = RCPT_PENDING;
		r->next_try = m->now;
		m->changed = true;
	}
}

void local_deliver(struct runner_msg *m, struct attempt *att, size_t n)
{
	struct userdb *db = runner_users(m->r);
	if (db == NULL) {
		for (size_t i = 0; i < n; i++)
			local_decide(&att[i], ATTEMPT_TEMP, "4.3.0",
				     "cannot open the user database");
		return;
	}
	struct local_rcpt *lr = xcalloc(n, sizeof *lr);
	struct strlist remote = STRLIST_INIT, done = STRLIST_INIT;
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		local_resolve(m, db, &att[i], &lr[i], &remote);
		any |= att[i].result == ATTEMPT_NONE && lr[i].boxes.n > 0;
	}
	struct mailfile f;
	bool open = any && local_open(m, lr, n, &f);
	bool written = open && local_write(m, &f) == 0;
	if (open && !written)
		log_msg(LOG_ERR, "cannot write message %s for local delivery: "
			"%s", m->env.id, strerror(errno));
	for (size_t i = 0; i < n; i++) {
		if (att[i].result != ATTEMPT_NONE || lr[i].boxes.n == 0)
			continue;
		if (written)
			local_link(m, &f, &att[i], &lr[i], &done);
		else
			local_decide(&att[i], ATTEMPT_TEMP, "4.3.0",
				     "cannot write into the mailbox");
	}
	if (open)
		mailfile_close(&f);
	local_add_remote(m, &remote);
	for (size_t i = 0; i < n; i++)
		strlist_free(&lr[i].boxes);
	free(lr);
	strlist_free(&remote);
	strlist_free(&done);
}
