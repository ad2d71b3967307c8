"""Differential tests: the same random text- and binary-protocol traffic to memkeep and memcached.

The generator and runner live in differential.py (also a script for long runs).
Each test starts the server under test (build/memkeep, or memcached when
MEMKEEP_TEST_TARGET=memcached) and a reference memcached with the same flags,
sends both a seeded sequence of thousands of commands over three connections
each, and compares every reply after normalizing CAS numbers and the version
string. A failure names the seed, the first differing request, both replies and
the commands before it; rerun it with
    /usr/bin/python3 tests/integration/differential.py --target-binary build/memkeep --seed N --count M --profile P
and add `--exclude control-keys --exclude quirks` to look past known differences
(`--binary` for the binary-protocol tests).
"""

import pytest

import differential
from conftest import MEMCACHED_BIN, TARGET, server_binary

COMMANDS_PER_SEED = 3000


def start_pair(server_factory, profile):
    """(target, reference) servers with the profile's flags, their output drained."""
    profile = differential.PROFILES[profile]
    # memcached as the target needs the reference's extra flags (see PROFILES).
    target_args = profile.reference_args if TARGET == "memcached" else profile.target_args
    target = server_factory(target_args)
    reference = server_factory(profile.reference_args, binary=MEMCACHED_BIN, target="memcached")
    for server in (target, reference):
        # `verbosity 2` in the stream makes servers log every command; an
        # unread stderr pipe would fill up and block them.
        differential.OutputDrain(server.proc.stdout, server.proc.stderr)
    return target, reference


def address(server):
    return ("127.0.0.1", server.port)


def reproduce_hint(seed, profile):
    binary = "--reference-vs-itself" if TARGET == "memcached" else f"--target-binary {server_binary()}"
    return (f"/usr/bin/python3 tests/integration/differential.py {binary} --seed {seed} "
            f"--count {COMMANDS_PER_SEED} --profile {profile}")


@pytest.mark.parametrize(
    "profile, seed",
    [("default", 1), ("default", 2), ("default", 3), ("small-items", 1), ("small-items", 2)],
)
def test_replies_match_memcached(server_factory, profile, seed):
    target, reference = start_pair(server_factory, profile)
    result = differential.run(address(target), address(reference), seed, COMMANDS_PER_SEED, profile,
                              reproduce_hint=reproduce_hint(seed, profile))
    assert result.ok, "\n" + result.message


@pytest.mark.parametrize("profile, seed", [("default", 1), ("default", 2), ("small-items", 1)])
def test_binary_replies_match_memcached(server_factory, profile, seed):
    """The binary protocol: every opcode, quiet variants, CAS, errors that close the connection."""
    target, reference = start_pair(server_factory, profile)
    result = differential.run_binary(address(target), address(reference), seed, COMMANDS_PER_SEED, profile,
                                     reproduce_hint=reproduce_hint(seed, profile) + " --binary")
    assert result.ok, "\n" + result.message


def test_binary_reference_agrees_with_itself(server_factory):
    """Self-check of the binary harness: memcached against memcached never differs."""
    flags = differential.PROFILES["default"].reference_args
    first = server_factory(flags, binary=MEMCACHED_BIN, target="memcached")
    second = server_factory(flags, binary=MEMCACHED_BIN, target="memcached")
    for server in (first, second):
        differential.OutputDrain(server.proc.stdout, server.proc.stderr)
    result = differential.run_binary(address(first), address(second), 13, COMMANDS_PER_SEED, "default")
    assert result.ok, "\n" + result.message


def test_counters_match_memcached_after_a_run(server_factory):
    """Counters that follow from the commands alone (get_hits, cas_badval, ...) agree."""
    target, reference = start_pair(server_factory, "default")
    seed = 4
    result = differential.run(address(target), address(reference), seed, COMMANDS_PER_SEED, "default",
                              reproduce_hint=reproduce_hint(seed, "default"))
    assert result.ok, "\n" + result.message
    differing = differential.compare_counters(address(target), address(reference))
    assert not differing, "stats counters (target, reference) after seed %d: %r" % (seed, differing)


def test_reference_agrees_with_itself(server_factory):
    """Self-check of the harness: memcached against memcached never differs.

    If this fails, the generator sends something whose reply depends on timing
    or on memcached internals, and the other tests here cannot be trusted.
    """
    for profile, seed in (("default", 11), ("small-items", 12)):
        flags = differential.PROFILES[profile].reference_args
        first = server_factory(flags, binary=MEMCACHED_BIN, target="memcached")
        second = server_factory(flags, binary=MEMCACHED_BIN, target="memcached")
        for server in (first, second):
            differential.OutputDrain(server.proc.stdout, server.proc.stderr)
        result = differential.run(address(first), address(second), seed, COMMANDS_PER_SEED, profile)
        assert result.ok, "\n" + result.message


def test_harness_reports_a_real_difference(server_factory):
    """The comparison can fail: memcached with CAS disabled (-C) differs from memcached."""
    flags = differential.PROFILES["default"].reference_args
    without_cas = server_factory(list(flags) + ["-C"], binary=MEMCACHED_BIN, target="memcached")
    reference = server_factory(flags, binary=MEMCACHED_BIN, target="memcached")
    for server in (without_cas, reference):
        differential.OutputDrain(server.proc.stdout, server.proc.stderr)
    result = differential.run(address(without_cas), address(reference), 5, COMMANDS_PER_SEED, "default")
    assert not result.ok
    assert "differential mismatch at command #" in result.message
    assert "seed 5" in result.message
    assert "reference reply:" in result.message and "preceding" in result.message


def test_reply_reader_frames_values_by_length(server_factory):
    """A value containing "MN\\r\\n" does not end the reply early; CAS becomes an ordinal."""
    server = server_factory([], binary=MEMCACHED_BIN, target="memcached")
    conn = differential.Connection(address(server), timeout=10.0)
    numbering = differential.CasNumbering()
    try:
        items, status = conn.exchange(b"set k 0 0 9\r\nMN\r\nEND\r\n\r\n")
        assert (differential.reply_bytes(items), status) == (b"STORED\r\n", "ok")
        for _ in range(2):
            items, status = conn.exchange(b"gets k\r\n")
            assert status == "ok"
            assert differential.reply_bytes(numbering.normalize(items)) == b"VALUE k 0 9 #1\r\nMN\r\nEND\r\n\r\nEND\r\n"
        conn.exchange(b"append k 0 0 1\r\nX\r\n")
        items, _ = conn.exchange(b"gets k\r\n")
        assert differential.reply_bytes(numbering.normalize(items)) == b"VALUE k 0 10 #2\r\nMN\r\nEND\r\nX\r\nEND\r\n"
        items, status = conn.exchange(b"quit\r\n")
        assert (differential.reply_bytes(items), status) == (b"<connection closed>", "closed")
    finally:
        conn.close()
