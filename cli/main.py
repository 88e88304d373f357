"""The `prelu-deploy` console script. Each subcommand lives beside the code it drives and imports its
heavy dependencies (torch, onnxruntime) only when it runs, so `--help` is instant and the server never
pulls torch in."""

import sys

import typer
from rich.console import Console
from rich.markup import escape

from prelu_deploy import __version__
from prelu_deploy.bench import cli as bench_cli
from prelu_deploy.errors import PreluDeployError
from prelu_deploy.export import cli as export_cli
from prelu_deploy.models import cli as models_cli
from prelu_deploy.runners import cli as runners_cli
from prelu_deploy.serve import cli as serve_cli

app = typer.Typer(
    name="prelu-deploy",
    help="PReLU image classifiers: train, inspect, evaluate, export to ONNX, build TensorRT engines, check parity, serve, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_cli.register(app)
export_cli.register(app)
runners_cli.register(app)
serve_cli.register(app)
bench_cli.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"prelu-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """PReLU image classifiers from checkpoint to ONNX, TensorRT and HTTP."""


def print_error(err: Exception, console: Console | None = None) -> None:
    """One red line; the message printed literally (an install hint's `[export]` is text, not markup)."""
    (console or Console(stderr=True)).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: a PreluDeployError becomes one red line on stderr and its exit code."""
    try:
        app()
    except PreluDeployError as err:
        print_error(err)
        sys.exit(err.exit_code)
