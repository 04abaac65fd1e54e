"""IPv4 header codec (RFC 791): round trips, the template, and every drop reason."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from tcpstack.net import ipv4
from tcpstack.net.checksum import checksum
from tcpstack.net.errors import MalformedPacket
from tests.unit.test_checksum import reference_checksum

SRC = bytes([10, 0, 0, 1])
DST = bytes([10, 0, 0, 2])

addresses = st.binary(min_size=4, max_size=4)


def craft(*, version: int = 4, ihl: int = 5, total: int | None = None, ident: int = 0,
          frag: int = ipv4.FLAG_DF, ttl: int = 64, proto: int = ipv4.PROTO_TCP,
          options: bytes = b"", payload: bytes = b"", csum: int | None = None) -> bytes:
    """A hand-built IPv4 packet with a correct header checksum unless `csum` is given."""
    if total is None:
        total = 20 + len(options) + len(payload)
    header = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, ident, frag, ttl,
                         proto, 0, SRC, DST) + options
    if csum is None:
        csum = reference_checksum(header)
    return header[:10] + csum.to_bytes(2, "big") + header[12:] + payload


def reason_of(packet: bytes) -> str:
    with pytest.raises(MalformedPacket) as info:
        ipv4.parse(packet)
    return info.value.reason


@given(addresses, addresses, st.integers(0, 255), st.integers(1, 255),
       st.integers(0, 0xFFFF), st.binary(max_size=1480))
def test_build_then_parse_round_trips(src: bytes, dst: bytes, proto: int, ttl: int,
                                      ident: int, payload: bytes) -> None:
    packet = ipv4.build(src, dst, proto, payload, ttl=ttl, ident=ident)
    assert len(packet) == 20 + len(payload)
    ip = ipv4.parse(packet)
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.ident, ip.header_len) == \
        (src, dst, proto, ttl, ident, 20)
    assert bytes(ip.payload) == payload


def test_build_sets_version_ihl_df_and_total_length() -> None:
    packet = ipv4.build(SRC, DST, ipv4.PROTO_TCP, b"x" * 10)
    assert packet[0] == 0x45
    assert struct.unpack_from("!H", packet, 2)[0] == 30
    assert struct.unpack_from("!H", packet, 6)[0] == ipv4.FLAG_DF
    assert packet[8] == ipv4.DEFAULT_TTL


@given(addresses, addresses, st.integers(0, 255), st.integers(1, 255),
       st.integers(0, 0xFFFF - 20))
def test_header_template_matches_build_with_df_and_ident_zero(src: bytes, dst: bytes,
                                                              proto: int, ttl: int,
                                                              payload_len: int) -> None:
    template = ipv4.HeaderTemplate(src, dst, proto, ttl)
    expected = ipv4.build(src, dst, proto, bytes(payload_len), ttl=ttl, ident=0)[:20]
    assert template.build(payload_len) == expected


def test_parse_accepts_df_without_fragment_bits() -> None:
    assert ipv4.parse(craft(frag=ipv4.FLAG_DF, payload=b"abc")).payload.tobytes() == b"abc"
    assert ipv4.parse(craft(frag=0, payload=b"abc")).payload.tobytes() == b"abc"


def test_parse_skips_header_options() -> None:
    options = bytes([1, 1, 1, 0])  # NOP NOP NOP EOL
    ip = ipv4.parse(craft(ihl=6, options=options, payload=b"data"))
    assert ip.header_len == 24
    assert bytes(ip.payload) == b"data"


def test_payload_is_trimmed_to_total_length() -> None:
    # An Ethernet frame pads a short datagram; the padding is not payload.
    packet = craft(payload=b"hello") + b"\x00" * 13
    assert bytes(ipv4.parse(packet).payload) == b"hello"


@pytest.mark.parametrize("length", [0, 1, 19])
def test_buffer_shorter_than_header_is_ip_truncated(length: int) -> None:
    assert reason_of(craft(payload=b"")[:length]) == "ip_truncated"


def test_total_length_beyond_data_is_ip_truncated() -> None:
    assert reason_of(craft(total=60, payload=b"x" * 20)) == "ip_truncated"


def test_ihl_beyond_data_is_ip_truncated() -> None:
    # IHL 15 claims a 60-byte header in a 24-byte buffer.
    assert reason_of(craft(ihl=15, total=24, payload=b"abcd")) == "ip_truncated"


@pytest.mark.parametrize("version", [0, 5, 6, 15])
def test_version_other_than_4_is_ip_bad_version(version: int) -> None:
    assert reason_of(craft(version=version, payload=b"x")) == "ip_bad_version"


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ihl_below_five_words_is_ip_bad_ihl(ihl: int) -> None:
    assert reason_of(craft(ihl=ihl, payload=b"x" * 8)) == "ip_bad_ihl"


@pytest.mark.parametrize("total", [0, 19])
def test_total_length_below_header_is_ip_bad_length(total: int) -> None:
    assert reason_of(craft(total=total, payload=b"x" * 8)) == "ip_bad_length"


def test_total_length_below_header_with_options_is_ip_bad_length() -> None:
    assert reason_of(craft(ihl=6, options=b"\x01" * 4, total=22, payload=b"xy")) == \
        "ip_bad_length"


def test_wrong_header_checksum_is_ip_bad_checksum() -> None:
    good = craft(payload=b"x")
    csum = struct.unpack_from("!H", good, 10)[0]
    assert reason_of(craft(payload=b"x", csum=csum ^ 0x0100)) == "ip_bad_checksum"


@given(st.integers(min_value=0, max_value=20 * 8 - 1))
def test_any_flipped_header_bit_is_dropped(bit: int) -> None:
    packet = bytearray(craft(payload=b"payload"))
    packet[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(MalformedPacket):
        ipv4.parse(bytes(packet))


def test_checksum_covers_options() -> None:
    packet = bytearray(craft(ihl=6, options=bytes([1, 1, 1, 0]), payload=b"x"))
    packet[22] ^= 0x01
    assert reason_of(bytes(packet)) == "ip_bad_checksum"


@pytest.mark.parametrize("frag", [ipv4.FLAG_MF, ipv4.FLAG_MF | ipv4.FLAG_DF, 1, 185,
                                  ipv4.OFFSET_MASK, ipv4.FLAG_MF | 3])
def test_fragment_is_ip_fragment(frag: int) -> None:
    assert reason_of(craft(frag=frag, payload=b"x" * 8)) == "ip_fragment"


def test_pseudo_header_sum_matches_reference() -> None:
    # src 10.0.0.1, dst 10.0.0.2, zero, proto 6 (the length is added by the caller).
    expected = ~reference_checksum(SRC + DST + b"\x00\x06") & 0xFFFF
    assert ipv4.pseudo_header_sum(SRC, DST, ipv4.PROTO_TCP) % 0xFFFF == expected % 0xFFFF


def test_scapy_parses_our_packet_with_correct_checksum() -> None:
    packet = ipv4.build(SRC, DST, ipv4.PROTO_TCP, b"0123456789", ttl=33, ident=0x1234)
    parsed = IP(packet)
    assert parsed.version == 4 and parsed.ihl == 5
    assert (parsed.src, parsed.dst, parsed.proto, parsed.ttl, parsed.id) == \
        ("10.0.0.1", "10.0.0.2", 6, 33, 0x1234)
    assert parsed.len == 30
    assert str(parsed.flags) == "DF"
    rebuilt = parsed.copy()
    del rebuilt.chksum  # let scapy compute the checksum itself
    assert IP(bytes(rebuilt)).chksum == parsed.chksum


def test_we_parse_scapy_built_packet() -> None:
    raw = bytes(IP(src="192.0.2.7", dst="198.51.100.9", ttl=17, id=4321) /
                TCP(sport=1234, dport=80, flags="S") / b"hi")
    ip = ipv4.parse(raw)
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.ident) == \
        (bytes([192, 0, 2, 7]), bytes([198, 51, 100, 9]), 6, 17, 4321)
    assert len(ip.payload) == 20 + 2


def _with_options(options: bytes) -> bytes:
    """A valid IPv4 packet whose header carries `options` (padded to whole words)."""
    options += bytes(-len(options) % 4)
    ihl = (20 + len(options)) // 4
    payload = b"x" * 8
    hdr = ipv4.HEADER.pack(0x40 | ihl, 0, 20 + len(options) + len(payload), 0, 0, 64, 6, 0,
                           bytes(4), bytes(4)) + options
    csum = checksum(hdr)
    return hdr[:10] + csum.to_bytes(2, "big") + hdr[12:] + payload


@pytest.mark.parametrize(("options", "reason"), [
    (bytes([1, 1, 1, 0]), None),                     # NOPs, then EOL
    (bytes([148, 4, 0, 0]), None),                   # router alert, well formed
    (bytes([7, 7, 4, 0, 0, 0, 0]), None),            # record route
    (bytes([148, 9, 0, 0]), "ip_bad_option"),        # length beyond the header
    (bytes([148, 1, 0, 0]), "ip_bad_option"),        # length below 2
    (bytes([1, 1, 1, 148]), "ip_bad_option"),        # no room for the length
    (bytes([131, 7, 4, 0, 0, 0, 0]), "ip_source_route"),
    (bytes([137, 7, 4, 0, 0, 0, 0]), "ip_source_route"),
])
def test_ip_options_are_checked_and_source_routes_refused(options: bytes,
                                                          reason: str | None) -> None:
    packet = _with_options(options)
    if reason is None:
        assert bytes(ipv4.parse(packet).payload) == b"x" * 8
    else:
        assert reason_of(packet) == reason
