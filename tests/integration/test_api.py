"""The Python API: `tcpstack.start_server` on the default stack hands the handler asyncio's
own StreamReader and StreamWriter, and a kernel socket talks to it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .netns import PEERS, NetNS, stop_process

pytestmark = pytest.mark.integration

CLIENT = """
import socket
s = socket.create_connection(("10.77.0.2", 7000), timeout=10)
s.sendall(b"hello\\nworld\\n")
s.shutdown(socket.SHUT_WR)
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.decode(), end="")
"""


@pytest.mark.timeout(60)
def test_start_server_on_default_stack_serves_kernel_client(netns: NetNS) -> None:
    server = netns.popen([sys.executable, "-u", PEERS / "api_server.py"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 20
        line = b""
        while time.monotonic() < deadline and line.strip() != b"ready":
            line = server.stdout.readline()
            assert line or server.poll() is None, "api_server exited before ready"
        assert line.strip() == b"ready"

        result = netns.run([sys.executable, "-c", CLIENT], timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "HELLO\nWORLD\n"
    finally:
        status = stop_process(server)
    out = server.stdout.read().decode() if server.stdout else ""
    assert status == 0, out
    assert "types StreamReader StreamWriter" in out
    assert "tcps0" not in netns.run(["ip", "-o", "link"]).stdout
