"""api.streams.StreamProtocol: what asyncio's StreamWriter and StreamReader ask of their
protocol, behaving as asyncio's StreamReaderProtocol does (drain waits while writing is
paused and wakes on resume or loss, wait_closed resolves or raises with the loss, the
reader sees the data, EOF or error, a handler that raises is reported and its connection
closed), plus what it does differently to save memory (nothing allocated for drain or
wait_closed until used). The transport is a stub: these are the protocol's own rules."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tcpstack.api.streams import StreamProtocol


class StubTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.written = bytearray()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write(self, data: Any) -> None:
        self.written += data

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _client(loop: asyncio.AbstractEventLoop) -> tuple[StreamProtocol, asyncio.StreamReader,
                                                      asyncio.StreamWriter, StubTransport]:
    """As open_connection makes them: no handler, the writer made by the caller."""
    reader = asyncio.StreamReader(loop=loop)
    protocol = StreamProtocol(reader, loop=loop)
    transport = StubTransport()
    protocol.connection_made(transport)
    return protocol, reader, asyncio.StreamWriter(transport, protocol, reader, loop), transport


def test_drain_waits_while_writing_is_paused_and_every_waiter_wakes_on_resume() -> None:
    async def main() -> tuple[bool, bool, bool]:
        protocol, _, writer, _ = _client(asyncio.get_running_loop())
        await writer.drain()  # not paused: returns at once
        protocol.pause_writing()
        first = asyncio.ensure_future(writer.drain())
        second = asyncio.ensure_future(writer.drain())
        for _ in range(3):
            await asyncio.sleep(0)
        waiting = not first.done() and not second.done()
        protocol.resume_writing()
        await asyncio.wait_for(asyncio.gather(first, second), 1)
        writer.close()
        return waiting, first.done(), protocol._drain_waiters == []

    assert asyncio.run(main()) == (True, True, True)


def test_losing_the_connection_wakes_a_paused_drain_with_the_error() -> None:
    async def main() -> None:
        protocol, _, writer, _ = _client(asyncio.get_running_loop())
        protocol.pause_writing()
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0)
        protocol.connection_lost(ConnectionResetError("reset by peer"))
        with pytest.raises(ConnectionResetError, match="reset by peer"):
            await drain
        writer.close()

    asyncio.run(main())


def test_drain_after_the_connection_is_lost_raises() -> None:
    async def main() -> None:
        protocol, _, writer, _ = _client(asyncio.get_running_loop())
        protocol.connection_lost(None)
        with pytest.raises(ConnectionResetError, match="Connection lost"):
            await writer.drain()
        writer.close()

    asyncio.run(main())


def test_the_reader_gets_the_data_then_eof_and_wait_closed_returns() -> None:
    async def main() -> tuple[bytes, bool, bool, bool]:
        protocol, reader, writer, _ = _client(asyncio.get_running_loop())
        protocol.data_received(b"hello ")
        protocol.data_received(b"world")
        keep_open = protocol.eof_received()
        data = await reader.read()
        closing = asyncio.ensure_future(writer.wait_closed())  # awaited before the loss
        await asyncio.sleep(0)
        pending = not closing.done()
        protocol.connection_lost(None)
        await asyncio.wait_for(closing, 1)
        await asyncio.wait_for(writer.wait_closed(), 1)  # and after it
        writer.close()
        return data, keep_open, reader.at_eof(), pending

    assert asyncio.run(main()) == (b"hello world", True, True, True)


def test_a_connection_lost_with_an_error_reaches_the_reader_and_wait_closed() -> None:
    async def main() -> None:
        protocol, reader, writer, _ = _client(asyncio.get_running_loop())
        protocol.connection_lost(ConnectionResetError("connection reset by peer"))
        with pytest.raises(ConnectionResetError, match="connection reset by peer"):
            await reader.read(10)
        with pytest.raises(ConnectionResetError, match="connection reset by peer"):
            await writer.wait_closed()
        writer.close()

    asyncio.run(main())


def test_nothing_is_allocated_for_drain_or_wait_closed_until_they_are_used() -> None:
    async def main() -> tuple[object, object, bool]:
        protocol, _, writer, _ = _client(asyncio.get_running_loop())
        writer.close()
        return protocol._drain_waiters, protocol._closed, hasattr(protocol, "__dict__")

    assert asyncio.run(main()) == (None, None, False)


def test_a_server_handler_gets_a_reader_and_writer_on_the_transport_and_runs_as_a_task() -> None:
    async def main() -> tuple[bytes, bool]:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            done.set_result(writer.transport is transport)
            writer.close()

        reader = asyncio.StreamReader(loop=loop)
        protocol = StreamProtocol(reader, handler, loop)
        transport = StubTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"ping")
        same = await asyncio.wait_for(done, 1)
        return bytes(transport.written), same

    assert asyncio.run(main()) == (b"ping", True)


def test_a_handler_that_raises_is_reported_and_its_connection_closed() -> None:
    async def main() -> tuple[list[dict[str, Any]], bool]:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raise RuntimeError("handler bug")

        transport = StubTransport()
        StreamProtocol(asyncio.StreamReader(loop=loop), handler, loop).connection_made(transport)
        for _ in range(3):
            await asyncio.sleep(0)
        return reported, transport.closed

    reported, closed = asyncio.run(main())
    assert [(c["message"], str(c["exception"])) for c in reported] == [
        ("Unhandled exception in client_connected_cb", "handler bug")]
    assert closed
