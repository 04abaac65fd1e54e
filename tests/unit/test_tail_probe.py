"""The tail loss probe (RFC 8985 section 7) against a Linux-like receiver: when the end of a
flight or the ACKs for it are lost, a probe about two round trips later, not the 200 ms RTO,
finds out. Times are virtual and exact."""

from __future__ import annotations

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.tail_probe import PTO_FLOOR
from tests.unit.linux_receiver import LinuxLikeReceiver
from tests.unit.scripted_peer import Sent

MSS = 1460


def _receiver() -> LinuxLikeReceiver:
    return LinuxLikeReceiver(TcpConfig(nodelay=True, congestion="newreno"))


def _send(rx: LinuxLikeReceiver, segments: int) -> list[Sent]:
    sent = [s for s in rx.send(bytes(segments * MSS)) if s.payload]
    assert len(sent) == min(segments, 10)  # the initial window
    return sent


def _pto(rx: LinuxLikeReceiver) -> float:
    srtt = rx.conn.rtt.srtt
    assert srtt is not None
    return max(2 * srtt, PTO_FLOOR)


def test_a_lost_tail_is_probed_after_two_round_trips_and_repaired_without_an_rto() -> None:
    rx = _receiver()
    flight = _send(rx, 10)
    rx.peer.advance(0.005)
    for seg in flight[:8]:
        rx.deliver(seg)  # the last two segments are lost
    due = rx.peer.now + _pto(rx)
    assert rx.conn.deadline == due
    probe = rx.peer.advance_to(due)
    # No new data to send: the probe is the last segment again.
    assert [(s.time, s.seq, len(s.payload)) for s in probe] == [(due, flight[9].seq, MSS)]
    # Its SACK shows the hole before it, which was sent a PTO earlier: lost, resent at once.
    repair = rx.deliver(probe[0])
    assert [(s.seq, len(s.payload)) for s in repair if s.payload] == [(flight[8].seq, MSS)]
    rx.deliver(repair[0])
    assert rx.conn.snd.una == rx.conn.snd.max
    rx.peer.advance(5.0)
    counters = rx.peer.stack.counters
    assert counters["tlp_probes"] == 1
    assert counters["rto_timeouts"] == 0
    assert counters["sack_recoveries"] == 1
    assert counters["tlp_recoveries"] == 0  # the recovery made the one window cut


def test_lost_acks_at_the_end_of_a_flight_are_probed_with_new_data() -> None:
    rx = _receiver()
    flight = _send(rx, 30)  # cwnd holds back the other twenty
    sent_at = rx.peer.now
    rx.peer.advance(0.005)
    for seg in flight:
        rx.deliver(seg, ack_lost=True)
    due = sent_at + _pto(rx)
    probe = rx.peer.advance_to(due)
    assert [(s.time, s.seq, len(s.payload)) for s in probe] == [
        (due, (flight[9].seq + MSS) & 0xFFFFFFFF, MSS)]
    cwnd = rx.conn.cc.cwnd
    more = rx.deliver(probe[0])  # its ACK covers the whole flight: on with the transfer
    assert rx.conn.snd.una == probe[0].seq + MSS
    assert [s for s in more if s.payload]
    assert rx.conn.cc.cwnd > cwnd
    counters = rx.peer.stack.counters
    assert counters["tlp_probes"] == 1
    assert counters["tlp_recoveries"] == 0
    assert counters["rto_timeouts"] == 0


def test_a_probe_the_peer_did_not_need_is_dsacked_and_leaves_cwnd_alone() -> None:
    rx = _receiver()
    flight = _send(rx, 10)
    rx.peer.advance(0.005)
    for seg in flight[:8]:
        rx.deliver(seg)
    for seg in flight[8:]:
        rx.deliver(seg, ack_lost=True)  # all arrived; the last two ACKs did not
    cwnd = rx.conn.cc.cwnd
    probe = rx.peer.advance(_pto(rx))
    assert [(s.seq, len(s.payload)) for s in probe] == [(flight[9].seq, MSS)]
    rx.deliver(probe[0])  # a duplicate: the ACK carries a D-SACK block for it
    assert rx.conn.snd.una == rx.conn.snd.max
    assert rx.conn.cc.cwnd == cwnd + 2 * MSS  # slow start goes on: no cut
    assert rx.peer.stack.counters["tlp_recoveries"] == 0


def test_a_probe_that_repairs_the_last_segment_tells_congestion_control() -> None:
    """RFC 8985 7.4: the probe was the only copy to arrive, so a loss happened."""
    rx = _receiver()
    flight = _send(rx, 10)
    rx.peer.advance(0.005)
    for seg in flight[:8]:
        rx.deliver(seg)
    rx.deliver(flight[8], ack_lost=True)  # two in flight for the stack; the last is lost
    cwnd = rx.conn.cc.cwnd
    probe = rx.peer.advance(_pto(rx))
    assert [(s.seq, len(s.payload)) for s in probe] == [(flight[9].seq, MSS)]
    rx.deliver(probe[0])
    assert rx.conn.snd.una == rx.conn.snd.max
    assert rx.conn.cc.ssthresh == rx.conn.cc.cwnd == cwnd // 2  # NewReno halves
    assert rx.peer.stack.counters["tlp_recoveries"] == 1


def test_one_segment_in_flight_waits_for_a_delayed_ack_so_the_rto_comes_first() -> None:
    """RFC 8985 7.2: with one segment out, PTO adds 200 ms for the peer's delayed ACK, which
    puts it after a 200 ms RTO: no probe is armed."""
    rx = _receiver()
    flight = _send(rx, 10)
    rx.peer.advance(0.005)
    for seg in flight[:9]:
        rx.deliver(seg)
    assert rx.conn.timers.probe is None
    assert rx.conn.deadline == rx.conn.timers.rto


def test_no_probe_when_the_option_is_off() -> None:
    rx = LinuxLikeReceiver(TcpConfig(nodelay=True, tail_loss_probe=False))
    flight = _send(rx, 10)
    rx.peer.advance(0.005)
    rx.deliver(flight[0])
    assert rx.conn.deadline == rx.conn.timers.rto
    assert rx.peer.stack.counters["tlp_probes"] == 0
