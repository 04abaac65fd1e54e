"""Checksum and segmentation offload metadata: the virtio-net header (linux/virtio_net.h)
that a TUN device opened with IFF_VNET_HDR puts before every packet, in both directions.

Outgoing, it lets us hand the kernel one TCP segment of up to 64 KB with only the
pseudo-header summed (NEEDS_CSUM), which the kernel cuts into MSS-sized segments and
checksums in C (GSO). Incoming, NEEDS_CSUM or DATA_VALID mean the kernel built or checked
the packet itself, so its TCP checksum need not be verified again.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
HEADER_LEN = HEADER.size

F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1

NONE = bytes(HEADER_LEN)  # a packet whose checksums are all filled in
TCP_CSUM_OFFSET = 16


def tcp_partial(ip_header_len: int, tcp_header_len: int, payload_len: int, mss: int) -> bytes:
    """The header for a TCP segment whose checksum field holds only the pseudo-header sum;
    segmented into `mss`-sized pieces when the payload is larger than `mss`."""
    if payload_len > mss:
        return HEADER.pack(F_NEEDS_CSUM, GSO_TCPV4, ip_header_len + tcp_header_len, mss,
                           ip_header_len, TCP_CSUM_OFFSET)
    return HEADER.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, ip_header_len, TCP_CSUM_OFFSET)


def checksum_trusted(header: bytes | memoryview) -> bool:
    """True when the kernel vouches for (or will compute) the packet's transport checksum."""
    return bool(header[0] & (F_NEEDS_CSUM | F_DATA_VALID))
