"""Whatever bytes arrive, the stack counts and drops what it cannot use and keeps running."""

from __future__ import annotations

import asyncio
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.io.driver import StackDriver
from tcpstack.net import ipv4
from tcpstack.net.checksum import checksum
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack
from tcpstack.tcp import segment as tcpseg

LOCAL = bytes([10, 77, 0, 2])
PEER = bytes([10, 77, 0, 1])


def _stack() -> NetworkStack:
    stack = NetworkStack(LOCAL)
    stack.listen(80)
    return stack


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    stack = _stack()
    stack.receive(data, 0.0)
    stack.flush(0.0)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=20, max_size=80), st.booleans())
def test_random_tcp_segments_in_valid_ip_never_raise(tcp: bytes, to_listener: bool) -> None:
    """A well-formed IPv4 packet around arbitrary TCP bytes, the checksum fixed up so the
    segment reaches the option parser and the state machine."""
    stack = _stack()
    tcp = bytearray(tcp)
    if to_listener:
        tcp[2:4] = (80).to_bytes(2, "big")
    tcp[16:18] = b"\0\0"
    pseudo = ipv4.pseudo_header_sum(PEER, LOCAL, PROTO_TCP)
    tcp[16:18] = checksum(tcp, pseudo + len(tcp)).to_bytes(2, "big")
    stack.receive(ipv4.build(PEER, LOCAL, PROTO_TCP, bytes(tcp)), 0.0)
    stack.flush(0.0)
    assert sum(stack.counters.values()) >= 1  # it was seen: counted as input or as a drop


def test_segment_with_zero_length_option_is_counted_not_raised() -> None:
    stack = _stack()
    pseudo = ipv4.pseudo_header_sum(PEER, LOCAL, PROTO_TCP)
    options = bytes([2, 0, 0, 0])  # MSS kind with length 0: impossible
    seg = tcpseg.build(40000, 80, 1, 0, tcpseg.SYN, 1000, pseudo, options)
    stack.receive(ipv4.build(PEER, LOCAL, PROTO_TCP, seg), 0.0)
    assert stack.counters["tcp_bad_option"] == 1
    assert not stack.connections


def test_header_length_lies_are_counted() -> None:
    stack = _stack()
    good = ipv4.build(PEER, LOCAL, PROTO_TCP, b"x" * 20)
    # Total length claims more bytes than arrived.
    lying = good[:2] + struct.pack("!H", len(good) + 100) + good[4:]
    stack.receive(lying, 0.0)
    assert stack.counters["ip_truncated"] == 1


def _syn(options: bytes, flags: int = tcpseg.SYN) -> bytes:
    pseudo = ipv4.pseudo_header_sum(PEER, LOCAL, PROTO_TCP)
    return ipv4.build(PEER, LOCAL, PROTO_TCP,
                      tcpseg.build(40000, 80, 1, 0, flags, 1000, pseudo, options))


def test_a_tiny_peer_mss_is_raised_to_the_linux_floor() -> None:
    stack = _stack()
    stack.receive(_syn(tcpseg.encode_options(mss=1)), 0.0)
    (conn,) = stack.connections.values()
    assert conn.snd.mss == 48  # not one segment per byte (CVE-2019-11479)


def test_syn_fin_to_a_listener_opens_nothing() -> None:
    stack = _stack()
    stack.receive(_syn(b"", tcpseg.SYN | tcpseg.FIN), 0.0)
    stack.flush(0.0)
    assert not stack.connections
    assert stack.output == []


def test_a_bug_in_packet_processing_costs_one_packet_not_the_driver() -> None:
    class FakeTun:
        offload = False
        fd = -1

        def __init__(self) -> None:
            self.packets = [b"first", b"second"]

        def read(self) -> tuple[bytes, bool]:
            if not self.packets:
                raise BlockingIOError
            return self.packets.pop(0), False

    stack = _stack()
    seen: list[bytes] = []

    def broken_receive(packet: bytes, now: float, trusted: bool = False) -> None:
        seen.append(packet)
        raise RuntimeError("a bug")

    stack.receive = broken_receive  # type: ignore[method-assign]
    loop = asyncio.new_event_loop()
    try:
        driver = StackDriver(stack, FakeTun(), loop)  # type: ignore[arg-type]
        driver._on_readable()
    finally:
        loop.close()
    assert seen == [b"first", b"second"]
    assert stack.counters["internal_errors"] == 2
