"""A tcpstack connection joined to a Unix stream socket, so a program holds the connection as
an ordinary file descriptor (the other end of a socketpair): the socket facade hands it out
in-process, the daemon to other processes with SCM_RIGHTS.

Each direction is a copy loop that waits for its writer to drain before it reads again, so
backpressure holds both ways: a program that stops reading closes the TCP window (the
TcpTransport's reading pauses behind the full Unix socket), and a peer that stops reading
stops the program's writes (the Unix socket fills behind the paused TcpTransport). A
half-close travels either way: the program's shutdown(SHUT_WR) is a FIN after its queued
data, the peer's FIN is end-of-file on the descriptor. A program that closes its descriptor
(or dies) gets what a kernel socket gives: its queued data, then a FIN; what the peer still
sends is discarded. A reset of the TCP connection closes the descriptor and is what
`bridge` returns; a Unix socket cannot carry ECONNRESET to its peer unless data is unread
(docs/DECISIONS.md), so the facade raises it from that result.
"""

from __future__ import annotations

import asyncio
import select
import socket

CHUNK = 64 * 1024


def _hung_up(sock: socket.socket) -> bool:
    """Whether the program closed its end, not just shut down its writing: a Unix stream
    socket whose peer closed is hung up both ways (POLLHUP); after shutdown(SHUT_WR) it is
    only at end-of-file."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return any(events & select.POLLHUP for _, events in poller.poll(0))


async def _to_program(reader: asyncio.StreamReader, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while data := await reader.read(CHUNK):
        await loop.sock_sendall(sock, data)  # returns once the Unix socket took it all
    sock.shutdown(socket.SHUT_WR)


async def _from_program(sock: socket.socket, writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = await loop.sock_recv(sock, CHUNK)
        except ConnectionError:
            data = b""  # it closed with our data unread: that is its end, as a close is
        if not data:
            break
        writer.write(data)
        await writer.drain()
    if not writer.is_closing():
        writer.write_eof()


async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 sock: socket.socket) -> BaseException | None:
    """Join the connection behind `reader`/`writer` to the connected Unix stream socket
    `sock` (the bridge's end of a socketpair) until both directions are done, or the
    program has closed its end. Returns the error that ended the TCP connection
    (ConnectionResetError, TimeoutError, ...), or None when it ended cleanly. The TCP
    connection and `sock` are closed on return: with a FIN after queued data, or aborted
    after an error."""
    sock.setblocking(False)
    outbound = asyncio.ensure_future(_from_program(sock, writer))
    inbound = asyncio.ensure_future(_to_program(reader, sock))
    error: BaseException | None = None
    try:
        pending: set[asyncio.Future[None]] = {outbound, inbound}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            error = reader.exception()
            if error is None and outbound in done:
                error = outbound.exception()  # the connection failed under a write
            if error is not None:
                break
            if outbound in done and _hung_up(sock):
                break  # the program is gone: what the peer still sends has nowhere to go
            # An inbound copy that failed (EPIPE) is the program gone too, but its queued
            # data is still to be sent: the outbound copy ends at its end-of-file.
    finally:
        for task in (outbound, inbound):
            task.cancel()
        await asyncio.gather(outbound, inbound, return_exceptions=True)
        sock.close()
        if error is None:
            writer.close()
        else:
            writer.transport.abort()
    return error
