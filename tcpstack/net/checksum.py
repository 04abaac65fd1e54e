"""The Internet checksum (RFC 1071), computed without a per-byte Python loop.

A buffer read as one big-endian integer is a sum of 16-bit words times powers of 2**16,
and 2**16 == 1 (mod 0xFFFF), so the integer modulo 0xFFFF is the one's complement sum of its
words. CPython does both steps in C, which makes this the fastest pure-Python checksum.
"""

from __future__ import annotations

from typing import TypeAlias

Bytes: TypeAlias = bytes | bytearray | memoryview

_FOLD = 0xFFFF


def ones_complement_sum(data: Bytes) -> int:
    """The one's complement sum of `data` as 16-bit words, reduced modulo 0xFFFF."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8  # an odd trailing byte is the high half of a zero-padded word
    return value % _FOLD


def checksum(data: Bytes, partial: int = 0) -> int:
    """The checksum field value for `data`, given the sum of any pseudo-header in `partial`."""
    return ~((ones_complement_sum(data) + partial) % _FOLD) & 0xFFFF


def verify(data: Bytes, partial: int = 0) -> bool:
    """True when `data` (checksum field included) sums to zero with the pseudo-header."""
    return (ones_complement_sum(data) + partial) % _FOLD == 0


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int = 0) -> int:
    """The sum of a TCP or UDP (or ICMPv6) pseudo-header, for IPv4 (RFC 9293 3.1, 4-byte
    addresses) and IPv6 (RFC 8200 8.1, 16-byte addresses) alike: the two addresses, the
    protocol (a zero-padded word either way) and the transport length (IPv6's 32-bit field
    sums as its two halves). `length` 0 leaves it out, for a caller that adds each
    segment's own."""
    return (ones_complement_sum(src + dst) + proto + (length >> 16) + (length & 0xFFFF)) % _FOLD
