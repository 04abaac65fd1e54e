"""When reading makes a window update worth an ACK of its own (tcp_cleanup_rbuf's rule in
Linux): only where the window had closed to half the buffer or less and now at least
doubles. A prompt reader of one-segment batches then gets an ACK every second segment, as
delayed ACK intends (RFC 5681 4.2), not one per segment."""

from __future__ import annotations

import pytest

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.receiver import Receiver
from tcpstack.tcp.segment import ACK, SYN
from tests.unit.scripted_peer import ScriptedPeer, lines

MSS = 1460
PEER = 5000
ISS = 1_000_000


def _established(buffer: int) -> ScriptedPeer:
    peer = ScriptedPeer(TcpConfig(receive_buffer=buffer), stack_isn=ISS)
    peer.listen(80)
    peer.inject(SYN, PEER, options=tcpseg.encode_options(mss=MSS))
    peer.inject(ACK, PEER + 1, ISS + 1)
    return peer


def test_a_prompt_reader_of_one_segment_batches_gets_an_ack_every_second_segment() -> None:
    peer = _established(1 << 20)
    conn = peer.accepted()
    acks = []
    for i in range(4):
        acks += peer.inject(ACK, PEER + 1 + i * MSS, ISS + 1, payload=bytes(MSS))
        assert peer.app_read(conn) == bytes(MSS)
        acks += peer.take()
    assert [s.ack for s in acks] == [PEER + 1 + 2 * MSS, PEER + 1 + 4 * MSS]
    assert peer.now == 0.0  # no timer was needed for them


def test_a_read_that_reopens_a_window_closed_past_half_is_announced_at_once() -> None:
    peer = _established(4 * MSS)
    conn = peer.accepted()
    peer.inject(ACK, PEER + 1, ISS + 1, payload=bytes(3 * MSS))  # three quarters full
    peer.take()
    assert peer.app_read(conn) == bytes(3 * MSS)
    assert lines(peer.take()) == [f". seq {ISS + 1} ack {PEER + 1 + 3 * MSS} win {4 * MSS}"]


def test_a_first_request_read_at_once_waits_to_ride_on_the_answer() -> None:
    """The SYN's window could not be scaled (65535 at most, RFC 7323 2.2), so right after
    the handshake the window is below half a larger buffer without any unread data having
    closed it: reading the first request announces nothing, and the answer carries the ACK
    and the full window (one segment, not an ACK and then the data)."""
    peer = ScriptedPeer(TcpConfig(receive_buffer=1 << 20), stack_isn=ISS)
    peer.listen(80)
    peer.inject(SYN, PEER, options=tcpseg.encode_options(mss=MSS, wscale=7))
    peer.inject(ACK, PEER + 1, ISS + 1)
    conn = peer.accepted()
    request = b"GET / HTTP/1.1\r\n\r\n"
    assert peer.inject(ACK, PEER + 1, ISS + 1, payload=request) == []
    assert peer.app_read(conn) == request
    assert peer.take() == []  # no window update of its own
    peer.app_send(conn, b"answer")
    assert lines(peer.take()) == [
        f"P. seq {ISS + 1} ack {PEER + 1 + len(request)} win {(1 << 20) >> 5}"
        " len 6"]
@pytest.mark.instruments
def test_a_burst_asks_for_the_window_once_and_every_segment_carries_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    peer = _established(1 << 20)
    conn = peer.accepted()
    asked: list[int] = []
    advertise = Receiver.advertise

    def counted(rcv: Receiver) -> int:
        asked.append(field := advertise(rcv))
        return field

    monkeypatch.setattr(Receiver, "advertise", counted)
    peer.app_send(conn, bytes(10 * MSS))
    sent = peer.take()
    assert [len(s.payload) for s in sent] == [MSS] * 10  # the initial window (RFC 6928)
    assert asked == [0xFFFF]  # one flush, one question (unscaled: the peer offered no scale)
    assert {s.window for s in sent} == {asked[0]}
    # Outside a flush (a timer's retransmission) each segment asks again.
    peer.advance_to(conn.timers.rto or 0.0)
    assert len(asked) == 2
