/*
 * imap_store: the commands that change messages: STORE (RFC 3501 6.4.6),
 * COPY (6.4.7) with COPYUID (UIDPLUS, RFC 4315), MOVE (RFC 6851),
 * EXPUNGE and UID EXPUNGE (6.4.3, RFC 4315), and APPEND (6.3.11) with
 * APPENDUID.  The storage work is imap_folder's; this file reads the
 * arguments and writes the replies.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "imap.h"
#include "imap_folder.h"
#include "maildir.h"

/* The reply for a storage failure: disk full is the client's business
 * (RFC 5530 OVERQUOTA), anything else is in the log. */
static void reply_failure(struct imap_session *s, struct imap_command *c,
			  int err)
{
	if (err == ENOSPC || err == EDQUOT)
		imap_no(s, c, "[OVERQUOTA] Not enough disk space");
	else
		imap_no(s, c, "[SERVERBUG] Internal error, see the server log");
}

/* ---- STORE ---- */

enum store_mode { STORE_REPLACE, STORE_ADD, STORE_REMOVE };

/* "+FLAGS.SILENT" etc.; false if it is none of them. */
static bool parse_store_item(const char *item, enum store_mode *mode,
			     bool *silent)
{
	*mode = STORE_REPLACE;
	if (*item == '+')
		*mode = STORE_ADD;
	else if (*item == '-')
		*mode = STORE_REMOVE;
	if (*mode != STORE_REPLACE)
		item++;
	*silent = false;
	if (strcasecmp(item, "FLAGS.SILENT") == 0)
		*silent = true;
	else if (strcasecmp(item, "FLAGS") != 0)
		return false;
	return true;
}

/* The flag arguments: one list, or flags written without parentheses. */
static void flag_args(struct imap_command *c, size_t first,
		      const struct imap_arg **flags, size_t *n)
{
	if (c->argc == first + 1 && c->args[first].type == IMAP_ARG_LIST) {
		*flags = c->args[first].list;
		*n = c->args[first].count;
	} else {
		*flags = &c->args[first];
		*n = c->argc - first;
	}
}

/* The flags and keywords a STORE names.  0, or -1 after replying. */
static int store_flags(struct imap_session *s, struct imap_command *c,
		       enum store_mode mode, uint8_t *flags,
		       uint32_t *keywords)
{
	const struct imap_arg *list;
	size_t n;
	flag_args(c, 2, &list, &n);
	*flags = 0;
	*keywords = 0;
	for (size_t j = 0; j < n; j++) {
		if (list[j].type != IMAP_ARG_ATOM) {
			imap_bad(s, c, "Invalid flag list");
			return -1;
		}
		const char *name = list[j].str;
		uint8_t bit = 0;
		int kw = -1;
		int r = imap_folder_flag(s->sel, name, mode != STORE_REMOVE,
					 &bit, &kw);
		if (r == 1) {
			*flags |= bit;
		} else if (r == 2) {
			*keywords |= 1u << kw;
		} else if (r == 0) {
			/* \Recent cannot be stored (RFC 3501 2.3.2): ignored,
			 * as is removing a keyword nobody has */
			if (strcasecmp(name, "\\Recent") == 0 ||
			    (mode == STORE_REMOVE && name[0] != '\\'))
				continue;
			imap_bad(s, c, "Invalid flag %s", name[0] == '\\' ?
				 "(unknown system flag)" : "name");
			return -1;
		} else if (s->sel->n_keywords >= IMAP_MAX_KEYWORDS) {
			imap_no(s, c, "[LIMIT] Too many keywords");
			return -1;
		} else {
			reply_failure(s, c, errno);
			return -1;
		}
	}
	return 0;
}

static void store_fetch_line(struct imap_session *s, struct imap_command *c,
			     size_t i)
{
	struct str fl = STR_INIT;
	imap_folder_format_flags(s->sel, i, &fl);
	if (c->uid)
		imap_untagged(s, "%zu FETCH (UID %u FLAGS %s)", i + 1,
			      s->sel->msgs[i].uid, str_c(&fl));
	else
		imap_untagged(s, "%zu FETCH (FLAGS %s)", i + 1, str_c(&fl));
	str_free(&fl);
}

void imap_cmd_store(struct imap_session *s, struct imap_command *c)
{
	enum store_mode mode;
	bool silent;
	if (c->argc < 3 || c->args[1].type != IMAP_ARG_ATOM ||
	    !parse_store_item(c->args[1].str, &mode, &silent)) {
		imap_bad(s, c, "Syntax: STORE set (+|-)FLAGS[.SILENT] (flags)");
		return;
	}
	struct imap_folder *f = s->sel;
	if (f->readonly) {
		imap_no(s, c, "Mailbox is read-only");
		return;
	}
	size_t *idx = NULL, n = 0;
	if (imap_resolve_set(s, c, &c->args[0], &idx, &n) != 0)
		return;
	uint8_t flags;
	uint32_t keywords;
	unsigned defined = f->n_keywords;
	if (store_flags(s, c, mode, &flags, &keywords) != 0) {
		free(idx);
		return;
	}
	/* a new keyword: the client hears the new FLAGS before a FETCH
	 * shows it (the update writes them, and nothing is expunged) */
	if (f->n_keywords != defined)
		imap_folder_update(f, &s->io, false);
	bool gone = false, failed = false;
	int err = 0;
	for (size_t j = 0; j < n && !failed; j++) {
		size_t i = idx[j];
		struct imap_msg *m = &f->msgs[i];
		if (m->state & IMAP_MSG_GONE) {
			gone = true;
			continue;
		}
		uint8_t nf = m->flags & IMAP_FLAGS_STORABLE;
		uint32_t nk = m->keywords;
		switch (mode) {
		case STORE_REPLACE: nf = flags; nk = keywords; break;
		case STORE_ADD: nf |= flags; nk |= keywords; break;
		case STORE_REMOVE: nf &= (uint8_t)~flags; nk &= ~keywords;
			break;
		}
		if (nf != (m->flags & IMAP_FLAGS_STORABLE) || nk != m->keywords) {
			if (imap_folder_set_flags(f, i, nf, nk) != 0) {
				if (errno == ENOENT) {
					gone = true;
					continue;
				}
				err = errno;
				failed = true;
				break;
			}
			s->stored++;
		}
		if (!silent)
			store_fetch_line(s, c, i);
	}
	free(idx);
	if (!failed && imap_folder_sync_flags(f) != 0) {
		err = errno;
		failed = true;
	}
	if (failed)
		reply_failure(s, c, err);
	else if (gone && !c->uid)
		imap_no(s, c, "[EXPUNGEISSUED] Some of the requested messages "
			"no longer exist");
	else
		imap_ok(s, c, "Store completed");
}

/* ---- COPY and MOVE ---- */

/* The keyword names of message i, for a destination with its own table:
 * pointers into f's table, valid while nothing reloads it. */
static size_t msg_keyword_names(const struct imap_folder *f, size_t i,
				const char **names)
{
	size_t n = 0;
	for (unsigned k = 0; k < f->n_keywords; k++)
		if (f->msgs[i].keywords & (1u << k))
			names[n++] = f->keywords[k];
	return n;
}

/* Add message i to the destination, finding its file again if another
 * session renamed it.  0, or -1 with errno (ENOENT: it is gone). */
static int copy_one(struct imap_folder *f, size_t i,
		    struct imap_folder_add *a, uint32_t *uid)
{
	const struct imap_msg *m = &f->msgs[i];
	const char *kw[IMAP_MAX_KEYWORDS];
	size_t nk = msg_keyword_names(f, i, kw);
	struct str path = STR_INIT;
	int ret = -1;
	for (int attempt = 0; attempt < 2; attempt++) {
		str_clear(&path);
		imap_folder_msg_path(f, i, &path);
		ret = imap_folder_add_file(a, str_c(&path), m->size,
					   m->flags & IMAP_FLAGS_STORABLE, kw,
					   nk, uid);
		if (ret == 0 || errno != ENOENT || attempt == 1)
			break;
		/* opening finds a renamed file again and updates the name */
		int fd = imap_folder_msg_open(f, i);
		if (fd < 0)
			break;
		close(fd);
	}
	int saved = errno;
	str_free(&path);
	errno = saved;
	return ret;
}

/* The destination of COPY/MOVE/APPEND could not be opened. */
static void reply_no_dest(struct imap_session *s, struct imap_command *c,
			  int err)
{
	if (err == ENOENT || err == ENOTDIR)
		imap_no(s, c, "[TRYCREATE] Mailbox doesn't exist");
	else
		imap_no(s, c, "[UNAVAILABLE] Cannot open mailbox, try again "
			"later");
}

/* MOVE's second half: expunge the copied messages by UID. */
static int move_expunge(struct imap_session *s, const uint32_t *uids,
			size_t n)
{
	struct imap_seqset set = { 0 };
	set.r = xmalloc((n + 1) * sizeof *set.r);
	set.n = set.cap = n;
	for (size_t j = 0; j < n; j++)
		set.r[j].lo = set.r[j].hi = uids[j];
	long r = imap_folder_expunge(s->sel, &s->io, &set, false);
	free(set.r);
	if (r > 0)
		s->expunged += (unsigned long)r;
	return r < 0 ? -1 : 0;
}

static void copy_or_move(struct imap_session *s, struct imap_command *c,
			 bool move)
{
	const char *what = move ? "Move" : "Copy";
	const char *name = c->argc == 2 ? imap_arg_astring(&c->args[1]) : NULL;
	if (name == NULL) {
		imap_bad(s, c, "Syntax: %s set mailbox", c->name);
		return;
	}
	struct imap_folder *f = s->sel;
	if (move && f->readonly) {
		imap_no(s, c, "Mailbox is read-only");
		return;
	}
	struct str path = STR_INIT, err = STR_INIT;
	size_t *idx = NULL, n = 0;
	uint32_t *src = NULL, *dst = NULL;
	size_t done = 0;
	if (imap_mailbox_path(s, name, &path, &err) != 0) {
		imap_no(s, c, "%s", str_c(&err));
		goto out;
	}
	if (imap_resolve_set(s, c, &c->args[0], &idx, &n) != 0)
		goto out;
	if (n == 0) {
		imap_ok(s, c, "%s completed", what);	/* nothing to do */
		goto out;
	}
	struct imap_folder_add a;
	if (imap_folder_add_begin(&a, f, str_c(&path), &err) != 0) {
		reply_no_dest(s, c, errno);
		goto out;
	}
	src = xmalloc(n * sizeof *src);
	dst = xmalloc(n * sizeof *dst);
	for (size_t j = 0; j < n; j++) {
		size_t i = idx[j];
		if ((f->msgs[i].state & IMAP_MSG_GONE) ||
		    copy_one(f, i, &a, &dst[done]) != 0) {
			int e = (f->msgs[i].state & IMAP_MSG_GONE) ? ENOENT :
				errno;
			imap_folder_add_abort(&a);
			if (e == ENOENT)
				imap_no(s, c, "[EXPUNGEISSUED] Some of the "
					"requested messages no longer exist");
			else
				reply_failure(s, c, e);
			goto out;
		}
		src[done++] = f->msgs[i].uid;
	}
	uint32_t validity = 0;
	if (imap_folder_add_commit(&a, &validity) != 0) {
		reply_failure(s, c, errno);
		goto out;
	}
	struct str code = STR_INIT;
	str_printf(&code, "COPYUID %u ", validity);
	imap_seqset_format_list(src, done, &code);
	str_append_c(&code, ' ');
	imap_seqset_format_list(dst, done, &code);
	if (!move) {
		imap_ok(s, c, "[%s] Copy completed", str_c(&code));
	} else {
		imap_untagged(s, "OK [%s] Moved", str_c(&code));
		if (move_expunge(s, src, done) != 0)
			imap_no(s, c, "[SERVERBUG] Copied, but not all "
				"originals could be removed");
		else
			imap_ok(s, c, "Move completed");
	}
	str_free(&code);
out:
	free(idx);
	free(src);
	free(dst);
	str_free(&path);
	str_free(&err);
}

void imap_cmd_copy(struct imap_session *s, struct imap_command *c)
{
	copy_or_move(s, c, false);
}

void imap_cmd_move(struct imap_session *s, struct imap_command *c)
{
	copy_or_move(s, c, true);
}

/* ---- EXPUNGE ---- */

void imap_cmd_expunge(struct imap_session *s, struct imap_command *c)
{
	struct imap_seqset set = { 0 };
	if (c->uid ? (c->argc != 1 || c->args[0].type != IMAP_ARG_ATOM ||
		      imap_seqset_parse(c->args[0].str, &set) != 0)
		   : c->argc != 0) {
		imap_seqset_free(&set);
		imap_bad(s, c, c->uid ? "Syntax: UID EXPUNGE set" :
			 "Syntax: EXPUNGE");
		return;
	}
	if (s->sel->readonly) {
		imap_seqset_free(&set);
		imap_no(s, c, "Mailbox is read-only");
		return;
	}
	long n = imap_folder_expunge(s->sel, &s->io, c->uid ? &set : NULL,
				     true);
	int err = errno;
	imap_seqset_free(&set);
	if (n < 0) {
		reply_failure(s, c, err);
		return;
	}
	s->expunged += (unsigned long)n;
	imap_ok(s, c, "Expunge completed");
}

/* ---- APPEND ---- */

#define APPEND_FLAGS_MAX 64

struct append_args {
	const char *mailbox;
	const struct imap_arg *message;
	uint8_t flags;
	const char *keywords[IMAP_MAX_KEYWORDS];
	size_t n_keywords;
	int64_t date;
};

static bool keyword_atom(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > IMAP_KEYWORD_MAX)
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch <= 0x20 || ch >= 0x7f || strchr("(){%*\"\\]", ch))
			return false;
	}
	return true;
}

static int append_flag(struct append_args *aa, const char *name)
{
	static const struct {
		const char *name;
		uint8_t bit;
	} sys[] = {
		{ "\\Seen", IMAP_FLAG_SEEN }, { "\\Answered", IMAP_FLAG_ANSWERED },
		{ "\\Flagged", IMAP_FLAG_FLAGGED },
		{ "\\Deleted", IMAP_FLAG_DELETED }, { "\\Draft", IMAP_FLAG_DRAFT },
	};
	if (name[0] == '\\') {
		for (size_t k = 0; k < sizeof sys / sizeof sys[0]; k++) {
			if (strcasecmp(name, sys[k].name) == 0) {
				aa->flags |= sys[k].bit;
				return 0;
			}
		}
		return strcasecmp(name, "\\Recent") == 0 ? 0 : -1;
	}
	if (!keyword_atom(name))
		return -1;
	for (size_t k = 0; k < aa->n_keywords; k++)
		if (strcasecmp(aa->keywords[k], name) == 0)
			return 0;
	if (aa->n_keywords < IMAP_MAX_KEYWORDS)
		aa->keywords[aa->n_keywords++] = name;
	return 0;
}

/* APPEND mailbox [(flags)] [date-time] message.  0, or -1 after BAD. */
static int parse_append(struct imap_session *s, struct imap_command *c,
			struct append_args *aa)
{
	memset(aa, 0, sizeof *aa);
	aa->date = (int64_t)time(NULL);
	if (c->argc < 2 || c->argc > 4 ||
	    (aa->mailbox = imap_arg_astring(&c->args[0])) == NULL ||
	    !imap_arg_is_string(&c->args[c->argc - 1])) {
		imap_bad(s, c, "Syntax: APPEND mailbox [(flags)] [date-time] "
			 "literal");
		return -1;
	}
	aa->message = &c->args[c->argc - 1];
	bool have_flags = false, have_date = false;
	for (size_t k = 1; k + 1 < c->argc; k++) {
		const struct imap_arg *a = &c->args[k];
		if (a->type == IMAP_ARG_LIST && !have_flags && !have_date) {
			have_flags = true;
			for (size_t j = 0; j < a->count; j++) {
				if (a->list[j].type != IMAP_ARG_ATOM ||
				    j >= APPEND_FLAGS_MAX ||
				    append_flag(aa, a->list[j].str) != 0) {
					imap_bad(s, c, "Invalid flag list");
					return -1;
				}
			}
		} else if (a->type == IMAP_ARG_QUOTED && !have_date) {
			have_date = true;
			if (imap_parse_datetime(a->str, &aa->date) != 0) {
				imap_bad(s, c, "Invalid date-time");
				return -1;
			}
		} else {
			imap_bad(s, c, "Syntax: APPEND mailbox [(flags)] "
				 "[date-time] literal");
			return -1;
		}
	}
	return 0;
}

/*
 * Write the message with LF line ends: each CR LF pair loses its CR, a
 * lone CR or LF stays.  The mailfile counts every LF, but a reader serves
 * a LF that follows a CR as it is (only lone LFs become CRLF), so such
 * LFs ("\r\r\n" sent) are taken off the count: ",W=" then equals the size
 * the message is served with.
 */
static void write_lf_text(struct mailfile *mf, const char *data, size_t len)
{
	size_t start = 0;
	uint64_t cr_lf = 0;
	for (const char *p = data;
	     (p = memchr(p, '\r', len - (size_t)(p - data))) != NULL; p++) {
		size_t j = (size_t)(p - data);
		if (j + 1 >= len)
			break;
		if (data[j + 1] != '\n')
			continue;
		mailfile_write(mf, data + start, j - start);
		start = j + 1;
		if (j > 0 && data[j - 1] == '\r')
			cr_lf++;
	}
	mailfile_write(mf, data + start, len - start);
	mf->newlines -= cr_lf;
}

void imap_cmd_append(struct imap_session *s, struct imap_command *c)
{
	struct append_args aa;
	if (parse_append(s, c, &aa) != 0)
		return;
	if (aa.message->len == 0) {
		imap_no(s, c, "Can't save a zero byte message");
		return;
	}
	if (aa.message->len > s->cfg->message_size_limit) {
		imap_no(s, c, "[TOOBIG] Message too large");
		return;
	}
	struct str path = STR_INIT, err = STR_INIT;
	struct mailfile mf;
	memset(&mf, 0, sizeof mf);
	mf.fd = -1;
	if (imap_mailbox_path(s, aa.mailbox, &path, &err) != 0) {
		imap_no(s, c, "%s", str_c(&err));
		goto out;
	}
	/* the data first, so no database lock is held while it is written */
	if (mailfile_open(&mf, str_c(&path)) != 0) {
		reply_no_dest(s, c, errno);
		goto out;
	}
	write_lf_text(&mf, aa.message->str, aa.message->len);
	if (mailfile_finish(&mf) != 0) {
		reply_failure(s, c, errno);
		goto out;
	}
	struct imap_folder_add a;
	struct imap_folder *sel = s->state == IMAP_SELECTED ? s->sel : NULL;
	if (imap_folder_add_begin(&a, sel, str_c(&path), &err) != 0) {
		reply_no_dest(s, c, errno);
		goto out;
	}
	uint32_t uid = 0, validity = 0;
	if (imap_folder_add_mailfile(&a, &mf, aa.flags, aa.keywords,
				     aa.n_keywords, aa.date, &uid) != 0) {
		int e = errno;
		imap_folder_add_abort(&a);
		reply_failure(s, c, e);
		goto out;
	}
	if (imap_folder_add_commit(&a, &validity) != 0) {
		reply_failure(s, c, errno);
		goto out;
	}
	s->appended++;
	imap_ok(s, c, "[APPENDUID %u %u] Append completed", validity, uid);
out:
	if (mf.fd >= 0)
		mailfile_close(&mf);
	str_free(&path);
	str_free(&err);
}
