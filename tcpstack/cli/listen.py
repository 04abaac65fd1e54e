"""`tcpstack listen`: serve echo, discard or static HTTP on a port (echo and discard on a
UDP port too, with --udp)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import click

from tcpstack.api.streams import Stack
from tcpstack.api.workers import run_workers
from tcpstack.cli.app import (
    GLOBAL_OPTION_NAMES,
    CommandFailed,
    PortType,
    also_after_command,
    cli,
    format_counters,
    make_stack,
    run,
    stop_on_signals,
    tune_gc,
)
from tcpstack.cli.attached import serve_attached, serve_udp_attached
from tcpstack.link.tun import LinkError
from tcpstack.services.datagram import UdpDiscard, UdpEcho
from tcpstack.services.echo import discard as discard_service
from tcpstack.services.echo import echo as echo_service
from tcpstack.services.http import file_server
from tcpstack.tcp.config import DEFAULT_BACKLOG

log = logging.getLogger("tcpstack")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@also_after_command(*GLOBAL_OPTION_NAMES)
@cli.command()
@click.argument("port", type=PortType("optional"), metavar="[ADDR:]PORT")
@click.option("--echo", is_flag=True, help="Send back every byte received.")
@click.option("--discard", is_flag=True, help="Read and drop everything.")
@click.option("--http", "http_dir", type=click.Path(exists=True, file_okay=False,
                                                    path_type=Path),
              help="Serve the files in this directory over HTTP (GET and HEAD); a directory "
                   "serves its index.html or lists its entries, as python -m http.server "
                   "does.")
@click.option("--udp", is_flag=True,
              help="Serve the port over UDP instead (--echo sends each datagram back to "
                   "its sender, --discard drops it); a datagram to any other UDP port draws "
                   "ICMP port unreachable.")
@click.option("--backlog", default=DEFAULT_BACKLOG, show_default=True,
              type=click.IntRange(1, 65535),
              help="Most connections in each of the port's queues: half-open (SYN queue; "
                   "beyond it, SYN cookies) and established but not yet served (accept "
                   "queue).")
@click.option("--attach", is_flag=True,
              help="Listen on the stack of the daemon running on --iface here (tcpstack up) "
                   "instead of bringing up one of this process's own.")
@click.pass_context
def listen(ctx: click.Context, port: tuple[str | None, int], echo: bool, discard: bool,
           http_dir: Path | None, udp: bool, backlog: int, attach: bool) -> None:
    """Listen on [ADDR:]PORT and serve echo, discard or HTTP until interrupted.

    ADDR, when given, is the stack's own address (the same as --address, or --address6 for
    an IPv6 address in brackets: [fd77::2]:80). Either way the port takes connections over
    both IPv4 and IPv6, as a dual-stack socket does; `:80` is the same as `80`."""
    if echo + discard + (http_dir is not None) != 1:
        raise click.UsageError("choose exactly one of --echo, --discard, --http DIR")
    if udp:
        _listen_udp(dict(ctx.obj), port, echo, http_dir, attach)
        return
    handler: Handler = (echo_service if echo else discard_service if discard
                        else file_server(http_dir))  # type: ignore[arg-type]
    opts = dict(ctx.obj)
    addr, number = port
    if attach:
        run(serve_attached(str(opts["iface"]), addr, handler, number, backlog))
        return
    if addr is not None:
        opts["address6" if ":" in addr else "address"] = addr
    workers = int(str(opts.get("workers", 1)))
    if workers == 1:
        run(_serve(opts, handler, number, backlog))
        return
    if opts.get("pcap") is not None:
        raise click.UsageError("--pcap records one stack: use it with --workers 1")
    _serve_workers(opts, workers, handler, number, backlog)


def _listen_udp(opts: dict[str, object], port: tuple[str | None, int], echo: bool,
                http_dir: Path | None, attach: bool) -> None:
    if http_dir is not None:
        raise click.UsageError("--udp serves --echo or --discard, not --http")
    if attach:
        run(serve_udp_attached(str(opts["iface"]), port[0], UdpEcho if echo else UdpDiscard,
                               "echo" if echo else "discard", port[1]))
        return
    if int(str(opts.get("workers", 1))) != 1:
        raise click.UsageError("--udp runs one stack: use it with --workers 1")
    addr, number = port
    if addr is not None:
        opts["address"] = addr
    run(_serve_udp(opts, echo, number))


async def _serve_udp(opts: dict[str, object], echo: bool, port: int) -> None:
    stack = make_stack(opts)
    stop = stop_on_signals()
    await stack.start()
    try:
        try:
            await stack.create_datagram_endpoint(UdpEcho if echo else UdpDiscard,
                                                 local_addr=("", port))
        except OSError as exc:
            raise CommandFailed(f"cannot bind UDP port {port}: {exc.strerror or exc}"
                                ) from None
        tune_gc()
        log.info("listening on udp %s (%s)", stack.endpoints_text(port),
                 "echo" if echo else "discard")
        await stop
        log.info("shutting down")
    finally:
        await stack.close()
        log.info("counters: %s", format_counters(stack.counters))


def _serve_workers(opts: dict[str, object], workers: int, handler: Handler, port: int,
                   backlog: int) -> None:
    """Every worker listens on `port` (api/workers.py); the parent reports once all are."""
    async def setup(stack: Stack) -> None:
        await stack.start_server(handler, port, backlog=backlog)
        tune_gc()  # in each worker, once its stack is up

    def on_ready() -> None:
        log.info("listening on %s with %d workers", make_stack(opts).endpoints_text(port),
                 workers)

    tune_gc()  # before the fork: the workers inherit it, and share the frozen pages
    try:
        result = run_workers(workers, lambda tun, ports: make_stack(opts, tun, ports), setup,
                             on_ready)
    except (LinkError, ValueError) as exc:
        click.echo(f"tcpstack: error: {exc}", err=True)
        sys.exit(1)
    log.info("counters: %s", format_counters(result.counters))
    if result.status:
        sys.exit(result.status)


async def _serve(opts: dict[str, object], handler: Handler, port: int, backlog: int) -> None:
    stack = make_stack(opts)
    stop = stop_on_signals()
    await stack.start()
    try:
        await stack.start_server(handler, port, backlog=backlog)
        tune_gc()  # what bringing the stack up allocated is there for good, too
        log.info("listening on %s", stack.endpoints_text(port))
        await stop
        log.info("shutting down")
    finally:
        await stack.close()
        log.info("counters: %s", format_counters(stack.counters))
