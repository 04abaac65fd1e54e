"""The data pump behind `tcpstack connect`: standard input to the peer, the peer to standard
output, like nc. End of input half-closes our side (shutdown(SHUT_WR)); the relay ends when
both directions have ended."""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

CHUNK = 1 << 16


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, input_fd: int,
                output: BinaryIO) -> None:
    """Raises ConnectionError if the connection is reset or times out."""
    loop = asyncio.get_running_loop()

    async def upstream() -> None:
        # A thread reads the descriptor: epoll refuses regular files, and a terminal or pipe
        # works the same way, so one path serves every kind of standard input.
        while data := await loop.run_in_executor(None, os.read, input_fd, CHUNK):
            writer.write(data)
            await writer.drain()
        writer.write_eof()

    async def downstream() -> None:
        while data := await reader.read(CHUNK):
            output.write(data)
            output.flush()

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    try:
        # A reset ends both directions at once: whichever fails first, stop the other.
        done, _ = await asyncio.wait((up, down), return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
        await asyncio.gather(up, down)
    finally:
        for task in (up, down):
            task.cancel()
        writer.close()
