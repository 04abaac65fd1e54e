"""Checks before a Stack configures its interface, so a clash is one clear line, not a
stack that comes up and never sees a packet.

The kernel would accept a second interface with the same address and prefix (say a stack on
tcps1 started while one runs on tcps0 in the same namespace), and then route everything to
the first. So before adding the kernel side's address we look at the addresses the kernel
already has: the kernel side's address must be free, the stack's own address must not be the
kernel's, and no other interface's network as specific as ours (or more) may already cover
the stack's address (a wider one, such as a 10.0.0.0/8 on eth0, loses to our prefix route).
"""

from __future__ import annotations

import ipaddress
import logging

from tcpstack.api.control import control_path
from tcpstack.link.tun import LinkError

log = logging.getLogger("tcpstack")


def _who(ifname: str) -> str:
    if control_path(ifname).exists():
        return f"{ifname}, where another tcpstack runs"
    return ifname


def check_addresses(iface: str, kernel: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                    address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Raise LinkError when the namespace already uses `kernel`'s address or network (IPv4
    or IPv6, as `kernel` is; the option names in the messages are that family's)."""
    from pyroute2 import IPRoute  # imported here, as in link/tun.py

    v6 = kernel.version == 6
    suffix = "6" if v6 else ""
    try:
        with IPRoute() as ipr:
            # IPv6 addresses carry no label: the interface's name comes from its index.
            names: dict[int, str] = ({msg["index"]: msg.get_attr("IFLA_IFNAME")
                                      for msg in ipr.get_links()} if v6 else {})
            assigned = [(msg.get_attr("IFA_LABEL") or names.get(msg["index"])
                         or f"interface {msg['index']}",
                         ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/"
                                                f"{msg['prefixlen']}"))
                        for msg in ipr.get_addr(family=10 if v6 else 2)]
    except Exception as exc:  # a check, not a requirement: configure() reports real failures
        log.debug("address check skipped: %s", exc)
        return
    for ifname, have in assigned:
        if ifname == iface:
            continue
        if have.ip == kernel.ip:
            raise LinkError(f"address {kernel.ip} is already in use in this network namespace "
                            f"(on {_who(ifname)}); choose another --kernel-address{suffix}")
        if have.ip == address:
            raise LinkError(f"address {address} already belongs to the kernel in this network "
                            f"namespace (on {_who(ifname)}); choose another --address{suffix}")
        if address in have.network and have.network.prefixlen >= kernel.network.prefixlen:
            raise LinkError(f"address {address} is already reachable through {_who(ifname)} "
                            f"({have}) in this network namespace; choose another "
                            f"--address{suffix} and --kernel-address{suffix}")
