"""The driver empties the TUN until EAGAIN, a service pass per READ_BATCH packets, within
READ_BUDGET seconds per readiness callback, so the kernel's ring does not fill while the
loop's other work waits; and the budget hands the loop back under endless input."""

from __future__ import annotations

import asyncio

import pytest

from tcpstack.io import driver as driver_module
from tcpstack.io.driver import READ_BATCH, StackDriver
from tcpstack.net.checksum import Bytes
from tcpstack.stack import NetworkStack
from tests.unit.pass_probe import probe


class QueuedTun:
    """A TUN with `waiting` packets in its ring (endless with None)."""

    offload = False
    fd = -1

    def __init__(self, waiting: int | None) -> None:
        self.waiting = waiting
        self.reads = 0

    def read(self) -> tuple[bytes, bool]:
        if self.waiting is not None and self.reads >= self.waiting:
            raise BlockingIOError
        self.reads += 1
        return b"\x45", False  # malformed: the stack counts and drops it


def _passes(tun: QueuedTun, kick: bool = False) -> list[int]:
    """The packets of each service pass one readiness callback (or kick) runs."""
    stack = NetworkStack(b"\x0a\x00\x00\x02")
    sizes: list[int] = []

    def counted(kind: str, _now: float, packets: list[Bytes]) -> None:
        if kind == "service":
            sizes.append(len(packets))

    loop = asyncio.new_event_loop()
    try:
        driver = StackDriver(stack, tun, loop)  # type: ignore[arg-type]
        probe(driver, counted)
        driver._running = True  # as after start(), without a real descriptor to watch
        if kick:
            driver.kick()
            loop.call_soon(loop.stop)
            loop.run_forever()
        else:
            driver._on_readable()
    finally:
        loop.close()
    return sizes


def test_one_readiness_callback_reads_until_eagain_in_passes_of_a_batch() -> None:
    tun = QueuedTun(waiting=2 * READ_BATCH + 7)
    assert _passes(tun) == [READ_BATCH, READ_BATCH, 7]
    assert tun.reads == 2 * READ_BATCH + 7, "the ring is empty when the loop gets it back"


def test_a_ring_that_never_empties_gives_the_loop_back_after_the_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "READ_BUDGET", 0.0)
    assert _passes(QueuedTun(waiting=None)) == [READ_BATCH]


def test_a_kicked_pass_takes_what_has_arrived_with_it() -> None:
    assert _passes(QueuedTun(waiting=3), kick=True) == [3]
