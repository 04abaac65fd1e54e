"""The receive side of a connection: RFC 9293's receive sequence variables (3.3.1, RCV.NXT,
RCV.WND and the IRS), the bytes waiting for the application, data beyond a hole (reassembly),
the window we advertise with receiver-side SWS avoidance (3.8.6.2.2), and what an ACK owes
(delayed ACK, RFC 5681 4.2). The connection reads it as `conn.rcv`, as the RFC writes RCV.*.

Sequence comparisons are written inline as `(a - b) & MASK`; seq.py holds their definitions.
"""

from __future__ import annotations

from tcpstack.net.checksum import Bytes
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.reassembly import ReassemblyQueue
from tcpstack.tcp.seq import HALF, MASK

MAX_WINDOW_FIELD = 0xFFFF


def wscale_for(buffer: int) -> int:
    """The smallest shift that lets a 16-bit window field cover `buffer` (RFC 7323 2.3)."""
    shift = 0
    while (MAX_WINDOW_FIELD << shift) < buffer and shift < tcpseg.MAX_WSCALE:
        shift += 1
    return shift


class Receiver:
    __slots__ = ("ack_now", "ack_pending", "adv", "buffer", "bytes_received", "capacity",
                 "data_event_pending", "discard", "irs", "mss", "nxt", "ooo", "unacked_bytes",
                 "wscale")

    def __init__(self, config: TcpConfig) -> None:
        self.irs = 0          # the peer's initial sequence number
        self.nxt = 0          # RCV.NXT
        self.adv = 0          # the right edge of the window last advertised (RCV.NXT + RCV.WND)
        self.wscale = wscale_for(config.receive_buffer) if config.window_scaling else 0
        self.capacity = config.receive_buffer
        self.mss = config.mss
        self.buffer = bytearray()      # in order, not yet read by the application
        self.ooo = ReassemblyQueue()   # beyond a hole, waiting for it to fill
        self.discard = False  # the application reads no more: data is acked and dropped
        self.data_event_pending = False  # a DATA event is out and not yet answered by a read
        self.ack_pending = False  # an ACK is owed; it may wait for the delayed-ACK timer
        self.ack_now = False      # ... or it may not: send it at the next flush
        self.unacked_bytes = 0    # in-order bytes received since our last ACK
        self.bytes_received = 0   # application bytes delivered in order

    def start(self, irs: int) -> None:
        """The peer's SYN arrived with ISN `irs`."""
        self.irs = irs
        self.nxt = self.adv = (irs + 1) & MASK

    def no_scaling(self) -> None:
        """The peer did not offer window scaling: neither side scales (RFC 7323 2.2)."""
        self.wscale = 0
        self.capacity = min(self.capacity, MAX_WINDOW_FIELD)

    # ------------------------------------------------------------------ arriving segments

    @property
    def window(self) -> int:
        """RCV.WND: what is left of the window we advertised (0 once RCV.NXT passed it)."""
        wnd = (self.adv - self.nxt) & MASK
        return 0 if wnd >= HALF else wnd

    def acceptable(self, seq: int, seg_len: int) -> bool:
        """The four cases of RFC 9293 3.10.7.4, first check."""
        wnd = self.window
        offset = (seq - self.nxt) & MASK
        if seg_len == 0:
            return offset == 0 if wnd == 0 else offset < wnd
        if wnd == 0:
            return False
        return offset < wnd or ((seq + seg_len - 1 - self.nxt) & MASK) < wnd

    def deliver(self, data: Bytes) -> bool:
        """In-order bytes at RCV.NXT: to the application (unless it stopped reading). True
        when the application should hear of data (none was waiting unread)."""
        n = len(data)
        if not n:
            return False
        tell = False
        if not self.discard:
            self.buffer += data
            if not self.data_event_pending:
                self.data_event_pending = tell = True
        self.nxt = (self.nxt + n) & MASK
        self.bytes_received += n
        self.ack_pending = True
        # Delayed ACK (RFC 5681 4.2): at least every second full-sized segment.
        self.unacked_bytes += n
        if self.unacked_bytes >= 2 * self.mss:
            self.ack_now = True
        return tell

    def owe_ack_now(self) -> None:
        self.ack_pending = self.ack_now = True

    # ------------------------------------------------------------------ the application

    def read(self, max_bytes: int = -1) -> bytes:
        """Take received bytes (all with -1); whether the window it opens is worth an ACK of
        its own is update_due's to say."""
        buf = self.buffer
        if max_bytes < 0 or max_bytes >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:max_bytes])
            del buf[:max_bytes]
        self.data_event_pending = False
        return data

    # ------------------------------------------------------------------ what we send

    def syn_window(self) -> int:
        """The window field of our SYN or SYN-ACK, never scaled (RFC 7323 2.2)."""
        window = min(self.capacity - len(self.buffer), MAX_WINDOW_FIELD)
        self.adv = (self.nxt + window) & MASK
        return window

    def advertise(self) -> int:
        """The window field to send; moves the advertised right edge, never backwards, and
        only by useful amounts (receiver-side SWS avoidance, RFC 9293 3.8.6.2.2)."""
        if self.window_would_grow() or ((self.adv - self.nxt) & MASK) >= HALF:
            self.adv = (self.nxt + self.capacity - len(self.buffer)) & MASK
        wnd = self.window
        # Round up to the scale unit: rounding down would pull the right edge back, shrinking
        # the window (RFC 9293 3.8.6.2.2 says not to); the buffer takes the few extra bytes.
        scale = self.wscale
        field = min((wnd + (1 << scale) - 1) >> scale, MAX_WINDOW_FIELD)
        self.adv = (self.nxt + (field << scale)) & MASK
        return field

    def window_would_grow(self) -> bool:
        """The free buffer would move the advertised right edge forward far enough to be
        worth announcing: min(buffer / 2, MSS) (receiver-side SWS avoidance)."""
        free = self.capacity - len(self.buffer)
        grow = (self.nxt + free - self.adv) & MASK
        return grow < HALF and grow >= min(self.capacity // 2, self.mss)

    def update_due(self) -> bool:
        """After a read: is the window worth an ACK of its own now? Only where it had closed
        to half the buffer or less and would at least double (Linux's tcp_cleanup_rbuf rule);
        otherwise the update rides on the next ACK, so a prompt reader does not turn every
        segment into an ACK and defeat delayed ACK."""
        window = self.window
        return (2 * window <= self.capacity
                and self.capacity - len(self.buffer) >= 2 * window
                and self.window_would_grow())

    def acked(self) -> None:
        """An ACK went out: nothing is owed any more."""
        self.ack_pending = self.ack_now = False
        self.unacked_bytes = 0
