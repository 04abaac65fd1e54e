"""`listen --attach` and `connect --attach`: the same services and relay, on descriptors a
running daemon (`tcpstack up`) hands over instead of on a stack of this process's own. Each
descriptor becomes asyncio streams (a Unix socket's), so the services run unchanged; the
blocking attach client runs in a thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from tcpstack.api.attach import Attached, AttachedListener, attach
from tcpstack.api.datagram_channel import recv_datagram, send_datagram
from tcpstack.api.streams import format_endpoint
from tcpstack.cli.app import CommandFailed, exit_signalled, stop_on_signals, until_signalled
from tcpstack.services.relay import Progress, relay

log = logging.getLogger("tcpstack")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
STREAM_LIMIT = 2 ** 16


class _AttachedWriter(asyncio.StreamWriter):
    """A StreamWriter over a passed descriptor that answers "peername" and "sockname" with
    the TCP connection's addresses, not the socketpair's (which has none)."""

    def __init__(self, transport: asyncio.Transport, protocol: asyncio.BaseProtocol,
                 reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop,
                 names: dict[str, tuple[str, int]]) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._names = names

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._names:
            return self._names[name]
        return super().get_extra_info(name, default)


async def streams(sock: socket.socket, **names: tuple[str, int]
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams over a passed descriptor, as asyncio.open_connection(sock=...)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
    writer = _AttachedWriter(transport, protocol, reader, loop, names)
    return reader, writer


async def _attach(iface: str) -> Attached:
    try:
        return await asyncio.to_thread(attach, iface)
    except OSError as exc:  # none running, not allowed, not answering: its one line
        raise CommandFailed(str(exc)) from None


def _our_addresses(client: Attached, iface: str, address: str | None) -> list[str]:
    """The daemon's addresses; CommandFailed when `address` is given and not one of them."""
    status = client.status()
    ours = [a for a in (status["address"], status.get("address6")) if a is not None]
    if address is not None and address not in ours:
        raise CommandFailed(f"the daemon on {iface} has address {' and '.join(ours)}, "
                            f"not {address}")
    return ours


async def serve_attached(iface: str, address: str | None, handler: Handler, port: int,
                         backlog: int) -> None:
    """Listen on `port` of the daemon's stack and serve each connection with `handler`
    until SIGINT or SIGTERM, or the daemon goes away."""
    stop = stop_on_signals()
    client = await _attach(iface)
    served: set[asyncio.Task[None]] = set()
    accepting: asyncio.Future[None] | None = None
    try:
        ours = _our_addresses(client, iface, address)
        where = " and ".join(format_endpoint(a, port) for a in ours)
        try:
            listener = await asyncio.to_thread(client.listen, port, backlog)
        except (OSError, ValueError) as exc:
            raise CommandFailed(f"cannot listen on {where}: {exc}") from None
        log.info("listening on %s (attached to the daemon on %s)", where, iface)

        async def accept_forever(listener: AttachedListener) -> None:
            while True:
                sock, peer = await asyncio.to_thread(listener.accept)
                reader, writer = await streams(sock, peername=peer,
                                               sockname=(str(ours), port))
                task = asyncio.ensure_future(handler(reader, writer))
                served.add(task)
                task.add_done_callback(served.discard)

        accepting = asyncio.ensure_future(accept_forever(listener))
        await asyncio.wait((stop, accepting), return_when=asyncio.FIRST_COMPLETED)
        if accepting.done():
            try:
                accepting.result()
            except ConnectionError as exc:
                raise CommandFailed(f"the daemon on {iface} stopped serving: {exc}") from None
        log.info("shutting down")
    finally:
        client.close()  # wakes the thread in accept()
        for task in (*served, *([accepting] if accepting is not None else [])):
            task.cancel()
        await asyncio.gather(*served, *([accepting] if accepting else []),
                             return_exceptions=True)


class _HandedTransport(asyncio.DatagramTransport):
    """An asyncio DatagramTransport over a UDP endpoint's descriptor from the daemon
    (Attached.bind_udp), so the UDP services run on it unchanged. `ended` resolves when
    the daemon closes the endpoint."""

    def __init__(self, sock: socket.socket, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self._sock = sock
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[None] = self._loop.create_future()
        sock.setblocking(False)
        self._loop.add_reader(sock, self._read)
        protocol.connection_made(self)

    def _read(self) -> None:
        while self._sock.fileno() >= 0:  # (a datagram_received may close it)
            try:
                data, addr = recv_datagram(self._sock)
            except BlockingIOError:
                return
            except EOFError:
                self.close()
                return
            except OSError as exc:  # an error the endpoint reported (ECONNREFUSED, ...)
                self._protocol.error_received(exc)
                continue
            self._protocol.datagram_received(data, addr)  # type: ignore[arg-type]

    def sendto(self, data: Any, addr: Any = None) -> None:
        try:
            send_datagram(self._sock, bytes(data), addr)
        except OSError as exc:  # the socketpair full (a lost datagram), or closed
            self._protocol.error_received(exc)

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        self._loop.remove_reader(self._sock)
        self._sock.close()
        self._protocol.connection_lost(None)
        if not self.ended.done():
            self.ended.set_result(None)

    def is_closing(self) -> bool:
        return self._sock.fileno() < 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._sock if name == "socket" else default


async def serve_udp_attached(iface: str, address: str | None,
                             protocol_factory: Callable[[], asyncio.DatagramProtocol],
                             service: str, port: int) -> None:
    """A UDP service on `port` of the daemon's stack until SIGINT or SIGTERM, or the daemon
    goes away: its endpoint's descriptor, served by `protocol_factory()`'s protocol."""
    stop = stop_on_signals()
    client = await _attach(iface)
    try:
        ours = _our_addresses(client, iface, address)
        where = " and ".join(format_endpoint(a, port) for a in ours)
        try:
            sock = await asyncio.to_thread(client.bind_udp, port)
        except (OSError, ValueError) as exc:
            raise CommandFailed(f"cannot bind UDP port {port}: {exc}") from None
    finally:
        client.close()  # the endpoint stays with its descriptor
    transport = _HandedTransport(sock, protocol_factory())
    try:
        log.info("listening on udp %s (%s, attached to the daemon on %s)", where, service,
                 iface)
        await asyncio.wait((stop, transport.ended), return_when=asyncio.FIRST_COMPLETED)
        if transport.ended.done():
            raise CommandFailed(f"the daemon on {iface} closed UDP port {port}")
        log.info("shutting down")
    finally:
        transport.close()


async def connect_attached(iface: str, host: str, port: int, timeout: float | None,
                           progress: bool) -> None:
    """`connect` on the daemon's stack: one connection, relayed as `connect` relays it."""
    signalled = stop_on_signals()
    where = format_endpoint(host.strip("[]"), port)  # [fd77::1]:5000 for IPv6

    async def session() -> None:
        client = await _attach(iface)
        try:
            sock = await asyncio.to_thread(client.connect, host, port, timeout)
        except ConnectionRefusedError:
            raise CommandFailed(f"connection to {where} refused") from None
        except (ValueError, TimeoutError, ConnectionError) as exc:
            raise CommandFailed(str(exc)) from None
        except OSError as exc:
            raise CommandFailed(f"connection to {where} failed: {exc}") from None
        finally:
            client.close()  # the connection stays with its descriptor
        reader, writer = await streams(sock)
        try:
            await relay(reader, writer, sys.stdin.fileno(), sys.stdout.buffer,
                        Progress(sys.stderr) if progress else None)
        except ConnectionError as exc:
            raise CommandFailed(f"connection to {where} lost: {exc}") from None

    if (sig := await until_signalled(session(), signalled)) is not None:
        exit_signalled(sig)
