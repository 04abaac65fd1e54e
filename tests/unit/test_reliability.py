"""Reliable delivery in the sans-I/O core (issue 5): reassembly, SACK, fast recovery,
congestion control, delayed ACK, Nagle, keepalive and the user timeout, on a virtual clock."""

from __future__ import annotations

import pytest

from tcpstack.tcp import congestion
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.congestion.base import SSTHRESH_UNSET
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.reassembly import ReassemblyQueue
from tcpstack.tcp.sack import SackScoreboard
from tcpstack.tcp.segment import ACK, SYN
from tcpstack.tcp.state import State

from .link_pair import Frame, LinkPair
from .scripted_peer import ScriptedPeer
from .test_stack_pair import data_frames, pattern, transfer

MSS = 1460

# ---------------------------------------------------------------------- reassembly queue


def test_reassembly_delivers_when_the_hole_fills_and_trims_overlaps() -> None:
    q = ReassemblyQueue()
    q.add(110, b"KLMNO", rcv_nxt=100, window=1000)       # 110..115
    q.add(105, b"FGHIJKLM", rcv_nxt=100, window=1000)    # overlaps: 105..113
    assert len(q) == 10                                   # 105..115, the overlap kept once
    assert q.pop_ready(100) == b""                        # the hole 100..105 remains
    assert q.pop_ready(105) == b"FGHIJKLMNO"
    assert not q


@pytest.mark.parametrize(("later_seq", "later", "expected"), [
    (105, b"fghijklm", b"fghijKLMNO"),     # overlaps the front of the queued block
    (105, b"fghijklmnopq", b"fghijKLMNOpq"),  # covers the queued block and goes beyond
    (112, b"mn", b"KLMNO"),                # lies inside the queued block
])
def test_reassembly_overlap_keeps_the_bytes_received_first(later_seq: int, later: bytes,
                                                           expected: bytes) -> None:
    """Where two out-of-order segments carry different bytes for the same sequence numbers,
    the queue keeps what arrived first (docs/DECISIONS.md): a later copy only adds the
    sequence space it is the first to bring."""
    q = ReassemblyQueue()
    q.add(110, b"KLMNO", rcv_nxt=100, window=1000)
    q.add(later_seq, later, rcv_nxt=100, window=1000)
    start = min(110, later_seq)
    assert q.pop_ready(start) == expected
    assert not q


def test_reassembly_segment_bridging_two_blocks_keeps_both_blocks_bytes() -> None:
    q = ReassemblyQueue()
    q.add(105, b"FG", rcv_nxt=100, window=1000)
    q.add(110, b"KL", rcv_nxt=100, window=1000)
    q.add(105, b"fghijkl", rcv_nxt=100, window=1000)
    assert q.sack_blocks(4) == [(105, 112)]
    assert q.pop_ready(105) == b"FGhijKL"


def test_reassembly_keeps_only_what_fits_in_the_window() -> None:
    q = ReassemblyQueue()
    q.add(2**32 - 5, b"0123456789", rcv_nxt=2**32 - 10, window=8)  # across the wrap
    assert len(q) == 3
    assert q.pop_ready(2**32 - 5) == b"012"


def test_reassembly_reports_most_recent_block_first() -> None:
    q = ReassemblyQueue()
    q.add(200, b"x" * 10, rcv_nxt=100, window=1000)
    q.add(300, b"y" * 10, rcv_nxt=100, window=1000)
    assert q.sack_blocks(4) == [(300, 310), (200, 210)]


def _receiving_peer() -> tuple[ScriptedPeer, Connection, int]:
    """A connection the stack accepted, and the peer's sequence number that stands for 100,
    so that 100 + n is the n-th byte of the stream (as in the queue tests above)."""
    peer = ScriptedPeer(TcpConfig(delayed_ack=0.0))
    peer.listen(80)
    peer_isn = 5_000_000
    synack = peer.inject(SYN, peer_isn, options=tcpseg.encode_options(mss=1460))
    peer.inject(ACK, peer_isn + 1, synack[0].seq + 1)
    return peer, peer.accepted(), peer_isn + 1 - 100


def test_connection_delivers_the_first_received_copy_of_overlapping_out_of_order_bytes() -> None:
    """The same policy end to end: two out-of-order segments disagree about 110..113, the
    hole before them fills, and the application reads the copy that arrived first."""
    peer, conn, base = _receiving_peer()
    peer.inject(ACK, base + 110, conn.snd.nxt, payload=b"KLMNO")
    peer.inject(ACK, base + 105, conn.snd.nxt, payload=b"fghijklm")
    assert conn.rcv.unread is None and conn.rcv.unread_bytes == 0
    ack = peer.inject(ACK, base + 100, conn.snd.nxt, payload=b"abcde")
    assert [s.ack for s in ack] == [base + 115]
    assert peer.app_read(conn) == b"abcdefghijKLMNO"


@pytest.mark.parametrize(("filler", "expected"), [
    (b"abcdefghijklm", b"abcdefghijKLMNO"),          # ends inside the queued block
    (b"abcdefghijklmnopq", b"abcdefghijKLMNOpq"),    # runs past it
])
def test_segment_filling_the_hole_keeps_the_queued_bytes_it_overlaps(filler: bytes,
                                                                     expected: bytes) -> None:
    """An in-order segment that fills the hole and overlaps data queued beyond it brings the
    later copy of those bytes: the queued ones, received first, are what is delivered."""
    peer, conn, base = _receiving_peer()
    peer.inject(ACK, base + 110, conn.snd.nxt, payload=b"KLMNO")
    ack = peer.inject(ACK, base + 100, conn.snd.nxt, payload=filler)
    assert [s.ack for s in ack] == [base + 100 + len(expected)]
    assert peer.app_read(conn) == expected


def test_scoreboard_finds_holes_below_the_highest_sack() -> None:
    sb = SackScoreboard()
    sb.add(((1300, 1400), (1100, 1200)), snd_una=1000, snd_max=2000)
    assert sb.sacked_bytes() == 200
    assert list(sb.holes(1000, 2000)) == [(1000, 1100, 200), (1200, 1300, 100),
                                          (1400, 2000, 0)]
    sb.advance(1150)
    assert sb.sacked_bytes() == 150
    sb.add(((5000, 6000),), snd_una=1150, snd_max=2000)  # never sent: ignored
    assert sb.sacked_bytes() == 150


# ---------------------------------------------------------------------- loss recovery


def _drop_data(numbers: set[int]) -> tuple[list[int], object]:
    """Drop the first transmission of the data segments from a whose index (in order of
    first transmission) is in `numbers`; retransmissions always get through."""
    seen: list[int] = []

    def drop(frame: Frame) -> bool:
        if frame.sender != "a" or not frame.is_tcp or not frame.payload_len:
            return False
        if frame.segment.seq in seen:
            return False
        seen.append(frame.segment.seq)
        return len(seen) - 1 in numbers
    return seen, drop


@pytest.mark.parametrize("algorithm", ["newreno", "cubic"])
def test_single_loss_is_repaired_by_fast_retransmit_before_any_timeout(algorithm: str) -> None:
    _, drop = _drop_data({20})
    config = TcpConfig(congestion=algorithm)
    pair = LinkPair(config_a=config, config_b=TcpConfig(congestion=algorithm), drop=drop)
    client, server = pair.established_pair()
    data = pattern(300_000, seed=3)
    assert transfer(pair, client, server, data) == data
    assert client.counts.retransmits == 1
    frames = data_frames(pair, "a")
    lost = frames[20]
    again = next(f for f in frames[21:] if f.segment.seq == lost.segment.seq)
    assert again.time - lost.time < 0.1  # three RTTs of dupacks, not a 200 ms RTO
    # The loss halved (NewReno) or cut to 0.7 (CUBIC) the window: ssthresh was set.
    assert client.cc.ssthresh < SSTHRESH_UNSET


def test_receiver_reports_out_of_order_data_in_sack_blocks() -> None:
    _, drop = _drop_data({5})
    pair = LinkPair(drop=drop)
    client, server = pair.established_pair()
    assert client.loss.sack and server.loss.sack
    data = pattern(40 * MSS, seed=4)
    assert transfer(pair, client, server, data) == data
    dupacks = [f for f in pair.tcp_frames("b") if f.segment.options.sack]
    assert dupacks, "duplicate ACKs must carry SACK blocks"
    left, right = dupacks[0].segment.options.sack[0]
    lost = data_frames(pair, "a")[5]
    # The block starts where the lost segment ends: MSS less the timestamps' 12 bytes.
    assert lost.payload_len == MSS - 12
    assert left == (lost.segment.seq + MSS - 12) & 0xFFFFFFFF and right > left


def test_several_losses_in_one_window_are_repaired_with_sack_without_timeout() -> None:
    _, drop = _drop_data({10, 14, 18, 22})
    pair = LinkPair(drop=drop)
    client, server = pair.established_pair()
    data = pattern(200_000, seed=5)
    assert transfer(pair, client, server, data) == data
    assert client.rtt.backoff_shift == 0
    assert client.counts.retransmits == 4  # each hole resent exactly once


def test_without_sack_newreno_repairs_several_losses_with_partial_acks() -> None:
    _, drop = _drop_data({10, 14, 18})
    config = TcpConfig(sack=False, congestion="newreno")
    pair = LinkPair(config_a=config, config_b=TcpConfig(sack=False), drop=drop)
    client, server = pair.established_pair()
    assert not client.loss.sack
    data = pattern(200_000, seed=6)
    assert transfer(pair, client, server, data) == data
    assert client.rtt.backoff_shift == 0
    assert client.counts.retransmits == 3


def test_newreno_halves_and_cubic_backs_off_by_beta() -> None:
    for name, factor in (("newreno", 0.5), ("cubic", 0.7)):
        cc = congestion.create(name, MSS)
        cc.cwnd = 100 * MSS
        cc.on_congestion(100 * MSS, 0.0)
        assert cc.ssthresh == int(100 * MSS * factor)
        assert cc.cwnd == cc.ssthresh


def test_cubic_grows_back_towards_w_max_and_beyond() -> None:
    cc = congestion.create("cubic", MSS)
    cc.cwnd = 100 * MSS
    cc.on_congestion(100 * MSS, 0.0)
    now = 0.0
    while now < 10.0:  # ten seconds of ACKs at a 10 ms RTT
        now += 0.01
        cc.on_ack(cc.cwnd, now, 0.01)
    assert cc.cwnd > 100 * MSS


def test_unknown_congestion_control_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown congestion control 'vegas'"):
        congestion.create("vegas", MSS)


# ---------------------------------------------------------------------- ACK policy


def test_one_small_segment_is_acked_after_the_delayed_ack_timeout() -> None:
    pair = LinkPair()
    client, _server = pair.established_pair()
    pair.send(client, b"ping")
    pair.settle()
    assert client.snd.una != client.snd.max, "the ACK must wait"
    pair.advance(0.05)
    assert client.snd.una == client.snd.max
    ack = pair.tcp_frames("b")[-1]
    assert ack.time - data_frames(pair, "a")[-1].delivered_at == pytest.approx(0.04)  # type: ignore[operator]


def test_every_second_full_segment_is_acked_at_once() -> None:
    pair = LinkPair(config_a=TcpConfig(nodelay=True))
    client, _server = pair.established_pair()
    pair.send(client, bytes(2 * MSS))
    pair.settle()
    assert client.snd.una == client.snd.max


def test_nagle_holds_a_small_segment_while_data_is_unacked_and_nodelay_does_not() -> None:
    for nodelay, sent_at_once in ((False, 1), (True, 2)):
        pair = LinkPair(config_a=TcpConfig(nodelay=nodelay))
        client, _server = pair.established_pair()
        pair.send(client, b"a")
        pair.a.flush(pair.now)
        pair.send(client, b"b")  # "a" is not acknowledged yet
        pair.a.flush(pair.now)
        assert len(pair.a.output) == sent_at_once


# ---------------------------------------------------------------------- timeouts


def test_keepalive_probes_an_idle_peer_and_gives_up_when_it_is_gone() -> None:
    config = TcpConfig(keepalive=True, keepalive_idle=10, keepalive_interval=2,
                       keepalive_count=3)
    gone = False
    pair = LinkPair(config_a=config, drop=lambda f: gone and f.sender == "b")
    client, _server = pair.established_pair()
    pair.advance(10.5)
    probes = [f for f in pair.tcp_frames("a") if f.time > 9]
    assert len(probes) == 1 and probes[0].segment.seq == (client.snd.una - 1) & 0xFFFFFFFF
    assert client.state is State.ESTABLISHED  # the peer answered: idle again
    gone = True
    pair.advance(30)
    assert client.state is State.CLOSED
    assert ConnEvent.TIMEOUT in pair.events_of(client)
    assert "keepalive" in (client.error or "")


def test_user_timeout_aborts_when_data_stays_unacknowledged() -> None:
    config = TcpConfig(user_timeout=3.0)
    gone = False
    pair = LinkPair(config_a=config, drop=lambda f: gone)
    client, _server = pair.established_pair()
    gone = True
    pair.send(client, b"never acknowledged")
    start = pair.now
    pair.advance(10)
    assert client.state is State.CLOSED
    closed_at = next(t for t, name, _, _, new in pair.transitions
                     if name == "a" and new is State.CLOSED)
    assert closed_at - start == pytest.approx(3.0, abs=0.01)
    assert "unacknowledged for 3 s" in (client.error or "")


def test_congestion_control_is_chosen_per_listener_and_per_connection() -> None:
    pair = LinkPair(config_a=TcpConfig(congestion="cubic"), config_b=TcpConfig())
    pair.b.listen(80, config=TcpConfig(congestion="newreno"))
    client = pair.a.connect(bytes([10, 0, 0, 2]), 80, pair.now,
                            config=TcpConfig(congestion="newreno"))
    plain = pair.a.connect(bytes([10, 0, 0, 2]), 80, pair.now)
    pair.settle()
    assert client.state is State.ESTABLISHED
    assert client.cc.name == "newreno" and plain.cc.name == "cubic"
    assert {conn.cc.name for conn in pair.accepted(80)} == {"newreno"}


def test_scoreboard_holes_know_how_much_was_sacked_above_them() -> None:
    sb = SackScoreboard()
    sb.add(((1300, 1400), (1100, 1200)), snd_una=1000, snd_max=2000)
    assert list(sb.holes(1000, 2000)) == [(1000, 1100, 200), (1200, 1300, 100),
                                          (1400, 2000, 0)]


@pytest.mark.parametrize(("algorithm", "low", "high"), [("newreno", 0.0, 0.5),
                                                       ("cubic", 0.69, 0.71)])
def test_cwnd_trace_shows_the_cut_at_a_loss(algorithm: str, low: float, high: float) -> None:
    """The trace (what stat and plot show) records the window a loss cut and the cut: CUBIC
    backs off to 0.7 of cwnd; NewReno halves what is in flight (RFC 5681 equation 4), which is
    at most cwnd, so ssthresh is at most half the window."""
    _, drop = _drop_data({60})
    pair = LinkPair(config_a=TcpConfig(congestion=algorithm, cwnd_trace=True), drop=drop)
    client, server = pair.established_pair()
    data = pattern(400_000, seed=8)
    assert transfer(pair, client, server, data) == data
    assert client.cwnd_trace is not None and server.cwnd_trace is None  # only where asked
    trace = list(client.cwnd_trace)
    cut = next(i for i, (_, _, ssthresh) in enumerate(trace) if ssthresh < SSTHRESH_UNSET)
    (_, cwnd_before, _), (_, _, ssthresh_after) = trace[cut - 1], trace[cut]
    assert low <= ssthresh_after / cwnd_before <= high
    assert ssthresh_after >= 2 * MSS
