"""`tcpstack plot`: a time-sequence graph of one connection in a capture (analysis/timeseq.py).
Needs neither root nor a running stack; matplotlib is imported only when it runs."""

from __future__ import annotations

from pathlib import Path

import click

from tcpstack.cli.app import LOGGING_OPTION_NAMES, PortType, also_after_command, cli


@also_after_command(*LOGGING_OPTION_NAMES)
@cli.command()
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="The PNG to write (default: CAPTURE with .png added).")
@click.option("--conn", type=PortType("required"),
              help="The connection with this endpoint, e.g. the peer 10.77.0.1:40000 "
                   "(default: the connection that carried the most data).")
@click.option("--time", "span", metavar="FROM:TO",
              help="Zoom in on this stretch, in seconds since the connection's first packet "
                   "(e.g. 0.2:0.5).")
@click.option("--list", "list_only", is_flag=True,
              help="List the capture's TCP connections and the bytes each way, and exit.")
def plot(capture: Path, output: Path | None, conn: str | None, span: str | None,
         list_only: bool) -> None:
    """Draw a time-sequence graph of a connection in CAPTURE (a pcap file).

    Data segments, retransmissions, the ACK line, the receive window, SACK blocks and, when
    CAPTURE.cwnd.json exists (see --pcap), the congestion window."""
    from tcpstack.analysis.timeseq import (
        NoSuchConnection,
        choose_flow,
        load_cwnd,
        load_flows,
        render_png,
        time_sequence,
    )
    from tcpstack.io.pcap import PcapFormatError

    zoom = _parse_span(span) if span is not None else None
    try:
        flows = load_flows(capture)
    except PcapFormatError as exc:
        raise click.ClickException(str(exc)) from None
    if list_only:
        for flow in flows:
            click.echo(f"{flow.a} > {flow.b}: {flow.payload_from(flow.a)} bytes, "
                       f"{flow.b} > {flow.a}: {flow.payload_from(flow.b)} bytes, "
                       f"{len(flow.records)} segments")
        return
    try:
        flow = choose_flow(flows, conn)
    except NoSuchConnection as exc:
        raise click.ClickException(str(exc)) from None
    if zoom is not None:
        start, end = flow.records[0].time, flow.records[-1].time
        if not any(zoom[0] <= r.time - start <= zoom[1] for r in flow.records):
            raise click.ClickException(
                f"no packets of {flow.label()} between {zoom[0]:g} s and {zoom[1]:g} s "
                f"(its packets run from 0 s to {round(end - start, 6):g} s)")
    series = time_sequence(flow)
    target = output or Path(f"{capture}.png")
    try:
        render_png(series, target, load_cwnd(capture, flow), zoom)
    except OSError as exc:
        raise click.ClickException(f"cannot write {target}: {exc.strerror or exc}") from None
    click.echo(f"{target}: {series.sender} > {series.receiver}, {series.bytes_sent} bytes, "
               f"{len(series.retransmitted)} retransmitted segments")


def _parse_span(text: str) -> tuple[float, float]:
    first, sep, last = text.partition(":")
    try:
        span = (float(first), float(last))
    except ValueError:
        span = (0.0, -1.0)
    if not sep or not 0 <= span[0] < span[1]:
        raise click.BadParameter(f"{text!r} is not FROM:TO in seconds, FROM < TO (e.g. 0.2:0.5)",
                                 param_hint="'--time'")
    return span
