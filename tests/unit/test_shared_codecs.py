"""One TCP option decoder and one IPv4 header codec for the stack, the `-v` segment log and
the capture analysis: whatever the option bytes, the log line and the time-sequence record
show what `tcp.segment.parse` takes from them (the log lists every option, the shift count
as sent, as tcpdump does), and `bad opt` / no options exactly where the stack finds
`tcp_bad_option`. The IPv4 reading the tools use (`parse(strict=False)`) agrees with the
stack's wherever the stack accepts a packet, and describes what it drops."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tcpstack.analysis.timeseq import parse_tcp
from tcpstack.io.segment_log import SegmentFormatter
from tcpstack.net import ipv4
from tcpstack.net.errors import MalformedPacket
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.segment import (
    MAX_WSCALE,
    SYN,
    BadOption,
    OptionField,
    Options,
    decode_options,
)

KERNEL = bytes([10, 77, 0, 1])
STACK = bytes([10, 77, 0, 2])
PSEUDO = ipv4.pseudo_header_sum(KERNEL, STACK, ipv4.PROTO_TCP)
LOG_OPTIONS = re.compile(r"options \[(.*)\], length \d+$")
SACK_BLOCK = re.compile(r"\{(\d+):(\d+)\}")
TIMESTAMPS = re.compile(r"val (\d+) ecr (\d+)")


def sack(*blocks: tuple[int, int]) -> bytes:
    return bytes((5, 2 + 8 * len(blocks))) + b"".join(struct.pack("!II", *b) for b in blocks)


def padded(options: bytes) -> bytes:
    """Zero bytes (EOL) up to a multiple of four, as a header needs."""
    return options + bytes(-len(options) % 4)


def packet(options: bytes, payload: bytes = b"") -> bytes:
    # A SYN without ACK: the log shows its numbers, SACK edges included, absolute.
    segment = tcpseg.build(40000, 80, 1000, 0, SYN, 65535, PSEUDO, options, payload)
    return ipv4.build(KERNEL, STACK, ipv4.PROTO_TCP, segment)


def stack_reading(options: bytes) -> Options | None:
    """What tcp.segment.parse takes from these options; None where it finds them malformed."""
    segment = tcpseg.build(40000, 80, 1000, 0, SYN, 65535, PSEUDO, options)
    try:
        return tcpseg.parse(memoryview(segment), PSEUDO).options
    except MalformedPacket as exc:
        assert exc.reason == "tcp_bad_option"
        return None


def log_parts(options: bytes) -> list[str]:
    line = SegmentFormatter().format(packet(options))
    if not options:
        assert "options" not in line, line
        return []
    match = LOG_OPTIONS.search(line)
    assert match is not None, line
    return match.group(1).split(",")


def log_reading(options: bytes) -> Options | None:
    """The options as the log line shows them, the last of a kind counting (as the stack
    counts it); None where the line ends in `bad opt`."""
    parts = log_parts(options)
    if parts and parts[-1].startswith("bad opt"):
        return None
    read = Options()
    for part in parts:
        word, _, rest = part.partition(" ")
        if word == "mss":
            read.mss = int(rest)
        elif word == "wscale":
            read.wscale = min(int(rest), MAX_WSCALE)
        elif word == "sackOK":
            read.sack_permitted = True
        elif word == "sack":
            read.sack = tuple((int(a), int(b)) for a, b in SACK_BLOCK.findall(rest))
        elif word == "TS":
            val, ecr = TIMESTAMPS.fullmatch(rest).groups()  # type: ignore[union-attr]
            read.tsval, read.tsecr = int(val), int(ecr)
    return read


def analysis_reading(options: bytes) -> tuple[int | None, list[tuple[int, int]], int | None]:
    record = parse_tcp(0.0, packet(options))
    assert record is not None
    return record.wscale, record.sack, record.mss


def expected_record(stack: Options | None) -> tuple[int | None, list[tuple[int, int]],
                                                    int | None]:
    # A segment the stack drops for its options is still drawn, without them.
    if stack is None:
        return None, [], None
    return stack.wscale, list(stack.sack), stack.mss


def one_option() -> st.SearchStrategy[bytes]:
    blocks = st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
    return st.one_of(
        st.just(b"\x01"),                                            # NOP
        st.just(b"\x00"),                                            # EOL
        st.integers(0, 0xFFFF).map(lambda m: struct.pack("!BBH", 2, 4, m)),
        st.integers(0, 255).map(lambda s: bytes((3, 3, s))),         # shift counts over 14 too
        st.just(b"\x04\x02"),
        st.lists(blocks, max_size=4).map(lambda bs: sack(*bs)),      # no blocks to four
        st.binary(min_size=8, max_size=8).map(lambda b: b"\x08\x0a" + b),  # timestamps
        st.tuples(st.integers(2, 5), st.binary(max_size=6)).map(     # known kinds, odd sizes
            lambda kb: bytes((kb[0], 2 + len(kb[1]))) + kb[1]),
        st.tuples(st.integers(6, 255), st.binary(max_size=6)).map(   # unknown kinds
            lambda kb: bytes((kb[0], 2 + len(kb[1]))) + kb[1]),
        st.tuples(st.integers(2, 255), st.integers(0, 60)).map(      # any length at all
            lambda kl: bytes(kl)),
    )


option_lists = st.one_of(
    st.lists(one_option(), max_size=8).map(b"".join),
    st.binary(max_size=40),
).map(lambda raw: padded(raw[:40]))

EXAMPLES = {
    "linux-syn": bytes((2, 4, 5, 0xB4, 4, 2, 8, 10)) + bytes(8) + bytes((1, 3, 3, 7)),
    "sack-blocks": bytes((1, 1)) + sack((100, 200), (300, 400)),
    "wscale-above-14": bytes((1, 3, 3, 15)),
    "mss-of-the-wrong-length": bytes((2, 3, 5, 1, 2, 4, 1, 0)),
    "unknown-then-mss": bytes((30, 6, 0xDE, 0xAD, 0xBE, 0xEF, 2, 4, 5, 0x78, 1, 1)),
    "after-eol": bytes((0, 0, 0, 0, 2, 4, 5, 0xB4)),
    "length-0-after-mss": bytes((2, 4, 5, 0xB4, 30, 0, 1, 1)),
    "length-1": bytes((1, 1, 30, 1)),
    "beyond-the-header": bytes((2, 4, 5, 0xB4, 30, 8, 0, 0)),
    "no-room-for-the-length": bytes((1, 1, 1, 30)),
    "sack-without-blocks-after-one": bytes((1, 1)) + sack((7, 9)) + bytes((5, 2)),
}


@pytest.mark.parametrize("options", list(EXAMPLES.values()), ids=list(EXAMPLES))
def test_the_log_and_the_analysis_read_options_as_the_stack(options: bytes) -> None:
    options = padded(options)
    stack = stack_reading(options)
    assert log_reading(options) == stack
    assert analysis_reading(options) == expected_record(stack)


@settings(max_examples=400, deadline=None)
@given(option_lists)
@example(padded(EXAMPLES["sack-without-blocks-after-one"]))
@example(padded(EXAMPLES["length-0-after-mss"]))
def test_whatever_the_option_bytes_the_three_readings_agree(options: bytes) -> None:
    stack = stack_reading(options)
    assert log_reading(options) == stack
    assert analysis_reading(options) == expected_record(stack)


def test_the_log_shows_each_option_in_order_and_the_bad_one_by_its_kind() -> None:
    assert log_parts(padded(EXAMPLES["linux-syn"])) == [
        "mss 1460", "sackOK", "TS val 0 ecr 0", "nop", "wscale 7"]
    assert log_parts(padded(EXAMPLES["wscale-above-14"])) == ["nop", "wscale 15"]
    assert log_parts(padded(EXAMPLES["sack-blocks"])) == [
        "nop", "nop", "sack 2 {100:200}{300:400}"]
    assert log_parts(padded(EXAMPLES["mss-of-the-wrong-length"])) == [
        "unknown-2 0x05", "nop", "mss 256"]
    assert log_parts(padded(EXAMPLES["length-0-after-mss"])) == ["mss 1460", "bad opt 30"]
    assert log_parts(padded(EXAMPLES["after-eol"])) == ["eol"]


def test_the_analysis_takes_the_scale_as_the_stack_and_no_options_from_a_bad_segment(
        ) -> None:
    assert analysis_reading(padded(EXAMPLES["wscale-above-14"])) == (14, [], None)
    assert analysis_reading(padded(EXAMPLES["length-0-after-mss"])) == (None, [], None)
    assert analysis_reading(padded(EXAMPLES["sack-blocks"])) == (
        None, [(100, 200), (300, 400)], None)


# ---------------------------------------------------------------------- the decoder itself

def test_decode_options_lists_every_option_with_what_the_stack_takes_from_it() -> None:
    raw = padded(bytes((2, 4, 5, 0xB4, 1, 3, 3, 15, 4, 2, 8, 10)) + bytes(range(8))
                 + bytes((1, 1)) + sack((1, 2)) + bytes((99, 3, 0xAB, 2, 3, 1)))
    fields: list[OptionField] = []
    options = decode_options(raw, fields)
    # The stack reads timestamps now (RFC 7323): bytes 0..7 are TSval 0x00010203, TSecr
    # 0x04050607.
    assert options == Options(mss=1460, wscale=14, sack_permitted=True, sack=((1, 2),),
                              tsval=0x00010203, tsecr=0x04050607)
    assert fields == [
        OptionField(2, b"\x05\xb4", 1460),
        OptionField(1, b"", None),
        OptionField(3, b"\x0f", 15),
        OptionField(4, b"", True),
        OptionField(8, bytes(range(8)), (0x00010203, 0x04050607)),
        OptionField(1, b"", None),
        OptionField(1, b"", None),
        OptionField(5, struct.pack("!II", 1, 2), ((1, 2),)),
        OptionField(99, b"\xab", None),
        OptionField(2, b"\x01", None),
        OptionField(0, b"", None),
    ]


def test_a_bad_option_names_its_kind_after_listing_those_before_it() -> None:
    fields: list[OptionField] = []
    with pytest.raises(BadOption) as info:
        decode_options(bytes((1, 2, 4, 5, 0xB4, 30, 9, 0)), fields)
    assert (info.value.reason, info.value.kind) == ("tcp_bad_option", 30)
    assert fields == [OptionField(1, b"", None), OptionField(2, b"\x05\xb4", 1460)]


def test_decode_options_reads_as_parse_does() -> None:
    raw = padded(bytes((1, 1)) + sack((5, 6), (7, 8)) + bytes((2, 4, 1, 0)))
    seg = tcpseg.parse(memoryview(tcpseg.build(1, 2, 3, 4, SYN, 5, PSEUDO, raw)), PSEUDO)
    assert decode_options(raw) == seg.options == Options(mss=256, sack=((5, 6), (7, 8)))
    assert decode_options(memoryview(raw)) == seg.options


# ---------------------------------------------------------------------- IPv4

def craft_ip(*, vihl: int = 0x45, total: int | None = None, frag: int = ipv4.FLAG_DF,
             csum: int | None = None, body: bytes = bytes(24)) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", vihl, 0, 20 + len(body) if total is None else total,
                         7, frag, 64, ipv4.PROTO_TCP, 0, KERNEL, STACK)
    if csum is None:
        csum = ~(int.from_bytes(header, "big") % 0xFFFF) & 0xFFFF
    return header[:10] + csum.to_bytes(2, "big") + header[12:] + body


@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4),
       st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF),
       st.binary(max_size=1480))
def test_what_the_stack_accepts_the_tools_read_the_same(src: bytes, dst: bytes, proto: int,
                                                        ttl: int, ident: int,
                                                        payload: bytes) -> None:
    raw = ipv4.build(src, dst, proto, payload, ttl=ttl, ident=ident)
    strict, loose = ipv4.parse(raw), ipv4.parse(raw, strict=False)
    assert (loose.src, loose.dst, loose.proto, loose.ttl, loose.ident, loose.header_len,
            bytes(loose.payload)) == (strict.src, strict.dst, strict.proto, strict.ttl,
                                      strict.ident, strict.header_len, bytes(strict.payload))


@pytest.mark.parametrize(("raw", "reason", "payload_len"), [
    (craft_ip(csum=0x1234), "ip_bad_checksum", 24),
    (craft_ip(frag=ipv4.FLAG_MF), "ip_fragment", 24),
    (craft_ip(total=30), None, 10),             # trimmed to the total length, both ways
    (craft_ip(total=100), "ip_truncated", 24),  # beyond what was read: to the end
    (craft_ip(total=12), "ip_bad_length", 24),  # below the header: to the end
], ids=["bad-checksum", "fragment", "trimmed", "total-beyond", "total-below-header"])
def test_the_tools_read_what_the_stack_drops(raw: bytes, reason: str | None,
                                             payload_len: int) -> None:
    if reason is None:
        assert len(ipv4.parse(raw).payload) == payload_len
    else:
        with pytest.raises(MalformedPacket) as info:
            ipv4.parse(raw)
        assert info.value.reason == reason
    loose = ipv4.parse(raw, strict=False)
    assert (loose.src, loose.dst, loose.ident, len(loose.payload)) == (
        KERNEL, STACK, 7, payload_len)


@pytest.mark.parametrize(("raw", "reason"), [
    (craft_ip()[:19], "ip_truncated"),
    (craft_ip(vihl=0x65), "ip_bad_version"),
    (craft_ip(vihl=0x44), "ip_bad_ihl"),
    (craft_ip(vihl=0x4F), "ip_truncated"),  # 60 header bytes in a 44-byte packet
], ids=["short", "version-6", "ihl-4", "ihl-beyond"])
def test_without_a_header_to_read_both_readings_raise_the_same_reason(raw: bytes,
                                                                      reason: str) -> None:
    for strict in (True, False):
        with pytest.raises(MalformedPacket) as info:
            ipv4.parse(raw, strict=strict)
        assert info.value.reason == reason


def test_the_log_and_the_analysis_describe_a_packet_the_stack_drops() -> None:
    syn = tcpseg.build(40000, 80, 1000, 0, SYN, 65535, PSEUDO, b"")
    raw = craft_ip(csum=0x1234, body=syn)
    with pytest.raises(MalformedPacket):
        ipv4.parse(raw)
    assert SegmentFormatter().format(raw) == (
        "IP 10.77.0.1.40000 > 10.77.0.2.80: Flags [S], seq 1000, win 65535, length 0")
    record = parse_tcp(1.5, raw)
    assert record is not None
    assert (record.src, record.dst, record.seq, record.flags) == (
        "10.77.0.1:40000", "10.77.0.2:80", 1000, SYN)
