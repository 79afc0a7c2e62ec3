"""Feeds: reading threat-intel feeds (:mod:`.readers`) and running them on a schedule (the worker).

The readers turn a local file or an http(s) URL in one of several formats (text, csv, tsv,
jsonl, json, STIX 2.1) into a stream of :class:`~streambatch.feeds.readers.FeedItem`, each a raw
batch dict ready for ``Batch.save_all`` or a bad row with its line number and reason.
"""

from .detect import detect_type, refang
from .readers import FORMATS, FeedItem, read_feed

__all__ = ["FORMATS", "FeedItem", "detect_type", "read_feed", "refang"]
