"""Bulk transfers and retransmission timing through the network simulator (simulator.py).

10 MB each way at once must arrive identical under each fault alone and under all of them
together, with every invariant checked after every event. With the link silent, the
retransmission timer must follow RFC 6298: the first RTO from the handshake's RTT sample
(SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR, floored at min_rto), doubling on each
expiry up to max_rto (5.5), and the connection must give up with TIMEOUT after max_retries.

The seed is 1 unless `--seed S` names another; each failure prints the command replaying it.
"""

from __future__ import annotations

import itertools

import pytest

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.segment import SYN
from tcpstack.tcp.state import State
from tcpstack.tcp.tail_probe import PTO_FLOOR
from tests.sim.simulator import (
    CONFIG_FIELDS,
    AppSpec,
    Faults,
    Scenario,
    Simulation,
    make_config,
)

MB = 1 << 20
PROFILES = {
    "drop": Faults(delay=0.005, drop=0.05),
    "delay_jitter": Faults(delay=0.02, jitter=0.03),
    "duplicate": Faults(delay=0.005, duplicate=0.05),
    "reorder": Faults(delay=0.005, reorder=0.05, reorder_delay=0.01),
    "corrupt": Faults(delay=0.005, corrupt=0.01),
    "all": Faults(delay=0.01, jitter=0.01, drop=0.05, duplicate=0.05, reorder=0.05,
                  reorder_delay=0.01, corrupt=0.01),
}


# Each congestion controller must survive every profile (when TcpConfig can choose one).
CONGESTION = ["newreno", "cubic"] if "congestion" in CONFIG_FIELDS else ["default"]


@pytest.mark.parametrize("windows", ["steady", "growing"])
@pytest.mark.parametrize("congestion", CONGESTION)
@pytest.mark.parametrize("profile", list(PROFILES))
def test_ten_megabytes_each_way_arrive_intact(profile: str, congestion: str, windows: str,
                                              profile_seed: int, replay: str) -> None:
    faults = PROFILES[profile]
    config = make_config(congestion=congestion) if congestion != "default" else TcpConfig()
    growing = windows == "growing"
    scenario = Scenario(
        seed=profile_seed, size_ab=10 * MB, size_ba=10 * MB, faults_ab=faults,
        faults_ba=faults, config_a=config, config_b=config, replay=replay,
        growing_window_a=growing, growing_window_b=growing)
    sim = Simulation(scenario)
    sim.run()  # checks every invariant, and at the end that both sides got all 10 MB

    # The profile really did what it is named for.
    for wire in sim.wires.values():
        stats = wire.stats
        assert (stats.dropped > 0) == (faults.drop > 0), stats
        assert (stats.duplicated > 0) == (faults.duplicate > 0), stats
        assert (stats.reordered > 0) == (faults.reorder > 0), stats
        assert (stats.corrupted > 0) == (faults.corrupt > 0), stats
        if faults.drop:
            assert stats.retransmitted > 0, stats
    if profile == "delay_jitter":
        # Nothing lost, nothing reordered: the RTO estimate covers the jitter, so nothing
        # is sent twice.
        assert [w.stats.retransmitted for w in sim.wires.values()] == [0, 0], sim.stats()
    if faults.corrupt:
        corrupted_in = {w.receiver: w.stats.corrupted for w in sim.wires.values()}
        assert sim.a.counters["in_errors"] + sim.a.counters["ip6_disabled"] == \
            corrupted_in["a"]
        assert sim.b.counters["in_errors"] + sim.b.counters["ip6_disabled"] == \
            corrupted_in["b"]


# ---------------------------------------------------------------------- retransmission timing

def _transmissions_of_first_data(sim: Simulation, sender: str) -> list[float]:
    """When `sender` sent the first byte of its data: first transmission, then each resend."""
    records = [(r.time, r.segment()) for r in sim.wire_log if r.sender == sender]
    data = [(t, seg) for t, seg in records if seg.payload]
    first_seq = data[0][1].seq
    return [t for t, seg in data if seg.seq == first_seq]


def _handshake_rtt(sim: Simulation, sender: str) -> float:
    """The RTT sample the handshake gave `sender`: from its SYN (or SYN-ACK) leaving to the
    peer's answer arriving, over a link of constant delay."""
    other = "b" if sender == "a" else "a"
    records = [(r.time, r.sender, r.segment()) for r in sim.wire_log]
    syn_at = next(t for t, s, seg in records if s == sender and seg.flags & SYN)
    answer_at = next(t for t, s, _ in records if s == other and t > syn_at)
    faults = sim.wires[other].faults
    assert not faults.jitter and not faults.reorder
    return answer_at + faults.delay - syn_at


def _backoff(rto: float, config: TcpConfig, count: int) -> list[float]:
    """RFC 6298 5.5: each expiry doubles the timer, up to max_rto."""
    intervals = []
    for _ in range(count):
        intervals.append(min(rto, config.max_rto))
        rto *= 2
    return intervals


@pytest.mark.parametrize("sender", ["a", "b"], ids=["client_sends", "server_sends"])
@pytest.mark.parametrize(("one_way", "limits"), [
    (0.005, {}),                                # RTO = min_rto: 3R = 0.03 s is below 0.2 s
    (0.05, {}),                                 # RTO = 3R = 0.3 s
    (0.2, {}),                                  # RTO = 3R = 1.2 s, capped at 60 s
    (0.05, {"max_retries": 4, "max_rto": 1.0}),  # the limits are the configuration's
], ids=["min_rto", "rto_0.3", "rto_1.2", "small_limits"])
def test_silent_link_retransmits_at_rto_doubling_then_times_out(
        sender: str, one_way: float, limits: dict[str, float], profile_seed: int,
        replay: str) -> None:
    config = make_config(**{"min_rto": 0.2, "initial_rto": 1.0, "max_rto": 60.0,
                             "max_retries": 15, **limits})
    quiet = AppSpec(close="never")
    writer = AppSpec(close="never", write_delay=0.5)
    scenario = Scenario(
        seed=profile_seed, size_ab=20_000 if sender == "a" else 0,
        size_ba=20_000 if sender == "b" else 0, faults_ab=Faults(delay=one_way),
        faults_ba=Faults(delay=one_way), config_a=config, config_b=config,
        app_a=writer if sender == "a" else quiet, app_b=writer if sender == "b" else quiet,
        clean=False, replay=replay)
    sim = Simulation(scenario, record=True)
    sim.run_until(lambda: sim.client.established and sim.server.established)
    sim.drop_filter = lambda who, packet, now: True  # from here on the link is silent
    sim.run()

    r = _handshake_rtt(sim, sender)
    assert r == pytest.approx(2 * one_way)
    rto = max(config.min_rto, r + 4 * (r / 2))  # RFC 6298 2.2 and 2.4
    times = _transmissions_of_first_data(sim, sender)
    assert len(times) == 1 + config.max_retries, times
    intervals = [b - a for a, b in itertools.pairwise(times)]
    expected = _backoff(rto, config, config.max_retries + 1)
    # The tail loss probe goes first, at PTO = 2 RTT (RFC 8985 7.2, floored), when that
    # comes before the RTO; the RTO restarts behind it (7.3), then doubles as before.
    pto = max(2 * r, PTO_FLOOR)
    assert pto < rto
    expected[0] += pto
    assert intervals == pytest.approx(expected[:-1], abs=1e-9)
    probes = [rec.time for rec in sim.wire_log if rec.sender == sender
              and rec.segment().payload and rec.time < times[1]]
    assert probes[-1] == pytest.approx(times[0] + pto, abs=1e-9)

    ep = sim.client if sender == "a" else sim.server
    assert ep.error_event is ConnEvent.TIMEOUT
    assert ep.conn is not None and ep.conn.state is State.CLOSED
    gave_up = [t for t, n, old, new, _ in sim.transitions if n == sender and new is State.CLOSED]
    assert gave_up == pytest.approx([times[-1] + expected[-1]], abs=1e-9)
    assert ep.conn.deadline is None
    assert ep.stack.next_deadline() is None


def test_silent_link_from_the_start_resends_syn_at_initial_rto_doubling_then_fails(
        profile_seed: int, replay: str) -> None:
    config = make_config(initial_rto=1.0, max_rto=60.0, syn_retries=6)
    scenario = Scenario(seed=profile_seed, config_a=config, clean=False, replay=replay)
    sim = Simulation(scenario, record=True)
    sim.drop_filter = lambda who, packet, now: True
    sim.run()

    syns = [r.time for r in sim.wire_log if r.sender == "a" and r.segment().flags & SYN]
    assert syns == pytest.approx([0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0], abs=1e-9)
    assert sim.client.error_event is ConnEvent.TIMEOUT
    assert sim.client.state() is State.CLOSED
    # The seventh expiry would wait 64 s; max_rto caps it at 60 (RFC 6298 2.5).
    assert [t for t, n, _, new, _ in sim.transitions if new is State.CLOSED] == \
        pytest.approx([63.0 + 60.0], abs=1e-9)
    assert sim.server.conn is None  # the server never heard of it
    assert sim.a.next_deadline() is None


def test_outage_mid_transfer_backs_off_exponentially_and_the_transfer_recovers(
        profile_seed: int, replay: str) -> None:
    outage = 20.0
    scenario = Scenario(seed=profile_seed, size_ab=2 * MB, size_ba=2 * MB, replay=replay)
    sim = Simulation(scenario, record=True)
    sim.run_until(lambda: sim.client.received >= MB // 2 and sim.server.received >= MB // 2)
    start = sim.now
    sim.drop_filter = lambda who, packet, now: start <= now < start + outage
    sim.run()  # the whole transfer still completes, every invariant holding

    settled = start + 0.1  # what was in flight when the link went silent has arrived
    for sender in ("a", "b"):
        during = [(r.time, r.segment()) for r in sim.wire_log
                  if r.sender == sender and settled <= r.time < start + outage]
        resends = [(t, seg) for t, seg in during if seg.payload]
        assert len(resends) >= 5, [t - start for t, _ in resends]
        # Each expiry resends the oldest unacknowledged segment, and waits twice as long.
        assert len({seg.seq for _, seg in resends}) == 1
        times = sorted({t for t, _ in resends})
        intervals = [b - a for a, b in itertools.pairwise(times)]
        for shorter, longer in itertools.pairwise(intervals):
            assert longer == pytest.approx(2 * shorter, rel=1e-9), intervals
        after = [r for r in sim.wire_log if r.sender == sender and r.time >= start + outage
                 and r.segment().payload]
        assert after, f"{sender} sent no data after the outage"


# ---------------------------------------------------------------------- a slow reader

def test_slow_reader_reopening_its_window_sends_the_window_update_at_once(
        profile_seed: int, replay: str) -> None:
    """RFC 9293 3.8.6.2.2: once the application has read enough to open the window by an
    MSS, the receiver says so at once; the sender should not have to wait for its persist
    (or SWS override) timer to find out."""
    mss = 1460
    scenario = Scenario(
        seed=profile_seed, size_ab=200_000, config_b=make_config(receive_buffer=16384),
        app_b=AppSpec(read_size=4096, read_interval=0.05), replay=replay)
    sim = Simulation(scenario, record=True)
    sim.run()  # the transfer completes, every invariant holding

    from_b = [(r.time, r.segment()) for r in sim.wire_log if r.sender == "b"]
    # A receive buffer of 16384 is below 65535: b's window field is not scaled.
    closed_at = [t for t, seg in from_b if seg.window < mss and not seg.flags & SYN]
    assert closed_at, "the reader never let the window close: the test proves nothing"
    full_reads = [t for t, n in sim.server.reads if n == 4096]
    # Once a's FIN is in, no more data can come and no window update is owed.
    fin_in = next(t for t, name, _, new, _ in sim.transitions if name == "b" and new in
                  (State.CLOSE_WAIT, State.CLOSING, State.TIME_WAIT))
    for t in closed_at:
        first_read = next((r for r in full_reads if r > t), None)
        if first_read is None or first_read >= fin_in:
            continue
        reopened = next((u for u, seg in from_b if u > t and seg.window >= mss), None)
        assert reopened is not None and reopened <= first_read, (
            f"b advertised a window below one MSS at t={t:.6f} and read 4096 bytes at "
            f"t={first_read:.6f}, but announced the open window only at t={reopened}")


@pytest.mark.parametrize("congestion", ["newreno", "cubic"])
def test_a_lone_loss_against_a_growing_window_is_fast_retransmitted_not_timed_out(
        congestion: str, profile_seed: int, replay: str) -> None:
    """The receiver's window grows on every ACK, duplicates included, as Linux's does: with
    SACK the duplicates still count (RFC 6675 2) and one lost segment is resent by fast
    retransmit, with no RTO and no tail probe."""
    config = make_config(congestion=congestion, sack=True)
    scenario = Scenario(seed=profile_seed, size_ab=2 * MB, faults_ab=Faults(delay=0.005),
                        faults_ba=Faults(delay=0.005), config_a=config, config_b=config,
                        growing_window_b=True, replay=replay)
    sim = Simulation(scenario, record=True)
    data_seen = 0

    def drop_the_hundredth_data_segment(sender: str, packet: bytes, now: float) -> bool:
        nonlocal data_seen
        if sender != "a" or len(packet) <= 60:
            return False
        data_seen += 1
        return data_seen == 100
    sim.drop_filter = drop_the_hundredth_data_segment
    sim.run()
    windows = [r.segment().window for r in sim.wire_log if r.sender == "b"][2:40]
    assert len(set(windows)) > 30, "the receiver's window must change on nearly every ACK"
    lost = next(r for r in sim.wire_log if r.fate == "filtered")
    resent = next(r for r in sim.wire_log if r.sender == "a" and r.time > lost.time
                  and r.segment().seq == lost.segment().seq)
    assert resent.time - lost.time < 4 * 2 * 0.005  # a few RTTs, far below the 200 ms RTO
    counters = sim.a.counters
    assert counters["rto_timeouts"] == 0
    assert counters["tlp_probes"] == 0
    assert counters["fast_retransmits"] == counters["retrans_segs"] == 1
    assert counters["sack_recoveries"] == 1
