"""Text protocol: delete, incr/decr, flush_all, version, verbosity, quit,
unknown commands and stats.

Every expected byte string here was checked against Debian's memcached 1.6.18
(MEMKEEP_TEST_TARGET=memcached).
"""

import re
import socket
import time

import pytest
from text_replies import expect, hit, value


def wait_for_miss(c, key, deadline):
    """Poll `get key` until it misses; False if it still hits at deadline."""
    while True:
        c.send(b"get %s\r\n" % key)
        if c.read_line() == b"END\r\n":
            return True
        c.read_until(b"END\r\n")
        if time.time() > deadline:
            return False
        time.sleep(0.1)


def numbers(stats, *names):
    return {name: int(stats[name]) for name in names}


STAT_LINE = rb"STAT [^ \r\n]+ [^\r\n]*\r\n"


def assert_stats_shape(raw):
    """A stats reply: zero or more `STAT <name> <value>` lines, then END."""
    assert re.fullmatch(rb"(" + STAT_LINE + rb")*END\r\n", raw), raw[:500]


# --- delete --------------------------------------------------------------------

def test_delete(client):
    expect(client, b"delete k\r\n", b"NOT_FOUND\r\n")
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"delete k\r\n", b"DELETED\r\n")
    expect(client, b"get k\r\n", b"END\r\n")
    expect(client, b"delete k\r\n", b"NOT_FOUND\r\n")


def test_delete_noreply(client):
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"delete k noreply\r\ndelete k noreply\r\nget k\r\n", b"END\r\n")


def test_delete_legacy_time_argument(client):
    # A time of 0 is still accepted (old clients send it); any other is refused.
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"delete k 0\r\n", b"DELETED\r\n")
    expect(client, b"delete k 0\r\n", b"NOT_FOUND\r\n")
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"delete k 10\r\n",
           b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"x"))
    expect(client, b"delete k 0 noreply\r\nget k\r\n", b"END\r\n")


# --- incr / decr ---------------------------------------------------------------

def test_incr_decr_missing_key_is_not_found(client):
    expect(client, b"incr k 1\r\n", b"NOT_FOUND\r\n")
    expect(client, b"decr k 1\r\n", b"NOT_FOUND\r\n")
    expect(client, b"get k\r\n", b"END\r\n")


def test_incr_decr_reply_is_the_new_value_and_flags_are_kept(client):
    expect(client, b"set k 5 0 2\r\n10\r\n", b"STORED\r\n")
    expect(client, b"incr k 5\r\n", b"15\r\n")
    expect(client, b"decr k 3\r\n", b"12\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"12", 5))


def test_incr_that_grows_the_number_grows_the_value(client):
    expect(client, b"set k 0 0 2\r\n99\r\n", b"STORED\r\n")
    expect(client, b"incr k 1\r\n", b"100\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"100"))


def test_decr_that_shrinks_the_number_pads_with_spaces(client):
    # memcached rewrites the digits in place and pads with spaces, so the
    # value keeps its length; the padded value still counts as a number.
    expect(client, b"set k 0 0 3\r\n100\r\n", b"STORED\r\n")
    expect(client, b"decr k 95\r\n", b"5\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"5  "))
    expect(client, b"incr k 10\r\n", b"15\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"15 "))


def test_incr_wraps_at_2_pow_64(client):
    expect(client, b"set k 0 0 20\r\n18446744073709551615\r\n", b"STORED\r\n")
    expect(client, b"incr k 1\r\n", b"0\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"0" + b" " * 19))
    expect(client, b"set k 0 0 1\r\n5\r\n", b"STORED\r\n")
    expect(client, b"incr k 18446744073709551615\r\n", b"4\r\n")


def test_decr_floors_at_zero(client):
    expect(client, b"set k 0 0 1\r\n5\r\n", b"STORED\r\n")
    expect(client, b"decr k 100\r\n", b"0\r\n")
    expect(client, b"decr k 1\r\n", b"0\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"0"))


@pytest.mark.parametrize("data", [b"abc", b"12a", b"-1", b"", b"1.5", b"99999999999999999999"])
def test_incr_decr_non_numeric_value(client, data):
    expect(client, b"set k 0 0 %d\r\n%s\r\n" % (len(data), data), b"STORED\r\n")
    for cmd in (b"incr", b"decr"):
        expect(client, cmd + b" k 1\r\n", b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    expect(client, b"get k\r\n", hit(b"k", data))


@pytest.mark.parametrize("delta", [b"abc", b"-1", b"1.5", b"18446744073709551616"])
def test_incr_decr_invalid_delta(client, delta):
    expect(client, b"set k 0 0 1\r\n5\r\n", b"STORED\r\n")
    for cmd in (b"incr", b"decr"):
        expect(client, cmd + b" k " + delta + b"\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"5"))


def test_incr_decr_noreply(client):
    expect(client, b"set k 0 0 2\r\n10\r\n", b"STORED\r\n")
    expect(client, b"incr k 5 noreply\r\ndecr k 2 noreply\r\nincr missing 1 noreply\r\nget k\r\n",
           hit(b"k", b"13"))


def test_incr_decr_too_few_arguments(client):
    expect(client, b"incr\r\n", b"ERROR\r\n")
    expect(client, b"incr k\r\n", b"ERROR\r\n")
    expect(client, b"decr k\r\n", b"ERROR\r\n")


# --- flush_all -----------------------------------------------------------------

def test_flush_all_forms(client):
    for request, reply in ((b"flush_all\r\n", b"OK\r\n"), (b"flush_all 0\r\n", b"OK\r\n")):
        expect(client, b"set a 0 0 1\r\nx\r\nset b 0 0 1\r\ny\r\n", b"STORED\r\nSTORED\r\n")
        expect(client, request, reply)
        expect(client, b"get a b\r\n", b"END\r\n")
    expect(client, b"set a 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"flush_all noreply\r\nget a\r\n", b"END\r\n")
    expect(client, b"flush_all abc\r\n", b"CLIENT_ERROR invalid exptime argument\r\n")


def test_items_set_after_flush_all_are_kept(client):
    expect(client, b"set a 0 0 1\r\nx\r\n", b"STORED\r\n")
    # Same second, same connection: the flush must not hit the new item.
    expect(client, b"flush_all\r\nset b 0 0 1\r\ny\r\nadd a 0 0 1\r\nz\r\n", b"OK\r\nSTORED\r\nSTORED\r\n")
    expect(client, b"get a b\r\n", value(b"a", b"z") + value(b"b", b"y") + b"END\r\n")


def test_flush_all_with_delay(client):
    t0 = time.time()
    expect(client, b"set before 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"flush_all 3\r\n", b"OK\r\n")
    expect(client, b"get before\r\n", hit(b"before", b"x"))
    time.sleep(0.5)
    # Still there before the delay; an item set before the flush time is
    # flushed with the others when the time comes.
    expect(client, b"set during 0 0 1\r\ny\r\n", b"STORED\r\n")
    expect(client, b"get before during\r\n", value(b"before", b"x") + value(b"during", b"y") + b"END\r\n")
    assert wait_for_miss(client, b"before", t0 + 3 + 3), "delayed flush_all did not happen"
    expect(client, b"get during\r\n", b"END\r\n")
    # Items stored after the flush time are kept. (memcached also flushes
    # items stored in the very second the flush happens, so wait one more.)
    time.sleep(1.5)
    expect(client, b"set after 0 0 1\r\nz\r\n", b"STORED\r\n")
    time.sleep(1.1)
    expect(client, b"get after\r\n", hit(b"after", b"z"))


# --- version, verbosity, quit, unknown commands ------------------------------------

def test_version(client):
    client.send(b"version\r\n")
    assert re.fullmatch(rb"VERSION [^\r\n ]+\r\n", client.read_line())


def test_verbosity(client):
    expect(client, b"verbosity 1\r\n", b"OK\r\n")
    expect(client, b"verbosity 1 noreply\r\nverbosity 0\r\n", b"OK\r\n")
    expect(client, b"verbosity\r\n", b"ERROR\r\n")
    expect(client, b"verbosity abc\r\n", b"CLIENT_ERROR bad command line format\r\n")
    expect(client, b"verbosity 0\r\n", b"OK\r\n")


def test_quit_closes_the_connection_after_earlier_replies(client):
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    client.send(b"get k\r\nquit\r\nget k\r\n")
    assert client.is_closed()
    assert client.buf == hit(b"k", b"x")


def test_quit_alone(client):
    client.send(b"quit\r\n")
    assert client.is_closed()
    assert client.buf == b""


@pytest.mark.parametrize("line", [b"bogus", b"bogus with args", b"", b"GET k", b"Get k", b"DELETE k",
                                  b"INCR k 1", b"VERSION", b"FLUSH_ALL", b"STATS"])
def test_unknown_commands_empty_line_and_upper_case_are_errors(client, line):
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, line + b"\r\n", b"ERROR\r\n")
    # The connection stays usable and nothing was changed.
    expect(client, b"get k\r\n", hit(b"k", b"x"))


def test_upper_case_storage_command_is_an_error_and_its_data_a_second_one(client):
    expect(client, b"SET k 0 0 1\r\nx\r\n", b"ERROR\r\nERROR\r\n")
    expect(client, b"get k\r\n", b"END\r\n")


def test_bare_newline_ends_a_command_too(client):
    expect(client, b"set k 0 0 1\nx\r\nget k\n", b"STORED\r\n" + hit(b"k", b"x"))


# --- stats -------------------------------------------------------------------

def test_stats_general_values(server_factory):
    server = server_factory(["-m", "64", "-t", "3"])
    with server.connect() as c:
        c.send(b"stats\r\n")
        raw = c.read_until(b"END\r\n")
        assert_stats_shape(raw)
        stats = c.stats()
        c.send(b"version\r\n")
        version = c.read_line()[len(b"VERSION "):-2].decode()

    assert int(stats["pid"]) == server.pid
    assert 0 <= int(stats["uptime"]) < 60
    assert abs(int(stats["time"]) - time.time()) <= 2
    assert stats["version"] == version
    assert int(stats["limit_maxbytes"]) == 64 * 1024 * 1024
    assert int(stats["threads"]) == 3
    assert int(stats["curr_connections"]) >= 1
    assert int(stats["total_connections"]) >= int(stats["curr_connections"])
    for name in ("cmd_get", "cmd_set", "get_hits", "get_misses", "curr_items", "total_items",
                 "bytes", "evictions", "expired_unfetched"):
        assert int(stats[name]) == 0, name


def test_stats_uptime_and_time_advance(client):
    before = numbers(client.stats(), "uptime", "time")
    time.sleep(2.2)
    after = numbers(client.stats(), "uptime", "time")
    assert 1 <= after["uptime"] - before["uptime"] <= 4
    assert 1 <= after["time"] - before["time"] <= 4
    assert after["time"] - after["uptime"] == pytest.approx(before["time"] - before["uptime"], abs=1)


def test_stats_limit_maxbytes_follows_m(server_factory):
    with server_factory(["-m", "2"]).connect() as c:
        assert int(c.stats()["limit_maxbytes"]) == 2 * 1024 * 1024


def settled_connection_counts(c):
    """Connection counts once they stop moving: the server may not yet have
    seen the close of an earlier connection (the fixture's readiness probe)."""
    last, deadline = None, time.time() + 3
    while True:
        counts = numbers(c.stats(), "curr_connections", "total_connections")
        if counts == last or time.time() > deadline:
            return counts
        last = counts
        time.sleep(0.2)


def test_stats_connection_counts(server):
    with server.connect() as c:
        before = settled_connection_counts(c)
        with server.connect() as c2, server.connect() as c3:
            expect(c2, b"version\r\n", b"VERSION ")
            expect(c3, b"version\r\n", b"VERSION ")
            during = numbers(c.stats(), "curr_connections", "total_connections")
            assert during["curr_connections"] == before["curr_connections"] + 2
            assert during["total_connections"] == before["total_connections"] + 2
        deadline = time.time() + 3
        while numbers(c.stats(), "curr_connections")["curr_connections"] != before["curr_connections"]:
            assert time.time() < deadline, "curr_connections did not drop after two clients closed"
            time.sleep(0.05)
        assert int(c.stats()["total_connections"]) == before["total_connections"] + 2


def test_stats_get_and_set_counters(client):
    names = ("cmd_get", "cmd_set", "get_hits", "get_misses", "curr_items", "total_items", "bytes")
    s0 = numbers(client.stats(), *names)
    expect(client, b"set a 0 0 1\r\nx\r\nset b 0 0 2\r\nyy\r\nset c 0 0 3\r\nzzz\r\n",
           b"STORED\r\nSTORED\r\nSTORED\r\n")
    s1 = numbers(client.stats(), *names)
    assert s1["cmd_set"] == s0["cmd_set"] + 3
    assert s1["curr_items"] == s0["curr_items"] + 3
    assert s1["total_items"] == s0["total_items"] + 3
    assert s1["bytes"] > s0["bytes"]

    expect(client, b"get a\r\nget missing\r\n", hit(b"a", b"x") + b"END\r\n")
    s2 = numbers(client.stats(), *names)
    assert s2["cmd_get"] == s1["cmd_get"] + 2
    assert s2["get_hits"] == s1["get_hits"] + 1
    assert s2["get_misses"] == s1["get_misses"] + 1

    # A multi-get counts every key.
    expect(client, b"get a nope b a\r\n", value(b"a", b"x") + value(b"b", b"yy") + value(b"a", b"x") + b"END\r\n")
    s3 = numbers(client.stats(), *names)
    assert s3["cmd_get"] == s2["cmd_get"] + 4
    assert s3["get_hits"] == s2["get_hits"] + 3
    assert s3["get_misses"] == s2["get_misses"] + 1

    expect(client, b"delete b\r\ndelete missing\r\n", b"DELETED\r\nNOT_FOUND\r\n")
    s4 = numbers(client.stats(), *names)
    assert s4["curr_items"] == s3["curr_items"] - 1
    assert s4["total_items"] == s3["total_items"]
    assert s4["bytes"] < s3["bytes"]

    # Overwriting replaces an item: curr_items stays, total_items grows.
    expect(client, b"set a 0 0 1\r\nw\r\n", b"STORED\r\n")
    s5 = numbers(client.stats(), *names)
    assert s5["curr_items"] == s4["curr_items"]
    assert s5["total_items"] == s4["total_items"] + 1

    expect(client, b"delete a\r\ndelete c\r\n", b"DELETED\r\nDELETED\r\n")
    s6 = numbers(client.stats(), *names)
    assert s6["curr_items"] == s0["curr_items"]
    assert s6["bytes"] == s0["bytes"]


def test_stats_expired_unfetched_counts_items_that_expired_unread(client):
    # Both expire in 1 s; only "fetched" is read before. The server reclaims
    # expired items on its own (memcached's LRU maintainer does it within
    # about two seconds), so the test polls stats without touching the keys:
    # a get of an expired item would count as get_expired in memcached.
    expect(client, b"set unread 0 1 1\r\nx\r\nset fetched 0 1 1\r\nx\r\nget fetched\r\n",
           b"STORED\r\nSTORED\r\n" + hit(b"fetched", b"x"))
    assert int(client.stats()["expired_unfetched"]) == 0
    deadline = time.time() + 6
    while int(client.stats()["expired_unfetched"]) == 0:
        assert time.time() < deadline, "expired_unfetched stayed 0"
        time.sleep(0.1)
    expect(client, b"get unread fetched\r\n", b"END\r\n")
    stats = numbers(client.stats(), "expired_unfetched", "curr_items")
    assert stats == {"expired_unfetched": 1, "curr_items": 0}


def test_stats_threads_follows_t(server_factory):
    with server_factory(["-t", "2"]).connect() as c:
        assert int(c.stats()["threads"]) == 2


def test_stats_reset(client):
    expect(client, b"set a 0 0 1\r\nx\r\nget a\r\nget b\r\n", b"STORED\r\n" + hit(b"a", b"x") + b"END\r\n")
    expect(client, b"stats reset\r\n", b"RESET\r\n")
    stats = numbers(client.stats(), "cmd_get", "cmd_set", "get_hits", "get_misses", "total_items",
                    "curr_items", "bytes")
    assert stats["cmd_get"] == stats["cmd_set"] == stats["get_hits"] == stats["get_misses"] == 0
    assert stats["total_items"] == 0
    # Reset clears counters, not the data.
    assert stats["curr_items"] == 1
    assert stats["bytes"] > 0
    expect(client, b"get a\r\n", hit(b"a", b"x"))


def test_stats_settings(server_factory):
    server = server_factory(["-m", "64", "-t", "3"])
    with server.connect() as c:
        c.send(b"stats settings\r\n")
        assert_stats_shape(c.read_until(b"END\r\n"))
        settings = c.stats(b"settings")
    assert int(settings["maxbytes"]) == 64 * 1024 * 1024
    assert int(settings["tcpport"]) == server.port
    assert int(settings["num_threads"]) == 3
    assert int(settings["item_size_max"]) == 1024 * 1024
    assert settings["evictions"] == "on"
    assert settings["cas_enabled"] == "yes"


def test_stats_settings_reflect_m_i_and_big_m(server_factory):
    with server_factory(["-m", "2", "-I", "512k", "-M"]).connect() as c:
        settings = c.stats(b"settings")
    assert int(settings["maxbytes"]) == 2 * 1024 * 1024
    assert int(settings["item_size_max"]) == 512 * 1024
    assert settings["evictions"] == "off"


def test_stats_items_and_slabs(client):
    for group in (b"items", b"slabs"):
        client.send(b"stats " + group + b"\r\n")
        assert_stats_shape(client.read_until(b"END\r\n"))
    expect(client, b"set a 0 0 1\r\nx\r\nset b 0 0 10\r\n0123456789\r\nset c 0 0 3000\r\n"
           + b"c" * 3000 + b"\r\n", b"STORED\r\nSTORED\r\nSTORED\r\n")

    client.send(b"stats items\r\n")
    raw = client.read_until(b"END\r\n")
    assert_stats_shape(raw)
    items = client.stats(b"items")
    # Every line is items:<class>:<name>; the per-class counts add up.
    assert items and all(re.fullmatch(r"items:\d+:\w+", name) for name in items), items
    number = sum(int(v) for name, v in items.items() if name.endswith(":number"))
    assert number == int(client.stats()["curr_items"]) == 3

    client.send(b"stats slabs\r\n")
    assert_stats_shape(client.read_until(b"END\r\n"))
    slabs = client.stats(b"slabs")
    assert int(slabs["active_slabs"]) >= 1
    assert int(slabs["total_malloced"]) > 0
    assert all(re.fullmatch(r"\d+:\w+", name) for name in slabs if name not in ("active_slabs", "total_malloced"))


def test_stats_sizes_shape(client):
    client.send(b"stats sizes\r\n")
    assert_stats_shape(client.read_until(b"END\r\n"))


def test_stats_conns_lists_this_connection(client):
    client.send(b"stats conns\r\n")
    raw = client.read_until(b"END\r\n")
    assert_stats_shape(raw)
    port = client.sock.getsockname()[1]
    assert re.search(rb"STAT \d+:addr tcp:127\.0\.0\.1:%d\r\n" % port, raw), raw


def test_stats_unknown_group_is_an_error(client):
    expect(client, b"stats nonsense\r\n", b"ERROR\r\n")
    expect(client, b"version\r\n", b"VERSION ")
