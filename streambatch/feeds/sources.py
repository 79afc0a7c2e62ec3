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
  the feed. A server that sends no validators has the digest of the body read to its end kept
  instead (``cache["digest"]``); a local file's digest is taken when it is opened. Whether a
  source is unchanged, without reading its rows, is :func:`unchanged`. Validators are kept per URL (``cache["url_sha256"]``, a hash: the URL itself may carry a key): a changed URL is fetched whole.
  Transient failures (connection errors, timeouts, 5xx, 408, 429) raise
  :class:`~streambatch.errors.TransientError`; other 4xx raise
  :class:`~streambatch.errors.StreambatchError`.
* **gzip** is recognised by its magic bytes (``1f 8b``), whatever the name, and decompressed as
  a stream. **zip** (``PK\\x03\\x04``) is opened on the member named in ``options["member"]``,
  or on its only file member; a zip read from a URL is first spooled to a temporary file
  (zip needs to seek; memory stays bounded, the disk holds the archive).

:func:`iter_lines` reads such a stream with ``readline(limit)``, so one huge line costs at
most ``max_line_bytes`` of memory: it is reported as an oversize line, never kept.

**Complete reads only.** A stream ends normally only at the real end of the source; a source
that proves to stop short raises :class:`~streambatch.errors.IncompleteReadError` at the point
where it does, after every byte before that point has been returned (so the readers yield
every row before it). Nothing read from such a source may be taken as the whole feed. The
message names the source (``display_url`` for URLs, the path for files), the position
(:func:`iter_lines` adds ``line N``, :func:`~streambatch.feeds.readers.json_items` ``item N``)
and what was wrong:

* a **gzip** stream that ends before its end-of-stream marker or its trailer, has a bad CRC or
  corrupt deflate data (whether the file is gzip or the HTTP body is ``Content-Encoding:
  gzip``: that layer is decoded here, not by urllib3, so a cut body is noticed);
* a **zip** whose central directory is missing (a cut archive), or whose member is shorter
  than recorded or fails its CRC check (zipfile checks the CRC as the member's last block is
  read, so that last block is not returned);
* an **HTTP body shorter than its Content-Length** (the server closed the connection early):
  urllib3's ``enforce_content_length`` is turned off so that the bytes that did arrive are
  read first, and the length is checked here when the body ends.

A connection that **fails mid-body** (reset, timeout, a chunked body without its last chunk)
stays a :class:`~streambatch.errors.TransientError` (not an ``IncompleteReadError``; both are
``StreambatchError``): it is raised, never taken for the end of the body. A body with neither a
Content-Length nor chunked encoding ends when the server closes the connection, which HTTP
cannot tell from a normal end (unless the body is gzip, whose own end marker is checked).
"""

from __future__ import annotations

import gzip
import io
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import xxhash

from ..errors import IncompleteReadError, StreambatchError, TransientError
from . import redact

DEFAULT_MAX_LINE_BYTES = 1 << 20  # 1 MiB
DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read (seconds)
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_TRANSIENT_STATUS = frozenset({408, 425, 429})


def display_url(url: str) -> str:
    """A URL fit for messages and logs: user info and query values (where feed API keys live)
    masked, see :mod:`streambatch.feeds.redact`."""
    return redact.url(url)


def _url_key(url: str) -> str:
    """What the HTTP cache keeps to tell a changed URL: a hash, never the URL (it may hold a key)."""
    import hashlib

    return hashlib.sha256(url.encode()).hexdigest()


def source_name(source: str | Path, base_dir: Path | None = None) -> str:
    """How messages name a source: :func:`display_url` for a URL, the resolved path for a file."""
    return display_url(str(source)) if is_url(source) else str(resolve_path(source, base_dir))


def incomplete(source: str | None, reason: str, where: str | None = None) -> IncompleteReadError:
    """An :class:`IncompleteReadError` naming the source, the position (``"line 41"``, ``"item
    7"``) and what was wrong. The parts are kept on it (``source``, ``where``, ``reason``) so
    that a caller that knows more can fill in what is missing (see :func:`locate`)."""
    text = f"incomplete read{f' at {where}' if where else ''}: {reason}"
    exc = IncompleteReadError(f"feed {source}: {text}" if source else text)
    exc.source, exc.where, exc.reason = source, where, reason  # type: ignore[attr-defined]
    return exc


def locate(exc: IncompleteReadError, *, source: str | None = None, where: str | None = None) -> IncompleteReadError:
    """``exc`` with its source and position filled in where it had none (``exc`` itself when
    there is nothing to add)."""
    had_source, had_where = getattr(exc, "source", None), getattr(exc, "where", None)
    if (had_source or not source) and (had_where or not where):
        return exc
    return incomplete(had_source or source, getattr(exc, "reason", None) or str(exc), had_where or where)


def raise_located(exc: IncompleteReadError, *, source: str | None = None, where: str | None = None) -> NoReturn:
    """Raise :func:`locate` of ``exc`` (chained to it), or ``exc`` itself if nothing was added."""
    located = locate(exc, source=source, where=where)
    if located is exc:
        raise exc
    raise located from exc


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def resolve_path(source: str | Path, base_dir: Path | None) -> Path:
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


class _HTTPBody(io.RawIOBase):
    """The body of a streamed ``requests`` response as a raw stream; network failures while
    reading become :class:`TransientError`, a body shorter than its Content-Length
    :class:`IncompleteReadError` (raised when it ends, after the bytes that arrived). Knows
    when it has been read to the end. ``decode``: let urllib3 undo the Content-Encoding."""

    def __init__(self, response: Any, url: str, decode: bool = True) -> None:
        self._response = response
        self._url = url
        self._decode = decode
        self._hash = xxhash.xxh3_128()
        self.exhausted = False
        if hasattr(response.raw, "enforce_content_length"):
            # urllib3 would raise on a short body before returning its last bytes: check here instead
            response.raw.enforce_content_length = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        import requests
        import urllib3

        raw = self._response.raw
        try:
            data = raw.read(len(buffer), decode_content=self._decode)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise TransientError(f"feed {display_url(self._url)}: download failed while reading: {_clean(exc)}") from None
        n = len(data)
        if n == 0 and len(buffer):
            remaining = getattr(raw, "length_remaining", None)  # None: no Content-Length (or chunked)
            if remaining:
                got = raw.tell()
                raise incomplete(display_url(self._url), f"the body ended after {got} of {got + remaining} bytes "
                                                         "(Content-Length): the download was cut short")
            self.exhausted = True
        self._hash.update(data)
        buffer[:n] = data
        return n

    def digest(self) -> str:
        """The digest of the body's bytes read so far (XXH3-128, hex)."""
        return self._hash.hexdigest()

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
        stream = _decompress(raw, options, remote, source_name(source, base_dir))
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
        with fh:
            if cache is not None:
                cache["not_modified"] = False
                cache["digest"] = file_digest(fh)  # read through once more: ~4 ms for 20 MB
                fh.seek(0)
            yield fh, None, False
        return
    with _open_url(str(source), options, cache) as opened:
        yield opened


def _request(url: str, options: dict, cache: dict | None) -> Any:
    """GET ``url`` streamed, conditionally when ``cache`` holds validators of this URL."""
    import requests

    headers = {"Accept-Encoding": "gzip, deflate"}
    if options.get("headers"):
        headers.update(options["headers"])
    same_url = cache is not None and cache.get("url_sha256") == _url_key(url)
    if same_url:
        if cache.get("etag"):
            headers["If-None-Match"] = cache["etag"]
        if cache.get("last_modified"):
            headers["If-Modified-Since"] = cache["last_modified"]
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, list):  # TOML has no tuples: [connect, read]
        timeout = tuple(timeout)
    try:
        return requests.get(url, stream=True, timeout=timeout, headers=headers, verify=True)
    except requests.exceptions.InvalidHeader:  # its text quotes the value
        bad = [name for name, value in headers.items() if not isinstance(value, str) or value != value.strip()
               or any(c in value for c in "\r\n\x00")]
        raise StreambatchError(f"feed {display_url(url)}: header {', '.join(map(repr, bad)) or ''} has a value "
                               "that cannot be sent (a line break, a control character or surrounding spaces; "
                               "the value is not shown)") from None
    except (requests.RequestException, ValueError) as exc:  # the cause names the URL: not chained
        raise TransientError(f"feed {display_url(url)}: request failed: {_clean(exc)}") from None


def _undone_here(response: Any) -> bool:
    """Whether the body's Content-Encoding is gzip, which :func:`_decompress` undoes (so it
    notices a cut stream), not urllib3."""
    return (response.headers.get("Content-Encoding") or "").strip().lower() in ("gzip", "x-gzip")


def file_digest(fh: BinaryIO) -> str:
    """The digest of a file's bytes from where ``fh`` is to its end (XXH3-128, hex)."""
    h = xxhash.xxh3_128()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def unchanged(source: str | Path, *, base_dir: Path | None = None, options: dict | None = None,
              cache: dict | None = None, digest: str | None = None) -> str | None:
    """How the source is known to be what it was when ``cache`` (its HTTP validators) and
    ``digest`` (of its bytes as read, ``cache["digest"]``) were recorded: ``"HTTP 304"``, ``"the
    same ETag"``, ``"the same Last-Modified"`` or ``"the same content"``; None when it changed
    or cannot be told. A file is hashed (it is read, not parsed); a URL is asked with a
    conditional GET, and only a server that sends no validators has its body downloaded and
    hashed. A failure is None: the read that follows reports it."""
    cache = cache or {}
    try:
        if not is_url(source):
            with open(resolve_path(source, base_dir), "rb") as fh:
                return "the same content" if digest is not None and file_digest(fh) == digest else None
        url = str(source)
        if cache.get("url_sha256") != _url_key(url):
            return None
        with _request(url, options or {}, cache) as response:
            if response.status_code == 304:
                return "HTTP 304"
            if response.status_code != 200:
                return None
            etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
            if etag:
                return "the same ETag" if etag == cache.get("etag") else None
            if modified:
                return "the same Last-Modified" if modified == cache.get("last_modified") else None
            if digest is None:
                return None
            body = _HTTPBody(response, url, decode=not _undone_here(response))
            buffer = bytearray(1 << 16)
            while body.readinto(buffer):
                pass
            return "the same content" if body.exhausted and body.digest() == digest else None
    except (OSError, StreambatchError):
        return None


@contextmanager
def _open_url(url: str, options: dict, cache: dict | None):
    response = _request(url, options, cache)
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
        body = _HTTPBody(response, url, decode=not _undone_here(response))
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")

        def finish() -> None:
            if cache is None or not body.exhausted:
                return
            cache["url_sha256"] = _url_key(url)
            for key in ("etag", "last_modified", "digest"):
                cache.pop(key, None)
            if not etag and not modified:  # a server without validators: told apart by the content
                cache["digest"] = body.digest()
            if etag:
                cache["etag"] = etag
            if modified:
                cache["last_modified"] = modified

        yield io.BufferedReader(body, 1 << 16), finish, True


class _Checked(io.RawIOBase):
    """One decompression layer (a gzip stream, a zip member) as a raw stream. The errors that
    mean its data stops short or is damaged -- the end comes before the end-of-stream marker,
    a bad CRC, corrupt deflate data -- become :class:`IncompleteReadError`. Reads with
    ``read1`` (one block at a time), so every block before the failing one is returned first."""

    def __init__(self, inner: Any, source: str, what: str) -> None:
        self._inner = inner
        self._source = source
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read1(len(buffer))
        except EOFError as exc:
            raise incomplete(self._source, f"{self._what} is truncated: {exc}") from exc
        except (zlib.error, gzip.BadGzipFile, zipfile.BadZipFile) as exc:
            raise incomplete(self._source, f"{self._what} is damaged: {exc}") from exc
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()


def _decompress(raw: BinaryIO, options: dict, remote: bool, name: str) -> BinaryIO:
    stream: Any = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
    for _ in range(3):  # gz inside zip, zip inside gz: a few layers at most
        head = stream.peek(4)[:4]
        if head.startswith(_GZIP_MAGIC):
            gz = gzip.GzipFile(fileobj=stream, mode="rb")
            stream = io.BufferedReader(_Checked(gz, name, "the gzip data"), 1 << 16)
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
    except zipfile.BadZipFile as exc:  # it starts like a zip but has no central directory: cut short
        raise incomplete(name, f"not a readable zip file ({exc}): the archive is truncated or damaged") from exc
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
    try:
        member = archive.open(info)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise incomplete(name, f"zip member {info.filename!r} cannot be read ({exc}): the archive is damaged") from exc
    return io.BufferedReader(_Checked(member, name, f"zip member {info.filename!r}"), 1 << 16)


def iter_lines(stream: BinaryIO, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, bytes, str | None]]:
    """Yield ``(line_number, bytes, error)`` per physical line, without the line ending.

    A line longer than ``max_line_bytes`` is read through and dropped: it comes back with its
    first 1000 bytes and an error. A UTF-8 BOM at the start is removed; a UTF-16 BOM is refused
    with :class:`StreambatchError` (lines are split on ``\n`` bytes, so only encodings that are
    ASCII-compatible -- UTF-8, Latin-1, cp1252 ... -- can be read).

    An :class:`IncompleteReadError` of the stream is raised with the number of the line it
    cut (the lines before it have been yielded)."""
    limit = max_line_bytes + 2  # room for \r\n
    number = 0
    first = True
    while True:
        try:
            line = stream.readline(limit)
        except IncompleteReadError as exc:
            raise_located(exc, where=f"line {number + 1}")
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
                try:
                    more = stream.readline(limit)
                except IncompleteReadError as exc:
                    raise_located(exc, where=f"line {number}")
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
    """An exception's text, redacted, with its cause (what urllib3 says after "Caused by", such
    as "Connection refused" or a TLS error) rather than the URL requests puts first."""
    import re

    text = str(exc)
    if "Caused by " in text:
        cause = text.split("Caused by ", 1)[1]
        cause = re.sub(r"<[^>]*>:?\s*", "", cause).strip(" ()'\"")
        text = f"{text.split(' (Caused by')[0].split('url:')[0].strip()} ({cause})"
    return type(exc).__name__ + (": " + redact.text(text)[:300] if text else "")
