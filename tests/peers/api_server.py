"""A tcpstack application written against the Python API, run inside a namespace:
`tcpstack.start_server` on the default stack, a handler that answers each line in upper case.
Prints "ready" once listening and the stream types it was handed; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import tcpstack


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    print(f"types {type(reader).__name__} {type(writer).__name__}", flush=True)
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await tcpstack.start_server(handle, 7000)
    print("ready", flush=True)
    async with server:
        await stop.wait()
    stack = await tcpstack.api.streams.default_stack()
    await stack.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
