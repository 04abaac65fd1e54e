"""The challenge-ACK rate limit (RFC 5961 section 7): one budget for the whole stack.

A RST or SYN that is in the window but not exact, and an ACK too old to be acceptable, draw a
challenge ACK (RFC 5961 3.2, 4.2, 5.2) instead of acting on them. Unlimited, that lets an
off-path attacker make the stack send as fast as it can inject. RFC 5961 7 asks for a
configurable limit; Linux's tcp_challenge_ack_limit (per network namespace, as this is per
stack) draws each second's allowance at random between half the limit and one and a half
times it, because a fixed global count was itself a side channel: an attacker that counted
the challenges it provoked could tell whether a guessed connection existed (CVE-2016-5696).
"""

from __future__ import annotations

import random

WINDOW = 1.0  # seconds each allowance lasts


class ChallengeAckLimit:
    __slots__ = ("_left", "_rng", "_started", "limit")

    def __init__(self, limit: int = 1000, rng: random.Random | None = None) -> None:
        self.limit = limit  # challenge ACKs per second on average; 0: no limit
        self._rng = rng or random.Random()
        self._started: float | None = None  # when this window's allowance was drawn
        self._left = 0

    def allow(self, now: float) -> bool:
        """Whether one more challenge ACK may go out at `now`."""
        if not self.limit:
            return True
        if self._started is None or now - self._started >= WINDOW:
            self._started = now
            half = self.limit // 2
            self._left = half + self._rng.randrange(self.limit)
        if self._left <= 0:
            return False
        self._left -= 1
        return True
