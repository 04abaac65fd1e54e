"""Busy polling (StackDriver's `busy_poll`): after a pass the loop polls its descriptors
without sleeping for `busy_poll` seconds, each turn yielding the CPU first; a pass within
the window extends it; stop() ends it; and off (the default) the loop sleeps at once.

The loop here is asyncio's own SelectorEventLoop on a virtual clock: its selector records
each poll's timeout and moves the clock on by that timeout (a zero-timeout poll by one
STEP), so every count below is exact."""

from __future__ import annotations

import asyncio
import os
import selectors

import pytest

from tcpstack.io import driver as driver_module
from tcpstack.io.driver import StackDriver
from tcpstack.stack import NetworkStack
from tests.unit.test_driver_drain import QueuedTun

STEP = 1 / 1024  # virtual seconds a zero-timeout poll takes (a power of two: exact sums)
END = 0.25  # when the test's loop stops


class PipeTun(QueuedTun):
    """A QueuedTun with a real descriptor (an empty pipe's), so the driver can start and
    stop as on a TUN; the virtual selector never polls it."""

    def __init__(self, waiting: int) -> None:
        super().__init__(waiting)
        self.fd, self.writer = os.pipe()

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.writer)


class VirtualSelector(selectors.SelectSelector):
    """Polls nothing: records (clock, timeout) and lets the timeout pass on the clock."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0.0
        self.polls: list[tuple[float, float | None]] = []

    def select(self, timeout: float | None = None
               ) -> list[tuple[selectors.SelectorKey, int]]:
        assert timeout is not None, "the test's stop timer bounds every poll"
        self.polls.append((self.clock, timeout))
        self.clock += timeout if timeout > 0 else STEP
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.virtual = VirtualSelector()
        super().__init__(self.virtual)

    def time(self) -> float:
        return self.virtual.clock


def _run(busy_poll: float, monkeypatch: pytest.MonkeyPatch,
         at: dict[float, str] | None = None) -> tuple[list[tuple[float, float | None]], int]:
    """One packet read at time 0, then `at`'s actions ("packet" or "stop") at their times;
    the polls the loop made and how often the driver yielded the CPU."""
    yields = 0

    def counted_yield() -> None:
        nonlocal yields
        yields += 1

    monkeypatch.setattr(driver_module.os, "sched_yield", counted_yield)
    loop = VirtualLoop()
    tun = PipeTun(waiting=1)
    try:
        driver = StackDriver(NetworkStack(b"\x0a\x00\x00\x02"), tun,  # type: ignore[arg-type]
                             loop, busy_poll=busy_poll)
        driver.start()

        def packet() -> None:
            tun.waiting = (tun.waiting or 0) + 1
            driver._on_readable()

        for when, action in (at or {}).items():
            loop.call_at(when, packet if action == "packet" else driver.stop)
        driver._on_readable()
        loop.call_at(END, loop.stop)
        loop.run_forever()
    finally:
        loop.close()
        tun.close()
    return loop.virtual.polls, yields


def _first_sleep(polls: list[tuple[float, float | None]]) -> tuple[int, float]:
    """How many polls did not wait before the first that did, and when that one came."""
    for i, (clock, timeout) in enumerate(polls):
        if timeout:
            return i, clock
    raise AssertionError("the loop never slept")


def test_off_the_loop_sleeps_right_after_the_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    polls, yields = _run(0.0, monkeypatch)
    assert polls[0] == (0.0, END)
    assert yields == 0


def test_the_loop_polls_without_sleeping_for_the_window_yielding_each_turn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    polls, yields = _run(20 * STEP, monkeypatch)
    spins, slept_at = _first_sleep(polls)
    # Turns 1..20 each follow a zero-timeout poll; the 20th finds the window over.
    assert spins == 20
    assert slept_at == 20 * STEP
    assert polls[spins] == (20 * STEP, END - 20 * STEP)
    assert yields == 19, "each turn but the last yields the CPU first"


def test_a_pass_within_the_window_extends_it(monkeypatch: pytest.MonkeyPatch) -> None:
    polls, yields = _run(20 * STEP, monkeypatch, at={10 * STEP: "packet"})
    spins, slept_at = _first_sleep(polls)
    assert slept_at == 30 * STEP
    assert spins == 30
    assert yields == 29


def test_stop_ends_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    polls, yields = _run(20 * STEP, monkeypatch, at={5 * STEP: "stop"})
    spins, slept_at = _first_sleep(polls)
    # The stop timer falls due at the 5th poll and runs after that turn's callback (which
    # yields and readies the next); the cancelled callback still costs asyncio one more
    # zero-timeout poll, then the loop sleeps.
    assert yields == 5
    assert spins == 6
    assert slept_at == 6 * STEP
