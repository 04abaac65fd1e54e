"""The `tcpstack` command line (click): one module per command, registered on import."""

from tcpstack.cli import connect, daemon, listen, plot, serve, stat
from tcpstack.cli.app import cli, main

__all__ = ["cli", "connect", "daemon", "listen", "main", "plot", "serve", "stat"]
