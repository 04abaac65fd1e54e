"""A UDP endpoint (a datagram socket's state) and the table of bound ports, sans-I/O.

An endpoint is bound to a local port and may be connected to one remote (address, port),
as a socket after connect(2): it then takes datagrams from that remote only and is told of
the ICMP errors its datagrams draw. Arrivals wait in a receive queue bounded in bytes, as
SO_RCVBUF bounds a Linux socket's: a datagram that finds it full is dropped (the stack
counts it as Linux's RcvbufErrors). Each queued datagram is charged its payload and a fixed
cost for what holding it costs, so a flood of empty datagrams fills the queue too; as in
Linux, the queue takes a datagram while what it holds is within the limit, so it may end
one datagram over it, and an empty queue takes any. Datagrams sent and not yet handed to the
link are bounded the same way (SO_SNDBUF). Nothing here reads a clock or touches I/O.
Addresses are bytes of 4 or 16.
"""

from __future__ import annotations

import errno
import random
from collections import deque
from collections.abc import Callable

from tcpstack.net.socket_errors import AddressInUse

DEFAULT_RCVBUF = 212_992  # Linux's net.core.rmem_default
DEFAULT_SNDBUF = 212_992  # net.core.wmem_default
# What queueing one datagram is charged beyond its payload: about what the bytes object, its
# tuple and the address cost in memory, as Linux charges an skb's truesize.
DATAGRAM_COST = 256

Datagram = tuple[bytes, bytes, int]  # (payload, source address, source port)


class UdpEndpoint:
    """One datagram socket's state. The stack queues arrivals (`deliver`), records the ICMP
    errors a connected endpoint's datagrams draw (`report`), and calls `on_ready` once per
    service pass in which either happened; the owner (an api transport, the socket facade)
    takes them with `receive` and `take_error`."""

    __slots__ = ("_queue", "charged", "closed", "drops", "error", "local_port", "on_ready",
                 "owner", "rcvbuf", "received", "remote_addr", "remote_port", "sending",
                 "sndbuf")

    def __init__(self, local_port: int, rcvbuf: int = DEFAULT_RCVBUF,
                 sndbuf: int = DEFAULT_SNDBUF) -> None:
        self.local_port = local_port
        self.remote_addr: bytes | None = None
        self.remote_port = 0
        self.rcvbuf = rcvbuf
        self.sndbuf = sndbuf
        self._queue: deque[Datagram] = deque()
        self.charged = 0    # what the receive queue is charged now (payloads and costs)
        self.received = 0   # payload bytes waiting to be read (ss's Recv-Q)
        self.sending = 0    # charged for datagrams framed and not yet handed to the link
        self.drops = 0      # datagrams the full queue refused (ss's skmem d)
        self.error: tuple[int, str] | None = None  # a pending error, as a socket's SO_ERROR
        self.on_ready: Callable[[UdpEndpoint], None] | None = None
        self.owner: object = None
        self.closed = False

    @property
    def connected(self) -> bool:
        return self.remote_addr is not None

    def accepts(self, src: bytes, sport: int) -> bool:
        """Whether a datagram from (src, sport) is for this endpoint (a connected one takes
        its remote's only, as Linux's lookup scores a connected socket)."""
        return self.remote_addr is None or (src == self.remote_addr and sport == self.remote_port)

    def deliver(self, payload: bytes, src: bytes, sport: int) -> bool:
        """Queue an arrival; False (and counted in `drops`) when the queue is full."""
        if self.charged > self.rcvbuf:
            self.drops += 1
            return False
        self._queue.append((payload, src, sport))
        self.charged += len(payload) + DATAGRAM_COST
        self.received += len(payload)
        return True

    def receive(self) -> Datagram | None:
        """The oldest queued datagram, or None."""
        if not self._queue:
            return None
        datagram = self._queue.popleft()
        self.charged -= len(datagram[0]) + DATAGRAM_COST
        self.received -= len(datagram[0])
        return datagram

    @property
    def queued(self) -> int:
        """Datagrams waiting to be read."""
        return len(self._queue)

    def report(self, number: int, text: str) -> None:
        """An ICMP error about one of our datagrams: pending until taken (a newer replaces
        it, as sk_err holds one)."""
        self.error = (number, text)

    def take_error(self) -> tuple[int, str] | None:
        error, self.error = self.error, None
        return error


class UdpPorts:
    """The bound endpoints by local port, one each, and the choice of an ephemeral port
    (as Linux's udp_lib_get_port: a random start in the range, then the next free one)."""

    def __init__(self, ephemeral: range, rng: random.Random | None = None) -> None:
        if not ephemeral:
            raise ValueError("no ephemeral ports to bind UDP endpoints to")
        self.ephemeral = ephemeral
        self._rng = rng or random.Random()
        self.endpoints: dict[int, UdpEndpoint] = {}

    def bind(self, port: int | None, rcvbuf: int = DEFAULT_RCVBUF,
             sndbuf: int = DEFAULT_SNDBUF) -> UdpEndpoint:
        """A new endpoint on `port` (None or 0: a free ephemeral one)."""
        if not port:
            port = self._free_port()
        elif not 0 < port < 65536:
            raise ValueError(f"invalid port {port}: must be 1-65535")
        elif port in self.endpoints:
            raise AddressInUse(errno.EADDRINUSE, f"UDP port {port} is already bound")
        endpoint = UdpEndpoint(port, rcvbuf, sndbuf)
        self.endpoints[port] = endpoint
        return endpoint

    def _free_port(self) -> int:
        ports = self.ephemeral
        start = self._rng.randrange(len(ports))
        for i in range(len(ports)):
            port = ports.start + (start + i) % len(ports)
            if port not in self.endpoints:
                return port
        raise AddressInUse(errno.EADDRINUSE, "no free ephemeral UDP port")

    def unbind(self, endpoint: UdpEndpoint) -> None:
        endpoint.closed = True
        if self.endpoints.get(endpoint.local_port) is endpoint:
            del self.endpoints[endpoint.local_port]

    def lookup(self, port: int, src: bytes, sport: int) -> UdpEndpoint | None:
        """The endpoint a datagram from (src, sport) to local `port` is for, or None."""
        endpoint = self.endpoints.get(port)
        if endpoint is None or not endpoint.accepts(src, sport):
            return None
        return endpoint
