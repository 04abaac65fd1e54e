"""32-bit sequence number arithmetic (RFC 9293 section 3.4, RFC 1982 style comparison).

Sequence numbers live on a circle of 2**32; `a` is before `b` when going forward from `a`
reaches `b` in less than half the circle. The connection code inlines these expressions on
its hot path; these functions are their definitions and what the tests pin.
"""

from __future__ import annotations

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def add(a: int, n: int) -> int:
    """`a + n` on the circle."""
    return (a + n) & MASK


def diff(a: int, b: int) -> int:
    """The signed distance from `b` to `a`, in [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def lt(a: int, b: int) -> bool:
    """`b` lies less than half the circle ahead of `a`. Two numbers exactly 2**31 apart are
    incomparable (RFC 1982 3.2 leaves that case undefined): neither is before the other."""
    return 0 < (b - a) & MASK < HALF


def le(a: int, b: int) -> bool:
    return a == b or lt(a, b)


def gt(a: int, b: int) -> bool:
    return lt(b, a)


def ge(a: int, b: int) -> bool:
    return le(b, a)


def in_window(x: int, start: int, size: int) -> bool:
    """start <= x < start + size on the circle (empty when size is 0)."""
    return (x - start) & MASK < size
