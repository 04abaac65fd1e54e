"""`tcpstack serve`, `up`, `down` and `--attach` as command lines, without a stack: what each
would run with, and the one-line errors before anything starts (the runners are replaced by
recorders)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpstack.cli import app, connect, daemon, listen, serve
from tcpstack.services.datagram import UdpDiscard, UdpEcho


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             *args: str) -> tuple[int, str, str]:
    """`tcpstack ARGS` through the real entry point: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tcpstack", *args])
    with pytest.raises(SystemExit) as info:
        app.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """What serve, up, listen --attach and connect --attach would have run."""
    recorded: list[tuple[str, tuple[Any, ...]]] = []

    def recorder(name: str) -> Any:
        def fake(*args: Any) -> None:
            recorded.append((name, args))
        return fake

    monkeypatch.setattr(serve, "_serve", recorder("serve"))
    monkeypatch.setattr(serve, "run", lambda _: None)
    monkeypatch.setattr(daemon, "_up", recorder("up"))
    monkeypatch.setattr(daemon, "run", lambda _: None)
    monkeypatch.setattr(listen, "serve_attached", recorder("listen --attach"))
    monkeypatch.setattr(listen, "serve_udp_attached", recorder("listen --udp --attach"))
    monkeypatch.setattr(listen, "run", lambda _: None)
    monkeypatch.setattr(connect, "connect_attached", recorder("connect --attach"))
    monkeypatch.setattr(connect, "run", lambda _: None)
    level = logging.getLogger("tcpstack").level
    yield recorded
    logging.getLogger("tcpstack").setLevel(level)


def test_serve_takes_each_service_repeatedly(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             calls: list[tuple[str, tuple[Any, ...]]],
                                             tmp_path: Path) -> None:
    code, _, err = run_main(monkeypatch, capsys, "serve", "--echo", "7", "--discard", "9",
                            "--http", f"80:{tmp_path}", "--echo", "7007", "--backlog", "64",
                            "--udp-echo", "7", "--udp-echo", "9")
    assert (code, err) == (0, "")
    ((name, (opts, services, backlog, udp)),) = calls
    assert name == "serve" and backlog == 64 and opts["iface"] == "tcps0"
    assert [(kind, port) for kind, port, _ in services] == [
        ("echo", 7), ("echo", 7007), ("discard", 9), ("http", 80)]
    assert [(kind, port) for kind, port, _ in udp] == [("udp echo", 7), ("udp echo", 9)]


@pytest.mark.parametrize(("args", "message"), [
    ([], "give at least one service: --echo PORT, --discard PORT, --http PORT:DIR or "
         "--udp-echo PORT"),
    (["--echo", "7", "--discard", "7"], "port 7 is given to more than one service"),
    (["--udp-echo", "7", "--udp-echo", "7"], "UDP port 7 is given to more than one service"),
    (["--http", "80"], "Invalid value for '--http': '80' is not PORT:DIR (e.g. 80:./docs)"),
    (["--http", "80:/no/such/dir"], "Invalid value for '--http': '/no/such/dir' is not a "
                                    "directory"),
    (["--echo", "0"], "Invalid value for '--echo': port 0 is out of range 1-65535"),
    (["--echo", "7", "--workers", "2"], "serve runs one stack: --workers 1"),
])
def test_serve_refuses_what_cannot_work_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        calls: list[tuple[str, tuple[Any, ...]]], args: list[str], message: str) -> None:
    code, _, err = run_main(monkeypatch, capsys, "serve", *args)
    assert (code, err) == (2, f"tcpstack: error: {message} (see 'tcpstack serve --help')\n")
    assert calls == []


def test_up_resolves_its_group_and_keeps_the_global_options(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        calls: list[tuple[str, tuple[Any, ...]]]) -> None:
    code, _, err = run_main(monkeypatch, capsys, "up", "--group", "root", "--iface", "tcps3",
                            "--msl", "2")
    assert (code, err) == (0, "")
    ((name, (opts, gid, group)),) = calls
    assert (name, gid, group, opts["iface"], opts["config"].msl) == ("up", 0, "root", "tcps3",
                                                                     2.0)


@pytest.mark.parametrize(("args", "message"), [
    (["--group", "no-such-group-here"], "Invalid value for '--group': no group named "
                                        "'no-such-group-here' (see getent group)"),
    (["--workers", "2"], "the daemon runs one stack: --workers 1"),
])
def test_up_refuses_what_cannot_work_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        calls: list[tuple[str, tuple[Any, ...]]], args: list[str], message: str) -> None:
    code, _, err = run_main(monkeypatch, capsys, "up", *args)
    assert (code, err) == (2, f"tcpstack: error: {message} (see 'tcpstack up --help')\n")
    assert calls == []


def test_attach_runs_the_service_and_relay_on_the_daemons_interface(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        calls: list[tuple[str, tuple[Any, ...]]]) -> None:
    assert run_main(monkeypatch, capsys, "listen", "10.77.0.2:7", "--echo", "--attach",
                    "--iface", "tcps4", "--backlog", "9")[:2] == (0, "")
    assert run_main(monkeypatch, capsys, "connect", "10.77.0.1", "5000", "--attach",
                    "--timeout", "3", "--no-progress")[:2] == (0, "")
    (listen_name, listen_args), (connect_name, connect_args) = calls
    assert listen_name == "listen --attach"
    iface, address, _, port, backlog = listen_args
    assert (iface, address, port, backlog) == ("tcps4", "10.77.0.2", 7, 9)
    assert (connect_name, connect_args) == ("connect --attach",
                                            ("tcps0", "10.77.0.1", 5000, 3.0, False))


def test_listen_udp_with_attach_serves_udp_on_the_daemons_interface(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        calls: list[tuple[str, tuple[Any, ...]]]) -> None:
    assert run_main(monkeypatch, capsys, "listen", "--udp", "7", "--echo", "--attach",
                    "--iface", "tcps4")[:2] == (0, "")
    assert run_main(monkeypatch, capsys, "listen", "--udp", "[fd77::2]:9", "--discard",
                    "--attach")[:2] == (0, "")
    assert calls == [("listen --udp --attach", ("tcps4", None, UdpEcho, "echo", 7)),
                     ("listen --udp --attach", ("tcps0", "fd77::2", UdpDiscard, "discard",
                                                9))]
    code, _, err = run_main(monkeypatch, capsys, "listen", "--udp", "7", "--http", ".",
                            "--attach")
    assert (code, err) == (2, "tcpstack: error: --udp serves --echo or --discard, not --http "
                              "(see 'tcpstack listen --help')\n")
    assert len(calls) == 2
