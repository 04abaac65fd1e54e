"""One tcpdump line per packet in and out, for `tcpstack -v` (debug logging).

    21:46:01.524011 IP 10.77.0.1.40000 > 10.77.0.2.80: Flags [S], seq 1794122519, win 64240,
        options [mss 1460,sackOK,TS val 3008 ecr 0,nop,wscale 7], length 0
    21:46:01.524107 IP 10.77.0.2.80 > 10.77.0.1.40000: Flags [S.], seq 3920442107,
        ack 1794122520, win 65535, options [mss 1460,nop,wscale 7], length 0
    21:46:01.524130 IP 10.77.0.1.40000 > 10.77.0.2.80: Flags [.], ack 1, win 502, length 0
    21:46:01.524342 IP 10.77.0.1.40000 > 10.77.0.2.80: Flags [P.], seq 1:79, ack 1, win 502,
        length 78

(each on one line in the log): what `tcpdump -n` prints for the same packet, local time to
the microsecond first. The numbering follows tcpdump's rule exactly, because a reader
compares the two: the first segment of a connection that carries an ACK (the SYN-ACK, in a
handshake) shows `seq` and `ack` absolute and fixes both sides' bases (its seq, and its ack
less one); from then on both sides' numbers, SACK blocks included, count from those bases.
Segments without ACK (the SYN, a bare RST) always show absolute numbers. So a connection
seen from its middle shows its first segment absolute, and the rest relative to it. `seq`
shows the range a:b of the bytes a segment carries, and is left out of a bare ACK.

Two things tcpdump prints are left out: what it decodes of the payload (`: HTTP` after the
length of a segment to or from port 80), and the contents of the options it knows and we do
not decode (TFO, MPTCP, user timeout: shown as `unknown-KIND 0xHEX`).

The formatter reads packets with the stack's own codecs: `net.ipv4.parse(strict=False)`,
which describes a damaged header instead of dropping it, and `tcp.segment.decode_options`,
so a line shows a segment's options as the stack takes them, and `bad opt KIND` exactly
where the stack finds them malformed (`tcp_bad_option`). It is installed as the driver's
tap only when asked for, so it costs nothing otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from collections.abc import Collection
from typing import cast

from tcpstack.net import ipv4, ipv6
from tcpstack.net.checksum import Bytes
from tcpstack.net.errors import MalformedPacket
from tcpstack.net.udp import PROTO_UDP
from tcpstack.tcp.segment import (
    ACK,
    FIN,
    HEADER,
    HEADER_LEN,
    OPT_EOL,
    OPT_MSS,
    OPT_NOP,
    OPT_SACK,
    OPT_SACK_PERMITTED,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    RST,
    SYN,
    URG,
    BadOption,
    OptionField,
    SackBlocks,
    decode_options,
    flags_str,
)

SEGMENT_LOGGER = "tcpstack.segments"
log = logging.getLogger(SEGMENT_LOGGER)

_ECHO = struct.Struct("!HH")
_MASK = 0xFFFFFFFF
_MAX_FLOWS = 4096  # connections whose bases are remembered; forgotten all at once beyond
_ICMP_TYPES = {0: "echo reply", 3: "unreachable", 8: "echo request", 11: "time exceeded"}
_ICMP_ECHO = (0, 8)
_UDP_PORTS = struct.Struct("!HHH")  # source port, destination port, length
_ICMP6_TYPES = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded",
                4: "parameter problem", 128: "echo request", 129: "echo reply"}
_ICMP6_ECHO = (128, 129)

Endpoint = tuple[bytes, int]
FlowKey = tuple[Endpoint, Endpoint]  # the two endpoints, the lower first


def tcpdump_time(when: float) -> str:
    """`HH:MM:SS.ffffff` in local time, as tcpdump prints a packet's timestamp; truncated to
    the microsecond as a pcap record's timestamp is (io/pcap.py)."""
    micros = int(when * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{time.strftime('%H:%M:%S', time.localtime(seconds))}.{fraction:06d}"


def format_options(raw: Bytes, sack_base: int = 0) -> str:
    """TCP options the way tcpdump lists them: `mss 1460,sackOK,nop,wscale 7`. SACK block
    edges are shown less `sack_base` (the peer's base, for relative numbers)."""
    fields: list[OptionField] = []
    try:
        decode_options(raw, fields)
    except BadOption as exc:
        # As tcpdump does: the options before the bad one, then nothing after it.
        return ",".join([*(_describe(f, sack_base) for f in fields), f"bad opt {exc.kind}"])
    return ",".join(_describe(f, sack_base) for f in fields)


def _describe(field: OptionField, sack_base: int) -> str:
    kind, body, value = field
    if kind == OPT_EOL:
        return "eol"
    if kind == OPT_NOP:
        return "nop"
    if value is not None:  # an option the stack reads, as it read it
        if kind == OPT_MSS:
            return f"mss {value}"
        if kind == OPT_WSCALE:
            return f"wscale {value}"
        if kind == OPT_SACK_PERMITTED:
            return "sackOK"
        if kind == OPT_SACK and isinstance(value, tuple):
            blocks = cast(SackBlocks, value)
            text = "".join(f"{{{(left - sack_base) & _MASK}:{(right - sack_base) & _MASK}}}"
                           for left, right in blocks)
            return f"sack {len(blocks)} {text}"
        if kind == OPT_TIMESTAMP and isinstance(value, tuple):
            return f"TS val {value[0]} ecr {value[1]}"
    return f"unknown-{kind} 0x{body.hex()}" if body else f"unknown-{kind}"


def _icmp_kind(message: Bytes, names: dict[int, str], echo_types: Collection[int]) -> str:
    """An ICMP or ICMPv6 message's kind as tcpdump names it, with an echo's id and seq."""
    kind = names.get(message[0], f"type {message[0]} code {message[1]}")
    if message[0] in echo_types and len(message) >= 8:
        ident, number = _ECHO.unpack_from(message, 4)
        kind += f", id {ident}, seq {number}"
    return kind

class SegmentFormatter:
    """Formats IPv4 and IPv6 packets as tcpdump does; remembers each connection's bases for relative
    sequence numbers (see the module's docstring)."""

    def __init__(self) -> None:
        self._bases: dict[FlowKey, tuple[int, int]] = {}  # per endpoint of the key, in order

    def line(self, packet: bytes, when: float) -> str:
        """The whole line: the packet's time, then `format(packet)`."""
        return f"{tcpdump_time(when)} {self.format(packet)}"

    def format(self, packet: bytes) -> str:
        n = len(packet)
        if n < 1:
            return "empty packet"
        version = packet[0] >> 4
        if version == 6:
            return self._format_ipv6(packet)
        try:
            ip = ipv4.parse(packet, strict=False)
        except MalformedPacket as exc:
            if exc.reason == "ip_bad_version" or n < ipv4.HEADER_LEN:
                return f"IP bad version {version} or truncated, length {n}"
            return f"IP bad header length {(packet[0] & 0x0F) * 4}, length {n}"
        return self._format_transport("IP", ip.src, ip.dst, ip.proto, ip.payload,
                                      ipv4.PROTO_ICMP, "ICMP ", _ICMP_TYPES, _ICMP_ECHO)

    def _format_ipv6(self, packet: bytes) -> str:
        """An IPv6 packet as tcpdump shows one: `IP6 a.port > b.port: Flags ...`."""
        try:
            ip = ipv6.parse(packet, strict=False)
        except MalformedPacket:
            return f"IP6 truncated, length {len(packet)}"
        return self._format_transport("IP6", ip.src, ip.dst, ip.proto, ip.payload,
                                      ipv6.PROTO_ICMPV6, "ICMP6, ", _ICMP6_TYPES, _ICMP6_ECHO)

    def _format_transport(self, family: str, src: bytes, dst: bytes, proto: int,
                          payload: Bytes, icmp_proto: int, icmp_label: str,
                          icmp_names: dict[int, str], echo_types: Collection[int]) -> str:
        """What an IP packet of either family carries, after tcpdump's `IP`/`IP6` prefix:
        TCP, ICMP or ICMPv6 (`icmp_proto`, written `icmp_label`), UDP, or its protocol."""
        src_text = str(ipaddress.ip_address(src))
        dst_text = str(ipaddress.ip_address(dst))
        if proto == ipv4.PROTO_TCP:
            return f"{family} " + self._format_tcp(src, dst, src_text, dst_text, payload)
        if proto == icmp_proto and len(payload) >= 4:
            kind = _icmp_kind(payload, icmp_names, echo_types)
            return f"{family} {src_text} > {dst_text}: {icmp_label}{kind}, length {len(payload)}"
        if proto == PROTO_UDP and len(payload) >= 8:
            sport, dport, length = _UDP_PORTS.unpack_from(payload)
            return (f"{family} {src_text}.{sport} > {dst_text}.{dport}: UDP, "
                    f"length {length - 8}")
        return f"{family} {src_text} > {dst_text}: ip-proto-{proto}, length {len(payload)}"

    def _format_tcp(self, src: bytes, dst: bytes, src_text: str, dst_text: str,
                    seg: Bytes) -> str:
        if len(seg) < HEADER_LEN:
            return f"{src_text} > {dst_text}: TCP truncated, length {len(seg)}"
        sport, dport, seq, ack, off_flags, window, _csum, urgent = HEADER.unpack_from(seg)
        offset = (off_flags >> 12) * 4
        flags = off_flags & 0xFF
        head = f"{src_text}.{sport} > {dst_text}.{dport}: Flags [{flags_str(flags)}]"
        if offset < HEADER_LEN or offset > len(seg):
            return f"{head}, bad data offset {offset}, length {len(seg)}"
        length = len(seg) - offset
        # tcpdump's rule: only a segment with an ACK starts (a SYN-ACK: restarts) the
        # numbering of its connection, and is itself shown absolute.
        peer_base = 0  # what SACK blocks count from
        if flags & ACK:
            mine, theirs = (src, sport), (dst, dport)
            reverse = theirs < mine
            key = (theirs, mine) if reverse else (mine, theirs)
            bases = self._bases.get(key)
            if bases is None or flags & SYN:
                if len(self._bases) >= _MAX_FLOWS:
                    self._bases.clear()
                fresh = (seq, (ack - 1) & _MASK)
                self._bases[key] = (fresh[1], fresh[0]) if reverse else fresh
                peer_base = fresh[1]
                shown_seq, shown_ack = seq, ack
            else:
                own_base, peer_base = (bases[1], bases[0]) if reverse else bases
                shown_seq, shown_ack = (seq - own_base) & _MASK, (ack - peer_base) & _MASK
        else:
            shown_seq = seq
        parts = [head]
        if length or flags & (SYN | FIN | RST):
            parts.append(f"seq {shown_seq}:{(shown_seq + length) & _MASK}" if length
                         else f"seq {shown_seq}")
        if flags & ACK:
            parts.append(f"ack {shown_ack}")
        parts.append(f"win {window}")
        if flags & URG:
            parts.append(f"urg {urgent}")
        if offset > HEADER_LEN:
            parts.append(f"options [{format_options(seg[HEADER_LEN:offset], peer_base)}]")
        parts.append(f"length {length}")
        return ", ".join(parts)


class SegmentLogger:
    """A driver tap that logs every packet at debug level on the `tcpstack.segments` logger,
    stamped with the time it crossed the TUN device."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._formatter = SegmentFormatter()
        self._log = logger

    def __call__(self, packet: bytes, outgoing: bool) -> None:
        if self._log.isEnabledFor(logging.DEBUG):
            self._log.debug("%s", self._formatter.line(packet, time.time()))
