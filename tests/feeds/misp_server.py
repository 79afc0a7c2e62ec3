"""A MISP feed for the tests: events generated in MISP's feed format (``manifest.json``, one
``<uuid>.json`` per event and ``hashes.csv``, as PyMISP's feed generator writes them), written to a
folder or served over HTTP on loopback with ETags, a request log and faults (a missing event, a
truncated one, a required header)."""

from __future__ import annotations

import hashlib
import threading
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from local_server import serve

ORG = {"name": "CIRCL", "uuid": "55f6ea5e-2c60-40e5-964f-47a8950d210f"}
BASE_TIME = 1_700_000_000


def event_uuid(i: int) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"misp-event-{i}"))


def host_of(i: int, j: int) -> str:
    return f"e{i}-a{j}.evil.example"


def attribute(i: int, j: int, **extra: Any) -> dict[str, Any]:
    """Attribute j of event i: a domain, to_ids, with a comment."""
    return {"uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"misp-attr-{i}-{j}")), "type": "domain",
            "category": "Network activity", "value": host_of(i, j), "to_ids": True, "comment": f"seen in {i}",
            "timestamp": str(BASE_TIME + i), "deleted": False, "disable_correlation": False,
            "object_relation": None, **extra}


def event(i: int, attributes: int = 10, *, stamp: int | None = None, tags: list[str] | None = None,
          extra: list[dict] | None = None, objects: list[dict] | None = None, published: bool = True,
          date: str = "2026-11-01") -> dict[str, Any]:
    attrs = [attribute(i, j) for j in range(attributes)] + list(extra or [])
    return {"Event": {
        "uuid": event_uuid(i), "info": f"OSINT - campaign {i}", "date": date, "analysis": "2",
        "threat_level_id": "3", "timestamp": str(stamp if stamp is not None else BASE_TIME + i),
        "publish_timestamp": str(BASE_TIME + i), "published": published, "extends_uuid": "",
        "Orgc": ORG, "Tag": [{"name": t, "colour": "#004646"} for t in (tags if tags is not None else ["type:OSINT", "tlp:white"])],
        "Attribute": attrs, "Object": list(objects or [])}}


class MispFeed:
    """Events by uuid; the feed's files are derived from them."""

    def __init__(self, events: list[dict] | None = None) -> None:
        self.events: dict[str, dict] = {}
        for e in events or []:
            self.put(e)

    def put(self, e: dict) -> None:
        self.events[e["Event"]["uuid"]] = e

    def drop(self, i: int) -> None:
        del self.events[event_uuid(i)]

    def touch(self, i: int, **changes: Any) -> None:
        """Change event i (its timestamp moves on): ``changes`` go into the Event object."""
        e = self.events[event_uuid(i)]["Event"]
        e.update(changes)
        e["timestamp"] = str(int(e["timestamp"]) + 1000)

    def manifest(self) -> dict[str, Any]:
        return {u: {"Orgc": e["Event"]["Orgc"], "Tag": e["Event"]["Tag"], "info": e["Event"]["info"],
                    "date": e["Event"]["date"], "analysis": e["Event"]["analysis"],
                    "threat_level_id": e["Event"]["threat_level_id"], "timestamp": e["Event"]["timestamp"]}
                for u, e in self.events.items()}

    def files(self) -> dict[str, bytes]:
        out = {"manifest.json": orjson.dumps(self.manifest())}
        hashes = []
        for u, e in self.events.items():
            out[f"{u}.json"] = orjson.dumps(e)
            for a in e["Event"]["Attribute"]:
                for part in str(a["value"]).split("|"):
                    hashes.append(f"{hashlib.md5(part.encode()).hexdigest()},{u}")
        out["hashes.csv"] = ("\n".join(hashes) + "\n").encode()
        return out

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.json"):
            old.unlink()
        for name, data in self.files().items():
            (folder / name).write_bytes(data)
        return folder


class FeedServer:
    """Serves a :class:`MispFeed` under ``/feeds/osint/``. ``missing``: file names answered
    404; ``truncated``: file names whose body is cut in half; ``require``: a header (name,
    value) every request must carry, else 401."""

    def __init__(self, feed: MispFeed) -> None:
        self.feed = feed
        self.missing: set[str] = set()
        self.truncated: set[str] = set()
        self.require: tuple[str, str] | None = None
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url = ""

    def fetched(self, since: int = 0) -> list[str]:
        """File names answered 200 since request number ``since``."""
        return [r["name"] for r in self.requests[since:] if r["status"] == 200]

    def __call__(self, environ: dict, start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        name = path.rpartition("/")[2]
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        status, body, extra = self._answer(path, name, headers)
        with self.lock:
            self.requests.append({"name": name, "status": int(status.split()[0]), "headers": headers})
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra])
        return [body]

    def _answer(self, path: str, name: str, headers: dict[str, str]) -> tuple[str, bytes, list]:
        if self.require is not None and headers.get(self.require[0].lower()) != self.require[1]:
            return "401 Unauthorized", b'{"message": "authentication required"}', []
        files = self.feed.files()
        if not path.startswith("/feeds/osint/") or name not in files or name in self.missing:
            return "404 Not Found", b'{"message": "not found"}', []
        body = files[name]
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        if headers.get("if-none-match") == etag:
            return "304 Not Modified", b"", [("ETag", etag)]
        if name in self.truncated:
            body = body[: len(body) // 2]
        return "200 OK", body, [("ETag", etag)]


@contextmanager
def feed_server(feed: MispFeed) -> Iterator[FeedServer]:
    srv = FeedServer(feed)
    with serve(srv) as base:
        srv.url = f"{base}/feeds/osint/"
        yield srv
