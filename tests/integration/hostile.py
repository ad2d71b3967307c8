"""Helpers for the hostile-client suite (tests/integration/test_hostile_*.py).

Each hostile test starts a server, attacks it, and checks three things:
  (a) the server is alive and answers,
  (b) its resident memory stays under -m plus a documented margin
      (docs/OPERATIONS.md "Security"), and
  (c) a well-behaved client on another connection gets correct replies
      while the attack is going on.
The checks live here once so that every attack asserts the same thing.
"""

import os

# What memkeep may hold beyond -m: the hash table, per-connection buffers,
# thread stacks and RocksDB's caches (docs/OPERATIONS.md "Security").
RSS_MARGIN_MIB = 64
# The overflow mode's fixed overhead over -m instead (docs/OPERATIONS.md
# "Overflow": RocksDB memtables and block cache, evicted items waiting for
# the writer, connection buffers).
OVERFLOW_RSS_MARGIN_MIB = 96

SANITIZED = os.environ.get("MEMKEEP_SANITIZED") == "1"


def rss_mib(pid):
    """Resident memory of process `pid` in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def assert_rss_within(server, memory_limit_mib, margin_mib=RSS_MARGIN_MIB):
    """(b): RSS under -m plus the margin. Skipped under the sanitizers, whose
    shadow memory and quarantine make resident memory meaningless."""
    if SANITIZED:
        return
    rss = rss_mib(server.pid)
    assert rss <= memory_limit_mib + margin_mib, (
        f"RSS {rss:.0f} MiB over -m {memory_limit_mib} + margin {margin_mib} MiB"
    )


def assert_alive_and_correct(server, key=b"hostile_probe"):
    """(a) and (c): a fresh connection stores, reads back and deletes a key."""
    assert server.proc.poll() is None, f"server exited with {server.proc.returncode}"
    value = os.urandom(8).hex().encode()
    with server.connect() as c:
        c.assert_reply(b"set " + key + b" 0 0 16\r\n" + value + b"\r\n", b"STORED\r\n")
        c.assert_reply(
            b"get " + key + b"\r\n",
            b"VALUE " + key + b" 0 16\r\n" + value + b"\r\nEND\r\n",
        )
        c.assert_reply(b"delete " + key + b"\r\n", b"DELETED\r\n")
