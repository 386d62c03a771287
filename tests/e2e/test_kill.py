"""kill -9 sweeps (issue 8, part 3): every write path keeps its promise
when the process dies at any instant.

Each flow -- inbound SMTP delivery to two local recipients, a submission
that delivers locally and enqueues, POP3 UPDATE, IMAP APPEND, COPY, MOVE,
EXPUNGE and STORE, the queue runner delivering a batch, and sockmailctl
changing users.tdb under the handlers' feet -- is first run
once under strace to record the system calls it makes that change
something (writes, fsyncs, links, renames, unlinks, opens, file locks,
...).  Then it is run again and again from the same starting state (the
Maildirs, state and spool are restored from a snapshot each time), each
time with strace's syscall tampering killing the handler *before* the N-th
call of one of those system calls:

    strace -e inject=linkat:signal=SIGKILL:when=2 smtp-handler ...

so the kill points are deterministic and every point of the critical part
of the flow is visited (the default run samples them evenly; SOCKMAIL_LONG=1
visits each one, from the start of the process, and adds kills after a
random delay in [0, t] with t the flow's measured duration).  Without
strace (or without ptrace) only the random-delay kills run.

The handler is started as systemd's Accept=yes socket would start it: the
accepted TCP socket as stdin and stdout (a tiny inetd in this file, so the
handler's pid is known and strace can sit in front of it).

Invariants checked after each run (page cache survives kill -9, so
"durable" here means "in its final place"):
  * a client told 250 / +OK / OK finds the data in place, whole;
  * a client told nothing finds the old or the new state, per message, and
    nothing half-written: every file in new/ and cur/ is a complete copy,
    tmp/ is empty, every queued envelope has its whole message file;
  * the databases open and are consistent: `sockmailctl queue list` works,
    tdbtool finds queue.tdb intact, a fresh IMAP SELECT gives every file a
    distinct UID, messages keep their UIDs and UIDVALIDITY stays;
  * the next session works (POP3 lock released, IMAP logs in).
Windows the protocols cannot close are counted and reported, not failed:
a message delivered or queued whose 250 never left (the sender retries: a
duplicate), a multi-message COPY cut half way, a MOVE leaving the message
in both folders, a message file linked into the queue without its envelope
(invisible; the runner removes it after an hour), libtdb's own window
between growing a file for its recovery area and writing that area
(tdbtool check reports the zeroed space as dead; every record stays
reachable).

The queue runner: N messages queued for two remote domains (each message
has recipients answered 250, 550 and, during the sweep, 451); the runner is
killed (strace points, or SIGKILL to its process group after a random
delay), then run again at a later SOCKMAIL_TEST_NOW until the queue is
empty.  Every recipient must reach the sink exactly once, except where the
sink had already said 250 in a run that was killed (the known window:
counted and reported); every 550 must bounce to the sender exactly once
(the bounce is queued in the same transaction that notes it sent, and the
runner's local delivery of it is named after its queue id, so a rerun
finds the copy a killed run made).

A summary table is printed at the end (stderr).  Run from the repo root:
    BUILD=build /usr/bin/python3 -m unittest discover -s tests/e2e -p 'test_kill.py' -v
Environment:
  SOCKMAIL_LONG=1         every kill point of each process, 60 random-delay
                          kills per flow, runner episodes with two kills
  SOCKMAIL_KILL_SEED=N    the random delays (printed with the summary)
  SOCKMAIL_KILL_TMPDIR    where the servers live (default /dev/shm)
  SOCKMAIL_KILL_DEBUG=1   print each flow's kill points
"""

import base64
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import harness
from dnsmasq import DnsmasqPerClass
from harness import (PASS_ENV, TIMEOUT, WAIT, IMAPConn, Literal,
                     ProtocolError, SMTPClient, SockmailTestCase, crlf_to_lf,
                     imap_folder_dir, imap_quote, maildir_check_file,
                     maildir_put, program, split_delivered)
from sink import Sink

LONG = os.environ.get("SOCKMAIL_LONG", "") not in ("", "0")
SEED = int(os.environ.get("SOCKMAIL_KILL_SEED", "0")) or int(time.time())
STRACE = shutil.which("strace")
TDBTOOL = shutil.which("tdbtool")
# Where the servers live: a tmpfs when there is one.  Each run restores the
# Maildirs from a snapshot, and on a disk that costs a quarter of a second
# per run in directory operations alone; kill -9 leaves the page cache
# alone, so a tmpfs proves the same (its fsyncs are no-ops, but they are
# still kill points).
FAST_TMP = os.environ.get("SOCKMAIL_KILL_TMPDIR") or (
    "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)
    else None)
PASSWORD = "secret-Passw0rd"  # what harness.add_user gives everyone
ALICE, BOB = "alice@example.org", "bob@example.org"

# The system calls a kill point may precede: everything that changes a
# file, a directory, a lock or what the client sees.
KILL_SYSCALLS = ("openat", "creat", "write", "writev", "pwrite64", "pwritev",
                 "sendto", "sendmsg", "fsync", "fdatasync", "msync",
                 "rename", "renameat", "renameat2", "link", "linkat",
                 "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir",
                 "ftruncate", "fallocate", "fcntl", "flock", "close",
                 "utimensat", "fchmod", "fchown")

# Points per flow in the default run (evenly spread over the critical
# part); SOCKMAIL_LONG=1 takes every point of the whole process.  Fewer
# with the sanitizers (make check SANITIZE=1): an ASan process under
# strace starts four times slower.
SANITIZED = "san" in os.path.basename(harness.BUILD)
DEFAULT_POINTS = 6 if SANITIZED else 12
DEFAULT_DELAY_KILLS = 1 if SANITIZED else 2
LONG_DELAY_KILLS = 60

_summary = []  # one dict per sweep, printed by tearDownModule
_strace_ok = None


def strace_usable():
    """strace is installed and may ptrace here (containers may forbid it)."""
    global _strace_ok
    if _strace_ok is None:
        _strace_ok = False
        if STRACE:
            p = subprocess.run([STRACE, "-qq", "-o", "/dev/null", "true"],
                               capture_output=True, timeout=WAIT)
            _strace_ok = p.returncode == 0
    return _strace_ok


def tearDownModule():
    if not _summary:
        return
    out = ["", "kill -9 sweep summary (seed %d%s):" % (SEED, ", SOCKMAIL_LONG" if LONG else ""),
           "%-18s %6s %6s %6s %8s  %s" % ("flow", "runs", "killed", "viol.",
                                           "windows", "window details")]
    for s in _summary:
        details = ", ".join("%s=%d" % kv for kv in sorted(s["windows"].items()) if kv[1])
        out.append("%-18s %6d %6d %6d %8d  %s" % (
            s["flow"], s["runs"], s["killed"], s["violations"],
            sum(s["windows"].values()), details or "-"))
    sys.stderr.write("\n".join(out) + "\n")


# --------------------------------------------------------------- plumbing

def parse_trace(path):
    """[(pid, syscall, nth, line)] of a strace -f log, nth counting that
    syscall per process from 1 (as strace's when= does)."""
    out, counts = [], {}
    with open(path, "r", errors="replace") as f:
        for line in f:
            m = re.match(r"^(\d+)\s+([a-z_0-9]+)\(", line)
            if not m:
                continue  # "<... resumed>", signals, exits
            pid, name = int(m.group(1)), m.group(2)
            key = (pid, name)
            counts[key] = counts.get(key, 0) + 1
            out.append((pid, name, counts[key], line.rstrip("\n")))
    return out


def strace_argv(trace=None, kill=None, strsize=48):
    argv = [STRACE, "-f", "-qq", "-s", str(strsize), "-o", trace or "/dev/null",
            "-e", "trace=" + ",".join(KILL_SYSCALLS)]
    if kill is not None:
        argv += ["-e", "inject=%s:signal=SIGKILL:when=%d" % (kill[1], kill[2])]
    return argv


def handler_env(extra=None, traced=False):
    """What the handler sees (PASS_ENV, as under systemd-socket-activate).
    Under strace, LeakSanitizer (make check SANITIZE=1) cannot work: it
    would fail every exit, so it is turned off there."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for v in PASS_ENV:
        if v in os.environ:
            env[v] = os.environ[v]
    if traced:
        env["ASAN_OPTIONS"] = ":".join(
            o for o in (env.get("ASAN_OPTIONS"), "detect_leaks=0") if o)
    env.update(extra or {})
    return env


class Inetd:
    """What an Accept=yes socket unit does, one connection at a time: the
    client connects to port, spawn() accepts and starts the handler with
    the socket as its stdin and stdout -- under strace when a kill point
    or a trace is asked for."""

    def __init__(self, srv, handler, args=()):
        self.srv, self.handler, self.args = srv, handler, list(args)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(TIMEOUT)
        self.port = self.lsock.getsockname()[1]

    def spawn(self, kill=None, trace=None):
        conn, _ = self.lsock.accept()
        argv = [program(self.handler), "-c", self.srv.conf_path] + self.args
        traced = (kill is not None and kill[0] == "syscall") or bool(trace)
        if traced:
            argv = strace_argv(trace, kill if kill and kill[0] == "syscall"
                               else None, 4096 if trace else 48) + argv
        errf = open(self.srv.stderr_path, "ab")
        try:
            proc = subprocess.Popen(argv, stdin=conn, stdout=conn, stderr=errf,
                                    cwd=self.srv.dir, env=handler_env(traced=traced),
                                    start_new_session=True)
        finally:
            errf.close()
            conn.close()
        return proc

    def close(self):
        self.lsock.close()


class DelayKill:
    """SIGKILL to a process (or its group) after delay seconds, from arm()."""

    def __init__(self, delay, group=False):
        self.delay, self.group = delay, group
        self.timer = None
        self.pid = None

    def _fire(self):
        try:
            if self.group:
                os.killpg(self.pid, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def arm(self, pid):
        self.pid = pid
        self.timer = threading.Timer(self.delay, self._fire)
        self.timer.start()

    def cancel(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()


def wait_proc(proc, what):
    try:
        return proc.wait(timeout=WAIT * 3)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("%s still running %ds after its client finished"
                             % (what, WAIT * 3))


def snapshot(srv, dest):
    for d in (srv.mail_dir, srv.state_dir, srv.spool_dir):
        shutil.copytree(d, os.path.join(dest, os.path.basename(d)),
                        symlinks=True)


def restore(srv, src):
    for d in (srv.mail_dir, srv.state_dir, srv.spool_dir):
        shutil.rmtree(d)
        shutil.copytree(os.path.join(src, os.path.basename(d)), d,
                        symlinks=True)


def listdir(path):
    try:
        return sorted(n for n in os.listdir(path) if not n.startswith("."))
    except FileNotFoundError:
        return []


def read(path):
    with open(path, "rb") as f:
        return f.read()


def folder_files(folder_dir):
    """{"new": {name: content}, "cur": {...}, "tmp": [names]}."""
    out = {"tmp": listdir(os.path.join(folder_dir, "tmp"))}
    for sub in ("new", "cur"):
        d = os.path.join(folder_dir, sub)
        out[sub] = {n: read(os.path.join(d, n)) for n in listdir(d)}
    return out


def base_name(name):
    return name.split(":", 1)[0]


def info_flags(name):
    return name.split(":2,", 1)[1] if ":2," in name else ""


def plain(user):
    return base64.b64encode(("\0%s\0%s" % (user, PASSWORD)).encode()).decode()


def tdb_check(path, bad, windows):
    """tdbtool's integrity check of path (when both exist): a problem goes
    into bad, except libtdb's own window, counted in windows: killed
    between growing the file for its recovery area and writing that area,
    tdb_check finds the zeroed space unaccounted for ("Dead space",
    "Expected a recovery area"); every record stays reachable, the space
    is lost.  Run it after a read-write open of the file (a handler's, or
    sockmailctl's): tdbtool's own read-write open would recover an
    interrupted transaction and hide what a read-only reader meets."""
    if TDBTOOL is None or not os.path.exists(path):
        return
    p = subprocess.run([TDBTOOL, path, "check"], capture_output=True,
                       timeout=WAIT)
    text = (p.stdout + p.stderr).decode("utf-8", "replace")
    if "integrity is OK" in text:
        return
    if "Dead space" in text and "Expected a recovery area" in text:
        windows["tdb-dead-space"] = windows.get("tdb-dead-space", 0) + 1
    else:
        bad.append("%s: %s" % (os.path.basename(path), text.strip()[:500]))


# -------------------------------------------------------------- base case

# A process killed with SIGKILL reports nothing to ASan or UBSan, so the
# sanitizer build (CI's second pass) gains nothing from these sweeps but
# minutes; the plain build runs them.
@unittest.skipIf(SANITIZED, "kill -9 sweeps run in the plain build only")
class KillSweep(SockmailTestCase):
    """A server (not listening: flows use an Inetd) and the sweep driver."""

    START = False
    CONF = {"max_bad_commands": 1000}

    def setUp(self):
        old = tempfile.tempdir
        tempfile.tempdir = FAST_TMP or old
        try:
            super().setUp()
            self.snap = tempfile.mkdtemp(prefix="sockmail-kill-snap-")
        finally:
            tempfile.tempdir = old
        self.addCleanup(shutil.rmtree, self.snap, True)
        self.rng = random.Random("%d-%s" % (SEED, self.id()))
        self.inetds = {}

    def tearDown(self):
        for i in self.inetds.values():
            i.close()
        super().tearDown()

    def populate(self):
        """The usual users, with a SHA-256 crypt hash instead of yescrypt:
        a sweep logs in twice per run, and yescrypt's 0.2 s each (by
        design) would be most of the time.  Any crypt(3) hash is valid in
        users.tdb.  Only alice and bob: each user add costs a yescrypt."""
        self.srv.add_domain("example.org")
        for u in ("alice", "bob"):
            self.srv.add_user(u + "@example.org")
        openssl = shutil.which("openssl")
        if openssl is None or TDBTOOL is None:
            return
        h = subprocess.run([openssl, "passwd", "-5", "-salt", "killsweep", PASSWORD],
                           capture_output=True, check=True).stdout.decode().strip()
        db = os.path.join(self.srv.state_dir, "users.tdb")
        for u in ("alice", "bob"):
            subprocess.run([TDBTOOL, db, "store", "U:%s@example.org" % u, h],
                           capture_output=True, check=True)

    def inetd(self, handler, args=()):
        key = (handler, tuple(args))
        if key not in self.inetds:
            self.inetds[key] = Inetd(self.srv, handler, args)
        return self.inetds[key]

    # -- choosing kill points
    def calibrate(self, run_once, marker):
        """Run the flow once under strace (no kill): the kill points, as
        (syscall, nth) of the first process, from the line after the first
        one matching marker (all of them with SOCKMAIL_LONG), spread
        evenly over DEFAULT_POINTS in the default run."""
        trace = os.path.join(self.snap, "calibrate.trace")
        restore(self.srv, self.snap)
        run_once(("trace", trace))
        entries = parse_trace(trace)
        self.assertTrue(entries, "strace recorded nothing")
        main = entries[0][0]
        entries = [e for e in entries if e[0] == main]
        start = 0
        if not LONG:
            for i, e in enumerate(entries):
                if re.search(marker, e[3]):
                    start = i + 1
                    break
            else:
                self.fail("marker %r not in the trace:\n%s" % (
                    marker, "\n".join(e[3][:200] for e in entries)))
        points = [("syscall", e[1], e[2]) for e in entries[start:]]
        if os.environ.get("SOCKMAIL_KILL_DEBUG"):
            sys.stderr.write("%s: %d points from %d\n%s\n" % (
                self.id(), len(points), start,
                "\n".join(e[3][:150] for e in entries[start:])))
        if not LONG and len(points) > DEFAULT_POINTS:
            step = len(points) / DEFAULT_POINTS
            points = [points[int(i * step)] for i in range(DEFAULT_POINTS)]
            points.append(("syscall",) + entries[-1][1:3])  # the very last
        return points

    def measure(self, run_once):
        """How long the command that matters takes (from arm() to the end
        of the dialog), without strace."""
        restore(self.srv, self.snap)
        o = run_once(None)
        self.assertIn("armed_for", o, "the measuring run failed: %r" % o)
        return o["armed_for"]

    def sweep(self, flow, run_once, check, marker):
        """run_once(plan) -> outcome dict; check(outcome) -> (violations,
        windows).  Runs the flow from the snapshot once per kill plan
        (strace points, then random delays); fails on any violation."""
        plans = []
        if strace_usable():
            plans += self.calibrate(run_once, marker)
        dur = self.measure(run_once)
        n_delay = LONG_DELAY_KILLS if LONG else DEFAULT_DELAY_KILLS
        if not strace_usable():
            n_delay = max(n_delay, DEFAULT_POINTS)
        plans += [("delay", self.rng.uniform(0, dur * 1.2)) for _ in range(n_delay)]
        stats = {"flow": flow, "runs": 0, "killed": 0, "violations": 0,
                 "windows": {}}
        violations = []
        for plan in plans:
            restore(self.srv, self.snap)
            outcome = run_once(plan)
            stats["runs"] += 1
            stats["killed"] += bool(outcome.get("killed"))
            bad, windows = check(outcome)
            for k, v in windows.items():
                stats["windows"][k] = stats["windows"].get(k, 0) + v
            if bad:
                stats["violations"] += len(bad)
                violations.append("%r: %s\n  outcome %r" % (plan, "; ".join(bad),
                                                             outcome.get("replies")))
        _summary.append(stats)
        self.assertGreater(stats["killed"], 0, "no run was killed: %r" % stats)
        self.assertEqual(violations, [], "\n".join(violations[:10]))
        return stats

    def run_handler(self, handler, args, plan, dialog):
        """Connect, spawn the handler with plan (None, ("trace", path),
        ("syscall", name, nth) or ("delay", seconds)), run dialog(client
        socket port, arm) and wait for the handler.  dialog calls arm()
        just before the command that matters (the delay starts there).
        Returns the outcome dict dialog filled in, plus "killed"."""
        inetd = self.inetd(handler, args)
        outcome = {"replies": []}
        killer = DelayKill(plan[1]) if plan and plan[0] == "delay" else None
        holder = {}

        def connect(client_factory):
            c = client_factory(inetd.port)
            trace = plan[1] if plan and plan[0] == "trace" else None
            kill = plan if plan and plan[0] == "syscall" else None
            holder["proc"] = inetd.spawn(kill=kill, trace=trace)
            return c

        def arm():
            holder["armed"] = time.monotonic()
            if killer is not None:
                killer.arm(holder["proc"].pid)
        try:
            dialog(connect, arm, outcome)
            if "armed" in holder:
                outcome["armed_for"] = time.monotonic() - holder["armed"]
        except (ProtocolError, OSError) as e:
            outcome["error"] = str(e)[:200]
        finally:
            if killer is not None:
                killer.cancel()
            if "client" in outcome:
                outcome.pop("client").close()
        if "proc" in holder:
            rc = wait_proc(holder["proc"], handler)
            outcome["killed"] = rc == -signal.SIGKILL
            if plan and plan[0] == "trace":
                self.assertEqual(rc, 0, "the calibration run failed: %r" % outcome)
        return outcome

    # -- checks shared by the flows
    def queue_problems(self, expect=None, windows=None):
        """The queue is consistent: queue list works (its read-write open
        also recovers an interrupted tdb transaction, which read-only
        readers like tdbdump refuse to do), queue.tdb is intact (the
        handlers, the runner and sockmailctl all open it read-write), every
        envelope has its whole message file.  Returns (problems,
        envelopes, orphan message files); windows counts what is allowed
        but worth reporting."""
        bad = []
        windows = {} if windows is None else windows
        p = self.srv.ctl("queue", "list", check=False)
        if p.returncode != 0:
            bad.append("queue list failed: %r" % p.stderr[-300:])
        try:
            envs = self.srv.queue_envelopes()
        except AssertionError as e:
            bad.append("queue.tdb unreadable: %s" % str(e)[:300])
            envs = {}
        files = self.srv.queue_messages()
        tdb_check(os.path.join(self.srv.spool_dir, "queue.tdb"), bad, windows)
        for qid, env in envs.items():
            if qid not in files:
                bad.append("envelope %s without its message file" % qid)
                continue
            data = self.srv.queue_message(qid)
            if len(data) != env.size:
                bad.append("queue file %s: %d bytes, envelope says %d"
                           % (qid, len(data), env.size))
            elif expect is not None and not data.endswith(expect):
                bad.append("queue file %s is not the message" % qid)
            elif qid not in p.stdout.decode("utf-8", "replace"):
                bad.append("queue list does not show %s" % qid)
        for n in listdir(os.path.join(self.srv.spool_dir, "tmp")):
            if n.startswith("queue.tdb."):
                # a queue.tdb being made aside (db_create) when the kill
                # came: invisible, removed by the runner's clean-up
                windows["spool-tmp-tdb"] = windows.get("spool-tmp-tdb", 0) + 1
            else:
                bad.append("file left in the spool's tmp/: " + n)
        return bad, envs, [f for f in files if f not in envs]

    def delivered_copies(self, address, message, bad):
        """The files in address's new/: each checked whole; their number."""
        md = self.srv.maildir(address)
        files = folder_files(md)
        if files["tmp"]:
            bad.append("%s: files left in tmp/: %r" % (address, files["tmp"]))
        if files["cur"]:
            bad.append("%s: files in cur/: %r" % (address, list(files["cur"])))
        for name, content in files["new"].items():
            try:
                maildir_check_file(self, name, content)
                _, _, body = split_delivered(self, content)
                self.assertEqual(body, crlf_to_lf(message))
            except AssertionError as e:
                bad.append("%s: %s is not a whole copy: %s" % (address, name, str(e)[:200]))
        return len(files["new"])


def smtp_dialog(commands):
    """A dialog function for run_handler: SMTP, one command at a time,
    commands a list of (line or ("data", message) or ("arm",)); the
    replies go into outcome["replies"] (codes), the last into "final"."""
    def dialog(connect, arm, outcome):
        c = outcome["client"] = connect(SMTPClient)
        outcome["replies"].append(c.greeting().code)
        for cmd in commands:
            if cmd == ("arm",):
                arm()
                continue
            if isinstance(cmd, tuple) and cmd[0] == "data":
                outcome["data_sent"] = True
                r = c.send_data(cmd[1])
                outcome["final"] = r.code
            else:
                r = c.cmd(cmd)
            outcome["replies"].append(r.code)
    return dialog


# ------------------------------------------------------------------ SMTP

class SMTPKillTests(KillSweep):

    def test_inbound_two_local_recipients(self):
        msg = (b"From: <x@remote.example>\r\nTo: <alice@example.org>\r\n"
               b"Subject: kill inbound\r\nMessage-ID: <kill.inbound@remote.example>\r\n"
               b"\r\n" + b"Some text, long enough to take a few writes.\r\n" * 40
               + b".a dot line\r\n")
        snapshot(self.srv, self.snap)
        dialog = smtp_dialog(["EHLO client.test", "MAIL FROM:<x@remote.example>",
                              "RCPT TO:<%s>" % ALICE, "RCPT TO:<%s>" % BOB,
                              "DATA", ("arm",), ("data", msg), "QUIT"])

        def run_once(plan):
            return self.run_handler("smtp-handler", (), plan, dialog)

        def check(o):
            bad, windows = [], {}
            n = [self.delivered_copies(a, msg, bad) for a in (ALICE, BOB)]
            qbad, envs, orphans = self.queue_problems(windows=windows)
            bad += qbad
            if envs or orphans:
                bad.append("something queued: %r %r" % (envs, orphans))
            if max(n) > 1:
                bad.append("more than one copy: %r" % n)
            if o.get("final") == 250:
                if n != [1, 1]:
                    bad.append("250 but copies %r" % n)
            elif o.get("final") is not None:
                bad.append("unexpected final reply %r" % o["final"])
            elif n == [1, 1]:
                windows["delivered-no-250"] = 1
            elif n != [0, 0]:
                windows["partial-no-250"] = 1
            return bad, windows

        self.sweep("smtp-inbound", run_once, check, r"O_TMPFILE")

    def test_submission_enqueue(self):
        msg = (b"From: <alice@example.org>\r\nTo: <x@remote.test>\r\n"
               b"Subject: kill submission\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
               b"Message-ID: <kill.submission@example.org>\r\n\r\n"
               + b"Queued text.\r\n" * 40)
        snapshot(self.srv, self.snap)
        dialog = smtp_dialog(["EHLO client.test", "AUTH PLAIN " + plain(ALICE),
                              "MAIL FROM:<%s>" % ALICE, "RCPT TO:<x@remote.test>",
                              "RCPT TO:<%s>" % BOB, "DATA", ("arm",),
                              ("data", msg), "QUIT"])

        def run_once(plan):
            return self.run_handler("smtp-handler", ("--submission",), plan, dialog)

        def check(o):
            bad, windows = [], {}
            n_bob = self.delivered_copies(BOB, msg, bad)
            qbad, envs, orphans = self.queue_problems(expect=crlf_to_lf(msg),
                                                      windows=windows)
            bad += qbad
            if orphans:
                windows["orphan-queue-file"] = 1
                for q in orphans:
                    if not self.srv.queue_message(q).endswith(crlf_to_lf(msg)):
                        bad.append("orphan %s is not whole" % q)
            for env in envs.values():
                if [(r.address, r.state) for r in env.rcpts] != [("x@remote.test", "pending")]:
                    bad.append("envelope %r" % env.rcpts)
            if len(envs) > 1 or n_bob > 1:
                bad.append("twice: %d envelopes, %d copies" % (len(envs), n_bob))
            if o.get("final") == 250:
                if len(envs) != 1 or n_bob != 1:
                    bad.append("250 but %d envelopes, %d copies" % (len(envs), n_bob))
            elif o.get("final") is not None:
                bad.append("unexpected final reply %r" % o["final"])
            elif len(envs) == 1 and n_bob == 1:
                windows["done-no-250"] = 1
            elif len(envs) + n_bob > 0:
                # bob's copy is linked before the enqueue, which takes it
                # back if it fails; a kill in between leaves bob's copy
                windows["partial-no-250"] = 1
            return bad, windows

        self.sweep("smtp-submission", run_once, check, r"O_TMPFILE")


# ------------------------------------------------------------ sockmailctl

class CtlKillTests(KillSweep):
    """sockmailctl killed inside its users.tdb commit: the handlers, which
    open users.tdb read-only, must still resolve recipients afterwards
    (tdb rolls an interrupted commit back only for a read-write opener;
    users.c does that for the readers)."""

    def run_ctl(self, plan, args):
        argv = [program("sockmailctl"), "-c", self.srv.conf_path] + list(args)
        if plan and plan[0] in ("trace", "syscall"):
            argv = strace_argv(plan[1] if plan[0] == "trace" else None,
                               plan if plan[0] == "syscall" else None,
                               4096 if plan[0] == "trace" else 48) + argv
        t = time.monotonic()
        traced = bool(plan and plan[0] in ("trace", "syscall"))
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=self.srv.dir,
                             env=handler_env(traced=traced), start_new_session=True)
        killer = None
        if plan and plan[0] == "delay":
            killer = DelayKill(plan[1])
            killer.arm(p.pid)
        _, err = p.communicate(timeout=WAIT * 3)
        if killer:
            killer.cancel()
        with open(self.srv.stderr_path, "ab") as f:
            f.write(err)  # checked for sanitizer reports like the handlers
        if plan and plan[0] == "trace":
            self.assertEqual(p.returncode, 0, "the calibration run failed")
        return {"rc": p.returncode, "killed": p.returncode == -signal.SIGKILL,
                "replies": [p.returncode], "armed_for": time.monotonic() - t}

    def rcpt_codes(self, *addresses):
        inetd = self.inetd("smtp-handler")
        c = SMTPClient(inetd.port)
        p = inetd.spawn()
        try:
            c.start()
            c.cmd("MAIL FROM:<x@remote.example>")
            return [c.cmd("RCPT TO:<%s>" % a).code for a in addresses]
        finally:
            c.close()
            wait_proc(p, "smtp-handler")

    def test_alias_add(self):
        snapshot(self.srv, self.snap)

        def check(o):
            bad, windows = [], {}
            # the handler first: tdbtool opens read-write and would recover
            codes = self.rcpt_codes(ALICE, BOB, "sales@example.org")
            if codes[:2] != [250, 250]:
                bad.append("users no longer resolve: RCPT replies %r" % codes)
            if codes[2] not in (250, 550):
                bad.append("sales@: %r" % codes[2])
            if o["rc"] == 0 and codes[2] != 250:
                bad.append("alias add exited 0, alias missing")
            elif o["rc"] != 0 and codes[2] == 250:
                windows["added-no-exit-0"] = 1
            tdb_check(os.path.join(self.srv.state_dir, "users.tdb"), bad, windows)
            return bad, windows

        self.sweep("ctl-alias-add",
                   lambda p: self.run_ctl(p, ["alias", "add", "sales@example.org",
                                                 ALICE, BOB]),
                   check, r'openat\(.*users\.tdb')


# ------------------------------------------------------------------ POP3

class PopClient:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ProtocolError("connection closed by server")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text, multi=False):
        self.sock.sendall(text.encode() + b"\r\n")
        first = self.line()
        if multi and first.startswith(b"+OK"):
            while self.line() != b".":
                pass
        return first

    def close(self):
        self.sock.close()


class POP3KillTests(KillSweep):
    START = False

    def test_update(self):
        # messages 1..6 in delivery order: new, cur, new, cur (F), new, cur (S)
        self.put_order = []
        md = self.srv.maildir(ALICE)
        for i, (sub, flags) in enumerate([("new", ""), ("cur", ""), ("new", ""),
                                          ("cur", "F"), ("new", ""), ("cur", "S")]):
            content = b"Subject: pop %d\n\n" % (i + 1) + b"line\n" * (50 * (i + 1))
            name = maildir_put(self.srv, ALICE, content, sub=sub, flags=flags,
                               when=1700000000 + i)
            self.put_order.append((sub, name, content))
        snapshot(self.srv, self.snap)
        retr, dele = {1, 4, 3}, {2, 5, 3}

        def dialog(connect, arm, outcome):
            c = outcome["client"] = connect(PopClient)
            outcome["replies"].append(c.line()[:3])
            for cmd in ("USER " + ALICE, "PASS " + PASSWORD, "RETR 1", "RETR 4",
                        "DELE 2", "DELE 5", "RETR 3", "DELE 3"):
                r = c.cmd(cmd, multi=cmd.startswith("RETR"))
                outcome["replies"].append(r[:3])
            arm()
            outcome["quit"] = c.cmd("QUIT")[:3]

        def run_once(plan):
            return self.run_handler("pop3-handler", (), plan, dialog)

        def check(o):
            bad, windows = [], {}
            files = folder_files(md)
            if files["tmp"]:
                bad.append("tmp/ not empty")
            where = {}
            for sub in ("new", "cur"):
                for name, content in files[sub].items():
                    where.setdefault(base_name(name), []).append((sub, name, content))
            done = o.get("quit") == b"+OK"
            for i, (sub, name, content) in enumerate(self.put_order, 1):
                found = where.pop(base_name(name), [])
                if len(found) > 1:
                    bad.append("message %d in two places: %r" % (i, found))
                    continue
                if any(c != content for _, _, c in found):
                    bad.append("message %d changed" % i)
                old = (sub, name)
                if sub == "new":
                    seen = ("cur", name + ":2,S")
                else:
                    seen = ("cur", name if "S" in info_flags(name) else
                            name.split(":2,")[0] + ":2," + "".join(sorted(info_flags(name) + "S")))
                now = [(s, n) for s, n, _ in found]
                if i in dele:
                    allowed = [[]] if done else [[], [old]]
                elif i in retr:
                    allowed = [[seen]] if done else [[old], [seen]]
                else:
                    allowed = [[old]]
                if now not in allowed:
                    bad.append("message %d: %r, expected one of %r" % (i, now, allowed))
                elif not done and now != [old]:
                    windows["changed-no-ok"] = 1
            if where:
                bad.append("unknown files: %r" % where)
            # the next session gets the maildrop (the lock died with the
            # killed one) and sees what is on disk
            n_files = len(files["new"]) + len(files["cur"])
            c = PopClient(self.inetd("pop3-handler").port)
            p = self.inetd("pop3-handler").spawn()
            try:
                c.line()
                c.cmd("USER " + ALICE)
                r = c.cmd("PASS " + PASSWORD)
                if not r.startswith(b"+OK"):
                    bad.append("next login: %r" % r)
                else:
                    st = c.cmd("STAT")
                    if not st.startswith(b"+OK %d " % n_files):
                        bad.append("STAT %r with %d files" % (st, n_files))
                    c.cmd("QUIT")
            finally:
                c.close()
                wait_proc(p, "pop3-handler")
            return bad, windows

        self.sweep("pop3-update", run_once, check, r'write\(1, "\+OK Message 3 deleted')


# ------------------------------------------------------------------ IMAP

FLAG_LETTERS = {"S": "\\Seen", "F": "\\Flagged", "T": "\\Deleted",
                "D": "\\Draft", "R": "\\Answered"}

# The bug the *_new_keyword tests show (imap-handler, see their comments).
NEW_KEYWORD_BUG = (
    "imap-handler links the message into cur/ with the new keyword's letter "
    "in its name before the transaction that adds the keyword to the "
    "folder's table commits: a kill in between leaves a letter no keyword "
    "name stands for")


class IMAPKillTests(KillSweep):
    """alice's INBOX holds five messages k1..k5 with UIDs given by a first
    session (k3 also has the keyword $Work); Archive and Trash exist,
    empty, with their own UIDVALIDITY."""

    FOLDERS = ("INBOX", "Archive", "Trash")
    written = FOLDERS  # whose tdb tdbtool checks (all with SOCKMAIL_LONG)
    KEYWORDS = ("$Work", "$Other", "$New")

    def setUp(self):
        super().setUp()
        self.msgs = {}  # "k<i>" -> content (LF)
        for i, flags in enumerate(("", "S", "F", "", "S"), 1):
            content = (b"From: <x@remote.example>\nSubject: k%d\n"
                       b"Message-ID: <k%d@remote.example>\n\n" % (i, i)
                       + b"body line\n" * (30 * i))
            maildir_put(self.srv, ALICE, content, sub="cur", flags=flags,
                        when=1700000000 + i)
            self.msgs["k%d" % i] = content
        self.appended = (b"From: <alice@example.org>\r\nSubject: k-append\r\n"
                         b"Message-ID: <kapp@example.org>\r\n\r\n"
                         + b"appended line\r\n" * 200)
        self.msgs["k-append"] = crlf_to_lf(self.appended)
        # UIDs, and the keyword $Work in INBOX's table (on k3)
        c, p = self.imap_session()
        try:
            c.ok("SELECT INBOX")
            c.ok("STORE 3 +FLAGS.SILENT ($Work)")
            c.command("LOGOUT")
        finally:
            c.close()
            wait_proc(p, "imap-handler")
        self.before = self.imap_view()
        for f in self.FOLDERS:
            self.assertEqual(self.before[f]["bad"], [], self.before[f])
        self.assertEqual(self.msgs_of(self.before, "INBOX")["k3"],
                         [frozenset({"\\Flagged", "$Work"})])
        snapshot(self.srv, self.snap)

    def imap_session(self):
        """A logged-in IMAPConn to a fresh imap-handler, and its process."""
        inetd = self.inetd("imap-handler")
        c = IMAPConn(inetd.port)
        p = inetd.spawn()
        try:
            c.read_response()
            r = c.login(ALICE)
            if r.status != "OK":
                raise AssertionError("LOGIN: %r" % r)
        except BaseException:
            c.close()
            wait_proc(p, "imap-handler")
            raise
        return c, p

    def ident(self, content):
        m = re.search(rb"^Subject: (\S+)", content, re.M)
        return m.group(1).decode() if m else None

    def imap_view(self):
        """A fresh session's view of every folder, checked against the
        disk: {folder: {"uidvalidity", "msgs": {uid: (ident, flags)},
        "bad": [problems]}}."""
        c, p = self.imap_session()
        out = {}
        try:
            for folder in self.FOLDERS:
                out[folder] = self.folder_view(c, folder)
            c.command("LOGOUT")
        finally:
            c.close()
            wait_proc(p, "imap-handler")
        return out

    def folder_view(self, c, folder):
        bad = []
        fdir = imap_folder_dir(self.srv, ALICE, folder)
        files = folder_files(fdir)
        if files["tmp"]:
            bad.append("%s: tmp/ not empty: %r" % (folder, files["tmp"]))
        on_disk = {}  # base name -> (ident, flag letters)
        for sub in ("new", "cur"):
            for name, content in files[sub].items():
                ident = self.ident(content)
                if ident not in self.msgs or content != self.msgs[ident]:
                    bad.append("%s: %s/%s is not a whole message" % (folder, sub, name))
                on_disk[base_name(name)] = (ident, info_flags(name))
        r = c.command("SELECT " + imap_quote(folder))
        if r.status != "OK":
            return {"bad": bad + ["SELECT %s: %r" % (folder, r)], "msgs": {}}
        m = re.search(rb"UIDVALIDITY (\d+)", b" ".join(r.untagged))
        view = {"uidvalidity": int(m.group(1)) if m else None, "msgs": {}, "bad": bad,
                "windows": {}}
        # the SELECT opened the folder's tdb read-write: an interrupted
        # transaction is recovered by now
        if LONG or folder in self.written:
            tdb_check(os.path.join(fdir, "sockmail-imap.tdb"), bad, view["windows"])
        exists = r.numbers("EXISTS")
        if exists and exists[-1] != len(on_disk):
            bad.append("%s: EXISTS %r with %d files" % (folder, exists, len(on_disk)))
        if not on_disk:
            return view
        r = c.command("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")
        if r.status != "OK":
            bad.append("%s: FETCH %r" % (folder, r))
            return view
        seen = set()
        for fd in r.fetches().values():
            uid = int(fd.items["UID"])
            if uid in seen:
                bad.append("%s: UID %d twice" % (folder, uid))
            seen.add(uid)
            body = crlf_to_lf(fd.items["BODY[]"])
            ident = self.ident(body)
            view["msgs"][uid] = (ident, frozenset(fd.flags() - {"\\Recent"}))
            if ident not in self.msgs or body != self.msgs[ident]:
                bad.append("%s: UID %d serves %r" % (folder, uid, body[:100]))
        if len(seen) != len(on_disk):
            bad.append("%s: %d UIDs for %d files" % (folder, len(seen), len(on_disk)))
        # The flags served are the flags in the file names: the system
        # flags by their letters, and one keyword name per keyword letter,
        # the same letters giving the same names throughout the folder.
        served = {}
        for ident, flags in view["msgs"].values():
            served.setdefault(ident, []).append(flags)
        letters_names = {}
        for ident, fl in on_disk.values():
            options = served.get(ident, [])
            system = frozenset(FLAG_LETTERS[ch] for ch in fl if ch in FLAG_LETTERS)
            kw = "".join(sorted(ch for ch in fl if ch.islower()))
            match = [f for f in options
                     if frozenset(x for x in f if x.startswith("\\")) == system
                     and len([x for x in f if not x.startswith("\\")]) == len(kw)
                     and all(x in self.KEYWORDS for x in f if not x.startswith("\\"))]
            if not match:
                fewer = [f for f in options
                         if len([x for x in f if not x.startswith("\\")]) < len(kw)]
                bad.append("%s: %s is %r on disk (:2,%s), served as %r%s"
                           % (folder, ident, system, fl, options,
                              ": keyword letters that name nothing" if fewer else ""))
                continue
            options.remove(match[0])
            names = frozenset(x for x in match[0] if not x.startswith("\\"))
            if letters_names.setdefault(kw, names) != names:
                bad.append("%s: keyword letters %r mean %r and %r"
                           % (folder, kw, letters_names[kw], names))
        return view

    def imap_check(self, o, expect_ok, expect_any):
        """Common checks; expect_ok(view) and expect_any(view) return
        problems (the state after an OK / after no reply) and windows."""
        after = self.imap_view()
        bad = []
        for f in self.FOLDERS:
            bad += after[f]["bad"]
            if after[f].get("uidvalidity") != self.before[f]["uidvalidity"]:
                bad.append("%s: UIDVALIDITY changed" % f)
            # messages that were there keep their UIDs
            for uid, (ident, _) in after[f]["msgs"].items():
                old = self.before[f]["msgs"].get(uid)
                if old is not None and old[0] != ident:
                    bad.append("%s: UID %d was %s, is %s" % (f, uid, old[0], ident))
            for uid, (ident, _) in self.before[f]["msgs"].items():
                now = [u for u, (i, _) in after[f]["msgs"].items() if i == ident]
                if now and uid not in now:
                    bad.append("%s: %s has UID %r, had %d" % (f, ident, now, uid))
        if bad:
            return bad, {}
        windows = {}
        for f in self.FOLDERS:
            for k, v in after[f].get("windows", {}).items():
                windows[k] = windows.get(k, 0) + v
        if o.get("status") == "OK":
            bad += expect_ok(after)
        elif o.get("status") is not None:
            bad.append("unexpected completion %r" % o.get("status"))
        else:
            b, w = expect_any(after)
            bad += b
            windows.update(w)
        return bad, windows

    def imap_dialog(self, commands, literal=None):
        """LOGIN, then commands (tags A2, A3, ...); the last one is the one
        that matters (arm() before it); literal: its APPEND data."""
        def dialog(connect, arm, outcome):
            c = outcome["client"] = connect(IMAPConn)
            c.read_response()
            r = c.login(ALICE)
            outcome["replies"].append(r.status)
            for i, cmd in enumerate(commands):
                last = i == len(commands) - 1
                if last:
                    arm()
                if last and literal is not None:
                    r = c.command(cmd, Literal(literal), tag="A%d" % (i + 2))
                else:
                    r = c.command(cmd, tag="A%d" % (i + 2))
                outcome["replies"].append(r.status)
                if last:
                    outcome["status"] = r.status
                    outcome["text"] = r.text
        return dialog

    def run_imap(self, plan, dialog):
        return self.run_handler("imap-handler", (), plan, dialog)

    def msgs_of(self, view, folder):
        """{ident: [flags, ...]} of a folder."""
        out = {}
        for ident, flags in view[folder]["msgs"].values():
            out.setdefault(ident, []).append(flags)
        return out

    # -- APPEND
    def sweep_append(self, flow, keyword, marker):
        self.written = ("INBOX",)
        dialog = self.imap_dialog(["APPEND INBOX (\\Seen %s) " % keyword],
                                  literal=self.appended)
        new_flags = frozenset({"\\Seen", keyword})
        src = self.msgs_of(self.before, "INBOX")

        def check(o):
            def ok(v):
                inbox = self.msgs_of(v, "INBOX")
                if inbox != dict(src, **{"k-append": [new_flags]}):
                    return ["after OK: %r" % inbox]
                if not re.match(rb"\[APPENDUID \d+ \d+\]", o["text"]):
                    return ["no APPENDUID: %r" % o["text"]]
                return []

            def any_(v):
                inbox = self.msgs_of(v, "INBOX")
                got = inbox.pop("k-append", None)
                if inbox != src:
                    return ["INBOX changed: %r" % inbox], {}
                if got is None:
                    return [], {}
                if got != [new_flags]:
                    return ["appended as %r" % got], {}
                return [], {"appended-no-ok": 1}
            return self.imap_check(o, ok, any_)

        self.sweep(flow, lambda p: self.run_imap(p, dialog), check, marker)

    def test_append(self):
        """APPEND with a keyword the folder knows already."""
        self.sweep_append("imap-append", "$Work", r'write\(1, "\+ ')

    def test_append_new_keyword(self):
        """APPEND with a keyword new to the folder.  Found by this sweep and
        fixed (imap_folder.c now commits a new keyword before linking):  imap_cmd_append
        (imap_store.c) calls imap_folder_add_begin, then
        imap_folder_add_mailfile (imap_folder.c), which takes the keyword's
        letter inside the add's tdb transaction and links the file into
        cur/ as ...:2,Sb, and only imap_folder_add_commit commits the
        keyword table.  Killed between the link and the commit (any point
        of the commit: its fcntl, msync and fsync calls), the file stays
        in cur/ with a 'b' that names nothing: a fresh session serves it
        without $New, and the next keyword the folder gets takes 'b' and
        with it this message.  A fix: commit new keywords in a transaction
        of their own before the link (the table only grows, so an unused
        entry is harmless), as STORE already does (test_store passes)."""
        # the points from the link on: about half of them are in the window
        self.sweep_append("imap-append-newkw", "$New", r"linkat\(.*/alice/cur/")

    # -- COPY, MOVE
    def sweep_copy(self, flow, seqs, marker):
        self.written = ("Archive",)
        dialog = self.imap_dialog(["SELECT INBOX", "COPY %s Archive" % seqs])
        src = self.msgs_of(self.before, "INBOX")
        copied = ["k%d" % int(n) for n in seqs.split(",")]

        def check(o):
            def ok(v):
                arch = self.msgs_of(v, "Archive")
                bad = [] if arch == {k: src[k] for k in copied} else \
                    ["Archive %r after OK" % arch]
                if self.msgs_of(v, "INBOX") != src:
                    bad.append("INBOX changed")
                return bad

            def any_(v):
                arch = self.msgs_of(v, "Archive")
                bad = []
                for k, fl in arch.items():
                    if k not in copied or fl != src[k]:
                        bad.append("Archive has %s %r" % (k, fl))
                if self.msgs_of(v, "INBOX") != src:
                    bad.append("INBOX changed")
                w = {}
                if 0 < len(arch) < len(copied):
                    w["partial-copy"] = 1
                elif arch:
                    w["copied-no-ok"] = 1
                return bad, w
            return self.imap_check(o, ok, any_)

        self.sweep(flow, lambda p: self.run_imap(p, dialog), check, marker)

    def test_copy(self):
        """COPY of three messages without keywords."""
        self.sweep_copy("imap-copy", "1,2,4", r'write\(1, ".*A2 OK')

    def test_copy_new_keyword(self):
        """COPY of k3 (keyword $Work) into Archive, whose table lacks it.
        Found by this sweep and fixed (see test_append_new_keyword), here
        through copy_one (imap_store.c) -> imap_folder_add_* into the
        destination: the copy is linked into Archive's cur/ as ...:2,Fa
        before Archive's transaction adding $Work commits."""
        self.sweep_copy("imap-copy-newkw", "3", r"link(at)?\(.*/\.Archive/cur/")

    def test_move(self):
        self.written = ("INBOX", "Trash")
        dialog = self.imap_dialog(["SELECT INBOX", "MOVE 4:5 Trash"])
        src = self.msgs_of(self.before, "INBOX")
        moved = ("k4", "k5")

        def check(o):
            def ok(v):
                inbox, trash = self.msgs_of(v, "INBOX"), self.msgs_of(v, "Trash")
                bad = []
                if trash != {k: src[k] for k in moved}:
                    bad.append("Trash %r after OK" % trash)
                if inbox != {k: src[k] for k in src if k not in moved}:
                    bad.append("INBOX %r after OK" % inbox)
                return bad

            def any_(v):
                inbox, trash = self.msgs_of(v, "INBOX"), self.msgs_of(v, "Trash")
                bad, w = [], {}
                for k in src:
                    if k not in moved:
                        if inbox.get(k) != src[k] or k in trash:
                            bad.append("%s touched" % k)
                        continue
                    if k not in inbox and k not in trash:
                        bad.append("%s lost" % k)
                    if k in inbox and k in trash:
                        w["moved-both-folders"] = 1
                    for box in (inbox, trash):
                        if k in box and box[k] != src[k]:
                            bad.append("%s: %r" % (k, box[k]))
                if all(k in trash for k in moved) and not any(k in inbox for k in moved):
                    w["moved-no-ok"] = 1
                elif any(k in trash for k in moved) and not w:
                    w["partial-move"] = 1
                return bad, w
            return self.imap_check(o, ok, any_)

        self.sweep("imap-move", lambda p: self.run_imap(p, dialog), check,
                   r'write\(1, ".*A2 OK')

    # -- EXPUNGE, STORE
    def test_expunge(self):
        self.written = ("INBOX",)
        dialog = self.imap_dialog(["SELECT INBOX", "STORE 1,3 +FLAGS.SILENT (\\Deleted)",
                                   "EXPUNGE"])
        src = self.msgs_of(self.before, "INBOX")
        gone = ("k1", "k3")
        deleted = {k: [fl[0] | {"\\Deleted"}] for k, fl in src.items()}

        def check(o):
            def ok(v):
                inbox = self.msgs_of(v, "INBOX")
                want = {k: src[k] for k in src if k not in gone}
                return [] if inbox == want else ["INBOX %r after OK" % inbox]

            def any_(v):
                inbox = self.msgs_of(v, "INBOX")
                bad = []
                for k in src:
                    if k not in gone:
                        if inbox.get(k) != src[k]:
                            bad.append("%s: %r" % (k, inbox.get(k)))
                    elif k in inbox and inbox[k] not in (src[k], deleted[k]):
                        bad.append("%s: %r" % (k, inbox[k]))
                n = sum(k in inbox for k in gone)
                return bad, {"partial-expunge": 1} if n == 1 else \
                    {"expunged-no-ok": 1} if n == 0 else {}
            return self.imap_check(o, ok, any_)

        self.sweep("imap-expunge", lambda p: self.run_imap(p, dialog), check,
                   r'write\(1, ".*A3 OK')

    def test_store(self):
        """STORE adding a system flag and a keyword new to the folder."""
        self.written = ("INBOX",)
        dialog = self.imap_dialog(["SELECT INBOX", "STORE 1:5 +FLAGS (\\Answered $Other)"])
        src = self.msgs_of(self.before, "INBOX")
        new = {k: [fl[0] | {"\\Answered", "$Other"}] for k, fl in src.items()}

        def check(o):
            def ok(v):
                inbox = self.msgs_of(v, "INBOX")
                return [] if inbox == new else ["INBOX %r after OK" % inbox]

            def any_(v):
                inbox = self.msgs_of(v, "INBOX")
                bad = []
                for k in src:
                    if inbox.get(k) not in (src[k], new[k]):
                        bad.append("%s: %r" % (k, inbox.get(k)))
                n = sum(inbox.get(k) == new[k] for k in src)
                return bad, {"partial-store": 1} if 0 < n < 5 else \
                    {"stored-no-ok": 1} if n else {}
            return self.imap_check(o, ok, any_)

        self.sweep("imap-store", lambda p: self.run_imap(p, dialog), check,
                   r'write\(1, ".*A2 OK')


# ---------------------------------------------------------- queue runner

DNS_RECORDS = ["--mx-host=remote.test,mx.remote.test,10",
               "--host-record=mx.remote.test,127.0.0.1",
               "--mx-host=other.test,mx.other.test,10",
               "--host-record=mx.other.test,127.0.0.1"]
DAY = 86400


class RunnerKillTests(DnsmasqPerClass, KillSweep):
    """N messages, each for r<i>@remote.test and o<i>@other.test (250),
    bad<i>@remote.test (550: a bounce to alice) and, for even i,
    later<i>@other.test (451 during the sweep, 250 afterwards)."""

    N = 4
    DNS_RECORDS = DNS_RECORDS

    def setUp(self):
        self.sink = Sink()
        self.sink.start()
        self.addCleanup(self.sink.stop)
        super().setUp()

    def config(self):
        return {"dns_server": "127.0.0.1:%d" % self.dns.port,
                "outbound_port": str(self.sink.port),
                "postmaster": "postmaster@example.org",
                "queue_lifetime": "60d", "delay_warning": "0",
                "max_bad_commands": "1000"}

    def refusing(self):
        r = {"bad%d@remote.test" % i: "550 5.1.1 No such user" for i in range(self.N)}
        r.update({"later%d@other.test" % i: "451 4.3.0 Try later"
                  for i in range(0, self.N, 2)})
        return r

    def rcpts(self, i):
        out = ["r%d@remote.test" % i, "o%d@other.test" % i, "bad%d@remote.test" % i]
        if i % 2 == 0:
            out.append("later%d@other.test" % i)
        return out

    def enqueue(self):
        inetd = self.inetd("smtp-handler", ("--submission",))
        for i in range(self.N):
            msg = (b"From: <alice@example.org>\r\nSubject: run %d\r\n"
                   b"Message-ID: <run%d@example.org>\r\n"
                   b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n" % (i, i)
                   + b"runner text\r\n" * (20 + 200 * i))
            c = SMTPClient(inetd.port)
            p = inetd.spawn()
            try:
                c.start()
                self.assertEqual(c.cmd("AUTH PLAIN " + plain(ALICE)).code, 235)
                mail, rr, data, final = c.transaction(ALICE, self.rcpts(i), msg)
                self.assertEqual([r.code for r in rr], [250] * len(rr))
                self.assertEqual(final.code, 250, final)
                c.cmd("QUIT")
            finally:
                c.close()
                wait_proc(p, "smtp-handler")
        self.assertEqual(len(self.srv.queue_envelopes()), self.N)

    def runner(self, now, plan=None, trace=None):
        """One queue run; plan: ("syscall", name, nth) under strace, or
        ("delay", s) for SIGKILL to its process group.  Returns the number
        of processes that died of SIGKILL (from strace's log, or 1 when the
        delay kill hit a live run)."""
        argv = [program("queue-runner"), "-c", self.srv.conf_path]
        log = None
        if trace or (plan and plan[0] == "syscall"):
            log = trace or os.path.join(self.snap, "runner.trace")
            argv = strace_argv(log, plan if plan and plan[0] == "syscall" else None,
                               4096 if trace else 48) + argv
        env = handler_env({"SOCKMAIL_TEST_NOW": str(int(now))}, traced=log is not None)
        errf = open(self.srv.runner_stderr_path, "ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf,
                                    stderr=errf, cwd=self.srv.dir, env=env,
                                    start_new_session=True)
        finally:
            errf.close()
        killer = None
        if plan and plan[0] == "delay":
            killer = DelayKill(plan[1], group=True)
            killer.arm(proc.pid)
        rc = wait_proc(proc, "queue-runner")
        if killer:
            killer.cancel()
            # workers the kill missed (forked after it) end on their own;
            # wait for the group to be gone
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if log and os.path.exists(log):
            with open(log, errors="replace") as f:
                killed = f.read().count("+++ killed by SIGKILL +++")
            return killed
        return 1 if rc == -signal.SIGKILL else 0

    def accepted(self, start):
        """[(message index, rcpt, data)] accepted by the sink since
        transaction number start."""
        out = []
        for t in self.sink.transactions[start:]:
            if not t.ok:
                continue
            m = re.search(rb"^Message-ID: <run(\d+)@", t.data, re.M)
            for r in t.rcpts:
                out.append((int(m.group(1)) if m else -1, r.lower(), t.data))
        return out

    def dsns(self):
        """{bad rcpt: [Message-ID of each bounce file naming it]} in
        alice's Maildir."""
        out = {}
        for sub in ("new", "cur"):
            d = os.path.join(self.srv.maildir(ALICE), sub)
            for n in listdir(d):
                data = read(os.path.join(d, n))
                m = re.search(rb"^Message-ID: (\S+)", data, re.M | re.I)
                for a in set(re.findall(rb"Final-Recipient: rfc822; ?(\S+)", data)):
                    out.setdefault(a.decode().lower(), []).append(
                        m.group(1) if m else n)
        return out

    def episode(self, plans, arrival):
        """From the snapshot: runs killed by plans in turn, then clean runs
        (a day later each) until the queue is empty.  Returns (violations,
        windows, killed processes)."""
        restore(self.srv, self.snap)
        start = len(self.sink.transactions)
        self.sink.set(rcpt=self.refusing())
        at_risk = {}  # (msg, rcpt) -> copies accepted in killed runs
        killed_total = 0
        now = arrival
        for plan in plans:
            before = len(self.sink.transactions)
            killed = self.runner(now, plan)
            killed_total += killed
            self.sink.wait_idle()
            if killed:
                for i, r, _ in self.accepted(before):
                    at_risk[(i, r)] = at_risk.get((i, r), 0) + 1
        self.sink.set(rcpt={k: v for k, v in self.refusing().items()
                            if k.startswith("bad")})
        for k in range(10):
            now += DAY
            self.runner(now)
            self.sink.wait_idle()
            if not self.srv.queue_envelopes():
                break
        bad, windows = [], {}
        qbad, envs, orphans = self.queue_problems(windows=windows)
        bad += qbad
        if envs:
            bad.append("queue not empty after 10 runs: %r" % list(envs.values()))
        if orphans:
            # a DSN file linked but not committed: invisible, and gone once
            # old enough
            windows["orphan-queue-file"] = len(orphans)
            old = time.time() - 2 * 3600
            for q in orphans:
                os.utime(os.path.join(self.srv.spool_dir, "msg", q), (old, old))
            self.runner(now + DAY)
            if self.srv.queue_messages():
                bad.append("orphans not cleaned: %r" % self.srv.queue_messages())
        got = {}
        for i, r, data in self.accepted(start):
            got[(i, r)] = got.get((i, r), 0) + 1
            if i < 0 or not data.endswith(b"runner text\r\n" * (20 + 200 * i)):
                bad.append("sink got a broken copy for %s" % r)
        for i in range(self.N):
            for r in self.rcpts(i):
                if r.startswith("bad"):
                    continue
                n = got.pop((i, r), 0)
                if n == 0:
                    bad.append("message %d never reached %s" % (i, r))
                elif n > 1:
                    if n - 1 > at_risk.get((i, r), 0):
                        bad.append("message %d reached %s %d times, %d in killed runs"
                                   % (i, r, n, at_risk.get((i, r), 0)))
                    windows["dup-after-250"] = windows.get("dup-after-250", 0) + n - 1
        if got:
            bad.append("sink got unexpected copies: %r" % got)
        dsns = self.dsns()
        for i in range(self.N):
            a = "bad%d@remote.test" % i
            ids = dsns.pop(a, [])
            if not ids:
                bad.append("no bounce for %s" % a)
            # the bounce is queued in the same transaction that notes it
            # in the message's envelope: never made twice
            if len(set(ids)) > 1:
                bad.append("%d bounces made for %s" % (len(set(ids)), a))
            # the runner's local delivery is named after the queue id: a
            # run killed after linking it finds it and makes no copy
            if len(ids) > len(set(ids)):
                bad.append("the bounce for %s delivered %d times"
                           % (a, len(ids)))
        if dsns:
            bad.append("bounces for %r" % dsns)
        return bad, windows, killed_total

    def test_runner_batch(self):
        self.enqueue()
        arrival = max(e.arrival for e in self.srv.queue_envelopes().values())
        snapshot(self.srv, self.snap)
        plans = []
        if strace_usable():
            # the points: every (syscall, nth) any process of a clean run
            # makes (strace counts per process: each process reaching its
            # nth such call dies, a correlated crash of the service)
            trace = os.path.join(self.snap, "calibrate.trace")
            restore(self.srv, self.snap)
            self.sink.set(rcpt=self.refusing())
            self.runner(arrival, trace=trace)
            self.sink.wait_idle()
            pts = sorted({(e[1], e[2]) for e in parse_trace(trace)},
                         key=lambda p: (p[1], p[0]))
            self.assertTrue(pts)
            if not LONG:
                step = max(1, len(pts) // DEFAULT_POINTS)
                pts = pts[::step][:DEFAULT_POINTS]
            plans += [[("syscall",) + p] for p in pts]
        restore(self.srv, self.snap)
        t = time.monotonic()
        self.runner(arrival)
        dur = time.monotonic() - t
        n_delay = LONG_DELAY_KILLS if LONG else DEFAULT_DELAY_KILLS
        plans += [[("delay", self.rng.uniform(0, dur))] for _ in range(n_delay)]
        if LONG:
            # two kills in a row: the second run starts from the first's mess
            plans += [[("delay", self.rng.uniform(0, dur)),
                       ("delay", self.rng.uniform(0, dur))] for _ in range(20)]
        stats = {"flow": "queue-runner", "runs": 0, "killed": 0, "violations": 0,
                 "windows": {}}
        violations = []
        for p in plans:
            bad, windows, killed = self.episode(p, arrival)
            stats["runs"] += 1
            stats["killed"] += bool(killed)
            for k, v in windows.items():
                stats["windows"][k] = stats["windows"].get(k, 0) + v
            if bad:
                stats["violations"] += len(bad)
                violations.append("%r: %s" % (p, "; ".join(bad)))
        _summary.append(stats)
        self.assertGreater(stats["killed"], 0)
        self.assertEqual(violations, [], "\n".join(violations[:10]))


if getattr(harness, "VALGRIND", False):
    # make check VALGRIND=1: these tests start their programs themselves
    # (not under memcheck), and sweeps under valgrind would only measure
    # valgrind
    del SMTPKillTests, CtlKillTests, POP3KillTests, IMAPKillTests, RunnerKillTests

if __name__ == "__main__":
    unittest.main()
