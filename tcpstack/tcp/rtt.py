"""Round-trip time estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations

from tcpstack.tcp.seq import HALF, MASK


class RttEstimator:
    __slots__ = ("_base_rto", "_timed_at", "backoff_shift", "max_rto", "min_rto", "rto",
                 "rttvar", "srtt", "timed_seq")

    def __init__(self, initial_rto: float, min_rto: float, max_rto: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.min_rto = min_rto
        self.max_rto = max_rto
        self._base_rto = initial_rto
        self.backoff_shift = 0
        # The timeout now: kept as a field (set where its inputs change), since every ACK
        # and every segment sent reads it.
        self.rto = min(initial_rto, max_rto)
        # One segment at a time is timed (RFC 6298 3): the sequence number whose ACK ends the
        # measurement, and when it was sent.
        self.timed_seq: int | None = None
        self._timed_at = 0.0

    def time(self, end: int, now: float) -> None:
        """Time the segment ending at `end`, sent now, unless another is being timed."""
        if self.timed_seq is None:
            self.timed_seq, self._timed_at = end, now

    def forget(self) -> None:
        """Karn's rule: a retransmission makes the timed segment's ACK ambiguous."""
        self.timed_seq = None

    def on_ack(self, ack: int, now: float) -> None:
        """An ACK up to `ack`: a sample if it covers the timed segment."""
        timed = self.timed_seq
        if timed is not None and ((ack - timed) & MASK) < HALF:
            self.sample(now - self._timed_at)

    def sample(self, rtt: float) -> None:
        """A measurement from a segment that was not retransmitted (Karn's rule, RFC 6298 3).
        It ends the timing of a segment, if one is timed: with timestamps every ACK is a
        sample, and the one timed segment is only for ACKs without."""
        if self.srtt is None:  # 2.2
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:  # 2.3, alpha = 1/8, beta = 1/4
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        # 2.4: RTO = SRTT + max(G, 4*RTTVAR), G taken as 1 ms; 2.4's floor is min_rto.
        rto = self.srtt + max(0.001, 4 * self.rttvar)
        self._base_rto = self.rto = min(max(rto, self.min_rto), self.max_rto)
        self.backoff_shift = 0
        self.timed_seq = None

    def backoff(self) -> None:
        """5.5: double the timer after a retransmission timeout."""
        if self._base_rto * (1 << self.backoff_shift) < self.max_rto:
            self.backoff_shift += 1
        self.rto = min(self._base_rto * (1 << self.backoff_shift), self.max_rto)
