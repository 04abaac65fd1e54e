"""CUBIC (RFC 9438): the window grows as a cubic function of the time since the last
congestion event, centred on the window where that loss happened, with a Reno-friendly floor."""

from __future__ import annotations

from tcpstack.tcp.congestion.base import CongestionControl

C = 0.4          # RFC 9438 4.1, in segments per second cubed
BETA = 0.7       # multiplicative decrease factor (4.6)
ALPHA = 3 * (1 - BETA) / (1 + BETA)  # Reno-friendly additive increase (4.3)


class Cubic(CongestionControl):
    __slots__ = ("_epoch", "_k", "_w_est", "_w_last_max", "w_max")
    name = "cubic"

    def __init__(self, mss: int) -> None:
        super().__init__(mss)
        self.w_max = 0.0          # segments: the window at the last congestion event
        self._w_last_max = 0.0    # for fast convergence (4.7)
        self._k = 0.0             # seconds until the cubic reaches w_max again
        self._epoch: float | None = None
        self._w_est = 0.0         # segments: the Reno-friendly estimate (4.3)

    def on_ack(self, acked: int, now: float, srtt: float | None) -> None:
        if self.cwnd < self.ssthresh:  # in_slow_start(), inline: every ACK asks
            self.slow_start(acked)
            return
        mss = self.mss
        cwnd_segs = self.cwnd / mss
        if self._epoch is None:  # the first congestion avoidance ACK after a loss or start
            self._epoch = now
            if self.w_max <= cwnd_segs:
                self._k = 0.0
                self.w_max = cwnd_segs
            else:
                self._k = ((self.w_max - cwnd_segs) / C) ** (1 / 3)
            self._w_est = cwnd_segs
        rtt = srtt if srtt is not None else 0.1
        t = now - self._epoch
        target = C * (t + rtt - self._k) ** 3 + self.w_max  # 4.2, W_cubic(t + RTT)
        target = min(max(target, cwnd_segs), 1.5 * cwnd_segs)  # 4.4: bounded growth
        self._w_est += ALPHA * (acked / mss) / cwnd_segs
        if self.w_cubic(t) < self._w_est:  # Reno-friendly region (4.3)
            self.cwnd = max(self.cwnd, int(self._w_est * mss))
        else:  # concave or convex region (4.4, 4.5)
            self.cwnd += int((target - cwnd_segs) / cwnd_segs * acked)

    def w_cubic(self, t: float) -> float:
        """The cubic window in segments, `t` seconds into the current epoch (equation 1)."""
        return C * (t - self._k) ** 3 + self.w_max

    def on_congestion(self, flight: int, now: float) -> None:
        cwnd_segs = self.cwnd / self.mss
        # 4.7 fast convergence: release bandwidth to newer flows when the loss comes earlier.
        if cwnd_segs < self._w_last_max:
            self._w_last_max = cwnd_segs
            self.w_max = cwnd_segs * (1 + BETA) / 2
        else:
            self._w_last_max = cwnd_segs
            self.w_max = cwnd_segs
        self.ssthresh = max(int(self.cwnd * BETA), 2 * self.mss)
        self.cwnd = self.ssthresh
        self._epoch = None

    def on_timeout(self, flight: int, now: float) -> None:
        self.on_congestion(flight, now)
        self.cwnd = self.mss
