"""A real TAXII 2.1 server for the tests: the OASIS reference server ``medallion`` (its Flask
views, its basic authentication and its memory backend), served by werkzeug on 127.0.0.1 in a
thread, with knobs for what the tests need: stop the server after N pages of objects, lose its
paging sessions (a restart that kept the data), ignore ``added_after``, overlapping pages.

medallion 3.0.0's memory backend filters in quadratic time (every object against every
manifest entry, every object against every other for its spec version, a ``strptime`` in each
step), and deep-copies every object of a collection twice per request to answer two questions
about the collection, which makes a first page of a few thousand objects take many seconds. On
import this module replaces those three filter steps with linear ones that give the same
results, and the collection lookup with one that copies only what it returns (both checked
against the originals by ``test_taxii.py::test_medallion_shortcuts_match_the_originals``), and
caches the timestamp parsing; everything else (views, paging, headers, auth) is medallion's.

Each server gets its own Flask app with medallion's blueprints and error handlers (medallion's
module-level app could serve only one configuration per process).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import medallion
from flask import Flask
from medallion import common as medallion_common
from medallion.backends.memory_backend import MemoryBackend
from medallion.exceptions import BackendError, ProcessingError
from medallion.filters import basic_filter
from medallion.filters.basic_filter import BasicFilter
from medallion.views import collections as collections_views
from medallion.views import discovery, manifest, objects
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

MEDIA_STIX = "application/stix+json;version=2.1"
MEDIA_TAXII = "application/taxii+json;version=2.1"
API_ROOT = "api1"
USER, PASSWORD = "taxiiuser", "taxii-pass-S3CRET"
BASE = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
NAMESPACE = uuid.UUID("6b0f3c3e-1f1e-4a8e-9d59-7a1c1f0b5a11")

logging.getLogger("werkzeug").setLevel(logging.ERROR)


# -- medallion's filters, linear ------------------------------------------------------------------

ORIGINAL = {
    "string_to_datetime": medallion_common.string_to_datetime,
    "filter_by_spec_version": BasicFilter.filter_by_spec_version,
    "filter_by_added_after": BasicFilter.filter_by_added_after,
    "sort_and_paginate": BasicFilter.sort_and_paginate,
}
find_att = medallion_common.find_att


def _spec_of(obj: dict) -> str:
    if "media_type" in obj:
        return obj["media_type"].split("version=")[1]
    return medallion_common.determine_spec_version(obj)


def linear_filter_by_spec_version(data: list, spec_: Any) -> list:
    """As medallion's: with no ``match[spec_version]``, each object unless another of the same
    id has a higher spec version."""
    if spec_:
        return ORIGINAL["filter_by_spec_version"](data, spec_)
    newest: dict[str, str] = {}
    for obj in data:
        version = _spec_of(obj)
        if obj["id"] not in newest or version > newest[obj["id"]]:
            newest[obj["id"]] = version
    return [obj for obj in data if _spec_of(obj) == newest[obj["id"]]]


def linear_filter_by_added_after(data: list, manifest_info: Any, added_after_date: str) -> list:
    """As medallion's: objects (or manifest entries) added after ``added_after_date``."""
    if manifest_info is None:
        return ORIGINAL["filter_by_added_after"](data, manifest_info, added_after_date)
    after = medallion_common.string_to_datetime(added_after_date)
    added: dict[tuple, Any] = {}
    for item in manifest_info:
        key = (item["id"], find_att(item))
        when = medallion_common.string_to_datetime(item["date_added"])
        if key not in added or when > added[key]:
            added[key] = when
    out = []
    for obj in data:
        when = added.get((obj["id"], find_att(obj)))
        if when is not None and when > after:
            out.append(obj)
    return out


def linear_sort_and_paginate(self: BasicFilter, data: list, limit: Any, manifest: Any) -> tuple:
    """As medallion's: the objects in manifest (date added) order, the first ``limit`` of them,
    the rest to save for ``next``, and the X-TAXII-Date-Added-First/Last headers."""
    if not manifest or len(data) == 0:
        return ORIGINAL["sort_and_paginate"](self, data, limit, manifest)
    temp = None
    next_save: Any = {}
    headers: dict[str, str] = {}
    new: list = []
    manifest.sort(key=lambda x: x["date_added"])
    first: dict[tuple, dict] = {}
    for check in data:
        first.setdefault((check["id"], find_att(check)), check)
    for man in manifest:
        check = first.get((man["id"], find_att(man)))
        if check is None:
            continue
        if len(headers) == 0:
            headers["X-TAXII-Date-Added-First"] = man["date_added"]
        new.append(check)
        temp = man
        if len(new) == limit:
            headers["X-TAXII-Date-Added-Last"] = man["date_added"]
    if limit and limit < len(data):
        next_save = new[limit:]
        new = new[:limit]
    else:
        headers["X-TAXII-Date-Added-Last"] = temp["date_added"]  # type: ignore[index]
    return new, next_save, headers


_HIDDEN = ("manifest", "responses", "objects")
ORIGINAL["get_collection"] = MemoryBackend.get_collection


def lean_get_collection(self: MemoryBackend, api_root: str, collection_id: str) -> dict | None:
    """As medallion's (a copy of the collection's information without its objects, manifest and
    responses), without deep-copying the objects first (twice per request)."""
    if api_root not in self.data:
        return None
    for item in self._get(api_root).get("collections", []):
        if collection_id == item["id"]:
            return copy.deepcopy({k: v for k, v in item.items() if k not in _HIDDEN})
    return None


def _install() -> None:
    if getattr(BasicFilter, "_linear", False):
        return
    MemoryBackend.get_collection = lean_get_collection
    cached = functools.lru_cache(maxsize=None)(ORIGINAL["string_to_datetime"])
    medallion_common.string_to_datetime = cached  # find_att looks it up here
    basic_filter.string_to_datetime = cached
    BasicFilter.filter_by_spec_version = staticmethod(linear_filter_by_spec_version)
    BasicFilter.filter_by_added_after = staticmethod(linear_filter_by_added_after)
    BasicFilter.sort_and_paginate = linear_sort_and_paginate
    BasicFilter._linear = True


_install()


# -- data -----------------------------------------------------------------------------------------

def stamp(when: dt.datetime, digits: int = 6) -> str:
    text = when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[: len(text) - 6 + digits] + "Z"


def value_of(i: int, tag: str = "") -> tuple[str, str]:
    """(pattern, (type, value)) of indicator number ``i``: even numbers an IPv4 address, odd ones a
    host name."""
    if i % 2 == 0:
        return "Address", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
    return "Host", f"h{i}{tag}.example.com"


def indicator(i: int, *, tag: str = "", version: int = 0, collection: str = "c") -> dict[str, Any]:
    type_name, value = value_of(i, tag)
    prop = "ipv4-addr:value" if type_name == "Address" else "domain-name:value"
    created = BASE + dt.timedelta(seconds=i)
    modified = created + dt.timedelta(days=version)
    return {
        "type": "indicator", "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(NAMESPACE, f'{collection}-{tag}-{i}')}",
        "created": stamp(created, 3), "modified": stamp(modified, 3),
        "name": f"indicator {i}{tag} v{version}", "indicator_types": ["malicious-activity"],
        "pattern": f"[{prop} = '{value}']", "pattern_type": "stix", "valid_from": stamp(created, 3),
    }


def added_at(i: int) -> str:
    """The date added of preloaded object ``i``: distinct microseconds, none of them zero."""
    return stamp(BASE + dt.timedelta(days=30, milliseconds=i, microseconds=123))


def collection(cid: str, title: str, objs: Iterable[dict], added: Iterable[str] | None = None) -> dict[str, Any]:
    objs = list(objs)
    dates = list(added) if added is not None else [added_at(i) for i in range(len(objs))]
    return {"id": cid, "title": title, "description": f"{title} for the tests", "can_read": True,
            "can_write": True, "media_types": [MEDIA_STIX], "objects": objs,
            "manifest": [{"id": o["id"], "date_added": d, "version": o.get("modified", o.get("created")),
                          "media_type": MEDIA_STIX} for o, d in zip(objs, dates)]}


# -- the server -----------------------------------------------------------------------------------

def _flask_app(data: dict, users: dict[str, str], max_page_size: int) -> Flask:
    app = Flask("medallion-test")
    app.users_backend = users
    app.taxii_config = {"max_page_size": max_page_size}
    backend = MemoryBackend(filename=None, check_interval=3600)  # its session sweeper is not needed here
    backend.data = data  # the same data after a "restart": only the paging sessions are lost
    app.medallion_backend = backend
    for blueprint in (collections_views.collections_bp, discovery.discovery_bp, manifest.manifest_bp,
                      objects.objects_bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(500, medallion.handle_error)
    app.register_error_handler(ProcessingError, medallion.handle_processing_error)
    app.register_error_handler(BackendError, medallion.handle_backend_error)
    return app


class TaxiiServer:
    """medallion on ``http://127.0.0.1:PORT`` (discovery at ``/taxii2/``, API root ``/api1/``).

    Knobs (attributes): ``stop_after_pages`` N: once the N-th page of objects was served the
    server stops (further requests have their connection dropped, then nothing listens) until
    :meth:`restart`; ``lose_sessions_after_pages`` N: after the N-th page the server restarts
    in place with the same data, so the ``next`` of the page it just served is unknown;
    ``ignore_added_after``: the parameter is dropped before medallion sees it; ``overlap``: each
    page repeats the last object of the page before it; ``strip_next``: envelopes say ``more``
    without a ``next``. ``object_requests`` lists the query
    parameters of every Get Objects request."""

    def __init__(self, collections: list[dict], *, users: dict[str, str] | None = None, max_page_size: int = 100) -> None:
        self.users = users if users is not None else {USER: PASSWORD}
        self.max_page_size = max_page_size
        self.data: dict[str, Any] = {
            "/discovery": {"title": "streambatch test TAXII server", "description": "medallion",
                           "api_roots": [], "default": None},
            API_ROOT: {"information": {"title": "API root 1", "description": "", "versions": [MEDIA_TAXII],
                                       "max_content_length": 100_000_000},
                       "status": [], "collections": collections},
        }
        self.port = 0
        self.pages = 0
        self.object_requests: list[dict[str, str]] = []
        self.stop_after_pages: int | None = None
        self.lose_sessions_after_pages: int | None = None
        self.ignore_added_after = False
        self.overlap = False
        self.strip_next = False
        self._last_object: dict | None = None
        self._down = False
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stopper: threading.Thread | None = None
        self.app: Flask | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.base}/taxii2/"

    @property
    def api_root_url(self) -> str:
        return f"{self.base}/{API_ROOT}/"

    def collection_url(self, cid: str) -> str:
        return f"{self.api_root_url}collections/{cid}/"

    # -- running ---------------------------------------------------------------------------

    def start(self) -> "TaxiiServer":
        self.app = _flask_app(self.data, self.users, self.max_page_size)
        self._server = make_server("127.0.0.1", self.port, self, threaded=True)
        self.port = self._server.server_port
        self.data["/discovery"]["api_roots"] = [self.api_root_url]
        self.data["/discovery"]["default"] = self.api_root_url
        self._down = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def stop(self) -> None:
        self._down = True
        if self._stopper is not None:
            self._stopper.join(5)
            self._stopper = None
        self._stop_server()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop()
        self.stop_after_pages = self.lose_sessions_after_pages = None
        self.start()

    def lose_sessions(self) -> None:
        """A restart that kept the data: medallion's paging sessions are gone."""
        self.app.medallion_backend = _flask_app(self.data, self.users, self.max_page_size).medallion_backend

    def __enter__(self) -> "TaxiiServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if self._down:  # the process is going away: the connection drops without an answer
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            raise ConnectionAbortedError("the test server is stopping")
        page = environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"].endswith("/objects/")
        if page:
            args = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
            self.object_requests.append(args)
            if self.ignore_added_after and "added_after" in args:
                environ["QUERY_STRING"] = urlencode({k: v for k, v in args.items() if k != "added_after"})
        response = Response.from_app(self.app, environ, buffered=True)
        if page and response.status_code == 200:
            self.pages += 1
            if self.overlap:
                self._overlap(response, "next" in dict(parse_qsl(environ.get("QUERY_STRING", ""))))
            if self.strip_next:
                body = json.loads(response.get_data())
                body.pop("next", None)
                response.set_data(json.dumps(body))
            if self.stop_after_pages == self.pages:
                self._down = True
                self._stopper = threading.Thread(target=self._stop_server, daemon=True)
                self._stopper.start()
            if self.lose_sessions_after_pages == self.pages:
                self.lose_sessions()
        return response(environ, start_response)

    def _overlap(self, response: Response, follows: bool) -> None:
        body = json.loads(response.get_data())
        page = body.get("objects") or []
        if follows and self._last_object is not None:
            body["objects"] = [self._last_object, *page]
        if page:
            self._last_object = page[-1]
        response.set_data(json.dumps(body))

    # -- data ------------------------------------------------------------------------------

    def _collection(self, cid: str) -> dict:
        return next(c for c in self.data[API_ROOT]["collections"] if c["id"] == cid)

    def client_collection(self, cid: str) -> Any:
        from taxii2client.v21 import Collection

        user, password = next(iter(self.users.items()))
        return Collection(self.collection_url(cid), user=user, password=password)

    def add(self, cid: str, objs: list[dict]) -> Any:
        """Add objects through the TAXII API (medallion dates them with the time they arrive)."""
        col = self.client_collection(cid)
        try:
            return col.add_objects({"objects": objs})
        finally:
            col.close()

    def delete(self, cid: str, obj_id: str) -> None:
        col = self.client_collection(cid)
        try:
            col.delete_object(obj_id)
        finally:
            col.close()

    def inject(self, cid: str, objs: list[dict], added: list[str]) -> None:
        """Put objects in the backend's store with the given dates added (to the microsecond)."""
        col = self._collection(cid)
        for obj, when in zip(objs, added, strict=True):
            col["objects"].append(copy.deepcopy(obj))
            col["manifest"].append({"id": obj["id"], "date_added": when, "version": obj["modified"],
                                    "media_type": MEDIA_STIX})

    def manifest(self, cid: str) -> list[dict]:
        return sorted(self._collection(cid)["manifest"], key=lambda m: m["date_added"])
