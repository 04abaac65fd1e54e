"""TcpTransport's flow control, through the real driver over a FakeTun (no root).

The send buffer is 16 KiB and the transport's write buffer limits 8 KiB (high) and 2 KiB
(low), so every threshold is crossed within a few segments. The peer acknowledges by hand,
so the test decides when the send buffer drains; the initial window is ten segments."""

from __future__ import annotations

import asyncio

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.segment import ACK, FIN
from tcpstack.tcp.state import State
from tests.unit.fake_tun import (
    MSS,
    PEER_ISS,
    STACK_ISS,
    Driven,
    Recorder,
    driven_stack,
)
from tests.unit.scripted_peer import Sent, lines

SEND_BUFFER = 16 * 1024
HIGH = 8 * 1024
LOW = 2 * 1024
WRITTEN = 40 * 1024
INITIAL_WINDOW = 10 * MSS  # RFC 6928, what the stack sends before the first ACK


def _config() -> TcpConfig:
    # No tail loss probes and a 2 s RTO floor: every segment the peer sees is one the flow
    # control let out, not a resend, even on a machine too busy to answer within 200 ms.
    return TcpConfig(send_buffer=SEND_BUFFER, nodelay=True, tail_loss_probe=False,
                     min_rto=2.0)


async def _established(d: Driven) -> Recorder:
    await d.peer.handshake(tcpseg.encode_options(mss=MSS))
    protocol = await d.app.accepted()
    assert protocol.transport is not None
    protocol.transport.set_write_buffer_limits(high=HIGH, low=LOW)
    return protocol


async def _round(d: Driven) -> list[Sent]:
    """What the stack sends in one pass (a burst is written whole before the peer looks),
    then acknowledged whole, its FIN too."""
    sent = await d.peer.expect(1)
    sent += d.peer.take()
    end = max(s.seq + len(s.payload) + (1 if s.flags & FIN else 0) for s in sent)
    d.peer.send(ACK, PEER_ISS + 1, end)
    return sent


def _acked(segments: list[Sent]) -> int:
    """How many data bytes `segments` reach to, counted from the first."""
    return max(s.seq + len(s.payload) for s in segments) - (STACK_ISS + 1)


def test_writing_pauses_above_the_high_mark_and_resumes_at_the_low_one() -> None:
    """40 KiB written at once: 16 KiB fit the send buffer, 24 KiB wait, so writing pauses.
    Each ACK frees the send buffer and the transport refills it; once the backlog is down
    to the low mark (here: gone), writing resumes, once."""
    async def run() -> tuple[list[int], list[tuple[int, int, list[int]]]]:
        async with driven_stack(_config()) as d:
            protocol = await _established(d)
            transport = protocol.transport
            assert transport is not None
            transport.write(bytes(WRITTEN))
            pauses = list(protocol.pauses)
            rounds: list[tuple[int, int, list[int]]] = []
            while not rounds or rounds[-1][0] < WRITTEN:
                sent = await _round(d)
                rounds.append((_acked(sent), transport.get_write_buffer_size(),
                               list(protocol.resumes)))
            assert await d.peer.quiet(0.05) == []
            return pauses, rounds

    pauses, rounds = asyncio.run(asyncio.wait_for(run(), 20))
    assert pauses == [WRITTEN - SEND_BUFFER]
    # (bytes sent by then, backlog after the pass, resumes so far). The first round is the
    # initial window; its ACK frees 14600 bytes, which the backlog refills (9976 left, above
    # the low mark); the next ACK takes the rest of the backlog: resume, with 0 waiting.
    assert rounds == [(INITIAL_WINDOW, WRITTEN - SEND_BUFFER, []),
                      (SEND_BUFFER + INITIAL_WINDOW, WRITTEN - SEND_BUFFER - INITIAL_WINDOW,
                       []),
                      (WRITTEN, 0, [0])]


def test_write_eof_with_a_backlog_sends_the_fin_after_the_last_byte() -> None:
    async def run() -> tuple[list[list[Sent]], State, list[Exception | None]]:
        async with driven_stack(_config()) as d:
            protocol = await _established(d)
            transport = protocol.transport
            assert transport is not None
            transport.write(bytes(WRITTEN))
            transport.write_eof()
            rounds: list[list[Sent]] = []
            while not rounds or not any(s.flags & FIN for s in rounds[-1]):
                rounds.append(await _round(d))
            assert await d.peer.quiet(0.05) == []
            (conn,) = d.stack.connections.values()
            return rounds, conn.state, protocol.lost

    rounds, state, lost = asyncio.run(asyncio.wait_for(run(), 20))
    everything = [s for sent in rounds for s in sent]
    assert [sum(len(s.payload) for s in sent) for sent in rounds] == [
        INITIAL_WINDOW, SEND_BUFFER, WRITTEN - SEND_BUFFER - INITIAL_WINDOW]
    # The FIN rides on the last byte, and only there.
    assert [s.flags & FIN for s in everything].count(FIN) == 1
    assert everything[-1].flags & FIN
    assert everything[-1].seq + len(everything[-1].payload) == STACK_ISS + 1 + WRITTEN
    assert state is State.FIN_WAIT_2  # the peer acknowledged the FIN
    assert lost == []  # half-closed: the transport still reads


def test_close_with_a_backlog_sends_it_all_then_the_fin_then_reports_lost() -> None:
    async def run() -> tuple[list[list[Sent]], list[list[Exception | None]]]:
        async with driven_stack(_config()) as d:
            protocol = await _established(d)
            transport = protocol.transport
            assert transport is not None
            transport.write(bytes(WRITTEN))
            transport.close()
            assert transport.is_closing()
            rounds: list[list[Sent]] = []
            lost: list[list[Exception | None]] = []
            while not rounds or not any(s.flags & FIN for s in rounds[-1]):
                rounds.append(await _round(d))
                await asyncio.sleep(0)  # connection_lost comes by call_soon
                lost.append(list(protocol.lost))
            assert await d.peer.quiet(0.05) == []
            return rounds, lost

    rounds, lost = asyncio.run(asyncio.wait_for(run(), 20))
    everything = [s for sent in rounds for s in sent]
    assert [sum(len(s.payload) for s in sent) for sent in rounds] == [
        INITIAL_WINDOW, SEND_BUFFER, WRITTEN - SEND_BUFFER - INITIAL_WINDOW]
    assert [s.flags & FIN for s in everything].count(FIN) == 1
    assert everything[-1].flags & FIN
    assert everything[-1].seq + len(everything[-1].payload) == STACK_ISS + 1 + WRITTEN
    # connection_lost(None) once, from the pass that put the last of the backlog into the
    # connection, with the FIN behind it (the third round), not before.
    assert lost == [[], [], [None]]


def test_reading_paused_keeps_data_in_the_connection_and_its_window_closed() -> None:
    """While the protocol pauses reading, what arrives stays in the connection and the ACK
    says so in its window; resuming hands the data over and, the window having closed to
    less than half, reopens it at once. (A 8 KiB buffer: four segments close it that far.)"""
    async def run() -> tuple[list[str], int, list[str], int]:
        async with driven_stack(TcpConfig(receive_buffer=8192)) as d:
            syn_ack = await d.peer.handshake(tcpseg.encode_options(mss=MSS, wscale=7))
            protocol = await d.app.accepted()
            transport = protocol.transport
            assert transport is not None
            transport.pause_reading()
            for i in range(4):
                d.peer.send(ACK, PEER_ISS + 1 + i * MSS, syn_ack.seq + 1, payload=bytes(MSS))
            held = lines(await d.peer.expect(1))
            held_bytes = len(protocol.data)
            transport.resume_reading()
            reopened = lines(await d.peer.expect(1))
            assert await d.peer.quiet(0.05) == []
            return held, held_bytes, reopened, len(protocol.data)

    held, held_bytes, reopened, read = asyncio.run(asyncio.wait_for(run(), 10))
    ack = f". seq {STACK_ISS + 1} ack {PEER_ISS + 1 + 4 * MSS}"
    # 8 KiB needs no window scale: less the 5840 unread bytes, 2352; then all of it again.
    assert held == [f"{ack} win 2352"]
    assert held_bytes == 0
    assert reopened == [f"{ack} win 8192"]
    assert read == 4 * MSS


def test_resuming_hands_over_all_that_arrived_in_one_piece() -> None:
    """What waited while reading was paused goes to the protocol at once, in one
    data_received however much it is (not 256 KB at a time, with a pause after each while
    the rest held the window shut)."""
    count = 200  # segments: 292,000 bytes, more than 256 KB

    async def run() -> list[int]:
        async with driven_stack(TcpConfig(receive_buffer=1 << 20)) as d:
            syn_ack = await d.peer.handshake(tcpseg.encode_options(mss=MSS, wscale=7))
            protocol = await d.app.accepted()
            transport = protocol.transport
            assert transport is not None
            transport.pause_reading()
            sizes: list[int] = []
            protocol.on_data = lambda p: sizes.append(len(p.data) - sum(sizes))
            acks: list[Sent] = []
            for i in range(count):
                d.peer.send(ACK, PEER_ISS + 1 + i * MSS, syn_ack.seq + 1, payload=bytes(MSS))
                if i % 10 == 9:  # the fake link holds a few dozen packets: let them in
                    acks += await d.peer.expect(1)
            end = PEER_ISS + 1 + count * MSS
            while acks[-1].ack != end:  # the stack has all of it, unread
                acks += await d.peer.expect(1)
            assert sizes == []
            transport.resume_reading()
            for _ in range(500):
                if sizes:
                    break
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.05)  # a second delivery, if there were one, would show
            return sizes

    assert asyncio.run(asyncio.wait_for(run(), 10)) == [count * MSS]


def test_data_on_the_handshakes_ack_reaches_the_protocol_once() -> None:
    """The peer's first data rides on the ACK that completes the handshake: the transport
    is attached and handed those bytes in the same pass, once."""
    async def scenario() -> None:
        async with driven_stack(_config()) as d:
            d.peer.send(tcpseg.SYN, PEER_ISS, options=tcpseg.encode_options(mss=MSS))
            (syn_ack,) = await d.peer.expect(1)
            d.peer.send(ACK, PEER_ISS + 1, syn_ack.seq + 1, payload=b"early bytes")
            protocol = await d.app.accepted()
            for _ in range(100):
                if protocol.data:
                    break
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.05)  # a second delivery, if there were one, would show
            assert bytes(protocol.data) == b"early bytes"

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_data_unread_when_the_connection_closes_is_still_delivered_then_eof() -> None:
    """The peer's data and FIN arrive while reading is paused (CLOSE_WAIT); then our FIN
    (write_eof), which the peer acknowledges: the connection is CLOSED, over for the stack,
    with the data still unread in it. Resuming hands over every byte, then EOF, and only
    then connection_lost(None). (A slow reader of a bidirectional transfer, its own FIN
    last, used to lose what it had not read yet: connection_lost came first.)"""
    async def run() -> tuple[State, int, bool, list[Exception | None], int, bool,
                             list[Exception | None], list[str]]:
        async with driven_stack(_config()) as d:
            protocol = await _established(d)
            transport = protocol.transport
            assert transport is not None
            (conn,) = d.stack.connections.values()
            order: list[str] = []
            original = protocol.eof_received, protocol.connection_lost

            def eof() -> bool:
                order.append("eof")
                return original[0]()

            def lost(exc: Exception | None) -> None:
                order.append("lost")
                original[1](exc)
            protocol.eof_received = eof  # type: ignore[method-assign]
            protocol.connection_lost = lost  # type: ignore[method-assign]
            protocol.on_data = lambda p: order.append("data")
            transport.pause_reading()
            d.peer.send(ACK, PEER_ISS + 1, STACK_ISS + 1, payload=bytes(range(200)) * 5)
            d.peer.send(ACK | FIN, PEER_ISS + 1001, STACK_ISS + 1)
            await d.peer.expect(1)  # the ACK of the data and the FIN
            transport.write_eof()
            (fin,) = await d.peer.expect(1)
            assert fin.flags & FIN
            d.peer.send(ACK, PEER_ISS + 1002, fin.seq + 1)
            for _ in range(100):
                if conn.state is State.CLOSED:
                    break
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.01)
            held = (conn.state, len(protocol.data), protocol.eof, list(protocol.lost))
            transport.resume_reading()
            for _ in range(100):
                if protocol.lost:
                    break
                await asyncio.sleep(0.002)
            assert await d.peer.quiet(0.05) == []  # reading a closed connection sends nothing
            return (*held, len(protocol.data), protocol.eof, protocol.lost, order)

    state, held_bytes, held_eof, held_lost, read, eof, lost, order = asyncio.run(
        asyncio.wait_for(run(), 10))
    assert (state, held_bytes, held_eof, held_lost) == (State.CLOSED, 0, False, [])
    assert (read, eof, lost) == (1000, True, [None])
    assert order == ["data", "eof", "lost"]
