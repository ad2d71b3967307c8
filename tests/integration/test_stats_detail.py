"""`stats detail on|off|dump` and -D: per-prefix counts of gets, hits, sets
and deletes, as memcached 1.6.18 keeps them (text and binary).

Every expected byte here was checked against Debian's memcached 1.6.18
(MEMKEEP_TEST_TARGET=memcached), including the order of the dump, which is
memcached's hash-table order.
"""

import pytest

from conftest import TARGET
from test_binary import GET, GETK, STAT, TOUCH, SET, APPEND, DELETE, OK, NOT_FOUND, bset, call, exptime_extras, read_response, request

USAGE = b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"


def dump(client):
    client.send(b"stats detail dump\r\n")
    return client.read_until(b"END\r\n")


@pytest.mark.parametrize("line", [b"stats detail\r\n", b"stats detail xx\r\n", b"stats detail o\r\n",
                                  b"stats detail ON\r\n"])
def test_usage_errors(client, line):
    client.assert_reply(line, USAGE)


def test_off_by_default_and_empty_dump(client):
    client.assert_reply(b"get a:b\r\n", b"END\r\n")
    assert dump(client) == b"END\r\n"
    assert client.stats(b"settings")["detail_enabled"] == "no"
    assert client.stats(b"settings")["stat_key_prefix"] == ":"


def test_counts_classic_commands_only(client):
    client.assert_reply(b"stats detail on\r\n", b"OK\r\n")
    assert client.stats(b"settings")["detail_enabled"] == "yes"
    client.assert_reply(b"set foo:a 0 0 1\r\nx\r\n", b"STORED\r\n")
    # Keys without the delimiter are not counted; every key of a multi-get is.
    client.assert_reply(b"get foo:a foo:b bar:c nokey\r\n", b"VALUE foo:a 0 1\r\nx\r\nEND\r\n")
    client.assert_reply(b"delete foo:zz\r\n", b"NOT_FOUND\r\n")   # a delete that misses counts
    # gat counts as a get; incr, text touch and meta commands do not count.
    client.assert_reply(b"incr foo:a 1\r\n", b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    client.assert_reply(b"touch foo:a 100\r\n", b"TOUCHED\r\n")
    client.assert_reply(b"gat 100 foo:a\r\n", b"VALUE foo:a 0 1\r\nx\r\nEND\r\n")
    client.assert_reply(b"mg foo:a v\r\n", b"VA 1\r\nx\r\n")
    client.assert_reply(b"ms foo:q 1\r\nx\r\n", b"HD\r\n")
    client.assert_reply(b"md foo:q\r\n", b"HD\r\n")
    # A storage command counts when parsed, whether or not it stores.
    client.assert_reply(b"append foo:nothing 0 0 1\r\ny\r\n", b"NOT_STORED\r\n")
    assert dump(client) == (b"PREFIX foo get 3 hit 2 set 2 del 1\r\n"
                            b"PREFIX bar get 1 hit 0 set 0 del 0\r\nEND\r\n")
    # off stops counting but keeps the counts.
    client.assert_reply(b"stats detail off\r\n", b"OK\r\n")
    client.assert_reply(b"get foo:a\r\n", b"VALUE foo:a 0 1\r\nx\r\nEND\r\n")
    assert dump(client) == (b"PREFIX foo get 3 hit 2 set 2 del 1\r\n"
                            b"PREFIX bar get 1 hit 0 set 0 del 0\r\nEND\r\n")


def test_dump_order_is_memcacheds(client):
    # Twelve prefixes spread over memcached's 256 hash buckets (MurmurHash3).
    client.assert_reply(b"stats detail on\r\n", b"OK\r\n")
    prefixes = [b"user", b"session", b"a", b"b", b"cart", b"z9", b"img", b"x", b"feed", b"cfg", b"t", b"q"]
    for p in prefixes:
        client.assert_reply(b"get " + p + b":1\r\n", b"END\r\n")
    got = dump(client)
    lines = got.split(b"\r\n")[:-2]
    assert sorted(line.split(b" ")[1] for line in lines) == sorted(prefixes)
    # The exact order memcached 1.6.18 gives for these prefixes.
    assert [line.split(b" ")[1] for line in lines] == EXPECTED_ORDER, got


EXPECTED_ORDER = [b"b", b"user", b"x", b"img", b"t", b"cfg", b"session", b"cart", b"a", b"feed", b"q", b"z9"]


def test_stats_reset_forgets_the_prefixes(client):
    client.assert_reply(b"stats detail on\r\n", b"OK\r\n")
    client.assert_reply(b"get a:1\r\n", b"END\r\n")
    client.assert_reply(b"stats reset\r\n", b"RESET\r\n")
    assert dump(client) == b"END\r\n"
    client.assert_reply(b"get a:1\r\n", b"END\r\n")   # still on
    assert dump(client) == b"PREFIX a get 1 hit 0 set 0 del 0\r\nEND\r\n"


@pytest.mark.memkeep_only
def test_D_sets_the_delimiter_and_turns_detail_on(server_factory):
    server = server_factory(["-D", "/"])
    with server.connect() as c:
        assert c.stats(b"settings")["stat_key_prefix"] == "/"
        assert c.stats(b"settings")["detail_enabled"] == "yes"
        c.assert_reply(b"set a/1 0 0 1\r\nx\r\n", b"STORED\r\n")
        c.assert_reply(b"set a:1 0 0 1\r\nx\r\n", b"STORED\r\n")
        assert dump(c) == b"PREFIX a get 0 hit 0 set 1 del 0\r\nEND\r\n"


def test_binary_detail(server):
    with server.connect() as c:
        # on: only the terminating empty stat.
        r = call(c, request(STAT, key=b"detail on"))
        assert (r.status, r.key, r.value) == (OK, b"", b"")
        bset(c, b"bin:a", b"v")
        for opcode, key in [(GET, b"bin:a"), (GETK, b"bin:missing")]:
            c.send(request(opcode, key=key))
            read_response(c)
        c.send(request(TOUCH, key=b"bin:a", extras=exptime_extras(100)))   # binary touch counts as a get
        assert read_response(c).status == OK
        c.send(request(APPEND, key=b"bin:none", value=b"x"))
        read_response(c)
        c.send(request(DELETE, key=b"bin:gone"))
        assert read_response(c).status == NOT_FOUND
        c.send(request(STAT, key=b"detail dump"))
        detailed = read_response(c)
        end = read_response(c)
        assert (detailed.key, detailed.value) == (b"detailed", b"PREFIX bin get 3 hit 2 set 2 del 1\r\nEND\r\n")
        assert (end.key, end.value) == (b"", b"")
        r = call(c, request(STAT, key=b"detail bogus"))
        assert r.status == NOT_FOUND
        r = call(c, request(STAT, key=b"detail off"))
        assert (r.status, r.key) == (OK, b"")
