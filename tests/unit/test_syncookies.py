"""SYN cookies (RFC 4987 3.6, tcp/syncookies.py) and the two bounded queues of a listener.

A SYN that finds the SYN queue full (or any SYN, with syncookies=2) is answered by a
stateless SYN-ACK whose ISN is the cookie; the ACK returning it (SEG.ACK - 1) opens the
connection with the MSS from the table and, where timestamps came back, the window scale
and SACK from the low bits of TSecr. Virtual time: the stack's TSval is OFFSET plus the time
in ms (FixedIsn); times are binary fractions so that int(now * 1000) is exact.
"""

from __future__ import annotations

import pytest

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp import syncookies
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.segment import ACK, FIN, PSH, RST, SYN
from tcpstack.tcp.state import State
from tcpstack.tcp.syncookies import MSS_TABLE, SynCookies, decode_ts, encode_ts, mss_index
from tests.unit.scripted_peer import PEER_ADDR, PEER_PORT, STACK_ADDR, ScriptedPeer, Sent, lines

ISS = 1_000_000
PEER = 5_000_000
OFFSET = 1000
# A Linux peer's SYN: MSS 1460, SACK, timestamps, window scale 7.
LINUX_SYN = tcpseg.encode_options(mss=1460, sack_permitted=True, wscale=7,
                                  timestamps=(7000, 0))


def _peer(cookies: int = syncookies.ALWAYS, **overrides: object) -> ScriptedPeer:
    settings: dict[str, object] = {"delayed_ack": 0.0, "syncookies": cookies,
                                   "tail_loss_probe": False}
    settings.update(overrides)
    peer = ScriptedPeer(TcpConfig(**settings), stack_isn=ISS,  # type: ignore[arg-type]
                        ts_offset=OFFSET)
    peer.stack.cookies = SynCookies(b"\x01" * 16)
    return peer


def _conn(peer: ScriptedPeer, sport: int = PEER_PORT) -> Connection:
    return peer.stack.connections[(PEER_ADDR, sport, 80)]


def _cookie_synack(peer: ScriptedPeer, options: bytes = LINUX_SYN,
                   sport: int = PEER_PORT) -> Sent:
    [synack] = peer.inject(SYN, PEER, options=options, sport=sport)
    assert synack.flags == SYN | ACK and synack.ack == PEER + 1
    return synack


# ---------------------------------------------------------------------- the cookie's parts

def test_the_mss_is_rounded_down_to_the_table_and_the_first_entry_is_the_floor() -> None:
    assert MSS_TABLE == (536, 1300, 1440, 1460)
    assert [MSS_TABLE[mss_index(m)] for m in (1460, 9000, 1459, 1440, 1300, 1299, 536, 100)] \
        == [1460, 1460, 1440, 1440, 1300, 536, 536, 536]
    assert MSS_TABLE[mss_index(None)] == 536  # no option: RFC 9293 3.7.1's default


def test_the_timestamp_carries_wscale_and_sack_in_its_low_bits_and_never_runs_ahead() -> None:
    assert encode_ts(0x12345678, 7, True) == 0x12345657  # 0x...78 | 0x17 is ahead: 64 back
    assert encode_ts(0x123456BF, 7, True) == 0x12345697  # 0x...97 is not ahead
    assert encode_ts(0x12345640, None, False) == 0x1234560F
    assert encode_ts(0x00000005, 14, False) == 0xFFFFFFCE  # back across the wrap
    assert decode_ts(0x12345657) == (7, True)
    assert decode_ts(0x1234560F) == (None, False)
    assert decode_ts(0x1234568E) == (14, False)


def test_a_cookie_checks_out_for_its_own_syn_only_and_for_under_two_minutes() -> None:
    cookies = SynCookies(b"\x02" * 16)
    cookie = cookies.make(STACK_ADDR, 80, PEER_ADDR, 40000, PEER, 2, 30.0)
    assert cookies.check(STACK_ADDR, 80, PEER_ADDR, 40000, PEER, cookie, 30.0) == 2
    assert cookies.check(STACK_ADDR, 80, PEER_ADDR, 40000, PEER, cookie, 119.5) == 2
    assert cookies.check(STACK_ADDR, 80, PEER_ADDR, 40000, PEER, cookie, 120.0) is None
    assert cookies.check(STACK_ADDR, 80, PEER_ADDR, 40001, PEER, cookie, 30.0) is None
    assert cookies.check(STACK_ADDR, 80, PEER_ADDR, 40000, PEER + 1, cookie, 30.0) is None
    # Off by more than the table's reach (or in the counter's bits) is off.
    for wrong in (cookie + 2, cookie - 3, cookie + (1 << 23), cookie ^ 0x5A5A):
        assert cookies.check(STACK_ADDR, 80, PEER_ADDR, 40000, PEER, wrong, 30.0) is None
    other = SynCookies(b"\x03" * 16)
    assert other.check(STACK_ADDR, 80, PEER_ADDR, 40000, PEER, cookie, 30.0) is None
    # A minute later the same SYN gets another cookie, good for two minutes from then.
    later = cookies.make(STACK_ADDR, 80, PEER_ADDR, 40000, PEER, 2, 90.0)
    assert later != cookie
    assert cookies.check(STACK_ADDR, 80, PEER_ADDR, 40000, PEER, later, 179.5) == 2
    assert cookies.check(STACK_ADDR, 80, PEER_ADDR, 40000, PEER, later, 180.0) is None


# ---------------------------------------------------------------------- round trips

def test_cookie_synack_offers_what_a_queued_syn_would_and_keeps_no_state() -> None:
    queued = _peer(cookies=syncookies.OFF)
    queued.listen(80)
    queued.advance(0.25)
    [normal] = queued.inject(SYN, PEER, options=LINUX_SYN)

    peer = _peer()
    listener = peer.listen(80)
    peer.advance(0.25)
    synack = _cookie_synack(peer)
    cookie = peer.stack.cookies.make(STACK_ADDR, 80, PEER_ADDR, PEER_PORT, PEER,
                                     mss_index(1460), 0.25)
    tsval = encode_ts(OFFSET + 250, 7, True)
    assert tsval == 1239  # 1250 with its low 6 bits 0b010111 is 1239: not ahead
    assert lines([synack]) == [f"S. seq {cookie} ack {PEER + 1} win 65535 "
                               f"<mss 1460,sackOK,TS val {tsval} ecr 7000,wscale 7>"]
    assert lines([normal]) == [f"S. seq {ISS} ack {PEER + 1} win 65535 "
                               f"<mss 1460,sackOK,TS val 1250 ecr 7000,wscale 7>"]
    assert synack.raw_options[:-10] == normal.raw_options[:-10]  # the same layout
    assert peer.stack.connections == {}
    assert listener.half_open == 0
    assert peer.stack.counters["syncookies_sent"] == 1
    assert peer.stack.counters["passive_opens"] == 0


def test_cookie_ack_with_timestamps_opens_the_connection_with_wscale_and_sack() -> None:
    peer = _peer()
    listener = peer.listen(80)
    peer.advance(0.25)
    synack = _cookie_synack(peer)
    peer.advance(0.125)
    tsecr = synack.options.tsval
    assert tsecr is not None
    assert peer.inject(ACK, PEER + 1, synack.seq + 1, window=1000,
                       options=tcpseg.encode_timestamps(7100, tsecr)) == []
    conn = _conn(peer)
    assert conn.state is State.ESTABLISHED
    assert peer.events(conn) == [ConnEvent.ESTABLISHED]
    assert (conn.snd.iss, conn.rcv.irs, conn.snd.una, conn.rcv.nxt) == (
        synack.seq, PEER, synack.seq + 1, PEER + 1)
    assert conn.snd.mss == 1460 - 12
    assert (conn.snd.wscale, conn.rcv.wscale) == (7, 7)
    assert conn.snd.wnd == 1000 << 7
    assert conn.loss.sack
    assert conn.tx.ts.ok and conn.tx.ts.recent == 7100
    assert conn.rtt.srtt is None  # the cookie's TSval is no send time to measure from
    assert listener.half_open == 0
    counters = peer.stack.counters
    assert (counters["syncookies_sent"], counters["syncookies_recv"],
            counters["syncookies_failed"], counters["passive_opens"]) == (1, 1, 0, 1)

    # The connection's first segment: its TSval is the clock, not older than the cookie's.
    peer.advance(0.125)
    peer.app_send(conn, b"hi")
    assert peer.take_lines() == [
        f"P. seq {synack.seq + 1} ack {PEER + 1} win 1024 len 2 <TS val {OFFSET + 500} "
        f"ecr 7100>"]
    assert tsecr < OFFSET + 500


def test_cookie_without_timestamps_offers_only_the_mss_and_opens_without_them() -> None:
    peer = _peer()
    peer.listen(80)
    synack = _cookie_synack(peer, tcpseg.encode_options(mss=1400, sack_permitted=True,
                                                         wscale=7))
    assert lines([synack]) == [f"S. seq {synack.seq} ack {PEER + 1} win 65535 <mss 1460>"]
    assert peer.inject(ACK, PEER + 1, synack.seq + 1, window=60000) == []
    conn = _conn(peer)
    assert conn.state is State.ESTABLISHED
    assert conn.snd.mss == 1300  # 1400 rounded down to the table
    assert (conn.snd.wscale, conn.rcv.wscale) == (0, 0)
    assert conn.snd.wnd == 60000
    assert not conn.loss.sack and not conn.tx.ts.ok
    peer.app_send(conn, b"x" * 2600)
    assert [len(s.payload) for s in peer.take()] == [1300, 1300]


def test_data_and_fin_on_the_cookie_ack_are_delivered() -> None:
    peer = _peer()
    peer.listen(80)
    synack = _cookie_synack(peer, tcpseg.encode_options(mss=1460))
    reply = peer.inject(ACK | PSH | FIN, PEER + 1, synack.seq + 1, payload=b"hello")
    assert lines(reply) == [f". seq {synack.seq + 1} ack {PEER + 7} win 65529"]
    conn = _conn(peer)
    assert conn.state is State.CLOSE_WAIT
    assert peer.events(conn) == [ConnEvent.ESTABLISHED, ConnEvent.DATA, ConnEvent.EOF]
    assert peer.app_read(conn) == b"hello"


# ---------------------------------------------------------------------- bad cookies

def test_a_stale_cookie_is_counted_and_answered_with_a_reset() -> None:
    peer = _peer()
    peer.listen(80)
    early = _cookie_synack(peer, tcpseg.encode_options(mss=1460), sport=40001)
    late = _cookie_synack(peer, tcpseg.encode_options(mss=1460), sport=40002)
    peer.advance(119.5)  # under two minutes: still good
    assert peer.inject(ACK, PEER + 1, early.seq + 1, sport=40001) == []
    assert _conn(peer, 40001).state is State.ESTABLISHED
    peer.advance(0.5)  # two minutes: stale
    reply = peer.inject(ACK, PEER + 1, late.seq + 1, sport=40002)
    assert lines(reply) == [f"R seq {late.seq + 1} win 0"]  # RFC 9293 3.10.7.2
    assert (PEER_ADDR, 40002, 80) not in peer.stack.connections
    counters = peer.stack.counters
    assert (counters["syncookies_recv"], counters["syncookies_failed"],
            counters["listen_resets"]) == (1, 1, 1)


@pytest.mark.parametrize("wrong", [
    {"ack_delta": 1}, {"seq_delta": 1}, {"sport": 40009}])
def test_a_forged_cookie_is_counted_and_answered_with_a_reset(wrong: dict[str, int]) -> None:
    peer = _peer()
    peer.listen(80)
    synack = _cookie_synack(peer, tcpseg.encode_options(mss=1460))
    ack = synack.seq + 1 + wrong.get("ack_delta", 0)
    reply = peer.inject(ACK, PEER + 1 + wrong.get("seq_delta", 0), ack,
                        sport=wrong.get("sport", PEER_PORT))
    assert lines(reply) == [f"R seq {ack} win 0"]
    assert peer.stack.connections == {}
    assert peer.stack.counters["syncookies_failed"] == 1
    assert peer.stack.counters["syncookies_recv"] == 0


def test_without_cookies_sent_lately_an_ack_is_not_checked_as_one() -> None:
    peer = _peer(cookies=syncookies.ON_OVERFLOW)
    peer.listen(80)
    assert lines(peer.inject(ACK, PEER + 1, 777)) == ["R seq 777 win 0"]
    assert peer.stack.counters["syncookies_failed"] == 0
    assert peer.stack.counters["listen_resets"] == 1


# ---------------------------------------------------------------------- the SYN queue

def test_cookies_start_when_the_syn_queue_is_full_and_serve_beside_it() -> None:
    peer = _peer(cookies=syncookies.ON_OVERFLOW)
    listener = peer.listen(80, backlog=2)
    options = tcpseg.encode_options(mss=1460)
    for sport in (40001, 40002):
        [reply] = peer.inject(SYN, PEER, options=options, sport=sport)
        assert reply.seq == ISS  # queued: the stack's own ISN
    assert listener.half_open == 2
    cookie = _cookie_synack(peer, options, sport=40003)
    assert cookie.seq != ISS
    assert listener.half_open == 2 and len(peer.stack.connections) == 2
    assert peer.inject(ACK, PEER + 1, cookie.seq + 1, sport=40003) == []
    assert _conn(peer, 40003).state is State.ESTABLISHED
    assert listener.half_open == 2  # the cookie's connection never was in the SYN queue
    counters = peer.stack.counters
    assert (counters["passive_opens"], counters["syncookies_sent"],
            counters["syncookies_recv"], counters["listen_overflows"]) == (3, 1, 1, 0)
    # The queued ones complete as ever.
    peer.inject(ACK, PEER + 1, ISS + 1, sport=40001)
    assert _conn(peer, 40001).state is State.ESTABLISHED
    assert listener.half_open == 1


def test_many_syns_beyond_the_queue_cost_no_connection_each() -> None:
    peer = _peer(cookies=syncookies.ON_OVERFLOW)
    listener = peer.listen(80, backlog=4)
    options = tcpseg.encode_options(mss=1460)
    for sport in range(20000, 21000):
        peer.inject(SYN, PEER + sport, options=options, sport=sport)
    assert len(peer.stack.connections) == 4
    assert listener.half_open == 4
    assert peer.stack.counters["syncookies_sent"] == 996


# ---------------------------------------------------------------------- the accept queue

def test_a_full_accept_queue_drops_syns_and_the_acks_that_would_complete_a_handshake(
        ) -> None:
    peer = _peer(cookies=syncookies.ON_OVERFLOW)
    listener = peer.listen(80, backlog=2)
    options = tcpseg.encode_options(mss=1460)
    peer.inject(SYN, PEER, options=options, sport=40001)
    listener.accept_queue = 2  # the application has taken up none of two
    assert peer.inject(SYN, PEER, options=options, sport=40002) == []  # no cookie either
    assert peer.inject(ACK, PEER + 1, ISS + 1, sport=40001) == []
    assert _conn(peer, 40001).state is State.SYN_RCVD
    assert peer.stack.counters["listen_overflows"] == 2

    listener.accept_queue = 1  # one taken up: room again
    # Our SYN-ACK's retransmission (RTO 1 s) draws the peer's ACK again.
    assert [s.flags for s in peer.advance(1.0)] == [SYN | ACK]
    assert peer.inject(ACK, PEER + 1, ISS + 1, sport=40001) == []
    assert _conn(peer, 40001).state is State.ESTABLISHED
    assert peer.stack.counters["listen_overflows"] == 2


def test_a_full_accept_queue_drops_a_valid_cookie_ack_without_a_reset() -> None:
    peer = _peer()
    listener = peer.listen(80, backlog=1)
    synack = _cookie_synack(peer, tcpseg.encode_options(mss=1460))
    listener.accept_queue = 1
    assert peer.inject(ACK, PEER + 1, synack.seq + 1) == []
    assert peer.stack.connections == {}
    counters = peer.stack.counters
    assert (counters["listen_overflows"], counters["syncookies_recv"],
            counters["syncookies_failed"]) == (1, 0, 0)
    listener.accept_queue = 0  # the peer's retransmission (of data, say) gets in now
    assert peer.inject(ACK | PSH, PEER + 1, synack.seq + 1, payload=b"x") != []
    assert _conn(peer).state is State.ESTABLISHED


def test_a_reset_or_syn_is_never_taken_for_a_cookie() -> None:
    peer = _peer()
    peer.listen(80)
    synack = _cookie_synack(peer, tcpseg.encode_options(mss=1460))
    assert peer.inject(RST | ACK, PEER + 1, synack.seq + 1) == []
    assert peer.stack.connections == {}
    assert peer.stack.counters["syncookies_failed"] == 0
