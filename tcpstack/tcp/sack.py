"""The sender's SACK scoreboard (RFC 6675 section 4): which bytes above SND.UNA the peer has
reported holding, the holes between them, and for each hole how much was SACKed above it,
which is what IsLost() needs."""

from __future__ import annotations

from collections.abc import Iterator

from tcpstack.tcp.seq import HALF, MASK


class SackScoreboard:
    __slots__ = ("_ranges", "high_rxt")

    def __init__(self) -> None:
        self._ranges: list[tuple[int, int]] = []  # disjoint [start, end), in sequence order
        self.high_rxt = 0  # end of the last hole byte resent in this recovery

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def clear(self) -> None:
        self._ranges = []

    def add(self, blocks: tuple[tuple[int, int], ...], snd_una: int, snd_max: int) -> None:
        """Record the peer's blocks, ignoring any not inside (SND.UNA, SND.MAX] (RFC 2018 and
        RFC 5961-style caution: a block we never sent says nothing)."""
        span = (snd_max - snd_una) & MASK
        for left, right in blocks:
            lo = (left - snd_una) & MASK
            hi = (right - snd_una) & MASK
            if not 0 < lo < hi <= span:
                continue
            self._insert(lo, hi, snd_una)

    def _insert(self, lo: int, hi: int, base: int) -> None:
        merged = []
        for start, end in self._ranges:
            s = (start - base) & MASK
            e = (end - base) & MASK
            if s >= HALF:  # stale: below SND.UNA
                continue
            if e < lo or s > hi:
                merged.append((s, e))
            else:
                lo, hi = min(lo, s), max(hi, e)
        merged.append((lo, hi))
        merged.sort()
        self._ranges = [((base + s) & MASK, (base + e) & MASK) for s, e in merged]

    def advance(self, snd_una: int) -> None:
        """Forget what the cumulative ACK now covers."""
        kept = []
        for start, end in self._ranges:
            if ((end - snd_una) & MASK) >= HALF or end == snd_una:
                continue  # wholly acknowledged
            if ((start - snd_una) & MASK) >= HALF:
                start = snd_una
            kept.append((start, end))
        self._ranges = kept

    def sacked_bytes(self) -> int:
        return sum((end - start) & MASK for start, end in self._ranges)

    def highest(self, snd_una: int) -> int:
        """The right edge of the highest SACKed block (SND.UNA when none)."""
        return self._ranges[-1][1] if self._ranges else snd_una

    def next_hole(self, start_at: int, snd_una: int) -> tuple[int, int] | None:
        """The first un-SACKed range at or after `start_at` and below the highest SACKed byte:
        RFC 6675 deems such holes lost once data above them has arrived."""
        cursor = start_at
        for start, end in self._ranges:
            if ((cursor - snd_una) & MASK) < ((start - snd_una) & MASK):
                return cursor, start
            if ((cursor - snd_una) & MASK) < ((end - snd_una) & MASK):
                cursor = end
        return None

    def holes(self, snd_una: int, snd_max: int) -> Iterator[tuple[int, int, int]]:
        """(start, end, SACKed bytes above) for every un-SACKed range in [SND.UNA, SND.MAX),
        in order; the last one is the tail above the highest SACKed byte, if any."""
        above = self.sacked_bytes()
        cursor = snd_una
        for start, end in self._ranges:
            if 0 < ((start - cursor) & MASK) < HALF:
                yield cursor, start, above
            above -= (end - start) & MASK
            cursor = end
        if cursor != snd_max and ((snd_max - cursor) & MASK) < HALF:
            yield cursor, snd_max, 0

    def hole_bytes_below_high(self, snd_una: int) -> int:
        """Bytes between SND.UNA and the highest SACKed byte that were not SACKed."""
        if not self._ranges:
            return 0
        return ((self.highest(snd_una) - snd_una) & MASK) - self.sacked_bytes()
