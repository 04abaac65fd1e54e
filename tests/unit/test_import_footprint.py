"""The TCP core imports on its own: no asyncio, nothing of io/ or api/ (the layers above it),
while `import tcpstack` still offers the API (`tcpstack.Stack`, `tcpstack.start_server`, ...).

Each import is checked in a fresh interpreter, since this one has long loaded everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tcpstack
from tcpstack.api import streams

ROOT = Path(__file__).resolve().parents[2]
API = ("Server", "Stack", "open_connection", "start_server")


def modules_after(statement: str) -> set[str]:
    """The names in sys.modules of a fresh interpreter once it has run `statement`."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def ours(modules: set[str]) -> set[str]:
    return {m for m in modules if m == "tcpstack" or m.startswith("tcpstack.")}


def test_the_tcp_connection_imports_without_asyncio_io_or_api() -> None:
    modules = modules_after("import tcpstack.tcp.connection")
    assert "tcpstack.tcp.connection" in modules
    assert {m for m in modules if m == "asyncio" or m.startswith("asyncio.")} == set()
    # Only the package itself and the layers at or below tcp/.
    assert {m for m in ours(modules)
            if m != "tcpstack" and not m.startswith(("tcpstack.net.", "tcpstack.tcp."))
            and m not in ("tcpstack.net", "tcpstack.tcp")} == set()


def test_the_sequence_arithmetic_imports_alone() -> None:
    assert ours(modules_after("import tcpstack.tcp.seq")) == {
        "tcpstack", "tcpstack.tcp", "tcpstack.tcp.seq"}


def test_the_codecs_import_without_asyncio() -> None:
    modules = modules_after("import tcpstack.net.ipv4, tcpstack.tcp.segment")
    assert "asyncio" not in modules
    assert ours(modules) == {"tcpstack", "tcpstack.net", "tcpstack.net.checksum",
                             "tcpstack.net.errors", "tcpstack.net.ipv4", "tcpstack.tcp",
                             "tcpstack.tcp.segment"}


def test_import_tcpstack_alone_loads_no_api_until_asked() -> None:
    assert ours(modules_after("import tcpstack")) == {"tcpstack"}
    modules = modules_after("import tcpstack\ntcpstack.Stack")
    assert {"asyncio", "tcpstack.api.streams"} <= modules


def test_the_package_offers_the_api_names() -> None:
    for name in API:
        assert getattr(tcpstack, name) is getattr(streams, name)
    assert set(API) <= set(dir(tcpstack))
    assert sorted(tcpstack.__all__) == sorted((*API, "attach"))
    from tcpstack.api import attach  # the one name from another module (the daemon's client)
    assert tcpstack.attach is attach.attach
    namespace: dict[str, object] = {}
    exec("from tcpstack import *", namespace)  # what a user's star import does
    assert {name: namespace[name] for name in API} == {name: getattr(streams, name)
                                                      for name in API}


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError) as info:
        tcpstack.no_such_thing  # noqa: B018
    assert str(info.value) == "module 'tcpstack' has no attribute 'no_such_thing'"


def test_the_api_names_work_in_a_fresh_interpreter() -> None:
    code = ("import tcpstack\n"
            "from tcpstack import Server, Stack, open_connection, start_server\n"
            "from tcpstack.api import streams\n"
            "assert (Server, Stack, open_connection, start_server) == (streams.Server, "
            "streams.Stack, streams.open_connection, streams.start_server)\n"
            "assert tcpstack.start_server is streams.start_server\n"
            "assert tcpstack.open_connection is streams.open_connection\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
