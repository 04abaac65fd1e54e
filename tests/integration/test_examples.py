"""The programs in examples/ run as their docstrings say, against kernel peers in a namespace."""

from __future__ import annotations

import hashlib
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


@pytest.mark.timeout(90)
def test_http_client_example_fetches_from_a_kernel_server(netns: NetNS, tmp_path: Path) -> None:
    body = bytes(range(256)) * 4000 + b"end"
    (tmp_path / "file").write_bytes(body)
    # On every address: it listens before the example brings up tcps0 and 10.77.0.1.
    server = netns.popen([sys.executable, "-m", "http.server", "--bind", "0.0.0.0",
                          "--directory", tmp_path, "8000"])
    try:
        ready = netns.run(["sh", "-c", "until nc -z 127.0.0.1 8000; do sleep 0.1; done"],
                          timeout=20)
        assert ready.returncode == 0
        result = netns.run([sys.executable, EXAMPLES / "http_client.py",
                            "http://10.77.0.1:8000/file"], timeout=60)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("connected from 10.77.0.2:"), result.stdout
        assert lines[1] == f"200 {len(body)} {hashlib.sha256(body).hexdigest()}"
    finally:
        stop_process(server)
