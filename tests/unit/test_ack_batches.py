"""Pure ACKs of one connection that arrive in one batch from the link are taken as one
(NetworkStack holds them; Connection.acks_together says which, receive_acks takes them):
only ACKs that each move SND.UNA on, in sequence and carrying nothing else, outside loss
recovery. Taken so, they must leave the connection as taking each in turn does (congestion
control still counts each ACK's bytes as its own), but for one thing by design: one RTT
sample instead of one per ACK (docs/DECISIONS.md).
Each test runs the same batch through two identical stacks, once as it is and once with
every segment taken alone, and compares the state and what is sent."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.segment import ACK, FIN, PSH
from tests.unit.scripted_peer import ScriptedPeer, Sent
from tests.unit.test_icmp_errors import _icmp

PEER_ISS = 5_000_000
MSS = 1448  # 1460 less the timestamps option
WINDOW = 502  # the peer's window field, scaled by 2**7
RTT = 0.04  # of the handshake; the ACKs of the tests come sooner (no probe timer fires)


class Side:
    """One stack with a Linux-like passive open (MSS, SACK, timestamps, window scale) that
    took RTT, and 100 kB of ours queued, the first flight of it sent."""

    def __init__(self, config: TcpConfig | None = None) -> None:
        self.peer = peer = ScriptedPeer(config)
        peer.listen(80)
        self.conn, syn_ack = peer.open_like_linux(PEER_ISS, rtt=RTT)
        self.iss = syn_ack.seq
        peer.app_send(self.conn, bytes(100_000))
        self.flight = peer.take()

    def ack(self, acked: int, *, tsval: int = 1002, tsecr: int | None = None,
            window: int = WINDOW, flags: int = ACK, payload: bytes = b"",
            options: bytes = b"") -> bytes:
        """The packet of a peer segment at its next sequence number acking `acked` bytes of
        ours; TSecr is that of our first data segment unless told."""
        echo = self.flight[0].options.tsval or 0 if tsecr is None else tsecr
        return self.peer.packet(flags, (PEER_ISS + 1) & 0xFFFFFFFF,
                                (self.iss + 1 + acked) & 0xFFFFFFFF, window=window,
                                payload=payload,
                                options=tcpseg.encode_timestamps(tsval, echo) + options)

    def state(self, timers: bool = True) -> tuple[object, ...]:
        """All that must agree; `timers`: also the next deadline, which follows the RTT
        estimate."""
        conn = self.conn
        counters = {k: v for k, v in conn.counters.items() if k != "acks_coalesced"}
        return (conn.state, conn.rcv.nxt, conn.snd.una, conn.snd.nxt, conn.snd.max,
                conn.snd.wnd, conn.snd.wl1, conn.snd.wl2, conn.tx.ts.recent,
                conn.counts.segments_in, len(conn.snd.buffer), conn.rcv.unread_bytes,
                conn.cc.cwnd, conn.cc.ssthresh, conn.loss.episode.active,
                sorted(counters.items()), conn.deadline if timers else None)


def _lines(sent: list[Sent]) -> list[str]:
    return [str(s) for s in sent]


def _each_in_turn(side: Side, packets: list[bytes]) -> list[Sent]:
    """The batch, every segment of it taken alone."""
    with mock.patch.object(Connection, "acks_together", return_value=False):
        return side.peer.inject_batch(packets)


def _coalesced(side: Side) -> int:
    return side.peer.stack.counters["acks_coalesced"]


@pytest.mark.instruments
def test_pure_acks_of_one_batch_are_taken_as_one_and_leave_what_each_would() -> None:
    together, apart, newest = Side(), Side(), Side()
    assert together.state() == apart.state()
    start_cwnd = together.conn.cc.cwnd
    for side in (together, apart, newest):
        side.peer.advance(RTT / 2)
    # Linux's way: every ACK covers two segments, grows the window and echoes our TSval.
    packets = [together.ack(2 * MSS * i, tsval=1001 + i, window=WINDOW + 10 * i)
               for i in (1, 2, 3, 4)]
    sent_together = together.peer.inject_batch(packets)
    sent_apart = _each_in_turn(apart, packets)
    assert _lines(sent_together) == _lines(sent_apart)
    assert len(sent_together) == 16  # 8 segments acked and 8 more of window: slow start
    assert together.state(timers=False) == apart.state(timers=False)
    conn = together.conn
    assert (conn.snd.una, conn.snd.wnd, conn.tx.ts.recent) == (
        together.iss + 1 + 8 * MSS, (WINDOW + 40) << 7, 1005)
    assert conn.cc.cwnd == start_cwnd + 8 * MSS
    assert conn.counts.segments_in == 1 + 4  # the handshake's ACK, then four
    assert (_coalesced(together), _coalesced(apart)) == (3, 0)
    # One RTT sample, the newest's, where each in turn takes four.
    newest.peer.inject_batch(packets[-1:])
    assert (conn.rtt.srtt, conn.rtt.rttvar) == (newest.conn.rtt.srtt, newest.conn.rtt.rttvar)
    assert conn.rtt.srtt != apart.conn.rtt.srtt


def test_byte_counting_limits_each_ack_taken_together_as_it_would_alone() -> None:
    together, apart = Side(), Side()
    start_cwnd = together.conn.cc.cwnd
    packets = [together.ack(MSS), together.ack(4 * MSS)]  # one segment, then three
    together.peer.inject_batch(packets)
    _each_in_turn(apart, packets)
    assert together.conn.snd.una == apart.conn.snd.una == together.iss + 1 + 4 * MSS
    # RFC 3465 with L = 2 SMSS: 1 for the first, 2 of the 3 for the second; not min(4, 4).
    assert together.conn.cc.cwnd == apart.conn.cc.cwnd == start_cwnd + 3 * MSS
    assert _coalesced(together) == 1


def _between(side: Side, kind: str) -> bytes:
    """A segment that must not be taken with the pure ACKs around it, after one acking
    2 MSS."""
    if kind == "duplicate ACK":
        return side.ack(2 * MSS)
    if kind == "window update":
        return side.ack(2 * MSS, window=WINDOW + 100)
    if kind == "SACK":
        sack = tcpseg.encode_sack([(side.iss + 1 + 5 * MSS, side.iss + 1 + 6 * MSS)])
        return side.ack(3 * MSS, options=sack)
    if kind == "data":
        return side.ack(3 * MSS, flags=ACK | PSH, payload=b"x" * 100)
    if kind == "FIN":
        return side.ack(3 * MSS, flags=ACK | FIN)
    if kind == "older TSval":
        return side.ack(3 * MSS, tsval=1000)
    if kind == "beyond SND.MAX":
        return side.ack(60 * MSS)
    raise AssertionError(kind)


BETWEEN = ["duplicate ACK", "window update", "SACK", "data", "FIN", "older TSval",
           "beyond SND.MAX"]


@settings(max_examples=len(BETWEEN), deadline=None)
@given(st.sampled_from(BETWEEN))
def test_a_segment_that_is_not_a_plain_new_ack_is_taken_alone_in_its_place(kind: str) -> None:
    together, apart = Side(), Side()
    packets = [together.ack(2 * MSS), _between(together, kind), together.ack(4 * MSS)]
    sent_together = together.peer.inject_batch(packets)
    sent_apart = _each_in_turn(apart, packets)
    assert _lines(sent_together) == _lines(sent_apart)
    assert together.state() == apart.state()
    assert (together.conn.rtt.srtt, together.conn.rtt.rttvar) == (
        apart.conn.rtt.srtt, apart.conn.rtt.rttvar)
    assert _coalesced(together) == 0


def test_an_icmp_error_between_them_finds_the_acks_before_it_taken() -> None:
    # Quoting our first segment: in flight until the ACK before it, so out of the window
    # after it (RFC 5927 4.1) and only counted; if the held ACK were taken after the
    # error, it would lower the path MTU.
    together, apart = Side(), Side()
    error = _icmp(3, 4, together.iss + 1, mtu=1000, sport=80, dport=40000)
    packets = [together.ack(2 * MSS), error, together.ack(4 * MSS)]
    assert _lines(together.peer.inject_batch(packets)) == _lines(_each_in_turn(apart, packets))
    assert together.state() == apart.state()
    counters = together.peer.stack.counters
    assert (counters["icmp_out_of_window"], counters["pmtu_lowered"]) == (1, 0)


def test_acks_in_loss_recovery_are_taken_each_in_turn() -> None:
    together, apart = Side(), Side()
    dupacks = []
    for n in (1, 2, 3):  # SACKed segments 2.. : the first is lost, recovery starts
        sack = tcpseg.encode_sack([(together.iss + 1 + MSS, together.iss + 1 + (1 + n) * MSS)])
        dupacks.append(together.ack(0, options=sack))
    for side in (together, apart):
        side.peer.inject_batch(dupacks)  # SACK blocks: never held
        assert side.conn.loss.episode.active
    partial = [together.ack(2 * MSS), together.ack(3 * MSS)]
    assert _lines(together.peer.inject_batch(partial)) == _lines(_each_in_turn(apart, partial))
    assert together.state() == apart.state()
    assert _coalesced(together) == 0


def test_acks_with_a_tail_probe_out_are_taken_each_in_turn() -> None:
    together, apart = Side(), Side()
    for side in (together, apart):
        side.peer.inject_batch([side.ack(2 * MSS)])  # an RTT sample: the probe is armed
        probe = side.peer.advance_to(side.peer.next_deadline() or 0.0)
        assert side.conn.loss.probe.end is not None and len(probe) == 1
    acks = [together.ack(4 * MSS, tsval=1003), together.ack(6 * MSS, tsval=1004)]
    assert _lines(together.peer.inject_batch(acks)) == _lines(_each_in_turn(apart, acks))
    assert together.state() == apart.state()
    assert _coalesced(together) == 0


# One segment of a random batch: flags, SEG.ACK from SND.UNA (in MSS), payload bytes,
# TSval from the last one, the window field, a SACK block above SND.UNA.
Step = tuple[int, int, int, int, int, bool]

segments = st.tuples(
    st.sampled_from([ACK, ACK, ACK, ACK, ACK | PSH, ACK | FIN]),
    st.sampled_from([0, 0, 1, 1, 2, 2, 3, 5, -1, 40]),
    st.sampled_from([0, 0, 0, 100]),
    st.sampled_from([1, 1, 0, -1]),
    st.sampled_from([WINDOW, WINDOW + 10, WINDOW + 50, 10]),
    st.booleans(),
)


def _run(batches: list[list[Step]], together: bool) -> list[tuple[object, ...]]:
    side = Side(TcpConfig(congestion="newreno"))
    conn, peer = side.conn, side.peer
    seen: list[tuple[object, ...]] = []
    tsval = 1001
    for batch in batches:
        packets = []
        una = conn.snd.una  # as the peer has acked it, this batch included
        for flags, acked_mss, length, ts_delta, window, sack in batch:
            tsval += ts_delta
            ack = (una + acked_mss * MSS) & 0xFFFFFFFF
            if acked_mss > 0:
                una = ack
            options = tcpseg.encode_timestamps(tsval, 0)  # TSecr 0: the timed segment
            if sack:
                options += tcpseg.encode_sack([((ack + MSS) & 0xFFFFFFFF,
                                                (ack + 2 * MSS) & 0xFFFFFFFF)])
            packets.append(peer.packet(flags, conn.rcv.nxt, ack, window=window,
                                       payload=bytes(length), options=options))
        sent = peer.inject_batch(packets) if together else _each_in_turn(side, packets)
        peer.advance(0.001)
        seen.append((tuple(_lines(sent)), side.state(), conn.rtt.srtt, conn.rtt.rttvar))
    return seen


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(segments, min_size=1, max_size=6), min_size=1, max_size=6))
def test_random_batches_leave_the_connection_as_each_segment_alone_does(
        batches: list[list[Step]]) -> None:
    # Each ACK here echoes no TSval (RTT from the one timed segment, the same either way):
    # everything must agree exactly. NewReno: CUBIC's avoidance reads SRTT, which the
    # timed segment's sample, taken before the ACKs' bytes are counted, may have moved.
    assert _run(batches, together=True) == _run(batches, together=False)


@pytest.mark.instruments
def test_the_random_batches_do_take_acks_together() -> None:
    calls = []
    taken = Connection.receive_acks

    def spy(self: Connection, segs: list[tcpseg.Segment], now: float) -> None:
        calls.append(len(segs))
        taken(self, segs, now)

    with mock.patch.object(Connection, "receive_acks", spy):
        _run([[(ACK, 1, 0, 1, WINDOW, False)] * 4], together=True)
    assert calls == [4]
