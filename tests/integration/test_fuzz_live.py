"""A live stack under tens of thousands of random and mutated packets keeps serving: a
concurrent 50 MB download completes byte for byte, every bad packet is counted and dropped,
and no internal error occurs (issue 12). The packets (tests/peers/fuzz_flood.py) come from
an address nobody owns, so none can belong to the download's connection."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import PEERS, NetNS, sha256_file, slow_download

pytestmark = pytest.mark.integration

SIZE = 50 << 20
PACKETS = 30_000


@pytest.mark.timeout(120)
def test_a_download_survives_a_flood_of_random_and_mutated_packets(
        netns: NetNS, start_stack: StartStack, http_root: Path, random_file: RandomFile,
        tmp_path: Path) -> None:
    expected = random_file(http_root / "blob.bin", SIZE)
    stack = start_stack(netns, "80", "--http", http_root)
    out = tmp_path / "got.bin"
    # A rate limit keeps the download going for the whole flood.
    download = slow_download(netns, "blob.bin", out, "10M")
    flood = netns.run([sys.executable, PEERS / "fuzz_flood.py", "tcps0", str(PACKETS), "12"],
                      timeout=90)
    assert flood.returncode == 0, flood.stderr
    sent = json.loads(flood.stdout)
    assert sum(sent.values()) == PACKETS
    assert download.poll() is None, "the flood outlasted the download: it proved nothing"
    _, err = download.communicate(timeout=100)
    assert download.returncode == 0, err
    assert sha256_file(out) == expected
    counters = stack.stop()
    assert counters.get("internal_errors", 0) == 0
    assert counters.get("in_errors", 0) > PACKETS // 4  # the damaged ones, counted by reason
    assert counters.get("passive_opens", 0) >= 1
