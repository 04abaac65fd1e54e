"""Whatever bytes arrive, the stack counts and drops what it cannot use and keeps running."""

from __future__ import annotations

import asyncio
import struct

import pytest
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


@pytest.mark.instruments
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


def _syn_from(src: bytes, flags: int = tcpseg.SYN, dport: int = 80,
              reserved: int = 0) -> bytes:
    pseudo = ipv4.pseudo_header_sum(src, LOCAL, PROTO_TCP)
    tcp = bytearray(tcpseg.build(40000, dport, 1, 0, flags, 1000, pseudo, b""))
    if reserved:
        tcp[12] |= reserved
        tcp[16:18] = b"\0\0"
        tcp[16:18] = checksum(bytes(tcp), pseudo + len(tcp)).to_bytes(2, "big")
    return ipv4.build(src, LOCAL, PROTO_TCP, bytes(tcp))


@pytest.mark.parametrize(("src", "reason"), [
    (LOCAL, "ip_land"),                      # our own address: the LAND attack
    (bytes([224, 0, 0, 1]), "ip_bad_source"),  # multicast
    (bytes([255, 255, 255, 255]), "ip_bad_source"),
    (bytes([0, 0, 0, 0]), "ip_bad_source"),
    (bytes([127, 0, 0, 1]), "ip_bad_source"),
])
def test_syns_from_sources_no_host_can_have_are_counted_and_unanswered(src: bytes,
                                                                     reason: str) -> None:
    stack = _stack()
    stack.service([_syn_from(src)], 0.0)
    assert (stack.counters[reason], stack.counters["in_errors"], stack.output,
            stack.connections) == (1, 1, [], {})


def test_an_echo_request_from_a_broadcast_source_is_not_answered() -> None:
    stack = _stack()
    request = bytes([8, 0, 0xF7, 0xFF, 0, 0, 0, 0])
    stack.service([ipv4.build(bytes([255, 255, 255, 255]), LOCAL, 1, request)], 0.0)
    assert (stack.counters["ip_bad_source"], stack.output) == (1, [])


def test_null_syn_fin_and_reserved_bits_are_counted_and_handled_as_rfc_9293_says() -> None:
    stack = _stack()
    stack.service([_syn_from(PEER, flags=0, dport=81)], 0.0)   # a NULL scan of a closed port
    assert stack.counters["tcp_no_flags"] == 1 and stack.counters["rst_out"] == 1
    stack.service([_syn_from(PEER, flags=tcpseg.SYN | tcpseg.FIN)], 0.0)
    assert stack.counters["tcp_syn_fin"] == 1 and not stack.connections  # dropped
    stack.service([_syn_from(PEER, reserved=0x0E)], 0.0)  # reserved bits: ignored, counted
    assert stack.counters["tcp_reserved_bits"] == 1 and len(stack.connections) == 1
