"""scripts/core_cost.py measures what it says: every prebuilt segment is taken in order
(none dropped as out of window or old), and the stack answers as a Linux peer would see."""

from __future__ import annotations

from scripts.core_cost import PEER_ISS, Setup


def test_pingpong_rounds_each_deliver_a_byte_and_send_one_reply() -> None:
    read, sent = Setup("pingpong", 50).run()
    assert read == 50
    assert sent == 50  # the reply carries the ACK: no separate ACK per round


def test_receive_rounds_deliver_every_segment_and_ack_every_second() -> None:
    setup = Setup("receive", 50)
    read, sent = setup.run()
    assert read == 50 * 1448
    assert sent == 25  # delayed ACK: one ACK per two full-sized segments (RFC 5681 4.2)
    assert setup.conn.rcv.nxt == (PEER_ISS + 1 + 50 * 1448) & 0xFFFFFFFF
