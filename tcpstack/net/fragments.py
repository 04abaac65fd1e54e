"""IPv4 fragment reassembly (RFC 791 3.2, RFC 815), defended as Linux's ip_fragment.c is.

Fragments of one datagram (source, destination, protocol, identification) are kept until
every byte from 0 to the end the last fragment names has arrived; the whole datagram is then
rebuilt as one unfragmented IPv4 packet for the normal input path. Whatever arrives, memory
stays bounded and nothing partial is delivered:

- all datagrams in reassembly together hold at most `memory_limit` bytes (Linux's
  ipfrag_high_thresh, 4 MiB); a fragment that would go beyond drops the oldest datagrams;
- a datagram not complete within `timeout` (Linux's ipfrag_time, 30 s) is dropped;
- fragments that overlap drop their whole datagram (RFC 5722's rule for IPv6, applied to
  IPv4: overlaps serve only to slip data past a filter, as in the teardrop attacks), and so
  does a fragment that disagrees on where the datagram ends;
- a TCP datagram whose first fragment cannot hold the TCP header up to its flags, or with a
  fragment at offset 8 (RFC 1858 3.1 and 3.2: the tiny and overlapping fragment attacks), is
  refused.

Each drop is counted under its own reason, as the strict IPv4 parser's are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tcpstack.net.checksum import Bytes, checksum
from tcpstack.net.ipv4 import FLAG_MF, HEADER, OFFSET_MASK, PROTO_TCP

MEMORY_LIMIT = 4 << 20   # bytes of fragment payload held at once (ipfrag_high_thresh)
TIMEOUT = 30.0           # seconds a datagram may take to complete (ipfrag_time)
MAX_DATAGRAM = 0xFFFF    # total length of the reassembled datagram, header included
TCP_FLAGS_END = 14       # the TCP header up to and including its flags byte (RFC 1858)

Key = tuple[bytes, bytes, int, int]  # (source, destination, protocol, identification)
Count = Callable[[str], None]


@dataclass(slots=True)
class _Datagram:
    started: float
    header: bytes = b""  # the first fragment's IPv4 header, once it arrived
    end: int | None = None  # where the last fragment ends, once it arrived
    pieces: dict[int, bytes] = field(default_factory=dict)  # by offset
    held: int = 0

    def overlaps(self, start: int, stop: int) -> bool:
        return any(start < offset + len(piece) and offset < stop
                   for offset, piece in self.pieces.items())

    def complete(self) -> bool:
        if self.end is None or not self.header:
            return False
        reached = 0
        for offset in sorted(self.pieces):
            if offset != reached:
                return False
            reached += len(self.pieces[offset])
        return reached == self.end


class FragmentReassembler:
    """Holds fragments until their datagram is whole; `add` returns it rebuilt."""

    def __init__(self, count: Count, memory_limit: int = MEMORY_LIMIT,
                 timeout: float = TIMEOUT) -> None:
        self._count = count  # counts a reason by name (the stack's counters)
        self.memory_limit = memory_limit
        self.timeout = timeout
        self._datagrams: dict[Key, _Datagram] = {}  # oldest first
        self.held = 0  # fragment payload bytes held, all datagrams together

    def __len__(self) -> int:
        return len(self._datagrams)

    def add(self, header: Bytes, payload: Bytes, now: float) -> bytes | None:
        """One fragment: its IPv4 header (checksum verified) and its payload. Returns the
        rebuilt datagram when this fragment completes it, else None."""
        self.expire(now)
        _vihl, _tos, _total, ident, frag, _ttl, proto, _csum, src, dst = \
            HEADER.unpack_from(header)
        offset = (frag & OFFSET_MASK) * 8
        more = bool(frag & FLAG_MF)
        stop = offset + len(payload)
        key = (bytes(src), bytes(dst), proto, ident)
        if (more and len(payload) % 8) or len(header) + stop > MAX_DATAGRAM:
            self._drop(key, "ip_frag_bad")  # only the last may end off an 8-byte boundary
            return None
        if proto == PROTO_TCP and (offset == 8 or (offset == 0 and len(payload) < TCP_FLAGS_END)):
            self._drop(key, "ip_frag_tiny")  # RFC 1858
            return None
        datagram = self._datagrams.get(key)
        if datagram is None:
            datagram = self._datagrams[key] = _Datagram(now)
        if datagram.overlaps(offset, stop) or (datagram.end is not None and (
                stop > datagram.end or (not more and stop != datagram.end))):
            self._drop(key, "ip_frag_overlap")
            return None
        if not more:
            if any(o + len(p) > stop for o, p in datagram.pieces.items()):
                self._drop(key, "ip_frag_overlap")
                return None
            datagram.end = stop
        while self.held + len(payload) > self.memory_limit and self._datagrams:
            oldest = next(iter(self._datagrams))
            self._drop(oldest, "ip_frag_memory")
            if oldest == key:
                return None
        if offset == 0:
            datagram.header = bytes(header)
        datagram.pieces[offset] = bytes(payload)
        datagram.held += len(payload)
        self.held += len(payload)
        if not datagram.complete():
            return None
        self._forget(key)
        self._count("ip_frag_reassembled")
        return _rebuild(datagram)

    def expire(self, now: float) -> None:
        """Drop the datagrams older than the timeout (they are kept oldest first)."""
        while self._datagrams:
            key, datagram = next(iter(self._datagrams.items()))
            if now - datagram.started < self.timeout:
                return
            self._drop(key, "ip_frag_timeout")

    def _drop(self, key: Key, reason: str) -> None:
        self._count(reason)
        self._forget(key)

    def _forget(self, key: Key) -> None:
        datagram = self._datagrams.pop(key, None)
        if datagram is not None:
            self.held -= datagram.held


def _rebuild(datagram: _Datagram) -> bytes:
    """The datagram as one IPv4 packet: the first fragment's header (options and all) with
    the whole length, no fragment fields and a new checksum, then the payload in order."""
    header = bytearray(datagram.header)
    payload = b"".join(datagram.pieces[offset] for offset in sorted(datagram.pieces))
    total = len(header) + len(payload)
    header[2:4] = total.to_bytes(2, "big")
    header[6:8] = bytes(2)   # flags and fragment offset: whole now
    header[10:12] = bytes(2)
    header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + payload

