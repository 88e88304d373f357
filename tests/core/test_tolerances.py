"""The one judge of runner logits (prelu_deploy.tolerances.judge) that parity, the server's gate and
quantize all use: its numbers on known inputs, the margin filter, and the held-out accuracy bound."""

import numpy as np

from prelu_deploy.tolerances import TOLERANCES, cosines, judge, judged_rows


def test_cosines_row_by_row():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(cosines(a, np.array([[2.0, 0.0], [1.0, -1.0]])), [1.0, 0.0], atol=1e-12)


def test_a_flip_fails_only_beyond_the_margin():
    ref = np.array([[10.0, 9.999, 0.0], [10.0, 2.0, 0.0]])  # row 0: a near-tie; row 1: decided
    near_tie = ref[:, [1, 0, 2]].copy()
    near_tie[1] = ref[1]
    r = judge(near_tie.astype(np.float32), ref.astype(np.float32), ref, "int8")
    assert r["top1_flips"] == 1 and r["top1_flips_beyond_margin"] == 0 and r["passed"]
    decided = ref.copy()
    decided[1] = [2.0, 10.0, 0.0]
    r = judge(decided.astype(np.float32), ref.astype(np.float32), ref, "int8")
    assert r["top1_flips_beyond_margin"] == 1 and not r["passed"] and "top-1 flips" in r["failures"][0]


def test_numbers_and_the_fp32_bound():
    ref = np.array([[4.0, -2.0], [1.0, 3.0]])
    out = ref + np.array([[6e-4, 0.0], [0.0, 0.0]])
    r = judge(out.astype(np.float32), ref.astype(np.float32), ref, "fp32")
    assert r["logit_scale"] == 4.0 and abs(r["max_abs"] - 6e-4) < 1e-6 and not r["passed"]  # 6e-4 > 1e-4 × 4
    assert r["failures"][0].startswith("max abs error") and judge(ref, ref, ref)["passed"]


def test_held_out_accuracy_drop_is_judged_with_labels():
    ref = np.eye(3)[[0, 1, 2, 0]] * 5.0
    out = ref.copy()
    out[0] = [0.0, 5.0, 0.0]  # one of four labelled rows wrong: a 25-point drop
    r = judge(out, ref, ref, "int8", labels=np.array([0, 1, 2, 0]))
    assert r["accuracy"] == {"runner": 0.75, "reference": 1.0}
    assert not r["passed"] and any("accuracy drop 25.00 points" in f for f in r["failures"])
    assert TOLERANCES["int8"].max_accuracy_drop == 0.005


def test_int8_judges_only_real_images():
    real = np.array([True, False, True])
    assert judged_rows(real, "int8").tolist() == [True, False, True] and judged_rows(real, "fp16").all()
