"""Echo (RFC 862) and discard (RFC 863) services."""

from __future__ import annotations

import asyncio

CHUNK = 1 << 16


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send back every byte; half-close our side when the peer half-closes."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read and drop everything until the peer closes."""
    try:
        while await reader.read(CHUNK):
            pass
    except ConnectionError:
        pass
    finally:
        writer.close()
