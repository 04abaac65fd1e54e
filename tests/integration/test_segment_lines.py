"""`-v` prints, for each packet of a live run, the line tcpdump prints for the same packet in
the run's `--pcap` capture."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import StartStack
from .netns import NetNS

pytestmark = pytest.mark.integration

_LINE = re.compile(r"(\d\d:\d\d:\d\d\.\d{6}) (IP \S+ > \S+: Flags .*)")


def _tcp_lines(text: str) -> list[tuple[str, str]]:
    """(time, rest) of each TCP line, in order."""
    return [(m[1], m[2]) for m in map(_LINE.fullmatch, text.splitlines()) if m]


def _seconds(clock: str) -> float:
    t = datetime.datetime.strptime(clock, "%H:%M:%S.%f")
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_verbose_lines_are_tcpdumps_lines_for_the_capture(
        netns: NetNS, start_stack: StartStack, tmp_path: Path) -> None:
    capture = tmp_path / "run.pcap"
    stack = start_stack(netns, "7", "--echo", global_args=("-v", "--pcap", str(capture)))
    script = ("import socket\n"
              "s = socket.create_connection(('10.77.0.2', 7), timeout=5)\n"
              "s.sendall(b'hello'); s.shutdown(socket.SHUT_WR)\n"
              "while s.recv(100):\n    pass\n")
    echoed = netns.run(["python3", "-c", script], timeout=20)
    assert echoed.returncode == 0, echoed.stderr
    stack.stop()

    printed = subprocess.run(["tcpdump", "-nr", str(capture)], capture_output=True, text=True,
                             timeout=30, env={**os.environ, "TZ": "UTC"})
    assert printed.returncode == 0, printed.stderr
    theirs = _tcp_lines(printed.stdout)
    # The log's clock is local time: read it as UTC too, by subtracting the local offset.
    ours = _tcp_lines(stack.log())
    assert len(theirs) >= 8, printed.stdout  # handshake, data each way, two FINs and ACKs
    assert [rest for _, rest in ours] == [rest for _, rest in theirs]
    offset = datetime.datetime.now().astimezone().utcoffset()
    assert offset is not None
    for (mine, _), (tcpdumps, _) in zip(ours, theirs, strict=True):
        # Each tap reads the clock itself: the same packet's two times differ by little.
        delta = (_seconds(mine) - offset.total_seconds() - _seconds(tcpdumps)) % 86400
        assert min(delta, 86400 - delta) < 0.05, (mine, tcpdumps)
