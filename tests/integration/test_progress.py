"""`tcpstack connect` draws a progress line on stderr when stderr is a terminal (a
pseudo-terminal here) and the transfer lasts over a second, and only then."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
import time

import pytest

from .netns import PEERS, TCPSTACK, NetNS, clean_env, stop_process

pytestmark = pytest.mark.integration


def _read_all(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO once the last writer of the slave has closed
            return
        if not chunk:
            return
        into.extend(chunk)


def _connect_with_terminal(ns: NetNS, port: int, chunks: int, pause: float,
                           extra: tuple[str, ...] = ()
                           ) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """Run `tcpstack connect` to a kernel count-then-reply server with stderr on a
    pseudo-terminal, feeding `chunks` chunks of 100 kB with `pause` seconds between them.
    Returns the result (stdout captured) and what the terminal showed."""
    server = ns.popen([sys.executable, "-u", PEERS / "kernel_server.py", "count-then-reply",
                       str(port)], stdout=subprocess.PIPE)
    assert server.stdout is not None
    assert server.stdout.readline().strip() == b"ready"
    master, slave = pty.openpty()
    screen = bytearray()
    reader = threading.Thread(target=_read_all, args=(master, screen), daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(ns.argv([TCPSTACK, "connect", *extra, "10.77.0.1", str(port)]),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave,
                                env=clean_env())
        os.close(slave)
        slave = -1
        assert proc.stdin is not None
        for _ in range(chunks):
            proc.stdin.write(os.urandom(100_000))
            proc.stdin.flush()
            time.sleep(pause)
        proc.stdin.close()
        out = proc.stdout.read() if proc.stdout else b""
        proc.wait(timeout=30)
        reader.join(timeout=5)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
        stop_process(server)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, b"")
    return result, screen.decode(errors="replace")


@pytest.mark.timeout(90)
def test_progress_line_is_drawn_and_finalized_on_a_terminal(netns: NetNS) -> None:
    result, screen = _connect_with_terminal(netns, 5100, chunks=20, pause=0.1)
    assert result.returncode == 0, screen
    assert result.stdout.decode().startswith("got 2000000 bytes sha256 "), result.stdout
    # Redrawn in place: carriage return, the line, erase to the end of the line.
    updates = re.findall(r"\rsent ([\d.]+ [kMG]?B), received [\d.]+ [kMG]?B, "
                         r"[\d.]+ [kMG]?B/s, [\d.]+ s\x1b\[K", screen)
    assert len(updates) >= 2, repr(screen)
    final = re.search(r"\rsent 2\.0 MB, received (\d+) B in [\d.]+ s \([\d.]+ [kMG]?B/s\)"
                      r"\x1b\[K\r?\n", screen)
    assert final is not None, repr(screen)
    assert int(final.group(1)) == len(result.stdout)


@pytest.mark.timeout(60)
def test_no_progress_line_for_a_short_transfer_or_with_no_progress(netns: NetNS) -> None:
    _, screen = _connect_with_terminal(netns, 5101, chunks=2, pause=0.0)
    assert "sent" not in screen, repr(screen)
    result, screen = _connect_with_terminal(netns, 5102, chunks=14, pause=0.1,
                                            extra=("--no-progress",))
    assert result.returncode == 0
    assert "sent" not in screen, repr(screen)
