"""``streambatch serve``: run the emulator in the foreground until Ctrl-C.

The command object :data:`serve` is a plain click command; the main CLI attaches it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import click

from .emulator import Emulator


def _block() -> None:
    """Sleep until interrupted (Ctrl-C raises KeyboardInterrupt)."""
    threading.Event().wait()


RULE_KEYS = ("custom_indicator_types", "attribute_types", "exclusion_lists")


def _rules(path: str | None) -> dict[str, Any]:
    """The Emulator arguments a --rules file gives."""
    if path is None:
        return {}
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--rules") from None
    if not isinstance(doc, dict) or set(doc) - set(RULE_KEYS):
        raise click.BadParameter(f"{path}: a JSON object with keys among {', '.join(RULE_KEYS)}",
                                 param_hint="--rules")
    return doc


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8181, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--db", default="emulator.sqlite", show_default=True, type=click.Path(dir_okay=False),
              help="SQLite file holding the emulated instance's data and jobs.")
@click.option("--access-id", default=None, help="HMAC access id to accept (random if not given).")
@click.option("--secret-key", default=None, help="HMAC secret key to accept (random if not given).")
@click.option("--token", default=None, help="API token to accept (random if not given).")
@click.option("--owner", default="Demo Organization", show_default=True, help="Default owner name.")
@click.option("--sync-limit", default=100, show_default=True, type=int,
              help="createAndUpload jobs with at most this many items are processed inline.")
@click.option("--rate", default=None, type=float, help="Queued-job processing speed in records/s (default: unthrottled).")
@click.option("--max-upload-bytes", default=100_000_000, show_default=True, type=int, help="Upload size limit.")
@click.option("--bare-running/--enveloped-running", default=True, show_default=True,
              help="Answer Running polls with the documented bare {\"status\":\"Running\"}, or enveloped "
                   "like the other replies.")
@click.option("--no-auth", is_flag=True, help="Accept requests without credentials.")
@click.option("--rules", "rules_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A JSON file with the instance's own rules: custom_indicator_types, attribute_types, "
                   "exclusion_lists (see docs/rules.md).")
@click.option("--remote-control", is_flag=True,
              help="Answer the /_emulator/ control routes (no credentials: reset, state, request log) from "
                   "any client, not only loopback ones.")
def serve(host: str, port: int, db: str, access_id: str | None, secret_key: str | None, token: str | None,
          owner: str, sync_limit: int, rate: float | None, max_upload_bytes: int, bare_running: bool,
          no_auth: bool, rules_file: str | None, remote_control: bool) -> None:
    """Serve a local ThreatConnect Batch API v2 emulator until interrupted.

    The data file (--db) is created 0600 and is never opened through a symbolic link.
    """
    emulator = Emulator(
        db=db, host=host, port=port, owner=owner, access_id=access_id, secret_key=secret_key, token=token,
        synchronous_batch_save_limit=sync_limit, rate=rate, max_upload_bytes=max_upload_bytes,
        bare_running=bare_running, auth=not no_auth, remote_control=remote_control, **_rules(rules_file))
    with emulator as tc:
        click.echo(f"ThreatConnect Batch API emulator listening on {tc.base}")
        click.echo(f"TC_API_PATH={tc.url}")
        click.echo(f"TC_API_ACCESS_ID={tc.access_id}")
        click.echo(f"TC_API_SECRET_KEY={tc.secret_key}")
        click.echo(f"TC_TOKEN={tc.token}")
        click.echo(f"TC_OWNER={tc.owner}")
        click.echo(f"data file: {tc.db}  (Ctrl-C to stop)")
        try:
            _block()
        except KeyboardInterrupt:
            click.echo("stopping")
