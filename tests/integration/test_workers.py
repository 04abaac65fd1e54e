"""`--workers 2`: one interface, two processes, the kernel's connections spread over both,
`tcpstack stat` showing them all, and a stop that leaves nothing behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import RandomFile, StartStack
from .netns import (
    PEERS,
    STACK_ADDRESS,
    TCPSTACK,
    NetNS,
    clean_env,
    parse_counters,
    stop_process,
)

pytestmark = pytest.mark.integration

HELD = 200
WORKERS = ("--workers", "2")


def _snapshot(ns: NetNS) -> dict[str, Any]:
    result = ns.run([TCPSTACK, "stat", "--json"], timeout=20)
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def _processes(ns: NetNS) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True,
                          check=True).stdout.split()


def _has_tun(ns: NetNS) -> bool:
    return ns.run(["ip", "link", "show", "tcps0"]).returncode == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("host", [STACK_ADDRESS, "fd77::2"])  # the steering reads both
def test_200_held_downloads_spread_over_both_workers_and_stat_sums_them(
        netns: NetNS, start_stack: StartStack, http_root: Path,
        random_file: RandomFile, host: str) -> None:
    expected = random_file(http_root / "file.bin", 65536)
    stack = start_stack(netns, "80", "--http", http_root, "--backlog", "512",
                        global_args=WORKERS)
    peer = subprocess.Popen(netns.argv([sys.executable, PEERS / "http_held.py", host,
                                        "80", "/file.bin", str(HELD), expected, "60"]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_env())
    try:
        assert peer.stdout is not None and peer.stdin is not None
        report = json.loads(peer.stdout.readline() or b"{}")
        assert report.get("ok") == HELD, report
        assert report["ports"] == HELD

        snap = _snapshot(netns)
        conns = [c for c in snap["connections"]
                 if c["state"] == "ESTABLISHED"]
        assert len(conns) == HELD
        by_worker = {w: sum(1 for c in conns if c["worker"] == w) for w in (0, 1)}
        assert all(by_worker.values()), by_worker  # both workers hold some of them
        workers = snap["workers"]
        assert [w["worker"] for w in workers] == [0, 1]
        for name, total in snap["counters"].items():
            assert total == sum(w["counters"].get(name, 0) for w in workers), name
        assert snap["counters"]["passive_opens"] == HELD
        assert [w["counters"]["passive_opens"] for w in workers] == [by_worker[0], by_worker[1]]

        text = netns.run([TCPSTACK, "stat", "--counters"], timeout=20)
        assert text.returncode == 0, text.stderr
        rows = {line.split()[0]: [int(v) for v in line.split()[1:]]
                for line in text.stdout.splitlines()[2:]}
        assert rows["passive_opens"] == [HELD, by_worker[0], by_worker[1]]
        for name, (total, *own) in rows.items():
            assert total == sum(own), name

        table = netns.run([TCPSTACK, "stat"], timeout=20)
        assert "2 workers" in table.stdout.splitlines()[0]
        assert "Worker" in table.stdout

        peer.stdin.close()
        assert peer.wait(timeout=30) == 0
    finally:
        stop_process(peer)
    counters = stack.stop()
    assert counters["passive_opens"] == HELD
    assert counters.get("in_errors", 0) == 0


@pytest.mark.timeout(60)
def test_sigterm_stops_every_worker_and_removes_the_interface(
        netns: NetNS, start_stack: StartStack, http_root: Path) -> None:
    stack = start_stack(netns, "80", "--http", http_root, global_args=WORKERS)
    snap = _snapshot(netns)
    pids = [w["pid"] for w in snap["workers"]]
    assert len(pids) == 2 and stack.proc.pid not in pids
    assert sorted(map(int, _processes(netns))) == sorted([stack.proc.pid, *pids])

    stack.stop()

    assert _processes(netns) == []
    assert not _has_tun(netns)
    assert "tcpstack: counters:" in stack.log()


@pytest.mark.timeout(60)
def test_a_dead_worker_stops_the_others_and_says_so(
        netns: NetNS, start_stack: StartStack, http_root: Path) -> None:
    stack = start_stack(netns, "80", "--http", http_root, global_args=WORKERS)
    snap = _snapshot(netns)
    victim = snap["workers"][1]["pid"]

    subprocess.run(["kill", "-KILL", str(victim)], check=True)

    assert stack.proc.wait(timeout=20) == 1
    log = stack.log()
    assert re.search(rf"^tcpstack: error: worker 1 \(pid {victim}\) was killed by SIGKILL; "
                     "stopping the others$", log, re.MULTILINE), log
    deadline = time.monotonic() + 10
    while _processes(netns) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes(netns) == []
    assert not _has_tun(netns)
    parse_counters(log)  # the survivor's counters are still reported
