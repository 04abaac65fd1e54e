"""Limits that hold whatever arrives (issue 12): a maximum number of connections, counted
where it refuses one; orphaned connections (the application let go) give up sooner."""

from __future__ import annotations

import pytest

from tcpstack.stack import ConnectionLimit
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.segment import ACK, FIN, RST, SYN
from tcpstack.tcp.state import State
from tests.unit.scripted_peer import PEER_ADDR, ScriptedPeer

ISS = 1_000_000


def test_at_the_connection_limit_syns_are_dropped_and_connects_refused() -> None:
    peer = ScriptedPeer(TcpConfig(max_connections=2, syncookies=0), stack_isn=ISS)
    peer.listen(80)
    for sport in (40001, 40002):
        assert [s.flags for s in peer.inject(SYN, 5000, sport=sport)] == [SYN | ACK]
    assert peer.inject(SYN, 5000, sport=40003) == []  # dropped, as a full SYN queue drops it
    assert peer.stack.counters["conn_limit_drops"] == 1
    with pytest.raises(ConnectionLimit, match="too many connections"):
        peer.stack.connect(PEER_ADDR, 80, peer.now, local_port=50000)
    assert peer.stack.counters["conn_limit_drops"] == 2
    assert len(peer.stack.connections) == 2


def test_an_orphaned_connection_gives_up_after_orphan_retries() -> None:
    """The application closed without reading (close() on a socket) and the peer went
    silent: Linux's tcp_orphan_retries, not the 15 retries of a connection someone waits on."""
    config = TcpConfig(orphan_retries=2, max_retries=15, tail_loss_probe=False)
    peer = ScriptedPeer(config, stack_isn=ISS)
    peer.listen(80)
    syn_ack = peer.inject(SYN, 5000, options=tcpseg.encode_options(mss=1460))[0]
    peer.inject(ACK, 5001, syn_ack.seq + 1)
    conn = peer.accepted()
    conn.stop_reading()
    peer.app_close(conn)  # our FIN goes, and is never acknowledged
    assert conn.state is State.FIN_WAIT_1
    rto = conn.rtt.rto
    peer.advance(rto + 2 * rto + 4 * rto + 0.001)  # two resends of the FIN, then the give-up
    assert conn.state is State.CLOSED
    assert ConnEvent.TIMEOUT in peer.events(conn)


def test_orphans_beyond_the_limit_are_reset_newest_first() -> None:
    """Linux's tcp_max_orphans: connections the application closed whose peers never
    answer cannot pile up; the one that goes beyond the limit is reset at once."""
    peer = ScriptedPeer(TcpConfig(max_orphans=1), stack_isn=ISS)
    peer.listen(80)
    conns = []
    for sport in (40001, 40002):
        syn_ack = peer.inject(SYN, 5000, sport=sport, options=tcpseg.encode_options(mss=1460))
        peer.inject(ACK, 5001, syn_ack[0].seq + 1, sport=sport)
        conns.append(next(c for c in peer.stack.connections.values() if c.remote_port == sport))
    peer.take()
    for conn in conns:
        conn.stop_reading()
        peer.app_close(conn)
    sent = peer.take()
    # The second orphan is reset before its FIN goes: the peer learns at once.
    assert [(s.dport, s.flags) for s in sent] == [(40001, FIN | ACK), (40002, RST)]
    assert conns[0].state is State.FIN_WAIT_1 and conns[1].state is State.CLOSED
    assert peer.stack.counters["orphan_resets"] == 1
