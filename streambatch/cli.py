"""The ``streambatch`` command: a thin shell over the library."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import StreambatchError
from .inspect import job_summary, submission_summary


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streambatch")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Stream large threat-intelligence feeds into ThreatConnect Batch API v2 jobs.

    Records are staged in a SQLite job file, cut into size-limited batch JSON chunks and
    submitted one after another. The API is configured with TC_API_PATH and TC_API_ACCESS_ID +
    TC_API_SECRET_KEY (or TC_TOKEN); without them, commands that submit use an embedded local
    emulator of the Batch API and say so.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _announce_client(batch: Any) -> None:
    """Create the batch's API client, saying so on stderr when it is the embedded emulator."""
    quiet_library = logging.getLogger("streambatch")
    level = quiet_library.level
    quiet_library.setLevel(logging.ERROR)  # the line below says it once, without a log prefix
    try:
        client = batch.client
    finally:
        quiet_library.setLevel(level)
    if batch.emulator is not None:
        click.echo(f"No ThreatConnect API configured: using the embedded emulator at {batch.emulator.url} "
                   f"(data file {batch.emulator.db}).", err=True)
    return client


def _submit(batch: Any, quiet: bool) -> None:
    """Submit every pending chunk with progress on a terminal, then print a summary."""
    _announce_client(batch)
    total = batch.job.conn.execute("SELECT (SELECT count(*) FROM groups) + (SELECT count(*) FROM indicators) "
                                   "+ (SELECT count(*) FROM associations)").fetchone()[0]
    started = time.monotonic()
    show = not quiet and sys.stderr.isatty()
    with click.progressbar(length=total, label="records", file=sys.stderr) if show else _NoBar() as bar:
        batch.on_chunk = lambda result: bar.update(_items(result))
        batch.submit_all()
    if not quiet:
        click.echo(submission_summary(batch.job, time.monotonic() - started))


def _items(result: dict) -> int:
    return sum(int(result.get(k) or 0) for k in ("successCount", "errorCount", "unprocessCount"))


class _NoBar:
    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int) -> None:
        return None


@main.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-job"),
              show_default=True, help="Folder for the job file and its chunk files.")
@click.option("--indicators", type=click.IntRange(min=0), default=1000, show_default=True,
              help="How many synthetic indicators to stage.")
@click.option("--max-records", type=click.IntRange(min=1), default=500, show_default=True,
              help="Items per chunk file.")
@click.option("--build-only", is_flag=True, help="Build the chunk files without submitting them.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def demo(out: Path, indicators: int, max_records: int, build_only: bool, quiet: bool) -> None:
    """Stage a sample job (groups, a report, synthetic indicators) and submit it.

    Without API credentials it is submitted to the embedded emulator.
    """
    from .demo import stage_demo

    with stage_demo(out, indicators, max_records) as batch:
        if build_only:
            for p in batch.build():
                click.echo(f"chunk: {p} ({p.stat().st_size:,} bytes)")
        else:
            _submit(batch, quiet)
        click.echo(f"job file: {batch.path}")


@main.command()
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--owner", help="The job's owner (default: the owner recorded in the job file).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def submit(job_file: Path, owner: str | None, quiet: bool) -> None:
    """Submit a job file: finish what an earlier run left pending, then send every chunk."""
    from .batch import Batch

    with Batch(owner or _owner_of(job_file), job_file) as batch:
        _submit(batch, quiet)


@main.command()
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def resume(job_file: Path, quiet: bool) -> None:
    """Finish an interrupted job: say what the job file shows as pending, then do it.

    Chunks that were submitted are polled by their stored batch id (never re-sent); chunks
    built but not sent are sent; missing errors are fetched; files not uploaded are uploaded;
    records not yet chunked are chunked and sent. Content resolvers are called again only
    for the files still pending.
    """
    from .batch import Batch
    from .inspect import pending_report

    with Batch(_owner_of(job_file), job_file) as batch:
        found = pending_report(batch.job)
        click.echo("found:" if found else "nothing pending in this job file")
        for line in found:
            click.echo(f"  - {line}")
        if found:
            _submit(batch, quiet)


def _owner_of(job_file: Path) -> str:
    from .store import JobFile

    job = JobFile.open(job_file, create=False)
    try:
        owner = job.get_meta("owner")
    finally:
        job.close()
    if not owner:
        raise click.UsageError("the job file records no owner: pass --owner")
    return owner


@main.command()
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def status(job_file: Path) -> None:
    """Show a job file's submission state: chunks, batch ids, errors by code, files."""
    from .store import JobFile

    job = JobFile.open(job_file, create=False)
    try:
        click.echo(submission_summary(job))
    finally:
        job.close()


@main.command()
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def inspect(job_file: Path) -> None:
    """Show what a job file holds: records by kind, type and state, chunk files and sizes."""
    click.echo(job_summary(job_file))


class _FeedClient:
    """The API client for feed commands: from the environment, or an embedded emulator whose
    data file lives in ``data_dir`` (so consecutive runs see the same emulated instance)."""

    def __init__(self, data_dir: Path, owners: list[str]) -> None:
        from .client import ApiConfig, Client

        self.emulator = None
        config = ApiConfig.from_env()
        if config is None:
            from .emulator import Emulator

            data_dir.mkdir(parents=True, exist_ok=True)
            self.emulator = Emulator(db=data_dir / "emulator.sqlite", owner=owners[0], owners=sorted(set(owners))).start()
            click.echo(f"No ThreatConnect API configured: using the embedded emulator at {self.emulator.url} "
                       f"(data file {self.emulator.db}).", err=True)
            config = ApiConfig(self.emulator.url, self.emulator.access_id, self.emulator.secret_key)
        self.client = Client(config)

    def __enter__(self) -> Any:
        return self.client

    def __exit__(self, *exc: Any) -> None:
        self.client.close()
        if self.emulator is not None:
            self.emulator.close()


@main.command("run")
@click.argument("feed_config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def run_feed(feed_config: Path) -> None:
    """Run one cycle of a feed: read it, send only what changed, record the run.

    FEED_CONFIG is a TOML file (source, format, owner; see the README). State is kept next
    to it, in <name>.streambatch/. A cycle that was interrupted is finished first.
    """
    from .feeds.config import FeedConfig
    from .feeds.worker import FeedRunner

    import signal
    import threading

    config = FeedConfig.load(feed_config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # finish the current step, then stop
    with _FeedClient(config.state_dir, [config.owner]) as client:
        stats = FeedRunner(config, client, stop).run_cycle()
    click.echo(stats.line())
    if stats.status != "done":
        sys.exit(1)


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def worker(folder: Path) -> None:
    """Run every feed config (*.toml) in FOLDER on its own schedule until stopped.

    One cycle runs at a time; each logs one line. SIGTERM or Ctrl-C finishes the current
    step, leaves the job file to be resumed, and exits.
    """
    from .feeds.worker import Worker

    logging.getLogger("streambatch.feeds").setLevel(logging.INFO)
    w = Worker(folder)
    owners = [c.owner for c in w.configs()] or ["Demo Organization"]
    with _FeedClient(folder / ".streambatch-worker", owners) as client:
        w.client = client
        w.install_signal_handlers()
        w.run_forever()
    click.echo("worker stopped", err=True)


@main.command()
@click.argument("feed_config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def history(feed_config: Path, limit: int, as_json: bool) -> None:
    """Show a feed's recent runs and their counts."""
    import orjson

    from .feeds.config import FeedConfig
    from .feeds.state import FeedState

    config = FeedConfig.load(feed_config)
    state = FeedState(config.state_dir / "state.sqlite")
    try:
        runs = state.runs(limit)
    finally:
        state.close()
    if as_json:
        for r in runs:
            click.echo(orjson.dumps(r).decode())
        return
    cols = ("id", "status", "read", "rejected", "new", "changed", "unchanged", "repeated", "removed", "sent", "failed")
    click.echo(" ".join(f"{c:>9}" for c in cols) + "  started              seconds")
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"]))
        click.echo(" ".join(f"{str(r[c]):>9}" for c in cols) + f"  {when} {r['duration'] or 0:8.1f}")


def _add_emulator_command() -> None:
    from .emulator.cli import serve

    main.add_command(serve)


_add_emulator_command()


def run() -> None:
    """Entry point that turns streambatch errors into a one-line message and exit code 1."""
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except StreambatchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
