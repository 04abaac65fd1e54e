"""A listener's accept queue as `tcpstack stat` shows it: the connections the api handed to
the application whose handler has not started yet (what waits in a Linux accept queue)."""

from __future__ import annotations

import asyncio

from tcpstack.api.streams import Server
from tcpstack.api.transport import TcpTransport
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent, Event
from tests.unit.fake_tun import driven_stack


def test_an_accepted_connection_waits_in_the_accept_queue_until_its_handler_runs() -> None:
    async def main() -> tuple[list[int], list[int], int]:
        async with driven_stack() as d:
            handled: list[int] = []

            async def handler(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
                handled.append(server.accept_queue)

            server = Server(None, d.stack.listeners[80], handler, 1 << 16)  # type: ignore[arg-type]
            queued: list[int] = []

            def on_event(conn: Connection, event: Event) -> None:
                if isinstance(conn.owner, TcpTransport):
                    conn.owner.handle_event(event)
                elif event.kind is ConnEvent.ESTABLISHED:
                    server.accept(d.driver, conn)
                    queued.append(server.accept_queue)

            d.driver.on_event = on_event
            await d.peer.handshake()
            for _ in range(100):
                if handled:
                    break
                await asyncio.sleep(0.01)
            return queued, handled, server.accept_queue

    queued, handled, left = asyncio.run(main())
    assert queued == [1], "accepted: queued until the loop runs the handler"
    assert handled == [0], "the handler's first step takes it off the queue"
    assert left == 0
