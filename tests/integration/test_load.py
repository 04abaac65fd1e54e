"""Many concurrent clients against `tcpstack listen 80 --http DIR`: every request served,
nothing lost in the TUN's queue, and the kernel's clients almost never resend a SYN."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import TCPSTACK, NetNS, url

pytestmark = pytest.mark.integration

REQUESTS = 5000
CONCURRENCY = 200


def _nstat(ns: NetNS) -> dict[str, int]:
    """The namespace's kernel counters, absolute, leaving nstat's history file alone (it is
    shared by every namespace of this user)."""
    result = ns.run(["nstat", "--ignore", "--zeros", "--json"], timeout=10)
    assert result.returncode == 0, result.stderr
    counters: dict[str, int] = json.loads(result.stdout)["kernel"]
    return counters


def _ab_field(output: str, name: str) -> int:
    match = re.search(rf"^{name}:\s+(\d+)", output, re.MULTILINE)
    assert match, f"no {name!r} in ab's output:\n{output}"
    return int(match.group(1))


@pytest.mark.skipif(shutil.which("ab") is None, reason="needs ab (apache2-utils)")
@pytest.mark.timeout(180)
def test_200_concurrent_clients_lose_nothing_in_the_tun_queue(
        netns: NetNS, start_stack: StartStack, http_root: Path,
        random_file: RandomFile) -> None:
    random_file(http_root / "small.bin", 100)
    stack = start_stack(netns, "80", "--http", http_root)
    link = netns.run(["ip", "link", "show", "tcps0"], timeout=10).stdout
    assert " qlen 10000" in link, link

    ab = netns.run(["ab", "-q", "-r", "-n", str(REQUESTS), "-c", str(CONCURRENCY),
                    url("small.bin")], timeout=150)

    assert ab.returncode == 0, ab.stdout + ab.stderr
    assert _ab_field(ab.stdout, "Complete requests") == REQUESTS
    assert _ab_field(ab.stdout, "Failed requests") == 0, ab.stdout
    stat = netns.run([TCPSTACK, "stat", "--counters", "--json"], timeout=20)
    assert stat.returncode == 0, stat.stderr
    counters = json.loads(stat.stdout)
    assert counters["tun_rx_queue_drops"] == 0, counters
    assert counters["listen_overflows"] == 0
    kernel = _nstat(netns)
    assert kernel["TcpActiveOpens"] >= REQUESTS
    # Each resent SYN counts once, so fewer resent SYNs than 1% of the connections means
    # fewer than 1% of the connections resent theirs.
    assert kernel["TcpExtTCPSynRetrans"] < kernel["TcpActiveOpens"] / 100, kernel
    assert stack.stop()["passive_opens"] == kernel["TcpActiveOpens"]
