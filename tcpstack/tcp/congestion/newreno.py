"""Reno-style congestion control (RFC 5681): slow start, congestion avoidance, halving on loss."""

from __future__ import annotations

from tcpstack.tcp.congestion.base import CongestionControl


class NewReno(CongestionControl):
    def __init__(self, mss: int) -> None:
        super().__init__(mss)
        self._ca_acked = 0  # bytes acked since cwnd last grew in congestion avoidance

    def on_ack(self, acked: int, now: float) -> None:
        if self.cwnd < self.ssthresh:  # slow start, RFC 5681 3.1 (appropriate byte counting)
            self.cwnd += min(acked, self.mss)
            return
        self._ca_acked += acked  # congestion avoidance: one MSS per window acked
        if self._ca_acked >= self.cwnd:
            self._ca_acked -= self.cwnd
            self.cwnd += self.mss

    def on_fast_retransmit(self, flight: int, now: float) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)  # RFC 5681 equation (4)
        self.cwnd = self.ssthresh
        self._ca_acked = 0

    def on_timeout(self, flight: int, now: float) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss  # RFC 5681 3.1: the loss window is one segment
        self._ca_acked = 0
