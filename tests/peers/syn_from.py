"""Write one TCP SYN into a TUN interface from an address nobody answers for.

    python syn_from.py IFACE SRC SPORT DPORT

The SYN goes from SRC:SPORT (e.g. 10.77.0.9, inside tcps0's /24 but owned by no one) to
10.77.0.2:DPORT through an AF_PACKET socket (see inject.py), straight to tcpstack. Its SYN-ACK
is routed back into tcps0, where the kernel (not forwarding, not owning SRC) drops it, so the
handshake stays half-open in SYN_RCVD until tcpstack gives up. Prints "sent"."""

from __future__ import annotations

import socket
import struct
import sys

from inject import checksum  # the same independent checksum as the injector (this folder)

ETH_P_IP = 0x0800
DST = socket.inet_aton("10.77.0.2")


def syn(src: bytes, sport: int, dport: int) -> bytes:
    options = struct.pack("!BBH", 2, 4, 1460)
    fields = (sport, dport, 123456789, 0, (5 + len(options) // 4) << 12 | 0x02, 64240)
    seg = struct.pack("!HHIIHHHH", *fields, 0, 0) + options
    pseudo = src + DST + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(seg))
    seg = struct.pack("!HHIIHHHH", *fields, checksum(pseudo + seg), 0) + options
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64,
                         socket.IPPROTO_TCP, 0, src, DST)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + seg


def main() -> None:
    iface, src, sport, dport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    packet = syn(socket.inet_aton(src), sport, dport)
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)) as sock:
        if sock.sendto(packet, (iface, ETH_P_IP)) != len(packet):
            raise SystemExit("short write")
    print("sent", flush=True)


if __name__ == "__main__":
    main()
