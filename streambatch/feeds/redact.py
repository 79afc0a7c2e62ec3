"""One redaction rule for feed credentials, applied wherever a feed URL or header can surface.

Feed sources carry secrets in the URL (``https://user:pass@host/feed?apikey=...``) and in
header values. Wherever such a URL or header could be shown or stored (messages, logs at every
level including the HTTP library's request lines, reprs, exception texts, the state and history
files) it goes through :func:`url` or :func:`text`:

* user info becomes ``***@``; every query value becomes ``***`` (names are kept, so
  ``?apikey=***&limit=***`` still says which parameters were sent); the fragment is dropped;
  scheme, host, port and path are kept;
* every secret a feed config registered (:func:`register`: the URL's user, password and query
  values, every header value) is replaced by ``***`` wherever it appears.

:class:`Filter` applies :func:`text` to log records (message, arguments and exception text);
it is installed on the HTTP library's request logger on import and on the command line's log
handlers.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from urllib.parse import urlsplit

MASK = "***"
_MIN_SECRET = 4  # shorter values are too likely to occur by chance in other text
_secrets: set[str] = set()
_lock = threading.Lock()
# a URL in prose ends before trailing punctuation ("...?key=***: HTTP 404")
_END = r"(?=[.,;:)\]]*(?:[\s'\"<>]|$))"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+?" + _END)
_QUERY_VALUE = re.compile(r"([?&][^=&\s'\"#<>]+=)[^&\s'\"#<>]*?(?=[&#]|" + _END[3:])


def register(*values: str | None) -> None:
    """Remember secret strings: from now on :func:`text` replaces them wherever they appear."""
    with _lock:
        for value in values:
            if value and len(value) >= _MIN_SECRET:
                _secrets.add(value)


def url_secrets(source: str) -> list[str]:
    """The secrets of a URL: user, password and query values (raw and percent-decoded)."""
    from urllib.parse import parse_qsl, unquote

    parts = urlsplit(source)
    out: list[str] = []
    if "@" in parts.netloc:
        info = parts.netloc.rsplit("@", 1)[0]
        user, _, password = info.partition(":")
        out += [user, password, unquote(user), unquote(password)]
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        out.append(value)
    out += [piece.partition("=")[2] for piece in parts.query.split("&")]
    return [v for v in out if v]


def url(value: str) -> str:
    """A URL fit to show: user info and query values masked; never raises."""
    text_value = str(value)
    try:
        parts = urlsplit(text_value)
    except ValueError:
        return _QUERY_VALUE.sub(rf"\1{MASK}", text_value.split("@")[-1])
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@" + netloc.rsplit("@", 1)[1]
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    if parts.query:
        out += "?" + "&".join(f"{p.partition('=')[0]}={MASK}" if "=" in p else MASK for p in parts.query.split("&"))
    return out


def text(value: str) -> str:
    """Free text with every URL in it passed through :func:`url`, query values of bare paths
    (``GET /feed?apikey=...``) masked, and every registered secret replaced."""
    out = _URL.sub(lambda m: url(m.group(0)), str(value))
    out = _QUERY_VALUE.sub(rf"\1{MASK}", out)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in out:
            out = out.replace(secret, MASK)
    return out


class Filter(logging.Filter):
    """Redacts a log record's message, arguments and exception text in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: leave it to logging
            return True
        record.msg, record.args = text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = text(record.exc_text)
        if record.stack_info:
            record.stack_info = text(record.stack_info)
        return True


FILTER = Filter()


def install(*loggers: logging.Logger | logging.Handler) -> None:
    """Add the filter once to each logger or handler given."""
    for target in loggers:
        if FILTER not in target.filters:
            target.addFilter(FILTER)


# The HTTP library logs every request line at DEBUG, query string and all.
install(logging.getLogger("urllib3.connectionpool"))
