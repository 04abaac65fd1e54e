"""`tcpstack serve`: one stack, any number of services (echo, discard, HTTP), each on a port."""

from __future__ import annotations

import logging
from pathlib import Path

import click

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
from tcpstack.services.datagram import UdpEcho
from tcpstack.services.echo import discard as discard_service
from tcpstack.services.echo import echo as echo_service
from tcpstack.services.http import file_server
from tcpstack.tcp.config import DEFAULT_BACKLOG

log = logging.getLogger("tcpstack")

Service = tuple[str, int, object]  # (kind, port, handler)


class HttpSpec(click.ParamType):  # type: ignore[type-arg]
    """PORT:DIR, DIR an existing directory."""

    name = "PORT:DIR"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> object:
        if not isinstance(value, str):
            return value
        port_text, sep, directory = value.partition(":")
        if not sep or not directory:
            self.fail(f"{value!r} is not PORT:DIR (e.g. 80:./docs)", param, ctx)
        port = PortType().convert(port_text, param, ctx)
        path = Path(directory)
        if not path.is_dir():
            self.fail(f"{directory!r} is not a directory", param, ctx)
        return port, path


@also_after_command(*GLOBAL_OPTION_NAMES)
@cli.command()
@click.option("--echo", "echo_ports", multiple=True, type=PortType(), metavar="PORT",
              help="Echo on PORT (repeatable).")
@click.option("--discard", "discard_ports", multiple=True, type=PortType(), metavar="PORT",
              help="Discard on PORT (repeatable).")
@click.option("--http", "http_specs", multiple=True, type=HttpSpec(),
              help="Serve the files of DIR over HTTP on PORT (repeatable).")
@click.option("--udp-echo", "udp_echo_ports", multiple=True, type=PortType(), metavar="PORT",
              help="Echo UDP datagrams on PORT (repeatable).")
@click.option("--backlog", default=DEFAULT_BACKLOG, show_default=True,
              type=click.IntRange(1, 65535), help="Each port's queues, as for listen.")
@click.pass_context
def serve(ctx: click.Context, echo_ports: tuple[int, ...], discard_ports: tuple[int, ...],
          http_specs: tuple[tuple[int, Path], ...], udp_echo_ports: tuple[int, ...],
          backlog: int) -> None:
    """Run echo, discard, HTTP and UDP echo services on several ports of one stack.

    Each option is repeatable, e.g. serve --echo 7 --discard 9 --http 80:./docs --echo 7007
    --udp-echo 7; runs until SIGINT or SIGTERM, as listen does."""
    services: list[Service] = [("echo", port, echo_service) for port in echo_ports]
    services += [("discard", port, discard_service) for port in discard_ports]
    services += [("http", port, file_server(path)) for port, path in http_specs]
    udp: list[Service] = [("udp echo", port, UdpEcho) for port in udp_echo_ports]
    if not services and not udp:
        raise click.UsageError("give at least one service: --echo PORT, --discard PORT, "
                               "--http PORT:DIR or --udp-echo PORT")
    for given in (services, udp):  # TCP and UDP ports are apart, as in the kernel
        ports = [port for _, port, _ in given]
        twice = sorted({port for port in ports if ports.count(port) > 1})
        if twice:
            kind = "UDP port" if given is udp else "port"
            raise click.UsageError(f"{kind} {twice[0]} is given to more than one service")
    opts = dict(ctx.obj)
    if int(str(opts.get("workers", 1))) != 1:
        raise click.UsageError("serve runs one stack: --workers 1")
    run(_serve(opts, services, backlog, udp))


async def _serve(opts: dict[str, object], services: list[Service], backlog: int,
                 udp: list[Service] | None = None) -> None:
    stack = make_stack(opts)
    stop = stop_on_signals()
    await stack.start()
    try:
        services = sorted(services, key=lambda service: service[1])
        for _, port, handler in services:
            await stack.start_server(handler, port, backlog=backlog)  # type: ignore[arg-type]
        udp = sorted(udp or [], key=lambda service: service[1])
        for _, port, protocol in udp:
            try:
                await stack.create_datagram_endpoint(protocol,  # type: ignore[arg-type]
                                                     local_addr=("", port))
            except OSError as exc:
                raise CommandFailed(f"cannot bind UDP port {port}: {exc.strerror or exc}"
                                    ) from None
        tune_gc()
        log.info("listening on %s: %s", stack.addresses_text,
                 ", ".join(f"{port} ({kind})" for kind, port, _ in [*services, *udp]))
        await stop
        log.info("shutting down")
    finally:
        await stack.close()
        log.info("counters: %s", format_counters(stack.counters))

