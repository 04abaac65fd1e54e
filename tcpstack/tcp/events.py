"""What a connection tells its application: small values the caller pulls (h11/aioquic style)."""

from __future__ import annotations

import enum
from typing import Protocol


class ConnEvent(enum.Enum):
    ESTABLISHED = "established"  # the handshake completed
    DATA = "data"                # bytes wait in the receive buffer (read them with read())
    EOF = "eof"                  # the peer sent FIN: no more data will arrive
    WRITABLE = "writable"        # the send buffer has room again
    RESET = "reset"              # the peer reset the connection
    REFUSED = "refused"          # our SYN was answered with RST
    TIMEOUT = "timeout"          # retransmissions gave up
    CLOSED = "closed"            # the connection is gone; no more events follow


class ConnectionOwner(Protocol):
    """What the application layer attaches to a connection (`Connection.owner`): it is told
    each of the connection's events, in order."""

    def handle_event(self, event: ConnEvent) -> None: ...
