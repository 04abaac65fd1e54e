"""What the README's tour and `make` leave in the checkout stays out of `git status`, and the
documentation's own pictures stay tracked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _ignored(path: str) -> bool:
    # --no-index: judge the patterns alone, whether or not the file is tracked or exists.
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


pytestmark = pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                                reason="needs git and a git checkout")


@pytest.mark.parametrize("path", [
    "run.pcap", "run.pcap.cwnd.json", "run.png", "run.pcap.png", "out/zoom.png", "got.txt",
    ".venv/bin/python", "tcpstack.egg-info/PKG-INFO"])
def test_what_the_tour_leaves_is_ignored(path: str) -> None:
    assert _ignored(path)


@pytest.mark.parametrize("path", [
    "docs/timeseq-example.png", "docs/state-diagram.svg", "README.md", "pyproject.toml",
    "tcpstack/cli/plot.py"])
def test_the_sources_and_the_documentations_pictures_are_not(path: str) -> None:
    assert not _ignored(path)
