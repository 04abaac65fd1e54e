"""`tcpstack connect`: an active open relaying standard input and output, like nc."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from tcpstack.api.streams import format_endpoint
from tcpstack.cli.app import (
    GLOBAL_OPTION_NAMES,
    CommandFailed,
    PortType,
    also_after_command,
    cli,
    exit_signalled,
    make_stack,
    run,
    stop_on_signals,
    until_signalled,
)
from tcpstack.cli.attached import connect_attached
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
@click.option("--attach", is_flag=True,
              help="Connect from the stack of the daemon running on --iface here (tcpstack "
                   "up) instead of bringing up one of this process's own.")
@click.pass_context
def connect(ctx: click.Context, host: str, port: int, timeout: float | None,
            progress: bool | None, attach: bool) -> None:
    """Connect to HOST PORT and relay standard input and output, like nc. HOST is an IPv4
    or IPv6 address (fd77::1, in brackets or not)."""
    if not ctx.obj["trace"]:
        logging.getLogger("tcpstack").setLevel(logging.WARNING)
    if progress is None:
        progress = sys.stderr.isatty()
    if attach:
        run(connect_attached(str(ctx.obj["iface"]), host, port, timeout, progress))
        return
    run(_connect(dict(ctx.obj), host, port, timeout, progress))


async def _connect(opts: dict[str, object], host: str, port: int,
                   timeout: float | None, progress: bool = False) -> None:
    # SIGINT or SIGTERM ends the command at once, closing as a process's exit would, with
    # the status a shell gives a command the signal killed: 128 + its number.
    signalled = stop_on_signals()
    stack = make_stack(opts)
    stack.check_destination(host)  # before any interface exists: refused in one line
    where = format_endpoint(host.strip("[]"), port)  # [fd77::1]:5000 for IPv6

    async def session() -> None:
        try:
            reader, writer = await asyncio.wait_for(stack.open_connection(host, port), timeout)
        except ConnectionRefusedError:
            raise CommandFailed(f"connection to {where} refused") from None
        except TimeoutError as exc:
            # What ICMP said about the path meanwhile, when it did: "(host unreachable)".
            detail = str(exc).removeprefix("connection timed out").strip()
            raise CommandFailed(f"connection to {where} timed out"
                                + (f" {detail}" if detail else "")) from None
        except ConnectionError as exc:
            raise CommandFailed(f"connection to {where} failed: {exc}") from None
        except OSError as exc:  # an ICMP error ended the attempt: "network unreachable"
            raise CommandFailed(f"connection to {where} failed: {exc.strerror}") from None
        try:
            await relay(reader, writer, sys.stdin.fileno(), sys.stdout.buffer,
                        Progress(sys.stderr) if progress else None)
        except TimeoutError:
            raise CommandFailed(f"connection to {where} timed out") from None
        except ConnectionError as exc:
            raise CommandFailed(f"connection to {where} lost: {exc}") from None

    await stack.start()
    try:
        # Cancelled, the handshake is abandoned, or the relay closes the connection (a FIN,
        # or a RST where received data is left unread); stack.close() then finishes it.
        sig = await until_signalled(session(), signalled)
    finally:
        await stack.close()
    if sig is not None:
        exit_signalled(sig)
