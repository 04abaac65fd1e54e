"""One TCP connection, sans-I/O (RFC 9293 section 3.10, "Event Processing").

A Connection never reads a clock or touches a file descriptor. It is fed arriving segments
(`receive`), application calls (`send`, `read`, `close`, `abort`) and timer expiries
(`on_timer`), each with the current time, and it answers by appending finished IPv4 packets
to `output` and ConnEvents to `events`. Its owner calls `flush` after feeding it, which sends
whatever data the windows allow and any pending ACK, and reads `deadline` to know when to
call `on_timer` next. All state changes go through the table in state.py.

Sequence comparisons are written inline as `(a - b) & MASK` on the hot paths; seq.py holds
their definitions.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from tcpstack.net import offload
from tcpstack.net.checksum import Bytes
from tcpstack.net.ipv4 import PROTO_TCP, HeaderTemplate, pseudo_header_sum
from tcpstack.tcp import congestion
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.congestion import CongestionControl
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.reassembly import ReassemblyQueue
from tcpstack.tcp.recovery import DUPACK_THRESHOLD, Action, FastRecovery
from tcpstack.tcp.rtt import RttEstimator
from tcpstack.tcp.sack import SackScoreboard
from tcpstack.tcp.segment import ACK, FIN, PSH, RST, SYN, Segment
from tcpstack.tcp.send_buffer import SendBuffer
from tcpstack.tcp.seq import HALF, MASK
from tcpstack.tcp.state import RECEIVING, SYNCHRONIZED, State, Trigger, next_state

TransitionHook = Callable[["Connection", State, State], None]

_MAX_WINDOW_FIELD = 0xFFFF
# The largest TCP payload one IPv4 packet can carry (65535 less 20 + 20 header bytes).
_MAX_IP_PAYLOAD = 0xFFFF - 40
MIN_SND_MSS = 48
CWND_TRACE_LEN = 20_000      # samples kept per connection
CWND_TRACE_INTERVAL = 0.001  # at most one sample a millisecond, except at losses


def _wscale_for(buffer: int) -> int:
    """The smallest shift that lets a 16-bit window field cover `buffer` (RFC 7323 2.3)."""
    shift = 0
    while (_MAX_WINDOW_FIELD << shift) < buffer and shift < tcpseg.MAX_WSCALE:
        shift += 1
    return shift


class ConnectionStateError(Exception):
    """An application call the connection's state does not allow."""


class Connection:
    def __init__(self, config: TcpConfig, local_addr: bytes, local_port: int,
                 remote_addr: bytes, remote_port: int, iss: int, *, passive: bool,
                 counters: Counter[str] | None = None) -> None:
        self.config = config
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.passive = passive
        self.state = State.LISTEN if passive else State.CLOSED
        self.on_transition: TransitionHook | None = None
        self.listener: object | None = None  # the Listener that spawned a passive open
        self.owner: object | None = None     # whatever the application layer attaches

        self._ip = HeaderTemplate(local_addr, remote_addr, PROTO_TCP)
        self._offload = config.offload
        self._link = offload.NONE if config.offload else b""
        self._pseudo = pseudo_header_sum(local_addr, remote_addr, PROTO_TCP)

        # Send sequence space (RFC 9293 3.3.1). snd_max is the highest SND.NXT ever reached;
        # a retransmission timeout pulls snd_nxt back to snd_una and resends from there.
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.max_snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.snd_wscale = 0
        self.snd_mss = tcpseg.DEFAULT_MSS
        self._seg_max = tcpseg.DEFAULT_MSS  # largest segment we build: the MSS, or with
        #                                     segmentation offload a multiple of it
        self.send_buffer = SendBuffer(config.send_buffer)
        self._fin_queued = False  # the application closed its sending side
        self._fin_seq: int | None = None  # where our FIN sits, once it has been sent
        self._syn_acked = False
        self.snd_wscale_offered = False  # the peer's SYN carried a window scale option
        self.sack_ok = False  # both SYNs carried SACK-permitted (RFC 2018 2)
        self.scoreboard = SackScoreboard()

        # Receive sequence space. rcv_adv is the right edge of the window we advertised.
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_wscale = _wscale_for(config.receive_buffer) if config.window_scaling else 0
        self.receive_buffer = bytearray()
        self._ooo = ReassemblyQueue()  # data beyond a hole, waiting for it to fill
        self._rcv_capacity = config.receive_buffer
        self._ack_pending = False  # an ACK is owed; it may wait for the delayed-ACK timer
        self._ack_now = False      # ... or it may not: send it at the next flush
        self._unacked_bytes = 0    # in-order bytes received since our last ACK
        self._delack_at: float | None = None
        self.nodelay = config.nodelay
        self.discard_input = False  # the application will read no more; data is acked, dropped

        self.rtt = RttEstimator(config.initial_rto, config.min_rto, config.max_rto)
        self.cc: CongestionControl = congestion.create(config.congestion, config.mss)
        self.recovery = FastRecovery(iss)
        self._timed_seq: int | None = None  # the segment being timed for an RTT sample
        self._timed_at = 0.0
        self.retries = 0
        # (time, cwnd, ssthresh) samples for `tcpstack stat` and `tcpstack plot`.
        self.cwnd_trace: deque[tuple[float, int, int]] = deque(maxlen=CWND_TRACE_LEN)

        self._rto_at: float | None = None
        self._persist_at: float | None = None
        self._persist_interval = 0.0
        self._time_wait_at: float | None = None
        self._keepalive_at: float | None = None
        self._fin_wait_2_at: float | None = None
        self._keepalive_probes = 0
        self._unacked_since = 0.0  # when the oldest unacknowledged byte was first sent
        self.deadline: float | None = None

        self.output: list[bytes] = []
        self.events: list[ConnEvent] = []
        self._data_event_pending = False
        self._want_writable = False
        self.error: str | None = None
        # Set when a new SYN ended TIME_WAIT: the ISN the new incarnation must use.
        self.reopen_iss: int | None = None

        self.bytes_sent = 0       # application bytes acknowledged by the peer
        self.bytes_received = 0   # application bytes delivered in order
        self.retransmits = 0
        self.persist_probes = 0
        # Shared with the stack (nstat-style totals); a lone connection keeps its own.
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.segments_in = 0
        self.segments_out = 0

    # ------------------------------------------------------------------ app calls

    def connect(self, now: float) -> None:
        """Active open: send a SYN."""
        self._transition(Trigger.APP_CONNECT, now)
        self._send_syn(now)

    def accept_syn(self, seg: Segment, now: float) -> None:
        """Passive open: a listener hands over the SYN that created this connection."""
        self._take_syn(seg)
        self.snd_wnd = seg.window  # never scaled in a SYN (RFC 7323 2.2)
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = seg.seq
        self._transition(Trigger.RCV_SYN, now)
        self._send_syn(now)

    def send(self, data: Bytes) -> int:
        """Queue application data; returns how many bytes fit in the send buffer."""
        if self._fin_queued or self.state not in (State.SYN_SENT, State.SYN_RCVD,
                                                   State.ESTABLISHED, State.CLOSE_WAIT):
            raise ConnectionStateError(f"cannot send in {self.state}"
                                   + (" after close" if self._fin_queued else ""))
        n = self.send_buffer.append(data)
        if n < len(data):
            self._want_writable = True
        return n

    def read(self, max_bytes: int = -1) -> bytes:
        """Take received bytes; opening the window may make the next flush send an update."""
        buf = self.receive_buffer
        if max_bytes < 0 or max_bytes >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:max_bytes])
            del buf[:max_bytes]
        self._data_event_pending = False
        if data and self.state in RECEIVING and self._window_would_grow():
            self._ack_pending = self._ack_now = True  # a window update (3.8.6.2.2)
        return data

    def close(self, now: float) -> None:
        """Graceful close of our sending side (shutdown(SHUT_WR) and close() on the wire)."""
        if self.state in (State.SYN_SENT, State.LISTEN):
            self._transition(Trigger.APP_CLOSE, now)
        elif self.state in (State.SYN_RCVD, State.ESTABLISHED, State.CLOSE_WAIT):
            self._fin_queued = True
            self._transition(Trigger.APP_CLOSE, now)

    def reopen(self, now: float) -> None:
        """A listener takes the SYN that arrived in TIME_WAIT: this incarnation ends; the new
        one starts with ISN `reopen_iss`."""
        self._transition(Trigger.RCV_SYN_IN_TIME_WAIT, now)

    def decline_reopen(self) -> None:
        """Nobody listens: TIME_WAIT goes on, and the SYN draws an ACK (RFC 5961 4.2)."""
        self.reopen_iss = None
        self._emit(ACK, self.snd_max)

    def abort(self, now: float) -> None:
        """Reset the connection (RFC 9293 3.10.5 ABORT): a RST where the peer may still be
        sending, silent deletion in CLOSING and LAST_ACK."""
        if self.state in (State.CLOSED, State.TIME_WAIT):
            return
        if self.state in (State.SYN_RCVD, State.ESTABLISHED, State.FIN_WAIT_1,
                          State.FIN_WAIT_2, State.CLOSE_WAIT):
            self._emit(RST, self.snd_max)
        self.error = "connection aborted"
        self._transition(Trigger.APP_ABORT, now)

    # ------------------------------------------------------------------ output

    def flush(self, now: float) -> None:
        """Send what the windows allow, then any ACK that cannot wait."""
        if self.state in SYNCHRONIZED and self.state is not State.TIME_WAIT:
            self._send_data(now)
        if self._ack_pending and self.state is not State.CLOSED:
            if self._ack_now or self.config.delayed_ack <= 0:
                self._emit(ACK, self.snd_max)
            elif self._delack_at is None:
                self._delack_at = now + self.config.delayed_ack
        self._update_deadline()

    def _advertise(self) -> int:
        """The window field to send; moves the advertised right edge, never backwards, and
        only by useful amounts (receiver-side SWS avoidance, RFC 9293 3.8.6.2.2)."""
        free = self._rcv_capacity - len(self.receive_buffer)
        right = (self.rcv_nxt + free) & MASK
        grow = (right - self.rcv_adv) & MASK
        if grow < HALF and (grow >= min(self._rcv_capacity // 2, self.config.mss)
                            or ((self.rcv_adv - self.rcv_nxt) & MASK) >= HALF):
            self.rcv_adv = right
        wnd = (self.rcv_adv - self.rcv_nxt) & MASK
        if wnd >= HALF:  # rcv_adv fell behind rcv_nxt: nothing advertised is left
            wnd = 0
            self.rcv_adv = self.rcv_nxt
        # Round up to the scale unit: rounding down would pull the right edge back, shrinking
        # the window (RFC 9293 3.8.6.2.2 says not to); the buffer takes the few extra bytes.
        scale = self.rcv_wscale
        field = min((wnd + (1 << scale) - 1) >> scale, _MAX_WINDOW_FIELD)
        self.rcv_adv = (self.rcv_nxt + (field << scale)) & MASK
        return field

    def _window_would_grow(self) -> bool:
        free = self._rcv_capacity - len(self.receive_buffer)
        grow = (self.rcv_nxt + free - self.rcv_adv) & MASK
        return grow < HALF and grow >= min(self._rcv_capacity // 2, self.config.mss)

    def _emit(self, flags: int, seq: int, payload: Bytes = b"", options: bytes = b"") -> None:
        if flags & RST:
            window = 0
        elif flags & SYN:  # the window in a SYN is never scaled (RFC 7323 2.2)
            window = min(self._rcv_capacity - len(self.receive_buffer), _MAX_WINDOW_FIELD)
            self.rcv_adv = (self.rcv_nxt + window) & MASK
        else:
            window = self._advertise()
            if not payload and self.sack_ok and self._ooo and not options:
                # Every ACK sent while data waits beyond a hole reports it (RFC 2018 4).
                options = tcpseg.encode_sack(self._ooo.sack_blocks(4))
        ack = self.rcv_nxt if flags & ACK else 0
        if payload and self._offload:
            hdr = tcpseg.build_header_partial(self.local_port, self.remote_port, seq, ack,
                                              flags, window, self._pseudo, options,
                                              len(payload))
            link = offload.tcp_partial(20, len(hdr), len(payload), self.snd_mss)
        else:
            hdr = tcpseg.build_header(self.local_port, self.remote_port, seq, ack, flags,
                                      window, self._pseudo, options, payload)
            link = self._link
        self.output.append(b"".join((link, self._ip.build(len(hdr) + len(payload)), hdr,
                                     payload)))
        self.segments_out += 1
        if flags & ACK:
            self._ack_pending = self._ack_now = False
            self._unacked_bytes = 0
            self._delack_at = None

    def _syn_options(self) -> bytes:
        """A SYN offers MSS, SACK and window scaling; a SYN-ACK answers only what was offered."""
        synack = self.state is State.SYN_RCVD
        config = self.config
        return tcpseg.encode_options(
            mss=config.mss,
            sack_permitted=config.sack and (not synack or self.sack_ok),
            wscale=self.rcv_wscale if (config.window_scaling and
                                       (not synack or self.snd_wscale_offered)) else None)

    def _send_syn(self, now: float) -> None:
        synack = self.state is State.SYN_RCVD
        self._emit(SYN | ACK if synack else SYN, self.iss, options=self._syn_options())
        self.snd_nxt = self.snd_max = (self.iss + 1) & MASK
        self._arm_rto(now)
        if self._timed_seq is None and self.retries == 0:
            self._timed_seq, self._timed_at = self.snd_nxt, now

    def _send_data(self, now: float) -> None:
        if not self._syn_acked:
            return  # data and FIN sequence numbers start after our SYN is acknowledged
        buf = self.send_buffer
        una = self.snd_una
        buffered = len(buf)
        cwnd = self.cc.cwnd
        dupacks = self.recovery.dupacks
        if dupacks and not self.recovery.active:
            # Limited transmit (RFC 3042): each of the first two duplicate ACKs lets one new
            # segment out, so a small window still collects the three that trigger recovery.
            cwnd += min(dupacks, 2) * self.snd_mss
        window = min(self.snd_wnd, cwnd)
        mss = self.snd_mss
        seg_max = self._seg_max
        while True:
            sent = (self.snd_nxt - una) & MASK
            unsent = buffered - sent
            if unsent <= 0:
                break
            room = window - sent
            if room <= 0:
                break
            n = min(seg_max, unsent, room)
            if n < mss and self.snd_nxt == self.snd_max:
                # Sender-side SWS avoidance (RFC 9293 3.8.6.2.1): a short segment of new data
                # goes only if it empties the queue or is at least half the largest window
                # offered; and Nagle (3.7.4): not while earlier data is unacknowledged.
                # Retransmissions are exempt: that data was already judged worth sending.
                if n < unsent and n < self.max_snd_wnd // 2:
                    break
                if not self.nodelay and self.snd_nxt != una:
                    break
            seq = self.snd_nxt
            flags = ACK | PSH if n == unsent else ACK
            self._emit(flags, seq, buf.peek(sent, n))
            end = (seq + n) & MASK
            if seq == self.snd_max and self._timed_seq is None:
                self._timed_seq, self._timed_at = end, now
            if seq != self.snd_max:
                self._count_retransmit()
            if 0 < ((end - self.snd_max) & MASK) < HALF:
                # New data, even when a resend cut the segments differently and this one
                # straddles SND.MAX.
                self.snd_max = end
            self.snd_nxt = end
            self._arm_rto(now)
        if self._fin_queued:
            end = (una + buffered) & MASK
            if self.snd_nxt == end and (self._fin_seq is None or self._fin_seq == end):
                if self._fin_seq is None:
                    self._fin_seq = end
                else:
                    self._count_retransmit()
                self.snd_max = (end + 1) & MASK  # the FIN is the last thing we ever send
                self._emit(FIN | ACK, end)
                self.snd_nxt = (end + 1) & MASK
                self._arm_rto(now)
        # Persist timer: data waits, held back by a zero window or by SWS avoidance, and
        # nothing is in flight to draw the ACK that would reopen the window.
        if buffered > ((self.snd_nxt - una) & MASK) and self.snd_una == self.snd_max:
            if self._persist_at is None:
                self._persist_interval = self.rtt.rto
                self._persist_at = now + self._persist_interval
        else:
            self._persist_at = None

    # ------------------------------------------------------------------ input

    def receive(self, seg: Segment, now: float) -> None:
        """Process one arriving segment (RFC 9293 3.10.7)."""
        self.segments_in += 1
        if self._keepalive_at is not None:
            self._heard_from_peer(now)
        state = self.state
        if state is State.SYN_SENT:
            self._receive_in_syn_sent(seg, now)
            return
        if state is State.CLOSED or state is State.LISTEN:
            return
        flags = seg.flags
        if (state is State.SYN_RCVD and flags & SYN and not flags & ACK
                and seg.seq == self.irs):
            # Our SYN-ACK was lost and the peer repeats its SYN: answer it again.
            self._emit(SYN | ACK, self.iss, options=self._syn_options())
            return

        if state is State.SYN_RCVD and flags & SYN and flags & ACK and seg.seq == self.irs:
            # Simultaneous open (RFC 9293 figure 8, line 6): the peer's SYN-ACK repeats its
            # SYN and acknowledges ours; the SYN is old, the ACK completes the handshake.
            flags &= ~SYN
            seg = Segment(seg.sport, seg.dport, (seg.seq + 1) & MASK, seg.ack, flags,
                          seg.window, seg.options, seg.payload)
            self._ack_pending = self._ack_now = True  # figure 8, line 7: ACK it

        if (state is State.TIME_WAIT and flags & SYN and not flags & (ACK | RST)
                and 0 < ((seg.seq - self.rcv_nxt) & MASK) < HALF):
            # RFC 1122 4.2.2.13 / RFC 6191: a SYN beyond everything the old incarnation
            # used may reopen the connection, if a listener takes it: the stack decides and
            # calls reopen() or decline_reopen().
            self.reopen_iss = (self.snd_nxt + 0xFFFF + 2) & MASK
            return

        # First: is the segment acceptable? (3.10.7.4, the four cases)
        seq = seg.seq
        payload = seg.payload
        seg_len = len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        wnd = (self.rcv_adv - self.rcv_nxt) & MASK
        if wnd >= HALF:
            wnd = 0
        offset = (seq - self.rcv_nxt) & MASK
        if seg_len == 0:
            acceptable = offset == 0 if wnd == 0 else offset < wnd
        elif wnd == 0:
            acceptable = False
        else:
            acceptable = offset < wnd or ((seq + seg_len - 1 - self.rcv_nxt) & MASK) < wnd
        if not acceptable:
            if wnd == 0 and offset == 0 and flags & ACK and not flags & (RST | SYN):
                # A zero window still takes valid ACKs (3.10.7.4): keep only the ACK, and
                # answer with an ACK showing the window is still closed.
                flags &= ~FIN
                payload = payload[:0]
                self._ack_pending = self._ack_now = True
            else:
                if not flags & RST:
                    if state is State.TIME_WAIT and flags & FIN:
                        self._start_time_wait(now)  # a retransmitted FIN: re-ACK, restart 2MSL
                    self._emit(ACK, self.snd_max)
                return
        elif offset >= HALF:
            # Starts before RCV.NXT: trim what we already have (3.10.7.4, "trimmed").
            skip = (self.rcv_nxt - seq) & MASK
            if flags & SYN:
                skip -= 1
                flags &= ~SYN
            payload = payload[skip:]
            seq = self.rcv_nxt

        # Second: RST (RFC 5961 3.2: only an exact match resets, others draw a challenge ACK).
        if flags & RST:
            if seg.seq != self.rcv_nxt:
                self._emit(ACK, self.snd_max)
                return
            self._on_reset(now)
            return

        # Fourth: a SYN in a synchronized state draws a challenge ACK (RFC 5961 4.2).
        if flags & SYN:
            self._emit(ACK, self.snd_max)
            return

        # Fifth: the ACK field.
        if not flags & ACK:
            return
        if state is State.SYN_RCVD:
            if not (0 < ((seg.ack - self.snd_una) & MASK) <= ((self.snd_max - self.snd_una)
                                                              & MASK)):
                self._emit(RST, seg.ack)
                return
            self.snd_una = (self.iss + 1) & MASK
            self._syn_acked = True
            self._ack_rtt(seg.ack, now)
            self._rto_at = None
            self.retries = 0
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1, self.snd_wl2 = seq, seg.ack
            self._transition(Trigger.RCV_ACK_OF_SYN, now)
            self.events.append(ConnEvent.ESTABLISHED)
        # The same ACK may also cover data or a FIN sent from SYN_RCVD.
        if not self._process_ack(seg, seq, flags, payload, now):
            return
        state = self.state
        if state is State.CLOSED:
            return

        # Seventh: segment text.
        if state in RECEIVING and (payload or flags & FIN) and seq != self.rcv_nxt:
            # Beyond a hole: keep it for later and send the immediate duplicate ACK of
            # RFC 5681 4.2, which also tells a SACK sender what arrived.
            window = (self.rcv_adv - self.rcv_nxt) & MASK
            self._ooo.add(seq, bytes(payload), self.rcv_nxt, window)
            if flags & FIN:
                fin_at = (seq + len(payload)) & MASK
                if ((fin_at - self.rcv_nxt) & MASK) < window:
                    self._ooo.fin_seq = fin_at
            self._emit(ACK, self.snd_max)
            self._settle_fin_wait_1(now)
            return
        if payload:
            if state in RECEIVING:
                fit = (self.rcv_adv - self.rcv_nxt) & MASK
                if len(payload) > fit:  # beyond the window: keep what fits, and no FIN
                    payload = payload[:fit]
                    flags &= ~FIN
                self._deliver(payload)
                if self._ooo:
                    # The segment filled (part of) a hole: ACK at once (RFC 5681 4.2).
                    self._deliver(self._ooo.pop_ready(self.rcv_nxt))
                    self._emit(ACK, self.snd_max)
                    if self._ooo.fin_seq == self.rcv_nxt:
                        flags |= FIN  # a FIN that arrived early is now in order
                        seq = self.rcv_nxt - len(payload)
            seq = (seq + len(payload)) & MASK

        # Eighth: FIN, once every byte before it has arrived.
        if flags & FIN and seq == self.rcv_nxt:
            self._ooo.fin_seq = None
            self.rcv_nxt = (self.rcv_nxt + 1) & MASK
            self._emit(ACK, self.snd_max)
            self._on_fin(now)
        self._settle_fin_wait_1(now)

    def _deliver(self, data: Bytes) -> None:
        """In-order bytes at RCV.NXT: to the application (unless it stopped reading)."""
        n = len(data)
        if not n:
            return
        if not self.discard_input:
            self.receive_buffer += data
            if not self._data_event_pending:
                self._data_event_pending = True
                self.events.append(ConnEvent.DATA)
        self.rcv_nxt = (self.rcv_nxt + n) & MASK
        self.bytes_received += n
        self._ack_pending = True
        # Delayed ACK (RFC 5681 4.2): at least every second full-sized segment.
        self._unacked_bytes += n
        if self._unacked_bytes >= 2 * self.config.mss:
            self._ack_now = True

    def _settle_fin_wait_1(self, now: float) -> None:
        """FIN_WAIT_1 whose FIN is acked moves on to FIN_WAIT_2, unless the same segment's FIN
        already took it straight to TIME_WAIT (_process_ack leaves that choice to here)."""
        if self.state is State.FIN_WAIT_1 and self._fin_acked():
            self._transition(Trigger.RCV_ACK_OF_FIN, now)

    def _receive_in_syn_sent(self, seg: Segment, now: float) -> None:
        """3.10.7.3: SYN-SENT STATE."""
        flags = seg.flags
        ack_ok = False
        if flags & ACK:
            if ((seg.ack - self.iss - 1) & MASK) >= ((self.snd_max - self.iss) & MASK):
                # SEG.ACK =< ISS or SEG.ACK > SND.NXT: not for this connection attempt.
                if not flags & RST:
                    self._emit(RST, seg.ack)
                return
            ack_ok = True
        if flags & RST:
            if ack_ok:  # RFC 5961 3.2: a RST in SYN-SENT counts only if it ACKs our SYN
                self.error = "connection refused"
                self.events.append(ConnEvent.REFUSED)
                self._transition(Trigger.RCV_RST, now)
            return
        if not flags & SYN:
            return
        self._take_syn(seg)
        self.snd_wnd = seg.window
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        if ack_ok:
            self.snd_una = seg.ack
            self._syn_acked = True
            self._ack_rtt(seg.ack, now)
            self._rto_at = None
            self.retries = 0
            self._transition(Trigger.RCV_SYN_ACK, now)
            self.events.append(ConnEvent.ESTABLISHED)
            self._ack_pending = self._ack_now = True
        else:
            # Simultaneous open (3.10.7.3, figure 8): answer with our SYN again plus an ACK.
            self._transition(Trigger.RCV_SYN, now)
            self._rto_at = None
            self._send_syn(now)

    def _take_syn(self, seg: Segment) -> None:
        self.irs = seg.seq
        self.rcv_nxt = self.rcv_adv = (seg.seq + 1) & MASK
        opts = seg.options
        # Linux's tcp_min_snd_mss floor of 48 keeps a hostile MSS of 1 from costing a
        # segment per byte (CVE-2019-11479).
        self.snd_mss = max(min(opts.mss if opts.mss else tcpseg.DEFAULT_MSS, self.config.mss),
                           MIN_SND_MSS)
        self._seg_max = (_MAX_IP_PAYLOAD // self.snd_mss * self.snd_mss if self._offload
                         else self.snd_mss)
        self.cc = congestion.create(self.config.congestion, self.snd_mss)
        self.sack_ok = opts.sack_permitted and self.config.sack
        if opts.wscale is not None and self.config.window_scaling:
            self.snd_wscale = opts.wscale
            self.snd_wscale_offered = True
        else:  # scaling needs both sides' options (RFC 7323 2.2)
            self.snd_wscale = 0
            self.rcv_wscale = 0
            self._rcv_capacity = min(self._rcv_capacity, _MAX_WINDOW_FIELD)

    def _process_ack(self, seg: Segment, seq: int, flags: int, payload: memoryview,
                     now: float) -> bool:
        """Fifth step for the synchronized states; False when the segment is to be dropped."""
        if self.sack_ok and seg.options.sack:
            self.scoreboard.add(seg.options.sack, self.snd_una, self.snd_max)
        una = self.snd_una
        ack = seg.ack
        acked = (ack - una) & MASK
        in_flight = (self.snd_max - una) & MASK
        if acked >= HALF:
            if (una - ack) & MASK > max(self.max_snd_wnd, 1):
                self._emit(ACK, self.snd_max)  # RFC 5961 5.2: too old, challenge
                return False
            acked = -1  # an old duplicate: ignore its ACK field
        elif acked > in_flight:
            self._emit(ACK, self.snd_max)  # acknowledges something never sent (3.10.7.4)
            return False
        if acked >= 0:
            # Window update rule (3.10.7.4): only from a segment newer than the last one used.
            wl1 = (seq - self.snd_wl1) & MASK
            if (0 < wl1 < HALF) or (wl1 == 0 and ((ack - self.snd_wl2) & MASK) < HALF):
                window = seg.window << self.snd_wscale
                if acked == 0 and window == self.snd_wnd and not payload and in_flight \
                        and not flags & FIN:
                    self._on_duplicate_ack(now)
                self.snd_wnd = window
                if window > self.max_snd_wnd:
                    self.max_snd_wnd = window
                self.snd_wl1, self.snd_wl2 = seq, ack
                if window:
                    self._persist_at = None
        if acked > 0:
            self._on_new_ack(ack, acked, now)
        state = self.state
        # FIN_WAIT_1 waits for the FIN step (see _settle_fin_wait_1).
        if (state is State.CLOSING or state is State.LAST_ACK) and self._fin_acked():
            self._transition(Trigger.RCV_ACK_OF_FIN, now)
        return True

    def _on_new_ack(self, ack: int, acked: int, now: float) -> None:
        buf = self.send_buffer
        if self._syn_acked:
            data_acked = min(acked, len(buf))
        else:  # our SYN, acked only after a close in SYN_RCVD took us to FIN_WAIT_1
            self._syn_acked = True
            data_acked = min(acked - 1, len(buf))
        buf.consume(data_acked)
        self.bytes_sent += data_acked
        self.snd_una = ack
        if ((self.snd_nxt - ack) & MASK) >= HALF:
            self.snd_nxt = ack
        if self.scoreboard:
            self.scoreboard.advance(ack)
        self._ack_rtt(ack, now)
        action = self.recovery.on_new_ack(self.cc, ack, acked, self.snd_max, now, self.rtt.srtt,
                                          sack=self.sack_ok)
        if action is Action.RETRANSMIT:
            self._retransmit_first(now)  # a partial ACK: the next hole of the same window
        elif self.recovery.active and self.sack_ok:
            self._sack_recover(now)
        if not self.cwnd_trace or now - self.cwnd_trace[-1][0] >= CWND_TRACE_INTERVAL:
            self._trace_cwnd(now)
        self.retries = 0
        if ack == self.snd_max:
            self._rto_at = None
        else:  # progress: the timer and the user timeout restart (RFC 6298 5.3)
            self._unacked_since = now
            self._rto_at = self._rto_deadline(now)
        if self._want_writable and buf.space >= buf.capacity // 2:
            self._want_writable = False
            self.events.append(ConnEvent.WRITABLE)

    def _trace_cwnd(self, now: float) -> None:
        self.cwnd_trace.append((now, self.cc.cwnd, self.cc.ssthresh))

    def _ack_rtt(self, ack: int, now: float) -> None:
        timed = self._timed_seq
        if timed is not None and ((ack - timed) & MASK) < HALF:
            self.rtt.sample(now - self._timed_at)
            self._timed_seq = None

    def _on_duplicate_ack(self, now: float) -> None:
        before = (now, self.cc.cwnd, self.cc.ssthresh)
        action = self.recovery.on_duplicate_ack(self.cc, self.snd_una, self.snd_max, now,
                                                sack=self.sack_ok)
        if action is Action.RETRANSMIT:  # fast retransmit (RFC 5681 3.2)
            self.cwnd_trace.append(before)  # the window the loss cut, then the cut
            self._trace_cwnd(now)
            # RFC 6675 5 (4.2): the first hole goes at once, whatever the pipe says; SACK
            # recovery then fills the others as the window allows.
            self._retransmit_first(now)
            self.scoreboard.high_rxt = (self.snd_una + self.snd_mss) & MASK
            if self.sack_ok:
                self._sack_recover(now)
        elif self.recovery.active and self.sack_ok:
            self._sack_recover(now)

    def _sack_recover(self, now: float) -> None:
        """SACK-based loss recovery (RFC 6675 section 5): estimate the data in flight
        (SetPipe), then while cwnd has room resend holes deemed lost (IsLost: more than
        DupThresh - 1 segments SACKed above them), each once, then send new data (NextSeg
        rules 1 and 2; no rescue retransmission)."""
        sb = self.scoreboard
        una = self.snd_una
        mss = self.snd_mss
        buf = self.send_buffer
        if not sb:
            if ((sb.high_rxt - una) & MASK) == 0 or ((sb.high_rxt - una) & MASK) >= HALF:
                # No SACK blocks to go by: resend the segment at SND.UNA once, NewReno style.
                self._retransmit_first(now)
                sb.high_rxt = (una + min(mss, len(buf))) & MASK
            return
        high_rxt = sb.high_rxt if ((sb.high_rxt - una) & MASK) < HALF else una
        lost_after = (DUPACK_THRESHOLD - 1) * mss
        pipe = 0
        resend: list[tuple[int, int]] = []
        for start, end, sacked_above in sb.holes(una, self.snd_max):
            lost = sacked_above > lost_after
            if not lost:
                pipe += (end - start) & MASK
            if ((high_rxt - start) & MASK) < HALF:  # some of it was resent already
                pipe += min((high_rxt - start) & MASK, (end - start) & MASK)
            if lost and ((end - high_rxt) & MASK) < HALF and end != high_rxt:
                first = start if ((start - high_rxt) & MASK) < HALF else high_rxt
                resend.append((first, end))
        cwnd = self.cc.cwnd
        sent_any = False
        for seq, end in resend:  # NextSeg rule 1: lost holes, lowest first
            while cwnd - pipe >= mss and seq != end:
                offset = (seq - una) & MASK
                if offset >= len(buf):
                    break  # only the FIN is left there
                n = min(mss, (end - seq) & MASK, len(buf) - offset)
                self._emit(ACK, seq, buf.peek(offset, n))
                self._count_retransmit()
                seq = sb.high_rxt = (seq + n) & MASK
                pipe += n
                sent_any = True
        # Rule 2: new data, as far as the peer's window allows.
        while cwnd - pipe >= mss and self.snd_nxt == self.snd_max:
            sent = (self.snd_nxt - una) & MASK
            n = min(mss, len(buf) - sent, self.snd_wnd - sent)
            if n <= 0 or (n < mss and n < len(buf) - sent):
                break
            self._emit(ACK, self.snd_nxt, buf.peek(sent, n))
            self.snd_nxt = self.snd_max = (self.snd_nxt + n) & MASK
            pipe += n
        if sent_any:
            self._timed_seq = None  # Karn

    def _retransmit_first(self, now: float) -> None:
        buf = self.send_buffer
        n = min(self.snd_mss, len(buf))
        if n:
            self._emit(ACK, self.snd_una, buf.peek(0, n))
        elif self._fin_queued:
            self._emit(FIN | ACK, self.snd_una)
        self._count_retransmit()
        self._timed_seq = None  # Karn: no RTT sample from a retransmitted segment

    def _fin_acked(self) -> bool:
        return self._fin_seq is not None and self.snd_una == (self._fin_seq + 1) & MASK

    def _on_fin(self, now: float) -> None:
        self.events.append(ConnEvent.EOF)
        state = self.state
        if state is State.FIN_WAIT_1 and self._fin_acked():
            self._transition(Trigger.RCV_FIN_ACK_OF_FIN, now)
        elif state in (State.SYN_RCVD, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2):
            self._transition(Trigger.RCV_FIN, now)

    def _on_reset(self, now: float) -> None:
        if self.state is State.SYN_RCVD:
            if not self.passive:  # 3.10.7.4: an active open that crossed SYNs is refused
                self.error = "connection refused"
                self.events.append(ConnEvent.REFUSED)
            # (a passive open's listener simply forgets the half-open connection)
        elif self.state in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                            State.CLOSE_WAIT):
            self.error = "connection reset by peer"
            self.events.append(ConnEvent.RESET)
        self._transition(Trigger.RCV_RST, now)

    def _start_time_wait(self, now: float) -> None:
        self._time_wait_at = now + 2 * self.config.msl
        self._rto_at = None
        self._persist_at = None

    # ------------------------------------------------------------------ timers

    def on_timer(self, now: float) -> None:
        if self._time_wait_at is not None and now >= self._time_wait_at:
            self._transition(Trigger.TIMEOUT_2MSL, now)
        if self._rto_at is not None and now >= self._rto_at:
            self._on_retransmit_timeout(now)
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_probe(now)
        if self._delack_at is not None and now >= self._delack_at:
            self._emit(ACK, self.snd_max)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._on_keepalive_timer(now)
        if self._fin_wait_2_at is not None and now >= self._fin_wait_2_at:
            self._fin_wait_2_at = None
            if self.state is State.FIN_WAIT_2:
                self._give_up("no FIN from the peer in FIN_WAIT_2", now)
        self._update_deadline()

    def _on_keepalive_timer(self, now: float) -> None:
        """RFC 1122 4.2.3.6: after an idle period, probe with an old sequence number (which
        draws an ACK); give up after `keepalive_count` unanswered probes."""
        config = self.config
        if self.state not in (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_2):
            self._keepalive_at = None
            return
        if self._keepalive_probes >= config.keepalive_count:
            self._give_up("connection timed out (no answer to keepalive probes)", now)
            return
        self._keepalive_probes += 1
        self._emit(ACK, (self.snd_una - 1) & MASK)
        self._keepalive_at = now + config.keepalive_interval

    def _heard_from_peer(self, now: float) -> None:
        if self.config.keepalive:
            self._keepalive_probes = 0
            self._keepalive_at = now + self.config.keepalive_idle

    def _give_up(self, error: str, now: float) -> None:
        self.error = error
        self.events.append(ConnEvent.TIMEOUT)
        self._transition(Trigger.TIMEOUT_GIVE_UP, now)

    def _count_retransmit(self) -> None:
        self.retransmits += 1
        self.counters["retrans_segs"] += 1

    def _persist_probe(self, now: float) -> None:
        self._persist_interval = min(self._persist_interval * 2, self.config.persist_max)
        self._persist_at = now + self._persist_interval
        window = self.snd_wnd
        if window > 0:
            # The window is open but too small to beat SWS avoidance: the override timeout of
            # RFC 9293 3.8.6.2.1 sends what fits.
            n = min(window, len(self.send_buffer) - ((self.snd_nxt - self.snd_una) & MASK))
            if n > 0:
                seq = self.snd_nxt
                self._emit(ACK | PSH, seq, self.send_buffer.peek((seq - self.snd_una) & MASK, n))
                self.snd_nxt = (seq + n) & MASK
                if 0 < ((self.snd_nxt - self.snd_max) & MASK) < HALF:
                    self.snd_max = self.snd_nxt
                self._arm_rto(now)
                self._persist_at = None
                return
        # A zero-window probe: an old sequence number draws an ACK carrying the window.
        self._emit(ACK, (self.snd_una - 1) & MASK)
        self.persist_probes += 1
        self.counters["persist_probes"] += 1

    def _on_retransmit_timeout(self, now: float) -> None:
        self.retries += 1
        state = self.state
        limit = (self.config.syn_retries if state is State.SYN_SENT else
                 self.config.synack_retries if state is State.SYN_RCVD else
                 self.config.max_retries)
        if self.retries > limit:
            self._give_up("connection timed out", now)
            return
        user_timeout = self.config.user_timeout
        if user_timeout is not None and now - self._unacked_since >= user_timeout:
            self._give_up(f"connection timed out (data unacknowledged for {user_timeout:g} s)",
                          now)
            return
        self.rtt.backoff()
        self._timed_seq = None
        self._rto_at = self._rto_deadline(now)
        if state is State.SYN_SENT or state is State.SYN_RCVD:
            self._count_retransmit()
            self._send_syn(now)
            return
        self._trace_cwnd(now)
        self.cc.on_timeout((self.snd_max - self.snd_una) & MASK, now)
        self.recovery.on_timeout(self.snd_max)
        self.scoreboard.clear()  # RFC 2018 8: after a timeout, SACK information is suspect
        self._trace_cwnd(now)
        self.snd_nxt = self.snd_una  # go back N: resend from the oldest unacknowledged byte
        self._send_data(now)
        if self.snd_nxt == self.snd_una and self.snd_max != self.snd_una:
            # The window is closed (or too small to send into): resend the oldest segment
            # anyway. The peer drops what does not fit, but its ACK tells the current window;
            # without this a lost window update would leave nothing to probe it.
            self._retransmit_first(now)
            resent = min(self.snd_mss, len(self.send_buffer))
            self.snd_nxt = (self.snd_una + (resent or 1)) & MASK

    def _arm_rto(self, now: float) -> None:
        """Start the retransmission timer unless it runs (RFC 6298 5.1)."""
        if self._rto_at is None:
            self._unacked_since = now
            self._rto_at = self._rto_deadline(now)

    def _rto_deadline(self, now: float) -> float:
        """When the retransmission timer fires: after the RTO, or at the user timeout."""
        deadline = now + self.rtt.rto
        if self.config.user_timeout is not None:
            deadline = min(deadline, max(self._unacked_since + self.config.user_timeout, now))
        return deadline

    def _update_deadline(self) -> None:
        d = self._rto_at
        for t in (self._persist_at, self._time_wait_at, self._delack_at, self._keepalive_at,
                  self._fin_wait_2_at):
            if t is not None and (d is None or t < d):
                d = t
        self.deadline = d

    # ------------------------------------------------------------------ states

    def _transition(self, trigger: Trigger, now: float) -> None:
        old = self.state
        new = next_state(old, trigger)
        self.state = new
        if self.on_transition is not None:
            self.on_transition(self, old, new)
        if new is State.ESTABLISHED:
            self._heard_from_peer(now)
        elif new is State.FIN_WAIT_2 and self.discard_input:
            # Nobody will read or close any more: do not wait forever for the peer's FIN.
            self._fin_wait_2_at = now + self.config.fin_wait_2_timeout
        elif new is State.TIME_WAIT:
            self._start_time_wait(now)
        elif new is State.CLOSED:
            self._rto_at = self._persist_at = self._time_wait_at = None
            self._delack_at = self._keepalive_at = self._fin_wait_2_at = None
            self.deadline = None
            self._ack_pending = False
            self.events.append(ConnEvent.CLOSED)
