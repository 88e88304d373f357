"""The bundled trained model: its accuracy is recomputed from the shipped file, not read from it."""

from prelu_deploy.models import load_checkpoint
from prelu_deploy.models.data import load_dataset
from prelu_deploy.models.summary import slope_report
from prelu_deploy.models.train import evaluate


def test_shipped_digits_model_reaches_98_percent(shipped):
    model, meta = load_checkpoint(shipped)
    pre = meta.preprocess
    assert pre.fit == "ink_box"  # the digits as the server sees an upload: polarity, ink crop, centred square
    result = evaluate(model, load_dataset("digits", pre.size, pre.channels, pre.fit).test, pre)
    assert result["n"] == 360
    assert result["accuracy"] >= 0.98, result
    assert abs(result["accuracy"] - meta.metrics["accuracy"]) < 1e-9  # what it claims is what it does
    assert meta.labels == [str(i) for i in range(10)]


def test_shipped_model_learned_channel_shared_slopes(shipped):
    model, _ = load_checkpoint(shipped)
    rows = slope_report(model)
    assert len(rows) == 5 and all(r["kind"] == "channel-shared" for r in rows)
    assert all(abs(r["mean"] - 0.25) > 0.01 for r in rows)
