"""Request/reply helpers shared by the meta-protocol tests (test_meta*.py).

Each request is followed by `mn`, and the reply is read up to `MN`, so that
extra or missing bytes are caught instead of waiting for a timeout.
"""

PIPELINE_END = b"mn\r\n"


def exchange(client, request):
    """Send request + `mn`; return the reply bytes that came before `MN`."""
    client.send(request + PIPELINE_END)
    reply = client.read_until(b"MN\r\n")
    return reply[: -len(b"MN\r\n")]


def assert_exchange(client, request, expected):
    got = exchange(client, request)
    assert got == expected, f"{request!r}: expected {expected!r}, got {got!r}"


def store(client, key, value, flags=b""):
    """ms key value (with extra flags, e.g. b" T30"), expecting HD."""
    request = b"ms " + key + b" " + str(len(value)).encode() + flags + b"\r\n" + value + b"\r\n"
    assert_exchange(client, request, b"HD\r\n")
