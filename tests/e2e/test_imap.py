"""End-to-end tests of imap-handler under systemd-socket-activate.

Every test runs a fresh server (harness.IMAPTestCase: users alice and bob,
made with sockmailctl, so the Maildir++ default folders exist) and checks
what the server said (statuses, response codes, untagged data, parsed with
harness.imap_parse) and what is on disk (file names with ,S= ,W= and :2,
flags, LF line ends, folder directories, nothing outside the Maildir).
Mail is put into the Maildir directly (harness.maildir_put: names as
delivery gives them, mtime = INTERNALDATE), or APPENDed, or delivered by
smtp-handler.  Clients: harness.IMAPConn (raw, byte-exact, for everything
imaplib cannot express) and Python's imaplib.  No assertion on timing.

Run from the repo root:
    BUILD=build /usr/bin/python3 -m unittest discover -s tests/e2e -p 'test_imap.py' -v
"""

import base64
import calendar
import datetime
import hashlib
import imaplib
import os
import re
import smtplib
import socket
import threading
import time
import unittest

from harness import (TIMEOUT, WAIT, IMAP_NOT_LOOPBACK, IMAP_PASSWORD,
                     IMAPTestCase, Literal, crlf_to_lf, cut_tls_mid_record,
                     imap_parse, imap_parse_all, imap_quote, lf_to_crlf,
                     parse_list_line, start_listener, tls_client_context,
                     uid_set_list)

PASSWORD = IMAP_PASSWORD
ALICE = "alice@example.org"
BOB = "bob@example.org"

CAPS_BEFORE_LOGIN = {"IMAP4REV1", "AUTH=PLAIN", "SASL-IR", "IDLE", "UIDPLUS",
                     "MOVE", "NAMESPACE", "ID", "LITERAL+", "UNSELECT",
                     "CHILDREN", "SPECIAL-USE", "ENABLE"}
CAPS_ALWAYS = {"IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "ID",
               "LITERAL+", "UNSELECT", "CHILDREN", "SPECIAL-USE", "ENABLE"}
SYSTEM_FLAGS = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"}
DEFAULT_FOLDERS = {"Sent": "\\sent", "Drafts": "\\drafts", "Trash": "\\trash",
                   "Junk": "\\junk", "Archive": "\\archive"}

# Maildir file name in cur/ as APPEND/COPY/SELECT leave it.
CUR_NAME = re.compile(r"^(?P<unique>[^/:,]+)(?:,[^/:]*)?,S=(?P<s>[0-9]+),"
                      r"W=(?P<w>[0-9]+)(?:,[^/:]*)?:2,(?P<flags>[A-Za-z]*)$")


def b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def sasl_plain(user=ALICE, password=PASSWORD, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, password))


def ts(y, mo, d, h=12, mi=0, s=0):
    return calendar.timegm((y, mo, d, h, mi, s))


def internaldate(value):
    """An INTERNALDATE string ("14-Nov-2023 22:13:20 +0000") -> epoch."""
    s = value.decode().strip()
    return int(datetime.datetime.strptime(s, "%d-%b-%Y %H:%M:%S %z").timestamp())


def caps_of(result_or_line):
    """The capability names (upper case) of the one untagged CAPABILITY
    response of a result, or of a "[CAPABILITY ...]" text."""
    if isinstance(result_or_line, bytes):
        words = result_or_line.split()
    else:
        lines = result_or_line.matching(rb"CAPABILITY ")
        if len(lines) != 1:
            raise AssertionError("expected one CAPABILITY response: %r"
                                 % result_or_line)
        words = lines[0].split()[1:]
    return set(w.decode().upper() for w in words)


def check_expunges(tc, count, numbers, expect):
    """numbers: the "* n EXPUNGE" of one command, in order, for a folder
    of count messages; each n must be a valid sequence number at its
    moment.  expect: the sequence numbers (before the command) of the
    messages expunged."""
    seqs = list(range(1, count + 1))
    gone = []
    for n in numbers:
        tc.assertTrue(1 <= n <= len(seqs), "EXPUNGE %d of %r" % (n, numbers))
        gone.append(seqs.pop(n - 1))
    tc.assertEqual(sorted(gone), sorted(expect), numbers)


def flags_on_disk(name):
    m = CUR_NAME.match(name)
    if not m:
        raise AssertionError("not a cur/ file name with ,S= ,W= and :2,: %r" % name)
    return m.group("flags")


# -- messages with known structure

MP = (b"From: Alice Example <alice@example.org>\n"
      b"To: Bob <bob@example.org>, carol@example.org\n"
      b"Cc: \"Dave, D.\" <dave@example.org>\n"
      b"Subject: multipart test\n"
      b"Date: Tue, 14 Nov 2023 22:13:20 +0000\n"
      b"Message-ID: <mp1@example.org>\n"
      b"MIME-Version: 1.0\n"
      b"Content-Type: multipart/mixed; boundary=\"XX\"\n"
      b"\n"
      b"preamble\n"
      b"--XX\n"
      b"Content-Type: text/plain; charset=us-ascii\n"
      b"\n"
      b"Hello plain.\n"
      b"second line\n"
      b"\n"
      b"--XX\n"
      b"Content-Type: application/octet-stream; name=\"a.bin\"\n"
      b"Content-ID: <P2@example.org>\n"
      b"Content-Description: A Binary\n"
      b"Content-Transfer-Encoding: base64\n"
      b"Content-Disposition: attachment; filename=\"a.bin\"\n"
      b"\n"
      b"AAECAwQ=\n"
      b"\n"
      b"--XX--\n"
      b"epilogue\n")
MP_CRLF = lf_to_crlf(MP)
MP_HEADER = MP_CRLF[:MP_CRLF.index(b"\r\n\r\n") + 4]
MP_TEXT = MP_CRLF[len(MP_HEADER):]
MP_PART1 = b"Hello plain.\r\nsecond line\r\n"          # 27 octets, 2 lines
MP_PART2 = b"AAECAwQ=\r\n"                             # 10 octets
MP_PART1_MIME = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
MP_PART2_MIME = (b"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
                 b"Content-ID: <P2@example.org>\r\n"
                 b"Content-Description: A Binary\r\n"
                 b"Content-Transfer-Encoding: base64\r\n"
                 b"Content-Disposition: attachment; filename=\"a.bin\"\r\n\r\n")
MP_WHEN = 1700000000  # 14-Nov-2023 22:13:20 UTC

# The words IMAP compares without case are written in the message in
# lower case; a server may give them as written (lower) or upper-cased as
# in RFC 3501's examples, but consistently.
_BS_WORDS = ("text", "plain", "charset", "7bit", "application",
             "octet-stream", "name", "base64", "attachment", "filename",
             "mixed", "boundary")


def _bs(fmt, upper):
    return (fmt % {w: w.upper() if upper else w for w in _BS_WORDS}).encode()


MP_BODYSTRUCTURE = (
    '(("%(text)s" "%(plain)s" ("%(charset)s" "us-ascii") NIL NIL "%(7bit)s" 27 2'
    ' NIL NIL NIL NIL)'
    '("%(application)s" "%(octet-stream)s" ("%(name)s" "a.bin") "<P2@example.org>"'
    ' "A Binary" "%(base64)s" 10 NIL ("%(attachment)s" ("%(filename)s" "a.bin"))'
    ' NIL NIL) "%(mixed)s" ("%(boundary)s" "XX") NIL NIL NIL)')
MP_BODY = (
    '(("%(text)s" "%(plain)s" ("%(charset)s" "us-ascii") NIL NIL "%(7bit)s" 27 2)'
    '("%(application)s" "%(octet-stream)s" ("%(name)s" "a.bin") "<P2@example.org>"'
    ' "A Binary" "%(base64)s" 10) "%(mixed)s")')
MP_ENVELOPE = (
    b'("Tue, 14 Nov 2023 22:13:20 +0000" "multipart test"'
    b' (("Alice Example" NIL "alice" "example.org"))'
    b' (("Alice Example" NIL "alice" "example.org"))'
    b' (("Alice Example" NIL "alice" "example.org"))'
    b' (("Bob" NIL "bob" "example.org")(NIL NIL "carol" "example.org"))'
    b' (("Dave, D." NIL "dave" "example.org")) NIL NIL "<mp1@example.org>")')


def simple(subject, body=b"body\n", extra=b""):
    return (b"From: <x@remote.example>\nTo: <alice@example.org>\nSubject: "
            + subject.encode() + b"\n" + extra + b"\n" + body)


# ------------------------------------------------------------------- tests

class Base(IMAPTestCase):
    CONF = {"max_bad_commands": 1000}

    def select(self, c, mailbox="INBOX", examine=False):
        r = c.command("%s %s" % ("EXAMINE" if examine else "SELECT",
                                 imap_quote(mailbox)))
        self.assertResult(r, "OK", client=c)
        return r

    def fetch(self, c, what, items, uid=False):
        r = c.command("%sFETCH %s %s" % ("UID " if uid else "", what, items))
        self.assertResult(r, "OK", client=c)
        return r.fetches()

    def uids(self, c):
        """[UID of seq 1, 2, ...] of the selected folder."""
        f = self.fetch(c, "1:*", "(UID)")
        return [int(f[i].items["UID"]) for i in sorted(f)]

    def status(self, c, mailbox, items="MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT"):
        r = c.command("STATUS %s (%s)" % (imap_quote(mailbox), items))
        self.assertResult(r, "OK", client=c)
        lines = r.matching(rb"STATUS ")
        self.assertEqual(len(lines), 1, r)
        vals = imap_parse_all(lines[0][len(b"STATUS "):])
        self.assertEqual(len(vals), 2, lines[0])
        self.assertEqual(bytes(vals[0]).decode("utf-8", "replace"), mailbox, lines[0])
        kv = vals[1]
        return {kv[i].decode().upper(): int(kv[i + 1]) for i in range(0, len(kv), 2)}

    def list_names(self, c, ref, pattern, cmd="LIST"):
        """{name: (attrs, delim)} of LIST/LSUB ref pattern."""
        r = c.command("%s %s %s" % (cmd, imap_quote(ref), imap_quote(pattern)))
        self.assertResult(r, "OK", client=c)
        out = {}
        for u in r.matching(rb"%s " % cmd.encode()):
            attrs, delim, name = parse_list_line(u)
            self.assertNotIn(name, out, "listed twice: %r" % r)
            out[name] = (attrs, delim)
        return out

    def cur_files(self, folder=""):
        return [n for n in self.files("cur", folder) if not n.startswith(".")]

    def only_cur_file(self, folder=""):
        files = self.cur_files(folder)
        self.assertEqual(len(files), 1, files)
        return files[0]


class GreetingCapabilityTests(Base):

    def test_greeting_capability_noop_logout(self):
        c = self.connect_imap()
        self.assertRegex(c.greeting, rb"^\* OK( \[CAPABILITY [^\]]*\])? ")
        r = c.cmd("CAPABILITY")
        self.assertResult(r, "OK", client=c)
        caps = caps_of(r)
        self.assertLessEqual(CAPS_BEFORE_LOGIN, caps)
        self.assertNotIn("STARTTLS", caps)  # no certificate configured
        self.assertNotIn("LOGINDISABLED", caps)  # loopback: plaintext allowed
        m = re.match(rb"^\* OK \[CAPABILITY ([^\]]*)\]", c.greeting)
        if m:
            self.assertEqual(caps_of(m.group(1)), caps)
        self.assertResult(c.cmd("NOOP"), "OK")
        r = c.cmd("LOGOUT")
        self.assertResult(r, "OK")
        self.assertEqual(len(r.matching(rb"BYE\b")), 1, r)
        self.assertTrue(r.untagged[-1].upper().startswith(b"BYE"), r)
        c.expect_eof()

    def test_capability_after_login(self):
        c = self.connect_imap()
        r = c.login(ALICE)
        self.assertResult(r, "OK")
        caps = caps_of(c.cmd("CAPABILITY"))
        self.assertLessEqual(CAPS_ALWAYS, caps)
        self.assertNotIn("LOGINDISABLED", caps)
        if r.code_name == "CAPABILITY":
            self.assertEqual(caps_of(r.code.split(b" ", 1)[1]), caps)
        self.assertResult(c.cmd("LOGOUT"), "OK")
        c.expect_eof()

    def test_lower_case_commands_and_tags(self):
        c = self.connect_imap()
        r = c.command("capability", tag="x.1")
        self.assertResult(r, "OK")
        self.assertEqual(r.tag, "x.1")
        r = c.command('login %s "%s"' % (ALICE, PASSWORD), tag="b2")
        self.assertResult(r, "OK")
        self.assertResult(c.command("select inbox"), "OK")
        self.assertResult(c.command("logout"), "OK")


class PlaintextNeverTests(Base):
    CONF = {"auth_plaintext": "never", "max_bad_commands": 100}

    def test_logindisabled_without_tls(self):
        c = self.connect_imap()
        caps = caps_of(c.cmd("CAPABILITY"))
        self.assertIn("LOGINDISABLED", caps)
        self.assertNotIn("AUTH=PLAIN", caps)
        self.assertNotIn("STARTTLS", caps)  # no certificate
        self.assertResult(c.login(ALICE), "NO", "BAD")
        self.assertResult(c.cmd("AUTHENTICATE PLAIN " + sasl_plain()), "NO", "BAD")
        # still not authenticated
        self.assertResult(c.cmd("SELECT INBOX"), "BAD", "NO")
        self.assertResult(c.cmd("STARTTLS"), "BAD", "NO")


class TLSTests(Base):
    TLS = True
    ENV = {"SOCKMAIL_TEST_PEER": IMAP_NOT_LOOPBACK}

    def test_starttls_capabilities_and_login(self):
        c = self.connect_imap()
        caps = caps_of(c.cmd("CAPABILITY"))
        self.assertIn("STARTTLS", caps)
        self.assertIn("LOGINDISABLED", caps)  # not loopback, not TLS
        self.assertNotIn("AUTH=PLAIN", caps)
        r = c.login(ALICE)
        self.assertResult(r, "NO", "BAD")
        self.assertResult(c.cmd("AUTHENTICATE PLAIN " + sasl_plain()), "NO", "BAD")
        self.assertResult(c.cmd("STARTTLS"), "OK")
        c.starttls()
        caps = caps_of(c.cmd("CAPABILITY"))
        self.assertNotIn("STARTTLS", caps)
        self.assertNotIn("LOGINDISABLED", caps)
        self.assertLessEqual(CAPS_BEFORE_LOGIN, caps)
        self.assertResult(c.cmd("STARTTLS"), "BAD", "NO")  # already active
        self.assertResult(c.login(ALICE), "OK")
        self.assertResult(c.cmd("SELECT INBOX"), "OK")
        self.assertResult(c.cmd("LOGOUT"), "OK")
        c.expect_eof()

    def test_plaintext_after_starttls_not_executed(self):
        c = self.connect_imap()
        # the LOGIN travels in plaintext behind the STARTTLS, in one packet
        c.send("S1 STARTTLS\r\nS2 LOGIN %s %s\r\n" % (ALICE, imap_quote(PASSWORD)))
        self.assertEqual(c.read_response()[:6], b"S1 OK ")
        c.starttls()
        # had S2 been executed after the handshake we would be logged in
        # (and read its completion here instead of S3's)
        r = c.cmd("SELECT INBOX")
        self.assertResult(r, "BAD", "NO", client=c)
        r = c.cmd("NOOP")
        self.assertResult(r, "OK")
        self.assertResult(c.login(ALICE), "OK")

    def test_authenticate_after_starttls(self):
        c = self.connect_imap()
        self.assertResult(c.cmd("STARTTLS"), "OK")
        c.starttls()
        self.assertResult(c.cmd("AUTHENTICATE PLAIN " + sasl_plain()), "OK")
        self.assertResult(c.cmd("EXAMINE INBOX"), "OK")

    def test_imaplib_starttls(self):
        m = self.track(imaplib.IMAP4("127.0.0.1", self.srv.port, timeout=TIMEOUT))
        self.assertIn("STARTTLS", m.capabilities)
        self.assertIn("LOGINDISABLED", m.capabilities)
        m.starttls(ssl_context=tls_client_context())
        self.assertNotIn("LOGINDISABLED", m.capabilities)
        self.assertEqual(m.login(ALICE, PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX"), ("OK", [b"0"]))
        self.assertEqual(m.logout()[0], "BYE")


class ImplicitTLSTests(Base):
    TLS = True
    ARGS = ("--tls=implicit",)
    ENV = {"SOCKMAIL_TEST_PEER": IMAP_NOT_LOOPBACK}

    def test_imap4_ssl(self):
        self.put(simple("over tls"))
        m = self.track(imaplib.IMAP4_SSL("127.0.0.1", self.srv.port,
                                         ssl_context=tls_client_context(),
                                         timeout=TIMEOUT))
        self.assertNotIn("STARTTLS", m.capabilities)
        self.assertNotIn("LOGINDISABLED", m.capabilities)
        self.assertIn("AUTH=PLAIN", m.capabilities)
        self.assertEqual(m.login(ALICE, PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX"), ("OK", [b"1"]))
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], lf_to_crlf(simple("over tls")))
        m.logout()

    def test_tls_cut_mid_append(self):
        """The connection dies inside a TLS record half way through an
        APPEND literal: nothing is stored, the handler ends, the next
        session finds the folder as it was."""
        c = self.login()
        c.send("A1 APPEND INBOX {100000}\r\n")
        self.assertTrue(c.read_response().startswith(b"+"))
        c.send(b"Subject: cut\r\n\r\n" + b"x" * 50000)
        cut_tls_mid_record(c.sock)
        self.assertTrue(self.srv.wait_handlers_exit(), "the handler stays")
        for sub in ("new", "cur", "tmp"):
            self.assertEqual(self.files(sub), [], sub)
        c2 = self.login(select="INBOX")
        self.assertEqual(c2.selected.numbers("EXISTS"), [0])

    def test_plaintext_client_gets_no_greeting(self):
        s = self.track(socket.create_connection(("127.0.0.1", self.srv.port),
                                                timeout=TIMEOUT))
        s.sendall(b"A1 LOGIN alice secret\r\n")
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        self.assertFalse(data.startswith(b"* OK"), data)
        self.assertTrue(self.srv.wait_handlers_exit())


class AuthTests(Base):

    def test_login_good_bad_and_state(self):
        c = self.connect_imap()
        r = c.login(ALICE, "wrong password")
        self.assertResult(r, "NO", code="AUTHENTICATIONFAILED")
        r = c.login("nobody@example.org", PASSWORD)
        self.assertResult(r, "NO", code="AUTHENTICATIONFAILED")
        self.assertResult(c.cmd("SELECT INBOX"), "BAD", "NO")
        self.assertResult(c.login(ALICE), "OK")
        self.assertResult(c.login(ALICE), "BAD", "NO")  # not in this state
        self.assertResult(c.cmd("AUTHENTICATE PLAIN " + sasl_plain()), "BAD", "NO")
        self.assertEqual(self.srv.stderr_lines(r"wrong password"), [])

    def test_login_with_literals(self):
        c = self.connect_imap()
        r = c.command("LOGIN ", Literal(ALICE), " ", Literal(PASSWORD))
        self.assertResult(r, "OK")
        self.assertEqual(len(r.continuations), 2, r)

    def test_login_atom_arguments(self):
        c = self.connect_imap()
        self.assertResult(c.cmd("LOGIN %s %s" % (ALICE, PASSWORD)), "OK")

    def test_authenticate_sasl_ir(self):
        c = self.connect_imap()
        r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain())
        self.assertResult(r, "OK")
        self.assertEqual(r.continuations, [])
        self.assertResult(c.cmd("SELECT INBOX"), "OK")

    def test_authenticate_continuation(self):
        c = self.connect_imap()
        c.send("A1 AUTHENTICATE PLAIN\r\n")
        cont = c.read_response()
        self.assertRegex(cont, rb"^\+( |$)")  # "+ " and an empty challenge
        self.assertIn(cont, (b"+", b"+ "))
        c.send(sasl_plain(authzid=ALICE) + "\r\n")
        r = c.read_until_tagged("A1")
        self.assertResult(r, "OK")
        self.assertResult(c.cmd("SELECT INBOX"), "OK")

    def test_authenticate_cancel_and_failures(self):
        c = self.connect_imap()
        c.send("A1 AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.read_response().startswith(b"+"))
        c.send("*\r\n")
        self.assertResult(c.read_until_tagged("A1"), "BAD")  # RFC 3501 6.2.2
        c.send("A2 AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.read_response().startswith(b"+"))
        c.send("not base64!\r\n")
        self.assertResult(c.read_until_tagged("A2"), "BAD")
        r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain(password="wrong"))
        self.assertResult(r, "NO", code="AUTHENTICATIONFAILED")
        r = c.cmd("AUTHENTICATE PLAIN " + b64("nonul"))
        self.assertResult(r, "NO", "BAD")
        r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain(authzid=BOB))
        self.assertResult(r, "NO")
        self.assertResult(c.cmd("AUTHENTICATE CRAM-MD5"), "NO", "BAD")
        self.assertResult(c.cmd("SELECT INBOX"), "BAD", "NO")
        self.assertResult(c.cmd("AUTHENTICATE PLAIN " + sasl_plain()), "OK")

    def test_imaplib_authenticate_plain(self):
        m = self.track(imaplib.IMAP4("127.0.0.1", self.srv.port, timeout=TIMEOUT))
        typ, _ = m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (ALICE, PASSWORD)).encode())
        self.assertEqual(typ, "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        m.logout()

    def test_commands_in_the_wrong_state(self):
        c = self.connect_imap()
        for cmd in ("SELECT INBOX", "EXAMINE INBOX", "CREATE x", "DELETE x",
                    "RENAME x y", "LIST \"\" *", "LSUB \"\" *", "STATUS INBOX (MESSAGES)",
                    "SUBSCRIBE x", "APPEND INBOX {1+}\r\nx", "FETCH 1 FLAGS",
                    "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "COPY 1 Trash",
                    "UID FETCH 1 FLAGS", "EXPUNGE", "CLOSE", "CHECK", "IDLE",
                    "NAMESPACE", "UNSELECT", "MOVE 1 Trash", "ENABLE CONDSTORE"):
            self.assertResult(c.cmd(cmd), "BAD", "NO", client=c)
        self.assertResult(c.login(ALICE), "OK")
        for cmd in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL",
                    "COPY 1 Trash", "MOVE 1 Trash", "UID FETCH 1 FLAGS",
                    "EXPUNGE", "CLOSE", "UNSELECT", "UID EXPUNGE 1"):
            self.assertResult(c.cmd(cmd), "BAD", "NO", client=c)
        self.assertResult(c.cmd("NOOP"), "OK")
        self.assertEqual(c.bye, None)


class SelectTests(Base):

    def test_select_responses(self):
        self.put(simple("first"), sub="cur", flags="S")
        c = self.login(select="INBOX")   # claims the first one's \Recent
        self.assertResult(c.cmd("LOGOUT"), "OK")
        self.put(simple("second"))
        self.put(simple("third"))
        c = self.login()
        r = self.select(c)
        self.assertEqual(r.code_name, "READ-WRITE", r)
        flags = r.matching(rb"FLAGS ")
        self.assertEqual(len(flags), 1, r)
        self.assertLessEqual(SYSTEM_FLAGS, set(f.decode() for f in imap_parse_all(flags[0][6:])[0]))
        perm = r.matching(rb"OK \[PERMANENTFLAGS ")
        self.assertEqual(len(perm), 1, r)
        pf = set(f.decode() for f in imap_parse(perm[0], len(b"OK [PERMANENTFLAGS "))[0])
        self.assertLessEqual(SYSTEM_FLAGS | {"\\*"}, pf)
        self.assertEqual(r.numbers("EXISTS"), [3])
        self.assertEqual(r.numbers("RECENT"), [2])
        uv = r.matching(rb"OK \[UIDVALIDITY [0-9]+\]")
        self.assertEqual(len(uv), 1, r)
        un = r.matching(rb"OK \[UIDNEXT [0-9]+\]")
        self.assertEqual(len(un), 1, r)
        self.assertEqual(int(re.search(rb"UIDNEXT ([0-9]+)", un[0]).group(1)), 4)
        unseen = r.matching(rb"OK \[UNSEEN ")
        if unseen:
            self.assertRegex(unseen[0], rb"^OK \[UNSEEN 2\]")
        # new/ was emptied into cur/ by the read-write SELECT
        self.assertEqual(self.files("new"), [])
        self.assertEqual(len(self.cur_files()), 3)
        f = self.fetch(c, "1:*", "(UID FLAGS)")
        self.assertEqual([int(f[i].items["UID"]) for i in (1, 2, 3)], [1, 2, 3])
        self.assertEqual(f[1].flags(), {"\\Seen"})
        self.assertEqual(f[2].flags(), {"\\Recent"})
        self.assertEqual(f[3].flags(), {"\\Recent"})

    def test_examine_is_read_only(self):
        self.put(simple("one"))
        c = self.login()
        r = self.select(c, examine=True)
        self.assertEqual(r.code_name, "READ-ONLY", r)
        self.assertEqual(r.numbers("EXISTS"), [1])
        # BODY[] does not set \Seen in a read-only folder; STORE is refused
        f = self.fetch(c, "1", "(BODY[] FLAGS)")
        self.assertNotIn("\\Seen", f[1].flags())
        self.assertResult(c.cmd("STORE 1 +FLAGS (\\Flagged)"), "NO")
        self.assertResult(c.cmd("EXPUNGE"), "NO", "BAD")
        self.assertEqual(len(self.files("new")), 1)   # left alone
        # a read-write SELECT afterwards still sees it as recent
        r = self.select(c)
        self.assertEqual(r.numbers("RECENT"), [1])

    def test_select_nonexistent_and_reselect(self):
        c = self.login(select="INBOX")
        r = c.cmd("SELECT nosuchfolder")
        self.assertResult(r, "NO")
        # a failed SELECT leaves no folder selected
        self.assertResult(c.cmd("FETCH 1 FLAGS"), "BAD", "NO")
        self.assertResult(c.cmd("SELECT inbox"), "OK")  # INBOX in any case
        self.assertResult(c.cmd("SELECT Sent"), "OK")

    def test_uids_persist_across_sessions(self):
        for i in range(3):
            self.put(simple("m%d" % i))
        c = self.login()
        r1 = self.select(c)
        v1 = r1.matching(rb"OK \[UIDVALIDITY ")[0]
        u1 = self.uids(c)
        self.assertEqual(u1, [1, 2, 3])
        self.assertResult(c.cmd("LOGOUT"), "OK")
        self.assertTrue(self.srv.wait_handlers_exit())
        tdb = os.path.join(self.folder_dir(), "sockmail-imap.tdb")
        self.assertTrue(os.path.exists(tdb), "no per-folder tdb at %s" % tdb)
        self.put(simple("m3"))
        c = self.login()
        r2 = self.select(c)
        self.assertEqual(r2.matching(rb"OK \[UIDVALIDITY ")[0], v1)
        self.assertEqual(self.uids(c), [1, 2, 3, 4])
        # and the Seen flag set in one session is there in the next
        self.assertResult(c.cmd("STORE 2 +FLAGS.SILENT (\\Seen)"), "OK")
        self.assertResult(c.cmd("LOGOUT"), "OK")
        c = self.login(select="INBOX")
        self.assertEqual(self.fetch(c, "2", "(FLAGS)")[2].flags(), {"\\Seen"})


class MailboxTests(Base):

    def test_create_delete_rename_on_disk(self):
        c = self.login()
        self.assertResult(c.cmd("CREATE work"), "OK")
        work = self.folder_dir("work")
        for sub in ("cur", "new", "tmp"):
            self.assertTrue(os.path.isdir(os.path.join(work, sub)), sub)
        self.assertTrue(os.path.isfile(os.path.join(work, "maildirfolder")))
        self.assertResult(c.cmd("CREATE work"), "NO")
        self.assertResult(c.cmd("CREATE INBOX"), "NO")
        self.assertResult(c.cmd("CREATE a"), "OK")
        self.assertResult(c.cmd("CREATE a/b"), "OK")
        self.assertTrue(os.path.isdir(os.path.join(self.folder_dir(), ".a.b", "cur")))
        # a trailing separator: a hint (RFC 3501 6.3.3), never an empty level
        self.assertResult(c.cmd("CREATE x/y/"), "OK", "NO")
        self.assertEqual([n for n in os.listdir(self.folder_dir())
                          if n.endswith(".") or ".." in n], [])
        self.put(simple("in work"), folder="work")
        # RENAME keeps the messages; refused onto an existing name
        self.assertResult(c.cmd("RENAME work play"), "OK")
        self.assertFalse(os.path.exists(work))
        self.assertEqual(len(self.files("new", "play") + self.files("cur", "play")), 1)
        self.assertResult(c.cmd("RENAME play a"), "NO")
        self.assertResult(c.cmd("RENAME nosuch other"), "NO")
        # RENAME of a parent renames its children
        self.assertResult(c.cmd("RENAME a c"), "OK")
        self.assertTrue(os.path.isdir(os.path.join(self.folder_dir(), ".c.b", "cur")))
        self.assertFalse(os.path.exists(os.path.join(self.folder_dir(), ".a.b")))
        self.assertFalse(os.path.exists(os.path.join(self.folder_dir(), ".a")))
        self.assertEqual(self.status(c, "play")["MESSAGES"], 1)
        self.assertResult(c.cmd("DELETE play"), "OK")
        self.assertFalse(os.path.exists(self.folder_dir("play")))
        self.assertResult(c.cmd("DELETE play"), "NO")
        self.assertResult(c.cmd("DELETE INBOX"), "NO")
        # a parent: refused or made \Noselect, the child stays either way
        c.cmd("DELETE c")
        self.assertTrue(os.path.isdir(os.path.join(self.folder_dir(), ".c.b", "cur")))
        self.assertIn("c/b", self.list_names(c, "", "*"))
        # the default folders are still there
        for name in DEFAULT_FOLDERS:
            self.assertTrue(os.path.isdir(os.path.join(self.folder_dir(name), "cur")))

    def test_create_with_dot_and_mutf7(self):
        c = self.login()
        self.assertResult(c.cmd("CREATE v1.2"), "OK")
        self.assertTrue(os.path.isdir(os.path.join(self.folder_dir(), ".v1&AC4-2", "cur")))
        self.assertResult(c.cmd("CREATE &ZeVnLIqe-"), "OK")  # Japanese
        self.assertTrue(os.path.isdir(os.path.join(self.folder_dir(), ".&ZeVnLIqe-", "cur")))
        names = self.list_names(c, "", "*")
        self.assertIn("v1.2", names)
        self.assertIn("&ZeVnLIqe-", names)
        self.assertResult(c.cmd("CREATE &Jjo"), "NO", "BAD")   # broken mUTF-7
        self.assertResult(c.cmd("SELECT v1.2"), "OK")

    def test_rename_inbox(self):
        names = [self.put(simple("r%d" % i)) for i in range(2)]
        c = self.login()
        self.assertResult(c.cmd("CREATE INBOX/child"), "OK", "NO")
        self.assertResult(c.cmd("RENAME INBOX old-inbox"), "OK")
        old = self.folder_dir("old-inbox")
        moved = self.files("new", "old-inbox") + self.files("cur", "old-inbox")
        self.assertEqual(len(moved), 2, moved)
        for n in names:
            self.assertTrue(any(m.startswith(n) for m in moved), (n, moved))
        self.assertEqual([n for n in self.files("new") + self.cur_files()], [])
        self.assertTrue(os.path.isdir(os.path.join(self.folder_dir(), "cur")))
        self.assertTrue(os.path.isfile(os.path.join(old, "maildirfolder")))
        self.assertEqual(self.status(c, "INBOX")["MESSAGES"], 0)
        self.assertEqual(self.status(c, "old-inbox")["MESSAGES"], 2)
        # the other folders were not moved
        for name in DEFAULT_FOLDERS:
            self.assertTrue(os.path.isdir(self.folder_dir(name)))
        r = self.select(c)
        self.assertEqual(r.numbers("EXISTS"), [0])

    def test_list_wildcards_special_use_children(self):
        c = self.login()
        for name in ("work", "a", "a/b", "a/b/c"):
            self.assertResult(c.cmd("CREATE " + name), "OK")
        every = self.list_names(c, "", "*")
        self.assertEqual(set(every), {"INBOX", "Sent", "Drafts", "Trash", "Junk",
                                      "Archive", "work", "a", "a/b", "a/b/c"})
        for name, (attrs, delim) in every.items():
            self.assertEqual(delim, "/")
        for name, use in DEFAULT_FOLDERS.items():
            self.assertIn(use, every[name][0], name)
            self.assertIn("\\hasnochildren", every[name][0], name)
        self.assertIn("\\haschildren", every["a"][0])
        self.assertIn("\\haschildren", every["a/b"][0])
        self.assertIn("\\hasnochildren", every["a/b/c"][0])
        self.assertIn("\\hasnochildren", every["work"][0])
        self.assertNotIn("\\sent", every["work"][0])
        top = self.list_names(c, "", "%")
        self.assertEqual(set(top), {"INBOX", "Sent", "Drafts", "Trash", "Junk",
                                    "Archive", "work", "a"})
        self.assertEqual(set(self.list_names(c, "", "a/%")), {"a/b"})
        self.assertEqual(set(self.list_names(c, "a/", "%")), {"a/b"})
        self.assertEqual(set(self.list_names(c, "", "a/*")), {"a/b", "a/b/c"})
        self.assertEqual(set(self.list_names(c, "", "*/b*")), {"a/b", "a/b/c"})
        self.assertEqual(set(self.list_names(c, "", "inbox")), {"INBOX"})
        self.assertEqual(set(self.list_names(c, "", "nomatch*")), set())
        # the delimiter query
        r = c.cmd('LIST "" ""')
        self.assertResult(r, "OK")
        self.assertEqual(len(r.untagged), 1, r)
        attrs, delim, name = parse_list_line(r.untagged[0])
        self.assertEqual((delim, name), ("/", ""))
        self.assertIn("\\noselect", attrs)

    def test_subscribe_lsub(self):
        c = self.login()
        self.assertResult(c.cmd("CREATE work"), "OK")
        self.assertResult(c.cmd("CREATE v1.2"), "OK")
        self.assertResult(c.cmd("SUBSCRIBE work"), "OK")
        self.assertResult(c.cmd("SUBSCRIBE v1.2"), "OK")
        subs = os.path.join(self.folder_dir(), "subscriptions")
        with open(subs, "rb") as f:
            lines = f.read().split(b"\n")
        self.assertIn(b"work", lines)
        self.assertIn(b"v1.2", lines)
        self.assertIn("work", self.list_names(c, "", "*", "LSUB"))
        self.assertIn("v1.2", self.list_names(c, "", "*", "LSUB"))
        self.assertResult(c.cmd("UNSUBSCRIBE work"), "OK")
        self.assertNotIn("work", self.list_names(c, "", "*", "LSUB"))
        with open(subs, "rb") as f:
            self.assertNotIn(b"work", f.read().split(b"\n"))
        # no temp files left next to it (the lock file stays)
        self.assertEqual([n for n in os.listdir(self.folder_dir())
                          if "subscriptions" in n and
                          n not in ("subscriptions", "subscriptions.lock")], [])

    def test_subscribe_concurrent(self):
        """Sessions subscribing at once lose none of each other's names
        (the read-modify-write of the file is under a lock)."""
        names = ["f%d" % i for i in range(24)]
        setup = self.login()
        for n in names:
            self.assertResult(setup.cmd("CREATE " + n), "OK")
        conns = [self.login() for _ in range(3)]
        results = {}

        def subscriber(k, conn):
            results[k] = [conn.cmd("SUBSCRIBE " + n).status
                          for n in names[k::3]]
        threads = [threading.Thread(target=subscriber, args=(k, c))
                   for k, c in enumerate(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 6)
        self.assertEqual(sorted(results), [0, 1, 2], results)
        for k in results:
            self.assertEqual(results[k], ["OK"] * 8, results)
        self.assertEqual(sorted(self.list_names(setup, "", "f*", "LSUB")),
                         sorted(names))
        with open(os.path.join(self.folder_dir(), "subscriptions"), "rb") as f:
            self.assertEqual(sorted(f.read().decode().split()), sorted(names))

    def test_status(self):
        self.put(simple("s1"), sub="cur", flags="S")
        self.put(simple("s2"))
        self.put(simple("s3"), folder="Trash")
        c = self.login()
        st = self.status(c, "INBOX")
        self.assertEqual(st["MESSAGES"], 2)
        self.assertEqual(st["UNSEEN"], 1)
        self.assertEqual(st["UIDNEXT"], 3)
        self.assertGreater(st["UIDVALIDITY"], 0)
        self.assertIn(st["RECENT"], (1, 2))  # whether the cur/ one counts
        self.assertEqual(self.status(c, "Trash", "MESSAGES")["MESSAGES"], 1)
        self.assertResult(c.cmd("STATUS nosuch (MESSAGES)"), "NO")
        self.assertResult(c.cmd("STATUS INBOX (FROBS)"), "BAD")
        # STATUS claims nothing: the files stay in new/
        self.assertEqual(len(self.files("new")), 1)
        r = self.select(c)
        uv = r.matching(rb"OK \[UIDVALIDITY ")[0]
        self.assertEqual(int(re.search(rb"UIDVALIDITY ([0-9]+)", uv).group(1)),
                         st["UIDVALIDITY"])

    def test_namespace_id_enable_check(self):
        c = self.login()
        r = c.cmd("NAMESPACE")
        self.assertResult(r, "OK")
        ns = r.matching(rb"NAMESPACE ")
        self.assertEqual(len(ns), 1, r)
        self.assertEqual(imap_parse_all(ns[0][len(b"NAMESPACE "):]),
                         [[[b"", b"/"]], None, None])
        r = c.cmd("ID NIL")
        self.assertResult(r, "OK")
        ids = r.matching(rb"ID ")
        self.assertEqual(len(ids), 1, r)
        val = imap_parse_all(ids[0][3:])
        self.assertEqual(len(val), 1)
        self.assertTrue(val[0] is None or isinstance(val[0], list), val)
        r = c.cmd('ID ("name" "e2e test" "version" "1.0")')
        self.assertResult(r, "OK")
        self.assertEqual(len(r.matching(rb"ID ")), 1, r)
        r = c.cmd("ENABLE CONDSTORE X-UNKNOWN")
        self.assertResult(r, "OK")
        for line in r.matching(rb"ENABLED"):
            self.assertNotIn(b"CONDSTORE", line.upper())
            self.assertNotIn(b"X-UNKNOWN", line.upper())
        self.select(c)
        self.assertResult(c.cmd("CHECK"), "OK")
        self.assertResult(c.cmd("UNSELECT"), "OK")
        self.assertResult(c.cmd("CHECK"), "BAD", "NO")
        self.assertResult(c.cmd("UNSELECT"), "BAD", "NO")


class AppendTests(Base):

    def test_append_flags_date_on_disk(self):
        msg = MP_CRLF
        c = self.login()
        r = c.command('APPEND INBOX (\\Seen \\Flagged $Label) "14-Nov-2023 22:13:20 +0000" ',
                      Literal(msg))
        self.assertResult(r, "OK", code="APPENDUID", client=c)
        _, uv, uid = r.code.split()
        uv, uid = int(uv), int(uid)
        name = self.only_cur_file()
        self.assertEqual(self.files("new"), [])
        m = CUR_NAME.match(name)
        self.assertIsNotNone(m, name)
        content = self.read_file(name)
        self.assertEqual(content, crlf_to_lf(msg))  # LF on disk
        self.assertNotIn(b"\r", content)
        self.assertEqual(int(m.group("s")), len(content))
        self.assertEqual(int(m.group("w")), len(msg))
        fl = m.group("flags")
        self.assertEqual(fl, "".join(sorted(fl)), "flags not in ASCII order")
        self.assertEqual(set(fl), {"F", "S", "a"})  # keyword 0 is 'a'
        self.assertEqual(int(os.stat(os.path.join(self.folder_dir(), "cur", name)).st_mtime),
                         MP_WHEN)
        r = self.select(c)
        self.assertEqual(int(re.search(rb"UIDVALIDITY ([0-9]+)",
                                       r.matching(rb"OK \[UIDVALIDITY")[0]).group(1)), uv)
        f = self.fetch(c, str(uid), "(INTERNALDATE FLAGS RFC822.SIZE BODY.PEEK[])", uid=True)
        self.assertEqual(list(f), [1])
        f = f[1]
        self.assertEqual(int(f.items["UID"]), uid)
        self.assertEqual(internaldate(f.items["INTERNALDATE"]), MP_WHEN)
        self.assertEqual(f.flags() - {"\\Recent"}, {"\\Seen", "\\Flagged", "$Label"})
        self.assertEqual(int(f.items["RFC822.SIZE"]), len(msg))
        self.assertEqual(f.items["BODY[]"], msg)
        # the keyword is now in the folder's FLAGS
        flags = r.matching(rb"FLAGS ")[0]
        self.assertIn(b"$Label", flags)

    def test_append_plain_and_to_selected(self):
        c = self.login(select="INBOX")
        msg = lf_to_crlf(simple("plain append"))
        r = c.command("APPEND INBOX ", Literal(msg))
        self.assertResult(r, "OK", code="APPENDUID")
        uid = int(r.code.split()[2])
        self.assertEqual(uid, 1)
        exists = r.numbers("EXISTS") + c.cmd("NOOP").numbers("EXISTS")
        self.assertIn(1, exists)
        name = self.only_cur_file()
        self.assertEqual(flags_on_disk(name), "")
        r = c.command("APPEND INBOX () ", Literal(msg))
        self.assertResult(r, "OK", code="APPENDUID")
        self.assertEqual(int(r.code.split()[2]), 2)
        self.assertResult(c.command("APPEND nosuch ", Literal(msg)), "NO", code="TRYCREATE")
        self.assertResult(c.command('APPEND INBOX "31-Foo-2023 00:00:00 +0000" ',
                                    Literal(msg)), "BAD")
        self.assertResult(c.command("APPEND INBOX (\\Bogus) ", Literal(msg)), "BAD", "NO")
        self.assertResult(c.cmd("NOOP"), "OK")
        # append into another folder
        r = c.command("APPEND Drafts (\\Draft) ", Literal(msg))
        self.assertResult(r, "OK", code="APPENDUID")
        self.assertEqual(flags_on_disk(self.only_cur_file("Drafts")), "D")

    def test_append_literal_plus(self):
        c = self.login()
        msg = lf_to_crlf(simple("literal plus"))
        c.send(b"P1 APPEND INBOX (\\Seen) {%d+}\r\n" % len(msg) + msg + b"\r\n")
        r = c.read_until_tagged("P1")   # no "+" may come (it would be an error)
        self.assertResult(r, "OK", code="APPENDUID")
        self.assertEqual(flags_on_disk(self.only_cur_file()), "S")
        self.assertEqual(self.read_file(self.only_cur_file()), crlf_to_lf(msg))
        # LOGIN with non-synchronising literals, raw
        c2 = self.connect_imap()
        c2.send(b"L1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (
            len(ALICE), ALICE.encode(), len(PASSWORD), PASSWORD.encode()))
        self.assertResult(c2.read_until_tagged("L1"), "OK")

    def test_append_20mb(self):
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_\r\n"
        parts = [b"From: <big@remote.example>\r\nSubject: big\r\n\r\n"]
        size = len(parts[0])
        while size < 20 * 1024 * 1024:
            parts.append(line)
            size += len(line)
        msg = b"".join(parts)
        c = self.login()
        r = c.command("APPEND INBOX ", Literal(msg))
        self.assertResult(r, "OK", code="APPENDUID")
        uid = int(r.code.split()[2])
        name = self.only_cur_file()
        m = CUR_NAME.match(name)
        self.assertEqual(int(m.group("w")), len(msg))
        self.assertEqual(int(m.group("s")), len(msg) - msg.count(b"\n"))
        self.assertEqual(hashlib.sha256(self.read_file(name)).hexdigest(),
                         hashlib.sha256(crlf_to_lf(msg)).hexdigest())
        self.select(c)
        f = self.fetch(c, str(uid), "(RFC822.SIZE BODY.PEEK[])", uid=True)[1]
        self.assertEqual(int(f.items["RFC822.SIZE"]), len(msg))
        self.assertEqual(hashlib.sha256(f.items["BODY[]"]).hexdigest(),
                         hashlib.sha256(msg).hexdigest())


class AppendLimitTests(Base):
    CONF = {"message_size_limit": "1M", "max_bad_commands": 1000}

    def test_too_big_refused_before_the_data(self):
        c = self.login()
        c.send("T1 APPEND INBOX {2000000}\r\n")
        r = c.read_until_tagged("T1")   # a "+" would raise here
        self.assertResult(r, "NO", code="TOOBIG")
        self.assertResult(c.cmd("NOOP"), "OK")
        # a literal over the general bound outside APPEND: BAD, no "+"
        c.send("T2 SELECT {300000}\r\n")
        self.assertResult(c.read_until_tagged("T2"), "BAD")
        c.send("T3 LOGIN {300000}\r\n")
        self.assertResult(c.read_until_tagged("T3"), "BAD")
        self.assertResult(c.cmd("NOOP"), "OK")
        # just below the limit is fine
        msg = b"Subject: fits\r\n\r\n" + b"x" * 1000 + b"\r\n"
        self.assertResult(c.command("APPEND INBOX ", Literal(msg)), "OK")
        self.assertEqual(len(self.cur_files()), 1)

    def test_too_big_non_synchronising(self):
        c = self.login()
        # RFC 7888: the client sends the data at once; the server cannot
        # refuse it before it comes: "* BYE" and close (imap_parser.h)
        c.send("T1 APPEND INBOX {2000000+}\r\n")
        r = c.read_response()
        self.assertRegex(r, rb"^\* BYE ")
        c.expect_eof()
        self.assertEqual(self.cur_files() + self.files("tmp"), [])


class FetchTests(Base):

    def setUp(self):
        super().setUp()
        self.put(MP, when=MP_WHEN)
        self.put(simple("second", b"line one\nline two\n"), sub="cur", flags="S",
                 when=MP_WHEN + 60)
        self.c = self.login(select="INBOX")

    def test_bodystructure_exact(self):
        f = self.fetch(self.c, "1", "(BODYSTRUCTURE)")[1]
        got = f.raw["BODYSTRUCTURE"]
        expect = {_bs(MP_BODYSTRUCTURE, False), _bs(MP_BODYSTRUCTURE, True)}
        self.assertEqual(got.lower(), _bs(MP_BODYSTRUCTURE, False).lower())
        self.assertIn(got, expect)
        f = self.fetch(self.c, "1", "(BODY)")[1]
        got = f.raw["BODY"]
        self.assertEqual(got.lower(), _bs(MP_BODY, False).lower())
        self.assertIn(got, {_bs(MP_BODY, False), _bs(MP_BODY, True)})
        # BODYSTRUCTURE does not set \Seen
        self.assertNotIn("\\Seen", self.fetch(self.c, "1", "FLAGS")[1].flags())

    def test_envelope_exact(self):
        f = self.fetch(self.c, "1", "(ENVELOPE)")[1]
        self.assertEqual(f.items["ENVELOPE"], imap_parse(MP_ENVELOPE)[0])
        self.assertEqual(f.raw["ENVELOPE"], MP_ENVELOPE)

    def test_sections(self):
        f = self.fetch(self.c, "1", "(BODY.PEEK[] BODY.PEEK[HEADER] "
                       "BODY.PEEK[HEADER.FIELDS (From Subject)] "
                       "BODY.PEEK[HEADER.FIELDS.NOT (From To Cc Subject Date Message-ID)] "
                       "BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[1.MIME] "
                       "BODY.PEEK[2.MIME] BODY.PEEK[TEXT]<0.10> BODY.PEEK[]<5.3> "
                       "BODY.PEEK[1]<0.1000> BODY.PEEK[3])")[1].items
        self.assertEqual(f["BODY[]"], MP_CRLF)
        self.assertEqual(f["BODY[HEADER]"], MP_HEADER)
        self.assertEqual(f["BODY[HEADER.FIELDS (FROM SUBJECT)]"],
                         b"From: Alice Example <alice@example.org>\r\n"
                         b"Subject: multipart test\r\n\r\n")
        self.assertEqual(f["BODY[HEADER.FIELDS.NOT (FROM TO CC SUBJECT DATE MESSAGE-ID)]"],
                         b"MIME-Version: 1.0\r\n"
                         b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n")
        self.assertEqual(f["BODY[TEXT]"], MP_TEXT)
        self.assertEqual(f["BODY[1]"], MP_PART1)
        self.assertEqual(f["BODY[2]"], MP_PART2)
        self.assertEqual(f["BODY[1.MIME]"], MP_PART1_MIME)
        self.assertEqual(f["BODY[2.MIME]"], MP_PART2_MIME)
        self.assertEqual(f["BODY[TEXT]<0>"], b"preamble\r\n")
        self.assertEqual(f["BODY[]<5>"], MP_CRLF[5:8])
        self.assertEqual(f["BODY[1]<0>"], MP_PART1)  # partial past the end
        self.assertIn(f["BODY[3]"], (b"", None))  # no such part
        self.assertNotIn("\\Seen", self.fetch(self.c, "1", "FLAGS")[1].flags())
        # a single-part message: part 1 is its body
        f = self.fetch(self.c, "2", "(BODY.PEEK[1] BODY.PEEK[TEXT] RFC822.HEADER)")[2].items
        self.assertEqual(f["BODY[1]"], b"line one\r\nline two\r\n")
        self.assertEqual(f["BODY[TEXT]"], b"line one\r\nline two\r\n")
        self.assertEqual(f["RFC822.HEADER"],
                         lf_to_crlf(simple("second", b"")))

    def test_sizes_dates_flags_uid(self):
        f = self.fetch(self.c, "1:2", "(RFC822.SIZE INTERNALDATE FLAGS UID)")
        self.assertEqual(int(f[1].items["RFC822.SIZE"]), len(MP_CRLF))
        names = sorted(self.cur_files())
        # RFC822.SIZE is the CRLF length, which is the W= of the file
        for seq, name in ((1, names[0]), (2, names[1])):
            self.assertEqual(int(f[seq].items["RFC822.SIZE"]),
                             int(CUR_NAME.match(name).group("w")))
        self.assertEqual(internaldate(f[1].items["INTERNALDATE"]), MP_WHEN)
        self.assertEqual(internaldate(f[2].items["INTERNALDATE"]), MP_WHEN + 60)
        self.assertEqual(f[1].flags(), {"\\Recent"})
        # (whether a never seen file put into cur/ is \Recent is the
        # server's choice)
        self.assertEqual(f[2].flags() - {"\\Recent"}, {"\\Seen"})
        self.assertEqual([int(f[i].items["UID"]) for i in (1, 2)], [1, 2])

    def test_macros(self):
        f = self.fetch(self.c, "1", "ALL")[1]
        self.assertEqual(set(f.items), {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"})
        f = self.fetch(self.c, "1", "FAST")[1]
        self.assertEqual(set(f.items), {"FLAGS", "INTERNALDATE", "RFC822.SIZE"})
        f = self.fetch(self.c, "1", "FULL")[1]
        self.assertEqual(set(f.items), {"FLAGS", "INTERNALDATE", "RFC822.SIZE",
                                        "ENVELOPE", "BODY"})
        self.assertEqual(f.raw["ENVELOPE"], MP_ENVELOPE)
        # UID FETCH always includes UID
        f = self.fetch(self.c, "1", "FLAGS", uid=True)[1]
        self.assertEqual(set(f.items), {"UID", "FLAGS"})

    def test_non_peek_sets_seen(self):
        r = self.c.cmd("FETCH 1 (BODY[1])")
        self.assertResult(r, "OK")
        f = r.fetches()[1]
        self.assertEqual(f.items["BODY[1]"], MP_PART1)
        # the flag change is reported in the same or the next response
        if "FLAGS" not in f.items:
            f = self.fetch(self.c, "1", "FLAGS")[1]
        self.assertIn("\\Seen", f.flags())
        self.assertEqual(flags_on_disk(sorted(self.cur_files())[0]), "S")
        # RFC822 and RFC822.TEXT set it too; RFC822.HEADER does not
        self.assertResult(self.c.cmd("STORE 1:2 -FLAGS.SILENT (\\Seen)"), "OK")
        f = self.fetch(self.c, "1", "RFC822.HEADER")[1]
        self.assertEqual(f.items["RFC822.HEADER"], MP_HEADER)
        self.assertNotIn("\\Seen", self.fetch(self.c, "1", "FLAGS")[1].flags())
        f = self.fetch(self.c, "2", "RFC822.TEXT")[2]
        self.assertEqual(f.items["RFC822.TEXT"], b"line one\r\nline two\r\n")
        self.assertIn("\\Seen", self.fetch(self.c, "2", "FLAGS")[2].flags())
        f = self.fetch(self.c, "1", "RFC822")[1]
        self.assertEqual(f.items["RFC822"], MP_CRLF)
        self.assertIn("\\Seen", self.fetch(self.c, "1", "FLAGS")[1].flags())

    def test_sequence_sets_and_errors(self):
        c = self.c
        self.assertEqual(sorted(self.fetch(c, "2:1", "UID")), [1, 2])
        self.assertEqual(sorted(self.fetch(c, "*", "UID")), [2])
        self.assertEqual(sorted(self.fetch(c, "1,2,1", "UID")), [1, 2])
        self.assertResult(c.cmd("FETCH 3 FLAGS"), "BAD", "NO")
        self.assertResult(c.cmd("FETCH 0 FLAGS"), "BAD")
        self.assertResult(c.cmd("FETCH 1 (FLAGS"), "BAD")
        self.assertResult(c.cmd("FETCH 1 FROBNICATE"), "BAD")
        self.assertResult(c.cmd("FETCH 1 BODY[4.BOGUS]"), "BAD")
        self.assertResult(c.cmd("FETCH x FLAGS"), "BAD")
        # UIDs that do not exist are not an error; n:* includes the last one
        r = c.cmd("UID FETCH 99 FLAGS")
        self.assertResult(r, "OK")
        self.assertEqual(r.fetches(), {})
        self.assertEqual(sorted(self.fetch(c, "99:*", "FLAGS", uid=True)), [2])
        self.assertEqual(sorted(self.fetch(c, "1:*", "FLAGS", uid=True)), [1, 2])
        # 4294967295 is the highest valid UID, not another spelling of "*"
        r = c.cmd("UID FETCH 4294967295 FLAGS")
        self.assertResult(r, "OK")
        self.assertEqual(r.fetches(), {})
        r = c.cmd("UID STORE 4294967295 +FLAGS (\\Flagged)")
        self.assertResult(r, "OK")
        self.assertEqual(r.fetches(), {})
        r = c.cmd("UID SEARCH UID 4294967295")
        self.assertResult(r, "OK")
        self.assertEqual(r.search(), [])
        for fd in self.fetch(c, "1:*", "FLAGS").values():
            self.assertNotIn("\\Flagged", fd.flags())
        self.assertResult(c.cmd("UID FETCH 4294967296 FLAGS"), "BAD")


class StoreCopyMoveTests(Base):

    def setUp(self):
        super().setUp()
        self.names = [self.put(simple("m%d" % i), when=1700000000 + i) for i in range(3)]
        self.c = self.login(select="INBOX")

    def disk_flags(self, seq):
        """The :2, flags of message seq (1-based; files sorted by name are
        in UID order here)."""
        names = sorted(self.cur_files())
        return flags_on_disk(names[seq - 1])

    def test_store_flags_and_keywords(self):
        c = self.c
        r = c.cmd("STORE 1 +FLAGS (\\Flagged)")
        self.assertResult(r, "OK")
        self.assertEqual(r.fetches()[1].flags() - {"\\Recent"}, {"\\Flagged"})
        self.assertEqual(self.disk_flags(1), "F")
        r = c.cmd("STORE 1 -FLAGS.SILENT (\\Flagged)")
        self.assertResult(r, "OK")
        self.assertEqual(r.fetches(), {})
        self.assertEqual(self.disk_flags(1), "")
        r = c.cmd("STORE 2 FLAGS (\\Seen $Work)")
        self.assertResult(r, "OK")
        self.assertEqual(r.fetches()[2].flags() - {"\\Recent"}, {"\\Seen", "$Work"})
        self.assertEqual(self.disk_flags(2), "Sa")
        r = c.cmd("STORE 1:3 +FLAGS (\\Answered $Other)")
        self.assertResult(r, "OK")
        fl = r.fetches()
        self.assertEqual(fl[2].flags() - {"\\Recent"}, {"\\Seen", "$Work", "\\Answered", "$Other"})
        self.assertEqual(self.disk_flags(2), "RSab")
        self.assertEqual(self.disk_flags(3), "Rb")
        r = c.cmd("UID STORE 3 +FLAGS (\\Draft)")
        self.assertResult(r, "OK")
        f = r.fetches()[3]
        self.assertEqual(int(f.items["UID"]), 3)
        self.assertEqual(self.disk_flags(3), "DRb")
        self.assertResult(c.cmd("STORE 1 +FLAGS (\\Bogus)"), "BAD", "NO")
        self.assertResult(c.cmd("STORE 1 FROB (\\Seen)"), "BAD")
        self.assertResult(c.cmd("STORE 4 +FLAGS (\\Seen)"), "BAD", "NO")
        # keywords survive a new session and are in FLAGS/PERMANENTFLAGS
        self.assertResult(c.cmd("LOGOUT"), "OK")
        c = self.login()
        r = self.select(c)
        self.assertIn(b"$Work", r.matching(rb"FLAGS ")[0])
        self.assertIn(b"\\*", r.matching(rb"OK \[PERMANENTFLAGS")[0])
        f = self.fetch(c, "1:3", "FLAGS")
        self.assertEqual(f[2].flags(), {"\\Seen", "$Work", "\\Answered", "$Other"})
        self.assertEqual(f[3].flags(), {"\\Draft", "\\Answered", "$Other"})

    def test_store_seen_renames_file(self):
        c = self.c
        before = sorted(self.cur_files())
        self.assertResult(c.cmd("STORE 2 +FLAGS.SILENT (\\Seen)"), "OK")
        after = sorted(self.cur_files())
        self.assertEqual(after[0], before[0])
        self.assertEqual(after[1], before[1].rsplit(":2,", 1)[0] + ":2,S")
        self.assertEqual(self.files("new"), [])

    def test_expunge_check_close_unselect(self):
        c = self.c
        self.assertResult(c.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)"), "OK")
        self.assertEqual(self.disk_flags(2), "T")
        self.assertResult(c.cmd("CHECK"), "OK")
        r = c.cmd("EXPUNGE")
        self.assertResult(r, "OK")
        self.assertEqual(r.numbers("EXPUNGE"), [2])
        self.assertEqual(len(self.cur_files()), 2)
        self.assertFalse(any(n.startswith(self.names[1]) for n in self.cur_files()))
        self.assertEqual(self.uids(c), [1, 3])
        # UNSELECT does not expunge
        self.assertResult(c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)"), "OK")
        self.assertResult(c.cmd("UNSELECT"), "OK")
        self.assertEqual(len(self.cur_files()), 2)
        # CLOSE does, silently
        self.select(c)
        r = c.cmd("CLOSE")
        self.assertResult(r, "OK")
        self.assertEqual(r.numbers("EXPUNGE"), [])
        self.assertEqual(len(self.cur_files()), 1)
        self.assertTrue(self.cur_files()[0].startswith(self.names[2]))
        self.assertResult(c.cmd("FETCH 1 FLAGS"), "BAD", "NO")  # not selected
        # CLOSE after EXAMINE expunges nothing
        self.select(c)
        self.assertResult(c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)"), "OK")
        self.select(c, examine=True)
        self.assertResult(c.cmd("CLOSE"), "OK")
        self.assertEqual(len(self.cur_files()), 1)

    def test_uid_expunge(self):
        c = self.c
        self.assertResult(c.cmd("STORE 1:3 +FLAGS.SILENT (\\Deleted)"), "OK")
        r = c.cmd("UID EXPUNGE 2")
        self.assertResult(r, "OK")
        self.assertEqual(r.numbers("EXPUNGE"), [2])
        self.assertEqual(self.uids(c), [1, 3])
        f = self.fetch(c, "1:*", "FLAGS")
        self.assertIn("\\Deleted", f[1].flags())
        self.assertIn("\\Deleted", f[2].flags())
        r = c.cmd("UID EXPUNGE 1:3")
        self.assertResult(r, "OK")
        check_expunges(self, 2, r.numbers("EXPUNGE"), [1, 2])
        self.assertEqual(self.cur_files(), [])

    def test_copy_copyuid(self):
        c = self.c
        self.assertResult(c.cmd("STORE 1 +FLAGS.SILENT (\\Flagged $Kw)"), "OK")
        r = c.cmd("COPY 1:2 Trash")
        self.assertResult(r, "OK", code="COPYUID")
        _, uv, src, dst = r.code.split()
        self.assertEqual(uid_set_list(src), [1, 2])
        self.assertEqual(uid_set_list(dst), [1, 2])
        self.assertEqual(self.status(c, "Trash", "UIDVALIDITY")["UIDVALIDITY"], int(uv))
        trash = {self.read_file(n, folder="Trash"): n for n in self.cur_files("Trash")}
        self.assertEqual(sorted(trash), sorted([simple("m0"), simple("m1")]))
        self.assertEqual(set(flags_on_disk(trash[simple("m0")])), {"F", "a"})
        self.assertEqual(flags_on_disk(trash[simple("m1")]), "")
        self.assertEqual(len(self.cur_files()), 3)  # the source is untouched
        r = c.cmd("UID COPY 3 Trash")
        self.assertResult(r, "OK", code="COPYUID")
        self.assertEqual(r.code.split()[2:], [b"3", b"3"])
        self.assertResult(c.cmd("COPY 1 nosuch"), "NO", code="TRYCREATE")
        self.assertResult(c.cmd("COPY 9 Trash"), "BAD", "NO")
        r = c.cmd("UID COPY 9 Trash")   # no such UID: nothing to copy
        self.assertResult(r, "OK", "NO")
        # the copies carry the flags and keywords (by name) and dates
        self.select(c, "Trash")
        f = self.fetch(c, "1:3", "(FLAGS INTERNALDATE)")
        self.assertEqual(f[1].flags() - {"\\Recent"}, {"\\Flagged", "$Kw"})
        self.assertEqual(internaldate(f[1].items["INTERNALDATE"]), 1700000000)

    def test_move(self):
        c = self.c
        r = c.cmd("MOVE 2 Archive")
        self.assertResult(r, "OK")
        cu = r.matching(rb"OK \[COPYUID ")
        self.assertEqual(len(cu), 1, r)
        _, uv, src, dst = re.match(rb"OK \[([^\]]*)\]", cu[0]).group(1).split()
        self.assertEqual((uid_set_list(src), uid_set_list(dst)), ([2], [1]))
        self.assertEqual(r.numbers("EXPUNGE"), [2])
        # COPYUID comes before the EXPUNGE
        self.assertLess(r.untagged.index(cu[0]), r.untagged.index(b"2 EXPUNGE"))
        self.assertEqual(len(self.cur_files()), 2)
        self.assertEqual([self.read_file(n, folder="Archive")
                          for n in self.cur_files("Archive")], [simple("m1")])
        r = c.cmd("UID MOVE 1:3 Archive")
        self.assertResult(r, "OK")
        check_expunges(self, 2, r.numbers("EXPUNGE"), [1, 2])
        self.assertEqual(self.cur_files(), [])
        self.assertEqual(len(self.cur_files("Archive")), 3)
        self.assertResult(c.cmd("MOVE 1 Archive"), "BAD", "NO")  # empty now
        self.assertEqual(self.status(c, "Archive", "MESSAGES UIDNEXT"),
                         {"MESSAGES": 3, "UIDNEXT": 4})


class SearchTests(Base):
    """Four messages (plus one expunged first, so that UIDs are seq + 1)
    with known headers, encodings, dates, sizes and flags."""

    def setUp(self):
        super().setUp()
        self.put(simple("junk"), when=ts(2022, 12, 1))
        self.put(b"From: Alice <alice@example.org>\nTo: bob@example.org\n"
                 b"Subject: hello world\nDate: Tue, 10 Jan 2023 12:00:00 +0000\n"
                 b"Message-ID: <s1@example.org>\nX-Custom: alpha-value\n\n"
                 b"plain body apple\n", when=ts(2023, 1, 10))
        self.put(b"From: carol@example.org\nTo: alice@example.org\n"
                 b"Subject: =?UTF-8?B?" + base64.b64encode("Überraschung".encode()) + b"?=\n"
                 b"Date: Wed, 15 Feb 2023 12:00:00 +0000\nMessage-ID: <s2@example.org>\n"
                 b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                 b"Content-Transfer-Encoding: base64\n\n"
                 + base64.encodebytes(b"secret banana text\n"), when=ts(2023, 2, 15))
        self.put(b"From: Bob <bob@example.org>\nTo: alice@example.org\n"
                 b"Cc: carol@example.org\nSubject: Re: meeting\n"
                 b"Date: Mon, 20 Mar 2023 12:00:00 +0000\nMessage-ID: <s3@example.org>\n"
                 b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                 b"Content-Transfer-Encoding: quoted-printable\n\n"
                 b"caf=C3=A9 cherry\n" + b"filler line of text\n" * 200,
                 when=ts(2023, 3, 20))
        self.put(b"From: dave@example.org\nTo: dave@example.org\nSubject: other\n"
                 b"Date: Tue, 25 Apr 2023 12:00:00 +0000\nMessage-ID: <s4@example.org>\n\n"
                 b"nothing\n", when=ts(2023, 4, 25))
        c = self.c = self.login(select="INBOX")
        self.assertResult(c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)"), "OK")
        self.assertEqual(c.cmd("EXPUNGE").numbers("EXPUNGE"), [1])
        for seq, flags in ((1, "\\Answered"), (2, "\\Draft"), (3, "\\Deleted"),
                           (4, "\\Seen \\Flagged $Label")):
            self.assertResult(c.cmd("STORE %d +FLAGS.SILENT (%s)" % (seq, flags)), "OK")

    def search(self, *parts, uid=False):
        r = self.c.command("%sSEARCH " % ("UID " if uid else ""), *parts)
        self.assertResult(r, "OK", client=self.c)
        return sorted(r.search())

    def test_keys(self):
        cases = [
            ("ALL", [1, 2, 3, 4]),
            ("SUBJECT hello", [1]), ("SUBJECT HELLO", [1]),
            ('SUBJECT "Re: meet"', [3]),
            ("FROM bob", [3]), ("FROM alice", [1]), ("FROM Alice", [1]),
            ("TO dave", [4]), ("CC carol", [3]), ("BCC carol", []),
            ("HEADER X-Custom alpha", [1]), ('HEADER X-Custom ""', [1]),
            ("HEADER Message-ID <s2@example.org>", [2]),
            ("BODY apple", [1]), ("BODY banana", [2]), ("BODY cherry", [3]),
            ("BODY meeting", []), ("TEXT meeting", [3]), ("TEXT banana", [2]),
            ("TEXT alpha-value", [1]),
            ("OR SUBJECT hello FROM bob", [1, 3]),
            ("NOT FROM bob", [1, 2, 4]),
            ("(OR FROM alice FROM bob) NOT SUBJECT meeting", [1]),
            ("OR OR SUBJECT hello SUBJECT other (FROM bob CC carol)", [1, 3, 4]),
            ("SEEN", [4]), ("UNSEEN", [1, 2, 3]), ("FLAGGED", [4]),
            ("UNFLAGGED", [1, 2, 3]), ("ANSWERED", [1]), ("UNANSWERED", [2, 3, 4]),
            ("DRAFT", [2]), ("UNDRAFT", [1, 3, 4]), ("DELETED", [3]),
            ("UNDELETED", [1, 2, 4]), ("KEYWORD $Label", [4]),
            ("UNKEYWORD $Label", [1, 2, 3]), ("KEYWORD $Nothing", []),
            ("RECENT", [1, 2, 3, 4]), ("NEW", [1, 2, 3]), ("OLD", []),
            ("SINCE 1-Mar-2023", [3, 4]), ("BEFORE 1-Mar-2023", [1, 2]),
            ("ON 15-Feb-2023", [2]), ("SINCE 15-Feb-2023 BEFORE 20-Mar-2023", [2]),
            ("SENTSINCE 1-Mar-2023", [3, 4]), ("SENTBEFORE 15-Feb-2023", [1]),
            ("SENTON 20-Mar-2023", [3]),
            ("LARGER 3000", [3]), ("SMALLER 3000", [1, 2, 4]),
            ("UID 3:4", [2, 3]), ("UID 4:3", [2, 3]), ("UID 5:*", [4]),
            ("UID 2,5", [1, 4]), ("UID 1", []), ("UID 99:*", [4]),
            ("2,4", [2, 4]), ("3:2", [2, 3]), ("*", [4]), ("2:*", [2, 3, 4]),
            ("1:2 SUBJECT hello", [1]),
            ("SUBJECT nothing-like-this", []),
        ]
        for key, expect in cases:
            self.assertEqual(self.search(key), expect, key)

    def test_uid_search(self):
        self.assertEqual(self.search("ALL", uid=True), [2, 3, 4, 5])
        self.assertEqual(self.search("SUBJECT hello", uid=True), [2])
        self.assertEqual(self.search("UID 1:3", uid=True), [2, 3])
        self.assertEqual(self.search("1:2", uid=True), [2, 3])

    def test_charset_and_literals(self):
        # RFC 2047 subject, base64 body, quoted-printable UTF-8 body
        self.assertEqual(self.search("CHARSET UTF-8 SUBJECT ", Literal("Überr")), [2])
        self.assertEqual(self.search("CHARSET UTF-8 TEXT ", Literal("raschung")), [2])
        self.assertEqual(self.search("CHARSET UTF-8 BODY ", Literal("café")), [3])
        self.assertEqual(self.search("CHARSET UTF-8 TEXT ", Literal("café cherry")), [3])
        self.assertEqual(self.search("CHARSET us-ascii SUBJECT hello"), [1])
        self.assertEqual(self.search("SUBJECT ", Literal("hello")), [1])
        self.assertEqual(self.search("SUBJECT ", Literal("hello", plus=True)), [1])
        r = self.c.cmd("SEARCH CHARSET X-NO-SUCH-CHARSET SUBJECT x")
        self.assertResult(r, "NO", code="BADCHARSET")

    def test_bad_searches(self):
        c = self.c
        for bad in ("SEARCH FROBNICATE", "SEARCH SINCE 31-Foo-2023", "SEARCH LARGER x",
                    "SEARCH (SUBJECT x", "SEARCH SUBJECT x)", "SEARCH OR SUBJECT x",
                    "SEARCH", "SEARCH " + "(" * 40 + "ALL" + ")" * 40):
            self.assertResult(c.cmd(bad), "BAD", client=c)
        self.assertResult(c.cmd("NOOP"), "OK")
        # a long chain of NOTs: answered either way, the session goes on
        r = c.cmd("SEARCH " + "NOT " * 1000 + "ALL")
        self.assertResult(r, "OK", "BAD", client=c)
        if r.status == "OK":
            self.assertEqual(r.search(), [])
        self.assertResult(c.cmd("NOOP"), "OK")
        # nesting within the bound is fine
        self.assertEqual(self.search("(" * 10 + "ALL" + ")" * 10), [1, 2, 3, 4])


class ConcurrencyTests(Base):

    def test_expunge_and_flags_seen_by_other_session(self):
        for i in range(3):
            self.put(simple("c%d" % i))
        a = self.login(select="INBOX")
        b = self.login(select="INBOX")
        # flags changed by A: B hears of them at its NOOP
        self.assertResult(a.cmd("STORE 1 +FLAGS.SILENT (\\Flagged)"), "OK")
        r = b.cmd("NOOP")
        self.assertResult(r, "OK")
        f = r.fetches()
        self.assertIn(1, f, r)
        self.assertIn("\\Flagged", f[1].flags())
        # A expunges message 2
        self.assertResult(a.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)"), "OK")
        self.assertEqual(a.cmd("EXPUNGE").numbers("EXPUNGE"), [2])
        # B: no EXPUNGE during FETCH, STORE, SEARCH, however they end
        r = b.cmd("FETCH 1:3 (UID FLAGS)")
        self.assertIn(r.status, ("OK", "NO"), r)
        self.assertEqual(r.numbers("EXPUNGE"), [], r)
        r = b.cmd("FETCH 2 BODY.PEEK[]")
        self.assertIn(r.status, ("OK", "NO"), r)
        self.assertEqual(r.numbers("EXPUNGE"), [], r)
        r = b.cmd("STORE 3 +FLAGS (\\Answered)")
        self.assertIn(r.status, ("OK", "NO"), r)
        self.assertEqual(r.numbers("EXPUNGE"), [], r)
        r = b.cmd("SEARCH ALL")
        self.assertEqual(r.numbers("EXPUNGE"), [], r)
        # the sequence numbers still stand (2 may or may not be matched)
        self.assertIn(sorted(r.search()), ([1, 2, 3], [1, 3]))
        # ... and gets it at NOOP
        r = b.cmd("NOOP")
        self.assertResult(r, "OK")
        self.assertEqual(r.numbers("EXPUNGE"), [2], r)
        self.assertEqual(self.uids(b), [1, 3])
        f = self.fetch(b, "1:2", "FLAGS")
        self.assertIn("\\Flagged", f[1].flags())
        self.assertIn("\\Answered", f[2].flags())
        # A sees B's flag change
        r = a.cmd("NOOP")
        self.assertIn("\\Answered", r.fetches()[2].flags())

    def test_recent_goes_to_one_session(self):
        self.put(simple("r1"))
        self.put(simple("r2"))
        a = self.login()
        ra = self.select(a)
        self.assertEqual(ra.numbers("RECENT"), [2])
        b = self.login()
        rb = self.select(b)
        self.assertEqual(rb.numbers("RECENT"), [0])
        self.assertEqual(self.fetch(b, "1:2", "FLAGS")[1].flags(), set())
        self.assertEqual(self.fetch(a, "1:2", "FLAGS")[1].flags(), {"\\Recent"})
        self.put(simple("r3"))
        na, nb = a.cmd("NOOP"), b.cmd("NOOP")
        self.assertIn(3, na.numbers("EXISTS") + a.cmd("NOOP").numbers("EXISTS"))
        self.assertIn(3, nb.numbers("EXISTS") + b.cmd("NOOP").numbers("EXISTS"))
        fa = "\\Recent" in self.fetch(a, "3", "FLAGS")[3].flags()
        fb = "\\Recent" in self.fetch(b, "3", "FLAGS")[3].flags()
        self.assertEqual(fa + fb, 1, "\\Recent of message 3 in A: %s, in B: %s" % (fa, fb))
        # a third session gets none
        c = self.login()
        self.assertEqual(self.select(c).numbers("RECENT"), [0])

    def test_append_from_other_session_and_unique_uids(self):
        a = self.login(select="INBOX")
        b = self.login()
        c = self.login()
        msg = lf_to_crlf(simple("parallel"))
        results = {}

        def appender(conn, key):
            out = []
            for _ in range(15):
                r = conn.command("APPEND INBOX ", Literal(msg))
                out.append((r.status, r.code))
            results[key] = out
        threads = [threading.Thread(target=appender, args=(b, "b")),
                   threading.Thread(target=appender, args=(c, "c"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 6)
        uids = []
        for key in ("b", "c"):
            self.assertEqual(len(results.get(key, [])), 15, results)
            for status, code in results[key]:
                self.assertEqual(status, "OK", results[key])
                self.assertTrue(code.startswith(b"APPENDUID "), code)
                uids.append(int(code.split()[2]))
        self.assertEqual(sorted(uids), list(range(1, 31)))
        r = a.cmd("NOOP")
        self.assertIn(30, r.numbers("EXISTS") + a.cmd("NOOP").numbers("EXISTS"))
        self.assertEqual(self.uids(a), list(range(1, 31)))
        self.assertEqual(len(self.cur_files()), 30)


class IdleTests(Base):

    def idle(self, c, tag="I1"):
        c.send(tag + " IDLE\r\n")
        r = c.read_response()
        self.assertTrue(r.startswith(b"+"), r)
        return tag

    def read_until(self, c, regex):
        """Untagged responses read until one matches regex (the socket
        timeout, 30 s, is the only limit)."""
        seen = []
        while True:
            r = c.read_response()
            self.assertTrue(r.startswith(b"* "), (r, seen))
            seen.append(r[2:])
            if re.match(regex, r[2:], re.I):
                return seen

    def test_idle_sees_smtp_delivery(self):
        smtp_port = start_listener(self.srv, "smtp-handler")
        c = self.login(select="INBOX")
        tag = self.idle(c)
        msg = (b"From: <x@remote.example>\r\nTo: <alice@example.org>\r\n"
               b"Subject: pushed\r\nMessage-ID: <idle1@remote.example>\r\n\r\n"
               b"delivered while idling\r\n")
        s = smtplib.SMTP("127.0.0.1", smtp_port, timeout=TIMEOUT)
        self.track(s)
        s.sendmail("x@remote.example", [ALICE], msg)
        s.quit()
        self.read_until(c, rb"1 EXISTS$")
        c.send("DONE\r\n")
        r = c.read_until_tagged(tag)
        self.assertResult(r, "OK")
        f = self.fetch(c, "1", "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject)])")[1]
        where = [("cur", n) for n in self.cur_files()] + [("new", n) for n in self.files("new")]
        self.assertEqual(len(where), 1, where)
        sub, name = where[0]
        content = self.read_file(name, sub)
        self.assertEqual(int(f.items["RFC822.SIZE"]),
                         int(re.search(r",W=([0-9]+)", name).group(1)))
        self.assertEqual(int(f.items["RFC822.SIZE"]), len(lf_to_crlf(content)))
        self.assertTrue(content.endswith(crlf_to_lf(msg)), content)
        self.assertEqual(f.items["BODY[HEADER.FIELDS (SUBJECT)]"], b"Subject: pushed\r\n\r\n")

    def test_idle_sees_other_sessions(self):
        for i in range(2):
            self.put(simple("i%d" % i))
        a = self.login(select="INBOX")
        b = self.login(select="INBOX")
        tag = self.idle(a)
        self.assertResult(b.cmd("STORE 1 +FLAGS.SILENT (\\Flagged)"), "OK")
        seen = self.read_until(a, rb"1 FETCH ")
        self.assertIn(b"\\Flagged", seen[-1])
        self.assertResult(b.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)"), "OK")
        self.assertResult(b.cmd("EXPUNGE"), "OK")
        self.read_until(a, rb"2 EXPUNGE$")
        self.assertResult(b.command("APPEND INBOX ", Literal(lf_to_crlf(simple("new")))), "OK")
        self.read_until(a, rb"2 EXISTS$")
        a.send("DONE\r\n")
        self.assertResult(a.read_until_tagged(tag), "OK")
        self.assertEqual(self.uids(a), [1, 3])

    def test_idle_reports_changes_made_before_it(self):
        """A change another session made after this one's last command is
        reported as soon as IDLE starts: the watch is set before "+" and
        the folder looked at once (it was set after "+", so a change in
        between was lost until some later one woke the session)."""
        for i in range(2):
            self.put(simple("p%d" % i))
        a = self.login(select="INBOX")
        b = self.login(select="INBOX")
        self.assertResult(b.cmd("STORE 2 +FLAGS.SILENT (\\Seen)"), "OK")
        tag = self.idle(a)
        seen = self.read_until(a, rb"2 FETCH ")
        self.assertIn(b"\\Seen", seen[-1])
        a.send("DONE\r\n")
        self.assertResult(a.read_until_tagged(tag), "OK")

    def test_idle_done_at_once_and_bad_continuation(self):
        c = self.login(select="INBOX")
        tag = self.idle(c)
        c.send("done\r\n")  # any case (RFC 2177 grammar: "DONE" is an atom)
        self.assertResult(c.read_until_tagged(tag), "OK")
        tag = self.idle(c, "I2")
        c.send("NOT DONE\r\n")
        # the IDLE ends (BAD, or OK and then the line as a command of
        # tag "NOT"); either way the session stays in step
        while True:
            r = c.read_response()
            if r.startswith(b"I2 "):
                self.assertRegex(r, rb"^I2 (BAD|OK)")
                break
            self.assertRegex(r, rb"^(\* |NOT BAD)")
        self.assertResult(c.cmd("NOOP"), "OK")
        # IDLE without a selected folder: refused, or idles until DONE
        self.assertResult(c.cmd("UNSELECT"), "OK")
        c.send("I3 IDLE\r\n")
        r = c.read_response()
        if r.startswith(b"+"):
            c.send("DONE\r\n")
            self.assertResult(c.read_until_tagged("I3"), "OK")
        else:
            self.assertRegex(r, rb"^I3 (BAD|NO)")
        self.assertResult(c.cmd("NOOP"), "OK")


class IdleTimeoutTests(Base):
    CONF = {"imap_idle_timeout": "3s", "max_bad_commands": 100}

    def test_idle_timeout_bye(self):
        c = self.login(select="INBOX")
        c.send("I1 IDLE\r\n")
        self.assertTrue(c.read_response().startswith(b"+"))
        r = c.read_response()   # within the 30 s socket timeout
        self.assertRegex(r, rb"^\* BYE ")
        c.expect_eof(timeout=WAIT)


class BoundsTests(Base):

    def test_long_line_then_session_goes_on(self):
        c = self.login(select="INBOX")
        # longer than IMAP_LINE_MAX (64 KiB); its tail must not be taken as
        # a command of its own
        c.send(b"L1 NOOP " + b"x" * 70000 + b" L9 LOGOUT\r\nL2 NOOP\r\n")
        r = c.read_until_tagged("L1")
        self.assertResult(r, "BAD")
        r = c.read_until_tagged("L2")     # the next completion is L2's
        self.assertResult(r, "OK")
        self.assertIsNone(c.bye)
        # a long line with a literal announced at its end
        c.send(b"L3 NOOP " + b"y" * 70000 + b" {5}\r\n")
        r = c.read_response()
        if r.startswith(b"* BYE"):      # allowed: it cannot resynchronise
            c.expect_eof()
            return
        self.assertRegex(r, rb"^L3 BAD")
        self.assertResult(c.cmd("NOOP"), "OK")

    def test_lying_literal(self):
        c = self.connect_imap()
        c.send("Y1 LOGIN alice@example.org {20}\r\n")
        self.assertTrue(c.read_response().startswith(b"+"))
        # 18 octets that look like a command, and 2 more: all literal data
        c.send(b"short\r\nY2 LOGOUT\r\nab")
        c.send(b"\r\n")
        r = c.read_until_tagged("Y1")
        self.assertResult(r, "NO", "BAD")
        self.assertIsNone(c.bye)
        self.assertResult(c.cmd("NOOP"), "OK")
        self.assertResult(c.cmd("SELECT INBOX"), "BAD", "NO")  # not logged in
        # malformed and overflowing literal lengths: BAD, no "+"
        for bad in (b"{abc}", b"{99999999999999999999}", b"{-1}", b"{5"):
            c.send(b"Y3 LOGIN alice " + bad + b"\r\n")
            self.assertResult(c.read_until_tagged("Y3"), "BAD")
        self.assertResult(c.cmd("NOOP"), "OK")

    def test_nul_in_command_and_literal(self):
        c = self.connect_imap()
        self.assertResult(c.command(b"NOOP\0x"), "BAD")
        self.assertResult(c.command(b"LOGIN alice\0 x"), "BAD")
        r = c.command("LOGIN ", Literal(b"alice@example.org"), " ", Literal(b"pa\0ss"))
        self.assertResult(r, "BAD", "NO")
        self.assertResult(c.cmd("NOOP"), "OK")
        self.assertResult(c.login(ALICE), "OK")

    def test_unbalanced_and_garbage(self):
        self.put(simple("x"))
        c = self.login(select="INBOX")
        for bad in ("FETCH 1 (FLAGS", "FETCH 1 FLAGS)", "STORE 1 +FLAGS ((\\Seen)",
                    "STORE 1 +FLAGS (\\Seen))", "FETCH 1 BODY[HEADER.FIELDS (From]",
                    "FETCH 1 BODY[", "FROBNICATE", "SELECT", "LOGIN",
                    'SELECT "unterminated', 'CREATE "bad\\q"', "UID", "UID FROB 1",
                    "FETCH 1 " + "(" * 50 + "FLAGS" + ")" * 50):
            self.assertResult(c.cmd(bad), "BAD", client=c)
        # lines without a command, or without a valid tag
        c.send("TAGONLY\r\n")
        self.assertResult(c.read_until_tagged("TAGONLY"), "BAD")
        for line in (b"* NOOP\r\n", b"+ NOOP\r\n", b"(x NOOP\r\n", b"x{ NOOP\r\n"):
            c.send(line)
            r = c.read_response()
            self.assertRegex(r, rb"^(\* BAD|\S+ BAD)", line)
        c.send("\r\n")   # an empty line is ignored
        self.assertResult(c.cmd("NOOP"), "OK")
        self.assertEqual(len(self.cur_files()), 1)


class BadCommandLimitTests(Base):
    CONF = {"max_bad_commands": 3}

    def test_too_many_bad_commands(self):
        c = self.connect_imap()
        got_bye = None
        for i in range(1, 6):
            c.send("B%d FROBNICATE\r\n" % i)
            while True:
                r = c.read_response()
                if r.startswith(b"* BYE"):
                    got_bye = i
                    break
                if r.startswith(b"B%d " % i):
                    self.assertRegex(r, rb"^B\d+ BAD")
                    break
            if got_bye:
                break
        self.assertIn(got_bye, (3, 4), "BYE after %s bad commands" % got_bye)
        c.expect_eof()


class TraversalTests(Base):
    """Mailbox names that try to leave the user's Maildir."""

    # ("a/" is left out: RFC 3501 6.3.3 lets CREATE take a trailing
    # separator as a hint)
    BAD_NAMES = ["../x", "a/../../b", "INBOX/../..", "/etc", "a//b", "..", ".",
                 "a/.", "a/..", "/", "../../../../etc/passwd", "../bob",
                 "Sent/../../bob", "./x", "a/./b", "x/../../..", "//", "/a/b",
                 "x\x01y", "x\ty", "x\x7fy", "x\x1b[31my", "a\nb", "a\rb", "",
                 "../" * 40 + "tmp", "y" * 300,
                 "&Jjo",        # broken modified UTF-7
                 "&AC8-x",      # "/x" with the '/' hidden in base64
                 "&AC4AC4-",    # ".." hidden in base64
                 ]

    def arg(self, name):
        """The name as an IMAP argument: quoted when it can be."""
        if all(32 <= ord(ch) < 127 for ch in name) and '"' not in name and "\\" not in name:
            return imap_quote(name)
        return Literal(name)

    def snapshot(self):
        out = set()
        for root, dirs, files in os.walk(self.srv.dir):
            for n in dirs + files:
                out.add(os.path.relpath(os.path.join(root, n), self.srv.dir))
        return out

    def test_traversal_refused_and_nothing_outside(self):
        self.put(simple("src"))
        c = self.login()
        self.assertResult(c.cmd("CREATE src"), "OK")
        self.put(simple("in src"), folder="src")
        self.select(c, "src")
        self.select(c, "INBOX")
        # canaries next to and above the Maildir
        canaries = [os.path.join(self.srv.mail_dir, "example.org", "x"),
                    os.path.join(self.srv.dir, "x")]
        before = self.snapshot()
        msg = lf_to_crlf(simple("traversal"))
        for name in self.BAD_NAMES:
            a = self.arg(name)
            tried = [
                ("CREATE ", a), ("APPEND ", a, " ", Literal(msg)),
                ("COPY 1 ", a), ("UID COPY 1 ", a), ("MOVE 1 ", a),
                ("RENAME src ", a), ("RENAME ", a, " renamed"),
                ("DELETE ", a), ("STATUS ", a, " (MESSAGES)"),
                ("EXAMINE ", a), ("SELECT ", a),
            ]
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
                # a subscription may name a mailbox that does not exist,
                # but never a line break or other control character
                tried.append(("SUBSCRIBE ", a))
            for parts in tried:
                r = c.command(*parts)
                self.assertResult(r, "NO", "BAD", client=c)
                if parts[0] in ("SELECT ", "EXAMINE "):
                    self.select(c, "INBOX")
        self.assertIsNone(c.bye)
        after = self.snapshot()
        self.assertEqual(sorted(after - before), [], "paths created")
        self.assertEqual(sorted(before - after), [], "paths removed")
        for p in canaries:
            self.assertFalse(os.path.exists(p), p)
        self.assertEqual(self.status(c, "src", "MESSAGES")["MESSAGES"], 1)

    def test_list_patterns_stay_inside(self):
        c = self.login()
        self.assertResult(c.cmd("CREATE mine"), "OK")
        own = {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "mine"}
        for ref, pattern in (("", "../*"), ("../", "*"), ("", "/*"), ("/", "*"),
                             ("", "*/../*"), ("..", "*"), ("", "%/.."),
                             ("../../", "%"), ("", "../bob/*"), ("~bob/", "*"),
                             ("", "../%"), ("", ".*")):
            r = c.command("LIST ", imap_quote(ref), " ", imap_quote(pattern))
            self.assertResult(r, "OK", "NO", "BAD", client=c)
            for u in r.matching(rb"LIST "):
                _, _, name = parse_list_line(u)
                self.assertTrue(name in own or name == "", (ref, pattern, name))
        for name in ("../bob", "../../example.org/bob", "/", ".."):
            self.assertResult(c.command("STATUS ", self.arg(name), " (MESSAGES)"),
                              "NO", "BAD")

    def test_level_starting_with_dot(self):
        c = self.login()
        before = self.snapshot()
        root = os.path.relpath(self.folder_dir(), self.srv.dir)
        r = c.cmd('CREATE ".hidden"')
        self.assertResult(r, "OK", "NO")
        new = sorted(p for p in self.snapshot() - before
                     if not os.path.basename(p).startswith("subscriptions"))
        if r.status == "NO":
            self.assertEqual(new, [])
            return
        # allowed: it is one more folder inside the Maildir, listed as such
        self.assertTrue(new, "CREATE OK but nothing on disk")
        for p in new:
            self.assertTrue(p.startswith(root + os.sep), p)
        tops = {p[len(root) + 1:].split(os.sep)[0] for p in new}
        self.assertEqual(len(tops), 1, tops)
        top = tops.pop()
        self.assertTrue(top.startswith(".") and top not in (".", ".."), top)
        self.assertFalse(top.startswith(".."), "the '.' must be encoded: %r" % top)
        self.assertTrue(os.path.isdir(os.path.join(self.folder_dir(), top, "cur")))
        self.assertIn(".hidden", self.list_names(c, "", "*"))
        self.assertResult(c.command("APPEND .hidden ", Literal(lf_to_crlf(simple("h")))), "OK")
        self.assertEqual(len(os.listdir(os.path.join(self.folder_dir(), top, "cur"))), 1)
        self.assertResult(c.cmd('SELECT ".hidden"'), "OK")
        self.assertResult(c.cmd('DELETE ".hidden"'), "OK", "NO")


class ImaplibTests(Base):
    """A whole session the way a Python program would do it."""

    def test_imaplib_session(self):
        self.put(simple("lib one", b"first body\n"))
        self.put(simple("lib two", b"second body\n"), sub="cur", flags="S")
        m = self.track(imaplib.IMAP4("127.0.0.1", self.srv.port, timeout=TIMEOUT))
        self.assertLessEqual(CAPS_BEFORE_LOGIN, set(m.capabilities))
        self.assertEqual(m.login(ALICE, PASSWORD)[0], "OK")
        typ, data = m.list()
        self.assertEqual(typ, "OK")
        names = {parse_list_line(b"LIST " + d)[2] for d in data}
        self.assertLessEqual({"INBOX", "Sent", "Trash"}, names)
        self.assertEqual(m.enable("CONDSTORE")[0], "OK")  # imaplib: AUTH state only
        self.assertEqual(m.create("lib")[0], "OK")
        self.assertEqual(m.subscribe("lib")[0], "OK")
        self.assertEqual(m.select("INBOX"), ("OK", [b"2"]))
        self.assertEqual(m.response("UIDNEXT")[1], [b"3"])
        msg = lf_to_crlf(simple("lib three", b"third body\n"))
        typ, data = m.append("INBOX", "(\\Flagged)",
                             imaplib.Time2Internaldate(1700000000), msg)
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"^\[APPENDUID [0-9]+ 3\]")
        self.assertEqual(m.noop()[0], "OK")
        self.assertEqual(m.search(None, "ALL"), ("OK", [b"1 2 3"]))
        self.assertEqual(m.search(None, "UNSEEN"), ("OK", [b"1 3"]))
        typ, data = m.fetch("1", "(RFC822)")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], lf_to_crlf(simple("lib one", b"first body\n")))
        typ, data = m.fetch("3", "(INTERNALDATE FLAGS)")
        self.assertEqual(imaplib.Internaldate2tuple(data[0])[:6],
                         time.localtime(1700000000)[:6])
        self.assertEqual(m.store("2", "+FLAGS", "(\\Answered)")[0], "OK")
        typ, data = m.copy("1:2", "lib")
        self.assertEqual(typ, "OK")
        typ, data = m.uid("MOVE", "3", "Trash")
        self.assertEqual(typ, "OK")
        # (imaplib keeps untagged responses until asked for them)
        self.assertEqual(m.response("EXPUNGE"), ("EXPUNGE", [b"3"]))
        typ, data = m.uid("SEARCH", None, "ALL")
        self.assertEqual(data, [b"1 2"])
        typ, data = m.uid("FETCH", "2", "(FLAGS)")
        self.assertIn(b"\\Answered", data[0])
        self.assertEqual(m.store("1", "+FLAGS.SILENT", "(\\Deleted)")[0], "OK")
        typ, data = m.expunge()
        self.assertEqual((typ, data), ("OK", [b"1"]))
        typ, data = m.status("lib", "(MESSAGES)")
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"\(MESSAGES 2\)$")
        typ, data = m.namespace()
        self.assertEqual(data, [b'(("" "/")) NIL NIL'])
        self.assertEqual(m.unselect()[0], "OK")
        self.assertEqual(m.select("lib", readonly=True), ("OK", [b"2"]))
        self.assertEqual(m.close()[0], "OK")
        typ, data = m.lsub()
        self.assertIn("lib", {parse_list_line(b"LSUB " + d)[2] for d in data})
        self.assertEqual(m.rename("lib", "lib2")[0], "OK")
        self.assertEqual(m.delete("lib2")[0], "OK")
        self.assertEqual(m.logout()[0], "BYE")
        self.assertEqual(len(self.cur_files("Trash")), 1)
        self.assertEqual(len(self.cur_files()), 1)


if __name__ == "__main__":
    unittest.main()
