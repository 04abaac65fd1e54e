"""Why a packet was dropped: each reason is also the name of the counter it increments."""

from __future__ import annotations


class MalformedPacket(Exception):
    """A packet that fails validation; `reason` names the drop counter (e.g. `ip_bad_checksum`)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
