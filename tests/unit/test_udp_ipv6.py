"""UDP over IPv6 in the stack, in-process: a datagram to a bound port reaches its endpoint
(which takes both families), a reply leaves with an IPv6 header and a checksum over RFC
8200 8.1's pseudo-header, a closed port draws an ICMPv6 port unreachable (RFC 4443 3.1)
quoting the datagram, the path MTU is IPv6's (48 bytes of headers; a packet too big never
below 1280), and ICMPv6 errors reach a connected endpoint as Linux reports them."""

from __future__ import annotations

import errno
import struct

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6

from tcpstack.net import icmpv6, ipv6, udp
from tcpstack.net.checksum import ones_complement_sum
from tcpstack.stack import NetworkStack
from tcpstack.udp.endpoint import UdpEndpoint

LOCAL = bytes([10, 77, 0, 2])
LOCAL6 = bytes.fromhex("fd770000000000000000000000000002")
PEER6 = bytes.fromhex("fd770000000000000000000000000001")
ROUTER6 = bytes.fromhex("fd7700000000000000000000000000fe")
PROTO_UDP = udp.PROTO_UDP


def _stack() -> NetworkStack:
    return NetworkStack(LOCAL, address6=LOCAL6)


def _datagram6(sport: int, dport: int, payload: bytes, src: bytes = PEER6) -> bytes:
    return ipv6.build(src, LOCAL6, PROTO_UDP, udp.build(src, LOCAL6, sport, dport, payload))


def _received(endpoint: UdpEndpoint) -> list[tuple[bytes, bytes, int]]:
    out = []
    while (datagram := endpoint.receive()) is not None:
        out.append(datagram)
    return out


def _icmpv6(icmp_type: int, code: int, quoted: bytes, word: int = 0) -> bytes:
    body = struct.pack("!BBHI", icmp_type, code, 0, word) + quoted
    partial = ipv6.pseudo_header(ROUTER6, LOCAL6, ipv6.PROTO_ICMPV6, len(body))
    csum = ~((ones_complement_sum(body) + partial) % 0xFFFF) & 0xFFFF
    return ipv6.build(ROUTER6, LOCAL6, ipv6.PROTO_ICMPV6,
                      body[:2] + csum.to_bytes(2, "big") + body[4:])


def test_a_datagram_over_ipv6_reaches_its_endpoint_and_the_reply_is_scapys() -> None:
    stack = _stack()
    endpoint = stack.udp_open(7)
    stack.service([_datagram6(40000, 7, b"hello six")], 0.0)
    assert _received(endpoint) == [(b"hello six", PEER6, 40000)]
    stack.udp_sendto(endpoint, b"back", 0.0, PEER6, 40000)
    ((headers, payload, _),) = stack.output
    wire = headers + bytes(payload)
    reference = IPv6(bytes(IPv6(src="fd77::2", dst="fd77::1") / UDP(sport=7, dport=40000) /
                           b"back"))
    assert wire == bytes(reference)
    assert (stack.counters["udp_in_datagrams"], stack.counters["udp_out_datagrams"]) == (1, 1)


def test_a_closed_port_draws_an_icmpv6_port_unreachable_quoting_the_datagram() -> None:
    stack = _stack()
    datagram = _datagram6(40000, 9, b"anyone?")
    stack.service([datagram], 0.0)
    ((packet, _, _),) = stack.output
    ip = ipv6.parse(packet)
    assert (ip.src, ip.dst, ip.proto) == (LOCAL6, PEER6, ipv6.PROTO_ICMPV6)
    icmpv6.verify(ip.payload, ip.src, ip.dst)
    reply = ICMPv6DestUnreach(bytes(ip.payload))
    assert (reply.type, reply.code) == (1, 4)
    assert bytes(ip.payload[8:]) == datagram
    assert (stack.counters["udp_no_ports"], stack.counters["icmp_port_unreachable_out"],
            stack.counters["icmp6_out"]) == (1, 1, 1)


def test_the_quote_fits_in_ipv6s_minimum_mtu() -> None:
    stack = NetworkStack(LOCAL, address6=LOCAL6, mtu=9000)
    stack.service([_datagram6(40000, 9, bytes(4000))], 0.0)
    ((packet, _, _),) = stack.output
    assert len(packet) == ipv6.MIN_MTU


def test_a_datagram_over_the_path_mtu_is_refused_with_ipv6s_headers() -> None:
    stack = _stack()
    endpoint = stack.udp_open(5000)
    stack.udp_sendto(endpoint, bytes(1500 - 48), 0.0, PEER6, 53)  # just fits
    with pytest.raises(OSError) as info:
        stack.udp_sendto(endpoint, bytes(1500 - 47), 0.0, PEER6, 53)
    assert info.value.errno == errno.EMSGSIZE
    assert "at most 1452" in str(info.value)


def test_packet_too_big_lowers_the_path_mtu_never_below_1280() -> None:
    stack = _stack()
    endpoint = stack.udp_open(5000)
    stack.udp_connect(endpoint, PEER6, 53)
    stack.udp_sendto(endpoint, bytes(1400), 0.0)
    ((headers, payload, _),) = stack.output
    stack.output.clear()
    sent = headers + bytes(payload)
    stack.service([_icmpv6(icmpv6.PACKET_TOO_BIG, 0, sent[:1232], word=1000)], 0.1)
    assert endpoint.take_error() == (errno.EMSGSIZE, "message too long (packet too big)")
    stack.udp_sendto(endpoint, bytes(1280 - 48), 0.2)  # 1280 is what the path takes now
    with pytest.raises(OSError) as info:
        stack.udp_sendto(endpoint, bytes(1280 - 47), 0.2)
    assert info.value.errno == errno.EMSGSIZE


def test_port_unreachable_is_hard_for_a_connected_endpoint_time_exceeded_is_not() -> None:
    stack = _stack()
    endpoint = stack.udp_open(5000)
    stack.udp_connect(endpoint, PEER6, 53)
    stack.udp_sendto(endpoint, b"query", 0.0)
    ((headers, payload, _),) = stack.output
    stack.output.clear()
    sent = headers + bytes(payload)
    stack.service([_icmpv6(icmpv6.TIME_EXCEEDED, 0, sent)], 0.1)
    assert endpoint.take_error() is None
    assert stack.counters["udp_icmp_ignored"] == 1
    stack.service([_icmpv6(icmpv6.DEST_UNREACHABLE, icmpv6.PORT_UNREACHABLE, sent)], 0.2)
    assert endpoint.take_error() == (errno.ECONNREFUSED,
                                     "connection refused (port unreachable)")


def test_a_stack_without_ipv6_refuses_to_send_there() -> None:
    stack = NetworkStack(LOCAL)
    endpoint = stack.udp_open(5000)
    with pytest.raises(OSError) as info:
        stack.udp_sendto(endpoint, b"x", 0.0, PEER6, 53)
    assert info.value.errno == errno.EAFNOSUPPORT
