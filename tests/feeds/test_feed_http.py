"""URL sources against a local HTTP server: conditional GET, gzip encoding, errors."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
import io
from collections.abc import Iterator

import pytest
from local_server import serve
from werkzeug.wrappers import Request, Response

from streambatch.errors import StreambatchError, TransientError
from streambatch.feeds import read_feed

BODY = b"1.2.3.4\nevil.example.com\n"
ETAG = '"v1"'
MODIFIED = "Wed, 01 May 2024 00:00:00 GMT"


class Feed:
    def __init__(self) -> None:
        self.requests: list[dict] = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.requests.append({"path": request.path, "inm": request.headers.get("If-None-Match"),
                              "ims": request.headers.get("If-Modified-Since")})
        if request.path == "/feed.txt":
            if request.headers.get("If-None-Match") == ETAG:
                response = Response(status=304)
            else:
                response = Response(BODY, headers={"ETag": ETAG, "Last-Modified": MODIFIED})
        elif request.path == "/encoded.txt":
            response = Response(gzip.compress(b"5.6.7.8\n"), headers={"Content-Encoding": "gzip"})
        elif request.path == "/feed.zip":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr("x.txt", "9.9.9.9\n")
            response = Response(buf.getvalue(), content_type="application/zip")
        elif request.path == "/boom":
            response = Response("internal error", status=500)
        else:
            response = Response("no", status=404)
        return response(environ, start_response)


@pytest.fixture
def server() -> Iterator[tuple[str, Feed]]:
    app = Feed()
    with serve(app) as base:
        yield base, app


def test_conditional_get(server) -> None:
    base, app = server
    cache: dict = {}
    items = list(read_feed(f"{base}/feed.txt", "text", cache=cache))
    assert [i.record["summary"] for i in items] == ["1.2.3.4", "evil.example.com"]
    url_hash = hashlib.sha256(f"{base}/feed.txt".encode()).hexdigest()  # the URL itself may carry a key
    assert cache == {"not_modified": False, "url_sha256": url_hash, "etag": ETAG, "last_modified": MODIFIED}
    assert app.requests[-1]["inm"] is None

    again = list(read_feed(f"{base}/feed.txt", "text", cache=cache))
    assert again == [] and cache["not_modified"] is True
    assert app.requests[-1]["inm"] == ETAG and app.requests[-1]["ims"] == MODIFIED


def test_validators_only_kept_after_a_complete_read(server) -> None:
    base, app = server
    cache: dict = {}
    gen = read_feed(f"{base}/feed.txt", "text", cache=cache)
    next(gen)
    gen.close()  # abandoned half way: the next run must fetch the whole feed again
    assert cache == {"not_modified": False}
    other: dict = {"url_sha256": hashlib.sha256(f"{base}/other.txt".encode()).hexdigest(), "etag": ETAG}
    assert len(list(read_feed(f"{base}/feed.txt", "text", cache=other))) == 2  # validators of another URL not sent
    assert app.requests[-1]["inm"] is None


def test_gzip_content_encoding_and_zip_download(server) -> None:
    base, _ = server
    assert [i.record["summary"] for i in read_feed(f"{base}/encoded.txt", "text")] == ["5.6.7.8"]
    assert [i.record["summary"] for i in read_feed(f"{base}/feed.zip", "text")] == ["9.9.9.9"]


def test_http_errors(server) -> None:
    base, _ = server
    with pytest.raises(TransientError, match="HTTP 500"):
        list(read_feed(f"{base}/boom", "text"))
    with pytest.raises(StreambatchError, match="HTTP 404") as info:
        list(read_feed(f"{base}/missing", "text"))
    assert not isinstance(info.value, TransientError)


def test_connection_refused_is_transient() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match="request failed"):
        list(read_feed(f"http://127.0.0.1:{port}/x", "text", options={"timeout": 2}))
