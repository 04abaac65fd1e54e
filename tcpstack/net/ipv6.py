"""IPv6 header codec (RFC 8200): strict parsing with the extension header walk, for input;
a whole packet built for the cold paths (the stack frames TCP itself, as for IPv4).

The walk from the fixed header to the upper layer follows RFC 8200 4: hop-by-hop options
only right after the fixed header (4.1), then any of routing, fragment and destination
options. Options of hop-by-hop and destination options headers are skipped, and an unknown
one is handled as the two high bits of its type say (4.2): skip it, or drop the packet (the
parameter problem RFC 8200 asks for is not sent: counted instead, see docs/DECISIONS.md).
Refused, each counted under its own reason: a routing header with segments left (type 0 is
deprecated by RFC 5095, and a host that is not a router forwards nothing), a fragment that is
not atomic (RFC 6946: an atomic fragment is processed on its own), a chain longer than
MAX_EXTENSION_HEADERS, and any header that runs past the packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tcpstack.net.checksum import Bytes, View, pseudo_header_sum
from tcpstack.net.errors import MalformedPacket

PROTO_HOPOPTS = 0
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_DSTOPTS = 60

HEADER = struct.Struct("!IHBB16s16s")  # version/class/flow, payload length, next, hops
HEADER_LEN = 40
MIN_MTU = 1280  # RFC 8200 5: every link carries 1280 bytes unfragmented
DEFAULT_HOP_LIMIT = 64
VERSION_WORD = 6 << 28  # version 6, traffic class 0, flow label 0
# Linux refuses more than 8 options per hop-by-hop or destination options header
# (max_hbh_opts_number); a chain of more than 8 headers is an attack, not a packet.
MAX_EXTENSION_HEADERS = 8
FRAG_OFFSET_MASK = 0xFFF8
FRAG_MORE = 0x0001
OPT_PAD1 = 0
OPT_PADN = 1
# Option types whose two high bits are 11 ask for a parameter problem unless the
# destination is multicast; 10 always; 01 discard silently; 00 skip (RFC 8200 4.2).
_OPT_ACTION_SKIP = 0

_OPTION_HEADERS = frozenset({PROTO_HOPOPTS, PROTO_DSTOPTS})
_ROUTING = struct.Struct("!BBBB")  # next header, length, routing type, segments left
_FRAGMENT = struct.Struct("!BBHI")  # next header, reserved, offset and M flag, ident


@dataclass(slots=True)
class IPv6Packet:
    """A validated IPv6 packet; `proto` is the upper layer's next header value (after the
    extension headers), `payload` a view of the upper-layer data, trimmed to the payload
    length, `header_len` the bytes before it (the fixed header and extension headers)."""

    src: bytes
    dst: bytes
    proto: int
    hop_limit: int
    header_len: int
    payload: View


def parse(packet: Bytes, strict: bool = True) -> IPv6Packet:
    """Validate and decode an IPv6 packet; raise MalformedPacket naming the drop reason.

    `strict=False` reads what stands there for the tools (the `-v` log, the capture
    analysis): the payload length is trusted only when the bytes hold it and the extension
    headers are walked as far as they go (a refused one ends the walk with its own type as
    the upper layer). It still raises where there is no fixed header to read."""
    n = len(packet)
    if n < HEADER_LEN:
        raise MalformedPacket("ip6_truncated", f"{n} bytes, shorter than an IPv6 header")
    word, length, nxt, hops, src, dst = HEADER.unpack_from(packet)
    if word >> 28 != 6:
        raise MalformedPacket("ip6_bad_version", f"version {word >> 28}")
    end = HEADER_LEN + length
    view = memoryview(packet)
    if strict:
        if length == 0:
            # Zero means a jumbogram (RFC 2675), which a link of MTU <= 65535 never needs.
            raise MalformedPacket("ip6_bad_length", "payload length 0 (jumbogram)")
        if end > n:
            raise MalformedPacket("ip6_truncated", f"payload length {length} beyond "
                                  f"{n - HEADER_LEN} bytes read")
        proto, offset = upper_layer(view[:end], nxt, HEADER_LEN)
    else:
        if end > n or length == 0:
            end = n
        try:
            proto, offset = upper_layer(view[:end], nxt, HEADER_LEN)
        except MalformedPacket:
            proto, offset = nxt, HEADER_LEN
    return IPv6Packet(src, dst, proto, hops, offset, view[offset:end])


def upper_layer(packet: Bytes, nxt: int, offset: int) -> tuple[int, int]:
    """Walk the extension headers from `offset`, where a header of type `nxt` starts, to
    the upper layer: its next header value and offset. Raises MalformedPacket for what a
    host must refuse (see the module docstring). Also reads the packets ICMPv6 errors
    quote, of which only the start is there: a header cut short is still refused."""
    n = len(packet)
    headers = 0
    while True:
        if nxt in _OPTION_HEADERS:
            if nxt == PROTO_HOPOPTS and headers:
                # RFC 8200 4.1: only right after the IPv6 header (Linux drops it elsewhere).
                raise MalformedPacket("ip6_bad_hop_by_hop", "hop-by-hop options not first")
            size = _header_size(packet, offset)
            _check_options(packet, offset + 2, offset + size)
        elif nxt == PROTO_ROUTING:
            size = _header_size(packet, offset)  # at least 8 bytes, all within the packet
            _, _, kind, left = _ROUTING.unpack_from(packet, offset)
            if left:
                # RFC 8200 4.4: a node that does not forward must not act on the route; type
                # 0 is deprecated outright (RFC 5095). With segments left 0 it is skipped.
                raise MalformedPacket("ip6_routing_refused",
                                      f"routing type {kind}, {left} segments left")
        elif nxt == PROTO_FRAGMENT:
            if offset + 8 > n:
                raise MalformedPacket("ip6_ext_truncated", "fragment header")
            following, _, frag, _ident = _FRAGMENT.unpack_from(packet, offset)
            if frag & (FRAG_OFFSET_MASK | FRAG_MORE):
                # Not reassembled: TCP sends no IPv6 fragments, and Linux's own path MTU
                # keeps the kernel from fragmenting what it sends us (docs/DECISIONS.md).
                raise MalformedPacket("ip6_fragment", f"offset {frag & FRAG_OFFSET_MASK}")
            size = 8  # an atomic fragment: the rest is the whole packet (RFC 6946)
            headers += 1
            if headers > MAX_EXTENSION_HEADERS:
                raise MalformedPacket("ip6_too_many_headers", f"more than "
                                      f"{MAX_EXTENSION_HEADERS} extension headers")
            offset += size
            nxt = following
            continue
        else:
            return nxt, offset
        headers += 1
        if headers > MAX_EXTENSION_HEADERS:
            raise MalformedPacket("ip6_too_many_headers",
                                  f"more than {MAX_EXTENSION_HEADERS} extension headers")
        nxt = packet[offset]
        offset += size


def _header_size(packet: Bytes, offset: int) -> int:
    """The size of the extension header at `offset` (its length field counts 8-byte units
    beyond the first), which must lie within the packet."""
    if offset + 2 > len(packet):
        raise MalformedPacket("ip6_ext_truncated", f"extension header at {offset}")
    size = (packet[offset + 1] + 1) * 8
    if offset + size > len(packet):
        raise MalformedPacket("ip6_ext_truncated",
                              f"{size}-byte extension header at {offset} overruns the packet")
    return size


def _check_options(packet: Bytes, start: int, end: int) -> None:
    """The TLV-encoded options of a hop-by-hop or destination options header (RFC 8200
    4.2): Pad1 is one byte, every other option type, length, value within the header; an
    unknown type is skipped or dropped as its two high bits say."""
    i = start
    count = 0
    while i < end:
        kind = packet[i]
        if kind == OPT_PAD1:
            i += 1
            continue
        if i + 2 > end or i + 2 + packet[i + 1] > end:
            raise MalformedPacket("ip6_bad_option", f"option {kind} overruns its header")
        if kind != OPT_PADN:
            count += 1
            if count > MAX_EXTENSION_HEADERS:
                raise MalformedPacket("ip6_bad_option", "too many options")
            if kind >> 6 != _OPT_ACTION_SKIP:
                # Nothing here knows any option (router alert and jumbo payload matter to
                # routers and jumbograms): 01, 10 and 11 all discard the packet.
                raise MalformedPacket("ip6_unknown_option", f"option type {kind:#04x}")
        i += 2 + packet[i + 1]


def build(src: bytes, dst: bytes, proto: int, payload: Bytes,
          hop_limit: int = DEFAULT_HOP_LIMIT) -> bytes:
    """A whole IPv6 packet (fixed header, then payload); for the cold paths."""
    return HEADER.pack(VERSION_WORD, len(payload), proto, hop_limit, src, dst) + bytes(payload)


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """The sum of the upper-layer pseudo-header of RFC 8200 8.1 (what TCP, UDP and ICMPv6
    add to their checksums): both addresses, the upper-layer length and the next header."""
    return pseudo_header_sum(src, dst, proto, length)


def is_multicast(address: bytes) -> bool:
    return address[0] == 0xFF


def bad_source(address: bytes) -> str | None:
    """Why no host can send from `address` (RFC 4291: the unspecified address, loopback,
    multicast, IPv4-mapped addresses, which Linux's ipv6_rcv drops too), or None."""
    if address[0] == 0xFF:
        return "multicast"
    if address[:15] == bytes(15) and address[15] in (0, 1):
        return "unspecified" if address[15] == 0 else "loopback"
    if address[:12] == _V4_MAPPED:
        return "IPv4-mapped"
    return None


_V4_MAPPED = bytes(10) + b"\xff\xff"
