"""The kernel side of `make bench`: tcpstack's own echo, discard and static-file handlers
(tcpstack/services/) served by asyncio.start_server on the kernel's TCP, so that the bench
compares the two TCPs under the same application, not two applications.

    python scripts/kernel_app.py --bind 10.78.0.1 --port 80 --http DIR [--backlog 4096]

Prints "listening on ADDR:PORT" once accepting, runs until SIGTERM or SIGINT (installed
explicitly: a background process of a non-interactive shell ignores SIGINT otherwise).

`--processes N` serves from N processes (forked children with SO_REUSEPORT listeners of
their own, the kernel spreading connections over them by their addresses): one process
holds one file per connection, and where the hard open-files limit cannot be raised (a
container without CAP_SYS_RESOURCE) that is how 100,000 idle connections are held. The
parent prints its line once every child listens, and stops them when it stops.

`--busy-poll USEC` has the loop poll as `tcpstack --busy-poll USEC` does (io/driver.py):
for USEC before it sleeps (so after its work) it polls without sleeping, yielding the CPU
between, so the two are compared with the same spinning.

The process is set up as `tcpstack listen` sets up its own, so that the two differ in
their TCP only: the services' INFO lines (the HTTP access log) on stderr in the CLI's
format, and the CLI's collector settings (cli/app.py tune_gc).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import selectors
import signal
import sys
import time
from pathlib import Path

from tcpstack.cli.app import LogLines, tune_gc
from tcpstack.services.echo import discard, echo
from tcpstack.services.http import file_server


def like_the_cli() -> None:
    """Logging and the collector as `tcpstack listen` has them (cli/app.py settings, run)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogLines())
    logging.basicConfig(handlers=[handler], level=logging.INFO)
    tune_gc()


def raise_fd_limit(wanted: int) -> None:
    """Idle-connection runs hold tens of thousands of sockets: as many as the hard limit lets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Raising the hard limit needs CAP_SYS_RESOURCE, which a container may not grant.
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


class BusyPollSelector(selectors.DefaultSelector):
    """Before each poll that would sleep, `window` seconds (at most its timeout) of polls
    that do not, sched_yield between: the loop only sleeps after work, so this is the
    driver's "poll for USEC after traffic"."""

    def __init__(self, window: float) -> None:
        super().__init__()
        self.window = window

    def select(self, timeout: float | None = None
               ) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:
            start = time.monotonic()
            deadline = start + (self.window if timeout is None else min(self.window, timeout))
            while not (ready := super().select(0)) and time.monotonic() < deadline:
                os.sched_yield()
            if ready:
                return ready
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - start))
        return super().select(timeout)


def run_loop(args: argparse.Namespace, ready: int | None = None) -> None:
    """serve() on asyncio's loop, over a busy-polling selector with `--busy-poll`."""
    def factory() -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(BusyPollSelector(args.busy_poll / 1e6))

    with asyncio.Runner(loop_factory=factory if args.busy_poll else None) as runner:
        runner.run(serve(args, ready))


async def serve(args: argparse.Namespace, ready: int | None = None) -> None:
    """Serve until a signal; a child (`ready`: the pipe to its parent) writes a byte there
    once it listens, instead of printing."""
    handler = (echo if args.echo else discard if args.discard else file_server(args.http))
    server = await asyncio.start_server(handler, args.bind, args.port, backlog=args.backlog,
                                        reuse_port=args.processes > 1 or None)
    tune_gc()  # again once serving, as the CLI does once its stack is up
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    if ready is None:
        print(f"listening on {args.bind}:{args.port}", flush=True)
    else:
        os.write(ready, b"!")
        os.close(ready)
    async with server:
        await stop


def fork_children(args: argparse.Namespace) -> list[int]:
    """The other `--processes` - 1 servers, each listening before this returns."""
    read_end, write_end = os.pipe()
    children = []
    for _ in range(args.processes - 1):
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                run_loop(args, write_end)
            finally:
                os._exit(0)
        children.append(pid)
    os.close(write_end)
    for _ in children:
        if not os.read(read_end, 1):
            raise SystemExit("a child server died before it listened")
    os.close(read_end)
    return children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=128)
    parser.add_argument("--fds", type=int, default=1 << 17, help="open-files limit to ask for")
    parser.add_argument("--processes", type=int, default=1,
                        help="serve from this many processes (SO_REUSEPORT)")
    parser.add_argument("--busy-poll", type=int, default=0, metavar="USEC",
                        help="poll this long after traffic before sleeping, as tcpstack's "
                             "--busy-poll (default: 0, off)")
    service = parser.add_mutually_exclusive_group(required=True)
    service.add_argument("--echo", action="store_true")
    service.add_argument("--discard", action="store_true")
    service.add_argument("--http", type=Path, metavar="DIR")
    args = parser.parse_args()
    raise_fd_limit(args.fds)
    like_the_cli()
    children = fork_children(args) if args.processes > 1 else []
    try:
        run_loop(args)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
