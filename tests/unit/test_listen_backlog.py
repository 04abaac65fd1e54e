"""The listen backlog: a listener holds at most `backlog` half-open connections (SYN_RCVD).
With SYN cookies off (TcpConfig.syncookies=0, Linux's tcp_syncookies=0), a SYN beyond that
is dropped without an answer and counted (`listen_overflows`, Linux's
TcpExtListenOverflows), so the peer's own SYN retransmission tries again later, while the
connections the listener already has go on being served. (With cookies, the default, it
gets a SYN cookie: test_syncookies.py.)"""

from __future__ import annotations

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.segment import ACK, PSH, SYN
from tcpstack.tcp.state import State
from tests.unit.scripted_peer import PEER_ADDR, ScriptedPeer, Sent

ISS = 1_000_000
PEER = 5_000_000
OPTIONS = tcpseg.encode_options(mss=1460)


def _syn(peer: ScriptedPeer, sport: int) -> list[Sent]:
    return peer.inject(SYN, PEER, sport=sport, options=OPTIONS)


def _conn(peer: ScriptedPeer, sport: int) -> Connection:
    return peer.stack.connections[(PEER_ADDR, sport, 80)]


def test_syn_beyond_the_backlog_is_dropped_and_counted_while_the_listener_serves_the_rest(
        ) -> None:
    peer = ScriptedPeer(TcpConfig(delayed_ack=0.0, syncookies=0), stack_isn=ISS)
    listener = peer.listen(80, backlog=2)
    assert [s.flags for s in _syn(peer, 40001)] == [SYN | ACK]
    assert [s.flags for s in _syn(peer, 40002)] == [SYN | ACK]
    assert listener.half_open == 2

    assert _syn(peer, 40003) == []  # no SYN-ACK, and no RST either
    counters = peer.stack.counters
    assert counters["listen_overflows"] == 1
    assert counters["passive_opens"] == 2
    assert sorted(port for _, port, _ in peer.stack.connections) == [40001, 40002]

    # The two it holds complete their handshakes and carry data both ways.
    for sport in (40001, 40002):
        peer.inject(ACK, PEER + 1, ISS + 1, sport=sport)
        conn = _conn(peer, sport)
        assert conn.state is State.ESTABLISHED
        assert ConnEvent.ESTABLISHED in peer.events(conn)
        ack = peer.inject(ACK | PSH, PEER + 1, ISS + 1, sport=sport, payload=b"hello")
        assert [(s.ack, s.payload) for s in ack] == [(PEER + 6, b"")]
        assert peer.app_read(conn) == b"hello"
        peer.app_send(conn, b"world")
        assert [(s.dport, s.payload) for s in peer.take()] == [(sport, b"world")]
    assert listener.half_open == 0

    # With the half-open slots free again, the refused peer's retransmitted SYN gets in.
    assert [s.flags for s in _syn(peer, 40003)] == [SYN | ACK]
    assert counters["listen_overflows"] == 1
    assert counters["passive_opens"] == 3
    assert _conn(peer, 40003).state is State.SYN_RCVD


def test_backlog_counts_half_open_connections_not_established_ones() -> None:
    peer = ScriptedPeer(TcpConfig(delayed_ack=0.0, syncookies=0), stack_isn=ISS)
    listener = peer.listen(80, backlog=1)
    _syn(peer, 40001)
    peer.inject(ACK, PEER + 1, ISS + 1, sport=40001)  # established: its slot is free
    assert [s.flags for s in _syn(peer, 40002)] == [SYN | ACK]
    assert _syn(peer, 40003) == []  # 40002 is half-open and fills the backlog
    assert listener.half_open == 1
    assert peer.stack.counters["listen_overflows"] == 1
