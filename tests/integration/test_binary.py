"""memcached's binary protocol (doc/protocol-binary.txt), over a raw socket.

Requests are built with struct; every response is checked field by field:
magic, opcode, status, key length, extras, key, body and opaque. CAS values
differ between servers (memcached counts from 1, memkeep uses clock stamps),
so tests compare them with each other (a Get returns the CAS the Set
answered, a new Set changes it) and check where memcached sends 0.

Every expected byte here was checked against memcached 1.6.18
(MEMKEEP_TEST_TARGET=memcached runs this file against it).
"""

import struct
from dataclasses import dataclass

import pytest

from conftest import TARGET

HEADER = struct.Struct(">BBHBBHIIQ")

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ = range(0x0A)
NOOP, VERSION, GETK, GETKQ, APPEND, PREPEND, STAT = 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10
SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ, QUITQ, FLUSHQ, APPENDQ, PREPENDQ = range(0x11, 0x1B)
VERBOSITY, TOUCH, GAT, GATQ = 0x1B, 0x1C, 0x1D, 0x1E
SASL_LIST, SASL_AUTH, SASL_STEP, GATK, GATKQ = 0x20, 0x21, 0x22, 0x23, 0x24

OK, NOT_FOUND, EXISTS, TOO_LARGE, EINVAL, NOT_STORED, NON_NUMERIC = 0, 1, 2, 3, 4, 5, 6
UNKNOWN = 0x81

ERROR_TEXT = {
    NOT_FOUND: b"Not found",
    EXISTS: b"Data exists for key.",
    TOO_LARGE: b"Too large.",
    EINVAL: b"Invalid arguments",
    NOT_STORED: b"Not stored.",
    NON_NUMERIC: b"Non-numeric server-side value for incr or decr",
    UNKNOWN: b"Unknown command",
}

FAIL_ON_MISS = 0xFFFFFFFF


def request(opcode, key=b"", extras=b"", value=b"", opaque=0, cas=0, magic=0x80,
            key_length=None, body_length=None):
    key_length = len(key) if key_length is None else key_length
    body_length = len(extras) + len(key) + len(value) if body_length is None else body_length
    return HEADER.pack(magic, opcode, key_length, len(extras), 0, 0, body_length, opaque, cas) + extras + key + value


def store_extras(flags=0, exptime=0):
    return struct.pack(">II", flags, exptime)


def incr_extras(delta, initial=0, exptime=0):
    return struct.pack(">QQI", delta, initial, exptime)


def exptime_extras(exptime):
    return struct.pack(">I", exptime)


@dataclass
class Response:
    opcode: int
    status: int
    extras: bytes
    key: bytes
    value: bytes
    opaque: int
    cas: int

    @property
    def flags(self):
        return struct.unpack(">I", self.extras)[0]

    @property
    def number(self):
        return struct.unpack(">Q", self.value)[0]


def read_response(client):
    magic, opcode, key_length, extras_length, data_type, status, body_length, opaque, cas = HEADER.unpack(
        client.read_exact(HEADER.size))
    assert magic == 0x81 and data_type == 0, (magic, data_type)
    body = client.read_exact(body_length)
    extras, key = body[:extras_length], body[extras_length:extras_length + key_length]
    value = body[extras_length + key_length:]
    return Response(opcode, status, extras, key, value, opaque, cas)


def call(client, data):
    client.send(data)
    return read_response(client)


def expect(response, opcode, status=OK, extras=b"", key=b"", value=None, opaque=0, cas=None):
    """Checks every field; value None means memcached's text for an error status (or empty)."""
    if value is None:
        value = ERROR_TEXT.get(status, b"")
    got = (response.opcode, response.status, response.extras, response.key, response.value, response.opaque)
    assert got == (opcode, status, extras, key, value, opaque), got
    if cas is not None:
        assert response.cas == cas, (response.cas, cas)
    elif status != OK:
        assert response.cas == 0
    return response


def expect_error(client, data, opcode, status, opaque=0):
    return expect(call(client, data), opcode, status, opaque=opaque, cas=0)


def noop_barrier(client, opaque=0xB0B):
    """Sends a Noop and returns every response before its reply."""
    client.send(request(NOOP, opaque=opaque))
    out = []
    for _ in range(10000):
        response = read_response(client)
        if response.opcode == NOOP and response.opaque == opaque:
            return out
        out.append(response)
    raise AssertionError("no Noop reply")


def bset(client, key, value, flags=0, exptime=0, cas=0, opaque=0):
    response = call(client, request(SET, key, store_extras(flags, exptime), value, opaque=opaque, cas=cas))
    expect(response, SET, opaque=opaque)
    assert response.cas != 0
    return response.cas


@pytest.fixture
def bclient(server):
    with server.connect() as c:
        yield c


# ---- Get, Set and friends -----------------------------------------------------------


def test_set_then_every_get_variant(bclient):
    cas = bset(bclient, b"key", b"hello", flags=0xDEADBEEF, opaque=0x01020304)
    flags = struct.pack(">I", 0xDEADBEEF)
    expect(call(bclient, request(GET, b"key", opaque=7)), GET, extras=flags, value=b"hello", opaque=7, cas=cas)
    expect(call(bclient, request(GETK, b"key", opaque=8)), GETK, extras=flags, key=b"key", value=b"hello",
           opaque=8, cas=cas)
    # Quiet gets answer hits.
    expect(call(bclient, request(GETQ, b"key", opaque=9)), GETQ, extras=flags, value=b"hello", opaque=9, cas=cas)
    expect(call(bclient, request(GETKQ, b"key", opaque=10)), GETKQ, extras=flags, key=b"key", value=b"hello",
           opaque=10, cas=cas)


def test_get_misses(bclient):
    expect_error(bclient, request(GET, b"nokey", opaque=3), GET, NOT_FOUND, opaque=3)
    # GetK answers a miss with the key instead of the error text.
    expect(call(bclient, request(GETK, b"nokey", opaque=4)), GETK, NOT_FOUND, key=b"nokey", value=b"", opaque=4, cas=0)


def test_quiet_get_pipeline_ends_in_noop(bclient):
    for i in range(0, 10, 2):
        bset(bclient, b"p%d" % i, b"v%d" % i)
    batch = b"".join(request(GETKQ, b"p%d" % i, opaque=i) for i in range(10))
    batch += b"".join(request(GETQ, b"p%d" % i, opaque=100 + i) for i in range(10))
    bclient.send(batch)
    replies = noop_barrier(bclient)
    assert [(r.opcode, r.key, r.value, r.opaque, r.status) for r in replies] == (
        [(GETKQ, b"p%d" % i, b"v%d" % i, i, OK) for i in range(0, 10, 2)]
        + [(GETQ, b"", b"v%d" % i, 100 + i, OK) for i in range(0, 10, 2)]
    )


def test_empty_and_binary_values(bclient):
    bset(bclient, b"empty", b"")
    expect(call(bclient, request(GET, b"empty")), GET, extras=b"\0\0\0\0", value=b"")
    data = bytes(range(256)) * 3 + b"\r\n\x80"
    bset(bclient, b"bin", data)
    expect(call(bclient, request(GET, b"bin")), GET, extras=b"\0\0\0\0", value=data)


def test_large_value_round_trip(bclient):
    data = bytes((i * 7) % 251 for i in range(900_000))
    bset(bclient, b"large", data)
    expect(call(bclient, request(GET, b"large")), GET, extras=b"\0\0\0\0", value=data)


def test_value_sent_in_pieces(bclient):
    data = b"0123456789" * 5000
    packet = request(SET, b"slow", store_extras(5), data, opaque=77)
    for start in range(0, len(packet), 4096):
        bclient.send(packet[start:start + 4096])
    expect(read_response(bclient), SET, opaque=77)
    expect(call(bclient, request(GET, b"slow")), GET, extras=struct.pack(">I", 5), value=data)


def test_set_replaces_and_changes_cas(bclient):
    first = bset(bclient, b"k", b"one")
    second = bset(bclient, b"k", b"two", flags=3)
    assert second != first
    expect(call(bclient, request(GET, b"k")), GET, extras=struct.pack(">I", 3), value=b"two", cas=second)


def test_add_and_replace(bclient):
    expect(call(bclient, request(ADD, b"k", store_extras(), b"a", opaque=1)), ADD, opaque=1)
    expect_error(bclient, request(ADD, b"k", store_extras(), b"b", opaque=2), ADD, EXISTS, opaque=2)
    expect_error(bclient, request(REPLACE, b"nokey", store_extras(), b"b", opaque=3), REPLACE, NOT_FOUND, opaque=3)
    expect(call(bclient, request(REPLACE, b"k", store_extras(9), b"c", opaque=4)), REPLACE, opaque=4)
    expect(call(bclient, request(GET, b"k")), GET, extras=struct.pack(">I", 9), value=b"c")


def test_append_and_prepend_keep_flags(bclient):
    bset(bclient, b"k", b"mid", flags=42)
    r = expect(call(bclient, request(APPEND, b"k", b"", b">>")), APPEND)
    expect(call(bclient, request(PREPEND, b"k", b"", b"<<")), PREPEND)
    assert r.cas != 0
    expect(call(bclient, request(GET, b"k")), GET, extras=struct.pack(">I", 42), value=b"<<mid>>")
    expect_error(bclient, request(APPEND, b"nokey", b"", b"x"), APPEND, NOT_STORED)
    expect_error(bclient, request(PREPEND, b"nokey", b"", b"x"), PREPEND, NOT_STORED)


def test_quiet_storage_is_silent_on_success_and_reports_errors(bclient):
    bclient.send(
        request(SETQ, b"q", store_extras(), b"1", opaque=1)
        + request(ADDQ, b"q", store_extras(), b"2", opaque=2)        # exists: reported
        + request(REPLACEQ, b"q", store_extras(), b"3", opaque=3)
        + request(REPLACEQ, b"nokey", store_extras(), b"3", opaque=4)  # missing: reported
        + request(APPENDQ, b"q", b"", b"4", opaque=5)
        + request(PREPENDQ, b"q", b"", b"0", opaque=6)
        + request(APPENDQ, b"nokey", b"", b"x", opaque=7)          # not stored: reported
        + request(ADDQ, b"q2", store_extras(), b"new", opaque=8)
    )
    replies = noop_barrier(bclient)
    assert [(r.opcode, r.status, r.value, r.opaque, r.cas) for r in replies] == [
        (ADDQ, EXISTS, ERROR_TEXT[EXISTS], 2, 0),
        (REPLACEQ, NOT_FOUND, ERROR_TEXT[NOT_FOUND], 4, 0),
        (APPENDQ, NOT_STORED, ERROR_TEXT[NOT_STORED], 7, 0),
    ]
    expect(call(bclient, request(GET, b"q")), GET, extras=b"\0\0\0\0", value=b"034")
    expect(call(bclient, request(GET, b"q2")), GET, extras=b"\0\0\0\0", value=b"new")


def test_expired_on_store(bclient):
    # An absolute exptime in the past: stored, and already expired.
    expect(call(bclient, request(SET, b"old", store_extras(0, 1_000_000_000), b"v")), SET)
    expect_error(bclient, request(GET, b"old"), GET, NOT_FOUND)


# ---- CAS ----------------------------------------------------------------------------


def test_cas_on_set_replace_add(bclient):
    cas = bset(bclient, b"k", b"v1")
    expect_error(bclient, request(SET, b"k", store_extras(), b"x", cas=cas + 1), SET, EXISTS)
    expect_error(bclient, request(SET, b"nokey", store_extras(), b"x", cas=cas), SET, NOT_FOUND)
    # With a CAS, add is a cas command too: it replaces a matching item.
    r = expect(call(bclient, request(ADD, b"k", store_extras(), b"v2", cas=cas)), ADD)
    assert r.cas not in (0, cas)
    expect_error(bclient, request(REPLACE, b"k", store_extras(), b"v3", cas=cas), REPLACE, EXISTS)
    r2 = expect(call(bclient, request(REPLACE, b"k", store_extras(), b"v3", cas=r.cas)), REPLACE)
    expect(call(bclient, request(GET, b"k")), GET, extras=b"\0\0\0\0", value=b"v3", cas=r2.cas)
    # Quiet variants report the conflict.
    expect_error(bclient, request(SETQ, b"k", store_extras(), b"x", cas=cas, opaque=5), SETQ, EXISTS, opaque=5)
    bclient.send(request(SETQ, b"k", store_extras(), b"v4", cas=r2.cas))
    assert noop_barrier(bclient) == []


def test_cas_on_append_delete_incr(bclient):
    cas = bset(bclient, b"k", b"10")
    expect_error(bclient, request(APPEND, b"k", b"", b"0", cas=cas + 1), APPEND, EXISTS)
    r = expect(call(bclient, request(APPEND, b"k", b"", b"0", cas=cas)), APPEND)
    expect_error(bclient, request(INCR, b"k", incr_extras(1), cas=cas), INCR, EXISTS)
    r2 = expect(call(bclient, request(INCR, b"k", incr_extras(1), cas=r.cas)), INCR, value=struct.pack(">Q", 101))
    expect_error(bclient, request(DELETE, b"k", cas=r.cas), DELETE, EXISTS)
    expect(call(bclient, request(DELETE, b"k", cas=r2.cas)), DELETE, cas=0)
    expect_error(bclient, request(DELETE, b"k"), DELETE, NOT_FOUND)


# ---- Delete ----------------------------------------------------------------------------


def test_delete_and_deleteq(bclient):
    bset(bclient, b"a", b"1")
    bset(bclient, b"b", b"1")
    expect(call(bclient, request(DELETE, b"a", opaque=3)), DELETE, opaque=3, cas=0)
    expect_error(bclient, request(DELETE, b"a", opaque=4), DELETE, NOT_FOUND, opaque=4)
    bclient.send(request(DELETEQ, b"b", opaque=5) + request(DELETEQ, b"b", opaque=6))
    replies = noop_barrier(bclient)
    assert [(r.opcode, r.status, r.opaque) for r in replies] == [(DELETEQ, NOT_FOUND, 6)]


# ---- Increment / Decrement -----------------------------------------------------------


def test_incr_creates_with_initial_value(bclient):
    r = expect(call(bclient, request(INCR, b"n", incr_extras(5, initial=100), opaque=1)), INCR,
               value=struct.pack(">Q", 100), opaque=1)
    assert r.cas != 0
    expect(call(bclient, request(GET, b"n")), GET, extras=b"\0\0\0\0", value=b"100", cas=r.cas)
    r2 = expect(call(bclient, request(INCR, b"n", incr_extras(5, initial=100))), INCR, value=struct.pack(">Q", 105))
    assert r2.cas != r.cas
    expect(call(bclient, request(DECR, b"n", incr_extras(200))), DECR, value=struct.pack(">Q", 0))
    # decr created a shorter number: memcached pads it with spaces
    expect(call(bclient, request(GET, b"n")), GET, extras=b"\0\0\0\0", value=b"0  ")
    expect(call(bclient, request(DECR, b"d", incr_extras(1, initial=7))), DECR, value=struct.pack(">Q", 7))


def test_incr_fail_on_miss_and_errors(bclient):
    expect_error(bclient, request(INCR, b"n", incr_extras(1, 0, FAIL_ON_MISS), opaque=2), INCR, NOT_FOUND, opaque=2)
    expect_error(bclient, request(DECR, b"n", incr_extras(1, 0, FAIL_ON_MISS)), DECR, NOT_FOUND)
    bset(bclient, b"s", b"abc")
    expect_error(bclient, request(INCR, b"s", incr_extras(1)), INCR, NON_NUMERIC)
    bset(bclient, b"big", b"18446744073709551615")
    expect(call(bclient, request(INCR, b"big", incr_extras(2))), INCR, value=struct.pack(">Q", 1))


def test_quiet_incr(bclient):
    bclient.send(
        request(INCRQ, b"q", incr_extras(1, initial=10), opaque=1)
        + request(INCRQ, b"q", incr_extras(1), opaque=2)
        + request(DECRQ, b"q", incr_extras(5), opaque=3)
        + request(INCRQ, b"missing", incr_extras(1, 0, FAIL_ON_MISS), opaque=4)
    )
    replies = noop_barrier(bclient)
    assert [(r.opcode, r.status, r.opaque) for r in replies] == [(INCRQ, NOT_FOUND, 4)]
    expect(call(bclient, request(GET, b"q")), GET, extras=b"\0\0\0\0", value=b"6 ")


def test_incr_counters(bclient, server):
    expect(call(bclient, request(INCR, b"c", incr_extras(1, 5))), INCR, value=struct.pack(">Q", 5))
    expect(call(bclient, request(INCR, b"c", incr_extras(1))), INCR, value=struct.pack(">Q", 6))
    expect_error(bclient, request(INCR, b"x", incr_extras(1, 0, FAIL_ON_MISS)), INCR, NOT_FOUND)
    expect_error(bclient, request(DECR, b"x", incr_extras(1, 0, FAIL_ON_MISS)), DECR, NOT_FOUND)
    with server.connect() as text:
        stats = text.stats()
    assert (stats["incr_hits"], stats["incr_misses"], stats["decr_misses"]) == ("1", "1", "1")


# ---- Touch, GAT ---------------------------------------------------------------------------


def test_touch_and_gat(bclient):
    cas = bset(bclient, b"t", b"val", flags=6)
    flags = struct.pack(">I", 6)
    # Touch answers the flags but not the value.
    expect(call(bclient, request(TOUCH, b"t", exptime_extras(1000), opaque=1)), TOUCH, extras=flags, opaque=1, cas=cas)
    expect(call(bclient, request(GAT, b"t", exptime_extras(1000), opaque=2)), GAT, extras=flags, value=b"val",
           opaque=2, cas=cas)
    expect(call(bclient, request(GATK, b"t", exptime_extras(1000))), GATK, extras=flags, key=b"t", value=b"val",
           cas=cas)
    expect(call(bclient, request(GATQ, b"t", exptime_extras(0))), GATQ, extras=flags, value=b"val", cas=cas)
    expect(call(bclient, request(GATKQ, b"t", exptime_extras(0))), GATKQ, extras=flags, key=b"t", value=b"val",
           cas=cas)
    # An absolute time in the past expires the item.
    expect(call(bclient, request(TOUCH, b"t", exptime_extras(1_000_000_000))), TOUCH, extras=flags, cas=cas)
    expect_error(bclient, request(GET, b"t"), GET, NOT_FOUND)


def test_touch_and_gat_misses(bclient):
    expect_error(bclient, request(TOUCH, b"m", exptime_extras(10)), TOUCH, NOT_FOUND)
    expect_error(bclient, request(GAT, b"m", exptime_extras(10)), GAT, NOT_FOUND)
    expect(call(bclient, request(GATK, b"m", exptime_extras(10), opaque=9)), GATK, NOT_FOUND, key=b"m", value=b"",
           opaque=9, cas=0)
    bclient.send(request(GATQ, b"m", exptime_extras(10)) + request(GATKQ, b"m", exptime_extras(10)))
    assert noop_barrier(bclient) == []


# ---- Flush, Noop, Version, Quit -------------------------------------------------------------


def test_flush(bclient):
    bset(bclient, b"a", b"1")
    expect(call(bclient, request(FLUSH, opaque=5)), FLUSH, opaque=5, cas=0)
    expect_error(bclient, request(GET, b"a"), GET, NOT_FOUND)
    bset(bclient, b"a", b"1")
    bclient.send(request(FLUSHQ, opaque=6))
    assert noop_barrier(bclient) == []
    expect_error(bclient, request(GET, b"a"), GET, NOT_FOUND)


def test_flush_with_delay_and_with_zero(bclient):
    bset(bclient, b"a", b"1")
    # A flush a day from now leaves the item for now.
    expect(call(bclient, request(FLUSH, extras=exptime_extras(86400))), FLUSH)
    expect(call(bclient, request(GET, b"a")), GET, extras=b"\0\0\0\0", value=b"1")
    expect(call(bclient, request(FLUSH, extras=exptime_extras(0))), FLUSH)
    expect_error(bclient, request(GET, b"a"), GET, NOT_FOUND)


def test_noop_and_version(bclient):
    expect(call(bclient, request(NOOP, opaque=0xFFFFFFFF)), NOOP, opaque=0xFFFFFFFF, cas=0)
    expect(call(bclient, request(VERSION, opaque=1)), VERSION, value=b"1.6.18", opaque=1, cas=0)


def test_quit(server):
    with server.connect() as c:
        bset(c, b"k", b"v")
        expect(call(c, request(QUIT, opaque=4)), QUIT, opaque=4, cas=0)
        assert c.is_closed()
    with server.connect() as c:
        c.send(request(QUITQ) + request(NOOP))
        assert c.is_closed()
        assert c.buf == b""


# ---- Stat ----------------------------------------------------------------------------------


def read_stats(client, group=b"", opaque=0x51):
    client.send(request(STAT, group, opaque=opaque))
    stats = {}
    for _ in range(1000):
        r = read_response(client)
        assert (r.opcode, r.status, r.extras, r.opaque, r.cas) == (STAT, OK, b"", opaque, 0)
        if not r.key:
            assert r.value == b""
            return stats
        stats[r.key.decode()] = r.value.decode()
    raise AssertionError("no end of stats")


def test_stat_groups(bclient):
    bset(bclient, b"k", b"v")
    call(bclient, request(GET, b"k"))
    general = read_stats(bclient)
    assert general["version"] == "1.6.18"
    assert general["cmd_get"] == "1" and general["get_hits"] == "1" and general["cmd_set"] == "1"
    assert general["curr_items"] == "1"
    settings = read_stats(bclient, b"settings")
    assert settings["binding_protocol"] == "auto-negotiate"
    assert settings["item_size_max"] == "1048576"
    items = read_stats(bclient, b"items")
    assert items["items:1:number"] == "1"
    assert "sizes_status" in read_stats(bclient, b"sizes") or TARGET == "memcached"
    expect_error(bclient, request(STAT, b"bogus", opaque=8), STAT, NOT_FOUND, opaque=8)


def test_stat_reset(bclient):
    call(bclient, request(GET, b"nokey"))
    assert read_stats(bclient)["get_misses"] == "1"
    assert read_stats(bclient, b"reset") == {}
    assert read_stats(bclient)["get_misses"] == "0"


# ---- Errors ----------------------------------------------------------------------------------


def test_too_large_is_refused_and_the_value_skipped(bclient):
    bset(bclient, b"k", b"old")
    big = b"x" * (1024 * 1024)
    expect_error(bclient, request(SET, b"k", store_extras(), big, opaque=3), SET, TOO_LARGE, opaque=3)
    # The connection is still in step, and a failed Set removed the old value.
    expect_error(bclient, request(GET, b"k"), GET, NOT_FOUND)
    bset(bclient, b"k", b"old")
    expect_error(bclient, request(ADD, b"k", store_extras(), big), ADD, TOO_LARGE)
    expect_error(bclient, request(APPEND, b"k", b"", big), APPEND, TOO_LARGE)
    expect(call(bclient, request(GET, b"k")), GET, extras=b"\0\0\0\0", value=b"old")


@pytest.mark.parametrize(
    "opcode",
    [SASL_LIST, VERBOSITY, 0x19 + 0x30, 0x50, 0xFF],
    ids=["sasl-list-mechs", "verbosity", "range-op", "0x50", "0xff"],
)
def test_unknown_commands(bclient, opcode):
    expect_error(bclient, request(opcode, opaque=12), opcode, UNKNOWN, opaque=12)
    expect(call(bclient, request(NOOP, opaque=1)), NOOP, opaque=1)


@pytest.mark.memkeep_only
def test_unknown_command_skips_exactly_its_body(bclient):
    # memcached skips body-length bytes *after* the extras and key it already
    # read, so it swallows the start of the next request; memkeep skips the
    # rest of the body only (docs/PROTOCOL.md).
    expect_error(bclient, request(VERBOSITY, extras=exptime_extras(1), opaque=3), VERBOSITY, UNKNOWN, opaque=3)
    expect_error(bclient, request(0x50, b"key", b"ex", b"value"), 0x50, UNKNOWN)
    expect(call(bclient, request(NOOP, opaque=1)), NOOP, opaque=1)


def test_sasl_without_sasl_is_unknown_and_skips_the_data(bclient):
    expect_error(bclient, request(SASL_AUTH, b"PLAIN", b"", b"\0user\0pass"), SASL_AUTH, UNKNOWN)
    expect_error(bclient, request(SASL_STEP, b"PLAIN", b"", b"data"), SASL_STEP, UNKNOWN)
    expect_error(bclient, request(SASL_LIST), SASL_LIST, UNKNOWN)
    expect(call(bclient, request(NOOP, opaque=1)), NOOP, opaque=1)


def test_unknown_command_with_a_value_keeps_the_connection(bclient):
    expect_error(bclient, request(0x50, value=b"some bytes"), 0x50, UNKNOWN)
    expect(call(bclient, request(NOOP, opaque=2)), NOOP, opaque=2)


INVALID = [
    ("get-with-extras", request(GET, b"k", b"1234")),
    ("get-without-key", request(GET)),
    ("get-with-value", request(GET, b"k", value=b"v")),
    ("set-without-extras", request(SET, b"k", b"", b"v")),
    ("set-short-extras", request(SET, b"k", b"1234", b"v")),
    ("set-without-key", request(SET, b"", store_extras(), b"v")),
    ("delete-with-value", request(DELETE, b"k", value=b"v")),
    ("incr-short-extras", request(INCR, b"k", b"12345678")),
    ("incr-with-value", request(INCR, b"k", incr_extras(1), b"v")),
    ("append-with-extras", request(APPEND, b"k", b"1234", b"v")),
    ("touch-without-extras", request(TOUCH, b"k")),
    ("gat-without-key", request(GAT, b"", exptime_extras(1))),
    ("noop-with-key", request(NOOP, b"k")),
    ("version-with-value", request(VERSION, value=b"v")),
    ("flush-bad-extras", request(FLUSH, extras=b"12")),
    ("flush-with-key", request(FLUSH, b"k")),
    ("quit-with-value", request(QUIT, value=b"v")),
    ("stat-with-extras", request(STAT, b"", b"1234")),
    ("sasl-auth-without-key", request(SASL_AUTH, value=b"x")),
    ("key-251-bytes", request(GET, b"k" * 251)),
]


@pytest.mark.parametrize("packet", [p for _, p in INVALID], ids=[n for n, _ in INVALID])
def test_invalid_arguments_close_the_connection(server, packet):
    with server.connect() as c:
        expect(call(c, packet + request(NOOP)), packet[1], EINVAL, cas=0)
        assert c.is_closed()
        assert c.buf == b""


def test_key_longer_than_body_closes(server):
    with server.connect() as c:
        c.send(request(GET, b"abcde", body_length=3) + request(NOOP))
        expect(read_response(c), GET, UNKNOWN, cas=0)
        assert c.is_closed()
        assert c.buf == b""
    with server.connect() as c:
        c.send(request(SET, b"k", store_extras(), body_length=4))
        expect(read_response(c), SET, UNKNOWN, cas=0)
        assert c.is_closed()


def test_bad_magic_closes_without_reply(server):
    with server.connect() as c:
        expect(call(c, request(NOOP, opaque=1)), NOOP, opaque=1)
        c.send(request(NOOP, magic=0x81) + request(NOOP))
        assert c.is_closed()
        assert c.buf == b""
    with server.connect() as c:
        # A text command on a binary connection is a bad magic byte too.
        expect(call(c, request(NOOP)), NOOP)
        c.send(b"get k\r\n" + b" " * 30)
        assert c.is_closed()
        assert c.buf == b""


# ---- Protocol selection (-B) ---------------------------------------------------------------


def test_auto_negotiates_per_connection(server):
    with server.connect() as binary, server.connect() as text:
        bset(binary, b"shared", b"from-binary")
        text.assert_reply(b"get shared\r\n", b"VALUE shared 0 11\r\nfrom-binary\r\nEND\r\n")
        text.assert_reply(b"set t 3 0 2\r\nhi\r\n", b"STORED\r\n")
        expect(call(binary, request(GET, b"t")), GET, extras=struct.pack(">I", 3), value=b"hi")


def test_protocol_binary_only(server_factory):
    server = server_factory(["-B", "binary"])
    with server.connect() as c:
        assert read_stats(c, b"settings")["binding_protocol"] == "binary"
    with server.connect() as c:
        c.send(b"version\r\n" + b" " * 30)
        assert c.is_closed()
        assert c.buf == b""


def test_protocol_ascii_only(server_factory):
    server = server_factory(["-B", "ascii"])
    with server.connect() as c:
        assert c.stats(b"settings")["binding_protocol"] == "ascii"
        # A binary Noop is text here: its opcode byte (0x0a) ends a line.
        c.send(request(NOOP))
        assert c.read_exact(7) == b"ERROR\r\n"


def test_protocol_auto_setting(server):
    with server.connect() as c:
        assert c.stats(b"settings")["binding_protocol"] == "auto-negotiate"


@pytest.mark.memkeep_only
def test_bad_protocol_flag_is_refused(server_factory):
    with pytest.raises(RuntimeError):
        server_factory(["-B", "klingon"])


# ---- Counters ------------------------------------------------------------------------------


def test_binary_commands_count_like_text_ones(bclient):
    bset(bclient, b"a", b"1")
    call(bclient, request(GET, b"a"))
    call(bclient, request(GET, b"b"))
    call(bclient, request(TOUCH, b"a", exptime_extras(100)))
    call(bclient, request(GAT, b"b", exptime_extras(100)))
    call(bclient, request(DELETE, b"a"))
    call(bclient, request(DELETE, b"a"))
    call(bclient, request(SET, b"c", store_extras(), b"v", cas=1))
    call(bclient, request(FLUSH))
    stats = read_stats(bclient)
    got = {k: stats[k] for k in ("cmd_get", "get_hits", "get_misses", "cmd_set", "cmd_touch", "touch_hits",
                                 "touch_misses", "delete_hits", "delete_misses", "cas_misses", "cmd_flush")}
    assert got == {"cmd_get": "2", "get_hits": "1", "get_misses": "1", "cmd_set": "2", "cmd_touch": "2",
                   "touch_hits": "1", "touch_misses": "1", "delete_hits": "1", "delete_misses": "1",
                   "cas_misses": "1", "cmd_flush": "1"}
