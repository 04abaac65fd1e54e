"""Tunables of the TCP core, with defaults close to Linux's."""

from __future__ import annotations

from dataclasses import dataclass

# The listen backlog a server gets unless it asks for another: Linux's cap on any backlog
# (net.core.somaxconn, 4096 since 5.4), so a burst of clients finds room (docs/DECISIONS.md).
DEFAULT_BACKLOG = 4096


@dataclass(slots=True)
class TcpConfig:
    mss: int = 1460                 # what we announce: the link MTU less 40 bytes of headers
    send_buffer: int = 1 << 20      # bytes the application may queue beyond what is acked
    # The receive buffer bounds the window we advertise. Auto-tuned by default, as Linux's
    # tcp_rmem and tcp_moderate_rcvbuf: it starts at receive_buffer_initial and follows what
    # the application reads per round trip, up to receive_buffer_max, for which the window
    # scale in our SYN is chosen. A fixed receive_buffer turns tuning off (as SO_RCVBUF does).
    receive_buffer: int | None = None     # SO_RCVBUF: a fixed buffer; None: auto-tuned
    receive_buffer_initial: int = 128 << 10  # tcp_rmem[1]
    receive_buffer_max: int = 6 << 20        # tcp_rmem[2]
    window_scaling: bool = True     # RFC 7323 window scale option
    sack: bool = True               # RFC 2018 selective acknowledgments
    timestamps: bool = True         # RFC 7323 timestamps (Linux tcp_timestamps=1)
    msl: float = 30.0               # maximum segment lifetime; TIME_WAIT lasts 2*MSL
    initial_rto: float = 1.0        # RFC 6298 2.1
    min_rto: float = 0.2            # Linux's floor (RFC 6298 says 1 s; see docs/DECISIONS.md)
    max_rto: float = 60.0
    syn_retries: int = 6            # SYN retransmissions before connect gives up (Linux: 6)
    synack_retries: int = 5         # SYN-ACK retransmissions before a half-open is dropped
    max_retries: int = 15           # data retransmissions before the connection aborts
    orphan_retries: int = 8         # the same once the application let go (tcp_orphan_retries)
    max_connections: int = 262_144  # connections at once; more SYNs and connects are refused
    max_orphans: int = 65_536       # closed by the application, still finishing (tcp_max_orphans)
    max_time_wait: int = 65_536     # in TIME_WAIT at once; beyond, the oldest end early
    #                                 (Linux's tcp_max_tw_buckets)
    persist_max: float = 60.0       # longest interval between zero-window probes
    backlog: int = DEFAULT_BACKLOG  # default listener backlog: bounds the SYN queue (half-
    #                                 open connections) and the accept queue, each on its own
    syncookies: int = 1             # RFC 4987 SYN cookies, as Linux's tcp_syncookies: 0 off,
    #                                 1 once a listener's SYN queue is full, 2 always
    congestion: str = "cubic"       # "cubic" (RFC 9438) or "newreno" (RFC 6582)
    delayed_ack: float = 0.04       # longest an ACK for in-order data waits (0: never waits)
    nodelay: bool = False           # TCP_NODELAY: no Nagle (RFC 9293 3.7.4)
    keepalive: bool = False         # SO_KEEPALIVE (RFC 1122 4.2.3.6)
    keepalive_idle: float = 7200.0  # TCP_KEEPIDLE: seconds of silence before probing
    keepalive_interval: float = 75.0  # TCP_KEEPINTVL
    keepalive_count: int = 9        # TCP_KEEPCNT: unanswered probes before giving up
    user_timeout: float | None = None  # RFC 5482: abort when data stays unacked this long
    fin_wait_2_timeout: float = 60.0  # an orphaned FIN_WAIT_2 gives up (Linux tcp_fin_timeout)
    challenge_ack_limit: int = 1000  # RFC 5961 7, per stack per second on average (0: none)
    tail_loss_probe: bool = True    # RFC 8985 7 TLP (Linux tcp_early_retrans >= 3)
    rack: bool = True               # RFC 8985 6 RACK loss detection with SACK (Linux
    #                                 tcp_recovery=1); off: RFC 6675's DupThresh and IsLost
    cwnd_trace: bool = False        # keep (time, cwnd, ssthresh) samples (for --pcap's plot)
