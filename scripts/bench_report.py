"""The pure parts of `make bench` (scripts/bench.py): sizes, medians and percentiles, parsing
what ab, wrk, `ip -s link` and tcpstack's log print, the results table, and replacing the
benchmark's own section of docs/PERFORMANCE.md. Nothing here runs a process or touches the
network, so tests/unit/test_bench_report.py tests it directly."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
BEGIN = "<!-- bench:begin (written by scripts/bench.py; edit outside these markers) -->"
END = "<!-- bench:end -->"
_BEGIN_PREFIX = "<!-- bench:begin"


# --- sizes and numbers -----------------------------------------------------------------------


def parse_size(text: str) -> int:
    """'1G' -> 1073741824; binary units K, M, G, T, optionally followed by 'iB' or 'B'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a size like 1G, 100M or 65536")
    size = int(float(match.group(1)) * UNITS[match.group(2).upper()])
    if size <= 0:
        raise ValueError("size must be positive")
    return size


def format_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= UNITS[unit] and size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]} {unit}iB"
    return f"{size} bytes"


def mbit(bytes_per_second: float) -> float:
    return bytes_per_second * 8 / 1e6


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `pct`% of the values at
    or below it (so p100 is the maximum and every result is one of the values)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile {pct} is not in (0, 100]")
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)])


def format_number(value: float) -> str:
    """Three significant figures or whole numbers, with thousands separators: the runs move by
    tens of percent, more digits would only be noise."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


# --- what the tools print --------------------------------------------------------------------


@dataclass
class AbResult:
    requests_per_second: float
    complete: int
    failed: int
    non_2xx: int
    p50_ms: float
    p99_ms: float


def parse_ab(text: str) -> AbResult:
    """ApacheBench's report: the rate, the request counts and the percentile table (ms)."""
    def number(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            return match.group(1)
        if default is None:
            raise ValueError(f"ab output has no match for {pattern!r}")
        return default

    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\d+)", text, re.MULTILINE))
    if "50" not in percentiles or "99" not in percentiles:
        raise ValueError("ab output has no percentile table (50% and 99%)")
    return AbResult(
        requests_per_second=float(number(r"^Requests per second:\s+([\d.]+)")),
        complete=int(number(r"^Complete requests:\s+(\d+)")),
        failed=int(number(r"^Failed requests:\s+(\d+)")),
        non_2xx=int(number(r"^Non-2xx responses:\s+(\d+)", "0")),
        p50_ms=float(percentiles["50"]),
        p99_ms=float(percentiles["99"]),
    )


@dataclass
class WrkResult:
    requests_per_second: float
    requests: int
    errors: int  # socket errors of every kind, plus non-2xx/3xx responses


def parse_wrk(text: str) -> WrkResult:
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ", text, re.MULTILINE)
    if not rate or not total:
        raise ValueError("wrk output has no 'Requests/sec' or 'N requests in' line")
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", text)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return WrkResult(float(rate.group(1)), int(total.group(1)), errors)


def parse_tx_dropped(ip_json: str) -> int:
    """TX drops of the one interface in `ip -j -s link show DEV`: on a TUN device, packets
    the kernel had for the userspace end and threw away because its queue was full."""
    links = json.loads(ip_json)
    if len(links) != 1:
        raise ValueError(f"expected one interface in ip's output, got {len(links)}")
    stats = links[0].get("stats64") or links[0].get("stats")
    if not stats:
        raise ValueError("ip's output has no statistics (was -s given?)")
    return int(stats["tx"]["dropped"])


def parse_counters(log: str) -> dict[str, int]:
    """tcpstack's `counters: a=1 b=2` lines at exit, added up when several processes (workers)
    each print one."""
    total: dict[str, int] = {}
    for line in log.splitlines():
        if "counters:" not in line:
            continue
        for name, value in re.findall(r"(\w+)=(\d+)", line.split("counters:", 1)[1]):
            total[name] = total.get(name, 0) + int(value)
    return total


# --- the table -------------------------------------------------------------------------------


@dataclass
class Cell:
    """One server's value of one row over the runs: the samples that were measured and the
    notes of the runs that measured nothing (a failure, an option the CLI lacks)."""

    samples: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.samples:
            shown = format_number(median(self.samples))
            if self.notes:
                shown += f" ({len(self.notes)} failed)"
            return shown
        return self.notes[0] if self.notes else "—"


@dataclass
class Row:
    """One line of the table: what is measured, its unit, and a cell per column id."""

    key: str
    label: str
    unit: str
    cells: dict[str, Cell] = field(default_factory=dict)

    def cell(self, column: str) -> Cell:
        return self.cells.setdefault(column, Cell())

    def add(self, column: str, value: float) -> None:
        self.cell(column).samples.append(value)

    def note(self, column: str, text: str) -> None:
        self.cell(column).notes.append(text)


@dataclass
class Ratio:
    """A column of `numerator / denominator` of two other columns' medians."""

    title: str
    numerator: str
    denominator: str

    def text(self, row: Row) -> str:
        top, bottom = row.cells.get(self.numerator), row.cells.get(self.denominator)
        if not top or not bottom or not top.samples or not bottom.samples:
            return "—"
        below = median(bottom.samples)
        if below == 0:
            return "—"
        return f"{median(top.samples) / below:.2f}"


def render_table(rows: Iterable[Row], columns: Sequence[tuple[str, str]],
                 ratios: Sequence[Ratio]) -> str:
    """A markdown table: the row's label and unit, each column's median, then the ratios.
    `columns` are (id, title) pairs."""
    header = ["measurement", "unit", *(title for _, title in columns),
              *(ratio.title for ratio in ratios)]
    lines = ["| " + " | ".join(header) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in range(len(header) - 2)) + " |"]
    for row in rows:
        cells = [row.label, row.unit,
                 *(row.cells.get(cid, Cell()).text() for cid, _ in columns),
                 *(ratio.text(row) for ratio in ratios)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def render_runs(rows: Iterable[Row], columns: Sequence[tuple[str, str]]) -> str:
    """Every sample behind the medians, one line per row: `label (unit): column a, b, c; ...`."""
    lines = []
    for row in rows:
        parts = []
        for cid, title in columns:
            cell = row.cells.get(cid)
            if cell and cell.samples:
                parts.append(f"{title} " + ", ".join(format_number(v) for v in cell.samples))
        if parts:
            lines.append(f"- {row.label} ({row.unit}): " + "; ".join(parts))
    return "\n".join(lines)


# --- docs/PERFORMANCE.md ---------------------------------------------------------------------


def replace_section(document: str, section: str) -> str:
    """`document` with the text between the bench markers replaced by `section`, everything
    outside them kept byte for byte. Without markers, the section goes right after the
    document's first `# ` title (or on top of an empty document), and the rest is kept."""
    block = f"{BEGIN}\n{section.strip()}\n{END}"
    start = document.find(_BEGIN_PREFIX)
    if start >= 0:
        stop = document.find(END, start)
        if stop < 0:
            raise ValueError("docs section has a bench:begin marker but no bench:end marker")
        return document[:start] + block + document[stop + len(END):]
    if not document.strip():
        return f"# Performance\n\n{block}\n"
    title = re.search(r"^# .*\n", document, re.MULTILINE)
    if title is None:
        return f"{block}\n\n{document}"
    at = title.end()
    return f"{document[:at]}\n{block}\n{document[at:]}"


# --- the section's prose ---------------------------------------------------------------------


@dataclass
class RunInfo:
    """What the section says about the run besides the numbers."""

    command: str
    when: str
    machine: dict[str, str]
    commit: str
    banner: str
    workers: str  # how the CLI takes --workers, or "" when it does not
    runs: int
    seconds: float
    mtu: int


def section_text(info: RunInfo, table: str, runs: str) -> str:
    m = info.machine
    workers = (f"`--workers` given as a {info.workers} option" if info.workers
               else "this tcpstack has no `--workers` option: its columns for more than one "
                    "worker say n/a")
    return "\n".join([
        "## The benchmark: tcpstack, the kernel with the same app, and nginx",
        "",
        f"Written by `scripts/bench.py` (`make bench`): medians of {info.runs} run(s), "
        "interleaved (every measurement and server once, then again); it took "
        f"{info.seconds / 60:.1f} min.",
        "",
        f"- Command: `{info.command}`",
        f"- Commit: {info.commit}; " + (f"`{info.banner}`" if info.banner else
                                        "(no interface line in tcpstack's log)"),
        f"- Date: {info.when}",
        f"- Machine: {m.get('nproc')} CPUs ({m.get('cpu')}), Linux {m.get('kernel')}, "
        f"Python {m.get('python')}, {m.get('curl')}, {m.get('wrk')}, nginx {m.get('nginx')}",
        f"- MTU {info.mtu} on the TUN device and on the veth pair; {workers}",
        "",
        table,
        "",
        "How each side runs: **tcpstack** is `tcpstack listen 80 --http DIR | --echo | "
        "--discard` on its TUN device, the clients in its namespace (the kernel's TCP talks "
        "to 10.77.0.2 over the TUN). **tcpstack compiled** is the same from the copy "
        "`scripts/build_compiled.py` makes (`make compiled`: the sans-I/O core and the stack "
        "compiled by mypyc, the rest as in the plain columns), built for the run. "
        "**kernel, same app** is scripts/kernel_app.py: the same "
        "handlers from tcpstack/services/ under `asyncio.start_server`, one process, at "
        "10.78.0.1 in one namespace, the clients in another across a veth pair. **nginx** "
        "is Debian's nginx (`worker_processes auto`, sendfile on, no access log) on the same "
        "veth address, port 8080. Each server is started for one measurement and stopped "
        "after it.",
        "",
        "- The ratio is tcpstack's median over the kernel's: above 1 is better for rates, "
        "worse for times, latencies, CPU and memory.",
        "- New connections: ab speaks HTTP/1.0, one connection per request. Keep-alive: wrk, "
        "one thread. Sequential opens: scripts/bench_clients.py connects, has one byte "
        "echoed and closes, one connection after the other (the byte makes the application's "
        "accept part of each: without it the kernel's handshakes outran the asyncio app until "
        "its accept queue overflowed and SYNs waited out 1 s RTOs). Ping-pong: one byte each way, "
        "TCP_NODELAY, after 50 rounds of warm-up.",
        "- Downloads: curl of a file of random bytes; CPU is the server process's user+system "
        "time during the download (for nginx, its worker processes'), per GB sent. "
        "`--no-offload` turns off tcpstack's TUN offloads; the kernel's row for it turns "
        "off GSO, TSO and GRO on both veth ends (ethtool).",
        "- Idle connections: the growth of the server process's RSS once all are open, per "
        "connection; the kernel's own socket memory is not in the kernel app's RSS. Past "
        "what one process may hold under the hard open-files limit (which a container may "
        "not let root raise) the kernel's app serves from several processes (SO_REUSEPORT), "
        "their RSS summed.",
        "- The backlog rows: `ab -c 500` against `--backlog 4096` (the kernel app's listen "
        "backlog 4096, nginx's `backlog=4096`); TUN TX drops are the packets the kernel "
        "dropped on their way to tcpstack (`ip -s link` of its TUN device).",
        f"- The impaired link is tcpstack's own (`--impair {IMPAIR_TEXT},seed=RUN`, the "
        "kernel here has no netem), and offload is off under it: the tcpstack columns are "
        "tcpstack sending (curl downloads), the kernel column is the kernel sending (an upload "
        "into tcpstack's discard); retransmitted segments are tcpstack's `retrans_segs` or "
        "the uploading socket's `tcpi_total_retrans`.",
        "- The machine is shared and noisy; rates move by tens of percent between runs. "
        "Compare within one run only.",
        "",
        "Every run:",
        "",
        runs,
    ])


IMPAIR_TEXT = "loss=1%,delay=10ms"
