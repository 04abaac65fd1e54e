"""IPv6 against the kernel (issue 13): curl -6 fetches 50 MB intact from `listen --http`,
ping -6 answers, `tcpstack connect fd77::1 PORT` talks to a kernel `nc -6 -l`, the Python
API opens to fd77::1 and serves kernel clients of both families, `listen [fd77::2]:PORT`
and `listen :PORT` take both, and `-v`, `--pcap` and `plot` read IPv6 segments."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import PEERS, TCPSTACK, NetNS, curl, read_line, sha256_file, stop_process

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import TCP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.utils import rdpcap  # noqa: E402

pytestmark = pytest.mark.integration

STACK6 = "fd77::2"
KERNEL6 = "fd77::1"
MB = 1 << 20

CLIENT = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as s:
    s.settimeout(10)
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.sendall(sys.argv[3].encode())
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    print(data.decode(), s.getsockname()[0])
"""


def url6(path: str, port: int = 80) -> str:
    return f"http://[{STACK6}]:{port}/{path}"


@pytest.mark.timeout(120)
def test_curl_6_fetches_50_mb_intact(netns: NetNS, start_stack: StartStack, http_root: Path,
                                      random_file: RandomFile, tmp_path: Path) -> None:
    expected = random_file(http_root / "blob.bin", 50 * MB)
    stack = start_stack(netns, "80", "--http", http_root)
    out = tmp_path / "got.bin"
    result = curl(netns, "-6", "-sS", "-o", str(out), "-w", "%{http_code} %{size_download}",
                  url6("blob.bin"), timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"200 {50 * MB}"
    assert sha256_file(out) == expected
    counters = stack.stop()
    assert counters.get("passive_opens") == 1
    assert counters.get("in_errors", 0) == 0
    assert f'[{KERNEL6}]:' in stack.log() and '"GET /blob.bin" 200' in stack.log()


@pytest.mark.timeout(60)
def test_ping_6_answers(netns: NetNS, start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--echo")
    result = netns.run(["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", STACK6], timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 received" in result.stdout
    counters = stack.stop()
    assert (counters.get("icmp6_in"), counters.get("icmp6_out")) == (3, 3)


@pytest.mark.timeout(60)
def test_connect_talks_to_a_kernel_nc_6(netns: NetNS, tmp_path: Path) -> None:
    answer = tmp_path / "answer.txt"
    answer.write_text("reply from nc\n")
    heard = tmp_path / "heard.txt"
    with answer.open("rb") as stdin, heard.open("wb") as stdout:
        # -N: nc's FIN after its standard input; it binds [::]:5000 before fd77::1 exists.
        nc = subprocess.Popen(netns.argv(["nc", "-6", "-N", "-l", "5000"]), stdin=stdin,
                              stdout=stdout, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        result = subprocess.run(netns.argv([TCPSTACK, "connect", KERNEL6, "5000"]),
                                input="hello from tcpstack\n", capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "reply from nc\n"
        assert nc.wait(timeout=10) == 0
        assert heard.read_text() == "hello from tcpstack\n"
    finally:
        stop_process(nc)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
def test_the_api_opens_to_fd77_1_and_serves_kernel_clients_of_both_families(
        netns: NetNS) -> None:
    kernel = netns.popen([sys.executable, "-c", """
import socket
with socket.socket(socket.AF_INET6) as srv:
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::", 6000)); srv.listen(1); srv.settimeout(20)
    conn, peer = srv.accept()
    line = conn.makefile("rb").readline()
    conn.sendall(line.upper()); conn.close()
"""])
    kernel_udp = netns.popen([sys.executable, "-c", """
import socket
with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
    s.bind(("::", 6001)); s.settimeout(20)
    data, addr = s.recvfrom(2048)
    s.sendto(data.upper(), addr)
"""])
    app = netns.popen([sys.executable, "-u", PEERS / "api_ipv6.py", "6000", "6001"],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = read_line(app, timeout=20)
        assert first.startswith("sockname ('fd77::2', ") and \
            "peername ('fd77::1', 6000, 0, 0)" in first, first
        assert read_line(app) == "reply HELLO FROM TCPSTACK\n"
        udp_line = read_line(app)
        assert udp_line.startswith("udp DATAGRAM FROM TCPSTACK from ('fd77::1', 6001, 0, 0) "
                                   "sockname ('fd77::2', "), udp_line
        assert read_line(app) == "ready\n"
        for address, words in ((STACK6, "over six"), ("10.77.0.2", "over four")):
            result = netns.run([sys.executable, "-c", CLIENT, address, "7000", words])
            assert result.returncode == 0, result.stderr
            assert result.stdout.split()[:-1] == words.split()
        assert read_line(app).startswith("client ('fd77::1', ")
        assert read_line(app).startswith("client ('10.77.0.1', ")
    finally:
        assert stop_process(app) == 0
        stop_process(kernel)
        stop_process(kernel_udp)
    assert kernel.returncode == 0 and kernel_udp.returncode == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["[fd77::2]:7", ":7"])
def test_listen_with_an_ipv6_address_or_none_serves_both_families(
        netns: NetNS, start_stack: StartStack, where: str) -> None:
    stack = start_stack(netns, where, "--echo")
    assert "listening on 10.77.0.2:7 and [fd77::2]:7" in stack.log()
    for address in (STACK6, "10.77.0.2"):
        result = netns.run([sys.executable, "-c", CLIENT, address, "7", "ping"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == "ping"
    stat = netns.run([TCPSTACK, "stat"], timeout=20)
    assert "[fd77::2]:7" in stat.stdout and "[::]:*" in stat.stdout, stat.stdout
    assert stack.stop().get("passive_opens") == 2


@pytest.mark.timeout(60)
def test_an_ipv6_address_without_brackets_is_refused_in_one_line(netns: NetNS) -> None:
    result = netns.run([TCPSTACK, "listen", "fd77::2:80", "--echo"], timeout=20)
    assert result.returncode == 2
    assert "write an IPv6 address in brackets, as [fd77::2]:80" in result.stderr


@pytest.mark.timeout(90)
def test_verbose_log_pcap_and_plot_read_ipv6(netns: NetNS, start_stack: StartStack,
                                             tmp_path: Path) -> None:
    capture = tmp_path / "six.pcap"
    stack = start_stack(netns, "7", "--echo", global_args=("-v", "--pcap", str(capture)))
    result = netns.run([sys.executable, "-c", CLIENT, STACK6, "7", "x" * 3000])
    assert result.returncode == 0, result.stderr
    stack.stop()
    log = stack.log()
    assert f"IP6 {KERNEL6}." in log and f"> {STACK6}.7: Flags [S]" in log, log
    packets = [p for p in rdpcap(str(capture)) if IPv6 in p and TCP in p]
    assert any(p[IPv6].src == STACK6 and str(p[TCP].flags) == "SA" for p in packets)
    assert sum(len(p[TCP].payload) for p in packets if p[IPv6].src == STACK6) == 3000
    png = tmp_path / "six.png"
    plotted = subprocess.run([TCPSTACK, "plot", str(capture), "-o", str(png)],
                             capture_output=True, text=True, timeout=120)
    assert plotted.returncode == 0, plotted.stderr
    # Echo sends as much as it gets: the plot may pick either direction.
    assert re.search(rf"\[{KERNEL6}\]:\d+ > \[{STACK6}\]:7, 3000 bytes|"
                     rf"\[{STACK6}\]:7 > \[{KERNEL6}\]:\d+, 3000 bytes", plotted.stdout), \
        plotted.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


UDP_CLIENT = """
import socket, sys
with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
    s.settimeout(5)
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.send(b"datagram over six")
    try:
        print(s.recv(2048).decode())
    except ConnectionRefusedError:
        print("refused")
"""


@pytest.mark.timeout(60)
def test_udp_over_ipv6_echoes_and_a_closed_port_is_refused(netns: NetNS,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "udp6.log"
    with log.open("wb") as out:
        stack = netns.popen([TCPSTACK, "listen", "--udp", "7", "--echo"], stderr=out)
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            assert stack.poll() is None, log.read_text()
            time.sleep(0.05)
        assert "listening on udp 10.77.0.2:7 and [fd77::2]:7 (echo)" in log.read_text()
        echoed = netns.run([sys.executable, "-c", UDP_CLIENT, STACK6, "7"])
        refused = netns.run([sys.executable, "-c", UDP_CLIENT, STACK6, "9"])
        assert (echoed.stdout, refused.stdout) == ("datagram over six\n", "refused\n"), (
            echoed.stderr + refused.stderr)
    finally:
        assert stop_process(stack) == 0, log.read_text()
    counters = log.read_text().rsplit("counters: ", 1)[1].split()
    assert "udp_in_datagrams=1" in counters and "udp_no_ports=1" in counters, counters
    assert "icmp6_out=1" in counters, counters
