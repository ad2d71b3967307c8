"""libmemcached's memccapable conformance checker against the server under test.

memccapable (Debian package libmemcached-tools) runs a fixed list of protocol
checks against a live server and prints one "[pass]" or "[FAIL]" per check; it
exits non-zero if any check failed. Its ASCII checks (-a) and its binary
checks (-b) run here, each in its own test. With MEMKEEP_TEST_TARGET=memcached
the same tests run against memcached, where all checks pass.

Checks in Debian's libmemcached-tools 1.1: ascii version, quit, verbosity, set,
set noreply, get, gets, mget, flush, flush noreply, add, add noreply, replace,
replace noreply, cas, cas noreply, delete, delete noreply, incr, incr noreply,
decr, decr noreply, append, append noreply, prepend, prepend noreply, stat
(27 checks); `-b` runs the 27 binary-protocol checks instead (noop, quit(q),
set(q), flush(q), add(q), replace(q), delete(q), get, getq, getk, getkq,
incr(q), decr(q), version, append(q), prepend(q), stat).
"""

import re
import shutil
import subprocess

import pytest

ASCII_CHECKS = 27  # as listed in the docstring
BINARY_CHECKS = 27


def memccapable_binary():
    path = shutil.which("memccapable") or shutil.which("memcapable")
    if path is None:
        pytest.skip("memccapable not installed (apt-get install libmemcached-tools)")
    return path


# A check's name ("ascii set noreply", padded with spaces) or a result.
TOKEN = re.compile(r"((?:ascii|binary)(?: [a-z]+)+)|\[(pass|FAIL|skip)\]")


def parse_results(output):
    """[(check name, "pass" | "FAIL" | "skip")] in run order.

    memccapable flushes each check's name to stdout, then prints "[pass]" to
    stdout and "[FAIL]" to stderr; with both streams on one pipe the order
    holds, except that the last "[pass]" may follow the summary line.
    """
    results, pending = [], None
    for match in TOKEN.finditer(output):
        if match.group(1):
            pending = match.group(1)
        elif pending is not None:
            results.append((pending, match.group(2)))
            pending = None
    return results


def run_memccapable(server, mode, expected_checks):
    binary = memccapable_binary()
    # -t: seconds memccapable waits on one I/O operation; the subprocess
    # timeout bounds the whole run in case the server stops answering.
    completed = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(server.port), mode, "-t", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
    )
    output = completed.stdout.decode(errors="replace")
    results = parse_results(output)
    failed = [name for name, status in results if status != "pass"]
    assert completed.returncode == 0 and not failed and len(results) == expected_checks, (
        f"memccapable {mode} exited {completed.returncode}; failed checks: {failed}; "
        f"{len(results)} of {expected_checks} checks reported. Its output:\n{output}"
    )


def test_memccapable_ascii_checks_all_pass(server):
    run_memccapable(server, "-a", ASCII_CHECKS)


def test_memccapable_binary_checks_all_pass(server):
    run_memccapable(server, "-b", BINARY_CHECKS)
