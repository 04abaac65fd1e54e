"""Kernel-socket connections to HOST:PORT one after another, each an echo of one line.

    python sequential_connects.py HOST PORT COUNT

Each connection connects (within 3 s), sends a line, reads it back and closes; whether a
SYN had to be resent is the kernel's TCPSynRetrans counter's to say, which the test reads.
Prints one JSON line: how many succeeded, the slowest connect in seconds, the errors seen.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def main() -> None:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ok = 0
    slowest = 0.0
    errors: list[str] = []
    for i in range(count):
        line = f"connection {i}\n".encode()
        start = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=3.0) as sock:
                slowest = max(slowest, time.monotonic() - start)
                sock.sendall(line)
                got = b""
                while len(got) < len(line):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            if got == line:
                ok += 1
            else:
                errors.append(f"{i}: echoed {got!r}")
        except OSError as exc:
            errors.append(f"{i}: {exc}")
    print(json.dumps({"ok": ok, "slowest_connect": round(slowest, 4), "errors": errors[:10]}),
          flush=True)


if __name__ == "__main__":
    main()
