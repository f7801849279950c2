"""The statistics of the report: paired bootstrap intervals (over test
sentences; over seeds and test documents), mean and spread over seeds, time
to a dev F1, and the choice from the learning-rate grid."""

import math
import statistics
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 12345
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Counts:
    """Per-sentence true positives, false positives and false negatives of
    one or more runs of a system: arrays shaped (runs, sentences)."""

    tp: numpy.ndarray
    fp: numpy.ndarray
    fn: numpy.ndarray

    @classmethod
    def of(cls, runs: Sequence[Dict[str, Any]]) -> "Counts":
        """From each run's ``{"tp": ..., "fp": ..., "fn": ...}``: lists of ints,
        or the space-separated strings that cells store."""
        arrays = [numpy.asarray([_ints(run[k]) for run in runs], dtype="int64") for k in ("tp", "fp", "fn")]
        if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 2:
            raise ValueError("every run needs tp, fp and fn for the same sentences")
        return cls(*arrays)

    @property
    def sentences(self) -> int:
        return int(self.tp.shape[1])


def _ints(values: Any) -> List[int]:
    return [int(v) for v in values.split()] if isinstance(values, str) else [int(v) for v in values]


def _f1(tp: numpy.ndarray, fp: numpy.ndarray, fn: numpy.ndarray) -> numpy.ndarray:
    denominator = 2 * tp + fp + fn
    return numpy.where(denominator > 0, 2 * tp / numpy.maximum(denominator, 1), 0.0)


def mean_f1(counts: Counts, weights: Optional[numpy.ndarray] = None) -> numpy.ndarray:
    """Micro F1 of each run, averaged over runs; with ``weights`` (resamples x
    sentences: how often each sentence is drawn), one value per resample."""
    if weights is None:
        weights = numpy.ones((1, counts.sentences), dtype="int64")
    return _run_f1(counts, weights).mean(axis=1)


def paired_bootstrap(
    a: Counts,
    b: Counts,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Dict[str, float]:
    """Mean F1 of ``a`` minus mean F1 of ``b`` (each averaged over its runs),
    with a percentile bootstrap interval over test sentences: each resample
    draws sentences with replacement and scores both systems on the same
    draw. The interval covers the test-set sampling; seed variation shows in
    the spread over runs, reported beside it."""
    if a.sentences != b.sentences:
        raise ValueError(f"unpaired: {a.sentences} vs {b.sentences} sentences")
    n = a.sentences
    rng = numpy.random.default_rng(seed)
    deltas: List[numpy.ndarray] = []
    for start in range(0, resamples, 250):
        size = min(250, resamples - start)
        weights = rng.multinomial(n, numpy.full(n, 1.0 / n), size=size)
        deltas.append(mean_f1(a, weights) - mean_f1(b, weights))
    return {**_interval(a, b, numpy.concatenate(deltas), confidence), "sentences": n}


def hierarchical_bootstrap(
    a: Counts,
    b: Counts,
    documents: Optional[Sequence[int]] = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Dict[str, Any]:
    """Mean F1 of ``a`` minus mean F1 of ``b`` with a two-level percentile
    bootstrap interval: each resample draws each system's runs (its seeds)
    with replacement, and test items with replacement, the same items for
    both systems. An item is a test document (``documents``: how many
    sentences each document has, in order) or, without ``documents``, a
    sentence. The interval covers both seed variation and test sampling."""
    if a.sentences != b.sentences:
        raise ValueError(f"unpaired: {a.sentences} vs {b.sentences} sentences")
    item_of = _item_of_sentence(documents, a.sentences)  # (sentences,)
    n_items = int(item_of.max()) + 1 if item_of.size else 0
    rng = numpy.random.default_rng(seed)
    deltas: List[numpy.ndarray] = []
    for start in range(0, resamples, 250):
        size = min(250, resamples - start)
        item_weights = rng.multinomial(n_items, numpy.full(n_items, 1.0 / n_items), size=size)  # (size, items)
        weights = item_weights[:, item_of]  # (size, sentences): a sentence counts as often as its item is drawn
        means = []
        for counts in (a, b):
            runs = counts.tp.shape[0]
            drawn = rng.integers(0, runs, size=(size, runs))  # (size, runs): the seeds of each resample
            per_run = _run_f1(counts, weights)  # (size, runs)
            means.append(numpy.take_along_axis(per_run, drawn, axis=1).mean(axis=1))
        deltas.append(means[0] - means[1])
    return {
        **_interval(a, b, numpy.concatenate(deltas), confidence),
        "items": "documents" if documents is not None else "sentences",
        "n_items": n_items,
    }


def _interval(a: Counts, b: Counts, deltas: numpy.ndarray, confidence: float) -> Dict[str, Any]:
    """The observed difference of mean F1 and the percentile interval of the resampled ``deltas``."""
    tail = (1.0 - confidence) / 2.0
    return {
        "delta_f1": float(mean_f1(a)[0] - mean_f1(b)[0]),
        "ci_low": float(numpy.quantile(deltas, tail)),
        "ci_high": float(numpy.quantile(deltas, 1.0 - tail)),
        "resamples": int(deltas.size),
        "runs_a": int(a.tp.shape[0]),
        "runs_b": int(b.tp.shape[0]),
    }


def _item_of_sentence(documents: Optional[Sequence[int]], sentences: int) -> numpy.ndarray:
    """The item index of each sentence: its document's, or its own."""
    if documents is None:
        return numpy.arange(sentences)
    sizes = numpy.asarray(documents, dtype="int64")
    if (sizes < 1).any() or int(sizes.sum()) != sentences:
        raise ValueError(f"documents of {int(sizes.sum())} sentences in all (each >= 1) for {sentences} sentences")
    return numpy.repeat(numpy.arange(len(sizes)), sizes)


def _run_f1(counts: Counts, weights: numpy.ndarray) -> numpy.ndarray:
    """Micro F1 of each run under each row of sentence weights: (resamples, runs)."""
    tp, fp, fn = (weights @ x.T for x in (counts.tp, counts.fp, counts.fn))  # (resamples, runs)
    return _f1(tp, fp, fn)


def excludes_zero(comparison: Dict[str, Any]) -> bool:
    """Whether an interval of a difference lies wholly on one side of 0."""
    return bool(comparison["ci_low"] > 0.0 or comparison["ci_high"] < 0.0)


def mean_sd(values: Sequence[float]) -> Dict[str, Any]:
    """Mean, sample standard deviation (None for one value), min, max, n."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(vals),
        "sd": statistics.stdev(vals) if len(vals) > 1 else None,
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
    }


def time_to(curve: Sequence[Dict[str, Any]], threshold: float) -> Optional[Dict[str, float]]:
    """The first checkpoint of a learning curve whose dev F1 reaches
    ``threshold``: its words seen and training seconds (None: never)."""
    for point in curve:
        if point["dev_f1"] >= threshold:
            return {"words_seen": point["words_seen"], "train_seconds": point["train_seconds"]}
    return None


def last_epoch_slope(curve: Sequence[Dict[str, Any]], epoch_words: float) -> Optional[float]:
    """Dev F1 points gained per epoch over the run's last epoch: from the
    first checkpoint at most one epoch before the last one, to the last
    (None: a run shorter than its first two checkpoints)."""
    if len(curve) < 2 or epoch_words <= 0:
        return None
    last = curve[-1]
    start = next(p for p in curve if p["words_seen"] >= last["words_seen"] - epoch_words)
    if start is last:
        start = curve[-2]
    epochs = (last["words_seen"] - start["words_seen"]) / epoch_words
    return 100.0 * (last["dev_f1"] - start["dev_f1"]) / epochs


def common_threshold(best_f1s: Sequence[float], step: float = 0.001) -> float:
    """A dev F1 that every run reaches: the lowest best dev F1, rounded down to ``step``."""
    if not best_f1s:
        raise ValueError("no runs")
    return math.floor(min(best_f1s) / step + 1e-9) * step


GridPoint = Tuple[Optional[float], float]  # (base learning rate, None: the configs' own; head scale)
SIDES = ("rate below", "rate above", "scale below", "scale above")


def choose_point(results: Dict[GridPoint, float]) -> GridPoint:
    """The grid point with the highest dev F1; a tie goes to the smaller
    head scale, then to the smaller rate."""
    if not results:
        raise ValueError("no grid results")
    return min(results, key=lambda point: (-results[point], point[1], point[0] or 0.0))


def neighbours(
    point: GridPoint, rate_ladder: Sequence[float], scale_ladder: Sequence[float]
) -> Dict[str, Optional[GridPoint]]:
    """The point's neighbours on each side along the two ladders (None: the
    ladder ends there, or the point is not on it)."""

    def step(ladder: Sequence[float], value: Optional[float], by: int) -> Optional[float]:
        if value is None or not any(math.isclose(value, rung) for rung in ladder):
            return None
        index = next(i for i, rung in enumerate(ladder) if math.isclose(value, rung)) + by
        return ladder[index] if 0 <= index < len(ladder) else None

    rate, scale = point
    found: Dict[str, Optional[GridPoint]] = {}
    for side, ladder, by in zip(SIDES, (rate_ladder, rate_ladder, scale_ladder, scale_ladder), (-1, 1, -1, 1)):
        if side.startswith("rate"):
            value = step(ladder, rate, by)
            found[side] = None if value is None else (value, scale)
        else:
            value = step(ladder, scale, by)
            found[side] = None if value is None else (rate, value)
    return found


def _tried(results: Dict[GridPoint, float], point: GridPoint) -> Optional[GridPoint]:
    """The key of ``results`` equal to ``point`` (floats compared with tolerance)."""
    for key in results:
        same_rate = (key[0] is None and point[0] is None) or (
            key[0] is not None and point[0] is not None and math.isclose(key[0], point[0])
        )
        if same_rate and math.isclose(key[1], point[1]):
            return key
    return None


def grid_extension(
    results: Dict[GridPoint, float], rate_ladder: Sequence[float], scale_ladder: Sequence[float]
) -> List[GridPoint]:
    """The neighbours of the best point not tried yet: the grid runs them
    next, until the best point has a tried neighbour (or a ladder's end) on
    every side."""
    best = choose_point(results)
    return [
        point
        for point in neighbours(best, rate_ladder, scale_ladder).values()
        if point is not None and _tried(results, point) is None
    ]


def optimum_sides(
    results: Dict[GridPoint, float], rate_ladder: Sequence[float], scale_ladder: Sequence[float]
) -> Dict[str, str]:
    """For the best point, what lies on each side: "worse" (a tried
    neighbour with a lower dev F1), "tie", "untried", "ladder end", or "not
    tuned" (no ladder along that axis)."""
    best = choose_point(results)
    out: Dict[str, str] = {}
    for side, point in neighbours(best, rate_ladder, scale_ladder).items():
        tried = None if point is None else _tried(results, point)
        on_rates = side.startswith("rate")
        if not (rate_ladder if on_rates else scale_ladder) or (on_rates and best[0] is None):
            out[side] = "not tuned"  # no ladder on this axis, or the configs' own rate
        elif point is None:
            out[side] = "ladder end"
        elif tried is None:
            out[side] = "untried"
        else:
            out[side] = "worse" if results[tried] < results[best] else "tie"
    return out


def interval_clears(low: Optional[float], high: Optional[float], goal: float, above: bool = True) -> Optional[bool]:
    """Whether a whole interval lies at or beyond ``goal`` (None: not measured)."""
    if low is None or high is None:
        return None
    return low >= goal if above else high <= goal
