"""TLS (-Z): text, meta and binary protocols over TLS, client certificates,
plain-text clients on a TLS port, bad certificate files. Checked against
memcached 1.6.18 -Z (Debian's is built with TLS) where the behaviour is
memcached's; the certificates are made here with the openssl command.
"""

import socket
import ssl
import subprocess

import pytest

from conftest import TARGET, Client
from test_binary import GET, SET, request, call, expect, store_extras


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=memkeep test CA",
            "-keyout", d / "ca.key", "-out", d / "ca.crt")
    for name, extension in [("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                            ("client", "extendedKeyUsage=clientAuth")]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", d / f"{name}.key",
                "-out", d / f"{name}.csr")
        (d / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.crt", "-CAkey", d / "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", d / f"{name}.ext", "-out", d / f"{name}.crt")
    # A second CA the server does not trust, and a client certificate it signed.
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other CA",
            "-keyout", d / "other.key", "-out", d / "other.crt")
    return d


def tls_args(pki, *extra):
    # memcached's spelling, which memkeep accepts too.
    options = f"ssl_chain_cert={pki / 'server.crt'},ssl_key={pki / 'server.key'}"
    for item in extra:
        options += "," + item
    return ["-Z", "-o", options]


def client_context(pki, certificate=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki / "ca.crt")
    if certificate:
        context.load_cert_chain(pki / f"{certificate}.crt", pki / f"{certificate}.key")
    return context


def tls_connect(server, context, timeout=5.0):
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    c = Client.__new__(Client)
    c.sock = context.wrap_socket(raw, server_hostname="localhost")
    c.buf = b""
    return c


@pytest.fixture
def tls_server(pki, server_factory):
    return server_factory(tls_args(pki))


@pytest.fixture
def tclient(pki, tls_server):
    c = tls_connect(tls_server, client_context(pki))
    yield c
    c.close()


def test_text_protocol_over_tls(tclient):
    tclient.assert_reply(b"set k 5 0 5\r\nhello\r\n", b"STORED\r\n")
    tclient.assert_reply(b"get k\r\n", b"VALUE k 5 5\r\nhello\r\nEND\r\n")
    tclient.assert_reply(b"delete k\r\n", b"DELETED\r\n")
    tclient.assert_reply(b"get k\r\n", b"END\r\n")


def test_meta_protocol_over_tls(tclient):
    tclient.assert_reply(b"ms mk 3 F9 T0\r\nabc\r\n", b"HD\r\n")
    tclient.assert_reply(b"mg mk v f k\r\n", b"VA 3 f9 kmk\r\nabc\r\n")
    tclient.assert_reply(b"mn\r\n", b"MN\r\n")


def test_binary_protocol_over_tls(tclient):
    expect(call(tclient, request(SET, b"bk", store_extras(3), b"binary value")), SET, cas=None)
    expect(call(tclient, request(GET, b"bk", opaque=4)), GET, extras=b"\0\0\0\3", value=b"binary value",
           opaque=4, cas=None)


def test_large_values_and_pipelines_over_tls(tclient):
    value = bytes(range(256)) * 2000   # 512000 bytes: many TLS records each way
    tclient.assert_reply(b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n", b"STORED\r\n")
    expected = b"VALUE big 0 %d\r\n" % len(value) + value + b"\r\nEND\r\n"
    tclient.assert_reply(b"get big\r\n" * 4, expected * 4)
    pipeline = b"".join(b"set p%d 0 0 2\r\nxy\r\n" % i for i in range(300))
    tclient.assert_reply(pipeline, b"STORED\r\n" * 300)


def test_plain_client_on_tls_port_is_closed_and_tls_clients_go_on(pki, tls_server):
    tls = tls_connect(tls_server, client_context(pki))
    tls.assert_reply(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    with tls_server.connect() as plain:
        plain.send(b"version\r\nget k\r\n")
        assert plain.is_closed()
        assert b"VALUE" not in plain.buf and b"VERSION" not in plain.buf
    tls.assert_reply(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n")
    with tls_connect(tls_server, client_context(pki)) as other:
        other.assert_reply(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n")
        stats = other.stats()
        # memkeep counts a plain-text client as a failed handshake; memcached
        # 1.6.18 counts only certificate failures (see test_client_certificate_required).
        assert "ssl_handshake_errors" in stats
        if TARGET == "memkeep":
            assert stats["ssl_handshake_errors"] == "1"
        assert other.stats(b"settings")["ssl_enabled"] == "yes"
    tls.close()


def handshake_refused(server, context):
    """True when the server refuses the TLS session (at the handshake, or at the
    first read with TLS 1.3, where the client learns of it after its Finished)."""
    try:
        c = tls_connect(server, context)
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        c.send(b"version\r\n")
        return c.sock.recv(100) == b""
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        c.sock.close()


def test_client_certificate_required(pki, server_factory):
    server = server_factory(tls_args(pki, f"ssl_ca_cert={pki / 'ca.crt'}", "ssl_verify_mode=2"))
    assert handshake_refused(server, client_context(pki))
    with tls_connect(server, client_context(pki, "client")) as c:
        c.assert_reply(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
        c.assert_reply(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n")
        assert int(c.stats()["ssl_handshake_errors"]) >= 1


def test_client_certificate_from_another_ca_is_rejected(pki, server_factory):
    server = server_factory(tls_args(pki, f"ssl_ca_cert={pki / 'ca.crt'}", "ssl_verify_mode=2"))
    assert handshake_refused(server, client_context(pki, "other"))


@pytest.mark.memkeep_only
def test_tls_ca_flag_requires_client_certificates(pki, server_factory):
    server = server_factory(["-Z", "--tls-cert", pki / "server.crt", "--tls-key", pki / "server.key",
                             "--tls-ca", pki / "ca.crt"])
    assert handshake_refused(server, client_context(pki))
    with tls_connect(server, client_context(pki, "client")) as c:
        c.assert_reply(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
        stats = c.stats(b"settings")
        assert (stats["ssl_verify_mode"], stats["ssl_ca_cert"]) == ("2", str(pki / "ca.crt"))


@pytest.mark.memkeep_only
@pytest.mark.parametrize("args, message", [
    (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], b"cannot load the TLS certificate"),
    (["--tls-cert", "SERVER_CRT", "--tls-key", "CA_KEY"], b"key values mismatch"),
    (["--tls-cert", "SERVER_CRT", "--tls-key", "/nonexistent/key.pem"], b"cannot load the TLS private key"),
    ([], b"needs --tls-cert"),
])
def test_bad_tls_files_fail_at_start(pki, server_factory, args, message):
    args = [str(pki / "server.crt") if a == "SERVER_CRT" else str(pki / "ca.key") if a == "CA_KEY" else a
            for a in args]
    proc = server_factory(["-Z", *args], wait=False)
    assert proc.proc.wait(10) != 0
    assert message in proc.proc.stderr.read()


def test_missing_certificate_file_fails_at_start(server_factory):
    proc = server_factory(["-Z", "-o", "ssl_chain_cert=/nonexistent/cert.pem,ssl_key=/nonexistent/key.pem"],
                          wait=False)
    assert proc.proc.wait(10) != 0


@pytest.mark.memkeep_only
def test_unknown_extended_options_are_named(server_factory):
    proc = server_factory(["-o", "ssl_key=/x,hashpower=20,bogus"], wait=False)
    assert proc.proc.wait(10) == 64
    assert b"unknown options: hashpower, bogus" in proc.proc.stderr.read()


@pytest.mark.memkeep_only
def test_plain_server_has_no_tls_stats(server_factory):
    proc = server_factory([])
    with proc.connect() as c:
        assert "ssl_handshake_errors" not in c.stats()
        assert c.stats(b"settings")["ssl_enabled"] == "no"
