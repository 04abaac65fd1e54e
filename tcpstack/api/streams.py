"""asyncio streams over tcpstack: `Stack`, `start_server`, `open_connection`.

`Stack` brings up a TUN interface and runs a NetworkStack on the running loop. The
module-level `start_server` and `open_connection` use a default Stack that comes up on first
use with the CLI's defaults (tcps0, 10.77.0.2, kernel side 10.77.0.1/24, MTU 1500).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import errno
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

from tcpstack import stack as stack_module
from tcpstack.api.capture import Capture
from tcpstack.api.control import ControlServer, ControlSocketInUse, control_path
from tcpstack.api.datagram import DatagramTransport, address_of, parse_address
from tcpstack.api.preflight import check_addresses
from tcpstack.api.snapshot import Snapshot, build_snapshot
from tcpstack.api.transport import TcpTransport, unreachable_error
from tcpstack.io.driver import PacketTap, StackDriver
from tcpstack.io.impairment import Impairment
from tcpstack.io.segment_log import SegmentLogger
from tcpstack.link.tun import DEFAULT_TXQUEUELEN, LinkError, TunDevice
from tcpstack.net.ipv6 import MIN_MTU as IPV6_MIN_MTU
from tcpstack.stack import EPHEMERAL_PORTS, NetworkStack
from tcpstack.tcp import congestion as tcp_congestion
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import (
    Closed,
    Established,
    Event,
    Refused,
    Reset,
    TimedOut,
    Unreachable,
)
from tcpstack.tcp.listener import Listener
from tcpstack.tcp.state import State

log = logging.getLogger("tcpstack")
# The compiled build (scripts/build_compiled.py) imports the stack as an extension module.
CORE_COMPILED = not (stack_module.__file__ or "").endswith(".py")

DEFAULT_IFACE = "tcps0"
DEFAULT_ADDRESS = "10.77.0.2"
DEFAULT_KERNEL_ADDRESS = "10.77.0.1/24"
DEFAULT_ADDRESS6 = "fd77::2"
DEFAULT_KERNEL_ADDRESS6 = "fd77::1/64"
DEFAULT_MTU = 1500
STREAM_LIMIT = 2 ** 16

ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]

# An MTU's worth of IPv4 and TCP headers without options.
_HEADERS = 40

# Shutdown: how long the peers have to finish closing before they are reset, and how long
# the stack then stays up to answer what the resets provoke (docs/DECISIONS.md).
SHUTDOWN_GRACE = 1.0
SHUTDOWN_DRAIN = 0.1


# The name of every task that runs a connection's handler (Task.get_name()).
HANDLER_TASK_NAME = "tcpstack-handler"

# One finished future per loop for every StreamWriter (stream_writer).
_done_future: asyncio.Future[None] | None = None


def stream_writer(transport: asyncio.WriteTransport, protocol: asyncio.BaseProtocol,
                  reader: asyncio.StreamReader,
                  loop: asyncio.AbstractEventLoop) -> asyncio.StreamWriter:
    """asyncio's StreamWriter, less a future of its own: asyncio 3.11 to 3.13 gives each
    writer a finished future (`_complete_fut`, 144 bytes) that nothing ever waits on or
    reads, so every writer on a loop shares one, finished the same way."""
    global _done_future
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    done = _done_future
    if done is None or done.get_loop() is not loop:
        done = _done_future = loop.create_future()
        done.set_result(None)
    writer._complete_fut = done  # type: ignore[attr-defined]
    return writer


class StreamProtocol(asyncio.Protocol):
    """Joins a TcpTransport to an asyncio StreamReader and StreamWriter, as asyncio's own
    StreamReaderProtocol does for its transports, in a fraction of the memory: it is made
    once per connection, and an idle connection is mostly its stream objects. Slots instead
    of a dict; the reader held directly (asyncio holds it by weak reference, only to warn
    about a reader dropped before its connection was made, which cannot happen here); no
    deque of drain waiters (asyncio's first block is 760 bytes) but a list made when a
    writer first waits; the future `wait_closed()` awaits made when it is first awaited;
    the protocol itself as the handler task's done-callback, not a closure, sharing the
    task's context; the writer's never-awaited finished future shared (stream_writer).

    What the StreamWriter asks of its protocol (asyncio 3.11 to 3.13: `_drain_helper`,
    `_get_close_waiter`, `_client_connected_cb`) is here under the same names, and
    behaves as asyncio's; tests/unit/test_stream_protocol.py pins it. Not supported: start_tls
    (a TcpTransport has no TLS either)."""

    __slots__ = ("_client_connected_cb", "_closed", "_connection_lost", "_drain_waiters",
                 "_loop", "_lost_exc", "_paused", "_reader", "_task", "_transport",
                 "_writer")

    def __init__(self, reader: asyncio.StreamReader,
                 client_connected_cb: ClientHandler | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._reader: asyncio.StreamReader | None = reader
        self._client_connected_cb = client_connected_cb
        self._writer: asyncio.StreamWriter | None = None  # kept, as asyncio keeps its own
        self._task: asyncio.Task[None] | None = None  # the handler's: the loop's is weak
        self._transport: asyncio.BaseTransport | None = None
        self._paused = False
        self._connection_lost = False
        self._lost_exc: BaseException | None = None
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._closed: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        reader = self._reader
        assert reader is not None and isinstance(transport, asyncio.Transport)
        reader.set_transport(transport)
        if self._client_connected_cb is None:
            return
        self._writer = writer = stream_writer(transport, self, reader, self._loop)
        result = self._client_connected_cb(reader, writer)
        if asyncio.iscoroutine(result):
            # The task and its done-callback share one context (each would copy its own),
            # the callback is this protocol itself (`__call__`), not a bound method, and
            # every handler task has the same name (asyncio formats a "Task-N" for each):
            # three objects fewer for as long as the connection lives.
            context = contextvars.copy_context()
            self._task = self._loop.create_task(result, name=HANDLER_TASK_NAME,
                                                context=context)
            self._task.add_done_callback(self, context=context)

    def __call__(self, task: asyncio.Task[None]) -> None:
        """The handler task's done-callback, as asyncio's: a handler that raised is
        reported, and its connection closed."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._loop.call_exception_handler({
                "message": "Unhandled exception in client_connected_cb",
                "exception": exc, "transport": self._transport})
            if self._transport is not None:
                self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._reader is not None:
            self._reader.feed_data(data)

    def eof_received(self) -> bool:
        if self._reader is not None:
            self._reader.feed_eof()
        return True  # keep the sending side open: the application closes it

    def connection_lost(self, exc: Exception | None) -> None:
        reader = self._reader
        if reader is not None:
            if exc is None:
                reader.feed_eof()
            else:
                reader.set_exception(exc)
        self._connection_lost = True
        self._lost_exc = exc
        if self._closed is not None:
            self._settle(self._closed)
        if self._paused and self._drain_waiters:  # writers blocked in drain() wake up
            for waiter in self._drain_waiters:
                if not waiter.done():
                    if exc is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(exc)
        self._reader = self._writer = self._task = self._transport = None

    def _settle(self, closed: asyncio.Future[None]) -> None:
        if not closed.done():
            if self._lost_exc is None:
                closed.set_result(None)
            else:
                closed.set_exception(self._lost_exc)

    # What StreamWriter calls (asyncio-private names, asyncio's behaviour).

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for waiter in self._drain_waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def _drain_helper(self) -> None:
        if self._connection_lost:
            raise ConnectionResetError("Connection lost")
        if not self._paused:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        waiters = self._drain_waiters
        waiters.append(waiter)
        try:
            await waiter
        finally:
            waiters.remove(waiter)

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future[None]:
        if self._closed is None:
            self._closed = self._loop.create_future()
            if self._connection_lost:
                self._settle(self._closed)
        return self._closed


class Server:
    """What `start_server` returns: like asyncio.Server, for one listening port."""

    def __init__(self, stack: Stack, listener: Listener, handler: ClientHandler,
                 limit: int) -> None:
        self._stack = stack
        self.listener = listener
        self.port = listener.port
        self._handler = handler
        self._limit = limit
        self._closed = asyncio.Event()
        # Bound once: every protocol holds it, and each `self._client_connected` read would
        # make a bound method of its own.
        self._connected = self._client_connected
        listener.owner = self

    @property
    def accept_queue(self) -> int:
        """Connections handed to the application whose handler has not started yet: what
        waits in a Linux listener's accept queue (a loop busy elsewhere lets it grow). The
        listener keeps the count, which its backlog bounds."""
        return self.listener.accept_queue

    def accept(self, driver: StackDriver, conn: Connection) -> None:
        loop = driver.loop
        reader = asyncio.StreamReader(limit=self._limit, loop=loop)
        protocol = StreamProtocol(reader, self._connected, loop)
        TcpTransport.attach(driver, conn, protocol)

    def _client_connected(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> Awaitable[None] | None:
        result = self._handler(reader, writer)
        if not asyncio.iscoroutine(result):
            return result  # a plain function: it has already run
        # It waits in the accept queue until the loop runs its first step. The protocol
        # makes the task as soon as this returns, which schedules that step after this
        # callback, so the callback runs just before it. (Not a wrapping coroutine: that
        # would stay alive, a frame more, for as long as the connection.)
        self.listener.accept_queue += 1
        asyncio.get_running_loop().call_soon(self._taken_up)
        return result

    def _taken_up(self) -> None:
        self.listener.accept_queue -= 1

    def is_serving(self) -> bool:
        return not self._closed.is_set()

    def close(self) -> None:
        if not self._closed.is_set():
            self._stack.network.unlisten(self.port)
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def serve_forever(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _PendingConnect:
    """Owns an active open until the handshake resolves `future`."""

    def __init__(self, conn: Connection, future: asyncio.Future[None]) -> None:
        self.conn = conn
        self.future = future
        conn.owner = self

    def handle_event(self, event: Event) -> None:
        if self.future.done():
            return
        match event:
            case Established():
                self.future.set_result(None)
            case Refused(error=error):
                self.future.set_exception(ConnectionRefusedError(error))
            case TimedOut(error=error):
                self.future.set_exception(TimeoutError(error))
            case Unreachable(error=error, errno=number):
                self.future.set_exception(unreachable_error(number, error))
            case Reset(error=error):
                self.future.set_exception(ConnectionResetError(error))
            case Closed(error=error):
                self.future.set_exception(ConnectionResetError(error or "reset"))


def _non_host_role(address: ipaddress.IPv4Address,
                   network: ipaddress.IPv4Network) -> str | None:
    """"network" or "broadcast" when `address` is that address of `network`, which no host
    holds; a /31 has neither (RFC 3021) and a /32 is a single host."""
    if network.prefixlen > 30:
        return None
    if address == network.network_address:
        return "network"
    if address == network.broadcast_address:
        return "broadcast"
    return None


def _parse_address(address: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(address)
    except ValueError:
        raise LinkError(f"invalid address {address!r} (expected an IPv4 address "
                        "such as 10.77.0.2)") from None


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_host(host: str) -> IPAddress:
    """An address of either family, as text ("10.77.0.1", "fd77::1", "[fd77::1]")."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise LinkError(f"invalid address {host!r} (expected an IPv4 or IPv6 address "
                        "such as 10.77.0.1 or fd77::1)") from None


def _unusable6(address: ipaddress.IPv6Address) -> str | None:
    """Why no host could use `address` as its own or a peer's over the TUN, or None."""
    if address.is_multicast or address.is_unspecified:
        return "not a unicast address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (tcpstack has none: use a global or ULA address)"
    if address.ipv4_mapped is not None:
        return "an IPv4-mapped address (use the IPv4 address itself)"
    return None


def format_endpoint(address: bytes | str, port: int) -> str:
    """`10.77.0.2:80` or `[fd77::2]:80`, as ss and curl write them."""
    text = str(ipaddress.ip_address(address)) if isinstance(address, bytes) else address
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


class Stack:
    """A running tcpstack: a TUN interface, the protocol state, and the asyncio driver.

    While it runs it serves a control socket for `tcpstack stat` (api/control.py) unless
    `control=False`; `pcap` records every packet to that file (api/capture.py) and
    `trace_segments` logs each one at debug level (io/segment_log.py)."""

    def __init__(self, iface: str = DEFAULT_IFACE, address: str = DEFAULT_ADDRESS,
                 kernel_address: str = DEFAULT_KERNEL_ADDRESS, mtu: int = DEFAULT_MTU,
                 *, config: TcpConfig | None = None, trace: bool = False,
                 tap: PacketTap | None = None, offload: bool = True,
                 pcap: str | os.PathLike[str] | None = None, trace_segments: bool = False,
                 control: bool = True, impairment: Impairment | None = None,
                 txqueuelen: int = DEFAULT_TXQUEUELEN, tun: TunDevice | None = None,
                 ephemeral_ports: range | None = None,
                 address6: str | None = DEFAULT_ADDRESS6,
                 kernel_address6: str | None = DEFAULT_KERNEL_ADDRESS6,
                 busy_poll: float = 0.0) -> None:
        """`txqueuelen`: packets the kernel may queue on the interface for the stack to read;
        more are dropped (and counted as `tun_rx_queue_drops`). `tun`: a device already open
        and configured (one queue of a multi-queue interface, api/workers.py), which the
        stack uses as it is and closes when it closes; `ephemeral_ports`: the local ports its
        active opens take. `address6` and `kernel_address6`: the stack's IPv6 address and
        the kernel side's with its prefix; either None serves IPv4 only, and so does an
        MTU below IPv6's minimum of 1280 (the kernel turns IPv6 off on such a link).
        `busy_poll`: seconds the loop keeps polling the TUN after traffic instead of
        sleeping (io/driver.py), lower latency for a CPU kept busy; 0 is off."""
        self.iface = iface
        self.address = _parse_address(address)
        try:
            self.kernel_interface = ipaddress.IPv4Interface(kernel_address)
        except ValueError:
            raise LinkError(f"invalid kernel address {kernel_address!r} "
                            "(expected e.g. 10.77.0.1/24)") from None
        if self.address == self.kernel_interface.ip:
            raise LinkError(f"the stack's address {address} must differ from the kernel's")
        network = self.kernel_interface.network
        if self.address not in network:
            raise LinkError(f"address {address} is outside the kernel side's network "
                            f"{network}")
        if (role := _non_host_role(self.address, network)) is not None:
            raise LinkError(f"address {address} is the {role} address of {network}, "
                            "not a host's")
        self.address6: ipaddress.IPv6Address | None = None
        self.kernel_interface6: ipaddress.IPv6Interface | None = None
        if address6 is not None and kernel_address6 is not None:
            if mtu >= IPV6_MIN_MTU:
                self.address6, self.kernel_interface6 = _check_ipv6(address6, kernel_address6)
            else:
                log.info("IPv6 off: the MTU %d is below IPv6's minimum 1280", mtu)
        self.mtu = mtu
        self.txqueuelen = txqueuelen
        self.config = config or TcpConfig()
        self.config.mss = min(self.config.mss, mtu - _HEADERS)
        self.config.cwnd_trace = self.config.cwnd_trace or pcap is not None  # for the sidecar
        # A software lossy link needs real checksums to corrupt (see io/impairment.py).
        offload = offload and impairment is None if tun is None else tun.offload
        self.impairment = impairment
        self.busy_poll = busy_poll
        self.trace = trace
        self.tap = tap
        self.pcap = pcap
        self.trace_segments = trace_segments
        self.control = control
        self.capture: Capture | None = None
        self._control: ControlServer | None = None
        self._link_counters: dict[str, int] = {}  # the TUN's, as last read for a snapshot
        self._started_at = 0.0
        self._configured = tun is not None
        self.tun = tun if tun is not None else TunDevice(iface, mtu, offload=offload)
        self.network = NetworkStack(self.address.packed, self.config, offload=offload,
                                    ephemeral_ports=ephemeral_ports or EPHEMERAL_PORTS,
                                    mtu=mtu,
                                    address6=None if self.address6 is None
                                    else self.address6.packed)
        self.driver: StackDriver | None = None
        self._servers: dict[int, Server] = {}
        self._datagrams: dict[DatagramTransport, None] = {}

    @property
    def started(self) -> bool:
        return self.driver is not None

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.network.counters)

    async def start(self) -> Stack:
        if self.driver is not None:
            return self
        loop = asyncio.get_running_loop()
        try:
            if not self._configured:
                self.tun.open()
                # pyroute2's synchronous API runs an event loop of its own: keep it off ours.
                await asyncio.to_thread(self._configure)
            if self.control:
                await self._serve_control()
            # Only now: a stack that cannot start must not truncate a running one's capture.
            if self.pcap is not None:
                try:
                    self.capture = Capture(self.pcap, loop)
                except OSError as exc:
                    raise LinkError(f"cannot write the capture {os.fspath(self.pcap)}: "
                                    f"{exc.strerror or exc}") from None
        except BaseException:
            self._stop_observers()
            self.tun.close()
            raise
        if self.trace:
            self.network.on_transition = _log_transition
        driver = StackDriver(self.network, self.tun, loop, impairment=self.impairment,
                             busy_poll=self.busy_poll)
        driver.on_event = self._on_event
        driver.tap = self._combined_tap()
        driver.start()
        self.driver = driver
        self._started_at = loop.time()
        log.info("%s up: stack %s, kernel side %s, MTU %d%s", self.iface, self.addresses_text,
                 self.kernel_addresses_text, self.mtu,
                 ", core compiled" if CORE_COMPILED else "")
        return self

    @property
    def addresses_text(self) -> str:
        """The stack's addresses: `10.77.0.2` or `10.77.0.2 and fd77::2`."""
        return str(self.address) + ("" if self.address6 is None else f" and {self.address6}")

    @property
    def kernel_addresses_text(self) -> str:
        return str(self.kernel_interface) + ("" if self.kernel_interface6 is None
                                             else f" and {self.kernel_interface6}")

    def endpoints_text(self, port: int) -> str:
        """Where a listener on `port` is reached: `10.77.0.2:80 and [fd77::2]:80`."""
        text = format_endpoint(str(self.address), port)
        if self.address6 is not None:
            text += " and " + format_endpoint(str(self.address6), port)
        return text

    def _configure(self) -> None:
        check_addresses(self.iface, self.kernel_interface, self.address)
        if self.address6 is not None and self.kernel_interface6 is not None:
            check_addresses(self.iface, self.kernel_interface6, self.address6)
        self.tun.configure(str(self.kernel_interface), self.txqueuelen,
                           *self.ipv6_configuration())

    def ipv6_configuration(self) -> tuple[str | None, str | None]:
        """The kernel side's IPv6 address and the stack's, for TunDevice.configure."""
        if self.address6 is None or self.kernel_interface6 is None:
            return None, None
        return str(self.kernel_interface6), str(self.address6)

    async def _serve_control(self) -> None:
        server = ControlServer(control_path(self.iface), self.fresh_snapshot)
        try:
            await server.start()
        except ControlSocketInUse:
            raise LinkError(f"interface {self.iface} is already in use by another tcpstack "
                            f"in this network namespace (control socket {server.path})"
                            ) from None
        except OSError as exc:
            # The stack works without it; only `tcpstack stat` cannot reach it.
            log.warning("no control socket at %s: %s", server.path, exc.strerror or exc)
            return
        self._control = server

    def _combined_tap(self) -> PacketTap | None:
        """The driver's tap: None unless something asked to see packets (zero cost)."""
        taps: list[PacketTap] = []
        if self.capture is not None:
            taps.append(self.capture.tap)
        if self.trace_segments:
            taps.append(SegmentLogger())
        if self.tap is not None:
            taps.append(self.tap)
        if len(taps) <= 1:
            return taps[0] if taps else None

        def fan_out(packet: bytes, outgoing: bool) -> None:
            for tap in taps:
                tap(packet, outgoing)
        return fan_out

    def _stop_observers(self, live: list[Connection] | None = None) -> None:
        """Remove the control socket and finish the capture; safe to call twice."""
        try:
            if self._control is not None:
                self._control.remove()
                self._control = None
        finally:
            if self.capture is not None:
                capture, self.capture = self.capture, None
                capture.close(live or [])

    async def read_link_counters(self) -> dict[str, int]:
        """Ask the kernel for the TUN's own counters (in a thread: a netlink request), keep
        them for `snapshot` and return them."""
        drops = await asyncio.to_thread(self.tun.queue_drops)
        self._link_counters = {} if drops is None else {"tun_rx_queue_drops": drops}
        return self._link_counters

    async def fresh_snapshot(self) -> Snapshot:
        """The snapshot with the link's counters read just now: what the control socket
        (or, for a worker, the supervisor) answers."""
        await self.read_link_counters()
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        """What `tcpstack stat` shows (api/snapshot.py), with the link's counters as last
        read (`read_link_counters`; `fresh_snapshot` reads them first)."""
        uptime = self.driver.now() - self._started_at if self.driver is not None else 0.0
        return build_snapshot(self.network, iface=self.iface,
                              kernel_address=str(self.kernel_interface), uptime=uptime,
                              link_counters=self._link_counters,
                              accept_queues={port: server.accept_queue
                                             for port, server in self._servers.items()},
                              kernel_address6=None if self.kernel_interface6 is None
                              else str(self.kernel_interface6))

    def _on_event(self, conn: Connection, event: Event) -> None:
        if isinstance(event, Closed) and self.capture is not None:
            self.capture.connection_closed(conn)
        owner = conn.owner
        if owner is not None:
            owner.handle_event(event)
        elif isinstance(event, Established) and isinstance(conn.listener, Listener):
            server = conn.listener.owner
            if isinstance(server, Server) and server.is_serving() and self.driver:
                server.accept(self.driver, conn)
            else:
                conn.abort(self.driver.now() if self.driver else 0.0)

    def _config_for(self, congestion: str | None, nodelay: bool | None,
                    options: Mapping[str, object] | None = None) -> TcpConfig | None:
        """The stack's TCP settings with per-listener or per-connection overrides;
        `options` names other TcpConfig fields (what the socket facade's setsockopt set
        before the connection existed: keepalive, receive_buffer, send_buffer)."""
        changes: dict[str, object] = dict(options or {})
        if congestion is not None:
            tcp_congestion.create(congestion, self.config.mss)  # fails early on a bad name
            changes["congestion"] = congestion
        if nodelay is not None:
            changes["nodelay"] = nodelay
        return dataclasses.replace(self.config, **changes) if changes else None  # type: ignore[arg-type]

    async def start_server(self, handler: ClientHandler, port: int, *,
                           backlog: int | None = None, limit: int = STREAM_LIMIT,
                           congestion: str | None = None, nodelay: bool | None = None,
                           options: Mapping[str, object] | None = None) -> Server:
        """Listen on `port`; `congestion` ("cubic", "newreno"), `nodelay` and `options`
        (other TcpConfig fields) override the stack's settings for this port's
        connections."""
        if not 0 < port < 65536:
            raise ValueError(f"invalid port {port}: must be 1-65535")
        config = self._config_for(congestion, nodelay, options)
        await self.start()
        listener = self.network.listen(port, backlog, config)
        server = Server(self, listener, handler, limit)
        self._servers[port] = server
        return server

    def check_destination(self, host: str) -> IPAddress:
        """The address `host` names (either family; IPv6 in brackets or not), or ValueError
        (LinkError if it is no address) when no connection there could ever work, so that
        the caller learns at once rather than after the SYN retransmissions. Any other
        address goes to the kernel, which routes it on (an address outside the kernel
        side's network is fine)."""
        remote = _parse_host(host)
        if isinstance(remote, ipaddress.IPv6Address):
            if self.address6 is None:
                reason = "this stack has no IPv6 address (see --address6)"
            elif remote == self.address6:
                reason = "it is the stack's own address"
            elif (unusable := _unusable6(remote)) is not None:
                reason = unusable
            else:
                return remote
            raise ValueError(f"cannot connect to {remote}: {reason}")
        network = self.kernel_interface.network
        if remote == self.address:
            reason = "it is the stack's own address"
        elif remote in network and (role := _non_host_role(remote, network)) is not None:
            reason = f"it is the {role} address of {network}"
        elif remote.is_loopback:
            reason = (f"a loopback address, which the kernel never routes to {self.iface} "
                      f"(the kernel side is {self.kernel_interface.ip})")
        elif remote.is_multicast or remote.is_unspecified or \
                remote == ipaddress.IPv4Address("255.255.255.255"):
            reason = "TCP needs a unicast address"
        else:
            return remote
        raise ValueError(f"cannot connect to {remote}: {reason}")

    async def open_connection(self, host: str, port: int, *, limit: int = STREAM_LIMIT,
                              congestion: str | None = None, nodelay: bool | None = None,
                              options: Mapping[str, object] | None = None,
                              local_port: int | None = None
                              ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An active open to `host`:`port`; `options` as for start_server, `local_port`
        one the caller chose (bind) rather than an ephemeral one."""
        if not 0 < port < 65536:
            raise ValueError(f"invalid port {port}: must be 1-65535")
        remote = self.check_destination(host)
        config = self._config_for(congestion, nodelay, options)
        await self.start()
        driver = self.driver
        assert driver is not None
        loop = driver.loop
        conn = self.network.connect(remote.packed, port, driver.now(), local_port,
                                    config=config)
        future: asyncio.Future[None] = loop.create_future()
        _PendingConnect(conn, future)
        try:
            await future
        except BaseException:
            if conn.state is not State.CLOSED:
                conn.abort(driver.now())
            raise
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = StreamProtocol(reader, loop=loop)
        transport = TcpTransport.attach(driver, conn, protocol)
        writer = stream_writer(transport, protocol, reader, loop)
        return reader, writer

    async def create_datagram_endpoint(
            self, protocol_factory: Callable[[], asyncio.DatagramProtocol],
            local_addr: tuple[str, int] | None = None,
            remote_addr: tuple[str, int] | None = None, *,
            rcvbuf: int | None = None) -> tuple[DatagramTransport, asyncio.DatagramProtocol]:
        """A UDP endpoint, as `loop.create_datagram_endpoint`: bound to `local_addr`'s port
        (host: the stack's address, or "", "0.0.0.0" or "::" for any; port 0 or no local_addr: an
        ephemeral port), connected to `remote_addr` when given. Returns (transport,
        protocol) once `connection_made` has run; `rcvbuf` sets the receive queue's bound
        (SO_RCVBUF, bytes). Raises OSError(EADDRINUSE) for a port bound already,
        OSError(EADDRNOTAVAIL) for a local host not the stack's."""
        port = 0
        own = self.network.address  # what sockname says: the address of the endpoint's family
        if local_addr is not None:
            host = str(local_addr[0])
            if host not in ("", "0.0.0.0", "::"):
                local, port = parse_address(local_addr, "local_addr")
                if local == self.network.address6:
                    own = local
                elif local != self.network.address:
                    raise OSError(errno.EADDRNOTAVAIL, f"cannot bind to {host}: not the "
                                  f"stack's address {self.address}")
            else:
                port = parse_address(("0.0.0.0", local_addr[1]), "local_addr")[1]
        remote = None if remote_addr is None else parse_address(remote_addr, "remote_addr")
        if remote is not None and remote[1] == 0:
            raise ValueError("remote_addr needs a port (1-65535)")
        if remote is not None and len(remote[0]) == 16 and self.network.address6 is not None:
            own = self.network.address6
        await self.start()
        driver = self.driver
        assert driver is not None
        network = self.network
        endpoint = network.udp_open(port, **({} if rcvbuf is None else {"rcvbuf": rcvbuf}))
        try:
            if remote is not None:
                network.udp_connect(endpoint, *remote)
            protocol = protocol_factory()
            transport = DatagramTransport(driver, endpoint, protocol,
                                          address_of(own, endpoint.local_port))
        except BaseException:
            network.udp_close(endpoint)
            raise
        self._datagrams[transport] = None
        transport.on_close = self._datagram_closed
        protocol.connection_made(transport)
        return transport, protocol

    def _datagram_closed(self, transport: DatagramTransport) -> None:
        self._datagrams.pop(transport, None)

    async def close(self, linger: float = SHUTDOWN_GRACE) -> None:
        """Stop listening and close every connection as a kernel does when a process exits,
        then remove the interface: a FIN where everything sent can still be delivered, a RST
        where received data was left unread or arrives after the close, and a RST for what
        has not finished after `linger` seconds, since no peer may be left waiting on an
        interface that is gone (see NetworkStack.close_all)."""
        driver = self.driver
        if driver is None:
            self._stop_observers()
            self.tun.close()
            return
        network = self.network
        live = [c for c in network.connections.values() if c.state is not State.TIME_WAIT]
        try:
            for server in list(self._servers.values()):
                server.close()
            for transport in list(self._datagrams):
                transport.close()  # UDP has nothing to finish
            self._datagrams.clear()
            # Close through the transports, so the applications see their streams end
            # rather than a connection closed under them.
            for conn in list(network.connections.values()):
                if isinstance(conn.owner, TcpTransport):
                    conn.owner.close()
            network.close_all(driver.now())
            loop = driver.loop
            deadline = loop.time() + linger
            while loop.time() < deadline and any(
                    c.state not in (State.TIME_WAIT, State.CLOSED)
                    for c in network.connections.values()):
                await asyncio.sleep(0.02)
                network.reset_unread_arrivals(driver.now())
            for conn in list(network.connections.values()):
                if isinstance(conn.owner, TcpTransport):
                    conn.owner.lose(ConnectionAbortedError("the stack is shutting down"))
            network.reset_all(driver.now())
            await asyncio.sleep(0)  # let the handlers see it and finish
            if any(c.error is not None for c in live):
                # A RST whose sequence number the peer finds in its window but not exact
                # draws a challenge ACK (RFC 5961 3.2); the answer to that, a RST from no
                # connection, is exact. Stay up briefly to give it.
                await asyncio.sleep(SHUTDOWN_DRAIN)
        finally:
            try:
                self._stop_observers(list(self.network.connections.values()))
            finally:
                driver.stop()
                self.driver = None
                self.tun.close()

    async def __aenter__(self) -> Stack:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


def _log_transition(conn: Connection, old: State, new: State) -> None:
    log.info("%s %s -> %s", format_endpoint(conn.remote_addr, conn.remote_port), old, new)


def _check_ipv6(address6: str, kernel_address6: str
                ) -> tuple[ipaddress.IPv6Address, ipaddress.IPv6Interface]:
    """The stack's IPv6 address and the kernel side's interface, checked as the IPv4 ones
    are. The stack's may lie outside the kernel side's prefix: the link routes it then."""
    try:
        address = ipaddress.IPv6Address(address6.strip("[]"))
    except ValueError:
        raise LinkError(f"invalid IPv6 address {address6!r} (expected e.g. fd77::2)") from None
    try:
        kernel = ipaddress.IPv6Interface(kernel_address6)
    except ValueError:
        raise LinkError(f"invalid kernel IPv6 address {kernel_address6!r} "
                        "(expected e.g. fd77::1/64)") from None
    for what, value in (("address", address), ("kernel address", kernel.ip)):
        if (reason := _unusable6(value)) is not None:
            raise LinkError(f"the IPv6 {what} {value} is {reason}")
    if address == kernel.ip:
        raise LinkError(f"the stack's IPv6 address {address} must differ from the kernel's")
    return address, kernel


_default_stack: Stack | None = None


async def default_stack() -> Stack:
    """The module-level stack, brought up with the CLI's defaults on first use."""
    global _default_stack
    if _default_stack is None:
        _default_stack = Stack()
    return await _default_stack.start()


async def start_server(handler: ClientHandler, port: int, *, backlog: int | None = None,
                       limit: int = STREAM_LIMIT, congestion: str | None = None,
                       nodelay: bool | None = None) -> Server:
    """Like asyncio.start_server: `handler(reader, writer)` runs for each new connection."""
    stack = await default_stack()
    return await stack.start_server(handler, port, backlog=backlog, limit=limit,
                                    congestion=congestion, nodelay=nodelay)


async def open_connection(host: str, port: int, *, limit: int = STREAM_LIMIT,
                          congestion: str | None = None, nodelay: bool | None = None
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Like asyncio.open_connection: an active open from the default stack."""
    stack = await default_stack()
    return await stack.open_connection(host, port, limit=limit, congestion=congestion,
                                       nodelay=nodelay)
