"""ICMP echo (RFC 792): the reply to an echo request, and what is refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP

from tcpstack.net import icmp, ipv4
from tcpstack.net.errors import MalformedPacket
from tcpstack.stack import NetworkStack
from tests.unit.test_checksum import reference_checksum, reference_sum


def icmp_message(icmp_type: int, code: int, ident: int, seq: int, data: bytes,
                 csum: int | None = None) -> bytes:
    body = struct.pack("!HH", ident, seq) + data
    if csum is None:
        csum = reference_checksum(struct.pack("!BBH", icmp_type, code, 0) + body)
    return struct.pack("!BBH", icmp_type, code, csum) + body


def echo_request(ident: int = 0x1234, seq: int = 1, data: bytes = b"ping") -> bytes:
    return icmp_message(icmp.ECHO_REQUEST, 0, ident, seq, data)


def reason_of(message: bytes) -> str:
    with pytest.raises(MalformedPacket) as info:
        icmp.echo_reply(message)
    return info.value.reason


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=1472))
def test_echo_request_gets_reply_with_same_id_seq_and_data(ident: int, seq: int,
                                                          data: bytes) -> None:
    reply = icmp.echo_reply(echo_request(ident, seq, data))
    assert reply is not None
    assert reply[0] == icmp.ECHO_REPLY
    assert reply[1] == 0
    assert struct.unpack_from("!HH", reply, 4) == (ident, seq)
    assert reply[8:] == data
    assert reference_sum(reply) in (0, 0xFFFF)  # the checksum verifies


def test_echo_reply_checksum_is_exact_for_known_message() -> None:
    reply = icmp.echo_reply(echo_request(0x0001, 0x0002, b"abcd"))
    assert reply is not None
    expected = reference_checksum(struct.pack("!BBHHH", 0, 0, 0, 1, 2) + b"abcd")
    assert struct.unpack_from("!H", reply, 2)[0] % 0xFFFF == expected % 0xFFFF


@pytest.mark.parametrize(("icmp_type", "code"), [
    (icmp.ECHO_REPLY, 0),        # a reply is not answered
    (icmp.DEST_UNREACHABLE, 3),  # port unreachable
    (13, 0),                     # timestamp request
    (icmp.ECHO_REQUEST, 1),      # an echo request with a nonzero code is not one
])
def test_message_other_than_echo_request_gets_no_reply(icmp_type: int, code: int) -> None:
    assert icmp.echo_reply(icmp_message(icmp_type, code, 7, 7, b"data")) is None


@pytest.mark.parametrize("length", [0, 1, 4, 7])
def test_message_shorter_than_eight_bytes_is_icmp_truncated(length: int) -> None:
    assert reason_of(echo_request()[:length]) == "icmp_truncated"


def test_wrong_checksum_is_icmp_bad_checksum() -> None:
    good = echo_request()
    csum = struct.unpack_from("!H", good, 2)[0]
    bad = icmp_message(icmp.ECHO_REQUEST, 0, 0x1234, 1, b"ping", csum=csum ^ 0x0001)
    assert reason_of(bad) == "icmp_bad_checksum"


@given(st.binary(min_size=0, max_size=64), st.data())
def test_any_flipped_bit_is_icmp_bad_checksum(data: bytes, draw: st.DataObject) -> None:
    message = bytearray(echo_request(5, 6, data))
    bit = draw.draw(st.integers(0, len(message) * 8 - 1))
    message[bit // 8] ^= 0x80 >> (bit % 8)
    assert reason_of(bytes(message)) == "icmp_bad_checksum"


def test_scapy_accepts_our_echo_reply() -> None:
    request = bytes(ICMP(type=8, id=77, seq=3) / b"hello scapy")
    reply = icmp.echo_reply(request)
    assert reply is not None
    parsed = ICMP(reply)
    assert (parsed.type, parsed.code, parsed.id, parsed.seq) == (0, 0, 77, 3)
    assert bytes(parsed.payload) == b"hello scapy"
    rebuilt = parsed.copy()
    del rebuilt.chksum
    assert ICMP(bytes(rebuilt)).chksum == parsed.chksum


def test_stack_answers_ping_addressed_to_it() -> None:
    stack = NetworkStack(bytes([10, 0, 0, 2]))
    stack.receive(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=9, seq=4) / b"x"),
                  0.0)
    assert len(stack.output) == 1
    ((packet, payload, gso_size),) = stack.output
    assert (payload, gso_size) == (b"", 0)
    ip = ipv4.parse(packet)
    assert (ip.src, ip.dst, ip.proto) == (bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]), 1)
    assert bytes(ip.payload)[0] == icmp.ECHO_REPLY
    assert struct.unpack_from("!HH", ip.payload, 4) == (9, 4)
    assert stack.counters["icmp_in"] == 1 and stack.counters["icmp_out"] == 1


def test_stack_counts_bad_icmp_checksum_as_drop_reason() -> None:
    stack = NetworkStack(bytes([10, 0, 0, 2]))
    message = bytearray(echo_request())
    message[-1] ^= 0xFF
    stack.receive(ipv4.build(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 1, message), 0.0)
    assert stack.output == []
    assert stack.counters["icmp_bad_checksum"] == 1
