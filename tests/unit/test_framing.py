"""Framing is not the TCP core's: a connection emits segments (header fields, a payload view,
the MSS to cut it to), the stack adds the TCP checksum and the IPv4 header, and only where the
link offloads does a virtio-net header with the GSO size lead the packet."""

from __future__ import annotations

import subprocess
import sys

from tcpstack.net import ipv4, offload
from tcpstack.net.checksum import checksum
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.segment import ACK, SYN
from tests.unit.link_pair import A_ADDR, B_ADDR, FixedIsn

MSS = 1460


def _established(offloaded: bool) -> NetworkStack:
    stack = NetworkStack(A_ADDR, isn=FixedIsn(1000), offload=offloaded)
    stack.listen(80)
    pseudo = ipv4.pseudo_header_sum(B_ADDR, A_ADDR, PROTO_TCP)
    for flags, seq, ack, options in ((SYN, 5000, 0, tcpseg.encode_options(mss=MSS)),
                                     (ACK, 5001, 1001, b"")):
        stack.service([ipv4.build(B_ADDR, A_ADDR, PROTO_TCP,
                                  tcpseg.build(40000, 80, seq, ack, flags, 65535, pseudo,
                                               options))], 0.0)
    stack.output.clear()
    return stack


def test_a_connection_emits_segments_and_the_stack_frames_them() -> None:
    stack = _established(offloaded=False)
    (conn,) = stack.connections.values()
    conn.send(b"x" * 100)
    stack.service([], 0.0)
    (packet,) = stack.output
    ip = ipv4.parse(packet)  # checks the IPv4 header and its checksum
    assert (ip.src, ip.dst, ip.proto) == (A_ADDR, B_ADDR, PROTO_TCP)
    seg = tcpseg.parse(ip.payload, ipv4.pseudo_header_sum(A_ADDR, B_ADDR, PROTO_TCP))
    assert (seg.seq, seg.ack, bytes(seg.payload)) == (1001, 5001, b"x" * 100)


def test_with_offload_a_large_segment_carries_the_gso_size_and_a_partial_checksum() -> None:
    stack = _established(offloaded=True)
    (conn,) = stack.connections.values()
    conn.send(b"y" * (3 * MSS))
    stack.service([], 0.0)
    (packet,) = stack.output
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = offload.HEADER.unpack_from(
        packet)
    assert (flags, gso_type, gso_size) == (offload.F_NEEDS_CSUM, offload.GSO_TCPV4, MSS)
    assert (hdr_len, csum_start, csum_offset) == (20 + 20, 20, offload.TCP_CSUM_OFFSET)
    ip = ipv4.parse(packet[offload.HEADER_LEN:])
    assert len(ip.payload) == 20 + 3 * MSS
    # Only the pseudo-header is summed; the link finishes the checksum the way this does
    # (Linux's CHECKSUM_PARTIAL: sum from csum_start, store the complement at csum_offset).
    tcp = bytearray(ip.payload)
    tcp[16:18] = checksum(bytes(tcp)).to_bytes(2, "big")
    seg = tcpseg.parse(bytes(tcp), ipv4.pseudo_header_sum(A_ADDR, B_ADDR, PROTO_TCP))
    assert (seg.seq, len(seg.payload)) == (1001, 3 * MSS)

def test_the_tcp_core_imports_no_ip_or_link_framing() -> None:
    code = ("import sys, tcpstack.tcp.connection; "
            "print(sorted(m for m in sys.modules if m in ('tcpstack.net.ipv4', "
            "'tcpstack.net.offload')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
