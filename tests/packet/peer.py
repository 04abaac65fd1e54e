"""A scripted TCP peer for packet-level tests, in the manner of packetdrill.

The peer speaks from 10.77.0.9, an address inside the TUN interface's /24 that the kernel does
not own: tcpstack routes its replies back through tcps0, where the kernel (not forwarding,
not owning .9) drops them, so nothing but the test ever answers for the peer. Segments are
crafted with scapy and written into tcps0 through an AF_PACKET socket, which hands the bytes
to tcpstack as they are; tcpstack's replies are read from the same interface through a second
AF_PACKET socket. Both sockets are created inside the test's network namespace by a short
thread that setns(2)s into it (a socket stays in the namespace it was made in), so the test
itself runs in the root namespace and drives the exchange step by step.

A `Flow` is one 4-tuple. Sequence numbers in its `send` and `expect` are relative to each
side's initial sequence number, as in packetdrill: ours is chosen by the flow, the stack's is
learned from the first SYN it sends (or given as 0 for a flow that will never see one, so the
absolute numbers of a RST from a closed port read as they are). Flags are written the way
tcpdump prints them ("S.", "P.", "R"). `expect` takes the next segment the stack sends on the
flow and compares flags, seq, ack, window, options and payload exactly, short of a field
given as ANY or as OneOf(a, b); a mismatch raises an AssertionError with the differences and
the peer's history in time order. `maybe_expect` takes a segment the stack may or may not
send, and `expect_nothing` asserts silence for a while.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, TCP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.packet import Raw  # noqa: E402

PEER_ADDRESS = "10.77.0.9"
STACK_ADDRESS = "10.77.0.2"
# The same over IPv6: fd77::9 is inside the kernel side's fd77::/64 and not the kernel's,
# which (not forwarding) drops what tcpstack sends it, as for 10.77.0.9.
PEER_ADDRESS6 = "fd77::9"
STACK_ADDRESS6 = "fd77::2"
IFACE = "tcps0"

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4  # sll_pkttype of a packet this host sends: our own injections
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
CLONE_NEWNET = 0x40000000
MASK = 0xFFFFFFFF

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
# tcpdump's letters, with "." for ACK: "S." is SYN+ACK, "P." is PSH+ACK, "R" a bare RST.
_FLAG_LETTERS = (("F", FIN), ("S", SYN), ("R", RST), ("P", PSH), (".", ACK), ("U", URG),
                 ("E", ECE), ("W", CWR))


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()  # an expectation field that is not checked


class OneOf:
    """An expectation field that may take any of a few values, for a choice the stack is
    free to make (the options of a SYN-ACK with or without SACK support, say)."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def __eq__(self, other: object) -> bool:
        return any(_normal(v) == _normal(other) for v in self.values)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return " or ".join(repr(_normal(v)) for v in self.values)


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

Options = Sequence[tuple[str, Any]]  # as scapy parses them: [("MSS", 1460), ("NOP", None)]


def parse_flags(text: str) -> int:
    letters = dict(_FLAG_LETTERS)
    flags = 0
    for ch in text:
        if ch not in letters:
            raise ValueError(f"unknown flag {ch!r} in {text!r} (use tcpdump's FSRP.UEW)")
        flags |= letters[ch]
    return flags


def flags_str(flags: int) -> str:
    return "".join(ch for ch, bit in _FLAG_LETTERS if flags & bit) or "none"


def _signed(rel: int) -> int:
    """A relative sequence number as a small signed number, for reading."""
    rel &= MASK
    return rel - (1 << 32) if rel >= 1 << 31 else rel


def _ones_complement(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum_errors(packet: bytes) -> list[str]:
    """What is wrong with the IPv4 header and transport checksums of `packet` (empty: none).
    tcpstack runs with --no-offload here, so every packet it writes must carry both."""
    if packet[0] >> 4 == 6:
        return _checksum_errors6(packet)
    errors = []
    ihl = (packet[0] & 0x0F) * 4
    if _ones_complement(packet[:ihl]) != 0xFFFF:
        errors.append("bad IPv4 header checksum")
    proto = packet[9]
    body = packet[ihl:struct.unpack_from("!H", packet, 2)[0]]
    if proto == socket.IPPROTO_TCP:
        pseudo = packet[12:20] + struct.pack("!BBH", 0, proto, len(body))
        if _ones_complement(pseudo + body) != 0xFFFF:
            errors.append("bad TCP checksum")
    elif proto == socket.IPPROTO_ICMP and _ones_complement(body) != 0xFFFF:
        errors.append("bad ICMP checksum")
    elif proto == socket.IPPROTO_UDP:
        pseudo = packet[12:20] + struct.pack("!BBH", 0, proto, len(body))
        if body[6:8] == b"\0\0" or _ones_complement(pseudo + body) != 0xFFFF:
            errors.append("bad or missing UDP checksum")
    return errors


def _checksum_errors6(packet: bytes) -> list[str]:
    """The transport checksum of an IPv6 packet without extension headers, over the RFC
    8200 8.1 pseudo-header, computed here independently of tcpstack's code."""
    nxt = packet[6]
    body = packet[40:40 + struct.unpack_from("!H", packet, 4)[0]]
    pseudo = packet[8:40] + struct.pack("!IxxxB", len(body), nxt)
    if nxt in (socket.IPPROTO_TCP, socket.IPPROTO_ICMPV6) and \
            _ones_complement(pseudo + body) != 0xFFFF:
        return ["bad TCP checksum" if nxt == socket.IPPROTO_TCP else "bad ICMPv6 checksum"]
    return []


# ---------------------------------------------------------------------- sockets


def _in_netns(netns: str, make: Callable[[], socket.socket]) -> socket.socket:
    """Call `make` on a thread that has entered network namespace `netns` (setns acts on the
    calling thread only, so the test's own threads stay where they are)."""
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(make())
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run, name=f"setns-{netns}")
    thread.start()
    thread.join(timeout=10)
    if not result:
        raise RuntimeError(f"no socket from the thread entering {netns}")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _sending_socket() -> socket.socket:
    # Protocol 0: it receives nothing; each sendto names the interface and EtherType.
    return socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)


def _capturing_socket(iface: str, ethertype: int = ETH_P_IP) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ethertype))
    sock.bind((iface, ethertype))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # the kernel's time of capture
    return sock


# ---------------------------------------------------------------------- captured packets


@dataclass
class Captured:
    """One packet tcpstack wrote, with the kernel's time of capture (time.time() clock)."""

    raw: bytes
    at: float
    ip: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ip = IPv6(self.raw) if self.raw[0] >> 4 == 6 else IP(self.raw)

    @property
    def tcp(self) -> Any:
        return self.ip[TCP] if self.ip.haslayer(TCP) else None

    @property
    def payload(self) -> bytes:
        layer = self.tcp if self.tcp is not None else self.ip.payload
        return bytes(layer.payload)


class Peer:
    """The test's end of tcps0 inside one namespace: injects packets and collects replies
    addressed to PEER_ADDRESS, sorted by flow. `ipv6`: the peer is PEER_ADDRESS6 and talks
    to STACK_ADDRESS6, its flows' segments IPv6 packets."""

    def __init__(self, netns: str, iface: str = IFACE, *, ipv6: bool = False) -> None:
        self.netns = netns
        self.iface = iface
        self.ipv6 = ipv6
        self.address = PEER_ADDRESS6 if ipv6 else PEER_ADDRESS
        self.stack_address = STACK_ADDRESS6 if ipv6 else STACK_ADDRESS
        self._ethertype = ETH_P_IPV6 if ipv6 else ETH_P_IP
        self._tx = _in_netns(netns, _sending_socket)
        self._rx = _in_netns(netns, lambda: _capturing_socket(iface, self._ethertype))
        self._queues: dict[object, collections.deque[Captured]] = collections.defaultdict(
            collections.deque)
        self.started = time.time()
        self._history: list[tuple[float, str]] = []  # every packet in and out
        self._ident = 0

    def close(self) -> None:
        self._tx.close()
        self._rx.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def note(self, at: float, line: str) -> None:
        self._history.append((at, line))

    def inject(self, pkt: Any) -> float:
        """Write one scapy IP packet into the interface; returns when (time.time())."""
        self._ident = (self._ident + 1) & 0xFFFF
        if isinstance(pkt, IP) and pkt.id == 1:  # scapy's default: each its own
            pkt.id = self._ident
        data = bytes(pkt)
        at = time.time()
        sent = self._tx.sendto(data, (self.iface, ETH_P_IPV6 if data[0] >> 4 == 6
                                      else ETH_P_IP))
        assert sent == len(data), f"short write into {self.iface}: {sent} of {len(data)}"
        return at

    def _pump(self, timeout: float) -> None:
        """Read what the stack wrote, waiting at most `timeout` for the first packet."""
        self._rx.settimeout(max(timeout, 0.0) or 0.0001)
        while True:
            try:
                data, ancdata, _flags, addr = self._rx.recvmsg(65535, 64)
            except (TimeoutError, BlockingIOError):
                return
            self._rx.settimeout(0.0001)
            if addr[2] == PACKET_OUTGOING or not self._ours(data):
                continue
            at = time.time()
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack_from("qq", value)
                    at = sec + nsec / 1e9
            self._queues[_flow_key(data)].append(Captured(data, at))

    def _ours(self, data: bytes) -> bool:
        """A packet from the stack to this peer, in the peer's family."""
        if self.ipv6:
            return (len(data) >= 40 and data[0] >> 4 == 6
                    and socket.inet_ntop(socket.AF_INET6, data[8:24]) == STACK_ADDRESS6
                    and socket.inet_ntop(socket.AF_INET6, data[24:40]) == PEER_ADDRESS6)
        return (len(data) >= 20 and data[0] >> 4 == 4
                and socket.inet_ntoa(data[12:16]) == STACK_ADDRESS
                and socket.inet_ntoa(data[16:20]) == PEER_ADDRESS)

    def ip(self, ttl: int = 64) -> Any:
        """The IP header of a packet from this peer to the stack (scapy), in its family."""
        if self.ipv6:
            return IPv6(src=PEER_ADDRESS6, dst=STACK_ADDRESS6, hlim=ttl)
        return IP(src=PEER_ADDRESS, dst=STACK_ADDRESS, ttl=ttl)

    def receive(self, key: object, timeout: float) -> Captured | None:
        """The next packet for flow `key` arriving within `timeout` seconds, or None."""
        deadline = time.monotonic() + timeout
        queue = self._queues[key]
        while not queue:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._pump(left)
        return queue.popleft()

    def unreceive(self, key: object, packet: Captured) -> None:
        """Put `packet` back at the head of its flow's queue."""
        self._queues[key].appendleft(packet)

    def flow(self, sport: int, dport: int = 8080, *, isn: int = 1_000_000,
             remote_isn: int | None = None) -> Flow:
        return Flow(self, sport, dport, isn, remote_isn)

    def ping(self, ident: int, seq: int, data: bytes, *, timeout: float = 1.0) -> Captured:
        """Send an ICMP echo request; the reply that comes back (an AssertionError if none)."""
        at = self.inject(IP(src=PEER_ADDRESS, dst=STACK_ADDRESS) /
                         ICMP(type=8, id=ident, seq=seq) / Raw(data))
        self.note(at, f"> ICMP echo request id {ident} seq {seq} len {len(data)}")
        got = self.receive("icmp", timeout)
        if got is None:
            raise AssertionError(f"no echo reply within {timeout}s\n" + self.transcript())
        self.note(got.at, f"< ICMP type {got.ip[ICMP].type} id {got.ip[ICMP].id} "
                          f"seq {got.ip[ICMP].seq} len {len(got.payload)}")
        return got

    def transcript(self) -> str:
        """Everything sent and received so far, in time order (packets are noted when a test
        reads them, stamped with when they were captured)."""
        lines = [f"{at - self.started:8.3f} {line}"
                 for at, line in sorted(self._history, key=lambda entry: entry[0])]
        return ("history (seconds since the peer opened; > sent by the peer, < by tcpstack):\n"
                + "\n".join(lines))


def _flow_key(data: bytes) -> object:
    if data[0] >> 4 == 6:  # tcpstack sends no extension headers
        if data[6] == socket.IPPROTO_TCP and len(data) >= 44:
            sport, dport = struct.unpack_from("!HH", data, 40)
            return (dport, sport)
        return "icmp" if data[6] == socket.IPPROTO_ICMPV6 else "other"
    ihl = (data[0] & 0x0F) * 4
    if data[9] == socket.IPPROTO_TCP and len(data) >= ihl + 4:
        sport, dport = struct.unpack_from("!HH", data, ihl)
        return (dport, sport)  # (peer port, stack port)
    if data[9] == socket.IPPROTO_ICMP:
        return "icmp"
    if data[9] == socket.IPPROTO_UDP and len(data) >= ihl + 4:
        sport, dport = struct.unpack_from("!HH", data, ihl)
        return ("udp", dport, sport)  # (peer port, stack port)
    return "other"


# ---------------------------------------------------------------------- flows


@dataclass
class Expected:
    flags: int
    seq: Any
    ack: Any
    win: Any
    options: Any
    payload: Any


class Flow:
    """One connection's 4-tuple from the peer's side, with packetdrill's relative numbers."""

    def __init__(self, peer: Peer, sport: int, dport: int, isn: int,
                 remote_isn: int | None) -> None:
        self.peer = peer
        self.sport = sport
        self.dport = dport
        self.isn = isn & MASK
        self.remote_isn = remote_isn
        self.key = (sport, dport)
        self.ttl = 64

    def __str__(self) -> str:
        if self.peer.ipv6:
            return f"[{PEER_ADDRESS6}]:{self.sport} <-> [{STACK_ADDRESS6}]:{self.dport}"
        return f"{PEER_ADDRESS}:{self.sport} <-> {STACK_ADDRESS}:{self.dport}"

    # -------------------------------------------------------------- sending

    def send(self, flags: str, seq: int, ack: int = 0, *, win: int = 65535,
             options: Options = (), payload: bytes = b"") -> float:
        """Send one segment; `seq` is relative to our ISN, `ack` to the stack's (it needs the
        stack's ISN known unless `flags` has no ACK). Returns the time it was written."""
        bits = parse_flags(flags)
        if bits & ACK and self.remote_isn is None:
            raise AssertionError(f"{self}: cannot send an ACK before the stack's ISN is known")
        abs_ack = (ack + (self.remote_isn or 0)) & MASK if bits & ACK else 0
        pkt = self.peer.ip(self.ttl) / TCP(
            sport=self.sport, dport=self.dport, seq=(self.isn + seq) & MASK, ack=abs_ack,
            flags=bits, window=win, options=list(options))
        if payload:
            pkt = pkt / Raw(payload)
        at = self.peer.inject(pkt)
        self.peer.note(at, f"> {self}  {_describe(bits, seq, ack, win, options, payload)}")
        return at

    # -------------------------------------------------------------- expecting

    def expect(self, flags: str, seq: Any, ack: Any = ANY, *, win: Any = ANY,
               options: Any = (), payload: Any = b"", timeout: float = 1.0) -> Captured:
        """The next segment tcpstack sends on this flow must arrive within `timeout` and match
        exactly: flags, seq, ack (checked when ACK is set; relative to our ISN), window,
        options (scapy's parse; ANY to skip) and payload. The first SYN the stack sends fixes
        its ISN: that segment's seq is then `seq` by definition."""
        want = Expected(parse_flags(flags), seq, ack, win, options, payload)
        got = self.peer.receive(self.key, timeout)
        if got is None:
            self.peer.note(time.time(), f"  (nothing on {self} for {timeout}s)")
            self._fail(f"expected within {timeout}s: {self._describe_expected(want)}\n"
                       f"got nothing")
        assert got is not None
        tcp = got.tcp
        if tcp is None:
            self._fail(f"expected a TCP segment, got {got.ip.summary()}")
        if self.remote_isn is None and int(tcp.flags) & SYN and seq is not ANY:
            self.remote_isn = (int(tcp.seq) - seq) & MASK
        self.peer.note(got.at, f"< {self}  {self._describe_captured(got)}")
        diffs = self._diff(want, got)
        if diffs:
            self._fail(f"expected: {self._describe_expected(want)}\n"
                       f"     got: {self._describe_captured(got)}\n"
                       + "\n".join(f"  {d}" for d in diffs))
        return got

    def maybe_expect(self, flags: str, seq: Any, ack: Any = ANY, *, win: Any = ANY,
                     options: Any = (), payload: Any = b"", timeout: float = 1.0
                     ) -> Captured | None:
        """Take the next segment if it matches as `expect` would (the window unchecked by
        default), else leave it for the next `expect`. For what the stack may or may not
        send, such as a pure ACK that a delayed-ACK timer could fold into the next segment."""
        want = Expected(parse_flags(flags), seq, ack, win, options, payload)
        got = self.peer.receive(self.key, timeout)
        if got is None:
            return None
        if got.tcp is not None and not self._diff(want, got):
            self.peer.note(got.at, f"< {self}  {self._describe_captured(got)}  (optional)")
            return got
        self.peer.unreceive(self.key, got)
        return None

    def expect_nothing(self, duration: float) -> None:
        """Nothing at all may arrive on this flow for `duration` seconds."""
        got = self.peer.receive(self.key, duration)
        if got is not None:
            self.peer.note(got.at, f"< {self}  {self._describe_captured(got)}")
            self._fail(f"expected nothing for {duration}s, got: "
                       f"{self._describe_captured(got)}")
        self.peer.note(time.time(), f"  (nothing on {self} for {duration}s, as expected)")

    def _rel_seq(self, got: Captured) -> int:
        return _signed(int(got.tcp.seq) - (self.remote_isn or 0))

    def _rel_ack(self, got: Captured) -> int:
        return _signed(int(got.tcp.ack) - self.isn)

    def _diff(self, want: Expected, got: Captured) -> list[str]:
        tcp = got.tcp
        diffs = [f"checksum: {e}" for e in checksum_errors(got.raw)]
        flags = int(tcp.flags)
        if flags != want.flags:
            diffs.append(f"flags: expected {flags_str(want.flags)}, got {flags_str(flags)}")
        if want.seq is not ANY and self._rel_seq(got) != _signed(want.seq):
            diffs.append(f"seq: expected {_signed(want.seq)}, got {self._rel_seq(got)}")
        if want.flags & ACK and want.ack is not ANY and self._rel_ack(got) != _signed(want.ack):
            diffs.append(f"ack: expected {_signed(want.ack)}, got {self._rel_ack(got)}")
        if want.win is not ANY and want.win != int(tcp.window):
            diffs.append(f"win: expected {want.win}, got {int(tcp.window)}")
        if want.options is not ANY and _normal(want.options) != list(tcp.options):
            diffs.append(f"options: expected {_normal(want.options)!r}, "
                         f"got {list(tcp.options)!r}")
        if want.payload is not ANY and got.payload != want.payload:
            diffs.append(_payload_diff(bytes(want.payload), got.payload))
        if tcp.urgptr or tcp.reserved:
            diffs.append(f"urgent pointer {tcp.urgptr}, reserved bits {tcp.reserved}")
        return diffs

    def _describe_expected(self, want: Expected) -> str:
        return _describe(want.flags, want.seq, want.ack, want.win, want.options, want.payload)

    def _describe_captured(self, got: Captured) -> str:
        tcp = got.tcp
        flags = int(tcp.flags)
        return _describe(flags, self._rel_seq(got), self._rel_ack(got) if flags & ACK else ANY,
                         int(tcp.window), list(tcp.options), got.payload)

    def _fail(self, message: str) -> None:
        raise AssertionError(f"{self}: {message}\n{self.peer.transcript()}")


def _payload_diff(want: bytes, got: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b),
              min(len(want), len(got)))
    return (f"payload: expected {len(want)} bytes, got {len(got)}, first difference at byte "
            f"{at}: expected {want[at:at + 16]!r}, got {got[at:at + 16]!r}")


def _describe(flags: int, seq: int, ack: Any, win: Any, options: Any, payload: Any) -> str:
    """A segment the way tcpdump prints one, with relative sequence numbers."""
    text = f"{flags_str(flags)} seq {seq if seq is ANY else _signed(seq)}"
    if flags & ACK and ack is not ANY:
        text += f" ack {_signed(ack)}"
    text += f" win {win}"
    if options is ANY or isinstance(options, OneOf):
        text += f" <options {options!r}>"
    elif options:
        text += " <" + ",".join(f"{k}" if v in (None, b"") else f"{k} {v}"
                                for k, v in options) + ">"
    if payload is ANY:
        text += " len ANY"
    else:
        text += f" len {len(payload)}"
        if payload:
            text += f" {bytes(payload[:24])!r}" + ("..." if len(payload) > 24 else "")
    return text

