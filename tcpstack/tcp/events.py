"""What a connection tells its application: small values the caller pulls (h11/aioquic style)."""

from __future__ import annotations

import enum


class ConnEvent(enum.Enum):
    ESTABLISHED = "established"  # the handshake completed
    DATA = "data"                # bytes wait in the receive buffer (read them with read())
    EOF = "eof"                  # the peer sent FIN: no more data will arrive
    WRITABLE = "writable"        # the send buffer has room again
    RESET = "reset"              # the peer reset the connection
    REFUSED = "refused"          # our SYN was answered with RST
    TIMEOUT = "timeout"          # retransmissions gave up
    CLOSED = "closed"            # the connection is gone; no more events follow
