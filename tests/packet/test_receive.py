"""The receive side's checks (RFC 9293 3.10.7.4): unacceptable segments draw an ACK and are
not delivered, an ACK of unsent data is refused, out-of-order data draws a duplicate ACK,
and overlapping data is trimmed to what is new."""

from __future__ import annotations

import pytest

from .conftest import ANY, PEER_WIN, WIN_EMPTY, Rig, establish, roundtrip

pytestmark = pytest.mark.integration


@pytest.mark.timeout(30)
def test_old_duplicate_data_draws_ack_and_is_not_echoed_again(echo: Rig) -> None:
    flow = establish(echo, 40401)
    roundtrip(flow, 1, 1, b"hello")
    # Nothing is taken from the window: it stays the whole empty buffer, 1 MiB >> 5.
    flow.send("P.", 1, 6, win=PEER_WIN, payload=b"hello")  # a retransmission: all old
    flow.expect(".", 6, 6, win=WIN_EMPTY)
    flow.send("P.", 6 - 100_000, 6, win=PEER_WIN, payload=b"ancient")
    flow.expect(".", 6, 6, win=WIN_EMPTY)
    flow.expect_nothing(0.3)
    roundtrip(flow, 6, 6, b"next")


@pytest.mark.timeout(30)
def test_data_beyond_the_window_draws_ack_and_is_not_delivered(echo: Rig) -> None:
    flow = establish(echo, 40402)
    roundtrip(flow, 1, 1, b"hello")
    # The window is 32767 << 5, about 1 MiB: this starts two windows past RCV.NXT.
    flow.send("P.", 6 + 2 * (32767 << 5), 6, win=PEER_WIN, payload=b"far ahead")
    flow.expect(".", 6, 6, win=WIN_EMPTY)  # not kept: the window is untouched
    flow.expect_nothing(0.3)
    roundtrip(flow, 6, 6, b"next")


@pytest.mark.timeout(30)
def test_ack_of_unsent_data_draws_ack_and_the_segment_is_dropped(echo: Rig) -> None:
    flow = establish(echo, 40403)
    flow.send("P.", 1, 1000, win=PEER_WIN, payload=b"bogus")  # SEG.ACK > SND.NXT
    flow.expect(".", 1, 1, win=WIN_EMPTY)
    flow.expect_nothing(0.3)
    roundtrip(flow, 1, 1, b"real")


@pytest.mark.timeout(30)
def test_out_of_order_data_draws_an_immediate_duplicate_ack(echo: Rig) -> None:
    flow = establish(echo, 40404)
    sent = flow.send("P.", 101, 1, win=PEER_WIN, payload=b"later")  # a 100-byte hole
    dup = flow.expect(".", 1, 1, win=WIN_EMPTY, timeout=0.5)
    assert dup.at - sent < 0.1, f"duplicate ACK after {dup.at - sent:.3f}s, not at once"
    flow.expect_nothing(0.2)  # nothing delivered past the hole


@pytest.mark.timeout(30)
def test_keepalive_probe_below_rcv_nxt_draws_ack(echo: Rig) -> None:
    flow = establish(echo, 40409)
    flow.send(".", 0, 1, win=PEER_WIN)  # SEG.SEQ = RCV.NXT - 1, no data (RFC 1122 4.2.3.6)
    flow.expect(".", 1, 1, win=WIN_EMPTY)
    flow.send(".", 0, 1, win=PEER_WIN, payload=b"\0")  # the one-garbage-byte kind
    flow.expect(".", 1, 1, win=WIN_EMPTY)
    flow.expect_nothing(0.2)
    roundtrip(flow, 1, 1, b"alive")


@pytest.mark.timeout(30)
def test_data_without_ack_bit_is_dropped_silently(echo: Rig) -> None:
    flow = establish(echo, 40408)
    flow.send("P", 1, win=PEER_WIN, payload=b"no ack")  # 3.10.7.4 fifth: ACK off, drop
    flow.expect_nothing(0.3)
    roundtrip(flow, 1, 1, b"with ack")


@pytest.mark.timeout(30)
def test_partly_old_segment_delivers_only_the_new_bytes(echo: Rig) -> None:
    flow = establish(echo, 40405)
    roundtrip(flow, 1, 1, b"hello")
    flow.send("P.", 4, 6, win=PEER_WIN, payload=b"lo world")  # "lo" is old
    flow.maybe_expect(".", 6, 12)
    # Read before it is echoed; 6 bytes off the window round back up to the scale unit.
    flow.expect("P.", 6, 12, win=WIN_EMPTY, payload=b" world")


@pytest.mark.timeout(30)
def test_sequence_numbers_wrap_around(echo: Rig) -> None:
    flow = establish(echo, 40406, isn=0xFFFFFFF8)  # our byte 8 is sequence number 0
    roundtrip(flow, 1, 1, b"across the wrap")
    roundtrip(flow, 16, 16, b"and on")
    flow.send("F.", 22, 22, win=PEER_WIN)
    # The FIN takes one sequence number off the window, which rounds back up to 1 MiB.
    flow.expect(".", 22, 23, win=WIN_EMPTY)
    flow.expect("F.", 22, 23, win=WIN_EMPTY)


@pytest.mark.timeout(30)
def test_advertised_right_edge_never_moves_left(echo: Rig) -> None:
    """RFC 9293 3.8.6.2.2: the receiver SHOULD NOT shrink the window (move RCV.NXT + RCV.WND
    left). With window scaling, rounding the window down to the scale granularity on every
    ACK does exactly that, a few bytes at a time."""
    flow = establish(echo, 40407)
    edges = []
    seq = 1
    for data in (b"hello", b"kept", b"x" * 27, b"abc"):
        flow.send("P.", seq, seq, win=PEER_WIN, payload=data)
        seq += len(data)
        # A bare ACK may come first, or the ACK may ride on the echo (delayed ACK).
        # Each echo comes once the data is read: at most 27 bytes off the window, fewer
        # than one scale unit, so the edge is rounded out to 1 MiB again each time.
        replies = [flow.maybe_expect(".", ANY, seq, timeout=0.2),
                   flow.expect("P.", ANY, seq, win=WIN_EMPTY, payload=ANY)]
        for got in filter(None, replies):
            edges.append((got.tcp.ack - flow.isn + (got.tcp.window << 5)) & 0xFFFFFFFF)
        flow.send(".", seq, seq, win=PEER_WIN)
    assert edges == sorted(edges), f"right edges (relative) {edges} move left"
