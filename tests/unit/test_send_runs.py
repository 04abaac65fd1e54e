"""Full segments of new data go out as one run (SegmentOutput._send_new_run) where send_data
would call send_at_nxt once each: the run must build the same segments and leave the same
state. The same script runs through two identical stacks, once as it is and once with the
run refused (every segment by send_at_nxt), and everything is compared."""

from __future__ import annotations

from unittest import mock

import pytest

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.output import SegmentOutput
from tcpstack.tcp.segment import ACK
from tests.unit.scripted_peer import ScriptedPeer

PEER_ISS = 5_000_000
MSS = 1448


def _script(data: int, close: bool, timestamps: bool = True
            ) -> tuple[list[str], list[tuple[object, ...]]]:
    """A Linux-like passive open, `data` bytes queued (and the close, if `close`), then
    the peer acks two segments at a time with a growing window until all is acked; what
    was sent, and the timers and the RTT timing after each step."""
    peer = ScriptedPeer(TcpConfig())
    peer.listen(80)
    conn, syn_ack = peer.open_like_linux(PEER_ISS, timestamps=timestamps, rtt=0.01)
    mss = MSS if timestamps else MSS + 12

    def ts(tsval: int) -> bytes:
        return tcpseg.encode_timestamps(tsval, sent[-1].options.tsval or 0) if timestamps \
            else b""

    steps: list[tuple[object, ...]] = []
    peer.app_send(conn, bytes(data))
    if close:
        peer.app_close(conn)
    sent = peer.take()
    steps.append((conn.deadline, conn.rtt.timed_seq, conn.loss.probe.end))
    tsval = 1001
    for i in range(200):
        una = conn.snd.una
        if una == conn.snd.max:
            break
        peer.advance(0.001)
        tsval += 1
        acked = min((una + 2 * mss - syn_ack.seq - 1) & 0xFFFFFFFF,
                    (conn.snd.max - syn_ack.seq - 1) & 0xFFFFFFFF)  # what was sent
        sent += peer.inject(ACK, PEER_ISS + 1, (syn_ack.seq + 1 + acked) & 0xFFFFFFFF,
                            window=502 + 3 * i, options=ts(tsval))
        steps.append((conn.deadline, conn.rtt.timed_seq, conn.rtt.srtt, conn.loss.probe.end,
                      [(r.start, r.end, r.order) for r in conn.loss.rack._ranges or ()]))
    rack = conn.loss.rack
    state = (conn.state, conn.snd.una, conn.snd.nxt, conn.snd.max, conn.cc.cwnd,
             conn.rtt.srtt, conn.rtt.rttvar, conn.rtt.timed_seq, conn.counts.segments_out,
             conn.deadline, rack.order, rack.end, rack.min_rtt,
             sorted(peer.stack.counters.items()))
    assert conn.snd.una == conn.snd.max  # the script ran to the end
    return [str(s) for s in sent], [*steps, state]


@pytest.mark.parametrize("timestamps", [True, False], ids=["timestamps", "no timestamps"])
@pytest.mark.parametrize(("data", "close"), [(100 * MSS, False), (100 * MSS + 7, True),
                                             (30 * MSS, True), (5 * MSS - 1, False)])
def test_a_run_sends_what_one_send_at_nxt_per_segment_sends(data: int, close: bool,
                                                              timestamps: bool) -> None:
    as_runs = _script(data, close, timestamps)
    with mock.patch.object(SegmentOutput, "_send_new_run", return_value=False):
        one_by_one = _script(data, close, timestamps)
    assert as_runs == one_by_one


@pytest.mark.instruments
def test_runs_are_taken_in_a_bulk_transfer() -> None:
    runs: list[int] = []
    taken = SegmentOutput._send_new_run

    def spy(self: SegmentOutput, now: float, count: int) -> bool:
        sent = taken(self, now, count)
        if sent:
            runs.append(count)
        return sent

    with mock.patch.object(SegmentOutput, "_send_new_run", spy):
        _script(100 * MSS, False)
    # The first flight: 10 segments, of which the run sends 10 (the queue goes on); later
    # passes a run each of what two acked segments and slow start let out.
    assert runs[0] == 10 and len(runs) > 10 and all(n >= 2 for n in runs)
