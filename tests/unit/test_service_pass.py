"""The service pass: receive -> events -> transmit, one per batch, owned by NetworkStack.

Most of these run the real StackDriver on a real loop over a FakeTun (tests/unit/fake_tun.py),
so what they count is what production does; the timer fences are also pinned sans-I/O."""

from __future__ import annotations

import asyncio

import pytest

from tcpstack.api.streams import Stack
from tcpstack.io.driver import StackDriver
from tcpstack.net import ipv4
from tcpstack.net.checksum import Bytes
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack, packet_bytes
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import Closed, ConnEvent, Event, Reset
from tcpstack.tcp.segment import ACK, PSH, RST, SYN
from tcpstack.tcp.state import State
from tests.unit.fake_tun import MSS, PEER_ISS, STACK_ISS, FakeTun, TunPeer, driven_stack
from tests.unit.link_pair import FixedIsn
from tests.unit.pass_probe import probe
from tests.unit.scripted_peer import (
    PEER_ADDR,
    PEER_PORT,
    STACK_ADDR,
    ScriptedPeer,
    Sent,
    decode,
    lines,
)

# A fixed 1 MiB receive buffer (no auto-tuning: these tests count ACKs, not window growth)
# needs window scale 5 (RFC 7323 2.3): 1 MiB >> 5.
FIXED_BUFFER = TcpConfig(receive_buffer=1 << 20)
FULL_WINDOW = (1 << 20) >> 5
SCALED_SYN = tcpseg.encode_options(mss=MSS, wscale=7)


class PassLog:
    """The passes a driver runs, each as (kind, now, what it put out)."""

    def __init__(self, driver: StackDriver) -> None:
        self.passes: list[tuple[str, float, list[str]]] = []
        self._stack = probe(driver, self._logged)

    def _logged(self, kind: str, now: float, _packets: list[Bytes]) -> None:
        sent = [str(decode(packet_bytes(p), now)) for p in self._stack.output]
        self.passes.append((kind, now, sent))

    def since(self, mark: int) -> list[tuple[str, list[str]]]:
        return [(kind, out) for kind, _, out in self.passes[mark:]]


def _data(peer: TunPeer, syn_ack: Sent, offset: int, size: int) -> None:
    peer.send(ACK | PSH, PEER_ISS + 1 + offset, syn_ack.seq + 1, payload=bytes(size),
              window=65535)


def test_a_batch_of_four_segments_draws_one_ack_with_the_window_the_read_opened() -> None:
    """Four full segments read in one batch and read at once by the application: one ACK,
    carrying the whole window again, not an ACK (win 32586) and then a window update."""
    async def run() -> list[str]:
        async with driven_stack(FIXED_BUFFER) as d:
            syn_ack = await d.peer.handshake(SCALED_SYN)
            protocol = await d.app.accepted()
            d.peer.take()
            for i in range(4):  # all queued before the loop reads: one batch
                _data(d.peer, syn_ack, i * MSS, MSS)
            sent = await d.peer.quiet(0.2)  # past the delayed-ACK timeout too
            assert len(protocol.data) == 4 * MSS
            return lines(sent)

    assert asyncio.run(asyncio.wait_for(run(), 10)) == [
        f". seq {STACK_ISS + 1} ack {PEER_ISS + 1 + 4 * MSS} win {FULL_WINDOW}"]


def test_one_batch_and_the_reads_it_causes_make_one_service_pass() -> None:
    """The application's reads during event delivery mark the connection changed; that
    must not schedule a second, empty pass after the one that is running."""
    async def run() -> list[tuple[str, list[str]]]:
        async with driven_stack(FIXED_BUFFER) as d:
            syn_ack = await d.peer.handshake(SCALED_SYN)
            await d.app.accepted()
            log = PassLog(d.driver)
            for i in range(4):
                _data(d.peer, syn_ack, i * MSS, MSS)
            await d.peer.quiet(0.2)
            return log.since(0)

    ack = f". seq {STACK_ISS + 1} ack {PEER_ISS + 1 + 4 * MSS} win {FULL_WINDOW}"
    assert asyncio.run(asyncio.wait_for(run(), 10)) == [("service", [ack])]


def test_a_small_segment_waits_for_the_delayed_ack_and_draws_one() -> None:
    """Less than two full segments: no ACK from the pass that read it, one from the delayed
    ACK timer's pass 40 ms later (the read of 100 bytes opens no window worth announcing)."""
    async def run() -> tuple[list[tuple[str, float, list[str]]], float]:
        async with driven_stack(FIXED_BUFFER) as d:
            syn_ack = await d.peer.handshake(SCALED_SYN)
            await d.app.accepted()
            for i in range(2):  # two full segments: acked at once, with the full window
                _data(d.peer, syn_ack, i * MSS, MSS)
            await d.peer.expect(1)
            log = PassLog(d.driver)
            _data(d.peer, syn_ack, 2 * MSS, 100)
            await d.peer.expect(1)
            await d.peer.quiet(0.1)
            return log.passes, d.stack.config.delayed_ack

    passes, delayed_ack = asyncio.run(asyncio.wait_for(run(), 10))
    # The right edge stays where it was (RFC 9293 3.8.6.2.2): 1 MiB - 100 bytes, rounded up.
    ack = f". seq {STACK_ISS + 1} ack {PEER_ISS + 1 + 2 * MSS + 100} win 32765"
    assert [(kind, out) for kind, _, out in passes] == [("service", []), ("on_timer", [ack])]
    assert passes[1][1] - passes[0][1] >= delayed_ack


def test_writes_outside_a_pass_need_no_kick_and_share_one_pass() -> None:
    """Three writes in one turn of the loop: the connection's hook asks for a pass, once."""
    async def run() -> list[tuple[str, list[str]]]:
        async with driven_stack(TcpConfig(nodelay=True)) as d:
            await d.peer.handshake()
            protocol = await d.app.accepted()
            await d.peer.quiet(0.05)
            log = PassLog(d.driver)
            transport = protocol.transport
            assert transport is not None
            for chunk in (b"one ", b"two ", b"three"):
                transport.write(chunk)
            await d.peer.expect(1)
            await d.peer.quiet(0.05)
            return log.since(0)

    # No window scale from the peer: the 1 MiB window shows as the largest field, 65535.
    data = f"P. seq {STACK_ISS + 1} ack {PEER_ISS + 1} win 65535 len 13"
    assert asyncio.run(asyncio.wait_for(run(), 10)) == [("service", [data])]


def test_an_abort_by_the_api_puts_its_rst_on_the_wire_in_the_same_pass() -> None:
    """A handshake that completes after its server closed: api.streams aborts it while the
    event is delivered. The RST must leave with that pass, not wait for some later one."""
    async def run() -> tuple[list[tuple[str, list[str]]], list[str]]:
        api = Stack(control=False, offload=False)
        api.network = NetworkStack(STACK_ADDR, api.config, FixedIsn(STACK_ISS))
        tun = FakeTun()
        driver = StackDriver(api.network, tun, asyncio.get_running_loop())  # type: ignore[arg-type]
        driver.on_event = api._on_event  # as Stack.start wires it
        driver.start()
        api.driver = driver  # started: start_server brings up no TUN
        try:
            server = await api.start_server(lambda r, w: None, 80)
            peer = TunPeer(tun)
            peer.send(SYN, PEER_ISS, options=SCALED_SYN)
            (syn_ack,) = await peer.expect(1)
            server.close()
            log = PassLog(driver)
            peer.send(ACK, PEER_ISS + 1, syn_ack.seq + 1)
            sent = await peer.expect(1, timeout=0.5)
            return log.since(0), lines(sent)
        finally:
            driver.stop()
            tun.close()

    passes, wire = asyncio.run(asyncio.wait_for(run(), 10))
    rst = f"R seq {STACK_ISS + 1} win 0"
    assert passes == [("service", [rst])]
    assert wire == [rst]


# ---------------------------------------------------------------------- timers


def _break(conn: Connection, method: str, message: str) -> None:
    """Make one connection's `method` raise, as a bug in it would (Connection has slots, so
    the instance takes a subclass of its own instead of an attribute)."""
    def broken(self: Connection, now: float) -> None:
        raise RuntimeError(message)

    conn.__class__ = type("Broken", (Connection,), {"__slots__": (), method: broken})


def _break_timer(conn: Connection) -> None:
    _break(conn, "on_timer", "a bug in a timer handler")


@pytest.mark.instruments
def test_a_timer_handler_that_raises_costs_its_connection_and_no_other_timer() -> None:
    stack = NetworkStack(STACK_ADDR, TcpConfig(), FixedIsn(STACK_ISS))
    events: list[tuple[int, ConnEvent]] = []
    stack.on_event = lambda conn, event: events.append((conn.local_port, event.kind))
    broken = stack.connect(PEER_ADDR, 80, 0.0, local_port=50001)
    other = stack.connect(PEER_ADDR, 80, 0.5, local_port=50002)
    stack.flush(0.5)
    stack.output.clear()
    assert stack.next_deadline() == 1.0
    _break_timer(broken)

    stack.on_timer(1.0)

    assert stack.counters["internal_errors"] == 1
    assert str(stack.last_internal_error) == "a bug in a timer handler"
    assert broken.state is State.CLOSED
    assert broken.error == "internal error"
    assert events == [(50001, ConnEvent.RESET), (50001, ConnEvent.CLOSED)]
    assert stack.events == []  # the handler took them
    assert list(stack.connections.values()) == [other]
    assert stack.output == []  # a SYN_SENT connection goes without a RST (RFC 9293 3.10.5)
    assert stack.next_deadline() == 1.5  # the other connection's SYN timer stands

    stack.on_timer(1.5)
    assert [(s.flags, s.sport) for s in (decode(packet_bytes(p), 1.5) for p in stack.output)] == \
        [(SYN, 50002)]
    assert stack.next_deadline() == 3.5  # and it goes on, backed off (RFC 6298 5.5)


@pytest.mark.instruments
def test_an_established_connection_whose_timer_raises_is_reset() -> None:
    """The peer learns of it by a RST, the application by RESET: no silent truncation."""
    peer = ScriptedPeer()
    peer.listen(80)
    syn_ack = peer.inject(SYN, PEER_ISS, options=tcpseg.encode_options(mss=MSS))[0]
    peer.inject(ACK, PEER_ISS + 1, syn_ack.seq + 1)
    conn = peer.accepted()
    peer.inject(ACK | PSH, PEER_ISS + 1, syn_ack.seq + 1, payload=b"x" * 100)
    assert peer.next_deadline() == 0.04  # the delayed ACK
    _break_timer(conn)

    peer.stack.on_timer(0.04)  # directly: the harness would fail on the internal error

    assert peer.stack.counters["internal_errors"] == 1
    assert lines([decode(packet_bytes(p), 0.04) for p in peer.stack.output]) == [
        f"R seq {syn_ack.seq + 1} win 0"]
    assert conn.state is State.CLOSED
    assert [ev for c, ev in peer.stack.events if c is conn][-2:] == \
        [Reset("internal error"), Closed("connection aborted")]
    assert peer.stack.connections == {}
    assert peer.stack.next_deadline() is None


@pytest.mark.instruments
def test_a_timer_that_raises_leaves_the_driver_timing_the_other_connections() -> None:
    """Through the driver: the failed timer pass still re-arms the loop's one timer."""
    async def run() -> list[tuple[int, int]]:
        config = TcpConfig(initial_rto=0.05)
        async with driven_stack(config, listen=None) as d:
            broken = d.stack.connect(PEER_ADDR, 80, d.driver.now(), local_port=50001)
            _break_timer(broken)
            d.stack.connect(PEER_ADDR, 80, d.driver.now(), local_port=50002)
            first = await d.peer.expect(2)
            resent = await d.peer.expect(2, timeout=2.0)  # at 0.05 s, then at 0.15 s
            assert d.stack.counters["internal_errors"] == 1
            return [(s.flags, s.sport) for s in first + resent]

    assert asyncio.run(asyncio.wait_for(run(), 10)) == [
        (SYN, 50001), (SYN, 50002), (SYN, 50002), (SYN, 50002)]


def _packet(flags: int, seq: int, ack: int, payload: bytes = b"") -> bytes:
    pseudo = ipv4.pseudo_header_sum(PEER_ADDR, STACK_ADDR, PROTO_TCP)
    tcp = tcpseg.build(PEER_PORT, 80, seq, ack, flags, 65535, pseudo, b"", payload)
    return ipv4.build(PEER_ADDR, STACK_ADDR, PROTO_TCP, tcp)


def test_an_application_handler_that_raises_costs_the_event_not_the_pass() -> None:
    peer = ScriptedPeer()
    peer.listen(80)
    syn_ack = peer.inject(SYN, PEER_ISS, options=tcpseg.encode_options(mss=MSS))[0]
    delivered: list[ConnEvent] = []

    def handler(conn: Connection, event: Event) -> None:
        delivered.append(event.kind)
        raise RuntimeError("a bug in the application")

    peer.stack.on_event = handler
    peer.stack.service([_packet(ACK, PEER_ISS + 1, syn_ack.seq + 1),
                        _packet(ACK | PSH, PEER_ISS + 1, syn_ack.seq + 1, bytes(2 * MSS))],
                       0.0)

    assert delivered == [ConnEvent.ESTABLISHED, ConnEvent.DATA]
    assert peer.stack.counters["internal_errors"] == 2
    # The pass went on to its flush: two full segments are acknowledged at once. Nothing
    # was read, so the window is the SYN-ACK's 65535 less those bytes (unscaled: the
    # peer's SYN offered no window scale).
    assert lines([decode(packet_bytes(p), 0.0) for p in peer.stack.output]) == [
        f". seq {syn_ack.seq + 1} ack {PEER_ISS + 1 + 2 * MSS} win {65535 - 2 * MSS}"]


@pytest.mark.instruments
def test_a_connection_whose_output_raises_is_reset_and_the_others_still_send() -> None:
    peer = ScriptedPeer()
    peer.listen(80)
    conns = []
    for sport in (40001, 40002):
        syn_ack = peer.inject(SYN, PEER_ISS, options=tcpseg.encode_options(mss=MSS),
                              sport=sport)[0]
        peer.inject(ACK, PEER_ISS + 1, syn_ack.seq + 1, sport=sport)
        conns.append(next(c for c in peer.stack.connections.values()
                          if c.remote_port == sport))
    broken, other = conns

    _break(broken, "flush", "a bug in the output")
    broken.send(b"lost")
    other.send(b"sent")
    peer.stack.service((), 0.0)  # directly: the harness would fail on the internal error

    assert peer.stack.counters["internal_errors"] == 1
    sent = [decode(packet_bytes(p), 0.0) for p in peer.stack.output]
    assert [(s.dport, s.flags, s.payload) for s in sent] == [
        (40001, RST, b""), (40002, ACK | PSH, b"sent")]
    assert broken.state is State.CLOSED
    assert broken.error == "internal error"
    assert list(peer.stack.connections.values()) == [other]
