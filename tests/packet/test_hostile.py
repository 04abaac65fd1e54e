"""Unusual and hostile input on the wire (issue 12): a segment that arrives as IPv4
fragments, in any order and among other traffic, is reassembled and served; an ICMP
"fragmentation needed" that quotes a segment in flight makes the stack resend it at the
path's size, and one that quotes nothing in flight changes nothing."""

from __future__ import annotations

import json

import pytest
from scapy.layers.inet import ICMP, IP, TCP, fragment
from scapy.packet import Raw

from tests.integration.netns import TCPSTACK

from .conftest import PEER_WIN, PORT, WIN_EMPTY, Rig, establish, roundtrip
from .peer import MASK, PEER_ADDRESS, STACK_ADDRESS, Flow

pytestmark = pytest.mark.integration

ROUTER = "10.77.0.8"  # a hop on the path that reports on it; nothing answers for it either
DATA = bytes(range(256)) * 5 + bytes(120)  # 1400 bytes: one segment at MSS 1460


def _segment(flow: Flow, seq: int, payload: bytes, ident: int) -> IP:
    assert flow.remote_isn is not None
    return IP(src=PEER_ADDRESS, dst=STACK_ADDRESS, id=ident, flags=0) / TCP(
        sport=flow.sport, dport=flow.dport, seq=(flow.isn + seq) & MASK,
        ack=(flow.remote_isn + 1) & MASK, flags="PA", window=PEER_WIN) / Raw(payload)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("order", ["in order", "reversed", "interleaved"])
def test_a_segment_in_fragments_is_reassembled_and_echoed(echo: Rig, order: str) -> None:
    flow = establish(echo, {"in order": 40801, "reversed": 40802, "interleaved": 40803}[order])
    pieces = fragment(_segment(flow, 1, DATA, ident=0x4242), fragsize=400)
    assert len(pieces) == 4
    if order == "reversed":
        pieces.reverse()
    for i, piece in enumerate(pieces):
        echo.peer.inject(piece)
        if order == "interleaved" and i == 1:  # other traffic between the fragments
            echo.peer.ping(0x77, 1, b"between")
    flow.maybe_expect(".", 1, 1 + len(DATA))
    flow.expect("P.", 1, 1 + len(DATA), win=WIN_EMPTY, payload=DATA)
    flow.send(".", 1 + len(DATA), 1 + len(DATA), win=PEER_WIN)
    roundtrip(flow, 1 + len(DATA), 1 + len(DATA), b"after")


def _fragmentation_needed(quoting: bytes, mtu: int) -> IP:
    """An ICMP "fragmentation needed" with the next hop's MTU, quoting the IPv4 header and
    first 8 TCP bytes of `quoting` (a packet the stack sent)."""
    return IP(src=ROUTER, dst=STACK_ADDRESS) / ICMP(type=3, code=4, nexthopmtu=mtu) / Raw(
        quoting[:28])


@pytest.mark.timeout(30)
def test_fragmentation_needed_for_a_segment_in_flight_resends_it_at_the_paths_size(
        echo: Rig) -> None:
    flow = establish(echo, 40810)
    flow.send("P.", 1, 1, win=PEER_WIN, payload=DATA)
    big = flow.expect("P.", 1, 1 + len(DATA), win=WIN_EMPTY, payload=DATA)
    echo.peer.inject(_fragmentation_needed(big.raw, 1000))
    # At once, not at the RTO: the data again, in pieces of 1000 - 40 bytes.
    first = flow.expect(".", 1, 1 + len(DATA), win=WIN_EMPTY, payload=DATA[:960],
                        timeout=0.5)
    flow.expect("P.", 961, 1 + len(DATA), win=WIN_EMPTY, payload=DATA[960:], timeout=0.5)
    assert first.at - big.at < 1.0
    flow.send(".", 1 + len(DATA), 1 + len(DATA), win=PEER_WIN)
    flow.expect_nothing(0.3)
    # The connection goes on at the path's size.
    more = DATA[:1000]
    flow.send("P.", 1 + len(DATA), 1 + len(DATA), win=PEER_WIN, payload=more)
    rseq = 1 + len(DATA)
    flow.maybe_expect(".", rseq, rseq + len(more))
    # Less than an MSS read since the right edge last moved: it stays (receiver SWS
    # avoidance), and the window is what is left of it, rounded up to the 32-byte unit.
    win = WIN_EMPTY - len(more) // 32
    flow.expect(".", rseq, rseq + len(more), win=win, payload=more[:960])
    # The 40 bytes left wait for that ACK (Nagle, RFC 9293 3.7.4: a short segment goes
    # only while nothing is unacknowledged).
    flow.expect_nothing(0.1)
    flow.send(".", rseq + len(more), rseq + 960, win=PEER_WIN)
    flow.expect("P.", rseq + 960, rseq + len(more), win=win, payload=more[960:])


@pytest.mark.timeout(30)
def test_fragmentation_needed_quoting_nothing_in_flight_changes_nothing(echo: Rig) -> None:
    flow = establish(echo, 40811)
    roundtrip(flow, 1, 1, b"hello")
    forged = bytes(IP(src=STACK_ADDRESS, dst=PEER_ADDRESS) / TCP(
        sport=PORT, dport=flow.sport, seq=(flow.remote_isn or 0) + 1_000_000, flags="A"))
    echo.peer.inject(_fragmentation_needed(forged, 600))
    flow.expect_nothing(0.3)
    # Still full-sized segments: the forgery quoted nothing the stack has in flight.
    flow.send("P.", 6, 6, win=PEER_WIN, payload=DATA)
    # The right edge has stayed since the first echo (less than an MSS read since): the
    # window is what is left of it, rounded up to the 32-byte unit.
    flow.expect("P.", 6, 6 + len(DATA), win=WIN_EMPTY - (5 + len(DATA)) // 32, payload=DATA)


@pytest.mark.timeout(30)
def test_overlapping_tiny_and_unfinished_fragment_trains_are_dropped_and_counted(
        echo: Rig) -> None:
    flow = establish(echo, 40820)
    segment = _segment(flow, 1, DATA, ident=0x5151)
    raw = bytes(segment[IP].payload)  # the TCP segment, its checksum right
    header = dict(src=PEER_ADDRESS, dst=STACK_ADDRESS, proto=6)

    def piece(ident: int, offset: int, data: bytes, more: bool) -> IP:
        return IP(id=ident, frag=offset // 8, flags="MF" if more else 0, **header) / Raw(data)

    # Overlapping: the second piece starts inside the first.
    echo.peer.inject(piece(1, 0, raw[:400], True))
    echo.peer.inject(piece(1, 392, raw[392:], False))
    # Tiny first fragment (RFC 1858): 8 bytes cannot hold the TCP flags.
    echo.peer.inject(piece(2, 0, raw[:8], True))
    echo.peer.inject(piece(2, 8, raw[8:], False))
    # Never finished: the last piece never comes.
    echo.peer.inject(piece(3, 0, raw[:400], True))
    flow.expect_nothing(0.5)  # none of them became a segment
    roundtrip(flow, 1, 1, b"still fine")
    stat = echo.ns.run([TCPSTACK, "stat", "--counters", "--json"], timeout=20)
    assert stat.returncode == 0, stat.stderr
    counters = json.loads(stat.stdout)
    assert counters.get("ip_frag_overlap") == 1
    assert counters.get("ip_frag_tiny") == 2
    assert counters.get("ip_frag_reassembled", 0) == 0
