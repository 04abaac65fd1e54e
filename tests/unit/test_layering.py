"""Each layer imports only the layers below it (docs/ARCHITECTURE.md): link -> net -> tcp ->
stack -> io -> api -> services -> cli, with udp beside tcp and analysis (offline captures)
beside services."""

from __future__ import annotations

import ast
from pathlib import Path

import tcpstack

ROOT = Path(tcpstack.__file__).parent
ORDER = {"link": 0, "net": 1, "tcp": 2, "udp": 2, "stack": 3, "io": 4, "api": 5,
         "services": 6, "analysis": 6, "cli": 7}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tcpstack" and parts[1] in ORDER \
        else None


def _upward_imports() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        own = _layer(module)
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                     [alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [])
            for name in names:
                other = _layer(name)
                if other is not None and ORDER[other] > ORDER[own]:
                    found.append(f"{module} imports {name}")
    return found


def test_no_layer_imports_one_above_it() -> None:
    assert _layer("tcpstack.tcp.connection") == "tcp"  # the walk sees what it checks
    assert _upward_imports() == []
