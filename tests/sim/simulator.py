"""A deterministic network simulator: two NetworkStacks, a faulty link between them,
applications on top, and invariants checked after every event.

Theory of operation
-------------------
Everything happens in one thread on a virtual clock. `Simulation.step()` jumps the clock to
the earliest of: the next packet due off the link, either stack's `next_deadline()`, or an
application's wake-up; it processes that one thing through the production service pass
(a batch of packets arriving at one stack at the same instant is one `NetworkStack.service`,
as the driver hands over what one read of the TUN drained; a timer is `on_timer`; an
application's wake-up is a pass with no packets after its calls), in which the stack hands
its events to the application (which sends, reads and closes) before it flushes; then it
puts what the stack emitted on the link and checks the invariants. Nothing sleeps: a
60-second TIME_WAIT is one step.

All randomness comes from the scenario's one seed: the scenario itself (sizes, faults,
configuration, application behaviour), each direction of the link, the data and the ISN
secret each get their own `random.Random` derived from it by name. The same seed gives the
same run bit for bit; `fingerprint()` hashes every packet with the time it moved, so a test
can prove that.

The link, per direction (`Faults`): each packet is dropped with a probability, otherwise
delayed by `delay` plus a uniform share of `jitter` without overtaking the packet before it
(a link's jitter does not reorder), duplicated with a probability (the copy travels on its
own), reordered with a probability (held back by part of `reorder_delay`, so later packets
overtake it) and corrupted with a probability (one bit of one byte flipped; the receiving
stack must count it as malformed, by its checksum, and drop it).

Invariants
----------
After every event (and, for states, at every transition):
- the bytes each reader got from `read()` are a prefix of what the other side's writer gave
  to `send()`: in order, none twice, none altered;
- every state is a `State`, every transition an arc of `TRANSITIONS`, and the two states can
  coexist on the two ends of one connection (`COEXIST`);
- events come in a legal order (ESTABLISHED first and once, no DATA after EOF, nothing after
  CLOSED) and, in a clean scenario, never RESET, REFUSED or TIMEOUT;
- a corrupted packet is dropped and counted (by its checksum); an intact one never is;
- on the wire, each side's ACK field never acknowledges what the peer never sent and never
  goes back, and the right edge of the window it offers never moves left;
- bare ACKs do not keep answering bare ACKs while no data moves (an ACK storm), and the
  run ends within its bounds of steps and virtual time (no livelock, no stall);
- a CLOSED connection has no timer, a live one's timer is on the stack's queue, and no
  deadline lies in the past;
- TIME_WAIT lasts 2*MSL after it began (or after the last segment it answered); it may end
  early only by a RST that the peer's stack sent for a connection it had already closed
  (the old-duplicate hazard of RFC 1337, which RFC 9293 allows).
At the end of a clean run: both sides CLOSED, at least one by way of TIME_WAIT, the other
from LAST_ACK (or TIME_WAIT too); each stack without connections or timers; everything
written delivered exactly once, then EOF.

A failure raises `SimulationFailure` naming the seed, the one command that replays it, what
was expected and what happened, and the last packets, transitions and events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
import math
import random
import struct
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn

from tcpstack.net import ipv4
from tcpstack.stack import NetworkStack, packet_bytes
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent, Event, Refused, Reset, TimedOut
from tcpstack.tcp.isn import IsnGenerator
from tcpstack.tcp.segment import ACK, FIN, RST, SYN, Segment
from tcpstack.tcp.seq import HALF, MASK
from tcpstack.tcp.state import TRANSITIONS, State
from tests.unit.link_pair import A_ADDR, B_ADDR, FixedIsn

EPS = 1e-9
TRACE_LEN = 60
ACK_STORM = 1000  # bare ACKs answered by bare ACKs in a row, with no data moving
CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(TcpConfig))
_TCP_HEAD = struct.Struct("!HHIIBBH")  # ports, seq, ack, data offset, flags, window: byte 20
_IP_HEADER_LEN = 20                   # tcpstack sends no IP options
_STAMP = struct.Struct("!dB")

# ---------------------------------------------------------------------- legal state pairs

S = State
# (client, server) pairs of the handshake; the server is LISTEN until its connection exists.
_HANDSHAKE_PAIRS = [
    (S.CLOSED, S.LISTEN), (S.SYN_SENT, S.LISTEN), (S.SYN_SENT, S.SYN_RCVD),
    (S.ESTABLISHED, S.SYN_RCVD),
    (S.FIN_WAIT_1, S.SYN_RCVD),  # the client wrote, closed, and its ACK of the SYN was lost
]
# Pairs after the handshake, either way round: each side's state reflects only segments the
# other sent earlier, which rules out the rest (e.g. FIN_WAIT_2 needs the peer to have
# received our FIN, so the peer is past ESTABLISHED).
_SYNCHRONIZED_PAIRS = [
    (S.ESTABLISHED, S.ESTABLISHED), (S.FIN_WAIT_1, S.ESTABLISHED),
    (S.FIN_WAIT_1, S.FIN_WAIT_1), (S.FIN_WAIT_1, S.CLOSE_WAIT), (S.FIN_WAIT_1, S.LAST_ACK),
    (S.FIN_WAIT_1, S.CLOSING), (S.FIN_WAIT_2, S.CLOSE_WAIT), (S.FIN_WAIT_2, S.LAST_ACK),
    (S.FIN_WAIT_2, S.CLOSING), (S.CLOSING, S.CLOSING), (S.CLOSING, S.TIME_WAIT),
    (S.LAST_ACK, S.TIME_WAIT), (S.TIME_WAIT, S.TIME_WAIT), (S.TIME_WAIT, S.CLOSED),
    (S.CLOSED, S.CLOSED),
]
COEXIST: frozenset[tuple[State, State]] = frozenset(
    _HANDSHAKE_PAIRS + _SYNCHRONIZED_PAIRS + [(s, c) for c, s in _SYNCHRONIZED_PAIRS])
# Every (old, new) arc the transition table allows, whatever the trigger.
ARCS: frozenset[tuple[State, State]] = frozenset(
    (old, new) for (old, _), (new, _) in TRANSITIONS.items())


# ---------------------------------------------------------------------- what a run is made of

@dataclass(frozen=True)
class Faults:
    """The impairments of one direction of the link."""

    drop: float = 0.0           # probability a packet is lost
    delay: float = 0.005        # one-way delay, seconds
    jitter: float = 0.0         # plus up to this much (FIFO: jitter alone never reorders)
    duplicate: float = 0.0      # probability a packet arrives twice
    reorder: float = 0.0        # probability a packet is held back and overtaken
    reorder_delay: float = 0.01  # the longest it is held back
    corrupt: float = 0.0        # probability one bit of a packet is flipped

    def describe(self) -> str:
        parts = [f"delay {self.delay * 1e3:.3g} ms"]
        if self.jitter:
            parts.append(f"+{self.jitter * 1e3:.3g} ms jitter")
        for name in ("drop", "duplicate", "reorder", "corrupt"):
            p = getattr(self, name)
            if p:
                parts.append(f"{name} {p:.2%}")
        if self.reorder:
            parts.append(f"held {self.reorder_delay * 1e3:.3g} ms")
        return ", ".join(parts)


@dataclass(frozen=True)
class AppSpec:
    """How the application on one side behaves."""

    write_chunk: int = 65536     # largest single send() call; each is 1..write_chunk bytes
    read_size: int = -1          # most bytes a read() takes (-1: all there is)
    read_interval: float = 0.0   # > 0: a slow reader, one read() per interval, no more
    write_delay: float = 0.0     # start writing this long after ESTABLISHED
    close: str = "after_write"   # "after_write", "after_eof" (and written) or "never"


@dataclass
class Scenario:
    """One run: everything a Simulation needs, all of it fixed by `seed`."""

    seed: int
    size_ab: int = 0             # bytes the client (a) writes to the server (b)
    size_ba: int = 0
    faults_ab: Faults = field(default_factory=Faults)
    faults_ba: Faults = field(default_factory=Faults)
    config_a: TcpConfig = field(default_factory=TcpConfig)
    config_b: TcpConfig = field(default_factory=TcpConfig)
    app_a: AppSpec = field(default_factory=AppSpec)
    app_b: AppSpec = field(default_factory=AppSpec)
    isn_a: int | None = None     # a fixed ISN, or None for RFC 6528 with a seeded secret
    isn_b: int | None = None
    port: int = 80
    batch: bool = True           # packets arriving at one instant are received, then flushed
    # The side's advertised window grows on every ACK, duplicates included, as Linux's does
    # early in a connection (GrowingWindow), instead of staying put while nothing is read.
    growing_window_a: bool = False
    growing_window_b: bool = False
    clean: bool = True           # no RST, no timeout; all delivered; both end CLOSED
    max_time: float = 4000.0     # virtual seconds before the run counts as stuck
    max_steps: int = 3_000_000
    replay: str = ""             # the one command that replays this run

    def __post_init__(self) -> None:
        if not self.replay:
            self.replay = f"make sim SEED={self.seed}"

    @classmethod
    def random(cls, seed: int, replay: str = "") -> Scenario:
        """A small transfer each way (1 KB to 200 KB, sometimes none) under a random mix of
        every fault at moderate rates, with random buffers, MSS, apps and ISNs."""
        rng = random.Random(f"tcpstack-sim/{seed}/scenario")

        def log_uniform(lo: float, hi: float) -> float:
            return math.exp(rng.uniform(math.log(lo), math.log(hi)))

        def size() -> int:
            return 0 if rng.random() < 0.05 else round(log_uniform(1 << 10, 200 << 10))

        def faults() -> Faults:
            delay = log_uniform(0.0001, 0.03)
            return Faults(
                drop=rng.uniform(0.0, 0.05) if rng.random() < 0.7 else 0.0,
                delay=delay,
                jitter=rng.uniform(0.0, delay) if rng.random() < 0.5 else 0.0,
                duplicate=rng.uniform(0.0, 0.05) if rng.random() < 0.5 else 0.0,
                reorder=rng.uniform(0.0, 0.05) if rng.random() < 0.5 else 0.0,
                reorder_delay=log_uniform(0.0005, 0.03),
                corrupt=rng.uniform(0.0, 0.02) if rng.random() < 0.5 else 0.0)

        def config() -> TcpConfig:
            # TIME_WAIT must outlast the peer's FIN retransmissions under loss (RFC 9293
            # 3.4.2): with a 2*MSL of 20 s, five FINs in a row would have to be lost.
            wanted: dict[str, object] = {"msl": rng.choice([10.0, 30.0])}
            if rng.random() < 0.3:
                wanted["mss"] = rng.randint(256, 1460)
            if rng.random() < 0.2:
                wanted["window_scaling"] = False
            if rng.random() < 0.25:
                wanted["receive_buffer"] = rng.randint(4096, 65536)
            if rng.random() < 0.25:
                wanted["send_buffer"] = rng.randint(4096, 65536)
            # Options the core may not have yet are used only where TcpConfig has them.
            wanted["congestion"] = rng.choice(["newreno", "cubic"])
            wanted["sack"] = rng.random() < 0.7
            wanted["nodelay"] = rng.random() < 0.3
            wanted["delayed_ack"] = rng.choice([0.0, 0.04, 0.04, rng.uniform(0.001, 0.2)])
            if rng.random() < 0.2:  # keepalive timers that can fire during a run
                wanted.update(keepalive=True, keepalive_idle=rng.uniform(1.0, 5.0),
                              keepalive_interval=rng.uniform(0.2, 2.0),
                              keepalive_count=rng.randint(5, 9))
            if rng.random() < 0.1:  # a user timeout long enough never to fire here
                wanted["user_timeout"] = rng.uniform(60.0, 120.0)
            return make_config(**wanted)

        def app() -> AppSpec:
            slow = rng.random() < 0.2
            return AppSpec(
                write_chunk=round(log_uniform(64, 65536)),
                read_size=rng.randint(256, 16384) if slow or rng.random() < 0.4 else -1,
                read_interval=rng.uniform(0.001, 0.05) if slow else 0.0,
                write_delay=rng.uniform(0.0, 0.2) if rng.random() < 0.3 else 0.0,
                close=rng.choice(["after_write", "after_eof"]))

        def isn() -> int | None:
            # A quarter of the runs start just below 2**32, so the transfer wraps.
            return (-rng.randint(1, 300_000)) & MASK if rng.random() < 0.25 else None

        app_a, app_b = app(), app()
        if app_a.close == app_b.close == "after_eof":  # each would wait for the other
            app_a = dataclasses.replace(app_a, close="after_write")
        scenario = cls(seed=seed, size_ab=size(), size_ba=size(), faults_ab=faults(),
                       faults_ba=faults(), config_a=config(), config_b=config(), app_a=app_a,
                       app_b=app_b, isn_a=isn(), isn_b=isn(), port=rng.randint(1, 32767),
                       batch=rng.random() < 0.5, replay=replay)
        # Drawn last, so that every other choice of a seed stays what it was.
        scenario.growing_window_a = rng.random() < 0.5
        scenario.growing_window_b = rng.random() < 0.5
        return scenario

    def describe(self) -> str:
        def conf(c: TcpConfig) -> str:
            default = TcpConfig()
            changed = [f"{n}={getattr(c, n)!r}" for n in sorted(CONFIG_FIELDS)
                       if getattr(c, n) != getattr(default, n)]
            return ", ".join(changed) or "defaults"

        return "\n".join([
            f"  a->b: {self.size_ab} bytes; {self.faults_ab.describe()}",
            f"  b->a: {self.size_ba} bytes; {self.faults_ba.describe()}",
            f"  config a: {conf(self.config_a)}",
            f"  config b: {conf(self.config_b)}",
            f"  app a: {self.app_a}", f"  app b: {self.app_b}",
            f"  isn a={self.isn_a} b={self.isn_b} port={self.port} batch={self.batch}",
            f"  growing windows: a={self.growing_window_a} b={self.growing_window_b}"])


def make_config(**wanted: object) -> TcpConfig:
    """A TcpConfig with those of `wanted` that TcpConfig has (newer options are skipped)."""
    return TcpConfig(**{k: v for k, v in wanted.items() if k in CONFIG_FIELDS})  # type: ignore[arg-type]


class SimulationFailure(AssertionError):
    """An invariant broke; the message holds the seed and the command that replays it."""


class WireRecord(NamedTuple):
    time: float
    sender: str
    packet: bytes
    fate: str  # "sent", "dropped", "filtered", or what the link did: "dup", "held", "flip"

    def segment(self) -> Segment:
        ip = ipv4.parse(self.packet)
        return tcpseg.parse(ip.payload, ipv4.pseudo_header_sum(ip.src, ip.dst, ipv4.PROTO_TCP))


@dataclass
class WireStats:
    sent: int = 0
    data_segments: int = 0        # segments occupying sequence space (data, SYN or FIN)
    retransmitted: int = 0        # ... that start below the highest sequence sent before
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    delivered: int = 0


class Wire:
    """One direction of the link: its faults, its own random stream, its statistics."""

    def __init__(self, sender: str, receiver: str, faults: Faults, rng: random.Random) -> None:
        self.sender = sender
        self.receiver = receiver
        self.faults = faults
        self.rng = rng
        self.stats = WireStats()
        self.tail = 0.0             # when the last in-order packet arrives (FIFO)
        self._high: int | None = None   # the end of the highest sequence sent
        self._last_ack: int | None = None
        self._edge: int | None = None   # the right edge of the window offered
        self.wscale: int | None = None  # the window scale its SYN offered

    def note(self, packet: bytes, peer: Wire) -> str | None:
        """Count the packet and notice a retransmission from its sequence numbers. Returns
        what is wrong with its ACK and window fields, if anything: they may not acknowledge
        beyond what the peer ever sent, nor go back from an ACK sent before (RCV.NXT never
        decreases), nor pull the window's right edge back (RFC 9293 3.8.6.2.2: no shrinking)."""
        stats = self.stats
        stats.sent += 1
        _sport, _dport, seq, ack, offset, flags, window = _TCP_HEAD.unpack_from(
            packet, _IP_HEADER_LEN)
        problem = None
        if flags & SYN:
            self.wscale = _wscale_option(packet)
        elif flags & ACK and not flags & RST:
            sent = peer._high
            if sent is not None and 0 < ((ack - sent) & MASK) < HALF:
                problem = (f"{self.sender} acknowledges {ack}, beyond the {sent} that "
                           f"{peer.sender} ever sent")
            last = self._last_ack
            if last is not None and 0 < ((last - ack) & MASK) < HALF:
                problem = f"{self.sender}'s ACK went back from {last} to {ack}"
            self._last_ack = ack
            shift = self.wscale if self.wscale is not None and peer.wscale is not None else 0
            edge = (ack + (window << shift)) & MASK
            if self._edge is None or ((edge - self._edge) & MASK) < HALF:
                self._edge = edge
            else:
                problem = (f"{self.sender} pulled its window's right edge back from "
                           f"{self._edge} to {edge} (a shrinking window)")
        length = len(packet) - _IP_HEADER_LEN - (offset >> 4) * 4
        if flags & SYN:
            length += 1
        if flags & FIN:
            length += 1
        if length <= 0 or flags & RST:
            return problem
        stats.data_segments += 1
        end = (seq + length) & MASK
        high = self._high
        if high is None:
            self._high = end
            return problem
        if 0 < ((high - seq) & MASK) < HALF:
            stats.retransmitted += 1
        if 0 < ((end - high) & MASK) < HALF:
            self._high = end
        return problem


class GrowingWindow:
    """Rewrites one side's ACKs so its window grows on every one, as Linux's does early in a
    connection (its rcv_ssthresh grows by about two segments per segment received): the
    field is the smaller of the real window and a clamp that starts at a quarter of the
    first window offered and grows on every ACK, duplicates included. A peer with a window
    that never changes hides the senders that count only RFC 5681's duplicate ACKs (same
    window), which such a peer never sends. The right edge stays monotonic, since the real
    edge and the clamp's both are, and the checksum is patched (RFC 1624)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.clamp: int | None = None  # bytes

    def shape(self, packet: bytes, shift: int) -> bytes:
        _sp, _dp, _seq, _ack, _offset, flags, window = _TCP_HEAD.unpack_from(
            packet, _IP_HEADER_LEN)
        if flags & (SYN | RST) or not flags & ACK:
            return packet
        if self.clamp is None:
            self.clamp = max((window << shift) // 4, 1 << shift)
        else:
            self.clamp += 2 * 536 + (self.rng.randrange(4) << shift)
        field = min(window, self.clamp >> shift)
        if field == window:
            return packet
        at = _IP_HEADER_LEN + 14
        checksum = int.from_bytes(packet[at + 2:at + 4], "big")
        total = (~checksum & 0xFFFF) + (~window & 0xFFFF) + field
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        return b"".join((packet[:at], field.to_bytes(2, "big"),
                         (~total & 0xFFFF).to_bytes(2, "big"), packet[at + 4:]))


class Endpoint:
    """The application on one side: writes `data`, reads what the peer wrote, closes."""

    def __init__(self, name: str, role: str, stack: NetworkStack, spec: AppSpec,
                 data: bytes, rng: random.Random) -> None:
        self.name = name
        self.role = role
        self.stack = stack
        self.spec = spec
        self.data = data
        self.view = memoryview(data)
        self.rng = rng
        self.peer: Endpoint = self
        self.conn: Connection | None = None
        self.writing = False
        self.written = 0            # bytes send() accepted
        self.received = 0           # bytes read() returned, each checked against the peer's
        self.established = False
        self.eof = False
        self.close_called = False
        self.closed_event = False
        self.error_event: ConnEvent | None = None
        self.write_at: float | None = None
        self.read_at: float | None = None
        self.reads: list[tuple[float, int]] = []  # (when, bytes) of each read, when recording

    def wake_time(self) -> float | None:
        w, r = self.write_at, self.read_at
        if w is None:
            return r
        return w if r is None or w < r else r

    def state(self) -> State:
        if self.conn is not None:
            return self.conn.state
        return State.LISTEN if self.role == "server" else State.CLOSED


# ---------------------------------------------------------------------- the simulation

def _rng(seed: int, name: str) -> random.Random:
    return random.Random(f"tcpstack-sim/{seed}/{name}")


class Simulation:
    def __init__(self, scenario: Scenario, *, record: bool = False) -> None:
        self.scenario = sc = scenario
        self.now = 0.0
        self.steps = 0
        self.record = record
        self.wire_log: list[WireRecord] = []
        self.trace: deque[tuple[object, ...]] = deque(maxlen=TRACE_LEN)
        self.transitions: list[tuple[float, str, State, State, str]] = []
        # A test's own loss pattern on top of the faults: (sender, packet, now) -> drop it?
        self.drop_filter: Callable[[str, bytes, float], bool] | None = None
        self.time_wait_entered: dict[str, float] = {}
        self.time_wait_heard: dict[str, float] = {}
        self.time_wait_reset: list[str] = []  # sides whose TIME_WAIT a stray's RST ended
        self._fingerprint = hashlib.blake2b(digest_size=16)
        self._flight: list[tuple[float, int, str, bytes, int]] = []
        self._order = itertools.count()
        self._cause = "app"
        self._packet_in: bytes | None = None
        self._failure: SimulationFailure | None = None  # raised in a handler the pass fences
        self._started = False
        self._ack_echoes = 0
        self._typed: Event | None = None  # the event being handed over, as the stack made it

        seed = sc.seed
        self.a = NetworkStack(A_ADDR, sc.config_a, self._isn(sc.isn_a, "a"))
        self.b = NetworkStack(B_ADDR, sc.config_b, self._isn(sc.isn_b, "b"))
        self.a.on_transition = self._hook("a")
        self.b.on_transition = self._hook("b")
        self.wires = {"a": Wire("a", "b", sc.faults_ab, _rng(seed, "link a->b")),
                      "b": Wire("b", "a", sc.faults_ba, _rng(seed, "link b->a"))}
        self.windows = {name: GrowingWindow(_rng(seed, f"window {name}"))
                        for name, on in (("a", sc.growing_window_a), ("b", sc.growing_window_b))
                        if on}
        data = _rng(seed, "data")
        self.client = Endpoint("a", "client", self.a, sc.app_a, data.randbytes(sc.size_ab),
                               _rng(seed, "app a"))
        self.server = Endpoint("b", "server", self.b, sc.app_b, data.randbytes(sc.size_ba),
                               _rng(seed, "app b"))
        self.client.peer, self.server.peer = self.server, self.client
        self.endpoints = (self.client, self.server)
        self.a.on_event = self._handler(self.client)
        self.b.on_event = self._handler(self.server)

    def _isn(self, fixed: int | None, name: str) -> IsnGenerator:
        if fixed is not None:
            return FixedIsn(fixed)
        return IsnGenerator(secret=_rng(self.scenario.seed, f"isn {name}").randbytes(16))

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """The server listens, the client connects."""
        self._started = True
        self._guard(self._start)

    def _start(self) -> None:
        self.b.listen(self.scenario.port)
        conn = self.a.connect(B_ADDR, self.scenario.port, self.now)
        if self.client.conn is not conn:
            self.fail("connect() returned a connection other than the one that changed state")
        self._service(self.client)
        self._check()

    def run(self) -> None:
        """Run until nothing is left to happen, then check the end state (clean runs)."""
        if not self._started:
            self.start()
        while self.step():
            pass
        if self.scenario.clean:
            self._guard(self.check_end)

    def run_until(self, condition: Callable[[], bool]) -> None:
        if not self._started:
            self.start()
        while not condition():
            if not self.step():
                self.fail("the run went quiet before the awaited condition held")

    def step(self) -> bool:
        """Process the next thing that happens; False when nothing is left."""
        return self._guard(self._step)

    def _guard(self, action: Callable[[], bool | None]) -> bool:
        try:
            return bool(action())
        except SimulationFailure:
            raise
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.fail(f"{type(exc).__name__}: {exc} (raised at {where.filename}:{where.lineno})",
                      cause=exc)

    def _step(self) -> bool:
        when = None
        what: object = None
        if self._flight:
            when, what = self._flight[0][0], "link"
        for stack in (self.a, self.b):
            deadline = stack.next_deadline()
            if deadline is not None and (when is None or deadline < when):
                when, what = deadline, stack
        for ep in self.endpoints:
            wake = ep.wake_time()
            if wake is not None and (when is None or wake < when):
                when, what = wake, ep
        if when is None:
            return False
        sc = self.scenario
        self.steps += 1
        if when > sc.max_time:
            self.fail(f"still busy at virtual time {when:.3f} s, past the {sc.max_time} s bound "
                      "(a livelock, or a transfer that stopped progressing)")
        if self.steps > sc.max_steps:
            self.fail(f"still busy after {sc.max_steps} steps (a livelock?)")
        if when > self.now:
            self.now = when
        if what == "link":
            before = self._activity()
            only_pure_acks = self._arrive()
            self._check()
            self._watch_ack_storm(only_pure_acks, before)
            return True
        if isinstance(what, NetworkStack):
            self._cause = "timer"
            ep = self.client if what is self.a else self.server
            self.trace.append((self.now, "timer", ep.name))
            what.on_timer(self.now)
            self._after_pass(ep)
        else:
            assert isinstance(what, Endpoint)
            self._cause = "app"
            self._wake(what)
            self._service(what)
        self._check()
        return True

    # ------------------------------------------------------------------ the link

    def _arrive(self) -> bool:
        """Deliver the next packet (a batch: all due at this instant, one pass per receiving
        stack); True when all of them were bare ACKs."""
        flight = self._flight
        due = flight[0][0]
        only_pure_acks = True
        batches: dict[str, list[tuple[bytes, int]]] = {"a": [], "b": []}
        while True:
            _, _, receiver, packet, flipped = heapq.heappop(flight)
            if only_pure_acks and not _is_pure_ack(packet):
                only_pure_acks = False
            batches[receiver].append((packet, flipped))
            if not (self.scenario.batch and flight and flight[0][0] == due):
                break
        for ep in self.endpoints:
            if batches[ep.name]:
                self._service(ep, self._deliver(ep.name, batches[ep.name]))
        return only_pure_acks

    def _activity(self) -> tuple[int, int]:
        """(packets sent, data segments sent plus bytes read) over both directions."""
        a, b = self.wires["a"].stats, self.wires["b"].stats
        return (a.sent + b.sent,
                a.data_segments + b.data_segments + self.client.received + self.server.received)

    def _watch_ack_storm(self, only_pure_acks: bool, before: tuple[int, int]) -> None:
        """Bare ACKs that only draw bare ACKs, with no data moving, are an ACK storm (two
        sides each finding the other's segments unacceptable): fail fast rather than spin."""
        sent, progress = self._activity()
        if progress != before[1] or not only_pure_acks:
            self._ack_echoes = 0
        elif sent > before[0]:
            self._ack_echoes += 1
            if self._ack_echoes > ACK_STORM:
                self.fail(f"ACK storm: {ACK_STORM} bare ACKs in a row each answered by a bare "
                          "ACK, with no data moving")

    def _deliver(self, receiver: str, arrivals: list[tuple[bytes, int]]) -> Iterator[bytes]:
        """The packets of one batch, as the stack's pass takes them one by one: each is
        checked once the stack has received it, before the next."""
        for packet, flipped in arrivals:
            yield from self._arrival(receiver, packet, flipped)

    def _arrival(self, receiver: str, packet: bytes, flipped: int) -> Iterator[bytes]:
        now = self.now
        stack = self.a if receiver == "a" else self.b
        ep = self.client if receiver == "a" else self.server
        self.wires["b" if receiver == "a" else "a"].stats.delivered += 1
        self._fingerprint.update(_STAMP.pack(now, ord(receiver)))
        self.trace.append((now, "in", receiver, packet, flipped))
        if ep.conn is not None and ep.conn.state is State.TIME_WAIT:
            self.time_wait_heard[receiver] = now
        counters = stack.counters
        errors = counters["in_errors"] + counters["ip6_disabled"]
        segs_in = counters["segs_in"]
        tcp_bad = counters["tcp_bad_checksum"]
        ip_bad = counters["ip_bad_checksum"]
        self._cause = "packet"
        self._packet_in = packet
        yield packet  # the stack receives it here
        self._packet_in = None
        counted = counters["in_errors"] + counters["ip6_disabled"] - errors
        if flipped < 0:
            if counted:
                self.fail(f"{receiver} counted an intact packet as malformed "
                          f"({_counter_diff(counters)})")
            return
        where = f"a packet to {receiver} with a bit flipped in byte {flipped}"
        if counted != 1 or counters["segs_in"] != segs_in:
            self.fail(f"{where} was not dropped as malformed: expected in_errors +1 and "
                      f"segs_in unchanged, got in_errors +{counted}, segs_in "
                      f"+{counters['segs_in'] - segs_in}")
        if flipped >= _IP_HEADER_LEN and counters["tcp_bad_checksum"] != tcp_bad + 1:
            self.fail(f"{where} (TCP part) was not counted as tcp_bad_checksum")
        if (flipped == 1 or 4 <= flipped < _IP_HEADER_LEN) and \
                counters["ip_bad_checksum"] != ip_bad + 1:
            self.fail(f"{where} (IP header) was not counted as ip_bad_checksum")

    def _transmit(self, sender: str, stack: NetworkStack) -> None:
        packets = [packet_bytes(p) for p in stack.output]  # no offload: no GSO
        stack.output.clear()
        wire = self.wires[sender]
        peer = self.wires[wire.receiver]
        faults = wire.faults
        rng = wire.rng
        stats = wire.stats
        now = self.now
        for packet in packets:
            self._fingerprint.update(_STAMP.pack(now, ord(sender)))
            self._fingerprint.update(packet)
            problem = wire.note(packet, peer)
            if problem is not None:
                self._log(sender, packet, "sent")
                self.fail(problem)
            shaper = self.windows.get(sender)
            if shaper is not None:
                shift = wire.wscale if wire.wscale is not None and peer.wscale is not None \
                    else 0
                packet = shaper.shape(packet, shift)
            if self.drop_filter is not None and self.drop_filter(sender, packet, now):
                self._log(sender, packet, "filtered")
                stats.dropped += 1
                continue
            if faults.drop and rng.random() < faults.drop:
                self._log(sender, packet, "dropped")
                stats.dropped += 1
                continue
            copies = 1
            if faults.duplicate and rng.random() < faults.duplicate:
                copies = 2
                stats.duplicated += 1
            fate = "sent" if copies == 1 else "dup"
            for _ in range(copies):
                due = now + faults.delay
                if faults.jitter:
                    due += rng.random() * faults.jitter
                if faults.reorder and rng.random() < faults.reorder:
                    due += faults.reorder_delay * (0.2 + 0.8 * rng.random())
                    stats.reordered += 1
                    fate += "+held"
                else:
                    if due < wire.tail:
                        due = wire.tail
                    wire.tail = due
                flipped = -1
                copy = packet
                if faults.corrupt and rng.random() < faults.corrupt:
                    copy, flipped = self.corrupt(packet, rng)
                    stats.corrupted += 1
                    fate += "+flip"
                heapq.heappush(self._flight, (due, next(self._order), wire.receiver, copy,
                                              flipped))
            self._log(sender, packet, fate)

    def corrupt(self, packet: bytes, rng: random.Random) -> tuple[bytes, int]:
        """Flip one random bit of one random byte; return the packet and the byte's index."""
        index = rng.randrange(len(packet))
        damaged = bytearray(packet)
        damaged[index] ^= 1 << rng.randrange(8)
        return bytes(damaged), index

    def _log(self, sender: str, packet: bytes, fate: str) -> None:
        self.trace.append((self.now, "out", sender, packet, fate))
        if self.record:
            self.wire_log.append(WireRecord(self.now, sender, packet, fate))

    # ------------------------------------------------------------------ the applications

    def _service(self, ep: Endpoint, packets: Iterable[bytes] = ()) -> None:
        """One service pass of `ep`'s stack: `packets` in, events to the application,
        flush; then what it sent goes on the link."""
        ep.stack.service(packets, self.now)
        self._after_pass(ep)

    def _after_pass(self, ep: Endpoint) -> None:
        stack = ep.stack
        for _ in range(10_000):
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            if stack.counters["internal_errors"]:
                exc = stack.last_internal_error
                assert exc is not None
                where = traceback.extract_tb(exc.__traceback__)[-1]
                self.fail(f"{type(exc).__name__}: {exc} (raised at {where.filename}:"
                          f"{where.lineno}; the stack counted it in internal_errors)",
                          cause=exc)
            self._transmit(ep.name, stack)
            if not stack.events:
                return
            stack.service((), self.now)  # the pass stopped after its rounds: go on
        self.fail("stacks and applications kept answering each other at one instant")

    def _handler(self, ep: Endpoint) -> Callable[[Connection, Event], None]:
        def on_event(conn: Connection, typed: Event) -> None:
            event = typed.kind
            self._typed = typed
            if self._failure is not None:
                return  # the run has failed; the pass is only finishing
            self._cause = "app"
            try:
                if conn is not ep.conn:
                    self.fail(f"{event.name} for a connection on {ep.name} that is not the "
                              "one the application holds")
                self._on_event(ep, event)
            except SimulationFailure as failure:
                self._failure = failure  # the pass fences handlers; raised after it
        return on_event

    def _on_event(self, ep: Endpoint, event: ConnEvent) -> None:
        self.trace.append((self.now, "event", ep.name, event.name))
        where = f"{ep.name} ({ep.role})"
        if ep.closed_event:
            self.fail(f"{where} reported {event.name} after CLOSED")
        if event is ConnEvent.ESTABLISHED:
            if ep.established:
                self.fail(f"{where} reported ESTABLISHED twice")
            ep.established = True
            if ep.spec.write_delay > 0:
                ep.write_at = self.now + ep.spec.write_delay
            else:
                ep.writing = True
                self._write(ep)
        elif event in (ConnEvent.RESET, ConnEvent.REFUSED, ConnEvent.TIMEOUT):
            ep.error_event = event
            error = ep.conn.error if ep.conn is not None else None
            if typed_error(self._typed) != error:
                self.fail(f"{where}'s {event.name} carried {typed_error(self._typed)!r}, but "
                          f"the connection's error is {error!r}")
            if self.scenario.clean:
                self.fail(f"{where} reported {event.name} ({error}) in a run that must "
                          "complete cleanly")
        elif event is ConnEvent.CLOSED:
            ep.closed_event = True
        elif not ep.established:
            self.fail(f"{where} reported {event.name} before ESTABLISHED")
        elif event is ConnEvent.DATA:
            if ep.eof:
                self.fail(f"{where} reported DATA after EOF")
            self._readable(ep)
        elif event is ConnEvent.EOF:
            if ep.eof:
                self.fail(f"{where} reported EOF twice")
            ep.eof = True
            self._readable(ep)
            self._maybe_close(ep)
        elif event is ConnEvent.WRITABLE and ep.writing:
            self._write(ep)

    def _wake(self, ep: Endpoint) -> None:
        now = self.now
        if ep.write_at is not None and ep.write_at <= now:
            ep.write_at = None
            ep.writing = True
            self._write(ep)
        if ep.read_at is not None and ep.read_at <= now:
            ep.read_at = None
            if self._read(ep, once=True):
                ep.read_at = now + ep.spec.read_interval  # a full read: maybe more waits

    def _write(self, ep: Endpoint) -> None:
        conn = ep.conn
        assert conn is not None
        size = len(ep.data)
        chunk = ep.spec.write_chunk
        while ep.written < size:
            n = min(size - ep.written, ep.rng.randint(1, chunk))
            taken = conn.send(ep.view[ep.written:ep.written + n])
            if not 0 <= taken <= n:
                self.fail(f"send() of {n} bytes on {ep.name} returned {taken}")
            ep.written += taken
            self.trace.append((self.now, "write", ep.name, f"{taken} of {n} bytes"))
            if taken < n:
                break  # the send buffer is full: wait for WRITABLE
        self._maybe_close(ep)

    def _maybe_close(self, ep: Endpoint) -> None:
        if ep.close_called or not ep.writing or ep.written < len(ep.data):
            return
        policy = ep.spec.close
        if policy == "after_write" or (policy == "after_eof" and ep.eof):
            assert ep.conn is not None
            ep.close_called = True
            self.trace.append((self.now, "close", ep.name))
            ep.conn.close(self.now)

    def _readable(self, ep: Endpoint) -> None:
        if ep.spec.read_interval > 0:
            if ep.read_at is None:
                ep.read_at = self.now + ep.spec.read_interval
        else:
            self._read(ep, once=False)

    def _read(self, ep: Endpoint, once: bool) -> bool:
        """read() what the reader wants; True when the last read filled its size."""
        conn = ep.conn
        assert conn is not None
        size = ep.spec.read_size
        full = False
        while True:
            data = conn.read(size)
            if not data:
                full = False
                break
            self._check_delivery(ep, data)
            self.trace.append((self.now, "read", ep.name, f"{len(data)} bytes"))
            if self.record:
                ep.reads.append((self.now, len(data)))
            full = size >= 0 and len(data) >= size
            if once or not full:
                break
        return full

    def _check_delivery(self, ep: Endpoint, data: bytes) -> None:
        """The reader's bytes so far are a prefix of what the peer's writer gave send()."""
        start = ep.received
        end = start + len(data)
        peer = ep.peer
        if end > peer.written:
            self.fail(f"{ep.name} has read {end} bytes but {peer.name} has written only "
                      f"{peer.written}: bytes were duplicated or invented")
        if peer.view[start:end] != data:
            expected = peer.data[start:end]
            first = next(i for i in range(len(data)) if data[i] != expected[i])
            self.fail(f"{ep.name} read bytes {start}..{end} that differ from what {peer.name} "
                      f"wrote, first at byte {start + first}: corrupted, duplicated or out of "
                      "order")
        ep.received = end

    # ------------------------------------------------------------------ invariants

    def _hook(self, name: str) -> Callable[[Connection, State, State], None]:
        def on_transition(conn: Connection, old: State, new: State) -> None:
            self._on_transition(name, conn, old, new)
        return on_transition

    def _on_transition(self, name: str, conn: Connection, old: State, new: State) -> None:
        ep = self.client if name == "a" else self.server
        if ep.conn is None:
            ep.conn = conn
            if name == "b":
                self.b.unlisten(self.scenario.port)  # the server accepts one connection
        elif ep.conn is not conn:
            self.fail(f"a second connection appeared on {name} ({old} -> {new})")
        self.transitions.append((self.now, name, old, new, self._cause))
        self.trace.append((self.now, "state", name, f"{old} -> {new}"))
        if not isinstance(new, State):
            self.fail(f"{name} entered {new!r}, which is not a State")
        if (old, new) not in ARCS:
            self.fail(f"{name} went {old} -> {new}, which no entry of TRANSITIONS allows")
        if new is State.TIME_WAIT:
            self.time_wait_entered[name] = self.now
        elif old is State.TIME_WAIT:
            self._check_time_wait_end(name)
        self._check_pair()

    def _check_time_wait_end(self, name: str) -> None:
        ep = self.client if name == "a" else self.server
        entered = self.time_wait_entered[name]
        twice_msl = 2 * ep.stack.config.msl
        if self._cause == "timer":
            heard = max(entered, self.time_wait_heard.get(name, entered))
            if self.now < entered + twice_msl - EPS:
                self.fail(f"TIME_WAIT on {name} ended {self.now - entered:.6f} s after it "
                          f"began; expected at least 2*MSL = {twice_msl} s")
            if self.now > heard + twice_msl + EPS:
                self.fail(f"TIME_WAIT on {name} lasted until t={self.now:.6f}, more than "
                          f"2*MSL = {twice_msl} s after the last segment it got (t={heard:.6f})")
            return
        packet = self._packet_in
        peer = ep.peer.state()
        flags = _flags(packet) if packet is not None else 0
        if self._cause == "packet" and flags & RST and peer is State.CLOSED:
            self.time_wait_reset.append(name)  # a stray's RST from the closed peer: RFC 1337
            return
        self.fail(f"TIME_WAIT on {name} ended early (cause: {self._cause}, flags "
                  f"{tcpseg.flags_str(flags)}) while the peer was {peer}; expected 2*MSL "
                  "to pass, or a RST from a peer that had already closed")

    def _aborted(self) -> bool:
        return any(ep.conn is not None and ep.conn.error is not None for ep in self.endpoints)

    def _check_pair(self) -> None:
        pair = (self.client.state(), self.server.state())
        if pair not in COEXIST and not self._aborted():
            self.fail(f"client {pair[0]} and server {pair[1]} cannot coexist on the two ends "
                      "of one connection")

    def _check(self) -> None:
        """After every event: states, timers."""
        self._check_pair()
        now = self.now
        for ep in self.endpoints:
            stack = ep.stack
            deadline = stack.next_deadline()
            if deadline is not None and deadline < now - EPS:
                self.fail(f"{ep.name}'s next deadline {deadline:.6f} lies in the past")
            conn = ep.conn
            if conn is None:
                continue
            if conn.state is State.CLOSED:
                if conn.deadline is not None:
                    self.fail(f"{ep.name} is CLOSED with a timer at {conn.deadline:.6f}")
                if conn in stack.connections.values():
                    self.fail(f"{ep.name} is CLOSED and still in the stack's connections")
            elif conn.deadline is not None and (deadline is None or
                                                deadline > conn.deadline + EPS):
                self.fail(f"{ep.name} ({conn.state}) wants its timer at {conn.deadline:.6f} "
                          f"but the stack's next deadline is {deadline}")

    def check_end(self) -> None:
        """The end of a clean run: everything delivered, both CLOSED, nothing left running."""
        for ep in self.endpoints:
            where = f"{ep.name} ({ep.role})"
            conn = ep.conn
            if conn is None or not ep.established:
                self.fail(f"the run went quiet and {where} never reached ESTABLISHED")
            if ep.written != len(ep.data):
                self.fail(f"the run went quiet with {where} having written {ep.written} of "
                          f"{len(ep.data)} bytes")
            if ep.received != len(ep.peer.data):
                self.fail(f"the run went quiet with {where} having read {ep.received} of the "
                          f"{len(ep.peer.data)} bytes {ep.peer.name} wrote")
            if not ep.eof:
                self.fail(f"{where} read everything but never saw EOF")
            if conn.read() != b"":
                self.fail(f"{where} still had bytes to read after EOF")
            if ep.spec.close != "never" and not ep.close_called:
                self.fail(f"{where} never closed")
            if conn.state is not State.CLOSED or not ep.closed_event:
                self.fail(f"the run went quiet with {where} in {conn.state}, expected CLOSED "
                          f"(CLOSED event {'seen' if ep.closed_event else 'missing'})")
            if conn.deadline is not None or ep.stack.next_deadline() is not None:
                self.fail(f"{where} is CLOSED but a timer still runs")
            if ep.stack.connections:
                self.fail(f"{ep.name}'s stack still holds {len(ep.stack.connections)} "
                          "connection(s)")
            before = [old for _, n, old, new, _ in self.transitions
                      if n == ep.name and new is State.CLOSED]
            if before not in ([State.TIME_WAIT], [State.LAST_ACK]):
                self.fail(f"{where} reached CLOSED from {before}, expected from TIME_WAIT or "
                          "LAST_ACK, once")
        if not self.time_wait_entered:
            self.fail("both sides closed and neither went through TIME_WAIT")
        if self._flight:
            self.fail(f"{len(self._flight)} packets still in flight at the end")

    # ------------------------------------------------------------------ reporting

    def fingerprint(self) -> str:
        """A hash of every packet sent and delivered, with its time: equal runs, equal hash."""
        return self._fingerprint.hexdigest()

    def stats(self) -> str:
        return "; ".join(f"{s}->{w.receiver}: {w.stats}" for s, w in self.wires.items())

    def fail(self, what: str, cause: BaseException | None = None) -> NoReturn:
        sc = self.scenario
        lines = [
            f"seed {sc.seed}: {what}",
            f"replay: {sc.replay}",
            f"at t={self.now:.6f} s, step {self.steps}: a (client) {self.client.state()}, "
            f"b (server) {self.server.state()}; a read {self.client.received}/"
            f"{len(self.server.data)}, b read {self.server.received}/{len(self.client.data)}",
            "scenario:", sc.describe(),
            f"link: {self.stats()}",
            f"the last {len(self.trace)} things that happened:",
            *("  " + _format(item) for item in self.trace),
            f"(seed {sc.seed}; replay: {sc.replay})",
        ]
        raise SimulationFailure("\n".join(lines)) from cause


def typed_error(event: Event | None) -> str | None:
    """The error a failed end's event carries (RESET, REFUSED, TIMEOUT)."""
    return event.error if isinstance(event, Reset | Refused | TimedOut) else None


def _is_pure_ack(packet: bytes) -> bool:
    try:
        _sp, _dp, _seq, _ack, offset, flags, _win = _TCP_HEAD.unpack_from(packet,
                                                                          _IP_HEADER_LEN)
    except struct.error:
        return True
    return not flags & (SYN | FIN | RST) and len(packet) == _IP_HEADER_LEN + (offset >> 4) * 4


def _wscale_option(packet: bytes) -> int | None:
    """The window scale option of a SYN, if it carries one."""
    end = _IP_HEADER_LEN + (packet[_IP_HEADER_LEN + 12] >> 4) * 4
    i = _IP_HEADER_LEN + 20
    while i < end:
        kind = packet[i]
        if kind == tcpseg.OPT_EOL:
            break
        if kind == tcpseg.OPT_NOP:
            i += 1
            continue
        if i + 1 >= end or packet[i + 1] < 2:
            break
        if kind == tcpseg.OPT_WSCALE and packet[i + 1] == 3 and i + 2 < end:
            return packet[i + 2]
        i += packet[i + 1]
    return None


def _flags(packet: bytes) -> int:
    try:
        return _TCP_HEAD.unpack_from(packet, _IP_HEADER_LEN)[5]
    except struct.error:
        return 0


def _counter_diff(counters: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counters.items() if "err" in k or "bad" in k)


def _format(item: tuple[object, ...]) -> str:
    now, kind, side, *rest = item
    head = f"t={now:.6f} {kind:5} {side}"
    if kind not in ("in", "out"):
        return f"{head} {' '.join(str(r) for r in rest)}"
    packet, fate = rest
    assert isinstance(packet, bytes)
    arrow = "a->b" if (side == "a") == (kind == "out") else "b->a"
    try:
        _sp, _dp, seq, ack, offset, flags, window = _TCP_HEAD.unpack_from(packet,
                                                                          _IP_HEADER_LEN)
        length = len(packet) - _IP_HEADER_LEN - (offset >> 4) * 4
        body = (f"[{tcpseg.flags_str(flags)}] seq {seq} ack {ack} win {window} "
                f"len {length}")
    except struct.error:
        body = f"{len(packet)} bytes, unparsable"
    if kind == "in":
        tail = f" (bit flipped in byte {fate})" if isinstance(fate, int) and fate >= 0 else ""
        return f"{head} arrives {arrow} {body}{tail}"
    return f"{head} leaves  {arrow} {body} [{fate}]"
