"""The command line behaves as users of tcpdump, nc and ss expect: one wording for a bad port
in every command. Nothing here starts a stack: the commands' runners are replaced by
recorders."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tcpstack.cli import app, connect, listen, stat


class Recorded:
    """What a command would have run with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    @property
    def opts(self) -> dict[str, Any]:
        (_, args), = self.calls
        value: dict[str, Any] = args[0]
        return value


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    """`listen` and `connect` record their settings instead of starting a stack; `stat`
    records the interface it would query and finds no stack there."""
    rec = Recorded()

    def runner(name: str) -> Any:
        def fake(*args: Any) -> None:
            rec.calls.append((name, args))
        return fake

    monkeypatch.setattr(listen, "_serve", runner("listen"))
    monkeypatch.setattr(listen, "run", lambda _: None)
    monkeypatch.setattr(connect, "_connect", runner("connect"))
    monkeypatch.setattr(connect, "run", lambda _: None)

    def fetch(iface: str) -> Any:
        rec.calls.append(("stat", ({"iface": iface},)))
        raise app.CommandFailed(f"nothing on {iface}")
    monkeypatch.setattr(stat, "_fetch", fetch)
    tcpstack_log = logging.getLogger("tcpstack")
    level = tcpstack_log.level
    yield rec
    tcpstack_log.setLevel(level)


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             *args: str) -> tuple[int, str, str]:
    """`tcpstack ARGS` through the real entry point: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tcpstack", *args])
    with pytest.raises(SystemExit) as info:
        app.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_listen_usage_shows_the_address_form(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(monkeypatch, capsys, "listen", "--help")
    assert code == 0
    assert out.splitlines()[0] == "Usage: tcpstack listen [OPTIONS] [ADDR:]PORT"


def test_listen_takes_addr_port(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str], recorded: Recorded) -> None:
    code, _, err = run_main(monkeypatch, capsys, "listen", "10.77.0.2:8080", "--echo")
    assert (code, err) == (0, "")
    (_, (opts, _handler, port, backlog)), = recorded.calls
    assert (opts["address"], port, backlog) == ("10.77.0.2", 8080, 128)


# The same bad port, the same words after "Invalid value for '...': ", whatever the command.
BAD_PORTS = [("70000", "port 70000 is out of range 1-65535"),
             ("0", "port 0 is out of range 1-65535"),
             ("http", "'http' is not a port number (1-65535)")]


@pytest.mark.parametrize(("port", "message"), BAD_PORTS)
@pytest.mark.parametrize(("command", "hint"), [
    (["listen", "{}", "--echo"], "[ADDR:]PORT"),
    (["listen", "10.77.0.2:{}", "--echo"], "[ADDR:]PORT"),
    (["connect", "10.77.0.1", "{}"], "PORT"),
    (["plot", "{capture}", "--conn", "10.77.0.1:{}"], "--conn"),
])
def test_a_bad_port_is_worded_the_same_in_every_command(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        recorded: Recorded, tmp_path: Any, command: list[str], hint: str, port: str,
        message: str) -> None:
    capture = tmp_path / "empty.pcap"
    capture.write_bytes(b"")
    args = [arg.replace("{}", port).replace("{capture}", str(capture)) for arg in command]
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert (code, out) == (2, "")
    assert err == (f"tcpstack: error: Invalid value for '{hint}': {message} "
                   f"(see 'tcpstack {command[0]} --help')\n")
    assert recorded.calls == []
