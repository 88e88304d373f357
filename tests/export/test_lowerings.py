"""Every zoo architecture × every lowering × batch 1, 7, 32 against PyTorch in float64, with random
weights and extreme slopes (a < 0, a = 0, a = 1, a > 1) — on ONNX Runtime, really run."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from prelu_deploy.export.lowering import LOWERINGS, lower, prelu_layers
from prelu_deploy.export.onnx_export import check, to_onnx
from prelu_deploy.models import create_model, list_models
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


@pytest.fixture(
    scope="module",
    params=[(n, act) for n in list_models() for act in ("prelu_shared", "prelu_channel")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def exported(request):
    name, act = request.param
    torch.manual_seed(0)
    model = _with_extreme_slopes(create_model(name, act=act, **SMALL[name]))
    return model, to_onnx(model)


@pytest.mark.parametrize("mode", LOWERINGS)
def test_parity_every_batch(exported, mode):
    model, native = exported
    graph = check(lower(native, mode))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    cfg = model.config
    rng = np.random.default_rng(0)
    for batch in (1, 7, 32):
        x = rng.standard_normal((batch, cfg.in_chans, cfg.input_size, cfg.input_size)).astype(np.float32)
        out = session.run(None, {"images": x})[0]
        ref32, ref64 = reference_logits(model, x)
        report = judge(out, ref32, ref64)
        assert report["passed"], (batch, report["failures"])
        assert report["max_abs"] <= 1e-4 * report["logit_scale"]


def _ops(graph: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in graph.graph.node]


def test_lowerings_rewrite_only_channel_shared_layers(exported):
    model, native = exported
    layers = prelu_layers(native)
    n_prelu = sum(isinstance(m, PReLU) for m in model.modules())
    shared = sum(layer["shared"] for layer in layers)
    assert len(layers) == n_prelu
    assert _ops(native).count("PRelu") == n_prelu
    leaky, plugin = lower(native, "leaky"), lower(native, "plugin")
    assert _ops(leaky).count("PRelu") == n_prelu - shared  # channel-wise layers untouched
    assert _ops(leaky).count("LeakyRelu") == shared
    assert _ops(plugin).count("PRelu") == n_prelu - shared
    custom = [n for n in plugin.graph.node if n.domain == csp.DOMAIN]
    assert len(custom) == shared and all(n.op_type == csp.OP_TYPE for n in custom)
    assert [f.name for f in plugin.functions] == ([csp.OP_TYPE] if shared else [])
    slopes = [a.f for n in custom for a in n.attribute if a.name == "slope"]
    assert slopes == pytest.approx([layer["slope"] for layer in layers if layer["shared"]])


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
