#!/usr/bin/python3
"""Overflow-tier benchmark (issue 5): memkeep --storage overflow against
memcached with extstore, side by side, on a working set 10x larger than RAM.

Both servers run AT THE SAME TIME with the same -m (default 64 MB) and the
same disk size (default 1 GiB: memcached's `-o ext_path=FILE:SIZE`, memkeep's
`--disk-limit`); both data files live under this run's results directory
(bench/results/, gitignored), so on the same filesystem. Processes, pinning
(servers together on CPU 0, load generators together on CPU 1) and /proc
readers come from bench/run.py.

1. Load: one bench/kvload.cc per server, started together, sets every key
   once (default 65,536 keys `kv:` + 9 digits, values 4-16 KiB fixed per key:
   640 MiB, 10x -m), over one connection 64 sets deep (--load-connections;
   memcached loses more items when loaded faster). The harness then waits
   (bounded) until both servers have written what they are going to write to
   disk, and records curr_items and the disk stats (an item the tier could not
   take is lost like an eviction). memcached gets `-o slab_automove=2`
   (--ext-options): with the default automover it keeps only ~14,000 keys at
   -m 64 (see --ext-options below).
2. Rounds: one kvload per server, started together, same settings: Zipf key
   popularity (s=0.99 by default; ranks scattered over the key space), 95%
   gets / 5% sets, 16 connections, one request in flight per connection. An
   uncounted warm-up round, then --rounds counted rounds. Per round and server:
   hit ratio (gets that returned the value / gets), gets/s, get p50/p99
   (kvload measures every get), server CPU per get, and the disk reads per get
   from the server's own stats. Ratios memkeep/memcached are taken within a
   round; the report gives medians over rounds.
3. End: VmRSS of each server, disk bytes used, the disk-tier stats.

Every process started here is stopped by its PID at the end, also on Ctrl-C,
SIGTERM or an error. All traffic goes to 127.0.0.1. The data files are deleted
at the end unless --keep-data.

Usage:
  bench/overflow.py                        # about 4-5 minutes
  bench/overflow.py --rounds 3 --duration 10 --key-dist hotcold
Raw outputs and the report go to bench/results/<timestamp>-overflow/.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as common  # bench/run.py: processes stopped by PID, pinning, servers, stats, /proc readers  # noqa: E402

BENCH_DIR = common.BENCH_DIR
ROOT = common.ROOT
RESULTS_DIR = common.RESULTS_DIR
HOST = common.HOST
PROCESSES = common.PROCESSES
KVLOAD_SOURCE = BENCH_DIR / "kvload.cc"
KVLOAD_BINARY = RESULTS_DIR / ".bin" / "kvload-overflow"
MIB = 1024 * 1024

BASE, CAND = "memcached", "memkeep"

# Counters sampled around each round (only those the server has are kept).
DISK_COUNTERS = {
    BASE: ["get_extstore", "get_aborted_extstore", "get_oom_extstore", "recache_from_extstore",
           "miss_from_extstore", "badcrc_from_extstore", "extstore_objects_read", "extstore_bytes_read",
           "extstore_objects_written", "extstore_bytes_written", "extstore_objects_evicted",
           "extstore_bytes_evicted", "evictions", "get_hits", "get_misses", "cmd_get", "cmd_set"],
    CAND: ["storage_reads_from_disk", "storage_reads_from_ram", "storage_disk_reads", "storage_disk_writes",
           "storage_disk_bytes_written", "storage_disk_evictions", "storage_disk_bytes_reclaimed",
           "storage_disk_write_drops", "storage_write_errors", "evictions", "get_hits", "get_misses",
           "cmd_get", "cmd_set"],
}
# Disk reads per get: what each server counts as "a get that read the disk".
DISK_READ_STAT = {BASE: "get_extstore", CAND: "storage_disk_reads"}
WRITE_BYTES_STAT = {BASE: "extstore_bytes_written", CAND: "storage_disk_bytes_written"}


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

def all_stats(server):
    s = common.stats(server.port)
    s.update(common.stats(server.port, b"storage"))  # memkeep's storage group; memcached has none
    return s


def dir_bytes(path):
    """Bytes allocated on disk under path (a file or a directory)."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    total = 0
    for f in files:
        try:
            total += f.stat().st_blocks * 512
        except FileNotFoundError:
            pass
    return total


def proc_io(pid):
    out = {}
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            k, v = line.split(":")
            out[k.strip()] = int(v)
    except OSError:
        pass
    return out


def start_servers(args, outdir):
    data = outdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    ext_file = data / "memcached.extstore"
    mk_dir = data / "memkeep-overflow"
    disk = f"{args.disk_mb}m"
    base_extra = ["-o", f"ext_path={ext_file}:{disk}"] + (["-o", args.ext_options] if args.ext_options else [])
    cand_extra = ["--storage", "overflow", "--data-dir", mk_dir, "--disk-limit", disk]
    servers = {
        BASE: common.start_server(BASE, args.baseline, args, args.server_cpus, outdir, base_extra),
        CAND: common.start_server(CAND, args.candidate, args, args.server_cpus, outdir, cand_extra),
    }
    servers[BASE].data_path, servers[CAND].data_path = ext_file, mk_dir
    return servers


# --------------------------------------------------------------------------
# Load generator
# --------------------------------------------------------------------------

def kvload_command(server, kvload_binary, args, *, load, duration, warmup, seed):
    cmd = [kvload_binary, "--port", server.port, "--protocol", "memcached", "--workload", "mix",
           "--get-ratio", args.get_ratio, "--value-size", args.value_min, "--value-size-max", args.value_max,
           "--keys", args.keys, "--key-dist", args.key_dist, "--zipf-s", args.zipf_s,
           "--hot-keys", args.hot_keys, "--hot-share", args.hot_share,
           "--connections", args.load_connections if load else args.connections, "--pipeline", 1,
           "--duration", duration, "--warmup", warmup, "--seed", seed, "--load", "yes" if load else "no"]
    return common.pinned([str(c) for c in cmd], args.client_cpus)


def run_pair(servers, kvload_binary, args, outdir, name, *, load, duration, warmup, seed, order, limit):
    """One kvload per server, started together; returns {label: kvload JSON + server CPU seconds}."""
    commands = {label: kvload_command(servers[label], kvload_binary, args, load=load, duration=duration,
                                      warmup=warmup, seed=seed) for label in order}
    return common.run_kvload_pair(servers, commands, outdir, name, order, limit)


# --------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------

def settle_after_load(servers, limit_seconds, interval=0.5, stable_polls=4):
    """Waits until neither server is still writing to disk: memkeep's queue of
    evicted items is empty and both servers' disk-write counters have not moved
    for a few polls (memcached's storage thread keeps moving cold items to
    extstore for a while after the load). Bounded by limit_seconds."""
    start = time.monotonic()
    previous, unchanged = None, 0
    while time.monotonic() - start < limit_seconds:
        b, c = all_stats(servers[BASE]), all_stats(servers[CAND])
        state = (b.get("extstore_objects_written"), b.get("curr_items"),
                 c.get("storage_disk_writes"), c.get("curr_items"), c.get("storage_disk_pending_bytes"))
        pending = int(c.get("storage_disk_pending_bytes", "0") or 0)
        unchanged = unchanged + 1 if state == previous and pending == 0 else 0
        if unchanged >= stable_polls:
            break
        previous = state
        time.sleep(interval)
    return time.monotonic() - start


def load_phase(servers, kvload_binary, args, outdir):
    print(f"[load] {args.keys:,} keys, {args.value_min}-{args.value_max} B values "
          f"(~{args.keys * (args.value_min + args.value_max) / 2 / MIB:,.0f} MiB) into each server", file=sys.stderr,
          flush=True)
    started = time.monotonic()
    figs = run_pair(servers, kvload_binary, args, outdir, "load", load=True, duration=0, warmup=0, seed=1,
                    order=[BASE, CAND], limit=args.load_timeout)
    load_seconds = time.monotonic() - started
    settle_seconds = settle_after_load(servers, args.settle_timeout)
    out = {"load_wall_s": load_seconds, "settle_s": settle_seconds}
    for label, server in servers.items():
        s = all_stats(server)
        out[label] = {
            "kvload": figs[label],
            "curr_items": int(s.get("curr_items", 0)),
            "rss_bytes": common.vm_rss_bytes(server.proc.pid),
            "disk_bytes": dir_bytes(server.data_path),
            "stats": s,
        }
    return out


def round_problems(fig):
    problems = []
    if fig.get("errors") or fig.get("broken_connections") or fig.get("outstanding_at_end"):
        problems.append(f"kvload: {fig.get('errors')} errors, {fig.get('broken_connections')} broken connections, "
                        f"{fig.get('outstanding_at_end')} unanswered (first: `{fig.get('first_error', '')}`)")
    if not fig.get("gets"):
        problems.append("no gets counted")
    return problems


def measured_round(servers, kvload_binary, args, outdir, index, duration):
    name = "warmup" if index < 0 else f"round{index + 1}"
    order = [BASE, CAND] if index % 2 == 0 else [CAND, BASE]
    before = {lbl: all_stats(s) for lbl, s in servers.items()}
    cpu_before = {lbl: common.cpu_seconds(s.proc.pid) for lbl, s in servers.items()}
    io_before = {lbl: proc_io(s.proc.pid) for lbl, s in servers.items()}
    busy_before = common.cpu_busy_counters()
    figs = run_pair(servers, kvload_binary, args, outdir, name, load=False, duration=duration,
                    warmup=args.round_warmup, seed=100 + index, order=order, limit=duration + args.round_warmup + 30)
    busy_after = common.cpu_busy_counters()
    out = {"cpu_busy_percent": common.busy_percent_by_cpu(busy_before, busy_after)}
    for label, server in servers.items():
        after = all_stats(server)
        fig = figs[label]
        delta = {k: int(after[k]) - int(before[label].get(k, 0)) for k in DISK_COUNTERS[label] if k in after}
        io_after = proc_io(server.proc.pid)
        server_gets = delta.get("cmd_get", 0)  # over the whole round incl. kvload's warm-up second
        cpu = common.cpu_seconds(server.proc.pid) - cpu_before[label]
        out[label] = {
            **{k: fig.get(k) for k in ("gets", "sets", "get_misses", "get_hits", "get_hit_ratio", "gets_per_s",
                                       "get_p50_us", "get_p99_us", "ops_per_s", "errors", "first_error")},
            "stats_delta": delta,
            "server_cpu_us_per_get": 1e6 * cpu / max(1, server_gets + delta.get("cmd_set", 0)),
            "disk_reads_per_get": delta.get(DISK_READ_STAT[label], 0) / max(1, server_gets),
            "disk_bytes_written_per_get": delta.get(WRITE_BYTES_STAT[label], 0) / max(1, server_gets),
            "os_read_bytes_per_get": (io_after.get("read_bytes", 0) - io_before[label].get("read_bytes", 0))
            / max(1, server_gets),
            "problems": round_problems(fig),
        }
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def med(values):
    return common.median(values)


def fmt(v, spec="{:,.0f}"):
    return common.fmt(v, spec)


def summarize(rounds):
    def m(label, key):
        return med([r[label].get(key) for r in rounds])

    tput = [r[CAND]["gets_per_s"] / r[BASE]["gets_per_s"] for r in rounds if r[BASE]["gets_per_s"]]
    hit = [r[CAND]["get_hit_ratio"] / r[BASE]["get_hit_ratio"] for r in rounds if r[BASE]["get_hit_ratio"]]
    cpu = [r[BASE]["server_cpu_us_per_get"] / r[CAND]["server_cpu_us_per_get"] for r in rounds
           if r[CAND]["server_cpu_us_per_get"]]
    s = {"tput_ratio": med(tput), "tput_min": min(tput, default=None), "tput_max": max(tput, default=None),
         "hit_ratio_ratio": med(hit), "cpu_ratio": med(cpu)}
    for label in (BASE, CAND):
        for key in ("get_hit_ratio", "gets_per_s", "get_p50_us", "get_p99_us", "server_cpu_us_per_get",
                    "disk_reads_per_get", "disk_bytes_written_per_get", "os_read_bytes_per_get"):
            s[f"{label}_{key}"] = m(label, key)
    return s


def pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}%"


def held_cell(label, L, keys):
    """memcached's curr_items counts items on extstore too (their headers stay
    in RAM); memkeep's counts RAM only, so its disk keys are added (RocksDB's
    estimate, storage_items_on_disk)."""
    if label == BASE:
        return f"{L['curr_items']:,} of {keys:,} (curr_items)"
    on_disk = int(L["stats"].get("storage_items_on_disk", 0))
    return f"{L['curr_items'] + on_disk:,} of {keys:,} (curr_items {L['curr_items']:,} + ~{on_disk:,} on disk)"


def render_report(results, args):
    rounds, load, end = results["rounds"], results["load"], results.get("end", {})
    s = summarize(rounds) if rounds else None
    dist = {"zipf": f"Zipf s={args.zipf_s}", "hotcold": f"hot/cold: {100 * args.hot_share:.0f}% of requests to "
            f"{100 * args.hot_keys:.0f}% of keys", "uniform": "uniform"}[args.key_dist]
    lines = [
        f"## {CAND} --storage overflow vs {BASE} extstore",
        "",
        f"- date: {results['started_at']}; git commit: {results['git_commit']}; memcached {results['versions'].get(BASE)}",
        f"- command: `{results['command']}`",
        f"- both: `-m {args.memory_mb} -t {args.threads} -c 4096`, disk {args.disk_mb} MiB "
        f"(memcached `-o ext_path=FILE:{args.disk_mb}m`{', -o ' + args.ext_options if args.ext_options else ''}; "
        f"memkeep `--storage overflow --disk-limit {args.disk_mb}m`), both files under bench/results/ "
        f"(same filesystem)",
        f"- working set: {args.keys:,} keys, values {args.value_min:,}-{args.value_max:,} B "
        f"(~{args.keys * (args.value_min + args.value_max) / 2 / MIB:,.0f} MiB, "
        f"{args.keys * (args.value_min + args.value_max) / 2 / MIB / args.memory_mb:.1f}x -m)",
        f"- reads: {dist}, {100 * args.get_ratio:.0f}% gets / {100 * (1 - args.get_ratio):.0f}% sets, "
        f"{args.connections} connections per kvload, 1 request in flight each; "
        f"{args.rounds} paired rounds of {args.duration} s (+{args.round_warmup} s uncounted at the start of each) "
        f"after a {args.warmup} s warm-up round",
        f"- pinning: servers on CPU {args.server_cpus or 'any'}, kvloads on CPU {args.client_cpus or 'any'}; "
        f"load average before / after: {results['loadavg_before']} / {results.get('loadavg_after', '?')}",
        "",
    ]
    if s:
        lines += [
            f"| | {BASE} extstore | {CAND} overflow | {CAND} / {BASE} |",
            "|---|---:|---:|---:|",
            f"| hit ratio (median) | {pct(s[f'{BASE}_get_hit_ratio'])} | {pct(s[f'{CAND}_get_hit_ratio'])} "
            f"| **{fmt(s['hit_ratio_ratio'], '{:.3f}')}** |",
            f"| gets/s (median; ratio min–max) | {fmt(s[f'{BASE}_gets_per_s'])} | {fmt(s[f'{CAND}_gets_per_s'])} "
            f"| **{fmt(s['tput_ratio'], '{:.3f}')}** ({fmt(s['tput_min'], '{:.3f}')}–{fmt(s['tput_max'], '{:.3f}')}) |",
            f"| get p50 / p99 µs | {fmt(s[f'{BASE}_get_p50_us'])} / {fmt(s[f'{BASE}_get_p99_us'])} "
            f"| {fmt(s[f'{CAND}_get_p50_us'])} / {fmt(s[f'{CAND}_get_p99_us'])} | |",
            f"| server CPU µs per request (efficiency ratio {BASE}/{CAND}) "
            f"| {fmt(s[f'{BASE}_server_cpu_us_per_get'], '{:.1f}')} | {fmt(s[f'{CAND}_server_cpu_us_per_get'], '{:.1f}')} "
            f"| {fmt(s['cpu_ratio'], '{:.3f}')} |",
            f"| disk reads per get ({DISK_READ_STAT[BASE]} / {DISK_READ_STAT[CAND]}) "
            f"| {fmt(s[f'{BASE}_disk_reads_per_get'], '{:.3f}')} | {fmt(s[f'{CAND}_disk_reads_per_get'], '{:.3f}')} | |",
            f"| bytes written to disk per get ({WRITE_BYTES_STAT[BASE]} / {WRITE_BYTES_STAT[CAND]}) "
            f"| {fmt(s[f'{BASE}_disk_bytes_written_per_get'])} | {fmt(s[f'{CAND}_disk_bytes_written_per_get'])} | |",
            f"| block-device bytes read per get (/proc/PID/io) | {fmt(s[f'{BASE}_os_read_bytes_per_get'])} "
            f"| {fmt(s[f'{CAND}_os_read_bytes_per_get'])} | |",
        ]
        if end:
            lines.append(f"| VmRSS at the end, MiB | {end[BASE]['rss_bytes'] / MIB:.1f} | {end[CAND]['rss_bytes'] / MIB:.1f} "
                         f"| {end[CAND]['rss_bytes'] / end[BASE]['rss_bytes']:.3f} |")
            lines.append(f"| disk bytes used at the end, MiB | {end[BASE]['disk_bytes'] / MIB:.0f} "
                         f"| {end[CAND]['disk_bytes'] / MIB:.0f} | |")
        lines += ["", "Hit ratio: gets that returned the (byte-checked) value ÷ gets, counted by kvload. Ratios are "
                  "taken within each round, then the median. Server CPU per request: the server's CPU time over the "
                  "round ÷ the gets and sets its stats counted (higher efficiency ratio is better for memkeep).", ""]

    lines += ["### Load phase", "",
              f"Both kvloads set every key once, together ({load['load_wall_s']:.1f} s wall); the harness then waited "
              f"{load['settle_s']:.1f} s for both servers to finish writing to disk.", "",
              "| | load s | sets/s | items held | VmRSS MiB | disk MiB | disk writes / drops |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for label in (BASE, CAND):
        L = load[label]
        st = L["stats"]
        if label == BASE:
            disk = (f"extstore_objects_written {fmt(int(st.get('extstore_objects_written', 0)), '{:,}')}, "
                    f"evictions {fmt(int(st.get('evictions', 0)), '{:,}')}")
        else:
            disk = (f"storage_disk_writes {fmt(int(st.get('storage_disk_writes', 0)), '{:,}')}, "
                    f"storage_disk_write_drops {fmt(int(st.get('storage_disk_write_drops', 0)), '{:,}')}, "
                    f"storage_disk_evictions {fmt(int(st.get('storage_disk_evictions', 0)), '{:,}')}")
        k = L["kvload"]
        lines.append(f"| {label} | {k.get('load_s', 0):.1f} | {fmt(args.keys / k['load_s'] if k.get('load_s') else None)} "
                     f"| {held_cell(label, L, args.keys)} | {L['rss_bytes'] / MIB:.1f} | {L['disk_bytes'] / MIB:.0f} "
                     f"| {disk} |")
    lines.append("")

    if rounds:
        lines += ["### Rounds", "",
                  f"| round | hit ratio {BASE} / {CAND} | gets/s {BASE} / {CAND} | ratio | get p50 / p99 µs {BASE} "
                  f"| get p50 / p99 µs {CAND} | CPU µs per req {BASE} / {CAND} | disk reads per get {BASE} / {CAND} "
                  "| CPUs busy % |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for i, r in enumerate(rounds, 1):
            b, c = r[BASE], r[CAND]
            flag = " ⚠" if b["problems"] or c["problems"] else ""
            busy = " / ".join(f"{r['cpu_busy_percent'][k]:.0f}" for k in sorted(r["cpu_busy_percent"]))
            lines.append(
                f"| {i}{flag} | {pct(b['get_hit_ratio'])} / {pct(c['get_hit_ratio'])} "
                f"| {fmt(b['gets_per_s'])} / {fmt(c['gets_per_s'])} "
                f"| {c['gets_per_s'] / b['gets_per_s']:.3f} "
                f"| {fmt(b['get_p50_us'])} / {fmt(b['get_p99_us'])} | {fmt(c['get_p50_us'])} / {fmt(c['get_p99_us'])} "
                f"| {b['server_cpu_us_per_get']:.1f} / {c['server_cpu_us_per_get']:.1f} "
                f"| {b['disk_reads_per_get']:.3f} / {c['disk_reads_per_get']:.3f} | {busy} |")
        lines.append(
            f"| **median** | {pct(s[f'{BASE}_get_hit_ratio'])} / {pct(s[f'{CAND}_get_hit_ratio'])} "
            f"| {fmt(s[f'{BASE}_gets_per_s'])} / {fmt(s[f'{CAND}_gets_per_s'])} | **{fmt(s['tput_ratio'], '{:.3f}')}** "
            f"| {fmt(s[f'{BASE}_get_p50_us'])} / {fmt(s[f'{BASE}_get_p99_us'])} "
            f"| {fmt(s[f'{CAND}_get_p50_us'])} / {fmt(s[f'{CAND}_get_p99_us'])} "
            f"| {fmt(s[f'{BASE}_server_cpu_us_per_get'], '{:.1f}')} / {fmt(s[f'{CAND}_server_cpu_us_per_get'], '{:.1f}')} "
            f"| {fmt(s[f'{BASE}_disk_reads_per_get'], '{:.3f}')} / {fmt(s[f'{CAND}_disk_reads_per_get'], '{:.3f}')} | |")
        lines.append("")
        warnings = [f"- round {i}, {label}: " + "; ".join(r[label]["problems"])
                    for i, r in enumerate(rounds, 1) for label in (BASE, CAND) if r[label]["problems"]]
        if warnings:
            lines += ["**Warning: rounds marked ⚠ had errors; do not trust them.**", ""] + warnings + [""]

        lines += ["### Disk-tier counters, summed over the counted rounds", ""]
        for label in (BASE, CAND):
            totals = {}
            for r in rounds:
                for k, v in r[label]["stats_delta"].items():
                    totals[k] = totals.get(k, 0) + v
            lines.append(f"- {label}: " + ", ".join(f"`{k}` {v:,}" for k, v in totals.items()))
        lines.append("")
    if end:
        lines += ["### At the end", ""]
        for label in (BASE, CAND):
            st = end[label]["stats"]
            keys = [k for k in st if k.startswith(("storage_", "extstore_")) or k in ("curr_items", "evictions")]
            lines.append(f"- {label}: VmRSS {end[label]['rss_bytes'] / MIB:.1f} MiB, disk {end[label]['disk_bytes'] / MIB:.0f} MiB; "
                         + ", ".join(f"`{k}` {st[k]}" for k in keys))
        lines.append("")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", default=str(ROOT / "build" / "memkeep"), help="memkeep binary")
    p.add_argument("--baseline", default="/usr/bin/memcached")
    p.add_argument("--memory-mb", type=int, default=64, help="-m of both servers")
    p.add_argument("--disk-mb", type=int, default=1024, help="ext_path size and --disk-limit, MiB")
    p.add_argument("--threads", type=int, default=1, help="-t of both servers")
    p.add_argument("--working-set-ratio", type=float, default=10.0,
                   help="working set / -m (sets --keys from the mean value size unless --keys is given)")
    p.add_argument("--keys", type=int, default=0)
    p.add_argument("--value-min", type=int, default=4096)
    p.add_argument("--value-max", type=int, default=16384)
    p.add_argument("--key-dist", choices=("zipf", "hotcold", "uniform"), default="zipf")
    p.add_argument("--zipf-s", type=float, default=0.99)
    p.add_argument("--hot-keys", type=float, default=0.1, help="hotcold: share of keys that are hot")
    p.add_argument("--hot-share", type=float, default=0.9, help="hotcold: share of requests to hot keys")
    p.add_argument("--get-ratio", type=float, default=0.95)
    p.add_argument("--connections", type=int, default=16, help="kvload connections per server")
    p.add_argument("--load-connections", type=int, default=1,
                   help="kvload connections per server in the load phase (each 64 sets deep)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=20, help="counted seconds per round")
    p.add_argument("--round-warmup", type=float, default=1, help="uncounted seconds at the start of each round")
    p.add_argument("--warmup", type=float, default=15, help="seconds of an uncounted first round (0: none)")
    # slab_automove=2: without it memcached -m 64 keeps only ~14,000 of the 65,536 keys: the load assigns
    # every slab page to the large-value classes and the 96-byte class that holds extstore item headers
    # keeps one page (10,922 headers); the default automover never moves a page back (slabs_moved 0).
    p.add_argument("--ext-options", default="slab_automove=2",
                   help="extra memcached -o options (comma list; \"\" for none)")
    p.add_argument("--load-timeout", type=float, default=240)
    p.add_argument("--settle-timeout", type=float, default=30)
    p.add_argument("--layout", choices=("shared", "none"), default="shared")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--keep-data", action="store_true", help="keep the data files after the run")
    p.add_argument("--out", help="results directory (default bench/results/<timestamp>-overflow)")
    args = p.parse_args(argv)
    if args.layout == "none":
        args.server_cpus = args.client_cpus = ""
    if args.value_min < 1 or args.value_max < args.value_min:
        p.error("need 1 <= --value-min <= --value-max")
    if not args.keys:
        args.keys = int(round(args.working_set_ratio * args.memory_mb * MIB / ((args.value_min + args.value_max) / 2)))
    if args.rounds < 1 or args.duration < 1:
        p.error("need --rounds >= 1 and --duration >= 1")
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
    outdir = Path(args.out) if args.out else RESULTS_DIR / f"{stamp}-overflow"
    outdir.mkdir(parents=True, exist_ok=True)
    results = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git_commit": common.git_commit(),
        "command": "bench/overflow.py" + ("" if not argv else " " + " ".join(argv)),
        "args": vars(args),
        "loadavg_before": common.loadavg(),
        "rounds": [],
        "versions": {},
    }
    kvload_binary = common.build_cxx(KVLOAD_SOURCE, KVLOAD_BINARY, std="c++20", libs=common.KVLOAD_LIBS)
    servers = {}
    try:
        servers = start_servers(args, outdir)
        results["versions"] = {lbl: common.stats(s.port).get("version") for lbl, s in servers.items()}
        results["server_commands"] = {lbl: s.cmd for lbl, s in servers.items()}
        results["load"] = load_phase(servers, kvload_binary, args, outdir)
        for label in (BASE, CAND):
            L = results["load"][label]
            print(f"  {label}: load {L['kvload'].get('load_s', 0):.1f} s, curr_items {L['curr_items']:,}, "
                  f"disk {L['disk_bytes'] / MIB:.0f} MiB, errors {L['kvload'].get('load_errors')}",
                  file=sys.stderr, flush=True)
        if args.warmup > 0:
            print(f"[warm-up] {args.warmup:.0f} s", file=sys.stderr, flush=True)
            results["warmup"] = measured_round(servers, kvload_binary, args, outdir, -1, args.warmup)
        for i in range(args.rounds):
            r = measured_round(servers, kvload_binary, args, outdir, i, args.duration)
            results["rounds"].append(r)
            b, c = r[BASE], r[CAND]
            print(f"  round {i + 1}: hit {100 * b['get_hit_ratio']:.2f}% / {100 * c['get_hit_ratio']:.2f}%, "
                  f"gets/s {b['gets_per_s']:,.0f} / {c['gets_per_s']:,.0f} (ratio {c['gets_per_s'] / b['gets_per_s']:.3f}), "
                  f"disk reads/get {b['disk_reads_per_get']:.3f} / {c['disk_reads_per_get']:.3f}",
                  file=sys.stderr, flush=True)
        results["end"] = {lbl: {"rss_bytes": common.vm_rss_bytes(s.proc.pid), "disk_bytes": dir_bytes(s.data_path),
                                "stats": all_stats(s)} for lbl, s in servers.items()}
    finally:
        PROCESSES.stop_all()
        results["loadavg_after"] = common.loadavg()
        (outdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
        if not args.keep_data:
            shutil.rmtree(outdir / "data", ignore_errors=True)

    report = render_report(results, args)
    common.publish_report(outdir, report)


if __name__ == "__main__":
    common.run_cli(main)
