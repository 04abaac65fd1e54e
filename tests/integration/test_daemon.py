"""One stack shared by many processes (`tcpstack up`, api/daemon.py), and several services on
one stack (`tcpstack serve`), against kernel peers in a namespace of the test's own.

The peers are tests/peers/attach_peers.py: kernel sockets on one side, processes attached to
the daemon on the other. Every wait is bounded; the namespace's deletion kills whatever the
test started in it, the daemons detached with `up -d` included."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpstack.api.attach import attach
from tcpstack.api.attach_protocol import attach_path

from .netns import (
    PEERS,
    STACK_ADDRESS,
    TCPSTACK,
    NetNS,
    clean_env,
    curl,
    read_line,
    sha256_file,
    stop_process,
    url,
    write_random_file,
)

SIZE = 2 * 1024 * 1024
PEER = PEERS / "attach_peers.py"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534"]


def namespace_inode(ns: NetNS) -> int:
    return os.stat(f"/run/netns/{ns.name}").st_ino


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout} s (last: {value!r})")
        time.sleep(0.05)


class Daemon:
    """`tcpstack up` in the foreground inside `ns`, its log in a file."""

    def __init__(self, ns: NetNS, log_path: Path, *args: str) -> None:
        self.ns = ns
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = ns.popen([TCPSTACK, "--msl", "0.5", "up", *args], stderr=self._log)
        self.path = attach_path("tcps0", netns=namespace_inode(ns))
        wait_for("up", lambda: "tcpstack: daemon up on tcps0" in self.log()
                 or self.proc.poll() is not None, 20.0)
        assert self.proc.poll() is None, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        """What the daemon holds, asked by this test (which counts as one client)."""
        with attach(path=self.path) as client:
            return client.status()

    def wait_holds(self, what: str, timeout: float = 15.0, **expected: int) -> None:
        """Until the daemon holds what `expected` says (clients, listeners, connections)."""
        last: dict[str, Any] = {}

        def check() -> bool:
            last.update(self.status())
            return {k: last[k] for k in expected} == expected

        try:
            wait_for(what, check, timeout)
        except AssertionError:
            raise AssertionError(f"not {what} after {timeout} s: the daemon holds {last}, "
                                 f"not {expected}") from None

    def snapshot(self) -> dict[str, Any]:
        result = self.ns.run([TCPSTACK, "stat", "--json"], timeout=20)
        assert result.returncode == 0, result.stderr
        value: dict[str, Any] = json.loads(result.stdout)
        return value

    def stop(self) -> str:
        code = stop_process(self.proc)
        self._log.close()
        assert code == 0, self.log()
        return self.log()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    daemons: list[Daemon] = []

    def start(ns: NetNS, *args: str) -> Daemon:
        daemon = Daemon(ns, tmp_path / f"daemon-{len(daemons)}.log", *args)
        daemons.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in daemons:
            if daemon.proc.poll() is None:
                stop_process(daemon.proc)
            print(f"--- {daemon.log_path.name} ---\n{daemon.log()}")


def peer(ns: NetNS, *args: str | int) -> subprocess.Popen[bytes]:
    return ns.popen([sys.executable, PEER, *map(str, args)], stdout=subprocess.PIPE)


def result(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> dict[str, Any]:
    """The JSON line a peer prints last."""
    out, _ = proc.communicate(timeout=timeout)
    lines = out.decode().strip().splitlines()
    assert lines, f"the peer printed nothing (exit {proc.returncode})"
    value: dict[str, Any] = json.loads(lines[-1])
    return value


def wait_logged(path: Path, text: str, proc: subprocess.Popen[bytes],
                timeout: float = 20.0) -> None:
    wait_for(f"{text!r} in {path.name}",
             lambda: text in path.read_text(errors="replace") or proc.poll() is not None,
             timeout)
    assert text in path.read_text(errors="replace"), path.read_text(errors="replace")


def test_two_processes_listen_and_connect_through_one_daemon_at_once(
        netns: NetNS, start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    """`listen --attach` (echo), `connect --attach` (stdin to a kernel server and back) and
    a Python listener (tcpstack.attach()) all run at once on one daemon's stack, each
    exchanging 2 MiB both ways with kernel peers."""
    daemon = start_daemon(netns)
    go = tmp_path / "go"  # the kernel peers hold their data until it exists
    server = peer(netns, "exchange-server", 5000, SIZE, go)
    assert read_line(server) == "ready\n"
    listen_log = tmp_path / "listen.log"
    with listen_log.open("wb") as log:
        listen = netns.popen([TCPSTACK, "listen", "7", "--echo", "--attach"], stderr=log)
    wait_logged(listen_log, "tcpstack: listening on 10.77.0.2:7 and [fd77::2]:7 "
                "(attached to the daemon on tcps0)", listen)
    python_listener = peer(netns, "attach-exchange", 8080, SIZE)
    assert read_line(python_listener) == "listening\n"

    sent = tmp_path / "stdin.bin"
    sent_sha = write_random_file(sent, SIZE)
    received = tmp_path / "stdout.bin"
    with sent.open("rb") as stdin, received.open("wb") as stdout:
        connect = subprocess.Popen(
            netns.argv([TCPSTACK, "connect", "--attach", "10.77.0.1", "5000"]), stdin=stdin,
            stdout=stdout, stderr=subprocess.PIPE, env=clean_env())
    try:
        echo_client = peer(netns, "exchange-client", STACK_ADDRESS, 7, SIZE, go)
        python_client = peer(netns, "exchange-client", STACK_ADDRESS, 8080, SIZE, go)
        # All three at once, on the one stack (stat reads the daemon's control socket).
        wait_for("three connections on the daemon's stack", lambda: [
            c["state"] for c in daemon.snapshot()["connections"]] == ["ESTABLISHED"] * 3)
        # connect --attach closed its control connection once it had its descriptor.
        daemon.wait_holds("three bridges", connections=3, listeners=2, clients=3)
        go.touch()
        _, connect_err = connect.communicate(timeout=60)
    finally:
        if connect.poll() is None:
            stop_process(connect)  # type: ignore[arg-type]
    assert connect.returncode == 0, connect_err.decode()

    kernel = result(server)
    assert kernel["received"] == SIZE and kernel["received_sha"] == sent_sha
    assert sha256_file(received) == kernel["sent_sha"]

    echoed = result(echo_client)
    assert echoed["received"] == SIZE and echoed["received_sha"] == echoed["sent_sha"]

    theirs, ours = result(python_client), result(python_listener)
    assert ours["received"] == theirs["sent"] == SIZE
    assert ours["received_sha"] == theirs["sent_sha"]
    assert theirs["received_sha"] == ours["sent_sha"]
    assert ours["peer"] == theirs["local"]  # accept() gave the kernel client's address

    # Done: the bridges are gone; the listen process still holds its listener.
    daemon.wait_holds("the bridges freed", connections=0, listeners=1, clients=2)
    assert stop_process(listen) == 0
    daemon.wait_holds("the listener closed", listeners=0, clients=1)
    assert daemon.snapshot()["listeners"] == []
    log = daemon.stop()
    assert re.search(r"^tcpstack: counters: .*\bactive_opens=1\b.*\bpassive_opens=2\b", log,
                     re.MULTILINE), log


def test_a_killed_client_has_its_queued_data_delivered_then_a_fin_and_is_freed(
        netns: NetNS, start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    """SIGKILL a process holding a connection full of queued data and a listener: the kernel
    peer reads every byte it wrote, then EOF (no RST); the daemon frees the connection and
    the listener, and stat shows neither."""
    daemon = start_daemon(netns)
    go = tmp_path / "go"
    server = peer(netns, "held-server", 5000, go)
    assert read_line(server) == "ready\n"
    filler = peer(netns, "attach-fill", "10.77.0.1", 5000, 8000)
    report = json.loads(read_line(filler, timeout=40))
    assert report["written"] > 64 * 1024, report  # queued in the socketpair, bridge and TCP
    daemon.wait_holds("the filler's connection and listener", connections=1, listeners=1,
                      clients=2)
    assert [lst["local"] for lst in daemon.snapshot()["listeners"]] == ["10.77.0.2:8000"]

    filler.kill()
    filler.wait(timeout=10)
    go.touch()  # the kernel peer starts reading only now
    assert result(server) == {"received": report["written"], "sha": report["sha"],
                              "end": "eof"}

    daemon.wait_holds("the connection and listener freed", connections=0, listeners=0, clients=1)
    # TIME_WAIT (2 x --msl 0.5) passes too: nothing of the dead process is left.
    wait_for("no socket left in stat",
             lambda: (lambda s: s["connections"] == [] and s["listeners"] == [])(
                 daemon.snapshot()))
    refused = netns.run(["nc", "-z", "-w", "5", STACK_ADDRESS, "8000"], timeout=20)
    assert refused.returncode != 0  # its port is closed: a RST
    daemon.stop()


@pytest.fixture
def throwaway_group() -> Iterator[tuple[str, int]]:
    name = f"tsd{secrets.token_hex(4)}"
    subprocess.run(["groupadd", name], check=True, timeout=20)
    try:
        yield name, grp.getgrnam(name).gr_gid
    finally:
        subprocess.run(["groupdel", name], check=False, timeout=20)


def test_an_unprivileged_user_not_in_the_group_is_refused_with_a_clear_message(
        netns: NetNS, start_daemon: Callable[..., Daemon],
        throwaway_group: tuple[str, int]) -> None:
    name, gid = throwaway_group
    daemon = start_daemon(netns, "--group", name)
    st = daemon.path.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o660, 0, gid)

    # nobody, in no group of ours: the socket file's mode stops it at connect().
    refused = netns.run([*NOBODY, "--clear-groups", TCPSTACK, "connect", "--attach",
                         "10.77.0.1", "5000"], timeout=30)
    assert refused.returncode == 1
    assert refused.stderr == (f"tcpstack: error: permission denied on {daemon.path}: only "
                              "root and the group the daemon was started with (tcpstack up "
                              "--group NAME) may attach\n")

    # The same user in the group is admitted: it gets as far as the kernel's RST.
    member = netns.run([*NOBODY, f"--groups={gid}", TCPSTACK, "connect", "--attach",
                        "10.77.0.1", "5001"], timeout=30)
    assert member.returncode == 1
    assert member.stderr == "tcpstack: error: connection to 10.77.0.1:5001 refused\n"

    # The file opened to everyone by hand: SO_PEERCRED still refuses nobody.
    os.chmod(daemon.path, 0o666)
    refused = netns.run([*NOBODY, "--clear-groups", TCPSTACK, "listen", "7", "--echo",
                         "--attach"], timeout=30)
    assert refused.returncode == 1
    assert refused.stderr == (f"tcpstack: error: permission denied: uid 65534 is neither root "
                              f"nor in group {name}, the group this tcpstack daemon admits\n")
    assert daemon.snapshot()["listeners"] == []
    log = daemon.stop()
    assert re.search(r"^tcpstack: refused pid \d+ \(uid 65534\)", log, re.MULTILINE), log


def test_up_in_the_background_then_down_closes_its_connections_cleanly(
        netns: NetNS, tmp_path: Path) -> None:
    up_log = tmp_path / "up.log"
    up = netns.run([TCPSTACK, "--msl", "0.5", "up", "-d", "--log", up_log], timeout=30)
    path = attach_path("tcps0", netns=namespace_inode(netns))
    assert up.returncode == 0, up.stderr
    shown = re.fullmatch(r"tcpstack: daemon up on tcps0 \(pid (\d+)\); attach socket (\S+)\n",
                         up.stdout)
    assert shown is not None and shown.group(2) == str(path), up.stdout
    pid = int(shown.group(1))
    try:
        assert json.loads(netns.run([TCPSTACK, "stat", "--json"]).stdout)["pid"] == pid

        again = netns.run([TCPSTACK, "up", "-d"], timeout=30)  # the child's error, its status
        assert (again.returncode, again.stdout) == (1, "")
        assert again.stderr.startswith("tcpstack: error: interface tcps0 is already in use"), (
            again.stderr)
        assert again.stderr.count("\n") == 1

        listen_log = tmp_path / "listen.log"
        with listen_log.open("wb") as log:
            listen = netns.popen([TCPSTACK, "listen", "7", "--echo", "--attach"], stderr=log)
        wait_logged(listen_log, "tcpstack: listening on", listen)
        idle = peer(netns, "idle-client", STACK_ADDRESS, 7)
        assert read_line(idle) == "echoed\n"

        down = netns.run([TCPSTACK, "down"], timeout=30)
        assert down.returncode == 0, down.stderr
        assert down.stderr == f"tcpstack: daemon on tcps0 (pid {pid}) stopped\n"
        assert not _running(pid)
        assert result(idle) == {"end": "eof"}  # a FIN: the connection closed cleanly
        assert listen.wait(timeout=15) == 1
        assert "tcpstack: error: the daemon on tcps0 stopped serving" in listen_log.read_text()
        log = up_log.read_text()
        assert "tcpstack: stop requested by pid" in log
        assert re.search(r"^tcpstack: counters: .*\bpassive_opens=1\b", log, re.MULTILINE), log
        assert not path.exists()

        gone = netns.run([TCPSTACK, "down"], timeout=30)
        assert gone.returncode == 1
        assert gone.stderr == (f"tcpstack: error: no tcpstack daemon running on tcps0 in this "
                               f"network namespace (nothing serves {path}; start one with "
                               "tcpstack up)\n")
    finally:
        _terminate(pid)  # a failed step must not leave the daemon to a SIGKILL


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _terminate(pid: int) -> None:
    """SIGTERM a daemon that is not our child, and wait (bounded) for it to finish."""
    if _running(pid):
        os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(AssertionError):
            wait_for("the daemon gone", lambda: not _running(pid), 10.0)


def test_attach_without_a_daemon_says_so_in_one_line(netns: NetNS) -> None:
    path = attach_path("tcps0", netns=namespace_inode(netns))
    for args in (["listen", "7", "--echo", "--attach"],
                 ["connect", "--attach", "10.77.0.1", "5000"]):
        run = netns.run([TCPSTACK, *args], timeout=30)
        assert run.returncode == 1, args
        assert run.stderr == (f"tcpstack: error: no tcpstack daemon running on tcps0 in this "
                              f"network namespace (nothing serves {path}; start one with "
                              "tcpstack up)\n"), args
    assert netns.run(["ip", "link", "show", "tcps0"]).returncode != 0  # nothing brought up


UDP_CLIENT = """
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("10.77.0.2", 7))
for n in range(20):
    data = os.urandom(1 + 60 * n)
    s.send(data)
    assert s.recv(2048) == data, n
print("echoed 20 datagrams")
"""


def test_serve_runs_echo_discard_http_and_udp_echo_on_one_stack(
        netns: NetNS, tmp_path: Path, http_root: Path) -> None:
    file_sha = write_random_file(http_root / "file.bin", SIZE)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        serve = netns.popen([TCPSTACK, "serve", "--echo", "7", "--discard", "9", "--http",
                             f"80:{http_root}", "--echo", "7007", "--udp-echo", "7"],
                            stderr=log)
    wait_logged(log_path, "tcpstack: listening on 10.77.0.2 and fd77::2: 7 (echo), 9 (discard), "
                "80 (http), 7007 (echo), 7 (udp echo)", serve)
    clients = {port: peer(netns, "exchange-client", STACK_ADDRESS, port, SIZE)
               for port in (7, 7007, 9)}
    fetched = curl(netns, "-sS", "-o", str(tmp_path / "got.bin"), url("file.bin"))
    assert fetched.returncode == 0, fetched.stderr
    assert sha256_file(tmp_path / "got.bin") == file_sha
    for port in (7, 7007):
        echoed = result(clients[port])
        assert echoed["received"] == SIZE and echoed["received_sha"] == echoed["sent_sha"]
    discarded = result(clients[9])
    assert (discarded["sent"], discarded["received"]) == (SIZE, 0)
    datagrams = netns.run([sys.executable, "-c", UDP_CLIENT], timeout=30)
    assert datagrams.stdout == "echoed 20 datagrams\n", datagrams.stderr
    snapshot = json.loads(netns.run([TCPSTACK, "stat", "--json"]).stdout)
    assert sorted(lst["local"] for lst in snapshot["listeners"]) == [
        "10.77.0.2:7", "10.77.0.2:7007", "10.77.0.2:80", "10.77.0.2:9"]
    assert stop_process(serve) == 0
    assert re.search(r"^tcpstack: counters: .*\bpassive_opens=4\b",
                     log_path.read_text(), re.MULTILINE), log_path.read_text()


CHATTERS = """
import socket, sys, time
def join(port):
    s = socket.create_connection(("10.77.0.2", port), timeout=10)
    s.settimeout(10)
    return s, s.makefile("rb")
alice, alice_in = join(6667)
bob, bob_in = join(6667)
carol, carol_in = join(6668)
time.sleep(0.5)  # each room has seen its joins
alice.sendall(b"hello bob\\n")
print(bob_in.readline().decode(), end="")
bob.sendall(b"hi alice\\n")
print(alice_in.readline().decode(), end="")
carol.settimeout(1.0)
try:
    print("carol heard", carol.recv(100))
except TimeoutError:
    print("carol heard nothing")
print("alice", alice.getsockname()[1], "bob", bob.getsockname()[1])
"""


def test_chat_example_rooms_in_two_processes_share_one_daemon(
        netns: NetNS, start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(netns)
    example = Path(__file__).resolve().parents[2] / "examples" / "chat_server.py"
    rooms = [netns.popen([sys.executable, "-u", example, str(port)], stdout=subprocess.PIPE)
             for port in (6667, 6668)]
    assert [read_line(room, timeout=20) for room in rooms] == [
        "chat on port 6667\n", "chat on port 6668\n"]
    assert sorted(lst["local"] for lst in daemon.snapshot()["listeners"]) == [
        "10.77.0.2:6667", "10.77.0.2:6668"]  # two processes, one stack
    chat = netns.run([sys.executable, "-c", CHATTERS], timeout=40)
    assert chat.returncode == 0, chat.stderr
    heard_by_bob, heard_by_alice, carol, ports = chat.stdout.splitlines()
    _, alice_port, _, bob_port = ports.split()
    assert heard_by_bob == f"10.77.0.1:{alice_port}: hello bob"
    assert heard_by_alice == f"10.77.0.1:{bob_port}: hi alice"
    assert carol == "carol heard nothing"  # the other room, the other process
    for room in rooms:
        assert stop_process(room) == 0
    daemon.wait_holds("both rooms gone", listeners=0, clients=1)


UDP_FAMILIES_CLIENT = """
import os, socket, sys
for family, host in ((socket.AF_INET, "10.77.0.2"), (socket.AF_INET6, "fd77::2")):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(5)
    for n in range(10):
        data = os.urandom(1 + 100 * n)
        s.sendto(data, (host, 7))
        got, addr = s.recvfrom(2048)
        assert got == data and addr[:2] == (host, 7), (host, n, addr)
    print("echoed 10 datagrams over", host)
"""

UDP_REFUSED_CLIENT = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("10.77.0.2", 7))
s.send(b"anyone there?")
try:
    print("answered", s.recv(100))
except ConnectionRefusedError as exc:
    print("refused", exc.errno)
"""


def test_listen_udp_attach_echoes_both_families_and_a_killed_one_frees_its_port(
        netns: NetNS, start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    """`listen --udp 7 --echo --attach` echoes a kernel client's datagrams over IPv4 and
    IPv6 on the daemon's stack; SIGKILL of that process frees the port (a closed port's
    datagram draws ECONNREFUSED), and a second `listen --udp 7 --attach` binds it."""
    daemon = start_daemon(netns)
    first_log = tmp_path / "udp-1.log"
    with first_log.open("wb") as log:
        first = netns.popen([TCPSTACK, "listen", "--udp", "7", "--echo", "--attach"],
                            stderr=log)
    wait_logged(first_log, "tcpstack: listening on udp 10.77.0.2:7 and [fd77::2]:7 (echo, "
                "attached to the daemon on tcps0)", first)
    # The listen process closed its control connection: the endpoint is its descriptor's.
    daemon.wait_holds("the endpoint handed out", udp=1, clients=1)
    echoed = netns.run([sys.executable, "-c", UDP_FAMILIES_CLIENT], timeout=40)
    assert echoed.stdout == ("echoed 10 datagrams over 10.77.0.2\n"
                             "echoed 10 datagrams over fd77::2\n"), echoed.stderr

    first.kill()
    first.wait(timeout=10)
    daemon.wait_holds("the endpoint freed", udp=0, clients=1)
    refused = netns.run([sys.executable, "-c", UDP_REFUSED_CLIENT], timeout=30)
    assert refused.stdout == "refused 111\n", refused.stderr

    second_log = tmp_path / "udp-2.log"
    with second_log.open("wb") as log:
        second = netns.popen([TCPSTACK, "listen", "--udp", "7", "--echo", "--attach"],
                             stderr=log)
    wait_logged(second_log, "tcpstack: listening on udp 10.77.0.2:7", second)
    again = netns.run([sys.executable, "-c", UDP_CLIENT], timeout=30)
    assert again.stdout == "echoed 20 datagrams\n", again.stderr
    # A third on the same port is refused while the second holds it.
    third = netns.run([TCPSTACK, "listen", "--udp", "7", "--discard", "--attach"],
                      timeout=30)
    assert third.returncode == 1
    assert third.stderr.startswith("tcpstack: error: cannot bind UDP port 7: "), third.stderr
    assert stop_process(second) == 0
    daemon.wait_holds("the second endpoint freed", udp=0)
    # A daemon that stops closes the ports it handed out: their holders hear of it.
    last_log = tmp_path / "udp-3.log"
    with last_log.open("wb") as log:
        last = netns.popen([TCPSTACK, "listen", "--udp", "9", "--discard", "--attach"],
                           stderr=log)
    wait_logged(last_log, "tcpstack: listening on udp 10.77.0.2:9", last)
    log_text = daemon.stop()
    assert last.wait(timeout=20) == 1
    assert last_log.read_text().endswith(
        "tcpstack: error: the daemon on tcps0 closed UDP port 9\n"), last_log.read_text()
    # 20 echoed over both families and 20 over IPv4 again; the one to the freed port drew
    # the ICMP port unreachable.
    assert re.search(r"^tcpstack: counters: .*\bicmp_port_unreachable_out=1\b.*"
                     r"\budp_in_datagrams=40 udp_no_ports=1 udp_out_datagrams=40\b",
                     log_text, re.MULTILINE), log_text
