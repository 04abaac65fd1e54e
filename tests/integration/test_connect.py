"""`tcpstack connect` (active open) against the kernel's TCP, with half-close both ways,
and `tcpstack listen` half-closing first towards a kernel client."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .netns import PEERS, TCPSTACK, NetNS, clean_env, stop_process

pytestmark = pytest.mark.integration


def _start_peer(ns: NetNS, *args: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
    proc = ns.popen([sys.executable, "-u", PEERS / "kernel_server.py", *map(str, args)],
                    stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def _connect(ns: NetNS, port: int, stdin: Path | None, *extra: str,
             timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as f:
        return subprocess.run(ns.argv([TCPSTACK, "--trace", "connect", *extra, "10.77.0.1",
                                       str(port)]),
                              stdin=f, capture_output=True, timeout=timeout, env=clean_env())


def _data(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "in.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(90)
def test_connect_half_closes_on_stdin_eof_and_still_receives(netns: NetNS,
                                                             tmp_path: Path) -> None:
    source, digest = _data(tmp_path, 5_000_000)
    peer = _start_peer(netns, "count-then-reply", "5000")
    try:
        result = _connect(netns, 5000, source)
    finally:
        stop_process(peer)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == f"got 5000000 bytes sha256 {digest}\n"
    trace = result.stderr.decode()
    for step in ("CLOSED -> SYN_SENT", "SYN_SENT -> ESTABLISHED",
                 "ESTABLISHED -> FIN_WAIT_1", "FIN_WAIT_2 -> TIME_WAIT"):
        assert f"10.77.0.1:5000 {step}" in trace, trace


@pytest.mark.timeout(90)
def test_connect_keeps_sending_after_the_peer_half_closes(netns: NetNS, tmp_path: Path) -> None:
    source, digest = _data(tmp_path, 3_000_000)
    report = tmp_path / "report.txt"
    peer = _start_peer(netns, "banner-then-count", "5001", report)
    try:
        result = _connect(netns, 5001, source)
        assert peer.wait(timeout=30) == 0
    finally:
        stop_process(peer)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"banner from the kernel\n"
    assert report.read_text() == f"got 3000000 bytes sha256 {digest}\n"
    trace = result.stderr.decode()
    assert "ESTABLISHED -> CLOSE_WAIT" in trace and "CLOSE_WAIT -> LAST_ACK" in trace, trace


@pytest.mark.timeout(60)
def test_connect_refused_fails_at_once_with_message(netns: NetNS) -> None:
    began = time.monotonic()
    result = _connect(netns, 5002, None)
    assert time.monotonic() - began < 10
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == \
        "tcpstack: error: connection to 10.77.0.1:5002 refused"


@pytest.mark.timeout(60)
def test_connect_timeout_fails_with_message(netns: NetNS) -> None:
    # Nobody owns 10.77.0.5: the SYNs go unanswered.
    result = subprocess.run(netns.argv([TCPSTACK, "connect", "--timeout", "1.5", "10.77.0.5",
                                        "5003"]), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=30, env=clean_env())
    assert result.returncode == 1
    assert result.stderr.decode().strip() == \
        "tcpstack: error: connection to 10.77.0.5:5003 timed out"


@pytest.mark.timeout(60)
def test_connect_reset_by_peer_fails_with_message(netns: NetNS, tmp_path: Path) -> None:
    source, _ = _data(tmp_path, 100)
    peer = _start_peer(netns, "reset", "5004")
    try:
        result = _connect(netns, 5004, source)
    finally:
        stop_process(peer)
    assert result.returncode == 1
    assert "connection to 10.77.0.1:5004 lost: connection reset by peer" in \
        result.stderr.decode()


KERNEL_CLIENT = """
import socket, sys
s = socket.create_connection(("10.77.0.2", 7001), timeout=10)
banner = b""
while chunk := s.recv(4096):
    banner += chunk
s.sendall(b"x" * 1_000_000)
s.shutdown(socket.SHUT_WR)
s.settimeout(10)
assert s.recv(1) == b""
print(banner.decode(), end="")
"""


@pytest.mark.timeout(60)
def test_listen_side_half_closes_first_and_still_receives(netns: NetNS) -> None:
    server = netns.popen([sys.executable, "-u", PEERS / "api_server.py"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        result = netns.run([sys.executable, "-c", KERNEL_CLIENT], timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "banner\n"
    finally:
        status = stop_process(server)
    out = server.stdout.read().decode() if server.stdout else ""
    assert status == 0, out
    assert "received 1000000" in out, out
