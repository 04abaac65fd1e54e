"""UDP in the stack, in-process with virtual time: datagrams to a bound port are queued for
its endpoint and handed over once per pass; a closed port draws ICMP port unreachable
(RFC 1122 4.1.3.1) quoting the datagram, within Linux's rate limit; the receive queue is
bounded in bytes as SO_RCVBUF is (RcvbufErrors); sending frames IPv4 with DF and refuses
what exceeds the path MTU (EMSGSIZE); ICMP errors quoting our datagrams reach a connected
endpoint as Linux reports them (ECONNREFUSED), and the counters are nstat's Udp*."""

from __future__ import annotations

import errno
import struct
from collections import Counter

import pytest

from tcpstack.net import icmp, ipv4, udp
from tcpstack.net.checksum import checksum, verify
from tcpstack.net.ipv4 import PROTO_ICMP
from tcpstack.stack import NetworkStack, packet_bytes
from tcpstack.udp.endpoint import DATAGRAM_COST, AddressInUse, UdpEndpoint

LOCAL = bytes([10, 77, 0, 2])
PEER = bytes([10, 77, 0, 1])
OTHER = bytes([10, 77, 0, 9])
ROUTER = bytes([10, 77, 0, 254])
PROTO_UDP = udp.PROTO_UDP


def _datagram(sport: int, dport: int, payload: bytes, src: bytes = PEER) -> bytes:
    return ipv4.build(src, LOCAL, PROTO_UDP, udp.build(src, LOCAL, sport, dport, payload))


def _sent(stack: NetworkStack) -> list[ipv4.IPv4Packet]:
    """What the stack wrote since the last call, parsed (every checksum verified)."""
    packets = [ipv4.parse(packet_bytes(p)) for p in stack.output]
    stack.output.clear()
    return packets


def _udp_counters(stack: NetworkStack) -> dict[str, int]:
    return {k: v for k, v in stack.counters.items()
            if k.startswith("udp_") or k.startswith("icmp") or k == "in_errors"}


class Owner:
    """An endpoint's owner, as an api transport is: takes every datagram when told."""

    def __init__(self, endpoint: UdpEndpoint) -> None:
        self.calls = 0
        self.datagrams: list[tuple[bytes, bytes, int]] = []
        self.errors: list[tuple[int, str]] = []
        endpoint.on_ready = self.ready

    def ready(self, endpoint: UdpEndpoint) -> None:
        self.calls += 1
        while (datagram := endpoint.receive()) is not None:
            self.datagrams.append(datagram)
        if (error := endpoint.take_error()) is not None:
            self.errors.append(error)


def test_datagrams_of_one_pass_reach_the_owner_in_one_call_in_order() -> None:
    stack = NetworkStack(LOCAL)
    owner = Owner(stack.udp_open(7))
    stack.service([_datagram(40000, 7, b"one"), _datagram(40001, 7, b""),
                   _datagram(40000, 7, b"three")], 0.0)
    assert owner.calls == 1
    assert owner.datagrams == [(b"one", PEER, 40000), (b"", PEER, 40001),
                               (b"three", PEER, 40000)]
    assert _udp_counters(stack) == {"udp_in_datagrams": 3}
    assert _sent(stack) == []


def test_without_an_owner_datagrams_wait_in_the_queue() -> None:
    stack = NetworkStack(LOCAL)
    endpoint = stack.udp_open(7)
    stack.service([_datagram(40000, 7, b"abc"), _datagram(40000, 7, b"de")], 0.0)
    assert (endpoint.queued, endpoint.received, endpoint.charged) == (
        2, 5, 5 + 2 * DATAGRAM_COST)
    assert endpoint.receive() == (b"abc", PEER, 40000)
    assert (endpoint.queued, endpoint.received) == (1, 2)


def test_an_echo_answer_leaves_with_the_pass_that_received_the_datagram() -> None:
    stack = NetworkStack(LOCAL)
    endpoint = stack.udp_open(7)

    def echo(ep: UdpEndpoint) -> None:
        while (datagram := ep.receive()) is not None:
            stack.udp_sendto(ep, datagram[0], 0.0, datagram[1], datagram[2])
    endpoint.on_ready = echo
    stack.service([_datagram(40000, 7, b"ping")], 0.0)
    (reply,) = _sent(stack)
    assert (reply.src, reply.dst, reply.proto, reply.ttl) == (LOCAL, PEER, PROTO_UDP, 64)
    assert reply.ident == 0  # DF set, identification 0 (RFC 6864: an atomic datagram)
    dgram = udp.parse(reply.payload, LOCAL, PEER)
    assert (dgram.sport, dgram.dport, bytes(dgram.payload)) == (7, 40000, b"ping")
    assert _udp_counters(stack) == {"udp_in_datagrams": 1, "udp_out_datagrams": 1}
    assert endpoint.sending == 0  # handed to the link with the pass


def test_a_closed_port_draws_port_unreachable_quoting_the_datagram() -> None:
    stack = NetworkStack(LOCAL)
    packet = _datagram(40000, 9, b"anyone there?")
    stack.service([packet], 0.0)
    (error,) = _sent(stack)
    assert (error.src, error.dst, error.proto) == (LOCAL, PEER, PROTO_ICMP)
    message = bytes(error.payload)
    assert message[:2] == bytes([3, 3])            # destination unreachable, port
    assert verify(message)                         # its checksum is right
    assert message[4:8] == bytes(4)                # unused
    assert message[8:] == packet                   # the whole datagram, header first
    assert _udp_counters(stack) == {"udp_no_ports": 1, "icmp_out": 1,
                                    "icmp_port_unreachable_out": 1}
    # What the kernel will read from it: ECONNREFUSED for the socket that sent it.
    parsed = icmp.error_of(message)
    assert parsed is not None
    assert (parsed.errno, parsed.proto, parsed.src, parsed.dst) == (
        errno.ECONNREFUSED, PROTO_UDP, PEER, LOCAL)
    assert parsed.transport == packet[20:28]


def test_the_quote_stops_where_the_error_would_pass_576_bytes() -> None:
    stack = NetworkStack(LOCAL)
    packet = _datagram(40000, 9, bytes(1000))
    stack.service([packet], 0.0)
    (error,) = stack.output
    assert len(packet_bytes(error)) == 576
    assert packet_bytes(error)[28:] == packet[:548]


def test_port_unreachable_is_rate_limited_per_source_as_linux() -> None:
    stack = NetworkStack(LOCAL)
    stack.service([_datagram(40000, 9, b"x")] * 8, 0.0)
    assert len(_sent(stack)) == 6
    stack.service([_datagram(40000, 9, b"x")], 0.5)
    assert _sent(stack) == []
    stack.service([_datagram(40000, 9, b"x")], 1.0)
    assert len(_sent(stack)) == 1
    stack.service([_datagram(40000, 9, b"x", src=OTHER)], 1.0)  # another source's own
    assert len(_sent(stack)) == 1
    assert _udp_counters(stack) == {"udp_no_ports": 11, "icmp_out": 8,
                                    "icmp_port_unreachable_out": 8, "icmp_rate_limited": 3}


def test_a_connected_endpoint_takes_its_remote_only_others_are_refused() -> None:
    stack = NetworkStack(LOCAL)
    endpoint = stack.udp_open(5000)
    stack.udp_connect(endpoint, PEER, 53)
    owner = Owner(endpoint)
    stack.service([_datagram(53, 5000, b"answer"), _datagram(54, 5000, b"other port"),
                   _datagram(53, 5000, b"other host", src=OTHER)], 0.0)
    assert owner.datagrams == [(b"answer", PEER, 53)]
    assert [bytes(p.payload)[:2] for p in _sent(stack)] == [bytes([3, 3])] * 2
    assert stack.counters["udp_no_ports"] == 2


def test_the_receive_queue_takes_datagrams_while_within_its_bound() -> None:
    stack = NetworkStack(LOCAL)
    endpoint = stack.udp_open(7, rcvbuf=1000)
    # Each is charged 400 + DATAGRAM_COST = 656: the first finds 0 queued, the second 656
    # (within 1000), the third 1312 and is dropped, as Linux's RcvbufErrors.
    stack.service([_datagram(40000, 7, bytes(400))] * 3, 0.0)
    assert (endpoint.queued, endpoint.charged, endpoint.drops) == (2, 1312, 1)
    assert _udp_counters(stack) == {"udp_in_datagrams": 2, "udp_rcvbuf_errors": 1,
                                    "udp_in_errors": 1}
    assert _sent(stack) == []  # a full queue is no closed port: nothing is answered
    endpoint.receive()
    stack.service([_datagram(40000, 7, bytes(400))], 0.0)
    assert (endpoint.queued, endpoint.drops) == (2, 1)


def test_empty_datagrams_fill_the_queue_too() -> None:
    stack = NetworkStack(LOCAL)
    endpoint = stack.udp_open(7, rcvbuf=10 * DATAGRAM_COST)
    stack.service([_datagram(40000, 7, b"")] * 20, 0.0)
    assert (endpoint.queued, endpoint.drops) == (11, 9)


def test_bad_checksums_and_lengths_are_counted_and_draw_nothing() -> None:
    stack = NetworkStack(LOCAL)
    stack.udp_open(7)
    good = _datagram(40000, 7, b"data")
    bad_sum = good[:26] + bytes([good[26] ^ 0xFF]) + good[27:]
    bad_len = ipv4.build(PEER, LOCAL, PROTO_UDP, struct.pack("!HHHH", 40000, 9, 30, 0) + b"ab")
    stack.service([bad_sum, bad_len], 0.0)
    assert _udp_counters(stack) == {"udp_in_errors": 2, "udp_in_csum_errors": 1,
                                    "udp_bad_checksum": 1, "udp_bad_length": 1,
                                    "in_errors": 2}
    assert _sent(stack) == []
    stack.service([bad_sum], 0.0, [True])  # the link vouched for it (offload)
    assert stack.counters["udp_in_datagrams"] == 1


def test_a_datagram_from_a_source_no_host_can_have_is_dropped_unanswered() -> None:
    stack = NetworkStack(LOCAL)
    for src in (bytes([0, 0, 0, 0]), bytes([127, 0, 0, 1]), bytes([255, 255, 255, 255]),
                LOCAL):
        stack.service([_datagram(40000, 9, b"x", src=src)], 0.0)
    assert _sent(stack) == []
    assert (stack.counters["ip_bad_source"], stack.counters["ip_land"],
            stack.counters["udp_no_ports"]) == (3, 1, 0)


def test_a_datagram_in_fragments_is_delivered_whole() -> None:
    stack = NetworkStack(LOCAL)
    owner = Owner(stack.udp_open(7))
    whole = udp.build(PEER, LOCAL, 40000, 7, bytes(range(256)) * 8)
    first = ipv4.HEADER.pack(0x45, 0, 20 + 1480, 77, ipv4.FLAG_MF, 64, PROTO_UDP, 0, PEER, LOCAL)
    rest = ipv4.HEADER.pack(0x45, 0, 20 + len(whole) - 1480, 77, 1480 // 8, 64, PROTO_UDP, 0,
                            PEER, LOCAL)

    def with_checksum(header: bytes) -> bytes:
        return header[:10] + checksum(header).to_bytes(2, "big") + header[12:]
    stack.service([with_checksum(first) + whole[:1480], with_checksum(rest) + whole[1480:]],
                  0.0)
    assert owner.datagrams == [(bytes(range(256)) * 8, PEER, 40000)]


def test_sending_refuses_more_than_the_mtu_with_emsgsize() -> None:
    stack = NetworkStack(LOCAL, mtu=1500)
    endpoint = stack.udp_open()
    stack.udp_sendto(endpoint, bytes(1472), 0.0, PEER, 9)  # 20 + 8 + 1472 = 1500
    with pytest.raises(OSError) as info:
        stack.udp_sendto(endpoint, bytes(1473), 0.0, PEER, 9)
    assert info.value.errno == errno.EMSGSIZE
    (sent,) = stack.output
    assert len(packet_bytes(sent)) == 1500
    assert stack.counters["udp_out_datagrams"] == 1


def test_sending_without_a_destination_or_after_close_fails_as_sendto_would() -> None:
    stack = NetworkStack(LOCAL)
    endpoint = stack.udp_open()
    with pytest.raises(OSError) as info:
        stack.udp_sendto(endpoint, b"x", 0.0)
    assert info.value.errno == errno.EDESTADDRREQ
    stack.udp_close(endpoint)
    with pytest.raises(OSError) as info:
        stack.udp_sendto(endpoint, b"x", 0.0, PEER, 9)
    assert info.value.errno == errno.EBADF


def test_a_send_outside_a_pass_asks_for_one_and_the_send_buffer_bounds_it() -> None:
    stack = NetworkStack(LOCAL)
    asked: list[int] = []
    stack.request_service = lambda: asked.append(1)
    endpoint = stack.udp_open(sndbuf=1000)
    stack.udp_sendto(endpoint, bytes(400), 0.0, PEER, 9)
    stack.udp_sendto(endpoint, bytes(300), 0.0, PEER, 9)  # 656 charged: still room
    with pytest.raises(BlockingIOError):  # 656 + 556 = 1212 over 1000: no more
        stack.udp_sendto(endpoint, bytes(400), 0.0, PEER, 9)
    assert (endpoint.sending, len(asked), stack.counters["udp_sndbuf_errors"]) == (1212, 2, 1)
    stack.service([], 0.0)  # the driver's pass; the link takes the output after it
    assert endpoint.sending == 0
    stack.udp_sendto(endpoint, bytes(400), 0.0, PEER, 9)
    assert len(_sent(stack)) == 3


def _icmp_about(sent: bytes, icmp_type: int, code: int, mtu: int = 0) -> bytes:
    """A router's ICMP error quoting the IP header and 8 bytes of `sent`."""
    body = struct.pack("!HH", 0, mtu) + sent[:28]
    message = struct.pack("!BBH", icmp_type, code, 0) + body
    message = message[:2] + checksum(message).to_bytes(2, "big") + message[4:]
    return ipv4.build(ROUTER, LOCAL, PROTO_ICMP, message)


def _connected(stack: NetworkStack) -> tuple[UdpEndpoint, Owner, bytes]:
    endpoint = stack.udp_open(5000)
    stack.udp_connect(endpoint, PEER, 53)
    owner = Owner(endpoint)
    stack.udp_sendto(endpoint, b"query", 0.0)
    (sent,) = stack.output
    stack.output.clear()
    return endpoint, owner, packet_bytes(sent)


def test_port_unreachable_for_our_datagram_reaches_the_connected_endpoint() -> None:
    stack = NetworkStack(LOCAL)
    _, owner, sent = _connected(stack)
    stack.service([_icmp_about(sent, 3, 3)], 1.0)
    assert owner.errors == [(errno.ECONNREFUSED, "connection refused (port unreachable)")]
    assert owner.calls == 1
    assert stack.counters["icmp_errors_accepted"] == 1


def test_a_pending_error_fails_the_next_send_once_as_sk_err() -> None:
    stack = NetworkStack(LOCAL)
    endpoint, _, sent = _connected(stack)
    endpoint.on_ready = None  # nobody takes it: it stays pending
    stack.service([_icmp_about(sent, 3, 3)], 1.0)
    with pytest.raises(ConnectionRefusedError):
        stack.udp_sendto(endpoint, b"again", 1.0)
    stack.udp_sendto(endpoint, b"again", 1.0)
    assert stack.counters["udp_out_datagrams"] == 2


def test_soft_errors_and_errors_for_unconnected_endpoints_are_not_reported() -> None:
    stack = NetworkStack(LOCAL)
    _, owner, sent = _connected(stack)
    stack.service([_icmp_about(sent, 3, 1), _icmp_about(sent, 11, 0)], 1.0)  # host, TTL
    loose = stack.udp_open(6000)
    loose_owner = Owner(loose)
    stack.udp_sendto(loose, b"x", 1.0, PEER, 53)
    (other,) = stack.output
    stack.output.clear()
    stack.service([_icmp_about(packet_bytes(other), 3, 3)], 1.0)
    assert (owner.errors, loose_owner.errors) == ([], [])
    assert stack.counters["udp_icmp_ignored"] == 3
    # One quoting a port of ours with nothing bound, or another remote, matches nothing.
    stack.udp_close(loose)
    stack.service([_icmp_about(packet_bytes(other), 3, 3)], 1.0)
    assert stack.counters["icmp_unmatched"] == 1


def test_fragmentation_needed_lowers_the_path_mtu_and_tells_the_connected_endpoint() -> None:
    stack = NetworkStack(LOCAL)
    endpoint, owner, sent = _connected(stack)
    stack.service([_icmp_about(sent, 3, 4, mtu=1280)], 1.0)
    assert owner.errors == [(errno.EMSGSIZE, "message too long (fragmentation needed)")]
    stack.udp_sendto(endpoint, bytes(1252), 1.0)  # 1280 - 28
    with pytest.raises(OSError) as info:
        stack.udp_sendto(endpoint, bytes(1253), 1.0)
    assert info.value.errno == errno.EMSGSIZE
    # The learnt MTU ages out as the TCP one does (RFC 1191 6.3).
    stack.udp_sendto(endpoint, bytes(1472), 1.0 + 601.0)


def test_ports_are_bound_once_and_ephemeral_ones_come_from_the_range() -> None:
    stack = NetworkStack(LOCAL, ephemeral_ports=range(50000, 50003))
    stack.udp_open(7)
    with pytest.raises(AddressInUse) as info:
        stack.udp_open(7)
    assert info.value.errno == errno.EADDRINUSE
    ports = sorted(stack.udp_open().local_port for _ in range(3))
    assert ports == [50000, 50001, 50002]
    with pytest.raises(AddressInUse):
        stack.udp_open()
    stack.listen(7)  # TCP's ports are another space


def test_a_closed_endpoint_port_is_closed_again() -> None:
    stack = NetworkStack(LOCAL)
    endpoint = stack.udp_open(7)
    stack.service([_datagram(40000, 7, b"a")], 0.0)
    stack.udp_close(endpoint)
    stack.service([_datagram(40000, 7, b"b")], 0.0)
    assert Counter(bytes(p.payload)[:2] for p in _sent(stack)) == {bytes([3, 3]): 1}


def test_an_owner_that_raises_costs_its_datagrams_not_the_pass() -> None:
    stack = NetworkStack(LOCAL)
    broken = stack.udp_open(7)

    def fail(endpoint: UdpEndpoint) -> None:
        raise RuntimeError("bug")
    broken.on_ready = fail
    owner = Owner(stack.udp_open(8))
    stack.service([_datagram(1, 7, b"a"), _datagram(1, 8, b"b")], 0.0)
    assert owner.datagrams == [(b"b", PEER, 1)]
    assert stack.counters["internal_errors"] == 1

