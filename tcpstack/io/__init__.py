"""The asyncio driver: owns the TUN descriptor and the timers, feeds the sans-I/O stack."""

from tcpstack.io.driver import StackDriver

__all__ = ["StackDriver"]
