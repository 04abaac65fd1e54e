"""A SYN to a port nobody listens on is answered with a RST at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import NetNS, curl, url

pytestmark = pytest.mark.integration


@pytest.mark.timeout(60)
def test_closed_port_is_refused_quickly(netns: NetNS, start_stack: StartStack,
                                        http_root: Path, random_file: RandomFile) -> None:
    random_file(http_root / "x.bin", 100)
    stack = start_stack(netns, "80", "--http", http_root)

    began = time.monotonic()
    result = curl(netns, "-v", "-sS", "-o", "/dev/null", url("x.bin", port=81), timeout=10)
    elapsed = time.monotonic() - began

    assert result.returncode == 7, result.stderr
    assert "Connection refused" in result.stderr
    assert elapsed < 1.0, f"refusal took {elapsed:.2f}s"
    # The listening port still serves.
    ok = curl(netns, "-sS", "-o", "/dev/null", "-w", "%{http_code}", url("x.bin"))
    assert (ok.returncode, ok.stdout) == (0, "200"), ok.stderr
    counters = stack.stop()
    assert counters.get("rst_out", 0) >= 1
    assert counters.get("passive_opens") == 1
