"""A throw-away DNS server for the queue tests: dnsmasq (Debian package
dnsmasq-base) on 127.0.0.1:<free port>, answering only from its command
line (--no-resolv --no-hosts --conf-file=/dev/null), so the queue runner,
pointed at it by `dns_server = 127.0.0.1:PORT`, sees exactly the MX and A
records a test wants and nothing of the real DNS.

    dns = Dnsmasq(["--mx-host=d1.test,mx.d1.test,10",
                   "--host-record=mx.d1.test,127.0.0.1"])
    dns.start()            # returns the port
    dns.query("d1.test", MX) -> (rcode, [answer records])
    dns.stop()

DnsmasqPerClass does the same for a whole TestCase class.

query() is a minimal standard-library DNS client, used to wait until the
server answers and by the tests to show what the runner was told.
"""

import os
import random
import socket
import struct
import subprocess
import tempfile
import time

DNSMASQ = "/usr/sbin/dnsmasq"

A, NS, CNAME, MX, AAAA = 1, 2, 5, 15, 28
NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5


def _free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
        finally:
            u.close()
            t.close()
    raise AssertionError("no free port for dnsmasq")


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def _read_name(pkt, off):
    """(name, offset after the name in place) with compression."""
    labels, jumped, end = [], False, off
    for _ in range(128):
        n = pkt[off]
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack("!H", pkt[off:off + 2])[0] & 0x3FFF
            if not jumped:
                end = off + 2
            jumped, off = True, ptr
            continue
        if n == 0:
            if not jumped:
                end = off + 1
            return ".".join(labels) or ".", end
        labels.append(pkt[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    raise ValueError("name loop")


def query(port, name, qtype, timeout=5.0, host="127.0.0.1"):
    """Ask once over UDP; returns (rcode, [(type, value)]) where value is
    "pref host" for MX, the address for A/AAAA, raw bytes otherwise."""
    qid = random.randrange(65536)
    pkt = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    pkt += _encode_name(name) + struct.pack("!HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, (host, port))
        while True:
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                break
    finally:
        s.close()
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", data[:12])
    off = 12
    for _ in range(qd):
        _, off = _read_name(data, off)
        off += 4
    answers = []
    for _ in range(an):
        _, off = _read_name(data, off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        rd = data[off:off + rdlen]
        if rtype == MX:
            pref = struct.unpack("!H", rd[:2])[0]
            answers.append((MX, "%d %s" % (pref, _read_name(data, off + 2)[0])))
        elif rtype == A:
            answers.append((A, socket.inet_ntop(socket.AF_INET, rd)))
        elif rtype == AAAA:
            answers.append((AAAA, socket.inet_ntop(socket.AF_INET6, rd)))
        else:
            answers.append((rtype, rd))
        off += rdlen
    return flags & 0xF, answers


class Dnsmasq:
    """dnsmasq in the foreground on a free loopback port.  records: extra
    dnsmasq options (--mx-host=..., --host-record=..., --address=...)."""

    def __init__(self, records=()):
        self.records = list(records)
        self.proc = None
        self.port = None
        self.dir = tempfile.mkdtemp(prefix="sockmail-dns-")
        self.log_path = os.path.join(self.dir, "dnsmasq.log")

    def argv(self, port):
        return [DNSMASQ, "--no-daemon", "--port=%d" % port,
                "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--pid-file=", "--cache-size=0"] + self.records

    def start(self, timeout=20.0):
        if not os.access(DNSMASQ, os.X_OK):
            raise AssertionError("%s not installed (Debian package "
                                 "dnsmasq-base)" % DNSMASQ)
        last = ""
        for _ in range(10):
            port = _free_port()
            log = open(self.log_path, "ab")
            proc = subprocess.Popen(self.argv(port), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log,
                                    start_new_session=True)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    query(port, "ready.invalid", A, timeout=0.5)
                    self.proc, self.port = proc, port
                    return port
                except OSError:  # not listening yet, or no answer yet
                    time.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            last = self.log_text()[-2000:]
        raise AssertionError("dnsmasq did not start: %s" % last)

    def query(self, name, qtype):
        return query(self.port, name, qtype)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if not os.environ.get("SOCKMAIL_TEST_KEEP"):
            subprocess.run(["rm", "-rf", "--", self.dir], check=False)


class DnsmasqPerClass:
    """TestCase mixin: one Dnsmasq for the whole class, answering the
    class's DNS_RECORDS, as cls.dns (started before the first test,
    stopped after the last)."""

    DNS_RECORDS = ()
    dns = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dns = Dnsmasq(list(cls.DNS_RECORDS))
        cls.dns.start()

    @classmethod
    def tearDownClass(cls):
        if cls.dns is not None:
            cls.dns.stop()
        super().tearDownClass()
