"""Random and mutated packets, straight into a TUN interface (see inject.py for how).

    python fuzz_flood.py IFACE COUNT SEED

COUNT packets towards 10.77.0.2, all from 10.77.0.9 (an address nobody owns, so no packet
can belong to a real connection of the kernel's, 10.77.0.1), a quarter of each kind:

    random     arbitrary bytes, 1-200 of them
    ipv4       a valid IPv4 header (checksum right) over random bytes, any protocol
    tcp        a valid IPv4 packet carrying a TCP segment with random ports (port 80 half the
               time), flags, numbers, window and option bytes, its checksum right, so it
               reaches the options decoder and the state machine
    mutated    one of the `tcp` packets with a few bytes overwritten (checksums now wrong,
               or the header itself broken)

Prints one JSON line: packets written by kind.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys

from inject import checksum  # the same independent checksum as the injector (this folder)

ETH_P_IP = 0x0800
SRC = socket.inet_aton("10.77.0.9")
DST = socket.inet_aton("10.77.0.2")
IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
TCP_HEADER = struct.Struct("!HHIIHHHH")


def ipv4(proto: int, payload: bytes, rng: random.Random) -> bytes:
    header = IP_HEADER.pack(0x45, 0, 20 + len(payload), rng.getrandbits(16), 0x4000, 64,
                            proto, 0, SRC, DST)
    csum = checksum(header)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def tcp(rng: random.Random) -> bytes:
    options = bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 4, 8, 12, 20, 40))))
    payload = bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 0, 1, 100))))
    dport = 80 if rng.random() < 0.5 else rng.getrandbits(16)
    header = TCP_HEADER.pack(rng.getrandbits(16), dport, rng.getrandbits(32),
                             rng.getrandbits(32), ((20 + len(options)) // 4) << 12
                             | rng.getrandbits(9), rng.getrandbits(16), 0, 0) + options
    segment = header + payload
    pseudo = SRC + DST + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(segment))
    csum = checksum(pseudo + segment)
    segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    return ipv4(socket.IPPROTO_TCP, segment, rng)


def mutated(rng: random.Random) -> bytes:
    packet = bytearray(tcp(rng))
    for _ in range(rng.randint(1, 4)):
        packet[rng.randrange(len(packet))] = rng.getrandbits(8)
    return bytes(packet)


def main() -> None:
    iface, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    makers = {
        "random": lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))),
        "ipv4": lambda: ipv4(rng.getrandbits(8), bytes(rng.getrandbits(8)
                                                       for _ in range(rng.randint(0, 60))), rng),
        "tcp": lambda: tcp(rng),
        "mutated": lambda: mutated(rng),
    }
    sent = dict.fromkeys(makers, 0)
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)) as sock:
        sock.bind((iface, ETH_P_IP))
        for i in range(count):
            kind = list(makers)[i % len(makers)]
            packet = makers[kind]()
            sock.sendto(packet, (iface, ETH_P_IP))
            sent[kind] += 1
    print(json.dumps(sent), flush=True)


if __name__ == "__main__":
    main()
