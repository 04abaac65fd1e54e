"""Fixtures for the integration tests: a fresh network namespace per test, tcpstack processes
inside it, and random files to serve. Everything is torn down even when a test fails."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .netns import NetNS, TcpStack, mark_skipped, skip_reason, write_random_file

_SKIP = skip_reason("integration", "network namespaces and a TUN device")
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_skipped(items, _HERE, _SKIP)


@pytest.fixture
def netns() -> Iterator[NetNS]:
    """A uniquely named namespace with `lo` up, deleted after the test whatever happens."""
    ns = NetNS()
    try:
        yield ns
    finally:
        ns.delete()
    assert not ns.exists(), f"namespace {ns.name} still exists after teardown"


StartStack = Callable[..., TcpStack]


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[StartStack]:
    """`start_stack(ns, "80", "--http", DIR)` runs `tcpstack listen 80 --http DIR` in `ns`
    and returns once it is listening; every stack started is stopped at teardown."""
    stacks: list[TcpStack] = []

    def start(ns: NetNS, *args: str | os.PathLike[str],
              global_args: tuple[str, ...] = ()) -> TcpStack:
        stack = TcpStack(ns, args, tmp_path / f"tcpstack-{len(stacks)}.log",
                         global_args=global_args)
        stacks.append(stack)
        stack.wait_ready()
        return stack

    try:
        yield start
    finally:
        for stack in stacks:
            try:
                stack.close()
            finally:
                # Shown by pytest only when the test failed ("Captured stdout teardown").
                print(f"--- {stack.log_path.name} (exit {stack.proc.returncode}) ---")
                print(stack.log())


@pytest.fixture
def http_root(tmp_path: Path) -> Path:
    """An empty directory to serve with `--http`; tests fill it with `random_file`."""
    root = tmp_path / "www"
    root.mkdir()
    return root


RandomFile = Callable[[Path, int], str]


@pytest.fixture
def random_file() -> RandomFile:
    """`random_file(path, size)` writes random bytes and returns their sha256."""
    return write_random_file
