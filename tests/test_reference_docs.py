"""Reference docs that cannot drift.

1. docs/cli.md is exactly what scripts/cli_docs.py renders from the live commands' --help.
2. docs/feeds.md documents every feed config key the code knows (top level, [options],
   [batch], [mapping], the keys of a field reference table, [misp], [taxii]) and no key the code does not
   know; the formats of each option and the documented defaults agree with the code.
3. docs/feeds.md's "Environment" table lists every environment variable the code reads.
4. docs/troubleshooting.md quotes the messages the CLI really prints: each scenario below is run
   through the `streambatch` command (against the emulator), and the stable part of what it
   prints (without paths, numbers and the API's own text) must appear in the doc.
5. The code blocks of README.md and docs/*.md run: python is executed, feed configs are loaded
   (and read, when a setup gives them data), `streambatch` commands are run, the systemd unit
   and the cron line of docs/operations.md are checked and their commands run.

A block may be preceded by one HTML comment:

* ``<!-- test: setup NAME -->``: call the setup ``NAME`` of this module (see :data:`SETUPS`)
  in the block's temporary folder first (sample data, environment variables);
* ``<!-- test: skip -->``: the block has commands that cannot run here; only the blocks in
  :data:`SKIPS` may carry it, each with its reason (``streambatch`` commands in such a block
  are still run);
* ``<!-- test: pending NAME -->``: the example waits for a library change; it is skipped (the
  reason shows in the test summary) unless ``STREAMBATCH_DOCS_STRICT=1``, which makes it fail.
"""

from __future__ import annotations

import configparser
import errno
import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streambatch.batch import Batch, JobSettings
from streambatch.emulator import Emulator
from streambatch.errors import StreambatchError
from streambatch.feeds import config as feed_config
from streambatch.feeds import misp, taxii
from streambatch.feeds.config import FeedConfig
from streambatch.feeds.mapping import Mapper
from streambatch.feeds.readers import read_feed
from streambatch.feeds.transforms import REF_KEYS
from streambatch.failure import describe
from streambatch.store import JobLock

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FEEDS_MD = DOCS / "feeds.md"
TROUBLE_MD = DOCS / "troubleshooting.md"
OWNER = "Demo Organization"
STREAMBATCH = Path(sys.executable).with_name("streambatch")
COMMAND = [str(STREAMBATCH)] if STREAMBATCH.is_file() else [sys.executable, "-m", "streambatch.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any TC_/STREAMBATCH_ setting (so commands use the embedded
    emulator unless told otherwise), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "STREAMBATCH_"))}
    env.update(extra)
    return env


def squash(text: str) -> str:
    return " ".join(text.split())


# -- 1. docs/cli.md -----------------------------------------------------------------------------


def _cli_docs() -> Any:
    spec = importlib.util.spec_from_file_location("cli_docs", ROOT / "scripts" / "cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_cli_md_is_the_commands_help() -> None:
    """docs/cli.md equals the help the commands give now (never a stored copy). Rendered in a
    fresh process, as `streambatch ... --help` is: click caches a command's help option, so
    help rendered here after other tests invoked a command on its own could differ."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_docs.py"), "--check"], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail("docs/cli.md is out of date: run `python scripts/cli_docs.py > docs/cli.md`\n"
                    + done.stdout[:6000] + done.stderr[-2000:])


def test_cli_md_has_every_command_and_the_check_mode_catches_a_stale_file(tmp_path: Path) -> None:
    from streambatch.cli import main

    module = _cli_docs()
    text = module.render()
    for name in sorted(main.commands):
        assert f"\n## streambatch {name}\n" in text
        assert f"Usage: streambatch {name} " in text
    stale = tmp_path / "cli.md"
    stale.write_text(text.replace("Show this message and exit.", "Show this message.", 1))
    assert module.check(stale)
    stale.write_text(text)
    assert module.check(stale) == []


# -- 2. docs/feeds.md: the keys -----------------------------------------------------------------


def sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text up to the next ``## `` heading."""
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out


def cells(row: str) -> list[str]:
    """The cells of a Markdown table row (``\\|`` is a pipe inside a cell)."""
    inner = row.strip().strip("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def documented(section: str) -> dict[str, list[str]]:
    """Keys a section documents: table rows whose first cell is one backticked name (-> the
    row's cells), and ``### `name` `` headings (-> [])."""
    out: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.startswith("|"):
            row = cells(line)
            m = re.fullmatch(r"`([^`\s]+)`", row[0])
            if m:
                out[m.group(1)] = row
        elif m := re.fullmatch(r"###\s+`([^`\s]+)`\s*", line):
            out[m.group(1)] = []
    return out


def mapping_keys() -> set[str]:
    """The keys the mapping accepts, as the mapping itself lists them when refusing one."""
    try:
        Mapper({"value": "v", "zzzz-not-a-key-zzzz": 1}, {})
    except StreambatchError as exc:
        m = re.search(r"\(known: ([^)]*)\)", str(exc))
        assert m, f"the mapping no longer lists its known keys in its error ({exc}): update mapping_keys()"
        keys = {k.strip() for k in m.group(1).split(",")}
        assert "value" in keys and len(keys) >= 5, keys
        return keys
    raise AssertionError("the mapping accepted an unknown key")


KEY_SECTIONS: dict[str, Callable[[], set[str]]] = {
    "Top-level keys": lambda: set(feed_config.TOP_KEYS),
    "`[options]`": lambda: set(feed_config.OPTIONS),
    "`[batch]`": lambda: set(feed_config.BATCH_KEYS),
    "`[mapping]`": mapping_keys,
    "Field references": lambda: set(REF_KEYS),  # the keys of a reference table, in any mapping key
    "MISP feeds": lambda: set(misp.KEYS),
    "TAXII 2.1": lambda: set(taxii.KEYS),
}


def feeds_sections() -> dict[str, str]:
    return sections(FEEDS_MD.read_text(encoding="utf-8"))


@pytest.mark.parametrize("section", sorted(KEY_SECTIONS))
def test_feeds_md_documents_every_key_and_no_other(section: str) -> None:
    body = feeds_sections().get(section)
    assert body is not None, f"docs/feeds.md has no '## {section}' section"
    known, shown = KEY_SECTIONS[section](), set(documented(body))
    missing, extra = sorted(known - shown), sorted(shown - known)
    assert not missing, f"docs/feeds.md '## {section}' has no row for {missing} (a `key` in the first column)"
    assert not extra, f"docs/feeds.md '## {section}' documents {extra}, which the code does not know"


def test_feeds_md_options_name_the_formats_they_apply_to() -> None:
    rows = documented(feeds_sections()["`[options]`"])
    for key, (_check, formats) in feed_config.OPTIONS.items():
        cell = rows[key][1]
        named = set(feed_config.FORMATS) if cell.strip().lower() == "all" else \
            set(re.findall(r"\b(text|csv|tsv|jsonl|json|stix)\b", cell))
        assert named == set(formats), f"options.{key}: docs/feeds.md says {cell!r}, the code {', '.join(formats)}"


def literal(cell: str) -> tuple[bool, Any]:
    """A default cell that starts with a backticked TOML value -> (True, value)."""
    m = re.match(r"`([^`]+)`", cell)
    if not m:
        return False, None
    try:
        return True, tomllib.loads(f"x = {m.group(1)}")["x"]
    except tomllib.TOMLDecodeError:
        return False, None


def test_feeds_md_batch_defaults_are_the_code_defaults() -> None:
    defaults = {f: getattr(JobSettings(), f) for f in JobSettings.__dataclass_fields__}
    defaults.update({name: p.default for name, p in inspect.signature(Batch.__init__).parameters.items()
                     if p.default is not inspect.Parameter.empty})
    checked = 0
    for key, row in documented(feeds_sections()["`[batch]`"]).items():
        found, value = literal(row[2])
        if found:
            assert value == defaults[key], f"batch.{key}: docs/feeds.md says the default is {value!r}, the code {defaults[key]!r}"
            checked += 1
        else:
            assert defaults[key] is None, f"batch.{key}: docs/feeds.md gives no `literal` default, the code has {defaults[key]!r}"
    assert checked >= 10


def test_feeds_md_top_level_defaults_change_nothing_when_written_out(tmp_path: Path) -> None:
    """Writing a documented default into a config gives the same config as leaving it out."""
    base = 'source = "iocs.txt"\nformat = "text"\nowner = "Demo Organization"\n'
    (tmp_path / "base.toml").write_text(base)
    plain = FeedConfig.load(tmp_path / "base.toml")
    checked = 0
    for key, row in documented(feeds_sections()["Top-level keys"]).items():
        found, value = literal(row[2])
        if not found:
            continue
        path = tmp_path / "base.toml"
        path.write_text(base + f"{key} = {json.dumps(value)}\n")
        assert FeedConfig.load(path) == plain, f"{key} = {value!r} (the documented default) changes the config"
        checked += 1
    assert checked >= 5


# -- 3. docs/feeds.md: the environment ----------------------------------------------------------

#: Keys of a WSGI request environ (PEP 3333), which the emulator's server reads: not variables
#: of the process environment.
WSGI_KEYS = {"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
             "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_HOST", "RAW_URI", "REQUEST_URI"}
_ENV_READ = [
    re.compile(r"""\b(?:environ|env)\s*(?:\.get\s*\(|\.pop\s*\(|\.setdefault\s*\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']"""),
    re.compile(r"""\bgetenv\s*\(\s*["']([A-Z][A-Z0-9_]*)["']"""),
    re.compile(r"""["']([A-Z][A-Z0-9_]*)["']\s+(?:not\s+)?in\s+(?:os\.)?environ\b"""),
    re.compile(r"""\benvvar\s*=\s*["']([A-Z][A-Z0-9_]*)["']"""),  # click options
]


def variables_read() -> dict[str, set[str]]:
    """Every environment variable named in streambatch/ where the environment is read -> files."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "streambatch").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "auto_envvar_prefix" not in text and not re.search(r"envvar\s*=\s*\[", text), (
            f"{path}: environment variables this scan cannot name: teach variables_read() to find them")
        for pattern in _ENV_READ:
            for name in pattern.findall(text):
                if name not in WSGI_KEYS and not name.startswith("HTTP_"):
                    out.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return out


def test_feeds_md_environment_table_lists_every_variable_the_code_reads() -> None:
    read = variables_read()
    assert {"TC_API_PATH", "TC_API_ACCESS_ID", "TC_API_SECRET_KEY", "TC_TOKEN", "TC_VERIFY",
            "STREAMBATCH_CRASH_AT"} <= set(read), f"the scan of streambatch/ found only {sorted(read)}"
    body = feeds_sections().get("Environment")
    assert body is not None, "docs/feeds.md has no '## Environment' section"
    table = {k for k in documented(body) if re.fullmatch(r"[A-Z][A-Z0-9_]*", k)}
    missing = {k: sorted(v) for k, v in read.items() if k not in table}
    assert not missing, f"docs/feeds.md '## Environment' lacks variables the code reads: {missing}"
    stale = sorted(table - set(read))
    assert not stale, f"docs/feeds.md '## Environment' lists {stale}, which no code in streambatch/ reads"


# -- 4. docs/troubleshooting.md: the messages, through the CLI ----------------------------------


def ips(n: int, prefix: str = "10.9") -> str:
    return "".join(f"{prefix}.{i // 256}.{i % 256}\n" for i in range(n))


@dataclass
class Scenario:
    """A failure a user can meet. ``steps`` prepare it in a :class:`Run` (files, earlier
    commands) and return the arguments of the command whose output is checked. ``pick``:
    regexes that each select one message of the output (group 1 if it has one). ``vary``:
    regexes of variable text inside a message (the API's own words), besides paths, URLs and
    numbers."""

    name: str
    steps: Callable[["Run"], list[str]]
    code: int
    pick: list[str]
    vary: list[str] = field(default_factory=list)
    faults: list[dict] = field(default_factory=list)
    emulator: dict[str, Any] | None = field(default_factory=dict)  # None: no API configured


@dataclass
class Run:
    dir: Path
    env: dict[str, str]
    tc: Emulator | None = None
    stack: ExitStack = field(default_factory=ExitStack)

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*COMMAND, *args], cwd=self.dir, env=env or self.env, capture_output=True,
                              text=True, timeout=timeout)

    def feed(self, body: str | bytes | None, fmt: str = "text", extra: str = "", source: str | None = None,
             batch: str = "", owner: str = OWNER) -> Path:
        """urlhaus.toml (and its source file) in this folder."""
        source = source or f"urlhaus.{'txt' if fmt == 'text' else fmt}"
        if body is not None:
            (self.dir / source).write_bytes(body if isinstance(body, bytes) else body.encode())
        cfg = self.dir / "urlhaus.toml"
        cfg.write_text(f'source = "{source}"\nformat = "{fmt}"\nowner = "{owner}"\n{extra}\n'
                       f"[batch]\npoll_interval = 0.02\n{batch}")
        return cfg

    def config(self, text: str) -> Path:
        cfg = self.dir / "urlhaus.toml"
        cfg.write_text(text)
        return cfg

    def newest_job(self) -> Path:
        return sorted((self.dir / "urlhaus.streambatch").glob("job-*.sqlite"))[-1]

    def first(self, *args: str) -> None:
        """A preparatory command; it must succeed."""
        done = self.cli(*args)
        assert done.returncode == 0, done.stdout + done.stderr


RUN_REASON = r"(?:failed|interrupted): read .*? in \d+\.\d s \((.*)\)$"  # the run line's reason
_TEXT = 'source = "urlhaus.txt"\nformat = "text"\nowner = "Demo Organization"\n'
_POST = {"kind": "status", "method": "POST", "path": "/v2/batch/createAndUpload", "times": 0}


def _locked(run: Run) -> list[str]:
    cfg = run.feed(ips(5))
    state = run.dir / "urlhaus.streambatch"
    state.mkdir()
    lock = JobLock(state / "feed").acquire()
    run.stack.callback(lock.release)
    return ["run", str(cfg)]


def _junk_job(run: Run) -> list[str]:
    (run.dir / "job.sqlite").write_bytes(b"this is not a database " * 200)
    return ["status", str(run.dir / "job.sqlite")]


def _foreign_job(run: Run) -> list[str]:
    conn = sqlite3.connect(run.dir / "job.sqlite")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return ["submit", str(run.dir / "job.sqlite")]


def _junk_state(run: Run) -> list[str]:
    cfg = run.feed(ips(5))
    (run.dir / "urlhaus.streambatch").mkdir()
    (run.dir / "urlhaus.streambatch" / "state.sqlite").write_bytes(b"garbage" * 1000)
    return ["run", str(cfg)]


def _shrunk(run: Run) -> list[str]:
    cfg = run.feed(ips(100), extra='removed = "inactive"\nabsent_cycles = 1')
    run.first("run", str(cfg))
    (run.dir / "urlhaus.txt").write_text(ips(50))
    return ["run", str(cfg)]


def _emptied(run: Run) -> list[str]:
    cfg = run.feed(ips(20))
    run.first("run", str(cfg))
    (run.dir / "urlhaus.txt").write_text("# nothing today\n")
    return ["run", str(cfg)]


def _api_errors(run: Run) -> list[str]:
    rows = [{"type": "Host", "summary": "ok.example.com"},
            {"type": "Host", "summary": "warn.example.com", "attribute": [{"type": "Bogus Attribute", "value": "x"}]},
            {"type": "Host", "summary": "err.example.com", "associatedGroups": [{"groupXid": "no-such-group"}]}]
    # preflight off: the server's own warning for the attribute type is what the doc quotes
    return ["run", str(run.feed("".join(json.dumps(r) + "\n" for r in rows), fmt="jsonl", batch="preflight = false\n"))]


def _refused_then(command: str, *flags: str) -> Callable[[Run], list[str]]:
    def steps(run: Run) -> list[str]:
        cfg = run.feed(ips(50))
        assert run.cli("run", str(cfg)).returncode == 1
        assert run.tc is not None
        run.tc.set_faults([])
        target = str(run.newest_job()) if command == "resume" else str(cfg)
        return [command, *flags, target]
    return steps


def _retry_nothing(run: Run) -> list[str]:
    cfg = run.feed(ips(5))
    run.first("run", str(cfg))
    return ["retry", str(cfg)]


def _misp_missing_event(run: Run) -> list[str]:
    folder = run.dir / "osint"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"5c1e0f3a-7d2b-4e8a-9f61-2b3c4d5e6f70": {
        "info": "OSINT - x", "date": "2026-11-27", "timestamp": "1764230400", "Tag": []}}))
    return ["run", str(run.config('source = "misp+osint"\nowner = "Demo Organization"\n'))]


def _worker_skips(run: Run) -> list[str]:
    folder = run.dir / "feeds"
    folder.mkdir()
    (folder / "urlhaus.toml").write_text('source = "urlhaus.txt"\nformat = "text"\nowner = "Demo Organization"\n'
                                         'schedle = "1h"\n')
    return ["worker", str(folder)]


SCENARIOS = [
    # config errors (exit 2)
    Scenario("unknown key", lambda r: ["run", str(r.config(_TEXT + 'schedle = "1h"\n'))], 2, [r"error: .*"]),
    Scenario("unknown option", lambda r: ["run", str(r.config(_TEXT + "[options]\nconfidnce = 5\n"))], 2,
             [r"error: .*"]),
    Scenario("option for another format", lambda r: ["run", str(r.config(_TEXT + '[options]\ndelimiter = ";"\n'))],
             2, [r"error: .*"]),
    Scenario("bad option value", lambda r: ["run", str(r.config(_TEXT + "[options]\nrating = 9\n"))], 2,
             [r"error: .*"]),
    Scenario("missing required key", lambda r: ["run", str(r.config('source = "urlhaus.txt"\nformat = "text"\n'))],
             2, [r"error: .*"]),
    Scenario("csv without mapping",
             lambda r: ["run", str(r.config('source = "x.csv"\nformat = "csv"\nowner = "Demo Organization"\n'))], 2,
             [r"error: .*"]),
    Scenario("unset variable", lambda r: ["run", str(r.config(
        'source = "https://feeds.example.com/x.txt?key=${URLHAUS_KEY}"\nformat = "text"\nowner = "O"\n'))], 2,
        [r"error: .*"]),
    # source errors and failed reads (exit 1)
    Scenario("missing source", lambda r: ["run", str(r.feed(None))], 1, [RUN_REASON]),
    Scenario("column not in header",
             lambda r: ["run", str(r.feed("address,seen\n1.2.3.4,x\n", fmt="csv", extra='[mapping]\nvalue = "ip"'))],
             1, [RUN_REASON]),
    Scenario("truncated gzip", lambda r: ["run", str(r.feed(_cut_gzip(), source="urlhaus.txt.gz"))], 1,
             [RUN_REASON]),
    Scenario("truncated json",
             lambda r: ["run", str(r.feed(b'[{"type": "Host", "summary": "a.example.com"}, {"type": "Ho', fmt="json"))],
             1, [RUN_REASON]),
    Scenario("missing MISP event", _misp_missing_event, 1, [RUN_REASON], vary=[r"[0-9a-f]{8}-[0-9a-f-]{27}"]),
    # the API
    Scenario("no credentials", lambda r: ["run", str(r.feed(ips(5)))], 1, [r"error: .*"],
             emulator={"env": {"TC_API_ACCESS_ID": "", "TC_API_SECRET_KEY": ""}}),
    Scenario("401 wrong secret", lambda r: ["run", str(r.feed(ips(5)))], 1,
             [RUN_REASON, r"ERROR streambatch\.pipeline: (.*)"],
             vary=[r"(?<=HTTP 401: )[^)]+"], emulator={"env": {"TC_API_SECRET_KEY": "not-the-secret"}}),
    Scenario("403 owner", lambda r: ["run", str(r.feed(ips(5), owner="Another Org"))], 1,
             [RUN_REASON], vary=[r"(?<=HTTP 403: )[^)]+"]),
    Scenario("429 until the retries run out", lambda r: ["run", str(r.feed(ips(5)))], 1,
             [RUN_REASON, r"WARNING streambatch\.client: (.*attempt 1 of .*)"],
             vary=[r"(?<=HTTP 429: )[^()]+"], faults=[{**_POST, "status": 429, "retry_after": 0.01}]),
    Scenario("503 until the retries run out", lambda r: ["run", str(r.feed(ips(5)))], 1,
             [RUN_REASON], vary=[r"(?<=HTTP 503: )[^()]+"],
             faults=[{**_POST, "status": 503, "retry_after": 0}]),
    Scenario("400 refused", lambda r: ["run", str(r.feed(ips(50)))], 1, [RUN_REASON],
             vary=[r"(?<=HTTP 400: ).*?(?=\); sending)"], emulator={"max_upload_bytes": 500}),
    Scenario("413 refused", lambda r: ["run", str(r.feed(ips(50)))], 1, [RUN_REASON],
             vary=[r"(?<=HTTP 413: ).*?(?=\); sending)"], faults=[{**_POST, "status": 413}]),
    Scenario("retry a refused chunk", _refused_then("retry"), 0, [r"^(chunk .*)$", r"^(\d+ chunk .*)$"],
             vary=[r"(?<=HTTP 413: ).*?(?=: set back)"], faults=[{**_POST, "status": 413}]),
    Scenario("retry --drop a refused chunk", _refused_then("retry", "--drop"), 0, [r"^(chunk .*)$", r"^(\d+ chunk .*)$"],
             vary=[r"(?<=HTTP 413: ).*?(?=: dropped)"], faults=[{**_POST, "status": 413}]),
    Scenario("resume with a refused chunk", _refused_then("resume"), 1, [r"^  - (.*)$"],
             vary=[r"(?<=HTTP 413: ).*?(?=; fix)"], faults=[{**_POST, "status": 413}]),
    Scenario("retry with nothing refused", _retry_nothing, 1, [r"error: .*"]),
    Scenario("poll timeout", lambda r: ["run", str(r.feed(ips(200), batch="poll_timeout = 1\n"))], 1,
             [RUN_REASON], faults=[{"kind": "running", "times": 0}]),
    Scenario("per-record errors and warnings", _api_errors, 3, [r"needs a look: (.*failed at the API.*)",
                                                                 r"needs a look: (.*warnings.*)"]),
    # locks and damaged files
    Scenario("feed locked", _locked, 4, [r"error: .*"]),
    Scenario("damaged job file", _junk_job, 1, [r"error: .*"], emulator=None),
    Scenario("not a job file", _foreign_job, 1, [r"error: .*"], emulator=None),
    Scenario("damaged state file", _junk_state, 1, [r"error: .*"]),
    Scenario("no such job file", lambda r: ["status", "job.sqlite"], 1, [r"error: .*"], emulator=None),
    Scenario("no runs yet", lambda r: ["errors", str(r.feed(ips(1)))], 1, [r"error: .*"], emulator=None),
    # needs a look (exit 3)
    Scenario("mass removal", _shrunk, 3, [r"needs a look: (.*would be retired.*)"]),
    Scenario("empty source", _emptied, 3, [r"needs a look: (.*)"]),
    Scenario("every row rejected", lambda r: ["run", str(r.feed("not an indicator\nnor this one\n"))], 3,
             [r"needs a look: (.*)"]),
    Scenario("too many rejected", lambda r: ["run", "--max-rejected", "0", str(r.feed("1.2.3.4\nnot one\n"))], 3,
             [r"needs a look: (.*)"]),
    # the worker
    Scenario("worker skips a config", _worker_skips, 0, [r"ERROR streambatch\.feeds: (skipping .*)"]),
]


def _cut_gzip() -> bytes:
    import gzip

    packed = gzip.compress(ips(5000).encode())
    return packed[: len(packed) // 2]


def run_until_stopped(argv: list[str], cwd: Path, env: dict[str, str], ready: str = "worker: ",
                      timeout: float = 30) -> tuple[int, str, str]:
    """Start a long-running command, wait until its stderr shows ``ready`` (the worker logs it
    once its signal handlers are in place) or it exits, then stop it as systemd would
    (SIGTERM). Returns (exit status, stdout, stderr)."""
    import threading

    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    seen = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if ready in line:
                seen.set()
        seen.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        seen.wait(timeout)
        time.sleep(0.3)  # let it get on with the first step
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read() if proc.stdout else ""
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    return proc.returncode, out, "".join(lines)


@dataclass
class Outcome:
    command: list[str]
    code: int
    out: str
    root: Path


def _play(scenario: Scenario, folder: Path) -> Outcome:
    folder.mkdir(parents=True)
    with ExitStack() as stack:
        env = clean_env()
        tc = None
        if scenario.emulator is not None:
            options = {k: v for k, v in scenario.emulator.items() if k != "env"}
            tc = stack.enter_context(Emulator(db=folder / "emu.sqlite", faults=scenario.faults, **options))
            env.update(TC_API_PATH=tc.url, TC_API_ACCESS_ID=tc.access_id, TC_API_SECRET_KEY=tc.secret_key)
            env.update(scenario.emulator.get("env", {}))
            env = {k: v for k, v in env.items() if v != ""}
        run = Run(folder, env, tc)
        stack.enter_context(run.stack)
        args = scenario.steps(run)
        if args[0] == "worker":
            code, out, err = run_until_stopped([*COMMAND, *args], folder, env)
            return Outcome(args, code, out + err, folder)
        done = run.cli(*args)
        return Outcome(args, done.returncode, done.stdout + done.stderr, folder)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome | BaseException]:
    """Every scenario, run once, eight at a time."""
    base = tmp_path_factory.mktemp("trouble")

    def play(item: tuple[int, Scenario]) -> Outcome | BaseException:
        i, scenario = item
        try:
            return _play(scenario, base / f"s{i:02d}")
        except BaseException as exc:  # noqa: BLE001 - reported by the scenario's test
            return exc

    with ThreadPoolExecutor(8) as pool:
        return {s.name: o for s, o in zip(SCENARIOS, pool.map(play, enumerate(SCENARIOS)))}


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_URL = re.compile(r"https?://\S+?(?=[\s)'\"]|$|: )")


def stable_parts(message: str, root: Path, vary: list[str]) -> list[str]:
    """The parts of a message that do not change from one run to another: what is left between
    the scratch paths, URLs, numbers and ``vary`` matches, those of 4 characters or more."""
    cut = "\x00"
    text = re.sub(re.escape(str(root)) + r"[^\s'\"()`,;:]*", cut, message)
    for pattern in vary:
        text = re.sub(pattern, cut, text)
    text = _URL.sub(cut, text)
    text = _NUMBER.sub(cut, text)
    return [p for p in (squash(part) for part in text.split(cut)) if len(p.strip(" .,;:()'")) >= 4]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_troubleshooting_md_quotes_what_the_cli_prints(scenario: Scenario, outcomes: dict) -> None:
    outcome = outcomes[scenario.name]
    if isinstance(outcome, BaseException):
        raise outcome
    assert outcome.code == scenario.code, (f"`streambatch {' '.join(outcome.command)}` exited {outcome.code}, "
                                           f"not {scenario.code}:\n{outcome.out}")
    doc = squash(TROUBLE_MD.read_text(encoding="utf-8"))
    for pick in scenario.pick:
        m = re.search(pick, outcome.out, re.M)
        assert m, f"no message matching {pick!r} in the output of `streambatch {' '.join(outcome.command)}`:\n{outcome.out}"
        message = m.group(1) if m.groups() else m.group(0)
        absent = [p for p in stable_parts(message, outcome.root, scenario.vary) if p not in doc]
        assert not absent, (f"docs/troubleshooting.md does not quote this message as the CLI prints it now:\n"
                            f"  {message}\nmissing: {absent}\nUpdate the doc (paths and numbers may differ).")


def test_troubleshooting_md_quotes_the_disk_and_sqlite_failures() -> None:
    """Disk-full cannot be made here; the CLI words it with describe(), checked directly."""
    doc = squash(TROUBLE_MD.read_text(encoding="utf-8"))
    full = describe(OSError(errno.ENOSPC, "No space left on device", "/x/urlhaus.streambatch/job.sqlite"))
    damaged = describe(sqlite3.DatabaseError("database disk image is malformed"), Path("/x/urlhaus.streambatch"))
    sqlite_full = describe(sqlite3.OperationalError("database or disk is full"), Path("/x/urlhaus.streambatch"))
    for message in (full, damaged, sqlite_full):
        absent = [p for p in stable_parts(message, Path("/x"), []) if p not in doc]
        assert not absent, f"docs/troubleshooting.md does not quote:\n  {message}\nmissing: {absent}"


# -- 5. the code blocks of README.md and docs/*.md ----------------------------------------------


@dataclass
class Block:
    file: Path
    line: int  # of the opening fence
    lang: str
    code: str
    directive: str | None  # "setup NAME", "skip", "pending NAME"

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.code.strip().splitlines()[0] if self.code.strip() else ""


_FENCE = re.compile(r"^```(\S*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*test:\s*(.*?)\s*-->$")


def blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        d = _DIRECTIVE.match(before)
        yield Block(path, start + 1, lang, "\n".join(body) + "\n", d.group(1) if d else None)
        i += 1


#: Languages that are shown, not run: command-line help and output.
SHOWN = {"", "text", "console"}
DOC_FILES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
ALL_BLOCKS = [b for f in DOC_FILES for b in blocks(f)]
RUN_BLOCKS = [b for b in ALL_BLOCKS if b.lang not in SHOWN]

#: The blocks that may carry ``<!-- test: skip -->``, by file and first line, with the reason.
#: In a skipped block only the commands that are not ``streambatch`` are left out.
SKIPS = {
    ("README.md", "pip install . && streambatch run data/demo-text.toml && streambatch run data/demo-text.toml"):
        "pip install cannot run here (no network, and the tests already run against the editable "
        "install); the two `streambatch run` commands after it are run",
    ("README.md", "pip install -e '.[test]' && python -m pytest -q"):
        "pip install cannot run here, and running the whole test suite inside one of its tests would recurse",
}


def test_skip_markers_are_only_on_the_blocks_listed_with_a_reason() -> None:
    marked = {(str(b.file.relative_to(ROOT)), b.first_line) for b in ALL_BLOCKS if b.directive == "skip"}
    assert marked <= set(SKIPS), f"blocks marked skip without a reason in SKIPS: {sorted(marked - set(SKIPS))}"
    assert set(SKIPS) <= marked, f"SKIPS lists blocks that no longer exist or are not marked: {sorted(set(SKIPS) - marked)}"


# setups: sample data and environment for the blocks that name them

#: name -> fn(folder, monkeypatch); it may return names for a python block's globals.
SETUPS: dict[str, Callable[[Path, pytest.MonkeyPatch], dict[str, Any] | None]] = {}


def setup(name: str) -> Callable:
    def register(fn: Callable[[Path, pytest.MonkeyPatch], None]) -> Callable:
        SETUPS[name] = fn
        return fn
    return register


@setup("threats_csv")
def _threats_csv(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "threats.csv").write_text(textwrap.dedent("""\
        indicator,kind,score,conf,labels,src,note,first,last,actor
        hxxp://bad[.]example[.]com/login,URL,4,80,phishing|login,abuse-desk,credential page,2026-10-01,2026-10-02T10:00:00Z,APT Example
        198.51.100.23,,3,,c2,sensor-7,,2026-10-01,,
        """))


@setup("export_json")
def _export_json(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "export.json").write_text(json.dumps({"meta": {"count": 2}, "data": {"items": [
        {"ioc": {"value": "bad.example.org", "type": "Host"}, "score": 2, "tags": ["c2", "botnet"]},
        {"ioc": {"value": "203.0.113.9"}, "score": 5, "tags": []}]}}))


@setup("threatfox_json")
def _threatfox_json(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "threatfox.json").write_text(json.dumps({
        "1270612": [{"ioc_value": "45.155.205.233:443", "ioc_type": "ip:port", "threat_type": "botnet_cc",
                     "malware_printable": "Cobalt Strike", "confidence_level": 75, "tags": "c2"}],
        "1270613": [{"ioc_value": "d41d8cd98f00b204e9800998ecf8427e", "ioc_type": "md5_hash", "threat_type": "payload",
                     "malware_printable": "Agent Tesla", "confidence_level": 50, "tags": None}]}))


@setup("hashes_tsv")
def _hashes_tsv(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "hashes.tsv").write_text("md5\tsha256\tname\nd41d8cd98f00b204e9800998ecf8427e\t"
                                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\tempty\n")


@setup("stix_bundle")
def _stix_bundle(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    actor, indicator = "threat-actor--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "indicator--d81f86b9-975b-4c0b-875e-810c5ad45a4f"
    stamp = {"spec_version": "2.1", "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z"}
    (folder / "bundle.json").write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": [
        {"type": "threat-actor", "id": actor, "name": "APT Example", **stamp},
        {"type": "indicator", "id": indicator, "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z",
         "pattern": "[ipv4-addr:value = '198.51.100.7'] OR [domain-name:value = 'bad.example.net']", **stamp},
        {"type": "relationship", "id": "relationship--44298a74-ba52-4f0c-87a3-1824e67d7fad",
         "relationship_type": "indicates", "source_ref": indicator, "target_ref": actor, **stamp}]}))


@setup("feed_secrets")
def _feed_secrets(folder: Path, mp: pytest.MonkeyPatch) -> None:
    mp.setenv("FEED_KEY", "k-0123456789")
    mp.setenv("FEED_TENANT", "tenant-42")
    mp.setenv("FEED_URL", "https://feeds.example.com/list.txt?apikey=k-0123456789")
    (folder / "feed.token").write_text("t-abcdefghij\n")


@setup("removal_feed")
def _removal_feed(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "blocklist.txt").write_text("bad.example.com\n203.0.113.5\n")


_SAMPLES = {"text": "203.0.113.1\nbad.example.com\n", "csv": "value\n203.0.113.1\n", "tsv": "value\n203.0.113.1\n",
            "jsonl": '{"type": "Host", "summary": "bad.example.com"}\n', "json": '[{"type": "Host", "summary": "bad.example.com"}]',
            "stix": '{"type": "bundle", "id": "bundle--1", "objects": []}'}


def _check_toml(block: Block, folder: Path, _names: dict[str, Any]) -> None:
    data = tomllib.loads(block.code)  # every TOML block parses
    if not (("source" in data or "source_env" in data) and "format" in data):
        return  # a fragment, not a feed config
    cfg = folder / "feed.toml"
    cfg.write_text(block.code)
    source = str(data.get("source", ""))
    local = source and "${" not in source and not source.lower().startswith(("http://", "https://"))
    given = local and (folder / source).exists()  # sample data from the block's setup
    if local and not given:
        (folder / source).write_text(_SAMPLES[str(data["format"]).lower()])
    config = FeedConfig.load(cfg)
    if given or (local and config.format == "text"):
        items = list(read_feed(config.source, config.format, base_dir=config.base_dir, mapping=config.mapping,
                               options={"owner": config.owner, **config.options}))
        bad = [(i.line, i.error) for i in items if i.error]
        assert items and not bad, f"{block.where}: reading the sample through this config: {bad or 'no records'}"


def _segments(code: str) -> Iterator[list[str]]:
    for line in code.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            yield shlex.split(part, comments=True)


def _run_sh(block: Block, folder: Path, _names: dict[str, Any]) -> None:
    shutil.copytree(ROOT / "data", folder / "data")
    for argv in _segments(block.code):
        if not argv or argv[0] != "streambatch":
            assert block.directive == "skip", (f"{block.where}: `{' '.join(argv)}` is not a streambatch command: "
                                               "mark the block <!-- test: skip --> and give the reason in SKIPS")
            continue
        assert not {"|", ">", ">>", "<"} & set(argv), f"{block.where}: shell redirections are not run by this test"
        done = subprocess.run([*COMMAND, *argv[1:]], cwd=folder, env=clean_env(), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"{block.where}: `{' '.join(argv)}` exited {done.returncode}:\n{done.stdout}{done.stderr}"


def _local(arg: str, folder: Path) -> str:
    """An absolute path of a deployment example, moved into the scratch folder: a feed config
    gets a sample feed, any other path a folder (holding a sample feed)."""
    if not arg.startswith("/"):
        return arg
    target = folder / arg.lstrip("/")
    if target.suffix == ".toml":
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "data" / "iocs.txt", target.parent / "iocs.txt")
        target.write_text((ROOT / "data" / "demo-text.toml").read_text())
    else:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "data" / "iocs.txt", target / "iocs.txt")
        (target / "demo.toml").write_text((ROOT / "data" / "demo-text.toml").read_text())
    return str(target)


def _run_service(argv: list[str], folder: Path, where: str) -> None:
    """Run a long-running command for a moment, then stop it as systemd would (SIGTERM)."""
    assert Path(argv[0]).name == "streambatch", f"{where}: ExecStart does not run streambatch: {argv}"
    args = [_local(a, folder) for a in argv[1:]]
    code, out, err = run_until_stopped([*COMMAND, *args], folder, clean_env())
    assert code == 0, f"{where}: `{' '.join(argv)}` exited {code}:\n{out}{err}"
    if args and args[0] == "worker":
        assert "worker stopped" in err, f"{where}: the worker did not stop on SIGTERM:\n{err}"


def _check_ini(block: Block, folder: Path, _names: dict[str, Any]) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(block.code)
    if not unit.has_option("Service", "ExecStart"):
        return
    assert {"Unit", "Service", "Install"} <= set(unit.sections()), f"{block.where}: sections {unit.sections()}"
    known = set(variables_read())
    for entry in shlex.split(unit.get("Service", "Environment", fallback="")):
        name = entry.partition("=")[0]
        assert name in known, f"{block.where}: Environment={name} is not a variable streambatch reads"
    _run_service(shlex.split(unit.get("Service", "ExecStart")), folder, block.where)


def _check_cron(block: Block, folder: Path, _names: dict[str, Any]) -> None:
    from croniter import croniter

    for line in block.code.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6 and croniter.is_valid(" ".join(fields[:5])), f"{block.where}: not a cron line: {line}"
        argv = shlex.split(fields[5])
        for i, word in enumerate(argv):  # the redirections are cron's business
            if word.startswith((">", "2>", "|")):
                argv = argv[:i]
                break
        assert argv[0] == "streambatch", f"{block.where}: the cron line does not run streambatch: {argv}"
        _run_scheduled(argv, folder, block.where)


def _run_scheduled(argv: list[str], folder: Path, where: str) -> None:
    """Run a scheduled command line (cron, a Kubernetes CronJob) once, from another working
    directory, against a scratch copy of the paths it names: it must succeed, and print
    nothing with -q when the cycle needed no look."""
    args = [_local(a, folder) for a in argv[1:]]
    done = subprocess.run([*COMMAND, *args], cwd="/", env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{where}: `{' '.join(argv)}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
    if "-q" in args:
        assert done.stdout == "", f"{where}: -q printed {done.stdout!r} for a cycle that needed no look"


def _check_yaml(block: Block, folder: Path, _names: dict[str, Any]) -> None:
    """A Kubernetes manifest: it parses (when PyYAML is installed), a CronJob's schedule is
    valid, and the container's streambatch command line runs."""
    from croniter import croniter

    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        list(yaml.safe_load_all(block.code))
    for m in re.finditer(r"^\s*schedule:\s*[\"']?([^\"'#]+?)[\"']?\s*(?:#.*)?$", block.code, re.M):
        assert croniter.is_valid(m.group(1)), f"{block.where}: schedule {m.group(1)!r} is not a cron expression"
    command = re.search(r"^\s*(?:-\s*)?command:\s*(\[.*\])\s*$", block.code, re.M)
    args = re.search(r"^\s*(?:-\s*)?args:\s*(\[.*\])\s*$", block.code, re.M)
    if not (command or args):
        return
    argv = (json.loads(command.group(1)) if command else ["streambatch"]) + (json.loads(args.group(1)) if args else [])
    assert Path(argv[0]).name == "streambatch", f"{block.where}: the container does not run streambatch: {argv}"
    _run_scheduled(["streambatch", *argv[1:]], folder, block.where)


def _exec_python(block: Block, folder: Path, names: dict[str, Any]) -> None:
    exec(compile(block.code, block.where, "exec"), {"__name__": "__doc_example__", **names})


CHECKS: dict[str, Callable[[Block, Path], None]] = {
    "python": _exec_python, "toml": _check_toml, "sh": _run_sh, "shell": _run_sh, "bash": _run_sh,
    "ini": _check_ini, "systemd": _check_ini, "cron": _check_cron, "yaml": _check_yaml, "yml": _check_yaml,
    "json": lambda b, _f, _n: json.loads(b.code),
}


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[f"{b.where}-{b.lang}" for b in RUN_BLOCKS])
def test_doc_code_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directive = block.directive or ""
    if directive.startswith("pending"):
        reason = (f"{block.where}: the example is pending ({directive[len('pending'):].strip()}): it calls "
                  "code that does not exist yet")
        if os.environ.get("STREAMBATCH_DOCS_STRICT") == "1":
            pytest.fail(reason + " (STREAMBATCH_DOCS_STRICT=1)")
        pytest.skip(reason + "; STREAMBATCH_DOCS_STRICT=1 makes this fail")
    check = CHECKS.get(block.lang)
    assert check is not None, f"{block.where}: no check for ```{block.lang} blocks: add one to CHECKS (or use ```text)"
    for name in [k for k in os.environ if k.startswith(("TC_", "STREAMBATCH_"))]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    names: dict[str, Any] = {}
    if directive.startswith("setup"):
        name = directive[len("setup"):].strip()
        assert name in SETUPS, f"{block.where}: no setup {name!r} in tests/test_reference_docs.py (SETUPS)"
        names = SETUPS[name](tmp_path, monkeypatch) or {}
    else:
        assert directive in ("", "skip"), f"{block.where}: unknown directive <!-- test: {directive} -->"
    check(block, tmp_path, names)
