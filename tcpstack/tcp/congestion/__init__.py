"""Congestion control algorithms behind one small interface, chosen by name."""

from tcpstack.tcp.congestion.base import CongestionControl
from tcpstack.tcp.congestion.cubic import Cubic
from tcpstack.tcp.congestion.newreno import NewReno

ALGORITHMS: dict[str, type[CongestionControl]] = {"newreno": NewReno, "cubic": Cubic}


def create(name: str, mss: int) -> CongestionControl:
    try:
        return ALGORITHMS[name](mss)
    except KeyError:
        raise ValueError(f"unknown congestion control {name!r} "
                         f"(choose from {', '.join(sorted(ALGORITHMS))})") from None


__all__ = ["ALGORITHMS", "CongestionControl", "Cubic", "NewReno", "create"]
