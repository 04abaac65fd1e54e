"""A tcpstack (Python API) that connects to a kernel server, closes first and stays up, so
its connection sits in TIME_WAIT for `tcpstack stat` to see.

    python active_close.py PORT MSL

Brings up the default stack (tcps0, 10.77.0.2) with the given MSL, connects to
10.77.0.1:PORT (tests/peers/kernel_server.py count-then-reply), sends 1000 bytes, half-closes
(our FIN goes first), reads the reply until the server's FIN, prints "closed" and then waits
for SIGTERM or SIGINT before closing the stack. Exits 1 with a message on any failure."""

from __future__ import annotations

import asyncio
import signal
import sys

from tcpstack import Stack
from tcpstack.tcp.config import TcpConfig


async def main() -> int:
    port, msl = int(sys.argv[1]), float(sys.argv[2])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Stack(config=TcpConfig(msl=msl)) as stack:
        reader, writer = await asyncio.wait_for(stack.open_connection("10.77.0.1", port), 10)
        writer.write(b"y" * 1000)
        writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        print(f"closed {reply.decode().strip()}", flush=True)
        await asyncio.wait_for(stop.wait(), 60)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
