"""Closing against the echo service: the passive close (CLOSE_WAIT, LAST_ACK), the half-close
that still delivers data, and the reset."""

from __future__ import annotations

import pytest

from .conftest import PEER_WIN, WIN_EMPTY, Rig, establish

pytestmark = pytest.mark.integration


@pytest.mark.timeout(30)
def test_peer_fin_is_acked_then_echo_closes_through_last_ack(echo: Rig) -> None:
    flow = establish(echo, 40201)
    flow.send("F.", 1, 1, win=PEER_WIN)
    flow.expect(".", 1, 2, win=WIN_EMPTY)     # ESTABLISHED -> CLOSE_WAIT
    flow.expect("F.", 1, 2, win=WIN_EMPTY)    # echo half-closes in turn: LAST_ACK
    flow.send(".", 2, 2, win=PEER_WIN)
    flow.expect_nothing(0.3)                  # LAST_ACK -> CLOSED
    trace = echo.trace()
    for step in ("ESTABLISHED -> CLOSE_WAIT", "CLOSE_WAIT -> LAST_ACK", "LAST_ACK -> CLOSED"):
        assert f"10.77.0.9:40201 {step}" in trace, trace

    # The connection is gone: the listener answers a segment on the old 4-tuple with a RST.
    flow.send(".", 2, 2, win=PEER_WIN)
    flow.expect("R", 2, win=0)


@pytest.mark.timeout(30)
def test_data_and_fin_in_one_segment_echo_data_after_fin_then_fin(echo: Rig) -> None:
    flow = establish(echo, 40202)
    flow.send("FP.", 1, 1, win=PEER_WIN, payload=b"hello")
    # The window: the first after the SYN-ACK's 64 KiB, with "hello" read, opens to the
    # whole 1 MiB (and the FIN takes no buffer space).
    flow.expect(".", 1, 7, win=WIN_EMPTY)  # a FIN is acked at once (RFC 9293 3.10.7.4, eighth)
    # CLOSE_WAIT still sends: the data comes back after our FIN, the stack's FIN on it (the
    # echo writes and closes in one turn: docs/DECISIONS.md).
    flow.expect("FP.", 1, 7, win=WIN_EMPTY, payload=b"hello")
    flow.send(".", 7, 7, win=PEER_WIN)
    flow.expect_nothing(0.3)
    assert "10.77.0.9:40202 LAST_ACK -> CLOSED" in echo.trace()
    flow.send("P.", 7, 7, win=PEER_WIN, payload=b"late")
    flow.expect("R", 7, win=0)


@pytest.mark.timeout(30)
def test_rst_with_exact_seq_in_established_closes_the_connection(echo: Rig) -> None:
    flow = establish(echo, 40203)
    flow.send("R", 1, win=0)
    flow.expect_nothing(0.3)  # a RST is never answered
    assert "10.77.0.9:40203 ESTABLISHED -> CLOSED" in echo.trace()
    flow.send("P.", 1, 1, win=PEER_WIN, payload=b"anyone?")
    flow.expect("R", 1, win=0)


@pytest.mark.timeout(30)
def test_unacked_fin_in_last_ack_is_retransmitted(echo: Rig) -> None:
    flow = establish(echo, 40204)
    flow.send("F.", 1, 1, win=PEER_WIN)
    flow.expect(".", 1, 2, win=WIN_EMPTY)
    first = flow.expect("F.", 1, 2, win=WIN_EMPTY)
    # The handshake's RTT sample is a few ms, so the RTO is the 0.2 s floor.
    again = flow.expect("F.", 1, 2, win=WIN_EMPTY, timeout=1.0)
    assert 0.15 <= again.at - first.at <= 0.5, f"FIN resent after {again.at - first.at:.3f}s"
    flow.send(".", 2, 2, win=PEER_WIN)
    flow.expect_nothing(0.3)
    assert "10.77.0.9:40204 LAST_ACK -> CLOSED" in echo.trace()


@pytest.mark.timeout(30)
def test_retransmitted_fin_in_last_ack_is_acked_again(echo: Rig) -> None:
    flow = establish(echo, 40205)
    flow.send("F.", 1, 1, win=PEER_WIN)
    flow.expect(".", 1, 2, win=WIN_EMPTY)
    flow.expect("F.", 1, 2, win=WIN_EMPTY)
    flow.send("F.", 1, 1, win=PEER_WIN)  # as if the stack's ACK had been lost
    flow.expect(".", 2, 2, win=WIN_EMPTY)
    flow.send(".", 2, 2, win=PEER_WIN)
    flow.expect_nothing(0.3)
    assert "10.77.0.9:40205 LAST_ACK -> CLOSED" in echo.trace()
