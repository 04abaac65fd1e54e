"""`tcpstack up` and `tcpstack down`: one stack, as a daemon, for many processes (api/daemon.py).

`up` runs in the foreground like `listen`; with `--background` it forks once the options
are read, the child starting a session of its own and the parent waiting for it to be up
(a line on a pipe), then printing where its attach socket is and exiting. The child's
errors before that go to the terminal, as the foreground command's would; after it, its
log goes to `--log FILE`, or nowhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from tcpstack.api.attach import NoDaemonRunning, attach
from tcpstack.api.attach_protocol import attach_path
from tcpstack.api.daemon import Daemon, group_id
from tcpstack.cli.app import (
    GLOBAL_OPTION_NAMES,
    LOGGING_OPTION_NAMES,
    also_after_command,
    cli,
    format_counters,
    make_stack,
    run,
    stop_on_signals,
    tune_gc,
)

log = logging.getLogger("tcpstack")

READY = b"ready\n"
# How long the bridges get to finish once the stack has closed their connections.
BRIDGE_GRACE = 1.0


@also_after_command(*GLOBAL_OPTION_NAMES)
@cli.command()
@click.option("-d", "--background", is_flag=True,
              help="Detach once the stack is up, printing where its attach socket is.")
@click.option("--group", metavar="NAME",
              help="Let this group's members attach too (the socket becomes mode 0660 and "
                   "that group's); by default only root may.")
@click.option("--log", "log_file", type=click.Path(dir_okay=False, path_type=Path),
              help="With --background, append the daemon's log to this file (default: "
                   "discarded).")
@click.pass_context
def up(ctx: click.Context, background: bool, group: str | None, log_file: Path | None) -> None:
    """Run a stack as a daemon that other processes attach to.

    Processes use it with listen --attach, connect --attach and tcpstack.attach() in
    Python, each connection handed to them as a file descriptor; it runs until SIGINT,
    SIGTERM or tcpstack down."""
    opts = dict(ctx.obj)
    if int(str(opts.get("workers", 1))) != 1:
        raise click.UsageError("the daemon runs one stack: --workers 1")
    gid = None
    if group is not None:
        try:
            gid = group_id(group)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--group'") from None
    if not background:
        run(_up(opts, gid, group))
        return
    _detach(lambda ready: run(_up(opts, gid, group, ready)), str(opts["iface"]), log_file)


def _detach(serve: Callable[[Callable[[], None]], None], iface: str,
            log_file: Path | None) -> None:
    """Fork: the child serves, the parent returns once it is up (or exits as it failed)."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the daemon
        os.close(read_end)
        os.setsid()  # no terminal's signals, and the shell's job control, reach it

        def ready() -> None:
            os.write(write_end, READY)
            os.close(write_end)
            target = os.open(log_file if log_file is not None else os.devnull,
                             os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            for fd in (1, 2):
                os.dup2(target, fd)
            os.close(target)
            os.close(devnull)

        serve(ready)
        return
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read()
    if said == READY:
        click.echo(f"tcpstack: daemon up on {iface} (pid {pid}); attach socket "
                   f"{attach_path(iface)}")
        return
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) or 1)


async def _up(opts: dict[str, object], gid: int | None, group: str | None,
              ready: Callable[[], None] | None = None) -> None:
    stack = make_stack(opts)
    stop = stop_on_signals()
    await stack.start()
    daemon = Daemon(stack, group=gid, group_name=group)
    try:
        await daemon.start()
        tune_gc()
        who = f"root and group {group}" if group is not None else "root"
        log.info("daemon up on %s (pid %d): attach socket %s, for %s", stack.iface,
                 os.getpid(), daemon.path, who)
        if ready is not None:
            ready()
        assert daemon.stopped is not None
        await asyncio.wait((stop, daemon.stopped), return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down")
    finally:
        daemon.close()
        await stack.close()
        await daemon.wait_idle(BRIDGE_GRACE)
        log.info("counters: %s", format_counters(stack.counters))


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie has finished: its parent has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@also_after_command("iface", *LOGGING_OPTION_NAMES)
@cli.command()
@click.option("--timeout", type=click.FloatRange(0.1), default=15.0, show_default=True,
              help="Seconds to wait for the daemon to have closed its connections and "
                   "exited.")
@click.pass_context
def down(ctx: click.Context, timeout: float) -> None:
    """Stop the daemon (tcpstack up) on --iface here, its connections closed cleanly."""
    iface = str(ctx.obj["iface"])
    try:
        with attach(iface) as client:
            pid = client.stop()
    except NoDaemonRunning as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    deadline = time.monotonic() + timeout
    while _running(pid):
        if time.monotonic() > deadline:
            raise click.ClickException(f"the daemon on {iface} (pid {pid}) is still running "
                                       f"after {timeout:g} s")
        time.sleep(0.05)
    click.echo(f"tcpstack: daemon on {iface} (pid {pid}) stopped", err=True)
