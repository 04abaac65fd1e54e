"""Initial sequence numbers (RFC 6528): a 4-microsecond clock plus a keyed hash of the 4-tuple;
the offset of the timestamp clock (RFC 7323 5.4 and 7.1), a keyed hash of the two
addresses, so a TSval tells nothing of the host's clock while the timestamps of successive
connections between the same two hosts still increase (as Linux's secure_tcp_ts_off); and
the two keyed hashes RFC 6056's algorithm 4 picks ephemeral ports with (stack.py)."""

from __future__ import annotations

import hashlib
import os


class IsnGenerator:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(16)

    def isn(self, local: bytes, local_port: int, remote: bytes, remote_port: int,
            now: float) -> int:
        ident = local + local_port.to_bytes(2, "big") + remote + remote_port.to_bytes(2, "big")
        offset = int.from_bytes(hashlib.blake2s(ident, key=self._secret, digest_size=4).digest(),
                                "big")
        return (int(now * 250_000) + offset) & 0xFFFFFFFF

    def ts_offset(self, local: bytes, remote: bytes) -> int:
        """What this pair of addresses adds to the 1 ms timestamp clock."""
        digest = hashlib.blake2s(b"ts" + local + remote, key=self._secret, digest_size=4)
        return int.from_bytes(digest.digest(), "big")

    def port_hashes(self, local: bytes, remote: bytes, remote_port: int) -> tuple[int, int]:
        """RFC 6056 3.3.4 (algorithm 4, double-hash): F, where in the range a search for a
        free local port towards this destination starts, and G, which counter it uses."""
        ident = local + remote + remote_port.to_bytes(2, "big")
        digest = hashlib.blake2s(b"port" + ident, key=self._secret, digest_size=8).digest()
        return int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:], "big")
