"""What bench's commands share (bench.cli, bench.cli_load): the consoles, comma-list options, the report
folder checked before a run and the reports written after it, and the options of more than one command."""

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


def report_dir(out: Path, plot: bool) -> Path:
    """Refuse before the run, not after it: an unwritable report folder, or --plot without matplotlib."""
    from prelu_deploy.bench.report import check_plotting

    existing = next(p for p in [out, *out.absolute().parents] if p.exists())  # made when the reports are written
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"--out {out}: cannot create the report folder ({existing} is not a writable folder)")
    if plot:
        check_plotting()
    return out


def finish(report: dict, raw: dict, out: Path, plot: bool, as_json: bool, table: Table, markdown=None) -> None:
    from prelu_deploy.bench.report import environment, write

    report.update(environment())
    paths = write(report, raw, out, plot, markdown)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(table)
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
