"""The send side seen from the peer: the peer's window bounds what is in flight, unacked data
is retransmitted on a doubling timeout, and a zero window is probed."""

from __future__ import annotations

import time

import pytest

from .conftest import PEER_WIN, PORT, SYNACK_OPTIONS, SYNACK_WIN, WIN_EMPTY, Rig, establish

pytestmark = pytest.mark.integration


@pytest.mark.timeout(30)
def test_peer_window_bounds_the_data_in_flight(echo: Rig) -> None:
    flow = echo.peer.flow(40501, PORT)
    flow.send("S", 0, win=200, options=[("MSS", 1460)])  # no window scale: 200 bytes
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS)
    # A slow third ACK makes the first RTT sample 0.5 s and so the RTO 1.5 s (RFC 6298 2.2),
    # long enough to watch for segments that should not come without one retransmitting.
    time.sleep(0.5)
    flow.send(".", 1, 1, win=200)
    data = bytes(range(250)) * 2
    flow.send("P.", 1, 1, win=200, payload=data)
    flow.maybe_expect(".", 1, 501)
    # Unscaled, the buffer counts as 65535 bytes (a larger window could not be offered).
    # The 500 bytes are read, but moving the right edge by less than an MSS is not worth
    # it (receiver SWS avoidance, RFC 9293 3.8.6.2.2): it stays where the SYN-ACK put it,
    # 65535 bytes past the first data byte.
    window = 65535 - len(data)
    flow.expect(".", 1, 501, win=window, payload=data[:200])
    flow.expect_nothing(0.3)  # the window is full
    flow.send(".", 501, 201, win=200)
    flow.expect(".", 201, 501, win=window, payload=data[200:400])
    flow.expect_nothing(0.3)
    flow.send(".", 501, 401, win=200)
    flow.expect("P.", 401, 501, win=window, payload=data[400:])
    flow.send(".", 501, 501, win=200)
    flow.expect_nothing(0.3)


@pytest.mark.timeout(30)
def test_unacked_data_is_retransmitted_with_doubling_timeout(echo: Rig) -> None:
    flow = establish(echo, 40502)
    flow.send("P.", 1, 1, win=PEER_WIN, payload=b"hello")
    flow.maybe_expect(".", 1, 6)
    # Read before it is echoed: the whole 1 MiB, in the echo and in every resend.
    sent = flow.expect("P.", 1, 6, win=WIN_EMPTY, payload=b"hello")
    # The handshake's RTT sample is a few ms: the RTO is the 0.2 s floor, then 0.4 s.
    first = flow.expect("P.", 1, 6, win=WIN_EMPTY, payload=b"hello", timeout=1.0)
    second = flow.expect("P.", 1, 6, win=WIN_EMPTY, payload=b"hello", timeout=1.5)
    gap1, gap2 = first.at - sent.at, second.at - first.at
    assert 0.15 <= gap1 <= 0.45, f"first retransmission after {gap1:.3f}s, want the 0.2 s RTO"
    assert abs(gap2 - 2 * gap1) <= 0.15, f"gaps {gap1:.3f}s, {gap2:.3f}s: not doubling"
    flow.send(".", 6, 6, win=PEER_WIN)
    flow.expect_nothing(1.0)


@pytest.mark.timeout(30)
def test_zero_window_is_probed_then_data_flows_when_it_opens(echo: Rig) -> None:
    flow = establish(echo, 40503)
    flow.send("P.", 1, 1, win=0, payload=b"hello")  # and our window is closed
    flow.maybe_expect(".", 1, 6)
    # The echo waits; the persist timer (one RTO, 0.2 s) sends a probe below SND.UNA, an
    # old sequence number that any receiver answers with an ACK carrying its window.
    # "hello" was read (it waits in echo's writer, not in our buffer): the whole 1 MiB.
    probe = flow.expect(".", 0, 6, win=WIN_EMPTY, timeout=1.0)
    flow.send(".", 6, 1, win=PEER_WIN)  # the window opens
    reply = flow.expect("P.", 1, 6, win=WIN_EMPTY, payload=b"hello", timeout=0.5)
    assert reply.at - probe.at < 0.2, "data waited after the window opened"
