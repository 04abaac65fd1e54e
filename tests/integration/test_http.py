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


def _headers(head: str) -> tuple[str, dict[str, str]]:
    """The status line and the headers (lower-cased names) of curl's text-mode output."""
    lines = head.strip().split("\n")
    return lines[0], {k.strip().lower(): v.strip()
                      for k, _, v in (line.partition(":") for line in lines[1:])}


@pytest.mark.timeout(60)
def test_get_slash_lists_the_directory_like_python_http_server(
        netns: NetNS, start_stack: StartStack, http_root: Path, random_file: RandomFile,
        tmp_path: Path) -> None:
    random_file(http_root / "b.bin", 10)
    random_file(http_root / "A&<odd> name.txt", 10)
    (http_root / "sub").mkdir()
    random_file(http_root / "sub" / "inner.bin", 10)
    (http_root / "link").symlink_to("b.bin")
    stack = start_stack(netns, "80", "--http", http_root)
    head_file = tmp_path / "head.txt"

    listing = curl(netns, "-sS", "-D", str(head_file), url("/"))
    nested = curl(netns, "-sS", url("/sub/"))
    redirect = curl(netns, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                    url("/sub?x=1"))
    followed = curl(netns, "-sS", "-L", url("/sub"))
    head = curl(netns, "-sS", "-I", url("/"))
    file_with_slash = curl(netns, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                           url("/b.bin/"))

    assert listing.returncode == 0, listing.stderr
    status, headers = _headers(head_file.read_text().replace("\r\n", "\n"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-length"] == str(len(listing.stdout.encode()))
    lines = listing.stdout.splitlines()
    assert "<title>Directory listing for /</title>" in lines
    assert "<h1>Directory listing for /</h1>" in lines
    # Sorted regardless of case; subdirectories end in a slash, symbolic links show an @.
    assert [line for line in lines if line.startswith("<li>")] == [
        '<li><a href="A%26%3Codd%3E%20name.txt">A&amp;&lt;odd&gt; name.txt</a></li>',
        '<li><a href="b.bin">b.bin</a></li>',
        '<li><a href="link">link@</a></li>',
        '<li><a href="sub/">sub/</a></li>']
    assert '<li><a href="inner.bin">inner.bin</a></li>' in nested.stdout.splitlines()
    assert "<h1>Directory listing for /sub/</h1>" in nested.stdout.splitlines()
    assert redirect.stdout == f"301 {url('/sub/?x=1')}", redirect.stderr
    assert followed.stdout == nested.stdout
    head_status, head_headers = _headers(head.stdout)
    assert head_status == "HTTP/1.1 200 OK"
    assert head_headers["content-length"] == headers["content-length"]
    assert file_with_slash.stdout == "404"
    assert stack.stop().get("passive_opens") == 6


@pytest.mark.timeout(60)
def test_get_slash_serves_index_html_rather_than_a_listing(
        netns: NetNS, start_stack: StartStack, http_root: Path, random_file: RandomFile,
        tmp_path: Path) -> None:
    page = "<!doctype html><p>home</p>\n"
    (http_root / "index.html").write_text(page)
    (http_root / "docs").mkdir()
    (http_root / "docs" / "index.htm").write_text("docs\n")
    random_file(http_root / "other.bin", 10)
    stack = start_stack(netns, "80", "--http", http_root)

    home = curl(netns, "-sS", "-w", "\n%{content_type}", url("/"))
    docs = curl(netns, "-sS", url("/docs/"))

    assert home.returncode == 0, home.stderr
    assert home.stdout == page + "\ntext/html"
    assert docs.stdout == "docs\n"
    assert stack.stop().get("passive_opens") == 2
