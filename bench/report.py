"""Write docs/benchmarks.md and its figures from one results JSON.

python bench/report.py bench/results/full-....json
python bench/report.py RESULTS.json --md OUT.md --img OUT_IMG_DIR
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, read_json  # noqa: E402
from bench.systems import TITLES  # noqa: E402
from bench.targets import check_targets  # noqa: E402

CORPUS_NAMES = {"conll2003": "CoNLL-2003 English", "msra": "MSRA Chinese"}
UNITS = {"conll2003": "words", "msra": "characters"}
# Under one seed, F1 differences below this many points are not called a win.
F1_NOISE_POINTS = 0.5
ENCODER_NAMES = {"bilstm_crf": "BiLSTM", "idcnn_crf": "IDCNN"}


def pct(value: Optional[float], digits: int = 2) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{100 * value:.{digits}f}"


def num(value: Optional[float], spec: str = ",.0f") -> str:
    return "–" if not isinstance(value, (int, float)) else format(value, spec)


def spread_text(stats: Optional[Dict[str, Any]], spec: str = ",.0f", scale: float = 1.0) -> str:
    if not stats or stats.get("median") is None:
        return "–"
    return (
        f"{format(stats['median'] * scale, spec)} "
        f"({format(stats['min'] * scale, spec)}–{format(stats['max'] * scale, spec)})"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def systems_of(results: Dict[str, Any], corpus: str) -> Dict[str, Dict[str, Any]]:
    return results.get("corpora", {}).get(corpus, {}).get("systems", {})


def ok(entry: Optional[Dict[str, Any]]) -> bool:
    return bool(entry) and not entry.get("error")  # type: ignore[union-attr]


# ---------------------------------------------------------------- figures


def plot_learning_curves(results: Dict[str, Any], path: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = [
        c
        for c in results.get("corpora", {})
        if any(ok(s) and s.get("learning_curve") for s in systems_of(results, c).values())
    ]
    if not corpora:
        return None
    fig, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        for name, entry in systems_of(results, corpus).items():
            curve = entry.get("learning_curve") if ok(entry) else None
            if curve:
                ax.plot([p["words_seen"] for p in curve], [100 * p["dev_f1"] for p in curve], marker="o", label=name)
        ax.set_title(f"{CORPUS_NAMES.get(corpus, corpus)}: dev F1")
        ax.set_xlabel(f"training {UNITS.get(corpus, 'words')} seen")
        ax.set_ylabel("dev F1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_throughput(results: Dict[str, Any], path: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(results.get("corpora", {}))
    if not corpora:
        return None
    fig, axes = plt.subplots(2, len(corpora), figsize=(6 * len(corpora), 7), squeeze=False)
    for col, corpus in enumerate(corpora):
        systems = {k: v for k, v in systems_of(results, corpus).items() if ok(v)}
        for row, key in enumerate(("train_words_per_s", "infer_words_per_s")):
            ax = axes[row][col]
            names = [n for n, s in systems.items() if isinstance(s.get(key), (int, float))]
            values = [systems[n][key] for n in names]
            errors = None
            if key == "infer_words_per_s":
                spreads = [systems[n].get("infer_words_per_s_spread") or {} for n in names]
                errors = [
                    [v - (s.get("min") or v) for v, s in zip(values, spreads)],
                    [(s.get("max") or v) - v for v, s in zip(values, spreads)],
                ]
            ax.bar(names, values, yerr=errors, color=["#888" if "encoder_only" in n else "#3a7" for n in names])
            stage = "training" if row == 0 else "inference"
            ax.set_title(f"{CORPUS_NAMES.get(corpus, corpus)}: {stage} {UNITS.get(corpus, 'words')}/s")
            ax.tick_params(axis="x", rotation=30, labelsize=8)
            ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_crf(results: Dict[str, Any], path: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crf = results.get("crf_bench", {}).get("crf")
    if not crf or not crf.get("rows"):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, op, title in zip(axes, ("nll_backward", "viterbi"), ("NLL forward + backward", "Viterbi decode")):
        for tags in sorted({r["tags"] for r in crf["rows"]}):
            rows = sorted((r for r in crf["rows"] if r["op"] == op and r["tags"] == tags), key=lambda r: r["length"])
            ax.errorbar(
                [r["length"] for r in rows],
                [1000 * r["seconds"]["median"] for r in rows],
                yerr=[
                    [1000 * (r["seconds"]["median"] - r["seconds"]["min"]) for r in rows],
                    [1000 * (r["seconds"]["max"] - r["seconds"]["median"]) for r in rows],
                ],
                marker="o",
                label=f"{tags} tags",
            )
        ax.set_title(f"CRF alone: {title} (batch 1)")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- text


def _pair(results: Dict[str, Any], corpus: str) -> Optional[Dict[str, Dict[str, Any]]]:
    s = systems_of(results, corpus)
    if not (ok(s.get("bilstm_crf")) and ok(s.get("idcnn_crf"))):
        return None
    return {"b": s["bilstm_crf"], "i": s["idcnn_crf"]}


def _faster(b: Optional[float], i: Optional[float]) -> str:
    if not isinstance(b, (int, float)) or not isinstance(i, (int, float)) or not b or not i:
        return "not measured"
    if max(b, i) / min(b, i) < 1.05:
        return "about the same (within 5%)"
    return f"{'IDCNN-CRF' if i > b else 'BiLSTM-CRF'}, {max(b, i) / min(b, i):.2f}x"


def answer_accuracy(results: Dict[str, Any]) -> List[str]:
    out = []
    for corpus in results.get("corpora", {}):
        pair = _pair(results, corpus)
        name = CORPUS_NAMES.get(corpus, corpus)
        if pair is None:
            out.append(f"- {name}: not measured (a system is missing).")
            continue
        b, i = pair["b"], pair["i"]
        gap = 100 * (b["f1"] - i["f1"])
        if abs(gap) < F1_NOISE_POINTS:
            verdict = f"neither clearly ({gap:+.2f} F1 points, under the {F1_NOISE_POINTS} a single seed can move)"
        else:
            verdict = f"**{'BiLSTM-CRF' if gap > 0 else 'IDCNN-CRF'}**, by {abs(gap):.2f} F1 points (one seed)"
        others = ", ".join(
            f"{key} {pct(entry.get('f1'))}"
            for key, entry in systems_of(results, corpus).items()
            if key not in ("bilstm_crf", "idcnn_crf") and ok(entry) and isinstance(entry.get("f1"), float)
        )
        out.append(
            f"- {name}: {verdict}. Test F1: BiLSTM-CRF {pct(b['f1'])}, IDCNN-CRF {pct(i['f1'])}"
            + (f"; others: {others}" if others else "")
            + "."
        )
    return out


def answer_training(results: Dict[str, Any]) -> List[str]:
    out = []
    for corpus in results.get("corpora", {}):
        pair = _pair(results, corpus)
        if pair is None:
            continue
        b, i = pair["b"], pair["i"]
        unit = UNITS.get(corpus, "words")
        out.append(
            f"- {CORPUS_NAMES.get(corpus, corpus)}: {_faster(b.get('train_words_per_s'), i.get('train_words_per_s'))}: "
            f"BiLSTM-CRF {num(b.get('train_words_per_s'))} {unit}/s ({num(b.get('train_seconds'))} s to its F1), "
            f"IDCNN-CRF {num(i.get('train_words_per_s'))} {unit}/s ({num(i.get('train_seconds'))} s), "
            f"on the same {num(b.get('words_seen'))} training {unit}."
        )
    return out


def answer_inference(results: Dict[str, Any]) -> List[str]:
    out = []
    for corpus in results.get("corpora", {}):
        pair = _pair(results, corpus)
        if pair is None:
            continue
        b, i = pair["b"], pair["i"]
        unit = UNITS.get(corpus, "words")
        line = (
            f"- {CORPUS_NAMES.get(corpus, corpus)}: {_faster(b.get('infer_words_per_s'), i.get('infer_words_per_s'))}: "
            f"BiLSTM-CRF {num(b.get('infer_words_per_s'))} {unit}/s, "
            f"IDCNN-CRF {num(i.get('infer_words_per_s'))} {unit}/s "
            f"(`nlp.pipe`, batch {b.get('batch_size')}); one short text takes "
            f"{num((b.get('latency_ms') or {}).get('median'), '.1f')} ms and "
            f"{num((i.get('latency_ms') or {}).get('median'), '.1f')} ms."
        )
        heads = results.get("crf_bench", {}).get("heads", {}).get(corpus)
        if heads:
            line += (
                f" The heads alone (input width {heads['width']}): IDCNN runs at {heads['idcnn_speedup_infer']:.2f}x "
                f"the BiLSTM's {unit}/s in inference and {heads['idcnn_speedup_train']:.2f}x in training."
            )
        out.append(line)
    return out


def answer_cost(results: Dict[str, Any]) -> List[str]:
    out = []
    for corpus in results.get("corpora", {}):
        s = systems_of(results, corpus)
        rows = []
        for key in ("crf", "bilstm_crf", "idcnn_crf"):
            e = s.get(key)
            if not ok(e):
                continue
            assert e is not None
            train = e.get("train_time_shares") or {}
            rows.append(
                f"{TITLES.get((corpus, key), key)}: inference at {pct(e.get('infer_over_encoder'), 0)}% of the "
                f"encoder-alone {UNITS.get(corpus, 'words')}/s ({pct(e.get('infer_over_encoder_in_pipeline'), 0)}% "
                f"of its inference time is the encoder); in training the CRF takes "
                f"{pct((e.get('crf_share_of_step') or {}).get('aggregate'), 1)}% of a step"
                + (f", the {ENCODER_NAMES[key]} {pct(train.get('encoder'), 1)}%" if key in ENCODER_NAMES else "")
            )
        if rows:
            out.append(f"- {CORPUS_NAMES.get(corpus, corpus)}:")
            out += [f"  - {row}." for row in rows]
    return out


def machine_section(results: Dict[str, Any]) -> str:
    m = results.get("machine", {})
    v = m.get("versions", {})
    rows = [
        ("CPU", m.get("cpu_model")),
        ("cores (usable / logical)", f"{m.get('usable_cores')} / {m.get('logical_cores')}"),
        ("torch threads", m.get("torch_threads")),
        ("memory", f"{m.get('memory_gb')} GB"),
        ("GPU", "yes" if m.get("gpu") else "none (CPU only)"),
        (
            "load average at start / end",
            f"{_load(results.get('loadavg_at_start'))} / {_load(results.get('loadavg_at_end'))}",
        ),
        ("versions", ", ".join(f"{k} {val}" for k, val in v.items() if val)),
        (
            "commit",
            f"`{results.get('commit')}`" + (" (package sources modified)" if results.get("package_dirty") else ""),
        ),
        ("date", results.get("date")),
        ("run time", f"{results.get('duration_seconds', 0) / 60:.1f} min"),
    ]
    return table(["", ""], [(k, str(val)) for k, val in rows])


def _load(values: Optional[Sequence[float]]) -> str:
    return "–" if not values else ", ".join(f"{x:.2f}" for x in values)


def data_section(results: Dict[str, Any]) -> str:
    rows = []
    for corpus, entry in results.get("corpora", {}).items():
        data = entry.get("data", {})
        cfg = results.get("settings", {}).get("corpora", {}).get(corpus, {})
        for split, info in data.get("splits", {}).items():
            sub = (
                ""
                if info["sentences"] == info["sentences_available"]
                else f" (sample of {info['sentences_available']:,})"
            )
            rows.append(
                (
                    CORPUS_NAMES.get(corpus, corpus),
                    split,
                    f"{info['sentences']:,}{sub}",
                    f"{info['words']:,}",
                    f"{info['entities']:,}",
                )
            )
        trained = [s for s in systems_of(results, corpus).values() if ok(s) and s.get("words_seen")]
        steps = trained[0].get("steps") if trained else None
        rows.append(
            (
                CORPUS_NAMES.get(corpus, corpus),
                "**budget**",
                f"{num(cfg.get('budget_words'))} {UNITS.get(corpus)} (cut at the batch that reaches it)",
                f"{num(trained[0]['words_seen']) if trained else '–'} seen",
                f"{num(steps)} steps",
            )
        )
    return table(["corpus", "split", "sentences", "tokens", "entities"], rows)


def accuracy_section(results: Dict[str, Any], corpus: str) -> str:
    rows = []
    for name, s in systems_of(results, corpus).items():
        if name.endswith("encoder_only"):
            continue
        if not ok(s):
            rows.append((name, s.get("title", ""), "failed", "", "", "", "", ""))
            continue
        agree = "yes" if s.get("seqeval_agrees") else f"no (max diff {s.get('seqeval_max_abs_diff'):.2g})"
        rows.append(
            (
                f"`{name}`",
                s.get("title", TITLES.get((corpus, name), "")),
                pct(s.get("precision")),
                pct(s.get("recall")),
                f"**{pct(s.get('f1'))}**",
                pct((s.get("seqeval") or {}).get("f1")),
                agree,
                pct(s.get("dev_f1")),
            )
        )
    text = table(["system", "", "P", "R", "F1", "seqeval F1", "spaCy = seqeval", "dev F1"], rows)
    labels = sorted(
        {label for s in systems_of(results, corpus).values() if ok(s) for label in (s.get("per_type") or {})}
    )
    if labels:
        per_type = []
        for name, s in systems_of(results, corpus).items():
            if ok(s) and s.get("per_type"):
                per_type.append([f"`{name}`"] + [pct(s["per_type"].get(label, {}).get("f1")) for label in labels])
        text += "\n\nF1 per entity type (test):\n\n" + table(["system", *labels], per_type)
    return text


def speed_section(results: Dict[str, Any], corpus: str) -> str:
    unit = UNITS.get(corpus, "words")
    rows = []
    for name, s in systems_of(results, corpus).items():
        if not ok(s):
            continue
        intervals = s.get("train_words_per_s_intervals") or {}
        train = (
            f"{num(s.get('train_words_per_s'))} ({num(intervals.get('min'))}–{num(intervals.get('max'))})"
            if s.get("train_words_per_s")
            else "–"
        )
        is_encoder = name.endswith("encoder_only")
        rows.append(
            (
                f"`{name}`",
                train,
                num(s.get("train_seconds")),
                spread_text(s.get("infer_words_per_s_spread")),
                "ceiling" if is_encoder else spread_text(s.get("infer_over_encoder_per_round"), ".1f", 100),
                "–" if is_encoder else pct(s.get("infer_over_encoder_in_pipeline"), 1),
                spread_text(s.get("latency_ms"), ".1f"),
                num(s.get("peak_rss_train_mb")),
                num(s.get("peak_rss_infer_mb")),
            )
        )
    header = [
        "system",
        f"train {unit}/s (min–max over intervals)",
        "train s",
        f"infer {unit}/s median (min–max)",
        "% of encoder alone, per round",
        "% in-pipeline estimate",
        "latency ms median (min–max)",
        "peak RSS train MB",
        "peak RSS infer MB",
    ]
    text = table(header, rows)
    encoder = systems_of(results, corpus).get("encoder_only") or {}
    fresh = encoder.get("fresh_init")
    if fresh:
        text += (
            f"\n\nThe encoder alone is saved and loaded like the systems (attention implementation "
            f"`{encoder.get('attn_implementation')}` once loaded). As initialized from the pretrained weights "
            f"instead, it runs at {spread_text(fresh.get('infer_words_per_s_spread'))} {unit}/s: loaded/fresh = "
            f"{num((fresh.get('loaded_over_fresh_per_round') or {}).get('median'), '.2f')} (median of rounds)."
        )
    shares = []
    for name, s in systems_of(results, corpus).items():
        if ok(s) and (s.get("train_time_shares") or s.get("infer_time_shares")):
            t = s.get("train_time_shares") or {}
            i = s.get("infer_time_shares") or {}
            shares.append(
                (
                    f"`{name}`",
                    pct(t.get("transformer"), 1),
                    pct(t.get("encoder"), 1),
                    pct(t.get("crf"), 1),
                    pct(t.get("optimizer"), 1),
                    pct(i.get("transformer", i.get("tok2vec")), 1),
                    pct(i.get("encoder"), 1),
                    pct(i.get("viterbi"), 1),
                )
            )
    if shares:
        text += (
            "\n\nWhere the time goes, in % of training step time and of one inference pass over the "
            "throughput sentences ('–': not applicable or not timed). Training: the transformer's forward and "
            "backward passes, the encoder's, the CRF's NLL and gradient, and the optimizer (every component's "
            "finish_update). Inference: the tok2vec (transformer or CNN), the encoder and Viterbi decoding.\n\n"
            + table(
                [
                    "system",
                    "train: transformer",
                    "train: encoder",
                    "train: CRF",
                    "train: optimizer",
                    "infer: tok2vec",
                    "infer: encoder",
                    "infer: Viterbi",
                ],
                shares,
            )
        )
    return text


def curve_section(results: Dict[str, Any], corpus: str) -> str:
    systems = {n: s for n, s in systems_of(results, corpus).items() if ok(s) and s.get("learning_curve")}
    if not systems:
        return ""
    points = max(len(s["learning_curve"]) for s in systems.values())
    header = ["system"] + [
        f"{num(next(iter(systems.values()))['learning_curve'][k]['words_seen'])}" for k in range(points)
    ]
    rows = [[f"`{n}`"] + [pct(p["dev_f1"]) for p in s["learning_curve"]] for n, s in systems.items()]
    return f"Dev F1 (%) against training {UNITS.get(corpus)} seen:\n\n" + table(header, rows)


def crf_section(results: Dict[str, Any]) -> str:
    crf = results.get("crf_bench", {}).get("crf")
    if not crf:
        return "_Not measured in this run._"
    lengths = crf["lengths"]
    rows = []
    for op in ("nll_backward", "viterbi"):
        for tags in sorted({r["tags"] for r in crf["rows"]}):
            by_len = {r["length"]: r for r in crf["rows"] if r["op"] == op and r["tags"] == tags}
            fit = crf["fits"].get(f"{op}/tags={tags}", {})
            rows.append(
                [op, str(tags)]
                + [f"{1000 * by_len[n]['seconds']['median']:.1f}" for n in lengths if n in by_len]
                + [
                    f"{1e6 * fit.get('seconds_per_token', float('nan')):.1f}",
                    f"{fit.get('r2', float('nan')):.4f}",
                    f"{fit.get('loglog_slope', float('nan')):.2f}",
                ]
            )
    header = ["op", "tags"] + [f"T={n} ms" for n in lengths] + ["fit µs/token", "R²", "log-log slope"]
    verdict = "linear" if crf.get("linear") else "NOT linear by the criterion"
    return (
        f"One sequence (batch 1), BILUO constraints set; milliseconds, median of {crf['repeats']} runs "
        "(the fit uses the fastest run of each length). "
        f"Criterion: {crf['linear_criterion']}. Verdict: **{verdict}**.\n\n" + table(header, rows)
    )


def heads_section(results: Dict[str, Any]) -> str:
    heads = results.get("crf_bench", {}).get("heads") or {}
    rows = []
    for corpus, h in heads.items():
        for name in ("bilstm", "idcnn"):
            rows.append(
                (
                    CORPUS_NAMES.get(corpus, corpus),
                    name,
                    str(h["width"]),
                    f"{h[name]['parameters']:,}",
                    spread_text(h[name]["infer_words_per_s"]),
                    spread_text(h[name]["train_words_per_s"]),
                )
            )
        rows.append(
            (
                CORPUS_NAMES.get(corpus, corpus),
                "**IDCNN / BiLSTM**",
                "",
                "",
                f"**{h['idcnn_speedup_infer']:.2f}x**",
                f"**{h['idcnn_speedup_train']:.2f}x**",
            )
        )
    if not rows:
        return "_Not measured in this run._"
    return table(["corpus", "head", "input width", "parameters", "infer tokens/s", "train tokens/s"], rows)


def targets_section(results: Dict[str, Any]) -> str:
    rows = []
    for t in check_targets(results):
        met = {True: "✅ met", False: "❌ not met", None: "– not measured"}[t["met"]]
        value = t["value"]
        shown = "–" if value is None else (f"{value:+.4f}" if "f1" in t["name"] else f"{value:.3f}")
        rows.append((t["target"], shown, t["goal"], met))
    return table(["target", "measured", "goal", ""], rows)


def settings_section(results: Dict[str, Any]) -> str:
    lines = []
    for corpus, entry in results.get("corpora", {}).items():
        opt = entry.get("optimizer", {})
        o = opt.get("optimizer", {})
        size = opt.get("batcher", {}).get("size", {})
        lr = o.get("learn_rate")
        trained = [s for s in systems_of(results, corpus).values() if ok(s) and s.get("config", {}).get("learn_rate")]
        used = trained[0]["config"]["learn_rate"] if trained else lr
        if isinstance(used, dict):
            lr_text = (
                f"{used.get('initial_rate')}, warmup {used.get('warmup_steps')} steps, "
                f"linear decay to 0 at step {used.get('total_steps')} (the budget's last)"
            )
        else:
            lr_text = str(used)
        lines.append(
            f"- {CORPUS_NAMES.get(corpus, corpus)}: Adam (L2 {o.get('L2')} as weight decay, "
            f"grad clip {o.get('grad_clip')}), learning rate {lr_text}; crf_ner head_lr_scale "
            f"{opt.get('head_lr_scale')}; dropout {opt.get('dropout')}; batches by `spacy.batch_by_words.v1` "
            f"(compounding from {size.get('start')} to {size.get('stop')} tokens)."
        )
    return "\n".join(lines)


def _transformer_text(results: Dict[str, Any]) -> str:
    config = results.get("transformer_config") or {}
    if not config:
        return ""
    return (
        f"({config.get('_name_or_path') or config.get('model_type')}: {config.get('num_hidden_layers')} layers, "
        f"width {config.get('hidden_size')}, vocabulary {num(config.get('vocab_size'))})"
    )


def render(results: Dict[str, Any], results_path: Path, md_path: Path, img_dir: Path) -> Path:
    img_dir.mkdir(parents=True, exist_ok=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    figures = {
        "learning": plot_learning_curves(results, img_dir / "learning_curves.png"),
        "throughput": plot_throughput(results, img_dir / "throughput.png"),
        "crf": plot_crf(results, img_dir / "crf_time_vs_length.png"),
    }

    def fig(key: str, alt: str) -> str:
        path = figures.get(key)
        return f"![{alt}]({Path(os.path.relpath(path, md_path.parent)).as_posix()})" if path else ""

    try:
        source = Path(results_path).resolve().relative_to(REPO)
    except ValueError:
        source = Path(results_path)
    parts: List[str] = ["# Benchmarks: BiLSTM-CRF or IDCNN-CRF?", ""]
    parts.append(f"_Generated by `python bench/report.py {source.as_posix()}`; do not edit by hand._")
    if results.get("mode") != "full":
        parts += [
            "",
            f"> **A `{results.get('mode')}` run: tiny data and a tiny random encoder. Its figures mean nothing.**",
        ]
    if results.get("failures"):
        parts += ["", "> **Failures in this run:** " + "; ".join(results["failures"])]
    parts += ["", "## Answers", "", "Which is more accurate?", "", *answer_accuracy(results), ""]
    parts += ["Which trains faster?", "", *answer_training(results), ""]
    parts += ["Which runs faster?", "", *answer_inference(results), ""]
    parts += ["What do the CRF and the encoders cost on top of the tok2vec?", "", *answer_cost(results), ""]
    parts += ["## Targets", "", targets_section(results), ""]
    parts += ["## Machine", "", machine_section(results), ""]
    parts += [
        "Timings are wall-clock on this machine, one process at a time: each system trains in its own process and "
        "is measured (test F1, latency, peak RSS) in another; inference words/s come from one more process per "
        "corpus that loads all systems and runs them in turn, rounds rotated, so that a slow spell of the machine "
        "hits every system of a round alike. A busy machine (load average well above 0) makes all timings slower "
        "and noisier.",
        "",
    ]
    parts += ["## Setup", "", data_section(results), ""]
    parts += [
        "Systems of a corpus see the same sentences in the same batches (the configs' batcher, seeded shuffle), "
        "cut at the same number of training tokens. Every system is trained and evaluated on the corpus tokens "
        "(MSRA: one token per character, so 'words/s' there are characters/s). The reported F1 is that of the "
        "model at the end of the budget (no best-checkpoint selection), on the test split, by spaCy's scorer "
        "and checked against seqeval on the same predictions. Systems and settings:",
        "",
        settings_section(results),
        "- spaCy `ner`: the same config with `crf_ner` swapped for spaCy's `ner` (TransitionBasedParser.v2, hidden "
        "width 64, maxout 2, as spaCy's quickstart sets it) over the identical tok2vec and optimizer "
        "(no head_lr_scale).",
        "- BERT-softmax: `AutoModelForTokenClassification` on the same weights, first-subword labelling, AdamW "
        "(no decay on biases and LayerNorm), linear warmup and decay, the same learning rate, warmup, clipping "
        "and batches.",
        "- Encoder alone: the transformer component alone in a spaCy pipeline (the ceiling of the spaCy systems), "
        "and `AutoModel` with the softmax system's tokenization and batching (its ceiling); for MSRA, the CNN "
        "tok2vec alone as a `tok2vec` component.",
        f"- Transformer: `{results.get('transformer')}` {_transformer_text(results)}.",
        "",
    ]
    for corpus in results.get("corpora", {}):
        name = CORPUS_NAMES.get(corpus, corpus)
        parts += [f"## {name}", "", "### Accuracy (test)", "", accuracy_section(results, corpus), ""]
        parts += ["### Speed and memory", "", speed_section(results, corpus), ""]
        parts += ["### Learning curve", "", curve_section(results, corpus), ""]
    parts += ["## Figures", "", fig("learning", "learning curves"), "", fig("throughput", "throughput"), ""]
    parts += ["## The CRF alone", "", crf_section(results), "", fig("crf", "CRF time against sequence length"), ""]
    parts += ["## The heads alone", "", heads_section(results), ""]
    parts += [
        "## Rerun",
        "",
        "```",
        "python bench/run.py                      # full run, writes bench/results/full-*.json",
        "python bench/report.py bench/results/full-<date>-<commit>.json   # this page and docs/img/*.png",
        "```",
        "",
    ]
    md_path.write_text("\n".join(parts), encoding="utf8")
    return md_path


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--md", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--img", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args(argv)
    path = render(read_json(args.results), args.results, args.md, args.img)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
