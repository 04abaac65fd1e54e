"""Congestion response inside a connection: cwnd and ssthresh when fast retransmit finds a
loss and when the recovery it starts ends, for NewReno and CUBIC, with SACK (RFC 6675) and
without (NewReno fast recovery, RFC 6582). The stack serves a Linux-like receiver
(tests/unit/linux_receiver.py) on a virtual clock that never moves, so no timer (RTO, tail
loss probe) plays a part and every number is exact.

The situation: slow start from the initial window of ten segments; the first two are acked
(cwnd 12 segments, 12 in flight), the third is lost, and the next three draw duplicate
ACKs. The first two duplicates let limited transmit (RFC 3042) send one new segment each,
which RFC 5681 3.2 step 2 (and RFC 6675 5, step 4.2) leave out of the FlightSize the cut
is computed from: the flight at the loss is 12 segments, not 14. These pin the DupThresh
rule, so RACK is off: on a clock that never moves every round trip is 0 s, and RACK
(RFC 8985 6) would deem the segment lost at the first SACK (tests/unit/test_rack.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.congestion.base import SSTHRESH_UNSET
from tcpstack.tcp.seq import MASK
from tests.unit.linux_receiver import LinuxLikeReceiver
from tests.unit.scripted_peer import Sent

MSS = 1460
FLIGHT_AT_LOSS = 12 * MSS  # SND.MAX - SND.UNA at the third duplicate, less limited transmit
CWND_AT_LOSS = 12 * MSS    # 10 segments, plus one for each of the two ACKs (slow start)
BETA_CUBIC = 0.7           # RFC 9438 4.6


def _ssthresh(algorithm: str) -> int:
    if algorithm == "newreno":
        return max(FLIGHT_AT_LOSS // 2, 2 * MSS)  # RFC 5681 equation (4)
    # RFC 9438 4.6 takes FlightSize times beta (the stack takes cwnd, which some
    # implementations do); here the flight fills cwnd, so the two agree.
    assert FLIGHT_AT_LOSS == CWND_AT_LOSS
    return max(int(FLIGHT_AT_LOSS * BETA_CUBIC), 2 * MSS)


def _data(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if s.payload]


@dataclass
class Loss:
    rx: LinuxLikeReceiver
    before: list[Sent]     # data segments sent before the loss was found, in order
    lost: Sent
    answer: list[Sent]     # what the stack sent on the third duplicate ACK


def _fast_retransmit(algorithm: str, *, sack: bool) -> Loss:
    # Without SACK a duplicate ACK needs an unchanged window (RFC 5681 2), so the receiver
    # keeps its window still; with SACK it grows it on every ACK, as Linux does.
    rx = LinuxLikeReceiver(TcpConfig(nodelay=True, congestion=algorithm, rack=False),
                           sack=sack, grow_window=sack)
    before = _data(rx.send(bytes(100 * MSS)))
    assert len(before) == 10
    for seg in before[:2]:
        before += _data(rx.deliver(seg))  # each ACK: cwnd + 1 segment, 2 segments out
    conn = rx.conn
    assert conn.cc.cwnd == CWND_AT_LOSS
    assert (conn.snd.max - conn.snd.una) & MASK == FLIGHT_AT_LOSS
    lost = before[2]
    for seg in before[3:5]:
        limited = _data(rx.deliver(seg))
        assert [s.seq for s in limited] == [conn.snd.max - MSS]  # one new segment each
        before += limited
    assert conn.cc.ssthresh == SSTHRESH_UNSET  # no cut yet
    answer = rx.deliver(before[5])
    assert (conn.snd.max - conn.snd.una) & MASK == FLIGHT_AT_LOSS + 2 * MSS
    return Loss(rx, before, lost, answer)


@pytest.mark.parametrize("sack", [True, False])
def test_limited_transmit_segments_are_left_out_of_the_flight_newreno_halves(
        sack: bool) -> None:
    """RFC 5681 3.2 step 2: 'When [RFC3042] is in use, additional data sent in limited
    transmit MUST NOT be included in this calculation': ssthresh is 12 segments / 2, not
    the 14 now outstanding / 2."""
    loss = _fast_retransmit("newreno", sack=sack)
    assert [s.seq for s in _data(loss.answer)] == [loss.lost.seq]
    assert loss.rx.conn.cc.ssthresh == FLIGHT_AT_LOSS // 2 == 6 * MSS


ALGORITHMS = ["newreno", "cubic"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_fast_retransmit_in_sack_recovery_sets_cwnd_and_ssthresh_from_the_flight(
        algorithm: str) -> None:
    """RFC 6675 5 step 4.2: cwnd = ssthresh = the reduced FlightSize (no window inflation)."""
    loss = _fast_retransmit(algorithm, sack=True)
    cc = loss.rx.conn.cc
    assert [s.seq for s in _data(loss.answer)] == [loss.lost.seq]
    assert loss.rx.conn.loss.episode.active and loss.rx.conn.loss.episode.sack
    assert (cc.ssthresh, cc.cwnd) == (_ssthresh(algorithm), _ssthresh(algorithm))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_fast_retransmit_without_sack_inflates_cwnd_by_three_segments(algorithm: str) -> None:
    """NewReno fast recovery (RFC 6582 3.2 step 1 with RFC 5681 3.2 step 3), whatever the
    congestion control: cwnd = ssthresh + 3 SMSS, the three segments the duplicates say have
    left the network."""
    loss = _fast_retransmit(algorithm, sack=False)
    cc = loss.rx.conn.cc
    assert not loss.rx.conn.loss.sack
    assert [s.seq for s in _data(loss.answer)] == [loss.lost.seq]
    assert loss.rx.conn.loss.episode.active and not loss.rx.conn.loss.episode.sack
    assert (cc.ssthresh, cc.cwnd) == (_ssthresh(algorithm), _ssthresh(algorithm) + 3 * MSS)


def _through_recovery(loss: Loss) -> tuple[list[Sent], list[Sent]]:
    """Deliver every other segment sent before the loss was found (each draws a duplicate
    ACK); returns the new segments the recovery sent meanwhile, and the retransmission."""
    retransmission = [s for s in _data(loss.answer) if s.seq == loss.lost.seq]
    during = [s for s in _data(loss.answer) if s.seq != loss.lost.seq]
    for seg in loss.before[6:]:
        during += _data(loss.rx.deliver(seg))
    return during, retransmission


def _segments(nbytes: int) -> int:
    """Whole segments of new data a window of `nbytes` lets out."""
    return nbytes // MSS


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_recovery_without_sack_inflates_per_duplicate_and_the_full_ack_sets_cwnd_by_the_flight(
        algorithm: str) -> None:
    loss = _fast_retransmit(algorithm, sack=False)
    conn = loss.rx.conn
    cc = conn.cc
    ssthresh = _ssthresh(algorithm)
    during, retransmission = _through_recovery(loss)
    # 10 more duplicates (RFC 5681 3.2 step 4: one SMSS each) take cwnd to ssthresh + 13
    # SMSS; 14 segments are outstanding, so new data fills the rest in whole segments.
    more = len(loss.before) - 6
    assert more == 10
    assert cc.cwnd == ssthresh + (3 + more) * MSS
    assert len(during) == _segments(ssthresh + (3 + more) * MSS - 14 * MSS)
    assert cc.ssthresh == ssthresh
    _full_ack(loss, during, retransmission, ssthresh)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sack_recovery_keeps_cwnd_at_ssthresh_and_the_full_ack_sets_cwnd_by_the_flight(
        algorithm: str) -> None:
    loss = _fast_retransmit(algorithm, sack=True)
    conn = loss.rx.conn
    cc = conn.cc
    ssthresh = _ssthresh(algorithm)
    during, retransmission = _through_recovery(loss)
    assert cc.cwnd == ssthresh
    # Once all that was sent before the loss was found is SACKed, the pipe (RFC 6675 4,
    # SetPipe) is the retransmission plus the new data sent during recovery, which went
    # while cwnd - pipe was a segment or more (NextSeg rule 2): (ssthresh - SMSS) of it.
    assert len(during) == _segments(ssthresh - MSS)
    assert cc.ssthresh == ssthresh
    _full_ack(loss, during, retransmission, ssthresh)


def _full_ack(loss: Loss, during: list[Sent], retransmission: list[Sent],
              ssthresh: int) -> None:
    """All but the last two segments sent during recovery arrive, their ACKs lost; then the
    retransmission arrives, and its ACK covers everything before those two: a full ACK, two
    segments still in flight. RFC 6582 3.2 step 3, option 1 (which the stack applies after
    SACK recovery too; RFC 6675 sets no rule of its own for the exit): cwnd =
    min(ssthresh, max(FlightSize, SMSS) + SMSS), here 3 SMSS."""
    rx = loss.rx
    conn = rx.conn
    recover = conn.loss.episode.recover
    assert len(during) >= 3
    for seg in during[:-2]:
        rx.deliver(seg, ack_lost=True)
    assert [s.seq for s in retransmission] == [loss.lost.seq]
    snd_max = conn.snd.max
    rx.deliver(retransmission[0])
    assert conn.snd.una == during[-2].seq
    assert ((conn.snd.una - recover) & MASK) < 1 << 31  # covers the recovery point
    assert not conn.loss.episode.active
    flight = (snd_max - conn.snd.una) & MASK  # what the full ACK leaves outstanding
    assert flight == 2 * MSS
    assert conn.cc.ssthresh == ssthresh
    assert conn.cc.cwnd == min(ssthresh, max(flight, MSS) + MSS) == 3 * MSS
