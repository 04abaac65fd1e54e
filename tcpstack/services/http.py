"""A small static-file HTTP/1.1 server (GET and HEAD) for `tcpstack listen --http DIR`.

Files are streamed in chunks with back-pressure (`drain`), never read whole. Paths are
resolved inside the served directory; anything outside it, or missing, is a 404.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("tcpstack.http")

CHUNK = 1 << 18
MAX_HEADER_BYTES = 16 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           431: "Request Header Fields Too Large"}


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def file_server(root: Path) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                        Awaitable[None]]:
    root = root.resolve()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while await _serve_one(root, reader, writer, peer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


async def _serve_one(root: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: tuple[str, int]) -> bool:
    """Answer one request; True when the connection stays open for another."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            await _respond_error(writer, 400)
        return False
    except asyncio.LimitOverrunError:
        await _respond_error(writer, 431)
        return False
    try:
        method, target, version, headers = _parse_head(head)
    except _BadRequest as exc:
        await _respond_error(writer, exc.status)
        return False
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if method not in ("GET", "HEAD"):
        await _respond_error(writer, 405, keep_alive, extra={"Allow": "GET, HEAD"},
                             with_body=method != "HEAD")
        log.info('%s:%d "%s %s" 405', *peer, method, target)
        return keep_alive
    path = _resolve(root, target)
    if path is None:
        await _respond_error(writer, 404, keep_alive, with_body=method != "HEAD")
        log.info('%s:%d "%s %s" 404', *peer, method, target)
        return keep_alive
    size = path.stat().st_size
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    writer.write(_head(200, {"Content-Type": ctype, "Content-Length": str(size),
                             "Connection": "keep-alive" if keep_alive else "close"}))
    if method == "GET":
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                writer.write(chunk)
                await writer.drain()
    await writer.drain()
    log.info('%s:%d "%s %s" 200 %d', *peer, method, target, size)
    return keep_alive


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _BadRequest(400) from None
    if not version.startswith("HTTP/1."):
        raise _BadRequest(400)
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(400)
        headers[name.strip().lower()] = value.strip()
    return method, target, version, headers


def _resolve(root: Path, target: str) -> Path | None:
    """The file a request target names inside `root`, or None."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
    candidate = (root / path.lstrip("/")).resolve()
    if candidate != root and root not in candidate.parents:
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate if candidate.is_file() else None


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS[status]}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _respond_error(writer: asyncio.StreamWriter, status: int, keep_alive: bool = False,
                         extra: dict[str, str] | None = None, with_body: bool = True) -> None:
    body = f"{status} {REASONS[status]}\n".encode()
    headers = {"Content-Type": "text/plain", "Content-Length": str(len(body)),
               "Connection": "keep-alive" if keep_alive else "close", **(extra or {})}
    writer.write(_head(status, headers) + (body if with_body else b""))
    await writer.drain()
