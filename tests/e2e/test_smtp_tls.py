"""End-to-end tests of TLS and AUTH in smtp-handler: STARTTLS (RFC 3207),
implicit TLS (--tls=implicit), certificates picked by SNI, TLS versions,
session resumption across handler processes, AUTH PLAIN/LOGIN (RFC 4954)
and the brute-force limit, with real clients (smtplib, swaks, gnutls-cli,
Python's ssl) against smtp-handler under systemd-socket-activate.

Certificates are made once per run with certtool (gnutls-bin) in a temp dir:
a CA, an ECDSA certificate for mx.test.example (also valid for the IP
127.0.0.1, so smtplib can verify it) used as tls_cert/tls_key, and a
certbot-layout tls_cert_dir with mail.alpha.example (ECDSA) and
mail.beta.example (RSA).  Run from the repo root:
    BUILD=build /usr/bin/python3 -m unittest discover -s tests/e2e -p 'test_smtp_tls.py' -v
"""

import atexit
import base64
import os
import re
import shutil
import smtplib
import socket
import ssl
import stat
import subprocess
import tempfile
import time
import unittest
import warnings

from harness import (HOSTNAME, TIMEOUT, WAIT, ProtocolError, SockmailTestCase,
                     crlf_to_lf, cut_tls_mid_record, make_message, queue_id,
                     split_delivered, wait_until)

PASSWORD = "secret-Passw0rd"  # what harness.add_user gives every user
ALICE = "alice@example.org"
BOB = "bob@example.org"
NOT_LOOPBACK = "192.0.2.7"
CERTTOOL = shutil.which("certtool") or "/usr/bin/certtool"
GNUTLS_CLI = shutil.which("gnutls-cli") or "/usr/bin/gnutls-cli"
SWAKS = "/usr/bin/swaks"
ALPHA = "mail.alpha.example"
BETA = "mail.beta.example"

BASE_EHLO = ["250-" + HOSTNAME, "250-PIPELINING", "250-SIZE 52428800",
             "250-8BITMIME", "250-SMTPUTF8"]
LAST_EHLO = "250 ENHANCEDSTATUSCODES"

AUTH_FAILED_LINE = (r"^smtp-handler\[\d+\]: authentication failed "
                    r"PEER=%s USER=%s SERVICE=smtp$")
HANDSHAKE_FAILED = r"^smtp-handler\[\d+\]: TLS handshake failed PEER=\S+ ERROR=\S"
TLS_INFO = re.compile(rb"^using (TLSv1\.[23]) with cipher (\S+) \(\d+/\d+ bits\)$")


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def plain(user, password, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, password))


# ------------------------------------------------------------ certificates

class Certs:
    """The files of one test PKI (paths)."""

    def __init__(self, d):
        self.dir = d
        self.ca = os.path.join(d, "ca.pem")
        self.server_chain = os.path.join(d, "server-chain.pem")
        self.server_key = os.path.join(d, "server.key")
        self.cert_dir = os.path.join(d, "live")


def _certtool(cwd, *args):
    p = subprocess.run([CERTTOOL] + list(args), cwd=cwd, capture_output=True,
                       timeout=120)
    if p.returncode != 0:
        raise AssertionError("certtool %s failed: %s%s" % (
            " ".join(args), p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace")))


def _template(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _issue(d, name, cn, key_type, extra=()):
    """A key and a CA-signed server certificate; returns (cert, key) paths."""
    key = os.path.join(d, name + ".key")
    cert = os.path.join(d, name + ".pem")
    tmpl = os.path.join(d, name + ".tmpl")
    kt = ["--key-type=ecdsa"] if key_type == "ecdsa" else ["--key-type=rsa", "--bits=2048"]
    _certtool(d, "--generate-privkey", *kt, "--outfile", key)
    _template(tmpl, ['cn = "%s"' % cn, 'dns_name = "%s"' % cn, *extra,
                     "tls_www_server", "signing_key", "encryption_key",
                     "expiration_days = 30"])
    _certtool(d, "--generate-certificate", "--load-privkey", key,
              "--load-ca-certificate", os.path.join(d, "ca.pem"),
              "--load-ca-privkey", os.path.join(d, "ca.key"),
              "--template", tmpl, "--outfile", cert)
    os.chmod(key, 0o600)
    return cert, key


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


_CERTS = None


def certs():
    """The test PKI, made on first use and shared by every test."""
    global _CERTS
    if _CERTS is not None:
        return _CERTS
    d = tempfile.mkdtemp(prefix="sockmail-certs-")
    if not os.environ.get("SOCKMAIL_TEST_KEEP"):
        atexit.register(shutil.rmtree, d, True)
    c = Certs(d)
    _certtool(d, "--generate-privkey", "--key-type=ecdsa", "--outfile", "ca.key")
    _template(os.path.join(d, "ca.tmpl"), ['cn = "sockmail test CA"', "ca",
                                           "cert_signing_key", "crl_signing_key",
                                           "expiration_days = 30"])
    _certtool(d, "--generate-self-signed", "--load-privkey", "ca.key",
              "--template", "ca.tmpl", "--outfile", "ca.pem")
    cert, key = _issue(d, "server", HOSTNAME, "ecdsa", ['ip_address = "127.0.0.1"'])
    _write(c.server_chain, _read(cert) + _read(c.ca))
    c.server_key = key
    # certbot's layout: live/<name>/{cert,chain,fullchain,privkey}.pem
    for name, kt in ((ALPHA, "ecdsa"), (BETA, "rsa")):
        cert, key = _issue(d, name, name, kt)
        live = os.path.join(c.cert_dir, name)
        os.makedirs(live)
        _write(os.path.join(live, "cert.pem"), _read(cert))
        _write(os.path.join(live, "chain.pem"), _read(c.ca))
        _write(os.path.join(live, "fullchain.pem"), _read(cert) + _read(c.ca))
        _write(os.path.join(live, "privkey.pem"), _read(key), 0o600)
    _CERTS = c
    return c


def client_context(verify=True):
    """A client context trusting the test CA (TLS 1.2+)."""
    ctx = ssl.create_default_context(cafile=certs().ca)
    if not verify:
        ctx.check_hostname = False  # the chain is still verified
    return ctx


def cert_cn(peercert):
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


# ------------------------------------------------- TLS over memory buffers

class BioTLS:
    """TLS over a plain socket through memory BIOs, so that every byte the
    server sent is seen (raw), even when the handshake fails.  Offers
    recv/sendall/close/settimeout, enough to stand in for SMTPClient.sock."""

    def __init__(self, sock, ctx, server_hostname):
        self.sock = sock
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.raw = b""

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _feed(self):
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.raw += data
        if data:
            self.inc.write(data)
        else:
            self.inc.write_eof()
        return data

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()

    def recv(self, n):
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed():
                    try:
                        return self.obj.read(n)
                    except (ssl.SSLError, ssl.SSLZeroReturnError):
                        return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def sendall(self, data):
        self.obj.write(data)
        self._flush()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


def client_hello(server_hostname=HOSTNAME):
    """The bytes of a real ClientHello (Python's)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(inc, out, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


# ---------------------------------------------------------------- testcase

class TLSTestCase(SockmailTestCase):
    """A server with tls_cert/tls_key (mx.test.example) and tls_cert_dir
    (alpha, beta).  CONF adds or overrides keys."""

    def config(self):
        c = certs()
        conf = {"tls_cert": c.server_chain, "tls_key": c.server_key,
                "tls_cert_dir": c.cert_dir}
        conf.update(self.CONF)
        return conf

    def populate(self):
        s = self.srv
        s.add_domain("example.org")
        for u in ("alice", "bob"):
            s.add_user(u + "@example.org", PASSWORD)

    # -- dialog helpers
    def starttls(self, c, server_hostname=HOSTNAME, ctx=None, session=None):
        """STARTTLS on an EHLOed client; returns the SSLSocket."""
        r = c.cmd("STARTTLS")
        self.assertEqual(r.raw, b"220 2.0.0 Ready to start TLS\r\n", c.dump())
        return c.starttls(ctx or client_context(), server_hostname, session)

    def connect_tls(self, server_hostname=HOSTNAME, ehlo="client.test"):
        """Connect, EHLO, STARTTLS, EHLO again; returns (client, ehlo)."""
        c = self.connect()
        self.starttls(c, server_hostname)
        r = c.ehlo(ehlo)
        self.assertReply(r, 250, client=c)
        return c, r

    def connect_implicit(self, server_hostname=HOSTNAME, ctx=None):
        c = self.srv.connect()
        c.starttls(ctx or client_context(), server_hostname)
        return c

    def auth_plain(self, c, user=ALICE, password=PASSWORD):
        return c.cmd("AUTH PLAIN " + plain(user, password))

    def auth_login(self, c, user=ALICE, password=PASSWORD):
        r = c.cmd("AUTH LOGIN")
        self.assertEqual(r.raw, b"334 VXNlcm5hbWU6\r\n", c.dump())
        r = c.cmd(b64(user))
        self.assertEqual(r.raw, b"334 UGFzc3dvcmQ6\r\n", c.dump())
        return c.cmd(b64(password))

    def send_message(self, c, subject, sender=ALICE, rcpt=BOB):
        msg = make_message(subject, sender=sender.encode(), to=rcpt.encode())
        mail, rr, data, final = c.transaction(sender, [rcpt], msg)
        self.assertReply(mail, 250, "2.1.0", client=c)
        self.assertReply(rr[0], 250, "2.1.5", client=c)
        self.assertReply(data, 354, client=c)
        return msg, queue_id(final)

    def check_received(self, content, msg, sender, qid, proto, tls_version=None,
                       cipher=None, peer="127.0.0.1", helo="client.test", rcpt=BOB):
        """The delivered file: Return-Path, a Received header with the TLS
        clause (when tls_version) and protocol name, the message."""
        rp, m, body = split_delivered(self, content)
        self.assertEqual(rp, sender.encode())
        self.assertEqual(m.group("helo"), helo.encode(), content[:400])
        self.assertEqual(m.group("peer"), ("[%s]" % peer).encode(), content[:400])
        self.assertEqual(m.group("with"), proto.encode(), content[:400])
        self.assertEqual(m.group("id"), qid.encode())
        self.assertEqual(m.group("for"), rcpt.encode())
        if tls_version is None:
            self.assertIsNone(m.group("tls"), content[:400])
        else:
            self.assertIn(b"\n\t(using TLSv1.", content[:600])
            t = TLS_INFO.match(m.group("tls") or b"")
            self.assertIsNotNone(t, "TLS clause not as specified: %r" % content[:400])
            self.assertEqual(t.group(1).decode(), tls_version)
            if cipher is not None:
                self.assertEqual(t.group(2).decode(), cipher)
        self.assertEqual(body, crlf_to_lf(msg))
        return m

    def auth_failed_lines(self, peer="127.0.0.1", user=ALICE):
        return self.srv.stderr_lines(AUTH_FAILED_LINE % (re.escape(peer), re.escape(user)))

    def handshake_failures(self):
        return self.srv.stderr_lines(HANDSHAKE_FAILED)

    def wait_lines(self, regex, n):
        """Wait until the handler stderr has n lines matching regex and no
        handler runs any more; assert it has exactly n; return them.
        (Waiting for the line first: a handler for a connection the client
        already closed may not even be forked yet.)"""
        wait_until(lambda: len(self.srv.stderr_lines(regex)) >= n)
        self.assertHandlerGone()
        lines = self.srv.stderr_lines(regex)
        self.assertEqual(len(lines), n, "expected %d lines like %r:\n%s" % (
            n, regex, self.srv.stderr_text()[-4000:]))
        return lines

    def wait_handshake_failures(self, n=1):
        return self.wait_lines(HANDSHAKE_FAILED, n)

    def assertHandlerGone(self):
        self.assertTrue(self.srv.wait_handlers_exit(),
                        "handler still running: %r\nstderr:\n%s" % (
                            self.srv.handler_pids(), self.srv.stderr_text()[-3000:]))

    def assertNoSecret(self, *secrets):
        err = self.srv.stderr_text()
        for s in secrets:
            self.assertNotIn(s, err, "secret in handler stderr")


# ------------------------------------------------------------------- EHLO

class EhloTests(TLSTestCase):

    def test_ehlo_before_tls_from_loopback(self):
        c = self.srv.connect()
        c.greeting()
        r = c.ehlo()
        self.assertEqual(r.lines, BASE_EHLO + ["250-STARTTLS", "250-AUTH PLAIN LOGIN",
                                               LAST_EHLO], r.raw)

    def test_ehlo_after_tls(self):
        c, r = self.connect_tls()
        self.assertEqual(r.lines, BASE_EHLO + ["250-AUTH PLAIN LOGIN", LAST_EHLO], r.raw)
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0", client=c)
        c.expect_eof()

    def test_starttls_replies(self):
        c = self.connect()
        self.assertReply(c.cmd("STARTTLS now"), 501, "5.5.4", client=c)
        self.starttls(c)
        # the session starts over: no MAIL before a new EHLO
        self.assertReply(c.cmd("MAIL FROM:<%s>" % ALICE), 503, "5.5.1", client=c)
        self.assertReply(c.ehlo(), 250, client=c)
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % ALICE), 250, "2.1.0", client=c)
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0", client=c)
        c.expect_eof()

    def test_starttls_drops_transaction(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % ALICE), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<%s>" % BOB), 250, client=c)
        self.starttls(c)
        self.assertReply(c.ehlo(), 250, client=c)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("RCPT TO:<%s>" % BOB), 503, "5.5.1", client=c)
        self.assertNothingDelivered()

    def test_starttls_forgets_plaintext_auth(self):
        """RFC 3207 4.2: after TLS the server discards what it learnt from
        the client before, which includes a plaintext AUTH."""
        c = self.connect()
        self.assertReply(self.auth_plain(c), 235, "2.7.0", client=c)
        self.starttls(c)
        self.assertReply(c.ehlo(), 250, client=c)
        msg, qid = self.send_message(c, "after starttls")
        (n, content), = self.delivered(BOB)
        self.check_received(content, msg, ALICE, qid, "ESMTPS",
                            c.sock.version())
        # and logging in again inside TLS is allowed, not "already authenticated"
        self.assertReply(self.auth_plain(c), 235, "2.7.0", client=c)

    def test_helo_then_starttls_needs_ehlo(self):
        c = self.srv.connect()
        c.greeting()
        self.assertReply(c.cmd("HELO client.test"), 250, client=c)
        # STARTTLS is an ESMTP extension, but servers commonly accept it
        # after HELO too; either way it must not break the session
        r = c.cmd("STARTTLS")
        if r.code == 220:
            c.starttls(client_context(), HOSTNAME)
            self.assertReply(c.ehlo(), 250, client=c)
        else:
            self.assertReply(r, 503, client=c)
        self.assertReply(c.cmd("NOOP"), 250, client=c)


class NoCertTests(SockmailTestCase):
    """No tls_cert and no tls_cert_dir: STARTTLS is neither offered nor
    accepted; plaintext AUTH from loopback still is (auth_plaintext default)."""

    def test_no_starttls(self):
        c = self.srv.connect()
        c.greeting()
        r = c.ehlo()
        self.assertEqual(r.lines, BASE_EHLO + ["250-AUTH PLAIN LOGIN", LAST_EHLO], r.raw)
        self.assertReply(c.cmd("STARTTLS"), 454, "4.7.0", client=c)
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", client=c)

    def test_no_tls_implicit(self):
        """--tls=implicit without a certificate: the handshake cannot
        happen; the handler ends (one log line), no crash, no plaintext."""
        self.srv.stop()
        self.srv.start(["--tls=implicit"])
        c = self.srv.connect()
        with self.assertRaises((ssl.SSLError, OSError, ProtocolError)):
            c.starttls(client_context(), HOSTNAME)
            c.greeting()
        c.close()
        wait_until(lambda: self.srv.stderr_lines(HANDSHAKE_FAILED))
        self.assertTrue(self.srv.wait_handlers_exit())
        self.assertEqual(len(self.srv.stderr_lines(HANDSHAKE_FAILED)), 1,
                         self.srv.stderr_text())


# ---------------------------------------------------- who may AUTH in plaintext

class NotLoopbackTests(TLSTestCase):
    ENV = {"SOCKMAIL_TEST_PEER": NOT_LOOPBACK}

    def test_auth_not_offered_and_refused(self):
        c = self.srv.connect()
        c.greeting()
        r = c.ehlo()
        self.assertEqual(r.lines, BASE_EHLO + ["250-STARTTLS", LAST_EHLO], r.raw)
        self.assertReply(self.auth_plain(c), 538, "5.7.11", client=c)
        self.assertReply(c.cmd("AUTH LOGIN"), 538, "5.7.11", client=c)
        self.assertReply(c.cmd("AUTH PLAIN"), 538, "5.7.11", client=c)
        self.assertReply(c.cmd("NOOP"), 250, client=c)
        self.assertEqual(self.auth_failed_lines(NOT_LOOPBACK), [])
        self.assertNoSecret(PASSWORD, plain(ALICE, PASSWORD))

    def test_auth_after_starttls(self):
        c, r = self.connect_tls()
        self.assertIn("250-AUTH PLAIN LOGIN", r.lines, r.raw)
        self.assertReply(self.auth_plain(c), 235, "2.7.0", "Authentication successful", client=c)
        msg, qid = self.send_message(c, "from afar")
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        (n, content), = self.delivered(BOB)
        self.check_received(content, msg, ALICE, qid, "ESMTPSA", c.sock.version(),
                            peer=NOT_LOOPBACK)


class NeverPlaintextTests(TLSTestCase):
    CONF = {"auth_plaintext": "never"}

    def test_loopback_refused_before_tls(self):
        c = self.srv.connect()
        c.greeting()
        r = c.ehlo()
        self.assertEqual(r.lines, BASE_EHLO + ["250-STARTTLS", LAST_EHLO], r.raw)
        self.assertReply(self.auth_plain(c), 538, "5.7.11", client=c)
        self.assertReply(c.cmd("AUTH LOGIN"), 538, "5.7.11", client=c)
        self.starttls(c)
        r = c.ehlo()
        self.assertIn("250-AUTH PLAIN LOGIN", r.lines, r.raw)
        self.assertReply(self.auth_login(c), 235, "2.7.0", client=c)


# ---------------------------------------------------------------- smtplib

class SmtplibTests(TLSTestCase):

    def setUp(self):
        self.smtps = []
        super().setUp()

    def tearDown(self):
        for s in self.smtps:  # before the server waits for its handlers
            s.close()
        super().tearDown()

    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.srv.port, local_hostname="client.test",
                         timeout=TIMEOUT)
        self.smtps.append(s)
        return s

    def send(self, s, subject):
        msg = make_message(subject, sender=ALICE.encode(), to=BOB.encode())
        refused = s.sendmail(ALICE, [BOB], msg)
        self.assertEqual(refused, {})
        return msg

    def delivered_one(self):
        (n, content), = self.delivered(BOB)
        return content

    def test_starttls_login_send(self):
        s = self.smtp()
        s.ehlo()
        self.assertTrue(s.has_extn("starttls"))
        code, resp = s.starttls(context=client_context())
        self.assertEqual(code, 220, resp)
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"))
        self.assertEqual(s.esmtp_features.get("auth", "").split(), ["PLAIN", "LOGIN"])
        code, resp = s.login(ALICE, PASSWORD)
        self.assertEqual((code, resp), (235, b"2.7.0 Authentication successful"))
        msg = self.send(s, "smtplib tls login")
        code, resp = s.noop()
        self.assertEqual(code, 250)
        s.quit()
        content = self.delivered_one()
        rp, m, body = split_delivered(self, content)
        self.check_received(content, msg, ALICE, m.group("id").decode(), "ESMTPSA",
                            version, cipher if version == "TLSv1.3" else None)
        # the session log line names the user and the TLS parameters
        ends = self.wait_lines(r"session end .*USER=%s" % re.escape(ALICE), 1)
        self.assertIn("TLS=", ends[0])
        self.assertIn(version, ends[0])
        self.assertNoSecret(PASSWORD, plain(ALICE, PASSWORD), b64(PASSWORD))

    def test_starttls_login_mechanism(self):
        s = self.smtp()
        s.ehlo()
        s.starttls(context=client_context())
        s.ehlo()
        s.user, s.password = ALICE, PASSWORD
        code, resp = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        self.assertEqual(code, 235, resp)
        self.send(s, "login mechanism")
        s.quit()
        self.assertIn(b"with ESMTPSA id", self.delivered_one())

    def test_starttls_without_login(self):
        s = self.smtp()
        s.starttls(context=client_context())
        version = s.sock.version()
        msg = self.send(s, "tls no login")
        s.quit()
        content = self.delivered_one()
        rp, m, body = split_delivered(self, content)
        self.check_received(content, msg, ALICE, m.group("id").decode(), "ESMTPS", version)

    def test_plaintext_login_from_loopback(self):
        s = self.smtp()
        s.ehlo()
        self.assertEqual(s.esmtp_features.get("auth", "").split(), ["PLAIN", "LOGIN"])
        s.login(ALICE, PASSWORD)
        msg = self.send(s, "plaintext login")
        s.quit()
        content = self.delivered_one()
        rp, m, body = split_delivered(self, content)
        self.check_received(content, msg, ALICE, m.group("id").decode(), "ESMTPA")

    def test_wrong_password_smtplib(self):
        s = self.smtp()
        s.starttls(context=client_context())
        s.ehlo()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            s.login(ALICE, "wrong-password")
        self.assertEqual(cm.exception.smtp_code, 535)
        self.assertEqual(cm.exception.smtp_error, b"5.7.8 Error: authentication failed")


class ImplicitTLSTests(TLSTestCase):
    ARGS = ["--tls=implicit"]

    def test_smtp_ssl_login_send(self):
        s = smtplib.SMTP_SSL("127.0.0.1", self.srv.port, local_hostname="client.test",
                             timeout=TIMEOUT, context=client_context())
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"))
        self.assertEqual(s.esmtp_features.get("auth", "").split(), ["PLAIN", "LOGIN"])
        code, resp = s.login(ALICE, PASSWORD)
        self.assertEqual(code, 235, resp)
        msg = make_message("implicit", sender=ALICE.encode(), to=BOB.encode())
        self.assertEqual(s.sendmail(ALICE, [BOB], msg), {})
        s.quit()
        s.close()
        (n, content), = self.delivered(BOB)
        rp, m, body = split_delivered(self, content)
        self.check_received(content, msg, ALICE, m.group("id").decode(), "ESMTPSA",
                            version, cipher if version == "TLSv1.3" else None)

    def test_greeting_inside_tls(self):
        c = self.connect_implicit()
        g = c.greeting()
        self.assertEqual(g.raw, b"220 " + HOSTNAME.encode() + b" ESMTP sockmail\r\n")
        r = c.ehlo()
        self.assertEqual(r.lines, BASE_EHLO + ["250-AUTH PLAIN LOGIN", LAST_EHLO], r.raw)
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0", client=c)
        c.expect_eof()

    def test_client_closes_immediately(self):
        c = self.srv.connect()
        c.close()
        self.wait_handshake_failures(1)

    def test_plaintext_client(self):
        """A client speaking plaintext SMTP to the TLS port gets no SMTP
        reply (at most a TLS alert), and the handler ends."""
        c = self.srv.connect()
        c.send(b"EHLO plain.test\r\n")
        data = b""
        while True:
            try:
                d = c.sock.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                break
            data += d
        self.assertTrue(data == b"" or data[:1] == b"\x15", repr(data[:200]))
        self.wait_handshake_failures(1)

    def test_garbage(self):
        c = self.srv.connect()
        c.send(os.urandom(3000))
        c.close()
        self.wait_handshake_failures(1)

    def test_partial_client_hello(self):
        c = self.srv.connect()
        c.send(client_hello()[:50])
        c.close()
        self.wait_handshake_failures(1)

    @unittest.skipUnless(os.access(SWAKS, os.X_OK), "swaks not installed")
    def test_swaks_tlsc_plain(self):
        run_swaks(self, "--tls-on-connect", "--auth", "PLAIN")

    @unittest.skipUnless(os.access(SWAKS, os.X_OK), "swaks not installed")
    def test_swaks_tlsc_login(self):
        run_swaks(self, "--tls-on-connect", "--auth", "LOGIN")

    @unittest.skipUnless(os.access(GNUTLS_CLI, os.X_OK), "gnutls-cli not installed")
    def test_resume_gnutls_cli(self):
        rc, out = gnutls_cli(self, "--resume", starttls=False)
        self.assertEqual(rc, 0, out)
        self.assertIn("This is a resumed session", out)
        check_ticket_key(self)


# ------------------------------------------------------------------ swaks

def run_swaks(tc, *extra):
    """swaks from alice to bob with alice's login; checks the delivery."""
    argv = [SWAKS, "--server", "127.0.0.1", "--port", str(tc.srv.port),
            "--to", BOB, "--from", ALICE, "--ehlo", "swaks.test",
            "--auth-user", ALICE, "--auth-password", PASSWORD,
            "--tls-verify", "--tls-ca-path", certs().ca,
            "--header", "Subject: swaks tls", "--body", "Hello over TLS",
            "--timeout", "30"] + list(extra)
    p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT * 3)
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    tc.assertEqual(p.returncode, 0, out)
    tc.assertRegex(out, r"<~ {1,2}235 2\.7\.0 Authentication successful")
    m = re.search(r"<~ {1,2}250 2\.0\.0 Ok: queued as (\S+)", out)
    tc.assertIsNotNone(m, out)
    (n, content), = tc.delivered(BOB)
    rp, rm, body = split_delivered(tc, content)
    tc.assertEqual(rp, ALICE.encode())
    tc.assertEqual(rm.group("helo"), b"swaks.test")
    tc.assertEqual(rm.group("id").decode(), m.group(1))
    tc.assertEqual(rm.group("with"), b"ESMTPSA", content[:400])
    tc.assertIsNotNone(TLS_INFO.match(rm.group("tls") or b""), content[:400])
    tc.assertIn(b"\n\nHello over TLS\n", body)
    return out


@unittest.skipUnless(os.access(SWAKS, os.X_OK), "swaks not installed")
class SwaksTests(TLSTestCase):

    def test_swaks_tls_plain(self):
        run_swaks(self, "--tls", "--auth", "PLAIN")

    def test_swaks_tls_login(self):
        run_swaks(self, "--tls", "--auth", "LOGIN")


# ------------------------------------------------------- certificates, SNI

def gnutls_cli(tc, *args, input=b"", starttls=True):
    argv = [GNUTLS_CLI, "--port", str(tc.srv.port), "--x509cafile", certs().ca]
    if starttls:
        argv.append("--starttls-proto=smtp")
    argv += list(args) + ["127.0.0.1"]
    p = subprocess.run(argv, input=input, capture_output=True, timeout=TIMEOUT * 2)
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    return p.returncode, "$ %s\n%s" % (" ".join(argv), out)


def gnutls_subject(out):
    m = re.search(r"Certificate\[0\] info:\s*\n\s*- subject `([^']*)'", out)
    return m.group(1) if m else None


def check_ticket_key(tc):
    path = os.path.join(tc.srv.state_dir, "tls-ticket.key")
    tc.assertTrue(os.path.isfile(path), "no %s: %r" % (path, os.listdir(tc.srv.state_dir)))
    st = os.stat(path)
    tc.assertEqual(stat.S_IMODE(st.st_mode), 0o600, oct(st.st_mode))
    tc.assertGreater(st.st_size, 0)
    return path


class CertificateTests(TLSTestCase):

    def peer_cert(self, server_hostname, verify=True):
        """STARTTLS by hand with this SNI; returns getpeercert()."""
        c = self.connect()
        sock = self.starttls(c, server_hostname, ctx=client_context(verify))
        cert = sock.getpeercert()
        self.assertReply(c.ehlo(), 250, client=c)
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        return cert

    def test_sni_python(self):
        for name in (ALPHA, BETA, HOSTNAME):
            cert = self.peer_cert(name)  # verifies chain and host name
            self.assertEqual(cert_cn(cert), name)
            self.assertIn(("DNS", name), cert["subjectAltName"])

    def test_unknown_or_no_sni_gets_default(self):
        for name in ("other.example", None):
            cert = self.peer_cert(name, verify=False)
            self.assertEqual(cert_cn(cert), HOSTNAME, name)

    def test_sni_case_insensitive(self):
        """Host names are case-insensitive (RFC 6066 3, RFC 4343)."""
        cert = self.peer_cert("MAIL.Alpha.EXAMPLE", verify=False)
        self.assertEqual(cert_cn(cert), ALPHA)

    @unittest.skipUnless(os.access(GNUTLS_CLI, os.X_OK), "gnutls-cli not installed")
    def test_sni_no_path_games(self):
        """An SNI name is never used as a path: dots, slashes and ".."
        give the default certificate (or no handshake), never another
        domain's."""
        for name in ("..", ALPHA + "/../" + BETA, BETA + "/.", "." + BETA,
                     "../live/" + BETA, BETA + "/", "live/" + BETA, BETA + "."):
            rc, out = gnutls_cli(self, "--sni-hostname", name, "--no-ca-verification")
            subject = gnutls_subject(out)
            if subject is None:
                self.assertNotIn("Handshake was completed", out)
            elif name == BETA + ".":
                # a trailing dot is the same DNS name: either is fine
                self.assertIn(subject, ("CN=" + BETA, "CN=" + HOSTNAME), out)
            else:
                self.assertEqual(subject, "CN=" + HOSTNAME, out)

    def test_renewed_certificate_next_connection(self):
        """Every connection is a new process: a certificate replaced in
        tls_cert_dir (as certbot renews) is served from the next connection
        on, with no reload."""
        live = os.path.join(self.srv.dir, "live")
        shutil.copytree(certs().cert_dir, live)
        self.srv.stop()
        self.srv.write_config(dict(self.config(), tls_cert_dir=live))
        self.srv.start()
        old = self.peer_cert(ALPHA)
        work = os.path.join(self.srv.dir, "renew")
        os.mkdir(work)
        for f in ("ca.pem", "ca.key"):
            shutil.copy(os.path.join(certs().dir, f), work)
        cert, key = _issue(work, "renewed", ALPHA, "ecdsa")
        # certbot replaces the files (symlinks into archive/, in fact)
        _write(os.path.join(live, ALPHA, "fullchain.pem.new"), _read(cert) + _read(certs().ca))
        _write(os.path.join(live, ALPHA, "privkey.pem.new"), _read(key), 0o600)
        os.rename(os.path.join(live, ALPHA, "privkey.pem.new"),
                  os.path.join(live, ALPHA, "privkey.pem"))
        os.rename(os.path.join(live, ALPHA, "fullchain.pem.new"),
                  os.path.join(live, ALPHA, "fullchain.pem"))
        new = self.peer_cert(ALPHA)
        self.assertEqual(cert_cn(new), ALPHA)
        self.assertNotEqual(new["serialNumber"], old["serialNumber"])

    def test_broken_certificate(self):
        """tls_cert names a file that is not there: STARTTLS is refused
        with 454 (the session goes on) or the handshake fails with one log
        line; no crash either way."""
        self.srv.stop()
        self.srv.write_config(dict(self.config(), tls_cert=os.path.join(self.srv.dir, "nope.pem"),
                                   tls_cert_dir=""))
        self.srv.start()
        c = self.connect()
        r = c.cmd("STARTTLS")
        if r.code == 220:
            with self.assertRaises((ssl.SSLError, OSError)):
                c.starttls(client_context(), HOSTNAME)
            c.close()
            self.wait_handshake_failures(1)
        else:
            self.assertReply(r, 454, "4.7.0", client=c)
            self.assertReply(c.cmd("NOOP"), 250, client=c)

    @unittest.skipUnless(os.access(GNUTLS_CLI, os.X_OK), "gnutls-cli not installed")
    def test_chain_gnutls_cli(self):
        rc, out = gnutls_cli(self)
        self.assertEqual(rc, 0, out)
        self.assertIn("The certificate is trusted", out)
        self.assertEqual(gnutls_subject(out), "CN=" + HOSTNAME, out)
        self.assertRegex(out, r"Certificate\[1\] info:\s*\n\s*- subject `CN=sockmail test CA'",
                         "tls_cert's chain (server + CA) not sent")

    @unittest.skipUnless(os.access(GNUTLS_CLI, os.X_OK), "gnutls-cli not installed")
    def test_sni_gnutls_cli(self):
        for name in (ALPHA, BETA):
            rc, out = gnutls_cli(self, "--sni-hostname", name, "--verify-hostname", name)
            self.assertEqual(rc, 0, out)
            self.assertIn("The certificate is trusted", out)
            self.assertEqual(gnutls_subject(out), "CN=" + name, out)


# ----------------------------------------------------------- TLS versions

class VersionTests(TLSTestCase):

    def handshake(self, ctx):
        c = self.connect()
        self.assertReply(c.cmd("STARTTLS"), 220, client=c)
        return c, c.starttls(ctx, HOSTNAME)

    def test_tls12_and_tls13(self):
        for v, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            ctx = client_context()
            ctx.minimum_version = ctx.maximum_version = v
            c, sock = self.handshake(ctx)
            self.assertEqual(sock.version(), name)
            self.assertReply(c.ehlo(), 250, client=c)
            self.assertReply(self.auth_plain(c), 235, client=c)
            msg, qid = self.send_message(c, "over " + name)
            self.assertReply(c.cmd("QUIT"), 221, client=c)
            c.expect_eof()
            files = self.delivered(BOB, 1 if name == "TLSv1.2" else 2)
            content = [x for n, x in files if b"Subject: over " + name.encode() in x][0]
            self.check_received(content, msg, ALICE, qid, "ESMTPSA", name)

    def test_tls11_refused_python(self):
        ctx = client_context()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError:
            self.skipTest("local OpenSSL cannot lower its security level")
        # make sure this client really offers TLS 1.1 at most
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname=HOSTNAME)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as e:
            self.skipTest("local OpenSSL will not speak TLS 1.1: %s" % e)
        hello = out.read()
        if hello[9:11] != b"\x03\x02":
            self.skipTest("ClientHello is not TLS 1.1: %r" % hello[:12])
        c = self.connect()
        self.assertReply(c.cmd("STARTTLS"), 220, client=c)
        with self.assertRaises((ssl.SSLError, ConnectionResetError)) as cm:
            c.starttls(ctx, HOSTNAME)
        c.close()
        self.wait_handshake_failures(1)
        if isinstance(cm.exception, ssl.SSLError):
            self.assertNotIn("NO_PROTOCOLS_AVAILABLE", str(cm.exception))

    @unittest.skipUnless(os.access(GNUTLS_CLI, os.X_OK), "gnutls-cli not installed")
    def test_old_versions_refused_gnutls_cli(self):
        for n, v in enumerate(("TLS1.0", "TLS1.1"), 1):
            rc, out = gnutls_cli(self, "--priority", "NORMAL:-VERS-ALL:+VERS-" + v)
            self.assertNotEqual(rc, 0, out)
            self.assertNotIn("Handshake was completed", out)
            self.assertNotIn("- Description:", out)
            self.wait_handshake_failures(n)

    @unittest.skipUnless(os.access(GNUTLS_CLI, os.X_OK), "gnutls-cli not installed")
    def test_new_versions_gnutls_cli(self):
        for v in ("TLS1.2", "TLS1.3"):
            rc, out = gnutls_cli(self, "--priority", "NORMAL:-VERS-ALL:+VERS-" + v)
            self.assertEqual(rc, 0, out)
            self.assertRegex(out, r"- (Version|Description): \(?%s\)?" % re.escape(v))


# ------------------------------------------------------------- resumption

class ResumptionTests(TLSTestCase):

    @unittest.skipUnless(os.access(GNUTLS_CLI, os.X_OK), "gnutls-cli not installed")
    def test_resume_gnutls_cli(self):
        rc, out = gnutls_cli(self, "--resume")
        self.assertEqual(rc, 0, out)
        self.assertIn("This is a resumed session", out)
        check_ticket_key(self)

    def test_resume_python(self):
        ctx = client_context()
        c = self.connect()
        sock = self.starttls(c, ctx=ctx)
        self.assertReply(c.ehlo(), 250, client=c)  # TLS 1.3: the ticket comes with data
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        self.assertFalse(sock.session_reused)
        session = sock.session
        self.assertIsNotNone(session)
        path = check_ticket_key(self)
        key = _read(path)
        self.assertHandlerGone()
        # a new handler process resumes the session
        c2 = self.connect()
        sock2 = self.starttls(c2, ctx=ctx, session=session)
        self.assertTrue(sock2.session_reused, "second connection not resumed")
        r = c2.ehlo()
        self.assertIn("250-AUTH PLAIN LOGIN", r.lines, r.raw)
        self.assertReply(self.auth_plain(c2), 235, client=c2)
        msg, qid = self.send_message(c2, "resumed")
        (n, content), = self.delivered(BOB)
        self.check_received(content, msg, ALICE, qid, "ESMTPSA", sock2.version())
        # the key is kept, not made again per connection
        self.assertEqual(_read(path), key)

    def test_resume_tls12_python(self):
        ctx = client_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        c = self.connect()
        sock = self.starttls(c, ctx=ctx)
        self.assertReply(c.ehlo(), 250, client=c)
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        session = sock.session
        c2 = self.connect()
        sock2 = self.starttls(c2, ctx=ctx, session=session)
        self.assertTrue(sock2.session_reused, "TLS 1.2 session not resumed")
        self.assertReply(c2.ehlo(), 250, client=c2)

    def test_ticket_key_replaced_when_stale(self):
        """A ticket key older than tls_ticket_key_lifetime is replaced
        (and keeps mode 0600); a resumption with a ticket made under the
        old key then falls back to a full handshake that works."""
        ctx = client_context()
        c = self.connect()
        sock = self.starttls(c, ctx=ctx)
        self.assertReply(c.ehlo(), 250, client=c)
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        path = check_ticket_key(self)
        old = _read(path)
        past = time.time() - 3 * 24 * 3600
        os.utime(path, (past, past))
        c2 = self.connect()
        self.starttls(c2, ctx=ctx)
        self.assertReply(c2.ehlo(), 250, client=c2)
        self.assertReply(c2.cmd("QUIT"), 221, client=c2)
        c2.expect_eof()
        check_ticket_key(self)
        self.assertNotEqual(_read(path), old, "stale ticket key not replaced")


# ------------------------------------------------------------------- AUTH

class AuthTests(TLSTestCase):
    """The SASL dialogs (plaintext from loopback: allowed by default)."""

    def test_plain_initial_response(self):
        c = self.connect()
        r = self.auth_plain(c)
        self.assertEqual(r.raw, b"235 2.7.0 Authentication successful\r\n", c.dump())
        msg, qid = self.send_message(c, "plain ir")
        (n, content), = self.delivered(BOB)
        self.check_received(content, msg, ALICE, qid, "ESMTPA")
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        self.wait_lines(r"session end .*USER=%s" % re.escape(ALICE), 1)

    def test_plain_continuation(self):
        c = self.connect()
        r = c.cmd("AUTH PLAIN")
        self.assertEqual(r.raw, b"334 \r\n", c.dump())
        self.assertReply(c.cmd(plain(ALICE, PASSWORD)), 235, "2.7.0", client=c)

    def test_plain_authzid_same_user(self):
        c = self.connect()
        self.assertReply(c.cmd("AUTH PLAIN " + plain(ALICE, PASSWORD, ALICE)),
                         235, "2.7.0", client=c)

    def test_user_case_insensitive(self):
        c = self.connect()
        self.assertReply(c.cmd("AUTH PLAIN " + plain("Alice@Example.ORG", PASSWORD)),
                         235, "2.7.0", client=c)

    def test_login_challenges(self):
        c = self.connect()
        self.assertReply(self.auth_login(c), 235, "2.7.0", client=c)

    def test_login_initial_response(self):
        c = self.connect()
        r = c.cmd("AUTH LOGIN " + b64(ALICE))
        self.assertEqual(r.raw, b"334 UGFzc3dvcmQ6\r\n", c.dump())
        self.assertReply(c.cmd(b64(PASSWORD)), 235, "2.7.0", client=c)

    def test_mechanism_case_insensitive(self):
        c = self.connect()
        self.assertReply(c.cmd("auth plain " + plain(ALICE, PASSWORD)), 235, client=c)

    def test_cancel(self):
        c = self.connect()
        self.assertEqual(c.cmd("AUTH PLAIN").raw, b"334 \r\n", c.dump())
        self.assertReply(c.cmd("*"), 501, "5.7.0", client=c)
        self.assertEqual(c.cmd("AUTH LOGIN").code, 334, c.dump())
        self.assertReply(c.cmd("*"), 501, "5.7.0", client=c)
        self.assertEqual(c.cmd("AUTH LOGIN " + b64(ALICE)).code, 334, c.dump())
        self.assertReply(c.cmd("*"), 501, "5.7.0", client=c)
        # nothing half-done is left: a normal login works
        self.assertReply(self.auth_plain(c), 235, "2.7.0", client=c)
        self.assertEqual(self.auth_failed_lines(), [])

    def test_bad_base64(self):
        c = self.connect()
        self.assertReply(c.cmd("AUTH PLAIN !!!notbase64"), 501, "5.5.2", client=c)
        self.assertEqual(c.cmd("AUTH PLAIN").code, 334, c.dump())
        self.assertReply(c.cmd("a b c"), 501, "5.5.2", client=c)
        self.assertReply(c.cmd("AUTH LOGIN %%%"), 501, "5.5.2", client=c)
        self.assertEqual(c.cmd("AUTH LOGIN").code, 334, c.dump())
        self.assertReply(c.cmd("YWxpY2U"), 501, "5.5.2", client=c)  # bad padding
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", client=c)
        self.assertReply(self.auth_plain(c), 235, "2.7.0", client=c)

    def test_auth_twice(self):
        c = self.connect()
        self.assertReply(self.auth_plain(c), 235, client=c)
        self.assertReply(self.auth_plain(c), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("AUTH LOGIN"), 503, "5.5.1", client=c)

    def test_auth_inside_mail(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % ALICE), 250, client=c)
        self.assertReply(self.auth_plain(c), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("RSET"), 250, client=c)
        self.assertReply(self.auth_plain(c), 235, client=c)

    def test_auth_before_ehlo(self):
        c = self.srv.connect()
        c.greeting()
        self.assertReply(self.auth_plain(c), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("HELO client.test"), 250, client=c)
        self.assertReply(self.auth_plain(c), 503, "5.5.1", client=c)
        self.assertReply(c.ehlo(), 250, client=c)
        self.assertReply(self.auth_plain(c), 235, client=c)

    def test_unknown_mechanism(self):
        c = self.connect()
        self.assertReply(c.cmd("AUTH CRAM-MD5"), 504, "5.5.4", client=c)
        self.assertReply(self.auth_plain(c), 235, client=c)

    def test_auth_without_mechanism(self):
        c = self.connect()
        r = c.cmd("AUTH")
        self.assertIn(r.code, (501, 504), c.dump())
        self.assertReply(c.cmd("NOOP"), 250, client=c)

    def test_auth_opens_relay(self):
        """An authenticated client may relay even at port 25 (as Postfix's
        permit_sasl_authenticated); without AUTH the same RCPT is refused."""
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % ALICE), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<someone@foreign.example>"), 554, "5.7.1", client=c)
        self.assertReply(c.cmd("RSET"), 250, client=c)
        self.assertReply(self.auth_plain(c), 235, client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % ALICE), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<someone@foreign.example>"), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<%s>" % BOB), 250, client=c)

    def test_wrong_password(self):
        c = self.connect()
        secret = "Wr0ng-Secret-xyzzy"
        r = self.auth_plain(c, ALICE, secret)
        self.assertEqual(r.raw, b"535 5.7.8 Error: authentication failed\r\n", c.dump())
        r = self.auth_login(c, ALICE, secret + "2")
        self.assertReply(r, 535, "5.7.8", "Error: authentication failed", client=c)
        self.assertReply(c.cmd("NOOP"), 250, client=c)
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        self.assertHandlerGone()
        self.assertEqual(len(self.auth_failed_lines()), 2, self.srv.stderr_text())
        self.assertNoSecret(secret, plain(ALICE, secret), b64(secret + "2"), PASSWORD)

    def test_unknown_user(self):
        c = self.connect()
        r = self.auth_plain(c, "nobody@example.org", PASSWORD)
        self.assertEqual(r.raw, b"535 5.7.8 Error: authentication failed\r\n", c.dump())
        r = self.auth_login(c, "nobody@example.org", PASSWORD)
        self.assertReply(r, 535, "5.7.8", client=c)
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        self.assertHandlerGone()
        self.assertEqual(len(self.auth_failed_lines(user="nobody@example.org")), 2,
                         self.srv.stderr_text())
        self.assertNoSecret(PASSWORD)

    def test_auth_over_tls_wrong_password(self):
        c, r = self.connect_tls()
        self.assertReply(self.auth_plain(c, ALICE, "nope-nope"), 535, "5.7.8", client=c)
        self.assertReply(self.auth_plain(c), 235, "2.7.0", client=c)
        self.assertEqual(len(self.auth_failed_lines()), 1, self.srv.stderr_text())


# ------------------------------------------------------------ brute force

class BruteForceTests(TLSTestCase):
    """auth_fail_limit = 10 (the default) failures per address, window
    15 minutes (the default)."""

    def test_eleventh_attempt_blocked(self):
        for conn in range(2):
            c = self.connect()
            for i in range(5):
                if i % 2:
                    r = self.auth_login(c, ALICE, "bad-%d-%d" % (conn, i))
                else:
                    r = self.auth_plain(c, ALICE, "bad-%d-%d" % (conn, i))
                self.assertReply(r, 535, "5.7.8", client=c)
            self.assertReply(c.cmd("QUIT"), 221, client=c)
            c.expect_eof()
        self.assertHandlerGone()
        self.assertEqual(len(self.auth_failed_lines()), 10, self.srv.stderr_text())
        # the 11th attempt, with the right password, is refused unchecked
        c = self.connect()
        r = self.auth_plain(c)
        self.assertReply(r, 454, "4.7.0", client=c)
        r = c.cmd("AUTH LOGIN")  # refused before any challenge
        self.assertReply(r, 454, "4.7.0", client=c)
        # the session goes on
        msg, qid = self.send_message(c, "still takes mail")
        (n, content), = self.delivered(BOB)
        self.check_received(content, msg, ALICE, qid, "ESMTP")
        # also over TLS
        c2, _ = self.connect_tls()
        self.assertReply(self.auth_plain(c2), 454, "4.7.0", client=c2)
        # another address is not blocked (restart the listener as 127.0.0.2,
        # still loopback so plaintext AUTH is allowed)
        self.srv.stop()
        self.srv.start(env={"SOCKMAIL_TEST_PEER": "127.0.0.2"})
        c3 = self.connect()
        self.assertReply(self.auth_plain(c3), 235, "2.7.0", client=c3)
        # and the first address still is
        self.srv.stop()
        self.srv.start()
        c4 = self.connect()
        self.assertReply(self.auth_plain(c4), 454, "4.7.0", client=c4)



class BruteForceAddressTests(TLSTestCase):
    """Failures are counted per address; IPv6 clients per /64."""
    CONF = {"auth_fail_limit": "3"}

    def test_addresses_counted_separately(self):
        for peer in ("127.0.0.3", "127.0.0.4"):
            self.srv.stop()
            self.srv.start(env={"SOCKMAIL_TEST_PEER": peer})
            c = self.connect()
            for i in range(2):
                self.assertReply(self.auth_plain(c, ALICE, "bad%d" % i), 535, client=c)
        # 2 + 2 failures, 2 per address: nobody is blocked
        c = self.connect()
        self.assertReply(self.auth_plain(c), 235, "2.7.0", client=c)
        self.assertEqual(len(self.auth_failed_lines("127.0.0.3")), 2)
        self.assertEqual(len(self.auth_failed_lines("127.0.0.4")), 2)

    def login_as(self, peer, password):
        self.srv.stop()
        self.srv.start(env={"SOCKMAIL_TEST_PEER": peer})
        c, r = self.connect_tls()
        return c, self.auth_plain(c, ALICE, password)

    def test_per_slash_64(self):
        for i, peer in enumerate(("IPv6:2001:db8:1:2::1", "IPv6:2001:db8:1:2::2",
                                  "IPv6:2001:db8:1:2:aaaa:bbbb:cccc:dddd")):
            c, r = self.login_as(peer, "bad%d" % i)
            self.assertReply(r, 535, "5.7.8", client=c)
        c, r = self.login_as("IPv6:2001:db8:1:2::99", PASSWORD)
        self.assertReply(r, 454, "4.7.0", client=c)
        c, r = self.login_as("IPv6:2001:db8:1:3::1", PASSWORD)
        self.assertReply(r, 235, "2.7.0", client=c)


class BruteForceWindowTests(TLSTestCase):
    CONF = {"auth_fail_limit": "3", "auth_fail_window": "2s"}

    def test_window_passes(self):
        c = self.connect()
        first_failure = time.monotonic()
        for i in range(3):
            self.assertReply(self.auth_plain(c, ALICE, "bad%d" % i), 535, client=c)
        r = self.auth_plain(c)
        if time.monotonic() - first_failure < 1.0:
            # surely still inside the 2 s window, even counted in whole
            # seconds (no timing assertion otherwise: a slow machine may
            # already be past it)
            self.assertReply(r, 454, "4.7.0", client=c)
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        # poll, generously, until the failures have aged out
        codes = []

        def try_login():
            c = self.connect()
            r = self.auth_plain(c)
            codes.append(r.code)
            c.cmd("QUIT")
            c.close()
            if r.code == 235:
                return True
            self.assertReply(r, 454, "4.7.0", client=c)
            time.sleep(0.5)
            return False
        deadline = time.monotonic() + WAIT
        ok = False
        while not ok and time.monotonic() < deadline:
            ok = try_login()
        self.assertTrue(ok, "login still refused %ds after the 2s window: %r"
                        % (WAIT, codes))


class BadCommandInteractionTests(TLSTestCase):
    CONF = {"auth_fail_limit": "100", "max_bad_commands": "5"}

    def test_auth_failures_count_as_bad_commands(self):
        """max_bad_commands ends a session full of failed AUTHs."""
        c = self.connect()
        codes = []
        for i in range(10):
            try:
                r = self.auth_plain(c, ALICE, "bad%d" % i)
            except ProtocolError:
                break
            codes.append(r.code)
            if r.code == 421:
                break
        self.assertIn(421, codes, c.dump())
        self.assertTrue(all(x == 535 for x in codes[:-1]), codes)
        self.assertIn(len(codes), (5, 6), codes)


# -------------------------------------------- STARTTLS plaintext injection

class InjectionTests(TLSTestCase):

    def injected(self, payload, split=False):
        """After EHLO, send STARTTLS and payload (in the same write unless
        split); the payload must never be answered, neither in plaintext
        nor inside TLS."""
        c = self.connect()
        if split:
            c.send(b"STARTTLS\r\n")
            c.send(payload)
        else:
            c.send(b"STARTTLS\r\n" + payload)
        r = c.read_reply()
        self.assertEqual(r.raw, b"220 2.0.0 Ready to start TLS\r\n", c.dump())
        self.assertTrue(c.nothing_pending(), c.dump())
        bio = BioTLS(c.sock, client_context(), HOSTNAME)
        try:
            bio.handshake()
        except (ssl.SSLError, OSError) as e:
            # acceptable: the injected bytes broke the handshake; but the
            # server must not have answered them in plaintext
            self.assertTrue(bio.raw == b"" or bio.raw[0] in (0x15, 0x16),
                            "plaintext after the 220: %r (%s)" % (bio.raw[:200], e))
            c.close()
            self.wait_handshake_failures(1)
            self.assertNotIn(b"250", bio.raw[:5])
            return "failed"
        self.assertEqual(bio.raw[:1], b"\x16", repr(bio.raw[:100]))
        c.sock = bio
        c.transcript.append(("C", b"<TLS handshake>"))
        r = c.ehlo()
        # the first reply inside TLS is EHLO's, not one to the payload
        self.assertEqual(r.lines[0], "250-" + HOSTNAME, c.dump())
        self.assertEqual(r.lines, BASE_EHLO + ["250-AUTH PLAIN LOGIN", LAST_EHLO], c.dump())
        self.assertTrue(c.nothing_pending(), c.dump())
        self.assertEqual(c.cmd("NOOP").raw, b"250 2.0.0 Ok\r\n", c.dump())
        self.assertTrue(c.nothing_pending(), c.dump())
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.close()
        return "ok"

    def test_rset_injected(self):
        self.injected(b"RSET\r\n")

    def test_transaction_injected(self):
        self.injected(b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\n"
                      b"DATA\r\nSubject: injected\r\n\r\nevil\r\n.\r\n")
        self.assertNothingDelivered()

    def test_injected_in_second_write(self):
        self.injected(b"RSET\r\nNOOP\r\n", split=True)

    def test_mail_without_new_ehlo(self):
        c = self.connect()
        self.starttls(c)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % ALICE), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("RCPT TO:<%s>" % BOB), 503, "5.5.1", client=c)
        self.assertReply(self.auth_plain(c), 503, "5.5.1", client=c)
        self.assertReply(c.ehlo(), 250, client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % ALICE), 250, client=c)


# ------------------------------------------------------- cut handshakes

class HandshakeCutTests(TLSTestCase):

    def after_starttls(self, data):
        c = self.connect()
        self.assertReply(c.cmd("STARTTLS"), 220, client=c)
        if data:
            c.send(data)
        c.close()
        lines = self.wait_handshake_failures(1)
        self.assertIn("PEER=127.0.0.1", lines[0])

    def test_partial_client_hello(self):
        self.after_starttls(client_hello()[:50])

    def test_garbage(self):
        self.after_starttls(b"\x16\x03\x01\x00\x05garbage" + os.urandom(500))

    def test_close_right_after_starttls(self):
        self.after_starttls(b"")

    def test_stalled_handshake_times_out(self):
        """A client that stops mid-handshake is dropped after smtp_timeout
        (polled, generously)."""
        self.srv.stop()
        self.srv.write_config(dict(self.config(), smtp_timeout="2s"))
        self.srv.start()
        c = self.connect()
        self.assertReply(c.cmd("STARTTLS"), 220, client=c)
        c.send(client_hello()[:50])
        self.wait_handshake_failures(1)
        c.close()


# ------------------------------------------------- TLS cut mid-session

class MidSessionCutTests(TLSTestCase):

    def test_cut_mid_data(self):
        """The connection dies inside a TLS record in the middle of DATA:
        nothing is delivered, nothing is left in tmp/, the handler ends,
        and the next client is served."""
        c, _ = self.connect_tls()
        self.assertReply(self.auth_plain(c), 235, client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % ALICE), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<%s>" % BOB), 250, client=c)
        self.assertReply(c.cmd("DATA"), 354, client=c)
        c.send(b"Subject: cut\r\n\r\n" + b"half a message\r\n" * 2000)
        cut_tls_mid_record(c.sock)
        self.assertTrue(self.srv.wait_handlers_exit(), "the handler stays")
        self.assertNothingDelivered(BOB)
        c2, _ = self.connect_tls()
        self.assertReply(self.auth_plain(c2), 235, client=c2)
        msg, qid = self.send_message(c2, "after the cut")
        self.delivered(BOB)


if __name__ == "__main__":
    unittest.main()
