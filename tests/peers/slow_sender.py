"""A kernel-socket client that keeps a connection to tcpstack busy for a while, for tests that
look at a connection while data flows (`tcpstack stat`).

    python slow_sender.py PORT SECONDS

Connects to 10.77.0.2:PORT, prints "connected", then sends 20 kB every 50 ms for SECONDS
seconds or until SIGTERM, shuts down writing, reads until the peer closes, and exits 0: a
test that looks at the connection stops it when done, so a slow machine cannot end the
flow before the test has looked."""

from __future__ import annotations

import signal
import socket
import sys
import time
from types import FrameType


def main() -> None:
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    stopped = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    with socket.create_connection(("10.77.0.2", port), timeout=10) as sock:
        print("connected", flush=True)
        chunk = b"x" * 20_000
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stopped:
            sock.sendall(chunk)
            time.sleep(0.05)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(1 << 16):
            pass


if __name__ == "__main__":
    main()
