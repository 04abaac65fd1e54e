"""Programs written for Python's socket module, run on tcpstack.socket inside a namespace
(the facade's default stack: tcps0, 10.77.0.2, the kernel at 10.77.0.1). The kernel's
side (an HTTP server, line and echo servers, a peer that resets) runs here too, on kernel
sockets bound to 10.77.0.1 once the stack is up. `facade_client.py SCENARIO [ARGS]` prints
one JSON line of what it saw; tests/integration/test_socket_facade.py judges it."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import selectors
import socket as kernel
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import tcpstack.socket as ts

KERNEL = "10.77.0.1"
KERNEL6, STACK6 = "fd77::1", "fd77::2"
BLACKHOLE = "10.77.0.77"  # on the kernel's subnet, nobody's: the kernel does not forward


def kernel_server(port: int, serve: Callable[[kernel.socket], None]) -> kernel.socket:
    """A kernel listener on KERNEL:port; `serve(conn)` runs in a thread per connection."""
    listener = kernel.create_server((KERNEL, port))

    def accept_loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept_loop, daemon=True).start()
    return listener


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            kernel.create_connection((KERNEL, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {KERNEL}:{port}")


class FacadeHTTPConnection(http.client.HTTPConnection):
    """http.client's own class, its connection made by tcpstack.socket (HTTPConnection
    sets `_create_connection` per instance, so it is replaced there)."""

    sockets: ClassVar[list[str]] = []  # the module of each socket it connected with

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = ts.create_connection

    def connect(self) -> None:
        super().connect()
        FacadeHTTPConnection.sockets.append(type(self.sock).__module__)


class FacadeHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(FacadeHTTPConnection, req)


def http_fetch(directory: str, name: str) -> dict[str, Any]:
    ts.default_stack()  # the interface first: the kernel server binds its address
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", KERNEL, "8000",
                               "--directory", directory], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_listening(8000)
        # By passing the socket: http.client uses a connection it was given.
        conn = http.client.HTTPConnection(KERNEL, 8000, timeout=30)
        conn.sock = ts.create_connection((KERNEL, 8000), timeout=30)
        module = type(conn.sock).__module__
        conn.request("GET", f"/{name}")
        response = conn.getresponse()
        body = response.read()
        given = {"status": response.status, "sha256": hashlib.sha256(body).hexdigest(),
                 "length": len(body), "socket": module}
        conn.close()
        # Its own connect, with the facade's create_connection (and its TCP_NODELAY).
        conn = FacadeHTTPConnection(KERNEL, 8000, timeout=30)
        conn.request("GET", f"/{name}")
        nodelay = conn.sock.getsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY)
        conn_of_stack = [c for c in ts.default_stack().stack.network.connections.values()
                         if c.local_port == conn.sock.getsockname()[1]]
        body = conn.getresponse().read()
        created = {"sha256": hashlib.sha256(body).hexdigest(), "nodelay_option": nodelay,
                   "nodelay_on_connection": [c.snd.nodelay for c in conn_of_stack]}
        conn.close()
        opener = urllib.request.build_opener(FacadeHTTPHandler)
        with opener.open(f"http://{KERNEL}:8000/{name}", timeout=30) as reply:
            body = reply.read()
        urllib_result = {"status": reply.status, "sha256": hashlib.sha256(body).hexdigest(),
                         "sockets": FacadeHTTPConnection.sockets}
    finally:
        server.terminate()
        server.wait(10)
    return {"given": given, "created": created, "urllib": urllib_result}


def lines() -> dict[str, Any]:
    ts.default_stack()

    def serve(conn: kernel.socket) -> None:
        conn.sendall(b"one\ntwo\r\n" + b"x" * 100_000 + b"\nlast")
        conn.close()
    kernel_server(7100, serve)
    sock = ts.create_connection((KERNEL, 7100), timeout=10)
    with sock, sock.makefile("rb") as f:
        got = [f.readline().decode(), f.readline().decode(), len(f.readline()), f.read().decode()]
    return {"lines": got}


def timeouts() -> dict[str, Any]:
    ts.default_stack()
    result: dict[str, Any] = {}
    sock = ts.socket(ts.AF_INET, ts.SOCK_STREAM)
    sock.settimeout(1.0)
    started = time.monotonic()
    try:
        sock.connect((BLACKHOLE, 80))
        result["blackhole"] = "connected?"
    except ts.timeout as exc:
        result["blackhole"] = type(exc).__name__
    result["blackhole_seconds"] = time.monotonic() - started
    sock.close()

    held: list[kernel.socket] = []
    kernel_server(7200, held.append)  # accepts and says nothing
    sock = ts.create_connection((KERNEL, 7200), timeout=10)
    sock.settimeout(0.5)
    started = time.monotonic()
    try:
        sock.recv(10)
        result["recv"] = "data?"
    except ts.timeout as exc:
        result["recv"] = type(exc).__name__
    result["recv_seconds"] = time.monotonic() - started
    sock.close()

    try:
        ts.create_connection((KERNEL, 7299), timeout=10)
        result["refused"] = "connected?"
    except ConnectionRefusedError as exc:
        result["refused"] = [type(exc).__name__, exc.errno]
    return result


def reset() -> dict[str, Any]:
    ts.default_stack()
    ready = threading.Event()

    def serve(conn: kernel.socket) -> None:
        conn.sendall(b"partial")
        ready.wait(10)
        conn.setsockopt(kernel.SOL_SOCKET, kernel.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # SO_LINGER 0: a RST, not a FIN
    kernel_server(7300, serve)
    sock = ts.create_connection((KERNEL, 7300), timeout=10)
    got = sock.recv(100)
    ready.set()
    try:
        more = sock.recv(100)
        error: list[Any] = ["none", more.decode()]
    except ConnectionResetError as exc:
        error = [type(exc).__name__, exc.errno]
    sock.close()
    return {"got": got.decode(), "error": error}


def options() -> dict[str, Any]:
    ts.default_stack()
    held: list[kernel.socket] = []
    kernel_server(7400, held.append)
    sock = ts.socket()
    sock.settimeout(10)
    sock.setsockopt(ts.SOL_SOCKET, ts.SO_RCVBUF, 8192)
    sock.connect((KERNEL, 7400))
    before = stat_connection(sock)
    seen_by_kernel = kernel_send_window(7400)
    sock.setsockopt(ts.SOL_SOCKET, ts.SO_RCVBUF, 4096)
    sock.setsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY, 1)
    after = stat_connection(sock)
    conn = next(c for c in ts.default_stack().stack.network.connections.values()
                if c.remote_port == 7400)
    result = {"rcv_buf_before": before["rcv_buf"], "rcv_space_before": before["rcv_space"],
              "rcv_buf_after": after["rcv_buf"], "nodelay": conn.snd.nodelay,
              "kernel_snd_wnd": seen_by_kernel,
              "getsockopt": [sock.getsockopt(ts.SOL_SOCKET, ts.SO_RCVBUF),
                             sock.getsockopt(ts.IPPROTO_TCP, ts.TCP_NODELAY)]}
    sock.close()
    return result


def kernel_send_window(port: int) -> int:
    """The window the kernel's end of the connection on `port` was given (ss -ti)."""
    out = subprocess.run(["ss", "-tin", "state", "established", "sport", f"= :{port}"],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    found = re.search(r"\bsnd_wnd:(\d+)", out)
    assert found, out
    return int(found.group(1))


def stat_connection(sock: ts.socket) -> dict[str, Any]:
    """This socket's connection as `tcpstack stat --json` shows it."""
    out = subprocess.run([str(Path(sys.executable).parent / "tcpstack"), "stat", "--json"],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    host, port = sock.getsockname()[:2]
    local = f"{host}:{port}"
    return next(c for c in json.loads(out)["connections"] if c["local"] == local)


def echo_loop(server: ts.socket, stop: threading.Event) -> None:
    """The selectors echo server of the Python docs' shape, on facade sockets."""
    sel = selectors.DefaultSelector()
    server.setblocking(False)
    sel.register(server, selectors.EVENT_READ, None)
    while not stop.is_set():
        for key, _ in sel.select(0.1):
            if key.data is None:
                conn, _ = server.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, bytearray())
                continue
            sock: Any = key.fileobj
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if data:
                sock.setblocking(True)  # echo it whole, then back to the loop
                sock.sendall(data)
                sock.setblocking(False)
            else:
                sel.unregister(sock)
                sock.close()
    sel.close()


def selector_clients(address: tuple[str, int], count: int, size: int) -> list[bool]:
    """`count` non-blocking connections driven by one selector, each sending `size` bytes
    and reading them back: the client side of the echo."""
    sel = selectors.DefaultSelector()
    payloads = [bytes([i + 1]) * size for i in range(count)]
    state: dict[int, dict[str, Any]] = {}
    for i in range(count):
        sock = ts.socket()
        sock.setblocking(False)
        assert sock.connect_ex(address) in (0, 115)  # EINPROGRESS
        state[i] = {"sock": sock, "out": memoryview(payloads[i]), "in": bytearray()}
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
    deadline = time.monotonic() + 60
    while sel.get_map() and time.monotonic() < deadline:
        for key, events in sel.select(1):
            s = state[key.data]
            sock = s["sock"]
            if events & selectors.EVENT_WRITE and s["out"]:
                try:
                    sent = sock.send(s["out"][:65536])
                    s["out"] = s["out"][sent:]
                except BlockingIOError:
                    pass
                if not s["out"]:
                    sock.shutdown(ts.SHUT_WR)
                    sel.modify(sock, selectors.EVENT_READ, key.data)
            if events & selectors.EVENT_READ:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                s["in"] += data
                if not data:
                    sel.unregister(sock)
                    sock.close()
    sel.close()
    return [bytes(state[i]["in"]) == payloads[i] for i in range(count)]


def selectors_echo() -> dict[str, Any]:
    ts.default_stack()

    def kernel_echo(conn: kernel.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
    kernel_server(7500, kernel_echo)
    server = ts.create_server(("", 7))
    stop = threading.Event()
    loop = threading.Thread(target=echo_loop, args=(server, stop), daemon=True)
    loop.start()

    def kernel_client(i: int, results: list[bool]) -> None:
        payload = bytes([65 + i]) * 300_000
        with kernel.create_connection(("10.77.0.2", 7), timeout=30) as s:
            def send() -> None:
                s.sendall(payload)
                s.shutdown(kernel.SHUT_WR)
            sender = threading.Thread(target=send)
            sender.start()
            got = b""
            while chunk := s.recv(65536):
                got += chunk
            sender.join()
        results.append(got == payload)
    served: list[bool] = []
    clients = [threading.Thread(target=kernel_client, args=(i, served)) for i in range(4)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(60)
    stop.set()
    loop.join(10)
    server.close()
    return {"facade_server": served,
            "facade_clients": selector_clients((KERNEL, 7500), 4, 300_000)}


def udp() -> dict[str, Any]:
    """A facade UDP client of a kernel echo server, a facade UDP echo server for a kernel
    client (select-driven), and a connected facade socket refused by a closed port."""
    ts.default_stack()
    kernel_echo = kernel.socket(kernel.AF_INET, kernel.SOCK_DGRAM)
    kernel_echo.bind((KERNEL, 7600))

    def echo_kernel() -> None:
        while True:
            data, addr = kernel_echo.recvfrom(65536)
            kernel_echo.sendto(data.upper(), addr)
    threading.Thread(target=echo_kernel, daemon=True).start()
    client = ts.socket(ts.AF_INET, ts.SOCK_DGRAM)
    client.settimeout(10)
    echoed = []
    for word in (b"alpha", b"beta", b"x" * 1400):
        client.sendto(word, (KERNEL, 7600))
        data, source = client.recvfrom(65536)
        echoed.append([len(data), data[:5].decode(), list(source)])
    client.close()

    server = ts.socket(ts.AF_INET, ts.SOCK_DGRAM)
    server.bind(("", 7700))
    stop = threading.Event()

    def echo_facade() -> None:
        sel = selectors.DefaultSelector()
        sel.register(server, selectors.EVENT_READ)
        while not stop.is_set():
            if sel.select(0.1):
                data, addr = server.recvfrom(65536)
                server.sendto(data[::-1], addr)
        sel.close()
    serving = threading.Thread(target=echo_facade)
    serving.start()
    peer = kernel.socket(kernel.AF_INET, kernel.SOCK_DGRAM)
    peer.settimeout(10)
    peer.bind((KERNEL, 0))
    served = []
    for word in (b"stressed", b"drawer"):
        peer.sendto(word, ("10.77.0.2", 7700))
        data, source = peer.recvfrom(100)
        served.append([data.decode(), list(source)])
    stop.set()
    serving.join(10)
    server.close()

    refused = ts.socket(ts.AF_INET, ts.SOCK_DGRAM)
    refused.settimeout(2)
    refused.connect((KERNEL, 7699))
    refused.send(b"anyone?")
    try:
        refused.recv(100)
        outcome: list[Any] = ["answered"]
    except ConnectionRefusedError as exc:
        outcome = [type(exc).__name__, exc.errno]
    refused.close()
    return {"echoed": echoed, "served": served, "refused": outcome}


def leave(port: str, size: str, closing: str) -> dict[str, Any]:
    """Send `size` bytes to a kernel receiver on port `port` and exit at once: with the
    socket closed ("close") or left open ("open"), what it wrote must still arrive."""
    ts.default_stack()
    data = random.Random(7).randbytes(int(size))
    deadline = time.monotonic() + 15
    while True:
        try:
            sock = ts.create_connection((KERNEL, int(port)), timeout=10)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    sock.sendall(data)
    if closing == "close":
        sock.close()
    return {"sha256": hashlib.sha256(data).hexdigest()}


def ipv6() -> dict[str, Any]:
    """AF_INET6 facade sockets: a TCP client of a kernel server at [fd77::1], a TCP listener
    a kernel client reaches at [fd77::2], and a UDP client of a kernel echo server."""
    ts.default_stack()
    listener = kernel.create_server((KERNEL6, 7800), family=kernel.AF_INET6)

    def upper_once() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())
    threading.Thread(target=upper_once, daemon=True).start()
    client = ts.create_connection((KERNEL6, 7800), timeout=10)
    client.sendall(b"over ipv6")
    reply = client.recv(100)
    connected = {"reply": reply.decode(), "family": int(client.family),
                 "peer": list(client.getpeername())[:2],
                 "local": client.getsockname()[0]}
    client.close()

    server = ts.socket(ts.AF_INET6, ts.SOCK_STREAM)
    server.bind(("", 7801))
    server.listen()
    server.settimeout(10)
    peer = kernel.create_connection((STACK6, 7801), timeout=10)
    conn, addr = server.accept()
    peer.sendall(b"ping6")
    got = conn.recv(100)
    conn.sendall(got[::-1])
    accepted = {"got": got.decode(), "echo": peer.recv(100).decode(),
                "from": addr[0] == peer.getsockname()[0]}
    for s in (peer, conn, server):
        s.close()

    echo = kernel.socket(kernel.AF_INET6, kernel.SOCK_DGRAM)
    echo.bind((KERNEL6, 7802))

    def echo_once() -> None:
        data, addr = echo.recvfrom(100)
        echo.sendto(data * 2, addr)
    threading.Thread(target=echo_once, daemon=True).start()
    udp6 = ts.socket(ts.AF_INET6, ts.SOCK_DGRAM)
    udp6.settimeout(10)
    udp6.sendto(b"dgram", (KERNEL6, 7802))
    data, source = udp6.recvfrom(100)
    udp6.close()
    return {"connected": connected, "accepted": accepted,
            "udp": [data.decode(), list(source)[:2]]}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "leave": leave, "ipv6": ipv6,
    "udp": udp,
    "http": http_fetch, "lines": lines, "timeouts": timeouts, "reset": reset,
    "options": options, "selectors": selectors_echo}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](*sys.argv[2:])), flush=True)
