"""A line chat server on the daemon's stack: one process of several sharing it.

    sudo tcpstack up -d                          # the daemon: one stack for every process
    sudo python examples/chat_server.py 6667     # a room; another process may run 6668
    nc 10.77.0.2 6667                            # from the kernel side, in several terminals

Each line a client sends goes to every other client of the room as "HOST:PORT: line". The
sockets are ordinary `socket.socket` objects over the descriptors the daemon hands over
(tcpstack.attach()), so this is the threaded server one would write on the kernel's TCP.
It runs until SIGINT or SIGTERM; its clients then see the connection close (a FIN).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from types import FrameType

import tcpstack

clients: dict[socket.socket, str] = {}
lock = threading.Lock()


def broadcast(line: bytes, sender: socket.socket | None) -> None:
    with lock:
        others = [conn for conn in clients if conn is not sender]
    for conn in others:
        with contextlib.suppress(OSError):  # that client is leaving; its thread removes it
            conn.sendall(line)


def serve(conn: socket.socket, name: str) -> None:
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            broadcast(f"{name}: ".encode() + line, conn)
    with lock:
        clients.pop(conn, None)
    print(f"{name} left", flush=True)


def stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(port: int) -> None:
    signal.signal(signal.SIGTERM, stop)
    with tcpstack.attach() as stack, stack.listen(port) as listener:
        print(f"chat on port {port}", flush=True)
        try:
            while True:
                conn, (host, peer_port) = listener.accept()
                name = f"{host}:{peer_port}"
                with lock:
                    clients[conn] = name
                print(f"{name} joined", flush=True)
                threading.Thread(target=serve, args=(conn, name), daemon=True).start()
        except KeyboardInterrupt:
            pass
        finally:
            with lock:
                for conn in clients:
                    conn.shutdown(socket.SHUT_RDWR)  # wakes its reader; the FIN follows


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6667)
