"""End-to-end tests of smtp-handler in inbound MX mode, against the
behaviour in the SMTP spec (replies) and DESIGN.md (Maildir layout).

Every test runs a fresh server (harness.SockmailServer) and checks both the
reply codes and what landed on disk, byte for byte.  Run from the repo root:
    BUILD=build /usr/bin/python3 -m unittest discover -s tests/e2e -v
"""

import os
import re
import select
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import unittest

from harness import (HOSTNAME, TIMEOUT, WAIT, SockmailTestCase, crlf_to_lf,
                     make_message, queue_id, split_delivered)

SENDER = "x@remote.example"
# No certificate configured: no STARTTLS; AUTH is offered because the client
# is on loopback and auth_plaintext defaults to "loopback" (test_smtp_tls.py).
EHLO_LINES = ["250-" + HOSTNAME, "250-PIPELINING", "250-SIZE 52428800",
              "250-8BITMIME", "250-SMTPUTF8", "250-AUTH PLAIN LOGIN",
              "250 ENHANCEDSTATUSCODES"]

USER_UNKNOWN = "Recipient address rejected: User unknown"
BARE = "Bare CR or LF in message data not allowed"
LONG_LINE = "Message has a line longer than 1000 octets"
TOO_BIG = "Message size exceeds fixed limit"


class ProtocolTests(SockmailTestCase):
    """Greeting, EHLO and the command replies of the spec."""

    def test_greeting_and_ehlo_exact(self):
        c = self.srv.connect()
        g = c.greeting()
        self.assertEqual(g.raw, b"220 " + HOSTNAME.encode() + b" ESMTP sockmail\r\n")
        r = c.ehlo("client.test")
        self.assertEqual(r.lines, EHLO_LINES, r.raw)
        r = c.cmd("HELO client.test")
        self.assertEqual(r.raw, b"250 " + HOSTNAME.encode() + b"\r\n")
        self.assertEqual(c.cmd("QUIT").raw, b"221 2.0.0 Bye\r\n")
        c.expect_eof()

    def test_helo_ehlo_without_argument(self):
        c = self.srv.connect()
        c.greeting()
        self.assertReply(c.cmd("EHLO"), 501, "5.5.4", client=c)
        self.assertReply(c.cmd("HELO"), 501, "5.5.4", client=c)
        self.assertReply(c.cmd("EHLO "), 501, "5.5.4", client=c)

    def test_sequence_errors(self):
        c = self.srv.connect()
        c.greeting()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 503, "5.5.1", client=c)
        c.ehlo()
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, "2.1.0", "Ok", client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("DATA"), 554, "5.5.1", client=c)
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "Ok", client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 503, "5.5.1", client=c)
        self.assertNothingDelivered()

    def test_syntax_errors(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<not an address>"), 501, "5.1.7", client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s> FROBNICATE=1" % SENDER), 555, "5.5.4", client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, "2.1.0", "Ok", client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@@example.org>"), 501, "5.1.3", client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, "2.1.5", "Ok", client=c)

    def test_spec_reply_texts(self):
        """The exact texts the spec gives (other tests check the codes);
        every mismatch is listed."""
        c = self.connect()
        steps = [
            (b"MAIL FROM:<x@remote.example>\r\n", "250 2.1.0 Ok"),
            (b"RCPT TO:<nobody@example.org>\r\n",
             "550 5.1.1 <nobody@example.org>: " + USER_UNKNOWN),
            (b"RCPT TO:<a@foreign.example>\r\n",
             "554 5.7.1 <a@foreign.example>: Relay access denied"),
            (b"DATA\r\n", "554 5.5.1 No valid recipients"),
            (b"NOOP " + b"x" * 600 + b"\r\n", "500 5.5.2 Line too long"),
            (b"FROBNICATE\r\n", "500 5.5.2 Error: command not recognized"),
            (b"VRFY alice\r\n", "252 2.5.2 Cannot VRFY user, but will accept "
             "message and attempt delivery"),
            (b"RCPT TO:<alice@example.org>\r\n", "250 2.1.5 Ok"),
            (b"DATA\r\n", "354 End data with <CR><LF>.<CR><LF>"),
            (b"x\r\n.\r\n", None),
            (b"RSET\r\n", "250 2.0.0 Ok"),
            (b"NOOP\r\n", "250 2.0.0 Ok"),
            (b"QUIT\r\n", "221 2.0.0 Bye"),
        ]
        wrong = []
        for send, expect in steps:
            c.send(send)
            r = c.read_reply()
            if expect is not None and r.line != expect:
                wrong.append("after %r: expected %r, got %r" % (send[:40], expect, r.line))
        if wrong:
            self.fail("replies differ from the spec:\n" + "\n".join(wrong))

    def test_misc_commands(self):
        c = self.connect()
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "Ok", client=c)
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "Ok", client=c)
        self.assertReply(c.cmd("VRFY alice"), 252, "2.5.2",
                         "Cannot VRFY user, but will accept message and attempt delivery",
                         client=c)
        self.assertReply(c.cmd("EXPN list"), 502, "5.5.1", client=c)
        self.assertReply(c.cmd("HELP"), 214, "2.0.0", client=c)
        self.assertReply(c.cmd("FROBNICATE"), 500, "5.5.2",
                         "Error: command not recognized", client=c)
        self.assertReply(c.cmd("noop"), 250, "2.0.0", client=c)
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0", "Bye", client=c)
        c.expect_eof()


class DeliveryTests(SockmailTestCase):

    def send_one(self, rcpt, subject, sender=SENDER, helo="client.test"):
        c = self.connect(helo)
        msg = make_message(subject, to=rcpt.encode())
        mail, rr, data, final = c.transaction(sender, [rcpt], msg)
        self.assertReply(mail, 250, "2.1.0", "Ok", client=c)
        self.assertReply(rr[0], 250, "2.1.5", "Ok", client=c)
        self.assertReply(data, 354, None, "End data with <CR><LF>.<CR><LF>", client=c)
        qid = queue_id(final)
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0", "Bye", client=c)
        c.expect_eof()
        return msg, qid

    def test_deliver_to_user(self):
        msg, qid = self.send_one("alice@example.org", "to alice")
        (name, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg, SENDER, "alice@example.org", qid)
        self.assertNothingDelivered("bob@example.org", "carol@example.org")

    def test_delivered_file_exact_layout(self):
        """The spec's Received layout, line by line."""
        msg, qid = self.send_one("alice@example.org", "layout")
        (name, content), = self.delivered("alice@example.org")
        head = (b"Return-Path: <x@remote.example>\n"
                b"Received: from client.test ([127.0.0.1])\n"
                b"\tby mx.test.example (sockmail) with ESMTP id " + qid.encode() +
                b"\n\tfor <alice@example.org>; ")
        self.assertEqual(content[:len(head)], head)
        rest = content[len(head):]
        date, rest = rest.split(b"\n", 1)
        self.assertRegex(date, rb"^[A-Z][a-z][a-z], [ 0-9]?[0-9] [A-Z][a-z][a-z] "
                         rb"[0-9]{4} [0-9][0-9]:[0-9][0-9]:[0-9][0-9] [+-][0-9]{4}")
        self.assertEqual(rest, crlf_to_lf(msg))
        # the name: <unique>,S=<size>,W=<size + LFs>, and nothing else in the Maildir
        self.assertEqual(name.split(",")[1:], ["S=%d" % len(content),
                                               "W=%d" % (len(content) + content.count(b"\n"))])
        self.assertEqual(self.srv.all_files("new"), [os.path.join("example.org", "alice", "new", name)])
        self.assertEqual(self.srv.all_files("tmp"), [])
        self.assertEqual(self.srv.all_files("cur"), [])

    def test_received_helo_and_queue_id(self):
        c = self.srv.connect()
        c.greeting()
        self.assertReply(c.cmd("HELO old.client.test"), 250)
        msg = make_message("helo")
        mail, rr, data, final = c.transaction(SENDER, ["bob@example.org"], msg)
        qid = queue_id(final)
        (n, content), = self.delivered("bob@example.org")
        m = self.assertDelivered(content, msg, SENDER, "bob@example.org", qid,
                                 helo="old.client.test", proto="SMTP")
        self.assertEqual(m.group("id").decode(), qid)

    def test_alias_two_targets(self):
        msg, qid = self.send_one("list@example.org", "to the list")
        for who in ("bob@example.org", "carol@example.org"):
            (n, content), = self.delivered(who)
            self.assertDelivered(content, msg, SENDER, "list@example.org", qid)
        self.assertNothingDelivered("alice@example.org", "dave@example.org")

    def test_catch_all(self):
        self.srv.add_alias("@example.org", "carol@example.org")
        msg, qid = self.send_one("nobody-here@example.org", "catch all")
        (n, content), = self.delivered("carol@example.org")
        self.assertDelivered(content, msg, SENDER, "nobody-here@example.org", qid)
        # a real user still gets their own mail, not the catch-all
        msg2, qid2 = self.send_one("alice@example.org", "not caught")
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg2, SENDER, "alice@example.org", qid2)
        self.delivered("carol@example.org", 1)

    def test_subaddress(self):
        msg, qid = self.send_one("alice+tag@example.org", "plus tag")
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg, SENDER, "alice+tag@example.org", qid)
        self.assertEqual(os.listdir(os.path.join(self.srv.mail_dir, "example.org")).count("alice+tag"), 0)

    def test_case_insensitive_recipient(self):
        msg, qid = self.send_one("Alice@Example.ORG", "case")
        (n, content), = self.delivered("alice@example.org")
        rp, m, body = split_delivered(self, content)
        self.assertEqual(body, crlf_to_lf(msg))

    def test_relay_denied_and_unknown_user(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, "2.1.0", client=c)
        self.assertReply(c.cmd("RCPT TO:<someone@foreign.example>"), 554, "5.7.1",
                         "<someone@foreign.example>: Relay access denied", client=c)
        self.assertReply(c.cmd("RCPT TO:<nobody@example.org>"), 550, "5.1.1",
                         "<nobody@example.org>: " + USER_UNKNOWN, client=c)
        self.assertReply(c.cmd("DATA"), 554, "5.5.1", client=c)
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", client=c)
        self.assertNothingDelivered()

    def test_null_sender(self):
        c = self.connect()
        msg = make_message("bounce", sender=b"MAILER-DAEMON@remote.example")
        mail, rr, data, final = c.transaction("", ["alice@example.org"], msg)
        self.assertReply(mail, 250, "2.1.0", client=c)
        qid = queue_id(final)
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg, "", "alice@example.org", qid)

    def test_duplicate_recipients_one_copy(self):
        c = self.connect()
        msg = make_message("dups")
        rcpts = ["alice@example.org", "alice+x@example.org", "ALICE@EXAMPLE.ORG",
                 "list@example.org", "bob@example.org"]
        mail, rr, data, final = c.transaction(SENDER, rcpts, msg)
        for r in rr:
            self.assertReply(r, 250, "2.1.5", client=c)
        qid = queue_id(final)
        for who in ("alice@example.org", "bob@example.org", "carol@example.org"):
            (n, content), = self.delivered(who)
            self.assertDelivered(content, msg, SENDER, None, qid)
        self.assertNothingDelivered("dave@example.org")

    def postmaster(self):
        self.srv.add_alias("postmaster@example.org", "alice@example.org")
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<Postmaster>"), 250, "2.1.5", client=c)
        self.assertReply(c.cmd("DATA"), 354, client=c)
        msg = make_message("to postmaster")
        qid = queue_id(c.send_data(msg))
        (n, content), = self.delivered("alice@example.org")
        rp, m, body = split_delivered(self, content)
        self.assertEqual(m.group("id").decode(), qid)
        self.assertEqual(body, crlf_to_lf(msg))

    def test_postmaster_without_domain(self):
        """No postmaster in the config: <postmaster> resolves in the
        (only) local domain."""
        self.postmaster()

    def test_postmaster_without_domain_configured(self):
        self.srv.stop()
        self.srv.write_config({"postmaster": "postmaster@example.org"})
        self.srv.start()
        self.postmaster()

    def test_pipelined_session(self):
        c = self.connect()
        c.send(b"MAIL FROM:<x@remote.example>\r\n"
               b"RCPT TO:<alice@example.org>\r\n"
               b"RCPT TO:<nobody@example.org>\r\n"
               b"RCPT TO:<bob@example.org>\r\n"
               b"DATA\r\n")
        replies = [c.read_reply() for _ in range(5)]
        self.assertReply(replies[0], 250, "2.1.0", "Ok", client=c)
        self.assertReply(replies[1], 250, "2.1.5", "Ok", client=c)
        self.assertReply(replies[2], 550, "5.1.1", "<nobody@example.org>: " + USER_UNKNOWN, client=c)
        self.assertReply(replies[3], 250, "2.1.5", "Ok", client=c)
        self.assertReply(replies[4], 354, client=c)
        self.assertTrue(c.nothing_pending(), c.dump())
        msg = make_message("pipelined")
        qid = queue_id(c.send_data(msg))
        for who in ("alice@example.org", "bob@example.org"):
            (n, content), = self.delivered(who)
            self.assertDelivered(content, msg, SENDER, None, qid)
        self.assertNothingDelivered("nobody@example.org", "carol@example.org")

    def test_pipelined_all_recipients_bad(self):
        c = self.connect()
        c.send(b"MAIL FROM:<x@remote.example>\r\n"
               b"RCPT TO:<nobody@example.org>\r\n"
               b"DATA\r\n")
        r = [c.read_reply() for _ in range(3)]
        self.assertReply(r[0], 250, "2.1.0", client=c)
        self.assertReply(r[1], 550, "5.1.1", client=c)
        self.assertReply(r[2], 554, "5.5.1", client=c)
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", client=c)
        self.assertNothingDelivered()

    def test_whole_transaction_in_one_write(self):
        """Greeting-independent client that writes everything at once: the
        server must work through its input buffer without losing bytes."""
        c = self.connect()
        msg = make_message("one write")
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.org>\r\n"
               b"DATA\r\n" + msg + b".\r\nQUIT\r\n")
        r = [c.read_reply() for _ in range(5)]
        self.assertEqual([x.code for x in r], [250, 250, 354, 250, 221], c.dump())
        qid = queue_id(r[3])
        c.expect_eof()
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg, SENDER, "alice@example.org", qid)

    def test_several_messages_and_rset(self):
        c = self.connect()
        m1 = make_message("first", to=b"alice@example.org")
        _, _, _, f1 = c.transaction(SENDER, ["alice@example.org"], m1)
        q1 = queue_id(f1)
        # a transaction thrown away by RSET delivers nothing
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, client=c)
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "Ok", client=c)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", client=c)
        m2 = make_message("second", to=b"bob@example.org")
        _, _, _, f2 = c.transaction("other@remote.example", ["bob@example.org"], m2)
        q2 = queue_id(f2)
        m3 = make_message("third", to=b"alice@example.org")
        _, _, _, f3 = c.transaction(SENDER, ["alice@example.org"], m3)
        q3 = queue_id(f3)
        self.assertEqual(len({q1, q2, q3}), 3, "queue ids not unique")
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        got = {}
        for n, content in self.delivered("alice@example.org", 2):
            rp, m, body = split_delivered(self, content)
            got[m.group("id").decode()] = (content, rp)
        self.assertEqual(sorted(got), sorted([q1, q3]))
        self.assertDelivered(got[q1][0], m1, SENDER, "alice@example.org", q1)
        self.assertDelivered(got[q3][0], m3, SENDER, "alice@example.org", q3)
        (n, content), = self.delivered("bob@example.org")
        self.assertDelivered(content, m2, "other@remote.example", "bob@example.org", q2)


class SizeLimitTests(SockmailTestCase):
    CONF = {"message_size_limit": "100k"}
    LIMIT = 102400

    def test_ehlo_advertises_limit(self):
        c = self.srv.connect()
        c.greeting()
        r = c.ehlo()
        self.assertIn("SIZE %d" % self.LIMIT, r.texts, r.raw)

    def test_size_param_above_limit(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s> SIZE=%d" % (SENDER, self.LIMIT + 1)),
                         552, "5.3.4", TOO_BIG, client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 503, "5.5.1", client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s> SIZE=%d" % (SENDER, self.LIMIT)),
                         250, "2.1.0", client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, client=c)

    def big_message(self, nbytes):
        line = b"0123456789" * 9 + b"abcdefg\r\n"  # 99 octets
        return make_message("big", body=line * (nbytes // len(line) + 1))

    def test_message_above_limit(self):
        c = self.connect()
        for size in (150 * 1024, 3 * 1024 * 1024):
            msg = self.big_message(size)
            mail, rr, data, final = c.transaction(SENDER, ["alice@example.org"], msg)
            self.assertReply(data, 354, client=c)
            self.assertReply(final, 552, "5.3.4", TOO_BIG, client=c)
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0", client=c)
            self.assertNothingDelivered()
        # and the session still delivers a small one
        small = make_message("small")
        _, _, _, final = c.transaction(SENDER, ["alice@example.org"], small)
        qid = queue_id(final)
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, small, SENDER, "alice@example.org", qid)

    def test_message_below_limit(self):
        c = self.connect()
        msg = self.big_message(90 * 1024)
        _, _, _, final = c.transaction(SENDER, ["alice@example.org"], msg)
        qid = queue_id(final)
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg, SENDER, "alice@example.org", qid)


class LineLimitTests(SockmailTestCase):

    def test_command_line_limit(self):
        c = self.connect()
        for total in (600, 513, 70000):
            line = b"NOOP " + b"x" * (total - 7) + b"\r\n"
            self.assertEqual(len(line), total)
            c.send(line)
            self.assertReply(c.read_reply(), 500, "5.5.2", client=c)
            # exactly one reply for the whole line: the next is NOOP's
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "Ok", client=c)
        line = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
        c.send(line)
        self.assertReply(c.read_reply(), 250, "2.0.0", client=c)

    def test_overlong_command_not_executed(self):
        """The cut-off start of an overlong line is not run as a command."""
        c = self.connect()
        c.send(b"MAIL FROM:<x@remote.example> " + b"X" * 600 + b"\r\n")
        self.assertReply(c.read_reply(), 500, "5.5.2", client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 503, "5.5.1", client=c)

    def test_nul_in_command(self):
        c = self.connect()
        c.send(b"NOOP\x00\r\n")
        self.assertReply(c.read_reply(), 500, "5.5.2", client=c)
        c.send(b"MAIL FROM:<x\x00y@remote.example>\r\n")
        self.assertReply(c.read_reply(), 500, "5.5.2", client=c)
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 503, client=c)

    def long_line_message(self, octets_with_crlf):
        return make_message("long", body=b"start\r\n" + b"L" * (octets_with_crlf - 2)
                            + b"\r\nend\r\n")

    def test_data_line_too_long(self):
        c = self.connect()
        for octets in (1200, 1001, 300000):
            msg = self.long_line_message(octets)
            mail, rr, data, final = c.transaction(SENDER, ["alice@example.org"], msg)
            self.assertReply(data, 354, client=c)
            self.assertReply(final, 550, "5.6.0", LONG_LINE, client=c)
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0", client=c)
            self.assertNothingDelivered()

    def test_data_line_of_1000_octets_ok(self):
        c = self.connect()
        msg = self.long_line_message(1000)
        _, _, _, final = c.transaction(SENDER, ["alice@example.org"], msg)
        qid = queue_id(final)
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg, SENDER, "alice@example.org", qid)


class StrictCRLFTests(SockmailTestCase):

    def bad_data(self, raw):
        """Send raw (unstuffed) data after 354; raw must end in CRLF.CRLF.
        Expect one 550 5.6.0 reply, then NOOP's reply, nothing delivered."""
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, client=c)
        self.assertReply(c.cmd("DATA"), 354, client=c)
        c.send(raw)
        self.assertReply(c.read_reply(), 550, "5.6.0", BARE, client=c)
        # exactly one reply to the data: the next one is NOOP's "250 2.0.0"
        # (a smuggled MAIL would answer "250 2.1.0")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "Ok", client=c)
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        self.assertNothingDelivered()

    def test_bare_lf(self):
        self.bad_data(b"Subject: lf\r\n\r\na\nb\r\n.\r\n")

    def test_bare_cr(self):
        self.bad_data(b"Subject: cr\r\n\r\na\rb\r\n.\r\n")

    def test_bare_lf_in_header(self):
        self.bad_data(b"Subject: lf\nX-Foo: bar\r\n\r\nbody\r\n.\r\n")

    def test_end_after_overlong_line_split_at_cr(self):
        # fuzz_smtp_data: a line over 1000 octets whose 1000th octet is a
        # CR, then more text and CRLF.  The "." line after that CRLF is the
        # end of the data; it was missed, and what followed was read as
        # message text (the client and the server out of step).
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, client=c)
        self.assertReply(c.cmd("DATA"), 354, client=c)
        c.send(b"Subject: split\r\n\r\n" + b"x" * 999 + b"\rz\r\n.\r\n")
        self.assertReply(c.read_reply(), 550, "5.6.0", LONG_LINE, client=c)
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "Ok", client=c)
        self.assertReply(c.cmd("QUIT"), 221, client=c)
        c.expect_eof()
        self.assertNothingDelivered()

    SMUGGLE_TAIL = (b"MAIL FROM:<evil@remote.example>\r\n"
                    b"RCPT TO:<bob@example.org>\r\n"
                    b"DATA\r\n"
                    b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n")


# SMTP smuggling: a fake end of data followed by commands inside the data;
# one test per fake end.  Only one reply may come, after the real end.
for _name, _fake in (("lf_dot_lf", b"\n.\n"), ("crlf_dot_lf", b"\r\n.\n"),
                     ("lf_dot_crlf", b"\n.\r\n"), ("cr_dot_crlf", b"\r.\r\n"),
                     ("crlf_dot_cr", b"\r\n.\r")):
    def _smuggle(self, fake=_fake):
        self.bad_data(b"Subject: smuggle\r\n\r\nhello" + fake + self.SMUGGLE_TAIL)
    _smuggle.__name__ = "test_smuggling_" + _name
    setattr(StrictCRLFTests, _smuggle.__name__, _smuggle)
del _name, _fake, _smuggle


class DotStuffingTests(SockmailTestCase):

    def smtplib_send(self, msg):
        s = smtplib.SMTP("127.0.0.1", self.srv.port, local_hostname="client.test",
                         timeout=TIMEOUT)
        try:
            s.ehlo()
            self.assertEqual(s.mail(SENDER)[0], 250)
            self.assertEqual(s.rcpt("alice@example.org")[0], 250)
            code, resp = s.data(msg)
            self.assertEqual(code, 250, resp)
            s.quit()
        finally:
            s.close()
        m = re.match(rb"2\.0\.0 Ok: queued as (\S+)$", resp)
        self.assertIsNotNone(m, resp)
        return m.group(1).decode()

    def test_dot_lines_round_trip(self):
        msg = (b"Subject: dots\r\n\r\n"
               b".starts with a dot\r\n"
               b"..two dots\r\n"
               b".\r\n"
               b"middle\r\n"
               b"...\r\n"
               b". space\r\n"
               b"last\r\n")
        qid = self.smtplib_send(msg)
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg, SENDER, "alice@example.org", qid)

    def test_dot_stuffing_raw(self):
        """Same with our own stuffing, byte-exact on the wire."""
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, client=c)
        self.assertReply(c.cmd("DATA"), 354, client=c)
        c.send(b"Subject: raw dots\r\n\r\n..a\r\n...b\r\n..\r\nc\r\n.\r\n")
        qid = queue_id(c.read_reply())
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, b"Subject: raw dots\r\n\r\n.a\r\n..b\r\n.\r\nc\r\n",
                             SENDER, "alice@example.org", qid)

    def test_message_without_final_newline(self):
        msg = b"Subject: no newline\r\n\r\nlast line without newline"
        qid = self.smtplib_send(msg)  # smtplib appends CRLF
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg + b"\r\n", SENDER, "alice@example.org", qid)
        self.assertTrue(content.endswith(b"\nlast line without newline\n"))

    def test_empty_message(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, client=c)
        self.assertReply(c.cmd("DATA"), 354, client=c)
        c.send(b".\r\n")
        qid = queue_id(c.read_reply())
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, b"", SENDER, "alice@example.org", qid)


class EightBitTests(SockmailTestCase):

    UTF8_USER = "jösé@example.org"
    UTF8_SENDER = "sénder@remote.example"

    def populate(self):
        super().populate()
        # a UTF-8 mailbox if sockmailctl takes it, else an alias to alice
        p = self.srv.add_user(self.UTF8_USER, check=False)
        if p.returncode == 0:
            self.utf8_box = self.UTF8_USER
        else:
            self.srv.add_alias(self.UTF8_USER, "alice@example.org")
            self.utf8_box = "alice@example.org"

    def test_8bitmime_body(self):
        c = self.connect()
        body = ("Grüße aus Köln – €\r\n".encode() +
                b"raw octets: \x80\x81\xfe\xff\r\n")
        msg = make_message("8bit", body=body,
                           extra=b"Content-Type: text/plain; charset=utf-8\r\n"
                                 b"Content-Transfer-Encoding: 8bit\r\n")
        mail, rr, data, final = c.transaction(SENDER, ["alice@example.org"], msg,
                                              params="BODY=8BITMIME")
        self.assertReply(mail, 250, "2.1.0", client=c)
        qid = queue_id(final)
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg, SENDER, "alice@example.org", qid)

    def test_body_7bit_param(self):
        c = self.connect()
        msg = make_message("7bit")
        mail, rr, data, final = c.transaction(SENDER, ["alice@example.org"], msg,
                                              params="BODY=7BIT")
        self.assertReply(mail, 250, "2.1.0", client=c)
        queue_id(final)

    def test_smtputf8(self):
        c = self.connect()
        msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: héllo wörld\r\n\r\nÜnïcödé\r\n"
               % (self.UTF8_SENDER, self.UTF8_USER)).encode()
        mail, rr, data, final = c.transaction(self.UTF8_SENDER, [self.UTF8_USER], msg,
                                              params="BODY=8BITMIME SMTPUTF8")
        self.assertReply(mail, 250, "2.1.0", client=c)
        self.assertReply(rr[0], 250, "2.1.5", client=c)
        qid = queue_id(final)
        (n, content), = self.delivered(self.utf8_box)
        self.assertDelivered(content, msg, self.UTF8_SENDER, self.UTF8_USER, qid,
                             proto="UTF8SMTP")

    def test_utf8_without_smtputf8(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % self.UTF8_SENDER), 553, "5.6.7", client=c)
        self.assertReply(c.cmd("MAIL FROM:<%s> BODY=8BITMIME" % SENDER), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<%s>" % self.UTF8_USER), 553, "5.6.7", client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, client=c)
        self.assertReply(c.cmd("RSET"), 250, client=c)
        self.assertNothingDelivered()


class RecipientLimitTests(SockmailTestCase):
    CONF = {"max_recipients": "3"}

    def test_too_many_recipients(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, client=c)
        for r in ("alice@example.org", "bob@example.org", "carol@example.org"):
            self.assertReply(c.cmd("RCPT TO:<%s>" % r), 250, "2.1.5", client=c)
        self.assertReply(c.cmd("RCPT TO:<dave@example.org>"), 452, "4.5.3",
                         "Too many recipients", client=c)
        self.assertReply(c.cmd("DATA"), 354, client=c)
        msg = make_message("three")
        qid = queue_id(c.send_data(msg))
        for who in ("alice@example.org", "bob@example.org", "carol@example.org"):
            (n, content), = self.delivered(who)
            self.assertDelivered(content, msg, SENDER, None, qid)
        self.assertNothingDelivered("dave@example.org")


class BadCommandLimitTests(SockmailTestCase):
    CONF = {"max_bad_commands": "5"}

    def test_too_many_bad_commands(self):
        c = self.connect()
        errors = 0
        r = None
        while errors < 5:
            r = c.cmd("BOGUS%d" % errors)
            if r.code == 421:
                break
            self.assertReply(r, 500, "5.5.2", client=c)
            errors += 1
        if r.code != 421:
            # the limit is reached: 421 comes unasked (as Postfix does it),
            # or in answer to the next command
            ready = select.select([c.sock], [], [], 5)[0]
            if not ready and c.nothing_pending():
                c.send(b"BOGUS\r\n")
            r = c.read_reply()
        self.assertReply(r, 421, "4.7.0", client=c)
        self.assertIn("too many errors", r.text.lower())
        self.assertIn(errors, (4, 5), c.dump())
        c.expect_eof()

    def test_good_commands_do_not_count(self):
        c = self.connect()
        for i in range(4):
            self.assertReply(c.cmd("BOGUS"), 500, client=c)
        for i in range(10):
            self.assertReply(c.cmd("NOOP"), 250, client=c)
        msg = make_message("still fine")
        _, _, _, final = c.transaction(SENDER, ["alice@example.org"], msg)
        queue_id(final)


class TimeoutTests(SockmailTestCase):
    CONF = {"smtp_timeout": "2s"}

    def test_idle_client(self):
        c = self.srv.connect()
        c.greeting()
        r = c.read_reply()  # nothing sent: the server gives up
        self.assertEqual(r.raw, b"421 4.4.2 " + HOSTNAME.encode()
                         + b" Error: timeout exceeded\r\n")
        c.expect_eof()
        self.assertTrue(self.srv.wait_handlers_exit(), "handler still running")

    def test_idle_in_data(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, client=c)
        self.assertReply(c.cmd("DATA"), 354, client=c)
        c.send(b"Subject: half\r\n\r\nhalf a mess")
        self.assertReply(c.read_reply(), 421, "4.4.2", client=c)
        c.expect_eof()
        self.assertTrue(self.srv.wait_handlers_exit(), "handler still running")
        self.assertNothingDelivered()


class ConcurrencyTests(SockmailTestCase):
    N = 50

    def test_parallel_connections(self):
        barrier = threading.Barrier(self.N, timeout=WAIT * 3)
        results = [None] * self.N
        msgs = [make_message("parallel %02d" % i,
                             body=("message number %d\r\n" % i).encode() * (i + 1))
                for i in range(self.N)]

        def worker(i):
            try:
                c = self.srv.connect()
                barrier.wait()
                c.start("client%d.test" % i)
                mail, rr, data, final = c.transaction(SENDER, ["alice@example.org"], msgs[i])
                qid = queue_id(final)
                r = c.cmd("QUIT")
                c.expect_eof()
                results[i] = ("ok", qid, r.code)
            except Exception as e:  # reported below
                results[i] = ("error", repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(self.N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 4)
        bad = [(i, r) for i, r in enumerate(results) if not r or r[0] != "ok" or r[2] != 221]
        self.assertEqual(bad, [])
        qids = [r[1] for r in results]
        self.assertEqual(len(set(qids)), self.N, "queue ids not unique")
        files = self.delivered("alice@example.org", self.N)
        by_id = {}
        for n, content in files:
            rp, m, body = split_delivered(self, content)
            by_id[m.group("id").decode()] = content
        self.assertEqual(sorted(by_id), sorted(qids))
        for i, qid in enumerate(qids):
            self.assertDelivered(by_id[qid], msgs[i], SENDER, "alice@example.org", qid,
                                 helo="client%d.test" % i)


CLIENT_SCRIPT = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
f = s.makefile("rb")
def reply():
    while True:
        l = f.readline()
        if not l or l[3:4] != b"-":
            return l
reply()
for c in (b"EHLO killed.test", b"MAIL FROM:<x@remote.example>",
          b"RCPT TO:<alice@example.org>", b"DATA"):
    s.sendall(c + b"\r\n")
    r = reply()
    if c == b"EHLO killed.test":
        continue
    assert r[:1] in (b"2", b"3"), r
s.sendall(b"Subject: killed\r\n\r\n" + b"half a message\r\n" * 2000)
sys.stdout.write("sent\n")
sys.stdout.flush()
import time
time.sleep(600)
"""


class AbortTests(SockmailTestCase):
    """The client goes away in the middle of DATA: nothing is delivered and
    nothing is left in tmp/ once the handler has exited."""

    def half_message(self, c):
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<alice@example.org>"), 250, client=c)
        self.assertReply(c.cmd("RCPT TO:<list@example.org>"), 250, client=c)
        self.assertReply(c.cmd("DATA"), 354, client=c)
        c.send(b"Subject: half\r\n\r\n" + b"half a message\r\n" * 2000 + b"no end")

    def check_clean(self):
        self.assertTrue(self.srv.wait_handlers_exit(),
                        "handler did not exit after the client went away")
        self.assertNothingDelivered()
        self.assertEqual(self.srv.all_files("cur"), [])

    def test_close_mid_data(self):
        c = self.connect()
        self.half_message(c)
        c.close()
        self.check_clean()

    def test_reset_mid_data(self):
        c = self.connect()
        self.half_message(c)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        self.check_clean()

    def test_client_process_killed(self):
        p = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, str(self.srv.port)],
                             stdout=subprocess.PIPE)
        try:
            line = p.stdout.readline()
            self.assertEqual(line, b"sent\n")
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=WAIT)
            p.stdout.close()
        self.check_clean()


class BadConfigTests(SockmailTestCase):
    START = False

    def greeting_421(self):
        """Start with the broken config; returns (greeting, handler stderr)."""
        self.srv.start()
        c = self.srv.connect()
        g = c.greeting()
        self.assertReply(g, 421, "4.3.0", client=c)
        c.expect_eof()
        self.assertTrue(self.srv.wait_handlers_exit())
        return g, self.srv.stderr_text()

    def assertGreetingText(self, g):
        # "421 4.3.0 <hostname or localhost> Service temporarily unavailable"
        self.assertRegex(g.text, r"^4\.3\.0 \S+ Service temporarily unavailable$")

    def test_unknown_key(self):
        lines = self.srv.write_config({}, ["", "# a comment", "no_such_key = 1",
                                           "max_recipients = 10"])
        lineno = lines.index("no_such_key = 1") + 1
        g, err = self.greeting_421()
        self.assertIn("%s:%d:" % (self.srv.conf_path, lineno), err)
        self.assertGreetingText(g)

    def test_bad_value(self):
        lines = self.srv.write_config({"message_size_limit": "lots"})
        lineno = lines.index("message_size_limit = lots") + 1
        g, err = self.greeting_421()
        self.assertIn("%s:%d:" % (self.srv.conf_path, lineno), err)

    def test_missing_file(self):
        os.rename(self.srv.conf_path, self.srv.conf_path + ".gone")
        g, err = self.greeting_421()
        self.assertIn(self.srv.conf_path, err)


class LoopTests(SockmailTestCase):

    def test_too_many_received(self):
        c = self.connect()
        hops = b"".join(b"Received: from hop%d.example by hop%d.example; "
                        b"Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i + 1) for i in range(101))
        msg = hops + make_message("loop")
        mail, rr, data, final = c.transaction(SENDER, ["alice@example.org"], msg)
        self.assertReply(final, 554, "5.4.6", client=c)
        self.assertReply(c.cmd("NOOP"), 250, client=c)
        self.assertNothingDelivered()

    def test_some_received_ok(self):
        c = self.connect()
        hops = b"".join(b"Received: from hop%d.example by hop%d.example; "
                        b"Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i + 1) for i in range(30))
        msg = hops + make_message("hops")
        _, _, _, final = c.transaction(SENDER, ["alice@example.org"], msg)
        qid = queue_id(final)
        (n, content), = self.delivered("alice@example.org")
        self.assertDelivered(content, msg, SENDER, "alice@example.org", qid)


@unittest.skipUnless(os.access("/usr/bin/swaks", os.X_OK), "swaks not installed")
class SwaksTests(SockmailTestCase):

    def swaks(self, *extra):
        argv = ["/usr/bin/swaks", "--server", "127.0.0.1", "--port", str(self.srv.port),
                "--to", "alice@example.org", "--from", SENDER, "--ehlo", "swaks.test",
                "--header", "Subject: swaks test", "--body", "Hello from swaks",
                "--timeout", "30"] + list(extra)
        p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT * 3)
        out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        m = re.search(r"<- {1,2}250 2\.0\.0 Ok: queued as (\S+)", out)
        self.assertIsNotNone(m, out)
        (n, content), = self.delivered("alice@example.org")
        rp, rm, body = split_delivered(self, content)
        self.assertEqual(rp, SENDER.encode())
        self.assertEqual(rm.group("helo"), b"swaks.test")
        self.assertEqual(rm.group("id").decode(), m.group(1))
        self.assertIn(b"\nSubject: swaks test\n", b"\n" + body)
        # swaks sends "\r\n\r\nBODY\r\n" plus blank lines of its own
        self.assertIn(b"\n\nHello from swaks\n", body)
        return out

    def test_swaks(self):
        self.swaks()

    def test_swaks_pipeline(self):
        out = self.swaks("--pipeline")
        self.assertIn("PIPELINING", out)


if __name__ == "__main__":
    unittest.main()
