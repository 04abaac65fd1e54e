"""A listening port (RFC 9293 3.10.7.2, LISTEN STATE): turns acceptable SYNs into connections.

Two queues, each bounded by the backlog, as Linux's: the SYN queue (connections in SYN_RCVD,
`half_open`) and the accept queue (established and not yet taken up by the application,
`accept_queue`, which the application layer that owns the listener keeps up to date).
A SYN that finds the SYN queue full gets a SYN cookie instead (syncookies.py), unless
cookies are off; one that finds the accept queue full is dropped, cookie or not, since
nobody would take the connection up (Linux's ListenOverflows)."""

from __future__ import annotations

import enum

from tcpstack.tcp import syncookies
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.segment import ACK, FIN, RST, SYN, Segment
from tcpstack.tcp.state import State, Trigger, next_state


class Verdict(enum.Enum):
    """What LISTEN does with a segment; each value is the counter the stack adds it to."""

    # A singleton's identity hash is C; Enum's hashes the name in Python, and the stack
    # looks a verdict up in a dict for every SYN.
    __hash__ = object.__hash__

    OPEN = "passive_opens"          # a SYN: open a connection
    RESET = "listen_resets"         # an ACK: answer with a RST (3.10.7.2, second check)
    IGNORE = "listen_rst_ignored"   # a RST: nothing to reset (first check)
    OVERFLOW = "listen_overflows"   # a SYN, but a queue is full (and no cookie for it)
    COOKIE = "syncookies_sent"      # a SYN, answered with a SYN cookie (RFC 4987 3.6)
    DROP = "listen_drops"           # anything else (SYN+FIN: Linux drops it too)


class Listener:
    """LISTEN on one port, with its two queues (see the module docstring); the stack
    creates the connection objects, the application is told when one is ESTABLISHED.
    `cookies`: TcpConfig.syncookies (0 off, 1 once the SYN queue is full, 2 always)."""

    def __init__(self, port: int, backlog: int, cookies: int = syncookies.ON_OVERFLOW) -> None:
        self.state = next_state(State.CLOSED, Trigger.APP_LISTEN)
        self.port = port
        self.backlog = backlog
        self.half_open = 0      # the SYN queue
        self.accept_queue = 0   # kept by the owner: established, not yet taken up
        self.cookies = cookies
        self.cookies_until = float("-inf")  # an ACK may bring a cookie back until then
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
        if self.accept_queue >= self.backlog:
            return Verdict.OVERFLOW
        if self.cookies == syncookies.ALWAYS or (self.half_open >= self.backlog
                                                 and self.cookies == syncookies.ON_OVERFLOW):
            return Verdict.COOKIE
        if self.half_open >= self.backlog:
            return Verdict.OVERFLOW
        return Verdict.OPEN

    @property
    def accept_full(self) -> bool:
        return self.accept_queue >= self.backlog
