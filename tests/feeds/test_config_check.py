"""FeedConfig.load checks the whole config: unknown keys (with the nearest valid spelling), the
value of every option and batch setting, the mapping, and the mass-removal guard keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from streambatch.feeds.config import BATCH_KEYS, ConfigError, FeedConfig

REPO = Path(__file__).resolve().parents[2]
HEAD = 'source = "feed.txt"\nformat = "text"\nowner = "Demo Organization"\n'
CSV_HEAD = 'source = "feed.csv"\nformat = "csv"\nowner = "Demo Organization"\n'
CSV_MAPPING = '[mapping]\nvalue = "ip"\n'


def load(tmp_path: Path, body: str) -> FeedConfig:
    path = tmp_path / "feed.toml"
    path.write_text(body, encoding="utf-8")
    return FeedConfig.load(path)


def rejected(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body)
    text = str(info.value)
    assert "feed.toml" in text  # every message names the file
    return text


# -- unknown keys ----------------------------------------------------------------------------


def test_unknown_option_key_names_the_key_and_the_nearest_spelling(tmp_path: Path) -> None:
    text = rejected(tmp_path, HEAD + "[options]\nconfidnce = 50\n")
    assert "unknown key 'options.confidnce'" in text and "did you mean 'confidence'?" in text


def test_unknown_top_level_key_suggests_the_nearest(tmp_path: Path) -> None:
    text = rejected(tmp_path, HEAD + 'removd = "keep"\n')
    assert "unknown key 'removd'" in text and "did you mean 'removed'?" in text
    text = rejected(tmp_path, HEAD + "zzzzzz = 1\n")  # nothing close: the known keys are listed
    assert "unknown key 'zzzzzz'" in text and "did you mean" not in text and "max_removed" in text


def test_unknown_batch_key(tmp_path: Path) -> None:
    text = rejected(tmp_path, HEAD + "[batch]\nmax_record = 10\n")
    assert "unknown key 'batch.max_record'" in text and "did you mean 'max_records'?" in text


def test_option_of_another_format_is_refused(tmp_path: Path) -> None:
    text = rejected(tmp_path, HEAD + '[options]\ndelimiter = ";"\n')
    assert "options.delimiter" in text and "text" in text and "csv" in text
    text = rejected(tmp_path, CSV_HEAD + '[options]\npath = "data.items"\n' + CSV_MAPPING)
    assert "options.path" in text and "json" in text
    text = rejected(tmp_path, HEAD.replace('"text"', '"json"') + '[options]\nencoding = "latin-1"\n')
    assert "options.encoding" in text


def test_owner_in_options_is_refused(tmp_path: Path) -> None:
    text = rejected(tmp_path, HEAD + '[options]\nowner = "Other Org"\n')
    assert "options.owner" in text and "top-level 'owner'" in text


# -- option values ---------------------------------------------------------------------------


@pytest.mark.parametrize("options, key, why", [
    ("confidence = 500", "options.confidence", "must be an integer from 0 to 100"),
    ("confidence = 7.5", "options.confidence", "must be an integer from 0 to 100"),
    ("rating = 6", "options.rating", "must be a number from 0 to 5"),
    ('rating = "high"', "options.rating", "must be a number from 0 to 5"),
    ('encoding = "klingon"', "options.encoding", "unknown encoding"),
    ('encoding = "utf-16"', "options.encoding", "ASCII"),
    ("max_line_bytes = 0", "options.max_line_bytes", "positive"),
    ('max_line_bytes = "1MB"', "options.max_line_bytes", "positive"),
    ("timeout = -1", "options.timeout", "positive"),
    ("timeout = [1, 2, 3]", "options.timeout", "[connect, read]"),
    ('headers = ["x"]', "options.headers", "table"),
    ("headers = { X-Key = 5 }", "options.headers", "X-Key"),
    ('type = "Adress"', "options.type", "not a known indicator type"),
    ('type = "Adversary"', "options.type", "not a known indicator type"),
    ("tags = [1, 2]", "options.tags", "string"),
    ('tags = ["' + "x" * 200 + '"]', "options.tags", "longer than 128"),
    ('attributes = [{ type = "Source" }]', "options.attributes", "value"),
    ('attributes = { type = "Source", value = "x" }', "options.attributes", "list"),
    ('member = ""', "options.member", "empty"),
])
def test_bad_option_values(tmp_path: Path, options: str, key: str, why: str) -> None:
    text = rejected(tmp_path, HEAD + "[options]\n" + options + "\n")
    assert key in text and why in text


@pytest.mark.parametrize("options, key, why", [
    ('delimiter = ";;"', "options.delimiter", "one character"),
    ('delimiter = ""', "options.delimiter", "one character"),
    ("delimiter = 1", "options.delimiter", "one character"),
    ('delimiter = "\\""', "options.delimiter", "quote"),
    ('quoting = "all"', "options.quoting", "'minimal' or 'none'"),
    ('multiline = "yes"', "options.multiline", "true or false"),
    ('header = "ip"', "options.header", "list"),
    ('header = ["ip", ""]', "options.header", "empty"),
    ('comment = ""', "options.comment", "empty"),
])
def test_bad_csv_option_values(tmp_path: Path, options: str, key: str, why: str) -> None:
    text = rejected(tmp_path, CSV_HEAD + "[options]\n" + options + "\n" + CSV_MAPPING)
    assert key in text and why in text


def test_type_option_without_mapping_for_json_is_refused(tmp_path: Path) -> None:
    text = rejected(tmp_path, HEAD.replace('"text"', '"jsonl"') + '[options]\ntype = "Host"\n')
    assert "options.type" in text and "[mapping]" in text


# -- batch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, key, why", [
    ("max_records = 0", "batch.max_records", "positive integer"),
    ("max_records = 2.5", "batch.max_records", "positive integer"),
    ('buffer_size = "big"', "batch.buffer_size", "positive integer"),
    ("max_in_flight = true", "batch.max_in_flight", "positive integer"),
    ("poll_interval = 0", "batch.poll_interval", "positive number"),
    ('halt_on_error = "no"', "batch.halt_on_error", "true or false"),
    ('attribute_write_type = "append"', "batch.attribute_write_type", "Append, Replace, Singleton, Static"),
    ('tag_write_type = "Static"', "batch.tag_write_type", "Append, Replace"),
    ('hash_collision_mode = "Nope"', "batch.hash_collision_mode", "FavorExisting"),
    ("max_bytes = 10", "batch.max_bytes", "at least"),
])
def test_bad_batch_values(tmp_path: Path, batch: str, key: str, why: str) -> None:
    text = rejected(tmp_path, HEAD + "[batch]\n" + batch + "\n")
    assert key in text and why in text


def test_batch_keys_are_the_documented_set() -> None:
    assert BATCH_KEYS == {"max_records", "max_bytes", "attribute_write_type", "tag_write_type",
                          "security_label_write_type", "halt_on_error", "playbook_triggers_enabled", "file_merge_mode",
                          "hash_collision_mode", "max_in_flight", "file_concurrency", "poll_interval", "poll_timeout",
                          "buffer_size", "writer", "preflight", "truncate_attributes", "bypass_exclusions", "rules_refresh"}


# -- mapping ---------------------------------------------------------------------------------


def test_bad_mapping_is_a_config_error_at_load(tmp_path: Path) -> None:
    text = rejected(tmp_path, CSV_HEAD + '[mapping]\nvalue = "ip"\nratng = "r"\n')
    assert "mapping" in text and "ratng" in text and "did you mean 'rating'?" in text
    text = rejected(tmp_path, CSV_HEAD + '[mapping]\ntype = { const = "Address" }\n')
    assert "'value' is required" in text
    text = rejected(tmp_path, CSV_HEAD + '[mapping]\nvalue = "ip"\ntype = { const = "Adress" }\n')
    assert "mapping.type" in text and "not a known indicator type" in text
    text = rejected(tmp_path, CSV_HEAD + '[mapping]\nvalue = "ip"\nconfidence = { const = 500 }\n')
    assert "mapping.confidence" in text and "0 to 100" in text
    text = rejected(tmp_path, CSV_HEAD + '[mapping]\nvalue = { colum = "ip" }\n')
    assert "field reference" in text
    text = rejected(tmp_path, CSV_HEAD)  # csv needs a mapping
    assert "mapping" in text
    text = rejected(tmp_path, HEAD + '[mapping]\nvalue = "ip"\n')  # text and stix have none
    assert "[mapping]" in text and "text" in text


# -- top-level values ------------------------------------------------------------------------


@pytest.mark.parametrize("line, key, why", [
    ('max_removed = "150%"', "max_removed", "0%"),
    ('max_removed = "-1%"', "max_removed", "0%"),
    ("max_removed = -5", "max_removed", "integer"),
    ('max_removed = "some"', "max_removed", "none"),
    ("max_removed = true", "max_removed", "none"),
    ("max_removed = 2.5", "max_removed", "integer"),
    ("absent_cycles = 0", "absent_cycles", "at least 1"),
    ('absent_cycles = "2"', "absent_cycles", "integer"),
    ("absent_cycles = true", "absent_cycles", "integer"),
    ("retention = -1", "retention", "0 or more"),
    ('retention = "3"', "retention", "integer"),
    ("history_jsonl = 5", "history_jsonl", "path"),
    ("state_dir = []", "state_dir", "path"),
    ('grace = "soon"', "grace", "interval"),
])
def test_bad_top_level_values(tmp_path: Path, line: str, key: str, why: str) -> None:
    text = rejected(tmp_path, HEAD + line + "\n")
    assert key in text and why in text


@pytest.mark.parametrize("value, limits", [
    (None, {0: 1, 9: 1, 10: 1, 19: 1, 20: 2, 1000: 100}),  # the default: 10%, at least 1
    ('"10%"', {0: 1, 9: 1, 20: 2, 1000: 100}),
    ('"0%"', {0: 0, 1000: 0}),
    ('"100%"', {7: 7, 1000: 1000}),
    ('"29%"', {100: 29, 1000: 290}),  # no float rounding: 29% of 100 is 29, not 28
    ('"12.5%"', {8: 1, 80: 10, 1000: 125}),
    ("500", {10: 500, 100_000: 500}),
    ("0", {10: 0}),
    ('"none"', {10: None, 10**9: None}),
    ('"None"', {10: None}),
    ("false", {10: None}),
])
def test_max_removed_limits(tmp_path: Path, value: str | None, limits: dict) -> None:
    config = load(tmp_path, HEAD + (f"max_removed = {value}\n" if value is not None else ""))
    assert {known: config.removal_limit(known) for known in limits} == limits


def test_absent_cycles_default_and_value(tmp_path: Path) -> None:
    assert load(tmp_path, HEAD).absent_cycles == 2
    assert load(tmp_path, HEAD + "absent_cycles = 5\n").absent_cycles == 5


# -- valid configs ---------------------------------------------------------------------------


def test_every_shipped_config_loads(tmp_path: Path) -> None:
    shipped = sorted((REPO / "data").glob("*.toml"))
    assert len(shipped) >= 2
    for path in shipped:
        config = FeedConfig.load(path)
        assert config.path == path and config.source


def test_a_config_using_every_option_loads(tmp_path: Path) -> None:
    body = (CSV_HEAD + 'removed = "delete"\ngrace = "2h"\nmax_removed = "25%"\nabsent_cycles = 3\nretention = 0\n'
            '[options]\nrating = 3\nconfidence = 80\ntags = "feed:x"\nencoding = "latin-1"\ndelimiter = ";"\n'
            'quoting = "none"\nheader = ["ip", "actor"]\ncomment = "#"\nmultiline = true\nmax_line_bytes = 4096\n'
            'timeout = [5, 30]\nheaders = { X-Api-Key = "k" }\ntype = "Address"\n'
            'attributes = [{ type = "Source", value = "feed x", displayed = true }]\n'
            '[mapping]\nvalue = "ip"\ngroups = [{ type = "Adversary", name = "actor" }]\n'
            '[batch]\nmax_records = 5000\nmax_bytes = 1000000\nattribute_write_type = "Append"\n'
            'tag_write_type = "Replace"\nsecurity_label_write_type = "Append"\nhalt_on_error = false\n'
            'playbook_triggers_enabled = true\nfile_merge_mode = "Merge"\nhash_collision_mode = "Split"\n'
            'max_in_flight = 2\nfile_concurrency = 2\npoll_interval = 0.02\npoll_timeout = 600\nbuffer_size = 100\n')
    config = load(tmp_path, body)
    assert config.options["tags"] == "feed:x" and config.batch["max_records"] == 5000
    assert (config.max_removed_share, config.max_removed_count, config.absent_cycles) == (0.25, None, 3)
    assert config.removal_limit(100) == 25 and config.retention == 0


def test_json_stix_and_url_options_load(tmp_path: Path) -> None:
    load(tmp_path, HEAD.replace('"text"', '"json"') + '[options]\npath = "data.items"\ntimeout = 20\n'
         'member = "x.json"\n[mapping]\nvalue = "ip"\n')
    load(tmp_path, HEAD.replace('"text"', '"stix"') + '[options]\nassociation_type = "Related"\nconfidence = 50\n')
    load(tmp_path, HEAD.replace('"text"', '"jsonl"') + '[options]\ntags = ["a", "b"]\nrating = 1.5\n')


def test_a_config_copied_elsewhere_still_loads(tmp_path: Path) -> None:
    """The shipped demo configs load wherever they are (their paths are relative to the file)."""
    for name in ("demo-csv.toml", "demo-text.toml"):
        shutil.copy(REPO / "data" / name, tmp_path / name)
        assert FeedConfig.load(tmp_path / name).base_dir == tmp_path


def test_a_string_tags_option_is_one_tag(tmp_path: Path) -> None:
    from streambatch.feeds import read_feed

    (tmp_path / "feed.txt").write_text("1.2.3.4\n")
    config = load(tmp_path, HEAD + '[options]\ntags = "feed:x"\n')
    items = list(read_feed(config.source, config.format, base_dir=config.base_dir, options=config.options))
    assert items[0].record["tag"] == [{"name": "feed:x"}]  # not one tag per character
