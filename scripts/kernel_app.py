"""The kernel side of `make bench`: tcpstack's own echo, discard and static-file handlers
(tcpstack/services/) served by asyncio.start_server on the kernel's TCP, so that the bench
compares the two TCPs under the same application, not two applications.

    python scripts/kernel_app.py --bind 10.78.0.1 --port 80 --http DIR [--backlog 4096]

Prints "listening on ADDR:PORT" once accepting, runs until SIGTERM or SIGINT (installed
explicitly: a background process of a non-interactive shell ignores SIGINT otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
from pathlib import Path

from tcpstack.services.echo import discard, echo
from tcpstack.services.http import file_server


def raise_fd_limit(wanted: int) -> None:
    """Idle-connection runs hold tens of thousands of sockets: as many as the hard limit lets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Raising the hard limit needs CAP_SYS_RESOURCE, which a container may not grant.
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


async def serve(args: argparse.Namespace) -> None:
    handler = (echo if args.echo else discard if args.discard else file_server(args.http))
    server = await asyncio.start_server(handler, args.bind, args.port, backlog=args.backlog)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    print(f"listening on {args.bind}:{args.port}", flush=True)
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=128)
    parser.add_argument("--fds", type=int, default=1 << 17, help="open-files limit to ask for")
    service = parser.add_mutually_exclusive_group(required=True)
    service.add_argument("--echo", action="store_true")
    service.add_argument("--discard", action="store_true")
    service.add_argument("--http", type=Path, metavar="DIR")
    args = parser.parse_args()
    raise_fd_limit(args.fds)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
