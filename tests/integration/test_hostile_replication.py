"""Hostile peers on the replication link (issue 12, items 3 and 5).

Each test attacks a node's replication port (or, for the hostile upstream,
the node's own link) the way the issue's table says, then checks with
hostile.py that (a) the node is alive and answers, (b) its RSS stays under
-m plus the margin, and (c) a well-behaved client on another connection is
served. Raw frames come from test_replication_protocol.py's helpers.

Every process is started through server_factory and stopped by its PID;
sockets are on 127.0.0.1; every loop is bounded in count and time, and
nothing asserts on how long something took.
"""

import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from hostile import assert_alive_and_correct, assert_rss_within
from repl_cluster import free_ports, read_item, start_node, wait_until
from test_replication_protocol import (ACK, HELLO, JOIN, REFUSE, fake_upstream, frame, hello, join,  # noqa: F401
                                       mutation_set, read_frame, welcome_continue)

pytestmark = pytest.mark.memkeep_only

AUTH = b"set auth 0 0 12\r\nalice secret\r\n"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret"
    path.write_text("correct horse battery staple\n")
    return path


@pytest.fixture
def auth_file(tmp_path):
    path = tmp_path / "auth"
    path.write_text("alice:secret\n")
    return path


def start_failure(args):
    """Runs memkeep with `args` on fresh ports; (exit code, stderr) of a
    start that must fail (the process is waited for, bounded)."""
    port, repl_port = free_ports(2)
    binary = os.environ.get("MEMKEEP_BIN", str(Path(__file__).resolve().parents[2] / "build" / "memkeep"))
    proc = subprocess.Popen([binary, "-p", str(port), "-l", "127.0.0.1", "-X", str(repl_port), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"memkeep started with {args} (it must refuse)")
    return proc.returncode, err.decode(errors="replace")


def protected_flags(kind, auth_file, tmp_path):
    if kind == "-S":
        return ["-S"]
    if kind == "-Y":
        return ["-Y", auth_file]
    certificate = tmp_path / "self.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=t",
                    "-keyout", certificate, "-out", certificate], check=True, capture_output=True)
    return ["-Z", "--tls-cert", certificate, "--tls-key", certificate]


# --------------------------------------------------------------------------
# Row: "replication port without --repl-secret-file, while -Y (or -S)
# protects the client port": refused at start, unless --repl-insecure.


@pytest.mark.parametrize("kind", ["-S", "-Y", "-Z"])
def test_replication_without_a_secret_is_refused_when_clients_are_protected(server_factory, auth_file, tmp_path,
                                                                             kind):
    flags = protected_flags(kind, auth_file, tmp_path)
    code, err = start_failure(flags)
    assert code != 0
    assert "--repl-secret-file: needed for replication when -S, -Y or -Z protects the client port" in err, err
    # The operator may say so, and then is warned.
    node = start_node(server_factory, name="A", extra=[*flags, "--repl-insecure"])
    wait_until(lambda: "WARNING: --repl-insecure" in node.log_text(), message="the warning line")


def test_join_with_an_all_zero_proof_gets_nothing_from_a_protected_node(server_factory, secret_file, auth_file):
    # Without a secret such a node no longer starts (where the zero proof got a full snapshot)...
    code, err = start_failure(["-Y", auth_file])
    assert code != 0 and "--repl-secret-file: needed" in err, err
    # ... and with one, the zero proof is refused.
    node = start_node(server_factory, name="A", secret_file=secret_file, extra=["-Y", auth_file, "-m", "64"])
    with node.connect() as c:
        c.assert_reply(AUTH, b"STORED\r\n")
        c.assert_reply(b"set private 0 0 6\r\nsecret\r\n", b"STORED\r\n")
    with socket.create_connection(("127.0.0.1", node.repl_port), timeout=10) as s:
        kind, payload = read_frame(s)
        assert kind == HELLO
        s.sendall(join())  # the all-zero proof
        assert read_frame(s) == (REFUSE, b"authentication failed (wrong or missing --repl-secret-file)")
        assert s.recv(1) == b""  # closed: no WELCOME, no snapshot
    # (a), (b), (c): an authenticated client is served.
    assert node.alive()
    assert_rss_within(node.proc, 64)
    with node.connect() as c:
        c.assert_reply(AUTH, b"STORED\r\n")
        c.assert_reply(b"get private\r\n", b"VALUE private 0 6\r\nsecret\r\nEND\r\n")


# --------------------------------------------------------------------------
# Row: "4 connections each send 63 MB of a 64 MB frame before the proof".


def test_large_frames_before_the_proof_are_refused_and_memory_stays_bounded(server_factory, secret_file):
    node = start_node(server_factory, name="A", secret_file=secret_file, extra=["-m", "64"])
    chunk = b"\0" * (1 << 20)
    closed_early = 0
    sockets = []
    try:
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", node.repl_port), timeout=10)
            sockets.append(s)
            assert read_frame(s)[0] == HELLO
            s.sendall(struct.pack("<BI", JOIN, (64 << 20) - 1))
        for s in sockets:
            try:
                for _ in range(63):
                    s.sendall(chunk)
            except OSError:  # the node closed the connection after the header
                closed_early += 1
        # Every connection is closed by the node, without a reply.
        for s in sockets:
            try:
                while s.recv(65536):
                    pass
            except ConnectionResetError:
                pass
        assert closed_early == 4
        assert_rss_within(node.proc, 64)
        assert_alive_and_correct(node.proc)
    finally:
        for s in sockets:
            s.close()


def test_a_handshake_that_trickles_in_is_cut_at_the_deadline(server_factory, secret_file):
    # One byte of a JOIN every 0.5 s (the whole JOIN would take 48 s): each
    # byte alone keeps a per-read timeout from firing; the node still closes
    # the connection before the JOIN is complete.
    node = start_node(server_factory, name="A", secret_file=secret_file, extra=["--repl-timeout", "60"])
    message = join()
    with socket.create_connection(("127.0.0.1", node.repl_port), timeout=10) as s:
        assert read_frame(s)[0] == HELLO
        s.settimeout(0.5)
        closed = False
        for byte in message[:-1]:
            try:
                s.sendall(bytes([byte]))
                if s.recv(100) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
        assert closed, "the node waited for the whole trickled JOIN"
    assert_alive_and_correct(node.proc)


# --------------------------------------------------------------------------
# Row: "replication connection flood under a 60-thread limit, secret set".

PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def test_a_connection_flood_under_a_thread_limit_does_not_kill_the_node(server_factory, secret_file):
    if os.geteuid() != 0:
        pytest.skip("needs root to put the node in a pids cgroup")
    if not (PIDS_CGROUP / "pids.max").exists() and not (PIDS_CGROUP / "cgroup.procs").exists():
        pytest.skip("no cgroup v1 pids controller at /sys/fs/cgroup/pids")
    group = PIDS_CGROUP / f"memkeep-test-{os.getpid()}"
    group.mkdir()
    node = start_node(server_factory, name="A", secret_file=secret_file, extra=["-m", "64"])
    sockets = []
    try:
        # A limit a few tasks above what the node runs idle (a systemd TasksMax).
        (group / "pids.max").write_text(str(thread_count(node.pid) + 6))
        (group / "cgroup.procs").write_text(str(node.pid))
        for _ in range(200):
            try:
                sockets.append(socket.create_connection(("127.0.0.1", node.repl_port), timeout=5))
            except OSError:
                break
        # Let the node take them all in (they never speak).
        wait_until(lambda: node.counter("repl_unauthenticated_refused") > 0 or not node.alive(),
                   message="the node refusing the flood")
        assert node.alive(), node.log_tail()
        assert_rss_within(node.proc, 64)
        assert_alive_and_correct(node.proc)
        for s in sockets:
            s.close()
        sockets.clear()
        # After the flood a node with the secret still joins.
        replica = start_node(server_factory, name="R", repl_port=0, replica_of=node, secret_file=secret_file)
        with node.connect() as c:
            c.assert_reply(b"set after_flood 0 0 2\r\nok\r\n", b"STORED\r\n")
        def replicated():
            with replica.connect() as c:
                item = read_item(c, b"after_flood")
            return item is not None and item[2] == b"ok"

        wait_until(replicated, message="the replica has the write", nodes=(node, replica))
    finally:
        for s in sockets:
            s.close()
        if node.alive():
            (PIDS_CGROUP / "cgroup.procs").write_text(str(node.pid))
        group.rmdir()


# --------------------------------------------------------------------------
# Row: "a hostile upstream sends a 10 MB value under -I 1m and a version of
# 2^64-2".


def test_a_hostile_upstream_cannot_store_a_huge_value_or_push_the_clock(server_factory, fake_upstream):
    big = mutation_set(b"huge", b"x" * (10 << 20), version=5 << 40)
    far = mutation_set(b"future", b"v", version=(1 << 64) - 2)

    def serve(fake, conn):
        conn.sendall(hello())
        read_frame(conn)  # JOIN
        conn.sendall(welcome_continue())
        read_frame(conn)  # ACK of the start
        record = big if fake.connections == 1 else far
        conn.sendall(frame(5, struct.pack("<Q", len(record)) + record))
        try:
            conn.recv(100)  # memkeep drops the link
        except OSError:
            pass

    fake = fake_upstream(serve)
    node = start_node(server_factory, name="B", repl_port=0, peers=[f"127.0.0.1:{fake.port}"],
                      extra=["-I", "1m", "-m", "64"])
    wait_until(lambda: fake.connections >= 4, message="the link dropped and retried")
    assert node.counter("repl_rejected_records") >= 3
    assert node.counter("repl_records_applied") == 0
    with node.connect() as c:
        c.assert_reply(b"get huge future\r\n", b"END\r\n")
        c.assert_reply(b"set local 0 0 1\r\nv\r\n", b"STORED\r\n")
        cas = read_item(c, b"local")[1]
    now_version = int(time.time() * 1000) << 16
    assert cas < now_version + (3600_000 << 16), f"local CAS {cas} pushed far ahead of the clock"
    # Logged once per reason, not once per retry.
    log = node.log_text()
    assert log.count("refused a record: an item larger than -I/--max-item-size") == 1, log
    assert log.count("refused a record: a version further ahead") == 1, log
    assert_rss_within(node.proc, 64)
    assert_alive_and_correct(node.proc)


# --------------------------------------------------------------------------
# Row: "with --repl-sync 1 a stranger's ACK turns timeouts into STORED".


def test_a_strangers_ack_does_not_acknowledge_a_synchronous_write(server_factory, secret_file, auth_file):
    # Without a secret next to -Y, the node does not start (a stranger could join and acknowledge).
    code, err = start_failure(["-Y", auth_file, "--repl-sync", "1"])
    assert code != 0 and "--repl-secret-file: needed" in err, err
    node = start_node(server_factory, name="A", secret_file=secret_file,
                      extra=["-Y", auth_file, "--repl-sync", "1", "--repl-sync-timeout", "300", "-m", "64"])
    with socket.create_connection(("127.0.0.1", node.repl_port), timeout=10) as s:
        assert read_frame(s)[0] == HELLO
        try:
            # A JOIN without the secret, then an acknowledgement of everything.
            s.sendall(join() + frame(ACK, struct.pack("<Q", 1 << 63)))
        except OSError:
            pass
        with node.connect() as c:
            c.assert_reply(AUTH, b"STORED\r\n")
            c.assert_reply(b"set synced 0 0 1\r\nv\r\n", b"SERVER_ERROR replication timeout: 0 of 1 acknowledged\r\n")
            # (c): reads are served.
            c.assert_reply(b"get nothing\r\n", b"END\r\n")
        assert read_frame(s) == (REFUSE, b"authentication failed (wrong or missing --repl-secret-file)")
    assert node.alive()
    assert_rss_within(node.proc, 64)
