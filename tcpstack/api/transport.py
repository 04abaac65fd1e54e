"""An asyncio Transport over one tcpstack Connection, so asyncio's own StreamReader and
StreamWriter work on it unchanged (through api.streams.StreamProtocol; asyncio's
StreamReaderProtocol works on it too).

Flow control both ways: when the protocol pauses reading, received bytes stay in the
connection and its advertised window closes; when the connection's send buffer is full,
writes wait in a backlog here and the protocol is paused so `drain()` blocks.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from types import MappingProxyType
from typing import Any

from tcpstack.io.driver import StackDriver
from tcpstack.tcp.connection import Connection, ConnectionStateError
from tcpstack.tcp.events import (
    DATA_READY,
    Closed,
    DataReady,
    EndOfData,
    Event,
    Refused,
    Reset,
    TimedOut,
    Unreachable,
    Writable,
)
from tcpstack.tcp.state import State

DEFAULT_HIGH_WATER = 256 * 1024
DEFAULT_LOW_WATER = 64 * 1024


def unreachable_error(number: int, text: str) -> OSError:
    """What a socket raises for an ICMP error that ended a connection attempt: OSError with
    the errno (ConnectionRefusedError for a port unreachable), worded as the stack says."""
    if number == errno.ECONNREFUSED:
        return ConnectionRefusedError(number, text)
    return OSError(number, text)


# asyncio.BaseTransport keeps a dict of extra info per transport; ours answers from the
# connection instead (get_extra_info), so every transport shares this empty one.
_NO_EXTRA: MappingProxyType[str, Any] = MappingProxyType({})


def _address(addr: bytes, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """As the socket module gives an address: (host, port) for IPv4, (host, port, flowinfo,
    scope_id) for IPv6."""
    if len(addr) == 16:
        return socket.inet_ntop(socket.AF_INET6, addr), port, 0, 0
    return socket.inet_ntoa(addr), port


class TcpTransport(asyncio.Transport):
    # Slots, and no extra-info dict: one transport per connection, thousands of them idle.
    __slots__ = ("_backlog", "_closing", "_conn", "_driver", "_eof_pending", "_eof_requested",
                 "_high_water", "_loop", "_lost", "_low_water", "_protocol", "_reading_paused",
                 "_released", "_writing_paused")

    def __init__(self, driver: StackDriver, conn: Connection,
                 protocol: asyncio.BaseProtocol) -> None:
        super().__init__(_NO_EXTRA)
        self._driver = driver
        self._loop = driver.loop
        self._conn = conn
        self._protocol: Any = protocol
        # Written by the application, not yet in the send buffer: a bytearray only while
        # it holds bytes (most connections never have a backlog; an empty one is 56 bytes).
        self._backlog: bytearray | bytes = b""
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_LOW_WATER
        self._writing_paused = False
        self._reading_paused = False
        self._eof_pending = False   # the peer's FIN arrived; tell the protocol after the data
        # The connection closed with data still unread: connection_lost after the data.
        self._released = False
        self._eof_requested = False
        self._closing = False
        self._lost = False
        conn.owner = self

    @classmethod
    def attach(cls, driver: StackDriver, conn: Connection,
               protocol: asyncio.BaseProtocol) -> TcpTransport:
        """A transport for a connection just established, made known to its protocol, which
        is then handed whatever data arrived with the handshake."""
        transport = cls(driver, conn, protocol)
        protocol.connection_made(transport)
        if conn.rcv.unread_bytes:
            transport.handle_event(DATA_READY)
        return transport

    # ----------------------------------------------------------- asyncio.Transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """"peername", "sockname" (formatted when asked: most applications never ask) and
        "connection" (the tcpstack Connection)."""
        conn = self._conn
        if name == "peername":
            return _address(conn.remote_addr, conn.remote_port)
        if name == "sockname":
            return _address(conn.local_addr, conn.local_port)
        if name == "connection":
            return conn
        return default

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        if self._closing:
            return
        if self._conn.rcv.unread_bytes:
            # Received data the application never read: a RST rather than a FIN tells the
            # peer it was lost (RFC 9293 3.6.1, RFC 1122 4.2.2.13), as Linux's close() does.
            self.abort()
            return
        self._closing = True
        self._conn.stop_reading()
        if not self._backlog:
            self._finish_close()

    def abort(self) -> None:
        self._closing = True
        self._conn.abort(self._driver.now())
        self.lose(None)

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._loop.call_soon(self._deliver)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_requested:
            raise RuntimeError("cannot write after write_eof()")
        if self._lost or self._closing or not data:
            return  # as asyncio's transports: data written after close goes nowhere
        if self._backlog:
            self._backlog += data
        else:
            try:
                n = self._conn.send(data)
            except ConnectionStateError:  # the connection was closed or reset under us
                self.lose(ConnectionResetError(self._conn.error or "connection closed"))
                return
            if n < len(data):
                self._backlog = bytearray(memoryview(data)[n:])
        if not self._writing_paused and len(self._backlog) > self._high_water:
            self._writing_paused = True
            self._protocol.pause_writing()

    def write_eof(self) -> None:
        if self._eof_requested or self._closing:
            return
        self._eof_requested = True
        if not self._backlog:
            self._conn.close(self._driver.now())

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._backlog)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water = DEFAULT_HIGH_WATER if high is None else high
        self._low_water = self._high_water // 4 if low is None else low

    # ----------------------------------------------------------- from the stack

    def handle_event(self, event: Event) -> None:
        match event:
            case DataReady():
                self._deliver()
            case Writable():
                self._refill()
            case EndOfData():
                self._eof_pending = True
                self._deliver()
            case Reset(error=error):
                self.lose(ConnectionResetError(error))
            case TimedOut(error=error):
                self.lose(TimeoutError(error))
            case Refused(error=error):
                self.lose(ConnectionRefusedError(error))
            case Unreachable(error=error, errno=number):
                self.lose(unreachable_error(number, error))
            case Closed():
                # Over for the stack, but what arrived is still the application's to read
                # (a reader paused behind its own FIN): connection_lost comes after it.
                if not self._closing and (self._conn.rcv.unread_bytes or self._eof_pending):
                    self._released = True
                    self._deliver()
                else:
                    self.lose(None)

    def _deliver(self) -> None:
        if self._lost or self._closing:
            return
        conn = self._conn
        if conn.rcv.unread_bytes and not self._reading_paused:
            # All that has arrived, in one piece: the receive window then opens in full at
            # once. Handed over 256 KB at a time (asyncio's socket transports read that
            # much), a StreamReader paused after each, and what waited in between held the
            # window shut: an upload ran 40% slower. A paused protocol gets nothing more,
            # so it holds at most one receive buffer beyond its own limit.
            self._protocol.data_received(conn.read())
        if self._eof_pending and not conn.rcv.unread_bytes and not self._reading_paused:
            self._eof_pending = False
            keep_open = self._protocol.eof_received()
            if not keep_open and not self._released:
                self.close()
        if self._released and not conn.rcv.unread_bytes and not self._eof_pending:
            self.lose(None)

    def _refill(self) -> None:
        conn = self._conn
        if self._backlog and conn.state in (State.ESTABLISHED, State.CLOSE_WAIT,
                                            State.SYN_RCVD, State.SYN_SENT):
            n = conn.send(self._backlog)
            if n == len(self._backlog):
                self._backlog = b""
            else:
                del self._backlog[:n]  # type: ignore[union-attr]  # non-empty: a bytearray
        if self._writing_paused and len(self._backlog) <= self._low_water:
            self._writing_paused = False
            self._protocol.resume_writing()
        if not self._backlog:
            if self._closing:
                self._finish_close()
            elif self._eof_requested:
                conn.close(self._driver.now())

    def _finish_close(self) -> None:
        """Everything written is in the connection: send FIN; the stack finishes the close."""
        self._conn.close(self._driver.now())
        self.lose(None)

    def lose(self, exc: Exception | None) -> None:
        """The connection is over for the application: connection_lost(exc), once."""
        if self._lost:
            return
        self._lost = True
        self._backlog = b""
        if self._writing_paused:
            self._writing_paused = False
            self._protocol.resume_writing()
        self._loop.call_soon(self._protocol.connection_lost, exc)
