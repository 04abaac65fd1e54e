"""A spoofed SYN flood, bounded in rate and time, straight into a TUN interface.

    python syn_flood.py IFACE DPORT RATE SECONDS

SYNs to 10.77.0.2:DPORT from random addresses of 10.99.0.0/16 (random source ports and
sequence numbers, an MSS option), RATE a second for SECONDS, through an AF_PACKET socket
(see inject.py), so they reach tcpstack as if routed to it. Their SYN-ACKs go back into the
interface, where the kernel (not forwarding, owning none of those addresses) drops them:
nobody ever answers, as in a real flood. Checksums are complete (the TUN vouches for none),
made incrementally from a template. Prints one JSON line: packets sent, seconds.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import time

from inject import checksum  # the same independent checksum as the injector (this folder)

ETH_P_IP = 0x0800
DST = socket.inet_aton("10.77.0.2")
BATCH = 64  # packets between looks at the clock


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def main() -> None:
    iface, dport = sys.argv[1], int(sys.argv[2])
    rate, seconds = float(sys.argv[3]), float(sys.argv[4])
    options = struct.pack("!BBH", 2, 4, 1460)
    tcp_len = 20 + len(options)
    src0 = bytes(4)
    # Templates with the varying fields (source address, port, sequence number) zero: their
    # checksums' sums without them, to which each packet adds its own.
    tcp = struct.pack("!HHIIHHHH", 0, dport, 0, 0, (tcp_len // 4) << 12 | 0x02, 64240, 0, 0) \
        + options
    pseudo = src0 + DST + struct.pack("!BBH", 0, socket.IPPROTO_TCP, tcp_len)
    tcp_base = (~checksum(pseudo + tcp)) & 0xFFFF
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 0, 0x4000, 64,
                     socket.IPPROTO_TCP, 0, src0, DST)
    ip_base = (~checksum(ip)) & 0xFFFF
    packet = bytearray(ip + tcp)
    pack_into = struct.pack_into
    rand = random.Random(4987).getrandbits
    sent = 0
    start = time.monotonic()
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        send = sock.sendto
        address = (iface, ETH_P_IP)
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= seconds:
                break
            due = int(elapsed * rate) - sent
            if due <= 0:
                time.sleep(BATCH / rate / 4)
                continue
            for _ in range(min(due, BATCH)):
                host, sport, seq = rand(16), 1024 + rand(15), rand(32)
                words = 0x0A63 + host + sport + (seq >> 16) + (seq & 0xFFFF)
                pack_into("!H4s", packet, 10, ~_fold(ip_base + 0x0A63 + host) & 0xFFFF,
                          bytes((10, 99, host >> 8, host & 0xFF)))
                pack_into("!HHI", packet, 20, sport, dport, seq)
                pack_into("!H", packet, 36, ~_fold(tcp_base + words) & 0xFFFF)
                try:
                    send(packet, address)
                except BlockingIOError:
                    continue
                sent += 1
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}),
          flush=True)


if __name__ == "__main__":
    main()
