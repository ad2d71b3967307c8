"""Meta protocol edge cases: malformed requests, limits and error replies.

Covers duplicate/unknown flags, too many flag tokens, opaque length, bad
numeric tokens, bad base64 keys, key length, missing key/datalen, unknown meta
commands, `ms` data-chunk errors and item-size limits.

Every expected reply here was checked against memcached 1.6.18
(MEMKEEP_TEST_TARGET=memcached), except the tests marked memkeep_only at the
end: those cover flags that memcached 1.6.18 does not have yet (it answers
`CLIENT_ERROR invalid flag`) but newer memcached documents.

Note the error texts are not uniform across commands in memcached: md and ma
report every flag-parsing problem as `CLIENT_ERROR invalid or duplicate flag`,
while mg and ms give the specific reason. That is memcached's behaviour and is
asserted as such.
"""

import re

import pytest

from conftest import TARGET
from meta_replies import assert_exchange, exchange, store


BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_TOKEN = b"CLIENT_ERROR bad token in command line format\r\n"
INVALID_OR_DUPLICATE = b"CLIENT_ERROR invalid or duplicate flag\r\n"


# ---------------------------------------------------------------- unknown commands


@pytest.mark.parametrize("request_line", [b"mz foo\r\n", b"MG foo v\r\n", b"m foo\r\n", b"mgg foo\r\n"])
def test_unknown_meta_command_is_error(client, request_line):
    assert_exchange(client, request_line, b"ERROR\r\n")


def test_mn_ignores_arguments(client):
    client.assert_reply(b"mn extra tokens\r\nmn\r\n", b"MN\r\nMN\r\n")


def test_extra_spaces_between_tokens_are_ignored(client):
    store(client, b"k", b"x")
    assert_exchange(client, b"mg  k  v \r\n", b"VA 1\r\nx\r\n")


# ---------------------------------------------------------------- missing key


@pytest.mark.parametrize("command", [b"mg", b"md", b"ma"])
def test_meta_command_without_key_is_error(client, command):
    # Surprising: no key is a plain ERROR (as for an unknown command)...
    assert_exchange(client, command + b"\r\n", b"ERROR\r\n")
    assert_exchange(client, command + b" \r\n", b"ERROR\r\n")


def test_me_without_key_is_client_error(client):
    # ...but me without a key is a CLIENT_ERROR.
    assert_exchange(client, b"me\r\n", BAD_FORMAT)


def test_ms_without_key_or_datalen(client):
    assert_exchange(client, b"ms\r\n", b"ERROR\r\n")
    assert_exchange(client, b"ms k\r\n", BAD_FORMAT)


# ---------------------------------------------------------------- key length


def test_key_of_250_bytes_is_accepted(client):
    key = b"a" * 250
    assert_exchange(client, b"ms " + key + b" 1\r\nx\r\n", b"HD\r\n")
    assert_exchange(client, b"mg " + key + b" v\r\n", b"VA 1\r\nx\r\n")
    non_numeric = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    assert_exchange(client, b"ma " + key + b" q\r\n", non_numeric)
    assert re.fullmatch(rb"ME a{250} exp=-1 .*\r\n", exchange(client, b"me " + key + b"\r\n"))
    assert_exchange(client, b"md " + key + b"\r\n", b"HD\r\n")


@pytest.mark.parametrize("command", [b"mg", b"md", b"ma", b"me"])
def test_key_over_250_bytes_is_rejected(client, command):
    assert_exchange(client, command + b" " + b"a" * 251 + b" v\r\n", BAD_FORMAT)


def test_ms_key_over_250_bytes_does_not_swallow_data(client):
    # The error comes before datalen is read, so the data line is then parsed
    # as a command of its own and answered with ERROR.
    assert_exchange(client, b"ms " + b"a" * 251 + b" 1\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n")


# ---------------------------------------------------------------- ms datalen and data chunk


def test_ms_non_numeric_datalen(client):
    # Not swallowed either: "xyz" becomes an unknown command.
    assert_exchange(client, b"ms k abc\r\nxyz\r\n", BAD_FORMAT + b"ERROR\r\n")


def test_ms_negative_datalen(client):
    assert_exchange(client, b"ms k -1\r\n", BAD_FORMAT)


def test_ms_data_longer_than_datalen(client):
    # memcached consumes exactly datalen+2 bytes ("abcd\r"), rejects them, and
    # parses the leftover "\n" as an empty command line: ERROR.
    assert_exchange(client, b"ms k 3\r\nabcd\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    assert_exchange(client, b"mg k v\r\n", b"EN\r\n")


def test_ms_data_shorter_than_datalen(client):
    # Consumes "ab\r\n\r" as the 5 bytes, then the leftover "\n": ERROR.
    assert_exchange(client, b"ms k 3\r\nab\r\n\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")


def test_ms_data_without_crlf_terminator(client):
    assert_exchange(client, b"ms k 3\r\nabcXY", b"CLIENT_ERROR bad data chunk\r\n")
    assert_exchange(client, b"mg k v\r\n", b"EN\r\n")


def test_ms_bad_data_chunk_keeps_old_value(client):
    store(client, b"k", b"old")
    assert_exchange(client, b"ms k 3\r\nabcXY", b"CLIENT_ERROR bad data chunk\r\n")
    assert_exchange(client, b"mg k v\r\n", b"VA 3\r\nold\r\n")


def test_ms_bad_data_chunk_ignores_q(client):
    assert_exchange(client, b"ms k 3 q\r\nabcXY", b"CLIENT_ERROR bad data chunk\r\n")


def test_ms_bad_data_chunk_has_no_return_flags(client):
    assert_exchange(client, b"ms k 3 O1 k c\r\nabcXY", b"CLIENT_ERROR bad data chunk\r\n")


def test_ms_too_large_for_item_size_limit(server_factory):
    server = server_factory(["-I", "512k"])
    with server.connect() as client:
        store(client, b"k", b"hello")
        big = 600000
        # The error comes after the data block has been swallowed.
        assert_exchange(
            client,
            b"ms k %d T0 O7\r\n" % big + b"z" * big + b"\r\n",
            b"SERVER_ERROR object too large for cache\r\n",
        )
        # A failed set also removes the old value (no stale data is served).
        assert_exchange(client, b"mg k v\r\n", b"EN\r\n")
        # q does not hide the error.
        assert_exchange(
            client,
            b"ms k %d q\r\n" % big + b"z" * big + b"\r\n",
            b"SERVER_ERROR object too large for cache\r\n",
        )
        # Well under the limit is fine.
        assert_exchange(client, b"ms k 1000\r\n" + b"y" * 1000 + b"\r\n", b"HD\r\n")
        assert_exchange(client, b"mg k s\r\n", b"HD s1000\r\n")
    server.stop()


# ---------------------------------------------------------------- invalid / duplicate flags


def test_mg_duplicate_flag(client):
    store(client, b"k", b"x")
    assert_exchange(client, b"mg k v v\r\n", b"CLIENT_ERROR duplicate flag\r\n")
    assert_exchange(client, b"mg k v c v\r\n", b"CLIENT_ERROR duplicate flag\r\n")
    assert_exchange(client, b"mg k q q\r\n", b"CLIENT_ERROR duplicate flag\r\n")
    # Duplicates are detected by first letter, so two different opaques clash.
    assert_exchange(client, b"mg k O1 O2\r\n", b"CLIENT_ERROR duplicate flag\r\n")


def test_ms_duplicate_flag_swallows_data(client):
    assert_exchange(client, b"ms k 1 q q\r\nx\r\n", b"CLIENT_ERROR duplicate flag\r\n")
    assert_exchange(client, b"mg k v\r\n", b"EN\r\n")


@pytest.mark.parametrize("command", [b"md", b"ma"])
def test_md_ma_duplicate_flag(client, command):
    assert_exchange(client, command + b" k q q\r\n", INVALID_OR_DUPLICATE)


# E (explicit CAS) is newer than memcached 1.6.18, which rejects it; memkeep
# accepts it (docs/PROTOCOL.md), so it is only invalid for the reference.
INVALID_MG_FLAGS = [b"zz", b"!", b"x", b"Z", b"W", b"X"] + ([b"E5"] if TARGET == "memcached" else [])


@pytest.mark.parametrize("flag", INVALID_MG_FLAGS)
def test_mg_invalid_flag(client, flag):
    store(client, b"k", b"x")
    assert_exchange(client, b"mg k " + flag + b"\r\n", b"CLIENT_ERROR invalid flag\r\n")


def test_ms_invalid_flag_swallows_data(client):
    assert_exchange(client, b"ms k 1 zz\r\nx\r\n", b"CLIENT_ERROR invalid flag\r\n")
    assert_exchange(client, b"mg k v\r\n", b"EN\r\n")


@pytest.mark.parametrize("command", [b"md", b"ma"])
def test_md_ma_invalid_flag(client, command):
    assert_exchange(client, command + b" k zz\r\n", INVALID_OR_DUPLICATE)


def test_flags_parsed_by_all_commands_are_not_invalid_on_mg(client):
    # memcached shares one flag parser: ms/ma-only flags (F, J, D, I, M) are
    # accepted by mg and have no effect there.
    store(client, b"k", b"x")
    assert_exchange(client, b"mg k F1 J1 D1 I MZ\r\n", b"HD\r\n")


# ---------------------------------------------------------------- too many flag tokens


MG_FLAGS_17 = b"c f h k l Oa s t u v T30 P L C1 F1 J1 D1"


def test_mg_accepts_17_flag_tokens(client):
    store(client, b"k", b"x")
    line = exchange(client, b"mg k " + MG_FLAGS_17 + b"\r\n")
    assert re.fullmatch(rb"VA 1 c\d+ f0 h0 kk l\d+ Oa s1 t-1\r\nx\r\n", line), line


def test_mg_rejects_18_flag_tokens(client):
    store(client, b"k", b"x")
    assert_exchange(
        client, b"mg k " + MG_FLAGS_17 + b" I\r\n", b"CLIENT_ERROR options flags are too long\r\n"
    )


def test_ms_accepts_16_flag_tokens(client):
    line = exchange(client, b"ms k 1 c k Oa T30 P L F1 MS u v t h l f s I\r\nx\r\n")
    assert re.fullmatch(rb"HD c\d+ kk Oa\r\n", line), line


def test_ms_rejects_17_flag_tokens_without_swallowing_data(client):
    # The datalen token counts towards the limit. Note the message differs from
    # mg's ("too long", not "are too long"), and the data line is not swallowed.
    assert_exchange(
        client,
        b"ms k 1 c k Oa T30 P L C1 F1 I MS u v t h l f s\r\nx\r\n",
        b"CLIENT_ERROR options flags too long\r\nERROR\r\n",
    )


@pytest.mark.parametrize("command", [b"md", b"ma"])
def test_md_ma_flag_token_limit(client, command):
    assert_exchange(client, command + b" k c k Oa T30 P L F1 u v t h l f s C1 J1 D1\r\n",
                    b"NF kk Oa\r\n")
    assert_exchange(client, command + b" k c k Oa T30 P L F1 u v t h l f s C1 J1 D1 I\r\n",
                    b"CLIENT_ERROR options flags too long\r\n")


# ---------------------------------------------------------------- opaque length


OPAQUE_31 = b"O" + b"1234567890123456789012345678901"
OPAQUE_32 = b"O" + b"12345678901234567890123456789012"


def test_opaque_of_31_bytes_is_echoed(client):
    # protocol.txt says opaques may be up to 32 bytes, but memcached counts the
    # O letter too: 31 bytes after the O is the real maximum.
    store(client, b"k", b"x")
    assert_exchange(client, b"mg k " + OPAQUE_31 + b"\r\n", b"HD " + OPAQUE_31 + b"\r\n")
    assert_exchange(client, b"mg nokey " + OPAQUE_31 + b"\r\n", b"EN " + OPAQUE_31 + b"\r\n")
    assert_exchange(client, b"md nokey " + OPAQUE_31 + b"\r\n", b"NF " + OPAQUE_31 + b"\r\n")


def test_opaque_of_32_bytes_is_too_long(client):
    too_long = b"CLIENT_ERROR opaque token too long\r\n"
    store(client, b"k", b"x")
    assert_exchange(client, b"mg k " + OPAQUE_32 + b"\r\n", too_long)
    assert_exchange(client, b"mg nokey " + OPAQUE_32 + b"\r\n", too_long)
    # The error is not hidden by q.
    assert_exchange(client, b"mg nokey q " + OPAQUE_32 + b"\r\n", too_long)
    assert_exchange(client, b"md nokey " + OPAQUE_32 + b"\r\n", too_long)
    assert_exchange(client, b"ma nokey " + OPAQUE_32 + b"\r\n", too_long)


def test_ms_opaque_too_long_swallows_data(client):
    assert_exchange(client, b"ms k 1 " + OPAQUE_32 + b"\r\nx\r\n", b"CLIENT_ERROR opaque token too long\r\n")
    assert_exchange(client, b"mg k v\r\n", b"EN\r\n")


# ---------------------------------------------------------------- bad numeric tokens


@pytest.mark.parametrize("token", [b"Tabc", b"Nabc", b"Rabc", b"T", b"T1.5", b"Ca", b"C"])
def test_mg_bad_numeric_token(client, token):
    store(client, b"k", b"x")
    assert_exchange(client, b"mg k " + token + b"\r\n", BAD_TOKEN)


@pytest.mark.parametrize("token", [b"Ca", b"Tx", b"N"])
def test_ms_bad_numeric_token_swallows_data(client, token):
    assert_exchange(client, b"ms k 1 " + token + b"\r\nx\r\n", BAD_TOKEN)
    assert_exchange(client, b"mg k v\r\n", b"EN\r\n")


@pytest.mark.parametrize("command", [b"md", b"ma"])
@pytest.mark.parametrize("token", [b"Ca", b"Tx"])
def test_md_ma_bad_numeric_token(client, command, token):
    assert_exchange(client, command + b" k " + token + b"\r\n", INVALID_OR_DUPLICATE)


# ---------------------------------------------------------------- base64 keys


def test_ms_bad_base64_swallows_data(client):
    assert_exchange(client, b"ms !!!! 1 b\r\nx\r\n", b"CLIENT_ERROR error decoding key\r\n")


@pytest.mark.parametrize("command", [b"md", b"ma"])
def test_md_ma_bad_base64(client, command):
    assert_exchange(client, command + b" !!!! b\r\n", INVALID_OR_DUPLICATE)


def test_me_bad_base64(client):
    assert_exchange(client, b"me !!!! b\r\n", BAD_FORMAT)


# ---------------------------------------------------------------- flags newer than 1.6.18
# memcached 1.6.18 rejects these with "CLIENT_ERROR invalid flag" (mg/ms) or
# "CLIENT_ERROR invalid or duplicate flag" (md/ma). Newer memcached documents
# them; memkeep is expected to support them. Replies follow that documentation.


@pytest.mark.memkeep_only
def test_ms_E_sets_explicit_cas(client):
    assert_exchange(client, b"ms k 1 E12345\r\nx\r\n", b"HD\r\n")
    assert_exchange(client, b"mg k c\r\n", b"HD c12345\r\n")
    assert_exchange(client, b"ms k 1 E500 c\r\ny\r\n", b"HD c500\r\n")
    assert_exchange(client, b"ms k 1 C500 E600 c\r\nz\r\n", b"HD c600\r\n")


@pytest.mark.memkeep_only
def test_md_I_E_sets_explicit_cas_on_stale_item(client):
    store(client, b"k", b"x")
    assert_exchange(client, b"md k I E700\r\n", b"HD\r\n")
    assert_exchange(client, b"mg k c v\r\n", b"VA 1 c700 X W\r\nx\r\n")


@pytest.mark.memkeep_only
def test_ma_E_sets_explicit_cas(client):
    store(client, b"n", b"1")
    assert_exchange(client, b"ma n E800 c v\r\n", b"VA 1 c800\r\n2\r\n")


@pytest.mark.memkeep_only
def test_md_x_empties_value_and_keeps_item(client):
    store(client, b"k", b"hello")
    assert_exchange(client, b"md k x\r\n", b"HD\r\n")
    assert_exchange(client, b"mg k v\r\n", b"VA 0\r\n\r\n")


@pytest.mark.memkeep_only
def test_ms_append_with_N_autovivifies_on_miss(client):
    assert_exchange(client, b"ms nx 1 MA N30\r\na\r\n", b"HD\r\n")
    assert_exchange(client, b"mg nx v\r\n", b"VA 1\r\na\r\n")
    assert_exchange(client, b"ms nx 1 MA N30\r\nb\r\n", b"HD\r\n")
    assert_exchange(client, b"mg nx v\r\n", b"VA 2\r\nab\r\n")
