"""Out-of-order data waiting for a hole before it to fill (RFC 9293 3.10.7.4, "segment text").

Segments that arrive beyond RCV.NXT are kept here, trimmed to the receive window, with
overlaps and duplicates cut away, until the bytes before them arrive. Only data inside the
window we advertised is ever stored, so the queue is bounded by that window. The blocks also
feed the SACK option (RFC 2018), most recently changed first.
"""

from __future__ import annotations

import contextlib

from tcpstack.tcp.seq import MASK


class ReassemblyQueue:
    __slots__ = ("_blocks", "_recent", "fin_seq")

    def __init__(self) -> None:
        # Disjoint, non-adjacent runs [start, start+len) in sequence space, as (start, data),
        # kept in order of distance from RCV.NXT. Both are lists only once a segment came out
        # of order: until then the empty tuple, since an empty list costs 56 bytes and most
        # connections never need one.
        self._blocks: list[tuple[int, bytes]] | tuple[()] = ()
        self._recent: list[int] | tuple[()] = ()  # starts of blocks, most recently touched first
        self.fin_seq: int | None = None  # where an out-of-order FIN sits

    def __bool__(self) -> bool:
        return bool(self._blocks) or self.fin_seq is not None

    def __len__(self) -> int:
        """Bytes held."""
        return sum(len(data) for _, data in self._blocks)

    def add(self, seq: int, data: bytes, rcv_nxt: int, window: int) -> None:
        """Keep the part of `data` (starting at `seq`) that lies in (RCV.NXT, RCV.NXT+window)."""
        offset = (seq - rcv_nxt) & MASK
        if offset >= window or not data:
            return
        merged_start, merged = offset, data[:window - offset]
        kept: list[tuple[int, bytes]] = []
        for block_seq, block in self._blocks:
            b_start = (block_seq - rcv_nxt) & MASK
            b_end = b_start + len(block)
            if b_end < merged_start or b_start > merged_start + len(merged):
                kept.append((block_seq, block))
                continue
            # Overlapping or touching: fold the block in, keeping the bytes first received.
            lo = min(b_start, merged_start)
            hi = max(b_end, merged_start + len(merged))
            buf = bytearray(hi - lo)
            buf[merged_start - lo:merged_start - lo + len(merged)] = merged
            buf[b_start - lo:b_end - lo] = block
            merged_start, merged = lo, bytes(buf)
            self._forget(block_seq)
        new_seq = (rcv_nxt + merged_start) & MASK
        kept.append((new_seq, merged))
        kept.sort(key=lambda b: (b[0] - rcv_nxt) & MASK)
        self._blocks = kept
        self._touch(new_seq)

    def pop_ready(self, rcv_nxt: int) -> bytes:
        """The bytes that now continue at RCV.NXT (possibly empty), removed from the queue.
        Blocks wholly before RCV.NXT are dropped, a block straddling it is trimmed."""
        out = b""
        blocks = self._blocks
        while blocks:
            assert isinstance(blocks, list)  # non-empty: add() made it one
            block_seq, block = blocks[0]
            offset = (rcv_nxt - block_seq) & MASK
            if offset > len(block) and offset < (1 << 31):
                blocks.pop(0)  # already covered by in-order data
                self._forget(block_seq)
                continue
            if offset >= (1 << 31):  # the block starts beyond RCV.NXT: a hole remains
                break
            blocks.pop(0)
            self._forget(block_seq)
            piece = block[offset:]
            out += piece
            rcv_nxt = (rcv_nxt + len(piece)) & MASK
        return out

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` (left edge, right edge) pairs, the most recently changed first."""
        by_start = {seq: len(data) for seq, data in self._blocks}
        out = []
        for start in self._recent:
            if start in by_start:
                out.append((start, (start + by_start[start]) & MASK))
                if len(out) == limit:
                    break
        return out

    def _touch(self, start: int) -> None:
        self._forget(start)
        recent = self._recent
        if isinstance(recent, list):
            recent.insert(0, start)
        else:
            self._recent = [start]

    def _forget(self, start: int) -> None:
        recent = self._recent
        if isinstance(recent, list):
            with contextlib.suppress(ValueError):
                recent.remove(start)
