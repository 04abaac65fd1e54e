"""The UDP layer of a stack, sans-I/O: what the stack's demultiplexing hands a UDP datagram
to, and what frames the datagrams its endpoints send.

In: `receive` parses (net/udp.py), finds the endpoint (udp/endpoint.py) and queues the
datagram for it, or answers a closed port with ICMP port unreachable (RFC 1122 4.1.3.1,
quoting the datagram as RFC 792 and RFC 1812 4.3.2.3 say) within Linux's ICMP rate limit
(net/icmp_rate.py). `icmp_error` takes the ICMP errors that quote our datagrams (RFC 1122
4.1.3.3: UDP passes them up) to a connected endpoint, as Linux reports them without
IP_RECVERR: the hard ones only (ECONNREFUSED for port unreachable). `deliver`, at the end
of the stack's pass, hands each endpoint that got something to its owner.
Out: `sendto` frames one datagram with the IPv4 header template, DF set, onto the stack's
output; over the path MTU it is refused (EMSGSIZE) rather than fragmented, as Linux with
IP_PMTUDISC_DO. Counters are nstat's Udp* (udp_in_datagrams, udp_out_datagrams,
udp_no_ports, udp_in_errors, udp_rcvbuf_errors, udp_in_csum_errors) with udp_sndbuf_errors
and the drop reasons of the codec. Addresses are bytes of 4 or 16: over IPv6 (once the
stack sets `address6`) a datagram gets an IPv6 header, a closed port an ICMPv6 port
unreachable (RFC 4443 3.1), and the errors are ICMPv6's (net/icmpv6.py).
"""

from __future__ import annotations

import errno
import struct
from collections import Counter
from collections.abc import Callable

from tcpstack.net import icmp, icmpv6, ipv4, ipv6, udp
from tcpstack.net.checksum import Bytes
from tcpstack.net.errors import MalformedPacket
from tcpstack.net.icmp_rate import IcmpRateLimit
from tcpstack.net.ipv4 import PROTO_ICMP
from tcpstack.udp.endpoint import (
    DATAGRAM_COST,
    DEFAULT_RCVBUF,
    DEFAULT_SNDBUF,
    UdpEndpoint,
    UdpPorts,
)

PROTO_UDP = udp.PROTO_UDP
UDP_IPV4_HEADERS = ipv4.HEADER_LEN + udp.HEADER_LEN
UDP_IPV6_HEADERS = ipv6.HEADER_LEN + udp.HEADER_LEN
# The same for ICMPv6 (Linux's icmpv6_err_convert): no route, administratively prohibited,
# port unreachable, source address policy, reject route.
HARD_UNREACHABLE6 = frozenset({1, 4, 5, 6})
MAX_CACHED_PEERS = 4096
_QUOTED_PORTS = struct.Struct("!HH")
# The destination unreachable codes a connected UDP socket reports (its next call fails
# with them), as Linux's icmp_err_convert marks them fatal: protocol and port unreachable,
# network and host unknown, administratively prohibited, filtered; and "fragmentation
# needed" (EMSGSIZE), since we send with DF as Linux with IP_PMTUDISC_DO. The soft ones
# (network or host unreachable, time exceeded, parameter problem) are not reported.
HARD_UNREACHABLE = frozenset({2, 3, 6, 7, 9, 10, 13})

# The output the stack's link writes: (headers, payload, GSO size), as stack.OutPacket.
Output = list[tuple[bytes, Bytes, int]]
PathMtu = Callable[[bytes, float], int | None]  # the path MTU ICMP taught, or None
LearnPathMtu = Callable[[bytes, int, float], None]


class UdpLayer:
    """The bound endpoints and everything between them and the stack's packets."""

    def __init__(self, address: bytes, counters: Counter[str], output: Output,
                 ephemeral_ports: range, mtu: int, path_mtu: PathMtu,
                 learn_path_mtu: LearnPathMtu) -> None:
        self.address = address
        self.counters = counters
        self.output = output
        self.mtu = mtu
        self.ports = UdpPorts(ephemeral_ports)
        self.endpoints = self.ports.endpoints
        self.icmp_limit = IcmpRateLimit()
        self._path_mtu = path_mtu
        self._learn_path_mtu = learn_path_mtu
        # Endpoints given datagrams or errors in this pass, and those with datagrams framed
        # and not yet on the link: the stack looks at both once per pass.
        self.ready: dict[UdpEndpoint, None] = {}
        self.sending: dict[UdpEndpoint, None] = {}
        self._routes: dict[bytes, ipv4.HeaderTemplate] = {}  # by peer address
        self.address6: bytes | None = None  # the stack's IPv6 address, when it has one

    # ------------------------------------------------------------------ the application's

    def open(self, port: int | None, rcvbuf: int = DEFAULT_RCVBUF,
             sndbuf: int = DEFAULT_SNDBUF) -> UdpEndpoint:
        return self.ports.bind(port, rcvbuf, sndbuf)

    def connect(self, endpoint: UdpEndpoint, remote: bytes, port: int) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"invalid port {port}: must be 1-65535")
        endpoint.remote_addr = remote
        endpoint.remote_port = port

    def close(self, endpoint: UdpEndpoint) -> None:
        self.ports.unbind(endpoint)
        self.ready.pop(endpoint, None)

    def sendto(self, endpoint: UdpEndpoint, data: Bytes, now: float,
               remote: bytes | None = None, port: int = 0) -> None:
        """Frame one datagram onto the output, or raise OSError as sendto(2) would: the
        error an ICMP message left pending (taken, as the kernel's sk_err), EMSGSIZE beyond
        the path MTU, EAGAIN with the send buffer full, EDESTADDRREQ, EBADF."""
        if endpoint.closed:
            raise OSError(errno.EBADF, "the UDP endpoint is closed")
        pending = endpoint.take_error()
        if pending is not None:
            raise OSError(*pending)
        if remote is None:
            if endpoint.remote_addr is None:
                raise OSError(errno.EDESTADDRREQ, "no destination: the endpoint is not "
                              "connected")
            remote, port = endpoint.remote_addr, endpoint.remote_port
        if not 0 < port < 65536:
            raise OSError(errno.EINVAL, f"invalid port {port}: must be 1-65535")
        v6 = len(remote) == 16
        if v6 and self.address6 is None:
            raise OSError(errno.EAFNOSUPPORT, "this stack has no IPv6 address")
        headers = UDP_IPV6_HEADERS if v6 else UDP_IPV4_HEADERS
        mtu = self.mtu
        path = self._path_mtu(remote, now)
        if path is not None and path < mtu:
            mtu = path
        if headers + len(data) > mtu:
            raise OSError(errno.EMSGSIZE, f"a {len(data)}-byte datagram does not fit the "
                          f"path MTU of {mtu} (at most {mtu - headers})")
        if endpoint.sending >= endpoint.sndbuf:  # as Linux: one over it, then no more
            self.counters["udp_sndbuf_errors"] += 1
            raise BlockingIOError(errno.EAGAIN, "the UDP send buffer is full")
        payload = bytes(data)  # the caller may reuse its buffer before the link writes it
        self.output.append((self._headers(remote, endpoint.local_port, port, payload),
                            payload, 0))
        self.counters["udp_out_datagrams"] += 1
        endpoint.sending += len(payload) + DATAGRAM_COST
        self.sending[endpoint] = None

    def _headers(self, remote: bytes, sport: int, dport: int, payload: bytes) -> bytes:
        """The IP and UDP headers of one datagram, the checksum over the payload."""
        local6 = self.address6
        if len(remote) == 16 and local6 is not None:
            length = udp.HEADER_LEN + len(payload)
            return ipv6.HEADER.pack(ipv6.VERSION_WORD, length, PROTO_UDP,
                                    ipv6.DEFAULT_HOP_LIMIT, local6, remote) + udp.HEADER.pack(
                sport, dport, length, udp.checksum(local6, remote, sport, dport, payload))
        ip = self._routes.get(remote)
        if ip is None:
            if len(self._routes) >= MAX_CACHED_PEERS:
                self._routes.clear()
            ip = self._routes[remote] = ipv4.HeaderTemplate(self.address, remote, PROTO_UDP)
        length = udp.HEADER_LEN + len(payload)
        return ip.build(length) + udp.HEADER.pack(
            sport, dport, length, udp.checksum(self.address, remote, sport, dport, payload))

    # ------------------------------------------------------------------ the stack's

    def receive(self, src: bytes, dst: bytes, datagram: Bytes, payload: Bytes, now: float,
                trusted: bool) -> None:
        """A UDP datagram for us: `datagram` is the whole IP datagram (what a port
        unreachable quotes), `payload` its UDP part. Raises MalformedPacket (counted in
        udp_in_errors first) for the stack to count by reason."""
        counters = self.counters
        try:
            dgram = udp.parse(payload, src, dst, verify=not trusted)
        except MalformedPacket as exc:
            counters["udp_in_errors"] += 1
            if exc.reason == "udp_bad_checksum":
                counters["udp_in_csum_errors"] += 1
            raise
        endpoint = self.ports.lookup(dgram.dport, src, dgram.sport)
        if endpoint is None:
            counters["udp_no_ports"] += 1
            self._port_unreachable(src, datagram, now)
            return
        if not endpoint.deliver(bytes(dgram.payload), src, dgram.sport):
            counters["udp_rcvbuf_errors"] += 1
            counters["udp_in_errors"] += 1
            return
        counters["udp_in_datagrams"] += 1
        self.ready[endpoint] = None

    def _port_unreachable(self, src: bytes, datagram: Bytes, now: float) -> None:
        if not self.icmp_limit.allow(src, now):
            self.counters["icmp_rate_limited"] += 1
            return
        local6 = self.address6
        if len(src) == 16:
            if local6 is None:
                return
            reply = icmpv6.unreachable(icmpv6.PORT_UNREACHABLE, datagram, local6, src)
            self.output.append((ipv6.build(local6, src, ipv6.PROTO_ICMPV6, reply), b"", 0))
            self.counters["icmp6_out"] += 1
            self.counters["icmp_port_unreachable_out"] += 1
            return
        message = icmp.unreachable(icmp.PORT_UNREACHABLE, datagram)
        self.output.append((ipv4.build(self.address, src, PROTO_ICMP, message), b"", 0))
        self.counters["icmp_out"] += 1
        self.counters["icmp_port_unreachable_out"] += 1

    def icmp_error(self, error: icmp.IcmpError, now: float) -> None:
        """An ICMP error quoting one of our datagrams (its source is our address). UDP has
        no sequence number to check it by (RFC 5927 5.1): the quoted ports and, for a
        connected endpoint, its remote are all there is."""
        counters = self.counters
        sport, dport = _QUOTED_PORTS.unpack_from(error.transport)
        endpoint = self.ports.lookup(sport, error.dst, dport)
        if endpoint is None:
            counters["icmp_unmatched"] += 1
            return
        v6 = isinstance(error, icmpv6.Icmpv6Error)
        if error.fragmentation_needed:
            if error.mtu < ipv4.MIN_MTU and not v6:  # IPv6's is raised to 1280 (RFC 8201)
                counters["icmp_bad_mtu"] += 1
                return
            self._learn_path_mtu(error.dst, error.mtu, now)
        if v6:
            hard = error.fragmentation_needed or (
                error.icmp_type == icmpv6.DEST_UNREACHABLE and error.code in HARD_UNREACHABLE6)
        else:
            hard = error.icmp_type == icmp.DEST_UNREACHABLE and (
                error.code in HARD_UNREACHABLE or error.fragmentation_needed)
        if not endpoint.connected or not hard:
            counters["udp_icmp_ignored"] += 1
            return
        counters["icmp_errors_accepted"] += 1
        endpoint.report(error.errno, error.text)
        self.ready[endpoint] = None

    def deliver(self, on_error: Callable[[Exception], None]) -> int:
        """The pass's arrivals and errors to each endpoint's owner, which takes them and may
        answer within the pass (an owner-less endpoint keeps them queued); how many owners
        were called. An owner that raises is reported to `on_error`, the rest go on."""
        ready, self.ready = self.ready, {}
        called = 0
        for endpoint in ready:
            on_ready = endpoint.on_ready
            if on_ready is None or endpoint.closed:
                continue
            called += 1
            try:
                on_ready(endpoint)
            except Exception as exc:
                on_error(exc)
        return called

    def sent(self) -> None:
        """The pass is over and the link takes its output: the send charges are freed."""
        for endpoint in self.sending:
            endpoint.sending = 0
        self.sending = {}
