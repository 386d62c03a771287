"""Random SMTP sessions (issue 8): smtp-handler in MX mode driven with
commands drawn from RFC 5321 -- in order and out of it, with odd
parameters, bad paths, NUL octets, overlong lines, pipelined bursts, and
message texts that are fine, stuffed, or broken (bare CR/LF, long lines,
too big).  A model of the session predicts the class of every reply and
what lands on disk.

Invariants, every command:
  * exactly one reply (multi-line only for EHLO/HELP), well-formed, of the
    class the model predicts: sequence errors are 503, syntax 501/500/555,
    MAIL/RCPT/DATA accepted exactly when the state allows;
  * a DATA the server answered 250 is in every accepted local recipient's
    new/ once, its body exactly as sent (dot-stuffing undone, LF line
    ends); a refused one is nowhere;
  * nothing is left in any tmp/.
At the end QUIT gets 221 and the handler exits; in the sanitizer build the
harness fails on any report.

Run from the repo root:
    BUILD=build python3 -m unittest discover -s tests/e2e -p 'test_smtp_random.py' -v
Environment: SOCKMAIL_RANDOM_SEED=N (printed on failure), SOCKMAIL_LONG=1
(10,000 commands instead of 800).
"""
import os
import random
import unittest

from harness import SockmailTestCase, split_delivered

LONG = os.environ.get("SOCKMAIL_LONG", "") not in ("", "0")
SEED = int(os.environ.get("SOCKMAIL_RANDOM_SEED", random.randrange(1 << 30)))
COMMANDS = 10000 if LONG else 800

LOCAL = ["alice@example.org", "bob@example.org", "carol@example.org"]
UNKNOWN = ["nobody@example.org"]
REMOTE = ["x@remote.example"]  # relaying is refused in MX mode


class Model:
    def __init__(self):
        self.helo = False
        self.reset()

    def reset(self):
        self.mail = False
        self.rcpts = set()    # the local mailboxes accepted
        self.accepted = 0     # RCPTs answered 250


class RandomSMTPTests(SockmailTestCase):
    CONF = {"max_bad_commands": "1000000", "message_size_limit": "20k",
            "max_recipients": "5"}

    def setUp(self):
        super().setUp()
        self.rng = random.Random(SEED)
        self.m = Model()
        self.expected = {a: [] for a in LOCAL}  # bodies delivered, in order
        self.history = []

    # -- the commands and what the model says of them
    def step(self, c, i):
        rng, m = self.rng, self.m
        k = rng.randrange(16)
        if k == 0:
            verb = rng.choice(["EHLO", "HELO", "ehlo"])
            arg = rng.choice(["client.test", "[127.0.0.1]", "", "x" * 300])
            r = self.cmd(c, "%s %s" % (verb, arg) if arg else verb)
            if not arg:
                self.want(r, 501)
            else:
                self.want(r, 250)
                m.helo = True
                m.reset()
        elif k in (1, 2):
            path = rng.choice(["<alice@remote.example>", "<>", "alice@remote.example",
                               "<bad", "<a@b> SIZE=100", "<a@b> SIZE=999999999",
                               "<a@b> BODY=8BITMIME", "<a@b> FOO=1", "<a@b> SIZE=x",
                               "<@relay:a@b>"])
            r = self.cmd(c, "MAIL FROM:" + path)
            if not m.helo or m.mail:
                self.want(r, 503)
            elif path in ("<bad", "<a@b> FOO=1", "<a@b> SIZE=x"):
                self.want(r, 501, 555)
            elif path == "<a@b> SIZE=999999999":
                self.want(r, 552)
            else:
                self.want(r, 250)
                m.mail = True
        elif k in (3, 4, 5):
            who = rng.choice(LOCAL + UNKNOWN + REMOTE + ["<broken", "postmaster"])
            arg = who if who.startswith("<") or who == "postmaster" else "<%s>" % who
            r = self.cmd(c, "RCPT TO:" + arg)
            if not m.mail:
                self.want(r, 503)
            elif who == "<broken":
                self.want(r, 501)
            elif m.accepted >= 5:       # max_recipients, duplicates count
                self.want(r, 452)
            elif who in LOCAL:
                self.want(r, 250)
                m.accepted += 1
                m.rcpts.add(who)        # one copy per mailbox
            else:
                self.want(r, 550, 501, 554, 250)
                if r.code == 250:       # postmaster: a local alias
                    m.accepted += 1
                    m.rcpts.add(None)
        elif k in (6, 7):
            self.data(c)
        elif k == 8:
            self.want(self.cmd(c, "RSET"), 250)
            m.reset()
        elif k == 9:
            self.want(self.cmd(c, rng.choice(["NOOP", "NOOP x", "HELP", "VRFY alice",
                                              "EXPN list"])), 250, 252, 214, 502, 550)
        elif k == 10:
            line = rng.choice([b"BOGUS", b"MAIL", b"RCPT", b"DATA x", b"MAIL FROM",
                               b"NO\0OP", b"", b"X" * 600, b"STARTTLS",
                               b"AUTH PLAIN", b"AUTH BOGUS"])
            r = self.cmd(c, line)
            self.want(r, 500, 501, 502, 503, 504, 454, 530, 250, 334)
            if r.code == 334:
                self.want(self.cmd(c, "*"), 501)
            if line == b"DATA x" and r.code == 354:
                self.fail("DATA with an argument was accepted")
        else:
            self.want(self.cmd(c, "NOOP"), 250)

    def message(self):
        rng = self.rng
        kind = rng.randrange(6)
        body = b"Subject: r%d\r\n\r\n" % rng.randrange(1 << 30)
        lines = [rng.choice([b"text", b".dot", b"..two", b"", b"x" * 200, b"caf\xc3\xa9"])
                 for _ in range(rng.randint(0, 30))]
        ok = True
        if kind == 1:
            lines.append(b"bare\rCR")
            ok = False
        elif kind == 2:
            lines.append(b"bare\nLF")
            ok = False
        elif kind == 3:
            lines.append(b"y" * 1200)
            ok = False
        elif kind == 4:
            lines += [b"z" * 900] * 30   # over the 20k limit
            ok = False
        wire = body + b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                               for l in lines)
        stored = body.replace(b"\r\n", b"\n") + b"".join(l + b"\n" for l in lines)
        return wire, stored, ok

    def data(self, c):
        m = self.m
        r = self.cmd(c, "DATA")
        if not m.mail or not m.rcpts:
            self.want(r, 503, 554)
            return
        self.want(r, 354)
        wire, stored, ok = self.message()
        c.send(wire + b".\r\n")
        r = c.read_reply()
        self.history.append("<message %s>" % ("fine" if ok else "bad"))
        if ok:
            self.want(r, 250)
            for a in m.rcpts:
                if a is not None:
                    self.expected[a].append(stored)
        else:
            self.want(r, 550, 552, 554)
        m.reset()

    def cmd(self, c, line):
        self.history.append(line if isinstance(line, str) else repr(line))
        return c.cmd(line)

    def want(self, r, *codes):
        if r.code not in codes:
            self.fail("seed %d: %d %r, wanted %r; last commands: %s" % (
                SEED, r.code, r.lines, codes, "; ".join(self.history[-8:])))

    def check_disk(self):
        for a in LOCAL:
            got = [split_delivered(self, content)[2]
                   for _, content in self.srv.read_new(a)]
            want = self.expected[a]
            self.assertEqual(len(got), len(want), "seed %d: %s" % (SEED, a))
            for w in want:
                self.assertTrue(any(g.endswith(w) for g in got),
                                "seed %d: %s lacks %r" % (SEED, a, w[:60]))
        self.assertEqual(self.srv.all_files("tmp"), [], "files left in tmp/")

    def test_random_session(self):
        c = self.srv.connect()
        c.greeting()
        for i in range(COMMANDS):
            self.step(c, i)
            if i % 50 == 0:
                self.check_disk()
        self.want(self.cmd(c, "QUIT"), 221)
        c.expect_eof()
        self.check_disk()
        self.assertTrue(self.srv.wait_handlers_exit(), "the handler stays")


if __name__ == "__main__":
    unittest.main()
