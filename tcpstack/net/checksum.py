"""The Internet checksum (RFC 1071), computed without a per-byte Python loop.

A buffer read as one big-endian integer is a sum of 16-bit words times powers of 2**16,
and 2**16 == 1 (mod 0xFFFF), so the integer modulo 0xFFFF is the one's complement sum of its
words. CPython does both steps in C, which makes this the fastest pure-Python checksum.
The modulo is the dearer step (a division per 30-bit digit), so a long buffer's integer is
first folded twice: hi * 2**(16k) + lo is congruent to hi + lo, a quarter of the digits
left for the division to take, for a shift, a mask and an add each.
"""

from __future__ import annotations

from typing import TypeAlias

Bytes: TypeAlias = bytes | bytearray | memoryview
# A dataclass field of a view is annotated with this name: mypyc (the optional compiled
# build, scripts/build_compiled.py) cannot load the builtin memoryview for the class's
# annotations, but can a module's alias of it.
View: TypeAlias = memoryview

_FOLD = 0xFFFF
_FOLD_FROM = 256  # bytes: below, folding costs more than it saves
_masks: dict[int, int] = {}  # (1 << bits) - 1 by bits, for the folds of common lengths
_MASKS_KEPT = 64  # lengths: whatever a peer sends, the cache stays small


def _mask(bits: int) -> int:
    mask = (1 << bits) - 1
    if len(_masks) < _MASKS_KEPT:
        _masks[bits] = mask
    return mask


def ones_complement_sum(data: Bytes) -> int:
    """The one's complement sum of `data` as 16-bit words, reduced modulo 0xFFFF."""
    value = int.from_bytes(data, "big")
    n = len(data)
    if n & 1:
        value <<= 8  # an odd trailing byte is the high half of a zero-padded word
    if n >= _FOLD_FROM:
        half = (n >> 2) << 4  # bits: about half the value's, a whole number of words
        value = (value >> half) + (value & (_masks.get(half) or _mask(half)))
        quarter = (n >> 3) << 4
        value = (value >> quarter) + (value & (_masks.get(quarter) or _mask(quarter)))
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
