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


SENDS_THEN_CLOSES = """
import socket, sys
data = open(sys.argv[1], "rb").read()
server = socket.create_server(("0.0.0.0", 5006))  # before the TUN exists
print("ready", flush=True)
conn, _ = server.accept()
conn.sendall(data)
conn.shutdown(socket.SHUT_WR)
while conn.recv(65536):
    pass
conn.close()
"""


@pytest.mark.timeout(60)
def test_data_still_unread_when_the_connection_closes_is_all_read(
        netns: NetNS, tmp_path: Path) -> None:
    """The server's 200 KB and its FIN wait unread in tcpstack (more than the application's
    stream buffer holds, so part stays in the connection) while the application sends its
    own FIN: the connection is CLOSED before it reads, and it still reads every byte."""
    data = os.urandom(200_000)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    server = netns.popen([sys.executable, "-c", SENDS_THEN_CLOSES, source],
                         stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        result = netns.python("api_late_reader.py", "10.77.0.1", "5006", timeout=40)
        assert result.returncode == 0, result.stderr
        assert server.wait(timeout=20) == 0
    finally:
        stop_process(server)
    assert json.loads(result.stdout) == {"state": "CLOSED", "read": len(data),
                                         "sha256": hashlib.sha256(data).hexdigest()}
