"""A tcpstack application that reads late: it connects to a kernel server that sends SIZE
bytes and a FIN at once, sends its own FIN without reading anything, waits until the
connection is CLOSED (every byte and both FINs acknowledged, the server's data unread), and
only then reads. Prints one JSON line: what it read and the connection's last state.

    python api_late_reader.py HOST PORT
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

import tcpstack
from tcpstack.tcp.state import State


async def main(host: str, port: int) -> None:
    async with tcpstack.Stack() as stack:
        reader, writer = await stack.open_connection(host, port)
        await asyncio.sleep(0.3)  # the server's data and FIN arrive, unread
        writer.write_eof()
        (conn,) = stack.network.connections.values()
        for _ in range(500):
            if conn.state is State.CLOSED:
                break
            await asyncio.sleep(0.01)
        state = conn.state.name
        data = await asyncio.wait_for(reader.read(), 10)
        print(json.dumps({"state": state, "read": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
