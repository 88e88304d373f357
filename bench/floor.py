"""The HTTP floor: a model entry that does no work, for `bench http` to measure what the server
itself costs. It copies a model entry under `<name>_floor` with a graph that only flattens the
images and slices the first `classes` values out as logits (two ops, no arithmetic), its golden
logits recomputed for that graph, so it passes the server's parity gate and serves on any backend
and device like the original. A server whose requests/s on the real model come close to its
requests/s on this one is no longer limited by the model.

    python -m prelu_deploy.bench.floor MODEL_DIR [--repo REPO]   # writes REPO/<name>_floor
"""

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from prelu_deploy.errors import UsageError
from prelu_deploy.export.entry_writer import writing_entry
from prelu_deploy.export.onnx_file import pinned, save
from prelu_deploy.manifest import ONNX, read_entry


def floor_graph(input_name: str, dims: list[int], output_name: str, classes: int, opset: int = 18) -> onnx.ModelProto:
    if int(np.prod(dims)) < classes:
        raise UsageError(f"an input of {dims} holds fewer values than the {classes} logits the floor model slices out")
    consts = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("zero", 0), ("classes", classes), ("one", 1))]
    nodes = [
        helper.make_node("Flatten", [input_name], ["flat"], axis=1),
        helper.make_node("Slice", ["flat", "zero", "classes", "one"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "floor",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", *dims])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", classes])],
        consts,
    )
    model = pinned(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    onnx.checker.check_model(model, full_check=True)
    return model


def make_floor_entry(model_dir: str | Path, repo: str | Path | None = None) -> Path:
    """REPO/<name>_floor (default: beside MODEL_DIR), replacing an earlier one."""
    entry = read_entry(model_dir).verified()
    if entry.is_plan:
        raise UsageError(f"{entry.path}: make the floor model from the ONNX entry")
    classes = entry.output.dims[0]
    name = f"{entry.name}_floor"
    dest = Path(repo or entry.path.parent) / name
    golden = entry.golden_io()
    flat = golden["inputs"].reshape(len(golden["inputs"]), -1)[:, :classes]
    with np.load(entry.golden_path) as z:
        rest = {k: z[k] for k in z.files}
    with writing_entry(dest, force=True) as stage:  # an earlier floor is replaced in one step
        save(floor_graph(entry.input.name, entry.input.dims, entry.output.name, classes), stage / ONNX)
        stage.golden(**{**rest, "logits": flat.astype(np.float32), "logits_fp64": flat.astype(np.float64)})
        stage.finish(replace(entry, name=name, flops_per_image=0))
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--repo", default=None, help="where to write <name>_floor (default: beside MODEL_DIR)")
    args = parser.parse_args()
    print(make_floor_entry(args.model_dir, args.repo))


if __name__ == "__main__":
    main()
