"""A UDP application on the Python API, run inside a namespace: it brings up the default
stack (tcps0, 10.77.0.2) and, through `create_datagram_endpoint`, exchanges datagrams with
the kernel UDP server on 10.77.0.1:PORT (connected, then unconnected with sendto), then
sends to CLOSED, where nothing listens, and reports the kernel's port unreachable. One line
per result, then the counters; exit status 0 when every wait ended in time."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import tcpstack

KERNEL = "10.77.0.1"


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.errors: asyncio.Queue[Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.put_nowait(exc)


async def main(port: int, closed: int) -> None:
    async with tcpstack.Stack() as stack:
        transport, protocol = await stack.create_datagram_endpoint(
            Collect, remote_addr=(KERNEL, port))
        assert isinstance(protocol, Collect)
        print("peername", transport.get_extra_info("peername"), flush=True)
        for i in range(3):
            transport.sendto(b"ping %d" % i)
            data, addr = await asyncio.wait_for(protocol.queue.get(), 10)
            print("connected got", data.decode(), addr, flush=True)
        transport.close()

        transport, protocol = await stack.create_datagram_endpoint(
            Collect, local_addr=("0.0.0.0", 5400))
        assert isinstance(protocol, Collect)
        transport.sendto(b"hello" * 200, (KERNEL, port))
        data, addr = await asyncio.wait_for(protocol.queue.get(), 10)
        print("unconnected got", len(data), data[:5].decode(), addr, flush=True)
        transport.close()

        transport, protocol = await stack.create_datagram_endpoint(
            Collect, remote_addr=(KERNEL, closed))
        assert isinstance(protocol, Collect)
        transport.sendto(b"anyone?")
        error = await asyncio.wait_for(protocol.errors.get(), 10)
        print("closed port error", type(error).__name__, error.errno, flush=True)
        transport.close()
        counters = stack.counters
        print("counters", " ".join(f"{name}={counters.get(name, 0)}" for name in (
            "udp_in_datagrams", "udp_out_datagrams", "icmp_errors_accepted")), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
