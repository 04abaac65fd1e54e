"""Hundreds of small random transfers through the network simulator (simulator.py): each seed
picks sizes (1 KB to 200 KB each way, sometimes none), a random mix of every fault at
moderate rates for each direction, buffers, MSS, congestion control, application behaviour
and ISNs, and every invariant is checked after every event.

`--seeds N` runs seeds 0..N-1; a failure names its seed and `make sim SEED=S` replays it.
The tests after the first prove the simulator itself: same seed, same run; and each kind of
breakage it exists to catch is caught.
"""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest

from tcpstack.net import ipv4
from tcpstack.net.checksum import checksum
from tcpstack.tcp.seq import MASK
from tcpstack.tcp.state import State
from tests.sim.simulator import (
    COEXIST,
    AppSpec,
    Faults,
    Scenario,
    Simulation,
    SimulationFailure,
    make_config,
)

S = State


def test_random_transfer_keeps_every_invariant(sim_seed: int) -> None:
    Simulation(Scenario.random(sim_seed)).run()


# ---------------------------------------------------------------------- the simulator itself

def test_same_seed_gives_the_same_run_bit_for_bit() -> None:
    seed = 7
    runs = []
    for _ in range(2):
        sim = Simulation(Scenario.random(seed))
        sim.run()
        runs.append((sim.fingerprint(), sim.now, sim.steps, sim.transitions, sim.stats()))
    assert runs[0] == runs[1]
    other = Simulation(Scenario.random(seed + 1))
    other.run()
    assert other.fingerprint() != runs[0][0]


def test_random_scenarios_cover_every_fault_and_behaviour() -> None:
    """The generator really mixes what the file promises (so a narrowed generator fails)."""
    scenarios = [Scenario.random(seed) for seed in range(300)]
    faults = [f for s in scenarios for f in (s.faults_ab, s.faults_ba)]
    for name in ("drop", "jitter", "duplicate", "reorder", "corrupt"):
        assert sum(1 for f in faults if getattr(f, name)) > 100, name
    assert sum(1 for f in faults if f.drop and f.duplicate and f.reorder and f.corrupt) > 10
    sizes = [n for s in scenarios for n in (s.size_ab, s.size_ba)]
    assert 0 in sizes
    assert min(n for n in sizes if n) >= 1 << 10
    assert max(sizes) <= 200 << 10
    assert max(sizes) > 150 << 10
    apps = [a for s in scenarios for a in (s.app_a, s.app_b)]
    assert any(a.read_interval > 0 for a in apps)
    assert {a.close for a in apps} == {"after_write", "after_eof"}
    assert any(s.isn_a is not None and s.isn_a > MASK - 300_000 for s in scenarios)
    configs = [c for s in scenarios for c in (s.config_a, s.config_b)]
    # Small fixed buffers, and the auto-tuned default.
    assert any(c.receive_buffer is not None and c.receive_buffer < 65536 for c in configs)
    assert any(c.receive_buffer is None for c in configs)
    assert any(not c.window_scaling for c in configs)
    if hasattr(configs[0], "congestion"):
        assert {c.congestion for c in configs} == {"newreno", "cubic"}


def test_state_pairs_that_cannot_coexist_are_not_in_the_table() -> None:
    # (client, server)
    for legal in [(S.SYN_SENT, S.SYN_RCVD), (S.FIN_WAIT_2, S.CLOSE_WAIT),
                  (S.CLOSE_WAIT, S.FIN_WAIT_2), (S.CLOSING, S.CLOSING),
                  (S.TIME_WAIT, S.CLOSED), (S.CLOSED, S.TIME_WAIT)]:
        assert legal in COEXIST, legal
    for illegal in [(S.SYN_SENT, S.ESTABLISHED), (S.ESTABLISHED, S.CLOSE_WAIT),
                    (S.FIN_WAIT_2, S.FIN_WAIT_2), (S.TIME_WAIT, S.FIN_WAIT_1),
                    (S.CLOSING, S.LAST_ACK), (S.CLOSE_WAIT, S.CLOSE_WAIT),
                    (S.SYN_RCVD, S.ESTABLISHED), (S.CLOSED, S.LAST_ACK),
                    (S.ESTABLISHED, S.CLOSED)]:
        assert illegal not in COEXIST, illegal


class _ChecksumFixingSimulation(Simulation):
    """A broken link that alters a payload byte and fixes the checksum, so no stack can
    notice: only the end-to-end comparison can."""

    def corrupt(self, packet: bytes, rng: random.Random) -> tuple[bytes, int]:
        header = 20 + (packet[32] >> 4) * 4
        if len(packet) <= header:
            return packet, -1
        damaged = bytearray(packet)
        damaged[rng.randrange(header, len(packet))] ^= 0x20
        damaged[36:38] = b"\0\0"
        segment = damaged[20:]
        pseudo = ipv4.pseudo_header_sum(bytes(damaged[12:16]), bytes(damaged[16:20]),
                                        ipv4.PROTO_TCP)
        struct.pack_into("!H", damaged, 36, checksum(segment, pseudo + len(segment)))
        return bytes(damaged), -1  # -1: the simulator believes it intact


def test_corruption_no_checksum_can_see_is_caught_as_altered_bytes() -> None:
    scenario = Scenario(seed=11, size_ab=50_000, size_ba=50_000,
                        faults_ab=Faults(corrupt=0.2), faults_ba=Faults(corrupt=0.2))
    with pytest.raises(SimulationFailure, match="differ from what"):
        _ChecksumFixingSimulation(scenario).run()


def test_a_connection_that_dies_is_reported_with_its_seed_and_replay_command() -> None:
    scenario = Scenario(seed=4242, size_ab=30_000, size_ba=30_000,
                        config_a=make_config(max_retries=3), config_b=make_config(max_retries=3),
                        app_a=AppSpec(write_delay=0.5))
    sim = Simulation(scenario)
    sim.run_until(lambda: sim.client.established and sim.server.established)
    sim.drop_filter = lambda sender, packet, now: True
    with pytest.raises(SimulationFailure) as failure:
        sim.run()
    message = str(failure.value)
    assert message.startswith("seed 4242: ")
    assert "TIMEOUT" in message
    assert "replay: make sim SEED=4242" in message
    assert "[filtered]" in message  # the last packets are listed, with their fate


def test_a_stack_whose_timers_never_fire_is_reported_not_hung() -> None:
    scenario = dataclasses.replace(
        Scenario(seed=5, size_ab=100_000, faults_ab=Faults(drop=0.2)), max_steps=20_000)
    sim = Simulation(scenario)
    sim.a.on_timer = lambda now: None  # type: ignore[method-assign]
    with pytest.raises(SimulationFailure, match="still busy after 20000 steps"):
        sim.run()


def test_an_illegal_pair_of_states_is_reported() -> None:
    sim = Simulation(Scenario(seed=3, size_ab=10_000, app_a=AppSpec(close="never"),
                              app_b=AppSpec(close="never")))
    sim.run_until(lambda: sim.client.established and sim.server.established)
    assert sim.server.conn is not None
    sim.server.conn.state = S.CLOSE_WAIT  # as if a FIN nobody sent had arrived
    with pytest.raises(SimulationFailure, match="cannot coexist"):
        sim.run()
