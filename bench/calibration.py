"""How well calibrated is crf_ner's entity confidence, and what does it cost? (issue 10)

It needs a trained pipeline and .spacy files (from ``spacy-bilstm-crf
convert``); of bench/ only provenance.py (the machine and the commit).

    python -m bench.calibration measure MODEL --name NAME --dev DEV.spacy --test TEST.spacy \\
        [--speed-docs 1000 --repeats 3] [--note "how MODEL was trained"]
    python -m bench.calibration plot bench/results/calibration-*.json --out docs/img/calibration.png

``measure`` scores each predicted entity of the dev and test sets with its
probability under the CRF (the component's ``entity_probs``, as ``doc.spans[spans_key]``
gives it) and marks it correct when the gold data has exactly that span and
label. It writes bench/results/calibration-NAME.json with, on the test set:
a reliability table (confidence bins against observed precision), the
expected calibration error (ECE), and precision and recall when only the
entities with confidence >= t are kept; all of it again with a temperature
fitted on dev (minimum log loss of the entity confidences, grid search).
Then the cost of confidence: ``nlp.pipe`` words/s over test texts with
``spans_key`` unset and set, in interleaved rounds, with the load average.
"""

import argparse
import json
import math
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy

from .common import REPO
from .provenance import git_commit, loadavg, machine_info

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
N_BINS = 10
BATCH = 64


def load_docs(nlp: Any, path: Path) -> Tuple[List[Any], List[List[Tuple[int, int, str]]]]:
    """The gold docs' tokens as fresh docs (same tokenization), and their gold entities."""
    from spacy.tokens import Doc, DocBin

    docs, gold = [], []
    for ref in DocBin().from_disk(path).get_docs(nlp.vocab):
        if not len(ref):
            continue
        docs.append(Doc(nlp.vocab, words=[t.text for t in ref], spaces=[bool(t.whitespace_) for t in ref]))
        gold.append([(e.start, e.end, e.label_) for e in ref.ents])
    return docs, gold


class Predicted:
    """A corpus as the component predicted it: its emission scores (one
    ``EmissionScores`` per pipeline batch, as ``crf_ner.emission_scores``
    gives them) and each doc's Viterbi entities."""

    def __init__(self, batches: List[Any], entities: List[List[Tuple[int, int, str]]]) -> None:
        self.batches = batches
        self.entities = entities

    def head(self, n_docs: int) -> "Predicted":
        """The first ``n_docs`` docs."""
        batches: List[Any] = []
        left = n_docs
        for batch in self.batches:
            if left <= 0:
                break
            batches.append(
                type(batch)(
                    batch.scores[:left], None if batch.allowed is None else batch.allowed[:left], batch.kept[:left]
                )
            )
            left -= len(batch.scores)
        return Predicted(batches, self.entities[:n_docs])

    def batch_entities(self) -> List[List[List[Tuple[int, int, str]]]]:
        """The entities of the docs of each batch."""
        out, start = [], 0
        for batch in self.batches:
            out.append(self.entities[start : start + len(batch.scores)])
            start += len(batch.scores)
        return out


def emissions_and_entities(nlp: Any, name: str, docs: List[Any]) -> Predicted:
    """The emission scores and Viterbi entities of ``docs``, as the component computes them."""
    pipe = nlp.get_pipe(name)
    before = nlp.pipe_names[: nlp.pipe_names.index(name)]
    batches: List[Any] = []
    entities: List[List[Tuple[int, int, str]]] = []
    for start in range(0, len(docs), BATCH):
        batch = docs[start : start + BATCH]
        for other in before:
            batch = list(nlp.get_pipe(other).pipe(batch))
        emissions = pipe.emission_scores(batch)
        batches.append(emissions)
        entities.extend(pipe.tag_spans(ids) for ids in pipe.decode(emissions))
    return Predicted(batches, entities)


def confidences(nlp: Any, name: str, data: Predicted, temperature: float) -> List[List[float]]:
    """The probability of each predicted entity of each doc."""
    pipe = nlp.get_pipe(name)
    out: List[List[float]] = []
    for batch, entities in zip(data.batches, data.batch_entities()):
        scored = pipe.entity_probs(batch, entities, temperature=temperature)
        out.extend([p for *_, p in doc] for doc in scored)
    return out


def flat(
    entities: List[List[Tuple[int, int, str]]], gold: List[List[Tuple[int, int, str]]], probs: List[List[float]]
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Confidence and correctness (exact span and label) of every predicted entity."""
    conf: List[float] = []
    correct: List[bool] = []
    for doc_entities, doc_gold, doc_probs in zip(entities, gold, probs):
        wanted = set(doc_gold)
        conf.extend(doc_probs)
        correct.extend(span in wanted for span in doc_entities)
    return numpy.asarray(conf, dtype="float64"), numpy.asarray(correct, dtype=bool)


def reliability(conf: numpy.ndarray, correct: numpy.ndarray) -> Tuple[List[Dict[str, Any]], float]:
    """Rows of (bin, count, mean confidence, observed precision) and the ECE."""
    rows, ece = [], 0.0
    edges = numpy.linspace(0.0, 1.0, N_BINS + 1)
    for n, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (conf >= low) & ((conf < high) if n < N_BINS - 1 else (conf <= high))
        count = int(inside.sum())
        row: Dict[str, Any] = {"low": round(float(low), 2), "high": round(float(high), 2), "count": count}
        if count:
            row["confidence"] = float(conf[inside].mean())
            row["precision"] = float(correct[inside].mean())
            ece += count / len(conf) * abs(row["precision"] - row["confidence"])
        rows.append(row)
    return rows, float(ece)


def kept_scores(conf: numpy.ndarray, correct: numpy.ndarray, n_gold: int) -> List[Dict[str, float]]:
    """Precision, recall and F1 when only entities with confidence >= t are kept."""
    out = []
    for t in (0.0,) + THRESHOLDS:
        kept = conf >= t
        tp = int(correct[kept].sum())
        p = tp / max(1, int(kept.sum()))
        r = tp / max(1, n_gold)
        out.append({"t": t, "kept": int(kept.sum()), "p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0})
    return out


def log_loss(conf: numpy.ndarray, correct: numpy.ndarray) -> float:
    clipped = numpy.clip(conf, 1e-7, 1 - 1e-7)
    return float(-numpy.mean(numpy.where(correct, numpy.log(clipped), numpy.log(1 - clipped))))


def summary(conf: numpy.ndarray, correct: numpy.ndarray, n_gold: int) -> Dict[str, Any]:
    rows, ece = reliability(conf, correct)
    return {
        "entities": len(conf),
        "gold": n_gold,
        "mean_confidence": float(conf.mean()) if len(conf) else 0.0,
        "precision": float(correct.mean()) if len(conf) else 0.0,
        "ece": ece,
        "log_loss": log_loss(conf, correct),
        "reliability": rows,
        "keep_above": kept_scores(conf, correct, n_gold),
    }


def check_against_pipeline(nlp: Any, name: str, docs: List[Any], probs: List[List[float]]) -> float:
    """Largest difference between these probabilities and ``doc.spans`` of the
    pipeline run with ``spans_key`` on the same tokens (should be ~0)."""
    from spacy.tokens import Doc

    pipe = nlp.get_pipe(name)
    pipe.spans_key = "check"
    fresh = [Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in docs]
    worst = 0.0
    for doc, expected in zip(nlp.pipe(fresh), probs):
        group = doc.spans["check"]
        scores = {(s.start, s.end, s.label_): float(p) for s, p in zip(group, group.attrs["scores"])}
        got = [scores[(e.start, e.end, e.label_)] for e in doc.ents]
        if len(got) != len(expected):
            raise AssertionError(f"{doc.text!r}: the pipeline found other entities than the measurement")
        worst = max([worst] + [abs(a - b) for a, b in zip(got, expected)])
    pipe.spans_key = None
    return worst


def fit_temperature(losses: Dict[float, float]) -> float:
    return min(losses, key=lambda t: (losses[t], t))


def time_confidence(nlp: Any, name: str, data: Predicted) -> float:
    """Seconds to compute what ``spans_key`` adds (entity probabilities and the
    spans above the threshold) for precomputed emissions, in pipeline batches."""
    pipe = nlp.get_pipe(name)
    start = time.perf_counter()
    for batch, entities in zip(data.batches, data.batch_entities()):
        pipe.entity_probs(batch, entities, threshold=pipe.threshold)
    return time.perf_counter() - start


def speed(nlp: Any, name: str, texts: Sequence[str], repeats: int) -> Dict[str, Any]:
    """nlp.pipe words/s without and with spans_key, in interleaved rounds, and
    the time of the confidence computation alone on the same texts."""
    pipe = nlp.get_pipe(name)
    n_words = sum(len(doc) for doc in nlp.tokenizer.pipe(texts))
    timings: Dict[str, List[float]] = {"off": [], "on": []}
    confidence_s: List[float] = []
    load_before = loadavg()
    list(nlp.pipe(texts[:BATCH], batch_size=BATCH))  # warm up
    data = emissions_and_entities(nlp, name, [nlp.make_doc(text) for text in texts])
    for round_ in range(repeats):
        for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
            pipe.spans_key = "confidence" if mode == "on" else None
            start = time.perf_counter()
            for _ in nlp.pipe(texts, batch_size=BATCH):
                pass
            timings[mode].append(n_words / (time.perf_counter() - start))
        confidence_s.append(time_confidence(nlp, name, data))
    pipe.spans_key = None
    median = {mode: statistics.median(values) for mode, values in timings.items()}
    pipeline_s = n_words / median["off"]
    return {
        "texts": len(texts),
        "words": n_words,
        "batch_size": BATCH,
        "repeats": repeats,
        "words_per_s": timings,
        "median_words_per_s": median,
        "ratio_on_off": median["on"] / median["off"],
        "confidence_alone_s": confidence_s,
        "pipeline_s": pipeline_s,
        "confidence_share_of_pipeline": statistics.median(confidence_s) / pipeline_s,
        "load_average_before": load_before,
        "load_average_after": loadavg(),
    }


def machine() -> Dict[str, Any]:
    """Where the figures come from: the machine, the library versions, the commit, the date."""
    return {**machine_info(), **git_commit(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def measure(args: argparse.Namespace) -> int:
    import spacy

    nlp = spacy.load(args.model)
    name = args.component
    dev_docs, dev_gold = load_docs(nlp, args.dev)
    test_docs, test_gold = load_docs(nlp, args.test)
    print(f"{len(dev_docs)} dev and {len(test_docs)} test docs", file=sys.stderr)
    dev = emissions_and_entities(nlp, name, dev_docs)
    test = emissions_and_entities(nlp, name, test_docs)
    n_dev_gold, n_test_gold = sum(map(len, dev_gold)), sum(map(len, test_gold))
    grid = [round(float(t), 3) for t in numpy.exp(numpy.linspace(math.log(0.25), math.log(8.0), 61))]
    dev_losses = {t: log_loss(*flat(dev.entities, dev_gold, confidences(nlp, name, dev, t))) for t in grid}
    temperature = fit_temperature(dev_losses)
    print(f"temperature fitted on dev: {temperature}", file=sys.stderr)
    results: Dict[str, Any] = {
        "name": args.name,
        "model": str(args.model),
        "note": args.note,
        "pipeline": nlp.pipe_names,
        "config": {key: nlp.config["components"][name][key] for key in ("scheme",)},
        "architecture": {
            part: nlp.config["components"][name]["model"][part].get("@architectures") for part in ("tok2vec", "encoder")
        },
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "dev": {
            "path": str(args.dev),
            "docs": len(dev_docs),
            "raw": summary(*flat(dev.entities, dev_gold, confidences(nlp, name, dev, 1.0)), n_dev_gold),
            "log_loss_by_temperature": dev_losses,
        },
        "temperature": temperature,
        "test": {
            "path": str(args.test),
            "docs": len(test_docs),
            "raw": summary(*flat(test.entities, test_gold, confidences(nlp, name, test, 1.0)), n_test_gold),
            "tempered": summary(
                *flat(test.entities, test_gold, confidences(nlp, name, test, temperature)), n_test_gold
            ),
        },
        "machine": machine(),
    }
    first = confidences(nlp, name, test.head(50), 1.0)
    results["max_difference_from_pipeline"] = check_against_pipeline(nlp, name, test_docs[:50], first)
    texts = [doc.text for doc in test_docs[: args.speed_docs]]
    results["speed"] = speed(nlp, name, texts, args.repeats)
    out = args.out or REPO / "bench" / "results" / f"calibration-{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf8")
    print(report(results))
    print(f"wrote {out}")
    return 0


def report(results: Dict[str, Any]) -> str:
    """A short text report of one results file."""
    lines = [f"{results['name']}: temperature {results['temperature']}"]
    for key in ("raw", "tempered"):
        s = results["test"][key]
        lines.append(f"  test {key}: ECE {s['ece']:.4f}, log loss {s['log_loss']:.4f}, {s['entities']} entities")
        for row in s["reliability"]:
            if row["count"]:
                lines.append(
                    f"    [{row['low']:.1f}, {row['high']:.1f}) n={row['count']:5d} "
                    f"conf {row['confidence']:.3f} precision {row['precision']:.3f}"
                )
        for row in s["keep_above"]:
            scores = f"P {row['p']:.3f} R {row['r']:.3f} F {row['f']:.3f}"
            lines.append(f"    t>={row['t']:.2f}: {scores} kept {row['kept']}")
    sp = results["speed"]
    lines.append(
        f"  speed: {sp['median_words_per_s']['off']:.0f} words/s off, {sp['median_words_per_s']['on']:.0f} on "
        f"(ratio {sp['ratio_on_off']:.3f}); confidence alone {statistics.median(sp['confidence_alone_s']):.2f} s "
        f"= {sp['confidence_share_of_pipeline']:.1%} of a {sp['pipeline_s']:.1f} s pass; "
        f"load {sp['load_average_before']} -> {sp['load_average_after']}"
    )
    return "\n".join(lines)


def plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(Path(path).read_text(encoding="utf8")) for path in args.results]
    fig, axes = plt.subplots(2, len(runs), figsize=(5.2 * len(runs), 9), squeeze=False)
    for col, run in enumerate(runs):
        ax = axes[0][col]
        ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect calibration")
        for key, color in (("raw", "#c0392b"), ("tempered", "#2471a3")):
            s = run["test"][key]
            rows = [row for row in s["reliability"] if row["count"]]
            label = "raw" if key == "raw" else f"temperature {run['temperature']:g}"
            ax.plot(
                [r["confidence"] for r in rows],
                [r["precision"] for r in rows],
                marker="o",
                color=color,
                label=f"{label} (ECE {s['ece']:.3f})",
            )
        ax.set_title(f"{run['name']}: reliability (test)")
        ax.set_xlabel("entity confidence (bin mean)")
        ax.set_ylabel("observed precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="upper left", fontsize=8)
        ax = axes[1][col]
        rows = run["test"]["raw"]["keep_above"]
        ts = [r["t"] for r in rows]
        ax.plot(ts, [r["p"] for r in rows], marker="o", label="precision")
        ax.plot(ts, [r["r"] for r in rows], marker="o", label="recall")
        ax.plot(ts, [r["f"] for r in rows], marker="o", label="F1")
        ax.set_title(f"{run['name']}: entities with confidence >= t (test)")
        ax.set_xlabel("t (0: all entities)")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.calibration", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="calibration and speed of one pipeline")
    m.add_argument("model", type=Path)
    m.add_argument("--name", required=True, help="results go to bench/results/calibration-NAME.json")
    m.add_argument("--dev", type=Path, required=True)
    m.add_argument("--test", type=Path, required=True)
    m.add_argument("--component", default="crf_ner")
    m.add_argument("--speed-docs", type=int, default=1000)
    m.add_argument("--repeats", type=int, default=3)
    m.add_argument("--note", default="", help="how the pipeline was trained")
    m.add_argument("--out", type=Path, default=None)
    p = sub.add_parser("plot", help="reliability diagrams and precision/recall by threshold")
    p.add_argument("results", type=Path, nargs="+")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "calibration.png")
    args = parser.parse_args(argv)
    return measure(args) if args.command == "measure" else plot(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
