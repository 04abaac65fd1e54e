"""ICMP errors are rate-limited as Linux limits them: per destination one a second after a
burst of six (icmp_ratelimit, XRLIM_BURST_FACTOR), and 1000 a second, burst 50, for the whole
stack (icmp_msgs_per_sec, icmp_msgs_burst). The virtual times make every answer exact."""

from __future__ import annotations

from tcpstack.net.icmp_rate import IcmpRateLimit

A = bytes([10, 77, 0, 1])
B = bytes([10, 77, 0, 9])
V6 = bytes(15) + b"\x01"


def _allowed(limit: IcmpRateLimit, peer: bytes, times: list[float]) -> list[bool]:
    return [limit.allow(peer, t) for t in times]


def test_a_new_destination_gets_a_burst_of_six_then_one_a_second() -> None:
    limit = IcmpRateLimit()
    assert _allowed(limit, A, [0.0] * 7) == [True] * 6 + [False]
    assert _allowed(limit, A, [0.5, 1.0, 1.5, 2.0, 2.0]) == [False, True, False, True, False]


def test_a_quiet_destination_earns_back_its_burst_and_no_more() -> None:
    limit = IcmpRateLimit()
    _allowed(limit, A, [0.0] * 6)
    assert _allowed(limit, A, [100.0] * 7) == [True] * 6 + [False]


def test_destinations_have_their_own_buckets_of_either_family() -> None:
    limit = IcmpRateLimit()
    assert _allowed(limit, A, [0.0] * 7).count(True) == 6
    assert _allowed(limit, B, [0.0] * 7).count(True) == 6
    assert _allowed(limit, V6, [0.0] * 7).count(True) == 6


def test_the_whole_stack_sends_at_most_its_global_burst_at_once() -> None:
    limit = IcmpRateLimit()
    peers = [bytes([10, 77, 1, i]) for i in range(60)]
    assert [limit.allow(peer, 0.0) for peer in peers] == [True] * 50 + [False] * 10
    # 1000 a second: 10 ms later ten more.
    assert [limit.allow(peer, 0.01) for peer in peers[50:]].count(True) == 10
