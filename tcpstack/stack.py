"""The network stack, sans-I/O: demultiplexes IP packets to connections and listeners.

Its unit of work is the service pass, always in this order (as aioquic's connection does):
the packets of one batch in (`service`), or the timers that are due (`on_timer`); then the
connections' events to the application's `on_event` handler, whose reactions (read, write,
close) are part of the same pass; then one flush of every connection that changed, so one
batch draws one burst: one ACK carrying the window the reads opened, not an ACK and then a
window update. Afterwards `output` holds the IP packets for the link, each with its GSO size
(OutPacket; the link adds its own header). A connection marks itself
changed through the `on_change` hook the stack installs, and a change outside a pass calls
`request_service`, so no caller has to remember to flush. With no handler, events stay in
`events` for the caller to take. An internal error costs one packet, or the connection whose
timer failed, never the stack: it is counted in `internal_errors`.
Timers are a heap of (deadline, connection) entries; `next_deadline()` says when to call
`on_timer`. Nothing here reads a clock or a file descriptor.
"""

from __future__ import annotations

import dataclasses
import errno
import heapq
import itertools
import logging
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from tcpstack.net import icmp, icmpv6, ipv4, ipv6
from tcpstack.net.checksum import Bytes, ones_complement_sum
from tcpstack.net.errors import MalformedPacket
from tcpstack.net.fragments import FragmentReassembler
from tcpstack.net.ipv4 import PROTO_ICMP, PROTO_TCP
from tcpstack.net.socket_errors import ConnectionLimit
from tcpstack.net.udp import PROTO_UDP
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp import syncookies
from tcpstack.tcp.challenge import ChallengeAckLimit
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import Closed, Event, Reset
from tcpstack.tcp.isn import IsnGenerator
from tcpstack.tcp.listener import Listener, Verdict
from tcpstack.tcp.reset import reset_reply
from tcpstack.tcp.segment import HEADER_LEN, OutSegment
from tcpstack.tcp.seq import MASK
from tcpstack.tcp.state import State
from tcpstack.tcp.syncookies import SynCookies
from tcpstack.udp.endpoint import DEFAULT_RCVBUF, DEFAULT_SNDBUF, UdpEndpoint
from tcpstack.udp.layer import UdpLayer

log = logging.getLogger("tcpstack")

ConnKey = tuple[bytes, int, int]  # (remote address, remote port, local port)
# An IP packet for the link, (headers, payload, GSO size): the IP and TCP headers as one
# bytes object, then the payload as the connection's send buffer holds it (a view, which the
# link writes behind the headers with one writev, so the payload is not copied into a packet
# first; `packet_bytes` joins them for whoever needs the whole packet). The GSO size is 0
# when the checksums are complete; otherwise (only where the link offloads) the TCP checksum
# holds just the pseudo-header sum, for the link to finish, and a payload over the GSO size
# is for the link to cut to it. The views pin the send buffer's storage (send_buffer.py):
# a link writes the packets of a pass before the next, and a holder that keeps them
# longer costs that buffer a copy.
OutPacket = tuple[bytes, Bytes, int]
# The IPv4 header and the TCP header without options, packed at once (one struct call).
_IPV4_TCP = struct.Struct(ipv4.HEADER.format + tcpseg.HEADER.format.lstrip("!"))
_pack_ipv4_tcp = _IPV4_TCP.pack
_unpack_ipv4_tcp = _IPV4_TCP.unpack_from
_IPV4_TCP_LEN = _IPV4_TCP.size
_IP_HEADER_LEN = ipv4.HEADER_LEN
_DF = ipv4.FLAG_DF
# The same for IPv6 (no options, no checksum in its header; the hop limit a template's).
_IPV6_TCP = struct.Struct(ipv6.HEADER.format + tcpseg.HEADER.format.lstrip("!"))
_pack_ipv6_tcp = _IPV6_TCP.pack
_unpack_ipv6_tcp = _IPV6_TCP.unpack_from
_IPV6_TCP_LEN = _IPV6_TCP.size
_IPV6_WORD = ipv6.VERSION_WORD
_HOP_LIMIT = ipv6.DEFAULT_HOP_LIMIT
_PROTO_ICMPV6 = ipv6.PROTO_ICMPV6
EventHandler = Callable[[Connection, Event], None]
EPHEMERAL_PORTS = range(32768, 61000)  # Linux's ip_local_port_range
DEFAULT_MTU = 1500
# Path MTU discovery (RFC 1191): an MTU learnt from ICMP is kept this long per destination
# (Linux's ip_rt_mtu_expires, 10 minutes), never below Linux's ip_rt_min_pmtu.
PATH_MTU_EXPIRES = 600.0
MIN_PATH_MTU = 552
TCP_IP_HEADERS = 40
TCP_IPV6_HEADERS = 60  # the IPv6 header is 40 bytes: the MSS over IPv6 is the MTU less 60
_QUOTED_TCP = struct.Struct("!HHI")  # the quoted segment's ports and sequence number
PORT_TABLE_LENGTH = 256  # RFC 6056 algorithm 4's table of counters
# Rounds of events and reactions within one pass; what is left over goes to the next pass.
MAX_EVENT_ROUNDS = 16
MAX_LOGGED_INTERNAL_ERRORS = 10
# Per peer address caches (pseudo-header sums, header templates): emptied when they reach
# this size, so a flood from spoofed sources cannot grow them without bound.
MAX_CACHED_PEERS = 4096
_SYN_RCVD, _SYN_SENT, _CLOSED = State.SYN_RCVD, State.SYN_SENT, State.CLOSED
_TIME_WAIT = State.TIME_WAIT
# A listener's verdicts, and the counter each is counted under, for the SYN path (a
# member's `value` is a Python-level property on 3.11, as its lookup on the class is).
_OPEN, _COOKIE, _RESET = Verdict.OPEN, Verdict.COOKIE, Verdict.RESET
_VERDICT_COUNTERS = {verdict: verdict.value for verdict in Verdict}
_RESERVED_BITS = 0x0F00  # the header's four reserved bits, in the offset-and-flags word
_SYN_ACK_RST_FIN = tcpseg.SYN | tcpseg.ACK | tcpseg.RST | tcpseg.FIN
_SYN_FIN = tcpseg.SYN | tcpseg.FIN
# Where a connection the application closed may linger, waiting on its peer.
ORPHANED_STATES = frozenset({State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING,
                             State.LAST_ACK})
_ESTABLISHED, _CLOSE_WAIT = State.ESTABLISHED, State.CLOSE_WAIT


def packet_bytes(packet: OutPacket) -> bytes:
    """The whole IP packet of an OutPacket, headers and payload joined (a copy)."""
    head, payload, _ = packet
    return head + payload if payload else head


class PortInUse(Exception):
    pass


class NetworkStack:
    def __init__(self, address: bytes, config: TcpConfig | None = None,
                 isn: IsnGenerator | None = None, *, offload: bool = False,
                 ephemeral_ports: range = EPHEMERAL_PORTS,
                 cookies: SynCookies | None = None, mtu: int = DEFAULT_MTU,
                 address6: bytes | None = None) -> None:
        """`offload`: the link takes partial checksums and segments of up to 64 KB, which it
        cuts itself (a TUN with the virtio-net header): a capability of the link.
        `ephemeral_ports`: where active opens take their local port (a worker's own slice
        of the range when several stacks share one address, api/workers.py).
        `mtu`: the link's, beyond which a UDP datagram is refused (EMSGSIZE).
        `address6`: the stack's IPv6 address (16 bytes), or None to serve IPv4 only. The
        family of every peer is the length of its address (4 or 16 bytes); listeners take
        SYNs of both, as a dual-stack socket does."""
        self.address = address
        if address6 is not None and len(address6) != 16:
            raise ValueError(f"an IPv6 address is 16 bytes, not {len(address6)}")
        self.address6 = address6
        # The TCP settings of IPv6 connections, by the IPv4 settings they derive from: the
        # same but for an MSS 20 bytes smaller (the larger IP header).
        self._configs6: dict[int, tuple[TcpConfig, TcpConfig]] = {}
        self.config = config or TcpConfig()
        self._isn = isn or IsnGenerator()
        self.cookies = cookies or SynCookies()
        self.connections: dict[ConnKey, Connection] = {}
        self.listeners: dict[int, Listener] = {}
        self.counters: Counter[str] = Counter()
        # RFC 5961 7: one budget of challenge ACKs for every connection of the stack.
        self.challenges = ChallengeAckLimit(self.config.challenge_ack_limit)
        self.output: list[OutPacket] = []
        self.events: list[tuple[Connection, Event]] = []
        self.on_transition: Callable[[Connection, State, State], None] | None = None
        self.on_event: EventHandler | None = None  # the application, fed within each pass
        self.request_service: Callable[[], None] | None = None  # "run a pass soon" (the driver)
        self.last_internal_error: Exception | None = None  # the newest, for logs and tests
        # Events handed to on_event so far: the driver watches it to know when a pass gave
        # the application something to react to (a task it woke may write next).
        self.events_delivered = 0
        self._in_pass = False
        self._dirty: dict[Connection, None] = {}
        # While a batch's packets are received: the pure ACKs held to be taken as one
        # (Connection.acks_together), in their order, by connection; taken before anything
        # else reaches the connection, and at the batch's end.
        self._held: dict[Connection, list[tcpseg.Segment]] | None = None
        self._timers: list[tuple[float, int, Connection]] = []
        self._scheduled: dict[Connection, float] = {}
        self._tiebreak = itertools.count()
        self._pseudo: dict[bytes, int] = {}
        if not ephemeral_ports:
            raise ValueError("no ephemeral ports to open connections from")
        self.ephemeral_ports = ephemeral_ports
        self._port_table = [0] * PORT_TABLE_LENGTH
        self.offload = offload
        # By peer address: its IPv4 header template and pseudo-header sum, for _frame; an
        # IPv6 peer's pseudo-header sum, for _frame6.
        self._routes: dict[bytes, tuple[ipv4.HeaderTemplate, int]] = {}
        self._routes6: dict[bytes, int] = {}
        # Peer addresses, each as one object that all connections from the peer share
        # (every packet's address is a bytes object of its own, 37 bytes for IPv4).
        self._peer_addresses: dict[bytes, bytes] = {}
        # By peer address: its timestamp offset (the ISN generator's keyed hash of the two
        # addresses, the same for every connection with the peer: one hash per peer, not
        # one per connection opened).
        self._ts_offsets: dict[bytes, int] = {}
        # IPv4 datagrams that arrive in fragments, until they are whole (bounded memory).
        self._fragments = FragmentReassembler(self._count)
        # Connections the application let go that are still finishing, oldest first, and
        # those beyond the limit, to reset at the next flush.
        self._orphans: dict[Connection, None] = {}
        self._orphans_over: list[Connection] = []
        # Connections in TIME_WAIT, oldest first: past `max_time_wait` the next flush ends
        # the oldest early.
        self._time_wait: dict[Connection, None] = {}
        # By peer address: the path MSS an ICMP "fragmentation needed" taught, until when.
        self._path_mss: dict[bytes, tuple[int, float]] = {}
        # Shutdown: what each connection had received when close_all ran.
        self._received_at_close: dict[Connection, int] = {}
        # The hooks every connection gets, bound once: a bound method made per connection
        # would be two objects more on each of thousands of idle connections.
        self._on_change_hook = self._changed
        self._on_transition_hook = self._transition_hook
        # UDP's endpoints and demultiplexing (udp/layer.py), writing onto our output.
        self.udp = UdpLayer(address, self.counters, self.output, ephemeral_ports, mtu,
                            self._udp_path_mtu, self._learn_path_mtu)
        self.udp.address6 = address6

    # ------------------------------------------------------------------ the service pass

    def service(self, packets: Iterable[Bytes], now: float,
                trusted: Sequence[bool] | None = None) -> None:
        """One pass for a batch of IP packets from the link (none, to flush what the
        application changed): receive them all, deliver the events, then flush. `trusted`,
        one flag per packet: the link vouches for its transport checksum (offload)."""
        self._in_pass = True
        try:
            if packets:  # none: the pass that flushes what the application did
                receive = self.receive
                flags: Iterable[bool] = itertools.repeat(False) if trusted is None else trusted
                held = self._held = {}
                try:
                    for packet, vouched in zip(packets, flags, strict=False):
                        try:
                            receive(packet, now, vouched)
                        except Exception as exc:  # a bug must cost one packet, not the stack
                            self._internal_error(exc, "processing a packet (dropped)")
                finally:
                    self._held = None
                for conn, segs in held.items():
                    try:
                        self._take_held(conn, segs, now)
                    except Exception as exc:  # as for a packet: dropped, the stack goes on
                        self._internal_error(exc, "processing a packet (dropped)")
            self._finish_pass(now)
        finally:
            self._in_pass = False

    def _take_held(self, conn: Connection, segs: list[tcpseg.Segment], now: float) -> None:
        self.counters["acks_coalesced"] += len(segs) - 1
        conn.receive_acks(segs, now)

    def on_timer(self, now: float) -> None:
        """One pass for the timers due at `now`: fire them, deliver the events, flush. A
        timer handler that raises costs its connection (reset), never the others' timers."""
        self._in_pass = True
        try:
            timers = self._timers
            while timers and timers[0][0] <= now:
                deadline, _, conn = heapq.heappop(timers)
                if self._scheduled.get(conn) != deadline:
                    continue
                del self._scheduled[conn]
                if conn.deadline is None or conn.deadline > now:
                    self._collect(conn)  # it moved its deadline on: only re-arm
                    continue
                try:
                    conn.on_timer(now)
                except Exception as exc:
                    self._internal_error(exc, "handling a timer (connection reset)")
                    self._fail(conn, now)
                    continue
                self._dirty[conn] = None
            self._finish_pass(now)
        finally:
            self._in_pass = False

    def _finish_pass(self, now: float) -> None:
        """The rest of a pass: events to the application, which may react, then one flush."""
        udp = self.udp
        if udp.ready:  # datagrams first: they need no flush to be answered
            self.events_delivered += udp.deliver(self._udp_owner_failed)
        handler = self.on_event
        for _ in range(MAX_EVENT_ROUNDS):
            self._take_events()
            if handler is None or not self.events:
                break
            events = self.events
            self.events = []
            self.events_delivered += len(events)
            for conn, event in events:
                try:
                    handler(conn, event)
                except Exception as exc:
                    self._internal_error(exc, "delivering an event to the application")
        self.flush(now)
        if udp.sending:
            udp.sent()
        if handler is not None and self.events and self.request_service is not None:
            self.request_service()  # more rounds than one pass allows: the next pass goes on

    def _take_events(self) -> None:
        append = self.events.append
        for conn in self._dirty:
            if conn.events:
                for ev in conn.events:  # mostly one: a loop costs less than a generator
                    append((conn, ev))
                conn.events = ()  # no list kept while there are none (Connection.events)

    def _changed(self, conn: Connection) -> None:
        """A connection's on_change hook: the application called into it."""
        self._dirty[conn] = None
        if not self._in_pass and self.request_service is not None:
            self.request_service()

    def _internal_error(self, exc: Exception, doing: str) -> None:
        counters = self.counters
        counters["internal_errors"] += 1
        self.last_internal_error = exc
        if counters["internal_errors"] <= MAX_LOGGED_INTERNAL_ERRORS:
            log.error("internal error while %s", doing, exc_info=exc)

    def _fail(self, conn: Connection, now: float) -> None:
        """Nothing about `conn` can be trusted after a bug in its code: reset it (the peer
        gets a RST where ABORT sends one) and tell the application it was reset."""
        conn.add_event(Reset("internal error"))
        try:
            conn.abort(now)
        except Exception as exc:
            self._internal_error(exc, "resetting a failed connection")
        conn.error = "internal error"
        self._dirty.pop(conn, None)
        if conn.state is State.CLOSED:
            self._collect(conn)  # its RST and events; it leaves the tables
            return
        # ABORT raised as well, or leaves this state alone (TIME_WAIT): drop it unannounced.
        conn.output = ()
        conn.add_event(Closed(conn.error))
        self.events.extend((conn, ev) for ev in conn.events)
        conn.events = ()
        key = (conn.remote_addr, conn.remote_port, conn.local_port)
        if self.connections.get(key) is conn:
            del self.connections[key]
        self._scheduled.pop(conn, None)

    # ------------------------------------------------------------------ input

    def receive(self, packet: Bytes, now: float, checksum_trusted: bool = False) -> None:
        """One IP packet from the link; a malformed one is counted by reason and dropped.
        `checksum_trusted`: the link vouches for the transport checksum (offload)."""
        counters = self.counters
        if len(packet) >= _IPV4_TCP_LEN and packet[0] == 0x45 and packet[9] == PROTO_TCP:
            self._receive_ipv4_tcp(packet, now, checksum_trusted)
            return
        if packet and packet[0] >> 4 == 6:
            self._receive_ipv6(packet, now, checksum_trusted)
            return
        try:
            try:
                ip = ipv4.parse(packet)
            except MalformedPacket as exc:
                if exc.reason != "ip_fragment":
                    raise
                self._receive_fragment(packet, now)
                return
            if ip.dst != self.address:
                counters["ip_not_for_us"] += 1
                return
            if ip.proto == PROTO_TCP:
                self._receive_tcp(ip.src, ip.payload, now, checksum_trusted)
            elif ip.proto == PROTO_ICMP:
                self._check_source(ip.src)  # no echo to a broadcast source (smurf)
                self._receive_icmp(ip, now)
            elif ip.proto == PROTO_UDP:
                self._check_source(ip.src)  # nor a port unreachable (RFC 1122 3.2.2)
                self.udp.receive(ip.src, ip.dst, memoryview(packet)[
                    :ip.header_len + len(ip.payload)], ip.payload, now, checksum_trusted)
            else:
                counters["ip_unknown_protocol"] += 1
        except MalformedPacket as exc:
            self._malformed(exc)

    def _receive_ipv4_tcp(self, packet: Bytes, now: float, trusted: bool) -> None:
        """`receive` for nearly every packet: IPv4 without options, carrying TCP. Both
        fixed headers in one unpack, and the checks of ipv4.parse (strict) and
        tcpseg.parse in their order, with the same drop reasons; no IPv4Packet."""
        (_vihl, _tos, total, _ident, frag, _ttl, _proto, _csum, src, dst, sport, dport, seq,
         ack, off_flags, window, _tcsum, _urg) = _unpack_ipv4_tcp(packet)
        try:
            n = len(packet)
            if total < ipv4.HEADER_LEN:
                raise MalformedPacket("ip_bad_length", f"total length {total} below header 20")
            if total > n:
                raise MalformedPacket("ip_truncated", f"total length {total} beyond {n} bytes read")
            view = memoryview(packet)
            if int.from_bytes(view[:ipv4.HEADER_LEN], "big") % 0xFFFF != 0:
                raise MalformedPacket("ip_bad_checksum")
            if frag & (ipv4.FLAG_MF | ipv4.OFFSET_MASK):
                self._receive_fragment(packet, now)  # held until the datagram is whole
                return
            if dst != self.address:
                self.counters["ip_not_for_us"] += 1
                return
            data = view[ipv4.HEADER_LEN:total]
            tcp_len = total - ipv4.HEADER_LEN
            if tcp_len < HEADER_LEN:
                raise MalformedPacket("tcp_truncated", f"{tcp_len} bytes")
            pseudo = self._pseudo.get(src)
            if pseudo is None:  # a source not seen lately: is it one a host can have?
                pseudo = self._new_source(src)
            if not trusted:
                words = int.from_bytes(data, "big")  # ones_complement_sum, inline
                if tcp_len & 1:
                    words <<= 8  # an odd last byte is the high half of a word
                if (words + pseudo + tcp_len) % 0xFFFF:
                    raise MalformedPacket("tcp_bad_checksum")
            seg = tcpseg.from_fields(data, sport, dport, seq, ack, off_flags, window)
            if off_flags & _RESERVED_BITS:
                self.counters["tcp_reserved_bits"] += 1  # counted, ignored (RFC 9293 3.1)
            self._demux_tcp(src, seg, now)
        except MalformedPacket as exc:
            self._malformed(exc)

    def _receive_ipv6(self, packet: Bytes, now: float, trusted: bool) -> None:
        """An IPv6 packet. TCP right after the fixed header (nearly every packet) takes
        the one-unpack path, with ipv6.parse's checks in its order and its drop reasons;
        extension headers and ICMPv6 take the strict parser."""
        counters = self.counters
        local = self.address6
        try:
            if local is None:
                counters["ip6_disabled"] += 1  # no IPv6 address: the kernel's chatter
                return
            n = len(packet)
            if n < _IPV6_TCP_LEN or packet[6] != PROTO_TCP:
                ip = ipv6.parse(packet)
                if ip.dst != local:
                    counters["ip6_multicast" if ip.dst[0] == 0xFF else "ip6_not_for_us"] += 1
                    return
                if ip.proto == PROTO_TCP:
                    self._receive_tcp(ip.src, ip.payload, now, trusted)
                elif ip.proto == _PROTO_ICMPV6:
                    self._check_source(ip.src)  # no echo to a multicast source
                    self._receive_icmpv6(ip, now)
                elif ip.proto == PROTO_UDP:
                    self._check_source(ip.src)  # nor a port unreachable
                    self.udp.receive(ip.src, ip.dst, memoryview(packet)[
                        :ip.header_len + len(ip.payload)], ip.payload, now, trusted)
                else:
                    counters["ip6_unknown_protocol"] += 1
                return
            (_word, length, _nxt, _hops, src, dst, sport, dport, seq, ack, off_flags, window,
             _tcsum, _urg) = _unpack_ipv6_tcp(packet)
            if length == 0:
                raise MalformedPacket("ip6_bad_length", "payload length 0 (jumbogram)")
            end = ipv6.HEADER_LEN + length
            if end > n:
                raise MalformedPacket("ip6_truncated", f"payload length {length} beyond "
                                      f"{n - ipv6.HEADER_LEN} bytes read")
            if dst != local:
                counters["ip6_multicast" if dst[0] == 0xFF else "ip6_not_for_us"] += 1
                return
            if length < HEADER_LEN:
                raise MalformedPacket("tcp_truncated", f"{length} bytes")
            data = memoryview(packet)[ipv6.HEADER_LEN:end]
            pseudo = self._pseudo.get(src)
            if pseudo is None:
                pseudo = self._new_source(src)
            if not trusted and (ones_complement_sum(data) + pseudo + length) % 0xFFFF:
                raise MalformedPacket("tcp_bad_checksum")
            seg = tcpseg.from_fields(data, sport, dport, seq, ack, off_flags, window)
            if off_flags & _RESERVED_BITS:
                counters["tcp_reserved_bits"] += 1
            self._demux_tcp(src, seg, now)
        except MalformedPacket as exc:
            self._malformed(exc)

    def _receive_icmpv6(self, ip: ipv6.IPv6Packet, now: float) -> None:
        counters = self.counters
        counters["icmp6_in"] += 1
        icmpv6.verify(ip.payload, ip.src, ip.dst)
        local = ip.dst
        reply = icmpv6.echo_reply(ip.payload, local, ip.src)
        if reply is not None:
            self.output.append((ipv6.build(local, ip.src, _PROTO_ICMPV6, reply), b"", 0))
            counters["icmp6_out"] += 1
            return
        error = icmpv6.error_of(ip.payload)
        if error is not None:
            self._icmp_error(error, now)

    def _local_address(self, remote: bytes) -> bytes:
        """Our address in the family of `remote` (4 or 16 bytes)."""
        if len(remote) == 16:
            if self.address6 is None:
                raise ValueError("this stack has no IPv6 address")
            return self.address6
        return self.address

    def _family_config(self, config: TcpConfig, remote: bytes) -> TcpConfig:
        """`config` as an IPv6 connection to `remote` uses it: the MSS 20 bytes smaller
        (an MTU less 60, not 40), made once per configuration and kept."""
        if len(remote) != 16:
            return config
        known = self._configs6.get(id(config))
        if known is not None and known[0] is config:
            return known[1]
        if len(self._configs6) >= MAX_CACHED_PEERS:
            self._configs6.clear()  # per-connection configurations (open_connection's)
        config6 = dataclasses.replace(config, mss=config.mss - (TCP_IPV6_HEADERS
                                                                 - TCP_IP_HEADERS))
        self._configs6[id(config)] = (config, config6)
        return config6

    def _malformed(self, exc: MalformedPacket) -> None:
        counters = self.counters
        counters[exc.reason] += 1
        counters["in_errors"] += 1
        log.debug("dropped packet: %s", exc)

    def _receive_fragment(self, packet: Bytes, now: float) -> None:
        """A fragment (its header already checked by ipv4.parse): held until its datagram is
        whole (net/fragments.py), which then takes the normal path."""
        counters = self.counters
        counters["ip_frag_in"] += 1
        if bytes(packet[16:20]) != self.address:
            counters["ip_not_for_us"] += 1
            return
        ihl = (packet[0] & 0x0F) * 4
        total = int.from_bytes(packet[2:4], "big")
        whole = self._fragments.add(packet[:ihl], packet[ihl:total], now)
        if whole is not None:
            self.receive(whole, now)

    def _receive_icmp(self, ip: ipv4.IPv4Packet, now: float) -> None:
        self.counters["icmp_in"] += 1
        reply = icmp.echo_reply(ip.payload)
        if reply is not None:
            self.output.append((ipv4.build(self.address, ip.src, PROTO_ICMP, reply), b"", 0))
            self.counters["icmp_out"] += 1
            return
        error = icmp.error_of(ip.payload)
        if error is not None:
            self._icmp_error(error, now)

    def _count(self, reason: str) -> None:
        self.counters[reason] += 1

    def _icmp_error(self, error: icmp.IcmpError, now: float) -> None:
        """An ICMP error about one of our segments (RFC 5927): believed only when it quotes
        a connection of ours and a sequence number in flight on it; the rest is counted."""
        counters = self.counters
        v6 = len(error.dst) == 16
        local = self.address6 if v6 else self.address
        if error.proto == PROTO_UDP and error.src == local:
            self.udp.icmp_error(error, now)
            return
        if error.proto != PROTO_TCP or error.src != local:
            counters["icmp_unmatched"] += 1
            return
        sport, dport, seq = _QUOTED_TCP.unpack_from(error.transport)
        conn = self.connections.get((error.dst, dport, sport))
        if conn is None:
            counters["icmp_unmatched"] += 1
            return
        held = self._held.pop(conn, None) if self._held is not None else None
        if held is not None:  # those came first
            self._take_held(conn, held, now)
        path_mss = None
        if error.fragmentation_needed and v6:
            # RFC 8201 4: the path MTU is never taken below IPv6's minimum link MTU; a
            # smaller one counts as that minimum (as Linux's rt6_do_update_pmtu has it).
            if error.mtu < ipv6.MIN_MTU:
                counters["icmp6_small_mtu"] += 1
            path_mss = max(error.mtu, ipv6.MIN_MTU) - TCP_IPV6_HEADERS
        elif error.fragmentation_needed:
            if error.mtu < ipv4.MIN_MTU:
                counters["icmp_bad_mtu"] += 1
                return
            # Linux's floor (ip_rt_min_pmtu): a forged tiny MTU must not cost a segment
            # per few bytes.
            path_mss = max(error.mtu, MIN_PATH_MTU) - TCP_IP_HEADERS
        if not conn.icmp_error(seq, now, error=error.text, errno=error.errno,
                               ends_attempt=error.ends_an_attempt, path_mss=path_mss):
            counters["icmp_out_of_window"] += 1
            return
        counters["icmp_errors_accepted"] += 1
        if path_mss is not None and conn.snd.path_mss == path_mss:
            if len(self._path_mss) >= MAX_CACHED_PEERS:
                self._path_mss.clear()  # bounded whatever arrives, as the route cache is
            self._path_mss[error.dst] = (path_mss, now + PATH_MTU_EXPIRES)
        self._dirty[conn] = None

    def _path_mss_for(self, remote: bytes, now: float) -> int | None:
        """What an ICMP "fragmentation needed" taught about the path to `remote`, while it
        holds (RFC 1191 6.3: an estimate ages, so that a larger path MTU is found again)."""
        known = self._path_mss.get(remote)
        if known is None:
            return None
        if now >= known[1]:
            del self._path_mss[remote]
            return None
        return known[0]

    def _receive_tcp(self, src: bytes, payload: memoryview, now: float, trusted: bool) -> None:
        """A TCP segment of either family off the strict parsers (`src` 4 or 16 bytes)."""
        pseudo = self._pseudo.get(src)
        if pseudo is None:
            pseudo = self._new_source(src)
        seg = tcpseg.parse(payload, pseudo, verify=not trusted)
        if payload[12] & (_RESERVED_BITS >> 8):  # counted once the segment is sound
            self.counters["tcp_reserved_bits"] += 1
        self._demux_tcp(src, seg, now)

    def _check_source(self, src: bytes) -> None:
        if len(src) == 16:
            if src == self.address6:
                raise MalformedPacket("ip_land", "our own address as the source")
            reason = ipv6.bad_source(src)
            if reason is not None:
                raise MalformedPacket("ip6_bad_source", f"a {reason} source")
            return
        first = src[0]
        if src == self.address:
            raise MalformedPacket("ip_land", "our own address as the source")
        if first == 0 or first == 127 or first >= 224:
            raise MalformedPacket("ip_bad_source", f"source {'.'.join(map(str, src))}")

    def _new_source(self, src: bytes) -> int:
        """A TCP source not in the cache: refused if no host can have it (RFC 1122 3.2.1.3:
        this network, loopback, multicast, broadcast and reserved addresses; our own, as in
        the LAND attack), else its pseudo-header sum, cached."""
        self._check_source(src)
        if len(self._pseudo) >= MAX_CACHED_PEERS:
            self._pseudo.clear()
        pseudo = self._pseudo[src] = ipv4.pseudo_header_sum(src, self._local_address(src),
                                                            PROTO_TCP)
        return pseudo

    def _demux_tcp(self, src: bytes, seg: tcpseg.Segment, now: float) -> None:
        counters = self.counters
        counters["segs_in"] += 1
        flags = seg.flags
        if flags & tcpseg.RST:
            counters["rst_in"] += 1
        if not flags & _SYN_ACK_RST_FIN:
            counters["tcp_no_flags"] += 1  # a NULL scan: RFC 9293 still answers it
        elif flags & _SYN_FIN == _SYN_FIN:
            counters["tcp_syn_fin"] += 1
        conn = self.connections.get((src, seg.sport, seg.dport))
        iss = None
        if conn is not None:
            if conn.state is _SYN_RCVD and self._accept_queue_full(conn, seg):
                return
            held = self._held
            if held is not None:
                before = held.get(conn)
                if flags == tcpseg.ACK and not seg.payload and conn.acks_together(
                        seg, None if before is None else before[-1]):
                    if before is None:
                        held[conn] = [seg]
                    else:
                        before.append(seg)
                    self._dirty[conn] = None
                    return
                if before is not None:  # those came first
                    del held[conn]
                    self._take_held(conn, before, now)
            conn.receive(seg, now)
            self._dirty[conn] = None
            if conn.reopen_iss is None:
                return
            if seg.dport not in self.listeners:
                conn.decline_reopen()
                return
            # The SYN ends TIME_WAIT: it now goes to the listener as a new connection.
            iss = conn.reopen_iss
            conn.reopen(now)
            del self.connections[(src, seg.sport, seg.dport)]
        listener = self.listeners.get(seg.dport)
        if listener is None:
            self._reply_reset(src, seg)
            return
        verdict = listener.classify(seg)
        if verdict is _COOKIE and iss is not None:
            verdict = _OPEN  # a reopened TIME_WAIT keeps its ISN (as Linux does)
        elif (verdict is _RESET and listener.cookies_until >= now
              and self._open_from_cookie(listener, src, seg, now)):
            return
        if verdict is _OPEN and self._at_connection_limit():
            return
        self.counters[_VERDICT_COUNTERS[verdict]] += 1
        if verdict is _OPEN:
            self._open_passive(listener, src, seg, now, iss)
        elif verdict is _COOKIE:
            self._send_cookie(listener, src, seg, now)
        elif verdict is _RESET:
            self._reply_reset(src, seg)

    def _at_connection_limit(self) -> bool:
        """Memory stays bounded whatever arrives: at `max_connections` a new one is refused
        (a SYN dropped, as a full SYN queue drops it, and counted)."""
        if len(self.connections) < self.config.max_connections:
            return False
        self.counters["conn_limit_drops"] += 1
        return True

    def _accept_queue_full(self, conn: Connection, seg: tcpseg.Segment) -> bool:
        """The ACK that would complete a passive open while its listener's accept queue is
        full is dropped (Linux's ListenOverflows): the connection stays in SYN_RCVD, and
        our SYN-ACK's retransmission draws the ACK again later."""
        listener = conn.listener
        if (isinstance(listener, Listener) and listener.accept_full
                and seg.flags & (tcpseg.ACK | tcpseg.RST | tcpseg.SYN) == tcpseg.ACK):
            self.counters["listen_overflows"] += 1
            return True
        return False

    def _send_cookie(self, listener: Listener, src: bytes, seg: tcpseg.Segment,
                     now: float) -> None:
        """A SYN the SYN queue has no room for: a stateless SYN-ACK (tcp/syncookies.py)."""
        local = self._local_address(src)
        reply = self.cookies.synack(self._family_config(listener.config or self.config, src),
                                    local, src, seg, self._ts_offset(local, src), now)
        self._frame(src, seg.dport, seg.sport, [reply])
        self.counters["segs_out"] += 1
        listener.cookies_until = now + syncookies.LIFETIME

    def _open_from_cookie(self, listener: Listener, src: bytes, seg: tcpseg.Segment,
                          now: float) -> bool:
        """An ACK for a listener that has sent cookies lately: if it returns a valid one,
        the connection opens as the SYN the cookie stands for would have (and the ACK,
        with any data on it, is its first segment); if not, it is counted, and the caller
        answers it as LISTEN answers any ACK (RFC 9293 3.10.7.2: a RST). An accept queue
        without room drops it."""
        if seg.flags & (tcpseg.SYN | tcpseg.RST):
            return False
        config = listener.config or self.config
        syn = self.cookies.syn_of(self._family_config(config, src), self._local_address(src),
                                  src, seg, now)
        if syn is None:
            self.counters["syncookies_failed"] += 1
            return False
        if listener.accept_full:
            self.counters["listen_overflows"] += 1
            return True
        if self._at_connection_limit():
            return True
        self.counters["syncookies_recv"] += 1
        self.counters["passive_opens"] += 1
        conn = self._open_passive(listener, src, syn, now, (seg.ack - 1) & MASK)
        conn.resume_from_cookie()
        # Its TSecr is the cookie's TSval, up to 64 ticks behind when it was sent: no RTT
        # sample from it.
        conn.receive(dataclasses.replace(seg, options=dataclasses.replace(seg.options,
                                                                          tsecr=0)), now)
        return True

    def _reply_reset(self, src: bytes, seg: tcpseg.Segment) -> None:
        reply = reset_reply(seg)
        if reply is None:
            return
        seq, ack, flags = reply
        self._frame(src, seg.dport, seg.sport, [(seq, ack, flags, 0, b"", b"", 0)])
        self.counters["rst_out"] += 1

    def _open_passive(self, listener: Listener, src: bytes, seg: tcpseg.Segment,
                      now: float, iss: int | None = None) -> Connection:
        local = self._local_address(src)
        if iss is None:
            iss = self._isn.isn(local, seg.dport, src, seg.sport, now)
        src = self._shared_address(src)
        conn = Connection(self._family_config(listener.config or self.config, src), local,
                          seg.dport, src, seg.sport, iss, passive=True,
                          counters=self.counters, segmentation=self.offload,
                          ts_offset=self._ts_offset(local, src),
                          challenges=self.challenges)
        conn.snd.path_mss = self._path_mss_for(src, now)
        conn.listener = listener
        conn.on_transition = self._on_transition_hook
        conn.on_change = self._on_change_hook
        listener.half_open += 1
        self.connections[(src, seg.sport, seg.dport)] = conn
        conn.accept_syn(seg, now)
        self._dirty[conn] = None
        return conn

    def _ts_offset(self, local: bytes, remote: bytes) -> int:
        offsets = self._ts_offsets
        offset = offsets.get(remote)
        if offset is None:
            if len(offsets) >= MAX_CACHED_PEERS:
                offsets.clear()
            offset = offsets[remote] = self._isn.ts_offset(local, remote)
        return offset

    def _shared_address(self, address: bytes) -> bytes:
        """`address` as the one object the peer's connections share (bounded like the
        other per-peer caches: a flood of sources only starts it over)."""
        peers = self._peer_addresses
        shared = peers.get(address)
        if shared is None:
            if len(peers) >= MAX_CACHED_PEERS:
                peers.clear()
            shared = peers[address] = address
        return shared

    def _transition_hook(self, conn: Connection, old: State, new: State) -> None:
        """Every state change of every connection: the listener's half-open count and the
        counters. Runs several times per connection, so the states are module constants (an
        enum member looked up on its class costs a Python-level getattr each time)."""
        if old is _SYN_RCVD:
            listener = conn.listener
            if isinstance(listener, Listener):
                listener.half_open -= 1
        elif new is _CLOSED:
            if old is _SYN_SENT:
                self.counters["attempt_fails"] += 1
            elif (old is _ESTABLISHED or old is _CLOSE_WAIT) and conn.error is not None:
                self.counters["estab_resets"] += 1
        if new is _TIME_WAIT:
            self._time_wait[conn] = None  # past the limit, ended at the flush
        elif old is _TIME_WAIT:
            self._time_wait.pop(conn, None)
        if new in ORPHANED_STATES:
            if conn.rcv.discard and conn not in self._orphans:
                self._orphans[conn] = None
                if len(self._orphans) > self.config.max_orphans:
                    self._orphans_over.append(conn)  # reset at the flush, not mid-transition
        elif conn in self._orphans:
            del self._orphans[conn]
        if self.on_transition is not None:
            self.on_transition(conn, old, new)

    # ------------------------------------------------------------------ app calls

    def listen(self, port: int, backlog: int | None = None,
                config: TcpConfig | None = None) -> Listener:
        """Listen on `port`; its connections use `config` (e.g. another congestion control)
        or the stack's."""
        if port in self.listeners:
            raise PortInUse(f"port {port} is already listening")
        listener = Listener(port, backlog if backlog is not None else self.config.backlog,
                            (config or self.config).syncookies)
        listener.config = config
        self.listeners[port] = listener
        return listener

    def unlisten(self, port: int) -> None:
        self.listeners.pop(port, None)

    def connect(self, remote: bytes, remote_port: int, now: float,
                local_port: int | None = None, config: TcpConfig | None = None) -> Connection:
        if local_port is None:
            local_port = self._ephemeral_port(remote, remote_port)
        key = (remote, remote_port, local_port)
        if key in self.connections:
            raise PortInUse(f"local port {local_port} is in use to that peer")
        if self._at_connection_limit():
            raise ConnectionLimit(errno.EAGAIN, f"too many connections ({len(self.connections)}"
                                  ", the stack's maximum)")
        local = self._local_address(remote)
        iss = self._isn.isn(local, local_port, remote, remote_port, now)
        conn = Connection(self._family_config(config or self.config, remote), local,
                          local_port, remote, remote_port, iss, passive=False,
                          counters=self.counters, segmentation=self.offload,
                          ts_offset=self._ts_offset(local, remote),
                          challenges=self.challenges)
        conn.snd.path_mss = self._path_mss_for(remote, now)
        conn.on_transition = self._on_transition_hook
        conn.on_change = self._on_change_hook
        self.connections[key] = conn
        self.counters["active_opens"] += 1
        conn.connect(now)
        return conn

    def _ephemeral_port(self, remote: bytes, remote_port: int) -> int:
        """RFC 6056 3.3.4, algorithm 4 (double-hash port selection): the search starts at a
        keyed hash of the destination plus a counter that only the destinations sharing
        its table slot advance, so an off-path attacker cannot guess the port from the
        ones it sees, while reconnecting to one destination still cycles through the
        range. Always inside `ephemeral_ports` (a worker's own slice, api/workers.py)."""
        ports = self.ephemeral_ports
        span = len(ports)
        offset, bucket = self._isn.port_hashes(self._local_address(remote), remote, remote_port)
        table = self._port_table
        index = bucket % PORT_TABLE_LENGTH
        for _ in range(span):
            port = ports.start + (offset + table[index]) % span
            table[index] += 1
            if (remote, remote_port, port) not in self.connections and \
                    port not in self.listeners:
                return port
        raise PortInUse("no free ephemeral port")

    # ------------------------------------------------------------------ UDP (udp/layer.py)

    def udp_open(self, port: int | None = None, *, rcvbuf: int = DEFAULT_RCVBUF,
                 sndbuf: int = DEFAULT_SNDBUF) -> UdpEndpoint:
        """A UDP endpoint bound to `port` (None or 0: a free ephemeral one); OSError
        (EADDRINUSE) for a port bound already. UDP's ports are not TCP's."""
        return self.udp.open(port, rcvbuf, sndbuf)

    def udp_connect(self, endpoint: UdpEndpoint, remote: bytes, port: int) -> None:
        """As connect(2) on a datagram socket: the endpoint then takes datagrams from
        (remote, port) only, sends there by default and hears of the errors it draws."""
        self.udp.connect(endpoint, remote, port)

    def udp_close(self, endpoint: UdpEndpoint) -> None:
        """Unbind: what is queued is dropped, and the port is closed again."""
        self.udp.close(endpoint)

    def udp_sendto(self, endpoint: UdpEndpoint, data: Bytes, now: float,
                   remote: bytes | None = None, port: int = 0) -> None:
        """One datagram to (remote, port), or to the connected remote; OSError as
        sendto(2) (UdpLayer.sendto). Outside a pass it asks for one, after which the link
        writes it; within one it leaves with the pass's output."""
        self.udp.sendto(endpoint, data, now, remote, port)
        if not self._in_pass and self.request_service is not None:
            self.request_service()

    def _udp_path_mtu(self, remote: bytes, now: float) -> int | None:
        path_mss = self._path_mss_for(remote, now)
        if path_mss is None:
            return None
        return path_mss + (TCP_IPV6_HEADERS if len(remote) == 16 else TCP_IP_HEADERS)

    def _learn_path_mtu(self, remote: bytes, mtu: int, now: float) -> None:
        """"Fragmentation needed" quoting a datagram of ours: the path MTU, kept as the
        path MSS TCP keeps for it (RFC 1191), within Linux's floor."""
        if len(self._path_mss) >= MAX_CACHED_PEERS:
            self._path_mss.clear()
        if len(remote) == 16:  # RFC 8201 4: never below IPv6's minimum MTU
            path_mss = max(mtu, ipv6.MIN_MTU) - TCP_IPV6_HEADERS
        else:
            path_mss = max(mtu, MIN_PATH_MTU) - TCP_IP_HEADERS
        self._path_mss[remote] = (path_mss, now + PATH_MTU_EXPIRES)

    def _udp_owner_failed(self, exc: Exception) -> None:
        self._internal_error(exc, "delivering datagrams to the application")

    # ------------------------------------------------------------------ output and timers

    def flush(self, now: float) -> None:
        """The last step of a pass: let every changed connection send what it owes, and
        gather its packets and events."""
        if self._orphans_over:
            self._reset_orphans(now)
        if len(self._time_wait) > self.config.max_time_wait:
            self._end_oldest_time_waits(now)
        while self._dirty:
            dirty = self._dirty
            self._dirty = {}
            for conn in dirty:
                try:
                    conn.flush(now)
                except Exception as exc:
                    self._internal_error(exc, "sending (connection reset)")
                    self._fail(conn, now)
                    continue
                self._collect(conn)

    def _end_oldest_time_waits(self, now: float) -> None:
        """More connections in TIME_WAIT than `max_time_wait` (a server that closes first,
        under a sustained load of new peers, makes one per connection for 2MSL): the oldest
        end now, as if their 2MSL had run out, so that they neither take the room of live
        connections (SYNs would be dropped at `max_connections`) nor hold the memory. Linux
        does the like past tcp_max_tw_buckets ("time wait bucket table overflow"); the oldest
        go rather than the newest, as their old duplicates are the likeliest to have died."""
        waiting = self._time_wait
        while len(waiting) > self.config.max_time_wait:
            oldest = next(iter(waiting))
            self.counters["time_wait_overflow"] += 1
            waiting.pop(oldest)  # (its transition would too: this makes the loop end)
            oldest.end_time_wait(now)
            self._dirty[oldest] = None  # collected by this flush: gone from the table

    def _reset_orphans(self, now: float) -> None:
        """More orphans (closed by the application, still finishing) than `max_orphans`:
        the newest are reset, as Linux does past tcp_max_orphans ("too many orphaned
        sockets"), so that peers that never answer cannot hold the stack's memory."""
        over, self._orphans_over = self._orphans_over, []
        for conn in over:
            if conn in self._orphans and len(self._orphans) > self.config.max_orphans:
                self.counters["orphan_resets"] += 1
                conn.abort(now)
                self._dirty[conn] = None

    def _collect(self, conn: Connection) -> None:
        tx = conn.tx  # conn.output, without the property's two calls (twice a round trip)
        segments = tx.segments
        if segments:
            self.counters["segs_out"] += len(segments)
            self._frame(conn.remote_addr, conn.local_port, conn.remote_port, segments)
            tx.segments = ()  # no list kept while there are none (Connection.output)
        if conn.events:
            self.events.extend((conn, ev) for ev in conn.events)
            conn.events = ()
        if conn.state is _CLOSED:
            key = (conn.remote_addr, conn.remote_port, conn.local_port)
            if self.connections.get(key) is conn:
                del self.connections[key]
            self._scheduled.pop(conn, None)
            return
        deadline = conn.deadline
        if deadline is not None:
            scheduled = self._scheduled.get(conn)
            # A later deadline needs no new entry: the earlier one re-arms when it fires.
            if scheduled is None or deadline < scheduled:
                self._scheduled[conn] = deadline
                heapq.heappush(self._timers, (deadline, next(self._tiebreak), conn))

    def _frame(self, remote: bytes, sport: int, dport: int, segments: list[OutSegment]) -> None:
        """One connection's segments as IP packets for the link, onto `output`: the IPv4
        header (from the per-peer template) and the TCP header with its checksum, packed
        together. The checksum is summed from the header fields as numbers, the options and
        the payload (with offload only the pseudo-header's, for the link to finish, which
        then also cuts the payload to the MSS). An IPv6 peer's go to _frame6, found as
        the peer with no IPv4 route cached (IPv4's path pays nothing for the branch)."""
        route = self._routes.get(remote)
        if route is None:  # the pseudo-header sum does not depend on the direction
            if len(remote) == 16:
                self._frame6(remote, sport, dport, segments)
                return
            if len(self._routes) >= MAX_CACHED_PEERS:
                self._routes.clear()
            route = self._routes[remote] = (
                ipv4.HeaderTemplate(self.address, remote, PROTO_TCP),
                ipv4.pseudo_header_sum(remote, self.address, PROTO_TCP))
        ip, pseudo = route
        ip_sum, ttl, src, dst = ip.base_sum, ip.ttl, ip.src, ip.dst
        fixed = pseudo + sport + dport
        offload = self.offload
        append = self.output.append
        for seq, ack, flags, window, options, payload, mss in segments:
            n = len(payload)
            hlen = HEADER_LEN + len(options)
            if hlen & 3 or hlen > 60:
                raise ValueError(f"options must pad the header to a multiple of 4 up to 60, "
                                 f"not {hlen}")
            total = _IP_HEADER_LEN + hlen + n
            off_flags = (hlen << 10) | flags
            if n and offload:
                csum = (pseudo + hlen + n) % 0xFFFF  # the link completes it
            else:
                tsum = (fixed + hlen + n + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16)
                        + (ack & 0xFFFF) + off_flags + window)
                if options:
                    tsum += int.from_bytes(options, "big")  # whole 16-bit words
                if n:
                    tsum += ones_complement_sum(payload)
                csum = ~(tsum % 0xFFFF) & 0xFFFF
                mss = 0
            head = _pack_ipv4_tcp(0x45, 0, total, 0, _DF, ttl, PROTO_TCP,
                                  ~((ip_sum + total) % 0xFFFF) & 0xFFFF, src, dst,
                                  sport, dport, seq, ack, off_flags, window, csum, 0)
            append((head + options if options else head, payload, mss))

    def _frame6(self, remote: bytes, sport: int, dport: int,
                segments: list[OutSegment]) -> None:
        """_frame for an IPv6 peer: the IPv6 header (no checksum of its own) and the TCP
        header packed together, the TCP checksum over the RFC 8200 8.1 pseudo-header."""
        local = self.address6
        assert local is not None  # a 16-byte peer exists only with an IPv6 address
        pseudo = self._routes6.get(remote)
        if pseudo is None:
            if len(self._routes6) >= MAX_CACHED_PEERS:
                self._routes6.clear()
            pseudo = self._routes6[remote] = ipv6.pseudo_header(local, remote, PROTO_TCP, 0)
        fixed = pseudo + sport + dport
        offload = self.offload
        append = self.output.append
        for seq, ack, flags, window, options, payload, mss in segments:
            n = len(payload)
            hlen = HEADER_LEN + len(options)
            if hlen & 3 or hlen > 60:
                raise ValueError(f"options must pad the header to a multiple of 4 up to 60, "
                                 f"not {hlen}")
            off_flags = (hlen << 10) | flags
            if n and offload:
                csum = (pseudo + hlen + n) % 0xFFFF  # the link completes it
            else:
                tsum = (fixed + hlen + n + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16)
                        + (ack & 0xFFFF) + off_flags + window)
                if options:
                    tsum += int.from_bytes(options, "big")
                if n:
                    tsum += ones_complement_sum(payload)
                csum = ~(tsum % 0xFFFF) & 0xFFFF
                mss = 0
            head = _pack_ipv6_tcp(_IPV6_WORD, hlen + n, PROTO_TCP, _HOP_LIMIT, local, remote,
                                  sport, dport, seq, ack, off_flags, window, csum, 0)
            append((head + options if options else head, payload, mss))

    def next_deadline(self) -> float | None:
        timers = self._timers
        while timers:
            deadline, _, conn = timers[0]
            if self._scheduled.get(conn) == deadline:
                return deadline
            heapq.heappop(timers)  # stale: the connection re-armed earlier or closed
        return None

    # ------------------------------------------------------------------ shutdown
    #
    # Stopping is done the way a kernel closes the sockets of a process that exits, in three
    # steps the I/O layer spaces out in time: `close_all`, then `reset_unread_arrivals` again
    # and again during a short grace, then `reset_all` for whatever has not finished by then.
    # RFC 9293 3.6.1 (and RFC 1122 4.2.2.13): closing with received data unread, or receiving
    # data after the close, draws a RST, since that data can never reach an application.

    def close_all(self, now: float) -> None:
        """Shutdown, step one: stop listening and close the connections no application owns
        (an owner, such as an api transport, closes its own first, as it may still hold data
        to send before its FIN). A passive open not yet established, or one holding data
        nobody read, is reset; any other gets a FIN after its queued data."""
        self.listeners.clear()
        self._received_at_close = {}
        for conn in list(self.connections.values()):
            self._received_at_close[conn] = conn.rcv.bytes_received
            if conn.owner is not None or conn.state is State.TIME_WAIT:
                continue
            if conn.rcv.unread_bytes or conn.state is State.SYN_RCVD:
                conn.abort(now)
            else:
                conn.stop_reading()  # nobody will read: later data is reset, below
                conn.close(now)

    def reset_unread_arrivals(self, now: float) -> None:
        """Shutdown, during the grace: reset every connection that has received data since
        `close_all` although its application reads no more (it set `discard_input`)."""
        for conn, received in self._received_at_close.items():
            if (conn.rcv.discard and conn.rcv.bytes_received != received
                    and conn.state in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2)):
                conn.abort(now)

    def reset_all(self, now: float) -> None:
        """Shutdown, after the grace: reset every connection that has not finished, since
        nothing will answer its peer once the interface is gone (SYN_SENT ends silently,
        TIME_WAIT needs nothing). In CLOSING and LAST_ACK, where ABORT deletes silently
        (RFC 9293 3.10.5), a RST goes out all the same: the peer may be waiting for our FIN
        (half-closed, or the FIN was lost) and would wait for ever."""
        for conn in list(self.connections.values()):
            if conn.state in (State.TIME_WAIT, State.CLOSED):
                continue
            if conn.state in (State.CLOSING, State.LAST_ACK):
                self._frame(conn.remote_addr, conn.local_port, conn.remote_port,
                            [(conn.snd.max, 0, tcpseg.RST, 0, b"", b"", 0)])
                self.counters["rst_out"] += 1
            conn.abort(now)
        self._received_at_close = {}
