"""End-to-end tests of pop3-handler under systemd-socket-activate.

Mail is put into the Maildir directly, with the names delivery gives
(<time>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<crlf size>), so each test
controls order, sizes and content exactly.  Clients: a raw socket client
for byte-exact dialogs, Python's poplib (USER/PASS, STLS, POP3_SSL, TOP,
UIDL, RSET), fetchmail in keep and delete mode, and curl.
"""

import base64
import hashlib
import itertools
import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import (BUILD, HOSTNAME, TIMEOUT, VALGRIND, WAIT, SockmailTestCase,
                     program, wait_until)

PASSWORD = "secret-Passw0rd"  # what harness.add_user gives everyone
ALICE = "alice@example.org"
BOB = "bob@example.org"
SANITIZED = "san" in os.path.basename(BUILD)

CAPA_PLAIN = [b"TOP", b"UIDL", b"USER", b"SASL PLAIN", b"RESP-CODES",
              b"AUTH-RESP-CODE", b"PIPELINING", b"EXPIRE NEVER",
              b"IMPLEMENTATION sockmail"]

_seq = itertools.count(1)
_certs = {}


def certificate():
    """(cert, key) paths of a self-signed certificate for HOSTNAME and
    127.0.0.1, made once per run with certtool."""
    if not _certs:
        d = tempfile.mkdtemp(prefix="sockmail-pop3-cert-")
        tmpl = os.path.join(d, "cert.tmpl")
        with open(tmpl, "w") as f:
            f.write('cn = "%s"\ndns_name = "%s"\nip_address = "127.0.0.1"\n'
                    "expiration_days = 30\ntls_www_server\nsigning_key\n"
                    "encryption_key\n" % (HOSTNAME, HOSTNAME))
        key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
        subprocess.run(["certtool", "--generate-privkey", "--key-type=ecdsa",
                        "--outfile", key], check=True, capture_output=True)
        subprocess.run(["certtool", "--generate-self-signed", "--load-privkey",
                        key, "--template", tmpl, "--outfile", cert],
                       check=True, capture_output=True)
        _certs.update(dir=d, cert=cert, key=key)
    return _certs["cert"], _certs["key"]


def tearDownModule():
    if _certs:
        shutil.rmtree(_certs["dir"], ignore_errors=True)


def client_context():
    """A TLS client context that trusts the test certificate."""
    ctx = ssl.create_default_context(cafile=certificate()[0])
    return ctx


def crlf(content):
    """What POP3 sends for an LF file: CRLF line ends, a final CRLF."""
    out = content.replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def unstuff(lines):
    """Raw data lines (with CRLF, without the final ".") -> bytes."""
    return b"".join(l[1:] if l.startswith(b".") else l for l in lines)


class POP3Raw:
    """Byte-exact POP3 client: lines must end in CRLF."""

    def __init__(self, port, timeout=TIMEOUT, tls_context=None):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        if tls_context is not None:
            self.sock = tls_context.wrap_socket(self.sock,
                                                server_hostname=HOSTNAME)
        self.f = self.sock.makefile("rb")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        """One line without its CRLF."""
        l = self.f.readline(1 << 20)
        if not l:
            raise AssertionError("connection closed by server")
        if not l.endswith(b"\r\n"):
            raise AssertionError("line without CRLF: %r" % l[:200])
        return l[:-2]

    def raw_data(self):
        """The lines of a multi-line reply, raw (with CRLF, stuffed),
        without the terminating ".\\r\\n"."""
        out = []
        while True:
            l = self.f.readline(1 << 20)
            if not l.endswith(b"\r\n"):
                raise AssertionError("data line without CRLF: %r" % l[:200])
            if l == b".\r\n":
                return out
            out.append(l)

    def lines(self):
        """The lines of a multi-line reply, unstuffed, without CRLF."""
        return [l[:-2] for l in (l[1:] if l.startswith(b".") else l
                                 for l in self.raw_data())]

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.line()

    def login(self, user=ALICE, password=PASSWORD):
        r = self.cmd("USER " + user)
        if not r.startswith(b"+OK"):
            raise AssertionError("USER: %r" % r)
        return self.cmd("PASS " + password)

    def starttls(self, context=None):
        self.f.close()
        self.sock = (context or client_context()).wrap_socket(
            self.sock, server_hostname=HOSTNAME)
        self.f = self.sock.makefile("rb")

    def expect_eof(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            rest = self.f.read()
        except (ConnectionResetError, ssl.SSLError):
            rest = b""
        if rest:
            raise AssertionError("bytes before close: %r" % rest[:300])

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


class POP3TestCase(SockmailTestCase):
    HANDLER = "pop3-handler"
    TLS = False  # configure the test certificate

    def config(self):
        conf = dict(self.CONF)
        if self.TLS:
            cert, key = certificate()
            conf.update(tls_cert=cert, tls_key=key)
        return conf

    def populate(self):
        self.srv.add_domain("example.org")
        for u in (ALICE, BOB):
            self.srv.add_user(u)

    # -- the maildrop
    def put(self, content, address=ALICE, sub="new", flags="", with_w=True,
            when=None):
        """Write a message file as delivery would; returns (uid, name): the
        UIDL it must get (the name up to ':') and the file name."""
        n = next(_seq)
        when = when if when is not None else 1700000000 + n
        name = "%d.M%06dP%dQ%d.testhost" % (when, n % 1000000, os.getpid(), n)
        name += ",S=%d" % len(content)
        if with_w:
            name += ",W=%d" % (len(content) + content.count(b"\n"))
        base = name
        if sub == "cur":
            name += ":2," + flags
        path = os.path.join(self.srv.maildir(address), sub, name)
        with open(path, "wb") as f:
            f.write(content)
        return base, name

    def files(self, sub, address=ALICE):
        return sorted(os.listdir(os.path.join(self.srv.maildir(address), sub)))

    # -- clients: closed before the harness checks for stray handlers
    def setUp(self):
        self.open_clients = []
        super().setUp()

    def tearDown(self):
        for c in self.open_clients:
            try:
                c.close()
            except OSError:
                pass
        super().tearDown()

    def raw(self, tls_context=None):
        c = POP3Raw(self.srv.port, tls_context=tls_context)
        self.open_clients.append(c)
        greeting = c.line()
        self.assertEqual(greeting, b"+OK %s POP3 server ready" % HOSTNAME.encode())
        return c

    def poplib(self):
        p = poplib.POP3("127.0.0.1", self.srv.port, timeout=TIMEOUT)
        self.open_clients.append(p)
        return p

    def login(self, user=ALICE):
        p = self.poplib()
        p.user(user)
        p.pass_(PASSWORD)
        return p

    def log_lines(self, regex):
        return [l for l in self.srv.stderr_text().splitlines()
                if re.search(regex, l)]

    def wait_log(self, regex):
        return wait_until(lambda: self.log_lines(regex))


class ProtocolTests(POP3TestCase):
    CONF = {"max_bad_commands": 100}

    def test_greeting_and_capa(self):
        c = self.raw()
        self.assertEqual(c.cmd("CAPA"), b"+OK Capability list follows")
        self.assertEqual(c.lines(), CAPA_PLAIN)
        self.assertEqual(c.login(), b"+OK maildrop has 0 messages (0 octets)")
        # after login: no USER/SASL/STLS
        self.assertEqual(c.cmd("capa"), b"+OK Capability list follows")
        self.assertEqual(c.lines(), [b"TOP", b"UIDL", b"RESP-CODES",
                                     b"AUTH-RESP-CODE", b"PIPELINING",
                                     b"EXPIRE NEVER", b"IMPLEMENTATION sockmail"])
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out (0 messages left)")
        c.expect_eof()

    def test_poplib_session(self):
        m1 = b"From: a@x\nSubject: one\n\nbody one\nsecond line\n"
        m2 = b"From: b@x\nSubject: two\n\nbody two\n"
        m3 = b"From: c@x\nSubject: three\n\nl1\nl2\nl3\n"
        names = [self.put(m) for m in (m1, m2, m3)]
        p = self.login()
        sizes = [len(crlf(m)) for m in (m1, m2, m3)]
        self.assertEqual(p.stat(), (3, sum(sizes)))
        resp, lines, _ = p.list()
        self.assertEqual(resp, b"+OK 3 messages (%d octets)" % sum(sizes))
        self.assertEqual(lines, [b"%d %d" % (i + 1, s) for i, s in enumerate(sizes)])
        self.assertEqual(p.list(2), b"+OK 2 %d" % sizes[1])
        resp, lines, _ = p.uidl()
        self.assertEqual(lines, [b"%d %s" % (i + 1, n[0].encode())
                                 for i, n in enumerate(names)])
        self.assertEqual(p.uidl(3), b"+OK 3 " + names[2][0].encode())
        # TOP: header, blank line, n body lines
        resp, lines, _ = p.top(3, 0)
        self.assertEqual(lines, [b"From: c@x", b"Subject: three", b""])
        resp, lines, _ = p.top(3, 2)
        self.assertEqual(lines, [b"From: c@x", b"Subject: three", b"", b"l1", b"l2"])
        resp, lines, _ = p.top(3, 99)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", crlf(m3))
        resp, lines, octets = p.retr(1)
        self.assertEqual(resp, b"+OK %d octets" % sizes[0])
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", crlf(m1))
        self.assertEqual(p.dele(1), b"+OK Message 1 deleted")
        self.assertEqual(p.stat(), (2, sizes[1] + sizes[2]))
        with self.assertRaises(poplib.error_proto) as e:
            p.retr(1)
        self.assertEqual(e.exception.args[0], b"-ERR Message 1 is deleted")
        with self.assertRaises(poplib.error_proto):
            p.list(1)
        resp, lines, _ = p.list()
        self.assertEqual(lines, [b"2 %d" % sizes[1], b"3 %d" % sizes[2]])
        self.assertEqual(p.rset(), b"+OK maildrop has 3 messages (%d octets)"
                         % sum(sizes))
        self.assertEqual(p.noop(), b"+OK")
        p.retr(2)
        p.dele(3)
        self.assertEqual(p.quit(), b"+OK Logging out (2 messages left)")
        self.srv.wait_handlers_exit()
        # 3 deleted; 1 (undeleted by RSET) and 2 retrieved: now in cur/
        # as seen
        self.assertEqual(self.files("new"), [])
        self.assertEqual(self.files("cur"), [names[0][1] + ":2,S",
                                             names[1][1] + ":2,S"])
        self.assertTrue(self.wait_log(
            r"session end PEER=127\.0\.0\.1 USER=alice@example\.org "
            r"RETR=2 TOP=3 DELE=1 RESULT=ok$"))

    def test_uidl_stable_and_snapshot(self):
        a = self.put(b"Subject: a\n\nA\n")
        b = self.put(b"Subject: b\n\nB\n", sub="cur", flags="S")
        p = self.login()
        resp, uidls, _ = p.uidl()
        self.assertEqual(uidls, [b"1 " + a[0].encode(), b"2 " + b[0].encode()])
        p.retr(1)
        # mail that arrives during the session is neither shown nor deleted
        c = self.put(b"Subject: c\n\nC\n")
        self.assertEqual(p.stat()[0], 2)
        p.dele(1)
        p.dele(2)
        p.quit()
        self.srv.wait_handlers_exit()
        self.assertEqual(self.files("new"), [c[1]])
        self.assertEqual(self.files("cur"), [])
        # next session: the new message, same UIDL as its base name
        p = self.login()
        self.assertEqual(p.uidl()[1], [b"1 " + c[0].encode()])
        p.retr(1)
        p.quit()
        self.srv.wait_handlers_exit()
        # moved to cur/ as seen: the UIDL does not change
        self.assertEqual(self.files("cur"), [c[1] + ":2,S"])
        p = self.login()
        self.assertEqual(p.uidl()[1], [b"1 " + c[0].encode()])
        p.quit()

    def test_order_is_delivery_order(self):
        # by the time in the unique name, whatever the directory
        late = self.put(b"late\n", when=1700009999)
        early = self.put(b"early\n", sub="cur", flags="S", when=1600000000)
        mid = self.put(b"mid\n", when=1650000000)
        p = self.login()
        self.assertEqual([l.split()[1] for l in p.uidl()[1]],
                         [early[0].encode(), mid[0].encode(), late[0].encode()])
        p.quit()

    def test_uidl_of_a_long_name(self):
        # RFC 1939 7: a unique-id is 1-70 characters 0x21-0x7E; a longer
        # base name (another MDA, a long host name) gets a stable hash
        longname = "1700000001.M1P1Q1." + "h" * 80 + ",S=4,W=6"
        with open(os.path.join(self.srv.maildir(ALICE), "new", longname), "wb") as f:
            f.write(b"x\ny\n")
        h = 0xcbf29ce484222325
        for ch in longname.encode():
            h = ((h ^ ch) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        p = self.login()
        self.assertEqual(p.uidl(1), b"+OK 1 H%016x" % h)
        p.quit()

    def test_size_without_w(self):
        m = b"Subject: no W\n\nx\ny\n"
        self.put(m, with_w=False)
        p = self.login()
        self.assertEqual(p.stat(), (1, len(crlf(m))))
        p.quit()

    def test_state_errors(self):
        self.put(b"Subject: x\n\nx\n")
        c = self.raw()
        for cmd in ("STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET",
                    "TOP 1 1", "UIDL"):
            self.assertEqual(c.cmd(cmd), b"-ERR Command not valid before login",
                             cmd)
        self.assertEqual(c.cmd("PASS x"), b"-ERR Send USER first")
        self.assertEqual(c.cmd("APOP alice 0123456789abcdef"),
                         b"-ERR APOP is not supported")
        c.login()
        for cmd, reply in (
                ("USER bob", b"-ERR Command not valid after login"),
                ("PASS x", b"-ERR Command not valid after login"),
                ("AUTH PLAIN", b"-ERR Command not valid after login"),
                ("STLS", b"-ERR Command not valid after login"),
                ("RETR 0", b"-ERR No such message"),
                ("RETR 2", b"-ERR No such message"),
                ("LIST 4294967295", b"-ERR No such message"),
                ("RETR x", b"-ERR Invalid message number"),
                ("DELE -1", b"-ERR Invalid message number"),
                ("RETR", b"-ERR Syntax: RETR msg"),
                ("TOP 1", b"-ERR Syntax: TOP msg lines"),
                ("TOP 1 x", b"-ERR Syntax: TOP msg lines"),
                ("LIST 1 2", b"-ERR Syntax: LIST [msg]"),
                ("STAT 1", b"-ERR Syntax: STAT"),
                ("XYZZY", b"-ERR Unknown command"),
                ("", b"-ERR Empty command")):
            self.assertEqual(c.cmd(cmd), reply, cmd)
        self.assertEqual(c.cmd("DELE 1"), b"+OK Message 1 deleted")
        self.assertEqual(c.cmd("DELE 1"), b"-ERR Message 1 is deleted")
        self.assertEqual(c.cmd("NOOP"), b"+OK")
        self.assertEqual(c.cmd("RSET"), b"+OK maildrop has 1 messages (17 octets)")

    def test_pipelining(self):
        m = b"Subject: p\n\n.dot\n"
        self.put(m)
        c = self.raw()
        c.send("CAPA\r\nUSER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nRETR 1\r\n"
               "DELE 1\r\nQUIT\r\n" % (ALICE, PASSWORD))
        self.assertEqual(c.line(), b"+OK Capability list follows")
        self.assertEqual(c.lines(), CAPA_PLAIN)
        self.assertEqual(c.line(), b"+OK Send PASS")
        self.assertEqual(c.line(), b"+OK maildrop has 1 messages (20 octets)")
        self.assertEqual(c.line(), b"+OK 1 20")
        self.assertEqual(c.line(), b"+OK 1 messages (20 octets)")
        self.assertEqual(c.lines(), [b"1 20"])
        self.assertEqual(c.line(), b"+OK 20 octets")
        self.assertEqual(unstuff(c.raw_data()), crlf(m))
        self.assertEqual(c.line(), b"+OK Message 1 deleted")
        self.assertEqual(c.line(), b"+OK Logging out (0 messages left)")
        c.expect_eof()
        self.assertEqual(self.files("new"), [])

    def test_quit_before_login(self):
        c = self.raw()
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out")
        c.expect_eof()

    def test_missing_maildir(self):
        shutil.rmtree(self.srv.maildir(ALICE))
        c = self.raw()
        self.assertEqual(c.login(), b"-ERR [SYS/TEMP] Cannot open the maildrop, "
                         b"try again later")
        self.assertTrue(self.wait_log(r"cannot open maildrop lock .*"
                                      r"USER=alice@example\.org"))
        # still in AUTHORIZATION: another user can log in
        self.assertEqual(c.login(BOB), b"+OK maildrop has 0 messages (0 octets)")

    def test_version_and_help(self):
        r = subprocess.run([program("pop3-handler"), "--version"],
                           capture_output=True, timeout=WAIT)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, rb"^pop3-handler \(sockmail\) \S+\n$")
        r = subprocess.run([program("pop3-handler"), "--help"],
                           capture_output=True, timeout=WAIT)
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"--tls=implicit", r.stdout)
        r = subprocess.run([program("pop3-handler"), "--tls=maybe"],
                           capture_output=True, timeout=WAIT)
        self.assertEqual(r.returncode, 2)


    def test_overlong_line(self):
        self.put(b"Subject: x\n\nx\n")
        c = self.raw()
        c.login()
        # RFC 2449: 255 octets with CRLF
        self.assertEqual(c.cmd("NOOP " + "x" * 250), b"-ERR Line too long")
        self.assertEqual(c.cmd("LIST " + "1" * 248), b"-ERR Invalid message number")
        # longer than the read buffer: skipped whole, not taken as commands
        self.assertEqual(c.cmd("NOOP " + "DELE 1 " * 5000), b"-ERR Line too long")
        self.assertEqual(c.cmd("STAT"), b"+OK 1 17")
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out (1 messages left)")

    def test_nul_in_command(self):
        c = self.raw()
        self.assertEqual(c.cmd(b"CAPA\0x"), b"-ERR NUL character in command")
        self.assertEqual(c.cmd("CAPA"), b"+OK Capability list follows")


class BadConfigTests(POP3TestCase):
    START = False

    def test_unknown_key(self):
        self.srv.write_config({}, ["pop3_timeoot = 10m"])
        self.srv.start(handler="pop3-handler")
        c = POP3Raw(self.srv.port)
        self.open_clients.append(c)
        self.assertEqual(c.line(), b"-ERR [SYS/TEMP] Service temporarily unavailable")
        c.expect_eof()
        self.assertTrue(self.wait_log(r"sockmail\.conf:6: unknown key 'pop3_timeoot'"))


class DotStuffingTests(POP3TestCase):

    MESSAGE = (b"Subject: dots\n\n.\n..\n...x\n.leading\n trailing.\n"
               b"mid.dle\n. \n\n.\n")

    def test_on_the_wire(self):
        self.put(self.MESSAGE)
        c = self.raw()
        c.login()
        self.assertEqual(c.cmd("RETR 1"), b"+OK %d octets" % len(crlf(self.MESSAGE)))
        raw = c.raw_data()
        self.assertEqual(raw, [b"Subject: dots\r\n", b"\r\n", b"..\r\n",
                               b"...\r\n", b"....x\r\n", b"..leading\r\n",
                               b" trailing.\r\n", b"mid.dle\r\n", b".. \r\n",
                               b"\r\n", b"..\r\n"])
        self.assertEqual(unstuff(raw), crlf(self.MESSAGE))
        # TOP stuffs the same way
        self.assertEqual(c.cmd("TOP 1 3"), b"+OK Top of message 1 follows")
        self.assertEqual(c.raw_data(), raw[:5])

    def test_poplib_byte_identical(self):
        self.put(self.MESSAGE)
        p = self.login()
        resp, lines, _ = p.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", crlf(self.MESSAGE))
        p.quit()

    def test_no_final_newline_and_crlf_file(self):
        self.put(b"Subject: cut\n\nno newline at end")
        self.put(b"Subject: crlf\r\n\r\n.already crlf\r\n", with_w=False)
        c = self.raw()
        c.login()
        c.cmd("RETR 1")
        self.assertEqual(c.raw_data(), [b"Subject: cut\r\n", b"\r\n",
                                        b"no newline at end\r\n"])
        # CRLF in the file stays one CRLF; the size counts no extra CR
        self.assertEqual(c.cmd("LIST 2"), b"+OK 2 32")
        c.cmd("RETR 2")
        self.assertEqual(c.raw_data(), [b"Subject: crlf\r\n", b"\r\n",
                                        b"..already crlf\r\n"])


class BigTests(POP3TestCase):

    def test_30mb_message(self):
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_\n"
        body = bytearray(b"Subject: big\n\n")
        i = 0
        while len(body) < 30 * 1024 * 1024:
            body += (b"." if i % 7 == 0 else b"") + line
            i += 1
        body = bytes(body)
        self.put(body)
        expect = hashlib.sha256(crlf(body)).hexdigest()
        c = self.raw()
        c.login()
        self.assertEqual(c.cmd("LIST 1"), b"+OK 1 %d" % len(crlf(body)))
        self.assertEqual(c.cmd("RETR 1"), b"+OK %d octets" % len(crlf(body)))
        h = hashlib.sha256()
        n = 0
        for l in c.raw_data():
            h.update(l[1:] if l.startswith(b".") else l)
            n += 1
        self.assertEqual(h.hexdigest(), expect)
        self.assertEqual(n, crlf(body).count(b"\r\n"))
        self.assertEqual(c.cmd("DELE 1"), b"+OK Message 1 deleted")
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out (0 messages left)")
        c.expect_eof()
        self.assertEqual(self.files("new"), [])

    def test_10000_messages(self):
        new = os.path.join(self.srv.maildir(ALICE), "new")
        cur = os.path.join(self.srv.maildir(ALICE), "cur")
        expect = []
        for i in range(10000):
            body = b"Subject: m%d\n\n%s\n" % (i, b"x" * (i % 50))
            base = "%d.M%06dP4242Q%d.testhost,S=%d,W=%d" % (
                1700000000 + i // 3, i, i, len(body), len(body) + 3)
            name = base
            d, name = (cur, name + ":2,S") if i % 4 == 0 else (new, name)
            with open(os.path.join(d, name), "wb") as f:
                f.write(body)
            expect.append((base, len(body) + 3))
        c = self.raw()
        self.assertEqual(c.login(), b"+OK maildrop has 10000 messages (%d octets)"
                         % sum(s for _, s in expect))
        self.assertEqual(c.cmd("STAT"), b"+OK 10000 %d" % sum(s for _, s in expect))
        if not SANITIZED and not VALGRIND:  # both have their own heaps
            pid = self.srv.handler_pids()[0]
            with open("/proc/%d/smaps_rollup" % pid) as f:
                dirty = sum(int(l.split()[1]) for l in f
                            if l.startswith("Private_Dirty:"))
            self.assertLessEqual(dirty, 1024, "Private_Dirty %d KiB" % dirty)
        c.cmd("LIST")
        self.assertEqual(c.lines(), [b"%d %d" % (i + 1, s)
                                     for i, (_, s) in enumerate(expect)])
        c.cmd("UIDL")
        self.assertEqual(c.lines(), [b"%d %s" % (i + 1, b.encode())
                                     for i, (b, _) in enumerate(expect)])
        self.assertEqual(c.cmd("LIST 10000"), b"+OK 10000 %d" % expect[-1][1])
        self.assertEqual(c.cmd("UIDL 5001"), b"+OK 5001 " + expect[5000][0].encode())
        c.cmd("RETR 9999")
        self.assertEqual(c.lines(), [b"Subject: m9998", b"", b"x" * (9998 % 50)])
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out (10000 messages left)")
        c.expect_eof()


class DropAndLockTests(POP3TestCase):

    def test_dropped_connection_after_dele(self):
        a = self.put(b"Subject: keep me\n\nA\n")
        c = self.raw()
        c.login()
        c.cmd("RETR 1")
        c.lines()
        self.assertEqual(c.cmd("DELE 1"), b"+OK Message 1 deleted")
        c.close()
        self.assertTrue(self.srv.wait_handlers_exit())
        # nothing deleted, nothing moved
        self.assertEqual(self.files("new"), [a[1]])
        self.assertEqual(self.files("cur"), [])
        self.assertTrue(self.wait_log(r"RETR=1 TOP=0 DELE=0 RESULT=\"lost connection\"$"))

    def test_killed_handler_keeps_mail_and_lock(self):
        a = self.put(b"Subject: keep me\n\nA\n")
        c = self.raw()
        c.login()
        self.assertEqual(c.cmd("DELE 1"), b"+OK Message 1 deleted")
        pids = self.srv.handler_pids()
        self.assertEqual(len(pids), 1)
        os.kill(pids[0], signal.SIGKILL)
        c.expect_eof()
        self.assertTrue(self.srv.wait_handlers_exit())
        self.assertEqual(self.files("new"), [a[1]])
        # the lock died with the process
        p = self.login()
        self.assertEqual(p.stat()[0], 1)
        p.quit()

    def test_second_login_in_use(self):
        self.put(b"Subject: x\n\nx\n")
        first = self.login()
        self.assertEqual(first.stat()[0], 1)
        c = self.raw()
        self.assertEqual(c.cmd("USER " + ALICE), b"+OK Send PASS")
        self.assertEqual(c.cmd("PASS " + PASSWORD),
                         b"-ERR [IN-USE] maildrop locked: another session is active")
        # AUTH PLAIN gets the same; another user is not affected
        ir = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
        self.assertEqual(c.cmd(b"AUTH PLAIN " + ir),
                         b"-ERR [IN-USE] maildrop locked: another session is active")
        p2 = self.login(BOB)
        p2.quit()
        # the lock file: in the Maildir, private to the owner
        st = os.stat(os.path.join(self.srv.maildir(ALICE), ".sockmail-pop3.lock"))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        first.dele(1)
        first.quit()
        self.assertEqual(c.login(), b"+OK maildrop has 0 messages (0 octets)")
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out (0 messages left)")
        self.assertTrue(self.wait_log(r"maildrop in use PEER=127\.0\.0\.1 "
                                      r"USER=alice@example\.org"))


class AuthTests(POP3TestCase):
    CONF = {"auth_fail_limit": 3}

    def test_wrong_password(self):
        c = self.raw()
        c.cmd("USER " + ALICE)
        self.assertEqual(c.cmd("PASS wrong"), b"-ERR [AUTH] Authentication failed")
        # PASS again needs USER again
        self.assertEqual(c.cmd("PASS " + PASSWORD), b"-ERR Send USER first")
        self.assertEqual(c.login(), b"+OK maildrop has 0 messages (0 octets)")
        self.assertTrue(self.wait_log(
            r"pop3-handler\[\d+\]: authentication failed PEER=127\.0\.0\.1 "
            r"USER=alice@example\.org SERVICE=pop3$"))
        self.assertEqual(self.log_lines(r"wrong"), [])  # no password in logs

    def test_unknown_user_same_answer(self):
        c = self.raw()
        self.assertEqual(c.cmd("USER nobody@example.org"), b"+OK Send PASS")
        self.assertEqual(c.cmd("PASS " + PASSWORD), b"-ERR [AUTH] Authentication failed")

    def test_brute_force_limit(self):
        c = self.raw()
        for _ in range(3):
            c.cmd("USER " + ALICE)
            self.assertEqual(c.cmd("PASS bad"), b"-ERR [AUTH] Authentication failed")
        c.cmd("USER " + ALICE)
        self.assertEqual(c.cmd("PASS " + PASSWORD),
                         b"-ERR [SYS/TEMP] Too many failed logins from your address, "
                         b"try again later")
        ir = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
        c2 = self.raw()
        self.assertEqual(c2.cmd(b"AUTH PLAIN " + ir),
                         b"-ERR [SYS/TEMP] Too many failed logins from your address, "
                         b"try again later")

    def test_auth_plain(self):
        c = self.raw()
        self.assertEqual(c.cmd("AUTH"), b"+OK Supported mechanisms follow")
        self.assertEqual(c.lines(), [b"PLAIN"])
        self.assertEqual(c.cmd("AUTH LOGIN"), b"-ERR Unsupported authentication mechanism")
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        self.assertEqual(c.cmd("*"), b"-ERR Authentication cancelled")
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        self.assertEqual(c.cmd("not base64!"), b"-ERR Invalid base64 data")
        self.assertEqual(c.cmd("AUTH PLAIN " + base64.b64encode(b"nonul").decode()),
                         b"-ERR [AUTH] Malformed PLAIN response")
        other = base64.b64encode(b"bob@example.org\0" + ALICE.encode() + b"\0"
                                 + PASSWORD.encode())
        self.assertEqual(c.cmd(b"AUTH PLAIN " + other),
                         b"-ERR [AUTH] Authorization identity refused")
        bad = base64.b64encode(b"\0" + ALICE.encode() + b"\0wrong")
        self.assertEqual(c.cmd(b"AUTH PLAIN " + bad), b"-ERR [AUTH] Authentication failed")
        # the response after "+ ", with authzid = authcid
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        good = base64.b64encode(ALICE.encode() + b"\0" + ALICE.encode() + b"\0"
                                + PASSWORD.encode())
        self.assertEqual(c.cmd(good), b"+OK maildrop has 0 messages (0 octets)")
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out (0 messages left)")

    def test_auth_plain_initial_response(self):
        self.put(b"Subject: x\n\nx\n")
        c = self.raw()
        ir = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
        self.assertEqual(c.cmd(b"AUTH PLAIN " + ir),
                         b"+OK maildrop has 1 messages (17 octets)")
        self.assertEqual(c.cmd("STAT"), b"+OK 1 17")

    def test_auth_response_too_long(self):
        c = self.raw()
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        self.assertEqual(c.cmd("A" * 9000), b"-ERR Line too long")
        self.assertEqual(c.cmd("CAPA"), b"+OK Capability list follows")
        c.lines()
        # up to 8 KiB is fine for a response (RFC 5034: no 255 limit)
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        long_ir = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + b"p" * 1000)
        self.assertEqual(c.cmd(long_ir), b"-ERR [AUTH] Authentication failed")


class PlaintextNeverTests(POP3TestCase):
    CONF = {"auth_plaintext": "never"}

    def test_loopback_refused_without_tls(self):
        c = self.raw()
        c.cmd("CAPA")
        caps = c.lines()
        self.assertNotIn(b"USER", caps)
        self.assertNotIn(b"SASL PLAIN", caps)
        self.assertNotIn(b"STLS", caps)  # no certificate configured
        self.assertEqual(c.cmd("USER " + ALICE),
                         b"-ERR [AUTH] Plaintext authentication disallowed on "
                         b"non-secure connections: use STLS")
        self.assertEqual(c.cmd("STLS"), b"-ERR TLS is not available")


class TLSTests(POP3TestCase):
    TLS = True
    ENV = {"SOCKMAIL_TEST_PEER": "192.0.2.7"}

    def test_not_loopback_needs_tls(self):
        c = self.raw()
        c.cmd("CAPA")
        caps = c.lines()
        self.assertEqual(caps, [b"TOP", b"UIDL", b"STLS", b"RESP-CODES",
                                b"AUTH-RESP-CODE", b"PIPELINING", b"EXPIRE NEVER",
                                b"IMPLEMENTATION sockmail"])
        refused = (b"-ERR [AUTH] Plaintext authentication disallowed on "
                   b"non-secure connections: use STLS")
        self.assertEqual(c.cmd("USER " + ALICE), refused)
        self.assertEqual(c.cmd("PASS " + PASSWORD), refused)
        self.assertEqual(c.cmd("AUTH PLAIN"), refused)
        self.assertEqual(c.cmd("AUTH"), b"+OK Supported mechanisms follow")
        self.assertEqual(c.lines(), [])
        self.assertEqual(c.cmd("STLS"), b"+OK Begin TLS negotiation now")
        c.starttls()
        c.cmd("CAPA")
        self.assertEqual(c.lines(), CAPA_PLAIN)
        self.assertEqual(c.cmd("STLS"), b"-ERR TLS is already active")
        self.assertEqual(c.login(), b"+OK maildrop has 0 messages (0 octets)")
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out (0 messages left)")
        self.assertTrue(self.wait_log(r"session end PEER=192\.0\.2\.7 "
                                      r'USER=alice@example\.org TLS="TLSv1\.[23] '))

    def test_stls_discards_pipelined_plaintext(self):
        c = self.raw()
        c.send("STLS\r\nUSER injected@example.org\r\n")
        self.assertEqual(c.line(), b"+OK Begin TLS negotiation now")
        c.starttls()
        # the USER sent before the handshake was never executed
        self.assertEqual(c.cmd("PASS " + PASSWORD), b"-ERR Send USER first")

    def test_poplib_stls(self):
        m = b"Subject: over tls\n\n.dotted\nbody\n"
        self.put(m)
        p = self.poplib()
        p.stls(client_context())
        p.user(ALICE)
        p.pass_(PASSWORD)
        resp, lines, _ = p.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", crlf(m))
        p.dele(1)
        p.quit()
        self.srv.wait_handlers_exit()
        self.assertEqual(self.files("new"), [])


class ImplicitTLSTests(POP3TestCase):
    TLS = True
    ARGS = ("--tls=implicit",)
    ENV = {"SOCKMAIL_TEST_PEER": "192.0.2.7"}

    def test_pop3_ssl(self):
        m = b"Subject: implicit\n\nhello\n"
        self.put(m)
        p = poplib.POP3_SSL("127.0.0.1", self.srv.port, timeout=TIMEOUT,
                            context=client_context())
        self.open_clients.append(p)
        self.assertEqual(p.getwelcome(), b"+OK %s POP3 server ready" % HOSTNAME.encode())
        self.assertNotIn("STLS", p.capa())
        p.user(ALICE)
        p.pass_(PASSWORD)
        self.assertEqual(p.stat(), (1, len(crlf(m))))
        resp, lines, _ = p.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", crlf(m))
        p.quit()

    def test_plaintext_client_gets_nothing(self):
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=TIMEOUT)
        self.open_clients.append(s)
        s.sendall(b"USER alice\r\n")
        try:
            data = s.recv(4096)  # a TLS alert at most, then the close
        except ConnectionResetError:
            data = b""
        self.assertFalse(data.startswith(b"+OK"), data)
        self.assertTrue(self.srv.wait_handlers_exit())
        self.assertTrue(self.wait_log(r"TLS handshake failed PEER=192\.0\.2\.7"))


class LimitTests(POP3TestCase):
    CONF = {"max_bad_commands": 3}

    def test_bad_command_limit(self):
        c = self.raw()
        self.assertEqual(c.cmd("FOO"), b"-ERR Unknown command")
        self.assertEqual(c.cmd("CAPA"), b"+OK Capability list follows")  # fine
        c.lines()
        self.assertEqual(c.cmd("STAT"), b"-ERR Command not valid before login")
        self.assertEqual(c.cmd("BAR"), b"-ERR Too many bad commands, closing connection")
        c.expect_eof()
        self.assertTrue(self.wait_log(r'RESULT="too many errors"$'))

class TimeoutTests(POP3TestCase):
    CONF = {"pop3_timeout": "2s"}

    def test_idle_client_after_dele(self):
        a = self.put(b"Subject: x\n\nx\n")
        c = self.raw()
        c.login()
        self.assertEqual(c.cmd("DELE 1"), b"+OK Message 1 deleted")
        c.expect_eof(timeout=WAIT)  # RFC 1939 3: closed without a response
        self.assertEqual(self.files("new"), [a[1]])
        self.assertTrue(self.wait_log(r"USER=alice@example\.org RETR=0 TOP=0 DELE=0 "
                                      r"RESULT=timeout$"))


class FetchmailTests(POP3TestCase):
    TLS = True

    def setUp(self):
        if shutil.which("fetchmail") is None:
            self.skipTest("fetchmail not installed (make deps)")
        super().setUp()
        self.home = os.path.join(self.srv.dir, "fetchmail-home")
        os.mkdir(self.home, 0o700)
        self.mda_out = os.path.join(self.home, "mda.out")

    def fetchmail(self, keep, extra="sslproto ''", expect_rc=(0,)):
        rc = os.path.join(self.home, ".fetchmailrc")
        with open(rc, "w") as f:
            f.write('set no bouncemail\n'
                    'poll 127.0.0.1 service %d proto POP3 timeout 30 uidl\n'
                    '  user "%s" there with password "%s" is "root" here\n'
                    '  %s %s mda "cat >> %s"\n'
                    % (self.srv.port, ALICE, PASSWORD,
                       "keep" if keep else "nokeep", extra, self.mda_out))
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=self.home)
        # fetchmail run as root keeps its lock in /var/run: a private
        # pidfile lets two test runs on one machine not collide.
        r = subprocess.run(["fetchmail", "--nodetach", "--nosyslog", "-v",
                            "-f", rc, "-i", os.path.join(self.home, ".fetchids"),
                            "--pidfile", os.path.join(self.home, "fetchmail.pid")],
                           env=env, capture_output=True, timeout=WAIT * 3)
        out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
        self.assertIn(r.returncode, expect_rc, out)
        return out

    def mda_text(self):
        try:
            with open(self.mda_out, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def test_keep_then_delete(self):
        m1 = b"From: a@remote.example\nSubject: fm one\nMessage-ID: <1@x>\n\n.dot line\nbody one\n"
        m2 = b"From: b@remote.example\nSubject: fm two\nMessage-ID: <2@x>\n\nbody two\n"
        self.put(m1)
        self.put(m2)
        before = self.files("new")
        out = self.fetchmail(keep=True)
        got = self.mda_text()
        self.assertEqual(got.count(b"Subject: fm one\n"), 1, got)
        self.assertEqual(got.count(b"Subject: fm two\n"), 1, got)
        self.assertIn(b"\n\n.dot line\nbody one\n", got)  # unstuffed, LF again
        self.srv.wait_handlers_exit()
        # keep: everything still on the server, untouched: fetchmail
        # fetches with TOP so that the mail stays unseen
        self.assertIn("TOP 1 99999999", out)
        self.assertEqual(self.files("new"), before)
        # second run in keep mode: the UIDLs are known, nothing is fetched
        self.fetchmail(keep=True, expect_rc=(1,))
        self.assertEqual(self.mda_text(), got)
        # a new message arrives; delete mode fetches it (fetchall for the
        # two seen ones) and deletes everything
        m3 = b"From: c@remote.example\nSubject: fm three\n\nbody three\n"
        self.put(m3)
        self.fetchmail(keep=False, extra="fetchall sslproto ''")
        got = self.mda_text()
        self.assertEqual(got.count(b"Subject: fm three\n"), 1)
        self.assertEqual(got.count(b"Subject: fm one\n"), 2)
        self.srv.wait_handlers_exit()
        self.assertEqual(self.files("new") + self.files("cur"), [])

    def test_stls_and_delete(self):
        m = b"From: a@remote.example\nSubject: fm tls\n\nsecret body\n"
        self.put(m)
        out = self.fetchmail(keep=False, extra="sslproto 'tls1.2+' no sslcertck")
        self.assertIn("STLS", out)
        self.assertIn(b"Subject: fm tls\n\nsecret body\n", self.mda_text())
        self.srv.wait_handlers_exit()
        self.assertEqual(self.files("new") + self.files("cur"), [])
        self.assertTrue(self.wait_log(r'USER=alice@example\.org TLS="TLSv1\.[23] .*'
                                      r"RETR=0 TOP=1 DELE=1 RESULT=ok$"))



class FetchmailImplicitTests(FetchmailTests):
    ARGS = ("--tls=implicit",)

    test_keep_then_delete = None
    test_stls_and_delete = None

    def test_implicit_ssl_keep(self):
        m = b"From: a@remote.example\nSubject: fm ssl\n\nbody\n"
        base, name = self.put(m)
        self.fetchmail(keep=True, extra="ssl sslproto 'tls1.2+' no sslcertck")
        self.assertIn(b"Subject: fm ssl\n\nbody\n", self.mda_text())
        self.srv.wait_handlers_exit()
        self.assertEqual(self.files("new"), [name])


class CurlTests(POP3TestCase):
    TLS = True

    def setUp(self):
        if shutil.which("curl") is None:
            self.skipTest("curl not installed (make deps)")
        super().setUp()

    def curl(self, url, *args):
        r = subprocess.run(["curl", "-sS", "--max-time", "30", "-u",
                            "%s:%s" % (ALICE, PASSWORD)] + list(args) + [url],
                           capture_output=True, timeout=WAIT * 2)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_retr_and_list(self):
        m1 = b"Subject: curl one\n\n.dot\nbody\n"
        m2 = b"Subject: curl two\n\nbody\n"
        self.put(m1)
        self.put(m2)
        base = "pop3://127.0.0.1:%d/" % self.srv.port
        self.assertEqual(self.curl(base + "1"), crlf(m1))
        self.assertEqual(self.curl(base + "2"), crlf(m2))
        self.assertEqual(self.curl(base),
                         b"1 %d\r\n2 %d\r\n" % (len(crlf(m1)), len(crlf(m2))))
        # over STLS, with the certificate checked
        self.assertEqual(self.curl(base + "1", "--ssl-reqd", "--cacert",
                                   certificate()[0]), crlf(m1))
        self.srv.wait_handlers_exit()
        self.assertEqual(len(self.files("cur")), 2)  # RETR'd: seen



class CurlImplicitTests(CurlTests):
    ARGS = ("--tls=implicit",)

    test_retr_and_list = None

    def test_pop3s(self):
        m = b"Subject: curl tls\n\nbody\n"
        self.put(m)
        url = "pop3s://127.0.0.1:%d/1" % self.srv.port
        self.assertEqual(self.curl(url, "--insecure"), crlf(m))
        self.assertEqual(self.curl(url, "--cacert", certificate()[0]), crlf(m))


if __name__ == "__main__":
    unittest.main()
