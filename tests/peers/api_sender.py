"""Sends a file over one active open from the Python API (`Stack.open_connection`), closes,
and prints the stack's counters as JSON: for tests that need them from a sending stack.

    python api_sender.py HOST PORT FILE
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import tcpstack


async def main(host: str, port: int, path: Path) -> None:
    async with tcpstack.Stack() as stack:
        reader, writer = await stack.open_connection(host, port)
        with path.open("rb") as f:
            while chunk := f.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
        writer.write_eof()
        await reader.read()  # until the peer closes too
        writer.close()
        await writer.wait_closed()
        print(json.dumps(stack.counters), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
