"""The JSON streambatch sends is ASCII: every non-ASCII character is a ``\\uXXXX`` escape (a
surrogate pair above U+FFFF), as the incumbent's client sends it. A multipart part that declares
no charset then means the same to any server, whatever encoding it assumes.

Record bodies are escaped when they are staged, so the sizes the chunker counts are the sizes
sent; :func:`ascii_json` costs one ``bytes.isascii`` for the common all-ASCII body.
"""

from __future__ import annotations

import re

import orjson

_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def ascii_json(body: bytes) -> bytes:
    """UTF-8 JSON (as orjson writes it) with every non-ASCII character escaped."""
    if body.isascii():
        return body
    return _NON_ASCII.sub(_escape, body.decode("utf-8")).encode("ascii")


def dumps(value: object) -> bytes:
    """``orjson.dumps`` with the output made ASCII."""
    return ascii_json(orjson.dumps(value))
