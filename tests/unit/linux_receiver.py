"""A scripted receiver that acknowledges the way Linux's TCP does, for loss-recovery tests.

Linux answers every out-of-order segment at once with a duplicate ACK whose SACK blocks
report what sits beyond the hole, the block holding the newest segment first (RFC 2018 4),
and it grows the window it advertises on nearly every ACK early in a connection (its
rcv_ssthresh grows by about 2 segments per segment received: `win 1176, 1179, 1182 ...` with
window scale 7). A peer with a constant window hides the bugs that such a peer finds: an
RFC 5681 duplicate ACK needs an unchanged window, so a sender that only counts those never
sees one from Linux.
"""

from __future__ import annotations

from collections.abc import Callable

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.segment import ACK, SYN
from tcpstack.tcp.seq import MASK
from tests.unit.scripted_peer import ScriptedPeer, Sent

PEER_ISN = 5_000_000
WSCALE = 7
FIRST_WINDOW = 1176  # the field of Linux's first ACK with scale 7 (about 150 KB)
WINDOW_STEP = 3      # what the field grows by on each ACK


class LinuxLikeReceiver:
    """The far end of one connection the stack under test opened passively: it connects,
    then takes the stack's data segments one at a time (`deliver`) or loses them (`lose`)."""

    def __init__(self, config: TcpConfig, *, sack: bool = True, rtt: float = 0.01,
                 grow_window: bool = True) -> None:
        self.peer = ScriptedPeer(config)
        self.peer.listen(80)
        self.sack = sack
        self.rtt = rtt
        self.grow_window = grow_window
        self.window = FIRST_WINDOW
        options = tcpseg.encode_options(mss=1460, sack_permitted=sack, wscale=WSCALE)
        synack = self.peer.inject(SYN, PEER_ISN, window=64240, options=options)
        self.conn: Connection = self.peer.accepted()
        self.rcv_nxt = (synack[0].seq + 1) & MASK
        self._blocks: list[tuple[int, int]] = []  # out of order, newest first
        self._ack_lost = False
        self.peer.advance(rtt)  # the handshake takes one RTT: the stack gets an RTT sample
        self._ack()

    def send(self, data: bytes) -> list[Sent]:
        """The application on the stack's side writes `data`; returns what the stack sent."""
        self.peer.app_send(self.conn, data)
        return self.peer.take()

    def deliver(self, seg: Sent, *, ack_lost: bool = False) -> list[Sent]:
        """`seg` reaches the receiver, which ACKs it at once; returns the stack's answer
        (nothing, when `ack_lost`: the ACK never reaches the stack)."""
        self._ack_lost = ack_lost
        start, end = seg.seq, (seg.seq + len(seg.payload)) & MASK
        if ((self.rcv_nxt - end) & MASK) < 1 << 31:
            # All of it arrived before: Linux says so with a D-SACK block (RFC 2883).
            return self._ack(dsack=(start, end))
        if start == self.rcv_nxt:
            self.rcv_nxt = end
            # A hole that fills lets the queued blocks in.
            while True:
                block = next((b for b in self._blocks if b[0] == self.rcv_nxt), None)
                if block is None:
                    break
                self.rcv_nxt = block[1]
                self._blocks.remove(block)
            self._blocks = [b for b in self._blocks if ((b[1] - self.rcv_nxt) & MASK) < 1 << 31
                            and b[1] != self.rcv_nxt]
        elif ((start - self.rcv_nxt) & MASK) < 1 << 31:
            merged = (start, end)
            rest = []
            for b in self._blocks:
                if b[1] == merged[0]:
                    merged = (b[0], merged[1])
                elif b[0] == merged[1]:
                    merged = (merged[0], b[1])
                else:
                    rest.append(b)
            self._blocks = [merged, *rest]
        return self._ack()

    def run(self, flight: list[Sent], lose: Callable[[Sent, int], bool],
            max_rounds: int = 1000) -> int:
        """Deliver `flight`, then everything the stack sends in answer, one round trip at a
        time (the clock moves one RTT per round, so timers fire as they would), except what
        `lose(segment, earlier_copies)` drops, until nothing is unacknowledged. Returns the
        number of rounds."""
        copies: dict[int, int] = {}
        rounds = 0
        while self.conn.snd.una != self.conn.snd.max:
            rounds += 1
            assert rounds <= max_rounds, "the transfer does not finish"
            answers = self.peer.advance(self.rtt)  # what timers sent during the round trip
            for seg in flight:
                earlier = copies.get(seg.seq, 0)
                copies[seg.seq] = earlier + 1
                if not lose(seg, earlier):
                    answers += self.deliver(seg)
            flight = [s for s in answers if s.payload]
        return rounds

    def _ack(self, dsack: tuple[int, int] | None = None) -> list[Sent]:
        options = b""
        blocks = ([dsack] if dsack else []) + self._blocks
        if self.sack and blocks:
            options = tcpseg.encode_sack(blocks[:3])  # 3 fit beside timestamps
        if self.grow_window:
            self.window += WINDOW_STEP
        if self._ack_lost:
            return []
        return self.peer.inject(ACK, (PEER_ISN + 1) & MASK, self.rcv_nxt, window=self.window,
                                options=options)
