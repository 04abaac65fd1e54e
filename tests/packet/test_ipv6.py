"""TCP over IPv6 on the wire (issue 13), against a peer at fd77::9 that checks every checksum
itself (peer.py computes the RFC 8200 8.1 pseudo-header on its own): the handshake announces
an MSS of the MTU less 60, data is echoed, a closed port answers with a RST, a segment with
a bad checksum is dropped and counted, an ICMPv6 packet too big quoting a segment in flight
has it resent at the path's size (RFC 8201; never below 1280), echo requests are answered,
and extension headers are skipped or refused as RFC 8200 says."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from scapy.layers.inet import TCP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.packet import Raw

from tests.integration.netns import TCPSTACK

from .conftest import PEER_WIN, PORT, WIN_EMPTY, Rig, StartRig, roundtrip
from .peer import ANY, MASK, PEER_ADDRESS6, STACK_ADDRESS6, Flow, Peer

pytestmark = pytest.mark.integration

ROUTER6 = "fd77::8"  # a hop on the path that reports on it; nothing answers for it
MSS6 = 1500 - 60
SYNACK6_OPTIONS = [("MSS", MSS6), ("NOP", None), ("WScale", 5)]
PEER6_OPTIONS = [("MSS", MSS6), ("WScale", 7)]
DATA = bytes(range(256)) * 5 + bytes(120)  # 1400 bytes: one segment at MSS 1440


@pytest.fixture
def echo6(start_rig: StartRig) -> Iterator[Rig]:
    """tcpstack serving echo on port 8080, and a peer speaking IPv6 to it."""
    rig = start_rig("--echo")
    peer = Peer(rig.ns.name, ipv6=True)
    try:
        yield Rig(rig.ns, rig.stack, peer)
    finally:
        peer.close()


def establish6(rig: Rig, sport: int) -> Flow:
    flow = rig.peer.flow(sport, PORT)
    flow.send("S", 0, win=65535, options=PEER6_OPTIONS)
    flow.expect("S.", 0, 1, win=65535, options=SYNACK6_OPTIONS)
    flow.send(".", 1, 1, win=PEER_WIN)
    return flow


def counters(rig: Rig) -> dict[str, int]:
    stat = rig.ns.run([TCPSTACK, "stat", "--counters", "--json"], timeout=20)
    assert stat.returncode == 0, stat.stderr
    return json.loads(stat.stdout)  # type: ignore[no-any-return]


def _segment(flow: Flow, seq: int, payload: bytes, *headers: object, ack: int = 1) -> IPv6:
    """A data segment of `flow` with `headers` (scapy extension headers) before the TCP
    header; scapy computes its checksum over the pseudo-header."""
    assert flow.remote_isn is not None
    pkt = IPv6(src=PEER_ADDRESS6, dst=STACK_ADDRESS6)
    for header in headers:
        pkt = pkt / header
    return pkt / TCP(sport=flow.sport, dport=flow.dport, seq=(flow.isn + seq) & MASK,
                     ack=(flow.remote_isn + ack) & MASK, flags="PA", window=PEER_WIN
                     ) / Raw(payload)


@pytest.mark.timeout(30)
def test_handshake_announces_mtu_less_60_and_data_is_echoed(echo6: Rig) -> None:
    flow = establish6(echo6, 41001)
    roundtrip(flow, 1, 1, b"over ipv6")
    roundtrip(flow, 10, 10, b"and again")
    assert "[fd77::9]:41001 SYN_RCVD -> ESTABLISHED" in echo6.trace()


@pytest.mark.timeout(30)
def test_a_syn_to_a_closed_port_draws_a_reset(echo6: Rig) -> None:
    flow = echo6.peer.flow(41002, PORT + 1, remote_isn=0)
    flow.send("S", 0, win=65535, options=PEER6_OPTIONS)
    flow.expect("R.", 0, 1, win=0)


@pytest.mark.timeout(30)
def test_a_segment_with_a_bad_checksum_is_dropped_and_counted(echo6: Rig) -> None:
    flow = establish6(echo6, 41003)
    bad = _segment(flow, 1, b"corrupted")
    bad[TCP].chksum = (bytes(bad)[40 + 16] << 8 | bytes(bad)[40 + 17]) ^ 0x0101
    echo6.peer.inject(bad)
    flow.expect_nothing(0.3)
    assert counters(echo6).get("tcp_bad_checksum") == 1
    roundtrip(flow, 1, 1, b"intact")


def _packet_too_big(quoting: bytes, mtu: int) -> IPv6:
    """An ICMPv6 packet too big from a router, quoting as much of `quoting` (a packet the
    stack sent) as fits in IPv6's minimum MTU (RFC 4443 2.4 (c))."""
    return IPv6(src=ROUTER6, dst=STACK_ADDRESS6) / ICMPv6PacketTooBig(mtu=mtu) / Raw(
        quoting[:1280 - 48])


@pytest.mark.timeout(30)
def test_packet_too_big_for_a_segment_in_flight_resends_it_at_the_paths_size(
        echo6: Rig) -> None:
    flow = establish6(echo6, 41004)
    flow.send("P.", 1, 1, win=PEER_WIN, payload=DATA)
    big = flow.expect("P.", 1, 1 + len(DATA), win=WIN_EMPTY, payload=DATA)
    echo6.peer.inject(_packet_too_big(big.raw, 1300))
    # At once, not at the RTO: the data again, in pieces of 1300 - 60 bytes.
    first = flow.expect(".", 1, 1 + len(DATA), win=WIN_EMPTY, payload=DATA[:1240],
                        timeout=0.5)
    flow.expect("P.", 1241, 1 + len(DATA), win=WIN_EMPTY, payload=DATA[1240:], timeout=0.5)
    assert first.at - big.at < 1.0
    flow.send(".", 1 + len(DATA), 1 + len(DATA), win=PEER_WIN)
    # The next data goes at the path's size too.
    rseq = 1 + len(DATA)
    flow.send("P.", rseq, rseq, win=PEER_WIN, payload=DATA)
    flow.maybe_expect(".", rseq, rseq + len(DATA))
    flow.expect(".", rseq, rseq + len(DATA), win=ANY, payload=DATA[:1240])
    got = counters(echo6)
    assert got.get("pmtu_lowered") == 1
    assert got.get("icmp_errors_accepted") == 1


@pytest.mark.timeout(30)
def test_packet_too_big_below_1280_counts_as_1280(echo6: Rig) -> None:
    flow = establish6(echo6, 41005)
    flow.send("P.", 1, 1, win=PEER_WIN, payload=DATA)
    big = flow.expect("P.", 1, 1 + len(DATA), win=WIN_EMPTY, payload=DATA)
    echo6.peer.inject(_packet_too_big(big.raw, 600))
    # RFC 8201 4: never below the minimum link MTU, so pieces of 1280 - 60 bytes.
    flow.expect(".", 1, 1 + len(DATA), win=WIN_EMPTY, payload=DATA[:1220], timeout=0.5)
    flow.expect("P.", 1221, 1 + len(DATA), win=WIN_EMPTY, payload=DATA[1220:], timeout=0.5)
    assert counters(echo6).get("icmp6_small_mtu") == 1


@pytest.mark.timeout(30)
def test_packet_too_big_quoting_nothing_in_flight_changes_nothing(echo6: Rig) -> None:
    flow = establish6(echo6, 41006)
    roundtrip(flow, 1, 1, b"hello")
    forged = bytes(IPv6(src=STACK_ADDRESS6, dst=PEER_ADDRESS6) / TCP(
        sport=PORT, dport=flow.sport, seq=(flow.remote_isn or 0) + 1_000_000, flags="A"))
    echo6.peer.inject(_packet_too_big(forged, 1280))
    flow.expect_nothing(0.3)
    flow.send("P.", 6, 6, win=PEER_WIN, payload=DATA)
    flow.expect("P.", 6, 6 + len(DATA), win=ANY, payload=DATA)  # still one full segment
    assert counters(echo6).get("icmp_out_of_window") == 1


@pytest.mark.timeout(30)
def test_echo_requests_are_answered(echo6: Rig) -> None:
    data = b"ping over ipv6"
    echo6.peer.inject(IPv6(src=PEER_ADDRESS6, dst=STACK_ADDRESS6) /
                      ICMPv6EchoRequest(id=0x1234, seq=7, data=data))
    got = echo6.peer.receive("icmp", 1.0)
    assert got is not None, "no echo reply"
    reply = got.ip[ICMPv6EchoReply]
    assert (reply.id, reply.seq, bytes(reply.data)) == (0x1234, 7, data)
    assert got.ip.dst == PEER_ADDRESS6 and got.ip.src == STACK_ADDRESS6
    # Its checksum, pseudo-header included, as scapy computes it.
    assert reply.cksum == ICMPv6EchoReply(bytes(IPv6(src=STACK_ADDRESS6, dst=PEER_ADDRESS6) /
                                                ICMPv6EchoReply(id=0x1234, seq=7, data=data)
                                                )[40:]).cksum


@pytest.mark.timeout(30)
def test_extension_headers_are_skipped_or_refused(echo6: Rig) -> None:
    flow = establish6(echo6, 41007)
    # Destination options with padding only, and an atomic fragment: the data goes through.
    echo6.peer.inject(_segment(flow, 1, b"dstopts",
                               IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 4)])))
    flow.maybe_expect(".", 1, 8)
    flow.expect("P.", 1, 8, win=ANY, payload=b"dstopts")
    echo6.peer.inject(_segment(flow, 8, b"atomic", IPv6ExtHdrFragment(offset=0, m=0, id=9),
                               ack=8))
    flow.maybe_expect(".", 8, 14)
    flow.expect("P.", 8, 14, win=ANY, payload=b"atomic")
    flow.send(".", 14, 14, win=PEER_WIN)
    # A routing header with segments left, a real fragment, an unknown option whose type
    # says discard (01xxxxxx): dropped, each counted.
    refused = [IPv6ExtHdrRouting(type=0, segleft=1, addresses=["fd77::7"]),
               IPv6ExtHdrFragment(offset=0, m=1, id=10),
               IPv6ExtHdrDestOpt(options=[PadN(otype=0x42, optdata=b"\0\0")])]
    for header in refused:
        echo6.peer.inject(_segment(flow, 14, b"refused", header, ack=14))
    flow.expect_nothing(0.3)
    got = counters(echo6)
    assert (got.get("ip6_routing_refused"), got.get("ip6_fragment"),
            got.get("ip6_unknown_option")) == (1, 1, 1)
    roundtrip(flow, 14, 14, b"still fine")
