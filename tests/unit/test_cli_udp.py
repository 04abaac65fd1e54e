"""`tcpstack listen --udp PORT --echo|--discard`: the flag turns the port into a UDP one; it
serves echo and discard only, with one stack. No stack is started: the runner records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tcpstack.cli import listen
from tests.unit.test_cli_conventions import run_main


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(listen, "_serve_udp", lambda *args: calls.append(args))
    monkeypatch.setattr(listen, "run", lambda _: None)
    monkeypatch.setattr(listen, "_serve", lambda *args: calls.append(("tcp", *args)))
    return calls


@pytest.mark.parametrize(("args", "address", "echo", "port"), [
    (["listen", "--udp", "7", "--echo"], "10.77.0.2", True, 7),
    (["listen", "10.77.0.3:9", "--discard", "--udp"], "10.77.0.3", False, 9),
])
def test_udp_serves_echo_or_discard_on_the_port(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        served: list[tuple[Any, ...]], args: list[str], address: str, echo: bool,
        port: int) -> None:
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert (code, err) == (0, "")
    ((opts, got_echo, got_port),) = served
    assert (opts["address"], got_echo, got_port) == (address, echo, port)


@pytest.mark.parametrize(("args", "message"), [
    (["listen", "--udp", "80", "--http", "{dir}"], "--udp serves --echo or --discard, not --http"),
    (["--workers", "2", "listen", "--udp", "7", "--echo"], "--udp runs one stack"),
    (["listen", "--udp", "7"], "choose exactly one of --echo, --discard, --http DIR"),
])
def test_what_udp_does_not_serve_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        served: list[tuple[Any, ...]], tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = run_main(monkeypatch, capsys, *[a.format(dir=tmp_path) for a in args])
    assert code == 2
    assert err.startswith(f"tcpstack: error: {message}"), err
    assert served == []
