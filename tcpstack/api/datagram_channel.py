"""A UDP endpoint carried over a SOCK_SEQPACKET socketpair, one datagram per message: the
socket facade's SOCK_DGRAM sockets (api/background.py, api/blocking_dgram.py) and the
daemon's `udp` op (api/daemon.py, api/attach.py) both use it.

Each message is a small address header, then the payload: the source on the way to the
program, the destination on the way from it (or none, for a connected endpoint's peer).
SEQPACKET keeps the boundaries, so one recv is one datagram and readiness is the kernel's.
An error the endpoint reports (ECONNREFUSED from a port unreachable, EMSGSIZE) travels as a
header of its own, its errno where the port goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from tcpstack.api.datagram import DatagramTransport
from tcpstack.api.streams import Stack

# The header: the address's length (4, 16; 0: the connected peer's; ERROR: an error, its
# errno where the port goes), the address (padded to 16), the port.
DATAGRAM_HEADER = struct.Struct("!B16sH")
ERROR = 255
MAX_DATAGRAM = 65535


def datagram_header(host: str | None, port: int) -> bytes:
    if host is None:
        return DATAGRAM_HEADER.pack(0, b"", port)
    packed = ipaddress.ip_address(host).packed
    return DATAGRAM_HEADER.pack(len(packed), packed, port)


def error_header(number: int) -> bytes:
    return DATAGRAM_HEADER.pack(ERROR, b"", number)


def parse_datagram_header(message: bytes) -> tuple[str | None, int]:
    """(host, port) of a datagram message; host None for the connected peer, "" with the
    errno as the port for an error. struct.error for a message shorter than the header."""
    length, packed, port = DATAGRAM_HEADER.unpack_from(message)
    if length == ERROR:
        return "", port
    if length == 0:
        return None, port
    return str(ipaddress.ip_address(packed[:length])), port


# ------------------------------------------------------------ the program's side


def send_datagram(sock: socket.socket, data: bytes,
                  addr: tuple[Any, ...] | None = None) -> None:
    """Send `data` to `addr` (host, port) through a descriptor the daemon handed over
    (Attached.bind_udp); None: to the connected peer."""
    header = datagram_header(None, 0) if addr is None else \
        datagram_header(str(addr[0]), int(addr[1]))
    sock.send(header + data)


def recv_datagram(sock: socket.socket, bufsize: int = MAX_DATAGRAM
                  ) -> tuple[bytes, tuple[str, int] | None]:
    """The next datagram and its source (host, port) from such a descriptor: as recvfrom,
    the source None for a connected endpoint's peer. An error the endpoint reported is
    raised (ConnectionRefusedError, ...); end-of-file (the daemon closed the endpoint) is
    EOFError."""
    message = sock.recv(DATAGRAM_HEADER.size + bufsize)
    if len(message) < DATAGRAM_HEADER.size:
        raise EOFError("the UDP endpoint was closed")
    host, port = parse_datagram_header(message)
    if host == "":
        raise OSError(port, os.strerror(port))  # the errno picks the subclass
    return message[DATAGRAM_HEADER.size:], None if host is None else (host, port)


# ------------------------------------------------------------ the stack's side


class DatagramChannel(asyncio.DatagramProtocol):
    """The stack's side (on the stack's loop): the UDP endpoint's datagrams and errors go
    to `far`, the stack's end of the program's socketpair, with their source, and what the
    program writes there goes out through the endpoint. It closes the endpoint when the
    program closes its end (or dies), then calls `on_close`."""

    def __init__(self, stack: Stack, far: socket.socket,
                 on_close: Callable[[], None] | None = None) -> None:
        self._stack = stack
        self.far = far
        far.setblocking(False)
        self.transport: DatagramTransport | None = None
        self.dropped = 0  # arrivals the program's socketpair had no room for
        self._on_close = on_close
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, DatagramTransport)
        self.transport = transport
        asyncio.get_running_loop().add_reader(self.far, self._from_program)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._to_program(datagram_header(str(addr[0]), int(addr[1])) + data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno is not None:
            self._to_program(error_header(exc.errno))

    def _to_program(self, message: bytes) -> None:
        try:
            self.far.send(message)
        except BlockingIOError:
            self.dropped += 1  # a full receive queue drops, as a kernel socket's does
        except OSError:
            self.close()  # the program is gone

    def _from_program(self) -> None:
        transport = self.transport
        while transport is not None:
            try:
                message = self.far.recv(DATAGRAM_HEADER.size + MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self.close()  # the program closed its socket
                return
            if len(message) < DATAGRAM_HEADER.size:
                self.error_received(OSError(errno.EINVAL, os.strerror(errno.EINVAL)))
                continue
            host, port = parse_datagram_header(message)
            try:
                transport.sendto(message[DATAGRAM_HEADER.size:],
                                 None if host is None else (host, port))
            except (ValueError, TypeError):
                # Another address than a connected endpoint's (asyncio's rule), or none.
                number = errno.EISCONN if host else errno.EDESTADDRREQ
                self.error_received(OSError(number, os.strerror(number)))

    def connect(self, host: str, port: int) -> None:
        transport = self.transport
        assert transport is not None
        self._stack.network.udp_connect(transport.endpoint,
                                        ipaddress.ip_address(host).packed, port)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()  # the stack closed the endpoint (its end): the program reads EOF

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport, self.transport = self.transport, None
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.far)
        if transport is not None:
            transport.close()
        self.far.close()
        if self._on_close is not None:
            self._on_close()
