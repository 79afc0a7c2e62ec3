"""Feed credentials (user info and query values of a source URL, header values) never surface:
not on stdout or stderr at any verbosity, not in the state, job or history files, not in reprs,
exception texts or their chains. They can come from the environment or a file instead of the
TOML."""

from __future__ import annotations

import os
import re
import subprocess
import traceback
from collections.abc import Iterator
from pathlib import Path

import feed_cli
import pytest
from local_server import serve
from werkzeug.wrappers import Request, Response

from streambatch.emulator import Emulator
from streambatch.errors import StreambatchError
from streambatch.feeds import redact
from streambatch.feeds.config import ConfigError, FeedConfig
from streambatch.feeds.readers import read_feed

OWNER = "Demo Organization"
PASSWORD = "hunter2pass"
USER = "feeduser77"
APIKEY = "S3CRETKEY123"
HEADER = "HEADERSECRET99"
SECRETS = (PASSWORD, USER, APIKEY, HEADER)


class FeedApp:
    def __init__(self) -> None:
        self.seen: list[dict] = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.seen.append({"key": request.args.get("apikey"), "header": request.headers.get("X-Api-Key"),
                          "auth": request.authorization.password if request.authorization else None})
        if request.args.get("apikey") != APIKEY or request.headers.get("X-Api-Key") != HEADER:
            return Response("no", status=403)(environ, start_response)
        return Response("10.93.0.1\n10.93.0.2\nbad row here\n", headers={"ETag": '"v1"'})(environ, start_response)


@pytest.fixture
def feed_url() -> Iterator[tuple[str, FeedApp]]:
    app = FeedApp()
    with serve(app) as base:
        host = base.split("://", 1)[1]
        yield f"http://{USER}:{PASSWORD}@{host}/feed.txt?apikey={APIKEY}&fmt=txt", app


def _cli(tc: Emulator, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return feed_cli.cli(tc, *args, cwd=cwd, timeout=120, **env)


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


def _files_leaking(root: Path) -> dict[str, list[str]]:
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.name.endswith(".toml") and path.name != "emu.sqlite":
            leaks = _leaks(path.read_bytes())
            if leaks:
                out[str(path)] = leaks
    return out


def test_no_secret_in_any_output_or_file_of_a_verbose_run(tmp_path: Path, feed_url) -> None:
    url, app = feed_url
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "{url}"\nformat = "text"\nowner = "{OWNER}"\nhistory_jsonl = "history.jsonl"\n'
                   f'[options]\nheaders = {{X-Api-Key = "{HEADER}"}}\n[batch]\npoll_interval = 0.02\n')
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        outputs = []
        for _ in range(2):  # a download, then a conditional GET (304 path)
            run = _cli(tc, "-vv", "run", str(cfg), cwd=tmp_path)
            outputs += [run.stdout, run.stderr]
            assert run.returncode == 0, run.stdout + run.stderr
        assert "GET /feed.txt" in "".join(outputs)  # the HTTP library's request line is logged ...
        assert "apikey=***" in "".join(outputs)  # ... with the key's value replaced
        for command in (["history", str(cfg)], ["history", "--json", str(cfg)], ["rejected", str(cfg)],
                        ["status", str(cfg)], ["errors", str(cfg)]):
            shown = _cli(tc, "-vv", *command, cwd=tmp_path)
            outputs += [shown.stdout, shown.stderr]
        assert tc.store.count(OWNER, "indicator") == 2
    assert app.seen[0] == {"key": APIKEY, "header": HEADER, "auth": PASSWORD}  # the secrets were used
    assert [o for o in outputs if _leaks(o)] == []
    assert _files_leaking(tmp_path) == {}


def test_failures_do_not_show_secrets(tmp_path: Path, feed_url) -> None:
    url, _app = feed_url
    cfg = tmp_path / "feed.toml"
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        cases = {
            "bad port": (re.sub(r"@127\.0\.0\.1:\d+/", "@127.0.0.1:99999/", url), ""),
            "refused key": (url.replace(APIKEY, APIKEY + "x"), ""),
            "nothing listens": (url.split("@")[0] + "@127.0.0.1:9/feed.txt?apikey=" + APIKEY, ""),
            "bad header value": (url, f'[options]\nheaders = {{X-Api-Key = "{HEADER}\\n"}}\n'),
        }
        for name, (source, extra) in cases.items():
            cfg.write_text(f'source = "{source}"\nformat = "text"\nowner = "{OWNER}"\n'
                           f'history_jsonl = "history.jsonl"\n{extra}')
            for verbosity in ([], ["-vv"]):
                run = _cli(tc, *verbosity, "run", str(cfg), cwd=tmp_path)
                assert run.returncode in (1, 2), (name, run.stdout + run.stderr)
                assert _leaks(run.stdout + run.stderr) == [], (name, run.stdout + run.stderr)
                assert "Traceback" not in run.stderr, (name, run.stderr)
            history = _cli(tc, "history", "--json", str(cfg), cwd=tmp_path)
            assert _leaks(history.stdout + history.stderr) == [], name
    assert _files_leaking(tmp_path) == {}


def test_reprs_and_exception_chains_are_redacted(tmp_path: Path) -> None:
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:9/feed.txt?apikey={APIKEY}"
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "{url}"\nformat = "text"\nowner = "{OWNER}"\n'
                   f'[options]\nheaders = {{X-Api-Key = "{HEADER}"}}\n')
    config = FeedConfig.load(cfg)
    assert config.source == url  # the real value is there to be used ...
    assert _leaks(repr(config)) == [] and "127.0.0.1:9/feed.txt" in repr(config)  # ... never shown
    with pytest.raises(StreambatchError) as info:
        list(read_feed(config.source, "text", options=config.options))
    chain = "".join(traceback.format_exception(info.value))
    assert _leaks(chain) == [], chain


def test_redaction_keeps_scheme_host_port_and_path() -> None:
    assert redact.url(f"https://{USER}:{PASSWORD}@feeds.example.com:8443/a/b.csv?apikey={APIKEY}&limit=5") == \
        "https://***@feeds.example.com:8443/a/b.csv?apikey=***&limit=***"
    assert redact.url("http://u:p@h:99999/x?k") == "http://***@h:99999/x?***"  # a bad port is no crash
    line = f'http://127.0.0.1:80 "GET /feed.txt?apikey={APIKEY} HTTP/1.1" 200 None'
    assert APIKEY not in redact.text(line) and "/feed.txt?apikey=***" in redact.text(line)


def test_secrets_from_the_environment_and_a_file(tmp_path: Path, feed_url) -> None:
    url, app = feed_url
    base, query = url.split("?", 1)
    (tmp_path / "header.secret").write_text(HEADER + "\n")
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'source = "{base.replace(PASSWORD, "${FEED_PASSWORD}")}?apikey=${{FEED_KEY}}"\n'
                   f'format = "text"\nowner = "{OWNER}"\n'
                   '[options]\nheaders = {X-Api-Key = "${file:header.secret}"}\n[batch]\npoll_interval = 0.02\n')
    assert set(_leaks(cfg.read_text())) == {USER}  # the password, key and header value are not in it
    with Emulator(db=tmp_path / "emu.sqlite") as tc:
        run = _cli(tc, "run", str(cfg), cwd=tmp_path, FEED_PASSWORD=PASSWORD, FEED_KEY=APIKEY)
        assert run.returncode == 0, run.stdout + run.stderr
        assert tc.store.count(OWNER, "indicator") == 2
        missing = _cli(tc, "run", str(cfg), cwd=tmp_path, FEED_PASSWORD=PASSWORD)
        assert missing.returncode == 2 and "FEED_KEY" in missing.stderr
    assert app.seen[0] == {"key": APIKEY, "header": HEADER, "auth": PASSWORD}

    env_cfg = tmp_path / "env.toml"
    env_cfg.write_text(f'source_env = "FEED_URL"\nformat = "text"\nowner = "{OWNER}"\n'
                       '[options]\nheaders_env = {X-Api-Key = "FEED_HEADER"}\n')
    os.environ.update(FEED_URL=url, FEED_HEADER=HEADER)
    try:
        config = FeedConfig.load(env_cfg)
    finally:
        del os.environ["FEED_URL"], os.environ["FEED_HEADER"]
    assert config.source == url and config.options["headers"] == {"X-Api-Key": HEADER}
    with pytest.raises(ConfigError, match="FEED_URL"):
        FeedConfig.load(env_cfg)
