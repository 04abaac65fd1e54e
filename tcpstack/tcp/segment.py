"""TCP segment codec (RFC 9293 section 3.1) with options (MSS, window scale, SACK-permitted,
SACK blocks, timestamps).

Parsing verifies the checksum against the pseudo-header and raises MalformedPacket for
anything it cannot trust. Unknown options are skipped by their length; an option whose
length is impossible makes the segment malformed (RFC 9293 3.1 asks us to be prepared for it).

`decode_options` is the one reading of options: the stack's `parse`, the `-v` segment log
(io/segment_log.py) and the capture analysis (analysis/timeseq.py) all go through it, so
what a log line or a plot shows of a segment's options is what the stack took from them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from tcpstack.net.checksum import Bytes, View, ones_complement_sum
from tcpstack.net.errors import MalformedPacket

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

HEADER = struct.Struct("!HHIIHHHH")  # ports, seq, ack, offset+flags, window, checksum, urgent
_SACK_BLOCK = struct.Struct("!II")
_sack_blocks = _SACK_BLOCK.iter_unpack
_TIMESTAMPS = struct.Struct("!II")  # TSval, TSecr (RFC 7323 3.2)
_unpack_timestamps = _TIMESTAMPS.unpack_from
# The option after the SYN with its NOP, NOP, kind and length (TIMESTAMPS_PREFIX); this and
# TIMESTAMPS_PREFIX are annotated for the compiled build, whose type check of the import
# cycle would not infer them.
pack_timestamps_option: Callable[[bytes, int, int], bytes] = struct.Struct("!4sII").pack
_unpack_timestamps_option = struct.Struct("!III").unpack_from
HEADER_LEN = 20

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

MAX_WSCALE = 14  # RFC 7323 2.3
# The timestamps option as Linux lays it out on every segment after the SYN: NOP, NOP, kind 8,
# length 10, then TSval and TSecr (RFC 7323 appendix A); 12 bytes of every header.
TIMESTAMPS_PREFIX: bytes = bytes((1, 1, 8, 10))
TIMESTAMPS_LEN = 12
_TIMESTAMPS_PREFIX_WORD = int.from_bytes(TIMESTAMPS_PREFIX, "big")
DEFAULT_MSS = 536  # RFC 9293 3.7.1, when the peer sends no MSS option

# tcpdump's order, with "." for ACK in its place.
_FLAG_NAMES = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"),
               (ECE, "E"), (CWR, "W"))


# A segment a connection sends, for the stack to frame (TCP checksum, IP header) and the link
# to carry: (seq, ack, flags, window, options, payload, mss). The ports are the connection's,
# which the stack adds; `payload` is a view of the send buffer, valid until the link has
# written the packet; `mss` is the size a link that segments large payloads (GSO) cuts this
# one to. A plain tuple, not a NamedTuple: one is built per segment, and a NamedTuple's
# constructor (a Python function) costs four times a tuple display.
OutSegment: TypeAlias = tuple[int, int, int, int, bytes, Bytes, int]


@dataclass(slots=True)
class Options:
    """The options a segment carries; None where absent."""

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack: tuple[tuple[int, int], ...] = ()  # (left edge, right edge) blocks, RFC 2018
    tsval: int | None = None  # RFC 7323 timestamps: TSval, None without the option
    tsecr: int = 0


_NO_OPTIONS = Options()


@dataclass(slots=True)
class Segment:
    """A parsed TCP segment. `payload` is a view into the received packet."""

    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    options: Options
    payload: View

    def __len__(self) -> int:
        """The sequence space the segment occupies: its data plus one for SYN and for FIN."""
        n = len(self.payload)
        if self.flags & SYN:
            n += 1
        if self.flags & FIN:
            n += 1
        return n


def flags_str(flags: int) -> str:
    """Flags the way tcpdump prints them: `S.` for SYN+ACK, `.` for a bare ACK."""
    return "".join(name for bit, name in _FLAG_NAMES if flags & bit) or "none"


def parse(data: memoryview, pseudo_sum: int, verify: bool = True) -> Segment:
    """Decode a TCP segment; `pseudo_sum` is the pseudo-header sum without the length.
    `verify=False` skips the checksum when the link already vouched for it."""
    n = len(data)
    if n < HEADER_LEN:
        raise MalformedPacket("tcp_truncated", f"{n} bytes")
    if verify and (ones_complement_sum(data) + pseudo_sum + n) % 0xFFFF != 0:
        raise MalformedPacket("tcp_bad_checksum")
    sport, dport, seq, ack, off_flags, window, _csum, _urg = HEADER.unpack_from(data)
    return from_fields(data, sport, dport, seq, ack, off_flags, window)


def from_fields(data: memoryview, sport: int, dport: int, seq: int, ack: int, off_flags: int,
                window: int) -> Segment:
    """The rest of `parse`, once the caller has checked the length (at least HEADER_LEN)
    and the checksum, and unpacked the fixed header of `data` (the stack unpacks it
    together with the IPv4 header): the data offset, the options, the payload."""
    n = len(data)
    offset = (off_flags >> 12) * 4
    if offset < HEADER_LEN or offset > n:
        raise MalformedPacket("tcp_bad_offset", f"data offset {offset} in {n} bytes")
    # The options are read in place (no slice of their own: this is the per-segment path).
    if offset == HEADER_LEN:
        options = _NO_OPTIONS
    elif offset == HEADER_LEN + TIMESTAMPS_LEN:
        # What a peer with timestamps puts on nearly every segment, NOP NOP TS, is read at
        # once (one unpack); anything else by the decoder.
        prefix, tsval, tsecr = _unpack_timestamps_option(data, HEADER_LEN)
        if prefix == _TIMESTAMPS_PREFIX_WORD:
            options = Options(tsval=tsval, tsecr=tsecr)
        else:
            options = _decode_options(data, HEADER_LEN, offset, None)
    else:
        options = _decode_options(data, HEADER_LEN, offset, None)
    return Segment(sport, dport, seq, ack, off_flags & 0xFF, window, options, data[offset:])


SackBlocks: TypeAlias = tuple[tuple[int, int], ...]


class OptionField(NamedTuple):
    """One option as it stands in the header, for tools that show every option (the `-v`
    segment log). `body` is what follows kind and length (empty for EOL and NOP); `value` is
    what the stack takes from it: the MSS, the window scale's shift count as sent (the stack
    uses at most MAX_WSCALE), True for SACK-permitted, the SACK blocks, (TSval, TSecr); None
    for EOL, NOP and any option the stack does not use (an unknown kind, or a known one of
    the wrong length)."""

    kind: int
    body: bytes
    value: int | bool | SackBlocks | tuple[int, int] | None


class BadOption(MalformedPacket):
    """An option whose length is impossible (`tcp_bad_option`): none, below 2, or beyond
    the header. `kind` is its kind."""

    def __init__(self, kind: int, detail: str) -> None:
        super().__init__("tcp_bad_option", detail)
        self.kind = kind


def decode_options(raw: Bytes, fields: list[OptionField] | None = None) -> Options:
    """The options in `raw` (the header bytes after the fixed 20) as the stack takes them;
    raise BadOption at the first option whose length is impossible. With `fields`, also
    append every option read to it in wire order (up to the bad one, when one is)."""
    return _decode_options(raw, 0, len(raw), fields)


def _decode_options(raw: Bytes, i: int, end: int, fields: list[OptionField] | None) -> Options:
    opts = Options()
    while i < end:
        kind = raw[i]
        if kind == OPT_NOP:
            if fields is not None:
                fields.append(OptionField(kind, b"", None))
            i += 1
            continue
        if kind == OPT_EOL:
            if fields is not None:
                fields.append(OptionField(kind, b"", None))
            break
        if i + 1 >= end:
            raise BadOption(kind, f"option {kind} has no length")
        length = raw[i + 1]
        if length < 2 or i + length > end:
            raise BadOption(kind, f"option {kind} length {length}")
        # Timestamps and SACK are tested first: after the handshake they are the only
        # options peers send.
        value: int | bool | SackBlocks | tuple[int, int] | None = None
        if kind == OPT_TIMESTAMP:
            if length == 10:
                value = opts.tsval, opts.tsecr = _unpack_timestamps(raw, i + 2)
        elif kind == OPT_SACK:
            if (length - 2) & 7 == 0:  # 8 bytes a block; no blocks reads as none
                value = opts.sack = tuple(_sack_blocks(raw[i + 2:i + length]))
        elif kind == OPT_MSS:
            if length == 4:
                value = opts.mss = (raw[i + 2] << 8) | raw[i + 3]
        elif kind == OPT_WSCALE:
            if length == 3:
                value = raw[i + 2]
                # RFC 7323 2.3: a shift count above 14 is taken as 14.
                opts.wscale = value if value <= MAX_WSCALE else MAX_WSCALE
        elif kind == OPT_SACK_PERMITTED and length == 2:
            value = opts.sack_permitted = True
        if fields is not None:
            fields.append(OptionField(kind, bytes(raw[i + 2:i + length]), value))
        i += length
    return opts


def encode_options(mss: int | None = None, wscale: int | None = None,
                   sack_permitted: bool = False,
                   timestamps: tuple[int, int] | None = None) -> bytes:
    """Options padded to a multiple of four bytes, laid out the way Linux lays them out
    (SACK-permitted takes the place of the two NOPs before the timestamps when both go);
    `timestamps` is (TSval, TSecr)."""
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, mss)
    if timestamps is not None:
        out += (bytes((OPT_SACK_PERMITTED, 2)) if sack_permitted else bytes((OPT_NOP, OPT_NOP)))
        out += bytes((OPT_TIMESTAMP, 10)) + _TIMESTAMPS.pack(*timestamps)
    elif sack_permitted:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
    if wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, wscale))
    return out


def encode_timestamps(tsval: int, tsecr: int) -> bytes:
    """The timestamps option of a segment after the SYN (12 bytes, NOP-padded)."""
    return pack_timestamps_option(TIMESTAMPS_PREFIX, tsval, tsecr)


def encode_sack(blocks: list[tuple[int, int]]) -> bytes:
    """A SACK option (RFC 2018 3), NOP-padded to a multiple of four bytes; at most four
    blocks fit in the 40 bytes of option space (three beside timestamps)."""
    blocks = blocks[:4]
    if not blocks:
        return b""
    return bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks))) + b"".join(
        _SACK_BLOCK.pack(left, right) for left, right in blocks)


def header_sum(sport: int, dport: int, seq: int, ack: int, off_flags: int, window: int) -> int:
    """The one's complement sum of the fixed header's 16-bit words, checksum and urgent
    pointer zero, from the fields themselves (no packing; see net/checksum.py for why a sum
    of words may be reduced modulo 0xFFFF at the end)."""
    return (sport + dport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
            + off_flags + window)


def build_header(sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
                 pseudo_sum: int, options: bytes = b"", payload: Bytes = b"") -> bytes:
    """The encoded header (options included) whose checksum covers `payload` too; the caller
    sends header and payload back to back. `pseudo_sum` is as for `parse`."""
    offset = HEADER_LEN + len(options)
    if offset & 3 or offset > 60:
        raise ValueError(f"options must pad the header to a multiple of 4 up to 60, not {offset}")
    off_flags = (offset << 10) | flags
    total = (pseudo_sum + offset + len(payload)
             + header_sum(sport, dport, seq, ack, off_flags, window))
    if payload:
        total += ones_complement_sum(payload)
    if options:
        total += int.from_bytes(options, "big")  # whole words: the length is a multiple of 4
    return HEADER.pack(sport, dport, seq, ack, off_flags, window, ~(total % 0xFFFF) & 0xFFFF,
                       0) + options


def build_header_partial(sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
                         pseudo_sum: int, options: bytes, payload_len: int) -> bytes:
    """A header whose checksum field holds only the pseudo-header sum, for a link that
    completes the checksum itself (checksum offload, see net/offload.py)."""
    offset = HEADER_LEN + len(options)
    partial = (pseudo_sum + offset + payload_len) % 0xFFFF
    return HEADER.pack(sport, dport, seq, ack, (offset << 10) | flags, window, partial,
                       0) + options


def build(sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
          pseudo_sum: int, options: bytes = b"", payload: Bytes = b"") -> bytes:
    """A whole encoded segment: header, options and payload."""
    return build_header(sport, dport, seq, ack, flags, window, pseudo_sum, options,
                        payload) + bytes(payload)
