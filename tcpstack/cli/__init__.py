"""The `tcpstack` command line (click): one module per command, registered on import."""

from tcpstack.cli import connect, listen, plot, stat
from tcpstack.cli.app import cli, main

__all__ = ["cli", "connect", "listen", "main", "plot", "stat"]
