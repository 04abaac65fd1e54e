"""Fixtures for the packet-level tests: a fresh namespace running tcpstack (echo or discard on
port 8080, full checksums, MSL 1 s, transitions traced) and a scripted peer inside it.
Everything is torn down even when a test fails."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tcpstack.api.control import control_path
from tests.integration.netns import NetNS, TcpStack, mark_skipped, skip_reason

from .peer import ANY, Flow, OneOf, Peer  # noqa: F401 (ANY: the tests take it from here)

PORT = 8080
# A fixed 1 MiB receive buffer (no auto-tuning): the windows these tests spell out stay put.
STACK_ARGS = ("--no-offload", "--msl", "1", "--trace", "--receive-buffer", str(1 << 20))


_SKIP = skip_reason("packet", "network namespaces, a TUN device, AF_PACKET sockets")
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_skipped(items, _HERE, _SKIP)


@dataclass
class Rig:
    """A namespace, the tcpstack in it, and the peer that talks to it over tcps0."""

    ns: NetNS
    stack: TcpStack
    peer: Peer

    def trace(self) -> str:
        """tcpstack's log so far: `--trace` puts every state transition there."""
        return self.stack.log()


StartRig = Callable[[str], Rig]


@pytest.fixture
def start_rig(tmp_path: Path) -> Iterator[StartRig]:
    """`start_rig("--echo")` runs `tcpstack --no-offload --msl 1 --trace --receive-buffer
    1048576 listen 8080 --echo` in a fresh namespace and opens the peer there; all of it is
    gone after the test."""
    made: list[tuple[NetNS, TcpStack | None, Peer | None]] = []

    def start(mode: str) -> Rig:
        ns = NetNS(prefix="tspkt")
        made.append((ns, None, None))
        forwarding = ns.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()
        # Were the kernel forwarding, it would route replies meant for the peer's address
        # back into tcps0 itself, or answer them with ICMP.
        assert forwarding == "0", f"net.ipv4.ip_forward is {forwarding!r} in a fresh namespace"
        stack = TcpStack(ns, [str(PORT), *mode.split()], tmp_path / f"tcpstack-{len(made)}.log",
                         global_args=STACK_ARGS)
        made[-1] = (ns, stack, None)
        stack.wait_ready()
        peer = Peer(ns.name)
        made[-1] = (ns, stack, peer)
        return Rig(ns, stack, peer)

    died: list[str] = []
    try:
        yield start
    finally:
        for ns, stack, peer in made:
            try:
                if peer is not None:
                    peer.close()
                if stack is not None:
                    if peer is not None and not stack.alive():  # it was up, then died
                        died.append(f"tcpstack exited with {stack.proc.returncode} during "
                                    f"the test:\n{stack.log()}")
                    # SIGKILL: a graceful stop would linger a second over the connections
                    # the test left open, and shutdown is not what these tests are about.
                    # A killed stack cannot remove its control socket: that is done here.
                    stack.proc.kill()
                    stack.proc.wait(timeout=10)
                    netns_inode = os.stat(f"/run/netns/{ns.name}").st_ino
                    control_path("tcps0", netns=netns_inode).unlink(missing_ok=True)
                    stack.close()
                    # Shown by pytest only when the test failed ("Captured stdout teardown").
                    print(f"--- {stack.log_path.name} ---")
                    print(stack.log())
            finally:
                ns.delete()
    assert not died, "\n".join(died)


@pytest.fixture
def echo(start_rig: StartRig) -> Rig:
    """tcpstack serving echo (RFC 862) on port 8080."""
    return start_rig("--echo")


@pytest.fixture
def udp_echo(start_rig: StartRig) -> Rig:
    """tcpstack serving UDP echo (RFC 862) on port 8080."""
    return start_rig("--udp --echo")


@pytest.fixture
def discard(start_rig: StartRig) -> Rig:
    """tcpstack serving discard (RFC 863) on port 8080."""
    return start_rig("--discard")


# What tcpstack puts in a SYN-ACK: MSS is the TUN MTU (1500) less 40; the window scale option
# comes only when the SYN offered one, with shift 5 for the fixed 1 MiB receive buffer.
SYNACK_WIN = 65535  # never scaled in a SYN-ACK (RFC 7323 2.2): min(65535, free buffer)
SYNACK_OPTIONS_WS = [("MSS", 1460), ("NOP", None), ("WScale", 5)]
SYNACK_OPTIONS = [("MSS", 1460)]
# When the SYN offers SACK a stack may accept (Linux's layout) or not (RFC 2018).
SYNACK_OPTIONS_WS_MAYBE_SACK = OneOf(
    SYNACK_OPTIONS_WS,
    [("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 5)])
# The window field of a scaled connection with an empty receive buffer: 1 MiB >> 5.
WIN_EMPTY = 32768
# Our side of a scaled handshake: window scale 7, so a window field of 512 is 64 KiB.
PEER_OPTIONS_WS = [("MSS", 1460), ("WScale", 7)]
PEER_WIN = 512


def establish(rig: Rig, sport: int, *, isn: int = 1_000_000) -> Flow:
    """A three-way handshake with window scaling from `sport` to port 8080; afterwards both
    sides' next sequence number is 1 (relative)."""
    flow = rig.peer.flow(sport, PORT, isn=isn)
    flow.send("S", 0, win=65535, options=PEER_OPTIONS_WS)
    flow.expect("S.", 0, 1, win=SYNACK_WIN, options=SYNACK_OPTIONS_WS)
    flow.send(".", 1, 1, win=PEER_WIN)
    return flow


def roundtrip(flow: Flow, seq: int, rseq: int, data: bytes, *, ack: int | None = None) -> None:
    """The connection is alive: `data` sent at `seq` is acknowledged and echoed back from the
    stack's `rseq`, and the peer acks the echo. `ack` is what the peer's segment acknowledges,
    by default `rseq` (everything the stack sent).

    The ACK of the data may come alone, or ride on the echo after a delayed-ACK wait: that is
    the stack's choice (RFC 9293 3.8.6.3, RFC 5681 4.2), so it is allowed either way. The echo
    carries WIN_EMPTY, the whole 1 MiB: echo has read the data before it writes it back, so
    the buffer is empty; where that moves the right edge by an MSS or more (the first data,
    after a SYN-ACK that offered 64 KiB) the window opens to all of it, and otherwise the
    fewer than 32 bytes (one scale unit) taken since the last window round back up to it
    (RFC 9293 3.8.6.2.2: the edge stays, and rounding down would pull it left)."""
    assert len(data) < 32, "longer data would leave the echo's window below WIN_EMPTY"
    end = seq + len(data)
    flow.send("P.", seq, rseq if ack is None else ack, win=PEER_WIN, payload=data)
    flow.maybe_expect(".", rseq, end)
    flow.expect("P.", rseq, end, win=WIN_EMPTY, payload=data)
    flow.send(".", end, rseq + len(data), win=PEER_WIN)
