"""Connections: limits, counters and concurrency.

Covers -c/--conn-limit (the connection over the limit gets
`ERROR Too many open connections` and is closed, the others keep working, and
a slot freed by a closing client is reused), the `stats` counters
curr_connections / total_connections, and that clients do not block each
other: an idle client, a client that sent half a command, and 50 clients
doing set/get at the same time.

Tests without a marker run against memcached too (MEMKEEP_TEST_TARGET=memcached).
memcached's -c counts file descriptors, 20 of which it reserves for itself, so
the memcached-compatible limit test discovers the limit instead of assuming it;
the exact count is checked in a memkeep-only test.
"""

import threading
import time

import pytest

from conftest import Client

TOO_MANY = b"ERROR Too many open connections\r\n"


def wait_until(predicate, timeout=10.0, interval=0.05):
    """Poll `predicate` (bounded in time) until it is true; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for_curr_connections(observer, expected):
    """Poll `stats` until curr_connections == expected (closes are seen asynchronously)."""
    stats = {}

    def reached():
        stats.update(observer.stats())
        return stats["curr_connections"] == str(expected)

    wait_until(reached)
    return stats


def answers_version(client):
    client.send(b"version\r\n")
    return client.read_line().startswith(b"VERSION ")


def open_and_probe(server):
    """Open a connection and say `version`; return (client, first reply line)."""
    client = server.connect()
    try:
        client.send(b"version\r\n")
        return client, client.read_line()
    except (ConnectionError, OSError):
        # Refused and reset before the reply could be read.
        return client, b""


# --------------------------------------------------------------------------
# -c / --conn-limit


def test_conn_limit_rejects_then_recovers(server_factory):
    # memcached needs headroom above its 20 reserved fds, so the limit is discovered here.
    server = server_factory(["-c", "30"])
    accepted = []
    rejected_reply = None
    try:
        for _ in range(40):
            client, first_line = open_and_probe(server)
            if first_line.startswith(b"VERSION "):
                accepted.append(client)
                continue
            rejected_reply = first_line
            assert client.is_closed(), "the refused connection was left open"
            client.close()
            break
        assert accepted, "no connection was accepted under -c 30"
        assert rejected_reply == TOO_MANY
        # The connections that were accepted keep working.
        for client in accepted:
            assert answers_version(client)
        assert accepted[0].stats()["rejected_connections"] == "1"

        # After one closes, a new connection is accepted (the close is seen asynchronously).
        accepted.pop().close()

        def a_new_connection_works():
            client, first_line = open_and_probe(server)
            if first_line.startswith(b"VERSION "):
                accepted.append(client)
                return True
            client.close()
            return False

        assert wait_until(a_new_connection_works, interval=0.1)
    finally:
        for client in accepted:
            client.close()


@pytest.mark.memkeep_only
@pytest.mark.parametrize("flag", ["-c", "--conn-limit"])
def test_conn_limit_is_exact(server_factory, flag):
    limit = 5
    server = server_factory([flag, str(limit)])
    clients = [server.connect()]
    try:
        # The fixture's readiness probe has closed; wait until the server has seen that.
        assert wait_for_curr_connections(clients[0], 1)["curr_connections"] == "1"
        for _ in range(limit - 1):
            clients.append(server.connect())
        for client in clients:
            assert answers_version(client)
        with server.connect() as extra:
            # Read without sending: the refusal is the first thing the server says.
            assert extra.read_line() == TOO_MANY
            assert extra.is_closed()
        for client in clients:
            assert answers_version(client)

        clients.pop().close()

        def a_new_connection_works():
            client, first_line = open_and_probe(server)
            if first_line.startswith(b"VERSION "):
                clients.append(client)
                return True
            client.close()
            return False

        assert wait_until(a_new_connection_works, interval=0.1)
    finally:
        for client in clients:
            client.close()


# --------------------------------------------------------------------------
# curr_connections / total_connections


def test_connection_counters(server):
    with server.connect() as observer:
        # Wait until the fixture's readiness probe has been closed and counted out.
        stats = wait_for_curr_connections(observer, 1)
        # The observer counts itself; memcached's (single) listening socket is not counted.
        assert stats["curr_connections"] == "1"
        total_before = int(stats["total_connections"])

        others = [server.connect() for _ in range(3)]
        try:
            for client in others:
                assert answers_version(client)  # each one is surely accepted now
            stats = observer.stats()
            assert stats["curr_connections"] == "4"
            assert int(stats["total_connections"]) == total_before + 3
        finally:
            others.pop().close()
            others.pop().close()

        stats = wait_for_curr_connections(observer, 2)
        assert stats["curr_connections"] == "2"
        # Closing does not change the total.
        assert int(stats["total_connections"]) == total_before + 3
        others.pop().close()


# --------------------------------------------------------------------------
# clients do not block each other


@pytest.fixture
def one_thread_server(server_factory):
    # One worker thread: a server that blocks on one client would block all of them.
    return server_factory(["-t", "1"])


def test_idle_client_does_not_block_others(one_thread_server):
    with one_thread_server.connect() as idle, one_thread_server.connect() as busy:
        busy.assert_reply(b"set k 0 0 2\r\nhi\r\n", b"STORED\r\n")
        busy.assert_reply(b"get k\r\n", b"VALUE k 0 2\r\nhi\r\nEND\r\n")
        # The idle one is still served once it speaks.
        idle.assert_reply(b"get k\r\n", b"VALUE k 0 2\r\nhi\r\nEND\r\n")


def test_half_sent_command_line_does_not_block_others(one_thread_server):
    with one_thread_server.connect() as slow, one_thread_server.connect() as fast:
        slow.send(b"get k")
        fast.assert_reply(b"set k 0 0 2\r\nhi\r\n", b"STORED\r\n")
        fast.assert_reply(b"get k\r\n", b"VALUE k 0 2\r\nhi\r\nEND\r\n")
        slow.assert_reply(b"\r\n", b"VALUE k 0 2\r\nhi\r\nEND\r\n")


def test_half_sent_data_block_does_not_block_others(one_thread_server):
    with one_thread_server.connect() as slow, one_thread_server.connect() as fast:
        slow.send(b"set slow 0 0 10\r\nabc")
        fast.assert_reply(b"set fast 0 0 2\r\nhi\r\n", b"STORED\r\n")
        fast.assert_reply(b"get slow fast\r\n", b"VALUE fast 0 2\r\nhi\r\nEND\r\n")
        slow.assert_reply(b"defghij\r\n", b"STORED\r\n")
        fast.assert_reply(b"get slow\r\n", b"VALUE slow 0 10\r\nabcdefghij\r\nEND\r\n")


def test_many_concurrent_clients(server):
    client_count = 50
    pairs_per_client = 200
    start_together = threading.Barrier(client_count, timeout=30)
    errors = []
    finished = []

    def run(client_id):
        try:
            with server.connect(timeout=30) as c:
                start_together.wait()
                for i in range(pairs_per_client):
                    key = b"c%d_k%d" % (client_id, i)
                    value = b"v%d_%d_" % (client_id, i) + b"x" * (i % 50)
                    c.assert_reply(b"set %s %d 0 %d\r\n%s\r\n" % (key, client_id, len(value), value), b"STORED\r\n")
                    c.assert_reply(
                        b"get %s\r\n" % key,
                        b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, client_id, len(value), value),
                    )
            finished.append(client_id)
        except Exception as exc:  # reported by the main thread
            errors.append(f"client {client_id}: {exc!r}")

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(client_count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not errors, errors[:5]
    assert sorted(finished) == list(range(client_count)), "some clients did not finish in time"

    # Every key is still there with its own value.
    with server.connect() as c:
        for client_id in (0, client_count - 1):
            i = pairs_per_client - 1
            key = b"c%d_k%d" % (client_id, i)
            value = b"v%d_%d_" % (client_id, i) + b"x" * (i % 50)
            c.assert_reply(b"get %s\r\n" % key, b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, client_id, len(value), value))
