"""The daemon (api/daemon.py) and its client (api/attach.py) in one process, over a stand-in
stack whose "TCP connections" are asyncio streams over socketpairs (the daemon sees only
streams): each rule of the protocol and of the lifetimes in milliseconds. The real stack,
kernel peers and other processes are tests/integration/test_daemon.py's."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tcpstack.api.attach import Attached, attach
from tcpstack.api.attach_protocol import encode
from tcpstack.api.daemon import Daemon, DaemonInUse
from tcpstack.cli.attached import streams
from tcpstack.stack import PortInUse

TIMEOUT = 5.0
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class StandInServer:
    def __init__(self, stack: StandInStack, handler: Handler, port: int) -> None:
        self.stack = stack
        self.handler = handler
        self.port = port
        self.closed = False

    def close(self) -> None:
        self.closed = True


class StandInStack:
    """What the daemon uses of a Stack. A connection's far end (`peer`) is the test's, as a
    kernel peer's socket would be."""

    iface = "tcps0"
    address = "10.77.0.2"
    address6 = "fd77::2"

    def __init__(self) -> None:
        self.servers: dict[int, StandInServer] = {}

    def endpoints_text(self, port: int) -> str:
        return f"{self.address}:{port} and [{self.address6}]:{port}"

    async def start_server(self, handler: Handler, port: int, *,
                           backlog: int | None = None) -> StandInServer:
        if port in self.servers and not self.servers[port].closed:
            raise PortInUse(f"port {port} is already listening")
        self.servers[port] = server = StandInServer(self, handler, port)
        return server

    async def open_connection(self, host: str, port: int
                              ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if port == 9:
            raise ConnectionRefusedError("refused")
        self.peer, ours = socket.socketpair()
        return await streams(ours, peername=(host, port), sockname=(self.address, 40000))

    async def arrive(self, port: int, peer: tuple[str, int]) -> socket.socket:
        """A connection from `peer` to the listener on `port`; the peer's end."""
        theirs, ours = socket.socketpair()
        reader, writer = await streams(ours, peername=peer, sockname=(self.address, port))
        task = asyncio.ensure_future(self.servers[port].handler(reader, writer))
        self._tasks = getattr(self, "_tasks", set()) | {task}
        return theirs


def run(tmp_path: Path, body: Callable[[Daemon, StandInStack], Awaitable[None]]) -> None:
    async def main() -> None:
        stack = StandInStack()
        daemon = Daemon(stack, path=tmp_path / "attach.sock")  # type: ignore[arg-type]
        await daemon.start()
        try:
            await asyncio.wait_for(body(daemon, stack), TIMEOUT * 2)
        finally:
            daemon.close()
    asyncio.run(main())


async def blocking(func: Callable[..., Any], *args: Any) -> Any:
    """A blocking call of the client's, off the daemon's loop, bounded."""
    return await asyncio.wait_for(asyncio.to_thread(func, *args), TIMEOUT)


def attach_at(tmp_path: Path) -> Attached:
    return attach(path=tmp_path / "attach.sock", timeout=TIMEOUT)


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(TIMEOUT)
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(int(TIMEOUT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_connect_hands_over_a_descriptor_that_carries_bytes_both_ways(tmp_path: Path) -> None:
    async def body(daemon: Daemon, stack: StandInStack) -> None:
        client: Attached = await blocking(attach_at, tmp_path)
        sock: socket.socket = await blocking(client.connect, "10.77.0.1", 5000)
        assert (sock.family, sock.type) == (socket.AF_UNIX, socket.SOCK_STREAM)
        up = bytes(range(256)) * 2048
        def send() -> None:
            sock.sendall(up)  # more than the sockets between hold: backpressure
            sock.shutdown(socket.SHUT_WR)

        _, got = await asyncio.gather(blocking(send), blocking(read_all, stack.peer))
        assert got == up  # then the FIN
        await blocking(stack.peer.sendall, b"down")
        stack.peer.close()
        assert await blocking(read_all, sock) == b"down"
        sock.close()
        await until(lambda: daemon.status()["connections"] == 0)
        client.close()

    run(tmp_path, body)


def test_a_descriptor_outlives_the_control_connection_and_its_close_is_a_fin(
        tmp_path: Path) -> None:
    async def body(daemon: Daemon, stack: StandInStack) -> None:
        client: Attached = await blocking(attach_at, tmp_path)
        sock: socket.socket = await blocking(client.connect, "10.77.0.1", 5000)
        client.close()
        await until(lambda: daemon.status()["clients"] == 0)
        await blocking(sock.sendall, b"still here" * 1000)
        sock.close()  # as a dying process's kernel would
        assert await blocking(read_all, stack.peer) == b"still here" * 1000
        await until(lambda: daemon.status()["connections"] == 0)

    run(tmp_path, body)


def test_a_refused_connect_is_connection_refused_naming_where(tmp_path: Path) -> None:
    async def body(daemon: Daemon, stack: StandInStack) -> None:
        with await blocking(attach_at, tmp_path) as client:
            with pytest.raises(ConnectionRefusedError) as info:
                await blocking(client.connect, "10.77.0.1", 9)
            assert str(info.value) == "connection to 10.77.0.1:9 refused"

    run(tmp_path, body)


def test_an_accepted_connection_goes_to_the_listening_process_with_its_peer(
        tmp_path: Path) -> None:
    async def body(daemon: Daemon, stack: StandInStack) -> None:
        client: Attached = await blocking(attach_at, tmp_path)
        listener = await blocking(client.listen, 7)
        assert daemon.status()["listeners"] == 1
        peer = await stack.arrive(7, ("10.77.0.1", 40123))
        conn, address = await blocking(listener.accept, TIMEOUT)
        assert address == ("10.77.0.1", 40123)
        await blocking(peer.sendall, b"ping")
        assert await blocking(conn.recv, 4) == b"ping"
        await blocking(conn.sendall, b"pong")
        conn.close()
        assert await blocking(read_all, peer) == b"pong"
        with pytest.raises(OSError, match="port 7 is already listening"):
            await blocking(client.listen, 7)
        await blocking(listener.close)
        assert stack.servers[7].closed
        client.close()

    run(tmp_path, body)


def test_a_client_that_goes_away_loses_its_listeners_not_its_connections(
        tmp_path: Path) -> None:
    async def body(daemon: Daemon, stack: StandInStack) -> None:
        client: Attached = await blocking(attach_at, tmp_path)
        listener = await blocking(client.listen, 7)
        peer = await stack.arrive(7, ("10.77.0.1", 40124))
        conn, _ = await blocking(listener.accept, TIMEOUT)
        client.close()
        await until(lambda: stack.servers[7].closed)
        assert daemon.status() | {"pid": 0} == {
            "pid": 0, "iface": "tcps0", "address": "10.77.0.2", "address6": "fd77::2",
            "clients": 0,
            "listeners": 0, "connections": 1, "udp": 0}
        await blocking(conn.sendall, b"after")
        conn.close()
        assert await blocking(read_all, peer) == b"after"
        await until(lambda: daemon.status()["connections"] == 0)

    run(tmp_path, body)


def test_stop_resolves_the_daemons_stop_future_and_answers_its_pid(tmp_path: Path) -> None:
    async def body(daemon: Daemon, stack: StandInStack) -> None:
        with await blocking(attach_at, tmp_path) as client:
            assert daemon.stopped is not None and not daemon.stopped.done()
            pid = await blocking(client.stop)
        assert pid == daemon.status()["pid"]
        await asyncio.wait_for(daemon.stopped, TIMEOUT)

    run(tmp_path, body)


def _raw_exchange(path: Path, wire: bytes) -> list[dict[str, Any]]:
    """Send `wire` as a client would, read every line until the daemon hangs up."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        sock.sendall(wire)
        sock.shutdown(socket.SHUT_WR)
        return [json.loads(line) for line in read_all(sock).splitlines()]


def test_bad_requests_are_answered_and_a_broken_line_ends_the_conversation(
        tmp_path: Path) -> None:
    async def body(daemon: Daemon, stack: StandInStack) -> None:
        path = tmp_path / "attach.sock"
        replies = await blocking(_raw_exchange, path, encode(
            {"version": 1, "id": 1, "op": "listen", "port": 0}) + b"not json\n"
            + encode({"version": 1, "id": 2, "op": "status"}))
        assert replies == [
            {"id": 1, "ok": False, "kind": "invalid", "error": "invalid port 0: must be 1-65535"},
            {"event": "error", "error": "a line that is not JSON"}]  # and nothing after it
        await until(lambda: daemon.status()["clients"] == 0)

    run(tmp_path, body)


def test_a_second_daemon_on_the_same_socket_is_refused(tmp_path: Path) -> None:
    async def body(daemon: Daemon, stack: StandInStack) -> None:
        other = Daemon(stack, path=daemon.path)  # type: ignore[arg-type]
        with pytest.raises(DaemonInUse, match="a tcpstack daemon already serves"):
            await other.start()

    run(tmp_path, body)


def test_the_socket_is_owner_only_without_a_group_and_removed_at_close(tmp_path: Path) -> None:
    async def body(daemon: Daemon, stack: StandInStack) -> None:
        assert daemon.path.stat().st_mode & 0o777 == 0o600
        daemon.close()
        assert not daemon.path.exists()

    run(tmp_path, body)
