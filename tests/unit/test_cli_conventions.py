"""The command line behaves as users of tcpdump, nc and ss expect: global options after the
command too, `--version`, and one wording for a bad port in every command. Nothing here
starts a stack: the commands' runners are replaced by recorders."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from collections.abc import Iterator
from typing import Any

import click
import pytest

from tcpstack.cli import app, connect, listen, stat
from tcpstack.cli.app import make_stack
from tcpstack.link.tun import DEFAULT_TXQUEUELEN
from tcpstack.tcp.config import TcpConfig


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

    def fetch(iface: str, wait: float = 0.0) -> Any:
        rec.calls.append(("stat", ({"iface": iface},)))
        raise click.ClickException(f"nothing on {iface}")
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


@pytest.mark.parametrize("args", [
    ["listen", "80", "--echo", "-v"],
    ["-v", "listen", "80", "--echo"],
    ["listen", "-v", "80", "--echo"],
])
def test_verbose_works_before_and_after_listen(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               recorded: Recorded, args: list[str]) -> None:
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert (code, err) == (0, "")
    assert recorded.calls[0][0] == "listen"
    assert recorded.opts["verbose"] is True and recorded.opts["trace"] is True
    assert logging.getLogger("tcpstack").level == logging.DEBUG


def test_every_global_option_can_follow_listen(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               recorded: Recorded) -> None:
    code, _, err = run_main(
        monkeypatch, capsys, "listen", "8080", "--discard", "--iface", "tcps7",
        "--address", "10.9.0.2", "--kernel-address", "10.9.0.1/24", "--mtu", "9000",
        "--txqueuelen", "2000", "--no-offload", "--cc", "newreno", "--nodelay",
        "--no-timestamps", "--msl", "2", "--keepalive", "5,1,2", "--user-timeout", "3",
        "--receive-buffer", "65536", "--receive-buffer-max", "1048576", "--trace", "--pcap",
        "/tmp/x.pcap", "--busy-poll", "20")
    assert (code, err) == (0, ""), err
    opts = recorded.opts
    assert (opts["iface"], opts["address"], opts["kernel_address"], opts["mtu"],
            opts["txqueuelen"], opts["offload"], opts["trace"], opts["verbose"],
            str(opts["pcap"]), opts["busy_poll"]) == (
        "tcps7", "10.9.0.2", "10.9.0.1/24", 9000, 2000, False, True, False, "/tmp/x.pcap",
        20e-6)
    config = opts["config"]
    assert isinstance(config, TcpConfig)
    assert (config.congestion, config.nodelay, config.timestamps, config.msl, config.keepalive,
            config.keepalive_idle, config.keepalive_interval, config.keepalive_count,
            config.user_timeout, config.receive_buffer, config.receive_buffer_max) == (
        "newreno", True, False, 2.0, True, 5.0, 1.0, 2, 3.0, 65536, 1 << 20)


def test_an_option_after_the_command_overrides_the_same_one_before(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        recorded: Recorded) -> None:
    code, _, err = run_main(monkeypatch, capsys, "--iface", "tcps1", "--msl", "5",
                            "listen", "80", "--echo", "--iface", "tcps2")
    assert (code, err) == (0, "")
    assert recorded.opts["iface"] == "tcps2"
    assert recorded.opts["config"].msl == 5.0, "what was not repeated stays"


@pytest.mark.parametrize(("env", "args", "offload"), [
    ("0", [], False),
    ("1", [], True),
    ("0", ["--offload"], True),            # the command line wins over the environment
    ("1", ["listen-after:--no-offload"], False),
])
def test_tcpstack_offload_in_the_environment_sets_the_offload_default(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        recorded: Recorded, env: str, args: list[str], offload: bool) -> None:
    """CI runs the integration suite again with TCPSTACK_OFFLOAD=0 (.ci/run)."""
    monkeypatch.setenv("TCPSTACK_OFFLOAD", env)
    before = [a for a in args if not a.startswith("listen-after:")]
    after = [a.removeprefix("listen-after:") for a in args if a.startswith("listen-after:")]
    code, _, err = run_main(monkeypatch, capsys, *before, "listen", "80", "--echo", *after)
    assert (code, err) == (0, "")
    assert recorded.opts["offload"] is offload


def test_verbose_and_iface_after_connect_and_stat(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str],
                                                  recorded: Recorded) -> None:
    code, _, err = run_main(monkeypatch, capsys, "connect", "10.77.0.1", "5000", "-v",
                            "--timeout", "2")
    assert (code, err) == (0, "")
    assert recorded.opts["verbose"] is True and recorded.opts["trace"] is True
    code, _, err = run_main(monkeypatch, capsys, "stat", "--iface", "tcps3", "-v")
    assert (code, err) == (1, "tcpstack: error: nothing on tcps3\n")
    assert recorded.calls[-1] == ("stat", ({"iface": "tcps3"},))


def test_stack_options_do_not_follow_stat(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str],
                                          recorded: Recorded) -> None:
    code, _, err = run_main(monkeypatch, capsys, "stat", "--mtu", "9000")
    assert code == 2
    assert err == ("tcpstack: error: No such option '--mtu'. (see 'tcpstack stat --help')\n")


def test_verbose_and_quiet_together_are_refused_wherever_they_stand(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        recorded: Recorded) -> None:
    code, _, err = run_main(monkeypatch, capsys, "-v", "listen", "80", "--echo", "-q")
    assert code == 2
    assert err == ("tcpstack: error: choose one of -v/--verbose and -q/--quiet "
                   "(see 'tcpstack listen --help')\n")
    assert recorded.calls == []


def test_version(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(monkeypatch, capsys, "--version")
    assert (code, out, err) == (0, f"tcpstack {importlib.metadata.version('tcpstack')}\n", "")


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
    assert (opts["address"], port, backlog) == ("10.77.0.2", 8080, 4096)


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


def test_txqueuelen_reaches_the_stack_and_defaults_to_a_burst_sized_queue(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        recorded: Recorded) -> None:
    code, _, err = run_main(monkeypatch, capsys, "listen", "80", "--echo")
    assert (code, err) == (0, "")
    assert make_stack(recorded.opts).txqueuelen == DEFAULT_TXQUEUELEN == 10000
    code, _, err = run_main(monkeypatch, capsys, "--txqueuelen", "2000", "listen", "80",
                            "--echo")
    assert (code, err) == (0, "")
    (_, (opts, *_)) = recorded.calls[-1]
    assert make_stack(opts).txqueuelen == 2000
    code, _, err = run_main(monkeypatch, capsys, "listen", "80", "--echo", "--txqueuelen", "0")
    assert code == 2
    assert "'--txqueuelen'" in err and "0 is not in the range" in err


def test_busy_poll_reaches_the_stack_in_seconds_and_is_off_by_default(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        recorded: Recorded) -> None:
    code, _, err = run_main(monkeypatch, capsys, "listen", "80", "--echo")
    assert (code, err) == (0, "")
    assert make_stack(recorded.opts).busy_poll == 0.0
    code, _, err = run_main(monkeypatch, capsys, "--busy-poll", "50", "listen", "80",
                            "--echo")
    assert (code, err) == (0, "")
    (_, (opts, *_)) = recorded.calls[-1]
    assert make_stack(opts).busy_poll == 50e-6
    code, out, err = run_main(monkeypatch, capsys, "listen", "80", "--echo",
                              "--busy-poll", "-1")
    assert (code, out) == (2, "")
    assert err == ("tcpstack: error: Invalid value for '--busy-poll': -1 is not in the "
                   "range 0<=x<=1000000. (see 'tcpstack listen --help')\n")
