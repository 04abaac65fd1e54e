"""scripts/bench.py's arguments and columns (its measuring needs root and the network, so
only the parts that decide what is measured are tested here), imported by path."""

from __future__ import annotations

import pytest

from tests.unit.script_import import load_script

bench = load_script("bench")


def test_the_compiled_build_runs_with_one_and_two_workers_by_default() -> None:
    args = bench.parse_args([])
    assert (args.workers, args.compiled) == ([1, 2], [1, 2])
    assert bench.parse_args(["--compiled", "none"]).compiled == []
    assert bench.parse_args(["--compiled", "2,1,2"]).compiled == [1, 2]


@pytest.mark.parametrize("value", ["x", "0", "1,,"])
def test_a_bad_compiled_list_is_one_line_and_exit_2(value: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--compiled", value])
    assert exit_info.value.code == 2
    assert "--compiled" in capsys.readouterr().err.splitlines()[-1]


def test_the_compiled_columns_follow_the_plain_ones_and_say_so() -> None:
    ab = bench.targets("ab", [1, 2], [1])
    assert [(t.column, t.workers, t.compiled) for t in ab] == [
        ("t1", 1, False), ("t2", 2, False), ("c1", 1, True), ("kernel", 1, False),
        ("nginx", 1, False)]
    assert [t.column for t in bench.targets("pingpong", [1], [])] == ["t1", "kernel"]
    assert bench.column_title("t2") == "tcpstack, 2 workers"
    assert bench.column_title("c1") == "tcpstack compiled, 1 worker"
    assert bench.column_title("kernel") == "kernel, same app"
