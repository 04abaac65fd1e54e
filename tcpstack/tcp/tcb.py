"""The Transmission Control Block (RFC 9293 3.3.1): every variable of one connection.

The connection is split by concern across three classes, each a subclass of the one before:
`TransmissionControlBlock` (this file: the send and receive sequence variables, buffers,
timers and counters), `SegmentOutput` (output.py: building and sending segments, the
window we advertise, retransmission and loss recovery on the send side) and `Connection`
(connection.py: application calls, segment arrival per RFC 9293 3.10, timers, states).
"""


from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from tcpstack.net import offload
from tcpstack.net.ipv4 import PROTO_TCP, HeaderTemplate, pseudo_header_sum
from tcpstack.tcp import congestion
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.congestion import CongestionControl
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.reassembly import ReassemblyQueue
from tcpstack.tcp.recovery import FastRecovery
from tcpstack.tcp.rtt import RttEstimator
from tcpstack.tcp.sack import SackScoreboard
from tcpstack.tcp.send_buffer import SendBuffer
from tcpstack.tcp.state import State
from tcpstack.tcp.tail_probe import TailLossProbe

TransitionHook = Callable[[Any, State, State], None]  # (connection, old, new)

MAX_WINDOW_FIELD = 0xFFFF
# The largest TCP payload one IPv4 packet can carry (65535 less 20 + 20 header bytes).
MAX_IP_PAYLOAD = 0xFFFF - 40
MIN_SND_MSS = 48
CWND_TRACE_LEN = 20_000      # samples kept per connection
CWND_TRACE_INTERVAL = 0.001  # at most one sample a millisecond, except at losses


def _wscale_for(buffer: int) -> int:
    """The smallest shift that lets a 16-bit window field cover `buffer` (RFC 7323 2.3)."""
    shift = 0
    while (MAX_WINDOW_FIELD << shift) < buffer and shift < tcpseg.MAX_WSCALE:
        shift += 1
    return shift


class TransmissionControlBlock:
    """A connection's variables; the behaviour lives in the subclasses."""

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
        # Told of every application call; the owning stack installs it to flush us after.
        self.on_change: Callable[[Any], None] = lambda conn: None

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
        self.tlp = TailLossProbe()
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

    def _update_deadline(self) -> None:
        d = self._rto_at
        for t in (self._persist_at, self._time_wait_at, self._delack_at, self._keepalive_at,
                  self._fin_wait_2_at, self.tlp.at):
            if t is not None and (d is None or t < d):
                d = t
        self.deadline = d

    def _trace_cwnd(self, now: float) -> None:
        self.cwnd_trace.append((now, self.cc.cwnd, self.cc.ssthresh))
