"""The bytes the application has queued and the peer has not yet acknowledged."""

from __future__ import annotations

from tcpstack.net.checksum import Bytes

_COMPACT_AT = 1 << 16


class SendBuffer:
    """A bounded queue indexed from SND.UNA: offset 0 is the oldest unacknowledged byte.

    Acknowledged bytes are dropped by moving a head index; the storage is compacted only
    once the dead prefix is large, so an ACK costs no memmove."""

    __slots__ = ("_buf", "_head", "capacity")

    def __init__(self, capacity: int) -> None:
        self._buf = bytearray()
        self._head = 0
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self._buf) - self._head

    @property
    def space(self) -> int:
        return self.capacity - len(self)

    def append(self, data: Bytes) -> int:
        """Queue as much of `data` as fits; return how many bytes were taken."""
        n = min(len(data), self.capacity - len(self))
        if n > 0:
            self._buf += data[:n] if n < len(data) else data
        return max(n, 0)

    def peek(self, offset: int, n: int) -> bytearray:
        start = self._head + offset
        return self._buf[start:start + n]

    def consume(self, n: int) -> None:
        """Drop the `n` oldest bytes (they were acknowledged)."""
        self._head += n
        if self._head >= _COMPACT_AT and self._head * 2 >= len(self._buf):
            del self._buf[:self._head]
            self._head = 0
