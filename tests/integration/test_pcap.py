"""`--pcap FILE` records every packet in and out (readable while the stack runs), the cwnd
traces land beside it, `tcpstack plot` draws the capture, and `-v` logs each segment."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import TCPSTACK, NetNS, curl, url

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.packet import Packet  # noqa: E402
from scapy.utils import rdpcap  # noqa: E402

pytestmark = pytest.mark.integration

STACK = "10.77.0.2"
KERNEL = "10.77.0.1"


def _tcp(packets: list[Packet]) -> list[Packet]:
    return [p for p in packets if IP in p and TCP in p]


def _has(packets: list[Packet], src: str, flags: str, payload: bool = False) -> bool:
    return any(p[IP].src == src and str(p[TCP].flags) == flags
               and (not payload or len(p[TCP].payload) > 0) for p in packets)


@pytest.mark.timeout(90)
def test_pcap_records_a_curl_download_in_and_out(netns: NetNS, start_stack: StartStack,
                                                 http_root: Path, random_file: RandomFile,
                                                 tmp_path: Path) -> None:
    random_file(http_root / "file.bin", 1_000_000)
    capture = tmp_path / "capture.pcap"
    stack = start_stack(netns, "80", "--http", http_root, global_args=("--pcap", str(capture)))
    fetched = curl(netns, "-sS", "-o", "/dev/null", "-w", "%{http_code}", url("file.bin"))
    assert (fetched.returncode, fetched.stdout) == (0, "200"), fetched.stderr

    # Readable while the stack runs: the records reach the file within a fraction of a second.
    deadline = time.monotonic() + 5
    while True:
        running = _tcp(list(rdpcap(str(capture))))
        if _has(running, STACK, "FA") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert _has(running, KERNEL, "S") and _has(running, STACK, "SA")
    stack.stop()

    packets = _tcp(list(rdpcap(str(capture))))
    assert _has(packets, KERNEL, "S"), "the kernel's SYN"
    assert _has(packets, STACK, "SA"), "our SYN-ACK"
    assert _has(packets, KERNEL, "PA", payload=True), "the GET request"
    assert _has(packets, STACK, "A", payload=True) or _has(packets, STACK, "PA", payload=True)
    assert any(p[IP].src == STACK and p[TCP].flags.F for p in packets), "our FIN"
    assert any(p[IP].src == KERNEL and p[TCP].flags.F for p in packets), "the kernel's FIN"
    sent = sum(len(p[TCP].payload) for p in packets if p[IP].src == STACK)
    assert sent >= 1_000_000, "every byte of the download is in the capture"
    times = [float(p.time) for p in packets]
    assert times == sorted(times)

    sidecar = json.loads(Path(f"{capture}.cwnd.json").read_text())
    (trace,) = [c for c in sidecar["connections"] if c["local"] == f"{STACK}:80"]
    assert trace["peer"].startswith(f"{KERNEL}:") and trace["closed"] is True
    assert trace["samples"], "a 1 MB transfer grows cwnd"
    first = trace["samples"][0][0]
    assert min(times) - 1 <= first <= max(times) + 1, "cwnd times are on the pcap's clock"

    png = tmp_path / "timeseq.png"
    plotted = subprocess.run([TCPSTACK, "plot", str(capture), "-o", str(png)],
                             capture_output=True, text=True, timeout=120)
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{STACK}:80 > {trace['peer']}" in plotted.stdout


@pytest.mark.timeout(60)
def test_unwritable_pcap_is_one_line_and_leaves_nothing(netns: NetNS) -> None:
    result = netns.run([TCPSTACK, "--pcap", "/nonexistent-dir/x.pcap", "listen", "7",
                        "--echo"], timeout=30)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "tcpstack: error: cannot write the capture /nonexistent-dir/x.pcap"), lines
    assert "tcps0" not in netns.run(["ip", "-o", "link"]).stdout


@pytest.mark.timeout(60)
def test_verbose_logs_every_segment_as_a_tcpdump_line(netns: NetNS,
                                                      start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--echo", global_args=("-v",))
    script = ("import socket\n"
              "s = socket.create_connection(('10.77.0.2', 7), timeout=5)\n"
              "s.sendall(b'hello'); s.shutdown(socket.SHUT_WR)\n"
              "data = b''\n"
              "while chunk := s.recv(100):\n    data += chunk\n"
              "print(data.decode())\n")
    echoed = netns.run(["python3", "-c", script], timeout=20)
    assert echoed.stdout.strip() == "hello", echoed.stderr
    stack.stop()
    lines = stack.log().splitlines()
    # As tcpdump's: the local time first, then IP; the SYN-ACK acks the absolute ISN + 1.
    segments = [line[16:] for line in lines if re.match(r"\d\d:\d\d:\d\d\.\d{6} IP ", line)]
    syn = next(line for line in segments if " > 10.77.0.2.7: Flags [S]," in line)
    assert syn.startswith("IP 10.77.0.1.") and "options [mss 1460" in syn and "length 0" in syn
    isn = int(syn.split(", seq ")[1].split(",")[0])
    synack = next(line for line in segments if line.startswith("IP 10.77.0.2.7 > ")
                  and "Flags [S.]" in line)
    assert f", ack {(isn + 1) & 0xFFFFFFFF}, " in synack
    assert any(" > 10.77.0.2.7: Flags [.], ack 1, " in line for line in segments)
    assert any(" > 10.77.0.2.7: Flags [P.], seq 1:6, ack 1, " in line for line in segments)
    assert any(line.startswith("IP 10.77.0.2.7 > ") and "seq 1:6" in line for line in segments)
    assert any(re.fullmatch(r"tcpstack: 10\.77\.0\.1:\d+ SYN_RCVD -> ESTABLISHED", line)
               for line in lines), "-v implies --trace"
    assert not any("EpollSelector" in line for line in lines), "no library debug noise"
