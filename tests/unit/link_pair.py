"""Two NetworkStacks joined back to back by an in-memory link, on a virtual clock.

The link is a FIFO with a fixed one-way delay in each direction and, if asked, a rate: a
packet then waits for the ones before it to be serialized at `rate` bytes a second (an
unbounded queue, so nothing is lost to it), which gives the path a bandwidth-delay product.
Time only moves when the
harness moves it: `step()` puts what the stacks sent on the wire, then jumps the clock
straight to the next thing that happens (a packet arriving or a stack's timer), so a
60-second TIME_WAIT costs one step, not 60 seconds. Nothing here sleeps or opens a socket.
The stacks run the production service pass (`NetworkStack.service` for the packets that
arrive at one instant, `on_timer` for timers), as the driver does; the application here is
the test, which acts between steps, and its calls are flushed by the next step's pass.

Every packet that goes on the wire is recorded as a `Frame` in `frames` (dropped ones too,
marked `dropped`). A `drop` predicate chooses which frames are lost; `observers` see every
frame as it is sent and as it is delivered, which is where invariants such as "the sender
respects the advertised window" are checked at every step (see `WindowMonitor`).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tcpstack.net import ipv4, ipv6
from tcpstack.stack import NetworkStack, packet_bytes
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.isn import IsnGenerator
from tcpstack.tcp.segment import Segment
from tcpstack.tcp.seq import HALF, MASK
from tcpstack.tcp.state import State

A_ADDR = bytes([10, 0, 0, 1])
B_ADDR = bytes([10, 0, 0, 2])
A6_ADDR = bytes.fromhex("fd000000000000000000000000000001")  # each stack's IPv6 address
B6_ADDR = bytes.fromhex("fd000000000000000000000000000002")


class FixedIsn(IsnGenerator):
    """An ISN generator that answers a fixed number per local address (default: one for all),
    so a test can place the sequence space where it wants, e.g. just before the 2**32 wrap;
    and a fixed timestamp clock offset (default 0: TSval is the virtual time in ms)."""

    def __init__(self, isn: int, per_address: dict[bytes, int] | None = None, *,
                 ts_offset: int = 0) -> None:
        super().__init__(secret=b"\x00" * 16)
        self._isn = isn
        self._per_address = per_address or {}
        self._ts_offset = ts_offset

    def isn(self, local: bytes, local_port: int, remote: bytes, remote_port: int,
            now: float) -> int:
        return self._per_address.get(local, self._isn)

    def ts_offset(self, local: bytes, remote: bytes) -> int:
        return self._ts_offset


@dataclass
class Frame:
    """One IPv4 packet put on the wire by `sender` ("a" or "b") at virtual time `time`."""

    number: int
    time: float
    sender: str
    packet: bytes
    dropped: bool = False
    delivered_at: float | None = None
    _segment: Segment | None = field(default=None, repr=False)

    @property
    def receiver(self) -> str:
        return "b" if self.sender == "a" else "a"

    @property
    def ip(self) -> ipv4.IPv4Packet | ipv6.IPv6Packet:
        if self.packet[0] >> 4 == 6:
            return ipv6.parse(self.packet)
        return ipv4.parse(self.packet)

    @property
    def is_tcp(self) -> bool:
        return self.ip.proto == ipv4.PROTO_TCP

    @property
    def segment(self) -> Segment:
        """The TCP segment inside (checksum verified, as the receiving stack would)."""
        if self._segment is None:
            ip = self.ip
            pseudo = ipv4.pseudo_header_sum(ip.src, ip.dst, ipv4.PROTO_TCP)
            self._segment = tcpseg.parse(ip.payload, pseudo)
        return self._segment

    @property
    def flags(self) -> str:
        return tcpseg.flags_str(self.segment.flags)

    @property
    def payload_len(self) -> int:
        return len(self.segment.payload)

    def __str__(self) -> str:
        if not self.is_tcp:
            return f"#{self.number} t={self.time:.6f} {self.sender}->{self.receiver} proto " \
                   f"{self.ip.proto}"
        s = self.segment
        lost = " DROPPED" if self.dropped else ""
        return (f"#{self.number} t={self.time:.6f} {self.sender}->{self.receiver} "
                f"[{self.flags}] seq {s.seq} ack {s.ack} win {s.window} "
                f"len {len(s.payload)}{lost}")


DropPredicate = Callable[[Frame], bool]
Observer = Callable[["LinkPair", Frame, str], None]  # (pair, frame, "sent" | "delivered")


class LinkPair:
    """Stack `a` (10.0.0.1, fd00::1) and stack `b` (10.0.0.2, fd00::2) with a link between
    them; `ipv6`: `connect` opens connections over IPv6; `dual_stack`: the stacks have
    their IPv6 addresses, and `connect` stays on IPv4."""

    def __init__(self, *, config_a: TcpConfig | None = None, config_b: TcpConfig | None = None,
                 isn_a: IsnGenerator | None = None, isn_b: IsnGenerator | None = None,
                 delay: float = 0.005, drop: DropPredicate | None = None,
                 rate: float | None = None, ipv6: bool = False,
                 dual_stack: bool = False) -> None:
        both = ipv6 or dual_stack  # else IPv4 only, as the stacks of most tests
        self.a = NetworkStack(A_ADDR, config_a, isn_a, address6=A6_ADDR if both else None)
        self.b = NetworkStack(B_ADDR, config_b, isn_b, address6=B6_ADDR if both else None)
        self.ipv6 = ipv6
        self.now = 0.0
        self.delay = delay
        self.drop = drop
        self.rate = rate  # bytes a second each way; None: no limit
        self._link_free = {"a": 0.0, "b": 0.0}  # when each sender's last packet is serialized
        self.frames: list[Frame] = []
        self.observers: list[Observer] = []
        # (time, connection's stack name, local port, old state, new state), in order.
        self.transitions: list[tuple[float, str, int, State, State]] = []
        self._flight: list[tuple[float, int, Frame]] = []
        self._numbers = itertools.count()
        self.a.on_transition = self._recorder("a")
        self.b.on_transition = self._recorder("b")

    def _recorder(self, name: str) -> Callable[[Connection, State, State], None]:
        def record(conn: Connection, old: State, new: State) -> None:
            self.transitions.append((self.now, name, conn.local_port, old, new))
        return record

    # ------------------------------------------------------------------ naming

    def stack(self, name: str) -> NetworkStack:
        return self.a if name == "a" else self.b

    def name_of(self, conn: Connection) -> str:
        return "a" if conn.local_addr in (A_ADDR, A6_ADDR) else "b"

    def stack_of(self, conn: Connection) -> NetworkStack:
        return self.stack(self.name_of(conn))

    def events_of(self, conn: Connection) -> list[ConnEvent]:
        """The kind of every event the stack has reported for `conn` so far, in order."""
        return [ev.kind for c, ev in self.stack_of(conn).events if c is conn]

    def states_of(self, conn: Connection) -> list[State]:
        """The states `conn` went through, starting from its first recorded transition."""
        name = self.name_of(conn)
        mine = [(old, new) for _, n, port, old, new in self.transitions
                if n == name and port == conn.local_port]
        return [mine[0][0], *(new for _, new in mine)] if mine else [conn.state]

    def tcp_frames(self, sender: str | None = None) -> list[Frame]:
        return [f for f in self.frames if f.is_tcp and (sender is None or f.sender == sender)]

    # ------------------------------------------------------------------ the application

    def connect(self, port: int, now_listen: bool = True) -> Connection:
        """`a` opens a connection to `b`:`port` (listening there first if asked)."""
        if now_listen and port not in self.b.listeners:
            self.b.listen(port)
        return self.a.connect(B6_ADDR if self.ipv6 else B_ADDR, port, self.now)

    def established_pair(self, port: int = 80) -> tuple[Connection, Connection]:
        """Handshake a connection and return (client on a, server on b)."""
        client = self.connect(port)
        self.run_until(lambda: client.state is State.ESTABLISHED and self.accepted(port))
        return client, self.accepted(port)[0]

    def accepted(self, port: int) -> list[Connection]:
        """Server-side connections on `b`:`port` that reported ESTABLISHED."""
        return [c for c, ev in self.b.events
                if ev.kind is ConnEvent.ESTABLISHED and c.local_port == port]

    def send(self, conn: Connection, data: bytes) -> int:
        return conn.send(data)

    def read(self, conn: Connection, max_bytes: int = -1) -> bytes:
        return conn.read(max_bytes)

    def close(self, conn: Connection) -> None:
        conn.close(self.now)

    # ------------------------------------------------------------------ the link and clock

    def _put_on_wire(self) -> None:
        for name in ("a", "b"):
            stack = self.stack(name)
            stack.service((), self.now)  # what the application's calls changed
            _check_internal_errors(stack)
            packets = [packet_bytes(p) for p in stack.output]  # no offload: no GSO
            stack.output.clear()
            for packet in packets:
                frame = Frame(next(self._numbers), self.now, name, packet)
                frame.dropped = bool(self.drop is not None and self.drop(frame))
                self.frames.append(frame)
                for observer in self.observers:
                    observer(self, frame, "sent")
                if not frame.dropped:
                    heapq.heappush(self._flight, (self._arrival(name, len(packet)),
                                                  frame.number, frame))

    def _arrival(self, sender: str, size: int) -> float:
        """When a packet of `size` bytes put on the wire now reaches the far end."""
        if self.rate is None:
            return self.now + self.delay
        done = max(self.now, self._link_free[sender]) + size / self.rate
        self._link_free[sender] = done
        return done + self.delay

    def next_event_time(self) -> float | None:
        times = [t for t in (self._flight[0][0] if self._flight else None,
                             self.a.next_deadline(), self.b.next_deadline()) if t is not None]
        return min(times) if times else None

    def step(self, horizon: float | None = None) -> bool:
        """Send what the stacks owe, then advance to the next arrival or timer (not past
        `horizon`) and process everything due then. False when nothing is left to happen."""
        self._put_on_wire()
        when = self.next_event_time()
        if when is None or (horizon is not None and when > horizon):
            if horizon is not None:
                self.now = max(self.now, horizon)
            return False
        self.now = max(self.now, when)
        batches: dict[str, list[bytes]] = {"a": [], "b": []}
        while self._flight and self._flight[0][0] <= self.now:
            _, _, frame = heapq.heappop(self._flight)
            frame.delivered_at = self.now
            for observer in self.observers:
                observer(self, frame, "delivered")
            batches[frame.receiver].append(frame.packet)
        for name, batch in batches.items():
            if batch:  # one pass per batch, as the driver makes per read of the TUN
                self.stack(name).service(batch, self.now)
                _check_internal_errors(self.stack(name))
        for stack in (self.a, self.b):
            deadline = stack.next_deadline()
            if deadline is not None and deadline <= self.now:
                stack.on_timer(self.now)
                _check_internal_errors(stack)
        self._put_on_wire()
        return True

    @property
    def in_flight(self) -> int:
        return len(self._flight)

    def run_until(self, condition: Callable[[], bool], timeout: float = 120.0,
                  max_steps: int = 1_000_000, between: Callable[[], None] | None = None) -> None:
        """Step until `condition()` holds; `between` runs after every step (the application).
        Fails the test, with the last frames, if virtual time runs out or nothing can happen."""
        limit = self.now + timeout
        for _ in range(max_steps):
            if condition():
                return
            progressed = self.step(horizon=limit)
            if between is not None:
                between()
            if condition():
                return
            if not progressed and (self.now >= limit or (self.next_event_time() is None
                                                         and not self._owes_output())):
                break
        tail = "\n".join(str(f) for f in self.frames[-12:])
        raise AssertionError(f"condition not reached by t={self.now:.3f} "
                             f"(stuck or too slow); last frames:\n{tail}")

    def _owes_output(self) -> bool:
        self._put_on_wire()
        return bool(self._flight)

    def settle(self, timeout: float = 30.0) -> None:
        """Deliver everything on the wire and whatever it provokes, firing only timers that
        fall due meanwhile; stops when the link is quiet (pending timers stay pending).
        Fails the test if the stacks are still talking after `timeout` of virtual time."""
        limit = self.now + timeout
        while self.now <= limit:
            self._put_on_wire()
            if not self._flight:
                return
            self.step(horizon=self._flight[0][0])
        tail = "\n".join(str(f) for f in self.frames[-8:])
        raise AssertionError(f"link never went quiet by t={self.now:.3f}; last frames:\n{tail}")

    def advance(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass, processing every arrival and timer in them."""
        limit = self.now + seconds
        while self.step(horizon=limit):
            pass
        self.now = max(self.now, limit)


class WindowMonitor:
    """Checks, for every data segment as it is sent, that its last byte lies within the
    window the receiver last advertised to that sender (RCV.NXT + RCV.WND as carried by the
    latest ACK the sender received): the sender never has more unacknowledged data than the
    peer offered. Zero-window probes carry no data, so they pass. Records the most
    unacknowledged data seen and every window size advertised, so a test can show the window
    was actually the limit."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self._edge: dict[str, int] = {}       # sender -> right edge it was last offered
        self._acked: dict[str, int] = {}      # sender -> highest ack it has received
        self._scale: dict[str, int | None] = {"a": None, "b": None}  # from each side's SYN
        self.max_outstanding: dict[str, int] = {"a": 0, "b": 0}
        self.windows_sent: dict[str, list[int]] = {"a": [], "b": []}

    def _shift(self, sender: str) -> int:
        """The scale applied to windows `sender` advertises (RFC 7323: both SYNs must offer)."""
        mine, theirs = self._scale[sender], self._scale["b" if sender == "a" else "a"]
        return mine if mine is not None and theirs is not None else 0

    def __call__(self, pair: LinkPair, frame: Frame, phase: str) -> None:
        if not frame.is_tcp:
            return
        seg = frame.segment
        if phase == "sent":
            if seg.flags & tcpseg.SYN:
                self._scale[frame.sender] = seg.options.wscale
                return
            if not seg.flags & tcpseg.RST:
                self.windows_sent[frame.sender].append(seg.window << self._shift(frame.sender))
            end = (seg.seq + len(seg.payload)) & MASK
            if seg.payload and frame.sender in self._edge:
                beyond = (end - self._edge[frame.sender]) & MASK
                if 0 < beyond < HALF:
                    self.violations.append(f"{frame}: {beyond} bytes beyond the offered window")
                outstanding = (end - self._acked[frame.sender]) & MASK
                if outstanding < HALF:
                    self.max_outstanding[frame.sender] = max(
                        self.max_outstanding[frame.sender], outstanding)
            return
        # Delivered: the receiver of this frame learns the window its sender offers.
        if seg.flags & tcpseg.ACK and not seg.flags & (tcpseg.SYN | tcpseg.RST):
            offered = seg.window << self._shift(frame.sender)
            self._edge[frame.receiver] = (seg.ack + offered) & MASK
            self._acked[frame.receiver] = seg.ack
        elif seg.flags & tcpseg.SYN and seg.flags & tcpseg.ACK:
            self._edge[frame.receiver] = (seg.ack + seg.window) & MASK  # never scaled
            self._acked[frame.receiver] = seg.ack


def _check_internal_errors(stack: NetworkStack) -> None:
    """The pass counts a bug and goes on, as it must in production; a test must not."""
    if stack.counters["internal_errors"]:
        raise AssertionError("internal error in the stack") from stack.last_internal_error


def pattern(n: int, seed: int = 0) -> bytes:
    """`n` bytes that are not periodic over any short span, so a lost, duplicated or shifted
    segment cannot go unnoticed when the result is compared."""
    return random.Random(seed).randbytes(n)
