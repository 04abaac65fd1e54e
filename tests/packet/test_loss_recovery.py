"""Loss recovery as the peer sees it, with SACK (RFC 2018) and RACK-TLP (RFC 8985): a lost
tail segment is probed, and a lost retransmission found and sent again, within about two
round trips, long before the 200 ms RTO. The peer chooses the round trip by when it
answers: RTT after what it answers, the handshake included, so that SRTT starts at the
round trip the stack measured there (RTT and the peer's own delay), which is the one the
bounds are stated in."""

from __future__ import annotations

import time

import pytest

from .conftest import PORT, Rig
from .peer import ANY, Captured, Flow

pytestmark = pytest.mark.integration

MSS = 1460
RTT = 0.05
SLACK = 0.01  # the brief's allowance for two event loops and a busy machine


def _establish_with_sack(rig: Rig, sport: int) -> tuple[Flow, float]:
    """The handshake, SACK agreed; returns the flow and the round trip the stack measured."""
    flow = rig.peer.flow(sport, PORT)
    flow.send("S", 0, win=65535, options=[("MSS", MSS), ("SAckOK", b""), ("WScale", 7)])
    synack = flow.expect("S.", 0, 1, options=ANY)
    assert ("SAckOK", b"") in synack.tcp.options
    time.sleep(RTT)
    acked = flow.send(".", 1, 1, win=512)  # 64 KiB
    return flow, acked - synack.at


def _send_data(flow: Flow, segments: int) -> None:
    for i in range(segments):
        flow.send(".", 1 + i * MSS, 1, win=512, payload=bytes([i]) * MSS)


def _rel(flow: Flow, got: Captured) -> int:
    assert flow.remote_isn is not None
    return (int(got.tcp.seq) - flow.remote_isn) & 0xFFFFFFFF


def _data_until(flow: Flow, deadline: float) -> list[tuple[int, Captured]]:
    """The data segments the stack sends until `deadline` (time.time()), as (relative
    seq, packet); its bare ACKs are skipped."""
    got: list[tuple[int, Captured]] = []
    while (left := deadline - time.time()) > 0:
        packet = flow.peer.receive(flow.key, left)
        if packet is not None and packet.tcp is not None and packet.payload:
            got.append((_rel(flow, packet), packet))
    return got


def _sack(flow: Flow, ack: int, *blocks: tuple[int, int]) -> float:
    """An ACK of the stack's data up to `ack` with SACK blocks (relative numbers)."""
    assert flow.remote_isn is not None
    base = flow.remote_isn
    edges = tuple((base + edge) & 0xFFFFFFFF for block in blocks for edge in block)
    options = [("NOP", None), ("NOP", None), ("SAck", edges)] if blocks else []
    return flow.send(".", 1 + 40 * MSS, ack, win=512, options=options)


@pytest.mark.timeout(30)
def test_a_lost_tail_segment_is_probed_within_two_round_trips(echo: Rig) -> None:
    flow, rtt = _establish_with_sack(echo, 40801)
    _send_data(flow, 3)
    echoed = _data_until(flow, time.time() + RTT / 2)
    assert [seq for seq, _ in echoed] == [1, 1 + MSS, 1 + 2 * MSS]
    # None of it is acknowledged: the last segment is lost and so are the ACKs of the rest.
    tail_sent = echoed[-1][1].at
    probe = _data_until(flow, tail_sent + 2 * rtt + SLACK)
    assert [seq for seq, _ in probe] == [1 + 2 * MSS], "no tail loss probe in 2 RTT"
    assert probe[0][1].payload == bytes([2]) * MSS
    time.sleep(RTT)
    flow.send(".", 1 + 3 * MSS, 1 + 3 * MSS, win=512)
    assert _data_until(flow, time.time() + 0.3) == []  # nothing more, no RTO resend


@pytest.mark.timeout(30)
def test_a_lost_retransmission_is_sent_again_within_two_round_trips(echo: Rig) -> None:
    flow, rtt = _establish_with_sack(echo, 40802)
    _send_data(flow, 40)  # the initial window takes ten of their echo, the rest waits
    echoed = _data_until(flow, time.time() + RTT / 2)
    assert [seq for seq, _ in echoed] == [1 + i * MSS for i in range(10)]
    # One RTT on: the first arrived, the second is lost, three more are SACKed, and RACK
    # (reordering window 0 once three segments are SACKed) sends the second again.
    time.sleep(max(echoed[0][1].at + RTT - time.time(), 0))
    _sack(flow, 1 + MSS)
    for k in range(1, 4):
        _sack(flow, 1 + MSS, (1 + 2 * MSS, 1 + (2 + k) * MSS))
    answer = _data_until(flow, time.time() + RTT / 4)
    seqs = [seq for seq, _ in answer]
    assert 1 + MSS in seqs, f"no fast retransmit: {seqs}"
    first_resend = answer[seqs.index(1 + MSS)][1]
    # The SACKs of the rest of the flight come in, and let new data out after the resend.
    for k in range(4, 9):
        _sack(flow, 1 + MSS, (1 + 2 * MSS, 1 + (2 + k) * MSS))
    after = [seq for seq, _ in _data_until(flow, time.time() + RTT / 4)]
    assert after and min(after) >= 1 + 10 * MSS, f"no new data after the resend: {after}"
    seqs += after
    # That retransmission is lost too. One RTT on, the peer SACKs everything else up to the
    # first segment sent after the resend: that ACK shows the resend lost (to RACK; one
    # segment SACKed above it is too little for IsLost()).
    time.sleep(max(first_resend.at + RTT - time.time(), 0))
    shown = _sack(flow, 1 + MSS, (1 + 2 * MSS, min(after) + MSS))
    again = _data_until(flow, shown + 2 * rtt + SLACK)
    assert 1 + MSS in [seq for seq, _ in again], "the lost retransmission waited for the RTO"
    resend = next(packet for seq, packet in again if seq == 1 + MSS)
    assert resend.payload == bytes([1]) * MSS
    assert resend.at - shown <= 2 * rtt + SLACK
