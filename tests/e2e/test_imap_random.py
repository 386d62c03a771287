"""Random IMAP sessions (issue 8): the libFuzzer targets reach the parsers;
this reaches the command handlers behind them.  One imap-handler session
is driven with commands drawn from the RFC 3501 grammar -- valid ones,
odd ones (sections of parts that do not exist, partials past the end,
sets beyond the mailbox, names in mUTF-7 that lie) and some plain
garbage -- against a mailbox of varied MIME messages, with folders being
created, renamed and deleted under it.

With one session and nothing else writing, the server's view can be
checked exactly.  Invariants after every command:
  * it gets one tagged OK, NO or BAD, and the connection stays up;
  * with a folder selected, "* n EXISTS" and EXPUNGE responses keep the
    count the server reports equal to the files in the folder's new/ and
    cur/ (checked with NOOP every few commands);
  * UID FETCH 1:* gives strictly increasing UIDs below UIDNEXT;
  * nothing is ever left in tmp/.
And at the end, LOGOUT gets BYE and OK and the handler exits; in the
sanitizer build the harness fails the test on any report.

TwoSessionTests: two sessions on one INBOX take turns at random (STORE,
EXPUNGE, APPEND, COPY, FETCH, SEARCH); every ten steps both NOOP, and
each must count exactly the files on disk and both must list the same
UIDs with the same flags.

Run from the repo root:
    BUILD=build python3 -m unittest discover -s tests/e2e -p 'test_imap_random.py' -v
Environment: SOCKMAIL_RANDOM_SEED=N (printed on failure), SOCKMAIL_LONG=1
(20,000 commands instead of 1,500; 4,000 turns instead of 400).
"""
import os
import random
import re
import unittest

from harness import IMAPTestCase, Literal, lf_to_crlf

LONG = os.environ.get("SOCKMAIL_LONG", "") not in ("", "0")
SEED = int(os.environ.get("SOCKMAIL_RANDOM_SEED", random.randrange(1 << 30)))
COMMANDS = 20000 if LONG else 1500

MESSAGES = [
    b"From: A <a@example.org>\nTo: b@example.org\nSubject: plain\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0100\nMessage-ID: <p@x>\n\nhello\n",
    b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\nSubject: =?utf-8?b?w6TDtsO8?=\n"
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n"
    b"--b1\nContent-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9 zebra\n"
    b"--b1\nContent-Type: multipart/alternative; boundary=b2\n\n"
    b"--b2\nContent-Type: text/html\n\n<p>x</p>\n--b2--\n"
    b"--b1\nContent-Type: message/rfc822\n\nSubject: inner\nFrom: i@x\n\n"
    b"inner body\n--b1\nContent-Type: application/octet-stream\n"
    b"Content-Transfer-Encoding: base64\nContent-Disposition: attachment; "
    b"filename*=utf-8''%C3%A4.bin\n\nAAECAwQ=\n--b1--\n",
    b"Subject: broken\nContent-Type: multipart/mixed; boundary=\"zz\"\n\n"
    b"--zz\nContent-Type: text/plain\n\nno close delimiter\n",
    b"Subject: no body",
    b"From: <>\nTo: undisclosed-recipients:;\nCc: \"q\\\"x\" <c@d>, (comment) e@f\n"
    b"Subject: " + b"long " * 300 + b"\n\n" + b"line\n" * 200,
    b"Content-Type: text/plain; charset=koi8-r\nSubject: =?koi8-r?b?8NLJ18XU?=\n\n"
    b"\xf0\xd2\xc9\xd7\xc5\xd4\n",
]

NAMES = ["INBOX", "Sent", "Trash", "a", "a/b", "a/b/c", "x.y", "Entw&APw-rfe",
         "&AOQ-&APY-", "sp ace", "inbox/sub", "../up", "a//b", "&", "nope",
         "\"quo\\\"te\""]
FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft",
         "$Label1", "$Work", "Junk", "\\Recent", "\\Bogus", "k" * 50]
FETCH_ATTS = ["FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
              "BODYSTRUCTURE", "BODY", "RFC822.HEADER", "BODY.PEEK[]",
              "BODY[TEXT]", "BODY.PEEK[HEADER]", "BODY.PEEK[1]",
              "BODY.PEEK[1.MIME]", "BODY.PEEK[2.1]", "BODY.PEEK[3.HEADER]",
              "BODY.PEEK[3.1]", "BODY.PEEK[4]", "BODY.PEEK[9.9.9]",
              "BODY.PEEK[HEADER.FIELDS (Subject From)]",
              "BODY.PEEK[HEADER.FIELDS.NOT (Subject)]", "BODY.PEEK[]<0.10>",
              "BODY.PEEK[]<5000.10>", "BODY.PEEK[1]<3.4294967295>", "RFC822",
              "BODY[0]", "BINARY[1]", "ALL", "FAST", "FULL", "BODY[", "X"]
SEARCH_KEYS = ["ALL", "SEEN", "UNSEEN", "FLAGGED", "DELETED", "NEW", "OLD",
               "RECENT", "ANSWERED", "DRAFT", "KEYWORD $Work", "UNKEYWORD $Work",
               "SUBJECT plain", "FROM j", "TO b", "CC c", "BCC x", "BODY zebra",
               "TEXT café", "TEXT zebra", "HEADER Message-ID p@x",
               "LARGER 100", "SMALLER 1000", "BEFORE 1-Jan-2030",
               "SINCE 1-Jan-2000", "ON 1-Jan-2024", "SENTBEFORE 2-Jan-2024",
               "SENTSINCE 1-Jan-2024", "SENTON 1-Jan-2024", "UID 1:3",
               "1:*", "NOT SEEN", "OR SEEN FLAGGED", "(SEEN UNSEEN)",
               "CHARSET UTF-8 TEXT café", "CHARSET KOI8-R ALL",
               "SUBJECT \"\"", "BEFORE 31-Feb-2024", "LARGER x", "OR SEEN"]


def seqset(rng):
    return rng.choice(["1", "*", "1:*", "2:4", "4:2", "1,3,5", "100",
                       "0", "1:100000", "%d" % rng.randint(1, 12),
                       "%d:*" % rng.randint(1, 12), "3,1:2,*", "a", ""])


def follow_count(count, r):
    """The message count after result r, as a client follows it: "* n
    EXISTS" sets it, each "* n EXPUNGE" takes one off."""
    for u in r.untagged:
        m = re.match(rb"(\d+) (EXISTS|EXPUNGE)$", u)
        if m and m.group(2) == b"EXISTS":
            count = int(m.group(1))
        elif m:
            count -= 1
    return count


def mailbox_name(arg):
    """The mailbox name an astring in NAMES stands for."""
    if arg.startswith('"'):
        return re.sub(r'\\(.)', r'\1', arg[1:-1])
    return arg


def short(history):
    """Commands for a failure message (APPEND's message cut short)."""
    return "; ".join(("APPEND %s {%d}" % (h[1], len(h[2]))) if isinstance(h, tuple)
                     else h for h in history)


class RandomBase(IMAPTestCase):
    # many commands are wrong on purpose
    CONF = {"max_bad_commands": "1000000"}

    def setUp(self):
        super().setUp()
        self.rng = random.Random(SEED)
        for i, m in enumerate(MESSAGES):
            self.put(m, sub="cur" if i % 2 else "new", flags="S" if i % 3 == 0 else "")
        self.selected = None  # (folder, readonly)
        self.count = 0        # messages the server says the selected folder has
        self.resync = False   # the selected folder was deleted or renamed

    def folder_path(self, name):
        """Where the server keeps folder name: "A/B" is .A.B, a "." in a
        level is "&AC4-", INBOX any case."""
        root = self.folder_dir()
        levels = name.split("/")
        if levels[0].upper() == "INBOX":
            if len(levels) == 1:
                return root
            levels[0] = "INBOX"
        return os.path.join(root, "." + ".".join(l.replace(".", "&AC4-")
                                                 for l in levels))

    def folder_files(self, name):
        d = self.folder_path(name)
        return sum(len(os.listdir(os.path.join(d, sub))) for sub in ("new", "cur")
                   if os.path.isdir(os.path.join(d, sub)))

    def tmp_files(self):
        """Files in any folder's tmp/."""
        out = []
        for dirpath, dirs, files in os.walk(self.folder_dir()):
            if os.path.basename(dirpath) == "tmp":
                out += [os.path.join(dirpath, f) for f in files]
        return out

    def command(self):
        rng = self.rng
        name = rng.choice(NAMES)
        q = '"%s"' % name if not name.startswith('"') else name
        uid = "UID " if rng.random() < 0.3 else ""
        k = rng.randrange(22)
        if k == 0:
            return ("SELECT " if rng.random() < 0.8 else "EXAMINE ") + q, name
        if k in (1, 2, 3):
            atts = rng.sample(FETCH_ATTS, rng.randint(1, 4))
            a = atts[0] if len(atts) == 1 and rng.random() < 0.5 else "(%s)" % " ".join(atts)
            return "%sFETCH %s %s" % (uid, seqset(rng), a), None
        if k in (4, 5):
            op = rng.choice(["FLAGS", "+FLAGS", "-FLAGS", "+FLAGS.SILENT", "FLAGS.SILENT", "X"])
            fl = " ".join(rng.sample(FLAGS, rng.randint(0, 3)))
            return "%sSTORE %s %s (%s)" % (uid, seqset(rng), op, fl), None
        if k in (6, 7):
            keys = " ".join(rng.sample(SEARCH_KEYS, rng.randint(1, 3)))
            return "%sSEARCH %s" % (uid, keys), None
        if k == 8:
            return "%s%s %s %s" % (uid, rng.choice(["COPY", "MOVE"]), seqset(rng), q), None
        if k == 9:
            return "EXPUNGE" if rng.random() < 0.7 else "UID EXPUNGE " + seqset(rng), None
        if k == 10:
            return ("APPEND", q, rng.choice(MESSAGES)), None
        if k == 11:
            return "CREATE " + q, None
        if k == 12:
            return "DELETE " + q, ("changed", name)
        if k == 13:
            return ("RENAME %s \"%s\"" % (q, rng.choice(NAMES).strip('"')),
                    ("changed", name))
        if k == 14:
            return "LIST %s %s" % (rng.choice(['""', '"a/"', 'x']),
                                   rng.choice(['*', '%', '"a/%"', '"*b*"', '""', '%/%'])), None
        if k == 15:
            return "STATUS %s (%s)" % (q, " ".join(rng.sample(
                ["MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE"],
                rng.randint(1, 3)))), None
        if k == 16:
            return rng.choice(["NOOP", "CHECK", "CAPABILITY", "NAMESPACE",
                               "ID NIL", "ENABLE UTF8=ACCEPT", "LSUB \"\" *",
                               "SUBSCRIBE " + q, "UNSUBSCRIBE " + q]), None
        if k == 17:
            return rng.choice(["CLOSE", "UNSELECT"]), None
        if k == 18:
            return "IDLE", None
        if k == 19:
            return rng.choice(["FETCH", "STORE 1", "SEARCH", "COPY 1", "BOGUS x",
                               "SELECT", "FETCH 1 (", "FETCH 1 BODY[1", "LIST",
                               "APPEND", "UID", "UID BOGUS 1",
                               "FETCH 1:* (BODY[HEADER.FIELDS ()])"]), None
        return "NOOP", None

    def run_one(self, c, i):
        cmd, select = self.command()
        tag = "R%d" % i
        if isinstance(cmd, tuple):
            data = lf_to_crlf(cmd[2])
            r = c.command("APPEND %s " % cmd[1], Literal(data), tag=tag)
        elif cmd == "IDLE":
            c.send("%s IDLE\r\n" % tag)
            first = c.read_response()
            if first.startswith(b"+"):
                c.send("DONE\r\n")
            r = c.read_until_tagged(tag)
        else:
            r = c.command(cmd, tag=tag)
        self.assertIn(r.status, ("OK", "NO", "BAD"), (cmd, r))
        self.track_count(cmd, select, r)
        return cmd

    def track_count(self, cmd, select, r):
        """Follow EXISTS/EXPUNGE as a client does."""
        if isinstance(select, tuple):
            # DELETE or RENAME of the selected folder (or of a parent,
            # or INBOX): what the session sees next is the server's
            # choice, so start again from a SELECT
            changed = mailbox_name(select[1])
            if (r.status == "OK" and self.selected is not None and
                    (self.selected[0] == changed or changed.upper() == "INBOX" or
                     self.selected[0].startswith(changed + "/"))):
                self.selected = None
                self.resync = True
            select = None
        if select is not None:
            select = mailbox_name(select)
            self.selected = (select, cmd.startswith("EXAMINE")) if r.status == "OK" else None
            self.count = 0
        elif cmd in ("CLOSE", "UNSELECT") and r.status == "OK":
            self.selected = None
        self.count = follow_count(self.count, r)

    def check_view(self, c, history):
        if self.resync:
            self.resync = False
            r = c.command("SELECT INBOX")
            self.assertEqual(r.status, "OK", r)
            self.track_count("SELECT INBOX", "INBOX", r)
        r = c.command("NOOP")
        self.assertEqual(r.status, "OK")
        self.track_count("NOOP", None, r)
        if self.selected is None:
            return
        name = self.selected[0]
        want = self.folder_files(name)
        self.assertEqual(self.count, want, "seed %d: %s has %d files, the "
                         "session counts %d; last commands: %s"
                         % (SEED, name, want, self.count, short(history[-10:])))
        r = c.command("UID FETCH 1:* (UID)")
        self.assertEqual(r.status, "OK", r)
        uids = [int(m.group(1)) for u in r.untagged
                for m in [re.search(rb"UID (\d+)", u)] if m]
        self.assertEqual(uids, sorted(set(uids)), "seed %d: UIDs %r" % (SEED, uids))



class RandomSessionTests(RandomBase):

    def test_random_session(self):
        c = self.login()
        history = []
        try:
            for i in range(COMMANDS):
                history.append(self.run_one(c, i))
                if i % 7 == 0:
                    self.check_view(c, history)
                if i % 7 == 0:
                    self.assertEqual(self.tmp_files(), [])
        except Exception:
            print("\nseed %d; last commands: %s" % (SEED, short(history[-10:])))
            raise
        r = c.command("LOGOUT")
        self.assertEqual(r.status, "OK")
        self.assertTrue(any(u.startswith(b"BYE") for u in r.untagged), r)
        self.assertTrue(self.srv.wait_handlers_exit(), "the handler stays")


class TwoSessionTests(RandomBase):
    """Two sessions on one INBOX, taking turns at random: each must follow
    the other's STOREs, EXPUNGEs, APPENDs and COPYs, so that after a NOOP
    both count what is on disk and both see the same UIDs with the same
    flags."""

    OPS = ["STORE", "STORE", "FETCH", "EXPUNGE", "APPEND", "COPY", "SEARCH",
           "NOOP", "UID STORE", "UID EXPUNGE"]

    def op(self, c, count, i):
        rng = self.rng
        op = rng.choice(self.OPS)
        tag = "T%d" % i
        n = max(count, 1)
        s = "%d:%d" % tuple(sorted((rng.randint(1, n), rng.randint(1, n))))
        if op in ("STORE", "UID STORE"):
            fl = " ".join(rng.sample(FLAGS[:7], rng.randint(0, 3)))
            cmd = "%s %s %s (%s)" % (op, s if op == "STORE" else "1:*",
                                     rng.choice(["+FLAGS", "-FLAGS", "FLAGS",
                                                 "+FLAGS.SILENT"]), fl)
        elif op == "FETCH":
            cmd = "FETCH %s (FLAGS UID %s)" % (s, rng.choice(
                ["BODY[TEXT]", "BODY.PEEK[HEADER]", "ENVELOPE", "RFC822.SIZE"]))
        elif op == "APPEND":
            return c.command("APPEND INBOX ", Literal(lf_to_crlf(rng.choice(MESSAGES))),
                             tag=tag), op
        elif op == "COPY":
            cmd = "COPY %s INBOX" % s
        elif op == "SEARCH":
            cmd = "SEARCH " + rng.choice(SEARCH_KEYS[:12])
        else:
            cmd = op if op != "UID EXPUNGE" else "UID EXPUNGE 1:*"
        return c.command(cmd, tag=tag), cmd

    def view(self, c, count):
        if count == 0:
            return []
        r = c.command("FETCH 1:* (UID FLAGS)")
        self.assertEqual(r.status, "OK", r)
        out = []
        for u in r.untagged:
            m = re.match(rb"(\d+) FETCH \(.*UID (\d+).*FLAGS \(([^)]*)\)", u) or \
                re.match(rb"(\d+) FETCH \(.*FLAGS \(([^)]*)\).*UID (\d+)", u)
            if m is None:
                continue
            seq = int(m.group(1))
            a, b = m.group(2), m.group(3)
            uid, flags = (a, b) if a.isdigit() else (b, a)
            out.append((seq, int(uid), sorted(f for f in flags.split()
                                              if f != b"\\Recent")))
        self.assertEqual(len(out), count, r.untagged[:5])
        return sorted(out)

    def test_two_sessions(self):
        a = self.login(select="INBOX")
        b = self.login(select="INBOX")
        counts = {id(a): 0, id(b): 0}
        for c in (a, b):
            counts[id(c)] = int(c.selected.numbers("EXISTS")[-1])
        history = []
        steps = 4000 if LONG else 400
        for i in range(steps):
            c = a if self.rng.random() < 0.5 else b
            r, cmd = self.op(c, counts[id(c)], i)
            history.append(("A: " if c is a else "B: ") + cmd)
            self.assertIn(r.status, ("OK", "NO", "BAD"), (cmd, r))
            counts[id(c)] = follow_count(counts[id(c)], r)
            if i % 10 == 9:
                disk = self.folder_files("INBOX")
                views = []
                for c2, name in ((a, "A"), (b, "B")):
                    counts[id(c2)] = follow_count(counts[id(c2)], c2.command("NOOP"))
                    self.assertEqual(counts[id(c2)], disk, "seed %d: %s counts %d, "
                                     "disk has %d; last: %s" % (
                                         SEED, name, counts[id(c2)], disk,
                                         "; ".join(history[-8:])))
                    views.append(self.view(c2, counts[id(c2)]))
                self.assertEqual(views[0], views[1], "seed %d: the sessions differ; "
                                 "last: %s" % (SEED, "; ".join(history[-8:])))
                self.assertEqual(self.tmp_files(), [])
        for c in (a, b):
            self.assertEqual(c.command("LOGOUT").status, "OK")
        self.assertTrue(self.srv.wait_handlers_exit(), "a handler stays")


if __name__ == "__main__":
    unittest.main()
