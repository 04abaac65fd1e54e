"""A tcpstack application written against the Python API, run inside a namespace:
`tcpstack.start_server` on the default stack. Port 7000 answers each line in upper case;
port 7001 half-closes first (a banner, then FIN) and counts what still arrives. Prints
"ready" once listening, the stream types it was handed and the counts; stops on SIGTERM."""

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


async def banner_then_count(reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    """Half-close first: send a banner and FIN, then keep receiving until the peer's FIN."""
    writer.write(b"banner\n")
    writer.write_eof()
    await writer.drain()
    received = 0
    while chunk := await reader.read(65536):
        received += len(chunk)
    print(f"received {received}", flush=True)
    writer.close()


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await tcpstack.start_server(handle, 7000)
    banner = await tcpstack.start_server(banner_then_count, 7001)
    print("ready", flush=True)
    async with server, banner:
        await stop.wait()
    stack = await tcpstack.api.streams.default_stack()
    await stack.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
