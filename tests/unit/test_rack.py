"""RACK (RFC 8985 section 6) against a Linux-like receiver (tests/unit/linux_receiver.py):
a segment is lost once one sent after it is delivered and a round trip plus the reordering
window (min_RTT / 4 until a D-SACK widens it) has passed since it went, found on an ACK or
by the reordering timer; a retransmission that is lost again is found the same way. Times
are virtual; sums of them are compared to a nanosecond."""

from __future__ import annotations

import pytest

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.rack import Rack
from tcpstack.tcp.sack import SackScoreboard
from tests.unit.linux_receiver import LinuxLikeReceiver
from tests.unit.scripted_peer import Sent

MSS = 1460
RTT = 0.01


def _receiver(**overrides: object) -> LinuxLikeReceiver:
    settings: dict[str, object] = {"nodelay": True, "congestion": "newreno"}
    settings.update(overrides)
    return LinuxLikeReceiver(TcpConfig(**settings), rtt=RTT)  # type: ignore[arg-type]


def _data(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if s.payload]


def _burst(rx: LinuxLikeReceiver, segments: int = 10) -> list[Sent]:
    sent = _data(rx.send(bytes(segments * MSS)))
    assert [len(s.payload) for s in sent] == [MSS] * segments
    return sent


def _exactly(value: float) -> object:
    return pytest.approx(value, abs=1e-9)


def test_a_lost_segment_followed_by_one_sent_later_is_resent_on_the_ack_of_that_one() -> None:
    """Two segments follow the lost one, too few for DupThresh: the SACK of a segment sent
    5 ms after it, one RTT on, shows it lost, since RTT + min_RTT / 4 (12.5 ms) have passed."""
    rx = _receiver()
    first = _data(rx.send(bytes(MSS)))
    rx.peer.advance(0.005)
    later = _data(rx.send(bytes(MSS)))
    rx.peer.advance(0.001)
    last = _data(rx.send(bytes(MSS)))
    rx.peer.advance(first[0].time + 0.005 + RTT - rx.peer.now)  # the first is lost
    answer = _data(rx.deliver(later[0]))
    assert [(s.time, s.seq) for s in answer] == [(rx.peer.now, first[0].seq)]
    assert rx.conn.loss.episode.active
    rx.deliver(answer[0])
    rx.deliver(last[0])
    assert rx.conn.snd.una == rx.conn.snd.max
    rx.peer.advance(5.0)
    counters = rx.peer.stack.counters
    assert counters["rack_losses"] == 1
    assert counters["sack_recoveries"] == 1
    assert counters["fast_retransmits"] == counters["retrans_segs"] == 1
    assert counters["rto_timeouts"] == counters["tlp_probes"] == 0


def test_without_rack_the_same_loss_waits_for_the_tail_probe() -> None:
    rx = _receiver(rack=False)
    first = _data(rx.send(bytes(MSS)))
    rx.peer.advance(0.005)
    later = _data(rx.send(bytes(MSS)))
    rx.peer.advance(0.001)
    _data(rx.send(bytes(MSS)))
    rx.peer.advance(first[0].time + 0.005 + RTT - rx.peer.now)
    assert _data(rx.deliver(later[0])) == []
    assert rx.peer.stack.counters["rack_losses"] == 0


def test_the_reordering_timer_resends_a_lost_segment_when_no_further_ack_comes() -> None:
    """A burst (one send time) with the eighth segment lost: the ACKs of the other nine come
    together, one RTT on, and nothing after. RACK.rtt is that RTT, so the lost one is due at
    its send time + RTT + min_RTT / 4, when the reordering timer (6.3) resends it; the tail
    loss probe (2 SRTT) and the RTO come later."""
    rx = _receiver()
    flight = _burst(rx)
    sent_at = flight[0].time
    rx.peer.advance(RTT)
    for i, seg in enumerate(flight):
        if i != 7:
            assert [s for s in _data(rx.deliver(seg)) if s.seq == flight[7].seq] == []
    due = sent_at + RTT + RTT / 4
    assert rx.conn.timers.rack == _exactly(due)
    assert rx.conn.deadline == rx.conn.timers.rack
    assert rx.conn.timers.probe is not None and rx.conn.timers.probe > due
    resent = _data(rx.peer.advance(0.1))
    assert [s.seq for s in resent] == [flight[7].seq]
    assert resent[0].time == _exactly(due)
    rx.deliver(resent[0])
    assert rx.conn.snd.una == rx.conn.snd.max
    counters = rx.peer.stack.counters
    assert counters["rack_losses"] == 1
    assert counters["sack_recoveries"] == 1
    assert counters["tlp_probes"] == counters["rto_timeouts"] == 0


def test_a_segment_late_by_less_than_the_reordering_window_is_not_resent() -> None:
    """Reordering, not loss: the eighth segment arrives 2 ms after the ninth, inside the
    2.5 ms window. No retransmission, the timer is stopped, and RACK has seen reordering."""
    rx = _receiver()
    flight = _burst(rx)
    rx.peer.advance(RTT)
    for seg in flight[:7] + flight[8:9]:
        rx.deliver(seg)
    assert rx.conn.timers.rack is not None
    rx.peer.advance(0.002)
    answers = rx.deliver(flight[7]) + rx.deliver(flight[9])
    assert _data(answers) == []
    assert rx.conn.snd.una == rx.conn.snd.max
    assert rx.conn.timers.rack is None
    assert rx.conn.loss.rack.reordering_seen
    rx.peer.advance(5.0)
    counters = rx.peer.stack.counters
    assert counters["retrans_segs"] == counters["rack_losses"] == 0
    assert counters["sack_recoveries"] == 0


def _lose_a_retransmission(rack: bool) -> tuple[LinuxLikeReceiver, list[Sent], list[Sent]]:
    """Fifty segments, the fourth lost and its first resend too: the copies of the fourth,
    and the segments that went out in the same instant as its last copy."""
    rx = _receiver(rack=rack)
    flight = _data(rx.send(bytes(50 * MSS)))
    lost = flight[3].seq
    rx.run(flight, lambda seg, earlier: seg.seq == lost and earlier < 2)
    copies = [s for s in rx.peer.sent if s.payload and s.seq == lost]
    assert len(copies) == 3
    return rx, copies, [s for s in rx.peer.sent if s.payload and s.time == copies[2].time]


def test_a_lost_fast_retransmission_is_resent_on_the_first_sack_of_data_sent_after_it() -> None:
    """The resend was the last segment of its burst; the data the next ACKs let out after
    it is SACKed one round trip later, and the first of those SACKs shows the resend lost
    (in recovery the window is 0): it goes again at once, ahead of new data, where the
    DupThresh rule waited for three segments' worth of SACKs."""
    rx, copies, burst = _lose_a_retransmission(rack=True)
    assert burst[0] is copies[2]
    assert copies[2].time == _exactly(copies[1].time + 2 * RTT)
    _, old_copies, old_burst = _lose_a_retransmission(rack=False)
    assert [s.time for s in old_copies] == [s.time for s in copies]
    assert old_burst.index(old_copies[2]) == 2
    counters = rx.peer.stack.counters
    assert counters["lost_retransmits"] == 1
    assert counters["rack_losses"] == 2
    assert counters["fast_retransmits"] == 2
    assert counters["sack_recoveries"] == 1
    assert counters["rto_timeouts"] == 0


def test_a_dsack_for_a_needless_resend_widens_the_reordering_window() -> None:
    """RFC 8985 6.2 step 4: the seventh segment is only late, but three SACKed segments make
    the window 0 and it is resent; the D-SACK for the resend adds a step of min_RTT / 4, so
    the next loss waits RTT + 2 min_RTT / 4 for the reordering timer."""
    rx = _receiver()
    flight = _burst(rx)
    rx.peer.advance(RTT)
    resent = []
    for i, seg in enumerate(flight):
        if i != 6:
            resent += _data(rx.deliver(seg))
    assert [s.seq for s in resent] == [flight[6].seq]
    rack = rx.conn.loss.rack
    srtt = rx.conn.rtt.srtt
    assert rack.reo_wnd_mult == 1
    assert rack.reo_wnd(0, MSS, srtt) == _exactly(RTT / 4)
    rx.peer.advance(0.001)
    rx.deliver(flight[6])  # the original, late
    assert rx.conn.snd.una == rx.conn.snd.max
    rx.peer.advance(RTT - 0.001)
    rx.deliver(resent[0])  # the resend: the receiver has it, and says so with a D-SACK
    assert rack.reo_wnd_mult == 2
    assert rack.reo_wnd(0, MSS, srtt) == _exactly(2 * RTT / 4)
    rx.peer.advance(0.05)
    second = _data(rx.send(bytes(2 * MSS)))  # what cwnd lets out after the recovery
    assert len(second) == 2
    rx.peer.advance(RTT)
    rx.deliver(second[1])  # the first is lost
    due = second[0].time + RTT + 2 * RTT / 4
    assert rx.conn.timers.rack == _exactly(due)
    again = _data(rx.peer.advance(0.1))
    assert [s.seq for s in again][:1] == [second[0].seq]
    assert again[0].time == _exactly(due)


def test_new_data_of_one_burst_is_one_range_whose_later_parts_count_as_sent_later() -> None:
    """A pass's new segments, each right after the one before, are one transmission (one
    SentRange); within it the end sequence number tells which went later, so the SACK of
    its third segment finds the two before it lost as it would with a range each."""
    rack = Rack()
    for k in range(4):  # one pass at t=1.0
        rack.sent(k * MSS, (k + 1) * MSS, 1.0, k * MSS)
    rack.sent(4 * MSS, 5 * MSS, 1.1, 4 * MSS)  # the next pass
    assert [(r.start, r.end, r.order) for r in rack._ranges or ()] == [
        (0, 4 * MSS, 1), (4 * MSS, 5 * MSS, 2)]
    rack.on_ack(0, ((2 * MSS, 3 * MSS),), 5 * MSS, 1.02)
    assert rack.advance() and (rack.order, rack.end) == (1, 3 * MSS)
    rack.in_recovery = True  # no reordering window (RFC 8985 6.2 step 4)
    # Both segments before the SACKed one, sent with it, are lost; the one after it is not.
    assert rack.detect(1.02, SackScoreboard(), MSS, RTT) == (2, 0, 0.0)
    assert [(r.start, r.lost, r.delivered) for r in rack._ranges or ()] == [
        (0, True, False), (2 * MSS, False, True), (3 * MSS, False, False),
        (4 * MSS, False, False)]
    # A resend is a transmission of its own, and new data after it starts another range.
    rack.sent(0, MSS, 1.03, 5 * MSS)
    rack.sent(5 * MSS, 6 * MSS, 1.03, 5 * MSS)
    ranges = rack._ranges or []
    first, last = ranges[0], ranges[-1]
    assert (first.start, first.end, first.order, first.retransmitted) == (0, MSS, 3, True)
    assert (last.start, last.end, last.order) == (5 * MSS, 6 * MSS, 4)
