"""Value transforms in mappings (regex/split extraction, value maps, templates), the JMESPath
``select`` of JSON feeds and the comment styles of the text reader, through ``streambatch run``
against the emulator over HTTP; and the config checks of each (a ConfigError naming the key)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from feed_cli import OWNER, attributes, run_json, tags

from streambatch.emulator import Emulator
from streambatch.emulator.rules import DEFAULT_ATTRIBUTE_TYPES
from streambatch.feeds.config import ConfigError, FeedConfig
from streambatch.feeds.readers import read_feed


@pytest.fixture
def tc(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(db=tmp_path / "emu.sqlite", attribute_types=(*DEFAULT_ATTRIBUTE_TYPES, "Port")) as emulator:
        yield emulator


def feed(folder: Path, body: str, name: str = "feed") -> Path:
    cfg = folder / f"{name}.toml"
    cfg.write_text(f'owner = "{OWNER}"\n{body}\n[batch]\npoll_interval = 0.02\n', encoding="utf-8")
    return cfg


# -- text comment styles ------------------------------------------------------------------------

DROP = """; Spamhaus DROP List 2024/05/01 - (c) 2024 The Spamhaus Project SLU
; https://www.spamhaus.org/drop/drop.txt
; Last-Modified: Wed, 01 May 2024 09:16:42 GMT
; Expires: Wed, 01 May 2024 10:30:08 GMT
1.10.16.0/20 ; SBL256894
1.19.0.0/16 ; SBL434604
2.56.192.0/22 ; SBL459831
5.134.128.0/19 ; SBL270738
"""


def test_spamhaus_drop_lines_with_trailing_semicolon_comments(tmp_path: Path, tc: Emulator) -> None:
    (tmp_path / "drop.txt").write_text(DROP)
    cfg = feed(tmp_path, 'source = "drop.txt"\nformat = "text"\n')
    done = run_json(tc, cfg)
    assert done.code == 0, done.stderr
    assert (done.run["read"], done.run["rejected"]) == (4, 0), done.rejected
    assert tc.store.indicator(OWNER, "CIDR", "1.10.16.0/20")["summary"] == "1.10.16.0/20"
    assert tc.store.count(OWNER, "indicator") == 4


def test_comment_option_of_the_text_reader(tmp_path: Path, tc: Emulator) -> None:
    """``comment`` names the markers: a line starting with one is skipped, one after a space or
    tab cuts a trailing comment; a marker not listed is part of the value."""
    (tmp_path / "list.txt").write_text("-- generated\n1.2.3.4 -- first\n5.6.7.8 ; kept\n")
    cfg = feed(tmp_path, 'source = "list.txt"\nformat = "text"\n[options]\ncomment = ["--"]\n')
    done = run_json(tc, cfg)
    assert done.code == 0, done.stderr
    assert (done.run["read"], done.run["rejected"]) == (2, 1)
    assert [(r["line"], r["raw"]) for r in done.rejected] == [(3, "5.6.7.8 ; kept")]
    assert "cannot detect the indicator type of '5.6.7.8 ; kept'" in done.rejected[0]["reason"]
    assert tc.store.indicator(OWNER, "Address", "1.2.3.4") is not None


# -- ThreatFox: JMESPath selection and value transforms -----------------------------------------

THREATFOX = {
    "1270612": [{"ioc_value": "45.155.205.233:443", "ioc_type": "ip:port", "threat_type": "botnet_cc",
                 "malware": "win.cobalt_strike", "malware_printable": "Cobalt Strike", "malware_alias": "Agentemis",
                 "confidence_level": 75, "first_seen_utc": "2024-05-01 10:00:00", "last_seen_utc": None,
                 "reference": "", "reporter": "x", "tags": "c2,CobaltStrike", "anonymous": "0"}],
    "1270613": [{"ioc_value": "update-checker.example.net", "ioc_type": "domain", "threat_type": "botnet_cc",
                 "malware": "win.asyncrat", "malware_printable": "AsyncRAT", "malware_alias": None,
                 "confidence_level": 100, "first_seen_utc": "2024-05-01 10:01:00", "last_seen_utc": None,
                 "reference": "https://x.example.org/r", "reporter": "y", "tags": None, "anonymous": "0"}],
    "1270614": [{"ioc_value": "d41d8cd98f00b204e9800998ecf8427e", "ioc_type": "md5_hash", "threat_type": "payload",
                 "malware": "win.agent_tesla", "malware_printable": "Agent Tesla", "malware_alias": None,
                 "confidence_level": 50, "first_seen_utc": "2024-05-01 10:02:00", "last_seen_utc": None,
                 "reference": "", "reporter": "z", "tags": "exe", "anonymous": "1"},
                {"ioc_value": "http://198.51.100.7:8080/gate.php", "ioc_type": "url", "threat_type": "botnet_cc",
                 "malware": "win.agent_tesla", "malware_printable": "Agent Tesla", "malware_alias": None,
                 "confidence_level": 50, "first_seen_utc": "2024-05-01 10:02:00", "last_seen_utc": None,
                 "reference": "", "reporter": "z", "tags": "exe", "anonymous": "1"}],
    "1270615": [{"ioc_value": "evil.example.com", "ioc_type": "domain-ish", "threat_type": "botnet_cc",
                 "malware": "unknown", "malware_printable": "Unknown malware", "malware_alias": None,
                 "confidence_level": 50, "first_seen_utc": "2024-05-01 10:03:00", "last_seen_utc": None,
                 "reference": "", "reporter": "z", "tags": None, "anonymous": "0"}],
}

THREATFOX_TOML = r'''source = "threatfox.json"
format = "json"

[options]
select = "*[]"

[mapping]
value = { column = "ioc_value", regex = '^(\d{1,3}(?:\.\d{1,3}){3}):\d+$', unmatched = "keep" }
type = { column = "ioc_type", map = { "ip:port" = "Address", domain = "Host", url = "URL", md5_hash = "File", sha256_hash = "File" }, unmatched = "reject" }
confidence = "confidence_level"
first_seen = "first_seen_utc"
tags = ["tags", { template = "{malware_printable}" }]

[mapping.attributes]
Port = { column = "ioc_value", regex = ':(\d+)(?:/|$)' }
"Additional Analysis and Context" = { template = "Threat type: {threat_type}" }
'''


def test_threatfox_export_selected_and_transformed(tmp_path: Path, tc: Emulator) -> None:
    (tmp_path / "threatfox.json").write_text(json.dumps(THREATFOX, indent=1))
    cfg = feed(tmp_path, THREATFOX_TOML)
    done = run_json(tc, cfg)
    assert done.code == 0, done.stderr
    assert (done.run["read"], done.run["rejected"]) == (5, 1), done.rejected
    [bad] = done.rejected
    assert bad["line"] == 5
    assert bad["reason"] == "type: 'domain-ish' is not in the map of mapping.type (unmatched = \"reject\")"
    ip = tc.store.indicator(OWNER, "Address", "45.155.205.233")
    assert ip is not None and ip["confidence"] == 75 and ip["firstSeen"] == "2024-05-01T10:00:00Z"
    assert attributes(ip) == {"Port": ["443"], "Additional Analysis and Context": ["Threat type: botnet_cc"]}
    assert tags(ip) == {"c2", "CobaltStrike", "Cobalt Strike"}
    host = tc.store.indicator(OWNER, "Host", "update-checker.example.net")
    assert tags(host) == {"AsyncRAT"} and "Port" not in attributes(host)
    assert tc.store.indicator(OWNER, "File", "d41d8cd98f00b204e9800998ecf8427e") is not None
    url = tc.store.indicator(OWNER, "URL", "http://198.51.100.7:8080/gate.php")
    assert attributes(url)["Port"] == ["8080"]
    assert tc.store.count(OWNER, "indicator") == 4


def test_select_streams_one_top_level_entry_at_a_time(tmp_path: Path) -> None:
    """The expression sees one entry of the top-level object (``{key: value}``) or array
    (``[item]``) at a time: results are the same as on the whole document for expressions
    that project or filter; items are numbered in the order selected."""
    (tmp_path / "o.json").write_text(json.dumps({"a": [{"v": "1.2.3.4"}, {"v": "x.example.com"}], "b": [],
                                                 "c": [{"v": "5.6.7.8"}]}))
    items = list(read_feed(tmp_path / "o.json", "json", options={"select": "values(@)[]"}, mapping={"value": "v"}))
    assert [(i.line, i.record["summary"]) for i in items] == [(1, "1.2.3.4"), (2, "x.example.com"), (3, "5.6.7.8")]
    (tmp_path / "a.json").write_text(json.dumps([{"t": "url", "v": "http://a.example.com/"}, {"t": "ip", "v": "9.9.9.9"},
                                                 {"t": "url", "v": "http://b.example.com/"}]))
    items = list(read_feed(tmp_path / "a.json", "json", options={"select": "[?t=='url']"}, mapping={"value": "v"}))
    assert [i.record["summary"] for i in items] == ["http://a.example.com/", "http://b.example.com/"]
    (tmp_path / "p.json").write_text(json.dumps({"data": {"rows": [{"ioc": {"v": "7.7.7.7"}}, {"ioc": None}]}}))
    items = list(read_feed(tmp_path / "p.json", "json", options={"path": "data.rows", "select": "[].ioc"},
                           mapping={"value": "v"}))
    assert [i.record["summary"] for i in items] == ["7.7.7.7"]  # a null result selects nothing


def test_select_keeps_memory_to_one_entry(tmp_path: Path) -> None:
    """A large object-keyed export is read entry by entry: the parser is never asked for the
    whole document (which ijson would build in memory)."""
    import tracemalloc

    path = tmp_path / "big.json"
    with path.open("w") as fh:
        fh.write("{")
        for i in range(60_000):
            fh.write(("," if i else "") + json.dumps(str(i)) + ":" + json.dumps(
                [{"ioc_value": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:80", "pad": "x" * 200}]))
        fh.write("}")
    assert path.stat().st_size > 15_000_000
    tracemalloc.start()
    n = 0
    for item in read_feed(path, "json", options={"select": "*[]"},
                          mapping={"value": {"column": "ioc_value", "split": ":", "index": 0}}):
        assert item.record is not None, item.error
        n += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 60_000 and peak < 8_000_000, peak


# -- the mapping, checked whole when the config is loaded ---------------------------------------

JSON_HEAD = 'source = "f.json"\nformat = "json"\nowner = "Demo Organization"\n'
CSV_HEAD = 'source = "f.csv"\nformat = "csv"\nowner = "Demo Organization"\n'


@pytest.mark.parametrize("body, message", [
    (JSON_HEAD + "[mapping]\nvalue = { column = \"v\", regex = \"(unclosed\" }\n",
     "mapping.value: regex '(unclosed' is not a valid regular expression: missing ), unterminated subpattern"),
    (JSON_HEAD + "[mapping]\nvalue = \"v\"\nattributes = { Port = { column = \"v\", regex = \"(a)(b)\" } }\n",
     "mapping.attributes.Port: regex '(a)(b)' has 2 groups: give it one, or name the one to take (?P<value>...)"),
    (JSON_HEAD + "[mapping]\nvalue = \"v\"\ntags = [\"t\", { template = \"{malware\" }]\n",
     "mapping.tags[1]: template '{malware' is not valid: expected '}' before end of string"),
    (JSON_HEAD + "[mapping]\nvalue = \"v\"\ndescription = { template = \"Seen {} times\" }\n",
     "mapping.description: template 'Seen {} times' has an empty {}: name a column or key"),
    (JSON_HEAD + "[mapping]\nvalue = \"v\"\ndescription = { template = \"{n:>4}\" }\n",
     "mapping.description: template '{n:>4}': format specs and conversions (:>4) are not supported"),
    (CSV_HEAD + "[options]\nheader = [\"ip\", \"malware\"]\n[mapping]\nvalue = \"ip\"\n"
                "tags = { template = \"{malware_printable}\" }\n",
     "mapping.tags: template '{malware_printable}' names column 'malware_printable', which options.header lacks "
     "(header: ip, malware)"),
    (JSON_HEAD + "[mapping]\nvalue = { column = \"v\", regx = \"a\" }\n",
     "mapping.value: unknown key 'regx' (did you mean 'regex'?)"),
    (JSON_HEAD + "[mapping]\nvalue = { column = \"v\", map = { a = true } }\n",
     "mapping.value: map: the value of 'a' must be a string or a number, not True"),
    (JSON_HEAD + "[mapping]\nvalue = { column = \"v\", unmatched = \"drop\" }\n",
     "mapping.value: unmatched must be 'empty', 'keep' or 'reject', not 'drop'"),
    (JSON_HEAD + "[mapping]\nvalue = { column = \"v\", regex = \"a\", split = \":\" }\n",
     "mapping.value: give regex or split, not both"),
    (JSON_HEAD + "[mapping]\nvalue = { column = \"v\", index = 1 }\n",
     "mapping.value: index applies only with split"),
    (JSON_HEAD + "[mapping]\nvalue = { template = \"{a}\", column = \"v\" }\n",
     "mapping.value: give one of column, key, const or template, not several"),
    (JSON_HEAD + "[mapping]\nvalue = \"v\"\ntype = { column = \"t\", map = { a = \"Hots\" } }\n",
     "mapping.type: map: 'Hots' is not a known indicator type"),
    (JSON_HEAD + "[options]\nselect = \"*[\"\n",
     "options.select: '*[' is not a valid JMESPath expression"),
])
def test_bad_transforms_are_config_errors_naming_the_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "feed.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        FeedConfig.load(path)
    assert message in str(info.value)


def test_split_index_and_unmatched_reject(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text("pair,kind\n10.0.0.1|8080,a\n10.0.0.2,b\n10.0.0.3|53|udp,c\n")
    mapping = {"value": {"column": "pair", "split": "|", "index": 0, "unmatched": "keep"},
               "attributes": {"Port": {"column": "pair", "split": "|", "index": -1, "unmatched": "reject"}}}
    items = list(read_feed(tmp_path / "f.csv", "csv", mapping=mapping))
    assert items[0].record["attribute"] == [{"type": "Port", "value": "8080"}]
    assert items[1].error == "attributes.Port: '10.0.0.2' has no separator '|' (unmatched = \"reject\")"
    assert items[2].record["attribute"] == [{"type": "Port", "value": "udp"}]
    items = list(read_feed(tmp_path / "f.csv", "csv", mapping={"value": {"column": "pair", "split": "|"}}))
    assert items[1].error == "value 'pair' is empty, or its split gave no value (unmatched = \"empty\")"


def test_transforms_apply_to_every_reference(tmp_path: Path) -> None:
    """Group names and types, hash columns, rating and a JSON list of tags take transforms too."""
    from streambatch.xid import record_xid

    rows = [{"h": "md5:D41D8CD98F00B204E9800998ECF8427E", "fam": "win.remcos", "sev": "high",
             "labels": ["family:Remcos", "exe", "family:RAT"]},
            {"h": "sha1:2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", "fam": None, "sev": "urgent", "labels": []}]
    (tmp_path / "f.json").write_text(json.dumps(rows))
    mapping = {
        "value": {"md5": {"column": "h", "regex": "^md5:(.+)$"}, "sha1": {"column": "h", "regex": "^sha1:(.+)$"}},
        "rating": {"column": "sev", "map": {"low": 1, "medium": 3, "high": 5}, "unmatched": "reject"},
        "tags": {"column": "labels", "regex": "^family:(.+)$"},
        "groups": [{"type": {"const": "Malware"}, "name": {"template": "{fam}"}}],
    }
    items = list(read_feed(tmp_path / "f.json", "json", mapping=mapping, options={"owner": "Org"}))
    xid = record_xid("Org", "group", "Malware", "win.remcos")
    assert items[0].record == {"type": "Malware", "name": "win.remcos", "xid": xid}
    assert items[1].record == {"type": "File", "md5": "d41d8cd98f00b204e9800998ecf8427e", "rating": 5.0,
                               "tag": [{"name": "Remcos"}, {"name": "RAT"}], "associatedGroups": [{"groupXid": xid}]}
    assert items[2].line == 2 and items[2].error == \
        "rating: 'urgent' is not in the map of mapping.rating (unmatched = \"reject\")"
