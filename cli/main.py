"""The `prelu-deploy` console script. Each subcommand lives beside the code it drives and imports its
heavy dependencies (torch, onnxruntime) only when it runs, so `--help` is instant and the server never
pulls torch in."""

import sys

import typer
from rich.console import Console
from rich.markup import escape

from prelu_deploy import __version__
from prelu_deploy.bench import cli as bench_cli
from prelu_deploy.errors import PreluDeployError, UsageError
from prelu_deploy.export import cli as export_cli
from prelu_deploy.models import cli as models_cli
from prelu_deploy.runners import cli as runners_cli
from prelu_deploy.serve import cli as serve_cli

app = typer.Typer(
    name="prelu-deploy",
    help="PReLU image classifiers: train, inspect, evaluate, export to ONNX, build TensorRT engines, check parity, serve, "
    "benchmark.",
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


# The extra (pyproject's optional dependencies) that brings each module a subcommand imports when it runs.
EXTRA_FOR = {
    "torch": "export",
    "safetensors": "export",
    "sklearn": "export",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "serve",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "pydantic": "serve",
    "prometheus_client": "serve",
    "multipart": "serve",
    "grpc": "serve",
    "tritonclient": "serve",
    "ray": "ray",
    "matplotlib": "bench",
    "tensorrt_rtx": "trt",
    "onnxconverter_common": "gpu",
    "cupy": "gpu",
}


def missing_extra(err: ModuleNotFoundError, argv: list[str]) -> UsageError | None:
    """The one message for a subcommand run where its extra is not installed: which module, which extra."""
    module = (err.name or "").split(".")[0]
    if module not in EXTRA_FOR:
        return None
    command = " ".join(a for a in argv[:2] if not a.startswith("-")) or "this command"
    return UsageError(
        f"`prelu-deploy {command}` needs {module}, which is not installed here: pip install 'prelu-deploy[{EXTRA_FOR[module]}]'"
    )


def main() -> None:
    """Entry point: a PreluDeployError becomes one red line on stderr and its exit code; a missing
    optional dependency names the extra that brings it (exit 2), never a traceback."""
    try:
        app()
    except PreluDeployError as err:
        print_error(err)
        sys.exit(err.exit_code)
    except ModuleNotFoundError as err:
        if (usage := missing_extra(err, sys.argv[1:])) is None:
            raise
        print_error(usage)
        sys.exit(usage.exit_code)


if __name__ == "__main__":
    main()
