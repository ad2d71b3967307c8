"""memcached's ascii authentication (-Y FILE).

A text client sends `set <any> <flags> <exptime> <len>\\r\\n<user> <password>\\r\\n`
first; until then every line is answered `CLIENT_ERROR unauthenticated`.
Each test runs against memcached 1.6.18 too (MEMKEEP_TEST_TARGET=memcached),
except those marked memkeep-only. Requests before authentication are sent
one at a time: memcached 1.6.18 overwrites the earlier replies of a
pipelined batch before authentication (see test_pipelined_before_auth).
"""

import os
import signal
import socket
import time

import pytest

from conftest import TARGET, free_port

AUTH = b"set auth 0 0 12\r\nalice secret\r\n"


@pytest.fixture
def auth_file(tmp_path):
    path = tmp_path / "auth"
    path.write_text("alice:secret\nbob:hunter2\n")
    return path


@pytest.fixture
def auth_server(server_factory, auth_file):
    return server_factory(["-Y", auth_file])


@pytest.fixture
def conn(auth_server):
    with auth_server.connect() as c:
        yield c


def test_accept(conn):
    conn.assert_reply(AUTH, b"STORED\r\n")
    # The auth set stored nothing; the connection now works normally.
    conn.assert_reply(b"get auth\r\n", b"END\r\n")
    conn.assert_reply(b"set k 3 0 2\r\nhi\r\n", b"STORED\r\n")
    conn.assert_reply(b"get k\r\n", b"VALUE k 3 2\r\nhi\r\nEND\r\n")
    conn.assert_reply(b"mn\r\n", b"MN\r\n")
    conn.assert_reply(b"version\r\n", b"VERSION 1.6.18\r\n")


def test_second_user_and_any_key_flags_exptime(conn):
    conn.assert_reply(b"set whatever 123 456 11\r\nbob hunter2\r\n", b"STORED\r\n")
    conn.assert_reply(b"get whatever\r\n", b"END\r\n")


def test_reject(conn):
    conn.assert_reply(b"set auth 0 0 11\r\nalice wrong\r\n", b"CLIENT_ERROR authentication failure\r\n")
    conn.assert_reply(b"get k\r\n", b"CLIENT_ERROR unauthenticated\r\n")
    conn.assert_reply(b"set auth 0 0 12\r\nALICE secret\r\n", b"CLIENT_ERROR authentication failure\r\n")
    conn.assert_reply(b"set auth 0 0 13\r\nalice hunter2\r\n", b"CLIENT_ERROR authentication failure\r\n")
    conn.assert_reply(b"set auth 0 0 11\r\nbob secret2\r\n", b"CLIENT_ERROR authentication failure\r\n")
    # A failure is not final: the right password still gets in.
    conn.assert_reply(AUTH, b"STORED\r\n")
    conn.assert_reply(b"get k\r\n", b"END\r\n")


@pytest.mark.parametrize("line", [
    b"get k\r\n", b"gets k\r\n", b"gat 0 k\r\n", b"delete k\r\n", b"incr k 1\r\n", b"decr k 1\r\n",
    b"touch k 0\r\n", b"flush_all\r\n", b"version\r\n", b"verbosity 1\r\n", b"stats\r\n",
    b"stats settings\r\n", b"quit\r\n", b"shutdown\r\n", b"\r\n", b"bogus\r\n",
    b"add k 0 0 12\r\n", b"replace k 0 0 1\r\n", b"cas k 0 0 1 1\r\n", b"SET k 0 0 12\r\n",
    b"set k 0 0\r\n", b"set k 0 0 abc\r\n", b"set k 0 0 -1\r\n", b"set k 0 0 5x\r\n",
])
def test_unauthenticated_commands(conn, line):
    conn.assert_reply(line, b"CLIENT_ERROR unauthenticated\r\n")
    # Still open (quit included) and still unauthenticated.
    conn.assert_reply(b"get k\r\n", b"CLIENT_ERROR unauthenticated\r\n")
    conn.assert_reply(AUTH, b"STORED\r\n")


@pytest.mark.parametrize("line", [b"mn\r\n", b"mg k v\r\n", b"ms k 2\r\n", b"md k\r\n", b"ma k\r\n", b"me k\r\n"])
def test_meta_commands_before_auth(conn, line):
    conn.assert_reply(line, b"CLIENT_ERROR unauthenticated\r\n")
    conn.assert_reply(AUTH, b"STORED\r\n")
    conn.assert_reply(b"mn\r\n", b"MN\r\n")


def test_binary_request_before_auth(conn):
    # -Y makes the server text only: a binary request is text up to its 0x0a byte.
    conn.assert_reply(bytes([0x80, 0x0A]) + bytes(22), b"CLIENT_ERROR unauthenticated\r\n")


def test_token_format_errors(conn):
    conn.assert_reply(b"set auth 0 0 5\r\nalice\r\n", b"CLIENT_ERROR bad authentication token format\r\n")
    conn.assert_reply(b"set auth 0 0 0\r\n\r\n", b"CLIENT_ERROR bad authentication token format\r\n")
    conn.assert_reply(b"set auth 0 0 6\r\nalice \r\n", b"CLIENT_ERROR bad authentication token format\r\n")
    conn.assert_reply(b"set auth 0 0 12\r\nalice:secret\r\n", b"CLIENT_ERROR bad authentication token format\r\n")
    # The data block must end with \r\n.
    conn.assert_reply(b"set auth 0 0 10\r\nalice secrXY", b"CLIENT_ERROR bad command line termination\r\n")
    conn.assert_reply(b"get k\r\n", b"CLIENT_ERROR unauthenticated\r\n")


def test_lenient_forms_accepted(auth_server):
    for request in [b"set auth 0 0 12 noreply\r\nalice secret\r\n",   # noreply is not honoured
                    b"set auth 0 0 18\r\nalice secret extra\r\n",     # extra tokens ignored
                    b"set auth 0 0 13\r\nalice  secret\r\n",          # runs of spaces
                    b"set auth 0 0 12\nalice secret\r\n",             # a bare \n ends the line
                    b"set  auth 0 0 12 \r\nalice secret\r\n"]:
        with auth_server.connect() as c:
            c.assert_reply(request, b"STORED\r\n")
            c.assert_reply(b"get auth\r\n", b"END\r\n")


def test_authentication_is_per_connection(auth_server):
    with auth_server.connect() as a, auth_server.connect() as b:
        a.assert_reply(AUTH, b"STORED\r\n")
        b.assert_reply(b"get k\r\n", b"CLIENT_ERROR unauthenticated\r\n")
        a.assert_reply(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n")
        b.assert_reply(b"get k\r\n", b"CLIENT_ERROR unauthenticated\r\n")


def test_auth_split_across_packets(conn):
    for piece in [b"se", b"t auth 0 0 1", b"2\r\nalice s", b"ecret\r", b"\n"]:
        conn.send(piece)
    assert conn.read_line() == b"STORED\r\n"


def test_long_line_before_auth_closes(conn):
    conn.send(b"x" * 3000)
    assert conn.is_closed()
    assert conn.buf == b""


def test_stats(auth_server, auth_file):
    with auth_server.connect() as c:
        c.assert_reply(b"set auth 0 0 9\r\nalice bad\r\n", b"CLIENT_ERROR authentication failure\r\n")
        c.assert_reply(b"set auth 0 0 5\r\nalice\r\n", b"CLIENT_ERROR bad authentication token format\r\n")
        c.assert_reply(AUTH, b"STORED\r\n")
        stats = c.stats()
        assert (stats["auth_cmds"], stats["auth_errors"]) == ("2", "1")
        settings = c.stats(b"settings")
        assert settings["auth_enabled_ascii"] == str(auth_file)
        assert settings["binding_protocol"] == "ascii"


def test_stats_settings_without_auth(client):
    assert client.stats(b"settings")["auth_enabled_ascii"] == "no"


@pytest.mark.memkeep_only
def test_pipelined_before_auth(conn):
    # memkeep answers every line; memcached 1.6.18 sends only the last reply
    # of a batch read before authentication (its replies overwrite each other).
    conn.assert_reply(b"get a\r\nquit\r\n" + AUTH + b"get a\r\n",
                      b"CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\nSTORED\r\nEND\r\n")


def test_sighup_reloads_auth_file(auth_server, auth_file):
    auth_file.write_text("carol:newpass\n")
    os.kill(auth_server.pid, signal.SIGHUP)
    # memcached reloads on its next clock tick: retry on fresh connections.
    for _ in range(100):
        time.sleep(0.05)
        with auth_server.connect() as c:
            c.send(b"set auth 0 0 13\r\ncarol newpass\r\n")
            if c.read_line() == b"STORED\r\n":
                break
    else:
        pytest.fail("the new auth file was not loaded")
    with auth_server.connect() as c:
        c.assert_reply(AUTH, b"CLIENT_ERROR authentication failure\r\n")
    # A file that can no longer be read keeps the loaded credentials.
    auth_file.unlink()
    os.kill(auth_server.pid, signal.SIGHUP)
    with auth_server.connect() as c:
        c.assert_reply(b"set auth 0 0 13\r\ncarol newpass\r\n", b"STORED\r\n")
    assert auth_server.proc.poll() is None


def start_fails(server_factory, args):
    proc = server_factory(args, wait=False)
    code = proc.proc.wait(10)
    return code, proc.proc.stderr.read().decode()


def test_missing_auth_file_fails_start(server_factory, tmp_path):
    missing = tmp_path / "no-such-file"
    code, err = start_fails(server_factory, ["-Y", missing])
    assert code == 1
    assert str(missing) in err


def test_malformed_auth_file_fails_start(server_factory, tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("alice:secret\n\nbob:x\n")   # an empty line is malformed too
    code, err = start_fails(server_factory, ["-Y", bad])
    assert code == 1
    assert str(bad) in err


@pytest.mark.parametrize("extra", [["-B", "binary"], ["-B", "auto"]])
def test_binary_protocol_refused_with_auth(server_factory, auth_file, extra):
    code, err = start_fails(server_factory, ["-Y", auth_file] + extra)
    assert code == 64
    assert "binary" in err.lower() or "BINARY" in err


def test_udp_refused_with_auth(server_factory, auth_file):
    code, err = start_fails(server_factory, ["-Y", auth_file, "-U", free_port(socket.SOCK_DGRAM)])
    assert code == 64
    assert "UDP" in err


def test_ascii_protocol_allowed_with_auth(server_factory, auth_file):
    with server_factory(["-Y", auth_file, "-B", "ascii"]).connect() as c:
        c.assert_reply(AUTH, b"STORED\r\n")
