#!/usr/bin/python3
"""bench_queue.py: the outbound-queue part of `make bench` (issue 4),
python3 stdlib only.

Sets up a throw-away sockmail whose remote domains d0.test ... d9.test all
have their MX on 127.0.0.1 (tests/e2e/dnsmasq.py on a loopback port,
named by `dns_server`) and are served by one loopback SMTP sink
(tests/e2e/sink.py with TCP_NODELAY, on `outbound_port`), and measures:
  - messages/s from the queue to accepted by the sink: 1,000 messages,
    100 to each of the 10 domains, are submitted first (smtp-handler
    --submission with AUTH, one connection per 100 messages; not timed
    as part of the rate), then one run of build/queue-runner is timed
    until it exits, and the sink must have accepted all 1,000;
  - what a run costs on an idle (empty) queue, as the timer fires every
    15 minutes forever: mean CPU (user+sys, from wait4) and wall time of
    100 runs.
Prints, never asserts timings; exit 1 only on errors.
"""

import base64
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import bench  # noqa: E402  (the SMTP bench's helpers)
from dnsmasq import Dnsmasq  # noqa: E402
from sink import Sink  # noqa: E402

N_DOMAINS = 10
PER_DOMAIN = 100
N_MSGS = N_DOMAINS * PER_DOMAIN
IDLE_RUNS = 100
USER = "alice@example.org"
PASSWORD = "bench-Passw0rd"
RUN_TIMEOUT = 600		# seconds for the delivery run
AIM_IDLE_CPU_MS = 5.0		# from the issue


def dns_records():
    out = []
    for i in range(N_DOMAINS):
        out += ["--mx-host=d%d.test,mx.d%d.test,10" % (i, i),
                "--host-record=mx.d%d.test,127.0.0.1" % i]
    return out


def queue_conf(conf, dns_port, sink_port):
    with open(conf, "a") as f:
        f.write("dns_server = 127.0.0.1:%d\noutbound_port = %d\n"
                % (dns_port, sink_port))


def expect(f, code, what):
    reply = bench.read_reply(f)
    if not reply or not reply[-1].startswith(code):
        raise bench.BenchError("%s: expected %s, got %r" % (what, code, reply))


def message(n, rcpt):
    body = ("This is queued bench message %d.\r\n" % n) * 24
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: queue bench %d\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            "Message-ID: <bench-%d@example.org>\r\n\r\n%s"
            % (USER, rcpt, n, n, body)).encode()


def submit_batch(port, domain, first):
    """PER_DOMAIN messages to users of domain over one connection."""
    auth = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode())
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        f = s.makefile("rb")
        expect(f, "220", "greeting")
        s.sendall(b"EHLO bench.example\r\n")
        expect(f, "250", "EHLO")
        s.sendall(b"AUTH PLAIN " + auth + b"\r\n")
        expect(f, "235", "AUTH")
        for i in range(PER_DOMAIN):
            n = first + i
            rcpt = "u%d@%s" % (n, domain)
            s.sendall(b"MAIL FROM:<%s>\r\n" % USER.encode())
            expect(f, "250", "MAIL")
            s.sendall(b"RCPT TO:<%s>\r\n" % rcpt.encode())
            expect(f, "250", "RCPT")
            s.sendall(b"DATA\r\n")
            expect(f, "354", "DATA")
            s.sendall(message(n, rcpt) + b".\r\n")
            expect(f, "250", "end of DATA")
        s.sendall(b"QUIT\r\n")
        bench.read_reply(f)


def enqueue(handler, conf, top):
    act = bench.Activator([handler, "-c", conf, "--submission"],
                          os.path.join(top, "submission.log"))
    try:
        act.wait_ready()
        t0 = time.monotonic()
        for d in range(N_DOMAINS):
            submit_batch(act.port, "d%d.test" % d, d * PER_DOMAIN)
        return time.monotonic() - t0
    finally:
        act.stop()


def runner_env():
    env = dict(os.environ, SOCKMAIL_LOG="stderr")
    for k in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "SOCKMAIL_TEST_NOW"):
        env.pop(k, None)
    return env


def run_runner(runner, conf, log, timeout):
    """One run to its end: (wall seconds, CPU seconds user+sys)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([runner, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, env=runner_env())
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise bench.BenchError("queue-runner still running after %d s"
                                   % timeout)
        time.sleep(0.0005)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise bench.BenchError("queue-runner exited %d (log: %s)"
                               % (proc.returncode, log.name))
    return wall, ru.ru_utime + ru.ru_stime


def queue_empty(ctl, conf):
    res = subprocess.run([ctl, "-c", conf, "queue", "list"],
                         capture_output=True, text=True, timeout=60)
    return res.returncode == 0 and res.stdout == "Mail queue is empty\n", \
        res.stdout[:500] + res.stderr[:500]


def idle_runs(runner, conf, log):
    """IDLE_RUNS runs on the empty queue: the mean (wall, CPU) per run,
    CPU both from wait4 and from the RUSAGE_CHILDREN delta."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    walls, cpus = [], []
    for _ in range(IDLE_RUNS):
        wall, cpu = run_runner(runner, conf, log, 60)
        walls.append(wall)
        cpus.append(cpu)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = (after.ru_utime + after.ru_stime -
                before.ru_utime - before.ru_stime) / IDLE_RUNS
    walls.sort()
    return (sum(walls) / IDLE_RUNS, walls[IDLE_RUNS // 2],
            sum(cpus) / IDLE_RUNS, children)


def run(build, top, sink, dns):
    handler = bench.need_file(os.path.join(build, "smtp-handler"),
                              "smtp-handler")
    runner = bench.need_file(os.path.join(build, "queue-runner"),
                             "queue-runner")
    ctl = bench.need_file(os.path.join(build, "sockmailctl"), "sockmailctl")
    conf, _ = bench.write_config(top)
    queue_conf(conf, dns.start(), sink.start())
    bench.run_ctl(ctl, conf, ["domain", "add", "example.org"])
    bench.run_ctl(ctl, conf, ["user", "add", USER, "--password-stdin"],
                  stdin=PASSWORD + "\n")
    r = {"enqueue": enqueue(handler, conf, top)}
    bench.say("enqueued %d messages in %.2f s (%.1f msg/s, not part of the "
              "rate)" % (N_MSGS, r["enqueue"], N_MSGS / r["enqueue"]))
    with open(os.path.join(top, "runner.log"), "ab") as log:
        wall, cpu = run_runner(runner, conf, log, RUN_TIMEOUT)
        got = len(sink.accepted())
        if got != N_MSGS:
            raise bench.BenchError(
                "the sink accepted %d of %d messages (runner log: %s; "
                "BENCH_KEEP=1 keeps it)" % (got, N_MSGS, log.name))
        rcpts = {a for t in sink.accepted() for a in t.rcpts}
        if len(rcpts) != N_MSGS:
            raise bench.BenchError("the sink got %d distinct recipients, "
                                   "not %d" % (len(rcpts), N_MSGS))
        empty, listing = queue_empty(ctl, conf)
        if not empty:
            raise bench.BenchError("queue not empty after the run: %s"
                                   % listing)
        r["deliver"] = (wall, cpu, len(sink.connections))
        bench.say("delivered %d messages in %.2f s (%.1f msg/s, %d sink "
                  "connections, runner CPU %.2f s)"
                  % (N_MSGS, wall, N_MSGS / wall, len(sink.connections), cpu))
        r["idle"] = idle_runs(runner, conf, log)
    return r


def print_table(r):
    wall, cpu, conns = r["deliver"]
    mean_wall, med_wall, cpu_idle, cpu_children = r["idle"]
    rows = [("queue -> loopback sink, %d msgs to %d domains" %
             (N_MSGS, N_DOMAINS), "%.1f msg/s" % (N_MSGS / wall), "",
             "%.2f s, %d conns" % (wall, conns)),
            ("submission (enqueue) for the same, not timed above",
             "%.1f msg/s" % (N_MSGS / r["enqueue"]), "", ""),
            ("idle run: CPU user+sys per run (wait4)",
             "%.2f ms" % (cpu_idle * 1000), "<= %.0f ms" % AIM_IDLE_CPU_MS,
             "RUSAGE_CHILDREN %.2f ms" % (cpu_children * 1000)),
            ("idle run: wall per run (mean / median), %d runs" % IDLE_RUNS,
             "%.2f / %.2f ms" % (mean_wall * 1000, med_wall * 1000), "", "")]
    bench.say("%-52s %-20s %-12s %s" % ("queue measure", "sockmail (this run)",
                                        "aim", ""))
    bench.say("-" * 104)
    for label, value, aim, extra in rows:
        bench.say("%-52s %-20s %-12s %s" % (label, value, aim, extra))


def main():
    build = bench.find_build()
    top = tempfile.mkdtemp(prefix="sockmail-bench-queue.",
                           dir=bench.pick_base_dir(build))
    sink = Sink()
    dns = Dnsmasq(dns_records())
    try:
        r = run(build, top, sink, dns)
    except (bench.BenchError, AssertionError, subprocess.SubprocessError,
            OSError) as e:
        bench.say("bench_queue: ERROR: %s" % e)
        return 1
    finally:
        dns.stop()
        sink.stop()
        if os.environ.get("BENCH_KEEP"):
            bench.say("kept %s" % top)
        else:
            shutil.rmtree(top, ignore_errors=True)
    bench.say()
    print_table(r)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
