"""A small static-file HTTP/1.1 server (GET and HEAD) for `tcpstack listen --http DIR`.

Files are streamed in chunks with back-pressure (`drain`), never read whole. Paths are
resolved inside the served directory; anything outside it, or missing, is a 404. A directory
behaves as under `python -m http.server`: asked for without its trailing slash it redirects
(301) to the URL with one, so that relative links resolve inside it; with the slash it
serves its `index.html` (or `index.htm`), or else an HTML list of its entries.
"""

from __future__ import annotations

import asyncio
import html
import logging
import mimetypes
import os
import stat
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path

from tcpstack.api.streams import format_endpoint

log = logging.getLogger("tcpstack.http")

CHUNK = 1 << 18
MAX_HEADER_BYTES = 16 * 1024
REASONS = {200: "OK", 301: "Moved Permanently", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 431: "Request Header Fields Too Large"}
INDEX_FILES = ("index.html", "index.htm")


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def file_server(root: Path) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                        Awaitable[None]]:
    root = root.resolve()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = format_endpoint(host, port)  # [fd77::1]:40000 for IPv6
        try:
            while await _serve_one(root, reader, writer, peer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


async def _serve_one(root: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: str) -> bool:
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
        log.info('%s "%s %s" 405', peer, method, target)
        return keep_alive
    found = _resolve(root, target)
    if found is None:
        await _respond_error(writer, 404, keep_alive, with_body=method != "HEAD")
        log.info('%s "%s %s" 404', peer, method, target)
    elif stat.S_ISDIR(found[1].st_mode):
        await _serve_directory(writer, Path(found[0]), method, target, keep_alive, peer)
    else:
        await _send_file(writer, found[0], found[1].st_size, method, target, keep_alive, peer)
    return keep_alive


async def _send_file(writer: asyncio.StreamWriter, path: str, size: int, method: str,
                     target: str, keep_alive: bool, peer: str) -> None:
    """`path`'s `size` bytes (from the stat that found it)."""
    ctype = mimetypes.guess_type(os.path.basename(path))[0] or "application/octet-stream"
    writer.write(_head(200, {"Content-Type": ctype, "Content-Length": str(size),
                             "Connection": "keep-alive" if keep_alive else "close"}))
    if method == "GET":
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                writer.write(chunk)
                await writer.drain()
    await writer.drain()
    log.info('%s "%s %s" 200 %d', peer, method, target, size)


async def _serve_directory(writer: asyncio.StreamWriter, path: Path, method: str, target: str,
                           keep_alive: bool, peer: str) -> None:
    """A redirect to the URL with a trailing slash, the index file, or the listing."""
    connection = "keep-alive" if keep_alive else "close"
    url = urllib.parse.urlsplit(target)
    if not url.path.endswith("/"):
        location = urllib.parse.urlunsplit(("", "", url.path + "/", url.query, ""))
        writer.write(_head(301, {"Location": location, "Content-Length": "0",
                                 "Connection": connection}))
        await writer.drain()
        log.info('%s "%s %s" 301', peer, method, target)
        return
    index = next((path / name for name in INDEX_FILES if (path / name).is_file()), None)
    if index is not None:
        await _send_file(writer, str(index), index.stat().st_size, method, target, keep_alive,
                         peer)
        return
    listing = _listing(path, urllib.parse.unquote(url.path))
    if listing is None:
        await _respond_error(writer, 404, keep_alive, with_body=method != "HEAD")
        log.info('%s "%s %s" 404', peer, method, target)
        return
    writer.write(_head(200, {"Content-Type": "text/html; charset=utf-8",
                             "Content-Length": str(len(listing)), "Connection": connection}))
    if method == "GET":
        writer.write(listing)
    await writer.drain()
    log.info('%s "%s %s" 200 %d', peer, method, target, len(listing))


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


def _resolve(root: Path, target: str) -> tuple[str, os.stat_result] | None:
    """The file or directory a request target names inside `root` (resolved), with its
    stat, or None. A file's name with a slash after it names nothing, as in a file system.
    On strings and one stat, not pathlib's objects and a stat per question: it runs for
    every request (the links are followed as Path.resolve follows them, by realpath)."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
    top = str(root)
    candidate = os.path.realpath(os.path.join(top, path.lstrip("/")))
    if candidate != top and not candidate.startswith(top.rstrip("/") + "/"):
        return None
    try:
        found = os.stat(candidate)
    except (OSError, ValueError):  # ValueError: a NUL in the name, as Path.is_file says
        return None
    if stat.S_ISDIR(found.st_mode) or (stat.S_ISREG(found.st_mode)
                                       and not path.endswith("/")):
        return candidate, found
    return None


def _listing(directory: Path, shown: str) -> bytes | None:
    """An HTML page linking to each entry of `directory` (sorted regardless of case,
    subdirectories marked with a slash, symbolic links with @), titled with the URL path
    `shown`; None when the directory cannot be read."""
    try:
        entries = sorted(directory.iterdir(), key=lambda p: (p.name.lower(), p.name))
    except OSError:
        return None
    items = []
    for entry in entries:
        link = entry.name + "/" if entry.is_dir() else entry.name
        label = entry.name + "@" if entry.is_symlink() else link
        href = urllib.parse.quote(link, errors="surrogatepass")
        items.append(f'<li><a href="{html.escape(href)}">'
                     f'{html.escape(label, quote=False)}</a></li>')
    title = html.escape(f"Directory listing for {shown}", quote=False)
    page = "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>",
                      '<meta charset="utf-8">', f"<title>{title}</title>", "</head>",
                      "<body>", f"<h1>{title}</h1>", "<hr>", "<ul>", *items, "</ul>", "<hr>",
                      "</body>", "</html>", ""])
    return page.encode("utf-8", "surrogateescape")


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
