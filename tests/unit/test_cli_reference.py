"""docs/CLI.md is the commands' current help, rendered by scripts/render_cli_reference.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tcpstack.cli import cli

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "render_cli_reference.py"


def test_cli_reference_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_command_has_a_section() -> None:
    text = (SCRIPT.parents[1] / "docs" / "CLI.md").read_text()
    assert "## tcpstack\n" in text
    for name in cli.commands:  # type: ignore[attr-defined]
        assert f"## tcpstack {name}\n" in text, name
