"""Skipping an unchanged source: a cycle that would find nothing to do reads nothing.

A cycle that read the whole feed and left nothing for the next one -- every record accepted
(none failed or left unprocessed), no retirement held back, no record that began repeating
deferred, a source that was not empty -- leaves a **mark** in the state file (meta
``unchanged``): the digest of the source's bytes as read, the digest of the feed's effective
config (:func:`config_digest`) and of the instance's rules it applied (:func:`rules_digest`),
its run, its clock and its counts.
Every other cycle removes the mark when it starts, so a cycle that failed, was interrupted or
left records to send again never leaves one.

The next cycle reads nothing, and records a run counted as unchanged, when the mark stands,
nothing else gives the cycle work (:func:`work_due`) and the source is the same
(:func:`streambatch.feeds.sources.unchanged`: HTTP 304, the same ETag or Last-Modified, or the
same digest of the whole content). Otherwise it reads the feed in full, as always, and
without a conditional request, so records left to retry are sent even while the source stays
the same. Incremental sources (TAXII, MISP) keep their own cursors and are always read.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from typing import Any

import orjson

from .. import __version__
from ..rules import DEFAULT_REFRESH, refresh_seconds
from .config import FeedConfig
from .state import FeedState

MARK = "unchanged"  # the state file's meta key
# what a record is made from and what a cycle does with it; the schedule, the state folder, the
# history file, the job files kept and where the config is (a moved feed keeps its state) do not
# change what a cycle sends
_EFFECTIVE = ("source", "format", "owner", "removed", "grace", "options", "mapping", "batch", "max_removed",
              "absent_cycles", "expires", "keep_alive")


def _digest(value: Any) -> str:
    """128 bits of BLAKE2b, hex: the config may hold credentials (a URL's key, header values), so
    what the state file keeps of it is a cryptographic hash, never a fast one."""
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def config_digest(config: FeedConfig) -> str:
    """A digest of the feed's effective config: what it reads, how rows become records, what is
    done with them (and the streambatch version doing it, whose checks may change)."""
    values = asdict(config)
    return _digest({"version": __version__, **{k: values[k] for k in _EFFECTIVE}})


def rules_digest(doc: Any) -> str | None:
    """A digest of the instance's rules as the state file keeps them (without when they were read)."""
    if not isinstance(doc, dict):
        return None
    return _digest({k: v for k, v in doc.items() if k != "fetched"})


def incremental(source: str) -> bool:
    """A source read from a cursor (TAXII, MISP): never skipped."""
    from .misp import is_misp
    from .taxii import is_taxii

    return is_taxii(source) or is_misp(source)


def mark(state: FeedState, config: FeedConfig, run: int, now: float, digest: str | None, counts: dict[str, int]) -> None:
    """Leave the mark of a clean complete read (see the module); ``digest`` of the source's
    bytes as read (None for a URL told apart by its validators)."""
    state.put(MARK, {"run": run, "now": now, "digest": digest, "config": config_digest(config),
                     "rules": rules_digest(state.get("rules")), "counts": counts})


def work_due(state: FeedState, config: FeedConfig, found: Any, now: float, client: Any) -> str | None:
    """Why this cycle must read the feed whatever its source says (None: only a changed source
    would give it work). ``found`` is the mark (:data:`MARK`) as read."""
    if not isinstance(found, dict):
        return "no clean complete read to compare with"
    if found.get("config") != config_digest(config):
        return "the feed's config changed"
    rules = state.get("rules")
    if found.get("rules") != rules_digest(rules):
        return "the instance's rules changed"
    preflight = config.batch.get("preflight")
    if preflight is not False:
        if rules is None and client is not None:
            return "the instance's rules are to be read"
        refresh = refresh_seconds(config.batch.get("rules_refresh", DEFAULT_REFRESH))
        if isinstance(rules, dict) and time.time() - float(rules.get("fetched") or 0) >= refresh:  # as the batch asks
            return "the instance's rules are due for a refresh"
    if config.keep_alive and state.keep_alive_due((now, max(1, round(config.keep_alive)))):
        return "a keep-alive is due"
    if state.expiring(float(found["now"]), now):
        return "a record's own expiry passed"
    return None
