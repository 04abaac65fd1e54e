#!/usr/bin/env python3
"""tcpstack's benchmark (`make bench`, as root): one table of every measurement, tcpstack
beside the Linux kernel running the same asyncio application, and nginx on the kernel where
the measurement is HTTP.

- **tcpstack**: `tcpstack listen 80 --http DIR | --echo | --discard` on its TUN device in one
  network namespace; the clients run in the same namespace and reach it at 10.77.0.2 through
  the kernel side 10.77.0.1/24 (the kernel's TCP in the client, tcpstack's in the server).
- **kernel, same app**: scripts/kernel_app.py serves the same handlers from tcpstack.services
  with asyncio.start_server at 10.78.0.1 in a second namespace; the clients run in a third,
  joined by a veth pair 10.78.0.1/24 <-> 10.78.0.2/24: the kernel's TCP on both ends.
- **nginx**: the Debian package with a config of ours, at 10.78.0.1:8080 in that namespace.

Each server is started for one measurement and stopped after it; the runs (`--runs`) are
interleaved (run 1 of every measurement and server, then run 2, ...) and the table gives
medians. `--only` picks measurements, `--quick` shrinks every size for a one-minute check.
The table goes between the bench markers of docs/PERFORMANCE.md (`--output`); the rest of
the file is kept.

Everything lives in namespaces created here (no default routes, nothing leaves the machine,
the root namespace's interfaces are never touched) and is removed in `finally`, also on
Ctrl-C or SIGTERM, together with the processes started here and the temp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

# Siblings in scripts/, which Python puts first on sys.path for `python scripts/bench.py`.
import bench_report as rep
import build_compiled
from bench_env import (
    BenchError,
    Process,
    Processes,
    cpu_seconds,
    ip,
    machine,
    revision,
    rss_bytes,
    run_quiet,
    tail,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "docs" / "PERFORMANCE.md"

STACK_ADDR, TUN_IFACE = "10.77.0.2", "tcps0"  # the CLI defaults
KERNEL_SERVER = ("veth-srv", "10.78.0.1")
KERNEL_CLIENT = ("veth-cli", "10.78.0.2")
PORT, NGINX_PORT = 80, 8080
SMALL, BIG, LOSSY = "small.txt", "big.bin", "lossy.bin"
SMALL_SIZE = 100
IMPAIR = rep.IMPAIR_TEXT
# One source address holds about 28,000 ephemeral ports by default, 64,000 with the range
# widened (below); an idle client opens at most this many, from an address of its own.
CONNECTIONS_PER_SOURCE = 18000
# An idle client holds one file per connection, and a container may not let root raise the
# hard limit of open files: one client process per source address, under that limit.
PER_CLIENT = min(CONNECTIONS_PER_SOURCE, resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200)
EXTRA_SOURCES = 100  # the idle clients' extra addresses are .100, .101, ... of each subnet
# The kernel's app holds a file per connection too: beyond this many it serves from several
# processes (kernel_app.py --processes, SO_REUSEPORT), each well under that limit, as the
# kernel spreads connections over them by a hash (not evenly to the connection).
PER_KERNEL_APP = max(1000, (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 1000) * 3 // 4)

BUSY_POLL = 50  # µs of the busy-polling ping-pong rows (tcpstack --busy-poll)
BENCHES = ("ab", "wrk", "opens", "pingpong", "download", "upload", "idle", "backlog", "loss")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; unwinds to the `finally` that cleans up."""


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@dataclass(frozen=True)
class Target:
    """Where one measurement runs: tcpstack (with N workers, pure Python or the compiled
    build), the kernel app, or nginx."""

    kind: str  # "tcpstack" | "kernel" | "nginx"
    column: str
    workers: int = 1
    compiled: bool = False


@dataclass
class Server:
    """A server started for one measurement: its process, and where its clients run."""

    proc: Process
    ns: str  # the clients' namespace
    host: str
    port: int


def row_specs(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """(bench, key, label, unit) of every row, in table order."""
    n, c = args.requests, 50
    size, lossy = rep.format_size(args.size), rep.format_size(args.loss_size)
    return [
        ("ab", "ab", f"new connections/s, `ab -n {n} -c {c}`, {SMALL_SIZE}-byte file", "req/s"),
        ("ab", "abcpu", "  CPU of the server per 1,000 connections", "s"),
        ("wrk", "wrk", f"keep-alive requests/s, `wrk -t 1 -c {c} -d {args.wrk_seconds}s`",
         "req/s"),
        ("opens", "opens", f"connections opened/s, one client, sequential ({args.opens}: "
         "connect, 1-byte echo, close)", "conn/s"),
        ("pingpong", "pp50", f"1-byte ping-pong over one connection ({args.rounds}), p50",
         "µs"),
        ("pingpong", "pp99", "1-byte ping-pong, p99", "µs"),
        ("pingpong", "ppbp50", f"  the same with busy polling ({BUSY_POLL} µs: `--busy-poll "
         f"{BUSY_POLL}`, the kernel app's loop likewise), p50", "µs"),
        ("pingpong", "ppbp99", "  the same with busy polling, p99", "µs"),
        ("download", "dl", f"curl {size} download, offload on (MTU {args.mtu})", "Mbit/s"),
        ("download", "dlcpu", "  CPU of the server process, offload on", "s/GB"),
        ("download", "dlno", f"curl {size} download, `--no-offload` (veth offloads off)",
         "Mbit/s"),
        ("download", "dlnocpu", "  CPU of the server process, offload off", "s/GB"),
        ("upload", "up", f"{size} upload into discard", "Mbit/s"),
        ("idle", "idle", f"{args.idle:,} idle connections: RSS growth of the server", "B/conn"),
        ("backlog", "bl", f"`ab -n {args.backlog_requests} -c 500`, `--backlog 4096`", "req/s"),
        ("backlog", "bl50", "  the same, p50", "ms"),
        ("backlog", "bl99", "  the same, p99", "ms"),
        ("backlog", "bldrop", "  the same, TUN TX drops (towards the stack)", "packets"),
        ("loss", "loss", f"{lossy} through `--impair {IMPAIR}`, time: tcpstack sends (download); "
         "in the kernel column the kernel sends with CUBIC (upload into tcpstack's discard)",
         "s"),
        ("loss", "lossrate", "  the same, rate", "Mbit/s"),
        ("loss", "lossrto", "  the same, tcpstack's `rto_timeouts`", "count"),
        ("loss", "lossretx", "  the same, the sender's retransmitted segments", "segments"),
    ]


class Bench:
    """The namespaces, processes and temp dir of one benchmark run; `close` removes them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        tag = f"tcpstack-bench-{os.getpid()}"
        self.ns_stack, self.ns_server, self.ns_client = f"{tag}-tun", f"{tag}-srv", f"{tag}-cli"
        self.namespaces: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="tcpstack-bench-"))
        self.procs = Processes(self.tmp, env={**os.environ, "PYTHONPATH": str(REPO)})
        self.site = self.tmp / "site"
        self.site.mkdir()
        self.workers_flag = workers_flag()
        self.stack_banner = ""
        self.compiled_tree = self.tmp / "compiled"
        self.sources = max(1, -(-args.idle // PER_CLIENT))

    # --- setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        if self.args.compiled:
            try:
                build_compiled.build(self.compiled_tree)
            except build_compiled.BuildError as exc:
                raise BenchError(f"the compiled build: {exc} (or run with --compiled none)"
                                 ) from None
        write_random(self.site / SMALL, SMALL_SIZE)
        write_random(self.site / BIG, self.args.size)
        write_random(self.site / LOSSY, self.args.loss_size)
        for ns in (self.ns_stack, self.ns_server, self.ns_client):
            ip("netns", "add", ns)
            self.namespaces.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            # Per-namespace sysctls: many short connections from one client address.
            sysctl(ns, "net.ipv4.ip_local_port_range", "1024 65535")
            sysctl(ns, "net.ipv4.tcp_tw_reuse", "1")
        sysctl(self.ns_server, "net.core.somaxconn", "65535")
        (srv_if, srv_addr), (cli_if, cli_addr) = KERNEL_SERVER, KERNEL_CLIENT
        mtu = str(self.args.mtu)
        # Created directly inside the two namespaces: never an interface in the root one.
        ip("-n", self.ns_server, "link", "add", srv_if, "mtu", mtu, "type", "veth",
           "peer", "name", cli_if, "mtu", mtu, "netns", self.ns_client)
        for ns, ifname, addr in ((self.ns_server, srv_if, srv_addr),
                                 (self.ns_client, cli_if, cli_addr)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            ip("-n", ns, "link", "set", ifname, "up")
        for k in range(self.sources):
            ip("-n", self.ns_client, "addr", "add", f"10.78.0.{EXTRA_SOURCES + k}/32",
               "dev", cli_if)

    # --- servers -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def server(self, target: Target, service: str, *, offload: bool = True,
               backlog: int | None = None, impair: str | None = None,
               processes: int = 1, busy_poll: int = 0) -> Iterator[Server]:
        """Start `service` ("http", "echo", "discard") on `target` for one measurement;
        `processes`: how many the kernel's app serves from; `busy_poll`: µs its loop
        polls after traffic before it sleeps (tcpstack's and the kernel app's)."""
        if target.kind == "tcpstack":
            proc = self.start_tcpstack(service, target, offload, backlog, impair, busy_poll)
            srv = Server(proc, self.ns_stack, STACK_ADDR, PORT)
        elif target.kind == "kernel":
            srv = Server(self.start_kernel_app(service, backlog, processes, busy_poll),
                         self.ns_client, KERNEL_SERVER[1], PORT)
        else:
            srv = Server(self.start_nginx(backlog or 511), self.ns_client, KERNEL_SERVER[1],
                         NGINX_PORT)
        try:
            yield srv
        finally:
            self.procs.stop(srv.proc)

    def start_tcpstack(self, service: str, target: Target, offload: bool, backlog: int | None,
                       impair: str | None, busy_poll: int = 0) -> Process:
        workers = target.workers
        glob = ["--mtu", str(self.args.mtu)] + ([] if offload else ["--no-offload"])
        if impair:
            glob += ["--impair", impair]
        if busy_poll:
            glob += ["--busy-poll", str(busy_poll)]
        own = [str(PORT), *service_args(service, self.site)]
        if backlog:
            own += ["--backlog", str(backlog)]
        if workers > 1 or self.workers_flag:
            if self.workers_flag == "global":
                glob += ["--workers", str(workers)]
            elif self.workers_flag == "listen":
                own += ["--workers", str(workers)]
        # -P: the tree on PYTHONPATH is what runs, never one the working directory holds.
        cmd = [sys.executable, "-P", "-m", "tcpstack.cli", *glob, "listen", *own]
        env = {"PYTHONPATH": str(self.compiled_tree)} if target.compiled else None
        proc = self.procs.spawn("tcpstack", self.ns_stack, cmd, ready="listening on", env=env)
        log = proc.log.read_text(errors="replace")
        if ("core compiled" in log) != target.compiled:  # the banner says which build runs
            build = self.compiled_tree if target.compiled else REPO
            raise BenchError(f"tcpstack from {build} started with the wrong core:\n"
                             f"{tail(proc.log)}")
        if not self.stack_banner and not target.compiled:
            for line in log.splitlines():
                if " up: " in line:
                    self.stack_banner = line.removeprefix("tcpstack: ").strip()
                    break
        return proc

    def start_kernel_app(self, service: str, backlog: int | None,
                         processes: int = 1, busy_poll: int = 0) -> Process:
        cmd = [sys.executable, str(REPO / "scripts" / "kernel_app.py"), "--bind",
               KERNEL_SERVER[1], "--port", str(PORT), "--backlog", str(backlog or 128),
               *service_args(service, self.site)]
        if processes > 1:
            cmd += ["--processes", str(processes)]
        if busy_poll:
            cmd += ["--busy-poll", str(busy_poll)]
        return self.procs.spawn("kernel_app", self.ns_server, cmd, ready="listening on")

    def start_nginx(self, backlog: int) -> Process:
        prefix = self.tmp / "nginx"
        (prefix / "temp").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(prefix, self.site, backlog))
        cmd = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        ns = self.ns_server
        return self.procs.spawn("nginx", ns, cmd,
                                ready=lambda: listening(ns, KERNEL_SERVER[1], NGINX_PORT))

    @contextlib.contextmanager
    def veth_offloads(self, on: bool) -> Iterator[None]:
        """The kernel's path without GSO/TSO/GRO, as tcpstack's `--no-offload` is."""
        if on:
            yield
            return
        setting = ["gso", "off", "tso", "off", "gro", "off"]
        ends = ((self.ns_server, KERNEL_SERVER[0]), (self.ns_client, KERNEL_CLIENT[0]))
        for ns, dev in ends:
            self.procs.check(["ip", "netns", "exec", ns, "ethtool", "-K", dev, *setting], 10)
        try:
            yield
        finally:
            for ns, dev in ends:
                run_quiet(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gso", "on",
                           "tso", "on", "gro", "on"])

    # --- measurements: each returns {row key: value} ------------------------------------------

    def run_ab(self, t: Target, n: int, c: int, backlog: int | None) -> rep.AbResult:
        with self.server(t, "http", backlog=backlog) as srv:
            before = cpu_seconds(srv.proc.pid)
            out = self.procs.check(["ip", "netns", "exec", srv.ns, "ab", "-q", "-r", "-s", "30",
                                    "-n", str(n), "-c", str(c),
                                    f"http://{srv.host}:{srv.port}/{SMALL}"],
                                   self.args.timeout)
            self.cpu = cpu_seconds(srv.proc.pid) - before  # every process of the server
            self.drops = tun_tx_dropped(self.ns_stack) if t.kind == "tcpstack" else None
        result = rep.parse_ab(out)
        if result.complete != n or result.failed or result.non_2xx:
            warn(f"ab: {result.complete} of {n} complete, {result.failed} failed, "
                 f"{result.non_2xx} non-2xx")
        return result

    def bench_ab(self, t: Target) -> dict[str, float]:
        result = self.run_ab(t, self.args.requests, 50, None)
        # CPU per 1,000 connections, the workers' summed: what says whether the stack scales
        # with cores (issue 11: no more per connection at 2 workers than at 1).
        return {"ab": result.requests_per_second,
                "abcpu": self.cpu / self.args.requests * 1000}

    def bench_backlog(self, t: Target) -> dict[str, float]:
        r = self.run_ab(t, self.args.backlog_requests, 500, 4096)
        values = {"bl": r.requests_per_second, "bl50": r.p50_ms, "bl99": r.p99_ms}
        if self.drops is not None:
            values["bldrop"] = self.drops
        return values

    def bench_wrk(self, t: Target) -> dict[str, float]:
        with self.server(t, "http") as srv:
            out = self.procs.check(["ip", "netns", "exec", srv.ns, "wrk", "-t", "1", "-c", "50",
                                    "-d", f"{self.args.wrk_seconds}s",
                                    f"http://{srv.host}:{srv.port}/{SMALL}"],
                                   self.args.wrk_seconds + 60)
        result = rep.parse_wrk(out)
        if result.errors:
            warn(f"wrk: {result.errors} errors in {result.requests} requests")
        return {"wrk": result.requests_per_second}

    def client(self, srv: Server, *args: str, timeout: float | None = None) -> dict[str, float]:
        out = self.procs.check(["ip", "netns", "exec", srv.ns, sys.executable,
                                str(REPO / "scripts" / "bench_clients.py"), args[0],
                                srv.host, str(srv.port), *args[1:]],
                               timeout or self.args.timeout)
        value: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return value

    def bench_opens(self, t: Target) -> dict[str, float]:
        with self.server(t, "echo") as srv:
            got = self.client(srv, "opens", "--count", str(self.args.opens))
        return {"opens": got["per_second"]}

    def bench_pingpong(self, t: Target) -> dict[str, float]:
        values: dict[str, float] = {}
        for prefix, busy_poll in (("pp", 0), ("ppbp", BUSY_POLL)):
            with self.server(t, "echo", busy_poll=busy_poll) as srv:
                got = self.client(srv, "pingpong", "--rounds", str(self.args.rounds))
            values |= {f"{prefix}50": got["p50_us"], f"{prefix}99": got["p99_us"]}
        return values

    def bench_download(self, t: Target) -> dict[str, float]:
        values: dict[str, float] = {}
        for offload, key in ((True, "dl"), (False, "dlno")):
            with self.veth_offloads(offload or t.kind == "tcpstack"), \
                    self.server(t, "http", offload=offload) as srv:
                before = cpu_seconds(srv.proc.pid)
                speed, _ = self.curl(srv, BIG, self.args.size)
                cpu = cpu_seconds(srv.proc.pid) - before
            values[key] = rep.mbit(speed)
            values[key + "cpu"] = cpu / (self.args.size / 1e9)
        return values

    def curl(self, srv: Server, name: str, size: int) -> tuple[float, float]:
        """One curl download, checked for its size: (bytes per second, seconds). The file is
        read once first, so that every server sends it from the page cache: this machine
        lets the cache go within minutes, and the first server to send it after that paid
        for the disk (a third of the rate, three times the CPU per GB, always in the first
        column of a run)."""
        read_through(self.site / name)
        out = self.procs.check(["ip", "netns", "exec", srv.ns, "curl", "-s", "-S", "--fail",
                                "--noproxy", "*", "-o", "/dev/null", "--max-time",
                                f"{self.args.timeout:g}", "-w",
                                "%{size_download} %{speed_download} %{time_total}",
                                f"http://{srv.host}:{srv.port}/{name}"], self.args.timeout + 10)
        got, speed, seconds = out.split()
        if int(got) != size:
            raise BenchError(f"curl got {got} bytes of {name}, expected {size}")
        return float(speed), float(seconds)

    def bench_upload(self, t: Target) -> dict[str, float]:
        with self.server(t, "discard") as srv:
            got = self.client(srv, "upload", "--bytes", str(self.args.size))
        return {"up": rep.mbit(got["bytes"] / got["seconds"])}

    def bench_idle(self, t: Target) -> dict[str, float]:
        """Idle connections from as many client processes as the open-files limit needs,
        each from a source address of its own (one address has about 64,000 ports); the
        kernel's app likewise from as many server processes, whose RSS is summed."""
        count = self.args.idle
        shares = [min(PER_CLIENT, count - i) for i in range(0, count, PER_CLIENT)]
        with self.server(t, "discard", processes=-(-count // PER_KERNEL_APP)) as srv:
            subnet = "10.77.0" if t.kind == "tcpstack" else "10.78.0"
            if t.kind == "tcpstack":  # the TUN device is new with every tcpstack
                for k in range(len(shares)):
                    ip("-n", self.ns_stack, "addr", "add", f"{subnet}.{EXTRA_SOURCES + k}/32",
                       "dev", TUN_IFACE)
            time.sleep(0.3)
            before = rss_bytes(srv.proc.pid)
            start = time.monotonic()
            holders = []
            try:
                for k, share in enumerate(shares):
                    cmd = [sys.executable, str(REPO / "scripts" / "bench_clients.py"), "idle",
                           srv.host, str(srv.port), "--count", str(share),
                           "--sources", f"{subnet}.{EXTRA_SOURCES + k}"]
                    holders.append(self.procs.spawn("idle-client", srv.ns, cmd,
                                                    ready='"opened"', timeout=self.args.timeout))
                took = time.monotonic() - start
                after = settled_rss(srv.proc.pid)
                self.procs.check_alive()
            finally:
                for holder in holders:
                    self.procs.stop(holder)
        progress(f"    ({count} connections opened in {took:.1f} s by {len(shares)} client(s))")
        return {"idle": (after - before) / count}

    def bench_loss(self, t: Target) -> dict[str, float]:
        """tcpstack's sender (curl downloads) in tcpstack's columns; the kernel's sender
        (upload into tcpstack's discard, the same impaired link) in the kernel column."""
        impair = f"{IMPAIR},seed={self.run_number}"
        size = self.args.loss_size
        stack = t if t.kind == "tcpstack" else Target("tcpstack", t.column)
        service = "http" if t.kind == "tcpstack" else "discard"
        with self.server(stack, service, impair=impair) as srv:
            if t.kind == "tcpstack":
                speed, seconds = self.curl(srv, LOSSY, size)
            else:
                # The same congestion control as tcpstack's (CUBIC), not the system's
                # default (BBR on these machines, which ignores random loss): the row
                # compares the two senders' loss recovery.
                got = self.client(srv, "upload", "--bytes", str(size), "--cc", "cubic")
                seconds = got["seconds"]
                speed = size / seconds
                retrans = got["total_retrans"]
        counters = rep.parse_counters(srv.proc.log.read_text(errors="replace"))
        values = {"loss": seconds, "lossrate": rep.mbit(speed)}
        if t.kind == "tcpstack":
            values["lossrto"] = counters.get("rto_timeouts", 0)
            values["lossretx"] = counters.get("retrans_segs", 0)
        else:
            values["lossretx"] = retrans
        return values

    run_number = 1
    drops: float | None = None
    cpu = 0.0  # CPU seconds of the server's processes during the last ab

    def close(self) -> None:
        self.procs.stop_all()
        for ns in reversed(self.namespaces):
            # Anything still in a namespace of ours was started by us (safety net).
            for pid in run_quiet(["ip", "netns", "pids", ns]).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run_quiet(["ip", "netns", "delete", ns])
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- helpers ---------------------------------------------------------------------------------


def service_args(service: str, site: Path) -> list[str]:
    return ["--http", str(site)] if service == "http" else [f"--{service}"]


def write_random(path: Path, size: int) -> None:
    """Random bytes, so that no layer can compress or dedupe them."""
    with path.open("wb") as f:
        left = size
        while left:
            n = min(1 << 20, left)
            f.write(os.urandom(n))
            left -= n


def read_through(path: Path) -> None:
    """Read a file to its end (into the page cache), keeping nothing."""
    with path.open("rb", buffering=0) as f:
        chunk = bytearray(1 << 20)
        while f.readinto(chunk):
            pass


def sysctl(ns: str, name: str, value: str) -> None:
    run_quiet(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{name}={value}"])


def listening(ns: str, addr: str, port: int) -> bool:
    out = run_quiet(["ip", "netns", "exec", ns, "ss", "-Hltn", f"src {addr}:{port}"])
    return bool(out.strip())


def tun_tx_dropped(ns: str) -> float:
    return float(rep.parse_tx_dropped(run_quiet(["ip", "-n", ns, "-j", "-s", "link", "show",
                                                 TUN_IFACE])))


def settled_rss(pid: int, timeout: float = 15.0) -> int:
    """The server's RSS once it has stopped growing (it may still be accepting)."""
    last = rss_bytes(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_bytes(pid)
        if abs(now - last) <= last // 200:
            return now
        last = now
    return last


def workers_flag() -> str:
    """Where this tcpstack takes `--workers`: "listen", "global", or "" (not at all)."""
    def helps(*args: str) -> str:
        return run_quiet([sys.executable, "-m", "tcpstack.cli", *args, "--help"])

    if "--workers" in helps("listen"):
        return "listen"
    return "global" if "--workers" in helps() else ""


def nginx_config(prefix: Path, site: Path, backlog: int) -> str:
    temp = prefix / "temp"
    return f"""# scripts/bench.py's nginx: static files from the bench's site, nothing logged.
daemon off;
master_process on;
user root;
worker_processes auto;
worker_rlimit_nofile 65536;
pid {prefix}/nginx.pid;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen {KERNEL_SERVER[1]}:{NGINX_PORT} backlog={backlog};
        root {site};
    }}
}}
"""


def warn(text: str) -> None:
    progress(f"    warning: {text}")


def progress(text: str) -> None:
    print(text, flush=True)


# --- the run ---------------------------------------------------------------------------------


def targets(bench_name: str, workers: Sequence[int], compiled: Sequence[int]) -> list[Target]:
    stacks = [Target("tcpstack", f"t{w}", w) for w in workers]
    stacks += [Target("tcpstack", f"c{w}", w, compiled=True) for w in compiled]
    kernel = Target("kernel", "kernel")
    if bench_name in ("ab", "wrk", "download", "backlog"):
        return [*stacks, kernel, Target("nginx", "nginx")]
    return [*stacks, kernel]


def measure(bench: Bench, rows: dict[str, rep.Row], specs: list[tuple[str, str, str, str]]
            ) -> None:
    args = bench.args
    for run in range(1, args.runs + 1):
        bench.run_number = run
        for name in args.only:
            keys = [key for b, key, _, _ in specs if b == name]
            for t in targets(name, args.workers, args.compiled):
                where = f"  run {run}/{args.runs}  {name:<9} {column_title(t.column):<20}"
                if t.kind == "tcpstack" and t.workers > 1 and not bench.workers_flag:
                    if run == 1:
                        for key in keys:
                            rows[key].note(t.column, "n/a (no --workers)")
                    progress(f"{where} n/a (no --workers)")
                    continue
                measure_one: Callable[[Target], dict[str, float]] = getattr(bench,
                                                                           f"bench_{name}")
                try:
                    values = measure_one(t)
                except BenchError as exc:
                    for key in keys:
                        rows[key].note(t.column, "failed")
                    progress(f"{where} failed: {exc}")
                    continue
                for key, value in values.items():
                    rows[key].add(t.column, value)
                shown = ", ".join(f"{key} {rep.format_number(v)} {rows[key].unit}"
                                  for key, v in values.items())
                progress(f"{where} {shown}")


def command_line(argv: Sequence[str]) -> str:
    ran = shlex.join(["python", "scripts/bench.py", *argv])
    return "make bench" if os.environ.get("MAKELEVEL") and not argv else ran


def column_title(column: str) -> str:
    if column[0] in "tc" and column[1:].isdigit():
        n = int(column[1:])
        build = " compiled" if column[0] == "c" else ""
        return f"tcpstack{build}, {n} worker{'s' if n > 1 else ''}"
    return {"kernel": "kernel, same app", "nginx": "nginx (kernel)"}[column]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="tcpstack against the Linux kernel running the same app, and nginx.")
    parser.add_argument("--runs", type=int, default=3, metavar="N",
                        help="runs of every measurement, interleaved; the table gives medians "
                             "(default: %(default)s)")
    parser.add_argument("--only", default=",".join(BENCHES), metavar="LIST",
                        help=f"comma-separated measurements (default: all: {','.join(BENCHES)})")
    parser.add_argument("--workers", default="1,2", metavar="LIST",
                        help="tcpstack worker counts to run, e.g. 1,2 (default: %(default)s)")
    parser.add_argument("--compiled", default="1,2", metavar="LIST",
                        help="worker counts to run the compiled build with too "
                             "(scripts/build_compiled.py, built into the temp dir first), "
                             "or 'none' (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes everywhere (a check that every row works, about a "
                             "minute for one run); explicit sizes still win")
    sizes = parser.add_argument_group("sizes")
    sizes.add_argument("--size", default=None, metavar="SIZE",
                       help="download and upload size (default 400M; --quick 20M)")
    sizes.add_argument("--loss-size", default=None, metavar="SIZE",
                       help="size sent through the impaired link (default 20M; --quick 2M)")
    sizes.add_argument("--requests", type=int, help="ab requests (default 10000; --quick 1000)")
    sizes.add_argument("--backlog-requests", type=int,
                       help="ab -c 500 requests (default 20000; --quick 2000)")
    sizes.add_argument("--wrk-seconds", type=int, help="wrk duration (default 5; --quick 2)")
    sizes.add_argument("--rounds", type=int, help="ping-pong rounds (default 2000; --quick 300)")
    sizes.add_argument("--opens", type=int,
                       help="sequential connections (default 2000; --quick 300)")
    sizes.add_argument("--idle", type=int,
                       help="idle connections (default 10000; --quick 1000; 100000 needs "
                            "several source addresses, which the bench adds)")
    parser.add_argument("--mtu", type=int, default=1500,
                        help="MTU of the TUN device and of the veth pair (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="longest one client may take (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="FILE",
                        help="the file whose bench section to write (default: "
                             "docs/PERFORMANCE.md)")
    args = parser.parse_args(argv)
    defaults = {"size": ("400M", "20M"), "loss_size": ("20M", "2M"),
                "requests": (10000, 1000), "backlog_requests": (20000, 2000),
                "wrk_seconds": (5, 2), "rounds": (2000, 300), "opens": (2000, 300),
                "idle": (10000, 1000)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    try:
        args.size_text, args.loss_size_text = args.size, args.loss_size
        args.size, args.loss_size = rep.parse_size(args.size), rep.parse_size(args.loss_size)
    except ValueError as exc:
        parser.error(f"size: {exc}")
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(BENCHES))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(BENCHES)})")
    try:
        args.workers = sorted({int(w) for w in args.workers.split(",")})
    except ValueError:
        parser.error("--workers takes a list of numbers like 1,2")
    if not args.workers or min(args.workers) < 1:
        parser.error("--workers counts must be at least 1")
    try:
        args.compiled = ([] if args.compiled == "none"
                         else sorted({int(w) for w in args.compiled.split(",")}))
    except ValueError:
        parser.error("--compiled takes a list of numbers like 1,2, or none")
    if args.compiled and min(args.compiled) < 1:
        parser.error("--compiled counts must be at least 1")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not 68 <= args.mtu <= 65535:
        parser.error("--mtu must be between 68 and 65535")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: must run as root (it creates network namespaces and a TUN device)",
              file=sys.stderr)
        return 1
    tools = ["ip", "ss", "curl", "ab", "wrk", "nginx", "ethtool", "sysctl"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        print(f"bench: missing tools: {' '.join(missing)} (try 'make system-deps')",
              file=sys.stderr)
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupted)

    specs = row_specs(args)
    rows = {key: rep.Row(key, label, unit) for b, key, label, unit in specs
            if b in args.only}
    bench: Bench | None = None
    started = time.monotonic()
    try:
        bench = Bench(args)
        progress(f"bench: writing the files ({rep.format_size(args.size)} and "
                 f"{rep.format_size(args.loss_size)} of random bytes) and the namespaces")
        bench.setup()
        if len(args.workers) > 1 or args.workers != [1]:
            progress(f"bench: tcpstack --workers: {bench.workers_flag or 'not supported'}")
        progress(f"bench: {args.runs} run(s) of {', '.join(args.only)}, interleaved")
        when = dt.datetime.now(dt.UTC)
        measure(bench, rows, specs)
        banner, workers_flag_seen = bench.stack_banner, bench.workers_flag
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"\nbench: interrupted ({exc}); cleaning up", file=sys.stderr)
        return 130
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if bench is not None:
            bench.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)

    stacks = [f"t{w}" for w in args.workers] + [f"c{w}" for w in args.compiled]
    columns = [(column, column_title(column)) for column in stacks]
    columns += [("kernel", column_title("kernel")), ("nginx", column_title("nginx"))]
    several = len(stacks) > 1
    ratios = [rep.Ratio(("tcpstack compiled" if column[0] == "c" else "tcpstack") + " / kernel"
                        + (f" ({column[1:]} w)" if several else ""), column, "kernel")
              for column in stacks]
    ordered = [rows[key] for _, key, _, _ in specs if key in rows]
    table = rep.render_table(ordered, columns, ratios)
    print()
    print(table)
    info = rep.RunInfo(command=command_line(argv), when=when.strftime("%Y-%m-%d %H:%M UTC"),
                       machine=machine(), commit=revision(REPO), banner=banner,
                       workers=workers_flag_seen, runs=args.runs,
                       seconds=time.monotonic() - started, mtu=args.mtu)
    section = rep.section_text(info, table, rep.render_runs(ordered, columns))
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    old = output.read_text() if output.exists() else ""
    output.write_text(rep.replace_section(old, section))
    print(f"bench: wrote the bench section of {output} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
