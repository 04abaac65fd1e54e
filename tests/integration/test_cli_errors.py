"""Setup failures are one line on stderr and a non-zero exit, and leave nothing behind."""

from __future__ import annotations

import pytest

from .conftest import StartStack
from .netns import TCPSTACK, NetNS

pytestmark = pytest.mark.integration


def _one_line_error(result: object) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line of error, got:\n{stderr}"
    assert lines[0].startswith("tcpstack: error: "), lines[0]
    return str(lines[0])


@pytest.mark.timeout(60)
def test_not_root_says_so(netns: NetNS) -> None:
    result = netns.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        TCPSTACK, "listen", "7", "--echo"], timeout=30)
    assert result.returncode == 1
    assert "needs root" in _one_line_error(result)


@pytest.mark.timeout(60)
def test_missing_tun_device_says_so(netns: NetNS) -> None:
    # A private mount namespace where /dev/net is an empty tmpfs: no TUN support.
    script = f'mount -t tmpfs none /dev/net && exec "{TCPSTACK}" listen 7 --echo'
    result = netns.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       timeout=30)
    assert result.returncode == 1
    assert "/dev/net/tun not found" in _one_line_error(result)


@pytest.mark.timeout(60)
def test_interface_in_use_says_so(netns: NetNS, start_stack: StartStack) -> None:
    first = start_stack(netns, "7", "--echo")
    result = netns.run([TCPSTACK, "listen", "9", "--discard"], timeout=30)
    assert result.returncode == 1
    assert "tcps0 is already in use" in _one_line_error(result)
    assert first.alive(), "the first stack must keep running"
    first.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "message", "status"), [
    (["--address", "10.77.0.300", "listen", "7", "--echo"], "invalid address", 1),
    (["--kernel-address", "10.77.0.1/99", "listen", "7", "--echo"], "invalid kernel address", 1),
    (["--address", "10.99.0.2", "listen", "7", "--echo"], "outside the kernel side", 1),
    (["--iface", "a-name-far-too-long", "listen", "7", "--echo"], "invalid interface name", 1),
    (["listen", "70000", "--echo"], "out of range", 2),
    (["listen", "7"], "choose exactly one", 2),
    (["listen", "7", "--echo", "--discard"], "choose exactly one", 2),
    (["--mtu", "20", "listen", "7", "--echo"], "--mtu", 2),
])
def test_bad_arguments_give_one_line_and_nonzero_exit(netns: NetNS, args: list[str],
                                                      message: str, status: int) -> None:
    result = netns.run([TCPSTACK, *args], timeout=30)
    assert result.returncode == status, result.stderr
    assert message in _one_line_error(result)
    links = netns.run(["ip", "-o", "link"]).stdout
    assert "tcps0" not in links, "a failed start must not leave an interface behind"
