"""Replication links over TLS (--repl-tls), seen from a relay in the middle.

A Python relay sits between a primary and its replica. With --repl-tls it
sees no key or value in the bytes it forwards, and bytes it injects drop the
link (which reconnects; the data stays correct). Without TLS the same relay
reads everything and its injected record is applied, which is what the TLS
variant is measured against. A node whose certificate another CA signed
cannot join, and a proof relayed from one TLS session into another (a node
in the middle that holds a certificate but not the secret) is refused,
because the proofs cover the TLS exporter (RFC 9266).

The certificates are made here with the openssl command. Every memkeep
process comes from server_factory (stopped by PID); relays listen on
127.0.0.1 and their threads end with the test.
"""

import socket
import ssl
import struct
import subprocess
import threading

import pytest

from repl_cluster import read_item, start_node, wait_until
from test_replication_protocol import RECORDS, frame, mutation_set, read_exact

pytestmark = pytest.mark.memkeep_only

KEY_MARKER = b"relaykey_5f1c2a"
VALUE_MARKER = b"relayvalue_9d3e7b"


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and a node certificate it signed (for 127.0.0.1, any purpose), and
    another CA with a node certificate of its own."""
    d = tmp_path_factory.mktemp("repl_pki")
    for ca in ("ca", "other"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca} test CA",
                "-keyout", d / f"{ca}.key", "-out", d / f"{ca}.crt")
        name = "node" if ca == "ca" else "stranger"
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", d / f"{name}.key",
                "-out", d / f"{name}.csr")
        (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / f"{ca}.crt", "-CAkey", d / f"{ca}.key",
                "-CAcreateserial", "-days", "2", "-extfile", d / f"{name}.ext", "-out", d / f"{name}.crt")
    return d


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret"
    path.write_text("a shared replication secret\n")
    return path


def tls_flags(pki, name="node"):
    return ["--repl-tls", "--tls-cert", pki / f"{name}.crt", "--tls-key", pki / f"{name}.key",
            "--tls-ca", pki / "ca.crt"]


class TappingRelay:
    """Forwards 127.0.0.1:port to target_port, keeps every byte it forwards
    (both directions) in `seen`, and can inject bytes towards the downstream
    (the connecting side) of its latest connection."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.seen = bytearray()
        self.accepted = 0
        self.lock = threading.Lock()
        self.downstream = None
        self.sockets = []
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.accepted += 1
                self.downstream = client
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _pump(self, source, sink):
        source.settimeout(0.2)
        while not self.stopping:
            try:
                data = source.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            with self.lock:
                self.seen += data
                try:
                    sink.sendall(data)
                except OSError:
                    break
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def inject(self, data):
        with self.lock:
            self.downstream.sendall(data)

    def close(self):
        self.stopping = True
        for thread in self.threads:
            thread.join(5)
        for s in self.sockets + [self.listener]:
            s.close()


@pytest.fixture
def relays():
    made = []

    def make(target_port):
        relay = TappingRelay(target_port)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.close()


def value_on(node, key):
    with node.connect() as c:
        item = read_item(c, key)
    return None if item is None else item[2]


@pytest.mark.parametrize("tls", [True, False], ids=["repl-tls", "plaintext"])
def test_a_relay_in_the_middle_reads_and_injects_only_without_tls(server_factory, relays, pki, secret_file, tls):
    extra = tls_flags(pki) if tls else []
    primary = start_node(server_factory, name="A", secret_file=secret_file, extra=extra)
    relay = relays(primary.repl_port)
    replica = start_node(server_factory, name="R", repl_port=0, replica_of=f"127.0.0.1:{relay.port}",
                         secret_file=secret_file, extra=extra)
    nodes = (primary, replica)
    wait_until(lambda: replica.stat("repl_link_0_state") == "streaming", message="the link streaming", nodes=nodes)
    with primary.connect() as c:
        c.assert_reply(b"set %s 0 0 %d\r\n%s\r\n" % (KEY_MARKER, len(VALUE_MARKER), VALUE_MARKER), b"STORED\r\n")
    wait_until(lambda: value_on(replica, KEY_MARKER) == VALUE_MARKER, message="the write replicated", nodes=nodes)
    with relay.lock:
        seen = bytes(relay.seen)
    # What the relay read: with TLS neither the key nor the value.
    assert (KEY_MARKER in seen) == (not tls)
    assert (VALUE_MARKER in seen) == (not tls)

    # The relay injects a well-formed RECORDS frame of its own.
    forged = mutation_set(b"forged", b"evil", version=5 << 40)
    offset = replica.counter("repl_link_0_applied_offset")
    relay.inject(frame(RECORDS, struct.pack("<Q", offset) + forged))
    if not tls:
        # Without TLS it is applied: the secret guards the handshake, not the stream.
        wait_until(lambda: value_on(replica, b"forged") == b"evil", message="the forged record applied", nodes=nodes)
        return
    # With TLS the record does not authenticate: the link drops and reconnects.
    wait_until(lambda: relay.accepted >= 2, message="the link reconnecting after the injection", nodes=nodes)
    wait_until(lambda: replica.stat("repl_link_0_state") == "streaming", message="streaming again", nodes=nodes)
    assert "TLS record refused" in replica.log_text(), replica.log_text()
    with primary.connect() as c:
        c.assert_reply(b"set after_injection 0 0 2\r\nok\r\n", b"STORED\r\n")
    wait_until(lambda: value_on(replica, b"after_injection") == b"ok", message="later writes replicated",
               nodes=nodes)
    assert value_on(replica, b"forged") is None
    assert value_on(replica, KEY_MARKER) == VALUE_MARKER


def test_a_node_whose_certificate_another_ca_signed_cannot_join(server_factory, pki, secret_file):
    primary = start_node(server_factory, name="A", secret_file=secret_file, extra=tls_flags(pki))
    stranger = start_node(server_factory, name="S", repl_port=0, replica_of=primary, secret_file=secret_file,
                          extra=tls_flags(pki, "stranger"))
    nodes = (primary, stranger)
    wait_until(lambda: primary.counter("repl_links_refused") >= 1, message="the primary refusing", nodes=nodes)
    assert "TLS handshake failed" in primary.log_text(), primary.log_text()
    assert primary.counter("repl_full_syncs_served") == 0
    assert stranger.stat("repl_link_0_state") != "streaming"


class TlsProofRelay:
    """A node in the middle that holds a certificate the CA signed but not
    the secret: it terminates the replica's TLS session, opens its own to
    the primary, and forwards the frames between the two sessions."""

    def __init__(self, pki, target_port):
        self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.server_context.load_cert_chain(pki / "node.crt", pki / "node.key")
        self.server_context.load_verify_locations(pki / "ca.crt")
        self.server_context.verify_mode = ssl.CERT_REQUIRED
        self.client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client_context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.client_context.check_hostname = False
        self.client_context.load_cert_chain(pki / "node.crt", pki / "node.key")
        self.client_context.load_verify_locations(pki / "ca.crt")
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.relayed = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                continue
            try:
                raw.settimeout(5)
                downstream = self.server_context.wrap_socket(raw, server_side=True)
                upstream = self.client_context.wrap_socket(socket.create_connection(self.target, timeout=5))
                self.relayed += 1
                # HELLO up -> down, JOIN down -> up, the answer up -> down.
                for source, sink in ((upstream, downstream), (downstream, upstream), (upstream, downstream)):
                    header = read_exact(source, 5)
                    sink.sendall(header + read_exact(source, struct.unpack("<BI", header)[1]))
            except (OSError, ConnectionError, struct.error, ssl.SSLError):
                pass
            finally:
                raw.close()

    def close(self):
        self.stopping = True
        self.thread.join(10)
        self.listener.close()


@pytest.mark.parametrize("with_secret, how", [(True, "flag"), (True, "admin"), (False, "flag")],
                         ids=["secret", "secret-admin-replica-of", "no-secret"])
def test_a_proof_relayed_into_another_tls_session_is_refused(server_factory, pki, secret_file, with_secret, how):
    # how: the member follows the middle from the start (--replica-of), or is
    # made to follow it with the admin command `replication replica-of`.
    secret = secret_file if with_secret else None
    primary = start_node(server_factory, name="A", secret_file=secret, extra=tls_flags(pki))
    middle = TlsProofRelay(pki, primary.repl_port)
    try:
        if how == "flag":
            replica = start_node(server_factory, name="R", repl_port=0, replica_of=f"127.0.0.1:{middle.port}",
                                 secret_file=secret, extra=tls_flags(pki))
        else:
            replica = start_node(server_factory, name="R", secret_file=secret, extra=[*tls_flags(pki), "--admin"])
            with replica.connect() as c:
                c.assert_reply(b"replication replica-of 127.0.0.1:%d\r\n" % middle.port, b"OK\r\n")
        nodes = (primary, replica)
        if not with_secret:
            # Without a secret the CA is all there is: the middle's handshake gets through.
            wait_until(lambda: primary.counter("repl_full_syncs_served") >= 1, message="the relayed handshake",
                       nodes=nodes)
            return
        wait_until(lambda: primary.counter("repl_auth_failures") >= 2, message="relayed proofs refused", nodes=nodes)
        assert middle.relayed >= 2
        assert primary.counter("repl_full_syncs_served") == 0
        assert replica.counter("repl_links_up") == 0
    finally:
        middle.close()


def test_synchronous_writes_over_tls(server_factory, pki, secret_file):
    # --repl-sync: the feed's writer and its acknowledgement reader share one TLS session.
    primary = start_node(server_factory, name="A", secret_file=secret_file,
                         extra=[*tls_flags(pki), "--repl-sync", "1", "--repl-sync-timeout", "5000", "-t", "2"])
    replica = start_node(server_factory, name="R", repl_port=0, replica_of=primary, secret_file=secret_file,
                         extra=tls_flags(pki))
    nodes = (primary, replica)
    wait_until(lambda: primary.counter("repl_feeds") == 1 and replica.stat("repl_link_0_state") == "streaming",
               message="the link streaming", nodes=nodes)
    with primary.connect() as c:
        for i in range(50):
            c.assert_reply(b"set sync%d 0 0 3\r\nv%02d\r\n" % (i, i), b"STORED\r\n")
    # Acknowledged means applied on the replica.
    for i in (0, 25, 49):
        assert value_on(replica, b"sync%d" % i) == b"v%02d" % i
    assert primary.counter("repl_sync_timeouts") == 0


@pytest.mark.parametrize("flags, message", [
    (["--tls-cert", "{pki}/node.crt", "--tls-key", "{pki}/node.key"],
     "--repl-tls: needs --tls-cert FILE, --tls-key FILE and --tls-ca FILE"),
    (["--tls-cert", "{pki}/node.crt", "--tls-key", "{pki}/ca.key", "--tls-ca", "{pki}/ca.crt"],
     "--repl-tls: cannot use --tls-key"),
])
def test_repl_tls_without_usable_files_is_refused_at_start(server_factory, pki, flags, message):
    from test_hostile_replication import start_failure

    code, err = start_failure(["--repl-tls", *[f.format(pki=pki) for f in flags]])
    assert code != 0
    assert message in err, err
