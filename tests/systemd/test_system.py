#!/usr/bin/python3
"""The installed product under a real systemd (run by tests/systemd/run.sh).

Runs on the host inside the container's network namespace, so 127.0.0.1
is the container's loopback where systemd listens on 25, 587, 110, 995,
143 and 993.  Commands inside the container go through $SBOX_EXEC
(nsenter into all its namespaces); its files are under $SBOX_ROOT.  The
remote side of outbound mail (an SMTP sink and a DNS server with its MX)
are the e2e suite's own, started here in the same network namespace.
"""

import imaplib
import json
import os
import poplib
import shlex
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import unittest

TOP = os.environ.get("TOP", os.getcwd())
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
from dnsmasq import Dnsmasq  # noqa: E402
from sink import Sink  # noqa: E402

ROOT = os.environ["SBOX_ROOT"]
EXEC = shlex.split(os.environ["SBOX_EXEC"])
USER, PASSWORD = "demo@example.test", "demo-password"
MAILDIR = ROOT + "/var/lib/sockmail/mail/example.test/demo"
TIMEOUT = 60


def inside(*argv, stdin=None, check=True):
    """Run a command in the container; its stdout."""
    r = subprocess.run(EXEC + list(argv), input=stdin, capture_output=True,
                       text=True, timeout=TIMEOUT)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv}: exit {r.returncode}: {r.stderr}")
    return r.stdout


def wait_for(what, predicate, timeout=TIMEOUT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def files(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message(subject, to=USER, sender="someone@remote.test"):
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@remote.test>\r\n\r\nbody of {subject}\r\n")


class System(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink = Sink()
        cls.sink.start()
        cls.dns = Dnsmasq(["--mx-host=remote.test,mx.remote.test,10",
                           "--host-record=mx.remote.test,127.0.0.1"])
        dns_port = cls.dns.start()
        conf = ("hostname = mail.example.test\n"
                "tls_cert = /etc/sockmail/cert.pem\n"
                "tls_key = /etc/sockmail/key.pem\n"
                f"dns_server = 127.0.0.1:{dns_port}\n"
                f"outbound_port = {cls.sink.port}\n")
        with open(ROOT + "/etc/sockmail/sockmail.conf", "w") as f:
            f.write(conf)
        inside("chgrp", "sockmail", "/etc/sockmail/key.pem")
        inside("systemctl", "enable", "--now", "sockmail.target")
        inside("/usr/sbin/sockmailctl", "domain", "add", "example.test")
        inside("/usr/sbin/sockmailctl", "user", "add", USER,
               "--password-stdin", stdin=PASSWORD + "\n")
        inside("useradd", "--create-home", "alice")

    @classmethod
    def tearDownClass(cls):
        cls.sink.stop()
        cls.dns.stop()

    def deliver(self, subject):
        with smtplib.SMTP("127.0.0.1", 25, timeout=TIMEOUT) as s:
            s.sendmail("someone@remote.test", [USER], message(subject))

    def test_01_units(self):
        for unit in ("sockmail-smtp.socket", "sockmail-submission.socket",
                     "sockmail-submissions.socket", "sockmail-pop3.socket",
                     "sockmail-pop3s.socket", "sockmail-imap.socket",
                     "sockmail-imaps.socket", "sockmail-sendmail.socket",
                     "sockmail-queue.timer", "sockmail-queue.path"):
            self.assertEqual(inside("systemctl", "is-active", unit,
                                    check=False).strip(), "active", unit)
        timer = inside("systemctl", "show", "sockmail-queue.timer",
                       "-p", "TimersCalendar")
        self.assertIn("*:0/15", timer.replace("00/15", "0/15"))

    def test_02_smtp_delivers_as_sockmail(self):
        self.deliver("smtp-in")
        names = wait_for("delivery", lambda: files(MAILDIR + "/new") or
                         files(MAILDIR + "/cur"))
        path = MAILDIR + ("/new/" if files(MAILDIR + "/new") else "/cur/") + names[0]
        owner = inside("stat", "-c", "%U", path.replace(ROOT, "", 1)).strip()
        self.assertEqual(owner, "sockmail")
        with open(path, "rb") as f:
            self.assertIn(b"body of smtp-in", f.read())

    def imap_check(self, m):
        m.login(USER, PASSWORD)
        typ, data = m.select("INBOX")
        self.assertEqual(typ, "OK")
        self.assertGreaterEqual(int(data[0]), 1)
        typ, data = m.search(None, "SUBJECT", "smtp-in")
        self.assertEqual(typ, "OK")
        self.assertTrue(data[0].split())
        m.logout()

    def test_03_imap_starttls_and_imaps(self):
        self.deliver("smtp-in")
        m = imaplib.IMAP4("127.0.0.1", 143, timeout=TIMEOUT)
        m.starttls(ssl_context=tls_context())
        self.imap_check(m)
        self.imap_check(imaplib.IMAP4_SSL("127.0.0.1", 993, timeout=TIMEOUT,
                                          ssl_context=tls_context()))

    def test_03b_idle_sees_delivery(self):
        # inotify inside the sandbox (SystemCallFilter, ProtectSystem)
        s = socket.create_connection(("127.0.0.1", 143), timeout=TIMEOUT)
        f = s.makefile("rwb")
        f.readline()
        f.write(f"a LOGIN {USER} {PASSWORD}\r\nb SELECT INBOX\r\n"
                "c IDLE\r\n".encode())
        f.flush()
        exists = None
        while True:
            line = f.readline()
            self.assertTrue(line, "connection closed")
            if line.endswith(b"EXISTS\r\n"):
                exists = int(line.split()[1])
            if line.startswith(b"+ "):
                break
        self.deliver("while-idle")
        while True:
            line = f.readline()   # bounded by the socket timeout
            self.assertTrue(line, "connection closed")
            if line.endswith(b"EXISTS\r\n") and int(line.split()[1]) > exists:
                break
        f.write(b"DONE\r\nd LOGOUT\r\n")
        f.flush()
        s.close()

    def test_04_pop3(self):
        self.deliver("smtp-in")
        p = poplib.POP3("127.0.0.1", 110, timeout=TIMEOUT)
        p.stls(context=tls_context())
        p.user(USER)
        p.pass_(PASSWORD)
        count, _ = p.stat()
        self.assertGreaterEqual(count, 1)
        p.quit()
        p = poplib.POP3_SSL("127.0.0.1", 995, timeout=TIMEOUT,
                            context=tls_context())
        p.user(USER)
        p.pass_(PASSWORD)
        _, lines, _ = p.retr(1)
        self.assertIn(b"Subject: smtp-in", lines)
        p.quit()

    def test_05_submission_path_unit(self):
        before = len(self.sink.accepted())
        with smtplib.SMTP("127.0.0.1", 587, timeout=TIMEOUT) as s:
            s.starttls(context=tls_context())
            s.login(USER, PASSWORD)
            s.sendmail(USER, ["bob@remote.test"],
                       message("outbound", "bob@remote.test", USER))
        # the path unit, not the 15-minute timer, sends it
        wait_for("the queue runner", lambda: len(self.sink.accepted()) > before,
                 timeout=120)
        txn = self.sink.accepted()[-1]
        self.assertIn("bob@remote.test", str(txn))

    def test_06_sendmail_as_ordinary_user(self):
        before = len(files(MAILDIR + "/new")) + len(files(MAILDIR + "/cur"))
        inside("runuser", "-u", "alice", "--", "/usr/sbin/sockmail-sendmail",
               "-t", stdin=f"To: {USER}\nSubject: from-alice\n\ncron says hi\n")
        wait_for("local delivery", lambda: len(files(MAILDIR + "/new")) +
                 len(files(MAILDIR + "/cur")) > before)
        # the links make install adds where no MTA owns the names
        self.assertEqual(os.readlink(ROOT + "/usr/sbin/sendmail"),
                         "/usr/sbin/sockmail-sendmail")
        inside("runuser", "-u", "alice", "--", "/usr/sbin/sendmail",
               USER, stdin="Subject: via-sendmail-link\n\nhi\n")
        # mailq is sockmailctl queue list (exit 0, a listing)
        self.assertRegex(inside("mailq"), r"(?i)queue|\d")

    def test_07_killed_handler_hurts_nobody_else(self):
        a = imaplib.IMAP4("127.0.0.1", 143, timeout=TIMEOUT)
        b = socket.create_connection(("127.0.0.1", 143), timeout=TIMEOUT)
        b.recv(1000)
        pids = inside("pgrep", "-f", "imap-handler").split()
        self.assertGreaterEqual(len(pids), 2)
        # kill the newest handler (b's), then a must still work
        inside("kill", "-9", max(pids, key=int))
        b.settimeout(TIMEOUT)
        self.assertEqual(b.recv(1000), b"")
        b.close()
        typ, _ = a.noop()
        self.assertEqual(typ, "OK")
        a.logout()

    def test_08_max_connections_per_source(self):
        limit = int(inside("systemctl", "show", "sockmail-pop3.socket", "-p",
                           "MaxConnectionsPerSource", "--value").strip())
        held = []
        try:
            for _ in range(limit):
                c = socket.create_connection(("127.0.0.1", 110), timeout=TIMEOUT)
                self.assertTrue(c.recv(1000).startswith(b"+OK"))
                held.append(c)
            extra = socket.create_connection(("127.0.0.1", 110), timeout=TIMEOUT)
            self.assertEqual(extra.recv(1000), b"")   # closed at once
            extra.close()
        finally:
            for c in held:
                c.close()

    def test_09_journal_session_lines(self):
        m = imaplib.IMAP4("127.0.0.1", 143, timeout=TIMEOUT)
        m.login(USER, PASSWORD)
        m.logout()

        def found():
            out = inside("journalctl", "-o", "json", "--no-pager",
                         "SYSLOG_IDENTIFIER=imap-handler")
            for line in out.splitlines():
                e = json.loads(line)
                if e.get("MESSAGE", "").startswith("session end") and \
                        e.get("SOCKMAIL_USER") == USER:
                    return e
            return None
        e = wait_for("the session's journal entry", found)
        for field in ("SOCKMAIL_PEER", "SOCKMAIL_RESULT"):
            self.assertIn(field, e)


if __name__ == "__main__":
    unittest.main(verbosity=2)
