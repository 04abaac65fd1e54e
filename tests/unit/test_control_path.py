"""Where a stack's control socket lives: by network namespace inode and interface."""

from __future__ import annotations

import os
from pathlib import Path

from tcpstack.api.control import RUN_DIR, control_path


def test_the_path_names_this_namespace_by_default_or_the_one_given() -> None:
    here = os.stat("/proc/self/ns/net").st_ino
    assert control_path("tcps0") == RUN_DIR / f"net-{here}-tcps0.sock"
    assert control_path("tcps1", Path("/tmp/x"), netns=4026531840) == \
        Path("/tmp/x/net-4026531840-tcps1.sock")
