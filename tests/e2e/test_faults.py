"""Fault injection (issue 8, part 2): every write path keeps its promise
when the disk fails.

build/tests/libfaultinject.so (tests/faults/faultinject.c) is preloaded
into one handler (or queue runner) per run and makes the Nth call of one
function -- write, pwrite, fsync, fdatasync, msync, rename(at/at2),
link(at), open(at), mkdir(at), unlink(at), ftruncate, ... -- fail with
ENOSPC, EIO or EDQUOT.  For each flow a clean run first counts the calls
(the shim's exit line), then N is swept over them; after every run the
flow's invariants are checked:

  * nothing was answered 250 / +OK / OK unless its data is in place: the
    message in every recipient's new/ or queued for it, the queued message
    with its envelope, the appended or copied message in the folder with
    the UID the client was given, the flags or the expunge on disk;
  * after a failure answer the old state is there: no message half
    written or visible in new/, cur/ or the queue (files left in tmp/ or
    msg/ without an envelope are invisible to readers: counted as
    leftovers, not as violations);
  * queue.tdb and the folders' sockmail-imap.tdb open (tdbdump) and agree
    with the files: every envelope parses and has its message file, and a
    fresh IMAP session's SELECT lists every message file once, each with
    a distinct UID (the UID database's for that file);
  * the failure was answered as a temporary one (4xx, -ERR, NO, * BYE;
    never 5xx or BAD, never a silent close) and the process ended by
    exit() -- no crash, no sanitizer report, no hang;
  * for the queue runner: the envelope of a message not yet done is never
    lost, a recipient marked as bounced has its bounce queued or delivered,
    and one clean run afterwards finishes the job (queue empty, bounce in
    the sender's Maildir, message at the remote).

Flows: inbound SMTP delivery (MX, one message to two local users),
enqueue (submission to a remote recipient), the queue runner (a
permanent failure that makes a bounce, delivered locally in the same run;
a temporary failure that updates the envelope), POP3 UPDATE (RETR, DELE,
QUIT), IMAP APPEND, COPY, MOVE, EXPUNGE and STORE.

A fault is one-shot (the Nth call fails, later ones work: the error
paths' own cleanup is exercised) or sticky (every call from the Nth on
fails, as on a full disk).  The default run (make check) is short:
one-shot ENOSPC at the first, the middle and the last call of each
function a flow makes, and a sticky ENOSPC from the first write, sync,
link or rename on; with the ASan build (make check SANITIZE=1, whose
programs start much slower) only the first and the last call, no sticky
ones.  SOCKMAIL_LONG=1 sweeps every N (up to MAX_N per function) with
ENOSPC one-shot and sticky, with EIO over the sync, write, link and
rename calls, and samples EDQUOT.  Each flow prints one summary line
(runs, invariant violations, leftovers) to stderr; with
SOCKMAIL_FAULT_SUMMARY=<file> the lines are appended there too.

Known limits, not held against sockmail: libtdb ignores a failed sync
when it removes its recovery marker after a commit (see
libtdb_ignored_syncs; such runs are noted); a known imap-handler bug has
its own test (test_imap_failed_commit_releases_locks; fixed: imap_folder.c
cancels a transaction whose commit failed).  One fault per
run: what only a second, independent fault would reach is not swept.

Skipped under valgrind and when the shim is not built.
"""

import base64
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from dnsmasq import DnsmasqPerClass
from harness import (BUILD, SANITIZER_MARKS, TDBDUMP, HandlerProcess,
                     IMAPConn, Literal, ProtocolError, SMTPClient,
                     SockmailServer, crlf_to_lf, imap_folder_dir, imap_quote,
                     maildir_check_file, maildir_put, make_message,
                     parse_tdbdump, queue_id, split_delivered, uid_set_list)
from sink import Sink

SHIM = os.path.join(BUILD, "tests", "libfaultinject.so")
LONG = os.environ.get("SOCKMAIL_LONG", "") not in ("", "0")
SUMMARY_FILE = os.environ.get("SOCKMAIL_FAULT_SUMMARY")
VALGRIND = os.environ.get("SOCKMAIL_VALGRIND", "") not in ("", "0")

MAX_N = 60  # calls swept per function and errno
RUN_TIMEOUT = 20.0  # per reply and per exit: a hang, not a timing test
PASSWORD = "secret-Passw0rd"
ALICE = "alice@example.org"
BOB = "bob@example.org"
X = "x@remote.test"

# The functions the shim can fail, in the order they are swept.
CALLS = ("write", "writev", "pwrite", "fsync", "fdatasync", "msync",
         "rename", "renameat", "renameat2", "link", "linkat", "open",
         "openat", "creat", "fopen", "mkdir", "mkdirat", "unlink",
         "unlinkat", "rmdir", "ftruncate", "truncate", "fallocate",
         "posix_fallocate", "copy_file_range")
# Swept with EIO and EDQUOT too in the long run.
IO_CALLS = ("write", "pwrite", "fsync", "fdatasync", "msync", "link",
            "linkat", "rename", "renameat", "renameat2")


def _sanitized():
    """Is BUILD the ASan build (its programs start 10-50 times slower)?"""
    try:
        with open(os.path.join(BUILD, "smtp-handler"), "rb") as f:
            return b"libasan.so" in f.read()
    except OSError:
        return False


SANITIZED = _sanitized()
# calls per function in the default run: the first, the last, and some
# between; under ASan the first and the last, and no sticky faults
DEFAULT_SAMPLES = 2 if SANITIZED else 3


# The kinds of fault: (errno, sticky).  A one-shot fault fails one call
# and lets the cleanup after it work; a sticky one fails that call and
# every later one of the same function, as a full disk does.
MODES = (("ENOSPC", False), ("ENOSPC", True), ("EIO", False),
         ("EDQUOT", False))


def plan(count, mode, call):
    """The Ns to try for a function called count times in the clean run
    (a sweep also stops at the first N that does not fire)."""
    errno_name, sticky = mode
    if LONG:
        if errno_name == "ENOSPC":
            return list(range(1, min(count + 1, MAX_N) + 1))
        if call not in IO_CALLS:
            return []
        if errno_name == "EIO":
            return list(range(1, min(count, MAX_N) + 1))
        return sorted({1, max(1, count // 2), count})  # EDQUOT: as ENOSPC
    if errno_name != "ENOSPC":
        return []
    if sticky:  # a disk full from the first write, sync, link or rename on
        return [1] if call in IO_CALLS and not SANITIZED else []
    if count <= DEFAULT_SAMPLES:
        return list(range(1, count + 1))
    step = (count - 1) / (DEFAULT_SAMPLES - 1)
    return sorted({1 + round(i * step) for i in range(DEFAULT_SAMPLES)})


# ------------------------------------------------------------------ shim log

class ShimLog:
    """What the shim wrote: the calls that fired, the calls seen of the
    chosen function, the counts of all, errors, exit lines."""

    def __init__(self, path):
        self.fired = []  # (call, n, errno, pid, path)
        self.where = {}  # (call, n) -> the callers of a failed sync
        self.calls = 0
        self.counts = {}
        self.errors = []
        self.exits = 0
        try:
            with open(path, "r", errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            w = line.split(" ")
            if w[0] == "fired":
                call, _, n = w[1].partition("#")
                self.fired.append((call, int(n), w[2], int(w[3]),
                                   " ".join(w[4:])))
            elif w[0] == "where":
                call, _, n = w[1].partition("#")
                self.where[(call, int(n))] = w[3:]
            elif w[0] == "calls":
                self.calls = max(self.calls, int(w[2]))
            elif w[0] == "counts":
                self.exits += 1
                for kv in w[2:]:
                    k, _, v = kv.partition("=")
                    self.counts[k] = max(self.counts.get(k, 0), int(v))
            elif w[0] == "error":
                self.errors.append(line)


# ------------------------------------------------------------------ one run

class Run:
    """One run of a flow: what the client was told and what is wrong."""

    def __init__(self, flow, call=None, n=0, errno_name=None, sticky=False,
                 path=None):
        self.flow = flow
        self.call = call
        self.n = n
        self.errno_name = errno_name
        self.sticky = sticky
        self.path = path
        self.log = None
        self.violations = []
        self.leftovers = []
        self.steps = []  # (step, status, reply text) the client saw
        self.failed_at = None  # the step answered with a failure
        self.exit_status = "not started"
        self.transcript = ""
        self.syncs_checked = False

    def violation(self, text):
        self.violations.append(text)

    def ok(self, step):
        """Was step answered with success?"""
        return any(s == step and st == "ok" for s, st, _ in self.steps)

    def where(self):
        if self.call is None:
            return "%s (no fault)" % self.flow
        fired = self.log.fired[0][4] if self.log and self.log.fired else "?"
        return "%s %s#%d%s %s%s (%s)" % (
            self.flow, self.call, self.n, "+" if self.sticky else "",
            self.errno_name, " in " + self.path if self.path else "", fired)

    def describe(self):
        return "%s: %s\n    steps: %s\n    exit: %s" % (
            self.where(), "; ".join(self.violations),
            " ".join("%s=%s" % (s, st) for s, st, _ in self.steps),
            self.exit_status)


class StepFailed(Exception):
    """The server answered a step with a (temporary) failure."""


# A transaction on a new tdb through ctypes, run with the shim to learn
# which of libtdb's syncs it does not check.
TDB_PROBE = r"""
import ctypes, os, sys
class D(ctypes.Structure):
    _fields_ = [("dptr", ctypes.c_char_p), ("dsize", ctypes.c_size_t)]
lib = ctypes.CDLL("libtdb.so.1")
lib.tdb_open.restype = ctypes.c_void_p
lib.tdb_open.argtypes = [ctypes.c_char_p] + [ctypes.c_int] * 4
for f in ("tdb_transaction_start", "tdb_transaction_commit", "tdb_close"):
    getattr(lib, f).argtypes = [ctypes.c_void_p]
lib.tdb_store.argtypes = [ctypes.c_void_p, D, D, ctypes.c_int]
t = lib.tdb_open(sys.argv[1].encode(), 0, 0, os.O_RDWR | os.O_CREAT, 0o600)
ok = t and lib.tdb_transaction_start(t) == 0 and lib.tdb_store(
    t, D(b"k", 1), D(b"v", 1), 1) == 0 and lib.tdb_transaction_commit(t) == 0
print("committed" if ok else "failed")
"""

_libtdb_ignored = None


def tdb_frames(where):
    """The libtdb part of a failed sync's callers: which sync it is."""
    return tuple(f for f in where if f.startswith("libtdb."))


def libtdb_ignored_syncs():
    """The callers (tdb_frames) of the syncs libtdb does not check: one
    transaction on a fresh database, each fdatasync and msync made to fail
    in turn; a failure after which the commit still reports success is
    one.  In tdb 1.4 that is the sync after the commit that removes the
    recovery marker (_tdb_transaction_cancel's, whose result
    tdb_transaction_commit drops): should it fail and the machine crash,
    the next open would roll the committed transaction back.  Nothing
    above libtdb can see that, so a sweep does not hold it against
    sockmail; it notes it."""
    global _libtdb_ignored
    if _libtdb_ignored is not None:
        return _libtdb_ignored
    ignored = set()
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    d = tempfile.mkdtemp(prefix="sockmail-tdbprobe-")
    try:
        for call in ("fdatasync", "msync"):
            for n in range(1, 13):
                db, log = os.path.join(d, "p.tdb"), os.path.join(d, "log")
                for f in (db, log):
                    if os.path.exists(f):
                        os.unlink(f)
                env = dict(os.environ, LD_PRELOAD=SHIM, SOCKMAIL_FAULT_LOG=log,
                           SOCKMAIL_FAULT_CALL=call, SOCKMAIL_FAULT_N=str(n))
                p = subprocess.run([python, "-c", TDB_PROBE, db], env=env,
                                   capture_output=True, timeout=60)
                sl = ShimLog(log)
                fired = [k for k in sl.where if k == (call, n)]
                if not fired:
                    break
                if p.stdout.strip() == b"committed":
                    ignored.add(tdb_frames(sl.where[(call, n)]))
    finally:
        shutil.rmtree(d, True)
    _libtdb_ignored = ignored
    return ignored


LOCK_WAIT = 2.0  # a lock held this long by an idle session is never let go
BLOCKED = ("a fresh session waits for a lock that the failed session, idle, "
           "still holds")


def lock_waiter(pid):
    """Is pid waiting for a file lock (a "->" line in /proc/locks)?"""
    try:
        with open("/proc/locks") as f:
            for line in f:
                w = line.split()
                if "->" in w:
                    i = w.index("->")
                    if len(w) > i + 4 and w[i + 4] == str(pid):
                        return True
    except OSError:
        pass
    return False


def auth_plain(user):
    return base64.b64encode(("\0%s\0%s" % (user, PASSWORD)).encode()).decode()


def message_id(content):
    m = re.search(rb"^Message-ID: *<([^>]*)>", content, re.M | re.I)
    return m.group(1).decode() if m else None


def sync_tree(src, dst):
    """Make the tree dst what src is, touching only what differs (much
    faster than removing and copying it all: rmdir is slow here)."""
    have = set(os.listdir(dst))
    want = set(os.listdir(src))
    for n in have - want:
        p = os.path.join(dst, n)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
    for n in want:
        s, d = os.path.join(src, n), os.path.join(dst, n)
        if os.path.isdir(s):
            if os.path.isdir(d):
                sync_tree(s, d)
                continue
            if os.path.lexists(d):
                os.unlink(d)
            shutil.copytree(s, d, symlinks=True)
            continue
        if os.path.isdir(d):
            shutil.rmtree(d)
        if not same_file(s, d):
            if os.path.lexists(d):
                os.unlink(d)  # never write through a link the run made
            shutil.copy2(s, d)


def same_file(a, b):
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    if (sa.st_size, sa.st_mtime_ns, sa.st_mode) != (sb.st_size, sb.st_mtime_ns,
                                                    sb.st_mode) or sb.st_nlink != 1:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


_cheap_hash = None


def cheap_password(srv, address):
    """Give address PASSWORD as a SHA-512 crypt hash of 1000 rounds
    instead of sockmailctl's yescrypt (a login then costs 1 ms instead of
    100: the sweeps log in a thousand times).  users.tdb is written with
    tdbtool while nothing else has it open."""
    global _cheap_hash
    if _cheap_hash is None:
        lib = ctypes.CDLL("libcrypt.so.1")
        lib.crypt.restype = ctypes.c_char_p
        _cheap_hash = lib.crypt(PASSWORD.encode(), b"$6$rounds=1000$faultsalt$")
    subprocess.run(["tdbtool", os.path.join(srv.state_dir, "users.tdb"),
                    "store", "U:" + address, _cheap_hash.decode()],
                   check=True, capture_output=True, timeout=30)


# ------------------------------------------------------------------ flows

class Flow:
    """One flow under test: set up once (the state then saved as a
    template and put back before every run), then act(run, env) drives
    the program with the shim's environment and check(run) looks at the
    result."""

    name = None
    handler = None
    args = ()
    conf = {}
    ACK_STEP = None  # the step whose success acknowledges the data

    def durable_paths(self, r):
        """Regular expressions for the files and directories whose fsync
        the acknowledgement promises (with ACK_STEP answered OK, none of
        them may have failed a sync: a retried fsync proves nothing)."""
        return []

    def __init__(self, tc):
        self.tc = tc
        self.srv = None

    # -- the installation
    def make_server(self):
        conf = {"auth_fail_limit": "1000000", "delay_warning": "0"}
        conf.update(self.conf)
        self.srv = SockmailServer(conf)
        self.tc.addCleanup(self.srv.cleanup)
        self.tc.addCleanup(self.srv.stop)
        s = self.srv
        s.add_domain("example.org")
        for a in (ALICE, BOB):
            s.add_user(a)
            cheap_password(s, a)
        self.setup()
        self.template = os.path.join(s.dir, "template")
        os.mkdir(self.template)
        for d in (s.mail_dir, s.spool_dir, s.state_dir):
            shutil.copytree(d, os.path.join(self.template, os.path.basename(d)),
                            symlinks=True)

    def restore(self):
        s = self.srv
        for d in (s.mail_dir, s.spool_dir, s.state_dir):
            sync_tree(os.path.join(self.template, os.path.basename(d)), d)

    def setup(self):
        """Populate the installation beyond the users (the template)."""

    # -- one run
    def run(self, call=None, n=0, errno_name="ENOSPC", sticky=False,
            path=None):
        r = Run(self.name, call, n, errno_name, sticky, path)
        self.restore()
        log = os.path.join(self.srv.dir, "shim.log")
        try:
            os.unlink(log)
        except FileNotFoundError:
            pass
        # an ASan build (make check SANITIZE=1) accepts the shim before
        # its runtime only so; other programs ignore ASAN_OPTIONS
        env = {"LD_PRELOAD": SHIM, "SOCKMAIL_FAULT_LOG": log,
               "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                                ":verify_asan_link_order=0").lstrip(":")}
        if call is not None:
            env.update(SOCKMAIL_FAULT_CALL=call, SOCKMAIL_FAULT_N=str(n),
                       SOCKMAIL_FAULT_ERRNO=errno_name)
        if sticky:
            env["SOCKMAIL_FAULT_STICKY"] = "1"
        if path:
            env["SOCKMAIL_FAULT_PATH"] = path
        h_start = len(self.srv.stderr_text())
        r_start = len(self.srv.runner_stderr_text())
        self.act(r, env)
        r.log = ShimLog(log)
        text = (self.srv.stderr_text()[h_start:] +
                self.srv.runner_stderr_text()[r_start:])
        for m in SANITIZER_MARKS:
            if m in text:
                r.violation("sanitizer report: " + m)
        for e in r.log.errors:
            r.violation("shim: " + e)
        if r.exit_status is None:
            r.violation("hang: still running %ds after the client left"
                        % RUN_TIMEOUT)
        elif isinstance(r.exit_status, int) and r.exit_status < 0:
            r.violation("killed by signal %d" % -r.exit_status)
        elif r.log.exits == 0 and r.exit_status != "not started":
            r.violation("no exit line from the shim: ended without exit()")
        try:
            self.check(r)
            if not r.syncs_checked:
                self.check_syncs(r)
        except Exception as e:  # noqa: BLE001 - a check that cannot run
            r.violation("check failed: %s: %s" % (type(e).__name__, e))
        return r

    def check_syncs(self, r):
        """Nothing acknowledged rests on a sync that failed -- except the
        one libtdb itself ignores (see libtdb_ignored_syncs)."""
        if not self.acked(r):
            return
        pats = [re.compile(p) for p in self.durable_paths(r)]
        for call, n, _, _, path in r.log.fired:
            if call not in ("fsync", "fdatasync", "msync"):
                continue
            path = path.replace(" (deleted)", "")
            if not any(p.search(path) for p in pats):
                continue
            if tdb_frames(r.log.where.get((call, n), ())) in libtdb_ignored_syncs():
                note = "libtdb ignored its failed %s (recovery marker)" % call
                if note not in r.leftovers:
                    r.leftovers.append(note)
                continue
            r.violation("%s although %s#%d of %s failed"
                        % (self.acked(r), call, n, path))

    def acked(self, r):
        """What acknowledged the data (a true string), or None."""
        if self.ACK_STEP is not None and r.ok(self.ACK_STEP):
            return "%s answered OK" % self.ACK_STEP
        return None

    def handler_run(self, r, env, dialog):
        """Start the handler with env, run dialog(port) and wait for its
        end; the dialog records steps in r."""
        h = HandlerProcess(self.srv, self.handler, self.args, env)
        try:
            dialog(r, h.port)
        finally:
            status = h.wait(RUN_TIMEOUT)
            r.exit_status = status

    def act(self, r, env):
        raise NotImplementedError

    def check(self, r):
        raise NotImplementedError

    # -- shared checks
    def tmp_leftovers(self, r, *dirs):
        for d in dirs:
            tmp = os.path.join(d, "tmp")
            for n in (os.listdir(tmp) if os.path.isdir(tmp) else []):
                left = os.path.relpath(os.path.join(tmp, n), self.srv.dir)
                if left not in r.leftovers:
                    r.leftovers.append(left)

    def queue_state(self, r):
        """{id: Envelope} with every envelope checked against its message
        file; orphaned message files are leftovers."""
        try:
            envs = self.srv.queue_envelopes()
        except AssertionError as e:  # tdbdump failed or a record is bad
            r.violation("queue.tdb: %s" % e)
            return {}
        p = self.srv.ctl("queue", "list", check=False)
        if p.returncode != 0:
            r.violation("sockmailctl queue list: exit %d: %s" % (
                p.returncode, p.stderr.decode("utf-8", "replace")[:200]))
        msgs = set(self.srv.queue_messages())
        for qid, env in envs.items():
            if qid not in msgs:
                r.violation("envelope %s without its message file" % qid)
                continue
            data = self.srv.queue_message(qid)
            if len(data) != env.size:
                r.violation("queued %s is %d bytes, the envelope says %d"
                            % (qid, len(data), env.size))
        for m in sorted(msgs - set(envs)):
            if "spool/msg/" + m not in r.leftovers:
                r.leftovers.append("spool/msg/" + m)
        self.tmp_leftovers(r, self.srv.spool_dir)
        return envs

    def new_files(self, r, address):
        """[(name, content)] of address's new/, each checked for the
        Maildir invariants (a violation if one is half written)."""
        out = []
        d = os.path.join(self.srv.maildir(address), "new")
        for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            with open(os.path.join(d, n), "rb") as f:
                c = f.read()
            try:
                maildir_check_file(self.tc, n, c)
            except AssertionError as e:
                r.violation("%s new/%s: %s" % (address, n, e))
            out.append((n, c))
        return out


class SMTPFlow(Flow):
    """An SMTP dialog, one step per command; a failure ends it with QUIT."""

    handler = "smtp-handler"

    def step(self, r, c, name, line=None, data=None):
        try:
            if data is not None:
                reply = c.send_data(data)
            elif line is None:
                reply = c.read_reply()
            else:
                reply = c.cmd(line)
        except (ProtocolError, OSError) as e:
            r.steps.append((name, "closed", str(e)[:200]))
            r.violation("%s: no reply (%s)" % (name, str(e)[:100]))
            raise StepFailed(name)
        st = "ok" if reply.code < 400 else "temp" if reply.code < 500 else "perm"
        r.steps.append((name, st, reply.line))
        if st == "perm":
            r.violation("%s answered %r: a permanent error for a fault"
                        % (name, reply.line))
        if st != "ok":
            r.failed_at = name
            raise StepFailed(name)
        return reply

    def dialog(self, r, port):
        c = SMTPClient(port, timeout=RUN_TIMEOUT)
        try:
            try:
                self.steps(r, c)
            except StepFailed:
                pass
            if not c.closed_by_peer:
                try:
                    c.send(b"QUIT\r\n")
                    c.read_reply()
                except (ProtocolError, OSError):
                    pass
        finally:
            r.transcript = c.dump()
            c.close()

    def act(self, r, env):
        self.handler_run(r, env, self.dialog)


MESSAGE = make_message("fault test", body=b"Line one.\r\n.dot line\r\n"
                       + b"x" * 200 + b"\r\nlast line\r\n",
                       extra=b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n")


class InboundFlow(SMTPFlow):
    """MX: one message to alice and bob (one file, two links)."""

    name = "smtp-inbound"
    ACK_STEP = "dot"

    def durable_paths(self, r):
        """The message file (written in a tmp/), the new/ of every user
        who has the copy there, and the queue if anyone was queued."""
        spool = re.escape(self.srv.spool_dir)
        out = [spool + r"/tmp/"]
        for a in (ALICE, BOB):
            md = re.escape(self.srv.maildir(a))
            out.append(md + r"/tmp/")
            if os.listdir(os.path.join(self.srv.maildir(a), "new")):
                out.append(md + r"/new$")
        if self.srv.queue_messages():
            out += [spool + r"$", spool + r"/msg$", spool + r"/queue\.tdb$"]
        return out

    def steps(self, r, c):
        self.step(r, c, "greeting")
        self.step(r, c, "EHLO", "EHLO client.test")
        self.step(r, c, "MAIL", "MAIL FROM:<x@remote.example>")
        self.step(r, c, "RCPT1", "RCPT TO:<%s>" % ALICE)
        self.step(r, c, "RCPT2", "RCPT TO:<%s>" % BOB)
        self.step(r, c, "DATA", "DATA")
        self.step(r, c, "dot", data=MESSAGE)

    def check(self, r):
        envs = self.queue_state(r)
        for a in (ALICE, BOB):
            files = self.new_files(r, a)
            for n, c in files:
                try:
                    _, _, body = split_delivered(self.tc, c)
                    if body != crlf_to_lf(MESSAGE):
                        r.violation("%s new/%s: not the message sent" % (a, n))
                except AssertionError as e:
                    r.violation("%s new/%s: %s" % (a, n, e))
            queued = [e for e in envs.values() for rc in e.rcpts
                      if rc.address == a and rc.state == "pending"]
            for e in queued:
                if not self.srv.queue_message(e.id).endswith(crlf_to_lf(MESSAGE)):
                    r.violation("queued %s for %s: not the message sent" % (e.id, a))
            have = len(files) + len(queued)
            if r.ok("dot") and have != 1:
                r.violation("250 but %s has %d copies (%d in new/, %d queued)"
                            % (a, have, len(files), len(queued)))
            if not r.ok("dot") and have:
                r.violation("no 250 but %s has %d copies" % (a, have))
            self.tmp_leftovers(r, self.srv.maildir(a))


class EnqueueFlow(SMTPFlow):
    """Submission of a message to a remote recipient: the queue."""

    name = "smtp-enqueue"
    args = ("--submission",)
    ACK_STEP = "dot"

    def durable_paths(self, r):
        return [r""]  # nothing else is written: every sync counts

    def steps(self, r, c):
        self.step(r, c, "greeting")
        self.step(r, c, "EHLO", "EHLO client.test")
        self.step(r, c, "AUTH", "AUTH PLAIN " + auth_plain(ALICE))
        self.step(r, c, "MAIL", "MAIL FROM:<%s>" % ALICE)
        self.step(r, c, "RCPT", "RCPT TO:<%s>" % X)
        self.step(r, c, "DATA", "DATA")
        reply = self.step(r, c, "dot", data=self.message())
        r.qid = queue_id(reply)

    @staticmethod
    def message():
        return make_message("fault enqueue", sender=ALICE.encode(), to=X.encode(),
                            extra=b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n")

    def check(self, r):
        envs = self.queue_state(r)
        if r.ok("dot"):
            env = envs.get(r.qid)
            if env is None:
                r.violation("250 (queued as %s) but no such envelope" % r.qid)
            elif [(x.address, x.state) for x in env.rcpts] != [(X, "pending")]:
                r.violation("envelope %s: recipients %r" % (r.qid, env.rcpts))
            elif not self.srv.queue_message(r.qid).endswith(
                    crlf_to_lf(self.message())):
                r.violation("queued %s: not the message sent" % r.qid)
            if len(envs) != 1:
                r.violation("%d envelopes for one message" % len(envs))
        elif envs:
            r.violation("no 250 but queued: %r" % list(envs))
        for a in (ALICE, BOB):
            if self.new_files(r, a):
                r.violation("a delivery to " + a)


class RunnerFlow(Flow):
    """The queue runner on one message from alice to x@remote.test that
    the remote (the sink) answers as RCPT says; then a clean run at a
    later clock must finish it."""

    dns = None  # one Dnsmasq for the test class (set by the test)
    RCPT = None
    RECOVER_RCPT = None  # what the sink says in the clean run after

    def make_server(self):
        self.sink = Sink()
        self.sink.start()
        self.tc.addCleanup(self.sink.stop)
        self.conf = {"dns_server": "127.0.0.1:%d" % self.dns.port,
                     "outbound_port": str(self.sink.port),
                     "postmaster": "postmaster@example.org"}
        super().make_server()

    def setup(self):
        s = self.srv
        s.add_alias("postmaster@example.org", BOB)
        msg = EnqueueFlow.message()
        s.start(["--submission"])
        c = s.connect()
        c.start()
        self.tc.assertEqual(c.cmd("AUTH PLAIN " + auth_plain(ALICE)).code, 235)
        mail, rr, data, final = c.transaction(ALICE, [X], msg)
        self.qid = queue_id(final)
        c.cmd("QUIT")
        c.close()
        s.stop()
        self.now = s.queue_envelopes()[self.qid].arrival

    def act(self, r, env):
        self.sink.set(rcpt_default=self.RCPT)
        r.sink_before = len(self.sink.transactions)
        r.sink_conns = len(self.sink.connections)
        start = len(self.srv.runner_stderr_text())
        proc = self.srv.start_runner(self.now, env)
        try:
            r.exit_status = proc.wait(timeout=RUN_TIMEOUT * 3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            r.exit_status = None
        r.steps.append(("run", "ok" if r.exit_status == 0 else "error", ""))
        out = self.srv.runner_stderr_text()[start:]
        r.transcript = out
        if "died of signal" in out:
            r.violation("a worker died: " + re.search(r".*died of signal.*", out).group(0))
        self.sink.wait_idle()

    def dsn_files(self, r):
        """Bounces for alice: (in her new/, queued for her)."""
        mine = [c for n, c in self.new_files(r, ALICE)]
        for c in mine:
            if not c.startswith(b"Return-Path: <>\n") or b"multipart/report" not in c:
                r.violation("alice got something that is not a DSN: %r" % c[:200])
        return mine

    def check(self, r):
        envs = self.queue_state(r)
        orig = envs.get(self.qid)
        dsn_envs = [e for e in envs.values() if e.id != self.qid]
        delivered = self.dsn_files(r)
        self.check_after_fault(r, orig, dsn_envs, delivered)
        self.tmp_leftovers(r, self.srv.maildir(ALICE))
        self.check_syncs(r)  # on the state the fault left
        r.syncs_checked = True
        if r.violations:
            return
        # A clean run later finishes what the faulted one left.
        self.sink.set(rcpt_default=self.RECOVER_RCPT)
        before = len(self.sink.accepted())
        rc, out = self.srv.run_runner(self.now + 86400)
        self.sink.wait_idle()
        envs = self.queue_state(r)
        if envs:
            r.violation("after a clean run the queue still holds %r" % envs)
        self.check_recovered(r, len(self.sink.accepted()) - before,
                             self.dsn_files(r))

    def check_after_fault(self, r, orig, dsn_envs, delivered):
        raise NotImplementedError

    def check_recovered(self, r, accepted, delivered):
        raise NotImplementedError


class BounceFlow(RunnerFlow):
    """A permanent failure: the runner records it, queues a bounce to
    alice, delivers it into her Maildir in its second pass and removes
    the message."""

    name = "runner-bounce"
    RCPT = RECOVER_RCPT = "550 5.1.1 No such user"

    def check_after_fault(self, r, orig, dsn_envs, delivered):
        bounces = len(dsn_envs) + len(delivered)
        rc = orig.rcpts[0] if orig is not None else None
        if orig is None or (rc.state == "failed" and rc.dsn_sent):
            if bounces == 0:
                r.violation("the recipient is %s but no bounce exists" %
                            ("gone" if orig is None else "bounced"))
        elif rc.state not in ("pending", "failed"):
            r.violation("recipient state %r" % rc)
        for e in dsn_envs:
            if [x.address for x in e.rcpts] != [ALICE] or e.sender != "":
                r.violation("odd DSN envelope %r" % e)
        if orig is None or (rc.state == "failed" and rc.dsn_sent):
            r.bounce_acked = "the bounce counted as sent"

    def acked(self, r):
        return getattr(r, "bounce_acked", None)

    def durable_paths(self, r):
        """The bounce: its file (written in spool/tmp/), its place in
        msg/, or its copy in alice's new/.  Not queue.tdb: a failed store
        of dsn_sent costs a second bounce, never the first."""
        spool = re.escape(self.srv.spool_dir)
        md = re.escape(self.srv.maildir(ALICE))
        out = [spool + r"/tmp/"]  # where the bounce is written
        if len(self.srv.queue_messages()) > 1:
            out.append(spool + r"/msg$")
        if os.listdir(os.path.join(self.srv.maildir(ALICE), "new")):
            out += [md + r"/tmp/", md + r"/new$"]
        return out

    def check_recovered(self, r, accepted, delivered):
        if accepted:
            r.violation("the sink accepted %d messages" % accepted)
        if not delivered:
            r.violation("after a clean run alice has no bounce")
        elif len(delivered) > 1:
            r.leftovers.append("duplicate bounces: %d" % len(delivered))


class TempFailFlow(RunnerFlow):
    """A temporary failure: the runner records it in the envelope; the
    message stays queued (delay warnings are off); a later clean run
    delivers it to the sink."""

    name = "runner-tempfail"
    RCPT = "451 4.3.0 Try again later"
    RECOVER_RCPT = "250 2.1.5 Ok"

    def check_after_fault(self, r, orig, dsn_envs, delivered):
        if orig is None:
            r.violation("a temporarily failed message left the queue")
            return
        rc = orig.rcpts[0]
        if rc.state != "pending" or rc.attempts > 1:
            r.violation("recipient after one attempt: %r" % rc)
        if dsn_envs or delivered:
            r.violation("a DSN for a temporary failure")

    def check_recovered(self, r, accepted, delivered):
        if accepted != 1:
            r.violation("the clean run delivered %d copies" % accepted)


class POP3Flow(Flow):
    """USER/PASS, RETR 1, DELE 2, DELE 3, QUIT over four messages in new/
    (m4 is left alone).  A failure before QUIT drops the connection."""

    name = "pop3-update"
    handler = "pop3-handler"
    ACK_STEP = "QUIT"

    def durable_paths(self, r):
        return [re.escape(self.srv.maildir(ALICE)) + r"/(new|cur)$"]
    MIDS = ("m1@test", "m2@test", "m3@test", "m4@test")

    def setup(self):
        for i, mid in enumerate(self.MIDS):
            maildir_put(self.srv, ALICE, self.content(mid), when=1700000000 + i)

    @staticmethod
    def content(mid):
        return ("From: <x@remote.example>\nSubject: %s\nMessage-ID: <%s>\n\n"
                "Body of %s.\n" % (mid, mid, mid)).encode()

    def step(self, r, c, name, line, multi=False):
        try:
            if line is not None:
                c.send(line + b"\r\n")
            reply = c.read_line()
            if multi and reply.startswith(b"+OK"):
                while c.read_line() != b".\r\n":
                    pass
        except (ProtocolError, OSError) as e:
            r.steps.append((name, "closed", str(e)[:200]))
            r.violation("%s: no reply (%s)" % (name, str(e)[:100]))
            raise StepFailed(name)
        ok = reply.startswith(b"+OK")
        r.steps.append((name, "ok" if ok else "temp", reply[:-2].decode("utf-8", "replace")))
        if not ok:
            if not reply.startswith(b"-ERR"):
                r.violation("%s: not +OK/-ERR: %r" % (name, reply))
            r.failed_at = name
            raise StepFailed(name)

    def dialog(self, r, port):
        c = SMTPClient(port, timeout=RUN_TIMEOUT)  # its line reader
        try:
            self.step(r, c, "greeting", None)
            self.step(r, c, "USER", b"USER " + ALICE.encode())
            self.step(r, c, "PASS", b"PASS " + PASSWORD.encode())
            self.step(r, c, "RETR", b"RETR 1", multi=True)
            self.step(r, c, "DELE2", b"DELE 2")
            self.step(r, c, "DELE3", b"DELE 3")
            self.step(r, c, "QUIT", b"QUIT")
        except StepFailed:
            pass
        finally:
            r.transcript = c.dump()
            c.close()

    def act(self, r, env):
        self.handler_run(r, env, self.dialog)

    def check(self, r):
        root = self.srv.maildir(ALICE)
        where = {mid: [] for mid in self.MIDS}
        for sub in ("new", "cur"):
            for n in sorted(os.listdir(os.path.join(root, sub))):
                with open(os.path.join(root, sub, n), "rb") as f:
                    c = f.read()
                mid = message_id(c)
                if mid not in where or c != self.content(mid):
                    r.violation("%s/%s: not one of the messages" % (sub, n))
                    continue
                where[mid].append((sub, n))
        for mid, places in where.items():
            if len(places) > 1:
                r.violation("%s is there %d times: %r" % (mid, len(places), places))
        quit_ok = r.ok("QUIT")
        if quit_ok:
            for mid in ("m2@test", "m3@test"):
                if where[mid]:
                    r.violation("+OK to QUIT but DELEted %s is still there" % mid)
        elif "QUIT" not in [s for s, _, _ in r.steps]:
            for mid in ("m2@test", "m3@test"):
                if not where[mid]:
                    r.violation("no QUIT but %s was deleted" % mid)
        for mid in ("m1@test", "m4@test"):
            if not where[mid]:
                r.violation("%s (not DELEted) is gone" % mid)
        if where["m4@test"] and where["m4@test"][0][0] != "new":
            r.violation("m4 (not retrieved) moved to cur/")
        if quit_ok and where["m1@test"] and where["m1@test"][0][0] == "new":
            r.leftovers.append("m1 retrieved but not marked seen")
        self.tmp_leftovers(r, root)


# ------------------------------------------------------------------ IMAP

def imap_message(mid, subject=None):
    return ("From: <x@remote.example>\r\nSubject: %s\r\nMessage-ID: <%s>\r\n"
            "\r\nBody of %s.\r\n" % (subject or mid, mid, mid)).encode()


class IMAPFlow(Flow):
    """LOGIN, SELECT INBOX, the command, LOGOUT over INBOX with three
    messages m1, m2, m3 (UIDs 1-3, given by a clean session at setup).
    check() compares the folders' files with what a fresh session
    SELECTs and with the UID databases, then calls expect()."""

    handler = "imap-handler"
    FOLDERS = ("INBOX",)  # the folders the command touches
    INBOX_FLAGS = ("", "", "")  # Maildir flags of m1, m2, m3

    def setup(self):
        for i, fl in enumerate(self.INBOX_FLAGS):
            mid = "m%d@test" % (i + 1)
            maildir_put(self.srv, ALICE, crlf_to_lf(imap_message(mid)),
                        sub="cur", flags=fl, when=1700000000 + i)
        port = self.srv.start(handler="imap-handler")
        c = IMAPConn(port)
        c.read_response()
        c.ok("LOGIN %s %s" % (imap_quote(ALICE), imap_quote(PASSWORD)))
        self.before = {}
        for folder in self.FOLDERS:
            self.before[folder] = self.view(c, folder)
        c.ok("LOGOUT")
        c.close()
        self.srv.stop()

    # -- talking
    def command(self, r, c, name, *parts):
        try:
            res = c.command(*parts)
        except (ProtocolError, OSError) as e:
            if c.bye is not None:
                r.steps.append((name, "bye", c.bye.decode("utf-8", "replace")))
                r.failed_at = name
                raise StepFailed(name)
            r.steps.append((name, "closed", str(e)[:200]))
            r.violation("%s: no completion (%s)" % (name, str(e)[:100]))
            raise StepFailed(name)
        text = res.text.decode("utf-8", "replace")
        st = {"OK": "ok", "NO": "temp"}.get(res.status, "bad")
        r.steps.append((name, st, text))
        if st == "bad":
            r.violation("%s answered BAD %s" % (name, text))
        if st != "ok":
            r.failed_at = name
            r.partial = res  # its untagged responses count too
            raise StepFailed(name)
        return res

    def dialog(self, r, port):
        c = IMAPConn(port, timeout=RUN_TIMEOUT)
        try:
            g = c.read_response()
            if not g.startswith(b"* OK"):
                r.steps.append(("greeting", "bye" if g.startswith(b"* BYE")
                                else "bad", g.decode("utf-8", "replace")))
                if not g.startswith(b"* BYE"):
                    r.violation("greeting %r" % g)
                r.failed_at = "greeting"
                return
            r.steps.append(("greeting", "ok", ""))
            self.command(r, c, "LOGIN", "LOGIN %s %s" % (imap_quote(ALICE),
                                                         imap_quote(PASSWORD)))
            r.select = self.command(r, c, "SELECT", "SELECT INBOX")
            r.result = self.act_command(r, c)
        except StepFailed:
            pass
        except (ProtocolError, OSError) as e:
            r.violation("connection: %s" % str(e)[:200])
        finally:
            # What another session sees while this one is still logged
            # in: a session that failed must not hold the folder's locks.
            r.views = self.fresh_views(r)
            try:
                if c.bye is None:
                    c.command("LOGOUT")
            except (ProtocolError, OSError):
                pass
            r.transcript = c.dump()
            c.close()

    def act(self, r, env):
        r.result = r.partial = r.views = None
        self.handler_run(r, env, self.dialog)

    # -- looking
    def view(self, c, folder):
        """{mid: (uid, set of flags)} and UIDVALIDITY of folder as a
        session sees it."""
        res = c.ok("SELECT " + imap_quote(folder))
        m = re.search(rb"\[UIDVALIDITY (\d+)\]", b" ".join(res.untagged))
        exists = res.numbers("EXISTS")
        out = {}
        if exists and exists[-1] > 0:
            f = c.ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            for fd in f.fetches().values():
                hdr = fd.items.get("BODY[HEADER.FIELDS (MESSAGE-ID)]") or b""
                mid = message_id(hdr)
                uid = int(fd.items["UID"])
                if mid in out:
                    raise AssertionError("%s listed twice in %s" % (mid, folder))
                out[mid] = (uid, fd.flags() - {"\\Recent"})
            if len(out) != exists[-1]:
                raise AssertionError("%s: EXISTS %d, %d fetched" % (
                    folder, exists[-1], len(out)))
        return {"uidvalidity": int(m.group(1)) if m else None, "msgs": out}

    def folder_files(self, r, folder):
        """{mid: [(sub, name)]} of the message files; a file that is not a
        whole message is a violation."""
        root = imap_folder_dir(self.srv, ALICE, folder)
        out = {}
        for sub in ("new", "cur"):
            d = os.path.join(root, sub)
            for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                with open(os.path.join(d, n), "rb") as f:
                    c = f.read()
                mid = message_id(c)
                if mid is None or crlf_to_lf(imap_message(mid, self.subject(mid))) != c:
                    r.violation("%s %s/%s is not a whole message: %r"
                                % (folder, sub, n, c[:100]))
                    continue
                out.setdefault(mid, []).append((sub, n))
        self.tmp_leftovers(r, root)
        return out

    def subject(self, mid):
        return None

    def uid_db(self, r, folder):
        """{base name: uid} and uidnext from the folder's tdb."""
        path = os.path.join(imap_folder_dir(self.srv, ALICE, folder),
                            "sockmail-imap.tdb")
        if not os.path.exists(path):
            return {}, None
        p = subprocess.run([TDBDUMP, path], capture_output=True, timeout=30)
        if p.returncode != 0:
            r.violation("%s: tdbdump failed: %r" % (folder, p.stderr[:200]))
            return {}, None
        uids, uidnext = {}, None
        for k, v in parse_tdbdump(p.stdout):
            if k.startswith(b"u:") and len(v) == 4:
                uids[k[2:].decode()] = int.from_bytes(v, "little")
            elif k == b"uidnext" and len(v) == 4:
                uidnext = int.from_bytes(v, "little")
        return uids, uidnext

    def fresh_views(self, r):
        """{folder: view} from a fresh session without the shim, or None
        when it failed.  It runs while the faulted session is still
        logged in and idle: if it waits for a lock the faulted session
        holds, it would wait until that one logs out (a watchdog sees it
        in /proc/locks and ends it)."""
        views = {}
        h = HandlerProcess(self.srv, "imap-handler")
        c = IMAPConn(h.port, timeout=RUN_TIMEOUT)
        blocked = []
        stop = threading.Event()

        def watchdog():
            try:
                pid = h.started().pid
            except AssertionError:
                return
            since = None
            while not stop.wait(0.05):
                if not lock_waiter(pid):
                    since = None
                elif since is None:
                    since = time.monotonic()
                elif time.monotonic() - since > LOCK_WAIT:
                    blocked.append(pid)
                    h.kill()
                    return
        t = threading.Thread(target=watchdog, daemon=True)
        t.start()
        try:
            c.read_response()
            c.ok("LOGIN %s %s" % (imap_quote(ALICE), imap_quote(PASSWORD)))
            for f in self.FOLDERS:
                views[f] = self.view(c, f)
            c.command("LOGOUT")
        except (AssertionError, OSError) as e:  # ProtocolError is one
            views = None
            if not blocked:
                r.violation("fresh session: %s" % str(e)[:300])
        finally:
            stop.set()
            t.join()
            c.close()
            status = h.wait(RUN_TIMEOUT)
        if blocked:
            r.violation(BLOCKED)
        elif status != 0:
            r.violation("the fresh session did not exit cleanly (%r)" % status)
        return views

    def check(self, r):
        files = {f: self.folder_files(r, f) for f in self.FOLDERS}
        for f, mids in files.items():
            for mid, places in mids.items():
                if len(places) > 1:
                    r.violation("%s: %s is there %d times" % (f, mid, len(places)))
        views = r.views
        if views is None:
            return  # a violation already; nothing to compare with
        for f in self.FOLDERS:
            v = views[f]["msgs"]
            if set(v) != set(files[f]):
                r.violation("%s: fresh SELECT lists %s, the files are %s"
                            % (f, sorted(v), sorted(files[f])))
            uids = [u for u, _ in v.values()]
            if len(set(uids)) != len(uids):
                r.violation("%s: UIDs not distinct: %r" % (f, v))
            db, uidnext = self.uid_db(r, f)
            for mid, places in files[f].items():
                base = places[0][1].split(":", 1)[0]
                if mid in v and db.get(base) != v[mid][0]:
                    r.violation("%s: %s has UID %d, the database says %r"
                                % (f, mid, v[mid][0], db.get(base)))
            if uidnext is not None and uids and max(uids) >= uidnext:
                r.violation("%s: UID %d >= UIDNEXT %d" % (f, max(uids), uidnext))
        self.expect(r, files, views)

    def unchanged(self, r, views, folder, mids=None):
        """folder shows mids (default: all it had) as before the run."""
        before = self.before[folder]
        now = views[folder]
        if now["uidvalidity"] != before["uidvalidity"]:
            r.violation("%s: UIDVALIDITY changed" % folder)
        for mid, (uid, flags) in before["msgs"].items():
            if mids is not None and mid not in mids:
                continue
            if now["msgs"].get(mid) != (uid, flags):
                r.violation("%s: %s was %r, now %r" % (
                    folder, mid, (uid, flags), now["msgs"].get(mid)))

    def expunged_mids(self, r):
        """The messages the faulted session was told are expunged."""
        seq = sorted(self.before["INBOX"]["msgs"],
                     key=lambda m: self.before["INBOX"]["msgs"][m][0])
        gone = []
        res = r.result if r.result is not None else r.partial
        for n in res.numbers("EXPUNGE") if res is not None else []:
            gone.append(seq.pop(n - 1))
        return gone


class AppendFlow(IMAPFlow):
    """APPEND to Sent (\\Seen $Label1) with INBOX selected; Sent has no
    UID database yet."""

    name = "imap-append"
    FOLDERS = ("INBOX", "Sent")
    ACK_STEP = "APPEND"

    def durable_paths(self, r):
        return [r"/\.Sent(/|$)"]  # its tmp/ file, cur/, database
    NEW = "appended@test"

    def act_command(self, r, c):
        return self.command(r, c, "APPEND", "APPEND Sent (\\Seen $Label1) ",
                            Literal(imap_message(self.NEW)))

    def expect(self, r, files, views):
        self.unchanged(r, views, "INBOX")
        sent = views["Sent"]["msgs"]
        if r.ok("APPEND"):
            m = re.search(rb"APPENDUID (\d+) (\d+)", r.result.text)
            if m is None:
                r.violation("APPEND OK without APPENDUID")
            elif self.NEW not in sent:
                r.violation("APPEND OK but the message is not in Sent")
            elif (int(m.group(1)), int(m.group(2))) != (
                    views["Sent"]["uidvalidity"], sent[self.NEW][0]):
                r.violation("APPENDUID %s %s but Sent shows %r/%r" % (
                    m.group(1), m.group(2), views["Sent"]["uidvalidity"],
                    sent[self.NEW]))
            elif sent[self.NEW][1] != {"\\Seen", "$Label1"}:
                r.violation("appended with flags %r" % sent[self.NEW][1])
        elif files["Sent"]:
            r.violation("APPEND failed but Sent has %r" % files["Sent"])


class CopyFlow(IMAPFlow):
    """COPY 1:2 Archive (no UID database there yet)."""

    name = "imap-copy"
    FOLDERS = ("INBOX", "Archive")
    ACK_STEP = "COPY"

    def durable_paths(self, r):
        return [r"/\.Archive(/|$)"]
    INBOX_FLAGS = ("S", "FS", "")

    def act_command(self, r, c):
        return self.command(r, c, "COPY", "COPY 1:2 Archive")

    def copyuid(self, r, text):
        m = re.search(rb"COPYUID (\d+) ([\d:,]+) ([\d:,]+)", text)
        if m is None:
            return None
        return int(m.group(1)), dict(zip(uid_set_list(m.group(2)),
                                         uid_set_list(m.group(3))))

    def check_copied(self, r, views, folder, cu):
        """The copies are in folder with the UIDs and flags COPYUID says."""
        validity, mapping = cu
        if validity != views[folder]["uidvalidity"]:
            r.violation("COPYUID validity %d, %s has %r" % (
                validity, folder, views[folder]["uidvalidity"]))
        for mid in ("m1@test", "m2@test"):
            src, flags = self.before["INBOX"]["msgs"][mid]
            got = views[folder]["msgs"].get(mid)
            if got != (mapping.get(src), flags):
                r.violation("%s: %s copied as %r, COPYUID says %r %r" % (
                    folder, mid, got, mapping.get(src), flags))

    def expect(self, r, files, views):
        self.unchanged(r, views, "INBOX")
        if r.ok("COPY"):
            cu = self.copyuid(r, r.result.text)
            if cu is None:
                r.violation("COPY OK without COPYUID")
            else:
                self.check_copied(r, views, "Archive", cu)
            if len(files["Archive"]) != 2:
                r.violation("Archive has %r" % files["Archive"])
        elif files["Archive"]:
            r.violation("COPY failed but Archive has %r" % files["Archive"])


class MoveFlow(CopyFlow):
    """MOVE 1:2 Trash: m3 stays."""

    name = "imap-move"
    FOLDERS = ("INBOX", "Trash")
    ACK_STEP = "MOVE"

    def durable_paths(self, r):
        # the copies, and the expunge from INBOX's cur/ (forgetting the
        # UIDs in INBOX's database is best effort: not promised)
        return [r"/\.Trash(/|$)", r"/alice/cur$"]

    def act_command(self, r, c):
        return self.command(r, c, "MOVE", "MOVE 1:2 Trash")

    def expect(self, r, files, views):
        self.unchanged(r, views, "INBOX", {"m3@test"})
        inbox, trash = files["INBOX"], files["Trash"]
        for mid in ("m1@test", "m2@test", "m3@test"):
            if mid not in inbox and mid not in trash:
                r.violation("%s is lost" % mid)
        if "m3@test" in trash:
            r.violation("m3 was moved")
        res = r.result if r.ok("MOVE") else r.partial
        untagged = b" ".join(res.untagged) if res is not None else b""
        cu = self.copyuid(r, untagged)
        gone = self.expunged_mids(r)
        if r.ok("MOVE"):
            if cu is None:
                r.violation("MOVE OK without COPYUID")
            else:
                self.check_copied(r, views, "Trash", cu)
            if sorted(gone) != ["m1@test", "m2@test"]:
                r.violation("MOVE OK but EXPUNGE for %r" % gone)
        elif cu is None and trash:
            r.violation("MOVE failed before COPYUID but Trash has %r" % trash)
        elif cu is not None:
            self.check_copied(r, views, "Trash", cu)
        for mid in ("m1@test", "m2@test"):
            if mid in gone and mid in inbox:
                r.violation("%s expunged but still in INBOX" % mid)
            if mid not in gone and mid not in inbox:
                r.violation("%s left INBOX without an EXPUNGE" % mid)


class ExpungeFlow(IMAPFlow):
    """EXPUNGE with m1 and m2 \\Deleted: m3 stays."""

    name = "imap-expunge"
    INBOX_FLAGS = ("ST", "T", "S")
    ACK_STEP = "EXPUNGE"

    def durable_paths(self, r):
        return [r"/alice/cur$"]

    def act_command(self, r, c):
        return self.command(r, c, "EXPUNGE", "EXPUNGE")

    def expect(self, r, files, views):
        self.unchanged(r, views, "INBOX", {"m3@test"})
        inbox = files["INBOX"]
        gone = self.expunged_mids(r)
        if "m3@test" in gone or "m3@test" not in inbox:
            r.violation("m3 (not \\Deleted) expunged")
        if r.ok("EXPUNGE") and sorted(gone) != ["m1@test", "m2@test"]:
            r.violation("EXPUNGE OK but EXPUNGE responses for %r" % gone)
        for mid in ("m1@test", "m2@test"):
            if mid in gone and mid in inbox:
                r.violation("%s expunged but still there" % mid)
            if mid not in gone and mid not in inbox:
                r.violation("%s gone without an EXPUNGE response" % mid)
            if mid not in gone and mid in inbox:
                self.unchanged(r, views, "INBOX", {mid})


class StoreFlow(IMAPFlow):
    """STORE 1:2 +FLAGS (\\Flagged $Work): a new keyword too."""

    name = "imap-store"
    INBOX_FLAGS = ("S", "", "S")
    ACK_STEP = "STORE"

    def durable_paths(self, r):
        # the renames (cur/ fsynced before OK) and the new keyword
        return [r"/alice/cur$", r"/alice/sockmail-imap\.tdb$"]

    def act_command(self, r, c):
        return self.command(r, c, "STORE", "STORE 1:2 +FLAGS (\\Flagged $Work)")

    def expect(self, r, files, views):
        self.unchanged(r, views, "INBOX", {"m3@test"})
        res = r.result if r.ok("STORE") else r.partial
        told = {}
        seq = sorted(self.before["INBOX"]["msgs"],
                     key=lambda m: self.before["INBOX"]["msgs"][m][0])
        for n, fd in (res.fetches().items() if res is not None else []):
            told[seq[n - 1]] = fd.flags() - {"\\Recent"}
        for mid in ("m1@test", "m2@test"):
            uid, old = self.before["INBOX"]["msgs"][mid]
            now = views["INBOX"]["msgs"].get(mid)
            if now is None:
                r.violation("%s is gone" % mid)
                continue
            want = old | {"\\Flagged", "$Work"}
            if r.ok("STORE") and now[1] != want:
                r.violation("STORE OK but %s has %r" % (mid, now[1]))
            elif now[1] not in (old, told.get(mid)):
                r.violation("%s has %r: neither the old %r nor what FETCH "
                            "said, %r" % (mid, now[1], old, told.get(mid)))


# ------------------------------------------------------------------ tests

def summary_line(flow, runs, known=None):
    fired = [r for r in runs if r.call is not None]
    bad = [r for r in runs if r.violations and not (known and known(r))]
    known_bad = [r for r in runs if r.violations and known and known(r)]
    left = [r for r in runs if r.leftovers]
    by_errno = {}
    for r in fired:
        k = r.errno_name + (" sticky" if r.sticky else "")
        by_errno[k] = by_errno.get(k, 0) + 1
    calls = sorted({r.call for r in fired})
    return ("fault sweep %-16s %4d runs (%s), %d invariant violations%s, "
            "%d with leftovers; functions: %s" % (
                flow, len(runs),
                ", ".join("%s %d" % kv for kv in sorted(by_errno.items())) or "-",
                len(bad), " (+%d known imap-handler bug)" % len(known_bad)
                if known_bad else "", len(left), " ".join(calls) or "-"))


@unittest.skipIf(VALGRIND, "fault injection is not run under valgrind")
@unittest.skipUnless(os.path.exists(SHIM), "%s is not built" % SHIM)
class FaultSweepTests(DnsmasqPerClass, unittest.TestCase):
    """One test per flow: a clean run, then the sweep."""

    DNS_RECORDS = ["--mx-host=remote.test,mx.remote.test,10",
                   "--host-record=mx.remote.test,127.0.0.1"]

    def sweep(self, flow_class, known=None, calls=CALLS, path=None,
              full=()):
        """Run the flow clean, then every planned fault (full: modes in
        which every call of calls is tried, in the default run too; path:
        only calls on such paths count); fail on any violation not matched
        by known (a predicate: a known bug with its own expectedFailure
        test).  Returns the runs."""
        RunnerFlow.dns = self.dns
        flow = flow_class(self)
        flow.make_server()
        clean = flow.run(path=path)
        self.assertEqual(clean.violations, [], "clean run: " + clean.describe()
                         + "\n" + clean.transcript)
        self.assertIsNone(clean.failed_at, "clean run failed: " + clean.describe()
                          + "\n" + clean.transcript)
        counts = clean.log.counts
        runs = [clean]
        for call in calls:
            count = counts.get(call, 0)
            if count == 0:
                continue
            for mode in MODES:
                if full:
                    ns = (list(range(1, min(count + 1, MAX_N) + 1))
                          if mode in full else [])
                else:
                    ns = plan(count, mode, call)
                for n in ns:
                    r = flow.run(call, n, mode[0], mode[1], path)
                    if not r.log.fired:
                        break  # past the last call
                    runs.append(r)
        self.report(flow.name + (" " + path if path else ""), runs, known)
        bad = [r for r in runs if r.violations and not (known and known(r))]
        self.assertEqual([], [r.describe() for r in bad],
                         "invariant violations:\n" + "\n".join(
                             r.describe() + "\n" + r.transcript[-3000:]
                             for r in bad[:5]))
        return runs

    def report(self, name, runs, known=None):
        line = summary_line(name, runs, known)
        sys.stderr.write("\n" + line + "\n")
        for r in runs:
            if r.leftovers:
                sys.stderr.write("    leftovers %s: %s\n" % (r.where(), ", ".join(r.leftovers)))
        if SUMMARY_FILE:
            with open(SUMMARY_FILE, "a") as f:
                f.write(line + "\n")
                for r in runs:
                    if r.violations:
                        f.write("    " + r.describe().replace("\n", "\n    ") + "\n")

    def test_smtp_inbound(self):
        self.sweep(InboundFlow)

    def test_smtp_enqueue(self):
        self.sweep(EnqueueFlow)

    def test_runner_bounce(self):
        self.sweep(BounceFlow)

    def test_runner_tempfail(self):
        self.sweep(TempFailFlow)

    def test_pop3_update(self):
        self.sweep(POP3Flow)

    def test_imap_append(self):
        self.sweep(AppendFlow)

    def test_imap_copy(self):
        self.sweep(CopyFlow)

    def test_imap_move(self):
        self.sweep(MoveFlow)

    def test_imap_expunge(self):
        self.sweep(ExpungeFlow)

    def test_imap_store(self):
        self.sweep(StoreFlow)

    # -- regressions: every call on one file, whatever the default plan

    def test_enqueue_queue_db(self):
        """Every call on queue.tdb while an enqueue makes it and commits
        the first envelope, once and from then on.  Found by the sweep:
        ENOSPC while tdb_open wrote a new queue.tdb left a file no reader
        could open (now made aside and linked), and a commit whose last
        fdatasync or msync failed left its envelope while the message
        file was removed (now taken back, or the file kept)."""
        self.sweep(EnqueueFlow, calls=("write", "ftruncate", "posix_fallocate",
                                       "fsync", "fdatasync", "msync", "link"),
                   path="queue.tdb",
                   full=(("ENOSPC", False),) +
                   ((("ENOSPC", True),) if not SANITIZED else ()) +
                   ((("EIO", False),) if LONG else ()))

    def test_imap_failed_commit_releases_locks(self):
        """Found by the sweeps: tdb does not cancel a transaction whose
        commit failed in its last fdatasync or msync, and the session kept
        the folder database's locks, stalling every other session; now
        imap_folder.c cancels it.  STORE with a new keyword, every
        fdatasync of the folder's database made to fail once."""
        self.sweep(StoreFlow, calls=("fdatasync",),
                   path="sockmail-imap.tdb", full=(("ENOSPC", False),))


if __name__ == "__main__":
    unittest.main()
