#!/usr/bin/env python3
"""Which queue of a multi-queue TUN does the kernel hand a flow's packets to? (as root)

    ip netns add mqx && ip netns exec mqx .venv/bin/python scripts/multiqueue_experiment.py
    ip netns exec mqx .venv/bin/python scripts/multiqueue_experiment.py --steer; ip netns del mqx

Opens interface mqx0 with two queues (IFF_MULTI_QUEUE), then
A: the kernel connects to 10.77.0.2:80 from 200 source ports: its SYNs per queue, and
   whether each SYN's retransmission comes on the same queue;
B: we write 200 SYNs to a kernel listener, the first 100 from queue 0, the rest from
   queue 1: on which queue each SYN-ACK arrives, first and in its retransmissions (at about
   1, 3 and 7 s, with nothing written by us in between).
With --steer, link/steering.py's program picks the queues (ports 50000-50099 queue 0,
50100-50199 queue 1); without it, the kernel's own choice (flow hash, automq).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import sys
import time

from pyroute2 import IPRoute

from tcpstack.link import steering
from tcpstack.link.tun import IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TUN, TUNSETIFF
from tcpstack.net import ipv4
from tcpstack.tcp import segment as tcpseg

QUEUES = 2
STACK, KERNEL = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])


def drain(fds: list[int]) -> list[tuple[int, int, int]]:
    """(queue, source port, destination port) of every IPv4 TCP packet waiting."""
    got = []
    for queue, fd in enumerate(fds):
        while True:
            try:
                packet = os.read(fd, 70000)
            except BlockingIOError:
                break
            if packet[0] >> 4 != 4:
                continue
            ip = ipv4.parse(packet, strict=False)
            if ip.proto == 6:
                sport, dport = struct.unpack("!HH", bytes(ip.payload[:4]))
                got.append((queue, sport, dport))
    return got


def main() -> None:
    steer = "--steer" in sys.argv
    fds = []
    for _ in range(QUEUES):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"mqx0",
                                               IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE))
        fds.append(fd)
    if steer:
        steering.attach(fds[0], QUEUES, 50000, 100)
    with IPRoute() as ipr:
        (index,) = ipr.link_lookup(ifname="mqx0")
        ipr.addr("add", index=index, address="10.77.0.1", prefixlen=24)
        ipr.link("set", index=index, state="up")
    time.sleep(0.3)
    drain(fds)
    socks = []
    for i in range(200):
        s = socket.socket()
        s.setblocking(False)
        s.bind(("10.77.0.1", 40000 + i))
        with contextlib.suppress(BlockingIOError):
            s.connect(("10.77.0.2", 80))
        socks.append(s)
    time.sleep(0.3)
    first: dict[int, int] = {}
    for queue, sport, _ in drain(fds):
        first.setdefault(sport, queue)
    print("A: the kernel's SYNs per queue:", [list(first.values()).count(q)
                                              for q in range(QUEUES)])
    time.sleep(1.3)
    again: dict[int, int] = {}
    for queue, sport, _ in drain(fds):
        again.setdefault(sport, queue)
    same = sum(1 for port, queue in again.items() if first.get(port) == queue)
    print(f"A: retransmitted SYNs on the first one's queue: {same}/{len(again)}")
    for s in socks:
        s.close()
    listener = socket.socket()
    listener.bind(("10.77.0.1", 5000))
    listener.listen(4096)
    pseudo = ipv4.pseudo_header_sum(STACK, KERNEL, 6)
    writer = {}
    for i in range(200):
        port, queue = 50000 + i, i // 100
        writer[port] = queue
        header = tcpseg.build_header(port, 5000, 1000, 0, 0x02, 65535, pseudo,
                                     tcpseg.encode_options(mss=1460))
        os.write(fds[queue], ipv4.build(STACK, KERNEL, 6, header))
    start = time.monotonic()
    seen: dict[int, list[bool]] = {}
    while time.monotonic() - start < 8.5:
        time.sleep(0.05)
        for queue, sport, dport in drain(fds):
            if sport == 5000:
                seen.setdefault(round(time.monotonic() - start), []).append(
                    writer[dport] == queue)
    for second, hits in sorted(seen.items()):
        print(f"B: SYN-ACKs at ~{second} s on the queue that wrote the SYN: "
              f"{sum(hits)}/{len(hits)}")


if __name__ == "__main__":
    main()
