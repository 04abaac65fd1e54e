"""Peers for the daemon's tests (tests/integration/test_daemon.py), run inside a namespace:
kernel sockets on one side, processes attached to the daemon (tcpstack.attach()) on the other.

    exchange-server PORT SIZE [GO]  kernel: serve one connection on 0.0.0.0:PORT: send SIZE
                                    random bytes and half-close while reading until EOF
                                    (once the file GO exists, when given)
    exchange-client HOST PORT SIZE [GO]  kernel: the same as a client of HOST:PORT
    attach-exchange PORT SIZE       attached: listen on PORT, accept one, the same exchange
    attach-fill HOST PORT LPORT     attached: listen on LPORT, connect to HOST:PORT and write
                                    without blocking until nothing more fits anywhere, then
                                    report what was written and wait to be killed
    held-server PORT GO             kernel: accept one connection on PORT, read nothing until
                                    the file GO exists, then read until EOF or RST
    idle-client HOST PORT           kernel: connect, see "ping" echoed, then wait for the end
                                    and say whether it was a FIN ("eof") or a RST ("reset")

Each prints "ready" (or "listening") once it can be talked to, then one JSON line with what
it did; the sha256 of every byte sent and received lets the test compare both ends. Every
wait is bounded (30 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

CHUNK = 1 << 16
TIMEOUT = 30.0


def say(value: Any) -> None:
    print(value if isinstance(value, str) else json.dumps(value), flush=True)


def exchange(sock: socket.socket, size: int) -> dict[str, Any]:
    """Send `size` random bytes, then half-close, while reading until EOF."""
    sock.settimeout(TIMEOUT)
    sent = hashlib.sha256()
    failure: list[BaseException] = []

    def sender() -> None:
        try:
            left = size
            while left:
                chunk = os.urandom(min(CHUNK, left))
                sent.update(chunk)
                sock.sendall(chunk)
                left -= len(chunk)
            sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    received = hashlib.sha256()
    count = 0
    while chunk := sock.recv(CHUNK):
        received.update(chunk)
        count += len(chunk)
    thread.join(TIMEOUT)
    if failure:
        raise failure[0]
    return {"sent": size, "sent_sha": sent.hexdigest(), "received": count,
            "received_sha": received.hexdigest()}


def wait_file(go: str | None) -> None:
    deadline = time.monotonic() + TIMEOUT
    while go is not None and not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def kernel_listener(port: int) -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(TIMEOUT)
    return srv


def attach_fill(host: str, port: int, listen_port: int) -> None:
    import tcpstack

    client = tcpstack.attach()
    client.listen(listen_port)
    sock = client.connect(host, port, timeout=10)
    sock.setblocking(False)
    digest = hashlib.sha256()
    written = 0
    block = bytes(range(256)) * 256
    full_since: float | None = None
    deadline = time.monotonic() + TIMEOUT
    # Full means: nothing fits for half a second, the bridge and TCP having had their turn.
    while time.monotonic() < deadline:
        try:
            n = sock.send(block)
        except BlockingIOError:
            now = time.monotonic()
            full_since = full_since or now
            if now - full_since > 0.5:
                break
            time.sleep(0.05)
            continue
        full_since = None
        digest.update(block[:n])
        written += n
    say({"written": written, "sha": digest.hexdigest(), "pid": os.getpid()})
    time.sleep(TIMEOUT)  # until the test kills it, its data still queued


def held_server(port: int, go: Path) -> None:
    with kernel_listener(port) as srv:
        say("ready")
        conn, _ = srv.accept()
        deadline = time.monotonic() + TIMEOUT
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        conn.settimeout(TIMEOUT)
        digest = hashlib.sha256()
        count = 0
        end = "eof"
        try:
            while chunk := conn.recv(CHUNK):
                digest.update(chunk)
                count += len(chunk)
        except ConnectionResetError:
            end = "reset"
        say({"received": count, "sha": digest.hexdigest(), "end": end})


def idle_client(host: str, port: int) -> None:
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    sock.sendall(b"ping")
    got = b""
    while len(got) < 4 and (chunk := sock.recv(4 - len(got))):
        got += chunk
    say("echoed" if got == b"ping" else f"got {got!r}")
    try:
        end = "eof" if sock.recv(CHUNK) == b"" else "data"
    except ConnectionResetError:
        end = "reset"
    say({"end": end})


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "exchange-server":
        with kernel_listener(int(args[0])) as srv:
            say("ready")
            conn, peer = srv.accept()
            with conn:
                wait_file(args[2] if len(args) > 2 else None)
                say({**exchange(conn, int(args[1])), "peer": list(peer)})
    elif mode == "exchange-client":
        with socket.create_connection((args[0], int(args[1])), timeout=TIMEOUT) as sock:
            local = sock.getsockname()
            wait_file(args[3] if len(args) > 3 else None)
            say({**exchange(sock, int(args[2])), "local": list(local)})
    elif mode == "attach-exchange":
        import tcpstack

        with tcpstack.attach() as client, client.listen(int(args[0])) as listener:
            say("listening")
            conn, peer = listener.accept(timeout=TIMEOUT)
            with conn:
                say({**exchange(conn, int(args[1])), "peer": list(peer)})
    elif mode == "attach-fill":
        attach_fill(args[0], int(args[1]), int(args[2]))
    elif mode == "held-server":
        held_server(int(args[0]), Path(args[1]))
    elif mode == "idle-client":
        idle_client(args[0], int(args[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
