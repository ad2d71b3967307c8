"""--storage durable: acknowledged writes survive a crash and a restart.

Covers: a crash test per fsync mode (clients write, the server is killed with
SIGKILL at a random moment, every acknowledged write reads back exactly after
a restart); a restart test (values, flags, expiry as absolute time, CAS values
stay unique); a data set much larger than -m; durable flush_all (immediate and
delayed); bad data directories (a file, unwritable, locked, foreign files, an
incompatible format, a damaged store), each refused with a clear error and a
non-zero exit, the files left as they were; the backup admin command and
serving from a backup; `stats storage`.

memkeep only: memcached has no storage.
"""

import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import MEMKEEP_BIN, ServerProcess, free_port

pytestmark = pytest.mark.memkeep_only


def durable_args(data_dir, fsync="everysec", extra=()):
    return ["--storage", "durable", "--data-dir", str(data_dir), "--fsync", fsync, *extra]


def start(server_factory, data_dir, fsync="everysec", extra=(), port=None):
    return server_factory(durable_args(data_dir, fsync, extra), port=port)


def set_value(client, key, value, flags=0, exptime=0):
    client.assert_reply(b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(value), value), b"STORED\r\n")


def get_value(client, key):
    client.send(b"get %s\r\n" % key)
    line = client.read_line()
    if line == b"END\r\n":
        return None
    _, _, flags, length = line.split()[:4]
    data = client.read_exact(int(length) + 2)[:-2]
    assert client.read_line() == b"END\r\n"
    return int(flags), data


def snapshot(directory):
    """Every file's path, size, mtime and content hash under `directory`."""
    state = {}
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            stat = path.stat()
            state[str(path)] = (stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def run_expecting_failure(args, timeout=20):
    """Runs memkeep expecting it to refuse to start; returns (code, stderr)."""
    port = free_port()
    cmd = [str(MEMKEEP_BIN), "-p", str(port), "-l", "127.0.0.1", *[str(a) for a in args]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"memkeep did not exit: {cmd}")
    return proc.returncode, err.decode(errors="replace")


# --- crash: every acknowledged write survives SIGKILL ---------------------------------

@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_acknowledged_writes_survive_sigkill(server_factory, tmp_path, fsync):
    rng = random.Random(f"crash-{fsync}")
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir, fsync)
    acknowledged = {}          # key -> (flags, value) of the last acknowledged write
    unacknowledged = {}        # key -> values sent whose reply never came
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker):
        writer_rng = random.Random(f"{fsync}-{worker}")
        try:
            with server.connect(timeout=5) as c:
                for i in range(20000):  # bounded; the kill ends it much sooner
                    if stop.is_set():
                        return
                    # Some keys are overwritten, so the last acknowledged value matters.
                    key = b"w%d-%d" % (worker, writer_rng.randrange(400) if i % 3 == 0 else 1000 + i)
                    value = os.urandom(writer_rng.randrange(1, 600)).hex().encode()
                    flags = writer_rng.randrange(1 << 16)
                    with lock:
                        unacknowledged.setdefault(key, []).append((flags, value))
                    c.send(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(value), value))
                    if c.read_line() != b"STORED\r\n":
                        return
                    with lock:
                        acknowledged[key] = (flags, value)
                        unacknowledged[key] = []
        except (ConnectionError, OSError):
            return  # the server was killed mid-request

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5 + rng.random())  # a random moment, seeded
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acknowledged) > 50, "the writers barely ran"

    restarted = start(server_factory, data_dir, fsync)
    with restarted.connect() as c:
        for key, (flags, value) in acknowledged.items():
            got = get_value(c, key)
            # A write sent after the last acknowledged one may also have made it.
            allowed = [(flags, value)] + unacknowledged.get(key, [])
            assert got in allowed, f"{key!r}: acknowledged {(flags, value[:20])!r}, read {got!r}"


def test_incr_and_delete_survive_sigkill(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir, "no")
    with server.connect() as c:
        set_value(c, b"counter", b"10")
        for _ in range(25):
            c.send(b"incr counter 2\r\n")
            c.read_line()
        set_value(c, b"gone", b"x")
        c.assert_reply(b"delete gone\r\n", b"DELETED\r\n")
        set_value(c, b"text", b"abc")
        c.assert_reply(b"append text 0 0 3\r\ndef\r\n", b"STORED\r\n")
        c.assert_reply(b"touch text 1000\r\n", b"TOUCHED\r\n")
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    restarted = start(server_factory, data_dir)
    with restarted.connect() as c:
        assert get_value(c, b"counter") == (0, b"60")
        assert get_value(c, b"gone") is None
        assert get_value(c, b"text") == (0, b"abcdef")
        c.send(b"mg text t\r\n")
        ttl = int(c.read_line().split()[1][1:])
        assert 990 <= ttl <= 1000


# --- restart ----------------------------------------------------------------------------

def test_values_flags_expiry_and_cas_survive_a_clean_restart(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir)
    with server.connect() as c:
        set_value(c, b"plain", b"hello", flags=42)
        set_value(c, b"long-lived", b"stays", flags=7, exptime=3600)
        set_value(c, b"short-lived", b"goes", exptime=2)
        set_value(c, b"empty", b"")
        c.send(b"gets plain\r\n")
        old_cas = int(c.read_line().split()[4])
        c.read_until(b"END\r\n")
    assert server.stop() == 0
    time.sleep(3.0)  # downtime longer than short-lived's TTL

    restarted = start(server_factory, data_dir)
    with restarted.connect() as c:
        assert get_value(c, b"plain") == (42, b"hello")
        assert get_value(c, b"long-lived") == (7, b"stays")
        assert get_value(c, b"short-lived") is None
        assert get_value(c, b"empty") == (0, b"")
        # Expiry was kept as absolute time: the remaining TTL went down.
        c.send(b"mg long-lived t\r\n")
        ttl = int(c.read_line().split()[1][1:])
        assert 3590 - 60 <= ttl <= 3597
        # CAS values stay unique: the old one still matches, a new version differs.
        c.send(b"gets plain\r\n")
        assert int(c.read_line().split()[4]) == old_cas
        c.read_until(b"END\r\n")
        c.assert_reply(b"cas plain 1 0 3 %d\r\nnew\r\n" % old_cas, b"STORED\r\n")
        c.send(b"gets plain\r\n")
        new_cas = int(c.read_line().split()[4])
        c.read_until(b"END\r\n")
        assert new_cas > old_cas


def test_larger_than_ram(server_factory, tmp_path):
    # -m 16 with 256 MB of values: everything is still served (from disk).
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir, "no", extra=["-m", "16"])
    count, size = 1024, 256 * 1024
    seed = b"larger-than-ram"
    with server.connect(timeout=30) as c:
        for i in range(count):
            value = hashlib.sha256(seed + b"%d" % i).hexdigest().encode() * (size // 64)
            set_value(c, b"big%d" % i, value)
        for i in range(count):
            value = hashlib.sha256(seed + b"%d" % i).hexdigest().encode() * (size // 64)
            assert get_value(c, b"big%d" % i) == (0, value), i
        stats = c.stats(b"storage")
        assert int(stats["storage_reads_from_disk"]) > 0
        general = c.stats()
        assert int(general["bytes"]) <= 16 * 1024 * 1024


def test_evicted_keys_read_their_newest_version_from_the_store(server_factory, tmp_path):
    # Keys overwritten with larger values (a new memtable entry each time),
    # smaller ones (updated in place) and deleted, then pushed out of RAM by
    # other writes: a read finds each key's newest version in the store's
    # memtable (or a table file), before and after a restart.
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir, "no", extra=["-m", "16"])
    sizes = [10, 100, 50, 1000, 3, 2000]
    expected = {}
    with server.connect(timeout=30) as c:
        for key in range(300):
            name = b"ver%d" % key
            for size in sizes[: 1 + key % len(sizes)]:
                value = (b"%d-%d-" % (key, size) * size)[:size]
                set_value(c, name, value)
                expected[name] = (0, value)
            if key % 7 == 0:
                c.assert_reply(b"delete %s\r\n" % name, b"DELETED\r\n")
                expected[name] = None
        filler = b"f" * (64 * 1024)
        for i in range(512):
            set_value(c, b"filler%d" % i, filler)
        for name, value in expected.items():
            assert get_value(c, name) == value, name
        assert int(c.stats(b"storage")["storage_reads_from_disk"]) > 0
    assert server.stop() == 0
    restarted = start(server_factory, data_dir)
    with restarted.connect() as c:
        for name, value in expected.items():
            assert get_value(c, name) == value, name


# --- flush_all is durable ----------------------------------------------------------------

def test_flush_all_survives_sigkill(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir, "always")
    with server.connect() as c:
        set_value(c, b"a", b"1")
        set_value(c, b"b", b"2")
        c.assert_reply(b"flush_all\r\n", b"OK\r\n")
        set_value(c, b"after", b"3")
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    restarted = start(server_factory, data_dir)
    with restarted.connect() as c:
        assert get_value(c, b"a") is None
        assert get_value(c, b"b") is None
        assert get_value(c, b"after") == (0, b"3")


@pytest.mark.parametrize("restart", ["sigkill", "clean"])
def test_keys_set_again_after_flush_all_survive(server_factory, tmp_path, restart):
    # The store updates a key's newest entry in place when the new value is
    # no larger; an entry written before flush_all must not take the new value
    # (the flush's range deletion would hide it).
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir, "everysec")
    with server.connect() as c:
        for round_ in range(3):
            for i in range(50):
                set_value(c, b"k%d" % i, b"before-%d-%d-padding" % (round_, i))
            c.assert_reply(b"flush_all\r\n", b"OK\r\n")
            for i in range(0, 50, 2):
                set_value(c, b"k%d" % i, b"after-%d-%d" % (round_, i))
    if restart == "sigkill":
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(10)
    else:
        assert server.stop() == 0
    restarted = start(server_factory, data_dir)
    with restarted.connect() as c:
        for i in range(50):
            expected = (0, b"after-2-%d" % i) if i % 2 == 0 else None
            assert get_value(c, b"k%d" % i) == expected, i


def test_overwrites_of_any_size_survive_sigkill(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir, "no")
    sizes = [100, 10, 100, 1000, 0, 5, 5, 4096, 1]
    with server.connect() as c:
        for key in range(20):
            for size in sizes:
                set_value(c, b"key%d" % key, (b"%d-" % key * size)[:size])
            if key % 4 == 0:
                c.assert_reply(b"delete key%d\r\n" % key, b"DELETED\r\n")
            if key % 4 == 1:
                c.assert_reply(b"delete key%d\r\n" % key, b"DELETED\r\n")
                set_value(c, b"key%d" % key, b"again")
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    restarted = start(server_factory, data_dir)
    with restarted.connect() as c:
        for key in range(20):
            expected = {0: None, 1: (0, b"again")}.get(key % 4, (0, (b"%d-" % key * 1)[:1]))
            assert get_value(c, b"key%d" % key) == expected, key


def test_delayed_flush_all_applies_after_a_restart(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir, "always")
    with server.connect() as c:
        set_value(c, b"a", b"1")
        c.assert_reply(b"flush_all 2\r\n", b"OK\r\n")
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    time.sleep(2.5)
    restarted = start(server_factory, data_dir)
    with restarted.connect() as c:
        assert get_value(c, b"a") is None
        set_value(c, b"later", b"kept")
        assert get_value(c, b"later") == (0, b"kept")


# --- bad data directories ----------------------------------------------------------------

def assert_refused(args, expected_words, directory=None):
    before = snapshot(directory) if directory else None
    code, err = run_expecting_failure(args)
    assert code != 0, err
    assert any(word in err for word in expected_words), err
    if directory:
        assert snapshot(directory) == before, "files in the data dir were changed"


def test_data_dir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"not a directory")
    assert_refused(durable_args(path), ["not a directory"])
    assert path.read_bytes() == b"not a directory"


def test_unwritable_data_dir(tmp_path):
    if os.geteuid() == 0:
        # root writes anywhere: run the server as nobody, on a directory
        # nobody can reach but not write (pytest's tmp_path is private to root).
        parent = Path(tempfile.mkdtemp(prefix="memkeep-unwritable-"))
        try:
            parent.chmod(0o755)
            directory = parent / "readonly"
            directory.mkdir(mode=0o755)
            code, err = run_as_nobody(durable_args(directory))
            assert code != 0 and "not writable" in err, err
            assert list(directory.iterdir()) == []
        finally:
            shutil.rmtree(parent)
    else:
        directory = tmp_path / "readonly"
        directory.mkdir()
        directory.chmod(0o500)
        code, err = run_expecting_failure(durable_args(directory))
        assert code != 0 and "not writable" in err, err
        assert list(directory.iterdir()) == []


def run_as_nobody(args):
    port = free_port()
    cmd = ["runuser", "-u", "nobody", "--", str(MEMKEEP_BIN), "-p", str(port), "-l", "127.0.0.1", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, timeout=20)
    return proc.returncode, proc.stderr.decode(errors="replace")


def test_data_dir_in_use_by_another_process(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir)
    with server.connect() as c:
        set_value(c, b"k", b"v")
    assert_refused(durable_args(data_dir), ["in use"])
    with server.connect() as c:
        assert get_value(c, b"k") == (0, b"v")


def test_foreign_files_in_data_dir(tmp_path):
    directory = tmp_path / "foreign"
    directory.mkdir()
    (directory / "notes.txt").write_text("someone else's data")
    assert_refused(durable_args(directory), ["not a memkeep store"], directory)


def test_incompatible_format_version(tmp_path):
    directory = tmp_path / "future"
    directory.mkdir()
    (directory / "MEMKEEP_DATA").write_text("memkeep data format 99\n")
    (directory / "CURRENT").write_text("MANIFEST-000001\n")
    assert_refused(durable_args(directory), ["incompatible"], directory)


def test_damaged_store(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir)
    with server.connect() as c:
        set_value(c, b"k", b"v")
    assert server.stop() == 0
    (data_dir / "CURRENT").write_bytes(b"\x00garbage\xff\n")
    assert_refused(durable_args(data_dir), ["cannot open the store"], data_dir)


def test_durable_without_data_dir_is_a_usage_error():
    code, err = run_expecting_failure(["--storage", "durable"])
    assert code != 0 and "--data-dir" in err and len(err.strip().splitlines()) == 1, err


# --- backup ------------------------------------------------------------------------------

def test_backup_is_refused_without_admin(server_factory, tmp_path):
    server = start(server_factory, tmp_path / "data")
    with server.connect() as c:
        c.assert_reply(b"backup\r\n", b"CLIENT_ERROR admin commands are not enabled (start with --admin)\r\n")


def test_backup_serves_exactly_the_backed_up_data(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = start(server_factory, data_dir, extra=["--admin"])
    with server.connect() as c:
        set_value(c, b"before", b"in the backup", flags=3)
        set_value(c, b"changed", b"old")
        c.send(b"backup nightly\r\n")
        reply = c.read_line()
        assert reply == b"OK %s\r\n" % str(data_dir / "backups" / "nightly").encode(), reply
        set_value(c, b"after", b"not in the backup")
        set_value(c, b"changed", b"new")
        c.assert_reply(b"backup nightly\r\n", b"SERVER_ERROR backup failed: ")  # name taken
        c.read_line()
    backup_copy = tmp_path / "restored"
    shutil.copytree(data_dir / "backups" / "nightly", backup_copy)
    restored = start(server_factory, backup_copy)
    with restored.connect() as c:
        assert get_value(c, b"before") == (3, b"in the backup")
        assert get_value(c, b"changed") == (0, b"old")
        assert get_value(c, b"after") is None


# --- stats ---------------------------------------------------------------------------------

def test_stats_storage(server_factory, tmp_path):
    server = start(server_factory, tmp_path / "data", "always")
    with server.connect() as c:
        set_value(c, b"k", b"v")
        stats = c.stats(b"storage")
    assert stats["storage_mode"] == "durable"
    assert stats["storage_fsync"] == "always"
    assert int(stats["storage_wal_syncs"]) >= 1
    assert int(stats["storage_last_sync_time"]) >= int(time.time()) - 60
    for name in ("storage_disk_bytes", "storage_items_on_disk", "storage_reads_from_disk",
                 "storage_reads_from_ram", "storage_write_errors"):
        assert name in stats


def test_memory_mode_has_storage_stats_too(server_factory):
    server = server_factory([])
    with server.connect() as c:
        assert c.stats(b"storage")["storage_mode"] == "memory"
