"""A packetdrill-like harness: one NetworkStack under test and a peer that is only a script.

The test plays the peer by hand. `inject` crafts a raw IPv4/TCP packet (tcpstack's own codecs,
checksums included) and hands it to `stack.receive`; everything the stack sends back is parsed
into `Sent` records, which print like tcpdump lines so a test can pin flags, seq, ack, window,
length and options in one exact comparison:

    reply = peer.inject(SYN, seq=5000, options=tcpseg.encode_options(mss=1460))
    assert lines(reply) == ["S. seq 1000 ack 5001 win 65535 <mss 1460>"]

The stack runs the production service pass: an injected segment is a batch of one
(`NetworkStack.service`), a timer is `on_timer`, and each application call is followed by a
pass with no packets, which flushes what the call changed.

Time is virtual: `advance(seconds)` fires the stack's timers at exactly their deadlines and
nothing else moves the clock. Every state change the stack reports through its
`on_transition` hook is recorded with the time it happened.

`drives(...)` marks a test with the TRANSITIONS entries (state, trigger) it exercises, checks
while the test runs that the code really took each of them (it watches `next_state`), and
leaves the declaration on the function so test_state_table.py can prove every entry of the
table is covered by some test.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tcpstack.api.streams import CORE_COMPILED
from tcpstack.net import ipv4
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack, packet_bytes
from tcpstack.tcp import connection as connection_module
from tcpstack.tcp import listener as listener_module
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.listener import Listener
from tcpstack.tcp.segment import ACK, Options, OutSegment
from tcpstack.tcp.state import TRANSITIONS, Sends, State, Trigger
from tests.unit.link_pair import A_ADDR, B_ADDR, FixedIsn

STACK_ADDR = A_ADDR
PEER_ADDR = B_ADDR
PEER_PORT = 40000

Entry = tuple[State, Trigger]


@dataclass(frozen=True, slots=True)
class Sent:
    """One segment the stack under test put on the wire, decoded."""

    time: float
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    options: Options
    raw_options: bytes
    payload: bytes

    def __str__(self) -> str:
        """tcpdump's shape: `S. seq 1000 ack 5001 win 65535 len 10 <mss 1460,wscale 5>`.
        The ack is shown when the ACK flag is set or the field is not zero."""
        text = f"{tcpseg.flags_str(self.flags)} seq {self.seq}"
        if self.flags & ACK or self.ack:
            text += f" ack {self.ack}"
        text += f" win {self.window}"
        if self.payload:
            text += f" len {len(self.payload)}"
        opts = []
        if self.options.mss is not None:
            opts.append(f"mss {self.options.mss}")
        if self.options.sack_permitted:
            opts.append("sackOK")
        if self.options.tsval is not None:
            opts.append(f"TS val {self.options.tsval} ecr {self.options.tsecr}")
        if self.options.wscale is not None:
            opts.append(f"wscale {self.options.wscale}")
        if opts:
            text += f" <{','.join(opts)}>"
        return text


def lines(sent: list[Sent]) -> list[str]:
    return [str(s) for s in sent]


@dataclass(frozen=True, slots=True)
class Transition:
    time: float
    conn: Connection
    old: State
    new: State


def decode(packet: bytes, time: float) -> Sent:
    """Parse one packet from `stack.output` as the peer would, checksums verified."""
    ip = ipv4.parse(packet)
    if ip.proto != PROTO_TCP:
        raise AssertionError(f"the stack sent protocol {ip.proto}, not TCP")
    seg = tcpseg.parse(ip.payload, ipv4.pseudo_header_sum(ip.src, ip.dst, PROTO_TCP))
    offset = (ip.payload[12] >> 4) * 4
    return Sent(time, ip.src, ip.dst, seg.sport, seg.dport, seg.seq, seg.ack, seg.flags,
                seg.window, seg.options, bytes(ip.payload[tcpseg.HEADER_LEN:offset]),
                bytes(seg.payload))


class ScriptedPeer:
    """The stack under test (STACK_ADDR) and a scripted peer (PEER_ADDR:`peer_port`); the
    stack's timestamp clock is `ts_offset` plus the virtual time in ms."""

    def __init__(self, config: TcpConfig | None = None, *, stack_isn: int = 1_000_000,
                 peer_port: int = PEER_PORT, ts_offset: int = 0) -> None:
        self.config = config or TcpConfig()
        self.stack = NetworkStack(STACK_ADDR, self.config,
                                  FixedIsn(stack_isn, ts_offset=ts_offset))
        self.now = 0.0
        self.peer_port = peer_port
        self.stack_port: int | None = None  # where injected segments go unless told
        self.sent: list[Sent] = []  # everything the stack sent, in order
        self.transitions: list[Transition] = []
        self._taken = 0
        self.stack.on_transition = self._record

    def _record(self, conn: Connection, old: State, new: State) -> None:
        self.transitions.append(Transition(self.now, conn, old, new))

    # ------------------------------------------------------------------ the peer

    def inject(self, flags: int, seq: int, ack: int = 0, *, window: int = 65535,
               payload: bytes = b"", options: bytes = b"", sport: int | None = None,
               dport: int | None = None) -> list[Sent]:
        """Deliver one crafted segment to the stack now and let it flush; returns what it
        sent in response (consumed: `take` will not return it again)."""
        return self.inject_batch([self.packet(flags, seq, ack, window=window, payload=payload,
                                              options=options, sport=sport, dport=dport)])

    def packet(self, flags: int, seq: int, ack: int = 0, *, window: int = 65535,
               payload: bytes = b"", options: bytes = b"", sport: int | None = None,
               dport: int | None = None) -> bytes:
        """The IP packet of a crafted segment from the peer, as `inject` sends it."""
        dport = self.stack_port if dport is None else dport
        if dport is None:
            raise ValueError("no stack port yet: listen or connect first, or pass dport")
        pseudo = ipv4.pseudo_header_sum(PEER_ADDR, STACK_ADDR, PROTO_TCP)
        tcp = tcpseg.build(self.peer_port if sport is None else sport, dport, seq, ack, flags,
                           window, pseudo, options, payload)
        return ipv4.build(PEER_ADDR, STACK_ADDR, PROTO_TCP, tcp)

    def inject_batch(self, packets: list[bytes]) -> list[Sent]:
        """Deliver packets as one batch from the link (one read of the TUN: one service
        pass) and let the stack flush; returns what it sent in response."""
        before = len(self.sent)
        self.stack.service(packets, self.now)
        self._take_output()
        return self._consume(before)

    def inject_packet(self, packet: bytes) -> list[Sent]:
        """Deliver one whole IP packet (an ICMP message, say) to the stack now; returns what
        it sent in response."""
        return self.inject_batch([packet])

    # ------------------------------------------------------------------ the clock

    def advance(self, seconds: float) -> list[Sent]:
        """Let `seconds` of virtual time pass, firing each timer at exactly its deadline;
        returns what the stack sent meanwhile (consumed, as for `inject`)."""
        return self.advance_to(self.now + seconds)

    def advance_to(self, when: float) -> list[Sent]:
        if when < self.now:
            raise ValueError(f"time runs forward: {when} is before {self.now}")
        before = len(self.sent)
        while True:
            deadline = self.stack.next_deadline()
            if deadline is None or deadline > when:
                break
            self.now = max(self.now, deadline)
            self.stack.on_timer(self.now)
            self._take_output()
        self.now = when
        return self._consume(before)

    def next_deadline(self) -> float | None:
        return self.stack.next_deadline()

    # ------------------------------------------------------------------ the application

    def listen(self, port: int = 80, backlog: int | None = None) -> Listener:
        self.stack_port = port
        return self.stack.listen(port, backlog)

    def connect(self, remote_port: int = 80, local_port: int = 50000) -> Connection:
        conn = self.stack.connect(PEER_ADDR, remote_port, self.now, local_port=local_port)
        self.stack_port = local_port
        self.peer_port = remote_port
        self._flush()
        return conn

    def app_send(self, conn: Connection, data: bytes) -> int:
        n = conn.send(data)
        self._flush()
        return n

    def app_read(self, conn: Connection, max_bytes: int = -1) -> bytes:
        data = conn.read(max_bytes)
        self._flush()
        return data

    def app_close(self, conn: Connection) -> None:
        conn.close(self.now)
        self._flush()

    def app_abort(self, conn: Connection) -> None:
        conn.abort(self.now)
        self._flush()

    # ------------------------------------------------------------------ observation

    def _flush(self) -> None:
        """A pass with no packets: what the application's calls changed goes out."""
        self.stack.service((), self.now)
        self._take_output()

    def _take_output(self) -> None:
        if self.stack.counters["internal_errors"]:
            raise AssertionError("internal error in the stack") \
                from self.stack.last_internal_error
        for packet in self.stack.output:
            self.sent.append(decode(packet_bytes(packet), self.now))
        self.stack.output.clear()

    def _consume(self, start: int) -> list[Sent]:
        self._taken = len(self.sent)
        return self.sent[start:]

    def take(self) -> list[Sent]:
        """What the stack sent since the last `take`, `inject` or `advance`: what the
        application calls (`app_send`, `app_close`, ...) made it send."""
        new = self.sent[self._taken:]
        self._taken = len(self.sent)
        return new

    def take_lines(self) -> list[str]:
        return lines(self.take())

    def states(self, conn: Connection) -> list[State]:
        """The states `conn` went through, from the first one it left; [state] if none."""
        mine = [t for t in self.transitions if t.conn is conn]
        return [mine[0].old, *(t.new for t in mine)] if mine else [conn.state]

    def transitions_of(self, conn: Connection) -> list[tuple[State, State]]:
        return [(t.old, t.new) for t in self.transitions if t.conn is conn]

    def events(self, conn: Connection) -> list[ConnEvent]:
        """The kind of every event the stack reported for `conn`, in order."""
        return [ev.kind for c, ev in self.stack.events if c is conn]

    def accepted(self) -> Connection:
        """The one connection the stack has made from a SYN (on any listener)."""
        conns = [c for c in self.stack.connections.values() if c.passive]
        if len(conns) != 1:
            raise AssertionError(f"expected one passive connection, found {len(conns)}")
        return conns[0]

    def open_like_linux(self, peer_iss: int, *, timestamps: bool = True, rtt: float = 0.0
                        ) -> tuple[Connection, Sent]:
        """A passive open by a Linux-like peer on the port listened on: its SYN offers MSS
        1460, SACK, window scale 7 and timestamps (TSval 1000; none if not `timestamps`),
        window 64240; `rtt` later its ACK, window field 502, TSval 1001 echoing the
        SYN-ACK's. Returns the connection and the SYN-ACK."""
        options = tcpseg.encode_options(mss=1460, wscale=7, sack_permitted=True,
                                        timestamps=(1000, 0) if timestamps else None)
        syn_ack = self.inject(tcpseg.SYN, peer_iss, options=options, window=64240)[0]
        self.advance(rtt)
        echo = tcpseg.encode_timestamps(1001, syn_ack.options.tsval or 0) if timestamps \
            else b""
        self.inject(ACK, (peer_iss + 1) & 0xFFFFFFFF, (syn_ack.seq + 1) & 0xFFFFFFFF,
                    window=502, options=echo)
        return self.accepted(), syn_ack


# ---------------------------------------------------------------------- transition coverage

@contextmanager
def recording_triggers() -> Iterator[list[Entry]]:
    """Every (state, trigger) the connection and listener code look up in TRANSITIONS."""
    seen: list[Entry] = []
    original_step = connection_module.step
    original_next = listener_module.next_state

    def recording_step(state: State, trigger: Trigger) -> tuple[State, Sends]:
        result = original_step(state, trigger)
        seen.append((state, trigger))
        return result

    def recording_next(state: State, trigger: Trigger) -> State:
        new = original_next(state, trigger)
        seen.append((state, trigger))
        return new

    connection_module.step = recording_step  # type: ignore[assignment]
    listener_module.next_state = recording_next
    original_transition = Connection._transition
    wrong: list[str] = []

    def checked_transition(conn: Connection, trigger: Trigger, now: float) -> None:
        """Each transition sends what its table entry says, and nothing else."""
        state, before = conn.state, len(conn.output)
        original_transition(conn, trigger, now)
        problem = _sends_mismatch(TRANSITIONS[(state, trigger)][1], conn, conn.output[before:])
        if problem:
            wrong.append(f"({state}, '{trigger}'): {problem}")

    Connection._transition = checked_transition  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        connection_module.step = original_step  # type: ignore[assignment]
        listener_module.next_state = original_next
        Connection._transition = original_transition  # type: ignore[method-assign]
    assert not wrong, "transitions that did not send what the table says: " + "; ".join(wrong)


def _sends_mismatch(sends: Sends, conn: Connection, segments: list[OutSegment]) -> str | None:
    flags = [tcpseg.flags_str(flags) for _, _, flags, *_ in segments]
    if sends in (Sends.SYN, Sends.SYN_ACK, Sends.RST):
        expected = {Sends.SYN: ["S"], Sends.SYN_ACK: ["S."], Sends.RST: ["R"]}[sends]
        return None if flags == expected else f"table says {sends}, sent {flags}"
    if flags:
        return f"table says {sends or 'nothing'}, sent {flags}"
    if sends is Sends.ACK and not conn.rcv.ack_now:
        return "table says ACK, but no ACK is owed"
    if sends is Sends.FIN and not conn.snd.fin_queued:
        return "table says FIN, but none is queued"
    return None


TestFn = Callable[..., None]


def drives(*entries: Entry,
           by_param: tuple[str, Mapping[Any, Iterable[Entry]]] | None = None
           ) -> Callable[[TestFn], TestFn]:
    """Declare the TRANSITIONS entries a test exercises; the test fails if the code did not
    take each of them. `by_param=(name, {value: entries})` adds entries that depend on the
    value of a parametrized argument. The union of everything declared is left on the test
    function as `drives` for the coverage check in test_state_table.py."""
    def decorate(test: TestFn) -> TestFn:
        signature = inspect.signature(test)

        @functools.wraps(test)
        def run(*args: Any, **kwargs: Any) -> None:
            if CORE_COMPILED:
                # The recording patches the core's functions, which compiled code calls
                # directly: the test's own checks run, the table's bookkeeping in the pure
                # tree (`make test`).
                test(*args, **kwargs)
                return
            expected = list(entries)
            if by_param is not None:
                name, mapping = by_param
                expected += mapping[signature.bind(*args, **kwargs).arguments[name]]
            with recording_triggers() as seen:
                test(*args, **kwargs)
            missing = [f"({s}, '{t}')" for s, t in expected if (s, t) not in seen]
            assert not missing, (f"{test.__name__} declares {', '.join(missing)} but the "
                                 f"code never took it; it took {seen}")
        declared = set(entries)
        if by_param is not None:
            for more in by_param[1].values():
                declared.update(more)
        run.drives = frozenset(declared)  # type: ignore[attr-defined]
        return run
    return decorate
