"""One stack for many processes: the attach socket a running Stack serves (`tcpstack up`).

A client process connects to the Unix socket at attach_protocol.attach_path(iface) and asks
for listeners and connections (attach_protocol.py has the messages). Each connection is
handed over as a descriptor, one end of a socketpair passed with SCM_RIGHTS, whose other end
the daemon joins to the TCP connection with api.bridge.bridge; an accepted connection goes
to the process that listens, over its control connection, with the peer's address.

Lifetimes are a kernel socket's: a connection lasts as long as some process holds its
descriptor (the last close is a FIN after the queued data, which the bridge sends); a
listener as long as the control connection that opened it, so a client that dies has its
listeners closed, its connections closed by the kernel closing its descriptors, and both
freed here. Who may connect: root, the daemon's own user, and with `group` that group's
members; the socket file's mode (0600, or 0660 and the group) says so to the kernel, and
SO_PEERCRED is checked too, so a file made more open by hand admits nobody more.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import logging
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tcpstack.api.attach_protocol import (
    MAX_FDS,
    PROTOCOL_VERSION,
    Decoder,
    Peer,
    ProtocolError,
    attach_path,
    check_request,
    encode,
    peer_groups,
    refusal,
)
from tcpstack.api.bridge import bridge
from tcpstack.api.control import answers, file_identity, sweep_stale, unlink_if_ours
from tcpstack.api.datagram_channel import DatagramChannel
from tcpstack.api.streams import Server, Stack
from tcpstack.link.tun import LinkError
from tcpstack.stack import PortInUse
from tcpstack.tcp.config import DEFAULT_BACKLOG

log = logging.getLogger("tcpstack")

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
RECV_SIZE = 1 << 16


class DaemonInUse(LinkError):
    """Another live daemon serves this attach socket."""


def group_id(name: str) -> int:
    """The gid of group `name` (or a number), or ValueError saying there is none."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise ValueError(f"no group named {name!r} (see getent group)") from None


def peer_of(sock: socket.socket) -> Peer:
    pid, uid, gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return Peer(pid, uid, gid, peer_groups(pid))


async def _wait_fd(loop: asyncio.AbstractEventLoop, sock: socket.socket, write: bool) -> None:
    future: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not future.done():
            future.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, ready)
    try:
        await future
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


class _Client:
    """One attached process: its control connection, its listeners, its pending connects."""

    def __init__(self, daemon: Daemon, sock: socket.socket, peer: Peer) -> None:
        self.daemon = daemon
        self.sock = sock
        self.peer = peer
        self.listeners: dict[int, Server] = {}
        self.connects: set[asyncio.Task[None]] = set()
        self.closed = False
        self._send_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()

    async def send(self, message: dict[str, Any], fd: int | None = None) -> None:
        """One message, and the descriptor `fd` in the same sendmsg as its first byte.
        Messages never interleave; a client that stops reading stalls only itself."""
        data = encode(message)
        async with self._send_lock:
            if self.closed:
                raise ConnectionResetError("the client has gone")
            sent = 0
            while fd is not None:
                try:
                    sent = socket.send_fds(self.sock, [data], [fd])
                    break
                except BlockingIOError:
                    await _wait_fd(self._loop, self.sock, write=True)
            if sent < len(data):
                await self._loop.sock_sendall(self.sock, data[sent:])

    async def run(self) -> None:
        decoder = Decoder()
        try:
            while True:
                try:
                    data, fds, _, _ = socket.recv_fds(self.sock, RECV_SIZE, MAX_FDS)
                except BlockingIOError:
                    await _wait_fd(self._loop, self.sock, write=False)
                    continue
                if not data:
                    return
                for message in decoder.feed(data, fds):
                    if message.fd is not None:  # clients have no business passing any
                        os.close(message.fd)
                    await self._request(message.body)
        except ProtocolError as exc:
            log.info("attached pid %d broke the protocol: %s", self.peer.pid, exc)
            with contextlib.suppress(OSError):
                await self.send({"event": "error", "error": str(exc)})
        except OSError as exc:
            log.debug("attached pid %d went away: %s", self.peer.pid, exc)
        finally:
            decoder.close()
            self.close()

    async def _request(self, body: dict[str, Any]) -> None:
        ident = body.get("id")
        problem = check_request(body)
        if problem is not None:
            await self.send({"id": ident, "ok": False, "kind": "invalid", "error": problem})
            return
        op = body["op"]
        if op == "connect":
            task = asyncio.ensure_future(self.daemon.connect(self, body))
            self.connects.add(task)
            task.add_done_callback(self.connects.discard)
            return
        if op == "udp":
            await self.daemon.bind_udp(self, body)
            return
        reply: dict[str, Any]
        if op == "listen":
            reply = await self.daemon.listen(self, body["port"], body.get("backlog"))
        elif op == "close":
            server = self.listeners.pop(body["listener"], None)
            if server is None:
                reply = {"ok": False, "error": f"no listener {body['listener']} here"}
            else:
                server.close()
                reply = {"ok": True}
        elif op == "status":
            reply = {"ok": True, **self.daemon.status()}
        else:  # stop
            reply = {"ok": True, "pid": os.getpid()}
            self.daemon.request_stop(self.peer)
        await self.send({"id": ident, **reply})

    def close(self) -> None:
        """The process is gone, or the daemon is stopping: its listeners and pending
        connects go; its connections stay with their descriptors."""
        if self.closed:
            return
        self.closed = True
        for server in self.listeners.values():
            server.close()
        self.listeners.clear()
        for task in self.connects:
            task.cancel()
        self.sock.close()
        self.daemon.forget(self)


class Daemon:
    """Serves the attach socket of `stack` (started) until `close()`. `group`: the gid
    whose members may attach besides root and the daemon's own user."""

    def __init__(self, stack: Stack, *, group: int | None = None,
                 group_name: str | None = None, path: Path | None = None) -> None:
        self.stack = stack
        self.group = group
        self.group_name = group_name
        self.path = path if path is not None else attach_path(stack.iface)
        self.stopped: asyncio.Future[None] | None = None  # resolves on a `stop` request
        self._server: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections = 0  # bridges running
        self._datagrams = 0    # UDP endpoints handed out, until their descriptors close
        self._next_listener = 0
        self._identity: tuple[int, int] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopped = loop.create_future()
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if answers(self.path):
                raise DaemonInUse(f"a tcpstack daemon already serves {self.path} (same "
                                  "interface, same network namespace)")
            self.path.unlink()  # left by a daemon that was killed
        sweep_stale(self.path.parent, pattern="attach-*.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # no moment at which the file is more open than meant
        try:
            server.bind(str(self.path))
        finally:
            os.umask(old_umask)
        try:
            if self.group is not None:
                os.chown(self.path, -1, self.group)
                os.chmod(self.path, 0o660)
            server.listen(128)
            server.setblocking(False)
        except BaseException:
            server.close()
            self.path.unlink()
            raise
        self._identity = file_identity(self.path)
        self._server = server
        self._accepting = asyncio.ensure_future(self._accept_loop(server))

    async def _accept_loop(self, server: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(server)
            sock.setblocking(False)
            try:
                peer = peer_of(sock)
            except OSError:
                sock.close()
                continue
            client = _Client(self, sock, peer)
            why = refusal(peer, self.group, self.group_name, os.geteuid())
            if why is not None:
                log.info("refused pid %d (uid %d): %s", peer.pid, peer.uid, why)
                self._keep(asyncio.ensure_future(self._refuse(client, why)))
                continue
            self._clients.add(client)
            self._keep(asyncio.ensure_future(client.run()))

    def _keep(self, task: asyncio.Task[None]) -> None:
        """Hold a task until it ends (the loop holds tasks only weakly)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse(self, client: _Client, why: str) -> None:
        with contextlib.suppress(OSError):
            await asyncio.wait_for(client.send({"event": "refused", "error": why}), 5.0)
        client.close()

    def forget(self, client: _Client) -> None:
        self._clients.discard(client)

    def request_stop(self, peer: Peer) -> None:
        log.info("stop requested by pid %d (uid %d)", peer.pid, peer.uid)
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(None)

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "iface": self.stack.iface,
                "address": str(self.stack.address),
                "address6": None if self.stack.address6 is None else str(self.stack.address6),
                "clients": len(self._clients),
                "listeners": sum(len(c.listeners) for c in self._clients),
                "connections": self._connections, "udp": self._datagrams}

    # ------------------------------------------------------------ the operations

    async def listen(self, client: _Client, port: int, backlog: int | None) -> dict[str, Any]:
        self._next_listener += 1
        number = self._next_listener
        limit = backlog or DEFAULT_BACKLOG
        handing = 0

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # Connections waiting to be sent to a client that does not read its control
            # connection are its accept queue: beyond the backlog, refused with a RST.
            nonlocal handing
            if handing >= limit:
                writer.transport.abort()
                return
            handing += 1
            await self._hand_over(client, reader, writer,
                                  {"event": "accepted", "listener": number}, sent=handed)

        def handed() -> None:
            nonlocal handing
            handing -= 1

        try:
            server = await self.stack.start_server(accepted, port, backlog=backlog)
        except PortInUse as exc:
            return {"ok": False, "kind": "in_use", "error": str(exc)}
        except ValueError as exc:
            return {"ok": False, "kind": "invalid", "error": str(exc)}
        client.listeners[number] = server
        log.info("pid %d listens on %s", client.peer.pid, self.stack.endpoints_text(port))
        return {"ok": True, "listener": number, "port": port}

    async def connect(self, client: _Client, body: dict[str, Any]) -> None:
        host, port, ident = body["host"], body["port"], body["id"]
        where = f"{host}:{port}"
        try:
            reader, writer = await asyncio.wait_for(
                self.stack.open_connection(host, port), body.get("timeout"))
        except ConnectionRefusedError:
            kind, error = "refused", f"connection to {where} refused"
        except TimeoutError as exc:
            detail = str(exc).removeprefix("connection timed out").strip()
            kind = "timeout"
            error = f"connection to {where} timed out" + (f" {detail}" if detail else "")
        except (ValueError, LinkError) as exc:
            kind, error = "invalid", str(exc)
        except OSError as exc:  # an ICMP error, a reset during the handshake
            kind, error = "failed", f"connection to {where} failed: {exc.strerror or exc}"
        else:
            await self._hand_over(client, reader, writer, {"id": ident, "ok": True})
            return
        with contextlib.suppress(OSError):
            await client.send({"id": ident, "ok": False, "kind": kind, "error": error})

    async def bind_udp(self, client: _Client, body: dict[str, Any]) -> None:
        """A UDP endpoint on `body["port"]` (connected to `body["remote"]` when given),
        handed to `client` as its end of a SEQPACKET socketpair; the endpoint lasts as long
        as that descriptor (api/datagram_channel.py closes it at the descriptor's end)."""
        ident, port, remote = body["id"], body["port"], body.get("remote")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

        def closed() -> None:
            self._datagrams -= 1

        channel = DatagramChannel(self.stack, ours, on_close=closed)
        reply: dict[str, Any]
        try:
            transport, _ = await self.stack.create_datagram_endpoint(
                lambda: channel, local_addr=("", port),
                remote_addr=None if remote is None else (remote[0], remote[1]))
        except OSError as exc:
            kind = "in_use" if exc.errno == errno.EADDRINUSE else "invalid"
            reply = {"ok": False, "kind": kind, "error": exc.strerror or str(exc)}
        except (ValueError, LinkError) as exc:
            reply = {"ok": False, "kind": "invalid", "error": str(exc)}
        else:
            self._datagrams += 1
            local = transport.get_extra_info("sockname")
            try:
                await client.send({"id": ident, "ok": True, "fd": 1, "local": list(local)},
                                  theirs.fileno())
            except (OSError, asyncio.CancelledError) as exc:
                channel.close()  # nobody will ever read it
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                log.info("pid %d bound udp %s", client.peer.pid,
                         self.stack.endpoints_text(port))
            finally:
                theirs.close()  # the client's copy is the one that counts now
            return
        ours.close()
        theirs.close()
        with contextlib.suppress(OSError):
            await client.send({"id": ident, **reply})

    async def _hand_over(self, client: _Client, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, message: dict[str, Any],
                         sent: Callable[[], None] | None = None) -> None:
        """Give `client` its end of a socketpair for the connection (then call `sent`,
        whether that worked or not), then bridge ours."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        try:
            await client.send({**message, "fd": 1, "peer": list(peer), "local": list(local)},
                              theirs.fileno())
        except (OSError, asyncio.CancelledError) as exc:
            ours.close()
            writer.transport.abort()  # nobody will ever read it: as a RST from a dead socket
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            theirs.close()  # the client's copy is the one that counts now
            if sent is not None:
                sent()
        # From here the connection lives as long as its descriptor, not the client's
        # control connection: a pending connect becomes a bridge the client cannot cancel.
        task = asyncio.current_task()
        if task is not None:
            client.connects.discard(task)
        self._connections += 1
        try:
            await bridge(reader, writer, ours)
        finally:
            self._connections -= 1

    # ------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Stop taking clients and close every control connection (their listeners with
        them); the connections end with the stack's close, which the caller runs next."""
        if self._accepting is not None:
            self._accepting.cancel()
            self._accepting = None
        if self._server is not None:
            self._server.close()
            self._server = None
        unlink_if_ours(self.path, self._identity)
        self._identity = None
        for client in list(self._clients):
            client.close()

    async def wait_idle(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the bridges to finish (after the stack closed
        their connections)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._connections and loop.time() < deadline:
            await asyncio.sleep(0.02)


__all__ = ["PROTOCOL_VERSION", "Daemon", "DaemonInUse", "group_id", "peer_of"]
