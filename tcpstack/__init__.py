"""tcpstack: a userspace TCP/IP stack in Python over a Linux TUN device."""

from tcpstack.api.streams import Server, Stack, open_connection, start_server

__all__ = ["Server", "Stack", "open_connection", "start_server"]
