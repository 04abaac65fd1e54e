"""Many connections: 200 one after another, then 20 at once; each with one worker and with
two (`--workers 2`, the kernel spreading the connections over both)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import STACK_ADDRESS, NetNS, sha256_file, stop_process, url

pytestmark = pytest.mark.integration

SEQUENTIAL = 200
CONCURRENT = 20


WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])


@WORKERS
@pytest.mark.timeout(90)
def test_200_sequential_connections(netns: NetNS, start_stack: StartStack, http_root: Path,
                                    random_file: RandomFile, workers: int) -> None:
    expected = random_file(http_root / "small.bin", 4096)
    stack = start_stack(netns, "80", "--http", http_root,
                        global_args=("--workers", str(workers)))

    result = netns.python("http_cycles.py", STACK_ADDRESS, "80", "/small.bin",
                          str(SEQUENTIAL), expected, "60", timeout=75)

    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout)
    assert report["ok"] == SEQUENTIAL, report
    assert report["ports"] == SEQUENTIAL, "every cycle must be a new connection"
    counters = stack.stop()
    assert counters.get("passive_opens") == SEQUENTIAL
    assert counters.get("in_errors", 0) == 0


@WORKERS
@pytest.mark.timeout(90)
def test_20_concurrent_curls(netns: NetNS, start_stack: StartStack, http_root: Path,
                             random_file: RandomFile, tmp_path: Path, workers: int) -> None:
    size = 1 << 20
    expected = random_file(http_root / "mid.bin", size)
    stack = start_stack(netns, "80", "--http", http_root,
                        global_args=("--workers", str(workers)))
    outs = [tmp_path / f"out{i}.bin" for i in range(CONCURRENT)]
    errs = [(tmp_path / f"err{i}.txt").open("wb") for i in range(CONCURRENT)]

    procs = [netns.popen(["curl", "-q", "--noproxy", "*", "-sS", "--max-time", "45",
                          "-o", out, url("mid.bin")], stderr=err)
             for out, err in zip(outs, errs, strict=True)]
    deadline = time.monotonic() + 60
    codes = []
    try:
        for proc in procs:
            codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        pytest.fail(f"curls still running after 60s ({len(codes)} of {CONCURRENT} done)")
    finally:
        for proc in procs:
            stop_process(proc)
        for err in errs:
            err.close()

    stderr = {i: (tmp_path / f"err{i}.txt").read_text() for i in range(CONCURRENT)}
    assert codes == [0] * CONCURRENT, stderr
    digests = [sha256_file(out) for out in outs]
    assert digests == [expected] * CONCURRENT
    counters = stack.stop()
    assert counters.get("passive_opens") == CONCURRENT
