"""What a request target names under `tcpstack listen --http DIR` (services/http.py
_resolve): only files and directories inside the served directory, links followed."""

from __future__ import annotations

import os
from pathlib import Path

from tcpstack.services.http import _resolve


def _site(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "f.txt").write_bytes(b"x" * 7)
    (root / "sub" / "g.html").write_bytes(b"")
    outside = tmp_path / "secret"
    outside.write_bytes(b"no")
    (root / "out").symlink_to(outside)
    (root / "in").symlink_to(root / "f.txt")
    return root.resolve(), outside


def test_a_file_inside_is_found_with_its_size(tmp_path: Path) -> None:
    root, _ = _site(tmp_path)
    found = _resolve(root, "/f.txt?q=1")
    assert found is not None
    assert found[0] == str(root / "f.txt")
    assert found[1].st_size == 7
    assert _resolve(root, "/sub/g%2Ehtml") is not None  # percent-decoded
    link = _resolve(root, "/in")  # a link inside to a file inside: its target
    assert link is not None and link[0] == str(root / "f.txt")


def test_directories_are_found_with_or_without_their_slash(tmp_path: Path) -> None:
    root, _ = _site(tmp_path)
    for target in ("/", "/sub", "/sub/"):
        found = _resolve(root, target)
        assert found is not None
        assert os.path.isdir(found[0])


def test_nothing_outside_the_root_or_missing_or_a_file_with_a_slash(tmp_path: Path) -> None:
    root, _ = _site(tmp_path)
    for target in ("/../secret", "/sub/../../secret", "/out", "/%2E%2E/secret", "/nope",
                   "/f.txt/", "/sub/g.html/x"):
        assert _resolve(root, target) is None, target


def test_a_sibling_whose_name_extends_the_roots_is_outside(tmp_path: Path) -> None:
    root, _ = _site(tmp_path)
    sibling = tmp_path / "site2"
    sibling.mkdir()
    (sibling / "f").write_bytes(b"")
    assert _resolve(root, "/../site2/f") is None
