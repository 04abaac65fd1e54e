"""Tail loss probe (RFC 8985 section 7, TLP).

When the last segments of a flight, or the ACKs for them, are lost, nothing comes back to
drive fast retransmit and the sender waits for the RTO (200 ms at least). A probe timeout
(PTO) of about two round trips fires first: the connection sends one segment, new data if
it has some and the peer's window takes it, else the last segment again, and the ACK it
draws either shows all is well, reports the loss in SACK blocks, or repairs it. At most one
probe is out per tail; the RTO stays armed behind it.

This object says when the probe is due and remembers what it sent; the connection keeps the
time among its timers, decides when it may run (not in recovery) and sends the segment.
"""

from __future__ import annotations

from tcpstack.tcp.sack import SackScoreboard
from tcpstack.tcp.seq import HALF, MASK

# RFC 8985 7.2 takes PTO = 2 * SRTT; a floor keeps a sub-millisecond RTT (a TUN, a veth)
# from probing before a peer's ACK can come back through two event loops (Linux floors it
# at 10 ms as well).
PTO_FLOOR = 0.01
# WCDelAckT (RFC 8985 7.2): with one segment in flight the peer may hold its ACK this long.
WORST_CASE_DELAYED_ACK = 0.2


class TailLossProbe:
    __slots__ = ("dsack", "end", "restart", "retransmitted", "start")

    def __init__(self) -> None:
        self.restart = False          # new data went out or was acked: re-arm at the flush
        self.start: int | None = None  # the probe's sequence range, while it is unanswered
        self.end: int | None = None
        self.retransmitted = False    # the probe resent the last segment (no new data)
        self.dsack = False            # a D-SACK arrived while the probe was out

    @property
    def outstanding(self) -> bool:
        return self.end is not None

    def schedule(self, now: float, srtt: float | None, flight: int, mss: int,
                 rto_at: float | None) -> float | None:
        """When the PTO fires for `flight` bytes in flight: None while a probe is out, no RTT
        is known yet, or the RTO would fire first (RFC 8985 7.2)."""
        self.restart = False
        if self.end is not None or srtt is None or not flight:
            return None
        pto = max(2 * srtt, PTO_FLOOR)
        if flight <= mss:
            pto += WORST_CASE_DELAYED_ACK
        at = now + pto
        return at if rto_at is None or at < rto_at else None

    def sent(self, start: int, end: int, *, retransmitted: bool) -> None:
        self.start, self.end = start, end
        self.retransmitted = retransmitted
        self.dsack = False

    def cancel(self) -> None:
        """Recovery or a timeout takes over: forget the probe."""
        self.start = self.end = None

    def covered_by(self, ack: int) -> bool:
        """The cumulative ACK reached the end of the probe: the episode is over."""
        return self.end is not None and ((ack - self.end) & MASK) < HALF

    def sacked(self, scoreboard: SackScoreboard, snd_una: int) -> bool:
        """The peer SACKed the probe: whatever below it is still missing was sent a PTO or
        more before it, and RACK (RFC 8985 6.2) would deem it lost."""
        return (self.start is not None and self.end is not None
                and scoreboard.is_sacked(self.start, self.end, snd_una))

    def repaired_a_loss(self) -> bool:
        """The probe, a retransmission, was what the peer lacked: no D-SACK said it had the
        original (RFC 8985 7.4), so a loss happened and congestion control must hear of it."""
        return self.retransmitted and not self.dsack
