"""The figures of docs/benchmarks.md, drawn from the aggregate: learning
curves, time to the common dev F1 and the CRF's time against length. Saved
without a timestamp, so the same aggregate gives the same bytes."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .budgets import UNITS
from .common import pct

PLOT_SETTINGS = {"dpi": 100, "metadata": {"Software": None}}

Agg = Dict[str, Any]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(agg: Agg, path: Path) -> Optional[Path]:
    corpora = [c for c, systems in agg["systems"].items() if systems]
    if not corpora:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        for name, s in agg["systems"][corpus].items():
            curves = s["curves"]
            depth = max(len(c) for c in curves)
            xs, mean, low, high = [], [], [], []
            for k in range(depth):
                points = [c[k] for c in curves if len(c) > k]
                xs.append(sum(p[0] for p in points) / len(points))
                f1s = [100 * p[2] for p in points]
                mean.append(sum(f1s) / len(f1s))
                low.append(min(f1s))
                high.append(max(f1s))
            (line,) = ax.plot(xs, mean, marker=".", label=name)
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(f"{corpus}: dev F1, mean and seed range")
        ax.set_xlabel(f"training {UNITS.get(corpus, 'words')} seen")
        ax.set_ylabel("dev F1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _saved(fig, path)


def time_bars(systems: Dict[str, Any]) -> List[Tuple[str, float, float, float, str]]:
    """Per system: (name, mean s to the common mark, below, above, note), every system listed.

    A system whose runs never reached the mark gets a zero bar and the note "not reached (0/n runs)"; one that reached
    it in some runs only, its mean over those and "k/n runs", so that no system silently drops out of the figure.
    Where the systems trained on more than one CPU model, each note names its bar's: those bars do not compare.
    """
    mixed = len(cpu_models(systems)) > 1
    bars = []
    for name, s in systems.items():
        entry = s.get("to_common") or {}
        stats = entry.get("train_seconds") or {}
        reached, runs = entry.get("reached", 0), entry.get("runs", 0)
        cpu = [", ".join(entry.get("train_cpus", []))] if mixed else []
        if stats.get("mean") is None:
            bars.append((name, 0.0, 0.0, 0.0, "; ".join([f"not reached (0/{runs} runs)", *cpu])))
            continue
        note = "; ".join(([] if reached == runs else [f"{reached}/{runs} runs"]) + cpu)
        bars.append((name, stats["mean"], stats["mean"] - stats["min"], stats["max"] - stats["mean"], note))
    return bars


def cpu_models(systems: Dict[str, Any]) -> List[str]:
    """Every CPU model that a run of ``systems`` trained on."""
    return sorted({cpu for s in systems.values() for cpu in (s.get("to_common") or {}).get("train_cpus", [])})


def plot_time_to_f1(agg: Agg, path: Path) -> Optional[Path]:
    corpora = [c for c in agg["systems"] if c in agg["common_threshold"]]
    if not corpora:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 3.5), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        bars = time_bars(agg["systems"][corpus])
        names = [b[0] for b in bars]
        ax.barh(names, [b[1] for b in bars], xerr=[[b[2] for b in bars], [b[3] for b in bars]], color="#3a7")
        for row, (_, mean, _, above, note) in enumerate(bars):
            if note:
                ax.annotate(
                    note, (mean + above, row), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8
                )
        title = f"{corpus}: seconds to dev F1 {pct(agg['common_threshold'][corpus], 1)} (seed range)"
        if len(cpu_models(agg["systems"][corpus])) > 1:
            title += "\nbars trained on different CPU models do not compare"
        ax.set_title(title)
        ax.set_xlabel("training seconds")
        ax.grid(axis="x", alpha=0.3)
    return _saved(fig, path)


def plot_crf(agg: Agg, path: Path) -> Optional[Path]:
    crf = agg["micro"].get("crf", {}).get("cpu")
    if not crf:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, op in zip(axes, ("nll_backward", "viterbi")):
        for tags in sorted({r["tags"] for r in crf["rows"]}):
            rows = sorted((r for r in crf["rows"] if r["op"] == op and r["tags"] == tags), key=lambda r: r["length"])
            ax.plot(
                [r["length"] for r in rows],
                [1000 * r["seconds"]["min"] for r in rows],
                marker="o",
                label=f"{tags} tags",
            )
        ax.set_title(f"CRF layer alone: {op} (fastest run)")
        ax.set_xlabel("tokens")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _saved(fig, path)


def _saved(fig: Any, path: Path) -> Path:
    """Lay out, write and close ``fig``; its path."""
    fig.tight_layout()
    fig.savefig(path, **PLOT_SETTINGS)
    _pyplot().close(fig)
    return path


def write_figures(agg: Agg, img_dir: Path) -> Dict[str, Optional[Path]]:
    """Every figure the aggregate has data for, under ``img_dir``; None for one it has none for."""
    img_dir.mkdir(parents=True, exist_ok=True)
    return {
        "curves": plot_curves(agg, img_dir / "learning_curves.png"),
        "time": plot_time_to_f1(agg, img_dir / "time_to_f1.png"),
        "crf": plot_crf(agg, img_dir / "crf_time_vs_length.png"),
    }
