"""Ephemeral ports (RFC 6056 3.3.4, algorithm 4): a keyed hash of the destination picks
where the search starts, a counter per table slot moves it on; always inside the stack's
range, which with `--workers` is the worker's own slice."""

from __future__ import annotations

import itertools

from tcpstack.stack import EPHEMERAL_PORTS, NetworkStack
from tcpstack.tcp.isn import IsnGenerator

LOCAL = bytes([10, 77, 0, 2])
PEER = bytes([10, 77, 0, 1])


def _stack(secret: bytes = b"\x07" * 16, ports: range = EPHEMERAL_PORTS) -> NetworkStack:
    return NetworkStack(LOCAL, isn=IsnGenerator(secret), ephemeral_ports=ports)


def test_ports_towards_many_destinations_are_spread_over_the_range() -> None:
    stack = _stack()
    opened = [stack.connect(PEER, 1000 + i, 0.0).local_port for i in range(200)]
    assert all(port in EPHEMERAL_PORTS for port in opened)
    assert len(set(opened)) == 200
    steps = {(b - a) % len(EPHEMERAL_PORTS) for a, b in itertools.pairwise(opened)}
    assert len(steps) > 190  # not sequential: no step repeats to speak of
    assert max(opened) - min(opened) > len(EPHEMERAL_PORTS) // 2


def test_reconnecting_to_one_destination_moves_on_through_the_range() -> None:
    stack = _stack()
    first = stack.connect(PEER, 80, 0.0).local_port
    second = stack.connect(PEER, 80, 0.0).local_port
    start = EPHEMERAL_PORTS.start
    assert second - start == (first - start + 1) % len(EPHEMERAL_PORTS)


def test_the_choice_depends_on_the_secret() -> None:
    ours = [_stack(b"\x07" * 16).connect(PEER, 80 + i, 0.0).local_port for i in range(8)]
    theirs = [_stack(b"\x08" * 16).connect(PEER, 80 + i, 0.0).local_port for i in range(8)]
    assert ours != theirs


def test_a_workers_slice_is_never_left() -> None:
    ports = range(46884, 61000)
    stack = _stack(ports=ports)
    opened = [stack.connect(bytes([10, 77, i // 250, i % 250 + 1]), 80, 0.0).local_port
              for i in range(500)]
    assert all(port in ports for port in opened)
    # Towards different destinations a port may repeat (the 4-tuples differ); spread anyway.
    assert len(set(opened)) > 450
    assert min(opened) - ports.start < 200 and ports.stop - max(opened) < 200
