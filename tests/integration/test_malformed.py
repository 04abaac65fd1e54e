"""Malformed IPv4 and TCP packets, written straight into the TUN interface from inside the
namespace, are dropped and counted by reason while the stack goes on serving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import NetNS, curl, sha256_file, url

pytestmark = pytest.mark.integration

# Each damaged packet is a SYN to the listening port: had the stack accepted one, it would
# show as a passive open.
INJECT = {"bad_ip_checksum": 3, "truncated": 3, "bad_ihl": 3, "bad_tcp_checksum": 3}
COUNTER = {"bad_ip_checksum": "ip_bad_checksum", "truncated": "ip_truncated",
           "bad_ihl": "ip_bad_ihl", "bad_tcp_checksum": "tcp_bad_checksum"}


@pytest.mark.timeout(60)
def test_malformed_packets_dropped_and_counted(netns: NetNS, start_stack: StartStack,
                                               http_root: Path, random_file: RandomFile,
                                               tmp_path: Path) -> None:
    expected = random_file(http_root / "after.bin", 200_000)
    stack = start_stack(netns, "80", "--http", http_root)

    specs = [f"{kind}:{count}" for kind, count in INJECT.items()]
    result = netns.python("inject.py", "tcps0", *specs, "control:1", timeout=30)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout)
    assert {k: v["packets"] for k, v in report.items()} == {**INJECT, "control": 1}

    out = tmp_path / "after.bin"
    fetched = curl(netns, "-sS", "-o", str(out), "-w", "%{http_code}", url("after.bin"))
    assert (fetched.returncode, fetched.stdout) == (0, "200"), fetched.stderr
    assert sha256_file(out) == expected
    assert stack.alive()

    counters = stack.stop()
    for kind, count in INJECT.items():
        assert counters.get(COUNTER[kind], 0) == count, (COUNTER[kind], counters)
    assert counters.get("in_errors", 0) == sum(INJECT.values()), counters
    # The control SYN (valid, to closed port 81) proves injected packets reach the stack.
    assert counters.get("rst_out", 0) >= 1, counters
    assert counters.get("passive_opens") == 1, "only the curl may open a connection"
