"""Against the discard service: data is acknowledged, exactly and within the half second
RFC 9293 3.8.6.3 allows a delayed ACK, and nothing comes back but ACKs and the close."""

from __future__ import annotations

import pytest

from .conftest import ANY, PEER_WIN, Rig, establish

pytestmark = pytest.mark.integration


@pytest.mark.timeout(30)
def test_discarded_data_is_acked_within_half_a_second_then_close(discard: Rig) -> None:
    flow = establish(discard, 40601)
    seq = 1
    for size in (1000, 1460, 1, 700):
        sent = flow.send("P.", seq, 1, win=PEER_WIN, payload=bytes(size))
        seq += size
        ack = flow.expect(".", 1, seq, win=ANY, timeout=0.6)
        assert ack.at - sent < 0.5, f"ACK after {ack.at - sent:.3f}s, over the 0.5 s limit"
    flow.send("F.", seq, 1, win=PEER_WIN)
    flow.expect(".", 1, seq + 1, win=ANY)
    flow.expect("F.", 1, seq + 1, win=ANY)  # discard closes when the peer does
    flow.send(".", seq + 1, 2, win=PEER_WIN)
    flow.expect_nothing(0.3)
    assert "10.77.0.9:40601 LAST_ACK -> CLOSED" in discard.trace()
