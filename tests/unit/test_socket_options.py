"""Socket options on a live connection (the socket facade's setsockopt): Connection.set_*
on two stacks over the in-memory link, on its virtual clock (tests/unit/link_pair.py)."""

from __future__ import annotations

import pytest

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.state import State

from .link_pair import LinkPair


def _data_frames(pair: LinkPair, sender: str) -> list[int]:
    return [f.payload_len for f in pair.tcp_frames(sender) if f.payload_len]


def test_set_nodelay_sends_what_nagle_holds_at_the_next_flush() -> None:
    pair = LinkPair(delay=0.05)
    client, _ = pair.established_pair()
    client.send(b"x")
    pair.step(horizon=pair.now)  # the first small segment leaves: nothing is unacked
    client.send(b"y")
    pair.step(horizon=pair.now)
    assert _data_frames(pair, "a") == [1]  # Nagle holds "y" behind the unacked "x"
    client.set_nodelay(True)
    pair.step(horizon=pair.now)
    assert _data_frames(pair, "a") == [1, 1]  # at once, before the ACK of "x"
    assert pair.in_flight == 2


def test_set_keepalive_starts_and_stops_probing_on_its_own_config() -> None:
    shared = TcpConfig(keepalive_idle=10.0, keepalive_interval=1.0, keepalive_count=2)
    pair = LinkPair(config_a=shared)
    client, server = pair.established_pair()
    assert client.timers.keepalive is None
    client.set_keepalive(True, pair.now)
    assert client.timers.keepalive == pytest.approx(pair.now + 10.0)
    assert client.config.keepalive and not shared.keepalive  # its own copy
    client.set_keepalive_timing(pair.now, keepalive_idle=4.0)
    assert client.timers.keepalive == pytest.approx(pair.now + 4.0)
    assert (client.config.keepalive_idle, shared.keepalive_idle) == (4.0, 10.0)
    start, sent = pair.now, client.counts.segments_out
    pair.run_until(lambda: client.counts.segments_out > sent, timeout=30)
    assert pair.now == pytest.approx(start + 4.0)  # the probe, after the new idle time
    assert client.state is State.ESTABLISHED and server.state is State.ESTABLISHED
    client.set_keepalive(False, pair.now)
    assert client.timers.keepalive is None


def test_set_receive_buffer_fixes_the_window_without_pulling_its_edge_back() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    assert client.rcv.tuning is not None
    advertised = (client.rcv.adv - client.rcv.nxt) & 0xFFFFFFFF
    client.set_receive_buffer(4000)
    assert client.rcv.tuning is None and client.rcv.capacity == 4000
    server.send(b"z" * 400_000)
    pair.run_until(lambda: client.rcv.unread_bytes >= 4000, timeout=10)
    pair.settle()
    # The edge advertised before stays (RFC 9293 3.8.6.2.2): the sender fills up to it,
    # less what its silly window avoidance keeps for a full segment, and no further.
    received = client.rcv.unread_bytes
    assert received > advertised - client.snd.mss  # not cut back to the new 4000 bytes
    assert client.rcv.window < client.snd.mss      # closed, not reopened
    client.read()
    pair.settle()
    unit = 1 << client.rcv.wscale  # the window field rounds up to the scale's unit
    assert 0 < client.rcv.window < 4000 + unit     # the new buffer's from now on


def test_set_send_buffer_bounds_what_the_application_may_queue() -> None:
    pair = LinkPair()
    client, _ = pair.established_pair()
    client.set_send_buffer(3000)
    assert client.send(b"q" * 10_000) == 3000
