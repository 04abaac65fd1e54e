"""RFC 7323 timestamps with the kernel's TCP as the peer: a client downloads from
`tcpstack listen 80 --http DIR`, and the kernel says how it sees the connection while it
runs: timestamps negotiated (TCP_INFO's tcpi_options, read by the client), and through
`ss -tin` in its namespace segments of 1448 bytes both ways (MSS 1460 less the 12 option
bytes; with --no-timestamps, 1460 and no timestamps). The `ss` of this VM (iproute2 6.1 on
kernel 6.18) prints no option flags (`ts sack`) even for a kernel-to-kernel connection,
hence the client's own TCP_INFO for them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import PEERS, STACK_ADDRESS, NetNS, curl, sha256_file, url

pytestmark = pytest.mark.integration

SIZE = 4 << 20
RATE = "2000000"  # the client reads at 2 MB/s: the connection lives about two seconds


def _ss_info(netns: NetNS, deadline: float) -> str:
    """`ss -tin` of the connection to port 80, once its info shows a received segment
    size (the kernel has then taken data from us)."""
    text = ""
    while time.monotonic() < deadline:
        text = netns.run(["ss", "-Htin", "dst", "10.77.0.2", "dport", "= :80"]).stdout
        if "rcvmss:" in text and "bytes_received:" in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"ss never showed the download: {text!r}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("timestamps", [True, False], ids=["timestamps", "no-timestamps"])
def test_the_kernel_peer_negotiates_timestamps_and_receives_1448_byte_segments(
        netns: NetNS, start_stack: StartStack, http_root: Path, random_file: RandomFile,
        tmp_path: Path, timestamps: bool) -> None:
    expected = random_file(http_root / "blob.bin", SIZE)
    stack = start_stack(netns, "80", "--http", http_root,
                        global_args=() if timestamps else ("--no-timestamps",))
    client = netns.popen([sys.executable, PEERS / "tcp_info_client.py", STACK_ADDRESS, "80",
                          "/blob.bin", RATE], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        info = _ss_info(netns, time.monotonic() + 20)
    finally:
        out, err = client.communicate(timeout=40)
    assert client.returncode == 0, err
    seen = json.loads(out)
    assert (seen["size"], seen["sha256"]) == (SIZE, expected)
    assert (seen["timestamps"], seen["sack"], seen["wscale"]) == (timestamps, True, True)

    payload = 1448 if timestamps else 1460
    assert (seen["snd_mss"], seen["rcv_mss"]) == (payload, payload)
    # What the kernel sends with (our MSS less its options), and the size of what it
    # receives from us (with offload, the size our large segments were cut to).
    assert re.search(rf"\bmss:{payload}\b", info), info
    assert re.search(rf"\brcvmss:{payload}\b", info), info
    counters = stack.stop()
    assert counters.get("passive_opens") == 1
    assert counters.get("paws_rejected", 0) == counters.get("ts_missing_dropped", 0) == 0


@pytest.mark.timeout(90)
def test_a_download_with_timestamps_is_byte_exact(netns: NetNS, start_stack: StartStack,
                                                  http_root: Path, random_file: RandomFile,
                                                  tmp_path: Path) -> None:
    size = 100 << 20
    expected = random_file(http_root / "big.bin", size)
    stack = start_stack(netns, "80", "--http", http_root)
    out = tmp_path / "got.bin"
    result = curl(netns, "-sS", "-o", str(out), "-w", "%{http_code} %{size_download}",
                  url("big.bin"), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"200 {size}"
    assert sha256_file(out) == expected
    counters = stack.stop()
    assert counters.get("in_errors", 0) == counters.get("paws_rejected", 0) == 0
