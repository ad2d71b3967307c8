"""Text protocol retrieval commands: get, gets, gat, gats (and touch).

Every expected byte string here was checked against Debian's memcached 1.6.18
(MEMKEEP_TEST_TARGET=memcached). CAS unique numbers are never asserted
literally: the tests assert relations between them (equal / different).
"""

import socket
import time

import pytest
from pymemcache.client.base import Client as PyMemcacheClient
from text_replies import expect, hit, value


def read_values(c):
    """Read one retrieval reply; return [(key, flags, data, cas or None)]."""
    items = []
    while True:
        line = c.read_line()
        if line == b"END\r\n":
            return items
        parts = line.split()
        assert parts[0] == b"VALUE" and len(parts) in (4, 5), line
        block = c.read_exact(int(parts[3]) + 2)
        assert block.endswith(b"\r\n"), block
        cas = int(parts[4]) if len(parts) == 5 else None
        items.append((parts[1], int(parts[2]), block[:-2], cas))


def gets_cas(c, key):
    c.send(b"gets %s\r\n" % key)
    items = read_values(c)
    assert len(items) == 1 and items[0][0] == key, items
    return items[0][3]


def wait_for_miss(c, key, deadline):
    """Poll `get key` until it misses; False if it still hits at deadline."""
    while True:
        c.send(b"get %s\r\n" % key)
        if not read_values(c):
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.1)


# --- get ---------------------------------------------------------------------

def test_get_missing_key_is_just_end(client):
    expect(client, b"get nothing\r\n", b"END\r\n")


def test_get_many_keys_with_missing_and_repeated_keys(client):
    expect(client, b"set a 1 0 1\r\nA\r\n", b"STORED\r\n")
    expect(client, b"set b 2 0 2\r\nBB\r\n", b"STORED\r\n")
    # Hits come in request order; a missing key is left out; a repeated key
    # is returned each time it is asked for.
    expect(client, b"get a missing b a missing\r\n",
           value(b"a", b"A", 1) + value(b"b", b"BB", 2) + value(b"a", b"A", 1) + b"END\r\n")
    expect(client, b"get missing1 missing2\r\n", b"END\r\n")


def test_get_with_more_keys_than_one_line_of_tokens(client):
    # memcached tokenizes at most 24 tokens at a time; longer gets continue.
    keys = [b"key%d" % i for i in range(60)]
    for i, key in enumerate(keys[::2]):
        expect(client, b"set %s %d 0 %d\r\n%s\r\n" % (key, i, len(key), key), b"STORED\r\n")
    expected = b"".join(value(key, key, i) for i, key in enumerate(keys[::2])) + b"END\r\n"
    expect(client, b"get " + b" ".join(keys) + b"\r\n", expected)


# --- gets and CAS ------------------------------------------------------------

def test_gets_reply_has_a_cas_unique_per_item(client):
    expect(client, b"set a 0 0 1\r\nA\r\n", b"STORED\r\n")
    expect(client, b"set b 3 0 1\r\nB\r\n", b"STORED\r\n")
    client.send(b"gets a missing b a\r\n")
    items = read_values(client)
    assert [(k, f, d) for k, f, d, _ in items] == [(b"a", 0, b"A"), (b"b", 3, b"B"), (b"a", 0, b"A")]
    cas_a, cas_b, cas_a_again = (item[3] for item in items)
    assert cas_a != cas_b
    assert cas_a == cas_a_again
    # The reply is exactly "VALUE <key> <flags> <bytes> <cas>".
    expect(client, b"gets b\r\n", b"VALUE b 3 1 %d\r\nB\r\nEND\r\n" % cas_b)


def test_cas_unique_changes_on_every_modification_and_only_then(client):
    seen = []

    def cas_now():
        return gets_cas(client, b"k")

    def modified(request, reply):
        expect(client, request, reply)
        unique = cas_now()
        assert unique not in seen, f"{request!r} reused CAS {unique} (seen {seen})"
        seen.append(unique)

    def unchanged(request, reply):
        expect(client, request, reply)
        assert cas_now() == seen[-1], f"{request!r} changed the CAS"

    modified(b"set k 0 0 1\r\n1\r\n", b"STORED\r\n")
    modified(b"set k 0 0 1\r\n1\r\n", b"STORED\r\n")  # same value: still a new version
    modified(b"replace k 0 0 1\r\n2\r\n", b"STORED\r\n")
    modified(b"append k 0 0 1\r\n0\r\n", b"STORED\r\n")
    modified(b"prepend k 0 0 1\r\n1\r\n", b"STORED\r\n")
    modified(b"incr k 1\r\n", b"121\r\n")
    modified(b"decr k 1\r\n", b"120\r\n")
    modified(b"incr k 0\r\n", b"120\r\n")
    modified(b"cas k 0 0 1 %d\r\n5\r\n" % seen[-1], b"STORED\r\n")

    unchanged(b"get k\r\n", hit(b"k", b"5"))
    unchanged(b"touch k 100\r\n", b"TOUCHED\r\n")
    unchanged(b"gat 100 k\r\n", hit(b"k", b"5"))
    unchanged(b"add k 0 0 1\r\n9\r\n", b"NOT_STORED\r\n")
    unchanged(b"cas k 0 0 1 %d\r\n9\r\n" % (seen[-1] + 12345), b"EXISTS\r\n")

    # A different key never shares a CAS with any version of k.
    expect(client, b"set other 0 0 1\r\nx\r\n", b"STORED\r\n")
    assert gets_cas(client, b"other") not in seen


def test_cas_unique_of_a_deleted_and_recreated_key_is_new(client):
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    old = gets_cas(client, b"k")
    expect(client, b"delete k\r\n", b"DELETED\r\n")
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    assert gets_cas(client, b"k") != old
    expect(client, b"cas k 0 0 1 %d\r\ny\r\n" % old, b"EXISTS\r\n")


# --- gat / gats ----------------------------------------------------------------

def test_gat_and_gats_reply_like_get_and_gets(client):
    expect(client, b"set a 5 0 2\r\nAA\r\n", b"STORED\r\n")
    expect(client, b"set b 0 0 1\r\nB\r\n", b"STORED\r\n")
    expect(client, b"gat 100 a\r\n", hit(b"a", b"AA", 5))
    expect(client, b"gat 100 a missing b a\r\n",
           value(b"a", b"AA", 5) + value(b"b", b"B") + value(b"a", b"AA", 5) + b"END\r\n")
    expect(client, b"gat 100 missing\r\n", b"END\r\n")
    cas_a, cas_b = gets_cas(client, b"a"), gets_cas(client, b"b")
    expect(client, b"gats 100 a b\r\n",
           b"VALUE a 5 2 %d\r\nAA\r\nVALUE b 0 1 %d\r\nB\r\nEND\r\n" % (cas_a, cas_b))
    expect(client, b"gats 0 missing\r\n", b"END\r\n")


def test_gat_bad_arguments(client):
    expect(client, b"gat\r\n", b"ERROR\r\n")
    expect(client, b"gat abc k\r\n", b"CLIENT_ERROR invalid exptime argument\r\n")
    expect(client, b"gats abc k\r\n", b"CLIENT_ERROR invalid exptime argument\r\n")


def test_gat_with_negative_exptime_returns_the_item_then_expires_it(client):
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"gat -1 k\r\n", hit(b"k", b"x"))
    expect(client, b"get k\r\n", b"END\r\n")


# --- touch ---------------------------------------------------------------------

def test_touch_replies(client):
    expect(client, b"touch k 10\r\n", b"NOT_FOUND\r\n")
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"touch k 10\r\n", b"TOUCHED\r\n")
    expect(client, b"touch k 10 noreply\r\ntouch missing 10 noreply\r\nget k\r\n", hit(b"k", b"x"))
    expect(client, b"touch k\r\n", b"ERROR\r\n")
    expect(client, b"touch k -1\r\n", b"TOUCHED\r\n")
    expect(client, b"get k\r\n", b"END\r\n")


# --- TTL updates by gat, gats and touch ------------------------------------------

def test_gat_gats_and_touch_update_the_ttl(client):
    """One wait for all cases: TTLs of 2 s extended to 100 s, TTLs of 0 cut to 2 s."""
    t0 = time.time()
    for key in (b"gat_ext", b"gats_ext", b"touch_ext"):
        expect(client, b"set %s 0 2 1\r\nx\r\n" % key, b"STORED\r\n")
    for key in (b"gat_cut", b"gats_cut", b"touch_cut"):
        expect(client, b"set %s 0 0 1\r\nx\r\n" % key, b"STORED\r\n")

    expect(client, b"gat 100 gat_ext\r\n", hit(b"gat_ext", b"x"))
    client.send(b"gats 100 gats_ext\r\n")
    assert [item[:3] for item in read_values(client)] == [(b"gats_ext", 0, b"x")]
    expect(client, b"touch touch_ext 100\r\n", b"TOUCHED\r\n")

    expect(client, b"gat 2 gat_cut\r\n", hit(b"gat_cut", b"x"))
    client.send(b"gats 2 gats_cut\r\n")
    assert [item[:3] for item in read_values(client)] == [(b"gats_cut", 0, b"x")]
    expect(client, b"touch touch_cut 2\r\n", b"TOUCHED\r\n")

    for key in (b"gat_cut", b"gats_cut", b"touch_cut"):
        assert wait_for_miss(client, key, t0 + 2 + 3), f"{key!r}: the TTL of 2 s did not apply"
    # By now the original TTL of 2 s is well past.
    time.sleep(max(0.0, t0 + 4.5 - time.time()))
    expect(client, b"get gat_ext gats_ext touch_ext\r\n",
           value(b"gat_ext", b"x") + value(b"gats_ext", b"x") + value(b"touch_ext", b"x") + b"END\r\n")


# --- a real client library -------------------------------------------------------

def test_pymemcache_round_trip(server):
    mc = PyMemcacheClient(("127.0.0.1", server.port), connect_timeout=5, timeout=5, default_noreply=False)
    try:
        assert mc.set("a", b"1") is True
        mc.set_many({"b": b"2", "c": b"3"})
        assert mc.get_many(["a", "b", "c", "missing"]) == {"a": b"1", "b": b"2", "c": b"3"}
        data, unique = mc.gets("a")
        assert data == b"1"
        assert mc.cas("a", b"10", unique) is True
        assert mc.cas("a", b"11", unique) is False
        assert mc.get("a") == b"10"
        assert mc.incr("c", 5) == 8
        assert mc.add("a", b"x") is False
        assert mc.delete("b") is True
        assert mc.get("b") is None
    finally:
        mc.close()
