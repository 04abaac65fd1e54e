"""`tcpstack stat` shows the UDP endpoints as `ss -uan` does: UNCONN or ESTAB, the bytes
queued and unread, the drops of a full queue; workers' lists are joined."""

from __future__ import annotations

from rich.console import Console

from tcpstack.api.snapshot import Snapshot, build_snapshot, merge_snapshots
from tcpstack.cli.stat import render_connections
from tcpstack.net import ipv4, udp
from tcpstack.stack import NetworkStack
from tcpstack.udp.endpoint import DATAGRAM_COST

LOCAL = bytes([10, 77, 0, 2])
PEER = bytes([10, 77, 0, 1])


def _snapshot(stack: NetworkStack) -> Snapshot:
    return build_snapshot(stack, iface="tcps0", kernel_address="10.77.0.1/24", uptime=1.0)


def _stack() -> NetworkStack:
    stack = NetworkStack(LOCAL)
    stack.udp_open(53, rcvbuf=DATAGRAM_COST + 10)
    connected = stack.udp_open(40000)
    stack.udp_connect(connected, PEER, 123)
    packet = ipv4.build(PEER, LOCAL, udp.PROTO_UDP, udp.build(PEER, LOCAL, 5000, 53, b"hello"))
    stack.service([packet] * 3, 0.0)  # the second fills the queue: the third is dropped
    return stack


def test_the_snapshot_lists_each_endpoint_with_its_queue_and_drops() -> None:
    assert _snapshot(_stack())["udp"] == [
        {"state": "UNCONN", "local": "10.77.0.2:53", "peer": "*:*", "recv_q": 10,
         "send_q": 0, "drops": 1, "rcvbuf": DATAGRAM_COST + 10},
        {"state": "ESTAB", "local": "10.77.0.2:40000", "peer": "10.77.0.1:123", "recv_q": 0,
         "send_q": 0, "drops": 0, "rcvbuf": 212992}]


def test_stat_prints_them_under_the_tcp_table_and_nothing_without_them() -> None:
    console = Console(width=200, record=True)
    console.print(render_connections(_snapshot(_stack())))
    text = console.export_text()
    lines = text.splitlines()
    start = lines.index("UDP: 2 sockets")
    assert [line.split() for line in lines[start + 1:]] == [
        ["State", "Recv-Q", "Send-Q", "Local", "Address:Port", "Peer", "Address:Port", "Drops"],
        ["UNCONN", "10", "0", "10.77.0.2:53", "*:*", "1"],
        ["ESTAB", "0", "0", "10.77.0.2:40000", "10.77.0.1:123", "0"]]
    console = Console(width=200, record=True)
    console.print(render_connections(_snapshot(NetworkStack(LOCAL))))
    assert "UDP" not in console.export_text()


def test_workers_udp_lists_are_joined_with_the_worker_of_each() -> None:
    part = _snapshot(_stack())
    merged = merge_snapshots([part, part], pid=1, uptime=1.0)
    assert [(ep["local"], ep.get("worker")) for ep in merged["udp"]] == [
        ("10.77.0.2:53", 0), ("10.77.0.2:40000", 0), ("10.77.0.2:53", 1),
        ("10.77.0.2:40000", 1)]
