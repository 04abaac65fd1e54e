"""The Python clients of `make bench` (scripts/bench.py), one per measurement that no common
tool makes. Each runs in a network namespace against tcpstack or the kernel, on the kernel's
TCP, and prints one JSON line with what it measured:

    pingpong HOST PORT --rounds N       1-byte round trips over one connection to an echo
                                        server: {"p50_us", "p99_us", "rounds"}
    opens HOST PORT --count N           connect, 1 byte echoed, close; one after the other:
                                        {"count", "seconds", "per_second"}
    upload HOST PORT --bytes N          send N bytes into a discard server, half-close, wait
                                        for its close: {"bytes", "seconds", "total_retrans"}
    idle HOST PORT --count N [--sources A,B]
                                        open N connections (from the source addresses in
                                        turn) and hold them: prints {"opened", "seconds"},
                                        then waits for SIGTERM
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import socket
import struct
import time

from bench_report import percentile

CONNECT_TIMEOUT = 10.0
# struct tcp_info (linux/tcp.h): tcpi_total_retrans is the u32 at byte 100.
TCPI_TOTAL_RETRANS = 100
IDLE_CONCURRENCY = 64  # connects in flight at once: below the servers' backlog of 128


def emit(result: dict[str, object]) -> None:
    print(json.dumps(result), flush=True)


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Raising the hard limit needs CAP_SYS_RESOURCE, which a container may not grant.
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def connect(host: str, port: int, source: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    if source is not None:
        sock.bind((source, 0))
    sock.connect((host, port))
    return sock


def pingpong(host: str, port: int, rounds: int) -> None:
    with connect(host, port) as sock:
        # Without NODELAY the kernel's Nagle would hold nothing here (one byte in flight at a
        # time), but delayed-ACK interplay is not what this row measures.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        warmup = min(50, rounds)
        times = []
        for i in range(warmup + rounds):
            start = time.perf_counter()
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise SystemExit("echo server closed or answered something else")
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e6)
    emit({"rounds": rounds, "p50_us": percentile(times, 50), "p99_us": percentile(times, 99)})


def opens(host: str, port: int, count: int) -> None:
    start = time.perf_counter()
    for _ in range(count):
        # A byte echoed makes the application part of each opening: the kernel completes
        # handshakes by itself, and a client that only connects outruns an application that
        # accepts slower, until the accept queue overflows and a SYN waits out a 1 s RTO.
        with connect(host, port) as sock:
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise SystemExit("echo server closed or answered something else")
    seconds = time.perf_counter() - start
    emit({"count": count, "seconds": seconds, "per_second": count / seconds})


def upload(host: str, port: int, size: int) -> None:
    chunk = memoryview(bytes(1 << 20))
    with connect(host, port) as sock:
        sock.settimeout(None)
        start = time.perf_counter()
        left = size
        while left:
            n = min(left, len(chunk))
            sock.sendall(chunk[:n])
            left -= n
        sock.shutdown(socket.SHUT_WR)
        # The discard server closes once it has read our FIN, so EOF here means it has every
        # byte: the clock stops on delivery, not on the last write into the socket buffer.
        while sock.recv(1 << 16):
            pass
        seconds = time.perf_counter() - start
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        retrans = struct.unpack_from("I", info, TCPI_TOTAL_RETRANS)[0]
    emit({"bytes": size, "seconds": seconds, "total_retrans": retrans})


async def _open_idle(host: str, port: int, count: int, sources: list[str | None]
                     ) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    held: list[socket.socket] = []
    gate = asyncio.Semaphore(IDLE_CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            source = sources[i % len(sources)]
            if source is not None:
                sock.bind((source, 0))
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), CONNECT_TIMEOUT)
            held.append(sock)

    await asyncio.gather(*(one(i) for i in range(count)))
    return held


def idle(host: str, port: int, count: int, sources: list[str | None]) -> None:
    raise_fd_limit(count + 1024)
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start = time.perf_counter()
    held = asyncio.run(_open_idle(host, port, count, sources))
    emit({"opened": len(held), "seconds": time.perf_counter() - start})
    while not stop:
        time.sleep(0.1)
    for sock in held:
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="bench clients (see the module docstring)")
    sub = parser.add_subparsers(dest="client", required=True)
    for name in ("pingpong", "opens", "upload", "idle"):
        p = sub.add_parser(name)
        p.add_argument("host")
        p.add_argument("port", type=int)
        if name == "pingpong":
            p.add_argument("--rounds", type=int, default=2000)
        elif name == "upload":
            p.add_argument("--bytes", type=int, required=True)
        else:
            p.add_argument("--count", type=int, required=True)
        if name == "idle":
            p.add_argument("--sources", default="", help="comma-separated source addresses")
    args = parser.parse_args(argv)
    if args.client == "pingpong":
        pingpong(args.host, args.port, args.rounds)
    elif args.client == "opens":
        opens(args.host, args.port, args.count)
    elif args.client == "upload":
        upload(args.host, args.port, args.bytes)
    else:
        sources: list[str | None] = [s for s in args.sources.split(",") if s] or [None]
        idle(args.host, args.port, args.count, sources)


if __name__ == "__main__":
    main()
