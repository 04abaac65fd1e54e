"""docs/ holds the state diagram rendered from the current table in tcp/state.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tcpstack.tcp.state import TRANSITIONS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "render_state_diagram.py"


def test_rendered_state_diagram_matches_the_table() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_transition_of_the_table_is_an_edge_of_the_diagram() -> None:
    dot = (SCRIPT.parents[1] / "docs" / "state-diagram.dot").read_text()
    for (state, trigger), (new, _) in TRANSITIONS.items():
        edge = next((line for line in dot.splitlines()
                     if line.strip().startswith(f"{state.name} -> {new.name} ")), None)
        assert edge is not None, f"no edge {state} -> {new}"
        assert str(trigger) in edge, f"edge {state} -> {new} lacks '{trigger}'"
