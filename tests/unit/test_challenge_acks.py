"""RFC 5961 7: the challenge ACKs that in-window RSTs, SYNs in a synchronized state and too
old ACKs draw are rate limited, one budget for the whole stack, each second's allowance drawn
at random between half the limit and one and a half times it (as Linux's
tcp_challenge_ack_limit, since CVE-2016-5696)."""

from __future__ import annotations

import random

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.challenge import ChallengeAckLimit
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.segment import ACK, RST, SYN
from tcpstack.tcp.state import State
from tests.unit.scripted_peer import ScriptedPeer

MSS = 1460
ISS = 1_000_000
LIMIT = 100
SEED = 7


def _allowance(seed: int = SEED, draws: int = 1) -> list[int]:
    """What a ChallengeAckLimit seeded with `seed` allows in each of its first windows."""
    rng = random.Random(seed)
    return [LIMIT // 2 + rng.randrange(LIMIT) for _ in range(draws)]


def test_each_windows_allowance_is_half_the_limit_plus_a_random_share() -> None:
    limit = ChallengeAckLimit(LIMIT, random.Random(SEED))
    first, second = _allowance(draws=2)
    assert LIMIT // 2 <= first < LIMIT // 2 + LIMIT and first != second
    assert sum(limit.allow(10.0) for _ in range(3 * LIMIT)) == first
    assert not limit.allow(10.999)  # still the same window
    assert sum(limit.allow(11.0) for _ in range(3 * LIMIT)) == second  # a new one


def test_a_limit_of_zero_allows_every_challenge() -> None:
    limit = ChallengeAckLimit(0)
    assert all(limit.allow(0.0) for _ in range(10_000))


def _established(peer: ScriptedPeer, sport: int) -> int:
    """A passive open from `sport`; returns the stack's ISS + 1 (what its ACKs carry)."""
    syn_ack = peer.inject(SYN, 5000, sport=sport, options=tcpseg.encode_options(mss=MSS))[0]
    peer.inject(ACK, 5001, syn_ack.seq + 1, sport=sport)
    return syn_ack.seq + 1


def test_in_window_resets_draw_challenges_within_the_stacks_budget() -> None:
    peer = ScriptedPeer(TcpConfig(challenge_ack_limit=LIMIT), stack_isn=ISS)
    peer.stack.challenges = ChallengeAckLimit(LIMIT, random.Random(SEED))
    peer.listen(80)
    ours = [_established(peer, sport) for sport in (40001, 40002)]
    (allowed,) = _allowance()
    sent = []
    for i in range(LIMIT):  # in the window, not at RCV.NXT: RFC 5961 3.2's challenge case
        for sport in (40001, 40002):
            sent += peer.inject(RST, 5001 + 100 + i, sport=sport)
    # Both connections drew on one budget; nothing was reset.
    assert len(sent) == allowed
    assert all(s.flags == ACK and s.ack == 5001 and s.seq in ours for s in sent)
    counters = peer.stack.counters
    assert (counters["challenge_acks"], counters["challenge_acks_limited"]) == (
        allowed, 2 * LIMIT - allowed)
    assert all(c.state is State.ESTABLISHED for c in peer.stack.connections.values())

    # A second later the budget is drawn again: a SYN in ESTABLISHED is challenged too.
    peer.advance(1.0)
    assert [s.flags for s in peer.inject(SYN, 5001 + 7, sport=40001)] == [ACK]
    assert counters["challenge_acks"] == allowed + 1
