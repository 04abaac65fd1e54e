"""Stopping a stack while connections are busy: the applications see their streams end,
the stack exits 0, and nothing is logged as an unhandled error; and its kernel peers are
told, as by a kernel whose process exits: a FIN where everything could be delivered, a RST
where data was left unread or arrives after the close, and a RST for a peer that has not
finished within the grace, so that `ss` shows no socket left in CLOSE-WAIT or LAST-ACK."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .conftest import StartStack
from .netns import NetNS, read_line

pytestmark = pytest.mark.integration

SENDER = """
import socket, time
s = socket.create_connection(("10.77.0.2", 7), timeout=10)
s.settimeout(10)
end = time.monotonic() + 8
try:
    while time.monotonic() < end:
        s.sendall(b"x" * 65536)
        s.recv(65536)
except OSError:
    pass
"""


@pytest.mark.timeout(60)
def test_sigterm_with_busy_connections_exits_cleanly(netns: NetNS,
                                                     start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--echo")
    clients = [netns.popen(["python3", "-c", SENDER]) for _ in range(3)]
    time.sleep(1.0)  # the echoes are in full flow
    counters = stack.stop()  # SIGTERM; asserts exit status 0
    log = stack.log()
    assert "Traceback" not in log and "Unhandled" not in log and "Exception" not in log, log
    assert counters["passive_opens"] == 3
    for client in clients:
        try:
            client.wait(timeout=15)
        except subprocess.TimeoutExpired:
            client.kill()


# A kernel client that, like nc waiting on its standard input, keeps its socket open after the
# stack's FIN; it reports what the stack sent ("eof"), then the socket's state once it leaves
# CLOSE-WAIT ("closed" when a RST ended it).
HOLDING_CLIENT = """
import socket, struct, time
s = socket.create_connection(("10.77.0.2", 7), timeout=10)
s.sendall(b"ping")
assert s.recv(4) == b"ping"
print("ready", flush=True)
s.settimeout(20)
print("eof" if s.recv(1) == b"" else "data", flush=True)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    state = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    if state != 8:  # TCP_CLOSE_WAIT
        print("closed" if state == 7 else f"state {state}", flush=True)
        break
    time.sleep(0.01)
time.sleep(30)
"""

# A kernel client that sends without ever reading until the echo server's window closes: the
# stack then holds received data the application has not read.
FLOODING_CLIENT = """
import errno, select, socket, time
s = socket.create_connection(("10.77.0.2", 7), timeout=10)
s.setblocking(False)
chunk = b"x" * 65536
stalled = None
while stalled is None or time.monotonic() - stalled < 0.5:
    try:
        s.send(chunk)
        stalled = None
    except BlockingIOError:
        stalled = stalled or time.monotonic()
        select.select([], [s], [], 0.1)
print("ready", flush=True)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if err := s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
        print(errno.errorcode[err], flush=True)
        break
    time.sleep(0.01)
"""

# A kernel client that keeps sending (to the discard server) and never reads: after the
# stack's FIN its data has nobody to go to. Prints the CLOCK_MONOTONIC time its send fails.
SENDING_CLIENT = """
import socket, time
s = socket.create_connection(("10.77.0.2", 9), timeout=10)
s.sendall(b"x" * 100_000)
print("ready", flush=True)
s.settimeout(0.05)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        s.send(b"x" * 1000)
        time.sleep(0.002)
    except socket.timeout:
        pass
    except OSError as exc:
        print(f"failed {time.monotonic():.6f} {exc.__class__.__name__}", flush=True)
        break
"""



def _ready_client(ns: NetNS, script: str) -> subprocess.Popen[bytes]:
    client = ns.popen([sys.executable, "-u", "-c", script], stdout=subprocess.PIPE)
    assert read_line(client) == "ready\n"
    return client


def _waiting_kernel_sockets(ns: NetNS) -> str:
    """`ss` lines of kernel sockets still waiting on a peer that went away."""
    return ns.run(["ss", "-Htan", "state", "close-wait", "state", "last-ack"]).stdout


@pytest.mark.timeout(60)
def test_sigterm_leaves_no_kernel_peer_in_close_wait(netns: NetNS,
                                                     start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--echo")
    client = _ready_client(netns, HOLDING_CLIENT)
    began = time.monotonic()
    stack.stop()
    assert time.monotonic() - began < 4.0, "shutdown took longer than its grace"
    # The FIN first (everything sent was delivered), then, the peer not finishing within the
    # grace, a RST: the kernel socket does not stay in CLOSE-WAIT behind a removed interface.
    assert read_line(client) == "eof\n"
    assert read_line(client) == "closed\n"
    assert _waiting_kernel_sockets(netns) == ""


@pytest.mark.timeout(60)
def test_sigterm_resets_at_once_where_received_data_was_left_unread(
        netns: NetNS, start_stack: StartStack) -> None:
    stack = start_stack(netns, "7", "--echo", global_args=("--trace",))
    client = _ready_client(netns, FLOODING_CLIENT)
    stack.stop()
    assert read_line(client) == "ECONNRESET\n"
    log = stack.log()
    # RFC 9293 3.6.1: data left unread draws a RST instead of the FIN, not after a grace.
    assert "ESTABLISHED -> CLOSED" in log, log
    assert "FIN_WAIT_1" not in log, log
    assert _waiting_kernel_sockets(netns) == ""


@pytest.mark.timeout(60)
def test_data_arriving_after_the_shutdown_fin_is_reset_before_the_grace_ends(
        netns: NetNS, start_stack: StartStack) -> None:
    stack = start_stack(netns, "9", "--discard")
    client = _ready_client(netns, SENDING_CLIENT)
    signalled = time.monotonic()
    stack.stop()
    words = read_line(client).split()
    assert words[0] == "failed", words
    assert words[2] in ("ConnectionResetError", "BrokenPipeError"), words
    # The grace is a second; data after our FIN has nobody to read it and is reset at once.
    assert float(words[1]) - signalled < 0.6, words
    assert _waiting_kernel_sockets(netns) == ""
