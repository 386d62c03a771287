#!/usr/bin/python3
"""bench.py: `make bench` for sockmail's SMTP handler (python3 stdlib only).

Sets up a throw-away sockmail (config, domain, user) on a real disk, runs
build/smtp-handler under `systemd-socket-activate --inetd --accept` on a free loopback
port and measures:
  - messages/s accepted and fsynced into Maildir, one message per connection,
    4 KiB, at 1 and at 10 concurrent clients (tests/bench/smtp_blast.c),
    and that exactly that many files landed in new/;
  - the disk's own rate for the same work (write+fsync+rename+dir fsync,
    tests/bench/disk_rate.c) on the same file system, and the ratio;
  - connect -> 220 greeting latency (median, p90);
  - what one more idle connection costs (Private_Dirty, Rss, Pss of the
    handler from /proc/PID/smaps_rollup);
  - the cost of one exec of the handler (stdin at EOF: greet and exit);
  - the floor: the same runs against tests/bench/smtp_null.c (an SMTP
    responder that does nothing) under the same activator, i.e. what
    process-per-connection itself allows on this machine.
And for build/pop3-handler (issue 5), on its own throw-away users:
  - login+STAT+QUIT sessions/s at 1 and 4 clients on a 1,000-message
    maildrop (tests/bench/pop3_blast.c), with the default yescrypt password
    hash and again with a SHA-512-crypt one (the reference Dovecot used
    plain-text passwords, so the hash dominates the comparison);
  - RETR+DELE of 1,000 4 KiB messages in one session (seconds, MB/s), with
    the C client and with Python's poplib as the reference was measured;
  - Private_Dirty of one logged-in handler on a 10,000-message maildrop.
Prints a table beside reference figures.  Timings are printed, never asserted:
the bench exits 1 only on errors (failed or missing deliveries, tools that
fail), 0 otherwise.

Environment: BUILD (build dir, default "build"), BENCH_SCALE (multiplies the
message counts, default 1), BENCH_DIR (parent of the temp dir instead of
/var/tmp), BENCH_KEEP=1 (keep the temp dir), BENCH_POSTFIX=1 (mention the
side-by-side Postfix run), BENCH_PARTS (default "smtp,pop3": which parts
to run).
"""

import os
import poplib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

RCPT = "alice@example.org"
MSG_SIZE = 4096
N_1 = 1000			# messages at 1 client (times BENCH_SCALE)
N_10 = 2000			# messages at 10 clients
WARMUP = 50
STARTUP_RUNS = 200
RUN_TIMEOUT = 300		# seconds for any one helper run
MEMORY_FSTYPES = ("tmpfs", "ramfs", "devtmpfs")

# Not measured here: from issue 2 ("on this kind of machine", Postfix 3.7).
REF_LABEL = ("reference: Postfix 3.7 on this kind of machine, from the "
             "issue, not measured in this run")
REF_RATE_1 = 661.0		# msg/s, 1 client, 1 msg/conn, into Maildir
REF_RATE_10 = 1048.0		# msg/s, 10 clients
REF_HEAP_STACK_KIB = 1244	# idle smtpd heap+stack
REF_RSS_MIB = 10.5		# idle smtpd RSS
AIM_FACTOR = 1.5		# >= 1.5x Postfix's rate
AIM_GREETING_MS = 2.0
AIM_PRIVATE_DIRTY_KIB = 300

# POP3 (issue 5).  Not measured here: Dovecot 2.3 "on this kind of machine",
# from the issue and ../shared/bench-peers (plain-text passwords in its
# passdb; Python poplib as the client).
POP3_MSGS = 1000		# the RETR+DELE maildrop, 4 KiB messages
POP3_BIG = 10000		# the maildrop for the memory figure
POP3_SESSIONS = 200		# per run and client count (times BENCH_SCALE)
POP3_PASSWORD = "bench-password"
REF_POP3_LABEL = ("reference: Dovecot 2.3 on this kind of machine, from "
                  "issue 5 / ../shared/bench-peers, not measured in this "
                  "run; its passdb had plain-text passwords and it was "
                  "driven by Python's poplib")
REF_POP3_SESS_1 = 115.0		# sessions/s, 1 client
REF_POP3_SESS_4 = 187.0		# sessions/s, 4 clients
REF_POP3_CPU_MS = 9.0		# Dovecot CPU per session
REF_POP3_RETR_S = 0.144		# 1,000 RETR+DELE in one session
AIM_POP3_FACTOR = 2.0		# >= 2x Dovecot's sessions/s
AIM_POP3_DIRTY_KIB = 1024	# Private_Dirty at 10,000 messages


class BenchError(Exception):
    """A failure that makes the figures meaningless: stop and clean up."""


errors = []			# problems found along the way: exit status 1


def say(text=""):
    print(text, flush=True)


def problem(text):
    """An error that does not stop the run (e.g. a missing delivery)."""
    errors.append(text)
    say("WARNING: " + text)


# ---------------------------------------------------------------- places

def unescape_mount(field):
    """/proc/mounts escapes blanks as \\040 and so on."""
    out, i = "", 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out += chr(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out += field[i]
            i += 1
    return out


def mount_of(path):
    """(fstype, device, mountpoint) of the file system holding path."""
    path = os.path.realpath(path)
    best = ("unknown", "?", "/")
    best_len = -1
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 3:
                continue
            dev, mnt, fstype = (unescape_mount(fields[0]),
                                unescape_mount(fields[1]), fields[2])
            inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
            # Later lines win on equal length: they are mounted on top.
            if inside and len(mnt) >= best_len:
                best, best_len = (fstype, dev, mnt), len(mnt)
    return best


def journal_note(path, fstype):
    """For ext3/ext4 whether the file system has a journal (jbd2 lists
    the journalled devices), which changes what an fsync costs."""
    if fstype not in ("ext3", "ext4"):
        return ""
    try:
        st = os.stat(path)
        name = os.path.basename(os.readlink(
            "/sys/dev/block/%d:%d" % (os.major(st.st_dev),
                                      os.minor(st.st_dev))))
        jbd2 = os.listdir("/proc/fs/jbd2")
    except OSError:
        return ""
    if any(j.startswith(name + "-") for j in jbd2):
        return ", with a journal"
    return ", WITHOUT a journal (fsync is cheaper than on a journalled ext4)"


def pick_base_dir(build):
    """A directory on a real disk, so that fsync means something:
    $BENCH_DIR, else /var/tmp, else the build dir; never a tmpfs when a
    disk is available."""
    candidates = []
    if os.environ.get("BENCH_DIR"):
        candidates.append(os.environ["BENCH_DIR"])
    candidates += ["/var/tmp", build]
    for cand in candidates:
        if os.path.isdir(cand) and os.access(cand, os.W_OK) and \
                mount_of(cand)[0] not in MEMORY_FSTYPES:
            return cand
    say("WARNING: no disk-backed directory found; using %s (in memory: "
        "the fsync figures mean nothing)" % candidates[0])
    return candidates[0]


# ---------------------------------------------------------------- setup

def find_build():
    build = os.environ.get("BUILD", "build")
    if not os.path.isabs(build) and not os.path.isdir(build):
        repo = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        build = os.path.join(repo, build)
    return os.path.abspath(build)


def need_file(path, what):
    if not os.access(path, os.X_OK):
        raise BenchError("%s not found or not executable: %s (run `make all` "
                         "and build the bench helpers)" % (what, path))
    return path


def run_ctl(ctl, conf, args, stdin=None):
    res = subprocess.run([ctl, "-c", conf] + args, input=stdin,
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise BenchError("sockmailctl %s failed (exit %d): %s" %
                         (" ".join(args), res.returncode,
                          (res.stderr or res.stdout).strip()))


def write_config(top):
    dirs = {k: os.path.join(top, k) for k in ("mail", "state", "spool")}
    for d in dirs.values():
        os.mkdir(d, 0o700)
    conf = os.path.join(top, "sockmail.conf")
    with open(conf, "w") as f:
        f.write("# sockmail bench, written by tests/bench/bench.py\n"
                "hostname = bench.example\n"
                "mail_dir = %s\n"
                "state_dir = %s\n"
                "spool_dir = %s\n"
                "smtp_timeout = 60s\n" % (dirs["mail"], dirs["state"],
                                          dirs["spool"]))
    return conf, dirs["mail"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_reply(sock_file):
    """A whole SMTP reply (bounded); returns its lines."""
    lines = []
    for _ in range(100):
        line = sock_file.readline(1024)
        if not line:
            break
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            break
    return lines


class Activator:
    """systemd-socket-activate --inetd --accept running argv per
    connection, on a free loopback port."""

    def __init__(self, argv, log_path):
        self.port = free_port()
        self.comm = os.path.basename(argv[0])[:15]
        self.greeting = "+OK" if self.comm.startswith("pop3") else "220"
        env = dict(os.environ, SOCKMAIL_LOG="stderr")
        env.pop("JOURNAL_STREAM", None)
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            ["systemd-socket-activate", "--inetd", "--accept", "-l",
             "127.0.0.1:%d" % self.port] + argv,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            env=env)

    def log_tail(self, n=10):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join("    " + l for l in lines[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout=10.0):
        """Until a connection gets a 220: this also proves the handler
        starts with our config (a config error gives 421)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("systemd-socket-activate exited (%d):\n%s"
                                 % (self.proc.returncode, self.log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port),
                                              timeout=5) as s:
                    f = s.makefile("rb")
                    reply = read_reply(f)
                    if reply and reply[0].startswith(self.greeting):
                        s.sendall(b"QUIT\r\n")
                        read_reply(f)
                        return
                    raise BenchError("the handler does not greet with %s: "
                                     "%r\n%s" % (self.greeting, reply,
                                                 self.log_tail()))
            except OSError as e:
                last = e
                time.sleep(0.05)
        raise BenchError("nothing accepts on 127.0.0.1:%d after %.0f s (%s)"
                         % (self.port, timeout, last))

    def handler_children(self):
        """[(starttime, pid)] of the activator's children running our
        program."""
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name) as f:
                    stat = f.read()
            except OSError:
                continue
            # "pid (comm) state ppid ..." and comm may hold ") ".
            comm = stat[stat.find("(") + 1:stat.rfind(")")]
            rest = stat[stat.rfind(")") + 2:].split()
            if comm == self.comm and int(rest[1]) == self.proc.pid:
                out.append((int(rest[19]), int(name)))
        return sorted(out)

    def stop(self):
        children = [pid for _, pid in self.handler_children()] \
            if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Handlers it started and that outlived it (a stuck session).
        for pid in children:
            try:
                with open("/proc/%d/comm" % pid) as f:
                    if f.read().strip() == self.comm:
                        os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        self.log.close()


# ---------------------------------------------------------------- measures

def parse_kv(line):
    """"a=1 b=2.5 c=x" -> dict of strings."""
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def run_helper(argv, what):
    try:
        res = subprocess.run(argv, capture_output=True, text=True,
                             timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError("%s took longer than %d s" % (what, RUN_TIMEOUT))
    if res.stderr.strip():
        for line in res.stderr.strip().splitlines():
            say("    %s: %s" % (what, line))
    return res


def blast(tools, port, n, clients, what="sockmail"):
    res = run_helper([tools["smtp_blast"], "-h", "127.0.0.1", "-p",
                      str(port), "-n", str(n), "-c", str(clients), "-s",
                      str(MSG_SIZE), "-t", RCPT],
                     "smtp_blast -c %d (%s)" % (clients, what))
    out = {}
    for line in res.stdout.splitlines():
        if line.startswith("sent="):
            out.update({k: float(v) for k, v in parse_kv(line).items()
                        if k in ("sent", "failed", "seconds", "rate")})
        elif line.startswith("greeting_ms"):
            out.update({"greet_" + k: float(v)
                        for k, v in parse_kv(line).items()})
    if "sent" not in out:
        raise BenchError("smtp_blast printed no result (exit %d): %s" %
                         (res.returncode, res.stdout.strip()))
    if res.returncode != 0 or out["failed"] or out["sent"] != n:
        problem("%s: %d of %d messages failed at %d client(s)" %
                (what, n - out["sent"], n, clients))
    return out


def disk_rate(tools, top, n, writers):
    d = os.path.join(top, "disk-%d" % writers)
    res = run_helper([tools["disk_rate"], d, str(n), str(MSG_SIZE),
                      str(writers)], "disk_rate %d" % writers)
    out = parse_kv(res.stdout.strip())
    if res.returncode != 0 or "rate" not in out:
        problem("disk_rate with %d writer(s) failed: %s" %
                (writers, res.stdout.strip()))
        return None
    shutil.rmtree(d, ignore_errors=True)
    return float(out["rate"])


def count_files(maildir):
    return (len(os.listdir(os.path.join(maildir, "new"))),
            len(os.listdir(os.path.join(maildir, "tmp"))))


def check_delivered(maildir, before, expected, what):
    new, tmp = count_files(maildir)
    if new - before != expected:
        problem("%s: %d files landed in new/, expected %d" %
                (what, new - before, expected))
    if tmp:
        problem("%s: %d stray files in tmp/" % (what, tmp))
    return new


def smaps(pid):
    """Rss, Pss, Private_Dirty, ... in KiB (smaps_rollup, else summed)."""
    vals = {}
    for name in ("smaps_rollup", "smaps"):
        try:
            with open("/proc/%d/%s" % (pid, name)) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[2] == "kB":
                        key = parts[0].rstrip(":")
                        vals[key] = vals.get(key, 0) + int(parts[1])
            return vals
        except FileNotFoundError:
            continue
    return vals


def idle_cost(act):
    """Open one connection, read the greeting, and read the memory of the
    handler process that serves it (the newest child of the activator)."""
    result = {}
    with socket.create_connection(("127.0.0.1", act.port), timeout=10) as s:
        f = s.makefile("rb")
        greet = read_reply(f)
        if not greet or not greet[0].startswith("220"):
            problem("idle connection: greeting %r" % greet)
            return result
        children = []
        deadline = time.monotonic() + 2
        while not children and time.monotonic() < deadline:
            children = act.handler_children()
            if not children:
                time.sleep(0.02)
        if not children:
            problem("idle connection: no smtp-handler child of "
                    "systemd-socket-activate (pid %d) found" % act.proc.pid)
            return result
        pid = children[-1][1]
        result["pid"] = pid
        result["greeting"] = smaps(pid)
        s.sendall(b"EHLO remote.example\r\n")
        read_reply(f)
        result["ehlo"] = smaps(pid)
        s.sendall(b"QUIT\r\n")
        read_reply(f)
    return result


def exec_cost(handler, conf):
    """Mean wall time of one exec of the handler with stdin at EOF (it
    greets and exits), beside the same for /bin/true: the difference is
    the handler's own start-up and exit."""
    env = dict(os.environ, SOCKMAIL_LOG="stderr")
    env.pop("JOURNAL_STREAM", None)
    first = subprocess.run([handler, "-c", conf], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30, env=env)
    if not first.stdout.startswith(b"220 "):
        problem("handler with stdin at EOF did not greet: %r %r" %
                (first.stdout[:200], first.stderr[:200]))

    def once(argv):
        t0 = time.monotonic()
        subprocess.run(argv, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env, timeout=30)
        return time.monotonic() - t0

    # Interleaved, so that both see the same background noise.
    total_handler = total_true = 0.0
    for _ in range(STARTUP_RUNS):
        total_handler += once([handler, "-c", conf])
        total_true += once(["/bin/true"])
    return (total_handler / STARTUP_RUNS * 1000.0,
            total_true / STARTUP_RUNS * 1000.0)


# ---------------------------------------------------------------- report

def fmt(v, spec="%.0f"):
    return "-" if v is None else spec % v


def verdict(ok):
    if ok is None:
        return "-"
    return "yes" if ok else "NO"


def print_table(r):
    rows = []
    aim1, aim10 = REF_RATE_1 * AIM_FACTOR, REF_RATE_10 * AIM_FACTOR

    def pair(a, b, spec="%.0f"):
        return "%s / %s" % (fmt(a, spec), fmt(b, spec))

    def ratio(a, b):
        return a / b if a is not None and b else None

    def rate_row(label, rate, ref, aim):
        rows.append((label, fmt(rate, "%.0f msg/s"), "%.0f msg/s" % ref,
                     ">= %.0f (1.5x)" % aim,
                     verdict(None if rate is None else rate >= aim)))

    rate_row("SMTP 1 msg/conn, 1 client", r.get("rate1"), REF_RATE_1, aim1)
    rate_row("SMTP 1 msg/conn, 10 clients", r.get("rate10"), REF_RATE_10,
             aim10)
    rows.append(("disk write+fsync+rename+dirfsync, 1 / 10",
                 pair(r.get("disk1"), r.get("disk10")) + " per s",
                 "-", "-", "-"))
    rows.append(("sockmail / disk, 1 / 10",
                 pair(r.get("ratio1"), r.get("ratio10"), "%.2f"),
                 "-", "-", "-"))
    rows.append(("floor: activator + smtp_null, 1 / 10",
                 pair(r.get("floor1"), r.get("floor10")) + " msg/s",
                 "-", "-", "-"))
    rows.append(("sockmail / floor, 1 / 10",
                 pair(ratio(r.get("rate1"), r.get("floor1")),
                      ratio(r.get("rate10"), r.get("floor10")), "%.2f"),
                 "-", "-", "-"))
    g, g90 = r.get("greet1", (None, None))
    rows.append(("connect -> 220, median (p90), 1 client",
                 "%s (%s) ms" % (fmt(g, "%.2f"), fmt(g90, "%.2f")), "-",
                 "<= %.0f ms" % AIM_GREETING_MS,
                 verdict(None if g is None else g <= AIM_GREETING_MS)))
    fg, fg90 = r.get("floor_greet1", (None, None))
    rows.append(("  the same for the floor (smtp_null)",
                 "%s (%s) ms" % (fmt(fg, "%.2f"), fmt(fg90, "%.2f")),
                 "-", "-", "-"))
    idle = r.get("idle", {}).get("greeting", {})
    pd = idle.get("Private_Dirty")
    rows.append(("idle conn: Private_Dirty", fmt(pd, "%d KiB"),
                 "%d KiB heap+stack" % REF_HEAP_STACK_KIB,
                 "<= %d KiB" % AIM_PRIVATE_DIRTY_KIB,
                 verdict(None if pd is None else pd <= AIM_PRIVATE_DIRTY_KIB)))
    rows.append(("idle conn: Rss", fmt(idle.get("Rss"), "%d KiB"),
                 "%.1f MiB" % REF_RSS_MIB, "-", "-"))
    rows.append(("idle conn: Pss", fmt(idle.get("Pss"), "%d KiB"), "-", "-",
                 "-"))
    ex = r.get("exec")
    rows.append(("exec+greet+exit (/bin/true the same way)",
                 "-" if ex is None else "%.2f ms (%.2f ms)" % ex,
                 "-", "-", "-"))

    head = ("measure", "sockmail (this run)", "Postfix 3.7 (*)", "aim",
            "met")
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(5)]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, head))
    say(line.rstrip())
    say("-" * len(line))
    for row in rows:
        say("  ".join("%-*s" % (w, c) for w, c in zip(widths, row)).rstrip())
    say("(*) " + REF_LABEL + ".")
    say("    The aim is 1.5x Postfix measured in the same run; here it is "
        "set against the reference figures.")
    say("    The floor is what process-per-connection under "
        "systemd-socket-activate allows on this machine with a handler that "
        "does nothing.")


# ---------------------------------------------------------------- POP3

POP3_WORDS = ("mail", "server", "socket", "handler", "maildir", "queue",
              "message", "delivery", "header", "body", "client", "session")


def pop3_message(i, size=4096):
    """A 4 KiB LF message shaped like the reference's: headers, then lines
    of words (none starting with a dot), at most size bytes."""
    hdr = ("Return-Path: <sender%d@example.org>\n"
           "From: Sender %d <sender%d@example.org>\n"
           "To: bench@example.org\n"
           "Subject: Bench message %d\n"
           "Message-ID: <%d.bench@example.org>\n"
           "MIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=us-ascii\n\n"
           % (i % 50, i % 50, i % 50, i, i))
    out, n = [hdr], len(hdr)
    w = i
    while True:
        line = " ".join(POP3_WORDS[(w + k) % len(POP3_WORDS)]
                        for k in range(10)) + "\n"
        if n + len(line) > size:
            break
        out.append(line)
        n += len(line)
        w += 1
    return "".join(out).encode()


def pop3_populate(maildir, count, size=4096):
    """count messages in new/, named as delivery names them (with ,S= and
    ,W=) on a server with a typical host name, in delivery order by their
    time.  Returns the total CRLF size."""
    total = 0
    for i in range(count):
        body = pop3_message(i, size)
        w = len(body) + body.count(b"\n")
        name = "%d.M%06dP%dQ%d.mx1.mail.example.org,S=%d,W=%d" % (
            1700000000 + i, i % 1000000, 100000 + os.getpid(), i, len(body), w)
        with open(os.path.join(maildir, "new", name), "wb") as f:
            f.write(body)
        total += w
    return total


def pop3_set_sha512(ctl_conf_state, address, password):
    """Replace a user's yescrypt hash by a SHA-512-crypt one (cheap to
    check, like the reference's plain-text passwords), with tdbtool.
    Returns False (and says why) when that cannot be done here."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypt
        h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    except (ImportError, AttributeError):
        say("POP3: no Python crypt module: the SHA-512 run is skipped")
        return False
    if not shutil.which("tdbtool"):
        say("POP3: no tdbtool (package tdb-tools): the SHA-512 run is skipped")
        return False
    res = subprocess.run(["tdbtool", os.path.join(ctl_conf_state, "users.tdb"),
                          "store", "U:" + address, h],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        problem("tdbtool store failed: %s" % (res.stderr or res.stdout))
        return False
    return True


def pop3_blast(tools, port, user, mode, n, clients=1):
    res = run_helper([tools["pop3_blast"], "-h", "127.0.0.1", "-p", str(port),
                      "-u", user, "-w", POP3_PASSWORD, "-m", mode, "-n",
                      str(n), "-c", str(clients)],
                     "pop3_blast -m %s -c %d" % (mode, clients))
    out = {}
    for line in res.stdout.splitlines():
        out.update({k: float(v) for k, v in parse_kv(line).items()
                    if k != "session_ms"})
        if line.startswith("session_ms"):
            out.update({"ms_" + k: float(v) for k, v in
                        parse_kv(line).items()})
    if res.returncode != 0 or not out:
        problem("pop3_blast -m %s -c %d failed (exit %d): %s" %
                (mode, clients, res.returncode, res.stdout.strip()))
    return out


def cpu_ticks_of_children(act):
    """utime+stime (clock ticks) of the activator's finished children:
    what the handlers it reaped used."""
    try:
        with open("/proc/%d/stat" % act.proc.pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[14]) + int(rest[15])  # cutime, cstime
    except (OSError, IndexError, ValueError):
        return None


def pop3_sessions(tools, act, user, n, clients):
    c0 = cpu_ticks_of_children(act)
    out = pop3_blast(tools, act.port, user, "sessions", n, clients)
    time.sleep(0.2)  # let the activator reap the last handlers
    c1 = cpu_ticks_of_children(act)
    if c0 is not None and c1 is not None and out.get("sessions"):
        out["cpu_ms"] = (c1 - c0) * 1000.0 / os.sysconf("SC_CLK_TCK") / \
            out["sessions"]
    say("POP3 sessions %-8s %d client(s): %s sessions/s (%d ok, %d failed), "
        "median %s ms, handler CPU %s ms/session" % (
            user.split("@")[0], clients, fmt(out.get("rate"), "%.1f"),
            out.get("sessions", 0), out.get("failed", 0),
            fmt(out.get("ms_median"), "%.2f"), fmt(out.get("cpu_ms"), "%.1f")))
    return out


def pop3_poplib_retrdele(port, user, n):
    """The reference's own method: poplib, RETR+DELE, login..QUIT."""
    t0 = time.monotonic()
    p = poplib.POP3("127.0.0.1", port, timeout=60)
    p.user(user)
    p.pass_(POP3_PASSWORD)
    count, _ = p.stat()
    if count < n:
        problem("poplib: STAT says %d messages, expected %d" % (count, n))
        p.quit()
        return None
    for i in range(1, n + 1):
        p.retr(i)
        p.dele(i)
    p.quit()
    return time.monotonic() - t0


def pop3_logged_in_memory(act, user):
    """Private_Dirty (and more) of the handler serving one logged-in
    session after STAT."""
    p = poplib.POP3("127.0.0.1", act.port, timeout=60)
    try:
        p.user(user)
        p.pass_(POP3_PASSWORD)
        count, _ = p.stat()
        kids = act.handler_children()
        if not kids:
            problem("POP3 memory: no pop3-handler child found")
            return None, count
        return smaps(kids[-1][1]), count
    finally:
        p.quit()


def run_pop3(build, top, scale):
    tools = {
        "handler": need_file(os.path.join(build, "pop3-handler"),
                             "pop3-handler"),
        "ctl": need_file(os.path.join(build, "sockmailctl"), "sockmailctl"),
    }
    for helper in ("pop3_blast", "pop3_null"):
        tools[helper] = need_file(os.path.join(build, "tests", helper), helper)
    top = os.path.join(top, "pop3")
    os.mkdir(top, 0o700)
    conf, mail_dir = write_config(top)
    state_dir = os.path.join(top, "state")
    run_ctl(tools["ctl"], conf, ["domain", "add", "example.org"])
    # A maildrop is locked by one session at a time (RFC 1939 8), so each
    # concurrent client logs in as a user of its own.
    users = {"yescrypt": ["pop%d@example.org" % i for i in range(1, 5)],
             "sha512": ["fast%d@example.org" % i for i in range(1, 5)],
             "big": ["bigbox@example.org"]}
    for group in users.values():
        for u in group:
            run_ctl(tools["ctl"], conf, ["user", "add", u, "--password-stdin"],
                    stdin=POP3_PASSWORD + "\n")
    have_sha = all(pop3_set_sha512(state_dir, u, POP3_PASSWORD)
                   for u in users["sha512"])

    def maildir(u):
        return os.path.join(mail_dir, "example.org", u.split("@")[0])

    t0 = time.monotonic()
    for u in users["yescrypt"] + users["sha512"]:
        pop3_populate(maildir(u), POP3_MSGS)
    pop3_populate(maildir(users["big"][0]), POP3_BIG, 2048)
    say("POP3: 8 x %d + %d messages written in %.1f s" % (
        POP3_MSGS, POP3_BIG, time.monotonic() - t0))
    n_sess = max(20, int(POP3_SESSIONS * scale))
    r = {"have_sha": have_sha}
    act = Activator([tools["handler"], "-c", conf],
                    os.path.join(top, "pop3-handler.log"))
    null = Activator([tools["pop3_null"]], os.path.join(top, "pop3-null.log"))
    try:
        act.wait_ready()
        null.wait_ready()
        say("pop3-handler: systemd-socket-activate --inetd --accept on "
            "127.0.0.1:%d (pid %d); floor: pop3_null on 127.0.0.1:%d" %
            (act.port, act.proc.pid, null.port))
        kinds = ["yescrypt"] + (["sha512"] if have_sha else [])
        for k in kinds:
            pop3_blast(tools, act.port, users[k][0], "sessions", 5, 1)  # warm
            for clients in (1, 4):
                r["sess_%s_%d" % (k, clients)] = pop3_sessions(
                    tools, act, ",".join(users[k][:clients]), n_sess, clients)
        for clients in (1, 4):
            r["floor_%d" % clients] = pop3_sessions(
                tools, null, "nobody@example.org", n_sess * 2, clients)
        mem, count = pop3_logged_in_memory(act, users["big"][0])
        if count != POP3_BIG:
            problem("POP3: STAT on the big maildrop says %d, expected %d" %
                    (count, POP3_BIG))
        r["mem"] = mem
        if mem:
            say("POP3 logged-in handler on %d messages: Private_Dirty %d KiB, "
                "Rss %d KiB, Pss %d KiB" % (count, mem.get("Private_Dirty", -1),
                                            mem.get("Rss", -1), mem.get("Pss", -1)))
        u = users["sha512" if have_sha else "yescrypt"][0]
        os.sync()
        rd = pop3_blast(tools, act.port, u, "retrdele", POP3_MSGS)
        r["retrdele"] = rd
        left = sum(len(os.listdir(os.path.join(maildir(u), d)))
                   for d in ("new", "cur"))
        if rd and left != 0:
            problem("POP3: %d messages left after RETR+DELE+QUIT" % left)
        say("POP3 RETR+DELE %d (pop3_blast, %s): %s s (login %s s, "
            "RETR+DELE %s s, QUIT/UPDATE %s s), %s MB/s" % (
                POP3_MSGS, u, fmt(rd.get("seconds"), "%.3f"),
                fmt(rd.get("login_s"), "%.3f"), fmt(rd.get("retr_s"), "%.3f"),
                fmt(rd.get("quit_s"), "%.3f"), fmt(rd.get("mbps"), "%.1f")))
        pop3_populate(maildir(u), POP3_MSGS)
        os.sync()
        r["poplib"] = pop3_poplib_retrdele(act.port, u, POP3_MSGS)
        say("POP3 RETR+DELE %d (Python poplib, as the reference): %s s" %
            (POP3_MSGS, fmt(r["poplib"], "%.3f")))
    finally:
        act.stop()
        null.stop()
    return r


def print_pop3_table(r):
    rows = []
    hash_note = {"yescrypt": "yescrypt hash", "sha512": "SHA-512-crypt hash"}
    for k in ("yescrypt", "sha512"):
        for clients, ref in ((1, REF_POP3_SESS_1), (4, REF_POP3_SESS_4)):
            o = r.get("sess_%s_%d" % (k, clients))
            if o is None:
                continue
            rate = o.get("rate")
            aim = ref * AIM_POP3_FACTOR
            rows.append(("login+STAT+QUIT, %d client(s), %s" %
                         (clients, hash_note[k]),
                         fmt(rate, "%.1f sess/s"), "%.0f sess/s" % ref,
                         ">= %.0f (2x)" % aim,
                         verdict(None if rate is None else rate >= aim)))
        o = r.get("sess_%s_1" % k)
        if o is not None:
            rows.append(("  handler CPU per session, %s" % hash_note[k],
                         fmt(o.get("cpu_ms"), "%.1f ms"),
                         "%.0f ms" % REF_POP3_CPU_MS, "-", "-"))
    for clients in (1, 4):
        o = r.get("floor_%d" % clients)
        if o is not None:
            rows.append(("floor: activator + pop3_null, %d client(s)" % clients,
                         fmt(o.get("rate"), "%.1f sess/s"), "-", "-", "-"))
    rd = r.get("retrdele") or {}
    secs = rd.get("seconds")
    rows.append(("RETR+DELE 1,000 x 4 KiB, one session (C client)",
                 "%s s, %s MB/s" % (fmt(secs, "%.3f"), fmt(rd.get("mbps"), "%.1f")),
                 "%.3f s" % REF_POP3_RETR_S, "-", "-"))
    pl = r.get("poplib")
    rows.append(("RETR+DELE 1,000 x 4 KiB, one session (poplib)",
                 fmt(pl, "%.3f s"), "%.3f s" % REF_POP3_RETR_S,
                 "<= %.3f s" % REF_POP3_RETR_S,
                 verdict(None if pl is None else pl <= REF_POP3_RETR_S)))
    mem = r.get("mem") or {}
    pd = mem.get("Private_Dirty")
    rows.append(("logged-in handler, 10,000 msgs: Private_Dirty",
                 fmt(pd, "%d KiB"), "-", "<= %d KiB" % AIM_POP3_DIRTY_KIB,
                 verdict(None if pd is None else pd <= AIM_POP3_DIRTY_KIB)))
    rows.append(("logged-in handler, 10,000 msgs: Rss / Pss",
                 "%s / %s KiB" % (fmt(mem.get("Rss"), "%d"), fmt(mem.get("Pss"), "%d")),
                 "-", "-", "-"))
    head = ("measure", "sockmail (this run)", "Dovecot 2.3 (*)", "aim", "met")
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(5)]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, head))
    say(line.rstrip())
    say("-" * len(line))
    for row in rows:
        say("  ".join("%-*s" % (w, c) for w, c in zip(widths, row)).rstrip())
    say("(*) " + REF_POP3_LABEL + ".")
    say("    sockmail checks a real password hash at every login: yescrypt "
        "(the default sockmailctl writes) costs tens of ms of CPU by design;")
    say("    the SHA-512-crypt rows are the closer comparison with the "
        "reference's plain-text passwords.")
    say("    The floor is what process-per-connection under "
        "systemd-socket-activate allows with a POP3 responder that does "
        "nothing.")


# ---------------------------------------------------------------- main

def measure(tools, conf, maildir, top, n_of, r):
    """At 1 and then at 10: the disk's rate, the handler's, and the floor's
    (smtp_null under the same activator), one after the other so that all
    three see about the same machine."""
    act = Activator([tools["handler"], "-c", conf],
                    os.path.join(top, "handler.log"))
    null = Activator([tools["smtp_null"]], os.path.join(top, "null.log"))
    try:
        act.wait_ready()
        null.wait_ready()
        say("handler: systemd-socket-activate --inetd --accept on "
            "127.0.0.1:%d (pid %d), messages of %d bytes to %s" %
            (act.port, act.proc.pid, MSG_SIZE, RCPT))
        have = count_files(maildir)[0]
        blast(tools, act.port, WARMUP, 5)
        have = check_delivered(maildir, have, WARMUP, "warm-up")
        blast(tools, null.port, WARMUP, 5, "smtp_null")

        for clients in (1, 10):
            n = n_of[clients]
            os.sync()
            d = disk_rate(tools, top, n, clients)
            say("disk_rate  %2d writer(s), %5d ops: %s per s" %
                (clients, n, fmt(d, "%.0f")))
            os.sync()
            b = blast(tools, act.port, n, clients)
            have = check_delivered(maildir, have, int(b["sent"]),
                                   "%d client(s)" % clients)
            say("smtp_blast %2d client(s), %5d msgs: %.0f msg/s, sent %d, "
                "failed %d, connect->220 median %.2f ms p90 %.2f ms" %
                (clients, n, b["rate"], b["sent"], b["failed"],
                 b.get("greet_median", float("nan")),
                 b.get("greet_p90", float("nan"))))
            f = blast(tools, null.port, n, clients, "smtp_null")
            say("floor (smtp_null) %2d client(s), %5d msgs: %.0f msg/s, "
                "connect->220 median %.2f ms p90 %.2f ms" %
                (clients, n, f["rate"], f.get("greet_median", float("nan")),
                 f.get("greet_p90", float("nan"))))
            r["rate%d" % clients] = b["rate"]
            r["disk%d" % clients] = d
            r["ratio%d" % clients] = b["rate"] / d if d else None
            r["greet%d" % clients] = (b.get("greet_median"),
                                      b.get("greet_p90"))
            r["floor%d" % clients] = f["rate"]
            r["floor_greet%d" % clients] = (f.get("greet_median"),
                                            f.get("greet_p90"))

        r["idle"] = idle_cost(act)
        if r["idle"].get("greeting"):
            g, e = r["idle"]["greeting"], r["idle"]["ehlo"]
            say("idle handler pid %d after greeting: Private_Dirty %d KiB, "
                "Rss %d KiB, Pss %d KiB (after EHLO: %d / %d / %d)" %
                (r["idle"]["pid"], g.get("Private_Dirty", -1),
                 g.get("Rss", -1), g.get("Pss", -1),
                 e.get("Private_Dirty", -1), e.get("Rss", -1),
                 e.get("Pss", -1)))
    finally:
        act.stop()
        null.stop()


def run(build, top, scale):
    tools = {
        "handler": need_file(os.path.join(build, "smtp-handler"),
                             "smtp-handler"),
        "ctl": need_file(os.path.join(build, "sockmailctl"), "sockmailctl"),
    }
    for helper in ("smtp_blast", "disk_rate", "smtp_null"):
        tools[helper] = need_file(os.path.join(build, "tests", helper),
                                  helper)
    if not shutil.which("systemd-socket-activate"):
        raise BenchError("systemd-socket-activate not found (package "
                         "systemd)")
    n_of = {1: max(10, int(N_1 * scale)), 10: max(10, int(N_10 * scale))}
    with open(tools["handler"], "rb") as f:
        if b"__asan_init" in f.read():
            say("WARNING: %s is a sanitizer build: its figures say nothing "
                "about the real handler" % tools["handler"])

    conf, mail_dir = write_config(top)
    run_ctl(tools["ctl"], conf, ["domain", "add", "example.org"])
    run_ctl(tools["ctl"], conf, ["user", "add", RCPT, "--password-stdin"],
            stdin="bench-password\n")
    maildir = os.path.join(mail_dir, "example.org", "alice")
    if not os.path.isdir(os.path.join(maildir, "new")):
        raise BenchError("sockmailctl made no Maildir at %s" % maildir)

    r = {}
    measure(tools, conf, maildir, top, n_of, r)
    r["exec"] = exec_cost(tools["handler"], conf)
    say("exec of smtp-handler with stdin at EOF, mean of %d: %.2f ms "
        "(/bin/true the same way: %.2f ms)" % (STARTUP_RUNS, r["exec"][0],
                                               r["exec"][1]))
    return r


def main():
    # SIGTERM (make killed) cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        scale = float(os.environ.get("BENCH_SCALE", "1"))
        if not 0 < scale <= 100:
            raise ValueError
    except ValueError:
        say("bench: BENCH_SCALE must be a number in (0, 100]")
        return 2
    build = find_build()
    base = pick_base_dir(build)
    top = tempfile.mkdtemp(prefix="sockmail-bench.", dir=base)
    fstype, dev, mnt = mount_of(top)
    parts = os.environ.get("BENCH_PARTS", "smtp,pop3").split(",")
    say("sockmail bench (%s): temp dir %s" % (", ".join(parts), top))
    say("file system: %s on %s (mounted at %s)%s" %
        (fstype, dev, mnt, journal_note(top, fstype)))
    say("machine: %d CPUs, load average %.2f at the start" %
        (os.cpu_count() or 0, os.getloadavg()[0]))
    t0 = time.monotonic()
    try:
        r = run(build, top, scale) if "smtp" in parts else None
        p = run_pop3(build, top, scale) if "pop3" in parts else None
    except BenchError as e:
        say("bench: ERROR: %s" % e)
        return 1
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            say("kept %s (BENCH_KEEP=1)" % top)
        else:
            shutil.rmtree(top, ignore_errors=True)
    if r is not None:
        say()
        print_table(r)
    if p is not None:
        say()
        print_pop3_table(p)
    if os.path.exists("/usr/sbin/postfix") and \
            os.environ.get("BENCH_POSTFIX") == "1":
        say("Postfix is installed: a side-by-side measurement on this "
            "machine is available through ../shared/bench-peers "
            "(setup.sh, then run.sh; see its README).")
    say("bench took %.0f s; load average %.2f at the end (other work on "
        "the machine skews every figure)" % (time.monotonic() - t0,
                                             os.getloadavg()[0]))
    if errors:
        say("bench: %d error(s):" % len(errors))
        for e in errors:
            say("  - " + e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
