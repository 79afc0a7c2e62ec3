"""Feed readers: stream a threat-intel feed into raw batch dicts, one :class:`FeedItem` at a time.

::

    from streambatch.feeds.readers import read_feed
    for item in read_feed("feeds/bad-hosts.txt.gz", "text", base_dir=config_dir,
                          options={"rating": 3, "tags": ["feed:bad-hosts"]}):
        if item.error: log(item.line, item.error, item.raw)
        else: records.append(item.record)   # or better: pass the generator on to Batch.save_all

Formats (``fmt``):

``text``
    One value per line. Blank lines and comment lines (starting with a comment marker:
    ``options["comment"]``, a marker or a list of them, default ``#``, ``//`` and ``;``) are
    skipped; a trailing comment (a marker after a space or tab, as in Spamhaus DROP's
    ``1.10.16.0/20 ; SBL256894``) is cut.
    The type is detected (:func:`detect_type`; defanged values are refanged) unless
    ``options["type"]`` forces one, in which case the value is checked against that type.
``csv`` / ``tsv``
    A header row (or ``options["header"]``: a list of column names when the file has none), then
    rows mapped per ``mapping`` (schema: :mod:`streambatch.feeds.mapping`). ``options``:
    ``delimiter`` (default ``,`` / tab), ``quoting`` (``"minimal"``, the csv default, or
    ``"none"``, the tsv default), ``comment`` (a prefix or a list of them; lines starting with
    one are skipped, e.g. ``"#"`` for abuse.ch exports), ``multiline`` (see below). Every column the mapping names
    must be in the header, else :class:`~streambatch.errors.StreambatchError` is raised before
    any row (a config error, not a bad row). A quoted field larger than
    :func:`csv.field_size_limit` (128 KiB by default) is a bad row. ``line`` is the physical
    line on which the row starts.

    Quotes: by default a quoted field may not span physical lines. Each line is a row of its
    own; a line that leaves a quoted field open (an unbalanced ``"``) is a bad row
    (``unbalanced quote ...``, with its line and text), and the next line is read as a row, so
    one stray quote cannot swallow the rows after it. Feeds whose quoted fields really contain
    newlines set ``multiline = true``: a quoted field then runs on over the following lines,
    and one still open at the end of the source raises
    :class:`~streambatch.errors.IncompleteReadError` (the source is truncated, or the quote is
    unbalanced and every row after it was swallowed). A quote inside an unquoted field
    (``say "hi"``) is text, as for :mod:`csv`.
``jsonl``
    One JSON object per line. Without ``mapping`` each object must already be a batch dict
    (``{"type", "summary"|value fields, ...}``, ``{"type", "name", ...}``, or an association
    record, see below); with ``mapping`` every object is mapped (keys are refs; dotted paths).
``json``
    A JSON array, or an object with the array at ``options["path"]`` (dotted, e.g.
    ``"data.items"``), or the items a JMESPath expression ``options["select"]`` picks (``"*[]"``
    for an object whose values are lists of items; evaluated on one top-level entry at a time,
    see :func:`_selected`), streamed with :mod:`ijson`; items are treated as jsonl lines are and
    ``line`` is the 1-based item index. JSON must be UTF-8. A document that does not parse to
    its end -- a syntax error, a truncated document, a number out of range such as ``1e999``,
    invalid UTF-8 -- ends the parse (a streaming parser cannot resynchronise): every item
    before the error is yielded, then :class:`~streambatch.errors.IncompleteReadError` is
    raised naming the item. An item holding a lone surrogate escape (``"\\ud800"``) is a bad
    row naming its place (see :func:`json_items`). (In ``jsonl`` each line is parsed on its own:
    a bad line, ``1e999`` or a lone surrogate included, is a bad row and the next line is read.)
``stix``
    A STIX 2.1 bundle: see :mod:`streambatch.feeds.stix`; or, for a ``taxii2+https://`` source,
    the objects of a TAXII 2.1 collection (:mod:`streambatch.feeds.taxii`).
``misp``
    A MISP feed (``misp+https://...`` or ``misp+<folder>``): the attributes of its events, see
    :mod:`streambatch.feeds.misp`.

Every record a reader yields is an indicator dict with ``type`` and ``summary`` (or, for File
from hash columns, ``md5``/``sha1``/``sha256``), a group dict with ``type``, ``name`` and
``xid``, or an **association record** ``{"association": {"ref_1", "type_1"?, "ref_2",
"type_2"?, "associationType"?}}`` -- the shape of one entry of the Batch API's top-level
``association`` array (spec 4.7), to be passed to ``Batch.add_association(record["association"])``.
A side with a ``type_N`` is an indicator (``ref_N`` is its summary), a side without is a group
(``ref_N`` is its xid).

Common ``options``: ``encoding`` (default ``"utf-8"``; a UTF-8 BOM is dropped), ``max_line_bytes``
(default 1 MiB), ``rating``/``confidence``/``tags``/``attributes``/``type`` defaults,
``owner`` (needed for mapped groups), ``member`` (zip member), ``timeout`` and ``headers``
(URL sources).

Encoding policy: lines are decoded strictly. A line that is not valid in the feed's encoding
is a **bad row** (``error`` names the byte and position, ``raw`` is the line decoded with
replacement characters); it is never guessed at, because a mangled indicator is worse than a
reported one. Feeds known to be Latin-1 etc. set ``options["encoding"]``.

Bad rows are never fatal and never dropped: each is a ``FeedItem`` with ``record=None``, the
reason in ``error``, the line number and the offending text (at most 1000 characters) in ``raw``.
Errors of the source itself (file missing, HTTP failure, mapping naming absent columns) raise
:class:`~streambatch.errors.StreambatchError` / :class:`~streambatch.errors.TransientError`.

A read is complete only if the source was read to its real end. A source that proves to end
early -- a truncated gzip or zip (or one with a bad CRC), JSON or a STIX bundle that does not
parse to its end, a CSV quoted field still open at the end (``multiline``), an HTTP body
shorter than its Content-Length -- raises :class:`~streambatch.errors.IncompleteReadError` at
the point where it does, *after* yielding every item (good or bad) before that point; its
message names the source (the path, or the URL without credentials or query), the line or
item and what was wrong. Nothing read from such a source may be taken as the whole feed (the
feed worker counts the cycle as a failed read and removes nothing). A connection that fails
mid-body stays a :class:`~streambatch.errors.TransientError` (see
:mod:`streambatch.feeds.sources`). Either way the generator raises: a source never simply
stops early.

Memory: every reader is a generator over a bounded line reader (or ijson); nothing holds the
feed. The only state kept is the set of group keys already yielded (mapped groups) and, for
STIX, the map of indicator ids to their (type, summary) pairs.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import xxhash

from ..errors import IncompleteReadError, StreambatchError
from ..model import DEFAULT_TYPES
from .detect import detect_type
from .mapping import MISSING, Mapper, RowError, apply_defaults, canonical_type, indicator_from_value
from .sources import DEFAULT_MAX_LINE_BYTES, incomplete, iter_lines, open_source, raise_located, source_name

__all__ = ["FeedItem", "FORMATS", "detect_type", "read_feed"]

RAW_MAX = 1000
FORMATS = ("text", "csv", "tsv", "jsonl", "json", "stix")
_TEXT_COMMENTS = ("#", "//", ";")


@dataclass(slots=True)  # not frozen: building a frozen one costs ~0.9 µs, a third of reading a csv row
class FeedItem:
    line: int  # 1-based line number (or item index for JSON/STIX) in the source
    record: dict | None  # a raw batch dict; None when the row is bad (or deferred)
    error: str | None  # why the row is bad (None when record is set)
    raw: str | None = None  # the offending row, trimmed to at most 1000 chars, when bad
    key: bytes | None = None  # deferred (``row_keys``): the row's key, a 128-bit hash
    make: Callable[[], "FeedItem"] | None = None  # deferred: maps the row, giving the record or the bad row

    def made(self) -> "FeedItem":
        """The item with its record (or error): a deferred row is mapped now."""
        return self.make() if self.make is not None else self


def _bad(line: int, error: str, raw: Any = None) -> FeedItem:
    if raw is not None and not isinstance(raw, str):
        raw = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    return FeedItem(line, None, error, raw[:RAW_MAX] if raw is not None else None)


def read_feed(source: str | Path, fmt: str, *, base_dir: Path | None = None, mapping: dict | None = None,
              options: dict | None = None, cache: dict | None = None,
              row_keys: bytes | None = None) -> Iterator[FeedItem]:
    """Stream the feed at ``source`` (a path, relative to ``base_dir``, or an http(s) URL) in
    format ``fmt``; see the module docstring. Configuration errors (unknown format, bad mapping)
    raise here, at once; the source is opened when iteration starts.

    With ``cache`` (a dict the caller persists between runs) URL sources use a conditional GET:
    on 304 nothing is yielded and ``cache["not_modified"]`` is True. The new ETag/Last-Modified
    are stored in ``cache`` once the feed has been read to the end.

    A source that proves incomplete raises :class:`~streambatch.errors.IncompleteReadError`
    once every item before that point has been yielded; the generator never just stops early.

    With ``row_keys`` (a seed: the caller's digest of what else makes a record, such as the
    feed's config), text, csv and tsv rows that make one record each are **deferred**: such
    an item has no record yet, its ``key`` (a 128-bit hash of the seed, the csv header and
    the row's value or fields: equal keys make equal records) and ``made()``, which maps the
    row then -- a caller that knows the row by its key need not pay for the mapping. Rows of
    a mapping with ``groups`` (whose first row of a group also yields the group) are never
    deferred; bad lines (encoding, length, quotes) are reported at once, as without it."""
    fmt = (fmt or "").lower()
    from .taxii import is_taxii

    if is_taxii(source):  # a TAXII 2.1 collection, read page by page: see streambatch.feeds.taxii
        if fmt != "stix":
            raise StreambatchError(f"a TAXII source is read as format 'stix', not {fmt!r}")
        from .taxii import read_taxii
        return read_taxii(str(source), dict(options or {}), cache)
    from .misp import is_misp

    if is_misp(source):  # a MISP feed folder, event by event: see streambatch.feeds.misp
        if fmt != "misp":
            raise StreambatchError(f"a MISP feed is read as format 'misp', not {fmt!r}")
        from .misp import read_misp
        return read_misp(str(source), dict(options or {}), cache)
    if fmt not in FORMATS:
        raise StreambatchError(f"unknown feed format {fmt!r} (use one of {', '.join(FORMATS)})")
    options = dict(options or {})
    if fmt == "stix":
        from .stix import read_stix
        reader: Any = lambda stream: read_stix(stream, options)  # noqa: E731
    elif fmt == "text":
        declared = None
        if options.get("type"):
            try:
                declared = canonical_type(options["type"], "indicator")
            except ValueError as exc:
                raise StreambatchError(f"options.type: {exc}") from None
        reader = lambda stream: _read_text(stream, options, declared, row_keys)  # noqa: E731
    elif fmt in ("csv", "tsv"):
        if not mapping:
            raise StreambatchError(f"{fmt} feeds need a mapping (at least {{value = \"<column>\"}})")
        mapper = Mapper(mapping, options)
        keys = row_keys if not mapper.groups else None  # a group's first row also yields the group
        reader = lambda stream: _read_csv(stream, fmt, mapper, options, keys)  # noqa: E731
    else:
        mapper = Mapper(mapping, options) if mapping else None
        reader = (lambda stream: _read_jsonl(stream, mapper, options)) if fmt == "jsonl" else \
            (lambda stream: _read_json(stream, mapper, options))
    return _run(source, base_dir, options, cache, reader)


def _run(source: str | Path, base_dir: Path | None, options: dict, cache: dict | None, reader: Any) -> Iterator[FeedItem]:
    with open_source(source, base_dir=base_dir, options=options, cache=cache) as opened:
        if opened.stream is None:  # 304 Not Modified
            return
        try:
            yield from reader(opened.stream)
        except IncompleteReadError as exc:  # the readers do not know the source's name
            raise_located(exc, source=source_name(source, base_dir))
        opened.finish()


# -- decoding -----------------------------------------------------------------------------------

def _decode(data: bytes, encoding: str) -> tuple[str, str | None]:
    try:
        return data.decode(encoding), None
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        return data.decode(encoding, "replace"), (
            f"line is not valid {encoding}: byte 0x{byte:02x} at position {exc.start} "
            f"(set options.encoding if the feed is not {encoding})")


def _lines(stream: BinaryIO, options: Mapping[str, Any]) -> Iterator[tuple[int, str, str | None]]:
    """``(line_number, text, error)``; on error ``text`` is the (replaced) raw line."""
    encoding = options.get("encoding") or "utf-8"
    for number, data, error in iter_lines(stream, int(options.get("max_line_bytes") or DEFAULT_MAX_LINE_BYTES)):
        if error:
            yield number, data.decode(encoding, "replace"), error
            continue
        try:
            text = data.decode(encoding)  # the common case, without _decode's call
        except UnicodeDecodeError:
            text, error = _decode(data, encoding)
        yield number, text, error


# -- text ---------------------------------------------------------------------------------------

def comment_marks(options: Mapping[str, Any], default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``options["comment"]`` (a marker or a list of them) as a tuple; ``default`` without it."""
    marks = options.get("comment")
    if marks is None:
        return default
    return (marks,) if isinstance(marks, str) else tuple(marks)


def _strip_comment(value: str, marks: tuple[str, ...]) -> str:
    """``value`` without a trailing comment: from the first marker that follows a space or tab."""
    cut = len(value)
    for mark in marks:
        for space in (" ", "\t"):
            found = value.find(space + mark)
            if 0 <= found < cut:
                cut = found
    return value[:cut].strip()


def _read_text(stream: BinaryIO, options: dict, declared: str | None, row_keys: bytes | None = None
               ) -> Iterator[FeedItem]:
    marks = comment_marks(options, _TEXT_COMMENTS)
    for number, text, error in _lines(stream, options):
        if error:
            yield _bad(number, error, text)
            continue
        value = text.strip()
        if not value or value.startswith(marks):
            continue
        value = _strip_comment(value, marks)
        key = _row_key(row_keys, value) if row_keys is not None else None
        if key is not None:
            yield FeedItem(number, None, None, key=key, make=partial(_text_item, number, value, declared, options, text))
            continue
        yield _text_item(number, value, declared, options, text)


def _row_key(seed: bytes, value: str | list[str]) -> bytes | None:
    """A deferred row's key; None when its text cannot be encoded (it is then mapped at once)."""
    try:
        return xxhash.xxh3_128_digest(seed + (value.encode() if isinstance(value, str) else orjson.dumps(value)))
    except (UnicodeEncodeError, orjson.JSONEncodeError):
        return None


def _text_item(number: int, value: str, declared: str | None, options: dict, text: str) -> FeedItem:
    try:
        record = indicator_from_value(value, declared)
    except RowError as exc:
        return _bad(number, str(exc), text)
    return FeedItem(number, apply_defaults(record, options), None)


# -- csv / tsv ----------------------------------------------------------------------------------

class _Unbalanced(Exception):
    """Raised into the csv reader when a row asks for a second line and ``multiline`` is off:
    the line before left a quoted field open. The reader starts afresh at its next call."""


class _OpenAtEnd(Exception):
    """Raised into the csv reader when, with ``multiline``, the source ends inside a quoted field."""


class _CsvLines:
    """Feeds decoded lines to :func:`csv.reader`; a bad line becomes an empty line (which the
    csv reader skips) and is kept in ``pending`` to be reported.

    The csv reader asks for another line before it returns a row only when the row's last line
    left a quoted field open. ``in_row`` (reset by the caller before each row) says a line of the
    current row has been handed out, so such a request is seen at once and costs one test per
    line: without ``multiline`` it raises :class:`_Unbalanced` instead of giving a line (the
    next line is then the first line of the next row); at the end of the source, with
    ``multiline``, it raises :class:`_OpenAtEnd`. ``text`` is the last line handed out."""

    def __init__(self, stream: BinaryIO, options: Mapping[str, Any], multiline: bool = False) -> None:
        self._it = _lines(stream, options)
        self._comment = comment_marks(options)
        self._multiline = multiline
        self.lineno = 0
        self.in_row = False
        self.text = ""
        self.pending: list[FeedItem] = []

    def __iter__(self) -> "_CsvLines":
        return self

    def __next__(self) -> str:
        if self.in_row and not self._multiline:
            raise _Unbalanced
        try:
            number, text, error = next(self._it)
        except StopIteration:
            if self.in_row:
                raise _OpenAtEnd from None
            raise
        self.in_row = True
        self.lineno = number
        self.text = text
        if error:
            self.pending.append(_bad(number, error, text))
            return "\n"
        if self._comment and text.lstrip().startswith(self._comment):
            return "\n"
        return text + "\n"


def _read_csv(stream: BinaryIO, fmt: str, mapper: Mapper, options: dict, row_keys: bytes | None = None
              ) -> Iterator[FeedItem]:
    delimiter = options.get("delimiter") or ("\t" if fmt == "tsv" else ",")
    quoting_name = str(options.get("quoting") or ("none" if fmt == "tsv" else "minimal")).lower()
    quoting = {"minimal": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE}.get(quoting_name)
    if quoting is None:
        raise StreambatchError(f"options.quoting must be 'minimal' or 'none', not {quoting_name!r}")
    lines = _CsvLines(stream, options, bool(options.get("multiline")) and quoting != csv.QUOTE_NONE)
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=False)
    header: list[str] | None = list(options["header"]) if options.get("header") else None
    index: dict[str, int] = {}
    seed = b""  # row_keys and the header: the same fields under another header are another row
    if header is not None:
        index = _header_index(header, mapper)
        seed = row_keys + orjson.dumps(header) if row_keys is not None else b""
    while True:
        start = lines.lineno + 1
        lines.in_row = False
        try:
            row = next(reader)
        except StopIteration:
            yield from lines.pending
            return
        except _Unbalanced:
            yield from _flush(lines)
            yield _bad(start, "unbalanced quote: a quoted field is still open at the end of the line; the line is "
                              "skipped (set options.multiline = true if quoted fields of this feed span lines)",
                       lines.text)
            continue
        except _OpenAtEnd:
            yield from _flush(lines)
            raise incomplete(None, f"the quoted field that starts on line {start} is still open at the end of the "
                                   "source (the source is truncated, or an unbalanced quote swallowed the rows "
                                   "after it)", f"line {start}") from None
        except csv.Error as exc:
            yield from _flush(lines)
            yield _bad(start, f"malformed {fmt} row: {exc}")
            continue
        if lines.pending:
            yield from _flush(lines)
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = [c.strip() for c in row]
            index = _header_index(header, mapper)
            seed = row_keys + orjson.dumps(header) if row_keys is not None else b""
            continue
        key = _row_key(seed, row) if row_keys is not None else None
        if key is not None:
            yield FeedItem(start, None, None, key=key, make=partial(_csv_one, mapper, index, header, row, start, delimiter))
            continue
        yield from _csv_items(mapper, index, header, row, start, delimiter)


def _csv_items(mapper: Mapper, index: dict[str, int], header: list[str], row: list[str], start: int,
               delimiter: str) -> list[FeedItem]:
    """The items of one csv row: its records, or the bad row."""
    row_len = len(row)

    def get(name: str) -> Any:
        i = index[name]
        return row[i] if i < row_len else MISSING

    try:
        records = list(mapper.records(get))
    except RowError as exc:
        reason = str(exc)
        if row_len != len(header):
            reason += f" (row has {row_len} fields, header has {len(header)})"
        return [_bad(start, reason, delimiter.join(row))]
    return [FeedItem(start, record, None) for record in records]


def _csv_one(*args: Any) -> FeedItem:
    """The item of a deferred csv row (a mapping without groups makes one record a row)."""
    (item,) = _csv_items(*args)
    return item


def _flush(lines: _CsvLines) -> Iterator[FeedItem]:
    if lines.pending:
        pending, lines.pending = lines.pending, []
        yield from pending


def _header_index(header: list[str], mapper: Mapper) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(name, i)
    missing = [c for c in mapper.columns() if c not in index]
    if missing:
        raise StreambatchError(f"mapping names column(s) {', '.join(map(repr, missing))} that the header lacks "
                               f"(header: {', '.join(header[:30])})")
    return index


# -- jsonl / json -------------------------------------------------------------------------------

def _lookup(obj: Any, path: str) -> Any:
    """A key of a JSON object; dotted paths walk nested objects (and lists by index)."""
    if isinstance(obj, Mapping) and path in obj:
        return obj[path]
    cur = obj
    for part in path.split("."):
        if isinstance(cur, Mapping):
            if part not in cur:
                return MISSING
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return cur


def item_records(obj: Any, mapper: Mapper | None, options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records of one JSON item; raises RowError."""
    if not isinstance(obj, Mapping):
        raise RowError(f"item is a JSON {type(obj).__name__}, not an object")
    if mapper is not None:
        return list(mapper.records(lambda name: _lookup(obj, name)))
    if "association" in obj:
        if len(obj) != 1 or not isinstance(obj["association"], Mapping):
            raise RowError("an association item must be {\"association\": {ref_1, ref_2, ...}} and nothing else")
        return [dict(obj)]
    if "type" not in obj:
        raise RowError("item is not a batch record (no 'type') and the feed has no mapping")
    spec = DEFAULT_TYPES.get(obj.get("type"))
    record = dict(obj)
    if spec is not None and spec.kind == "indicator":
        apply_defaults(record, options)
    elif spec is None and "name" not in obj and "summary" not in obj:
        raise RowError(f"item has an unknown type {obj.get('type')!r} and neither 'summary' nor 'name'")
    return [record]


def _read_jsonl(stream: BinaryIO, mapper: Mapper | None, options: dict) -> Iterator[FeedItem]:
    for number, text, error in _lines(stream, options):
        if error:
            yield _bad(number, error, text)
            continue
        if not text.strip():
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield _bad(number, f"malformed JSON: {exc}", text)
            continue
        try:
            records = item_records(obj, mapper, options)
        except RowError as exc:
            yield _bad(number, str(exc), text)
            continue
        for record in records:
            yield FeedItem(number, record, None)


def json_items(stream: BinaryIO, prefix: str, what: str = "item", *, pairs: bool = False) -> Iterator[tuple[int, Any]]:
    """Stream the items under ``prefix`` (ijson syntax) of a UTF-8 JSON document as
    ``(number, item)``; with ``pairs``, the ``(key, value)`` members of the object at ``prefix``.
    A document that does not parse to its end (a syntax error, truncated,
    a number out of range such as ``1e999``, invalid UTF-8) raises
    :class:`~streambatch.errors.IncompleteReadError` after the items before the error: a
    streaming parser cannot resynchronise, so the rest cannot be read.

    An item that holds a lone surrogate escape (``"\\ud800"``, anywhere in it: a value or a
    key) is yielded as a :class:`BadJsonItem` naming where, instead of the item: ijson's C
    parser would turn a lone high surrogate into ``?`` (and ``"\\ud800\\u0041"`` into one
    astral character, and fail on a lone low one). A :class:`_SurrogateGuard` in front of
    the parser rewrites such escapes into marks the parser keeps; only items read while marks
    are outstanding are walked, so ordinary feeds cost one scan of each 64 KiB read. (A mark
    outside every item, in a bundle's own ``id`` say, leaves every later item walked: slower,
    never wrong.)"""
    import ijson

    if stream.peek(3)[:3] == b"\xef\xbb\xbf":  # type: ignore[attr-defined]
        stream.read(3)
    guard = _SurrogateGuard(stream)
    items = (ijson.kvitems if pairs else ijson.items)(guard, prefix, use_float=True)
    number = found = 0
    while True:
        try:
            obj = next(items)
        except StopIteration:
            return
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            text = str(exc).strip()
            reason = text.splitlines()[0].strip() if text else type(exc).__name__  # not yajl's caret drawing
            raise incomplete(None, f"invalid JSON after {what} {number}: {reason}; the rest of the feed cannot "
                                   "be read", f"{what} {number + 1}") from exc
        except IncompleteReadError as exc:
            raise_located(exc, where=f"{what} {number + 1}")
        number += 1
        if guard.marks > found:  # a mark was read since the last item that had them all
            unmarked = _Unmarked()
            value = unmarked.value({obj[0]: obj[1]} if pairs else obj, "")  # a member is walked as {key: value}
            found += unmarked.marks
            if unmarked.lone:
                yield number, BadJsonItem.of(value, unmarked.lone)
                continue
            obj = next(iter(value.items())) if pairs else value
        yield number, obj


def _is_object(stream: BinaryIO) -> bool:
    head = stream.peek(64)[:64].lstrip(b"\xef\xbb\xbf \t\r\n")  # type: ignore[attr-defined]
    return head.startswith(b"{")


def _selected(stream: BinaryIO, path: str | None, select: str) -> Iterator[tuple[int, Any] | FeedItem]:
    """The items ``options["select"]`` (a JMESPath expression) picks, numbered from 1. The
    expression is evaluated on one top-level entry at a time -- ``{key: value}`` for each member
    of a top-level object, ``[item]`` for each item of a top-level array (or of the array at
    ``path``) -- and the results are concatenated, so memory holds one entry, never the
    document. A list result gives its items, null nothing, anything else one item."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    expression = jmespath.compile(select)
    if path:
        entries: Iterator[tuple[int, Any]] = ((n, _entry(obj)) for n, obj in json_items(stream, f"{path}.item"))
    elif _is_object(stream):
        entries = ((n, obj if isinstance(obj, BadJsonItem) else {obj[0]: obj[1]})
                   for n, obj in json_items(stream, "", "entry", pairs=True))
    else:
        entries = ((n, _entry(obj)) for n, obj in json_items(stream, "item"))
    number = 0
    for _, entry in entries:
        if isinstance(entry, BadJsonItem):  # a lone surrogate: no expression sees it
            number += 1
            yield _bad(number, entry.reason, entry.raw)
            continue
        try:
            found = expression.search(entry)
        except JMESPathError as exc:
            number += 1
            yield _bad(number, f"options.select {select!r}: {exc}", orjson.dumps(entry, default=str)[:RAW_MAX])
            continue
        for obj in found if isinstance(found, list) else [] if found is None else [found]:
            number += 1
            yield number, obj


# -- lone surrogates in JSON ----------------------------------------------------------------------

SURROGATE_READ = 1 << 16  # bytes the guard reads from the source at a time
_MARK = "\ufdd0"  # a noncharacter ("for a program's internal use"): what the guard rewrites escapes into
_RAW_MARK = _MARK.encode()
_ESCAPE_MARK = b"\\ufdd0"
_LOOK = 12  # bytes an escape can need past its start: \uD83D\uDE00
_CANDIDATES = re.compile(rb"\\u(?:[dD]([89a-fA-F])[0-9a-fA-F]{2}|[fF][dD][dD]0)|" + re.escape(_RAW_MARK))
_LOW_HALF = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}").match


class _SurrogateGuard:
    """A byte stream over a JSON document in which each lone surrogate escape ``\\uD800``
    (a high surrogate not followed by a low one, or a low one alone) is rewritten as the mark
    escape followed by its four hex digits (``\\ufdd0D800``), and each mark character already
    in the document (raw or escaped) as two marks. Pairs and everything else pass unchanged, so
    the parser's strings hold a mark exactly where the document had a lone surrogate or a mark,
    and :class:`_Unmarked` can tell them apart. ``marks`` counts the rewrites.

    A backslash escapes the character after it only when it ends an odd run of backslashes
    (``\\\\ud800`` is text), so each candidate's run is counted. Reads are cut so that the text
    given out never ends inside an escape or with an odd run of backslashes, and the last
    :data:`_LOOK` bytes wait for the next read, so an escape split across reads is seen whole.
    Memory: one read and a few bytes. Cost: a read without ``\\u`` or a mark is passed on after
    two ``in`` tests; one with them is scanned by one regular expression."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._carry = b""
        self._out = b""
        self._eof = False
        self.marks = 0

    def read(self, size: int = -1) -> bytes:
        while not self._out and not self._eof:
            self._fill()
        if size is None or size < 0 or size >= len(self._out):
            out, self._out = self._out, b""
        else:
            out, self._out = self._out[:size], self._out[size:]
        return out

    def _fill(self) -> None:
        data = self._stream.read(SURROGATE_READ)
        buf = self._carry + data if self._carry else data
        if not data:
            self._eof = True
            cut = len(buf)
        else:
            cut = len(buf) - _LOOK
            if cut > 0:
                cut -= (cut - len(buf[:cut].rstrip(b"\\"))) % 2  # never give out half of an escape
        if cut <= 0 and not self._eof:
            self._carry = buf
            return
        if _RAW_MARK not in buf and b"\\u" not in buf:  # nearly every read of nearly every feed
            self._out, self._carry = buf[:cut], buf[cut:]
            return
        parts: list[bytes] = []
        pos = 0  # buf[:pos] is in parts
        for m in _CANDIDATES.finditer(buf):
            start, end = m.start(), m.end()
            if start < pos:
                continue  # the low half of a pair passed over
            if start >= cut:
                break
            lead = m.group(1)
            if m.group() != _RAW_MARK:
                run = 0
                while start > run and buf[start - run - 1] == 0x5C:
                    run += 1
                if run % 2:
                    continue  # an escaped backslash, then the text "u...."
                if lead is not None and lead in b"89abAB":
                    if _LOW_HALF(buf, end):
                        parts.append(buf[pos:end + 6])  # a surrogate pair: a character
                        pos = end + 6
                        cut = max(cut, pos)
                        continue
                    if not self._eof and end + 6 > len(buf):
                        cut = start  # a low half may follow in the next read: decide then
                        break
            parts.append(buf[pos:start])
            parts.append(_ESCAPE_MARK + buf[start + 2:end] if lead is not None else _ESCAPE_MARK + _ESCAPE_MARK)
            pos = end
            cut = max(cut, pos)
            self.marks += 1
        parts.append(buf[pos:cut])
        self._out, self._carry = b"".join(parts), buf[cut:]


class _Unmarked:
    """Undoes :class:`_SurrogateGuard` in one parsed item: a mark then four hex digits is the
    lone surrogate the document had (put back as that character, its place noted in ``lone``),
    two marks are one mark character. ``marks`` counts what was undone."""

    def __init__(self) -> None:
        self.marks = 0
        self.lone: list[tuple[str, str]] = []  # (place in the item, the escape)

    def value(self, obj: Any, path: str) -> Any:
        if isinstance(obj, str):
            return self.text(obj, path) if _MARK in obj else obj
        if isinstance(obj, dict):
            out = {}
            for key, item in obj.items():
                if _MARK in key:
                    first = len(self.lone)
                    key = self.text(key, "")
                    place = f"key '{shown(key)}'" + (f" of {path}" if path else "")
                    self.lone[first:] = [(place, escape) for _place, escape in self.lone[first:]]
                out[key] = self.value(item, f"{path}.{shown(key)}" if path else shown(key))
            return out
        if isinstance(obj, list):
            return [self.value(item, f"{path}[{i}]") for i, item in enumerate(obj)]
        return obj

    def text(self, value: str, path: str) -> str:
        parts = value.split(_MARK)
        out = [parts[0]]
        i = 1
        while i < len(parts):
            self.marks += 1
            part = parts[i]
            if part == "" and i + 1 < len(parts):  # two marks: the mark character itself
                out.append(_MARK + parts[i + 1])
                i += 2
                continue
            char = chr(int(part[:4], 16))
            self.lone.append((path or "the item", f"\\u{ord(char):04x}"))
            out.append(char + part[4:])
            i += 1
        return "".join(out)


def shown(value: str) -> str:
    """Text with any lone surrogate written as its ``\\udXXX`` escape (storable, printable)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class BadJsonItem:
    """A JSON item that cannot be used as it is (see :func:`json_items`): ``item`` holds the
    parsed value as the document has it, lone surrogates included; ``reason`` and ``raw`` are
    storable text."""

    item: Any
    reason: str
    raw: str

    @classmethod
    def of(cls, item: Any, lone: list[tuple[str, str]]) -> "BadJsonItem":
        places = "; ".join(f"{escape} in {place}" for place, escape in lone[:3])
        more = f" (and {len(lone) - 3} more)" if len(lone) > 3 else ""
        reason = (f"lone surrogate {places}{more}: a JSON \\u escape of half a UTF-16 surrogate pair is no "
                  "character, so the item is not used")
        try:
            raw = json.dumps(item, ensure_ascii=False, default=str)  # lone surrogates raw, as the source had them
        except (TypeError, ValueError, RecursionError):
            raw = repr(item)
        return cls(item, reason, shown(raw)[:RAW_MAX])


def _entry(obj: Any) -> Any:
    """An array item as :func:`_selected` evaluates it: ``[item]`` (a bad item as it is)."""
    return obj if isinstance(obj, BadJsonItem) else [obj]


def _read_json(stream: BinaryIO, mapper: Mapper | None, options: dict) -> Iterator[FeedItem]:
    path = options.get("path")
    if options.get("select"):
        items: Iterator[Any] = _selected(stream, path, options["select"])
    else:
        if not path and _is_object(stream):
            raise StreambatchError("json feed is an object, not an array: set options.path to the array "
                                   "(dotted, e.g. 'data.items'), or options.select to a JMESPath expression "
                                   "(e.g. '*[]' for an object whose values are lists of items)")
        items = json_items(stream, f"{path}.item" if path else "item")
    for entry in items:
        if isinstance(entry, FeedItem):
            yield entry
            continue
        number, obj = entry
        if isinstance(obj, BadJsonItem):
            yield _bad(number, obj.reason, obj.raw)
            continue
        try:
            records = item_records(obj, mapper, options)
        except RowError as exc:
            yield _bad(number, str(exc), orjson.dumps(obj, default=str)[:RAW_MAX])
            continue
        for record in records:
            yield FeedItem(number, record, None)
