"""Every arc of the TCP state machine, one situation per test, against a scripted peer.

Each test drives one stack (tests/unit/scripted_peer.py) with hand-made segments, then checks
the states the connection went through (as the stack's `on_transition` hook reported them)
and every segment the stack sent, field by field. `@drives` names the TRANSITIONS entries a
test exercises; test_state_table.py checks that together they cover the whole table.

Numbers: the stack's ISS is 1_000_000 and the peer's 5_000_000, so `ISS + 1` and `PEER + 1`
are the first data bytes. The peer offers MSS 1400 and window scale 7 (no SACK); the stack,
with its fixed 1 MB receive buffer (no auto-tuning), offers MSS 1460, SACK and scale 5, so
its window field reads 32768 (1 MB >> 5) until something is buffered or a FIN takes one
byte of sequence space (still 32768: the field rounds up rather than pull the right edge
back). Tests that need a full window use a 1000-byte buffer, which needs no scaling.
"""

from __future__ import annotations

import pytest

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.segment import ACK, FIN, PSH, RST, SYN
from tcpstack.tcp.seq import MASK
from tcpstack.tcp.state import State, Trigger
from tests.unit.link_pair import pattern
from tests.unit.scripted_peer import PEER_ADDR, STACK_ADDR, ScriptedPeer, drives, lines

S = State
T = Trigger
E = ConnEvent

ISS = 1_000_000
PEER = 5_000_000
PEER_OPTIONS = tcpseg.encode_options(mss=1400, wscale=7)


def syn_line(tsval: int = 0) -> str:
    """Our SYN, sent at `tsval` ms of the virtual clock (FixedIsn's timestamp offset is 0)."""
    return f"S seq {ISS} win 65535 <mss 1460,sackOK,TS val {tsval} ecr 0,wscale 5>"


SYN_ACK_LINE = f"S. seq {ISS} ack {PEER + 1} win 65535 <mss 1460,wscale 5>"
WIN = 32768       # 1 MB >> 5, nothing buffered
WIN_FIN = 32768   # 1 MB less the FIN's byte, >> 5 rounded up (the edge never recedes)
MSL = 0.5


def config(**overrides: object) -> TcpConfig:
    """A short MSL; an RTO floor of 0.25 s so backed-off timers land on exact floats (the
    instantaneous handshake samples an RTT of 0, so the RTO starts at the floor); and ACKs
    sent at once, so each reply shows up in the same step (delayed ACKs are not a state
    machine matter)."""
    settings: dict[str, object] = {"msl": MSL, "min_rto": 0.25, "delayed_ack": 0.0,
                                   "receive_buffer": 1 << 20}
    settings.update(overrides)
    return TcpConfig(**settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- getting somewhere

def active_open(cfg: TcpConfig | None = None) -> tuple[ScriptedPeer, Connection]:
    peer = ScriptedPeer(cfg or config(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.inject(SYN | ACK, PEER, ISS + 1, options=PEER_OPTIONS)
    assert conn.state is S.ESTABLISHED
    peer.take()
    return peer, conn


def passive_syn(cfg: TcpConfig | None = None) -> tuple[ScriptedPeer, Connection]:
    """A listener on port 80 that has taken the peer's SYN: the connection is SYN_RCVD."""
    peer = ScriptedPeer(cfg or config(), stack_isn=ISS)
    peer.listen(80)
    peer.inject(SYN, PEER, options=PEER_OPTIONS)
    conn = peer.accepted()
    assert conn.state is S.SYN_RCVD
    return peer, conn


def passive_open(cfg: TcpConfig | None = None) -> tuple[ScriptedPeer, Connection]:
    peer, conn = passive_syn(cfg)
    peer.inject(ACK, PEER + 1, ISS + 1)
    assert conn.state is S.ESTABLISHED
    return peer, conn


# (SND.NXT, RCV.NXT) of the connection `reach` leaves in each state.
SEQS = {
    S.SYN_RCVD: (ISS + 1, PEER + 1),
    S.ESTABLISHED: (ISS + 1, PEER + 1),
    S.FIN_WAIT_1: (ISS + 2, PEER + 1),
    S.FIN_WAIT_2: (ISS + 2, PEER + 1),
    S.CLOSING: (ISS + 2, PEER + 2),
    S.TIME_WAIT: (ISS + 2, PEER + 2),
    S.CLOSE_WAIT: (ISS + 1, PEER + 2),
    S.LAST_ACK: (ISS + 2, PEER + 2),
}
# The window field of an ACK sent from each state.
WINDOW = {S.SYN_RCVD: WIN, S.ESTABLISHED: WIN, S.FIN_WAIT_1: WIN, S.FIN_WAIT_2: WIN,
          S.CLOSING: WIN_FIN, S.TIME_WAIT: WIN_FIN, S.CLOSE_WAIT: WIN_FIN,
          S.LAST_ACK: WIN_FIN}


def reach(state: State, cfg: TcpConfig | None = None) -> tuple[ScriptedPeer, Connection]:
    """A connection in `state` by the shortest script: SYN_RCVD passively, the others from
    an active open. Every segment is exchanged at t=0; output is taken."""
    if state is S.SYN_RCVD:
        peer, conn = passive_syn(cfg)
    else:
        peer, conn = active_open(cfg)
        if state in (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.TIME_WAIT):
            peer.app_close(conn)
            if state is S.CLOSING:
                peer.inject(FIN | ACK, PEER + 1, ISS + 1)  # crosses our FIN
            elif state is not S.FIN_WAIT_1:
                peer.inject(ACK, PEER + 1, ISS + 2)
                if state is S.TIME_WAIT:
                    peer.inject(FIN | ACK, PEER + 1, ISS + 2)
        elif state in (S.CLOSE_WAIT, S.LAST_ACK):
            peer.inject(FIN | ACK, PEER + 1, ISS + 1)
            if state is S.LAST_ACK:
                peer.app_close(conn)
    peer.take()
    assert conn.state is state
    assert (conn.snd.nxt, conn.rcv.nxt) == SEQS[state]
    return peer, conn


# ---------------------------------------------------------------------- active open

@drives((S.CLOSED, T.APP_CONNECT))
def test_closed_connect_sends_syn_with_mss_and_wscale_and_goes_to_syn_sent() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80, local_port=50000)
    (syn,) = peer.take()
    assert str(syn) == syn_line()
    # Linux's layout: MSS, SACK-permitted, timestamps (TSval 0 at time 0, TSecr 0), NOP
    # window scale (RFC 7323 2.2, 3.2).
    assert syn.raw_options == bytes((2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0,
                                     1, 3, 3, 5))
    assert (syn.src, syn.dst, syn.sport, syn.dport) == (STACK_ADDR, PEER_ADDR, 50000, 80)
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT]
    assert peer.events(conn) == []


@drives((S.CLOSED, T.APP_CONNECT), (S.SYN_SENT, T.RCV_SYN_ACK))
def test_syn_sent_syn_ack_goes_to_established_and_sends_the_final_ack() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80)
    assert peer.take_lines() == [syn_line()]
    reply = peer.inject(SYN | ACK, PEER, ISS + 1, options=PEER_OPTIONS)
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 1} win {WIN}"]
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED]
    assert peer.events(conn) == [E.ESTABLISHED]
    assert (conn.snd.una, conn.snd.nxt, conn.rcv.nxt) == (ISS + 1, ISS + 1, PEER + 1)
    assert (conn.snd.mss, conn.snd.wscale) == (1400, 7)
    assert conn.deadline is None  # the SYN's retransmission timer is gone


@drives((S.SYN_SENT, T.RCV_SYN_ACK))
def test_syn_sent_syn_ack_without_wscale_turns_scaling_off_both_ways() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.take()
    reply = peer.inject(SYN | ACK, PEER, ISS + 1, window=5000,
                        options=tcpseg.encode_options(mss=1400))
    # RFC 7323 2.2: no shift unless both SYNs carried the option; the window is the 1 MB
    # buffer capped at what 16 bits can say.
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 1} win 65535"]
    assert (conn.snd.wscale, conn.rcv.wscale, conn.snd.wnd) == (0, 0, 5000)


@pytest.mark.parametrize("ack", [ISS, ISS - 5, ISS + 2], ids=["iss", "before-iss", "beyond"])
def test_syn_sent_syn_ack_acking_the_wrong_seq_draws_rst_and_stays(ack: int) -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.take()
    # RFC 9293 3.10.7.3: if SEG.ACK =< ISS or SEG.ACK > SND.NXT, send <SEQ=SEG.ACK><CTL=RST>
    # and drop the segment.
    reply = peer.inject(SYN | ACK, PEER, ack, options=PEER_OPTIONS)
    assert conn.state is S.SYN_SENT
    assert lines(reply) == [f"R seq {ack} win 0"]
    assert peer.events(conn) == []


# ---------------------------------------------------------------------- passive open

@drives((S.LISTEN, T.RCV_SYN))
def test_listen_syn_goes_to_syn_rcvd_and_answers_syn_ack() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    listener = peer.listen(80)
    reply = peer.inject(SYN, PEER, options=PEER_OPTIONS)
    assert lines(reply) == [SYN_ACK_LINE]
    conn = peer.accepted()
    assert peer.states(conn) == [S.LISTEN, S.SYN_RCVD]
    assert listener.half_open == 1
    assert peer.events(conn) == []  # the application hears of it once it is established


@drives((S.LISTEN, T.RCV_SYN))
def test_listen_syn_without_wscale_gets_syn_ack_without_wscale() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    peer.listen(80)
    reply = peer.inject(SYN, PEER, options=tcpseg.encode_options(mss=1400))
    # RFC 7323 2.3: a SYN-ACK may carry the option only if the SYN did.
    assert lines(reply) == [f"S. seq {ISS} ack {PEER + 1} win 65535 <mss 1460>"]


@drives((S.LISTEN, T.RCV_SYN), (S.SYN_RCVD, T.RCV_ACK_OF_SYN))
def test_syn_rcvd_ack_of_syn_goes_to_established_and_tells_the_app() -> None:
    peer, conn = passive_syn()
    listener = peer.stack.listeners[80]
    assert peer.inject(ACK, PEER + 1, ISS + 1) == []
    assert peer.states(conn) == [S.LISTEN, S.SYN_RCVD, S.ESTABLISHED]
    assert peer.events(conn) == [E.ESTABLISHED]
    assert listener.half_open == 0
    assert (conn.snd.una, conn.snd.nxt, conn.rcv.nxt) == (ISS + 1, ISS + 1, PEER + 1)
    assert conn.deadline is None


def test_syn_rcvd_repeated_syn_is_answered_with_the_same_syn_ack() -> None:
    peer, conn = passive_syn()
    assert lines(peer.inject(SYN, PEER, options=PEER_OPTIONS)) == [SYN_ACK_LINE]
    assert conn.state is S.SYN_RCVD
    assert peer.stack.listeners[80].half_open == 1


@drives((S.LISTEN, T.RCV_SYN), (S.SYN_RCVD, T.RCV_ACK_OF_SYN), (S.ESTABLISHED, T.RCV_FIN))
def test_syn_rcvd_fin_acking_our_syn_goes_through_established_to_close_wait() -> None:
    # RFC 9293 3.10.7.4: the fifth step (ACK) moves SYN-RECEIVED to ESTABLISHED and
    # "continue processing"; the eighth (FIN) then finds ESTABLISHED.
    peer, conn = passive_syn()
    reply = peer.inject(FIN | ACK, PEER + 1, ISS + 1)
    # The window field is the whole 1 MB again: the SYN-ACK had offered only 65535.
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 2} win {WIN}"]
    assert peer.states(conn) == [S.LISTEN, S.SYN_RCVD, S.ESTABLISHED, S.CLOSE_WAIT]
    assert peer.events(conn) == [E.ESTABLISHED, E.EOF]


def test_syn_rcvd_segment_without_ack_is_dropped() -> None:
    peer, conn = passive_syn()
    # 3.10.7.4 fifth step: "if the ACK bit is off, drop the segment and return".
    assert peer.inject(FIN, PEER + 1) == []
    assert conn.state is S.SYN_RCVD
    assert conn.rcv.nxt == PEER + 1


# ---------------------------------------------------------------------- simultaneous open

def crossing_syns() -> tuple[ScriptedPeer, Connection]:
    """Our SYN and the peer's cross: the peer's bare SYN reaches us in SYN_SENT."""
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.take()
    reply = peer.inject(SYN, PEER, options=PEER_OPTIONS)
    assert lines(reply) == [SYN_ACK_LINE]
    return peer, conn


@drives((S.SYN_SENT, T.RCV_SYN))
def test_syn_sent_crossing_syn_goes_to_syn_rcvd_and_sends_syn_ack_with_iss() -> None:
    peer, conn = crossing_syns()
    # RFC 9293 3.10.7.3 and figure 8: <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>, the same ISS.
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.SYN_RCVD]
    assert (conn.snd.una, conn.snd.nxt, conn.rcv.nxt) == (ISS, ISS + 1, PEER + 1)
    assert peer.events(conn) == []
    assert conn.deadline == 1.0  # the SYN-ACK is retransmitted like a SYN


@drives((S.SYN_SENT, T.RCV_SYN), (S.SYN_RCVD, T.RCV_ACK_OF_SYN))
def test_syn_rcvd_after_crossing_syns_ack_goes_to_established() -> None:
    peer, conn = crossing_syns()
    assert peer.inject(ACK, PEER + 1, ISS + 1) == []
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.SYN_RCVD, S.ESTABLISHED]
    assert peer.events(conn) == [E.ESTABLISHED]
    assert conn.deadline is None


@drives((S.SYN_SENT, T.RCV_SYN), (S.SYN_RCVD, T.RCV_ACK_OF_SYN))
def test_syn_rcvd_after_crossing_syns_peer_syn_ack_goes_to_established() -> None:
    peer, conn = crossing_syns()
    # RFC 9293 figure 8, line 6: A in SYN-RECEIVED gets <SEQ=300><ACK=101><CTL=SYN,ACK> and
    # is ESTABLISHED (Linux does the same, tcp_validate_incoming); it ACKs the SYN.
    reply = peer.inject(SYN | ACK, PEER, ISS + 1, options=PEER_OPTIONS)
    assert conn.state is S.ESTABLISHED
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.SYN_RCVD, S.ESTABLISHED]
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 1} win {WIN}"]
    assert peer.events(conn) == [E.ESTABLISHED]


# ---------------------------------------------------------------------- active close

@drives((S.ESTABLISHED, T.APP_CLOSE))
def test_established_close_sends_fin_and_goes_to_fin_wait_1() -> None:
    peer, conn = active_open()
    peer.app_close(conn)
    assert peer.take_lines() == [f"F. seq {ISS + 1} ack {PEER + 1} win {WIN}"]
    assert peer.states(conn)[-2:] == [S.ESTABLISHED, S.FIN_WAIT_1]
    # The FIN is under the tail loss probe (10 ms floor + 200 ms for a delayed ACK, RFC 8985
    # 7.2), which fires before the 0.25 s retransmission timer.
    assert conn.deadline == 0.01 + 0.2
    assert conn.timers.rto == 0.25


@drives((S.ESTABLISHED, T.APP_CLOSE), (S.FIN_WAIT_1, T.RCV_ACK_OF_FIN),
        (S.FIN_WAIT_2, T.RCV_FIN), (S.TIME_WAIT, T.TIMEOUT_2MSL))
def test_established_close_goes_through_fin_wait_2_and_time_wait_to_closed_after_2msl() -> None:
    peer, conn = active_open()
    peer.app_close(conn)
    assert peer.take_lines() == [f"F. seq {ISS + 1} ack {PEER + 1} win {WIN}"]
    peer.advance(0.125)
    assert peer.inject(ACK, PEER + 1, ISS + 2) == []
    assert conn.state is S.FIN_WAIT_2
    peer.advance(0.125)  # t = 0.25
    reply = peer.inject(FIN | ACK, PEER + 1, ISS + 2)
    assert lines(reply) == [f". seq {ISS + 2} ack {PEER + 2} win {WIN_FIN}"]
    assert conn.state is S.TIME_WAIT
    assert conn.deadline == 0.25 + 2 * MSL
    assert peer.advance_to(1.249) == []
    assert conn.state is S.TIME_WAIT
    assert peer.advance_to(2.0) == []  # nothing is sent when TIME_WAIT ends
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED, S.FIN_WAIT_1,
                                 S.FIN_WAIT_2, S.TIME_WAIT, S.CLOSED]
    assert [t.time for t in peer.transitions if t.conn is conn][-3:] == [0.125, 0.25, 1.25]
    assert peer.events(conn) == [E.ESTABLISHED, E.EOF, E.CLOSED]
    assert peer.stack.connections == {}


@drives((S.FIN_WAIT_1, T.RCV_FIN_ACK_OF_FIN))
def test_fin_wait_1_fin_ack_goes_to_time_wait() -> None:
    peer, conn = reach(S.FIN_WAIT_1)
    before = len(peer.transitions_of(conn))
    reply = peer.inject(FIN | ACK, PEER + 1, ISS + 2)  # the peer's FIN acks ours
    assert lines(reply) == [f". seq {ISS + 2} ack {PEER + 2} win {WIN_FIN}"]
    # Exactly one transition, not FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT.
    assert peer.transitions_of(conn)[before:] == [(S.FIN_WAIT_1, S.TIME_WAIT)]
    assert conn.deadline == 2 * MSL
    peer.advance(2 * MSL)
    assert conn.state is S.CLOSED


@drives((S.FIN_WAIT_1, T.RCV_FIN), (S.CLOSING, T.RCV_ACK_OF_FIN),
        (S.TIME_WAIT, T.TIMEOUT_2MSL))
def test_fin_wait_1_crossing_fin_goes_to_closing_then_ack_to_time_wait() -> None:
    peer, conn = reach(S.FIN_WAIT_1)
    before = len(peer.transitions_of(conn))
    reply = peer.inject(FIN | ACK, PEER + 1, ISS + 1)  # the peer's FIN does not ack ours
    assert lines(reply) == [f". seq {ISS + 2} ack {PEER + 2} win {WIN_FIN}"]
    assert conn.state is S.CLOSING
    peer.advance(0.125)
    assert peer.inject(ACK, PEER + 2, ISS + 2) == []
    assert peer.transitions_of(conn)[before:] == [(S.FIN_WAIT_1, S.CLOSING),
                                                  (S.CLOSING, S.TIME_WAIT)]
    assert conn.deadline == 0.125 + 2 * MSL
    peer.advance(2 * MSL)
    assert conn.state is S.CLOSED
    assert peer.events(conn) == [E.ESTABLISHED, E.EOF, E.CLOSED]


# ---------------------------------------------------------------------- passive close

@drives((S.ESTABLISHED, T.RCV_FIN), (S.CLOSE_WAIT, T.APP_CLOSE),
        (S.LAST_ACK, T.RCV_ACK_OF_FIN))
def test_established_fin_goes_to_close_wait_then_last_ack_then_closed() -> None:
    peer, conn = active_open()
    reply = peer.inject(FIN | ACK, PEER + 1, ISS + 1)
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 2} win {WIN_FIN}"]
    assert conn.state is S.CLOSE_WAIT
    assert peer.events(conn) == [E.ESTABLISHED, E.EOF]
    peer.app_close(conn)
    assert peer.take_lines() == [f"F. seq {ISS + 1} ack {PEER + 2} win {WIN_FIN}"]
    assert conn.state is S.LAST_ACK
    assert peer.inject(ACK, PEER + 2, ISS + 2) == []
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED, S.CLOSE_WAIT,
                                 S.LAST_ACK, S.CLOSED]
    assert peer.events(conn) == [E.ESTABLISHED, E.EOF, E.CLOSED]
    assert peer.stack.connections == {}


@drives((S.ESTABLISHED, T.RCV_FIN), (S.CLOSE_WAIT, T.APP_CLOSE),
        (S.LAST_ACK, T.RCV_ACK_OF_FIN))
def test_close_wait_application_still_sends_and_peer_gets_it_all_before_the_fin() -> None:
    peer, conn = reach(S.CLOSE_WAIT)
    data = pattern(3000, seed=1)
    assert peer.app_send(conn, data) == 3000
    sent = peer.take()
    # Segments of the peer's MSS (1400); the 200-byte tail waits for the ACK (Nagle,
    # RFC 9293 3.7.4), then goes with PSH, and the FIN on it (as Linux puts a FIN on the
    # tail segment not yet sent).
    assert lines(sent) == [f". seq {ISS + 1} ack {PEER + 2} win {WIN_FIN} len 1400",
                           f". seq {ISS + 1401} ack {PEER + 2} win {WIN_FIN} len 1400"]
    peer.app_close(conn)
    assert conn.state is S.LAST_ACK
    assert peer.take_lines() == []  # the FIN waits behind the unsent tail
    reply = peer.inject(ACK, PEER + 2, ISS + 2801)
    assert lines(reply) == [f"FP. seq {ISS + 2801} ack {PEER + 2} win {WIN_FIN} len 200"]
    assert b"".join(s.payload for s in [*sent, *reply]) == data
    assert peer.inject(ACK, PEER + 2, ISS + 3002) == []
    assert peer.states(conn)[-3:] == [S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]
    assert conn.snd.bytes_sent == 3000


def test_fin_wait_2_still_receives_data_and_acks_it() -> None:
    peer, conn = reach(S.FIN_WAIT_2)
    data = pattern(500, seed=2)
    reply = peer.inject(ACK | PSH, PEER + 1, ISS + 2, payload=data)
    # 500 bytes buffered: (1 MB - 500) / 32 = 32752.4, rounded up.
    assert lines(reply) == [f". seq {ISS + 2} ack {PEER + 501} win 32753"]
    assert peer.events(conn)[-1] is E.DATA
    assert peer.app_read(conn) == data
    assert peer.take_lines() == []  # 512 bytes of growth is no window update (SWS, 3.8.6.2.2)
    reply = peer.inject(FIN | ACK, PEER + 501, ISS + 2)
    assert lines(reply) == [f". seq {ISS + 2} ack {PEER + 502} win 32753"]
    assert peer.states(conn)[-2:] == [S.FIN_WAIT_2, S.TIME_WAIT]
    assert peer.events(conn) == [E.ESTABLISHED, E.DATA, E.EOF]


def test_fin_wait_1_still_receives_data_before_its_fin_is_acked() -> None:
    peer, conn = reach(S.FIN_WAIT_1)
    reply = peer.inject(ACK | PSH, PEER + 1, ISS + 1, payload=b"late")
    # (1 MB - 4) / 32, rounded up
    assert lines(reply) == [f". seq {ISS + 2} ack {PEER + 5} win 32768"]
    assert conn.state is S.FIN_WAIT_1
    assert peer.app_read(conn) == b"late"


@drives((S.SYN_SENT, T.RCV_SYN), (S.SYN_RCVD, T.APP_CLOSE),
        (S.FIN_WAIT_1, T.RCV_ACK_OF_FIN))
def test_syn_rcvd_close_goes_to_fin_wait_1_and_sends_fin_once_the_syn_is_acked() -> None:
    peer, conn = crossing_syns()
    peer.app_close(conn)
    assert conn.state is S.FIN_WAIT_1
    assert peer.take_lines() == []  # no FIN before our SYN is acknowledged
    reply = peer.inject(ACK, PEER + 1, ISS + 1)
    assert lines(reply) == [f"F. seq {ISS + 1} ack {PEER + 1} win {WIN}"]
    assert conn.state is S.FIN_WAIT_1
    assert peer.inject(ACK, PEER + 1, ISS + 2) == []
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.SYN_RCVD, S.FIN_WAIT_1,
                                 S.FIN_WAIT_2]


@drives((S.SYN_SENT, T.APP_CLOSE))
def test_syn_sent_close_goes_to_closed_without_a_segment() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.take()
    peer.app_close(conn)
    assert peer.take_lines() == []
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.CLOSED]
    assert peer.events(conn) == [E.CLOSED]
    assert peer.advance(10.0) == []  # and the SYN is not retransmitted
    assert peer.stack.connections == {}


@drives((S.LISTEN, T.APP_CLOSE))
def test_listen_close_goes_to_closed() -> None:
    # A passive Connection starts in LISTEN; the stack's listeners are Listener objects, so
    # this arc is reachable only on a Connection the owner holds before any SYN.
    conn = Connection(config(), STACK_ADDR, 80, PEER_ADDR, 40000, ISS, passive=True)
    seen: list[tuple[State, State]] = []
    conn.on_transition = lambda c, old, new: seen.append((old, new))
    conn.close(0.0)
    conn.flush(0.0)
    assert seen == [(S.LISTEN, S.CLOSED)]
    assert len(conn.output) == 0  # nothing sent (no segments: the empty tuple, Connection.output)
    assert [ev.kind for ev in conn.events] == [E.CLOSED]


# ---------------------------------------------------------------------- SYN timers

@drives((S.SYN_SENT, T.TIMEOUT_GIVE_UP))
def test_syn_sent_retransmits_syn_with_backoff_then_times_out() -> None:
    peer = ScriptedPeer(config(syn_retries=3), stack_isn=ISS)
    conn = peer.connect(80)
    assert peer.take_lines() == [syn_line()]
    retransmitted = peer.advance(100.0)
    # RFC 6298 5.5: 1, 2, 4 s apart; the fourth timeout (8 s after the last SYN) gives up.
    assert [(s.time, str(s)) for s in retransmitted] == [(1.0, syn_line(1000)),
                                                         (3.0, syn_line(3000)),
                                                         (7.0, syn_line(7000))]
    assert peer.transitions[-1].time == 15.0
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.CLOSED]
    assert peer.events(conn) == [E.TIMEOUT, E.CLOSED]
    assert conn.error == "connection timed out"
    assert peer.stack.connections == {}


@drives((S.LISTEN, T.RCV_SYN), (S.SYN_RCVD, T.TIMEOUT_GIVE_UP))
def test_syn_rcvd_retransmits_syn_ack_with_backoff_then_gives_up() -> None:
    peer, conn = passive_syn(config(synack_retries=3))
    listener = peer.stack.listeners[80]
    assert listener.half_open == 1
    retransmitted = peer.advance(100.0)
    assert [(s.time, str(s)) for s in retransmitted] == [
        (1.0, SYN_ACK_LINE), (3.0, SYN_ACK_LINE), (7.0, SYN_ACK_LINE)]  # no RST at the end
    assert peer.transitions[-1].time == 15.0
    assert peer.states(conn) == [S.LISTEN, S.SYN_RCVD, S.CLOSED]
    assert listener.half_open == 0
    assert peer.stack.connections == {}
    assert E.ESTABLISHED not in peer.events(conn)
    # The listener still listens.
    assert lines(peer.inject(SYN, PEER + 10, options=PEER_OPTIONS)) == [
        f"S. seq {ISS} ack {PEER + 11} win 65535 <mss 1460,wscale 5>"]


def test_syn_sent_syn_ack_after_a_retransmitted_syn_still_establishes() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.take()
    assert lines(peer.advance(1.5)) == [syn_line(1000)]
    reply = peer.inject(SYN | ACK, PEER, ISS + 1, options=PEER_OPTIONS)
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 1} win {WIN}"]
    assert conn.state is S.ESTABLISHED


# ---------------------------------------------------------------------- giving up when synchronized

GIVE_UP = {
    S.ESTABLISHED: f"P. seq {ISS + 1} ack {PEER + 1} win {WIN} len 100",
    S.FIN_WAIT_1: f"F. seq {ISS + 1} ack {PEER + 1} win {WIN}",
    S.CLOSE_WAIT: f"P. seq {ISS + 1} ack {PEER + 2} win {WIN_FIN} len 100",
    S.CLOSING: f"F. seq {ISS + 1} ack {PEER + 2} win {WIN_FIN}",
    S.LAST_ACK: f"F. seq {ISS + 1} ack {PEER + 2} win {WIN_FIN}",
}


@pytest.mark.parametrize("state", list(GIVE_UP), ids=str)
@drives(by_param=("state", {s: [(s, T.TIMEOUT_GIVE_UP)] for s in GIVE_UP}))
def test_unacknowledged_segment_is_retransmitted_then_given_up(state: State) -> None:
    peer, conn = reach(state, config(max_retries=2))
    if state in (S.ESTABLISHED, S.CLOSE_WAIT):
        peer.app_send(conn, b"x" * 100)
        assert peer.take_lines() == [GIVE_UP[state]]
    # One segment in flight: the tail loss probe fires at PTO = 10 ms floor + 200 ms for a
    # delayed ACK (RFC 8985 7.2), before the 0.25 s RTO, and the RTO restarts behind it;
    # then the RTO doubles after each timeout, and max_retries=2 allows two of them.
    resent = peer.advance(10.0)
    probe = 0.01 + 0.2
    assert [(s.time, str(s)) for s in resent] == [(probe, GIVE_UP[state]),
                                                  (probe + 0.25, GIVE_UP[state]),
                                                  (probe + 0.25 + 0.5, GIVE_UP[state])]
    assert peer.transitions_of(conn)[-1] == (state, S.CLOSED)
    assert peer.transitions[-1].time == probe + 0.25 + 0.5 + 1.0
    assert peer.events(conn)[-2:] == [E.TIMEOUT, E.CLOSED]
    assert conn.error == "connection timed out"
    assert peer.stack.connections == {}


# ---------------------------------------------------------------------- TIME_WAIT

def server_in_time_wait() -> tuple[ScriptedPeer, Connection]:
    """A passively opened connection whose side on the stack closed first: TIME_WAIT with
    the listener still on port 80."""
    peer, conn = passive_open()
    peer.app_close(conn)
    assert peer.take_lines() == [f"F. seq {ISS + 1} ack {PEER + 1} win {WIN}"]
    assert peer.inject(ACK, PEER + 1, ISS + 2) == []
    assert lines(peer.inject(FIN | ACK, PEER + 1, ISS + 2)) == [
        f". seq {ISS + 2} ack {PEER + 2} win {WIN_FIN}"]
    assert conn.state is S.TIME_WAIT
    return peer, conn


@drives((S.TIME_WAIT, T.TIMEOUT_2MSL))
def test_time_wait_reacks_a_retransmitted_fin_and_restarts_2msl() -> None:
    peer, conn = reach(S.TIME_WAIT)
    assert conn.deadline == 2 * MSL
    peer.advance(0.75)
    reply = peer.inject(FIN | ACK, PEER + 1, ISS + 2)  # our ACK of its FIN was lost
    assert lines(reply) == [f". seq {ISS + 2} ack {PEER + 2} win {WIN_FIN}"]
    assert conn.deadline == 0.75 + 2 * MSL
    peer.advance_to(1.5)  # past 2MSL from the first FIN: still waiting
    assert conn.state is S.TIME_WAIT
    peer.advance_to(3.0)
    assert peer.transitions_of(conn)[-1] == (S.TIME_WAIT, S.CLOSED)
    assert peer.transitions[-1].time == 1.75


AFTER_FIN = [S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT]
# SND.UNA in each: the ACK field of a segment that acks nothing new.
UNA = {S.CLOSE_WAIT: ISS + 1, S.CLOSING: ISS + 1, S.LAST_ACK: ISS + 1, S.TIME_WAIT: ISS + 2}


@pytest.mark.parametrize("state", AFTER_FIN, ids=str)
def test_a_second_fin_after_the_peers_fin_draws_an_ack_and_changes_nothing(
        state: State) -> None:
    # 3.10.7.4, eighth: CLOSE-WAIT, CLOSING and LAST-ACK remain, TIME-WAIT restarts 2MSL.
    # A FIN at RCV.NXT (one past the peer's first FIN) is in the window, so it reaches the
    # eighth step; the peer's sequence space has ended and RCV.NXT stays.
    peer, conn = reach(state)
    snd_nxt, rcv_nxt = SEQS[state]
    before = peer.transitions_of(conn)
    peer.advance(0.5)
    reply = peer.inject(FIN | ACK, rcv_nxt, UNA[state])
    assert lines(reply) == [f". seq {snd_nxt} ack {rcv_nxt} win {WINDOW[state]}"]
    assert (conn.state, conn.rcv.nxt) == (state, rcv_nxt)
    assert peer.transitions_of(conn) == before
    if state is S.TIME_WAIT:
        assert conn.deadline == 0.5 + 2 * MSL


@drives((S.TIME_WAIT, T.RCV_SYN_IN_TIME_WAIT), (S.LISTEN, T.RCV_SYN),
        (S.SYN_RCVD, T.RCV_ACK_OF_SYN))
def test_time_wait_new_syn_beyond_rcv_nxt_reopens_with_isn_beyond_old_snd_nxt() -> None:
    peer, old = server_in_time_wait()
    listener = peer.stack.listeners[80]
    new_seq = PEER + 100_000
    reply = peer.inject(SYN, new_seq, options=PEER_OPTIONS)
    # RFC 6191 / RFC 1122 4.2.2.13: the new incarnation's ISN is beyond the old SND.NXT
    # (ISS + 2) by more than a maximum window, so old duplicates cannot be mistaken for new.
    new_iss = ISS + 2 + 0xFFFF + 2
    assert lines(reply) == [
        f"S. seq {new_iss} ack {new_seq + 1} win 65535 <mss 1460,wscale 5>"]
    assert peer.transitions_of(old)[-1] == (S.TIME_WAIT, S.CLOSED)
    assert peer.events(old) == [E.ESTABLISHED, E.EOF, E.CLOSED]
    new = peer.accepted()
    assert new is not old
    assert peer.states(new) == [S.LISTEN, S.SYN_RCVD]
    assert listener.half_open == 1
    assert peer.inject(ACK, new_seq + 1, new_iss + 1) == []
    assert new.state is S.ESTABLISHED
    assert peer.events(new) == [E.ESTABLISHED]
    assert listener.half_open == 0


@pytest.mark.parametrize("seq", [PEER, PEER + 2], ids=["old-isn", "at-rcv-nxt"])
def test_time_wait_syn_not_beyond_rcv_nxt_draws_ack_and_stays(seq: int) -> None:
    peer, conn = server_in_time_wait()
    reply = peer.inject(SYN, seq, options=PEER_OPTIONS)
    assert lines(reply) == [f". seq {ISS + 2} ack {PEER + 2} win {WIN_FIN}"]
    assert conn.state is S.TIME_WAIT
    assert conn.deadline == 2 * MSL  # not restarted
    assert list(peer.stack.connections.values()) == [conn]
    assert peer.stack.listeners[80].half_open == 0


def test_time_wait_new_syn_without_a_listener_keeps_time_wait() -> None:
    # RFC 1122 4.2.2.13 lets a SYN *reopen* a connection from TIME-WAIT. The stack's side was
    # the active opener (port 50000, nobody listens there): nothing can be reopened, so
    # TIME-WAIT must last its 2MSL and the SYN gets the challenge ACK of RFC 5961 4.2
    # (Linux: tcp_timewait_state_process, TCP_TW_SYN with no listener falls to TCP_TW_ACK).
    peer, conn = reach(S.TIME_WAIT)
    reply = peer.inject(SYN, PEER + 100_000, options=PEER_OPTIONS)
    assert conn.state is S.TIME_WAIT
    assert lines(reply) == [f". seq {ISS + 2} ack {PEER + 2} win {WIN_FIN}"]


@drives((S.TIME_WAIT, T.RCV_RST))
def test_time_wait_abort_is_ignored() -> None:
    # Deliberate (the table has no TIME_WAIT abort arc): TIME_WAIT outlives the application's
    # interest, as in Linux, to protect the next incarnation. RFC 9293 3.10.5 would delete
    # the TCB instead.
    peer, conn = reach(S.TIME_WAIT)
    peer.app_abort(conn)
    assert peer.take_lines() == []
    assert conn.state is S.TIME_WAIT
    assert conn.error is None
    peer.inject(RST, PEER + 2)  # and it still closes on a valid RST
    assert conn.state is S.CLOSED


# ---------------------------------------------------------------------- RST

RST_CLOSES = [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK,
              S.TIME_WAIT]
# RFC 9293 3.10.7.4, second check: in these states the user gets "connection reset"; in
# CLOSING, LAST-ACK and TIME-WAIT the TCB is simply deleted.
TOLD_OF_RESET = {S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT}


@pytest.mark.parametrize("state", RST_CLOSES, ids=str)
@drives(by_param=("state", {s: [(s, T.RCV_RST)] for s in RST_CLOSES}))
def test_rst_at_rcv_nxt_closes(state: State) -> None:
    peer, conn = reach(state)
    _, rcv_nxt = SEQS[state]
    seen = len(peer.events(conn))
    assert peer.inject(RST, rcv_nxt) == []
    assert peer.transitions_of(conn)[-1] == (state, S.CLOSED)
    told = [E.RESET, E.CLOSED] if state in TOLD_OF_RESET else [E.CLOSED]
    assert peer.events(conn)[seen:] == told
    assert conn.error == ("connection reset by peer" if state in TOLD_OF_RESET else None)
    assert peer.stack.connections == {}
    assert peer.advance(10.0) == []


@pytest.mark.parametrize("state", [*RST_CLOSES, S.SYN_RCVD], ids=str)
def test_rst_in_window_not_at_rcv_nxt_draws_challenge_ack(state: State) -> None:
    peer, conn = reach(state)
    snd_nxt, rcv_nxt = SEQS[state]
    before = peer.transitions_of(conn)
    # RFC 5961 3.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, and the RST is dropped.
    reply = peer.inject(RST, rcv_nxt + 1)
    assert lines(reply) == [f". seq {snd_nxt} ack {rcv_nxt} win {WINDOW[state]}"]
    assert conn.state is state
    assert peer.transitions_of(conn) == before
    assert E.RESET not in peer.events(conn)


@pytest.mark.parametrize("offset", [-1, 1 << 21], ids=["before", "beyond"])
@pytest.mark.parametrize("state", [*RST_CLOSES, S.SYN_RCVD], ids=str)
def test_rst_outside_the_window_is_dropped_silently(state: State, offset: int) -> None:
    peer, conn = reach(state)
    _, rcv_nxt = SEQS[state]
    before = peer.transitions_of(conn)
    assert peer.inject(RST, (rcv_nxt + offset) & MASK) == []
    assert conn.state is state
    assert peer.transitions_of(conn) == before


@drives((S.LISTEN, T.RCV_SYN), (S.SYN_RCVD, T.RCV_RST))
def test_syn_rcvd_passive_rst_closes_and_the_listener_forgets_it() -> None:
    peer, conn = passive_syn()
    listener = peer.stack.listeners[80]
    assert listener.half_open == 1
    assert peer.inject(RST, PEER + 1) == []
    assert peer.states(conn) == [S.LISTEN, S.SYN_RCVD, S.CLOSED]
    assert listener.half_open == 0
    assert peer.stack.connections == {}
    # RFC 9293 3.10.7.4: "The user need not be informed": no RESET, only the CLOSED that
    # ends every connection's events.
    assert peer.events(conn) == [E.CLOSED]
    assert conn.error is None
    assert peer.advance(10.0) == []  # the SYN-ACK is not retransmitted
    # Still listening.
    assert lines(peer.inject(SYN, PEER + 10, options=PEER_OPTIONS)) == [
        f"S. seq {ISS} ack {PEER + 11} win 65535 <mss 1460,wscale 5>"]


@drives((S.SYN_SENT, T.RCV_SYN), (S.SYN_RCVD, T.RCV_RST))
def test_syn_rcvd_after_crossing_syns_rst_closes_as_refused() -> None:
    peer, conn = crossing_syns()
    assert peer.inject(RST, PEER + 1) == []
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.SYN_RCVD, S.CLOSED]
    # RFC 9293 3.10.7.4, second check, SYN-RECEIVED: "If this connection was initiated with
    # an active OPEN (i.e., came from SYN-SENT state), then the connection was refused;
    # signal the user 'connection refused'".
    assert peer.events(conn) == [E.REFUSED, E.CLOSED]
    assert conn.error == "connection refused"


@drives((S.SYN_SENT, T.RCV_RST))
def test_syn_sent_rst_acking_our_syn_is_refused() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.take()
    assert peer.inject(RST | ACK, 0, ISS + 1) == []
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.CLOSED]
    assert peer.events(conn) == [E.REFUSED, E.CLOSED]
    assert conn.error == "connection refused"
    assert peer.stack.connections == {}
    assert peer.advance(10.0) == []


@pytest.mark.parametrize(("flags", "ack"), [(RST, 0), (RST | ACK, ISS), (RST | ACK, ISS + 2)],
                         ids=["no-ack", "ack-of-iss", "ack-beyond-snd-nxt"])
def test_syn_sent_rst_without_an_acceptable_ack_is_ignored(flags: int, ack: int) -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.take()
    # RFC 9293 3.10.7.3 (and RFC 5961 3.2): only a RST that acks our SYN counts; a RST
    # is never answered.
    assert peer.inject(flags, PEER, ack) == []
    assert conn.state is S.SYN_SENT
    assert peer.events(conn) == []
    assert lines(peer.advance(1.0)) == [syn_line(1000)]  # still trying


# ---------------------------------------------------------------------- abort

@drives((S.ESTABLISHED, T.APP_ABORT))
def test_established_abort_sends_rst_at_snd_nxt_and_goes_to_closed() -> None:
    peer, conn = active_open()
    peer.app_send(conn, b"y" * 100)
    assert peer.take_lines() == [f"P. seq {ISS + 1} ack {PEER + 1} win {WIN} len 100"]
    peer.app_abort(conn)
    # RFC 9293 3.10.5: <SEQ=SND.NXT><CTL=RST>, past the unacknowledged data.
    assert peer.take_lines() == [f"R seq {ISS + 101} win 0"]
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED, S.CLOSED]
    assert peer.events(conn) == [E.ESTABLISHED, E.CLOSED]
    assert conn.error == "connection aborted"
    assert peer.stack.connections == {}
    assert peer.advance(10.0) == []  # nothing is retransmitted


# RFC 9293 3.10.5: a RST goes out from SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2 and
# CLOSE-WAIT; SYN-SENT, CLOSING and LAST-ACK just delete the TCB.
ABORT_SENDS = {
    S.SYN_RCVD: [f"R seq {ISS + 1} win 0"],
    S.FIN_WAIT_1: [f"R seq {ISS + 2} win 0"],
    S.FIN_WAIT_2: [f"R seq {ISS + 2} win 0"],
    S.CLOSE_WAIT: [f"R seq {ISS + 1} win 0"],
    S.CLOSING: [],
    S.LAST_ACK: [],
}


@pytest.mark.parametrize("state", list(ABORT_SENDS), ids=str)
@drives(by_param=("state", {s: [(s, T.APP_ABORT)] for s in ABORT_SENDS}))
def test_abort_goes_to_closed(state: State) -> None:
    peer, conn = reach(state)
    peer.app_abort(conn)
    assert peer.transitions_of(conn)[-1] == (state, S.CLOSED)
    assert conn.error == "connection aborted"
    assert peer.stack.connections == {}
    assert peer.take_lines() == ABORT_SENDS[state]


@drives((S.SYN_SENT, T.APP_ABORT))
def test_syn_sent_abort_goes_to_closed_without_a_segment() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    conn = peer.connect(80)
    peer.take()
    peer.app_abort(conn)
    assert peer.take_lines() == []
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.CLOSED]
    assert peer.advance(10.0) == []


# ---------------------------------------------------------------------- acceptability (3.10.7.4)

SMALL = 1000  # receive buffer: no window scaling (a shift of 0 covers it), window 1000


def small_window_open() -> tuple[ScriptedPeer, Connection]:
    """Passive open with a 1000-byte receive buffer; the stack has 100 bytes in flight."""
    peer, conn = passive_syn(config(receive_buffer=SMALL))
    peer.inject(ACK, PEER + 1, ISS + 1)
    peer.app_send(conn, b"z" * 100)
    assert peer.take_lines() == [f"P. seq {ISS + 1} ack {PEER + 1} win {SMALL} len 100"]
    return peer, conn


def zero_window_open() -> tuple[ScriptedPeer, Connection]:
    """As small_window_open, then the peer fills the window: RCV.WND is 0."""
    peer, conn = small_window_open()
    reply = peer.inject(ACK | PSH, PEER + 1, ISS + 1, payload=pattern(SMALL, seed=3))
    assert lines(reply) == [f". seq {ISS + 101} ack {PEER + 1001} win 0"]
    return peer, conn


def test_zero_window_empty_segment_at_rcv_nxt_is_acceptable() -> None:
    peer, conn = zero_window_open()
    assert peer.inject(ACK, PEER + 1001, ISS + 101) == []
    assert conn.snd.una == ISS + 101  # its ACK was processed


def test_zero_window_empty_segment_not_at_rcv_nxt_draws_ack() -> None:
    peer, conn = zero_window_open()
    reply = peer.inject(ACK, PEER + 1002, ISS + 101)
    assert lines(reply) == [f". seq {ISS + 101} ack {PEER + 1001} win 0"]
    assert conn.snd.una == ISS + 1  # dropped, ACK field and all


def test_zero_window_data_is_not_accepted_but_draws_ack_with_the_window() -> None:
    peer, conn = zero_window_open()
    # A zero-window probe carrying one new byte (BSD, Windows and RFC 9293 3.8.6.1 style).
    reply = peer.inject(ACK | PSH, PEER + 1001, ISS + 101, payload=b"!")
    assert conn.rcv.nxt == PEER + 1001
    assert conn.rcv.unread_bytes == SMALL
    assert conn.snd.una == ISS + 101  # the special allowance for valid ACKs
    # 3.10.7.4: "If an incoming segment is not acceptable, an acknowledgment should be sent
    # in reply"; 3.8.6: a receiver with a zero window must still acknowledge, showing its
    # next expected sequence number and the zero window. Without it a lost window update
    # is never repaired: the sender's probes go unanswered.
    assert lines(reply) == [f". seq {ISS + 101} ack {PEER + 1001} win 0"]


def test_open_window_empty_segment_inside_the_window_is_acceptable() -> None:
    peer, conn = small_window_open()
    assert peer.inject(ACK, PEER + 1 + 999, ISS + 101) == []
    assert conn.snd.una == ISS + 101


@pytest.mark.parametrize("seq", [PEER, PEER + 1 + SMALL], ids=["before", "at-right-edge"])
def test_open_window_empty_segment_outside_the_window_draws_ack(seq: int) -> None:
    peer, conn = small_window_open()
    reply = peer.inject(ACK, seq, ISS + 101)
    assert lines(reply) == [f". seq {ISS + 101} ack {PEER + 1} win {SMALL}"]
    assert conn.snd.una == ISS + 1


def test_open_window_data_overlapping_rcv_nxt_is_trimmed_to_the_new_part() -> None:
    peer, conn = small_window_open()
    data = pattern(250, seed=4)
    peer.inject(ACK | PSH, PEER + 1, ISS + 1, payload=data[:100])
    reply = peer.inject(ACK | PSH, PEER + 51, ISS + 1, payload=data[50:250])
    assert lines(reply) == [f". seq {ISS + 101} ack {PEER + 251} win 750"]
    assert peer.app_read(conn) == data


def test_open_window_old_duplicate_data_draws_ack_and_is_dropped() -> None:
    peer, conn = small_window_open()
    peer.inject(ACK | PSH, PEER + 1, ISS + 1, payload=b"a" * 100)
    reply = peer.inject(ACK | PSH, PEER + 1, ISS + 1, payload=b"b" * 100)
    assert lines(reply) == [f". seq {ISS + 101} ack {PEER + 101} win 900"]
    assert peer.app_read(conn) == b"a" * 100
    assert peer.events(conn).count(E.DATA) == 1


def test_open_window_data_beyond_the_window_draws_ack_and_is_dropped() -> None:
    peer, conn = small_window_open()
    reply = peer.inject(ACK | PSH, PEER + 1 + SMALL, ISS + 1, payload=b"c" * 10)
    assert lines(reply) == [f". seq {ISS + 101} ack {PEER + 1} win {SMALL}"]
    assert conn.rcv.unread is None and conn.rcv.unread_bytes == 0


def test_data_beyond_the_window_is_trimmed_to_what_fits() -> None:
    peer, conn = small_window_open()
    data = pattern(1500, seed=5)
    # The FIN lies beyond the window too, so it must not be taken either.
    reply = peer.inject(FIN | ACK | PSH, PEER + 1, ISS + 1, payload=data)
    assert lines(reply) == [f". seq {ISS + 101} ack {PEER + 1001} win 0"]
    assert peer.app_read(conn) == data[:SMALL]
    assert conn.state is S.ESTABLISHED
    assert E.EOF not in peer.events(conn)


@pytest.mark.parametrize("seq", [PEER, PEER + 1], ids=["original-syn", "in-window"])
def test_established_duplicate_syn_draws_challenge_ack(seq: int) -> None:
    peer, conn = active_open()
    # RFC 5961 4.2 (RFC 9293 3.10.7.4 fourth step): any SYN in a synchronized state draws
    # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and is dropped; the connection stays.
    reply = peer.inject(SYN, seq, options=PEER_OPTIONS)
    assert lines(reply) == [f". seq {ISS + 1} ack {PEER + 1} win {WIN}"]
    assert conn.state is S.ESTABLISHED
    assert peer.events(conn) == [E.ESTABLISHED]


@pytest.mark.parametrize("state", [S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING,
                                   S.LAST_ACK], ids=str)
def test_syn_at_rcv_nxt_in_a_closing_state_draws_challenge_ack(state: State) -> None:
    peer, conn = reach(state)
    snd_nxt, rcv_nxt = SEQS[state]
    before = peer.transitions_of(conn)
    reply = peer.inject(SYN, rcv_nxt, options=PEER_OPTIONS)
    assert lines(reply) == [f". seq {snd_nxt} ack {rcv_nxt} win {WINDOW[state]}"]
    assert peer.transitions_of(conn) == before
    assert E.RESET not in peer.events(conn)


# ---------------------------------------------------------------------- sequence wrap

@drives((S.CLOSED, T.APP_CONNECT), (S.SYN_SENT, T.RCV_SYN_ACK), (S.ESTABLISHED, T.APP_CLOSE),
        (S.FIN_WAIT_1, T.RCV_ACK_OF_FIN), (S.FIN_WAIT_2, T.RCV_FIN),
        (S.TIME_WAIT, T.TIMEOUT_2MSL))
def test_sequence_numbers_wrap_past_2_to_the_32_mid_transfer_and_through_close() -> None:
    iss, peer_iss = (1 << 32) - 100, (1 << 32) - 50

    def w(n: int) -> int:
        return n & MASK

    peer = ScriptedPeer(config(), stack_isn=iss)
    conn = peer.connect(80)
    assert peer.take_lines() == [
        f"S seq {iss} win 65535 <mss 1460,sackOK,TS val 0 ecr 0,wscale 5>"]
    reply = peer.inject(SYN | ACK, peer_iss, iss + 1, options=PEER_OPTIONS)
    assert lines(reply) == [f". seq {iss + 1} ack {peer_iss + 1} win {WIN}"]

    inbound = pattern(200, seed=6)  # bytes 2**32-49 .. 150: the peer's side wraps
    reply = peer.inject(ACK | PSH, peer_iss + 1, iss + 1, payload=inbound)
    assert lines(reply) == [f". seq {iss + 1} ack {w(peer_iss + 201)} win 32762"]
    assert w(peer_iss + 201) == 151
    assert peer.app_read(conn) == inbound

    outbound = pattern(300, seed=7)  # bytes 2**32-99 .. 200: ours wraps
    peer.app_send(conn, outbound)
    (seg,) = peer.take()
    assert str(seg) == f"P. seq {iss + 1} ack 151 win 32762 len 300"
    assert seg.payload == outbound
    assert peer.inject(ACK, 151, w(iss + 301)) == []
    assert (conn.snd.una, conn.snd.bytes_sent) == (201, 300)

    peer.app_close(conn)
    assert peer.take_lines() == ["F. seq 201 ack 151 win 32762"]
    assert peer.inject(ACK, 151, 202) == []
    assert conn.state is S.FIN_WAIT_2
    assert lines(peer.inject(FIN | ACK, 151, 202)) == [". seq 202 ack 152 win 32762"]
    assert conn.state is S.TIME_WAIT
    peer.advance(2 * MSL)
    assert peer.states(conn) == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED, S.FIN_WAIT_1,
                                 S.FIN_WAIT_2, S.TIME_WAIT, S.CLOSED]


# ---------------------------------------------------------------------- lead's additions

@drives((S.CLOSED, T.APP_LISTEN))
def test_listen_goes_from_closed_to_listen() -> None:
    peer = ScriptedPeer(config(), stack_isn=ISS)
    listener = peer.listen(80)
    assert listener.state is S.LISTEN


@drives((S.ESTABLISHED, T.APP_CLOSE), (S.FIN_WAIT_1, T.RCV_ACK_OF_FIN),
        (S.FIN_WAIT_2, T.TIMEOUT_GIVE_UP))
def test_orphaned_fin_wait_2_gives_up_when_the_peer_never_sends_fin() -> None:
    peer, conn = active_open(config(fin_wait_2_timeout=5.0))
    conn.rcv.discard = True  # the application closed fully: nobody will read again
    peer.app_close(conn)
    peer.take()
    peer.advance(0.125)
    assert peer.inject(ACK, PEER + 1, ISS + 2) == []
    assert conn.state is S.FIN_WAIT_2
    assert peer.advance_to(5.1) == []
    assert conn.state is S.FIN_WAIT_2
    assert peer.advance_to(5.2) == []  # no RST: the peer may be long gone
    assert conn.state is S.CLOSED
    assert conn.error == "no FIN from the peer in FIN_WAIT_2"


def test_half_closed_fin_wait_2_waits_for_the_peer_as_long_as_it_takes() -> None:
    peer, conn = active_open(config(fin_wait_2_timeout=5.0))
    peer.app_close(conn)  # shutdown(SHUT_WR): the application still reads
    peer.take()
    assert peer.inject(ACK, PEER + 1, ISS + 2) == []
    peer.advance(60)
    assert conn.state is S.FIN_WAIT_2


@drives((S.ESTABLISHED, T.APP_CLOSE))
def test_established_close_behind_unsent_data_puts_the_fin_on_its_last_segment() -> None:
    peer, conn = active_open()
    assert peer.app_send(conn, pattern(1500, seed=2)) == 1500
    assert peer.take_lines() == [f". seq {ISS + 1} ack {PEER + 1} win {WIN} len 1400"]
    peer.app_close(conn)  # the 100-byte tail waits for the ACK (Nagle), the FIN behind it
    assert peer.take_lines() == []
    reply = peer.inject(ACK, PEER + 1, ISS + 1401)
    assert lines(reply) == [f"FP. seq {ISS + 1401} ack {PEER + 1} win {WIN} len 100"]
    assert conn.state is S.FIN_WAIT_1
    # That segment lost: the tail loss probe (RFC 8985 7.3) resends it whole, FIN and all.
    resent = peer.advance_to(conn.timers.rto or 0.0)
    assert lines(resent) == [f"FP. seq {ISS + 1401} ack {PEER + 1} win {WIN} len 100"]
    assert peer.stack.counters["tlp_probes"] == 1
    assert peer.inject(ACK, PEER + 1, ISS + 1502) == []
    assert conn.state is S.FIN_WAIT_2
    assert conn.snd.bytes_sent == 1500
