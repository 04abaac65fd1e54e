"""A slow reader: the kernel application reads one byte every 10 ms. tcpstack's window into
it closes, tcpstack probes the zero window (persist timer), nothing deadlocks, and every
byte arrives once the reader speeds up."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .netns import PEERS, NetNS, stop_process

pytestmark = pytest.mark.integration


@pytest.mark.timeout(90)
def test_zero_window_is_probed_and_the_transfer_completes(netns: NetNS, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    report = tmp_path / "report.txt"
    server = netns.popen([sys.executable, "-u", PEERS / "kernel_server.py", "slow-reader",
                          "5005", report, "4"], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        result = netns.python("api_sender.py", "10.77.0.1", "5005", source, timeout=60)
        assert result.returncode == 0, result.stderr
        assert server.wait(timeout=30) == 0
    finally:
        stop_process(server)
    assert report.read_text() == \
        f"got {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}\n"
    counters = json.loads(result.stdout)
    assert counters.get("persist_probes", 0) >= 2, counters
    assert counters.get("active_opens") == 1
