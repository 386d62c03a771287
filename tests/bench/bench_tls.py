#!/usr/bin/python3
"""bench_tls.py: the TLS part of `make bench` (issue 3), python3 stdlib only.

Runs build/smtp-handler under systemd-socket-activate with an ECDSA and
then an RSA-2048 certificate (made here with certtool) and measures, with
tests/bench/tls_blast.c, connections per second for connect + EHLO +
STARTTLS + EHLO + QUIT with a full handshake and with a resumed one (a
session ticket from an earlier connection: another handler process).  Also
Private_Dirty of a handler after the handshake, and whether a plain-text
session has GnuTLS mapped at all (it should not: the module is loaded only
at STARTTLS).  Prints, never asserts timings; exit 1 only on errors.
"""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the SMTP bench's helpers)

N_CONN = 200


def make_cert(top, kind):
    key = os.path.join(top, kind + "-key.pem")
    cert = os.path.join(top, kind + "-cert.pem")
    tmpl = os.path.join(top, "cert.cfg")
    with open(tmpl, "w") as f:
        f.write("cn = bench.example\ndns_name = bench.example\n"
                "expiration_days = 30\ntls_www_server\n")
    args = ["--key-type=ecdsa"] if kind == "ecdsa" else \
        ["--key-type=rsa", "--bits=2048"]
    for argv in (["certtool", "--generate-privkey", "--outfile", key] + args,
                 ["certtool", "--generate-self-signed", "--load-privkey",
                  key, "--template", tmpl, "--outfile", cert]):
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return cert, key


def tls_conf(conf, cert, key):
    out = conf + "." + os.path.basename(cert)
    with open(conf) as f, open(out, "w") as g:
        g.write(f.read() + "tls_cert = %s\ntls_key = %s\n" % (cert, key))
    return out


def blast(tool, port, resume):
    argv = [tool, "-h", "127.0.0.1", "-p", str(port), "-n", str(N_CONN)]
    if resume:
        argv.append("-r")
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    kv = dict(p.split("=", 1) for p in res.stdout.split() if "=" in p)
    if res.returncode != 0 or "rate" not in kv:
        raise bench.BenchError("tls_blast failed (%d): %s %s" %
                               (res.returncode, res.stdout, res.stderr))
    if resume and int(kv["resumed"]) != N_CONN:
        bench.problem("only %s of %d sessions were resumed" %
                      (kv["resumed"], N_CONN))
    return float(kv["rate"])


def newest_child(act):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = act.handler_children()
        if kids:
            return kids[-1][1]
        time.sleep(0.02)
    raise bench.BenchError("no handler process found")


def gnutls_mapped(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libgnutls" in f.read()


def memory_after_tls(act):
    """Private_Dirty of a handler before and after its STARTTLS, and
    whether GnuTLS was mapped before it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", act.port), timeout=30) as s:
        f = s.makefile("rb")
        bench.read_reply(f)
        pid = newest_child(act)
        s.sendall(b"EHLO bench.example\r\n")
        bench.read_reply(f)
        plain = bench.smaps(pid)
        mapped_plain = gnutls_mapped(pid)
        s.sendall(b"STARTTLS\r\n")
        bench.read_reply(f)
        t = ctx.wrap_socket(s)
        t.sendall(b"EHLO bench.example\r\n")
        tf = t.makefile("rb")
        bench.read_reply(tf)
        after = bench.smaps(pid)
        t.sendall(b"QUIT\r\n")
        bench.read_reply(tf)
    return plain, after, mapped_plain


def run(build, top):
    handler = bench.need_file(os.path.join(build, "smtp-handler"),
                              "smtp-handler")
    tool = bench.need_file(os.path.join(build, "tests", "tls_blast"),
                           "tls_blast")
    ctl = bench.need_file(os.path.join(build, "sockmailctl"), "sockmailctl")
    conf, _ = bench.write_config(top)
    bench.run_ctl(ctl, conf, ["domain", "add", "example.org"])
    r = {}
    for kind in ("ecdsa", "rsa"):
        cert, key = make_cert(top, kind)
        act = bench.Activator([handler, "-c", tls_conf(conf, cert, key)],
                              os.path.join(top, kind + ".log"))
        try:
            act.wait_ready()
            full = blast(tool, act.port, False)
            resumed = blast(tool, act.port, True)
            r[kind] = (full, resumed)
            bench.say("%-5s full %6.1f conn/s, resumed %6.1f conn/s "
                      "(%.2fx)" % (kind, full, resumed, resumed / full))
            if kind == "ecdsa":
                r["mem"] = memory_after_tls(act)
        finally:
            act.stop()
    return r


def kib(d, key):
    return d.get(key, float("nan"))


def print_table(r):
    plain, after, mapped = r["mem"]
    rows = [("connect+STARTTLS+EHLO+QUIT, ECDSA: full / resumed",
             "%.1f / %.1f conn/s" % r["ecdsa"], "resumed >= 3x full",
             "%.2fx" % (r["ecdsa"][1] / r["ecdsa"][0])),
            ("the same, RSA-2048: full / resumed",
             "%.1f / %.1f conn/s" % r["rsa"], "resumed >= 3x full",
             "%.2fx" % (r["rsa"][1] / r["rsa"][0])),
            ("Private_Dirty before / after STARTTLS",
             "%s / %s KiB" % (kib(plain, "Private_Dirty"),
                              kib(after, "Private_Dirty")),
             "<= 800 KiB after", ""),
            ("GnuTLS mapped in a plain-text session", "yes" if mapped
             else "no", "no", "")]
    bench.say("%-52s %-26s %-20s %s" % ("TLS measure", "sockmail (this run)",
                                        "aim", ""))
    bench.say("-" * 104)
    for label, value, aim, extra in rows:
        bench.say("%-52s %-26s %-20s %s" % (label, value, aim, extra))


def main():
    build = bench.find_build()
    top = tempfile.mkdtemp(prefix="sockmail-bench-tls.",
                           dir=bench.pick_base_dir(build))
    try:
        r = run(build, top)
    except (bench.BenchError, subprocess.SubprocessError, OSError) as e:
        bench.say("bench_tls: ERROR: %s" % e)
        return 1
    finally:
        shutil.rmtree(top, ignore_errors=True)
    bench.say()
    print_table(r)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
