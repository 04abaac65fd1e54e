"""The cost of one request-response round trip through the real driver: how many loop
iterations, service passes and TUN reads a 1-byte echo takes, and that the reply leaves in
the same loop iteration as the application's write, as it would from a kernel socket
(asyncio's socket transport tries the send inside `write`).

The application is a streams handler on the api's Server, as `tcpstack listen --echo` runs
it: its task is woken by the pass that delivers the data and writes on the next iteration.
Loop iterations are counted by a ticker that re-schedules itself with `call_soon`: it is
the first handle of every iteration (each iteration runs what was ready when it began, and
the ticker was scheduled first), so `ticks` read anywhere is the current iteration."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tcpstack.api.streams import Server
from tcpstack.api.transport import TcpTransport
from tcpstack.net.checksum import Bytes
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent, Event
from tcpstack.tcp.segment import ACK, FIN, PSH
from tests.unit.fake_tun import PEER_ISS, Driven, driven_stack
from tests.unit.pass_probe import probe
from tests.unit.scripted_peer import Sent, decode

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Ledger:
    """What happened in which loop iteration."""

    ticks: int = 0
    passes: list[tuple[int, int]] = field(default_factory=list)  # (iteration, packets in)
    reads: list[tuple[int, bool]] = field(default_factory=list)  # (iteration, got one)
    polls: list[tuple[int, bool]] = field(default_factory=list)  # (iteration, one waits)
    writes: list[tuple[int, Sent]] = field(default_factory=list)  # the stack's packets
    app_writes: list[int] = field(default_factory=list)  # the handler's writer.write calls

    def tick(self) -> None:
        self.ticks += 1
        asyncio.get_running_loop().call_soon(self.tick)


def _instrument(d: Driven, ledger: Ledger) -> None:
    read = d.tun.read
    write = d.tun.write

    def counted_pass(kind: str, _now: float, packets: list[Bytes]) -> None:
        if kind == "service":
            ledger.passes.append((ledger.ticks, len(packets)))

    def counted_read() -> tuple[bytes, bool]:
        try:
            got = read()
        except BlockingIOError:
            ledger.reads.append((ledger.ticks, False))
            raise
        ledger.reads.append((ledger.ticks, True))
        return got

    def counted_write(headers: bytes, payload: Bytes = b"", gso_size: int = 0) -> None:
        ledger.writes.append((ledger.ticks, decode(headers + bytes(payload), time.monotonic())))
        write(headers, payload, gso_size)

    waiting = d.driver._waiting
    assert waiting is not None, "the driver polls its descriptor once started"

    def counted_poll(timeout: int) -> list[tuple[int, int]]:
        got = waiting(timeout)
        ledger.polls.append((ledger.ticks, bool(got)))
        return got

    d.driver._waiting = counted_poll
    probe(d.driver, counted_pass)
    d.tun.read = counted_read  # type: ignore[method-assign]
    d.tun.write = counted_write  # type: ignore[method-assign]


def _serve(d: Driven, handler: Handler) -> None:
    """The api's Server on port 80 of the driven stack, as api.streams.Stack runs it."""
    server = Server(None, d.stack.listeners[80], handler, 1 << 16)  # type: ignore[arg-type]

    def on_event(conn: Connection, event: Event) -> None:
        if isinstance(conn.owner, TcpTransport):
            conn.owner.handle_event(event)
        elif event.kind is ConnEvent.ESTABLISHED:
            server.accept(d.driver, conn)

    d.driver.on_event = on_event


def _echo(ledger: Ledger, done: asyncio.Event) -> Handler:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            ledger.app_writes.append(ledger.ticks)
            writer.write(data)
            await writer.drain()
        done.set()
    return echo


async def _echo_session(exchange: Callable[[Driven, int], Awaitable[int]],
                        config: TcpConfig | None = None) -> Ledger:
    """An echo handler behind a handshake, then `exchange(d, ours)` (ours: our first data
    sequence number), which sends the handler N bytes and has them echoed, returning N; the
    ledger covers only that exchange, not the close after it."""
    async with driven_stack(config) as d:
        ledger = Ledger()
        done = asyncio.Event()
        _serve(d, _echo(ledger, done))
        syn_ack = await d.peer.handshake()
        await d.peer.quiet(0.02)
        asyncio.get_running_loop().call_soon(ledger.tick)
        await asyncio.sleep(0)
        _instrument(d, ledger)
        ours = syn_ack.seq + 1
        n = await exchange(d, ours)
        seen = copy.deepcopy(ledger)  # the close below is not part of the exchange
        d.peer.send(ACK | FIN, PEER_ISS + 1 + n, ours + n)  # the handler ends
        await asyncio.wait_for(done.wait(), 2)
        return seen


async def _ping_pong(rounds: int, config: TcpConfig | None = None) -> Ledger:
    """`rounds` 1-byte round trips after the handshake; the ledger covers only them."""
    async def exchange(d: Driven, ours: int) -> int:
        for i in range(rounds):
            d.peer.send(ACK | PSH, PEER_ISS + 1 + i, ours + i, payload=b"x")
            (reply,) = await d.peer.expect(1)
            assert reply.payload == b"x" and reply.ack == PEER_ISS + 2 + i, str(reply)
        return rounds
    return await _echo_session(exchange, config)


def test_an_echo_reply_leaves_in_the_iteration_of_the_applications_write() -> None:
    """The pass that delivers the byte wakes the handler's task; the task writes on the
    next iteration, and the pass that sends the reply runs in that same iteration, after
    it: no further loop turn (before: `kick` -> `call_soon` -> one more iteration)."""
    ledger = asyncio.run(asyncio.wait_for(_ping_pong(20), 10))
    data_writes = [tick for tick, sent in ledger.writes if sent.payload]
    arrivals = [tick for tick, packets in ledger.passes if packets]
    assert len(ledger.app_writes) == len(data_writes) == len(arrivals) == 20
    assert data_writes == ledger.app_writes, "each reply leaves in its write's iteration"
    assert [w - a for a, w in zip(arrivals, ledger.app_writes, strict=True)] == [1] * 20, \
        "the handler runs on the iteration after the pass that woke it"


def test_a_round_trip_is_two_passes_one_tun_read_and_one_poll() -> None:
    """Per 1-byte round trip: the pass for the arrival (its read, then a poll that finds
    nothing waiting and ends the drain: before, a second read ended it with EAGAIN), and
    the pass for the reply, which reads nothing (the drain was just done: before the held
    turn, it read one more EAGAIN); a delayed ACK never goes out (the reply carries the
    ACK), nor anything else."""
    ledger = asyncio.run(asyncio.wait_for(_ping_pong(20), 10))
    assert [packets for _, packets in ledger.passes] == [1, 0] * 20
    assert [got for _, got in ledger.reads] == [True] * 20
    assert [got for _, got in ledger.polls] == [False] * 20
    assert [tick for tick, _ in ledger.polls] == [tick for tick, _ in ledger.reads], \
        "each poll follows the read of its iteration"
    assert [sent.flags for _, sent in ledger.writes] == [ACK | PSH] * 20


async def _respond(yield_between: bool, config: TcpConfig | None = None
                   ) -> tuple[Ledger, list[Sent], list[Sent]]:
    """A request, answered in two writes (a head, then a body) by the task it wakes, with
    Nagle on (the default); `yield_between`: the task gives the loop a turn between them.
    What the stack wrote before the peer's ACK of the first reply segment, and after."""
    async with driven_stack(config) as d:
        ledger = Ledger()
        done = asyncio.Event()

        async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            ledger.app_writes.append(ledger.ticks)
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
            if yield_between:
                await asyncio.sleep(0)
            ledger.app_writes.append(ledger.ticks)
            writer.write(b"body")
            await writer.drain()
            done.set()

        _serve(d, respond)
        syn_ack = await d.peer.handshake()
        await d.peer.quiet(0.02)
        asyncio.get_running_loop().call_soon(ledger.tick)
        await asyncio.sleep(0)
        _instrument(d, ledger)
        ours = syn_ack.seq + 1
        d.peer.send(ACK | PSH, PEER_ISS + 1, ours, payload=b"GET")
        await asyncio.wait_for(done.wait(), 2)
        before = await d.peer.quiet(0.01)  # well below the 40 ms delayed-ACK timeout
        d.peer.send(ACK, PEER_ISS + 4, ours + len(before[0].payload))
        after = await d.peer.quiet(0.01)
        return ledger, before, after


def test_a_response_in_two_writes_of_one_step_leaves_at_once_as_one_segment() -> None:
    """Head and body written in one step of the task the request woke: one segment, in
    the iteration of the writes; Nagle has nothing to hold (nothing was in flight), and
    no delayed-ACK wait comes into it."""
    ledger, before, after = asyncio.run(asyncio.wait_for(_respond(False), 10))
    assert [(s.flags, s.payload) for s in before] == [
        (ACK | PSH, b"HTTP/1.1 200 OK\r\n\r\nbody")]
    assert after == []
    (written, _), = [(tick, s) for tick, s in ledger.writes if s.payload]
    assert ledger.app_writes == [written, written]


def test_a_second_write_after_a_yield_waits_for_the_ack_under_nagle() -> None:
    """The head leaves in the iteration of its write; the body, written a turn later with
    the head unacknowledged and less than an MSS, is Nagle's to hold (RFC 9293 3.7.4) and
    leaves with the pass that reads the peer's ACK: as a kernel socket with Nagle on
    behaves. The held turn changes nothing here: the head left no later than before."""
    ledger, before, after = asyncio.run(asyncio.wait_for(_respond(True), 10))
    assert [s.payload for s in before] == [b"HTTP/1.1 200 OK\r\n\r\n"]
    assert [s.payload for s in after] == [b"body"]
    head_written = next(tick for tick, s in ledger.writes if s.payload)
    assert head_written == ledger.app_writes[0]


def test_with_nodelay_a_second_write_after_a_yield_goes_on_the_next_turn() -> None:
    """TCP_NODELAY (asyncio's default on kernel sockets): the body does not wait for the
    ACK; it leaves in the pass its own write asked for, one iteration after the head."""
    ledger, before, after = asyncio.run(asyncio.wait_for(
        _respond(True, TcpConfig(nodelay=True)), 10))
    assert [s.payload for s in before] == [b"HTTP/1.1 200 OK\r\n\r\n", b"body"]
    assert after == []
    head, body = (tick for tick, s in ledger.writes if s.payload)
    assert head == ledger.app_writes[0]
    assert body == ledger.app_writes[1] + 1


async def _burst(count: int) -> Ledger:
    """`count` 1-byte segments written to the TUN at once, before the loop looks."""
    async def exchange(d: Driven, ours: int) -> int:
        for i in range(count):
            d.peer.send(ACK | PSH, PEER_ISS + 1 + i, ours, payload=b"x")
        await d.peer.data_until(ours + count)
        return count
    return await _echo_session(exchange)


def test_a_burst_is_read_whole_into_one_pass_after_the_poll_finds_more() -> None:
    """The poll after the first packet finds the second waiting: the batch reads on until
    EAGAIN, so a burst still goes to one pass (one ACK, one wake-up of the application),
    and the poll ran once, not once per packet."""
    ledger = asyncio.run(asyncio.wait_for(_burst(3), 10))
    assert [got for _, got in ledger.reads] == [True, True, True, False]
    assert [got for _, got in ledger.polls] == [True]
    assert [packets for _, packets in ledger.passes] == [3, 0]  # the burst, then the reply's
    assert [sent.payload for _, sent in ledger.writes] == [b"xxx"]  # one echo of all three
