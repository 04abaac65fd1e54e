"""scripts/core_cost.py measures what it says: every prebuilt segment is taken in order
(none dropped as out of window or old), and the stack answers as a Linux peer would see."""

from __future__ import annotations

from scripts.core_cost import PEER_ISS, STACK_ISS, Setup


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


def test_send_rounds_ack_two_segments_each_and_everything_else_is_in_flight() -> None:
    setup = Setup("send", 50)
    acked, sent = setup.run()
    assert acked == 50 * 2 * 1448  # each round's ACK covers the two oldest segments sent
    snd = setup.conn.snd
    assert sent * 1448 == acked + ((snd.max - snd.una) & 0xFFFFFFFF)
    assert snd.wnd == 552 << 7  # the peer's last window: 503 + 49, scaled by 2**7


def test_send_with_offload_counts_the_segments_the_link_would_cut() -> None:
    setup = Setup("send", 50, offload=True)
    acked, sent = setup.run()
    snd = setup.conn.snd
    assert snd.una == (STACK_ISS + 1 + acked) & 0xFFFFFFFF  # every ACK was taken
    # The segments for the link end on whole MSS even where the window cut them, so the
    # pieces are all full-sized, as without offload.
    assert acked == 50 * 2 * 1448
    assert sent * 1448 == acked + ((snd.max - snd.una) & 0xFFFFFFFF)


def test_send_with_several_acks_a_pass_takes_them_together_and_all() -> None:
    setup = Setup("send", 50, acks=8)
    acked, sent = setup.run()
    snd = setup.conn.snd
    assert snd.una == (STACK_ISS + 1 + acked) & 0xFFFFFFFF  # every ACK was taken
    assert sent * 1448 == acked + ((snd.max - snd.una) & 0xFFFFFFFF)
    acks = acked // (2 * 1448)
    assert acks > 50 * 4  # most passes had 8 (the first flight is short)
    # The ACKs of each pass are taken as one: all but one of each are counted so.
    assert setup.stack.counters["acks_coalesced"] == acks - 50


def test_open_rounds_each_end_in_time_wait_after_three_packets() -> None:
    setup = Setup("open", 25, batch=10)  # the last batch is short
    done, sent = setup.run()
    assert done == 25
    assert sent == 3 * 25  # SYN-ACK, the response with our FIN, the ACK of the peer's FIN
    assert setup.stack.counters["passive_opens"] == 25
    assert len(setup.stack.connections) == 25
