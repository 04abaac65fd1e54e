#!/usr/bin/env python3
"""The optional compiled build (`make compiled`): a copy of the tree with the sans-I/O core
and the stack compiled by mypyc, the compiler the mypy and black projects ship theirs with.

The copy goes to `build/compiled/` (`--into`): tcpstack/, tests/, scripts/ and the project
files, then mypyc turns the hot modules into C extensions beside their sources, where
Python's import finds an extension before the .py. Run anything from it with it first on
the path, e.g. `PYTHONPATH=build/compiled tcpstack listen 80 --http DIR`; the source tree
itself stays pure Python, so nothing stale is ever imported unseen (rebuild after a change).

Compiled: tcpstack/stack.py and every module of tcp/ (with tcp/congestion/), net/ and udp/,
but for what mypyc cannot compile or gains nothing from:
- tcp/events.py: frozen dataclasses with a ClassVar (the compiled class rejects its own
  __init__'s assignment);
- tcp/isn.py: the tests subclass IsnGenerator, and an interpreted class cannot subclass a
  compiled one; its time is hashlib's, C already;
- net/socket_errors.py: mypyc compiles no subclass of OSError;
- the packages' __init__.py.

The rest (io, api, cli, services) is asyncio's and the application's and stays interpreted.
`--check` then runs tests against the copy (the unit tests, or those named after `--`), as CI
does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("tcpstack", "tests", "scripts", "examples", "docs")
PACKAGES = ("tcpstack/tcp", "tcpstack/net", "tcpstack/udp")
LEFT_INTERPRETED = {"tcpstack/tcp/events.py", "tcpstack/tcp/isn.py",
                    "tcpstack/net/socket_errors.py"}


class BuildError(RuntimeError):
    """mypyc failed; the message holds the end of its output."""


def compiled_modules(tree: Path) -> list[str]:
    """The modules of `tree` mypyc compiles, as paths relative to it."""
    paths = ["tcpstack/stack.py"]
    for package in PACKAGES:
        for path in sorted((tree / package).rglob("*.py")):
            rel = path.relative_to(tree).as_posix()
            if path.name != "__init__.py" and rel not in LEFT_INTERPRETED:
                paths.append(rel)
    return paths


def build(into: Path) -> None:
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", ".pytest_cache")
    for name in COPIED:
        shutil.copytree(ROOT / name, into / name, ignore=ignore)
    modules = compiled_modules(into)
    started = time.monotonic()
    print(f"build_compiled: mypyc, {len(modules)} modules into {into} ...", flush=True)
    # mypyc's setup.py runs where it is started; pyproject.toml (which an older setuptools
    # than the one the project builds with cannot read) is copied in only after it.
    result = subprocess.run([sys.executable, "-m", "mypyc", *modules], cwd=into,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"mypyc failed (exit {result.returncode}):\n"
                         f"{(result.stdout + result.stderr)[-4000:]}")
    shutil.rmtree(into / "build")  # its C sources and objects: the extensions are in place
    for name in ("pyproject.toml", "README.md", "Makefile"):
        shutil.copy2(ROOT / name, into / name)
    built = sorted(into.rglob("*.so"))
    print(f"build_compiled: {len(built)} extensions in {time.monotonic() - started:.0f} s; "
          f"run with PYTHONPATH={into}", flush=True)


def check(into: Path, pytest_args: list[str]) -> int:
    """Tests against the compiled copy, the unit tests unless `pytest_args` names others,
    but for those marked `instruments`. TCPSTACK_EXPECT_COMPILED makes them prove it is the
    copy's extensions that run: tests/unit/test_compiled_build.py for the modules they
    import, tests/integration/netns.py for every stack they start."""
    env = dict(os.environ, PYTHONPATH=str(into), TCPSTACK_EXPECT_COMPILED="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-m", "not instruments", *(pytest_args or ["tests/unit"])]
    return subprocess.run(command, cwd=into, env=env).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--into", type=Path, default=ROOT / "build" / "compiled",
                        help="where the compiled copy goes (default build/compiled)")
    parser.add_argument("--check", action="store_true",
                        help="then run tests against it: the unit tests, or what pytest's "
                             "arguments after -- name")
    parser.add_argument("pytest_args", nargs="*",
                        help="pytest's arguments for --check (default: tests/unit)")
    args = parser.parse_args()
    into = args.into.resolve()
    try:
        build(into)
    except BuildError as exc:
        raise SystemExit(f"build_compiled: {exc}") from None
    if args.check:
        raise SystemExit(check(into, args.pytest_args))


if __name__ == "__main__":
    main()
