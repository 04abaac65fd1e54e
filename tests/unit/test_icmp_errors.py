"""ICMP errors about our segments (RFC 5927, RFC 1122 4.2.3.9, RFC 1191): believed only when
they quote a connection of ours and a sequence number in flight on it; a destination
unreachable fails a connection attempt at once with the error a socket would give; once
synchronized every error is soft; "fragmentation needed" shrinks the segments, resends at
the new size and is remembered for the destination."""

from __future__ import annotations

import errno
import struct

from tcpstack.net import ipv4
from tcpstack.net.checksum import checksum
from tcpstack.net.ipv4 import PROTO_ICMP, PROTO_TCP
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.events import ConnEvent, TimedOut, Unreachable
from tcpstack.tcp.segment import ACK, PSH, SYN
from tcpstack.tcp.state import State
from tests.unit.scripted_peer import PEER_ADDR, STACK_ADDR, ScriptedPeer, lines

ISS = 1_000_000
PEER_ISS = 5_000_000
LOCAL_PORT = 50000
ROUTER = bytes([10, 77, 0, 254])
MSS = 1460


def _icmp(icmp_type: int, code: int, seq: int, *, mtu: int = 0, sport: int = LOCAL_PORT,
          dport: int = 80, src: bytes = STACK_ADDR) -> bytes:
    """An ICMP error from a router, quoting the IPv4 header and first 8 TCP bytes of a
    segment `src` sent from `sport` to `dport` with sequence number `seq`."""
    quoted_tcp = struct.pack("!HHI", sport, dport, seq)
    quoted = ipv4.build(src, PEER_ADDR, PROTO_TCP, quoted_tcp + bytes(12))[:28]
    body = struct.pack("!HH", 0, mtu) + quoted
    message = struct.pack("!BBH", icmp_type, code, 0) + body
    message = message[:2] + checksum(message).to_bytes(2, "big") + message[4:]
    return ipv4.build(ROUTER, STACK_ADDR, PROTO_ICMP, message)


def _connecting(config: TcpConfig | None = None) -> tuple[ScriptedPeer, object]:
    peer = ScriptedPeer(config, stack_isn=ISS)
    conn = peer.connect(80, LOCAL_PORT)
    assert [s.flags for s in peer.take()] == [SYN]
    return peer, conn


def test_port_unreachable_fails_a_connect_at_once_with_connection_refused() -> None:
    peer, conn = _connecting()
    assert peer.inject_packet(_icmp(3, 3, ISS)) == []
    assert conn.state is State.CLOSED  # type: ignore[attr-defined]
    (event,) = [ev for c, ev in peer.stack.events if ev.kind is ConnEvent.UNREACHABLE]
    assert event == Unreachable("connection refused (port unreachable)", errno.ECONNREFUSED)
    assert peer.stack.counters["icmp_errors_accepted"] == 1
    assert peer.next_deadline() is None  # no SYN retransmission is left


def test_network_and_host_unreachable_fail_a_connect_with_their_own_words() -> None:
    for code, number, text in ((0, errno.ENETUNREACH, "network unreachable"),
                               (1, errno.EHOSTUNREACH, "host unreachable")):
        peer, conn = _connecting()
        peer.inject_packet(_icmp(3, code, ISS))
        assert conn.error == text  # type: ignore[attr-defined]
        assert [ev for _, ev in peer.stack.events if ev.kind is ConnEvent.UNREACHABLE] == [
            Unreachable(text, number)]


def test_an_error_quoting_nothing_in_flight_changes_nothing_and_is_counted() -> None:
    peer, conn = _connecting()
    peer.inject_packet(_icmp(3, 1, ISS + 5))          # a sequence number never sent
    peer.inject_packet(_icmp(3, 1, ISS, sport=50001))  # no such connection
    peer.inject_packet(_icmp(3, 1, ISS, src=bytes([10, 77, 0, 9])))  # not our datagram
    assert conn.state is State.SYN_SENT  # type: ignore[attr-defined]
    counters = peer.stack.counters
    assert (counters["icmp_out_of_window"], counters["icmp_unmatched"],
            counters["icmp_errors_accepted"]) == (1, 2, 0)
    assert [s.flags for s in peer.advance(1.0)] == [SYN]  # the attempt goes on


def test_time_exceeded_is_soft_and_named_when_the_attempt_times_out() -> None:
    peer, conn = _connecting(TcpConfig(syn_retries=1))
    peer.inject_packet(_icmp(11, 0, ISS))
    assert conn.state is State.SYN_SENT  # type: ignore[attr-defined]
    peer.advance(1.0 + 2.0 + 4.0)  # the SYN again after 1 s, then the give-up after 2 s more
    assert conn.state is State.CLOSED  # type: ignore[attr-defined]
    assert [ev for _, ev in peer.stack.events if ev.kind is ConnEvent.TIMEOUT] == [
        TimedOut("connection timed out (time to live exceeded)")]


def _established(peer: ScriptedPeer, sport: int = 40000) -> object:
    peer.listen(80)
    syn_ack = peer.inject(SYN, PEER_ISS, sport=sport, options=tcpseg.encode_options(mss=MSS))[0]
    peer.inject(ACK, PEER_ISS + 1, syn_ack.seq + 1, sport=sport)
    return peer.accepted()


def test_fragmentation_needed_shrinks_the_segments_and_resends_at_the_new_size() -> None:
    peer = ScriptedPeer(TcpConfig(), stack_isn=ISS)
    conn = _established(peer)
    peer.app_send(conn, bytes(3 * MSS))  # type: ignore[arg-type]
    sent = peer.take()
    assert [len(s.payload) for s in sent] == [MSS, MSS, MSS]
    # The path takes 1000-byte datagrams: 960 bytes of TCP payload without options.
    resent = peer.inject_packet(_icmp(3, 4, ISS + 1, mtu=1000, sport=80, dport=40000))
    # Everything in flight goes again, cut to the new size, from SND.UNA.
    assert [(s.seq - ISS - 1, len(s.payload)) for s in resent] == [
        (0, 960), (960, 960), (1920, 960), (2880, 960), (3840, 540)]
    assert conn.snd.mss == 960  # type: ignore[attr-defined]
    assert conn.state is State.ESTABLISHED  # type: ignore[attr-defined]
    assert peer.stack.counters["pmtu_lowered"] == 1
    # A larger MTU later changes nothing: only ICMP lowers the estimate.
    peer.inject_packet(_icmp(3, 4, ISS + 1, mtu=1400, sport=80, dport=40000))
    assert conn.snd.mss == 960  # type: ignore[attr-defined]


def test_the_path_mtu_is_remembered_for_the_destination_for_ten_minutes() -> None:
    peer = ScriptedPeer(TcpConfig(), stack_isn=ISS)
    conn = _established(peer)
    peer.app_send(conn, bytes(MSS))  # type: ignore[arg-type]
    peer.inject_packet(_icmp(3, 4, ISS + 1, mtu=1000, sport=80, dport=40000))
    # A new connection from the same peer, which offers 1460, gets 960.
    syn_ack = peer.inject(SYN, PEER_ISS, sport=40001, options=tcpseg.encode_options(mss=MSS))
    assert lines(syn_ack)[0].startswith("S.")
    peer.inject(ACK, PEER_ISS + 1, syn_ack[0].seq + 1, sport=40001)
    second = next(c for c in peer.stack.connections.values() if c.remote_port == 40001)
    assert second.snd.mss == 960
    peer.advance(600.0)  # Linux's ip_rt_mtu_expires
    peer.inject(SYN, PEER_ISS, sport=40002, options=tcpseg.encode_options(mss=MSS))
    third = next(c for c in peer.stack.connections.values() if c.remote_port == 40002)
    assert third.snd.path_mss is None


def test_a_forged_tiny_mtu_is_floored_at_552() -> None:
    peer = ScriptedPeer(TcpConfig(), stack_isn=ISS)
    conn = _established(peer)
    peer.app_send(conn, bytes(MSS))  # type: ignore[arg-type]
    peer.inject_packet(_icmp(3, 4, ISS + 1, mtu=100, sport=80, dport=40000))
    assert conn.snd.mss == 552 - 40  # type: ignore[attr-defined]
    peer.inject_packet(_icmp(3, 4, ISS + 1, mtu=20, sport=80, dport=40000))  # below 68
    assert peer.stack.counters["icmp_bad_mtu"] == 1


def test_once_established_a_hard_error_is_soft_and_the_data_still_goes() -> None:
    peer = ScriptedPeer(TcpConfig(), stack_isn=ISS)
    conn = _established(peer)
    peer.app_send(conn, b"data")  # type: ignore[arg-type]
    peer.take()
    peer.inject_packet(_icmp(3, 3, ISS + 1, sport=80, dport=40000))  # port unreachable
    assert conn.state is State.ESTABLISHED  # type: ignore[attr-defined]
    assert conn.snd.soft_error == "connection refused (port unreachable)"  # type: ignore[attr-defined]
    acked = peer.inject(ACK | PSH, PEER_ISS + 1, ISS + 5, payload=b"ok")
    assert conn.state is State.ESTABLISHED and acked == []  # type: ignore[attr-defined]
