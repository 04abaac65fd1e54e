"""Classic pcap files (the libpcap format tcpdump and Wireshark read), written and read back.

`PcapWriter` records raw IP packets with LINKTYPE_RAW (101: each record is an IPv4 or IPv6
packet, no link header), microsecond timestamps and a snaplen of 65535. Records gather in
memory and reach the file, always whole, on `flush()`: the Stack flushes a few times a
second, so a capture can be read while the stack runs and is complete once it has closed.
`read_pcap` reads the same format back (and the Ethernet and LINKTYPE_IPV4 variants) for
`tcpstack plot`. Format reference: https://www.tcpdump.org/manpages/pcap-savefile.5.html
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IPV4 = 228
SNAPLEN = 65535

FILE_HEADER = struct.Struct("<IHHiIII")  # magic, version 2.4, thiszone, sigfigs, snaplen, link
RECORD_HEADER = struct.Struct("<IIII")   # seconds, microseconds, captured length, wire length
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_FLUSH_AT = 1 << 20  # bytes pending before a write happens without waiting for flush()


class PcapWriter:
    """Appends packets to a new pcap file; `write(packet)` costs a header pack and a list
    append, the file write happens in `flush()` (or once a megabyte is pending)."""

    def __init__(self, path: str | os.PathLike[str], snaplen: int = SNAPLEN,
                 linktype: int = LINKTYPE_RAW) -> None:
        self.path = Path(path)
        self.snaplen = snaplen
        self.packets = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                           0o644)
        self._write_all(FILE_HEADER.pack(MAGIC_USEC, 2, 4, 0, 0, snaplen, linktype))

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, packet: bytes, timestamp: float | None = None) -> None:
        """One packet, stamped with `timestamp` (seconds since the epoch; now if None)."""
        if self._fd < 0:
            return
        if timestamp is None:
            timestamp = time.time()
        micros = int(timestamp * 1_000_000)
        length = len(packet)
        captured = packet if length <= self.snaplen else packet[:self.snaplen]
        self._pending.append(RECORD_HEADER.pack(micros // 1_000_000, micros % 1_000_000,
                                                len(captured), length))
        self._pending.append(captured)
        self._pending_bytes += RECORD_HEADER.size + len(captured)
        self.packets += 1
        if self._pending_bytes >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write every pending record (whole records only, so a reader never sees half)."""
        if self._fd < 0 or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._write_all(data)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class PcapRecord:
    time: float    # seconds since the epoch
    packet: bytes  # the IP packet (any link header removed)
    wire_length: int


class PcapFormatError(ValueError):
    """The file is not a pcap capture this reader understands."""


def read_pcap(path: str | os.PathLike[str]) -> Iterator[PcapRecord]:
    """The IP packets of a classic pcap file, in order. Non-IP Ethernet frames are skipped;
    a record cut short at the end of the file (a capture still being written) ends it."""
    data = Path(path).read_bytes()
    if len(data) < FILE_HEADER.size:
        raise PcapFormatError(f"{path}: too short for a pcap file header")
    magic = int.from_bytes(data[:4], "little")
    if magic in (MAGIC_USEC, MAGIC_NSEC):
        endian = "<"
    elif int.from_bytes(data[:4], "big") in (MAGIC_USEC, MAGIC_NSEC):
        endian = ">"
        magic = int.from_bytes(data[:4], "big")
    else:
        raise PcapFormatError(f"{path}: not a classic pcap file (magic {data[:4].hex()}; "
                              "pcapng is not supported, convert with editcap -F pcap)")
    header = struct.Struct(endian + "IHHiIII")
    record = struct.Struct(endian + "IIII")
    linktype = header.unpack_from(data)[6] & 0x0FFFFFFF
    if linktype not in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_ETHERNET):
        raise PcapFormatError(f"{path}: link type {linktype} not supported "
                              "(expected raw IP 101, IPv4 228 or Ethernet 1)")
    fraction = 1e-9 if magic == MAGIC_NSEC else 1e-6
    offset = FILE_HEADER.size
    end = len(data)
    while offset + record.size <= end:
        seconds, frac, captured, wire = record.unpack_from(data, offset)
        offset += record.size
        if offset + captured > end:
            return
        packet = data[offset:offset + captured]
        offset += captured
        if linktype == LINKTYPE_ETHERNET:
            if len(packet) < 14 or int.from_bytes(packet[12:14], "big") not in (
                    _ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
                continue
            packet = packet[14:]
            wire -= 14
        yield PcapRecord(seconds + frac * fraction, packet, wire)
