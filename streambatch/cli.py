"""The ``streambatch`` command: a thin shell over the library."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .errors import StreambatchError
from .inspect import job_summary


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streambatch")
def main() -> None:
    """Stream large threat-intelligence feeds into ThreatConnect Batch API v2 jobs.

    Records are staged in a SQLite job file and cut into size-limited batch JSON chunks.
    """


@main.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-job"),
              show_default=True, help="Folder for the job file and its chunk files.")
@click.option("--indicators", type=click.IntRange(min=0), default=1000, show_default=True,
              help="How many synthetic indicators to stage.")
@click.option("--max-records", type=click.IntRange(min=1), default=500, show_default=True,
              help="Items per chunk file.")
def demo(out: Path, indicators: int, max_records: int) -> None:
    """Build a sample batch: a few groups and synthetic indicators, cut into chunk files."""
    from .demo import build_demo

    job, paths = build_demo(out, indicators, max_records)
    click.echo(f"job file: {job}")
    for p in paths:
        click.echo(f"chunk: {p} ({p.stat().st_size:,} bytes)")
    click.echo(job_summary(job))


@main.command()
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def inspect(job_file: Path) -> None:
    """Show what a job file holds: records by kind, type and state, chunk files and sizes."""
    click.echo(job_summary(job_file))


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
