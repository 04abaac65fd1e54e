"""NewReno (RFC 5681 and RFC 6582): slow start, one MSS per RTT, halving on loss."""

from __future__ import annotations

from tcpstack.tcp.congestion.base import CongestionControl


class NewReno(CongestionControl):
    __slots__ = ("_ca_acked",)
    name = "newreno"

    def __init__(self, mss: int) -> None:
        super().__init__(mss)
        self._ca_acked = 0  # bytes acked since cwnd last grew in congestion avoidance

    def on_ack(self, acked: int, now: float, srtt: float | None) -> None:
        if self.cwnd < self.ssthresh:  # in_slow_start(), inline: every ACK asks
            self.slow_start(acked)
            return
        self._ca_acked += acked  # congestion avoidance: one MSS per window acknowledged
        if self._ca_acked >= self.cwnd:
            self._ca_acked -= self.cwnd
            self.cwnd += self.mss

    def on_congestion(self, flight: int, now: float) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)  # RFC 5681 equation (4)
        self.cwnd = self.ssthresh
        self._ca_acked = 0

    def on_timeout(self, flight: int, now: float) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._ca_acked = 0
