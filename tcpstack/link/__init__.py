"""Link layer: the TUN device and its configuration through netlink."""

from tcpstack.link.tun import LinkError, TunDevice

__all__ = ["LinkError", "TunDevice"]
