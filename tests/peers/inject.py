"""Write hand-made IPv4 packets into a TUN interface, bypassing the kernel's IP layer.

    python inject.py IFACE KIND[:COUNT] ...

A write on an AF_PACKET socket bound to a TUN interface is handed to the program that owns
the TUN descriptor as-is, so tcpstack sees exactly these bytes. Every packet is a TCP SYN from
10.77.0.1 to 10.77.0.2, damaged according to KIND:

    control           valid, to closed port 81: the stack should answer with a RST
    bad_ip_checksum   to port 80, IPv4 header checksum wrong
    truncated         to port 80, total length 100 bytes beyond what is sent
    bad_ihl           to port 80, IHL 4 (16 bytes, below the minimum of 5)
    bad_tcp_checksum  to port 80, IPv4 header fine, TCP checksum wrong

Prints one JSON object: packets and bytes written per kind. Exits 1 on a short write.
"""

from __future__ import annotations

import json
import socket
import struct
import sys

SRC = socket.inet_aton("10.77.0.1")
DST = socket.inet_aton("10.77.0.2")
ETH_P_IP = 0x0800
IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
TCP_HEADER = struct.Struct("!HHIIHHHH")
SYN = 0x02
CORRUPT = 0x1234  # XOR into a checksum: never turns it into an equivalent value


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_syn(sport: int, dport: int, corrupt: bool = False) -> bytes:
    mss = struct.pack("!BBH", 2, 4, 1460)
    fields = (sport, dport, 1000 + sport, 0, ((20 + len(mss)) // 4) << 12 | SYN, 64240)
    seg = TCP_HEADER.pack(*fields, 0, 0) + mss
    pseudo = SRC + DST + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(seg))
    csum = checksum(pseudo + seg) ^ (CORRUPT if corrupt else 0)
    return TCP_HEADER.pack(*fields, csum, 0) + mss


def ipv4(payload: bytes, *, ihl: int = 5, total: int | None = None,
         corrupt_checksum: bool = False, ident: int = 1) -> bytes:
    if total is None:
        total = 20 + len(payload)
    header = IP_HEADER.pack(0x40 | ihl, 0, total, ident, 0x4000, 64, socket.IPPROTO_TCP, 0,
                            SRC, DST)
    csum = checksum(header) ^ (CORRUPT if corrupt_checksum else 0)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def build(kind: str, n: int) -> bytes:
    sport = 40000 + n
    if kind == "control":
        return ipv4(tcp_syn(sport, 81), ident=n)
    if kind == "bad_ip_checksum":
        return ipv4(tcp_syn(sport, 80), corrupt_checksum=True, ident=n)
    if kind == "truncated":
        seg = tcp_syn(sport, 80)
        return ipv4(seg, total=20 + len(seg) + 100, ident=n)
    if kind == "bad_ihl":
        return ipv4(tcp_syn(sport, 80), ihl=4, ident=n)
    if kind == "bad_tcp_checksum":
        return ipv4(tcp_syn(sport, 80, corrupt=True), ident=n)
    raise SystemExit(f"unknown kind {kind!r}")


def main() -> int:
    iface, specs = sys.argv[1], sys.argv[2:]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    report: dict[str, dict[str, int]] = {}
    n = 0
    for spec in specs:
        kind, _, count = spec.partition(":")
        entry = report.setdefault(kind, {"packets": 0, "bytes": 0})
        for _ in range(int(count or 1)):
            n += 1
            packet = build(kind, n)
            written = sock.sendto(packet, (iface, ETH_P_IP))
            if written != len(packet):
                print(f"short write for {kind}: {written} of {len(packet)}", file=sys.stderr)
                return 1
            entry["packets"] += 1
            entry["bytes"] += written
    sock.close()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
