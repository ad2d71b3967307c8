#!/usr/bin/python3
"""Differential testing of the text and binary protocols: memkeep against memcached.

A seeded generator produces a random sequence of text-protocol commands (every
storage, retrieval, delete, arithmetic, touch and admin command, the meta
commands mg/ms/md/ma with their invalidation, win-token, recache, vivify and
CAS flags, `stats detail on|off|dump` over keys with prefixes, plus malformed
input: bad data chunks, wrong lengths, over-long keys, control characters in
keys, unknown and upper-case commands, wrong token counts, numbers at and past
their limits). Each command is sent to both servers, on one of a few
connections per server, and the replies are compared one request at a time.

Framing: after every request the runner sends the meta no-op `mn\\r\\n` and reads
until the `MN\\r\\n` it answers, so the reader never needs to know how many
replies a (possibly malformed) request produces. VALUE blocks are read by
their length, so data that happens to contain "MN\\r\\n" cannot end a reply.
The generator keeps the barrier from being swallowed: a data block is always
followed by at least the number of bytes its header announced, every value
line is shorter than memcached's 2048-byte "no newline" limit, and values
contain no lower-case letters, so when a server rejects a command line and
parses the data block as commands, each of its lines is a harmless `ERROR`.

What may legitimately differ is normalized before comparing:
- CAS unique numbers: each server's (key, cas) pairs are numbered in order of
  first appearance, so replies compare "same CAS as before / a new one" instead
  of raw numbers. `cas` commands use a CAS the client got from that same
  server earlier (each server gets its own real number), or a stale or made-up
  one.
- in meta replies, `c<cas>` the same way, and `t<seconds>`: compared within
  2 seconds (compare_ttls), since the two servers are not asked at the same
  instant. The meta generator leaves out what memkeep does differently on
  purpose or by a documented difference (docs/PROTOCOL.md): the E flag,
  md x, ms N with append, and T/N/R/t in an order where memcached's
  token-order evaluation differs (ttl_flags_in_memkeeps_order).
- the version string in `VERSION <v>`.
- trailing spaces of a number left by incr/decr. memcached rewrites a shrinking
  number in place, padded with spaces ("10" decr 1 reads back as "9 "), but only
  when no other thread holds a reference to the item at that instant; else it
  stores a new unpadded item. memcached against itself disagrees here, so for
  keys changed by incr/decr since their last set, a value made of digits and
  spaces is compared without the spaces, and the generator sends no
  append/prepend to such keys (that would make the padding visible).

Two more memcached 1.6.18 nondeterminisms are avoided rather than normalized.
incr/decr parse the stored value with strtoull() although it is not
NUL-terminated, so the parse can run into whatever bytes follow the item in
memory: (1) for a number >= 2^63 memcached looks for a minus sign with
strchr(), past the end of the value; (2) a value made only of whitespace
("\r\n\r\n") is skipped as leading whitespace and the digits of the next bytes
in memory are parsed. memcached then answers a number or "CLIENT_ERROR cannot
increment or decrement non-numeric value" depending on stale memory. The
generator sends no incr/decr to a key whose value may be like that
(wrap-around at 2^64 is still covered, with huge deltas on small values).
Stats are not sent in the random stream; `compare_counters` compares the
deterministic counters after a run.

Nothing depends on wall-clock expiry: exptimes are 0, negative, relative and
at least a day long, or absolute and far in the past or future.

The binary protocol has a mode of its own (BinaryGenerator, run_binary,
`--binary` on the command line), described where it starts below.

Run as a script for long runs, e.g.
    /usr/bin/python3 tests/integration/differential.py --seed 7 --count 100000 \\
        --target-port 11311 --reference-port 11211
    /usr/bin/python3 tests/integration/differential.py --reference-vs-itself --seed 1 --count 20000
    /usr/bin/python3 tests/integration/differential.py --target-binary build/memkeep --seed 1 --count 20000
    /usr/bin/python3 tests/integration/differential.py --target-binary build/memkeep --binary --seed 1 --count 20000
Note: a run starts with `flush_all` on both servers.
"""

import argparse
import collections
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEMCACHED_BIN = Path(os.environ.get("MEMCACHED_BIN", "/usr/bin/memcached"))
MEMKEEP_BIN = Path(os.environ.get("MEMKEEP_BIN", ROOT / "build" / "memkeep"))

BARRIER = b"mn\r\n"
BARRIER_REPLY = b"MN\r\n"

# ---------------------------------------------------------------------------
# Profiles: server flags and the value sizes the generator may use with them.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    name: str
    target_args: tuple
    reference_args: tuple
    # Largest value length (after appends) that is surely storable with any key:
    # the generator never builds an item between this and `too_large_min`,
    # where the exact limit depends on each server's per-item overhead.
    safe_value_max: int
    # Value lengths at or above this are surely too large for the item size limit.
    too_large_min: int
    # How often a set/append carries a surely-too-large value (0 = never).
    too_large_rate: float


PROFILES = {
    "default": Profile(
        name="default",
        target_args=("-m", "64", "-t", "2"),
        reference_args=("-m", "64", "-t", "2"),
        safe_value_max=500_000,
        too_large_min=1024 * 1024 + 1,
        too_large_rate=0.002,
    ),
    # A 2 KiB item limit makes "too large" and "append past the limit" common.
    # memcached refuses -I below its slab_chunk_max (512k) unless that is
    # lowered too, so the reference gets the extra -o; memkeep needs only -I.
    "small-items": Profile(
        name="small-items",
        target_args=("-m", "64", "-t", "2", "-I", "2k"),
        reference_args=("-m", "64", "-t", "2", "-I", "2k", "-o", "slab_chunk_max=2048"),
        safe_value_max=1400,  # memcached stores 1739 bytes with a 250-byte key
        too_large_min=2049,
        too_large_rate=0.03,
    ),
}

# ---------------------------------------------------------------------------
# Vocabulary of the generator.
# ---------------------------------------------------------------------------

NORMAL_KEYS = [b"k%02d" % i for i in range(30)]
SPECIAL_KEYS = [
    b"K" * 250,  # longest valid key
    b"Q" * 249 + b"z",
    b"utf8\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
    b"\xff\xfe\x80",
]
# memcached's tokenizer splits on ' ' only: it accepts any other byte in a key,
# although protocol.txt says keys have no control characters.
CONTROL_CHAR_KEYS = [
    b"a\x01b",
    b"tab\tkey",
    b"cr\rkey",  # a lone \r inside the line is part of the key
    b"del\x7fkey",
    b"vt\x0bff\x0ckey",
]
# Keys with a ':' prefix, counted by `stats detail` (the others are not).
PREFIXED_KEYS = [b"p:1", b"p:2", b"user:7", b"a:b:c", b":lead", b"user:"]
# Keys a server must reject or that change how the line is tokenized.
BAD_KEYS = [
    b"B" * 251,  # one byte over KEY_MAX_LENGTH
    b"C" * 300,
    b"nul\x00key",  # memcached stops the line at NUL: "set nul" has too few tokens
]

# Lower-case is avoided in values: if a server rejects a command line and then
# parses the data block as commands, an upper-case line is always `ERROR`.
VALUE_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~ "
NUMERIC_VALUES = [
    b"0", b"1", b"2", b"9", b"10", b"42", b"99", b"100", b"007", b"255",
    b"4294967295", b"4294967296",
    b"18446744073709551614", b"18446744073709551615",  # 2^64-2, 2^64-1
    b"18446744073709551616",  # 2^64: not a number for incr
    b"99999999999999999999",
    b" 5", b"5 ", b"+5", b"-5", b"1.5", b"0X10", b"12AB", b"1 2", b"\t7",
]
DELTAS = [
    b"1", b"1", b"1", b"2", b"7", b"10", b"100", b"0", b"255", b"1000000",
    b"4294967296", b"9223372036854775807", b"9223372036854775808",
    b"18446744073709551615",  # 2^64-1: incr wraps, decr floors at 0
    b"18446744073709551616",  # 2^64: invalid delta
    b"-1", b"abc", b"1.5", b"+1", b" ", b"0x1",
]
FLAGS = (
    [b"0"] * 12
    + [b"1", b"2", b"42", b"65535", b"65536", b"2147483648", b"4294967295"]
    + [b"18446744073709551616", b"-1", b"abc", b"+7", b"0x10", b"1.0"]
)
# memcached 1.6.18 parses flags as 64-bit and truncates: 2^32 is stored as 0
QUIRK_FLAGS = [b"4294967296", b"18446744073709551615"]
GOOD_EXPTIMES = (
    [b"0"] * 10
    + [b"-1", b"-100", b"-2592000"]  # negative: expires immediately
    + [b"86400", b"100000", b"1000000", b"2592000"]  # relative, >= one day
    + [b"2592001", b"1000000000"]  # absolute, long past: expired at once
    + [b"2000000000", b"2147483647"]  # absolute, far future
)
# memcached 1.6.18 truncates exptime to 32 bits (99999999999 becomes a date in
# 2008, 4294967295 becomes -1): such items are expired at once.
QUIRK_EXPTIMES = [b"99999999999", b"-99999999999", b"4294967295"]
BAD_EXPTIMES = [b"abc", b"1.5", b"1e3", b"99999999999999999999"]
UNKNOWN_COMMANDS = [
    b"foo", b"sett", b"getss", b"gett", b"deletee", b"increment", b"flush",
    b"ver", b"stat", b"cass", b"touchx", b"gat2", b"x", b"123",
]
UPPER_CASE = [b"SET", b"Get", b"GET", b"GETS", b"DELETE", b"Incr", b"DECR", b"TOUCH",
              b"VERSION", b"FLUSH_ALL", b"CAS", b"APPEND", b"Add", b"GAT", b"MN"]
STORAGE_COMMANDS = [b"set", b"add", b"replace", b"append", b"prepend"]
# Meta TTLs: none, immediate expiry, and lengths the tolerance of the TTL
# comparison covers (see compare_ttls).
# Negative ones are left out: memcached 1.6.18 prints the remaining TTL of
# an item given N-1 or T-1 as an unsigned wrap-around (t4294967234).
META_TTLS = [b"0", b"86400", b"500000", b"2000000", b"2592000"]
META_BAD_TOKENS = [b"abc", b"1.5", b""]


# Parts of the generated traffic that can be switched off (--exclude), to look
# past a known difference to the next one.
CATEGORIES = {
    "control-keys": "keys with control characters (memcached accepts them)",
    "quirks": "flags and exptimes past 32 bits, which memcached 1.6.18 truncates",
}


@dataclass(frozen=True)
class CasRef:
    """A CAS value the client saw earlier, by ordinal; each server renders its own number."""

    ordinal: int


@dataclass
class Command:
    kind: str  # what the generator meant; used to learn from the reply
    parts: list  # bytes and CasRef, joined at render time
    conn: int = 0
    keys: list = field(default_factory=list)
    data: bytes = b""
    noreply: bool = False
    mode: bytes = b""  # ms: the M mode token

    def render(self, cas_value_of):
        out = []
        for part in self.parts:
            out.append(b"%d" % cas_value_of(part.ordinal) if isinstance(part, CasRef) else part)
        return b"".join(out)


# ---------------------------------------------------------------------------
# The generator.
# ---------------------------------------------------------------------------


class Generator:
    """Seeded random commands; learns CAS ordinals and value sizes from replies."""

    def __init__(self, seed, profile, connections=3, exclude=()):
        unknown = set(exclude) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; known: {sorted(CATEGORIES)}")
        self.rng = random.Random(seed)
        self.profile = profile
        self.connections = connections
        self.special_keys = SPECIAL_KEYS + ([] if "control-keys" in exclude else CONTROL_CHAR_KEYS)
        self.flag_values = FLAGS + ([] if "quirks" in exclude else QUIRK_FLAGS)
        self.exptime_values = GOOD_EXPTIMES * 19 + BAD_EXPTIMES * 2 + ([] if "quirks" in exclude else QUIRK_EXPTIMES * 4)
        self.cas_seen = collections.defaultdict(list)  # key -> CAS ordinals, oldest first
        self.length_bound = collections.defaultdict(int)  # key -> upper bound of its value length
        self.maybe_padded = set()  # keys changed by incr/decr since their last set (see module docstring)
        self.arith_unsafe = set()  # keys whose value memcached may parse past its end (see module docstring)
        kinds = {
            "set": 14, "add": 4, "replace": 4, "append": 5, "prepend": 4, "cas": 9,
            "get": 12, "gets": 9, "gat": 3, "gats": 3, "delete": 6, "incr": 7,
            "decr": 5, "touch": 4, "flush_all": 0.4, "verbosity": 0.5, "version": 0.5,
            "malformed": 9, "mg": 8, "ms": 6, "md": 4, "ma": 3, "stats_detail": 0.6,
        }
        self.kinds = list(kinds)
        self.kind_weights = list(kinds.values())

    # -- small helpers --------------------------------------------------------

    def chance(self, p):
        return self.rng.random() < p

    def key(self):
        r = self.rng.random()
        if r < 0.80:
            return self.rng.choice(NORMAL_KEYS)
        if r < 0.86:
            return self.rng.choice(PREFIXED_KEYS)
        if r < 0.97:
            return self.rng.choice(self.special_keys)
        return self.rng.choice(BAD_KEYS)

    def eol(self):
        # memcached also accepts a bare \n at the end of a command line.
        return b"\n" if self.chance(0.04) else b"\r\n"

    def sep(self):
        return b"  " if self.chance(0.02) else b" "

    def line(self, tokens, noreply=False):
        """Join tokens into a command line with the usual small irregularities."""
        out = b""
        if self.chance(0.01):
            out += b"  "  # leading spaces are skipped by memcached's tokenizer
        out += self.sep().join(tokens)
        if noreply:
            out += b" noreply"
        if self.chance(0.01):
            out += b" "
        return out + self.eol()

    def flags(self):
        return self.rng.choice(self.flag_values) if self.chance(0.15) else b"0"

    def exptime(self):
        return self.rng.choice(self.exptime_values)

    def noreply(self):
        return self.chance(0.12)

    def text(self, n):
        return bytes(self.rng.choice(VALUE_ALPHABET) for _ in range(n))

    def long_text(self, n):
        """n bytes of value with a CRLF at least every 1000 bytes (see the module docstring)."""
        chunks, left = [], n
        while left > 0:
            size = min(left, 1000)
            chunks.append(self.text(size))
            left -= size
        out = b"\r\n".join(chunks)
        return out[:n] if len(out) >= n else out + self.text(n - len(out))

    def value(self, max_len=None):
        max_len = self.profile.safe_value_max if max_len is None else max_len
        r = self.rng.random()
        if r < 0.30:
            v = self.rng.choice(NUMERIC_VALUES)
        elif r < 0.36:
            v = b""
        elif r < 0.72:
            v = self.text(self.rng.randint(1, 20))
        elif r < 0.82:
            # bytes a parser might trip on: CR, LF, CRLF, NUL, high bytes
            pieces = [self.text(self.rng.randint(0, 6)) for _ in range(3)]
            v = self.rng.choice([b"\r\n", b"\n", b"\r", b"\x00", b"\xff\x80", b"\r\n\r\n"]).join(pieces)
        elif r < 0.97:
            v = self.long_text(self.rng.randint(50, 1000))
        else:
            v = self.long_text(self.rng.randint(1000, 3000))
        return v[:max_len]

    def too_large_value(self):
        n = self.profile.too_large_min + self.rng.randint(0, 1000)
        return self.long_text(n)

    def some_keys(self, max_keys=6):
        n = self.rng.choice([1, 1, 1, 2, 2, 3, 4, max_keys])
        keys = [self.key() for _ in range(n)]
        if self.chance(0.1):
            keys.append(keys[0])  # the same key twice in one request
        return keys

    # -- commands -------------------------------------------------------------

    def next_command(self):
        kind = self.rng.choices(self.kinds, self.kind_weights)[0]
        command = getattr(self, "make_" + kind)()
        command.conn = 0 if self.chance(0.6) else self.rng.randrange(self.connections)
        return command

    def storage_value(self, command, key):
        """A value for a storage command that keeps every item clearly under or over the size limit."""
        if self.chance(self.profile.too_large_rate):
            return self.too_large_value()
        room = self.profile.safe_value_max
        if command in (b"append", b"prepend"):
            room -= self.length_bound[key]
            if room <= 0:
                return b""
        return self.value(max_len=room)

    def _storage(self, command):
        key = self.key()
        if command in (b"append", b"prepend") and key in self.maybe_padded:
            command = b"set"
        data = self.storage_value(command, key)
        noreply = self.noreply()
        tokens = [command, key, self.flags(), self.exptime(), b"%d" % len(data)]
        return Command(
            kind=command.decode(),
            parts=[self.line(tokens, noreply), data, b"\r\n"],
            keys=[key], data=data, noreply=noreply,
        )

    def make_set(self):
        return self._storage(b"set")

    def make_add(self):
        return self._storage(b"add")

    def make_replace(self):
        return self._storage(b"replace")

    def make_append(self):
        return self._storage(b"append")

    def make_prepend(self):
        return self._storage(b"prepend")

    def make_cas(self):
        key = self.rng.choice(NORMAL_KEYS) if self.chance(0.8) else self.key()
        data = self.storage_value(b"set", key)
        noreply = self.noreply()
        seen = self.cas_seen.get(key)
        r = self.rng.random()
        if seen and r < 0.65:
            unique = CasRef(seen[-1])  # the latest CAS this client saw for the key
        elif seen and len(seen) > 1 and r < 0.80:
            unique = CasRef(self.rng.choice(seen[:-1]))  # a stale one
        else:
            # made up: 0, a number no server has handed out yet, or not a number
            unique = self.rng.choice([b"0", b"999999999999", b"1", b"18446744073709551615",
                                      b"18446744073709551616", b"-1", b"abc"])
        head = self.line([b"cas", key, self.flags(), self.exptime(), b"%d" % len(data)], False)
        head = head[: -len(b"\r\n")] if head.endswith(b"\r\n") else head[:-1]
        parts = [head, b" ", unique, b" noreply" if noreply else b"", b"\r\n", data, b"\r\n"]
        return Command(kind="cas", parts=parts, keys=[key], data=data, noreply=noreply)

    def _retrieval(self, command, with_exptime):
        keys = self.some_keys()
        tokens = [command] + ([self.exptime()] if with_exptime else []) + keys
        if with_exptime and self.chance(0.03):
            tokens = tokens[:2]  # gat with no key
        return Command(kind=command.decode(), parts=[self.line(tokens)], keys=keys)

    def make_get(self):
        return self._retrieval(b"get", False)

    def make_gets(self):
        return self._retrieval(b"gets", False)

    def make_gat(self):
        return self._retrieval(b"gat", True)

    def make_gats(self):
        return self._retrieval(b"gats", True)

    def make_delete(self):
        key = self.key()
        tokens = [b"delete", key]
        if self.chance(0.08):
            tokens.append(self.rng.choice([b"0", b"5", b"-1"]))  # the old "delete <key> <time>" form
        noreply = self.noreply()
        # memcached deletes only for no time or a time of 0; learn nothing from the others
        kind = "delete" if tokens[-1] in (key, b"0") else "malformed"
        return Command(kind=kind, parts=[self.line(tokens, noreply)], keys=[key], noreply=noreply)

    def arith_key(self, key):
        """key, or a normal key instead if key is in arith_unsafe (None if none is left)."""
        if key not in self.arith_unsafe:
            return key
        safe = [k for k in NORMAL_KEYS if k not in self.arith_unsafe]
        return self.rng.choice(safe) if safe else None

    def _arith(self, command):
        key = self.arith_key(self.rng.choice(NORMAL_KEYS) if self.chance(0.9) else self.key())
        if key is None:
            return self.make_get()
        delta = self.rng.choice(DELTAS) if self.chance(0.3) else self.rng.choice(DELTAS[:7])
        noreply = self.noreply()
        return Command(kind=command.decode(), parts=[self.line([command, key, delta], noreply)],
                       keys=[key], noreply=noreply)

    def make_incr(self):
        return self._arith(b"incr")

    def make_decr(self):
        return self._arith(b"decr")

    def make_touch(self):
        key = self.key()
        noreply = self.noreply()
        return Command(kind="touch", parts=[self.line([b"touch", key, self.exptime()], noreply)],
                       keys=[key], noreply=noreply)

    def make_flush_all(self):
        # No positive delay: a delayed flush races with the clock.
        tokens = [b"flush_all"] + self.rng.choice([[], [], [b"0"], [b"-1"], [b"abc"], [b"0", b"0"]])
        return Command(kind="flush_all", parts=[self.line(tokens, self.chance(0.3))])

    def make_verbosity(self):
        tokens = self.rng.choice([
            [b"verbosity", b"0"], [b"verbosity", b"1"], [b"verbosity", b"2"], [b"verbosity", b"0", b"noreply"],
            [b"verbosity"], [b"verbosity", b"abc"], [b"verbosity", b"-1"], [b"verbosity", b"1", b"2", b"3"],
        ])
        return Command(kind="verbosity", parts=[self.line(tokens)])

    def make_version(self):
        tokens = [b"version"] + ([b"extra"] if self.chance(0.2) else [])
        return Command(kind="version", parts=[self.line(tokens)])

    # -- meta commands and stats detail --------------------------------------------
    # Flags that memcached 1.6.18 does not have and memkeep supports on purpose
    # (E, md x, ms N with append; docs/PROTOCOL.md) and the clock-dependent
    # `l` are not sent. Invalidation (md I, ms I), the win/stale tokens
    # (W, Z, X), recache (R) and vivify (N) are.

    def meta_key(self):
        return self.rng.choice(NORMAL_KEYS[:12]) if self.chance(0.85) else self.key()

    def meta_ttl(self):
        return self.rng.choice(META_TTLS) if self.chance(0.95) else self.rng.choice(META_BAD_TOKENS)

    def cas_token(self, key):
        """C<cas>: the latest CAS this client saw for key, an older one, or made up."""
        seen = self.cas_seen.get(key)
        r = self.rng.random()
        if seen and r < 0.55:
            return [b"C", CasRef(seen[-1])]
        if seen and r < 0.75:
            return [b"C", CasRef(self.rng.choice(seen))]
        # No made-up value between 1 and 2^64-1: memkeep's CAS values are
        # clock-based and much larger than memcached's counter, so such a
        # value would compare differently (ms I stores stale below the CAS).
        return [b"C" + self.rng.choice([b"0", b"1", b"18446744073709551615", b"abc"])]

    def meta_flags(self, choices, key):
        """A random subset of `choices` (callables or bytes): a list of flag
        tokens, each a list of parts (a C token holds a CasRef)."""
        tokens = []
        for choice in self.rng.sample(choices, self.rng.randint(0, min(5, len(choices)))):
            token = choice() if callable(choice) else choice
            tokens.append(token if isinstance(token, list) else [token])
        return tokens

    @staticmethod
    def ttl_flags_in_memkeeps_order(flags):
        """Drop N when T is there too and move R, then t, after them: memcached
        applies T, N and R in token order and t reports the TTL at its own
        place in the line; memkeep applies N, then T (T wins), then R against
        the new TTL (a known difference, docs/PROTOCOL.md)."""
        letters = [token[0][:1] for token in flags]
        if b"T" in letters and b"N" in letters:
            flags = [t for t, letter in zip(flags, letters) if letter != b"N"]
        for moved in (b"R", b"t"):
            flags = ([t for t in flags if t[0][:1] != moved] + [t for t in flags if t[0][:1] == moved])
        return flags

    def meta_command(self, kind, head, flags, data=None, noreply=False):
        parts = [head] + [part for token in flags for part in [b" "] + token] + [self.eol()]
        if data is not None:
            parts += [data, b"\r\n"]
        key = head.split(b" ")[1]
        return Command(kind=kind, parts=parts, keys=[key], data=data or b"", noreply=noreply)

    def make_mg(self):
        key = self.meta_key()
        flags = self.meta_flags([
            b"v", b"c", b"f", b"s", b"k", b"t", b"h", b"q", b"u", b"O42",
            lambda: b"T" + self.meta_ttl(), lambda: b"N" + self.meta_ttl(), lambda: b"R" + self.meta_ttl(),
        ], key)
        return self.meta_command("mg", b"mg " + key, self.ttl_flags_in_memkeeps_order(flags))

    def make_ms(self):
        key = self.meta_key()
        mode = self.rng.choice([b"", b"", b"", b"S", b"E", b"A", b"P", b"R", b"s", b"X"])
        if mode in (b"A", b"P") and key in self.maybe_padded:
            mode = b"S"
        data = self.storage_value(b"append" if mode in (b"A", b"P") else b"set", key)
        if len(data) > 1000:
            data = data[:1000]
        flags = self.meta_flags([
            b"c", b"q", b"k", b"I", b"O7", lambda: b"T" + self.meta_ttl(),
            lambda: b"F" + self.rng.choice([b"0", b"1", b"42", b"4294967295", b"abc"]),
            lambda: self.cas_token(key), lambda: self.cas_token(key),
        ], key)
        if mode:
            flags.append([b"M" + mode])
        length = b"%d" % len(data) if self.chance(0.97) else self.rng.choice([b"abc", b"-1"])
        kind = "ms" if length.isdigit() else "malformed"
        command = self.meta_command(kind, b"ms " + key + b" " + length, flags, data)
        command.mode = mode
        return command

    def make_md(self):
        key = self.meta_key()
        flags = self.meta_flags([b"q", b"k", b"I", b"O9", lambda: b"T" + self.meta_ttl(),
                                 lambda: self.cas_token(key)], key)
        return self.meta_command("md", b"md " + key, flags)

    def make_ma(self):
        key = self.arith_key(self.meta_key())
        if key is None:
            return self.make_mg()
        flags = self.meta_flags([
            b"q", b"k", b"t", b"c", b"v", b"O5",
            lambda: b"N" + self.meta_ttl(), lambda: b"T" + self.meta_ttl(),
            lambda: b"J" + self.rng.choice([b"0", b"13", b"18446744073709551615", b"abc"]),
            lambda: b"D" + self.rng.choice([b"1", b"7", b"18446744073709551615", b"abc"]),
            lambda: b"M" + self.rng.choice([b"I", b"+", b"D", b"-", b"i", b"x"]),
            lambda: self.cas_token(key),
        ], key)
        return self.meta_command("ma", b"ma " + key, self.ttl_flags_in_memkeeps_order(flags))

    def make_stats_detail(self):
        word = self.rng.choice([b"on", b"on", b"dump", b"dump", b"dump", b"off", b"", b"bogus"])
        tokens = [b"stats", b"detail"] + ([word] if word else [])
        return Command(kind="stats_detail", parts=[self.line(tokens)])

    # -- malformed input ----------------------------------------------------------

    def make_malformed(self):
        maker = self.rng.choice([
            self.bad_data_chunk, self.bad_data_chunk, self.bad_data_chunk,
            self.bad_length, self.bad_length,
            self.wrong_token_count, self.wrong_token_count,
            self.unknown_command, self.upper_case_command,
            self.odd_whitespace, self.misspelled_noreply, self.long_key,
            self.connection_closers,
        ])
        return maker()

    def bad_data_chunk(self):
        """A data block that does not match its announced length.

        The bytes after the command line are always at least length+2 long and
        end in CRLF: the server reads exactly length+2 bytes as the block, finds
        no CRLF at its end, and parses what is left as command lines.
        """
        command = self.rng.choice(STORAGE_COMMANDS)
        key = self.rng.choice(NORMAL_KEYS)
        declared = self.rng.randint(0, 40)
        shape = self.rng.choice(["longer", "shorter", "bare-lf", "no-terminator"])
        if shape == "longer":
            body = self.text(declared + self.rng.randint(1, 10)) + b"\r\n"
        elif shape == "shorter" and declared > 0:
            actual = self.rng.randint(0, declared - 1)
            # filler long enough that the CRLF at the end lands past the block
            filler = self.text(declared - actual + 1 + self.rng.randint(0, 5))
            body = self.text(actual) + b"\r\n" + filler + b"\r\n"
        elif shape == "bare-lf":
            body = self.text(declared) + b"\n" + self.text(self.rng.randint(1, 5)) + b"\r\n"
        else:
            body = self.text(declared) + self.text(self.rng.randint(2, 6)) + b"\r\n"
        if len(body) < declared + 2 or body[declared:declared + 2] == b"\r\n":
            body = self.text(declared + 3) + b"\r\n"
        tokens = [command, key, b"0", b"0", b"%d" % declared]
        return Command(kind="malformed", parts=[self.line(tokens), body], keys=[key])

    def bad_length(self):
        key = self.rng.choice(NORMAL_KEYS)
        length = self.rng.choice([b"-1", b"abc", b"1.5", b"", b"2147483647", b"2147483646",
                                  b"18446744073709551616", b"+3", b"0x3"])
        data = b"X" + self.text(2)  # "+3" is accepted and stores this: keep it non-blank and non-numeric
        tokens = [self.rng.choice(STORAGE_COMMANDS), key, b"0", b"0"] + ([length] if length else [])
        return Command(kind="malformed", parts=[self.line(tokens), data, b"\r\n"], keys=[key])

    def wrong_token_count(self):
        key = self.rng.choice(NORMAL_KEYS)
        choice = self.rng.randrange(9)
        data = self.text(2)
        if choice == 0:
            parts = [self.line([self.rng.choice(STORAGE_COMMANDS), key, b"0", b"0"]), data, b"\r\n"]
        elif choice == 1:
            parts = [self.line([b"set", key, b"0", b"0", b"2", b"noreply", b"extra"]), data, b"\r\n"]
        elif choice == 2:
            parts = [self.line([b"cas", key, b"0", b"0", b"2"]), data, b"\r\n"]
        elif choice == 3:
            parts = [self.line([b"cas", key, b"0", b"0", b"2", b"1", b"noreply", b"x"]), data, b"\r\n"]
        elif choice == 4:
            parts = [self.line(self.rng.choice([[b"get"], [b"gets"], [b"gat"], [b"gats"], [b"gat", b"0"]]))]
        elif choice == 5:
            key = self.arith_key(key) or b"missing"
            tokens = self.rng.choice([[b"incr", key], [b"decr"], [b"incr", key, b"1", b"2", b"3"],
                                      [b"incr", key, b"1", b"x"]])
            # "incr <key> 1 x" still runs: memcached ignores the extra token
            return Command(kind="incr", parts=[self.line(tokens)], keys=[key])
        elif choice == 6:
            parts = [self.line(self.rng.choice([[b"delete"], [b"delete", key, b"0", b"0"],
                                                [b"delete", key, b"0", b"noreply", b"x"]]))]
        elif choice == 7:
            parts = [self.line(self.rng.choice([[b"touch", key], [b"touch"], [b"touch", key, b"0", b"x"],
                                                [b"touch", key, b"0", b"1", b"2"]]))]
        else:
            parts = [self.line([b"get"] + [self.rng.choice(NORMAL_KEYS) for _ in range(30)])]
        return Command(kind="malformed", parts=parts, keys=[key])

    def unknown_command(self):
        tokens = [self.rng.choice(UNKNOWN_COMMANDS)] + [self.rng.choice(NORMAL_KEYS)] * self.rng.randint(0, 3)
        return Command(kind="malformed", parts=[self.line(tokens)])

    def upper_case_command(self):
        word = self.rng.choice(UPPER_CASE)
        key = self.rng.choice(NORMAL_KEYS)
        if word.lower() in (b"set", b"append", b"add"):
            parts = [self.line([word, key, b"0", b"0", b"1"]), b"X\r\n"]
        else:
            parts = [self.line([word, key])]
        return Command(kind="malformed", parts=parts)

    def odd_whitespace(self):
        key = self.rng.choice(NORMAL_KEYS)
        parts = [self.rng.choice([
            b"\r\n", b"\n", b"   \r\n", b"get\t" + key + b"\r\n", b"get " + key + b"\t\r\n",
            b"get  " + key + b"   " + key + b"\r\n", b"  get " + key + b"\r\n", b"\x00\r\n",
            b"get " + key + b"\r\r\n", b"delete " + key + b" \r\n",
        ])]
        return Command(kind="malformed", parts=parts, keys=[key])

    def misspelled_noreply(self):
        """A last token that is not quite "noreply": memcached ignores it and replies."""
        key = self.rng.choice(NORMAL_KEYS)
        word = self.rng.choice([b"norepl", b"NOREPLY", b"noreply2", b"no_reply"])
        command = self.rng.choice([b"set", b"delete", b"incr", b"touch"])
        if command == b"set":
            return Command(kind="set", parts=[self.line([b"set", key, b"0", b"0", b"1", word]), b"7\r\n"],
                           keys=[key], data=b"7")
        if command == b"incr":
            key = self.arith_key(key) or b"missing"
            return Command(kind="incr", parts=[self.line([b"incr", key, b"1", word])], keys=[key])
        if command == b"touch":
            return Command(kind="malformed", parts=[self.line([b"touch", key, b"0", word])], keys=[key])
        tokens = [b"delete", key] + ([b"0"] if self.chance(0.5) else []) + [word]
        return Command(kind="malformed", parts=[self.line(tokens)], keys=[key])

    def long_key(self):
        key = self.rng.choice(BAD_KEYS[:2]) if self.chance(0.7) else b"K" * 250
        command = self.rng.choice([b"set", b"get", b"gets", b"delete", b"incr", b"touch", b"multiget"])
        if command == b"set":
            parts = [self.line([b"set", key, b"0", b"0", b"1"]), b"1\r\n"]
        elif command == b"multiget":
            # memcached drops the VALUEs already produced when a later key is too long
            parts = [self.line([b"get", self.rng.choice(NORMAL_KEYS), key, self.rng.choice(NORMAL_KEYS)])]
        elif command in (b"incr",):
            parts = [self.line([command, key, b"1"])]
        elif command == b"touch":
            parts = [self.line([command, key, b"0"])]
        else:
            parts = [self.line([command, key])]
        return Command(kind="malformed", parts=parts, keys=[key])

    def connection_closers(self):
        parts = [self.rng.choice([b"quit\r\n", b"quit extra\r\n", b"GET / HTTP/1.1\r\n",
                                  b"get k01 HTTP/1.1\r\n"])]
        return Command(kind="malformed", parts=parts)

    # -- learning from replies ----------------------------------------------------

    def observe(self, command, reply_items):
        """Learn CAS ordinals and value lengths from the normalized reply."""
        for kind, payload, meta in reply_items:
            if kind != "value":
                continue
            key, length, ordinal = meta
            self.length_bound[key] = length
            if ordinal is not None:
                seen = self.cas_seen[key]
                if not seen or seen[-1] != ordinal:
                    seen.append(ordinal)
                    del seen[:-6]
        if not command.keys:
            return
        key = command.keys[0]
        if command.kind in ("mg", "ms", "md", "ma"):
            return self.observe_meta(command, key, reply_items)
        lines = [payload for kind, payload, _ in reply_items if kind == "line"]
        stored = lines == [b"STORED\r\n"]
        maybe_stored = stored or command.noreply
        if command.kind in ("set", "add", "replace", "cas") and maybe_stored:
            self.learn_replaced(key, command.data, stored)
        elif command.kind in ("append", "prepend") and maybe_stored:
            self.learn_appended(key, command.data)
        elif command.kind in ("incr", "decr"):
            number = lines[0][:-2] if lines and lines[0][:-2].isdigit() else None
            if command.noreply or number is not None:
                self.maybe_padded.add(key)
            if number is not None:
                self.length_bound[key] = max(self.length_bound[key], len(number))
                if int(number) >= 2 ** 63:
                    self.arith_unsafe.add(key)
                else:
                    self.arith_unsafe.discard(key)
            elif command.noreply:
                self.arith_unsafe.add(key)  # the new value is unknown
        elif command.kind == "delete" and (command.noreply or lines in ([b"DELETED\r\n"], [b"NOT_FOUND\r\n"])):
            self.maybe_padded.discard(key)
            self.arith_unsafe.discard(key)


    def learn_replaced(self, key, data, stored):
        """A set-like store of `data` happened (stored) or may have (noreply, q)."""
        new = len(data)
        self.length_bound[key] = new if stored else max(new, self.length_bound[key])
        if stored:
            self.maybe_padded.discard(key)
            self.arith_unsafe.discard(key)
        if parse_may_overrun(data):
            self.arith_unsafe.add(key)

    def learn_appended(self, key, data):
        """An append or prepend of `data` happened or may have."""
        self.length_bound[key] += len(data)
        if parse_may_overrun(data) or any(c in b"0123456789" for c in data):
            self.arith_unsafe.add(key)  # digits may join digits already there

    def observe_meta(self, command, key, reply_items):
        """Learn from a meta command's normalized reply (conservatively where
        q or an error leaves the outcome unknown)."""
        metas = [payload for kind, payload, _ in reply_items if kind == "meta"]
        for line in metas:
            for token in line[:-2].split(b" ")[1:]:
                if token.startswith(b"c#"):
                    seen = self.cas_seen[key]
                    ordinal = int(token[2:])
                    if not seen or seen[-1] != ordinal:
                        seen.append(ordinal)
                        del seen[:-6]
        answered = [line[:2] for line in metas]
        errors = any(kind == "line" for kind, _, _ in reply_items)
        if command.kind == "ms":
            stored = answered == [b"HD"]
            maybe_stored = stored or (not metas and not errors)
            if not maybe_stored:
                return
            if command.mode in (b"A", b"P"):
                self.learn_appended(key, command.data)
            else:
                self.learn_replaced(key, command.data, stored)
        elif command.kind == "ma":
            # The value may now be a number padded in place, or one past 2^63
            # (which a later incr could misparse): keep both out of the way.
            self.maybe_padded.add(key)
            self.length_bound[key] = max(self.length_bound[key], 20)
            self.arith_unsafe.add(key)
        elif command.kind == "md" and answered == [b"HD"] and b" I" not in command.render(lambda o: 0):
            self.maybe_padded.discard(key)
            self.arith_unsafe.discard(key)


WHITESPACE = b" \t\n\v\f\r"


def parse_may_overrun(data):
    """True if memcached's incr/decr may read past the end of this value.

    That is a run of 19+ digits (may be a number >= 2^63) or a value made only
    of whitespace (see the module docstring).
    """
    if data and all(byte in WHITESPACE for byte in data):
        return True
    run = 0
    for byte in data:
        run = run + 1 if 48 <= byte <= 57 else 0
        if run >= 19:
            return True
    return False


# ---------------------------------------------------------------------------
# Talking to a server: reading replies up to the barrier, normalizing CAS.
# ---------------------------------------------------------------------------


class ReplyTimeout(Exception):
    pass


class Connection:
    """One socket; `exchange` sends a request plus the barrier and reads the replies."""

    def __init__(self, address, timeout):
        self.address = address
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def ensure_open(self):
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self):
        try:
            chunk = self.sock.recv(262144)
        except (socket.timeout, TimeoutError):
            raise ReplyTimeout() from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def exchange(self, request):
        """Returns (items, status); items are ("line", bytes, None) and ("value", ...) tuples.

        status is "ok", "closed" (the server closed the connection) or "timeout".
        """
        self.ensure_open()
        items = []
        try:
            self.sock.sendall(request + BARRIER)
        except (BrokenPipeError, ConnectionResetError):
            self.close()
            return [("line", b"<send failed: connection closed>", None)], "closed"
        try:
            while True:
                line = self._line()
                if line == BARRIER_REPLY:
                    return items, "ok"
                meta_length = parse_meta_value_line(line)
                if meta_length is not None:
                    items.append(("meta", line, None))
                    items.append(("data", self._exact(meta_length + 2), None))
                    continue
                header = parse_value_line(line)
                if header is None:
                    items.append(("meta" if is_meta_reply(line) else "line", line, None))
                    continue
                key, _flags, length, cas = header
                data = self._exact(length + 2)
                items.append(("value", line, (key, length, cas)))
                items.append(("data", data, None))
        except ConnectionError:
            self.close()
            if self.buf:
                items.append(("line", self.buf, None))
            items.append(("line", b"<connection closed>", None))
            return items, "closed"
        except ReplyTimeout:
            self.close()
            if self.buf:
                items.append(("line", self.buf, None))
            items.append(("line", b"<no MN within %gs>" % self.timeout, None))
            return items, "timeout"


def parse_value_line(line):
    """(key, flags, length, cas or None) for a well-formed `VALUE` line, else None."""
    if not line.startswith(b"VALUE "):
        return None
    tokens = line[:-2].split(b" ")
    if len(tokens) not in (4, 5) or not tokens[3].isdigit():
        return None
    cas = int(tokens[4]) if len(tokens) == 5 and tokens[4].isdigit() else None
    return tokens[1], tokens[2], int(tokens[3]), cas


META_CODES = (b"VA", b"HD", b"EX", b"NF", b"NS", b"EN")


def is_meta_reply(line):
    return line[:2] in META_CODES and line[2:3] in (b" ", b"\r")


def parse_meta_value_line(line):
    """The data length of a `VA <length> <flags>*` line, else None."""
    if not line.startswith(b"VA "):
        return None
    length = line[3:-2].split(b" ")[0]
    return int(length) if length.isdigit() else None


def compare_ttls(target_items, reference_items, tolerance=2):
    """None if the remaining TTLs (t flags) the two servers gave agree within
    `tolerance` seconds (the two requests are not sent at the same instant),
    else a description of the difference."""
    t = [n for _, _, meta in target_items if isinstance(meta, tuple) and meta[:1] == ("ttl",) for n in meta[1]]
    r = [n for _, _, meta in reference_items if isinstance(meta, tuple) and meta[:1] == ("ttl",) for n in meta[1]]
    if len(t) != len(r) or any(abs(a - b) > tolerance for a, b in zip(t, r)):
        return f"remaining TTLs differ: target {t}, reference {r}"
    return None


class CasNumbering:
    """Maps one server's (key, cas) pairs to ordinals in order of first appearance."""

    def __init__(self):
        self.ordinal_of = {}
        self.value_of = {}

    def ordinal(self, key, cas):
        pair = (key, cas)
        if pair not in self.ordinal_of:
            ordinal = len(self.ordinal_of) + 1
            self.ordinal_of[pair] = ordinal
            self.value_of[ordinal] = cas
        return self.ordinal_of[pair]

    def cas_value(self, ordinal):
        return self.value_of[ordinal]

    def normalize_meta(self, line, data, key, maybe_padded):
        """A meta reply line with c<cas> as c#<ordinal> and t<seconds> as t~
        (the seconds go into the item's meta for compare_ttls); for keys in
        maybe_padded a value of digits and spaces is measured without them.
        Returns (line, data, meta)."""
        tokens = line[:-2].split(b" ")
        for token in tokens[1:]:
            if token.startswith(b"k") and len(token) > 1:
                key = token[1:]
        unpadded = None
        if data is not None and key in maybe_padded:
            body = data[:-2]
            if body.endswith(b" ") and body.rstrip(b" ").isdigit():
                unpadded = body.rstrip(b" ")
                data = unpadded + b"\r\n"
        ttls = []
        for i, token in enumerate(tokens):
            if i == 1 and tokens[0] == b"VA" and unpadded is not None:
                tokens[i] = b"%d" % len(unpadded)
            elif i == 0:
                continue
            elif token.startswith(b"c") and token[1:].isdigit():
                tokens[i] = b"c#%d" % self.ordinal(key, int(token[1:]))
            elif token.startswith(b"t") and token[1:].isdigit():
                ttls.append(int(token[1:]))
                tokens[i] = b"t~"
            elif token.startswith(b"s") and token[1:].isdigit() and unpadded is not None:
                tokens[i] = b"s%d" % len(unpadded)
        return b" ".join(tokens) + b"\r\n", data, ("ttl", ttls)

    def normalize(self, items, maybe_padded=frozenset(), meta_key=None):
        """Replace CAS numbers by "#<ordinal>" and the version by a placeholder.

        For keys in maybe_padded, a value of digits and trailing spaces loses the spaces.
        Meta reply lines (of a command on meta_key) go through normalize_meta.
        """
        out = []
        unpad_next_data = False
        meta_data = None
        for index, (kind, payload, meta) in enumerate(items):
            if kind == "data" and meta_data is not None:
                payload, meta_data = meta_data, None
            elif kind == "data" and unpad_next_data:
                payload = payload[:-2].rstrip(b" ") + b"\r\n"
                unpad_next_data = False
            if kind == "meta":
                has_data = payload.startswith(b"VA ") and index + 1 < len(items) and items[index + 1][0] == "data"
                data = items[index + 1][1] if has_data else None
                payload, data, meta = self.normalize_meta(payload, data, meta_key, maybe_padded)
                meta_data = data
            if kind == "value":
                key, length, cas = meta
                data = items[len(out) + 1][1] if len(out) + 1 < len(items) else b""
                body = data[:-2]
                if key in maybe_padded and body.endswith(b" ") and body.rstrip(b" ").isdigit():
                    unpad_next_data = True
                    length = len(body.rstrip(b" "))
                    tokens = payload[:-2].split(b" ")
                    tokens[3] = b"%d" % length
                    payload = b" ".join(tokens) + b"\r\n"
                ordinal = None
                if cas is not None:
                    ordinal = self.ordinal(key, cas)
                    head = payload[:-2].rsplit(b" ", 1)[0]
                    payload = head + b" #%d\r\n" % ordinal
                meta = (key, length, ordinal)
            elif kind == "line" and payload.startswith(b"VERSION "):
                payload = b"VERSION <version>\r\n"
            out.append((kind, payload, meta))
        return out


def reply_bytes(items):
    return b"".join(payload for _, payload, _ in items)


class Side:
    """One server under comparison: its connections and its CAS numbering."""

    def __init__(self, name, address, connections, timeout):
        self.name = name
        self.address = address
        self.conns = [Connection(address, timeout) for _ in range(connections)]
        self.cas = CasNumbering()

    def execute(self, command, maybe_padded=frozenset()):
        request = command.render(self.cas.cas_value)
        items, status = self.conns[command.conn].exchange(request)
        meta_key = command.keys[0] if command.keys else None
        return request, items, self.cas.normalize(items, maybe_padded, meta_key), status

    def close(self):
        for conn in self.conns:
            conn.close()


# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------


@dataclass
class RunResult:
    ok: bool
    commands_run: int
    message: str = ""


def clip(data, limit=600):
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + "...(%d bytes)" % len(data)


def run(target_address, reference_address, seed, count, profile="default", connections=3,
        history=8, timeout=10.0, trace=None, reproduce_hint="", exclude=()):
    """Send the same `count` generated commands to both servers; stop at the first difference."""
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    generator = Generator(seed, profile, connections, exclude)
    target = Side("target", target_address, connections, timeout)
    reference = Side("reference", reference_address, connections, timeout)
    recent = collections.deque(maxlen=history)
    try:
        for side in (target, reference):
            items, status = side.conns[0].exchange(b"flush_all\r\n")
            if status != "ok" or reply_bytes(items) != b"OK\r\n":
                return RunResult(False, 0, f"{side.name} {side.address}: flush_all before the run "
                                           f"answered {clip(reply_bytes(items))}")
        for index in range(count):
            command = generator.next_command()
            t_request, t_raw, t_norm, t_status = target.execute(command, generator.maybe_padded)
            r_request, r_raw, r_norm, r_status = reference.execute(command, generator.maybe_padded)
            t_reply, r_reply = reply_bytes(t_norm), reply_bytes(r_norm)
            if trace:
                trace(f"#{index} [conn {command.conn}] {clip(r_request, 300)} -> {clip(r_reply, 300)}")
            ttl_difference = compare_ttls(t_norm, r_norm) if t_reply == r_reply else None
            if (t_reply != r_reply or t_status != r_status or "timeout" in (t_status, r_status)
                    or ttl_difference):
                lines = [
                    f"differential mismatch at command #{index} of {count} "
                    f"(seed {seed}, profile {profile.name}, connection {command.conn})",
                ]
                if reproduce_hint:
                    lines.append(f"reproduce: {reproduce_hint}")
                lines.append(f"request:          {clip(r_request)}")
                if t_request != r_request:
                    lines.append(f"target request:   {clip(t_request)}  (its own CAS)")
                if ttl_difference:
                    lines.append(ttl_difference)
                lines.append(f"target reply:     {clip(t_reply)}")
                lines.append(f"reference reply:  {clip(r_reply)}")
                if reply_bytes(t_raw) != t_reply or reply_bytes(r_raw) != r_reply:
                    lines.append(f"target raw:       {clip(reply_bytes(t_raw))}")
                    lines.append(f"reference raw:    {clip(reply_bytes(r_raw))}")
                lines.append(f"preceding {len(recent)} commands (request -> reference reply):")
                for i, conn, request, reply in recent:
                    lines.append(f"  #{i} [conn {conn}] {clip(request, 300)} -> {clip(reply, 300)}")
                return RunResult(False, index, "\n".join(lines))
            generator.observe(command, r_norm)
            recent.append((index, command.conn, r_request, r_reply))
        return RunResult(True, count)
    finally:
        target.close()
        reference.close()


# Counters whose values follow from the command sequence alone (no clocks, no
# background threads), compared by `compare_counters` after a run.
DETERMINISTIC_COUNTERS = [
    "cmd_get", "cmd_set", "cmd_flush", "cmd_touch", "get_hits", "get_misses",
    "delete_hits", "delete_misses", "incr_hits", "incr_misses", "decr_hits", "decr_misses",
    "cas_hits", "cas_misses", "cas_badval", "touch_hits", "touch_misses",
]


def read_stats(address, timeout=10.0):
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    stats = {}
    for line in buf.split(b"\r\n"):
        if line.startswith(b"STAT "):
            _, name, value = line.split(b" ", 2)
            stats[name.decode()] = value.decode(errors="replace")
    return stats


def compare_counters(target_address, reference_address, names=DETERMINISTIC_COUNTERS):
    """{name: (target value, reference value)} for every counter that differs."""
    target, reference = read_stats(target_address), read_stats(reference_address)
    return {n: (target.get(n, "<missing>"), reference.get(n)) for n in names if target.get(n) != reference.get(n)}


# ---------------------------------------------------------------------------
# Binary protocol mode (--binary): the same idea for memcached's binary protocol.
# ---------------------------------------------------------------------------
#
# The generator sends every opcode (quiet variants included) with valid and
# invalid shapes; after each request the runner sends a Noop with an opaque
# the generator never uses and reads responses up to its reply, so quiet
# requests that answer nothing and Stat requests that answer many are framed
# alike. Responses are compared field by field after normalizing CAS values:
# each server's CAS values are numbered in order of first appearance (both
# servers give a new CAS at the same points), and a request carrying a CAS
# gets each server's own value for the ordinal the generator chose.
# The text mode's cautions apply: values that memcached's incr may parse past
# their end are kept away from incr/decr, values a decr may have padded are
# compared without trailing spaces, and nothing depends on the clock.

BIN_HEADER = struct.Struct(">BBHBBHIIQ")
BIN_BARRIER_OPAQUE = 0xFEEDFACE
(B_GET, B_SET, B_ADD, B_REPLACE, B_DELETE, B_INCR, B_DECR, B_QUIT, B_FLUSH, B_GETQ, B_NOOP, B_VERSION,
 B_GETK, B_GETKQ, B_APPEND, B_PREPEND, B_STAT, B_SETQ, B_ADDQ, B_REPLACEQ, B_DELETEQ, B_INCRQ, B_DECRQ,
 B_QUITQ, B_FLUSHQ, B_APPENDQ, B_PREPENDQ) = range(0x1B)
B_VERBOSITY, B_TOUCH, B_GAT, B_GATQ, B_SASL_LIST, B_SASL_AUTH, B_SASL_STEP, B_GATK, B_GATKQ = (
    0x1B, 0x1C, 0x1D, 0x1E, 0x20, 0x21, 0x22, 0x23, 0x24)
BIN_QUIET = {B_GETQ, B_GETKQ, B_SETQ, B_ADDQ, B_REPLACEQ, B_DELETEQ, B_INCRQ, B_DECRQ, B_QUITQ, B_FLUSHQ,
             B_APPENDQ, B_PREPENDQ, B_GATQ, B_GATKQ}
# Keys only the binary protocol can carry.
BINARY_ONLY_KEYS = [b"sp ace", b"nl\nkey", b"crlf\r\nkey", b"nul\x00key", b"\x80\x81"]
BIN_EXPTIMES = [0] * 12 + [86400, 100000, 2592000, 2592001, 1_000_000_000, 2_000_000_000, 0xFFFFFFFF]
SAFE_INITIALS = [0, 0, 1, 10, 99, 4294967296, 2 ** 62]
BIN_DELTAS = [1, 1, 1, 2, 7, 100, 0, 2 ** 32, 2 ** 63 - 1, 2 ** 64 - 1]
APPEND_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&()*+,-./:;<=>?@[]^_{|}~"


def bin_packet(opcode, key=b"", extras=b"", value=b"", opaque=0, cas=0, magic=0x80, body_length=None):
    body_length = len(extras) + len(key) + len(value) if body_length is None else body_length
    return BIN_HEADER.pack(magic, opcode, len(key), len(extras), 0, 0, body_length, opaque, cas) + extras + key + value


@dataclass
class BinaryCommand:
    kind: str
    opcode: int
    key: bytes = b""
    extras: bytes = b""
    value: bytes = b""
    opaque: int = 0
    cas: object = 0            # an int, or a CasRef rendered per server
    raw: bytes = None          # a hand-made (malformed) packet, sent as is
    conn: int = 0

    @property
    def keys(self):
        return [self.key] if self.key else []

    def render(self, cas_value_of):
        if self.raw is not None:
            return self.raw
        cas = cas_value_of(self.cas.ordinal) if isinstance(self.cas, CasRef) else self.cas
        return bin_packet(self.opcode, self.key, self.extras, self.value, self.opaque, cas)


class BinaryGenerator:
    """Seeded random binary requests; learns CAS ordinals and counter safety from responses."""

    def __init__(self, seed, profile, connections=3):
        self.rng = random.Random(seed)
        self.text = Generator(seed, profile, connections)  # for its value makers
        self.text.rng = self.rng
        self.profile = profile
        self.connections = connections
        self.cas_seen = collections.defaultdict(list)   # key -> CAS ordinals, oldest first
        self.maybe_padded = set()
        self.arith_unsafe = set()
        self.length_bound = collections.defaultdict(int)
        kinds = {
            "set": 14, "add": 4, "replace": 4, "append": 4, "prepend": 3, "cas_store": 8,
            "get": 14, "touch": 3, "gat": 4, "delete": 6, "incr": 9, "flush": 0.4,
            "noop": 1, "version": 0.5, "stat": 0.5, "unknown": 1, "malformed": 1.2,
        }
        self.kinds, self.weights = list(kinds), list(kinds.values())

    def chance(self, p):
        return self.rng.random() < p

    def key(self):
        r = self.rng.random()
        if r < 0.88:
            return self.rng.choice(NORMAL_KEYS)
        if r < 0.95:
            return self.rng.choice(SPECIAL_KEYS + CONTROL_CHAR_KEYS)
        return self.rng.choice(BINARY_ONLY_KEYS)

    def opaque(self):
        return self.rng.choice([0, 1, 0x7FFFFFFF, self.rng.randrange(1, 2 ** 32 - 1)])

    def quiet(self, loud, quiet):
        return quiet if self.chance(0.3) else loud

    def value_for(self, key, appending=False):
        if self.chance(self.profile.too_large_rate):
            return self.text.too_large_value()
        room = self.profile.safe_value_max - (self.length_bound[key] if appending else 0)
        if appending:
            n = max(0, min(room, self.rng.choice([0, 1, 2, 5, 20, 200])))
            return bytes(self.rng.choice(APPEND_ALPHABET) for _ in range(n))
        return self.text.value(max_len=max(room, 0))

    def cas_for(self, key):
        seen = self.cas_seen.get(key)
        r = self.rng.random()
        if seen and r < 0.65:
            return CasRef(seen[-1])
        if seen and len(seen) > 1 and r < 0.8:
            return CasRef(self.rng.choice(seen[:-1]))
        return self.rng.choice([1, 999999999999, 2 ** 64 - 1])

    def next_command(self):
        kind = self.rng.choices(self.kinds, self.weights)[0]
        command = getattr(self, "make_" + kind)()
        command.conn = 0 if self.chance(0.6) else self.rng.randrange(self.connections)
        return command

    def _store(self, loud, quiet, kind, cas=0):
        key = self.key()
        opcode = self.quiet(loud, quiet)
        if opcode in (B_APPEND, B_APPENDQ, B_PREPEND, B_PREPENDQ):
            if key in self.maybe_padded:
                return self._store(B_SET, B_SETQ, "set")
            return BinaryCommand(kind, opcode, key, b"", self.value_for(key, True), self.opaque(),
                                 self.cas_for(key) if self.chance(0.15) else 0)
        extras = struct.pack(">II", self.rng.choice([0] * 8 + [1, 42, 0xFFFFFFFF]), self.rng.choice(BIN_EXPTIMES))
        return BinaryCommand(kind, opcode, key, extras, self.value_for(key), self.opaque(), cas or 0)

    def make_set(self):
        return self._store(B_SET, B_SETQ, "set")

    def make_add(self):
        return self._store(B_ADD, B_ADDQ, "add")

    def make_replace(self):
        return self._store(B_REPLACE, B_REPLACEQ, "replace")

    def make_append(self):
        return self._store(B_APPEND, B_APPENDQ, "append")

    def make_prepend(self):
        return self._store(B_PREPEND, B_PREPENDQ, "prepend")

    def make_cas_store(self):
        loud, quiet = self.rng.choice([(B_SET, B_SETQ), (B_SET, B_SETQ), (B_ADD, B_ADDQ), (B_REPLACE, B_REPLACEQ)])
        command = self._store(loud, quiet, "cas")
        command.cas = self.cas_for(command.key)
        return command

    def make_get(self):
        opcode = self.rng.choice([B_GET, B_GET, B_GETK, B_GETQ, B_GETKQ])
        return BinaryCommand("get", opcode, self.key(), opaque=self.opaque())

    def make_touch(self):
        return BinaryCommand("touch", B_TOUCH, self.key(), struct.pack(">I", self.rng.choice(BIN_EXPTIMES)),
                             opaque=self.opaque())

    def make_gat(self):
        opcode = self.rng.choice([B_GAT, B_GATK, B_GATQ, B_GATKQ])
        return BinaryCommand("gat", opcode, self.key(), struct.pack(">I", self.rng.choice(BIN_EXPTIMES)),
                             opaque=self.opaque())

    def make_delete(self):
        key = self.key()
        cas = self.cas_for(key) if self.chance(0.2) else 0
        return BinaryCommand("delete", self.quiet(B_DELETE, B_DELETEQ), key, opaque=self.opaque(), cas=cas)

    def make_incr(self):
        key = self.rng.choice(NORMAL_KEYS) if self.chance(0.9) else self.key()
        if key in self.arith_unsafe:
            safe = [k for k in NORMAL_KEYS if k not in self.arith_unsafe]
            if not safe:
                return self.make_get()
            key = self.rng.choice(safe)
        opcode = self.rng.choice([B_INCR, B_INCR, B_DECR, B_INCRQ, B_DECRQ])
        delta = self.rng.choice(BIN_DELTAS)
        exptime = 0xFFFFFFFF if self.chance(0.3) else self.rng.choice(BIN_EXPTIMES[:-1])
        extras = struct.pack(">QQI", delta, self.rng.choice(SAFE_INITIALS), exptime)
        cas = self.cas_for(key) if self.chance(0.1) else 0
        return BinaryCommand("incr", opcode, key, extras, opaque=self.opaque(), cas=cas)

    def make_flush(self):
        extras = self.rng.choice([b"", struct.pack(">I", 0)])
        return BinaryCommand("flush", self.quiet(B_FLUSH, B_FLUSHQ), extras=extras, opaque=self.opaque())

    def make_noop(self):
        return BinaryCommand("noop", B_NOOP, opaque=self.opaque())

    def make_version(self):
        return BinaryCommand("version", B_VERSION, opaque=self.opaque())

    def make_stat(self):
        # Only groups whose answer is the same on both servers.
        return BinaryCommand("stat", B_STAT, self.rng.choice([b"bogus", b"reset", b"detail", b"x"]),
                             opaque=self.opaque())

    def make_unknown(self):
        r = self.rng.random()
        if r < 0.3:
            return BinaryCommand("unknown", self.rng.choice([B_SASL_LIST, B_VERBOSITY, 0x1F, 0x30, 0x50, 0xFF]),
                                 opaque=self.opaque())
        if r < 0.6:
            return BinaryCommand("unknown", self.rng.choice([B_SASL_AUTH, B_SASL_STEP]), b"PLAIN",
                                 value=b"\x00user\x00pass", opaque=self.opaque())
        # A value and nothing else: both servers skip exactly the body.
        return BinaryCommand("unknown", self.rng.choice([0x1F, 0x30, 0x50, 0xFF]), value=self.text.text(5),
                             opaque=self.opaque())

    def make_malformed(self):
        """Shapes memcached answers with an error and a closed connection."""
        key = self.rng.choice(NORMAL_KEYS)
        raw = self.rng.choice([
            bin_packet(B_GET, key, b"1234"),
            bin_packet(B_GET, key, value=b"v"),
            bin_packet(B_SET, key, b"1234", b"v"),
            bin_packet(B_SET, b"", struct.pack(">II", 0, 0), b"v"),
            bin_packet(B_INCR, key, b"12345678"),
            bin_packet(B_DELETE, key, value=b"v"),
            bin_packet(B_NOOP, key),
            bin_packet(B_QUIT, value=b"v"),
            bin_packet(B_FLUSH, extras=b"12"),
            bin_packet(B_GET, b"K" * 251),
            bin_packet(B_GET, key, body_length=1) + key[1:],           # key longer than the body
            # A Noop first, so that a new connection negotiates binary before the bad magic.
            bin_packet(B_NOOP, opaque=7) + bin_packet(B_NOOP, magic=0x81),
            bin_packet(B_NOOP, opaque=7) + b"get k01\r\n" + b"\x00" * 20,  # text on a binary connection
            bin_packet(B_QUIT, opaque=9),
            bin_packet(B_QUITQ),
        ])
        return BinaryCommand("malformed", B_NOOP, raw=raw)

    # -- learning from responses ------------------------------------------------------

    def observe(self, command, responses):
        for r in responses:
            if r["cas"] and command.key:
                seen = self.cas_seen[command.key]
                if not seen or seen[-1] != r["cas"]:
                    seen.append(r["cas"])
                    del seen[:-6]
        if command.raw is not None or not command.key:
            if command.kind == "flush" and not any(r["status"] for r in responses):
                self.maybe_padded.clear()
                self.arith_unsafe.clear()
                self.length_bound.clear()
            return
        key = command.key
        errors = [r for r in responses if r["status"] != 0]
        quiet = command.opcode in BIN_QUIET
        succeeded = not errors and (quiet or responses)
        if command.kind in ("set", "add", "replace", "cas"):
            self.length_bound[key] = len(command.value) if succeeded else max(self.length_bound[key],
                                                                                len(command.value))
            if parse_may_overrun(command.value):
                self.arith_unsafe.add(key)
            elif succeeded:
                self.arith_unsafe.discard(key)
            if succeeded:
                self.maybe_padded.discard(key)
        elif command.kind in ("append", "prepend"):
            self.length_bound[key] += len(command.value)
        elif command.kind == "incr":
            if quiet and not errors:
                self.arith_unsafe.add(key)  # the new value is unknown
                self.maybe_padded.add(key)
            for r in responses:
                if r["status"] == 0 and len(r["value"]) == 8:
                    number = struct.unpack(">Q", r["value"])[0]
                    self.maybe_padded.add(key)
                    self.length_bound[key] = max(self.length_bound[key], len(str(number)))
                    if number >= 2 ** 63:
                        self.arith_unsafe.add(key)
                    else:
                        self.arith_unsafe.discard(key)
        elif command.kind == "delete" and not (command.opcode == B_DELETE and not responses):
            if not errors or errors[0]["status"] == 1:
                self.maybe_padded.discard(key)
                self.arith_unsafe.discard(key)


class BinaryConnection(Connection):
    """One socket speaking the binary protocol; exchange ends each request with a Noop barrier."""

    def exchange(self, request):
        """(responses, status): responses are dicts of header fields and body parts."""
        self.ensure_open()
        responses = []
        try:
            self.sock.sendall(request + bin_packet(B_NOOP, opaque=BIN_BARRIER_OPAQUE))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while True:
                header = BIN_HEADER.unpack(self._exact(BIN_HEADER.size))
                magic, opcode, key_length, extras_length, data_type, status, body_length, opaque, cas = header
                body = self._exact(body_length)
                if opcode == B_NOOP and opaque == BIN_BARRIER_OPAQUE and magic == 0x81:
                    return responses, "ok"
                responses.append({
                    "magic": magic, "opcode": opcode, "status": status, "data_type": data_type,
                    "extras": body[:extras_length], "key": body[extras_length:extras_length + key_length],
                    "value": body[extras_length + key_length:], "opaque": opaque, "cas": cas,
                })
        except ConnectionError:
            self.close()
            if self.buf:
                responses.append({"leftover": self.buf})
            return responses, "closed"
        except ReplyTimeout:
            self.close()
            return responses, "timeout"


class BinarySide(Side):
    def __init__(self, name, address, connections, timeout):
        self.name = name
        self.address = address
        self.conns = [BinaryConnection(address, timeout) for _ in range(connections)]
        self.cas = CasNumbering()

    def execute(self, command, maybe_padded=frozenset()):
        request = command.render(self.cas.cas_value)
        responses, status = self.conns[command.conn].exchange(request)
        normalized = []
        for r in responses:
            r = dict(r)
            if "cas" in r and r["cas"]:
                r["cas"] = self.cas.ordinal(b"", r["cas"])
            value = r.get("value", b"")
            if (command.key in maybe_padded and r.get("opcode") in (B_GET, B_GETQ, B_GETK, B_GETKQ, B_GAT, B_GATQ,
                                                                     B_GATK, B_GATKQ)
                    and value.endswith(b" ") and value.rstrip(b" ").isdigit()):
                r["value"] = value.rstrip(b" ")
            normalized.append(r)
        return request, responses, normalized, status


def describe_binary(responses):
    return "; ".join(
        "leftover %r" % r["leftover"] if "leftover" in r else
        "op=0x%02x st=0x%x ex=%s key=%s val=%s opq=%d cas=%s" % (
            r["opcode"], r["status"], r["extras"].hex(), clip(r["key"], 60), clip(r["value"], 120), r["opaque"],
            r["cas"])
        for r in responses) or "(nothing)"


def run_binary(target_address, reference_address, seed, count, profile="default", connections=3,
               history=8, timeout=10.0, trace=None, reproduce_hint=""):
    """Binary-protocol differential run; stops at the first difference."""
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    generator = BinaryGenerator(seed, profile, connections)
    target = BinarySide("target", target_address, connections, timeout)
    reference = BinarySide("reference", reference_address, connections, timeout)
    recent = collections.deque(maxlen=history)
    flush = BinaryCommand("flush", B_FLUSH)
    try:
        for side in (target, reference):
            _, _, normalized, status = side.execute(flush)
            if status != "ok" or [r["status"] for r in normalized] != [0]:
                return RunResult(False, 0, f"{side.name} {side.address}: binary Flush before the run failed: "
                                           f"{describe_binary(normalized)}")
        for index in range(count):
            command = generator.next_command()
            t_request, _, t_norm, t_status = target.execute(command, generator.maybe_padded)
            r_request, _, r_norm, r_status = reference.execute(command, generator.maybe_padded)
            if trace:
                trace(f"#{index} [conn {command.conn}] {clip(r_request, 300)} -> {describe_binary(r_norm)}")
            if t_norm != r_norm or t_status != r_status or "timeout" in (t_status, r_status):
                lines = [f"binary differential mismatch at command #{index} of {count} "
                         f"(seed {seed}, profile {profile.name}, connection {command.conn})"]
                if reproduce_hint:
                    lines.append(f"reproduce: {reproduce_hint}")
                lines.append(f"request:          {clip(r_request)}")
                lines.append(f"target reply:     [{t_status}] {describe_binary(t_norm)}")
                lines.append(f"reference reply:  [{r_status}] {describe_binary(r_norm)}")
                lines.append(f"preceding {len(recent)} commands (request -> reference reply):")
                for i, conn, request, reply in recent:
                    lines.append(f"  #{i} [conn {conn}] {clip(request, 300)} -> {reply}")
                return RunResult(False, index, "\n".join(lines))
            generator.observe(command, r_norm)
            recent.append((index, command.conn, r_request, describe_binary(r_norm)))
        return RunResult(True, count)
    finally:
        target.close()
        reference.close()


# ---------------------------------------------------------------------------
# Starting servers (script mode) and the command line.
# ---------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OutputDrain:
    """Reads a server's stdout/stderr so `verbosity 2` logging can never fill a pipe and block it."""

    def __init__(self, *streams, keep=20000):
        self.tail = collections.deque(maxlen=keep)
        self.threads = [threading.Thread(target=self._read, args=(s,), daemon=True) for s in streams if s]
        for thread in self.threads:
            thread.start()

    def _read(self, stream):
        try:
            for chunk in iter(lambda: stream.read1(65536), b""):
                self.tail.extend(chunk)
        except (ValueError, OSError):
            pass  # the stream was closed when the server was stopped

    def text(self):
        return bytes(self.tail).decode(errors="replace")


def start_server(binary, args, is_memcached, timeout=10.0):
    """Start a server on a free 127.0.0.1 port; returns (Popen, port, drain)."""
    port = free_port()
    cmd = [str(binary), "-p", str(port), "-l", "127.0.0.1"]
    if is_memcached and os.geteuid() == 0:
        cmd += ["-u", "root"]
    cmd += list(args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    drain = OutputDrain(proc.stdout, proc.stderr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            time.sleep(0.1)
            raise RuntimeError(f"server exited early ({proc.returncode}): {cmd}\n{drain.text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port, drain
        except OSError:
            time.sleep(0.02)
    stop_server(proc)
    raise RuntimeError(f"server did not listen within {timeout}s: {cmd}")


def stop_server(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="run this many consecutive seeds from --seed")
    parser.add_argument("--count", type=int, default=3000, help="commands per seed")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--target-port", type=int, help="compare a running server on 127.0.0.1:PORT")
    parser.add_argument("--reference-port", type=int, help="against a running memcached on 127.0.0.1:PORT")
    parser.add_argument("--target-binary", help="start this memkeep binary as the target")
    parser.add_argument("--reference-vs-itself", action="store_true",
                        help="self-check: start two memcacheds and compare them (must always agree)")
    parser.add_argument("--counters", action="store_true", help="also compare deterministic stats counters")
    parser.add_argument("--binary", action="store_true", help="send binary-protocol traffic instead of text")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a reply before giving up")
    parser.add_argument("--trace", action="store_true", help="print every request and reply")
    parser.add_argument("--exclude", action="append", default=[], choices=sorted(CATEGORIES),
                        help="leave out a category of traffic (repeatable): " +
                        "; ".join(f"{k}: {v}" for k, v in CATEGORIES.items()))
    opts = parser.parse_args(argv)
    profile = PROFILES[opts.profile]

    started = []
    try:
        if opts.reference_port:
            reference_address = ("127.0.0.1", opts.reference_port)
        else:
            proc, port, _ = start_server(MEMCACHED_BIN, profile.reference_args, True)
            started.append(proc)
            reference_address = ("127.0.0.1", port)
        if opts.target_port:
            target_address = ("127.0.0.1", opts.target_port)
        elif opts.reference_vs_itself:
            proc, port, _ = start_server(MEMCACHED_BIN, profile.reference_args, True)
            started.append(proc)
            target_address = ("127.0.0.1", port)
        else:
            binary = opts.target_binary or MEMKEEP_BIN
            proc, port, _ = start_server(binary, profile.target_args, False)
            started.append(proc)
            target_address = ("127.0.0.1", port)

        failures = 0
        for seed in range(opts.seed, opts.seed + opts.seeds):
            hint = (f"/usr/bin/python3 tests/integration/differential.py --seed {seed} --count {opts.count} "
                    f"--profile {profile.name} --connections {opts.connections}"
                    + "".join(f" --exclude {c}" for c in opts.exclude))
            began = time.monotonic()
            if opts.binary:
                result = run_binary(target_address, reference_address, seed, opts.count, profile, opts.connections,
                                    timeout=opts.timeout, trace=print if opts.trace else None,
                                    reproduce_hint=hint + " --binary")
            else:
                result = run(target_address, reference_address, seed, opts.count, profile, opts.connections,
                             timeout=opts.timeout, trace=print if opts.trace else None, reproduce_hint=hint,
                             exclude=opts.exclude)
            took = time.monotonic() - began
            if result.ok:
                print(f"seed {seed}: {result.commands_run} commands agree ({took:.1f}s)")
            else:
                failures += 1
                print(result.message)
            if opts.counters and result.ok:
                diffs = compare_counters(target_address, reference_address)
                for name, (t, r) in diffs.items():
                    print(f"  counter {name}: target {t}, reference {r}")
                failures += bool(diffs)
        return 1 if failures else 0
    finally:
        for proc in started:
            stop_server(proc)


if __name__ == "__main__":
    sys.exit(main())
