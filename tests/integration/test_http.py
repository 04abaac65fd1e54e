"""curl against `tcpstack listen 80 --http DIR`: whole files byte for byte, 404, HEAD."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import RandomFile, StartStack
from .netns import NetNS, curl, sha256_file, url

pytestmark = pytest.mark.integration

MB = 1 << 20


@pytest.mark.timeout(90)
@pytest.mark.parametrize("size", [1 * MB, 100 * MB], ids=["1MB", "100MB"])
def test_curl_fetches_file_intact(netns: NetNS, start_stack: StartStack, http_root: Path,
                                  random_file: RandomFile, tmp_path: Path, size: int) -> None:
    expected = random_file(http_root / "blob.bin", size)
    stack = start_stack(netns, "80", "--http", http_root)
    out = tmp_path / "got.bin"

    result = curl(netns, "-sS", "-o", str(out), "-w", "%{http_code} %{size_download}",
                  url("blob.bin"), timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"200 {size}"
    assert out.stat().st_size == size
    assert sha256_file(out) == expected
    counters = stack.stop()
    assert counters.get("passive_opens") == 1
    assert counters.get("in_errors", 0) == 0


@pytest.mark.timeout(60)
def test_missing_file_is_404(netns: NetNS, start_stack: StartStack, http_root: Path,
                             random_file: RandomFile) -> None:
    random_file(http_root / "present.bin", 1000)
    stack = start_stack(netns, "80", "--http", http_root)

    missing = curl(netns, "-sS", "-o", "/dev/null", "-w", "%{http_code}", url("absent.bin"))
    present = curl(netns, "-sS", "-o", "/dev/null", "-w", "%{http_code}", url("present.bin"))
    escape = curl(netns, "-sS", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                  url("../../../../etc/passwd"))

    assert (missing.returncode, missing.stdout) == (0, "404"), missing.stderr
    assert (present.returncode, present.stdout) == (0, "200"), present.stderr
    assert (escape.returncode, escape.stdout) == (0, "404"), escape.stderr
    assert stack.stop().get("passive_opens") == 3


@pytest.mark.timeout(60)
def test_head_shows_content_length(netns: NetNS, start_stack: StartStack, http_root: Path,
                                   random_file: RandomFile) -> None:
    size = 123_457
    random_file(http_root / "page.bin", size)
    stack = start_stack(netns, "80", "--http", http_root)

    result = curl(netns, "-sS", "-I", "-w", "%{size_download}", url("page.bin"))

    assert result.returncode == 0, result.stderr
    # Text mode turned the CRLFs into newlines.
    head, _, downloaded = result.stdout.rpartition("\n\n")
    lines = head.split("\n")
    assert re.fullmatch(r"HTTP/1\.1 200 \S.*", lines[0]), lines[0]
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    assert headers.get("content-length") == str(size), head
    assert downloaded == "0", "HEAD must not carry a body"
    assert stack.stop().get("passive_opens") == 1
