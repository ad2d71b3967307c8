#!/usr/bin/python3
"""Replication benchmark (issue 6): what a connected peer costs a node, and how
far behind the peer is under load.

In ONE run, for each workload (90% get / 10% set, and 100% set; 100-byte
values, 16 connections, pipeline 1, bench/kvload.cc):

  1. starts three processes of the same binary, with the same flags
     (-p PORT -l 127.0.0.1 -m 1024 -t 1 -c 4096, -u root when run as root):
       alone  no replication flag at all;
       A      -X RA -x 127.0.0.1:RB   (the measured node, with a peer)
       B      -X RB -x 127.0.0.1:RA   (the peer: connected both ways, no client load)
     alone and A are pinned together on CPU 0 (--server-cpus), B on CPU 1
     (--peer-cpus; it stands for another machine, so it must not take CPU
     from either measured server);
  2. waits until both links stream, then (mix) stores every key once in
     alone and in A, and waits until B has applied all of A's;
  3. measures the replication lag without client load (--idle-lag-s);
  4. runs paired rounds: one kvload for alone and one for A, started
     together (which one first alternates), same seed, pinned together on
     CPU 1 (--client-cpus); --warmup s uncounted + --duration s counted.
     During each round a sampler thread (pinned to the client CPU, SCHED_FIFO
     when allowed) writes a unique key to A every --sample-interval-ms and polls
     B on its own connection, about every 100 µs, until the key is there. The lag
     of a sample is from A's STORED to the first get on B that returns it (it
     includes up to one get round trip to B, the polling resolution). The
     sampler writes the same key to `alone` as well, so both measured servers
     get the same extra sets.

Per round: ops/s of each, the ratio A / alone (goal >= 0.9), server CPU per op
(/proc/PID/stat over the round) of alone, A and B, lag p50/p99 (µs) of the
samples taken in the counted window. The report gives medians, the ratio's
min-max, and the git commit the binary was built from (HEAD at run time, and
whether src/ had uncommitted changes then).

Every process is stopped by its PID at the end, also on Ctrl-C, SIGTERM or an
error (bench/run.py's process group). All traffic goes to 127.0.0.1.

With --repl-tls both replicating nodes also get `--repl-tls` and a node
certificate signed by a CA made for the run (openssl, in the output
directory): the same figures for links in TLS 1.3 (issue 12's TLS figure).

Usage:
  bench/replication.py --candidate build/memkeep                 # about 2.5 minutes
  bench/replication.py --repl-tls                                # the same, links over TLS
  bench/replication.py --rounds 3 --duration 5 --workloads set   # shorter
Raw outputs and the report go to bench/results/<timestamp>-replication/.
"""

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as common  # bench/run.py: processes stopped by PID, pinning, server start, /proc readers  # noqa: E402

BENCH_DIR = common.BENCH_DIR
ROOT = common.ROOT
RESULTS_DIR = common.RESULTS_DIR
KVLOAD_SOURCE = BENCH_DIR / "kvload.cc"
KVLOAD_BINARY = RESULTS_DIR / ".bin" / "kvload-tls"  # the same build bench/tls.py uses (-lssl -lcrypto)
PROCESSES = common.PROCESSES
HOST = common.HOST
ALONE, PAIRED, PEER = "alone", "with-peer", "peer"
WORKLOADS = {
    "mix": {"title": "90% get / 10% set", "get_ratio": 0.9, "kvload": "mix", "load": True},
    "set": {"title": "100% set", "get_ratio": 0.0, "kvload": "set", "load": False},
}


# --------------------------------------------------------------------------
# small socket helpers (the sampler and the waits)


class Conn:
    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def read_until(self, terminator):
        while terminator not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        i = self.buf.index(terminator) + len(terminator)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def request(self, data, terminator):
        self.sock.sendall(data)
        return self.read_until(terminator)


def repl_stats(port):
    return common.stats(port, b"repl")


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# --------------------------------------------------------------------------
# the lag sampler


POLL_PAUSE_S = 0.0001


class LagSampler(threading.Thread):
    """Writes a unique key to A (and the same to `alone`) every interval and
    polls B until it is visible. samples: (t_send_ns, lag_from_ack_us,
    lag_from_send_us) or (t_send_ns, None, None) when B did not show the key
    within max_wait_s."""

    def __init__(self, a_port, b_port, alone_port, interval_ms, cpus, tag, max_wait_s=5.0):
        super().__init__(daemon=True)
        self.ports = (a_port, b_port, alone_port)
        self.interval = interval_ms / 1000.0
        self.cpus = cpus
        self.tag = tag
        self.max_wait_s = max_wait_s
        self.samples = []
        self.polls = 0
        self.errors = []
        self.realtime = False
        self.stop_event = threading.Event()
        self.value = b"L" * 100

    def stop(self):
        self.stop_event.set()
        self.join(30)

    def run(self):
        if self.cpus:
            try:
                os.sched_setaffinity(0, {int(c) for c in self.cpus.split(",")})  # this thread only
            except (OSError, ValueError) as e:
                self.errors.append(f"affinity: {e}")
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))  # this thread only
            self.realtime = True
        except (OSError, AttributeError):
            pass
        a_port, b_port, alone_port = self.ports
        try:
            a, b, alone = Conn(a_port), Conn(b_port), Conn(alone_port)
        except OSError as e:
            self.errors.append(f"connect: {e}")
            return
        try:
            n = 0
            next_at = time.monotonic()
            while not self.stop_event.is_set() and n < 1_000_000:
                key = b"lag:%s:%07d" % (self.tag.encode(), n)
                n += 1
                store = b"set %s 0 0 %d\r\n%s\r\n" % (key, len(self.value), self.value)
                t_send = time.perf_counter_ns()
                reply = a.request(store, b"\r\n")
                t_ack = time.perf_counter_ns()
                if reply != b"STORED\r\n":
                    self.errors.append(f"A answered {reply[:80]!r}")
                    break
                seen = None
                deadline = t_ack + int(self.max_wait_s * 1e9)
                get = b"get %s\r\n" % key
                while True:
                    got = b.request(get, b"END\r\n")
                    self.polls += 1
                    now = time.perf_counter_ns()
                    if got.startswith(b"VALUE "):
                        seen = now
                        break
                    if got != b"END\r\n":
                        self.errors.append(f"B answered {got[:80]!r}")
                        break
                    if now > deadline:
                        break
                    # Poll every ~100 µs, not in a tight loop: a spinning
                    # SCHED_FIFO poller would take the client CPU (and the
                    # peer's) from the load it is measuring.
                    time.sleep(POLL_PAUSE_S)
                if seen is None:
                    self.samples.append((t_send, None, None))
                else:
                    self.samples.append((t_send, (seen - t_ack) / 1000.0, (seen - t_send) / 1000.0))
                if alone.request(store, b"\r\n") != b"STORED\r\n":
                    self.errors.append("alone did not store a sampler key")
                    break
                next_at += self.interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stop_event.wait(delay)
                else:
                    next_at = time.monotonic()
        except OSError as e:
            self.errors.append(f"socket: {e}")
        finally:
            for c in (a, b, alone):
                c.close()

    def summary(self, t_from_ns=None, t_to_ns=None):
        picked = [s for s in self.samples
                  if (t_from_ns is None or s[0] >= t_from_ns) and (t_to_ns is None or s[0] <= t_to_ns)]
        lags = [s[1] for s in picked if s[1] is not None]
        from_send = [s[2] for s in picked if s[2] is not None]
        return {
            "samples": len(picked), "not_seen": sum(1 for s in picked if s[1] is None),
            "lag_p50_us": percentile(lags, 0.50), "lag_p99_us": percentile(lags, 0.99),
            "lag_max_us": max(lags) if lags else None,
            "from_send_p50_us": percentile(from_send, 0.50), "from_send_p99_us": percentile(from_send, 0.99),
        }


# --------------------------------------------------------------------------
# kvload


def kvload_command(server, kvload_binary, args, workload, *, load, duration, warmup, seed):
    cmd = [kvload_binary, "--port", server.port, "--protocol", "memcached", "--workload", workload["kvload"],
           "--value-size", args.value_size, "--keys", args.keys, "--connections", args.connections,
           "--pipeline", args.pipeline, "--duration", duration, "--warmup", warmup, "--seed", seed,
           "--load", "yes" if load else "no"]
    if workload["kvload"] == "mix":
        cmd += ["--get-ratio", workload["get_ratio"]]
    return common.pinned([str(c) for c in cmd], args.client_cpus)


def problems(fig):
    p = []
    for key in ("errors", "broken_connections", "outstanding_at_end", "get_misses"):
        if fig.get(key):
            p.append(f"{key}={fig[key]}")
    if fig.get("first_error"):
        p.append(f"first error: {fig['first_error'][:100]}")
    return p


# --------------------------------------------------------------------------
# CPU budget


class CpuQuota:
    """A cgroup (cpu controller, v2 `cpu.max` or v1 `cpu.cfs_quota_us`) that
    caps a process at `percent` of one CPU, so that the measured servers, not
    the load generators, are what limits throughput (--server-cpu-quota).
    `throttled()` is (periods, throttled periods) so far: the report shows the
    share of periods in which the server wanted more CPU than its budget."""

    PERIOD_US = 10_000

    def __init__(self, name, pid, percent):
        v2_root = Path("/sys/fs/cgroup")
        v1_root = Path("/sys/fs/cgroup/cpu")
        quota_us = int(self.PERIOD_US * percent / 100)
        v2_controllers = v2_root / "cgroup.subtree_control"
        if v2_controllers.exists() and "cpu" in v2_controllers.read_text().split():
            self.path = v2_root / f"memkeep-bench-{name}-{os.getpid()}"
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{quota_us} {self.PERIOD_US}")
        elif (v1_root / "cpu.cfs_quota_us").exists():
            self.path = v1_root / f"memkeep-bench-{name}-{os.getpid()}"
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota_us))
        else:
            raise RuntimeError("--server-cpu-quota needs the cgroup cpu controller (v2 cpu.max or v1 cpu.cfs_quota_us)")
        (self.path / "cgroup.procs").write_text(str(pid))   # all its threads, and those it starts later

    def throttled(self):
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["nr_periods"]), int(stat["nr_throttled"])

    def remove(self):
        # The process has exited (a cgroup with members cannot be removed).
        try:
            self.path.rmdir()
        except OSError:
            pass


# --------------------------------------------------------------------------
# one workload


def start_trio(args, outdir, name):
    ra, rb = common_free_ports(2)
    if args.calibrate:
        return {label: common.start_server(f"{name}-{label}", args.candidate, args, args.server_cpus, outdir)
                for label in (ALONE, PAIRED)}
    servers = {
        ALONE: common.start_server(f"{name}-{ALONE}", args.candidate, args, args.server_cpus, outdir),
        PAIRED: common.start_server(f"{name}-{PAIRED}", args.candidate, args, args.server_cpus, outdir,
                                    ["-X", ra, "-x", f"{HOST}:{rb}"] + args.repl_flags),
        PEER: common.start_server(f"{name}-{PEER}", args.candidate, args, args.peer_cpus, outdir,
                                  ["-X", rb, "-x", f"{HOST}:{ra}"] + args.repl_flags),
    }
    return servers


def common_free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def links_streaming(port):
    s = repl_stats(port)
    return s.get("repl_links_up") == "1" and s.get("repl_link_0_state") == "streaming" and s.get("repl_feeds") == "1"


def peer_caught_up(servers):
    if PEER not in servers:
        return True
    a, b = common.stats(servers[PAIRED].port), common.stats(servers[PEER].port)
    sa = repl_stats(servers[PAIRED].port)
    return (a.get("curr_items") is not None and a.get("curr_items") == b.get("curr_items")
            and sa.get("repl_feed_0_lag_bytes") == "0")


def peer_port(servers):
    """Where the sampler polls: the peer; in --calibrate, with-peer itself (a control of the sampler)."""
    return servers[PEER].port if PEER in servers else servers[PAIRED].port


def run_workload(name, workload, args, outdir, kvload_binary):
    print(f"[{name}] {workload['title']}: starting {ALONE}, {PAIRED} and {PEER}", file=sys.stderr, flush=True)
    servers = start_trio(args, outdir, name)
    out = {"server_flags": {label: s.cmd[1:] for label, s in servers.items()}, "rounds": []}
    quotas = {}
    try:
        if args.server_cpu_quota:
            quotas = {label: CpuQuota(label, servers[label].proc.pid, args.server_cpu_quota)
                      for label in (ALONE, PAIRED)}
        if PEER in servers:
            wait_for(lambda: links_streaming(servers[PAIRED].port) and links_streaming(servers[PEER].port), 30,
                     "both replication links streaming")
        measured = {label: servers[label] for label in (ALONE, PAIRED)}
        if workload["load"]:
            print(f"[{name}] storing {args.keys:,} keys in {ALONE} and {PAIRED}", file=sys.stderr, flush=True)
            commands = {label: kvload_command(s, kvload_binary, args, workload, load=True, duration=0, warmup=0,
                                              seed=1) for label, s in measured.items()}
            load = common.run_kvload_pair(measured, commands, outdir, f"{name}-load", [ALONE, PAIRED], 180)
            for label, fig in load.items():
                if problems(fig):
                    raise RuntimeError(f"load into {label} failed: {problems(fig)}")
            wait_for(lambda: peer_caught_up(servers), 120, f"{PEER} applying the load")
        # Lag without client load, for reference.
        idle = LagSampler(servers[PAIRED].port, peer_port(servers), servers[ALONE].port, args.sample_interval_ms,
                          args.client_cpus, f"{name}-idle")
        idle.start()
        time.sleep(args.idle_lag_s)
        idle.stop()
        out["idle_lag"] = idle.summary()
        out["idle_lag"]["errors"] = idle.errors
        out["sampler_realtime"] = idle.realtime
        for i in range(args.rounds):
            order = [ALONE, PAIRED] if i % 2 == 0 else [PAIRED, ALONE]
            commands = {label: kvload_command(measured[label], kvload_binary, args, workload, load=False,
                                              duration=args.duration, warmup=args.warmup, seed=100 + i)
                        for label in order}
            peer_pid = servers[PEER].proc.pid if PEER in servers else None
            peer_cpu_before = common.cpu_seconds(peer_pid) if peer_pid else 0.0
            sampler = LagSampler(servers[PAIRED].port, peer_port(servers), servers[ALONE].port,
                                 args.sample_interval_ms, args.client_cpus, f"{name}-r{i}")
            throttled_before = {label: q.throttled() for label, q in quotas.items()}
            ticks_before = common.cpu_busy_counters()
            t_start = time.perf_counter_ns()
            sampler.start()
            try:
                figs = common.run_kvload_pair(measured, commands, outdir, f"{name}-round{i + 1}", order,
                                              args.duration + args.warmup + 40)
            finally:
                sampler.stop()
            ticks_after = common.cpu_busy_counters()
            throttled = {}
            for label, q in quotas.items():
                periods, count = (a - b for a, b in zip(q.throttled(), throttled_before[label]))
                throttled[label] = 100.0 * count / max(1, periods)
            peer_cpu = (common.cpu_seconds(peer_pid) - peer_cpu_before) if peer_pid else 0.0
            t_counted = t_start + int(args.warmup * 1e9)
            lag = sampler.summary(t_counted, t_counted + int(args.duration * 1e9))
            lag["errors"] = sampler.errors
            lag["polls"] = sampler.polls
            round_seconds = args.duration + args.warmup
            for fig in figs.values():
                fig["cpu_us_per_op"] = 1e6 * fig["server_cpu_s"] / max(1.0, fig["ops_per_s"] * round_seconds)
            paired_ops = figs[PAIRED]["ops_per_s"] * round_seconds
            result = {
                ALONE: figs[ALONE], PAIRED: figs[PAIRED],
                "peer_cpu_s": peer_cpu, "peer_cpu_us_per_op": 1e6 * peer_cpu / max(1.0, paired_ops),
                "ratio": figs[PAIRED]["ops_per_s"] / max(1e-9, figs[ALONE]["ops_per_s"]),
                "cpu_ratio": figs[ALONE]["cpu_us_per_op"] / max(1e-9, figs[PAIRED]["cpu_us_per_op"]),
                "lag": lag, "order": order,
                "busy_server_cpus": common.busy_percent(ticks_before, ticks_after, args.server_cpus),
                "busy_client_cpus": common.busy_percent(ticks_before, ticks_after, args.client_cpus),
                "throttled_percent": throttled,
                "link_streaming_after": links_streaming(servers[PAIRED].port) if PEER in servers else True,
            }
            out["rounds"].append(result)
            print(f"  round {i + 1}: {ALONE} {figs[ALONE]['ops_per_s']:,.0f} ops/s, {PAIRED} "
                  f"{figs[PAIRED]['ops_per_s']:,.0f} ops/s, ratio {result['ratio']:.3f}; lag p50 "
                  f"{fmt(lag['lag_p50_us'])} µs p99 {fmt(lag['lag_p99_us'])} µs ({lag['samples']} samples, "
                  f"{lag['not_seen']} not seen)", file=sys.stderr, flush=True)
        # The peer has everything in the end.
        try:
            wait_for(lambda: peer_caught_up(servers), 60, f"{PEER} catching up after the rounds")
            out["peer_caught_up"] = True
        except RuntimeError:
            out["peer_caught_up"] = False
        out["stats_repl"] = {label: repl_stats(servers[label].port) for label in (PAIRED, PEER) if label in servers}
        out["curr_items"] = {label: common.stats(s.port).get("curr_items") for label, s in servers.items()}
    finally:
        for s in servers.values():
            common.stop_server(s)
        for q in quotas.values():
            q.remove()
    return out


# --------------------------------------------------------------------------
# report


def fmt(value, spec="{:,.0f}"):
    return "n/a" if value is None else spec.format(value)


def summarize(rounds):
    med = common.median
    return {
        "alone_ops": med([r[ALONE]["ops_per_s"] for r in rounds]),
        "paired_ops": med([r[PAIRED]["ops_per_s"] for r in rounds]),
        "ratio": med([r["ratio"] for r in rounds]),
        "ratio_min": min(r["ratio"] for r in rounds), "ratio_max": max(r["ratio"] for r in rounds),
        "cpu_ratio": med([r["cpu_ratio"] for r in rounds]),
        "alone_cpu_us": med([r[ALONE]["cpu_us_per_op"] for r in rounds]),
        "paired_cpu_us": med([r[PAIRED]["cpu_us_per_op"] for r in rounds]),
        "peer_cpu_us": med([r["peer_cpu_us_per_op"] for r in rounds]),
        "lag_p50_us": med([r["lag"]["lag_p50_us"] for r in rounds]),
        "lag_p99_us": med([r["lag"]["lag_p99_us"] for r in rounds]),
        "alone_p99": med([r[ALONE]["p99_us"] for r in rounds]),
        "paired_p99": med([r[PAIRED]["p99_us"] for r in rounds]),
        "alone_p50": med([r[ALONE]["p50_us"] for r in rounds]),
        "paired_p50": med([r[PAIRED]["p50_us"] for r in rounds]),
        "busy_server_cpus": med([r["busy_server_cpus"] for r in rounds]),
        "busy_client_cpus": med([r["busy_client_cpus"] for r in rounds]),
        "throttled": {label: med([r["throttled_percent"][label] for r in rounds])
                      for label in rounds[0]["throttled_percent"]},
    }


def busy_cell(busy_server, busy_client, throttled):
    cell = f"{busy_server:.0f} / {busy_client:.0f}"
    if throttled:
        cell += f"; {throttled[ALONE]:.0f} / {throttled[PAIRED]:.0f}"
    return cell


def round_problems(r):
    p = [f"{label}: {x}" for label in (ALONE, PAIRED) for x in problems(r[label])]
    if r["lag"]["not_seen"]:
        p.append(f"{r['lag']['not_seen']} sampler keys not seen on the peer within 5 s")
    if r["lag"]["errors"]:
        p.append(f"sampler: {r['lag']['errors'][:2]}")
    if not r["link_streaming_after"]:
        p.append("A's link was not streaming after the round")
    return p


def render(results, args):
    title = ("## Calibration: two nodes without replication (the harness's own asymmetry)" if args.calibrate
             else "## Replication: a node with a connected peer against the same binary alone")
    lines = [
        title,
        "",
        f"- date: {results['started_at']}; binary `{results['binary']['path']}` (built {results['binary']['mtime']}, "
        f"sha256 {results['binary']['sha256'][:12]}); git commit at run time: {results['git_commit']}"
        f"{' (src/ had uncommitted changes)' if results['git_dirty'] else ''}",
        f"- command: `{results['command']}`",
        f"- servers: `-p PORT -l 127.0.0.1 -m {args.memory_mb} -t {args.threads} -c 4096` (+ `-u root` as root); "
        + ("no replication flags on either (--calibrate: the sampler polls with-peer itself, no peer); "
           if args.calibrate else
           f"with-peer adds `-X RA -x 127.0.0.1:RB{' ' + ' '.join(args.repl_flags) if args.repl_flags else ''}`, "
           f"the peer `-X RB -x 127.0.0.1:RA{' ' + ' '.join(args.repl_flags) if args.repl_flags else ''}`, pinned "
           f"to CPU {args.peer_cpus or 'any'}; ")
        + f"alone and with-peer pinned to CPU {args.server_cpus or 'any'}"
        + (f", each capped at {args.server_cpu_quota:g}% of one CPU (cgroup cpu quota, 10 ms period)"
           if args.server_cpu_quota else ""),
        f"- kvload: {args.value_size}-byte values, {args.keys:,} keys, {args.connections} connections, pipeline "
        f"{args.pipeline}, pinned to CPU {args.client_cpus or 'any'}; {args.rounds} paired rounds of {args.warmup} s "
        f"uncounted + {args.duration} s counted per workload",
        f"- lag sampler: one set on A every {args.sample_interval_ms} ms, then gets on B every ~100 µs until "
        f"it is there; lag = A's STORED to the first get that returns it (includes up to one get round trip and 100 µs of polling pause); "
        f"SCHED_FIFO: {'yes' if results.get('sampler_realtime') else 'no'}",
        f"- load average before / after: {results['loadavg_before']} / {results.get('loadavg_after', '?')}",
        "",
    ]
    for name, w in results["workloads"].items():
        rounds = w["rounds"]
        if not rounds:
            continue
        s = w["summary"]
        lines += [
            f"### {WORKLOADS[name]['title']}",
            "",
            f"| round | {ALONE} ops/s | {PAIRED} ops/s | ratio | CPU µs/op {ALONE} / {PAIRED} / peer "
            f"| p50 / p99 µs {ALONE} | p50 / p99 µs {PAIRED} | lag p50 / p99 µs (samples) "
            f"| busy % server / client CPUs{'; throttled % ' + ALONE + ' / ' + PAIRED if args.server_cpu_quota else ''} |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for i, r in enumerate(rounds, 1):
            flag = " ⚠" if round_problems(r) else ""
            lines.append(
                f"| {i}{flag} | {r[ALONE]['ops_per_s']:,.0f} | {r[PAIRED]['ops_per_s']:,.0f} | {r['ratio']:.3f} "
                f"| {r[ALONE]['cpu_us_per_op']:.1f} / {r[PAIRED]['cpu_us_per_op']:.1f} / {r['peer_cpu_us_per_op']:.1f} "
                f"| {r[ALONE]['p50_us']:,.0f} / {r[ALONE]['p99_us']:,.0f} "
                f"| {r[PAIRED]['p50_us']:,.0f} / {r[PAIRED]['p99_us']:,.0f} "
                f"| {fmt(r['lag']['lag_p50_us'])} / {fmt(r['lag']['lag_p99_us'])} ({r['lag']['samples']}) "
                f"| {busy_cell(r['busy_server_cpus'], r['busy_client_cpus'], r['throttled_percent'])} |")
        lines += [
            f"| **median** | **{s['alone_ops']:,.0f}** | **{s['paired_ops']:,.0f}** | **{s['ratio']:.3f}** "
            f"({s['ratio_min']:.3f}–{s['ratio_max']:.3f}) | {s['alone_cpu_us']:.1f} / {s['paired_cpu_us']:.1f} / "
            f"{s['peer_cpu_us']:.1f} | {s['alone_p50']:,.0f} / {s['alone_p99']:,.0f} "
            f"| {s['paired_p50']:,.0f} / {s['paired_p99']:,.0f} "
            f"| **{fmt(s['lag_p50_us'])} / {fmt(s['lag_p99_us'])}** "
            f"| {busy_cell(s['busy_server_cpus'], s['busy_client_cpus'], s['throttled'])} |",
            "",
            f"Idle lag (no client load, {w['idle_lag']['samples']} samples): p50 {fmt(w['idle_lag']['lag_p50_us'])} µs, "
            f"p99 {fmt(w['idle_lag']['lag_p99_us'])} µs. Peer caught up at the end: "
            f"{'yes' if w.get('peer_caught_up') else 'NO'} (curr_items {w.get('curr_items')}).",
            "",
        ]
        flagged = [(i, round_problems(r)) for i, r in enumerate(rounds, 1) if round_problems(r)]
        if flagged:
            lines += ["**Flagged rounds (⚠):**", ""] + [f"- round {i}: {'; '.join(p)}" for i, p in flagged] + [""]
    lines += [
        "Ratio: with-peer ops/s ÷ alone ops/s within a round (median, min–max; goal ≥ 0.9). CPU µs/op: each "
        "server's CPU over the whole round ÷ (its ops/s × round length); the peer's is divided by with-peer's ops. "
        "p50/p99: kvload's percentiles of every counted request (medians over rounds). Lag: medians over rounds "
        "of each round's p50/p99. Busy %: share of the round the server CPUs and the client CPUs were not idle "
        "(/proc/stat; other tenants included); throttled %: share of the cgroup's 10 ms periods in which the server "
        "used up its --server-cpu-quota (only with a quota: near 0 means the server was not what limited it).",
        "",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", default=str(ROOT / "build" / "memkeep"))
    p.add_argument("--workloads", default="mix,set")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=8.0, help="counted seconds per round")
    p.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds at the start of each round")
    p.add_argument("--idle-lag-s", type=float, default=2.0, help="seconds of lag sampling without load")
    p.add_argument("--sample-interval-ms", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--memory-mb", type=int, default=1024)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--repl-flag", dest="repl_flags", action="append", default=[],
                   help="an extra flag for both replicating nodes (repeatable), e.g. --repl-flag=--repl-sync=1")
    p.add_argument("--repl-tls", action="store_true",
                   help="replication links over TLS (--repl-tls, with a CA and node certificate made for the run)")
    p.add_argument("--layout", choices=("shared", "none"), default="shared")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--peer-cpus", default="1")
    p.add_argument("--server-cpu-quota", type=float, default=0,
                   help="cap alone and with-peer at this percent of one CPU each (cgroup cpu controller), so "
                        "that the servers, not the load generators, limit throughput; 0 = no cap")
    p.add_argument("--calibrate", action="store_true",
                   help="control: with-peer started WITHOUT replication flags and no peer (ratio should be ~1.0)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; known: {list(WORKLOADS)}")
    if args.layout == "none":
        args.server_cpus = args.client_cpus = args.peer_cpus = ""
    if not 0 <= args.server_cpu_quota <= 100:
        p.error("--server-cpu-quota is a percent of one CPU (0 = off)")
    if args.rounds < 1 or args.rounds > 50 or args.duration <= 0 or args.duration > 600:
        p.error("need 1 <= --rounds <= 50 and 0 < --duration <= 600")
    return args


def make_tls_flags(directory):
    """A CA and one node certificate it signed (for 127.0.0.1), made with the
    openssl command; the flags that make a node use them for --repl-tls."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*argv):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench replication CA",
            "-keyout", directory / "ca.key", "-out", directory / "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=node", "-keyout", directory / "node.key",
            "-out", directory / "node.csr")
    (directory / "node.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", directory / "node.csr", "-CA", directory / "ca.crt", "-CAkey",
            directory / "ca.key", "-CAcreateserial", "-days", "2", "-extfile", directory / "node.ext",
            "-out", directory / "node.crt")
    return ["--repl-tls", "--tls-cert", str(directory / "node.crt"), "--tls-key", str(directory / "node.key"),
            "--tls-ca", str(directory / "ca.crt")]


def binary_info(path):
    data = Path(path).read_bytes()
    stat = os.stat(path)
    return {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(),
            "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stat.st_mtime))}


def git_dirty():
    r = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "CMakeLists.txt"],
                       capture_output=True, text=True)
    return bool(r.stdout.strip())


def main(argv):
    args = parse_args(argv)
    common.handle_stop_signals()
    if not os.access(args.candidate, os.X_OK):
        sys.exit(f"server binary not found or not executable: {args.candidate}")
    help_text = subprocess.run([args.candidate, "--help"], capture_output=True, text=True, timeout=10).stdout
    if "--repl-port" not in help_text and not args.calibrate:
        sys.exit(f"{args.candidate} has no --repl-port: not a build with replication")
    if args.layout == "shared" and len(os.sched_getaffinity(0)) < 2:
        sys.exit("--layout shared needs two CPUs; use --layout none")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = "replication-calibrate" if args.calibrate else "replication"
    outdir = (Path(args.out) if args.out else RESULTS_DIR / f"{stamp}-{label}").resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    if args.repl_tls:
        args.repl_flags = args.repl_flags + make_tls_flags(outdir / "pki")
    kvload_binary = common.build_cxx(KVLOAD_SOURCE, KVLOAD_BINARY, std="c++20", libs=common.KVLOAD_LIBS)
    results = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git_commit": common.git_commit(),
        "git_dirty": git_dirty(),
        "binary": binary_info(args.candidate),
        "command": "bench/replication.py " + " ".join(argv),
        "args": vars(args),
        "loadavg_before": common.loadavg(),
        "workloads": {},
    }
    try:
        for name in args.workloads:
            w = run_workload(name, WORKLOADS[name], args, outdir, kvload_binary)
            results["workloads"][name] = w
            results["sampler_realtime"] = w.get("sampler_realtime")
            (outdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    finally:
        PROCESSES.stop_all()
        results["loadavg_after"] = common.loadavg()
        for w in results["workloads"].values():
            if w.get("rounds"):
                w["summary"] = summarize(w["rounds"])
        (outdir / "results.json").write_text(json.dumps(results, indent=2, default=str))

    report = render(results, args)
    common.publish_report(outdir, report)


if __name__ == "__main__":
    common.run_cli(main)
