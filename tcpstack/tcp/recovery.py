"""Fast retransmit and fast recovery, NewReno style (RFC 5681 3.2, RFC 6582).

The connection reports duplicate and new ACKs; this object says what to do: retransmit the
oldest outstanding segment, inflate or deflate the window, or leave recovery. `recover` is
the highest sequence number sent when recovery began: an ACK covering it ends recovery (a
"full" ACK), one below it is "partial" and means another segment of the same window was lost.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from tcpstack.tcp.congestion import CongestionControl
from tcpstack.tcp.seq import HALF, MASK

DUPACK_THRESHOLD = 3  # RFC 5681 3.2


class Action(enum.Enum):
    NONE = "none"
    RETRANSMIT = "retransmit"  # resend the segment at SND.UNA


class FastRecovery:
    __slots__ = ("active", "dupacks", "limited", "recover", "sack")

    def __init__(self, iss: int) -> None:
        self.active = False
        # This recovery goes by the SACK scoreboard (RFC 6675), not by NewReno's window
        # inflation and partial ACKs: set when it starts, from what the peer's ACKs carry.
        self.sack = False
        self.dupacks = 0
        # Bytes limited transmit (RFC 3042) sent beyond cwnd since the first of these
        # duplicate ACKs: RFC 5681 3.2 step 2 leaves them out of the FlightSize of the cut.
        self.limited = 0
        self.recover = iss

    def on_duplicate_ack(self, cc: CongestionControl, snd_una: int, snd_max: int,
                         now: float, sack: bool = False, lost: bool = False,
                         count: bool = True) -> Action:
        """A duplicate ACK: RFC 5681's kind without SACK, RFC 6675's (one that SACKs new
        octets) with it, where the window is not inflated: the scoreboard counts what is in
        flight instead. `lost` is IsLost(SND.UNA), which enters recovery before the third
        duplicate when the SACKs already show the loss (RFC 6675 5, step 2), or RACK's
        verdict, which replaces the count of duplicates when `count` is False."""
        self.dupacks += 1
        if self.active:
            if not self.sack:
                cc.inflate()  # RFC 6582 3.2 step 4: each further dupack lets one leave
            return Action.NONE
        if (count and self.dupacks >= DUPACK_THRESHOLD) or lost:
            return self.enter(cc, snd_una, snd_max, now, sack)
        return Action.NONE

    def enter(self, cc: CongestionControl, snd_una: int, snd_max: int, now: float,
              sack: bool) -> Action:
        """A loss is detected: start recovery, with the one reduction of cwnd it makes."""
        # Step 2: enter only if the ACK covers `recover` (the highest byte sent when the last
        # recovery or timeout began: RFC 6582 keeps that byte, we keep SND.MAX, one past it),
        # so one window's losses do not trigger a second reduction.
        if self.active or (snd_una - self.recover) & MASK >= HALF:
            return Action.NONE
        self.active = True
        self.sack = sack
        self.recover = snd_max
        cc.on_congestion(max(((snd_max - snd_una) & MASK) - self.limited, 0), now)
        if not sack:
            cc.inflate(DUPACK_THRESHOLD)  # the three that left (RFC 6582 3.2 step 2)
        return Action.RETRANSMIT

    def on_new_ack(self, cc: CongestionControl, ack: int, acked: int, snd_max: int,
                   now: float, srtt: float | None,
                   parts: Sequence[int] | None = None) -> Action:
        """A new cumulative ACK; `parts`: the bytes each of several ACKs taken together
        acked (Connection.receive_acks, only outside recovery), for congestion control to
        count each as it would alone."""
        self.dupacks = 0
        self.limited = 0
        if not self.active:
            if parts is None:
                cc.on_ack(acked, now, srtt)
            else:
                for part in parts:
                    cc.on_ack(part, now, srtt)
            return Action.NONE
        if ((ack - self.recover) & MASK) < HALF:  # full ACK: step 3
            self.active = False
            cc.on_recovery_end((snd_max - ack) & MASK, now)
            return Action.NONE
        if self.sack:
            return Action.NONE  # the SACK scoreboard decides what to resend
        cc.deflate(acked)  # a partial ACK (step 5): resend the next hole
        return Action.RETRANSMIT

    def on_timeout(self, snd_max: int) -> None:
        """RFC 6582 4.1: after a timeout, recovery starts over from the highest seq sent."""
        self.active = False
        self.dupacks = 0
        self.limited = 0
        self.recover = snd_max
