"""Indicator lifecycle in a feed cycle: expiry and keep-alive.

Expiry
    With ``expires = "30d"`` every indicator a cycle sends carries ``externalDateExpires`` =
    the time of that cycle + 30 days: the last time the feed had it *as sent* ("last seen in
    the feed", counted from the cycle that sent it, not from the first time it was staged). A
    record with an expiry of its own (STIX ``valid_until``, a mapped ``expires`` column, a
    source that computes one, such as MISP decay) keeps it: the source's own field wins. The
    stamp is not content: it is left out of the content hash, so an unchanged record is not
    sent again because its stamp would differ.

    A record is **expired** when its own expiry has passed at the time of the cycle that reads
    it (a source that says a record is expired gives it an expiry in the past). It is sent
    once as inactive (``active: false``, its expiry kept) and counted ``expired`` instead of new
    or changed; while the feed keeps listing it unchanged, it is unchanged. A row that is byte
    for byte what was sent, but whose expiry has passed since, is checked again in full
    (:meth:`streambatch.feeds.state.FeedState.lookup_raw`), so the passing itself is noticed.

Keep-alive
    With ``keep_alive = "7d"`` a record still in the feed and unchanged is sent again once per
    interval (counted ``kept_alive``), which restarts ThreatConnect's deprecation timers and,
    with ``expires``, moves its expiry on. Each record has its own phase in the interval (its
    identity key modulo the interval, in seconds): it is due once the clock has passed a phase
    of its since it was last sent (:func:`streambatch.feeds.state.due_sql`). The phases are
    spread evenly, so each cycle re-sends about ``known * period / interval`` records whatever
    the schedule (cron or interval, or ``streambatch run`` from a timer), never the whole feed
    at once, and a record is never more than one interval plus one cycle without a send.
    Expired and inactive records are not kept alive.
"""

from __future__ import annotations

import time
from typing import Any

from ..types import TypeSpec
from .config import FeedConfig

EXPIRES = "externalDateExpires"


def date_text(epoch: float) -> str:
    """Epoch seconds as the Batch API's date (``YYYY-MM-DDTHH:MM:SSZ``, UTC), the form
    :func:`streambatch.validate.date` gives every date, so two dates compare as text."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def epoch_of(text: str) -> float:
    import calendar

    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


class Lifecycle:
    """The lifecycle rules of one cycle of a feed, at ``now`` (epoch seconds)."""

    def __init__(self, config: FeedConfig, now: float) -> None:
        self.now = now
        self.now_text = date_text(now)
        self.stamp = date_text(now + config.expires) if config.expires else None
        self.keep_alive = (now, max(1, round(config.keep_alive))) if config.keep_alive else None

    def prepare(self, spec: TypeSpec, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The record as the feed means it now, and whether it is expired (then it is made
        inactive). The result is what the content hash is taken of."""
        until = data.get(EXPIRES) if spec.kind == "indicator" else None
        if until is not None and until <= self.now_text:
            return ({**data, "active": False} if data.get("active") is not False else data), True
        return data, False

    @staticmethod
    def until(spec: TypeSpec, data: dict[str, Any]) -> float | None:
        """The record's own expiry (epoch seconds), kept in the state file."""
        until = data.get(EXPIRES) if spec.kind == "indicator" else None
        return epoch_of(until) if until else None

    def keep(self, data: dict[str, Any], expired: bool) -> bool:
        """Whether a due record is kept alive: not when expired or inactive."""
        return self.keep_alive is not None and not expired and data.get("active") is not False

    def stamped(self, spec: TypeSpec, data: dict[str, Any]) -> dict[str, Any]:
        """The record as sent: an indicator without an expiry of its own gets the feed's."""
        if self.stamp is None or spec.kind != "indicator" or EXPIRES in data:
            return data
        return {**data, EXPIRES: self.stamp}

    def unstamped(self, body: dict[str, Any]) -> dict[str, Any]:
        """A staged body without this cycle's stamp: what a merged record's hash is taken of."""
        if self.stamp is not None and body.get(EXPIRES) == self.stamp:
            return {k: v for k, v in body.items() if k != EXPIRES}
        return body
