"""tcpstack.socket without a network: two whole Stacks back to back, each in its background
thread, their TUN devices the two ends of one SOCK_SEQPACKET pair (stack A 10.77.0.2 is the
clients', stack B 10.77.0.1 the servers'). Every facade call runs as in a real program:
the sockets, the bridges and the threads are real; only the wire is a socket pair."""

from __future__ import annotations

import errno
import os
import select
import selectors
import shutil
import socket as kernel
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tcpstack.socket as ts
from tcpstack.api.background import StackThread
from tcpstack.api.streams import Stack
from tcpstack.net.checksum import Bytes
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection

TIMEOUT = 5.0
A_ADDR, B_ADDR = "10.77.0.2", "10.77.0.1"
BLACKHOLE = "10.77.0.9"  # no stack has it: B counts the SYNs as ip_not_for_us


class WiredTun:
    """One end of the wire, shaped as TunDevice is to a Stack that was handed it."""

    offload = False

    def __init__(self, end: kernel.socket) -> None:
        self._end = end
        end.setblocking(False)
        self.fd = end.fileno()

    def read(self) -> tuple[bytes, bool]:
        return self._end.recv(65536), False

    def write(self, headers: bytes, payload: Bytes = b"", gso_size: int = 0) -> None:
        self._end.sendmsg((headers, payload))

    def queue_drops(self) -> int | None:
        return None

    def close(self) -> None:
        self._end.close()


@dataclass
class Wire:
    a: StackThread
    b: StackThread

    def connection(self, thread: StackThread) -> Connection:
        """The one established connection of `thread`'s stack."""
        conns = thread.call(lambda: list(thread.stack.network.connections.values()))
        assert len(conns) == 1, conns
        conn: Connection = conns[0]
        return conn


@pytest.fixture
def wire() -> Iterator[Wire]:
    end_a, end_b = kernel.socketpair(kernel.AF_UNIX, kernel.SOCK_SEQPACKET)
    config = TcpConfig(msl=0.5)
    stack_a = Stack(address=A_ADDR, kernel_address=f"{B_ADDR}/24", control=False,
                    tun=WiredTun(end_a), config=config)  # type: ignore[arg-type]
    stack_b = Stack(address=B_ADDR, kernel_address=f"{A_ADDR}/24", control=False,
                    tun=WiredTun(end_b), config=TcpConfig(msl=0.5))  # type: ignore[arg-type]
    a = StackThread(stack_a)
    b = StackThread(stack_b)
    try:
        yield Wire(a, b)
    finally:
        a.close(grace=1.0)
        b.close(grace=1.0)


def _server(wire: Wire, port: int = 5000) -> ts.socket:
    server = ts.socket(ts.AF_INET, ts.SOCK_STREAM, stack=wire.b)
    server.settimeout(TIMEOUT)
    server.bind(("", port))
    server.listen()
    return server


def _pair(wire: Wire, port: int = 5000) -> tuple[ts.socket, ts.socket, ts.socket]:
    server = _server(wire, port)
    client = ts.socket(stack=wire.a)
    client.settimeout(TIMEOUT)
    client.connect((B_ADDR, port))
    accepted, _ = server.accept()
    accepted.settimeout(TIMEOUT)
    return server, client, accepted


def _readable(sock: kernel.socket, wait: float = 0.0) -> bool:
    return bool(select.select([sock], [], [], wait)[0])


def test_the_module_is_shaped_like_socket() -> None:
    assert ts.timeout is kernel.timeout and ts.error is OSError
    assert ts.gaierror is kernel.gaierror
    assert (ts.AF_INET, ts.SOCK_STREAM, ts.TCP_NODELAY, ts.SHUT_WR) == \
        (kernel.AF_INET, kernel.SOCK_STREAM, kernel.TCP_NODELAY, kernel.SHUT_WR)
    assert ts.IP_TOS == kernel.IP_TOS  # one the module does not list, from the socket module
    assert ts._GLOBAL_DEFAULT_TIMEOUT is kernel._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        ts.no_such_thing  # noqa: B018


def test_a_socket_is_a_real_socket_before_any_stack_exists() -> None:
    with ts.socket() as sock:  # makes no stack: nothing asked for one yet
        assert isinstance(sock, kernel.socket)
        assert (sock.family, sock.type, sock.proto) == (kernel.AF_INET, kernel.SOCK_STREAM, 0)
        assert sock.getsockname() == ("0.0.0.0", 0)
        with pytest.raises(OSError) as info:
            sock.getpeername()
        assert info.value.errno == errno.ENOTCONN
        with pytest.raises(OSError) as info:
            sock.recv(10)
        assert info.value.errno == errno.ENOTCONN
    assert sock.fileno() == -1
    with pytest.raises(OSError) as info:
        ts.socket(kernel.AF_UNIX)
    assert info.value.errno == errno.EAFNOSUPPORT


def test_a_stack_that_cannot_come_up_is_an_oserror() -> None:
    end, other = kernel.socketpair(kernel.AF_UNIX, kernel.SOCK_SEQPACKET)
    stack = Stack(address=A_ADDR, kernel_address=f"{B_ADDR}/24", control=False,
                  tun=WiredTun(end), pcap="/nonexistent/dir/run.pcap")  # type: ignore[arg-type]
    other.close()
    with ts.socket(stack=stack) as sock, pytest.raises(OSError) as info:
        sock.connect((B_ADDR, 80))
    assert info.value.errno == errno.ENETDOWN
    assert "tcpstack cannot come up" in str(info.value)


def test_connect_accept_and_data_both_ways(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    assert client.getpeername() == (B_ADDR, 5000)
    local = client.getsockname()
    assert local[0] == A_ADDR and 32768 <= local[1] < 61000
    assert accepted.getpeername() == local
    assert accepted.getsockname() == (B_ADDR, 5000)
    up = bytes(range(256)) * 4000  # more than the socketpairs and windows hold at once
    sender = threading.Thread(target=client.sendall, args=(up,))
    sender.start()
    got = bytearray()
    while len(got) < len(up):
        got += accepted.recv(65536)
    sender.join(TIMEOUT)
    assert bytes(got) == up
    accepted.sendall(b"down")
    assert client.recv(100) == b"down"
    for sock in (server, client, accepted):
        sock.close()


def test_fileno_is_readable_exactly_when_recv_has_data(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    assert not _readable(client)
    accepted.sendall(b"x")
    assert _readable(client, TIMEOUT)
    sel = selectors.DefaultSelector()
    sel.register(client, selectors.EVENT_READ)
    assert [key.fileobj for key, _ in sel.select(TIMEOUT)] == [client]
    assert client.recv(10) == b"x"
    assert sel.select(0) == []
    sel.close()
    for sock in (server, client, accepted):
        sock.close()


def test_half_close_travels_both_ways(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    client.sendall(b"request")
    client.shutdown(ts.SHUT_WR)
    assert accepted.recv(100) == b"request"
    assert accepted.recv(100) == b""  # the FIN
    accepted.sendall(b"answer after the FIN")
    accepted.close()
    got = b""
    while chunk := client.recv(100):
        got += chunk
    assert got == b"answer after the FIN"
    client.close()
    server.close()


def test_makefile_reads_lines(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    accepted.sendall(b"first line\nsecond line\nno newline")
    accepted.shutdown(ts.SHUT_WR)
    with client.makefile("rb") as lines:
        assert lines.readline() == b"first line\n"
        assert lines.readline() == b"second line\n"
        assert lines.read() == b"no newline"
    writer = client.makefile("w", encoding="ascii")
    writer.write("written through a file\n")
    writer.flush()
    writer.close()
    assert accepted.makefile("rb").readline() == b"written through a file\n"
    for sock in (server, client, accepted):
        sock.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_runs_over_facade_sockets(wire: Wire, tmp_path: Path) -> None:
    """ssl wraps a facade socket as it wraps a kernel one (it takes the descriptor over),
    so https through http.client or urllib works on the facade too."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={B_ADDR}", "-addext", f"subjectAltName=IP:{B_ADDR}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    server = _server(wire)
    served: list[bytes] = []

    def serve() -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        conn, _ = server.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            served.append(tls.recv(100))
            tls.sendall(b"secret answer")
    thread = threading.Thread(target=serve)
    thread.start()
    context = ssl.create_default_context(cafile=str(cert))
    client = ts.create_connection((B_ADDR, 5000), timeout=TIMEOUT, stack=wire.a)
    with context.wrap_socket(client, server_hostname=B_ADDR) as tls:
        tls.sendall(b"secret question")
        assert tls.recv(100) == b"secret answer"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    thread.join(TIMEOUT)
    assert served == [b"secret question"]
    server.close()


def test_a_forked_child_uses_its_sockets_data_path_only(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    pid = os.fork()
    if pid == 0:  # the child: what ForkingMixIn's handlers do, and no more
        status = 1
        try:
            accepted.sendall(accepted.recv(100).upper())
            try:
                accepted.setsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY, 1)
            except RuntimeError:
                status = 0  # refused at once, not a wait for a loop it does not have
            accepted.close()
        finally:
            os._exit(status)
    client.sendall(b"to the child")
    assert client.recv(100) == b"TO THE CHILD"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY, 1)  # the parent's still work
    for sock in (server, client, accepted):
        sock.close()


def test_refused_connect_has_the_kernels_errno(wire: Wire) -> None:
    client = ts.socket(stack=wire.a)
    client.settimeout(TIMEOUT)
    with pytest.raises(ConnectionRefusedError) as info:
        client.connect((B_ADDR, 5999))
    assert info.value.errno == errno.ECONNREFUSED
    assert client.connect_ex((B_ADDR, 5999)) == errno.ECONNREFUSED
    client.close()


def test_connect_to_a_blackhole_times_out_within_the_socket_timeout(wire: Wire) -> None:
    client = ts.socket(stack=wire.a)
    client.settimeout(0.3)
    started = time.monotonic()
    with pytest.raises(ts.timeout):
        client.connect((BLACKHOLE, 80))
    assert 0.3 <= time.monotonic() - started < 2.0
    assert client.connect_ex((BLACKHOLE, 80)) == errno.EAGAIN  # as socket.connect_ex
    # The abandoned attempts are gone from the stack, not left retransmitting SYNs.
    assert wire.a.call(lambda: len(wire.a.stack.network.connections)) == 0
    client.close()


def test_connect_without_a_timeout_gives_up_with_etimedout(wire: Wire) -> None:
    def few_retries() -> None:
        config = wire.a.stack.config
        config.syn_retries, config.initial_rto = 1, 0.1
    wire.a.call(few_retries)
    client = ts.socket(stack=wire.a)
    assert client.gettimeout() is None
    with pytest.raises(TimeoutError) as info:
        client.connect((BLACKHOLE, 80))  # the SYN and one retransmission go unanswered
    assert info.value.errno == errno.ETIMEDOUT
    assert client.connect_ex((BLACKHOLE, 80)) == errno.ETIMEDOUT
    client.close()


def test_recv_times_out_as_a_kernel_socket_does(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    client.settimeout(0.2)
    started = time.monotonic()
    with pytest.raises(ts.timeout):
        client.recv(10)
    assert 0.2 <= time.monotonic() - started < 1.5
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(10)
    for sock in (server, client, accepted):
        sock.close()


def test_a_reset_raises_connection_reset_once(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    conn = wire.connection(wire.b)
    wire.b.call(lambda: conn.abort(wire.b.stack.driver.now()))  # type: ignore[union-attr]
    with pytest.raises(ConnectionResetError) as info:
        client.recv(100)
    assert info.value.errno == errno.ECONNRESET
    assert client.recv(100) == b""  # reported once, as a kernel's pending error
    with pytest.raises(BrokenPipeError):
        client.send(b"x")
    for sock in (server, client, accepted):
        sock.close()


def test_so_linger_zero_makes_close_a_reset(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    client.setsockopt(ts.SOL_SOCKET, ts.SO_LINGER, struct.pack("ii", 1, 0))
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_LINGER, 8) == struct.pack("ii", 1, 0)
    client.close()
    with pytest.raises(ConnectionResetError):
        accepted.recv(100)
    server.close()
    accepted.close()


def test_a_reset_under_a_blocked_sendall_raises_connection_reset(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    conn = wire.connection(wire.b)
    timer = threading.Timer(0.3, lambda: wire.b.call(
        lambda: conn.abort(wire.b.stack.driver.now())))  # type: ignore[union-attr]
    timer.start()
    with pytest.raises(ConnectionResetError):
        client.sendall(b"x" * 50_000_000)  # the peer never reads: this blocks until reset
    timer.join()
    for sock in (server, client, accepted):
        sock.close()


def test_socket_options_reach_the_connection(wire: Wire) -> None:
    server = _server(wire)
    client = ts.socket(stack=wire.a)
    client.settimeout(TIMEOUT)
    client.setsockopt(ts.SOL_SOCKET, ts.SO_RCVBUF, 16384)  # before: it sizes the window
    client.setsockopt(ts.SOL_SOCKET, ts.SO_REUSEADDR, 1)
    client.connect((B_ADDR, 5000))
    accepted, _ = server.accept()
    conn = wire.connection(wire.a)
    assert conn.rcv.capacity == 16384 and conn.rcv.tuning is None
    assert wire.connection(wire.b).snd.wnd <= 16384  # what B was told
    assert not conn.snd.nodelay and conn.timers.keepalive is None
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY, 1)
    client.setsockopt(ts.SOL_SOCKET, ts.SO_KEEPALIVE, 1)
    client.setsockopt(ts.SOL_SOCKET, ts.SO_SNDBUF, 50_000)
    assert conn.snd.nodelay and conn.timers.keepalive is not None
    assert conn.snd.buffer.capacity == 50_000
    assert conn.config.keepalive and not wire.a.stack.config.keepalive  # its own copy
    client.setsockopt(ts.IPPROTO_TCP, kernel.TCP_KEEPIDLE, 30)
    client.setsockopt(ts.IPPROTO_TCP, kernel.TCP_KEEPCNT, 3)
    now = wire.a.call(lambda: wire.a.stack.driver.now())
    assert (conn.config.keepalive_idle, conn.config.keepalive_count) == (30, 3)
    assert now < conn.timers.keepalive <= now + 30
    assert client.getsockopt(ts.IPPROTO_TCP, kernel.TCP_KEEPINTVL) == 75  # the default
    assert client.getsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY) == 1
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_RCVBUF) == 16384
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_KEEPALIVE, 4) == b"\x01\0\0\0"
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_TYPE) == ts.SOCK_STREAM
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_ERROR) == 0
    assert accepted.getsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY) == 0
    with pytest.raises(OSError) as info:
        client.setsockopt(ts.IPPROTO_TCP, kernel.TCP_CORK, 1)
    assert info.value.errno == errno.ENOPROTOOPT
    for sock in (server, client, accepted):
        sock.close()


def test_options_set_on_a_listener_reach_the_connections_it_accepts(wire: Wire) -> None:
    server = ts.socket(stack=wire.b)
    server.settimeout(TIMEOUT)
    server.setsockopt(ts.SOL_SOCKET, ts.SO_RCVBUF, 20_000)  # before listen: from the SYN on
    server.bind(("", 5000))
    server.listen()
    server.setsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY, 1)  # after: from accept on
    client = ts.create_connection((B_ADDR, 5000), timeout=TIMEOUT, stack=wire.a)
    accepted, _ = server.accept()
    conn = wire.connection(wire.b)
    assert (conn.rcv.capacity, conn.snd.nodelay) == (20_000, True)
    assert accepted.getsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY) == 1
    for sock in (server, client, accepted):
        sock.close()


def test_a_listener_is_readable_exactly_while_connections_wait(wire: Wire) -> None:
    server = _server(wire)
    assert server.getsockopt(ts.SOL_SOCKET, ts.SO_ACCEPTCONN) == 1
    assert not _readable(server)
    clients = [ts.create_connection((B_ADDR, 5000), timeout=TIMEOUT, stack=wire.a)
               for _ in range(2)]
    assert _readable(server, TIMEOUT)
    first, _ = server.accept()
    assert _readable(server, TIMEOUT)  # one more waits (or is about to: B sees its ACK)
    second, peer = server.accept()
    assert peer == clients[1].getsockname()
    assert not _readable(server)
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.accept()
    server.settimeout(0.2)
    with pytest.raises(ts.timeout):
        server.accept()
    for sock in (server, first, second, *clients):
        sock.close()


def test_bind_checks_the_address_and_port(wire: Wire) -> None:
    server = _server(wire)
    other = ts.socket(stack=wire.b)
    with pytest.raises(OSError) as info:
        other.bind(("", 5000))
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        other.bind(("192.0.2.1", 5001))
    assert info.value.errno == errno.EADDRNOTAVAIL
    other.bind((B_ADDR, 0))
    port = other.getsockname()[1]
    assert 32768 <= port < 61000
    other.listen(5)
    client = ts.create_connection((B_ADDR, port), timeout=TIMEOUT, stack=wire.a)
    accepted, _ = other.accept()
    assert accepted.getsockname() == (B_ADDR, port)
    for sock in (server, other, client, accepted):
        sock.close()


def test_a_closed_listener_resets_what_waits_and_refuses_more(wire: Wire) -> None:
    server = _server(wire)
    waiting = ts.create_connection((B_ADDR, 5000), timeout=TIMEOUT, stack=wire.a)
    assert _readable(server, TIMEOUT)
    server.close()
    with pytest.raises(ConnectionResetError):
        waiting.recv(10)
    with pytest.raises(ConnectionRefusedError):
        ts.create_connection((B_ADDR, 5000), timeout=TIMEOUT, stack=wire.a)
    waiting.close()


def _writable(sock: kernel.socket, wait: float = 0.0) -> bool:
    return bool(select.select([], [sock], [], wait)[1])


def test_a_non_blocking_connect_is_writable_once_connected(wire: Wire) -> None:
    server = _server(wire)
    client = ts.socket(stack=wire.a)
    client.setblocking(False)
    assert client.connect_ex((B_ADDR, 5000)) == errno.EINPROGRESS
    assert _writable(client, TIMEOUT)
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_ERROR) == 0
    assert client.getpeername() == (B_ADDR, 5000)
    accepted, _ = server.accept()
    accepted.settimeout(TIMEOUT)
    client.setblocking(True)
    client.sendall(b"after the filler" * 100_000)  # the descriptor's buffer is back
    got = b""
    while len(got) < 1_600_000:
        got += accepted.recv(65536)
    assert got == b"after the filler" * 100_000  # and the filler never reached the peer
    for sock in (server, client, accepted):
        sock.close()


def test_a_connecting_socket_is_not_writable(wire: Wire) -> None:
    client = ts.socket(stack=wire.a)
    client.setblocking(False)
    assert client.connect_ex((BLACKHOLE, 80)) == errno.EINPROGRESS
    assert not _writable(client, 0.3)  # as a kernel socket in SYN_SENT
    assert not _readable(client)
    with pytest.raises(BlockingIOError):
        client.send(b"too early")
    with pytest.raises(OSError) as info:
        client.connect((BLACKHOLE, 80))
    assert info.value.errno == errno.EALREADY
    client.close()
    # Closing abandoned the attempt: the stack forgets it.
    deadline = time.monotonic() + TIMEOUT
    while wire.a.call(lambda: len(wire.a.stack.network.connections)) and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    assert wire.a.call(lambda: len(wire.a.stack.network.connections)) == 0


def test_a_failed_non_blocking_connect_reports_through_so_error(wire: Wire) -> None:
    client = ts.socket(stack=wire.a)
    client.setblocking(False)
    with pytest.raises(BlockingIOError) as info:
        client.connect((B_ADDR, 5999))
    assert info.value.errno == errno.EINPROGRESS
    assert _readable(client, TIMEOUT)  # the failure ends it as a kernel's does
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_ERROR) == errno.ECONNREFUSED
    assert client.getsockopt(ts.SOL_SOCKET, ts.SO_ERROR) == 0  # read once
    client.close()


def test_closing_sends_what_was_written_then_a_fin(wire: Wire) -> None:
    server, client, accepted = _pair(wire)
    data = b"last words " * 20_000
    client.sendall(data)
    client.close()
    got = b""
    while chunk := accepted.recv(65536):
        got += chunk
    assert got == data
    server.close()
    accepted.close()


# ---------------------------------------------------------------------- UDP


def _udp(thread: StackThread, port: int = 0) -> ts.socket:
    sock = ts.socket(ts.AF_INET, ts.SOCK_DGRAM, stack=thread)
    sock.settimeout(TIMEOUT)
    if port:
        sock.bind(("", port))
    return sock


def test_a_datagram_socket_is_a_udp_socket() -> None:
    with ts.socket(ts.AF_INET, ts.SOCK_DGRAM) as sock:
        assert isinstance(sock, ts.socket)
        assert (sock.type, sock.getsockopt(ts.SOL_SOCKET, kernel.SO_PROTOCOL)) == \
            (ts.SOCK_DGRAM, ts.IPPROTO_UDP)
        with pytest.raises(OSError) as info:
            sock.listen()
        assert info.value.errno == errno.EOPNOTSUPP
        with pytest.raises(OSError) as info:
            sock.send(b"to whom?")
        assert info.value.errno == errno.EDESTADDRREQ


def test_datagrams_keep_their_boundaries_and_addresses(wire: Wire) -> None:
    server = _udp(wire.b, 5300)
    client = _udp(wire.a)
    assert not _readable(server)
    with pytest.raises(OSError) as info:
        client.sendto(b"x" * 1473, (B_ADDR, 5300))  # the MTU is 1500: no fragmenting
    assert info.value.errno == errno.EMSGSIZE
    for payload in (b"one", b"", b"three" * 294):
        assert client.sendto(payload, (B_ADDR, 5300)) == len(payload)
    source = client.getsockname()
    assert source[0] == A_ADDR and source[1] != 0  # bound by its first sendto
    assert _readable(server, TIMEOUT)
    assert server.recvfrom(100) == (b"one", source)
    assert server.recvfrom(100) == (b"", source)
    assert server.recvfrom(10) == (b"threethree", source)  # cut as a kernel cuts it
    assert not _readable(server)
    server.sendto(b"reply", source)
    buffer = bytearray(16)
    assert client.recvfrom_into(buffer) == (5, (B_ADDR, 5300))
    assert bytes(buffer[:5]) == b"reply"
    server.settimeout(0.2)
    with pytest.raises(ts.timeout):
        server.recvfrom(100)
    server.close()
    client.close()


def test_a_connected_datagram_socket_sends_and_hears_refusal(wire: Wire) -> None:
    server = _udp(wire.b, 5301)
    client = _udp(wire.a)
    client.connect((B_ADDR, 5301))
    assert client.getpeername() == (B_ADDR, 5301)
    client.send(b"hello")
    data, source = server.recvfrom(100)
    assert data == b"hello"
    server.sendto(b"back", source)
    assert client.recv(100) == b"back"
    server.close()
    deadline = time.monotonic() + TIMEOUT
    # The port is closed now: B answers with port unreachable, which the connected
    # socket's next recv raises.
    while True:
        client.send(b"anyone?")
        try:
            client.settimeout(0.3)
            client.recv(100)
        except ConnectionRefusedError as exc:
            assert exc.errno == errno.ECONNREFUSED
            break
        except ts.timeout:
            assert time.monotonic() < deadline, "no port unreachable came back"
    client.close()
