"""A controllable SMTP sink for the queue tests (standard library only:
threads and sockets, no aiosmtpd).

A Sink listens on a free loopback port and plays the remote mail server
the queue runner delivers to.  It records every connection (HELO name,
TLS, AUTH, the command lines) and every mail transaction (envelope and the
DATA bytes exactly as they arrived, plus the same with dot-stuffing
undone), and it can be told how to answer:

    sink = Sink()                      # defaults: 250 to everything
    sink.set(rcpt={"x@d.test": "550 5.1.1 no such user"})
    sink.set(extensions=["PIPELINING", "SIZE 1000000"])   # no 8BITMIME
    sink.push(dot="451 4.3.0 try later")   # for the next connection only
    sink.set(stall="dot")              # hold the reply to the final "."
    sink.start(); ...; sink.stop()

Settings (Sink.DEFAULTS; set() changes them for every later connection,
push() queues overrides consumed one per new connection):

  greeting    the greeting line ("220 ..."; "554 ..." refuses)
  ehlo        False: EHLO gets 502, so the client must fall back to HELO
  extensions  EHLO keywords after the first line (STARTTLS and AUTH are
              added by the two settings below, not listed here)
  starttls    None: not offered; "offer": offered and done; "refuse":
              offered, answered 454; "require": offered, and MAIL before
              TLS gets 530
  auth        None, or (user, password): AUTH PLAIN is offered (after TLS
              when starttls is set) and MAIL before AUTH gets 530
  mail        reply to MAIL FROM
  rcpt        {address (lower case): reply line} for RCPT TO
  rcpt_default  reply to other RCPT TOs
  data        reply to DATA (354 ... or an error)
  dot         reply to the final "."
  drop        close the connection instead of answering: "greeting",
              "ehlo", "mail", "rcpt", "data" or "dot"
  stall       hold the reply at "dot" (the whole message has been read)
              or "quit" until release() or until the client goes away;
              stalled() is set meanwhile
  dot_delay   seconds to wait before answering the final "." (to make
              concurrent clients overlap; never asserted on)

A transaction that got no reply to its "." (dropped, stalled and
abandoned) is recorded with reply None; accepted() lists the ones
answered 2xx.
"""

import base64
import os
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

TIMEOUT = 60.0  # per socket operation; generous, never asserted on
LINE_MAX = 100000  # a longer line is a client bug: the connection is closed

CERTTOOL = shutil.which("certtool") or "/usr/bin/certtool"

_CERT = None
_CERT_LOCK = threading.Lock()


def sink_cert():
    """(cert, key) paths of a self-signed certificate for the sink, made
    once per run with certtool.  The runner's TLS is opportunistic, so an
    unverifiable certificate must still be used."""
    global _CERT
    with _CERT_LOCK:
        if _CERT is not None:
            return _CERT
        d = tempfile.mkdtemp(prefix="sockmail-sink-cert-")
        key = os.path.join(d, "sink.key")
        cert = os.path.join(d, "sink.pem")
        tmpl = os.path.join(d, "sink.tmpl")
        with open(tmpl, "w") as f:
            f.write('cn = "sink.test"\ndns_name = "sink.test"\n'
                    'ip_address = "127.0.0.1"\ntls_www_server\n'
                    "signing_key\nencryption_key\nexpiration_days = 30\n")
        for args in (["--generate-privkey", "--key-type=ecdsa", "--outfile", key],
                     ["--generate-self-signed", "--load-privkey", key,
                      "--template", tmpl, "--outfile", cert]):
            p = subprocess.run([CERTTOOL] + args, capture_output=True, timeout=120)
            if p.returncode != 0:
                raise AssertionError("certtool failed: %r" % p.stderr)
        _CERT = (cert, key)
        if not os.environ.get("SOCKMAIL_TEST_KEEP"):
            import atexit
            atexit.register(shutil.rmtree, d, True)
        return _CERT


class Transaction:
    """One MAIL ... DATA as the sink saw it."""

    def __init__(self, conn, mail_from, params):
        self.conn = conn
        self.mail_from = mail_from  # the address between < >
        self.params = params  # MAIL FROM parameters, e.g. ["SIZE=123"]
        self.rcpts = []  # accepted RCPT TO addresses, in order
        self.refused = []  # (address, reply line)
        self.raw = b""  # DATA bytes as sent, without the final ".\r\n"
        self.data = b""  # the same with dot-stuffing undone
        self.bare_newline = False  # a CR or LF not part of CRLF
        self.reply = None  # the reply line to the final ".", None if none

    @property
    def ok(self):
        return self.reply is not None and self.reply.startswith("2")

    def __repr__(self):
        return "Transaction(from=%r, rcpts=%r, %d bytes, reply=%r)" % (
            self.mail_from, self.rcpts, len(self.data), self.reply)


class Connection:
    """One client connection."""

    def __init__(self, number, settings):
        self.number = number
        self.settings = settings
        self.helo = None
        self.esmtp = False
        self.tls = None  # TLS version string once STARTTLS is done
        self.auth = None  # the user name once AUTH succeeded
        self.auth_attempts = []  # (user, password, accepted)
        self.lines = []  # every command line received (bytes, no CRLF)
        self.transactions = []
        self.closed = False
        self.error = None  # an exception in the connection thread

    def commands(self):
        """The command verbs received, upper-case ("EHLO", "MAIL", ...)."""
        return [l.split(b" ", 1)[0].split(b":", 1)[0].decode("ascii", "replace").upper()
                for l in self.lines]


class _Closed(Exception):
    pass


class _Session:
    """The server side of one connection (runs in its own thread)."""

    def __init__(self, sink, sock, conn):
        self.sink = sink
        self.sock = sock
        self.conn = conn
        self.s = conn.settings
        self.buf = b""
        self.txn = None

    # -- I/O
    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def _recv(self):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            raise _Closed()
        self.buf += data

    def readline(self):
        """One line without its CRLF (a bare LF also ends it, for the
        command lines; DATA checks line ends itself)."""
        while b"\n" not in self.buf:
            if len(self.buf) > LINE_MAX:
                raise _Closed()
            self._recv()
        i = self.buf.index(b"\n")
        line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        return line

    def peer_gone(self, timeout):
        """Wait up to timeout for the client to close; True if it did.
        Bytes it sends meanwhile are kept."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        try:
            self._recv()
        except _Closed:
            return True
        return False

    def stall(self, where):
        """Hold the reply until release() or the client leaves; returns
        True if the client left."""
        if self.s["stall"] != where:
            return False
        self.sink._stalled.set()
        deadline = time.monotonic() + TIMEOUT * 5
        while time.monotonic() < deadline:
            if self.sink._release.is_set():
                return False
            if self.peer_gone(0.05):
                return True
        return False

    # -- the dialog
    def run(self):
        s = self.s
        if s["drop"] == "greeting":
            return
        self.send(s["greeting"])
        if not s["greeting"].startswith("2"):
            self.wait_quit()
            return
        while True:
            line = self.readline()
            cmdline = line.rstrip(b"\r\n")
            self.conn.lines.append(cmdline)
            text = cmdline.decode("utf-8", "replace")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                if not self.cmd_helo(verb, arg):
                    return
            elif verb == "STARTTLS":
                self.cmd_starttls()
            elif verb == "AUTH":
                self.cmd_auth(arg)
            elif verb == "MAIL":
                if not self.cmd_mail(arg):
                    return
            elif verb == "RCPT":
                if not self.cmd_rcpt(arg):
                    return
            elif verb == "DATA":
                if not self.cmd_data():
                    return
            elif verb == "RSET":
                self.txn = None
                self.send("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                if self.stall("quit"):
                    return
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("502 5.5.2 Error: command not recognized")

    def wait_quit(self):
        while True:
            line = self.readline()
            self.conn.lines.append(line.rstrip(b"\r\n"))
            if line.rstrip(b"\r\n").upper() == b"QUIT":
                self.send("221 2.0.0 Bye")
                return
            self.send("503 5.5.1 Error: go away")

    def cmd_helo(self, verb, arg):
        s = self.s
        if s["drop"] == "ehlo":
            return False
        if verb == "EHLO" and not s["ehlo"]:
            self.send("502 5.5.2 Error: command not recognized")
            return True
        self.conn.helo = arg
        self.conn.esmtp = verb == "EHLO"
        self.txn = None
        if verb == "HELO":
            self.send("250 sink.test")
            return True
        ext = list(s["extensions"])
        if s["starttls"] and self.conn.tls is None:
            ext.append("STARTTLS")
        if s["auth"] and (self.conn.tls is not None or not s["starttls"]):
            ext.append("AUTH PLAIN")
        lines = ["sink.test"] + ext
        for l in lines[:-1]:
            self.send("250-" + l)
        self.send("250 " + lines[-1])
        return True

    def cmd_starttls(self):
        s = self.s
        if not s["starttls"] or self.conn.tls is not None:
            self.send("502 5.5.1 Error: STARTTLS not offered")
            return
        if s["starttls"] == "refuse":
            self.send("454 4.7.0 TLS not available due to local problem")
            return
        self.send("220 2.0.0 Ready to start TLS")
        self.buf = b""  # RFC 3207: nothing sent before TLS counts
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*sink_cert())
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.conn.tls = self.sock.version()
        self.conn.helo = None
        self.conn.auth = None
        self.txn = None

    def cmd_auth(self, arg):
        s = self.s
        mech, _, initial = arg.partition(" ")
        if not s["auth"] or mech.upper() != "PLAIN":
            self.send("504 5.5.4 Unrecognized authentication type")
            return
        if self.conn.auth is not None:
            self.send("503 5.5.1 Error: already authenticated")
            return
        if not initial:
            self.send("334 ")
            initial = self.readline().rstrip(b"\r\n").decode("ascii", "replace")
        try:
            _, user, password = base64.b64decode(initial, validate=True).split(b"\0")
            user, password = user.decode(), password.decode()
        except ValueError:
            self.send("501 5.5.2 Cannot decode response")
            return
        good = (user, password) == tuple(s["auth"])
        self.conn.auth_attempts.append((user, password, good))
        if good:
            self.conn.auth = user
            self.send("235 2.7.0 Authentication successful")
        else:
            self.send("535 5.7.8 Error: authentication failed")

    def cmd_mail(self, arg):
        s = self.s
        if s["drop"] == "mail":
            return False
        if self.conn.helo is None:
            self.send("503 5.5.1 Error: send HELO/EHLO first")
            return True
        if s["starttls"] == "require" and self.conn.tls is None:
            self.send("530 5.7.0 Must issue a STARTTLS command first")
            return True
        if s["auth"] and self.conn.auth is None:
            self.send("530 5.7.0 Authentication required")
            return True
        if not arg.upper().startswith("FROM:"):
            self.send("501 5.5.4 Syntax: MAIL FROM:<address>")
            return True
        rest = arg[5:].lstrip(" ")
        if not rest.startswith("<") or ">" not in rest:
            self.send("501 5.1.7 Bad sender address syntax")
            return True
        addr, _, params = rest[1:].partition(">")
        params = params.split()
        if any(p.upper() == "BODY=8BITMIME" for p in params) and \
                "8BITMIME" not in [e.split(" ")[0].upper() for e in s["extensions"]]:
            self.send("555 5.5.4 Unsupported option: BODY=8BITMIME")
            return True
        txn = Transaction(self.conn, addr, params)
        reply = s["mail"]
        if reply.startswith("2"):
            self.txn = txn
        self.send(reply)
        return True

    def cmd_rcpt(self, arg):
        s = self.s
        if s["drop"] == "rcpt":
            return False
        if self.txn is None:
            self.send("503 5.5.1 Error: need MAIL command")
            return True
        rest = arg[3:].lstrip(" ") if arg.upper().startswith("TO:") else ""
        if not rest.startswith("<") or ">" not in rest:
            self.send("501 5.1.3 Bad recipient address syntax")
            return True
        addr = rest[1:rest.index(">")]
        reply = s["rcpt"].get(addr.lower(), s["rcpt_default"])
        if reply.startswith("2"):
            self.txn.rcpts.append(addr)
        else:
            self.txn.refused.append((addr, reply))
        self.send(reply)
        return True

    def cmd_data(self):
        s = self.s
        if s["drop"] == "data":
            return False
        if self.txn is None:
            self.send("503 5.5.1 Error: need MAIL command")
            return True
        if not self.txn.rcpts:
            self.send("554 5.5.1 Error: no valid recipients")
            return True
        if not s["data"].startswith("354"):
            self.send(s["data"])
            self.txn = None
            return True
        self.send(s["data"])
        txn, self.txn = self.txn, None
        self.conn.transactions.append(txn)
        with self.sink._lock:
            self.sink._transactions.append(txn)
        self.read_data(txn)
        if s["drop"] == "dot":
            return False
        if self.stall("dot"):
            return False  # the client went away: no reply given
        if s["dot_delay"]:
            time.sleep(s["dot_delay"])
        txn.reply = s["dot"]
        self.send(s["dot"])
        return True

    def read_data(self, txn):
        raw, data = [], []
        while True:
            line = self.readline()
            if line == b".\r\n":
                break
            if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
                txn.bare_newline = True
            raw.append(line)
            data.append(line[1:] if line.startswith(b".") else line)
        txn.raw = b"".join(raw)
        txn.data = b"".join(data)


class Sink:
    DEFAULTS = {
        "greeting": "220 sink.test ESMTP test sink",
        "ehlo": True,
        "extensions": ["PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8",
                       "ENHANCEDSTATUSCODES"],
        "starttls": None,
        "auth": None,
        "mail": "250 2.1.0 Ok",
        "rcpt": {},
        "rcpt_default": "250 2.1.5 Ok",
        "data": "354 End data with <CR><LF>.<CR><LF>",
        "dot": "250 2.0.0 Ok: queued",
        "drop": None,
        "stall": None,
        "dot_delay": 0,
    }

    def __init__(self, **settings):
        self.settings = dict(self.DEFAULTS)
        self.set(**settings)
        self._script = []
        self._lock = threading.Lock()
        self._connections = []
        self._transactions = []
        self._threads = []
        self._stalled = threading.Event()
        self._release = threading.Event()
        self.listener = None
        self.port = None
        self._stop = False

    # -- control
    def set(self, **settings):
        for k, v in settings.items():
            if k not in self.DEFAULTS:
                raise KeyError("unknown sink setting %r" % k)
            if k == "rcpt":
                v = {a.lower(): r for a, r in v.items()}
            self.settings[k] = v

    def push(self, **settings):
        """Overrides for the next connection not yet accepted (queued)."""
        for k in settings:
            if k not in self.DEFAULTS:
                raise KeyError("unknown sink setting %r" % k)
        with self._lock:
            self._script.append(settings)

    def stalled(self, timeout):
        """Wait until a connection is stalled; True if one is."""
        return self._stalled.wait(timeout)

    def release(self):
        self._release.set()

    def reset_stall(self):
        self._stalled.clear()
        self._release.clear()

    # -- results
    @property
    def connections(self):
        with self._lock:
            return list(self._connections)

    @property
    def transactions(self):
        """Every transaction that reached DATA, accepted or not."""
        with self._lock:
            return list(self._transactions)

    def accepted(self):
        """Transactions answered 2xx at the final "."."""
        return [t for t in self.transactions if t.ok]

    def errors(self):
        return [c.error for c in self.connections if c.error is not None]

    def wait_idle(self, timeout=TIMEOUT):
        """Wait until every connection so far is closed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c.closed for c in self.connections):
                return True
            time.sleep(0.02)
        return False

    # -- server
    def start(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, daemon=True,
                             name="sink-accept-%d" % self.port)
        t.start()
        self._threads.append(t)
        return self.port

    def _accept_loop(self):
        self.listener.settimeout(0.1)  # so stop() is seen
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(None)
            # Replies go out a line at a time; without this each later
            # line would wait for the client's delayed ACK (~40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._stop:
                sock.close()
                return
            with self._lock:
                settings = dict(self.settings)
                if self._script:
                    settings.update(self._script.pop(0))
                    if "rcpt" in settings:
                        settings["rcpt"] = {a.lower(): r for a, r in
                                            settings["rcpt"].items()}
                conn = Connection(len(self._connections) + 1, settings)
                self._connections.append(conn)
            t = threading.Thread(target=self._serve, args=(sock, conn),
                                 daemon=True, name="sink-conn-%d" % conn.number)
            t.start()
            self._threads.append(t)

    def _serve(self, sock, conn):
        sock.settimeout(TIMEOUT)
        session = _Session(self, sock, conn)
        try:
            session.run()
        except _Closed:
            pass
        except Exception as e:  # reported by the tests through errors()
            conn.error = e
        finally:
            try:
                session.sock.close()
            except OSError:
                pass
            conn.closed = True

    def stop(self):
        self._stop = True
        self._release.set()
        if self.listener is not None:
            try:
                self.listener.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
