#!/usr/bin/python3
"""bench_imap.py: the IMAP part of `make bench` (issue 6), python3 stdlib only.

Sets up a throw-away sockmail (config, domain, user) on a real disk, fills
the user's INBOX with 10,000 messages of about 4 KiB (realistic headers,
some multipart, every 100th with the word "zebracrossing" in its text),
written straight into cur/ as delivery names them (",S=<size>,W=<CRLF
size>", LF line ends), runs build/imap-handler under
`systemd-socket-activate --inetd --accept` on a free loopback port and
measures, each session in a fresh handler process:
  - LOGIN+SELECT INBOX+LOGOUT sessions/s at 1 and 4 concurrent clients
    (Python imaplib in forked workers, as the reference was measured), with
    the default yescrypt password hash and again with a SHA-512-crypt one
    (the reference Dovecot had plain-text passwords), and the handler CPU
    per session (the activator's reaped children);
  - SELECT INBOX alone: warm, with sockmail-cache.tdb deleted, and with
    both sockmail-imap.tdb and sockmail-cache.tdb deleted (the UIDs are
    reassigned: fine here);
  - UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE): warm (the cache tdb
    filled by an earlier session), right after deleting the cache tdb, and
    right after the SELECT with both tdbs deleted;
  - SEARCH TEXT "zebracrossing" (must find exactly every 100th message);
  - Private_Dirty, Rss, Pss (/proc/PID/smaps_rollup) of a handler logged
    in, with INBOX selected, sitting in IDLE; and the same after it has
    fetched every ENVELOPE.
SELECT and FETCH are timed with imaplib (like the reference, so its
response parsing is in the figure) and with a raw socket client that only
waits for the tagged completion (close to what the server itself takes);
the handler's own CPU for the command comes from /proc/PID/schedstat.
Medians of RUNS runs.  Prints a table beside Dovecot 2.3's figures from
the issue.  Timings are printed, never asserted: exit 1 only on errors
(failed commands, wrong counts, a handler that does not start).

Environment (as tests/bench/bench.py): BUILD (build dir, default "build"),
BENCH_SCALE (multiplies the message and session counts, default 1),
BENCH_DIR (parent of the temp dir instead of /var/tmp), BENCH_KEEP=1 (keep
the temp dir).
"""

import base64
import email.utils
import imaplib
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the SMTP/POP3 bench's helpers)

USER = "bench@example.org"
PASSWORD = "bench-password"
N_MSGS = 10000			# INBOX size (times BENCH_SCALE)
MSG_SIZE = 4096			# about; the file (LF) stays at or under it
NEEDLE = "zebracrossing"	# in every NEEDLE_EVERY-th message's text
NEEDLE_EVERY = 100
SESSIONS = 200			# per run and client count (times BENCH_SCALE)
RUNS = 5			# medians of this many runs
YESCRYPT_RUNS = 3		# yescrypt sessions cost tens of ms: fewer
FETCH_ITEMS = "(FLAGS RFC822.SIZE ENVELOPE)"
IO_TIMEOUT = 300		# seconds for any one IMAP command
RAW_LIMIT = 256 << 20		# bound on one raw response
IDLE_SETTLE = 0.5		# seconds in IDLE before reading the memory
DB_NAME = "sockmail-imap.tdb"	# the folder's UID map (imap_folder.h)
CACHE_NAME = "sockmail-cache.tdb"	# its ENVELOPE/BODYSTRUCTURE cache

# Not measured here: Dovecot 2.3 "on this kind of machine", from issue 6 and
# ../shared/bench-peers (plain-text passwords; Python imaplib as the client;
# the same kind of 10,000-message Maildir).
REF_LABEL = ("reference: Dovecot 2.3 on this kind of machine, from issue 6 "
             "/ ../shared/bench-peers, not measured in this run; its passdb "
             "had plain-text passwords and it was driven by Python's imaplib")
REF_SESS_1 = 138.0		# LOGIN+SELECT+LOGOUT sessions/s, 1 client
REF_SESS_4 = 180.0		# the same, 4 clients (bench-peers README)
REF_SESS_CPU_MS = 8.6		# Dovecot CPU per session
REF_SELECT_COLD_MS = 11.0	# SELECT with its index deleted
REF_FETCH_WARM_MS = 70.0
REF_FETCH_COLD_MS = 211.0	# right after that cold SELECT
REF_SEARCH_MS = 358.0
REF_IDLE_KIB = 468		# idle imap process heap+stack
REF_IDLE_RSS_KIB = 5192
AIM_FACTOR = 1.5		# >= 1.5x Dovecot's sessions/s
AIM_SELECT_MS = 15.0
AIM_FETCH_MS = 70.0
AIM_SEARCH_MS = 350.0
AIM_IDLE_KIB = 1536		# Private_Dirty in IDLE on 10,000 messages

say = bench.say
problem = bench.problem
fmt = bench.fmt
verdict = bench.verdict


# ---------------------------------------------------------------- messages

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet "
         "kilo lima mike november oscar papa quebec romeo sierra tango "
         "uniform victor whiskey xray yankee zulu meeting report invoice "
         "schedule project budget release server client mailbox message "
         "delivery network storage backup update").split()


def text_lines(rng, budget, needle=False):
    """Lines of words (about 70 columns) within budget octets; the
    needle line, if any, somewhere in the middle."""
    out, n = [], 0
    while True:
        line = " ".join(rng.choice(WORDS) for _ in range(11)) + "\n"
        if n + len(line) > budget:
            break
        out.append(line)
        n += len(line)
    if needle:
        line = "the %s token is here\n" % NEEDLE
        if out and n + len(line) > budget:
            n -= len(out.pop())
        out.insert(len(out) // 2, line)
    return out


def make_message(i, size=MSG_SIZE):
    """Message i (LF line ends, at most size octets): a Received trace,
    From/To/Cc/Subject/Date/Message-ID (some replies, some RFC 2047
    subjects); every 5th multipart/alternative (text and HTML), every 20th
    multipart/mixed with a base64 attachment, the rest text/plain."""
    rng = random.Random(i)
    k = i % 50
    when = 1700000000 + i * 37
    date = email.utils.formatdate(when, localtime=False)
    subject = "%s %s %s #%d" % (rng.choice(WORDS).capitalize(),
                                rng.choice(WORDS), rng.choice(WORDS), i)
    if i % 10 == 3:
        subject = "=?utf-8?q?Caf=C3=A9_r=C3=A9union?= " + subject
    if i % 4 == 1:
        subject = "Re: " + subject
    hdr = ["Return-Path: <sender%d@example.net>\n" % k,
           "Delivered-To: %s\n" % USER,
           "Received: from client%d.example.net (client%d.example.net "
           "[192.0.2.%d])\n\tby mx1.mail.example.org (sockmail) with "
           "ESMTPS id %010X\n\tfor <%s>; %s\n" % (k, k, k + 1, i, USER, date),
           "From: \"Sender %d\" <sender%d@example.net>\n" % (k, k),
           "To: Bench User <%s>\n" % USER]
    if i % 3 == 0:
        hdr.append("Cc: team%d@example.net, \"Other Person\" "
                   "<other%d@example.com>\n" % (k % 7, k))
    hdr += ["Subject: %s\n" % subject,
            "Date: %s\n" % date,
            "Message-ID: <%d.%08x@example.net>\n" % (i, rng.getrandbits(32))]
    if i % 4 == 1 and i > 1:
        hdr.append("In-Reply-To: <%d.0@example.net>\n" % (i - 1))
    hdr.append("MIME-Version: 1.0\n")
    needle = i % NEEDLE_EVERY == 0
    head = "".join(hdr)
    if i % 20 == 7:
        b = "=_mixed_%d" % i
        blob = bytes(rng.getrandbits(8) for _ in range(600))
        att = base64.encodebytes(blob).decode()
        top = (head + "Content-Type: multipart/mixed; boundary=\"%s\"\n\n"
               "This is a multi-part message in MIME format.\n\n"
               "--%s\nContent-Type: text/plain; charset=us-ascii\n\n" % (b, b))
        tail = ("\n--%s\nContent-Type: application/pdf; name=\"r%d.pdf\"\n"
                "Content-Transfer-Encoding: base64\n"
                "Content-Disposition: attachment; filename=\"r%d.pdf\"\n\n"
                "%s\n--%s--\n" % (b, i, i, att, b))
        body = text_lines(rng, size - len(top) - len(tail), needle)
        text = top + "".join(body) + tail
    elif i % 5 == 0:
        b = "=_alt_%d" % i
        top = (head + "Content-Type: multipart/alternative; boundary=\"%s\"\n"
               "\n--%s\nContent-Type: text/plain; charset=utf-8\n"
               "Content-Transfer-Encoding: 7bit\n\n" % (b, b))
        mid = ("\n--%s\nContent-Type: text/html; charset=utf-8\n\n"
               "<html><body>\n" % b)
        end = "</body></html>\n\n--%s--\n" % b
        room = size - len(top) - len(mid) - len(end)
        plain = text_lines(rng, room * 2 // 3, needle)
        html = ["<p>%s</p>\n" % l.rstrip("\n") for l in plain[:4]]
        text = top + "".join(plain) + mid + "".join(html) + end
    else:
        top = head + "Content-Type: text/plain; charset=us-ascii\n\n"
        text = top + "".join(text_lines(rng, size - len(top), needle))
    return text.encode(), when


def populate(maildir, count):
    """count messages in cur/, named as delivery names them plus an info
    part (most \\Seen, some \\Answered or \\Flagged), with the message's
    date as mtime (INTERNALDATE).  Returns (total CRLF size, how many
    hold the needle)."""
    total = needles = 0
    cur = os.path.join(maildir, "cur")
    host = "mx1.mail.example.org"
    for i in range(count):
        data, when = make_message(i)
        w = len(data) + data.count(b"\n")
        r = i % 100
        flags = "S" if r < 85 else "RS" if r < 90 else "FS" if r < 93 else ""
        name = "%d.M%06dP%dQ%d.%s,S=%d,W=%d:2,%s" % (
            when, i % 1000000, 20000 + i % 30000, i, host, len(data), w,
            flags)
        path = os.path.join(cur, name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (when, when))
        total += w
        needles += i % NEEDLE_EVERY == 0
    return total, needles


# ---------------------------------------------------------------- processes

def wait_ready(act, timeout=10.0):
    """Until a connection gets an IMAP greeting and imaplib's CAPABILITY
    works (bench.Activator.wait_ready speaks SMTP/POP3)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if act.proc.poll() is not None:
            raise bench.BenchError("systemd-socket-activate exited (%d):\n%s"
                                   % (act.proc.returncode, act.log_tail()))
        try:
            m = imaplib.IMAP4("127.0.0.1", act.port, timeout=10)
        except OSError as e:
            last = e
            time.sleep(0.05)
            continue
        except imaplib.IMAP4.error as e:
            raise bench.BenchError("imap-handler does not greet properly: "
                                   "%s\n%s" % (e, act.log_tail()))
        welcome = m.welcome
        m.logout()
        return welcome
    raise bench.BenchError("nothing accepts on 127.0.0.1:%d after %.0f s (%s)"
                           % (act.port, timeout, last))


def quiesce(act, timeout=10.0):
    """Wait until no handler of an earlier session is left, so that the
    next one is the only child (its PID is then known) and no handler
    still touches the tdbs we are about to delete."""
    deadline = time.monotonic() + timeout
    while act.handler_children():
        if time.monotonic() > deadline:
            problem("imap-handler processes still running %.0f s after "
                    "their LOGOUT: %s" % (timeout, [p for _, p in
                                                    act.handler_children()]))
            return
        time.sleep(0.01)


def session_pid(act):
    """The PID of the handler of the one open session."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = act.handler_children()
        if kids:
            if len(kids) > 1:
                problem("%d imap-handler processes where one was expected" %
                        len(kids))
            return kids[-1][1]
        time.sleep(0.01)
    raise bench.BenchError("no imap-handler child of systemd-socket-activate "
                           "(pid %d) found\n%s" % (act.proc.pid,
                                                   act.log_tail()))


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    """CPU time a live process has used so far, in ms (schedstat has ns;
    else utime+stime in clock ticks)."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) * 1000.0 / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def cpu_delta(a, b):
    return None if a is None or b is None else b - a


def drop(maildir, names):
    for name in names:
        try:
            os.unlink(os.path.join(maildir, name))
        except FileNotFoundError:
            problem("%s was not there to delete: the handler did not create "
                    "it" % name)


# ---------------------------------------------------------------- clients

class ImapFailure(Exception):
    pass


def imaplib_login(port):
    m = imaplib.IMAP4("127.0.0.1", port, timeout=IO_TIMEOUT)
    typ, data = m.login(USER, PASSWORD)
    if typ != "OK":
        raise ImapFailure("LOGIN: %s %r" % (typ, data))
    return m


def imaplib_select(m, n, readonly=False):
    t0 = time.monotonic()
    typ, data = m.select("INBOX", readonly=readonly)
    dt = (time.monotonic() - t0) * 1000.0
    if typ != "OK":
        raise ImapFailure("SELECT INBOX: %s %r" % (typ, data))
    if int(data[0]) != n:
        raise ImapFailure("SELECT INBOX: %s EXISTS, expected %d" %
                          (data[0], n))
    return dt


FETCH_HEAD = re.compile(rb"^\d+ \(")


def imaplib_fetch(m, n):
    t0 = time.monotonic()
    typ, data = m.uid("FETCH", "1:*", FETCH_ITEMS)
    dt = (time.monotonic() - t0) * 1000.0
    if typ != "OK":
        raise ImapFailure("UID FETCH: %s %r" % (typ, data[:1]))
    heads = [x[0] if isinstance(x, tuple) else x for x in data]
    got = sum(1 for h in heads if isinstance(h, bytes) and
              FETCH_HEAD.match(h) and b"ENVELOPE" in h)
    if got != n:
        raise ImapFailure("UID FETCH 1:* %s: %d responses with ENVELOPE, "
                          "expected %d" % (FETCH_ITEMS, got, n))
    return dt


def imap_session(port, n):
    """LOGIN + SELECT INBOX + LOGOUT, as the reference did."""
    m = imaplib_login(port)
    imaplib_select(m, n)
    m.logout()


class Raw:
    """A raw IMAP client: sends a command and reads up to its tagged
    completion, nothing parsed, so that the time is the server's and the
    socket's."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=IO_TIMEOUT)
        self.buf = bytearray()
        self.n = 0
        greet = self.line()
        if not greet.startswith(b"* OK"):
            raise ImapFailure("greeting: %r" % greet[:200])

    def fill(self):
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ImapFailure("connection closed by the server")
        self.buf += chunk
        if len(self.buf) > RAW_LIMIT:
            raise ImapFailure("response longer than %d octets" % RAW_LIMIT)

    def line(self):
        while True:
            p = self.buf.find(b"\r\n")
            if p >= 0:
                out = bytes(self.buf[:p])
                del self.buf[:p + 2]
                return out
            self.fill()

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def tag(self):
        self.n += 1
        return "r%d" % self.n

    def complete(self, tag):
        """Everything up to and including the tagged line: (status line,
        the untagged data before it)."""
        want = b"\r\n" + tag.encode() + b" "
        pos = 0
        while True:
            if self.buf.startswith(want[2:]):
                start = 0
            else:
                p = self.buf.find(want, pos)
                if p < 0:
                    pos = max(0, len(self.buf) - len(want))
                    self.fill()
                    continue
                start = p + 2
            e = self.buf.find(b"\r\n", start)
            if e < 0:
                self.fill()
                continue
            data = bytes(self.buf[:start])
            status = bytes(self.buf[start:e])
            del self.buf[:e + 2]
            return status, data

    def command(self, text, what=None):
        tag = self.tag()
        self.send("%s %s" % (tag, text))
        status, data = self.complete(tag)
        if status.split(b" ", 2)[1:2] != [b"OK"]:
            raise ImapFailure("%s: %r" % (what or text.split()[0],
                                          status[:300]))
        return data

    def close(self):
        """LOGOUT; a failure here is reported, not raised (it may follow
        another failure)."""
        try:
            self.sock.settimeout(10)
            self.command("LOGOUT")
        except (OSError, ImapFailure) as e:
            problem("LOGOUT: %s" % e)
        finally:
            self.sock.close()


def raw_login(port):
    r = Raw(port)
    r.command('LOGIN "%s" "%s"' % (USER, PASSWORD), "LOGIN")
    return r


EXISTS = re.compile(rb"^\* (\d+) EXISTS", re.M)
SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
UID = re.compile(rb"\bUID \d+")


def raw_select(r, n, pid):
    c0 = cpu_ms(pid)
    t0 = time.monotonic()
    data = r.command("SELECT INBOX")
    dt = (time.monotonic() - t0) * 1000.0
    cpu = cpu_delta(c0, cpu_ms(pid))
    m = EXISTS.search(data)
    if not m or int(m.group(1)) != n:
        raise ImapFailure("SELECT INBOX: EXISTS %s, expected %d" %
                          (m.group(1).decode() if m else "missing", n))
    return dt, cpu


def raw_fetch(r, n, pid, total_size=None):
    c0 = cpu_ms(pid)
    t0 = time.monotonic()
    data = r.command("UID FETCH 1:* " + FETCH_ITEMS, "UID FETCH")
    dt = (time.monotonic() - t0) * 1000.0
    cpu = cpu_delta(c0, cpu_ms(pid))
    got = data.count(b" FETCH (")
    if got != n:
        raise ImapFailure("UID FETCH 1:*: %d FETCH responses, expected %d" %
                          (got, n))
    if total_size is not None:
        sizes = [int(s) for s in SIZE.findall(data)]
        uids = len(UID.findall(data))
        if len(sizes) != n or sum(sizes) != total_size:
            problem("UID FETCH: %d RFC822.SIZE items summing to %d, expected "
                    "%d summing to %d (the ,W= sizes)" %
                    (len(sizes), sum(sizes), n, total_size))
        if uids != n:
            problem("UID FETCH: %d responses carry a UID, expected %d" %
                    (uids, n))
        if data.count(b"ENVELOPE (") != n:
            problem("UID FETCH: %d ENVELOPEs, expected %d" %
                    (data.count(b"ENVELOPE ("), n))
    return dt, cpu


# ---------------------------------------------------------------- measures

def raw_session(port, n):
    """The same with the raw client: what the client's own parsing costs
    shows in the difference."""
    r = raw_login(port)
    try:
        m = EXISTS.search(r.command("SELECT INBOX"))
        if not m or int(m.group(1)) != n:
            raise ImapFailure("SELECT INBOX: EXISTS %s, expected %d" %
                              (m.group(1).decode() if m else "missing", n))
        r.command("LOGOUT")
    finally:
        r.sock.close()


def session_worker(session, port, n_msgs, count, start, q):
    start.wait(30)
    c0 = time.process_time()
    t0 = time.monotonic()
    ok, err = 0, ""
    for _ in range(count):
        try:
            session(port, n_msgs)
            ok += 1
        except (OSError, imaplib.IMAP4.error, ImapFailure, ValueError) as e:
            err = repr(e)
            break
    q.put((t0, time.monotonic(), ok, err, time.process_time() - c0))


def timed_sessions(act, n_msgs, total, clients, session=imap_session):
    """total LOGIN+SELECT+LOGOUT sessions over clients forked workers
    running session (imaplib or raw).  Returns {rate, cpu_ms (handler,
    per session), client_ms (the client's, per session), ok}."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    start = ctx.Event()
    per = [total // clients + (1 if i < total % clients else 0)
           for i in range(clients)]
    procs = [ctx.Process(target=session_worker,
                         args=(session, act.port, n_msgs, k, start, q))
             for k in per]
    for p in procs:
        p.start()
    quiesce(act)
    c0 = bench.cpu_ticks_of_children(act)
    start.set()
    res = []
    try:
        for _ in procs:
            res.append(q.get(timeout=IO_TIMEOUT))
    except Exception:  # noqa: BLE001  (queue.Empty: a worker hung)
        problem("a session worker did not finish within %d s" % IO_TIMEOUT)
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    quiesce(act)
    c1 = bench.cpu_ticks_of_children(act)
    out = {"ok": sum(r[2] for r in res)}
    for r in res:
        if r[3]:
            problem("LOGIN+SELECT+LOGOUT at %d client(s): %s\n%s" %
                    (clients, r[3], act.log_tail(5)))
    if out["ok"]:
        out["rate"] = out["ok"] / (max(r[1] for r in res) -
                                   min(r[0] for r in res))
        out["client_ms"] = sum(r[4] for r in res) * 1000.0 / out["ok"]
        if c0 is not None and c1 is not None:
            out["cpu_ms"] = (c1 - c0) * 1000.0 / CLK_TCK / out["ok"]
    return out


def floor_rate(build, top, conns):
    """connect + greeting + close per second through the same activator
    with tests/bench/pop3_null (a responder that does nothing), 1 client:
    what process-per-connection allows on this machine right now.  None
    when pop3_null is not built."""
    null = os.path.join(build, "tests", "pop3_null")
    if not os.access(null, os.X_OK):
        return None
    act = bench.Activator([null], os.path.join(top, "null.log"))
    try:
        act.wait_ready()
        rates = []
        for _ in range(RUNS):
            t0 = time.monotonic()
            for _ in range(conns):
                with socket.create_connection(("127.0.0.1", act.port),
                                              timeout=30) as s:
                    if not s.recv(512).startswith(b"+OK"):
                        raise bench.BenchError("pop3_null did not greet")
            rates.append(conns / (time.monotonic() - t0))
        say("floor: activator + pop3_null, connect+greeting+close, 1 client: "
            "%s conn/s" % spread(rates))
        return median(rates)
    finally:
        act.stop()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, spec="%.1f"):
    values = [v for v in values if v is not None]
    return ", ".join(spec % v for v in values) if values else "-"


def sessions(act, n_msgs, n_sess, runs, label, r, raw=False):
    imap_session(act.port, n_msgs)		# warm-up
    for clients in ((1,) if raw else (1, 4)):
        session = raw_session if raw else imap_session
        outs = [timed_sessions(act, n_msgs, n_sess, clients, session)
                for _ in range(runs)]
        key = "sess_%s%s_%d" % (label, "/raw client" if raw else "",
                                clients)
        r[key] = {k: median([o.get(k) for o in outs])
                  for k in ("rate", "cpu_ms", "client_ms")}
        say("LOGIN+SELECT+LOGOUT, %s hash, %s, %d client(s), %d sessions x "
            "%d runs: %s sessions/s (runs: %s); handler CPU %s ms/session; "
            "client CPU %s ms/session" % (
                label, "raw client" if raw else "imaplib", clients, n_sess,
                runs, fmt(r[key]["rate"], "%.1f"),
                spread([o.get("rate") for o in outs]),
                fmt(r[key]["cpu_ms"], "%.2f"),
                fmt(r[key]["client_ms"], "%.2f")))


def run_select_fetch(act, n, total_size, runs, label, maildir=None,
                     drop_names=()):
    """runs x (imaplib session timing SELECT and UID FETCH) and runs x (the
    same with the raw client and the handler's CPU), each in a fresh
    handler, each preceded by deleting drop_names from the INBOX.
    Returns medians in ms: sel, fetch, raw_sel, raw_fetch, cpu_sel,
    cpu_fetch."""
    out = {k: [] for k in ("sel", "fetch", "raw_sel", "raw_fetch",
                           "cpu_sel", "cpu_fetch")}
    for i in range(runs):
        quiesce(act)
        drop(maildir, drop_names)
        m = imaplib_login(act.port)
        out["sel"].append(imaplib_select(m, n))
        out["fetch"].append(imaplib_fetch(m, n))
        m.logout()

        quiesce(act)
        drop(maildir, drop_names)
        raw = raw_login(act.port)
        pid = session_pid(act)
        dt, cpu = raw_select(raw, n, pid)
        out["raw_sel"].append(dt)
        out["cpu_sel"].append(cpu)
        dt, cpu = raw_fetch(raw, n, pid, total_size if i == 0 else None)
        out["raw_fetch"].append(dt)
        out["cpu_fetch"].append(cpu)
        raw.close()
    say("%s: SELECT %s ms (raw %s ms, handler CPU %s ms); UID FETCH 1:* %s "
        "%s ms (raw %s ms, handler CPU %s ms)" % (
            label, spread(out["sel"]), spread(out["raw_sel"]),
            spread(out["cpu_sel"]), FETCH_ITEMS, spread(out["fetch"]),
            spread(out["raw_fetch"]), spread(out["cpu_fetch"])))
    return {k: median(v) for k, v in out.items()}


def run_search(act, n, expect, runs):
    times, cpus = [], []
    for _ in range(runs):
        quiesce(act)
        m = imaplib_login(act.port)
        pid = session_pid(act)
        imaplib_select(m, n, readonly=True)
        c0 = cpu_ms(pid)
        t0 = time.monotonic()
        typ, data = m.search(None, "TEXT", '"%s"' % NEEDLE)
        times.append((time.monotonic() - t0) * 1000.0)
        cpus.append(cpu_delta(c0, cpu_ms(pid)))
        m.logout()
        if typ != "OK":
            raise ImapFailure("SEARCH TEXT: %s %r" % (typ, data))
        hits = len(data[0].split())
        if hits != expect:
            problem("SEARCH TEXT \"%s\" found %d messages, expected %d" %
                    (NEEDLE, hits, expect))
    say("SEARCH TEXT \"%s\" on %d messages (%d hits expected): %s ms "
        "(handler CPU %s ms)" % (NEEDLE, n, expect, spread(times),
                                 spread(cpus)))
    return median(times), median(cpus)


def idle_memory(act, n):
    """smaps of a handler logged in, INBOX selected, in IDLE; then the
    same after it has fetched every ENVELOPE."""
    quiesce(act)
    raw = raw_login(act.port)
    pid = session_pid(act)
    out = {"pid": pid}
    try:
        raw_select(raw, n, pid)
        for key in ("idle", "idle_fetched"):
            if key == "idle_fetched":
                raw_fetch(raw, n, pid)
            tag = raw.tag()
            raw.send("%s IDLE" % tag)
            cont = raw.line()
            if not cont.startswith(b"+"):
                raise ImapFailure("IDLE: %r" % cont[:200])
            time.sleep(IDLE_SETTLE)
            if not os.path.exists("/proc/%d" % pid):
                raise ImapFailure("the handler (pid %d) exited in IDLE" % pid)
            out[key] = bench.smaps(pid)
            raw.send("DONE")
            status, _ = raw.complete(tag)
            if status.split(b" ", 2)[1:2] != [b"OK"]:
                raise ImapFailure("IDLE ... DONE: %r" % status[:200])
    finally:
        raw.close()
    for key, what in (("idle", "after SELECT"),
                      ("idle_fetched", "after UID FETCH 1:*")):
        mem = out.get(key, {})
        say("handler pid %d in IDLE %s on %d messages: Private_Dirty %s KiB, "
            "Rss %s KiB, Pss %s KiB" % (pid, what, n,
                                        mem.get("Private_Dirty", "-"),
                                        mem.get("Rss", "-"),
                                        mem.get("Pss", "-")))
    return out


def run(build, top, scale):
    tools = {
        "handler": bench.need_file(os.path.join(build, "imap-handler"),
                                   "imap-handler"),
        "ctl": bench.need_file(os.path.join(build, "sockmailctl"),
                               "sockmailctl"),
    }
    if not shutil.which("systemd-socket-activate"):
        raise bench.BenchError("systemd-socket-activate not found (package "
                               "systemd)")
    with open(tools["handler"], "rb") as f:
        if b"__asan_init" in f.read():
            say("WARNING: %s is a sanitizer build: its figures say nothing "
                "about the real handler" % tools["handler"])
    n = max(NEEDLE_EVERY, int(N_MSGS * scale))
    n_sess = max(20, int(SESSIONS * scale))

    conf, mail_dir = bench.write_config(top)
    state_dir = os.path.join(top, "state")
    bench.run_ctl(tools["ctl"], conf, ["domain", "add", "example.org"])
    bench.run_ctl(tools["ctl"], conf, ["user", "add", USER,
                                       "--password-stdin"],
                  stdin=PASSWORD + "\n")
    maildir = os.path.join(mail_dir, "example.org", USER.split("@")[0])
    if not os.path.isdir(os.path.join(maildir, "cur")):
        raise bench.BenchError("sockmailctl made no Maildir at %s" % maildir)
    t0 = time.monotonic()
    total_size, needles = populate(maildir, n)
    os.sync()
    say("INBOX: %d messages (%.1f MB with CRLF, %d with \"%s\") written in "
        "%.1f s" % (n, total_size / 1e6, needles, NEEDLE,
                    time.monotonic() - t0))

    r = {"n": n}
    act = bench.Activator([tools["handler"], "-c", conf],
                          os.path.join(top, "imap-handler.log"))
    try:
        welcome = wait_ready(act)
        say("imap-handler: systemd-socket-activate --inetd --accept on "
            "127.0.0.1:%d (pid %d), greeting %s" % (
                act.port, act.proc.pid,
                welcome.decode("utf-8", "replace")[:100]))
        # The first SELECT ever gives every message its UID; the first
        # FETCH fills the cache.  Then one more, so that all is warm.
        m = imaplib_login(act.port)
        r["first_select"] = imaplib_select(m, n)
        r["first_fetch"] = imaplib_fetch(m, n)
        m.logout()
        say("first SELECT ever (UIDs assigned): %.1f ms; first UID FETCH "
            "(cache filled): %.1f ms" % (r["first_select"],
                                         r["first_fetch"]))
        run_select_fetch(act, n, total_size, 1, "warm-up", maildir)

        r["floor"] = floor_rate(build, top, n_sess)
        sessions(act, n, max(10, n_sess // 2), YESCRYPT_RUNS, "yescrypt", r)
        r["have_sha"] = bench.pop3_set_sha512(state_dir, USER, PASSWORD)
        if r["have_sha"]:
            sessions(act, n, n_sess, RUNS, "sha512", r)
            sessions(act, n, n_sess, RUNS, "sha512", r, raw=True)

        r["warm"] = run_select_fetch(act, n, total_size, RUNS, "warm",
                                     maildir)
        r["search"] = run_search(act, n, needles, RUNS)
        r["nocache"] = run_select_fetch(
            act, n, total_size, RUNS, "%s deleted" % CACHE_NAME,
            maildir, (CACHE_NAME,))
        r["cold"] = run_select_fetch(
            act, n, total_size, RUNS, "%s and %s deleted" % (
                DB_NAME, CACHE_NAME),
            maildir, (DB_NAME, CACHE_NAME))
        run_select_fetch(act, n, None, 1, "re-warm", maildir)
        r["idle"] = idle_memory(act, n)
        quiesce(act)
    except (ImapFailure, imaplib.IMAP4.error, OSError, ValueError) as e:
        raise bench.BenchError("%s: %s\n  imap-handler log (last lines):\n%s"
                               % (type(e).__name__, e, act.log_tail(15)))
    finally:
        act.stop()
    return r


# ---------------------------------------------------------------- report

def print_table(r):
    rows = []
    n = r["n"]
    hashes = [("sha512", "SHA-512-crypt")] if r.get("have_sha") else []
    hashes.append(("yescrypt", "yescrypt"))
    for k, name in hashes:
        for clients, ref in ((1, REF_SESS_1), (4, REF_SESS_4)):
            o = r.get("sess_%s_%d" % (k, clients)) or {}
            rate, aim = o.get("rate"), ref * AIM_FACTOR
            rows.append(("LOGIN+SELECT+LOGOUT, %d client(s), %s" %
                         (clients, name), fmt(rate, "%.1f sess/s"),
                         "%.0f sess/s" % ref, ">= %.0f (1.5x)" % aim,
                         verdict(None if rate is None else rate >= aim)))
        o = r.get("sess_%s_1" % k) or {}
        rows.append(("  handler CPU per session, %s" % name,
                     fmt(o.get("cpu_ms"), "%.1f ms"),
                     "%.1f ms" % REF_SESS_CPU_MS, "-", "-"))
        rows.append(("  imaplib (client) CPU per session, %s" % name,
                     fmt(o.get("client_ms"), "%.1f ms"), "-", "-", "-"))
        o = r.get("sess_%s/raw client_1" % k)
        if o:
            rows.append(("  1 client, %s, raw socket client" % name,
                         "%s sess/s" % fmt(o.get("rate"), "%.1f"), "-", "-",
                         "-"))

    if r.get("floor") is not None:
        rows.append(("floor: activator + pop3_null, connect+greet+close",
                     fmt(r["floor"], "%.0f conn/s"), "-", "-", "-"))

    def ms_row(label, v, ref, aim):
        rows.append((label, fmt(v, "%.1f ms"),
                     "-" if ref is None else "%.0f ms" % ref,
                     "-" if aim is None else "<= %.0f ms" % aim,
                     verdict(None if aim is None or v is None else v <= aim)))

    def raw_row(label, raw, cpu):
        rows.append(("  " + label + ": raw client / handler CPU",
                     "%s / %s ms" % (fmt(raw, "%.1f"), fmt(cpu, "%.1f")),
                     "-", "-", "-"))

    w, nc, c = r.get("warm", {}), r.get("nocache", {}), r.get("cold", {})
    tag = "%s msgs" % format(n, ",")
    ms_row("SELECT INBOX, %s, warm" % tag, w.get("sel"), None, AIM_SELECT_MS)
    raw_row("SELECT warm", w.get("raw_sel"), w.get("cpu_sel"))
    ms_row("SELECT, imap+cache tdbs deleted", c.get("sel"),
           REF_SELECT_COLD_MS, AIM_SELECT_MS)
    raw_row("SELECT tdbs deleted", c.get("raw_sel"), c.get("cpu_sel"))
    ms_row("SELECT, cache tdb deleted", nc.get("sel"), None, AIM_SELECT_MS)
    ms_row("UID FETCH 1:* %s, warm" % FETCH_ITEMS, w.get("fetch"),
           REF_FETCH_WARM_MS, AIM_FETCH_MS)
    raw_row("FETCH warm", w.get("raw_fetch"), w.get("cpu_fetch"))
    ms_row("UID FETCH, cache tdb deleted", nc.get("fetch"),
           REF_FETCH_COLD_MS, None)
    raw_row("FETCH cache deleted", nc.get("raw_fetch"), nc.get("cpu_fetch"))
    ms_row("UID FETCH, after SELECT with tdbs deleted", c.get("fetch"),
           REF_FETCH_COLD_MS, None)
    raw_row("FETCH tdbs deleted", c.get("raw_fetch"), c.get("cpu_fetch"))
    s, s_cpu = r.get("search", (None, None))
    ms_row("SEARCH TEXT \"%s\", %s" % (NEEDLE, tag), s, REF_SEARCH_MS,
           AIM_SEARCH_MS)
    rows.append(("  SEARCH TEXT: handler CPU", fmt(s_cpu, "%.1f ms"), "-",
                 "-", "-"))
    idle = (r.get("idle") or {}).get("idle") or {}
    pd = idle.get("Private_Dirty")
    rows.append(("IDLE after SELECT, %s: Private_Dirty" % tag,
                 fmt(pd, "%d KiB"), "%d KiB heap+stack" % REF_IDLE_KIB,
                 "<= %d KiB" % AIM_IDLE_KIB,
                 verdict(None if pd is None else pd <= AIM_IDLE_KIB)))
    rows.append(("  IDLE after SELECT: Rss / Pss",
                 "%s / %s KiB" % (fmt(idle.get("Rss"), "%d"),
                                  fmt(idle.get("Pss"), "%d")),
                 "%s KiB RSS" % format(REF_IDLE_RSS_KIB, ","), "-", "-"))
    idle2 = (r.get("idle") or {}).get("idle_fetched") or {}
    rows.append(("  IDLE after UID FETCH 1:*: Private_Dirty",
                 fmt(idle2.get("Private_Dirty"), "%d KiB"), "-", "-", "-"))

    head = ("measure", "sockmail (this run)", "Dovecot 2.3 (*)", "aim",
            "met")
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(5)]
    line = "  ".join("%-*s" % (wd, h) for wd, h in zip(widths, head))
    say(line.rstrip())
    say("-" * len(line))
    for row in rows:
        say("  ".join("%-*s" % (wd, x) for wd, x in zip(widths, row)).rstrip())
    say("(*) " + REF_LABEL + ".")
    say("    Medians of %d runs (yescrypt sessions: %d), each in a fresh "
        "handler process; ms figures are wall time with imaplib as the "
        "client," % (RUNS, YESCRYPT_RUNS))
    say("    as the reference was measured; \"raw client\" waits for the "
        "tagged reply without parsing.  Dovecot's cold figures had its whole "
        "index deleted;")
    say("    sockmail's \"tdbs deleted\" rows are the like-for-like ones "
        "(UIDs reassigned).  The SHA-512-crypt rows are the closer "
        "comparison with the")
    say("    reference's plain-text passwords; yescrypt (the default) costs "
        "tens of ms of CPU per login by design.")
    say("    The floor is what process-per-connection under "
        "systemd-socket-activate allows on this machine now, with a "
        "responder that does nothing.")


# ---------------------------------------------------------------- main

def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        scale = float(os.environ.get("BENCH_SCALE", "1"))
        if not 0 < scale <= 100:
            raise ValueError
    except ValueError:
        say("bench_imap: BENCH_SCALE must be a number in (0, 100]")
        return 2
    build = bench.find_build()
    top = tempfile.mkdtemp(prefix="sockmail-bench-imap.",
                           dir=bench.pick_base_dir(build))
    fstype, dev, mnt = bench.mount_of(top)
    say("sockmail bench (imap): temp dir %s" % top)
    say("file system: %s on %s (mounted at %s)%s" %
        (fstype, dev, mnt, bench.journal_note(top, fstype)))
    say("machine: %d CPUs, load average %.2f at the start" %
        (os.cpu_count() or 0, os.getloadavg()[0]))
    t0 = time.monotonic()
    try:
        r = run(build, top, scale)
    except bench.BenchError as e:
        say("bench_imap: ERROR: %s" % e)
        return 1
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            say("kept %s (BENCH_KEEP=1)" % top)
        else:
            shutil.rmtree(top, ignore_errors=True)
    say()
    print_table(r)
    say("bench_imap took %.0f s; load average %.2f at the end (other work "
        "on the machine skews every figure)" % (time.monotonic() - t0,
                                                os.getloadavg()[0]))
    if bench.errors:
        say("bench_imap: %d error(s):" % len(bench.errors))
        for e in bench.errors:
            say("  - " + e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
