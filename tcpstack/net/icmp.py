"""ICMP (RFC 792): enough to answer echo requests."""

from __future__ import annotations

import struct

from tcpstack.net.checksum import Bytes, checksum, ones_complement_sum
from tcpstack.net.errors import MalformedPacket

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8

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
