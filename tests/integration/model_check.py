"""A reference model of memkeep's command semantics, a seeded generator of
commands, and a checker that runs them over a real socket and compares every
reply with what the model predicts (used by test_model.py).

The model keeps, per key, the list of states the key may be in ("possible
worlds"); None means "absent". Only two things make a key's state uncertain,
and both only in the one way the protocol allows:
  * expiry: an item's absolute expiry time is known to within the second the
    server read its clock (measured around each request, see Moment), so a
    read near that second may hit or miss;
  * eviction: in memory mode (and only there) any item may have been evicted,
    so "absent" is always possible for it.
Every reply must be the one some possible world predicts, to the byte, with
two kinds of placeholders: a CAS value (equal to the one seen before for that
version, or, for a version not seen yet, larger than every CAS seen before the
write made it) and a TTL from `t` (within the bounds the measured clock
allows). The worlds that predicted the reply are kept, the others dropped, so
an uncertain key becomes certain again at its next read. There is no branch
that accepts a reply no world predicts.
"""

import math
import random
import time
from dataclasses import dataclass, replace
from typing import Optional, Tuple

SPACE = b" \t\n\v\f\r"
COARSE_CLOCK_LAG = 0.05   # seconds: how far time() may lag behind time.time()
U64 = 1 << 64


# ---- the state of one key ---------------------------------------------------------

@dataclass(frozen=True)
class Cas:
    """A CAS value: `known` once seen, else only known to exceed `floor`."""
    known: Optional[int] = None
    floor: int = 0
    serial: int = 0   # tells apart two unseen versions with the same floor


@dataclass(frozen=True)
class Item:
    value: bytes
    flags: int
    exp: Optional[Tuple[int, int]]   # absolute expiry within [lo, hi] seconds; None = never
    cas: Cas
    stale: bool = False    # invalidated (md I / ms I): served with X
    token: bool = False    # a client won the recache (W sent): later readers see Z
    fetched: bool = False  # read (or touched) since it was stored: mg h1


@dataclass
class Moment:
    """The server's clock while it ran one request: within [lo, hi] seconds."""
    lo: int
    hi: int


def exp_from_ttl(ttl, now):
    """memcached's exptime rules for the small relative TTLs the generator uses."""
    if ttl == 0:
        return None
    if ttl < 0:
        return (1, 1)  # already expired
    return (now.lo + ttl, now.hi + ttl)


class Ttl:
    """Placeholder for a `t` return flag: exptime - now, bounded by the clocks."""
    def __init__(self, exp, now):
        self.exp, self.now = exp, now

    def matches(self, token, bind):
        if self.exp is None:
            return token == b"-1"
        try:
            got = int(token)
        except ValueError:
            return False
        return self.exp[0] - self.now.hi <= got <= self.exp[1] - self.now.lo

    def __repr__(self):
        return f"<ttl exp={self.exp} now=[{self.now.lo},{self.now.hi}]>"


class CasToken:
    """Placeholder for a CAS value in a reply (c flag, gets, gats, ms c)."""
    def __init__(self, cas, prefix=b""):
        self.cas, self.prefix = cas, prefix

    def matches(self, token, bind):
        if not token.startswith(self.prefix):
            return False
        try:
            got = int(token[len(self.prefix):])
        except ValueError:
            return False
        if self.cas.known is not None:
            return got == self.cas.known
        if got <= self.cas.floor:
            return False
        bind[self.cas] = got
        return True

    def __repr__(self):
        return f"<cas {self.prefix.decode()}{self.cas}>"


def match_reply(expected, actual):
    """expected and actual are lists of tokens (bytes or placeholders); returns
    the CAS bindings when they match, else None."""
    if len(expected) != len(actual):
        return None
    bind = {}
    for want, got in zip(expected, actual):
        if isinstance(want, bytes):
            if want != got:
                return None
        elif not want.matches(got, bind):
            return None
    return bind


def bound(item, bind):
    if item is None or item.cas not in bind:
        return item
    return replace(item, cas=Cas(known=bind[item.cas]))


def parse_counter(value):
    """memcached's reading of a counter: strtoull on value + CRLF."""
    text = value + b"\r\n"
    i = 0
    while i < len(text) and text[i] in SPACE:
        i += 1
    j = i
    while j < len(text) and text[j:j + 1].isdigit():
        j += 1
    if j == i or text[j] not in SPACE:
        return None
    number = int(text[i:j])
    return number if number < U64 else None


# ---- commands ----------------------------------------------------------------------

@dataclass
class Command:
    """One request: its bytes, how to read its reply, and its meaning."""
    kind: str            # the model's name for it (see Model.predict)
    key: bytes
    wire: bytes
    reply: str           # "line", "get" (VALUE... END) or "meta" (line, data after VA)
    args: dict

    def describe(self):
        text = self.wire if len(self.wire) < 120 else self.wire[:100] + b"...(%d bytes)" % len(self.wire)
        return text.decode(errors="replace").replace("\r\n", "\\r\\n")


def read_reply(client, how):
    """The reply as a list of tokens (data blocks are one token each)."""
    if how == "line":
        return client.read_line()[:-2].split(b" ")
    if how == "meta":
        line = client.read_line()[:-2].split(b" ")
        if line[0] == b"VA":
            return line + [client.read_exact(int(line[1]) + 2)[:-2]]
        return line
    tokens = []
    while True:
        line = client.read_line()[:-2].split(b" ")
        tokens += line
        if line[0] != b"VALUE":
            return tokens
        tokens.append(client.read_exact(int(line[3]) + 2)[:-2])


# ---- the model ---------------------------------------------------------------------

class Model:
    def __init__(self, evictable, lost_on_disk=()):
        self.evictable = evictable      # memory mode: any item may be gone
        # The state bits (Item fields) that an item which left RAM may come
        # back without. Known bugs, each a strict xfail in test_model.py:
        # the durable store keeps no state bits (stale, token, fetched), and
        # the overflow tier does not keep the fetched bit.
        self.lost_on_disk = tuple(lost_on_disk)
        self.worlds = {}                # key -> list of possible states (None = absent)
        self.max_cas = 0                # every CAS seen so far is <= this
        self.serial = 0

    def states(self, key):
        return self.worlds.get(key, [None])

    def new_cas(self):
        self.serial += 1
        return Cas(floor=self.max_cas, serial=self.serial)

    def known_cas(self, key):
        """The key's CAS if every world where it is present agrees on one seen value."""
        values = {s.cas.known for s in self.states(key) if s is not None}
        if len(values) == 1 and None not in values:
            return values.pop()
        return None

    def surely_present(self, key):
        return None not in self.states(key)

    def before(self, key, now):
        """The worlds a key may be in when the server reads it at `now`."""
        out = []
        for s in self.states(key):
            if s is not None and s.exp is not None and s.exp[0] <= now.hi:
                if s.exp[1] <= now.lo:
                    s = None                    # surely expired
                else:
                    out.append(None)            # may have expired
                    s = replace(s, exp=(max(s.exp[0], now.lo + 1), s.exp[1]))
            if s is not None and self.evictable:
                out.append(None)
            if s is not None and any(getattr(s, bit) for bit in self.lost_on_disk):
                out.append(replace(s, **{bit: False for bit in self.lost_on_disk}))
            out.append(s)
        return dedupe(out)

    def check(self, command, reply, now):
        """Compares a reply with every world's prediction and keeps the worlds
        that predicted it. Returns None when it matches, else a description."""
        if command.kind in ("flush_all", "flush_all_delayed"):
            if reply != [b"OK"]:
                return f"expected OK, got {reply!r}"
            return None
        key = command.key
        kept, predictions = [], []
        cas_floor = self.max_cas
        self.serial += 1
        for state in self.before(key, now):
            expected, after = self.predict(command, state, now, cas_floor, self.serial)
            predictions.append(expected)
            bind = match_reply(expected, reply)
            if bind is not None:
                kept.append(bound(after, bind))
                for value in bind.values():
                    self.max_cas = max(self.max_cas, value)
        if not kept:
            return "no possible world predicts this reply; predictions:\n    " + "\n    ".join(
                repr(p)[:300] for p in dedupe_repr(predictions))
        self.worlds[key] = dedupe(kept)
        return None

    def flush(self):
        for key in self.worlds:
            self.worlds[key] = [None]

    def forget_all(self):
        self.worlds = {}

    def observe_cas(self, value):
        self.max_cas = max(self.max_cas, value)

    # -- the semantics, one world at a time -------------------------------------

    def predict(self, c, s, now, cas_floor, serial):
        """(expected reply tokens, state after) for command c on state s."""
        a = c.args
        k = c.kind
        fresh = lambda: Cas(floor=cas_floor, serial=serial)   # the version this write makes

        if k in ("get", "gets", "gat", "gats"):
            if s is None:
                return [b"END"], None
            if k in ("gat", "gats"):
                s = replace(s, exp=exp_from_ttl(a["ttl"], now))
            # A classic get marks the item fetched but takes no recache win
            # (memcached 1.6.18: only mg hands out W).
            s = replace(s, fetched=True)
            line = [b"VALUE", c.key, b"%d" % s.flags, b"%d" % len(s.value)]
            if k in ("gets", "gats"):
                line.append(CasToken(s.cas))
            return line + [s.value, b"END"], s

        if k in ("set", "add", "replace", "append", "prepend", "cas"):
            new = Item(a["value"], a["flags"], exp_from_ttl(a["ttl"], now), fresh())
            if k == "set":
                return [b"STORED"], new
            if k == "add":
                return ([b"NOT_STORED"], s) if s is not None else ([b"STORED"], new)
            if k == "replace":
                return ([b"STORED"], new) if s is not None else ([b"NOT_STORED"], None)
            if k == "cas":
                if s is None:
                    return [b"NOT_FOUND"], None
                if s.cas.known is None or s.cas.known != a["cas"]:
                    # An unseen CAS is larger than any we could have sent.
                    return [b"EXISTS"], s
                return [b"STORED"], new
            if s is None:
                return [b"NOT_STORED"], None
            joined = s.value + a["value"] if k == "append" else a["value"] + s.value
            return [b"STORED"], Item(joined, s.flags, s.exp, fresh())

        if k == "delete":
            return ([b"DELETED"], None) if s is not None else ([b"NOT_FOUND"], None)

        if k == "touch":
            if s is None:
                return [b"NOT_FOUND"], None
            return [b"TOUCHED"], replace(s, exp=exp_from_ttl(a["ttl"], now), fetched=True)

        if k in ("incr", "decr"):
            if s is None:
                return [b"NOT_FOUND"], None
            number = parse_counter(s.value) if s.value else None
            if number is None:
                return [b"CLIENT_ERROR", b"cannot", b"increment", b"or", b"decrement", b"non-numeric",
                        b"value"], s
            result, stored = arithmetic(s.value, number, k == "incr", a["delta"])
            return [b"%d" % result], Item(stored, s.flags, s.exp, fresh(), fetched=s.fetched)

        if k == "mg":
            return self.predict_mg(c, s, now, fresh)
        if k == "ms":
            return self.predict_ms(c, s, now, fresh)
        if k == "md":
            return self.predict_md(c, s, now, fresh)
        if k == "ma":
            return self.predict_ma(c, s, now, fresh)
        raise AssertionError(f"unknown command kind {k}")

    @staticmethod
    def after_fetch(s):
        """What an mg does to the stale/win state (memcached's rules)."""
        if s.stale and not s.token:
            s = replace(s, token=True)
        return replace(s, fetched=True)

    def predict_mg(self, c, s, now, fresh):
        a = c.args
        flags = a["flags"]          # list of (letter, token)
        created = False
        previous_exp = None
        if s is None:
            vivify = next((t for l, t in flags if l == "N"), None)
            if vivify is None:
                return [b"EN"], None
            s = Item(b"", 0, exp_from_ttl(vivify, now), fresh(), token=False)
            created = True
        else:
            previous_exp = s.exp
        touch = next((t for l, t in flags if l == "T"), None)
        if touch is not None:
            s = replace(s, exp=exp_from_ttl(touch, now))
        other_won = s.token and not created
        won = created or (s.stale and not s.token)
        stale = s.stale
        was_fetched = s.fetched
        if won:
            s = replace(s, token=True)
        if not any(l == "u" for l, _ in flags):
            s = replace(s, fetched=True)
        out = [b"VA", b"%d" % len(s.value)] if any(l == "v" for l, _ in flags) else [b"HD"]
        ttl_changed = False
        for letter, token in flags:
            if letter == "T":
                ttl_changed = True
            elif letter == "N":
                ttl_changed = ttl_changed or created
            elif letter == "s":
                out.append(b"s%d" % len(s.value))
            elif letter == "t":
                out.append(PrefixedTtl(b"t", s.exp if ttl_changed else previous_exp, now))
            elif letter == "c":
                out.append(CasToken(s.cas, b"c"))
            elif letter == "f":
                out.append(b"f%d" % s.flags)
            elif letter == "h":
                out.append(b"h1" if was_fetched else b"h0")
        if other_won:
            out.append(b"Z")
        if stale:
            out.append(b"X")
        if won:
            out.append(b"W")
        if out[0] == b"VA":
            out.append(s.value)
        return out, s

    def predict_ms(self, c, s, now, fresh):
        a = c.args
        mode = a.get("mode", "S")
        compare = a.get("compare")
        exp = exp_from_ttl(a.get("ttl", 0), now)
        new = Item(a["value"], a.get("flags", 0), exp, fresh())
        status, after = None, None
        cas_mode = compare is not None and mode in ("S", "R")
        if cas_mode:
            if s is None:
                status, after = b"NF", None
            else:
                matches = s.cas.known is not None and s.cas.known == compare
                # An unseen CAS is larger than every value the generator sends.
                invalidating = a.get("invalidate", False) and (s.cas.known is None or compare < s.cas.known)
                if not matches and not invalidating:
                    status, after = b"EX", s
                else:
                    if invalidating and not matches:
                        # A stale set keeps the item's TTL (memcached's do_store_item).
                        new = replace(new, stale=True, token=s.token, exp=s.exp)
                    status, after = b"HD", new
        elif mode == "E":
            status, after = (b"NS", s) if s is not None else (b"HD", new)
        elif mode == "R":
            status, after = (b"HD", new) if s is not None else (b"NS", None)
        elif mode in ("A", "P"):
            if s is None:
                vivify = a.get("vivify")
                if vivify is None:
                    status, after = b"NS", None
                else:
                    status, after = b"HD", replace(new, exp=exp_from_ttl(vivify, now))
            elif compare is not None and s.cas.known != compare:
                status, after = b"EX", s
            else:
                joined = s.value + a["value"] if mode == "A" else a["value"] + s.value
                status, after = b"HD", Item(joined, s.flags, s.exp, fresh())
        else:
            status, after = b"HD", new
        out = [status]
        if a.get("return_cas") and status == b"HD":
            out.append(CasToken(after.cas, b"c"))
        elif a.get("return_cas"):
            out.append(CasToken(Cas(known=0), b"c"))  # memcached sends c0 with a failed store
        return out, after

    def predict_md(self, c, s, now, fresh):
        a = c.args
        if s is None:
            return [b"NF"], None
        compare = a.get("compare")
        if compare is not None and s.cas.known != compare:
            return [b"EX"], s
        if a.get("invalidate"):
            exp = s.exp if a.get("ttl") is None else exp_from_ttl(a["ttl"], now)
            return [b"HD"], replace(s, stale=True, token=False, exp=exp, cas=fresh())
        return [b"HD"], None

    def predict_ma(self, c, s, now, fresh):
        a = c.args
        out_value = a.get("return_value", False)
        flags = a["flags"]
        created = False
        previous_exp = None
        if s is None:
            if a.get("vivify") is None:
                return [b"NF"], None
            initial = a.get("initial", 0)
            s = Item(b"%d" % initial, 0, exp_from_ttl(a["vivify"], now), fresh())
            result = initial
            created = True
        else:
            if not s.value:
                return [b"CLIENT_ERROR", b"cannot", b"increment", b"or", b"decrement", b"non-numeric",
                        b"value"], s
            compare = a.get("compare")
            if compare is not None and s.cas.known != compare:
                return [b"EX"], s
            number = parse_counter(s.value)
            if number is None:
                return [b"CLIENT_ERROR", b"cannot", b"increment", b"or", b"decrement", b"non-numeric",
                        b"value"], s
            previous_exp = s.exp
            result, stored = arithmetic(s.value, number, a.get("mode", "I") in ("I", "+"), a.get("delta", 1))
            exp = s.exp if a.get("ttl") is None else exp_from_ttl(a["ttl"], now)
            s = Item(stored, s.flags, exp, fresh(), fetched=s.fetched)
        digits = b"%d" % result
        out = [b"VA", b"%d" % len(digits)] if out_value else [b"HD"]
        ttl_changed = False
        for letter, _ in flags:
            if letter == "T":
                ttl_changed = True
            elif letter == "N":
                ttl_changed = ttl_changed or created
            elif letter == "c":
                out.append(CasToken(s.cas, b"c"))
            elif letter == "t":
                out.append(PrefixedTtl(b"t", s.exp if ttl_changed or created else previous_exp, now))
        if out_value:
            out.append(digits)
        return out, s


class PrefixedTtl(Ttl):
    def __init__(self, prefix, exp, now):
        super().__init__(exp, now)
        self.prefix = prefix

    def matches(self, token, bind):
        return token.startswith(self.prefix) and super().matches(token[len(self.prefix):], bind)


def arithmetic(old_value, number, increment, delta):
    """(the number replied, the value stored): memcached pads a shorter result
    with spaces to the old length."""
    result = (number + delta) % U64 if increment else max(0, number - delta)
    digits = b"%d" % result
    stored = digits.ljust(len(old_value), b" ") if len(digits) < len(old_value) else digits
    return result, stored


def dedupe(states):
    out = []
    for s in states:
        if s not in out:
            out.append(s)
    return out


def dedupe_repr(items):
    seen, out = set(), []
    for item in items:
        r = repr(item)
        if r not in seen:
            seen.add(r)
            out.append(item)
    return out


# ---- the generator -----------------------------------------------------------------

KEYS = [b"k%d" % i for i in range(40)]
FILL_KEYS = [b"fill%d" % i for i in range(30)]
FILL_VALUE_BYTES = 40_000

# (operation, weight): how often each kind of step is drawn.
WEIGHTS = [
    ("set", 14), ("add", 3), ("replace", 3), ("append", 4), ("prepend", 3), ("cas", 4),
    ("delete", 4), ("touch", 3), ("get", 8), ("gets", 4), ("gat", 3), ("gats", 2),
    ("incr", 4), ("decr", 3), ("mg", 14), ("ms", 10), ("md", 6), ("ma", 5),
    ("churn", 1.5), ("flush_all", 0.3), ("flush_all_delayed", 0.2), ("sleep", 0.15),
    ("restart", 0.3), ("kill", 0.3),
]


class Generator:
    """Draws commands from a seeded random generator. What it draws depends on
    the seed and on the model (a CAS it has seen), so the same seed replays the
    same run as long as the server answers as the model predicts."""

    def __init__(self, seed, model):
        self.rng = random.Random(seed)
        self.model = model
        self.ops = [op for op, _ in WEIGHTS]
        self.weights = [w for _, w in WEIGHTS]
        self.step = 0

    def key(self):
        if self.rng.random() < 0.05:
            return self.rng.choice(FILL_KEYS)
        return self.rng.choice(KEYS)

    def value(self):
        self.step += 1
        r = self.rng.random()
        if r < 0.25:
            return b"%d" % self.rng.choice([0, 1, 7, 99, 12345, self.rng.randrange(1 << 40)])
        if r < 0.45:
            size = self.rng.randrange(1, 100)
        elif r < 0.75:
            size = self.rng.randrange(1000, 8000)
        else:
            size = self.rng.randrange(10_000, 40_000)
        return self.pattern(size)

    def pattern(self, size):
        # Starts with a letter (not a counter) and names its step: a value
        # served for the wrong key or version shows where it came from.
        unit = b"v%d.%d-" % (self.step, self.rng.randrange(1000))
        return (unit * (size // len(unit) + 1))[:size]

    def ttl(self, negative=True):
        r = self.rng.random()
        if r < 0.5:
            return 0
        if r < 0.85:
            return self.rng.randrange(1000, 9000)
        if r < 0.95 or not negative:
            return 2
        return -1

    def cas_for(self, key):
        known = self.model.known_cas(key)
        if known is not None and self.rng.random() < 0.8:
            return known
        return 1   # older than any version

    def next_ops(self):
        """The next step: a list of ("cmd", Command) or (action, None)."""
        op = self.rng.choices(self.ops, self.weights)[0]
        rng = self.rng
        key = self.key()
        if op in ("flush_all", "flush_all_delayed", "sleep", "restart", "kill"):
            return [(op, None)]
        if op == "churn":
            out = []
            for fill in FILL_KEYS:
                self.step += 1
                out.append(("cmd", storage("set", fill, self.pattern(FILL_VALUE_BYTES), 0, 0)))
            return out
        if op in ("set", "add", "replace", "append", "prepend"):
            return [("cmd", storage(op, key, self.value(), rng.choice([0, 0, 1, 42, 0xFFFFFFFF]), self.ttl()))]
        if op == "cas":
            probe = Command("mg", key, b"mg %s c\r\n" % key, "meta", {"flags": [("c", None)]})
            return [("cmd", probe), ("cas", key)]
        if op == "delete":
            return [("cmd", Command("delete", key, b"delete %s\r\n" % key, "line", {}))]
        if op == "touch":
            ttl = self.ttl()
            return [("cmd", Command("touch", key, b"touch %s %d\r\n" % (key, ttl), "line", {"ttl": ttl}))]
        if op in ("get", "gets"):
            return [("cmd", Command(op, key, b"%s %s\r\n" % (op.encode(), key), "get", {}))]
        if op in ("gat", "gats"):
            ttl = self.ttl()
            return [("cmd", Command(op, key, b"%s %d %s\r\n" % (op.encode(), ttl, key), "get", {"ttl": ttl}))]
        if op in ("incr", "decr"):
            delta = rng.choice([1, 5, 1000, (1 << 64) - 1])
            return [("cmd", Command(op, key, b"%s %s %d\r\n" % (op.encode(), key, delta), "line",
                                    {"delta": delta}))]
        if op == "mg":
            letters = [l for l in "vftcsh" if rng.random() < 0.5]
            if rng.random() < 0.1:
                letters.append("u")
            flags = [(l, None) for l in letters]
            if rng.random() < 0.2:
                flags.insert(rng.randrange(len(flags) + 1), ("T", self.ttl(negative=False)))
            if rng.random() < 0.1:
                flags.insert(rng.randrange(len(flags) + 1), ("N", self.ttl(negative=False)))
            return [("cmd", Command("mg", key, b"mg %s%s\r\n" % (key, meta_flags(flags)), "meta",
                                    {"flags": flags}))]
        if op == "ms":
            return [("cmd", self.meta_set(key))]
        if op == "md":
            args, flags = {}, []
            if rng.random() < 0.2:
                args["compare"] = self.cas_for(key)
                flags.append(("C", args["compare"]))
            if rng.random() < 0.5:
                args["invalidate"] = True
                flags.append(("I", None))
                if rng.random() < 0.5:
                    args["ttl"] = self.ttl(negative=False)
                    flags.append(("T", args["ttl"]))
            rng.shuffle(flags)
            return [("cmd", Command("md", key, b"md %s%s\r\n" % (key, meta_flags(flags)), "line", args))]
        if op == "ma":
            return [("cmd", self.meta_arithmetic(key))]
        raise AssertionError(op)

    def meta_set(self, key):
        rng = self.rng
        value = self.value()
        args = {"value": value}
        flags = []
        if rng.random() < 0.5:
            args["flags"] = rng.choice([0, 3, 77, 0xFFFFFFFF])
            flags.append(("F", args["flags"]))
        if rng.random() < 0.5:
            args["ttl"] = self.ttl(negative=False)
            flags.append(("T", args["ttl"]))
        mode = rng.choice("SSSEAPR")
        args["mode"] = mode
        if mode != "S" or rng.random() < 0.3:
            flags.append(("M", mode))
        if mode in "SRAP" and rng.random() < 0.3:
            args["compare"] = self.cas_for(key)
            flags.append(("C", args["compare"]))
            if mode in "SR" and rng.random() < 0.5:
                args["invalidate"] = True
                flags.append(("I", None))
        if mode in "AP" and rng.random() < 0.3:
            args["vivify"] = self.ttl(negative=False)
            flags.append(("N", args["vivify"]))
        if rng.random() < 0.3:
            args["return_cas"] = True
            flags.append(("c", None))
        rng.shuffle(flags)
        wire = b"ms %s %d%s\r\n%s\r\n" % (key, len(value), meta_flags(flags), value)
        return Command("ms", key, wire, "line", args)

    def meta_arithmetic(self, key):
        rng = self.rng
        args, flags = {}, []
        mode = rng.choice("I+D-")
        args["mode"] = mode
        flags.append(("M", mode))
        if rng.random() < 0.6:
            args["delta"] = rng.choice([1, 3, 500])
            flags.append(("D", args["delta"]))
        if rng.random() < 0.3:
            args["vivify"] = self.ttl(negative=False)
            flags.append(("N", args["vivify"]))
            if rng.random() < 0.5:
                args["initial"] = rng.choice([0, 10, 12345])
                flags.append(("J", args["initial"]))
        if rng.random() < 0.2:
            args["ttl"] = self.ttl(negative=False)
            flags.append(("T", args["ttl"]))
        if rng.random() < 0.15:
            args["compare"] = self.cas_for(key)
            flags.append(("C", args["compare"]))
        for letter in "vct":
            if rng.random() < 0.4:
                flags.append((letter, None))
        args["return_value"] = any(l == "v" for l, _ in flags)
        rng.shuffle(flags)
        args["flags"] = flags
        reply = "meta" if args["return_value"] else "line"
        return Command("ma", key, b"ma %s%s\r\n" % (key, meta_flags(flags)), reply, args)


def meta_flags(flags):
    return b"".join(b" " + letter.encode() + (b"" if token is None else str(token).encode())
                    for letter, token in flags)


def storage(kind, key, value, flags, ttl):
    wire = b"%s %s %d %d %d\r\n%s\r\n" % (kind.encode(), key, flags, ttl, len(value), value)
    return Command(kind, key, wire, "line", {"value": value, "flags": flags, "ttl": ttl})


def text_cas(key, value, flags, ttl, cas):
    wire = b"cas %s %d %d %d %d\r\n%s\r\n" % (key, flags, ttl, len(value), cas, value)
    return Command("cas", key, wire, "line", {"value": value, "flags": flags, "ttl": ttl, "cas": cas})


# ---- the run -----------------------------------------------------------------------

class ModelRun:
    """Runs `steps` generated steps against a server and checks every reply.

    `server` is a callable that starts the server (on the same data dir each
    time) and returns a conftest.ServerProcess; `mode` is memory, overflow or
    durable; `trace` collects one line per request and reply, for the report.
    """

    def __init__(self, mode, start_server, seed, steps, trace):
        self.mode = mode
        self.start_server = start_server
        self.seed = seed
        self.steps = steps
        self.trace = trace
        lost = {"memory": (), "overflow": ("fetched",), "durable": ("stale", "token", "fetched")}[mode]
        self.model = Model(evictable=(mode == "memory"), lost_on_disk=lost)
        self.gen = Generator(seed, self.model)
        self.server = start_server()
        self.client = self.server.connect()
        self.stats = {"requests": 0, "restarts": 0, "kills": 0, "sleeps": 0, "flushes": 0}

    def run(self):
        try:
            for step in range(self.steps):
                for action, command in self.gen.next_ops():
                    self.do(step, action, command)
        finally:
            self.client.close()
        return self.stats

    def do(self, step, action, command):
        if action == "cmd":
            return self.request(step, command)
        if action == "cas":
            key = command
            value = self.gen.value()
            cas = self.gen.cas_for(key)
            return self.request(step, text_cas(key, value, self.gen.rng.choice([0, 5]), self.gen.ttl(), cas))
        if action == "flush_all":
            self.stats["flushes"] += 1
            self.request(step, Command("flush_all", b"", b"flush_all\r\n", "line", {}))
            self.model.flush()
            return None
        if action == "flush_all_delayed":
            # Due at the server's now + 1: wait until that second has surely
            # begun, then the next request applies it.
            self.stats["flushes"] += 1
            now = self.request(step, Command("flush_all_delayed", b"", b"flush_all 1\r\n", "line", {}))
            if self.mode == "durable" and self.gen.rng.random() < 0.5:
                # The store keeps the due time: a restart before it still flushes.
                self.restart(step, kill=self.gen.rng.random() < 0.5)
            wait_until(now.hi + 1)
            self.model.flush()
            self.note(step, "(waited for the delayed flush)")
            return None
        if action == "sleep":
            self.stats["sleeps"] += 1
            time.sleep(1.05)
            self.note(step, "(slept 1.05 s)")
            return None
        if action in ("restart", "kill"):
            self.restart(step, kill=(action == "kill" and self.mode == "durable"))
            return None
        raise AssertionError(action)

    def restart(self, step, kill):
        import signal
        self.client.close()
        code = self.server.stop(signal.SIGKILL if kill else signal.SIGTERM)
        self.stats["kills" if kill else "restarts"] += 1
        self.note(step, f"({'kill -9' if kill else 'SIGTERM'}, exit {code}; started again)")
        if not kill:
            assert code == 0, f"seed {self.seed} step {step}: the server exited {code} on SIGTERM"
        if self.mode != "durable":
            self.model.forget_all()   # memory and the overflow tier start empty
        self.server = self.start_server()
        self.client = self.server.connect()

    def note(self, step, text):
        self.trace.append(f"{step:5d}  {text}")

    def request(self, step, command):
        t0 = time.time()
        self.client.send(command.wire)
        reply = read_reply(self.client, command.reply)
        t1 = time.time()
        # The server reads time(), which glibc serves from the coarse clock
        # (up to a tick, a few ms, behind the clock time.time() reads).
        now = Moment(math.floor(t0 - COARSE_CLOCK_LAG), math.floor(t1))
        self.stats["requests"] += 1
        shown = b" ".join(t if len(t) < 60 else t[:40] + b"...(%d bytes)" % len(t) for t in reply)
        self.trace.append(f"{step:5d}  {command.describe()}  ->  {shown.decode(errors='replace')}")
        problem = self.model.check(command, reply, now)
        if problem:
            raise ModelMismatch(self.seed, step, command, reply, problem, self.trace)
        return now


def wait_until(unix_second):
    """Until the server's clock (time(), see COARSE_CLOCK_LAG) reads unix_second."""
    deadline = unix_second + COARSE_CLOCK_LAG
    while time.time() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.time())))


class ModelMismatch(AssertionError):
    def __init__(self, seed, step, command, reply, problem, trace):
        tail = "\n".join(trace[-40:])
        super().__init__(
            f"seed {seed}, step {step}: {command.describe()}\n  reply: {reply!r}"[:2000]
            + f"\n  {problem}\n  last requests:\n{tail}")
        self.seed, self.step = seed, step
