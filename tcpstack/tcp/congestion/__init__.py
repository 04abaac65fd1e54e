"""Congestion control algorithms behind one small interface."""

from tcpstack.tcp.congestion.base import CongestionControl
from tcpstack.tcp.congestion.newreno import NewReno

__all__ = ["CongestionControl", "NewReno"]
