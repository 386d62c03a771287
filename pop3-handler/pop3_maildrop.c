/*
 * pop3_maildrop: the user's maildrop in pop3-handler: the exclusive lock
 * and the listing taken at login, the TRANSACTION commands (STAT, LIST,
 * UIDL, RETR, TOP, DELE, RSET, NOOP) and UPDATE after QUIT.
 *
 * The maildrop is the Maildir INBOX, new/ and cur/ together, as listed at
 * login: mail delivered later is neither shown nor deleted by the session.
 * DELE only marks.  UPDATE (QUIT in TRANSACTION) unlinks the marked files,
 * then moves every message RETR sent whole to cur/ with the S flag, then
 * fsyncs new/ and cur/, and only then says +OK.  TOP marks nothing, even
 * for the whole message: fetchmail fetches with "TOP n 99999999" in keep
 * mode precisely so that the mail stays unseen for other clients.  Nothing changes on disk
 * before UPDATE, so a dropped connection, a timeout or a crash deletes
 * nothing and leaves new mail in new/; a rename is atomic, so a crash in
 * UPDATE leaves each message in either its old or its new place.
 *
 * Messages go out with CRLF line ends (the files have LF), byte-stuffed;
 * LIST/STAT sizes are the CRLF sizes (",W=").  UIDL is the Maildir unique
 * name's base (the part before ':'), the same in every session and for
 * Dovecot, so clients that leave mail on the server never fetch it twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"
#include "pop3.h"

#define SEND_BUF_SIZE 16384
#define UIDL_MAX 70		/* RFC 1939 7: 1 to 70 characters */

static void log_maildrop(struct pop3_session *s, const char *what,
			 const char *detail)
{
	log_kv(LOG_ERR, what, "PEER", s->peer[0] ? s->peer : NULL,
	       "USER", s->auth_user, "ERROR", detail, NULL);
}

/* flock() the lock file in the Maildir: the lock belongs to the open file,
 * so it dies with the process however it ends.  1 locked, 0 held by
 * another session, -1 error (logged). */
static int maildrop_lock(struct pop3_session *s)
{
	struct str path = STR_INIT;
	str_printf(&path, "%s/" POP3_LOCK_FILE, str_c(&s->maildir));
	int fd = open(str_c(&path), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
		      O_NOCTTY, 0600);
	int ret = -1;
	if (fd < 0) {
		str_printf(&path, ": %s", strerror(errno));
		log_maildrop(s, "cannot open maildrop lock", str_c(&path));
	} else if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		s->lock_fd = fd;
		ret = 1;
	} else if (errno == EWOULDBLOCK) {
		close(fd);
		ret = 0;
	} else {
		str_printf(&path, ": %s", strerror(errno));
		log_maildrop(s, "cannot lock maildrop", str_c(&path));
		close(fd);
	}
	str_free(&path);
	return ret;
}

void pop3_maildrop_close(struct pop3_session *s)
{
	maildir_list_free(&s->list);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	s->lock_fd = -1;
}

static void count_live(struct pop3_session *s)
{
	s->live_count = 0;
	s->live_size = 0;
	for (size_t i = 0; i < s->list.count; i++) {
		if (s->list.msgs[i].flags & POP3_MSG_DELETED)
			continue;
		s->live_count++;
		s->live_size += s->list.msgs[i].size;
	}
}

bool pop3_maildrop_open(struct pop3_session *s)
{
	str_clear(&s->maildir);
	maildir_path(s->cfg->mail_dir, s->auth_user, &s->maildir);
	int locked = maildrop_lock(s);
	if (locked == 0) {
		log_kv(LOG_NOTICE, "maildrop in use", "PEER",
		       s->peer[0] ? s->peer : NULL, "USER", s->auth_user, NULL);
		pop3_err_nocount(s, "[IN-USE] maildrop locked: another session is active");
		return false;
	}
	if (locked < 0) {
		pop3_err_nocount(s, "[SYS/TEMP] Cannot open the maildrop, try again later");
		return false;
	}
	struct str err = STR_INIT;
	if (maildir_list_scan(&s->list, str_c(&s->maildir), POP3_MAX_MESSAGES,
			      &err) != 0) {
		log_maildrop(s, "cannot list maildrop", str_c(&err));
		str_free(&err);
		pop3_maildrop_close(s);
		pop3_err_nocount(s, "[SYS/TEMP] Cannot open the maildrop, try again later");
		return false;
	}
	str_free(&err);
	count_live(s);
	s->state = POP3_TRANSACTION;
	pop3_ok(s, "maildrop has %zu messages (%" PRIu64 " octets)",
		s->live_count, s->live_size);
	return true;
}

/* Message number n as an index into the listing; replies and returns -1
 * when there is no such (undeleted) message. */
static long msg_index(struct pop3_session *s, unsigned long n)
{
	if (n == 0 || n > s->list.count) {
		pop3_err(s, "No such message");
		return -1;
	}
	if (s->list.msgs[n - 1].flags & POP3_MSG_DELETED) {
		pop3_err(s, "Message %lu is deleted", n);
		return -1;
	}
	return (long)(n - 1);
}

/* The UIDL of message i: the unique name's base when it is a valid
 * unique-id (RFC 1939 7: 1-70 characters 0x21-0x7E), else a stable hash of
 * it (names made by other software can be longer). */
static void msg_uid(struct pop3_session *s, size_t i, char out[UIDL_MAX + 1])
{
	const char *name = maildir_msg_name(&s->list, i);
	size_t len = s->list.msgs[i].base_len;
	bool ok = len > 0 && len <= UIDL_MAX;
	for (size_t j = 0; ok && j < len; j++)
		ok = name[j] >= 0x21 && name[j] <= 0x7e;
	if (ok) {
		memcpy(out, name, len);
		out[len] = '\0';
		return;
	}
	uint64_t h = 0xcbf29ce484222325ULL;	/* FNV-1a */
	for (size_t j = 0; j < len; j++) {
		h ^= (unsigned char)name[j];
		h *= 0x100000001b3ULL;
	}
	snprintf(out, UIDL_MAX + 1, "H%016" PRIx64, h);
}

static void cmd_list(struct pop3_session *s, const struct pop3_command *c,
		     bool uidl)
{
	char uid[UIDL_MAX + 1];
	if (c->argc == 1) {
		long i = msg_index(s, c->num[0]);
		if (i < 0)
			return;
		if (uidl) {
			msg_uid(s, (size_t)i, uid);
			pop3_ok(s, "%lu %s", c->num[0], uid);
		} else {
			pop3_ok(s, "%lu %" PRIu64, c->num[0], s->list.msgs[i].size);
		}
		return;
	}
	if (uidl)
		pop3_ok(s, "Unique-ID listing follows");
	else
		pop3_ok(s, "%zu messages (%" PRIu64 " octets)", s->live_count,
			s->live_size);
	for (size_t i = 0; i < s->list.count; i++) {
		if (s->list.msgs[i].flags & POP3_MSG_DELETED)
			continue;
		if (uidl) {
			msg_uid(s, i, uid);
			pop3_line(s, "%zu %s", i + 1, uid);
		} else {
			pop3_line(s, "%zu %" PRIu64, i + 1, s->list.msgs[i].size);
		}
	}
	pop3_end(s);
}

/* Turning a Maildir file into POP3 multi-line data: LF -> CRLF (a CRLF in
 * the file stays as is), a '.' starting a line doubled, and for TOP the
 * header plus body_lines lines of the body. */
struct sender {
	struct stream *io;
	bool bol;		/* at the start of a line */
	bool cr;		/* the last byte of the line so far was CR */
	size_t line_len;	/* bytes of the current line so far */
	bool header;		/* still in the header (TOP) */
	bool top;
	unsigned long body_left;	/* TOP: body lines still to send */
	bool done;
};

/* A whole line ended: follow the header/body split for TOP. */
static void sender_end_line(struct sender *o)
{
	bool empty = o->line_len == 0 || (o->line_len == 1 && o->cr);
	if (o->header) {
		if (empty) {
			o->header = false;
			if (o->top && o->body_left == 0)
				o->done = true;
		}
	} else if (o->top && --o->body_left == 0) {
		o->done = true;
	}
	o->bol = true;
	o->cr = false;
	o->line_len = 0;
}

static void sender_chunk(struct sender *o, const char *buf, size_t n)
{
	size_t pos = 0;
	while (pos < n && !o->done) {
		if (o->bol && buf[pos] == '.')
			stream_write(o->io, ".", 1);
		o->bol = false;
		const char *nl = memchr(buf + pos, '\n', n - pos);
		size_t len = nl ? (size_t)(nl - (buf + pos)) : n - pos;
		if (len > 0) {
			o->cr = buf[pos + len - 1] == '\r';
			o->line_len += len;
		}
		if (nl == NULL) {
			stream_write(o->io, buf + pos, len);
			return;
		}
		stream_write(o->io, buf + pos, len);
		if (o->cr)
			stream_write(o->io, "\n", 1);
		else
			stream_write(o->io, "\r\n", 2);
		pos += len + 1;
		sender_end_line(o);
	}
}

/* Send the file on fd as the data of a RETR/TOP reply.  false on a read
 * error: the reply is half sent, so the caller can only hang up. */
static bool send_message(struct pop3_session *s, int fd, bool top,
			 unsigned long body_lines)
{
	static char buf[SEND_BUF_SIZE];
	struct sender o = {
		.io = &s->io, .bol = true, .header = true, .top = top,
		.body_left = body_lines,
	};
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (!o.done && s->io.status == STREAM_OK) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		if (n == 0)
			break;
		sender_chunk(&o, buf, (size_t)n);
	}
	if (!o.bol)	/* no newline at the end of the file */
		stream_write(&s->io, "\r\n", 2);
	pop3_end(s);
	return true;
}

static void cmd_retr(struct pop3_session *s, const struct pop3_command *c,
		     bool top)
{
	long i = msg_index(s, c->num[0]);
	if (i < 0)
		return;
	int fd = maildir_msg_open(&s->list, (size_t)i);
	if (fd < 0) {
		if (errno == ENOENT) {
			pop3_err_nocount(s, "Message %lu was removed by another client",
					 c->num[0]);
		} else {
			log_maildrop(s, "cannot open message", strerror(errno));
			pop3_err_nocount(s, "[SYS/TEMP] Cannot read message %lu",
					 c->num[0]);
		}
		return;
	}
	if (top)
		pop3_ok(s, "Top of message %lu follows", c->num[0]);
	else
		pop3_ok(s, "%" PRIu64 " octets", s->list.msgs[i].size);
	bool ok = send_message(s, fd, top, top ? c->num[1] : 0);
	int saved = errno;
	close(fd);
	if (!ok) {
		log_maildrop(s, "cannot read message", strerror(saved));
		s->io.status = STREAM_ERROR;
		pop3_exit(s, "read error");
	}
	if (s->io.status != STREAM_OK)
		pop3_exit(s, "lost connection");
	if (top)
		s->tops++;
	else if (!(s->list.msgs[i].flags & POP3_MSG_RETRIEVED)) {
		s->list.msgs[i].flags |= POP3_MSG_RETRIEVED;
		s->retrieved++;
	}
}

static void cmd_dele(struct pop3_session *s, const struct pop3_command *c)
{
	long i = msg_index(s, c->num[0]);
	if (i < 0)
		return;
	s->list.msgs[i].flags |= POP3_MSG_DELETED;
	s->live_count--;
	s->live_size -= s->list.msgs[i].size;
	pop3_ok(s, "Message %lu deleted", c->num[0]);
}

static void cmd_rset(struct pop3_session *s)
{
	for (size_t i = 0; i < s->list.count; i++)
		s->list.msgs[i].flags &= (uint8_t)~POP3_MSG_DELETED;
	count_live(s);
	pop3_ok(s, "maildrop has %zu messages (%" PRIu64 " octets)",
		s->live_count, s->live_size);
}

void pop3_transaction(struct pop3_session *s, const struct pop3_command *c)
{
	switch (c->verb) {
	case POP3_STAT:
		pop3_ok(s, "%zu %" PRIu64, s->live_count, s->live_size);
		break;
	case POP3_LIST:
		cmd_list(s, c, false);
		break;
	case POP3_UIDL:
		cmd_list(s, c, true);
		break;
	case POP3_RETR:
		cmd_retr(s, c, false);
		break;
	case POP3_TOP:
		cmd_retr(s, c, true);
		break;
	case POP3_DELE:
		cmd_dele(s, c);
		break;
	case POP3_RSET:
		cmd_rset(s);
		break;
	case POP3_NOOP:
		pop3_ok(s, "%s", "");
		break;
	case POP3_QUIT:
		pop3_update(s);
	default:
		pop3_err(s, "Command not valid after login");
		break;
	}
}

void pop3_update(struct pop3_session *s)
{
	unsigned failed = 0;
	for (size_t i = 0; i < s->list.count; i++) {
		if (!(s->list.msgs[i].flags & POP3_MSG_DELETED))
			continue;
		if (maildir_msg_delete(&s->list, i) == 0) {
			s->deleted++;
		} else {
			log_maildrop(s, "cannot delete message", strerror(errno));
			failed++;
		}
	}
	for (size_t i = 0; i < s->list.count; i++) {
		uint8_t f = s->list.msgs[i].flags;
		if ((f & POP3_MSG_RETRIEVED) && !(f & POP3_MSG_DELETED) &&
		    maildir_msg_mark_seen(&s->list, i) != 0 && errno != ENOENT)
			/* not worth failing QUIT for: the mail is intact */
			log_maildrop(s, "cannot mark message seen",
				     strerror(errno));
	}
	if (maildir_list_sync(&s->list) != 0) {
		log_maildrop(s, "cannot sync maildrop", strerror(errno));
		failed++;
	}
	if (failed) {
		pop3_err_nocount(s, "[SYS/TEMP] Some deleted messages not removed");
		pop3_exit(s, "update failed");
	}
	pop3_ok(s, "Logging out (%zu messages left)", s->live_count);
	pop3_exit(s, "ok");
}
