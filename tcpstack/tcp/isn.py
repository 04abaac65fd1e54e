"""Initial sequence numbers (RFC 6528): a 4-microsecond clock plus a keyed hash of the 4-tuple."""

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
