"""The ThreatConnect Batch API v2 client: authentication, retries, and one method per endpoint.

Authentication is a ``requests`` auth object that signs each request as it is sent, so every
retry carries a fresh ``Timestamp`` (the API refuses signatures older than five minutes).
Retries are declared by :class:`RetryPolicy` and bounded in count and in total time.

Which requests are retried after they may have reached the server:

- reads (GET), document uploads (a repeat replaces the same content) and data uploads to an
  existing job id: always, on connection errors, 429 and 500/502/503/504;
- job-creating POSTs (``/v2/batch``, ``createAndUpload``): on errors that prove the request was
  not processed (connection refused, 429, 503 with Retry-After); on other failures only when
  the caller says a repeat is harmless (``idempotent=True``). The pipeline says so for Create
  jobs whose attributeWriteType is not Append: batch input is keyed by xid and value, so
  sending the same chunk twice converges on the same data. With Append a repeat would add the
  attributes twice, so the error is raised and the chunk stays pending instead.

Secrets never appear in ``repr()``, logs or error messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import orjson
import requests
from requests.auth import AuthBase

from . import wire
from .errors import StreambatchError, TransientError

log = logging.getLogger("streambatch.client")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
V3_PAGE = 1000  # items per page asked of v3 list endpoints (resultLimit)


class ApiError(StreambatchError):
    """The API refused a request for a reason that a retry will not fix."""

    def __init__(self, message: str, status: int | None = None, body: str | None = None) -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class TransientApiError(TransientError, ApiError):
    """The API could not be reached or was overloaded, after every retry allowed."""


class ConfigError(StreambatchError):
    """No usable API configuration (base URL and credentials)."""


def sign(secret_key: str, path_and_query: str, method: str, timestamp: str) -> str:
    """The HMAC signature of the spec: base64(HMAC-SHA256(secret, 'path?query:METHOD:ts'))."""
    message = f"{path_and_query}:{method.upper()}:{timestamp}".encode()
    return base64.b64encode(hmac.new(secret_key.encode(), message, hashlib.sha256).digest()).decode()


class HmacAuth(AuthBase):
    """``Authorization: TC <access id>:<signature>`` with a ``Timestamp`` header."""

    def __init__(self, access_id: str, secret_key: str) -> None:
        self.access_id = access_id
        self._secret_key = secret_key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        timestamp = str(int(time.time()))
        signature = sign(self._secret_key, r.path_url, r.method or "GET", timestamp)
        r.headers["Timestamp"] = timestamp
        r.headers["Authorization"] = f"TC {self.access_id}:{signature}"
        return r

    def __repr__(self) -> str:
        return f"HmacAuth(access_id={self.access_id!r}, secret_key=<hidden>)"


class TokenAuth(AuthBase):
    """``Authorization: TC-Token <token>``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Timestamp"] = str(int(time.time()))
        r.headers["Authorization"] = f"TC-Token {self._token}"
        return r

    def __repr__(self) -> str:
        return "TokenAuth(token=<hidden>)"


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried: up to ``attempts`` tries, waiting ``backoff * 2**n``
    seconds (with jitter, at most ``max_backoff``) or what ``Retry-After`` asks, and never
    past ``total`` seconds since the first try."""

    attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 30.0
    total: float = 300.0
    statuses: frozenset[int] = RETRY_STATUSES

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        base = min(self.backoff * (2 ** attempt), self.max_backoff)
        return base / 2 + random.uniform(0, base / 2)


@dataclass(frozen=True)
class ApiConfig:
    """Where the API is and how to authenticate. Arguments win over the environment
    (``TC_API_PATH``, ``TC_API_ACCESS_ID``, ``TC_API_SECRET_KEY``, ``TC_TOKEN``, ``TC_VERIFY``)."""

    api_path: str
    access_id: str | None = None
    secret_key: str | None = None
    token: str | None = None
    verify: bool | str = True

    @classmethod
    def from_env(cls, api_path: str | None = None, access_id: str | None = None, secret_key: str | None = None,
                 token: str | None = None, verify: bool | str | None = None,
                 environ: Mapping[str, str] | None = None) -> "ApiConfig | None":
        """The configuration from arguments and the environment; None if there is none."""
        env = os.environ if environ is None else environ
        api_path = api_path or env.get("TC_API_PATH")
        access_id = access_id or env.get("TC_API_ACCESS_ID")
        secret_key = secret_key or env.get("TC_API_SECRET_KEY")
        token = token or env.get("TC_TOKEN")
        if verify is None:
            raw = env.get("TC_VERIFY", "true").strip().lower()
            verify = raw not in ("0", "false", "no", "off")
        if not api_path and not (access_id or token):
            return None
        if not api_path:
            raise ConfigError("credentials are set but TC_API_PATH (the API base URL, e.g. https://host/api) is not")
        if not ((access_id and secret_key) or token):
            raise ConfigError("TC_API_PATH is set but no credentials: set TC_API_ACCESS_ID and TC_API_SECRET_KEY, "
                              "or TC_TOKEN")
        return cls(api_path.rstrip("/"), access_id, secret_key, token, verify)

    def auth(self) -> AuthBase:
        if self.access_id and self.secret_key:
            return HmacAuth(self.access_id, self.secret_key)
        assert self.token
        return TokenAuth(self.token)

    def __repr__(self) -> str:
        how = "hmac" if self.access_id and self.secret_key else "token"
        return f"ApiConfig(api_path={self.api_path!r}, auth={how}, verify={self.verify!r})"


def _failure_text(resp: requests.Response) -> str:
    """The API's own message, from a Failure envelope or a plain-text body."""
    text = resp.text[:500]
    try:
        body = resp.json()
    except ValueError:
        return text.strip() or resp.reason
    if isinstance(body, dict):
        return str(body.get("message") or body.get("description") or body.get("status") or text)
    return text


class Client:
    """A ThreatConnect Batch API v2 client."""

    def __init__(self, config: ApiConfig, retry: RetryPolicy | None = None,
                 timeout: tuple[float, float] = (10.0, 120.0), session: requests.Session | None = None,
                 user_agent: str = "streambatch") -> None:
        self.config = config
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.auth = config.auth()
        self.session.verify = config.verify
        self.session.headers["User-Agent"] = user_agent

    @classmethod
    def from_env(cls, **kwargs: Any) -> "Client":
        config = ApiConfig.from_env(**{k: kwargs.pop(k) for k in list(kwargs)
                                       if k in ("api_path", "access_id", "secret_key", "token", "verify", "environ")})
        if config is None:
            raise ConfigError("no ThreatConnect API configured: set TC_API_PATH and TC_API_ACCESS_ID + "
                              "TC_API_SECRET_KEY (or TC_TOKEN)")
        return cls(config, **kwargs)

    def __repr__(self) -> str:
        return f"Client({self.config!r})"

    def copy(self) -> "Client":
        """The same API and policy with its own HTTP session (one per thread)."""
        return Client(self.config, retry=self.retry, timeout=self.timeout,
                      user_agent=self.session.headers.get("User-Agent", "streambatch"))

    def close(self) -> None:
        self.session.close()

    # -- transport -----------------------------------------------------------------------

    def request(self, method: str, path: str, *, idempotent: bool, expect_json: bool = True,
                ok: Iterable[int] = (), **kwargs: Any) -> requests.Response:
        """Send a request with the retry policy. Returns the response if it is 2xx or its status
        is in ``ok``; raises :class:`TransientApiError` or :class:`ApiError` otherwise."""
        url = self.config.api_path + path
        kwargs.setdefault("timeout", self.timeout)
        started = time.monotonic()
        attempt = 0
        body = kwargs.get("data")
        while True:
            if attempt and hasattr(body, "seek"):
                body.seek(0)
            try:
                resp = self.session.request(method, url, **kwargs)
            except requests.exceptions.RequestException as exc:
                reached = not isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.ConnectTimeout)) \
                    or isinstance(exc, requests.exceptions.ReadTimeout)
                if isinstance(exc, requests.exceptions.ConnectionError) and _mid_response(exc):
                    reached = True
                error: Exception = TransientApiError(f"{method} {path}: {type(exc).__name__}: {_clean(exc)}")
                retry_after = None
                retryable = idempotent or not reached
            else:
                if resp.ok or resp.status_code in ok:
                    if expect_json and resp.ok and "json" not in resp.headers.get("Content-Type", ""):
                        raise ApiError(f"{method} {path}: expected JSON, got {resp.headers.get('Content-Type')!r}",
                                       resp.status_code, resp.text[:500])
                    log.debug("%s %s -> %s", method, path, resp.status_code)
                    return resp
                message = f"{method} {path}: HTTP {resp.status_code}: {_failure_text(resp)}"
                if resp.status_code not in self.retry.statuses:
                    raise ApiError(message, resp.status_code, resp.text[:2000])
                error = TransientApiError(message, resp.status_code, resp.text[:2000])
                retry_after = resp.headers.get("Retry-After")
                refused_before_processing = resp.status_code == 429 or (resp.status_code == 503 and retry_after)
                retryable = idempotent or bool(refused_before_processing)
            attempt += 1
            wait = self.retry.delay(attempt - 1, retry_after)
            if not retryable or attempt >= self.retry.attempts or time.monotonic() - started + wait > self.retry.total:
                raise error
            log.warning("%s (attempt %d of %d, retrying in %.1fs)", error, attempt, self.retry.attempts, wait)
            time.sleep(wait)

    def _json(self, resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise ApiError(f"{resp.request.method} {resp.request.path_url}: the response is not JSON",
                           resp.status_code, resp.text[:500]) from None

    # -- batch endpoints -----------------------------------------------------------------

    def create_and_upload(self, config: Mapping[str, Any], content: bytes | IO[bytes], *,
                          idempotent: bool = False) -> dict[str, Any]:
        """E3: create a job and upload its input; returns ``batchStatus`` (with ``id`` when the
        job was queued, without it when it was processed synchronously)."""
        if not isinstance(content, (bytes, bytearray)):
            content = content.read()  # a multipart body is built in memory anyway; bytes survive retries
        files = {"config": ("config", wire.dumps(dict(config))), "content": ("content", content)}
        resp = self.request("POST", "/v2/batch/createAndUpload", params={"includeAdditional": "true"},
                            files=files, idempotent=idempotent)
        return _batch_status(self._json(resp), "createAndUpload")

    def create_job(self, config: Mapping[str, Any], *, idempotent: bool = False) -> int:
        """E1: create a job; returns its id."""
        resp = self.request("POST", "/v2/batch", data=wire.dumps(dict(config)),
                            headers={"Content-Type": "application/json; charset=utf-8"}, idempotent=idempotent)
        body = self._json(resp)
        data = body.get("data", body) if isinstance(body, dict) else {}
        try:
            return int(data["batchId"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(f"POST /v2/batch: no batchId in the response: {str(body)[:200]}", resp.status_code) from None

    def upload_data(self, batch_id: int, content: bytes | IO[bytes]) -> dict[str, Any]:
        """E2: upload a job's input (starts processing). A stream whose size requests cannot
        tell (a gzip chunk file read through ``gzip.open``, say) is read first, as
        :meth:`create_and_upload` does, so the body has a Content-Length."""
        if not isinstance(content, (bytes, bytearray)) and not _sized(content):
            content = content.read()
        resp = self.request("POST", f"/v2/batch/{batch_id}", data=content,
                            headers={"Content-Type": "application/octet-stream"}, idempotent=True)
        return self._json(resp)

    def status(self, batch_id: int) -> dict[str, Any]:
        """E4: the job's ``batchStatus`` (the bare ``{"status": "Running"}`` form is accepted)."""
        resp = self.request("GET", f"/v2/batch/{batch_id}", params={"includeAdditional": "true"}, idempotent=True)
        body = self._json(resp)
        if isinstance(body, dict) and body.get("status") in ("Created", "Queued", "Running", "Completed") \
                and "data" not in body:
            return {"id": batch_id, **body}
        return _batch_status(body, f"GET /v2/batch/{batch_id}")

    def results(self, batch_id: int) -> list[dict[str, Any]] | None:
        """E6: per-record errors with code and severity; [] when none; None when the server
        does not offer this endpoint."""
        resp = self.request("GET", f"/v2/batch/{batch_id}/results", idempotent=True, ok=(404, 405, 501))
        if resp.status_code == 404:
            try:
                body = resp.json()
            except ValueError:
                body = None
            # a 404 with the API's JSON envelope means "no errors"; anything else "no endpoint"
            return [] if isinstance(body, dict) and body.get("status") == "Failure" else None
        if resp.status_code in (405, 501):
            return None
        body = self._json(resp)
        return body if isinstance(body, list) else body.get("data", [])

    def errors(self, batch_id: int) -> list[dict[str, Any]]:
        """E5: the error file (gzip JSON, decoded by requests); [] when there is none."""
        resp = self.request("GET", f"/v2/batch/{batch_id}/errors", idempotent=True, expect_json=False, ok=(404,))
        if resp.status_code == 404:
            return []
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise ApiError(f"GET /v2/batch/{batch_id}/errors: the error file is not JSON", resp.status_code) from None
        return body if isinstance(body, list) else []

    def upload_file(self, group_type: str, xid: str, owner: str, content: bytes | IO[bytes] | Iterable[bytes]) -> None:
        """E7: upload a Document's or Report's content by xid: POST, and PUT when the API
        answers 401 because a file already exists."""
        branch = "reports" if group_type == "Report" else "documents"
        path = f"/v2/groups/{branch}/{quote_segment(xid)}/upload"
        params = {"owner": owner, "updateIfExists": "true"}
        headers = {"Content-Type": "application/octet-stream"}
        resp = self.request("POST", path, params=params, data=content, headers=headers, idempotent=True,
                            expect_json=False, ok=(401,))
        if resp.status_code == 401:
            if hasattr(content, "seek"):
                content.seek(0)  # type: ignore[union-attr]
            self.request("PUT", path, params=params, data=content, headers=headers, idempotent=True, expect_json=False)

    def owners(self) -> list[dict[str, Any]]:
        """E9: the owners these credentials can see (a connectivity check)."""
        body = self._json(self.request("GET", "/v2/owners", idempotent=True))
        return body.get("data", {}).get("owner", [])

    def indicator_types(self, include_additional: bool = False) -> dict[str, Any]:
        """E8: the instance's indicator types, in the shape ``TypeRegistry.load`` reads (with
        ``include_additional``, each type's value patterns, ``regexes``, too)."""
        params = {"includeAdditional": "true"} if include_additional else None
        return self._json(self.request("GET", "/v2/types/indicatorTypes", params=params, idempotent=True))

    def attribute_types(self) -> list[dict[str, Any]]:
        """``GET /v3/attributeTypes``, every page: ``name``, ``maxSize``, ``allowMarkdown`` ..."""
        return self._v3_list("/v3/attributeTypes", {})

    def exclusion_lists(self, owner: str) -> list[dict[str, Any]]:
        """``GET /v3/security/exclusionLists?owner=&fields=values``, every page: the System's
        Indicator Exclusion Lists and ``owner``'s, with their fixed and variable values."""
        return self._v3_list("/v3/security/exclusionLists", {"owner": owner, "fields": "values"})

    def _v3_list(self, path: str, params: dict[str, Any], page: int = V3_PAGE) -> list[dict[str, Any]]:
        """Every item of a v3 list endpoint, page by page (``resultStart``/``resultLimit``)
        while the reply has a ``next`` page."""
        out: list[dict[str, Any]] = []
        while True:
            resp = self.request("GET", path, params={**params, "resultStart": len(out), "resultLimit": page},
                                idempotent=True)
            body = self._json(resp)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise ApiError(f"GET {path}: unexpected response {str(body)[:200]}", resp.status_code)
            out.extend(d for d in data if isinstance(d, dict))
            if not data or not body.get("next"):
                return out


def _batch_status(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("status") != "Success":
        raise ApiError(f"{what}: unexpected response {str(body)[:300]}")
    status = body.get("data", {}).get("batchStatus")
    if not isinstance(status, dict):
        raise ApiError(f"{what}: no batchStatus in the response {str(body)[:300]}")
    return status


def _mid_response(exc: Exception) -> bool:
    """True if the connection broke after the request was sent (the server may have acted)."""
    text = repr(exc)
    return any(s in text for s in ("RemoteDisconnected", "ProtocolError", "IncompleteRead", "ChunkedEncodingError",
                                   "Connection aborted", "Connection reset"))


def _clean(exc: Exception) -> str:
    """An exception's text without anything that could carry a secret (URLs keep their path)."""
    return str(exc).split(" (Caused by")[0][:300]


# Characters a path segment may carry raw (RFC 3986 sub-delims, ":" and "@", besides the
# unreserved ones): sent as they are, as the incumbent does (requests leaves them alone in a
# path it is given); "/", "?", "#", "%", spaces and non-ASCII are percent-encoded.
SEGMENT_SAFE = "!$&'()*+,;=:@~"


def quote_segment(value: str) -> str:
    """``value`` as one URL path segment, e.g. ``fid:doc:2`` unchanged, ``a b`` as ``a%20b``."""
    return requests.utils.quote(value, safe=SEGMENT_SAFE)


def _sized(stream: Any) -> bool:
    """Whether requests can tell the body's length from the stream itself: a plain file."""
    import io

    return isinstance(stream, (io.BufferedReader, io.FileIO, io.BytesIO))
