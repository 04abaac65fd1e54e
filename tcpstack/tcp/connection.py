"""One TCP connection, sans-I/O (RFC 9293 section 3.10, "Event Processing").

A Connection never reads a clock or touches a file descriptor. It is fed arriving segments
(`receive`), application calls (`send`, `read`, `close`, `abort`) and timer expiries
(`on_timer`), each with the current time, and it answers by appending finished IPv4 packets
to `output` and ConnEvents to `events`. Its owner calls `flush` after feeding it, which sends
whatever data the windows allow and any pending ACK, and reads `deadline` to know when to
call `on_timer` next. All state changes go through the table in state.py.

The variables live in tcb.py (TransmissionControlBlock) and the send side in output.py
(SegmentOutput); this file holds the application calls, segment arrival, timers and state
changes. Sequence comparisons are written inline as `(a - b) & MASK` on the hot paths; seq.py
holds their definitions.
"""

from __future__ import annotations

from tcpstack.net.checksum import Bytes
from tcpstack.tcp import congestion
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.output import SegmentOutput
from tcpstack.tcp.recovery import Action
from tcpstack.tcp.sack import is_dsack
from tcpstack.tcp.segment import ACK, FIN, RST, SYN, Segment
from tcpstack.tcp.seq import HALF, MASK
from tcpstack.tcp.state import RECEIVING, State, Trigger, next_state
from tcpstack.tcp.tcb import (
    CWND_TRACE_INTERVAL,
    MAX_IP_PAYLOAD,
    MAX_WINDOW_FIELD,
    MIN_SND_MSS,
)


class ConnectionStateError(Exception):
    """An application call the connection's state does not allow."""


class Connection(SegmentOutput):
    """One TCP connection: see the module docstring."""

    # ------------------------------------------------------------------ app calls

    def connect(self, now: float) -> None:
        """Active open: send a SYN."""
        self.on_change(self)
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
        self.on_change(self)
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
        self.on_change(self)
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
        self.on_change(self)
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
        self.on_change(self)
        if self.state in (State.CLOSED, State.TIME_WAIT):
            return
        if self.state in (State.SYN_RCVD, State.ESTABLISHED, State.FIN_WAIT_1,
                          State.FIN_WAIT_2, State.CLOSE_WAIT):
            self._emit(RST, self.snd_max)
        self.error = "connection aborted"
        self._transition(Trigger.APP_ABORT, now)

    # ------------------------------------------------------------------ output

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
            self._transition(Trigger.RCV_ACK_OF_SYN, now)
            self.events.append(ConnEvent.ESTABLISHED)
        # The same ACK may also cover data or a FIN sent from SYN_RCVD; it also sets the send
        # window (SND.WL1 is still the IRS, so the update rule takes it).
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
                if self._ooo:
                    # Where this segment overlaps data queued beyond the hole, the queued
                    # bytes arrived first and are the ones kept, as between two out-of-order
                    # segments (docs/DECISIONS.md): the segment joins the queue under them.
                    self._ooo.add(seq, bytes(payload), seq, fit)
                else:
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
        self._seg_max = (MAX_IP_PAYLOAD // self.snd_mss * self.snd_mss if self._offload
                         else self.snd_mss)
        self.cc = congestion.create(self.config.congestion, self.snd_mss)
        self.sack_ok = opts.sack_permitted and self.config.sack
        if opts.wscale is not None and self.config.window_scaling:
            self.snd_wscale = opts.wscale
            self.snd_wscale_offered = True
        else:  # scaling needs both sides' options (RFC 7323 2.2)
            self.snd_wscale = 0
            self.rcv_wscale = 0
            self._rcv_capacity = min(self._rcv_capacity, MAX_WINDOW_FIELD)

    def _process_ack(self, seg: Segment, seq: int, flags: int, payload: memoryview,
                     now: float) -> bool:
        """Fifth step for the synchronized states; False when the segment is to be dropped."""
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
        sack = self.sack_ok and seg.options.sack
        # RFC 6675 2: with SACK, an ACK that SACKs octets not SACKed before is a duplicate,
        # whatever its window, data or cumulative ACK; a peer that grows its window on every
        # ACK (Linux does) would otherwise never send one.
        duplicate = False
        if sack:
            base = una
            if acked > 0:  # blocks at or below the new cumulative ACK are not news (D-SACK)
                base = ack
                self.scoreboard.advance(ack)
            duplicate = self.scoreboard.add(sack, base, self.snd_max) > 0 and acked >= 0
            if self.tlp.outstanding and is_dsack(sack, ack):
                self.tlp.dsack = True
        if acked >= 0:
            # Window update rule (3.10.7.4): only from a segment newer than the last one used.
            wl1 = (seq - self.snd_wl1) & MASK
            if (0 < wl1 < HALF) or (wl1 == 0 and ((ack - self.snd_wl2) & MASK) < HALF):
                window = seg.window << self.snd_wscale
                if (acked == 0 and window == self.snd_wnd and not payload and in_flight
                        and not flags & FIN and not sack):
                    # RFC 5681 2's duplicate ACK: without SACK (or from a SACK peer that
                    # sends no blocks) only an unchanged window tells a dupack from an update.
                    duplicate = True
                self.snd_wnd = window
                if window > self.max_snd_wnd:
                    self.max_snd_wnd = window
                self.snd_wl1, self.snd_wl2 = seq, ack
                if window:
                    self._persist_at = None
        if acked > 0:
            self._on_new_ack(ack, acked, now)
        if duplicate:
            self._on_duplicate_ack(now)
        elif acked > 0 and self.recovery.active and self.recovery.sack:
            self._sack_recover(now)
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
        tlp = self.tlp
        if tlp.covered_by(ack):
            if tlp.repaired_a_loss():  # RFC 8985 7.4: a loss, repaired by the probe
                self.counters["tlp_recoveries"] += 1
                self.cc.on_congestion(self.cc.cwnd, now)  # before this ACK grows it
                self._trace_cwnd(now)
            tlp.cancel()
        action = self.recovery.on_new_ack(self.cc, ack, acked, self.snd_max, now, self.rtt.srtt)
        if action is Action.RETRANSMIT:
            self._retransmit_first(now)  # a partial ACK: the next hole of the same window
        if not self.cwnd_trace or now - self.cwnd_trace[-1][0] >= CWND_TRACE_INTERVAL:
            self._trace_cwnd(now)
        self.retries = 0
        if ack == self.snd_max:
            self._rto_at = None
            tlp.at = None
        else:  # progress: the timer and the user timeout restart (RFC 6298 5.3)
            self._unacked_since = now
            self._rto_at = self._rto_deadline(now)
            tlp.restart = True
        if self._want_writable and buf.space >= buf.capacity // 2:
            self._want_writable = False
            self.events.append(ConnEvent.WRITABLE)

    def _ack_rtt(self, ack: int, now: float) -> None:
        timed = self._timed_seq
        if timed is not None and ((ack - timed) & MASK) < HALF:
            self.rtt.sample(now - self._timed_at)
            self._timed_seq = None

    def _on_duplicate_ack(self, now: float) -> None:
        before = (now, self.cc.cwnd, self.cc.ssthresh)
        una = self.snd_una
        sb = self.scoreboard
        # A peer that agreed to SACK but sends no blocks gets NewReno's recovery.
        by_sack = self.sack_ok and bool(sb)
        tlp = self.tlp
        action = self.recovery.on_duplicate_ack(
            self.cc, una, self.snd_max, now, sack=by_sack,
            lost=by_sack and (tlp.sacked(sb, una) or sb.is_lost(una, una, self.snd_mss)))
        if action is Action.RETRANSMIT:  # fast retransmit (RFC 5681 3.2, RFC 6675 5 step 4)
            tlp.cancel()
            self.counters["sack_recoveries" if by_sack else "reno_recoveries"] += 1
            self.cwnd_trace.append(before)  # the window the loss cut, then the cut
            self._trace_cwnd(now)
            if not by_sack:
                self._retransmit_first(now)
                return
            # RFC 6675 5 (4.3): the first hole goes at once, whatever the pipe says, unless
            # the last recovery resent it and that resend may still arrive.
            self._forget_lost_resends()
            if not sb.resent_within(una, (una + 1) & MASK, una):
                sb.note_resent(una, self._retransmit_first(now), self.snd_max)
            self._sack_recover(now)
        elif self.recovery.active and self.recovery.sack:
            self._sack_recover(now)

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
        self.tlp.cancel()

    # ------------------------------------------------------------------ timers

    def on_timer(self, now: float) -> None:
        if self._time_wait_at is not None and now >= self._time_wait_at:
            self._transition(Trigger.TIMEOUT_2MSL, now)
        if self._rto_at is not None and now >= self._rto_at:
            self._on_retransmit_timeout(now)
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_probe(now)
        if self.tlp.at is not None and now >= self.tlp.at:
            self._send_probe(now)
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

    def _on_retransmit_timeout(self, now: float) -> None:
        self.retries += 1
        self.counters["rto_timeouts"] += 1
        self.tlp.cancel()
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
            self._retransmit_first(now, fast=False)
            resent = min(self.snd_mss, len(self.send_buffer))
            self.snd_nxt = (self.snd_una + (resent or 1)) & MASK

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
            self.tlp.cancel()
            self.deadline = None
            self._ack_pending = False
            self.events.append(ConnEvent.CLOSED)

