"""A tcpstack application on the Python API over IPv6, run inside a namespace: a Stack with
its default addresses opens a connection to the kernel at fd77::1 (the port is argv[1]),
sends a line and prints what comes back with the addresses the transport reports, then
serves an echo on port 7000 for kernel clients of either family, printing "ready" and
each client's peername; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from tcpstack.api.streams import Stack


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    print(f"client {writer.get_extra_info('peername')}", flush=True)
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def main(port: int) -> None:
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
        await stack.start_server(echo, 7000)
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
