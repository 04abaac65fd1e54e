"""A UDP echo server (RFC 862) on tcpstack's asyncio API: the code is what it would be on the
kernel's UDP with `loop.create_datagram_endpoint`, with the stack's method instead.

    sudo python examples/udp_echo.py 7     # then, from the kernel side: nc -u 10.77.0.2 7

It brings up a stack with the defaults (interface tcps0, stack 10.77.0.2, kernel side
10.77.0.1/24), sends each datagram back to its sender, and runs until interrupted (SIGINT or
SIGTERM). A datagram to any other UDP port of the stack draws ICMP port unreachable.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import tcpstack


class Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        print(f"{addr[0]}:{addr[1]} sent {len(data)} bytes", flush=True)
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with tcpstack.Stack() as stack:
        transport, _ = await stack.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", port))
        print(f"udp echo server on port {port}", flush=True)
        await stop.wait()
        transport.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 7))
