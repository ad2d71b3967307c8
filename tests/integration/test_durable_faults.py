"""--storage durable on a disk that fills up: the server fails closed.

On a small tmpfs (20 MB) filled nearly full before the server starts, for
--fsync always and everysec:
- every reply to a 100 KB set is STORED or SERVER_ERROR storage write failed,
  and once the disk is full the store is in its error state (stats storage);
- while it is full the process stays up, reads of what was kept go on, and a
  write of every kind (set, delete, incr, touch, gat, meta ms/md/ma/mg T,
  binary set and setq, a set over UDP) answers the storage error and changes nothing a read
  can see (RAM forgets the value that was not kept);
- once space returns (the filler file deleted) a write succeeds again within
  10 s (polled), and the log says when it failed and when it recovered;
- after a restart (SIGTERM, exit code 0, also while the disk is still full;
  or kill -9) every write answered as
  successful is there with its value.
The same with `-u nobody` on a data directory root created.

Needs root (mount); skipped otherwise. memkeep only.
"""

import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import MEMKEEP_BIN, ServerProcess, free_port

pytestmark = [
    pytest.mark.memkeep_only,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root"),
]

STORAGE_ERROR = b"SERVER_ERROR storage write failed\r\n"
DISK_MB = 20
FREE_AFTER_FILLER = 3 << 20      # room for some writes before the disk is full
VALUE_BYTES = 100 * 1024
SETS = 80                         # 8 MB of values: far more than the room left
RECOVERY_WAIT_S = 10


def value_for(key, round_=0):
    seed = (b"%s/%d/" % (key, round_)) * 8
    return (seed * (VALUE_BYTES // len(seed) + 1))[:VALUE_BYTES]


@pytest.fixture
def small_disk():
    # Not under pytest's tmp_path: its parents are private to root, and a
    # server running as nobody must reach the data dir (only the data dir's
    # own owner is what the -u test is about).
    mount_point = Path(tempfile.mkdtemp(prefix="memkeep-small-disk-"))
    mount_point.chmod(0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0755", "tmpfs", str(mount_point)],
                   check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


def fill(disk):
    """A filler file leaving FREE_AFTER_FILLER bytes free; returns its path."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(filler, "wb") as f:
        left = free - FREE_AFTER_FILLER
        chunk = b"\0" * (1 << 20)
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    return filler


class LoggedServer(ServerProcess):
    """A ServerProcess whose stderr goes to a file, read after it stopped."""

    def __init__(self, args, log_path, port=None):
        self.port = port if port is not None else free_port()
        self.binary = MEMKEEP_BIN
        self.cmd = [str(MEMKEEP_BIN), "-p", str(self.port), "-l", "127.0.0.1", *[str(a) for a in args]]
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=self._log)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, f"server exited early: {self.cmd}\n{self.log()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"server did not listen: {self.cmd}"
                time.sleep(0.02)

    def stop(self, sig=None, timeout=10.0):
        code = super().stop(sig, timeout)
        self._log.close()
        return code

    def log(self):
        return Path(self.log_path).read_text(errors="replace")


@pytest.fixture
def servers():
    started = []

    def start(data_dir, fsync, log_path, extra=(), port=None):
        proc = LoggedServer(["--storage", "durable", "--data-dir", str(data_dir), "--fsync", fsync, *extra],
                            log_path, port=port)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop(signal.SIGKILL)


def set_reply(c, key, value, command=b"set"):
    c.send(b"%s %s 0 0 %d\r\n%s\r\n" % (command, key, len(value), value))
    return c.read_line()


def get_value(c, key):
    c.send(b"get %s\r\n" % key)
    line = c.read_line()
    if line == b"END\r\n":
        return None
    length = int(line.split()[3])
    data = c.read_exact(length + 2)[:-2]
    assert c.read_line() == b"END\r\n"
    return data


def binary_set(key, value, quiet=False, opaque=0):
    opcode = 0x11 if quiet else 0x01
    extras = struct.pack(">II", 0, 0)
    body = extras + key + value
    header = struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, len(body), opaque, 0)
    return header + body


def binary_noop(opaque=0):
    return struct.pack(">BBHBBHIIQ", 0x80, 0x0A, 0, 0, 0, 0, 0, opaque, 0)


def read_binary_response(c):
    header = c.read_exact(24)
    magic, opcode, _, _, _, status, body_length, opaque, _ = struct.unpack(">BBHBBHIIQ", header)
    assert magic == 0x81
    body = c.read_exact(body_length)
    return opcode, status, opaque, body


def storage_stats(c):
    return c.stats(b"storage")


def udp_reply(port, payload):
    """The payload of the one-datagram reply to a one-datagram request."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(struct.pack(">HHHH", 7, 0, 1, 0) + payload, ("127.0.0.1", port))
        data, _ = sock.recvfrom(65536)
    assert struct.unpack(">HHHH", data[:8])[:1] == (7,)
    return data[8:]


def assert_every_write_refused(server, c, stored_key, stored_value, udp_port):
    """While the store is in its error state: every kind of write answers the
    storage error, and reads still return what the store holds."""
    # A new value of a kept key: refused, and the old one still reads back.
    assert set_reply(c, stored_key, b"new value") == STORAGE_ERROR
    assert get_value(c, stored_key) == stored_value
    for command in (b"add", b"replace", b"append", b"prepend"):
        key = b"fresh-" + command if command == b"add" else stored_key
        assert set_reply(c, key, b"x", command) == STORAGE_ERROR, command
    assert get_value(c, b"fresh-add") is None
    assert get_value(c, stored_key) == stored_value
    c.send(b"gets %s\r\n" % stored_key)
    cas = int(c.read_line().split()[4])
    c.read_exact(len(stored_value) + 2)
    c.read_line()
    c.assert_reply(b"cas %s 0 0 1 %d\r\nz\r\n" % (stored_key, cas), STORAGE_ERROR)
    c.assert_reply(b"delete %s\r\n" % stored_key, STORAGE_ERROR)
    assert get_value(c, stored_key) == stored_value
    c.assert_reply(b"incr counter 5\r\n", STORAGE_ERROR)
    c.assert_reply(b"decr counter 1\r\n", STORAGE_ERROR)
    assert get_value(c, b"counter") == b"10"
    c.assert_reply(b"touch counter 1000\r\n", STORAGE_ERROR)
    c.assert_reply(b"gat 1000 counter\r\n", STORAGE_ERROR)
    # noreply: nothing to replace, nothing kept either.
    # (The mn reply is released with the set's batch, after the failure.)
    c.assert_reply(b"set quiet-key 0 0 1 noreply\r\nq\r\nmn\r\n", b"MN\r\n")
    assert get_value(c, b"quiet-key") is None
    # Meta: the same line, also when q hides successes.
    c.assert_reply(b"ms meta-key 2\r\nmv\r\n", STORAGE_ERROR)
    c.assert_reply(b"ms meta-key 2 q\r\nmv\r\nmn\r\n", STORAGE_ERROR + b"MN\r\n")
    c.assert_reply(b"md counter\r\n", STORAGE_ERROR)
    c.assert_reply(b"ma counter\r\n", STORAGE_ERROR)
    c.assert_reply(b"mg counter v T100\r\n", STORAGE_ERROR)
    c.assert_reply(b"mg counter v\r\n", b"VA 2\r\n10\r\n")
    assert get_value(c, b"meta-key") is None
    # Binary (its own connection: the first byte picks the protocol): internal
    # error (0x84), also for a quiet set, whose success says nothing.
    with server.connect() as b:
        b.send(binary_set(b"bin-key", b"v", opaque=7))
        assert read_binary_response(b)[:3] == (0x01, 0x84, 7)
        b.send(binary_set(b"bin-key", b"v", quiet=True, opaque=8) + binary_noop(opaque=9))
        assert read_binary_response(b)[:3] == (0x11, 0x84, 8)
        assert read_binary_response(b)[:3] == (0x0A, 0x00, 9)
    assert get_value(c, b"bin-key") is None
    # UDP: the same line.
    assert udp_reply(udp_port, b"set udp-key 0 0 1\r\nu\r\n") == STORAGE_ERROR
    assert get_value(c, b"udp-key") is None


def run_fault(servers, disk, fsync, restart, tmp_path, extra=()):
    data_dir = disk / "data"
    data_dir.mkdir()          # created by root (matters for -u nobody)
    filler = fill(disk)
    log_path = tmp_path / "server.log"
    udp_port = free_port(socket.SOCK_DGRAM)
    extra = (*extra, "-U", udp_port)
    server = servers(data_dir, fsync, log_path, extra)
    kept = {}                 # key -> the value last answered STORED
    with server.connect(timeout=30) as c:
        assert set_reply(c, b"counter", b"10") == b"STORED\r\n"
        kept[b"counter"] = b"10"
        replies = {}
        for i in range(SETS):
            key = b"big-%03d" % i
            reply = set_reply(c, key, value_for(key))
            replies[key] = reply
            assert reply in (b"STORED\r\n", STORAGE_ERROR), (key, reply)
            if reply == b"STORED\r\n":
                kept[key] = value_for(key)
        failed = [k for k, r in replies.items() if r == STORAGE_ERROR]
        assert failed, "no set was answered with the storage error (80 x 100 KB with 3 MB free)"
        assert len(kept) > 1, "no set was kept before the disk filled up"

        stats = storage_stats(c)
        assert stats["storage_state"] == "write_error", stats
        assert int(stats["storage_write_errors"]) >= len(failed)
        assert stats["storage_error"] != "none"
        assert int(stats["storage_error_since"]) > 0

        # Reads go on while the disk is full: every kept value, and no failed one.
        for key, value in kept.items():
            assert get_value(c, key) == value, key
        for key in failed:
            assert get_value(c, key) is None, key
        stored_key = next(k for k in kept if k != b"counter")
        assert_every_write_refused(server, c, stored_key, kept[stored_key], udp_port)
        assert server.proc.poll() is None, "the server exited while the disk was full"

    if restart == "sigterm-while-full":
        # SIGTERM in the error state: a clean exit; space returns while it is
        # down, and the restarted server has every kept write and accepts new ones.
        assert server.stop(signal.SIGTERM) == 0, server.log()
        assert "durable store: write" in server.log()
        filler.unlink()
        restarted = servers(data_dir, fsync, tmp_path / "restarted.log", extra)
        with restarted.connect(timeout=30) as c:
            missing = [k for k, v in kept.items() if get_value(c, k) != v]
            assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"
            for key in failed:
                assert get_value(c, key) is None, key
            assert set_reply(c, b"after-restart", b"x") == b"STORED\r\n"
        return

    with server.connect(timeout=30) as c:
        # Space returns: writes are accepted again within a few seconds.
        filler.unlink()
        deadline = time.monotonic() + RECOVERY_WAIT_S
        probe = b"probe"
        while True:
            if set_reply(c, probe, b"back") == b"STORED\r\n":
                kept[probe] = b"back"
                break
            assert time.monotonic() < deadline, "writes still refused %d s after space returned" % RECOVERY_WAIT_S
            time.sleep(0.2)
        stats = storage_stats(c)
        assert (stats["storage_state"], stats["storage_error"], stats["storage_error_since"]) == ("ok", "none", "0")
        assert int(stats["storage_recoveries"]) >= 1 and int(stats["storage_error_episodes"]) >= 1
        # Every kind of write works again, and what was refused is not there.
        assert set_reply(c, stored_key, b"after recovery") == b"STORED\r\n"
        kept[stored_key] = b"after recovery"
        c.assert_reply(b"incr counter 5\r\n", b"15\r\n")
        kept[b"counter"] = b"15"
        for i in range(5):
            key = b"after-%d" % i
            assert set_reply(c, key, value_for(key, 1)) == b"STORED\r\n"
            kept[key] = value_for(key, 1)
        for key in failed:
            assert get_value(c, key) is None, key

    if restart == "sigterm":
        assert server.stop(signal.SIGTERM) == 0
    else:
        server.stop(signal.SIGKILL)
    log = server.log()
    stamp = r"memkeep: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ durable store: "
    assert re.search(stamp + r"write (or fsync )?of the log failed: .*No space left on device", log), log
    assert re.search(stamp + r"recovered after \d+ s", log), log

    restarted = servers(data_dir, fsync, tmp_path / "restarted.log", extra)
    with restarted.connect(timeout=30) as c:
        missing = [k for k, v in kept.items() if get_value(c, k) != v]
        assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"
        for key in failed:
            assert get_value(c, key) is None, key


@pytest.mark.parametrize("restart", ["sigterm", "sigkill", "sigterm-while-full"])
@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_full_disk_fails_closed_and_recovers(servers, small_disk, fsync, restart, tmp_path):
    run_fault(servers, small_disk, fsync, restart, tmp_path)


# Until -u makes the data dir the user's (branch server-hardening), recovery
# cannot create the new write-ahead log in the root-owned dir (Permission
# denied), so writes stay refused: fail closed, but no recovery. With the dir
# chowned to nobody before the start, both pass (checked by hand). strict: an
# unexpected pass (once -u chowns) fails, so this marker gets removed then.
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="needs -u to chown the data dir (server-hardening)")
@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_full_disk_as_nobody_on_a_data_dir_root_created(servers, small_disk, fsync, tmp_path):
    run_fault(servers, small_disk, fsync, "sigterm", tmp_path, extra=("-u", "nobody"))
