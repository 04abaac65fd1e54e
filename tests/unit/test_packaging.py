"""pyproject.toml declares its license the way current setuptools wants (PEP 639: an SPDX
expression, not a table, which setuptools warns about) and asks for a setuptools that reads
it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_license_is_an_spdx_string() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["license"] == "MIT"


def test_the_build_needs_a_setuptools_that_reads_spdx_licenses() -> None:
    requires = tomllib.loads(PYPROJECT.read_text())["build-system"]["requires"]
    (setuptools,) = [Requirement(r) for r in requires if Requirement(r).name == "setuptools"]
    # setuptools 77.0.0 is the first to accept `license = "SPDX"` (and not warn about it).
    assert "77.0.0" in setuptools.specifier
    assert not setuptools.specifier.contains("76.1.0")
