#!/usr/bin/python3
"""TLS benchmark: memkeep (the candidate) against Debian's memcached, both with TLS on.

memcaslap cannot speak TLS, so the load generator is bench/kvload.cc with
--tls (OpenSSL client, no certificate verification, non-blocking
SSL_read/SSL_write in its epoll loop, handshakes done before the measurement).

What it does (see docs/BENCHMARKS.md, section "TLS"):
  1. makes a self-signed certificate (RSA 2048, CN 127.0.0.1) with the openssl
     command into the run's results directory;
  2. starts both servers with the same flags, pinned together on CPU 0:
     -p PORT -l 127.0.0.1 -m 1024 -t 1 -c 4096 -Z -o ssl_chain_cert=CERT,ssl_key=KEY
     (memkeep accepts memcached's -o spelling; -u root when run as root);
  3. stores every key once in each server (one kvload per server, over TLS);
  4. runs paired rounds: one kvload per server, started together, pinned
     together on CPU 1, same settings and seed: 90% get / 10% set, 100-byte
     values, 16 connections, pipeline 1; which one starts first alternates.
     Each round: 1 s uncounted, then 8 s counted.
Per round: ops/s of each, the ratio memkeep / memcached, p50/p99 of every
counted request (kvload measures each one), server CPU per request
(/proc/PID/stat over the round). The report gives medians and the median of
the per-round ratios.

--plain runs exactly the same without TLS (a control: the ratio without TLS
on the same load generator, to tell what TLS changes).

Every process is stopped by its PID at the end, also on Ctrl-C, SIGTERM or an
error (bench/run.py's process group). All traffic goes to 127.0.0.1.

Usage:
  bench/tls.py --candidate build/memkeep          # about 1.5 minutes
  bench/tls.py --candidate build/memkeep --plain  # the control without TLS
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as common  # bench/run.py: processes stopped by PID, pinning, server start, /proc readers  # noqa: E402

BENCH_DIR = common.BENCH_DIR
ROOT = common.ROOT
RESULTS_DIR = common.RESULTS_DIR
KVLOAD_SOURCE = BENCH_DIR / "kvload.cc"
KVLOAD_BINARY = RESULTS_DIR / ".bin" / "kvload-tls"
PROCESSES = common.PROCESSES
BASE, CAND = "memcached", "memkeep"


def make_certificate(outdir):
    cert, key = outdir / "tls-cert.pem", outdir / "tls-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def kvload_command(server, kvload_binary, args, *, load, duration, warmup, seed):
    cmd = [kvload_binary, "--port", server.port, "--protocol", "memcached", "--workload", "mix",
           "--get-ratio", args.get_ratio, "--value-size", args.value_size, "--keys", args.keys,
           "--connections", args.connections, "--pipeline", args.pipeline,
           "--duration", duration, "--warmup", warmup, "--seed", seed, "--load", "yes" if load else "no"]
    if not args.plain:
        cmd.append("--tls")
    return common.pinned([str(c) for c in cmd], args.client_cpus)


def run_pair(servers, kvload_binary, args, outdir, name, *, load, duration, warmup, seed, order, limit):
    """One kvload per server, started together; returns {label: kvload JSON + server CPU seconds}."""
    commands = {label: kvload_command(servers[label], kvload_binary, args, load=load, duration=duration,
                                      warmup=warmup, seed=seed) for label in order}
    return common.run_kvload_pair(servers, commands, outdir, name, order, limit)


def problems(fig):
    p = []
    for key in ("errors", "broken_connections", "outstanding_at_end", "get_misses"):
        if fig.get(key):
            p.append(f"{key}={fig[key]}")
    if fig.get("first_error"):
        p.append(f"first error: {fig['first_error'][:100]}")
    return p


def render(results, args):
    rounds = results["rounds"]
    mode = "plain TCP (control)" if args.plain else "TLS on both"
    lines = [
        f"## {CAND} vs {BASE}, {mode}",
        "",
        f"- date: {results['started_at']}; git commit: {results['git_commit']}",
        f"- command: `{results['command']}`",
        f"- servers: `{' '.join(results['server_flags'])}` (same for both), pinned to CPU {args.server_cpus or 'any'}",
        f"- kvload: {args.get_ratio:.0%} get, {args.value_size}-byte values, {args.keys:,} keys, "
        f"{args.connections} connections, pipeline {args.pipeline}{', --tls' if not args.plain else ''}; "
        f"pinned to CPU {args.client_cpus or 'any'}; {args.rounds} paired rounds of {args.warmup} s uncounted "
        f"+ {args.duration} s counted",
        f"- TLS negotiated: {results.get('tls_negotiated') or 'n/a'}",
        f"- load average before / after: {results['loadavg_before']} / {results.get('loadavg_after', '?')}",
        "",
        f"| round | {BASE} ops/s | {CAND} ops/s | ratio | {BASE} p50 / p99 µs | {CAND} p50 / p99 µs "
        f"| CPU µs per op {BASE} / {CAND} | CPU efficiency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rounds, 1):
        b, c = r[BASE], r[CAND]
        flag = " ⚠" if problems(b) or problems(c) else ""
        lines.append(
            f"| {i}{flag} | {b['ops_per_s']:,.0f} | {c['ops_per_s']:,.0f} | {r['ratio']:.3f} "
            f"| {b['p50_us']:,.0f} / {b['p99_us']:,.0f} | {c['p50_us']:,.0f} / {c['p99_us']:,.0f} "
            f"| {b['cpu_us_per_op']:.1f} / {c['cpu_us_per_op']:.1f} | {r['cpu_ratio']:.3f} |")
    s = results["summary"]
    lines += [
        f"| **median** | **{s['base_ops']:,.0f}** | **{s['cand_ops']:,.0f}** | **{s['ratio']:.3f}** "
        f"({s['ratio_min']:.3f}–{s['ratio_max']:.3f}) | {s['base_p50']:,.0f} / {s['base_p99']:,.0f} "
        f"| {s['cand_p50']:,.0f} / {s['cand_p99']:,.0f} | {s['base_cpu_us']:.1f} / {s['cand_cpu_us']:.1f} "
        f"| {s['cpu_ratio']:.3f} |",
        "",
        "Ratio: memkeep ops/s ÷ memcached ops/s within a round (median, min–max). CPU efficiency: memcached ÷ "
        "memkeep server CPU per op (CPU over the whole round, handshakes and the uncounted second included, "
        "divided by ops/s × round length). p50/p99: kvload's exact percentiles of every counted request; "
        "the medians are over rounds.",
        "",
    ]
    flagged = [(i, lbl, problems(r[lbl])) for i, r in enumerate(rounds, 1) for lbl in (BASE, CAND) if problems(r[lbl])]
    if flagged:
        lines += ["**Warning: flagged rounds (⚠):**", ""] + [f"- round {i}, {lbl}: {'; '.join(p)}"
                                                             for i, lbl, p in flagged] + [""]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", default=str(ROOT / "build" / "memkeep"))
    p.add_argument("--baseline", default="/usr/bin/memcached")
    p.add_argument("--plain", action="store_true", help="the same run without TLS (control)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=8.0, help="counted seconds per round")
    p.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds at the start of each round")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--memory-mb", type=int, default=1024)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--get-ratio", type=float, default=0.9)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--layout", choices=("shared", "none"), default="shared")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.layout == "none":
        args.server_cpus = args.client_cpus = ""
    if args.rounds < 1 or args.rounds > 50 or args.duration <= 0 or args.duration > 600:
        p.error("need 1 <= --rounds <= 50 and 0 < --duration <= 600")
    return args


def main(argv):
    args = parse_args(argv)
    common.handle_stop_signals()
    for binary in (args.baseline, args.candidate):
        if not os.access(binary, os.X_OK):
            sys.exit(f"server binary not found or not executable: {binary}")
    if args.layout == "shared" and len(os.sched_getaffinity(0)) < 2:
        sys.exit("--layout shared needs two CPUs; use --layout none")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = (Path(args.out) if args.out else RESULTS_DIR / f"{stamp}-{'plain' if args.plain else 'tls'}").resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    kvload_binary = common.build_cxx(KVLOAD_SOURCE, KVLOAD_BINARY, std="c++20", libs=common.KVLOAD_LIBS)
    extra = []
    if not args.plain:
        cert, key = make_certificate(outdir)
        extra = ["-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}"]
    results = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git_commit": common.git_commit(),
        "command": "bench/tls.py " + " ".join(argv),
        "args": vars(args),
        "loadavg_before": common.loadavg(),
        "rounds": [],
    }
    try:
        servers = {
            BASE: common.start_server(BASE, args.baseline, args, args.server_cpus, outdir, extra),
            CAND: common.start_server(CAND, args.candidate, args, args.server_cpus, outdir, extra),
        }
        results["server_flags"] = servers[BASE].cmd[1:]
        print(f"[load] {args.keys:,} keys into each server", file=sys.stderr, flush=True)
        load = run_pair(servers, kvload_binary, args, outdir, "load", load=True, duration=0, warmup=0, seed=1,
                        order=[BASE, CAND], limit=120)
        for label, fig in load.items():
            if problems(fig):
                raise RuntimeError(f"load into {label} failed: {problems(fig)}")
        results["load"] = load
        results["tls_negotiated"] = load[CAND].get("tls") or None
        for i in range(args.rounds):
            order = [BASE, CAND] if i % 2 == 0 else [CAND, BASE]
            figs = run_pair(servers, kvload_binary, args, outdir, f"round{i + 1}", load=False,
                            duration=args.duration, warmup=args.warmup, seed=100 + i, order=order,
                            limit=args.duration + args.warmup + 40)
            for fig in figs.values():
                total_ops = fig["ops_per_s"] * (args.duration + args.warmup)
                fig["cpu_us_per_op"] = 1e6 * fig["server_cpu_s"] / max(1.0, total_ops)
            figs["ratio"] = figs[CAND]["ops_per_s"] / max(1e-9, figs[BASE]["ops_per_s"])
            figs["cpu_ratio"] = figs[BASE]["cpu_us_per_op"] / max(1e-9, figs[CAND]["cpu_us_per_op"])
            results["rounds"].append(figs)
            print(f"  round {i + 1}: {BASE} {figs[BASE]['ops_per_s']:,.0f} ops/s, {CAND} "
                  f"{figs[CAND]['ops_per_s']:,.0f} ops/s, ratio {figs['ratio']:.3f}", file=sys.stderr, flush=True)
        for label, server in servers.items():
            results.setdefault("server_versions", {})[label] = common.stats(server.port).get("version") \
                if args.plain else "(stats not read over TLS)"
    finally:
        PROCESSES.stop_all()
        results["loadavg_after"] = common.loadavg()
        (outdir / "results.json").write_text(json.dumps(results, indent=2, default=str))

    rounds = results["rounds"]
    med = common.median
    results["summary"] = {
        "base_ops": med([r[BASE]["ops_per_s"] for r in rounds]), "cand_ops": med([r[CAND]["ops_per_s"] for r in rounds]),
        "ratio": med([r["ratio"] for r in rounds]), "ratio_min": min(r["ratio"] for r in rounds),
        "ratio_max": max(r["ratio"] for r in rounds), "cpu_ratio": med([r["cpu_ratio"] for r in rounds]),
        "base_p50": med([r[BASE]["p50_us"] for r in rounds]), "base_p99": med([r[BASE]["p99_us"] for r in rounds]),
        "cand_p50": med([r[CAND]["p50_us"] for r in rounds]), "cand_p99": med([r[CAND]["p99_us"] for r in rounds]),
        "base_cpu_us": med([r[BASE]["cpu_us_per_op"] for r in rounds]),
        "cand_cpu_us": med([r[CAND]["cpu_us_per_op"] for r in rounds]),
    }
    (outdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report = render(results, args)
    common.publish_report(outdir, report)


if __name__ == "__main__":
    common.run_cli(main)
