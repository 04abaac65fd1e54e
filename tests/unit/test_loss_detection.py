"""Loss detection against a receiver that behaves like Linux (tests/unit/linux_receiver.py):
its window grows on every ACK and its duplicate ACKs carry SACK blocks. With SACK, RFC 6675
section 2 makes an ACK that SACKs new octets a duplicate whatever its window, and IsLost()
can start recovery before the third one; without SACK, RFC 5681's definition stands, window
and all. Times are virtual, so "at once" is an exact equality."""

from __future__ import annotations

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.congestion.newreno import NewReno
from tcpstack.tcp.recovery import Action, FastRecovery
from tcpstack.tcp.sack import is_dsack
from tcpstack.tcp.seq import MASK
from tests.unit.linux_receiver import LinuxLikeReceiver
from tests.unit.scripted_peer import Sent

MSS = 1460


def _config(**overrides: object) -> TcpConfig:
    settings: dict[str, object] = {"nodelay": True, "congestion": "newreno"}
    settings.update(overrides)
    return TcpConfig(**settings)  # type: ignore[arg-type]


def _flight(rx: LinuxLikeReceiver, more: int = 0) -> list[Sent]:
    """The application writes ten full segments and `more`; the ten go out (the initial
    window) and are returned."""
    sent = [s for s in rx.send(bytes((10 + more) * MSS)) if s.payload]
    assert [len(s.payload) for s in sent] == [MSS] * 10
    return sent


def _resends(answer: list[Sent], of: Sent) -> list[Sent]:
    return [s for s in answer if s.payload and s.seq == of.seq]


def _finish(rx: LinuxLikeReceiver) -> None:
    """Deliver whatever the stack still has outstanding, then let every timer run out."""
    while rx.conn.snd.una != rx.conn.snd.max:
        pending = [s for s in rx.peer.sent if s.payload
                   and ((s.seq + len(s.payload) - rx.rcv_nxt) & MASK) < 1 << 31
                   and s.seq + len(s.payload) != rx.rcv_nxt]
        assert pending, "the stack has data outstanding but sent nothing to deliver"
        rx.deliver(pending[-1] if pending[-1].seq == rx.rcv_nxt else
                   next(s for s in pending if s.seq == rx.rcv_nxt))
    rx.peer.advance(5.0)


def test_a_sack_peer_growing_its_window_gets_a_loss_fast_retransmitted_without_an_rto() -> None:
    rx = LinuxLikeReceiver(_config())
    flight = _flight(rx)
    rx.peer.advance(0.005)
    rx.deliver(flight[0])
    rx.deliver(flight[1])
    # flight[2] is lost; each duplicate ACK that follows offers a larger window.
    windows = []
    answers = []
    for seg in flight[3:6]:
        answers.append(rx.deliver(seg))
        windows.append(rx.window)
    assert windows == sorted(set(windows))  # strictly growing, as Linux's do
    assert _resends(answers[0] + answers[1], flight[2]) == []
    resent = _resends(answers[2], flight[2])
    assert len(resent) == 1, "the third SACKing duplicate ACK must trigger fast retransmit"
    assert resent[0].time == rx.peer.now  # at once: no timer involved
    rx.deliver(resent[0])
    _finish(rx)
    counters = rx.peer.stack.counters
    assert counters["rto_timeouts"] == 0
    assert counters["fast_retransmits"] == 1
    assert counters["sack_recoveries"] == 1
    assert counters["retrans_segs"] == 1
    assert counters["lost_retransmits"] == 0


def test_one_ack_sacking_three_segments_starts_recovery_by_is_lost() -> None:
    """RFC 6675 5 step 2: IsLost(HighACK + 1) enters recovery before the third duplicate,
    as when a receiver's ACK covers several segments at once (GRO, a stretch ACK)."""
    rx = LinuxLikeReceiver(_config())
    flight = _flight(rx)
    rx.deliver(flight[0])
    rx.peer.advance(0.005)
    # flight[1] is lost; 2..4 arrive together and draw one ACK with one SACK block.
    rx.grow_window = False
    for seg in flight[2:4]:
        rx._blocks = [(flight[2].seq, (seg.seq + MSS) & MASK)]  # no ACK for these two
    answer = rx.deliver(flight[4])
    assert rx._blocks == [(flight[2].seq, (flight[4].seq + MSS) & MASK)]
    assert len(_resends(answer, flight[1])) == 1
    assert rx.conn.loss.episode.dupacks == 1
    assert rx.peer.stack.counters["sack_recoveries"] == 1


def test_a_cumulative_ack_that_sacks_new_data_counts_as_a_duplicate() -> None:
    """RFC 6675 2: 'regardless of its status as a cumulative acknowledgment'."""
    rx = LinuxLikeReceiver(_config())
    flight = _flight(rx)
    rx.peer.advance(0.005)
    # flight[1] is lost, flight[2] arrives but its ACK is lost, flight[0] comes late: the ACK
    # that finally covers flight[0] also SACKs flight[2], news for the hole at flight[1].
    rx._blocks = [(flight[2].seq, (flight[2].seq + MSS) & MASK)]
    rx.deliver(flight[0])
    assert rx.conn.snd.una == flight[1].seq
    assert rx.conn.loss.episode.dupacks == 1
    answer = rx.deliver(flight[3])
    assert rx.conn.loss.episode.dupacks == 2
    assert _resends(answer, flight[1]) == [], "not yet: two duplicates, 2 SMSS SACKed"
    answer = rx.deliver(flight[4])
    assert len(_resends(answer, flight[1])) == 1


def test_without_sack_a_duplicate_ack_needs_an_unchanged_window() -> None:
    """RFC 5681 2 (e): without SACK, an ACK whose window changed is a window update, not a
    duplicate; three with the same window trigger fast retransmit (at the third)."""
    rx = LinuxLikeReceiver(_config(), sack=False)
    assert not rx.conn.loss.sack
    flight = _flight(rx)
    rx.peer.advance(0.005)
    rx.deliver(flight[0])
    # flight[1] is lost; three ACKs that each grow the window are not duplicates.
    growing = [rx.deliver(seg) for seg in flight[2:5]]
    assert rx.conn.loss.episode.dupacks == 0
    assert [s for a in growing for s in _resends(a, flight[1])] == []
    rx.grow_window = False
    same = [rx.deliver(seg) for seg in flight[5:8]]
    assert [len(_resends(a, flight[1])) for a in same] == [0, 0, 1]
    counters = rx.peer.stack.counters
    assert counters["reno_recoveries"] == 1
    assert counters["sack_recoveries"] == 0
    assert counters["fast_retransmits"] == 1


def test_a_sack_peer_that_sends_no_blocks_still_gets_newreno_recovery() -> None:
    """SACK was agreed but the duplicate ACKs carry no blocks: RFC 5681's rule applies."""
    rx = LinuxLikeReceiver(_config())
    rx.sack = False  # agreed in the SYN, never used
    assert rx.conn.loss.sack
    rx.grow_window = False
    flight = _flight(rx)
    rx.peer.advance(0.005)
    rx.deliver(flight[0])
    answers = [rx.deliver(seg) for seg in flight[2:5]]
    assert [len(_resends(a, flight[1])) for a in answers] == [0, 0, 1]
    assert rx.peer.stack.counters["reno_recoveries"] == 1
    assert not rx.conn.loss.episode.sack


def test_a_lost_fast_retransmission_is_sent_again_without_waiting_for_the_rto() -> None:
    rx = LinuxLikeReceiver(_config())
    flight = _flight(rx, more=40)
    lost = flight[3].seq
    # The segment at `lost` and its fast retransmission are lost; the data sent after the
    # retransmission is SACKed, and once IsLost() holds above it the resend goes again.
    rx.run(flight, lambda seg, earlier: seg.seq == lost and earlier < 2)
    copies = [s for s in rx.peer.sent if s.payload and s.seq == lost]
    assert len(copies) == 3
    counters = rx.peer.stack.counters
    assert counters["lost_retransmits"] == 1
    assert counters["rto_timeouts"] == 0
    assert counters["sack_recoveries"] == 1
    assert counters["fast_retransmits"] == 2
    # Two round trips later, not an RTO (200 ms) later: the data sent behind the resend is
    # SACKed one round trip on, and the third segment of it (IsLost) went a round later.
    assert copies[2].time - copies[1].time == 2 * rx.rtt


def test_several_losses_in_one_window_are_each_resent_once_by_sack_recovery() -> None:
    rx = LinuxLikeReceiver(_config())
    flight = _flight(rx, more=40)
    lost = {flight[i].seq for i in (2, 5, 7)}
    rounds = rx.run(flight, lambda seg, earlier: seg.seq in lost and earlier == 0)
    counters = rx.peer.stack.counters
    assert counters["rto_timeouts"] == 0
    assert counters["fast_retransmits"] == counters["retrans_segs"] == 3
    assert counters["sack_recoveries"] == 1
    assert rounds < 12


def test_recovery_starts_again_when_the_ack_reaches_the_last_recovery_point() -> None:
    """RFC 6582 3.2 step 2: a new recovery needs an ACK that covers more than `recover`, the
    highest byte sent when the last one began, i.e. an ACK at or beyond SND.MAX of then."""
    cc = NewReno(MSS)
    recovery = FastRecovery(iss=0)
    recovery.recover = 10_000  # SND.MAX when the last recovery began
    for _ in range(2):
        assert recovery.on_duplicate_ack(cc, 10_000, 20_000, 0.0) is Action.NONE
    assert recovery.on_duplicate_ack(cc, 10_000, 20_000, 0.0) is Action.RETRANSMIT
    below = FastRecovery(iss=0)
    below.recover = 10_001
    for _ in range(3):
        assert below.on_duplicate_ack(cc, 10_000, 20_000, 0.0) is Action.NONE


def test_a_dsack_block_is_told_by_its_place_below_the_ack_or_inside_the_next_block() -> None:
    """RFC 2883 4: the first SACK block reports a duplicate when it is at or below the
    cumulative ACK, or lies within the second block."""
    assert is_dsack(((900, 1000),), ack=1000)
    assert not is_dsack(((1100, 1200),), ack=1000)
    assert is_dsack(((1300, 1400), (1200, 1500)), ack=1000)
    assert not is_dsack(((1600, 1700), (1200, 1500)), ack=1000)
    assert is_dsack(((2**32 - 100, 2**32 - 10),), ack=5)  # below an ACK past the wrap
