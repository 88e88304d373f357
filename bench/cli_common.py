"""What bench's commands share (bench.cli, bench.cli_load): the consoles and the progress log, comma-list
options, the report folder checked before a run, the table (its columns, a level's error counts) and the
reports written after it, and the options of more than one command."""

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from prelu_deploy.errors import UsageError

console = Console()
err_console = Console(stderr=True)


def comma_list(option: str, value: str, kind=str) -> list:
    """The values of a comma-list option, each made a `kind`, in order without repeats; UsageError (exit 2) naming it."""
    try:
        items = [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option}: {value!r} is not a comma-separated list of {kind.__name__}s") from None
    if not items:
        raise UsageError(f"{option}: give at least one value")
    return list(dict.fromkeys(items))


def log(msg: str) -> None:
    """A run's progress, on stderr: stdout holds the table or the JSON report."""
    err_console.print(msg, highlight=False)


def report_dir(out: Path, plot: bool) -> Path:
    """Refuse before the run, not after it: an unwritable report folder, or --plot without matplotlib."""
    from prelu_deploy.bench.plots import check_plotting

    existing = next(p for p in [out, *out.absolute().parents] if p.exists())  # made when the reports are written
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"--out {out}: cannot create the report folder ({existing} is not a writable folder)")
    if plot:
        check_plotting()
    return out


def table(title: str, columns: tuple[str, ...], left: tuple[str, ...] = ()) -> Table:
    """A command's table: its columns right-aligned (numbers), but those in `left`."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right")
    return t


def error_counts(errors: dict, none: str = "0") -> str:
    """A level's failed requests by status, e.g. "503 ×2, timeout ×1"; `none` where there were none."""
    return ", ".join(f"{k} ×{v}" for k, v in errors.items()) or none


def error_cell(errors: dict) -> str:
    """error_counts in a table: red where there were any."""
    return f"[red]{error_counts(errors)}[/]" if errors else error_counts(errors)


def finish(report: dict, raw: dict, out: Path, plot: bool, as_json: bool, shown: Table, markdown=None) -> None:
    """The reports written (JSON, Markdown, with `plot` PNG), then `shown` (a table) or with `as_json` the JSON."""
    from prelu_deploy.bench.report import environment, write

    report.update(environment())
    paths = write(report, raw, out, plot, markdown)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(shown)
        for p in paths:
            console.print(f"wrote {p}", highlight=False)


OutOpt = typer.Option(Path("bench-reports"), "--out", help="Folder for the JSON, Markdown and PNG reports.")
PlotOpt = typer.Option(False, "--plot", help="Also write PNG charts (needs matplotlib: the 'bench' extra).")
JsonOpt = typer.Option(False, "--json", help="Print the JSON report instead of the table.")
# the load options `bench http` and `bench serving` share
ConcurrencyOpt = typer.Option("1,8,64", "--concurrency", help="Comma list of concurrent clients per level.")
DataOpt = typer.Option(
    "random",
    "--data",
    help="random | a .npy/.npz of input tensors (e.g. a model directory's golden.npz) "
    "| a folder of images (sent one per request to /v1/models/NAME/classify).",
)
