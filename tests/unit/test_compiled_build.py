"""Which build the tests run against: the pure-Python tree (`make test`), or the copy of
scripts/build_compiled.py, whose `--check` sets TCPSTACK_EXPECT_COMPILED. Either way the
tests must import the build they claim to test: no extension left in the source tree may
shadow a .py there, and the compiled copy must not fall back to its sources."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from tests.unit.script_import import load_script

build_compiled = load_script("build_compiled")

EXPECT_COMPILED = os.environ.get("TCPSTACK_EXPECT_COMPILED") == "1"
TREE = Path(importlib.import_module("tcpstack").__file__ or "").resolve().parent.parent


@pytest.mark.parametrize("rel", build_compiled.compiled_modules(TREE))
def test_each_hot_module_is_the_build_under_test(rel: str) -> None:
    module = importlib.import_module(rel.removesuffix(".py").replace("/", "."))
    origin = Path(module.__file__ or "")
    assert origin.suffix == (".so" if EXPECT_COMPILED else ".py"), origin


def test_the_modules_left_interpreted_stay_python() -> None:
    for rel in sorted(build_compiled.LEFT_INTERPRETED):
        module = importlib.import_module(rel.removesuffix(".py").replace("/", "."))
        assert Path(module.__file__ or "").suffix == ".py"


def test_the_list_covers_the_core() -> None:
    modules = build_compiled.compiled_modules(TREE)
    assert "tcpstack/stack.py" in modules
    assert "tcpstack/tcp/connection.py" in modules
    assert "tcpstack/tcp/congestion/cubic.py" in modules
    assert not set(modules) & build_compiled.LEFT_INTERPRETED
