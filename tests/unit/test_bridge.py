"""api.bridge: a connection's streams joined to a Unix socket. The "connection" here is asyncio
streams over a socketpair of its own (the bridge only sees streams), so each rule runs in
milliseconds; the socket facade's and the daemon's tests run it over real TCP."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tcpstack.api.bridge import bridge

TIMEOUT = 5.0


class Joined:
    """A bridge between a stand-in connection (`peer`: the TCP peer's end of it, blocking) and
    a program's descriptor (`program`, blocking)."""

    def __init__(self) -> None:
        self.peer, tcp_side = socket.socketpair()
        self.program, self._bridge_end = socket.socketpair()
        self._tcp_side = tcp_side
        for s in (self.peer, self.program):
            s.settimeout(TIMEOUT)
        self.reader: asyncio.StreamReader | None = None
        self.task: asyncio.Task[BaseException | None] | None = None

    async def start(self) -> None:
        self.reader, writer = await asyncio.open_connection(sock=self._tcp_side)
        self.task = asyncio.ensure_future(bridge(self.reader, writer, self._bridge_end))

    async def result(self) -> BaseException | None:
        assert self.task is not None
        return await asyncio.wait_for(self.task, TIMEOUT)


async def _in_thread(func: object, *args: object) -> object:
    return await asyncio.to_thread(func, *args)  # type: ignore[arg-type]


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def test_bytes_cross_both_ways_and_half_closes_travel() -> None:
    async def main() -> None:
        j = Joined()
        await j.start()
        up = bytes(range(256)) * 4096  # 1 MiB: more than either socket buffers
        down = b"peer" * 300_000
        sent_up = _in_thread(lambda: (j.program.sendall(up), j.program.shutdown(socket.SHUT_WR)))
        sent_down = _in_thread(lambda: (j.peer.sendall(down), j.peer.shutdown(socket.SHUT_WR)))
        got_up = _in_thread(_read_all, j.peer)
        got_down = _in_thread(_read_all, j.program)
        results = await asyncio.wait_for(
            asyncio.gather(sent_up, sent_down, got_up, got_down), TIMEOUT)
        assert results[2] == up
        assert results[3] == down
        assert await j.result() is None

    asyncio.run(main())


def test_half_closed_program_still_receives() -> None:
    async def main() -> None:
        j = Joined()
        await j.start()
        j.program.sendall(b"request")
        j.program.shutdown(socket.SHUT_WR)
        assert await _in_thread(_read_all, j.peer) == b"request"  # the FIN came after it
        j.peer.sendall(b"response after our FIN")
        j.peer.shutdown(socket.SHUT_WR)
        assert await _in_thread(_read_all, j.program) == b"response after our FIN"
        assert await j.result() is None

    asyncio.run(main())


def test_a_program_that_closes_gets_its_queued_data_sent_then_a_fin() -> None:
    async def main() -> None:
        j = Joined()
        await j.start()
        j.peer.sendall(b"never read")  # unread by the program when it closes
        await asyncio.sleep(0.05)
        j.program.sendall(b"last words" * 10_000)
        j.program.close()
        assert await _in_thread(_read_all, j.peer) == b"last words" * 10_000
        assert await j.result() is None

    asyncio.run(main())


def test_a_program_that_stops_reading_stops_the_peer() -> None:
    async def main() -> None:
        j = Joined()
        await j.start()
        j.peer.setblocking(False)
        sent = 0
        for _ in range(2000):  # the peer writes until everything in between is full
            try:
                sent += j.peer.send(b"x" * 65536)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                try:
                    sent += j.peer.send(b"x" * 65536)
                except BlockingIOError:
                    break
        assert sent < 64 * 1024 * 1024  # it was held back, not buffered without bound
        j.peer.setblocking(True)
        j.peer.shutdown(socket.SHUT_WR)
        received = len(await _in_thread(_read_all, j.program))
        assert received == sent
        j.program.close()
        assert await j.result() is None

    asyncio.run(main())


def test_a_reset_connection_closes_the_descriptor_and_is_returned() -> None:
    async def main() -> None:
        j = Joined()
        await j.start()
        assert j.reader is not None
        await asyncio.sleep(0.01)
        j.reader.set_exception(ConnectionResetError("reset by peer"))
        error = await j.result()
        assert isinstance(error, ConnectionResetError)
        assert await _in_thread(_read_all, j.program) == b""
        with pytest.raises(OSError):
            j.program.sendall(b"x" * 1_000_000)

    asyncio.run(main())
