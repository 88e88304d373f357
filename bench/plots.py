"""Plots of bench reports (--plot): PNG files drawn by Matplotlib off-screen, written atomically; Matplotlib is
imported only when a plot is drawn (the bench extra)."""

from pathlib import Path

from prelu_deploy.atomic import write_bytes


def check_plotting() -> None:
    """Before a long run: --plot needs matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from prelu_deploy.errors import UsageError

        raise UsageError("--plot needs matplotlib: pip install 'prelu-deploy[bench]'") from None


def _figure(nrows: int, ncols: int, size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(nrows, ncols, figsize=size, squeeze=False)


def _save(plt, fig, path: Path) -> None:
    from io import BytesIO

    buf = BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def _horizontal(ax) -> dict:
    """boxplot's horizontal boxes: orientation= (Matplotlib ≥ 3.10), where vert=False is deprecated (3.11) and
    goes in 3.13; vert=False before 3.10."""
    import inspect

    return {"orientation": "horizontal"} if "orientation" in inspect.signature(ax.boxplot).parameters else {"vert": False}


def plot_runners(r: dict, raw: dict, path: Path) -> None:
    """Latency distribution per candidate, one panel per batch size (boxes: quartiles; whiskers: p1–p99)."""
    batches = sorted({b for b, _ in raw})
    plt, fig, axes = _figure(len(batches), 1, (9, 1.2 + 0.55 * len(r["candidates"]) * len(batches)))
    for ax, batch in zip(axes[:, 0], batches):
        labels = r["candidates"]
        ax.boxplot(
            [[t * 1e3 for t in raw[(batch, c)]] for c in labels],
            **_horizontal(ax),
            whis=(1, 99),
            showfliers=False,
            tick_labels=labels,
        )
        ax.set_title(f"{r['model']}, batch {batch}")
        ax.set_xlabel("latency per call, ms")
        ax.grid(axis="x", alpha=0.3)
    _save(plt, fig, path)


def plot_http(r: dict, raw: dict, path: Path) -> None:
    """Throughput and p50/p99 latency against concurrency, and the latency distribution per level."""
    levels = r["levels"]
    plt, fig, axes = _figure(1, 3, (15, 4))
    c = [lv["concurrency"] for lv in levels]
    axes[0, 0].plot(c, [lv["throughput_rps"] for lv in levels], "o-")
    axes[0, 0].set(title="throughput", xlabel="concurrency", ylabel="successful requests/s", xscale="log")
    for key, style in (("median_ms", "o-"), ("p99_ms", "s--")):
        axes[0, 1].plot(
            c, [lv["latency"].get(key, float("nan")) for lv in levels], style, label="p50" if key == "median_ms" else "p99"
        )
    axes[0, 1].set(title="latency", xlabel="concurrency", ylabel="ms", xscale="log")
    axes[0, 1].legend()
    data = [[t * 1e3 for t in raw[lv["concurrency"]]] or [float("nan")] for lv in levels]
    axes[0, 2].boxplot(data, whis=(1, 99), showfliers=False, tick_labels=[str(x) for x in c])
    axes[0, 2].set(title="latency distribution (p1–p99)", xlabel="concurrency", ylabel="ms")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    for ax in axes[0, :2]:
        ax.set_xticks(c, [str(x) for x in c], minor=False)
        ax.minorticks_off()
    fig.suptitle(f"{r['model']} at {r['target']}")
    _save(plt, fig, path)
