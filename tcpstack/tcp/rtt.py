"""Round-trip time estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations


class RttEstimator:
    __slots__ = ("_base_rto", "backoff_shift", "max_rto", "min_rto", "rttvar", "srtt")

    def __init__(self, initial_rto: float, min_rto: float, max_rto: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.min_rto = min_rto
        self.max_rto = max_rto
        self._base_rto = initial_rto
        self.backoff_shift = 0

    @property
    def rto(self) -> float:
        return min(self._base_rto * (1 << self.backoff_shift), self.max_rto)

    def sample(self, rtt: float) -> None:
        """A measurement from a segment that was not retransmitted (Karn's rule, RFC 6298 3)."""
        if self.srtt is None:  # 2.2
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:  # 2.3, alpha = 1/8, beta = 1/4
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        # 2.4: RTO = SRTT + max(G, 4*RTTVAR), G taken as 1 ms; 2.4's floor is min_rto.
        rto = self.srtt + max(0.001, 4 * self.rttvar)
        self._base_rto = min(max(rto, self.min_rto), self.max_rto)
        self.backoff_shift = 0

    def backoff(self) -> None:
        """5.5: double the timer after a retransmission timeout."""
        if self._base_rto * (1 << self.backoff_shift) < self.max_rto:
            self.backoff_shift += 1
