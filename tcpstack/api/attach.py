"""`tcpstack.attach()`: sockets on a running daemon's stack (`tcpstack up`) from any process.

    stack = tcpstack.attach()                 # the daemon on tcps0 in this namespace
    sock = stack.connect("10.77.0.1", 5000)   # an ordinary socket.socket
    listener = stack.listen(7)
    conn, (host, port) = listener.accept()
    udp = stack.bind_udp(7)                   # recv_datagram(udp), send_datagram(udp, ...)

Every connection is a real descriptor (one end of a Unix socketpair the daemon bridges to
the TCP connection): blocking or not, selectable, shut down and closed as any socket; its
last close sends a FIN after what was queued. The client is blocking and may be shared by
threads: one of them at a time reads the control connection and hands out what arrives
(replies, accepted connections) to whoever waits for it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any

from tcpstack.api.attach_protocol import (
    MAX_FDS,
    PROTOCOL_VERSION,
    Decoder,
    Message,
    ProtocolError,
    attach_path,
    encode,
)

DEFAULT_IFACE = "tcps0"
RECV_SIZE = 1 << 16
DEFAULT_BACKLOG = 128


class NoDaemonRunning(ConnectionError):
    """Nothing serves the attach socket: no `tcpstack up` on that interface here."""


def _address(value: Any) -> tuple[Any, ...]:
    """A peer's address as the socket module gives it: (host, port), or for IPv6 (host,
    port, flowinfo, scope_id) when the daemon sends those."""
    return (str(value[0]), int(value[1]), *(int(v) for v in value[2:]))


_ERRORS: dict[str, type[OSError]] = {
    "refused": ConnectionRefusedError, "timeout": TimeoutError, "in_use": OSError,
}


def _reply_error(body: dict[str, Any]) -> Exception:
    message = str(body.get("error", "the daemon refused the request"))
    kind = body.get("kind")
    if kind == "invalid":
        return ValueError(message)
    return _ERRORS.get(str(kind), ConnectionError)(message)


class AttachedListener:
    """A port the daemon listens on for this process; `accept()` its connections."""

    def __init__(self, client: Attached, number: int, port: int, backlog: int) -> None:
        self._client = client
        self.number = number
        self.port = port
        self.backlog = backlog
        self.closed = False

    def accept(self, timeout: float | None = None) -> tuple[socket.socket, tuple[Any, ...]]:
        """The next connection and its peer's (host, port); TimeoutError after `timeout`
        seconds, ConnectionError when the daemon has gone or the listener was closed."""
        fd, peer = self._client._accept(self, timeout)
        return socket.socket(fileno=fd), peer

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._client._close_listener(self)

    def __enter__(self) -> AttachedListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Attached:
    """A control connection to a daemon. `connect`, `listen`, `status`, `stop`, `close`."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.path = path
        self._sock = sock
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._reading = False
        self._decoder = Decoder()
        self._replies: dict[int, Message] = {}
        self._queues: dict[int, deque[tuple[int, tuple[Any, ...]]]] = {}
        self._listeners: dict[int, AttachedListener] = {}
        self._gone: str | None = None  # why the control connection ended, once it has
        self._refused = False

    # ------------------------------------------------------------ the calls

    def connect(self, host: str, port: int, timeout: float | None = None) -> socket.socket:
        """A connection to (host, port) from the daemon's stack, as a connected socket.
        ConnectionRefusedError, TimeoutError (after `timeout` seconds, or the SYN
        retransmissions) or another OSError when it cannot be made."""
        body = self._call({"op": "connect", "host": host, "port": port, "timeout": timeout},
                          None if timeout is None else timeout + 5.0)
        assert body.fd is not None
        return socket.socket(fileno=body.fd)

    def listen(self, port: int, backlog: int | None = None) -> AttachedListener:
        """Listen on `port` of the daemon's address until `close()` (or this client's end)."""
        backlog = backlog or DEFAULT_BACKLOG
        body = self._call({"op": "listen", "port": port, "backlog": backlog}).body
        number = int(body["listener"])
        listener = AttachedListener(self, number, port, backlog)
        with self._cond:
            self._queues.setdefault(number, deque())
            self._listeners[number] = listener
        return listener

    def bind_udp(self, port: int, remote: tuple[str, int] | None = None) -> socket.socket:
        """A UDP endpoint on `port` of the daemon's addresses (connected to `remote` when
        given), as a SOCK_SEQPACKET socket carrying one datagram per message after an
        address header: use api.datagram_channel's send_datagram and recv_datagram on it.
        The endpoint is the daemon's until the socket closes (or this process ends).
        OSError (the daemon's message, no errno) when the port is bound already."""
        body = self._call({"op": "udp", "port": port,
                           "remote": None if remote is None else list(remote)})
        assert body.fd is not None
        return socket.socket(fileno=body.fd)

    def status(self) -> dict[str, Any]:
        """What the daemon holds: its pid, clients, listeners and bridged connections."""
        body = dict(self._call({"op": "status"}).body)
        for key in ("id", "ok"):
            body.pop(key, None)
        return body

    def stop(self) -> int:
        """Ask the daemon to stop (what `tcpstack down` does); its pid."""
        return int(self._call({"op": "stop"}).body["pid"])

    def close(self) -> None:
        """End the control connection: the daemon closes this client's listeners. The
        connections already handed out stay open until their sockets are closed."""
        with self._cond:
            if self._gone is None:
                self._gone = "this client was closed"
            for listener in self._listeners.values():
                listener.closed = True
            queued = [fd for queue in self._queues.values() for fd, _ in queue]
            self._queues.clear()
            self._cond.notify_all()
        for fd in queued:
            os.close(fd)
        # shutdown wakes a thread blocked reading it; close alone would not.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._decoder.close()

    def __enter__(self) -> Attached:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------ the plumbing

    def _call(self, request: dict[str, Any], timeout: float | None = 30.0) -> Message:
        ident = next(self._ids)
        try:
            self._send({"version": PROTOCOL_VERSION, "id": ident, **request})
        except ConnectionError:
            # It may have said why before it hung up (a refusal): that is the error to give.
            with contextlib.suppress(TimeoutError):
                self._wait(lambda: False, time.monotonic() + 1.0, "word from the daemon")
            raise
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wait(lambda: ident in self._replies, deadline, f"reply to {request['op']}")
        with self._cond:
            message = self._replies.pop(ident)
        if not message.body.get("ok"):
            raise _reply_error(message.body)
        return message

    def _send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            if self._gone is not None:
                raise ConnectionError(self._gone)
            try:
                self._sock.sendall(encode(message))
            except OSError as exc:
                raise ConnectionError(f"the daemon at {self.path} went away: "
                                      f"{exc.strerror or exc}") from None

    def _accept(self, listener: AttachedListener,
                timeout: float | None) -> tuple[int, tuple[Any, ...]]:
        deadline = None if timeout is None else time.monotonic() + timeout

        def ready() -> bool:
            return bool(self._queues.get(listener.number)) or listener.closed

        self._wait(ready, deadline, "a connection")
        with self._cond:
            queue = self._queues.get(listener.number)
            if not queue:
                raise ConnectionError(f"listener on port {listener.port} is closed")
            return queue.popleft()

    def _close_listener(self, listener: AttachedListener) -> None:
        with self._cond:
            queued = self._queues.pop(listener.number, deque())
            self._listeners.pop(listener.number, None)
            self._cond.notify_all()
        for fd, _ in queued:
            os.close(fd)
        if self._gone is None:
            self._call({"op": "close", "listener": listener.number})

    def _wait(self, done: Any, deadline: float | None, what: str) -> None:
        """Until `done()` (called under the lock): read and dispatch the control connection,
        or wait for the thread that does."""
        while True:
            with self._cond:
                while True:
                    if done():
                        return
                    if self._gone is not None:
                        if self._refused:
                            raise PermissionError(self._gone)
                        raise ConnectionError(self._gone)
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"no {what} within the timeout")
                    if not self._reading:
                        self._reading = True
                        break
                    self._cond.wait(left)
            try:
                self._read_once(left)
            finally:
                with self._cond:
                    self._reading = False
                    self._cond.notify_all()

    def _read_once(self, timeout: float | None) -> None:
        try:
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                return
            data, fds, _, _ = socket.recv_fds(self._sock, RECV_SIZE, MAX_FDS)
        except (OSError, ValueError) as exc:  # ValueError: closed by another thread
            with self._cond:
                if self._gone is None:
                    self._gone = f"the daemon at {self.path} went away: {exc}"
            return
        with self._cond:
            if not data:
                if self._gone is None:
                    self._gone = f"the daemon at {self.path} closed the connection"
                return
            try:
                for message in self._decoder.feed(data, fds):
                    self._dispatch(message)
            except ProtocolError as exc:
                self._gone = f"the daemon at {self.path} broke the protocol: {exc}"

    def _dispatch(self, message: Message) -> None:
        body = message.body
        event = body.get("event")
        if event == "accepted":
            queue = self._queues.get(int(body.get("listener", -1)))
            listener = self._listeners.get(int(body.get("listener", -1)))
            if message.fd is None:
                return
            if queue is None or listener is None or len(queue) >= listener.backlog:
                os.close(message.fd)  # a closed or full accept queue: the peer gets a FIN
                return
            queue.append((message.fd, _address(body["peer"])))
        elif event in ("refused", "error"):
            self._refused = event == "refused"
            self._gone = str(body.get("error", "the daemon ended the connection"))
        elif isinstance(body.get("id"), int):
            self._replies[body["id"]] = message
        elif message.fd is not None:
            os.close(message.fd)


def attach(iface: str = DEFAULT_IFACE, *, path: str | os.PathLike[str] | None = None,
           timeout: float = 10.0) -> Attached:
    """A client of the daemon (`tcpstack up`) serving `iface` in this network namespace,
    or at `path`. NoDaemonRunning when there is none; PermissionError when this process
    may not use it (root, or the group the daemon was started with --group)."""
    where = Path(path) if path is not None else attach_path(iface)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(where))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NoDaemonRunning(f"no tcpstack daemon running on {iface} in this network "
                              f"namespace (nothing serves {where}; start one with "
                              "tcpstack up)") from None
    except PermissionError:
        sock.close()
        raise PermissionError(f"permission denied on {where}: only root and the group the "
                              "daemon was started with (tcpstack up --group NAME) may "
                              "attach") from None
    except OSError as exc:
        sock.close()
        raise ConnectionError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    sock.settimeout(None)
    client = Attached(sock, where)
    try:
        client.status()  # the daemon's answer, or its refusal, before anything else
    except BaseException:
        client.close()
        raise
    return client
