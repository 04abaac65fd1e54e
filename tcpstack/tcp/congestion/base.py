"""What the connection asks of a congestion controller (RFC 5681 vocabulary, in bytes)."""

from __future__ import annotations

from abc import ABC, abstractmethod

INITIAL_WINDOW_SEGMENTS = 10  # RFC 6928
# ssthresh before any loss sets it: RFC 5681 3.1 starts it "arbitrarily high". Any value above
# the largest window (65535 << 14, RFC 7323 2.3) keeps slow start going; what shows ssthresh
# (`tcpstack stat`, the cwnd sidecar) prints this one as unset.
SSTHRESH_UNSET = 1 << 30


class CongestionControl(ABC):
    """Owns cwnd and ssthresh. The connection reports newly acknowledged bytes outside loss
    recovery (`on_ack`), the start of a loss recovery (`on_congestion`), its end
    (`on_recovery_end`) and retransmission timeouts (`on_timeout`). Loss recovery itself
    (which segment to resend, window inflation) is tcp/recovery.py's business."""

    # Slots here and in each algorithm: one instance per connection, and a dict each would
    # cost more than the three numbers it holds.
    __slots__ = ("cwnd", "mss", "ssthresh")
    name = "base"

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss
        self.ssthresh = SSTHRESH_UNSET

    def set_mss(self, mss: int) -> None:
        """The handshake settled the MSS: the initial window is counted in it (RFC 6928),
        before anything but the SYN was sent."""
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss

    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def slow_start(self, acked: int) -> None:
        """RFC 5681 3.1 with appropriate byte counting (RFC 3465 with L = 2 SMSS, which
        keeps slow start doubling per round trip against a delayed-ACK receiver)."""
        self.cwnd += min(acked, 2 * self.mss)

    @abstractmethod
    def on_ack(self, acked: int, now: float, srtt: float | None) -> None:
        """`acked` new bytes were acknowledged outside loss recovery."""

    @abstractmethod
    def on_congestion(self, flight: int, now: float) -> None:
        """A loss was detected by duplicate ACKs: set ssthresh and cwnd for fast recovery."""

    def inflate(self, segments: int = 1) -> None:
        """NewReno's fast recovery (RFC 6582 3.2 steps 2 and 4): each duplicate ACK stands
        for a segment that left the network, so one more may enter."""
        self.cwnd += segments * self.mss

    def deflate(self, acked: int) -> None:
        """A partial ACK in NewReno's fast recovery (RFC 6582 3.2 step 5): take back what it
        acknowledged, less one segment when it covered a full one."""
        self.cwnd = max(self.cwnd - acked + (self.mss if acked >= self.mss else 0), self.mss)

    def on_recovery_end(self, flight: int, now: float) -> None:
        """Fast recovery ended with a full ACK (RFC 6582 3.2 step 3, option 1)."""
        self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)

    @abstractmethod
    def on_timeout(self, flight: int, now: float) -> None:
        """The retransmission timer expired: back to one segment (RFC 5681 3.1)."""
