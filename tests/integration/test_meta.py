"""Meta protocol (mg, ms, md, ma, mn, me): the everyday behaviour of every flag.

Every expected reply here was checked against memcached 1.6.18
(MEMKEEP_TEST_TARGET=memcached). Malformed requests, limits and flags that only
newer memcached versions accept are in test_meta_edge.py.

Conventions:
- `exchange(client, request)` sends the request followed by `mn` and returns
  everything the server answered before `MN`. Asserting on it proves there are
  no extra bytes (a suppressed reply really is suppressed).
- CAS values are never hard-coded: they are read back with `mg <key> c`.
- Remaining TTLs are checked with a tolerance: memcached's clock ticks once a
  second, so `T1000` may read back as t1000 or t999.

Where memcached 1.6.18 differs from its own doc/protocol.txt, a comment says so.
"""

import re
import time

import pytest

from conftest import TARGET
from meta_replies import assert_exchange, exchange, store


def cas_of(client, key):
    """The current CAS of key, read with `mg <key> c`."""
    line = exchange(client, b"mg " + key + b" c\r\n")
    match = re.fullmatch(rb"HD c(\d+)\r\n", line)
    assert match, f"mg {key!r} c: unexpected reply {line!r}"
    return int(match.group(1))


def ttl_matches(reply_token, expected_ttl, slack=5):
    """True when reply_token (bytes digits) is within `slack` seconds below expected_ttl."""
    value = int(reply_token)
    return expected_ttl - slack <= value <= expected_ttl


# ---------------------------------------------------------------- mn


def test_mn_returns_mn(client):
    client.assert_reply(b"mn\r\n", b"MN\r\n")


# ---------------------------------------------------------------- mg


def test_mg_miss_is_en(client):
    assert_exchange(client, b"mg nokey\r\n", b"EN\r\n")
    assert_exchange(client, b"mg nokey v\r\n", b"EN\r\n")


def test_mg_miss_echoes_opaque_and_key(client):
    # protocol.txt shows a bare "EN"; memcached appends the O and k flags anyway.
    assert_exchange(client, b"mg nokey v O123 k\r\n", b"EN O123 knokey\r\n")
    assert_exchange(client, b"mg nokey k O123\r\n", b"EN knokey O123\r\n")


def test_mg_hit_without_v_is_hd(client):
    store(client, b"foo", b"bar")
    assert_exchange(client, b"mg foo\r\n", b"HD\r\n")


def test_mg_v_returns_value(client):
    store(client, b"foo", b"bar")
    assert_exchange(client, b"mg foo v\r\n", b"VA 3\r\nbar\r\n")


def test_mg_value_with_binary_bytes(client):
    value = b"a\r\nb\x00\xff"
    store(client, b"bin", value)
    assert_exchange(client, b"mg bin v\r\n", b"VA 6\r\n" + value + b"\r\n")


def test_mg_empty_value(client):
    store(client, b"empty", b"")
    assert_exchange(client, b"mg empty v s\r\n", b"VA 0 s0\r\n\r\n")


def test_mg_return_flags_follow_request_order(client):
    store(client, b"foo", b"bar", b" F5")
    cas = str(cas_of(client, b"foo")).encode()
    assert_exchange(
        client,
        b"mg foo s v f c k t O9\r\n",
        b"VA 3 s3 f5 c" + cas + b" kfoo t-1 O9\r\nbar\r\n",
    )
    assert_exchange(
        client,
        b"mg foo O9 t k c f v s\r\n",
        b"VA 3 O9 t-1 kfoo c" + cas + b" f5 s3\r\nbar\r\n",
    )


def test_mg_s_f_c_k_individually(client):
    store(client, b"item", b"hello", b" F4294967295")
    cas = str(cas_of(client, b"item")).encode()
    assert_exchange(client, b"mg item s\r\n", b"HD s5\r\n")
    assert_exchange(client, b"mg item f\r\n", b"HD f4294967295\r\n")
    assert_exchange(client, b"mg item c\r\n", b"HD c" + cas + b"\r\n")
    assert_exchange(client, b"mg item k\r\n", b"HD kitem\r\n")


def test_mg_default_client_flags_are_zero(client):
    store(client, b"item", b"x")
    assert_exchange(client, b"mg item f\r\n", b"HD f0\r\n")


def test_mg_opaque_echoed_on_hit(client):
    store(client, b"foo", b"bar")
    assert_exchange(client, b"mg foo Oabc\r\n", b"HD Oabc\r\n")
    assert_exchange(client, b"mg foo v Oabc\r\n", b"VA 3 Oabc\r\nbar\r\n")


def test_mg_t_is_minus_one_without_ttl(client):
    store(client, b"forever", b"x")
    assert_exchange(client, b"mg forever t\r\n", b"HD t-1\r\n")


def test_mg_t_returns_remaining_ttl(client):
    store(client, b"ttl", b"x", b" T1000")
    line = exchange(client, b"mg ttl t\r\n")
    match = re.fullmatch(rb"HD t(\d+)\r\n", line)
    assert match, line
    assert ttl_matches(match.group(1), 1000), line


def test_mg_T_updates_ttl_and_t_reports_state_at_its_position(client):
    store(client, b"ttl", b"x", b" T1000")
    # t placed before T reports the TTL before the touch...
    line = exchange(client, b"mg ttl t T2000\r\n")
    match = re.fullmatch(rb"HD t(\d+)\r\n", line)
    assert match and ttl_matches(match.group(1), 1000), line
    # ...and t placed after T reports the new TTL (flags are applied in order).
    line = exchange(client, b"mg ttl T3000 t\r\n")
    match = re.fullmatch(rb"HD t(\d+)\r\n", line)
    assert match and ttl_matches(match.group(1), 3000), line
    line = exchange(client, b"mg ttl t\r\n")
    match = re.fullmatch(rb"HD t(\d+)\r\n", line)
    assert match and ttl_matches(match.group(1), 3000), line


def test_mg_T_zero_removes_ttl(client):
    store(client, b"ttl", b"x", b" T1000")
    assert_exchange(client, b"mg ttl T0\r\n", b"HD\r\n")
    assert_exchange(client, b"mg ttl t\r\n", b"HD t-1\r\n")


def test_mg_T_negative_expires_after_this_fetch(client):
    store(client, b"ttl", b"x")
    # The fetch that carries T-1 still hits; the item is gone afterwards.
    assert_exchange(client, b"mg ttl v T-1\r\n", b"VA 1\r\nx\r\n")
    assert_exchange(client, b"mg ttl v\r\n", b"EN\r\n")


def test_mg_T_on_miss_is_en(client):
    assert_exchange(client, b"mg nokey T30 v\r\n", b"EN\r\n")


def test_item_with_short_ttl_expires(client):
    store(client, b"short", b"x", b" T1")
    deadline = time.monotonic() + 5
    reply = b""
    while time.monotonic() < deadline:
        reply = exchange(client, b"mg short v\r\n")
        if reply == b"EN\r\n":
            break
        time.sleep(0.25)
    assert reply == b"EN\r\n"


def test_mg_h_reports_hit_before_this_command(client):
    store(client, b"item", b"x")
    assert_exchange(client, b"mg item h\r\n", b"HD h0\r\n")
    assert_exchange(client, b"mg item h\r\n", b"HD h1\r\n")


def test_mg_u_does_not_mark_item_fetched(client):
    store(client, b"item", b"x")
    assert_exchange(client, b"mg item u h\r\n", b"HD h0\r\n")
    assert_exchange(client, b"mg item h u\r\n", b"HD h0\r\n")
    assert_exchange(client, b"mg item v\r\n", b"VA 1\r\nx\r\n")
    assert_exchange(client, b"mg item u h\r\n", b"HD h1\r\n")


def test_mg_l_reports_last_access_before_this_command(client):
    store(client, b"item", b"x")
    line = exchange(client, b"mg item l\r\n")
    assert re.fullmatch(rb"HD l\d+\r\n", line), line
    time.sleep(2.5)
    # With u the access time is not updated: both reads see the old access.
    first = exchange(client, b"mg item u l\r\n")
    second = exchange(client, b"mg item u l\r\n")
    idle_first = int(re.fullmatch(rb"HD l(\d+)\r\n", first).group(1))
    idle_second = int(re.fullmatch(rb"HD l(\d+)\r\n", second).group(1))
    assert idle_first >= 2 and idle_second >= idle_first, (first, second)
    # Without u, l still reports the access time as it was before this command.
    # (Whether memcached then resets it depends on its LRU segment, so that is
    # not asserted.)
    before = exchange(client, b"mg item l\r\n")
    idle_before = int(re.fullmatch(rb"HD l(\d+)\r\n", before).group(1))
    assert idle_before >= 2, before


def test_mg_q_suppresses_miss_only(client):
    store(client, b"foo", b"bar")
    assert_exchange(client, b"mg nokey v q\r\n", b"")
    assert_exchange(client, b"mg nokey q O1 k\r\n", b"")
    # A hit is still returned with q, with or without v.
    assert_exchange(client, b"mg foo v q\r\n", b"VA 3\r\nbar\r\n")
    assert_exchange(client, b"mg foo q k O1\r\n", b"HD kfoo O1\r\n")


def test_mg_quiet_pipeline_ends_with_mn(client):
    store(client, b"a", b"1")
    store(client, b"c", b"3")
    client.assert_reply(
        b"mg a v q Oa\r\nmg b v q Ob\r\nmg c v q Oc\r\nmg d v q Od\r\nmn\r\n",
        b"VA 1 Oa\r\n1\r\nVA 1 Oc\r\n3\r\nMN\r\n",
    )


def test_mg_b_base64_key(client):
    # "Zm9v" is base64 for "foo": the item is stored under the decoded key.
    assert_exchange(client, b"ms Zm9v 3 b\r\nbar\r\n", b"HD\r\n")
    assert_exchange(client, b"mg foo v\r\n", b"VA 3\r\nbar\r\n")
    # k returns the key base64-encoded, and a b flag is emitted right after it.
    assert_exchange(client, b"mg Zm9v b v k\r\n", b"VA 3 kZm9v b\r\nbar\r\n")
    assert_exchange(client, b"mg Zm9v k v b\r\n", b"VA 3 kZm9v b\r\nbar\r\n")
    assert_exchange(client, b"mg Zm9v b s\r\n", b"HD s3\r\n")


def test_mg_b_binary_key_roundtrip(client):
    # "YmluAGtleQ==" is base64 for b"bin\x00key" (contains a NUL byte).
    assert_exchange(client, b"mg YmluAGtleQ== b k v\r\n", b"EN kYmluAGtleQ== b\r\n")
    assert_exchange(client, b"ms YmluAGtleQ== 1 b k\r\nx\r\n", b"HD kYmluAGtleQ== b\r\n")
    assert_exchange(client, b"mg YmluAGtleQ== b k v\r\n", b"VA 1 kYmluAGtleQ== b\r\nx\r\n")
    assert_exchange(client, b"md YmluAGtleQ== b k\r\n", b"HD kYmluAGtleQ== b\r\n")
    assert_exchange(client, b"mg YmluAGtleQ== b v\r\n", b"EN\r\n")


def test_mg_b_bad_base64_is_error(client):
    assert_exchange(client, b"mg !!!! b v\r\n", b"CLIENT_ERROR error decoding key\r\n")
    assert_exchange(client, b"mg Zm9 b v\r\n", b"CLIENT_ERROR error decoding key\r\n")


def test_mg_N_vivify_first_client_wins_next_sees_z(server):
    with server.connect() as first, server.connect() as second:
        # The miss creates an empty stub item; the creator gets W.
        assert_exchange(first, b"mg viv s v N30\r\n", b"VA 0 s0 W\r\n\r\n")
        # Everybody after that sees the empty stub with Z (no W).
        assert_exchange(second, b"mg viv s v N30\r\n", b"VA 0 s0 Z\r\n\r\n")
        assert_exchange(first, b"mg viv s v N30\r\n", b"VA 0 s0 Z\r\n\r\n")
        # Z is shown even without N.
        assert_exchange(second, b"mg viv v\r\n", b"VA 0 Z\r\n\r\n")
        assert_exchange(second, b"mg viv\r\n", b"HD Z\r\n")
        # Storing a real value clears the win state.
        assert_exchange(first, b"ms viv 2 T30\r\nok\r\n", b"HD\r\n")
        assert_exchange(second, b"mg viv v N30\r\n", b"VA 2\r\nok\r\n")


def test_mg_N_vivified_item_gets_the_N_ttl(client):
    line = exchange(client, b"mg viv N1000 t v\r\n")
    match = re.fullmatch(rb"VA 0 t(\d+) W\r\n\r\n", line)
    assert match and ttl_matches(match.group(1), 1000), line
    line = exchange(client, b"mg viv t\r\n")
    match = re.fullmatch(rb"HD t(\d+) Z\r\n", line)
    assert match and ttl_matches(match.group(1), 1000), line


def test_mg_N_ttl_applied_in_flag_order(client):
    # memcached applies flags left to right: a t before N still sees the stub's
    # initial "no TTL" (-1), although the item does get the N TTL.
    assert_exchange(client, b"mg viv t v N1000\r\n", b"VA 0 t-1 W\r\n\r\n")
    line = exchange(client, b"mg viv t\r\n")
    match = re.fullmatch(rb"HD t(\d+) Z\r\n", line)
    assert match and ttl_matches(match.group(1), 1000), line


def test_mg_N_with_q_still_returns_the_win(client):
    assert_exchange(client, b"mg viv N30 q v\r\n", b"VA 0 W\r\n\r\n")
    assert_exchange(client, b"mg viv N30 q k O1\r\n", b"HD kviv O1 Z\r\n")


def test_mg_N_on_hit_changes_nothing(client):
    store(client, b"item", b"x")
    assert_exchange(client, b"mg item N30 v t\r\n", b"VA 1 t-1\r\nx\r\n")


def test_mg_R_recache_win_when_ttl_below_token(server):
    with server.connect() as first, server.connect() as second:
        store(first, b"hot", b"x", b" T1000")
        # Remaining TTL (about 1000) is not below 30: no win.
        assert_exchange(first, b"mg hot v R30\r\n", b"VA 1\r\nx\r\n")
        # Remaining TTL is below 2000: the first asker wins...
        assert_exchange(first, b"mg hot v R2000\r\n", b"VA 1 W\r\nx\r\n")
        # ...and everyone else is told somebody already won.
        assert_exchange(second, b"mg hot v R2000\r\n", b"VA 1 Z\r\nx\r\n")
        assert_exchange(second, b"mg hot v\r\n", b"VA 1 Z\r\nx\r\n")
        # A new value resets the token.
        store(first, b"hot", b"y", b" T1000")
        assert_exchange(second, b"mg hot v R2000\r\n", b"VA 1 W\r\ny\r\n")


def test_mg_R_never_wins_without_ttl(client):
    store(client, b"forever", b"x")
    assert_exchange(client, b"mg forever v R2000\r\n", b"VA 1\r\nx\r\n")


def test_mg_R_on_miss_is_en(client):
    assert_exchange(client, b"mg nokey v R30\r\n", b"EN\r\n")


def test_mg_C_is_accepted_and_ignored(client):
    # memcached 1.6.18 parses C on mg (bad token is an error) but does not use it:
    # the value is returned whether or not the CAS matches.
    store(client, b"item", b"abc")
    cas = str(cas_of(client, b"item")).encode()
    assert_exchange(client, b"mg item v C" + cas + b"\r\n", b"VA 3\r\nabc\r\n")
    assert_exchange(client, b"mg item v C" + cas + b"1\r\n", b"VA 3\r\nabc\r\n")
    assert_exchange(client, b"mg item C" + cas + b"\r\n", b"HD\r\n")


def test_mg_P_and_L_are_ignored(client):
    store(client, b"item", b"x")
    assert_exchange(client, b"mg item P L\r\n", b"HD\r\n")
    assert_exchange(client, b"mg item Pfoo Lbar v\r\n", b"VA 1\r\nx\r\n")


# ---------------------------------------------------------------- stale / win flow


def test_md_I_marks_stale_then_mg_shows_X_and_W(server):
    with server.connect() as first, server.connect() as second:
        store(first, b"st", b"old")
        cas_before = cas_of(first, b"st")
        assert_exchange(first, b"md st I\r\n", b"HD\r\n")
        line = exchange(first, b"mg st v c\r\n")
        match = re.fullmatch(rb"VA 3 c(\d+) X W\r\nold\r\n", line)
        assert match, line
        stale_cas = int(match.group(1))
        assert stale_cas != cas_before  # md I bumps the CAS
        # The second fetcher still gets the stale data, told another client won.
        assert_exchange(second, b"mg st v c\r\n", b"VA 3 c%d Z X\r\nold\r\n" % stale_cas)
        assert_exchange(first, b"mg st v\r\n", b"VA 3 Z X\r\nold\r\n")
        # A normal set replaces the stale item: no more X/Z.
        store(second, b"st", b"new")
        assert_exchange(first, b"mg st v\r\n", b"VA 3\r\nnew\r\n")


def test_md_I_again_rearms_the_win(client):
    store(client, b"st", b"old")
    assert_exchange(client, b"md st I\r\n", b"HD\r\n")
    assert_exchange(client, b"mg st v\r\n", b"VA 3 X W\r\nold\r\n")
    assert_exchange(client, b"mg st v\r\n", b"VA 3 Z X\r\nold\r\n")
    assert_exchange(client, b"md st I\r\n", b"HD\r\n")
    assert_exchange(client, b"mg st v\r\n", b"VA 3 X W\r\nold\r\n")


def test_md_I_with_T_updates_ttl(client):
    store(client, b"st", b"old")
    assert_exchange(client, b"md st I T1000\r\n", b"HD\r\n")
    line = exchange(client, b"mg st t v\r\n")
    match = re.fullmatch(rb"VA 3 t(\d+) X W\r\nold\r\n", line)
    assert match and ttl_matches(match.group(1), 1000), line


def test_md_T_without_I_deletes(client):
    # T only matters with I; without I the item is simply deleted.
    store(client, b"item", b"x")
    assert_exchange(client, b"md item T30\r\n", b"HD\r\n")
    assert_exchange(client, b"mg item v\r\n", b"EN\r\n")


def test_md_I_on_miss_is_nf(client):
    assert_exchange(client, b"md nokey I\r\n", b"NF\r\n")
    assert_exchange(client, b"md nokey I q\r\n", b"NF\r\n")


def test_ms_I_with_lower_cas_stores_stale(client):
    store(client, b"s", b"a")
    store(client, b"s", b"a")  # CAS is now at least 2, so cas - 1 is not C0.
    cas = cas_of(client, b"s")
    # A higher (non-matching) CAS is still a mismatch.
    assert_exchange(client, b"ms s 1 I C%d\r\nb\r\n" % (cas + 100), b"EX\r\n")
    # A lower CAS with I is accepted but the new item is marked stale.
    assert_exchange(client, b"ms s 1 I C%d\r\nb\r\n" % (cas - 1), b"HD\r\n")
    line = exchange(client, b"mg s v c\r\n")
    match = re.fullmatch(rb"VA 1 c(\d+) X W\r\nb\r\n", line)
    assert match and int(match.group(1)) != cas, line


def test_ms_I_with_matching_cas_is_a_normal_cas_store(client):
    store(client, b"s", b"a")
    cas = cas_of(client, b"s")
    assert_exchange(client, b"ms s 1 I C%d\r\nb\r\n" % cas, b"HD\r\n")
    assert_exchange(client, b"mg s v\r\n", b"VA 1\r\nb\r\n")


def test_ms_I_without_C_is_ignored(client):
    store(client, b"s", b"a")
    assert_exchange(client, b"ms s 1 I\r\nb\r\n", b"HD\r\n")
    assert_exchange(client, b"mg s v\r\n", b"VA 1\r\nb\r\n")


def test_ms_I_replacing_a_stale_item_keeps_the_win_taken(client):
    # The token already handed out for the stale item carries over to the
    # replacement stored with I: it shows Z X, not a second W.
    store(client, b"s", b"a")
    assert_exchange(client, b"md s I\r\n", b"HD\r\n")
    assert_exchange(client, b"mg s v\r\n", b"VA 1 X W\r\na\r\n")
    # (cas_of() cannot be used here: the reply carries Z X after the CAS.)
    line = exchange(client, b"mg s c\r\n")
    stale_cas = int(re.fullmatch(rb"HD c(\d+) Z X\r\n", line).group(1))
    assert_exchange(client, b"ms s 1 I C%d\r\nb\r\n" % (stale_cas - 1), b"HD\r\n")
    assert_exchange(client, b"mg s v\r\n", b"VA 1 Z X\r\nb\r\n")


def test_ms_I_stale_store_keeps_the_old_ttl(client):
    # memcached's t/metaget.t "serve stale": a stale set (I, lower CAS)
    # replaces the value but keeps the item's TTL, whatever T it carries.
    store(client, b"s", b"moo")
    assert_exchange(client, b"md s I T30\r\n", b"HD\r\n")
    line = exchange(client, b"mg s c\r\n")
    stale_cas = int(re.fullmatch(rb"HD c(\d+) X W\r\n", line).group(1))
    assert_exchange(client, b"ms s 1 I T90 C%d\r\nf\r\n" % (stale_cas - 1), b"HD\r\n")
    line = exchange(client, b"mg s t v\r\n")
    match = re.fullmatch(rb"VA 1 t(\d+) Z X\r\nf\r\n", line)
    assert match and ttl_matches(match.group(1), 30), line


# ---------------------------------------------------------------- ms


def test_ms_default_is_set(client):
    assert_exchange(client, b"ms foo 3\r\nbar\r\n", b"HD\r\n")
    assert_exchange(client, b"ms foo 3\r\nbaz\r\n", b"HD\r\n")
    assert_exchange(client, b"mg foo v\r\n", b"VA 3\r\nbaz\r\n")


def test_ms_zero_length_value(client):
    assert_exchange(client, b"ms empty 0\r\n\r\n", b"HD\r\n")
    assert_exchange(client, b"mg empty v\r\n", b"VA 0\r\n\r\n")


def test_ms_value_may_contain_crlf(client):
    assert_exchange(client, b"ms crlf 4\r\na\r\nb\r\n", b"HD\r\n")
    assert_exchange(client, b"mg crlf v\r\n", b"VA 4\r\na\r\nb\r\n")


def test_ms_mode_E_is_add(client):
    assert_exchange(client, b"ms m 1 ME\r\na\r\n", b"HD\r\n")
    assert_exchange(client, b"ms m 1 ME\r\nb\r\n", b"NS\r\n")
    assert_exchange(client, b"mg m v\r\n", b"VA 1\r\na\r\n")


def test_ms_mode_A_and_P_append_prepend(client):
    store(client, b"m", b"a")
    assert_exchange(client, b"ms m 1 MA\r\nc\r\n", b"HD\r\n")
    assert_exchange(client, b"ms m 1 MP\r\nd\r\n", b"HD\r\n")
    assert_exchange(client, b"mg m v\r\n", b"VA 3\r\ndac\r\n")


def test_ms_append_keeps_flags_of_existing_item(client):
    store(client, b"m", b"x", b" F123")
    assert_exchange(client, b"ms m 1 MA F7\r\ny\r\n", b"HD\r\n")
    assert_exchange(client, b"mg m f v\r\n", b"VA 2 f123\r\nxy\r\n")


def test_ms_append_prepend_replace_on_miss_are_ns(client):
    assert_exchange(client, b"ms nx 1 MA\r\ne\r\n", b"NS\r\n")
    assert_exchange(client, b"ms nx 1 MP\r\ne\r\n", b"NS\r\n")
    assert_exchange(client, b"ms nx 1 MR\r\ne\r\n", b"NS\r\n")
    assert_exchange(client, b"mg nx v\r\n", b"EN\r\n")


def test_ms_mode_R_is_replace(client):
    store(client, b"m", b"a")
    assert_exchange(client, b"ms m 1 MR\r\ne\r\n", b"HD\r\n")
    assert_exchange(client, b"mg m v\r\n", b"VA 1\r\ne\r\n")


def test_ms_mode_S_is_set(client):
    assert_exchange(client, b"ms m 1 MS\r\nf\r\n", b"HD\r\n")
    assert_exchange(client, b"ms m 1 MS\r\ng\r\n", b"HD\r\n")
    assert_exchange(client, b"mg m v\r\n", b"VA 1\r\ng\r\n")


@pytest.mark.parametrize("mode", [b"Ma", b"Me", b"Mp", b"Mr", b"Ms", b"MX", b"M1"])
def test_ms_invalid_mode_swallows_data(client, mode):
    # memcached accepts upper-case modes only; lower case is an invalid mode.
    # The data block is swallowed (no ERROR for it).
    store(client, b"m", b"f")
    assert_exchange(
        client, b"ms m 1 " + mode + b"\r\ng\r\n", b"CLIENT_ERROR invalid mode for ms M token\r\n"
    )
    assert_exchange(client, b"mg m v\r\n", b"VA 1\r\nf\r\n")


@pytest.mark.parametrize("mode", [b"M", b"MSS"])
def test_ms_mode_token_of_wrong_length(client, mode):
    assert_exchange(
        client, b"ms m 1 " + mode + b"\r\ng\r\n", b"CLIENT_ERROR incorrect length for M token\r\n"
    )


def test_ms_F_sets_client_flags(client):
    assert_exchange(client, b"ms f 1 F123\r\nx\r\n", b"HD\r\n")
    assert_exchange(client, b"mg f f v\r\n", b"VA 1 f123\r\nx\r\n")
    assert_exchange(client, b"ms f 1 F4294967295\r\nx\r\n", b"HD\r\n")
    assert_exchange(client, b"mg f f\r\n", b"HD f4294967295\r\n")
    # Without F the flags are reset to 0.
    assert_exchange(client, b"ms f 1\r\nx\r\n", b"HD\r\n")
    assert_exchange(client, b"mg f f\r\n", b"HD f0\r\n")


def test_ms_F_above_32_bits_wraps(client):
    # Surprising: memcached 1.6.18 accepts F4294967296 and stores it truncated
    # to 32 bits (0) instead of rejecting it.
    assert_exchange(client, b"ms f 1 F4294967296\r\nx\r\n", b"HD\r\n")
    assert_exchange(client, b"mg f f\r\n", b"HD f0\r\n")


@pytest.mark.parametrize("token", [b"Fabc", b"F-1", b"F"])
def test_ms_bad_F_token(client, token):
    # Note the generic message (not "bad token in command line format").
    assert_exchange(
        client, b"ms f 1 " + token + b"\r\nx\r\n", b"CLIENT_ERROR bad command line format\r\n"
    )
    assert_exchange(client, b"mg f v\r\n", b"EN\r\n")


def test_ms_T_sets_ttl(client):
    assert_exchange(client, b"ms tt 1 T1000\r\nx\r\n", b"HD\r\n")
    line = exchange(client, b"mg tt t\r\n")
    match = re.fullmatch(rb"HD t(\d+)\r\n", line)
    assert match and ttl_matches(match.group(1), 1000), line
    assert_exchange(client, b"ms tt 1\r\nx\r\n", b"HD\r\n")
    assert_exchange(client, b"mg tt t\r\n", b"HD t-1\r\n")


def test_ms_T_negative_is_immediately_expired(client):
    assert_exchange(client, b"ms tt 1 T-1\r\nx\r\n", b"HD\r\n")
    assert_exchange(client, b"mg tt t\r\n", b"EN\r\n")


@pytest.mark.parametrize("token", [b"Tabc", b"T"])
def test_ms_bad_T_token(client, token):
    assert_exchange(
        client,
        b"ms tt 1 " + token + b"\r\nx\r\n",
        b"CLIENT_ERROR bad token in command line format\r\n",
    )


def test_ms_c_returns_new_cas(client):
    line = exchange(client, b"ms c 1 c\r\nx\r\n")
    match = re.fullmatch(rb"HD c(\d+)\r\n", line)
    assert match, line
    assert cas_of(client, b"c") == int(match.group(1))
    line = exchange(client, b"ms c 1 c\r\ny\r\n")
    second = int(re.fullmatch(rb"HD c(\d+)\r\n", line).group(1))
    assert second != int(match.group(1))


def test_ms_c_k_O_in_request_order(client):
    line = exchange(client, b"ms c 1 c O55 k\r\nx\r\n")
    assert re.fullmatch(rb"HD c\d+ O55 kc\r\n", line), line
    line = exchange(client, b"ms c 1 k O55 c\r\nx\r\n")
    assert re.fullmatch(rb"HD kc O55 c\d+\r\n", line), line


def test_ms_C_compare_and_swap(client):
    store(client, b"c", b"x")
    cas = cas_of(client, b"c")
    assert_exchange(client, b"ms c 1 C%d\r\ny\r\n" % (cas + 1000), b"EX\r\n")
    assert_exchange(client, b"mg c v\r\n", b"VA 1\r\nx\r\n")
    assert_exchange(client, b"ms c 1 C%d\r\ny\r\n" % cas, b"HD\r\n")
    assert_exchange(client, b"mg c v\r\n", b"VA 1\r\ny\r\n")
    # The old CAS no longer matches.
    assert_exchange(client, b"ms c 1 C%d\r\nz\r\n" % cas, b"EX\r\n")


def test_ms_C_on_missing_key_is_nf(client):
    assert_exchange(client, b"ms nf 1 C1\r\nx\r\n", b"NF\r\n")
    assert_exchange(client, b"mg nf v\r\n", b"EN\r\n")


def test_ms_c_on_failure_returns_zero(client):
    # protocol.txt: "Will return 0 on error" (clients must not depend on it).
    store(client, b"c", b"x")
    cas = cas_of(client, b"c")
    assert_exchange(client, b"ms c 1 C%d c\r\ny\r\n" % (cas + 1000), b"EX c0\r\n")
    assert_exchange(client, b"ms nf 1 C1 c\r\nx\r\n", b"NF c0\r\n")
    assert_exchange(client, b"ms c 1 ME c\r\ny\r\n", b"NS c0\r\n")


def test_ms_C_with_append_and_replace(client):
    store(client, b"c", b"x")
    cas = cas_of(client, b"c")
    assert_exchange(client, b"ms c 1 MA C%d\r\nz\r\n" % (cas + 1000), b"EX\r\n")
    assert_exchange(client, b"ms c 1 MA C%d\r\nz\r\n" % cas, b"HD\r\n")
    # Append changed the CAS.
    new_cas = cas_of(client, b"c")
    assert new_cas != cas
    assert_exchange(client, b"ms c 1 MR C%d\r\nr\r\n" % cas, b"EX\r\n")
    assert_exchange(client, b"ms c 1 MR C%d\r\nr\r\n" % new_cas, b"HD\r\n")
    assert_exchange(client, b"mg c v\r\n", b"VA 1\r\nr\r\n")


def test_ms_C_with_add_mode_is_ns_on_existing(client):
    store(client, b"c", b"x")
    cas = cas_of(client, b"c")
    assert_exchange(client, b"ms c 1 ME C%d\r\nz\r\n" % cas, b"NS\r\n")


def test_ms_q_suppresses_hd_only(client):
    store(client, b"c", b"x")
    assert_exchange(client, b"ms c 1 q\r\ny\r\n", b"")
    cas = cas_of(client, b"c")
    assert_exchange(client, b"ms c 1 q C%d\r\nz\r\n" % (cas + 1000), b"EX\r\n")
    assert_exchange(client, b"ms nf 1 q MR O5\r\ny\r\n", b"NS O5\r\n")
    assert_exchange(client, b"ms nf 1 q C1\r\ny\r\n", b"NF\r\n")
    # Errors are always returned.
    assert_exchange(client, b"ms c 1 q Mx\r\ny\r\n", b"CLIENT_ERROR invalid mode for ms M token\r\n")
    assert_exchange(client, b"mg c v\r\n", b"VA 1\r\ny\r\n")


def test_ms_O_and_k(client):
    assert_exchange(client, b"ms okey 1 O99 k\r\nx\r\n", b"HD O99 kokey\r\n")
    assert_exchange(client, b"ms okey 1 ME k O98\r\nx\r\n", b"NS kokey O98\r\n")


def test_ms_s_flag_is_accepted_but_returns_nothing(client):
    # memcached 1.6.18 parses s on ms without error and does not echo it.
    assert_exchange(client, b"ms foo 3 s\r\nbaz\r\n", b"HD\r\n")
    assert_exchange(client, b"mg foo v\r\n", b"VA 3\r\nbaz\r\n")


def test_ms_read_only_flags_are_accepted_and_ignored(client):
    # Flags meaningful for mg only (t, f, v, h, l, u) are accepted by ms.
    assert_exchange(client, b"ms foo 3 t f v h l u\r\nbaz\r\n", b"HD\r\n")


def test_ms_b_base64_key(client):
    assert_exchange(client, b"ms Zm9v 3 b k\r\nbar\r\n", b"HD kZm9v b\r\n")
    assert_exchange(client, b"mg foo v\r\n", b"VA 3\r\nbar\r\n")
    # Surprising: the item remembers it was stored with a binary key, so k
    # returns it base64-encoded (with b) even when the mg did not use b.
    assert_exchange(client, b"mg foo v k\r\n", b"VA 3 kZm9v b\r\nbar\r\n")
    # A plain text-key set replaces it and clears that memory.
    assert_exchange(client, b"ms foo 3\r\nbaz\r\n", b"HD\r\n")
    assert_exchange(client, b"mg foo v k\r\n", b"VA 3 kfoo\r\nbaz\r\n")


def test_ms_append_with_N_on_existing_item_just_appends(client):
    # memcached 1.6.18 parses N on ms but ignores it (an append to a miss is NS
    # there; newer versions autovivify, see test_meta_edge.py). On an existing
    # item N changes nothing: no TTL is set.
    store(client, b"nx", b"a")
    assert_exchange(client, b"ms nx 1 MA N30\r\nb\r\n", b"HD\r\n")
    assert_exchange(client, b"mg nx v t\r\n", b"VA 2 t-1\r\nab\r\n")


# ---------------------------------------------------------------- md


def test_md_hit_and_miss(client):
    assert_exchange(client, b"md d\r\n", b"NF\r\n")
    store(client, b"d", b"x")
    assert_exchange(client, b"md d\r\n", b"HD\r\n")
    assert_exchange(client, b"mg d v\r\n", b"EN\r\n")
    assert_exchange(client, b"md d\r\n", b"NF\r\n")


def test_md_O_and_k(client):
    assert_exchange(client, b"md d O1 k\r\n", b"NF O1 kd\r\n")
    store(client, b"d", b"x")
    assert_exchange(client, b"md d k O1\r\n", b"HD kd O1\r\n")


def test_md_q_suppresses_hd_only(client):
    # protocol.txt says q hides "DE"; the code hides HD (DE does not exist).
    assert_exchange(client, b"md d q\r\n", b"NF\r\n")
    assert_exchange(client, b"md d q O1 k\r\n", b"NF O1 kd\r\n")
    store(client, b"d", b"x")
    assert_exchange(client, b"md d q O1 k\r\n", b"")
    assert_exchange(client, b"mg d v\r\n", b"EN\r\n")


def test_md_C_compare(client):
    store(client, b"d", b"x")
    cas = cas_of(client, b"d")
    assert_exchange(client, b"md d C%d\r\n" % (cas + 1000), b"EX\r\n")
    assert_exchange(client, b"md d C%d q\r\n" % (cas + 1000), b"EX\r\n")
    assert_exchange(client, b"mg d v\r\n", b"VA 1\r\nx\r\n")
    assert_exchange(client, b"md d C%d q\r\n" % cas, b"")
    assert_exchange(client, b"mg d v\r\n", b"EN\r\n")
    assert_exchange(client, b"md d C%d\r\n" % cas, b"NF\r\n")


def test_md_I_with_q_is_silent(client):
    store(client, b"d", b"x")
    assert_exchange(client, b"md d I q\r\n", b"")
    assert_exchange(client, b"mg d v\r\n", b"VA 1 X W\r\nx\r\n")


def test_md_I_with_C(client):
    store(client, b"d", b"x")
    cas = cas_of(client, b"d")
    assert_exchange(client, b"md d I C%d\r\n" % (cas + 1000), b"EX\r\n")
    assert_exchange(client, b"mg d v\r\n", b"VA 1\r\nx\r\n")
    assert_exchange(client, b"md d I C%d\r\n" % cas, b"HD\r\n")
    assert_exchange(client, b"mg d v\r\n", b"VA 1 X W\r\nx\r\n")


def test_md_b_base64_key(client):
    store(client, b"foo", b"x")
    assert_exchange(client, b"md Zm9v b k\r\n", b"HD kZm9v b\r\n")
    assert_exchange(client, b"mg foo v\r\n", b"EN\r\n")


def test_md_accepts_and_ignores_return_flags(client):
    # md parses v, c, t, s, f without error and returns nothing for them.
    assert_exchange(client, b"md d v c t s f\r\n", b"NF\r\n")


# ---------------------------------------------------------------- ma


def test_ma_miss_is_nf(client):
    assert_exchange(client, b"ma n\r\n", b"NF\r\n")
    assert_exchange(client, b"ma n q\r\n", b"NF\r\n")
    assert_exchange(client, b"ma n O1 k v\r\n", b"NF O1 kn\r\n")


def test_ma_default_increments_by_one(client):
    store(client, b"n", b"5")
    assert_exchange(client, b"ma n\r\n", b"HD\r\n")
    assert_exchange(client, b"mg n v\r\n", b"VA 1\r\n6\r\n")
    assert_exchange(client, b"ma n v\r\n", b"VA 1\r\n7\r\n")


def test_ma_D_delta(client):
    store(client, b"n", b"1")
    assert_exchange(client, b"ma n D10 v\r\n", b"VA 2\r\n11\r\n")
    assert_exchange(client, b"ma n v D100\r\n", b"VA 3\r\n111\r\n")


def test_ma_modes(client):
    store(client, b"n", b"10")
    assert_exchange(client, b"ma n MD D3 v\r\n", b"VA 1\r\n7\r\n")
    assert_exchange(client, b"ma n M- v\r\n", b"VA 1\r\n6\r\n")
    assert_exchange(client, b"ma n M+ v\r\n", b"VA 1\r\n7\r\n")
    assert_exchange(client, b"ma n MI v\r\n", b"VA 1\r\n8\r\n")


@pytest.mark.parametrize("mode", [b"Mi", b"Md", b"MX", b"M*"])
def test_ma_invalid_mode(client, mode):
    # Lower-case modes are invalid for ma too.
    store(client, b"n", b"10")
    assert_exchange(client, b"ma n " + mode + b" v\r\n", b"CLIENT_ERROR invalid mode for ma M token\r\n")
    assert_exchange(client, b"mg n v\r\n", b"VA 2\r\n10\r\n")


def test_ma_decr_floors_at_zero(client):
    store(client, b"n", b"9")
    assert_exchange(client, b"ma n MD D100 v\r\n", b"VA 1\r\n0\r\n")
    assert_exchange(client, b"ma n MD v\r\n", b"VA 1\r\n0\r\n")


def test_ma_incr_wraps_at_2_64(client):
    store(client, b"big", b"18446744073709551615")
    assert_exchange(client, b"ma big v\r\n", b"VA 1\r\n0\r\n")
    assert_exchange(client, b"ma big v D18446744073709551615\r\n", b"VA 20\r\n18446744073709551615\r\n")
    assert_exchange(client, b"ma big v D2\r\n", b"VA 1\r\n1\r\n")


def test_ma_shrinking_value_is_space_padded_in_place(client):
    # memcached rewrites a shrinking number in place and pads it with spaces
    # (protocol.txt: "MAY be space-padded"); the ma reply itself is unpadded.
    store(client, b"w", b"100")
    assert_exchange(client, b"ma w MD v\r\n", b"VA 2\r\n99\r\n")
    assert_exchange(client, b"mg w v\r\n", b"VA 3\r\n99 \r\n")
    # Incrementing a padded number works; it grows back without padding.
    assert_exchange(client, b"ma w v D5\r\n", b"VA 3\r\n104\r\n")
    assert_exchange(client, b"mg w v\r\n", b"VA 3\r\n104\r\n")


def test_ma_N_autocreates_with_J_initial(client):
    assert_exchange(client, b"ma m N0 J41 v\r\n", b"VA 2\r\n41\r\n")
    # Once it exists, J is ignored and the delta applies.
    assert_exchange(client, b"ma m N0 J41 v\r\n", b"VA 2\r\n42\r\n")
    assert_exchange(client, b"mg m v\r\n", b"VA 2\r\n42\r\n")


def test_ma_N_without_J_starts_at_zero(client):
    # The created item holds the initial value; the delta is not applied to it.
    assert_exchange(client, b"ma n N0 v\r\n", b"VA 1\r\n0\r\n")
    assert_exchange(client, b"ma n N0 v\r\n", b"VA 1\r\n1\r\n")


def test_ma_N_decr_mode_creates_with_initial(client):
    assert_exchange(client, b"ma n N0 J10 MD v\r\n", b"VA 2\r\n10\r\n")
    assert_exchange(client, b"ma n N0 J10 MD v\r\n", b"VA 1\r\n9\r\n")


def test_ma_J_without_N_is_ignored(client):
    assert_exchange(client, b"ma j2 J5 v\r\n", b"NF\r\n")


def test_ma_N_sets_ttl_of_created_item(client):
    line = exchange(client, b"ma j N1000 J5 v t\r\n")
    match = re.fullmatch(rb"VA 1 t(\d+)\r\n5\r\n", line)
    assert match and ttl_matches(match.group(1), 1000), line


def test_ma_t_without_ttl_is_minus_one(client):
    store(client, b"j", b"1")
    assert_exchange(client, b"ma j t v\r\n", b"VA 1 t-1\r\n2\r\n")


def test_ma_T_updates_ttl_in_flag_order(client):
    store(client, b"j", b"1")
    line = exchange(client, b"ma j T1000 t\r\n")
    match = re.fullmatch(rb"HD t(\d+)\r\n", line)
    assert match and ttl_matches(match.group(1), 1000), line
    # t before T reports the TTL before this command changes it.
    line = exchange(client, b"ma j t v T0\r\n")
    match = re.fullmatch(rb"VA 1 t(\d+)\r\n3\r\n", line)
    assert match and ttl_matches(match.group(1), 1000), line
    assert_exchange(client, b"ma j t v\r\n", b"VA 1 t-1\r\n4\r\n")


def test_ma_c_returns_new_cas(client):
    store(client, b"c", b"10")
    before = cas_of(client, b"c")
    line = exchange(client, b"ma c c v\r\n")
    match = re.fullmatch(rb"VA 2 c(\d+)\r\n11\r\n", line)
    assert match, line
    after = int(match.group(1))
    assert after != before
    assert cas_of(client, b"c") == after


def test_ma_C_compare(client):
    store(client, b"c", b"10")
    cas = cas_of(client, b"c")
    assert_exchange(client, b"ma c C%d v\r\n" % (cas + 1000), b"EX\r\n")
    assert_exchange(client, b"ma c C%d v O1 k\r\n" % (cas + 1000), b"EX O1 kc\r\n")
    assert_exchange(client, b"ma c C%d v\r\n" % cas, b"VA 2\r\n11\r\n")
    assert_exchange(client, b"ma nf C1 v\r\n", b"NF\r\n")


def test_ma_q_suppresses_hd_and_va(client):
    # Surprising: with q a successful ma is silent even when v asked for the value.
    store(client, b"n", b"1")
    assert_exchange(client, b"ma n q\r\n", b"")
    assert_exchange(client, b"ma n q v\r\n", b"")
    assert_exchange(client, b"mg n v\r\n", b"VA 1\r\n3\r\n")
    assert_exchange(client, b"ma nf q\r\n", b"NF\r\n")
    cas = cas_of(client, b"n")
    assert_exchange(client, b"ma n q C%d\r\n" % (cas + 1000), b"EX\r\n")


def test_ma_non_numeric_value(client):
    store(client, b"txt", b"abc")
    error = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    assert_exchange(client, b"ma txt v\r\n", error)
    assert_exchange(client, b"ma txt N0 v\r\n", error)
    assert_exchange(client, b"ma txt q\r\n", error)
    store(client, b"trailing", b"12a")
    assert_exchange(client, b"ma trailing v\r\n", error)
    store(client, b"empty", b"")
    assert_exchange(client, b"ma empty v\r\n", error)


def test_ma_leading_space_is_accepted(client):
    # memcached parses the stored number with strtoull, which skips leading spaces.
    store(client, b"sp", b" 1")
    assert_exchange(client, b"ma sp v\r\n", b"VA 1\r\n2\r\n")


@pytest.mark.parametrize(
    "token", [b"D18446744073709551616", b"Dabc", b"D-1", b"D", b"Jabc N0", b"J-1 N0"]
)
def test_ma_invalid_delta_or_initial(client, token):
    # protocol.txt-era code has "invalid numeric delta/initial value" messages,
    # but 1.6.18's ma replaces every flag-parsing error with this one.
    store(client, b"n", b"1")
    assert_exchange(client, b"ma n " + token + b" v\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n")
    assert_exchange(client, b"mg n v\r\n", b"VA 1\r\n1\r\n")


def test_ma_b_base64_key(client):
    store(client, b"foo", b"1")
    assert_exchange(client, b"ma Zm9v b v k\r\n", b"VA 1 kZm9v b\r\n2\r\n")


# ---------------------------------------------------------------- me


ME_LINE = rb"ME %s exp=(-?\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) size=(\d+)\r\n"


def test_me_hit_and_miss(client):
    assert_exchange(client, b"me nokey\r\n", b"EN\r\n")
    store(client, b"foo", b"bar")
    cas = cas_of(client, b"foo")  # mg c is a fetch, so fetch=yes below.
    line = exchange(client, b"me foo\r\n")
    match = re.fullmatch(ME_LINE % b"foo", line)
    assert match, line
    assert match.group(1) == b"-1"
    assert int(match.group(3)) == cas
    assert match.group(4) == b"yes"


def test_me_fetch_no_before_first_fetch(client):
    store(client, b"foo", b"bar")
    line = exchange(client, b"me foo\r\n")
    match = re.fullmatch(ME_LINE % b"foo", line)
    assert match and match.group(4) == b"no", line
    # me itself does not count as a fetch.
    line = exchange(client, b"me foo\r\n")
    assert re.fullmatch(ME_LINE % b"foo", line).group(4) == b"no", line


def test_me_exp_with_ttl(client):
    # memcached 1.6.18 prints exp as (now - exptime), so a 1000 s TTL reads
    # as exp=-1000 (or -999); memkeep prints the seconds remaining, as
    # protocol.txt describes (a deliberate difference, docs/PROTOCOL.md).
    store(client, b"e", b"abc", b" T1000")
    line = exchange(client, b"me e\r\n")
    match = re.fullmatch(ME_LINE % b"e", line)
    assert match, line
    if TARGET == "memcached":
        assert ttl_matches(match.group(1)[1:], 1000) and match.group(1).startswith(b"-"), line
    else:
        assert ttl_matches(match.group(1), 1000), line


def test_me_b_base64_key(client):
    assert_exchange(client, b"ms YmluAGtleQ== 1 b\r\nx\r\n", b"HD\r\n")
    line = exchange(client, b"me YmluAGtleQ== b\r\n")
    assert re.fullmatch(ME_LINE % rb"YmluAGtleQ==", line), line
    assert_exchange(client, b"me Zm9v b\r\n", b"EN\r\n")


def test_me_ignores_other_flags(client):
    store(client, b"foo", b"bar")
    for request in (b"me foo v\r\n", b"me foo q\r\n", b"me foo zz\r\n"):
        line = exchange(client, request)
        assert re.fullmatch(ME_LINE % b"foo", line), (request, line)


# ---------------------------------------------------------------- pipelines


def test_quiet_pipeline_returns_only_interesting_replies(client):
    store(client, b"a", b"1")
    store(client, b"n", b"5")
    client.assert_reply(
        b"ms s 1 q\r\nx\r\n"          # stored: silent
        b"ms r 1 q MR\r\ny\r\n"       # replace on miss: NS
        b"mg a v q\r\n"               # hit: returned
        b"mg nx v q O1\r\n"           # miss: silent
        b"md nx q\r\n"                # delete miss: NF
        b"md a q\r\n"                 # delete hit: silent
        b"ma nx q\r\n"                # incr miss: NF
        b"ma n q\r\n"                 # incr hit: silent
        b"mg s v q k\r\n"             # hit stored by the first command
        b"mn\r\n",
        b"NS\r\nVA 1\r\n1\r\nNF\r\nNF\r\nVA 1 ks\r\nx\r\nMN\r\n",
    )
    assert_exchange(client, b"mg a v\r\n", b"EN\r\n")
    assert_exchange(client, b"mg n v\r\n", b"VA 1\r\n6\r\n")


def test_meta_and_text_commands_mix(client):
    client.assert_reply(b"set t 0 0 1\r\nx\r\n", b"STORED\r\n")
    assert_exchange(client, b"mg t v f\r\n", b"VA 1 f0\r\nx\r\n")
    assert_exchange(client, b"ms t 1 F9\r\ny\r\n", b"HD\r\n")
    client.assert_reply(b"get t\r\n", b"VALUE t 9 1\r\ny\r\nEND\r\n")


def test_C0_compares_nothing_for_ma_and_append_but_fails_a_set_or_delete(client):
    # memcached 1.6.18: a CAS of 0 means "no compare" in do_add_delta and
    # for append/prepend in do_store_item, but a set or delete with C0
    # compares (and fails against any real CAS).
    store(client, b"n", b"5")
    assert_exchange(client, b"ma n C0 v\r\n", b"VA 1\r\n6\r\n")
    store(client, b"x", b"a")
    assert_exchange(client, b"ma x C0\r\n", b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    assert_exchange(client, b"ms x 1 C0\r\nb\r\n", b"EX\r\n")
    assert_exchange(client, b"md x C0\r\n", b"EX\r\n")
    assert_exchange(client, b"ms x 1 C0 MA\r\nc\r\n", b"HD\r\n")
    assert_exchange(client, b"mg x v\r\n", b"VA 2\r\nac\r\n")


@pytest.mark.parametrize("line, error", [
    (b"mg foo \xff\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
    (b"mg foo \x7f\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
    (b"mg foo Tabc v v\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
    (b"mg foo Fx\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"mg foo Fx Tq\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
    (b"mg foo O" + b"o" * 40 + b" v v\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
    (b"mg foo O" + b"o" * 40 + b" Tx\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
    (b"ms foo 20 O7 Cabc c C99\r\n" + b"9" * 20 + b"\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
])
def test_flag_errors_follow_memcacheds_scan(client, line, error):
    # memcached 1.6.18 keeps scanning after a bad argument (the last message
    # wins) and stops at a repeated flag; found by the differential test
    # (seed 3, #578).
    # (exchange's own `mn` shows an ms data block was swallowed, not run.)
    assert_exchange(client, line, error)


def test_a_classic_get_does_not_take_the_recache_win(client):
    # memcached 1.6.18: only mg hands out W/Z; found by the differential
    # test (seed 1, #1195: md I, get, then mg gave Z X instead of X W).
    store(client, b"s", b"a")
    assert_exchange(client, b"md s I\r\n", b"HD\r\n")
    assert_exchange(client, b"get s\r\n", b"VALUE s 0 1\r\na\r\nEND\r\n")
    assert_exchange(client, b"gets s\r\n", exchange(client, b"gets s\r\n"))
    assert_exchange(client, b"mg s v\r\n", b"VA 1 X W\r\na\r\n")
    assert_exchange(client, b"mg s v\r\n", b"VA 1 Z X\r\na\r\n")


def test_ms_I_with_C0_is_a_cas_mismatch(client):
    # A compare value of 0 is "no CAS" before the stale check (seed 2, #1205).
    store(client, b"s", b"a")
    assert_exchange(client, b"ms s 1 C0 I\r\nb\r\n", b"EX\r\n")
    assert_exchange(client, b"mg s v\r\n", b"VA 1\r\na\r\n")


def test_ma_q_hides_an_increment_but_not_a_creation_or_a_miss(client):
    # memcached 1.6.18 skips only the reply of an increment (seed 3, #639).
    assert_exchange(client, b"ma n q\r\n", b"NF\r\n")
    assert_exchange(client, b"ma n q N0\r\n", b"HD\r\n")
    assert_exchange(client, b"ma n q\r\n", b"")
    assert_exchange(client, b"mg n v\r\n", b"VA 1\r\n1\r\n")


def test_mg_miss_with_T_counts_as_a_get_miss(client):
    # memcached 1.6.18 counts an mg miss as a get whatever its flags (a hit
    # with T counts as a touch).
    before = client.stats()
    assert_exchange(client, b"mg nokey T30 v\r\n", b"EN\r\n")
    after = client.stats()
    for name, grew in [("cmd_get", 1), ("get_misses", 1), ("cmd_touch", 0), ("touch_misses", 0)]:
        assert int(after[name]) - int(before[name]) == grew, name
