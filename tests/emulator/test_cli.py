"""``serve``: prints the URL and credentials, serves, and stops on Ctrl-C."""

from __future__ import annotations

from click.testing import CliRunner

from streambatch.emulator import cli


def _interrupted() -> None:
    raise KeyboardInterrupt


def test_serve_prints_url_and_credentials(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cli, "_block", _interrupted)  # Ctrl-C as soon as it is serving
    db = tmp_path / "emu.sqlite"
    result = CliRunner().invoke(cli.serve, ["--port", "0", "--db", str(db), "--access-id", "AID",
                                            "--secret-key", "SK", "--token", "TOK", "--owner", "My Org"])
    assert result.exit_code == 0, result.output
    assert "TC_API_PATH=http://127.0.0.1:" in result.output and "/api\n" in result.output
    assert "TC_API_ACCESS_ID=AID" in result.output and "TC_API_SECRET_KEY=SK" in result.output
    assert "TC_TOKEN=TOK" in result.output and "TC_OWNER=My Org" in result.output
    assert db.exists()


def test_serve_takes_the_instance_rules_from_a_file(tmp_path, monkeypatch) -> None:
    import json

    import requests

    started: list = []
    seen: dict = {}

    class Recorded(cli.Emulator):
        def start(self):
            started.append(self)
            return super().start()

    def look() -> None:  # while serving: what the control route says, then Ctrl-C
        seen.update(requests.get(started[0].base + "/_emulator/rules", timeout=10).json())
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "Emulator", Recorded)
    monkeypatch.setattr(cli, "_block", look)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"attribute_types": [{"name": "Description", "maxSize": 10}],
                                 "exclusion_lists": [{"name": "Indicator-Host", "fixed": ["a.example.com"]}]}))
    result = CliRunner().invoke(cli.serve, ["--port", "0", "--db", str(tmp_path / "emu.sqlite"), "--rules", str(rules)])
    assert result.exit_code == 0, result.output
    assert [(t["name"], t["maxSize"]) for t in seen["attribute_types"]] == [("Description", 10)]
    assert seen["exclusion_lists"][0]["fixedValues"]["data"] == [{"value": "a.example.com"}]
    rules.write_text(json.dumps({"exclusions": []}))
    bad = CliRunner().invoke(cli.serve, ["--port", "0", "--db", str(tmp_path / "emu2.sqlite"), "--rules", str(rules)])
    assert bad.exit_code == 2 and "keys among custom_indicator_types" in bad.output
