import pytest

from prelu_deploy.serve.bench import interleaved, summary


def test_summary_on_known_samples():
    s = summary([i / 1000 for i in range(1, 101)])  # 1 … 100 ms
    assert (s["n"], s["min_ms"], s["max_ms"]) == (100, pytest.approx(1.0), pytest.approx(100.0))
    assert s["median_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1) and s["p99_ms"] == pytest.approx(99.01)
    assert s["cv"] == pytest.approx(28.866 / 50.5, abs=1e-4)  # population std of 1…100 over the mean
    assert summary([0.002])["median_ms"] == pytest.approx(2.0)


def test_interleaved_runs_round_robin_after_warmup():
    calls = []
    samples = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=2, runs=3)
    assert calls == ["a", "b"] * 5 and [len(v) for v in samples.values()] == [3, 3]
