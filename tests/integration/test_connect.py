"""`tcpstack connect` (active open) against the kernel's TCP, with half-close both ways,
and `tcpstack listen` half-closing first towards a kernel client."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .netns import PEERS, TCPSTACK, NetNS, clean_env, read_line, stop_process

pytestmark = pytest.mark.integration


def _start_peer(ns: NetNS, *args: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
    proc = ns.popen([sys.executable, "-u", PEERS / "kernel_server.py", *map(str, args)],
                    stdout=subprocess.PIPE)
    assert read_line(proc) == "ready\n"  # unbuffered: the lines after it stay in the pipe
    return proc


def _connect(ns: NetNS, port: int, stdin: Path | None, *extra: str,
             timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as f:
        return subprocess.run(ns.argv([TCPSTACK, "--trace", "connect", *extra, "10.77.0.1",
                                       str(port)]),
                              stdin=f, capture_output=True, timeout=timeout, env=clean_env())


def _data(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "in.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(90)
def test_connect_half_closes_on_stdin_eof_and_still_receives(netns: NetNS,
                                                             tmp_path: Path) -> None:
    source, digest = _data(tmp_path, 5_000_000)
    peer = _start_peer(netns, "count-then-reply", "5000")
    try:
        result = _connect(netns, 5000, source)
    finally:
        stop_process(peer)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == f"got 5000000 bytes sha256 {digest}\n"
    trace = result.stderr.decode()
    for step in ("CLOSED -> SYN_SENT", "SYN_SENT -> ESTABLISHED",
                 "ESTABLISHED -> FIN_WAIT_1", "FIN_WAIT_2 -> TIME_WAIT"):
        assert f"10.77.0.1:5000 {step}" in trace, trace


@pytest.mark.timeout(90)
def test_connect_keeps_sending_after_the_peer_half_closes(netns: NetNS, tmp_path: Path) -> None:
    source, digest = _data(tmp_path, 3_000_000)
    report = tmp_path / "report.txt"
    peer = _start_peer(netns, "banner-then-count", "5001", report)
    try:
        result = _connect(netns, 5001, source)
        assert peer.wait(timeout=30) == 0
    finally:
        stop_process(peer)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"banner from the kernel\n"
    assert report.read_text() == f"got 3000000 bytes sha256 {digest}\n"
    trace = result.stderr.decode()
    assert "ESTABLISHED -> CLOSE_WAIT" in trace and "CLOSE_WAIT -> LAST_ACK" in trace, trace


@pytest.mark.timeout(60)
def test_connect_refused_fails_at_once_with_message(netns: NetNS) -> None:
    began = time.monotonic()
    result = _connect(netns, 5002, None)
    assert time.monotonic() - began < 10
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == \
        "tcpstack: error: connection to 10.77.0.1:5002 refused"


@pytest.mark.timeout(60)
def test_connect_timeout_fails_with_message(netns: NetNS) -> None:
    # Nobody owns 10.77.0.5: the SYNs go unanswered.
    result = subprocess.run(netns.argv([TCPSTACK, "connect", "--timeout", "1.5", "10.77.0.5",
                                        "5003"]), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=30, env=clean_env())
    assert result.returncode == 1
    assert result.stderr.decode().strip() == \
        "tcpstack: error: connection to 10.77.0.5:5003 timed out"


@pytest.mark.timeout(60)
def test_connect_reset_by_peer_fails_with_message(netns: NetNS, tmp_path: Path) -> None:
    source, _ = _data(tmp_path, 100)
    peer = _start_peer(netns, "reset", "5004")
    try:
        result = _connect(netns, 5004, source)
    finally:
        stop_process(peer)
    assert result.returncode == 1
    assert "connection to 10.77.0.1:5004 lost: connection reset by peer" in \
        result.stderr.decode()


KERNEL_CLIENT = """
import socket, sys
s = socket.create_connection(("10.77.0.2", 7001), timeout=10)
banner = b""
while chunk := s.recv(4096):
    banner += chunk
s.sendall(b"x" * 1_000_000)
s.shutdown(socket.SHUT_WR)
s.settimeout(10)
assert s.recv(1) == b""
print(banner.decode(), end="")
"""


@pytest.mark.timeout(60)
def test_listen_side_half_closes_first_and_still_receives(netns: NetNS) -> None:
    server = netns.popen([sys.executable, "-u", PEERS / "api_server.py"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        result = netns.run([sys.executable, "-c", KERNEL_CLIENT], timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "banner\n"
    finally:
        status = stop_process(server)
    out = server.stdout.read().decode() if server.stdout else ""
    assert status == 0, out
    assert "received 1000000" in out, out


StartConnect = Callable[[NetNS, str, int, Path], subprocess.Popen[bytes]]


@pytest.fixture
def start_connect() -> Iterator[StartConnect]:
    """`start_connect(ns, HOST, PORT, LOG)` runs `tcpstack --trace connect HOST PORT` with a
    standard input that never ends and its stderr in LOG; killed at teardown if still up."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(ns: NetNS, host: str, port: int, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as err:
            proc = subprocess.Popen(ns.argv([TCPSTACK, "--trace", "connect", host, str(port)]),
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=err, env=clean_env())
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdin is not None:
                proc.stdin.close()


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes],
              timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, f"tcpstack exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n" \
                                            f"{log.read_text()}"
        time.sleep(0.02)


def _interrupt(proc: subprocess.Popen[bytes], sig: signal.Signals,
               timeout: float = 10.0) -> tuple[int, float]:
    """Send `sig`; the exit status and how long the exit took."""
    began = time.monotonic()
    proc.send_signal(sig)
    try:
        status = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"tcpstack still running {timeout} s after {sig.name}") from None
    return status, time.monotonic() - began


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("sig", "status", "message"), [
    (signal.SIGINT, 130, "tcpstack: interrupted"),
    (signal.SIGTERM, 143, "tcpstack: terminated"),
])
def test_signal_during_the_handshake_stops_at_once(netns: NetNS, tmp_path: Path,
                                                   start_connect: StartConnect,
                                                   sig: signal.Signals, status: int,
                                                   message: str) -> None:
    log = tmp_path / "connect.log"
    # Nobody owns 10.77.0.5: the handshake would retry for two minutes.
    proc = start_connect(netns, "10.77.0.5", 5010, log)
    _wait_for(log, "CLOSED -> SYN_SENT", proc)
    got, took = _interrupt(proc, sig)
    stderr = log.read_text()
    assert got == status, stderr
    assert stderr.splitlines()[-1] == message, stderr
    assert "timed out" not in stderr, stderr
    assert took < 3.0, f"exit took {took:.2f} s"
    assert "tcps0" not in netns.run(["ip", "-o", "link"]).stdout


@pytest.mark.timeout(60)
def test_sigint_when_established_closes_with_fin_and_exits_at_once(
        netns: NetNS, tmp_path: Path, start_connect: StartConnect) -> None:
    server = _start_peer(netns, "eof-then-close", "5011")
    log = tmp_path / "connect.log"
    proc = start_connect(netns, "10.77.0.1", 5011, log)
    _wait_for(log, "SYN_SENT -> ESTABLISHED", proc)
    assert proc.stdin is not None
    proc.stdin.write(b"hello\n")
    proc.stdin.flush()
    time.sleep(0.2)  # delivered; standard input stays open, as a terminal's would
    status, took = _interrupt(proc, signal.SIGINT)
    stderr = log.read_text()
    assert status == 130, stderr
    assert stderr.splitlines()[-1] == "tcpstack: interrupted", stderr
    # All sent data could be delivered: a FIN, and the peer, closing too, ends it at once.
    assert read_line(server) == "eof 6\n"
    assert "10.77.0.1:5011 ESTABLISHED -> FIN_WAIT_1" in stderr, stderr
    assert took < 1.0, f"exit took {took:.2f} s"


@pytest.mark.timeout(60)
def test_sigint_when_established_resets_a_peer_that_does_not_finish(
        netns: NetNS, tmp_path: Path, start_connect: StartConnect) -> None:
    server = _start_peer(netns, "eof-then-hold", "5012")
    log = tmp_path / "connect.log"
    proc = start_connect(netns, "10.77.0.1", 5012, log)
    _wait_for(log, "SYN_SENT -> ESTABLISHED", proc)
    status, took = _interrupt(proc, signal.SIGINT)
    assert status == 130, log.read_text()
    assert took < 2.5, f"exit took {took:.2f} s"
    # The FIN, then after the grace a RST: the kernel socket is not left in CLOSE-WAIT.
    assert read_line(server) == "eof 0\n"
    assert read_line(server) == "closed\n"
    waiting = netns.run(["ss", "-Htan", "state", "close-wait", "state", "last-ack"]).stdout
    assert waiting == ""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("host", "reason"), [
    ("10.77.0.2", "cannot connect to 10.77.0.2: it is the stack's own address"),
    ("10.77.0.255", "cannot connect to 10.77.0.255: it is the broadcast address of "
                    "10.77.0.0/24"),
    ("10.77.0.0", "cannot connect to 10.77.0.0: it is the network address of 10.77.0.0/24"),
    ("127.0.0.1", "cannot connect to 127.0.0.1: a loopback address, which the kernel never "
                  "routes to tcps0 (the kernel side is 10.77.0.1)"),
    ("224.0.0.1", "cannot connect to 224.0.0.1: TCP needs a unicast address"),
])
def test_connect_to_an_address_no_connection_can_reach_is_refused_at_once(
        netns: NetNS, host: str, reason: str) -> None:
    began = time.monotonic()
    result = netns.run([TCPSTACK, "connect", host, "5013"], timeout=20)
    assert time.monotonic() - began < 10
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"tcpstack: error: {reason}"]
    assert "tcps0" not in netns.run(["ip", "-o", "link"]).stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("address", "reason"), [
    ("10.77.0.255", "address 10.77.0.255 is the broadcast address of 10.77.0.0/24, not a "
                    "host's"),
    ("10.77.0.0", "address 10.77.0.0 is the network address of 10.77.0.0/24, not a host's"),
])
def test_stack_address_that_is_not_a_host_is_refused_at_once(netns: NetNS, address: str,
                                                             reason: str) -> None:
    result = netns.run([TCPSTACK, "--address", address, "connect", "10.77.0.1", "5014"],
                       timeout=20)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"tcpstack: error: {reason}"]
    assert "tcps0" not in netns.run(["ip", "-o", "link"]).stdout


@pytest.mark.timeout(60)
def test_connect_outside_the_subnet_is_routed_through_the_kernel(netns: NetNS) -> None:
    # An address of the kernel's own, outside 10.77.0.0/24: the kernel takes it from tcps0.
    assert netns.run(["ip", "addr", "add", "10.99.0.1/32", "dev", "lo"]).returncode == 0
    server = _start_peer(netns, "eof-then-close", "5015")
    result = netns.run([TCPSTACK, "connect", "10.99.0.1", "5015"], timeout=30)
    assert result.returncode == 0, result.stderr
    assert read_line(server) == "eof 0\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("code", "message"), [
    (3, "connection to 10.77.0.9:9999 refused"),
    (1, "connection to 10.77.0.9:9999 failed: host unreachable"),
])
def test_an_icmp_unreachable_fails_a_connect_at_once_with_a_clear_message(
        netns: NetNS, start_connect: StartConnect, tmp_path: Path, code: int,
        message: str) -> None:
    """A router answers tcpstack's SYN with an ICMP destination unreachable (RFC 5927,
    RFC 1122 4.2.3.9): the connect fails on it, long before its SYN retransmissions end."""
    router = netns.popen([sys.executable, PEERS / "icmp_answer.py", "tcps0", "10.77.0.9",
                          str(code)], stdout=subprocess.PIPE)
    log = tmp_path / "connect.log"
    started = time.monotonic()
    proc = start_connect(netns, "10.77.0.9", 9999, log)
    assert proc.wait(timeout=20) == 1
    assert time.monotonic() - started < 5.0  # the first SYN retransmission would be at 1 s
    assert log.read_text().strip().splitlines()[-1] == f"tcpstack: error: {message}"
    out, _ = router.communicate(timeout=10)
    assert "seq" in json.loads(out)
