"""What a connection tells its application: small typed values the caller pulls (h11/aioquic
style), each carrying what goes with it (the error of an end that failed). `kind` names the
sort of event as a ConnEvent, for code that only needs to tell them apart."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Protocol


class ConnEvent(enum.Enum):
    ESTABLISHED = "established"  # the handshake completed
    DATA = "data"                # bytes wait in the receive buffer (read them with read())
    EOF = "eof"                  # the peer sent FIN: no more data will arrive
    WRITABLE = "writable"        # the send buffer has room again
    RESET = "reset"              # the peer reset the connection
    REFUSED = "refused"          # our SYN was answered with RST
    TIMEOUT = "timeout"          # retransmissions gave up
    UNREACHABLE = "unreachable"  # an ICMP error ended the connection attempt
    CLOSED = "closed"            # the connection is gone; no more events follow


@dataclass(frozen=True, slots=True)
class Established:
    kind: ClassVar[ConnEvent] = ConnEvent.ESTABLISHED


@dataclass(frozen=True, slots=True)
class DataReady:
    kind: ClassVar[ConnEvent] = ConnEvent.DATA


@dataclass(frozen=True, slots=True)
class EndOfData:
    kind: ClassVar[ConnEvent] = ConnEvent.EOF


@dataclass(frozen=True, slots=True)
class Writable:
    kind: ClassVar[ConnEvent] = ConnEvent.WRITABLE


@dataclass(frozen=True, slots=True)
class Reset:
    error: str
    kind: ClassVar[ConnEvent] = ConnEvent.RESET


@dataclass(frozen=True, slots=True)
class Refused:
    error: str
    kind: ClassVar[ConnEvent] = ConnEvent.REFUSED


@dataclass(frozen=True, slots=True)
class TimedOut:
    error: str
    kind: ClassVar[ConnEvent] = ConnEvent.TIMEOUT


@dataclass(frozen=True, slots=True)
class Unreachable:
    error: str
    errno: int  # what a socket would report (ENETUNREACH, EHOSTUNREACH, ECONNREFUSED, ...)
    kind: ClassVar[ConnEvent] = ConnEvent.UNREACHABLE


@dataclass(frozen=True, slots=True)
class Closed:
    error: str | None = None  # why, when it ended otherwise than by a clean close
    kind: ClassVar[ConnEvent] = ConnEvent.CLOSED


Event = (Established | DataReady | EndOfData | Writable | Reset | Refused | TimedOut
         | Unreachable | Closed)

# The events without data are values: one of each serves every connection.
ESTABLISHED = Established()
DATA_READY = DataReady()
END_OF_DATA = EndOfData()
WRITABLE = Writable()


class ConnectionOwner(Protocol):
    """What the application layer attaches to a connection (`Connection.owner`): it is told
    each of the connection's events, in order."""

    def handle_event(self, event: Event) -> None: ...
