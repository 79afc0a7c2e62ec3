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
