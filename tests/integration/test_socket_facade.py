"""tcpstack.socket against real peers: standard-library code (http.client, urllib.request,
socketserver, selectors loops, makefile) run unchanged on facade sockets in a namespace,
talking to the kernel's sockets, curl and Python's http.server (tests/peers/facade_*.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import RandomFile
from .netns import PEERS, NetNS, curl, read_line, sha256_file, stop_process

pytestmark = pytest.mark.integration


def _scenario(netns: NetNS, *args: str, timeout: float = 90.0) -> dict[str, Any]:
    result = netns.python("facade_client.py", *args, timeout=timeout)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    found: dict[str, Any] = json.loads(lines[-1])
    return found


@pytest.mark.timeout(120)
def test_http_client_and_urllib_fetch_from_a_kernel_http_server(
        netns: NetNS, http_root: Path, random_file: RandomFile) -> None:
    digest = random_file(http_root / "blob.bin", 3_000_000 + 7)
    seen = _scenario(netns, "http", str(http_root), "blob.bin")
    assert seen["given"] == {"status": 200, "sha256": digest, "length": 3_000_007,
                             "socket": "tcpstack.api.blocking"}
    # http.client's own connect set TCP_NODELAY, and the connection has it.
    assert seen["created"] == {"sha256": digest, "nodelay_option": 1,
                               "nodelay_on_connection": [True]}
    assert seen["urllib"] == {"status": 200, "sha256": digest,
                              "sockets": ["tcpstack.api.blocking"] * 2}


@pytest.mark.timeout(120)
def test_a_socketserver_on_a_facade_socket_serves_curl(
        netns: NetNS, http_root: Path, random_file: RandomFile, tmp_path: Path) -> None:
    digest = random_file(http_root / "page.bin", 2_000_000)
    (http_root / "hello.txt").write_text("hello from socketserver\n")
    server = netns.popen([sys.executable, "-u", PEERS / "facade_server.py", http_root, "8080"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = read_line(server, timeout=30)
        assert line.startswith("ready ('0.0.0.0', 8080) tcpstack.api.blocking"), line
        out = tmp_path / "page.bin"
        got = curl(netns, "-sS", "-o", str(out), "http://10.77.0.2:8080/page.bin")
        assert got.returncode == 0, got.stderr
        assert sha256_file(out) == digest
        got = curl(netns, "-sS", "http://10.77.0.2:8080/hello.txt")
        assert got.returncode == 0, got.stderr
        assert got.stdout == "hello from socketserver\n"
        missing = curl(netns, "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       "http://10.77.0.2:8080/nothing-here")
        assert missing.stdout == "404"
    finally:
        status = stop_process(server)
    assert server.stdout is not None
    rest = server.stdout.read().decode()
    assert status == 0, rest
    assert "handled 3" in rest


@pytest.mark.timeout(120)
def test_selectors_echo_server_and_clients_on_facade_sockets(netns: NetNS) -> None:
    seen = _scenario(netns, "selectors")
    assert seen == {"facade_server": [True] * 4, "facade_clients": [True] * 4}


@pytest.mark.timeout(60)
def test_makefile_reads_lines_from_a_kernel_peer(netns: NetNS) -> None:
    seen = _scenario(netns, "lines")
    assert seen == {"lines": ["one\n", "two\r\n", 100_001, "last"]}


@pytest.mark.timeout(60)
def test_timeouts_and_a_refused_connect(netns: NetNS) -> None:
    seen = _scenario(netns, "timeouts")
    assert seen["blackhole"] == "TimeoutError"  # socket.timeout is TimeoutError
    assert 1.0 <= seen["blackhole_seconds"] < 3.0
    assert seen["recv"] == "TimeoutError"
    assert 0.5 <= seen["recv_seconds"] < 2.0
    assert seen["refused"] == ["ConnectionRefusedError", 111]


@pytest.mark.timeout(60)
def test_a_kernel_peers_reset_is_connection_reset(netns: NetNS) -> None:
    seen = _scenario(netns, "reset")
    assert seen == {"got": "partial", "error": ["ConnectionResetError", 104]}


@pytest.mark.timeout(60)
def test_socket_options_show_in_tcpstack_stat(netns: NetNS) -> None:
    seen = _scenario(netns, "options")
    # SO_RCVBUF before connect: a fixed buffer (no auto-tuning, so no rcv_space) of that
    # size, the window the kernel was given (ss's snd_wnd); again on the live connection:
    # the new size; TCP_NODELAY reached it.
    assert seen == {"rcv_buf_before": 8192, "rcv_space_before": None, "rcv_buf_after": 4096,
                    "kernel_snd_wnd": 8192, "nodelay": True, "getsockopt": [4096, 1]}


@pytest.mark.timeout(60)
def test_udp_sockets_with_kernel_peers_both_ways(netns: NetNS) -> None:
    seen = _scenario(netns, "udp")
    kernel = ["10.77.0.1", 7600]
    assert seen["echoed"] == [[5, "ALPHA", kernel], [4, "BETA", kernel], [1400, "XXXXX", kernel]]
    assert seen["served"] == [["desserts", ["10.77.0.2", 7700]],
                              ["reward", ["10.77.0.2", 7700]]]
    assert seen["refused"] == ["ConnectionRefusedError", 111]  # the port unreachable


RECEIVER = """
import hashlib, socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
conn, _ = server.accept()
digest, size = hashlib.sha256(), 0
while chunk := conn.recv(65536):
    digest.update(chunk)
    size += len(chunk)
print(size, digest.hexdigest(), flush=True)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("closing", ["close", "open"])
def test_what_a_program_wrote_arrives_though_it_exits_at_once(netns: NetNS,
                                                               closing: str) -> None:
    receiver = netns.popen([sys.executable, "-c", RECEIVER, "7800"], stdout=subprocess.PIPE)
    try:
        assert read_line(receiver) == "listening\n"
        seen = _scenario(netns, "leave", "7800", "4000000", closing)
        assert read_line(receiver, timeout=30) == f"4000000 {seen['sha256']}\n"
    finally:
        stop_process(receiver)


@pytest.mark.timeout(120)
def test_ipv6_facade_sockets_talk_to_kernel_peers(netns: NetNS) -> None:
    seen = _scenario(netns, "ipv6")
    assert seen["connected"] == {"reply": "OVER IPV6", "family": 10,  # AF_INET6
                                 "peer": ["fd77::1", 7800], "local": "fd77::2"}
    assert seen["accepted"] == {"got": "ping6", "echo": "6gnip", "from": True}
    assert seen["udp"] == ["dgramdgram", ["fd77::1", 7802]]
