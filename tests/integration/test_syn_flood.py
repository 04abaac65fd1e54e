"""A spoofed SYN flood (RFC 4987) against `tcpstack listen 7 --echo`, while a kernel client
opens 100 connections one after another: with SYN cookies every one gets through at its
first SYN, and the stack's memory stays bounded.

The flood (tests/peers/syn_flood.py) writes SYNs from random addresses of a /16 straight
into the TUN, at a rate the stack keeps up with on this machine; nobody answers the
SYN-ACKs. The default backlog (4096) fills within a fraction of a second, and from then on
the SYNs, the client's included, are answered with cookies."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from .conftest import StartStack
from .netns import PEERS, TCPSTACK, NetNS

pytestmark = pytest.mark.integration

# Spoofed SYNs a second: a quarter of what the stack answers with cookies on a core of its
# own here (about 40,000 a second), so that it keeps up while the other core's tests and
# benchmarks take turns on its core too; a SYN the TUN's queue drops would be resent.
RATE = 10_000
SECONDS = 10.0
CONNECTIONS = 100


def _syn_retrans(ns: NetNS) -> int:
    """TcpExt TCPSynRetrans of the namespace's kernel, from /proc (no nstat history)."""
    lines = ns.run(["cat", "/proc/net/netstat"], timeout=10).stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            return dict(zip(names.split()[1:], map(int, values.split()[1:]),
                            strict=True))["TCPSynRetrans"]
    raise AssertionError("no TcpExt line in /proc/net/netstat")


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _listener(ns: NetNS) -> dict[str, int]:
    stat = ns.run([TCPSTACK, "stat", "--json"], timeout=20)
    assert stat.returncode == 0, stat.stderr
    [listener] = json.loads(stat.stdout)["listeners"]
    return listener  # type: ignore[no-any-return]


@pytest.mark.timeout(60)
def test_100_kernel_connections_get_through_a_spoofed_syn_flood_at_their_first_syn(
        netns: NetNS, start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--echo")
    flood = netns.popen([sys.executable, PEERS / "syn_flood.py", "tcps0", "7", str(RATE),
                         str(SECONDS)], stdout=subprocess.PIPE)
    try:
        # The SYN queue fills in a fifth of a second; `stat` is not asked until the client
        # is done (a snapshot of 4096 connections holds up the stack's loop).
        time.sleep(1.0)
        retrans_before = _syn_retrans(netns)
        started = time.monotonic()
        client = netns.python("sequential_connects.py", "10.77.0.2", "7", str(CONNECTIONS),
                              timeout=40)
        client_seconds = time.monotonic() - started
        flood_went_on = flood.poll() is None
        retrans = _syn_retrans(netns) - retrans_before
        during = _listener(netns)
    finally:
        out, _ = flood.communicate(timeout=SECONDS + 10)
    assert client.returncode == 0, client.stderr
    result = json.loads(client.stdout)
    flooded = json.loads(out)
    rss = _peak_rss_mb(stack.proc.pid)
    counters = stack.stop()
    print(f"flood {flooded['sent']} SYNs in {flooded['seconds']} s; {CONNECTIONS} "
          f"connections in {client_seconds:.2f} s, slowest connect "
          f"{result['slowest_connect']} s; SYN retransmissions {retrans}; peak RSS "
          f"{rss:.0f} MB; syncookies sent {counters.get('syncookies_sent')} recv "
          f"{counters.get('syncookies_recv')} failed {counters.get('syncookies_failed')}; "
          f"listener {during}")
    assert flood_went_on, "the flood ended before the client did"
    assert result["ok"] == CONNECTIONS, result
    assert retrans == 0
    assert during["syn_queue"] == during["backlog"] == 4096  # the flood kept it full
    assert counters["syncookies_recv"] >= CONNECTIONS
    assert counters.get("syncookies_failed", 0) == 0
    assert flooded["sent"] >= RATE * SECONDS * 0.9
    assert counters["syncookies_sent"] >= flooded["sent"] * 0.9 - 4096  # it kept up
    assert rss < 300
