"""Parity tolerances, one per precision, and the one judge that applies them: what `parity`, the
server's gate, `quantize` and per-layer parity all judge by (here, at the bottom of the house, NumPy
only, so export and runners read the same numbers and the same rules)."""

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    max_abs_of_scale: float | None  # max |runner − float64 reference| ≤ this × max |reference logit| (None: reported only)
    min_cosine: float | None  # (None: reported only)
    margin_eps: float  # of the logit scale: rows whose top-1/top-2 margin is below it may flip
    min_top1: float = 1.0  # top-1 agreement with PyTorch over the rows beyond that margin
    max_accuracy_drop: float | None = None  # held-out accuracy, PyTorch minus runner (when labels are known)
    layer_min_cosine: float | None = None  # per-layer parity of INT8 graphs: a layer's cosine to PyTorch's

    def describe(self) -> str:
        gates = (
            ([f"max abs ≤ {self.max_abs_of_scale:g} × logit scale"] if self.max_abs_of_scale is not None else [])
            + ([f"cosine ≥ {self.min_cosine}"] if self.min_cosine is not None else [])
            + [f"top-1 agreement ≥ {self.min_top1:.0%} where PyTorch's margin > {self.margin_eps:g} × scale"]
            + (
                [f"held-out accuracy drop ≤ {100 * self.max_accuracy_drop:g} points"]
                if self.max_accuracy_drop is not None
                else []
            )
        )
        return "; ".join(gates)


# fp32, tf32 and fp16 judge the numbers themselves; int8 (export.quantize) the answers, as INT8 deployments
# are judged. tf32 sits between fp32 and fp16: loose enough for TF32's rounding of the inputs to each
# multiply, tight enough to catch a real divergence (docs/gpu.md: the errors it is set against).
TOLERANCES = {
    "fp32": Tolerance(1e-4, 0.99999, 1e-3),
    "tf32": Tolerance(2e-3, 0.9999, 1e-2),
    "fp16": Tolerance(1e-2, 0.999, 5e-2),
    "int8": Tolerance(None, None, 5e-2, min_top1=0.99, max_accuracy_drop=0.005, layer_min_cosine=0.99),
}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity of two same-shape batches (computed in float64)."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300)


def judged_rows(real: np.ndarray, precision: str) -> np.ndarray:
    """The rows a tolerance class judges: all of them, or for INT8 the real images only."""
    return real if precision == "int8" else np.ones_like(real)


def judge(
    out: np.ndarray, ref32: np.ndarray, ref64: np.ndarray, precision: str = "fp32", labels: np.ndarray | None = None
) -> dict:
    """The one judgement of a runner's logits against the reference (float64: the truth; float32: the
    noise floor any float32 runner shares) by its precision's tolerance: every number, the failures
    and the verdict. A top-1 flip fails only where the reference's top-1/top-2 margin exceeds
    `margin_eps` of the logit scale (near-ties flip legitimately at lower precision). `labels`, for the
    first len(labels) rows, adds held-out accuracy and its allowed drop."""
    tol = TOLERANCES[precision]
    out64 = out.astype(np.float64)
    scale = float(np.abs(ref64).max()) or 1.0
    err = np.abs(out64 - ref64)
    cos = cosines(out64, ref64)
    top2 = np.sort(ref64, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > tol.margin_eps * scale
    flips = out.argmax(1) != ref64.argmax(1)
    agreement_decided = 1 - (flips & decided).sum() / max(int(decided.sum()), 1)
    k = min(5, ref64.shape[1])
    top5 = np.mean([len(set(a) & set(b)) / k for a, b in zip(np.argsort(-out64, 1)[:, :k], np.argsort(-ref64, 1)[:, :k])])
    report = {
        "n": len(out),
        "precision": precision,
        "logit_scale": scale,
        "tolerance": asdict(tol),
        "max_abs": float(err.max()),
        "mean_abs": float(err.mean()),
        "max_rel": float((err / np.maximum(np.abs(ref64), 1e-6 * scale)).max()),
        "max_abs_vs_torch_fp32": float(np.abs(out64 - ref32).max()),
        "torch_fp32_noise": float(np.abs(ref32.astype(np.float64) - ref64).max()),
        "min_cosine": float(cos.min()),
        "top1_agreement": float(1 - flips.mean()),
        "top1_flips": int(flips.sum()),
        "top1_flips_beyond_margin": int((flips & decided).sum()),
        "top5_overlap": float(top5),
    }
    failures = [
        msg
        for bad, msg in (
            (
                tol.max_abs_of_scale is not None and report["max_abs"] > (tol.max_abs_of_scale or 0) * scale,
                f"max abs error {report['max_abs']:.3g} > {tol.max_abs_of_scale or 0:g} × logit scale {scale:.3g}",
            ),
            (
                tol.min_cosine is not None and report["min_cosine"] < (tol.min_cosine or 0),
                f"cosine {report['min_cosine']:.6f} < {tol.min_cosine}",
            ),
            (
                agreement_decided < tol.min_top1,
                f"{report['top1_flips_beyond_margin']} top-1 flips where the reference's margin exceeds "
                f"{tol.margin_eps:g} × scale (agreement {agreement_decided:.1%} < {tol.min_top1:.0%})",
            ),
        )
        if bad
    ]
    if labels is not None:
        n = len(labels)
        acc = report["accuracy"] = {
            "runner": float((out[:n].argmax(1) == labels).mean()),
            "reference": float((ref64[:n].argmax(1) == labels).mean()),
        }
        drop = acc["reference"] - acc["runner"]
        if tol.max_accuracy_drop is not None and drop > tol.max_accuracy_drop:
            failures.append(
                f"held-out accuracy drop {100 * drop:.2f} points > {100 * tol.max_accuracy_drop:g} "
                f"({acc['runner']:.2%} vs the reference's {acc['reference']:.2%})"
            )
    report["failures"], report["passed"] = failures, not failures
    return report
