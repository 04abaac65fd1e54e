"""`tcpstack connect`: an active open relaying standard input and output, like nc."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from tcpstack.cli.app import (
    GLOBAL_OPTION_NAMES,
    CommandFailed,
    PortType,
    also_after_command,
    cli,
    make_stack,
    run,
    stop_on_signals,
)
from tcpstack.services.relay import Progress, relay


@also_after_command(*GLOBAL_OPTION_NAMES)
@cli.command()
@click.argument("host")
@click.argument("port", type=PortType())
@click.option("--timeout", type=click.FloatRange(0.001), default=None,
              help="Give up connecting after this many seconds (default: after the SYN "
                   "retransmissions, about two minutes).")
@click.option("--progress/--no-progress", default=None,
              help="Show bytes sent and received, rate and time on stderr during transfers "
                   "longer than a second (default: when stderr is a terminal).")
@click.pass_context
def connect(ctx: click.Context, host: str, port: int, timeout: float | None,
            progress: bool | None) -> None:
    """Connect to HOST PORT and relay standard input and output, like nc."""
    if not ctx.obj["trace"]:
        logging.getLogger("tcpstack").setLevel(logging.WARNING)
    if progress is None:
        progress = sys.stderr.isatty()
    run(_connect(dict(ctx.obj), host, port, timeout, progress))


async def _connect(opts: dict[str, object], host: str, port: int,
                   timeout: float | None, progress: bool = False) -> None:
    stack = make_stack(opts)
    await stack.start()
    stop = stop_on_signals()
    where = f"{host}:{port}"
    try:
        try:
            reader, writer = await asyncio.wait_for(stack.open_connection(host, port), timeout)
        except ConnectionRefusedError:
            raise CommandFailed(f"connection to {where} refused") from None
        except TimeoutError:
            raise CommandFailed(f"connection to {where} timed out") from None
        except ConnectionError as exc:
            raise CommandFailed(f"connection to {where} failed: {exc}") from None
        pump = asyncio.ensure_future(relay(reader, writer, sys.stdin.fileno(),
                                           sys.stdout.buffer,
                                           Progress(sys.stderr) if progress else None))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((pump, stopped), return_when=asyncio.FIRST_COMPLETED)
        if not pump.done():
            pump.cancel()
            writer.transport.abort()
            raise CommandFailed("interrupted")
        stopped.cancel()
        try:
            pump.result()
        except TimeoutError:
            raise CommandFailed(f"connection to {where} timed out") from None
        except ConnectionError as exc:
            raise CommandFailed(f"connection to {where} lost: {exc}") from None
    finally:
        await stack.close()
