"""Limits that hold whatever arrives (issue 12): a maximum number of connections, counted
where it refuses one; orphaned connections (the application let go) give up sooner; the
connections in TIME_WAIT are bounded in number."""

from __future__ import annotations

import pytest

from tcpstack.stack import ConnectionLimit
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
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


def _closed_first(peer: ScriptedPeer, sport: int) -> Connection:
    """A connection from `sport` that the stack closes first, up to its TIME_WAIT: our FIN
    acknowledged, the peer's FIN acknowledged."""
    syn_ack = peer.inject(SYN, 5000, sport=sport, options=tcpseg.encode_options(mss=1460))[0]
    peer.inject(ACK, 5001, syn_ack.seq + 1, sport=sport)
    conn = next(c for c in peer.stack.connections.values() if c.remote_port == sport)
    peer.app_close(conn)
    assert peer.inject(FIN | ACK, 5001, syn_ack.seq + 2, sport=sport)[0].flags == ACK
    return conn


def test_time_wait_beyond_the_limit_ends_the_oldest() -> None:
    """A server that closes first makes a TIME_WAIT per connection, for 2MSL (60 s): under
    a sustained load from many peers they would fill the table and the SYNs of new ones
    would be dropped. Past `max_time_wait` the oldest ends at once (Linux's
    tcp_max_tw_buckets), counted; the others keep their full 2MSL."""
    peer = ScriptedPeer(TcpConfig(max_time_wait=2, max_connections=3), stack_isn=ISS)
    peer.listen(80)
    conns = []
    for sport in (40001, 40002):
        conns.append(_closed_first(peer, sport))
        peer.advance(1.0)
    assert [c.state for c in conns] == [State.TIME_WAIT, State.TIME_WAIT]
    conns.append(_closed_first(peer, 40003))
    assert [c.state for c in conns] == [State.CLOSED, State.TIME_WAIT, State.TIME_WAIT]
    assert peer.stack.counters["time_wait_overflow"] == 1
    assert conns[0] not in peer.stack.connections.values()
    assert len(peer.stack.connections) == 2
    # The room it left takes a new connection, which the limit would have refused.
    assert [s.flags for s in peer.inject(SYN, 9000, sport=40004)] == [SYN | ACK]
    assert peer.stack.counters["conn_limit_drops"] == 0
    # The others' 2MSL runs from their own start: the second ends 60 s after its entry.
    entered = peer.now - 1.0
    peer.advance_to(entered + 2 * peer.config.msl - 0.001)
    assert conns[1].state is State.TIME_WAIT
    peer.advance(0.002)
    assert conns[1].state is State.CLOSED
    assert conns[2].state is State.TIME_WAIT
    assert peer.stack.counters["time_wait_overflow"] == 1


def test_a_time_wait_reopened_by_a_syn_leaves_the_count() -> None:
    """A SYN that ends a TIME_WAIT (a peer reusing its port) takes it out of those counted:
    the limit then ends none."""
    peer = ScriptedPeer(TcpConfig(max_time_wait=1), stack_isn=ISS)
    peer.listen(80)
    first = _closed_first(peer, 40001)
    reply = peer.inject(SYN, 100_000, sport=40001, options=tcpseg.encode_options(mss=1460))
    assert [s.flags for s in reply] == [SYN | ACK] and first.state is State.CLOSED
    _closed_first(peer, 40002)
    assert peer.stack.counters["time_wait_overflow"] == 0
