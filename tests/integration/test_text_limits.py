"""Text protocol limits, bad input, memory limits, pipelining, backpressure
and connection independence.

Every expected byte string here was checked against Debian's memcached 1.6.18
(MEMKEEP_TEST_TARGET=memcached). Where memcached's behaviour is surprising
(a rejected command line makes the server read the data block as a command)
the test says so: that is the behaviour clients already live with.
"""

import socket
import threading
import time

import pytest

from conftest import TARGET
from text_replies import expect, hit, value


def assert_no_reply(c, wait=0.3):
    """Nothing more arrives and the connection stays open."""
    assert not c.is_closed(wait), "connection closed"
    assert c.buf == b"", f"unexpected bytes {c.buf[:200]!r}"
    c.sock.settimeout(5.0)


KEY250 = b"k" * 250
KEY251 = b"k" * 251
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
OUT_OF_MEMORY = b"SERVER_ERROR out of memory storing object\r\n"


# --- key length and key bytes ------------------------------------------------------

def test_key_of_250_bytes_works_everywhere(client):
    k = KEY250
    expect(client, b"set %s 0 0 1\r\nx\r\n" % k, b"STORED\r\n")
    expect(client, b"get %s\r\n" % k, hit(k, b"x"))
    expect(client, b"append %s 0 0 1\r\ny\r\n" % k, b"STORED\r\n")
    expect(client, b"gat 0 %s\r\n" % k, hit(k, b"xy"))
    expect(client, b"touch %s 0\r\n" % k, b"TOUCHED\r\n")
    expect(client, b"delete %s\r\n" % k, b"DELETED\r\n")
    expect(client, b"add %s 0 0 1\r\n7\r\n" % k, b"STORED\r\n")
    expect(client, b"incr %s 1\r\n" % k, b"8\r\n")


@pytest.mark.parametrize("request_", [
    b"get %s\r\n", b"gets %s\r\n", b"gat 0 %s\r\n", b"gats 0 %s\r\n",
    b"delete %s\r\n", b"incr %s 1\r\n", b"decr %s 1\r\n", b"touch %s 0\r\n",
], ids=lambda r: r.split()[0].decode())
def test_key_of_251_bytes_is_rejected_by_commands_without_data(client, request_):
    expect(client, request_ % KEY251, BAD_FORMAT)
    expect(client, b"version\r\n", b"VERSION ")


@pytest.mark.parametrize("cmd", [b"set", b"add", b"replace", b"append", b"prepend", b"cas"])
def test_key_of_251_bytes_on_a_storage_command_then_data_is_read_as_a_command(client, cmd):
    cas = b" 1" if cmd == b"cas" else b""
    # The command line is rejected before the data block is known, so the
    # server does not swallow the data: "x" is parsed as a command (ERROR).
    expect(client, cmd + b" %s 0 0 1%s\r\nx\r\n" % (KEY251, cas), BAD_FORMAT + b"ERROR\r\n")
    expect(client, b"get %s\r\n" % KEY250, b"END\r\n")


def test_key_of_251_bytes_with_noreply_hides_the_error_not_the_data_line(client):
    expect(client, b"set %s 0 0 1 noreply\r\nx\r\n" % KEY251, b"ERROR\r\n")


def test_data_line_of_a_rejected_set_is_executed(client):
    expect(client, b"set victim 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"set %s 0 0 13\r\ndelete victim\r\n" % KEY251, BAD_FORMAT + b"DELETED\r\n")
    expect(client, b"get victim\r\n", b"END\r\n")


def test_get_with_one_key_too_long_among_good_keys_returns_only_the_error(client):
    expect(client, b"set a 0 0 1\r\nx\r\n", b"STORED\r\n")
    expect(client, b"get a %s a\r\n" % KEY251, BAD_FORMAT)
    expect(client, b"get a\r\n", hit(b"a", b"x"))


@pytest.mark.parametrize("key", [b"a\x01b", b"tab\there", b"del\x7f", b"bell\x07", b"caf\xc3\xa9", b"\xff\xfe"],
                         ids=["0x01", "tab", "0x7f", "0x07", "utf8", "0xff"])
def test_key_with_control_or_non_ascii_bytes_is_accepted(client, key):
    # memcached splits the text protocol on spaces only; other bytes,
    # control characters included, are part of the key.
    expect(client, b"set %s 0 0 1\r\nx\r\n" % key, b"STORED\r\n")
    expect(client, b"get %s\r\n" % key, hit(key, b"x"))
    expect(client, b"delete %s\r\n" % key, b"DELETED\r\n")


# --- value size limit (-I) --------------------------------------------------------

LIMIT = 512 * 1024  # -I 512k: the smallest -I memcached accepts without -o slab_chunk_max


def swallowable(n):
    """n bytes of data that would produce replies if they were read as commands."""
    return (b"get victim\r\n" * (n // 12 + 1))[:n]


def test_value_under_the_item_size_limit_is_stored(server_factory):
    server = server_factory(["-I", "512k"])
    data = b"v" * (400 * 1024)
    with server.connect() as c:
        expect(c, b"set big 0 0 %d\r\n%s\r\n" % (len(data), data), b"STORED\r\n")
        expect(c, b"get big\r\n", hit(b"big", data))


@pytest.mark.parametrize("size", [LIMIT + 1, 2 * 1024 * 1024])
def test_value_over_the_item_size_limit_is_refused_and_swallowed(server_factory, size):
    server = server_factory(["-I", "512k"])
    with server.connect() as c:
        expect(c, b"set victim 0 0 1\r\nv\r\n", b"STORED\r\n")
        # The data block is read and dropped, not parsed as commands.
        expect(c, b"set big 0 0 %d\r\n%s\r\n" % (size, swallowable(size)), TOO_LARGE)
        expect(c, b"get big victim\r\n", hit(b"victim", b"v"))


def test_value_over_the_default_item_size_limit_of_1m(server):
    size = 1024 * 1024 + 1
    with server.connect() as c:
        expect(c, b"set big 0 0 %d\r\n%s\r\n" % (size, swallowable(size)), TOO_LARGE)
        expect(c, b"get big\r\n", b"END\r\n")


def test_too_large_set_also_removes_the_old_value(server_factory):
    server = server_factory(["-I", "512k"])
    size = LIMIT + 1
    with server.connect() as c:
        expect(c, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
        expect(c, b"set k 0 0 %d\r\n%s\r\n" % (size, b"n" * size), TOO_LARGE)
        expect(c, b"get k\r\n", b"END\r\n")
        # Same with noreply, which also hides the error.
        expect(c, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
        expect(c, b"set k 0 0 %d noreply\r\n%s\r\nget k\r\n" % (size, b"n" * size), b"END\r\n")


@pytest.mark.parametrize("cmd", [b"add", b"replace", b"append", b"prepend", b"cas"])
def test_too_large_non_set_storage_keeps_the_old_value(server_factory, cmd):
    server = server_factory(["-I", "512k"])
    size = LIMIT + 1
    cas = b" 1" if cmd == b"cas" else b""
    with server.connect() as c:
        expect(c, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
        expect(c, cmd + b" k 0 0 %d%s\r\n%s\r\n" % (size, cas, b"n" * size), TOO_LARGE)
        expect(c, b"get k\r\n", hit(b"k", b"old"))


# --- malformed storage commands ------------------------------------------------------

def test_data_block_longer_than_announced_is_a_bad_data_chunk(client):
    expect(client, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
    # 3 bytes announced: the server reads 5 ("xxxxx"), finds no CRLF at the
    # end, answers the error, and the remaining "\r\n" is an empty command.
    expect(client, b"set k 0 0 3\r\nxxxxx\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"old"))


def test_data_block_shorter_than_announced_eats_into_the_next_command(client):
    expect(client, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
    # 3 bytes announced, "xx\r\n" sent: the server takes "xx\r\ng" as the
    # block, then "et k\r\n" is an unknown command.
    expect(client, b"set k 0 0 3\r\nxx\r\nget k\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"old"))


def test_bad_data_chunk_with_noreply_is_silent(client):
    expect(client, b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
    expect(client, b"set k 0 0 1 noreply\r\nxyz\r\nget k\r\n", b"ERROR\r\n" + hit(b"k", b"old"))


@pytest.mark.parametrize("length", [b"-1", b"abc", b"2147483648", b"1x"])
def test_bad_data_length_is_rejected_and_data_read_as_a_command(client, length):
    expect(client, b"set k 0 0 " + length + b"\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n")
    expect(client, b"get k\r\n", b"END\r\n")


@pytest.mark.parametrize("exptime", [b"abc", b"1x"])
def test_bad_exptime_is_rejected(client, exptime):
    expect(client, b"set k 0 " + exptime + b" 1\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n")


@pytest.mark.parametrize("line", [b"set k 0 0", b"set k 0", b"set k", b"set", b"cas k 0 0 1", b"get",
                                  b"touch k", b"delete"])
def test_too_few_tokens_is_an_error(client, line):
    expect(client, line + b"\r\n", b"ERROR\r\n")
    expect(client, b"version\r\n", b"VERSION ")


def test_too_many_tokens_on_a_storage_command_is_an_error(client):
    expect(client, b"set k 0 0 1 noreply extra\r\nx\r\n", b"ERROR\r\nERROR\r\n")
    expect(client, b"get k\r\n", b"END\r\n")


def test_extra_spaces_between_tokens_are_ignored(client):
    expect(client, b"set  k  0 0 1 \r\nx\r\n", b"STORED\r\n")
    expect(client, b" get k \r\n", hit(b"k", b"x"))


# --- long lines ------------------------------------------------------------------

def test_line_of_1000_bytes_is_just_an_unknown_command(client):
    expect(client, b"x" * 1000 + b"\r\n", b"ERROR\r\n")
    expect(client, b"version\r\n", b"VERSION ")


@pytest.mark.parametrize("size", [4096, 65536])
def test_long_line_without_newline_that_is_not_a_get_closes_the_connection(client, size):
    try:
        client.send(b"x" * size)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert client.is_closed(3.0)
    # memcached closes without a word; memkeep says why first (docs/PROTOCOL.md).
    assert client.buf == (b"" if TARGET == "memcached" else b"CLIENT_ERROR line too long\r\n")


def test_get_with_100_keys_of_200_bytes(client):
    keys = [b"%03d" % i + b"k" * 197 for i in range(100)]
    for key in keys[::7]:
        expect(client, b"set %s 0 0 3\r\n%s\r\n" % (key, key[:3]), b"STORED\r\n")
    line = b"get " + b" ".join(keys) + b"\r\n"
    assert len(line) > 20000
    expect(client, line, b"".join(value(key, key[:3]) for key in keys[::7]) + b"END\r\n")


def test_get_line_of_72_kb_sent_in_pieces(client):
    keys = [b"%04d" % i + b"g" * 236 for i in range(300)]
    expect(client, b"set %s 0 0 1\r\nx\r\n" % keys[299], b"STORED\r\n")
    line = b"get " + b" ".join(keys) + b"\r\n"
    # More than 4 KB of a get line without its newline must not close the
    # connection: the rest arrives later.
    client.send(line[:5000])
    time.sleep(0.2)
    client.send(line[5000:40000])
    time.sleep(0.2)
    expect(client, line[40000:], hit(keys[299], b"x"))


# --- memory limit: -M and eviction ------------------------------------------------------

def fill(c, count, data, start=0):
    """Pipelined sets of key<i> (i in [start, start+count)); returns the replies in order."""
    replies = []
    for base in range(start, start + count, 100):
        n = min(100, start + count - base)
        c.send(b"".join(b"set key%d 0 0 %d\r\n%s\r\n" % (i, len(data), data) for i in range(base, base + n)))
        replies += [c.read_line() for _ in range(n)]
    return replies


def present(c, keys):
    """The subset of keys that a get finds."""
    c.send(b"get " + b" ".join(keys) + b"\r\n")
    found = set()
    while True:
        line = c.read_line()
        if line == b"END\r\n":
            return found
        parts = line.split()
        c.read_exact(int(parts[3]) + 2)
        found.add(parts[1])


def test_smallest_memory_limit_memcached_accepts(server_factory):
    # memcached refuses -m 1 with the default -I 1m (an item may not be more
    # than half the memory); -m 2 is the smallest limit that starts.
    server = server_factory(["-m", "2", "-M"])
    with server.connect() as c:
        assert int(c.stats()["limit_maxbytes"]) == 2 * 1024 * 1024


def test_m_flag_refuses_to_store_when_memory_is_full(server_factory):
    server = server_factory(["-m", "2", "-M"])
    data = b"v" * 1000
    with server.connect() as c:
        replies = fill(c, 10000, data)
        assert set(replies) == {b"STORED\r\n", OUT_OF_MEMORY}, set(replies)
        stored = [b"key%d" % i for i, r in enumerate(replies) if r == b"STORED\r\n"]
        assert replies[0] == b"STORED\r\n" and replies[-1] == OUT_OF_MEMORY
        assert len(stored) < 10000
        # Nothing was evicted to make room: every stored key is still there.
        for base in range(0, len(stored), 100):
            chunk = stored[base:base + 100]
            assert present(c, chunk) == set(chunk)
        stats = c.stats()
        assert int(stats["evictions"]) == 0
        assert int(stats["curr_items"]) == len(stored)


def test_without_m_flag_old_items_are_evicted(server_factory):
    server = server_factory(["-m", "2"])
    data = b"v" * 1000
    count = 6000  # about 6 MB into 2 MB
    with server.connect() as c:
        assert set(fill(c, count, data)) == {b"STORED\r\n"}
        stats = c.stats()
        assert int(stats["evictions"]) > 0
        assert int(stats["curr_items"]) < count
        assert present(c, [b"key%d" % i for i in range(100)]) == set()
        recent = [b"key%d" % i for i in range(count - 100, count)]
        assert present(c, recent) == set(recent)


def test_an_item_read_regularly_survives_eviction(server_factory):
    server = server_factory(["-m", "2"])
    data = b"v" * 1000
    # hot and cold have the size of the filler items (memcached evicts per
    # size class); hot is read after every 100 sets, cold never.
    hot, cold = b"h" * 1000, b"c" * 1000
    with server.connect() as c:
        expect(c, b"set hot 0 0 1000\r\n%s\r\nset cold 0 0 1000\r\n%s\r\n" % (hot, cold),
               b"STORED\r\nSTORED\r\n")
        for start in range(0, 6000, 100):
            assert set(fill(c, 100, data, start)) == {b"STORED\r\n"}
            expect(c, b"get hot\r\n", hit(b"hot", hot))
        assert int(c.stats()["evictions"]) > 0
        expect(c, b"get cold\r\n", b"END\r\n")


# --- pipelining and fragmentation ----------------------------------------------------

def test_100_pipelined_requests_get_100_replies_in_order(client):
    expect(client, b"set counter 0 0 1\r\n0\r\n", b"STORED\r\n")
    requests, replies = [], []
    for j in range(20):
        key, data = b"p%d" % j, b"value-%d" % j
        requests += [
            b"set %s %d 0 %d\r\n%s\r\n" % (key, j, len(data), data),
            b"append %s 0 0 1\r\n!\r\n" % key,
            b"get %s missing\r\n" % key,
            b"incr counter 1\r\n",
            b"delete %s\r\n" % key,
        ]
        replies += [b"STORED\r\n", b"STORED\r\n", hit(key, data + b"!", j), b"%d\r\n" % (j + 1), b"DELETED\r\n"]
    assert len(requests) == 100
    expect(client, b"".join(requests), b"".join(replies))
    assert_no_reply(client)
    expect(client, b"get counter\r\n", hit(b"counter", b"20"))


def test_request_sent_one_byte_at_a_time(client):
    request = b"set k 5 0 5\r\nhello\r\nget k\r\n"
    for i in range(len(request)):
        client.send(request[i:i + 1])
        time.sleep(0.002)
    expect(client, b"", b"STORED\r\n" + hit(b"k", b"hello", 5))


def test_data_block_arriving_in_later_packets(client):
    client.send(b"set k 0 0 10\r\n")
    time.sleep(0.2)
    client.send(b"01234")
    time.sleep(0.2)
    client.send(b"56789\r")
    time.sleep(0.2)
    expect(client, b"\n", b"STORED\r\n")
    expect(client, b"get k\r\n", hit(b"k", b"0123456789"))


# --- backpressure ----------------------------------------------------------------------

def test_client_that_sends_10000_gets_before_reading_gets_every_reply(server):
    data = bytes(range(256)) * 4  # 1 KB
    reply = hit(b"k", data)
    count = 10000
    with server.connect(timeout=30.0) as c:
        expect(c, b"set k 0 0 %d\r\n%s\r\n" % (len(data), data), b"STORED\r\n")
        sent = {}

        def sender():
            try:
                c.sock.sendall(b"get k\r\n" * count)
                sent["ok"] = True
            except Exception as exc:  # reported by the main thread
                sent["error"] = exc

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        # Do not read while the requests go out (the server must hold back or
        # buffer ~10 MB of replies), then read everything.
        thread.join(timeout=5.0)
        c.sock.settimeout(30.0)
        got = c.read_exact(len(reply) * count)
        thread.join(timeout=30.0)
        assert sent.get("ok"), sent
        assert got == reply * count
        expect(c, b"get k\r\n", reply)


# --- connection independence ----------------------------------------------------------------

def test_client_stalled_in_a_data_block_does_not_block_others(server_factory):
    server = server_factory(["-t", "1"])
    with server.connect() as stalled, server.connect() as other:
        stalled.send(b"set k 0 0 10\r\nhello")
        time.sleep(0.1)
        expect(other, b"set j 0 0 1\r\nx\r\nget j k\r\n", b"STORED\r\n" + hit(b"j", b"x"), timeout=3.0)
        expect(stalled, b"world\r\n", b"STORED\r\n")
        expect(other, b"get k\r\n", hit(b"k", b"helloworld"), timeout=3.0)


def test_client_stalled_in_a_command_line_does_not_block_others(server_factory):
    server = server_factory(["-t", "1"])
    with server.connect() as stalled, server.connect() as other:
        stalled.send(b"get k")
        time.sleep(0.1)
        expect(other, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n", timeout=3.0)
        expect(stalled, b"\r\n", hit(b"k", b"x"))


def test_client_that_does_not_read_its_replies_does_not_block_others(server_factory):
    server = server_factory(["-t", "1"])
    data = b"d" * 1024
    with server.connect() as greedy, server.connect() as other:
        expect(greedy, b"set k 0 0 %d\r\n%s\r\n" % (len(data), data), b"STORED\r\n")
        greedy.send(b"get k\r\n" * 5000)  # ~5 MB of replies it does not read yet
        time.sleep(0.2)
        expect(other, b"get k\r\n", hit(b"k", data), timeout=3.0)
        greedy.sock.settimeout(30.0)
        assert greedy.read_exact(len(hit(b"k", data)) * 5000) == hit(b"k", data) * 5000
