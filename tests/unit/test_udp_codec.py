"""The UDP codec (RFC 768): the checksum over either family's pseudo-header agrees with
scapy's, a computed zero goes out as 0xFFFF, zero means "none" on IPv4 only (RFC 8200 8.1),
and parsing refuses what does not add up, naming why; random bytes raise nothing else."""

from __future__ import annotations

import ipaddress
import logging
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.net import udp
from tcpstack.net.checksum import ones_complement_sum
from tcpstack.net.errors import MalformedPacket

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402

V4_SRC, V4_DST = bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2])
V6_SRC = bytes.fromhex("fd770000000000000000000000000001")
V6_DST = bytes.fromhex("fd770000000000000000000000000002")


def _scapy_checksum(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> int:
    if len(src) == 4:
        packet = IP(src=".".join(map(str, src)), dst=".".join(map(str, dst))) / UDP(
            sport=sport, dport=dport) / payload
    else:
        packet = IPv6(src=str(ipaddress.IPv6Address(src)),
                      dst=str(ipaddress.IPv6Address(dst))) / UDP(sport=sport, dport=dport) \
            / payload
    return int(UDP(bytes(packet[UDP])).chksum)


@pytest.mark.parametrize(("src", "dst"), [(V4_SRC, V4_DST), (V6_SRC, V6_DST)],
                         ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("payload", [b"", b"a", b"hello world", bytes(range(256)) * 5])
def test_checksum_is_scapys_for_both_families(src: bytes, dst: bytes, payload: bytes) -> None:
    ours = udp.build(src, dst, 40000, 7, payload)
    assert struct.unpack_from("!H", ours, 6)[0] == _scapy_checksum(src, dst, 40000, 7, payload)
    assert struct.unpack_from("!HHH", ours) == (40000, 7, 8 + len(payload))
    assert ours[8:] == payload


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 65535), st.integers(1, 65535),
       st.sampled_from([(V4_SRC, V4_DST), (V6_SRC, V6_DST)]))
def test_any_datagram_round_trips_and_matches_scapy(payload: bytes, sport: int, dport: int,
                                                    family: tuple[bytes, bytes]) -> None:
    src, dst = family
    wire = udp.build(src, dst, sport, dport, payload)
    assert struct.unpack_from("!H", wire, 6)[0] == _scapy_checksum(src, dst, sport, dport,
                                                                   payload)
    dgram = udp.parse(wire, src, dst)
    assert (dgram.sport, dgram.dport, bytes(dgram.payload)) == (sport, dport, payload)


def test_the_pseudo_header_sum_is_rfc_768s_words_and_rfc_8200s() -> None:
    # IPv4: src, dst, zero + protocol, length; IPv6: src, dst, 32-bit length, zeros + next
    # header. Summed as 16-bit words both are src + dst + 17 + length.
    v4 = V4_SRC + V4_DST + struct.pack("!BBH", 0, 17, 20)
    v6 = V6_SRC + V6_DST + struct.pack("!I3xB", 20, 17)
    assert udp.pseudo_header_sum(V4_SRC, V4_DST, 20) == ones_complement_sum(v4)
    assert udp.pseudo_header_sum(V6_SRC, V6_DST, 20) == ones_complement_sum(v6)


def test_a_computed_zero_checksum_is_sent_as_all_ones() -> None:
    # The payload word that brings the sum to 0xFFFF is the checksum of the datagram
    # without it: the datagram with it would checksum to 0, which means "none".
    word = udp.checksum(V4_SRC, V4_DST, 1000, 2000, b"\0\0")
    payload = word.to_bytes(2, "big")
    wire = udp.build(V4_SRC, V4_DST, 1000, 2000, payload)
    assert struct.unpack_from("!H", wire, 6)[0] == 0xFFFF
    assert _scapy_checksum(V4_SRC, V4_DST, 1000, 2000, payload) == 0xFFFF
    assert bytes(udp.parse(wire, V4_SRC, V4_DST).payload) == payload


def _with_checksum(wire: bytes, value: int) -> bytes:
    return wire[:6] + value.to_bytes(2, "big") + wire[8:]


def test_zero_checksum_means_none_on_ipv4_and_is_refused_on_ipv6() -> None:
    v4 = _with_checksum(udp.build(V4_SRC, V4_DST, 1, 2, b"data"), 0)
    assert bytes(udp.parse(v4, V4_SRC, V4_DST).payload) == b"data"
    v6 = _with_checksum(udp.build(V6_SRC, V6_DST, 1, 2, b"data"), 0)
    with pytest.raises(MalformedPacket) as info:
        udp.parse(v6, V6_SRC, V6_DST)
    assert info.value.reason == "udp_zero_checksum"


def test_a_wrong_checksum_is_refused_unless_the_link_vouched() -> None:
    wire = udp.build(V4_SRC, V4_DST, 1, 2, b"data")
    bad = _with_checksum(wire, struct.unpack_from("!H", wire, 6)[0] ^ 0x0101)
    with pytest.raises(MalformedPacket) as info:
        udp.parse(bad, V4_SRC, V4_DST)
    assert info.value.reason == "udp_bad_checksum"
    # The same bytes from another source fail too: the pseudo-header is in the sum.
    with pytest.raises(MalformedPacket):
        udp.parse(wire, bytes([10, 77, 0, 9]), V4_DST)
    assert bytes(udp.parse(bad, V4_SRC, V4_DST, verify=False).payload) == b"data"


@pytest.mark.parametrize(("wire", "reason"), [
    (b"\x00\x01\x00\x02\x00\x08\x00", "udp_truncated"),                # 7 bytes
    (struct.pack("!HHHH", 1, 2, 7, 0), "udp_bad_length"),             # below the header
    (struct.pack("!HHHH", 1, 2, 13, 0) + b"data", "udp_bad_length"),  # beyond the payload
])
def test_lengths_that_do_not_add_up_are_refused(wire: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        udp.parse(wire, V4_SRC, V4_DST)
    assert info.value.reason == reason


def test_a_length_field_short_of_the_ip_payload_cuts_the_padding_off() -> None:
    wire = udp.build(V4_SRC, V4_DST, 1, 2, b"data") + b"pad"
    assert bytes(udp.parse(wire, V4_SRC, V4_DST).payload) == b"data"


def test_a_payload_beyond_the_length_field_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="65528 bytes do not fit"):
        udp.build(V4_SRC, V4_DST, 1, 2, bytes(65528))


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=80), st.booleans(), st.booleans())
def test_random_bytes_raise_nothing_but_malformed_packet(data: bytes, v6: bool,
                                                         verify: bool) -> None:
    src, dst = (V6_SRC, V6_DST) if v6 else (V4_SRC, V4_DST)
    try:
        dgram = udp.parse(data, src, dst, verify=verify)
    except MalformedPacket as exc:
        assert exc.reason in {"udp_truncated", "udp_bad_length", "udp_bad_checksum",
                              "udp_zero_checksum"}
        return
    assert 8 + len(dgram.payload) == struct.unpack_from("!H", data, 4)[0]
