"""Resource abuse (issue 8, part 4): what a hostile or broken client can do
with nothing but a connection, and the bound that stops it.

  * many idle connections that never speak (to SMTP, POP3 and IMAP, and
    idle in the middle of a session): the timeouts end every one of them,
    every handler process exits, nothing is left on disk;
  * a client that reads nothing while the server writes a lot (IMAP FETCH
    and POP3 RETR of a 30 MB message, SMTP replies to a flood of pipelined
    NOOPs): the write waits are bounded by time and the handler exits;
  * huge literals (IMAP APPEND of {2000000000}, with and without LITERAL+,
    and before login) and huge DATA (SMTP SIZE=2000000000, and an actual
    stream five times the size limit, of which at most the limit is ever
    stored);
  * a message with 5,000 nested multiparts: delivered, then IMAP FETCH
    BODYSTRUCTURE, BODY[1.1.1...] and SEARCH TEXT on it answer, bounded;
  * 10,000 recipients in one SMTP transaction: 452 after max_recipients,
    the session goes on and delivers to the ones accepted;
  * a 1 MB header line: SMTP DATA refuses it (550), IMAP APPEND stores it
    or refuses it cleanly and FETCH ENVELOPE works on what is stored; a
    1 MB command line to each protocol.

SOCKMAIL_LONG=1 makes it bigger: 200 idle connections per protocol, 20,000
nested parts, 100,000 recipients.

Timeouts are configured short (2 s) so that the idle tests are quick; the
tests only ever wait for an outcome with a generous limit, they never
assert on how long something took.  Run from the repo root:
    BUILD=build /usr/bin/python3 -m unittest discover -s tests/e2e -p 'test_abuse.py' -v
"""

import os
import socket
import unittest

import harness
from harness import (HOSTNAME, TIMEOUT, WAIT, IMAPConn, IMAPTestCase, Literal,
                     crlf_to_lf, imap_parse_all, start_listener)

ALICE, BOB = "alice@example.org", "bob@example.org"
PASSWORD = "secret-Passw0rd"  # what harness.add_user gives everyone
SHORT = 2  # seconds: smtp_timeout, pop3_timeout, imap_idle_timeout
LIMIT = 2 * 1024 * 1024  # message_size_limit
GONE = 3 * WAIT  # generous: how long a bounded wait may take before it is stuck
LONG = os.environ.get("SOCKMAIL_LONG", "") not in ("", "0")
# fewer under valgrind (make check VALGRIND=1) and the sanitizers (make
# check SANITIZE=1): each handler is a memcheck or an ASan process then
IDLE_CONNECTIONS = (10 if getattr(harness, "VALGRIND", False) else 200 if LONG
                    else 20 if "san" in os.path.basename(harness.BUILD) else 50)
RECIPIENTS = 100000 if LONG else 10000
BIG_MESSAGE = 30 * 1024 * 1024

_summary = []  # one line per outcome, printed by tearDownModule


def note(text):
    _summary.append(text)


def tearDownModule():
    if _summary:
        import sys
        sys.stderr.write("\nresource abuse summary%s:\n  %s\n" % (
            " (SOCKMAIL_LONG)" if LONG else "", "\n  ".join(_summary)))


def drain(sock, timeout=WAIT):
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return out


def raw_connect(port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(TIMEOUT)
    s.connect(("127.0.0.1", port))
    return s


class LineConn:
    """A raw line client for SMTP and POP3 dialogs."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("connection closed; buffered %r" % self.buf[:300])
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """An SMTP reply: its last line."""
        while True:
            line = self.line()
            if line[3:4] != b"-":
                return line

    def cmd(self, text, smtp=True):
        self.sock.sendall(text.encode() + b"\r\n" if isinstance(text, str) else text)
        return self.reply() if smtp else self.line()


def nested_mime(depth, needle=b"needle-in-the-middle"):
    """A message of depth nested multipart/mixed parts (CRLF, every line
    short enough for SMTP), a text part with needle at the bottom."""
    head = [b"From: <x@remote.example>", b"To: <alice@example.org>",
            b"Subject: nested %d" % depth, b"Message-ID: <nested@remote.example>",
            b"MIME-Version: 1.0"]
    lines = list(head)
    for i in range(depth):
        lines += [b'Content-Type: multipart/mixed; boundary="b%d"' % i, b"",
                  b"--b%d" % i]
    lines += [b"Content-Type: text/plain", b"", needle]
    for i in reversed(range(depth)):
        lines += [b"--b%d--" % i]
    return b"\r\n".join(lines) + b"\r\n"


class AbuseCase(IMAPTestCase):
    """A server with short timeouts and a 2 MB size limit; no listener
    until the test starts the handler it needs."""

    START = False
    CONF = {"smtp_timeout": "%ds" % SHORT, "pop3_timeout": "%ds" % SHORT,
            "imap_idle_timeout": "%ds" % SHORT,
            "message_size_limit": str(LIMIT), "max_bad_commands": "1000"}

    def listen(self, handler, args=()):
        if self.srv.proc is None:
            return self.srv.start(args, {}, handler)
        return start_listener(self.srv, handler, args)

    def session_ends(self, handler):
        return self.srv.stderr_lines(r"^%s\[\d+\]: session end " % handler)

    def assertHandlersGone(self, why):
        self.assertTrue(self.srv.wait_handlers_exit(GONE),
                        "%s: handlers %r still running after %d s; stderr:\n%s"
                        % (why, self.srv.handler_pids(), GONE,
                           self.srv.stderr_text()[-3000:]))

    def smtp(self, port, ehlo=True):
        c = LineConn(raw_connect(port))
        self.track(c.sock)
        self.assertTrue(c.reply().startswith(b"220 "))
        if ehlo:
            self.assertTrue(c.cmd("EHLO client.test").startswith(b"250 "))
        return c

    def pop3_login(self, port, rcvbuf=None):
        c = LineConn(raw_connect(port, rcvbuf))
        self.track(c.sock)
        self.assertTrue(c.line().startswith(b"+OK"))
        self.assertTrue(c.cmd("USER " + ALICE, smtp=False).startswith(b"+OK"))
        self.assertTrue(c.cmd("PASS " + PASSWORD, smtp=False).startswith(b"+OK"))
        return c

    def imap_login(self, port, rcvbuf=None, select=None):
        c = LineConn(raw_connect(port, rcvbuf))
        self.track(c.sock)
        self.assertTrue(c.line().startswith(b"* OK"))
        self.assertTrue(c.cmd('L1 LOGIN "%s" "%s"' % (ALICE, PASSWORD),
                              smtp=False).startswith(b"L1 OK"))
        if select:
            c.sock.sendall(b"L2 SELECT " + select.encode() + b"\r\n")
            while not c.line().startswith(b"L2 "):
                pass
        return c


# ------------------------------------------------------------ idle clients

class IdleConnectionTests(AbuseCase):

    def idle(self, handler, expect, results):
        """IDLE_CONNECTIONS connections that say nothing: each gets its
        handler, which times out, says expect (a regex on all it sent),
        logs one session end with RESULT in results, and exits -- while
        the client still holds its socket open."""
        port = self.listen(handler)
        socks = [raw_connect(port) for _ in range(IDLE_CONNECTIONS)]
        for s in socks:
            self.track(s)
        self.assertHandlersGone("%d idle %s connections" % (len(socks), handler))
        for s in socks:
            self.assertRegex(drain(s), expect)
        ends = self.session_ends(handler)
        self.assertEqual(len(ends), IDLE_CONNECTIONS, "\n".join(ends[:5]))
        for line in ends:
            self.assertRegex(line, r"RESULT=(%s)$" % results)
        note("%s: %d idle connections, %d sessions ended by the timeout, "
             "0 handlers left" % (handler, len(socks), len(ends)))

    def test_smtp_idle(self):
        self.idle("smtp-handler", rb"^220 [^\r\n]*\r\n421 4\.4\.2 %s Error: timeout "
                  rb"exceeded\r\n$" % HOSTNAME.encode(), "timeout")

    def test_pop3_idle(self):
        # RFC 1939 3: the autologout timer closes without a response
        self.idle("pop3-handler", rb"^\+OK [^\r\n]*\r\n$", "timeout")

    def test_imap_idle(self):
        self.idle("imap-handler", rb"^\* OK [^\r\n]*\r\n\* BYE Autologout\r\n$",
                  "timeout|disconnected")

    def test_idle_mid_session(self):
        """Idle half way: SMTP inside DATA (part of a message sent), POP3
        logged in with a message marked deleted, IMAP with a folder
        selected and a literal half sent.  All end; nothing is delivered,
        deleted or appended, no tmp/ file stays, and the maildrop lock
        is free again."""
        smtp_port = self.listen("smtp-handler")
        pop3_port = self.listen("pop3-handler")
        imap_port = self.listen("imap-handler")
        self.put(b"Subject: keep me\n\nbody\n")
        conns = []
        for _ in range(5):
            c = self.smtp(smtp_port)
            for cmd in ("MAIL FROM:<x@remote.example>", "RCPT TO:<%s>" % ALICE,
                        "RCPT TO:<%s>" % BOB):
                self.assertTrue(c.cmd(cmd).startswith(b"250 "))
            self.assertTrue(c.cmd("DATA").startswith(b"354 "))
            c.sock.sendall(b"Subject: half\r\n\r\nsome of the body\r\n")
            conns.append(c)
        p = self.pop3_login(pop3_port)
        self.assertTrue(p.cmd("DELE 1", smtp=False).startswith(b"+OK"))
        conns.append(p)
        for _ in range(5):
            c = self.imap_login(imap_port, select="INBOX")
            c.sock.sendall(b"A1 APPEND INBOX {100+}\r\nSubject: half\r\n")
            conns.append(c)
        self.assertHandlersGone("sessions idle half way")
        note("idle half way (5 SMTP in DATA, 1 POP3 after DELE, 5 IMAP in a "
             "literal): all %d ended, nothing stored or deleted" % len(conns))
        for c in conns:
            drain(c.sock)
        self.assertEqual(self.srv.all_files("tmp"), [])
        self.assertEqual(self.srv.new_files(BOB), [])
        # IMAP's SELECT took it to cur/; POP3 did not delete it
        kept = self.files("new") + self.files("cur")
        self.assertEqual(len(kept), 1, "the message DELE'd is gone")
        self.assertEqual(self.read_file(kept[0], sub="cur" if self.files("cur") else "new"),
                         b"Subject: keep me\n\nbody\n")
        # the lock died with the session: a new one gets the maildrop
        p = self.pop3_login(pop3_port)
        self.assertEqual(p.cmd("STAT", smtp=False)[:5], b"+OK 1")
        self.assertTrue(p.cmd("QUIT", smtp=False).startswith(b"+OK"))


# ------------------------------------------------------------ slow readers

class SlowReaderTests(AbuseCase):
    """The client asks for a lot and reads nothing (receive buffer 4 KiB):
    once the socket buffers are full, each write wait is bounded by the
    timeout, after which the handler gives up and exits.  (The size limit
    is raised here: imap-handler serves no message over twice
    message_size_limit + 1 MiB, its memory bound.)"""

    CONF = dict(AbuseCase.CONF, message_size_limit="20M")

    def big_message(self):
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-\n"
        content = (b"Subject: big\n\n" + line * (BIG_MESSAGE // len(line)))
        return self.put(content, sub="cur", flags="S")

    def assertStuckWriterEnds(self, handler, sock, start):
        """The handler exits; what reached the client starts with start
        (the reply began: the server was writing, not refusing)."""
        self.assertHandlersGone("%s writing to a client that reads nothing" % handler)
        ends = self.session_ends(handler)
        self.assertEqual(len(ends), 1, ends)
        self.assertNotRegex(ends[0], r"RESULT=ok$")
        # and the client gets less than the whole message
        got = drain(sock, timeout=WAIT)
        self.assertRegex(got[:200], start)
        self.assertLess(len(got), BIG_MESSAGE)
        note("%s: client reading nothing of a %d MB message: handler exited "
             "(%s), %d bytes were in the buffers" % (
                 handler, BIG_MESSAGE >> 20, ends[0].rsplit("RESULT=", 1)[-1], len(got)))

    def test_imap_fetch_not_read(self):
        self.big_message()
        port = self.listen("imap-handler")
        c = self.imap_login(port, rcvbuf=4096, select="INBOX")
        c.sock.sendall(b"F1 FETCH 1 BODY[]\r\n")
        self.assertStuckWriterEnds("imap-handler", c.sock,
                                   rb"^\* 1 FETCH \(BODY\[\] \{\d+\}\r\nSubject: big\r\n")

    def test_pop3_retr_not_read(self):
        self.big_message()
        port = self.listen("pop3-handler")
        c = self.pop3_login(port, rcvbuf=4096)
        c.sock.sendall(b"RETR 1\r\n")
        self.assertStuckWriterEnds("pop3-handler", c.sock,
                                   rb"^\+OK \d+ octets\r\nSubject: big\r\n")
        self.assertEqual(len(self.files("cur")), 1, "RETR not finished: no UPDATE")

    def test_smtp_pipelined_replies_not_read(self):
        port = self.listen("smtp-handler")
        c = self.smtp(port)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # NOOPs until the server stops reading (its replies fill both
        # buffers): our send then stalls; stop after a few seconds of it
        c.sock.settimeout(SHORT)
        sent = 0
        chunk = b"NOOP\r\n" * 10000
        try:
            while sent < 200 * len(chunk):
                sent += c.sock.send(chunk)
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass  # stalled, or the handler gave up already
        self.assertHandlersGone("smtp-handler replying to a client that reads nothing")
        ends = self.session_ends("smtp-handler")
        self.assertEqual(len(ends), 1, ends)
        note("smtp-handler: %d pipelined NOOPs, replies never read: handler "
             "exited (%s)" % (sent // 6, ends[0].rsplit("RESULT=", 1)[-1]))


# ------------------------------------------------------------- huge input

class HugeInputTests(AbuseCase):

    def test_imap_huge_literals(self):
        port = self.listen("imap-handler")
        c = IMAPConn(port)
        self.track(c)
        c.read_response()
        self.assertEqual(c.login(ALICE).status, "OK")
        # synchronising: refused before the data, no "+" (a "+" would be
        # a protocol error in read_until_tagged)
        c.send("H1 APPEND INBOX {2000000000}\r\n")
        self.assertResult(c.read_until_tagged("H1"), "NO", code="TOOBIG", client=c)
        c.send("H2 APPEND INBOX (\\Seen) {18446744073709551615}\r\n")
        self.assertResult(c.read_until_tagged("H2"), "NO", "BAD", client=c)
        for cmd in ("H3 LOGIN {2000000000}", "H4 SEARCH TEXT {2000000000}",
                    "H5 SELECT {2000000000}"):
            c.send(cmd + "\r\n")
            self.assertResult(c.read_until_tagged(cmd.split()[0]), "BAD", "NO", client=c)
        self.assertResult(c.command("NOOP"), "OK")
        self.assertIsNone(c.bye)
        # non-synchronising: the client sends it anyway, the server cannot
        # refuse it in time: BYE and close, without reading it
        c.send("H6 APPEND INBOX {2000000000+}\r\n")
        self.assertRegex(c.read_response(), rb"^\* BYE ")
        c.expect_eof(timeout=WAIT)
        self.assertHandlersGone("after BYE")
        self.assertEqual(self.files("cur") + self.files("new") + self.files("tmp"), [])
        note("imap-handler: APPEND {2000000000} NO [TOOBIG] with no '+', "
             "{2^64-1} refused, {2000000000+} BYE and close, nothing read or stored")

    def test_imap_literal_before_login(self):
        """Before login, APPEND may not send a literal bigger than any
        other command's (256 KiB): nobody is allowed to store anything.
        (imap_main.c raises the APPEND bound only at login.)
        """
        port = self.listen("imap-handler")
        c = IMAPConn(port)
        self.track(c)
        c.read_response()
        c.send("P1 APPEND INBOX {%d}\r\n" % (LIMIT // 2))
        r = c.read_until_tagged("P1")  # raises on a "+"
        self.assertIn(r.status, ("NO", "BAD"))

    def test_smtp_size_declared(self):
        port = self.listen("smtp-handler")
        c = self.smtp(port)
        r = c.cmd("MAIL FROM:<x@remote.example> SIZE=2000000000")
        self.assertTrue(r.startswith(b"552 5.3.4 "), r)
        r = c.cmd("MAIL FROM:<x@remote.example> SIZE=99999999999999999999999999")
        self.assertRegex(r, rb"^(552 5\.3\.4|501 5\.5\.4) ")
        self.assertTrue(c.cmd("RCPT TO:<%s>" % ALICE).startswith(b"503 "))
        self.assertTrue(c.cmd("NOOP").startswith(b"250 "))

    def test_smtp_oversized_stream(self):
        """Five times the limit, sent: SMTP must read to the final dot to
        stay in step, but what it stores stops at the limit (the handler's
        open message file is looked at while the stream goes on), the
        answer is 552 and nothing is delivered."""
        port = self.listen("smtp-handler")
        c = self.smtp(port)
        for cmd in ("MAIL FROM:<x@remote.example>", "RCPT TO:<%s>" % ALICE, "DATA"):
            self.assertRegex(c.cmd(cmd), rb"^(250|354) ")
        pid, = self.srv.handler_pids()
        line = b"x" * 998 + b"\r\n"
        c.sock.sendall(b"Subject: too big\r\n\r\n")
        biggest = 0
        for i in range(5 * LIMIT // len(line)):
            c.sock.sendall(line)
            if i % 512 == 0:
                biggest = max(biggest, self.open_file_size(pid))
        biggest = max(biggest, self.open_file_size(pid))
        self.assertGreater(biggest, 0, "no message file open in the handler")
        self.assertLessEqual(biggest, LIMIT + 65536, "stored past the limit")
        r = c.cmd(b".\r\n")
        self.assertTrue(r.startswith(b"552 5.3.4 "), r)
        self.assertTrue(c.cmd("NOOP").startswith(b"250 "))
        note("smtp-handler: SIZE=2000000000 552 at MAIL; a %d MB stream: 552, "
             "at most %d bytes ever stored (limit %d)" % (5 * LIMIT >> 20, biggest, LIMIT))
        self.assertEqual(self.srv.all_files("new") + self.srv.all_files("tmp"), [])

    def open_file_size(self, pid):
        """The size of the largest regular file the process has open for
        writing in a Maildir tmp/ (an O_TMPFILE shows as '.../tmp/#N
        (deleted)')."""
        best = 0
        fd_dir = "/proc/%d/fd" % pid
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
                if target.startswith(self.srv.dir) and \
                        "/tmp/" in target[len(self.srv.dir):]:
                    best = max(best, os.stat(os.path.join(fd_dir, fd)).st_size)
            except OSError:
                pass
        return best

    def test_smtp_ten_thousand_recipients(self):
        port = self.listen("smtp-handler")
        c = self.smtp(port)
        self.assertTrue(c.cmd("MAIL FROM:<x@remote.example>").startswith(b"250 "))
        replies = []
        batch = 500  # pipelined, the replies read after each batch
        for start in range(0, RECIPIENTS, batch):
            c.sock.sendall(b"".join(b"RCPT TO:<%s+%d@example.org>\r\n"
                                    % (b"alice" if i % 2 else b"bob", i)
                                    for i in range(start, start + batch)))
            replies += [c.reply() for _ in range(batch)]
        self.assertEqual(replies[:100], [b"250 2.1.5 Ok"] * 100)
        self.assertEqual(set(replies[100:]), {b"452 4.5.3 Too many recipients"})
        self.assertEqual(len(replies), RECIPIENTS)
        self.assertTrue(c.cmd("DATA").startswith(b"354 "))
        r = c.cmd(b"Subject: many\r\n\r\nhello\r\n.\r\n")
        self.assertTrue(r.startswith(b"250 2.0.0 "), r)
        # one copy per mailbox, however many of its addresses were named
        self.assertEqual(len(self.srv.new_files(ALICE)), 1)
        self.assertEqual(len(self.srv.new_files(BOB)), 1)
        # the session goes on: a new transaction is counted afresh
        self.assertTrue(c.cmd("MAIL FROM:<x@remote.example>").startswith(b"250 "))
        self.assertTrue(c.cmd("RCPT TO:<%s>" % ALICE).startswith(b"250 "))
        self.assertTrue(c.cmd("QUIT").startswith(b"221 "))
        note("smtp-handler: %d RCPTs in one transaction: 100 x 250, %d x 452 "
             "4.5.3, one copy per mailbox, the session goes on"
             % (RECIPIENTS, RECIPIENTS - 100))


# ---------------------------------------------------------------- MIME

class DeepMimeTests(AbuseCase):
    DEPTH = 20000 if LONG else 5000

    def test_nested_multiparts(self):
        smtp_port = self.listen("smtp-handler")
        imap_port = self.listen("imap-handler")
        msg = nested_mime(self.DEPTH)
        c = self.smtp(smtp_port)
        for cmd in ("MAIL FROM:<x@remote.example>", "RCPT TO:<%s>" % ALICE, "DATA"):
            self.assertRegex(c.cmd(cmd), rb"^(250|354) ")
        r = c.cmd(msg + b".\r\n")
        self.assertTrue(r.startswith(b"250 2.0.0 "), r)
        self.assertEqual(len(self.srv.new_files(ALICE)), 1)
        i = IMAPConn(imap_port)
        self.track(i)
        i.read_response()
        self.assertEqual(i.login(ALICE).status, "OK")
        self.assertResult(i.command("SELECT INBOX"), "OK", client=i)
        for items in ("BODYSTRUCTURE", "BODY", "ENVELOPE RFC822.SIZE",
                      "BODY.PEEK[" + ".".join(["1"] * 40) + "]",
                      "BODY.PEEK[" + ".".join(["1"] * self.DEPTH) + ".MIME]",
                      "BODY.PEEK[TEXT]<0.100>"):
            r = i.command("FETCH 1 (%s)" % items)
            self.assertIn(r.status, ("OK", "NO", "BAD"), r)
            if r.status == "OK":
                # bounded: never more than the message itself, and parseable
                size = sum(len(u) for u in r.untagged)
                self.assertLess(size, 2 * len(msg) + 65536, items)
                self.assertEqual(len(r.fetches()), 1, items)
        bs = i.command("FETCH 1 BODYSTRUCTURE")
        self.assertResult(bs, "OK", client=i)
        depth = self.list_depth(imap_parse_all(bs.untagged[0].split(b" ", 2)[2]))
        self.assertLessEqual(depth, 200, "BODYSTRUCTURE nests %d deep" % depth)
        note("imap-handler: %d nested multiparts (%d KB): BODYSTRUCTURE %d bytes, "
             "lists %d deep; FETCH sections, SEARCH TEXT/BODY/HEADER answer"
             % (self.DEPTH, len(msg) >> 10, len(bs.untagged[0]), depth))
        for crit in ("TEXT needle-in-the-middle", "BODY needle-in-the-middle",
                     "TEXT absent-word", "HEADER Content-Type mixed"):
            r = i.command("SEARCH " + crit)
            self.assertIn(r.status, ("OK", "NO"), r)
            if r.status == "OK":
                self.assertIn(r.search(), ([], [1]), crit)
        self.assertEqual(i.command("SEARCH TEXT absent-word").search(), [])
        self.assertResult(i.command("NOOP"), "OK")
        self.assertIsNone(i.bye)

    def list_depth(self, v):
        depth, stack = 0, [(v, 1)]
        while stack:
            x, d = stack.pop()
            if isinstance(x, list):
                depth = max(depth, d)
                stack += [(y, d + 1) for y in x]
        return depth


# -------------------------------------------------------------- long lines

class LongLineTests(AbuseCase):
    MB = 1024 * 1024

    def test_smtp_header_line_1mb(self):
        port = self.listen("smtp-handler")
        c = self.smtp(port)
        for cmd in ("MAIL FROM:<x@remote.example>", "RCPT TO:<%s>" % ALICE, "DATA"):
            self.assertRegex(c.cmd(cmd), rb"^(250|354) ")
        r = c.cmd(b"Subject: " + b"s" * self.MB + b"\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(r, b"550 5.6.0 Message has a line longer than 1000 octets")
        self.assertTrue(c.cmd("NOOP").startswith(b"250 "))
        self.assertEqual(self.srv.all_files("new") + self.srv.all_files("tmp"), [])
        note("smtp-handler: 1 MB header line: 550 5.6.0, nothing stored, session goes on")

    def test_command_lines_1mb(self):
        """A 1 MB command line to each protocol: refused, and the line's
        tail is not taken for a command; the session goes on."""
        tail = b" QUIT LOGOUT"
        smtp = self.smtp(self.listen("smtp-handler"))
        self.assertEqual(smtp.cmd(b"NOOP " + b"x" * self.MB + tail + b"\r\n"),
                         b"500 5.5.2 Line too long")
        self.assertTrue(smtp.cmd("NOOP").startswith(b"250 "))
        pop = LineConn(raw_connect(self.listen("pop3-handler")))
        self.track(pop.sock)
        pop.line()
        self.assertTrue(pop.cmd(b"USER " + b"x" * self.MB + tail + b"\r\n",
                                smtp=False).startswith(b"-ERR"))
        self.assertTrue(pop.cmd("NOOP", smtp=False).startswith(b"-ERR"))  # not logged in
        self.assertTrue(pop.cmd("CAPA", smtp=False).startswith(b"+OK"))
        imap = IMAPConn(self.listen("imap-handler"))
        self.track(imap)
        imap.read_response()
        self.assertResult(imap.command(b"NOOP " + b"x" * self.MB + tail), "BAD")
        self.assertResult(imap.command("NOOP"), "OK")
        self.assertIsNone(imap.bye)

    def test_imap_append_header_line_1mb(self):
        port = self.listen("imap-handler")
        c = IMAPConn(port)
        self.track(c)
        c.read_response()
        self.assertEqual(c.login(ALICE).status, "OK")
        subject = b"s" * self.MB
        msg = (b"From: <x@remote.example>\r\nSubject: " + subject +
               b"\r\nX-Long: " + b"y" * (self.MB // 2) + b"\r\n\r\nbody\r\n")
        r = c.command("APPEND INBOX ", Literal(msg))
        self.assertResult(r, "OK", "NO", client=c)
        appended = r.status
        self.assertResult(c.command("SELECT INBOX"), "OK", client=c)
        stored = self.files("cur") + self.files("new")
        self.assertEqual(len(stored), 1 if r.status == "OK" else 0)
        self.assertEqual(self.files("tmp"), [])
        if r.status == "OK":
            self.assertEqual(self.read_file(stored[0]), crlf_to_lf(msg))
            f = c.command("FETCH 1 (ENVELOPE RFC822.SIZE)")
            self.assertResult(f, "OK", client=c)
            env = f.fetches()[1].items["ENVELOPE"]
            self.assertIn(env[1], (subject, None), "ENVELOPE subject")
            self.assertEqual(int(f.fetches()[1].items["RFC822.SIZE"]), len(msg))
            f = c.command("FETCH 1 (BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (X-LONG)])")
            self.assertResult(f, "OK", client=c)
            r = c.command("SEARCH HEADER X-Long yyyy")
            self.assertResult(r, "OK", client=c)
            self.assertEqual(r.search(), [1])
        self.assertResult(c.command("NOOP"), "OK")
        note("imap-handler: APPEND with a 1 MB header line: %s; ENVELOPE, "
             "BODYSTRUCTURE, SEARCH HEADER on it answer" % appended)


if __name__ == "__main__":
    unittest.main()
