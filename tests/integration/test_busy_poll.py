"""`tcpstack --busy-poll USEC`: while round trips come closer together than the window, the
stack's process does not sleep between them; once traffic stops it stops polling and
sleeps. The same rounds without the option sleep at least once per round trip."""

from __future__ import annotations

import json
import time

import pytest

from tests.unit.script_import import load_script

from .conftest import StartStack
from .netns import STACK_ADDRESS, NetNS, TcpStack

pytestmark = pytest.mark.integration

ROUNDS = 200
GAP = 0.002  # seconds between round trips, well within the 50 ms window


def _ping_pong(netns: NetNS, stack: TcpStack) -> dict[str, int | bool]:
    result = netns.python("ping_pong.py", STACK_ADDRESS, "7", str(ROUNDS),
                          str(GAP), str(stack.proc.pid), timeout=30)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{stack.log()}"
    report: dict[str, int | bool] = json.loads(result.stdout)
    assert report["rounds"] == ROUNDS
    assert report["intact"] is True, "every byte comes back as sent"
    return report


cpu_seconds = load_script("bench_env").cpu_seconds  # the process tree's user + system time


@pytest.mark.timeout(60)
def test_busy_polling_keeps_the_stack_awake_between_round_trips_then_lets_it_sleep(
        netns: NetNS, start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--echo", global_args=("--busy-poll", "50000"))
    report = _ping_pong(netns, stack)
    assert report["server_sleeps"] < ROUNDS // 4, report
    time.sleep(0.2)  # the 50 ms window is long over
    before = cpu_seconds(stack.proc.pid)
    time.sleep(0.5)
    assert cpu_seconds(stack.proc.pid) - before < 0.1, "an idle stack does not poll"
    assert stack.stop().get("passive_opens") == 1


@pytest.mark.timeout(60)
def test_without_busy_polling_the_stack_sleeps_between_round_trips(
        netns: NetNS, start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--echo")
    report = _ping_pong(netns, stack)
    assert report["server_sleeps"] >= ROUNDS, report
    assert stack.stop().get("passive_opens") == 1
