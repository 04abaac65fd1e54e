"""A kernel-socket client that keeps a connection to tcpstack busy for a while, for tests that
look at a connection while data flows (`tcpstack stat`).

    python slow_sender.py PORT SECONDS

Connects to 10.77.0.2:PORT, prints "connected", then sends 20 kB every 50 ms for SECONDS
seconds, shuts down writing, reads until the peer closes, and exits."""

from __future__ import annotations

import socket
import sys
import time


def main() -> None:
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    with socket.create_connection(("10.77.0.2", port), timeout=10) as sock:
        print("connected", flush=True)
        chunk = b"x" * 20_000
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sock.sendall(chunk)
            time.sleep(0.05)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(1 << 16):
            pass


if __name__ == "__main__":
    main()
