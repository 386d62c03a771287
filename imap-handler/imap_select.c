/*
 * imap_select: entering and leaving the SELECTED state: SELECT and EXAMINE
 * (RFC 3501 6.3.1-2) with their untagged data, CLOSE (6.4.2, a silent
 * expunge), UNSELECT (RFC 3691), and turning a sequence-set argument into
 * the messages it names, which every command on the selected folder needs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imap.h"
#include "imap_message.h"

void imap_unselect(struct imap_session *s)
{
	if (s->sel == NULL)
		return;
	imap_message_forget(s);
	imap_folder_close(s->sel);
	free(s->sel);
	free(s->sel_name);
	s->sel = NULL;
	s->sel_name = NULL;
	s->state = IMAP_AUTHENTICATED;
}

/* The untagged data SELECT and EXAMINE owe the client (RFC 3501 6.3.1). */
static void select_data(struct imap_session *s, struct imap_folder *f)
{
	struct str flags = STR_INIT;
	imap_folder_format_all_flags(f, &flags);
	imap_untagged(s, "FLAGS %s", str_c(&flags));
	str_clear(&flags);
	imap_folder_format_permanent_flags(f, &flags);
	imap_untagged(s, "OK [PERMANENTFLAGS %s] Limited", str_c(&flags));
	str_free(&flags);
	imap_untagged(s, "%zu EXISTS", f->count);
	imap_untagged(s, "%u RECENT", f->recent);
	size_t unseen = imap_folder_first_unseen(f);
	if (unseen > 0)
		imap_untagged(s, "OK [UNSEEN %zu] First unseen", unseen);
	imap_untagged(s, "OK [UIDVALIDITY %u] UIDs valid", f->uidvalidity);
	imap_untagged(s, "OK [UIDNEXT %u] Predicted next UID", f->uidnext);
	f->exists_reported = f->count;
	f->recent_reported = f->recent;
}

/* SELECT and EXAMINE (c->name tells which). */
void imap_cmd_select(struct imap_session *s, struct imap_command *c)
{
	bool readonly = strcmp(c->name, "EXAMINE") == 0;
	if (c->argc < 1 || !imap_arg_is_astring(&c->args[0])) {
		imap_bad(s, c, "Syntax: %s mailbox", c->name);
		return;
	}
	/* RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected too */
	imap_unselect(s);
	const char *name = c->args[0].str;
	struct str path = STR_INIT, err = STR_INIT;
	if (imap_mailbox_path(s, name, &path, &err) != 0) {
		imap_no(s, c, "%s", str_c(&err));
		goto out;
	}
	struct imap_folder *f = xcalloc(1, sizeof *f);
	if (imap_folder_open(f, str_c(&path), readonly, &err) != 0) {
		if (errno == ENOENT)
			imap_no(s, c, "[NONEXISTENT] Mailbox doesn't exist: %s",
				name);
		else
			imap_no(s, c, "[UNAVAILABLE] Cannot open mailbox, try again later");
		free(f);
		goto out;
	}
	select_data(s, f);
	s->sel = f;
	s->sel_name = xstrdup(name);
	s->state = IMAP_SELECTED;
	imap_ok(s, c, "[%s] %s completed", readonly ? "READ-ONLY" : "READ-WRITE",
		c->name);
out:
	str_free(&path);
	str_free(&err);
}

/* CLOSE expunges silently (no EXPUNGE responses) unless read-only. */
void imap_cmd_close(struct imap_session *s, struct imap_command *c)
{
	if (!s->sel->readonly) {
		long n = imap_folder_expunge(s->sel, NULL, NULL, true);
		if (n > 0)
			s->expunged += (unsigned long)n;
	}
	imap_unselect(s);
	imap_ok(s, c, "Close completed");
}

void imap_cmd_unselect(struct imap_session *s, struct imap_command *c)
{
	imap_unselect(s);
	imap_ok(s, c, "Unselect completed");
}

/* Append to the index list, growing it. */
static void push_index(size_t **idx, size_t *n, size_t *cap, size_t i)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*idx = xrealloc(*idx, *cap * sizeof **idx);
	}
	(*idx)[(*n)++] = i;
}

/* UIDs: ranges are ascending after normalising, and so is the view, so one
 * walk over both does it. */
static void resolve_uids(const struct imap_folder *f, struct imap_seqset *set,
			 size_t **idx, size_t *n)
{
	size_t cap = 0, i = 0;
	uint32_t star = f->count ? f->msgs[f->count - 1].uid : 0;
	if (star == 0)
		return;
	imap_seqset_normalize(set, star);
	for (size_t r = 0; r < set->n && i < f->count; r++) {
		while (i < f->count && f->msgs[i].uid < set->r[r].lo)
			i++;
		while (i < f->count && f->msgs[i].uid <= set->r[r].hi)
			push_index(idx, n, &cap, i++);
	}
}

static void resolve_seqs(const struct imap_folder *f, struct imap_seqset *set,
			 size_t **idx, size_t *n)
{
	size_t cap = 0;
	imap_seqset_normalize(set, (uint32_t)f->count);
	for (size_t r = 0; r < set->n; r++)
		for (uint64_t q = set->r[r].lo; q <= set->r[r].hi; q++)
			push_index(idx, n, &cap, (size_t)q - 1);
}

int imap_resolve_set(struct imap_session *s, struct imap_command *c,
		     const struct imap_arg *arg, size_t **idx, size_t *n)
{
	struct imap_seqset set = { 0 };
	*idx = NULL;
	*n = 0;
	if (arg->type != IMAP_ARG_ATOM ||
	    imap_seqset_parse(arg->str, &set) != 0) {
		imap_bad(s, c, "Invalid sequence set");
		return -1;
	}
	const struct imap_folder *f = s->sel;
	if (c->uid) {
		resolve_uids(f, &set, idx, n);
	} else if (f->count == 0 || imap_seqset_beyond(&set, (uint32_t)f->count)) {
		imap_seqset_free(&set);
		imap_bad(s, c, "Invalid message sequence number");
		return -1;
	} else {
		resolve_seqs(f, &set, idx, n);
	}
	imap_seqset_free(&set);
	return 0;
}
