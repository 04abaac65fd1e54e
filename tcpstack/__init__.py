"""tcpstack: a userspace TCP/IP stack in Python over a Linux TUN device."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tcpstack.api.attach import attach
    from tcpstack.api.streams import Server, Stack, open_connection, start_server

__all__ = ["Server", "Stack", "attach", "open_connection", "start_server"]

# The API is loaded on first use (PEP 562), not here: every `import tcpstack.<anything>`
# runs this file first, and the sans-I/O layers (net/, tcp/) must import without asyncio
# and without the layers above them.
_API_MODULE = "tcpstack.api.streams"
# Names that live in another api module than the streams'.
_ELSEWHERE = {"attach": "tcpstack.api.attach"}


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module(_ELSEWHERE.get(name, _API_MODULE)), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
