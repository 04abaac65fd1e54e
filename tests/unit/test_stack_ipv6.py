"""TCP over IPv6 in the stack, in-process: the peer's address length is its family, a
listener takes SYNs of both, the MSS is the MTU less 60, transfers survive loss with SACK,
SYN cookies and RSTs work, sources no host can have are refused, ICMPv6 echo is answered and
ICMPv6 errors reach the connection they quote (RFC 5927), and every packet a stack is handed
is accounted for."""

from __future__ import annotations

import errno
import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.link import virtio
from tcpstack.net import icmpv6, ipv6
from tcpstack.net.checksum import ones_complement_sum
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack, packet_bytes
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.events import ConnEvent, Unreachable
from tcpstack.tcp.segment import ACK, PSH, RST, SYN
from tcpstack.tcp.state import State
from tests.unit.link_pair import A6_ADDR, B6_ADDR, B_ADDR, FixedIsn, LinkPair, pattern

V4 = bytes([10, 0, 0, 9])
PEER6 = bytes.fromhex("fd000000000000000000000000000009")
ROUTER6 = bytes.fromhex("fd0000000000000000000000000000fe")


def _addr(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def _tcp6(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
          options: bytes = b"", payload: bytes = b"") -> bytes:
    pseudo = ipv6.pseudo_header(src, dst, PROTO_TCP, 0)
    return ipv6.build(src, dst, PROTO_TCP, tcpseg.build(sport, dport, seq, ack, flags, 65535,
                                                        pseudo, options, payload))


def _segments(stack: NetworkStack) -> list[tuple[ipv6.IPv6Packet, tcpseg.Segment]]:
    out = []
    for packet in stack.output:
        ip = ipv6.parse(packet_bytes(packet))
        out.append((ip, tcpseg.parse(ip.payload,
                                     ipv6.pseudo_header(ip.src, ip.dst, PROTO_TCP, 0))))
    stack.output.clear()
    return out


def _icmpv6(icmp_type: int, code: int, quoted: bytes, *, word: int = 0,
            dst: bytes = B6_ADDR) -> bytes:
    body = struct.pack("!BBHI", icmp_type, code, 0, word) + quoted
    partial = ipv6.pseudo_header(ROUTER6, dst, ipv6.PROTO_ICMPV6, len(body))
    csum = ~((ones_complement_sum(body) + partial) % 0xFFFF) & 0xFFFF
    return ipv6.build(ROUTER6, dst, ipv6.PROTO_ICMPV6, body[:2] + csum.to_bytes(2, "big")
                      + body[4:])


# ---------------------------------------------------------------------- two stacks


def test_a_handshake_over_ipv6_announces_the_mtu_less_60() -> None:
    pair = LinkPair(ipv6=True)
    client, server = pair.established_pair()
    assert (client.remote_addr, server.remote_addr) == (B6_ADDR, A6_ADDR)
    (syn,) = [f.segment for f in pair.tcp_frames("a") if f.segment.flags == SYN]
    assert syn.options.mss == 1440
    # Timestamps on every segment take 12 bytes of each (RFC 6691).
    assert (client.snd.mss, server.snd.mss) == (1428, 1428)
    assert all(f.packet[0] >> 4 == 6 for f in pair.tcp_frames())


def test_a_lossy_transfer_over_ipv6_arrives_whole() -> None:
    lost = {7, 8, 30, 31, 32, 90}
    pair = LinkPair(ipv6=True, drop=lambda frame: frame.sender == "a" and frame.number in lost)
    client, server = pair.established_pair()
    data = pattern(600_000, seed=6)
    received = bytearray()
    sent = 0

    def progress() -> bool:
        nonlocal sent
        if sent < len(data):
            sent += client.send(data[sent:sent + 65536])
        received.extend(server.read())
        return len(received) == len(data)

    pair.run_until(progress, timeout=60)
    assert bytes(received) == data
    assert pair.a.counters["retrans_segs"] >= 1
    assert pair.a.counters["internal_errors"] == pair.b.counters["internal_errors"] == 0


def test_one_listener_takes_both_families() -> None:
    pair = LinkPair(dual_stack=True)
    pair.b.listen(80)
    v4 = pair.a.connect(B_ADDR, 80, pair.now, local_port=40000)
    v6 = pair.a.connect(B6_ADDR, 80, pair.now, local_port=40000)
    pair.run_until(lambda: len(pair.accepted(80)) == 2)
    assert v4.state is v6.state is State.ESTABLISHED
    assert sorted(len(c.remote_addr) for c in pair.accepted(80)) == [4, 16]
    assert (v4.snd.mss, v6.snd.mss) == (1460 - 12, 1440 - 12)


def test_syn_cookies_over_ipv6() -> None:
    pair = LinkPair(ipv6=True, config_b=TcpConfig(syncookies=2))
    client, server = pair.established_pair()
    assert pair.b.counters["syncookies_sent"] == 1
    assert pair.b.counters["syncookies_recv"] == 1
    assert server.snd.mss == 1428  # the cookie kept the peer's MSS (1440, in the table)
    client.send(b"after the cookie")
    pair.run_until(lambda: server.read() == b"after the cookie")


def test_an_in_window_reset_draws_a_challenge_ack_over_ipv6() -> None:
    """RFC 5961 3.2: a RST inside the window but not at RCV.NXT is answered, not obeyed."""
    pair = LinkPair(ipv6=True)
    client, server = pair.established_pair()
    blind = _tcp6(A6_ADDR, B6_ADDR, client.local_port, 80, (server.rcv.nxt + 100) & 0xFFFFFFFF,
                  0, RST)
    pair.b.service([blind], pair.now)
    assert server.state is State.ESTABLISHED
    ((ip, ack),) = _segments(pair.b)
    assert (ip.dst, ack.flags, ack.seq, ack.ack) == (A6_ADDR, ACK, server.snd.nxt,
                                                     server.rcv.nxt)
    assert pair.b.counters["challenge_acks"] == 1


# ---------------------------------------------------------------------- one stack


def _stack(**kwargs: object) -> NetworkStack:
    stack = NetworkStack(B_ADDR, isn=FixedIsn(1000), address6=B6_ADDR, **kwargs)  # type: ignore[arg-type]
    stack.listen(80)
    return stack


def test_a_syn_to_a_closed_port_draws_a_reset_over_ipv6() -> None:
    stack = _stack()
    stack.service([_tcp6(PEER6, B6_ADDR, 40000, 81, 5000, 0, SYN)], 0.0)
    ((ip, seg),) = _segments(stack)
    assert (ip.src, ip.dst, seg.flags, seg.seq, seg.ack) == (B6_ADDR, PEER6, RST | ACK, 0, 5001)


def test_a_bad_checksum_is_dropped_and_counted() -> None:
    stack = _stack()
    packet = bytearray(_tcp6(PEER6, B6_ADDR, 40000, 80, 5000, 0, SYN))
    packet[40 + 16] ^= 0xFF
    stack.service([bytes(packet)], 0.0)
    assert stack.output == []
    assert (stack.counters["tcp_bad_checksum"], stack.counters["in_errors"]) == (1, 1)


@pytest.mark.parametrize(("source", "reason"), [
    ("::1", "ip6_bad_source"), ("ff02::1", "ip6_bad_source"), ("::", "ip6_bad_source"),
    ("::ffff:10.0.0.9", "ip6_bad_source"), ("fd00::2", "ip_land"),
])
def test_sources_no_host_can_have_are_refused(source: str, reason: str) -> None:
    stack = _stack()
    stack.service([_tcp6(_addr(source), B6_ADDR, 40000, 80, 5000, 0, SYN)], 0.0)
    assert stack.output == [] and not stack.connections
    assert stack.counters[reason] == 1


def test_packets_for_other_addresses_are_counted_by_kind() -> None:
    stack = _stack()
    stack.service([_tcp6(PEER6, _addr("fd00::77"), 40000, 80, 5000, 0, SYN),
                   _tcp6(PEER6, _addr("ff02::2"), 40000, 80, 5000, 0, SYN),
                   ipv6.build(PEER6, B6_ADDR, 132, b"sctp")], 0.0)
    assert (stack.counters["ip6_not_for_us"], stack.counters["ip6_multicast"],
            stack.counters["ip6_unknown_protocol"]) == (1, 1, 1)


def test_a_stack_without_ipv6_counts_what_it_drops() -> None:
    stack = NetworkStack(B_ADDR)
    stack.service([_tcp6(PEER6, B6_ADDR, 40000, 80, 5000, 0, SYN)], 0.0)
    assert stack.counters["ip6_disabled"] == 1 and stack.output == []
    with pytest.raises(ValueError, match="no IPv6 address"):
        stack.connect(PEER6, 80, 0.0)


def test_the_fast_path_and_the_strict_parser_take_the_same_segment_alike() -> None:
    """A segment behind a destination options header takes the strict parser; without it,
    the one-unpack path: the connection sees the same."""
    stack = _stack()
    syn = _tcp6(PEER6, B6_ADDR, 40000, 80, 5000, 0, SYN, tcpseg.encode_options(mss=1440))
    stack.service([syn], 0.0)
    ((_, synack),) = _segments(stack)
    tcp = ipv6.parse(_tcp6(PEER6, B6_ADDR, 40000, 80, 5001, synack.seq + 1, ACK | PSH,
                           payload=b"plain")).payload
    dstopts = bytes([PROTO_TCP, 0, 1, 4, 0, 0, 0, 0])  # PadN of 4: skipped
    wrapped = ipv6.build(PEER6, B6_ADDR, ipv6.PROTO_DSTOPTS, dstopts + bytes(tcp))
    again = _tcp6(PEER6, B6_ADDR, 40000, 80, 5006, synack.seq + 1, ACK | PSH,
                  payload=b"wrapped"[:5])
    stack.service([wrapped], 0.0)
    (conn,) = stack.connections.values()
    assert conn.read() == b"plain"
    stack.service([again], 0.0)
    assert conn.read() == b"wrapp"


def test_offload_leaves_the_pseudo_header_sum_for_the_link() -> None:
    stack = _stack(offload=True)
    stack.service([_tcp6(PEER6, B6_ADDR, 40000, 80, 5000, 0, SYN,
                         tcpseg.encode_options(mss=1440))], 0.0)
    _segments(stack)
    (conn,) = stack.connections.values()
    stack.service([_tcp6(PEER6, B6_ADDR, 40000, 80, 5001, conn.snd.nxt, ACK)], 0.0)
    conn.send(b"y" * 5000)
    stack.service([], 0.0)
    ((headers, payload, gso_size),) = stack.output
    assert len(headers) == 60 and gso_size == 1440 and len(payload) == 5000
    header = virtio.tcp_partial(headers, len(payload), gso_size)
    assert virtio.HEADER.unpack(header) == (virtio.F_NEEDS_CSUM, virtio.GSO_TCPV6, 60, 1440,
                                            40, 16)
    # What the kernel finishes: the checksum over the TCP header and payload, the field
    # holding the pseudo-header sum, must come out as the full checksum would.
    tcp = headers[40:] + bytes(payload)
    full = ~((ones_complement_sum(tcp[:16] + b"\0\0" + tcp[18:])
              + ipv6.pseudo_header(B6_ADDR, PEER6, PROTO_TCP, len(tcp))) % 0xFFFF) & 0xFFFF
    partial = int.from_bytes(tcp[16:18], "big")
    finished = ~((ones_complement_sum(tcp[:16] + partial.to_bytes(2, "big") + tcp[18:])
                  ) % 0xFFFF) & 0xFFFF
    assert finished == full


# ---------------------------------------------------------------------- ICMPv6


def test_an_echo_request_is_answered() -> None:
    stack = _stack()
    body = struct.pack("!BBHHH", icmpv6.ECHO_REQUEST, 0, 0, 0x77, 3) + b"data"
    partial = ipv6.pseudo_header(PEER6, B6_ADDR, ipv6.PROTO_ICMPV6, len(body))
    csum = ~((ones_complement_sum(body) + partial) % 0xFFFF) & 0xFFFF
    stack.service([ipv6.build(PEER6, B6_ADDR, ipv6.PROTO_ICMPV6,
                              body[:2] + csum.to_bytes(2, "big") + body[4:])], 0.0)
    ((packet, _, _),) = stack.output
    ip = ipv6.parse(packet)
    assert (ip.src, ip.dst, ip.proto) == (B6_ADDR, PEER6, ipv6.PROTO_ICMPV6)
    icmpv6.verify(ip.payload, ip.src, ip.dst)
    assert bytes(ip.payload[:2]) == bytes([icmpv6.ECHO_REPLY, 0])
    assert bytes(ip.payload[4:]) == body[4:]
    assert (stack.counters["icmp6_in"], stack.counters["icmp6_out"]) == (1, 1)


def _connecting() -> tuple[NetworkStack, object, bytes]:
    stack = _stack()
    conn = stack.connect(PEER6, 80, 0.0, local_port=50000)
    stack.flush(0.0)
    ((packet, _, _),) = stack.output
    stack.output.clear()
    return stack, conn, packet


def test_port_unreachable_fails_a_connect_with_connection_refused() -> None:
    stack, conn, syn = _connecting()
    stack.service([_icmpv6(icmpv6.DEST_UNREACHABLE, 4, syn)], 0.1)
    assert conn.state is State.CLOSED  # type: ignore[attr-defined]
    (event,) = [ev for _, ev in stack.events if ev.kind is ConnEvent.UNREACHABLE]
    assert event == Unreachable("connection refused (port unreachable)", errno.ECONNREFUSED)
    assert stack.counters["icmp_errors_accepted"] == 1


def test_time_exceeded_does_not_end_an_attempt() -> None:
    stack, conn, syn = _connecting()
    stack.service([_icmpv6(icmpv6.TIME_EXCEEDED, 0, syn)], 0.1)
    assert conn.state is State.SYN_SENT  # type: ignore[attr-defined]
    # A soft error (RFC 5927 4.2): kept, for the message should the attempt time out.
    assert conn.snd.soft_error == "hop limit exceeded"  # type: ignore[attr-defined]
    assert stack.counters["icmp_errors_accepted"] == 1


def test_an_error_quoting_a_sequence_not_in_flight_is_ignored() -> None:
    stack, conn, syn = _connecting()
    forged = bytearray(syn)
    forged[44:48] = (int.from_bytes(syn[44:48], "big") + 99_999).to_bytes(4, "big")
    stack.service([_icmpv6(icmpv6.DEST_UNREACHABLE, 4, bytes(forged))], 0.1)
    assert conn.state is State.SYN_SENT  # type: ignore[attr-defined]
    assert stack.counters["icmp_out_of_window"] == 1


def test_an_error_quoting_another_source_or_too_little_is_counted() -> None:
    stack, _, syn = _connecting()
    other = bytearray(syn)
    other[8:24] = PEER6  # not our address
    stack.service([_icmpv6(icmpv6.DEST_UNREACHABLE, 4, bytes(other)),
                   _icmpv6(icmpv6.DEST_UNREACHABLE, 4, syn[:44])], 0.1)
    assert stack.counters["icmp_unmatched"] == 1
    assert stack.counters["icmp6_truncated"] == 1


def test_packet_too_big_is_remembered_for_the_destination() -> None:
    stack = _stack()
    stack.service([_tcp6(PEER6, B6_ADDR, 40000, 80, 5000, 0, SYN,
                         tcpseg.encode_options(mss=1440))], 0.0)
    _segments(stack)
    (conn,) = stack.connections.values()
    stack.service([_tcp6(PEER6, B6_ADDR, 40000, 80, 5001, conn.snd.nxt, ACK)], 0.0)
    conn.send(b"z" * 1440)
    stack.service([], 0.0)
    ((_, big),) = _segments(stack)
    quoted = ipv6.build(B6_ADDR, PEER6, PROTO_TCP, struct.pack("!HHI", 80, 40000, big.seq)
                        + bytes(12))
    stack.service([_icmpv6(icmpv6.PACKET_TOO_BIG, 0, quoted, word=1300)], 1.0)
    assert conn.snd.mss == 1300 - 60
    assert [len(seg.payload) for _, seg in _segments(stack)] == [1240, 200]
    # A new connection to the same destination starts at the path's MSS.
    later = stack.connect(PEER6, 81, 2.0)
    assert later.snd.path_mss == 1240


# ---------------------------------------------------------------------- accounting


_VALID = [
    _tcp6(PEER6, B6_ADDR, 40000, 80, 1, 0, SYN, tcpseg.encode_options(mss=1440)),
    _tcp6(PEER6, B6_ADDR, 40000, 80, 2, 1001, ACK | PSH, payload=b"payload"),
    ipv6.build(PEER6, B6_ADDR, ipv6.PROTO_DSTOPTS, bytes([6, 0, 1, 4, 0, 0, 0, 0])
               + bytes(ipv6.parse(_tcp6(PEER6, B6_ADDR, 40000, 80, 2, 0, SYN)).payload)),
    _icmpv6(icmpv6.DEST_UNREACHABLE, 4, _tcp6(B6_ADDR, PEER6, 80, 40000, 1, 0, SYN)),
]
# Where each IPv6 packet ends: exactly one grows by one, except that a malformed ICMPv6
# message counts in icmp6_in and in_errors both (as an ICMP one does).
_OUTCOMES = ("segs_in", "icmp6_in", "in_errors", "ip6_not_for_us", "ip6_multicast",
             "ip6_unknown_protocol")
_ICMP6_ERRORS = ("icmp6_bad_checksum", "icmp6_truncated", "icmp6_bad_quote")
_mutated = st.builds(
    lambda base, edits, cut: _mutate(_VALID[base], edits, cut),
    st.integers(0, len(_VALID) - 1),
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(40, 100)))


def _mutate(packet: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(packet)
    for offset, value in edits:
        if 1 <= offset < len(data):  # the version stays 6: IPv6 is what is tested here
            data[offset] = value
    return bytes(data[:cut] if cut is not None else data)


@settings(max_examples=400, deadline=None)
@given(st.lists(_mutated, min_size=1, max_size=20))
def test_the_stack_accounts_for_every_ipv6_packet(batch: list[bytes]) -> None:
    stack = _stack()
    stack.service(batch, 0.0)
    counters = stack.counters
    assert counters["internal_errors"] == 0
    accounted = (sum(counters[name] for name in _OUTCOMES)
                 - sum(counters[name] for name in _ICMP6_ERRORS))
    assert accounted == len(batch), dict(counters)
