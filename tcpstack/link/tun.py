"""A Linux TUN device: raw IP packets in and out of a file descriptor (linux/if_tun.h).

The kernel side of the interface is configured with pyroute2 (address, MTU, the queue
length, link up). The interface is not persistent, so closing the descriptor removes it,
even if we are killed.

The queue: the kernel puts each packet it routes to the interface in a ring of
`txqueuelen` packets, which our reads empty; a packet that finds the ring full is dropped
there and counted in the interface's tx_dropped (`queue_drops`), before we could see it.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import struct
import threading
from typing import TypeAlias

from tcpstack.link import virtio

Bytes: TypeAlias = bytes | bytearray | memoryview  # as net.checksum's: the link is below net

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_TUN_EXCL = 0x8000  # create, or fail with EBUSY: never join an existing device
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
IFNAMSIZ = 16
IFA_F_NODAD = 0x02  # linux/if_addr.h: the address is usable at once, never "tentative"
# Packets the kernel may queue towards us while the stack is busy (Linux's default is 500):
# room for a burst of several thousand, see docs/DECISIONS.md.
DEFAULT_TXQUEUELEN = 10000
MAX_TXQUEUELEN = 1 << 20


class LinkError(Exception):
    """The TUN device cannot be set up; the message is one line a user can act on."""


class TunDevice:
    def __init__(self, name: str, mtu: int = 1500, offload: bool = False,
                 multi_queue: bool = False) -> None:
        if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or " " in name:
            raise LinkError(f"invalid interface name {name!r} (1-15 characters, no '/' or ' ')")
        if not 68 <= mtu <= 65535:
            raise LinkError(f"invalid MTU {mtu}: must be between 68 and 65535")
        self.name = name
        self.mtu = mtu
        # With offload every packet carries a virtio-net header (virtio.py), which read and
        # write take off and put on: the kernel accepts and hands us partial checksums and
        # TCP segments of up to 64 KB.
        self.offload = offload
        # One queue of a multi-queue device (one per worker process, api/workers.py): each
        # TUNSETIFF with the same name on another descriptor attaches another queue.
        self.multi_queue = multi_queue
        self.fd = -1
        self._ipr: object | None = None
        self._index: int | None = None
        self._ipr_lock = threading.Lock()  # one netlink request at a time on self._ipr

    def open(self, attach: bool = False) -> None:
        """Create the interface; with `attach` (multi-queue only), add a queue to the one
        this process created already. A multi-queue device is created exclusively: a
        second tcpstack with the same name would otherwise join the first's queues."""
        if os.geteuid() != 0:
            raise LinkError("tcpstack needs root to create a TUN device (try sudo)")
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LinkError(f"{TUN_PATH} not found: this kernel has no TUN support "
                            "(modprobe tun)") from None
        except OSError as exc:
            raise LinkError(f"cannot open {TUN_PATH}: {exc.strerror}") from None
        try:
            flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if self.offload else 0)
            if self.multi_queue:
                flags |= IFF_MULTI_QUEUE | (0 if attach else IFF_TUN_EXCL)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", self.name.encode(), flags))
            if self.offload:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EBUSY:
                raise LinkError(f"interface {self.name} is already in use "
                                "(another tcpstack running?)") from None
            if exc.errno == errno.EINVAL:
                raise LinkError(f"interface {self.name} exists and is not a TUN device") from None
            raise LinkError(f"cannot create TUN device {self.name}: {exc.strerror}") from None
        self.fd = fd

    def configure(self, kernel_address: str, txqueuelen: int = DEFAULT_TXQUEUELEN,
                  kernel_address6: str | None = None, address6: str | None = None) -> None:
        """Give the kernel side its address and prefix (e.g. 10.77.0.1/24), set the MTU and
        the queue length (packets the kernel holds for us to read), bring it up. With
        `kernel_address6` (e.g. fd77::1/64) the kernel side gets that IPv6 address too,
        usable at once (no duplicate address detection: a TUN has one peer), and with
        `address6` (the stack's) a route to it when the prefix does not cover it."""
        if not 1 <= txqueuelen <= MAX_TXQUEUELEN:
            raise LinkError(f"invalid queue length {txqueuelen}: must be between 1 and "
                            f"{MAX_TXQUEUELEN}")
        try:
            iface = ipaddress.IPv4Interface(kernel_address)
        except ValueError:
            raise LinkError(f"invalid kernel address {kernel_address!r} "
                            "(expected e.g. 10.77.0.1/24)") from None
        iface6 = stack6 = None
        try:
            if kernel_address6 is not None:
                iface6 = ipaddress.IPv6Interface(kernel_address6)
            if address6 is not None:
                stack6 = ipaddress.IPv6Address(address6)
        except ValueError:
            raise LinkError(f"invalid IPv6 address {kernel_address6 or address6!r} "
                            "(expected e.g. fd77::1/64)") from None
        from pyroute2 import IPRoute  # imported here: the codecs and tests need none of it

        ipr = IPRoute()
        self._ipr = ipr
        try:
            (index,) = ipr.link_lookup(ifname=self.name)
            self._index = index
            # The TUN driver sizes its ring from txqueuelen, also when it changes later.
            ipr.link("set", index=index, mtu=self.mtu, txqlen=txqueuelen)
            ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            if iface6 is not None:
                self._enable_ipv6()
                ipr.addr("add", index=index, address=str(iface6.ip),
                         prefixlen=iface6.network.prefixlen, flags=IFA_F_NODAD)
            ipr.link("set", index=index, state="up")
            if iface6 is not None and stack6 is not None and stack6 not in iface6.network:
                ipr.route("add", dst=str(stack6), dst_len=128, oif=index)
        except LinkError:
            raise
        except Exception as exc:
            raise LinkError(f"cannot configure {self.name} with {kernel_address}"
                            f"{' and ' + kernel_address6 if kernel_address6 else ''}: {exc}"
                            ) from None

    def _enable_ipv6(self) -> None:
        """IPv6 on the interface, in this network namespace: a distribution may turn it off
        for new interfaces (net.ipv6.conf.default.disable_ipv6), and the address needs it."""
        path = f"/proc/sys/net/ipv6/conf/{self.name}/disable_ipv6"
        try:
            with open(path, "w") as knob:
                knob.write("0")
        except FileNotFoundError:
            raise LinkError("this kernel has no IPv6 (no /proc/sys/net/ipv6): "
                            "run without an IPv6 address (--address6 none)") from None

    def queue_drops(self) -> int | None:
        """Packets the kernel dropped because our queue was full (the interface's
        tx_dropped: the kernel transmits towards us), or None before `configure` or when the
        interface cannot be asked. A netlink request: call it off the event loop (pyroute2's
        synchronous calls run a loop of their own)."""
        ipr, index = self._ipr, self._index
        if ipr is None or index is None:
            return None
        try:
            with self._ipr_lock:
                (link,) = ipr.get_links(index)  # type: ignore[attr-defined]
            stats = link.get("IFLA_STATS64")
        except Exception:
            return None
        return None if stats is None else int(stats["tx_dropped"])

    def read(self) -> tuple[bytes | memoryview, bool]:
        """One IP packet, and whether the kernel vouches for its transport checksum (it
        checked it, or it built the packet and leaves the sum to us); raises BlockingIOError
        when none is waiting."""
        frame = os.read(self.fd, 65536 + 64)  # room for a 64 KB segment and its vnet header
        if not self.offload:
            return frame, False
        return memoryview(frame)[virtio.HEADER_LEN:], virtio.checksum_trusted(frame)

    def write(self, headers: bytes, payload: Bytes = b"", gso_size: int = 0) -> None:
        """One IP packet, `headers` then `payload`, gathered by one writev (so the payload
        is not copied into a packet first). `gso_size` (offload only): `headers` are the IP
        and TCP headers, the TCP checksum holds only the pseudo-header sum, and a payload
        larger than `gso_size` is to be cut to it."""
        if not self.offload:
            os.writev(self.fd, (headers, payload))
        elif gso_size:
            os.writev(self.fd, (virtio.tcp_partial(headers, len(payload), gso_size), headers,
                                payload))
        else:
            os.writev(self.fd, (virtio.NONE, headers, payload))

    def close(self) -> None:
        if self._ipr is not None:
            with self._ipr_lock:
                self._ipr.close()  # type: ignore[attr-defined]
            self._ipr = None
        if self.fd >= 0:
            os.close(self.fd)  # a non-persistent TUN interface disappears with its last fd
            self.fd = -1

    def __enter__(self) -> TunDevice:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
