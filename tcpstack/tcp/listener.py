"""A listening port (RFC 9293 3.10.7.2, LISTEN STATE): turns acceptable SYNs into connections."""

from __future__ import annotations

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.segment import ACK, FIN, RST, SYN, Segment
from tcpstack.tcp.state import State, Trigger, next_state


class Listener:
    """LISTEN on one port. Counts half-open connections against the backlog; the stack
    creates the connection objects, the application is told when one is ESTABLISHED."""

    def __init__(self, port: int, backlog: int) -> None:
        self.state = next_state(State.CLOSED, Trigger.APP_LISTEN)
        self.port = port
        self.backlog = backlog
        self.half_open = 0
        self.owner: object | None = None  # whatever the application layer attaches
        self.config: TcpConfig | None = None  # for this port's connections, if not the stack's

    def classify(self, seg: Segment) -> str:
        """What LISTEN does with `seg`: 'ignore' (a RST), 'reset' (an ACK: 3.10.7.2 second
        check), 'syn' (open a connection), 'overflow' (backlog full), 'drop' (anything else)."""
        flags = seg.flags
        if flags & RST:
            return "ignore"
        if flags & ACK:
            return "reset"
        if not flags & SYN or flags & FIN:
            return "drop"  # SYN+FIN is no way to open a connection (Linux drops it too)
        if self.half_open >= self.backlog:
            return "overflow"
        return "syn"
