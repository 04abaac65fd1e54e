"""Blind in-window attacks (RFC 5961): only an exactly placed RST resets; a RST merely inside
the window and any SYN on a synchronized connection draw a challenge ACK instead."""

from __future__ import annotations

import pytest

from .conftest import PEER_WIN, WIN_EMPTY, Rig, establish, roundtrip

pytestmark = pytest.mark.integration


@pytest.mark.timeout(30)
def test_rst_in_window_but_not_exact_draws_challenge_ack(echo: Rig) -> None:
    flow = establish(echo, 40301)
    flow.send("R", 2, win=0)  # RCV.NXT + 1
    flow.expect(".", 1, 1, win=WIN_EMPTY)  # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 5961 3.2)
    flow.expect_nothing(0.2)
    roundtrip(flow, 1, 1, b"still here")
    assert "ESTABLISHED -> CLOSED" not in echo.trace()


@pytest.mark.timeout(30)
def test_rst_with_ack_in_window_but_not_exact_draws_challenge_ack(echo: Rig) -> None:
    flow = establish(echo, 40302)
    flow.send("R.", 1000, 1, win=0)
    flow.expect(".", 1, 1, win=WIN_EMPTY)
    roundtrip(flow, 1, 1, b"still here")


@pytest.mark.timeout(30)
def test_rst_out_of_window_is_dropped_silently(echo: Rig) -> None:
    flow = establish(echo, 40303)
    flow.send("R", 1 + (1 << 30), win=0)  # the window is 1 MiB
    flow.send("R", 0, win=0)               # just below RCV.NXT
    flow.expect_nothing(0.3)
    roundtrip(flow, 1, 1, b"still here")


@pytest.mark.timeout(30)
def test_syn_in_window_in_established_draws_challenge_ack(echo: Rig) -> None:
    flow = establish(echo, 40304)
    flow.send("S", 1000, win=65535, options=[("MSS", 1460)])
    flow.expect(".", 1, 1, win=WIN_EMPTY)  # RFC 5961 4.2, whatever the sequence number
    flow.expect_nothing(0.2)
    roundtrip(flow, 1, 1, b"survived")
    assert "ESTABLISHED -> CLOSED" not in echo.trace()


@pytest.mark.timeout(30)
def test_repeated_original_syn_in_established_draws_ack(echo: Rig) -> None:
    flow = establish(echo, 40305)
    flow.send("S", 0, win=65535, options=[("MSS", 1460), ("WScale", 7)])
    flow.expect(".", 1, 1, win=WIN_EMPTY)
    flow.expect_nothing(0.2)
    roundtrip(flow, 1, 1, b"survived")


@pytest.mark.timeout(30)
def test_ack_older_than_the_window_draws_challenge_ack_and_drops_data(echo: Rig) -> None:
    flow = establish(echo, 40306)
    roundtrip(flow, 1, 1, b"hello")  # SND.UNA is 6; the peer's window 64 KiB
    # SEG.ACK < SND.UNA - MAX.SND.WND: unacceptable (RFC 5961 5.2), the segment is dropped.
    flow.send("P.", 6, 6 - 70_000, win=PEER_WIN, payload=b"dropped")
    flow.expect(".", 6, 6, win=WIN_EMPTY)  # the dropped data takes nothing from the window
    flow.expect_nothing(0.2)
    roundtrip(flow, 6, 6, b"kept")


@pytest.mark.timeout(30)
def test_old_duplicate_ack_within_the_window_still_delivers_data(echo: Rig) -> None:
    flow = establish(echo, 40307)
    roundtrip(flow, 1, 1, b"hello")
    # SEG.ACK < SND.UNA but within MAX.SND.WND: the ACK field is ignored, the text kept.
    roundtrip(flow, 6, 6, b"kept", ack=3)
