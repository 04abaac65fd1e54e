"""Header prediction: an in-order ACK, with or without data, on an established connection
skips the RFC 9293 3.10.7.4 steps that cannot act on it (Connection._receive_predicted).
It must leave the connection exactly as the full steps would, and hand every segment it
cannot take (PAWS, a missing timestamp, data into a closed or too small window, SYN, FIN,
RST, a segment off RCV.NXT or with a hole queued) to them: the same segments, drawn at
random, go once through the stack as it is and once with prediction off, and what is sent
and the connection's state must agree after every one."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.segment import ACK, FIN, PSH, RST, SYN
from tcpstack.tcp.state import State
from tests.unit.scripted_peer import ScriptedPeer

PEER_ISS = 5_000_000
BUFFER = 8192  # a fixed receive buffer, so the window can fill and close


def _established() -> tuple[ScriptedPeer, Connection, int]:
    """A Linux-like passive open (MSS, SACK, timestamps, window scale) with 6,000 bytes of
    ours in flight; returns the peer, the connection and our ISS + 1."""
    peer = ScriptedPeer(TcpConfig(receive_buffer=BUFFER))
    peer.listen(80)
    conn, syn_ack = peer.open_like_linux(PEER_ISS)
    peer.app_send(conn, bytes(6000))
    return peer, conn, syn_ack.seq + 1


Step = tuple[int, int, int, int, int, int, bool, bool]

steps = st.tuples(
    st.sampled_from([ACK, ACK, ACK | PSH, ACK | PSH, ACK | FIN, RST, ACK | SYN, PSH]),
    st.sampled_from([0, 0, 0, 0, 1, 1448, -1, -100]),    # seq, from the peer's next
    st.integers(-2, 7000),                               # ack, from our ISS + 1
    st.sampled_from([0, 1, 100, 1448, 4000, 9000]),      # payload bytes
    st.sampled_from([0, 1, -1, 5, -(1 << 31)]),          # TSval, from the last one
    st.integers(0, 600),                                 # window field
    st.booleans(),                                       # no timestamp option
    st.booleans(),                                       # the application reads first
)


def _run(script: list[Step]) -> list[tuple[object, ...]]:
    peer, conn, ours = _established()
    seen: list[tuple[object, ...]] = []
    nxt, tsval = PEER_ISS + 1, 1001
    for flags, seq_delta, ack_delta, length, ts_delta, window, no_ts, read in script:
        if read:
            peer.app_read(conn)
        tsval = (tsval + ts_delta) & 0xFFFFFFFF
        options = b"" if no_ts else tcpseg.encode_timestamps(tsval, 0)
        sent = peer.inject(flags, (nxt + seq_delta) & 0xFFFFFFFF, (ours + ack_delta) & 0xFFFFFFFF,
                           window=window, payload=bytes(length), options=options)
        peer.advance(0.001)
        nxt = conn.rcv.nxt
        seen.append((tuple(str(s) for s in sent), conn.state, conn.rcv.nxt, conn.rcv.adv,
                     conn.snd.una, conn.snd.nxt, conn.snd.wnd, conn.snd.wl1, conn.snd.wl2,
                     conn.tx.ts.recent, conn.rcv.unread_bytes, sorted(conn.counters.items()),
                     conn.cc.cwnd))
    return seen


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, min_size=1, max_size=12))
def test_prediction_leaves_the_connection_as_the_full_steps_do(script: list[Step]) -> None:
    predicted = _run(script)
    with mock.patch.object(Connection, "_receive_predicted", return_value=False):
        full = _run(script)
    assert predicted == full


@pytest.mark.instruments
def test_an_in_order_segment_takes_the_predicted_path_and_others_do_not() -> None:
    peer, conn, ours = _established()
    taken: list[bool] = []
    predicted = Connection._receive_predicted

    def spy(self: Connection, seg: tcpseg.Segment, now: float) -> bool:
        taken.append(predicted(self, seg, now))
        return taken[-1]

    with mock.patch.object(Connection, "_receive_predicted", spy):
        ts = tcpseg.encode_timestamps(1002, 0)
        peer.inject(ACK | PSH, PEER_ISS + 1, ours + 1448, payload=b"x" * 100, options=ts)
        assert (taken, conn.rcv.nxt) == ([True], PEER_ISS + 101)
        old = tcpseg.encode_timestamps(900, 0)  # older than TS.Recent: PAWS, the full steps
        peer.inject(ACK, PEER_ISS + 101, ours + 1448, options=old)
        assert taken == [True, False] and conn.counters["paws_rejected"] == 1
        # Beyond RCV.NXT (a hole) and a FIN never reach it.
        peer.inject(ACK, PEER_ISS + 201, ours + 1448, payload=b"y", options=ts)
        peer.inject(ACK | FIN, PEER_ISS + 101, ours + 1448, options=ts)
        assert taken == [True, False]
    assert conn.state is State.CLOSE_WAIT  # the FIN, by the full steps
