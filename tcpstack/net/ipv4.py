"""IPv4 header codec (RFC 791): strict parsing for input, a precomputed template for output.

The stack, the `-v` segment log and the capture analysis all read IPv4 headers with `parse`
(the tools with `strict=False`, which describes damaged packets instead of dropping them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tcpstack.net.checksum import Bytes, View, checksum, ones_complement_sum
from tcpstack.net.checksum import pseudo_header_sum as checksum_pseudo_header_sum
from tcpstack.net.errors import MalformedPacket

PROTO_ICMP = 1
PROTO_TCP = 6

HEADER = struct.Struct("!BBHHHBBH4s4s")
HEADER_LEN = 20
MIN_MTU = 68  # RFC 791: every host must take datagrams of 68 bytes unfragmented
FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF
DEFAULT_TTL = 64


@dataclass(slots=True)
class IPv4Packet:
    """A validated IPv4 datagram; `payload` is a view into the packet, trimmed to total length."""

    src: bytes
    dst: bytes
    proto: int
    ttl: int
    ident: int
    header_len: int
    payload: View


def parse(packet: Bytes, strict: bool = True) -> IPv4Packet:
    """Validate and decode an IPv4 packet; raise MalformedPacket naming the drop reason.

    `strict=False` reads the header as it stands, for tools that show what crossed the link
    (the `-v` segment log, the capture analysis): the checksum is not verified, a fragment
    is decoded as it is, and a total length the packet does not hold (beyond the bytes read
    or captured, or below the header) runs the payload to the end of the bytes. It still
    raises where there is no header to read: ip_truncated, ip_bad_version, ip_bad_ihl."""
    n = len(packet)
    if n < HEADER_LEN:
        raise MalformedPacket("ip_truncated", f"{n} bytes, shorter than an IPv4 header")
    vihl, _tos, total, ident, frag, ttl, proto, _csum, src, dst = HEADER.unpack_from(packet)
    if vihl >> 4 != 4:
        raise MalformedPacket("ip_bad_version", f"version {vihl >> 4}")
    ihl = (vihl & 0x0F) * 4
    if ihl < HEADER_LEN:
        raise MalformedPacket("ip_bad_ihl", f"IHL {ihl // 4} words")
    if ihl > n:
        raise MalformedPacket("ip_truncated", f"IHL {ihl} bytes beyond a {n}-byte packet")
    view = memoryview(packet)
    if strict:
        if total < ihl:
            raise MalformedPacket("ip_bad_length", f"total length {total} below header {ihl}")
        if total > n:
            raise MalformedPacket("ip_truncated", f"total length {total} beyond {n} bytes read")
        # ones_complement_sum inlined (the header is whole 16-bit words): this runs for
        # every packet read.
        if int.from_bytes(view[:ihl], "big") % 0xFFFF != 0:
            raise MalformedPacket("ip_bad_checksum")
        if ihl > HEADER_LEN:
            _check_options(view[HEADER_LEN:ihl])
        if frag & (FLAG_MF | OFFSET_MASK):
            # Not a datagram on its own: the stack reassembles (net/fragments.py).
            raise MalformedPacket("ip_fragment")
    elif not ihl <= total <= n:
        total = n
    return IPv4Packet(src, dst, proto, ttl, ident, ihl, view[ihl:total])


OPT_EOL = 0
OPT_NOP = 1
# Loose and strict source routes, and record route's cousins that steer a reply: Linux drops
# source-routed datagrams (accept_source_route = 0), as RFC 1122 3.3.5 lets a host do.
SOURCE_ROUTES = frozenset({131, 137})


def _check_options(options: memoryview) -> None:
    """RFC 791 3.1's option format: EOL ends the list, NOP is one byte, every other option
    is type, length (at least 2, within the header), value. Raises MalformedPacket."""
    i, n = 0, len(options)
    while i < n:
        kind = options[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n or not 2 <= options[i + 1] <= n - i:
            raise MalformedPacket("ip_bad_option", f"option {kind} overruns the header")
        if kind in SOURCE_ROUTES:
            raise MalformedPacket("ip_source_route", f"option {kind}")
        i += options[i + 1]


class HeaderTemplate:
    """IPv4 headers for one (src, dst, proto): the checksum of the fixed fields is precomputed,
    so building a header costs one pack and one addition (the stack's framing packs it with
    the TCP header from `base_sum` and the fields). Sent with DF and identification 0,
    which RFC 6864 allows for atomic datagrams."""

    __slots__ = ("base_sum", "dst", "proto", "src", "ttl")

    def __init__(self, src: bytes, dst: bytes, proto: int, ttl: int = DEFAULT_TTL) -> None:
        self.src = src
        self.dst = dst
        self.proto = proto
        self.ttl = ttl
        fixed = HEADER.pack(0x45, 0, 0, 0, FLAG_DF, ttl, proto, 0, src, dst)
        self.base_sum = ones_complement_sum(fixed)

    def build(self, payload_len: int) -> bytes:
        total = HEADER_LEN + payload_len
        csum = ~((self.base_sum + total) % 0xFFFF) & 0xFFFF
        return HEADER.pack(0x45, 0, total, 0, FLAG_DF, self.ttl, self.proto, csum,
                           self.src, self.dst)


def build(src: bytes, dst: bytes, proto: int, payload: Bytes, ttl: int = DEFAULT_TTL,
          ident: int = 0) -> bytes:
    """A whole IPv4 packet (header with checksum, then payload); for the cold paths."""
    total = HEADER_LEN + len(payload)
    hdr = HEADER.pack(0x45, 0, total, ident, FLAG_DF, ttl, proto, 0, src, dst)
    csum = checksum(hdr)
    return hdr[:10] + csum.to_bytes(2, "big") + hdr[12:] + bytes(payload)


def pseudo_header_sum(src: bytes, dst: bytes, proto: int) -> int:
    """The sum of the TCP/UDP pseudo-header fields that do not depend on the segment length
    (either family: see checksum.pseudo_header_sum)."""
    return checksum_pseudo_header_sum(src, dst, proto)
