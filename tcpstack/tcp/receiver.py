"""The receive side of a connection: RFC 9293's receive sequence variables (3.3.1, RCV.NXT,
RCV.WND and the IRS), the bytes waiting for the application, data beyond a hole (reassembly),
the window we advertise with receiver-side SWS avoidance (3.8.6.2.2), and what an ACK owes
(delayed ACK, RFC 5681 4.2). The connection reads it as `conn.rcv`, as the RFC writes RCV.*.
The buffer's size may grow with what the application reads (ReceiveSpace, auto-tuning).

Sequence comparisons are written inline as `(a - b) & MASK`; seq.py holds their definitions.
"""

from __future__ import annotations

from tcpstack.net.checksum import Bytes
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.reassembly import ReassemblyQueue
from tcpstack.tcp.seq import HALF, MASK

MAX_WINDOW_FIELD = 0xFFFF
INITIAL_SPACE_SEGMENTS = 10  # a sender's first flight (RFC 6928): what one RTT first reads
HEADROOM_SEGMENTS = 16       # what tuning adds above twice a round trip's reads (as Linux)
# Bytes: a payload this long is held as the view of its packet it came as; shorter ones are
# copied. A view and its packet cost about 280 bytes beyond the payload, so what the unread
# data holds in memory stays within about 1.3x the bytes the window counts.
VIEW_FROM = 1024


_WSCALES: dict[int, int] = {}  # wscale_for's answers, by buffer size


def wscale_for(buffer: int) -> int:
    """The smallest shift that lets a 16-bit window field cover `buffer` (RFC 7323 2.3)."""
    shift = _WSCALES.get(buffer)
    if shift is not None:  # every connection of a configuration asks the same
        return shift
    shift = 0
    while (MAX_WINDOW_FIELD << shift) < buffer and shift < tcpseg.MAX_WSCALE:
        shift += 1
    if len(_WSCALES) < 64:  # configurations are few; a caller's odd sizes stay out
        _WSCALES[buffer] = shift
    return shift


class ReceiveSpace:
    """Receive-buffer auto-tuning, the "dynamic right-sizing" of Linux's tcp_rcv_space_adjust:
    once per receiver-side round trip, what the application read in it is compared with the
    most it read in one before; when it read more, the buffer becomes about twice that (more
    while reads grow fast), so a sender doubling its rate each round trip (slow start) is not
    held back by our window; never beyond `limit`, and never smaller. Growth follows what the
    application reads, not what arrives: a slow reader's buffer stays as it is.

    The round trip is the receiver's own, measured as Linux does without timestamps
    (tcp_rcv_rtt_measure): the time from advertising a right edge to the data reaching it.
    That is one round trip when the sender is window-limited, longer when it is not; the
    smallest sample is kept. It needs nothing from the sending side, so a connection that
    only receives, or whose handshake was retransmitted (no RTT sample by Karn's rule),
    tunes all the same; nor does it need timestamps (RFC 7323 4.2 would give a sample per
    segment, Linux's other way).
    """

    __slots__ = ("limit", "read_mark", "rtt", "rtt_edge", "rtt_since", "space", "space_since")

    def __init__(self, limit: int, initial: int, mss: int) -> None:
        self.limit = limit
        self.space = min(initial, INITIAL_SPACE_SEGMENTS * mss)  # the most read in one RTT
        self.read_mark = 0  # bytes read by the application when this round trip began
        self.space_since: float | None = None  # ... and when it began
        self.rtt: float | None = None  # the receiver-side RTT: the smallest sample
        self.rtt_edge = 0   # the right edge whose arrival ends the sample being taken
        self.rtt_since: float | None = None  # when that edge was taken (None: no sample)

    def measure(self, now: float, nxt: int, adv: int) -> None:
        """One step of the RTT sample: done when RCV.NXT has reached the edge; a new one
        starts from the right edge advertised now, while the window is open."""
        since = self.rtt_since
        if since is not None:
            if ((nxt - self.rtt_edge) & MASK) >= HALF:
                return  # the data has not reached the edge yet
            sample = now - since
            if sample > 0 and (self.rtt is None or sample < self.rtt):
                self.rtt = sample
        wnd = (adv - nxt) & MASK
        if 0 < wnd < HALF:
            self.rtt_edge, self.rtt_since = adv, now
        else:
            self.rtt_since = None  # a closed window would time nothing: wait for it to open

    def adjust(self, now: float, bytes_read: int, mss: int) -> int:
        """The buffer that the last round trip's reads ask for, once a round trip has passed
        since the last adjustment (0: no change)."""
        since, rtt = self.space_since, self.rtt
        if since is None:
            self.read_mark, self.space_since = bytes_read, now
            return 0
        if rtt is None or now - since < rtt:
            return 0
        copied = bytes_read - self.read_mark
        self.read_mark, self.space_since = bytes_read, now
        space = self.space
        if copied <= space:
            return 0
        self.space = copied
        want = 2 * copied + HEADROOM_SEGMENTS * mss
        if 2 * copied >= 3 * space:    # the reads grew by half or more in one round trip
            want *= 2
        elif 4 * copied >= 5 * space:  # ... by a quarter or more
            want += want // 2
        return min(want, self.limit)


class Receiver:
    __slots__ = ("ack_now", "ack_pending", "adv", "bytes_read", "bytes_received", "capacity",
                 "data_event_pending", "discard", "irs", "mss", "nxt", "ooo", "tuning",
                 "unacked_bytes", "unread", "unread_bytes", "wscale")

    def __init__(self, config: TcpConfig) -> None:
        self.irs = 0          # the peer's initial sequence number
        self.nxt = 0          # RCV.NXT
        self.adv = 0          # the right edge of the window last advertised (RCV.NXT + RCV.WND)
        self.mss = config.mss
        # The buffer's size now (it bounds the window), and what tuning may grow it to.
        self.tuning: ReceiveSpace | None = None
        if config.receive_buffer is None:
            self.capacity = config.receive_buffer_initial
            limit = max(config.receive_buffer_max, self.capacity)
            if limit > self.capacity:
                self.tuning = ReceiveSpace(limit, self.capacity, config.mss)
        else:  # fixed (SO_RCVBUF): no tuning
            self.capacity = limit = config.receive_buffer
        # The scale is sent once, in the SYN, so it is chosen for the largest the buffer may
        # become (RFC 7323 2.3), as Linux chooses it for tcp_rmem[2].
        self.wscale = wscale_for(limit) if config.window_scaling else 0
        # In order, not yet read by the application: the segments' payloads, full-sized
        # ones as the views of the packets they came as (appending them to one bytearray
        # copied every byte once more, and again each time it outgrew its allocation), and
        # their total. A list only while it holds bytes (an empty one is 56 bytes, and most
        # connections are idle most of the time).
        self.unread: list[Bytes] | None = None
        self.unread_bytes = 0
        # Beyond a hole, waiting for it to fill: made for the first segment out of order
        # (`reassembly`), as most connections never see one.
        self.ooo: ReassemblyQueue | None = None
        self.discard = False  # the application reads no more: data is acked and dropped
        self.data_event_pending = False  # a DATA event is out and not yet answered by a read
        self.ack_pending = False  # an ACK is owed; it may wait for the delayed-ACK timer
        self.ack_now = False      # ... or it may not: send it at the next flush
        self.unacked_bytes = 0    # in-order bytes received since our last ACK
        # (These two are set only with ack_pending, and cleared with it by `acked`: so a
        # segment sent with nothing pending has nothing to clear, and skips the call.)
        self.bytes_received = 0   # application bytes delivered in order
        self.bytes_read = 0       # ... and taken by the application (what tuning follows)

    def start(self, irs: int) -> None:
        """The peer's SYN arrived with ISN `irs`."""
        self.irs = irs
        self.nxt = self.adv = (irs + 1) & MASK

    def no_scaling(self) -> None:
        """The peer did not offer window scaling: neither side scales (RFC 7323 2.2)."""
        self.wscale = 0
        self.capacity = min(self.capacity, MAX_WINDOW_FIELD)
        if self.tuning is not None:
            self.tuning.limit = min(self.tuning.limit, MAX_WINDOW_FIELD)

    # ------------------------------------------------------------------ arriving segments

    @property
    def window(self) -> int:
        """RCV.WND: what is left of the window we advertised (0 once RCV.NXT passed it)."""
        wnd = (self.adv - self.nxt) & MASK
        return 0 if wnd >= HALF else wnd

    def acceptable(self, seq: int, seg_len: int) -> bool:
        """The four cases of RFC 9293 3.10.7.4, first check."""
        wnd = (self.adv - self.nxt) & MASK  # self.window, inline: once per segment
        if wnd >= HALF:
            wnd = 0
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
            unread = self.unread
            if n >= VIEW_FROM and (isinstance(data, bytes)
                                   or (isinstance(data, memoryview) and data.readonly)):
                if unread is None:
                    self.unread = [data]
                else:
                    unread.append(data)
            # Otherwise copied: a small piece (a view of it would pin its packet and cost
            # more than its bytes, which a peer's tiny segments could multiply), or a
            # caller's buffer that it may reuse; into the last piece when that is our own
            # bytearray, so a run of small segments stays one piece.
            elif unread is None:
                self.unread = [bytearray(data)]
            else:
                last = unread[-1]
                if type(last) is bytearray:
                    last += data
                else:
                    unread.append(bytearray(data))
            self.unread_bytes += n
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

    def reassembly(self) -> ReassemblyQueue:
        """The queue for data beyond a hole, made when first needed."""
        ooo = self.ooo
        if ooo is None:
            ooo = self.ooo = ReassemblyQueue()
        return ooo

    def owe_ack_now(self) -> None:
        self.ack_pending = self.ack_now = True

    # ------------------------------------------------------------------ the application

    def read(self, max_bytes: int = -1) -> bytes:
        """Take received bytes (all with -1); whether the window it opens is worth an ACK of
        its own is update_due's to say."""
        unread = self.unread
        if unread is None:
            data = b""
        elif max_bytes < 0 or max_bytes >= self.unread_bytes:
            data = b"".join(unread)  # a lone bytes piece is returned as it is, not copied
            self.unread = None
            self.unread_bytes = 0
        else:
            data = self._take(unread, max_bytes)
        self.data_event_pending = False
        self.bytes_read += len(data)
        return data

    def _take(self, unread: list[Bytes], size: int) -> bytes:
        """The first `size` bytes of `unread` (which holds more), removed from it; the piece
        they end inside keeps its rest as a view."""
        taken = 0
        count = 0
        for piece in unread:
            taken += len(piece)
            count += 1
            if taken >= size:
                break
        over = taken - size
        if over:
            last = memoryview(unread[count - 1])
            cut = len(last) - over
            data = b"".join([*unread[:count - 1], last[:cut]])
            unread[count - 1] = last[cut:]
            count -= 1
        else:
            data = b"".join(unread[:count])
        del unread[:count]
        self.unread_bytes -= size
        return data

    # ------------------------------------------------------------------ what we send

    def syn_window(self) -> int:
        """The window field of our SYN or SYN-ACK, never scaled (RFC 7323 2.2)."""
        window = min(self.capacity - self.unread_bytes, MAX_WINDOW_FIELD)
        self.adv = (self.nxt + window) & MASK
        return window

    def advertise(self) -> int:
        """The window field to send; moves the advertised right edge, never backwards, and
        only by useful amounts (receiver-side SWS avoidance, RFC 9293 3.8.6.2.2)."""
        nxt = self.nxt
        free = self.capacity - self.unread_bytes
        wnd = (self.adv - nxt) & MASK
        # window_would_grow, inline (once per segment sent): the edge moves by at least
        # min(buffer / 2, MSS), or the old edge has been passed.
        grow = (nxt + free - self.adv) & MASK
        if (grow < HALF and grow >= min(self.capacity // 2, self.mss)) or wnd >= HALF:
            self.adv = (nxt + free) & MASK
            wnd = free if free > 0 else 0
        # Round up to the scale unit: rounding down would pull the right edge back, shrinking
        # the window (RFC 9293 3.8.6.2.2 says not to); the buffer takes the few extra bytes.
        scale = self.wscale
        field = min((wnd + (1 << scale) - 1) >> scale, MAX_WINDOW_FIELD)
        self.adv = (self.nxt + (field << scale)) & MASK
        return field

    def window_would_grow(self) -> bool:
        """The free buffer would move the advertised right edge forward far enough to be
        worth announcing: min(buffer / 2, MSS) (receiver-side SWS avoidance)."""
        free = self.capacity - self.unread_bytes
        grow = (self.nxt + free - self.adv) & MASK
        return grow < HALF and grow >= min(self.capacity // 2, self.mss)

    def update_due(self, read: int) -> bool:
        """After a read of `read` bytes: is the window worth an ACK of its own now? Only
        where unread data had closed it to half the buffer or less and it would at least
        double (Linux's tcp_cleanup_rbuf rule); otherwise the update rides on the next ACK,
        so a prompt reader does not turn every segment into an ACK and defeat delayed ACK.
        A window that is small only because the SYN's could not be scaled (65535 at most,
        RFC 7323 2.2) has not closed: the first request's ACK still waits for its answer."""
        window = (self.adv - self.nxt) & MASK  # self.window, inline: once per read
        if window >= HALF:
            window = 0
        return (2 * (self.unread_bytes + read) >= self.capacity
                and 2 * window <= self.capacity
                and self.capacity - self.unread_bytes >= 2 * window
                and self.window_would_grow())

    def acked(self) -> None:
        """An ACK went out: nothing is owed any more."""
        self.ack_pending = self.ack_now = False
        self.unacked_bytes = 0
