"""UDP (-U PORT): memcached's 8-byte frame header, text (and binary) requests
in one datagram each, replies split into datagrams of at most 1400 bytes.

A raw UDP client checks exact datagrams. Every test also runs against
memcached 1.6.18 (MEMKEEP_TEST_TARGET=memcached) except the parts marked
memkeep-only, where memkeep deliberately differs (docs/PROTOCOL.md):
memkeep answers all the requests of one datagram as one message (sequence
numbers 0..n-1 over the whole reply), memcached 1.6.18 makes a separate
message of each reply object (each key of a multiget).
"""

import socket
import struct

import pytest

from conftest import TARGET, free_port

MAX_DATAGRAM = 1400          # memcached's UDP_MAX_PAYLOAD_SIZE, header included
MAX_PAYLOAD = MAX_DATAGRAM - 8
BINARY_NOOP = bytes([0x80, 0x0A]) + bytes(22)


def frame(request_id, payload, sequence=0, total=1, reserved=0):
    return struct.pack(">HHHH", request_id, sequence, total, reserved) + payload


class UdpClient:
    def __init__(self, port, timeout=5.0):
        self.address = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.settimeout(timeout)
        self.next_id = 100

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendto(data, self.address)

    def recv(self):
        data, source = self.sock.recvfrom(65536)
        assert source == self.address
        return data

    def request(self, payload):
        """Sends one request; returns (request id, datagrams of the reply)."""
        self.next_id += 1
        rid = self.next_id
        self.send_raw(frame(rid, payload))
        return rid, self.read_reply(rid)

    def read_reply(self, rid, ends=None):
        """Reads datagrams until every message of the reply with `rid` is
        complete (and the reassembled bytes end with `ends`, when given).
        Datagrams of other request ids fail the test."""
        datagrams = []
        for _ in range(10000):
            d = self.recv()
            got_id, seq, total, reserved = struct.unpack(">HHHH", d[:8])
            assert got_id == rid, f"reply for request {got_id}, expected {rid}"
            datagrams.append(d)
            if seq == total - 1 and (ends is None or reassemble(datagrams).endswith(ends)):
                return datagrams
        raise AssertionError("reply never completed")

    def call(self, payload, ends=None):
        """The reassembled reply to one request."""
        self.next_id += 1
        rid = self.next_id
        self.send_raw(frame(rid, payload))
        return reassemble(self.read_reply(rid, ends))


def messages(datagrams):
    """Splits datagrams into messages, checking each one's header: sequence
    numbers 0..total-1 in order, the same total, reserved 0, size limit."""
    out, current = [], []
    for d in datagrams:
        assert len(d) <= MAX_DATAGRAM
        _, seq, total, reserved = struct.unpack(">HHHH", d[:8])
        assert reserved == 0
        assert total >= 1 and seq == len(current), f"sequence {seq} of {total}, expected {len(current)}"
        current.append(d)
        if seq == total - 1:
            out.append(current)
            current = []
    assert current == [], "incomplete message"
    return out


def reassemble(datagrams):
    return b"".join(d[8:] for d in datagrams)


@pytest.fixture
def udp_server(server_factory):
    port = free_port(socket.SOCK_DGRAM)
    proc = server_factory(["-U", port])
    proc.udp_port = port
    return proc


@pytest.fixture
def udp(udp_server):
    client = UdpClient(udp_server.udp_port)
    # The TCP port answers first; make sure the UDP socket does too.
    client.sock.settimeout(0.2)
    for _ in range(50):
        try:
            client.call(b"version\r\n")
            break
        except (socket.timeout, TimeoutError):
            continue
    client.sock.settimeout(5.0)
    yield client
    client.close()


def test_set_get_round_trip(udp):
    rid, reply = udp.request(b"set k 5 0 3\r\nabc\r\n")
    assert reply == [frame(rid, b"STORED\r\n")]
    rid, reply = udp.request(b"get k\r\n")
    assert reply == [frame(rid, b"VALUE k 5 3\r\nabc\r\nEND\r\n")]
    rid, reply = udp.request(b"mg k v f\r\n")
    assert reply == [frame(rid, b"VA 3 f5\r\nabc\r\n")]
    rid, reply = udp.request(b"delete k\r\n")
    assert reply == [frame(rid, b"DELETED\r\n")]
    rid, reply = udp.request(b"get k\r\n")
    assert reply == [frame(rid, b"END\r\n")]


def test_request_id_echoed_and_header_fields_ignored(udp):
    assert udp.call(b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"
    # Request id 0 and 65535; a non-zero sequence number or reserved field
    # with total 1 is still one whole request (memcached reads only the id
    # and the total).
    for rid, seq, reserved in [(0, 0, 0), (65535, 0, 0), (7, 3, 0), (8, 0, 0x0102)]:
        udp.send_raw(frame(rid, b"get k\r\n", sequence=seq, reserved=reserved))
        assert udp.read_reply(rid) == [frame(rid, b"VALUE k 0 1\r\nx\r\nEND\r\n")]


def test_large_value_spans_datagrams(udp):
    value = bytes(ord("a") + i % 26 for i in range(3000))
    assert udp.call(b"set big 1 0 3000\r\n" + value + b"\r\n") == b"STORED\r\n"
    rid, reply = udp.request(b"get big\r\n")
    expected = b"VALUE big 1 3000\r\n" + value + b"\r\nEND\r\n"
    # 3025 bytes: 1392 + 1392 + 241, sequence 0..2 of 3.
    assert reply == [frame(rid, expected[i * MAX_PAYLOAD:(i + 1) * MAX_PAYLOAD], sequence=i, total=3)
                     for i in range(3)]
    assert [len(d) for d in reply] == [1400, 1400, 249]


def test_multiget_spans_datagrams(udp):
    keys = [b"key%02d" % i for i in range(12)]
    expected = b""
    for i, key in enumerate(keys):
        value = bytes([ord("A") + i]) * (250 + i)
        assert udp.call(b"set %s %d 0 %d\r\n%s\r\n" % (key, i, len(value), value)) == b"STORED\r\n"
        expected += b"VALUE %s %d %d\r\n%s\r\n" % (key, i, len(value), value)
    expected += b"END\r\n"
    assert len(expected) > 2 * MAX_PAYLOAD
    rid = 4242
    udp.send_raw(frame(rid, b"get " + b" ".join(keys) + b"\r\n"))
    datagrams = udp.read_reply(rid, ends=b"END\r\n")
    parts = messages(datagrams)
    assert reassemble(datagrams) == expected
    if TARGET != "memcached":
        # memkeep: the whole reply is one message, cut at 1392-byte payloads.
        count = -(-len(expected) // MAX_PAYLOAD)
        assert len(parts) == 1
        assert datagrams == [frame(rid, expected[i * MAX_PAYLOAD:(i + 1) * MAX_PAYLOAD], sequence=i, total=count)
                             for i in range(count)]


def test_noreply_sends_nothing(udp):
    udp.next_id = 500
    udp.send_raw(frame(1, b"set quiet 0 0 2 noreply\r\nhi\r\n"))
    # Workers may take the two datagrams in either order: ask until the value
    # is there. No datagram of request 1 may ever arrive (read_reply fails on it).
    for _ in range(100):
        reply = udp.call(b"get quiet\r\n")
        if reply != b"END\r\n":
            break
    assert reply == b"VALUE quiet 0 2\r\nhi\r\nEND\r\n"
    # In one datagram, only the request without noreply answers.
    assert udp.call(b"incr n 1 noreply\r\nset n 0 0 1 noreply\r\n5\r\nincr n 2\r\n") == b"7\r\n"


def test_malformed_headers_are_dropped(udp):
    assert udp.call(b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"
    udp.send_raw(b"\x00\x01\x00\x00\x00")                 # shorter than a header
    udp.send_raw(frame(2, b""))                          # a header and nothing else
    udp.send_raw(frame(3, b"get k\r\n", total=0))        # total 0
    udp.send_raw(frame(4, b"get k\r\n", total=2))        # claims a second datagram
    udp.send_raw(frame(5, b"get k\r\n", sequence=1, total=2))
    # None of those is answered: the first datagram back is the reply to 6.
    udp.send_raw(frame(6, b"get k\r\n"))
    assert udp.read_reply(6) == [frame(6, b"VALUE k 0 1\r\nx\r\nEND\r\n")]


def test_request_spanning_two_datagrams_is_rejected(udp):
    # Numbered as one message of two datagrams: memcached drops both.
    udp.send_raw(frame(9, b"set split 0 0 10\r\nabcde", sequence=0, total=2))
    udp.send_raw(frame(9, b"fghij\r\n", sequence=1, total=2))
    rid, reply = udp.request(b"get split\r\n")
    assert reply == [frame(rid, b"END\r\n")]


@pytest.mark.memkeep_only
def test_request_cut_at_datagram_end_is_dropped(udp):
    # Each datagram stands alone in memkeep: the unfinished set is dropped
    # and the next datagram is read as new commands. (memcached 1.6.18 keeps
    # waiting for the data block and eats the next datagram as its value.)
    udp.send_raw(frame(11, b"set split 0 0 10\r\nabcde"))
    udp.send_raw(frame(12, b"fghij\r\n"))
    assert udp.read_reply(12) == [frame(12, b"ERROR\r\n")]
    udp.send_raw(frame(13, b"get spl"))
    udp.send_raw(frame(14, b"it\r\n"))
    assert udp.read_reply(14) == [frame(14, b"ERROR\r\n")]
    assert udp.call(b"get split\r\n") == b"END\r\n"


@pytest.mark.memkeep_only
def test_several_requests_in_one_datagram_are_one_message(udp):
    rid, reply = udp.request(b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a b\r\nversion\r\n")
    assert reply == [frame(rid, b"STORED\r\nSTORED\r\nVALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n"
                                b"VERSION 1.6.18\r\n")]


def test_binary_request_over_udp(udp):
    # memcached 1.6.18 serves binary requests over UDP (the first byte of
    # the payload decides, whatever -B says).
    rid, reply = udp.request(BINARY_NOOP)
    assert reply == [frame(rid, bytes([0x81, 0x0A]) + bytes(22))]


def test_stats_settings_udpport(server_factory):
    port = free_port(socket.SOCK_DGRAM)
    with server_factory(["-U", port]).connect() as c:
        assert c.stats(b"settings")["udpport"] == str(port)
    with server_factory([]).connect() as c:
        assert c.stats(b"settings")["udpport"] == "0"


def test_udp_counts_in_stats(udp, udp_server):
    assert udp.call(b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"
    assert udp.call(b"get k\r\n") == b"VALUE k 0 1\r\nx\r\nEND\r\n"
    with udp_server.connect() as c:
        stats = c.stats()
    assert int(stats["cmd_set"]) >= 1 and int(stats["get_hits"]) == 1


@pytest.mark.memkeep_only
def test_udp_port_in_use_fails_start(server_factory):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        proc = server_factory(["-U", port], wait=False)
        assert proc.proc.wait(10) == 1
        assert b"UDP" in proc.proc.stderr.read()
