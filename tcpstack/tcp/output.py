"""Sending segments (RFC 9293 3.8 and 3.10 SEND, RFC 5681, RFC 6675): what the windows
allow, ACKs and the window we advertise, retransmissions, SACK loss recovery's sending and the
probes (tail loss, zero window). A part of the connection (`conn.tx`): it owns the segments
built and not yet taken by the stack, and works on the parts it was given, each the owner of
its own state: the send sequence (`snd`), the receive side whose window and ACK every segment
carries (`rcv`), loss recovery (`loss`), congestion control (`cc`), RTT (`rtt`), the timers.
It holds the connection's timestamps (`ts`, timestamps.py), which stamp every segment once
negotiated and whose arrival rules the connection applies as `conn.tx.ts`.
The connection tells it the state where that matters (which SYN, whether data may go).
"""

from collections import Counter

from tcpstack.net.checksum import Bytes
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.challenge import ChallengeAckLimit
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.congestion import CongestionControl
from tcpstack.tcp.loss_recovery import LossRecovery
from tcpstack.tcp.rack import IDLE_RACK
from tcpstack.tcp.receiver import Receiver
from tcpstack.tcp.rtt import RttEstimator
from tcpstack.tcp.segment import ACK, FIN, PSH, RST, SYN, OutSegment
from tcpstack.tcp.sender import Sender
from tcpstack.tcp.seq import HALF, MASK
from tcpstack.tcp.state import TRANSMITTING, State
from tcpstack.tcp.timers import ConnectionCounts, ConnectionTimers
from tcpstack.tcp.timestamps import Timestamps

NO_WINDOW = -1   # SegmentOutput.window outside a flush: each segment asks rcv.advertise()
WINDOW_DUE = -2  # ... within one, until its first segment has asked
_CLOSED = State.CLOSED  # a module constant: a member looked up on its class costs a getattr


class SegmentOutput:
    """Builds and sends one connection's segments (see the module docstring)."""

    __slots__ = ("cc", "challenges", "config", "counters", "counts", "local_port", "loss",
                 "rcv", "remote_port", "rtt", "segments", "snd", "timers", "ts", "window")

    def __init__(self, config: TcpConfig, local_port: int, remote_port: int, *, snd: Sender,
                 rcv: Receiver, loss: LossRecovery, cc: CongestionControl, rtt: RttEstimator,
                 timers: ConnectionTimers, counts: ConnectionCounts,
                 counters: Counter[str], ts: Timestamps,
                 challenges: ChallengeAckLimit | None = None) -> None:
        self.config = config
        # The stack's one budget of challenge ACKs; a lone connection has its own.
        self.challenges = challenges or ChallengeAckLimit(config.challenge_ack_limit)
        self.local_port = local_port
        self.remote_port = remote_port
        self.snd = snd
        self.rcv = rcv
        self.loss = loss
        self.cc = cc
        self.rtt = rtt
        self.timers = timers
        self.counts = counts
        self.counters = counters
        self.ts = ts
        # For the stack to frame and send: a list only while it holds segments, else the
        # empty tuple, which the stack puts back when it takes them (an empty list is 56
        # bytes, kept by every idle connection).
        self.segments: list[OutSegment] | tuple[()] = ()
        # The window field of this flush's segments, once the first has asked for it
        # (NO_WINDOW outside a flush and before); see flush.
        self.window = NO_WINDOW

    def flush(self, now: float, state: State) -> None:
        """Send what the windows allow, then any ACK that cannot wait.

        Nothing on the receive side changes while a flush sends (RCV.NXT, the unread bytes,
        the buffer's size), and `advertise` gives the same field when asked again, so it is
        asked once per flush, by the first segment that goes, not once per segment."""
        self.window = WINDOW_DUE
        try:
            if state in TRANSMITTING:
                self.send_data(now)
                if self.loss.probe.restart:
                    self.schedule_probe(now)
            rcv = self.rcv
            if rcv.ack_pending and state is not _CLOSED:
                if rcv.ack_now or self.config.delayed_ack <= 0:
                    self.ack()
                elif self.timers.delack is None:
                    self.timers.delack = now + self.config.delayed_ack
        finally:
            self.window = NO_WINDOW

    def challenge_ack(self, now: float) -> None:
        """RFC 5961's answer to a RST, a SYN or an ACK it will not act on, within the stack's
        rate limit (section 7); counted either way."""
        if self.challenges.allow(now):
            self.counters["challenge_acks"] += 1
            self.ack()
        else:
            self.counters["challenge_acks_limited"] += 1

    def ack(self) -> None:
        """A bare ACK at SND.MAX: for a duplicate, a challenge, a window update, a FIN."""
        self.emit(ACK, self.snd.max)

    def emit(self, flags: int, seq: int, payload: Bytes = b"", options: bytes = b"") -> None:
        """Build one segment; `options` only for a SYN (syn_options), the others get theirs
        here: timestamps once negotiated (on a RST too, RFC 7323 3.2: SHOULD), SACK blocks."""
        if flags & RST:
            window = 0
            self.counters["rst_out"] += 1  # the stack counts the RSTs it answers strays with
            if self.ts.ok:
                options = self.ts.option(bool(flags & ACK))
        elif flags & SYN:
            window = self.rcv.syn_window()
        else:
            window = self.window
            if window < 0:
                window = self.rcv.advertise()
                if self.window == WINDOW_DUE:
                    self.window = window  # the rest of this flush's segments carry it too
            ts = self.ts.ok
            if ts:
                options = self.ts.option(True)
            if not payload and self.loss.sack and self.rcv.ooo:
                # Every ACK sent while data waits beyond a hole reports it (RFC 2018 4); beside
                # the timestamps three blocks fit in the 40 bytes of option space.
                options += tcpseg.encode_sack(self.rcv.ooo.sack_blocks(3 if ts else 4))
        segment = (seq, self.rcv.nxt if flags & ACK else 0, flags, window, options, payload,
                   self.snd.mss)
        segments = self.segments
        if isinstance(segments, list):
            segments.append(segment)
        else:
            self.segments = [segment]
        self.counts.segments_out += 1
        if flags & ACK:
            rcv = self.rcv
            self.ts.last_ack_sent = rcv.nxt
            if rcv.ack_pending:  # else nothing is owed (Receiver.acked clears all three)
                rcv.acked()
            self.timers.delack = None

    def syn_options(self, synack: bool) -> bytes:
        """A SYN offers MSS, SACK, timestamps and window scaling; a SYN-ACK answers only what
        was offered (RFC 7323 3.2 for timestamps)."""
        config = self.config
        return tcpseg.encode_options(
            mss=config.mss,
            sack_permitted=config.sack and (not synack or self.loss.sack),
            wscale=self.rcv.wscale if (config.window_scaling and
                                       (not synack or self.snd.wscale_offered)) else None,
            timestamps=self.ts.syn_option(synack) if (config.timestamps and
                                                      (not synack or self.ts.ok)) else None)

    def send_syn(self, now: float, *, synack: bool) -> None:
        """Our SYN, or SYN-ACK (from SYN_RCVD), first or again: only the first is timed."""
        self.emit(SYN | ACK if synack else SYN, self.snd.iss, options=self.syn_options(synack))
        self.snd.nxt = self.snd.max = (self.snd.iss + 1) & MASK
        self.arm_rto(now)
        if self.timers.retries == 0:
            self.rtt.time(self.snd.nxt, now)

    def send_data(self, now: float) -> None:
        if not self.snd.syn_acked:
            return  # data and FIN sequence numbers start after our SYN is acknowledged
        buf = self.snd.buffer
        una, buffered = self.snd.una, len(buf)
        if buffered == ((self.snd.nxt - una) & MASK) and not self.snd.fin_queued:
            self.timers.persist = None  # all sent (a pass that only received): nothing held
            return
        cwnd, dupacks = self.cc.cwnd, self.loss.episode.dupacks
        limited_from = -1  # where limited transmit's bytes begin, as an offset from SND.UNA
        if dupacks and not self.loss.episode.active:
            # Limited transmit (RFC 3042): each of the first two duplicate ACKs lets one new
            # segment out, so a small window still collects the three that trigger recovery.
            limited_from = min(self.snd.wnd, cwnd)
            cwnd += min(dupacks, 2) * self.snd.mss
        window = min(self.snd.wnd, cwnd)
        mss, seg_max = self.snd.mss, self.snd.seg_max
        while True:
            sent = (self.snd.nxt - una) & MASK
            unsent = buffered - sent
            if unsent <= 0:
                break
            room = window - sent
            if room <= 0:
                break
            n = min(seg_max, unsent, room)
            if mss < n < unsent and n % mss:
                # A segment for the link to cut ends on a whole MSS where the window cut it
                # (as Linux's tcp_mss_split_point does): the short rest is the next segment,
                # which the rules below judge as they would without offload.
                n -= n % mss
            elif n < mss and self.snd.nxt == self.snd.max:
                # Sender-side SWS avoidance (RFC 9293 3.8.6.2.1): a short segment of new data
                # goes only if it empties the queue or is at least half the largest window
                # offered; and Nagle (3.7.4): not while earlier data is unacknowledged.
                # Retransmissions are exempt: that data was already judged worth sending.
                if n < unsent and n < self.snd.max_wnd // 2:
                    break
                if not self.snd.nodelay and self.snd.nxt != una:
                    break
            if 0 <= limited_from < sent + n and self.snd.nxt == self.snd.max:
                self.loss.episode.limited += sent + n - max(sent, limited_from)
            if n == unsent and self.snd.fin_queued and (self.snd.fin_seq is not None
                                                        or self.snd.nxt == self.snd.max):
                self._send_with_fin(now, n)
                break
            if (n == mss == seg_max and limited_from < 0
                    and self._send_new_run(now, min(unsent - 1, room) // mss)):
                continue
            self.send_at_nxt(now, n, ACK | PSH if n == unsent else ACK)
        if self.snd.fin_queued:
            self._send_fin(now, (una + buffered) & MASK)
        # Persist timer: data waits, held back by a zero window or by SWS avoidance, and
        # nothing is in flight to draw the ACK that would reopen the window.
        if buffered > ((self.snd.nxt - una) & MASK) and self.snd.una == self.snd.max:
            if self.timers.persist is None:
                self.timers.persist_interval = self.rtt.rto
                self.timers.persist = now + self.timers.persist_interval
        else:
            self.timers.persist = None

    def _send_fin(self, now: float, end: int) -> None:
        """Our FIN on a segment of its own, at `end` once all the data before it has gone: the
        first time, or again when a timeout rewound SND.NXT."""
        snd = self.snd
        if snd.nxt == end and (snd.fin_seq is None or snd.fin_seq == end):
            if snd.fin_seq is None:
                snd.fin_seq = end
                self.loss.probe.restart = True  # a FIN lost at the tail is worth a probe too
            else:
                self.count_retransmit()
            snd.max = (end + 1) & MASK  # the FIN is the last thing we ever send
            self.emit(FIN | ACK, end)
            snd.nxt = (end + 1) & MASK
            self.arm_rto(now)

    def _send_with_fin(self, now: float, n: int) -> None:
        """The last of the queued data with our FIN on it: as Linux puts a FIN on the tail
        segment not yet sent, so a reply and the close after it cost one packet (and the
        peer one ACK), not two. Both new, or a resend of the data up to a FIN sent already
        (the FIN goes again with it, as it does on Linux's retransmitted tail)."""
        snd = self.snd
        self.send_at_nxt(now, n, ACK | PSH | FIN)
        if snd.fin_seq is None:
            snd.fin_seq = snd.nxt
            snd.max = (snd.nxt + 1) & MASK  # the FIN is the last thing we ever send
        snd.nxt = (snd.nxt + 1) & MASK

    def send_at_nxt(self, now: float, n: int, flags: int) -> None:
        """Send `n` bytes from SND.NXT: new data, or data a timeout rewound to go again. New
        data is timed for an RTT sample if nothing else is (RFC 6298 3, Karn's rule), a
        resend counted, and the retransmission timer kept running (5.1)."""
        snd = self.snd
        seq = snd.nxt
        self.emit(flags, seq, snd.buffer.peek((seq - snd.una) & MASK, n))
        end = (seq + n) & MASK
        loss = self.loss
        if loss.rack_on:
            rack = loss.rack
            if rack is IDLE_RACK:
                loss.rack_sent(seq, end, now, snd.max)  # makes the connection's own
            else:
                rack.sent(seq, end, now, snd.max)
        if seq == snd.max:
            if self.rtt.timed_seq is None:  # else one is timed already: no call
                self.rtt.time(end, now)
        else:
            self.count_retransmit()
        if 0 < ((end - snd.max) & MASK) < HALF:
            # New data, even when a resend cut the segments differently and this one
            # straddles SND.MAX.
            snd.max = end
            self.loss.probe.restart = True
        snd.nxt = end
        if self.timers.rto is None:  # arm_rto's test: it runs for all but a flight's first
            self.arm_rto(now)

    def _send_new_run(self, now: float, count: int) -> bool:
        """`count` full segments of new data from SND.NXT, as `count` calls of send_at_nxt
        would send them: a bulk transfer's without offload, which send_data asks for where
        none of them is the queue's last (that one carries PSH, perhaps the FIN). The first
        goes by send_at_nxt, with all its accounting; the rest share its header fields but
        seq, and need none of it but SND.MAX and SND.NXT moved on and RACK told (which
        takes new data sent on in one pass as one range either way). False, having sent
        nothing, for fewer than two or where SND.NXT is not SND.MAX (a resend)."""
        snd = self.snd
        if count < 2 or snd.nxt != snd.max:
            return False
        mss = snd.mss
        self.send_at_nxt(now, mss, ACK)
        seq = snd.nxt
        rest = (count - 1) * mss
        data = snd.buffer.peek((seq - snd.una) & MASK, rest)
        segments = self.segments
        assert isinstance(segments, list)  # emit made it one
        _, ack, flags, window, options, _, seg_mss = segments[-1]
        append = segments.append
        for offset in range(0, rest, mss):
            append(((seq + offset) & MASK, ack, flags, window, options,
                    data[offset:offset + mss], seg_mss))
        self.counts.segments_out += count - 1
        end = (seq + rest) & MASK
        if self.loss.rack_on:
            self.loss.rack_sent(seq, end, now, seq)
        snd.max = snd.nxt = end
        return True

    def start_sack_recovery(self, now: float) -> None:
        """Fast retransmit with SACK (RFC 6675 5, step 4.3): the first hole goes at once,
        whatever the pipe says, unless the last recovery resent it and that resend may still
        arrive; then what the pipe allows. With RACK, the first segment it deems lost."""
        if self.loss.rack_on:
            self._send_recovery(now, force_first=True)
            return
        self.forget_lost_resends()
        una = self.snd.una
        scoreboard = self.loss.scoreboard
        if not scoreboard.resent_within(una, (una + 1) & MASK, una):
            scoreboard.note_resent(una, self.retransmit_first(now), self.snd.max)
        self._send_recovery(now)

    def sack_recover(self, now: float) -> None:
        """SACK-based loss recovery (RFC 6675 section 5) on a later ACK of the episode."""
        self.forget_lost_resends()
        self._send_recovery(now)

    def _send_recovery(self, now: float, *, force_first: bool = False) -> None:
        """Resend what LossRecovery.plan deems lost (NextSeg rule 1), then new data as far
        as cwnd and the peer's window allow (rule 2; no rescue retransmission)."""
        snd = self.snd
        buf = snd.buffer
        mss = snd.mss
        loss = self.loss
        resend, room = loss.plan(snd.una, snd.max, mss, self.cc.cwnd, len(buf), force_first)
        for seq, n in resend:
            self.emit(ACK, seq, buf.peek((seq - snd.una) & MASK, n))
            if loss.rack_on:
                loss.rack_sent(seq, (seq + n) & MASK, now, snd.max)
            self.count_retransmit(fast=True)
        if resend:
            self.rtt.forget()  # Karn: the timed segment may be among those resent
        while room >= mss and snd.nxt == snd.max:
            sent = (snd.nxt - snd.una) & MASK
            n = min(mss, len(buf) - sent, snd.wnd - sent)
            if n <= 0 or (n < mss and n < len(buf) - sent):
                break
            self.send_at_nxt(now, n, ACK)
            room -= n

    def schedule_probe(self, now: float) -> None:
        """(Re)arm the tail loss probe, outside fast recovery and RTO recovery (RFC 8985
        7.2; after a timeout `recover` is SND.MAX of then, and SND.UNA has yet to reach it)."""
        tlp = self.loss.probe
        if (not self.config.tail_loss_probe or self.loss.episode.active
                or ((self.snd.una - self.loss.episode.recover) & MASK) >= HALF):
            tlp.restart = False
            self.timers.probe = None
            return
        snd = self.snd
        self.timers.probe = tlp.schedule(now, self.rtt.srtt, (snd.max - snd.una) & MASK,
                                         snd.mss, self.timers.rto)  # in_flight, inline

    def send_probe(self, now: float) -> None:
        """The PTO fired (RFC 8985 7.3): one segment of new data if the peer's window takes
        it, else the last segment again; then the RTO restarts behind it."""
        tlp = self.loss.probe
        self.timers.probe = None
        una = self.snd.una
        flight = self.snd.in_flight
        if not flight or self.loss.episode.active:
            return
        buf = self.snd.buffer
        sent = (self.snd.nxt - una) & MASK
        unsent = len(buf) - sent
        n = min(self.snd.mss, unsent)
        if self.snd.nxt == self.snd.max and n > 0 and self.snd.wnd - sent >= n:
            seq = self.snd.nxt
            self.send_at_nxt(now, n, ACK | PSH if n == unsent else ACK)
            tlp.sent(seq, self.snd.nxt, retransmitted=False)
        else:
            data = min(len(buf), flight)
            offset = max(data - self.snd.mss, 0)
            flags = ACK | PSH if data == len(buf) and data else ACK
            if self.snd.fin_seq is not None and self.snd.max == (self.snd.fin_seq + 1) & MASK:
                flags |= FIN
            start = (una + offset) & MASK
            self.emit(flags, start, buf.peek(offset, data - offset))
            if self.loss.rack_on and data > offset:
                self.loss.rack_sent(start, (una + data) & MASK, now, self.snd.max)
            self.count_retransmit()
            tlp.sent(start, self.snd.max, retransmitted=True)
        self.counters["tlp_probes"] += 1
        self.timers.rto = self.rto_deadline(now)

    def forget_lost_resends(self) -> None:
        lost = self.loss.scoreboard.lost_resends(self.snd.una, self.snd.mss)
        if lost:
            self.counters["lost_retransmits"] += lost

    def retransmit_first(self, now: float, *, fast: bool = True) -> int:
        """Resend the segment at SND.UNA (or the FIN, if only that is left); returns the
        sequence number after it. `fast`: by loss recovery rather than by the timer."""
        buf = self.snd.buffer
        n = min(self.snd.mss, len(buf))
        if n:
            self.emit(ACK, self.snd.una, buf.peek(0, n))
            if self.loss.rack_on:
                self.loss.rack_sent(self.snd.una, (self.snd.una + n) & MASK, now, self.snd.max)
        elif self.snd.fin_queued:
            self.emit(FIN | ACK, self.snd.una)
            n = 1
        self.count_retransmit(fast=fast)
        self.rtt.forget()  # Karn: no RTT sample from a retransmitted segment
        return (self.snd.una + n) & MASK

    def count_retransmit(self, *, fast: bool = False) -> None:
        self.counts.retransmits += 1
        self.counters["retrans_segs"] += 1
        if fast:
            self.counters["fast_retransmits"] += 1

    def persist_probe(self, now: float) -> None:
        timers = self.timers
        timers.persist_interval = min(timers.persist_interval * 2, self.config.persist_max)
        timers.persist = now + timers.persist_interval
        window = self.snd.wnd
        if window > 0:
            # The window is open but too small to beat SWS avoidance: the override timeout of
            # RFC 9293 3.8.6.2.1 sends what fits.
            n = min(window, len(self.snd.buffer) - ((self.snd.nxt - self.snd.una) & MASK))
            if n > 0:
                self.send_at_nxt(now, n, ACK | PSH)
                self.timers.persist = None
                return
        # A zero-window probe: an old sequence number draws an ACK carrying the window.
        self.emit(ACK, (self.snd.una - 1) & MASK)
        self.counts.persist_probes += 1
        self.counters["persist_probes"] += 1

    def arm_rto(self, now: float) -> None:
        """Start the retransmission timer unless it runs (RFC 6298 5.1)."""
        if self.timers.rto is None:
            self.timers.unacked_since = now
            self.timers.rto = self.rto_deadline(now)

    def rto_deadline(self, now: float) -> float:
        """When the retransmission timer fires: after the RTO, or at the user timeout."""
        deadline = now + self.rtt.rto
        if self.config.user_timeout is not None:
            deadline = min(deadline, max(self.timers.unacked_since + self.config.user_timeout, now))
        return deadline
