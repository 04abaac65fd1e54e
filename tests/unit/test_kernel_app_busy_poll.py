"""The kernel app's busy polling (scripts/kernel_app.py --busy-poll), the bench's match for
`tcpstack --busy-poll`: before a poll would sleep it polls without sleeping for the window,
yielding the CPU each time, and returns what comes meanwhile; a poll with a shorter
timeout spins no longer than that; a zero-timeout poll does not spin."""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Iterator

import pytest

from tests.unit.script_import import load_script

kernel_app = load_script("kernel_app")


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


def _selector(window: float, read_end: int) -> selectors.BaseSelector:
    selector: selectors.BaseSelector = kernel_app.BusyPollSelector(window)
    selector.register(read_end, selectors.EVENT_READ)
    return selector


def test_what_comes_while_it_spins_is_returned_without_a_sleep(
        monkeypatch: pytest.MonkeyPatch, pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    yields = 0

    def yield_then_send() -> None:
        nonlocal yields
        yields += 1
        if yields == 3:
            os.write(write_end, b"x")

    monkeypatch.setattr(kernel_app.os, "sched_yield", yield_then_send)
    selector = _selector(10.0, read_end)
    start = time.monotonic()
    ready = selector.select(None)  # without the spin this would wait forever
    assert [key.fd for key, _ in ready] == [read_end]
    assert yields == 3, "one yield per empty poll, none after the poll that found it"
    assert time.monotonic() - start < 5.0
    selector.close()


def test_a_shorter_timeout_bounds_the_spin(pipe: tuple[int, int]) -> None:
    selector = _selector(10.0, pipe[0])
    start = time.monotonic()
    assert selector.select(0.05) == []
    assert 0.05 <= time.monotonic() - start < 2.0
    selector.close()


def test_a_zero_timeout_poll_does_not_spin(monkeypatch: pytest.MonkeyPatch,
                                           pipe: tuple[int, int]) -> None:
    yields = 0

    def counted() -> None:
        nonlocal yields
        yields += 1

    monkeypatch.setattr(kernel_app.os, "sched_yield", counted)
    selector = _selector(10.0, pipe[0])
    assert selector.select(0) == []
    assert yields == 0
    selector.close()
