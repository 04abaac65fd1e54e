"""`tcpstack stat`: the connections and counters of the stack running on --iface in this
network namespace, read from its control socket (api/control.py), like `ss -tani` and
`nstat`."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable

import click
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tcpstack.api.control import ControlError, NoStackRunning, control_path, query_snapshot
from tcpstack.api.snapshot import ConnectionInfo, ListenerInfo, Snapshot
from tcpstack.cli.app import LOGGING_OPTION_NAMES, also_after_command, cli

# Wide enough for every column when the output is not a terminal (a pipe or a file).
_PIPE_WIDTH = 200
# Below this many columns the per-connection details go into one wrapping column, the way
# `ss -i` puts them on a line of their own.
_WIDE = 150


_PEER6 = "[::]:*"  # ss's "any IPv6 peer"


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _details(conn: ConnectionInfo) -> str:
    """The measurements as `ss -i` prints them, on a line of their own."""
    return (f"rtt:{_ms(conn['rtt_ms'])} rto:{_ms(conn['rto_ms'])} cwnd:{conn['cwnd']} "
            f"ssthresh:{_dash(conn['ssthresh'])} rcv_space:{_dash(conn.get('rcv_space'))} "
            f"rcv_buf:{_dash(conn.get('rcv_buf'))} retrans:{conn['retransmits']} "
            f"bytes_in:{conn['bytes_in']} bytes_out:{conn['bytes_out']} "
            f"segs_in:{conn['segs_in']} segs_out:{conn['segs_out']}")


def _queues(listener: ListenerInfo) -> str:
    """A listener's queues: the SYN queue counts against the backlog; the accept queue is
    what ss shows in Recv-Q."""
    return (f"syn_queue:{listener['syn_queue']} accept_queue:{listener['accept_queue']} "
            f"backlog:{listener['backlog']}")


def _narrow(title: str, snapshot: Snapshot) -> RenderableType:
    """ss's own layout: one line per socket, its measurements indented on the next."""
    worker = _workers(snapshot) > 1  # a column saying which worker holds the connection
    rows: list[tuple[list[str], str | None]] = []
    for lst in snapshot["listeners"]:
        rows.append(([lst["state"], str(lst["accept_queue"]), str(lst["backlog"]), lst["local"],
                      lst["peer"], *([""] if worker else [])], _queues(lst)))
        if "local6" in lst:
            rows.append(([lst["state"], str(lst["accept_queue"]), str(lst["backlog"]),
                          lst["local6"], _PEER6, *([""] if worker else [])], None))
    rows += [([c["state"], str(c["recv_q"]), str(c["send_q"]), c["local"], c["peer"],
               *([str(c.get("worker", "-"))] if worker else [])],
              _details(c)) for c in snapshot["connections"]]
    header = ["State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port",
              *(["Worker"] if worker else [])]
    widths = [max(len(cells[i]) for cells in [header, *(r for r, _ in rows)])
              for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if i in (1, 2) else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = Text(title + "\n")
    out.append(line(header) + "\n", style="bold")
    for cells, details in rows:
        out.append(line(cells) + "\n")
        if details is not None:
            out.append("\t " + details + "\n", style="dim")
    out.rstrip()
    return out


def _workers(snapshot: Snapshot) -> int:
    """How many workers the stack runs (1 for a stack without the field)."""
    return len(snapshot.get("workers", ())) or 1


def render_udp(snapshot: Snapshot) -> Text | None:
    """The UDP endpoints as `ss -uan` lists them (state, queues, local, peer; the drops
    of a full receive queue after them), or None when there are none."""
    sockets = snapshot.get("udp", [])
    if not sockets:
        return None
    worker = _workers(snapshot) > 1
    header = ["State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port",
              "Drops", *(["Worker"] if worker else [])]
    rows = [[ep["state"], str(ep["recv_q"]), str(ep["send_q"]), ep["local"], ep["peer"],
             str(ep["drops"]), *([str(ep.get("worker", "-"))] if worker else [])]
            for ep in sockets]
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if i in (1, 2, 5) else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = Text(f"UDP: {len(sockets)} socket{'s' if len(sockets) != 1 else ''}\n")
    out.append(line(header) + "\n", style="bold")
    for cells in rows:
        out.append(line(cells) + "\n")
    out.rstrip()
    return out


def render_connections(snapshot: Snapshot, width: int = _PIPE_WIDTH) -> RenderableType:
    """The ss-like table: listeners first, then connections; one row each. A listener's
    Recv-Q is its accept queue and Send-Q its backlog, as in ss; its SYN queue is under
    the table. Narrower than _WIDE columns, each socket's measurements go on a line of
    their own, as in ss. The UDP endpoints, if any, follow in a table of their own."""
    tcp = _render_tcp(snapshot, width)
    udp = render_udp(snapshot)
    return tcp if udp is None else Group(tcp, Text(""), udp)


def _render_tcp(snapshot: Snapshot, width: int) -> RenderableType:
    n_conn = len(snapshot["connections"])
    n_listen = len(snapshot["listeners"])
    stack_text, kernel_text = snapshot["address"], snapshot["kernel_address"]
    if "address6" in snapshot:
        stack_text += f" and {snapshot['address6']}"
    if "kernel_address6" in snapshot:
        kernel_text += f" and {snapshot['kernel_address6']}"
    title = (f"{snapshot['iface']}: stack {stack_text}, kernel side "
             f"{kernel_text}, pid {snapshot['pid']}, up "
             f"{snapshot['uptime']:.1f}s, {n_listen} listening, {n_conn} "
             f"connection{'s' if n_conn != 1 else ''}")
    workers = _workers(snapshot)
    if workers > 1:
        title += f", {workers} workers"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("State", no_wrap=True)
    for name in ("Recv-Q", "Send-Q"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("Local Address:Port", no_wrap=True)
    table.add_column("Peer Address:Port", no_wrap=True)
    if width < _WIDE:
        return _narrow(title, snapshot)
    # With several workers, which one holds the connection (listeners are in every one).
    worker_cells: list[str] = []
    if workers > 1:
        table.add_column("Worker", justify="right", no_wrap=True)
        worker_cells = [""]
    for name in ("RTT ms", "RTO ms", "cwnd", "ssthresh", "Retrans", "Bytes in", "Bytes out",
                 "Segs in", "Segs out", "Rcv buf"):
        table.add_column(name, justify="right", no_wrap=True)
    for listener in snapshot["listeners"]:
        table.add_row(listener["state"], str(listener["accept_queue"]),
                      str(listener["backlog"]), listener["local"], listener["peer"],
                      *worker_cells, *[""] * 10)
        if "local6" in listener:  # one listener, both families: a row each, as ss shows
            table.add_row(listener["state"], str(listener["accept_queue"]),
                          str(listener["backlog"]), escape(listener["local6"]), escape(_PEER6),
                          *worker_cells, *[""] * 10)
    for conn in snapshot["connections"]:
        if worker_cells:
            worker_cells = [str(conn.get("worker", "-"))]
        # escape: rich would read an IPv6 endpoint's [brackets] as markup.
        table.add_row(conn["state"], str(conn["recv_q"]), str(conn["send_q"]),
                      escape(conn["local"]), escape(conn["peer"]), *worker_cells,
                      _ms(conn["rtt_ms"]), _ms(conn["rto_ms"]),
                      str(conn["cwnd"]), _dash(conn["ssthresh"]), str(conn["retransmits"]),
                      str(conn["bytes_in"]), str(conn["bytes_out"]), str(conn["segs_in"]),
                      str(conn["segs_out"]), _dash(conn.get("rcv_buf")))
    queues = [Text(f"{lst['local']} {_queues(lst)}", style="dim")
              for lst in snapshot["listeners"]]
    return Group(Text(title), table, *queues)


def render_counters(counters: dict[str, int], *, zeros: bool,
                    previous: dict[str, int] | None = None,
                    per_worker: list[dict[str, int]] | None = None) -> str:
    """`name value` lines sorted by name, like nstat; with `previous`, the change since;
    with `per_worker` (several workers), each worker's own value after the sum."""
    lines = []
    if per_worker:
        lines.append(f"{'#name':<28}{'total':>14}"
                     + "".join(f"{f'worker {k}':>14}" for k in range(len(per_worker))))
    for name, value in sorted(counters.items()):
        if not value and not zeros:
            continue
        line = f"{name:<28}{value:>14}"
        if previous is not None:
            line += f"{value - previous.get(name, 0):>+12}"
        for own in per_worker or ():
            line += f"{own.get(name, 0):>14}"
        lines.append(line)
    return "\n".join(lines)


# How often `--wait` looks for the stack's control socket.
_WAIT_POLL = 0.05


def _fetch(iface: str, wait: float = 0.0) -> Snapshot:
    """The snapshot of the stack on `iface`; with `wait`, keep trying that many seconds for a
    stack that is still coming up."""
    path = control_path(iface)
    deadline = time.monotonic() + wait
    while True:
        try:
            return query_snapshot(path)
        except NoStackRunning as exc:
            if time.monotonic() < deadline:
                time.sleep(_WAIT_POLL)
                continue
            left = ", left by a stack that was killed" if exc.stale else ""
            after = f" after waiting {wait:g} s" if wait else ""
            raise click.ClickException(f"no tcpstack running on {iface} in this network "
                                       f"namespace{after} ({exc}{left})") from None
        except ControlError as exc:
            raise click.ClickException(str(exc)) from None


@also_after_command("iface", *LOGGING_OPTION_NAMES)
@cli.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print the snapshot (or with --counters the counters) as JSON.")
@click.option("--counters", is_flag=True, help="Print the counters, like nstat.")
@click.option("-z", "--zeros", is_flag=True, help="With --counters, show zero counters too.")
@click.option("--watch", type=click.FloatRange(0.05), is_flag=False, flag_value=1.0,
              default=None, metavar="[SECONDS]",
              help="Refresh every SECONDS (default 1) until Ctrl-C; with --json, one JSON "
                   "line per refresh.")
@click.option("--wait", type=click.FloatRange(0), default=0.0, metavar="SECONDS",
              help="Wait up to SECONDS for a stack that is still coming up (for a script "
                   "that started one in the background).")
@click.pass_context
def stat(ctx: click.Context, as_json: bool, counters: bool, zeros: bool,
         watch: float | None, wait: float) -> None:
    """Show the connections and counters of the stack running on --iface here."""
    iface = str(ctx.obj["iface"])
    first_wait = wait
    console = Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)
    previous: dict[str, int] | None = None

    def render() -> RenderableType | str:
        nonlocal previous, first_wait
        snapshot = _fetch(iface, first_wait)
        first_wait = 0.0
        if as_json:
            value: object = snapshot["counters"] if counters else snapshot
            return json.dumps(value, indent=None if watch is not None else 2)
        if counters:
            watching = watch is not None
            workers = snapshot.get("workers", [])
            text = render_counters(snapshot["counters"], zeros=zeros,
                                   previous=previous if watching else None,
                                   per_worker=[w["counters"] for w in workers]
                                   if len(workers) > 1 and not watching else None)
            previous = snapshot["counters"]
            pids = f" ({len(workers)} workers: {', '.join(str(w['pid']) for w in workers)})" \
                if len(workers) > 1 else ""
            return Text(f"#{iface} pid {snapshot['pid']}{pids}\n{text}")
        return render_connections(snapshot, console.width)

    if watch is None:
        _print(console, render())
        return
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
        _watch(console, render, watch, live=console.is_terminal and not as_json)


def _print(console: Console, what: RenderableType | str) -> None:
    if isinstance(what, str):
        click.echo(what)
    else:
        console.print(what)


def _watch(console: Console, render: Callable[[], RenderableType | str], interval: float,
           live: bool) -> None:
    if not live:  # a pipe, a file or JSON lines: one rendering after the other
        while True:
            _print(console, render())
            sys.stdout.flush()
            time.sleep(interval)
    with Live(render(), console=console, auto_refresh=False) as screen:
        while True:
            time.sleep(interval)
            screen.update(render(), refresh=True)
