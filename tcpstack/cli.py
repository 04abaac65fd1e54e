"""The `tcpstack` command line (click)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path

import click

from tcpstack.api.streams import (
    DEFAULT_ADDRESS,
    DEFAULT_IFACE,
    DEFAULT_KERNEL_ADDRESS,
    DEFAULT_MTU,
    Stack,
)
from tcpstack.link.tun import LinkError
from tcpstack.services.echo import discard as discard_service
from tcpstack.services.echo import echo as echo_service
from tcpstack.services.http import file_server
from tcpstack.services.relay import relay
from tcpstack.stack import PortInUse
from tcpstack.tcp.config import TcpConfig

log = logging.getLogger("tcpstack")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class PortParam(click.ParamType):  # type: ignore[type-arg]
    """A port, optionally written ADDR:PORT (the address must be the stack's own)."""

    name = "[ADDR:]PORT"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str | None, int]:
        text = str(value)
        addr, sep, port_text = text.rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            self.fail(f"{text!r} is not a port number", param, ctx)
        if not 0 < port < 65536:
            self.fail(f"port {port} is out of range 1-65535", param, ctx)
        return (addr or None) if sep else None, port


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--iface", default=DEFAULT_IFACE, show_default=True,
              help="Name of the TUN interface to create.")
@click.option("--address", default=DEFAULT_ADDRESS, show_default=True,
              help="The stack's own IPv4 address.")
@click.option("--kernel-address", default=DEFAULT_KERNEL_ADDRESS, show_default=True,
              help="The kernel side's address and prefix on the TUN interface.")
@click.option("--mtu", default=DEFAULT_MTU, show_default=True, type=click.IntRange(68, 65535),
              help="MTU of the TUN interface.")
@click.option("--offload/--no-offload", default=True, show_default=True,
              help="Let the kernel checksum and segment (TUN virtio-net header, GSO/TSO).")
@click.option("--msl", default=30.0, show_default=True, type=click.FloatRange(0.001, 3600),
              help="Maximum segment lifetime in seconds; TIME_WAIT lasts twice this.")
@click.option("--trace", is_flag=True, help="Log every TCP state transition.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@click.pass_context
def cli(ctx: click.Context, iface: str, address: str, kernel_address: str, mtu: int,
        offload: bool, msl: float, trace: bool, quiet: bool) -> None:
    """A userspace TCP/IP stack over a Linux TUN device."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="tcpstack: %(message)s", stream=sys.stderr)
    ctx.obj = {"iface": iface, "address": address, "kernel_address": kernel_address,
               "mtu": mtu, "trace": trace, "offload": offload, "msl": msl}


@cli.command()
@click.argument("port", type=PortParam())
@click.option("--echo", is_flag=True, help="Send back every byte received.")
@click.option("--discard", is_flag=True, help="Read and drop everything.")
@click.option("--http", "http_dir", type=click.Path(exists=True, file_okay=False,
                                                    path_type=Path),
              help="Serve the files in this directory over HTTP (GET and HEAD).")
@click.option("--backlog", default=128, show_default=True, type=click.IntRange(1, 65535),
              help="Most half-open connections waiting on the port.")
@click.pass_context
def listen(ctx: click.Context, port: tuple[str | None, int], echo: bool, discard: bool,
           http_dir: Path | None, backlog: int) -> None:
    """Listen on PORT and serve echo, discard or HTTP until interrupted."""
    if echo + discard + (http_dir is not None) != 1:
        raise click.UsageError("choose exactly one of --echo, --discard, --http DIR")
    handler: Handler = (echo_service if echo else discard_service if discard
                        else file_server(http_dir))  # type: ignore[arg-type]
    opts = dict(ctx.obj)
    addr, number = port
    if addr is not None:
        opts["address"] = addr
    _run(_serve(opts, handler, number, backlog))


@cli.command()
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--timeout", type=click.FloatRange(0.001), default=None,
              help="Give up connecting after this many seconds (default: after the SYN "
                   "retransmissions, about two minutes).")
@click.pass_context
def connect(ctx: click.Context, host: str, port: int, timeout: float | None) -> None:
    """Connect to HOST PORT and relay standard input and output, like nc."""
    if not ctx.obj["trace"]:
        logging.getLogger("tcpstack").setLevel(logging.WARNING)
    _run(_connect(dict(ctx.obj), host, port, timeout))


class CommandFailed(Exception):
    """A command ran and failed; the message is the one line the user sees."""


async def _connect(opts: dict[str, object], host: str, port: int,
                   timeout: float | None) -> None:
    stack = _make_stack(opts)
    await stack.start()
    stop = _stop_on_signals()
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
                                           sys.stdout.buffer))
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


async def _serve(opts: dict[str, object], handler: Handler, port: int, backlog: int) -> None:
    stack = _make_stack(opts)
    stop = _stop_on_signals()
    await stack.start()
    try:
        await stack.start_server(handler, port, backlog=backlog)
        log.info("listening on %s:%d", stack.address, port)
        await stop.wait()
        log.info("shutting down")
    finally:
        await stack.close()
        log.info("counters: %s", _format_counters(stack.counters))


def _make_stack(opts: dict[str, object]) -> Stack:
    return Stack(iface=str(opts["iface"]), address=str(opts["address"]),
                 kernel_address=str(opts["kernel_address"]), mtu=int(str(opts["mtu"])),
                 trace=bool(opts["trace"]), offload=bool(opts["offload"]),
                 config=TcpConfig(msl=float(str(opts["msl"]))))


def _stop_on_signals() -> asyncio.Event:
    """SIGINT and SIGTERM end the run; installed explicitly because a background process
    started by a non-interactive shell ignores SIGINT otherwise."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _format_counters(counters: dict[str, int]) -> str:
    return " ".join(f"{name}={value}" for name, value in sorted(counters.items())) or "none"


def _run(main: Coroutine[None, None, None]) -> None:
    try:
        asyncio.run(main)
    except (LinkError, PortInUse, ValueError, CommandFailed) as exc:
        click.echo(f"tcpstack: error: {exc}", err=True)
        sys.exit(1)


def main() -> None:
    """Entry point: every error is one line on stderr and a non-zero exit status."""
    try:
        status = cli.main(prog_name="tcpstack", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see 'tcpstack {exc.ctx.info_name} --help')" if exc.ctx and exc.ctx.parent \
            else " (see 'tcpstack --help')"
        click.echo(f"tcpstack: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"tcpstack: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
