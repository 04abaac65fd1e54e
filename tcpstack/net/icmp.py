"""ICMP (RFC 792): echo requests answered, and the errors that report on our own datagrams
(destination unreachable, time exceeded, parameter problem) decoded for the transport that
sent them: what they say (a socket's errno and its text, as Linux's icmp_err_convert) and
the start of the datagram they quote."""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from tcpstack.net.checksum import Bytes, checksum, ones_complement_sum
from tcpstack.net.errors import MalformedPacket
from tcpstack.net.ipv4 import HEADER as IPV4_HEADER

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12
FRAGMENTATION_NEEDED = 4  # a DEST_UNREACHABLE code (RFC 1191: the next hop's MTU follows)

# Destination unreachable codes (RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1): errno, text.
UNREACHABLE = {
    0: (errno.ENETUNREACH, "network unreachable"),
    1: (errno.EHOSTUNREACH, "host unreachable"),
    2: (errno.ENOPROTOOPT, "protocol unreachable"),
    3: (errno.ECONNREFUSED, "connection refused (port unreachable)"),
    5: (errno.EOPNOTSUPP, "source route failed"),
    6: (errno.ENETUNREACH, "destination network unknown"),
    7: (errno.EHOSTDOWN, "destination host unknown"),
    9: (errno.ENETUNREACH, "network administratively prohibited"),
    10: (errno.EHOSTUNREACH, "host administratively prohibited"),
    11: (errno.ENETUNREACH, "network unreachable for the type of service"),
    12: (errno.EHOSTUNREACH, "host unreachable for the type of service"),
    13: (errno.EHOSTUNREACH, "communication administratively prohibited"),
}

_HEADER = struct.Struct("!BBH")


def echo_reply(message: Bytes) -> bytes | None:
    """The echo reply for an ICMP message that is an echo request, else None.

    Raises MalformedPacket for a message too short or failing its checksum."""
    if len(message) < 8:
        raise MalformedPacket("icmp_truncated", f"{len(message)} bytes")
    if ones_complement_sum(message) != 0:
        raise MalformedPacket("icmp_bad_checksum")
    icmp_type, code, _ = _HEADER.unpack_from(message)
    if icmp_type != ECHO_REQUEST or code != 0:
        return None
    body = bytes(message[4:])  # identifier, sequence number and data come back unchanged
    return _HEADER.pack(ECHO_REPLY, 0, checksum(body)) + body


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP error about a datagram we sent: what it says, and the datagram's addresses,
    protocol and first transport bytes (at least 8: ports and, for TCP, the sequence)."""

    icmp_type: int
    code: int
    errno: int
    text: str
    mtu: int          # the next hop's MTU, for "fragmentation needed"; else 0
    src: bytes        # the quoted datagram's source (ours) and destination
    dst: bytes
    proto: int
    transport: bytes  # its first transport header bytes

    @property
    def fragmentation_needed(self) -> bool:
        return self.icmp_type == DEST_UNREACHABLE and self.code == FRAGMENTATION_NEEDED

    @property
    def ends_an_attempt(self) -> bool:
        """Whether it fails a connection not yet established (as Linux's connect() does
        for every destination unreachable); time exceeded and parameter problems do not."""
        return self.icmp_type == DEST_UNREACHABLE and not self.fragmentation_needed


def error_of(message: Bytes) -> IcmpError | None:
    """The error an ICMP message (its checksum already verified) reports, or None for other
    types and codes. Raises MalformedPacket when it quotes too little of the datagram."""
    icmp_type, code, _ = _HEADER.unpack_from(message)
    if icmp_type == DEST_UNREACHABLE:
        if code == FRAGMENTATION_NEEDED:
            number, text = errno.EMSGSIZE, "message too long (fragmentation needed)"
        elif code in UNREACHABLE:
            number, text = UNREACHABLE[code]
        else:
            return None
    elif icmp_type == TIME_EXCEEDED:
        number, text = errno.EHOSTUNREACH, "time to live exceeded"
    elif icmp_type == PARAMETER_PROBLEM:
        number, text = errno.EPROTO, "parameter problem"
    else:
        return None
    quoted = message[8:]
    if len(quoted) < IPV4_HEADER.size or quoted[0] >> 4 != 4:
        raise MalformedPacket("icmp_truncated", "no IPv4 header quoted")
    ihl = (quoted[0] & 0x0F) * 4
    if ihl < IPV4_HEADER.size or len(quoted) < ihl + 8:
        raise MalformedPacket("icmp_truncated", "less than 8 transport bytes quoted")
    *_, proto, _csum, src, dst = IPV4_HEADER.unpack_from(quoted)
    mtu = int.from_bytes(message[6:8], "big") if code == FRAGMENTATION_NEEDED else 0
    return IcmpError(icmp_type, code, number, text, mtu, src, dst, proto,
                     bytes(quoted[ihl:ihl + 8]))


PORT_UNREACHABLE = 3  # a DEST_UNREACHABLE code: no socket on the datagram's port
# RFC 1812 4.3.2.3 (and Linux): an error quotes as much of the datagram as keeps the whole
# ICMP datagram within 576 bytes, the size every host must accept; RFC 1122 3.2.2 asks
# for at least its IP header and first 8 bytes.
MAX_ERROR_DATAGRAM = 576
_QUOTE_ROOM = MAX_ERROR_DATAGRAM - IPV4_HEADER.size - 8


def unreachable(code: int, datagram: Bytes) -> bytes:
    """A destination unreachable message (RFC 792) with `code`, quoting `datagram` (the
    whole IP datagram it is about, header first), for an IPv4 header to carry."""
    body = bytes(4) + bytes(datagram[:_QUOTE_ROOM])  # 4 unused bytes, then the quote
    return _HEADER.pack(DEST_UNREACHABLE, code, checksum(body, DEST_UNREACHABLE << 8 | code)) \
        + body
