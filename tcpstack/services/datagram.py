"""Echo (RFC 862) and discard (RFC 863) over UDP: each datagram back to its sender, or
nowhere. They are asyncio DatagramProtocols, for `Stack.create_datagram_endpoint`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("tcpstack")


class UdpEcho(asyncio.DatagramProtocol):
    """RFC 862's UDP service: every datagram goes back to where it came from."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        # An answer that cannot go (too big for the path, the send buffer full): the
        # datagram is lost, as UDP's are; the service goes on.
        log.debug("udp echo: %s", exc)


class UdpDiscard(asyncio.DatagramProtocol):
    """RFC 863's UDP service: every datagram is dropped."""

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        pass
