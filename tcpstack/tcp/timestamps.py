"""The timestamps option (RFC 7323 3 to 5): its negotiation, the clock our TSvals come from,
TS.Recent (the peer's TSval we echo) and Last.ACK.sent, PAWS, and RTT samples from TSecr.
A part of the connection (`conn.ts`), owner of these variables; the connection decides when
each rule applies, output.py puts the option on the segments.

The clock ticks every millisecond, as Linux's does: TSval = offset + int(now * 1000), modulo
2**32, with an offset per pair of addresses (isn.py). The core reads no clock: `now` is the
time of the latest event the connection was handed (`tick`), which is also when every
segment that event makes is sent.

Timestamps compare as sequence numbers do (RFC 7323 5.2: s < t if 0 < (t - s) < 2**31).
"""

from __future__ import annotations

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.seq import HALF, MASK

TS_HZ = 1000  # ticks a second (RFC 7323 5.4 asks for between 1 ms and 1 s)
# RFC 7323 5.5: after 24 days without an update, TS.Recent may be older than half the
# peer's timestamp space (at its fastest clock, 1 ms) and stops guarding anything.
PAWS_IDLE = 24 * 24 * 60 * 60.0
_pack_option = tcpseg.pack_timestamps_option  # one C call per segment, not two calls
_PREFIX = tcpseg.TIMESTAMPS_PREFIX


class Timestamps:
    __slots__ = ("last_ack_sent", "now", "offset", "ok", "recent", "recent_at")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.ok = False        # Snd.TS.OK: both SYNs carried the option (RFC 7323 3.2)
        self.now = 0.0         # the time of the latest event (see the module docstring)
        self.recent = 0        # TS.Recent (3.2, 4.3)
        self.recent_at = 0.0   # when TS.Recent was last set, for the idle rule (5.5)
        self.last_ack_sent = 0  # Last.ACK.sent: the ACK field we last sent (4.3)

    def clock(self) -> int:
        """Our TSval now."""
        return (self.offset + int(self.now * TS_HZ)) & MASK

    def syn_option(self, ack: bool) -> tuple[int, int]:
        """(TSval, TSecr) for our SYN (TSecr 0: no ACK, 3.2) or SYN-ACK."""
        return self.clock(), self.recent if ack else 0

    def option(self, ack: bool) -> bytes:
        """The option every segment after the SYNs carries once negotiated (3.2); TSecr is
        TS.Recent when the ACK bit is set and zero otherwise (a RST)."""
        return _pack_option(_PREFIX, (self.offset + int(self.now * TS_HZ)) & MASK,
                            self.recent if ack else 0)

    def take_syn(self, tsval: int | None, offered: bool) -> None:
        """The peer's SYN or SYN-ACK arrived with `tsval` (None: no option); `offered`: we
        send (or sent) the option in ours. Both must carry it (3.2)."""
        self.ok = offered and tsval is not None
        if self.ok and tsval is not None:
            self.recent, self.recent_at = tsval, self.now

    def paws_rejects(self, tsval: int) -> bool:
        """PAWS (5.3 R1): is SEG.TSval older than TS.Recent, and TS.Recent still valid?"""
        return ((tsval - self.recent) & MASK) >= HALF and self.now - self.recent_at <= PAWS_IDLE

    def note_arrival(self, tsval: int, seq: int) -> None:
        """An acceptable segment (5.3 R3, 4.3): its TSval becomes TS.Recent if it is not
        older and the segment starts at or before Last.ACK.sent. So with delayed ACKs the
        echo is of the earliest segment the ACK covers, and a segment beyond a hole is not
        echoed, while the one that fills it is. A TS.Recent too old to guard (5.5) is
        replaced by whatever the next such segment carries."""
        at_or_before = ((seq - self.last_ack_sent) & MASK) >= HALF or seq == self.last_ack_sent
        newer = ((tsval - self.recent) & MASK) < HALF or self.now - self.recent_at > PAWS_IDLE
        if at_or_before and newer:
            self.recent, self.recent_at = tsval, self.now

    def rtt_sample(self, tsecr: int) -> float | None:
        """The round-trip time an ACK's TSecr measures (4.1), in seconds; at least one tick
        (a sample of 0 would say more than the clock knows). None for a TSecr of 0 (Linux
        takes it for "no echo") or one from the future."""
        if not tsecr:
            return None
        ticks = (self.offset + int(self.now * TS_HZ) - tsecr) & MASK  # self.clock(), inline
        if ticks >= HALF:
            return None
        return max(ticks, 1) / TS_HZ
