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

import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from tcpstack.net import icmp, ipv4
from tcpstack.net.checksum import Bytes
from tcpstack.net.errors import MalformedPacket
from tcpstack.net.ipv4 import PROTO_ICMP, PROTO_TCP
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import Closed, Event, Reset
from tcpstack.tcp.isn import IsnGenerator
from tcpstack.tcp.listener import Listener, Verdict
from tcpstack.tcp.reset import reset_reply
from tcpstack.tcp.segment import OutSegment
from tcpstack.tcp.state import State

log = logging.getLogger("tcpstack")

ConnKey = tuple[bytes, int, int]  # (remote address, remote port, local port)
# An IP packet for the link and its GSO size: 0 when its checksums are complete; otherwise
# (only where the link offloads) its TCP checksum holds just the pseudo-header sum, for the
# link to finish, and a payload over the GSO size is for the link to cut to it.
OutPacket = tuple[bytes, int]
EventHandler = Callable[[Connection, Event], None]
EPHEMERAL_PORTS = range(32768, 61000)  # Linux's ip_local_port_range
# Rounds of events and reactions within one pass; what is left over goes to the next pass.
MAX_EVENT_ROUNDS = 16
MAX_LOGGED_INTERNAL_ERRORS = 10
CLOSED = State.CLOSED  # a global, not an attribute lookup, once per connection per pass


class PortInUse(Exception):
    pass


class NetworkStack:
    def __init__(self, address: bytes, config: TcpConfig | None = None,
                 isn: IsnGenerator | None = None, *, offload: bool = False,
                 ephemeral_ports: range = EPHEMERAL_PORTS) -> None:
        """`offload`: the link takes partial checksums and segments of up to 64 KB, which it
        cuts itself (a TUN with the virtio-net header): a capability of the link.
        `ephemeral_ports`: where active opens take their local port (a worker's own slice
        of the range when several stacks share one address, api/workers.py)."""
        self.address = address
        self.config = config or TcpConfig()
        self._isn = isn or IsnGenerator()
        self.connections: dict[ConnKey, Connection] = {}
        self.listeners: dict[int, Listener] = {}
        self.counters: Counter[str] = Counter()
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
        self._timers: list[tuple[float, int, Connection]] = []
        self._scheduled: dict[Connection, float] = {}
        self._tiebreak = itertools.count()
        self._pseudo: dict[bytes, int] = {}
        if not ephemeral_ports:
            raise ValueError("no ephemeral ports to open connections from")
        self.ephemeral_ports = ephemeral_ports
        self._next_port = ephemeral_ports.start
        self.offload = offload
        # By peer address: its IPv4 header template and pseudo-header sum, for _frame.
        self._routes: dict[bytes, tuple[ipv4.HeaderTemplate, int]] = {}
        # Shutdown: what each connection had received when close_all ran.
        self._received_at_close: dict[Connection, int] = {}

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
                for packet, vouched in zip(packets, flags, strict=False):
                    try:
                        receive(packet, now, vouched)
                    except Exception as exc:  # a bug must cost one packet, not the stack
                        self._internal_error(exc, "processing a packet (dropped)")
            self._finish_pass(now)
        finally:
            self._in_pass = False

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
        if handler is not None and self.events and self.request_service is not None:
            self.request_service()  # more rounds than one pass allows: the next pass goes on

    def _take_events(self) -> None:
        append = self.events.append
        for conn in self._dirty:
            if conn.events:
                for ev in conn.events:  # mostly one: a loop costs less than a generator
                    append((conn, ev))
                conn.events.clear()

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
        conn.events.append(Reset("internal error"))
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
        conn.output.clear()
        conn.events.append(Closed(conn.error))
        self.events.extend((conn, ev) for ev in conn.events)
        conn.events.clear()
        key = (conn.remote_addr, conn.remote_port, conn.local_port)
        if self.connections.get(key) is conn:
            del self.connections[key]
        self._scheduled.pop(conn, None)

    # ------------------------------------------------------------------ input

    def receive(self, packet: Bytes, now: float, checksum_trusted: bool = False) -> None:
        """One IP packet from the link; a malformed one is counted by reason and dropped.
        `checksum_trusted`: the link vouches for the transport checksum (offload)."""
        counters = self.counters
        if packet and packet[0] >> 4 == 6:
            counters["ipv6_dropped"] += 1  # the kernel's own IPv6 chatter; IPv6 is not served
            return
        try:
            ip = ipv4.parse(packet)
            if ip.dst != self.address:
                counters["ip_not_for_us"] += 1
                return
            if ip.proto == PROTO_TCP:
                self._receive_tcp(ip, now, checksum_trusted)
            elif ip.proto == PROTO_ICMP:
                self._receive_icmp(ip)
            else:
                counters["ip_unknown_protocol"] += 1
        except MalformedPacket as exc:
            counters[exc.reason] += 1
            counters["in_errors"] += 1
            log.debug("dropped packet: %s", exc)

    def _receive_icmp(self, ip: ipv4.IPv4Packet) -> None:
        self.counters["icmp_in"] += 1
        reply = icmp.echo_reply(ip.payload)
        if reply is not None:
            self.output.append((ipv4.build(self.address, ip.src, PROTO_ICMP, reply), 0))
            self.counters["icmp_out"] += 1

    def _receive_tcp(self, ip: ipv4.IPv4Packet, now: float, trusted: bool) -> None:
        src = ip.src
        pseudo = self._pseudo.get(src)
        if pseudo is None:
            pseudo = self._pseudo[src] = ipv4.pseudo_header_sum(src, self.address, PROTO_TCP)
        seg = tcpseg.parse(ip.payload, pseudo, verify=not trusted)
        self.counters["segs_in"] += 1
        if seg.flags & tcpseg.RST:
            self.counters["rst_in"] += 1
        conn = self.connections.get((src, seg.sport, seg.dport))
        iss = None
        if conn is not None:
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
        self.counters[verdict.value] += 1
        if verdict is Verdict.OPEN:
            self._open_passive(listener, src, seg, now, iss)
        elif verdict is Verdict.RESET:
            self._reply_reset(src, seg)

    def _reply_reset(self, src: bytes, seg: tcpseg.Segment) -> None:
        reply = reset_reply(seg)
        if reply is None:
            return
        seq, ack, flags = reply
        self.output.append(self._frame(src, OutSegment(seg.dport, seg.sport, seq, ack, flags, 0,
                                                       b"", b"", 0)))
        self.counters["rst_out"] += 1

    def _open_passive(self, listener: Listener, src: bytes, seg: tcpseg.Segment,
                      now: float, iss: int | None = None) -> None:
        if iss is None:
            iss = self._isn.isn(self.address, seg.dport, src, seg.sport, now)
        conn = Connection(listener.config or self.config, self.address, seg.dport, src,
                          seg.sport, iss, passive=True, counters=self.counters,
                          segmentation=self.offload,
                          ts_offset=self._isn.ts_offset(self.address, src))
        conn.listener = listener
        conn.on_transition = self._transition_hook
        conn.on_change = self._changed
        listener.half_open += 1
        self.connections[(src, seg.sport, seg.dport)] = conn
        conn.accept_syn(seg, now)
        self._dirty[conn] = None

    def _transition_hook(self, conn: Connection, old: State, new: State) -> None:
        listener = conn.listener
        if old is State.SYN_RCVD and isinstance(listener, Listener):
            listener.half_open -= 1
        if old is State.SYN_SENT and new is State.CLOSED:
            self.counters["attempt_fails"] += 1
        if new is State.CLOSED and old in (State.ESTABLISHED, State.CLOSE_WAIT) \
                and conn.error is not None:
            self.counters["estab_resets"] += 1
        if self.on_transition is not None:
            self.on_transition(conn, old, new)

    # ------------------------------------------------------------------ app calls

    def listen(self, port: int, backlog: int | None = None,
                config: TcpConfig | None = None) -> Listener:
        """Listen on `port`; its connections use `config` (e.g. another congestion control)
        or the stack's."""
        if port in self.listeners:
            raise PortInUse(f"port {port} is already listening")
        listener = Listener(port, backlog if backlog is not None else self.config.backlog)
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
        iss = self._isn.isn(self.address, local_port, remote, remote_port, now)
        conn = Connection(config or self.config, self.address, local_port, remote,
                          remote_port, iss, passive=False, counters=self.counters,
                          segmentation=self.offload,
                          ts_offset=self._isn.ts_offset(self.address, remote))
        conn.on_transition = self._transition_hook
        conn.on_change = self._changed
        self.connections[key] = conn
        self.counters["active_opens"] += 1
        conn.connect(now)
        return conn

    def _ephemeral_port(self, remote: bytes, remote_port: int) -> int:
        ports = self.ephemeral_ports
        span = len(ports)
        for _ in range(span):
            port = self._next_port
            self._next_port = ports.start + (port + 1 - ports.start) % span
            if (remote, remote_port, port) not in self.connections and \
                    port not in self.listeners:
                return port
        raise PortInUse("no free ephemeral port")

    # ------------------------------------------------------------------ output and timers

    def flush(self, now: float) -> None:
        """The last step of a pass: let every changed connection send what it owes, and
        gather its packets and events."""
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

    def _collect(self, conn: Connection) -> None:
        segments = conn.output
        if segments:
            self.counters["segs_out"] += len(segments)
            frame = self._frame
            remote = conn.remote_addr
            append = self.output.append
            for seg in segments:  # mostly one: a loop costs less than a comprehension
                append(frame(remote, seg))
            segments.clear()
        if conn.events:
            self.events.extend((conn, ev) for ev in conn.events)
            conn.events.clear()
        if conn.state is CLOSED:
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

    def _frame(self, remote: bytes, seg: OutSegment) -> OutPacket:
        """A connection's segment as an IP packet for the link: the IPv4 header and the TCP
        header with its checksum (only the pseudo-header's, for the link to finish, when it
        offloads, and then the MSS the link is to cut the payload to)."""
        route = self._routes.get(remote)
        if route is None:  # the pseudo-header sum does not depend on the direction
            route = self._routes[remote] = (
                ipv4.HeaderTemplate(self.address, remote, PROTO_TCP),
                ipv4.pseudo_header_sum(remote, self.address, PROTO_TCP))
        ip, pseudo = route
        payload = seg.payload
        if payload and self.offload:
            hdr = tcpseg.build_header_partial(seg.sport, seg.dport, seg.seq, seg.ack, seg.flags,
                                              seg.window, pseudo, seg.options, len(payload))
            return b"".join((ip.build(len(hdr) + len(payload)), hdr, payload)), seg.mss
        hdr = tcpseg.build_header(seg.sport, seg.dport, seg.seq, seg.ack, seg.flags,
                                  seg.window, pseudo, seg.options, payload)
        return b"".join((ip.build(len(hdr) + len(payload)), hdr, payload)), 0

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
            if conn.rcv.buffer or conn.state is State.SYN_RCVD:
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
                self.output.append(self._frame(conn.remote_addr, OutSegment(
                    conn.local_port, conn.remote_port, conn.snd.max, 0, tcpseg.RST, 0, b"", b"",
                    0)))
                self.counters["rst_out"] += 1
            conn.abort(now)
        self._received_at_close = {}
