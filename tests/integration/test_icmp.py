"""The stack answers ping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import StartStack
from .netns import STACK_ADDRESS, NetNS

pytestmark = pytest.mark.integration


@pytest.mark.timeout(60)
def test_ping_is_answered_and_counted(netns: NetNS, start_stack: StartStack,
                                      http_root: Path) -> None:
    stack = start_stack(netns, "80", "--http", http_root)

    result = netns.run(["ping", "-n", "-c", "3", "-W", "1", STACK_ADDRESS], timeout=15)

    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert re.search(r"\b3 packets transmitted, 3 received\b", result.stdout), result.stdout
    counters = stack.stop()
    assert counters.get("icmp_in", 0) >= 3
    assert counters.get("icmp_out", 0) >= 3
