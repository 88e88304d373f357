"""`prelu-deploy train | eval | inspect`: the model-side commands. torch is imported inside the
commands, never at module level, so the rest of the CLI starts without it."""

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from prelu_deploy.atomic import check_destination
from prelu_deploy.errors import DatasetError, UsageError

console = Console()

ArchOpt = typer.Option(None, "--arch", help="Architecture of a bare state dict (checkpoints made here record it).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("eval")(evaluate)
    app.command("inspect")(inspect)


def train(
    arch: str = typer.Option(
        ..., "--arch", help="Architecture name, e.g. digits_prelu (an unknown name lists the available ones)."
    ),
    dataset: str = typer.Option("digits", "--dataset", help="'digits' or an image folder root/<label>/*.png."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    out: Path = typer.Option(..., "--out", help="Checkpoint to write (.safetensors), atomically."),
    act: Optional[str] = typer.Option(
        None, "--act", help="prelu_channel | prelu_shared | relu | leaky (default: the architecture's)."
    ),
    width: Optional[float] = typer.Option(None, "--width", min=0.01, help="Scale every layer's width."),
    input_size: Optional[int] = typer.Option(
        None, "--input-size", min=1, help="Square input side (default: the architecture's)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(0.02, "--lr", min=0.0),
    momentum: float = typer.Option(0.9, "--momentum", min=0.0, max=1.0),
    weight_decay: float = typer.Option(5e-4, "--weight-decay", min=0.0, help="On conv/linear weights only, never on slopes."),
    shift: int = typer.Option(1, "--shift", min=0, help="Random translation augmentation in pixels (0: off)."),
    seed: int = typer.Option(0, "--seed"),
    fit: str = typer.Option(
        "stretch",
        "--fit",
        help="How an image of any size becomes the input, recorded for serving: stretch "
        "| center_crop | ink_box (digit-style: polarity, ink crop, centred "
        "square).",
    ),
    warp_copies: int = typer.Option(
        0,
        "--warp-copies",
        min=0,
        help="Add this many warped copies of each training image (shear, rotation, scale, blur; grey images).",
    ),
    glyphs: int = typer.Option(
        0, "--glyphs", min=0, help="Add this many font-drawn digits 0–9 to the training split (labels '0'..'9' only)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Train an architecture on the digits or an image folder; writes a checkpoint with its metrics."""
    from prelu_deploy.models.preprocess import FITS, Preprocess

    check_destination(out, force)  # refusals that need no torch come before importing it: they answer at once
    if fit not in FITS:
        raise UsageError(f"--fit {fit!r}: choose one of {', '.join(FITS)}")
    import torch

    from prelu_deploy.models import create_model, model_config, save_checkpoint
    from prelu_deploy.models.data import load_dataset
    from prelu_deploy.models.train import TrainConfig
    from prelu_deploy.models.train import evaluate as run_eval
    from prelu_deploy.models.train import train as run_train

    kwargs = {k: v for k, v in {"act": act, "width": width, "input_size": input_size}.items() if v is not None}
    cfg = model_config(arch, **kwargs)
    data = load_dataset(dataset, (cfg.input_size, cfg.input_size), cfg.in_chans, fit)
    kwargs["num_classes"] = len(data.labels)
    data.train = _augmented(data, warp_copies, glyphs, seed)
    preprocess = Preprocess.fitted(data.train.images, interpolation=cfg.interpolation, fit=fit)
    torch.manual_seed(seed)  # the He-initialised weights are part of what the seed fixes
    model = create_model(arch, **kwargs)
    tc = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, shift=shift, seed=seed
    )
    console.print(
        f"training [bold]{arch}[/] {kwargs} on {data.name}: {len(data.train)} train / "
        f"{len(data.test)} held-out images, {epochs} epochs, seed {seed}"
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("epochs", total=epochs)

        def on_epoch(row: dict) -> None:
            bar.advance(task)
            console.print(
                f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  held-out "
                f"{row['test_loss']:.4f} / {row['test_accuracy']:.2%}  lr {row['lr']:.2e}  "
                f"{row['seconds']:.1f}s",
                highlight=False,
            )

        summary = run_train(model, data, preprocess, tc, on_epoch)
    final = run_eval(model, data.test, preprocess)
    metrics = {"dataset": data.name, "split": "test", "accuracy": final["accuracy"], "loss": final["loss"], "n": final["n"]}
    save_checkpoint(model, out, labels=data.labels, preprocess=preprocess, metrics=metrics, training=summary)
    console.print(f"held-out accuracy [bold]{final['accuracy']:.2%}[/] ({final['correct']}/{final['n']}); wrote {out}")


def _augmented(data, warp_copies: int, glyphs: int, seed: int):
    """The training split with warped copies and font-drawn digits added (models.augment)."""
    if not (warp_copies or glyphs):
        return data.train
    import numpy as np

    from prelu_deploy.models.augment import glyph_digits, warped
    from prelu_deploy.models.data import Split

    if data.train.images.shape[-1] != 1:
        raise UsageError("--warp-copies and --glyphs are for grey (1-channel) images")
    if glyphs and data.labels != [str(i) for i in range(10)]:
        raise UsageError(f"--glyphs adds digits 0–9; {data.name} has labels {', '.join(data.labels[:12])}")
    rng = np.random.default_rng(seed)
    images, labels = [data.train.images], [data.train.labels]
    if warp_copies:
        images.append(warped(data.train.images, warp_copies, rng))
        labels.append(np.tile(data.train.labels, warp_copies))
    if glyphs:
        extra, extra_labels = glyph_digits(glyphs, data.train.images.shape[1:3], rng)
        images.append(extra)
        labels.append(extra_labels)
    return Split(np.concatenate(images), np.concatenate(labels))


def _remap_labels(data, labels: list[str]):
    """Express a dataset's label indices in the checkpoint's label order (matched by name)."""
    if data.labels == labels:
        return data
    if unknown := sorted(set(data.labels) - set(labels)):
        raise DatasetError(f"{data.name} has labels the model does not know: {', '.join(unknown)}")
    import numpy as np

    lut = np.asarray([labels.index(name) for name in data.labels], np.int64)
    data.train.labels, data.test.labels = lut[data.train.labels], lut[data.test.labels]
    data.labels = labels
    return data


def evaluate(
    ckpt: Path = typer.Argument(..., help="Checkpoint (.safetensors or PyTorch file)."),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", help="'digits' or an image folder (default: what it was trained on, if that was the digits)."
    ),
    split: str = typer.Option("test", "--split", help="test | train | all"),
    arch: Optional[str] = ArchOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Accuracy of a checkpoint on a dataset split."""
    from prelu_deploy.models.data import check_split, load_dataset

    check_split(split)  # before torch is imported and the checkpoint read
    from prelu_deploy.models import load_checkpoint
    from prelu_deploy.models.train import evaluate as run_eval

    model, meta = load_checkpoint(ckpt, arch=arch)
    dataset = dataset or (meta.metrics or {}).get("dataset")
    if dataset is None:
        raise UsageError("name the dataset: --dataset digits or --dataset PATH")
    if meta.preprocess is None:
        raise UsageError(f"{ckpt} records no preprocessing; it cannot be evaluated on images")
    pre = meta.preprocess
    data = load_dataset(dataset, pre.size, pre.channels, pre.fit)
    if meta.labels:
        data = _remap_labels(data, meta.labels)
    result = {
        "checkpoint": str(ckpt),
        "arch": meta.arch,
        "dataset": data.name,
        "split": split,
        **run_eval(model, data.split(split), pre),
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console.print(
        f"{meta.arch} on {data.name} ({split}): accuracy [bold]{result['accuracy']:.2%}[/] "
        f"({result['correct']}/{result['n']}), loss {result['loss']:.4f}"
    )


def inspect(
    ckpt: Path = typer.Argument(..., help="Checkpoint (.safetensors or PyTorch file), or a model directory."),
    arch: Optional[str] = ArchOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Architecture summary and learned PReLU slopes per layer (He et al. 2015, Table 1); of a model
    directory, its entry: platform, precision, lowering, provenance."""
    if ckpt.is_dir():
        return _inspect_entry(ckpt, as_json)
    from prelu_deploy.models import load_checkpoint
    from prelu_deploy.models.summary import slope_report, summary

    model, meta = load_checkpoint(ckpt, arch=arch)
    info = {
        "checkpoint": str(ckpt),
        "sha256": meta.sha256,
        "format_version": meta.format_version,
        **summary(model),
        "labels": meta.labels,
        "preprocess": meta.preprocess.to_dict() if meta.preprocess else None,
        "metrics": meta.metrics,
        "slopes": slope_report(model),
        "training": {k: v for k, v in (meta.training or {}).items() if k != "history"} or None,
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    head = Table(title=f"{ckpt}", show_header=False)
    for key in (
        "arch",
        "kwargs",
        "act",
        "input_shape",
        "num_classes",
        "parameters",
        "conv_layers",
        "linear_layers",
        "prelu_layers",
        "gflops_per_image",
        "labels",
        "preprocess",
        "metrics",
        "sha256",
    ):
        value = info[key]
        head.add_row(key, f"{value:,}" if isinstance(value, int) else f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(head)
    slopes = Table(title="learned PReLU slopes (a)")
    for col in ("layer", "after", "kind", "channels", "mean", "min", "max"):
        slopes.add_column(col, justify="right" if col in ("channels", "mean", "min", "max") else "left")
    for row in info["slopes"]:
        slopes.add_row(
            row["layer"],
            str(row["after"]),
            row["kind"],
            str(row["channels"]),
            f"{row['mean']:.4f}",
            f"{row['min']:.4f}",
            f"{row['max']:.4f}",
        )
    console.print(slopes if info["slopes"] else "no PReLU layers (act is " + info["act"] + ")")


def _inspect_entry(path: Path, as_json: bool) -> None:
    """A model directory as the runners and the server read it (no torch needed)."""
    from prelu_deploy.manifest import read_entry

    e = read_entry(path)
    info = {
        "model_dir": str(path),
        "name": e.name,
        "version": e.number,
        "platform": e.platform,
        "artifact": e.artifact_rel,
        "precision": e.precision,
        "lowering": e.lowering,
        "prelu_layers": f"{e.shared_prelu_count} channel-shared of {len(e.prelu_layers)}",
        "input": f"{e.input.name} {list(e.input.shape)}",
        "output": f"{e.output.name} {list(e.output.shape)}",
        "batch": f"{e.profile.min}..{e.profile.max}",
        "labels": e.labels,
        "preprocess": e.preprocess,
        "preprocess_origin": e.preprocess_origin,
        "provenance": {
            "checkpoint": e.source.checkpoint,
            "sha256": e.source.sha256,
            "arch": e.source.arch,
            "kwargs": e.source.kwargs,
            "onnx_source": e.onnx_source,
            "created": e.created,
            "opset": e.opset,
            "versions": e.versions,
        },
        "golden": {k: v for k, v in e.golden.items() if k != "negative_fraction"},
        "tensorrt": f"{e.tensorrt.flavour} {e.tensorrt.version}" if e.tensorrt else None,
        "int8": {k: e.int8.get(k) for k in ("method", "calibration", "tolerance_holds")} if e.int8 else None,
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    table = Table(title=str(path), show_header=False)
    for key, value in info.items():
        if value is not None and key != "model_dir":
            table.add_row(key, "\n".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else str(value))
    console.print(table)
