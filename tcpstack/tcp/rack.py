"""RACK (RFC 8985 section 6): loss detection by time, not by counting duplicate ACKs.

A segment is deemed lost once a segment sent after it has been delivered (cumulatively or
selectively acknowledged) and more than a round trip plus a reordering window has passed
since it was sent. This finds what DupThresh cannot: the loss of one of the last segments of
a flight (fewer than three segments follow it), and the loss of a retransmission (it was sent
after data that was then SACKed; RFC 6675 leaves it to the RTO).

The sender keeps, for every range of sent and unacknowledged data, when it last went out and
whether it was ever resent (6.1): `SentRange`s in sequence order, contiguous from SND.UNA,
cut where a resend or a SACK block cuts them and dropped as the cumulative ACK passes them.
Nothing is allocated before the first data segment goes. New data is appended, so ranges
never resent are in send order too, which lets the loss scan stop at the first one sent
after RACK's segment.

Which of two segments went later is told by a count of transmissions and then the end
sequence number, not by RFC 8985's (xmit_ts, end_seq): a burst shares one timestamp (one
service pass, or a virtual clock), and a resend in it goes after new data of higher
sequence numbers. New data sent on in one burst, each segment right after the one before,
is one transmission and one range (a pass of a bulk transfer sends dozens of segments: one
object, not one each); within it sequence order is send order, which the end number tells.

This object decides; loss_recovery.py hands its verdicts to SACK recovery, and the
connection keeps the reordering timer among its timers (6.3).
"""

from __future__ import annotations

from bisect import bisect_right

from tcpstack.tcp.recovery import DUPACK_THRESHOLD
from tcpstack.tcp.sack import SackScoreboard
from tcpstack.tcp.seq import HALF, MASK

# Times within a microsecond count as equal (Linux keeps these in microseconds): "a round
# trip since it was sent" must hold for an ACK that comes exactly one round trip later,
# whatever the rounding of the sums.
GRANULARITY = 1e-6
# RFC 8985 6.2 step 4: a D-SACK widens the window by one step of min_RTT / 4 for this many
# recoveries, then it falls back to one step.
REO_WND_PERSIST = 16


class SentRange:
    """[start, end) of sent data, as one segment for RACK: when it last went out, whether
    it was ever resent, and its fate so far."""

    __slots__ = ("delivered", "end", "lost", "order", "retransmitted", "start", "xmit_ts")

    def __init__(self, start: int, end: int, xmit_ts: float, order: int,
                 retransmitted: bool = False, lost: bool = False,
                 delivered: bool = False) -> None:
        self.start = start
        self.end = end
        self.xmit_ts = xmit_ts
        self.order = order          # the how-manieth transmission of the connection
        self.retransmitted = retransmitted
        self.lost = lost            # deemed lost and not sent again since
        self.delivered = delivered  # SACKed

    def split(self, at: int) -> SentRange:
        """Cut at `at`: this keeps [start, at), the returned copy holds [at, end)."""
        tail = SentRange(at, self.end, self.xmit_ts, self.order, self.retransmitted,
                         self.lost, self.delivered)
        self.end = at
        return tail


def _after(a: int, b: int) -> bool:
    return 0 < ((a - b) & MASK) < HALF


def _sent_after(r: SentRange, order: int, end: int) -> bool:
    """Was `r` sent after the segment of transmission `order` that ends at `end`: in a
    later transmission, or a later part of the same one?"""
    return r.order > order or (r.order == order and not _after(end, r.start))


class Rack:
    """RACK's state (RFC 8985 6.1) and the sent ranges. LossRecovery says whether it
    applies (`rack_on`: SACK agreed and TcpConfig.rack) and makes it for the first data
    segment sent; before that every connection shares IDLE_RACK."""

    __slots__ = ("_new_end", "_new_order", "_new_rtt", "_ranges", "_sends", "dsack_round",
                 "end", "fack", "in_recovery", "min_rtt", "order", "reo_wnd_mult",
                 "reo_wnd_persist", "reordering_seen", "rtt")

    def __init__(self) -> None:
        self._ranges: list[SentRange] | None = None
        self._sends = 0  # transmissions so far, to order them
        # RACK.xmit_ts and RACK.end_seq: the most recently sent segment delivered, by its
        # place in send order (order 0 while none is) and its end.
        self.order = 0
        self.end = 0
        self.rtt = 0.0                     # RACK.rtt: the RTT sample it gave
        self.min_rtt: float | None = None  # RACK.min_RTT
        self.fack: int | None = None       # RACK.fack: the highest end delivered
        self.reordering_seen = False
        self.dsack_round: int | None = None
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = REO_WND_PERSIST
        self.in_recovery = False  # as of the last ACK, to see recovery end (step 4)
        # The most recently sent segment this ACK delivered (step 2), not yet taken in.
        self._new_order = 0
        self._new_end = 0
        self._new_rtt = 0.0

    # ------------------------------------------------------------------ sending

    def sent(self, seq: int, end: int, now: float, snd_max: int) -> None:
        """Data [seq, end) went out now; `snd_max` is SND.MAX before it, so what lies below
        is a resend and what lies above is new."""
        ranges = self._ranges
        if ranges is None:
            ranges = self._ranges = []
        if seq == snd_max:
            if ranges:
                last = ranges[-1]
                if (last.end == seq and last.order == self._sends and last.xmit_ts == now
                        and not (last.retransmitted or last.lost or last.delivered)):
                    last.end = end  # new data on from the last transmission: the same one
                    return
            self._sends += 1
            ranges.append(SentRange(seq, end, now, self._sends))
            return
        self._sends += 1
        order = self._sends
        resent_end = end if _after(snd_max, end) or snd_max == end else snd_max
        if ranges:
            i = self._cut(seq)
            j = self._cut(resent_end)
            for r in ranges[i:j]:
                r.xmit_ts = now
                r.order = order
                r.retransmitted = True
                r.lost = False
        if resent_end != end:  # a resend cut differently may run on into new data
            ranges.append(SentRange(resent_end, end, now, order))

    def _cut(self, seq: int) -> int:
        """The index of the range starting at `seq`, cutting the one that holds it; the
        number of ranges if `seq` lies beyond them all."""
        ranges = self._ranges
        assert ranges is not None
        base = ranges[0].start
        offset = (seq - base) & MASK
        if offset >= HALF:
            return 0
        i = bisect_right(ranges, offset, key=lambda r: (r.start - base) & MASK)
        if i == 0:
            return 0
        r = ranges[i - 1]
        if r.start == seq:
            return i - 1
        if ((r.end - base) & MASK) <= offset:
            return i
        ranges.insert(i, r.split(seq))
        return i

    # ------------------------------------------------------------------ an ACK

    def on_ack(self, una: int, blocks: tuple[tuple[int, int], ...], snd_max: int,
               now: float) -> None:
        """Steps 1-3 for what this ACK newly delivered: the cumulative ACK to `una`, then
        the SACK blocks, in sequence order as step 3 wants."""
        ranges = self._ranges
        if not ranges:
            return
        base = ranges[0].start
        acked = (una - base) & MASK
        if 0 < acked < HALF:
            i = 0
            n = len(ranges)
            while i < n and 0 < ((ranges[i].end - base) & MASK) <= acked:
                r = ranges[i]
                if not r.delivered:
                    self._delivered(r, r.end, now)
                i += 1
            if i < n and ((ranges[i].start - base) & MASK) < acked:
                # The ACK ends inside this range (a segment the link cut: each of its ACKs
                # does): [start, una) is delivered, and the range starts at una from now.
                front = ranges[i]
                if not front.delivered:
                    self._delivered(front, una, now)
                front.start = una
            del ranges[:i]
        if not blocks or not ranges:
            return
        span = (snd_max - una) & MASK
        for left, right in sorted(blocks, key=lambda b: (b[0] - una) & MASK):
            lo = (left - una) & MASK
            hi = (right - una) & MASK
            if not 0 < lo < hi <= span:
                continue  # a D-SACK below SND.UNA, or nonsense
            i = self._cut(left)
            j = self._cut(right)
            for r in ranges[i:j]:
                if not r.delivered:
                    r.delivered = True
                    r.lost = False
                    self._delivered(r, r.end, now)

    def _delivered(self, r: SentRange, end: int, now: float) -> None:
        """Steps 1 to 3 for [r.start, end) of `r` delivered now."""
        # Runs for every range an ACK delivers: `_after` is written out inline.
        rtt = now - r.xmit_ts
        min_rtt = self.min_rtt
        fack = self.fack
        if r.retransmitted:
            # Step 2: an ACK sooner than min_RTT after a resend is likely for the original.
            take = min_rtt is None or rtt >= min_rtt
        else:
            take = True
            if min_rtt is None or rtt < min_rtt:
                self.min_rtt = rtt  # step 1 (every sample of a segment sent once)
            if fack is not None and 0 < ((fack - end) & MASK) < HALF:
                self.reordering_seen = True  # step 3: delivered below the highest delivered
        if fack is None or 0 < ((end - fack) & MASK) < HALF:
            self.fack = end
        if take:
            order = r.order
            if order > self._new_order or (order == self._new_order
                                           and 0 < ((end - self._new_end) & MASK) < HALF):
                self._new_order, self._new_end, self._new_rtt = order, end, rtt

    def advance(self) -> bool:
        """Take in step 2's newest delivered segment; True when RACK's segment moved on,
        which is when step 5 can find something new."""
        order = self._new_order
        if not order:
            return False
        self._new_order = 0
        self.rtt = self._new_rtt
        end = self._new_end
        if order > self.order or (order == self.order and _after(end, self.end)):
            self.order, self.end = order, end
            return True
        return False

    def update_reo_wnd(self, dsack: bool, una: int, snd_max: int, in_recovery: bool) -> None:
        """Step 4's adaptation: each round trip that brings a D-SACK (a resend was not
        needed: reordering fooled us) widens the window by a step; sixteen recoveries
        without one narrow it again."""
        if self.dsack_round is not None and not _after(self.dsack_round, una):
            self.dsack_round = None
        if self.dsack_round is None and dsack:
            self.dsack_round = snd_max
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST
        elif self.in_recovery and not in_recovery:
            self.reo_wnd_persist -= 1
            if self.reo_wnd_persist <= 0:
                self.reo_wnd_mult = 1
        self.in_recovery = in_recovery

    def reo_wnd(self, sacked: int, mss: int, srtt: float | None) -> float:
        """RACK.reo_wnd (step 4): none in recovery, or once DupThresh segments' worth is
        SACKed, while no reordering has been seen; else min_RTT / 4 per step, at most SRTT."""
        if not self.reordering_seen and (self.in_recovery
                                         or sacked > (DUPACK_THRESHOLD - 1) * mss):
            return 0.0
        wnd = self.reo_wnd_mult * (self.min_rtt or 0.0) / 4
        return wnd if srtt is None else min(wnd, srtt)

    # ------------------------------------------------------------------ losses

    def detect(self, now: float, scoreboard: SackScoreboard, mss: int,
               srtt: float | None) -> tuple[int, int, float]:
        """Step 5: mark lost what was sent before RACK.xmit_ts more than RACK.rtt + reo_wnd
        ago (the window from `scoreboard`'s SACKed bytes and `srtt`). Returns (segments
        newly lost, of which resends, in MSS units; the time until the next one would be,
        0 if none waits), for the reordering timer (6.3)."""
        ranges = self._ranges
        rack_order, rack_end = self.order, self.end
        if not ranges or not rack_order:
            return 0, 0, 0.0
        first = ranges[0]
        order = first.order
        if not first.retransmitted and (order > rack_order or (  # _sent_after, inline
                order == rack_order and not 0 < ((rack_end - first.start) & MASK) < HALF)):
            return 0, 0, 0.0  # the loop's first test would stop it: nothing sent before
        deadline = self.rtt + self.reo_wnd(scoreboard.sacked_bytes(), mss, srtt) - now
        lost = resends = 0
        timeout = 0.0
        for r in ranges:
            if _sent_after(r, rack_order, rack_end):
                if not r.retransmitted:
                    break  # sent once, after RACK's segment: so is everything above it
                continue
            if r.delivered or r.lost:
                continue
            remaining = r.xmit_ts + deadline
            if remaining <= GRANULARITY:
                r.lost = True
                n = -(-((r.end - r.start) & MASK) // mss)
                lost += n
                if r.retransmitted:
                    resends += n
            elif remaining > timeout:
                timeout = remaining
        return lost, resends, timeout

    def mark_lost_below(self, seq: int, mss: int) -> int:
        """Deem lost every undelivered range below `seq` (the tail probe was SACKed: they
        were sent a PTO or more before it); returns how many segments that newly marks."""
        lost = 0
        for r in self._ranges or ():
            if not _after(seq, r.start):
                break
            if not (r.delivered or r.lost):
                r.lost = True
                lost += -(-((r.end - r.start) & MASK) // mss)
        return lost

    def has_lost(self) -> bool:
        return any(r.lost and not r.delivered for r in self._ranges or ())

    def on_timeout(self) -> None:
        """The RTO fired: everything not delivered counts as lost (the timeout resends it
        from SND.UNA on), so that RACK does not find it lost once more."""
        for r in self._ranges or ():
            if not r.delivered:
                r.lost = True

    def plan(self, una: int, mss: int, cwnd: int, buffered: int,
             force_first: bool) -> tuple[list[tuple[int, int]], int]:
        """What SACK recovery resends now with RACK's verdicts in place of IsLost (RFC 8985
        with RFC 6675's pipe): the lost ranges, lowest first, in segments of at most `mss`,
        as far as cwnd less what is in flight (neither delivered nor lost) allows, the first
        whatever the pipe says if `force_first`; and what cwnd then leaves for new data."""
        pipe = 0
        lost: list[SentRange] = []
        for r in self._ranges or ():
            if r.delivered:
                continue
            if r.lost:
                lost.append(r)
            else:
                pipe += (r.end - r.start) & MASK
        resend: list[tuple[int, int]] = []
        for r in lost:
            seq, end = r.start, r.end
            while seq != end and (force_first or cwnd - pipe >= mss):
                offset = (seq - una) & MASK
                if offset >= buffered:
                    break
                n = min(mss, (end - seq) & MASK, buffered - offset)
                resend.append((seq, n))
                seq = (seq + n) & MASK
                pipe += n
                force_first = False
        return resend, cwnd - pipe


# What every connection's `loss.rack` is until its first data segment goes: nothing sent,
# so its reads (has_lost, plan, on_timeout) find nothing, and nobody writes it.
IDLE_RACK = Rack()
