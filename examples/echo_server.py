"""An echo server on tcpstack's asyncio API: the code is what it would be on the kernel's TCP
with `asyncio.start_server`, with `tcpstack.start_server` instead.

    sudo python examples/echo_server.py 7     # then, from the kernel side: nc 10.77.0.2 7

It brings up the default stack (interface tcps0, stack 10.77.0.2, kernel side 10.77.0.1/24)
and serves until interrupted (SIGINT or SIGTERM), then closes its connections cleanly.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import tcpstack


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    print(f"{peer[0]}:{peer[1]} connected", flush=True)
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()
    print(f"{peer[0]}:{peer[1]} closed", flush=True)


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await tcpstack.start_server(echo, port)
    print(f"echo server listening on port {port}", flush=True)
    async with server:
        await stop.wait()
    stack = await tcpstack.api.streams.default_stack()
    await stack.close()  # FINs to the peers still connected, as a kernel socket's close


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 7))
