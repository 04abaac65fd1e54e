"""RTT estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations

import pytest

from tcpstack.tcp.rtt import RttEstimator


def estimator(initial: float = 1.0, min_rto: float = 0.2, max_rto: float = 60.0) -> RttEstimator:
    return RttEstimator(initial, min_rto, max_rto)


def test_before_any_sample_rto_is_the_initial_rto() -> None:
    rtt = estimator(initial=1.0)
    assert rtt.srtt is None
    assert rtt.rto == 1.0


def test_first_sample_sets_srtt_to_r_and_rttvar_to_half_r() -> None:
    # RFC 6298 2.2: SRTT <- R, RTTVAR <- R/2, RTO <- SRTT + max(G, 4*RTTVAR)
    rtt = estimator()
    rtt.sample(0.5)
    assert rtt.srtt == 0.5
    assert rtt.rttvar == 0.25
    assert rtt.rto == pytest.approx(1.5)


def test_later_sample_updates_rttvar_with_old_srtt_then_srtt() -> None:
    # RFC 6298 2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'| (with the old SRTT), then
    # SRTT <- 7/8 SRTT + 1/8 R'.
    rtt = estimator()
    rtt.sample(0.5)
    rtt.sample(0.3)
    assert rtt.rttvar == pytest.approx(0.75 * 0.25 + 0.25 * 0.2)   # 0.2375
    assert rtt.srtt == pytest.approx(0.875 * 0.5 + 0.125 * 0.3)    # 0.475
    assert rtt.rto == pytest.approx(0.475 + 4 * 0.2375)            # 1.425


def test_sequence_of_samples_follows_the_rfc_recurrence() -> None:
    samples = [0.100, 0.120, 0.080, 0.300, 0.110]
    rtt = estimator(min_rto=0.0)
    srtt, rttvar = samples[0], samples[0] / 2
    rtt.sample(samples[0])
    for r in samples[1:]:
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
        srtt = 0.875 * srtt + 0.125 * r
        rtt.sample(r)
    assert rtt.srtt == pytest.approx(srtt)
    assert rtt.rttvar == pytest.approx(rttvar)
    assert rtt.rto == pytest.approx(srtt + 4 * rttvar)


def test_rto_is_clamped_to_min_rto() -> None:
    rtt = estimator(min_rto=0.2)
    rtt.sample(0.001)  # 0.001 + 4 * 0.0005 = 0.003
    assert rtt.rto == 0.2


def test_rto_is_clamped_to_max_rto() -> None:
    rtt = estimator(max_rto=60.0)
    rtt.sample(100.0)  # 100 + 200
    assert rtt.rto == 60.0


def test_clock_granularity_floors_the_variance_term() -> None:
    # With RTTVAR decayed to almost nothing, RTO = SRTT + G where G is 1 ms.
    rtt = estimator(min_rto=0.0)
    for _ in range(200):
        rtt.sample(0.1)
    assert rtt.rttvar < 1e-6
    assert rtt.rto == pytest.approx(0.101)


def test_backoff_doubles_rto_and_caps_at_max_rto() -> None:
    rtt = estimator(initial=1.0, max_rto=60.0)
    seen = []
    for _ in range(10):
        rtt.backoff()
        seen.append(rtt.rto)
    assert seen == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    assert rtt.backoff_shift == 6  # stops growing once capped


def test_backoff_starts_from_measured_rto() -> None:
    rtt = estimator()
    rtt.sample(0.5)  # RTO 1.5
    rtt.backoff()
    assert rtt.rto == pytest.approx(3.0)
    rtt.backoff()
    assert rtt.rto == pytest.approx(6.0)


def test_new_sample_resets_backoff() -> None:
    rtt = estimator()
    rtt.sample(0.5)
    rtt.backoff()
    rtt.backoff()
    rtt.backoff()
    assert rtt.rto == pytest.approx(12.0)
    rtt.sample(0.5)  # RTTVAR 0.1875, SRTT 0.5
    assert rtt.backoff_shift == 0
    assert rtt.rto == pytest.approx(0.5 + 4 * 0.1875)
