"""What one round trip or one data segment costs the NetworkStack in-process: no TUN, no
event loop, no kernel, so the numbers hold still on a loaded machine (docs/PERFORMANCE.md).

The peer is Linux-like: it offers MSS, SACK, timestamps and window scaling, and its window
grows on every segment. `pingpong`: a 1-byte segment in (acking our last byte), the
application reads it and writes one byte back, the reply's pass. `receive`: a full
1448-byte in-order segment in, the application reads it (the ACK policy decides what
leaves). Prints microseconds per round (median of the runs) and the Python and C calls per
round; `--profile N` adds cProfile's top N functions.

    PYTHONPATH=. python scripts/core_cost.py pingpong --rounds 3000 --runs 5
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections import Counter
from types import FrameType
from typing import Any

from tcpstack.net import ipv4
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.segment import ACK, PSH, SYN
from tests.unit.fake_tun import PEER_ISS, STACK_ISS
from tests.unit.link_pair import FixedIsn
from tests.unit.scripted_peer import PEER_ADDR, PEER_PORT, STACK_ADDR

PORT = 80
PSEUDO = ipv4.pseudo_header_sum(PEER_ADDR, STACK_ADDR, PROTO_TCP)


def _packet(flags: int, seq: int, ack: int, payload: bytes = b"", options: bytes = b"",
            window: int = 502) -> bytes:
    tcp = tcpseg.build(PEER_PORT, PORT, seq, ack, flags, window, PSEUDO, options, payload)
    return ipv4.build(PEER_ADDR, STACK_ADDR, PROTO_TCP, tcp)


class Setup:
    """An established connection and the peer's segments for `rounds` rounds, prebuilt."""

    def __init__(self, mode: str, rounds: int) -> None:
        self.mode = mode
        self.stack = NetworkStack(STACK_ADDR, TcpConfig(), FixedIsn(STACK_ISS))
        self.stack.listen(PORT)
        self.now = 1.0
        syn_options = tcpseg.encode_options(mss=1460, wscale=7, sack_permitted=True,
                                            timestamps=(1000, 0))
        self.stack.service([_packet(SYN, PEER_ISS, 0, options=syn_options, window=64240)],
                           self.now)
        self.stack.output.clear()
        peer_nxt, stack_nxt, tsval = PEER_ISS + 1, STACK_ISS + 1, 1001
        self.now += 0.001
        self.stack.service([_packet(ACK, peer_nxt, stack_nxt,
                                    options=tcpseg.encode_timestamps(tsval, 0))], self.now)
        self.stack.output.clear()
        self.conn: Connection = next(iter(self.stack.connections.values()))
        self.packets = []
        for i in range(rounds):
            tsval += 1
            options = tcpseg.encode_timestamps(tsval, 0)
            window = 503 + i  # Linux's window grows on nearly every segment
            if mode == "pingpong":
                self.packets.append(_packet(ACK | PSH, peer_nxt + i, stack_nxt + i, b"x",
                                            options, window))
            else:
                self.packets.append(_packet(ACK, peer_nxt + i * 1448, stack_nxt, b"y" * 1448,
                                            options, window))

    def run(self) -> tuple[int, int]:
        """Every round once; returns (bytes the application read, packets the stack sent)."""
        stack, conn, now = self.stack, self.conn, self.now
        reply = self.mode == "pingpong"
        read = sent = 0
        for packet in self.packets:
            now += 0.0001
            stack.service([packet], now)
            read += len(conn.read())
            if reply:
                conn.send(b"x")
                stack.service((), now)
            sent += len(stack.output)
            stack.output.clear()
        if stack.counters["internal_errors"]:
            raise SystemExit(f"internal error: {stack.last_internal_error!r}")
        return read, sent


def _calls(setup: Setup) -> Counter[str]:
    calls: Counter[str] = Counter()

    def count(frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            calls[event] += 1

    sys.setprofile(count)
    try:
        setup.run()
    finally:
        sys.setprofile(None)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("pingpong", "receive"))
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        setup = Setup(args.mode, args.rounds)
        start = time.perf_counter()
        setup.run()
        times.append((time.perf_counter() - start) / args.rounds * 1e6)
    calls = _calls(Setup(args.mode, args.rounds))
    print(f"{args.mode}: {statistics.median(times):.1f} us per round (runs: "
          + ", ".join(f"{t:.1f}" for t in times) + "); "
          f"{calls['call'] / args.rounds:.1f} Python calls, "
          f"{calls['c_call'] / args.rounds:.1f} C calls per round")
    if args.profile:
        setup = Setup(args.mode, args.rounds)
        profile = cProfile.Profile()
        profile.runcall(setup.run)
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
