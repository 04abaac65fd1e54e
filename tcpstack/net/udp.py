"""UDP header codec (RFC 768): strict parsing with a drop reason per failure, and building.

Addresses are bytes of 4 (IPv4) or 16 (IPv6): the pseudo-header of either family sums to the
same thing when read as 16-bit words (RFC 768's source, destination, zero, protocol and UDP
length; RFC 8200 8.1's source, destination, 32-bit length, zeros and next header, whose high
length word is zero for any datagram that is not a jumbogram), so one function serves both.

A checksum field of zero means "no checksum" on IPv4 (RFC 768); on IPv6 it is forbidden
(RFC 8200 8.1), and such a datagram is dropped. A computed checksum of zero is sent as
0xFFFF, its other one's complement form, so that it never reads as "none".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tcpstack.net.checksum import Bytes, View, ones_complement_sum
from tcpstack.net.errors import MalformedPacket

PROTO_UDP = 17
HEADER = struct.Struct("!HHHH")  # source port, destination port, length, checksum
HEADER_LEN = 8
MAX_PAYLOAD = 0xFFFF - HEADER_LEN  # the length field's limit (IPv4 allows less, below)
NO_CHECKSUM = 0
_IPV6_ADDRESS_LEN = 16


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A validated datagram; `payload` is a view into the packet, cut to the length field."""

    sport: int
    dport: int
    payload: View


def pseudo_header_sum(src: bytes, dst: bytes, length: int) -> int:
    """The one's complement sum of the pseudo-header of a UDP datagram of `length` bytes
    (header included) from `src` to `dst`, either family (see the module's docstring)."""
    return (ones_complement_sum(src + dst) + PROTO_UDP + length) % 0xFFFF


def checksum(src: bytes, dst: bytes, sport: int, dport: int, payload: Bytes) -> int:
    """The checksum field for a datagram; never 0 (a computed 0 is sent as 0xFFFF)."""
    length = HEADER_LEN + len(payload)
    total = (pseudo_header_sum(src, dst, length) + sport + dport + length
             + ones_complement_sum(payload))
    value = ~(total % 0xFFFF) & 0xFFFF
    return value or 0xFFFF


def build(src: bytes, dst: bytes, sport: int, dport: int, payload: Bytes) -> bytes:
    """The UDP header and payload, checksum included, for `src` -> `dst`."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"{len(payload)} bytes do not fit a UDP datagram "
                         f"(at most {MAX_PAYLOAD})")
    length = HEADER_LEN + len(payload)
    return HEADER.pack(sport, dport, length, checksum(src, dst, sport, dport, payload)) + \
        bytes(payload)


def parse(data: Bytes, src: bytes, dst: bytes, *, verify: bool = True) -> UdpDatagram:
    """Validate and decode the UDP datagram `data` (the IP payload) sent `src` -> `dst`;
    raise MalformedPacket naming the drop reason. `verify=False`: the link vouched for the
    checksum (offload), which is then not summed.

    A length field beyond the IP payload is udp_bad_length, as one below the header; one
    short of the IP payload cuts the payload to it, as Linux does (the bytes after it are
    IP padding, outside the checksum)."""
    n = len(data)
    if n < HEADER_LEN:
        raise MalformedPacket("udp_truncated", f"{n} bytes, shorter than a UDP header")
    sport, dport, length, csum = HEADER.unpack_from(data)
    if length < HEADER_LEN:
        raise MalformedPacket("udp_bad_length", f"length field {length} below the header")
    if length > n:
        raise MalformedPacket("udp_bad_length",
                              f"length field {length} beyond the {n}-byte IP payload")
    view = memoryview(data)[:length]
    if csum == NO_CHECKSUM:
        if len(src) == _IPV6_ADDRESS_LEN:
            raise MalformedPacket("udp_zero_checksum", "no checksum, which IPv6 forbids")
    elif verify and (ones_complement_sum(view) + pseudo_header_sum(src, dst, length)) % 0xFFFF:
        raise MalformedPacket("udp_bad_checksum")
    return UdpDatagram(sport, dport, view[HEADER_LEN:])
