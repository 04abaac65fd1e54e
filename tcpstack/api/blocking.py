"""The blocking socket facade (`tcpstack.socket`): sockets shaped like Python's, on tcpstack.

A facade socket is a real `socket.socket` whose descriptor is one end of a Unix socketpair
(api/background.py has the stack's side of it), so `fileno()` is what `select`, `selectors`
and `poll` watch, and recv, send, sendall, makefile and timeouts are the kernel's own
behaviour on that descriptor. What the descriptor cannot say is done here: addresses
(getpeername, getsockname), the calls that need the stack (connect, bind, listen, accept,
the TCP socket options), and a reset: the bridge closes its end on a reset, which reads as
end-of-file or EPIPE, so a socket whose bridge ended in an error raises that error
(ConnectionResetError, or TimeoutError with ETIMEDOUT) the first time it reads or writes
past it, as a kernel socket raises a pending error once.

The socket asks two objects for the stack's side: its `side` (connect, listen, bind's
checks: api/background.py's StackThread in this process) and, once connected, a `link`
(socket options on the live connection, how the connection ended). Another process's
stack can stand behind the same class with objects of the same shape (`bridged`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import ipaddress
import select
import socket as _std
import struct
import threading
import time
from typing import Any, Protocol

from tcpstack.api.background import SETTLE, Listening, StackThread, oserror, socket_error
from tcpstack.api.streams import Stack
from tcpstack.link.tun import LinkError

# Socket options and the TcpConfig field each one sets.
_OPTIONS: dict[tuple[int, int], str] = {
    (_std.IPPROTO_TCP, _std.TCP_NODELAY): "nodelay",
    (_std.SOL_SOCKET, _std.SO_KEEPALIVE): "keepalive",
    (_std.SOL_SOCKET, _std.SO_RCVBUF): "receive_buffer",
    (_std.SOL_SOCKET, _std.SO_SNDBUF): "send_buffer",
    (_std.IPPROTO_TCP, _std.TCP_KEEPIDLE): "keepalive_idle",  # seconds, as Linux's
    (_std.IPPROTO_TCP, _std.TCP_KEEPINTVL): "keepalive_interval",
    (_std.IPPROTO_TCP, _std.TCP_KEEPCNT): "keepalive_count",
}
# Accepted and remembered, with nothing to do: the stack has no TIME_WAIT bind conflict.
_REMEMBERED = {(_std.SOL_SOCKET, _std.SO_REUSEADDR), (_std.SOL_SOCKET, _std.SO_REUSEPORT)}
_FLAGS = _std.SOCK_NONBLOCK | _std.SOCK_CLOEXEC
_INT = struct.Struct("i")
_LINGER = struct.Struct("ii")  # struct linger: l_onoff, l_linger
# The socket module's own sentinel: http.client passes it to create_connection.
_GLOBAL_DEFAULT_TIMEOUT: Any = _std._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


class StreamLink(Protocol):
    """A connected stream's stack side, as the socket uses it."""

    sockname: tuple[Any, ...]
    peername: tuple[Any, ...]
    done: threading.Event
    error: BaseException | None

    def set_option(self, name: str, value: int) -> None: ...

    def reset(self) -> None: ...


# Sockets of several threads may bring the default stack up at once: one starts it.
_lock = threading.RLock()
_default: StackThread | None = None
_threads: dict[int, StackThread] = {}


def use_stack(stack: Stack | None = None, **settings: Any) -> StackThread:
    """Choose the stack that sockets made without a `stack` argument use from now on:
    `stack` (run in a background thread unless it is running already), or a new Stack made
    from `settings` (Stack's arguments: iface, address, kernel_address, mtu, config, ...).
    Sockets made before keep theirs, which stays up until the program exits."""
    global _default
    with _lock:
        _default = _thread_for(stack if stack is not None else Stack(**settings))
        return _default


def default_stack() -> StackThread:
    """The facade's stack, brought up with the CLI's defaults on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = _thread_for(Stack())
        return _default


def _thread_for(stack: Stack) -> StackThread:
    with _lock:
        found = _threads.get(id(stack))
        if found is None or found.stack is not stack:
            try:
                found = StackThread(stack)
            except LinkError as exc:  # an OSError, which socket code is ready to catch
                raise oserror(errno.ENETDOWN, f"tcpstack cannot come up: {exc}") from exc
            _threads[id(stack)] = found
        return found


def _side(stack: Stack | StackThread | None) -> StackThread:
    if stack is None:
        return default_stack()
    if isinstance(stack, StackThread):
        return stack
    return _thread_for(stack)


def _int_value(value: int | bytes | None) -> int:
    if isinstance(value, int):
        return value
    if value is None or len(value) < _INT.size:
        raise oserror(errno.EINVAL)
    return int(_INT.unpack_from(value)[0])


def _unspecified(family: int) -> tuple[Any, ...]:
    return ("::", 0, 0, 0) if family == _std.AF_INET6 else ("0.0.0.0", 0)


def _as_family(address: tuple[Any, ...], family: int) -> tuple[Any, ...]:
    """(host, port) as the socket module gives it for `family` (4-tuples for IPv6)."""
    host, port = address[0], address[1]
    return (host, port, 0, 0) if family == _std.AF_INET6 else (host, port)


class socket(_std.socket):
    """A TCP socket (SOCK_STREAM) on tcpstack: see the module docstring. `stack` is a
    Stack or StackThread to use instead of the default one (use_stack)."""

    __slots__ = (
        "_error_reported",
        "_failure",
        "_far",
        "_link",
        "_listened_with",
        "_listening",
        "_local",
        "_options",
        "_pending",
        "_remembered",
        "_side_given",
        "_sndbuf",
        "_state",
        "_thread",
    )

    # What a subclass changes: its type, its protocol, the socketpair that carries its data.
    _KIND = _std.SOCK_STREAM
    _PROTOCOL = _std.IPPROTO_TCP
    _PAIR = _std.SOCK_STREAM

    def __new__(cls, family: int = _std.AF_INET, type: int = _std.SOCK_STREAM,
                proto: int = 0, fileno: int | None = None, *,
                stack: Stack | StackThread | None = None) -> socket:
        if cls is socket and type & ~_FLAGS == _std.SOCK_DGRAM:
            from tcpstack.api.blocking_dgram import DatagramSocket
            cls = DatagramSocket  # socket(AF_INET, SOCK_DGRAM) is a UDP socket
        sock: socket = super().__new__(cls)
        return sock

    def __init__(self, family: int = _std.AF_INET, type: int = _std.SOCK_STREAM,
                 proto: int = 0, fileno: int | None = None, *,
                 stack: Stack | StackThread | None = None) -> None:
        if fileno is not None:
            raise oserror(errno.EOPNOTSUPP, "a tcpstack socket cannot be made from a "
                          "descriptor: use socket.bridged")
        if family not in (_std.AF_INET, _std.AF_INET6):
            raise oserror(errno.EAFNOSUPPORT, "tcpstack sockets are AF_INET or AF_INET6")
        kind = type & ~_FLAGS
        if kind != self._KIND:
            raise oserror(errno.ESOCKTNOSUPPORT, "tcpstack sockets are SOCK_STREAM or "
                          "SOCK_DGRAM")
        if proto not in (0, self._PROTOCOL):
            raise oserror(errno.EPROTONOSUPPORT)
        program, far = _std.socketpair(_std.AF_UNIX, self._PAIR)
        super().__init__(family, kind, proto, fileno=program.detach())
        self._far: _std.socket | None = far  # the stack's end, until connect or listen
        self._side_given = stack
        self._thread: StackThread | None = None
        self._state = "new"  # new, bound, connecting, connected, listening, closed
        self._local: tuple[Any, ...] | None = None
        self._link: StreamLink | None = None
        self._listening: Listening | None = None
        self._pending: Any = None  # a non-blocking connect's future
        self._failure: OSError | None = None  # ... and its error, until reported
        self._options: dict[str, int] = {}  # the TcpConfig fields set by setsockopt
        self._remembered: dict[tuple[int, int], int] = {}  # SO_REUSEADDR, SO_REUSEPORT
        self._listened_with: dict[str, int] = {}  # the options given to listen()
        self._error_reported = False
        self._sndbuf = 0  # the descriptor's send buffer to restore after a connect's filler
        if type & _std.SOCK_NONBLOCK:
            self.setblocking(False)

    @classmethod
    def bridged(cls, program: _std.socket, family: int, link: StreamLink,
                side: StackThread | None = None) -> socket:
        """A connected socket over `program`, a Unix stream socket whose other end is
        bridged to a TCP connection; `link` answers for the connection (StreamLink). The
        descriptor is taken over from `program`."""
        sock = cls.__new__(cls)
        _std.socket.__init__(sock, family, _std.SOCK_STREAM, 0, fileno=program.detach())
        sock._far = None
        sock._side_given = side
        sock._thread = side
        sock._state = "connected"
        sock._local = _as_family(link.sockname, family)
        sock._link = link
        sock._listening = None
        sock._pending = None
        sock._failure = None
        sock._options = {}
        sock._remembered = {}
        sock._listened_with = {}
        sock._error_reported = False
        sock._sndbuf = 0
        return sock

    def __repr__(self) -> str:
        return (f"<tcpstack.socket.socket fd={self.fileno()}, family={self.family!r}, "
                f"state={self._state}, laddr={self._local}>")

    def dup(self) -> socket:
        raise oserror(errno.EOPNOTSUPP, "a tcpstack socket cannot be duplicated")

    @property
    def side(self) -> StackThread:
        """The stack this socket uses, brought up when first needed."""
        if self._thread is None:
            self._thread = _side(self._side_given)
        return self._thread

    # ------------------------------------------------------------------ connecting

    def _resolve(self, address: tuple[Any, ...]) -> tuple[str, int]:
        if not isinstance(address, tuple) or len(address) not in (2, 4):
            raise TypeError(f"{self._family_name()} address must be a tuple (host, port)")
        host, port = address[0], address[1]
        if not isinstance(port, int):
            raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an "
                            "integer")
        if not 0 <= port < 65536:
            raise OverflowError("connect(): port must be 0-65535.")
        if host == "":
            return ("::" if self.family == _std.AF_INET6 else "0.0.0.0"), port
        try:
            ipaddress.ip_address(host)
            return str(host), port
        except ValueError:
            pass
        infos = _std.getaddrinfo(host, port, self.family, _std.SOCK_STREAM)
        return str(infos[0][4][0]), port

    def _family_name(self) -> str:
        return "AF_INET6" if self.family == _std.AF_INET6 else "AF_INET"

    def connect(self, address: Any) -> None:
        self._connect(address)

    def connect_ex(self, address: Any) -> int:
        try:
            self._connect(address)
        except TimeoutError as exc:
            return exc.errno or errno.EAGAIN  # as the socket module's connect_ex
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    def _connect(self, address: tuple[Any, ...]) -> None:
        self._check_open()
        if self._state == "connected":
            raise oserror(errno.EISCONN)
        if self._state == "connecting":
            self._settle_pending()
            if self._state == "connecting":
                raise oserror(errno.EALREADY)
            raise oserror(errno.EISCONN)
        if self._state == "listening":
            raise oserror(errno.EINVAL)
        if self._state == "failed":
            error = self._pending_error()
            raise error if error is not None else oserror(
                errno.ECONNABORTED, "a socket whose non-blocking connect failed cannot "
                "connect again: make a new one")
        host, port = self._resolve(address)
        far = self._far
        assert far is not None
        local_port = self._local[1] if self._local and self._local[1] else None
        timeout = self.gettimeout()
        filler = self._fill() if timeout == 0.0 else 0
        future = self.side.connect(far, host, port, local_port=local_port,
                                   options=dict(self._options),
                                   timeout=None if timeout == 0.0 else timeout,
                                   filler=filler)
        if timeout == 0.0:
            # Non-blocking: it goes on in the loop, the descriptor unwritable until then.
            self._state = "connecting"
            self._pending = future
            future.add_done_callback(self._connected_later)
            raise oserror(errno.EINPROGRESS)
        try:
            link = future.result()
        except BaseException as exc:
            future.cancel()
            if isinstance(exc, KeyboardInterrupt) or \
                    (isinstance(exc, TimeoutError) and exc.errno is None):
                raise  # the socket's own timeout: socket.timeout("timed out")
            raise socket_error(exc) from None
        self._became_connected(link)

    def _fill(self) -> int:
        """Make the descriptor unwritable, as a connecting TCP socket is, so that
        selectors-based code waits for EVENT_WRITE until the connection is up: a send
        buffer cut to the minimum and filled. The loop reads the filler before it bridges
        (then the descriptor becomes writable); the buffer's size comes back with the
        first read or write after (`_restore_buffer`). Returns the filler's length."""
        self._sndbuf = _std.socket.getsockopt(self, _std.SOL_SOCKET, _std.SO_SNDBUF)
        _std.socket.setsockopt(self, _std.SOL_SOCKET, _std.SO_SNDBUF, 1)
        chunk = bytes(4096)
        filled = 0
        while True:
            try:
                filled += _std.socket.send(self, chunk, _std.MSG_DONTWAIT)
            except BlockingIOError:
                return filled

    def _restore_buffer(self) -> None:
        if self._sndbuf and self._state == "connected":
            # Linux's getsockopt gives twice what setsockopt set (its bookkeeping share).
            _std.socket.setsockopt(self, _std.SOL_SOCKET, _std.SO_SNDBUF, self._sndbuf // 2)
            self._sndbuf = 0

    def _became_connected(self, link: StreamLink) -> None:
        self._link = link
        self._far = None
        self._local = _as_family(link.sockname, self.family)
        self._state = "connected"
        self._restore_buffer()

    def _connected_later(self, future: Any) -> None:
        """A non-blocking connect finished (in the loop thread)."""
        if not future.cancelled() and future.exception() is not None and \
                self._far is not None:
            # The descriptor becomes readable (end-of-file) and writable (EPIPE), as a
            # failed connect's does; the error waits in SO_ERROR and the next read.
            self._far.close()

    def _settle_pending(self) -> None:
        """A non-blocking connect that finished: connected, or failed with `_failure`."""
        future = self._pending
        if future is None or self._state != "connecting":
            return
        if not future.done() and self._sndbuf and self._poll(select.POLLOUT):
            # Writable: the loop has read the filler, so the attempt is settled or about
            # to be (the connection is up, or failed and its end closed).
            concurrent.futures.wait([future], SETTLE)
        if not future.done():
            return
        self._pending = None
        if future.cancelled():
            self._state = "failed"
            self._failure = oserror(errno.ECONNABORTED)
        elif future.exception() is None:
            self._became_connected(future.result())
        else:
            exc = future.exception()
            self._state = "failed"
            self._far = None  # closed by _connected_later
            self._failure = socket_error(exc)

    def _pending_error(self, consume: bool = True) -> OSError | None:
        """The error a failed non-blocking connect or a broken connection holds."""
        self._settle_pending()
        failure = self._failure
        if failure is not None:
            if consume:
                self._failure = None
            return failure
        link = self._link
        if link is not None and link.done.is_set() and link.error is not None \
                and not self._error_reported:
            if consume:
                self._error_reported = True
            return socket_error(link.error)
        return None

    # ------------------------------------------------------------------ binding, listening

    def bind(self, address: Any) -> None:
        self._check_open()
        if self._local is not None or self._state not in ("new",):
            raise oserror(errno.EINVAL)
        host, port = self._resolve(address)
        side = self.side
        if host not in ("0.0.0.0", "::") and host not in side.addresses:
            raise oserror(errno.EADDRNOTAVAIL, f"the stack's address is {side.address}")
        if port == 0:
            port = side.free_port()
        elif side.port_listening(port):
            raise oserror(errno.EADDRINUSE)
        self._local = _as_family((host, port), self.family)

    def listen(self, backlog: int = min(_std.SOMAXCONN, 128)) -> None:
        self._check_open()
        if self._state == "listening":
            return
        if self._state != "new":
            raise oserror(errno.EINVAL)
        if self._local is None:
            self.bind(("", 0))
        assert self._local is not None and self._far is not None
        self._listened_with = dict(self._options)
        self._listening = self.side.listen(self._far, self._local[1], max(backlog, 1),
                                           self._listened_with)
        self._far = None
        self._state = "listening"

    def accept(self) -> tuple[socket, tuple[Any, ...]]:
        self._check_open()
        listening = self._listening
        if listening is None:
            raise oserror(errno.EINVAL)
        timeout = self.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            item = listening.take(self._take_signal)
            if item is not None:
                break
            wait = None if deadline is None else max(deadline - time.monotonic(), 0)
            if wait == 0:
                if timeout == 0.0:
                    raise oserror(errno.EAGAIN)
                raise TimeoutError("timed out")
            poller = select.poll()
            poller.register(self.fileno(), select.POLLIN)
            poller.poll(None if wait is None else wait * 1000)
            self._check_open()
        program, link = item
        sock = type(self).bridged(program, self.family, link, self._thread)
        if _std.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)  # as socket.accept: not the listener's timeout
        # The connection took the listener's options as they were at listen(); those set
        # on the listener since then reach it now, as Linux copies them at accept.
        for name, value in self._options.items():
            if self._listened_with.get(name) != value:
                link.set_option(name, value)
        sock._options = dict(self._options)
        return sock, _as_family(link.peername, self.family)

    # ------------------------------------------------------------------ data

    def _take_signal(self) -> None:
        with contextlib.suppress(BlockingIOError):
            _std.socket.recv(self, 1, _std.MSG_DONTWAIT)

    def _check_open(self) -> None:
        if self.fileno() == -1:
            raise oserror(errno.EBADF)

    def _check_stream(self) -> None:
        if self._pending is not None:
            self._settle_pending()
        if self._state not in ("connected", "connecting"):
            error = self._pending_error()
            if error is not None:
                raise error
            raise oserror(errno.ENOTCONN)

    def _ended(self, exc: OSError) -> OSError:
        """A read or write failed with `exc` (EPIPE, ECONNRESET): see _at_end."""
        error = self._at_end(exc)
        return error if error is not None else exc

    def _at_end(self, exc: OSError | None) -> OSError | None:
        """The descriptor read end-of-file (`exc` None) or failed with `exc` (EPIPE,
        ECONNRESET): the connection's error if it ended in one, reported once."""
        link = self._link
        if link is None:
            return self._pending_error() or exc
        if not link.done.is_set() and (exc is not None or self._hung_up()):
            link.done.wait(SETTLE)  # the bridge is ending: wait for its verdict
        error = self._pending_error()
        return error if error is not None else exc

    def _hung_up(self) -> bool:
        return self._poll(select.POLLIN, select.POLLHUP)

    def _poll(self, events: int, wanted: int | None = None) -> bool:
        """Whether the descriptor shows `wanted` (default: `events`) right now."""
        poller = select.poll()
        poller.register(self.fileno(), events)
        return any(got & (events if wanted is None else wanted) for _, got in poller.poll(0))

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._check_stream()
        try:
            data = super().recv(bufsize, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._ended(exc) from None
        if not data and bufsize:
            error = self._at_end(None)
            if error is not None:
                raise error
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._check_stream()
        try:
            n = super().recv_into(buffer, nbytes, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._ended(exc) from None
        if n == 0 and (nbytes or len(memoryview(buffer))):
            error = self._at_end(None)
            if error is not None:
                raise error
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        return self.recv_into(buffer, nbytes, flags), None

    def send(self, data: Any, flags: int = 0) -> int:
        self._check_stream()
        try:
            return super().send(data, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._ended(exc) from None

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._check_stream()
        try:
            super().sendall(data, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._ended(exc) from None

    def sendto(self, data: Any, *args: Any) -> int:
        flags = args[0] if len(args) == 2 else 0
        return self.send(data, flags)

    def shutdown(self, how: int) -> None:
        self._check_open()
        if self._state not in ("connected", "connecting"):
            raise oserror(errno.ENOTCONN)
        super().shutdown(how)

    # ------------------------------------------------------------------ names, options

    def getpeername(self) -> tuple[Any, ...]:
        self._check_open()
        self._settle_pending()
        if self._state != "connected" or self._link is None:
            raise oserror(errno.ENOTCONN)
        return _as_family(self._link.peername, self.family)

    def getsockname(self) -> tuple[Any, ...]:
        self._check_open()
        return self._local if self._local is not None else _unspecified(self.family)

    def setsockopt(self, level: int, optname: int, value: Any,
                   optlen: int | None = None) -> None:
        self._check_open()
        key = (level, optname)
        if key in _REMEMBERED:
            self._remembered[key] = _int_value(value)
            return
        if key == (_std.SOL_SOCKET, _std.SO_LINGER):
            if not isinstance(value, bytes | bytearray) or len(value) < _LINGER.size:
                raise oserror(errno.EINVAL)
            onoff, seconds = _LINGER.unpack_from(value)
            self._remembered[key] = 1 if onoff else 0
            self._remembered[(_std.SOL_SOCKET, -1)] = seconds  # the linger time
            return
        name = _OPTIONS.get(key)
        if name is None:
            raise oserror(errno.ENOPROTOOPT)
        number = _int_value(value)
        if name in ("nodelay", "keepalive"):
            number = int(bool(number))
        elif number <= 0:
            raise oserror(errno.EINVAL)
        self._options[name] = number
        self._settle_pending()
        if self._state == "connected" and self._link is not None:
            self._link.set_option(name, number)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        self._check_open()
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_LINGER) and buflen is not None:
            return _LINGER.pack(*self._linger())[:buflen]
        value = self._option_value(level, optname)
        return value if buflen is None else _INT.pack(value)[:buflen]

    def _option_value(self, level: int, optname: int) -> int:
        if level == _std.SOL_SOCKET:
            if optname == _std.SO_TYPE:
                return int(self.type)
            if optname == _std.SO_DOMAIN:
                return int(self.family)
            if optname == _std.SO_PROTOCOL:
                return self._PROTOCOL
            if optname == _std.SO_ACCEPTCONN:
                return int(self._state == "listening")
            if optname == _std.SO_ERROR:
                self._settle_pending()
                error = self._pending_error()
                return error.errno or errno.EIO if error is not None else 0
        if (level, optname) in _REMEMBERED or \
                (level, optname) == (_std.SOL_SOCKET, _std.SO_LINGER):
            return self._remembered.get((level, optname), 0)
        name = _OPTIONS.get((level, optname))
        if name is None:
            raise oserror(errno.ENOPROTOOPT)
        if name in self._options:
            return self._options[name]
        if name == "receive_buffer":
            fixed = self.side.config_value("receive_buffer")
            return int(fixed if fixed is not None
                       else self.side.config_value("receive_buffer_initial"))
        return int(self.side.config_value(name))

    def _linger(self) -> tuple[int, int]:
        return (self._remembered.get((_std.SOL_SOCKET, _std.SO_LINGER), 0),
                self._remembered.get((_std.SOL_SOCKET, -1), 0))

    # ------------------------------------------------------------------ closing

    def _real_close(self, _ss: Any = _std.socket) -> None:
        self._settle_pending()
        if self._state == "connected" and self._link is not None and \
                self._linger() == (1, 0):
            self._link.reset()  # SO_LINGER 0: close() aborts with a RST, as Linux's does
        super()._real_close()  # type: ignore[misc]
        state, self._state = self._state, "closed"
        if self._listening is not None:
            self._listening.close()
            self._listening = None
        if self._pending is not None and state == "connecting":
            self._pending.cancel()  # the attempt is abandoned (a RST if it got that far)
        if self._far is not None:
            self._far.close()
            self._far = None


def create_connection(address: tuple[Any, ...], timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
                      source_address: tuple[Any, ...] | None = None, *,
                      all_errors: bool = False,
                      stack: Stack | StackThread | None = None) -> socket:
    """socket.create_connection on tcpstack: every address `host` resolves to is tried in
    turn, with `timeout` for each (the socket module's default when not given)."""
    host, port = address[0], address[1]
    errors: list[OSError] = []
    for family, _, _, _, sockaddr in _std.getaddrinfo(host, port, 0, _std.SOCK_STREAM):
        if family not in (_std.AF_INET, _std.AF_INET6):
            continue
        sock = socket(family, _std.SOCK_STREAM, stack=stack)
        try:
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            errors.append(exc)
            sock.close()
    if not errors:
        raise _std.gaierror(_std.EAI_ADDRFAMILY, f"no IPv4 or IPv6 address for {host!r}")
    if all_errors:
        raise ExceptionGroup("create_connection failed", errors)
    raise errors[0]


def create_server(address: tuple[Any, ...], *, family: int = _std.AF_INET,
                  backlog: int | None = None, reuse_port: bool = False,
                  stack: Stack | StackThread | None = None) -> socket:
    """socket.create_server on tcpstack: a listening socket bound to `address`."""
    sock = socket(family, _std.SOCK_STREAM, stack=stack)
    try:
        sock.setsockopt(_std.SOL_SOCKET, _std.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(_std.SOL_SOCKET, _std.SO_REUSEPORT, 1)
        sock.bind(address)
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
