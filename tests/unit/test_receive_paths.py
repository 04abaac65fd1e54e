"""The stack reads nearly every packet (IPv4 without options, carrying TCP, 40 bytes or more)
in one unpack of both headers, and every other one through ipv4.parse and tcpseg.parse. Both
ways must drop the same packets for the same reasons and take the same segments: each case
below goes once each way (the second with a NOP-padded IPv4 header, which takes the other)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpstack.net import ipv4
from tcpstack.net.checksum import checksum
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.segment import ACK, SYN
from tests.unit.link_pair import FixedIsn
from tests.unit.test_checksum import reference_checksum

PEER = bytes([10, 0, 0, 1])
US = bytes([10, 0, 0, 2])
PSEUDO = ipv4.pseudo_header_sum(PEER, US, PROTO_TCP)
IP_OPTIONS = bytes([1, 1, 1, 0])  # NOP NOP NOP EOL: IHL 6


def _packet(tcp: bytes, *, ip_options: bool, total_delta: int = 0, frag: int = ipv4.FLAG_DF,
            dst: bytes = US, bad_ip_checksum: bool = False) -> bytes:
    options = IP_OPTIONS if ip_options else b""
    ihl = 5 + len(options) // 4
    total = 4 * ihl + len(tcp) + total_delta
    header = ipv4.HEADER.pack(0x40 | ihl, 0, total, 0, frag, 64, PROTO_TCP, 0, PEER,
                              dst) + options
    csum = reference_checksum(header) ^ (1 if bad_ip_checksum else 0)
    return header[:10] + csum.to_bytes(2, "big") + header[12:] + tcp


def _syn(options: bytes = b"", payload: bytes = b"") -> bytes:
    return tcpseg.build(40000, 80, 7, 0, SYN, 1000, PSEUDO, options, payload)


def _flip(tcp: bytes, at: int) -> bytes:
    return tcp[:at] + bytes([tcp[at] ^ 0x40]) + tcp[at + 1:]


CASES: dict[str, tuple[bytes, dict[str, object]]] = {
    "a SYN that opens": (_syn(tcpseg.encode_options(mss=1460)), {}),
    "a SYN with a payload": (_syn(payload=b"early data"), {}),
    "total below the header": (_syn(), {"total_delta": -len(_syn()) - 1}),
    "total beyond the bytes": (_syn(), {"total_delta": 1}),
    "total cuts the TCP header": (_syn(payload=bytes(20)), {"total_delta": -30}),
    "padding after total": (_syn() + bytes(6), {"total_delta": -6}),
    "IP checksum": (_syn(), {"bad_ip_checksum": True}),
    "a fragment": (_syn(), {"frag": ipv4.FLAG_MF}),
    "a later fragment": (_syn(), {"frag": 3}),
    "not for us": (_syn(), {"dst": bytes([10, 0, 0, 9])}),
    "TCP checksum": (_flip(_syn(payload=b"x" * 30), 30), {}),
    "data offset below 5": (tcpseg.HEADER.pack(40000, 80, 7, 0, (4 << 12) | SYN, 1000,
                                                0, 0) + bytes(20), {}),
    "data offset beyond the segment": (tcpseg.HEADER.pack(40000, 80, 7, 0, (15 << 12) | SYN,
                                                          1000, 0, 0) + bytes(20), {}),
    "an impossible option": (_syn(bytes([2, 0, 0, 0])), {}),
    "an ACK to nobody": (tcpseg.build(40000, 81, 7, 9, ACK, 1000, PSEUDO, b"", bytes(30)), {}),
}


def _fix_checksum(tcp: bytes) -> bytes:
    """Hand-packed headers above: give them a right TCP checksum, so only their defect counts."""
    zeroed = tcp[:16] + b"\0\0" + tcp[18:]
    csum = checksum(zeroed, PSEUDO + len(zeroed))
    return zeroed[:16] + csum.to_bytes(2, "big") + zeroed[18:]


def _outcome(tcp: bytes, ip_options: bool, **kw: object) -> tuple[Counter[str], list[bytes]]:
    stack = NetworkStack(US, isn=FixedIsn(1000))
    stack.listen(80)
    stack.receive(_packet(tcp, ip_options=ip_options, **kw), 0.0)  # type: ignore[arg-type]
    stack.flush(0.0)
    return stack.counters, [head + bytes(payload) for head, payload, _ in stack.output]


@pytest.mark.parametrize("case", CASES)
def test_both_ways_of_reading_a_packet_agree(case: str) -> None:
    tcp, kw = CASES[case]
    if case.startswith("data offset"):
        tcp = _fix_checksum(tcp)
    fast = _outcome(tcp, ip_options=False, **kw)
    slow = _outcome(tcp, ip_options=True, **kw)
    assert fast == slow
    assert (fast[0]["in_errors"] + fast[0]["ip_not_for_us"] + fast[0]["segs_in"]
            + fast[0]["ip_frag_in"]) == 1


@pytest.mark.parametrize(("case", "reason"), [
    ("total below the header", "ip_bad_length"), ("total beyond the bytes", "ip_truncated"),
    ("total cuts the TCP header", "tcp_truncated"), ("IP checksum", "ip_bad_checksum"),
    ("TCP checksum", "tcp_bad_checksum"), ("data offset below 5", "tcp_bad_offset"),
    ("data offset beyond the segment", "tcp_bad_offset"),
    ("an impossible option", "tcp_bad_option")])
def test_the_one_unpack_way_keeps_every_drop_reason(case: str, reason: str) -> None:
    tcp, kw = CASES[case]
    if case.startswith("data offset"):
        tcp = _fix_checksum(tcp)
    counters, sent = _outcome(tcp, ip_options=False, **kw)
    assert (counters[reason], counters["in_errors"], counters["segs_in"], sent) == (1, 1, 0, [])


@pytest.mark.parametrize("case", ["a fragment", "a later fragment"])
def test_a_fragment_is_held_for_reassembly_on_either_way(case: str) -> None:
    tcp, kw = CASES[case]
    for ip_options in (False, True):
        counters, sent = _outcome(tcp, ip_options=ip_options, **kw)
        assert (counters["ip_frag_in"], counters["in_errors"], counters["segs_in"], sent) == (
            1, 0, 0, [])


@given(st.binary(min_size=20, max_size=80), st.booleans())
def test_random_tcp_bytes_are_read_alike_both_ways(tcp: bytes, trusted: bool) -> None:
    outcomes = []
    for ip_options in (False, True):
        stack = NetworkStack(US, isn=FixedIsn(1000))
        stack.listen(80)
        stack.receive(_packet(tcp, ip_options=ip_options), 0.0, trusted)
        stack.flush(0.0)
        outcomes.append((stack.counters, [head + bytes(p) for head, p, _ in stack.output]))
    assert outcomes[0] == outcomes[1]
