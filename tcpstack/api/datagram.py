"""UDP in asyncio's shape: `DatagramTransport` over one tcpstack UDP endpoint, made by
`Stack.create_datagram_endpoint` (api/streams.py) as `loop.create_datagram_endpoint` makes
its own, for any `asyncio.DatagramProtocol`.

What differs from a kernel socket's transport, and what does not:
- Datagrams reach the protocol within the stack's service pass that received them
  (`datagram_received(data, (host, port))`), and whatever it sends in reply leaves with
  that pass's output. Between passes they wait in the endpoint's receive queue, bounded as
  SO_RCVBUF bounds a socket's (udp/endpoint.py); what finds it full is dropped and counted.
- `sendto` never blocks: an error the stack raises (EMSGSIZE beyond the MTU, EAGAIN with
  the send buffer full, an ICMP error left pending) goes to `error_received`, as asyncio
  does with the OSError of its socket's sendto.
- A connected endpoint (`remote_addr`) hears of the hard ICMP errors its datagrams draw:
  `error_received(ConnectionRefusedError(...))` for port unreachable, as Linux reports them
  on a connected socket. An unconnected one does not (Linux without IP_RECVERR).
Addresses are text, (host, port) as the socket module gives them; an IPv6 address is
given as (host, port, flowinfo, scope_id) and taken as that or (host, port).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any

from tcpstack.io.driver import StackDriver
from tcpstack.stack import NetworkStack
from tcpstack.udp.endpoint import UdpEndpoint

Address = tuple[str, int] | tuple[str, int, int, int]


def address_of(addr: bytes, port: int) -> Address:
    """(host, port) as the socket module gives it for an address of 4 or 16 bytes."""
    if len(addr) == 16:
        return str(ipaddress.IPv6Address(addr)), port, 0, 0
    return str(ipaddress.IPv4Address(addr)), port


def parse_address(addr: object, what: str = "address") -> tuple[bytes, int]:
    """(address bytes, port) from a (host, port) tuple (or IPv6's 4-tuple) of an IP literal."""
    if not isinstance(addr, tuple) or len(addr) not in (2, 4):
        raise TypeError(f"{what} must be a (host, port) tuple, not {addr!r}")
    host, port = addr[0], addr[1]
    if not isinstance(port, int) or not 0 <= port < 65536:
        raise ValueError(f"invalid port {port!r} in {what}: must be 0-65535")
    try:
        ip = ipaddress.ip_address(str(host).strip("[]"))
    except ValueError:
        raise ValueError(f"{host!r} in {what} is not an IP address") from None
    return ip.packed, port


class DatagramTransport(asyncio.DatagramTransport):
    """An asyncio datagram transport over one UDP endpoint of a running stack."""

    def __init__(self, driver: StackDriver, endpoint: UdpEndpoint,
                 protocol: asyncio.DatagramProtocol, local: Address) -> None:
        super().__init__()
        self._driver = driver
        self._network: NetworkStack = driver.stack
        self._endpoint = endpoint
        self._protocol = protocol
        self._local = local
        self._peer: Address | None = (None if endpoint.remote_addr is None else
                                      address_of(endpoint.remote_addr, endpoint.remote_port))
        self._closing = False
        self.on_close: Callable[[DatagramTransport], None] | None = None  # the Stack's
        endpoint.owner = self
        endpoint.on_ready = self._ready

    @property
    def endpoint(self) -> UdpEndpoint:
        return self._endpoint

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._local
        if name == "peername":
            return self._peer if self._peer is not None else default
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.DatagramProtocol)
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return self._endpoint.sending

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        """Send one datagram to `addr`, or to the connected remote (asyncio's rules: a
        connected transport takes no other address)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data argument must be a bytes-like object, not "
                            f"{type(data).__name__!r}")
        if self._closing:
            return  # as asyncio's, once closed: nothing is sent, nothing raised
        remote: bytes | None = None
        port = 0
        if addr is not None:
            if self._peer is not None and tuple(addr)[:2] != self._peer[:2]:
                raise ValueError(f"Invalid address: must be None or {self._peer}")
            remote, port = parse_address(tuple(addr), "addr")
        try:
            self._network.udp_sendto(self._endpoint, data, self._driver.now(), remote, port)
        except OSError as exc:
            self._protocol.error_received(exc)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._network.udp_close(self._endpoint)
        self._endpoint.on_ready = None
        if self.on_close is not None:
            self.on_close(self)
        self._driver.loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def _ready(self, endpoint: UdpEndpoint) -> None:
        """The stack's call within a pass: every queued datagram, then a pending error."""
        protocol = self._protocol
        while not self._closing and (datagram := endpoint.receive()) is not None:
            payload, src, sport = datagram
            protocol.datagram_received(payload, address_of(src, sport))
        error = endpoint.take_error()
        if error is not None and not self._closing:
            # OSError makes the subclass of the errno: ConnectionRefusedError for ECONNREFUSED.
            protocol.error_received(OSError(*error))

