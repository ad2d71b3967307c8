"""The replication wire protocol seen from a fake node.

A test plays the other node (the upstream a memkeep link pulls from, or a
downstream pulling from memkeep's replication port) with hand-made frames, as
docs/ARCHITECTURE.md and src/replication/wire.h describe them: a 1-byte type,
a 4-byte little-endian length, the payload. That checks what the real
two-node tests cannot provoke: an incompatible protocol version, garbage in
an otherwise valid stream, and the exact frames memkeep sends.

Every memkeep process is started through server_factory (stopped by PID at
the end); the fake node listens on 127.0.0.1 and its thread ends with the
test. Waits poll with a deadline; nothing asserts on time.
"""

import socket
import struct
import threading

import pytest

from repl_cluster import free_ports, start_node, wait_until

pytestmark = pytest.mark.memkeep_only

HELLO, JOIN, WELCOME, REFUSE, RECORDS, SNAP_BEGIN, SNAP_END, PING, ACK = 1, 2, 3, 4, 5, 6, 7, 8, 9
VERSION = 2
NONCE = b"n" * 32
PROOF0 = b"\0" * 32


def frame(kind, payload=b""):
    return struct.pack("<BI", kind, len(payload)) + payload


def hello(version=VERSION, node_id=0x1111, run_id=0x2222):
    return frame(HELLO, b"MKREPL" + struct.pack("<HQQB", version, node_id, run_id, 0) + NONCE)


def join(version=VERSION, node_id=0x3333):
    return frame(JOIN, struct.pack("<HQBQQ", version, node_id, 1, 0, 0) + NONCE + PROOF0)


def welcome_continue(run_id=0x2222, offset=0):
    return frame(WELCOME, struct.pack("<BQQ", 2, run_id, offset) + PROOF0)


def mutation_set(key, value, version, flags=0, origin=0x1111, tag=7, exptime=0):
    body = struct.pack("<BQHQIIBQB", 1, origin, tag, version, flags, exptime, 0, 0, len(key)) + key + value
    return struct.pack("<I", len(body)) + body


def read_frame(sock):
    header = read_exact(sock, 5)
    kind, length = struct.unpack("<BI", header)
    return kind, read_exact(sock, length)


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class FakeUpstream:
    """Listens on 127.0.0.1; each accepted connection is handed to `script`
    (in this thread, one at a time). Counts connections."""

    def __init__(self, script):
        self.script = script
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.seen = []  # whatever the scripts record
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(5)
            try:
                self.script(self, conn)
            except (OSError, ConnectionError):
                pass
            finally:
                conn.close()

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.server.close()


@pytest.fixture
def fake_upstream():
    made = []

    def make(script):
        fake = FakeUpstream(script)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close()


def client_works(node):
    with node.connect() as c:
        c.assert_reply(b"set alive 0 0 2\r\nok\r\n", b"STORED\r\n")


def test_link_refuses_an_upstream_with_another_protocol_version(server_factory, fake_upstream):
    def script(fake, conn):
        conn.sendall(hello(version=99))
        fake.seen.append(read_frame(conn))

    fake = fake_upstream(script)
    node = start_node(server_factory, name="B", repl_port=0, peers=[f"127.0.0.1:{fake.port}"])
    wait_until(lambda: fake.connections >= 3, message="the link retries")
    kind, reason = fake.seen[0]
    assert kind == REFUSE
    assert reason == b"incompatible replication protocol version 99 (this node speaks 2)"
    assert node.counter("repl_links_refused") >= 3
    assert node.stat("repl_link_0_state") == "refused"
    # One log line for the refusal, not one per retry.
    assert node.log_text().count("version 99") == 1, node.log_text()
    client_works(node)


def test_feed_refuses_a_downstream_with_another_protocol_version(server_factory):
    node = start_node(server_factory, name="A")
    with socket.create_connection(("127.0.0.1", node.repl_port), timeout=5) as s:
        kind, payload = read_frame(s)
        assert kind == HELLO and payload[:6] == b"MKREPL"
        assert struct.unpack("<H", payload[6:8])[0] == VERSION
        s.sendall(join(version=42))
        assert read_frame(s) == (REFUSE, b"incompatible replication protocol version 42 (this node speaks 2)")
        assert s.recv(1) == b""  # then closed
    assert node.counter("repl_links_refused") == 1
    client_works(node)


def test_records_from_an_upstream_apply_with_their_version_and_are_acknowledged(server_factory, fake_upstream):
    first = mutation_set(b"wk", b"wire", version=5 << 40, flags=9)
    second = mutation_set(b"wk2", b"two", version=(5 << 40) + 1)
    batch_end = len(first) + len(second)

    def script(fake, conn):
        read_frame(conn)  # JOIN
        conn.sendall(welcome_continue(offset=0))
        fake.seen.append(read_frame(conn))  # ACK of the starting offset
        conn.sendall(frame(RECORDS, struct.pack("<Q", batch_end) + first + second))
        fake.seen.append(read_frame(conn))  # ACK of the batch
        conn.sendall(frame(PING, struct.pack("<Q", batch_end)))
        fake.seen.append(read_frame(conn))  # ACK answering the ping
        while not fake.stopping:  # keep the link up until the test ends
            try:
                conn.recv(100)
            except socket.timeout:
                continue

    def serve(fake, conn):
        conn.sendall(hello())
        script(fake, conn)

    fake = fake_upstream(serve)
    node = start_node(server_factory, name="B", repl_port=0, peers=[f"127.0.0.1:{fake.port}"])
    wait_until(lambda: len(fake.seen) >= 3, message="three acknowledgements")
    assert fake.seen == [(ACK, struct.pack("<Q", 0)), (ACK, struct.pack("<Q", batch_end)),
                         (ACK, struct.pack("<Q", batch_end))]
    with node.connect() as c:
        c.assert_reply(b"gets wk wk2\r\n", b"VALUE wk 9 4 %d\r\nwire\r\nVALUE wk2 0 3 %d\r\ntwo\r\nEND\r\n"
                       % (5 << 40, (5 << 40) + 1))
    assert node.counter("repl_partial_syncs") == 1
    assert node.counter("repl_records_applied") == 2
    assert node.stat("repl_link_0_state") == "streaming"


@pytest.mark.parametrize("garbage", [
    pytest.param(struct.pack("<Q", 10) + b"\xff" * 10, id="bad-mutation"),
    pytest.param(None, id="unknown-frame"),
])
def test_garbage_from_an_upstream_drops_the_link_which_retries(server_factory, fake_upstream, garbage):
    def serve(fake, conn):
        conn.sendall(hello())
        read_frame(conn)
        conn.sendall(welcome_continue())
        read_frame(conn)
        conn.sendall(frame(RECORDS, garbage) if garbage is not None else frame(77, b"junk"))
        try:
            conn.recv(100)  # memkeep closes the connection
        except socket.timeout:
            fake.seen.append("still open")

    fake = fake_upstream(serve)
    node = start_node(server_factory, name="B", repl_port=0, peers=[f"127.0.0.1:{fake.port}"])
    wait_until(lambda: fake.connections >= 2, message="the link reconnects after garbage")
    assert "still open" not in fake.seen
    assert node.counter("repl_links_refused") >= 1
    with node.connect() as c:
        c.assert_reply(b"get anything\r\n", b"END\r\n")
    client_works(node)


# --------------------------------------------------------------------------
# Full sync from each storage mode: the snapshot must carry what lives only
# on disk (durable store, overflow tier), not only what RAM holds.


def _fill(node, count, size):
    value = b"v" * size
    with node.connect() as c:
        for i in range(count):
            c.assert_reply(b"set big%d %d 0 %d\r\n%s\r\n" % (i, i, size, value), b"STORED\r\n")


def _all_there(node, count, size):
    with node.connect() as c:
        for i in range(count):
            c.send(b"get big%d\r\n" % i)
            header = c.read_line()
            if header != b"VALUE big%d %d %d\r\n" % (i, i, size):
                return False
            c.read_exact(size + 2)
            if c.read_line() != b"END\r\n":
                return False
    return True


@pytest.mark.parametrize("storage", ["overflow", "durable"])
def test_a_replica_joining_later_gets_what_only_the_disk_holds(server_factory, tmp_path, storage):
    # 40 MB of values into 8 MB of RAM: most items live only on disk.
    count, size = 4000, 10000
    flags = ["-m", "8", "--storage", storage, "--data-dir", str(tmp_path / "a")]
    if storage == "overflow":
        flags += ["--disk-limit", "256m"]
    primary = start_node(server_factory, name="A", extra=flags)
    _fill(primary, count, size)
    replica = start_node(server_factory, name="R", repl_port=0, replica_of=primary, extra=["-m", "128"])
    wait_until(lambda: replica.stat("repl_link_0_state") == "streaming", message="the replica streaming",
               nodes=(primary, replica))
    assert replica.counter("repl_full_syncs") == 1
    assert _all_there(replica, count, size)
    # And it keeps following.
    with primary.connect() as c:
        c.assert_reply(b"set after 0 0 1\r\nx\r\n", b"STORED\r\n")
    def has_after():
        with replica.connect() as c:
            c.send(b"get after\r\n")
            line = c.read_line()
            return line == b"VALUE after 0 1\r\n" and c.read_line() == b"x\r\n" and c.read_line() == b"END\r\n"

    wait_until(has_after, message="a write after the full sync", nodes=(primary, replica))
