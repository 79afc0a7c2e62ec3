"""Drive tcex 5.0.0's batch module and streambatch with the same calls against the emulator, and
capture exactly what each sends.

tcex is driven with its own classes, without a ThreatConnect: its ``TcSession`` (the requests
session every tcex App gets from ``tcex.session.tc``) with its ``TcAuth`` HMAC signer, pointed at
``tc.url``, and its ``Batch`` built with the arguments and defaults of the ``tcex.api.tc.v2.batch()``
factory. The only other thing tcex's Batch reads from the App's inputs is
``inputs.model.tc_temp_path`` (for its shelf files and its DEBUG folder, which stays absent so
debug mode is off), so a two-attribute stand-in replaces the App inputs. Two knobs are turned:
tcex's poll sleeps (at least 5 s, 15 s before the first job) are capped at 50 ms, and the document
upload thread is joined (``Batch.close``) before the stores are read.

The emulator logs no bodies, so :class:`BodyCapture` wraps its WSGI app and keeps every request's
raw bytes (the emulator still sees the same request).
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import threading
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Callable, Iterator

from streambatch.emulator import Emulator

# -------------------------------------------------------------------------- the content
#
# Each build function is called once with a tcex Batch and once with a streambatch Batch: the
# same code, as the issue asks ("only the import changed"). Calls a library may refuse go
# through ``calls.attempt`` so that an exception becomes a difference instead of a crash.

ADV, CAMP, INC, EMAIL, SIG, DOC = ("diff-adv-1", "diff-camp-1", "diff-inc-1", "diff-email-1", "diff-sig-1",
                                   "diff-doc:ü 1")  # the Document's xid goes into the upload path
DOC_CONTENT = "Contenu du document — été, Кириллица, 文档内容, emoji 🚀\n"  # str, as in the guide: sent as UTF-8
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EDGE_SHA256 = "ab12" * 16
URL = "https://bad.example.com/path/%C3%BCn%C3%AF?q=1"

NAMES = {
    "latin": "Adversaire Élan Ñandú",
    "cyrillic": "Кампания Зимний Шторм",
    "cjk": "事件 サイバー攻撃 사건",
    "emoji": "Phish 🎣 Mail",
}


class Calls:
    """Outcomes of the calls a library may refuse: label -> 'ok' or the exception's type."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def attempt(self, label: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - any refusal is a difference to report
            self.outcomes[label] = f"raises {type(exc).__name__}"
        else:
            self.outcomes[label] = "ok"


def build_create(batch: Any, calls: Calls) -> None:
    """The Create job of the issue, written against the guide's interface 1 (keyword arguments
    where the two signatures differ in position): five group types with attributes, tags and
    labels, every built-in indicator type, associations (indicator -> group, group -> group, one
    top-level entry), and a Document whose content is uploaded after the job; names, tags and
    attribute values in several scripts."""
    adv = batch.adversary(NAMES["latin"], xid=ADV)
    adv.attribute("Description", "Description : été, naïve façade", True)
    adv.attribute("Source", "Источник данных 数据来源", source="feed ünïcode")
    adv.tag("Étiquette française")
    adv.tag("Тег")
    adv.tag("标签")
    adv.tag("fire 🔥")
    label = adv.security_label("Équipe Rouge 🔴")  # a new label: its colour and description are stored
    label.color = "FFC000"
    label.description = "Étiquette de l'équipe — красная команда"
    adv.security_label("TLP:AMBER")

    camp = batch.campaign(NAMES["cyrillic"], first_seen="2024-01-02T03:04:05Z", xid=CAMP)
    camp.attribute("Description", "Описание кампании", True)
    camp.tag("Кампания")

    inc = batch.incident(NAMES["cjk"], event_date="2024-08-04T00:00:00Z", status="Open", xid=INC)
    inc.attribute("Description", "インシデントの説明 🚨")
    inc.tag("事件")
    inc.security_label("TLP:AMBER")
    inc.association(ADV)  # group -> group
    inc.association(CAMP)

    email = batch.email(NAMES["emoji"], subject="Sujet : réunion 📅", header="From: Zoë <zoe@example.com>",
                        body="Тело письма, 本文, 🐍", from_addr="zoe@example.com", to_addr="soc@example.com",
                        xid=EMAIL)
    email.tag("phishing 🎣")

    sig = batch.signature("Signature Ŝ", file_name="rule.yar", file_type="YARA",
                          file_text="rule ünï { strings: $a = \"кириллица\" condition: $a }", xid=SIG)
    sig.association(ADV)

    doc = batch.document("Dokument Ü 文件", file_name="notes-ü.txt", file_content=DOC_CONTENT, xid=DOC)
    doc.attribute("Description", "Document décrit")
    doc.tag("документ")
    doc.association(ADV)

    a4 = batch.address("192.0.2.10", rating=4, confidence=80, xid="diff-addr-4")
    a4.tag("adresse ü")
    a4.association(ADV)  # indicator -> group
    batch.address("2001:db8::1", xid="diff-addr-6").association(INC)
    em = batch.email_address("analyst@example.com", xid="diff-email-addr")
    em.attribute("Description", "Адрес аналитика")
    f = batch.file(md5=MD5, sha1=SHA1, sha256=SHA256, size=1024, xid="diff-file-1")
    f.occurrence(file_name="drop1-ü.exe", path="C:\\Temp\\Ünï\\", date="2017-02-02 01:02:03")
    f.association(ADV)
    h = batch.host("bad.example.com", dns_active=True, whois_active=True, rating=5.0, xid="diff-host-1")
    h.attribute("Description", "Хост 主机 🖥️", True)
    h.tag("host-tag")
    h.security_label("TLP:AMBER")
    h.association(CAMP)
    batch.url(URL, xid="diff-url-1").association(INC)
    batch.asn("ASN64512", xid="diff-asn-1")
    batch.cidr("198.51.100.0/24", xid="diff-cidr-1")
    batch.mutex("Global\\Мьютекс_🔒")  # no xid: each library makes its own
    batch.registry_key("HKEY_LOCAL_MACHINE\\Software\\Ключ", "Значение", "REG_SZ", xid="diff-reg-1")
    batch.user_agent("Mozilla/5.0 (日本語; Ünï) 🦊", xid="diff-ua-1")
    batch.add_association({"ref_1": SIG, "ref_2": URL, "type_2": "URL"})  # group -> indicator, top level


def build_edge(batch: Any, calls: Calls) -> None:
    """Beyond the issue's list, in the same Create job: values each library may canonicalize,
    interfaces 2 and 3, defaults (no xid, duplicates) and values tcex drops."""
    ev = batch.group("Event", "Événement 🗓", xid="edge-event-1")  # interface 2
    ev.add_key_value("eventDate", "2024-08-04T00:00:00+02:00")  # an offset
    ev.add_key_value("status", "Needs Review")
    ev.attribute("Description", "twice")
    ev.attribute("Description", "twice")  # tcex keeps one (unique=True)
    ev.tag("twice")
    ev.tag("twice")
    calls.attempt("tag('') (tcex drops empty tags)", lambda: ev.tag(""))
    calls.attempt("attribute('Source', '') (tcex drops empty values)", lambda: ev.attribute("Source", ""))
    batch.campaign("Campaign date only", first_seen="2024-01-02", xid="edge-camp-2")
    batch.adversary("Adversary without xid")  # tcex: a random uuid4
    batch.indicator("Host", "iface2.example.com", rating="2.5", confidence="40", xid="edge-host-2")  # interface 2
    batch.host("UPPER.Example.COM", xid="edge-host-upper")
    batch.file(sha256=EDGE_SHA256.upper(), xid="edge-file-upper")
    batch.address("2001:0DB8:0000:0000:0000:0000:0000:0002", xid="edge-addr-6-long")
    batch.add_indicator({"type": "ASN", "summary": "ASN65000", "xid": "edge-asn-3"})  # interface 3, custom type
    batch.add_indicator({"type": "Host", "summary": "dict.example.com", "xid": "edge-host-3", "dnsActive": True})
    batch.add_group({"type": "Threat", "name": "Menace Ŧ", "xid": "edge-threat-3", "tag": [{"name": "dict"}]})


def build_delete(batch: Any, calls: Calls) -> None:
    """The Delete job: one group and two indicators of the Create job."""
    batch.adversary(NAMES["latin"], xid=ADV)
    batch.host("bad.example.com", xid="diff-host-1")
    batch.registry_key("HKEY_LOCAL_MACHINE\\Software\\Ключ", "Значение", "REG_SZ", xid="diff-reg-1")


def build_errors(batch: Any, calls: Calls) -> None:
    """A small Create job the server partly refuses (a link to a group that does not exist):
    processed inline, with an error."""
    batch.host("linked.example.com", xid="err-host-1").association("err-no-such-group")
    batch.tool("Outil", xid="err-tool-1")


PHASES: tuple[tuple[str, str, tuple[Callable[[Any, Calls], None], ...]], ...] = (
    ("create", "Create", (build_create, build_edge)),
    ("delete", "Delete", (build_delete,)),
    ("errors", "Create", (build_errors,)),
)


# ------------------------------------------------------------------------ raw capture

class BodyCapture:
    """A WSGI wrapper around the emulator's app that keeps each request's raw body (and what
    the emulator needs, by delegation)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.raw: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated"):
            body = stream.read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            headers["Content-Length"] = environ["CONTENT_LENGTH"]
        if environ.get("PATH_INFO", "").startswith("/_emulator/"):
            return self._app(environ, start_response)
        # the path as sent (PATH_INFO is decoded): percent-encoding is part of what is compared
        raw_path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ["PATH_INFO"]).split("?")[0]
        entry = {"method": environ["REQUEST_METHOD"], "path": raw_path,
                 "query": environ.get("QUERY_STRING", ""), "headers": headers, "body": body, "status": None}
        with self._lock:
            self.raw.append(entry)

        def recording_start_response(status: str, *args: Any) -> Any:
            entry["status"] = int(status.split()[0])
            return start_response(status, *args)

        return self._app(environ, recording_start_response)


@contextmanager
def captured_emulator(db: Path, **kwargs: Any) -> Iterator[tuple[Emulator, BodyCapture]]:
    tc = Emulator(db=db, **kwargs)
    capture = BodyCapture(tc.app)
    tc.app = capture  # type: ignore[assignment]  # the server thread is made with it at start()
    tc.start()
    try:
        yield tc, capture
    finally:
        tc.close()


# ----------------------------------------------------------------------- parsing bodies

def parse_multipart(content_type: str, body: bytes) -> list[dict[str, Any]]:
    """The parts of a multipart/form-data body, in order: name, filename, the
    Content-Disposition with its quoted values hidden, the other part headers (names
    lower-cased) and the content bytes."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    assert m, content_type
    pieces = body.split(b"--" + m.group(1).encode())
    assert pieces[0] == b"" and pieces[-1] in (b"--\r\n", b"--"), (pieces[0][:20], pieces[-1][:20])
    parts = []
    for piece in pieces[1:-1]:
        assert piece.startswith(b"\r\n") and piece.endswith(b"\r\n"), piece[:40]
        head, _, content = piece[2:-2].partition(b"\r\n\r\n")
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("utf-8").partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.pop("content-disposition", "")
        name = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        parts.append({"name": name and name.group(1), "filename": filename and filename.group(1),
                      "disposition": re.sub(r'"[^"]*"', '"…"', disposition), "headers": headers,
                      "content": content})
    return parts


class _Obj(list):
    """A JSON object as its (key, value) pairs, so key order is kept."""

    def keys(self) -> list[str]:  # type: ignore[override]
        return [k for k, _ in self]

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self:
            if k == key:
                return v
        return default


def ordered_json(raw: bytes) -> Any:
    return json.loads(raw, object_pairs_hook=_Obj)


# --------------------------------------------------------------------------- the runs

def import_tcex() -> None:
    """Import tcex's batch module, undoing the one process-wide change importing tcex makes:
    ``logging.setLoggerClass(TraceLogger)`` (its ``findCaller`` walks ``inspect.stack()``), which
    would make every logger created afterwards in this test session a TraceLogger. tcex's own
    logger stays as tcex set it, but quiet."""
    import logging

    before = logging.getLoggerClass()
    import tcex.api.tc.v2.batch.batch  # noqa: F401

    logging.setLoggerClass(before)
    logging.getLogger("tcex").setLevel(logging.WARNING)


@contextmanager
def tcex_fast_polls() -> Iterator[None]:
    """tcex sleeps at least 5 s before each poll (15 s when it cannot size the job): cap its
    sleeps at 50 ms while it runs (in tcex's batch_submit module only)."""
    from tcex.api.tc.v2.batch import batch_submit

    real = batch_submit.time
    batch_submit.time = types.SimpleNamespace(  # type: ignore[attr-defined]
        sleep=lambda s: time.sleep(min(s, 0.05)), time=time.time, monotonic=time.monotonic)
    try:
        yield
    finally:
        batch_submit.time = real  # type: ignore[attr-defined]


def tcex_batch(tc: Emulator, temp: Path, action: str = "Create") -> Any:
    """tcex's Batch, as ``tcex.api.tc.v2.batch(owner, action)`` returns it in an App whose
    TC_API_PATH / TC_API_ACCESS_ID / TC_API_SECRET_KEY point at the emulator."""
    from tcex.api.tc.v2.batch.batch import Batch as TcexBatch
    from tcex.input.field_type.sensitive import Sensitive
    from tcex.requests_tc.auth.tc_auth import TcAuth
    from tcex.requests_tc.tc_session import TcSession

    temp.mkdir(parents=True, exist_ok=True)
    # what tcex.requests_tc.RequestsTc.get_session() builds from tc_api_path, tc_api_access_id
    # and tc_api_secret_key (no token: HMAC; the App's user agent; proxies off; verify on)
    session = TcSession(auth=TcAuth(tc_api_access_id=tc.access_id, tc_api_secret_key=Sensitive(tc.secret_key)),
                        base_url=tc.url, user_agent={"User-Agent": "TcEx/5.0.0, External App/0.0.0"})
    inputs = types.SimpleNamespace(model=types.SimpleNamespace(tc_temp_path=temp))
    # the defaults of tcex.api.tc.v2.batch(): attribute_write_type='Replace', halt_on_error=False,
    # playbook_triggers_enabled=False, tag_write_type='Replace', security_label_write_type='Replace'
    return TcexBatch(inputs, session, tc.owner, action, "Replace", False, False, "Replace", "Replace")


def streambatch_batch(tc: Emulator, path: Path, action: str = "Create") -> Any:
    from streambatch import Batch
    from streambatch.client import ApiConfig, Client

    return Batch(tc.owner, path, client=Client(ApiConfig(tc.url, tc.access_id, tc.secret_key)),
                 poll_interval=0.02, action=action)


@dataclass
class Run:
    """What one library sent, got back and left in its emulator, per phase."""

    name: str
    requests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, str]] = field(default_factory=dict)
    access_id: str = ""


def run(name: str, work: Path) -> Run:
    """Every phase with ``name`` ('tcex' or 'streambatch'), one after another, against one
    fresh emulator."""
    out = Run(name)
    with captured_emulator(work / f"{name}-emulator.sqlite") as (tc, capture):
        out.access_id = tc.access_id
        jobs_before = 0
        for phase, action, builders in PHASES:
            start = len(capture.raw)
            calls = Calls()
            if name == "tcex":
                with tcex_fast_polls():
                    batch = tcex_batch(tc, work / f"tcex-{phase}", action)
                    for build in builders:
                        build(batch, calls)
                    out.results[phase] = batch.submit_all()
                    batch.close()  # joins the document upload thread
            else:
                batch = streambatch_batch(tc, work / f"streambatch-{phase}.sqlite", action)
                for build in builders:
                    build(batch, calls)
                out.results[phase] = batch.submit_all()
                batch.close()
            assert tc.wait_idle(10)
            logged = [(r["method"], r["raw_uri"]) for r in tc.requests]
            seen = [(r["method"], r["path"] + (f"?{r['query']}" if r["query"] else "")) for r in capture.raw]
            assert logged == seen, (logged, seen)  # the capture saw exactly what the emulator logged
            out.requests[phase] = capture.raw[start:]
            out.calls[phase] = calls.outcomes
            out.stores[phase] = snapshot(tc)
            out.stores[phase]["jobs"] = out.stores[phase]["jobs"][jobs_before:]  # this phase's jobs
            jobs_before += len(out.stores[phase]["jobs"])
    return out


# ---------------------------------------------------------------------- store snapshot

def _indicator_label(type_: str, summary: str) -> str:
    return f"{type_}:{summary}"


def snapshot(tc: Emulator) -> dict[str, Any]:
    """The emulator's data for the owner, keyed by identity (no database ids), with
    association lists sorted (their order is link insertion order, not data)."""
    owner = tc.owner
    groups, indicators, documents = {}, {}, {}
    for g in tc.store.groups(owner):
        g = {k: v for k, v in g.items() if k != "id"}
        g["associatedGroupXid"] = sorted(g["associatedGroupXid"])
        g["associatedIndicators"] = sorted(g["associatedIndicators"], key=lambda i: (i["indicatorType"], i["summary"]))
        groups[f"{g['type']} {mask_id(g['xid'])}"] = g
        if g["type"] in ("Document", "Report"):
            documents[g["xid"]] = tc.store.document(owner, g["xid"])
    for i in tc.store.indicators(owner):
        i = {k: v for k, v in i.items() if k != "id"}
        i["associatedGroups"] = sorted(i["associatedGroups"], key=lambda a: a["groupXid"])
        i["associatedIndicators"] = sorted(i["associatedIndicators"], key=lambda a: (a["indicatorType"], a["summary"]))
        indicators[_indicator_label(i["type"], i["summary"])] = i
    associations = []
    for a in tc.store.associations(owner):
        sides = sorted(f"group {mask_id(s['xid'])}" if s["kind"] == "group" else f"indicator {s['type']}:{s['summary']}"
                       for s in a["sides"])
        associations.append(" <-> ".join(sides) + (f" ({a['associationType']})" if a["associationType"] else ""))
    conn = sqlite3.connect(f"file:{tc.db}?mode=ro", uri=True)
    try:
        labels = {name: {"description": d, "color": c} for name, d, c in conn.execute(
            "SELECT name, description, color FROM label WHERE owner = ? ORDER BY name", (owner,))}
    finally:
        conn.close()
    jobs = [{k: j[k] for k in ("settings", "status", "mode", "records", "counters")} for j in tc.store.jobs()]
    return {"groups": groups, "indicators": indicators, "associations": sorted(associations),
            "documents": documents, "labels": labels, "jobs": jobs}


# -------------------------------------------------------------------------- comparing

_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def mask_id(value: Any) -> Any:
    """An xid made by a library (none given) by its shape: tcex's are random, streambatch's
    derived from owner, type and name or value (32 hex digits)."""
    if isinstance(value, str) and _UUID4.match(value):
        return "<random uuid4>"
    if isinstance(value, str) and _HEX32.match(value) and value != MD5:
        return "<32 hex digits>"
    return value


def _show(value: Any) -> str:
    """A value as a difference names it: made-up xids by their shape, bytes by their size."""
    if mask_id(value) is not value:
        return mask_id(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    plain = _plain(value)
    text = json.dumps(plain, ensure_ascii=False)
    if len(text) <= 100:
        return text
    if isinstance(plain, list) and plain and all(isinstance(x, dict) for x in plain):
        keys = sorted({k for x in plain for k in x})
        return f"[{len(plain)} object(s) with keys {', '.join(keys)}]"
    return text[:97] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, _Obj):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _tname(value: Any) -> str:
    if isinstance(value, _Obj) or isinstance(value, dict):
        return "object"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "array", type(None): "null"}.get(
        type(value), type(value).__name__)


class Differ:
    """Collects differences as stable one-line keys."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def add(self, key: str, detail: str = "") -> None:
        self.found.setdefault(key, detail)

    # -- values ------------------------------------------------------------------------

    def value(self, where: str, a: Any, b: Any, key_order: list[str] | None = None, verb: str = "sends") -> None:
        """Compare a tcex value ``a`` with a streambatch value ``b`` (parsed JSON or store data).
        ``key_order``: where to note that an object's keys come in another order."""
        if _tname(a) != _tname(b):
            self.add(f"{where}: type tcex={_tname(a)} {_show(a)}, streambatch={_tname(b)} {_show(b)}")
            return
        if _tname(a) == "object":
            ak, bk = list(a.keys()), list(b.keys())
            for k in ak:
                if k not in bk:
                    self.add(f"{where}.{k}: only tcex {verb} it ({_show(a.get(k))})")
            for k in bk:
                if k not in ak:
                    self.add(f"{where}.{k}: only streambatch {verb} it ({_show(b.get(k))})")
            common_a = [k for k in ak if k in bk]
            common_b = [k for k in bk if k in ak]
            if common_a != common_b and key_order is not None:
                key_order.append(where)
            for k in common_a:
                self.value(f"{where}.{k}", a.get(k), b.get(k), key_order, verb)
        elif isinstance(a, list):
            if len(a) != len(b):
                self.add(f"{where}: tcex {_show(a)}, streambatch {_show(b)}")
            else:
                for n, (x, y) in enumerate(zip(a, b)):
                    self.value(f"{where}[{n}]", x, y, key_order, verb)
        elif a != b:
            self.add(f"{where}: value tcex={_show(a)}, streambatch={_show(b)}")

    # -- batch JSON --------------------------------------------------------------------

    def json_body(self, where: str, a_raw: bytes, b_raw: bytes) -> None:
        if a_raw.isascii() != b_raw.isascii():
            how = {True: "pure ASCII (\\uXXXX escapes)", False: "raw UTF-8"}
            self.add(f"{where}: non-ASCII text: tcex sends {how[a_raw.isascii()]}, "
                     f"streambatch {how[b_raw.isascii()]}")
        a_style, b_style = _json_style(a_raw), _json_style(b_raw)
        if a_style != b_style:
            self.add(f"{where}: JSON whitespace: tcex {a_style}, streambatch {b_style}")
        a, b = ordered_json(a_raw), ordered_json(b_raw)
        if _tname(a) != "object" or _tname(b) != "object":
            self.value(where, a, b)
            return
        settings = not {"group", "indicator", "association"} & set(a.keys())
        if a.keys() != b.keys() and not settings:
            if sorted(a.keys()) == sorted(b.keys()):
                self.add(f"{where}: top-level key order: tcex {a.keys()}, streambatch {b.keys()}")
            else:
                for k in a.keys():
                    if k not in b.keys():
                        self.add(f"{where}: top-level key {k!r}: only tcex sends it ({_show(a.get(k))})")
                for k in b.keys():
                    if k not in a.keys():
                        self.add(f"{where}: top-level key {k!r}: only streambatch sends it ({_show(b.get(k))})")
                common_a = [k for k in a.keys() if k in b.keys()]
                if common_a != [k for k in b.keys() if k in a.keys()]:
                    self.add(f"{where}: top-level key order: tcex {a.keys()}, streambatch {b.keys()}")
        if settings:
            order: list[str] = []
            self.value(where, a, b, order)
            if order:
                self.add(f"{where}: settings keys come in another order", f"tcex {a.keys()}, streambatch {b.keys()}")
            return
        for array, ident in (("group", _group_id), ("indicator", _indicator_id), ("association", _assoc_id)):
            self.items(f"{where}: {array}", a.get(array, []), b.get(array, []), ident)

    def items(self, where: str, a: list, b: list, ident: Callable[[Any], str]) -> None:
        a_ids, b_ids = [ident(x) for x in a], [ident(x) for x in b]
        for x in a_ids:
            if x not in b_ids:
                self.add(f"{where}[{x}]: only tcex sends it")
        for x in b_ids:
            if x not in a_ids:
                self.add(f"{where}[{x}]: only streambatch sends it")
        common_a = [x for x in a_ids if x in b_ids]
        common_b = [x for x in b_ids if x in a_ids]
        if common_a != common_b:
            self.add(f"{where}[] order: tcex {common_a}, streambatch {common_b}")
        by_b = dict(zip(b_ids, b))
        order: list[str] = []
        for x, item in zip(a_ids, a):
            if x in by_b:
                self.value(f"{where}[{x}]", item, by_b[x], order)
        if order:
            self.add(f"{where}[*]: keys within items come in another order ({len(order)} objects)")

    # -- requests ----------------------------------------------------------------------

    def requests(self, phase: str, ta: list[dict], sa: list[dict], t_access: str, s_access: str) -> None:
        tk, sk = _shapes(ta), _shapes(sa)
        t_reqs, s_reqs = _collapse(ta), _collapse(sa)
        matcher = SequenceMatcher(None, tk, sk, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                for t, s, shape in zip(t_reqs[i1:i2], s_reqs[j1:j2], tk[i1:i2]):
                    self.request(f"{phase}: {shape}", t, s, t_access, s_access)
                continue
            for shape in tk[i1:i2]:
                self.add(f"{phase}: request {shape}: only tcex sends it")
            for shape in sk[j1:j2]:
                self.add(f"{phase}: request {shape}: only streambatch sends it")

    def request(self, where: str, t: dict, s: dict, t_access: str, s_access: str) -> None:
        if t["query"] != s["query"]:
            self.add(f"{where}: query string tcex={t['query']!r}, streambatch={s['query']!r}")
        if t["status"] != s["status"]:
            self.add(f"{where}: response status tcex={t['status']}, streambatch={s['status']}")
        th, sh = _headers(t, t_access), _headers(s, s_access)
        for name in sorted(set(th) | set(sh)):
            if th.get(name) != sh.get(name):
                self.add(f"{where}: header {name}: tcex={th.get(name)!r}, streambatch={sh.get(name)!r}")
        mime = (t["headers"].get("Content-Type") or "").split(";")[0].strip()
        if mime != (s["headers"].get("Content-Type") or "").split(";")[0].strip():
            return  # already a header difference; bodies are not comparable
        if mime == "multipart/form-data":
            tp = parse_multipart(t["headers"]["Content-Type"], t["body"])
            sp = parse_multipart(s["headers"]["Content-Type"], s["body"])
            if _layout(tp) != _layout(sp):
                self.add(f"{where}: multipart layout: tcex {_layout(tp)}, streambatch {_layout(sp)}")
            s_parts = {p["name"]: p for p in sp}
            for part in tp:
                if part["name"] in s_parts:
                    self.json_body(f"{where} part {part['name']}", part["content"],
                                   s_parts[part["name"]]["content"])
        elif "/groups/" in where:
            if t["body"] != s["body"]:
                self.add(f"{where}: file content differs: tcex {_show(t['body'])}, streambatch {_show(s['body'])}")
        elif t["body"] or s["body"]:
            self.json_body(f"{where} body", t["body"], s["body"])

    # -- stores ------------------------------------------------------------------------

    def stores(self, where: str, a: dict, b: dict) -> None:
        for kind in ("groups", "indicators"):
            for label in a[kind]:
                if label not in b[kind]:
                    self.add(f"{where} {kind}[{label}]: only in tcex's store")
            for label in b[kind]:
                if label not in a[kind]:
                    self.add(f"{where} {kind}[{label}]: only in streambatch's store")
            for label in a[kind]:
                if label in b[kind]:
                    self.value(f"{where} {kind}[{label}]", a[kind][label], b[kind][label], verb="has")
        for link in a["associations"]:
            if link not in b["associations"]:
                self.add(f"{where} association {link}: only in tcex's store")
        for link in b["associations"]:
            if link not in a["associations"]:
                self.add(f"{where} association {link}: only in streambatch's store")
        self.value(f"{where} documents", a["documents"], b["documents"], verb="has")
        self.value(f"{where} labels", a["labels"], b["labels"], verb="has")

    def jobs(self, where: str, a: list[dict], b: list[dict]) -> None:
        """The jobs each run created on the server in one phase."""
        kinds = lambda jobs: [f"{j['settings']['action']} ({j['mode']})" for j in jobs]  # noqa: E731
        if len(a) != len(b):
            self.add(f"{where}: tcex made {len(a)} job(s) {kinds(a)}, streambatch {len(b)} {kinds(b)}")
        for n, (x, y) in enumerate(zip(a, b)):
            self.value(f"{where}[{n}]", x, y, verb="has")

    def calls(self, where: str, a: dict[str, str], b: dict[str, str]) -> None:
        for label in sorted(set(a) | set(b)):
            if a.get(label) != b.get(label):
                self.add(f"{where} {label}: tcex {a.get(label)}, streambatch {b.get(label)}")


def _json_style(raw: bytes) -> str:
    obj = json.loads(raw)
    for style, kw in (("with ', ' and ': ' separators", {}), ("compact", {"separators": (",", ":")})):
        for ascii_ in (True, False):
            if json.dumps(obj, ensure_ascii=ascii_, **kw).encode() == raw:
                return style
    return "other"


def _group_id(item: Any) -> str:
    return f"{item.get('type')} {mask_id(item.get('xid'))}"


def _indicator_id(item: Any) -> str:
    return _indicator_label(item.get("type"), item.get("summary"))


def _layout(parts: list[dict[str, Any]]) -> list[tuple]:
    return [(p["name"], p["filename"], p["disposition"], sorted(p["headers"].items())) for p in parts]


def _assoc_id(item: Any) -> str:
    """An association entry by its two sides, in either order."""
    sides = sorted(" ".join(str(item.get(f"{k}_{n}")) for k in ("type", "ref", "id")
                            if item.get(f"{k}_{n}") is not None) for n in (1, 2))
    return " <-> ".join(sides) + (f" ({item.get('associationType')})" if item.get("associationType") else "")


def _template(req: dict) -> str:
    path = req["path"][4:] if req["path"].startswith("/api/") else req["path"]
    return f"{req['method']} {re.sub(r'^/v2/batch/[0-9]+', '/v2/batch/{id}', path)}"


def _collapse(reqs: list[dict]) -> list[dict]:
    """Requests with runs of the same status poll kept once (how many polls a job takes is
    timing)."""
    out: list[dict] = []
    for r in reqs:
        if out and _template(r) == "GET /v2/batch/{id}" and out[-1]["method"] == "GET" and out[-1]["path"] == r["path"]:
            continue
        out.append(r)
    return out


def _shapes(reqs: list[dict]) -> list[str]:
    return [_template(r) for r in _collapse(reqs)]


def _headers(req: dict, access_id: str) -> dict[str, str]:
    """The headers that matter, normalized: Content-Type (boundary hidden), Content-Encoding,
    Transfer-Encoding, body framing, the Authorization scheme and key (the emulator checked the
    signature) and whether a Timestamp is sent."""
    h = req["headers"]
    out = {}
    if h.get("Content-Type"):
        out["Content-Type"] = re.sub(r"boundary=[^;]+", "boundary=<boundary>", h["Content-Type"])
    for name in ("Content-Encoding", "Transfer-Encoding"):
        if h.get(name):
            out[name] = h[name]
    out["framing"] = "Content-Length" if h.get("Content-Length") else (
        "chunked" if "chunked" in h.get("Transfer-Encoding", "") else "no body")
    auth = h.get("Authorization", "")
    scheme, _, cred = auth.partition(" ")
    out["Authorization"] = f"{scheme} <access id>:<signature>" if cred.split(":")[0] == access_id else auth[:20]
    out["Timestamp"] = "epoch seconds" if re.fullmatch(r"[0-9]{10}", h.get("Timestamp", "")) else \
        repr(h.get("Timestamp"))
    return out


def compare(tcex_run: Run, sb_run: Run) -> dict[str, str]:
    """Every difference between the two runs, as stable keys (with details as values)."""
    d = Differ()
    store_seen: set[str] = set()
    for phase, _, _ in PHASES:
        d.calls(f"{phase}: call", tcex_run.calls[phase], sb_run.calls[phase])
        d.requests(phase, tcex_run.requests[phase], sb_run.requests[phase], tcex_run.access_id, sb_run.access_id)
        d.jobs(f"{phase}: jobs", tcex_run.stores[phase]["jobs"], sb_run.stores[phase]["jobs"])
        d.value(f"{phase}: submit_all() result", _plain(tcex_run.results[phase]), _plain(sb_run.results[phase]),
                verb="returns")
        # the stores are compared after every phase; a difference still there from an earlier
        # phase is listed once, under the phase that made it
        stores = Differ()
        stores.stores("store", tcex_run.stores[phase], sb_run.stores[phase])
        for key, detail in stores.found.items():
            if key not in store_seen:
                store_seen.add(key)
                d.add(f"{phase}: {key}", detail)
    return d.found
