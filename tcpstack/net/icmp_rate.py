"""How many ICMP errors the stack may send: Linux's two limits, as a token bucket each.

Per destination (inet_peer_xrlim_allow with icmp_ratelimit = 1000 ms): one error a second,
with a burst of six (XRLIM_BURST_FACTOR) for a destination not heard from for a while; and
for the whole stack (icmp_global_allow: icmp_msgs_per_sec = 1000, icmp_msgs_burst = 50).
RFC 1122 3.2.2 and RFC 1812 4.3.2.8 ask for such a limit, so that a flood of datagrams to
closed ports cannot make us flood their (perhaps forged) sources in turn. Addresses are
bytes of either family; the table is bounded (emptied when full, as the stack's caches).
"""

from __future__ import annotations

PER_PEER_INTERVAL = 1.0   # seconds per error to one destination (icmp_ratelimit)
PER_PEER_BURST = 6        # XRLIM_BURST_FACTOR
GLOBAL_RATE = 1000.0      # errors a second (icmp_msgs_per_sec)
GLOBAL_BURST = 50         # icmp_msgs_burst
MAX_PEERS = 4096


class IcmpRateLimit:
    """`allow(destination, now)`: whether one more ICMP error may go to `destination`."""

    __slots__ = ("_global", "_global_at", "_peers", "burst", "global_burst", "global_rate",
                 "interval")

    def __init__(self, interval: float = PER_PEER_INTERVAL, burst: int = PER_PEER_BURST,
                 global_rate: float = GLOBAL_RATE, global_burst: int = GLOBAL_BURST) -> None:
        self.interval = interval
        self.burst = burst
        self.global_rate = global_rate
        self.global_burst = global_burst
        # By destination: (tokens in seconds of credit, when last updated).
        self._peers: dict[bytes, tuple[float, float]] = {}
        self._global = float(global_burst)
        self._global_at: float | None = None

    def allow(self, destination: bytes, now: float) -> bool:
        peers = self._peers
        known = peers.get(destination)
        if known is None:
            if len(peers) >= MAX_PEERS:
                peers.clear()
            tokens = self.burst * self.interval  # a new destination starts with a full burst
        else:
            tokens = min(known[0] + (now - known[1]), self.burst * self.interval)
        if tokens < self.interval:
            peers[destination] = (tokens, now)
            return False
        if not self._global_allow(now):
            peers[destination] = (tokens, now)
            return False
        peers[destination] = (tokens - self.interval, now)
        return True

    def _global_allow(self, now: float) -> bool:
        if self._global_at is not None:
            self._global = min(self._global + (now - self._global_at) * self.global_rate,
                               float(self.global_burst))
        self._global_at = now
        if self._global < 1.0:
            return False
        self._global -= 1.0
        return True
