"""Text protocol storage commands: set, add, replace, append, prepend, cas.

Every expected byte string here was checked against Debian's memcached 1.6.18
(MEMKEEP_TEST_TARGET=memcached). CAS unique numbers are never asserted
literally, only through the replies they produce.
"""

import socket
import time

import pytest
from text_replies import expect, hit, value


# Small reply helpers. They are repeated in each test_text_*.py file on
# purpose: those four files are the text-protocol suite and conftest.py is
# shared with other suites.


def gets_cas(c, key):
    """CAS unique of key, read with `gets`."""
    c.send(b"gets %s\r\n" % key)
    header = c.read_line()
    parts = header.split()
    assert parts[0] == b"VALUE" and parts[1] == key and len(parts) == 5, header
    c.read_exact(int(parts[3]) + 2)
    assert c.read_line() == b"END\r\n"
    return int(parts[4])


def wait_for_miss(c, key, deadline):
    """Poll `get key` until it misses; False if it still hits at deadline."""
    while True:
        c.send(b"get %s\r\n" % key)
        line = c.read_line()
        if line == b"END\r\n":
            return True
        c.read_until(b"END\r\n")
        if time.time() > deadline:
            return False
        time.sleep(0.1)


# --- set -------------------------------------------------------------------

def test_set_then_get_returns_exact_bytes(client):
    expect(client, b"set k 0 0 5\r\nhello\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", b"VALUE k 0 5\r\nhello\r\nEND\r\n")


def test_set_overwrites_value_and_flags(client):
    expect(client, b"set k 1 0 3\r\none\r\n", b"STORED\r\n")
    expect(client, b"set k 2 0 5\r\nthree\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"three", 2))


def test_value_may_contain_crlf_and_may_be_empty(client):
    expect(client, b"set crlf 0 0 8\r\na\r\nb\r\n\r\n\r\n", b"STORED\r\n")
    expect(client, b"get crlf\r\n", b"VALUE crlf 0 8\r\na\r\nb\r\n\r\n\r\nEND\r\n")
    expect(client, b"set empty 0 0 0\r\n\r\n", b"STORED\r\n")
    expect(client, b"get empty\r\n", b"VALUE empty 0 0\r\n\r\nEND\r\n")


def test_binary_value_round_trips(client):
    data = bytes(range(256))
    expect(client, b"set bin 0 0 256\r\n" + data + b"\r\n", b"STORED\r\n")
    expect(client, b"get bin\r\n", hit(b"bin", data))


# --- add / replace -----------------------------------------------------------

def test_add_stores_only_when_missing(client):
    expect(client, b"add k 0 0 5\r\nfirst\r\n", b"STORED\r\n")
    expect(client, b"add k 0 0 6\r\nsecond\r\n", b"NOT_STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"first"))


def test_replace_stores_only_when_present(client):
    expect(client, b"replace k 0 0 5\r\nfirst\r\n", b"NOT_STORED\r\n")
    expect(client, b"get k\r\n", b"END\r\n")
    expect(client, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
    expect(client, b"replace k 4 0 3\r\nnew\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"new", 4))


# --- append / prepend --------------------------------------------------------

@pytest.mark.parametrize("cmd", [b"append", b"prepend"])
def test_append_prepend_on_missing_key_is_not_stored(client, cmd):
    expect(client, cmd + b" k 0 0 3\r\nabc\r\n", b"NOT_STORED\r\n")
    expect(client, b"get k\r\n", b"END\r\n")


def test_append_and_prepend_concatenate_and_keep_flags(client):
    expect(client, b"set k 7 0 3\r\nmid\r\n", b"STORED\r\n")
    # The flags and exptime given to append/prepend are ignored.
    expect(client, b"append k 99 0 4\r\n-end\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"mid-end", 7))
    expect(client, b"prepend k 55 0 6\r\nstart-\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"start-mid-end", 7))


def test_append_prepend_may_add_crlf_and_empty_data(client):
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"append k 0 0 2\r\n\r\n\r\n", b"STORED\r\n")
    expect(client, b"prepend k 0 0 0\r\n\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"x\r\n"))


# --- cas ---------------------------------------------------------------------

def test_cas_on_missing_key_is_not_found(client):
    expect(client, b"cas k 0 0 1 12345\r\nx\r\n", b"NOT_FOUND\r\n")
    expect(client, b"get k\r\n", b"END\r\n")


def test_cas_with_current_unique_stores_and_wrong_unique_exists(client):
    expect(client, b"set k 0 0 2\r\nv1\r\n", b"STORED\r\n")
    unique = gets_cas(client, b"k")
    expect(client, b"cas k 0 0 5 %d\r\nwrong\r\n" % (unique + 1000), b"EXISTS\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"v1"))
    # cas stores like set: the new flags apply.
    expect(client, b"cas k 9 0 2 %d\r\nv2\r\n" % unique, b"STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"v2", 9))
    # The same unique cannot be used twice: the item changed.
    expect(client, b"cas k 0 0 2 %d\r\nv3\r\n" % unique, b"EXISTS\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"v2", 9))


def test_cas_after_another_clients_set_is_exists(server):
    with server.connect() as a, server.connect() as b:
        expect(a, b"set k 0 0 4\r\nmine\r\n", b"STORED\r\n")
        unique = gets_cas(a, b"k")
        expect(b, b"set k 0 0 6\r\ntheirs\r\n", b"STORED\r\n")
        expect(a, b"cas k 0 0 4 %d\r\nmine\r\n" % unique, b"EXISTS\r\n")
        expect(a, b"get k\r\n", hit(b"k", b"theirs"))


def test_cas_after_delete_is_not_found(client):
    expect(client, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    unique = gets_cas(client, b"k")
    expect(client, b"delete k\r\n", b"DELETED\r\n")
    expect(client, b"cas k 0 0 1 %d\r\ny\r\n" % unique, b"NOT_FOUND\r\n")
    expect(client, b"get k\r\n", b"END\r\n")


# --- noreply -----------------------------------------------------------------

NOREPLY_CASES = [
    # (setup requests whose replies are checked, noreply request, reply of `get k` after it)
    ([], b"set k 3 0 2 noreply\r\nv1\r\n", hit(b"k", b"v1", 3)),
    ([], b"add k 0 0 2 noreply\r\nv1\r\n", hit(b"k", b"v1")),
    ([(b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")], b"add k 0 0 3 noreply\r\nnew\r\n", hit(b"k", b"old")),
    ([], b"replace k 0 0 3 noreply\r\nnew\r\n", b"END\r\n"),
    ([(b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")], b"replace k 0 0 3 noreply\r\nnew\r\n", hit(b"k", b"new")),
    ([], b"append k 0 0 3 noreply\r\nend\r\n", b"END\r\n"),
    ([(b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")], b"append k 0 0 3 noreply\r\nend\r\n", hit(b"k", b"oldend")),
    ([], b"prepend k 0 0 3 noreply\r\nbeg\r\n", b"END\r\n"),
    ([(b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")], b"prepend k 0 0 3 noreply\r\nbeg\r\n", hit(b"k", b"begold")),
    ([], b"cas k 0 0 3 1 noreply\r\nnew\r\n", b"END\r\n"),
]


@pytest.mark.parametrize("setup,request_,after", NOREPLY_CASES,
                         ids=[case[1].split(b"\r\n")[0].decode() + (" (existing)" if case[0] else "")
                              for case in NOREPLY_CASES])
def test_storage_noreply_sends_nothing(client, setup, request_, after):
    for req, rep in setup:
        expect(client, req, rep)
    # The first bytes after a noreply command are the reply of the next one.
    expect(client, request_ + b"get k\r\n", after)


def test_cas_noreply_sends_nothing_for_stored_and_exists(client):
    expect(client, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
    unique = gets_cas(client, b"k")
    expect(client, b"cas k 0 0 5 %d noreply\r\nwrong\r\nget k\r\n" % (unique + 1000), hit(b"k", b"old"))
    expect(client, b"cas k 0 0 3 %d noreply\r\nnew\r\nget k\r\n" % unique, hit(b"k", b"new"))


def test_many_noreply_sets_then_one_get(client):
    batch = b"".join(b"set k%d %d 0 1 noreply\r\n%d\r\n" % (i, i, i % 10) for i in range(50))
    expect(client, batch + b"get k0 k49\r\n", value(b"k0", b"0", 0) + value(b"k49", b"9", 49) + b"END\r\n")


# --- flags -------------------------------------------------------------------

@pytest.mark.parametrize("flags", [0, 1, 65535, 2**31, 2**32 - 1])
def test_flags_round_trip(client, flags):
    expect(client, b"set k %d 0 1\r\nx\r\n" % flags, b"STORED\r\n")
    expect(client, b"get k\r\n", b"VALUE k %d 1\r\nx\r\nEND\r\n" % flags)


def test_flags_of_2_pow_32_are_stored_modulo_2_pow_32(client):
    # memcached 1.6.18 parses flags as an unsigned long and keeps the low 32
    # bits: 4294967296 is accepted and reads back as 0, 4294967297 as 1.
    expect(client, b"set k 4294967296 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n")
    expect(client, b"set k 4294967297 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", b"VALUE k 1 1\r\nx\r\nEND\r\n")


@pytest.mark.parametrize("flags", [b"-1", b"abc", b"18446744073709551616"])
def test_bad_flags_are_rejected_and_data_line_is_read_as_a_command(client, flags):
    expect(client, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
    # The command line is rejected before the data block is read, so the
    # data line "x" is then parsed as a command of its own: ERROR.
    expect(client, b"set k " + flags + b" 0 1\r\nx\r\n",
           b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"old"))


# --- exptime -----------------------------------------------------------------

def test_negative_exptime_stores_an_already_expired_item(client):
    expect(client, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
    expect(client, b"set k 0 -1 3\r\nneg\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", b"END\r\n")
    # The expired item does not block add.
    expect(client, b"add k 0 0 3\r\nnew\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"new"))


def test_absolute_exptime_in_the_past_expires_at_once(client):
    past = int(time.time()) - 100
    expect(client, b"set k 0 %d 1\r\nx\r\n" % past, b"STORED\r\n")
    expect(client, b"get k\r\n", b"END\r\n")
    expect(client, b"add k 0 0 1\r\ny\r\n", b"STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"y"))


def test_exptime_over_30_days_is_an_absolute_unix_time(client):
    # 2592000 s (30 days) is still relative; one more is the Unix time
    # 2592001, i.e. January 1970: already expired.
    expect(client, b"set rel 0 2592000 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"set abs 0 2592001 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"get rel abs\r\n", value(b"rel", b"x") + b"END\r\n")


def test_relative_absolute_and_inherited_expiry(client):
    """One wait for all timed cases: relative, absolute, never, append/prepend."""
    t0 = time.time()
    absolute = int(t0) + 4
    expect(client, b"set rel 0 3 1\r\nr\r\n", b"STORED\r\n")
    expect(client, b"set abs 0 %d 1\r\na\r\n" % absolute, b"STORED\r\n")
    expect(client, b"set never 0 0 1\r\nn\r\n", b"STORED\r\n")
    # append/prepend keep the item's exptime (3 s) and flags (7); their own
    # exptime (0 = never) and flags are ignored.
    expect(client, b"set app 7 3 1\r\na\r\n", b"STORED\r\n")
    expect(client, b"append app 0 0 1\r\nb\r\n", b"STORED\r\n")
    expect(client, b"set pre 7 3 1\r\na\r\n", b"STORED\r\n")
    expect(client, b"prepend pre 0 0 1\r\nb\r\n", b"STORED\r\n")

    present = (value(b"rel", b"r") + value(b"abs", b"a") + value(b"never", b"n")
               + value(b"app", b"ab", 7) + value(b"pre", b"ba", 7) + b"END\r\n")
    expect(client, b"get rel abs never app pre\r\n", present)
    time.sleep(max(0.0, t0 + 1.0 - time.time()))
    expect(client, b"get rel abs never app pre\r\n", present)

    for key in (b"rel", b"app", b"pre"):
        assert wait_for_miss(client, key, t0 + 3 + 3), f"{key!r} (exptime 3) still there"
    assert wait_for_miss(client, b"abs", absolute + 3), "absolute exptime did not expire"
    expect(client, b"get never\r\n", hit(b"never", b"n"))
