"""The bytes the application has queued and the peer has not yet acknowledged."""

from __future__ import annotations

from tcpstack.net.checksum import Bytes

_COMPACT_AT = 1 << 16


class SendBuffer:
    """A bounded queue indexed from SND.UNA: offset 0 is the oldest unacknowledged byte.

    Acknowledged bytes are dropped by moving a head index; the storage is compacted only
    once the dead prefix is large, so an ACK costs no memmove.

    `peek` returns a view, not a copy: the segment carries it to the link, which writes it
    with the headers (writev), so a byte is copied once, into the kernel. A bytearray with
    a view alive cannot be resized (BufferError); the views live from a flush until the link
    has written the pass's packets, when no append or ACK comes, but a holder that keeps a
    packet longer (a test's delayed link) must not break the buffer: then the storage is left
    to the views, unchanged for ever, and the buffer moves on in a copy.

    Empty, it holds no storage (the empty bytes, not a 56-byte bytearray): most of a
    server's connections sit idle with nothing unacknowledged, and storage emptied by an
    ACK is let go rather than kept at its largest."""

    __slots__ = ("_buf", "_head", "capacity")

    def __init__(self, capacity: int) -> None:
        self._buf: bytearray | bytes = b""
        self._head = 0
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self._buf) - self._head

    @property
    def space(self) -> int:
        return self.capacity - len(self)

    def append(self, data: Bytes) -> int:
        """Queue as much of `data` as fits; return how many bytes were taken."""
        n = min(len(data), self.capacity - (len(self._buf) - self._head))  # len(self), inline
        if n > 0:
            chunk = data[:n] if n < len(data) else data
            if not self._buf:
                self._buf = bytearray(chunk)
                return n
            try:
                self._buf += chunk
            except BufferError:  # a view is alive: see the class docstring
                self._buf = self._buf[self._head:] + chunk
                self._head = 0
        return max(n, 0)

    def peek(self, offset: int, n: int) -> memoryview:
        """A view of `n` bytes from `offset`; their value never changes (class docstring)."""
        start = self._head + offset
        return memoryview(self._buf)[start:start + n]

    def consume(self, n: int) -> None:
        """Drop the `n` oldest bytes (they were acknowledged)."""
        self._head += n
        if self._head >= len(self._buf):  # all acknowledged: the storage goes
            self._buf = b""
            self._head = 0
        elif self._head >= _COMPACT_AT and self._head * 2 >= len(self._buf):
            try:
                del self._buf[:self._head]  # type: ignore[union-attr]  # not empty: a bytearray
            except BufferError:  # a view is alive: see the class docstring
                self._buf = self._buf[self._head:]
            self._head = 0
