#!/usr/bin/env python3
"""End-to-end tests of spool-smtpd with real SMTP clients (docs/smtpd.md).

Each test class starts its own spool-smtpd on 127.0.0.1 (port 0: the server picks one and
prints it), drives it with a real client (Python's smtplib, raw sockets, swaks, Postfix's
smtp-source), and reads every message that got "250 2.0.0 Ok: queued as ID" back byte for
byte: all of them with one `spool-ctl export` (one process per check, not one per id: each
spool-ctl pays for opening the spool), and a few also with `spool-ctl cat ID`, the
command an operator reads one message with.

What a client sent is known exactly: either the test wrote the bytes itself, or a recording
proxy sat between client and server and kept both directions; the DATA payload is then
recovered from the recording by an independent decoder (transcript_messages) and paired with
the reply that followed it.

Usage: smtpd_e2e.py --smtpd PATH --ctl PATH [TestClass ...]
Exit 0 when the tests pass, 1 when one fails, 77 when every test selected was skipped
(the machine forbids it: not root, no tmpfs mount, a client not installed).
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SMTPD = None
CTL = None

QUEUED_RE = re.compile(rb"2\.0\.0 Ok: queued as ([0-9A-Za-z]{1,32})")
TIMEOUT = 30


# ---- The server under test ---------------------------------------------------------------


class Smtpd:
    """A spool-smtpd process on 127.0.0.1, port chosen by the server."""

    def __init__(self, spool, *extra, env=None, wrapper=None):
        self.spool = spool
        self.extra = list(extra)
        self.wrapper = list(wrapper or [])  # a command that execs the server (prlimit)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.port = None
        self.log_path = None
        self.start()

    def start(self):
        self.log_path = tempfile.mktemp(prefix="smtpd-e2e-log-")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*self.wrapper, SMTPD, "--spool", self.spool, "--listen", "127.0.0.1:0", *self.extra],
            stdout=subprocess.PIPE, stderr=self.log, env=self.env)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"spool-smtpd: listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.wait(timeout=TIMEOUT)
            raise AssertionError("spool-smtpd did not start: %r; log: %s" % (line, self.log_text()))
        self.port = int(m.group(1))

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        """Sends `sig` and returns the exit code."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=TIMEOUT)
        self.proc.stdout.close()
        self.log.close()
        return code

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)


def ctl_list(spool):
    out = subprocess.run([CTL, "--spool", spool, "list", "--json"], check=True,
                         capture_output=True, timeout=TIMEOUT).stdout
    return {m["id"]: m for m in map(json.loads, out.decode().splitlines())}


def ctl_cat(spool, msg_id):
    r = subprocess.run([CTL, "--spool", spool, "cat", msg_id], capture_output=True,
                       timeout=TIMEOUT)
    if r.returncode != 0:
        raise AssertionError("spool-ctl cat %s: exit %d: %s" % (msg_id, r.returncode, r.stderr))
    return r.stdout


def ctl_export(test, spool, ids):
    """The bodies of `ids` (id -> bytes) as one `spool-ctl export` wrote them, ids on stdin.
    Fails the test unless it exported each and wrote nothing else."""
    out = tempfile.mkdtemp(prefix="smtpd-e2e-export-")  # not beside the spool: it may be full
    test.addCleanup(shutil.rmtree, out, True)
    r = subprocess.run([CTL, "--spool", spool, "export", "--dir", out, "-"],
                       input="".join(i + "\n" for i in ids).encode(), capture_output=True,
                       timeout=TIMEOUT)
    if r.returncode != 0 or r.stdout or r.stderr:
        raise AssertionError("spool-ctl export: exit %d: %s%s"
                             % (r.returncode, r.stdout[:200], r.stderr[:2000]))
    stored = {}
    for name in os.listdir(out):
        with open(os.path.join(out, name), "rb") as f:
            stored[name] = f.read()
    test.assertEqual(sorted(stored), sorted(set(ids)), "files spool-ctl export wrote")
    return stored


def verify_stored(test, spool, expected):
    """Every id of `expected` (id -> body bytes) is in the spool, byte for byte: all through
    `spool-ctl export`, the first id and the largest body through `spool-ctl cat` too."""
    listed = ctl_list(spool)
    missing = sorted(set(expected) - set(listed))
    test.assertEqual(missing, [], "250'd ids missing from spool-ctl list")
    for msg_id, body in expected.items():
        test.assertEqual(listed[msg_id]["size"], len(body), msg_id)
    stored = ctl_export(test, spool, list(expected))
    for msg_id, body in expected.items():
        if stored[msg_id] != body:
            test.fail("%s: exported body (%d bytes) differs from what was sent (%d bytes)"
                      % (msg_id, len(stored[msg_id]), len(body)))
    sample = {min(expected), max(expected, key=lambda i: (len(expected[i]), i))} if expected else ()
    for msg_id in sample:
        got = ctl_cat(spool, msg_id)
        if got != expected[msg_id]:
            test.fail("%s: spool-ctl cat gave %d bytes, not the %d sent"
                      % (msg_id, len(got), len(expected[msg_id])))
    return listed


# ---- Clients -------------------------------------------------------------------------------


class Conn:
    """A raw SMTP connection: exact bytes out, replies in."""

    def __init__(self, port, timeout=TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; unread: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """(code, last line's text after the code) of the next reply."""
        while True:
            line = self._line()
            if line[3:4] != b"-":
                return int(line[:3]), line[4:]

    def cmd(self, line):
        self.send(line + b"\r\n")
        return self.reply()

    def at_eof(self):
        """True once the server has closed the connection (nothing more to read)."""
        try:
            return self.sock.recv(1) == b"" and not self.buf
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def queued_id(test, reply):
    code, text = reply
    test.assertEqual(code, 250, text)
    m = QUEUED_RE.search(text)
    test.assertIsNotNone(m, text)
    return m.group(1).decode()


def dot_stuff(body):
    """The DATA payload for `body` (which ends with CRLF): leading dots doubled, then the
    terminator. Only CRLF starts a line."""
    out = re.sub(rb"(?:(?<=\r\n)|^)\.", b"..", body)
    return out + b".\r\n"


class RecordingProxy:
    """A TCP proxy that keeps, per connection, the bytes each side sent."""

    def __init__(self, target_port):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        self.sessions = []  # [client_bytes, server_bytes]
        self.threads = []
        self.lock = threading.Lock()
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            record = [bytearray(), bytearray()]
            with self.lock:
                self.sessions.append(record)
                for src, dst, buf in ((client, server, record[0]), (server, client, record[1])):
                    t = threading.Thread(target=self._pipe, args=(src, dst, buf), daemon=True)
                    t.start()
                    self.threads.append(t)

    @staticmethod
    def _pipe(src, dst, buf):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                dst.sendall(data)
        except OSError:
            pass
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass

    def close(self):
        self.listener.close()
        with self.lock:
            threads = list(self.threads)
        for t in threads:
            t.join(TIMEOUT)


def parse_replies(data):
    replies, lines = [], []
    for line in bytes(data).split(b"\r\n")[:-1]:
        lines.append(line)
        if line[3:4] != b"-":
            replies.append((int(line[:3]), b"\n".join(l[4:] for l in lines)))
            lines = []
    return replies


def unstuff(raw):
    """The body of a DATA payload `raw` (terminator removed): the leading '.' of each
    CRLF-delimited line dropped (RFC 5321 §4.5.2)."""
    lines = raw.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


def transcript_messages(client, server):
    """From one recorded session: [(reply after the data, body sent)] for every DATA that
    got 354. Replies come in command order (pipelined or not)."""
    client = bytes(client)
    replies = iter(parse_replies(server))
    next(replies, None)  # the greeting
    pos, out = 0, []
    while True:
        lf = client.find(b"\n", pos)
        if lf < 0:
            return out
        line = client[pos:lf].rstrip(b"\r")
        pos = lf + 1
        reply = next(replies, None)
        if reply is None:
            return out
        if line.upper() == b"DATA" and reply[0] == 354:
            if client.startswith(b".\r\n", pos):
                raw, pos = b"", pos + 3
            else:
                end = client.find(b"\r\n.\r\n", pos)
                if end < 0:
                    return out
                raw, pos = client[pos:end + 2], end + 5
            after = next(replies, None)
            if after is None:
                return out
            out.append((after, unstuff(raw)))


def require_root(test):
    if os.geteuid() != 0:
        test.skipTest("needs root (mount)")


# ---- Tests ---------------------------------------------------------------------------------


class ServerTest(unittest.TestCase):
    server_args = ("--min-free-bytes", "1M", "--segment-size", "8M")
    server_env = None

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="smtpd-e2e-")
        self.spool = os.path.join(self.dir, "spool")
        self.server = Smtpd(self.spool, *self.server_args, env=self.server_env)
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.addCleanup(self.server.cleanup)

    def stop_server(self):
        code = self.server.stop()
        self.assertEqual(code, 0, self.server.log_text())


_PRINTABLE = bytes(random.Random(0).randrange(32, 127) for _ in range(1 << 16))
_HIGH = bytes(random.Random(1).randrange(128, 256) for _ in range(1 << 16))


def random_body(rng, size):
    """A message with headers, dot lines, 8-bit bytes and a long line, ending in CRLF."""
    lines = [b"Subject: test %d" % rng.randrange(1 << 30), b"X-8bit: \xc3\xa9t\xc3\xa9 \xff", b""]
    total = 0
    while total < size:
        kind = rng.randrange(6)
        if kind == 0:
            line = b"." * rng.randrange(1, 4) + b"leading dots"
        elif kind == 1:
            n = rng.randrange(1, 80)
            off = rng.randrange(len(_HIGH) - n)
            line = _HIGH[off:off + n]
        elif kind == 2:
            line = b""
        else:
            n = rng.randrange(1, 200)
            off = rng.randrange(len(_PRINTABLE) - n)
            line = _PRINTABLE[off:off + n]
        lines.append(line)
        total += len(line) + 2
    return b"\r\n".join(lines) + b"\r\n"


class SmtplibTest(ServerTest):
    """Python's smtplib: many concurrent connections, several messages each."""

    def test_concurrent_clients_byte_exact(self):
        threads, per_thread = 16, 6
        acked, errors, lock = {}, [], threading.Lock()

        def client(n):
            rng = random.Random(n)
            try:
                with smtplib.SMTP("127.0.0.1", self.server.port, timeout=TIMEOUT) as s:
                    for i in range(per_thread):
                        body = random_body(rng, rng.choice([10, 300, 5000, 60000]))
                        rcpts = ["r%d@example.org" % k for k in range(rng.randrange(1, 4))]
                        s.ehlo("client%d.example" % n)
                        self.assertEqual(s.mail("s%d@example.com" % n, ["SIZE=%d" % len(body)])[0], 250)
                        for r in rcpts:
                            self.assertEqual(s.rcpt(r)[0], 250)
                        reply = s.data(body)
                        msg_id = queued_id(self, reply)
                        with lock:
                            acked[msg_id] = (body, "s%d@example.com" % n, rcpts)
            except Exception as e:  # reported by the main thread
                with lock:
                    errors.append(repr(e))

        workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), threads * per_thread)
        self.stop_server()
        listed = verify_stored(self, self.spool, {i: b for i, (b, _, _) in acked.items()})
        self.assertEqual(len(listed), len(acked))
        for msg_id, (_, sender, rcpts) in acked.items():
            self.assertEqual(listed[msg_id]["sender"], sender)
            self.assertEqual(listed[msg_id]["recipients"], rcpts)

    def test_large_message_and_empty_message(self):
        big = random_body(random.Random(7), 5 << 20)  # stored in chunks by the spool
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=TIMEOUT) as s:
            s.ehlo("big.example")
            s.mail("a@example.com")
            s.rcpt("b@example.org")
            big_id = queued_id(self, s.data(big))
            s.mail("")  # the null sender
            s.rcpt("c@example.org")
            empty_id = queued_id(self, s.data(b""))
        self.stop_server()
        # smtplib ends an empty body with CRLF (it always does).
        listed = verify_stored(self, self.spool, {big_id: big, empty_id: b"\r\n"})
        self.assertEqual(listed[empty_id]["sender"], "")


class PipeliningTest(ServerTest):
    """Raw bytes, pipelined per RFC 2920: whole transactions in one write, exact bodies."""

    def test_pipelined_transactions_byte_exact(self):
        bodies = [
            b"Subject: plain\r\n\r\nhello\r\n",
            b".\r\n..\r\n...x\r\n.\r\n. \r\n",  # dot lines of every kind (stuffed below)
            b"\x00\x01\xff\xfe 8-bit and NUL bytes\r\n",
            b"long line " + b"y" * 5000 + b"\r\n",  # data lines are not limited (docs/smtpd.md)
            b"no final CRLF before the terminator? no: every body ends with CRLF\r\n",
        ]
        c = Conn(self.server.port)
        self.assertEqual(c.reply()[0], 220)
        c.send(b"EHLO pipe.example\r\n")
        code, _ = c.reply()
        self.assertEqual(code, 250)
        # Everything at once: each transaction's envelope, DATA, body, the next one, QUIT.
        stream = b""
        for i, body in enumerate(bodies):
            stream += b"MAIL FROM:<p%d@example.com> BODY=8BITMIME\r\nRCPT TO:<a@example.org>\r\n" % i
            stream += b"RCPT TO:<b@example.org>\r\nDATA\r\n" + dot_stuff(body)
        stream += b"QUIT\r\n"
        c.send(stream)
        acked = {}
        for body in bodies:
            self.assertEqual(c.reply(), (250, b"2.1.0 Ok"))
            self.assertEqual(c.reply(), (250, b"2.1.5 Ok"))
            self.assertEqual(c.reply(), (250, b"2.1.5 Ok"))
            self.assertEqual(c.reply()[0], 354)
            acked[queued_id(self, c.reply())] = body
        self.assertEqual(c.reply()[0], 221)
        self.assertTrue(c.at_eof())
        c.close()
        self.stop_server()
        verify_stored(self, self.spool, acked)

    def test_data_split_at_every_byte(self):
        """The terminator and stuffed dots split across TCP segments."""
        body = b"a\r\n.b\r\n\r\n..\r\nend\r\n"
        payload = b"DATA\r\n" + dot_stuff(body)
        c = Conn(self.server.port)
        c.reply()
        c.cmd(b"HELO split.example")
        acked = {}
        for cut in range(1, len(payload)):
            self.assertEqual(c.cmd(b"MAIL FROM:<s@example.com>")[0], 250)
            self.assertEqual(c.cmd(b"RCPT TO:<r@example.org>")[0], 250)
            c.send(payload[:cut])
            time.sleep(0.002)
            c.send(payload[cut:])
            self.assertEqual(c.reply()[0], 354)
            acked[queued_id(self, c.reply())] = body
        c.cmd(b"QUIT")
        c.close()
        self.stop_server()
        verify_stored(self, self.spool, acked)


class SwaksTest(ServerTest):
    """swaks, through a recording proxy: what it sent is compared with what was stored."""

    def test_swaks(self):
        swaks = shutil.which("swaks")
        if not swaks:
            self.skipTest("swaks is not installed (apt-get install swaks)")
        proxy = RecordingProxy(self.server.port)
        self.addCleanup(proxy.close)
        runs = [
            ["--to", "r@example.org"],
            ["--to", "r@example.org", "--pipeline"],
            ["--to", "r@example.org", "--pipeline", "--header", "Subject: 8-bit \xe9t\xe9",
             "--body", ".leading dot\n..two"],
            ["--to", "a@example.org,b@example.org,c@example.org", "--helo", "helo.example"],
        ]
        reported = set()
        for extra in runs:
            args = [swaks, "--server", "127.0.0.1:%d" % proxy.port, "--from", "s@example.com",
                    "--timeout", str(TIMEOUT), *extra]
            out = subprocess.run(args, capture_output=True, timeout=TIMEOUT)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            m = QUEUED_RE.findall(out.stdout)
            self.assertEqual(len(m), 1, out.stdout)
            reported.add(m[0].decode())
        proxy.close()
        acked = {}
        for client, server in proxy.sessions:
            for reply, body in transcript_messages(client, server):
                acked[queued_id(self, reply)] = body
        self.assertEqual(set(acked), reported)
        self.stop_server()
        verify_stored(self, self.spool, acked)


class SmtpSourceTest(ServerTest):
    """Postfix's smtp-source for load: hundreds of messages over many connections."""

    def test_smtp_source_load(self):
        tool = shutil.which("smtp-source") or (
            "/usr/sbin/smtp-source" if os.path.exists("/usr/sbin/smtp-source") else None)
        if not tool:
            self.skipTest("smtp-source is not installed (Debian package postfix)")
        proxy = RecordingProxy(self.server.port)
        self.addCleanup(proxy.close)
        sessions, messages = 20, 500
        out = subprocess.run([tool, "-s", str(sessions), "-m", str(messages), "-l", "4096",
                              "-f", "load@example.com", "-t", "sink@example.org",
                              "127.0.0.1:%d" % proxy.port],
                             capture_output=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        proxy.close()
        self.assertGreaterEqual(len(proxy.sessions), sessions)
        acked = {}
        for client, server in proxy.sessions:
            for reply, body in transcript_messages(client, server):
                acked[queued_id(self, reply)] = body
        self.assertEqual(len(acked), messages)
        self.stop_server()
        listed = verify_stored(self, self.spool, acked)
        self.assertEqual(len(listed), messages)

    def test_smtp_source_pipelined_many_recipients(self):
        tool = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
        if not os.path.exists(tool):
            self.skipTest("smtp-source is not installed (Debian package postfix)")
        proxy = RecordingProxy(self.server.port)
        self.addCleanup(proxy.close)
        # -r 20: twenty recipients per message; -d: one message per connection.
        out = subprocess.run([tool, "-s", "10", "-m", "20", "-r", "20", "-d", "-l", "1000",
                              "127.0.0.1:%d" % proxy.port], capture_output=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        proxy.close()
        acked = {}
        for client, server in proxy.sessions:
            for reply, body in transcript_messages(client, server):
                acked[queued_id(self, reply)] = body
        self.assertEqual(len(acked), 20)
        self.stop_server()
        listed = verify_stored(self, self.spool, acked)
        for msg_id in acked:
            self.assertEqual(len(listed[msg_id]["recipients"]), 20)


class BadInputTest(ServerTest):
    """Each kind of bad input gets its reply, and the server keeps serving."""

    server_args = ServerTest.server_args + (
        "--max-recipients", "5", "--max-message-size", "100K", "--idle-timeout", "3",
        "--max-errors", "20")

    def session(self, helo=True):
        c = Conn(self.server.port)
        self.addCleanup(c.close)
        code, text = c.reply()
        self.assertEqual(code, 220, text)
        if helo:
            self.assertEqual(c.cmd(b"EHLO bad.example")[0], 250)
        return c

    def send_message(self, c, body=b"ok\r\n"):
        self.assertEqual(c.cmd(b"MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(c.cmd(b"RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(c.cmd(b"DATA")[0], 354)
        c.send(dot_stuff(body))
        return queued_id(self, c.reply())

    def test_ehlo_advertises_extensions(self):
        c = Conn(self.server.port)
        c.reply()
        c.send(b"EHLO x.example\r\n")
        lines = []
        while True:
            line = c._line()
            lines.append(line[4:])
            if line[3:4] == b" ":
                break
        for ext in (b"PIPELINING", b"SIZE 102400", b"8BITMIME", b"ENHANCEDSTATUSCODES"):
            self.assertIn(ext, lines)

    def test_line_length(self):
        c = self.session()
        self.assertEqual(c.cmd(b"NOOP " + b"x" * 993), (250, b"2.0.0 Ok"))  # 1000 with CRLF
        self.assertEqual(c.cmd(b"NOOP " + b"x" * 994), (500, b"5.5.2 Error: line too long"))
        self.assertEqual(c.cmd(b"A" * 100000), (500, b"5.5.2 Error: line too long"))
        self.assertEqual(c.cmd(b"NOOP"), (250, b"2.0.0 Ok"))
        self.send_message(c)

    def test_sequence_and_syntax_errors(self):
        c = self.session(helo=False)
        cases = [
            (b"MAIL FROM:<a@example.com>", 503, b"5.5.1"),  # before EHLO
            (b"EHLO", 501, b"5.5.4"),
            (b"HELO ok.example", 250, None),
            (b"RCPT TO:<b@example.org>", 503, b"5.5.1"),  # before MAIL
            (b"DATA", 503, b"5.5.1"),  # before MAIL
            (b"MAIL FROM:<a@example.com>", 250, b"2.1.0"),
            (b"DATA", 503, b"5.5.1"),  # before RCPT
            (b"MAIL FROM:<a@example.com>", 503, b"5.5.1"),  # nested
            (b"RCPT TO:<>", 501, b"5.1.3"),
            (b"RCPT TO:<unterminated@example.org", 501, b"5.5.4"),
            (b"RCPT TO:<b@example.org> NOTIFY=NEVER", 555, b"5.5.4"),
            (b"RSET", 250, b"2.0.0"),
            (b"MAIL FROM:<a@example.com> FOO=BAR", 555, b"5.5.4"),
            (b"MAIL FROM:<a@example.com> SIZE=abc", 555, b"5.5.4"),
            (b"MAIL TO:<a@example.com>", 501, b"5.5.4"),
            (b"VRFY someone", 252, b"2.5.2"),
            (b"EXPN list", 502, b"5.5.1"),
            (b"HELP", 214, b"2.0.0"),
        ]
        for line, code, enhanced in cases:
            got_code, text = c.cmd(line)
            self.assertEqual(got_code, code, (line, text))
            if enhanced:
                self.assertTrue(text.startswith(enhanced), (line, text))
        self.send_message(c)

    def test_garbage_commands(self):
        c = self.session()
        for junk in (b"FOO", b"\x00\xff\xfe", b"", b"   ", b"MAILFROM:<x@y>", b"\x1b[2J"):
            code, text = c.cmd(junk)
            self.assertEqual((code, text[:5]), (500, b"5.5.2"), junk)
        self.send_message(c)  # the session still serves

    def test_too_many_errors_closes(self):
        c = self.session()
        for _ in range(19):
            self.assertEqual(c.cmd(b"BOGUS")[0], 500)
        self.assertEqual(c.cmd(b"BOGUS")[0], 500)
        self.assertEqual(c.reply(), (421, b"4.7.0 Error: too many errors"))
        self.assertTrue(c.at_eof())
        self.send_message(self.session())  # others are served

    def test_too_many_recipients(self):
        c = self.session()
        self.assertEqual(c.cmd(b"MAIL FROM:<a@example.com>")[0], 250)
        for i in range(5):
            self.assertEqual(c.cmd(b"RCPT TO:<r%d@example.org>" % i)[0], 250)
        self.assertEqual(c.cmd(b"RCPT TO:<r5@example.org>"), (452, b"4.5.3 Error: too many recipients"))
        self.assertEqual(c.cmd(b"DATA")[0], 354)
        c.send(b"five\r\n.\r\n")
        msg_id = queued_id(self, c.reply())
        c.cmd(b"QUIT")
        self.stop_server()
        listed = verify_stored(self, self.spool, {msg_id: b"five\r\n"})
        self.assertEqual(len(listed[msg_id]["recipients"]), 5)

    def test_message_too_big(self):
        c = self.session()
        self.assertEqual(c.cmd(b"MAIL FROM:<a@example.com> SIZE=102401"),
                         (552, b"5.3.4 Message too big for system"))
        self.assertEqual(c.cmd(b"MAIL FROM:<a@example.com> SIZE=1000")[0], 250)
        self.assertEqual(c.cmd(b"RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(c.cmd(b"DATA")[0], 354)
        c.send((b"z" * 998 + b"\r\n") * 150 + b".\r\n")  # 150 KB, the declared size a lie
        self.assertEqual(c.reply(), (552, b"5.3.4 Message too big for system"))
        ok = self.send_message(c, b"x" * 100 + b"\r\n")  # the session goes on
        # The limit itself fits: 102400 bytes exactly.
        exact = b"e" * (102400 - 2) + b"\r\n"
        exact_id = self.send_message(c, exact)
        c.cmd(b"QUIT")
        self.stop_server()
        listed = verify_stored(self, self.spool, {ok: b"x" * 100 + b"\r\n", exact_id: exact})
        self.assertEqual(len(listed), 2)

    def test_idle_timeout(self):
        c = self.session()
        c.sock.settimeout(TIMEOUT)
        self.assertEqual(c.reply(), (421, b"4.4.2 Error: timeout exceeded"))
        self.assertTrue(c.at_eof())
        self.send_message(self.session())

    def test_abrupt_disconnects(self):
        for cut in (b"EHLO a\r\nMAIL FROM:<a@b>\r\n", b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial bo"):
            s = socket.create_connection(("127.0.0.1", self.server.port))
            s.sendall(cut)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # a reset
        c = self.session()
        msg_id = self.send_message(c)
        c.cmd(b"QUIT")
        self.stop_server()
        listed = verify_stored(self, self.spool, {msg_id: b"ok\r\n"})
        self.assertEqual(len(listed), 1)  # nothing of the cut sessions


class DrainTest(ServerTest):
    """SIGTERM: no new connections, 421 to idle sessions, transactions finish, exit 0."""

    server_args = ServerTest.server_args + ("--drain-timeout", "3")

    def test_sigterm_drains(self):
        busy = Conn(self.server.port)
        busy.reply()
        busy.cmd(b"EHLO busy.example")
        self.assertEqual(busy.cmd(b"MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(busy.cmd(b"RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(busy.cmd(b"DATA")[0], 354)
        busy.send(b"first half\r\n")
        stalled = Conn(self.server.port)
        stalled.reply()
        stalled.cmd(b"EHLO stalled.example")
        stalled.cmd(b"MAIL FROM:<a@example.com>")
        stalled.cmd(b"RCPT TO:<b@example.org>")
        self.assertEqual(stalled.cmd(b"DATA")[0], 354)
        stalled.send(b"never finished\r\n")
        idle = Conn(self.server.port)
        idle.reply()
        idle.cmd(b"EHLO idle.example")
        time.sleep(0.2)

        self.server.proc.send_signal(signal.SIGTERM)
        self.assertEqual(idle.reply(), (421, b"4.3.2 Service not available"))
        self.assertTrue(idle.at_eof())
        for _ in range(100):  # the listener closes
            try:
                socket.create_connection(("127.0.0.1", self.server.port), timeout=1).close()
                time.sleep(0.05)
            except ConnectionRefusedError:
                break
        else:
            self.fail("still accepting connections after SIGTERM")
        busy.send(b"second half\r\n.\r\n")
        msg_id = queued_id(self, busy.reply())
        self.assertEqual(busy.cmd(b"MAIL FROM:<a@example.com>"), (421, b"4.3.2 Service not available"))
        self.assertTrue(busy.at_eof())
        # The stalled transaction is closed at the drain timeout.
        self.assertEqual(stalled.reply(), (421, b"4.3.2 Service not available"))
        self.assertEqual(self.server.proc.wait(timeout=TIMEOUT), 0, self.server.log_text())
        listed = verify_stored(self, self.spool, {msg_id: b"first half\r\nsecond half\r\n"})
        self.assertEqual(len(listed), 1)


class KillTest(ServerTest):
    """kill -9 under load: every id that got a 250 is there after a restart, byte for byte."""

    def test_kill9_under_load(self):
        acked, errors, lock = {}, [], threading.Lock()
        stop = threading.Event()
        port = self.server.port

        def client(n):
            rng = random.Random(1000 + n)
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as s:
                    s.ehlo("load%d.example" % n)
                    while not stop.is_set():
                        body = random_body(rng, rng.choice([200, 4000, 30000]))
                        s.mail("k%d@example.com" % n)
                        s.rcpt("r@example.org")
                        code, text = s.data(body)
                        if code == 250:
                            with lock:
                                acked[queued_id(self, (code, text))] = body
            except (smtplib.SMTPException, OSError):
                pass  # the server died under us: expected
            except Exception as e:
                errors.append(repr(e))

        workers = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 20
        while len(acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.server.proc.kill()  # SIGKILL, with commits in flight
        self.server.proc.wait()
        stop.set()
        for w in workers:
            w.join()
        self.assertEqual(errors, [])
        self.assertGreater(len(acked), 0)

        # Restart on the same spool: it reopens (recovery) and serves.
        self.server.cleanup()
        self.server = Smtpd(self.spool, *self.server_args)
        self.addCleanup(self.server.cleanup)
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=TIMEOUT) as s:
            after = queued_id(self, self._one(s))
        acked[after] = b"after\r\n"
        self.stop_server()
        verify_stored(self, self.spool, acked)

    def _one(self, s):
        s.ehlo("after.example")
        s.mail("a@example.com")
        s.rcpt("b@example.org")
        return s.data(b"after\r\n")


class TmpfsFullTest(unittest.TestCase):
    """A real full disk: a small tmpfs as the spool. The client gets 452 4.3.1; nothing
    that got a 250 is lost."""

    def setUp(self):
        require_root(self)
        self.dir = tempfile.mkdtemp(prefix="smtpd-e2e-tmpfs-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", self.dir],
                           capture_output=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs: %s" % r.stderr.decode().strip())
        self.addCleanup(subprocess.run, ["umount", "-l", self.dir])
        self.spool = os.path.join(self.dir, "spool")
        self.server = Smtpd(self.spool, "--min-free-bytes", "256K", "--segment-size", "1M")
        self.addCleanup(self.server.cleanup)

    def test_full_tmpfs_gives_452(self):
        acked, refusals = {}, []
        rng = random.Random(3)
        c = Conn(self.server.port)
        c.reply()
        c.cmd(b"EHLO full.example")
        for i in range(400):
            body = random_body(rng, 200 << 10)
            code, text = c.cmd(b"MAIL FROM:<f@example.com> SIZE=%d" % len(body))
            if code == 250:
                self.assertEqual(c.cmd(b"RCPT TO:<r@example.org>")[0], 250)
                code, text = c.cmd(b"DATA")
                if code == 354:
                    c.send(dot_stuff(body))
                    code, text = c.reply()
                    if code == 250:
                        acked[queued_id(self, (code, text))] = body
                        continue
                else:
                    c.cmd(b"RSET")
            refusals.append((code, text))
            if len(refusals) >= 3:
                break
        self.assertTrue(refusals, "the tmpfs never filled")
        for code, text in refusals:
            self.assertEqual((code, text), (452, b"4.3.1 Insufficient system storage"))
        self.assertGreater(len(acked), 10)
        # The session and the server still serve: NOOP, then a clean stop.
        self.assertEqual(c.cmd(b"NOOP")[0], 250)
        c.cmd(b"QUIT")
        c.close()
        self.assertEqual(self.server.stop(), 0, self.server.log_text())
        listed = verify_stored(self, self.spool, acked)
        self.assertEqual(len(listed), len(acked))


def main():
    global SMTPD, CTL
    parser = argparse.ArgumentParser()
    parser.add_argument("--smtpd", required=True)
    parser.add_argument("--ctl", required=True)
    parser.add_argument("tests", nargs="*")
    args = parser.parse_args()
    SMTPD, CTL = args.smtpd, args.ctl
    loader = unittest.TestLoader()
    module = sys.modules[__name__]
    suite = (loader.loadTestsFromNames(args.tests, module) if args.tests
             else loader.loadTestsFromModule(module))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    if result.testsRun > 0 and len(result.skipped) == result.testsRun:
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
