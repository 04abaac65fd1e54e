"""A connection's timers, one small type: each is the time it fires, or None when stopped, and
`next_deadline` is the earliest, which the stack's timer heap keys on. What happens when one
fires is the connection's business (connection.py, `on_timer`)."""

from __future__ import annotations


class ConnectionTimers:
    __slots__ = ("delack", "fin_wait_2", "keepalive", "persist", "probe", "rto", "time_wait")

    def __init__(self) -> None:
        self.rto: float | None = None         # retransmission (RFC 6298)
        self.probe: float | None = None       # tail loss probe (RFC 8985 7)
        self.persist: float | None = None     # zero-window probe (RFC 9293 3.8.6.1)
        self.delack: float | None = None      # delayed ACK (RFC 5681 4.2)
        self.keepalive: float | None = None   # RFC 1122 4.2.3.6
        self.fin_wait_2: float | None = None  # an orphaned FIN_WAIT_2 gives up
        self.time_wait: float | None = None   # 2 MSL

    def next_deadline(self) -> float | None:
        earliest = self.rto
        for t in (self.probe, self.persist, self.delack, self.keepalive, self.fin_wait_2,
                  self.time_wait):
            if t is not None and (earliest is None or t < earliest):
                earliest = t
        return earliest

    def stop_all(self) -> None:
        self.rto = self.probe = self.persist = self.delack = None
        self.keepalive = self.fin_wait_2 = self.time_wait = None
