"""The window field of a SYN or SYN-ACK is never scaled (RFC 7323 2.2); the scale the peer
announces there applies from the next segment on. Each test gives the stack a SYN whose
window (1000) is small and whose scale (7) is large, so a wrongly scaled SYN window (128,000)
shows in snd_wnd and in how much data the stack then sends before any ACK."""

from __future__ import annotations

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.segment import ACK, SYN
from tcpstack.tcp.state import State
from tests.unit.scripted_peer import ScriptedPeer

ISS = 1_000_000
PEER = 5_000_000
SYN_WINDOW = 1000
WSCALE = 7
OPTIONS = tcpseg.encode_options(mss=1460, sack_permitted=True, wscale=WSCALE)


def _data_lengths(peer: ScriptedPeer) -> list[int]:
    return [len(s.payload) for s in peer.take() if s.payload]


def test_syn_ack_window_is_taken_unscaled_and_bounds_the_first_flight() -> None:
    peer = ScriptedPeer(TcpConfig(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.inject(SYN | ACK, PEER, ISS + 1, window=SYN_WINDOW, options=OPTIONS)
    assert conn.state is State.ESTABLISHED
    assert conn.snd.wscale == WSCALE  # remembered for what follows
    assert (conn.snd.wnd, conn.snd.max_wnd) == (SYN_WINDOW, SYN_WINDOW)
    # Ten segments' worth of data and an initial cwnd of ten: the peer's window is the limit.
    peer.app_send(conn, bytes(14_000))
    assert _data_lengths(peer) == [SYN_WINDOW]
    # The ACK's window field is scaled: 8 << 7 = 1024 bytes, and that much goes next.
    answer = peer.inject(ACK, PEER + 1, ISS + 1 + SYN_WINDOW, window=8)
    assert conn.snd.wnd == 8 << WSCALE
    assert [len(s.payload) for s in answer if s.payload] == [8 << WSCALE]


def test_syn_window_is_taken_unscaled_by_a_passive_open() -> None:
    peer = ScriptedPeer(TcpConfig(), stack_isn=ISS)
    peer.listen(80)
    peer.inject(SYN, PEER, window=SYN_WINDOW, options=OPTIONS)
    conn = peer.accepted()
    assert conn.state is State.SYN_RCVD
    assert conn.snd.wscale == WSCALE
    assert (conn.snd.wnd, conn.snd.max_wnd) == (SYN_WINDOW, SYN_WINDOW)
    peer.app_send(conn, bytes(3000))  # queued: nothing goes before the handshake completes
    assert _data_lengths(peer) == []
    # The handshake's ACK offers 7 << 7 = 896 bytes. That is more than half the largest
    # window seen (the SYN's 1000), so sender-side SWS avoidance (RFC 9293 3.8.6.2.1) lets a
    # short segment go; had the SYN's window been scaled, the largest window would read
    # 128,000 and the 896 bytes would wait.
    answer = peer.inject(ACK, PEER + 1, ISS + 1, window=7)
    assert conn.state is State.ESTABLISHED
    assert (conn.snd.wnd, conn.snd.max_wnd) == (7 << WSCALE, SYN_WINDOW)
    assert [len(s.payload) for s in answer if s.payload] == [7 << WSCALE]
