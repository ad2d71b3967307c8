"""Shared fixtures for the integration tests.

Every test talks to a real server process over a real socket. The server under
test is build/memkeep unless MEMKEEP_TEST_TARGET=memcached, which runs the same
tests against Debian's memcached: that is how we check that a test's expected
bytes are memcached's, not our guess of them. Tests that only make sense for
memkeep are marked `@pytest.mark.memkeep_only`.

Every process a test starts is stopped by its PID when the test ends, pass or
fail (see ServerProcess.stop and the `server_factory` fixture).

Under ThreadSanitizer (make test-tsan) a server that finds a data race prints
the report and exits at once with SANITIZER_EXIT_CODE (TSAN_OPTIONS sets
halt_on_error=1 and exitcode=66). `server_factory` fails the test (an error at
teardown, with the report) for every process that ended that way, whether the
test noticed the dead server or not.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMKEEP_BIN = Path(os.environ.get("MEMKEEP_BIN", ROOT / "build" / "memkeep"))
MEMCACHED_BIN = Path(os.environ.get("MEMCACHED_BIN", "/usr/bin/memcached"))
TARGET = os.environ.get("MEMKEEP_TEST_TARGET", "memkeep")
# The exit code of a process that halted on a sanitizer report (TSan's default,
# set explicitly in the Makefile's TSAN_OPTIONS); memkeep never exits with it.
SANITIZER_EXIT_CODE = 66


def pytest_configure(config):
    config.addinivalue_line("markers", "memkeep_only: behaviour memcached does not have")
    config.addinivalue_line("markers", "memcached_only: needs the reference memcached binary")


def pytest_collection_modifyitems(config, items):
    if TARGET != "memcached":
        return
    skip = pytest.mark.skip(reason="memkeep-only behaviour")
    for item in items:
        if "memkeep_only" in item.keywords:
            item.add_marker(skip)


def free_port(kind=socket.SOCK_STREAM):
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One server process on 127.0.0.1, started with extra flags."""

    def __init__(self, binary, args, port=None, wait=True, target=TARGET):
        self.port = port if port is not None else free_port()
        self.binary = Path(binary)
        cmd = [str(self.binary), "-p", str(self.port), "-l", "127.0.0.1"]
        if target == "memcached" and os.geteuid() == 0:
            cmd += ["-u", "root"]
        cmd += [str(a) for a in args]
        self.cmd = cmd
        self.sanitizer_report = ""
        self.stderr_reader = None   # set by whoever drains stderr: () -> all of it
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()   # not yet in server_factory's list: stop it here
                raise

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError(
                    f"server exited early ({self.proc.returncode}): {self.cmd}\n{err.decode(errors='replace')}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"server did not listen within {timeout}s: {self.cmd}")

    def connect(self, timeout=5.0):
        return Client(("127.0.0.1", self.port), timeout)

    def stop(self, sig=None, timeout=10.0):
        """Stop the process by PID; escalate to SIGKILL. Returns the exit code.

        By default memkeep gets SIGTERM; the reference memcached, whose data is
        throwaway here and which takes about a second to exit on SIGTERM once
        it has served a connection, gets SIGKILL.
        """
        if sig is None:
            sig = signal.SIGKILL if self.binary.name == "memcached" else signal.SIGTERM
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.returncode == SANITIZER_EXIT_CODE and not self.sanitizer_report:
            if self.stderr_reader:
                # repl_cluster.Node reads stderr in a thread: ask it.
                self.sanitizer_report = self.stderr_reader()
            elif self.proc.stderr and not self.proc.stderr.closed:
                try:
                    self.sanitizer_report = self.proc.stderr.read().decode(errors="replace")
                except (ValueError, OSError):
                    pass
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return self.proc.returncode


class Client:
    """A raw socket client for asserting exact bytes."""

    def __init__(self, address, timeout=5.0):
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def read_until(self, terminator):
        while terminator not in self.buf:
            self._fill()
        idx = self.buf.index(terminator) + len(terminator)
        out, self.buf = self.buf[:idx], self.buf[idx:]
        return out

    def call(self, request, expected):
        """Send request, read exactly len(expected) bytes, and return them."""
        self.send(request)
        return self.read_exact(len(expected))

    def assert_reply(self, request, expected):
        got = self.call(request, expected)
        assert got == expected, f"{request!r}: expected {expected!r}, got {got!r}"

    def is_closed(self, timeout=2.0):
        """True when the server has closed this connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def stats(self, group=b""):
        req = b"stats" + (b" " + group if group else b"") + b"\r\n"
        self.send(req)
        raw = self.read_until(b"END\r\n")
        out = {}
        for line in raw.split(b"\r\n"):
            if line.startswith(b"STAT "):
                _, name, value = line.split(b" ", 2)
                out[name.decode()] = value.decode()
        return out


def server_binary():
    return MEMCACHED_BIN if TARGET == "memcached" else MEMKEEP_BIN


@pytest.fixture
def server_factory():
    """start(args) -> ServerProcess; every process is stopped when the test ends."""
    started = []

    def start(args=(), binary=None, **kw):
        proc = ServerProcess(binary or server_binary(), list(args), **kw)
        started.append(proc)
        return proc

    yield start
    halted = []
    for proc in started:
        if proc.stop() == SANITIZER_EXIT_CODE:
            halted.append(proc)
    if halted:
        pytest.fail(
            "server halted on a sanitizer report (exit code %d):\n" % SANITIZER_EXIT_CODE
            + "\n".join(f"pid {p.pid} {p.cmd}\n{p.sanitizer_report[:12000]}" for p in halted),
            pytrace=False,
        )


@pytest.fixture
def server(server_factory):
    return server_factory([])


@pytest.fixture
def client(server):
    with server.connect() as c:
        yield c
