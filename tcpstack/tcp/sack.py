"""The sender's SACK scoreboard (RFC 6675 section 4): which bytes above SND.UNA the peer has
reported holding, the holes between them, and for each hole how much was SACKed above it,
which is what IsLost() needs. It also remembers what loss recovery resent, and for each
resend the highest byte sent by then, so that a resend which was itself lost can be told
from the SACKs of data sent after it (as Linux's lost-retransmit detection does)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tcpstack.tcp.recovery import DUPACK_THRESHOLD
from tcpstack.tcp.seq import HALF, MASK


class SackScoreboard:
    __slots__ = ("_ranges", "resent")

    def __init__(self) -> None:
        # Both start as the empty tuple, and become lists only when something is added: most
        # connections never see a SACK block, and an empty list costs 56 bytes each.
        self._ranges: Sequence[tuple[int, int]] = ()  # disjoint [start, end), in order
        # What this recovery resent: [start, end) and SND.MAX when it went. RFC 6675 keeps
        # one HighRxt pointer; a list lets one lost resend be sent again without the others.
        self.resent: Sequence[tuple[int, int, int]] = ()

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def clear(self) -> None:
        self._ranges = ()
        self.resent = ()

    def add(self, blocks: tuple[tuple[int, int], ...], snd_una: int, snd_max: int) -> int:
        """Record the peer's blocks, ignoring any not inside (SND.UNA, SND.MAX] (a block we
        never sent says nothing); returns how many octets were SACKed for the first time."""
        span = (snd_max - snd_una) & MASK
        before = self.sacked_bytes()
        for left, right in blocks:
            lo = (left - snd_una) & MASK
            hi = (right - snd_una) & MASK
            if not 0 < lo < hi <= span:
                continue
            self._insert(lo, hi, snd_una)
        return self.sacked_bytes() - before

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
        self.resent = [r for r in self.resent
                       if 0 < ((r[1] - snd_una) & MASK) < HALF]

    def sacked_bytes(self) -> int:
        return sum((end - start) & MASK for start, end in self._ranges)

    def is_lost(self, seq: int, snd_una: int, mss: int) -> bool:
        """IsLost(seq) (RFC 6675 4): DupThresh separate SACKed blocks above `seq`, or more
        than (DupThresh - 1) * SMSS SACKed bytes above it."""
        offset = (seq - snd_una) & MASK
        blocks = 0
        above = 0
        for start, end in self._ranges:
            e = (end - snd_una) & MASK
            if e <= offset:
                continue
            blocks += 1
            above += e - max((start - snd_una) & MASK, offset)
        return blocks >= DUPACK_THRESHOLD or above > (DUPACK_THRESHOLD - 1) * mss

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

    # ------------------------------------------------------------------ resends

    def note_resent(self, start: int, end: int, snd_max: int) -> None:
        resent = self.resent
        if isinstance(resent, list):
            resent.append((start, end, snd_max))
        else:
            self.resent = [(start, end, snd_max)]

    def resent_within(self, start: int, end: int, snd_una: int) -> int:
        """Octets of [start, end) that this recovery resent (they count in flight)."""
        lo, hi = _offset(start, snd_una), _offset(end, snd_una)
        return sum(max(0, min(hi, _offset(r_end, snd_una)) - max(lo, _offset(r_start, snd_una)))
                   for r_start, r_end, _ in self.resent)

    def unsent_parts(self, start: int, end: int, snd_una: int) -> Iterator[tuple[int, int]]:
        """The pieces of [start, end) that this recovery has not resent, in order."""
        cursor, hi = _offset(start, snd_una), _offset(end, snd_una)
        for s, e in sorted((_offset(r_start, snd_una), _offset(r_end, snd_una))
                           for r_start, r_end, _ in self.resent):
            if e <= cursor:
                continue
            if s >= hi:
                break
            if s > cursor:
                yield (snd_una + cursor) & MASK, (snd_una + s) & MASK
            cursor = e
        if cursor < hi:
            yield (snd_una + cursor) & MASK, (snd_una + hi) & MASK

    def lost_resends(self, snd_una: int, mss: int) -> int:
        """Forget, and count, the resends that were lost in their turn: data sent after them
        has been SACKed as IsLost() requires while they were not. RFC 6675 leaves a lost
        retransmission to the RTO; forgetting it lets NextSeg() send it again."""
        kept = []
        for resend in self.resent:
            start, end, sent_max = resend
            if self.is_sacked(start, end, snd_una) or not self.is_lost(sent_max, snd_una, mss):
                kept.append(resend)
        lost = len(self.resent) - len(kept)
        self.resent = kept
        return lost

    def is_sacked(self, start: int, end: int, snd_una: int) -> bool:
        """The whole of [start, end) lies in one SACKed block."""
        lo, hi = _offset(start, snd_una), _offset(end, snd_una)
        return any(_offset(s, snd_una) <= lo and hi <= _offset(e, snd_una)
                   for s, e in self._ranges)


def _offset(seq: int, snd_una: int) -> int:
    """`seq` as an offset from SND.UNA; 0 for anything already acknowledged."""
    offset = (seq - snd_una) & MASK
    return 0 if offset >= HALF else offset


def is_dsack(blocks: tuple[tuple[int, int], ...], ack: int) -> bool:
    """RFC 2883 4: the first block reports a duplicate when it lies at or below the
    cumulative ACK, or inside the second block."""
    left, right = blocks[0]
    if ((ack - right) & MASK) < HALF:
        return True
    if len(blocks) > 1:
        left2, right2 = blocks[1]
        return ((left - left2) & MASK) < HALF and ((right2 - right) & MASK) < HALF
    return False
