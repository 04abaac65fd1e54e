"""Stopping a stack while connections are busy: the applications see their streams end,
the stack exits 0, and nothing is logged as an unhandled error."""

from __future__ import annotations

import subprocess
import time

import pytest

from .conftest import StartStack
from .netns import NetNS

pytestmark = pytest.mark.integration

SENDER = """
import socket, time
s = socket.create_connection(("10.77.0.2", 7), timeout=10)
s.settimeout(10)
end = time.monotonic() + 8
try:
    while time.monotonic() < end:
        s.sendall(b"x" * 65536)
        s.recv(65536)
except OSError:
    pass
"""


@pytest.mark.timeout(60)
def test_sigterm_with_busy_connections_exits_cleanly(netns: NetNS,
                                                     start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--echo")
    clients = [netns.popen(["python3", "-c", SENDER]) for _ in range(3)]
    time.sleep(1.0)  # the echoes are in full flow
    counters = stack.stop()  # SIGTERM; asserts exit status 0
    log = stack.log()
    assert "Traceback" not in log and "Unhandled" not in log and "Exception" not in log, log
    assert counters["passive_opens"] == 3
    for client in clients:
        try:
            client.wait(timeout=15)
        except subprocess.TimeoutExpired:
            client.kill()
