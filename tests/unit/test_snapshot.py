"""The snapshot `tcpstack stat` shows, built from NetworkStacks on a virtual clock; the control
socket protocol that serves it; and the ss/nstat-like renderings of it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tcpstack.api.control import (
    ControlError,
    ControlServer,
    ControlSocketInUse,
    NoStackRunning,
    query_snapshot,
    request,
    sweep_stale,
)
from tcpstack.api.snapshot import KNOWN_COUNTERS, Snapshot, build_snapshot
from tcpstack.cli.stat import render_connections, render_counters
from tcpstack.stack import NetworkStack
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.state import State
from tests.unit.link_pair import B_ADDR, LinkPair


def snap(stack: NetworkStack) -> Snapshot:
    return build_snapshot(stack, iface="tcps0", kernel_address="10.0.0.1/24", uptime=2.5)


def only(snapshot: Snapshot, state: str) -> dict[str, Any]:
    (conn,) = [c for c in snapshot["connections"] if c["state"] == state]
    return dict(conn)


def test_established_connection_with_queues_bytes_and_segments() -> None:
    pair = LinkPair()
    client, server = pair.established_pair(80)
    pair.send(client, b"x" * 5000)
    pair.advance(1.0)  # delayed ACKs included
    server_view = only(snap(pair.b), "ESTABLISHED")
    assert server_view["local"] == "10.0.0.2:80"
    assert server_view["peer"] == f"10.0.0.1:{client.local_port}"
    assert server_view["recv_q"] == 5000, "nothing read yet"
    assert server_view["bytes_in"] == 5000
    assert server_view["segs_in"] == server.counts.segments_in > 0
    client_view = only(snap(pair.a), "ESTABLISHED")
    assert client_view["bytes_out"] == 5000 and client_view["send_q"] == 0
    assert client_view["rtt_ms"] == pytest.approx(10.0, rel=0.5), "two 5 ms hops"
    assert client_view["rto_ms"] >= 200.0
    assert client_view["cwnd"] == client.cc.cwnd and client_view["ssthresh"] is None
    assert client_view["retransmits"] == 0

    pair.send(client, b"y" * 3000)  # queued, not yet on the wire
    assert only(snap(pair.a), "ESTABLISHED")["send_q"] == 3000


def test_the_receive_buffer_and_auto_tunings_space_are_shown_like_ss_rcv_space() -> None:
    pair = LinkPair(config_a=TcpConfig(receive_buffer=50_000))
    pair.established_pair(80)
    # b tunes: it starts at 128 KiB with the space of a first flight (ten segments).
    server_view = only(snap(pair.b), "ESTABLISHED")
    assert (server_view["rcv_buf"], server_view["rcv_space"]) == (128 << 10, 10 * 1460)
    # a's buffer is fixed (SO_RCVBUF): no tuning, no space.
    client_view = only(snap(pair.a), "ESTABLISHED")
    assert (client_view["rcv_buf"], client_view["rcv_space"]) == (50_000, None)
    console = Console(record=True, width=80)
    console.print(render_connections(snap(pair.b), width=80))
    assert "rcv_space:14600 rcv_buf:131072" in " ".join(console.export_text().split())


def test_listeners_show_port_half_open_and_backlog() -> None:
    pair = LinkPair()
    pair.b.listen(8080, backlog=7)
    assert snap(pair.b)["listeners"] == [{"state": "LISTEN", "local": "10.0.0.2:8080",
                                          "peer": "*:*", "port": 8080, "half_open": 0,
                                          "backlog": 7, "syn_queue": 0, "accept_queue": 0}]


def test_a_listener_shows_its_syn_queue_and_the_accept_queue_the_application_reports() -> None:
    pair = LinkPair(drop=lambda frame: frame.sender == "b")  # the handshakes stay half-open
    pair.b.listen(80)
    pair.b.listen(81)
    for _ in range(3):
        pair.a.connect(B_ADDR, 80, pair.now)
    pair.advance(0.01)
    snapshot = build_snapshot(pair.b, iface="tcps0", kernel_address="10.0.0.1/24",
                              uptime=1.0, accept_queues={81: 5})
    assert [(lst["port"], lst["syn_queue"], lst["half_open"], lst["accept_queue"])
            for lst in snapshot["listeners"]] == [(80, 3, 3, 0), (81, 0, 0, 5)]
    console = Console(record=True, width=200)
    console.print(render_connections(snapshot))
    text = console.export_text()
    rows = [line.split() for line in text.splitlines()]
    # As ss shows a listener: Recv-Q its accept queue, Send-Q its backlog.
    assert ["LISTEN", "0", "4096", "10.0.0.2:80", "*:*"] in rows
    assert ["LISTEN", "5", "4096", "10.0.0.2:81", "*:*"] in rows
    assert ["10.0.0.2:80", "syn_queue:3", "accept_queue:0", "backlog:4096"] in rows


def test_the_links_counters_join_the_stacks_in_order() -> None:
    stack = LinkPair().b
    stack.counters["segs_in"] = 4
    snapshot = build_snapshot(stack, iface="tcps0", kernel_address="10.0.0.1/24", uptime=1.0,
                              link_counters={"tun_rx_queue_drops": 17})
    counters = snapshot["counters"]
    assert (counters["tun_rx_queue_drops"], counters["segs_in"]) == (17, 4)
    assert list(counters) == sorted(counters)
    assert "tun_rx_queue_drops" not in snap(stack)["counters"], "no link: not made up"


def test_a_handshake_that_is_never_acked_shows_syn_rcvd_and_a_half_open_listener() -> None:
    pair = LinkPair(drop=lambda frame: frame.sender == "b")
    pair.b.listen(80)
    pair.a.connect(B_ADDR, 80, pair.now)
    pair.settle()
    snapshot = snap(pair.b)
    assert only(snapshot, "SYN_RCVD")["local"] == "10.0.0.2:80"
    assert snapshot["listeners"][0]["half_open"] == 1
    assert only(snap(pair.a), "SYN_SENT")["peer"] == "10.0.0.2:80"


def test_the_active_closer_shows_time_wait() -> None:
    pair = LinkPair()
    client, server = pair.established_pair(80)
    pair.close(client)
    pair.settle()
    pair.close(server)
    pair.settle()
    assert client.state is State.TIME_WAIT
    assert only(snap(pair.a), "TIME_WAIT")["peer"] == "10.0.0.2:80"
    assert snap(pair.b)["connections"] == [], "the passive closer is gone"


def test_counters_list_every_known_name_and_retransmissions_of_live_connections() -> None:
    lost = {"first": True}

    def drop_first_data(frame: Any) -> bool:
        if frame.sender == "a" and frame.is_tcp and frame.payload_len and lost["first"]:
            lost["first"] = False
            return True
        return False

    pair = LinkPair(drop=drop_first_data)
    client, _ = pair.established_pair(80)
    pair.send(client, b"z" * 1000)
    pair.run_until(lambda: client.counts.retransmits > 0 and not client.snd.buffer)
    counters = snap(pair.a)["counters"]
    assert set(KNOWN_COUNTERS) <= set(counters)
    assert counters["active_opens"] == 1 and counters["passive_opens"] == 0
    assert counters["retrans_segs"] == client.counts.retransmits >= 1
    assert list(counters) == sorted(counters)
    assert snap(pair.b)["counters"]["passive_opens"] == 1


def test_the_snapshot_is_json_with_a_version() -> None:
    pair = LinkPair()
    pair.established_pair(80)
    snapshot = snap(pair.b)
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["version"] == 1
    assert (snapshot["iface"], snapshot["address"], snapshot["uptime"]) == \
        ("tcps0", "10.0.0.2", 2.5)
    assert snapshot["pid"] == os.getpid()


# ---------------------------------------------------------------------- control socket

def _serve(path: Path, snapshot: Snapshot, client: Any) -> Any:
    """Run a ControlServer at `path` while `client()` runs in a thread; its result."""
    async def main() -> Any:
        server = ControlServer(path, lambda: snapshot)
        await server.start()
        try:
            return await asyncio.to_thread(client)
        finally:
            server.remove()
    return asyncio.run(main())


def test_control_socket_serves_the_snapshot_and_is_removed(tmp_path: Path) -> None:
    pair = LinkPair()
    pair.b.listen(80)
    snapshot = snap(pair.b)
    path = tmp_path / "run" / "net-1-tcps0.sock"
    got = _serve(path, snapshot, lambda: (oct(path.stat().st_mode & 0o777),
                                          query_snapshot(path)))
    assert got == ("0o600", snapshot)
    assert not path.exists()
    with pytest.raises(NoStackRunning, match="no control socket at"):
        query_snapshot(path)


def test_the_control_socket_awaits_its_refresh_before_each_answer(tmp_path: Path) -> None:
    """What must be fetched off the loop (the TUN's drops, by netlink) is fresh in every
    answer: the refresh runs, then the snapshot is taken."""
    base = snap(LinkPair().b)
    refreshed: list[int] = []

    async def refresh() -> None:
        await asyncio.sleep(0)
        refreshed.append(len(refreshed) + 1)

    def snapshot() -> Snapshot:
        return {**base, "counters": {"tun_rx_queue_drops": refreshed[-1]}}  # type: ignore[typeddict-item]

    path = tmp_path / "r.sock"

    async def main() -> list[int]:
        server = ControlServer(path, snapshot, refresh=refresh)
        await server.start()
        try:
            return await asyncio.to_thread(lambda: [
                query_snapshot(path)["counters"]["tun_rx_queue_drops"] for _ in range(2)])
        finally:
            server.remove()

    assert asyncio.run(main()) == [1, 2]
    assert refreshed == [1, 2]


def test_control_protocol_errors_are_one_json_line(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"

    def raw(line: bytes) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(line)
            value: dict[str, Any] = json.loads(sock.makefile("rb").readline())
            return value

    replies = _serve(path, snap(LinkPair().b), lambda: [
        raw(b"not json\n"), raw(b'{"version": 2, "command": "snapshot"}\n'),
        raw(b'{"version": 1, "command": "reboot"}\n')])
    assert [r["ok"] for r in replies] == [False, False, False]
    assert replies[0]["error"] == "the request is not a JSON object on one line"
    assert "unsupported protocol version 2" in replies[1]["error"]
    assert replies[2]["error"] == "unknown command 'reboot' (expected: snapshot)"

    def client() -> None:
        with pytest.raises(ControlError, match="refused the request: unknown command"):
            request(path, "reboot")
    _serve(path, snap(LinkPair().b), client)


def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # bound, never listening: what a killed stack leaves
    with pytest.raises(NoStackRunning, match="stale control socket") as info:
        request(path)
    assert info.value.stale

    def second_server() -> None:
        async def main() -> None:
            with pytest.raises(ControlSocketInUse):
                await ControlServer(path, lambda: snap(LinkPair().b)).start()
        asyncio.run(main())

    _serve(path, snap(LinkPair().b), second_server)
    assert not path.exists()


def test_sweep_removes_old_refusing_sockets_only(tmp_path: Path) -> None:
    old, young = tmp_path / "net-1-a.sock", tmp_path / "net-2-a.sock"
    for path in (old, young):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
    past = time.time() - 60
    os.utime(old, (past, past), follow_symlinks=False)
    assert sweep_stale(tmp_path, min_age=10) == 1
    assert not old.exists() and young.exists()


# ---------------------------------------------------------------------- renderings

def test_table_has_a_row_per_listener_and_connection() -> None:
    pair = LinkPair()
    client, _ = pair.established_pair(80)
    console = Console(record=True, width=200)
    console.print(render_connections(snap(pair.b)))
    text = console.export_text()
    assert text.startswith("tcps0: stack 10.0.0.2, kernel side 10.0.0.1/24, pid ")
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:] if line.strip()}
    assert rows["LISTEN"][1:5] == ["0", "4096", "10.0.0.2:80", "*:*"]
    assert "10.0.0.2:80 syn_queue:0 accept_queue:0 backlog:4096" in text
    est = rows["ESTABLISHED"]
    assert est[3:5] == ["10.0.0.2:80", f"10.0.0.1:{client.local_port}"]
    assert est[8] == "-", "ssthresh unset"


def test_counters_render_like_nstat() -> None:
    text = render_counters({"segs_in": 10, "rst_out": 0, "active_opens": 2}, zeros=False)
    assert text.splitlines() == [f"{'active_opens':<28}{2:>14}", f"{'segs_in':<28}{10:>14}"]
    with_zeros = render_counters({"segs_in": 10, "rst_out": 0}, zeros=True,
                                 previous={"segs_in": 4})
    assert [line.split() for line in with_zeros.splitlines()] == [
        ["rst_out", "0", "+0"], ["segs_in", "10", "+6"]]


def test_a_narrow_terminal_gets_the_measurements_on_a_line_of_their_own() -> None:
    pair = LinkPair()
    client, _ = pair.established_pair(80)
    console = Console(record=True, width=80)
    console.print(render_connections(snap(pair.b), width=80))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text, "nothing cut off"
    assert f"10.0.0.1:{client.local_port}" in text
    flat = " ".join(text.split())
    assert "rtt:10.000 rto:200.000 cwnd:" in flat and "segs_out:" in flat
    rows = [line.split() for line in text.splitlines()]
    assert ["LISTEN", "0", "4096", "10.0.0.2:80", "*:*"] in rows
    assert ["syn_queue:0", "accept_queue:0", "backlog:4096"] in rows


def test_a_stack_wide_retrans_segs_counter_wins_over_the_live_sum() -> None:
    pair = LinkPair()
    pair.established_pair(80)
    pair.a.counters["retrans_segs"] = 42
    assert snap(pair.a)["counters"]["retrans_segs"] == 42
