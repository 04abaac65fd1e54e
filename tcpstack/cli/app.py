"""The `tcpstack` command group: global options and what every command shares."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from tcpstack.api.streams import (
    DEFAULT_ADDRESS,
    DEFAULT_ADDRESS6,
    DEFAULT_IFACE,
    DEFAULT_KERNEL_ADDRESS,
    DEFAULT_KERNEL_ADDRESS6,
    DEFAULT_MTU,
    Stack,
)
from tcpstack.api.workers import worker_count
from tcpstack.io.impairment import Impairment, ImpairmentError
from tcpstack.io.segment_log import SEGMENT_LOGGER
from tcpstack.link.tun import DEFAULT_TXQUEUELEN, MAX_TXQUEUELEN, LinkError, TunDevice
from tcpstack.stack import PortInUse
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.congestion import ALGORITHMS

log = logging.getLogger("tcpstack")


# The global options, in the order `tcpstack --help` lists them. They belong before the
# command, but users of tcpdump, nc and ss put options anywhere (`listen 80 --echo -v`), so
# the commands take them after their own arguments too (see `also_after_command`).
def global_options(hidden: bool = False) -> list[click.Option]:
    def option(*decls: str, **attrs: Any) -> click.Option:
        return click.Option(decls, hidden=hidden, **attrs)

    return [
        option("--iface", default=DEFAULT_IFACE, show_default=True,
               help="Name of the TUN interface to create."),
        option("--address", default=DEFAULT_ADDRESS, show_default=True,
               help="The stack's own IPv4 address."),
        option("--kernel-address", default=DEFAULT_KERNEL_ADDRESS, show_default=True,
               help="The kernel side's address and prefix on the TUN interface."),
        option("--address6", default=DEFAULT_ADDRESS6, show_default=True,
               help="The stack's own IPv6 address; 'none' serves IPv4 only."),
        option("--kernel-address6", default=DEFAULT_KERNEL_ADDRESS6, show_default=True,
               help="The kernel side's IPv6 address and prefix on the TUN interface; "
                    "'none' serves IPv4 only."),
        option("--mtu", default=DEFAULT_MTU, show_default=True, type=click.IntRange(68, 65535),
               help="MTU of the TUN interface."),
        option("--txqueuelen", default=DEFAULT_TXQUEUELEN, show_default=True,
               type=click.IntRange(1, MAX_TXQUEUELEN), metavar="PACKETS",
               help="Packets the kernel may queue on the TUN interface for the stack to "
                    "read; beyond them it drops (stat: tun_rx_queue_drops)."),
        option("--offload/--no-offload", default=True, show_default=True,
               envvar="TCPSTACK_OFFLOAD", show_envvar=True,
               help="Let the kernel checksum and segment (TUN virtio-net header, GSO/TSO)."),
        option("--cc", "congestion", default="cubic", show_default=True,
               type=click.Choice(sorted(ALGORITHMS)), help="Congestion control algorithm."),
        option("--nodelay", is_flag=True, help="Disable Nagle's algorithm (TCP_NODELAY)."),
        option("--timestamps/--no-timestamps", default=True, show_default=True,
               help="Offer and answer RFC 7323 timestamps (RTT per ACK, PAWS)."),
        option("--syncookies", default=1, show_default=True, type=click.IntRange(0, 2),
               help="SYN cookies (RFC 4987) as Linux's tcp_syncookies: 0 off, 1 once a "
                    "listener's SYN queue is full, 2 always."),
        option("--impair", metavar="SPEC", default=None,
               help="Impair the link for testing, like netem: e.g. 'loss=5%,delay=20ms,"
                    "jitter=5ms,duplicate=1%,reorder=5%,corrupt=1%,seed=7' (turns offload "
                    "off)."),
        option("--busy-poll", default=0, show_default=True, metavar="USEC",
               type=click.IntRange(0, 1_000_000),
               help="After traffic, keep polling the TUN this many microseconds before "
                    "sleeping, as Linux's net.core.busy_poll: a wakeup less per packet "
                    "that comes meanwhile (lower latency), a CPU kept busy; 0 is off."),
        option("--msl", default=30.0, show_default=True, type=click.FloatRange(0.001, 3600),
               help="Maximum segment lifetime in seconds; TIME_WAIT lasts twice this."),
        option("--keepalive", metavar="IDLE[,INTERVAL,COUNT]", default=None,
               help="Probe idle connections (SO_KEEPALIVE): after IDLE seconds, every INTERVAL "
                    "seconds, giving up after COUNT unanswered probes (default 75, 9)."),
        option("--user-timeout", type=click.FloatRange(0.001), default=None, metavar="SECONDS",
               help="Abort a connection whose data stays unacknowledged this long (RFC 5482)."),
        option("--receive-buffer", type=click.IntRange(1, 1 << 30), default=None,
               metavar="BYTES",
               help="Fix each connection's receive buffer (and so its largest window) at BYTES, "
                    "as SO_RCVBUF does, instead of auto-tuning it to what the application "
                    "reads per round trip (from 128 KiB up to --receive-buffer-max)."),
        option("--receive-buffer-max", type=click.IntRange(1, 1 << 30),
               default=TcpConfig().receive_buffer_max,
               show_default=True, metavar="BYTES",
               help="The most auto-tuning may grow a receive buffer to (Linux's tcp_rmem[2]); "
                    "the window scale is chosen for it."),
        option("--trace", is_flag=True, help="Log every TCP state transition."),
        option("-v", "--verbose", is_flag=True,
               help="Debug logging: every segment in and out as a tcpdump-style line "
                    "(implies --trace)."),
        option("-q", "--quiet", is_flag=True, help="Log warnings and errors only."),
        option("--pcap", type=click.Path(dir_okay=False, writable=True, path_type=Path),
               help="Record every packet in and out to this pcap file (and the connections' "
                    "cwnd traces to FILE.cwnd.json when the stack stops)."),
        option("--workers", default="1", show_default=True, metavar="N|auto",
               help="Worker processes for listen, one per queue of a multi-queue TUN, the "
                    "kernel spreading connections over them; auto: one per CPU. connect "
                    "always runs one."),
    ]


GLOBAL_OPTION_NAMES = tuple(str(opt.name) for opt in global_options())
LOGGING_OPTION_NAMES = ("verbose", "quiet")


@click.group(params=global_options(),
             context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Global options can also follow a command that uses them: "
                    "tcpstack listen 80 --echo -v.")
@click.version_option(package_name="tcpstack", prog_name="tcpstack",
                      message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, /, **params: Any) -> None:
    """A userspace TCP/IP stack over a Linux TUN device."""
    ctx.obj = settings(params)


def settings(params: dict[str, Any]) -> dict[str, object]:
    """What the commands read from `ctx.obj`, from the global options' values; sets up
    logging as a side effect."""
    verbose, quiet = bool(params["verbose"]), bool(params["quiet"])
    if verbose and quiet:
        raise click.UsageError("choose one of -v/--verbose and -q/--quiet")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogLines())
    logging.basicConfig(handlers=[handler])  # once: later calls leave the root as it is
    logging.getLogger().setLevel(logging.WARNING if quiet else logging.INFO)
    # DEBUG for ours only: the libraries' debug output (pyroute2, asyncio) is noise here.
    log.setLevel(logging.DEBUG if verbose else logging.NOTSET)
    config = TcpConfig(msl=params["msl"], congestion=params["congestion"],
                       nodelay=params["nodelay"], user_timeout=params["user_timeout"],
                       receive_buffer=params["receive_buffer"],
                       receive_buffer_max=params["receive_buffer_max"],
                       timestamps=params["timestamps"], syncookies=params["syncookies"])
    if params["keepalive"] is not None:
        config.keepalive = True
        (config.keepalive_idle, config.keepalive_interval,
         config.keepalive_count) = parse_keepalive(params["keepalive"])
    return {"iface": params["iface"], "address": params["address"],
            "kernel_address": params["kernel_address"], "mtu": params["mtu"],
            "address6": _optional_address(params["address6"]),
            "kernel_address6": _optional_address(params["kernel_address6"]),
            "txqueuelen": params["txqueuelen"],
            "trace": bool(params["trace"]) or verbose, "verbose": verbose,
            "offload": params["offload"], "config": config,
            "impairment": _impairment(params["impair"]), "pcap": params["pcap"],
            "workers": _workers(params["workers"]),
            "busy_poll": params["busy_poll"] / 1e6}


class LogLines(logging.Formatter):
    """`tcpstack: MESSAGE`, except the -v segment lines, which start with their time as
    tcpdump's lines do, so that the two read (and compare) line for line."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.name == SEGMENT_LOGGER else f"tcpstack: {text}"


def also_after_command(*names: str) -> Callable[[click.Command], click.Command]:
    """Let the global options `names` follow the command too, each overriding the same
    option given before it. They stay out of the command's own option list (a long
    repetition of `tcpstack --help`); the command's help says which it takes."""
    def decorate(command: click.Command) -> click.Command:
        chosen = [opt for opt in global_options(hidden=True) if opt.name in names]
        command.params.extend(chosen)
        callback = command.callback
        assert callback is not None

        def run(**kwargs: Any) -> Any:
            ctx = click.get_current_context()
            given = {name: kwargs.pop(name) for name in names}
            after = {name: value for name, value in given.items()
                     if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
            if after:
                ctx.obj = settings({**ctx.find_root().params, **after})
            return callback(**kwargs)

        command.callback = run
        if set(names) == set(GLOBAL_OPTION_NAMES):
            command.epilog = "The global options (tcpstack --help) can also follow the command."
        else:
            listed = ["/".join(opt.opts) for opt in chosen]
            which = listed[0] if len(listed) == 1 else \
                f"{', '.join(listed[:-1])} and {listed[-1]}"
            command.epilog = f"The global options {which} can also follow the command."
        return command

    return decorate


class PortType(click.ParamType):  # type: ignore[type-arg]
    """A TCP port, 1-65535, worded the same in every command. `address="optional"` also takes
    ADDR:PORT (converting to (ADDR or None, PORT)), `address="required"` only ADDR:PORT
    (converting to the text "ADDR:PORT"); by default the value is the port number. An IPv6
    ADDR is written in brackets, as in a URL: [fd77::2]:80 (converting to fd77::2); `:80`
    is the port with no address."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.name = {None: "PORT", "optional": "[ADDR:]PORT", "required": "ADDR:PORT"}[address]

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> object:
        if not isinstance(value, str):
            return value  # already converted (a default)
        addr, sep, port_text = value.rpartition(":") if self.address else ("", "", value)
        if self.address == "required" and not (sep and addr):
            self.fail(f"{value!r} is not ADDR:PORT (e.g. 10.77.0.1:40000)", param, ctx)
        if addr.startswith("[") and addr.endswith("]"):
            addr = addr[1:-1]
        elif ":" in addr:
            self.fail(f"{value!r}: write an IPv6 address in brackets, as [fd77::2]:80",
                      param, ctx)
        try:
            port = int(port_text)
        except ValueError:
            self.fail(f"{port_text!r} is not a port number (1-65535)", param, ctx)
        if not 0 < port < 65536:
            self.fail(f"port {port} is out of range 1-65535", param, ctx)
        if self.address == "required":
            return f"{addr}:{port}"
        if self.address == "optional":
            return (addr or None) if sep else None, port
        return port


class CommandFailed(Exception):
    """A command ran and failed; the message is the one line the user sees."""


def make_stack(opts: dict[str, object], tun: TunDevice | None = None,
               ephemeral_ports: range | None = None) -> Stack:
    """The stack the options describe; `tun` and `ephemeral_ports` make it one worker of
    several (api/workers.py), whose parent serves the control socket."""
    pcap = opts.get("pcap")
    return Stack(tun=tun, ephemeral_ports=ephemeral_ports, control=tun is None,
                 iface=str(opts["iface"]), address=str(opts["address"]),
                 kernel_address=str(opts["kernel_address"]), mtu=int(str(opts["mtu"])),
                 address6=None if (a6 := opts.get("address6", DEFAULT_ADDRESS6)) is None
                 else str(a6),
                 kernel_address6=None if (k6 := opts.get("kernel_address6",
                                                         DEFAULT_KERNEL_ADDRESS6)) is None
                 else str(k6),
                 txqueuelen=int(str(opts.get("txqueuelen", DEFAULT_TXQUEUELEN))),
                 trace=bool(opts["trace"]), offload=bool(opts["offload"]),
                 config=config if isinstance(config := opts["config"], TcpConfig) else None,
                 pcap=pcap if isinstance(pcap, Path) else None,
                 trace_segments=bool(opts.get("verbose")),
                 impairment=impairment if isinstance(impairment := opts.get("impairment"),
                                                     Impairment) else None,
                 busy_poll=float(str(opts.get("busy_poll", 0.0))))


def parse_keepalive(spec: str) -> tuple[float, float, int]:
    """`IDLE[,INTERVAL,COUNT]` in seconds and probes; INTERVAL and COUNT default to Linux's
    75 s and 9."""
    parts = spec.split(",")
    try:
        if len(parts) not in (1, 3):
            raise ValueError
        idle = float(parts[0])
        interval, count = (float(parts[1]), int(parts[2])) if len(parts) == 3 else (75.0, 9)
        if idle <= 0 or interval <= 0 or count < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{spec!r} is not IDLE or IDLE,INTERVAL,COUNT (e.g. 60,10,5)",
                                 param_hint="'--keepalive'") from None
    return idle, interval, count


def _optional_address(value: str) -> str | None:
    """An IPv6 option's value: 'none' (or empty) turns IPv6 off."""
    return None if value.strip().lower() in ("", "none", "off") else value


def _workers(spec: str) -> int:
    try:
        return worker_count(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--workers'") from None


def _impairment(spec: str | None) -> Impairment | None:
    if spec is None:
        return None
    try:
        return Impairment.parse(spec)
    except ImpairmentError as exc:
        raise click.BadParameter(str(exc), param_hint="'--impair'") from None


def stop_on_signals() -> asyncio.Future[signal.Signals]:
    """SIGINT and SIGTERM end the run: the future resolves to the first that arrives.
    Installed explicitly because a background process started by a non-interactive shell
    ignores SIGINT otherwise."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.done():
            stop.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return stop


async def until_signalled(session: Coroutine[None, None, None],
                          signalled: asyncio.Future[signal.Signals]) -> signal.Signals | None:
    """Run `session` to its end (raising what it raised), or until a signal arrives first:
    then it is cancelled, and waited for, and the signal returned."""
    running = asyncio.ensure_future(session)
    await asyncio.wait((running, signalled), return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        running.result()
        return None
    running.cancel()
    await asyncio.wait((running,))
    return signalled.result()


def exit_signalled(sig: signal.Signals) -> NoReturn:
    """End the command as a shell reports one a signal killed: the line that says why
    (last, like an error), and the status 128 + the signal's number."""
    click.echo("tcpstack: interrupted" if sig is signal.SIGINT else "tcpstack: terminated",
               err=True)
    raise SystemExit(128 + sig)


def format_counters(counters: dict[str, int]) -> str:
    return " ".join(f"{name}={value}" for name, value in sorted(counters.items())) or "none"


# Objects allocated (less freed) between two young-generation collections. Python's default,
# 700, makes a busy stack collect thousands of times a second (each accepted connection
# allocates a few dozen containers), and every tenth one walks the middle generation of all
# live connections; at 10,000 collections are rarer by as much and each is still short.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """The command owns its process, so it sets the collector up for a long-running server
    (the library never touches a host application's GC): what exists now (the imports:
    click, pyroute2 once the interface is up, ...) is frozen out of every collection, which
    then walks only what the stack allocated since, and young collections run less often.
    Called again once the stack is up, to freeze what starting it allocated too."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def run(main: Coroutine[None, None, None]) -> None:
    tune_gc()
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

