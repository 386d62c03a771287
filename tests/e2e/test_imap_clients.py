"""End-to-end tests of imap-handler with real IMAP clients: mbsync (isync)
syncing the account with a local Maildir both ways, and curl's imap://
and imaps:// (LIST, FETCH by UID, SEARCH, APPEND by upload, STARTTLS).

Each test runs a fresh server (harness.IMAPTestCase) under
systemd-socket-activate and checks both what the client got and what is
on the server's disk.  A test is skipped only when the client program is
not installed.  Run from the repo root:
    BUILD=build /usr/bin/python3 -m unittest discover -s tests/e2e -p 'test_imap_clients.py' -v
"""

import os
import re
import shutil
import subprocess
import unittest

from harness import (IMAP_PASSWORD, WAIT, IMAPTestCase, crlf_to_lf,
                     lf_to_crlf, parse_list_line, tls_certificate)

PASSWORD = IMAP_PASSWORD
ALICE = "alice@example.org"
MBSYNC = shutil.which("mbsync")
CURL = shutil.which("curl")


def message(subject, body="body\n", msgid=None):
    return ("From: <x@remote.example>\nTo: <alice@example.org>\n"
            "Subject: %s\nMessage-ID: <%s@remote.example>\n"
            "Date: Tue, 14 Nov 2023 22:13:20 +0000\n\n%s"
            % (subject, msgid or subject.replace(" ", "."), body)).encode()


def no_tuid(content):
    """Without the X-TUID header mbsync may add to messages it copies."""
    return re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", crlf_to_lf(content))


def maildir_flags(name):
    """The flags after ":2," of a Maildir file name ("" without)."""
    return name.split(":2,", 1)[1] if ":2," in name else ""


class MaildirView:
    """The messages of one Maildir directory: {subject: (sub, name,
    content)} over new/ and cur/."""

    def __init__(self, path):
        self.path = path
        self.by_subject = {}
        for sub in ("new", "cur"):
            d = os.path.join(path, sub)
            if not os.path.isdir(d):
                continue
            for n in sorted(os.listdir(d)):
                if n.startswith("."):
                    continue
                with open(os.path.join(d, n), "rb") as f:
                    content = f.read()
                m = re.search(rb"^Subject: (.*?)\r?$", content, re.M)
                subject = m.group(1).decode() if m else None
                if subject in self.by_subject:
                    raise AssertionError("two messages %r in %s" % (subject, path))
                self.by_subject[subject] = (sub, n, content)

    def subjects(self):
        return set(self.by_subject)

    def flags(self, subject):
        return set(maildir_flags(self.by_subject[subject][1]))

    def content(self, subject):
        return self.by_subject[subject][2]


@unittest.skipIf(MBSYNC is None, "mbsync not installed (apt-get install isync)")
class MbsyncTests(IMAPTestCase):
    """mbsync syncing alice's account with a local Maildir tree."""

    TLS = True

    def setUp(self):
        super().setUp()
        self.home = os.path.join(self.srv.dir, "mbsync-home")
        self.local = os.path.join(self.home, "mail")
        os.makedirs(self.local, 0o700)
        self.rc = os.path.join(self.home, "mbsyncrc")

    def write_rc(self, ssl_type):
        cert = tls_certificate()[0]
        lines = ["IMAPAccount remote",
                 "Host 127.0.0.1",
                 "Port %d" % self.srv.port,
                 "User %s" % ALICE,
                 "Pass %s" % PASSWORD,
                 "SSLType %s" % ssl_type,
                 "Timeout 30"]
        if ssl_type == "None":
            lines.append("AuthMechs LOGIN")  # loopback: plaintext allowed
        else:
            # a certificate listed here is trusted as it is (mbsync(1))
            lines.append("CertificateFile %s" % cert)
        lines += ["",
                  "IMAPStore remote",
                  "Account remote",
                  "",
                  "MaildirStore local",
                  "Path %s/" % self.local,
                  "Inbox %s/INBOX" % self.local,
                  "SubFolders Verbatim",
                  "",
                  "Channel sync",
                  "Far :remote:",
                  "Near :local:",
                  "Patterns *",
                  "Create Both",
                  "Expunge Both",
                  "SyncState *",
                  "Sync All",
                  ""]
        with open(self.rc, "w") as f:
            f.write("\n".join(lines))
        os.chmod(self.rc, 0o600)

    def mbsync(self):
        """Run one sync of everything; returns the IMAP commands mbsync sent
        (from its network debug output)."""
        env = dict(os.environ, HOME=self.home)
        r = subprocess.run([MBSYNC, "-c", self.rc, "-Dn", "-a"], env=env,
                           capture_output=True, timeout=WAIT * 6, cwd=self.home)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, "mbsync failed:\n" + out[-6000:])
        self.assertNotIn(PASSWORD, out)
        cmds = []
        for line in out.splitlines():
            m = re.search(r">>> (?:\d+ )?(.*)$", line)
            if m:
                cmds.append(m.group(1))
        self.assertTrue(any(c.startswith("SELECT") or c.startswith("EXAMINE")
                            for c in cmds), "no IMAP traffic seen:\n" + out[-4000:])
        self.srv.wait_handlers_exit()
        return cmds, out

    @staticmethod
    def transfers(cmds):
        """The commands that move messages or flags (fetching flags and
        header fields to match messages is not a transfer)."""
        return [c for c in cmds
                if re.match(r"(UID )?(APPEND|STORE|COPY|MOVE|EXPUNGE|CREATE|DELETE)\b", c)
                or re.search(r"BODY(\.PEEK)?\[(TEXT)?\]|RFC822[ )]", c)]

    def server(self, folder=""):
        return MaildirView(self.folder_dir(folder))

    def local_box(self, name):
        return MaildirView(os.path.join(self.local, name))

    def server_state(self):
        """Every file name below alice's Maildir (tdb files aside)."""
        out = set()
        root = self.folder_dir()
        for d, dirs, files in os.walk(root):
            for f in files:
                if not f.endswith(".tdb"):
                    out.add(os.path.relpath(os.path.join(d, f), root))
        return out

    def local_state(self):
        out = set()
        for d, dirs, files in os.walk(self.local):
            for f in files:
                if not f.startswith(".mbsync"):
                    out.add(os.path.relpath(os.path.join(d, f), self.local))
        return out

    def sync_both_ways_twice(self, ssl_type):
        self.write_rc(ssl_type)
        self.put(message("server new"))
        self.put(message("server seen"), sub="cur", flags="S")
        self.put(message("server flagged"), sub="cur", flags="F")
        self.put(message("server sent"), folder="Sent", sub="cur", flags="S")
        # a local message and a local-only folder, to be pushed
        for box in ("INBOX", "Projects"):
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(self.local, box, sub))
        with open(os.path.join(self.local, "INBOX", "new",
                               "1700000100.1_1.localhost"), "wb") as f:
            f.write(message("local new"))
        with open(os.path.join(self.local, "Projects", "cur",
                               "1700000101.1_2.localhost:2,S"), "wb") as f:
            f.write(message("local project"))

        # 1st sync: pull the server's mail, push the local one
        cmds, out = self.mbsync()
        self.assertTrue(any(re.match(r"APPEND ", c) for c in cmds), out[-4000:])
        inbox = self.local_box("INBOX")
        self.assertEqual(inbox.subjects(), {"server new", "server seen",
                                            "server flagged", "local new"})
        self.assertEqual(no_tuid(inbox.content("server new")), message("server new"))
        self.assertIn("S", inbox.flags("server seen"))
        self.assertIn("F", inbox.flags("server flagged"))
        self.assertNotIn("S", inbox.flags("server new"))
        self.assertEqual(self.local_box("Sent").subjects(), {"server sent"})
        srv_inbox = self.server()
        self.assertEqual(srv_inbox.subjects(), {"server new", "server seen",
                                                "server flagged", "local new"})
        self.assertEqual(no_tuid(srv_inbox.content("local new")), message("local new"))
        self.assertNotIn(b"\r", srv_inbox.content("local new"))  # LF on disk
        self.assertTrue(os.path.isdir(os.path.join(self.folder_dir("Projects"), "cur")))
        self.assertEqual(self.server("Projects").subjects(), {"local project"})
        self.assertEqual(self.server("Projects").flags("local project"), {"S"})
        for sub in ("new", "cur"):
            for n in os.listdir(os.path.join(self.folder_dir(), sub)):
                self.assertRegex(n, r",S=[0-9]+,W=[0-9]+")

        # 2nd sync: nothing to transfer, nothing changes on either side
        before = (self.server_state(), self.local_state())
        cmds, out = self.mbsync()
        self.assertEqual(self.transfers(cmds), [], out[-4000:])
        self.assertEqual((self.server_state(), self.local_state()), before)

        # flags both ways: flagged locally, answered on the server
        inbox = self.local_box("INBOX")
        sub, name, _ = inbox.by_subject["server new"]
        base = name.split(":2,", 1)[0]
        os.rename(os.path.join(self.local, "INBOX", sub, name),
                  os.path.join(self.local, "INBOX", "cur",
                               base + ":2," + "".join(sorted(set(maildir_flags(name)) | {"F"}))))
        c = self.login(select="INBOX")
        r = c.command("UID SEARCH SUBJECT \"server seen\"")
        uid = r.search()[0]
        self.assertResult(c.command("UID STORE %d +FLAGS.SILENT (\\Answered)" % uid), "OK")
        self.assertResult(c.command("LOGOUT"), "OK")
        self.srv.wait_handlers_exit()
        cmds, out = self.mbsync()
        self.assertTrue(any(re.match(r"UID STORE ", c) for c in cmds), out[-4000:])
        self.assertIn("F", self.server().flags("server new"))
        self.assertIn("R", self.local_box("INBOX").flags("server seen"))

        # and once more: nothing
        before = (self.server_state(), self.local_state())
        cmds, out = self.mbsync()
        self.assertEqual(self.transfers(cmds), [], out[-4000:])
        self.assertEqual((self.server_state(), self.local_state()), before)

    def test_sync_plaintext_loopback(self):
        self.sync_both_ways_twice("None")

    def test_sync_starttls(self):
        self.sync_both_ways_twice("STARTTLS")


@unittest.skipIf(MBSYNC is None, "mbsync not installed (apt-get install isync)")
class MbsyncImplicitTests(MbsyncTests):
    ARGS = ("--tls=implicit",)

    test_sync_plaintext_loopback = None
    test_sync_starttls = None

    def test_sync_imaps(self):
        self.sync_both_ways_twice("IMAPS")


@unittest.skipIf(CURL is None, "curl not installed")
class CurlTests(IMAPTestCase):
    TLS = True

    def curl(self, url, *args, expect_rc=0):
        r = subprocess.run([CURL, "-sS", "--max-time", "30", "-u",
                            "%s:%s" % (ALICE, PASSWORD)] + list(args) + [url],
                           capture_output=True, timeout=WAIT * 3)
        self.assertEqual(r.returncode, expect_rc, r.stderr)
        return r.stdout

    def base(self, scheme="imap"):
        return "%s://127.0.0.1:%d/" % (scheme, self.srv.port)

    def test_list_fetch_search_append(self):
        m1 = message("curl one", ".dot line\nbody one\n")
        m2 = message("curl two", "body two\n")
        self.put(m1)
        self.put(m2)
        base = self.base()
        # LIST: curl prints the untagged responses
        out = self.curl(base)
        names = set()
        for line in out.split(b"\r\n"):
            if line:
                self.assertTrue(line.startswith(b"* LIST "), line)
                names.add(parse_list_line(line[2:])[2])
        self.assertEqual(names, {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"})
        # FETCH by UID and by sequence number: the CRLF message
        self.assertEqual(self.curl(base + "INBOX;UID=1"), lf_to_crlf(m1))
        self.assertEqual(self.curl(base + "INBOX;UID=2"), lf_to_crlf(m2))
        self.assertEqual(self.curl(base + "INBOX;MAILINDEX=2"), lf_to_crlf(m2))
        # a section
        self.assertEqual(self.curl(base + "INBOX;UID=1;SECTION=TEXT"),
                         b".dot line\r\nbody one\r\n")
        # SEARCH in the URL's query
        self.assertEqual(self.curl(base + "INBOX?SUBJECT%20%22curl%20two%22").strip(),
                         b"* SEARCH 2")
        # a custom command
        out = self.curl(base + "INBOX", "-X", "UID FETCH 1:* (FLAGS)")
        self.assertRegex(out, rb"\* 1 FETCH \(.*UID 1")
        # FETCH BODY[] set \Seen on both
        self.srv.wait_handlers_exit()
        cur = sorted(os.listdir(os.path.join(self.folder_dir(), "cur")))
        self.assertEqual(len(cur), 2, cur)
        for n in cur:
            self.assertIn("S", maildir_flags(n))
        # APPEND by upload
        up = os.path.join(self.srv.dir, "upload.eml")
        m3 = lf_to_crlf(message("curl upload", "uploaded\n"))
        with open(up, "wb") as f:
            f.write(m3)
        self.curl(base + "INBOX", "-T", up)
        self.srv.wait_handlers_exit()
        files = MaildirView(self.folder_dir())
        self.assertEqual(files.content("curl upload"), crlf_to_lf(m3))
        # UID 3 now
        self.assertEqual(self.curl(base + "INBOX;UID=3"), m3)
        # unknown UID: an error, not a hang
        self.curl(base + "INBOX;UID=99", expect_rc=78)  # CURLE_REMOTE_FILE_NOT_FOUND

    def test_wrong_password(self):
        r = subprocess.run([CURL, "-sS", "--max-time", "30", "-u", "%s:wrong" % ALICE,
                            self.base() + "INBOX;UID=1"],
                           capture_output=True, timeout=WAIT * 3)
        self.assertEqual(r.returncode, 67, r.stderr)  # CURLE_LOGIN_DENIED

    def test_starttls_and_sasl_ir(self):
        m = message("curl tls")
        self.put(m)
        cert = tls_certificate()[0]
        url = self.base() + "INBOX;UID=1"
        self.assertEqual(self.curl(url, "--ssl-reqd", "--cacert", cert), lf_to_crlf(m))
        self.assertEqual(self.curl(url, "--ssl-reqd", "--insecure"), lf_to_crlf(m))
        self.assertEqual(self.curl(url, "--ssl-reqd", "--insecure", "--sasl-ir",
                                   "--login-options", "AUTH=PLAIN"), lf_to_crlf(m))
        self.assertEqual(self.curl(url, "--login-options", "AUTH=PLAIN"), lf_to_crlf(m))


@unittest.skipIf(CURL is None, "curl not installed")
class CurlImplicitTests(CurlTests):
    ARGS = ("--tls=implicit",)

    test_list_fetch_search_append = None
    test_wrong_password = None
    test_starttls_and_sasl_ir = None

    def test_imaps(self):
        m = message("curl imaps")
        self.put(m)
        url = self.base("imaps") + "INBOX;UID=1"
        self.assertEqual(self.curl(url, "--insecure"), lf_to_crlf(m))
        self.assertEqual(self.curl(url, "--cacert", tls_certificate()[0]), lf_to_crlf(m))
        out = self.curl(self.base("imaps"), "--insecure")
        self.assertIn(b"INBOX", out)


if __name__ == "__main__":
    unittest.main()
