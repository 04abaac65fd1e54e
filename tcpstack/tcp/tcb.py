"""The Transmission Control Block (RFC 9293 3.3.1): one connection's identity and its parts,
each owning its own state: `snd` (sender.py, SND.*), `rcv` (receiver.py, RCV.*), `loss`
(loss_recovery.py), `cc` (congestion/), `rtt` (rtt.py), `timers` and `counts` (timers.py).

The behaviour is still spread over a chain of classes (to be made parts in turn):
`SegmentOutput` (output.py: the send loop, segments, retransmission, SACK recovery's sending,
the probes) and `Connection` (connection.py: application calls, segment arrival per RFC 9293
3.10, timers, states) build on this one.
"""


from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from tcpstack.tcp import congestion
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.congestion import CongestionControl
from tcpstack.tcp.events import ConnectionOwner, Event
from tcpstack.tcp.loss_recovery import LossRecovery
from tcpstack.tcp.receiver import Receiver
from tcpstack.tcp.rtt import RttEstimator
from tcpstack.tcp.segment import OutSegment
from tcpstack.tcp.sender import Sender
from tcpstack.tcp.state import State
from tcpstack.tcp.timers import ConnectionCounts, ConnectionTimers

TransitionHook = Callable[[Any, State, State], None]  # (connection, old, new)

MAX_WINDOW_FIELD = 0xFFFF
CWND_TRACE_LEN = 20_000      # samples kept per connection
CWND_TRACE_INTERVAL = 0.001  # at most one sample a millisecond, except at losses


class TransmissionControlBlock:
    """A connection's variables; the behaviour lives in the subclasses."""

    def __init__(self, config: TcpConfig, local_addr: bytes, local_port: int,
                 remote_addr: bytes, remote_port: int, iss: int, *, passive: bool,
                 counters: Counter[str] | None = None, segmentation: bool = False) -> None:
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
        # Told of every application call; the owning stack installs it to flush us after.
        self.on_change: Callable[[Any], None] = lambda conn: None


        # `segmentation`: the link cuts large segments itself (GSO), so ours may carry several
        # MSS; a capability of the link, which the stack passes on.
        self.snd = Sender(config, iss, segmentation)  # SND.*, the queued bytes, where our FIN sits
        self.loss = LossRecovery(iss)  # the recovery episode, SACK scoreboard, tail probe

        self.timers = ConnectionTimers()
        self.rcv = Receiver(config)  # RCV.*, the received bytes, the window we advertise

        self.rtt = RttEstimator(config.initial_rto, config.min_rto, config.max_rto)
        self.cc: CongestionControl = congestion.create(config.congestion, config.mss)
        self.retries = 0
        # (time, cwnd, ssthresh) samples for `tcpstack plot`, when asked for: a probe that
        # costs nothing while off.
        self.cwnd_trace: deque[tuple[float, int, int]] | None = (
            deque(maxlen=CWND_TRACE_LEN) if config.cwnd_trace else None)

        self.deadline: float | None = None

        self.output: list[OutSegment] = []  # for the stack to frame and send
        self.events: list[Event] = []
        self.error: str | None = None
        # Set when a new SYN ended TIME_WAIT: the ISN the new incarnation must use.
        self.reopen_iss: int | None = None

        self.counts = ConnectionCounts()  # this connection's own, for stat (ss -i)
        # Shared with the stack (nstat-style totals); a lone connection keeps its own.
        self.counters: Counter[str] = counters if counters is not None else Counter()

    def _update_deadline(self) -> None:
        self.deadline = self.timers.next_deadline()

    def _trace_cwnd(self, now: float) -> None:
        if self.cwnd_trace is not None:
            self.cwnd_trace.append((now, self.cc.cwnd, self.cc.ssthresh))
