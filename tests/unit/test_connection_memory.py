"""What one idle connection costs in memory, bounded so that a regression shows.

Connections are opened through the real driver over a FakeTun, each accepted by the api's
`Server` as `tcpstack listen --discard` accepts them: a TcpTransport, the StreamProtocol, a
StreamReader and StreamWriter, and the handler's task, waiting in `reader.read()`. The
peer offers what Linux offers (MSS, SACK, window scale), so each connection has the parts
a real one has. tracemalloc counts what stays allocated per connection once they are all
established and idle.

The bound: this build measures about 4,275 bytes a connection on CPython 3.11 (the first
issue 11 cuts took it from 7,500 to 5,150: a 760-byte deque of drain waiters, dicts for
the transport, its extra info and the congestion controller, a wrapping coroutine per
handler, asyncio's StreamReaderProtocol with a weak reference, a closure and a future,
empty lists; the second from 5,150 to 4,275: the StreamWriter's own finished future, a
bound method and a context per handler, its task's formatted name, empty bytearrays in
the transport and both buffers, RACK's state, the reassembly queue and the lists of
events and segments while they are empty, a copy of the peer's address in each
connection). It is that plus about 5% (215 bytes): undoing any cut of 220 bytes or more
fails (the deque, the wrapping coroutine, asyncio's protocol; of the second round the
api's 336 bytes, or RACK's state and the buffers' 300), and so does the build before
the second round, while the amortised growth of the stack's tables does not. RSS is a
little more than this (the allocator's own overhead, about 7%): docs/PERFORMANCE.md has
the RSS the benchmark measures.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import tracemalloc

from tcpstack.api.streams import Server
from tcpstack.api.transport import TcpTransport
from tcpstack.net import ipv4
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.services.echo import discard
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent, Event
from tcpstack.tcp.segment import ACK, SYN
from tcpstack.tcp.state import State
from tests.unit.fake_tun import Driven, driven_stack
from tests.unit.scripted_peer import PEER_ADDR, STACK_ADDR

BYTES_PER_IDLE_CONNECTION = 4_490
CONNECTIONS = 400
BATCH = 50  # SYNs in flight at once: well inside the socket pair's buffer
PEER_ISS = 5_000_000
LINUX_SYN_OPTIONS = tcpseg.encode_options(mss=1460, wscale=7, sack_permitted=True)


def _packet(sport: int, flags: int, seq: int, ack: int) -> bytes:
    pseudo = ipv4.pseudo_header_sum(PEER_ADDR, STACK_ADDR, PROTO_TCP)
    tcp = tcpseg.build(sport, 80, seq, ack, flags, 65535, pseudo,
                       LINUX_SYN_OPTIONS if flags == SYN else b"", b"")
    return ipv4.build(PEER_ADDR, STACK_ADDR, PROTO_TCP, tcp)


async def _open(peer: socket.socket, ports: range) -> None:
    """Handshakes from `ports`, all at once: SYNs, then each SYN-ACK's ACK."""
    for port in ports:
        peer.send(_packet(port, SYN, PEER_ISS, 0))
    syn_acks: dict[int, int] = {}
    for _ in range(1000):
        if len(syn_acks) == len(ports):
            break
        await asyncio.sleep(0.002)
        while True:
            try:
                raw = peer.recv(65536)
            except BlockingIOError:
                break
            seg = tcpseg.parse(ipv4.parse(raw).payload, 0, verify=False)
            if seg.flags == SYN | ACK:
                syn_acks[seg.dport] = seg.seq
    assert len(syn_acks) == len(ports), f"{len(syn_acks)} SYN-ACKs for {len(ports)} SYNs"
    for port in ports:
        peer.send(_packet(port, ACK, PEER_ISS + 1, syn_acks[port] + 1))


async def _open_idle(d: Driven, server: Server, first: int, count: int) -> None:
    for start in range(first, first + count, BATCH):
        await _open(d.tun.peer_end, range(start, min(start + BATCH, first + count)))
    for _ in range(1000):  # every handler started and waiting in read()
        await asyncio.sleep(0.002)
        owned = [c for c in d.stack.connections.values() if isinstance(c.owner, TcpTransport)]
        if len(owned) == first + count - 10_000 and server.accept_queue == 0:
            return
    raise AssertionError("the connections were not all accepted")


def test_an_idle_connection_costs_less_than_the_bound() -> None:
    async def main() -> tuple[int, int]:
        async with driven_stack() as d:
            server = Server(None, d.stack.listeners[80], discard, 1 << 16)  # type: ignore[arg-type]

            def on_event(conn: Connection, event: Event) -> None:
                if isinstance(conn.owner, TcpTransport):
                    conn.owner.handle_event(event)
                elif event.kind is ConnEvent.ESTABLISHED:
                    server.accept(d.driver, conn)

            d.driver.on_event = on_event
            await _open_idle(d, server, 10_000, 50)  # warm up: caches, first-use objects
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                await _open_idle(d, server, 10_050, CONNECTIONS)
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            established = sum(c.state is State.ESTABLISHED
                              for c in d.stack.connections.values())
            for conn in list(d.stack.connections.values()):
                assert isinstance(conn.owner, TcpTransport)
                conn.owner.abort()  # the handlers end with the connection
            await asyncio.sleep(0.01)
            return established, (after - before) // CONNECTIONS

    established, per_connection = asyncio.run(main())
    assert established == 50 + CONNECTIONS
    assert per_connection < BYTES_PER_IDLE_CONNECTION, (
        f"an idle connection costs {per_connection} bytes, over the bound of "
        f"{BYTES_PER_IDLE_CONNECTION} (see the module docstring)")
