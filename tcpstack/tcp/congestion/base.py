"""What the connection asks of a congestion controller."""

from __future__ import annotations

from abc import ABC, abstractmethod

INITIAL_WINDOW_SEGMENTS = 10  # RFC 6928


class CongestionControl(ABC):
    """Owns cwnd and ssthresh; the connection reports ACKs and losses, in bytes."""

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss
        self.ssthresh = 1 << 30

    @abstractmethod
    def on_ack(self, acked: int, now: float) -> None:
        """New data acknowledged outside of loss recovery."""

    @abstractmethod
    def on_fast_retransmit(self, flight: int, now: float) -> None:
        """Three duplicate ACKs: a segment was lost, later ones got through."""

    @abstractmethod
    def on_timeout(self, flight: int, now: float) -> None:
        """The retransmission timer expired."""
