"""Every zoo architecture × every lowering × batch 1, 7, 32 against PyTorch in float64, with random
weights and extreme slopes (a < 0, a = 0, a = 1, a > 1) — on ONNX Runtime, really run."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from prelu_deploy.export.lowering import LOWERINGS, lower, prelu_layers
from prelu_deploy.export.onnx_export import check, to_onnx
from prelu_deploy.models import create_model, list_models, model_config
from prelu_deploy.models.prelu import PReLU
from prelu_deploy.models.reference import reference_logits
from prelu_deploy.plugins import channel_shared_prelu as csp
from prelu_deploy.tolerances import judge

from ..models.sizes import SMALL

EXTREME = (-0.5, 0.0, 1.0, 1.7)


def _with_extreme_slopes(model):
    with torch.no_grad():
        for i, m in enumerate(m for m in model.modules() if isinstance(m, PReLU)):
            n = m.weight.numel()
            m.weight.copy_(torch.tensor([EXTREME[(i + j) % 4] for j in range(n)]))
        for m in model.modules():  # non-trivial batch-norm statistics, which the exporter folds
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


BATCHES = (1, 7, 32)
KINDS = ("prelu_shared", "prelu_channel")


def _by_input() -> list[list[str]]:
    """The zoo's architectures grouped by the input they take (model_a, b and c: 3×64×64)."""
    groups: dict[tuple, list[str]] = {}
    for name in list_models():
        cfg = model_config(name, **SMALL[name])
        groups.setdefault((cfg.in_chans, cfg.input_size), []).append(name)
    return list(groups.values())


class _Together(torch.nn.Module):
    """Models that take the same input side by side in one graph, an output each: one export (each is
    seconds of tracing) for every layer of those architectures, in both PReLU kinds."""

    def __init__(self, models):
        super().__init__()
        self.models = torch.nn.ModuleList(models)
        self.arch, self.config = models[0].arch, models[0].config  # what to_onnx reads of a zoo model

    def forward(self, x):
        return tuple(model(x) for model in self.models)


@pytest.fixture(scope="module", params=_by_input(), ids="+".join)
def exported(request):
    """(the group's models, each architecture channel-shared and channel-wise; their graph; [(inputs, fp32
    and fp64 PyTorch logits of each model)] per batch in BATCHES): the references computed once, for every lowering."""
    models = []
    for name in request.param:
        for act in KINDS:
            torch.manual_seed(len(models))  # other weights for each: nothing in the graph that two could share
            models.append(_with_extreme_slopes(create_model(name, act=act, **SMALL[name])))
    cfg, rng = models[0].config, np.random.default_rng(0)
    cases = []
    for batch in BATCHES:
        x = rng.standard_normal((batch, cfg.in_chans, cfg.input_size, cfg.input_size)).astype(np.float32)
        cases.append((x, [reference_logits(model, x) for model in models]))
    return models, to_onnx(_Together(models)), cases


@pytest.mark.parametrize("mode", LOWERINGS)
def test_parity_every_batch(exported, mode):
    models, native, cases = exported
    graph = check(lower(native, mode))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    for x, refs in cases:
        outs = session.run(None, {"images": x})
        assert len(outs) == len(refs) == len(models)
        for model, out, (ref32, ref64) in zip(models, outs, refs):
            report = judge(out, ref32, ref64)
            assert report["passed"], (model.arch, model.arch_kwargs["act"], len(x), report["failures"])
            assert report["max_abs"] <= 1e-4 * report["logit_scale"]


def _ops(graph: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in graph.graph.node]


def test_lowerings_rewrite_only_channel_shared_layers(exported):
    models, native, _ = exported
    layers = prelu_layers(native)
    n_prelu = sum(isinstance(m, PReLU) for model in models for m in model.modules())
    shared = sum(layer["shared"] for layer in layers)
    assert len(layers) == n_prelu and 0 < shared < n_prelu  # both kinds in the graph
    kinds = [model.arch_kwargs["act"] for model in models]
    assert kinds == list(KINDS) * (len(models) // 2)
    assert shared == sum(isinstance(m, PReLU) for model in models[::2] for m in model.modules())  # the channel-shared models'
    assert _ops(native).count("PRelu") == n_prelu
    leaky, plugin = lower(native, "leaky"), lower(native, "plugin")
    assert _ops(leaky).count("PRelu") == n_prelu - shared  # channel-wise layers untouched
    assert _ops(leaky).count("LeakyRelu") == shared
    assert _ops(plugin).count("PRelu") == n_prelu - shared
    custom = [n for n in plugin.graph.node if n.domain == csp.DOMAIN]
    assert len(custom) == shared and all(n.op_type == csp.OP_TYPE for n in custom)
    assert [f.name for f in plugin.functions] == [csp.OP_TYPE]
    slopes = [a.f for n in custom for a in n.attribute if a.name == "slope"]
    assert slopes == pytest.approx([layer["slope"] for layer in layers if layer["shared"]])


def test_a_graph_without_channel_shared_layers_is_left_as_it_was():
    """Nothing to rewrite (its one PReLU channel-wise): in every lowering no custom node, function or opset."""
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("PRelu", ["x", "slope"], ["y"], name="p")],
        "g",
        [value("x", onnx.TensorProto.FLOAT, [1, 3, 2, 2])],
        [value("y", onnx.TensorProto.FLOAT, [1, 3, 2, 2])],
        [numpy_helper.from_array(np.array([-0.5, 0.0, 1.7], np.float32).reshape(3, 1, 1), "slope")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    for mode in LOWERINGS:
        lowered = check(lower(model, mode))
        assert _ops(lowered) == ["PRelu"] and not lowered.functions, mode
        assert [o.domain for o in lowered.opset_import] == [""] and len(lowered.graph.initializer) == 1, mode


def test_plugin_reference_matches_the_function_body():
    x = np.random.default_rng(1).standard_normal((3, 5, 7)).astype(np.float32)
    graph = onnx.helper.make_graph(
        [csp.make_node("x", "y", -0.3, "n")],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, x.shape)],
    )
    model = onnx.helper.make_model(
        graph,
        functions=[csp.function_proto()],
        opset_imports=[onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid(csp.DOMAIN, 1)],
    )
    onnx.checker.check_model(model, full_check=True)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(out, csp.reference(x, -0.3))
    half = x.astype(np.float16)
    assert csp.reference(half, 0.25).dtype == np.float16


def test_the_plugin_node_carries_plugin_namespace():
    """TensorRT's parser finds a registered plugin by the node's plugin_namespace attribute (not its
    domain); without it TensorRT ≥ 10.15 silently takes the function body."""
    node = csp.make_node("x", "y", 0.25, "n")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert node.domain == "prelu_deploy" and attrs == {"slope": 0.25, "plugin_namespace": b"prelu_deploy"}
