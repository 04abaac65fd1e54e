"""scripts/install-system-deps.sh installs every program the README's tour runs: CI starts on a
fresh machine, and tests/integration/test_readme.py runs the tour there."""

from __future__ import annotations

import re

from ..readme_tour import README, REPO, programs, tour_shell_blocks

INSTALLER = REPO / "scripts" / "install-system-deps.sh"
# Always there: bash's builtins and keywords, coreutils, and the POSIX shell.
_BASE_SYSTEM = frozenset({"cat", "echo", "head", "kill", "sh", "sleep", "tail", "timeout",
                          "wait"})


def _installed_tools() -> set[str]:
    """The tools the installer checks for (`[tool]=package` in its `pkg_for` table)."""
    table = re.search(r"declare -A pkg_for=\((.*?)\)\n", INSTALLER.read_text(), re.DOTALL)
    assert table is not None, f"no pkg_for table in {INSTALLER}"
    return set(re.findall(r"\[([\w.+-]+)\]=", table.group(1)))


def test_every_program_of_the_tour_is_installed_by_the_system_deps_script() -> None:
    used = {name for block in tour_shell_blocks(README.read_text())
            for name in programs(block.text)}
    assert {"ip", "curl", "nc", "ping", "jq", "tcpdump"} <= used  # the tour is found and read
    missing = sorted(name for name in used - _BASE_SYSTEM - _installed_tools()
                     if not name.startswith(".venv/"))
    assert missing == [], (f"the README's tour runs {missing}, which "
                           f"scripts/install-system-deps.sh does not install")


def test_programs_looks_through_netns_exec_and_sh_c_and_skips_comments() -> None:
    script = ("ip netns exec demo sh -c 'nc -l 5000 > got.txt &\n"
              "    echo hello | tcpstack connect 10.77.0.1 5000'  # like nc\n"
              "until ip netns exec demo stat >/dev/null 2>&1; do sleep 0.1; done\n"
              "kill %1; wait\n"
              "tcpdump -nr run.pcap | head   # the #1 tool\n")
    assert programs(script) == ["ip", "sh", "nc", "echo", "tcpstack", "ip", "stat", "sleep",
                                "kill", "wait", "tcpdump", "head"]
