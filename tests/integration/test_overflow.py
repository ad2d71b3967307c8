"""--storage overflow: a cache larger than RAM.

Items evicted from RAM (-m) go to a disk tier of at most --disk-limit bytes
and are still served; every command behaves on a disk-resident item as on one
in RAM; a delete or overwrite never lets an older disk copy come back; the
disk limit drops the oldest data; the tier is discarded at a restart; bad
configurations are refused at start. The big test measures the server's
resident memory against the documented bound (docs/OPERATIONS.md).

memkeep only: memcached's extstore is compared in bench/, not here.
"""

import hashlib
import os
import random
import subprocess
import time

import pytest

from conftest import MEMKEEP_BIN, free_port
from hostile import rss_mib

pytestmark = pytest.mark.memkeep_only

MIB = 1024 * 1024
# Resident memory beyond -m that the overflow mode may use: RocksDB memtables
# (4 x 4 MB), its block cache (8 MB), evicted items queued for the writer (up
# to 2 x 8 MB), connection buffers, allocator slack and the process itself.
# docs/OPERATIONS.md.
OVERHEAD_BOUND_MIB = 96


def overflow_server(server_factory, tmp_path, memory_mb=4, disk_limit="1g", item_size="256k", extra=()):
    return server_factory(["-m", str(memory_mb), "-I", item_size, "--storage", "overflow",
                           "--data-dir", str(tmp_path / "tier"), "--disk-limit", disk_limit, *extra])


def set_value(c, key, value, flags=0, exptime=0, command=b"set"):
    c.assert_reply(b"%s %s %d %d %d\r\n%s\r\n" % (command, key, flags, exptime, len(value), value), b"STORED\r\n")


def get_value(c, key, command=b"get"):
    c.send(b"%s %s\r\n" % (command, key))
    line = c.read_line()
    if line == b"END\r\n":
        return None
    parts = line.split()
    data = c.read_exact(int(parts[3]) + 2)[:-2]
    assert c.read_line() == b"END\r\n"
    return (int(parts[2]), data) if command == b"get" else (int(parts[2]), data, int(parts[4]))


def disk_reads(c):
    return int(c.stats(b"storage")["storage_reads_from_disk"])


def push_out_of_ram(c, megabytes=12, tag=b"filler"):
    """Writes enough other items that earlier ones are evicted to disk."""
    value = b"f" * 8000
    for i in range(megabytes * MIB // len(value)):
        set_value(c, b"%s-%d" % (tag, i), value)


def test_hundreds_of_megabytes_with_16mb_of_ram(server_factory, tmp_path):
    server = overflow_server(server_factory, tmp_path, memory_mb=16, disk_limit="1g", item_size="1m")
    sizes = [4096, 16384, 65536, 100000]
    count = 3000  # about 140 MB of values

    def value(i):
        block = hashlib.sha256(b"%d" % i).digest()
        return (block * (sizes[i % 4] // 32 + 1))[: sizes[i % 4]]

    peak = 0.0
    with server.connect(timeout=30) as c:
        for i in range(count):
            set_value(c, b"item%d" % i, value(i), flags=i)
            if i % 500 == 0:
                peak = max(peak, rss_mib(server.pid))
        for i in range(count):
            assert get_value(c, b"item%d" % i) == (i, value(i)), i
            if i % 500 == 0:
                peak = max(peak, rss_mib(server.pid))
        stats = c.stats(b"storage")
    peak = max(peak, rss_mib(server.pid))
    assert int(stats["storage_reads_from_disk"]) > count // 2
    assert int(stats["storage_write_errors"]) == 0
    if os.environ.get("MEMKEEP_SANITIZED") != "1":  # ASan's shadow memory is not ours
        assert peak <= 16 + OVERHEAD_BOUND_MIB, f"resident memory {peak:.1f} MiB"


def test_every_command_on_a_disk_resident_item(server_factory, tmp_path):
    server = overflow_server(server_factory, tmp_path)
    with server.connect(timeout=30) as c:
        set_value(c, b"plain", b"hello", flags=5)
        set_value(c, b"counter", b"41")
        set_value(c, b"text", b"middle")
        set_value(c, b"doomed", b"bye")
        set_value(c, b"replaced", b"old value")
        set_value(c, b"touched", b"t", exptime=1000)
        set_value(c, b"casme", b"v1")
        _, _, cas_before = get_value(c, b"casme", b"gets")
        push_out_of_ram(c)

        before = disk_reads(c)
        assert get_value(c, b"plain") == (5, b"hello")
        assert disk_reads(c) > before, "plain was not served from disk"

        # CAS values stay valid across the move to disk and back.
        push_out_of_ram(c, tag=b"f2")
        assert get_value(c, b"casme", b"gets") == (0, b"v1", cas_before)
        push_out_of_ram(c, tag=b"f3")
        c.assert_reply(b"cas casme 0 0 2 %d\r\nv2\r\n" % cas_before, b"STORED\r\n")
        assert get_value(c, b"casme") == (0, b"v2")

        c.assert_reply(b"incr counter 1\r\n", b"42\r\n")
        c.assert_reply(b"append text 0 0 4\r\n-end\r\n", b"STORED\r\n")
        c.assert_reply(b"prepend text 0 0 6\r\nstart-\r\n", b"STORED\r\n")
        c.assert_reply(b"touch touched 0\r\n", b"TOUCHED\r\n")
        c.assert_reply(b"delete doomed\r\n", b"DELETED\r\n")
        set_value(c, b"replaced", b"new value")

        # Push everything out again: the old disk copies must stay hidden.
        push_out_of_ram(c, tag=b"f4")
        push_out_of_ram(c, tag=b"f5")
        assert get_value(c, b"counter") == (0, b"42")
        assert get_value(c, b"text") == (0, b"start-middle-end")
        assert get_value(c, b"doomed") is None
        assert get_value(c, b"replaced") == (0, b"new value")
        c.send(b"mg touched t v\r\n")
        assert c.read_line() == b"VA 1 t-1\r\n"
        assert c.read_line() == b"t\r\n"
        # gat on a disk item, then the meta view of it.
        push_out_of_ram(c, tag=b"f6")
        c.send(b"gat 500 plain\r\n")
        assert c.read_line() == b"VALUE plain 5 5\r\n"
        assert c.read_line() == b"hello\r\n"
        assert c.read_line() == b"END\r\n"


def test_delete_then_reads_never_see_the_old_value(server_factory, tmp_path):
    server = overflow_server(server_factory, tmp_path)
    with server.connect(timeout=30) as c:
        for round_number in range(3):
            set_value(c, b"k", b"version %d" % round_number)
            push_out_of_ram(c, tag=b"a%d" % round_number)
            c.assert_reply(b"delete k\r\n", b"DELETED\r\n")
            assert get_value(c, b"k") is None
            push_out_of_ram(c, tag=b"b%d" % round_number)
            assert get_value(c, b"k") is None


def test_flush_all_and_expiry_reach_the_disk(server_factory, tmp_path):
    server = overflow_server(server_factory, tmp_path)
    with server.connect(timeout=30) as c:
        set_value(c, b"flushed", b"x")
        set_value(c, b"expiring", b"y", exptime=1)
        push_out_of_ram(c)
        c.assert_reply(b"flush_all\r\n", b"OK\r\n")
        assert get_value(c, b"flushed") is None
        set_value(c, b"after", b"z")
        assert get_value(c, b"after") == (0, b"z")
        assert get_value(c, b"expiring") is None


def test_disk_limit_drops_the_oldest(server_factory, tmp_path):
    limit = 32 * MIB
    server = overflow_server(server_factory, tmp_path, disk_limit="32m", item_size="256k")
    # Incompressible values, so the disk fills as fast as the values arrive.
    rng = random.Random("disk-limit")
    value = bytes(rng.getrandbits(8) for _ in range(50000))
    with server.connect(timeout=60) as c:
        count = 160 * MIB // len(value)
        for i in range(count):
            set_value(c, b"seq%d" % i, value[i % 100:] + value[: i % 100])
        # FIFO compaction runs after each flush, in the background: while it
        # catches up the disk may hold a few flushes more; once it has, at
        # most one memtable flush (4 MB) beyond the limit (docs/OPERATIONS.md).
        deadline = time.monotonic() + 20
        while True:
            stats = c.stats(b"storage")
            settled = int(stats["storage_disk_bytes"]) <= limit + 4 * MIB
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert settled, stats
        assert int(stats["storage_disk_evictions"]) > 0
        assert int(stats["storage_disk_bytes_reclaimed"]) > 0
        assert get_value(c, b"seq0") is None           # oldest: dropped
        last = count - 1
        assert get_value(c, b"seq%d" % last) == (0, value[last % 100:] + value[: last % 100])  # newest: kept


def test_the_tier_is_discarded_at_restart(server_factory, tmp_path):
    server = overflow_server(server_factory, tmp_path)
    with server.connect(timeout=30) as c:
        set_value(c, b"k", b"v")
        push_out_of_ram(c)
    assert server.stop() == 0
    restarted = overflow_server(server_factory, tmp_path)
    with restarted.connect() as c:
        assert get_value(c, b"k") is None
        assert int(c.stats(b"storage")["storage_items_on_disk"]) == 0


def run_expecting_failure(args):
    cmd = [str(MEMKEEP_BIN), "-p", str(free_port()), "-l", "127.0.0.1", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, timeout=20)
    return proc.returncode, proc.stderr.decode(errors="replace")


def test_overflow_without_data_dir():
    code, err = run_expecting_failure(["--storage", "overflow"])
    assert code != 0 and "--data-dir" in err and len(err.strip().splitlines()) == 1, err


def test_disk_limit_smaller_than_items():
    code, err = run_expecting_failure(["--storage", "overflow", "--data-dir", "/tmp/unused", "--disk-limit", "1m"])
    assert code != 0 and "--disk-limit" in err, err


def test_data_dir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    code, err = run_expecting_failure(["--storage", "overflow", "--data-dir", path])
    assert code != 0 and "not a directory" in err, err
    assert path.read_text() == "x"


def test_a_durable_store_is_not_taken_for_a_tier(server_factory, tmp_path):
    data_dir = tmp_path / "durable"
    server = server_factory(["--storage", "durable", "--data-dir", str(data_dir)])
    with server.connect() as c:
        c.assert_reply(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n")
    assert server.stop() == 0
    code, err = run_expecting_failure(["--storage", "overflow", "--data-dir", data_dir])
    assert code != 0 and "incompatible" in err, err
