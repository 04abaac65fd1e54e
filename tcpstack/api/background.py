"""The stack behind the blocking socket facade (api/blocking.py): a `Stack` whose asyncio
loop runs in a background thread, and what the facade's sockets ask of it.

Blocking code calls in from its own threads: each call that needs the stack (connect,
listen, a socket option on a live connection, close) is a coroutine or callback handed to
the loop with `run_coroutine_threadsafe`, the caller waiting for its result; the coroutine
bounds itself by the socket's timeout, so what a timed-out connect leaves behind is cleaned
up on the loop before the caller hears of it. Data never takes this path: a connected
socket is one end of a Unix socketpair whose other end the loop bridges to the TCP
connection (api/bridge.py), so reads, writes, timeouts and readiness are the kernel's own.

A listening socket is a socketpair too: the loop makes each new connection's pair and
bridge at once (data may arrive before `accept`, as into a kernel's accept queue), queues
the program's end, and keeps one byte in the listener's pair while the queue is not
empty, so its descriptor is readable exactly when `accept` would not block.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import errno
import os
import random
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from tcpstack.api.bridge import bridge
from tcpstack.api.datagram_channel import DatagramChannel
from tcpstack.api.streams import Stack
from tcpstack.api.transport import TcpTransport
from tcpstack.link.tun import LinkError
from tcpstack.stack import EPHEMERAL_PORTS, PortInUse
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.state import State

T = TypeVar("T")

# How long a reader that saw its descriptor hung up waits for the bridge's verdict (the
# bridge closes its end in its last step, so this is microseconds unless the loop is busy).
SETTLE = 2.0
# At exit: how long the connections the program left open (or closed just before) have to
# send what it wrote and their FIN before the stack closes (docs/DECISIONS.md).
EXIT_GRACE = 5.0

Address = tuple[Any, ...]


def oserror(number: int, detail: str | None = None) -> OSError:
    """The OSError subclass the kernel's errno gives (ConnectionRefusedError for
    ECONNREFUSED, ...), worded as strerror, with tcpstack's detail after it."""
    text = os.strerror(number) + (f" ({detail})" if detail else "")
    return OSError(number, text)  # OSError's constructor picks the subclass by errno


def socket_error(exc: BaseException) -> OSError:
    """What a kernel socket raises for the stack's error `exc`: the same class, with errno."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return oserror(errno.ECONNREFUSED)
    if isinstance(exc, ConnectionResetError):
        return oserror(errno.ECONNRESET)
    if isinstance(exc, ConnectionAbortedError):
        return oserror(errno.ECONNABORTED, str(exc) or None)
    if isinstance(exc, TimeoutError):
        return oserror(errno.ETIMEDOUT, str(exc).removeprefix("connection timed out")
                       .strip(" ()") or None)
    if isinstance(exc, PortInUse):
        return oserror(errno.EADDRINUSE, str(exc))
    if isinstance(exc, LinkError):  # an address this stack cannot have (e.g. its family)
        return oserror(errno.EAFNOSUPPORT, str(exc))
    if isinstance(exc, ValueError):  # check_destination: no connection there could work
        return oserror(errno.ENETUNREACH, str(exc))
    return oserror(errno.EIO, str(exc) or type(exc).__name__)


def _apply_option(conn: Connection, name: str, value: int, now: float) -> None:
    if name == "nodelay":
        conn.set_nodelay(bool(value))
    elif name == "keepalive":
        conn.set_keepalive(bool(value), now)
    elif name == "receive_buffer":
        conn.set_receive_buffer(value)
    elif name == "send_buffer":
        conn.set_send_buffer(value)
    elif name in ("keepalive_idle", "keepalive_interval", "keepalive_count"):
        conn.set_keepalive_timing(now, **{name: value})
    else:
        raise ValueError(f"no live socket option {name!r}")


def _sending(conn: Connection) -> bool:
    """Whether `conn` still has to send our FIN or get data of ours acknowledged."""
    return conn.state in (State.SYN_SENT, State.ESTABLISHED, State.CLOSE_WAIT) or \
        (conn.state in (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)
         and bool(conn.snd.buffer))


class Link:
    """A connected stream's stack side: its TCP connection bridged to the far end of the
    program's socketpair. `done` is set when the bridge has finished, `error` then being
    what ended the connection (None for a clean end)."""

    def __init__(self, runner: StackThread, writer: asyncio.StreamWriter,
                 task: asyncio.Future[BaseException | None]) -> None:
        self._runner = runner
        self._writer = writer
        self.sockname: Address = writer.get_extra_info("sockname")
        self.peername: Address = writer.get_extra_info("peername")
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._task = task
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[BaseException | None]) -> None:
        if not task.cancelled():
            exc = task.exception()
            self.error = exc if exc is not None else task.result()
        self.done.set()

    def cancel(self) -> None:
        self._task.cancel()

    async def wait(self) -> None:
        await asyncio.gather(self._task, return_exceptions=True)

    def on_done(self, callback: Any) -> None:
        """`callback()` in the loop thread once the bridge has ended."""
        self._task.add_done_callback(lambda _: callback())

    @property
    def connection(self) -> Connection:
        conn = self._writer.get_extra_info("connection")
        assert isinstance(conn, Connection)
        return conn

    def set_option(self, name: str, value: int) -> None:
        """A socket option on the live connection (api/blocking.py names them)."""
        def apply() -> None:
            driver = self._runner.stack.driver
            _apply_option(self.connection, name, value, driver.now() if driver else 0.0)
        self._runner.call(apply)

    def reset(self) -> None:
        """Reset the connection (from any thread, not waiting)."""
        self._runner.call_soon(self.abort)

    def abort(self) -> None:
        """Reset the connection (from the loop thread)."""
        transport = self._writer.transport
        if isinstance(transport, TcpTransport):
            transport.abort()


class Listening:
    """A listening socket's stack side; see the module docstring for its descriptor."""

    def __init__(self, runner: StackThread, signal: socket.socket, port: int) -> None:
        self._runner = runner
        self._signal = signal  # the loop's end of the listener's socketpair
        self._signal.setblocking(False)
        self.port = port
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[socket.socket, Link]] = collections.deque()
        self.server: Any = None
        self.closed = False

    def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new connection (in the loop thread): bridged at once, queued for accept."""
        program, far = socket.socketpair()
        link = Link(self._runner, writer, asyncio.ensure_future(bridge(reader, writer, far)))
        self._runner.track(link, far)
        with self._lock:
            if self.closed:
                link.abort()  # as a closed listener's: a RST, before the descriptor goes
                program.close()
                return
            self._queue.append((program, link))
            if len(self._queue) == 1:
                self._signal.send(b"\0")  # the listener becomes readable

    def take(self, take_signal: Callable[[], None]) -> tuple[socket.socket, Link] | None:
        """The oldest pending connection, or None (another thread took it first); with the
        last, `take_signal` reads the byte from the listener's own descriptor."""
        with self._lock:
            if not self._queue:
                return None
            item = self._queue.popleft()
            if not self._queue:
                take_signal()
            return item

    def close(self) -> None:
        """Stop listening; connections not yet accepted are reset, as Linux's are."""
        with self._lock:
            self.closed = True
            pending = list(self._queue)
            self._queue.clear()

        def stop() -> None:
            if self.server is not None:
                self.server.close()
            for program, link in pending:
                link.abort()  # before its descriptor closes, which would be a FIN
                program.close()
            self._signal.close()
        self._runner.call_soon(stop)


class DatagramLink:
    """What a datagram socket holds of its stack side: its address, connect and close."""

    def __init__(self, runner: StackThread, channel: DatagramChannel,
                 sockname: tuple[Any, ...]) -> None:
        self._runner = runner
        self._channel = channel
        self.sockname = sockname

    def connect(self, host: str, port: int) -> None:
        try:
            self._runner.call(self._channel.connect, host, port)
        except (ValueError, OSError) as exc:
            raise socket_error(exc) from None

    def close(self) -> None:
        self._runner.call_soon(self._channel.close)


class StackThread:
    """A Stack run on an asyncio loop of its own in a daemon thread (or on the loop of an
    already running Stack, which must then run in another thread than its callers)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._thread: threading.Thread | None = None
        self._links: dict[Link, socket.socket] = {}  # live bridges, by their far ends
        self._closed = False
        self._pid = os.getpid()
        if stack.driver is not None:
            self.loop = stack.driver.loop
            return
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="tcpstack",
                                        daemon=True)
        self._thread.start()
        try:
            self.run(stack.start())
        except BaseException:
            self._stop_loop()
            raise
        atexit.register(self.close)

    # ------------------------------------------------------------------ calling in

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result (it bounds its own time)."""
        self._check_caller()
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # an interrupt (KeyboardInterrupt) abandons the call
            raise

    def start(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coro` on the loop without waiting (a non-blocking connect)."""
        self._check_caller()
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, func: Any, *args: Any) -> Any:
        """Call `func(*args)` on the loop and wait for what it returns."""
        async def call() -> Any:
            return func(*args)
        return self.run(call())

    def call_soon(self, func: Any, *args: Any) -> None:
        """Call `func(*args)` on the loop, not waiting (safe from any thread, and after the
        loop stopped: then nothing is left to do)."""
        if self.loop.is_closed() or os.getpid() != self._pid:
            return  # (a forked child: the loop is the parent's)
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self.loop.call_soon_threadsafe(func, *args)

    def _check_caller(self) -> None:
        if os.getpid() != self._pid:
            # A forked child (ForkingMixIn) has the descriptors but not the loop's thread:
            # data still flows, a call that needs the stack would wait for ever.
            raise RuntimeError("the tcpstack stack runs in the parent process: a forked "
                               "child can read, write and close its sockets, no more")
        if self._thread is None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                return
            if running is self.loop:
                raise RuntimeError("a blocking socket call on the stack's own event loop "
                                   "would wait for itself: use the asyncio API there")

    # ------------------------------------------------------------------ what sockets ask

    @property
    def address(self) -> str:
        return str(self.stack.address)

    @property
    def addresses(self) -> set[str]:
        """The stack's own addresses, as text (its IPv6 one too, where it has one)."""
        own = {str(self.stack.address)}
        address6 = getattr(self.stack, "address6", None)
        if address6 is not None:
            own.add(str(address6))
        return own

    def config_value(self, name: str) -> Any:
        return getattr(self.stack.config, name)

    def connect(self, far: socket.socket, host: str, port: int, *, local_port: int | None,
                options: Mapping[str, object], timeout: float | None, filler: int = 0
                ) -> concurrent.futures.Future[Link]:
        """Open a connection to `host`:`port` and bridge it to `far` once established;
        the future fails with the socket's error (the caller maps it). `timeout` bounds
        the handshake (None: the SYN retransmissions do). `filler`: bytes the program
        wrote to keep its end unwritable while connecting, discarded before the bridge
        starts (api/blocking.py)."""
        return self.start(self._connect(far, host, port, local_port, options, timeout,
                                        filler))

    async def _connect(self, far: socket.socket, host: str, port: int,
                       local_port: int | None, options: Mapping[str, object],
                       timeout: float | None, filler: int) -> Link:
        async def opening() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            try:
                return await self.stack.open_connection(host, port, options=options,
                                                        local_port=local_port)
            except Exception as exc:  # as the kernel's errno: ETIMEDOUT after the SYNs
                raise socket_error(exc) from None
        try:
            reader, writer = await asyncio.wait_for(opening(), timeout)
        except TimeoutError as exc:
            if exc.errno is not None:
                raise
            raise TimeoutError("timed out") from None  # the socket's own timeout
        far.setblocking(False)
        loop = asyncio.get_running_loop()
        while filler > 0:
            filler -= len(await loop.sock_recv(far, filler))
        link = Link(self, writer, asyncio.ensure_future(bridge(reader, writer, far)))
        self.track(link, far)
        return link

    def track(self, link: Link, far: socket.socket) -> None:
        """Keep `link` (in the loop thread) until its bridge ends, for the exit."""
        self._links[link] = far
        link.on_done(lambda: self._links.pop(link, None))

    def free_port(self) -> int:
        """A local port for bind(port 0): one no listener and no connection has."""
        def pick() -> int:
            network = self.stack.network
            used = set(network.listeners) | {key[2] for key in network.connections}
            free = [p for p in EPHEMERAL_PORTS if p not in used]
            if not free:
                raise oserror(errno.EADDRINUSE, "no free port")
            return random.choice(free)
        port: int = self.call(pick)
        return port

    def port_listening(self, port: int) -> bool:
        return bool(self.call(lambda: port in self.stack.network.listeners))

    def listen(self, signal: socket.socket, port: int, backlog: int,
               options: Mapping[str, object]) -> Listening:
        listening = Listening(self, signal, port)

        async def listen() -> None:
            server = await self.stack.start_server(self._tracked(listening), port,
                                                   backlog=backlog, options=options)
            listening.server = server
        try:
            self.run(listen())
        except (PortInUse, ValueError) as exc:
            raise socket_error(exc) from None
        return listening

    def _tracked(self, listening: Listening) -> Any:
        def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            listening.handle(reader, writer)
        return handler

    def datagram_limit(self, family: int) -> int:
        """The largest UDP payload the link's MTU carries in one IP datagram (the stack
        sends with DF and does not fragment: over it, sendto fails with EMSGSIZE)."""
        return self.stack.mtu - (48 if family == socket.AF_INET6 else 28)

    def open_datagram(self, far: socket.socket, local: tuple[str, int] | None,
                      remote: tuple[str, int] | None, rcvbuf: int | None) -> DatagramLink:
        """A UDP endpoint for a datagram socket whose stack end is `far`: bound to `local`
        (None: an ephemeral port), connected to `remote` when given."""
        channel = DatagramChannel(self.stack, far)

        async def open_endpoint() -> tuple[Any, ...]:
            transport, _ = await self.stack.create_datagram_endpoint(
                lambda: channel, local_addr=local, remote_addr=remote, rcvbuf=rcvbuf)
            sockname: tuple[Any, ...] = transport.get_extra_info("sockname")
            return sockname
        try:
            sockname = self.run(open_endpoint())
        except (ValueError, LinkError, OSError) as exc:
            raise socket_error(exc) from None
        return DatagramLink(self, channel, sockname)

    # ------------------------------------------------------------------ the end

    def close(self, grace: float = EXIT_GRACE) -> None:
        """Close the stack (at exit, or when the program chooses another): connections
        the program left open are shut down for writing, as its exit would close them,
        and every connection gets `grace` seconds to deliver what was written and send
        its FIN; then the stack closes as Stack.close does."""
        if self._closed or self.loop.is_closed() or os.getpid() != self._pid:
            return
        self._closed = True
        if self._thread is None:
            return  # not ours to close
        try:
            future = asyncio.run_coroutine_threadsafe(self._finish(grace), self.loop)
            future.result(grace + 10)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        finally:
            self._stop_loop()

    async def _finish(self, grace: float) -> None:
        links = list(self._links.items())
        for _, far in links:
            # What the program wrote is still read; then the bridge sees its end.
            with contextlib.suppress(OSError):
                far.shutdown(socket.SHUT_RD)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline and any(not link.done.is_set() and _sending(link.connection)
                                             for link, _ in links):
            await asyncio.sleep(0.02)
        await self.stack.close()
        # The stack ended every connection; bridges still waiting on a program that keeps
        # its descriptor open end here, closing their ends (the program reads end-of-file).
        for link in list(self._links):
            link.cancel()
        await asyncio.gather(*(link.wait() for link in list(self._links)))

    def _stop_loop(self) -> None:
        if self._thread is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()
