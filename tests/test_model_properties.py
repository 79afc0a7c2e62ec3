"""Property tests: xids are deterministic and collision-free, and every group and indicator type
round-trips dict -> object -> dict, with normalize() and the object path agreeing."""

from __future__ import annotations

import ipaddress
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambatch import Batch, generate_xid
from streambatch import validate as v
from streambatch.model import normalize, parse
from streambatch.types import default_registry

REGISTRY = default_registry()
GROUP_SPECS = [s for s in REGISTRY if s.kind == "group"]
INDICATOR_SPECS = [s for s in REGISTRY if s.kind == "indicator"]

PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# tests that open SQLite job files cost a few milliseconds per example
BATCH_PROPS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- xids ---------------------------------------------------------------------------------------

texts = st.text(max_size=20)
value_lists = st.lists(st.one_of(texts, st.integers(-10**6, 10**6)), max_size=5)


@PROPS
@given(value_lists)
def test_generate_xid_is_deterministic(values):
    x = generate_xid(values)
    assert x == generate_xid(list(values))
    assert x == generate_xid(tuple(values))
    assert x == generate_xid([str(i) for i in values])  # 1 and '1' are the same value
    assert len(x) == 32 and int(x, 16) >= 0


@PROPS
@given(texts)
def test_a_string_is_a_one_element_list(text):
    assert generate_xid(text) == generate_xid([text])


@PROPS
@given(st.sets(st.lists(texts, max_size=4).map(tuple), min_size=2, max_size=40))
def test_distinct_inputs_give_distinct_xids(inputs):
    xids = {generate_xid(list(t)) for t in inputs}
    assert len(xids) == len(inputs)


@PROPS
@given(st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=4))
def test_joining_values_changes_the_xid(parts):
    assert generate_xid(parts) != generate_xid(["-".join(parts)])
    assert generate_xid(parts) != generate_xid(["".join(parts)])
    assert generate_xid(parts) != generate_xid([",".join(parts)])


def test_known_separation_cases():
    assert generate_xid(["a-b"]) != generate_xid(["a", "b"])
    assert generate_xid(["a", "b"]) != generate_xid(["ab"])


# -- value strategies, one per type -----------------------------------------------------------

# Free text: any printable text that is not blank; the check trims it.
free_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(
    lambda s: s.strip())
padded = st.sampled_from(["", " ", "  "])


def pad(strategy):
    """Surround a value with blanks, which every check trims."""
    return st.tuples(padded, strategy, padded).map("".join)


def random_case(s: str, draw) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in s)


label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
tld = st.from_regex(r"[a-z]{2,6}", fullmatch=True)
hostnames = st.builds(lambda labels, t: ".".join([*labels, t]), st.lists(label, min_size=1, max_size=3), tld)


@st.composite
def file_values(draw):
    chosen = draw(st.lists(st.sampled_from([("md5", 32), ("sha1", 40), ("sha256", 64)]), min_size=1,
                           max_size=3, unique=True))
    return {k: random_case(draw(st.text("0123456789abcdef", min_size=n, max_size=n)), draw) for k, n in chosen}


@st.composite
def urls(draw):
    scheme = draw(st.sampled_from(["http", "https", "ftp", "HTTP"]))
    host = random_case(draw(hostnames), draw)
    port = draw(st.sampled_from(["", ":8080"]))
    path = draw(st.from_regex(r"(/[A-Za-z0-9._~-]{0,8}){0,3}(\?[a-z]=[A-Za-z0-9]{0,4})?", fullmatch=True))
    return f"{scheme}://{host}{port}{path}"


emails = st.builds(lambda local, host: f"{local}@{host}", st.from_regex(r"[A-Za-z0-9_+-]{1,10}", fullmatch=True),
                   hostnames)
# no ' : ' inside registry values: see test_validation for that case
reg_path = st.from_regex(r"[A-Za-z0-9 _.\\-]{0,20}", fullmatch=True).filter(lambda s: " : " not in s)
registry_keys = st.builds(lambda hive, rest: f"{hive}\\{rest}".rstrip(), st.sampled_from(v.REGISTRY_HIVES), reg_path)
registry_value_names = st.one_of(st.just(" "), st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True))
no_sep_text = free_text.filter(lambda s: ":" not in s)

INDICATOR_VALUES = {
    "Address": st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(
        lambda ip: ip.exploded if ip.version == 6 else str(ip)).map(lambda s: {"ip": s}),
    "ASN": st.integers(0, 4294967295).map(lambda n: {"AS Number": f"asn{n}"}),
    "CIDR": st.one_of(st.tuples(st.ip_addresses(v=4), st.integers(0, 32)),
                      st.tuples(st.ip_addresses(v=6), st.integers(0, 128))).map(
        lambda t: {"Block": str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))}),
    "EmailAddress": emails.map(lambda e: {"address": e}),
    "File": file_values(),
    "Host": hostnames.map(lambda h: {"hostName": h.upper()}),
    "Mutex": free_text.map(lambda t: {"Mutex": t}),
    "Registry Key": st.builds(lambda k, n, t: {"Key Name": k, "Value Name": n, "Value Type": t},
                              registry_keys, registry_value_names, st.sampled_from(v.REGISTRY_VALUE_TYPES)),
    "URL": urls().map(lambda u: {"text": u}),
    "User Agent": free_text.map(lambda t: {"User Agent String": t}),
}


def indicator_values(spec):
    if spec.name in INDICATOR_VALUES:
        return INDICATOR_VALUES[spec.name]
    assert spec.custom, f"no strategy for built-in type {spec.name}"
    return st.lists(no_sep_text, min_size=1, max_size=len(spec.values)).map(
        lambda vals: {slot.key: val for slot, val in zip(spec.values, vals)})


def summary_from(spec, values) -> str:
    if spec.is_file:
        return " : ".join(values[k] for k in ("md5", "sha1", "sha256") if k in values)
    return " : ".join(values[s.key] for s in spec.values if s.key in values)


# -- field strategies, from the types table -----------------------------------------------------

_ZONES = st.sampled_from([timezone.utc, timezone(timedelta(hours=-6)), timezone(timedelta(hours=5, minutes=30))])
dates = st.one_of(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1)),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1), timezones=_ZONES),
).map(lambda d: d.replace(microsecond=0)).flatmap(lambda d: st.sampled_from([d.isoformat(), d.isoformat(sep=" "), d]))


def field_strategy(field):
    check = field.check
    if hasattr(check, "options"):
        return st.sampled_from(check.options).flatmap(lambda o: st.sampled_from([o, o.lower(), o.upper()]))
    if check is v.date:
        return dates
    if check is v.boolean:
        return st.sampled_from([True, False, "true", "False", 0, 1])
    if check is v.integer:
        return st.integers(0, 10**9).flatmap(lambda n: st.sampled_from([n, str(n)]))
    if check is v.rating:
        return st.one_of(st.integers(0, 5), st.floats(0, 5, allow_nan=False), st.sampled_from(["5.0", "2.5"]))
    if check is v.confidence:
        return st.integers(0, 100).flatmap(lambda n: st.sampled_from([n, str(n), float(n)]))
    if check in (v.text, v.long_text, v.large_text):  # single-line and multi-line text
        return pad(free_text)
    raise AssertionError(f"no strategy for field {field.key}")


@st.composite
def fields_of(draw, spec):
    out = {}
    for field in spec.fields:
        if field.key in spec.required or draw(st.integers(0, 3)) == 0:
            out[field.key] = draw(field_strategy(field))
    # cross-field rules (spec 5.6)
    if "malware" in out and v.boolean(out["malware"]):
        out.setdefault("password", draw(free_text))
    if "insights" in out:
        out.setdefault("aiProvider", draw(free_text))
    return out


# -- metadata strategies -------------------------------------------------------------------------

attr_types = st.sampled_from(["Description", "Source", "Additional Analysis and Context", "Custom Note"])
label_dicts = st.builds(
    lambda name, color, desc: {"name": name, **({"color": color} if color else {}),
                               **({"description": desc} if desc else {})},
    st.sampled_from(["TLP:AMBER", "TLP:GREEN", "My Label"]),
    st.one_of(st.none(), st.from_regex(r"[0-9A-Fa-f]{6}", fullmatch=True)),
    st.one_of(st.none(), free_text),
)
attribute_dicts = st.builds(
    lambda t, val, disp, src, labels: {"type": t, "value": val, **({"displayed": disp} if disp is not None else {}),
                                       **({"source": src} if src else {}),
                                       **({"securityLabel": labels} if labels else {})},
    attr_types, pad(free_text), st.one_of(st.none(), st.booleans()), st.one_of(st.none(), free_text),
    st.lists(label_dicts, max_size=2),
)
tags = st.lists(free_text.filter(lambda s: len(s.strip()) <= 128).map(lambda s: {"name": s}), max_size=3)
group_xids = st.lists(st.from_regex(r"[a-z0-9:-]{1,20}", fullmatch=True), max_size=3)


@st.composite
def indicator_refs(draw):
    spec = draw(st.sampled_from(INDICATOR_SPECS))
    return {"summary": summary_from(spec, draw(indicator_values(spec))), "indicatorType": spec.name}


occurrences = st.builds(
    lambda fn, path, date: {k: val for k, val in (("fileName", fn), ("path", path), ("date", date)) if val},
    st.one_of(st.none(), free_text), st.one_of(st.none(), st.sampled_from(["C:\\test\\", "/tmp/x"])),
    st.one_of(st.none(), dates.map(str)),
).filter(bool)


@st.composite
def metadata(draw, spec):
    out = {}
    if draw(st.booleans()):
        # one attribute per (type, value): a raw duplicate is dropped whole (first wins), while the
        # object path returns the first one, so later calls would modify it
        out["attribute"] = draw(st.lists(attribute_dicts, min_size=1, max_size=3,
                                         unique_by=lambda a: (a["type"], a["value"].strip())))
    if draw(st.booleans()):
        out["tag"] = draw(tags)
    if draw(st.booleans()):
        out["securityLabel"] = draw(st.lists(label_dicts, min_size=1, max_size=3))
    xids = draw(group_xids)
    if xids:
        if spec.kind == "group":
            out["associatedGroupXid"] = xids
        else:
            out["associatedGroups"] = [{"groupXid": x} for x in xids]
    if draw(st.booleans()):
        out["associatedIndicators"] = draw(st.lists(indicator_refs(), min_size=1, max_size=2))
    if spec.is_file and draw(st.booleans()):
        out["fileOccurrence"] = draw(st.lists(occurrences, min_size=1, max_size=3))
    return out


@st.composite
def raw_groups(draw, spec=None):
    spec = spec or draw(st.sampled_from(GROUP_SPECS))
    raw = {"type": draw(st.sampled_from([spec.name, spec.name.lower()])),
           "name": draw(pad(free_text.filter(lambda s: len(s.strip()) <= 100))),
           "xid": draw(st.from_regex(r"[A-Za-z0-9:_-]{1,40}", fullmatch=True)),
           **draw(fields_of(spec)), **draw(metadata(spec))}
    if spec.has_file and draw(st.booleans()):
        raw["fileContent"] = draw(st.one_of(free_text, st.binary(max_size=20)))
    return spec, raw


@st.composite
def raw_indicators(draw, spec=None):
    spec = spec or draw(st.sampled_from(INDICATOR_SPECS))
    values = draw(indicator_values(spec))
    raw = {"type": draw(st.sampled_from([spec.name, spec.name.upper()])),
           "xid": draw(st.from_regex(r"[A-Za-z0-9:_-]{1,40}", fullmatch=True)),
           **draw(fields_of(spec)), **draw(metadata(spec))}
    if draw(st.booleans()):
        raw["summary"] = summary_from(spec, values)
    else:
        raw.update(values)
    return spec, raw


records = st.one_of(raw_groups(), raw_indicators())


def _batch(tmp: str, name: str = "job.sqlite", owner: str = "MyOrg") -> Batch:
    return Batch(owner, Path(tmp) / name)


# -- round trips -----------------------------------------------------------------------------------


@PROPS
@given(records)
def test_parse_is_idempotent_and_matches_normalize(item):
    spec, raw = item
    rec = parse(REGISTRY, raw)
    data = rec.data
    assert data["type"] == spec.name
    assert "fileContent" not in data
    # dict -> object -> dict -> object -> dict is stable
    assert parse(REGISTRY, data).data == data
    # normalize gives the same dict as the object path, and keeps the content apart
    nspec, ndata, content = normalize(REGISTRY, raw)
    assert nspec is spec
    assert ndata == data
    assert content == raw.get("fileContent")
    if spec.kind == "group":
        assert rec.file_content == raw.get("fileContent")


@BATCH_PROPS
@given(records)
def test_batch_add_is_idempotent(item):
    spec, raw = item
    with tempfile.TemporaryDirectory() as tmp:
        with _batch(tmp) as first, _batch(tmp, "second.sqlite") as second:
            add = first.add_group if spec.kind == "group" else first.add_indicator
            add2 = second.add_group if spec.kind == "group" else second.add_indicator
            rec = add(raw)
            again = add2(rec.data)
            assert again.data == rec.data
            # asking the same batch again returns the record already there
            assert add(rec.data) is rec


@BATCH_PROPS
@given(st.one_of(*[raw_groups(s) for s in GROUP_SPECS]))
def test_every_group_type_survives_the_job_file(item):
    spec, raw = item
    with tempfile.TemporaryDirectory() as tmp, _batch(tmp) as batch:
        rec = batch.add_group(raw)
        data = rec.data
        batch.save(rec)
        assert batch.get(data["xid"]).data == data
        assert batch.group_len == 1


@BATCH_PROPS
@given(st.one_of(*[raw_indicators(s) for s in INDICATOR_SPECS]))
def test_every_indicator_type_survives_the_job_file(item):
    spec, raw = item
    with tempfile.TemporaryDirectory() as tmp, _batch(tmp) as batch:
        rec = batch.add_indicator(raw)
        data = rec.data
        batch.save(rec)
        assert batch.get(data["xid"]).data == data
        assert batch.indicator_len == 1


@BATCH_PROPS
@given(records)
def test_interface2_object_path_equals_normalize(item):
    """Building the same record with group()/indicator(), add_key_value() and the metadata helpers
    gives the dict normalize() gives for the raw form."""
    spec, raw = item
    _, expected, _ = normalize(REGISTRY, raw)
    fields = {f.key: raw[f.key] for f in spec.fields if f.key in raw}
    with tempfile.TemporaryDirectory() as tmp, _batch(tmp) as batch:
        if spec.kind == "group":
            rec = batch.group(raw["type"], raw["name"], xid=raw["xid"], **fields)
            for x in raw.get("associatedGroupXid", ()):
                rec.association(x)
        else:
            summary = raw.get("summary")
            if summary is None:
                summary = summary_from(spec, {k: raw[k] for k in (s.key for s in spec.values) if k in raw})
            rec = batch.indicator(raw["type"], summary, xid=raw["xid"])
            for key, value in fields.items():
                rec.add_key_value(key, value)
            for g in raw.get("associatedGroups", ()):
                rec.association(g["groupXid"])
            for occ in raw.get("fileOccurrence", ()):
                rec.occurrence(occ.get("fileName"), occ.get("path"), occ.get("date"))
        for a in raw.get("attribute", ()):
            attr = rec.attribute(a["type"], a["value"], bool(a.get("displayed")), a.get("source"))
            for lab in a.get("securityLabel", ()):
                attr.security_label(lab["name"], lab.get("description"), lab.get("color"))
        for t in raw.get("tag", ()):
            rec.tag(t["name"])
        for lab in raw.get("securityLabel", ()):
            rec.security_label(lab["name"], lab.get("description"), lab.get("color"))
        for ref in raw.get("associatedIndicators", ()):
            rec.associate_indicator(ref["indicatorType"], ref["summary"])
        assert rec.data == expected


@BATCH_PROPS
@given(st.sampled_from(INDICATOR_SPECS).flatmap(lambda s: st.tuples(st.just(s), indicator_values(s))))
def test_indicator_summary_forms_agree(item):
    """Value fields, the ' : ' summary and interface 2 all give the same canonical summary."""
    spec, values = item
    summary = summary_from(spec, values)
    by_values = parse(REGISTRY, {"type": spec.name, "xid": "x", **values}).data["summary"]
    by_summary = parse(REGISTRY, {"type": spec.name, "xid": "x", "summary": summary}).data["summary"]
    assert by_values == by_summary
    with tempfile.TemporaryDirectory() as tmp, _batch(tmp) as batch:
        assert batch.indicator(spec.name, summary).summary == by_summary
        # canonical summaries are fixed points
        assert batch.indicator(spec.name, by_summary).summary == by_summary


@BATCH_PROPS
@given(st.sampled_from(GROUP_SPECS), pad(free_text.filter(lambda s: len(s.strip()) <= 100)))
def test_interface1_method_exists_for_every_group_type(spec, name):
    kwargs = {"Email": {"subject": "subject", "header": "header", "body": "body"},
              "Signature": {"file_name": "a.yar", "file_type": "YARA", "file_text": "rule x { condition: true }"},
              }.get(spec.name, {})
    args = tuple(kwargs.values())
    with tempfile.TemporaryDirectory() as tmp, _batch(tmp) as batch, _batch(tmp, "other.sqlite") as other:
        method = getattr(batch, spec.method)
        rec = method(name, *args)
        assert rec.type == spec.name
        assert rec.data["name"] == name.strip()
        # same name again: the same record object (same deterministic xid)
        assert method(name.strip(), *args) is rec
        # and the same xid in another batch of the same owner, through interface 2
        assert other.group(spec.name.upper(), name, **kwargs).xid == rec.xid
