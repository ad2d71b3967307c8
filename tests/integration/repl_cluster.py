"""Helpers for the replication tests (test_replication*.py): nodes, a TCP relay
the test controls, `stats repl`, item snapshots and bounded waits.

Every node is a conftest.ServerProcess started through the `server_factory`
fixture, so it is stopped by its PID when the test ends, pass or fail. A node
remembers its ports and flags, so `node.restart(server_factory)` brings it back
on the same client and replication ports (what its peers' -x point at).

Every node's stderr is drained by a thread into `node.log` (a node that logs
one line per reconnect attempt must never block on a full pipe), and failure
messages of the waits below include the tail of each node's log.

All traffic is on 127.0.0.1. Nothing here asserts on time: waits poll until a
condition holds or a generous deadline passes.
"""

import os
import selectors
import signal
import socket
import struct
import threading
import time


HOST = "127.0.0.1"
# Default deadline of every wait, seconds. Under the sanitizers (TSan runs
# these tests, and a full sync of 40 MB there takes longer than 20 s on a busy
# 2-core machine) it is longer; it only matters when a test fails.
WAIT = 60.0 if os.environ.get("MEMKEEP_SANITIZED") == "1" else 20.0


# --------------------------------------------------------------------------
# ports and waits


_handed_out = set()  # every port free_ports() returned in this test process


def free_ports(n):
    """n distinct ports on 127.0.0.1 that were free a moment ago. All sockets
    are held open together, and a port already handed out in this process is
    never handed out again, so a node's client port cannot be another node's
    replication port that was picked earlier but is not bound yet."""
    socks, ports = [], []
    try:
        for _ in range(n + 200):
            if len(ports) == n:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
            port = s.getsockname()[1]
            if port not in _handed_out:
                ports.append(port)
        assert len(ports) == n, "no free ports left"
        _handed_out.update(ports)
        return ports
    finally:
        for s in socks:
            s.close()


def wait_until(cond, timeout=WAIT, interval=0.05, message="condition", nodes=()):
    """Polls cond() until it returns a true value (which is returned) or the
    deadline passes (AssertionError naming `message`, the last value, and
    the tail of each node's stderr)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() >= deadline:
            logs = "".join(f"\n--- {n.name} stderr (tail) ---\n{n.log_tail()}" for n in nodes)
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}{logs}")
        time.sleep(interval)


def is_listening(port, host=HOST):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# nodes


class Node:
    """A memkeep process with replication flags; `proc` is its ServerProcess."""

    def __init__(self, proc, name, repl_port, args, factory_args):
        self.proc = proc
        self.name = name
        self.repl_port = repl_port
        self.args = args
        self._factory_args = factory_args
        self._log = []
        self._log_lock = threading.Lock()
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        proc.stderr_reader = self._stderr_after_exit   # for a sanitizer report

    # -- process

    @property
    def port(self):
        return self.proc.port

    @property
    def pid(self):
        return self.proc.pid

    @property
    def repl_address(self):
        return f"{HOST}:{self.repl_port}"

    def alive(self):
        return self.proc.proc.poll() is None

    def kill(self):
        """SIGKILL by PID and wait for the exit."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.proc.wait(10)

    def stop(self):
        """SIGTERM by PID (SIGKILL after 10 s); returns the exit code."""
        return self.proc.stop()

    def restart(self, server_factory):
        """A new process with the same ports and flags (after kill() or stop())."""
        assert not self.alive(), "restart() of a running node"
        return start_node(server_factory, **self._factory_args)

    def _drain_stderr(self):
        stream = self.proc.proc.stderr
        try:
            for line in iter(stream.readline, b""):
                with self._log_lock:
                    self._log.append(line.decode(errors="replace"))
        except (ValueError, OSError):
            pass  # the stream was closed by ServerProcess.stop

    def _stderr_after_exit(self):
        """All of stderr once the process has exited (the drain reaches EOF)."""
        self._drain.join(5)
        return self.log_text()

    def log_tail(self, lines=30):
        with self._log_lock:
            return "".join(self._log[-lines:])

    def log_text(self):
        with self._log_lock:
            return "".join(self._log)

    # -- protocol

    def connect(self, timeout=5.0):
        return self.proc.connect(timeout)

    def stats_repl(self):
        with self.connect() as c:
            return c.stats(b"repl")

    def stat(self, name, default=None):
        return self.stats_repl().get(name, default)

    def counter(self, name):
        """An integer line of `stats repl` (a missing line fails the test)."""
        s = self.stats_repl()
        assert name in s, f"{self.name}: no `{name}` in stats repl: {sorted(s)}"
        return int(s[name])

    def __repr__(self):
        return f"Node({self.name}, port={self.port}, repl_port={self.repl_port}, pid={self.pid})"


def start_node(server_factory, name="node", repl_port=None, peers=(), replica_of=None, secret_file=None,
               extra=(), port=None, wait=True):
    """Starts memkeep with `-X repl_port` (a fresh port unless given), `-x P`
    for each peer address in `peers` (str "host:port" or a Node), optionally
    `--replica-of ADDR` and `--repl-secret-file FILE`, plus `extra` flags.
    repl_port=0 leaves -X out. Returns a Node."""
    if repl_port is None:
        repl_port = free_ports(1)[0]
    if port is None:
        port = free_ports(1)[0]
    args = []
    if repl_port:
        args += ["-X", str(repl_port)]
    for peer in peers:
        args += ["-x", peer.repl_address if isinstance(peer, Node) else str(peer)]
    if replica_of is not None:
        args += ["--replica-of", replica_of.repl_address if isinstance(replica_of, Node) else str(replica_of)]
    if secret_file is not None:
        args += ["--repl-secret-file", str(secret_file)]
    args += [str(a) for a in extra]
    factory_args = dict(name=name, repl_port=repl_port, peers=tuple(peers), replica_of=replica_of,
                        secret_file=secret_file, extra=tuple(extra), port=port, wait=wait)
    proc = server_factory(args, port=port, wait=wait)
    return Node(proc, name, repl_port, args, factory_args)


def mesh(server_factory, count, extra=(), names="ABCDEFGH", per_node_extra=None):
    """`count` nodes, each with -x to every other one. per_node_extra: a
    function name -> list of extra flags for that node."""
    repl_ports = free_ports(count)
    nodes = []
    for i in range(count):
        peers = [f"{HOST}:{p}" for j, p in enumerate(repl_ports) if j != i]
        node_extra = list(extra) + list(per_node_extra(names[i]) if per_node_extra else [])
        nodes.append(start_node(server_factory, names[i], repl_port=repl_ports[i], peers=peers, extra=node_extra))
    return nodes


def wait_streaming(nodes, timeout=WAIT):
    """Waits until every node's outgoing links are all `streaming` and each
    node has as many feeds as other nodes pull from it. A node's link count is
    its number of -x/--replica-of flags."""
    def link_count(node):
        return node.args.count("-x") + node.args.count("--replica-of")

    def ready():
        for node in nodes:
            s = node.stats_repl()
            want = link_count(node)
            if int(s.get("repl_links_up", -1)) != want:
                return False
            if any(s.get(f"repl_link_{i}_state") != "streaming" for i in range(want)):
                return False
        return True

    wait_until(ready, timeout, message="every link streaming", nodes=nodes)


# --------------------------------------------------------------------------
# items


def read_items(client, keys):
    """{key: (flags, cas, value)} for the keys present, read with one `gets`."""
    out = {}
    if not keys:
        return out
    client.send(b"gets " + b" ".join(keys) + b"\r\n")
    while True:
        line = client.read_line()
        if line == b"END\r\n":
            return out
        parts = line.split()
        assert parts[0] == b"VALUE" and len(parts) == 5, f"unexpected gets line {line!r}"
        data = client.read_exact(int(parts[3]) + 2)
        assert data.endswith(b"\r\n"), data
        out[parts[1]] = (int(parts[2]), int(parts[4]), data[:-2])


def read_item(client, key):
    """(flags, cas, value) of key, or None."""
    return read_items(client, [key]).get(key)


def snapshot(node, keys, chunk=100):
    """{key: (flags, cas, value)} of `keys` on node (fresh connection)."""
    out = {}
    keys = list(keys)
    with node.connect() as c:
        for i in range(0, len(keys), chunk):
            out.update(read_items(c, keys[i:i + chunk]))
    return out


def diff(snapshots, names):
    """Human-readable differences between snapshots (for failure messages)."""
    lines = []
    keys = sorted(set().union(*[set(s) for s in snapshots]))
    for key in keys:
        values = [s.get(key) for s in snapshots]
        if any(v != values[0] for v in values):
            shown = ", ".join(f"{n}={_short(v)}" for n, v in zip(names, values))
            lines.append(f"{key!r}: {shown}")
    return lines


def _short(item):
    if item is None:
        return "absent"
    flags, cas, value = item
    return f"(f{flags} c{cas} {value[:24]!r}{'...' if len(value) > 24 else ''})"


def wait_converged(nodes, keys, timeout=WAIT):
    """Polls until every node holds exactly the same items (value, flags and
    CAS; or absence) for `keys`; returns the common snapshot."""
    keys = list(keys)
    state = {}

    def same():
        snaps = [snapshot(n, keys) for n in nodes]
        state["snaps"] = snaps
        return all(s == snaps[0] for s in snaps[1:])

    deadline = time.monotonic() + timeout
    while not same():
        if time.monotonic() >= deadline:
            lines = diff(state["snaps"], [n.name for n in nodes])
            logs = "".join(f"\n--- {n.name} stderr (tail) ---\n{n.log_tail()}" for n in nodes)
            stats = "".join(f"\n--- {n.name} stats repl ---\n{_safe_stats(n)}" for n in nodes)
            raise AssertionError(f"nodes did not converge within {timeout}s: {len(lines)} keys differ:\n"
                                 + "\n".join(lines[:20]) + stats + logs)
        time.sleep(0.1)
    return state["snaps"][0]


def wait_item(node, key, expected, timeout=WAIT, nodes=()):
    """Waits until node's (flags, cas, value) of key equals expected (None: absent)."""
    def check():
        with node.connect() as c:
            got = read_item(c, key)
        return (got == expected, got)

    state = {}

    def cond():
        ok, got = check()
        state["got"] = got
        return ok

    wait_until(cond, timeout, message=f"{key!r} on {node.name} == {_short(expected)}", nodes=nodes or (node,))
    return state.get("got")


def _safe_stats(node):
    try:
        return "\n".join(f"{k} {v}" for k, v in sorted(node.stats_repl().items()))
    except OSError as e:
        return f"(no stats: {e})"


# --------------------------------------------------------------------------
# small protocol helpers (exact replies)


def set_ok(client, key, value, flags=0, exptime=0, cmd=b"set"):
    client.assert_reply(b"%s %s %d %d %d\r\n%s\r\n" % (cmd, key, flags, exptime, len(value), value),
                        b"STORED\r\n")


def meta(client, request):
    """Sends a meta request followed by `mn`; returns the reply before `MN`."""
    client.send(request + b"mn\r\n")
    return client.read_until(b"MN\r\n")[:-len(b"MN\r\n")]


def ttl(client, key):
    """Remaining TTL of key (mg <key> t): -1 for none, None when missing."""
    reply = meta(client, b"mg " + key + b" t\r\n")
    if reply == b"EN\r\n":
        return None
    assert reply.startswith(b"HD t") and reply.endswith(b"\r\n"), reply
    return int(reply[4:-2])


# --------------------------------------------------------------------------
# binary protocol (minimal; see test_binary.py for the full builder)

BIN_HEADER = struct.Struct(">BBHBBHIIQ")
B_GET, B_SET, B_ADD, B_REPLACE, B_DELETE, B_INCR, B_DECR, B_QUIT, B_FLUSH = range(9)
B_NOOP, B_APPEND, B_PREPEND, B_TOUCH, B_GAT = 0x0A, 0x0E, 0x0F, 0x1C, 0x1D


def bin_request(opcode, key=b"", extras=b"", value=b"", opaque=0, cas=0):
    return BIN_HEADER.pack(0x80, opcode, len(key), len(extras), 0, 0, len(extras) + len(key) + len(value),
                           opaque, cas) + extras + key + value


def bin_store_extras(flags=0, exptime=0):
    return struct.pack(">II", flags, exptime)


def bin_incr_extras(delta, initial=0, exptime=0):
    return struct.pack(">QQI", delta, initial, exptime)


def bin_call(client, data):
    """Sends one request; returns (opcode, status, extras, key, value, opaque, cas) of the reply."""
    client.send(data)
    magic, opcode, key_length, extras_length, data_type, status, body_length, opaque, cas = BIN_HEADER.unpack(
        client.read_exact(BIN_HEADER.size))
    assert magic == 0x81 and data_type == 0, (magic, data_type)
    body = client.read_exact(body_length)
    return (opcode, status, body[:extras_length], body[extras_length:extras_length + key_length],
            body[extras_length + key_length:], opaque, cas)


# --------------------------------------------------------------------------
# TCP relay


class Relay:
    """A TCP forwarder on 127.0.0.1:<port> to 127.0.0.1:<target_port>, run by
    one thread, that the test can cut and restore.

    cut(): every relayed connection is closed (both sides) and, until
    restore(), every new connection is accepted and reset at once (a refused
    link; the listening port stays ours, so no other process can take it in
    between). stall(): nothing is forwarded any more, but every connection
    stays open and new ones are accepted and held (a silent network: only
    the nodes' own timeouts can notice). restore(): held connections are
    closed, new connections are forwarded again. close(): stops everything
    (also called by the `relays` fixture at the end of a test).
    """

    def __init__(self, target_port, port=None):
        self.target = (HOST, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, port or 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.forwarding = True
        self.stalled = False
        self._held = []  # connections accepted while stalled
        self.accepted = 0
        self.refused = 0
        self._pairs = {}  # socket -> its partner
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.listener, selectors.EVENT_READ, "listener")
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._commands = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"relay-{self.port}", daemon=True)
        self._thread.start()

    @property
    def connections(self):
        return len(self._pairs) // 2

    def _command(self, name):
        done = threading.Event()
        with self._lock:
            self._commands.append((name, done))
        self._wake_w.send(b"x")
        if not done.wait(10):
            raise RuntimeError(f"relay {self.port}: {name} not done")

    def cut(self):
        self._command("cut")

    def restore(self):
        self._command("restore")

    def stall(self):
        self._command("stall")

    def close(self):
        if self._closed:
            return
        self._command("close")
        self._thread.join(10)
        self._wake_w.close()

    def _close_pair(self, sock):
        partner = self._pairs.pop(sock, None)
        for s in (sock, partner):
            if s is None:
                continue
            self._pairs.pop(s, None)
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            except OSError:
                pass
            s.close()

    def _accept(self):
        try:
            client, _ = self.listener.accept()
        except (BlockingIOError, OSError):
            return
        if self.stalled:
            self._held.append(client)  # accepted, never answered
            return
        if not self.forwarding:
            self.refused += 1
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2.0)
        except OSError:
            self.refused += 1
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        self.accepted += 1
        for s in (client, upstream):
            s.setblocking(True)
            s.settimeout(5.0)  # a send that cannot complete in 5 s ends the pair
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pairs[client] = upstream
        self._pairs[upstream] = client
        self._sel.register(client, selectors.EVENT_READ, "data")
        self._sel.register(upstream, selectors.EVENT_READ, "data")

    def _forward(self, sock):
        partner = self._pairs.get(sock)
        if partner is None:
            return
        try:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("eof")
            partner.sendall(data)
        except OSError:
            self._close_pair(sock)

    def _run(self):
        while True:
            for key, _ in self._sel.select(timeout=0.5):
                if key.data == "listener":
                    self._accept()
                elif key.data == "data":
                    self._forward(key.fileobj)
                else:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
            with self._lock:
                commands, self._commands = self._commands, []
            for name, done in commands:
                if name in ("cut", "close", "restore"):
                    for sock in list(self._pairs):
                        self._close_pair(sock)
                    for sock in self._held:
                        sock.close()
                    self._held = []
                    self.stalled = False
                    self.forwarding = name == "restore"
                elif name == "stall":
                    self.stalled = True
                    for sock in list(self._pairs):  # keep them open, stop reading them
                        try:
                            self._sel.unregister(sock)
                        except (KeyError, ValueError):
                            pass
                        self._held.append(sock)
                    self._pairs.clear()
                if name == "close":
                    self._sel.close()
                    self.listener.close()
                    self._wake_r.close()
                    self._closed = True
                    done.set()
                    return
                done.set()
