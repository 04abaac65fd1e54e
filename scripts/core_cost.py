"""What one round trip or one data segment costs the NetworkStack in-process: no TUN, no
event loop, no kernel, so the numbers hold still on a loaded machine (docs/PERFORMANCE.md).

The peer is Linux-like: it offers MSS, SACK, timestamps and window scaling, and its window
grows on every segment. `pingpong`: a 1-byte segment in (acking our last byte), the
application reads it and writes one byte back, the reply's pass. `receive`: a full
1448-byte in-order segment in, the application reads it (the ACK policy decides what
leaves). `send`: the peer acks every second segment, `--acks K` of those ACKs in one pass
(a GRO receiver's ACKs come several to a read of the TUN), and the application refills
the send buffer. `open`: a round is a connection as `ab` makes one against an HTTP/1.0
server, `--batch B` of them side by side (the SYNs of B in one pass, then their ACKs and
requests, then their FINs): the application answers the request and closes, and each ends
in TIME_WAIT after three packets of ours. Prints microseconds per round (median of the
runs) and the Python and C calls per round; `--profile N` adds cProfile's top N functions.

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
from collections.abc import Callable
from types import FrameType
from typing import Any

from tcpstack.net import ipv4
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import DataReady, Event
from tcpstack.tcp.segment import ACK, FIN, PSH, SYN
from tcpstack.tcp.state import State
from tests.unit.fake_tun import PEER_ISS, STACK_ISS
from tests.unit.link_pair import FixedIsn
from tests.unit.scripted_peer import PEER_ADDR, PEER_PORT, STACK_ADDR

PORT = 80
PSEUDO = ipv4.pseudo_header_sum(PEER_ADDR, STACK_ADDR, PROTO_TCP)
# open: what ab asks and what the bench's 100-byte file draws from the HTTP service.
REQUEST = b"GET /small HTTP/1.0\r\nHost: 10.77.0.2\r\nUser-Agent: ApacheBench/2.3\r\n\r\n"
RESPONSE = (b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 100\r\nConnection: close\r\n\r\n" + b"z" * 100)
FIRST_PEER_PORT = 10000


def _call(work: Callable[[], None]) -> None:
    work()


def _packet(flags: int, seq: int, ack: int, payload: bytes = b"", options: bytes = b"",
            window: int = 502, sport: int = PEER_PORT) -> bytes:
    tcp = tcpseg.build(sport, PORT, seq, ack, flags, window, PSEUDO, options, payload)
    return ipv4.build(PEER_ADDR, STACK_ADDR, PROTO_TCP, tcp)


class Setup:
    """An established connection and the peer's segments for `rounds` rounds, prebuilt."""

    def __init__(self, mode: str, rounds: int, *, offload: bool = False,
                 acks: int = 1, batch: int = 10) -> None:
        self.mode = mode
        self.rounds = rounds
        self.acks = acks  # send: the peer's ACKs per pass
        self.batch = batch  # open: connections side by side
        self.stack = NetworkStack(STACK_ADDR, TcpConfig(), FixedIsn(STACK_ISS), offload=offload)
        self.stack.listen(PORT, backlog=max(batch, 128))
        self.now = 1.0
        syn_options = tcpseg.encode_options(mss=1460, wscale=7, sack_permitted=True,
                                            timestamps=(1000, 0))
        self.syn_options = syn_options
        if mode == "open":
            self.stack.on_event = self._answer
            return
        self.stack.service([_packet(SYN, PEER_ISS, 0, options=syn_options, window=64240)],
                           self.now)
        self.stack.output.clear()
        self.conn: Connection = next(iter(self.stack.connections.values()))
        peer_nxt, stack_nxt, tsval = PEER_ISS + 1, STACK_ISS + 1, 1001
        # The peer echoes the stack's latest TSval, as Linux does (the SYN-ACK's here).
        echo = self.conn.tx.ts.clock()
        self.now += 0.001
        self.stack.service([_packet(ACK, peer_nxt, stack_nxt,
                                    options=tcpseg.encode_timestamps(tsval, echo))], self.now)
        self.stack.output.clear()
        self.peer_nxt, self.tsval = peer_nxt, tsval
        self.packets = []
        if mode == "send":
            self.data = memoryview(bytes(1 << 20))
            return  # the peer's ACKs answer what was sent: made as the rounds go
        ts = self.conn.tx.ts
        for i in range(rounds):
            tsval += 1
            # The stack's TSval of the round before (its clock is in ms; see run's times).
            ts.now = self.now + i * 0.0001
            options = tcpseg.encode_timestamps(tsval, ts.clock())
            window = 503 + i  # Linux's window grows on nearly every segment
            if mode == "pingpong":
                self.packets.append(_packet(ACK | PSH, peer_nxt + i, stack_nxt + i, b"x",
                                            options, window))
            else:
                self.packets.append(_packet(ACK, peer_nxt + i * 1448, stack_nxt, b"y" * 1448,
                                            options, window))
        ts.now = self.now  # as it was: the rounds set it as they go

    def run(self, measure: Callable[[Callable[[], None]], None] = _call) -> tuple[int, int]:
        """Every round once; returns (bytes the application read, packets the stack sent).
        The stack's own work goes through `measure` (the peer's, in `send`, does not)."""
        if self.mode == "send":
            return self._run_send(measure)
        if self.mode == "open":
            return self._run_open(measure)
        stack, conn, now = self.stack, self.conn, self.now
        reply = self.mode == "pingpong"
        counts = [0, 0]  # read, sent

        def rounds() -> None:
            nonlocal now
            for packet in self.packets:
                now += 0.0001
                stack.service([packet], now)
                counts[0] += len(conn.read())
                if reply:
                    conn.send(b"x")
                    stack.service((), now)
                counts[1] += len(stack.output)
                stack.output.clear()

        measure(rounds)
        self._check()
        return counts[0], counts[1]

    def _answer(self, conn: Connection, event: Event) -> None:
        """open: the HTTP/1.0 server's part, without its parsing and file."""
        if isinstance(event, DataReady):
            conn.read()
            conn.send(RESPONSE)
            conn.close(self.now)

    def _run_open(self, measure: Callable[[Callable[[], None]], None]) -> tuple[int, int]:
        """Returns (connections that reached TIME_WAIT, packets the stack sent)."""
        stack = self.stack
        sent = 0
        peer_iss, ours = PEER_ISS, STACK_ISS + 1
        done = 0
        for first in range(0, self.rounds, self.batch):
            ports = range(FIRST_PEER_PORT + first,
                          FIRST_PEER_PORT + min(first + self.batch, self.rounds))
            passes = [[_packet(SYN, peer_iss, 0, options=self.syn_options, window=64240,
                               sport=port) for port in ports]]
            for step in range(3):
                self.now += 0.0001
                packets = passes[step]
                measure(lambda: stack.service(packets, self.now))  # noqa: B023 (at once)
                sent += len(stack.output)
                stack.output.clear()
                # The peer's next segments echo our TSval of this pass (the clock in ms).
                options = tcpseg.encode_timestamps(2000 + step,
                                                   int(self.now * 1000) & 0xFFFFFFFF)
                if step == 0:  # the handshake's ACK and the request, as ab sends them
                    passes.append([_packet(flags, peer_iss + 1, ours, payload,
                                           options=options, sport=port)
                                   for port in ports
                                   for flags, payload in ((ACK, b""), (ACK | PSH, REQUEST))])
                elif step == 1:  # the response and our FIN acknowledged, ab's FIN
                    passes.append([_packet(ACK | FIN, peer_iss + 1 + len(REQUEST),
                                           ours + len(RESPONSE) + 1, options=options,
                                           sport=port) for port in ports])
            done += sum(1 for port in ports
                        if stack.connections[(PEER_ADDR, port, PORT)].state is State.TIME_WAIT)
        self._check()
        return done, sent

    def _check(self) -> None:
        if self.stack.counters["internal_errors"]:
            raise SystemExit(f"internal error: {self.stack.last_internal_error!r}")

    def _run_send(self, measure: Callable[[Callable[[], None]], None]) -> tuple[int, int]:
        """Returns (bytes the peer acked, segments the stack sent)."""
        stack, conn, now, data = self.stack, self.conn, self.now, self.data
        peer_nxt, tsval = self.peer_nxt, self.tsval
        acked = conn.snd.una
        unacked: list[tuple[int, int]] = []  # (end sequence number, TSval) of each segment
        sent = 0

        def fill() -> None:
            while conn.send(data):
                pass

        def take_output() -> int:
            count = 0
            for head, payload, _ in stack.output:
                seq = int.from_bytes(head[24:28], "big")
                # The GSO size is the segment's MSS: the link would cut it into that many.
                pieces = max(1, -(-len(payload) // conn.snd.mss)) if payload else 0
                for k in range(pieces):
                    end = seq + min((k + 1) * conn.snd.mss, len(payload))
                    unacked.append((end & 0xFFFFFFFF, int.from_bytes(head[44:48], "big")))
                count += pieces
            stack.output.clear()
            return count

        measure(fill)
        measure(lambda: stack.service((), now))
        sent += take_output()
        for i in range(self.rounds):
            now += 0.0001
            packets = []
            if len(unacked) < 2:
                raise SystemExit("the stack stopped sending")
            for _ in range(min(self.acks, len(unacked) // 2)):  # the first flight is short
                tsval += 1
                end, echo = unacked[1]
                del unacked[:2]
                acked = end
                packets.append(_packet(ACK, peer_nxt, acked, window=min(503 + i, 1000),
                                       options=tcpseg.encode_timestamps(tsval, echo)))
            measure(lambda: stack.service(packets, now))  # noqa: B023 (called at once)
            sent += take_output()  # the link writes the pass's packets before the app runs
            measure(fill)
        self._check()
        return (acked - (STACK_ISS + 1)) & 0xFFFFFFFF, sent


def _calls(setup: Setup) -> tuple[Counter[str], int]:
    """The Python and C calls of the stack's work, and the segments it sent."""
    calls: Counter[str] = Counter()

    def count(frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            calls[event] += 1

    def counted(work: Callable[[], None]) -> None:
        sys.setprofile(count)
        try:
            work()
        finally:
            sys.setprofile(None)
        calls["c_call"] -= 1  # setprofile(None) itself

    _, sent = setup.run(counted)
    return calls, sent


def _timed_run(setup: Setup) -> float:
    """Seconds of the stack's own work in one run."""
    spent = 0.0

    def timed(work: Callable[[], None]) -> None:
        nonlocal spent
        start = time.perf_counter()
        work()
        spent += time.perf_counter() - start

    setup.run(timed)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("pingpong", "receive", "send", "open"))
    parser.add_argument("--offload", action="store_true",
                        help="the link segments (GSO) and finishes checksums")
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--acks", type=int, default=1, metavar="K",
                        help="send: the peer's ACKs (each of two segments) per pass")
    parser.add_argument("--batch", type=int, default=10, metavar="B",
                        help="open: connections side by side (in each pass)")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if args.acks < 1:
        parser.error("--acks must be at least 1")
    if args.batch < 1:
        parser.error("--batch must be at least 1")

    def setup() -> Setup:
        return Setup(args.mode, args.rounds, offload=args.offload, acks=args.acks,
                     batch=args.batch)

    times = [_timed_run(setup()) / args.rounds * 1e6 for _ in range(args.runs)]
    calls, sent = _calls(setup())
    per_segment = (f" ({calls['call'] / sent:.1f} and {calls['c_call'] / sent:.1f} per "
                   f"segment sent, {sent / args.rounds:.2f} segments a round)"
                   if args.mode == "send" else "")
    flags = ((" --offload" if args.offload else "")
             + (f" --acks {args.acks}" if args.acks != 1 else "")
             + (f" --batch {args.batch}" if args.mode == "open" else ""))
    print(f"{args.mode}{flags}: "
          f"{statistics.median(times):.1f} us per round (runs: "
          + ", ".join(f"{t:.1f}" for t in times) + "); "
          f"{calls['call'] / args.rounds:.1f} Python calls, "
          f"{calls['c_call'] / args.rounds:.1f} C calls per round" + per_segment)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(setup().run, _call)
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
