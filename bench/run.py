#!/usr/bin/python3
"""Side-by-side benchmark: memkeep (the candidate) against Debian's memcached (the baseline).

What it measures (see docs/BENCHMARKS.md for the method and why):
  mix    90% get / 10% set, 16-byte keys, 100-byte values (memcaslap)
  set    100% set, 16-byte keys, 100-byte values (memcaslap)
  mget   multiget of 10 keys per request, 100-byte values (memcaslap -d 10)
  memory resident memory per item after storing 1,000,000 items of 100-byte
         values under distinct 12-byte keys (pipelined socket loader below)

Fairness on a shared 2-core machine: both servers run AT THE SAME TIME, each
driven by its own memcaslap with identical settings. By default both server
processes are pinned together on CPU 0 and both load generators (and the
latency sampler) on CPU 1, so whatever else runs on the machine slows both
sides alike. A run is several such paired rounds; the report gives per-round
figures, medians, and the median of the per-round ratios candidate/baseline:
the throughput ratio (requests/s) and the CPU efficiency ratio (server CPU time
per request, read from /proc/PID/stat), which stays fair when the faster server
is held back by its load generator.

Latency: memcaslap only gives an average and a log2 histogram, too coarse for
p99, so bench/latency_sampler.cc (compiled on first use) sends one request per
millisecond to each server during the round and reports exact p50/p99.

Every process started here is stopped by its PID at the end, also on Ctrl-C,
SIGTERM or an error. All traffic goes to 127.0.0.1.

Usage:
  bench/run.py                      # memkeep (build/memkeep) vs memcached
  bench/run.py --calibrate          # memcached vs a second memcached (ratio ~1.0)
  bench/run.py --rounds 5 --duration 10 --threads 1 --workloads mix,set,mget,memory
Raw outputs and the report go to bench/results/<timestamp>-<label>/.
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SAMPLER_SOURCE = BENCH_DIR / "latency_sampler.cc"
SAMPLER_BINARY = RESULTS_DIR / ".bin" / "latency_sampler"
HOST = "127.0.0.1"


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------

@dataclass
class Workload:
    name: str
    title: str
    set_proportion: float
    get_proportion: float
    division: int  # keys per get request (memcaslap -d)
    window: str  # memcaslap -w: distinct keys per connection
    sampler_op: str  # what the latency sampler sends: get, set or mget

    def memcaslap_config(self):
        # memcaslap refuses keys shorter than 16 bytes, so 16 is the closest to
        # the 12-byte keys of the memory workload.
        return (
            "key\n16 16 1\n"
            "value\n100 100 1\n"
            f"cmd\n0 {self.set_proportion}\n1 {self.get_proportion}\n"
        )


WORKLOADS = {
    "mix": Workload("mix", "90% get / 10% set, 100-byte values", 0.1, 0.9, 1, "10k", "get"),
    "set": Workload("set", "100% set, 100-byte values", 1.0, 0.0, 1, "10k", "set"),
    # With no sets in the mix memcaslap first stores every key of each
    # connection's window (warm-up), then only reads; a 1k window keeps that short.
    "mget": Workload("mget", "multiget of 10 keys, 100-byte values", 0.0, 1.0, 10, "1k", "mget"),
}


# --------------------------------------------------------------------------
# Processes: every child is recorded and stopped by PID
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: get SIGTERM if this script dies (even by SIGKILL)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ProcessGroup:
    """Children started by this run; stop_all() stops each one by its PID."""

    def __init__(self):
        self.children = []

    def start(self, cmd, **popen_kwargs):
        # start_new_session: a Ctrl-C reaches only this script, which then
        # stops the children itself, in order, by PID.
        proc = subprocess.Popen(
            [str(c) for c in cmd], start_new_session=True, preexec_fn=_die_with_parent, **popen_kwargs
        )
        self.children.append(proc)
        return proc

    def start_logged(self, cmd, log_path):
        """start() with stdout and stderr going to log_path."""
        with open(log_path, "wb") as log:  # the child keeps its own copy
            return self.start(cmd, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, proc, timeout=5.0):
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self.children:
            self.children.remove(proc)

    def stop_all(self):
        for proc in reversed(list(self.children)):
            self.stop(proc)


PROCESSES = ProcessGroup()


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def handle_stop_signals():
    """Ctrl-C, SIGTERM and SIGHUP end the run through the normal cleanup
    (every started process stopped by PID). Explicit, because a shell starts
    background jobs with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)


def publish_report(outdir, report):
    """Writes the markdown report next to the raw results and prints it."""
    (outdir / "report.md").write_text(report)
    print(report)
    print(f"raw results: {outdir}", file=sys.stderr)


def run_cli(main):
    """The entry point of every bench script."""
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        sys.exit("interrupted; every process this run started has been stopped")


def wait_listening(label, proc, port, cmd, log_path, timeout=10.0):
    """Returns once `proc` accepts connections on `port`; raises (with the
    end of its log) if it exits or does not listen within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{label} exited early ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{label} did not listen within {timeout:.0f} s: {' '.join(map(str, cmd))}")


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pinned(cmd, cpus):
    return (["taskset", "-c", cpus] if cpus else []) + list(cmd)


@dataclass
class Server:
    label: str
    binary: Path
    port: int
    proc: subprocess.Popen
    cmd: list
    stderr_path: Path


def start_server(label, binary, args, cpus, outdir, extra_args=()):
    """Starts `binary` with the common flags (+ extra_args, e.g. storage
    options) pinned to `cpus`; returns once it accepts connections."""
    port = free_port()
    cmd = [str(binary), "-p", str(port), "-l", HOST, "-m", str(args.memory_mb), "-t", str(args.threads),
           "-c", "4096"] + [str(a) for a in extra_args]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]  # memcached refuses to run as root without it
    stderr_path = outdir / f"server-{label}.stderr"
    with open(stderr_path, "wb") as stderr_log:
        proc = PROCESSES.start(pinned(cmd, cpus), stdout=subprocess.DEVNULL, stderr=stderr_log)
    server = Server(label, Path(binary), port, proc, cmd, stderr_path)
    wait_listening(label, proc, port, cmd, stderr_path)
    return server


def stop_server(server):
    PROCESSES.stop(server.proc)


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def cpu_busy_counters():
    """{"cpu0": (busy_ticks, total_ticks), ...} from /proc/stat: how busy each
    CPU was, whoever used it (our processes or other work on the machine)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            idle = ticks[3] + ticks[4]
            out[name] = (sum(ticks) - idle, sum(ticks))
    return out


def busy_percent(before, after, cpus=""):
    """How busy the CPUs in the comma list `cpus` ("0,1"; empty: all) were,
    together, between two cpu_busy_counters()."""
    names = [f"cpu{c}" for c in cpus.split(",")] if cpus else [c for c in after if c in before]
    busy = sum(after[c][0] - before[c][0] for c in names)
    total = sum(after[c][1] - before[c][1] for c in names)
    return 100.0 * busy / max(1, total)


def busy_percent_by_cpu(before, after):
    """{"cpu0": percent, ...} between two cpu_busy_counters()."""
    return {c: busy_percent(before, after, c[3:]) for c in after if c in before}


def loadavg():
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def vm_rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stats(port, group=b""):
    """The server's `stats` as a dict (empty if it does not answer)."""
    buf = b""
    try:
        with socket.create_connection((HOST, port), timeout=5.0) as sock:
            sock.sendall(b"stats" + (b" " + group if group else b"") + b"\r\n")
            deadline = time.monotonic() + 5.0
            while not (buf.endswith(b"END\r\n") or buf.startswith(b"ERROR")) and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError:
        pass
    out = {}
    for line in buf.split(b"\r\n"):
        if line.startswith(b"STAT "):
            parts = line.split(b" ", 2)
            if len(parts) == 3:
                out[parts[1].decode()] = parts[2].decode(errors="replace")
    return out


# --------------------------------------------------------------------------
# Latency sampler
# --------------------------------------------------------------------------

def build_cxx(source, binary, std="c++17", libs=()):
    """Compiles a one-file bench tool into binary unless it is newer than its
    source; the rename makes a concurrent run see the old or the new binary.
    `libs` are linker flags after the source (kvload: KVLOAD_LIBS)."""
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not compiler:
        raise RuntimeError(f"no C++ compiler to build {source}")
    tmp = binary.with_name(f"{binary.name}.tmp{os.getpid()}")
    subprocess.run([compiler, "-O2", f"-std={std}", "-o", str(tmp), str(source), *libs], check=True)
    tmp.replace(binary)
    return binary


# bench/kvload.cc speaks TLS (--tls) through OpenSSL (Debian libssl-dev).
KVLOAD_LIBS = ("-lssl", "-lcrypto")


def build_sampler():
    return build_cxx(SAMPLER_SOURCE, SAMPLER_BINARY)


def realtime_prefix():
    """`chrt -f 1` when allowed: the sampler then reads a reply as soon as it
    arrives instead of waiting behind the busy load generators on its CPU,
    which would add client-side delay to both servers' figures."""
    if shutil.which("chrt") and subprocess.run(["chrt", "-f", "1", "true"], capture_output=True).returncode == 0:
        return ["chrt", "-f", "1"]
    return []


SAMPLER_LINE = re.compile(
    r"^(\S+) samples=(\d+) errors=(\d+) p50_us=([\d.]+) p90_us=([\d.]+) p99_us=([\d.]+) "
    r"p999_us=([\d.]+) max_us=([\d.]+) mean_us=([\d.]+)$"
)


def parse_sampler(text):
    out = {}
    for line in text.splitlines():
        m = SAMPLER_LINE.match(line.strip())
        if m:
            out[m.group(1)] = {
                "samples": int(m.group(2)), "errors": int(m.group(3)), "p50_us": float(m.group(4)),
                "p90_us": float(m.group(5)), "p99_us": float(m.group(6)), "p999_us": float(m.group(7)),
                "max_us": float(m.group(8)), "mean_us": float(m.group(9)),
            }
    return out


# --------------------------------------------------------------------------
# memcaslap
# --------------------------------------------------------------------------

def parse_memcaslap(text):
    """Requests completed, run time and client-side counters from memcaslap's output.

    "Total Statistics (N events)" counts requests (a 10-key multiget is one
    event; warm-up sets are not counted). The final "Ops:" counts keys instead
    (a multiget counts 10) plus warm-up sets, so it is not used for throughput.
    """
    result = {}
    m = re.search(r"Total Statistics \((\d+) events\)", text)
    if m:
        result["requests"] = int(m.group(1))
        avg = re.search(r"Avg:\s+(\d+)", text[m.end():])
        if avg:
            result["memcaslap_avg_us"] = int(avg.group(1))
    m = re.search(r"Run time: ([\d.]+)s Ops: (\d+) TPS: (\d+)", text)
    if m:
        result["run_time_s"] = float(m.group(1))
        result["ops_reported"] = int(m.group(2))
    for counter in ("cmd_get", "cmd_set", "get_misses"):
        m = re.search(rf"^{counter}: (\d+)", text, re.M)
        if m:
            result[counter] = int(m.group(1))
    if "requests" in result and result.get("run_time_s"):
        result["requests_per_s"] = result["requests"] / result["run_time_s"]
    # memcaslap prints "<FD REPLY" for every reply it did not expect (such as
    # CLIENT_ERROR); a failed set is retried as a set, so errors inflate req/s.
    errors = re.findall(r"^<\d+ (.*)$", text, re.M)
    result["error_replies"] = len(errors)
    if errors:
        result["first_error"] = errors[0][:120]
    return result


def validity_problems(workload, fig, concurrency):
    """Reasons this server's figures in a round do not measure the workload."""
    problems = []
    if fig.get("error_replies"):
        problems.append(f"{fig['error_replies']:,} unexpected replies reported by memcaslap "
                        f"(first: `{fig.get('first_error', '')}`)")
    gets, sets = fig.get("cmd_get", 0), fig.get("cmd_set", 0)
    if workload.set_proportion == 0:
        # Get-only: the only sets are the warm-up, one per key of each
        # connection's window ("1k" = 1024 keys); memcaslap sets a key again,
        # instead of reading it, while its earlier set has not succeeded.
        warmup_sets = concurrency * int(workload.window.rstrip("k")) * 1024
        if gets == 0 or sets > warmup_sets:
            problems.append(f"{sets:,} sets and {gets:,} gets, expected {warmup_sets:,} warm-up sets then only gets")
    elif workload.get_proportion > 0:
        share = gets / (gets + sets) if gets + sets else 0.0
        if abs(share - workload.get_proportion) > 0.05:
            problems.append(f"gets were {100 * share:.0f}% of commands, expected {100 * workload.get_proportion:.0f}%")
    if gets:
        if fig.get("get_misses", 0) > 0.01 * gets:
            problems.append(f"{100 * fig['get_misses'] / gets:.1f}% of gets missed (memcached: 0%)")
    lat = fig.get("latency") or {}
    if not lat:
        problems.append("no latency figures from the sampler")
    elif lat.get("errors"):
        problems.append(f"the latency sampler got {lat['errors']} wrong or missing replies")
    return problems


def memcaslap_command(server, workload, config_path, args):
    cmd = ["memcaslap", "-s", f"{HOST}:{server.port}", "-F", str(config_path), "-t", f"{args.duration}s",
           "-T", "1", "-c", str(args.concurrency), "-w", workload.window, "-S", f"{args.duration}s"]
    if workload.division > 1:
        cmd += ["-d", str(workload.division)]
    if args.binary:
        cmd.append("-B")   # memcaslap's binary protocol; both servers run -B auto
    return cmd


# --------------------------------------------------------------------------
# One paired round
# --------------------------------------------------------------------------

def run_round(workload, servers, round_index, args, outdir, sampler_binary, rt_prefix):
    """Drive every server at the same moment with its own memcaslap; sample latency."""
    config_path = outdir / f"{workload.name}.cfg"
    config_path.write_text(workload.memcaslap_config())
    # Alternate which server's load generator starts first (they start
    # microseconds apart, but nothing should always favour one side).
    order = servers if round_index % 2 == 0 else list(reversed(servers))
    round_name = "warmup" if round_index < 0 else f"round{round_index + 1}"

    round_cpu_before = {s.label: cpu_seconds(s.proc.pid) for s in servers}
    loadgens = {}
    for server in order:
        raw = outdir / f"{workload.name}-{round_name}-{server.label}.memcaslap.out"
        command = pinned(memcaslap_command(server, workload, config_path, args), args.client_cpus)
        loadgens[server.label] = (PROCESSES.start_logged(command, raw), raw)

    # Sample the steady middle of the round: skip memcaslap's start-up (it
    # builds its key tables, connects, and for mget stores its keys first),
    # stop before the load generators do. CPU use is measured over the same window.
    delay = min(1.5, args.duration * 0.15)
    sample_seconds = max(0.5, args.duration - delay - 0.5)
    time.sleep(delay)
    sampler_raw = outdir / f"{workload.name}-{round_name}.sampler.out"
    sampler_cmd = rt_prefix + pinned(
        [sampler_binary, "--op", workload.sampler_op, "--duration-s", f"{sample_seconds:.2f}",
         "--interval-us", str(args.sample_interval_us)]
        + [x for s in order for x in ("--target", f"{s.label}={HOST}:{s.port}")],
        args.client_cpus)
    cpu_before = {s.label: cpu_seconds(s.proc.pid) for s in servers}
    busy_before = cpu_busy_counters()
    window_start = time.monotonic()
    sampler = PROCESSES.start_logged(sampler_cmd, sampler_raw)

    deadline = time.monotonic() + args.duration + 30.0
    for proc in [sampler] + [p for p, _ in loadgens.values()]:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"warning: a load process overran its time and was stopped: {proc.args}", file=sys.stderr)
        PROCESSES.stop(proc)
        if proc is sampler:
            window = time.monotonic() - window_start
            cpu_after = {s.label: cpu_seconds(s.proc.pid) for s in servers}
            busy_after = cpu_busy_counters()
    round_cpu_after = {s.label: cpu_seconds(s.proc.pid) for s in servers}

    latency = parse_sampler(sampler_raw.read_text(errors="replace"))
    figures = {}
    for server in servers:
        proc, raw = loadgens[server.label]
        load = parse_memcaslap(raw.read_text(errors="replace"))
        if "requests_per_s" not in load:
            raise RuntimeError(f"could not parse memcaslap output {raw} (server {server.label} "
                               f"alive: {server.proc.poll() is None})")
        figures[server.label] = {
            **load,
            "latency": latency.get(server.label, {}),
            "server_cpu_percent": 100.0 * (cpu_after[server.label] - cpu_before[server.label]) / window,
            # Server CPU over the whole round per request counted by memcaslap:
            # the efficiency figure that stays fair when one side is limited by
            # its load generator rather than by its own CPU.
            "server_cpu_us_per_request": 1e6 * (round_cpu_after[server.label] - round_cpu_before[server.label])
            / max(1, load["requests"]),
        }
        figures[server.label]["problems"] = validity_problems(workload, figures[server.label], args.concurrency)
    figures["cpu_busy_percent"] = busy_percent_by_cpu(busy_before, busy_after)
    return figures


# --------------------------------------------------------------------------
# Memory per item
# --------------------------------------------------------------------------

def load_items(port, count, key_length=12, value_length=100, batch=1000):
    """Stores `count` distinct keys of exactly key_length bytes, pipelined, and
    checks every reply is STORED."""
    value = b"v" * value_length
    digits = key_length - 1
    assert len(str(count - 1)) <= digits
    with socket.create_connection((HOST, port), timeout=30.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, count, batch):
            n = min(batch, count - start)
            request = b"".join(
                b"set k%0*d 0 0 %d\r\n%s\r\n" % (digits, i, value_length, value) for i in range(start, start + n)
            )
            sock.sendall(request)
            want = len(b"STORED\r\n") * n
            buf = bytearray()
            while len(buf) < want:
                chunk = sock.recv(want - len(buf))
                if not chunk:
                    raise RuntimeError("server closed the connection while loading")
                buf += chunk
            if bytes(buf) != b"STORED\r\n" * n:
                raise RuntimeError(f"unexpected reply while loading: {bytes(buf[:80])!r}")


def wait_until_settled(server, interval=0.5, stable_polls=3, limit_seconds=20.0):
    """RSS once the server has finished growing after the load.

    memcached grows its hash table in a background thread, in steps (power 19,
    then 20 for a million items), and a step only proceeds while its worker
    thread handles events; the `stats` polls here provide those events. The
    RSS counts once it and hash_is_expanding have not changed for a few polls.
    """
    deadline = time.monotonic() + limit_seconds
    previous, unchanged = None, 0
    while time.monotonic() < deadline:
        server_stats = stats(server.port)
        state = (vm_rss_bytes(server.proc.pid), server_stats.get("hash_is_expanding", "0"),
                 server_stats.get("hash_power_level"))
        unchanged = unchanged + 1 if state == previous and state[1] == "0" else 0
        if unchanged >= stable_polls:
            break
        previous = state
        time.sleep(interval)
    return vm_rss_bytes(server.proc.pid)


def measure_memory(label, binary, args, outdir):
    server = start_server(f"{label}-memory", binary, args, args.server_cpus, outdir)
    try:
        time.sleep(0.2)
        idle_rss = vm_rss_bytes(server.proc.pid)
        started = time.monotonic()
        load_items(server.port, args.items)
        load_seconds = time.monotonic() - started
        loaded_rss = wait_until_settled(server)
        server_stats = stats(server.port)
    finally:
        stop_server(server)
    curr_items = int(server_stats["curr_items"]) if "curr_items" in server_stats else None
    return {
        "idle_rss_bytes": idle_rss,
        "loaded_rss_bytes": loaded_rss,
        "items_loaded": args.items,
        "curr_items": curr_items,
        "bytes_per_item": (loaded_rss - idle_rss) / args.items,
        "load_seconds": load_seconds,
        "stats": server_stats,
    }


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec="{:,.0f}"):
    return "n/a" if value is None else spec.format(value)


def latency_pair(p50, p99, errors=0):
    if p50 is None:
        return "n/a"
    return f"{p50:,.0f} / {p99:,.0f}" + (f" ({errors} err)" if errors else "")


def busy_cell(round_figures):
    busy = round_figures.get("cpu_busy_percent") or {}
    return " / ".join(f"{busy[cpu]:.0f}" for cpu in sorted(busy, key=lambda c: int(c[3:]))) or "n/a"


def miss_percent(fig):
    gets = fig.get("cmd_get")
    return 100.0 * fig.get("get_misses", 0) / gets if gets else None


def summarize(rounds, base, cand):
    """Medians over the rounds. Ratios are taken within each round first (the
    two servers ran at the same moment), then the median of those is reported."""

    def med(label, key):
        return median([r[label].get(key) for r in rounds])

    def lat(label, key):
        return median([(r[label].get("latency") or {}).get(key) for r in rounds])

    ratios = [r[cand]["requests_per_s"] / r[base]["requests_per_s"] for r in rounds]
    cpu_ratios = [r[base]["server_cpu_us_per_request"] / r[cand]["server_cpu_us_per_request"]
                  for r in rounds if r[cand]["server_cpu_us_per_request"] > 0]
    return {
        "base_rps": med(base, "requests_per_s"), "cand_rps": med(cand, "requests_per_s"),
        "ratio": median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "cpu_ratio": median(cpu_ratios),
        "base_cpu_us": med(base, "server_cpu_us_per_request"), "cand_cpu_us": med(cand, "server_cpu_us_per_request"),
        "base_cpu": med(base, "server_cpu_percent"), "cand_cpu": med(cand, "server_cpu_percent"),
        "base_p50": lat(base, "p50_us"), "base_p99": lat(base, "p99_us"),
        "cand_p50": lat(cand, "p50_us"), "cand_p99": lat(cand, "p99_us"),
    }


def workload_tables(workload, rounds, base, cand):
    lines = [f"### {workload.name}: {workload.title}", ""]
    if workload.division > 1:
        lines += [f"A request is one `get` of {workload.division} keys.", ""]
    lines += [
        f"| round | {base} req/s | {cand} req/s | ratio | {base} p50 / p99 µs | {cand} p50 / p99 µs "
        f"| CPU % {base} / {cand} | CPU µs per req {base} / {cand} | CPUs busy % | get miss % {base} / {cand} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rounds, 1):
        b, c = r[base], r[cand]
        bl, cl = b.get("latency") or {}, c.get("latency") or {}
        flag = " ⚠" if b.get("problems") or c.get("problems") else ""
        lines.append(
            f"| {i}{flag} | {fmt(b['requests_per_s'])} | {fmt(c['requests_per_s'])} "
            f"| {c['requests_per_s'] / b['requests_per_s']:.3f} "
            f"| {latency_pair(bl.get('p50_us'), bl.get('p99_us'), bl.get('errors'))} "
            f"| {latency_pair(cl.get('p50_us'), cl.get('p99_us'), cl.get('errors'))} "
            f"| {b['server_cpu_percent']:.0f} / {c['server_cpu_percent']:.0f} "
            f"| {b['server_cpu_us_per_request']:.1f} / {c['server_cpu_us_per_request']:.1f} "
            f"| {busy_cell(r)} | {fmt(miss_percent(b), '{:.1f}')} / {fmt(miss_percent(c), '{:.1f}')} |"
        )
    s = summarize(rounds, base, cand)
    lines.append(
        f"| **median** | **{fmt(s['base_rps'])}** | **{fmt(s['cand_rps'])}** | **{s['ratio']:.3f}** "
        f"| {latency_pair(s['base_p50'], s['base_p99'])} | {latency_pair(s['cand_p50'], s['cand_p99'])} "
        f"| {fmt(s['base_cpu'])} / {fmt(s['cand_cpu'])} "
        f"| {fmt(s['base_cpu_us'], '{:.1f}')} / {fmt(s['cand_cpu_us'], '{:.1f}')} | | |"
    )
    return lines + [""]


def memory_table(memory, base, cand):
    mib = 1024 * 1024
    items = memory[base]["items_loaded"]
    lines = [
        f"### memory: {items:,} items, 12-byte keys, 100-byte values",
        "",
        "| server | idle RSS MiB | loaded RSS MiB | curr_items | bytes per item |",
        "|---|---:|---:|---:|---:|",
    ]
    for label in (base, cand):
        m = memory[label]
        lines.append(f"| {label} | {m['idle_rss_bytes'] / mib:.1f} | {m['loaded_rss_bytes'] / mib:.1f} "
                     f"| {fmt(m['curr_items'], '{:,}')} | {m['bytes_per_item']:.1f} |")
    ratio = memory[cand]["bytes_per_item"] / memory[base]["bytes_per_item"]
    lines += ["", f"Bytes per item, {cand} ÷ {base}: **{ratio:.3f}** (lower is better).", ""]
    for label in (base, cand):
        if memory[label]["curr_items"] != memory[label]["items_loaded"]:
            lines += [f"**Warning:** {label} reports curr_items={memory[label]['curr_items']}, "
                      f"expected {memory[label]['items_loaded']:,}.", ""]
    return lines


def render_report(results, args):
    base, cand = results["labels"]["baseline"], results["labels"]["candidate"]
    lines = [
        f"## {cand} vs {base}",
        "",
        f"- date: {results['started_at']}; git commit: {results['git_commit']}",
        f"- command: `{results['command']}`",
        f"- {args.rounds} paired rounds of {args.duration} s per workload"
        + (f", after an uncounted {args.warmup} s warm-up round; " if args.warmup > 0 else "; ") +
        f"server flags `-m {args.memory_mb} -t {args.threads} -c 4096`; one memcaslap per server, "
        f"`-T 1 -c {args.concurrency}`",
        f"- pinning: servers on CPU {args.server_cpus or 'any'}, load generators and sampler on CPU "
        f"{args.client_cpus or 'any'}; latency sampler {'SCHED_FIFO' if results['sampler_realtime'] else 'normal priority'}, "
        f"one request to each server every {args.sample_interval_us} µs",
        f"- load average before / after: {results['loadavg_before']} / {results.get('loadavg_after', '?')}",
        "",
    ]
    if results["workloads"]:
        lines += [
            f"| workload | {base} req/s | {cand} req/s | throughput ratio (min–max) "
            f"| CPU µs per req {base} / {cand} | CPU efficiency ratio "
            f"| {base} p50 / p99 µs | {cand} p50 / p99 µs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, rounds in results["workloads"].items():
            s = summarize(rounds, base, cand)
            flag = " ⚠" if any(r[label].get("problems") for r in rounds for label in (base, cand)) else ""
            lines.append(
                f"| {name}{flag} | {fmt(s['base_rps'])} | {fmt(s['cand_rps'])} "
                f"| **{s['ratio']:.3f}** ({s['ratio_min']:.3f}–{s['ratio_max']:.3f}) "
                f"| {fmt(s['base_cpu_us'], '{:.1f}')} / {fmt(s['cand_cpu_us'], '{:.1f}')} "
                f"| {fmt(s['cpu_ratio'], '{:.3f}')} "
                f"| {latency_pair(s['base_p50'], s['base_p99'])} | {latency_pair(s['cand_p50'], s['cand_p99'])} |"
            )
        lines += [
            "",
            f"Throughput ratio: median over rounds of {cand} req/s ÷ {base} req/s in the same round (higher is "
            f"better for {cand}). CPU efficiency ratio: median over rounds of {base} ÷ {cand} server CPU time per "
            "request (higher is better; it stays fair when one side is limited by its load generator). "
            "Latency: medians over rounds of the sampler's per-round p50 and p99.",
            "",
        ]
        warnings = []
        for name, rounds in results["workloads"].items():
            for label in (base, cand):
                flagged = [(i, r[label]["problems"]) for i, r in enumerate(rounds, 1) if r[label].get("problems")]
                if flagged:
                    # The first flagged round's reasons stand for the others (only the counts differ).
                    rounds_text = ", ".join(str(i) for i, _ in flagged)
                    warnings.append(f"- {name}, {label}, round(s) {rounds_text}: " + "; ".join(flagged[0][1]))
        if warnings:
            lines += ["**Warning: some figures do not measure the intended workload; do not trust the rows "
                      "marked ⚠.**", ""] + warnings + [""]
        for name, rounds in results["workloads"].items():
            lines += workload_tables(WORKLOADS[name], rounds, base, cand)
    if results.get("memory"):
        lines += memory_table(results["memory"], base, cand)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", default=str(ROOT / "build" / "memkeep"), help="server under test")
    p.add_argument("--baseline", default="/usr/bin/memcached", help="reference server")
    p.add_argument("--calibrate", action="store_true",
                   help="candidate = a second copy of the baseline (checks the harness is fair: ratio ~1.0)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=10, help="seconds per round")
    p.add_argument("--warmup", type=int, default=2, help="seconds of an uncounted first paired round (0: none)")
    p.add_argument("--threads", type=int, default=1, help="server worker threads (-t), equal for both")
    p.add_argument("--memory-mb", type=int, default=1024, help="server memory limit (-m), equal for both")
    p.add_argument("--concurrency", type=int, default=64, help="memcaslap connections per server")
    p.add_argument("--workloads", default="mix,set,mget,memory",
                   help="comma list of: " + ",".join(list(WORKLOADS) + ["memory"]))
    p.add_argument("--items", type=int, default=1_000_000, help="items for the memory workload")
    p.add_argument("--layout", choices=("shared", "none"), default="shared",
                   help="shared: servers on --server-cpus, clients on --client-cpus; none: no pinning")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--sample-interval-us", type=int, default=1000)
    p.add_argument("--binary", action="store_true",
                   help="drive both servers with the binary protocol (memcaslap -B); the latency "
                        "sampler still speaks the text protocol")
    p.add_argument("--out", help="results directory (default bench/results/<timestamp>-<label>)")
    args = p.parse_args(argv)
    if args.layout == "none":
        args.server_cpus = args.client_cpus = ""
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in args.workloads:
        if w not in WORKLOADS and w != "memory":
            p.error(f"unknown workload {w}")
    if args.rounds < 1 or args.duration < 2:
        p.error("need --rounds >= 1 and --duration >= 2")
    return args



def run_kvload_pair(servers, commands, outdir, name, order, limit):
    """Starts one kvload per server together (`commands[label]` is its command
    line), waits up to `limit` seconds, and returns {label: kvload's JSON
    result, plus "server_cpu_s": that server's CPU seconds over the pair}."""
    cpu_before = {label: cpu_seconds(servers[label].proc.pid) for label in order}
    procs = {}
    for label in order:
        raw = outdir / f"{name}-{label}.kvload.json"
        procs[label] = (PROCESSES.start_logged(commands[label], raw), raw)
    deadline = time.monotonic() + limit
    for label, (proc, _) in procs.items():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"warning: kvload for {label} overran {limit:.0f} s and was stopped ({name})", file=sys.stderr)
        PROCESSES.stop(proc)
    out = {}
    for label, (_, raw) in procs.items():
        text = raw.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.startswith("{")]
        if not lines:
            alive = servers[label].proc.poll() is None
            raise RuntimeError(f"no result from kvload ({name}, {label}; server alive: {alive}):\n{text[-1000:]}")
        out[label] = json.loads(lines[-1])
        out[label]["server_cpu_s"] = cpu_seconds(servers[label].proc.pid) - cpu_before[label]
    return out


def git_commit():
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def main(argv):
    args = parse_args(argv)
    handle_stop_signals()

    candidate_binary = args.baseline if args.calibrate else args.candidate
    if args.calibrate:
        base_label, cand_label = "memcached-A", "memcached-B"
    else:
        base_label, cand_label = Path(args.baseline).name, Path(candidate_binary).name
        if cand_label == base_label:
            cand_label += "-candidate"
    for binary in (args.baseline, candidate_binary):
        if not os.access(binary, os.X_OK):
            sys.exit(f"server binary not found or not executable: {binary}"
                     + ("\n(build memkeep first, or use --calibrate to compare memcached with itself)"
                        if binary == args.candidate else ""))
    if not shutil.which("memcaslap") and any(w in WORKLOADS for w in args.workloads):
        sys.exit("memcaslap not found: apt-get install libmemcached-tools")
    if args.layout == "shared" and len(os.sched_getaffinity(0)) < 2:
        sys.exit("--layout shared needs two CPUs; use --layout none")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = Path(args.out) if args.out else RESULTS_DIR / f"{stamp}-{cand_label}"
    outdir.mkdir(parents=True, exist_ok=True)
    results = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git_commit": git_commit(),
        "command": "bench/run.py " + " ".join(argv),
        "args": vars(args),
        "labels": {"baseline": base_label, "candidate": cand_label},
        "binaries": {"baseline": args.baseline, "candidate": candidate_binary},
        "loadavg_before": loadavg(),
        "workloads": {},
    }
    sampler_binary = build_sampler() if any(w in WORKLOADS for w in args.workloads) else None
    rt_prefix = realtime_prefix()
    results["sampler_realtime"] = bool(rt_prefix)

    try:
        for name in args.workloads:
            if name == "memory":
                continue
            workload = WORKLOADS[name]
            print(f"[{name}] {workload.title}: {args.rounds} x {args.duration} s", file=sys.stderr, flush=True)
            # Fresh servers per workload, so one workload's items do not change the next.
            servers = [start_server(base_label, args.baseline, args, args.server_cpus, outdir),
                       start_server(cand_label, candidate_binary, args, args.server_cpus, outdir)]
            try:
                if args.warmup > 0:
                    warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
                    run_round(workload, servers, -1, warm, outdir, sampler_binary, rt_prefix)
                rounds = []
                for i in range(args.rounds):
                    figures = run_round(workload, servers, i, args, outdir, sampler_binary, rt_prefix)
                    rounds.append(figures)
                    b, c = figures[base_label]["requests_per_s"], figures[cand_label]["requests_per_s"]
                    print(f"  round {i + 1}: {base_label} {b:,.0f} req/s, {cand_label} {c:,.0f} req/s, "
                          f"ratio {c / b:.3f}", file=sys.stderr, flush=True)
                results["workloads"][name] = rounds
                results.setdefault("server_versions", {})
                for s in servers:
                    results["server_versions"][s.label] = stats(s.port).get("version", "unknown")
            finally:
                for s in servers:
                    stop_server(s)

        if "memory" in args.workloads:
            print(f"[memory] loading {args.items:,} items into each server", file=sys.stderr, flush=True)
            results["memory"] = {
                base_label: measure_memory(base_label, args.baseline, args, outdir),
                cand_label: measure_memory(cand_label, candidate_binary, args, outdir),
            }
    finally:
        PROCESSES.stop_all()
        results["loadavg_after"] = loadavg()
        (outdir / "results.json").write_text(json.dumps(results, indent=2, default=str))

    report = render_report(results, args)
    publish_report(outdir, report)


if __name__ == "__main__":
    run_cli(main)
