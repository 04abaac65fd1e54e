"""Concurrent HTTP/1.1 downloads over kernel sockets, the connections then held open.

    python http_held.py HOST PORT PATH COUNT SHA256 [TIMEOUT]

Opens COUNT connections at once, sends `GET PATH` on each (keep-alive), reads the response
(status 200, Content-Length, the body's sha256) and keeps the connection open. Prints one
JSON line (ok, failures, distinct local ports) once every download has finished, then holds
every connection until standard input ends or has a line, and closes them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys


async def fetch(host: str, port: int, path: str, digest: str,
                held: list[asyncio.StreamWriter]) -> tuple[bool, int]:
    reader, writer = await asyncio.open_connection(host, port)
    held.append(writer)
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines
                  if line.lower().startswith("content-length:"))
    body = await reader.readexactly(length)
    ok = lines[0].split()[1] == "200" and hashlib.sha256(body).hexdigest() == digest
    return ok, local_port


async def main() -> int:
    host, port, path, count, digest = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
        int(sys.argv[4]), sys.argv[5]
    timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 60.0
    held: list[asyncio.StreamWriter] = []
    results = await asyncio.wait_for(asyncio.gather(
        *(fetch(host, port, path, digest, held) for _ in range(count)),
        return_exceptions=True), timeout)
    ok = sum(1 for r in results if isinstance(r, tuple) and r[0])
    failures = [repr(r) for r in results if not (isinstance(r, tuple) and r[0])][:5]
    ports = {r[1] for r in results if isinstance(r, tuple)}
    print(json.dumps({"ok": ok, "failures": failures, "ports": len(ports)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for writer in held:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in held), return_exceptions=True)
    return 0 if ok == count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
