"""Loss recovery against the kernel's own TCP: curl downloads 20 MB through a link that
drops 1% of the packets each way (`--impair`). Linux's receiver grows its window on nearly
every ACK and sends SACK blocks; with RFC 6675's duplicate ACKs and the tail loss probe the
losses are repaired by fast retransmit, and hardly ever by the 200 ms RTO (before, every
loss waited for it: 14 of 145 retransmissions were timeouts, and the download took 4-7 s)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import NetNS, curl, sha256_file, url

pytestmark = pytest.mark.integration

SIZE = 20_000_000
MAX_RTOS = 5  # the bar for this download


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [7, 8])
def test_a_20_mb_download_at_one_percent_loss_is_repaired_without_timeouts(
        netns: NetNS, start_stack: StartStack, http_root: Path, random_file: RandomFile,
        tmp_path: Path, seed: int) -> None:
    expected = random_file(http_root / "big.bin", SIZE)
    stack = start_stack(netns, "80", "--http", http_root,
                        global_args=("--impair", f"loss=1%,seed={seed}"))
    out = tmp_path / "got.bin"
    began = time.monotonic()
    result = curl(netns, "-sS", "-o", str(out), "-w", "%{http_code}", url("big.bin"),
                  timeout=90)
    took = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert result.stdout == "200"
    assert sha256_file(out) == expected
    counters = stack.stop()
    print(f"20 MB at 1% loss: {took:.2f} s, {counters}")
    # The link really lost packets, and recovery, not the timer, repaired them.
    assert counters.get("sack_recoveries", 0) >= 20
    assert counters.get("fast_retransmits", 0) >= 20
    assert counters.get("rto_timeouts", 0) <= MAX_RTOS, counters
