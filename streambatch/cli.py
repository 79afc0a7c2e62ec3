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


def _log_setting(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """An option of logging, before or after the subcommand: the last one given wins."""
    if value in (None, 0, ()):
        return
    settings = ctx.find_root().meta.setdefault("streambatch.log", {"verbose": 0, "fmt": "text", "file": None})
    settings[param.name] = value
    from .logs import configure

    configure(settings["verbose"], settings["fmt"], settings["file"])  # feed credentials are always redacted


_VERBOSE = click.option("-v", "--verbose", count=True, expose_value=False, callback=_log_setting,
                        help="More log output (-v info, -vv debug); before or after the command.")
_LOG_FORMAT = click.option("--log-format", "fmt", type=click.Choice(["text", "json"]), expose_value=False,
                           callback=_log_setting,
                           help="Log lines as text (default) or as JSON objects (time, level, logger, message, "
                                "feed, run, chunk, batch_id, event, counts).")
_LOG_FILE = click.option("--log-file", "file", type=click.Path(dir_okay=False, path_type=Path), expose_value=False,
                         callback=_log_setting,
                         help="Also write the log to this file (0600), rotated at 10 MB, 5 files kept.")


def log_options(command: Any) -> Any:
    """-v, --log-format and --log-file on a subcommand (also accepted before it)."""
    return _VERBOSE(_LOG_FORMAT(_LOG_FILE(command)))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streambatch")
@log_options
def main() -> None:
    """Stream large threat-intelligence feeds into ThreatConnect Batch API v2 jobs.

    Records are staged in a SQLite job file, cut into size-limited batch JSON chunks and
    submitted one after another. The API is configured with TC_API_PATH and TC_API_ACCESS_ID +
    TC_API_SECRET_KEY (or TC_TOKEN); without them, commands that submit use an embedded local
    emulator of the Batch API and say so.
    """
    from .logs import configure

    if not click.get_current_context().meta.get("streambatch.log"):
        configure()  # warnings and errors on stderr, feed credentials redacted


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
@log_options
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
@log_options
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--owner", help="The job's owner (default: the owner recorded in the job file).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def submit(job_file: Path, owner: str | None, quiet: bool) -> None:
    """Submit a job file: finish what an earlier run left pending, then send every chunk."""
    from .batch import Batch

    with Batch(owner or _owner_of(job_file), job_file, preflight=False) as batch:
        _submit(batch, quiet)


@main.command()
@log_options
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def resume(job_file: Path, quiet: bool) -> None:
    """Finish an interrupted job: say what the job file shows as pending, then do it.

    Chunks that were submitted are polled by their stored batch id (never re-sent); chunks
    built but not sent, or whose send failed earlier, are sent; missing errors are fetched;
    files not uploaded are uploaded; records not yet chunked are chunked and sent. Content
    resolvers are called again only for the files still pending. Chunks the API refused
    (state failed) are listed with its message and are not sent: fix the cause and run
    `streambatch retry JOB_FILE`, or give them up with `streambatch retry --drop JOB_FILE`.

    Exit status: 0 nothing left to do; 1 an error, or refused chunks remain.
    """
    from .batch import Batch
    from .inspect import pending_work, refused_report

    with Batch(_owner_of(job_file), job_file, preflight=False) as batch:
        todo, refused = pending_work(batch.job), refused_report(batch.job)
        click.echo("found:" if todo or refused else "nothing pending in this job file")
        for line in todo + refused:
            click.echo(f"  - {line}")
        if todo:
            _submit(batch, quiet)
            refused = refused_report(batch.job)
    if refused:
        sys.exit(1)


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


_RUN_HELP = "With a feed config: the job of run N (see `streambatch history`) instead of the newest."


@main.command(short_help="A job's or feed's chunks, outcome and errors by code.")
@log_options
@click.argument("job_or_feed", metavar="JOB_OR_FEED")
@click.option("--run", "run_id", type=int, metavar="N", help=_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object (see above).")
def status(job_or_feed: str, run_id: int | None, as_json: bool) -> None:
    """Show a job's submission state: chunks by state, what the API accepted, failed, warned
    about or left unprocessed (the same line a feed run prints), errors by code with a
    sample message, files, and the chunks not done with their messages.

    JOB_OR_FEED is a job file, or a feed config (a path ending in .toml): its newest run
    whose job file still exists, or run N with --run N; for a feed, the run's counts come
    first (read, rejected, new, changed, unchanged, kept alive, expired, removed, retired,
    held).

    \b
    --json prints one object:
      {"job": path, "chunks": {state: count},
       "outcome": {"sent", "accepted", "failed", "warned", "unprocessed",
                   "pending", "dropped", "rejected", "truncated",
                   "attributes_dropped"},
       "errors_by_code": [{"code", "severity", "count", "sample"}],
       "run": {"id", "status", and the run's counts} (a feed config only)}

    Exit status: 0 shown; 1 the job file or feed cannot be read.
    """
    import orjson

    from .inspect import status_data

    path, origin, row = _feed_job(job_or_feed, run_id)
    job = _open_job(path)
    try:
        if as_json:
            data = status_data(job)
            if row is not None:
                data["run"] = _run_counts(row)
            click.echo(orjson.dumps(data).decode())
            return
        if origin:
            click.echo(origin)
        if row is not None:
            counts = _run_counts(row)
            click.echo(f"run {row['id']}: " + ", ".join(f"{k.replace('_', ' ')} {counts[k]:,}" for k in (
                "read", "rejected", "new", "changed", "unchanged", "kept_alive", "expired", "removed", "retired",
                "held")))
        click.echo(submission_summary(job))
    finally:
        job.close()


@main.command()
@log_options
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object (keys below).")
def inspect(job_file: Path, as_json: bool) -> None:
    """Show what a job file holds: records by kind, type and state, chunk files and sizes.

    \b
    --json prints one object: {"job": path, "owner",
      "types": [{"kind", "type", "staged", "chunked"}],
      "associations": {"staged", "chunked"},
      "chunks": [{"id", "path", "bytes", "groups", "indicators", "associations", "state"}],
      "files": [{"source", "state", "count"}], "rejected": count}

    Exit status: 0 shown; 1 the job file cannot be read.
    """
    if not as_json:
        click.echo(job_summary(job_file))
        return
    import orjson

    from .inspect import job_stats

    job = _open_job(job_file)
    try:
        s = job_stats(job)
    finally:
        job.close()
    click.echo(orjson.dumps({
        "job": str(job_file), "owner": s["owner"],
        "types": [{"kind": k, "type": t, "staged": st, "chunked": ch} for k, t, st, ch in s["types"]],
        "associations": dict(zip(("staged", "chunked"), s["associations"])),
        "chunks": [dict(zip(("id", "path", "bytes", "groups", "indicators", "associations", "state"), c))
                   for c in s["chunks"]],
        "files": [{"source": src, "state": st, "count": n} for src, st, n in s["files"]],
        "rejected": s["rejected"]}).decode())


class CommandError(click.ClickException):
    """A command that cannot do what was asked: "error: <message>" on stderr, exit status 1
    (the same under `run()` and under click's own runner)."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _run_counts(row: dict[str, Any]) -> dict[str, Any]:
    """A feed run's counts, as the state file's ``runs`` row has them."""
    from .feeds.state import COUNTS

    return {"id": row["id"], "status": row["status"], **{k: int(row.get(k) or 0) for k in COUNTS}}


def _job_of(job_or_feed: str, run_id: int | None = None) -> tuple[Path, str | None]:
    """The job file JOB_OR_FEED names, and the line saying which feed and run (see :func:`_feed_job`)."""
    path, origin, _row = _feed_job(job_or_feed, run_id)
    return path, origin


def _feed_job(job_or_feed: str, run_id: int | None = None) -> tuple[Path, str | None, dict[str, Any] | None]:
    """The job file JOB_OR_FEED names, for status, errors, rejected and retry; and, when it
    came from a feed config, a line saying which feed and run. A path ending in ``.toml`` is a
    feed config: the job of its newest run whose job file still exists, or of run ``run_id``;
    anything else is a job file."""
    path = Path(job_or_feed)
    if path.suffix.lower() != ".toml":
        if run_id is not None:
            raise CommandError(f"--run applies to a feed config (FEED.toml), not to a job file ({path})")
        if not path.is_file():
            raise CommandError(f"{path}: no such job file (a feed config must end in .toml)")
        return path, None, None
    from .feeds.config import FeedConfig
    from .feeds.state import FeedState

    try:
        config = FeedConfig.load(path)
    except StreambatchError as exc:
        raise CommandError(str(exc)) from None
    state_file = config.state_dir / "state.sqlite"
    if not state_file.is_file():
        raise CommandError(f"feed {config.name}: no runs yet ({state_file} does not exist); "
                           f"`streambatch run {path}` runs one")
    try:
        state = FeedState(state_file)
    except StreambatchError as exc:
        raise CommandError(str(exc)) from None
    try:
        every = state.runs(-1)  # -1: all, newest first
        runs = [(r, state.job_path(r["job"])) for r in every if r.get("job")]
    finally:
        state.close()
    if run_id is not None:
        chosen = [(r, job) for r, job in runs if r["id"] == run_id]
        if not chosen:
            raise CommandError(f"feed {config.name}: no run {run_id} (`streambatch history {path}` lists them)")
        if not chosen[0][1].is_file():
            raise CommandError(f"feed {config.name}: the job file of run {run_id} ({chosen[0][1]}) no longer exists "
                               f"(a feed keeps the job files of its newest {config.retention} runs)")
    else:
        chosen = [(r, job) for r, job in runs if job.is_file()][:1]
        if not chosen:
            raise CommandError(f"feed {config.name}: " + ("no run has a job file left" if runs else "no runs yet"))
    row, job = chosen[0]
    origin = f"feed {config.name}: run {row['id']} ({row['status']}), job file {job}"
    newest = every[0]
    if run_id is None and newest["id"] != row["id"] and not newest.get("job"):  # e.g. a source found unchanged
        said = f"{newest['status']}: {newest['message']}" if newest.get("message") else newest["status"]
        origin += f"; run {newest['id']} is newer and made no job file ({said})"
    return job, origin, row


def _open_job(path: Path) -> Any:
    from .store import JobFile

    try:
        return JobFile.open(path, create=False)
    except StreambatchError as exc:
        raise CommandError(str(exc)) from None


@main.command("errors", short_help="The API's per-record errors and warnings of a job or feed.")
@log_options
@click.argument("job_or_feed", metavar="JOB_OR_FEED")
@click.option("--run", "run_id", type=int, metavar="N", help=_RUN_HELP)
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Show at most N error records.")
@click.option("--severity", type=click.Choice(["error", "warning"]), help="Only Errors, or only warnings.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout, one object per error record.")
def errors_command(job_or_feed: str, run_id: int | None, limit: int, severity: str | None, as_json: bool) -> None:
    """List the per-record errors and warnings the API reported for a job: severity, code,
    the record (type, summary or name, xid) and the API's reason. Errors come first.

    Then the chunks all of whose records count as failed without an error record each:
    the API reported errors without naming them (a job processed synchronously has no batch
    id to ask by), reported errors naming no record, or the chunk was given up.

    JOB_OR_FEED is a job file, or a feed config (a path ending in .toml): its newest run
    whose job file still exists, or run N with --run N.

    \b
    --json: one object per error record, keys
      chunk, batch_id, severity, code, xid, type, summary (a group's name),
      reason (errorReason), message (errorMessage);
    the counts and chunk notes then go to stderr.

    Exit status: 0 listed (whether or not there are errors); 1 the job file or feed cannot
    be read.
    """
    from .inspect import error_line, error_records, failure_note
    from .outcome import is_error_sql, whole_chunk_failures

    path, origin = _job_of(job_or_feed, run_id)
    job = _open_job(path)
    try:
        shown, total = error_records(job, severity, limit)
        n_errors, n_warnings = job.conn.execute(
            f"SELECT coalesce(sum({is_error_sql()}), 0), coalesce(sum(NOT {is_error_sql()}), 0) FROM errors").fetchone()
        whole = whole_chunk_failures(job)
    finally:
        job.close()
    notes = [f"chunk {w['chunk']}: {failure_note(w, feed=origin is not None)}" for w in whole]
    if severity == "error":
        counts = _plural(n_errors, "error")
    elif severity == "warning":
        counts = _plural(n_warnings, "warning")
    else:
        counts = f"{_plural(total, 'error record')} from the API: {_plural(n_errors, 'error')}, " \
                 f"{_plural(n_warnings, 'warning')}"
    _listing(shown, total, [counts, *notes], error_line, origin, as_json)


def _listing(shown: list[dict], total: int, summary: list[str], line: Any, origin: str | None,
             as_json: bool) -> None:
    """Print listed rows: JSON Lines on stdout with the summary on stderr, or one ``line(row)``
    each after the origin line, then the summary; says when ``--limit`` cut the list."""
    import orjson

    tail = ([f"... and {total - len(shown):,} more (use --limit)"] if total > len(shown) else []) + summary
    if as_json:
        for row in shown:
            click.echo(orjson.dumps(row).decode())
    else:
        if origin:
            click.echo(origin)
        for row in shown:
            click.echo(line(row))
    for text in tail:
        click.echo(text, err=as_json)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


@main.command(short_help="Input a job or feed rejected locally: line, reason, raw input.")
@log_options
@click.argument("job_or_feed", metavar="JOB_OR_FEED")
@click.option("--run", "run_id", type=int, metavar="N", help=_RUN_HELP)
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Show at most N rejected records.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout, one object per rejected record.")
def rejected(job_or_feed: str, run_id: int | None, limit: int, as_json: bool) -> None:
    """List the input a job rejected locally (it failed validation or could not be read, and
    was never sent): where it was (line, source), the reason, the raw input.

    JOB_OR_FEED is a job file, or a feed config (a path ending in .toml): its newest run
    whose job file still exists, or run N with --run N.

    \b
    --json: one object per rejected record, keys
      id, line, source, reason, raw, xid, type, field,
      raw_truncated, raw_bytes;
    the count then goes to stderr. A raw input over 64 KiB is kept cut to
    its first 64 KiB, ending in "...[cut: the first K of N bytes]"
    (raw_truncated true; raw_bytes is always the whole input's size).

    Exit status: 0 listed (whether or not anything was rejected); 1 the job file or feed
    cannot be read.
    """
    from .inspect import rejected_line, rejected_records

    path, origin = _job_of(job_or_feed, run_id)
    job = _open_job(path)
    try:
        shown, total = rejected_records(job, limit)
    finally:
        job.close()
    summary = f"{_plural(total, 'record')} rejected locally (never sent)" if total else "no records rejected locally"
    _listing(shown, total, [summary], rejected_line, origin, as_json)


@main.command()
@log_options
@click.argument("job_or_feed", metavar="JOB_OR_FEED")
@click.option("--run", "run_id", type=int, metavar="N", help=_RUN_HELP)
@click.option("--drop", is_flag=True, help="Give the refused chunks up (state dropped) instead of retrying them.")
def retry(job_or_feed: str, run_id: int | None, drop: bool) -> None:
    """Send again the chunks the API refused, or give them up with --drop.

    A chunk the API refused for a reason that does not pass by itself (HTTP 400 or 413, for
    example) is left in state failed and no run sends it again. Once the cause is fixed,
    `retry` sets it back to built, so the next `streambatch resume JOB`, `streambatch run
    FEED.toml` or worker cycle sends it. With --drop it is set to dropped: given up, never
    sent in this job; its records count as failed, so a feed sends them again in its next
    cycle, in a new job. Prints each chunk with the API's message.

    JOB_OR_FEED is a job file, or a feed config (a path ending in .toml): its newest run
    whose job file still exists, or run N with --run N. The job file's lock is taken, so a
    job that is running is never changed.

    Exit status: 0 done; 1 an error: the job file is in use by another process, or it has no
    refused chunk.
    """
    from .store import JobLock

    path, origin = _job_of(job_or_feed, run_id)
    lock = JobLock(path)
    try:
        lock.acquire()
    except StreambatchError as exc:
        raise CommandError(f"{exc} (lock file {lock.path})") from None
    try:
        job = _open_job(path)
        try:
            with job.transaction() as conn:
                rows = conn.execute("SELECT id, groups + indicators + associations, message, path FROM chunks "
                                    "WHERE state = 'failed' ORDER BY id").fetchall()
                conn.execute("UPDATE chunks SET state = ? WHERE state = 'failed'", ("dropped" if drop else "built",))
            states = dict(job.conn.execute("SELECT state, count(*) FROM chunks GROUP BY state").fetchall())
        finally:
            job.close()
    finally:
        lock.release()
    if not rows:
        held = ", ".join(f"{state} {n}" for state, n in sorted(states.items())) or "none"
        raise CommandError(f"{path}: no chunk refused by the API (state failed), nothing to retry (chunks: {held})")
    from .inspect import MESSAGE_CHARS, trim

    if origin:
        click.echo(origin)
    if drop:
        then = ("the feed sends these records again in its next cycle, in a new job" if origin
                else "never sent in this job")
    else:
        then = ("sent by the next `streambatch run` or worker cycle of this feed" if origin
                else f"sent by `streambatch resume {path}`")
    for cid, items, message, chunk_path in rows:
        click.echo(f"chunk {cid}: {_plural(items, 'record')}, refused by the API: "
                   f"{trim(message, MESSAGE_CHARS) or 'no message'}: " + ("dropped" if drop else "set back to built"))
        if not drop and not Path(chunk_path).is_file():
            click.echo(f"  warning: its chunk file {chunk_path} is missing: sending it will fail again", err=True)
    total = sum(items for _cid, items, _m, _p in rows)
    click.echo(f"{_plural(len(rows), 'chunk')} ({_plural(total, 'record')}) "
               + ("dropped: given up; " if drop else "to send again: ") + then)


class _FeedClient:
    """The API client for feed commands: from the environment, or an embedded emulator whose
    data file lives in ``data_dir`` (so consecutive runs see the same emulated instance)."""

    def __init__(self, data_dir: Path, owners: list[str], quiet: bool = False) -> None:
        from .client import ApiConfig, Client

        self.emulator = None
        config = ApiConfig.from_env()
        if config is None:
            from .emulator import Emulator

            from .store import private_dir

            private_dir(data_dir)
            self.emulator = Emulator(db=data_dir / "emulator.sqlite", owner=owners[0], owners=sorted(set(owners))).start()
            if not quiet:
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


EXIT_CODES = """Exit status: 0 the cycle finished and the API accepted every record; 1 the cycle failed or
was interrupted (nothing is lost: the next run finishes it); 2 the command line or the feed
config is wrong; 3 the cycle finished but needs a look (records failed at the API or were
accepted with warnings, every row or more than --max-rejected rows were rejected, removals
were held by max_removed, the source was empty); 4 another process is running this feed."""


def _max_rejected(_ctx: Any, _param: Any, value: str | None) -> tuple[str, float] | None:
    if value is None:
        return None
    text = value.strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100
            if not 0 <= share <= 1:
                raise ValueError
            return "share", share
        count = int(text)
        if count < 0:
            raise ValueError
        return "count", float(count)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a count (e.g. 100) or a share (e.g. 5%)") from None


def _progress_for(label: str, quiet: bool) -> Any:
    """A progress line on a terminal; log records clear it before they are written."""
    from .progress import Progress

    progress = Progress(label, enabled=False if quiet else None)
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: progress.clear() or True)
    return progress


def _load_feed(feed_config: Path) -> Any:
    from .feeds.config import ConfigError, FeedConfig

    try:
        return FeedConfig.load(feed_config)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@main.command("run", epilog=EXIT_CODES)
@log_options
@click.argument("feed_config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--allow-removal", is_flag=True,
              help="Retire records that left the feed even past max_removed, or when the source is empty.")
@click.option("--max-rejected", metavar="N|P%", callback=_max_rejected,
              help="Exit 3 when more rows than this (a count, or a share of the rows read) were rejected.")
@click.option("-q", "--quiet", is_flag=True, help="No progress; print the run line only when something needs a look.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the run as one JSON object instead of the run line (keys below).")
@click.option("--dry-run", is_flag=True,
              help="Read and check the feed and print what a cycle would do; send nothing, change no state.")
def run_feed(feed_config: Path, allow_removal: bool, max_rejected: tuple[str, float] | None, quiet: bool,
             as_json: bool, dry_run: bool) -> None:
    """Run one cycle of a feed: read it, send only what changed, record the run.

    FEED_CONFIG is a TOML file (source, format, owner; see docs/feeds.md). State is kept next
    to it, in <name>.streambatch/. A cycle that was interrupted is finished first. Progress is
    shown on a terminal; the run line says what the API accepted, what failed, what it warned
    about and what was rejected locally (`streambatch errors` / `rejected FEED_CONFIG` list them).

    \b
    --json prints one object: feed, run, status (done, failed, interrupted), exit_code,
      read, rejected, new, changed, unchanged, repeated, expired, kept_alive, removed,
      retired, held, sent, accepted, failed, warned, unprocessed (counts), duration
      (seconds), message,
      earlier (lines about interrupted runs finished first), attention (what needs a
      look), next_attempt (ISO-8601 UTC, after a failure), finishing (true when the
      interrupted run could not be finished).

    \b
    --dry-run reads, checks and diffs the feed as a cycle would (against a copy of its
    state, under the feed's lock) and prints what the cycle would do: the counts above,
    changed records with their field differences (the first 5), rejected rows with their
    reasons, the records, batch jobs and bytes it would send, what it would retire or
    delete and whether max_removed would hold it back. Nothing is sent and no state is
    changed. With --json: feed, run, dry_run, status, message, the counts, records,
    associations, jobs, bytes, deleted, not_modified, rules (whether the instance's
    rules the feed keeps were applied; they are never asked for), changes [{kind, type, summary,
    diff}], rejected_sample [{line, reason}], earlier, attention, exit_code. The exit
    status is the one the cycle would have, as far as it is known without sending.
    """
    from .errors import BusyError
    from .feeds.worker import FeedRunner

    import signal
    import threading

    config = _load_feed(feed_config)
    if dry_run:
        _dry_run(config, allow_removal, max_rejected, as_json)
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # finish the current step, then stop
    progress = _progress_for(f"feed {config.name}", quiet or as_json)
    try:
        with _FeedClient(config.state_dir, [config.owner], quiet) as client:
            stats = FeedRunner(config, client, stop, allow_removal=allow_removal, progress=progress).run_cycle()
    except BusyError as exc:
        progress.clear()
        click.echo(f"error: {exc}", err=True)
        sys.exit(4)
    progress.clear()
    code = stats.exit_code(max_rejected)
    if as_json:
        import orjson

        click.echo(orjson.dumps({**stats.as_json(), "exit_code": code}).decode())
    elif not quiet or code:
        for line in stats.earlier:
            click.echo(line)
        click.echo(stats.line())
        for line in stats.attention:
            click.echo(f"  needs a look: {line}")
    if code:
        sys.exit(code)


def _dry_run(config: Any, allow_removal: bool, max_rejected: tuple[str, float] | None, as_json: bool) -> None:
    from .errors import BusyError
    from .feeds.dryrun import dry_run

    try:
        report = dry_run(config, allow_removal)
    except BusyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(4)
    code = report.exit_code(max_rejected)
    if as_json:
        import orjson

        click.echo(orjson.dumps({**report.as_json(), "exit_code": code}).decode())
    else:
        for line in report.lines():
            click.echo(line)
    if code:
        sys.exit(code)


@main.command(epilog="Exit status: 0 when stopped by SIGTERM/SIGINT; 1 when the folder cannot be used; 2 when it "
                     "does not exist or an option is wrong.")
@log_options
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors, no progress.")
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True,
              envvar="STREAMBATCH_CONCURRENCY",
              help="How many due feeds to run at once (never one feed twice). Env: STREAMBATCH_CONCURRENCY.")
@click.option("--per-owner", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many feeds of one owner may have batch jobs in flight at once (ThreatConnect processes "
                   "an owner's jobs one after another).")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), envvar="STREAMBATCH_METRICS_PORT",
              help="Serve Prometheus metrics at http://ADDR:PORT/metrics (0: any free port, logged). "
                   "Env: STREAMBATCH_METRICS_PORT.")
@click.option("--metrics-addr", default="127.0.0.1", show_default=True,
              help="The address the metrics server listens on (0.0.0.0 to be scraped from other hosts).")
def worker(folder: Path, quiet: bool, concurrency: int, per_owner: int, metrics_port: int | None,
           metrics_addr: str) -> None:
    """Run every feed config (*.toml) in FOLDER on its own schedule until stopped.

    At start it lists the feeds and when each is next due; interrupted jobs are finished
    first. Each cycle logs one line. A failing feed is retried with a growing back-off (30 s
    doubling to 30 min, the next attempt logged); a config that does not load is logged once
    and skipped until it changes; a feed another process runs is skipped, so several workers
    may share one folder. SIGTERM or Ctrl-C finishes the current steps, leaves the job files to
    be resumed, and exits.
    """
    from .feeds.worker import Worker

    if not quiet:
        logging.getLogger("streambatch.feeds").setLevel(logging.INFO)
    metrics = None
    if metrics_port is not None:
        from .metrics import Metrics

        metrics = Metrics()
        port = metrics.serve(metrics_port, metrics_addr)
        logging.getLogger("streambatch.feeds").warning("worker: metrics at http://%s:%d/metrics", metrics_addr, port)
    w = Worker(folder, progress=_progress_for("worker", quiet), concurrency=concurrency, per_owner=per_owner,
               metrics=metrics)
    owners = [c.owner for c in w.configs()] or ["Demo Organization"]
    try:
        with _FeedClient(folder / ".streambatch-worker", owners, quiet) as client:
            w.client = client
            w.install_signal_handlers()
            w.run_forever()
    finally:
        if metrics is not None:
            metrics.close()
    click.echo("worker stopped", err=True)


@main.command()
@log_options
@click.argument("feed_config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per run (the state file's runs row; started/finished ISO-8601 UTC).")
def history(feed_config: Path, limit: int, as_json: bool) -> None:
    """Show a feed's recent runs and their counts."""
    import orjson

    from .feeds.state import FeedState

    config = _load_feed(feed_config)
    state = FeedState(config.state_dir / "state.sqlite")
    try:
        runs = state.runs(limit)
    finally:
        state.close()
    if as_json:
        from .logs import iso

        for r in runs:
            click.echo(orjson.dumps({**r, "started": iso(r["started"]), "finished": iso(r["finished"])}).decode())
        return
    cols = ("id", "read", "rejected", "new", "changed", "unchanged", "kept_alive", "expired", "removed", "retired",
            "sent", "accepted", "failed", "warned")
    click.echo(" ".join(f"{c:>9}" for c in cols) + "  started (UTC)        seconds  status")
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started"]))
        click.echo(" ".join(f"{r[c] or 0:>9,}" if c != "id" else f"{r[c]:>9}" for c in cols)
                   + f"  {when} {r['duration'] or 0:8.1f}  {r['status']}" + (f": {r['message']}" if r["message"] else ""))


def _add_emulator_command() -> None:
    from .emulator.cli import serve

    main.add_command(serve)


_add_emulator_command()


def run() -> None:
    """Entry point that turns streambatch errors, and failures of the disk or a file, into a
    one-line message and exit code 1 (130 when interrupted at a prompt or by Ctrl-C)."""
    import sqlite3

    from .failure import describe

    try:
        main.main(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:
        if isinstance(exc.__cause__, EOFError):  # click reports an EOFError as an abort
            click.echo(f"error: {describe(exc.__cause__)}", err=True)
            sys.exit(1)
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (StreambatchError, OSError, sqlite3.DatabaseError, EOFError) as exc:
        click.echo(f"error: {describe(exc)}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
