"""A listening port (RFC 9293 3.10.7.2, LISTEN STATE): turns acceptable SYNs into connections."""

from __future__ import annotations

import enum

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.segment import ACK, FIN, RST, SYN, Segment
from tcpstack.tcp.state import State, Trigger, next_state


class Verdict(enum.Enum):
    """What LISTEN does with a segment; each value is the counter the stack adds it to."""

    OPEN = "passive_opens"          # a SYN: open a connection
    RESET = "listen_resets"         # an ACK: answer with a RST (3.10.7.2, second check)
    IGNORE = "listen_rst_ignored"   # a RST: nothing to reset (first check)
    OVERFLOW = "listen_overflows"   # a SYN, but the backlog is full
    DROP = "listen_drops"           # anything else (SYN+FIN: Linux drops it too)


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

    def classify(self, seg: Segment) -> Verdict:
        """What LISTEN does with `seg` (RFC 9293 3.10.7.2)."""
        flags = seg.flags
        if flags & RST:
            return Verdict.IGNORE
        if flags & ACK:
            return Verdict.RESET
        if not flags & SYN or flags & FIN:
            return Verdict.DROP  # SYN+FIN is no way to open a connection
        if self.half_open >= self.backlog:
            return Verdict.OVERFLOW
        return Verdict.OPEN
