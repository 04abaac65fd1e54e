"""A router that answers the first TCP SYN to DST it sees on a TUN interface with an ICMP
destination unreachable quoting it (see inject.py for how packets are written in).

    python icmp_answer.py IFACE DST CODE

Waits (10 s at most) for a SYN from the stack to DST, then writes one ICMP type 3 with code
CODE (3: port unreachable, 1: host unreachable) from DST, quoting the SYN's IPv4 header and
first 8 TCP bytes, and prints one JSON line: the quoted sequence number.
"""

from __future__ import annotations

import errno
import json
import socket
import struct
import sys
import time

from inject import checksum  # the same independent checksum as the injector (this folder)

ETH_P_IP = 0x0800


def main() -> None:
    iface, dst, code = sys.argv[1], socket.inet_aton(sys.argv[2]), int(sys.argv[3])
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)) as sock:
        deadline = time.monotonic() + 10.0
        while True:  # the stack creates the interface as it starts
            try:
                sock.bind((iface, ETH_P_IP))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        sock.settimeout(10.0)
        while True:
            try:
                data = sock.recv(65535)
            except OSError as exc:  # bound while the interface was still coming up
                if exc.errno != errno.ENETDOWN or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            ihl = (data[0] & 0x0F) * 4
            if len(data) >= ihl + 20 and data[9] == socket.IPPROTO_TCP and \
                    data[16:20] == dst and data[ihl + 13] & 0x02:
                break
        quoted = data[:ihl + 8]
        message = struct.pack("!BBHI", 3, code, 0, 0) + quoted
        message = message[:2] + struct.pack("!H", checksum(message)) + message[4:]
        stack = data[12:16]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(message), 0, 0, 64,
                         socket.IPPROTO_ICMP, 0, dst, stack)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        sock.sendto(ip + message, (iface, ETH_P_IP))
    print(json.dumps({"seq": struct.unpack_from("!I", data, ihl + 4)[0]}), flush=True)


if __name__ == "__main__":
    main()
