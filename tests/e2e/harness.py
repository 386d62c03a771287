"""End-to-end test harness for the sockmail handlers (standard library only).

A SockmailServer is one throw-away installation: a temp dir with its own
sockmail.conf, mail_dir, state_dir and spool_dir, populated with
`sockmailctl`, and a `systemd-socket-activate --accept --inetd` listener on a
free loopback port that starts one handler process per connection, exactly
as the systemd socket units do.  The handlers' stderr goes to a file the
tests can read (and that is checked for sanitizer reports).

A server may also listen on a unix socket (start_unix, e.g. smtp-handler
--local for sendmail), run other programs of the build as root or as
another user (run), run the queue runner at a chosen test clock
(run_runner, start_runner; its stderr is checked for sanitizer reports like
the handlers'), and read the queue straight from queue.tdb
(queue_envelopes, through tdbdump).

SMTPClient is a raw socket client for byte-exact dialogs: it sends exactly
the bytes it is given and parses replies strictly (CRLF line ends, one
reply = the "NNN-" lines up to the "NNN " line).

With SOCKMAIL_VALGRIND=1 (make check VALGRIND=1) every handler and queue
runner runs under valgrind's memcheck, one log per process in the server's
valgrind/ dir; tearDown fails the test when a log shows memory errors, or
leaks at a normal exit (a process killed by a signal has its memory errors
counted, not its leaks), names the log and keeps a copy.  TIMEOUT and WAIT
are multiplied by VALGRIND_SLOWDOWN then.

Environment:
  BUILD      directory with the programs, relative to the repo root
             (default "build"; "build-san" for the sanitizer build)
  SOCKMAIL_TEST_KEEP=1   keep the temp dirs for a post-mortem
  SOCKMAIL_VALGRIND=1    run the handlers and queue runners under valgrind
  SOCKMAIL_VALGRIND_SLOWDOWN   timeout factor under valgrind (default 10)
  SOCKMAIL_VALGRIND_KEEP  where failing valgrind logs are copied (default
             $TMPDIR/sockmail-valgrind)
"""

import email.utils
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(REPO, os.environ.get("BUILD", "build"))
ACTIVATE = "/usr/bin/systemd-socket-activate"
SETPRIV = "/usr/bin/setpriv"
TDBDUMP = "/usr/bin/tdbdump"

HOSTNAME = "mx.test.example"

# valgrind (make check VALGRIND=1): see valgrind_argv() and
# SockmailServer.valgrind_reports().  It makes the programs 20-50 times
# slower, mostly in start-up and the leak check at exit; the waits below are
# bounds, not expectations, so a factor of 10 keeps them generous.
VALGRIND = os.environ.get("SOCKMAIL_VALGRIND", "") not in ("", "0")
VALGRIND_BIN = "/usr/bin/valgrind"
VALGRIND_SUPP = os.path.join(REPO, "tests", "valgrind.supp")
VALGRIND_EXIT = 97  # --error-exitcode: no sockmail program exits with it
VALGRIND_SLOWDOWN = (float(os.environ.get("SOCKMAIL_VALGRIND_SLOWDOWN", "10"))
                     if VALGRIND else 1.0)

TIMEOUT = 30.0 * VALGRIND_SLOWDOWN  # socket operations: generous, never a timing assertion
WAIT = 20.0 * VALGRIND_SLOWDOWN  # polling for files and processes

# What a sanitizer prints when it found something.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:")
# Variables the handler should see (systemd-socket-activate passes only a few).
PASS_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TZ",
            "SOCKMAIL_TLS_MODULE")


def program(name):
    return os.path.join(BUILD, name)


def skip_under_valgrind(reason):
    """Decorator: skip a test (or class) when the programs run under
    valgrind, e.g. one that needs them fast or counts their work."""
    return unittest.skipIf(VALGRIND, "under valgrind: " + reason)


def valgrind_argv(log_dir):
    """The argv prefix that runs a program under memcheck with one log per
    process in log_dir (forked queue-runner workers get their own), or []
    without SOCKMAIL_VALGRIND.  Leaks count as errors only when definite or
    indirect ("possibly lost" is what interior pointers look like, "still
    reachable" what exit() leaves)."""
    if not VALGRIND:
        return []
    argv = [VALGRIND_BIN, "--tool=memcheck", "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=%d" % VALGRIND_EXIT, "--track-fds=no",
            "--num-callers=40", "--log-file=" + os.path.join(log_dir, "vg.%p.log")]
    if os.path.exists(VALGRIND_SUPP):
        argv.append("--suppressions=" + VALGRIND_SUPP)
    return argv


# What memcheck prints (after "==PID== ") at the start of an error that is
# not a leak: enough to count them in a log without an ERROR SUMMARY (the
# process was killed with SIGKILL).
_VG_ERROR = re.compile(
    r"^==\d+== (?:Invalid (?:read|write|free|alignment)|Mismatched |"
    r"Conditional jump or move|Use of uninitialised|Syscall param|"
    r"Source and destination overlap|Argument '\w+' of function|"
    r"Jump to the invalid address|Illegal memory pool)", re.M)
_VG_SUMMARY = re.compile(
    r"^==\d+== ERROR SUMMARY: ([\d,]+) errors? from ([\d,]+) contexts?", re.M)
_VG_LEAK = re.compile(
    r"^==\d+== [\d,]+ (?:\([\d,]+ direct, [\d,]+ indirect\) )?bytes in "
    r"[\d,]+ blocks? are (?:definitely|indirectly) lost in loss record", re.M)
_VG_SIGNAL = re.compile(
    r"^==\d+== Process terminating with default action of signal \d+ "
    r"\((\w+)\)", re.M)
_VG_COMMAND = re.compile(r"^==\d+== Command: (.*)$", re.M)


def valgrind_log_problem(text):
    """What is wrong according to one memcheck log: None, or a short
    description.  Leaks count only at a normal exit: a process killed by a
    signal stopped in the middle of its work."""
    m = _VG_SUMMARY.search(text)
    sig = _VG_SIGNAL.search(text)
    if m is None:
        # killed by SIGKILL: only the errors printed so far are known
        n = len(_VG_ERROR.findall(text))
        return ("%d memory error(s) before it was killed" % n) if n else None
    contexts = int(m.group(2).replace(",", ""))
    leaks = len(_VG_LEAK.findall(text))
    errors = contexts - leaks
    if sig is not None:
        if errors > 0:
            return "%d memory error context(s) (killed by %s)" % (errors, sig.group(1))
        return None
    if contexts > 0:
        return "%d memory error context(s), %d leak record(s)" % (errors, leaks)
    return None


def cut_tls_mid_record(sslsock):
    """End a TLS connection the rudest way: half an application-data
    record (a header announcing 16 KiB, then 100 octets), then the TCP
    connection closed with no close_notify."""
    raw = socket.socket(fileno=os.dup(sslsock.fileno()))
    try:
        raw.sendall(b"\x17\x03\x03\x40\x00" + os.urandom(100))
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    raw.close()
    sslsock.close()


def wait_until(pred, timeout=WAIT, interval=0.05):
    """Poll pred() until it returns something true; return that, or the
    last (false) value after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------- processes

def _proc_stat(pid):
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    return rest[0].decode(), int(rest[1])


def children_of(ppid):
    """Live (non-zombie) children of ppid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _proc_stat(int(name))
        if st and st[1] == ppid and st[0] != "Z":
            out.append(int(name))
    return out


def _alive(pid):
    st = _proc_stat(pid)
    return st is not None and st[0] != "Z"


def _listen_inodes(port):
    """Socket inodes listening on 127.0.0.1:port (from /proc/net/tcp)."""
    want = "0100007F:%04X" % port
    inodes = set()
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                if p[1] == want and p[3] == "0A":
                    inodes.add(p[9])
    except OSError:
        pass
    return inodes


def _fd_inodes(pid):
    out = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]$", link)
            if m:
                out.add(m.group(1))
    except OSError:
        pass
    return out


def _unix_listening(path):
    """True if a listening unix socket is bound at path (/proc/net/unix:
    flag __SO_ACCEPTCON, 0x10000)."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                p = line.split()
                if len(p) >= 8 and p[7] == path and int(p[3], 16) & 0x10000:
                    return True
    except OSError:
        pass
    return False


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ------------------------------------------------------------------ maildir

MAILDIR_NAME = re.compile(
    r"^(?P<unique>[0-9]+\.[^/,:]+\.[^/,:]+),S=(?P<s>[0-9]+),W=(?P<w>[0-9]+)$")


def maildir_check_file(tc, name, content):
    """Assert the Maildir invariants of one new/ file: the name carries
    ,S=<size on disk>,W=<size with CRLF>; LF line ends only."""
    m = MAILDIR_NAME.match(name)
    tc.assertIsNotNone(m, "bad Maildir file name %r" % name)
    tc.assertEqual(int(m.group("s")), len(content),
                   "S= in %r is not the file size" % name)
    tc.assertEqual(int(m.group("w")), len(content) + content.count(b"\n"),
                   "W= in %r is not size + number of LF" % name)
    tc.assertNotIn(b"\r", content, "CR stored in %r" % name)


RECEIVED = re.compile(
    rb"^Received: from (?P<helo>\S+)(?: \((?P<peer>[^)]*)\))?"
    rb"(?: \((?P<tls>using [^()]*(?:\([^()]*\)[^()]*)*)\))?"
    rb" by (?P<by>\S+) \(sockmail\) with (?P<with>[A-Z0-9]+) id (?P<id>[^;\s]+)"
    rb"(?: for <(?P<for>[^>]*)>)?; ?(?P<date>.+)$")


def split_delivered(tc, content):
    """Split a delivered file into (return_path, received_match, message).
    Asserts the trace header block has the shape of the spec:
      Return-Path: <sender>\\n
      Received: from HELO ([IP])\\n\\tby HOST (sockmail) with P id QID\\n
      \\tfor <rcpt>; DATE\\n
    (with TLS, "\\t(using TLSv1.3 with cipher C (256/256 bits))\\n" comes
    before "\\tby": the match's "tls" group, without the parentheses)
    The Received header is matched unfolded, so where the folds are (and
    "id QID; DATE" or "id QID;\\n\\tDATE" without a for clause) is free,
    except that the first line must be "Received: from HELO ([IP])"."""
    tc.assertTrue(content.startswith(b"Return-Path: <"),
                  "no Return-Path first: %r" % content[:200])
    nl = content.index(b"\n")
    rp_line = content[:nl]
    tc.assertTrue(rp_line.endswith(b">"), "bad Return-Path %r" % rp_line)
    return_path = rp_line[len(b"Return-Path: <"):-1]
    rest = content[nl + 1:]
    tc.assertTrue(rest.startswith(b"Received: "), "no Received second: %r"
                  % rest[:300])
    end = 0
    while True:
        end = rest.index(b"\n", end) + 1
        if rest[end:end + 1] not in (b"\t", b" "):
            break
    header = rest[:end - 1]
    first = header.split(b"\n", 1)[0]
    tc.assertRegex(first, rb"^Received: from \S+( \([^)]*\))?$",
                   "first Received line")
    unfolded = re.sub(rb"\n[\t ]+", b" ", header)
    m = RECEIVED.match(unfolded)
    tc.assertIsNotNone(m, "Received header not as specified: %r" % header)
    date = m.group("date").decode("ascii", "replace")
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        when = None
    tc.assertTrue(when is not None and when.tzinfo is not None,
                  "Received date is not an RFC 5322 date: %r" % date)
    return return_path, m, rest[end:]


def crlf_to_lf(data):
    return data.replace(b"\r\n", b"\n")


def dot_stuff(data):
    """RFC 5321 4.5.2 transparency for a CRLF message."""
    out = []
    for line in data.split(b"\r\n"):
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out)


def make_message(subject, body=b"Hello.\r\n", sender=b"x@remote.example",
                 to=b"alice@example.org", extra=b""):
    """A small RFC 5322 message with CRLF line ends."""
    if isinstance(subject, str):
        subject = subject.encode()
    return (b"From: <" + sender + b">\r\n"
            b"To: <" + to + b">\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Message-ID: <" + subject.replace(b" ", b".") + b"@remote.example>\r\n"
            + extra +
            b"\r\n" + body)


# -------------------------------------------------------------------- queue

TDB_RECORD = re.compile(rb'^key\((\d+)\) = "(.*)"\ndata\((\d+)\) = "(.*)"$', re.M)


def _tdb_unescape(b):
    return re.sub(rb"\\([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), b)


def parse_tdbdump(out):
    """[(key, data)] from tdbdump's output (non-printable bytes, '"' and
    '\\' are written as \\XX there)."""
    recs = []
    for m in TDB_RECORD.finditer(out):
        key, data = _tdb_unescape(m.group(2)), _tdb_unescape(m.group(4))
        if len(key) != int(m.group(1)) or len(data) != int(m.group(3)):
            raise AssertionError("tdbdump record misparsed: %r" % m.group(0)[:200])
        recs.append((key, data))
    return recs


def _queue_text(b):
    """A <text> field of an envelope record: \\\\ and \\xHH escapes."""
    return re.sub(rb"\\(\\|x[0-9A-F]{2})",
                  lambda m: b"\\" if m.group(1) == b"\\"
                  else bytes([int(m.group(1)[1:], 16)]), b).decode("utf-8", "replace")


class QueueRcpt:
    def __init__(self, state, attempts, next_try, dsn_sent, local, address):
        self.state = state  # "pending", "delivered", "failed"
        self.attempts = attempts
        self.next_try = next_try
        self.dsn_sent = dsn_sent
        self.local = local
        self.address = address
        self.orcpt = None
        self.error = None

    def __repr__(self):
        return "QueueRcpt(%s %s attempts=%d next=%d dsn=%d local=%d error=%r)" % (
            self.address, self.state, self.attempts, self.next_try,
            self.dsn_sent, self.local, self.error)


class Envelope:
    """One queue.tdb record (format in common/queue.c), parsed strictly."""

    def __init__(self, data):
        self.raw = data
        lines = data.split(b"\n")
        if lines[0] != b"sockmail-queue 1" or lines[-1] != b"":
            raise AssertionError("not a version 1 envelope: %r" % data[:300])
        self.auth = None
        self.rcpts = []
        for line in lines[1:-1]:
            word, _, rest = line.partition(b" ")
            if word == b"id":
                self.id = rest.decode()
            elif word == b"sender":
                self.sender = _queue_text(rest)
            elif word == b"auth":
                self.auth = _queue_text(rest)
            elif word == b"arrival":
                self.arrival = int(rest)
            elif word == b"size":
                self.size = int(rest)
            elif word == b"smtputf8":
                self.smtputf8 = rest == b"1"
            elif word == b"8bitmime":
                self.body_8bit = rest == b"1"
            elif word == b"delay-warned":
                self.delay_warned = rest == b"1"
            elif word == b"rcpt":
                st, att, nxt, dsn, loc, addr = rest.split(b" ", 5)
                self.rcpts.append(QueueRcpt(st.decode(), int(att), int(nxt),
                                            dsn == b"1", loc == b"1",
                                            _queue_text(addr)))
            elif word == b"orcpt":
                self.rcpts[-1].orcpt = _queue_text(rest)
            elif word == b"error":
                self.rcpts[-1].error = _queue_text(rest)
            elif word == b"end":
                if int(rest) != len(self.rcpts):
                    raise AssertionError("envelope end count: %r" % data)
            else:
                raise AssertionError("unknown envelope line %r" % line)

    def rcpt(self, address):
        for r in self.rcpts:
            if r.address == address:
                return r
        raise KeyError(address)

    def __repr__(self):
        return "Envelope(%s from <%s> arrival=%d warned=%s %r)" % (
            self.id, self.sender, self.arrival, self.delay_warned, self.rcpts)


# ------------------------------------------------------------------- client

class Reply:
    """One SMTP reply: code, the enhanced status code of the last line (or
    None), the text lines (without "NNN-"), and the raw bytes."""

    def __init__(self, lines, raw):
        self.lines = lines
        self.raw = raw
        self.code = int(lines[-1][:3])
        last = lines[-1][4:]
        m = re.match(r"([245]\.[0-9]{1,3}\.[0-9]{1,3})( |$)", last)
        self.enh = m.group(1) if m else None
        self.texts = [l[4:] for l in lines]

    @property
    def text(self):
        """The last line without the code."""
        return self.texts[-1]

    @property
    def line(self):
        return self.lines[-1]

    def __repr__(self):
        return "Reply(%r)" % self.raw


class ProtocolError(AssertionError):
    pass


class SMTPClient:
    def __init__(self, port, timeout=TIMEOUT, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.closed_by_peer = False
        self.transcript = []  # ("C"|"S", bytes) for failure messages

    # -- raw I/O
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(("C", data))
        self.sock.sendall(data)

    def _fill(self):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        if not data:
            self.closed_by_peer = True
            raise ProtocolError("connection closed by server; got so far %r"
                                % self.buf)
        self.transcript.append(("S", data))
        self.buf += data

    def read_line(self):
        """One line including CRLF; a line ending in bare LF is an error."""
        while b"\n" not in self.buf:
            if len(self.buf) > 100000:
                raise ProtocolError("reply line too long")
            self._fill()
        i = self.buf.index(b"\n")
        line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        if not line.endswith(b"\r\n"):
            raise ProtocolError("reply line without CRLF: %r" % line)
        return line

    def read_reply(self):
        lines, raw = [], b""
        while True:
            line = self.read_line()
            raw += line
            text = line[:-2].decode("utf-8", "replace")
            if not re.match(r"^[2-5][0-9][0-9]([ -]|$)", text):
                raise ProtocolError("malformed reply line %r" % line)
            if lines and text[:3] != lines[0][:3]:
                raise ProtocolError("code changed inside a reply: %r" % raw)
            lines.append(text)
            if len(text) == 3 or text[3] == " ":
                return Reply(lines, raw)

    def cmd(self, line):
        """Send one command (CRLF added) and read its reply."""
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.read_reply()

    def expect_eof(self):
        """The server closes the connection (no further bytes)."""
        extra = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                data = b""
            if not data:
                self.closed_by_peer = True
                break
            extra += data
        if self.buf or extra:
            raise ProtocolError("unexpected bytes before close: %r"
                                % (self.buf + extra))

    def starttls(self, context, server_hostname=None, session=None):
        """Wrap the connection in TLS (after a 220 to STARTTLS, or right
        after connecting for implicit TLS).  Nothing may be buffered: bytes
        the server sent in plaintext after its 220 would be an error."""
        if self.buf:
            raise ProtocolError("plaintext bytes after the 220: %r" % self.buf)
        self.transcript.append(("C", b"<TLS handshake>"))
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname,
                                        session=session)
        self.transcript.append(("S", ("<TLS %s %s>" % (
            self.sock.version(), self.sock.cipher()[0])).encode()))
        return self.sock

    def nothing_pending(self):
        """True if no reply bytes are buffered (does not wait)."""
        return not self.buf

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def dump(self):
        return "".join("%s: %r\n" % t for t in self.transcript)

    # -- conveniences
    def greeting(self):
        return self.read_reply()

    def ehlo(self, name="client.test"):
        return self.cmd("EHLO " + name)

    def start(self, name="client.test"):
        """Read the greeting and EHLO; assert both are 2xx."""
        g = self.greeting()
        if g.code != 220:
            raise ProtocolError("greeting %r" % g.raw)
        r = self.ehlo(name)
        if r.code != 250:
            raise ProtocolError("EHLO %r" % r.raw)
        return r

    def send_data(self, message, stuff=True):
        """After a 354: send message (CRLF text) and the terminating dot;
        return the reply."""
        if stuff:
            message = dot_stuff(message)
        if message and not message.endswith(b"\r\n"):
            raise ValueError("message must end in CRLF")
        self.send(message + b".\r\n")
        return self.read_reply()

    def transaction(self, sender, rcpts, message, params=""):
        """MAIL, RCPTs, DATA, message (one command at a time).  Returns
        (mail_reply, [rcpt_replies], data_reply, final_reply_or_None)."""
        mail = self.cmd("MAIL FROM:<%s>%s" % (sender, (" " + params) if params else ""))
        rr = [self.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        data = self.cmd("DATA")
        final = self.send_data(message) if data.code == 354 else None
        return mail, rr, data, final


QUEUED = re.compile(r"^2\.0\.0 Ok: queued as (\S+)$")


def queue_id(reply):
    m = QUEUED.match(reply.text)
    if reply.code != 250 or reply.enh != "2.0.0" or not m:
        raise AssertionError("not a queued reply: %r" % reply.raw)
    return m.group(1)


# ------------------------------------------------------------------- server

class SockmailServer:
    """One installation in a temp dir plus its listener."""

    def __init__(self, conf=None, raw_conf_lines=None):
        self.dir = tempfile.mkdtemp(prefix="sockmail-e2e-")
        self.mail_dir = os.path.join(self.dir, "mail")
        self.state_dir = os.path.join(self.dir, "state")
        self.spool_dir = os.path.join(self.dir, "spool")
        for d in (self.mail_dir, self.state_dir, self.spool_dir):
            os.mkdir(d, 0o750)
        self.conf_path = os.path.join(self.dir, "sockmail.conf")
        self.stderr_path = os.path.join(self.dir, "handler.stderr")
        self.runner_stderr_path = os.path.join(self.dir, "runner.stderr")
        self.valgrind_dir = os.path.join(self.dir, "valgrind")
        if VALGRIND:
            os.mkdir(self.valgrind_dir, 0o755)
        self.proc = None
        self.port = None
        self.unix = []  # (listener process, socket path): start_unix()
        self.clients = []
        self.write_config(conf or {}, raw_conf_lines)

    # -- config and population
    def config_lines(self, conf=None, raw_lines=None):
        lines = ["# written by tests/e2e/harness.py",
                 "hostname = " + HOSTNAME,
                 "mail_dir = " + self.mail_dir,
                 "state_dir = " + self.state_dir,
                 "spool_dir = " + self.spool_dir]
        for k, v in (conf or {}).items():
            lines.append("%s = %s" % (k, v))
        lines.extend(raw_lines or [])
        return lines

    def write_config(self, conf=None, raw_lines=None):
        """(Re)write sockmail.conf; returns the list of lines (line N of
        the file is element N-1)."""
        lines = self.config_lines(conf, raw_lines)
        with open(self.conf_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return lines

    def ctl(self, *args, input=None, check=True):
        """Run sockmailctl -c CONF ARGS...; returns CompletedProcess."""
        argv = [program("sockmailctl"), "-c", self.conf_path] + list(args)
        p = subprocess.run(argv, input=input, capture_output=True,
                           timeout=WAIT * 3)
        if check and p.returncode != 0:
            raise AssertionError("%s failed (%d): %s%s" % (
                " ".join(argv), p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace")))
        return p

    def add_domain(self, domain):
        return self.ctl("domain", "add", domain)

    def add_user(self, address, password="secret-Passw0rd", check=True):
        return self.ctl("user", "add", address, "--password-stdin",
                        input=(password + "\n").encode(), check=check)

    def add_alias(self, address, *targets, check=True):
        return self.ctl("alias", "add", address, *targets, check=check)

    # -- the listener
    def start(self, args=(), env=None, handler="smtp-handler"):
        """Start the listener; args are extra handler arguments (e.g.
        ["--tls=implicit"]), env extra variables for the handler (e.g.
        {"SOCKMAIL_TEST_PEER": "192.0.2.7"}), handler the program in BUILD
        to run per connection ("pop3-handler", ...).  Returns the port."""
        self.proc, self.port = self.spawn_tcp(handler, args, env)
        return self.port

    def spawn_tcp(self, handler, args=(), env=None):
        """systemd-socket-activate on a free loopback port running
        BUILD/handler per connection; (process, port) once it listens."""
        exe = program(handler)
        if not os.access(exe, os.X_OK):
            raise AssertionError("%s not built (BUILD=%s)" % (exe, BUILD))
        last = None
        for _ in range(10):
            port = free_port()
            argv = [ACTIVATE, "--accept", "--inetd",
                    "-l", "127.0.0.1:%d" % port]
            for v in PASS_ENV:
                if v in os.environ and v not in (env or {}):
                    argv += ["-E", v]
            for k, v in (env or {}).items():
                argv += ["-E", "%s=%s" % (k, v)]
            argv += valgrind_argv(self.valgrind_dir)
            argv += [exe, "-c", self.conf_path] + list(args)
            errf = open(self.stderr_path, "ab")
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=errf,
                                    cwd=self.dir, start_new_session=True)
            errf.close()

            def ready(proc=proc, port=port):
                if proc.poll() is not None:
                    return "exited"
                listening = _listen_inodes(port)
                return "ok" if listening & _fd_inodes(proc.pid) else None
            state = wait_until(ready)
            if state == "ok":
                return proc, port
            last = state
            self._kill(proc)  # port taken by someone else, or slow: retry
        raise AssertionError("systemd-socket-activate for %s did not start "
                             "(%s): %s" % (handler, last,
                                           self.stderr_text()[-2000:]))

    def start_unix(self, path, args=(), env=None, handler="smtp-handler",
                   mode=0o666):
        """A second kind of listener: a unix socket at path (as
        sockmail-sendmail.socket has it), one handler per connection, e.g.
        start_unix(p, ["--local"]).  The socket gets mode (so that other
        users may connect).  Stopped by stop() with the TCP listener."""
        exe = program(handler)
        if not os.access(exe, os.X_OK):
            raise AssertionError("%s not built (BUILD=%s)" % (exe, BUILD))
        argv = [ACTIVATE, "--accept", "--inetd", "-l", path]
        for v in PASS_ENV:
            if v in os.environ and v not in (env or {}):
                argv += ["-E", v]
        for k, v in (env or {}).items():
            argv += ["-E", "%s=%s" % (k, v)]
        argv += valgrind_argv(self.valgrind_dir)
        argv += [exe, "-c", self.conf_path] + list(args)
        errf = open(self.stderr_path, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=errf,
                                cwd=self.dir, start_new_session=True)
        errf.close()
        self.unix.append((proc, path))

        def ready():
            if proc.poll() is not None:
                return "exited"
            return "ok" if _unix_listening(path) else None
        state = wait_until(ready)
        if state != "ok":
            raise AssertionError("systemd-socket-activate on %s did not start "
                                 "(%s): %s" % (path, state,
                                               self.stderr_text()[-2000:]))
        os.chmod(path, mode)
        return path

    def connect(self, timeout=TIMEOUT):
        c = SMTPClient(self.port, timeout=timeout)
        self.clients.append(c)
        return c

    def handler_pids(self):
        pids = children_of(self.proc.pid) if self.proc else []
        for proc, _ in self.unix:
            pids += children_of(proc.pid)
        return pids

    def wait_handlers_exit(self, timeout=WAIT):
        """Wait until no handler process runs; True if none is left."""
        return wait_until(lambda: not self.handler_pids(), timeout)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_lines(self, regex):
        """Handler stderr lines matching regex (re.search)."""
        r = re.compile(regex)
        return [l for l in self.stderr_text().splitlines() if r.search(l)]

    # -- other programs: sendmail, the queue runner
    def run(self, name, *args, input=None, env=None, user=None,
            timeout=WAIT * 6, config=True):
        """Run BUILD/name -c CONF ARGS... (config=False: without -c), as
        root or, with user="nobody", as that user and their primary group
        with no supplementary groups; env adds variables.  Returns the
        CompletedProcess (stdout, stderr captured)."""
        argv = [program(name)] + (["-c", self.conf_path] if config else [])
        argv += list(args)
        if user is not None:
            pw = pwd.getpwnam(user)
            argv = [SETPRIV, "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                    "--clear-groups", "--"] + argv
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run(argv, input=input, capture_output=True, env=e,
                              timeout=timeout)

    def start_runner(self, now=None, env=None):
        """Start one queue run in the background (its own process group,
        so that killpg() gets its workers too); now sets SOCKMAIL_TEST_NOW.
        stderr goes to runner.stderr."""
        exe = program("queue-runner")
        if not os.access(exe, os.X_OK):
            raise AssertionError("%s not built (BUILD=%s)" % (exe, BUILD))
        e = dict(os.environ)
        e.pop("SOCKMAIL_TEST_NOW", None)
        if now is not None:
            e["SOCKMAIL_TEST_NOW"] = str(int(now))
        e.update(env or {})
        errf = open(self.runner_stderr_path, "ab")
        argv = valgrind_argv(self.valgrind_dir) + [exe, "-c", self.conf_path]
        proc = subprocess.Popen(argv,
                                stdin=subprocess.DEVNULL, stdout=errf,
                                stderr=errf, env=e, cwd=self.dir,
                                start_new_session=True)
        errf.close()
        return proc

    def run_runner(self, now=None, env=None, timeout=WAIT * 9):
        """One queue run to its end; returns (exit status, what it wrote
        to stderr)."""
        start = len(self.runner_stderr_text().encode())
        proc = self.start_runner(now, env)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError("queue-runner still running after %ds:\n%s"
                                 % (timeout, self.runner_stderr_text()[-4000:]))
        with open(self.runner_stderr_path, "rb") as f:
            f.seek(start)
            out = f.read().decode("utf-8", "replace")
        return rc, out

    def runner_stderr_text(self):
        try:
            with open(self.runner_stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def queue_envelopes(self):
        """{queue id: Envelope} read straight from <spool_dir>/queue.tdb
        with tdbdump ({} when there is no queue.tdb)."""
        path = os.path.join(self.spool_dir, "queue.tdb")
        if not os.path.exists(path):
            return {}
        p = subprocess.run([TDBDUMP, path], capture_output=True, timeout=WAIT)
        if p.returncode != 0:
            raise AssertionError("tdbdump %s failed: %r" % (path, p.stderr))
        out = {}
        for key, data in parse_tdbdump(p.stdout):
            if key.startswith(b"Q:"):
                env = Envelope(data)
                out[env.id] = env
        return out

    def queue_messages(self):
        """The message files in <spool_dir>/msg/ (names)."""
        try:
            return sorted(os.listdir(os.path.join(self.spool_dir, "msg")))
        except FileNotFoundError:
            return []

    def queue_message(self, qid):
        with open(os.path.join(self.spool_dir, "msg", qid), "rb") as f:
            return f.read()

    def sanitizer_reports(self):
        """Sanitizer reports in the handlers' (and queue runners') stderr."""
        text = self.stderr_text() + self.runner_stderr_text()
        return [m for m in SANITIZER_MARKS if m in text]

    def valgrind_logs(self):
        """Paths of the memcheck logs so far, oldest first."""
        try:
            names = os.listdir(self.valgrind_dir)
        except FileNotFoundError:
            return []
        paths = [os.path.join(self.valgrind_dir, n) for n in names
                 if n.startswith("vg.") and n.endswith(".log")]
        return sorted(paths, key=lambda p: (os.path.getmtime(p), p))

    def valgrind_reports(self):
        """[(log path, problem, log text)] of the memcheck logs that show
        errors, or leaks at a normal exit ([] without valgrind)."""
        out = []
        for path in self.valgrind_logs():
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            problem = valgrind_log_problem(text)
            if problem:
                m = _VG_COMMAND.search(text)
                what = m.group(1) if m else "?"
                out.append((path, "%s: %s" % (what, problem), text))
        return out

    @staticmethod
    def _kill(proc):
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop(self):
        """Close clients, let handlers finish (so sanitizers can report at
        exit), then SIGTERM the listener and SIGKILL stragglers.  Returns
        the pids of handlers that had to be killed."""
        for c in self.clients:
            c.close()
        self.clients = []
        stragglers = []
        listeners = ([self.proc] if self.proc else []) + [p for p, _ in self.unix]
        if not listeners:
            return stragglers
        self.wait_handlers_exit()
        stragglers = self.handler_pids()
        for proc in listeners:
            self._kill(proc)
        for pid in stragglers:
            wait_until(lambda: not _alive(pid), 5)
        # whatever is left of the groups (handlers and anything they
        # started): start_new_session, so each listener leads its group
        for proc in listeners:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _, path in self.unix:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.proc = None
        self.unix = []
        return stragglers

    def cleanup(self):
        if os.environ.get("SOCKMAIL_TEST_KEEP"):
            return
        subprocess.run(["rm", "-rf", "--", self.dir], check=False)

    # -- Maildirs
    def maildir(self, address):
        local, domain = address.rsplit("@", 1)
        return os.path.join(self.mail_dir, domain.lower(), local)

    def _list(self, address, sub):
        d = os.path.join(self.maildir(address), sub)
        try:
            return sorted(n for n in os.listdir(d) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def new_files(self, address):
        return self._list(address, "new")

    def tmp_files(self, address):
        return self._list(address, "tmp")

    def read_new(self, address):
        """[(name, bytes)] of new/, sorted by name."""
        out = []
        for n in self.new_files(address):
            with open(os.path.join(self.maildir(address), "new", n), "rb") as f:
                out.append((n, f.read()))
        return out

    def wait_new_files(self, address, count, timeout=WAIT):
        """Wait until new/ holds at least count files; returns the list."""
        return wait_until(lambda: (lambda l: l if len(l) >= count else None)(
            self.new_files(address)), timeout) or self.new_files(address)

    def all_files(self, sub):
        """Every file in any <sub>/ directory (new, cur or tmp) below
        mail_dir, as paths relative to mail_dir."""
        out = []
        for root, dirs, files in os.walk(self.mail_dir):
            if os.path.basename(root) == sub:
                out += [os.path.relpath(os.path.join(root, f), self.mail_dir)
                        for f in files]
        return sorted(out)


# ----------------------------------------------------------------- testcase

class SockmailTestCase(unittest.TestCase):
    """Starts a fresh server per test: domain example.org with users alice,
    bob, carol, dave and alias list@example.org -> bob, carol.  Set CONF
    (dict of extra config keys) in a subclass to change the config."""

    CONF = {}
    START = True
    ARGS = ()  # extra smtp-handler arguments
    ENV = {}  # extra environment for the handler
    HANDLER = "smtp-handler"  # the program the listener starts

    def setUp(self):
        self.srv = SockmailServer(self.config())
        self.addCleanup(self.srv.cleanup)
        self.populate()
        if self.START:
            self.srv.start(self.ARGS, self.ENV, self.HANDLER)

    def config(self):
        """The config keys of the server (CONF by default)."""
        return dict(self.CONF)

    def populate(self):
        s = self.srv
        s.add_domain("example.org")
        for u in ("alice", "bob", "carol", "dave"):
            s.add_user(u + "@example.org")
        s.add_alias("list@example.org", "bob@example.org", "carol@example.org")

    def tearDown(self):
        stragglers = self.srv.stop()
        problems = self.srv.sanitizer_reports()
        if problems:
            self.fail("sanitizer report in handler stderr (%s):\n%s" % (
                ", ".join(problems), self.srv.stderr_text()[-6000:]))
        self.check_valgrind()
        if stragglers:
            self.fail("handler processes %s still running %ds after every "
                      "client had closed" % (stragglers, WAIT))

    def check_valgrind(self):
        """Fail if a memcheck log of this test's server shows a problem:
        copy the bad logs where they outlive the temp dir and name them."""
        reports = self.srv.valgrind_reports()
        if not reports:
            return
        keep = os.path.join(os.environ.get("SOCKMAIL_VALGRIND_KEEP") or
                            os.path.join(tempfile.gettempdir(), "sockmail-valgrind"),
                            self.id())
        os.makedirs(keep, exist_ok=True)
        lines, excerpt = [], ""
        for path, problem, text in reports:
            kept = os.path.join(keep, os.path.basename(path))
            shutil.copyfile(path, kept)
            lines.append("  %s\n    %s" % (kept, problem))
            excerpt = excerpt or text[-6000:]
        self.fail("valgrind found problems (logs kept):\n%s\nfirst log:\n%s"
                  % ("\n".join(lines), excerpt))

    # -- shortcuts
    def connect(self, ehlo="client.test"):
        c = self.srv.connect()
        if ehlo:
            c.start(ehlo)
        return c

    def assertReply(self, reply, code, enh=None, text=None, client=None):
        """Code (and enhanced code, and exact text of the last line)."""
        msg = "got %r" % reply.raw
        if client is not None:
            msg += "\ntranscript:\n" + client.dump()
        self.assertEqual(reply.code, code, msg)
        if enh is not None:
            self.assertEqual(reply.enh, enh, msg)
        if text is not None:
            expect = "%s %s" % (enh, text) if enh else text
            self.assertEqual(reply.text, expect, msg)

    def assertNothingDelivered(self, *addresses):
        if not addresses:
            self.assertEqual(self.srv.all_files("new"), [],
                             "something was delivered")
        for a in addresses:
            self.assertEqual(self.srv.new_files(a), [], "delivered to " + a)
        self.assertEqual(self.srv.all_files("tmp"), [], "files left in tmp/")

    def delivered(self, address, count=1):
        """Wait for exactly count files in address's new/; check each file's
        Maildir invariants; return [(name, content)]."""
        self.srv.wait_new_files(address, count)
        files = self.srv.read_new(address)
        self.assertEqual(len(files), count,
                         "%s: expected %d files, got %r" % (
                             address, count, [n for n, _ in files]))
        for n, c in files:
            maildir_check_file(self, n, c)
        self.assertEqual(self.srv.tmp_files(address), [],
                         "files left in %s tmp/" % address)
        return files

    def assertDelivered(self, content, message, sender, rcpt=None, qid=None,
                        helo="client.test", proto="ESMTP"):
        """A delivered file is Return-Path + Received + message (CRLF->LF),
        byte-exact.  rcpt: the expected "for" address, or None for no
        "for" clause; qid: the queue id from the 250 reply."""
        rp, m, body = split_delivered(self, content)
        self.assertEqual(rp, sender.encode() if isinstance(sender, str) else sender)
        self.assertEqual(m.group("helo"), helo.encode())
        self.assertEqual(m.group("peer"), b"[127.0.0.1]")
        self.assertEqual(m.group("by"), HOSTNAME.encode())
        self.assertEqual(m.group("with"), proto.encode())
        if qid is not None:
            self.assertEqual(m.group("id"), qid.encode())
        if rcpt is None:
            self.assertIsNone(m.group("for"), "unexpected for clause")
        else:
            self.assertEqual(m.group("for"), rcpt.encode())
        self.assertEqual(body, crlf_to_lf(message))
        return m


# ===================================================================== IMAP
# Appended for tests/e2e/test_imap.py and tests/e2e/test_imap_clients.py:
# a TLS certificate, a second listener (smtp-handler next to imap-handler),
# messages written straight into a Maildir++ folder, a byte-exact IMAP
# client with a parser for its responses, and a TestCase base class.

import atexit as _atexit
import itertools as _itertools
import shutil as _shutil

IMAP_PASSWORD = "secret-Passw0rd"  # what add_user gives everyone
IMAP_NOT_LOOPBACK = "192.0.2.7"

_tls_files = {}


def tls_certificate():
    """(cert, key) paths of a self-signed ECDSA certificate for HOSTNAME
    and 127.0.0.1, made once per run with certtool (removed at exit)."""
    if not _tls_files:
        d = tempfile.mkdtemp(prefix="sockmail-e2e-cert-")
        _atexit.register(_shutil.rmtree, d, True)
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
        _tls_files.update(dir=d, cert=cert, key=key)
    return _tls_files["cert"], _tls_files["key"]


def tls_client_context():
    """A client context that trusts (only) the test certificate."""
    return ssl.create_default_context(cafile=tls_certificate()[0])


def start_imap(srv, args=(), env=None):
    """Start srv's listener with imap-handler (args e.g. ["--tls=implicit"],
    env e.g. {"SOCKMAIL_TEST_PEER": IMAP_NOT_LOOPBACK}); returns the port."""
    return srv.start(args, env, handler="imap-handler")


def start_listener(srv, handler, args=(), env=None):
    """A further TCP listener of srv on another free port, starting
    BUILD/handler per connection (e.g. smtp-handler for deliveries next to
    an imap-handler listener).  Its handlers count in srv.handler_pids()
    and srv.stop() stops it with the others.  Returns the port."""
    proc, port = srv.spawn_tcp(handler, args, env)
    # srv.unix is the list stop() tears down; the "path" is one that does
    # not exist, so its unlink there is a no-op.
    srv.unix.append((proc, os.path.join(srv.dir, "tcp-listener-%d" % port)))
    return port


# -- Maildir++ folders as imap-handler lays them out

def imap_folder_dir(srv, address, folder=""):
    """The directory of an IMAP folder: the Maildir root for INBOX (or ""),
    else <root>/.<level>.<level> (plain ASCII names without '.' only)."""
    root = srv.maildir(address)
    if folder == "" or folder.upper() == "INBOX":
        return root
    return os.path.join(root, "." + folder.replace("/", "."))


_imap_put_seq = _itertools.count(1)


def maildir_put(srv, address, content, folder="", sub="new", flags="",
                when=None):
    """Write content (LF line ends) into a folder's new/ or cur/ (with
    ":2,<flags>") as delivery names it (<time>.M<usec>P<pid>Q<n>.<host>,
    S=<size>,W=<crlf size>), with mtime = when (INTERNALDATE).  Messages
    put with increasing when sort (and get UIDs) in that order.  Returns
    the file name."""
    n = next(_imap_put_seq)
    when = when if when is not None else 1700000000 + n
    name = "%d.M%06dP%dQ%d.testhost,S=%d,W=%d" % (
        when, n % 1000000, os.getpid(), n, len(content),
        len(content) + content.count(b"\n"))
    if sub == "cur":
        name += ":2," + flags
    path = os.path.join(imap_folder_dir(srv, address, folder), sub, name)
    with open(path, "wb") as f:
        f.write(content)
    os.utime(path, (when, when))
    return name


def lf_to_crlf(content):
    """What IMAP serves for an LF file: every lone LF becomes CRLF (no
    final line end is added)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", content)


# -- the IMAP wire format

class Atom(bytes):
    """An IMAP atom in a parsed response (strings are plain bytes, NIL is
    None, lists are lists)."""


def imap_parse(buf, i=0):
    """Parse one value of an IMAP response at buf[i:]: (value, next i).
    Atoms may hold a [section] with spaces and parentheses, as in
    BODY[HEADER.FIELDS (FROM)]<0>."""
    n = len(buf)
    while i < n and buf[i:i + 1] == b" ":
        i += 1
    if i >= n:
        raise ProtocolError("value expected at end of %r" % buf[:300])
    c = buf[i:i + 1]
    if c == b"(":
        out = []
        i += 1
        while True:
            while i < n and buf[i:i + 1] == b" ":
                i += 1
            if i >= n:
                raise ProtocolError("unbalanced ( in %r" % buf[:300])
            if buf[i:i + 1] == b")":
                return out, i + 1
            v, i = imap_parse(buf, i)
            out.append(v)
    if c == b'"':
        out = bytearray()
        i += 1
        while True:
            if i >= n:
                raise ProtocolError("unterminated quoted string in %r" % buf[:300])
            ch = buf[i:i + 1]
            if ch == b"\\":
                out += buf[i + 1:i + 2]
                i += 2
                continue
            if ch == b'"':
                return bytes(out), i + 1
            if ch in (b"\r", b"\n"):
                raise ProtocolError("CR/LF in a quoted string: %r" % buf[:300])
            out += ch
            i += 1
    if c == b"{":
        m = re.compile(rb"\{(\d+)\}\r\n").match(buf, i)
        if not m:
            raise ProtocolError("bad literal at %r" % buf[i:i + 30])
        start = m.end()
        end = start + int(m.group(1))
        if end > n:
            raise ProtocolError("literal runs past the response")
        return bytes(buf[start:end]), end
    j = i
    depth = 0
    while j < n:
        ch = buf[j:j + 1]
        if ch == b"[":
            depth += 1
        elif ch == b"]":
            depth -= 1
        elif depth <= 0 and ch in (b" ", b"(", b")"):
            break
        j += 1
    if j == i:
        raise ProtocolError("unexpected %r at %d in %r" % (c, i, buf[:300]))
    a = bytes(buf[i:j])
    if a.upper() == b"NIL":
        return None, j
    return Atom(a), j


def imap_parse_all(buf):
    """All values of buf (e.g. an untagged response without "* ")."""
    out, i = [], 0
    while True:
        while i < len(buf) and buf[i:i + 1] == b" ":
            i += 1
        if i >= len(buf):
            return out
        v, i = imap_parse(buf, i)
        out.append(v)


class FetchData:
    """One "* n FETCH (...)" response: seq, items (upper-cased name ->
    parsed value) and raw (upper-cased name -> the value's exact bytes)."""

    def __init__(self, untagged):
        m = re.match(rb"(\d+) FETCH \(", untagged, re.I)
        if not m:
            raise ProtocolError("not a FETCH response: %r" % untagged[:300])
        self.seq = int(m.group(1))
        self.items, self.raw = {}, {}
        i, n = m.end(), len(untagged)
        while True:
            while i < n and untagged[i:i + 1] == b" ":
                i += 1
            if i >= n:
                raise ProtocolError("FETCH response not closed: %r" % untagged[:300])
            if untagged[i:i + 1] == b")":
                if untagged[i + 1:].strip():
                    raise ProtocolError("bytes after FETCH (...): %r" % untagged[:300])
                break
            name, i = imap_parse(untagged, i)
            if not isinstance(name, Atom):
                raise ProtocolError("FETCH item name %r" % name)
            while i < n and untagged[i:i + 1] == b" ":
                i += 1
            start = i
            value, i = imap_parse(untagged, i)
            key = name.upper().decode()
            if key in self.items:
                raise ProtocolError("FETCH item %s twice: %r" % (key, untagged[:300]))
            self.items[key] = value
            self.raw[key] = bytes(untagged[start:i])

    def flags(self):
        """FLAGS as a set of str (None if not in the response)."""
        if "FLAGS" not in self.items:
            return None
        return set(f.decode() for f in self.items["FLAGS"])

    def __repr__(self):
        return "FetchData(%d, %r)" % (self.seq, self.items)


def uid_set_list(text):
    """"1:3,7" -> [1, 2, 3, 7] (ranges in either order)."""
    if isinstance(text, bytes):
        text = text.decode()
    out = []
    for part in text.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def parse_list_line(untagged):
    """"LIST (\\HasNoChildren) "/" INBOX" -> (set of attributes as lower
    case str, delimiter str or None, mailbox name str)."""
    m = re.match(rb"(?:LIST|LSUB) ", untagged, re.I)
    if not m:
        raise ProtocolError("not a LIST/LSUB response: %r" % untagged)
    vals = imap_parse_all(untagged[m.end():])
    if len(vals) != 3 or not isinstance(vals[0], list):
        raise ProtocolError("malformed LIST response: %r" % untagged)
    attrs = set(a.decode().lower() for a in vals[0])
    delim = vals[1].decode() if vals[1] is not None else None
    return attrs, delim, bytes(vals[2]).decode("utf-8", "replace")


class Literal:
    """A literal argument for IMAPConn.command: {n} (waits for "+") or,
    with plus=True, {n+} (LITERAL+, sent at once)."""

    def __init__(self, data, plus=False):
        self.data = data.encode() if isinstance(data, str) else data
        self.plus = plus


class IMAPResult:
    """The outcome of one command: tag, status ("OK", "NO", "BAD"), text
    (after the status, bytes), untagged responses (bytes without "* "),
    continuations seen ("+" lines), raw tagged line."""

    def __init__(self, tag, status, text, untagged, continuations=()):
        self.tag = tag
        self.status = status
        self.text = text
        self.untagged = untagged
        self.continuations = list(continuations)

    @property
    def code(self):
        """The response code of the tagged line: b"TOOBIG",
        b"APPENDUID 3 7", ... or None."""
        m = re.match(rb"\[([^\]]*)\]", self.text)
        return m.group(1) if m else None

    @property
    def code_name(self):
        c = self.code
        return c.split(b" ", 1)[0].upper().decode() if c else None

    def matching(self, regex):
        """Untagged responses matching regex (bytes, re.match, any case)."""
        r = re.compile(regex, re.I)
        return [u for u in self.untagged if r.match(u)]

    def fetches(self):
        """{seq: FetchData} of the untagged FETCH responses; several for
        one message (data, then its FLAGS after \\Seen was set) are
        merged, the later value of an item winning."""
        out = {}
        for u in self.matching(rb"\d+ FETCH "):
            fd = FetchData(u)
            if fd.seq in out:
                out[fd.seq].items.update(fd.items)
                out[fd.seq].raw.update(fd.raw)
            else:
                out[fd.seq] = fd
        return out

    def numbers(self, word):
        """The n of every "* n WORD" (EXISTS, RECENT, EXPUNGE)."""
        return [int(u.split()[0]) for u in self.matching(rb"\d+ %s$" % word.encode())]

    def search(self):
        """The numbers of the one "* SEARCH ..." response."""
        s = self.matching(rb"SEARCH\b")
        if len(s) != 1:
            raise ProtocolError("expected one SEARCH response: %r" % self.untagged)
        return [int(x) for x in s[0].split()[1:]]

    def __repr__(self):
        return "IMAPResult(%s %s %r, untagged=%r)" % (
            self.tag, self.status, self.text, [u[:300] for u in self.untagged])


class IMAPConn:
    """Byte-exact IMAP client: every line must end in CRLF; a response is
    one line with its literals inline ("... {5}\\r\\nhello ...")."""

    LINE_MAX = 1 << 20

    def __init__(self, port, timeout=TIMEOUT, tls_context=None,
                 host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        if tls_context is not None:
            self.sock = tls_context.wrap_socket(self.sock,
                                                server_hostname=HOSTNAME)
        self.buf = b""
        self.transcript = []
        self._tags = _itertools.count(1)
        self.bye = None  # the "* BYE" response once one came

    # -- raw I/O
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(("C", data[:2000]))
        self.sock.sendall(data)

    def _recv(self):
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        if not data:
            raise ProtocolError("connection closed by server; buffered %r\n%s"
                                % (self.buf[:500], self.dump()))
        self.transcript.append(("S", data[:2000]))
        return data

    def _fill(self):
        self.buf += self._recv()

    def read_line(self):
        """One line with its CRLF; a bare LF line end is an error."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                break
            if len(self.buf) > self.LINE_MAX:
                raise ProtocolError("response line too long")
            self._fill()
        line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        if not line.endswith(b"\r\n"):
            raise ProtocolError("line without CRLF: %r" % line[:300])
        return line

    def read_bytes(self, n):
        if len(self.buf) < n:
            # big literals: collect the pieces, join once
            parts, have = [self.buf], len(self.buf)
            while have < n:
                data = self._recv()
                parts.append(data)
                have += len(data)
            self.buf = b"".join(parts)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self):
        """One response without its final CRLF, literals inline."""
        out = b""
        while True:
            line = self.read_line()
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                out += line + self.read_bytes(int(m.group(1)))
                continue
            return out + line[:-2]

    def new_tag(self):
        return "A%04d" % next(self._tags)

    # -- commands
    def read_until_tagged(self, tag, continuations=None):
        """Untagged responses up to the completion of tag.  A "+" is a
        protocol error unless continuations (a list) collects them."""
        untagged = []
        tb = tag.encode() if isinstance(tag, str) else tag
        while True:
            r = self.read_response()
            if r.startswith(b"* "):
                untagged.append(r[2:])
                if re.match(rb"BYE\b", r[2:], re.I):
                    self.bye = r[2:]
            elif r.startswith(b"+"):
                if continuations is None:
                    raise ProtocolError("unexpected continuation %r\n%s"
                                        % (r, self.dump()))
                continuations.append(r)
            else:
                m = re.match(rb"(\S+) (OK|NO|BAD)(?: (.*))?$", r, re.I | re.S)
                if not m:
                    raise ProtocolError("malformed response %r\n%s"
                                        % (r[:300], self.dump()))
                if m.group(1) != tb:
                    raise ProtocolError("completion for tag %r while waiting "
                                        "for %r: %r\n%s" % (m.group(1), tb, r,
                                                            self.dump()))
                return IMAPResult(tag, m.group(2).upper().decode(),
                                  m.group(3) or b"", untagged, continuations or ())

    def command(self, *parts, tag=None):
        """Send "<tag> " + parts + CRLF and read the result.  str/bytes
        parts are sent as they are; a Literal sends "{n}\\r\\n", waits for
        the "+" and sends its data ({n+}: all at once).  If the server
        completes the command instead of sending "+", that result is
        returned (result.continuations tells what was seen)."""
        tag = tag or self.new_tag()
        out = tag.encode() + b" "
        conts = []
        untagged = []
        for p in parts:
            if isinstance(p, Literal):
                out += b"{%d%s}\r\n" % (len(p.data), b"+" if p.plus else b"")
                if p.plus:
                    out += p.data
                    continue
                self.send(out)
                out = b""
                while True:
                    r = self.read_response()
                    if r.startswith(b"+"):
                        conts.append(r)
                        break
                    if r.startswith(b"* "):
                        untagged.append(r[2:])
                        continue
                    self.buf = r + b"\r\n" + self.buf  # the completion
                    res = self.read_until_tagged(tag, conts)
                    res.untagged = untagged + res.untagged
                    return res
                out = p.data
            else:
                out += p.encode() if isinstance(p, str) else p
        self.send(out + b"\r\n")
        res = self.read_until_tagged(tag)  # no "+" may come now
        res.untagged = untagged + res.untagged
        res.continuations = conts
        return res

    def cmd(self, line):
        return self.command(line)

    def ok(self, line, *more):
        """command(line, *more) that must complete with OK."""
        r = self.command(line, *more)
        if r.status != "OK":
            raise ProtocolError("%r: %r\n%s" % (line, r, self.dump()))
        return r

    def login(self, user, password=IMAP_PASSWORD):
        return self.command("LOGIN %s %s" % (imap_quote(user), imap_quote(password)))

    def starttls(self, context=None):
        if self.buf:
            raise ProtocolError("plaintext bytes after the STARTTLS OK: %r"
                                % self.buf)
        self.sock = (context or tls_client_context()).wrap_socket(
            self.sock, server_hostname=HOSTNAME)
        self.transcript.append(("C", b"<TLS handshake>"))
        return self.sock

    def expect_eof(self, timeout=None):
        """The server closes the connection with nothing more to say."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        extra = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                data = b""
            if not data:
                break
            extra += data
        if self.buf or extra:
            raise ProtocolError("bytes before close: %r" % (self.buf + extra)[:500])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def dump(self):
        return "".join("%s: %r\n" % (d, b[:500]) for d, b in self.transcript[-40:])


def imap_quote(s):
    """A quoted string (for ASCII arguments without CR/LF)."""
    if isinstance(s, bytes):
        s = s.decode()
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@unittest.skipUnless(os.access(program("imap-handler"), os.X_OK),
                     "imap-handler is not built (BUILD=%s)" % BUILD)
class IMAPTestCase(SockmailTestCase):
    """A fresh server per test with imap-handler on the listener, users
    alice and bob (Maildir++ with the default folders).  TLS = True
    configures the test certificate."""

    HANDLER = "imap-handler"
    TLS = False
    USERS = ("alice@example.org", "bob@example.org")

    def config(self):
        conf = dict(self.CONF)
        if self.TLS:
            cert, key = tls_certificate()
            conf.update(tls_cert=cert, tls_key=key)
        return conf

    def populate(self):
        self.srv.add_domain("example.org")
        for u in self.USERS:
            self.srv.add_user(u)

    def setUp(self):
        self.imap_clients = []
        super().setUp()

    def tearDown(self):
        for c in self.imap_clients:
            try:
                # imaplib's close() is the IMAP CLOSE command
                if hasattr(c, "shutdown") and hasattr(c, "capabilities"):
                    c.shutdown()
                else:
                    c.close()
            except Exception:  # noqa: BLE001 - best effort
                pass
        super().tearDown()

    # -- clients (closed before the harness looks for stray handlers)
    def connect_imap(self, tls_context=None):
        """An IMAPConn whose greeting ("* OK ...") has been read (over
        TLS at once when the handler runs with --tls=implicit)."""
        if tls_context is None and "--tls=implicit" in self.ARGS:
            tls_context = tls_client_context()
        c = IMAPConn(self.srv.port, tls_context=tls_context)
        self.imap_clients.append(c)
        g = c.read_response()
        self.assertRegex(g, rb"^\* OK\b", "greeting")
        c.greeting = g
        return c

    def login(self, user="alice@example.org", select=None):
        c = self.connect_imap()
        r = c.login(user)
        self.assertEqual(r.status, "OK", "LOGIN %s: %r" % (user, r))
        if select is not None:
            r = c.command("SELECT " + imap_quote(select))
            self.assertEqual(r.status, "OK", "SELECT %s: %r" % (select, r))
            c.selected = r
        return c

    def track(self, client):
        """Close client (imaplib, poplib, sockets) at tearDown."""
        self.imap_clients.append(client)
        return client

    # -- the Maildir
    def put(self, content, address="alice@example.org", folder="",
            sub="new", flags="", when=None):
        return maildir_put(self.srv, address, content, folder, sub, flags, when)

    def folder_dir(self, folder="", address="alice@example.org"):
        return imap_folder_dir(self.srv, address, folder)

    def files(self, sub, folder="", address="alice@example.org"):
        d = os.path.join(self.folder_dir(folder, address), sub)
        try:
            return sorted(os.listdir(d))
        except FileNotFoundError:
            return []

    def read_file(self, name, sub="cur", folder="", address="alice@example.org"):
        with open(os.path.join(self.folder_dir(folder, address), sub, name), "rb") as f:
            return f.read()

    # -- assertions
    def assertResult(self, r, *statuses, code=None, client=None):
        """r.status in statuses; with code, the tagged response code's
        name (e.g. "TRYCREATE") is that."""
        msg = repr(r)
        if client is not None:
            msg += "\ntranscript:\n" + client.dump()
        self.assertIn(r.status, statuses, msg)
        if code is not None:
            self.assertEqual(r.code_name, code, msg)


# ============================================================ one handler
# Appended for tests/e2e/test_faults.py: one handler process on one
# connection, started by the test itself rather than by a listener, so the
# test chooses its whole environment (LD_PRELOAD of the fault shim) run by
# run and sees how it ended (exit status, signal).

import threading as _threading


class HandlerProcess:
    """One handler on one TCP connection, as systemd-socket-activate
    --inetd starts it (the accepted socket is stdin and stdout, stderr goes
    to srv.stderr_path), with the environment a listener would give it
    (PATH and PASS_ENV) plus env; never under valgrind.  Connect a client to .port (once); the
    handler starts when the connection is accepted.  wait() returns its
    exit status (negative: killed by that signal), or None if it was
    still running after timeout and had to be killed."""

    def __init__(self, srv, handler, args=(), env=None):
        exe = program(handler)
        if not os.access(exe, os.X_OK):
            raise AssertionError("%s not built (BUILD=%s)" % (exe, BUILD))
        self.argv = [exe, "-c", srv.conf_path] + list(args)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for v in PASS_ENV:
            if v in os.environ:
                self.env[v] = os.environ[v]
        self.env.update(env or {})
        self.srv = srv
        self.proc = None
        self.error = None
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(TIMEOUT)
        self.port = self.lsock.getsockname()[1]
        self.thread = _threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        try:
            conn, _ = self.lsock.accept()
        except OSError as e:  # nobody connected
            self.error = e
            return
        finally:
            self.lsock.close()
        try:
            conn.settimeout(None)  # the handler gets a blocking socket
            with open(self.srv.stderr_path, "ab") as errf:
                self.proc = subprocess.Popen(
                    self.argv, stdin=conn, stdout=conn, stderr=errf,
                    env=self.env, cwd=self.srv.dir, start_new_session=True)
        except OSError as e:
            self.error = e
        finally:
            conn.close()

    def started(self, timeout=WAIT):
        """Wait until the handler runs; its Popen (or raise)."""
        self.thread.join(timeout)
        if self.proc is None:
            raise AssertionError("handler not started: %r" % (self.error,))
        return self.proc

    def wait(self, timeout=WAIT):
        proc = self.started()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
