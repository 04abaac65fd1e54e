"""Network namespaces and tcpstack processes for the integration tests.

Every test gets a fresh namespace (`NetNS`) so the TUN interface tcps0, the kernel side
10.77.0.1/24 and everything that talks to 10.77.0.2 stay out of the root namespace, and tests
can run side by side. `TcpStack` runs `tcpstack listen ...` inside a namespace, waits for its
"listening on" line, and on stop returns the exit status and the parsed counters line.
Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import pytest

IP = "ip"
STACK_ADDRESS = "10.77.0.2"
KERNEL_ADDRESS = "10.77.0.1"
TCPSTACK = Path(sys.executable).parent / "tcpstack"
# Set by scripts/build_compiled.py --check: every stack started here must say it runs the
# compiled core, and otherwise must not (tests/unit/test_compiled_build.py does the same
# for the modules the tests import).
EXPECT_COMPILED = os.environ.get("TCPSTACK_EXPECT_COMPILED") == "1"
PEERS = Path(__file__).resolve().parent.parent / "peers"

_counter = itertools.count()
_COUNTERS_RE = re.compile(r"^tcpstack: counters: (.*)$", re.MULTILINE)

# Peers must never be steered to a proxy by the environment they inherit.
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY",
               "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def skip_reason(kind: str, needs: str) -> str | None:
    """Why `kind` tests cannot run here (not root, no TUN device, no `ip`), or None."""
    if os.geteuid() != 0:
        return f"{kind} tests need root ({needs})"
    if not os.path.exists("/dev/net/tun"):
        return f"{kind} tests need /dev/net/tun (modprobe tun)"
    if shutil.which(IP) is None:
        return f"{kind} tests need the `ip` command (iproute2)"
    return None


def mark_skipped(items: list[pytest.Item], directory: Path, reason: str | None) -> None:
    """Skip every collected test under `directory` with `reason` (if there is one). Done at
    collection, because a module-level `pytest.skip` in a conftest errors out when pytest is
    pointed at that directory."""
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if directory in item.path.resolve().parents:
            item.add_marker(skip)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _ip(*args: str, timeout: float = 10.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


class NetNS:
    """A uniquely named network namespace with `lo` up; `delete()` removes it."""

    def __init__(self, prefix: str = "tsit") -> None:
        # pid and counter keep concurrent runs apart; the random part keeps a leftover from
        # an earlier run whose pid was the same from colliding.
        self.name = f"{prefix}-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
        self._procs: list[subprocess.Popen[bytes]] = []
        _ip("netns", "add", self.name)
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            _ip("netns", "del", self.name, check=False)
            raise

    def argv(self, args: Sequence[str | os.PathLike[str]]) -> list[str]:
        return [IP, "netns", "exec", self.name, *map(str, args)]

    def run(self, args: Sequence[str | os.PathLike[str]], *,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace to completion (bounded by `timeout`)."""
        return subprocess.run(self.argv(args), capture_output=True, text=True,
                              timeout=timeout, env=clean_env(), stdin=subprocess.DEVNULL)

    def popen(self, args: Sequence[str | os.PathLike[str]], *,
              stdout: int | IO[bytes] | None = subprocess.DEVNULL,
              stderr: int | IO[bytes] | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """Start a command inside the namespace; `delete()` kills it if still running.
        `ip netns exec` execs the command, so the Popen's pid is the command's."""
        proc = subprocess.Popen(self.argv(args), stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=stderr, env=clean_env())
        self._procs.append(proc)
        return proc

    def python(self, script: str, *args: str | os.PathLike[str],
               timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a peer program from tests/peers with this interpreter inside the namespace."""
        return self.run([sys.executable, PEERS / script, *args], timeout=timeout)

    def delete(self) -> None:
        """Kill what we started in the namespace, then remove it. Never raises for a
        namespace that is already gone."""
        try:
            for proc in self._procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    stop_process(proc)
            # Whatever else is still inside can only have been started by this test, since
            # the namespace is its alone (subprocess.run kills a peer on timeout, so this is
            # a last resort).
            pids = _ip("netns", "pids", self.name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        finally:
            _ip("netns", "del", self.name, check=False)

    def exists(self) -> bool:
        return self.name in _ip("netns", "list").stdout.split()


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
    return proc.returncode


def parse_counters(log: str) -> dict[str, int]:
    """The counters of the last `tcpstack: counters: a=1 b=2` line (`none` means empty)."""
    found = _COUNTERS_RE.findall(log)
    if not found:
        raise AssertionError(f"no counters line in the tcpstack log:\n{log}")
    text = found[-1].strip()
    counters: dict[str, int] = {}
    if text == "none":
        return counters
    for item in text.split():
        name, _, value = item.partition("=")
        counters[name] = int(value)
    return counters


class TcpStack:
    """A `tcpstack ... listen PORT MODE` process running inside a namespace."""

    def __init__(self, ns: NetNS, args: Sequence[str | os.PathLike[str]], log_path: Path,
                 *, global_args: Sequence[str] = ()) -> None:
        self.ns = ns
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = ns.popen([TCPSTACK, *global_args, "listen", *map(str, args)],
                             stderr=self._log)
        self.returncode: int | None = None
        self.counters: dict[str, int] | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if "tcpstack: listening on" in log:
                assert ("core compiled" in log) == EXPECT_COMPILED, (
                    f"expected the {'compiled' if EXPECT_COMPILED else 'pure-Python'} "
                    f"core:\n{log}")
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"tcpstack exited with {self.proc.returncode} before "
                                     f"listening:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"tcpstack not listening after {timeout}s:\n{self.log()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> dict[str, int]:
        """Stop with SIGTERM (SIGKILL after `grace`), assert a clean exit, return counters."""
        self.returncode = stop_process(self.proc, grace)
        self._log.close()
        log = self.log()
        assert self.returncode == 0, f"tcpstack exited with {self.returncode}:\n{log}"
        self.counters = parse_counters(log)
        return self.counters

    def close(self) -> None:
        """Teardown: make sure the process is gone, whatever happened."""
        if self.proc.poll() is None:
            stop_process(self.proc)
        self._log.close()


def curl(ns: NetNS, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """curl inside `ns`, ignoring any ~/.curlrc and proxy, bounded by `timeout`."""
    return ns.run(["curl", "-q", "--noproxy", "*", "--max-time", str(timeout), *args],
                  timeout=timeout + 5)


def slow_download(ns: NetNS, path: str, out: Path, rate: str,
                  timeout: float = 90.0) -> subprocess.Popen[bytes]:
    """curl fetching `path` into `out` in the background at `rate` (curl's --limit-rate), so
    that it lasts while a test does something to the stack; its stderr is a pipe."""
    return ns.popen(["curl", "-q", "--noproxy", "*", "--max-time", str(timeout), "-sS",
                     "--limit-rate", rate, "-o", str(out), url(path)], stderr=subprocess.PIPE)


def url(path: str, port: int = 80) -> str:
    return f"http://{STACK_ADDRESS}:{port}/{path.lstrip('/')}"


CHUNK = 1 << 20


def write_random_file(path: Path, size: int) -> str:
    """Write `size` random bytes to `path` in 1 MiB chunks; their sha256 hex digest."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_line(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> str:
    """The next line `proc` prints, waiting at most `timeout` seconds for it."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()  # read unbuffered, so select sees every byte still to come
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"no line within {timeout} s (so far {line!r})"
        byte = os.read(fd, 1)
        assert byte, f"the process exited mid-line ({line!r})"
        line += byte
    return line.decode()
