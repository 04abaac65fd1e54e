"""HTTP GET over a kernel socket that reports what the kernel's TCP says of the connection.

    python tcp_info_client.py HOST PORT PATH [RATE]

Reads the response at about RATE bytes a second (default 2 MB/s), so the connection lives
long enough for `ss` to see it, and once some data has arrived reads TCP_INFO: the options the
handshake negotiated (tcpi_options), the MSS the kernel sends with and the size of the
segments it receives. Prints one JSON line with those, the body's length and its sha256.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import sys
import time

CHUNK = 1 << 16
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4
# struct tcp_info (linux/tcp.h): eight u8 fields, then u32 rto, ato, snd_mss, rcv_mss, ...
TCP_INFO = struct.Struct("=BBBBBBBBIIII")


def main() -> int:
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 2e6
    sock = socket.create_connection((host, port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    response = bytearray()
    info: tuple[int, ...] | None = None
    while chunk := sock.recv(CHUNK):
        response += chunk
        if info is None and len(response) >= CHUNK:
            info = TCP_INFO.unpack_from(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO,
                                                        TCP_INFO.size))
        time.sleep(len(chunk) / rate)
    sock.close()
    if info is None:
        raise SystemExit("the response was too short to read TCP_INFO in the middle of it")
    _head, _, body = bytes(response).partition(b"\r\n\r\n")
    options = info[5]
    print(json.dumps({
        "timestamps": bool(options & TCPI_OPT_TIMESTAMPS),
        "sack": bool(options & TCPI_OPT_SACK),
        "wscale": bool(options & TCPI_OPT_WSCALE),
        "snd_mss": info[10], "rcv_mss": info[11],
        "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
