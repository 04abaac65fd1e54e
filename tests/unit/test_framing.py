"""Framing is not the TCP core's: a connection emits segments (header fields, a payload view,
the MSS to cut it to), the stack adds the TCP checksum and the IPv4 header and hands the link
IP packets with their GSO size, and only the link, where it offloads, puts the virtio-net
header before each packet and takes it off what it reads."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

from tcpstack.link import virtio
from tcpstack.link.tun import TunDevice
from tcpstack.net import ipv4
from tcpstack.net.checksum import checksum
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack, packet_bytes
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
    ((headers, payload, gso_size),) = stack.output
    assert gso_size == 0  # complete checksums: nothing left for the link
    # The headers, IPv4 and TCP, are one object; the payload is the send buffer's, not a copy.
    assert (len(headers), type(payload), payload) == (40, memoryview, b"x" * 100)
    ip = ipv4.parse(headers + payload)  # checks the IPv4 header and its checksum
    assert (ip.src, ip.dst, ip.proto) == (A_ADDR, B_ADDR, PROTO_TCP)
    seg = tcpseg.parse(ip.payload, ipv4.pseudo_header_sum(A_ADDR, B_ADDR, PROTO_TCP))
    assert (seg.seq, seg.ack, bytes(seg.payload)) == (1001, 5001, b"x" * 100)


def test_with_offload_a_large_segment_carries_the_gso_size_and_a_partial_checksum() -> None:
    stack = _established(offloaded=True)
    (conn,) = stack.connections.values()
    conn.send(b"y" * (3 * MSS))
    stack.service([], 0.0)
    ((headers, payload, gso_size),) = stack.output
    assert gso_size == MSS
    ip = ipv4.parse(headers + payload)
    assert len(ip.payload) == 20 + 3 * MSS
    # Only the pseudo-header is summed; the link finishes the checksum the way this does
    # (Linux's CHECKSUM_PARTIAL: sum from csum_start, store the complement at csum_offset).
    tcp = bytearray(ip.payload)
    tcp[16:18] = checksum(bytes(tcp)).to_bytes(2, "big")
    seg = tcpseg.parse(bytes(tcp), ipv4.pseudo_header_sum(A_ADDR, B_ADDR, PROTO_TCP))
    assert (seg.seq, len(seg.payload)) == (1001, 3 * MSS)

def _link_over_a_pipe(offload: bool) -> tuple[TunDevice, int, int]:
    """A TunDevice whose descriptor is one end of a pipe: what it writes can be read back
    from the other, without root or an interface."""
    tun = TunDevice("unused0", offload=offload)
    read_end, write_end = os.pipe()
    tun.fd = write_end
    return tun, read_end, write_end


def test_the_link_writes_the_virtio_header_before_a_gso_packet() -> None:
    stack = _established(offloaded=True)
    (conn,) = stack.connections.values()
    conn.send(b"z" * (2 * MSS))
    stack.service([], 0.0)
    ((headers, payload, gso_size),) = stack.output
    packet = packet_bytes(stack.output[0])
    tun, read_end, write_end = _link_over_a_pipe(offload=True)
    try:
        tun.write(headers, payload, gso_size)
        frame = os.read(read_end, 65536)
    finally:
        os.close(read_end)
        os.close(write_end)
    flags, gso_type, hdr_len, size, csum_start, csum_offset = virtio.HEADER.unpack_from(frame)
    assert (flags, gso_type, size) == (virtio.F_NEEDS_CSUM, virtio.GSO_TCPV4, MSS)
    assert (hdr_len, csum_start, csum_offset) == (20 + 20, 20, virtio.TCP_CSUM_OFFSET)
    assert frame[virtio.HEADER_LEN:] == packet


def test_the_link_marks_a_short_partial_packet_without_gso_and_others_complete() -> None:
    stack = _established(offloaded=True)
    (conn,) = stack.connections.values()
    conn.send(b"s" * 100)
    stack.service([], 0.0)
    ((headers, payload, gso_size),) = stack.output
    packet = packet_bytes(stack.output[0])
    tun, read_end, write_end = _link_over_a_pipe(offload=True)
    try:
        tun.write(headers, payload, gso_size)
        partial = os.read(read_end, 65536)
        tun.write(packet[:40])
        complete = os.read(read_end, 65536)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert virtio.HEADER.unpack_from(partial) == (virtio.F_NEEDS_CSUM, virtio.GSO_NONE, 0, 0,
                                                  20, virtio.TCP_CSUM_OFFSET)
    assert complete == virtio.NONE + packet[:40]


def test_without_offload_the_link_writes_the_bare_ip_packet() -> None:
    tun, read_end, write_end = _link_over_a_pipe(offload=False)
    try:
        tun.write(b"\x45" + bytes(39))
        assert os.read(read_end, 65536) == b"\x45" + bytes(39)
        # Headers and payload apart are gathered into one packet (one writev, one read).
        tun.write(b"\x45" + bytes(39), memoryview(b"payload"))
        assert os.read(read_end, 65536) == b"\x45" + bytes(39) + b"payload"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_link_strips_the_virtio_header_and_reports_a_vouched_checksum() -> None:
    packet = b"\x45" + bytes(39)
    for flags, vouched in ((0, False), (virtio.F_DATA_VALID, True),
                           (virtio.F_NEEDS_CSUM, True)):
        tun = TunDevice("unused0", offload=True)
        read_end, write_end = os.pipe()
        tun.fd = read_end
        try:
            os.write(write_end, struct.pack("<BBHHHH", flags, 0, 0, 0, 0, 0) + packet)
            got, trusted = tun.read()
        finally:
            os.close(read_end)
            os.close(write_end)
        assert (bytes(got), trusted) == (packet, vouched)


def test_the_tcp_core_imports_no_ip_or_link_framing() -> None:
    code = ("import sys, tcpstack.tcp.connection; "
            "print(sorted(m for m in sys.modules if m in ('tcpstack.net.ipv4', "
            "'tcpstack.link.virtio')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
