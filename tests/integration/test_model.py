"""Model-based randomized test of every command family, in the three storage
modes (issue 11, item 5).

A seeded generator draws commands (set/add/replace/append/prepend/cas,
delete, incr/decr, touch, get/gets/gat/gats, mg with v/f/t/c/s/h/u/T/N, ms with
modes and F/T/C/I/N/c, md with C/I/T, ma with modes and D/N/J/T/C/v/c/t,
flush_all now and delayed, waits that let short TTLs expire, restarts) and
sends them over a real socket to build/memkeep; a reference model
(model_check.py) predicts every reply to the byte and the checker fails on
the first reply no possible state of the model predicts. The memory limit is
1 MB and values are up to 40 KB, so items keep moving between RAM and disk
(overflow, durable) or are evicted (memory mode: the only mode where the model
lets a key vanish). Durable mode is restarted with SIGTERM and with kill -9:
every acknowledged write must be there afterwards.

Two known bugs of the same class are not fixed yet; the model lets exactly
these bits be lost when an item leaves RAM, and a strict xfail below shows
each: the durable store keeps no item state bits (stale, recache token,
fetched), and the overflow tier keeps no fetched bit (mg h). Not modelled:
mg l (last access), the q/k/O/b/E flags, md x, binary protocol.

Running it longer or on another seed:

    MEMKEEP_MODEL_STEPS=20000 MEMKEEP_MODEL_SEED=7 /usr/bin/python3 -m pytest -q \\
        -p no:cacheprovider tests/integration/test_model.py -k random

MEMKEEP_MODEL_SEED picks the first seed; MEMKEEP_MODEL_SEEDS=N runs N seeds
from there (default 1); MEMKEEP_MODEL_STEPS is the number of steps per seed
(default 1200 per mode, 8 to 12 s each here). A failure names its seed and
step and prints the last requests and replies; the whole trace is written to
the test's tmp dir (model-trace-<mode>-<seed>.txt). Replaying the seed
reproduces it. A bug found this way is kept below as a plain regression test
of the minimal sequence, with the seed that found it.
"""

import os
import signal

import pytest

from conftest import TARGET
from model_check import ModelMismatch, ModelRun

pytestmark = pytest.mark.memkeep_only

STEPS = int(os.environ.get("MEMKEEP_MODEL_STEPS", "1200"))
FIRST_SEED = int(os.environ.get("MEMKEEP_MODEL_SEED", "1"))
SEEDS = int(os.environ.get("MEMKEEP_MODEL_SEEDS", "1"))
MODES = ["memory", "overflow", "durable"]


def server_args(mode, data_dir):
    args = ["-m", "1", "-I", "64k"]
    if mode == "overflow":
        args += ["--storage", "overflow", "--data-dir", str(data_dir), "--disk-limit", "1g"]
    elif mode == "durable":
        args += ["--storage", "durable", "--data-dir", str(data_dir)]
    return args


def run_model(server_factory, tmp_path, mode, seed, steps):
    data_dir = tmp_path / f"data-{mode}-{seed}"
    trace = []
    run = ModelRun(mode, lambda: server_factory(server_args(mode, data_dir)), seed, steps, trace)
    try:
        return run.run()
    except ModelMismatch:
        (tmp_path / f"model-trace-{mode}-{seed}.txt").write_text("\n".join(trace) + "\n")
        raise


@pytest.mark.parametrize("mode", MODES)
def test_random_commands_match_the_model(server_factory, tmp_path, mode):
    for seed in range(FIRST_SEED, FIRST_SEED + SEEDS):
        stats = run_model(server_factory, tmp_path, mode, seed, STEPS)
        assert stats["requests"] >= STEPS


# ---- regressions found by the model -------------------------------------------------

def overflow_server(server_factory, tmp_path):
    return server_factory(server_args("overflow", tmp_path / "tier"))


def push_out_of_ram(c, rounds=3):
    """Writes 3.6 MB of other items: with -m 1 (about 26 such items fit) an
    item written or read before is evicted even if it was read since it last
    reached the LRU tail (second chance)."""
    value = b"f" * 40_000
    for i in range(30 * rounds):
        c.assert_reply(b"set push%d 0 0 %d\r\n%s\r\n" % (i, len(value), value), b"STORED\r\n")


def meta_reply(c, request):
    """Sends a meta request and returns its whole reply (line and data)."""
    c.send(request)
    line = c.read_line()
    if line.startswith(b"VA "):
        return line + c.read_exact(int(line.split()[1]) + 2)
    return line


def assert_meta(c, request, expected):
    got = meta_reply(c, request)
    assert got == expected, f"{request!r}: expected {expected!r}, got {got!r}"


def test_seed_3_overflow_finds_no_mismatch(server_factory, tmp_path):
    """Seed 3 found that the overflow tier dropped the win token (step 782:
    an item created by mg N, sent W, went to disk and came back; the next mg
    did not answer Z). It replays that run."""
    run_model(server_factory, tmp_path, "overflow", 3, 800)


def test_overflow_keeps_the_win_token_of_a_disk_item(server_factory, tmp_path):
    """The minimal form of seed 3: a W sent before the item went to disk is
    still sent (the next readers see Z, not a second W)."""
    c = overflow_server(server_factory, tmp_path).connect()
    assert_meta(c, b"mg tok N0 v\r\n", b"VA 0 W\r\n\r\n")
    push_out_of_ram(c)
    assert_meta(c, b"mg tok v\r\n", b"VA 0 Z\r\n\r\n")   # served from disk
    assert_meta(c, b"mg tok v\r\n", b"VA 0 Z\r\n\r\n")   # read twice: back in RAM
    push_out_of_ram(c)
    assert_meta(c, b"mg tok v\r\n", b"VA 0 Z\r\n\r\n")


def test_overflow_keeps_the_stale_bit_of_a_disk_item(server_factory, tmp_path):
    """md I marks an item stale; on disk and back it is still stale, the first
    reader after wins the recache (W) once and the token it won is kept on
    the next trip to disk."""
    c = overflow_server(server_factory, tmp_path).connect()
    c.assert_reply(b"set st 5 0 3\r\nold\r\n", b"STORED\r\n")
    assert_meta(c, b"md st I\r\n", b"HD\r\n")
    push_out_of_ram(c)
    assert_meta(c, b"mg st v f\r\n", b"VA 3 f5 X W\r\nold\r\n")
    push_out_of_ram(c)
    assert_meta(c, b"mg st v f\r\n", b"VA 3 f5 Z X\r\nold\r\n")
    assert_meta(c, b"mg st v f\r\n", b"VA 3 f5 Z X\r\nold\r\n")
    # ms I with an older CAS stores a stale value: it stays stale on disk too.
    assert_meta(c, b"ms inv 3 I C1\r\nnew\r\n", b"NF\r\n")
    c.assert_reply(b"set inv 0 0 3\r\none\r\n", b"STORED\r\n")
    assert_meta(c, b"ms inv 3 I C1\r\ntwo\r\n", b"HD\r\n")
    push_out_of_ram(c)
    assert_meta(c, b"mg inv v\r\n", b"VA 3 X W\r\ntwo\r\n")
    assert_meta(c, b"mg inv v\r\n", b"VA 3 Z X\r\ntwo\r\n")


def test_overflow_keeps_the_base64_key_of_a_disk_item(server_factory, tmp_path):
    """A key stored base64-encoded (ms b) is returned base64-encoded by k after
    a trip to disk, as before it."""
    c = overflow_server(server_factory, tmp_path).connect()
    assert_meta(c, b"ms Zm9v 2 b\r\nhi\r\n", b"HD\r\n")
    assert_meta(c, b"mg foo k v\r\n", b"VA 2 kZm9v b\r\nhi\r\n")
    push_out_of_ram(c)
    assert_meta(c, b"mg foo k v\r\n", b"VA 2 kZm9v b\r\nhi\r\n")   # served from disk
    assert_meta(c, b"mg foo k v\r\n", b"VA 2 kZm9v b\r\nhi\r\n")   # back in RAM


@pytest.mark.parametrize("expire", [b"gat -1 %s\r\n", b"touch %s -1\r\n", b"mg %s T-1\r\n"])
def test_overflow_item_expired_by_a_touch_stays_expired(server_factory, tmp_path, expire):
    """Seed 10 (overflow, step 850) found it: an item brought back from disk
    and then touched to expire (gats -1) came back from its older disk copy
    once the expired RAM item was gone, with the old exptime."""
    c = overflow_server(server_factory, tmp_path).connect()
    c.assert_reply(b"set tt 3 0 5\r\nvalue\r\n", b"STORED\r\n")
    push_out_of_ram(c)
    c.assert_reply(b"gat 0 tt\r\n", b"VALUE tt 3 5\r\nvalue\r\nEND\r\n")   # back in RAM, copy on disk
    c.send(expire % b"tt")
    c.read_line()   # VALUE.../TOUCHED/HD: the item was there
    if expire.startswith(b"gat"):
        c.read_until(b"END\r\n")
    for _ in range(3):
        c.assert_reply(b"get tt\r\n", b"END\r\n")
    push_out_of_ram(c)
    c.assert_reply(b"get tt\r\n", b"END\r\n")


def test_seed_10_overflow_finds_no_mismatch(server_factory, tmp_path):
    run_model(server_factory, tmp_path, "overflow", 10, 860)


@pytest.mark.xfail(strict=True, reason="the durable store keeps no item state bits: a stale item read back "
                                       "from the store (after a RAM eviction or a restart) is not stale")
def test_durable_keeps_the_stale_bit(server_factory, tmp_path):
    """Durable seed 1 (step 585) found the win token lost after kill -9; the
    same holds for the stale bit of md I, which was acknowledged (HD)."""
    c = server_factory(server_args("durable", tmp_path / "store")).connect()
    c.assert_reply(b"set st 5 0 3\r\nold\r\n", b"STORED\r\n")
    assert_meta(c, b"md st I\r\n", b"HD\r\n")
    push_out_of_ram(c)
    assert_meta(c, b"mg st v f\r\n", b"VA 3 f5 X W\r\nold\r\n")


@pytest.mark.xfail(strict=True, reason="the overflow tier keeps no fetched bit: an item read in RAM, then "
                                       "evicted, answers h0 from disk (and a read from disk sets nothing)")
def test_overflow_keeps_the_fetched_bit(server_factory, tmp_path):
    c = overflow_server(server_factory, tmp_path).connect()
    c.assert_reply(b"set fe 0 0 2\r\nhi\r\n", b"STORED\r\n")
    assert_meta(c, b"mg fe h v\r\n", b"VA 2 h0\r\nhi\r\n")
    assert_meta(c, b"mg fe h v\r\n", b"VA 2 h1\r\nhi\r\n")
    push_out_of_ram(c)
    assert_meta(c, b"mg fe h v\r\n", b"VA 2 h1\r\nhi\r\n")
