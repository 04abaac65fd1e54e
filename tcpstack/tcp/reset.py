"""The RST that answers a segment no connection or listener will take (RFC 9293 3.10.7.1)."""

from __future__ import annotations

from tcpstack.tcp.segment import ACK, RST, Segment


def reset_reply(seg: Segment) -> tuple[int, int, int] | None:
    """(seq, ack, flags) of the reply to `seg` from a CLOSED socket, or None for a RST.

    If the stray carries an ACK, the reset takes its sequence number from that ACK, so the
    sender will find it acceptable; otherwise it is <SEQ=0><ACK=SEG.SEQ+SEG.LEN><RST,ACK>."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return seg.ack, 0, RST
    return 0, (seg.seq + len(seg)) & 0xFFFFFFFF, RST | ACK
