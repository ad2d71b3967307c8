#!/usr/bin/python3
"""Durable-storage benchmark: memkeep --storage durable (each --fsync mode)
against memkeep's memory mode and Redis with AOF, driven by one load generator.

Systems (each its own server process, fresh data dir, same settings):
  memory            memkeep --storage memory
  durable-always    memkeep --storage durable --fsync always
  durable-everysec  memkeep --storage durable --fsync everysec
  durable-no        memkeep --storage durable --fsync no
  redis-everysec    redis-server --appendonly yes --appendfsync everysec --save ""
  redis-always      redis-server --appendonly yes --appendfsync always --save ""

Workloads, for each value size (default 100 B and 4 KiB) and pipeline depth
(default 1 and 16), 16 connections: `set` (uniform random keys over --keys
keys, overwriting) and `get` (the same keys, all loaded beforehand and
resident in RAM). The load generator is bench/kvload.cc (speaks the memcached
text protocol and Redis RESP; compiled on first use into bench/results/.bin/),
because memcaslap cannot speak Redis and redis-benchmark cannot speak memcached.

Fairness on a shared 2-core machine: systems run one at a time, in
interleaved rounds (A B C D E F, A B C ..., the starting system rotating each
round), so a slow spell of the machine spreads over all systems instead of
hitting one. Servers are pinned to CPU 0 and the load generator to CPU 1. After
each run the harness waits (bounded) until the server's CPU use has settled, so
background work (RocksDB flushes and compactions, AOF fsync) is charged to the
system that caused it, not to the next one; that work is also counted in the
"server CPU µs per op" figure. Ratios are taken within a round, then the
median over rounds is reported.

--paired (exactly two systems, e.g. durable-everysec,redis-everysec) runs the
two at the same moment instead, as bench/run.py does with memcached: both
servers on CPU 0, both load generators on CPU 1, started together, so
whatever else the machine does during a round hits both alike; a server that
needs less CPU per request gets more done with its share of CPU 0. Ratios
are still taken within a round. On a machine shared with other work this is
the figure to trust; the default (one at a time) is what gives each system's
absolute figures alone.

Every process started here is stopped by its PID at the end, also on Ctrl-C,
SIGTERM or an error. All traffic goes to 127.0.0.1. Data dirs live under the
run's results dir (bench/results/, gitignored) and are deleted at the end
unless --keep-data.

Usage:
  bench/durable.py                                  # about 6 minutes
  bench/durable.py --rounds 5 --duration 3 --value-sizes 100 --pipelines 16
  bench/durable.py --paired --systems durable-everysec,redis-everysec --workloads set --rounds 5
  # a change against the build before it, both at the same moment:
  bench/durable.py --paired --memkeep-b OLD/memkeep --systems durable-everysec,durable-everysec@b --workloads set

A memkeep system name with the suffix @b (durable-everysec@b, memory@b) runs
the binary given by --memkeep-b instead of --memkeep.
"""

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as common  # bench/run.py: process group (stop by PID), pinning, /proc readers  # noqa: E402

BENCH_DIR = common.BENCH_DIR
ROOT = common.ROOT
RESULTS_DIR = common.RESULTS_DIR
HOST = common.HOST
KVLOAD_SOURCE = BENCH_DIR / "kvload.cc"
KVLOAD_BINARY = RESULTS_DIR / ".bin" / "kvload"
PROCESSES = common.PROCESSES

ALL_SYSTEMS = ["memory", "durable-always", "durable-everysec", "durable-no", "redis-everysec", "redis-always"]


# --------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------

def build_kvload():
    if KVLOAD_BINARY.exists() and KVLOAD_BINARY.stat().st_mtime >= KVLOAD_SOURCE.stat().st_mtime:
        return KVLOAD_BINARY
    KVLOAD_BINARY.parent.mkdir(parents=True, exist_ok=True)
    compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not compiler:
        raise RuntimeError("no C++ compiler to build bench/kvload.cc")
    tmp = KVLOAD_BINARY.with_suffix(".tmp")
    subprocess.run([compiler, "-O2", "-std=c++20", "-o", str(tmp), str(KVLOAD_SOURCE), *common.KVLOAD_LIBS],
                   check=True)
    tmp.replace(KVLOAD_BINARY)
    return KVLOAD_BINARY


def snapshot_memkeep(path, outdir, wait_seconds=120.0):
    """Copies the memkeep binary into the run's dir and runs the copy, so a
    rebuild of build-durable/ during the run cannot swap binaries mid-way.
    Waits (bounded) while the binary is missing or still being written."""
    path = Path(path)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            st1 = path.stat()
            time.sleep(1.0)
            st2 = path.stat()
            if st1.st_size == st2.st_size and st1.st_mtime == st2.st_mtime and st2.st_size > 0:
                copy = outdir / "memkeep"
                shutil.copy2(path, copy)
                r = subprocess.run([str(copy), "--version"], capture_output=True, text=True, timeout=10)
                if r.returncode == 0:
                    digest = hashlib.sha256(copy.read_bytes()).hexdigest()[:16]
                    return copy, {"path": str(path), "version": r.stdout.strip(), "sha256_16": digest,
                                  "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st2.st_mtime))}
        except (OSError, subprocess.SubprocessError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"memkeep binary not usable at {path} (waited {wait_seconds:.0f} s)")
        print(f"waiting for {path} (being rebuilt?)", file=sys.stderr, flush=True)
        time.sleep(2.0)


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

@dataclass
class Server:
    label: str
    protocol: str  # memcached | redis
    port: int
    proc: subprocess.Popen
    cmd: list
    data_dir: Path = None
    log_path: Path = None
    stats_before: dict = field(default_factory=dict)


def system_mode(label):
    """The system's mode without the @b binary suffix."""
    return label.split("@", 1)[0]


def server_command(label, port, data_dir, args, memkeep_binary):
    label = system_mode(label)
    if label.startswith("redis-"):
        fsync = label.split("-", 1)[1]
        return "redis", [args.redis, "--port", str(port), "--bind", HOST, "--protected-mode", "no",
                         "--appendonly", "yes", "--appendfsync", fsync, "--save", "", "--dir", str(data_dir),
                         "--daemonize", "no", "--logfile", ""]
    cmd = [str(memkeep_binary), "-p", str(port), "-l", HOST, "-m", str(args.memory_mb),
           "-t", str(args.memkeep_threads), "-c", "4096"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    if label == "memory":
        cmd += ["--storage", "memory"]
    else:
        cmd += ["--storage", "durable", "--data-dir", str(data_dir), "--fsync", label.split("-", 1)[1]]
    return "memcached", cmd


def start_server(label, value_size, args, memkeep_binaries, outdir):
    memkeep_binary = memkeep_binaries[1 if label.endswith("@b") else 0]
    port = common.free_port()
    data_dir = outdir / "data" / f"{label}-{value_size}"
    data_dir.mkdir(parents=True, exist_ok=True)
    if system_mode(label) == "memory":
        data_dir.rmdir()
        data_dir = None
    elif label.startswith("durable-"):
        data_dir.rmdir()  # memkeep creates its own data dir
    protocol, cmd = server_command(label, port, data_dir, args, memkeep_binary)
    log_path = outdir / f"server-{label}-{value_size}.log"
    proc = PROCESSES.start_logged(common.pinned(cmd, args.server_cpus), log_path)
    server = Server(label, protocol, port, proc, cmd, data_dir, log_path)
    common.wait_listening(label, proc, port, cmd, log_path, timeout=15.0)
    return server


def redis_info(port, section="persistence"):
    """Redis INFO <section> as a dict (empty if it does not answer)."""
    buf = b""
    try:
        with socket.create_connection((HOST, port), timeout=5.0) as sock:
            sock.sendall(b"*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n" % (len(section), section.encode()))
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if buf.startswith(b"$"):
                    head, _, rest = buf.partition(b"\r\n")
                    if len(rest) >= int(head[1:]) + 2:
                        break
    except (OSError, ValueError):
        pass
    out = {}
    for line in buf.decode(errors="replace").splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def server_stats(server):
    if server.protocol == "redis":
        return redis_info(server.port)
    s = common.stats(server.port)
    if server.label.startswith("durable-"):
        s.update(common.stats(server.port, b"storage"))
    return s


def dir_bytes(path):
    if path is None or not path.exists():
        return None
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def settle(pid, limit_seconds, step=0.1, idle_cpu_seconds=0.005):
    """Waits until the server uses under 5% CPU over a 100 ms step (at most
    limit_seconds). Returns (seconds waited, CPU seconds used meanwhile)."""
    start_cpu, start = common.cpu_seconds(pid), time.monotonic()
    while time.monotonic() - start < limit_seconds:
        before = common.cpu_seconds(pid)
        time.sleep(step)
        if common.cpu_seconds(pid) - before < idle_cpu_seconds:
            break
    return time.monotonic() - start, common.cpu_seconds(pid) - start_cpu


# --------------------------------------------------------------------------
# One load-generator run
# --------------------------------------------------------------------------

def kvload(server, kvload_binary, args, outdir, name, *, workload, value_size, pipeline, duration, warmup,
           load, seed):
    cmd = [kvload_binary, "--port", server.port, "--protocol", server.protocol, "--workload", workload,
           "--value-size", value_size, "--keys", args.keys, "--connections", args.connections,
           "--pipeline", pipeline, "--duration", duration, "--warmup", warmup, "--load", load, "--seed", seed]
    raw = outdir / "runs" / f"{name}.json"
    raw.parent.mkdir(exist_ok=True)
    proc = PROCESSES.start_logged(common.pinned(cmd, args.client_cpus), raw)
    limit = warmup + duration + 120.0  # the load phase of large values with fsync always can take a while
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        print(f"warning: kvload overran {limit:.0f} s and was stopped: {name}", file=sys.stderr)
    PROCESSES.stop(proc)
    text = raw.read_text(errors="replace")
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                out = json.loads(line)
                out["exit_status"] = proc.returncode
                return out
            except json.JSONDecodeError:
                break
    alive = server.proc.poll() is None
    raise RuntimeError(f"no result from kvload ({name}; server {server.label} alive: {alive}):\n{text[-1000:]}")


def measure(server, kvload_binary, args, outdir, *, workload, value_size, pipeline, round_index):
    name = f"{value_size}B-p{pipeline}-{workload}-r{round_index + 1}-{server.label}"
    before = server_stats(server) if server.label.startswith("durable-") else {}
    cpu0 = common.cpu_seconds(server.proc.pid)
    busy0 = common.cpu_busy_counters()
    fig = kvload(server, kvload_binary, args, outdir, name, workload=workload, value_size=value_size,
                 pipeline=pipeline, duration=args.duration, warmup=args.warmup, load="no",
                 seed=1000 * round_index + pipeline)
    busy1 = common.cpu_busy_counters()
    cpu1 = common.cpu_seconds(server.proc.pid)
    settle_s, settle_cpu = settle(server.proc.pid, args.settle_max)
    after = server_stats(server) if server.label.startswith("durable-") else {}
    # CPU of the whole run (warm-up included) plus the background work it left
    # behind, per op at the counted rate over the whole run time.
    run_seconds = args.warmup + args.duration
    ops_whole_run = fig["ops_per_s"] * run_seconds
    fig.update({
        "system": server.label, "round": round_index + 1,
        "server_cpu_percent": 100.0 * (cpu1 - cpu0) / run_seconds,
        "settle_s": settle_s, "settle_cpu_s": settle_cpu,
        "server_cpu_us_per_op": 1e6 * (cpu1 - cpu0 + settle_cpu) / ops_whole_run if ops_whole_run else None,
        "cpu_busy_percent": common.busy_percent_by_cpu(busy0, busy1),
    })
    if before and after:
        for key in ("storage_reads_from_disk", "storage_disk_reads", "storage_wal_syncs"):
            if key in before and key in after:
                fig[key + "_delta"] = int(after[key]) - int(before[key])
    fig["problems"] = problems(fig, workload)
    return fig


def measure_together(servers, kvload_binary, args, outdir, **kwargs):
    """--paired: measure() of every server at the same moment, one thread each
    (each thread starts its kvload, waits for it, then for its server to go
    idle); the figures come back in the order of `servers`."""
    figs = [None] * len(servers)
    failures = []

    def run(i, server):
        try:
            figs[i] = measure(server, kvload_binary, args, outdir, **kwargs)
        except Exception as e:  # reported below, in the main thread
            failures.append(e)

    threads = [threading.Thread(target=run, args=(i, server)) for i, server in enumerate(servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return figs


def problems(fig, workload):
    out = []
    if fig.get("errors") or fig.get("broken_connections") or fig.get("outstanding_at_end"):
        out.append(f"{fig.get('errors')} errors, {fig.get('broken_connections')} broken connections, "
                   f"{fig.get('outstanding_at_end')} replies missing (first: `{fig.get('first_error', '')}`)")
    if not fig.get("ops"):
        out.append("no operations counted")
    if workload == "get" and fig.get("get_misses"):
        out.append(f"{fig['get_misses']:,} get misses (every key was loaded)")
    if workload == "get" and fig.get("storage_reads_from_disk_delta"):
        out.append(f"{fig['storage_reads_from_disk_delta']:,} gets served from disk (expected RAM-resident)")
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def med(values):
    return common.median(values)


def fmt(v, spec="{:,.0f}"):
    return common.fmt(v, spec)


def ratio_stats(runs, workload, num, den, rounds):
    """Median, min, max over rounds of num/den ops/s within the same round."""
    ratios = []
    for r in range(1, rounds + 1):
        a = runs.get((workload, num, r))
        b = runs.get((workload, den, r))
        if a and b and b["ops_per_s"]:
            ratios.append(a["ops_per_s"] / b["ops_per_s"])
    if not ratios:
        return None
    # CPU efficiency: den's server CPU per op ÷ num's (higher is better for num).
    # It moves less than ops/s when other work on the machine takes CPU 0.
    cpu = []
    for r in range(1, rounds + 1):
        a = runs.get((workload, num, r))
        b = runs.get((workload, den, r))
        if a and b and a.get("server_cpu_us_per_op") and b.get("server_cpu_us_per_op"):
            cpu.append(b["server_cpu_us_per_op"] / a["server_cpu_us_per_op"])
    return {"median": med(ratios), "min": min(ratios), "max": max(ratios), "per_round": ratios,
            "cpu_ratio": med(cpu)}


def ratio_cell(r, goal=None):
    if not r:
        return "n/a"
    mark = ""
    if goal is not None:
        mark = " ✓" if r["median"] >= goal else " ✗"
    cpu = f"; CPU {r['cpu_ratio']:.2f}" if r.get("cpu_ratio") else ""
    return f"**{r['median']:.2f}**{mark} ({r['min']:.2f}–{r['max']:.2f}{cpu})"


def index_runs(cell_runs):
    return {(f["workload"], f["system"], f["round"]): f for f in cell_runs}


def summarize(results):
    """Per cell: medians per system and workload, and the headline ratios."""
    out = []
    rounds = results["args"]["rounds"]
    for cell in results["cells"]:
        runs = index_runs(cell["runs"])
        s = {"value_size": cell["value_size"], "pipeline": cell["pipeline"], "systems": {}}
        for system in results["systems"]:
            for workload in results["args"]["workloads"]:
                figs = [runs.get((workload, system, r)) for r in range(1, rounds + 1)]
                figs = [f for f in figs if f]
                if not figs:
                    continue
                s["systems"][(system, workload)] = {
                    "ops_per_s": med([f["ops_per_s"] for f in figs]),
                    "per_round": [f["ops_per_s"] for f in figs],
                    "p50_us": med([f["p50_us"] for f in figs]),
                    "p99_us": med([f["p99_us"] for f in figs]),
                    "cpu_us_per_op": med([f["server_cpu_us_per_op"] for f in figs]),
                    "flagged": sum(1 for f in figs if f["problems"]),
                }
        s["set_ratio"] = ratio_stats(runs, "set", "durable-everysec", "redis-everysec", rounds)
        s["set_ratio_always"] = ratio_stats(runs, "set", "durable-always", "redis-always", rounds)
        s["get_ratio"] = ratio_stats(runs, "get", "durable-everysec", "memory", rounds)
        s["get_ratio_always"] = ratio_stats(runs, "get", "durable-always", "memory", rounds)
        s["get_ratio_no"] = ratio_stats(runs, "get", "durable-no", "memory", rounds)
        s["set_vs_memory"] = ratio_stats(runs, "set", "durable-everysec", "memory", rounds)
        if results["args"].get("paired"):
            first, second = results["systems"]
            s["paired_ratio"] = {w: ratio_stats(runs, w, first, second, rounds) for w in results["args"]["workloads"]}
        out.append(s)
    return out


def render_report(results):
    a = results["args"]
    systems = results["systems"]
    summary = summarize(results)
    cell_name = lambda s: f"{s['value_size']:,} B, pipeline {s['pipeline']}"  # noqa: E731
    lines = [
        "## Durable storage: memkeep durable vs memory mode vs Redis AOF",
        "",
        f"- date: {results['started_at']}; git commit: {results['git_commit']}",
        f"- command: `{results['command']}`",
        f"- memkeep: {results['memkeep']['path']} ({results['memkeep']['version']}, built "
        f"{results['memkeep']['mtime']}, sha256 {results['memkeep']['sha256_16']}…), flags "
        f"`-m {a['memory_mb']} -t {a['memkeep_threads']} -c 4096`; redis: {results['redis_version']}, "
        "`--appendonly yes --appendfsync <mode> --save \"\"`",
        f"- kvload: {a['connections']} connections, keys `kv:` + 9 digits (12 bytes), {a['keys']:,} keys "
        f"(all set once before the rounds), uniform random; {a['rounds']} "
        + ("rounds with the two systems run at the same moment (--paired), " if a.get("paired")
           else "interleaved rounds, ")
        + f"each run "
        f"{a['warmup']} s uncounted + {a['duration']} s counted",
        f"- pinning: servers on CPU {a['server_cpus'] or 'any'}, kvload on CPU {a['client_cpus'] or 'any'}",
        f"- load average before / after: {results['loadavg_before']} / {results.get('loadavg_after', '?')}; "
        f"wall time {results.get('wall_seconds', 0):.0f} s",
        "",
    ]
    if "set" in a["workloads"]:
        lines += [
            "### Sets (ops/s, median over rounds)",
            "",
            "| values, pipeline | " + " | ".join(systems)
            + " | durable-everysec ÷ redis-everysec (goal ≥ 1.0) | durable-always ÷ redis-always |",
            "|---|" + "---:|" * (len(systems) + 2),
        ]
        for s in summary:
            cells = [fmt(s["systems"].get((sy, "set"), {}).get("ops_per_s")) for sy in systems]
            lines.append(f"| {cell_name(s)} | " + " | ".join(cells)
                         + f" | {ratio_cell(s['set_ratio'], 1.0)} | {ratio_cell(s['set_ratio_always'])} |")
        lines.append("")
    if "get" in a["workloads"]:
        lines += [
            "### Gets of RAM-resident keys (ops/s, median over rounds)",
            "",
            "| values, pipeline | " + " | ".join(systems)
            + " | durable-everysec ÷ memory (goal ≥ 0.9) | always ÷ memory | no ÷ memory |",
            "|---|" + "---:|" * (len(systems) + 3),
        ]
        for s in summary:
            cells = [fmt(s["systems"].get((sy, "get"), {}).get("ops_per_s")) for sy in systems]
            lines.append(f"| {cell_name(s)} | " + " | ".join(cells)
                         + f" | {ratio_cell(s['get_ratio'], 0.9)} | {ratio_cell(s['get_ratio_always'])} "
                         f"| {ratio_cell(s['get_ratio_no'])} |")
        lines.append("")
    lines += [
        "Ratios: ops/s of the two systems within each round (they ran back to back), then the median over "
        "rounds (✓/✗: goal met or not), with the min–max over rounds in brackets and the CPU efficiency ratio "
        "(the other system's server CPU µs per op ÷ this one's, median over rounds; below 1 means more CPU per op).",
        "",
    ]
    if a.get("paired"):
        first, second = systems
        lines += [f"### Paired: {first} ÷ {second}", "", "| values, pipeline | workload | ratio |", "|---|---|---:|"]
        for s in summary:
            for workload in a["workloads"]:
                lines.append(f"| {cell_name(s)} | {workload} | {ratio_cell(s['paired_ratio'].get(workload))} |")
        lines.append("")
    for workload in a["workloads"]:
        lines += [
            f"### {workload}: latency p50 / p99 µs and server CPU µs per op (medians over rounds)",
            "",
            "| values, pipeline | " + " | ".join(systems) + " |",
            "|---|" + "---:|" * len(systems),
        ]
        for s in summary:
            cells = []
            for sy in systems:
                f = s["systems"].get((sy, workload))
                cells.append("n/a" if not f else
                             f"{fmt(f['p50_us'])} / {fmt(f['p99_us'])}; {fmt(f['cpu_us_per_op'], '{:.1f}')} µs")
            lines.append(f"| {cell_name(s)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Latency runs from the write() of a request's batch to the read() that completed its reply "
        "(with pipeline 16 it includes the other 15 of the batch). Server CPU per op: utime+stime of the server "
        "process over the run plus the background work it left (until it went idle), divided by the ops of the run.",
        "",
        "### Per-round ops/s",
        "",
        "| values, pipeline | workload | " + " | ".join(systems) + " |",
        "|---|---|" + "---:|" * len(systems),
    ]
    for s in summary:
        for workload in a["workloads"]:
            cells = []
            for sy in systems:
                f = s["systems"].get((sy, workload))
                cells.append("n/a" if not f else " / ".join(fmt(v) for v in f["per_round"])
                             + (" ⚠" if f["flagged"] else ""))
            lines.append(f"| {cell_name(s)} | {workload} | " + " | ".join(cells) + " |")
    lines.append("")
    warnings = []
    for cell in results["cells"]:
        for f in cell["runs"]:
            if f["problems"]:
                warnings.append(f"- {cell['value_size']} B, pipeline {cell['pipeline']}, {f['workload']}, "
                                f"{f['system']}, round {f['round']}: " + "; ".join(f["problems"]))
    if warnings:
        lines += ["**Warning: runs marked ⚠ did not measure the intended workload:**", ""] + warnings[:30] + [""]
    if results.get("footprint"):
        lines += ["### At the end of each value size: disk and sync counters", "",
                  "| values | system | data dir bytes | details |", "|---|---|---:|---|"]
        for row in results["footprint"]:
            lines.append(f"| {row['value_size']:,} B | {row['system']} | {fmt(row['dir_bytes'])} | {row['details']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def csv_ints(text):
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memkeep", default=str(ROOT / "build-durable" / "memkeep"))
    p.add_argument("--memkeep-b", help="the binary of systems named with the suffix @b (an A/B comparison)")
    p.add_argument("--redis", default="/usr/bin/redis-server")
    p.add_argument("--systems", default=",".join(ALL_SYSTEMS), help="comma list of: " + ",".join(ALL_SYSTEMS))
    p.add_argument("--workloads", default="set,get", help="comma list of: set,get")
    p.add_argument("--value-sizes", default="100,4096")
    p.add_argument("--pipelines", default="1,16")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--keys", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=1.5, help="counted seconds per run")
    p.add_argument("--warmup", type=float, default=0.5, help="uncounted seconds at the start of each run")
    p.add_argument("--settle-max", type=float, default=3.0,
                   help="after a run, wait at most this long for the server to go idle")
    p.add_argument("--memory-mb", type=int, default=1024, help="memkeep -m (all modes)")
    p.add_argument("--memkeep-threads", type=int, default=1, help="memkeep -t (all modes)")
    p.add_argument("--layout", choices=("shared", "none"), default="shared")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--paired", action="store_true",
                   help="run the two --systems at the same moment (servers sharing CPU 0) instead of one at a time")
    p.add_argument("--keep-data", action="store_true", help="keep the data dirs (they can reach GBs)")
    p.add_argument("--out", help="results directory (default bench/results/<timestamp>-durable)")
    args = p.parse_args(argv)
    if args.layout == "none":
        args.server_cpus = args.client_cpus = ""
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    args.value_sizes = csv_ints(args.value_sizes)
    args.pipelines = csv_ints(args.pipelines)
    for s in args.systems:
        if system_mode(s) not in ALL_SYSTEMS or (s.endswith("@b") and s.startswith("redis-")):
            p.error(f"unknown system {s}")
        if s.endswith("@b") and not args.memkeep_b:
            p.error(f"{s} needs --memkeep-b")
    if len(set(args.systems)) != len(args.systems):
        p.error("a system is named twice")
    for w in args.workloads:
        if w not in ("set", "get"):
            p.error(f"unknown workload {w}")
    if args.paired and len(args.systems) != 2:
        p.error("--paired needs exactly two --systems")
    if args.rounds < 1 or not (0.5 <= args.duration <= 600) or not (0 <= args.warmup <= 60):
        p.error("need --rounds >= 1, 0.5 <= --duration <= 600, 0 <= --warmup <= 60")
    if not args.value_sizes or not args.pipelines or min(args.value_sizes + args.pipelines) < 1:
        p.error("bad --value-sizes/--pipelines")
    return args


def footprint_row(server, value_size):
    st = server_stats(server)
    if server.protocol == "redis":
        keys = ("aof_current_size", "aof_rewrites", "aof_last_write_status", "aof_delayed_fsync")
    else:
        keys = ("storage_disk_bytes", "storage_items_on_disk", "storage_wal_syncs", "storage_reads_from_disk",
                "storage_reads_from_ram", "storage_write_errors", "curr_items", "bytes")
    details = ", ".join(f"{k} {st[k]}" for k in keys if k in st)
    return {"value_size": value_size, "system": server.label, "dir_bytes": dir_bytes(server.data_dir),
            "details": details, "stats": st}


def main(argv):
    args = parse_args(argv)
    common.handle_stop_signals()
    if args.layout == "shared" and len(os.sched_getaffinity(0)) < 2:
        sys.exit("--layout shared needs two CPUs; use --layout none")
    if any(s.startswith("redis-") for s in args.systems) and not os.access(args.redis, os.X_OK):
        sys.exit(f"redis-server not found at {args.redis}: apt-get install redis-server")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = Path(args.out) if args.out else RESULTS_DIR / f"{stamp}-durable"
    outdir.mkdir(parents=True, exist_ok=True)
    kvload_binary = build_kvload()
    memkeep_binary, memkeep_info = snapshot_memkeep(args.memkeep, outdir)
    memkeep_binaries = [memkeep_binary, None]
    if args.memkeep_b:
        (outdir / "b").mkdir(exist_ok=True)
        memkeep_binaries[1], memkeep_info["b"] = snapshot_memkeep(args.memkeep_b, outdir / "b")
    redis_version = ""
    if any(s.startswith("redis-") for s in args.systems):
        redis_version = subprocess.run([args.redis, "--version"], capture_output=True, text=True).stdout.strip()
    results = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git_commit": common.git_commit(),
        "command": "bench/durable.py " + " ".join(argv),
        "args": {k: v for k, v in vars(args).items()},
        "systems": args.systems,
        "memkeep": memkeep_info,
        "redis_version": redis_version.split(" sha=")[0],
        "loadavg_before": common.loadavg(),
        "cells": [],
        "loads": [],
        "footprint": [],
    }
    t_start = time.monotonic()
    try:
        for value_size in args.value_sizes:
            print(f"[{value_size} B] starting {len(args.systems)} servers, loading {args.keys:,} keys each",
                  file=sys.stderr, flush=True)
            servers = [start_server(label, value_size, args, memkeep_binaries, outdir) for label in args.systems]
            try:
                for server in servers:
                    fig = kvload(server, kvload_binary, args, outdir, f"{value_size}B-load-{server.label}",
                                 workload="set", value_size=value_size, pipeline=1, duration=0, warmup=0,
                                 load="yes", seed=1)
                    settle(server.proc.pid, args.settle_max)
                    results["loads"].append({"value_size": value_size, "system": server.label, **fig})
                    if fig.get("errors") or fig.get("exit_status") != 0:
                        raise RuntimeError(f"loading {server.label} failed: {fig}")
                    print(f"  loaded {server.label} in {fig['load_s']:.1f} s", file=sys.stderr, flush=True)
                cells = {p: {"value_size": value_size, "pipeline": p, "runs": []} for p in args.pipelines}
                for r in range(args.rounds):
                    # Rotate the starting system each round: A B C D E F, B C D E F A, ...
                    order = servers[r % len(servers):] + servers[:r % len(servers)]
                    for pipeline in args.pipelines:
                        for workload in args.workloads:
                            line = []
                            if args.paired:
                                figs = measure_together(order, kvload_binary, args, outdir, workload=workload,
                                                        value_size=value_size, pipeline=pipeline, round_index=r)
                            else:
                                figs = [measure(server, kvload_binary, args, outdir, workload=workload,
                                                value_size=value_size, pipeline=pipeline, round_index=r)
                                        for server in order]
                            for server, fig in zip(order, figs):
                                cells[pipeline]["runs"].append(fig)
                                line.append(f"{server.label} {fig['ops_per_s']:,.0f}"
                                            + (" ⚠" if fig["problems"] else ""))
                            print(f"  round {r + 1} {value_size} B p{pipeline} {workload}: " + ", ".join(line),
                                  file=sys.stderr, flush=True)
                results["cells"] += list(cells.values())
                for server in servers:
                    results["footprint"].append(footprint_row(server, value_size))
            finally:
                for server in servers:
                    PROCESSES.stop(server.proc)
                if not args.keep_data:
                    shutil.rmtree(outdir / "data", ignore_errors=True)
    finally:
        PROCESSES.stop_all()
        results["wall_seconds"] = time.monotonic() - t_start
        results["loadavg_after"] = common.loadavg()
        (outdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
        if not args.keep_data:
            shutil.rmtree(outdir / "data", ignore_errors=True)

    results["summary"] = [
        {**{k: v for k, v in s.items() if k != "systems"},
         "systems": {f"{sy}/{w}": v for (sy, w), v in s["systems"].items()}}
        for s in summarize(results)]
    (outdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report = render_report(results)
    common.publish_report(outdir, report)


if __name__ == "__main__":
    common.run_cli(main)
