"""One tcpdump-style line per packet in and out, for `tcpstack -v` (debug logging).

    10.77.0.1.40000 > 10.77.0.2.80: Flags [S], seq 1794122519, win 64240,
        options [mss 1460,sackOK,TS val 3008 ecr 0,nop,wscale 7], length 0
    10.77.0.2.80 > 10.77.0.1.40000: Flags [S.], seq 3920442107, ack 1, win 65535,
        options [mss 1460,nop,wscale 7], length 0
    10.77.0.1.40000 > 10.77.0.2.80: Flags [P.], seq 1:79, ack 1, win 502, length 78

(each on one line in the log).

Sequence numbers are relative to each side's SYN, as tcpdump prints them: a SYN shows its
absolute ISN, later segments `seq` and `ack` counted from the ISNs seen (absolute when the
SYN was not seen, e.g. for a connection older than the log). `seq` shows the range a:b of the
bytes a segment carries, and is left out of a bare ACK, like tcpdump.

The formatter reads the wire bytes itself rather than through the stack's strict parsers so
that it describes malformed packets too; it is installed as the driver's tap only when asked
for, so it costs nothing otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import struct

from tcpstack.net.ipv4 import PROTO_ICMP, PROTO_TCP
from tcpstack.tcp.segment import (
    ACK,
    FIN,
    OPT_EOL,
    OPT_MSS,
    OPT_NOP,
    OPT_SACK_PERMITTED,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    RST,
    SYN,
    flags_str,
)

log = logging.getLogger("tcpstack.segments")

_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIHH")
_OPT_SACK = 5
_MASK = 0xFFFFFFFF
_MAX_FLOWS = 4096  # ISNs remembered for relative numbers; forgotten all at once beyond this
_ICMP_TYPES = {0: "echo reply", 3: "unreachable", 8: "echo request", 11: "time exceeded"}

FlowKey = tuple[bytes, int, bytes, int]


def format_options(raw: bytes) -> str:
    """TCP options the way tcpdump lists them: `mss 1460,sackOK,nop,wscale 7`."""
    parts: list[str] = []
    i = 0
    end = len(raw)
    while i < end:
        kind = raw[i]
        if kind == OPT_EOL:
            parts.append("eol")
            break
        if kind == OPT_NOP:
            parts.append("nop")
            i += 1
            continue
        if i + 1 >= end or raw[i + 1] < 2 or i + raw[i + 1] > end:
            parts.append(f"bad opt {kind}")
            break
        length = raw[i + 1]
        body = raw[i + 2:i + length]
        if kind == OPT_MSS and length == 4:
            parts.append(f"mss {int.from_bytes(body, 'big')}")
        elif kind == OPT_WSCALE and length == 3:
            parts.append(f"wscale {body[0]}")
        elif kind == OPT_SACK_PERMITTED and length == 2:
            parts.append("sackOK")
        elif kind == _OPT_SACK and (length - 2) % 8 == 0:
            blocks = [struct.unpack_from("!II", body, j) for j in range(0, len(body), 8)]
            text = " ".join(f"{{{left}:{right}}}" for left, right in blocks)
            parts.append(f"sack {len(blocks)} {text}")
        elif kind == OPT_TIMESTAMP and length == 10:
            val, ecr = struct.unpack("!II", body)
            parts.append(f"TS val {val} ecr {ecr}")
        else:
            parts.append(f"opt-{kind}:{body.hex()}")
        i += length
    return ",".join(parts)


class SegmentFormatter:
    """Formats IPv4 packets; remembers each flow's ISN to print relative sequence numbers."""

    def __init__(self) -> None:
        self._isn: dict[FlowKey, int] = {}

    def format(self, packet: bytes) -> str:
        n = len(packet)
        if n < 1:
            return "empty packet"
        version = packet[0] >> 4
        if version == 6:
            return f"IP6, length {n}"
        if version != 4 or n < _IP.size:
            return f"IP bad version {version} or truncated, length {n}"
        vihl, _tos, total, _ident, _frag, _ttl, proto, _csum, src, dst = _IP.unpack_from(packet)
        ihl = (vihl & 0x0F) * 4
        if ihl < _IP.size or ihl > n:
            return f"IP bad header length {ihl}, length {n}"
        end = min(total, n) if total >= ihl else n
        payload = packet[ihl:end]
        src_text = str(ipaddress.IPv4Address(src))
        dst_text = str(ipaddress.IPv4Address(dst))
        if proto == PROTO_TCP:
            return self._format_tcp(src, dst, src_text, dst_text, payload)
        if proto == PROTO_ICMP and len(payload) >= 4:
            kind = _ICMP_TYPES.get(payload[0], f"type {payload[0]} code {payload[1]}")
            return f"{src_text} > {dst_text}: ICMP {kind}, length {len(payload)}"
        return f"{src_text} > {dst_text}: ip-proto-{proto}, length {len(payload)}"

    def _format_tcp(self, src: bytes, dst: bytes, src_text: str, dst_text: str,
                    seg: bytes) -> str:
        if len(seg) < 20:
            return f"{src_text} > {dst_text}: TCP truncated, length {len(seg)}"
        sport, dport, seq, ack, off_flags, window = _TCP.unpack_from(seg)
        offset = (off_flags >> 12) * 4
        flags = off_flags & 0xFF
        head = f"{src_text}.{sport} > {dst_text}.{dport}: Flags [{flags_str(flags)}]"
        if offset < 20 or offset > len(seg):
            return f"{head}, bad data offset {offset}, length {len(seg)}"
        length = len(seg) - offset
        mine = (src, sport, dst, dport)
        if flags & SYN:
            if len(self._isn) >= _MAX_FLOWS:
                self._isn.clear()
            self._isn[mine] = seq
        parts = [head]
        own_isn = self._isn.get(mine)
        if length or flags & (SYN | FIN | RST):
            first = seq if flags & SYN or own_isn is None else (seq - own_isn) & _MASK
            parts.append(f"seq {first}:{(first + length) & _MASK}" if length else f"seq {first}")
        if flags & ACK:
            peer_isn = self._isn.get((dst, dport, src, sport))
            parts.append(f"ack {ack if peer_isn is None else (ack - peer_isn) & _MASK}")
        parts.append(f"win {window}")
        if offset > 20:
            parts.append(f"options [{format_options(seg[20:offset])}]")
        parts.append(f"length {length}")
        return ", ".join(parts)


class SegmentLogger:
    """A driver tap that logs every packet at debug level on the `tcpstack.segments` logger."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._formatter = SegmentFormatter()
        self._log = logger

    def __call__(self, packet: bytes, outgoing: bool) -> None:
        if self._log.isEnabledFor(logging.DEBUG):
            self._log.debug("%s", self._formatter.format(packet))
