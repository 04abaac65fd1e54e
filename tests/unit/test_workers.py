"""The pure parts of `--workers`: the count, the ephemeral port slices, the steering
program's bounds, and one snapshot of several workers."""

from __future__ import annotations

import os

import pytest

from tcpstack.api.snapshot import Snapshot, merge_snapshots
from tcpstack.api.workers import split_ports, worker_count
from tcpstack.cli.stat import render_counters
from tcpstack.link import steering
from tcpstack.stack import EPHEMERAL_PORTS, NetworkStack


def test_worker_count_takes_a_number_or_auto() -> None:
    assert worker_count("3") == 3
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="not a number of workers"):
            worker_count(bad)


def test_split_ports_gives_disjoint_equal_slices_in_order() -> None:
    assert split_ports(range(32768, 61000), 2) == [range(32768, 46884), range(46884, 61000)]
    assert split_ports(range(100, 110), 3) == [range(100, 103), range(103, 106),
                                               range(106, 109)]  # 109 unused
    assert split_ports(EPHEMERAL_PORTS, 1) == [EPHEMERAL_PORTS]
    with pytest.raises(ValueError, match="cannot be shared"):
        split_ports(range(5), 6)


def test_a_stack_opens_connections_only_from_its_own_slice() -> None:
    ports = range(40000, 40003)
    stack = NetworkStack(bytes([10, 77, 0, 2]), ephemeral_ports=ports)
    peer = bytes([10, 77, 0, 1])
    opened = [stack.connect(peer, 80, 0.0).local_port for _ in range(3)]
    assert sorted(opened) == [40000, 40001, 40002]  # RFC 6056: not in order, all inside
    with pytest.raises(Exception, match="no free ephemeral port"):
        stack.connect(peer, 80, 0.0)


def test_steering_program_refuses_ranges_past_the_port_space() -> None:
    assert len(steering.program(2, 32768, 14116)) % 8 == 0
    with pytest.raises(ValueError):
        steering.program(2, 60000, 3000)
    with pytest.raises(ValueError):
        steering.program(0, 32768, 100)


def _part(pid: int, conns: list[tuple[int, int]], half_open: int,
          counters: dict[str, int]) -> Snapshot:
    return {
        "version": 1, "iface": "tcps0", "address": "10.77.0.2",
        "kernel_address": "10.77.0.1/24", "pid": pid, "uptime": 1.0,
        "listeners": [{"state": "LISTEN", "local": "10.77.0.2:80", "peer": "*:*", "port": 80,
                       "half_open": half_open, "backlog": 128, "syn_queue": half_open,
                       "accept_queue": 1}],
        "connections": [{"state": "ESTABLISHED", "local": f"10.77.0.2:{local}",
                         "peer": f"10.77.0.1:{peer}", "send_q": 0, "recv_q": 0,
                         "rtt_ms": None, "rto_ms": 1000.0, "cwnd": 14600, "ssthresh": None,
                         "retransmits": 0, "bytes_in": 0, "bytes_out": 0, "segs_in": 1,
                         "segs_out": 1} for local, peer in conns],
        "counters": counters,
    }


def test_merge_lists_every_workers_connections_and_sums_the_counters() -> None:
    a = _part(11, [(80, 40002), (80, 40010)], 1, {"passive_opens": 2, "segs_in": 7})
    b = _part(12, [(80, 40004)], 2, {"passive_opens": 1, "segs_in": 3, "rst_out": 1})

    merged = merge_snapshots([a, b], pid=10, uptime=5.25)

    assert merged["pid"] == 10 and merged["uptime"] == 5.25
    assert [(c["peer"], c.get("worker")) for c in merged["connections"]] == [
        ("10.77.0.1:40002", 0), ("10.77.0.1:40004", 1), ("10.77.0.1:40010", 0)]
    assert merged["listeners"] == [{"state": "LISTEN", "local": "10.77.0.2:80", "peer": "*:*",
                                    "port": 80, "half_open": 3, "backlog": 256,
                                    "syn_queue": 3, "accept_queue": 2}]
    assert merged["counters"] == {"passive_opens": 3, "rst_out": 1, "segs_in": 10}
    assert merged.get("workers") == [
        {"worker": 0, "pid": 11, "counters": {"passive_opens": 2, "segs_in": 7}},
        {"worker": 1, "pid": 12, "counters": {"passive_opens": 1, "segs_in": 3, "rst_out": 1}}]
    assert "worker" not in a["connections"][0]  # the parts are left as they were


def test_counters_of_several_workers_show_the_sum_then_each_worker() -> None:
    text = render_counters({"passive_opens": 3, "rst_out": 0}, zeros=False,
                           per_worker=[{"passive_opens": 2}, {"passive_opens": 1}])
    assert text.splitlines() == [
        "#name                                total      worker 0      worker 1",
        "passive_opens                            3             2             1"]
