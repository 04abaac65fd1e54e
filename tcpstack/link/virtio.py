"""Checksum and segmentation offload metadata: the virtio-net header (linux/virtio_net.h)
that a TUN device opened with IFF_VNET_HDR puts before every packet, in both directions.
It is the link's own framing: the TUN device adds it on write and strips it on read, and
the layers above see IP packets only.

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
GSO_TCPV6 = 4

NONE = bytes(HEADER_LEN)  # a packet whose checksums are all filled in
TCP_CSUM_OFFSET = 16


def tcp_partial(headers: bytes, payload_len: int, gso_size: int) -> bytes:
    """The header for an IPv4 or IPv6 packet carrying a TCP segment whose checksum field
    holds only the pseudo-header sum: the kernel finishes the checksum, and cuts the payload
    into `gso_size` pieces when it is larger. `headers` is the packet's IP and TCP headers,
    options included, and nothing else (no IPv6 extension headers)."""
    first = headers[0]
    if first >> 4 == 6:
        ip_len, gso_type = 40, GSO_TCPV6
    else:
        ip_len, gso_type = (first & 0x0F) * 4, GSO_TCPV4
    if payload_len > gso_size:
        return HEADER.pack(F_NEEDS_CSUM, gso_type, len(headers), gso_size, ip_len,
                           TCP_CSUM_OFFSET)
    return HEADER.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, ip_len, TCP_CSUM_OFFSET)


def checksum_trusted(header: bytes | memoryview) -> bool:
    """True when the kernel vouches for (or will compute) the packet's transport checksum."""
    return bool(header[0] & (F_NEEDS_CSUM | F_DATA_VALID))
