"""A tcpstack application on the Python API over IPv6, run inside a namespace: a Stack with
its default addresses opens a connection to the kernel at fd77::1 (the port is argv[1]),
sends a line and prints what comes back with the addresses the transport reports; sends a
datagram through `create_datagram_endpoint` to the kernel's UDP server at fd77::1 (port
argv[2]) and prints the answer; then serves an echo on port 7000 for kernel clients of
either family, printing "ready" and each client's peername; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from tcpstack.api.streams import Stack


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    print(f"client {writer.get_extra_info('peername')}", flush=True)
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


class Answer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Future[tuple[bytes, Any]] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.got.done():
            self.got.set_result((data, addr))


async def main(port: int, udp_port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Stack() as stack:
        reader, writer = await asyncio.wait_for(stack.open_connection("fd77::1", port), 10)
        print(f"sockname {writer.get_extra_info('sockname')} "
              f"peername {writer.get_extra_info('peername')}", flush=True)
        writer.write(b"hello from tcpstack\n")
        await writer.drain()
        print(f"reply {(await asyncio.wait_for(reader.readline(), 10)).decode().strip()}",
              flush=True)
        writer.close()
        transport, protocol = await stack.create_datagram_endpoint(
            Answer, remote_addr=("fd77::1", udp_port))
        assert isinstance(protocol, Answer)
        transport.sendto(b"datagram from tcpstack")
        data, addr = await asyncio.wait_for(protocol.got, 10)
        print(f"udp {data.decode()} from {addr} "
              f"sockname {transport.get_extra_info('sockname')}", flush=True)
        transport.close()
        await stack.start_server(echo, 7000)
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
