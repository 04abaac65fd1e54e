"""ICMPv6 (RFC 4443): echo requests answered, and the errors that report on our own packets
(destination unreachable, packet too big, time exceeded, parameter problem) decoded for the
transport that sent them, as net/icmp.py does for IPv4: the errno and text a socket would
get (as Linux's icmpv6_err_convert), the MTU a packet too big names (RFC 8201), and the
start of the transport header the error quotes, found by walking the quoted packet's
extension headers. Unlike ICMP's, the ICMPv6 checksum covers the pseudo-header (RFC 4443 2.3).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from tcpstack.net import ipv6
from tcpstack.net.checksum import Bytes, ones_complement_sum
from tcpstack.net.errors import MalformedPacket
from tcpstack.net.icmp import IcmpError

DEST_UNREACHABLE = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
ECHO_REQUEST = 128
ECHO_REPLY = 129

# Destination unreachable codes (RFC 4443 3.1): errno, text (Linux's tab_unreach).
UNREACHABLE = {
    0: (errno.ENETUNREACH, "no route to destination"),
    1: (errno.EACCES, "communication administratively prohibited"),
    2: (errno.EHOSTUNREACH, "beyond scope of source address"),
    3: (errno.EHOSTUNREACH, "address unreachable"),
    4: (errno.ECONNREFUSED, "connection refused (port unreachable)"),
    5: (errno.EACCES, "source address failed ingress/egress policy"),
    6: (errno.EACCES, "reject route to destination"),
}

_HEADER = struct.Struct("!BBH")
PORT_UNREACHABLE = 4  # a DEST_UNREACHABLE code
# RFC 4443 2.4 (c): an error message quotes as much of the packet as fits in IPv6's
# minimum MTU with its own IPv6 header (40) and ICMPv6 header (8).
_QUOTE_ROOM = ipv6.MIN_MTU - ipv6.HEADER_LEN - 8


@dataclass(frozen=True, slots=True)
class Icmpv6Error(IcmpError):
    """An ICMPv6 error about a packet we sent: the fields of IcmpError (the stack handles
    both alike), with the ICMPv6 meanings of its type."""

    @property
    def fragmentation_needed(self) -> bool:
        return self.icmp_type == PACKET_TOO_BIG

    @property
    def ends_an_attempt(self) -> bool:
        return self.icmp_type == DEST_UNREACHABLE


def verify(message: Bytes, src: bytes, dst: bytes) -> None:
    """Raise MalformedPacket unless `message` is a whole ICMPv6 header whose checksum,
    pseudo-header included, holds."""
    n = len(message)
    if n < 8:
        raise MalformedPacket("icmp6_truncated", f"{n} bytes")
    if (ones_complement_sum(message) + ipv6.pseudo_header(src, dst, ipv6.PROTO_ICMPV6, n)
            ) % 0xFFFF:
        raise MalformedPacket("icmp6_bad_checksum")


def echo_reply(message: Bytes, src: bytes, dst: bytes) -> bytes | None:
    """The echo reply to an ICMPv6 message (checksum verified) if it is an echo request,
    else None; `src` and `dst` are the reply's, for its checksum."""
    icmp_type, code, _ = _HEADER.unpack_from(message)
    if icmp_type != ECHO_REQUEST or code != 0:
        return None
    body = bytes(message[4:])  # identifier, sequence number and data come back unchanged
    partial = ipv6.pseudo_header(src, dst, ipv6.PROTO_ICMPV6, len(message))
    csum = ~((ones_complement_sum(body) + ECHO_REPLY * 256 + partial) % 0xFFFF) & 0xFFFF
    return _HEADER.pack(ECHO_REPLY, 0, csum) + body


def unreachable(code: int, packet: Bytes, src: bytes, dst: bytes) -> bytes:
    """A destination unreachable message (RFC 4443 3.1) with `code`, quoting `packet` (the
    whole IPv6 packet it is about), from `src` to `dst` (its checksum covers them)."""
    body = bytes(4) + bytes(packet[:_QUOTE_ROOM])  # 4 unused bytes, then the quote
    length = 4 + len(body)
    partial = ipv6.pseudo_header(src, dst, ipv6.PROTO_ICMPV6, length)
    csum = ~((ones_complement_sum(body) + (DEST_UNREACHABLE << 8 | code) + partial)
             % 0xFFFF) & 0xFFFF
    return _HEADER.pack(DEST_UNREACHABLE, code, csum) + body


def error_of(message: Bytes) -> Icmpv6Error | None:
    """The error an ICMPv6 message (checksum verified) reports, or None for other types
    (informational ones, RFC 4443 2.1) and unknown codes. Raises MalformedPacket when it
    quotes too little of the packet to know the connection (8 transport bytes)."""
    icmp_type, code, _ = _HEADER.unpack_from(message)
    mtu = 0
    if icmp_type == DEST_UNREACHABLE:
        if code not in UNREACHABLE:
            return None
        number, text = UNREACHABLE[code]
    elif icmp_type == PACKET_TOO_BIG:
        number, text = errno.EMSGSIZE, "message too long (packet too big)"
        mtu = int.from_bytes(message[4:8], "big")
    elif icmp_type == TIME_EXCEEDED:
        number, text = errno.EHOSTUNREACH, "hop limit exceeded"
    elif icmp_type == PARAMETER_PROBLEM:
        number, text = errno.EPROTO, "parameter problem"
    else:
        return None
    quoted = message[8:]
    if len(quoted) < ipv6.HEADER_LEN or quoted[0] >> 4 != 6:
        raise MalformedPacket("icmp6_truncated", "no IPv6 header quoted")
    *_, nxt, _hops, src, dst = ipv6.HEADER.unpack_from(quoted)
    try:
        proto, offset = ipv6.upper_layer(quoted, nxt, ipv6.HEADER_LEN)
    except MalformedPacket as exc:  # a quote we could never have sent: the error's fault
        raise MalformedPacket("icmp6_bad_quote", str(exc)) from None
    if len(quoted) < offset + 8:
        raise MalformedPacket("icmp6_truncated", "less than 8 transport bytes quoted")
    return Icmpv6Error(icmp_type, code, number, text, mtu, src, dst, proto,
                       bytes(quoted[offset:offset + 8]))
