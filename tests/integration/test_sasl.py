"""SASL on the binary protocol (-S), checked against memcached 1.6.18 -S.

Both servers are configured the same way here: SASL_CONF_PATH names a
directory whose memcached.conf offers PLAIN from a sasldb made with
saslpasswd2 (Debian's memcached is not built with MEMCACHED_SASL_PWDB, so the
password-file tests are memkeep-only).
"""

import shutil
import subprocess

import pytest

from conftest import TARGET
from test_binary import (GET, NOOP, SET, STAT, VERSION, SASL_LIST, SASL_AUTH, SASL_STEP, OK, UNKNOWN,
                         request, read_response, call, expect, store_extras)

AUTH_ERROR, AUTH_CONTINUE = 0x20, 0x21
AUTH_FAILURE = b"Auth failure."

pytestmark = pytest.mark.skipif(shutil.which("saslpasswd2") is None and TARGET == "memcached",
                                reason="needs saslpasswd2 (sasl2-bin)")


def plain(user, password):
    return b"\0" + user + b"\0" + password


@pytest.fixture
def sasl_conf(tmp_path, monkeypatch):
    """A memcached.conf + sasldb with user alice / password secret."""
    sasldb = tmp_path / "sasldb"
    subprocess.run(["saslpasswd2", "-a", "memcached", "-c", "-p", "-f", str(sasldb), "alice"],
                   input=b"secret", check=True)
    (tmp_path / "memcached.conf").write_text(f"mech_list: plain\nsasldb_path: {sasldb}\n")
    monkeypatch.setenv("SASL_CONF_PATH", str(tmp_path))
    monkeypatch.delenv("MEMCACHED_SASL_PWDB", raising=False)
    return tmp_path


@pytest.fixture
def sasl_server(sasl_conf, server_factory):
    return server_factory(["-S"])


@pytest.fixture
def sclient(sasl_server):
    with sasl_server.connect() as c:
        yield c


def authenticate(client, user=b"alice", password=b"secret"):
    expect(call(client, request(SASL_AUTH, b"PLAIN", value=plain(user, password))), SASL_AUTH,
           value=b"Authenticated")


def binary_stats(client, group=b""):
    client.send(request(STAT, group))
    out = {}
    for _ in range(1000):
        response = read_response(client)
        if not response.key:
            return out
        out[response.key.decode()] = response.value.decode()
    raise AssertionError("no end of stats")


def test_list_mechanisms(sclient):
    expect(call(sclient, request(SASL_LIST, opaque=5)), SASL_LIST, value=b"PLAIN", opaque=5)


def test_version_needs_no_authentication(sclient):
    response = call(sclient, request(VERSION, opaque=9))
    assert (response.status, response.opaque) == (OK, 9) and response.value


@pytest.mark.parametrize("data", [
    request(GET, b"k"),
    request(NOOP),
    request(SET, b"k", store_extras(), b"v"),
    request(STAT),
    request(0x99),                       # an unknown opcode: auth is checked first
    request(GET, b"k" * 300),            # so is the key length
])
def test_unauthenticated_commands_get_auth_error_and_close(sclient, data):
    opcode = data[1]
    expect(call(sclient, data), opcode, AUTH_ERROR, value=AUTH_FAILURE, cas=0)
    assert sclient.is_closed()


def test_plain_rejects_a_wrong_password(sclient):
    expect(call(sclient, request(SASL_AUTH, b"PLAIN", value=plain(b"alice", b"wrong"), opaque=3)),
           SASL_AUTH, AUTH_ERROR, value=AUTH_FAILURE, opaque=3)
    expect(call(sclient, request(SASL_AUTH, b"PLAIN", value=plain(b"mallory", b"secret"))),
           SASL_AUTH, AUTH_ERROR, value=AUTH_FAILURE)
    # Still unauthenticated; the connection stays open for another try.
    authenticate(sclient)


def test_plain_accepts_then_commands_work(sclient):
    authenticate(sclient)
    expect(call(sclient, request(SET, b"k", store_extras(7), b"value")), SET, cas=None)
    response = expect(call(sclient, request(GET, b"k")), GET, extras=b"\0\0\0\7", value=b"value", cas=None)
    assert response.cas != 0
    expect(call(sclient, request(NOOP)), NOOP)


def test_step_before_auth_fails(sclient):
    expect(call(sclient, request(SASL_STEP, b"PLAIN", value=plain(b"alice", b"secret"))),
           SASL_STEP, AUTH_ERROR, value=AUTH_FAILURE)
    expect(call(sclient, request(GET, b"k")), GET, AUTH_ERROR, value=AUTH_FAILURE)
    assert sclient.is_closed()


def test_unknown_mechanism_fails(sclient):
    expect(call(sclient, request(SASL_AUTH, b"NOPE", value=b"x")), SASL_AUTH, AUTH_ERROR, value=AUTH_FAILURE)


def test_a_failed_reauthentication_drops_access(sclient):
    authenticate(sclient)
    expect(call(sclient, request(SASL_AUTH, b"PLAIN", value=plain(b"alice", b"wrong"))),
           SASL_AUTH, AUTH_ERROR, value=AUTH_FAILURE)
    expect(call(sclient, request(NOOP)), NOOP, AUTH_ERROR, value=AUTH_FAILURE)
    assert sclient.is_closed()


def test_auth_stats_and_settings(sclient):
    sclient.send(request(SASL_AUTH, b"PLAIN", value=plain(b"alice", b"wrong")))
    read_response(sclient)
    authenticate(sclient)
    stats = binary_stats(sclient)
    assert (stats["auth_cmds"], stats["auth_errors"]) == ("2", "1")
    settings = binary_stats(sclient, b"settings")
    assert settings["auth_enabled_sasl"] == "yes"
    assert settings["binding_protocol"] == "binary"


def test_text_client_is_disconnected(sasl_server):
    with sasl_server.connect() as c:
        # A text command is read as a binary header (24 bytes) with a bad magic byte.
        c.send(b"get a_key_of_some_length\r\n")
        assert c.is_closed()
        assert c.buf == b""


@pytest.mark.parametrize("protocol", ["auto", "ascii"])
def test_sasl_refuses_ascii_at_start(sasl_conf, server_factory, protocol):
    proc = server_factory(["-S", "-B", protocol], wait=False)
    assert proc.proc.wait(10) == 64
    assert b"cannot allow the ASCII protocol while using SASL" in proc.proc.stderr.read()


def test_sasl_with_binary_protocol_flag(sasl_conf, server_factory):
    proc = server_factory(["-S", "-B", "binary"])
    with proc.connect() as c:
        authenticate(c)


def test_without_sasl_the_opcodes_are_unknown(server_factory):
    proc = server_factory([])
    with proc.connect() as c:
        expect(call(c, request(SASL_LIST)), SASL_LIST, UNKNOWN)
        expect(call(c, request(SASL_AUTH, b"PLAIN", value=plain(b"a", b"b"))), SASL_AUTH, UNKNOWN)
        expect(call(c, request(NOOP)), NOOP)


# ---- memkeep only: MEMCACHED_SASL_PWDB (Debian's memcached is built without it) ------

@pytest.fixture
def pwdb_server(tmp_path, monkeypatch, server_factory):
    pwdb = tmp_path / "pwdb"
    pwdb.write_text("alice:secret\nbob:hunter2:ignored:fields\r\n")
    monkeypatch.setenv("MEMCACHED_SASL_PWDB", str(pwdb))
    monkeypatch.delenv("SASL_CONF_PATH", raising=False)
    return server_factory(["-S"])


@pytest.mark.memkeep_only
def test_password_file_accepts_and_rejects(pwdb_server):
    with pwdb_server.connect() as c:
        expect(call(c, request(SASL_LIST)), SASL_LIST, value=b"PLAIN")
        for user, password in [(b"alice", b"wrong"), (b"alice", b"secre"), (b"carol", b"secret"),
                               (b"bob", b"hunter2:ignored")]:
            expect(call(c, request(SASL_AUTH, b"PLAIN", value=plain(user, password))),
                   SASL_AUTH, AUTH_ERROR, value=AUTH_FAILURE)
        authenticate(c, b"bob", b"hunter2")
        expect(call(c, request(NOOP)), NOOP)
    with pwdb_server.connect() as c:
        authenticate(c)
        assert binary_stats(c)["auth_errors"] == "4"
