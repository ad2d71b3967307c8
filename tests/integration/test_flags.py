"""Command-line flags and process behaviour of the server.

Covers memcached's flags as memkeep implements them: -p/-l/-s/-a (where the
server listens), -m/-c/-t/-I/-M/-C/-R/-b/-v (limits and switches, checked
through `stats` and `stats settings` and through their effect on commands),
-d/-P (daemon and pidfile), -u (dropping root), -vv (request logging),
-V/-h (version and usage), rejection of unknown flags and bad values,
SIGTERM/SIGINT shutdown, and a second server on a port already in use.

Tests without a marker run against memcached too (MEMKEEP_TEST_TARGET=memcached),
which proves their expected bytes; `memkeep_only` ones check memkeep's own
contract where memcached differs or is silent.
"""

import os
import pwd
import re
import select
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TARGET, Client, ServerProcess, free_port, server_binary

SERVER_NAME = "memcached" if TARGET == "memcached" else "memkeep"
MEBIBYTE = 1024 * 1024


# --------------------------------------------------------------------------
# helpers


class ExactArgsServer(ServerProcess):
    """A server started with exactly `args`.

    ServerProcess always adds `-p PORT -l 127.0.0.1`; tests of -l and -s need
    to choose those flags themselves. memcached refuses to run as root without
    -u, so `-u root` is added for it (and only for it).
    """

    def __init__(self, args, port):
        self.port = port
        self.binary = Path(server_binary())
        cmd = [str(self.binary)]
        if TARGET == "memcached" and os.geteuid() == 0:
            cmd += ["-u", "root"]
        cmd += [str(a) for a in args]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid


@pytest.fixture
def exact_server_factory():
    """start(args, port) -> ExactArgsServer (not yet waited for); stopped by PID at the end."""
    started = []

    def start(args, port):
        proc = ExactArgsServer(args, port)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def is_listening(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def connect_unix(path, server, timeout=10.0):
    """Connect to a unix socket, retrying (bounded) until the server has created it."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            err = server.proc.stderr.read().decode(errors="replace")
            pytest.fail(f"server exited ({server.proc.returncode}): {server.cmd}\n{err}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        try:
            sock.connect(str(path))
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        return client_over(sock)


def client_over(sock):
    """A conftest Client around an already connected socket (Client itself only dials TCP)."""
    client = Client.__new__(Client)
    client.sock = sock
    client.buf = b""
    return client


def settings_of(server):
    with server.connect() as c:
        return c.stats(b"settings")


def general_stats_of(server):
    with server.connect() as c:
        return c.stats()


def read_stderr_until(proc, pattern, timeout=10.0):
    """Read the process's stderr (bounded in time) until a line matches `pattern`.

    Returns (the matching line or None, all bytes read) so a failing caller can
    show what the server did log.
    """
    regex = re.compile(pattern)
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
        for line in seen.decode(errors="replace").splitlines():
            if regex.match(line):
                return line, seen
    return None, seen


def pid_is_gone(pid):
    """True when the process no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def stop_foreign_pid(pid, timeout=10.0):
    """Stop a process that is not our child (a daemon) by PID; escalate to SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_is_gone(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------
# defaults and flags reported by stats settings


DEFAULT_SETTINGS = {
    "maxbytes": str(64 * MEBIBYTE),
    "maxconns": "1024",
    "verbosity": "0",
    "num_threads": "4",
    "item_size_max": str(MEBIBYTE),
    "evictions": "on",
    "cas_enabled": "yes",
    "reqs_per_event": "20",
    "tcp_backlog": "1024",
    "domain_socket": "NULL",
    "umask": "700",
}


def subset(mapping, names):
    return {name: mapping.get(name) for name in names}


def test_defaults(server):
    with server.connect() as c:
        settings = c.stats(b"settings")
        stats = c.stats()
    assert subset(settings, DEFAULT_SETTINGS) == DEFAULT_SETTINGS
    assert settings["tcpport"] == str(server.port)
    assert subset(stats, ["limit_maxbytes", "threads", "max_connections"]) == {
        "limit_maxbytes": str(64 * MEBIBYTE),
        "threads": "4",
        "max_connections": "1024",
    }


# (short flag, long flag, value, stats settings expected, general stats expected)
VALUE_FLAGS = [
    ("-m", "--memory-limit", "128", {"maxbytes": str(128 * MEBIBYTE)}, {"limit_maxbytes": str(128 * MEBIBYTE)}),
    ("-c", "--conn-limit", "100", {"maxconns": "100"}, {"max_connections": "100"}),
    ("-t", "--threads", "2", {"num_threads": "2"}, {"threads": "2"}),
    ("-R", "--max-reqs-per-event", "5", {"reqs_per_event": "5"}, {}),
    ("-b", "--listen-backlog", "64", {"tcp_backlog": "64"}, {}),
    ("-I", "--max-item-size", "2m", {"item_size_max": str(2 * MEBIBYTE)}, {}),
]


@pytest.mark.parametrize("form", ["short", "long"])
def test_value_flags_reported_in_stats(server_factory, form):
    """All value flags at once (one server start per form keeps the file fast)."""
    args, want_settings, want_stats = [], {}, {}
    for short, long, value, settings_expected, stats_expected in VALUE_FLAGS:
        args += [short if form == "short" else long, value]
        want_settings.update(settings_expected)
        want_stats.update(stats_expected)
    server = server_factory(args)
    with server.connect() as c:
        assert subset(c.stats(b"settings"), want_settings) == want_settings
        assert subset(c.stats(), want_stats) == want_stats


@pytest.mark.parametrize("flags, level", [(["-v"], "1"), (["-vv"], "2"), (["--verbose", "--verbose"], "2")])
def test_verbosity_setting(server_factory, flags, level):
    server = server_factory(flags)
    assert settings_of(server)["verbosity"] == level


# --------------------------------------------------------------------------
# -I / --max-item-size


def item_size_args(size_text):
    args = ["-I", size_text]
    if TARGET == "memcached" and size_text == "2k":
        # memcached refuses -I below its 512k slab chunk unless the chunk shrinks too.
        args += ["-o", "slab_chunk_max=1024"]
    return args


@pytest.mark.parametrize("size_text, size_bytes", [("2k", 2048), ("512k", 512 * 1024), ("2m", 2 * MEBIBYTE)])
def test_max_item_size(server_factory, size_text, size_bytes):
    server = server_factory(item_size_args(size_text))
    with server.connect() as c:
        assert c.stats(b"settings")["item_size_max"] == str(size_bytes)
        half = size_bytes // 2
        c.assert_reply(b"set small 0 0 %d\r\n" % half + b"s" * half + b"\r\n", b"STORED\r\n")
        over = size_bytes + 1
        c.assert_reply(
            b"set big 0 0 %d\r\n" % over + b"b" * over + b"\r\n",
            b"SERVER_ERROR object too large for cache\r\n",
        )
        # The refused data block was swallowed: the connection still parses commands.
        c.assert_reply(b"get big\r\n", b"END\r\n")
        c.assert_reply(b"get small\r\n", b"VALUE small 0 %d\r\n" % half + b"s" * half + b"\r\nEND\r\n")


def test_max_item_size_upper_bound_is_accepted(server_factory):
    # 1024m is memcached's maximum; it also needs -m of at least twice the item size.
    server = server_factory(["-I", "1024m", "-m", "2048"])
    assert settings_of(server)["item_size_max"] == str(1024 * MEBIBYTE)


def test_too_large_set_removes_the_old_value(server_factory):
    server = server_factory(["-I", "512k"])
    size = 512 * 1024
    with server.connect() as c:
        c.assert_reply(b"set k 0 0 3\r\nold\r\n", b"STORED\r\n")
        # memcached counts its item header against -I, so a value of exactly -I bytes is too large.
        c.assert_reply(
            b"set k 0 0 %d\r\n" % size + b"x" * size + b"\r\n",
            b"SERVER_ERROR object too large for cache\r\n",
        )
        # memcached unlinks the existing item when a set of it fails, so no stale value is served.
        c.assert_reply(b"get k\r\n", b"END\r\n")


# --------------------------------------------------------------------------
# -M / --disable-evictions


def fill_with_large_values(client, count=200, value_size=100_000):
    """Set `count` values of `value_size` bytes; return the reply line of each set."""
    replies = []
    value = b"v" * value_size
    for i in range(count):
        client.send(b"set fill%d 0 0 %d\r\n" % (i, value_size) + value + b"\r\n")
        replies.append(client.read_line())
    return replies


@pytest.mark.parametrize("flag", ["-M", "--disable-evictions"])
def test_disable_evictions_reports_out_of_memory(server_factory, flag):
    server = server_factory([flag, "-m", "2"])
    with server.connect() as c:
        replies = fill_with_large_values(c)
        assert set(replies) <= {b"STORED\r\n", b"SERVER_ERROR out of memory storing object\r\n"}
        assert replies[0] == b"STORED\r\n"
        assert b"SERVER_ERROR out of memory storing object\r\n" in replies
        # Nothing was evicted to make room: the first value is still there.
        c.send(b"get fill0\r\n")
        assert c.read_line() == b"VALUE fill0 0 100000\r\n"
        c.read_until(b"END\r\n")
        assert c.stats()["evictions"] == "0"
        assert c.stats(b"settings")["evictions"] == "off"


def test_without_disable_evictions_old_items_are_evicted(server_factory):
    server = server_factory(["-m", "2"])
    with server.connect() as c:
        replies = fill_with_large_values(c)
        assert set(replies) == {b"STORED\r\n"}
        c.assert_reply(b"get fill0\r\n", b"END\r\n")
        assert int(c.stats()["evictions"]) > 0


# --------------------------------------------------------------------------
# -C / --disable-cas


@pytest.mark.parametrize("flag", ["-C", "--disable-cas"])
def test_disable_cas(server_factory, flag):
    server = server_factory([flag])
    with server.connect() as c:
        assert c.stats(b"settings")["cas_enabled"] == "no"
        c.assert_reply(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
        c.assert_reply(b"gets k\r\n", b"VALUE k 0 1 0\r\nx\r\nEND\r\n")
        # memcached: with CAS disabled a cas command never succeeds, even with the CAS 0 gets shows.
        c.assert_reply(b"cas k 0 0 1 0\r\ny\r\n", b"EXISTS\r\n")
        c.assert_reply(b"cas k 0 0 1 5\r\nz\r\n", b"EXISTS\r\n")
        c.assert_reply(b"cas missing 0 0 1 0\r\nq\r\n", b"NOT_FOUND\r\n")
        c.assert_reply(b"gets k\r\n", b"VALUE k 0 1 0\r\nx\r\nEND\r\n")


def test_disable_cas_meta_commands_report_cas_zero(server_factory):
    server = server_factory(["-C"])
    with server.connect() as c:
        c.assert_reply(b"ms k 1 c\r\nx\r\n", b"HD c0\r\n")
        c.assert_reply(b"mg k c v\r\n", b"VA 1 c0\r\nx\r\n")


def test_cas_enabled_by_default(server):
    with server.connect() as c:
        c.assert_reply(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
        c.send(b"gets k\r\n")
        header = c.read_line()
        match = re.fullmatch(rb"VALUE k 0 1 (\d+)\r\n", header)
        assert match, header
        cas = int(match.group(1))
        assert cas != 0
        c.assert_reply(b"", b"x\r\nEND\r\n")
        c.assert_reply(b"cas k 0 0 1 %d\r\ny\r\n" % cas, b"STORED\r\n")


# --------------------------------------------------------------------------
# -p, -l: where TCP listens


def test_port_flag_long_form(exact_server_factory):
    port = free_port()
    server = exact_server_factory(["--port", port, "--listen", "127.0.0.1"], port)
    server.wait_ready()
    assert settings_of(server)["tcpport"] == str(port)


def test_listen_comma_list_answers_on_every_address(exact_server_factory):
    port = free_port()
    server = exact_server_factory(["-p", port, "-l", "127.0.0.1,127.0.0.2"], port)
    server.wait_ready()
    for host in ("127.0.0.1", "127.0.0.2"):
        with Client((host, port)) as c:
            c.assert_reply(b"set at_%s 0 0 2\r\nok\r\n" % host.encode(), b"STORED\r\n")
    # Both addresses serve the same cache.
    with Client(("127.0.0.2", port)) as c:
        c.assert_reply(b"get at_127.0.0.1\r\n", b"VALUE at_127.0.0.1 0 2\r\nok\r\nEND\r\n")
    # Only the listed addresses, not every interface.
    assert not is_listening("127.0.0.3", port)


@pytest.mark.memkeep_only  # memcached listens on every interface by default
def test_listen_defaults_to_loopback_only(exact_server_factory):
    port = free_port()
    server = exact_server_factory(["-p", port], port)
    server.wait_ready()
    with server.connect() as c:
        c.send(b"version\r\n")
        assert c.read_line().startswith(b"VERSION ")
    assert not is_listening("127.0.0.2", port)


# --------------------------------------------------------------------------
# -s, -a: unix socket


@pytest.mark.parametrize("mask_args, expected_mode, expected_umask", [
    ([], 0o700, "700"),
    (["-a", "0770"], 0o770, "770"),
    (["--unix-mask", "600"], 0o600, "600"),
])
def test_unix_socket(exact_server_factory, tmp_path, mask_args, expected_mode, expected_umask):
    path = tmp_path / "mk.sock"
    port = free_port()
    server = exact_server_factory(["-p", port, "-l", "127.0.0.1", "-s", path] + mask_args, port)
    with connect_unix(path, server) as c:
        c.assert_reply(b"set k 0 0 2\r\nhi\r\n", b"STORED\r\n")
        c.assert_reply(b"get k\r\n", b"VALUE k 0 2\r\nhi\r\nEND\r\n")
        settings = c.stats(b"settings")
    assert server.proc.poll() is None
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == expected_mode
    assert settings["domain_socket"] == str(path)
    assert settings["umask"] == expected_umask
    # As in memcached, a unix socket disables TCP.
    assert not is_listening("127.0.0.1", port)


def test_unix_socket_long_flag_and_default_port_setting(exact_server_factory, tmp_path):
    path = tmp_path / "mk.sock"
    server = exact_server_factory(["--unix-socket", path], port=None)
    with connect_unix(path, server) as c:
        c.send(b"version\r\n")
        assert c.read_line().startswith(b"VERSION ")
        settings = c.stats(b"settings")
    assert server.proc.poll() is None
    assert settings["domain_socket"] == str(path)
    # With no -p, the reported TCP port is the default even though TCP is off.
    assert settings["tcpport"] == "11211"


# --------------------------------------------------------------------------
# -u, -d, -P


@pytest.mark.skipif(os.geteuid() != 0, reason="-u only switches user when started as root")
@pytest.mark.parametrize("flag", ["-u", "--user"])
def test_user_drops_root(server_factory, flag):
    nobody = pwd.getpwnam("nobody")
    server = server_factory([flag, "nobody"])
    with server.connect() as c:
        c.assert_reply(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    status = Path(f"/proc/{server.pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
    assert uids == [str(nobody.pw_uid)] * 4  # real, effective, saved, filesystem
    assert gids == [str(nobody.pw_gid)] * 4


@pytest.mark.parametrize("daemon_flag, pidfile_flag", [("-d", "-P"), ("--daemon", "--pidfile")])
def test_daemon_writes_pidfile(server_factory, tmp_path, daemon_flag, pidfile_flag):
    pidfile = tmp_path / "server.pid"
    launcher = server_factory([daemon_flag, pidfile_flag, pidfile], wait=False)
    daemon_pid = None
    try:
        # The process we started forks the daemon and exits successfully.
        assert launcher.proc.wait(timeout=10) == 0
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon_pid = int(pidfile.read_text().strip())
        assert daemon_pid != launcher.pid
        deadline = time.monotonic() + 10
        while not is_listening("127.0.0.1", launcher.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        with launcher.connect() as c:
            c.assert_reply(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
            assert c.stats()["pid"] == str(daemon_pid)
    finally:
        if daemon_pid is None and pidfile.exists() and pidfile.read_text().strip().isdigit():
            daemon_pid = int(pidfile.read_text().strip())
        if daemon_pid is not None:
            stop_foreign_pid(daemon_pid)


# --------------------------------------------------------------------------
# -vv request logging


def test_very_verbose_logs_each_request_line(server_factory):
    server = server_factory(["-vv"])
    with server.connect() as c:
        c.assert_reply(b"get foo\r\n", b"END\r\n")
        line, seen = read_stderr_until(server.proc, r"^<\d+ get foo$")
    assert line is not None, f"no '<FD get foo' line on stderr; got {seen[-2000:]!r}"


# --------------------------------------------------------------------------
# -V, -h


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_flag(flag):
    result = subprocess.run([str(server_binary()), flag], capture_output=True, timeout=10)
    assert result.returncode == 0
    assert re.fullmatch(rb"%s \S+\n" % SERVER_NAME.encode(), result.stdout), result.stdout


HELP_MUST_NAME = [
    ("-p", "--port"), ("-l", "--listen"), ("-s", "--unix-socket"), ("-a", "--unix-mask"),
    ("-m", "--memory-limit"), ("-c", "--conn-limit"), ("-t", "--threads"),
    ("-I", "--max-item-size"), ("-M", "--disable-evictions"), ("-C", "--disable-cas"),
    ("-R", "--max-reqs-per-event"), ("-b", "--listen-backlog"), ("-d", "--daemon"),
    ("-P", "--pidfile"), ("-u", "--user"), ("-v", "--verbose"), ("-V", "--version"),
    ("-h", "--help"),
]


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_names_every_flag(flag):
    result = subprocess.run([str(server_binary()), flag], capture_output=True, timeout=10)
    assert result.returncode == 0
    usage = result.stdout.decode()
    missing = []
    for short, long in HELP_MUST_NAME:
        if not re.search(r"(^|[\s,])%s\b" % re.escape(short), usage):
            missing.append(short)
        if not re.search(r"(^|[\s,])%s\b" % re.escape(long), usage):
            missing.append(long)
    assert "-vv" in usage
    assert not missing, f"usage does not name {missing}"


# --------------------------------------------------------------------------
# bad command lines


def run_expecting_failure(args):
    """Run the server with a bad command line; it must exit on its own."""
    cmd = [str(server_binary())] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, timeout=10)


BAD_COMMAND_LINES = [
    # (extra args, names the line may use for the offending flag)
    (["--nonsense"], ["--nonsense"]),
    (["-p", "abc"], ["-p", "--port"]),
    (["-p", "70000"], ["-p", "--port"]),
    (["-m", "0"], ["-m", "--memory-limit"]),
    (["-t", "0"], ["-t", "--threads"]),
    (["-I", "3x"], ["-I", "--max-item-size"]),
    (["-I", "2g"], ["-I", "--max-item-size"]),
    (["-I", "512"], ["-I", "--max-item-size"]),  # below memcached's 1k minimum
    (["-I", "1025m", "-m", "4096"], ["-I", "--max-item-size"]),  # above memcached's 1024m maximum
    (["-c", "-1"], ["-c", "--conn-limit"]),
    (["-c", "0"], ["-c", "--conn-limit"]),
    (["-R", "0"], ["-R", "--max-reqs-per-event"]),
]


@pytest.mark.memkeep_only
@pytest.mark.parametrize("bad_args, flag_names", BAD_COMMAND_LINES, ids=[" ".join(a) for a, _ in BAD_COMMAND_LINES])
def test_bad_command_line_is_refused(bad_args, flag_names):
    port = free_port()
    # -p is left out when the bad flag is -p itself, so it is not given twice.
    base = ["-l", "127.0.0.1"] if bad_args[0] == "-p" else ["-p", port, "-l", "127.0.0.1"]
    result = run_expecting_failure(base + bad_args)
    assert result.returncode != 0
    lines = [line for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert any(name in lines[0] for name in flag_names), lines[0]
    assert not is_listening("127.0.0.1", port)


@pytest.mark.skipif(os.geteuid() != 0, reason="-u only switches user when started as root")
def test_unknown_user_is_refused():
    result = run_expecting_failure(["-p", free_port(), "-l", "127.0.0.1", "-u", "no_such_user_mk"])
    assert result.returncode != 0
    lines = [line for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "no_such_user_mk" in lines[0]


def test_second_server_on_same_port_fails(server, server_factory):
    second = server_factory([], port=server.port, wait=False)
    try:
        out, err = second.proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("second server on a busy port kept running")
    assert second.proc.returncode != 0
    lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    assert len(lines) == 1, lines
    # The first server is unaffected.
    with server.connect() as c:
        c.assert_reply(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")


# --------------------------------------------------------------------------
# signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_with_exit_code_zero(server_factory, sig):
    server = server_factory([])
    with server.connect() as c:
        c.assert_reply(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    os.kill(server.pid, sig)
    try:
        code = server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server did not exit after {sig.name}")
    assert code == 0
    assert not is_listening("127.0.0.1", server.port)


@pytest.mark.memkeep_only  # memcached closes the connection mid-reply on SIGTERM/SIGINT
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_finishes_replies_in_flight(server_factory, sig):
    value_size = 3 * MEBIBYTE
    gets = 4
    server = server_factory(["-I", "4m", "-m", "128"])
    with server.connect() as c:
        c.assert_reply(b"set big 0 0 %d\r\n" % value_size + b"z" * value_size + b"\r\n", b"STORED\r\n")

    # A client with a tiny receive buffer asks for ~12 MB and does not read yet,
    # so most of the replies are still inside the server when the signal comes.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    with client_over(sock) as slow:
        slow.send(b"get big\r\n" * gets)
        time.sleep(0.2)  # let the server start writing; correctness does not depend on it
        os.kill(server.pid, sig)

        # It stops accepting new connections while the slow reply is still pending.
        deadline = time.monotonic() + 10
        while is_listening("127.0.0.1", server.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_listening("127.0.0.1", server.port)
        assert server.proc.poll() is None, "server exited before finishing the reply"

        one_reply = b"VALUE big 0 %d\r\n" % value_size + b"z" * value_size + b"\r\nEND\r\n"
        for _ in range(gets):
            assert slow.read_exact(len(one_reply)) == one_reply
        assert slow.is_closed(timeout=10)
    try:
        code = server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server did not exit after {sig.name} and finishing the reply")
    assert code == 0
