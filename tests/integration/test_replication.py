"""Replication (issue 6): active-active peers (-x/-X), read-only replicas
(--replica-of), shared secret, synchronous acknowledgement (--repl-sync),
partial and full resynchronisation, `stats repl`, admin commands, startup
errors. Written against docs of the interface (the replication spec of
issue 6); helpers in repl_cluster.py.

Covers, in order:
  1. every mutation type on A shows up on B with the same value, flags and CAS
     (text, meta, binary), and gets on A then cas on B works;
  2. a three-node mesh under concurrent conflicting writes converges;
  3. kill -9 of one node while the other is written, restart: it has
     everything (partial sync with a durable node and a large backlog; full
     sync with a 64k backlog overflowed, and with a memory-mode node);
  4. links cut and restored through a TCP relay the test controls;
  5. read-only replicas, `replication promote`, `replication replica-of`;
  6. wrong/missing secret refused, right secret works, a node pointed at itself;
  7. --repl-sync: an acknowledged write is on the peer; the timeout reply;
  8. garbage and silence on the replication port;
  9. startup errors; `stats repl`.

Every process is stopped by its PID when the test ends (server_factory); the
relays are closed by the `relays` fixture. Waits poll with a generous
deadline; no assertion depends on how fast anything is.

memkeep only: memcached has no replication.
"""

import os
import random
import signal
import subprocess
import threading
import time

import pytest

from conftest import MEMKEEP_BIN, Client
from repl_cluster import (
    B_ADD, B_APPEND, B_DECR, B_DELETE, B_FLUSH, B_GAT, B_INCR, B_PREPEND, B_REPLACE, B_SET, B_TOUCH,
    HOST, Relay, bin_call, bin_incr_extras, bin_request, bin_store_extras, free_ports, is_listening, mesh, meta,
    read_item, read_items, set_ok, snapshot, start_node, ttl, wait_converged, wait_item, wait_streaming,
    wait_until,
)

pytestmark = pytest.mark.memkeep_only

READ_ONLY = b"SERVER_ERROR read-only replica\r\n"
ADMIN_OFF = b"CLIENT_ERROR admin commands are not enabled (start with --admin)\r\n"
BIN_NOT_SUPPORTED, BIN_TEMPORARY_FAILURE = 0x83, 0x86


@pytest.fixture
def relays():
    """make(target_port) -> Relay; every relay is closed when the test ends."""
    made = []

    def make(target_port):
        relay = Relay(target_port)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.close()


@pytest.fixture
def pair(server_factory):
    """Two peers A and B (-x each other), links streaming."""
    a, b = mesh(server_factory, 2)
    wait_streaming([a, b])
    return a, b


def replicated(ca, b, key, nodes=()):
    """A's (flags, cas, value) of key (via client ca), once B shows exactly it."""
    want = read_item(ca, key)
    wait_item(b, key, want, nodes=nodes or (b,))
    return want


def durable_flags(tmp_path, name):
    return ["--storage", "durable", "--data-dir", str(tmp_path / f"data-{name}"), "--fsync", "everysec"]


# ======================================================================================
# 1. every mutation type replicates with value, flags and CAS


def scenario_set(ca, cb, a, b):
    set_ok(ca, b"k", b"hello", flags=5)
    assert replicated(ca, b, b"k")[::2] == (5, b"hello")
    set_ok(ca, b"k", b"again", flags=6, exptime=1000)  # overwrite, with an expiry
    assert replicated(ca, b, b"k")[::2] == (6, b"again")
    ta, tb = ttl(ca, b"k"), ttl(cb, b"k")
    assert 990 <= tb <= 1000 and abs(ta - tb) <= 2, (ta, tb)
    # Edges: a 250-byte key, the largest flags, an empty value, a 700 KB binary value.
    long_key = b"L" * 250
    set_ok(ca, long_key, b"long key", flags=4294967295)
    assert replicated(ca, b, long_key)[::2] == (4294967295, b"long key")
    set_ok(ca, b"empty", b"")
    assert replicated(ca, b, b"empty")[::2] == (0, b"")
    big = random.Random("big").randbytes(700 * 1024)
    set_ok(ca, b"big", big, flags=1)
    assert replicated(ca, b, b"big")[::2] == (1, big)


def scenario_add_replace(ca, cb, a, b):
    ca.assert_reply(b"add k 1 0 3\r\nnew\r\n", b"STORED\r\n")
    assert replicated(ca, b, b"k")[::2] == (1, b"new")
    ca.assert_reply(b"add k 1 0 3\r\ntwo\r\n", b"NOT_STORED\r\n")
    ca.assert_reply(b"replace k 2 0 8\r\nreplaced\r\n", b"STORED\r\n")
    assert replicated(ca, b, b"k")[::2] == (2, b"replaced")
    ca.assert_reply(b"replace nothere 0 0 1\r\nx\r\n", b"NOT_STORED\r\n")
    assert read_item(cb, b"nothere") is None


def scenario_append_prepend(ca, cb, a, b):
    set_ok(ca, b"k", b"middle", flags=3)
    ca.assert_reply(b"append k 0 0 4\r\n-end\r\n", b"STORED\r\n")
    assert replicated(ca, b, b"k")[::2] == (3, b"middle-end")
    ca.assert_reply(b"prepend k 0 0 6\r\nstart-\r\n", b"STORED\r\n")
    assert replicated(ca, b, b"k")[::2] == (3, b"start-middle-end")


def scenario_cas(ca, cb, a, b):
    set_ok(ca, b"k", b"v1")
    flags, cas, _ = replicated(ca, b, b"k")
    ca.assert_reply(b"cas k 4 0 2 %d\r\nv2\r\n" % cas, b"STORED\r\n")
    flags, cas2, value = replicated(ca, b, b"k")
    assert (flags, value) == (4, b"v2") and cas2 != cas
    ca.assert_reply(b"cas k 4 0 2 %d\r\nv3\r\n" % cas, b"EXISTS\r\n")  # stale
    assert read_item(cb, b"k") == (4, cas2, b"v2")


def scenario_delete(ca, cb, a, b):
    set_ok(ca, b"k", b"doomed")
    replicated(ca, b, b"k")
    ca.assert_reply(b"delete k\r\n", b"DELETED\r\n")
    wait_item(b, b"k", None)
    ca.assert_reply(b"delete k\r\n", b"NOT_FOUND\r\n")
    assert a.counter("repl_tombstones") >= 1
    wait_until(lambda: b.counter("repl_tombstones") >= 1, message="a tombstone on B")


def scenario_incr_decr(ca, cb, a, b):
    set_ok(ca, b"n", b"10", flags=8)
    ca.assert_reply(b"incr n 5\r\n", b"15\r\n")
    assert replicated(ca, b, b"n")[::2] == (8, b"15")
    ca.assert_reply(b"decr n 3\r\n", b"12\r\n")
    assert replicated(ca, b, b"n")[::2] == (8, b"12")
    ca.assert_reply(b"incr n 18446744073709551603\r\n", b"18446744073709551615\r\n")
    assert replicated(ca, b, b"n")[::2] == (8, b"18446744073709551615")


def scenario_touch(ca, cb, a, b):
    set_ok(ca, b"k", b"v", flags=2)
    _, cas0, _ = replicated(ca, b, b"k")
    ca.assert_reply(b"touch k 500\r\n", b"TOUCHED\r\n")
    flags, cas1, value = replicated(ca, b, b"k")
    # Spec: with replication on, touch gives the item a new CAS (the version).
    assert (flags, value) == (2, b"v") and cas1 != cas0
    ta, tb = ttl(ca, b"k"), ttl(cb, b"k")
    assert 490 <= tb <= 500 and abs(ta - tb) <= 2, (ta, tb)


def scenario_gat_gats(ca, cb, a, b):
    set_ok(ca, b"k", b"val", flags=9)
    _, cas0, _ = replicated(ca, b, b"k")
    ca.assert_reply(b"gat 600 k\r\n", b"VALUE k 9 3\r\nval\r\nEND\r\n")
    _, cas1, _ = replicated(ca, b, b"k")
    assert cas1 != cas0
    tb = ttl(cb, b"k")
    assert 590 <= tb <= 600, tb
    ca.send(b"gats 700 k\r\n")
    line = ca.read_line()
    assert line.startswith(b"VALUE k 9 3 "), line
    cas2 = int(line.split()[4])
    assert ca.read_exact(len(b"val\r\nEND\r\n")) == b"val\r\nEND\r\n"
    assert replicated(ca, b, b"k") == (9, cas2, b"val")
    tb = ttl(cb, b"k")
    assert 690 <= tb <= 700, tb


def scenario_flush_all(ca, cb, a, b):
    for key in (b"f1", b"f2", b"f3"):
        set_ok(ca, key, b"x" + key)
        replicated(ca, b, key)
    ca.assert_reply(b"flush_all\r\n", b"OK\r\n")
    for key in (b"f1", b"f2", b"f3"):
        wait_item(b, key, None)
    set_ok(ca, b"after", b"kept")  # newer than the flush: stays everywhere
    assert replicated(ca, b, b"after")[2] == b"kept"


def scenario_flush_all_delay(ca, cb, a, b):
    set_ok(ca, b"old", b"goes")
    replicated(ca, b, b"old")
    ca.assert_reply(b"flush_all 4\r\n", b"OK\r\n")
    # Not yet: the flush takes effect 4 s later, on both nodes.
    assert read_item(ca, b"old") is not None
    assert read_item(cb, b"old") is not None
    wait_item(b, b"old", None)
    assert read_item(ca, b"old") is None
    set_ok(ca, b"new", b"stays")
    assert replicated(ca, b, b"new")[2] == b"stays"


def scenario_meta(ca, cb, a, b):
    assert meta(ca, b"ms mk 3 F7\r\nabc\r\n") == b"HD\r\n"
    assert replicated(ca, b, b"mk")[::2] == (7, b"abc")
    assert meta(ca, b"ms mk 3 MA\r\ndef\r\n") == b"HD\r\n"  # append mode
    assert replicated(ca, b, b"mk")[::2] == (7, b"abcdef")
    assert meta(ca, b"mg mk T300\r\n") == b"HD\r\n"  # touch through mg: B gets the new expiry and CAS
    replicated(ca, b, b"mk")
    tb = ttl(cb, b"mk")
    assert 290 <= tb <= 300, tb
    assert meta(ca, b"ms cnt 2\r\n10\r\n") == b"HD\r\n"
    assert meta(ca, b"ma cnt\r\n") == b"HD\r\n"
    assert meta(ca, b"ma cnt MD D4\r\n") == b"HD\r\n"
    assert replicated(ca, b, b"cnt")[2] == b"7 "  # decr keeps the length, as memcached's does
    assert meta(ca, b"ma fresh N0 J41 v\r\n") == b"VA 2\r\n41\r\n"  # auto-created
    assert replicated(ca, b, b"fresh")[2] == b"41"
    assert meta(ca, b"md mk\r\n") == b"HD\r\n"
    wait_item(b, b"mk", None)


def scenario_binary(ca, cb, a, b):
    opcode, status, extras, key, value, opaque, cas = bin_call(
        ca, bin_request(B_SET, b"bk", bin_store_extras(9, 0), b"binval", opaque=7))
    assert (opcode, status, extras, key, value, opaque) == (B_SET, 0, b"", b"", b"", 7)
    assert cas != 0
    assert wait_item(b, b"bk", (9, cas, b"binval")) == (9, cas, b"binval")
    opcode, status, extras, key, value, opaque, _ = bin_call(ca, bin_request(B_DELETE, b"bk", opaque=8))
    assert (opcode, status, extras, key, value, opaque) == (B_DELETE, 0, b"", b"", b"", 8)
    wait_item(b, b"bk", None)


def scenario_gets_on_a_cas_on_b(ca, cb, a, b):
    set_ok(ca, b"k", b"from-a", flags=1)
    _, cas, _ = replicated(ca, b, b"k")
    cb.assert_reply(b"cas k 2 0 6 %d\r\nfrom-b\r\n" % cas, b"STORED\r\n")
    want = read_item(cb, b"k")
    assert want[::2] == (2, b"from-b")
    assert wait_item(a, b"k", want) == want  # and back to A, with B's new CAS


SCENARIOS = [scenario_set, scenario_add_replace, scenario_append_prepend, scenario_cas, scenario_delete,
             scenario_incr_decr, scenario_touch, scenario_gat_gats, scenario_flush_all, scenario_flush_all_delay,
             scenario_meta, scenario_binary, scenario_gets_on_a_cas_on_b]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__[len("scenario_"):] for s in SCENARIOS])
def test_mutation_replicates_with_value_flags_and_cas(pair, scenario):
    a, b = pair
    with a.connect() as ca, b.connect() as cb:
        scenario(ca, cb, a, b)


# ======================================================================================
# 2. three nodes, concurrent conflicting writes converge


def test_three_node_mesh_converges_under_conflicting_writes(server_factory):
    nodes = mesh(server_factory, 3)
    wait_streaming(nodes)
    keys = [b"c%d" % i for i in range(50)]
    allowed = {b"STORED\r\n", b"NOT_STORED\r\n", b"DELETED\r\n", b"NOT_FOUND\r\n",
               b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"}
    errors = []
    done_ops = [0, 0, 0]

    def writer(index):
        rng = random.Random(f"mesh-{index}")
        deadline = time.monotonic() + 20
        try:
            with nodes[index].connect() as c:
                for i in range(1500):  # bounded in count and time
                    if time.monotonic() > deadline:
                        break
                    key = rng.choice(keys)
                    op = rng.random()
                    if op < 0.4:
                        value = (b"%d" % rng.randrange(1000)) if rng.random() < 0.5 else \
                            b"n%d-%d" % (index, i)
                        c.send(b"set %s %d 0 %d\r\n%s\r\n" % (key, rng.randrange(100), len(value), value))
                    elif op < 0.6:
                        c.send(b"delete %s\r\n" % key)
                    elif op < 0.8:
                        c.send(b"incr %s %d\r\n" % (key, rng.randrange(1, 10)))
                    else:
                        c.send(b"append %s 0 0 2\r\n+%d\r\n" % (key, index))
                    line = c.read_line()
                    if line not in allowed and not line[:-2].isdigit():
                        errors.append((index, i, line))
                        return
                    done_ops[index] += 1
        except OSError as e:
            errors.append((index, "socket", repr(e)))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert min(done_ops) > 100, done_ops
    final = wait_converged(nodes, keys, timeout=30)
    assert final, "every key ended deleted: the workload did not exercise anything"
    for n in nodes:
        s = n.stats_repl()
        assert int(s["repl_records_applied"]) > 0, (n.name, s)


# ======================================================================================
# 3. kill -9 one node while the other is written; restart: it has everything


CRASH_VARIANTS = {
    # name: (durable?, extra flags for both, acknowledged writes during the downtime, expected sync)
    "durable-partial": (True, [], 400, "partial"),
    "durable-backlog-64k-full": (True, ["--repl-backlog", "64k"], 1200, "full"),
    "memory-full": (False, [], 400, "full"),
}


@pytest.mark.parametrize("variant", list(CRASH_VARIANTS))
def test_killed_node_catches_up_after_restart(server_factory, tmp_path, variant):
    durable, extra, downtime_writes, expected_sync = CRASH_VARIANTS[variant]
    a, b = mesh(server_factory, 2, extra=extra,
                per_node_extra=(lambda name: durable_flags(tmp_path, name)) if durable else None)
    wait_streaming([a, b])
    acked = {}
    killed = threading.Event()
    stop = threading.Event()
    after_kill = [0]
    errors = []

    def writer():
        rng = random.Random(f"crash-{variant}")
        deadline = time.monotonic() + 60
        try:
            with a.connect() as c:
                for i in range(20000):  # bounded; ends long before
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    # A quarter of the writes overwrite an earlier key.
                    key = b"w%d" % (rng.randrange(i) if i > 10 and i % 4 == 0 else i)
                    value = b"%d:" % i + bytes(rng.randrange(97, 123) for _ in range(rng.randrange(100, 300)))
                    c.send(b"set %s %d 0 %d\r\n%s\r\n" % (key, i % 1000, len(value), value))
                    line = c.read_line()
                    if line != b"STORED\r\n":
                        errors.append((key, line))
                        return
                    acked[key] = (i % 1000, value)
                    if killed.is_set():
                        after_kill[0] += 1
                    else:
                        time.sleep(0.002)  # before the kill: a steady stream over a few seconds
        except OSError as e:
            errors.append(("socket", repr(e)))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        # B must have been streaming for a while before the kill: a durable node
        # saves how far it got about once a second (spec).
        wait_until(lambda: len(acked) >= 300 or errors, timeout=30, message="300 writes on A")
        time.sleep(2.5)
        b.kill()
        killed.set()
        wait_until(lambda: after_kill[0] >= downtime_writes or errors or not thread.is_alive(), timeout=40,
                   message=f"{downtime_writes} writes on A during B's downtime")
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert after_kill[0] >= downtime_writes

    b2 = b.restart(server_factory)
    keys = sorted(acked)
    wait_converged([a, b2], keys, timeout=40)
    for node in (a, b2):
        snap = snapshot(node, keys)
        missing = [k for k in keys if k not in snap]
        wrong = [k for k in keys if k in snap and (snap[k][0], snap[k][2]) != acked[k]]
        assert not missing and not wrong, (node.name, len(missing), missing[:5], len(wrong), wrong[:5])
    s = b2.stats_repl()
    assert s.get("repl_link_0_address") == a.repl_address, s
    if expected_sync == "partial":
        assert (s["repl_partial_syncs"], s["repl_full_syncs"]) == ("1", "0"), \
            {k: v for k, v in s.items() if "sync" in k}
    else:
        assert int(s["repl_full_syncs"]) >= 1, {k: v for k, v in s.items() if "sync" in k}


# ======================================================================================
# 4. links cut and restored through relays; both keep serving, then converge


def pair_through_relays(server_factory, relays):
    """Peers A and B whose links both go through relays the test controls:
    returns (a, b, relay to B, relay to A), links streaming."""
    ra, rb = free_ports(2)
    to_b, to_a = relays(rb), relays(ra)
    a = start_node(server_factory, "A", repl_port=ra, peers=[f"{HOST}:{to_b.port}"])
    b = start_node(server_factory, "B", repl_port=rb, peers=[f"{HOST}:{to_a.port}"])
    wait_streaming([a, b])
    return a, b, to_b, to_a


def test_cut_links_then_restore_converges(server_factory, relays):
    a, b, to_b, to_a = pair_through_relays(server_factory, relays)
    with a.connect() as ca, b.connect() as cb:
        set_ok(ca, b"pre", b"before the cut")
        set_ok(ca, b"doomed", b"deleted during the cut")
        wait_converged([a, b], [b"pre", b"doomed"])
        full_before = {n.name: n.counter("repl_full_syncs") for n in (a, b)}
        partial_before = {n.name: n.counter("repl_partial_syncs") for n in (a, b)}

        to_b.cut()
        to_a.cut()
        wait_until(lambda: a.counter("repl_links_up") == 0 and b.counter("repl_links_up") == 0,
                   message="both links down", nodes=(a, b))
        # Both keep serving while apart.
        a_keys = [b"a%d" % i for i in range(50)]
        b_keys = [b"b%d" % i for i in range(50)]
        for i, key in enumerate(a_keys):
            set_ok(ca, key, b"A-%d" % i, flags=1)
        for i, key in enumerate(b_keys):
            set_ok(cb, key, b"B-%d" % i, flags=2)
        set_ok(ca, b"both", b"written on A")
        set_ok(cb, b"both", b"written on B")
        ca.assert_reply(b"delete doomed\r\n", b"DELETED\r\n")
        ca.assert_reply(b"incr nothing 1\r\n", b"NOT_FOUND\r\n")
        assert read_items(cb, a_keys) == {} and read_items(ca, b_keys) == {}, "the relays did not cut the links"
        assert read_item(cb, b"doomed") is not None

        to_b.restore()
        to_a.restore()
        wait_streaming([a, b])
        keys = a_keys + b_keys + [b"pre", b"doomed", b"both"]
        final = wait_converged([a, b], keys)
        for i, key in enumerate(a_keys):
            assert final[key][::2] == (1, b"A-%d" % i)
        for i, key in enumerate(b_keys):
            assert final[key][::2] == (2, b"B-%d" % i)
        assert final[b"pre"][2] == b"before the cut"
        assert b"doomed" not in final, "the delete on A (a tombstone) lost to B's older copy"
        assert final[b"both"][2] in (b"written on A", b"written on B")
    # Both nodes kept their backlogs: the reconnection is a partial sync, not a full one.
    for n in (a, b):
        assert n.counter("repl_full_syncs") == full_before[n.name], n.name
        assert n.counter("repl_partial_syncs") > partial_before[n.name], n.name


def test_flush_all_during_a_partition_removes_only_older_items(server_factory, relays):
    a, b, to_b, to_a = pair_through_relays(server_factory, relays)
    with a.connect() as ca, b.connect() as cb:
        set_ok(ca, b"old-a", b"before the flush")
        set_ok(cb, b"old-b", b"before the flush")
        wait_converged([a, b], [b"old-a", b"old-b"])
        to_b.cut()
        to_a.cut()
        wait_until(lambda: a.counter("repl_links_up") == 0 and b.counter("repl_links_up") == 0,
                   message="both links down", nodes=(a, b))
        cb.assert_reply(b"flush_all\r\n", b"OK\r\n")  # on B, while apart
        time.sleep(1.1)  # the next writes are clearly later than the flush, whatever its clock granularity
        set_ok(ca, b"new-a", b"after the flush")
        assert read_item(ca, b"old-a") is not None  # A has not heard of the flush yet
        to_b.restore()
        to_a.restore()
        wait_streaming([a, b])
        final = wait_converged([a, b], [b"old-a", b"old-b", b"new-a"])
    assert sorted(final) == [b"new-a"], final


def test_silent_link_is_dropped_after_repl_timeout_and_retried(server_factory, relays):
    ra, rb = free_ports(2)
    to_b = relays(rb)
    a = start_node(server_factory, "A", repl_port=ra, peers=[f"{HOST}:{to_b.port}"], extra=["--repl-timeout", "2"])
    b = start_node(server_factory, "B", repl_port=rb, peers=[f"{HOST}:{ra}"], extra=["--repl-timeout", "2"])
    wait_streaming([a, b])
    to_b.stall()  # A's link to B: open, but nothing gets through any more (no keepalives either)
    wait_until(lambda: a.counter("repl_links_up") == 0, message="A dropping its silent link", nodes=(a, b))
    wait_until(lambda: b.counter("repl_feeds") == 0, message="B dropping its silent feed", nodes=(a, b))
    assert b.counter("repl_links_up") == 1  # the other direction is unaffected
    with b.connect() as cb:
        set_ok(cb, b"during", b"written on B while A's link was silent")
        to_b.restore()
        wait_streaming([a, b])
        wait_converged([a, b], [b"during"])
        assert read_item(cb, b"during") is not None


# ======================================================================================
# 5. read-only replicas, promote, replica-of


TEXT_WRITES = [
    b"set k1 0 0 1\r\nx\r\n",
    b"add newkey 0 0 1\r\nx\r\n",
    b"replace k1 0 0 1\r\nx\r\n",
    b"append k1 0 0 1\r\nx\r\n",
    b"prepend k1 0 0 1\r\nx\r\n",
    b"cas k1 0 0 1 1\r\nx\r\n",
    b"delete k1\r\n",
    b"incr n 1\r\n",
    b"decr n 1\r\n",
    b"touch k1 10\r\n",
    b"gat 10 k1\r\n",
    b"gats 10 k1\r\n",
    b"flush_all\r\n",
    b"flush_all 10\r\n",
]
META_WRITES = [
    b"ms k1 1\r\nx\r\n",
    b"ms k1 1 MA\r\nx\r\n",
    b"md k1\r\n",
    b"ma n\r\n",
    b"mg k1 T10\r\n",
    b"mg k1 v T10\r\n",
    b"mg missing N30\r\n",
]
BINARY_WRITES = [
    (B_SET, b"k1", bin_store_extras(0, 0), b"x"),
    (B_ADD, b"newkey", bin_store_extras(0, 0), b"x"),
    (B_REPLACE, b"k1", bin_store_extras(0, 0), b"x"),
    (B_APPEND, b"k1", b"", b"x"),
    (B_PREPEND, b"k1", b"", b"x"),
    (B_DELETE, b"k1", b"", b""),
    (B_INCR, b"n", bin_incr_extras(1, 0, 0), b""),
    (B_DECR, b"n", bin_incr_extras(1, 0, 0), b""),
    (B_TOUCH, b"k1", b"\x00\x00\x00\x0a", b""),
    (B_GAT, b"k1", b"\x00\x00\x00\x0a", b""),
    (B_FLUSH, b"", b"", b""),
]


def start_primary_and_replica(server_factory, replica_extra=()):
    a = start_node(server_factory, "A")
    r = start_node(server_factory, "R", repl_port=0, replica_of=a, extra=replica_extra)
    wait_streaming([r])
    return a, r


def test_replica_refuses_writes_and_follows_its_primary(server_factory):
    a, r = start_primary_and_replica(server_factory, ["--admin"])
    keys = [b"k1", b"n", b"newkey", b"missing"]
    with a.connect() as ca, r.connect() as cr:
        set_ok(ca, b"k1", b"primary", flags=3)
        set_ok(ca, b"n", b"5")
        wait_converged([a, r], keys)
        before = snapshot(r, keys)
        for request in TEXT_WRITES:
            cr.assert_reply(request, READ_ONLY)
        for request in META_WRITES:
            got = meta(cr, request)
            assert got == READ_ONLY, f"{request!r}: expected {READ_ONLY!r}, got {got!r}"
        with r.connect() as crb:  # a connection's first byte picks its protocol: binary on its own
            for i, (opcode, key, extras, value) in enumerate(BINARY_WRITES):
                got = bin_call(crb, bin_request(opcode, key, extras, value, opaque=100 + i))
                assert got == (opcode, BIN_NOT_SUPPORTED, b"", b"", b"read-only replica", 100 + i, 0), (opcode, got)
        # Nothing changed, and the connection is still in step (data blocks were consumed).
        assert snapshot(r, keys) == before
        cr.assert_reply(b"get k1\r\n", b"VALUE k1 3 7\r\nprimary\r\nEND\r\n")
        assert meta(cr, b"mg k1 v f\r\n") == b"VA 7 f3\r\nprimary\r\n"
        cr.send(b"version\r\n")
        assert cr.read_line().startswith(b"VERSION ")
        stats = cr.stats()
        assert "curr_items" in stats
        s = r.stats_repl()
        assert s["repl_role"] == "replica" and s["repl_link_0_address"] == a.repl_address, s
        sa = a.stats_repl()
        assert sa["repl_role"] == "primary" and sa["repl_feeds"] == "1" and sa["repl_feed_0_role"] == "replica", sa
        # Still follows A.
        set_ok(ca, b"later", b"arrives", flags=4)
        replicated(ca, r, b"later")
        ca.assert_reply(b"delete k1\r\n", b"DELETED\r\n")
        wait_item(r, b"k1", None)

        # Promote: writable, and no longer follows A.
        cr.assert_reply(b"replication promote\r\n", b"OK\r\n")
        set_ok(cr, b"own", b"written on the promoted node")
        cr.assert_reply(b"delete later\r\n", b"DELETED\r\n")
        assert r.stat("repl_role") == "primary"
        set_ok(ca, b"after-promote", b"not followed")
        time.sleep(1.0)
        assert read_item(cr, b"after-promote") is None
        assert read_item(ca, b"own") is None  # A does not pull from it either


def test_replica_admin_commands_need_admin(server_factory):
    a, r = start_primary_and_replica(server_factory)
    with r.connect() as cr:
        cr.assert_reply(b"replication promote\r\n", ADMIN_OFF)
        cr.assert_reply(b"replication replica-of 127.0.0.1:1\r\n", ADMIN_OFF)
        cr.assert_reply(b"set k 0 0 1\r\nx\r\n", READ_ONLY)
    assert r.stat("repl_role") == "replica"


def test_replica_of_admin_command_turns_a_primary_into_a_replica(server_factory):
    a = start_node(server_factory, "A")
    p = start_node(server_factory, "P", extra=["--admin"])
    with a.connect() as ca, p.connect() as cp:
        set_ok(ca, b"from-a", b"A's data", flags=1)
        set_ok(cp, b"mine", b"P's own data")
        cp.assert_reply(b"replication replica-of not-an-address:xyz\r\n", b"CLIENT_ERROR bad address\r\n")
        cp.assert_reply(b"replication replica-of 127.0.0.1:99999\r\n", b"CLIENT_ERROR bad address\r\n")
        cp.assert_reply(b"replication replica-of %s\r\n" % a.repl_address.encode(), b"OK\r\n")
        wait_item(p, b"from-a", read_item(ca, b"from-a"), nodes=(a, p))
        assert read_item(cp, b"mine") is None, "replica-of discards the node's data (full sync)"
        cp.assert_reply(b"set x 0 0 1\r\nx\r\n", READ_ONLY)
        assert p.stat("repl_role") == "replica"
        set_ok(ca, b"more", b"follows")
        replicated(ca, p, b"more")


# ======================================================================================
# 6. secrets; a node pointed at itself


def test_wrong_or_missing_secret_is_refused_right_secret_works(server_factory, tmp_path):
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    s1.write_text("first shared secret\n")  # trailing newline stripped
    s2.write_text("another secret\n")
    ra, rb, rc = free_ports(3)
    a = start_node(server_factory, "A", repl_port=ra, peers=[f"{HOST}:{rb}"], secret_file=s1)
    b = start_node(server_factory, "B", repl_port=rb, peers=[f"{HOST}:{ra}"], secret_file=s2)
    c = start_node(server_factory, "C", repl_port=rc, peers=[f"{HOST}:{ra}"], secret_file=s1)
    d = start_node(server_factory, "D", peers=[f"{HOST}:{ra}"])  # no secret at all
    with a.connect() as ca, b.connect() as cb:
        set_ok(ca, b"from-a", b"secret data of A")
        set_ok(cb, b"from-b", b"secret data of B")
        replicated(ca, c, b"from-a", nodes=(a, c))  # right secret: C pulls from A
        wait_until(lambda: a.counter("repl_auth_failures") >= 1, message="an auth failure on A", nodes=(a, b))
        wait_until(lambda: b.counter("repl_auth_failures") >= 1, message="an auth failure on B", nodes=(a, b))
        wait_until(lambda: d.counter("repl_links_refused") >= 1 or a.counter("repl_auth_failures") >= 2,
                   message="D refused", nodes=(a, d))
        time.sleep(1.0)  # a wrongly accepted link would have delivered by now
        assert read_item(cb, b"from-a") is None
        assert read_item(ca, b"from-b") is None
        with d.connect() as cd:
            assert read_item(cd, b"from-a") is None
    for node in (a, b, d):
        s = node.stats_repl()
        assert s["repl_links_up"] == "0" and s["repl_link_0_state"] != "streaming", (node.name, s)
    sa = a.stats_repl()
    assert sa["repl_feeds"] == "1", sa  # only C
    assert int(sa["repl_links_refused"]) >= 1, sa


def test_node_pointed_at_itself_refuses_the_link_and_serves(server_factory):
    port = free_ports(1)[0]
    node = start_node(server_factory, "S", repl_port=port, peers=[f"{HOST}:{port}"])
    wait_until(lambda: node.counter("repl_links_refused") >= 1, message="the self link refused", nodes=(node,))
    with node.connect() as c:
        set_ok(c, b"k", b"still serving", flags=1)
        c.assert_reply(b"get k\r\n", b"VALUE k 1 13\r\nstill serving\r\nEND\r\n")
    s = node.stats_repl()
    assert s["repl_links_up"] == "0" and s["repl_feeds"] == "0", s


# ======================================================================================
# 7. --repl-sync


def test_repl_sync_acknowledged_writes_are_on_the_peer(server_factory):
    a, b = mesh(server_factory, 2, per_node_extra=lambda name: ["--repl-sync", "1"] if name == "A" else [])
    wait_streaming([a, b])
    wait_until(lambda: a.counter("repl_feeds") == 1, message="B pulling from A", nodes=(a, b))
    rng = random.Random("sync")
    model = {}
    with a.connect() as ca, b.connect() as cb:
        # Each acknowledged write is on B at the moment of the reply (no waiting).
        for i in range(300):
            key = b"s%d" % rng.randrange(60)
            if i % 5 == 4 and key in model:
                ca.assert_reply(b"delete %s\r\n" % key, b"DELETED\r\n")
                del model[key]
            elif i % 5 == 3 and key in model:
                ca.assert_reply(b"append %s 0 0 1\r\n+\r\n" % key, b"STORED\r\n")
                model[key] = (model[key][0], model[key][1] + b"+")
            else:
                value = b"v%d" % i
                set_ok(ca, key, value, flags=i)
                model[key] = (i, value)
            got_b = read_item(cb, key)
            got_a = read_item(ca, key)
            assert got_b == got_a, f"write {i} on {key!r}: A {got_a!r}, B {got_b!r} right after the reply"
            assert (got_b[::2] if got_b else None) == model.get(key), (i, key, got_b)

    # Now kill -9 A in the middle of a stream of writes: every acknowledged one is on B.
    acked = []
    stop = threading.Event()

    def writer():
        try:
            with a.connect() as c:
                for i in range(5000):
                    if stop.is_set():
                        return
                    key, value = b"crash%d" % i, b"value-%d" % i
                    c.send(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
                    if c.read_line() != b"STORED\r\n":
                        return
                    acked.append((key, value))
        except OSError:
            return

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(acked) >= 200 or not thread.is_alive(), timeout=30, message="200 synced writes")
        a.kill()
    finally:
        stop.set()
        thread.join(30)
    assert len(acked) >= 200
    got = snapshot(b, [k for k, _ in acked])
    lost = [k for k, v in acked if k not in got or got[k][2] != v]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes are not on B: {lost[:5]}"


def test_repl_sync_timeout_reply_and_the_write_stays(server_factory):
    a, b = mesh(server_factory, 2, per_node_extra=lambda name: (
        ["--repl-sync", "1", "--repl-sync-timeout", "200"] if name == "A" else []))
    wait_streaming([a, b])
    b.stop()
    wait_until(lambda: a.counter("repl_feeds") == 0, message="B's feed gone from A", nodes=(a,))
    timeout_line = b"SERVER_ERROR replication timeout: 0 of 1 acknowledged\r\n"
    with a.connect() as ca:
        ca.assert_reply(b"set t 5 0 3\r\nval\r\n", timeout_line)
        assert read_item(ca, b"t")[::2] == (5, b"val")
        assert meta(ca, b"ms mt 2 F6\r\nmv\r\n") == timeout_line
        assert read_item(ca, b"mt")[::2] == (6, b"mv")
        with a.connect() as cab:  # binary on its own connection
            got = bin_call(cab, bin_request(B_SET, b"bt", bin_store_extras(7, 0), b"bv", opaque=3))
        # The spec's "that text as body" read like the read-only reply's body: without the
        # text protocol's "SERVER_ERROR " prefix (memcached's binary error bodies have none).
        assert got[:6] == (B_SET, BIN_TEMPORARY_FAILURE, b"", b"", b"replication timeout: 0 of 1 acknowledged", 3), got
        assert read_item(ca, b"bt")[::2] == (7, b"bv")
        ca.assert_reply(b"get t\r\n", b"VALUE t 5 3\r\nval\r\nEND\r\n")  # reads do not wait
        assert a.counter("repl_sync_timeouts") == 3
        # The writes still replicate once B is back.
        b2 = b.restart(server_factory)
        want = snapshot(a, [b"t", b"mt", b"bt"])
        wait_converged([a, b2], [b"t", b"mt", b"bt"])
        assert snapshot(b2, [b"t", b"mt", b"bt"]) == want


def test_repl_sync_without_any_peer_is_allowed_and_times_out(server_factory):
    node = start_node(server_factory, "A", extra=["--repl-sync", "1", "--repl-sync-timeout", "100"])
    with node.connect() as c:
        c.assert_reply(b"set k 0 0 1\r\nx\r\n", b"SERVER_ERROR replication timeout: 0 of 1 acknowledged\r\n")
        c.assert_reply(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n")


# ======================================================================================
# 8. garbage and silence on the replication port


def test_garbage_on_the_repl_port_is_dropped(server_factory):
    a, b = mesh(server_factory, 2, extra=["--repl-timeout", "4"])
    wait_streaming([a, b])
    rng = random.Random("garbage")
    payloads = [
        bytes(rng.randrange(256) for _ in range(4096)),
        b"\xff" * 64,
        b"\x00" * 64,
        b"GET / HTTP/1.0\r\n\r\n",
        b"set evil 0 0 4\r\nevil\r\n",
        b"",  # connects and says nothing: dropped after --repl-timeout
    ]
    conns = []
    for payload in payloads:
        c = Client((HOST, a.repl_port), timeout=5)
        if payload:
            try:
                c.send(payload)
            except OSError:
                pass
        conns.append(c)
    try:
        for payload, c in zip(payloads, conns):
            assert c.is_closed(timeout=20), f"A kept a connection that sent {payload[:20]!r}"
    finally:
        for c in conns:
            c.close()
    assert a.alive()
    with a.connect() as ca:
        set_ok(ca, b"k", b"still serving")
        ca.assert_reply(b"get k\r\n", b"VALUE k 0 13\r\nstill serving\r\nEND\r\n")
        assert read_item(ca, b"evil") is None
        replicated(ca, b, b"k", nodes=(a, b))  # and still replicating to B
    with b.connect() as cb:
        assert read_item(cb, b"evil") is None
    wait_until(lambda: a.counter("repl_links_up") == 1 and a.counter("repl_feeds") == 1,
               message="A's link and feed up", nodes=(a, b))


# ======================================================================================
# 9. startup errors; stats repl


def _startup_cases(tmp_path):
    empty = tmp_path / "empty-secret"
    empty.write_text("")
    newline = tmp_path / "newline-secret"
    newline.write_text("\n")
    p1, p2 = free_ports(2)
    peer = f"{HOST}:{p1}"
    return {
        "peer-with-C": (["-x", peer, "-C"], ["-x", "--repl-peer", "-C", "--disable-cas"]),
        "replica-of-with-C": (["--replica-of", peer, "-C"], ["--replica-of", "-C", "--disable-cas"]),
        "replica-of-with-peer": (["--replica-of", peer, "-x", f"{HOST}:{p2}"], ["--replica-of", "-x", "--repl-peer"]),
        "secret-missing": (["-x", peer, "--repl-secret-file", str(tmp_path / "no-such-file")],
                           ["--repl-secret-file"]),
        "secret-empty": (["-x", peer, "--repl-secret-file", str(empty)], ["--repl-secret-file"]),
        "secret-only-newline": (["-x", peer, "--repl-secret-file", str(newline)], ["--repl-secret-file"]),
        "backlog-not-a-size": (["-x", peer, "--repl-backlog", "lots"], ["--repl-backlog"]),
        "backlog-below-64k": (["-x", peer, "--repl-backlog", "1k"], ["--repl-backlog"]),
        "repl-port-out-of-range": (["-X", "70000"], ["-X", "--repl-port"]),
        "peer-bad-port": (["-x", f"{HOST}:notaport"], ["-x", "--repl-peer"]),
    }


STARTUP_CASES = ["peer-with-C", "replica-of-with-C", "replica-of-with-peer", "secret-missing", "secret-empty",
                 "secret-only-newline", "backlog-not-a-size", "backlog-below-64k", "repl-port-out-of-range",
                 "peer-bad-port"]


@pytest.mark.parametrize("case", STARTUP_CASES)
def test_startup_error(tmp_path, case):
    bad_args, names = _startup_cases(tmp_path)[case]
    port, repl_port = free_ports(2)
    repl = [] if "-X" in bad_args else ["-X", str(repl_port)]
    cmd = [str(MEMKEEP_BIN), "-p", str(port), "-l", HOST, *repl, *bad_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"memkeep did not exit: {cmd}")
    lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    assert proc.returncode == 64, (proc.returncode, lines)
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert any(name in lines[0] for name in names), lines[0]
    assert not is_listening(port) and not is_listening(repl_port)


def test_peer_without_repl_port_listens_on_11212(server_factory):
    if is_listening(11212):
        pytest.skip("127.0.0.1:11212 is in use on this machine")
    node = start_node(server_factory, "A", repl_port=0, peers=[f"{HOST}:{free_ports(1)[0]}"])
    wait_until(lambda: is_listening(11212), message="a replication listener on 11212", nodes=(node,))
    node.stop()
    assert not is_listening(11212)


def test_stats_repl_without_replication(server_factory):
    server = server_factory([])
    with server.connect() as c:
        c.assert_reply(b"stats repl\r\n", b"STAT repl_role none\r\nEND\r\n")


GENERAL_LINES = [
    "repl_role", "repl_node_id", "repl_log_start", "repl_log_end", "repl_backlog_size", "repl_records_logged",
    "repl_records_received", "repl_bytes_received", "repl_records_applied", "repl_conflicts", "repl_duplicates",
    "repl_records_sent", "repl_bytes_sent", "repl_full_syncs", "repl_partial_syncs", "repl_full_syncs_served",
    "repl_partial_syncs_served", "repl_links_up", "repl_feeds", "repl_links_refused", "repl_auth_failures",
    "repl_sync_timeouts", "repl_tombstones",
]


def test_stats_repl_lines(server_factory):
    a, b = mesh(server_factory, 2, per_node_extra=lambda name: ["--repl-backlog", "64k"] if name == "B" else [])
    wait_streaming([a, b])
    with a.connect() as ca:
        set_ok(ca, b"k", b"v")
        replicated(ca, b, b"k")
        # A raw read: every line is `STAT name value`.
        ca.send(b"stats repl\r\n")
        raw = ca.read_until(b"END\r\n")
    for line in raw.split(b"\r\n")[:-2]:
        assert line.startswith(b"STAT ") and len(line.split(b" ")) == 3, line
    sa, sb = a.stats_repl(), b.stats_repl()
    for s, name in ((sa, "A"), (sb, "B")):
        missing = [n for n in GENERAL_LINES if n not in s]
        assert not missing, (name, missing)
        assert s["repl_role"] == "primary"
        assert len(s["repl_node_id"]) == 16 and all(ch in "0123456789abcdefABCDEF" for ch in s["repl_node_id"])
        assert s["repl_links_up"] == "1" and s["repl_feeds"] == "1"
        assert s["repl_link_0_state"] == "streaming"
        assert int(s["repl_link_0_last_receive_ms"]) >= 0 and int(s["repl_link_0_applied_offset"]) >= 0
        assert s["repl_feed_0_role"] == "peer"
        assert int(s["repl_feed_0_lag_bytes"]) >= 0 and int(s["repl_feed_0_acked_offset"]) >= 0
        assert int(s["repl_log_end"]) >= int(s["repl_log_start"]) >= 0
    assert sa["repl_node_id"] != sb["repl_node_id"]
    assert sa["repl_link_0_address"] == b.repl_address and sb["repl_link_0_address"] == a.repl_address
    assert sa["repl_feed_0_node_id"] == sb["repl_node_id"] and sb["repl_feed_0_node_id"] == sa["repl_node_id"]
    assert sa["repl_backlog_size"] == str(64 * 1024 * 1024) and sb["repl_backlog_size"] == str(64 * 1024)
    assert int(sa["repl_records_logged"]) >= 1 and int(sa["repl_records_sent"]) >= 1
    assert int(sb["repl_records_received"]) >= 1 and int(sb["repl_records_applied"]) >= 1
    assert int(sb["repl_records_logged"]) >= 1  # applied remote records are logged too
    # The feed's lag drains to 0 once B has applied everything.
    wait_until(lambda: a.stat("repl_feed_0_lag_bytes") == "0", message="A's feed lag 0", nodes=(a, b))
