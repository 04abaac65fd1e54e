"""What `tcpstack stat` shows: a JSON-able picture of a running stack at one instant.

    {"version": 1, "iface": "tcps0", "address": "10.77.0.2", "pid": 4242, "uptime": 12.5,
     "listeners": [{"state": "LISTEN", "local": "10.77.0.2:80", "peer": "*:*", "port": 80,
                    "half_open": 0, "backlog": 4096, "syn_queue": 0, "accept_queue": 0}],
     "connections": [{"state": "ESTABLISHED", "local": "10.77.0.2:80",
                      "peer": "10.77.0.1:40000", "send_q": 0, "recv_q": 0, "rtt_ms": 0.21,
                      "rto_ms": 200.0, "cwnd": 14600, "ssthresh": null, "retransmits": 0,
                      "bytes_in": 78, "bytes_out": 1048576, "segs_in": 40, "segs_out": 35}],
     "counters": {"segs_in": 40, ...}}

A listener's `syn_queue` (the same as `half_open`) is its connections in SYN_RCVD, which
count against `backlog`; `accept_queue` those established and handed to the application
that it has not yet started serving (its handler has not run yet), as ss shows a Linux
listener's accept queue in Recv-Q, which `backlog` bounds as well (each queue on its own).
`send_q` is the bytes queued and not yet acknowledged (sent or not), `recv_q` the bytes
received and not yet read, `cwnd` and `ssthresh` are in bytes (`ssthresh` is null until the
first loss sets it), `bytes_out` counts application bytes the peer acknowledged. Every
counter the stack keeps is listed, zeros included, and next to them the link's own:
`tun_rx_queue_drops`, the packets the kernel dropped because the TUN's queue was full,
before the stack could read them (absent when the kernel could not be asked).

A stack of several workers (`--workers N`, api/workers.py) answers with one snapshot of them
all (`merge_snapshots`): each connection has a `worker` field (0 to N-1), and `workers`
lists each worker's pid and own counters, which `counters` sums; a listener appears once,
its `half_open` and `backlog` summed over the workers (each has its own queue). `pid` is the
supervising process's. A stack of one worker has neither field.

`udp` lists the UDP endpoints as `ss -uan` does: `state` UNCONN (bound) or ESTAB
(connected), `local`, `peer` (`*:*` unless connected), `recv_q` (payload bytes received and
not yet read), `send_q` (bytes sent and not yet handed to the link), `drops` (datagrams the
full receive queue refused) and `rcvbuf` (its bound).

The layout is versioned with `version`; a field is only ever added within a version.
"""

from __future__ import annotations

import ipaddress
import os
from typing import NotRequired, TypedDict

from tcpstack.stack import NetworkStack
from tcpstack.tcp.congestion.base import SSTHRESH_UNSET
from tcpstack.tcp.connection import Connection

SNAPSHOT_VERSION = 1
# Counters of the interface, not of a stack: every worker of a multi-queue TUN reads the
# same total, so merging takes it once.
INTERFACE_COUNTERS = frozenset({"tun_rx_queue_drops"})

# The counters NetworkStack keeps (stack.py, io/driver.py), reported even while zero so
# scripts can rely on their presence.
KNOWN_COUNTERS = (
    "segs_in", "segs_out", "rst_in", "rst_out", "passive_opens", "active_opens",
    "attempt_fails", "estab_resets", "in_errors",
    "ip_bad_checksum", "ip_truncated", "ip_bad_ihl", "ip_bad_length", "ip_bad_version",
    "ip_fragment", "ip_not_for_us", "ip_unknown_protocol",
    "tcp_bad_checksum", "tcp_bad_option", "tcp_bad_offset", "tcp_truncated",
    "icmp_truncated", "icmp_bad_checksum", "icmp_in", "icmp_out",
    "listen_overflows", "listen_resets", "listen_rst_ignored", "listen_drops",
    "tun_write_drops", "tun_write_errors", "retrans_segs",
    "persist_probes", "internal_errors", "rto_timeouts", "fast_retransmits",
    "sack_recoveries", "reno_recoveries", "lost_retransmits", "tlp_probes", "tlp_recoveries",
    "rack_losses", "acks_coalesced", "paws_rejected", "ts_missing_dropped", "challenge_acks",
    "challenge_acks_limited", "icmp_errors_accepted", "icmp_out_of_window", "icmp_unmatched",
    "icmp_bad_mtu", "pmtu_lowered",
    "syncookies_sent", "syncookies_recv", "syncookies_failed",
    "ip_frag_in", "ip_frag_reassembled", "ip_frag_overlap", "ip_frag_tiny", "ip_frag_timeout",
    "ip_frag_memory", "ip_frag_bad",
    "conn_limit_drops", "orphan_resets",
    "ip_bad_option", "ip_source_route",
    "ip_land", "ip_bad_source", "tcp_reserved_bits", "tcp_no_flags", "tcp_syn_fin",
    "udp_in_datagrams", "udp_out_datagrams", "udp_no_ports", "udp_in_errors",
    "udp_rcvbuf_errors", "udp_in_csum_errors", "udp_sndbuf_errors", "udp_truncated",
    "udp_bad_length", "udp_bad_checksum", "udp_icmp_ignored", "icmp_port_unreachable_out",
    "icmp_rate_limited",
    # IPv6 (net/ipv6.py, net/icmpv6.py): ip6_disabled counts what a stack without an IPv6
    # address drops (the kernel's router solicitations and the like).
    "ip6_disabled", "ip6_truncated", "ip6_bad_version", "ip6_bad_length", "ip6_ext_truncated",
    "ip6_bad_hop_by_hop", "ip6_routing_refused", "ip6_fragment", "ip6_too_many_headers",
    "ip6_bad_option", "ip6_unknown_option", "ip6_not_for_us", "ip6_multicast",
    "ip6_unknown_protocol", "ip6_bad_source",
    "icmp6_in", "icmp6_out", "icmp6_truncated", "icmp6_bad_checksum", "icmp6_bad_quote",
    "icmp6_small_mtu",
)


class ListenerInfo(TypedDict):
    state: str
    local: str
    peer: str
    port: int
    half_open: int
    backlog: int
    syn_queue: int
    accept_queue: int
    local6: NotRequired[str]  # the same listener's IPv6 endpoint, on a dual-stack stack


class ConnectionInfo(TypedDict):
    state: str
    local: str
    peer: str
    send_q: int
    recv_q: int
    rtt_ms: float | None
    rto_ms: float
    cwnd: int
    ssthresh: int | None
    rcv_buf: int            # the receive buffer now, which bounds the window we advertise
    rcv_space: int | None   # auto-tuning's most read in one round trip (ss's rcv_space)
    retransmits: int
    bytes_in: int
    bytes_out: int
    segs_in: int
    segs_out: int
    worker: NotRequired[int]


class UdpInfo(TypedDict):
    state: str
    local: str
    peer: str
    recv_q: int
    send_q: int
    drops: int
    rcvbuf: int
    worker: NotRequired[int]


class WorkerInfo(TypedDict):
    worker: int
    pid: int
    counters: dict[str, int]


class Snapshot(TypedDict):
    version: int
    iface: str
    address: str
    kernel_address: str
    address6: NotRequired[str]  # present when the stack serves IPv6 too
    kernel_address6: NotRequired[str]
    pid: int
    uptime: float
    listeners: list[ListenerInfo]
    connections: list[ConnectionInfo]
    counters: dict[str, int]
    workers: NotRequired[list[WorkerInfo]]
    udp: NotRequired[list[UdpInfo]]


def endpoint(addr: bytes, port: int) -> str:
    """`10.77.0.2:80`, or `[fd77::2]:80` as ss writes an IPv6 endpoint."""
    if len(addr) == 16:
        return f"[{ipaddress.IPv6Address(addr)}]:{port}"
    return f"{ipaddress.IPv4Address(addr)}:{port}"


def connection_info(conn: Connection) -> ConnectionInfo:
    srtt = conn.rtt.srtt
    ssthresh = conn.cc.ssthresh
    return {
        "state": conn.state.name,
        "local": endpoint(conn.local_addr, conn.local_port),
        "peer": endpoint(conn.remote_addr, conn.remote_port),
        "send_q": len(conn.snd.buffer),
        "recv_q": conn.rcv.unread_bytes,
        "rtt_ms": None if srtt is None else round(srtt * 1000, 3),
        "rto_ms": round(conn.rtt.rto * 1000, 3),
        "cwnd": conn.cc.cwnd,
        "ssthresh": None if ssthresh >= SSTHRESH_UNSET else ssthresh,
        "rcv_buf": conn.rcv.capacity,
        "rcv_space": None if conn.rcv.tuning is None else conn.rcv.tuning.space,
        "retransmits": conn.counts.retransmits,
        "bytes_in": conn.rcv.bytes_received,
        "bytes_out": conn.snd.bytes_sent,
        "segs_in": conn.counts.segments_in,
        "segs_out": conn.counts.segments_out,
    }


def udp_info(network: NetworkStack) -> list[UdpInfo]:
    """The bound UDP endpoints, by local port."""
    return [{"state": "UNCONN" if ep.remote_addr is None else "ESTAB",
             "local": endpoint(network.address, port),
             "peer": "*:*" if ep.remote_addr is None else endpoint(ep.remote_addr,
                                                                  ep.remote_port),
             "recv_q": ep.received, "send_q": ep.sending, "drops": ep.drops,
             "rcvbuf": ep.rcvbuf}
            for port, ep in sorted(network.udp.endpoints.items())]


def counters_of(network: NetworkStack) -> dict[str, int]:
    """Every known counter (zeros included) plus any other the stack has."""
    counters = dict.fromkeys(KNOWN_COUNTERS, 0)
    counters.update(network.counters)
    return dict(sorted(counters.items()))


def build_snapshot(network: NetworkStack, *, iface: str, kernel_address: str,
                   uptime: float, link_counters: dict[str, int] | None = None,
                   accept_queues: dict[int, int] | None = None,
                   kernel_address6: str | None = None) -> Snapshot:
    """`link_counters`: the link's own counters (the TUN's queue drops), beside the stack's;
    `accept_queues`: by port, the connections the application has not yet taken up."""
    address = str(ipaddress.IPv4Address(network.address))
    accepting = accept_queues or {}
    listeners: list[ListenerInfo] = [
        {"state": listener.state.name, "local": f"{address}:{port}", "peer": "*:*",
         "port": port, "half_open": listener.half_open, "backlog": listener.backlog,
         "syn_queue": listener.half_open,
         "accept_queue": accepting.get(port, listener.accept_queue)}
        for port, listener in sorted(network.listeners.items())]
    if network.address6 is not None:
        for info in listeners:  # a listener takes both families, as a dual-stack socket
            info["local6"] = endpoint(network.address6, info["port"])
    connections = [connection_info(conn) for conn in sorted(
        network.connections.values(),
        key=lambda c: (c.local_port, c.remote_addr, c.remote_port))]
    snapshot: Snapshot = {
        "version": SNAPSHOT_VERSION,
        "iface": iface,
        "address": address,
        "kernel_address": kernel_address,
        "pid": os.getpid(),
        "uptime": round(uptime, 3),
        "listeners": listeners,
        "connections": connections,
        "counters": counters_of(network) if not link_counters else
        dict(sorted({**counters_of(network), **link_counters}.items())),
        "udp": udp_info(network),
    }
    if network.address6 is not None:
        snapshot["address6"] = str(ipaddress.IPv6Address(network.address6))
        if kernel_address6 is not None:
            snapshot["kernel_address6"] = kernel_address6
    return snapshot


def _sort_key(conn: ConnectionInfo) -> tuple[int, bytes, int]:
    """The order build_snapshot gives: local port, then the peer's address (as bytes, so
    IPv4 before IPv6) and port."""
    peer_addr, _, peer_port = conn["peer"].rpartition(":")
    return int(conn["local"].rpartition(":")[2]), \
        ipaddress.ip_address(peer_addr.strip("[]")).packed, int(peer_port)


def merge_snapshots(parts: list[Snapshot], *, pid: int, uptime: float) -> Snapshot:
    """One snapshot of the workers whose own snapshots are `parts` (worker k's at index k)."""
    if not parts:
        raise ValueError("no worker snapshots to merge")
    listeners: dict[int, ListenerInfo] = {}
    connections: list[ConnectionInfo] = []
    counters: dict[str, int] = {}
    workers: list[WorkerInfo] = []
    udp: list[UdpInfo] = []
    for worker, part in enumerate(parts):
        udp += [{**ep, "worker": worker} for ep in part.get("udp", [])]
        for listener in part["listeners"]:
            port = listener["port"]
            if port in listeners:
                merged = listeners[port]
                for queue in ("half_open", "backlog", "syn_queue", "accept_queue"):
                    merged[queue] += listener[queue]
            else:
                listeners[port] = {**listener}
        connections += [{**conn, "worker": worker} for conn in part["connections"]]
        for name, value in part["counters"].items():
            if name in INTERFACE_COUNTERS:  # the one interface's: each worker reads the same
                counters[name] = max(counters.get(name, 0), value)
            else:
                counters[name] = counters.get(name, 0) + value
        workers.append({"worker": worker, "pid": part["pid"],
                        "counters": dict(part["counters"])})
    first = parts[0]
    whole: Snapshot = {
        "version": SNAPSHOT_VERSION,
        "iface": first["iface"],
        "address": first["address"],
        "kernel_address": first["kernel_address"],
        "pid": pid,
        "uptime": round(uptime, 3),
        "listeners": [listeners[port] for port in sorted(listeners)],
        "connections": sorted(connections, key=_sort_key),
        "counters": dict(sorted(counters.items())),
        "workers": workers,
        "udp": udp,
    }
    if "address6" in first:
        whole["address6"] = first["address6"]
    if "kernel_address6" in first:
        whole["kernel_address6"] = first["kernel_address6"]
    return whole
