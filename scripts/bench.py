#!/usr/bin/env python3
"""tcpstack's throughput benchmark (`make bench`, as root).

In one run it measures curl downloading one file over HTTP from

  (a) `tcpstack listen 80 --http DIR` over its TUN device, curl and tcpstack in one network
      namespace (curl talks to 10.77.0.2 through the kernel side 10.77.0.1/24), and
  (b) a kernel HTTP server (`python3 -m http.server`) in a second namespace, curl in a third,
      joined by a veth pair 10.78.0.1/24 <-> 10.78.0.2/24: the Linux kernel's TCP on both ends,

each `--runs` times, interleaved, and takes the median of curl's `speed_download`. It prints both
rates in Mbit/s and their ratio and writes them to docs/PERFORMANCE.md.

Everything lives in namespaces created here (no default routes, nothing leaves the machine, the
root namespace's interfaces are never touched) and is removed in `finally`, also on Ctrl-C or
SIGTERM, together with the processes started here and the temp file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "docs" / "PERFORMANCE.md"

STACK_ADDR = "10.77.0.2"  # tcpstack's own address (the CLI default)
KERNEL_SERVER = ("veth-srv", "10.78.0.1")  # kernel HTTP server's end of the veth pair
KERNEL_CLIENT = ("veth-cli", "10.78.0.2")  # curl's end
PORT = 80
FILE_NAME = "blob.bin"
CURL_FORMAT = "%{size_download} %{speed_download} %{time_total}"

START_TIMEOUT = 15.0  # seconds for a server to come up
STOP_TIMEOUT = 5.0  # seconds for a process to exit on SIGTERM before SIGKILL
IP_TIMEOUT = 10.0  # seconds for any `ip` command

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class BenchError(Exception):
    """The benchmark could not run or measure; the message says why."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; unwinds to the `finally` that cleans up."""


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def parse_size(text: str) -> int:
    """'1G' -> 1073741824; binary units K, M, G, T, optionally followed by 'iB' or 'B'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1G, 100M or 65536")
    size = int(float(match.group(1)) * UNITS[match.group(2).upper()])
    if size <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return size


def format_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= UNITS[unit] and size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]} {unit}iB"
    return f"{size} bytes"


def mbit(bytes_per_second: float) -> float:
    return bytes_per_second * 8 / 1e6


@dataclass
class Download:
    """One curl download: what `-w '%{size_download} %{speed_download} %{time_total}'` said."""

    size: int
    speed: float  # bytes per second
    seconds: float


@dataclass
class Result:
    name: str
    downloads: list[Download] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(d.speed for d in self.downloads)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class Bench:
    """The namespaces, processes and temp dir of one benchmark run; `close` removes them all."""

    def __init__(self, size: int, mtu: int, timeout: float) -> None:
        self.size = size
        self.mtu = mtu
        self.timeout = timeout
        tag = f"tcpstack-bench-{os.getpid()}"
        self.ns_stack = f"{tag}-tun"
        self.ns_server = f"{tag}-srv"
        self.ns_client = f"{tag}-cli"
        self.namespaces: list[str] = []
        self.processes: list[Process] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="tcpstack-bench-"))
        self.site = self.tmp / "site"
        self.site.mkdir()
        self.file = self.site / FILE_NAME
        self.stack_counters = ""
        self.stack_banner = ""

    # --- setup -------------------------------------------------------------------------------

    def make_file(self) -> None:
        """A file of `size` random bytes (random so no layer can compress or dedupe it)."""
        chunk = 1 << 20
        with self.file.open("wb") as f:
            left = self.size
            while left:
                n = min(chunk, left)
                f.write(os.urandom(n))
                left -= n

    def add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def start_tcpstack(self) -> None:
        self.add_namespace(self.ns_stack)
        cmd = [sys.executable, "-m", "tcpstack.cli", "--mtu", str(self.mtu),
               "listen", str(PORT), "--http", str(self.site)]
        self.spawn("tcpstack", self.ns_stack, cmd, ready="listening on")

    def start_kernel_server(self) -> None:
        self.add_namespace(self.ns_server)
        self.add_namespace(self.ns_client)
        (srv_if, srv_addr), (cli_if, cli_addr) = KERNEL_SERVER, KERNEL_CLIENT
        # Created directly inside the two namespaces: never an interface in the root one.
        ip("-n", self.ns_server, "link", "add", srv_if, "mtu", str(self.mtu), "type", "veth",
           "peer", "name", cli_if, "mtu", str(self.mtu), "netns", self.ns_client)
        for ns, ifname, addr in ((self.ns_server, srv_if, srv_addr),
                                 (self.ns_client, cli_if, cli_addr)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            ip("-n", ns, "link", "set", ifname, "up")
        cmd = [sys.executable, "-u", "-m", "http.server", "--bind", srv_addr,
               "--directory", str(self.site), str(PORT)]
        self.spawn("http.server", self.ns_server, cmd, ready="Serving HTTP on")

    def spawn(self, name: str, ns: str, cmd: list[str], ready: str) -> None:
        """Start `cmd` in `ns` (in its own session, so Ctrl-C reaches it only through our
        cleanup) and wait until its log shows `ready`."""
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=REPO)
        proc = Process(name, popen, log)
        self.processes.append(proc)
        deadline = time.monotonic() + START_TIMEOUT
        while ready not in log.read_text(errors="replace"):
            if popen.poll() is not None:
                raise BenchError(f"{name} exited with status {popen.returncode} before it was "
                                 f"ready:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"{name} not ready after {START_TIMEOUT:.0f} s:\n{tail(log)}")
            time.sleep(0.05)

    # --- measuring ---------------------------------------------------------------------------

    def download(self, ns: str, host: str) -> Download:
        """One curl download; gives up early if a server dies under it."""
        url = f"http://{host}:{PORT}/{FILE_NAME}"
        cmd = ["ip", "netns", "exec", ns, "curl", "-s", "-S", "--fail", "-o", "/dev/null",
               "--max-time", f"{self.timeout:g}", "-w", CURL_FORMAT, url]
        deadline = time.monotonic() + self.timeout + 10
        with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) as curl:
            try:
                while True:
                    try:
                        out, err = curl.communicate(timeout=0.2)
                        break
                    except subprocess.TimeoutExpired:
                        self.check_alive()
                        if time.monotonic() > deadline:
                            raise BenchError(f"curl {url} did not finish in "
                                             f"{self.timeout:.0f} s") from None
            finally:
                if curl.poll() is None:
                    curl.kill()
                    curl.wait(STOP_TIMEOUT)
        if curl.returncode != 0:
            self.check_alive()  # a dead server is the better explanation
            raise BenchError(f"curl {url} failed (exit {curl.returncode}): {err.strip()}")
        size_text, speed_text, time_text = out.split()
        result = Download(int(size_text), float(speed_text), float(time_text))
        if result.size != self.size:
            raise BenchError(f"curl {url} got {result.size} bytes, expected {self.size}")
        return result

    def measure(self, runs: int) -> tuple[Result, Result]:
        stack = Result("tcpstack (TUN, userspace TCP)")
        kernel = Result("Linux kernel (veth, kernel TCP)")
        for run in range(1, runs + 1):
            # Interleaved, so slow drifts of a noisy machine hit both alike.
            for result, ns, host in ((stack, self.ns_stack, STACK_ADDR),
                                     (kernel, self.ns_client, KERNEL_SERVER[1])):
                self.check_alive()
                d = self.download(ns, host)
                result.downloads.append(d)
                print(f"  {f'run {run}/{runs}':<10} {result.name:<32} {mbit(d.speed):9.1f} Mbit/s  "
                      f"({d.seconds:.2f} s)", flush=True)
        return stack, kernel

    def check_alive(self) -> None:
        for proc in self.processes:
            if proc.popen.poll() is not None:
                raise BenchError(f"{proc.name} exited with status {proc.popen.returncode}:\n"
                                 f"{tail(proc.log)}")

    # --- teardown ----------------------------------------------------------------------------

    def stop_tcpstack(self) -> None:
        """Stop tcpstack now (SIGTERM) to collect the counters it prints on the way out."""
        for proc in self.processes:
            if proc.name == "tcpstack":
                stop(proc.popen)
                for line in proc.log.read_text(errors="replace").splitlines():
                    if "counters:" in line:
                        self.stack_counters = line.split("counters:", 1)[1].strip()
                    elif " up: " in line and not self.stack_banner:
                        self.stack_banner = line.removeprefix("tcpstack: ").strip()

    def close(self) -> None:
        for proc in reversed(self.processes):
            stop(proc.popen)
        for ns in reversed(self.namespaces):
            # Anything still in a namespace of ours was started by us (safety net).
            pids = run_quiet(["ip", "netns", "pids", ns]).split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run_quiet(["ip", "netns", "delete", ns])
        shutil.rmtree(self.tmp, ignore_errors=True)


def ip(*args: str) -> None:
    cmd = ["ip", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=IP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{shlex.join(cmd)} hung for {IP_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"{shlex.join(cmd)} failed: {done.stderr.strip()}")


def run_quiet(cmd: list[str]) -> str:
    """Run a cleanup command; its failure is not an error (the thing may already be gone)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=IP_TIMEOUT)
    except (subprocess.TimeoutExpired, OSError):
        return ""
    return done.stdout


def stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(STOP_TIMEOUT)


def tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])


# --- report ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    curl = run_quiet(["curl", "--version"]).split("\n", 1)[0].split(" (", 1)[0]
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "curl": curl or "unknown",
    }


def revision() -> str:
    """The commit of the tcpstack tree measured, '+dirty' when it has uncommitted changes."""
    commit = run_quiet(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).strip()
    if not commit:
        return "unknown"
    dirty = run_quiet(["git", "-C", str(REPO), "status", "--porcelain", "--", "tcpstack"])
    return commit + ("+dirty" if dirty.strip() else "")


def segment_size(counters: str, payload: int) -> str:
    """Average payload per segment tcpstack sent, from its `segs_out` counter."""
    match = re.search(r"\bsegs_out=(\d+)", counters)
    if not match or not int(match.group(1)):
        return ""
    return f"{payload / int(match.group(1)):,.0f} bytes"


def command_line(argv: Sequence[str]) -> str:
    script = "python scripts/bench.py"
    ran = shlex.join([*script.split(), *argv])
    return "make bench" if os.environ.get("MAKELEVEL") and not argv else ran


def report(args: argparse.Namespace, argv: Sequence[str], stack: Result, kernel: Result,
           bench: Bench, when: dt.datetime) -> str:
    m = machine()
    counters = bench.stack_counters
    per_segment = segment_size(counters, sum(d.size for d in stack.downloads))
    ratio = stack.median / kernel.median

    def runs(result: Result) -> str:
        return ", ".join(f"{mbit(d.speed):.0f}" for d in result.downloads)

    explicit = (f"python scripts/bench.py --size {args.size_text} --runs {args.runs} "
                f"--mtu {args.mtu}")
    lines = [
        "# Performance",
        "",
        "Throughput of one HTTP download of a file of random bytes with curl, tcpstack against",
        "the Linux kernel's own TCP, measured by `scripts/bench.py` on one machine in one run:",
        "",
        f"- **tcpstack**: `tcpstack --mtu {args.mtu} listen {PORT} --http DIR`, with curl in the "
        "same network",
        f"  namespace downloading from {STACK_ADDR} over the TUN device (kernel side "
        "10.77.0.1/24): the",
        "  kernel's TCP in curl, tcpstack's userspace TCP/IP in Python on the serving end.",
        f"- **kernel**: `python3 -m http.server` bound to {KERNEL_SERVER[1]} in one namespace, "
        "curl in another,",
        f"  joined by a veth pair ({KERNEL_SERVER[1]}/24 <-> {KERNEL_CLIENT[1]}/24, MTU "
        f"{args.mtu}): the kernel's TCP on both ends.",
        "",
        f"Each download is `curl -s -o /dev/null -w '{CURL_FORMAT}'`;",
        "its size is checked against the file's and the rate is curl's `speed_download`. "
        "Each is",
        f"repeated {args.runs} times, the two kinds interleaved; the table gives the median and "
        "every run.",
        "1 Mbit/s = 10^6 bit/s.",
        "",
        f"- Command: `{command_line(argv)}` (equivalently `{explicit}`)",
        f"- Date: {when.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, "
        f"Python {m['python']}, {m['curl']}",
        f"- File: {format_size(args.size)} ({args.size} bytes); MTU {args.mtu} on the TUN "
        "device and on the veth pair",
        f"- tcpstack: commit {revision()}; " + (f"`{bench.stack_banner}`" if bench.stack_banner
                                               else "(no interface line in its log)"),
        "",
        "| server | median Mbit/s | runs (Mbit/s) |",
        "| --- | ---: | --- |",
        f"| tcpstack (TUN) | {mbit(stack.median):.0f} | {runs(stack)} |",
        f"| Linux kernel (veth) | {mbit(kernel.median):.0f} | {runs(kernel)} |",
        f"| **ratio tcpstack / kernel** | **{ratio:.2f}** | |",
        "",
    ]
    if counters:
        lines += [f"tcpstack's counters at the end of the run: `{counters}`"
                  + (f" (about {per_segment} of payload per segment sent)." if per_segment
                     else "."), ""]
    lines += [
        "Notes:",
        "",
        f"- The machines here are noisy: {m['nproc']} cores, shared with other jobs, so rates "
        "move by tens of",
        "  percent from run to run; compare runs from the same machine and the same day only.",
        "- In both cases curl, the server and the kernel share those cores; tcpstack runs in a "
        "single",
        "  Python process. The kernel path uses the veth's offloads (GSO/GRO/TSO), so its "
        "segments are",
        "  far larger than the MTU; tcpstack gets the same from the kernel only with its TUN "
        "offloads",
        "  on (the payload per segment above shows which).",
        "- `python3 -m http.server` copies the file through userspace in Python too; it is not "
        "the",
        "  fastest kernel server possible (no sendfile), so the kernel figure is a floor.",
        "",
    ]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure curl's download rate from tcpstack against the Linux kernel's TCP.")
    parser.add_argument("--size", default="1G", metavar="SIZE",
                        help="size of the downloaded file, like 1G or 100M (binary units; "
                             "default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, metavar="N",
                        help="downloads per server; the median counts (default: %(default)s)")
    parser.add_argument("--mtu", type=int, default=1500,
                        help="MTU of tcpstack's TUN device and of the veth pair "
                             "(default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="longest one download may take (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="FILE",
                        help="where to write the report (default: docs/PERFORMANCE.md)")
    args = parser.parse_args(argv)
    try:
        args.size_text = args.size
        args.size = parse_size(args.size)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--size: {exc}")
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
    missing = [tool for tool in ("ip", "curl") if shutil.which(tool) is None]
    if missing:
        print(f"bench: missing tools: {' '.join(missing)} (try 'make system-deps')",
              file=sys.stderr)
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupted)

    bench: Bench | None = None
    try:
        bench = Bench(args.size, args.mtu, args.timeout)
        print(f"bench: writing a {format_size(args.size)} file of random bytes", flush=True)
        bench.make_file()
        print(f"bench: starting tcpstack (MTU {args.mtu}) and a kernel HTTP server", flush=True)
        bench.start_tcpstack()
        bench.start_kernel_server()
        print(f"bench: {args.runs} download(s) from each, interleaved", flush=True)
        when = dt.datetime.now(dt.UTC)
        stack, kernel = bench.measure(args.runs)
        bench.stop_tcpstack()
        text = report(args, argv, stack, kernel, bench, when)
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

    ratio = stack.median / kernel.median
    print()
    print(f"  {'tcpstack (TUN, MTU ' + str(args.mtu) + ')':<32} {mbit(stack.median):9.1f} Mbit/s "
          "(median)")
    print(f"  {'Linux kernel (veth, MTU ' + str(args.mtu) + ')':<32} "
          f"{mbit(kernel.median):9.1f} Mbit/s (median)")
    print(f"  {'ratio tcpstack / kernel':<32} {ratio:9.2f}")
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"bench: wrote {display(output)}")
    return 0


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
