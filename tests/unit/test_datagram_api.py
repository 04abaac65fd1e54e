"""`Stack.create_datagram_endpoint` in asyncio's shape, on the real driver and event loop over
a socket-pair TUN (tests/unit/fake_tun.py): datagrams reach `datagram_received` with the
sender's (host, port), `sendto` frames them, a connected endpoint hears port unreachable
as ConnectionRefusedError, and the errors of sendto go to `error_received`."""

from __future__ import annotations

import asyncio
import errno
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tcpstack.api.datagram import DatagramTransport
from tcpstack.api.streams import Stack
from tcpstack.net import ipv4, udp
from tcpstack.net.checksum import checksum
from tcpstack.net.ipv4 import PROTO_ICMP
from tcpstack.services.datagram import UdpEcho
from tests.unit.fake_tun import FakeTun

LOCAL = bytes([10, 77, 0, 2])
PEER = bytes([10, 77, 0, 1])
PROTO_UDP = udp.PROTO_UDP


class Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.datagrams: list[tuple[bytes, Any]] = []
        self.errors: list[Exception] = []
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


class Kernel:
    """The kernel's end of the pair: writes datagrams from PEER, reads what the stack wrote."""

    def __init__(self, tun: FakeTun) -> None:
        self._sock = tun.peer_end

    def send(self, sport: int, dport: int, payload: bytes) -> bytes:
        packet = ipv4.build(PEER, LOCAL, PROTO_UDP, udp.build(PEER, LOCAL, sport, dport,
                                                              payload))
        self._sock.send(packet)
        return packet

    def send_raw(self, packet: bytes) -> None:
        self._sock.send(packet)

    async def take(self, count: int, timeout: float = 2.0) -> list[ipv4.IPv4Packet]:
        got: list[ipv4.IPv4Packet] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            try:
                got.append(ipv4.parse(self._sock.recv(65536)))
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{len(got)} of {count} packets within {timeout} s"
                                         ) from None
                await asyncio.sleep(0.002)
        return got


async def _until(condition: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.002)


@asynccontextmanager
async def _stack() -> AsyncIterator[tuple[Stack, Kernel]]:
    tun = FakeTun()
    stack = Stack(tun=tun, control=False, address="10.77.0.2",  # type: ignore[arg-type]
                  kernel_address="10.77.0.1/24")
    await stack.start()
    try:
        yield stack, Kernel(tun)
    finally:
        await stack.close(linger=0.0)


@pytest.mark.timeout(20)
def test_a_bound_endpoint_receives_with_the_senders_address_and_answers() -> None:
    async def main() -> None:
        async with _stack() as (stack, kernel):
            transport, protocol = await stack.create_datagram_endpoint(
                Recorder, local_addr=("0.0.0.0", 5353))
            assert isinstance(protocol, Recorder) and protocol.transport is transport
            assert transport.get_extra_info("sockname") == ("10.77.0.2", 5353)
            assert transport.get_extra_info("peername") is None
            kernel.send(40000, 5353, b"question")
            await _until(lambda: protocol.datagrams)
            assert protocol.datagrams == [(b"question", ("10.77.0.1", 40000))]
            transport.sendto(b"answer", ("10.77.0.1", 40000))
            (reply,) = await kernel.take(1)
            dgram = udp.parse(reply.payload, LOCAL, PEER)
            assert (dgram.sport, dgram.dport, bytes(dgram.payload)) == (5353, 40000, b"answer")
            assert stack.counters["udp_in_datagrams"] == 1
            assert stack.counters["udp_out_datagrams"] == 1
            snapshot = stack.snapshot()
            assert snapshot["udp"] == [{"state": "UNCONN", "local": "10.77.0.2:5353",
                                        "peer": "*:*", "recv_q": 0, "send_q": 0, "drops": 0,
                                        "rcvbuf": 212992}]
            transport.close()
            assert transport.is_closing()
            await _until(lambda: protocol.lost)
            assert protocol.lost == [None]
            assert stack.snapshot()["udp"] == []
    asyncio.run(main())


@pytest.mark.timeout(20)
def test_the_udp_echo_service_sends_each_datagram_back() -> None:
    async def main() -> None:
        async with _stack() as (stack, kernel):
            await stack.create_datagram_endpoint(UdpEcho, local_addr=("10.77.0.2", 7))
            for i in range(3):
                kernel.send(41000 + i, 7, b"echo %d" % i)
            replies = await kernel.take(3)
            assert [(udp.parse(r.payload, LOCAL, PEER).dport,
                     bytes(udp.parse(r.payload, LOCAL, PEER).payload)) for r in replies] == [
                (41000, b"echo 0"), (41001, b"echo 1"), (41002, b"echo 2")]
    asyncio.run(main())


@pytest.mark.timeout(20)
def test_a_connected_endpoint_gets_connection_refused_from_port_unreachable() -> None:
    async def main() -> None:
        async with _stack() as (stack, kernel):
            transport, protocol = await stack.create_datagram_endpoint(
                Recorder, remote_addr=("10.77.0.1", 9))
            assert isinstance(protocol, Recorder)
            local_port = transport.get_extra_info("sockname")[1]
            assert 32768 <= local_port < 61000
            assert transport.get_extra_info("peername") == ("10.77.0.1", 9)
            transport.sendto(b"anyone?")
            (sent,) = await kernel.take(1)
            quoted = bytes(sent.payload)  # what the kernel's ICMP quotes: header, 8 bytes
            whole = ipv4.build(LOCAL, PEER, PROTO_UDP, quoted)
            message = struct.pack("!BBHI", 3, 3, 0, 0) + whole[:28]
            message = message[:2] + checksum(message).to_bytes(2, "big") + message[4:]
            kernel.send_raw(ipv4.build(PEER, LOCAL, PROTO_ICMP, message))
            await _until(lambda: protocol.errors)
            (error,) = protocol.errors
            assert isinstance(error, ConnectionRefusedError)
            assert error.errno == errno.ECONNREFUSED
            with pytest.raises(ValueError, match="Invalid address"):
                transport.sendto(b"x", ("10.77.0.1", 10))
    asyncio.run(main())


@pytest.mark.timeout(20)
def test_sendto_errors_go_to_error_received_as_asyncio_does() -> None:
    async def main() -> None:
        async with _stack() as (stack, kernel):
            transport, protocol = await stack.create_datagram_endpoint(Recorder)
            assert isinstance(protocol, Recorder)
            transport.sendto(bytes(1473), ("10.77.0.1", 9))   # MTU 1500 - 28
            (error,) = protocol.errors
            assert isinstance(error, OSError) and error.errno == errno.EMSGSIZE
            transport.sendto(bytes(1472), ("10.77.0.1", 9))
            assert len(await kernel.take(1)) == 1
            with pytest.raises(TypeError):
                transport.sendto("text", ("10.77.0.1", 9))  # type: ignore[arg-type]
    asyncio.run(main())


@pytest.mark.timeout(20)
def test_binding_a_bound_port_or_another_address_fails_as_bind_would() -> None:
    async def main() -> None:
        async with _stack() as (stack, _):
            await stack.create_datagram_endpoint(Recorder, local_addr=("", 7))
            with pytest.raises(OSError) as info:
                await stack.create_datagram_endpoint(Recorder, local_addr=("", 7))
            assert info.value.errno == errno.EADDRINUSE
            with pytest.raises(OSError) as info:
                await stack.create_datagram_endpoint(Recorder, local_addr=("10.77.0.3", 8))
            assert info.value.errno == errno.EADDRNOTAVAIL
            with pytest.raises(ValueError, match="not an IP address"):
                await stack.create_datagram_endpoint(Recorder, remote_addr=("nowhere", 8))
    asyncio.run(main())


@pytest.mark.timeout(20)
def test_closing_the_stack_closes_its_datagram_transports() -> None:
    async def main() -> None:
        tun = FakeTun()
        stack = Stack(tun=tun, control=False, address="10.77.0.2",  # type: ignore[arg-type]
                      kernel_address="10.77.0.1/24")
        transport, protocol = await stack.create_datagram_endpoint(Recorder)
        assert isinstance(transport, DatagramTransport) and isinstance(protocol, Recorder)
        await stack.close(linger=0.0)
        await asyncio.sleep(0)
        assert transport.is_closing() and protocol.lost == [None]
        assert transport.endpoint.closed
    asyncio.run(main())
