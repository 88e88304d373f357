"""`prelu-deploy export`: checkpoint → model directory."""

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    ckpt: Path = typer.Argument(..., help="Checkpoint (.safetensors or PyTorch file)."),
    name: str = typer.Option(..., "--name", help="Model name: the folder under --repo and the served name."),
    repo: Path = typer.Option(Path("model_repository"), "--repo", help="Model repository (Triton layout)."),
    prelu_mode: str = typer.Option("native", "--prelu-mode", help="native (PRelu) | plugin (ChannelSharedPReLU custom op) | leaky (LeakyRelu)."),
    opset: int = typer.Option(18, "--opset", min=18, help="ONNX opset of the graph."),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="Triton max_batch_size; the graph's batch stays dynamic."),
    force: bool = typer.Option(False, "--force", help="Replace an existing model directory."),
) -> None:
    """Export a checkpoint to <repo>/<name>/: ONNX graph, manifest with golden I/O, Triton config."""
    from prelu_deploy.export.model_dir import export_model_dir
    from prelu_deploy.manifest import read_model_dir

    dest = export_model_dir(ckpt, name, repo, prelu_mode, opset, max_batch, force)
    m = read_model_dir(dest).manifest
    shared = sum(layer["shared"] for layer in m["prelu"]["layers"])
    console.print(f"exported {m['source']['arch']} → [bold]{dest}[/] (lowering {prelu_mode}: {shared} channel-shared "
                  f"of {len(m['prelu']['layers'])} PReLU layers, {m['golden']['count']} golden inputs)", highlight=False)
