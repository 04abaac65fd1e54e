"""Echo client over kernel sockets: send a file to HOST:PORT, half-close, and write every
byte received until EOF to another file.

    python echo_client.py HOST PORT INFILE OUTFILE [TIMEOUT]

Sending runs in a thread while the main thread receives, so neither side's window can fill
and deadlock the transfer. Prints one JSON line: bytes sent, bytes received, seconds.
Exits 1 on any socket error or when the whole exchange exceeds TIMEOUT seconds.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

CHUNK = 1 << 16


def main() -> int:
    host, port, infile, outfile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    sock = socket.create_connection((host, port), timeout=10)
    # Per operation; the deadline bounds the whole exchange. On a lossy link a lost window
    # update leaves the sender to its persist timer, whose backoff reaches tens of seconds.
    sock.settimeout(min(60.0, timeout))
    sent = 0
    send_error: list[BaseException] = []

    def sender() -> None:
        nonlocal sent
        try:
            with open(infile, "rb") as f:
                while chunk := f.read(CHUNK):
                    if time.monotonic() > deadline:
                        raise TimeoutError("send deadline passed")
                    sock.sendall(chunk)
                    sent += len(chunk)
            sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:
            send_error.append(exc)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    received = 0
    with open(outfile, "wb") as out:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"receive deadline passed after {received} bytes")
            data = sock.recv(CHUNK)
            if not data:
                break
            out.write(data)
            received += len(data)
    thread.join(max(0.0, deadline - time.monotonic()))
    sock.close()
    if thread.is_alive():
        raise TimeoutError("sender still running at EOF")
    if send_error:
        raise send_error[0]
    print(json.dumps({"sent": sent, "received": received,
                      "seconds": round(time.monotonic() - start, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
