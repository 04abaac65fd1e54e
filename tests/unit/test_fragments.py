"""IPv4 fragment reassembly: in order, reversed and interleaved fragments make the datagram
again; overlapping, tiny-first, offset-8 and never-completed trains are dropped and counted,
and what is held stays within the memory cap."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.net import ipv4
from tcpstack.net.checksum import checksum
from tcpstack.net.fragments import FragmentReassembler
from tcpstack.net.ipv4 import FLAG_MF, HEADER, PROTO_TCP
from tcpstack.stack import NetworkStack, packet_bytes
from tcpstack.tcp import segment as tcpseg

SRC = bytes([10, 77, 0, 1])
DST = bytes([10, 77, 0, 2])


def _fragment(payload: bytes, offset: int, more: bool, ident: int = 7,
              proto: int = PROTO_TCP) -> tuple[bytes, bytes]:
    """An IPv4 header (checksum set) for `payload` at byte `offset` of datagram `ident`."""
    frag = (FLAG_MF if more else 0) | (offset // 8)
    hdr = HEADER.pack(0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0, SRC, DST)
    hdr = hdr[:10] + checksum(hdr).to_bytes(2, "big") + hdr[12:]
    return hdr, payload


def _train(data: bytes, size: int, ident: int = 7) -> list[tuple[bytes, bytes]]:
    return [_fragment(data[at:at + size], at, at + size < len(data), ident)
            for at in range(0, len(data), size)]


def _reassembler(**kwargs: float) -> tuple[FragmentReassembler, Counter[str]]:
    counts: Counter[str] = Counter()

    def count(reason: str) -> None:
        counts[reason] += 1

    return FragmentReassembler(count, **kwargs), counts  # type: ignore[arg-type]


DATA = bytes(range(256)) * 12  # 3072 bytes, a TCP segment's worth of anything


def _feed(reassembler: FragmentReassembler, train: list[tuple[bytes, bytes]],
          now: float = 0.0) -> list[bytes]:
    return [whole for hdr, payload in train
            if (whole := reassembler.add(hdr, payload, now)) is not None]


def test_in_order_fragments_make_the_datagram_again() -> None:
    reassembler, counts = _reassembler()
    (whole,) = _feed(reassembler, _train(DATA, 1000 // 8 * 8))
    ip = ipv4.parse(whole)  # a valid, unfragmented packet: length and checksum right
    assert (ip.src, ip.dst, ip.proto, bytes(ip.payload)) == (SRC, DST, PROTO_TCP, DATA)
    assert counts == Counter({"ip_frag_reassembled": 1}) and reassembler.held == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 60), st.randoms())  # 8-byte pieces put one at offset 8
def test_any_order_interleaved_with_another_datagram_reassembles_both(
        eighths: int, rng: random.Random) -> None:
    reassembler, counts = _reassembler()
    other = bytes(reversed(DATA))
    train = _train(DATA, eighths * 8, ident=1) + _train(other, eighths * 8 + 8, ident=2)
    rng.shuffle(train)
    got = sorted(bytes(ipv4.parse(w).payload) for w in _feed(reassembler, train))
    assert got == sorted([DATA, other])
    assert counts["ip_frag_reassembled"] == 2 and len(reassembler) == 0


def test_overlapping_fragments_drop_the_datagram() -> None:
    reassembler, counts = _reassembler()
    first, second = _fragment(DATA[:800], 0, True), _fragment(DATA[792:1600], 792, False)
    assert _feed(reassembler, [first, second]) == []
    assert counts["ip_frag_overlap"] == 1 and len(reassembler) == 0 and reassembler.held == 0


def test_tiny_first_fragments_and_offset_eight_are_refused() -> None:
    """RFC 1858: a first fragment too short for the TCP flags, or one at offset 8 that
    would rewrite them, is how a filter is slipped; neither is ever reassembled."""
    reassembler, counts = _reassembler()
    assert _feed(reassembler, [_fragment(DATA[:8], 0, True), _fragment(DATA[8:64], 8, False)]
                 ) == []
    assert counts["ip_frag_tiny"] == 2


def test_a_train_never_completed_times_out() -> None:
    reassembler, counts = _reassembler(timeout=30.0)
    _feed(reassembler, _train(DATA, 800)[:-1], now=0.0)
    assert len(reassembler) == 1 and reassembler.held == 2400
    reassembler.expire(29.9)
    assert len(reassembler) == 1
    reassembler.expire(30.0)
    assert counts["ip_frag_timeout"] == 1 and len(reassembler) == 0 and reassembler.held == 0


def test_what_is_held_stays_within_the_memory_cap() -> None:
    reassembler, counts = _reassembler(memory_limit=10_000)
    for ident in range(100):  # a hundred trains that never complete
        _feed(reassembler, _train(DATA, 800, ident=ident)[:-1])
        assert reassembler.held <= 10_000
    assert counts["ip_frag_memory"] == 100 - 10_000 // 2400
    (whole,) = _feed(reassembler, _train(DATA, 800, ident=500))  # a fresh one still fits
    assert bytes(ipv4.parse(whole).payload) == DATA


def test_a_datagram_beyond_64_kib_is_refused() -> None:
    reassembler, counts = _reassembler()
    assert _feed(reassembler, [_fragment(bytes(800), 65000, False)]) == []
    assert counts["ip_frag_bad"] == 1


def test_the_stack_serves_a_segment_that_arrives_in_fragments() -> None:
    """A SYN with 200 bytes of data, cut in three reversed fragments, reaches the listener
    as one segment: its SYN-ACK acknowledges the SYN (the data waits for the handshake)."""
    stack = NetworkStack(DST)
    stack.listen(80)
    pseudo = ipv4.pseudo_header_sum(SRC, DST, PROTO_TCP)
    tcp = tcpseg.build(40000, 80, 5000, 0, tcpseg.SYN, 65535, pseudo,
                       tcpseg.encode_options(mss=1460), bytes(200))
    pieces = [_fragment(tcp[at:at + 96], at, at + 96 < len(tcp), ident=42)
              for at in range(0, len(tcp), 96)]
    stack.service([hdr + payload for hdr, payload in reversed(pieces)], 0.0)
    (out,) = stack.output
    reply = packet_bytes(out)
    seg = tcpseg.parse(ipv4.parse(reply).payload, ipv4.pseudo_header_sum(DST, SRC, PROTO_TCP))
    assert (seg.flags, seg.ack) == (tcpseg.SYN | tcpseg.ACK, 5001)
    assert (stack.counters["ip_frag_in"], stack.counters["ip_frag_reassembled"],
            stack.counters["segs_in"]) == (3, 1, 1)
