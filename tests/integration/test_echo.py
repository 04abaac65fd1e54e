"""A kernel-socket client streams 10 MB through `tcpstack listen 7 --echo` and back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import STACK_ADDRESS, NetNS, sha256_file

pytestmark = pytest.mark.integration

SIZE = 10 * (1 << 20)


@pytest.mark.timeout(90)
def test_echo_returns_every_byte_after_half_close(netns: NetNS, start_stack: StartStack,
                                                  random_file: RandomFile,
                                                  tmp_path: Path) -> None:
    sent_path, got_path = tmp_path / "sent.bin", tmp_path / "echoed.bin"
    expected = random_file(sent_path, SIZE)
    stack = start_stack(netns, "7", "--echo")

    result = netns.python("echo_client.py", STACK_ADDRESS, "7", sent_path, got_path, "60",
                          timeout=75)

    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{stack.log()}"
    report = json.loads(result.stdout)
    assert report["sent"] == SIZE
    assert report["received"] == SIZE
    assert got_path.stat().st_size == SIZE
    assert sha256_file(got_path) == expected
    counters = stack.stop()
    assert counters.get("passive_opens") == 1
    assert counters.get("in_errors", 0) == 0
