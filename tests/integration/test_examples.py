"""The programs in examples/ run as their docstrings say, against kernel peers in a namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .netns import NetNS, read_line, stop_process

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ECHO_CLIENT = """
import socket
s = socket.create_connection(("10.77.0.2", 7), timeout=10)
payload = bytes(range(256)) * 2000
s.sendall(payload)
s.shutdown(socket.SHUT_WR)
data = b""
while chunk := s.recv(65536):
    data += chunk
print("intact" if data == payload else f"got {len(data)} bytes")
"""


@pytest.mark.timeout(60)
def test_echo_server_example_echoes_a_kernel_client(netns: NetNS) -> None:
    server = netns.popen([sys.executable, "-u", EXAMPLES / "echo_server.py", "7"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert read_line(server, timeout=20).strip() == "echo server listening on port 7"
        result = netns.run([sys.executable, "-c", ECHO_CLIENT], timeout=30)
        assert result.stdout.strip() == "intact", result.stderr
        assert read_line(server).strip().endswith("connected")
        assert read_line(server).strip().endswith("closed")
    finally:
        status = stop_process(server)
    assert status == 0


UDP_CLIENT = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for data in (b"one", b"", bytes(1472)):
    s.sendto(data, ("10.77.0.2", 7))
    got, addr = s.recvfrom(2000)
    assert (got, addr) == (data, ("10.77.0.2", 7)), (len(got), addr)
print("echoed", s.getsockname()[1])
"""


@pytest.mark.timeout(60)
def test_udp_echo_example_echoes_a_kernel_client(netns: NetNS) -> None:
    server = netns.popen([sys.executable, "-u", EXAMPLES / "udp_echo.py", "7"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert read_line(server, timeout=20).strip() == "udp echo server on port 7"
        result = netns.run([sys.executable, "-c", UDP_CLIENT], timeout=30)
        assert result.stdout.startswith("echoed "), result.stderr
        port = result.stdout.split()[1]
        assert [read_line(server).strip() for _ in range(3)] == [
            f"10.77.0.1:{port} sent {n} bytes" for n in (3, 0, 1472)]
    finally:
        status = stop_process(server)
    assert status == 0
