"""A connection's timers, one small type: each is the time it fires, or None when stopped, and
`next_deadline` is the earliest, which the stack's timer heap keys on; with them what they
count from (the persist backoff, unanswered keepalives, when unacknowledged data was first
sent). What happens when one fires is the connection's business (connection.py, `on_timer`).
ConnectionCounts is the connection's own tally, as `ss -i` shows it."""

from __future__ import annotations


class ConnectionTimers:
    __slots__ = ("delack", "fin_wait_2", "keepalive", "keepalive_probes", "persist",
                 "persist_interval", "probe", "rack", "retries", "rto", "time_wait",
                 "unacked_since")

    def __init__(self) -> None:
        self.rto: float | None = None         # retransmission (RFC 6298)
        self.probe: float | None = None       # tail loss probe (RFC 8985 7)
        self.rack: float | None = None        # RACK's reordering timer (RFC 8985 6.3)
        self.persist: float | None = None     # zero-window probe (RFC 9293 3.8.6.1)
        self.delack: float | None = None      # delayed ACK (RFC 5681 4.2)
        self.keepalive: float | None = None   # RFC 1122 4.2.3.6
        self.fin_wait_2: float | None = None  # an orphaned FIN_WAIT_2 gives up
        self.time_wait: float | None = None   # 2 MSL
        self.persist_interval = 0.0  # the persist timer's current (backed-off) interval
        self.keepalive_probes = 0    # keepalive probes sent and not answered
        self.unacked_since = 0.0     # when the oldest unacknowledged byte was first sent
        self.retries = 0             # retransmission timeouts in a row, for the give-up limit

    def next_deadline(self) -> float | None:
        earliest = self.rto
        for t in (self.rack, self.probe, self.persist, self.delack, self.keepalive, self.fin_wait_2,
                  self.time_wait):
            if t is not None and (earliest is None or t < earliest):
                earliest = t
        return earliest

    def stop_all(self) -> None:
        self.rto = self.probe = self.rack = self.persist = self.delack = None
        self.keepalive = self.fin_wait_2 = self.time_wait = None


class ConnectionCounts:
    __slots__ = ("persist_probes", "retransmits", "segments_in", "segments_out")

    def __init__(self) -> None:
        self.retransmits = 0
        self.persist_probes = 0
        self.segments_in = 0
        self.segments_out = 0
