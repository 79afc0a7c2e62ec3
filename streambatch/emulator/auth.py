"""Request authentication exactly as the Batch API does it (spec §1).

HMAC: ``Authorization: TC <access id>:<base64 HMAC-SHA256(secret, "<path?query>:<METHOD>:<ts>")>``
plus a ``Timestamp`` header within ±300 s. The path and query are verified as they were sent on
the wire (a ``+`` in the query stays a ``+``). Tokens: ``Authorization: TC-Token <token>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote, urlsplit

TIMESTAMP_OUT_OF_RANGE = "Timestamp out of acceptable time range"
SIGNATURE_MISMATCH = "Signature data did not match expected result"
ACCESS_DENIED = "Access Denied"
UNAUTHORIZED = "Unauthorized"


class AuthError(Exception):
    """Credentials refused; the message is the API's error text."""


def signature(secret_key: str, path_and_query: str, method: str, timestamp: str | int) -> str:
    """The HMAC signature of one request (spec §1.1)."""
    message = f"{path_and_query}:{method.upper()}:{timestamp}".encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def raw_target(environ: dict) -> str:
    """The request target (path and query) exactly as the client sent it."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        # The WSGI server hands us a latin-1 str of the raw bytes; an absolute-form target
        # ("http://host/path?q") is reduced to its path and query.
        if not raw.startswith("/"):
            parts = urlsplit(raw)
            raw = parts.path + (f"?{parts.query}" if parts.query else "")
        return raw
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=-._~")
    query = environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


@dataclass
class Credentials:
    """One API user: an access id and secret key pair and/or a token, with expiry."""

    access_id: str
    secret_key: str
    token: str | None = None
    token_expires: float | None = None

    def __repr__(self) -> str:  # never show secrets
        return f"Credentials(access_id={self.access_id!r}, secret_key=***, token=***)"


class Authenticator:
    """Checks the Authorization header of a request against the configured credentials."""

    def __init__(self, credentials: Credentials, window: int = 300, clock: Callable[[], float] = time.time) -> None:
        self.credentials = credentials
        self.window = window
        self.clock = clock

    def check(self, environ: dict) -> None:
        """Raise :class:`AuthError` unless the request carries valid credentials."""
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme == "TC-Token":
            self._check_token(value.strip())
        elif scheme == "TC":
            self._check_hmac(environ, value.strip())
        else:
            raise AuthError(UNAUTHORIZED)

    def _check_token(self, token: str) -> None:
        creds = self.credentials
        if not creds.token or not hmac.compare_digest(token.encode(), creds.token.encode()):
            raise AuthError(UNAUTHORIZED)
        if creds.token_expires is not None and self.clock() >= creds.token_expires:
            raise AuthError(UNAUTHORIZED)

    def _check_hmac(self, environ: dict, value: str) -> None:
        access_id, sep, sig = value.rpartition(":")
        if not sep or access_id != self.credentials.access_id:
            raise AuthError(ACCESS_DENIED)
        stamp = environ.get("HTTP_TIMESTAMP", "")
        try:
            skew = abs(self.clock() - int(stamp))
        except ValueError:
            raise AuthError(TIMESTAMP_OUT_OF_RANGE) from None
        if skew > self.window:
            raise AuthError(TIMESTAMP_OUT_OF_RANGE)
        expected = signature(self.credentials.secret_key, raw_target(environ), environ["REQUEST_METHOD"], stamp)
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise AuthError(SIGNATURE_MISMATCH)
