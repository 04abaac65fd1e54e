"""One TCP connection, sans-I/O (RFC 9293 section 3.10, "Event Processing").

A Connection never reads a clock or touches a file descriptor. It is fed arriving segments
(`receive`), application calls (`send`, `read`, `close`, `abort`) and timer expiries
(`on_timer`), each with the current time, and it answers with segments (OutSegment: header
fields and a payload view, which the stack frames) in `output` and events (events.py) in
`events`. Its owner calls `flush` after feeding it, which sends whatever data the windows allow
and any pending ACK, and reads `deadline` to know when to call `on_timer` next. All state
changes go through the table in state.py.

It is composed of parts that each own their state (RFC 9293 3.3.1's TCB, split by owner):
`snd` (sender.py, SND.* and the queued bytes), `rcv` (receiver.py, RCV.*, reassembly and the
window we advertise), `tx` (output.py, building and sending segments, with the timestamps
`tx.ts`, timestamps.py), `loss` (loss_recovery.py), `cc` (congestion/), `rtt` (rtt.py),
`timers` and `counts` (timers.py).
This file holds what ties them together: the application calls, segment arrival step by step,
the timers' expiry and the state changes. Sequence comparisons are written inline as
`(a - b) & MASK` on the hot paths; seq.py holds their definitions.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tcpstack.net.checksum import Bytes, View
from tcpstack.tcp import congestion
from tcpstack.tcp.challenge import ChallengeAckLimit
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.congestion import CongestionControl
from tcpstack.tcp.events import (
    DATA_READY,
    END_OF_DATA,
    ESTABLISHED,
    WRITABLE,
    Closed,
    ConnectionOwner,
    Event,
    Refused,
    Reset,
    TimedOut,
    Unreachable,
)
from tcpstack.tcp.loss_recovery import LossRecovery
from tcpstack.tcp.output import SegmentOutput
from tcpstack.tcp.receiver import Receiver
from tcpstack.tcp.recovery import Action
from tcpstack.tcp.rtt import RttEstimator
from tcpstack.tcp.segment import ACK, FIN, RST, SYN, TIMESTAMPS_LEN, Options, OutSegment, Segment
from tcpstack.tcp.sender import Sender
from tcpstack.tcp.seq import HALF, MASK
from tcpstack.tcp.state import (
    IN_FLIGHT,
    KEEPALIVE,
    ON_ENTRY,
    RECEIVING,
    RESET_REPORTED,
    SENDING,
    Entry,
    Sends,
    State,
    Trigger,
    allows,
    step,
)
from tcpstack.tcp.timers import ConnectionCounts, ConnectionTimers
from tcpstack.tcp.timestamps import Timestamps

TransitionHook = Callable[[Any, State, State], None]  # (connection, old, new)

# What a transition sends, as constants: each transition tests several, and an enum member
# looked up on its class is a Python-level getattr.
_SENDS_NONE, _SENDS_ACK, _SENDS_FIN, _SENDS_RST = Sends.NOTHING, Sends.ACK, Sends.FIN, Sends.RST
_SENDS_SYN, _SENDS_SYN_ACK = Sends.SYN, Sends.SYN_ACK

# The states the per-segment path compares with, as module constants: a member looked up
# on its class is a Python-level getattr (~70 ns), about ten of them per segment.
_SYN_SENT, _SYN_RCVD, _CLOSED, _LISTEN = State.SYN_SENT, State.SYN_RCVD, State.CLOSED, State.LISTEN
_TIME_WAIT, _FIN_WAIT_1, _CLOSING, _LAST_ACK = (State.TIME_WAIT, State.FIN_WAIT_1, State.CLOSING,
                                                State.LAST_ACK)
_ESTABLISHED = State.ESTABLISHED
_PREDICTED_FLAGS = SYN | FIN | RST | ACK  # of these, a predicted segment carries ACK alone
CWND_TRACE_LEN = 20_000      # samples kept per connection
CWND_TRACE_INTERVAL = 0.001  # at most one sample a millisecond, except at losses


@dataclass(slots=True)
class Arrival:
    """What step one of RFC 9293 3.10.7.4 leaves of a segment for the later steps: its text
    trimmed to start at RCV.NXT at the earliest, and its flags."""

    seq: int
    flags: int
    payload: View


class ConnectionStateError(Exception):
    """An application call the connection's state does not allow."""


def _unowned(conn: Any) -> None:
    """The `on_change` of a connection no stack owns: nobody to tell."""


class Connection:
    """One TCP connection: see the module docstring."""

    # Slots: thousands of idle connections each save a dict of two dozen entries.
    __slots__ = ("cc", "config", "counters", "counts", "cwnd_trace", "deadline", "error",
                 "events", "listener", "local_addr", "local_port", "loss", "on_change",
                 "on_transition", "owner", "passive", "rcv", "remote_addr", "remote_port",
                 "reopen_iss", "rtt", "snd", "state", "timers", "tx")

    def __init__(self, config: TcpConfig, local_addr: bytes, local_port: int,
                 remote_addr: bytes, remote_port: int, iss: int, *, passive: bool,
                 counters: Counter[str] | None = None, segmentation: bool = False,
                 ts_offset: int = 0, challenges: ChallengeAckLimit | None = None) -> None:
        self.config = config
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.passive = passive
        self.state = State.LISTEN if passive else State.CLOSED
        self.on_transition: TransitionHook | None = None
        self.listener: object | None = None  # the Listener that spawned a passive open
        self.owner: ConnectionOwner | None = None  # the application layer's, told each event
        # Told of every application call; the owning stack installs it to flush us after
        # (one callable shared by all its connections, not an object per connection).
        self.on_change: Callable[[Any], None] = _unowned
        # Shared with the stack (nstat-style totals); a lone connection keeps its own.
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.counts = ConnectionCounts()  # this connection's own, for stat (ss -i)

        # `segmentation`: the link cuts large segments itself (GSO), so ours may carry several
        # MSS; a capability of the link, which the stack passes on.
        self.snd = Sender(config, iss, segmentation)
        self.rcv = Receiver(config)
        self.loss = LossRecovery(iss)  # the recovery episode, SACK scoreboard, tail probe
        self.cc: CongestionControl = congestion.create(config.congestion, config.mss)
        self.rtt = RttEstimator(config.initial_rto, config.min_rto, config.max_rto)
        self.timers = ConnectionTimers()
        self.tx = SegmentOutput(config, local_port, remote_port, snd=self.snd, rcv=self.rcv,
                                loss=self.loss, cc=self.cc, rtt=self.rtt, timers=self.timers,
                                counts=self.counts, counters=self.counters,
                                ts=Timestamps(ts_offset), challenges=challenges)
        self.deadline: float | None = None  # the earliest timer, which the stack keys on
        # (time, cwnd, ssthresh) samples for `tcpstack plot`, when asked for: a probe that
        # costs nothing while off.
        self.cwnd_trace: deque[tuple[float, int, int]] | None = (
            deque(maxlen=CWND_TRACE_LEN) if config.cwnd_trace else None)

        # For the owner to take: like tx.segments, a list only while it holds events.
        self.events: list[Event] | tuple[()] = ()
        self.error: str | None = None
        # Set when a new SYN ended TIME_WAIT: the ISN the new incarnation must use.
        self.reopen_iss: int | None = None

    @property
    def output(self) -> list[OutSegment] | tuple[()]:
        """Segments built and not yet taken by the stack, which puts back the empty tuple
        (`conn.output = ()`) when it has taken them."""
        return self.tx.segments

    @output.setter
    def output(self, segments: list[OutSegment] | tuple[()]) -> None:
        self.tx.segments = segments

    def add_event(self, event: Event) -> None:
        """An event for the owner; the stack takes them and puts back the empty tuple."""
        events = self.events
        if isinstance(events, list):
            events.append(event)
        else:
            self.events = [event]

    def flush(self, now: float) -> None:
        """Send what the windows allow, then any ACK that cannot wait. Runs for every
        connection a pass changed, twice per request-response round trip: the receiver's
        tuning and the deadline are called here directly rather than through Receiver.tune
        and _update_deadline (a Python call is ~0.1 us of a ~50 us round trip)."""
        tx = self.tx
        tx.ts.now = now
        rcv = self.rcv
        tuning = rcv.tuning
        state = self.state
        if tuning is not None and state in RECEIVING:
            # Auto-tuning's turn (Receiver.tune): the buffer may grow with what this pass
            # read, before the flush, so that the growth rides on this pass's ACK.
            want = tuning.adjust(now, rcv.bytes_read, rcv.mss)
            if want > rcv.capacity:
                rcv.capacity = want
            tx.flush(now, state)
            tuning.measure(now, rcv.nxt, rcv.adv)  # the receiver's RTT sample
        else:
            tx.flush(now, state)
        self.deadline = self.timers.next_deadline()

    def _update_deadline(self) -> None:
        self.deadline = self.timers.next_deadline()

    def _trace_cwnd(self, now: float) -> None:
        if self.cwnd_trace is not None:
            self.cwnd_trace.append((now, self.cc.cwnd, self.cc.ssthresh))

    # ------------------------------------------------------------------ app calls

    def connect(self, now: float) -> None:
        """Active open: send a SYN."""
        self.on_change(self)
        self.tx.ts.now = now
        self._transition(Trigger.APP_CONNECT, now)

    def accept_syn(self, seg: Segment, now: float) -> None:
        """Passive open: a listener hands over the SYN that created this connection."""
        self.tx.ts.now = now
        self._take_syn(seg)
        self.snd.wnd = seg.window  # never scaled in a SYN (RFC 7323 2.2)
        self.snd.max_wnd = self.snd.wnd
        self.snd.wl1 = seg.seq
        self._transition(Trigger.RCV_SYN, now)

    def resume_from_cookie(self) -> None:
        """After accept_syn of the SYN a SYN cookie stood for: its SYN-ACK went out long
        ago, statelessly (syncookies.py), so the one accept_syn built is taken back, with
        its retransmission timer and its RTT timing (the ACK's arrival times nothing)."""
        self.tx.segments = ()
        self.timers.rto = None
        self.rtt.forget()

    def send(self, data: Bytes) -> int:
        """Queue application data; returns how many bytes fit in the send buffer."""
        self.on_change(self)
        if self.snd.fin_queued or self.state not in SENDING:
            raise ConnectionStateError(f"cannot send in {self.state}"
                                   + (" after close" if self.snd.fin_queued else ""))
        n = self.snd.buffer.append(data)
        if n < len(data):
            self.snd.want_writable = True
        return n

    def read(self, max_bytes: int = -1) -> bytes:
        """Take received bytes; opening the window may make the next flush send an update."""
        self.on_change(self)
        data = self.rcv.read(max_bytes)
        if data and self.state in RECEIVING and self.rcv.update_due(len(data)):
            self.rcv.owe_ack_now()  # a window update (3.8.6.2.2)
        return data

    def stop_reading(self) -> None:
        """The application will read no more (close() on a socket): later data is
        acknowledged and dropped, and an orphaned FIN_WAIT_2 gives up after a while."""
        self.on_change(self)
        self.rcv.discard = True

    # Socket options set on a live connection (the socket facade's setsockopt); before the
    # connection exists they are TcpConfig fields.

    def set_nodelay(self, on: bool) -> None:
        """TCP_NODELAY: with it on, what Nagle held back leaves at the next flush, as Linux
        pushes pending data when the option is set."""
        self.on_change(self)
        self.snd.nodelay = on

    def set_keepalive(self, on: bool, now: float) -> None:
        """SO_KEEPALIVE (RFC 1122 4.2.3.6): probing starts after `keepalive_idle` of silence
        from now, or stops. The config may be shared: this connection takes its own copy."""
        self.on_change(self)
        if on != self.config.keepalive:
            self.config = dataclasses.replace(self.config, keepalive=on)
        self.timers.keepalive_probes = 0
        self.timers.keepalive = (now + self.config.keepalive_idle
                                 if on and self.state in KEEPALIVE else None)

    def set_keepalive_timing(self, now: float, **timing: float) -> None:
        """TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (keepalive_idle, keepalive_interval,
        keepalive_count): this connection's own copy of the config takes them, and an
        idle timer already running restarts with the new idle time from now."""
        self.on_change(self)
        self.config = dataclasses.replace(self.config, **timing)  # type: ignore[arg-type]
        if self.timers.keepalive is not None and self.timers.keepalive_probes == 0:
            self.timers.keepalive = now + self.config.keepalive_idle

    def set_receive_buffer(self, size: int) -> None:
        """SO_RCVBUF: a fixed buffer from now on, as Linux locks it (no more auto-tuning).
        The window scale was fixed by the SYN, and a smaller buffer never pulls back the
        edge already advertised (RFC 9293 3.8.6.2.2): the window closes as data arrives."""
        self.on_change(self)
        self.rcv.tuning = None
        self.rcv.capacity = max(size, 1)

    def set_send_buffer(self, size: int) -> None:
        """SO_SNDBUF: what may be queued and unacknowledged from now on; data already queued
        beyond it stays (sends wait until the buffer drains below the new size)."""
        self.on_change(self)
        self.snd.buffer.capacity = max(size, 1)

    def close(self, now: float) -> None:
        """Graceful close of our sending side (shutdown(SHUT_WR) and close() on the wire):
        where the table allows it, its action queues our FIN (or there is nothing to close)."""
        self.on_change(self)
        self.tx.ts.now = now
        if allows(self.state, Trigger.APP_CLOSE):
            self._transition(Trigger.APP_CLOSE, now)

    def reopen(self, now: float) -> None:
        """A listener takes the SYN that arrived in TIME_WAIT: this incarnation ends; the new
        one starts with ISN `reopen_iss`."""
        self.tx.ts.now = now
        self._transition(Trigger.RCV_SYN_IN_TIME_WAIT, now)

    def decline_reopen(self) -> None:
        """Nobody listens: TIME_WAIT goes on, and the SYN draws an ACK (RFC 5961 4.2)."""
        self.reopen_iss = None
        self.tx.ack()

    def abort(self, now: float) -> None:
        """Reset the connection (RFC 9293 3.10.5 ABORT): the table says where a RST goes (where
        the peer may still be sending) and where the connection is deleted silently."""
        self.on_change(self)
        self.tx.ts.now = now
        if not allows(self.state, Trigger.APP_ABORT):
            return  # CLOSED, TIME_WAIT: nothing to abort
        self.error = "connection aborted"
        self._transition(Trigger.APP_ABORT, now)

    # ------------------------------------------------------------------ input

    def receive(self, seg: Segment, now: float) -> None:
        """Process one arriving segment: RFC 9293 3.10.7, its steps one method each."""
        self.counts.segments_in += 1
        self.tx.ts.now = now
        if self.timers.keepalive is not None:
            self._heard_from_peer(now)
        state = self.state
        if state is _SYN_SENT:
            self._receive_in_syn_sent(seg, now)
            return
        if state is _CLOSED or state is _LISTEN:
            return
        if (state is _ESTABLISHED and seg.flags & _PREDICTED_FLAGS == ACK
                and seg.seq == self.rcv.nxt and self.rcv.ooo is None
                and self._receive_predicted(seg, now)):
            return
        handshake = self._handshake_repeated(seg)
        if handshake is None:
            return
        ts = self.tx.ts
        if ts.ok and not self._check_timestamps(handshake):
            return
        arrival = self._check_sequence(handshake, now)  # first
        if arrival is None:
            return
        tsval = handshake.options.tsval
        if ts.ok and tsval is not None:
            ts.note_arrival(tsval, handshake.seq)  # RFC 7323 5.3 R3
        if arrival.flags & RST:  # second
            self._check_reset(handshake, now)
            return
        if arrival.flags & SYN:  # fourth: a SYN in a synchronized state (RFC 5961 4.2)
            self.tx.challenge_ack(now)
            return
        if not arrival.flags & ACK or not self._check_ack(handshake, arrival, now):  # fifth
            return
        if self.state is _CLOSED:
            return
        self._receive_text(arrival, now)  # seventh and eighth
        if self.state is _FIN_WAIT_1:  # the one state it acts in: no call per segment else
            self._settle_fin_wait_1(now)

    def _receive_predicted(self, seg: Segment, now: float) -> bool:
        """Header prediction: an ACK, with or without data, exactly at RCV.NXT on an
        established connection with nothing queued beyond a hole. For it the steps of
        3.10.7.4 reduce to the timestamp check, the ACK and the delivery of the text; the
        same rules as there, with the tests that cannot fail left out. False, having done
        nothing, where any step would do more (PAWS, a missing timestamp, data beyond or
        into a closed window): the full steps take it then."""
        payload = seg.payload
        if payload:
            window = (self.rcv.adv - self.rcv.nxt) & MASK  # Receiver.window, inline
            if window >= HALF or len(payload) > window:
                return False
        ts = self.tx.ts
        if ts.ok:
            tsval = seg.options.tsval
            # ts.paws_rejects(tsval), inline: the common case is a TSval not older
            if tsval is None or (((tsval - ts.recent) & MASK) >= HALF and ts.paws_rejects(tsval)):
                return False
            ts.note_arrival(tsval, seg.seq)  # RFC 7323 5.3 R3
        if not self._process_ack(seg, seg.seq, seg.flags, payload, now):
            return True  # dropped, answered by the ACK step
        # The ACK step moves no connection out of ESTABLISHED today; the test stands where
        # the full steps test for CLOSED before the text, should that change.
        if payload and self.state is _ESTABLISHED:
            self._deliver(payload)
        return True

    def acks_together(self, seg: Segment, before: Segment | None) -> bool:
        """May the pure ACK `seg`, arriving after `before` (None: it is the first) in one
        batch from the link, be taken with it as one (`receive_acks`, with the newest)?
        Only where taking the newest alone does what taking each in turn would (but for
        the RTT samples, one instead of several; congestion control still counts each
        ACK's bytes): for ACKs that each move SND.UNA on within what was sent, in sequence
        and carrying nothing else (no data, SYN, FIN, RST, SACK blocks, older timestamp),
        on an established connection outside loss recovery with no tail probe out. For
        them the fifth step is cumulative: SND.UNA and the window go to the newest's (its
        SEG.ACK is the highest; the window update rule takes it), and none of them is a
        duplicate.

        Why: a receiver behind GRO (Linux's) acks each super-packet the link delivered, a
        dozen of them in one batch of a bulk transfer, and each taken alone costs the whole
        ACK step (FreeBSD's LRO hands its TCP such ACKs as one batch for the same reason)."""
        if (self.state is not _ESTABLISHED or seg.flags != ACK or seg.payload
                or seg.seq != self.rcv.nxt or self.rcv.ooo is not None):
            return False
        options = seg.options
        if options.sack:
            return False
        snd = self.snd
        base = snd.una if before is None else before.ack
        if not 0 < (seg.ack - base) & MASK <= (snd.max - base) & MASK:
            return False
        loss = self.loss
        if loss.episode.active or loss.probe.end is not None:
            return False
        ts = self.tx.ts
        if ts.ok:
            tsval = options.tsval
            newest = ts.recent if before is None else before.options.tsval
            if tsval is None or newest is None or (tsval - newest) & MASK >= HALF:
                return False
        return True

    def receive_acks(self, segs: list[Segment], now: float) -> None:
        """Pure ACKs that `acks_together` let be taken as one, in their order: header
        prediction's path for a pure ACK, once, for the newest; congestion control counts
        the bytes each acked as it would have alone."""
        seg = segs[-1]
        parts = None
        if len(segs) > 1:
            base = self.snd.una
            parts = []
            for each in segs:
                parts.append((each.ack - base) & MASK)
                base = each.ack
        self.counts.segments_in += len(segs)
        self.tx.ts.now = now
        if self.timers.keepalive is not None:
            self._heard_from_peer(now)
        ts = self.tx.ts
        tsval = seg.options.tsval
        if ts.ok and tsval is not None:  # acks_together took none without
            ts.note_arrival(tsval, seg.seq)  # RFC 7323 5.3 R3
        self._process_ack(seg, seg.seq, ACK, seg.payload, now, parts)

    def _handshake_repeated(self, seg: Segment) -> Segment | None:
        """SYNs that repeat a handshake: answered here (None), or the segment to go on with."""
        state = self.state
        flags = seg.flags
        if state is _SYN_RCVD and flags & SYN and seg.seq == self.rcv.irs:
            if not flags & ACK:
                # Our SYN-ACK was lost and the peer repeats its SYN: answer it again,
                # echoing this SYN's timestamp, so the peer can time its retransmission.
                tsval = seg.options.tsval
                if self.tx.ts.ok and tsval is not None:
                    self.tx.ts.note_arrival(tsval, seg.seq)
                self.tx.emit(SYN | ACK, self.snd.iss, options=self.tx.syn_options(True))
                return None
            # Simultaneous open (RFC 9293 figure 8, line 6): the peer's SYN-ACK repeats its
            # SYN and acknowledges ours; the SYN is old, the ACK completes the handshake.
            self.rcv.owe_ack_now()  # figure 8, line 7: ACK it
            return Segment(seg.sport, seg.dport, (seg.seq + 1) & MASK, seg.ack, flags & ~SYN,
                           seg.window, seg.options, seg.payload)
        if (state is _TIME_WAIT and flags & SYN and not flags & (ACK | RST)
                and 0 < ((seg.seq - self.rcv.nxt) & MASK) < HALF):
            # RFC 1122 4.2.2.13 / RFC 6191: a SYN beyond everything the old incarnation
            # used may reopen the connection, if a listener takes it: the stack decides and
            # calls reopen() or decline_reopen().
            self.reopen_iss = (self.snd.nxt + 0xFFFF + 2) & MASK
            return None
        return seg

    def _check_timestamps(self, seg: Segment) -> bool:
        """Before the first step, with timestamps negotiated (RFC 7323 5.3 R1, 3.2): a
        segment older than TS.Recent is an old duplicate, dropped with an ACK (which keeps
        half-open detection working); one without the option is dropped silently. A RST
        is acceptable whatever its timestamp (5.2)."""
        if seg.flags & RST:
            return True
        tsval = seg.options.tsval
        if tsval is None:
            self.counters["ts_missing_dropped"] += 1
            return False
        if self.tx.ts.paws_rejects(tsval):
            self.counters["paws_rejected"] += 1
            self.tx.ack()
            return False
        return True

    def _check_sequence(self, seg: Segment, now: float) -> Arrival | Segment | None:
        """First: is the segment acceptable (3.10.7.4, the four cases)? What of it is new,
        trimmed to start at RCV.NXT; None when it is dropped (with an ACK unless a RST).
        A segment with nothing to trim is its own arrival (the later steps read only its
        seq, flags and payload): no object per segment on the common path."""
        flags = seg.flags
        seq = seg.seq
        payload = seg.payload
        seg_len = len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        offset = (seq - self.rcv.nxt) & MASK
        if not self.rcv.acceptable(seq, seg_len):
            if self.rcv.window == 0 and offset == 0 and flags & ACK and not flags & (RST | SYN):
                # A zero window still takes valid ACKs (3.10.7.4): keep only the ACK, and
                # answer with an ACK showing the window is still closed.
                self.rcv.owe_ack_now()
                return Arrival(seq, flags & ~FIN, payload[:0])
            if not flags & RST:
                if self.state is _TIME_WAIT and flags & FIN:
                    self._start_time_wait(now)  # a retransmitted FIN: re-ACK, restart 2MSL
                self.tx.ack()
            return None
        if offset >= HALF:
            # Starts before RCV.NXT: trim what we already have (3.10.7.4, "trimmed").
            skip = (self.rcv.nxt - seq) & MASK
            if flags & SYN:
                skip -= 1
                flags &= ~SYN
            return Arrival(self.rcv.nxt, flags, payload[skip:])
        return seg

    def _check_reset(self, seg: Segment, now: float) -> None:
        """Second: RST (RFC 5961 3.2: only an exact match resets, others draw a challenge
        ACK)."""
        if seg.seq != self.rcv.nxt:
            self.tx.challenge_ack(now)
            return
        self._on_reset(now)

    def _check_ack(self, seg: Segment, arrival: Arrival | Segment, now: float) -> bool:
        """Fifth: the ACK field; False when the segment is to be dropped."""
        if self.state is _SYN_RCVD:
            if not (0 < ((seg.ack - self.snd.una) & MASK) <= ((self.snd.max - self.snd.una)
                                                              & MASK)):
                self.tx.emit(RST, seg.ack)
                return False
            self._our_syn_acked((self.snd.iss + 1) & MASK, seg, Trigger.RCV_ACK_OF_SYN, now)
        # The same ACK may also cover data or a FIN sent from SYN_RCVD; it also sets the send
        # window (SND.WL1 is still the IRS, so the update rule takes it).
        return self._process_ack(seg, arrival.seq, arrival.flags, arrival.payload, now)

    def _receive_text(self, arrival: Arrival | Segment, now: float) -> None:
        """Seventh, the segment text, and eighth, the FIN once every byte before it is in."""
        seq, flags, payload = arrival.seq, arrival.flags, arrival.payload
        if self.state in RECEIVING and (payload or flags & FIN) and seq != self.rcv.nxt:
            # Beyond a hole: keep it for later and send the immediate duplicate ACK of
            # RFC 5681 4.2, which also tells a SACK sender what arrived.
            window = self.rcv.window
            queue = self.rcv.reassembly()
            queue.add(seq, bytes(payload), self.rcv.nxt, window)
            if flags & FIN:
                fin_at = (seq + len(payload)) & MASK
                if ((fin_at - self.rcv.nxt) & MASK) < window:
                    queue.fin_seq = fin_at
            self.tx.ack()
            return
        if payload:
            if self.state in RECEIVING:
                fit = self.rcv.window
                if len(payload) > fit:  # beyond the window: keep what fits, and no FIN
                    payload = payload[:fit]
                    flags &= ~FIN
                ooo = self.rcv.ooo
                if ooo:
                    # Where this segment overlaps data queued beyond the hole, the queued
                    # bytes arrived first and are the ones kept, as between two out-of-order
                    # segments (docs/DECISIONS.md): the segment joins the queue under them.
                    ooo.add(seq, bytes(payload), seq, fit)
                else:
                    self._deliver(payload)
                if ooo:
                    # The segment filled (part of) a hole: ACK at once (RFC 5681 4.2).
                    self._deliver(ooo.pop_ready(self.rcv.nxt))
                    self.tx.ack()
                    if ooo.fin_seq == self.rcv.nxt:
                        flags |= FIN  # a FIN that arrived early is now in order
                        seq = self.rcv.nxt - len(payload)
            seq = (seq + len(payload)) & MASK
        if flags & FIN and seq == self.rcv.nxt:
            if self.state not in RECEIVING:
                # A FIN after the peer's FIN (3.10.7.4, eighth: CLOSE-WAIT, CLOSING and
                # LAST-ACK remain, TIME-WAIT restarts 2MSL): its sequence space has ended,
                # so it takes no sequence number; the ACK says where the peer stands.
                if self.state is _TIME_WAIT:
                    self._start_time_wait(now)
                self.tx.ack()
                return
            if self.rcv.ooo is not None:
                self.rcv.ooo.fin_seq = None
            self.rcv.nxt = (self.rcv.nxt + 1) & MASK
            self._on_fin(now)

    def _deliver(self, data: Bytes) -> None:
        """In-order bytes at RCV.NXT: to the application (unless it stopped reading)."""
        if self.rcv.deliver(data):
            self.add_event(DATA_READY)

    def _settle_fin_wait_1(self, now: float) -> None:
        """FIN_WAIT_1 whose FIN is acked moves on to FIN_WAIT_2, unless the same segment's FIN
        already took it straight to TIME_WAIT (_process_ack leaves that choice to here)."""
        if self.state is _FIN_WAIT_1 and self._fin_acked():
            self._transition(Trigger.RCV_ACK_OF_FIN, now)

    def _receive_in_syn_sent(self, seg: Segment, now: float) -> None:
        """3.10.7.3: SYN-SENT STATE."""
        flags = seg.flags
        ack_ok = False
        if flags & ACK:
            if ((seg.ack - self.snd.iss - 1) & MASK) >= ((self.snd.max - self.snd.iss) & MASK):
                # SEG.ACK =< ISS or SEG.ACK > SND.NXT: not for this connection attempt.
                if not flags & RST:
                    self.tx.emit(RST, seg.ack)
                return
            ack_ok = True
        if flags & RST:
            if ack_ok:  # RFC 5961 3.2: a RST in SYN-SENT counts only if it ACKs our SYN
                self.error = "connection refused"
                self.add_event(Refused(self.error))
                self._transition(Trigger.RCV_RST, now)
            return
        if not flags & SYN:
            return
        self._take_syn(seg)
        self.snd.wnd = seg.window
        self.snd.max_wnd = self.snd.wnd
        self.snd.wl1, self.snd.wl2 = seg.seq, seg.ack
        if ack_ok:
            self._our_syn_acked(seg.ack, seg, Trigger.RCV_SYN_ACK, now)
        else:
            # Simultaneous open (3.10.7.3, figure 8): answer with our SYN again plus an ACK.
            self.timers.rto = None
            self._transition(Trigger.RCV_SYN, now)

    def _our_syn_acked(self, una: int, seg: Segment, trigger: Trigger, now: float) -> None:
        """Our SYN is acknowledged (SND.UNA moves to `una`) by `seg`: the handshake is done."""
        self.snd.una = una
        self.snd.syn_acked = True
        self._measure_rtt(seg.ack, seg.options, now)
        self.timers.rto = None
        self.timers.retries = 0
        self._transition(trigger, now)
        self.add_event(ESTABLISHED)

    def _take_syn(self, seg: Segment) -> None:
        self.rcv.start(seg.seq)
        opts = seg.options
        ts = self.tx.ts
        ts.take_syn(opts.tsval, self.config.timestamps)
        # With timestamps every segment carries 12 bytes of options, which the MSS does not
        # count (RFC 6691): a full segment's payload is that much shorter, both ways.
        overhead = TIMESTAMPS_LEN if ts.ok else 0
        self.snd.take_mss(opts.mss, self.config.mss, overhead)
        self.rcv.mss = self.config.mss - overhead
        self.cc.set_mss(self.snd.mss)
        self.loss.sack = opts.sack_permitted and self.config.sack
        self.loss.rack_on = self.loss.sack and self.config.rack
        if opts.wscale is not None and self.config.window_scaling:
            self.snd.wscale = opts.wscale
            self.snd.wscale_offered = True
        else:  # scaling needs both sides' options (RFC 7323 2.2)
            self.snd.wscale = 0
            self.rcv.no_scaling()

    def _process_ack(self, seg: Segment, seq: int, flags: int, payload: memoryview,
                     now: float, parts: list[int] | None = None) -> bool:
        """Fifth step for the synchronized states; False when the segment is to be dropped."""
        snd = self.snd
        una = snd.una
        ack = seg.ack
        acked = (ack - una) & MASK
        in_flight = (snd.max - una) & MASK  # snd.in_flight, without the property's call
        if acked >= HALF:
            if (una - ack) & MASK > max(self.snd.max_wnd, 1):
                self.tx.challenge_ack(now)  # RFC 5961 5.2: too old
                return False
            acked = -1  # an old duplicate: ignore its ACK field
        elif acked > in_flight:
            self.tx.ack()  # acknowledges something never sent (3.10.7.4)
            return False
        sack = seg.options.sack if self.loss.sack else ()
        # RFC 6675 2: with SACK, an ACK that SACKs octets not SACKed before is a duplicate,
        # whatever its window, data or cumulative ACK; a peer that grows its window on every
        # ACK (Linux does) would otherwise never send one.
        duplicate = bool(sack) and self.loss.read_blocks(sack, una, ack, acked, self.snd.max)
        if acked >= 0:
            # Window update rule (3.10.7.4): only from a segment newer than the last one used.
            wl1 = (seq - self.snd.wl1) & MASK
            if (0 < wl1 < HALF) or (wl1 == 0 and ((ack - self.snd.wl2) & MASK) < HALF):
                window = seg.window << self.snd.wscale
                if (acked == 0 and window == self.snd.wnd and not payload and in_flight
                        and not flags & FIN and not sack):
                    # RFC 5681 2's duplicate ACK: without SACK (or from a SACK peer that
                    # sends no blocks) only an unchanged window tells a dupack from an update.
                    duplicate = True
                self.snd.wnd = window
                if window > self.snd.max_wnd:
                    self.snd.max_wnd = window
                self.snd.wl1, self.snd.wl2 = seq, ack
                if window:
                    self.timers.persist = None
        if acked > 0:
            self._on_new_ack(ack, acked, seg.options, now, parts)
        rack_lost = (acked > 0 or bool(sack)) and self.loss.rack_on and self._rack_on_ack(
            sack, now)
        if duplicate:
            self._on_duplicate_ack(now)
        elif (acked > 0 or rack_lost) and self.loss.episode.active and self.loss.episode.sack:
            self.tx.sack_recover(now)
        elif rack_lost:
            self._start_recovery(now, by_sack=True)
        state = self.state
        # FIN_WAIT_1 waits for the FIN step (see _settle_fin_wait_1).
        if (state is _CLOSING or state is _LAST_ACK) and self._fin_acked():
            self._transition(Trigger.RCV_ACK_OF_FIN, now)
        return True

    def _measure_rtt(self, ack: int, opts: Options, now: float) -> None:
        """An ACK that moves SND.UNA to `ack`. With timestamps it is an RTT sample (RFC 7323
        4.1), even for data sent more than once: TSecr is the TSval of the copy that
        drew the ACK, which Karn's rule could not tell. Without, the one timed segment
        (RFC 6298 3)."""
        if self.tx.ts.ok and opts.tsval is not None:
            rtt = self.tx.ts.rtt_sample(opts.tsecr)
            if rtt is not None:
                self.rtt.sample(rtt)
                return
        self.rtt.on_ack(ack, now)

    def _on_new_ack(self, ack: int, acked: int, opts: Options, now: float,
                    parts: list[int] | None = None) -> None:
        snd = self.snd
        buf = snd.buffer
        buffered = len(buf)
        if snd.syn_acked:
            data_acked = min(acked, buffered)
        else:  # our SYN, acked only after a close in SYN_RCVD took us to FIN_WAIT_1
            snd.syn_acked = True
            data_acked = min(acked - 1, buffered)
        buf.consume(data_acked)
        snd.bytes_sent += data_acked
        snd.una = ack
        if ((snd.nxt - ack) & MASK) >= HALF:
            snd.nxt = ack
        if self.loss.scoreboard:
            self.loss.scoreboard.advance(ack)
        self._measure_rtt(ack, opts, now)
        tlp = self.loss.probe
        if tlp.end is not None and tlp.covered_by(ack):  # a probe is out
            if tlp.repaired_a_loss():  # RFC 8985 7.4: a loss, repaired by the probe
                self.counters["tlp_recoveries"] += 1
                self.cc.on_congestion(self.cc.cwnd, now)  # before this ACK grows it
                self._trace_cwnd(now)
            tlp.cancel()
        action = self.loss.episode.on_new_ack(self.cc, ack, acked, self.snd.max, now,
                                              self.rtt.srtt, parts)
        if action is Action.RETRANSMIT:
            self.tx.retransmit_first(now)  # a partial ACK: the next hole of the same window
        trace = self.cwnd_trace
        if trace is not None and (not trace or now - trace[-1][0] >= CWND_TRACE_INTERVAL):
            self._trace_cwnd(now)
        self.timers.retries = 0
        if ack == self.snd.max:
            self.timers.rto = self.timers.probe = self.timers.rack = None
        else:  # progress: the timer and the user timeout restart (RFC 6298 5.3)
            self.timers.unacked_since = now
            self.timers.rto = self.tx.rto_deadline(now)
            tlp.restart = True
        # buf.space, from the length before the ACK (a call fewer)
        if self.snd.want_writable and buf.capacity - (buffered - data_acked) >= buf.capacity // 2:
            self.snd.want_writable = False
            self.add_event(WRITABLE)

    def _on_duplicate_ack(self, now: float) -> None:
        una = self.snd.una
        loss = self.loss
        by_sack = loss.by_sack()
        before = (now, self.cc.cwnd, self.cc.ssthresh)
        action = loss.episode.on_duplicate_ack(
            self.cc, una, self.snd.max, now, sack=by_sack,
            lost=by_sack and not loss.episode.active and loss.first_is_lost(una, self.snd.mss),
            count=not (by_sack and loss.rack_on))  # RACK replaces DupThresh (RFC 8985 6)
        if action is Action.RETRANSMIT:  # fast retransmit (RFC 5681 3.2, RFC 6675 5 step 4)
            self._recovery_started(now, by_sack, before)
        elif self.loss.episode.active and self.loss.episode.sack:
            self.tx.sack_recover(now)

    def _start_recovery(self, now: float, *, by_sack: bool) -> None:
        """RACK deemed segments lost outside recovery (RFC 8985 6.2 step 5, or its timer):
        fast recovery starts, unless one began since the last timeout or recovery point."""
        before = (now, self.cc.cwnd, self.cc.ssthresh)
        if self.loss.episode.enter(self.cc, self.snd.una, self.snd.max, now,
                                   by_sack) is Action.RETRANSMIT:
            self._recovery_started(now, by_sack, before)

    def _recovery_started(self, now: float, by_sack: bool,
                          before: tuple[float, int, int]) -> None:
        self.loss.probe.cancel()
        self.timers.probe = None
        self.counters["sack_recoveries" if by_sack else "reno_recoveries"] += 1
        if self.cwnd_trace is not None:
            self.cwnd_trace.append(before)  # the window the loss cut, then the cut
        self._trace_cwnd(now)
        if by_sack:
            self.tx.start_sack_recovery(now)
        else:
            self.tx.retransmit_first(now)

    def _rack_on_ack(self, blocks: tuple[tuple[int, int], ...], now: float) -> bool:
        """RACK's steps for this ACK (RFC 8985 6.2); True when it deemed segments lost."""
        lost, resends, timeout = self.loss.rack_on_ack(self.snd.una, blocks, self.snd.max,
                                                       now, self.rtt.srtt, self.snd.mss)
        if timeout is not None:
            self.timers.rack = now + timeout if timeout else None
        return lost > 0 and self._rack_counted(lost, resends)

    def _rack_counted(self, lost: int, resends: int) -> bool:
        if lost:
            self.counters["rack_losses"] += lost
            if resends:
                self.counters["lost_retransmits"] += resends
        return lost > 0

    def _on_reordering_timeout(self, now: float) -> None:
        """RFC 8985 6.3: no ACK came to settle what waited out the reordering window."""
        self.timers.rack = None
        lost, resends, timeout = self.loss.rack_on_timer(self.snd.una, now, self.rtt.srtt,
                                                         self.snd.mss)
        if timeout:
            self.timers.rack = now + timeout
        if self._rack_counted(lost, resends):
            if self.loss.episode.active:
                self.tx.sack_recover(now)
            else:
                self._start_recovery(now, by_sack=True)

    def _fin_acked(self) -> bool:
        return self.snd.fin_seq is not None and self.snd.una == (self.snd.fin_seq + 1) & MASK

    def _on_fin(self, now: float) -> None:
        """The peer's FIN, in order: the transition's action acknowledges it."""
        self.add_event(END_OF_DATA)
        if self.state is State.FIN_WAIT_1 and self._fin_acked():
            self._transition(Trigger.RCV_FIN_ACK_OF_FIN, now)
        else:
            self._transition(Trigger.RCV_FIN, now)

    def _on_reset(self, now: float) -> None:
        if self.state is State.SYN_RCVD:
            if not self.passive:  # 3.10.7.4: an active open that crossed SYNs is refused
                self.error = "connection refused"
                self.add_event(Refused(self.error))
            # (a passive open's listener simply forgets the half-open connection)
        elif self.state in RESET_REPORTED:
            self.error = "connection reset by peer"
            self.add_event(Reset(self.error))
        self._transition(Trigger.RCV_RST, now)

    def end_time_wait(self, now: float) -> None:
        """TIME_WAIT cut short (the stack holds too many): closed as when 2MSL runs out."""
        if self.state is _TIME_WAIT:
            self._transition(Trigger.TIMEOUT_2MSL, now)

    def _start_time_wait(self, now: float) -> None:
        self.timers.time_wait = now + 2 * self.config.msl
        self.timers.rto = self.timers.persist = self.timers.probe = self.timers.rack = None
        self.loss.probe.cancel()

    # ------------------------------------------------------------------ timers

    def on_timer(self, now: float) -> None:
        self.tx.ts.now = now
        if self.timers.time_wait is not None and now >= self.timers.time_wait:
            self._transition(Trigger.TIMEOUT_2MSL, now)
        if self.timers.rack is not None and now >= self.timers.rack:
            self._on_reordering_timeout(now)
        if self.timers.rto is not None and now >= self.timers.rto:
            self._on_retransmit_timeout(now)
        if self.timers.persist is not None and now >= self.timers.persist:
            self.tx.persist_probe(now)
        if self.timers.probe is not None and now >= self.timers.probe:
            self.tx.send_probe(now)
        if self.timers.delack is not None and now >= self.timers.delack:
            self.tx.ack()
        if self.timers.keepalive is not None and now >= self.timers.keepalive:
            self._on_keepalive_timer(now)
        if self.timers.fin_wait_2 is not None and now >= self.timers.fin_wait_2:
            self.timers.fin_wait_2 = None
            if self.state is State.FIN_WAIT_2:
                self._give_up("no FIN from the peer in FIN_WAIT_2", now)
        self._update_deadline()

    def _on_keepalive_timer(self, now: float) -> None:
        """RFC 1122 4.2.3.6: after an idle period, probe with an old sequence number (which
        draws an ACK); give up after `keepalive_count` unanswered probes."""
        config = self.config
        if self.state not in KEEPALIVE:
            self.timers.keepalive = None
            return
        if self.timers.keepalive_probes >= config.keepalive_count:
            self._give_up("connection timed out (no answer to keepalive probes)", now)
            return
        self.timers.keepalive_probes += 1
        self.tx.emit(ACK, (self.snd.una - 1) & MASK)
        self.timers.keepalive = now + config.keepalive_interval

    def _heard_from_peer(self, now: float) -> None:
        if self.config.keepalive:
            self.timers.keepalive_probes = 0
            self.timers.keepalive = now + self.config.keepalive_idle

    # ------------------------------------------------------------------ ICMP

    def icmp_error(self, seq: int, now: float, *, error: str, errno: int, ends_attempt: bool,
                   path_mss: int | None = None) -> bool:
        """An ICMP error about the segment at `seq` (RFC 5927, RFC 1122 4.2.3.9); True when
        believed: an off-path forger must guess a sequence number in flight (5927 4.1).
        `path_mss`: "fragmentation needed" (RFC 1191) says the path takes no more. An
        attempt not yet established fails on `ends_attempt` (as Linux's connect does); once
        synchronized every error is soft (5927 4.2): kept, reported if the connection times
        out, never an abort."""
        snd = self.snd
        if self.state not in IN_FLIGHT or \
                ((seq - snd.una) & MASK) >= ((snd.max - snd.una) & MASK):
            return False
        if path_mss is not None:
            if snd.lower_mss(path_mss):
                self.counters["pmtu_lowered"] += 1
                self.cc.mss = snd.mss
                # The segments in flight were too large for the path: send them again at
                # the new size (RFC 1191 6.4); a lost-to-MTU segment is no congestion signal.
                snd.nxt = snd.una
                self.rtt.forget()
            return True
        if ends_attempt and (self.state is State.SYN_SENT or self.state is State.SYN_RCVD):
            self.error = error
            self.add_event(Unreachable(error, errno))
            self._transition(Trigger.TIMEOUT_GIVE_UP, now)  # the attempt is given up
            return True
        snd.soft_error = error
        return True

    def _give_up(self, error: str, now: float) -> None:
        self.error = error
        self.add_event(TimedOut(error))
        self._transition(Trigger.TIMEOUT_GIVE_UP, now)

    def _on_retransmit_timeout(self, now: float) -> None:
        self.timers.retries += 1
        self.counters["rto_timeouts"] += 1
        self.loss.probe.cancel()
        self.timers.probe = self.timers.rack = None
        state = self.state
        limit = (self.config.syn_retries if state is State.SYN_SENT else
                 self.config.synack_retries if state is State.SYN_RCVD else
                 self.config.orphan_retries if self.rcv.discard else
                 self.config.max_retries)
        if self.timers.retries > limit:
            soft = self.snd.soft_error  # what ICMP said about the path meanwhile, if it did
            self._give_up(f"connection timed out ({soft})" if soft else "connection timed out",
                          now)
            return
        user_timeout = self.config.user_timeout
        if user_timeout is not None and now - self.timers.unacked_since >= user_timeout:
            self._give_up(f"connection timed out (data unacknowledged for {user_timeout:g} s)",
                          now)
            return
        self.rtt.backoff()
        self.rtt.forget()
        self.timers.rto = self.tx.rto_deadline(now)
        if state is State.SYN_SENT or state is State.SYN_RCVD:
            self.tx.count_retransmit()
            self.tx.send_syn(now, synack=state is State.SYN_RCVD)
            return
        self._trace_cwnd(now)
        self.cc.on_timeout(self.snd.in_flight, now)
        self.loss.on_timeout(self.snd.max)
        self._trace_cwnd(now)
        self.snd.nxt = self.snd.una  # go back N: resend from the oldest unacknowledged byte
        self.tx.send_data(now)
        if self.snd.nxt == self.snd.una and self.snd.max != self.snd.una:
            # The window is closed (or too small to send into): resend the oldest segment
            # anyway. The peer drops what does not fit, but its ACK tells the current window;
            # without this a lost window update would leave nothing to probe it.
            self.tx.retransmit_first(now, fast=False)
            resent = min(self.snd.mss, len(self.snd.buffer))
            self.snd.nxt = (self.snd.una + (resent or 1)) & MASK

    # ------------------------------------------------------------------ states

    def _transition(self, trigger: Trigger, now: float) -> None:
        """Change state as the table says, then do what it says the transition sends and
        what entering the new state starts."""
        old = self.state
        new, sends = step(old, trigger)
        self.state = new
        if self.on_transition is not None:
            self.on_transition(self, old, new)
        if sends is _SENDS_NONE:
            pass
        elif sends is _SENDS_ACK:
            self.rcv.owe_ack_now()
        elif sends is _SENDS_SYN or sends is _SENDS_SYN_ACK:
            self.tx.send_syn(now, synack=sends is _SENDS_SYN_ACK)
        elif sends is _SENDS_FIN:
            self.snd.fin_queued = True  # it goes after the queued data, at the flush
        elif sends is _SENDS_RST:
            self.tx.emit(RST, self.snd.max)
        entry = ON_ENTRY.get(new)
        if entry is not None:
            self._enter(entry, now)

    def _enter(self, entry: Entry, now: float) -> None:
        if entry is Entry.KEEPALIVE:
            self._heard_from_peer(now)
        elif entry is Entry.ORPHAN_TIMER:
            if self.rcv.discard:
                # Nobody will read or close any more: do not wait forever for the peer's FIN.
                self.timers.fin_wait_2 = now + self.config.fin_wait_2_timeout
        elif entry is Entry.TWO_MSL:
            self._start_time_wait(now)
        elif entry is Entry.RELEASE:
            self.timers.stop_all()
            self.loss.probe.cancel()
            self.deadline = None
            self.rcv.acked()  # nothing is owed any more
            self.add_event(Closed(self.error))

