"""The shape issue 10 asked of the TCP core, kept: parts that own their state, not one object
of many attributes, and methods short enough to read as the RFC's steps."""

from __future__ import annotations

import ast
from pathlib import Path

import tcpstack.tcp

TCP_DIR = Path(tcpstack.tcp.__file__).parent
MAX_ATTRIBUTES = 25
MAX_FUNCTION_LINES = 60


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(TCP_DIR)), ast.parse(path.read_text()))
            for path in sorted(TCP_DIR.rglob("*.py"))]


def _instance_attributes(cls: ast.ClassDef) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(cls):
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name) and node.value.id == "self"):
            names.add(node.attr)
    return names


def test_no_class_in_the_core_has_more_than_25_attributes() -> None:
    sizes = {f"{module}:{node.name}": len(_instance_attributes(node))
             for module, tree in _modules() for node in ast.walk(tree)
             if isinstance(node, ast.ClassDef)}
    assert sizes["connection.py:Connection"] > 0  # the walk sees what it measures
    assert {name: n for name, n in sizes.items() if n > MAX_ATTRIBUTES} == {}


def test_no_function_in_the_core_is_over_60_lines() -> None:
    lengths = {f"{module}:{node.name}": (node.end_lineno or node.lineno) - node.lineno + 1
               for module, tree in _modules() for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef)}
    assert lengths["connection.py:receive"] > 1
    assert {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES} == {}


def test_the_connection_is_composed_not_inherited() -> None:
    """Connection's parts are attributes of their own classes; no core class inherits from
    another core class except the congestion controllers from their one interface."""
    core_classes = {node.name for _, tree in _modules() for node in ast.walk(tree)
                    if isinstance(node, ast.ClassDef)}
    inheriting = sorted(
        f"{node.name}({base.id})" for _, tree in _modules() for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) for base in node.bases
        if isinstance(base, ast.Name) and base.id in core_classes)
    assert inheriting == ["Cubic(CongestionControl)", "NewReno(CongestionControl)"]
