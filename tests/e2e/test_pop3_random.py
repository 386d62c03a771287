"""Random POP3 sessions (issue 8): pop3-handler driven with commands drawn
from RFC 1939 (and CAPA, TOP, UIDL), good and bad -- numbers out of range,
deleted messages, missing and extra arguments, garbage -- over a maildrop
of odd messages (no final newline, lines starting with ".", long lines,
empty).  A model of the maildrop predicts every answer exactly: STAT's
count and octets (the files' ",W=" sizes), LIST and UIDL, RETR's and TOP's text, DELE and RSET;
after QUIT the files left on disk are the ones not deleted.  Several
sessions run one after the other on what the last one left.

Run from the repo root:
    BUILD=build python3 -m unittest discover -s tests/e2e -p 'test_pop3_random.py' -v
Environment: SOCKMAIL_RANDOM_SEED=N (printed on failure), SOCKMAIL_LONG=1
(40 sessions instead of 6).
"""
import os
import random
import unittest

from test_pop3 import ALICE, POP3TestCase, crlf

LONG = os.environ.get("SOCKMAIL_LONG", "") not in ("", "0")
SEED = int(os.environ.get("SOCKMAIL_RANDOM_SEED", random.randrange(1 << 30)))
SESSIONS = 40 if LONG else 6

BODIES = [b"Subject: a\n\nhello\n", b"Subject: dots\n\n.\n..\n.x\n",
          b"Subject: no final newline\n\nlast", b"",
          b"Subject: long\n\n" + b"y" * 5000 + b"\n",
          b"Subject: many\n\n" + b"".join(b"line %d\n" % i for i in range(50)),
          b"No-Body: true\n"]


class RandomPOP3Tests(POP3TestCase):
    CONF = {"max_bad_commands": "1000000"}

    def setUp(self):
        super().setUp()
        self.rng = random.Random(SEED)
        self.history = []

    def fail_here(self, what):
        self.fail("seed %d: %s; last commands: %s"
                  % (SEED, what, "; ".join(self.history[-8:])))

    def expect(self, got, want):
        if got != want:
            self.fail_here("got %r, wanted %r" % (got[:200], want[:200]))

    def session(self, msgs):
        """One session over msgs [(base name, content)] in the order the
        server lists them (arrival order: the test's names sort so)."""
        rng = self.rng
        c = self.raw()
        self.expect(c.login()[:3], b"+OK")
        deleted = set()
        n = len(msgs)

        def size(i):
            # the file's ",W=": its octets with CRLF line ends.  A file
            # without a final newline goes out with one more CRLF than
            # that (knowing would mean opening every file for STAT).
            body = msgs[i][1]
            return len(body) + body.count(b"\n")

        def number():
            return rng.choice([rng.randint(1, n + 1) if n else 1, 0, -1, "x",
                               "99999999999999999999"])

        for _ in range(rng.randint(5, 60)):
            k = rng.randrange(10)
            if k == 0:
                self.history.append("STAT")
                live = [i for i in range(n) if i not in deleted]
                self.expect(c.cmd("STAT"), b"+OK %d %d" % (
                    len(live), sum(size(i) for i in live)))
            elif k in (1, 2):
                verb = rng.choice(["LIST", "UIDL"])
                num = number() if rng.random() < 0.7 else None
                line = verb if num is None else "%s %s" % (verb, num)
                self.history.append(line)
                r = c.cmd(line)
                if num is None:
                    self.expect(r[:3], b"+OK")
                    want = [b"%d %s" % (i + 1, b"%d" % size(i) if verb == "LIST"
                                        else msgs[i][0].encode())
                            for i in range(n) if i not in deleted]
                    self.expect(c.lines(), want)
                elif isinstance(num, int) and 1 <= num <= n and num - 1 not in deleted:
                    i = num - 1
                    self.expect(r, b"+OK %d %s" % (num, b"%d" % size(i) if verb == "LIST"
                                                   else msgs[i][0].encode()))
                else:
                    self.expect(r[:4], b"-ERR")
            elif k in (3, 4):
                num = number()
                top = rng.random() < 0.5
                lines = rng.choice([0, 1, 3, 100000])
                line = ("TOP %s %d" % (num, lines)) if top else "RETR %s" % num
                self.history.append(line)
                r = c.cmd(line)
                if isinstance(num, int) and 1 <= num <= n and num - 1 not in deleted:
                    self.expect(r[:3], b"+OK")
                    text = crlf(msgs[num - 1][1])
                    if top:
                        head, sep, body = text.partition(b"\r\n\r\n")
                        if sep:
                            bl = body.split(b"\r\n")[:-1]
                            text = head + sep + b"".join(l + b"\r\n" for l in bl[:lines])
                    got = b"".join(l + b"\r\n" for l in c.lines())
                    self.expect(got, text)
                else:
                    self.expect(r[:4], b"-ERR")
            elif k == 5:
                num = number()
                self.history.append("DELE %s" % num)
                r = c.cmd("DELE %s" % num)
                if isinstance(num, int) and 1 <= num <= n and num - 1 not in deleted:
                    self.expect(r[:3], b"+OK")
                    deleted.add(num - 1)
                else:
                    self.expect(r[:4], b"-ERR")
            elif k == 6:
                self.history.append("RSET")
                self.expect(c.cmd("RSET")[:3], b"+OK")
                deleted.clear()
            elif k == 7:
                line = rng.choice(["NOOP", "CAPA", "NOOP x", "BOGUS", "", "USER x",
                                   "PASS x", "STAT 1", "LIST 1 2", "RETR", "TOP 1",
                                   "DELE", "X" * 300, "RETR\x001"])
                self.history.append(repr(line))
                r = c.cmd(line)
                if line == "NOOP" or line == "CAPA":
                    self.expect(r[:3], b"+OK")
                    if line == "CAPA":
                        c.lines()
                else:
                    self.expect(r[:4], b"-ERR")
            else:
                self.history.append("NOOP")
                self.expect(c.cmd("NOOP")[:3], b"+OK")
        self.history.append("QUIT")
        self.expect(c.cmd("QUIT")[:3], b"+OK")
        c.expect_eof()
        return [m for i, m in enumerate(msgs) if i not in deleted]

    def test_random_sessions(self):
        msgs = []
        for _ in range(self.rng.randint(3, 8)):
            body = self.rng.choice(BODIES)
            base, name = self.put(body, sub=self.rng.choice(["new", "cur"]))
            msgs.append((base, body))
        for s in range(SESSIONS):
            msgs = self.session(msgs)
            self.assertTrue(self.srv.wait_handlers_exit(), "the handler stays")
            left = sorted(n.split(":")[0] for sub in ("new", "cur")
                          for n in self.files(sub))
            self.assertEqual(left, sorted(b for b, _ in msgs),
                             "seed %d: files after session %d" % (SEED, s))
            self.assertEqual(self.files("tmp"), [])
            if not msgs or self.rng.random() < 0.3:
                body = self.rng.choice(BODIES)
                base, name = self.put(body)
                msgs.append((base, body))


if __name__ == "__main__":
    unittest.main()
