"""The passive open on the wire: SYN-ACK options, the silent third ACK, the first echo, and
SYN-ACK retransmission from SYN_RCVD."""

from __future__ import annotations

import itertools

import pytest

from .conftest import (
    PEER_OPTIONS_WS,
    PEER_WIN,
    PORT,
    SYNACK_OPTIONS,
    SYNACK_OPTIONS_WS,
    SYNACK_OPTIONS_WS_MAYBE_SACK,
    SYNACK_WIN,
    WIN_EMPTY,
    Rig,
    roundtrip,
)

pytestmark = pytest.mark.integration


@pytest.mark.timeout(30)
def test_syn_with_window_scale_gets_mss_and_window_scale_then_echo(echo: Rig) -> None:
    flow = echo.peer.flow(40001, PORT)
    # No timestamps come back (the SYN offers none, RFC 7323 3.2); SACK-permitted may.
    flow.send("S", 0, win=65535, options=[("MSS", 1400), ("WScale", 7), ("SAckOK", b"")])
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS_WS_MAYBE_SACK)

    flow.send(".", 1, 1, win=PEER_WIN)
    flow.expect_nothing(0.3)  # the third ACK of the handshake draws nothing
    assert "10.77.0.9:40001 SYN_RCVD -> ESTABLISHED" in echo.trace()

    flow.send("P.", 1, 1, win=PEER_WIN, payload=b"hello")
    flow.maybe_expect(".", 1, 6)  # the ACK may come alone or ride on the echo
    # The first window after the SYN-ACK's 64 KiB: "hello" is read, all 1 MiB is free.
    flow.expect("P.", 1, 6, win=WIN_EMPTY, payload=b"hello")
    flow.send(".", 6, 6, win=PEER_WIN)
    flow.expect_nothing(0.3)


@pytest.mark.timeout(30)
def test_syn_without_window_scale_gets_no_window_scale(echo: Rig) -> None:
    flow = echo.peer.flow(40002, PORT)
    flow.send("S", 0, win=65535, options=[("MSS", 1400)])
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS)

    flow.send(".", 1, 1, win=65535)
    flow.expect_nothing(0.3)
    flow.send("P.", 1, 1, win=65535, payload=b"hello")
    flow.maybe_expect(".", 1, 6)
    # Unscaled, the receive buffer is capped at 65535 bytes. Read, it is empty again, but the
    # right edge moves only by an MSS or more (receiver SWS avoidance, RFC 9293 3.8.6.2.2).
    flow.expect("P.", 1, 6, win=65530, payload=b"hello")
    flow.send(".", 6, 6, win=65535)
    flow.expect_nothing(0.3)


@pytest.mark.timeout(30)
def test_syn_without_options_gets_mss_only(echo: Rig) -> None:
    flow = echo.peer.flow(40003, PORT)
    flow.send("S", 0, win=8192)
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS)


@pytest.mark.timeout(30)
def test_data_on_the_third_ack_is_delivered(echo: Rig) -> None:
    flow = echo.peer.flow(40004, PORT)
    flow.send("S", 0, win=65535, options=PEER_OPTIONS_WS)
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS_WS)
    flow.send("P.", 1, 1, win=PEER_WIN, payload=b"early")
    flow.maybe_expect(".", 1, 6)
    flow.expect("P.", 1, 6, win=WIN_EMPTY, payload=b"early")  # read, as above
    assert "10.77.0.9:40004 SYN_RCVD -> ESTABLISHED" in echo.trace()


@pytest.mark.timeout(30)
def test_peer_mss_bounds_the_segments_sent(echo: Rig) -> None:
    flow = echo.peer.flow(40005, PORT)
    flow.send("S", 0, win=65535, options=[("MSS", 536), ("WScale", 7)])
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS_WS)
    flow.send(".", 1, 1, win=PEER_WIN)
    data = bytes(range(256)) * 4  # 1024 bytes: echoed as 536 + 488
    flow.send("P.", 1, 1, win=PEER_WIN, payload=data)
    flow.maybe_expect(".", 1, 1025)
    # All 1024 bytes are read before the echo: the first window after the SYN-ACK opens to
    # the whole buffer, and the tail's window is the same (nothing arrived in between).
    flow.expect(".", 1, 1025, win=WIN_EMPTY, payload=data[:536])
    # The short tail may wait for this ACK (Nagle, RFC 9293 3.7.4), or may not.
    flow.send(".", 1025, 537, win=PEER_WIN)
    flow.expect("P.", 537, 1025, win=WIN_EMPTY, payload=data[536:])


@pytest.mark.timeout(30)
def test_syn_rcvd_retransmits_syn_ack_with_doubling_timeout(echo: Rig) -> None:
    flow = echo.peer.flow(40006, PORT)
    sent = flow.send("S", 0, win=65535, options=[("MSS", 1460)])
    first = flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS)
    times = [first.at]
    # Initial RTO 1 s (RFC 6298 2.1), doubled after each timeout (5.5): t = 1, 3, 7 s.
    for gap in (1.0, 2.0, 4.0):
        again = flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS,
                            timeout=gap + 0.6)
        times.append(again.at)
    assert times[0] - sent < 0.2, f"first SYN-ACK took {times[0] - sent:.3f}s"
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    for got, want in zip(gaps, (1.0, 2.0, 4.0), strict=True):
        assert abs(got - want) <= 0.3, f"SYN-ACK retransmission gaps {gaps}, want 1, 2, 4 s"


@pytest.mark.timeout(30)
def test_repeated_syn_in_syn_rcvd_draws_the_syn_ack_at_once(echo: Rig) -> None:
    flow = echo.peer.flow(40007, PORT)
    flow.send("S", 0, win=65535, options=PEER_OPTIONS_WS)
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS_WS)
    flow.expect_nothing(0.2)
    resent = flow.send("S", 0, win=65535, options=PEER_OPTIONS_WS)
    # The same ISN: it is the same half-open connection answering again.
    again = flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS_WS, timeout=0.3)
    assert again.at - resent < 0.2, "the repeated SYN was not answered at once"
    flow.send(".", 1, 1, win=PEER_WIN)
    roundtrip(flow, 1, 1, b"ok")


@pytest.mark.timeout(30)
def test_third_ack_with_wrong_ack_gets_rst_and_the_half_open_survives(echo: Rig) -> None:
    flow = echo.peer.flow(40008, PORT)
    flow.send("S", 0, win=65535, options=PEER_OPTIONS_WS)
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS_WS)
    # SYN-RECEIVED, unacceptable ACK: <SEQ=SEG.ACK><CTL=RST> (RFC 9293 3.10.7.4, fifth).
    flow.send(".", 1, 500, win=PEER_WIN)
    flow.expect("R", 500, win=0)
    flow.send(".", 1, 1, win=PEER_WIN)
    flow.expect_nothing(0.2)
    assert "10.77.0.9:40008 SYN_RCVD -> ESTABLISHED" in echo.trace()
    roundtrip(flow, 1, 1, b"ok")


@pytest.mark.timeout(30)
def test_rst_in_syn_rcvd_drops_the_half_open_connection(echo: Rig) -> None:
    flow = echo.peer.flow(40009, PORT)
    flow.send("S", 0, win=65535, options=PEER_OPTIONS_WS)
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS_WS)
    flow.send("R", 1, win=0)
    flow.expect_nothing(1.3)  # not even the SYN-ACK retransmission due at 1 s
    assert "10.77.0.9:40009 SYN_RCVD -> CLOSED" in echo.trace()
    flow.send(".", 1, 1, win=PEER_WIN)  # the listener answers: nothing to acknowledge
    flow.expect("R", 1, win=0)
