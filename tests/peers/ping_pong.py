"""Ping-pong client over kernel sockets: ROUNDS one-byte round trips through an echo
server at HOST:PORT, GAP seconds apart, counting the sleeps of the server's process
meanwhile.

    python ping_pong.py HOST PORT ROUNDS GAP SERVER_PID

Each round sends one byte (the round's number, modulo 256) and waits for it to come back.
The gap makes a server that does not poll sleep before each round: back to back, a quick
client's next byte is often in before the server is back in its poll.
Prints one JSON line: the rounds done, whether every byte came back as sent, and the
server's voluntary context switches (its sleeps, from /proc/PID/status) over the rounds.
Exits 1 on any socket error.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def voluntary_switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise RuntimeError(f"no voluntary_ctxt_switches for pid {pid}")


def main() -> int:
    host, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    gap, pid = float(sys.argv[4]), int(sys.argv[5])
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        intact = True
        before = voluntary_switches(pid)
        for i in range(rounds):
            time.sleep(gap)
            ping = bytes([i % 256])
            sock.sendall(ping)
            if sock.recv(1) != ping:
                intact = False
        after = voluntary_switches(pid)
    print(json.dumps({"rounds": rounds, "intact": intact, "server_sleeps": after - before}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as exc:
        print(f"ping_pong: {exc}", file=sys.stderr)
        sys.exit(1)
