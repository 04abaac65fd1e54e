"""Blind injection (RFC 5961): an off-path attacker who knows the 4-tuple of a running
download sweeps the sequence space with RSTs, SYNs and data. The download completes byte for
byte; what lands in the window draws challenge ACKs, within the stack's rate limit, and
nothing resets or corrupts the connection."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import KERNEL_ADDRESS, PEERS, STACK_ADDRESS, NetNS, sha256_file, slow_download

pytestmark = pytest.mark.integration

SIZE = 20 << 20
SEGMENTS = 30_000


def _client_port(ns: NetNS, timeout: float = 10.0) -> int:
    """The kernel-side port of the one connection to the stack's port 80."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ns.run(["ss", "-Htn", "state", "established", "dst", f"{STACK_ADDRESS}:80"]).stdout
        found = re.findall(rf"{re.escape(KERNEL_ADDRESS)}:(\d+)", out)
        if found:
            return int(found[0])
        time.sleep(0.05)
    raise AssertionError("the download's connection never showed in ss")


@pytest.mark.timeout(120)
def test_a_sweep_of_blind_rsts_syns_and_data_neither_resets_nor_corrupts_a_download(
        netns: NetNS, start_stack: StartStack, http_root: Path, random_file: RandomFile,
        tmp_path: Path) -> None:
    expected = random_file(http_root / "blob.bin", SIZE)
    stack = start_stack(netns, "80", "--http", http_root)
    out = tmp_path / "got.bin"
    download = slow_download(netns, "blob.bin", out, "4M")
    port = _client_port(netns)
    started = time.monotonic()
    attack = netns.run([sys.executable, PEERS / "blind_inject.py", "tcps0", KERNEL_ADDRESS,
                        str(port), STACK_ADDRESS, "80", str(SEGMENTS), "5"], timeout=90)
    seconds = time.monotonic() - started
    assert attack.returncode == 0, attack.stderr
    assert sum(json.loads(attack.stdout).values()) == SEGMENTS
    assert download.poll() is None, "the attack outlasted the download: it proved nothing"
    _, err = download.communicate(timeout=100)
    assert download.returncode == 0, err
    assert sha256_file(out) == expected
    counters = stack.stop()
    assert counters.get("estab_resets", 0) == 0 and counters.get("internal_errors", 0) == 0
    challenges = counters.get("challenge_acks", 0)
    # RSTs and SYNs in the window are challenged (RFC 5961 3.2, 4.2), as are data segments
    # whose ACK is too old (5.2); each second allows 1000 on average, 1500 at most. A
    # guessed TSval older than TS.Recent fails PAWS first (RFC 7323 5).
    assert challenges > 0 and counters.get("paws_rejected", 0) > 0
    assert challenges <= 1500 * (int(seconds) + 2)
