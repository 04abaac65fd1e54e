"""The real StackDriver on a real event loop, over a TUN device made of a socket pair.

`FakeTun` has what the driver uses of `TunDevice` (`fd`, `read`, `write`, `offload`) on one
end of an AF_UNIX SOCK_SEQPACKET pair, which keeps packet boundaries as a TUN descriptor
does and has no small queue limit (SOCK_DGRAM pairs stop at net.unix.max_dgram_qlen, 10).
The test plays the kernel on the other end with `TunPeer`: it writes crafted IPv4/TCP
packets and reads, decoded, what the stack wrote. No root, no namespace, no interface.

`driven_stack()` brings up a NetworkStack, its driver and the pair on the running loop and
takes them down again; every wait here is bounded.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tcpstack.api.transport import TcpTransport
from tcpstack.io.driver import StackDriver
from tcpstack.net import ipv4
from tcpstack.net.checksum import Bytes
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent, Event
from tcpstack.tcp.segment import ACK, SYN
from tests.unit.link_pair import FixedIsn
from tests.unit.scripted_peer import PEER_ADDR, PEER_PORT, STACK_ADDR, Sent, decode

STACK_ISS = 1_000_000
PEER_ISS = 5_000_000
MSS = 1460


class FakeTun:
    """The stack's end of the pair, shaped like `TunDevice` (no offload header)."""

    offload = False

    def __init__(self) -> None:
        self._stack_end, self.peer_end = socket.socketpair(socket.AF_UNIX,
                                                           socket.SOCK_SEQPACKET)
        self._stack_end.setblocking(False)
        self.peer_end.setblocking(False)
        self.fd = self._stack_end.fileno()

    def read(self) -> tuple[bytes, bool]:
        """One packet, its checksum not vouched for; BlockingIOError when none waits, as
        from a TUN descriptor."""
        return self._stack_end.recv(65536), False

    def write(self, headers: bytes, payload: Bytes = b"", gso_size: int = 0) -> None:
        assert gso_size == 0, "a link without offload is never handed a GSO packet"
        self._stack_end.sendmsg((headers, payload))  # one datagram, gathered as TUN's writev

    def close(self) -> None:
        self._stack_end.close()
        self.peer_end.close()


class TunPeer:
    """The kernel's side: sends segments from PEER_ADDR:PEER_PORT, reads the stack's."""

    def __init__(self, tun: FakeTun, port: int = 80) -> None:
        self._sock = tun.peer_end
        self.port = port  # the stack's port the segments go to

    def send(self, flags: int, seq: int, ack: int = 0, *, window: int = 65535,
             payload: bytes = b"", options: bytes = b"") -> None:
        pseudo = ipv4.pseudo_header_sum(PEER_ADDR, STACK_ADDR, PROTO_TCP)
        tcp = tcpseg.build(PEER_PORT, self.port, seq, ack, flags, window, pseudo, options,
                           payload)
        self._sock.send(ipv4.build(PEER_ADDR, STACK_ADDR, PROTO_TCP, tcp))

    def take(self) -> list[Sent]:
        """Whatever the stack has written so far, without waiting."""
        sent: list[Sent] = []
        while True:
            try:
                packet = self._sock.recv(65536)
            except BlockingIOError:
                return sent
            sent.append(decode(packet, time.monotonic()))

    async def expect(self, count: int, timeout: float = 2.0) -> list[Sent]:
        """Wait until the stack has written `count` packets (more may come along)."""
        got: list[Sent] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} packets from the stack within "
                                     f"{timeout} s, got {[str(s) for s in got]}")
            await asyncio.sleep(0.002)
            got += self.take()
        return got

    async def quiet(self, seconds: float) -> list[Sent]:
        """Let `seconds` pass; what the stack wrote meanwhile."""
        await asyncio.sleep(seconds)
        return self.take()

    async def data_until(self, end: int, timeout: float = 2.0) -> list[Sent]:
        """Collect what the stack writes until a segment reaches sequence number `end`."""
        got: list[Sent] = []
        deadline = time.monotonic() + timeout
        while not any(s.seq + len(s.payload) >= end for s in got):
            if time.monotonic() > deadline:
                raise AssertionError(f"no data up to seq {end} within {timeout} s, got "
                                     f"{[str(s) for s in got]}")
            await asyncio.sleep(0.002)
            got += self.take()
        return got

    async def handshake(self, options: bytes = b"", window: int = 65535) -> Sent:
        """SYN, the stack's SYN-ACK, ACK: the connection is ESTABLISHED on both ends."""
        self.send(SYN, PEER_ISS, window=window, options=options)
        (syn_ack,) = await self.expect(1)
        assert syn_ack.flags == SYN | ACK, str(syn_ack)
        self.send(ACK, PEER_ISS + 1, syn_ack.seq + 1, window=window)
        return syn_ack


class Recorder(asyncio.Protocol):
    """A protocol that keeps everything the transport tells it, with the write buffer's
    size at each pause and resume."""

    def __init__(self) -> None:
        self.transport: TcpTransport | None = None
        self.data = bytearray()
        self.eof = False
        self.lost: list[Exception | None] = []
        self.pauses: list[int] = []
        self.resumes: list[int] = []
        self.on_data: Callable[[Recorder], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, TcpTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.on_data is not None:
            self.on_data(self)

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def pause_writing(self) -> None:
        assert self.transport is not None
        self.pauses.append(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.resumes.append(self.transport.get_write_buffer_size())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


@dataclass
class Served:
    """The application on the stack: a TcpTransport with a Recorder for each connection
    established, handed its events as api.streams.Stack hands them."""

    driver: StackDriver
    protocols: list[Recorder] = field(default_factory=list)

    def __call__(self, conn: Connection, event: Event) -> None:
        owner = conn.owner
        if isinstance(owner, TcpTransport):
            owner.handle_event(event)
        elif event.kind is ConnEvent.ESTABLISHED:
            protocol = Recorder()
            TcpTransport.attach(self.driver, conn, protocol)
            self.protocols.append(protocol)

    async def accepted(self, timeout: float = 2.0) -> Recorder:
        deadline = time.monotonic() + timeout
        while not self.protocols:
            if time.monotonic() > deadline:
                raise AssertionError(f"no connection established within {timeout} s")
            await asyncio.sleep(0.002)
        return self.protocols[0]


@dataclass
class Driven:
    stack: NetworkStack
    driver: StackDriver
    tun: FakeTun
    peer: TunPeer
    app: Served


@asynccontextmanager
async def driven_stack(config: TcpConfig | None = None,
                       listen: int | None = 80) -> AsyncIterator[Driven]:
    """A NetworkStack (ISN STACK_ISS) run by the real driver over a FakeTun, listening on
    `listen` with `Served` as its application."""
    stack = NetworkStack(STACK_ADDR, config or TcpConfig(), FixedIsn(STACK_ISS))
    if listen is not None:
        stack.listen(listen)
    tun = FakeTun()
    driver = StackDriver(stack, tun, asyncio.get_running_loop())  # type: ignore[arg-type]
    app = Served(driver)
    driver.on_event = app
    driver.start()
    try:
        yield Driven(stack, driver, tun, TunPeer(tun, listen or 80), app)
    finally:
        driver.stop()
        tun.close()
