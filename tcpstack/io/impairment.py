"""A lossy link in software: drop, delay, jitter, duplicate, reorder and corrupt the packets
between the TUN device and the stack, in both directions.

This is what `tc qdisc ... netem` does on a real interface. Kernels built without netem
(CONFIG_NET_SCH_NETEM, as on the machines here) cannot impair a veth, so `--impair` puts
the same faults on tcpstack's own link, where a kernel TCP peer on the far side of the TUN
suffers them exactly as it would suffer a bad network. For testing; off by default.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

Deliver = Callable[[bytes], None]


class ImpairmentError(ValueError):
    pass


@dataclass
class Impairment:
    loss: float = 0.0        # probability a packet is dropped
    delay: float = 0.0       # seconds added to every packet
    jitter: float = 0.0      # up to this many seconds more, uniformly
    duplicate: float = 0.0   # probability a packet is delivered twice
    reorder: float = 0.0     # probability a packet is held back by an extra `reorder_gap`
    reorder_gap: float = 0.005
    corrupt: float = 0.0     # probability one bit of the packet is flipped
    seed: int | None = None

    @classmethod
    def parse(cls, spec: str) -> Impairment:
        """`loss=5%,delay=20ms,jitter=5ms,duplicate=1%,reorder=5%,corrupt=1%,seed=7`."""
        imp = cls()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name not in {"loss", "delay", "jitter", "duplicate", "reorder",
                                       "corrupt", "seed"}:
                raise ImpairmentError(f"bad impairment {item!r} (expected e.g. loss=5%, "
                                      "delay=20ms, jitter=5ms, duplicate=1%, reorder=5%, "
                                      "corrupt=1%, seed=7)")
            try:
                if name == "seed":
                    imp.seed = int(value)
                elif name in ("delay", "jitter"):
                    seconds = float(value.removesuffix("ms")) / 1000 if value.endswith("ms") \
                        else float(value.removesuffix("s"))
                    setattr(imp, name, seconds)
                else:
                    p = float(value.removesuffix("%")) / 100 if value.endswith("%") \
                        else float(value)
                    if not 0 <= p <= 1:
                        raise ValueError
                    setattr(imp, name, p)
            except ValueError:
                raise ImpairmentError(f"bad value in {item!r}") from None
        return imp


class ImpairedPath:
    """One direction of the impaired link: `send(packet)` ends in `deliver(packet)` later,
    twice, or never. Corruption flips a bit after the checksum was computed, as on a wire,
    so it needs a link without checksum offload (the CLI turns offload off with --impair)."""

    def __init__(self, imp: Impairment, loop: asyncio.AbstractEventLoop, deliver: Deliver,
                 rng: random.Random) -> None:
        self.imp = imp
        self.loop = loop
        self.deliver = deliver
        self.rng = rng
        self.dropped = 0
        self.duplicated = 0
        self.reordered = 0
        self.corrupted = 0

    def send(self, packet: bytes) -> None:
        imp, rng = self.imp, self.rng
        if imp.loss and rng.random() < imp.loss:
            self.dropped += 1
            return
        copies = 2 if imp.duplicate and rng.random() < imp.duplicate else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            data = packet
            if imp.corrupt and rng.random() < imp.corrupt:
                self.corrupted += 1
                i = rng.randrange(len(data))
                data = data[:i] + bytes((data[i] ^ (1 << rng.randrange(8)),)) + data[i + 1:]
            wait = imp.delay + (rng.uniform(0, imp.jitter) if imp.jitter else 0.0)
            if imp.reorder and rng.random() < imp.reorder:
                self.reordered += 1
                wait += imp.reorder_gap
            if wait > 0:
                self.loop.call_later(wait, self.deliver, data)
            else:
                self.deliver(data)
