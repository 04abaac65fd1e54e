"""A connection's events are small typed values that carry what goes with them: the failed
ends say why, so the application never reads the connection's attributes on the side."""

from __future__ import annotations

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.events import ESTABLISHED, Closed, Refused, Reset, TimedOut
from tcpstack.tcp.segment import ACK, RST, SYN
from tests.unit.scripted_peer import ScriptedPeer

ISS = 1_000_000
PEER = 5_000_000


def _events(peer: ScriptedPeer) -> list[object]:
    return [ev for _, ev in peer.stack.events]


def test_a_refused_connect_says_so_and_then_closes() -> None:
    peer = ScriptedPeer(stack_isn=ISS)
    peer.connect(80)
    peer.inject(RST | ACK, 0, ISS + 1)
    assert _events(peer) == [Refused("connection refused"), Closed("connection refused")]


def test_a_reset_from_the_peer_carries_its_error() -> None:
    peer = ScriptedPeer(stack_isn=ISS)
    peer.connect(80)
    peer.inject(SYN | ACK, PEER, ISS + 1, options=tcpseg.encode_options(mss=1460))
    peer.inject(RST, PEER + 1)
    assert _events(peer) == [ESTABLISHED, Reset("connection reset by peer"),
                             Closed("connection reset by peer")]


def test_giving_up_carries_the_reason() -> None:
    peer = ScriptedPeer(TcpConfig(syn_retries=1), stack_isn=ISS)
    peer.connect(80)
    peer.advance(10.0)
    assert _events(peer) == [TimedOut("connection timed out"), Closed("connection timed out")]
