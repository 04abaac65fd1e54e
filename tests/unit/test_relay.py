"""The relay behind `connect` over a descriptor (as `connect --attach` runs it): everything
read from standard input reaches the peer, though the process may exit the moment the relay
returns."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import threading
import time

from tcpstack.services.relay import relay

SIZE = 2 * 1024 * 1024


def test_what_the_transport_still_buffers_is_written_before_the_relay_returns() -> None:
    ours, peer = socket.socketpair()
    peer.settimeout(10)
    stdin_r, stdin_w = os.pipe()
    received = bytearray()

    def feed_stdin() -> None:
        with os.fdopen(stdin_w, "wb") as f:
            f.write(os.urandom(SIZE))

    def peer_side() -> None:
        peer.shutdown(socket.SHUT_WR)  # nothing to send back: the relay's downstream ends
        while data := peer.recv(1 << 16):  # a slow reader: the relay's transport buffers
            received.extend(data)
            time.sleep(0.01)

    async def main() -> None:
        reader, writer = await asyncio.open_connection(sock=ours)
        await asyncio.wait_for(relay(reader, writer, stdin_r, io.BytesIO()), 20)
        # asyncio.run closes the loop now, as the process's exit would: unwritten is lost

    threads = [threading.Thread(target=feed_stdin), threading.Thread(target=peer_side)]
    for t in threads:
        t.start()
    try:
        asyncio.run(main())
    finally:
        for t in threads:
            t.join(15)
        os.close(stdin_r)
        peer.close()
    assert len(received) == SIZE
