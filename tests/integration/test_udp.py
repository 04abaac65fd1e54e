"""UDP against the kernel's own sockets: `tcpstack listen --udp PORT --echo` echoes a kernel
client's datagrams; a connected kernel socket sending to a closed port gets ECONNREFUSED on
its next call from our ICMP port unreachable; the asyncio API exchanges datagrams with a
kernel UDP server and hears the kernel's port unreachable as ConnectionRefusedError."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .conftest import StartStack
from .netns import PEERS, NetNS, read_line, stop_process

pytestmark = pytest.mark.integration

ECHO_CLIENT = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5)
sizes = [0, 1, 100, 1000, 1472]
for i, size in enumerate(sizes * 4):
    data = bytes([i % 256]) * size
    sock.sendto(data, ("10.77.0.2", 7))
    got, addr = sock.recvfrom(65535)
    assert (got, addr) == (data, ("10.77.0.2", 7)), (len(got), addr)
# Beyond the MTU the kernel fragments it; tcpstack reassembles it, and its echo, which
# would need fragmenting, is refused (EMSGSIZE, docs/DECISIONS.md): no answer.
sock.sendto(bytes(3000), ("10.77.0.2", 7))
sock.settimeout(1)
try:
    sock.recvfrom(65535)
    print("unexpected answer to 3000 bytes")
except TimeoutError:
    print("echoed", len(sizes) * 4)
"""

REFUSED_CLIENT = """
import socket
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5)
sock.connect(("10.77.0.2", 9))
sock.send(b"is port 9 open?")
try:
    sock.recv(100)
    print("answered")
except ConnectionRefusedError as exc:
    print("refused", exc.errno)
# A second datagram sees the same (the port is still closed).
sock.send(b"again")
try:
    sock.recv(100)
except ConnectionRefusedError as exc:
    print("refused", exc.errno)
"""


@pytest.mark.timeout(60)
def test_a_kernel_clients_datagrams_are_echoed(netns: NetNS, start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--udp", "--echo")
    result = netns.run([sys.executable, "-c", ECHO_CLIENT], timeout=40)
    assert result.returncode == 0, result.stderr + stack.log()
    assert result.stdout == "echoed 20\n"
    counters = stack.stop()
    assert counters["udp_in_datagrams"] == 21
    assert counters["udp_out_datagrams"] == 20
    assert counters["ip_frag_reassembled"] == 1
    assert "udp_no_ports" not in counters


@pytest.mark.timeout(60)
def test_a_closed_port_refuses_a_connected_kernel_socket(netns: NetNS,
                                                         start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--udp", "--echo")
    result = netns.run([sys.executable, "-c", REFUSED_CLIENT], timeout=30)
    assert result.returncode == 0, result.stderr + stack.log()
    assert result.stdout == "refused 111\nrefused 111\n"
    counters = stack.stop()
    assert counters["udp_no_ports"] == 2
    assert counters["icmp_port_unreachable_out"] == 2


@pytest.mark.timeout(60)
def test_stat_lists_the_udp_socket(netns: NetNS, start_stack: StartStack) -> None:
    start_stack(netns, "5353", "--udp", "--discard")
    result = netns.run([sys.executable, "-m", "tcpstack.cli", "stat"], timeout=20)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("UDP: 1 socket")
    assert lines[start + 2].split() == ["UNCONN", "0", "0", "10.77.0.2:5353", "*:*", "0"]


@pytest.mark.timeout(90)
def test_the_asyncio_api_talks_to_a_kernel_udp_server(netns: NetNS) -> None:
    server = netns.popen([sys.executable, "-u", PEERS / "udp_kernel_server.py", "5300"],
                         stdout=subprocess.PIPE)
    try:
        assert read_line(server) == "ready\n"
        result = netns.python("udp_api_client.py", "5300", "5301", timeout=60)
    finally:
        stop_process(server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "peername ('10.77.0.1', 5300)",
        "connected got PING 0 ('10.77.0.1', 5300)",
        "connected got PING 1 ('10.77.0.1', 5300)",
        "connected got PING 2 ('10.77.0.1', 5300)",
        "unconnected got 1000 HELLO ('10.77.0.1', 5300)",
        "closed port error ConnectionRefusedError 111",
        "counters udp_in_datagrams=4 udp_out_datagrams=5 icmp_errors_accepted=1",
    ]
    deadline = time.monotonic() + 10
    while "tcps0" in netns.run(["ip", "-o", "link"]).stdout:
        assert time.monotonic() < deadline, "tcps0 left behind"
        time.sleep(0.1)
