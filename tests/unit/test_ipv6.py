"""IPv6 header codec (RFC 8200): round trips, the extension header walk (skipped, refused,
truncated, too long), the pseudo-header checksum against scapy's, and random bytes that only
ever raise MalformedPacket."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
    RouterAlert,
)
from scapy.packet import Raw

from tcpstack.net import ipv6
from tcpstack.net.checksum import ones_complement_sum, pseudo_header_sum
from tcpstack.net.errors import MalformedPacket
from tcpstack.tcp import segment as tcpseg

SRC = bytes.fromhex("fd770000000000000000000000000001")
DST = bytes.fromhex("fd770000000000000000000000000002")
SRC_TEXT, DST_TEXT = "fd77::1", "fd77::2"

addresses = st.binary(min_size=16, max_size=16)


def reason_of(packet: bytes) -> str:
    with pytest.raises(MalformedPacket) as info:
        ipv6.parse(packet)
    return info.value.reason


def with_headers(*headers: object, payload: bytes = b"data") -> bytes:
    pkt = IPv6(src=SRC_TEXT, dst=DST_TEXT)
    for header in headers:
        pkt = pkt / header
    return bytes(pkt / TCP(sport=1, dport=2) / Raw(payload))


@given(addresses, addresses, st.integers(0, 255), st.integers(1, 255),
       st.binary(min_size=1, max_size=1400))
def test_build_then_parse_round_trips(src: bytes, dst: bytes, proto: int, hops: int,
                                      payload: bytes) -> None:
    if proto in (ipv6.PROTO_HOPOPTS, ipv6.PROTO_ROUTING, ipv6.PROTO_FRAGMENT,
                 ipv6.PROTO_DSTOPTS):
        proto = ipv6.PROTO_TCP  # an extension header type would be walked, not returned
    packet = ipv6.build(src, dst, proto, payload, hop_limit=hops)
    ip = ipv6.parse(packet)
    assert (ip.src, ip.dst, ip.proto, ip.hop_limit, ip.header_len) == (src, dst, proto, hops, 40)
    assert bytes(ip.payload) == payload


def test_build_matches_scapy() -> None:
    ours = ipv6.build(SRC, DST, ipv6.PROTO_TCP, b"x" * 10)
    assert ours == bytes(IPv6(src=SRC_TEXT, dst=DST_TEXT, nh=6, hlim=64) / Raw(b"x" * 10))


def test_payload_is_trimmed_to_the_payload_length() -> None:
    packet = ipv6.build(SRC, DST, ipv6.PROTO_TCP, b"abc") + b"trailer"
    assert bytes(ipv6.parse(packet).payload) == b"abc"


@pytest.mark.parametrize(("packet", "reason"), [
    (bytes(39), "ip6_truncated"),
    (b"\x40" + bytes(47), "ip6_bad_version"),
    (ipv6.build(SRC, DST, 6, b"")[:40], "ip6_bad_length"),  # 0: a jumbogram
    (ipv6.build(SRC, DST, 6, b"abcd")[:42], "ip6_truncated"),
])
def test_fixed_header_drop_reasons(packet: bytes, reason: str) -> None:
    assert reason_of(packet) == reason


@pytest.mark.parametrize("headers", [
    [IPv6ExtHdrHopByHop(options=[RouterAlert()])],  # type 00: skipped
    [IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 6)])],
    [IPv6ExtHdrRouting(type=0, segleft=0, addresses=["fd77::9"])],  # nothing left: skipped
    [IPv6ExtHdrFragment(offset=0, m=0, id=7)],  # atomic (RFC 6946)
    [IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting(segleft=0),
     IPv6ExtHdrFragment(), IPv6ExtHdrDestOpt()],
])
def test_extension_headers_a_host_skips_lead_to_the_upper_layer(headers: list[object]) -> None:
    packet = with_headers(*headers, payload=b"the data")
    ip = ipv6.parse(packet)
    assert ip.proto == ipv6.PROTO_TCP
    assert ip.header_len == len(packet) - 20 - len(b"the data")
    assert bytes(ip.payload[20:]) == b"the data"


@pytest.mark.parametrize(("headers", "reason"), [
    ([IPv6ExtHdrRouting(type=0, segleft=1, addresses=["fd77::9"])], "ip6_routing_refused"),
    ([IPv6ExtHdrRouting(type=4, segleft=2, addresses=["fd77::9", "fd77::8"])],
     "ip6_routing_refused"),
    ([IPv6ExtHdrFragment(offset=0, m=1, id=7)], "ip6_fragment"),
    ([IPv6ExtHdrFragment(offset=100, m=0, id=7)], "ip6_fragment"),
    ([IPv6ExtHdrDestOpt(), IPv6ExtHdrHopByHop()], "ip6_bad_hop_by_hop"),  # not first
    # The two high bits of an unknown option's type: 01, 10 and 11 discard (RFC 8200 4.2).
    ([IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x42, optdata=b"ab")])],
     "ip6_unknown_option"),
    ([IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x82, optdata=b"ab")])],
     "ip6_unknown_option"),
    ([IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0xC2, optdata=b"abcd")])],
     "ip6_unknown_option"),
    ([IPv6ExtHdrDestOpt()] * (ipv6.MAX_EXTENSION_HEADERS + 1), "ip6_too_many_headers"),
])
def test_extension_headers_a_host_refuses(headers: list[object], reason: str) -> None:
    assert reason_of(with_headers(*headers)) == reason


def test_an_unknown_option_of_type_00_is_skipped() -> None:
    packet = with_headers(IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x1E, optdata=b"ab")]))
    assert ipv6.parse(packet).proto == ipv6.PROTO_TCP


def _fixed(nxt: int, rest: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", ipv6.VERSION_WORD, len(rest), nxt, 64, SRC, DST) + rest


@pytest.mark.parametrize(("packet", "reason"), [
    (_fixed(ipv6.PROTO_DSTOPTS, b"\x06"), "ip6_ext_truncated"),  # no length byte
    (_fixed(ipv6.PROTO_DSTOPTS, b"\x06\x01" + bytes(6)), "ip6_ext_truncated"),  # 16 of 8
    (_fixed(ipv6.PROTO_FRAGMENT, b"\x06\x00\x00"), "ip6_ext_truncated"),
    # An option whose length runs past its header.
    (_fixed(ipv6.PROTO_DSTOPTS, b"\x06\x00\x01\x05" + bytes(4)), "ip6_bad_option"),
    (_fixed(ipv6.PROTO_DSTOPTS, b"\x06\x00\x00\x00\x00\x00\x00\x01"), "ip6_bad_option"),
])
def test_truncated_and_overrunning_headers(packet: bytes, reason: str) -> None:
    assert reason_of(packet) == reason


def test_no_next_header_and_unknown_protocols_reach_the_caller() -> None:
    assert ipv6.parse(ipv6.build(SRC, DST, ipv6.PROTO_NONE, b"x")).proto == ipv6.PROTO_NONE
    assert ipv6.parse(ipv6.build(SRC, DST, 132, b"sctp")).proto == 132


def test_lenient_parse_describes_what_strict_refuses() -> None:
    packet = with_headers(IPv6ExtHdrRouting(type=0, segleft=1, addresses=["fd77::9"]))
    ip = ipv6.parse(packet, strict=False)
    assert (ip.proto, ip.header_len) == (ipv6.PROTO_ROUTING, 40)
    cut = ipv6.build(SRC, DST, 6, b"abcdef")[:43]
    assert bytes(ipv6.parse(cut, strict=False).payload) == b"abc"


# ---------------------------------------------------------------------- pseudo-header


@pytest.mark.parametrize("payload", [b"", b"odd", b"even", bytes(range(256)) * 5])
def test_tcp_checksum_over_the_ipv6_pseudo_header_is_scapys(payload: bytes) -> None:
    reference = IPv6(bytes(IPv6(src=SRC_TEXT, dst=DST_TEXT) /
                           TCP(sport=40000, dport=80, seq=1, ack=2, flags="PA") / Raw(payload)))
    pseudo = ipv6.pseudo_header(SRC, DST, ipv6.PROTO_TCP, 0)
    ours = tcpseg.build(40000, 80, 1, 2, tcpseg.PSH | tcpseg.ACK, 8192, pseudo, b"", payload)
    assert int.from_bytes(ours[16:18], "big") == reference[TCP].chksum


def test_udp_checksum_from_the_length_taking_function_is_scapys() -> None:
    """The helper UDP uses (either family): it takes the length itself."""
    datagram = bytes(IPv6(src=SRC_TEXT, dst=DST_TEXT) / UDP(sport=5000, dport=53) /
                     Raw(b"query"))[40:]
    blank = datagram[:6] + b"\0\0" + datagram[8:]
    total = pseudo_header_sum(SRC, DST, 17, len(blank)) + ones_complement_sum(blank)
    assert ~(total % 0xFFFF) & 0xFFFF == int.from_bytes(datagram[6:8], "big")


def test_pseudo_header_sum_is_the_same_function_for_ipv4() -> None:
    v4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    explicit = ones_complement_sum(v4[0] + v4[1] + bytes([0, 6]) + (1234).to_bytes(2, "big"))
    assert pseudo_header_sum(*v4, 6, 1234) == explicit
    # IPv6's 32-bit upper-layer length sums as its two 16-bit halves.
    big = 0x1_0004
    assert pseudo_header_sum(SRC, DST, 6, big) == ones_complement_sum(
        SRC + DST + big.to_bytes(4, "big") + bytes([0, 0, 0, 6]))


def test_icmpv6_checksum_of_scapys_echo_request_verifies() -> None:
    from tcpstack.net import icmpv6

    message = bytes(IPv6(src=SRC_TEXT, dst=DST_TEXT) / ICMPv6EchoRequest(id=1, seq=2,
                                                                         data=b"hi"))[40:]
    icmpv6.verify(message, SRC, DST)
    with pytest.raises(MalformedPacket, match="icmp6_bad_checksum"):
        icmpv6.verify(message, DST, SRC[:15] + b"\x07")  # another pseudo-header


@pytest.mark.parametrize(("address", "reason"), [
    ("::", "unspecified"), ("::1", "loopback"), ("ff02::1", "multicast"),
    ("::ffff:10.0.0.1", "IPv4-mapped"), ("fd77::1", None), ("2001:db8::1", None),
])
def test_sources_no_host_can_have(address: str, reason: str | None) -> None:
    import ipaddress

    assert ipv6.bad_source(ipaddress.IPv6Address(address).packed) == reason


# ---------------------------------------------------------------------- fuzz


VALID = [
    with_headers(),
    with_headers(IPv6ExtHdrHopByHop(options=[RouterAlert()]), IPv6ExtHdrDestOpt()),
    with_headers(IPv6ExtHdrRouting(segleft=0), IPv6ExtHdrFragment()),
    bytes(IPv6(src=SRC_TEXT, dst=DST_TEXT) / ICMPv6EchoRequest(data=b"abc")),
]
mutated = st.builds(
    lambda base, edits, cut: _mutate(VALID[base], edits, cut),
    st.integers(0, len(VALID) - 1),
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 120)))


def _mutate(packet: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(packet)
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    return bytes(data[:cut] if cut is not None else data)


packets = st.one_of(st.binary(max_size=160), st.binary(min_size=40, max_size=160).map(
    lambda b: bytes([0x60 | (b[0] & 0x0F)]) + b[1:]), mutated)


@settings(max_examples=800, deadline=None)
@given(packets)
def test_random_bytes_raise_nothing_but_malformed_packet(packet: bytes) -> None:
    from tcpstack.net import icmpv6

    for strict in (True, False):
        try:
            ip = ipv6.parse(packet, strict=strict)
            if ip.proto == ipv6.PROTO_ICMPV6 and len(ip.payload) >= 8:
                icmpv6.error_of(ip.payload)
        except MalformedPacket as exc:
            assert exc.reason.replace("_", "").isalnum(), exc.reason
            assert strict or exc.reason in ("ip6_truncated", "ip6_bad_version",
                                            "icmp6_truncated", "icmp6_bad_quote")
