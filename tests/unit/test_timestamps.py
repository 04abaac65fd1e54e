"""RFC 7323 timestamps: negotiation on both opens (3.2), which TSval is echoed (4.3), RTT
from TSecr (4.1), PAWS (5.3) and its idle rule (5.5), and what the 12 option bytes cost a
segment (RFC 6691). The stack's timestamp clock is FixedIsn's offset plus the virtual time in
milliseconds, so every TSval below is exact; the times are binary fractions for the same
reason (int(now * 1000) of a time like 0.35 could land on 349)."""

from __future__ import annotations

import pytest

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.segment import ACK, RST, SYN, Segment
from tcpstack.tcp.sender import MAX_IP_PAYLOAD
from tcpstack.tcp.state import State
from tcpstack.tcp.timestamps import PAWS_IDLE
from tests.unit.link_pair import A_ADDR, B_ADDR, LinkPair, pattern
from tests.unit.scripted_peer import ScriptedPeer, Sent, lines

ISS = 1_000_000
PEER = 5_000_000
OFFSET = 1000  # the stack's TSval at time 0
WIN = 32768    # 1 MB >> 5, the window field of our ACKs
PAYLOAD = 1448  # MSS 1460 less the 12 option bytes of timestamps


def config(**overrides: object) -> TcpConfig:
    """ACKs at once (delayed ACK has its own test), no tail loss probe (its probe would be
    one more retransmission to account for)."""
    settings: dict[str, object] = {"delayed_ack": 0.0, "tail_loss_probe": False,
                                   "receive_buffer": 1 << 20}
    settings.update(overrides)
    return TcpConfig(**settings)  # type: ignore[arg-type]


def peer_syn_options(tsval: int | None = 7000, sack: bool = True) -> bytes:
    return tcpseg.encode_options(mss=1460, sack_permitted=sack, wscale=7,
                                 timestamps=None if tsval is None else (tsval, 0))


def ts(tsval: int, tsecr: int) -> bytes:
    return tcpseg.encode_timestamps(tsval, tsecr)


def passive_open(cfg: TcpConfig | None = None, *,
                 peer_ts: bool = True) -> tuple[ScriptedPeer, Connection, list[Sent]]:
    """The peer's SYN (TSval 7000) at 0.25 s, its ACK (TSval 7100) at 0.375 s: our SYN-ACK
    went out with TSval 1250, so the ACK's TSecr measures 125 ms."""
    peer = ScriptedPeer(cfg or config(), stack_isn=ISS, ts_offset=OFFSET)
    peer.listen(80)
    peer.advance(0.25)
    synack = peer.inject(SYN, PEER, options=peer_syn_options(7000 if peer_ts else None))
    conn = peer.accepted()
    peer.advance(0.125)
    assert peer.inject(ACK, PEER + 1, ISS + 1, window=65535 >> 7,
                       options=ts(7100, 1250) if peer_ts else b"") == []
    assert conn.state is State.ESTABLISHED
    return peer, conn, synack


def echoes(sent: list[Sent]) -> list[tuple[int, int | None, int]]:
    """(ACK field, TSval, TSecr) of each segment."""
    return [(s.ack, s.options.tsval, s.options.tsecr) for s in sent]


# ---------------------------------------------------------------------- negotiation

def test_passive_open_echoes_the_peers_tsval_in_the_syn_ack_and_on_every_segment() -> None:
    peer, conn, synack = passive_open()
    assert lines(synack) == [
        f"S. seq {ISS} ack {PEER + 1} win 65535 <mss 1460,sackOK,TS val 1250 ecr 7000,"
        "wscale 5>"]
    # Linux's layout: MSS, SACK-permitted in place of the NOPs before TS, NOP wscale.
    assert synack[0].raw_options[4:8] == bytes((4, 2, 8, 10))
    assert conn.tx.ts.ok and conn.tx.ts.recent == 7100
    assert conn.rtt.srtt == 0.125  # from the ACK's TSecr 1250, received at TSval 1375
    reply = peer.inject(ACK, PEER + 1, ISS + 1, payload=b"hello", options=ts(7200, 1250))
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 6} win {WIN} <TS val 1375 ecr 7200>"]
    assert reply[0].raw_options == ts(1375, 7200)  # NOP NOP TS, 12 bytes


def test_passive_open_without_the_peers_timestamps_sends_none() -> None:
    peer, conn, synack = passive_open(config(nodelay=True), peer_ts=False)
    assert lines(synack) == [
        f"S. seq {ISS} ack {PEER + 1} win 65535 <mss 1460,sackOK,wscale 5>"]
    assert not conn.tx.ts.ok
    sent = peer.inject(ACK, PEER + 1, ISS + 1, payload=b"hello")
    assert lines(sent) == [f". seq {ISS + 1} ack {PEER + 6} win {WIN}"]
    peer.app_send(conn, bytes(3000))
    data = peer.take()
    assert [(len(s.payload), s.raw_options) for s in data] == [(1460, b""), (1460, b""),
                                                               (80, b"")]


def test_passive_open_with_timestamps_off_does_not_answer_the_offer() -> None:
    peer, conn, synack = passive_open(config(timestamps=False))
    assert lines(synack) == [
        f"S. seq {ISS} ack {PEER + 1} win 65535 <mss 1460,sackOK,wscale 5>"]
    assert not conn.tx.ts.ok
    # The peer's later timestamps are ignored, whatever they say (no PAWS without ours).
    sent = peer.inject(ACK, PEER + 1, ISS + 1, payload=b"hello", options=ts(1, 0))
    assert lines(sent) == [f". seq {ISS + 1} ack {PEER + 6} win {WIN}"]


def test_active_open_offers_timestamps_and_keeps_them_when_the_syn_ack_has_them() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS, ts_offset=OFFSET)
    peer.advance(0.5)
    conn = peer.connect(80)
    assert peer.take_lines() == [
        f"S seq {ISS} win 65535 <mss 1460,sackOK,TS val 1500 ecr 0,wscale 5>"]
    peer.advance(0.125)
    reply = peer.inject(SYN | ACK, PEER, ISS + 1, options=tcpseg.encode_options(
        mss=1460, sack_permitted=True, wscale=7, timestamps=(9000, 1500)))
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 1} win {WIN} <TS val 1625 ecr 9000>"]
    assert conn.tx.ts.ok and conn.snd.mss == PAYLOAD
    assert conn.rtt.srtt == 0.125


def test_active_open_drops_timestamps_when_the_syn_ack_has_none() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS, ts_offset=OFFSET)
    conn = peer.connect(80)
    peer.take()
    peer.advance(0.125)
    reply = peer.inject(SYN | ACK, PEER, ISS + 1, options=tcpseg.encode_options(mss=1460))
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 1} win 65535"]
    assert not conn.tx.ts.ok and conn.snd.mss == 1460
    assert conn.rtt.srtt == 0.125  # the timed SYN, as without timestamps


def test_active_open_with_timestamps_off_offers_none() -> None:
    peer = ScriptedPeer(config(timestamps=False), stack_isn=ISS, ts_offset=OFFSET)
    peer.connect(80)
    assert peer.take_lines() == [f"S seq {ISS} win 65535 <mss 1460,sackOK,wscale 5>"]


@pytest.mark.parametrize(("a_ts", "b_ts"), [(True, True), (True, False), (False, True),
                                            (False, False)])
def test_two_stacks_use_timestamps_only_when_both_want_them(a_ts: bool, b_ts: bool) -> None:
    pair = LinkPair(config_a=TcpConfig(timestamps=a_ts), config_b=TcpConfig(timestamps=b_ts))
    client, server = pair.established_pair()
    data = pattern(50_000, seed=21)
    pair.send(client, data)
    got = bytearray()
    pair.run_until(lambda: len(got) == len(data), between=lambda: got.extend(pair.read(server)))
    assert bytes(got) == data
    both = a_ts and b_ts
    syn, synack, *rest = pair.tcp_frames()
    assert (syn.flags, synack.flags) == ("S", "S.")
    assert syn.segment.options.tsval is not None if a_ts else syn.segment.options.tsval is None
    assert (synack.segment.options.tsval is not None) == both
    assert {f.segment.options.tsval is not None for f in rest} == {both}
    assert client.tx.ts.ok == server.tx.ts.ok == both
    assert max(f.payload_len for f in rest) == (PAYLOAD if both else 1460)


# ---------------------------------------------------------------------- TS.Recent (4.3)

def test_ts_recent_follows_last_ack_sent_with_delayed_acks_holes_and_their_repair() -> None:
    """RFC 7323 4.3's cases: a delayed ACK echoes the earliest segment it acknowledges; a
    segment beyond a hole is not echoed; the one that fills the hole is."""
    peer, conn, _ = passive_open(config(delayed_ack=0.04))
    seq = PEER + 1

    def segment(n: int, tsval: int) -> list[Sent]:
        start = seq + n * PAYLOAD
        return peer.inject(ACK, start, ISS + 1, payload=bytes(PAYLOAD),
                           options=ts(tsval, 1375))

    peer.advance(0.625)  # t = 1.0: our TSval 2000
    assert segment(0, 8001) == []   # one full segment: the ACK may wait
    # The second full segment: ACK at once (RFC 5681 4.2; full is 1448 with timestamps),
    # echoing the first one's TSval.
    assert echoes(segment(1, 8002)) == [(seq + 2 * PAYLOAD, 2000, 8001)]
    assert segment(2, 8003) == []
    # The delayed ACK, at 1.04 s.
    assert echoes(peer.advance(0.0625)) == [(seq + 3 * PAYLOAD, 2040, 8003)]
    # Segment 3 is lost; 4 arrives beyond the hole: the duplicate ACK echoes TS.Recent,
    # still segment 2's.
    assert echoes(segment(4, 8005)) == [(seq + 3 * PAYLOAD, 2062, 8003)]
    # Segment 3 again, sent later (TSval 8006): it fills the hole, and is echoed.
    assert echoes(segment(3, 8006)) == [(seq + 5 * PAYLOAD, 2062, 8006)]
    assert conn.rcv.nxt == seq + 5 * PAYLOAD


# ---------------------------------------------------------------------- RTT from TSecr (4.1)

def test_every_ack_that_moves_snd_una_is_an_rtt_sample() -> None:
    peer, conn, _ = passive_open()
    peer.app_send(conn, bytes(2 * PAYLOAD))  # at 0.375 s: TSval 1375 on both
    assert [s.options.tsval for s in peer.take()] == [1375, 1375]
    peer.advance(0.125)
    peer.inject(ACK, PEER + 1, ISS + 1 + PAYLOAD, options=ts(7200, 1375))
    peer.advance(0.125)
    peer.inject(ACK, PEER + 1, ISS + 1 + 2 * PAYLOAD, options=ts(7300, 1375))
    # Samples 0.125 (the handshake), 0.125 and 0.25, by RFC 6298 2.2 and 2.3.
    assert (conn.rtt.srtt, conn.rtt.rttvar) == (0.140625, 0.06640625)


def test_without_timestamps_one_segment_at_a_time_is_timed() -> None:
    peer, conn, _ = passive_open(peer_ts=False)
    peer.app_send(conn, bytes(2 * 1460))
    peer.take()
    peer.advance(0.125)
    peer.inject(ACK, PEER + 1, ISS + 1 + 1460)
    peer.advance(0.125)
    peer.inject(ACK, PEER + 1, ISS + 1 + 2 * 1460)
    # The handshake's 0.125 and the first segment's; the second was not timed.
    assert (conn.rtt.srtt, conn.rtt.rttvar) == (0.125, 0.046875)


def test_the_ack_of_a_retransmission_is_a_sample_with_timestamps() -> None:
    """Karn's rule forbids the sample without timestamps: the ACK could be for either copy.
    Its TSecr says which copy drew it (RFC 7323 4.1), here the retransmission."""
    peer, conn, _ = passive_open()
    assert conn.rtt.rto == 0.375  # SRTT 0.125 + 4 * RTTVAR 0.0625
    peer.app_send(conn, b"x" * 1000)  # at 0.375, TSval 1375: lost
    peer.take()
    resent = peer.advance(0.375)
    assert lines(resent) == [
        f"P. seq {ISS + 1} ack {PEER + 1} win {WIN} len 1000 <TS val 1750 ecr 7100>"]
    assert conn.rtt.rto == 0.75  # backed off
    peer.advance(0.25)
    peer.inject(ACK, PEER + 1, ISS + 1001, options=ts(7200, 1750))
    # The sample is 0.25 s (TSval 2000 less 1750): SRTT 0.875 * 0.125 + 0.125 * 0.25,
    # RTTVAR 0.75 * 0.0625 + 0.25 * 0.125, and the backoff is over (RFC 6298 5.7).
    assert (conn.rtt.srtt, conn.rtt.rttvar) == (0.140625, 0.078125)
    assert conn.rtt.rto == 0.140625 + 4 * 0.078125


def test_the_ack_of_a_retransmission_is_no_sample_without_timestamps() -> None:
    peer, conn, _ = passive_open(peer_ts=False)
    peer.app_send(conn, b"x" * 1000)
    peer.take()
    assert len(peer.advance(0.375)) == 1  # the retransmission
    peer.advance(0.25)
    peer.inject(ACK, PEER + 1, ISS + 1001)
    assert (conn.rtt.srtt, conn.rtt.rttvar, conn.rtt.rto) == (0.125, 0.0625, 0.75)


# ---------------------------------------------------------------------- PAWS (5.3, 5.5)

def test_paws_drops_a_segment_older_than_ts_recent_and_answers_with_an_ack() -> None:
    peer, conn, _ = passive_open()
    reply = peer.inject(ACK, PEER + 1, ISS + 1, payload=b"old", options=ts(7050, 1250))
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 1} win {WIN} <TS val 1375 ecr 7100>"]
    assert conn.rcv.nxt == PEER + 1 and conn.read() == b""
    assert peer.stack.counters["paws_rejected"] == 1
    # The same bytes with a current timestamp are taken.
    reply = peer.inject(ACK, PEER + 1, ISS + 1, payload=b"new", options=ts(7100, 1250))
    assert echoes(reply) == [(PEER + 4, 1375, 7100)]
    assert conn.read() == b"new"
    assert peer.stack.counters["paws_rejected"] == 1


def test_paws_compares_timestamps_modulo_2_to_the_32() -> None:
    peer, conn, _ = passive_open()
    conn.tx.ts.recent = 0xFFFFFFF0
    # 0x10 is 32 ticks after 0xFFFFFFF0: newer, accepted; 0xFFFFFFE0 is older.
    assert echoes(peer.inject(ACK, PEER + 1, ISS + 1, payload=b"a", options=ts(0x10, 1))) == [
        (PEER + 2, 1375, 0x10)]
    peer.inject(ACK, PEER + 2, ISS + 1, payload=b"b", options=ts(0xFFFFFFE0, 1))
    assert peer.stack.counters["paws_rejected"] == 1 and conn.read() == b"a"


def test_a_rst_is_acceptable_whatever_its_timestamp() -> None:
    peer, conn, _ = passive_open()
    assert peer.inject(RST, PEER + 1, options=ts(1, 0)) == []
    assert conn.state is State.CLOSED
    assert peer.stack.counters["paws_rejected"] == 0


def test_a_segment_without_timestamps_is_dropped_silently_once_negotiated() -> None:
    peer, conn, _ = passive_open()
    assert peer.inject(ACK, PEER + 1, ISS + 1, payload=b"bare") == []  # RFC 7323 3.2
    assert conn.rcv.nxt == PEER + 1
    assert peer.stack.counters["ts_missing_dropped"] == 1


@pytest.mark.parametrize(("idle", "accepted"), [(PAWS_IDLE - 1.0, False),
                                                (PAWS_IDLE + 1.0, True)],
                         ids=["under-24-days", "over-24-days"])
def test_ts_recent_older_than_24_days_no_longer_rejects(idle: float, accepted: bool) -> None:
    """RFC 7323 5.5: after 24 days of silence the peer's clock may have wrapped its sign bit;
    TS.Recent is then invalid, the segment accepted and its TSval the new TS.Recent."""
    peer, conn, _ = passive_open()
    peer.advance(idle)
    ours = (OFFSET + int(peer.now * 1000)) & 0xFFFFFFFF
    reply = peer.inject(ACK, PEER + 1, ISS + 1, payload=b"late", options=ts(5, 1250))
    if accepted:
        assert echoes(reply) == [(PEER + 5, ours, 5)]
        assert conn.read() == b"late" and conn.tx.ts.recent == 5
    else:
        assert echoes(reply) == [(PEER + 1, ours, 7100)]
        assert conn.read() == b"" and conn.tx.ts.recent == 7100
    assert peer.stack.counters["paws_rejected"] == (0 if accepted else 1)


# ---------------------------------------------------------------------- option space

def test_payload_is_mss_less_the_timestamps_1448_at_1460() -> None:
    peer, conn, _ = passive_open(config(nodelay=True))
    peer.app_send(conn, bytes(3000))
    data = peer.take()
    assert [(len(s.payload), len(s.raw_options)) for s in data] == [
        (PAYLOAD, 12), (PAYLOAD, 12), (3000 - 2 * PAYLOAD, 12)]
    # 20 bytes of IPv4, 20 of TCP, 12 of options and 1448 of data fill an MTU of 1500.
    assert 20 + 20 + 12 + PAYLOAD == 1500


def _parsed(flags: int, seq: int, ack: int, window: int, options: bytes) -> Segment:
    return tcpseg.parse(memoryview(tcpseg.build(40000, 80, seq, ack, flags, window, 0,
                                                options)), 0, verify=False)


def _gso_sender(window: int) -> Connection:
    """A connection over a link that cuts segments (GSO), established by an ACK carrying
    `window` (scaled by 2**7), that has then sent 200,000 queued bytes as far as it may."""
    conn = Connection(config(), A_ADDR, 80, B_ADDR, 40000, ISS, passive=True,
                      segmentation=True, ts_offset=OFFSET)
    conn.accept_syn(_parsed(SYN, PEER, 0, 65535, peer_syn_options()), 0.0)
    conn.flush(0.0)
    conn.output.clear()
    conn.receive(_parsed(ACK, PEER + 1, ISS + 1, window, ts(7001, OFFSET)), 0.125)
    conn.send(bytes(200_000))
    conn.flush(0.125)
    return conn


def test_gso_segments_are_cut_at_mss_less_the_timestamps() -> None:
    conn = _gso_sender(65535)
    # The initial window of 10 segments goes as one segment for the link to cut into 1448s,
    # each with a copy of the header and its 12 option bytes.
    assert [(len(payload), mss, len(options))
            for _, _, _, _, options, payload, mss in conn.output] == [
        (10 * PAYLOAD, PAYLOAD, 12)]
    # The largest such segment still fits an IPv4 packet with its options.
    assert conn.snd.seg_max == 45 * PAYLOAD
    assert 40 + 12 + conn.snd.seg_max <= 0xFFFF < 40 + 12 + conn.snd.seg_max + PAYLOAD
    assert MAX_IP_PAYLOAD == 0xFFFF - 40


def test_gso_segment_cut_by_the_window_ends_on_a_whole_segment() -> None:
    conn = _gso_sender(62)  # 62 << 7 = 7,936 bytes of window: five segments and 696 bytes
    # Without offload the five would go and the 696 wait (sender-side SWS avoidance, RFC
    # 9293 3.8.6.2.1: less than half the largest window, and not the queue's end); with it
    # the same, not a 7,936-byte segment whose last piece the link sends short.
    assert [(len(payload), mss) for _, _, _, _, _, payload, mss in conn.output] == [
        (5 * PAYLOAD, PAYLOAD)]


def test_sack_blocks_beside_timestamps_are_at_most_three_in_40_bytes() -> None:
    peer, _conn, _ = passive_open()
    reply: list[Sent] = []
    for n, tsval in zip(range(1, 5), range(7201, 7205), strict=True):
        # Four islands of 100 bytes beyond RCV.NXT, 100 bytes apart.
        reply = peer.inject(ACK, PEER + 1 + 200 * n, ISS + 1, payload=bytes(100),
                            options=ts(tsval, 1375))
    (dupack,) = reply
    assert len(dupack.raw_options) == 40
    assert dupack.options.tsval == 1375 and dupack.options.tsecr == 7100
    # The newest island first (RFC 2018 4), then the most recent others.
    assert dupack.options.sack == ((PEER + 801, PEER + 901), (PEER + 601, PEER + 701),
                                   (PEER + 401, PEER + 501))


def test_a_rst_carries_timestamps_once_negotiated() -> None:
    """RFC 7323 3.2: SHOULD; TSecr is zero, our RST carrying no ACK."""
    peer, conn, _ = passive_open()
    peer.app_abort(conn)
    assert peer.take_lines() == [f"R seq {ISS + 1} win 0 <TS val 1375 ecr 0>"]
