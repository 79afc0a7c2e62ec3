"""TAXII 2.1 collections as a feed source (read with the OASIS ``taxii2-client`` library).

A feed reads one collection of a TAXII 2.1 server. The config names it either with a
``taxii2+`` source::

    source = "taxii2+https://taxii.example.com/taxii2/"   # discovery, an API root or a collection URL
    format = "stix"                                       # the default for a TAXII source
    owner = "Demo Organization"

    [taxii]
    collection = "Indicators"    # its id or title (not needed when the API root has one collection)
    user = "me"
    password = "${TAXII_PASSWORD}"
    full_refresh = "1d"

or with ``[taxii] url`` instead of ``source`` (see :data:`KEYS` and :func:`settings_from_config`).
Credentials: ``user``/``password`` (``${NAME}`` and ``${file:PATH}`` references are expanded), user
info in the URL (``taxii2+https://user:pass@host/...``, e.g. from ``source_env``), or an
``Authorization`` header from ``[options] headers`` / ``headers_env``. All are registered with
:mod:`streambatch.feeds.redact` when the config loads. TAXII 2.1 requires HTTPS; plain
``http://`` is accepted only for a loopback host (tests, a local proxy).

**Reading.** The URL is fetched: a discovery resource leads to ``api_root`` (or the server's
``default`` API root, or its only one), an API root to ``collection`` (or its only collection),
and a URL ending in ``/collections/<id>/`` is the collection itself. Objects are fetched page by
page with :func:`taxii2client.v21.as_pages` (``page_size`` objects a request, default: as many as
the server gives; when the server returns another number than asked, that number is asked from
then on), following ``next``; a server that says ``more`` without a ``next`` is paged with
``added_after`` set to the page's ``X-TAXII-Date-Added-Last``, as TAXII 2.1 section 3.4 allows.
The objects are turned into records by :mod:`streambatch.feeds.stix`, exactly as the objects of a
bundle (``line`` is the object's 1-based position in the read), relationships across pages
included. An object the server returns twice in one read (same ``id`` and ``modified``) is read
once.

**Incremental reads and the cursor.** The first read of a collection, and every read once
``full_refresh`` has passed since the last full one, is a *full* read: the whole collection. Every
other read asks only for what was added after the cursor: the ``X-TAXII-Date-Added-Last`` header
of the last page of the last read whose records were all confirmed (the server's own
``date_added`` clock, never the objects' ``modified``, kept exactly as the server wrote it,
microseconds and all). The reader reads the committed cursor from ``cache["cursor"]``, and leaves
the cursor its read ended at in ``cache["cursor_pending"]`` (``{"collection", "added_after",
"full"}``: a hash of the collection's URL, the header, and when the last full read started); the
feed worker commits it (``state.put("cursor", ...)``) only after the cycle's job was confirmed,
so a cycle that fails or is interrupted reads the same objects again. ``cache["partial"]`` is True
for an incremental read: it holds only what was added, so the worker neither retires records
missing from it nor counts them as absent; that is done by full reads alone (without
``full_refresh`` no record is ever retired). A server that ignores ``added_after`` sends the whole
collection each time; objects already sent come out as the records confirmed last time and are
counted ``unchanged``, never sent again.

**Failures.** A connection error, a timeout, HTTP 5xx, 408 or 429 raise
:class:`~streambatch.errors.TransientError`; refused credentials, a missing API root or
collection, or an answer that is not TAXII 2.1 raise :class:`~streambatch.errors.StreambatchError`;
a page refused after the first (a paging session the server lost, e.g. by restarting), or an
envelope that says ``more`` but cannot be followed, raise
:class:`~streambatch.errors.IncompleteReadError`. Every one of them is a failed read: the cycle
sends and removes nothing and the cursor stays where it was.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import orjson
import xxhash

from ..errors import IncompleteReadError, StreambatchError, TransientError
from . import redact

log = logging.getLogger("streambatch.feeds")

SCHEME = "taxii2+"
#: ``[taxii]`` keys: name -> what it is, for messages.
KEYS = {
    "url": "the discovery, API root or collection URL (instead of a taxii2+ source)",
    "api_root": "the API root's URL, absolute or relative to url (default: the server's default API root)",
    "collection": "the collection's id or title (default: the API root's only collection)",
    "user": "the user name for HTTP basic authentication",
    "password": "the password for HTTP basic authentication",
    "page_size": "objects per request (default: the server's page size)",
    "full_refresh": "how often to read the whole collection instead of what was added (an interval such as '1d')",
}
_TRANSIENT = frozenset({408, 425, 429})


def is_taxii(source: Any) -> bool:
    """A ``taxii2+http(s)://`` source."""
    return isinstance(source, str) and source.strip().lower().startswith((SCHEME + "http://", SCHEME + "https://"))


def display(url: str) -> str:
    """The collection URL as messages show it (credentials masked)."""
    return redact.url(url)


# -- configuration ------------------------------------------------------------------------------

def settings_from_config(raw: dict[str, Any], path: Path, expand: Callable[[str, Path, str], str]) -> dict[str, Any] | None:
    """Check the TAXII part of a loaded TOML config (``raw``, whose ``source`` is expanded) and
    normalise it: ``raw["source"]`` becomes ``taxii2+<url>`` without credentials and
    ``raw["format"]`` defaults to ``stix``. Returns the settings the reader takes from
    ``options["taxii"]`` (None when the feed is not a TAXII feed). Raises ConfigError naming the
    file and the key; registers every credential with :mod:`redact`."""
    from .config import ConfigError, did_you_mean, parse_interval

    table = raw.get("taxii")
    source = raw.get("source")
    if table is None and not is_taxii(source):
        return None
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [taxii] must be a table")
    for key in table:
        if key not in KEYS:
            raise ConfigError(f"{path}: unknown key 'taxii.{key}'{did_you_mean(key, KEYS)}")
    values: dict[str, Any] = {}
    for key in ("url", "api_root", "collection", "user", "password"):
        if key in table:
            value = table[key]
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{path}: taxii.{key} must be a non-empty string ({KEYS[key]})")
            values[key] = expand(value, path, f"taxii.{key}").strip()
    if "url" in values:
        if source is not None:
            raise ConfigError(f"{path}: give either source (or source_env) or taxii.url, not both")
        url = values["url"][len(SCHEME):] if is_taxii(values["url"]) else values["url"]
        where = "taxii.url"
    elif is_taxii(source):
        url, where = source.strip()[len(SCHEME):], "source"
    else:
        raise ConfigError(f"{path}: a [taxii] table needs taxii.url, or source = \"taxii2+https://host/taxii2/\" "
                          f"(source is {redact.url(str(source)) if source else 'not set'})")
    redact.register(*redact.url_secrets(url), values.get("user"), values.get("password"))
    url, user, password = _split_credentials(url, path, where, ConfigError)
    if user is not None:
        if "user" in values or "password" in values:
            raise ConfigError(f"{path}: {where} carries a user name and password, and so does [taxii]: give them once")
        values["user"], values["password"] = user, password
    if ("user" in values) != ("password" in values):
        raise ConfigError(f"{path}: taxii.user and taxii.password go together (basic authentication needs both)")
    options = raw.get("options") if isinstance(raw.get("options"), dict) else {}  # not a table: said later
    headers = options.get("headers") if isinstance(options.get("headers"), dict) else {}
    headers_env = options.get("headers_env") if isinstance(options.get("headers_env"), dict) else {}
    if "user" in values and any(str(h).lower() == "authorization" for h in [*headers, *headers_env]):
        raise ConfigError(f"{path}: give either taxii.user/password or an Authorization header, not both")
    if "api_root" in values:
        root = urljoin(url, values["api_root"])
        _check_url(root, path, "taxii.api_root", ConfigError)
        values["api_root"] = root if root.endswith("/") else root + "/"
    page_size = table.get("page_size")
    if page_size is not None and (isinstance(page_size, bool) or not isinstance(page_size, int) or page_size <= 0):
        raise ConfigError(f"{path}: taxii.page_size must be a positive integer (not {page_size!r})")
    full_refresh = None
    if "full_refresh" in table:
        if not isinstance(table["full_refresh"], str):
            raise ConfigError(f"{path}: taxii.full_refresh must be an interval such as '1d' (not {table['full_refresh']!r})")
        full_refresh = parse_interval(table["full_refresh"], f"{path}: taxii.full_refresh")
    fmt = raw.get("format", "stix")
    if not isinstance(fmt, str) or fmt.strip().lower() != "stix":
        raise ConfigError(f"{path}: a TAXII source is read as format 'stix' (not {fmt!r})")
    if "member" in options:
        raise ConfigError(f"{path}: options.member does not apply to a TAXII source (it names a zip member)")
    raw["format"] = "stix"
    raw["source"] = SCHEME + url
    return {"url": url, "api_root": values.get("api_root"), "collection": values.get("collection"),
            "user": values.get("user"), "password": values.get("password"), "page_size": page_size,
            "full_refresh": full_refresh}


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, path: Path | None, where: str, error: type[Exception]) -> None:
    prefix = f"{path}: " if path else ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a bad port
    except ValueError as exc:
        raise error(f"{prefix}{where}: {redact.url(url)} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise error(f"{prefix}{where}: {redact.url(url)} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise error(f"{prefix}{where}: a TAXII URL takes no query or fragment (an API key goes in "
                    "[options] headers or headers_env)")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise error(f"{prefix}{where}: TAXII 2.1 requires HTTPS; plain http:// is accepted only for a loopback "
                    f"host, not {parts.hostname}")


def _split_credentials(url: str, path: Path | None, where: str,
                       error: type[Exception]) -> tuple[str, str | None, str | None]:
    """``url`` without user info (with a trailing slash), and the user and password it had."""
    _check_url(url, path, where, error)
    parts = urlsplit(url)
    user = password = None
    netloc = parts.netloc
    if "@" in netloc:
        info, netloc = netloc.rsplit("@", 1)
        user, _, password = (unquote(x) for x in info.partition(":"))
        if not user or not password:
            raise error(f"{f'{path}: ' if path else ''}{where}: user info in a TAXII URL must be user:password")
    clean = urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
    return (clean if clean.endswith("/") else clean + "/"), user, password


# -- reading ------------------------------------------------------------------------------------

def read_taxii(source: str, options: Mapping[str, Any], cache: dict | None = None) -> Iterator[Any]:
    """Stream the records of the TAXII collection ``source`` names (``taxii2+https://...``;
    ``options["taxii"]`` holds the config's settings, see :func:`settings_from_config`) as
    :class:`~streambatch.feeds.readers.FeedItem`; see the module docstring for ``cache``."""
    settings = dict(options.get("taxii") or {})
    if not settings.get("url"):
        if not is_taxii(source):
            raise StreambatchError(f"{redact.url(str(source))} is not a taxii2+https:// source")
        url, user, password = _split_credentials(source.strip()[len(SCHEME):], None, "source", StreambatchError)
        redact.register(user, password)
        settings.update(url=url, user=user, password=password)
    return _Read(settings, options, cache).items()


class _Read:
    """One read of a collection."""

    def __init__(self, settings: dict[str, Any], options: Mapping[str, Any], cache: dict | None) -> None:
        self.settings = settings
        self.options = options
        self.cache = cache
        self.url = settings["url"]
        self.name = display(self.url)
        self.response: Any = None  # the last HTTP response (for its headers)
        self.pages = 0
        self.objects = 0
        self.duplicates = 0
        self.last_added: str | None = None  # X-TAXII-Date-Added-Last of the last page that had one
        self.more_without_next = False

    # -- the connection ------------------------------------------------------------------

    def _connect(self) -> Any:
        import requests.adapters
        from taxii2client.common import _HTTPConnection

        _route_library_logs()

        from .sources import DEFAULT_TIMEOUT

        conn = _HTTPConnection(self.settings.get("user"), self.settings.get("password"), verify=True, version="2.1")
        headers = self.options.get("headers") or {}
        conn.session.headers.update(headers)
        timeout = self.options.get("timeout", DEFAULT_TIMEOUT)
        timeout = tuple(timeout) if isinstance(timeout, list) else timeout

        class TimeoutAdapter(requests.adapters.HTTPAdapter):
            def send(self, request: Any, **kwargs: Any) -> Any:
                if kwargs.get("timeout") is None:
                    kwargs["timeout"] = timeout
                return super().send(request, **kwargs)

        for prefix in ("https://", "http://"):
            conn.session.mount(prefix, TimeoutAdapter())
        conn.session.hooks["response"].append(self._on_response)
        return conn

    def _on_response(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self.response = response
        return response

    def _incomplete(self, reason: str, page: int | None = None) -> IncompleteReadError:
        """The error for a read that cannot go on at ``page`` (default: the next one)."""
        from .sources import incomplete

        return incomplete(self.name, reason, f"page {page or self.pages + 1}")

    def _call(self, what: str, fn: Callable[[], Any], paging: bool = False) -> Any:
        """``fn()`` with the library's and the network's errors turned into ours (none of
        which quotes a credential or a query value)."""
        import requests
        from taxii2client.exceptions import AccessError, InvalidJSONError, TAXIIServiceException, ValidationError

        try:
            return fn()
        except requests.HTTPError as exc:
            response = exc.response
            status = response.status_code if response is not None else 0
            detail = _taxii_error(response)
            text = f"feed {self.name}: {what}: the server answered HTTP {status}{detail}"
            if status >= 500 or status in _TRANSIENT:
                raise TransientError(text) from None
            if paging:
                raise self._incomplete(f"the server answered HTTP {status}{detail}: it lost its paging session (a "
                                       "restart?); nothing read is taken as the whole collection") from None
            if status in (401, 403):
                raise StreambatchError(f"{text}: check the TAXII credentials") from None
            raise StreambatchError(text) from None
        except requests.RequestException as exc:
            raise TransientError(f"feed {self.name}: {what}: {_clean(exc)}") from None
        except InvalidJSONError:
            if paging:
                raise self._incomplete(f"{what}: the answer is not valid JSON") from None
            raise StreambatchError(f"feed {self.name}: {what}: the answer is not valid JSON") from None
        except AccessError:
            raise StreambatchError(f"feed {self.name}: {what}: the collection does not allow reading "
                                   "(can_read is false for these credentials)") from None
        except (TAXIIServiceException, ValidationError) as exc:
            raise StreambatchError(f"feed {self.name}: {what}: not a TAXII 2.1 answer: "
                                   f"{redact.text(str(exc).splitlines()[0])[:300]}") from None
        except (TypeError, KeyError, AttributeError) as exc:  # a resource without the fields it must have
            raise StreambatchError(f"feed {self.name}: {what}: not a TAXII 2.1 resource ({type(exc).__name__}: "
                                   f"{redact.text(str(exc))[:200]})") from None

    # -- finding the collection ----------------------------------------------------------

    def _collection(self, conn: Any) -> Any:
        from taxii2client.v21 import ApiRoot, Collection

        url = self.settings.get("api_root") or self.url
        parts = [p for p in urlsplit(url).path.split("/") if p]
        if len(parts) >= 2 and parts[-2] == "collections" and not self.settings.get("api_root"):
            collection = Collection(url, conn=conn)
            self._call("reading the collection", collection.refresh)
            return collection
        if not self.settings.get("api_root"):
            resource = self._call("reading the discovery resource", lambda: conn.get(url))
            if not isinstance(resource, dict):
                raise StreambatchError(f"feed {self.name}: not a TAXII 2.1 discovery or API root resource")
            if "versions" not in resource or "api_roots" in resource:  # a discovery resource
                url = self._pick_root(resource)
        root = ApiRoot(url, conn=conn)
        self._call("listing the collections", root.refresh_collections)
        return self._pick_collection(root, display(url))

    def _pick_root(self, discovery: dict) -> str:
        roots = [urljoin(self.url, str(r)) for r in discovery.get("api_roots") or []]
        default = discovery.get("default")
        if default:
            return urljoin(self.url, str(default))
        if len(roots) == 1:
            return roots[0]
        if not roots:
            raise StreambatchError(f"feed {self.name}: the discovery resource lists no API root")
        raise StreambatchError(f"feed {self.name}: the server has {len(roots)} API roots and no default: set "
                               f"taxii.api_root to one of {', '.join(display(r) for r in roots[:10])}")

    def _pick_collection(self, root: Any, where: str) -> Any:
        collections = root.collections
        wanted = self.settings.get("collection")
        listed = ", ".join(f"{c.id} ({c.title!r})" for c in collections[:20]) or "none"
        if wanted is None:
            readable = [c for c in collections if c.can_read]
            if len(readable) == 1:
                return readable[0]
            raise StreambatchError(f"feed {self.name}: API root {where} has {len(readable)} readable collections: "
                                   f"set taxii.collection to the id or title of one ({listed})")
        found = [c for c in collections if c.id == wanted] or [c for c in collections if c.title == wanted] or \
            [c for c in collections if str(c.title).strip().lower() == wanted.lower()]
        if not found:
            raise StreambatchError(f"feed {self.name}: API root {where} has no collection {wanted!r} "
                                   f"(it has: {listed})")
        if len(found) > 1:
            raise StreambatchError(f"feed {self.name}: {len(found)} collections of API root {where} are titled "
                                   f"{wanted!r}: set taxii.collection to the id of one ({listed})")
        return found[0]

    # -- the objects ---------------------------------------------------------------------

    def items(self) -> Iterator[Any]:
        from .stix import read_stix

        started = time.time()
        conn = self._connect()
        try:
            collection = self._collection(conn)
            key = hashlib.sha256(collection.url.encode()).hexdigest()
            self.name = display(collection.url)
            committed = (self.cache or {}).get("cursor")
            cursor = committed if isinstance(committed, dict) and committed.get("collection") == key else None
            every = self.settings.get("full_refresh")
            full = cursor is None or not cursor.get("added_after") or \
                (every is not None and float(cursor.get("full") or 0) + every <= started)
            added_after = None if full else str(cursor["added_after"])  # type: ignore[index]
            log.info("feed %s: %s", self.name, "reading the whole collection" if full
                     else f"reading the objects added after {added_after}")
            if self.cache is not None:
                self.cache["not_modified"] = False
            stream = io.BufferedReader(_Bundle(self._objects(collection, added_after)), 1 << 16)
            yield from read_stix(stream, self.options)
        finally:
            conn.close()
        log.info("feed %s: read %d object(s) in %d page(s)%s", self.name, self.objects, self.pages,
                 f", {self.duplicates} returned more than once" if self.duplicates else "")
        if self.cache is not None:
            previous = cursor or {}
            self.cache["cursor_pending"] = {"collection": key, "added_after": self.last_added or previous.get("added_after"),
                                            "full": started if full else previous.get("full")}
            self.cache["partial"] = not full

    def _objects(self, collection: Any, added_after: str | None) -> Iterator[Any]:
        from taxii2client.v21 import as_pages

        seen: set[int] = set()
        filters = {"added_after": added_after} if added_after else {}
        fetch = self._fetcher(collection, added_after)
        for envelope in as_pages(fetch, int(self.settings.get("page_size") or 0), **filters):
            for obj in envelope.get("objects") or ():
                if isinstance(obj, dict):
                    ident = xxhash.xxh3_64_intdigest(f"{obj.get('id')}\x00{obj.get('modified', obj.get('created'))}".encode())
                    if ident in seen:
                        self.duplicates += 1
                        continue
                    seen.add(ident)
                self.objects += 1
                yield obj

    def _fetcher(self, collection: Any, added_after: str | None) -> Callable[..., dict]:
        """The page function :func:`as_pages` calls: one Get Objects request, checked, with the
        page's headers noted."""
        def fetch(limit: int = 0, next: str | None = None, **filters: Any) -> dict:  # noqa: A002 -- as_pages' name
            params = dict(filters)
            if next:
                params["next"] = next
            elif self.pages and self.more_without_next:  # TAXII 2.1 3.4: page on by date added
                params["added_after"] = self.last_added
            first = self.pages == 0
            envelope = self._call(f"reading page {self.pages + 1} of the objects",
                                  lambda: collection.get_objects(limit=limit, **params), paging=not first)
            if not isinstance(envelope, dict) or not isinstance(envelope.get("objects", []), list):
                raise self._incomplete("the answer is not a TAXII envelope; nothing read is taken as the whole "
                                       "collection")
            headers = self.response.headers if self.response is not None else {}
            before = self.last_added
            last = headers.get("X-TAXII-Date-Added-Last")
            if last:
                self.last_added = last.strip()
            if first and added_after:
                _warn_ignored(self.name, headers.get("X-TAXII-Date-Added-First"), added_after)
            got = len(envelope.get("objects") or ())
            if first and limit and envelope.get("more") and got != limit:  # as_pages asks for `got` from now on
                log.info("feed %s: the server gives %d objects a page (page_size is %d): asking for %d", self.name,
                         got, limit, got)
            self.pages += 1
            more = envelope.get("more") is True
            self.more_without_next = more and not envelope.get("next")
            if more and not envelope.get("objects"):
                raise self._incomplete("the page is empty but says more objects follow; nothing read is taken "
                                       "as the whole collection", self.pages)
            if self.more_without_next and (not self.last_added or self.last_added == before):
                raise self._incomplete("the page says more objects follow but gives neither next nor a new "
                                       "X-TAXII-Date-Added-Last to ask for them", self.pages)
            if not more:
                envelope = {**envelope, "more": False}
            return envelope

        return fetch


_PAGE_SIZE_WARNING = "TAXII Server Response with different amount of objects"


def _route_library_logs() -> None:
    """taxii2-client logs to a stderr handler of its own, past the application's logging: send
    its records through the root logger instead (so they are formatted, filtered and redacted
    like ours), without its page-size warning (:func:`as_pages` adopting the server's page size
    is expected; the reader says so itself when a page_size was set)."""
    lib = logging.getLogger("taxii2client")
    if getattr(lib, "_streambatch", False):
        return
    for handler in list(lib.handlers):
        lib.removeHandler(handler)
    lib.propagate = True  # to the handlers of the command line, which redact
    logging.getLogger("taxii2client.v21").addFilter(lambda record: not str(record.msg).startswith(_PAGE_SIZE_WARNING))
    lib._streambatch = True  # type: ignore[attr-defined]


def _warn_ignored(name: str, first: str | None, added_after: str) -> None:
    """Log once per read when the first page starts at or before ``added_after``: the server
    ignores the filter (what was sent before is recognised as unchanged)."""
    try:
        ignored = first is not None and _instant(first) <= _instant(added_after)
    except ValueError:
        return
    if ignored:
        log.warning("feed %s: the TAXII server ignored added_after=%s (its first object was added at %s): the whole "
                    "collection is read; objects already sent count as unchanged", name, added_after, first)


def _instant(text: str) -> datetime:
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    head, dot, rest = value.partition(".")
    if dot:  # fromisoformat takes 3 or 6 fraction digits: pad or cut to 6
        digits = "".join(c for c in rest if c.isdigit())
        value = f"{head}.{(digits + '000000')[:6]}{rest[len(digits):]}"
    return datetime.fromisoformat(value)


def _taxii_error(response: Any) -> str:
    """`` (title: description)`` of a TAXII error message, redacted and short; else the reason."""
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("title") or body.get("description")):
        text = ": ".join(str(body[k]) for k in ("title", "description") if body.get(k))
    else:
        text = response.reason or ""
    text = redact.text(text)[:300]
    return f" ({text})" if text else ""


def _clean(exc: Exception) -> str:
    """A network error's text without the URL requests puts in it (the operating system's
    reason when it has one, such as ``[Errno 111] Connection refused``), redacted."""
    import re

    text = str(exc)
    reason = re.findall(r"\[Errno -?\d+\][^'\")]*", text)
    if reason:
        text = reason[-1].strip()
    else:
        text = text.split(" (Caused by")[0].split("url:")[0].split("with url")[0].strip()
    return type(exc).__name__ + (": " + redact.text(text)[:200] if text else "")


class _Bundle(io.RawIOBase):
    """The objects of the read as the bytes of one STIX bundle, for :func:`stix.read_stix`
    (pages are fetched as the parser asks for more)."""

    def __init__(self, objects: Iterator[Any]) -> None:
        self._parts = self._chunks(objects)
        self._buffer = b""

    @staticmethod
    def _chunks(objects: Iterator[Any]) -> Iterator[bytes]:
        yield b'{"type":"bundle","objects":['
        comma = b""
        for obj in objects:
            try:
                data = orjson.dumps(obj)
            except TypeError:  # an integer beyond 64 bits, or a lone surrogate: the standard library
                data = json.dumps(obj).encode()  # writes them (a surrogate as its \u escape, which the reader refuses)
            yield comma + data
            comma = b","
        yield b"]}"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._parts)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n
