"""A probe between a StackDriver and its NetworkStack, for tests that count or log the
stack's passes. Wrapping the stack's own methods would do as much in pure Python, but an
object of the compiled build (scripts/build_compiled.py) takes no attribute it does not
declare; the driver stays Python, so the probe stands in for the stack where the driver
holds it, and those tests run against both builds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tcpstack.io.driver import StackDriver
from tcpstack.net.checksum import Bytes
from tcpstack.stack import NetworkStack

# Called after each pass: ("service", now, the packets it was given) or ("on_timer", now, []).
PassHook = Callable[[str, float, list[Bytes]], None]


class StackProbe:
    """Forwards everything to `stack`, telling `after` of each service and timer pass once
    it has run (before the driver writes and clears the stack's output)."""

    def __init__(self, stack: NetworkStack, after: PassHook) -> None:
        object.__setattr__(self, "_stack", stack)
        object.__setattr__(self, "_after", after)

    def service(self, packets: Iterable[Bytes], now: float,
                trusted: Sequence[bool] | None = None) -> None:
        batch = list(packets)
        self._stack.service(batch, now, trusted)
        self._after("service", now, batch)

    def on_timer(self, now: float) -> None:
        self._stack.on_timer(now)
        self._after("on_timer", now, [])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stack, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._stack, name, value)


def probe(driver: StackDriver, after: PassHook) -> NetworkStack:
    """Put a probe between `driver` and its stack; returns the stack."""
    stack = driver.stack
    driver.stack = StackProbe(stack, after)  # type: ignore[assignment]
    return stack
