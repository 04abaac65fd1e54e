"""TCP segment codec (RFC 9293 3.1): round trips, options, malformed segments, RST replies."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from tcpstack.net import ipv4
from tcpstack.net.errors import MalformedPacket
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.reset import reset_reply
from tcpstack.tcp.segment import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, Options, Segment
from tests.unit.test_checksum import reference_checksum

SRC = bytes([10, 0, 0, 1])
DST = bytes([10, 0, 0, 2])
PSEUDO = ipv4.pseudo_header_sum(SRC, DST, ipv4.PROTO_TCP)

ports = st.integers(0, 0xFFFF)
seqnums = st.integers(0, 0xFFFFFFFF)


def parse(data: bytes, pseudo: int = PSEUDO) -> Segment:
    return tcpseg.parse(memoryview(data), pseudo)


def reason_of(data: bytes) -> str:
    with pytest.raises(MalformedPacket) as info:
        parse(data)
    return info.value.reason


def craft(*, offset_words: int = 5, flags: int = ACK, options: bytes = b"",
          payload: bytes = b"", seq: int = 1000, ack: int = 2000) -> bytes:
    """A hand-packed segment with a data offset of our choosing and a correct checksum over
    the 10.0.0.1 -> 10.0.0.2 pseudo-header, computed independently of tcpstack."""
    header = struct.pack("!HHIIHHHH", 40000, 80, seq, ack, (offset_words << 12) | flags,
                         8192, 0, 0) + options
    segment = header + payload
    pseudo = SRC + DST + struct.pack("!BBH", 0, 6, len(segment))
    csum = reference_checksum(pseudo + segment)
    return segment[:16] + csum.to_bytes(2, "big") + segment[18:]


# ---------------------------------------------------------------------- round trips

@given(ports, ports, seqnums, seqnums, st.integers(0, 0xFF), st.integers(0, 0xFFFF),
       st.one_of(st.none(), st.integers(0, 0xFFFF)), st.one_of(st.none(), st.integers(0, 14)),
       st.booleans(), st.binary(max_size=1460))
def test_build_then_parse_round_trips(sport: int, dport: int, seq: int, ack: int, flags: int,
                                      window: int, mss: int | None, wscale: int | None,
                                      sack: bool, payload: bytes) -> None:
    options = tcpseg.encode_options(mss=mss, wscale=wscale, sack_permitted=sack)
    data = tcpseg.build(sport, dport, seq, ack, flags, window, PSEUDO, options, payload)
    assert len(data) == 20 + len(options) + len(payload)
    seg = parse(data)
    assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.window) == \
        (sport, dport, seq, ack, flags, window)
    assert seg.options == Options(mss=mss, wscale=wscale, sack_permitted=sack)
    assert bytes(seg.payload) == payload


@given(st.binary(max_size=100))
def test_build_header_followed_by_payload_equals_build(payload: bytes) -> None:
    header = tcpseg.build_header(1, 2, 3, 4, ACK | PSH, 5, PSEUDO, b"", payload)
    assert header + payload == tcpseg.build(1, 2, 3, 4, ACK | PSH, 5, PSEUDO, b"", payload)


@given(ports, seqnums, st.binary(max_size=200))
def test_build_checksum_matches_reference(sport: int, seq: int, payload: bytes) -> None:
    data = tcpseg.build(sport, 80, seq, 7, ACK, 100, PSEUDO, b"", payload)
    zeroed = data[:16] + b"\x00\x00" + data[18:]
    pseudo = SRC + DST + struct.pack("!BBH", 0, 6, len(data))
    got = struct.unpack_from("!H", data, 16)[0]
    assert got % 0xFFFF == reference_checksum(pseudo + zeroed) % 0xFFFF


def test_encode_options_layout_matches_linux() -> None:
    assert tcpseg.encode_options(mss=1460, wscale=7, sack_permitted=True) == \
        bytes([2, 4, 0x05, 0xB4, 1, 1, 4, 2, 1, 3, 3, 7])
    assert tcpseg.encode_options() == b""


def test_build_rejects_options_not_padded_to_four_bytes() -> None:
    with pytest.raises(ValueError):
        tcpseg.build(1, 2, 3, 4, SYN, 5, PSEUDO, bytes([2, 4, 5]))
    with pytest.raises(ValueError):
        tcpseg.build(1, 2, 3, 4, SYN, 5, PSEUDO, bytes(44))  # 64-byte header


# ---------------------------------------------------------------------- checksum

@given(st.binary(max_size=64), st.data())
def test_any_flipped_bit_is_tcp_bad_checksum(payload: bytes, draw: st.DataObject) -> None:
    data = bytearray(tcpseg.build(40000, 80, 1, 2, ACK, 100, PSEUDO,
                                  tcpseg.encode_options(mss=1400), payload))
    bit = draw.draw(st.integers(0, len(data) * 8 - 1))
    data[bit // 8] ^= 0x80 >> (bit % 8)
    assert reason_of(bytes(data)) == "tcp_bad_checksum"


def test_parse_without_verify_skips_only_the_checksum() -> None:
    # A link with checksum offload vouches for the checksum; the header is still checked.
    data = bytearray(tcpseg.build(40000, 80, 1, 2, ACK, 100, PSEUDO, b"", b"xyz"))
    data[16] ^= 0xFF
    seg = tcpseg.parse(memoryview(bytes(data)), PSEUDO, verify=False)
    assert (seg.seq, bytes(seg.payload)) == (1, b"xyz")
    bad_offset = bytearray(craft(offset_words=4))
    bad_offset[16] ^= 0xFF
    with pytest.raises(MalformedPacket) as info:
        tcpseg.parse(memoryview(bytes(bad_offset)), PSEUDO, verify=False)
    assert info.value.reason == "tcp_bad_offset"


def test_segment_checksummed_for_other_addresses_is_tcp_bad_checksum() -> None:
    data = tcpseg.build(40000, 80, 1, 2, ACK, 100, PSEUDO, b"", b"x")
    other = ipv4.pseudo_header_sum(bytes([10, 0, 0, 3]), DST, ipv4.PROTO_TCP)
    with pytest.raises(MalformedPacket) as info:
        parse(data, other)
    assert info.value.reason == "tcp_bad_checksum"


# ---------------------------------------------------------------------- options

def test_unknown_option_is_skipped_by_its_length() -> None:
    options = bytes([30, 6, 0xDE, 0xAD, 0xBE, 0xEF]) + bytes([2, 4, 0x05, 0x78]) + bytes([1, 1])
    seg = parse(craft(offset_words=8, flags=SYN, options=options))
    assert seg.options.mss == 1400


def test_nops_before_options_are_skipped() -> None:
    options = bytes([1, 1, 1, 3, 3, 9, 1, 1, 2, 4, 0x02, 0x00])
    seg = parse(craft(offset_words=8, flags=SYN, options=options))
    assert (seg.options.wscale, seg.options.mss) == (9, 512)


def test_options_after_eol_are_ignored() -> None:
    options = bytes([0, 0, 0, 0, 2, 4, 0x05, 0xB4])
    seg = parse(craft(offset_words=7, flags=SYN, options=options))
    assert seg.options.mss is None


def test_eol_after_an_option_ends_the_list() -> None:
    options = bytes([2, 4, 0x05, 0xB4, 0, 99, 99, 99])  # garbage after EOL is not parsed
    seg = parse(craft(offset_words=7, flags=SYN, options=options))
    assert seg.options.mss == 1460


def test_window_scale_above_14_is_taken_as_14() -> None:
    # RFC 7323 2.3: a shift count above 14 MUST be treated as 14.
    seg = parse(craft(offset_words=6, flags=SYN, options=bytes([1, 3, 3, 15])))
    assert seg.options.wscale == 14


def test_known_option_with_wrong_length_is_skipped() -> None:
    options = bytes([2, 3, 0x05, 1, 2, 4, 0x01, 0x00])  # a 3-byte "MSS", then a real one
    seg = parse(craft(offset_words=7, flags=SYN, options=options))
    assert seg.options.mss == 256


@pytest.mark.parametrize("options", [
    bytes([30, 0, 1, 1]),              # length 0 would loop forever
    bytes([30, 1, 1, 1]),              # length 1 cannot even cover kind and length
    bytes([1, 1, 2, 4]),               # MSS whose 4 bytes run past the header
    bytes([2, 4, 5, 0xB4, 30, 8, 0, 0]),  # an unknown option longer than what is left
    bytes([1, 1, 1, 30]),              # a kind with no room for its length byte
], ids=["length-0", "length-1", "mss-beyond-header", "unknown-beyond-header", "no-length"])
def test_impossible_option_length_is_tcp_bad_option(options: bytes) -> None:
    data = craft(offset_words=5 + len(options) // 4, flags=SYN, options=options)
    assert reason_of(data) == "tcp_bad_option"


def test_option_cannot_reach_into_payload() -> None:
    # The MSS option's length runs past the data offset into the payload bytes.
    data = craft(offset_words=6, flags=SYN, options=bytes([1, 1, 2, 4]), payload=b"\x05\xb4")
    assert reason_of(data) == "tcp_bad_option"


# ---------------------------------------------------------------------- malformed headers

@pytest.mark.parametrize("words", [0, 1, 4])
def test_data_offset_below_five_is_tcp_bad_offset(words: int) -> None:
    assert reason_of(craft(offset_words=words, payload=b"abcd")) == "tcp_bad_offset"


def test_data_offset_beyond_segment_is_tcp_bad_offset() -> None:
    assert reason_of(craft(offset_words=15, payload=b"abcdefgh")) == "tcp_bad_offset"
    assert reason_of(craft(offset_words=6)) == "tcp_bad_offset"


def test_data_offset_equal_to_segment_length_is_accepted() -> None:
    seg = parse(craft(offset_words=6, options=bytes([1, 1, 1, 1])))
    assert bytes(seg.payload) == b""


@pytest.mark.parametrize("length", [0, 1, 19])
def test_segment_shorter_than_header_is_tcp_truncated(length: int) -> None:
    assert reason_of(craft(payload=b"")[:length]) == "tcp_truncated"


# ---------------------------------------------------------------------- length and flags

def _segment(flags: int, payload: bytes = b"", seq: int = 100, ack: int = 0) -> Segment:
    return Segment(40000, 80, seq, ack, flags, 1000, Options(), memoryview(payload))


@pytest.mark.parametrize(("flags", "payload", "length"), [
    (ACK, b"", 0),
    (ACK, b"abc", 3),
    (SYN, b"", 1),
    (FIN | ACK, b"", 1),
    (SYN | FIN, b"", 2),
    (SYN | ACK, b"abc", 4),
    (FIN | PSH | ACK, b"abcde", 6),
    (RST, b"", 0),
])
def test_len_counts_data_plus_syn_and_fin(flags: int, payload: bytes, length: int) -> None:
    assert len(_segment(flags, payload)) == length


@pytest.mark.parametrize(("flags", "text"), [
    (SYN, "S"),
    (SYN | ACK, "S."),
    (ACK, "."),
    (FIN | ACK, "F."),
    (RST, "R"),
    (RST | ACK, "R."),
    (PSH | ACK, "P."),
    (FIN | PSH | ACK, "FP."),
    (0, "none"),
])
def test_flags_str_prints_like_tcpdump(flags: int, text: str) -> None:
    assert tcpseg.flags_str(flags) == text


@pytest.mark.parametrize(("flags", "text"), [
    (SYN | ACK | ECE, "S.E"),        # an ECN-setup SYN-ACK: tcpdump shows [S.E]
    (ACK | CWR, ".W"),
    (ACK | URG, ".U"),
    (SYN | ECE | CWR, "SEW"),       # an ECN-setup SYN
    (SYN | FIN, "FS"),
])
def test_flags_str_follows_tcpdump_flag_order(flags: int, text: str) -> None:
    # tcpdump (print-tcp.c, tcp_flag_values) prints F S R P . U E W in that order.
    assert tcpseg.flags_str(flags) == text


# ---------------------------------------------------------------------- scapy cross-checks

def test_scapy_parses_our_segment_with_correct_checksum_and_mss() -> None:
    options = tcpseg.encode_options(mss=1460, wscale=7, sack_permitted=True)
    data = tcpseg.build(40000, 80, 0xDEADBEEF, 0, SYN, 65535, PSEUDO, options)
    packet = IP(ipv4.build(SRC, DST, ipv4.PROTO_TCP, data))
    tcp = packet[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.window) == (40000, 80, 0xDEADBEEF, 65535)
    assert str(tcp.flags) == "S"
    opts = dict((name, value) for name, value in tcp.options if name != "NOP")
    assert opts["MSS"] == 1460
    assert opts["WScale"] == 7
    assert "SAckOK" in opts
    rebuilt = packet.copy()
    del rebuilt[TCP].chksum
    assert IP(bytes(rebuilt))[TCP].chksum == tcp.chksum


def test_we_parse_scapy_built_syn_with_options() -> None:
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") /
                TCP(sport=5555, dport=443, seq=123456789, ack=0, flags="S", window=29200,
                    options=[("MSS", 1460), ("WScale", 7), ("SAckOK", b"")]))
    ip = ipv4.parse(raw)
    seg = tcpseg.parse(ip.payload, ipv4.pseudo_header_sum(ip.src, ip.dst, ipv4.PROTO_TCP))
    assert (seg.sport, seg.dport, seg.seq, seg.flags, seg.window) == \
        (5555, 443, 123456789, SYN, 29200)
    assert seg.options == Options(mss=1460, wscale=7, sack_permitted=True)
    assert len(seg) == 1


def test_we_parse_scapy_built_data_segment() -> None:
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") /
                TCP(sport=5555, dport=443, seq=0xFFFFFFFE, ack=42, flags="PA") / b"payload")
    ip = ipv4.parse(raw)
    seg = tcpseg.parse(ip.payload, ipv4.pseudo_header_sum(ip.src, ip.dst, ipv4.PROTO_TCP))
    assert (seg.seq, seg.ack, seg.flags) == (0xFFFFFFFE, 42, PSH | ACK)
    assert bytes(seg.payload) == b"payload"
    assert tcpseg.flags_str(seg.flags) == "P."


# ---------------------------------------------------------------------- reset_reply

def test_reset_reply_ignores_a_rst() -> None:
    assert reset_reply(_segment(RST)) is None
    assert reset_reply(_segment(RST | ACK, ack=5)) is None


def test_reset_reply_to_segment_with_ack_takes_seq_from_its_ack() -> None:
    # RFC 9293 3.10.7.1: <SEQ=SEG.ACK><CTL=RST>
    assert reset_reply(_segment(ACK, b"data", seq=100, ack=777)) == (777, 0, RST)
    assert reset_reply(_segment(SYN | ACK, seq=100, ack=0xFFFFFFFF)) == (0xFFFFFFFF, 0, RST)


@pytest.mark.parametrize(("flags", "payload", "seq", "ack"), [
    (SYN, b"", 1000, 1001),                 # the SYN counts as one
    (SYN, b"hello", 1000, 1006),            # SYN plus data
    (0, b"data", 1000, 1004),               # bare data without ACK
    (FIN, b"", 1000, 1001),                 # the FIN counts as one
    (FIN | PSH, b"ab", 1000, 1003),
    (SYN | FIN, b"", 1000, 1002),
    (SYN, b"", 0xFFFFFFFF, 0),              # SEG.SEQ+SEG.LEN wraps
    (0, b"xyz", 0xFFFFFFFE, 1),
])
def test_reset_reply_to_segment_without_ack_acks_seq_plus_len(flags: int, payload: bytes,
                                                             seq: int, ack: int) -> None:
    # RFC 9293 3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    assert reset_reply(_segment(flags, payload, seq=seq)) == (0, ack, RST | ACK)
