"""The README's tour works pasted in order.

Every ```sh block of the "A tour" section runs, in order, in one bash, as a user pasting them
into a terminal would: from a directory laid out like the repository root (`.venv` and `docs`
are symlinks to the real ones, so what the tour writes, got.txt and run.pcap among them, lands
in the test's temporary directory and not in the checkout), with job control on so that
`kill %1` and `wait` mean what they mean at a prompt. What differs from a user's paste:

- the namespace `demo` gets a unique name, so the test never meets a user's `demo` or a
  parallel run;
- `stat --watch`, which runs until Ctrl-C, gets its Ctrl-C (SIGINT) from `timeout` after a few
  seconds;
- between two blocks, `jobs` reports and forgets the finished jobs, as an interactive shell
  does before its next prompt (else a script's bash numbers the next job past %1).

The `make demo` / `make test` block of "Try it" is not part of the tour and is not run (they
are the whole demo and the whole test suite). The `console` block is example output: its `$`
commands run at their place too, and the test checks that their real output has the shape the
example shows.

The whole run is bounded; whatever happens, everything it started is stopped and the namespace
deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tcpstack.io.pcap import read_pcap

from ..readme_tour import README, REPO, Block, blocks
from .netns import IP, TCPSTACK, clean_env, parse_counters

TOUR_TIMEOUT = 180.0
WATCH_SECONDS = 4  # how long `stat --watch 0.5` runs before its Ctrl-C
_NETNS_COMMAND = re.compile(r"\b(ip netns (?:add|exec|del|delete|pids)) demo\b")
_MARK = "@@ tour step {} @@"
_MARK_RE = re.compile(r"@@ tour step (\d+) @@\n")


@dataclass
class Step:
    """What the test pastes: a tour block, or the `$` commands of an example output."""

    block: Block
    script: str
    ran: bool = False
    stdout: str = ""
    stderr: str = ""


@dataclass
class Tour:
    cwd: Path
    namespace: str
    steps: list[Step] = field(default_factory=list)
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""

    def step(self, needle: str) -> Step:
        """The one step whose README text contains `needle`; it must have run."""
        found = [step for step in self.steps if needle in step.block.text]
        assert len(found) == 1, f"{len(found)} tour blocks contain {needle!r}"
        assert found[0].ran, (f"the tour never reached the block with {needle!r} (bash exited "
                              f"with {self.exit_status}, or was stopped after "
                              f"{TOUR_TIMEOUT:.0f} s)\n--- stdout:\n{self.stdout}\n"
                              f"--- stderr:\n{self.stderr}")
        return found[0]


def _paste(text: str, namespace: str) -> str:
    script = _NETNS_COMMAND.sub(rf"\1 {namespace}", text)
    assert not re.search(r"\bdemo\b", script), f"a `demo` the test did not rename:\n{script}"
    # The user's Ctrl-C, after a few refreshes.
    return re.sub(r"^(ip netns exec \S+ \S+ stat --watch)", rf"timeout -s INT {WATCH_SECONDS} \1",
                  script, flags=re.MULTILINE)


def _steps(namespace: str) -> list[Step]:
    steps = []
    for block in blocks(README.read_text()):
        if not block.in_tour:
            continue
        if block.lang == "sh":
            steps.append(Step(block, _paste(block.text, namespace)))
        elif block.lang == "console":
            commands = [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]
            steps.append(Step(block, _paste("\n".join(commands) + "\n", namespace)))
    return steps


def _live_pids(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie has finished)."""
    live = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] != "Z":
                live.add(pid)
    return live


def _session_pids(sid: int) -> set[int]:
    """Every process of session `sid`: with job control each job has a process group of its
    own, but all stay in the shell's session."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[3]) == sid:
                    pids.add(int(entry.name))
    return pids


def _namespaces() -> list[str]:
    out = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def _namespace_pids(namespace: str) -> set[int]:
    if namespace not in _namespaces():
        return set()
    out = subprocess.run([IP, "netns", "pids", namespace], capture_output=True, text=True,
                         timeout=10).stdout
    return {int(pid) for pid in out.split()}


def _stop(pids: set[int]) -> None:
    """SIGTERM, then SIGKILL whatever is still running 5 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _live_pids(pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while (pids := _live_pids(pids)) and time.monotonic() < deadline:
            time.sleep(0.05)


def _run(tour: Tour) -> None:
    """Paste every step into one bash, bounded by TOUR_TIMEOUT; then stop whatever is left and
    remove the namespace, whatever happened."""
    # `jobs`: see the module's docstring.
    script = "set -m\n" + "".join(
        f"jobs >/dev/null; echo '{_MARK.format(i)}'; echo '{_MARK.format(i)}' >&2\n"
        f"{step.script}" for i, step in enumerate(tour.steps))
    (tour.cwd / "tour.sh").write_text(script)
    out_path, err_path = tour.cwd / "tour.out", tour.cwd / "tour.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        shell = subprocess.Popen(["bash", "tour.sh"], cwd=tour.cwd, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=err, env=clean_env(),
                                 start_new_session=True)
        try:
            with contextlib.suppress(subprocess.TimeoutExpired):
                tour.exit_status = shell.wait(timeout=TOUR_TIMEOUT)
        finally:
            try:
                _stop({shell.pid} | _session_pids(shell.pid) | _namespace_pids(tour.namespace))
                shell.wait(timeout=10)
            finally:
                if tour.namespace in _namespaces():
                    subprocess.run([IP, "netns", "del", tour.namespace], timeout=10,
                                   check=False)
    tour.stdout = out_path.read_text(errors="replace")
    tour.stderr = err_path.read_text(errors="replace")
    for stream in ("stdout", "stderr"):
        parts = _MARK_RE.split(getattr(tour, stream))
        for index, text in zip(parts[1::2], parts[2::2], strict=True):
            step = tour.steps[int(index)]
            step.ran = True
            setattr(step, stream, text)


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tour]:
    """The whole tour, run once for the tests below."""
    cwd = tmp_path_factory.mktemp("readme") / "repo"
    cwd.mkdir()
    (cwd / ".venv").symlink_to(TCPSTACK.parent.parent)
    (cwd / "docs").symlink_to(REPO / "docs")
    namespace = f"tsrd-{os.getpid()}-{secrets.token_hex(3)}"
    tour = Tour(cwd, namespace, _steps(namespace))
    _run(tour)
    yield tour
    assert namespace not in _namespaces()


def test_only_the_make_blocks_are_outside_the_tour() -> None:
    """`make demo` is the tour's own start; `make compiled`'s block builds for a minute, and
    what it then runs (a stack from the copy serving curl) is what CI's run of
    test_http.py against the copy does (scripts/build_compiled.py --check)."""
    outside = [b for b in blocks(README.read_text()) if b.lang == "sh" and not b.in_tour]
    assert [b.text.split()[:2] for b in outside] == [["make", "demo"], ["make", "compiled"]], (
        "a shell block outside the tour: run it here too, or say why not")


def test_every_step_runs_and_the_last_removes_the_namespace(tour: Tour) -> None:
    assert tour.steps[-1].block.text == "ip netns del demo\n"
    tour.step("ip netns del demo")
    assert tour.exit_status == 0
    assert tour.namespace not in _namespaces()


def test_listen_serves_the_file_answers_ping_and_refuses_port_81_in_curls_words(
        tour: Tour) -> None:
    listen = tour.step("ARCHITECTURE.md")
    architecture = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    assert listen.stdout.startswith(architecture), (
        f"curl did not print docs/ARCHITECTURE.md:\n{listen.stdout[:300]}\n{listen.stderr}")
    assert re.search(r"^1 packets transmitted, 1 received, 0% packet loss",
                     listen.stdout[len(architecture):], re.MULTILINE), listen.stdout
    refused = re.search(r"^curl: \(7\) Failed to connect to 10\.77\.0\.2 port 81 after \d+ ms: "
                        r"Couldn't connect to server$", listen.stderr, re.MULTILINE)
    assert refused is not None, listen.stderr
    # What the README says the user will see is what curl printed.
    promised = re.search(r':81/\s.*#.*"(.+)"', listen.block.text)
    assert promised is not None, listen.block.text
    assert re.search(".*".join(map(re.escape, promised.group(1).split("..."))),
                     refused.group(0)), (promised.group(1), refused.group(0))
    assert re.search(r"^tcpstack: counters: .*\brst_out=1\b", listen.stderr, re.MULTILINE), (
        listen.stderr)


def test_connect_sends_hello_to_nc(tour: Tour) -> None:
    connect = tour.step("connect 10.77.0.1 5000")
    assert (tour.cwd / "got.txt").read_bytes() == b"hello\n"
    assert connect.stdout == "hello\n", connect.stderr  # from `cat got.txt`


def test_ipv6_serves_curl_6_answers_ping_6_and_connects_to_nc_6(tour: Tour) -> None:
    six = tour.step("connect fd77::1 5000")
    assert six.stdout.startswith("200\n"), six.stdout + six.stderr  # curl's %{http_code}
    assert re.search(r"^1 packets transmitted, 1 received, 0% packet loss", six.stdout,
                     re.MULTILINE), six.stdout
    assert "listening on 10.77.0.2:80 and [fd77::2]:80" in six.stderr, six.stderr
    assert (tour.cwd / "got6.txt").read_bytes() == b"hello\n"
    assert six.stdout.endswith("\nhello\n"), six.stdout  # from `cat got6.txt`


def test_udp_echoes_refuses_a_closed_port_and_stat_lists_the_socket(tour: Tour) -> None:
    step = tour.step("listen --udp 7 --echo")
    lines = step.stdout.splitlines()
    assert lines[:2] == ["hello", "refused"], step.stdout + step.stderr
    assert lines[2] == "UDP: 1 socket", step.stdout
    assert lines[4].split() == ["UNCONN", "0", "0", "10.77.0.2:7", "*:*", "0"], step.stdout
    counters = parse_counters(step.stderr)
    assert (counters["udp_in_datagrams"], counters["udp_out_datagrams"]) == (1, 1), counters
    # nc -zuv writes its probe up to four times, stopping at the first write that fails:
    # each one the kernel sent before our port unreachable came back drew one of its own.
    assert 1 <= counters["udp_no_ports"] <= 4, counters
    assert counters["icmp_port_unreachable_out"] == counters["udp_no_ports"], counters


def test_the_socket_facade_fetches_with_http_client(tour: Tour) -> None:
    step = tour.step("tcpstack.socket.create_connection")
    assert step.stdout == "200 text/markdown 10.77.0.2\n", step.stdout + step.stderr


def _shape(text: str) -> list[str]:
    """Lines with every number as `#`, runs of blanks as one, rules as one `─`: what stays the
    same between two runs of `tcpstack stat`."""
    lines = []
    for line in text.strip("\n").splitlines():
        line = re.sub(r"\d+(\.\d+)?", "#", line)
        line = re.sub(r"─+", "─", line)
        lines.append(re.sub(r"\s+", " ", line).strip())
    return lines


def test_stat_as_the_example_shows_during_the_lasting_transfer(tour: Tour) -> None:
    console = next(step for step in tour.steps if step.block.lang == "console")
    assert console.ran, tour.stderr
    example = console.block.text
    example_table, _, example_counters = example.partition("$ ip netns exec demo "
                                                           ".venv/bin/tcpstack stat --counters\n")
    example_table = example_table.partition("\n")[2]  # less its `$` line
    # `stat` prints the table, then `stat --counters` starts with `#tcps0 pid N`.
    table, _, counters = console.stdout.partition("\n#")
    counters = "#" + counters
    assert _shape(table) == _shape(example_table), table
    assert re.search(r"^ESTABLISHED +\d+ +\d+ +10\.77\.0\.2:80 +10\.77\.0\.1:\d+ ", table,
                     re.MULTILINE), table
    assert _shape(counters)[0] == _shape(example_counters)[0], counters
    for text in (example_counters, counters):
        assert re.search(r"^passive_opens +1$", text, re.MULTILINE), text


def test_stat_watch_refreshes_until_ctrl_c(tour: Tour) -> None:
    watch = tour.step("stat --watch")
    refreshes = re.findall(r"^tcps0: stack .*, 1 listening, 1 connection$", watch.stdout,
                           re.MULTILINE)
    assert len(refreshes) >= 2, watch.stdout + watch.stderr
    assert len(re.findall(r"^ESTABLISHED ", watch.stdout, re.MULTILINE)) == len(refreshes)


def test_stat_json_through_jq_shows_the_established_transfer(tour: Tour) -> None:
    shown = json.loads(tour.step("stat --json | jq").stdout)
    assert shown["state"] == "ESTABLISHED"
    assert re.fullmatch(r"10\.77\.0\.1:\d+", shown["peer"]), shown
    assert shown["bytes_in"] > 0


def test_pcap_is_complete_tcpdump_reads_it_and_plot_writes_the_png(tour: Tour) -> None:
    pcap = tour.step("--pcap run.pcap")
    assert (tour.cwd / "run.pcap").read_bytes()[:4] == bytes.fromhex("d4c3b2a1")
    assert json.loads((tour.cwd / "run.pcap.cwnd.json").read_text())
    packets = re.findall(r"^\d\d:\d\d:\d\d\.\d{6} (IP6?) (.*)$", pcap.stdout, re.MULTILINE)
    recorded = sum(1 for _ in read_pcap(tour.cwd / "run.pcap"))
    assert len(packets) == min(10, recorded), pcap.stdout  # `| head`
    ipv4 = [line for version, line in packets if version == "IP"]
    assert re.match(r"10\.77\.0\.1\.\d+ > 10\.77\.0\.2\.80: Flags \[S\],", ipv4[0]), pcap.stdout
    assert (tour.cwd / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_daemon_serves_two_attached_processes_on_one_stack(tour: Tour) -> None:
    step = tour.step("tcpstack up -d")
    up = re.search(r"^tcpstack: daemon up on tcps0 \(pid (\d+)\); attach socket "
                   r"/run/tcpstack/attach-\d+-tcps0\.sock$", step.stdout, re.MULTILINE)
    assert up is not None, step.stdout + step.stderr
    pid = up.group(1)
    assert (tour.cwd / "shared.txt").read_bytes() == b"shared\n"  # connect --attach's bytes
    assert step.stdout.splitlines()[1:3] == ["shared", "hi"], step.stdout  # cat, then the echo
    # stat reaches the daemon's own stack, holding the other process's listener.
    assert re.search(rf"^tcps0: stack 10\.77\.0\.2 and fd77::2, .*, pid {pid}, .*, 1 listening",
                     step.stdout, re.MULTILINE), step.stdout
    assert re.search(r"^LISTEN +\d+ +\d+ +10\.77\.0\.2:7 ", step.stdout, re.MULTILINE), (
        step.stdout)
    assert ("tcpstack: listening on 10.77.0.2:7 and [fd77::2]:7 (attached to the daemon on "
            "tcps0)") in step.stderr
    assert re.search(rf"^tcpstack: daemon on tcps0 \(pid {pid}\) stopped$", step.stderr,
                     re.MULTILINE), step.stderr


def test_serve_runs_echo_discard_http_and_udp_echo_on_one_stack(tour: Tour) -> None:
    step = tour.step("tcpstack serve")
    assert step.stdout == "again\ndatagram\nHTTP/1.1 200 OK\n", (  # curl's CR read away
        step.stdout + step.stderr)
    assert ("tcpstack: listening on 10.77.0.2 and fd77::2: 7 (echo), 9 (discard), 80 (http), "
            "7 (udp echo)" in step.stderr), step.stderr
