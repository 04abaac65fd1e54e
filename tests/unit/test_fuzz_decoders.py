"""Every decoder, fed random bytes and mutations of valid packets, either decodes or raises
its own error type (MalformedPacket, with a reason that is a counter), and the stack accounts
for every packet it is handed: each ends in exactly one of its input outcomes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.net import icmp, ipv4, udp
from tcpstack.net.errors import MalformedPacket
from tcpstack.net.ipv4 import PROTO_ICMP, PROTO_TCP
from tcpstack.stack import NetworkStack
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.segment import ACK, PSH, SYN

LOCAL = bytes([10, 77, 0, 2])
PEER = bytes([10, 77, 0, 1])
PSEUDO = ipv4.pseudo_header_sum(PEER, LOCAL, PROTO_TCP)
# Where each packet handed to NetworkStack.receive ends: exactly one of these grows by one,
# except that, as in Linux's ICMP MIB, a malformed ICMP message counts in icmp_in (every
# message received) and in in_errors both, that a UDP datagram is delivered, refused for
# want of a port, or dropped with a full queue (or malformed: in_errors), and that a
# datagram reassembled from fragments (each counted in ip_frag_in) then takes the normal
# path as one packet more.
OUTCOMES = ("segs_in", "icmp_in", "in_errors", "ip6_disabled", "ip_not_for_us",
            "ip_unknown_protocol", "ip_frag_in", "udp_in_datagrams", "udp_no_ports",
            "udp_rcvbuf_errors")
ICMP_ERRORS = ("icmp_bad_checksum", "icmp_truncated")


def _tcp(flags: int, seq: int, ack: int, options: bytes = b"", payload: bytes = b"") -> bytes:
    return ipv4.build(PEER, LOCAL, PROTO_TCP,
                      tcpseg.build(40000, 80, seq, ack, flags, 65535, PSEUDO, options, payload))


VALID = [
    _tcp(SYN, 1, 0, tcpseg.encode_options(mss=1460, wscale=7, sack_permitted=True)),
    _tcp(ACK, 2, 1001, tcpseg.encode_timestamps(5, 6)),
    _tcp(ACK | PSH, 2, 1001, tcpseg.encode_sack([(100, 200), (300, 400)]), b"payload"),
    ipv4.build(PEER, LOCAL, PROTO_ICMP, bytes([8, 0, 0xF7, 0xFF, 0, 0, 0, 0])),
    ipv4.build(PEER, LOCAL, udp.PROTO_UDP, udp.build(PEER, LOCAL, 40000, 53, b"query")),
]

# A mutation: (offset, new byte) pairs applied to one of the valid packets, or it cut short.
mutated = st.builds(
    lambda base, edits, cut: _mutate(VALID[base], edits, cut),
    st.integers(0, len(VALID) - 1),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 80)))


def _mutate(packet: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(packet)
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    return bytes(data[:cut] if cut is not None else data)


packets = st.one_of(st.binary(max_size=120), mutated)


def _decode_all(packet: bytes) -> None:
    """Every decoder the packet reaches, as the stack would call them; only MalformedPacket
    (whose reason is a counter name) may come out."""
    try:
        ip = ipv4.parse(packet)
        if ip.proto == PROTO_TCP:
            tcpseg.parse(ip.payload, ipv4.pseudo_header_sum(ip.src, ip.dst, PROTO_TCP))
        elif ip.proto == PROTO_ICMP:
            icmp.echo_reply(ip.payload)
        elif ip.proto == udp.PROTO_UDP:
            udp.parse(ip.payload, ip.src, ip.dst)
        ipv4.parse(packet, strict=False)
    except MalformedPacket as exc:
        assert exc.reason.replace("_", "").isalnum(), exc.reason


@settings(max_examples=600, deadline=None)
@given(packets)
def test_decoders_raise_only_their_own_error(packet: bytes) -> None:
    _decode_all(packet)


@settings(max_examples=400, deadline=None)
@given(st.lists(packets, min_size=1, max_size=20))
def test_the_stack_accounts_for_every_packet(batch: list[bytes]) -> None:
    stack = NetworkStack(LOCAL)
    stack.listen(80)
    stack.udp_open(53)
    stack.service(batch, 0.0)
    assert stack.counters["internal_errors"] == 0
    counters = stack.counters
    accounted = (sum(counters[name] for name in OUTCOMES)
                 - sum(counters[name] for name in ICMP_ERRORS)
                 - counters["ip_frag_reassembled"])
    assert accounted == len(batch), dict(counters)
