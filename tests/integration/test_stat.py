"""`tcpstack stat` reads a running stack's control socket: connections in each state, the
listeners, and counters that move with what happens on the wire."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import StartStack
from .netns import PEERS, TCPSTACK, NetNS, clean_env, stop_process

pytestmark = pytest.mark.integration

RUN_DIR = Path("/run/tcpstack")


def control_socket(ns: NetNS, iface: str = "tcps0") -> Path:
    # /run/netns/NAME is a bind mount of the namespace: its inode is the namespace's.
    return RUN_DIR / f"net-{os.stat(f'/run/netns/{ns.name}').st_ino}-{iface}.sock"


def stat(ns: NetNS, *args: str, iface: str = "tcps0") -> subprocess.CompletedProcess[str]:
    return ns.run([TCPSTACK, "--iface", iface, "stat", *args], timeout=20)


def snapshot(ns: NetNS) -> dict[str, Any]:
    result = stat(ns, "--json")
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def counters(ns: NetNS) -> dict[str, int]:
    result = stat(ns, "--counters", "--json")
    assert result.returncode == 0, result.stderr
    value: dict[str, int] = json.loads(result.stdout)
    return value


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Call `probe` until it returns something true (bounded); return that."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def connections_in(ns: NetNS, state: str) -> list[dict[str, Any]]:
    return [c for c in snapshot(ns)["connections"] if c["state"] == state]


def the_connection_in(ns: NetNS, state: str, timeout: float = 5.0) -> dict[str, Any]:
    """The one connection in `state`, waiting (bounded) for it to get there: a peer's
    "closed" line may come a pass before the stack's last state change."""
    deadline = time.monotonic() + timeout
    while True:
        conns = snapshot(ns)["connections"]
        matching = [c for c in conns if c["state"] == state]
        if len(matching) == 1 or time.monotonic() > deadline:
            assert len(matching) == 1, f"not one connection in {state}: {conns}"
            return matching[0]
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_stat_without_a_stack_is_one_line_and_exit_1(netns: NetNS) -> None:
    result = stat(netns)
    assert result.returncode == 1
    path = control_socket(netns)
    # A namespace's inode may be reused: a stack killed in an earlier namespace with the same
    # inode may have left its socket behind, and then that is what stat says.
    assert result.stderr.strip() in (
        f"tcpstack: error: no tcpstack running on tcps0 in this network namespace "
        f"(no control socket at {path})",
        f"tcpstack: error: no tcpstack running on tcps0 in this network namespace "
        f"(stale control socket at {path}, left by a stack that was killed)")
    assert result.stdout == ""


@pytest.mark.timeout(90)
def test_stat_shows_established_connection_with_growing_byte_counts(
        netns: NetNS, start_stack: StartStack) -> None:
    start_stack(netns, "5000", "--discard")
    # The sender runs until stopped (SIGTERM, below), so the flow outlasts every look at
    # it however slow the machine: a 3 s sender once ended before `stat` ran.
    sender = netns.popen([sys.executable, "-u", PEERS / "slow_sender.py", "5000", "60"],
                         stdout=subprocess.PIPE)
    assert sender.stdout is not None
    assert sender.stdout.readline().strip() == b"connected"

    first = wait_for("an ESTABLISHED connection with bytes in",
                     lambda: [c for c in connections_in(netns, "ESTABLISHED")
                              if c["bytes_in"] > 0])[0]
    time.sleep(0.6)
    (second,) = [c for c in connections_in(netns, "ESTABLISHED") if c["peer"] == first["peer"]]
    assert first["local"] == "10.77.0.2:5000"
    assert first["peer"].startswith("10.77.0.1:")
    assert second["bytes_in"] > first["bytes_in"]
    assert second["segs_in"] > first["segs_in"]
    assert second["segs_out"] >= first["segs_out"] > 0
    assert second["rto_ms"] > 0 and second["cwnd"] > 0
    assert second["rtt_ms"] is None or second["rtt_ms"] >= 0

    snap = snapshot(netns)
    assert snap["version"] == 1 and snap["iface"] == "tcps0"
    assert snap["listeners"] == [{"state": "LISTEN", "local": "10.77.0.2:5000", "peer": "*:*",
                                  "port": 5000, "half_open": 0, "backlog": 4096,
                                  "syn_queue": 0, "accept_queue": 0,
                                  "local6": "[fd77::2]:5000"}]
    table = stat(netns)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert any(line.split()[:1] == ["LISTEN"] and "10.77.0.2:5000" in line for line in lines)
    assert any(line.split()[:1] == ["ESTABLISHED"] and first["peer"] in line for line in lines)
    assert "Recv-Q" in table.stdout and "cwnd" in table.stdout
    sender.terminate()
    assert sender.wait(timeout=30) == 0


KERNEL_SERVER = PEERS / "kernel_server.py"


@pytest.mark.timeout(90)
def test_stat_shows_time_wait_after_an_active_close(netns: NetNS) -> None:
    server = netns.popen([sys.executable, "-u", KERNEL_SERVER, "count-then-reply", "5001"],
                         stdout=subprocess.PIPE)
    assert server.stdout is not None
    assert server.stdout.readline().strip() == b"ready"
    closer = netns.popen([sys.executable, "-u", PEERS / "active_close.py", "5001", "5"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert closer.stdout is not None
    line = closer.stdout.readline().decode()
    assert line.startswith("closed got 1000 bytes"), line + closer.stdout.read(4000).decode()

    conn = the_connection_in(netns, "TIME_WAIT")
    assert conn["peer"] == "10.77.0.1:5001"
    assert conn["local"].startswith("10.77.0.2:")
    assert conn["bytes_out"] == 1000 and conn["send_q"] == 0
    assert "TIME_WAIT" in stat(netns).stdout

    path = control_socket(netns)
    assert path.exists()
    assert stop_process(closer) == 0
    assert not path.exists(), "the control socket must go with the stack"
    stop_process(server)


@pytest.mark.timeout(90)
def test_stat_shows_syn_rcvd_while_a_handshake_is_held_open(
        netns: NetNS, start_stack: StartStack) -> None:
    start_stack(netns, "80", "--discard")
    sent = netns.python("syn_from.py", "tcps0", "10.77.0.9", "41000", "80", timeout=20)
    assert sent.returncode == 0, sent.stderr

    (conn,) = wait_for("a SYN_RCVD connection", lambda: connections_in(netns, "SYN_RCVD"))
    assert conn["peer"] == "10.77.0.9:41000"
    assert conn["local"] == "10.77.0.2:80"
    (listener,) = snapshot(netns)["listeners"]
    assert (listener["half_open"], listener["syn_queue"], listener["accept_queue"]) == (1, 1, 0)


def _kernel_connects(ns: NetNS, port: int) -> subprocess.CompletedProcess[str]:
    script = ("import socket, sys\n"
              f"try:\n    s = socket.create_connection(('10.77.0.2', {port}), timeout=5)\n"
              "except ConnectionRefusedError:\n    print('refused'); sys.exit(0)\n"
              "s.close(); print('connected')\n")
    return ns.run([sys.executable, "-c", script], timeout=20)


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after
            if after.get(k, 0) != before.get(k, 0)}


@pytest.mark.timeout(90)
def test_counters_move_with_handshake_refusal_and_bad_checksums(
        netns: NetNS, start_stack: StartStack) -> None:
    start_stack(netns, "80", "--discard")
    before = counters(netns)
    assert before["passive_opens"] == 0 and "retrans_segs" in before
    assert _kernel_connects(netns, 80).stdout.strip() == "connected"
    after = wait_for("passive_opens +1",
                     lambda: (c := counters(netns))["passive_opens"] == 1 and c)
    assert after["segs_in"] > before["segs_in"]

    before = counters(netns)
    assert _kernel_connects(netns, 81).stdout.strip() == "refused"
    after = counters(netns)
    assert after["rst_out"] - before["rst_out"] == 1, _delta(before, after)
    assert after["passive_opens"] == before["passive_opens"]

    before = counters(netns)
    injected = netns.python("inject.py", "tcps0", "bad_tcp_checksum:1", "bad_ip_checksum:1",
                            timeout=20)
    assert injected.returncode == 0, injected.stderr
    after = wait_for("the bad checksums counted",
                     lambda: (c := counters(netns))["in_errors"] - before["in_errors"] == 2
                     and c)
    assert after["tcp_bad_checksum"] - before["tcp_bad_checksum"] == 1, _delta(before, after)
    assert after["ip_bad_checksum"] - before["ip_bad_checksum"] == 1, _delta(before, after)

    text = stat(netns, "--counters")
    assert text.returncode == 0, text.stderr
    rows = dict(line.split() for line in text.stdout.splitlines()[1:])
    assert rows["passive_opens"] == "1" and "attempt_fails" not in rows  # zeros hidden
    assert "attempt_fails" in stat(netns, "--counters", "--zeros").stdout


@pytest.mark.timeout(60)
def test_watch_prints_a_json_line_per_refresh_until_interrupted(
        netns: NetNS, start_stack: StartStack) -> None:
    start_stack(netns, "80", "--discard")
    watcher = netns.popen([TCPSTACK, "stat", "--watch", "0.2", "--json", "--counters"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, err
    lines = out.decode().splitlines()
    assert len(lines) >= 3
    assert all("segs_in" in json.loads(line) for line in lines)


@pytest.mark.timeout(60)
def test_a_killed_stack_leaves_a_stale_socket_the_next_one_replaces(
        netns: NetNS, start_stack: StartStack) -> None:
    first = start_stack(netns, "80", "--discard")
    path = control_socket(netns)
    assert path.exists()
    first.proc.kill()
    first.proc.wait(timeout=10)
    assert path.exists()
    result = stat(netns)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"tcpstack: error: no tcpstack running on tcps0 in this network namespace "
        f"(stale control socket at {path}, left by a stack that was killed)")
    wait_for("tcps0 gone", lambda: "tcps0" not in netns.run(["ip", "-o", "link"]).stdout)

    second = start_stack(netns, "80", "--discard")
    assert snapshot(netns)["pid"] == second.proc.pid
    second.stop()
    assert not path.exists()


@pytest.mark.timeout(60)
def test_stacks_on_two_interfaces_of_one_namespace_do_not_share_addresses(
        netns: NetNS, start_stack: StartStack) -> None:
    start_stack(netns, "80", "--discard")
    result = netns.run([TCPSTACK, "--iface", "tcps1", "listen", "80", "--discard"], timeout=30)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "tcpstack: error: address 10.77.0.1 is already in use in this network namespace "
        "(on tcps0, where another tcpstack runs); choose another --kernel-address"], lines
    assert "tcps1" not in netns.run(["ip", "-o", "link"]).stdout
    assert not control_socket(netns, "tcps1").exists()
    # The other one on its own addresses runs, and each stat finds its own stack.
    # Its IPv4 addresses only would not do: the IPv6 ones are checked alike.
    clash6 = netns.run([TCPSTACK, "--iface", "tcps1", "--address", "10.78.0.2",
                        "--kernel-address", "10.78.0.1/24", "listen", "81", "--echo"],
                       timeout=30)
    assert clash6.returncode == 1
    assert clash6.stderr.strip().splitlines() == [
        "tcpstack: error: address fd77::1 is already in use in this network namespace "
        "(on tcps0, where another tcpstack runs); choose another --kernel-address6"]
    other = subprocess.Popen(netns.argv([TCPSTACK, "--iface", "tcps1", "--address", "10.78.0.2",
                                         "--kernel-address", "10.78.0.1/24",
                                         "--address6", "fd78::2", "--kernel-address6",
                                         "fd78::1/64", "listen", "81", "--echo"]),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=clean_env())
    try:
        wait_for("the control socket of tcps1", control_socket(netns, "tcps1").exists)
        mine = json.loads(stat(netns, "--json", iface="tcps1").stdout)
        assert (mine["iface"], mine["address"]) == ("tcps1", "10.78.0.2")
        assert [listener["port"] for listener in mine["listeners"]] == [81]
        assert [listener["port"] for listener in snapshot(netns)["listeners"]] == [80]
    finally:
        assert stop_process(other) == 0


@pytest.mark.timeout(60)
def test_stat_wait_returns_once_a_stack_started_in_the_background_is_up(
        netns: NetNS, tmp_path: Path) -> None:
    waiting = netns.popen([TCPSTACK, "stat", "--wait", "20", "--json"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    time.sleep(0.3)  # stat is already polling when the stack starts
    log = (tmp_path / "stack.log").open("wb")
    stack = netns.popen([TCPSTACK, "listen", "80", "--echo"], stdout=log, stderr=log)
    try:
        out, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 0, err
        listeners = json.loads(out)["listeners"]
        assert [(lst["local"], lst["state"]) for lst in listeners] == [("10.77.0.2:80",
                                                                         "LISTEN")]
    finally:
        stop_process(stack)
        log.close()


@pytest.mark.timeout(60)
def test_stat_wait_without_a_stack_gives_up_after_the_time_in_one_line(netns: NetNS) -> None:
    began = time.monotonic()
    result = stat(netns, "--wait", "0.5")
    assert time.monotonic() - began >= 0.5
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("tcpstack: error: no tcpstack running on tcps0 in this network "
                               "namespace after waiting 0.5 s")
