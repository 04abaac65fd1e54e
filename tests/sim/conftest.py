"""Options for the simulator tests: `--seeds N` runs N random scenarios (seeds 0..N-1),
`--seed S` replays the one scenario of seed S (and runs the fault profiles with seed S).
`make sim SEEDS=N` and `make sim SEED=S` pass them on."""

from __future__ import annotations

import pytest

DEFAULT_SEEDS = 500


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sim", "deterministic network simulator (tests/sim)")
    group.addoption("--seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                    help=f"random scenarios to run, seeds 0..N-1 (default {DEFAULT_SEEDS})")
    group.addoption("--seed", type=int, default=None, metavar="S",
                    help="replay only the scenario of seed S")


def _option(config: pytest.Config, name: str, default: int | None) -> int | None:
    # The options exist only when this conftest was loaded at startup (pytest tests/sim, or
    # make sim); a plain `pytest` from the root falls back to the defaults.
    try:
        value = config.getoption(name)
    except ValueError:
        return default
    return default if value is None else int(value)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" in metafunc.fixturenames:
        seed = _option(metafunc.config, "seed", None)
        count = _option(metafunc.config, "seeds", DEFAULT_SEEDS) or 0
        seeds = [seed] if seed is not None else list(range(count))
        metafunc.parametrize("sim_seed", seeds, ids=[f"seed{s}" for s in seeds])


@pytest.fixture
def profile_seed(request: pytest.FixtureRequest) -> int:
    """The seed of the fault-profile runs: 1, or the one `--seed` names."""
    seed = _option(request.config, "seed", None)
    return 1 if seed is None else seed


@pytest.fixture
def replay(request: pytest.FixtureRequest, profile_seed: int) -> str:
    """The one command that reruns this very test with this seed."""
    return f".venv/bin/python -m pytest '{request.node.nodeid}' --seed {profile_seed}"
