#!/usr/bin/env python3
"""End-to-end tests of spool-opensmtpd-queue: real OpenSMTPD with its queue on a spool.

Debian's smtpd (unpacked by scripts/install-deps.sh into .deps/opensmtpd/root, never
installed) runs with `-B queue=spool:DIR`, takes mail from real clients (Python's smtplib,
Postfix's smtp-source) on 127.0.0.1 and relays it to a sink in this process, also on
127.0.0.1; every port is a free one. smtpd's compiled-in paths (/usr/libexec/opensmtpd,
/var/spool/smtpd, /etc/passwd for its users) are bind mounts inside a private mount
namespace (unshare -m), so nothing on the host changes: the test re-runs itself under
unshare, and the mounts vanish with it.

What is checked: what got a 250 reaches the sink (at least once, bytes compared), through
the sink being down, kill -9 of smtpd and of the backend, restarts, `smtpctl remove`, a
flipped byte in a segment and a full disk; nothing removed comes back; spool-fsck is clean.

Usage: opensmtpd_e2e.py --queue PATH --ctl PATH --fsck PATH --opensmtpd ROOT [TestClass ...]
       opensmtpd_e2e.py ... --measure MESSAGES [--sessions N] [--keep-sessions]
                            (docs/opensmtpd.md)
Exit 0 when the tests pass, 1 when one fails, 77 when they cannot run here (not root, no
unshare, OpenSMTPD not unpacked).
"""

import argparse
import asyncio
import json
import os
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

QUEUE = CTL = FSCK = OSMTPD = None
NS_MARK = "SPOOL_OPENSMTPD_E2E_NS"
TIMEOUT = 60
DOMAIN = "test.example"
SKIP = 77


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


# ---- The namespace: smtpd's fixed paths bound to a scratch tree ----------------------------


def free_id(taken, start=990):
    i = start
    while i in taken:
        i += 1
    return i


def setup_namespace(root):
    """Binds /etc/passwd, /etc/group, /var and /usr/libexec over copies under `root`
    holding OpenSMTPD's users, directories and backends (queue-spool: the binary under
    test). Returns the gid of the opensmtpq group."""
    with open("/etc/passwd") as f:
        passwd = f.read()
    with open("/etc/group") as f:
        group = f.read()
    uids = {int(l.split(":")[2]) for l in passwd.splitlines() if l.count(":") >= 6}
    gids = {int(l.split(":")[2]) for l in group.splitlines() if l.count(":") >= 3}
    ids = {}
    for name in ("opensmtpd", "opensmtpq"):
        if re.search(r"^%s:" % name, passwd, re.M):
            ids[name] = int(re.search(r"^%s:[^:]*:(\d+)" % name, passwd, re.M).group(1))
            continue
        i = free_id(uids | gids)
        uids.add(i)
        gids.add(i)
        ids[name] = i
        passwd += "%s:x:%d:%d::/var/lib/opensmtpd/empty:/usr/sbin/nologin\n" % (name, i, i)
        group += "%s:x:%d:\n" % (name, i)
    with open(os.path.join(root, "passwd"), "w") as f:
        f.write(passwd)
    with open(os.path.join(root, "group"), "w") as f:
        f.write(group)
    for d in ("var/lib/opensmtpd/empty", "var/run", "var/spool", "var/tmp", "libexec/opensmtpd"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "var/tmp"), 0o1777)
    helpers = os.path.join(OSMTPD, "usr/libexec/opensmtpd")
    for name in os.listdir(helpers):
        os.symlink(os.path.join(helpers, name), os.path.join(root, "libexec/opensmtpd", name))
    os.symlink(QUEUE, os.path.join(root, "libexec/opensmtpd/queue-spool"))
    for src, dst in (("passwd", "/etc/passwd"), ("group", "/etc/group"), ("var", "/var"),
                     ("libexec", "/usr/libexec")):
        subprocess.run(["mount", "--bind", os.path.join(root, src), dst], check=True)
    return ids["opensmtpq"]


# ---- The sink: the next hop, in this process -------------------------------------------


class Sink:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts (as sent: CRLF
    lines, dot-unstuffed). up() and down() open and close its port."""

    def __init__(self):
        self.port = free_port()
        self.messages = []  # (mail_from, [rcpt], data bytes)
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.server = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def handle(self, reader, writer):
        def send(line):
            writer.write(line.encode() + b"\r\n")

        send("220 sink ESMTP")
        mail, rcpts = None, []
        try:
            while True:
                await writer.drain()
                line = await reader.readline()
                if not line:
                    break
                cmd = line.decode(errors="replace").rstrip("\r\n")
                up = cmd.upper()
                if up.startswith("EHLO"):
                    send("250-sink")
                    send("250 8BITMIME")
                elif up.startswith("HELO"):
                    send("250 sink")
                elif up.startswith("MAIL FROM:"):
                    mail, rcpts = cmd[10:], []
                    send("250 ok")
                elif up.startswith("RCPT TO:"):
                    rcpts.append(cmd[8:])
                    send("250 ok")
                elif up == "DATA":
                    send("354 go")
                    await writer.drain()
                    data = []
                    while True:
                        l = await reader.readline()
                        if not l or l == b".\r\n":
                            break
                        data.append(l[1:] if l.startswith(b".") else l)
                    with self.lock:
                        self.messages.append((mail, rcpts, b"".join(data)))
                    send("250 queued")
                elif up == "QUIT":
                    send("221 bye")
                    await writer.drain()
                    break
                else:
                    send("250 ok")
        finally:
            writer.close()

    def up(self):
        async def start():
            self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port,
                                                     reuse_address=True)
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(TIMEOUT)

    def down(self):
        async def stop():
            if self.server:
                self.server.close()
                await self.server.wait_closed()
                self.server = None
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(TIMEOUT)

    def received(self):
        with self.lock:
            return list(self.messages)

    def test_ids(self):
        """X-Test-Id of every message received, with repetitions."""
        ids = []
        for _, _, data in self.received():
            m = re.search(rb"^X-Test-Id: (\S+)\r?$", data, re.M)
            if m:
                ids.append(m.group(1).decode())
        return ids


# ---- smtpd ---------------------------------------------------------------------------------


class Smtpd:
    """OpenSMTPD in the foreground (-d) with its queue on `spool_arg`, relaying
    @test.example to the sink."""

    def __init__(self, work, spool_arg, sink_port, queue_gid):
        self.work = work
        self.spool_arg = spool_arg
        self.port = free_port()
        self.queue_gid = queue_gid
        self.conf = os.path.join(work, "smtpd.conf")
        with open(self.conf, "w") as f:
            f.write('listen on 127.0.0.1 port %d\n'
                    'action "relay" relay host smtp://127.0.0.1:%d\n'
                    'match from any for domain "%s" action "relay"\n'
                    % (self.port, sink_port, DOMAIN))
        self.proc = None
        self.log_path = os.path.join(work, "smtpd.log")

    def start(self, verbose=True):
        """Starts smtpd and waits for its queue walk. verbose: -v, which the test needs to
        see the walk end; without it, a fixed pause stands for the wait."""
        log = open(self.log_path, "ab")
        start = log.tell()
        argv = [os.path.join(OSMTPD, "usr/sbin/smtpd"), "-d", "-f", self.conf]
        if verbose:
            argv.append("-v")
        if self.spool_arg is not None:  # None: OpenSMTPD's own file queue
            argv += ["-B", "queue=spool:" + self.spool_arg]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.work)
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("smtpd exited %d: %s" % (self.proc.returncode, self.log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    return s.recv(100).startswith(b"220")
            except OSError:
                return False
        wait_until(ready, what="smtpd to listen")
        if not verbose:
            time.sleep(1)
            return self
        # The walk of the queue at start-up runs beside new mail: let it finish.
        wait_until(lambda: "done loading queue" in self.log(start), what="the queue walk")
        return self

    def log(self, start=0):
        with open(self.log_path, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    def stop(self):
        """An orderly stop: SIGTERM; smtpd sends CLOSE, the backend exits at the socket's end."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=TIMEOUT)
        self.wait_backend_gone()

    def kill(self):
        """kill -9 of smtpd and all its processes, the backend included."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=TIMEOUT)
        self.wait_backend_gone()

    def backend_pids(self):
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid), "-f", "queue-proc"],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def wait_backend_gone(self):
        if self.spool_arg is None:
            return
        # The backend is the queue process's child: it may outlive smtpd for a moment
        # (reparented), holding the spool's lock.
        def gone():
            r = subprocess.run(["pgrep", "-f", "queue-proc " + re.escape(self.spool_arg)],
                               capture_output=True, text=True)
            return r.stdout.strip() == ""
        wait_until(gone, what="the backend to exit")

    def smtpctl(self, *args):
        r = subprocess.run(["setpriv", "--egid=%d" % self.queue_gid, "--keep-groups",
                            os.path.join(OSMTPD, "usr/sbin/smtpctl"), *args],
                           capture_output=True, text=True, timeout=TIMEOUT)
        return r.stdout + r.stderr


def make_message(test_id, sender, rcpts, extra=b""):
    # With Date: and Message-ID: present, OpenSMTPD adds only its Received: header.
    return (b"From: <%s>\r\nTo: %s\r\nSubject: test %s\r\n"
            b"Date: Thu, 3 Dec 2026 12:00:00 +0000\r\nMessage-ID: <%s@%s>\r\n"
            b"X-Test-Id: %s\r\n\r\nBody of %s.\r\n%s.leading dot line\r\nlast line\r\n"
            % (sender.encode(), b", ".join(r.encode() for r in rcpts), test_id.encode(),
               test_id.encode(), DOMAIN.encode(), test_id.encode(), test_id.encode(), extra))


def strip_received(data):
    """The message as the client sent it: OpenSMTPD adds its Received: header (with its
    folded lines) on top."""
    lines = data.split(b"\r\n")
    assert lines[0].startswith(b"Received: "), lines[:2]
    i = 1
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1
    return b"\r\n".join(lines[i:])


class OpenSmtpdTest(unittest.TestCase):
    queue_gid = None

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="osmtpd-e2e-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.spool = os.path.join(self.work, "spool")
        # Small segments: reclamation and the byte flip see several of them.
        self.spool_arg = self.spool + ",segment_size=1M,min_free_bytes=1M"
        self.sink = Sink()
        self.addCleanup(self.sink.down)
        self.sink.up()
        self.smtpd = Smtpd(self.work, self.spool_arg, self.sink.port, self.queue_gid)
        self.addCleanup(self.cleanup_smtpd)

    def cleanup_smtpd(self):
        if self.smtpd.proc and self.smtpd.proc.poll() is None:
            os.killpg(self.smtpd.proc.pid, signal.SIGKILL)
            self.smtpd.proc.wait()
        if self.smtpd.proc:
            self.smtpd.wait_backend_gone()

    # ---- helpers ----

    def send(self, test_id, rcpts=None, extra=b""):
        """Sends one message; returns its bytes if it got a 250, None if refused."""
        rcpts = rcpts or ["bob@" + DOMAIN]
        sender = "alice@" + DOMAIN
        data = make_message(test_id, sender, rcpts, extra)
        try:
            with smtplib.SMTP("127.0.0.1", self.smtpd.port, timeout=TIMEOUT) as c:
                c.sendmail(sender, rcpts, data)
            return data
        except (smtplib.SMTPException, OSError):
            return None

    def spool_list(self):
        # A read-only open beside the backend can meet a RocksDB file that the writer's
        # compaction just deleted (exit 3): open again.
        for _ in range(5):
            out = subprocess.run([CTL, "--spool", self.spool, "--read-only", "list", "--json"],
                                 capture_output=True, timeout=TIMEOUT)
            if out.returncode != 3:
                break
            time.sleep(0.2)
        self.assertEqual(out.returncode, 0, out.stderr)
        return [json.loads(l) for l in out.stdout.decode().splitlines()]

    def bodies_in_spool(self):
        ids = set()
        for m in self.spool_list():
            body = subprocess.run([CTL, "--spool", self.spool, "--read-only", "cat", m["id"]],
                                  capture_output=True).stdout
            ids.add(re.search(rb"X-Test-Id: (\S+)", body).group(1).decode())
        return ids

    def fsck(self, *args):
        return subprocess.run([FSCK, "--spool", self.spool, *args], capture_output=True,
                              text=True, timeout=TIMEOUT)

    def assert_fsck_clean(self, allowed=()):
        """spool-fsck finds nothing wrong, or only errors of the `allowed` kinds."""
        r = self.fsck()
        backend_log = "".join(l + "\n" for l in self.smtpd.log().splitlines() if "queue-spool" in l)
        found = re.findall(r"^(?:error|warning) (\w+):", r.stdout, re.M)
        if allowed and found and set(found) <= set(allowed):
            return
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + "\nbackend log:\n" + backend_log)

    def wait_delivered(self, ids, timeout=TIMEOUT):
        """Waits for `ids` at the sink, asking smtpd to retry now every few seconds (its
        own back-off after a deferral is minutes)."""
        last = [0]

        def done():
            got = set(self.sink.test_ids())
            if all(i in got for i in ids):
                return True
            if time.monotonic() - last[0] > 3:
                self.schedule_all()
                last[0] = time.monotonic()
            return False
        try:
            wait_until(done, timeout, "deliveries")
        except AssertionError:
            missing = set(ids) - set(self.sink.test_ids())
            raise AssertionError("not delivered: %s\nsmtpd log tail:\n%s"
                                 % (sorted(missing)[:20], self.smtpd.log()[-4000:]))

    def wait_queue_empty(self):
        wait_until(lambda: "0 envelope" in self.smtpd.smtpctl("show", "status") or
                   self.smtpd.smtpctl("show", "queue").strip() == "", what="an empty queue")

    def schedule_all(self):
        self.smtpd.smtpctl("schedule", "all")


class DeliveryTest(OpenSmtpdTest):
    def test_one_and_many_recipients_arrive_byte_for_byte(self):
        self.smtpd.start()
        sent = {}
        for n, count in enumerate((1, 2, 7)):
            rcpts = ["rcpt%d-%d@%s" % (n, i, DOMAIN) for i in range(count)]
            test_id = "msg%d" % n
            sent[test_id] = (self.send(test_id, rcpts, extra=b"\xc3\xa9 8bit\r\n"), rcpts)
            self.assertIsNotNone(sent[test_id][0])
        self.wait_delivered(list(sent))
        wait_until(lambda: sum(len(r) for _, r, _ in self.sink.received()) == 10,
                   what="every recipient")
        for mail, rcpts, data in self.sink.received():
            test_id = re.search(rb"X-Test-Id: (\S+)", data).group(1).decode()
            self.assertEqual(strip_received(data), sent[test_id][0])
            self.assertEqual(mail, "<alice@%s>" % DOMAIN)
        got = {}
        for _, rcpts, data in self.sink.received():
            test_id = re.search(rb"X-Test-Id: (\S+)", data).group(1).decode()
            got.setdefault(test_id, []).extend(r.strip("<>") for r in rcpts)
        for test_id, (_, rcpts) in sent.items():
            self.assertEqual(sorted(got[test_id]), sorted(rcpts))
        wait_until(lambda: self.spool_list() == [], what="the spool to empty")
        self.smtpd.stop()
        self.assert_fsck_clean()

    def test_smtp_source_load(self):
        if not shutil.which("smtp-source"):
            self.skipTest("smtp-source (postfix) not installed")
        self.smtpd.start()
        r = subprocess.run(["smtp-source", "-s", "20", "-m", "500", "-f", "alice@" + DOMAIN,
                            "-t", "bob@" + DOMAIN, "127.0.0.1:%d" % self.smtpd.port],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        wait_until(lambda: len(self.sink.received()) >= 500, 180, "500 deliveries")
        wait_until(lambda: self.spool_list() == [], what="the spool to empty")
        self.smtpd.stop()
        self.assertEqual(len(self.sink.received()), 500)
        self.assert_fsck_clean()


class DeferralTest(OpenSmtpdTest):
    def test_sink_down_defers_and_updates_then_delivers(self):
        self.sink.down()
        self.smtpd.start()
        ids = ["defer%d" % i for i in range(5)]
        for i in ids:
            self.assertIsNotNone(self.send(i))

        # Each envelope's failed attempt is an ENVELOPE_UPDATE: retry count and error line
        # in the spool's metadata.
        def updated():
            msgs = self.spool_list()
            return len(msgs) == 5 and all("retry: 1" in m["metadata"] for m in msgs)
        wait_until(updated, what="the deferrals recorded in the spool")
        # ... and they survive a restart.
        self.smtpd.stop()
        self.assertEqual(len(self.spool_list()), 5)
        self.sink.up()
        self.smtpd.start()
        self.schedule_all()
        self.wait_delivered(ids)
        wait_until(lambda: self.spool_list() == [], what="the spool to empty")
        self.smtpd.stop()
        self.assertEqual(sorted(self.sink.test_ids()), sorted(ids))
        self.assert_fsck_clean()

    def test_smtpctl_remove_stays_removed_across_a_restart(self):
        self.sink.down()
        self.smtpd.start()
        for i in ("keep", "drop"):
            self.assertIsNotNone(self.send(i))
        wait_until(lambda: len(self.spool_list()) == 2, what="two queued messages")
        drop = [m for m in self.spool_list() if "X-Test-Id" not in m["metadata"]]
        # The msgid of "drop": from smtpctl show queue (envelope id, then its text).
        queue = self.smtpd.smtpctl("show", "queue")
        evpids = re.findall(r"^([0-9a-f]{16})\|", queue, re.M)
        self.assertEqual(len(evpids), 2, queue)
        # Which is which: the spool's bodies (X-Test-Id) by msgid.
        by_msgid = {}
        for m in self.spool_list():
            msgid = re.match(r"opensmtpd-queue 1 msgid ([0-9a-f]{8})", m["metadata"]).group(1)
            body = subprocess.run([CTL, "--spool", self.spool, "--read-only", "cat", m["id"]],
                                  capture_output=True).stdout
            by_msgid[msgid] = re.search(rb"X-Test-Id: (\S+)", body).group(1).decode()
        drop_msgid = [k for k, v in by_msgid.items() if v == "drop"][0]
        out = self.smtpd.smtpctl("remove", drop_msgid)
        self.assertIn("removed", out)
        wait_until(lambda: len(self.spool_list()) == 1, what="the removal in the spool")
        self.smtpd.kill()
        self.sink.up()
        self.smtpd.start()
        self.schedule_all()
        self.wait_delivered(["keep"])
        wait_until(lambda: self.spool_list() == [], what="the spool to empty")
        time.sleep(1)
        self.smtpd.stop()
        self.assertEqual(self.sink.test_ids(), ["keep"])
        self.assert_fsck_clean()


class CrashTest(OpenSmtpdTest):
    def load_then_kill(self, round_name, count, kill):
        """Sends `count` messages from 4 clients while killing mid-way; returns the ids
        that got a 250."""
        acked, lock = [], threading.Lock()

        def client(k):
            for n in range(k, count, 4):
                test_id = "%s-%d" % (round_name, n)
                if self.send(test_id) is not None:
                    with lock:
                        acked.append(test_id)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: len(acked) >= count // 3, what="a third of the load")
        kill()
        for t in threads:
            t.join(TIMEOUT)
        return acked

    def test_kill_9_of_backend_and_of_smtpd_mid_load(self):
        acked_all = []
        for round_name in ("backend", "smtpd"):
            self.smtpd.start()
            if round_name == "backend":
                def kill():
                    for pid in self.smtpd.backend_pids():
                        os.kill(pid, signal.SIGKILL)
                    # smtpd notices at its next request to the queue, and exits.
                    self.smtpd.proc.wait(TIMEOUT)
                    self.cleanup_smtpd()
            else:
                kill = self.smtpd.kill
            acked = self.load_then_kill(round_name, 240, kill)
            acked_all += acked
            delivered_before = set(self.sink.test_ids())
            pending = self.bodies_in_spool()
            # Restart: what is in the spool is delivered, and only that.
            self.smtpd.start()
            self.schedule_all()
            self.wait_delivered(acked_all)
            wait_until(lambda: self.spool_list() == [], what="the spool to empty")
            self.smtpd.stop()
            received = self.sink.test_ids()
            after = received[len([1 for _ in delivered_before]):]
            after = set(received) - delivered_before
            self.assertTrue(after <= pending, "came back: %s" % sorted(after - pending)[:10])
            for i in acked:
                self.assertIn(i, received)
        self.assert_fsck_clean()


class DamageTest(OpenSmtpdTest):
    def test_flipped_byte_quarantines_one_message_while_the_rest_flow(self):
        self.sink.down()
        self.smtpd.start()
        ids = ["dmg%d" % i for i in range(4)]
        marker = b"UNIQUE-MARKER-OF-dmg2-" * 20
        for i in ids:
            self.assertIsNotNone(self.send(i, extra=marker if i == "dmg2" else b""))
        wait_until(lambda: len(self.spool_list()) == 4, what="four queued messages")
        self.smtpd.stop()
        # Flip one byte of dmg2's body in its segment.
        flipped = False
        logdir = os.path.join(self.spool, "log")
        for name in sorted(os.listdir(logdir)):
            path = os.path.join(logdir, name)
            with open(path, "r+b") as f:
                data = f.read()
                at = data.find(marker)
                if at >= 0:
                    f.seek(at + 5)
                    f.write(bytes([data[at + 5] ^ 0x01]))
                    flipped = True
                    break
        self.assertTrue(flipped)
        r = self.fsck()
        self.assertNotEqual(r.returncode, 0, "spool-fsck missed the flipped byte")
        self.sink.up()
        self.smtpd.start()
        self.schedule_all()
        self.wait_delivered(["dmg0", "dmg1", "dmg3"])
        self.assertNotIn("dmg2", self.sink.test_ids())
        wait_until(lambda: len(self.spool_list()) == 1, what="the others to leave the spool")
        self.smtpd.stop()
        # The damaged message is still there, for the operator: spool-fsck --repair marks it.
        r = self.fsck("--repair")
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)
        left = self.spool_list()
        self.assertEqual(len(left), 1)
        self.assertEqual(left[0]["state"], "corrupt")
        self.assert_fsck_clean()


class FullDiskTest(OpenSmtpdTest):
    def test_full_disk_answers_421_at_mail_and_corrupts_nothing(self):
        os.makedirs(self.spool)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", self.spool],
                       check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.spool])
        self.sink.down()
        self.smtpd.start()
        big = b"".join(b"%06d %s\r\n" % (i, b"x" * 90) for i in range(2000))  # ~200 KB
        acked, refused_at = [], None
        for n in range(200):
            rcpt = "bob@" + DOMAIN
            data = make_message("full%d" % n, "alice@" + DOMAIN, [rcpt], big)
            try:
                with smtplib.SMTP("127.0.0.1", self.smtpd.port, timeout=TIMEOUT) as c:
                    c.ehlo()
                    code, msg = c.mail("alice@" + DOMAIN)
                    if code != 250:
                        refused_at = ("MAIL", code, msg)
                        break
                    code, msg = c.rcpt(rcpt)
                    if code != 250:
                        refused_at = ("RCPT", code, msg)
                        break
                    code, msg = c.data(data)  # the reply to the final dot, not raised
                    if code == 250:
                        acked.append("full%d" % n)
                    else:
                        # The disk filled between MAIL and the end of DATA: the commit
                        # failed, nothing was acknowledged; the next MAIL is refused.
                        self.assertEqual(code, 421, msg)
            except smtplib.SMTPServerDisconnected:
                refused_at = ("disconnect", 0, b"")
                break
            except smtplib.SMTPResponseException as e:
                refused_at = ("other", e.smtp_code, e.smtp_error)
                break
        self.assertIsNotNone(refused_at, "the disk never filled")
        self.assertEqual(refused_at[:2], ("MAIL", 421), refused_at)
        self.assertGreater(len(acked), 10)
        in_spool = self.bodies_in_spool()
        self.assertEqual(sorted(in_spool), sorted(acked),
                         "%s\n%s" % (set(acked) ^ in_spool, self.smtpd.log()[-3000:]))
        self.sink.up()
        self.schedule_all()
        self.wait_delivered(acked, 120)
        wait_until(lambda: self.spool_list() == [], what="the spool to empty")
        self.smtpd.stop()
        # A batch write that ENOSPC cut short (never acknowledged) may remain as a torn
        # tail of the log: not damage to anything acknowledged.
        self.assert_fsck_clean(allowed=("torn_tail",))


# ---- Measurement (--measure): messages per second, file queue against spool ----------


def measure(count, sessions, keep_sessions, gid):
    """OpenSMTPD taking `count` messages from smtp-source (`sessions` at once) and relaying
    them to the sink, with its file queue on this disk, with its file queue on an ext4
    image on this disk mounted -o sync, and with spool-opensmtpd-queue on this disk.
    Prints msgs/s accepted (smtp-source's run) and relayed (until the sink has them all)."""
    rows = []
    for mode in ("fs", "fs-sync", "spool"):
        work = tempfile.mkdtemp(prefix="osmtpd-measure-", dir="/tmp")
        queue_dir = "/var/spool/smtpd"
        mounted = False
        if mode == "fs-sync":
            image = os.path.join(work, "queue.img")
            subprocess.run(["truncate", "-s", "2G", image], check=True)
            subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
            os.makedirs(queue_dir, exist_ok=True)
            subprocess.run(["mount", "-o", "loop,sync", image, queue_dir], check=True)
            os.chmod(queue_dir, 0o711)  # smtpd insists
            mounted = True
        sink = Sink()
        sink.up()
        arg = os.path.join(work, "spool") if mode == "spool" else None
        smtpd = Smtpd(work, arg, sink.port, gid).start(verbose=False)
        t0 = time.monotonic()
        r = subprocess.run(["smtp-source", *(["-d"] if keep_sessions else []),
                            "-s", str(sessions), "-m", str(count),
                            "-f", "alice@" + DOMAIN, "-t", "bob@" + DOMAIN,
                            "127.0.0.1:%d" % smtpd.port], capture_output=True, text=True)
        accepted = time.monotonic() - t0
        if r.returncode != 0:
            smtpd.kill()
            raise SystemExit("smtp-source failed: " + r.stdout + r.stderr)
        wait_until(lambda: len(sink.received()) >= count, 600, "the relays")
        relayed = time.monotonic() - t0
        smtpd.stop()
        sink.down()
        if mounted:
            subprocess.run(["umount", queue_dir], check=True)
        shutil.rmtree(queue_dir, True)
        shutil.rmtree(work, True)
        rows.append((mode, count / accepted, count / relayed))
    print("%-8s %14s %14s" % ("queue", "accepted/s", "relayed/s"))
    for mode, a, d in rows:
        print("%-8s %14.0f %14.0f" % (mode, a, d))


def main():
    global QUEUE, CTL, FSCK, OSMTPD
    ap = argparse.ArgumentParser()
    ap.add_argument("--queue", required=True)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--fsck", required=True)
    ap.add_argument("--opensmtpd", required=True)
    ap.add_argument("--measure", type=int, metavar="MESSAGES",
                    help="measure msgs/s (docs/opensmtpd.md) instead of testing")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--keep-sessions", action="store_true",
                    help="smtp-source -d: many messages per connection")
    args, rest = ap.parse_known_args()
    QUEUE, CTL, FSCK, OSMTPD = (os.path.abspath(p) for p in
                                (args.queue, args.ctl, args.fsck, args.opensmtpd))
    if os.geteuid() != 0:
        print("SKIP: OpenSMTPD's smtpd needs root (and the test a mount namespace)")
        return SKIP
    if not os.access(os.path.join(OSMTPD, "usr/sbin/smtpd"), os.X_OK):
        print("SKIP: no OpenSMTPD under %s: run scripts/install-deps.sh" % OSMTPD)
        return SKIP
    if os.environ.get(NS_MARK) != "1":
        if shutil.which("unshare") is None or subprocess.run(
                ["unshare", "-m", "--propagation", "private", "true"],
                capture_output=True).returncode != 0:
            print("SKIP: unshare -m is not available: no private mount namespace")
            return SKIP
        env = dict(os.environ, **{NS_MARK: "1"})
        return subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                               os.path.abspath(__file__), *sys.argv[1:]], env=env).returncode
    root = tempfile.mkdtemp(prefix="osmtpd-ns-", dir="/tmp")
    try:
        OpenSmtpdTest.queue_gid = setup_namespace(root)
        if args.measure:
            measure(args.measure, args.sessions, args.keep_sessions, OpenSmtpdTest.queue_gid)
            return 0
        prog = unittest.main(argv=[sys.argv[0], *rest], exit=False, verbosity=2)
        return 0 if prog.result.wasSuccessful() else 1
    finally:
        for d in ("/usr/libexec", "/var", "/etc/group", "/etc/passwd"):
            subprocess.run(["umount", "-l", d], capture_output=True)
        shutil.rmtree(root, True)


if __name__ == "__main__":
    sys.exit(main())
