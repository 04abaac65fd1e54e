"""Against the discard service: data is acknowledged, exactly and within the half second
RFC 9293 3.8.6.3 allows a delayed ACK, and nothing comes back but ACKs and the close."""

from __future__ import annotations

import pytest

from .conftest import PEER_WIN, WIN_EMPTY, Rig, establish

pytestmark = pytest.mark.integration


@pytest.mark.timeout(30)
def test_discarded_data_is_acked_within_half_a_second_then_close(discard: Rig) -> None:
    flow = establish(discard, 40601)
    seq = 1
    # The windows, with each size read at once (RFC 9293 3.8.6.2.2, at scale 5): the first
    # after the SYN-ACK's 64 KiB opens all 1 MiB; 1460 bytes move the edge by an MSS, so it
    # moves; 1 byte rounds back up to the scale unit; 700 bytes are less than an MSS, so
    # the edge stays and the window is (1 MiB - 700) / 32 rounded up, which the FIN's one
    # sequence number does not change.
    after_700 = 32747  # (1048576 - 700) / 32 = 32746.1, rounded up
    for size, window in ((1000, WIN_EMPTY), (1460, WIN_EMPTY), (1, WIN_EMPTY),
                         (700, after_700)):
        sent = flow.send("P.", seq, 1, win=PEER_WIN, payload=bytes(size))
        seq += size
        ack = flow.expect(".", 1, seq, win=window, timeout=0.6)
        assert ack.at - sent < 0.5, f"ACK after {ack.at - sent:.3f}s, over the 0.5 s limit"
    flow.send("F.", seq, 1, win=PEER_WIN)
    flow.expect(".", 1, seq + 1, win=after_700)
    flow.expect("F.", 1, seq + 1, win=after_700)  # discard closes when the peer does
    flow.send(".", seq + 1, 2, win=PEER_WIN)
    flow.expect_nothing(0.3)
    assert "10.77.0.9:40601 LAST_ACK -> CLOSED" in discard.trace()
