"""Opening feed sources as byte streams, and reading them line by line with bounded memory.

:func:`open_source` is a context manager that yields a binary, buffered stream for a local
path or an ``http(s)`` URL, with gzip and zip layers removed:

* **Local paths** are taken relative to ``base_dir`` (the directory of the feed config) unless
  absolute; ``~`` is expanded. Only the path the user configured is ever opened: nothing read
  *from* a feed is used as a path.
* **URLs** are fetched with :mod:`requests` (``stream=True``, connect/read timeouts, TLS
  verification on, never read whole). ``Content-Encoding: gzip`` is decoded by urllib3.
  Conditional GET: with a ``cache`` dict, the ``ETag``/``Last-Modified`` validators of the last
  complete download are sent as ``If-None-Match``/``If-Modified-Since``; a ``304`` yields
  ``None`` instead of a stream and sets ``cache["not_modified"] = True``. New validators are
  written to ``cache`` only when the body has been read to the end (:func:`open_source`'s
  caller calls ``finish()``), so a run that fails half way does not make the next run skip
  the feed. Validators are kept per URL (``cache["url"]``): a changed URL is fetched whole.
  Transient failures (connection errors, timeouts, 5xx, 408, 429) raise
  :class:`~streambatch.errors.TransientError`; other 4xx raise
  :class:`~streambatch.errors.StreambatchError`.
* **gzip** is recognised by its magic bytes (``1f 8b``), whatever the name, and decompressed as
  a stream. **zip** (``PK\\x03\\x04``) is opened on the member named in ``options["member"]``,
  or on its only file member; a zip read from a URL is first spooled to a temporary file
  (zip needs to seek; memory stays bounded, the disk holds the archive).

:func:`iter_lines` reads such a stream with ``readline(limit)``, so one huge line costs at
most ``max_line_bytes`` of memory: it is reported as an oversize line, never kept.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import StreambatchError, TransientError

DEFAULT_MAX_LINE_BYTES = 1 << 20  # 1 MiB
DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read (seconds)
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_TRANSIENT_STATUS = frozenset({408, 425, 429})


def display_url(url: str) -> str:
    """A URL fit for messages and logs: without user:password and without the query string,
    which is where feed API keys live."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def resolve_path(source: str | Path, base_dir: Path | None) -> Path:
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


class _HTTPBody(io.RawIOBase):
    """The body of a streamed ``requests`` response as a raw stream; network failures while
    reading become :class:`TransientError`. Knows when it has been read to the end."""

    def __init__(self, response: Any, url: str) -> None:
        self._response = response
        self._url = url
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        import requests
        import urllib3

        try:
            data = self._response.raw.read(len(buffer), decode_content=True)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise TransientError(f"feed {display_url(self._url)}: download failed while reading: {_clean(exc)}") from exc
        n = len(data)
        if n == 0:
            self.exhausted = True
        buffer[:n] = data
        return n

    def close(self) -> None:
        self._response.close()
        super().close()


class Opened:
    """What :func:`open_source` yields: the byte ``stream`` (``None`` on 304) and ``finish()``,
    to be called after the stream was consumed to the end (it records the validators)."""

    def __init__(self, stream: BinaryIO | None, on_finish: Any = None) -> None:
        self.stream = stream
        self._on_finish = on_finish

    def finish(self) -> None:
        if self._on_finish is not None:
            self._on_finish()


@contextmanager
def open_source(source: str | Path, *, base_dir: Path | None = None, options: dict | None = None,
                cache: dict | None = None) -> Iterator[Opened]:
    options = options or {}
    with _open_raw(source, base_dir, options, cache) as (raw, on_finish, remote):
        if raw is None:
            yield Opened(None)
            return
        stream = _decompress(raw, options, remote, str(source))
        try:
            yield Opened(stream, on_finish)
        finally:
            stream.close()


@contextmanager
def _open_raw(source: str | Path, base_dir: Path | None, options: dict, cache: dict | None):
    if not is_url(source):
        path = resolve_path(source, base_dir)
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise StreambatchError(f"feed {source}: cannot open {path}: {exc.strerror or exc}") from exc
        if cache is not None:
            cache["not_modified"] = False
        with fh:
            yield fh, None, False
        return
    with _open_url(str(source), options, cache) as opened:
        yield opened


@contextmanager
def _open_url(url: str, options: dict, cache: dict | None):
    import requests

    headers = {"Accept-Encoding": "gzip, deflate"}
    if options.get("headers"):
        headers.update(options["headers"])
    same_url = cache is not None and cache.get("url") == url
    if same_url:
        if cache.get("etag"):
            headers["If-None-Match"] = cache["etag"]
        if cache.get("last_modified"):
            headers["If-Modified-Since"] = cache["last_modified"]
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    try:
        response = requests.get(url, stream=True, timeout=timeout, headers=headers, verify=True)
    except requests.RequestException as exc:
        raise TransientError(f"feed {display_url(url)}: request failed: {_clean(exc)}") from exc
    with response:
        status = response.status_code
        if status == 304:
            if cache is not None:
                cache["not_modified"] = True
            yield None, None, True
            return
        if status >= 500 or status in _TRANSIENT_STATUS:
            raise TransientError(f"feed {display_url(url)}: server answered HTTP {status} {response.reason or ''}".rstrip())
        if status >= 400:
            raise StreambatchError(f"feed {display_url(url)}: HTTP {status} {response.reason or ''}".rstrip())
        if status != 200:
            raise StreambatchError(f"feed {display_url(url)}: unexpected HTTP {status}")
        if cache is not None:
            cache["not_modified"] = False
        body = _HTTPBody(response, url)
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")

        def finish() -> None:
            if cache is None or not body.exhausted:
                return
            cache["url"] = url
            cache.pop("etag", None)
            cache.pop("last_modified", None)
            if etag:
                cache["etag"] = etag
            if modified:
                cache["last_modified"] = modified

        yield io.BufferedReader(body, 1 << 16), finish, True


def _decompress(raw: BinaryIO, options: dict, remote: bool, name: str) -> BinaryIO:
    stream: Any = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
    for _ in range(3):  # gz inside zip, zip inside gz: a few layers at most
        head = stream.peek(4)[:4]
        if head.startswith(_GZIP_MAGIC):
            stream = io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"), 1 << 16)  # type: ignore[arg-type]
        elif head.startswith(_ZIP_MAGIC):
            stream = _open_zip_member(stream, options, remote, name)
        else:
            break
    return stream


def _open_zip_member(stream: Any, options: dict, remote: bool, name: str) -> BinaryIO:
    fileobj = stream
    if remote or not stream.seekable():
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        shutil.copyfileobj(stream, spool, 1 << 20)
        spool.seek(0)
        fileobj = spool
    try:
        archive = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile as exc:
        raise StreambatchError(f"feed {name}: not a readable zip file: {exc}") from exc
    members = [i for i in archive.infolist() if not i.is_dir()]
    wanted = options.get("member")
    if wanted is not None:
        info = next((i for i in members if i.filename == wanted), None)
        if info is None:
            raise StreambatchError(f"feed {name}: zip has no member {wanted!r} "
                                   f"(members: {', '.join(i.filename for i in members[:20])})")
    elif len(members) == 1:
        info = members[0]
    else:
        raise StreambatchError(f"feed {name}: zip has {len(members)} members; name one with options.member")
    return io.BufferedReader(archive.open(info), 1 << 16)  # type: ignore[arg-type]


def iter_lines(stream: BinaryIO, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, bytes, str | None]]:
    """Yield ``(line_number, bytes, error)`` per physical line, without the line ending.

    A line longer than ``max_line_bytes`` is read through and dropped: it comes back with its
    first 1000 bytes and an error. A UTF-8 BOM at the start is removed; a UTF-16 BOM is refused
    with :class:`StreambatchError` (lines are split on ``\n`` bytes, so only encodings that are
    ASCII-compatible -- UTF-8, Latin-1, cp1252 ... -- can be read)."""
    limit = max_line_bytes + 2  # room for \r\n
    number = 0
    first = True
    while True:
        line = stream.readline(limit)
        if not line:
            return
        number += 1
        if first:
            first = False
            if line.startswith(_UTF8_BOM):
                line = line[3:]
            elif line.startswith(_UTF16_BOMS):
                raise StreambatchError("feed starts with a UTF-16 byte order mark; only UTF-8 "
                                       "(or a single-byte encoding set in options.encoding) is supported")
        if not line.endswith(b"\n") and len(line) >= limit:
            head, size = line[:1000], len(line)
            while True:
                more = stream.readline(limit)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    size -= len(more) - len(more.rstrip(b"\r\n"))
                    break
            yield number, head, f"line is longer than {max_line_bytes} bytes ({size} bytes); skipped"
            continue
        body = line.rstrip(b"\r\n") if line.endswith(b"\n") else line
        if len(body) > max_line_bytes:
            yield number, body[:1000], f"line is longer than {max_line_bytes} bytes ({len(body)} bytes); skipped"
            continue
        yield number, body, None


def _clean(exc: Exception) -> str:
    """An exception's text without the URL requests puts in it (it may carry a key)."""
    return type(exc).__name__ + (": " + str(exc).split(" (Caused by")[0].split("url:")[0].strip()[:200] if str(exc) else "")
