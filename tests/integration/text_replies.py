"""Reply helpers shared by the text-protocol tests (test_text_*.py)."""

import socket

import pytest


def expect(c, request, expected, timeout=5.0):
    """Send request and assert that the next len(expected) bytes are expected."""
    c.send(request)
    c.sock.settimeout(timeout)
    try:
        got = c.read_exact(len(expected))
    except (socket.timeout, TimeoutError):
        pytest.fail(f"{request[:200]!r}: expected {expected!r}, got only {c.buf!r} before timeout")
    assert got == expected, f"{request[:200]!r}: expected {expected!r}, got {got!r}"


def value(key, data, flags=0):
    """One VALUE block of a retrieval reply."""
    return b"VALUE %s %d %d\r\n%s\r\n" % (key, flags, len(data), data)


def hit(key, data, flags=0):
    """The whole reply of `get key` when key holds data."""
    return value(key, data, flags) + b"END\r\n"
