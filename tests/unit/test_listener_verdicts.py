"""What a listener does with each kind of segment (RFC 9293 3.10.7.2), and that the stack
counts every verdict, so `tcpstack stat --counters` accounts for each segment a listening port
was sent."""

from __future__ import annotations

import pytest

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.listener import Verdict
from tcpstack.tcp.segment import ACK, FIN, RST, SYN
from tests.unit.scripted_peer import ScriptedPeer, lines

OPTIONS = tcpseg.encode_options(mss=1460)


@pytest.mark.parametrize(("flags", "verdict", "answer"), [
    (SYN, Verdict.OPEN, ["S. seq 1000000 ack 5001 win 65535 <mss 1460>"]),
    (ACK, Verdict.RESET, ["R seq 7000 win 0"]),
    (RST, Verdict.IGNORE, []),
    (RST | ACK, Verdict.IGNORE, []),
    (SYN | FIN, Verdict.DROP, []),
    (FIN, Verdict.DROP, []),
    (0, Verdict.DROP, []),
], ids=["SYN", "ACK", "RST", "RST+ACK", "SYN+FIN", "FIN", "no flags"])
def test_each_segment_to_a_listener_gets_its_verdict_and_is_counted(
        flags: int, verdict: Verdict, answer: list[str]) -> None:
    peer = ScriptedPeer(stack_isn=1_000_000)
    peer.listen(80)
    reply = peer.inject(flags, 5000, 7000 if flags & ACK else 0,
                        options=OPTIONS if flags & SYN else b"")
    assert lines(reply) == answer
    counters = peer.stack.counters
    assert counters[verdict.value] == 1
    assert sum(counters[v.value] for v in Verdict) == 1  # one verdict, counted once
