"""Sequential HTTP/1.1 fetches over kernel sockets, one connection each.

    python http_cycles.py HOST PORT PATH COUNT SHA256 [TIMEOUT]

Each cycle connects, sends `GET PATH` with `Connection: close`, reads until the server
closes, and checks the status (200), Content-Length and the body's sha256. Prints one JSON
line (ok, failures, distinct local ports, seconds); exits 0 only if every cycle succeeded.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import time


def fetch(host: str, port: int, path: str, timeout: float) -> tuple[int, bytes, int]:
    """One connect/request/close cycle: (status, body, local port)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        local_port = sock.getsockname()[1]
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        chunks = []
        while data := sock.recv(1 << 16):
            chunks.append(data)
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"no end of header in {len(raw)} bytes")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    if int(headers.get("content-length", -1)) != len(body):
        raise ValueError(f"Content-Length {headers.get('content-length')} but "
                         f"{len(body)} body bytes")
    return status, body, local_port


def main() -> int:
    host, port, path, count, expected = (sys.argv[1], int(sys.argv[2]), sys.argv[3],
                                         int(sys.argv[4]), sys.argv[5])
    timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 60.0
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    ok = 0
    failures: list[str] = []
    ports: set[int] = set()
    for i in range(count):
        if time.monotonic() > deadline:
            failures.append(f"deadline passed before cycle {i}")
            break
        try:
            status, body, local_port = fetch(host, port, path, timeout=5)
        except (OSError, ValueError) as exc:
            failures.append(f"cycle {i}: {type(exc).__name__}: {exc}")
            continue
        ports.add(local_port)
        digest = hashlib.sha256(body).hexdigest()
        if status != 200 or digest != expected:
            failures.append(f"cycle {i}: status {status}, sha256 {digest}")
            continue
        ok += 1
    print(json.dumps({"ok": ok, "failures": failures[:20], "failed": len(failures),
                      "ports": len(ports), "seconds": round(time.monotonic() - start, 3)}))
    return 0 if ok == count else 1


if __name__ == "__main__":
    sys.exit(main())
