"""Apply one uploaded batch file to the store, the way the Batch API processes a job.

Order (spec §4.1, §5.4): every group, then every indicator, then the associations embedded in
them (``associatedGroupXid``, ``associatedIndicators``, ``associatedGroups``), then the top-level
``association`` array. References resolve against the owner's data after the items of the same
file were saved, so forward references work and references to items that failed do not.

Every refused record becomes an error record (code, severity, errorReason, errorMessage,
errorSource). ``errorReason`` reads ``"<Severity> (<code>): <description>: <detail>"``, so the
code is the first parenthesised token, and the detail names the item's summary or xid.
Counters follow §5.3; ``haltOnError`` stops at the first Error-severity record and counts the
items not reached in ``unprocessCount``. Nothing already saved is rolled back.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterator

import orjson

from . import rules
from .catalog import IndicatorCatalog
from .rows import ChunkRows
from .rules import Invalid
from .store import COUNTERS, Store

Pace = Callable[[int], None]
#: One step of a job: given the room left in the current processing chunk, it processes one
#: item or more and returns how many steps it took and how many of them were top-level items.
Step = Callable[[int], tuple[int, int]]


class Processor:
    """Processes jobs against a store; holds the instance-wide processing knobs."""

    #: How a processing chunk reads and writes indicator rows (see :mod:`.rows`).
    rows: Callable[[Store, str], ChunkRows] = ChunkRows

    def __init__(
        self,
        store: Store,
        catalog: IndicatorCatalog,
        *,
        indicator_limit: int = 25_000,
        attribute_types: tuple[str | dict[str, Any], ...] = rules.DEFAULT_ATTRIBUTE_TYPES,
        exclusions: rules.Exclusions | None = None,
        require_label_details: bool = True,
        strict_order: bool = False,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.indicator_limit = indicator_limit
        self.set_rules(attribute_types, exclusions)
        self.require_label_details = require_label_details
        self.strict_order = strict_order

    def set_rules(self, attribute_types: tuple[str | dict[str, Any], ...],
                  exclusions: rules.Exclusions | None) -> None:
        """The attribute types (names or v3 entries) and exclusion lists jobs are held to."""
        entries = [rules.attribute_type_entry(t, i) for i, t in enumerate(attribute_types)]
        self.attribute_types = {e["name"].lower(): e for e in entries}
        self.exclusions = exclusions

    def run(self, job_id: int, settings: dict[str, Any], raw: bytes,
            pace: Pace | None = None, chunk: int = 500) -> dict[str, int]:
        """Process a job to completion; returns its counters. ``pace(n)`` runs between chunks."""
        self.store.update_job(job_id, status="Running")
        return _Run(self, job_id, settings).execute(raw, pace, max(1, chunk))


def count_records(raw: bytes) -> dict[str, int]:
    """Count groups, indicators and associations in an input file (zeros if it is not JSON)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"group": 0, "indicator": 0, "association": 0}
    doc = _unwrap(doc)
    if isinstance(doc, list):
        return {"group": 0, "indicator": len(doc), "association": 0}
    if not isinstance(doc, dict):
        return {"group": 0, "indicator": 0, "association": 0}
    return {k: len(doc[k]) if isinstance(doc.get(k), list) else 0 for k in ("group", "indicator", "association")}


def _unwrap(doc: Any) -> Any:
    """Old docs wrapped a V2 document in a one-element array; accept that form too."""
    if isinstance(doc, list) and len(doc) == 1 and isinstance(doc[0], dict) and (
            {"group", "indicator", "association"} & set(doc[0])):
        return doc[0]
    return doc


class _Run:
    """The state of one job being processed."""

    def __init__(self, proc: Processor, job_id: int, settings: dict[str, Any]) -> None:
        self.p = proc
        self.store = proc.store
        self.job_id = job_id
        self.s = settings
        self.owner: str = settings["owner"]
        self.delete = settings["action"] == "Delete"
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.pending: list[dict[str, Any]] = []
        self.links: deque[tuple[str, int, str, tuple[str, int], Any]] = deque()
        self.halted = False
        self.xids: set[str] = set()
        self.indicators_seen = 0
        self.labels: set[str] = set()  # the owner's labels this job found or made: not looked up again

    # ------------------------------------------------------------------------ driver

    def execute(self, raw: bytes, pace: Pace | None, chunk: int) -> dict[str, int]:
        steps, total = self._plan(raw)
        done = 0
        exhausted = False
        while not self.halted and not exhausted:
            count = 0
            with self.store.tx():
                while count < chunk and not self.halted:
                    step = next(steps, None)
                    if step is None:
                        exhausted = True
                        break
                    took, top_level = step(chunk - count)
                    count += took
                    done += top_level
                self._flush()
            if pace and count and not self.halted and not exhausted:
                pace(count)
        if self.halted:
            self.counters["unprocessCount"] = total - done
        self._flush()
        self.store.update_job(self.job_id, status="Completed", counters=self.counters)
        return self.counters

    def _flush(self) -> None:
        if self.pending:
            self.store.add_errors(self.job_id, self.pending)
            self.pending = []
        self.counters["successCount"] = self.counters["successGroupCount"] + self.counters["successIndicatorCount"]
        self.store.update_job(self.job_id, counters=self.counters)

    def _plan(self, raw: bytes) -> tuple[Iterator[Step], int]:
        """Parse the file and lay out the steps lazily (indicators a chunk at a time).

        Returns the steps and the number of top-level items (groups, indicators and
        association entries), which is what ``unprocessCount`` counts.
        """
        try:
            doc = _unwrap(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            self._error("0x1003", f"the batch file is not valid JSON: {exc}", "$", None, "batch file")
            return iter(()), 0
        if isinstance(doc, list):
            doc = {"indicator": doc}
        if not isinstance(doc, dict):
            self._error("0x1003", "the batch file is not a JSON object", "$", None, "batch file")
            return iter(()), 0
        keys = [k for k in doc if k in ("group", "indicator", "association")]
        if self.p.strict_order and "association" in keys and keys[-1] != "association":
            self._error("0x1003", "'association' must come after 'group' and 'indicator'", "$", None, "association")
            return iter(()), 0
        sections: dict[str, list[Any]] = {}
        for name in ("group", "indicator", "association"):
            value = doc.get(name) or []
            if not isinstance(value, list):
                self._error("0x1003", f"'{name}' is not an array", f"$.{name}", None, name)
                value = []
            sections[name] = value
        if self.delete:
            sections["association"] = []  # Delete ignores associations (DECISIONS.md)

        def one(fn: Callable[..., None], *args: Any, top_level: bool = True) -> Step:
            def step(room: int) -> tuple[int, int]:
                fn(*args)
                return 1, int(top_level)
            return step

        def steps() -> Iterator[Step]:
            for i, item in enumerate(sections["group"]):
                yield one(self._group, i, item)
            items, cursor = sections["indicator"], [0]

            def indicators(room: int) -> tuple[int, int]:
                took = self._indicators(items, cursor[0], room)
                cursor[0] += took
                return took, took
            while cursor[0] < len(items):
                yield indicators
            while self.links:
                yield one(self._embedded_link, *self.links.popleft(), top_level=False)
            for i, item in enumerate(sections["association"]):
                yield one(self._association, i, item)

        return steps(), sum(len(v) for v in sections.values())

    # ------------------------------------------------------------------------ records

    def _error(self, code: str, detail: str, section: str, index: int | None, source: Any) -> None:
        severity = rules.severity_of(code)
        where = section if index is None else f"{section}[{index}]"
        path = where if section.startswith("$") else f"$.{where}"
        self.pending.append({
            "code": code,
            "severity": severity,
            "errorReason": f"{severity} ({code}): {rules.ERROR_CODES[code]}: {detail}",
            "errorMessage": (f"Encountered an error while processing batch job. Last known JSON path: "
                             f"'{path}': Last processed {where} '{source}'."),
            "errorSource": str(source),
        })
        self.counters["errorCount"] += 1
        if severity == "Error" and self.s["haltOnError"]:
            self.halted = True

    # -------------------------------------------------------------------------- groups

    def _group(self, index: int, item: Any) -> None:
        if not isinstance(item, dict):
            self.counters["errorGroupCount"] += 1
            self._error("0x1003", f"group[{index}] is not a JSON object", "group", index, repr(item)[:80])
            return
        xid = item.get("xid")
        source = xid or item.get("name") or f"group[{index}]"
        try:
            gtype = rules.canonical_group_type(item.get("type"))
            if self.delete:
                return self._delete_group(index, gtype, xid)
            fields = rules.check_group(gtype, item)
            if xid in self.xids:
                raise Invalid("0x100A", f"{gtype} {xid} appears more than once in this file")
            if any(o != self.owner for o in self.store.xid_owners(xid)):
                raise Invalid("0x100A", f"{gtype} {xid}: the xid is already used by a group in another owner")
            existing = self.store.find_group(self.owner, xid)
            if existing and existing["type"] != gtype:
                raise Invalid("0x100A", f"{gtype} {xid}: the xid already belongs to a {existing['type']}")
        except Invalid as exc:
            self.counters["errorGroupCount"] += 1
            self._error(exc.code, exc.detail, "group", index, source)
            return
        self.xids.add(xid)
        rec = existing or {"owner": self.owner, "xid": xid, "type": gtype, "fields": {},
                           "attribute": [], "tag": [], "label": []}
        rec["name"] = item["name"]
        rec["fields"].update(fields)
        losses = self._metadata(rec, item, is_new=existing is None)
        self.store.put_group(rec)
        self.counters["successGroupCount"] += 1
        for detail in losses:
            self._error("0x2002", f"{gtype} {xid}: {detail}", "group", index, xid)
        me = ("g", rec["id"])
        for target in _as_list(item.get("associatedGroupXid")):
            self.links.append(("group", index, xid, me, {"group": target}))
        for target in _as_list(item.get("associatedIndicators")):
            self.links.append(("group", index, xid, me, {"indicator": target}))

    def _delete_group(self, index: int, gtype: str, xid: Any) -> None:
        found = self.store.find_group(self.owner, xid) if isinstance(xid, str) else None
        if found is None or found["type"] != gtype:
            self.counters["errorGroupCount"] += 1
            self._error("0x1007", f"{gtype} {xid} was not found in {self.owner}", "group", index, xid)
            return
        self.store.delete_group(found["id"])
        self.counters["successGroupCount"] += 1

    # ---------------------------------------------------------------------- indicators

    def _summary(self, itype: str | None, item: dict[str, Any]) -> Any:
        """The indicator value: type-specific value fields win over ``summary`` (spec §4.3)."""
        if itype is None:
            return item.get("summary")
        keys = self.p.catalog.keys(itype)
        if any(item.get(k) not in (None, "") for k in keys):
            values = [item.get(k) for k in keys]
            while values and values[-1] in (None, ""):
                values.pop()
            return " : ".join("" if v is None else str(v) for v in values)
        if item.get("summary") in (None, "") and item.get("value1") not in (None, ""):
            values = [item.get(f"value{i}") for i in (1, 2, 3)]
            return " : ".join(str(v) for v in values if v is not None)
        return item.get("summary")

    def _indicators(self, items: list[Any], start: int, room: int) -> int:
        """Process up to ``room`` indicators from ``items[start]`` (stopping after one that halts
        the job) with their rows read and written at once; returns how many were processed."""
        prepared, failure = [], None
        for i in range(start, min(len(items), start + room)):
            try:
                prepared.append(self._prepare(i, items[i]))
            except Exception as exc:  # raised when that item's turn comes, as item by item
                failure = exc
                break
        rows = self.p.rows(self.store, self.owner)
        rows.load([(p[1], p[3], p[7]) for p in prepared if p[0] == "ok"])
        took = 0
        for p in prepared:
            took += 1
            self._apply(start + took - 1, p, rows)
            if self.halted:
                break
        rows.flush()
        if failure is not None and not self.halted:
            raise failure
        return took

    def _prepare(self, index: int, item: Any) -> tuple:
        """Check one indicator on its own (nothing read or written): ``("bad", source)`` for a
        non-object, ``("invalid", Invalid, source)``, ``("delete", itype, key, summary)`` or
        ``("ok", itype, summary, key, source, fields, occurrences, hashes-of-a-File, item)``."""
        if not isinstance(item, dict):
            return ("bad", repr(item)[:80])
        self.indicators_seen += 1
        itype = self.p.catalog.canonical(item.get("type"))
        summary = self._summary(itype, item)
        source = summary or item.get("xid") or f"indicator[{index}]"
        try:
            if itype is None:
                raise Invalid("0x1005", f"'{summary}': unknown indicator type {item.get('type')!r}")
            if self.indicators_seen > self.p.indicator_limit:
                raise Invalid("0x1008", f"{itype} '{summary}': adding it would exceed the number of allowed "
                                        f"indicators ({self.p.indicator_limit}) in one batch job")
            key = rules.indicator_key(itype, summary)
            if self.delete:
                return ("delete", itype, key, summary)
            self.p.catalog.check_pattern(itype, key)
            listed = self.p.exclusions.match(self.owner, itype, key) if self.p.exclusions else None
            if listed is not None:
                raise Invalid("0x1005", f"{itype} '{summary}' is excluded by {listed}")
            fields = rules.check_indicator_fields(itype, summary, item)
            occurrences = None
            if itype == "File" and item.get("fileOccurrence") is not None:
                occurrences = rules.check_occurrences(summary, item["fileOccurrence"])
        except Invalid as exc:
            return ("invalid", exc, source)
        hashes = rules.file_hashes(summary) if itype == "File" else None
        return ("ok", itype, summary, key, source, fields, occurrences, hashes, item)

    def _apply(self, index: int, prepared: tuple, rows: ChunkRows) -> None:
        """Save one prepared indicator (or record why not) through the chunk's rows."""
        kind = prepared[0]
        if kind == "bad":
            self.counters["errorIndicatorCount"] += 1
            self._error("0x1003", f"indicator[{index}] is not a JSON object", "indicator", index, prepared[1])
            return
        if kind == "invalid":
            self.counters["errorIndicatorCount"] += 1
            self._error(prepared[1].code, prepared[1].detail, "indicator", index, prepared[2])
            return
        if kind == "delete":
            return self._delete_indicator(index, *prepared[1:])
        _, itype, summary, key, source, fields, occurrences, hashes, item = prepared
        if itype == "File":
            targets, warnings = self._file_targets(hashes, summary, rows)
        else:
            existing = rows.find_indicator(itype, key)
            targets = [existing or self._new_indicator(itype, key, summary)]
            warnings = []
        losses: list[str] = []
        for rec in targets:
            if item.get("xid"):
                rec["xid"] = item["xid"]
            rec["fields"].update(fields)
            if occurrences:
                known = rec["fields"].setdefault("fileOccurrence", [])
                known.extend(o for o in occurrences if o not in known)
            losses = self._metadata(rec, item, is_new=rec.get("id") is None)
            rows.put(rec)
        self.counters["successIndicatorCount"] += 1
        for detail in warnings:
            self._error("0x2003", detail, "indicator", index, source)
        for detail in losses:
            self._error("0x2001", f"{itype} '{summary}': {detail}", "indicator", index, source)
        for rec in targets:
            me = ("i", rec["id"])
            for target in _as_list(item.get("associatedGroups")):
                self.links.append(("indicator", index, source, me, {"group": target}))
            for target in _as_list(item.get("associatedIndicators")):
                self.links.append(("indicator", index, source, me, {"indicator": target}))

    def _new_indicator(self, itype: str, key: str, summary: str, hashes: dict | None = None) -> dict[str, Any]:
        return {"owner": self.owner, "type": itype, "key": key, "summary": key,
                "xid": None, "hashes": hashes or {}, "fields": {}, "attribute": [], "tag": [], "label": []}

    def _delete_indicator(self, index: int, itype: str, key: str, summary: str) -> None:
        if itype == "File":
            found = self.store.find_files(self.owner, rules.file_hashes(summary))
        else:
            one = self.store.find_indicator(self.owner, itype, key)
            found = [one] if one else []
        if not found:
            self.counters["errorIndicatorCount"] += 1
            self._error("0x1007", f"{itype} '{summary}' was not found in {self.owner}", "indicator", index, summary)
            return
        for rec in found:
            self.store.delete_indicator(rec["id"])
        self.counters["successIndicatorCount"] += 1

    def _file_targets(self, hashes: dict[str, str], summary: str, rows: ChunkRows) -> tuple[list[dict], list[str]]:
        """Which File records receive the incoming one (spec §5.7 merge and collision rules)."""
        matches = rows.find_files(hashes)
        mode, merge = self.s["hashCollisionMode"], self.s["fileMergeMode"]
        if not matches:
            key = rules.file_summary(hashes)
            return [self._new_indicator("File", key, key, hashes)], []
        conflict = any(e["hashes"].get(k) not in (None, v) for e in matches for k, v in hashes.items())
        if conflict and mode == "IgnoreIncoming":
            return [], [f"File '{summary}' conflicts with existing hashes; incoming File ignored (IgnoreIncoming)"]
        if conflict and mode == "Split":
            return matches[:3], [f"File '{summary}' conflicts with existing hashes; metadata applied to each "
                                 f"match without merging (Split)"]
        if conflict and mode == "IgnoreExisting":
            taken = {v for e in matches for v in e["hashes"].values()}
            kinds = {k for e in matches for k in e["hashes"]}
            rest = {k: v for k, v in hashes.items() if k not in kinds and v not in taken}
            warning = f"File '{summary}' conflicts with existing hashes; existing Files kept (IgnoreExisting)"
            if not rest:
                return [], [warning]
            key = rules.file_summary(rest)
            return [self._new_indicator("File", key, key, rest)], [warning]
        if len(matches) > 1 and merge == "Distribute":
            return matches[:3], []
        primary = max(matches, key=lambda e: (e["modified"], e["id"]))
        merged: dict[str, str] = {}
        for other in sorted(matches, key=lambda e: (e["modified"], e["id"])):
            merged.update(other["hashes"])
        for kind, value in hashes.items():
            if mode == "FavorExisting" and merged.get(kind) not in (None, value):
                continue
            merged[kind] = value
        for other in matches:
            if other is primary:
                continue
            primary["attribute"].extend(other["attribute"])
            primary["tag"].extend(t for t in other["tag"] if t not in primary["tag"])
            names = {label["name"] for label in primary["label"]}
            primary["label"].extend(label for label in other["label"] if label["name"] not in names)
            rows.delete(other["id"], move_links_to=primary["id"])
        primary["hashes"] = merged
        primary["summary"] = primary["key"] = rules.file_summary(merged)
        return [primary], []

    # ------------------------------------------------------------------------ metadata

    def _metadata(self, rec: dict[str, Any], item: dict[str, Any], *, is_new: bool) -> list[str]:
        """Apply attributes, tags and labels per the write types; return partial-loss details."""
        losses: list[str] = []
        if "attribute" in item:
            incoming = []
            for attr in _as_list(item["attribute"]):
                try:
                    incoming.append(rules.check_attribute(attr, self.p.attribute_types, rec["type"]))
                except Invalid as exc:
                    losses.append(exc.detail)
            mode = self.s["attributeWriteType"]
            if mode == "Append":
                rec["attribute"] = rec["attribute"] + incoming
            elif mode == "Replace":
                rec["attribute"] = incoming
            elif mode == "Singleton":
                types = {a["type"] for a in incoming}
                rec["attribute"] = [a for a in rec["attribute"] if a["type"] not in types] + incoming
            elif is_new:  # Static: only new items receive attributes
                rec["attribute"] = incoming
        if "tag" in item:
            names: list[str] = []
            for tag in _as_list(item["tag"]):
                try:
                    name = rules.check_tag(tag)
                except Invalid as exc:
                    losses.append(exc.detail)
                    continue
                if name not in names:
                    names.append(name)
            base = rec["tag"] if self.s["tagWriteType"] == "Append" else []
            rec["tag"] = base + [n for n in names if n not in base]
        if "securityLabel" in item:
            labels: list[dict[str, Any]] = []
            for raw in _as_list(item["securityLabel"]):
                try:
                    label = rules.check_label(raw)
                    self._ensure_label(label)
                except Invalid as exc:
                    losses.append(exc.detail)
                    continue
                if all(label["name"] != l["name"] for l in labels):
                    labels.append({"name": label["name"]})
            base = rec["label"] if self.s["securityLabelWriteType"] == "Append" else []
            rec["label"] = base + [l for l in labels if all(l["name"] != b["name"] for b in base)]
        return losses

    def _ensure_label(self, label: dict[str, Any]) -> None:
        if label["name"] in self.labels or self.store.label_known(self.owner, label["name"]):
            self.labels.add(label["name"])
            return
        if self.p.require_label_details and not (label.get("color") and label.get("description")):
            raise Invalid("0x1001", f"security label {label['name']!r} does not exist yet and needs a color and a description")
        self.store.add_label(self.owner, label)
        self.labels.add(label["name"])

    # --------------------------------------------------------------------- associations

    def _resolve_group(self, ref: Any) -> tuple[str, int]:
        if isinstance(ref, dict):
            ref = ref.get("groupXid", ref.get("id"))
        if isinstance(ref, int) and not isinstance(ref, bool):
            return self._resolve_id("g", ref)
        group = self.store.find_group(self.owner, ref) if isinstance(ref, str) else None
        if group is None:
            raise Invalid("0x1007", f"group {ref!r} was not found in this file or in {self.owner}")
        return ("g", group["id"])

    def _resolve_indicator(self, itype_raw: Any, summary: Any) -> tuple[str, int]:
        itype = self.p.catalog.canonical(itype_raw)
        if itype is None:
            raise Invalid("0x1009", f"unknown indicator type {itype_raw!r} for '{summary}'")
        found = None
        try:
            if itype == "File":
                files = self.store.find_files(self.owner, rules.file_hashes(summary))
                found = files[0] if files else None
            else:
                found = self.store.find_indicator(self.owner, itype, rules.indicator_key(itype, summary))
        except Invalid:
            found = None
        if found is None:
            raise Invalid("0x1007", f"{itype} '{summary}' was not found in this file or in {self.owner}")
        return ("i", found["id"])

    def _resolve_id(self, kind: str, item_id: Any) -> tuple[str, int]:
        if not isinstance(item_id, int) or isinstance(item_id, bool):
            raise Invalid("0x1009", f"id {item_id!r} is not an integer")
        rec = self.store.find_group_by_id(item_id) if kind == "g" else self.store.find_indicator_by_id(item_id)
        what = "group" if kind == "g" else "indicator"
        if rec is None:
            raise Invalid("0x1007", f"{what} id {item_id} was not found in {self.owner}")
        if rec["owner"] != self.owner:
            raise Invalid("0x1009", f"{what} id {item_id} belongs to another owner; cross-owner associations are not supported")
        return (kind, item_id)

    def _embedded_link(self, section: str, index: int, source: str, me: tuple[str, int], target: dict) -> None:
        label = f"{source} -> {target.get('group') or target.get('indicator')}"
        try:
            if "group" in target:
                other = self._resolve_group(target["group"])
            else:
                spec = target["indicator"]
                if not isinstance(spec, dict):
                    raise Invalid("0x1009", f"associatedIndicators entry {spec!r} is not an object")
                other = self._resolve_indicator(spec.get("indicatorType", spec.get("type")), spec.get("summary"))
            if other == me:
                raise Invalid("0x1009", f"{source} cannot be associated with itself")
        except Invalid as exc:
            self.counters["errorAssociationCount"] += 1
            self._error(exc.code, f"{label}: {exc.detail}", section, index, source)
            return
        self.store.link(self.owner, me, other)
        self.counters["successAssociationCount"] += 1

    def _association(self, index: int, entry: Any) -> None:
        if not isinstance(entry, dict):
            self.counters["errorAssociationCount"] += 1
            self._error("0x1003", f"association[{index}] is not a JSON object", "association", index, repr(entry)[:80])
            return
        names = [entry.get(f"ref_{n}", entry.get(f"id_{n}")) for n in (1, 2)]
        source = f"{names[0]} <-> {names[1]}"
        try:
            sides = [self._side(entry, n) for n in (1, 2)]
            if sides[0] == sides[1]:
                raise Invalid("0x1009", "an item cannot be associated with itself")
            atype = entry.get("associationType")
            if sides[0][0] == sides[1][0] == "i" and not atype:
                raise Invalid("0x1009", "an indicator-to-indicator association needs an associationType")
        except Invalid as exc:
            self.counters["errorAssociationCount"] += 1
            self._error(exc.code, f"{source}: {exc.detail}", "association", index, source)
            return
        self.store.link(self.owner, sides[0], sides[1], atype)
        self.counters["successAssociationCount"] += 1

    def _side(self, entry: dict[str, Any], n: int) -> tuple[str, int]:
        item_id, ref, itype = entry.get(f"id_{n}"), entry.get(f"ref_{n}"), entry.get(f"type_{n}")
        if item_id is not None:
            return self._resolve_id("i" if itype else "g", item_id)
        if ref in (None, ""):
            raise Invalid("0x1009", f"side {n} has neither ref_{n} nor id_{n}")
        return self._resolve_indicator(itype, ref) if itype else self._resolve_group(ref)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
