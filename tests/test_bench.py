"""bench/, the benchmark harness: cells and their resumption by package hash,
the statistics (paired bootstrap, time to F1, the learning-rate grid), the
training rules, a deterministic report, and the quick run end to end (what CI
runs of the benchmark)."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy
import pytest
from spacy.vocab import Vocab

from bench.cell_plan import MissingGridError, chosen_settings, grid_keys
from bench.cells import CellError, CellStore, MixedHashError, load_cells, run_cells
from bench.provenance import package_hash
from bench.recorder import TrainingRecorder
from bench.rules import warmup_steps
from bench.specs import Budget, BudgetRule, CellKey, CellSpec, CorpusSpec, Limits, setting_rate, setting_scale
from bench.stats import (
    Counts,
    choose_point,
    common_threshold,
    excludes_zero,
    grid_extension,
    hierarchical_bootstrap,
    last_epoch_slope,
    optimum_sides,
    paired_bootstrap,
    time_to,
)

REPO = Path(__file__).resolve().parents[1]
MACHINE = {"cpu_model": "test", "versions": {"torch": "x"}}


# ---------------------------------------------------------------- cells


def _micro_cell(key: CellKey, package: str) -> Dict[str, Any]:
    return {
        "cell_id": key.cell_id,
        "corpus": key.corpus,
        "stage": key.stage,
        "system": key.system,
        "setting": key.setting,
        "seed": key.seed,
        "device": "cpu",
        "device_name": "test",
        "package_hash": package,
        "commit": "c0ffee",
        "machine": MACHINE,
        "loadavg_before": [0.0, 0.0, 0.0],
        "loadavg_after": [0.0, 0.0, 0.0],
    }


def _spec(key: CellKey) -> CellSpec:
    return CellSpec(key=key, corpus_dir="", model_dir="", transformer=None, threads=None)


def test_package_hash_follows_package_code_and_configs_not_bench(tmp_path):
    for name, text in {
        "spacy_bilstm_crf/a.py": "x = 1\n",
        "spacy_bilstm_crf/sub/b.py": "y = 2\n",
        "configs/en/c.cfg": "[nlp]\n",
        "pyproject.toml": "[project]\n",
        "bench/run.py": "z = 3\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    first = package_hash(tmp_path)
    (tmp_path / "bench" / "run.py").write_text("z = 4\n")
    assert package_hash(tmp_path) == first
    for name in ("spacy_bilstm_crf/sub/b.py", "configs/en/c.cfg", "pyproject.toml"):
        before = package_hash(tmp_path)
        (tmp_path / name).write_text((tmp_path / name).read_text() + "# changed\n")
        assert package_hash(tmp_path) != before, name


def test_cells_are_skipped_for_the_same_package_hash_and_rerun_for_another(tmp_path):
    store = CellStore(tmp_path / "cells")
    keys = [CellKey("msra", "micro", "heads", "cpu", 0), CellKey("any", "micro", "crf_scaling", "cpu", 0)]
    calls: List[str] = []

    def runner(package: str):
        def run(spec: CellSpec) -> Dict[str, Any]:
            calls.append(spec.key.cell_id)
            return _micro_cell(spec.key, package)

        return run

    done = run_cells([_spec(k) for k in keys], store, "hash-a", runner("hash-a"))
    assert done["ran"] == [k.cell_id for k in keys] and not done["skipped"]
    assert all(store.path(k).exists() for k in keys)
    done = run_cells([_spec(k) for k in keys], store, "hash-a", runner("hash-a"))
    assert done["skipped"] == [k.cell_id for k in keys] and len(calls) == 2
    # An interrupted run resumes: only the missing cell runs.
    store.path(keys[0]).unlink()
    done = run_cells([_spec(k) for k in keys], store, "hash-a", runner("hash-a"))
    assert done["ran"] == [keys[0].cell_id] and done["skipped"] == [keys[1].cell_id]
    # New package code: every cell runs again and its file is replaced.
    done = run_cells([_spec(k) for k in keys], store, "hash-b", runner("hash-b"))
    assert done["ran"] == [k.cell_id for k in keys]
    assert {store.load(k)["package_hash"] for k in keys} == {"hash-b"}
    # A cell that ran on other code than the run's is refused, not written.
    done = run_cells([_spec(keys[0])], store, "hash-c", runner("hash-b"))
    assert done["failed"] and store.load(keys[0])["package_hash"] == "hash-b"


def test_report_refuses_to_mix_package_hashes_unless_told(tmp_path):
    store = CellStore(tmp_path)
    store.write(_micro_cell(CellKey("msra", "micro", "heads", "cpu", 0), "hash-a"))
    store.write(_micro_cell(CellKey("any", "micro", "crf_scaling", "cpu", 0), "hash-b"))
    with pytest.raises(MixedHashError) as error:
        load_cells(tmp_path)
    assert "hash-a" in str(error.value) and "hash-b" in str(error.value)
    assert len(load_cells(tmp_path, allow_mixed=True)) == 2
    with pytest.raises(CellError, match="no cells"):
        load_cells(tmp_path / "empty")


def test_a_training_cell_without_its_figures_is_refused(tmp_path):
    cell = _micro_cell(CellKey("msra", "main", "crf", "x1", 0), "h")
    with pytest.raises(CellError, match="head_lr_scale.*dev_f1_best"):
        CellStore(tmp_path).write(cell)


# ---------------------------------------------------------------- statistics


def _counts(correct: numpy.ndarray) -> Dict[str, List[int]]:
    """One gold entity per sentence, found (tp) or replaced by a wrong one (fp + fn)."""
    hit = correct.astype(int)
    return {"tp": hit.tolist(), "fp": (1 - hit).tolist(), "fn": (1 - hit).tolist()}


def test_paired_bootstrap_of_identical_systems_is_zero():
    runs = [_counts(numpy.random.default_rng(0).random(500) < 0.7)]
    result = paired_bootstrap(Counts.of(runs), Counts.of(runs), resamples=500)
    assert result["delta_f1"] == 0.0 and result["ci_low"] == 0.0 and result["ci_high"] == 0.0


@pytest.mark.slow
def test_paired_bootstrap_matches_the_paired_normal_interval():
    """With one gold entity per sentence, F1 is the share of sentences right,
    so the difference is a mean of paired per-sentence differences and its
    95% interval is known: mean +- 1.96 sd / sqrt(n). The systems agree on most
    sentences, so an unpaired interval would be about twice as wide."""
    rng = numpy.random.default_rng(1)
    n = 4000
    a = rng.random(n) < 0.80
    b = a.copy()
    flip = rng.random(n) < 0.12
    b[flip] = rng.random(int(flip.sum())) < 0.5  # B differs from A on about 6% of sentences
    diff = a.astype(float) - b.astype(float)
    half = 1.96 * diff.std(ddof=1) / numpy.sqrt(n)
    result = paired_bootstrap(Counts.of([_counts(a)]), Counts.of([_counts(b)]), resamples=4000)
    assert result["delta_f1"] == pytest.approx(diff.mean())
    assert result["ci_low"] == pytest.approx(diff.mean() - half, abs=0.15 * half)
    assert result["ci_high"] == pytest.approx(diff.mean() + half, abs=0.15 * half)
    unpaired = 1.96 * numpy.sqrt((a.var(ddof=1) + b.var(ddof=1)) / n)
    assert result["ci_high"] - result["ci_low"] < 0.7 * 2 * unpaired


def test_paired_bootstrap_averages_the_seeds_and_needs_the_same_sentences():
    good = _counts(numpy.ones(10, dtype=bool))
    half = _counts(numpy.arange(10) < 5)
    result = paired_bootstrap(Counts.of([good, half]), Counts.of([half]), resamples=200)
    assert result["delta_f1"] == pytest.approx((1.0 + 0.5) / 2 - 0.5)
    assert result["runs_a"] == 2 and result["runs_b"] == 1
    with pytest.raises(ValueError, match="unpaired"):
        paired_bootstrap(Counts.of([good]), Counts.of([_counts(numpy.ones(9, dtype=bool))]))


def _exact_delta_distribution(a: Counts, b: Counts, documents: List[int]) -> Dict[float, float]:
    """The two-level bootstrap's distribution of mean F1(a) - mean F1(b), by
    enumerating every draw: document counts (multinomial) and each system's
    seed counts (multinomial), with their probabilities."""
    from itertools import combinations_with_replacement
    from math import factorial, prod

    def draws(n: int):  # every multiset of n draws from n things, as counts, with its probability
        for picked in combinations_with_replacement(range(n), n):
            counts = [picked.count(i) for i in range(n)]
            yield counts, factorial(n) / prod(factorial(c) for c in counts) / n**n

    item_of = numpy.repeat(numpy.arange(len(documents)), documents)
    out: Dict[float, float] = {}
    for doc_counts, p_docs in draws(len(documents)):
        weights = numpy.asarray(doc_counts)[item_of]
        f1 = []
        for counts in (a, b):
            tp, fp, fn = (x @ weights for x in (counts.tp, counts.fp, counts.fn))
            f1.append(numpy.where(2 * tp + fp + fn > 0, 2 * tp / numpy.maximum(2 * tp + fp + fn, 1), 0.0))
        for seeds_a, p_a in draws(len(f1[0])):
            for seeds_b, p_b in draws(len(f1[1])):
                delta = float(numpy.dot(seeds_a, f1[0]) / len(f1[0]) - numpy.dot(seeds_b, f1[1]) / len(f1[1]))
                key = round(delta, 12)
                out[key] = out.get(key, 0.0) + p_docs * p_a * p_b
    return out


def test_the_seed_and_document_bootstrap_matches_the_exact_distribution_of_its_draws():
    # Hand-built cells: 3 seeds of A, 2 of B, 6 sentences in 3 documents of 2, 1 and 3 sentences.
    a = Counts.of(
        [
            {"tp": [2, 1, 0, 3, 1, 1], "fp": [0, 0, 1, 0, 1, 0], "fn": [0, 1, 1, 0, 0, 0]},
            {"tp": [1, 1, 1, 2, 1, 0], "fp": [1, 0, 0, 0, 0, 1], "fn": [1, 1, 0, 1, 0, 1]},
            {"tp": [2, 2, 1, 3, 0, 1], "fp": [0, 0, 0, 1, 1, 0], "fn": [0, 0, 0, 0, 1, 0]},
        ]
    )
    b = Counts.of(
        [
            {"tp": [1, 1, 0, 2, 1, 0], "fp": [1, 1, 1, 0, 0, 0], "fn": [1, 1, 1, 1, 0, 1]},
            {"tp": [2, 0, 1, 3, 0, 1], "fp": [0, 0, 0, 1, 0, 1], "fn": [0, 2, 0, 0, 1, 0]},
        ]
    )
    documents = [2, 1, 3]
    exact = _exact_delta_distribution(a, b, documents)
    assert sum(exact.values()) == pytest.approx(1.0)
    result = hierarchical_bootstrap(a, b, documents, resamples=40000)
    assert result["delta_f1"] == pytest.approx(
        numpy.mean([2 * t.sum() / (2 * t.sum() + p.sum() + n.sum()) for t, p, n in zip(a.tp, a.fp, a.fn)])
        - numpy.mean([2 * t.sum() / (2 * t.sum() + p.sum() + n.sum()) for t, p, n in zip(b.tp, b.fp, b.fn)])
    )
    assert (result["items"], result["n_items"], result["runs_a"], result["runs_b"]) == ("documents", 3, 3, 2)
    # Each end of the interval is the 2.5% (97.5%) quantile of the exact distribution, up to Monte Carlo error.
    for end, share in ((result["ci_low"], 0.025), (result["ci_high"], 0.975)):
        below = sum(p for value, p in exact.items() if value < end - 1e-9)
        at_or_below = sum(p for value, p in exact.items() if value <= end + 1e-9)
        assert below - 0.005 <= share <= at_or_below + 0.005


def test_seed_variance_widens_the_interval_past_zero_where_the_sentence_interval_excludes_it():
    # A's seeds disagree (one good, one poor), B is steady; the sentence-only
    # interval holds the seeds fixed and so excludes 0, the two-level one does not.
    rng = numpy.random.default_rng(3)
    n = 3000
    ease = rng.random(n)  # how easy each sentence is: the systems get the easy ones right
    good, poor, steady = (ease < share for share in (0.88, 0.78, 0.82))
    a = Counts.of([_counts(good), _counts(poor)])
    b = Counts.of([_counts(steady), _counts(steady)])
    sentences = paired_bootstrap(a, b, resamples=1000)
    both = hierarchical_bootstrap(a, b, resamples=1000)
    assert sentences["ci_low"] > 0 and excludes_zero(sentences)
    assert both["ci_low"] < 0 < both["ci_high"] and not excludes_zero(both)
    assert both["delta_f1"] == pytest.approx(sentences["delta_f1"])


def test_documents_widen_the_interval_where_errors_cluster_in_documents():
    # 100 documents of 20 sentences; A is right on whole documents where B is
    # wrong: the sentences of a document are not independent items.
    rng = numpy.random.default_rng(4)
    per_doc = rng.random(100) < 0.5
    a = numpy.repeat(per_doc, 20) | (rng.random(2000) < 0.6)
    b = rng.random(2000) < 0.7
    cells = Counts.of([_counts(a)]), Counts.of([_counts(b)])
    by_sentence = hierarchical_bootstrap(*cells, resamples=1000)
    by_document = hierarchical_bootstrap(*cells, [20] * 100, resamples=1000)
    assert by_document["ci_high"] - by_document["ci_low"] > 1.5 * (by_sentence["ci_high"] - by_sentence["ci_low"])
    with pytest.raises(ValueError, match="documents of 1999 sentences in all"):
        hierarchical_bootstrap(*cells, [20] * 99 + [19])


SOFTMAX_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]


def test_constrained_softmax_decoding_is_the_most_probable_valid_sequence():
    from itertools import product

    from bench.softmax import decode_tags
    from spacy_bilstm_crf.tag_scheme import is_valid_sequence

    rng = numpy.random.default_rng(7)
    sentences = [numpy.log(rng.dirichlet(numpy.ones(5), size=n)).astype("float32") for n in (4, 1, 3, 4, 2)]
    found = decode_tags(sentences, SOFTMAX_TAGS, "constrained")
    for scores, tags in zip(sentences, found):
        # Brute force: every tag sequence, the valid ones, the best sum of log-probabilities.
        valid = [
            seq
            for seq in product(range(5), repeat=len(scores))
            if is_valid_sequence([SOFTMAX_TAGS[i] for i in seq], "BIO")
        ]
        best = max(valid, key=lambda seq: sum(scores[t, tag] for t, tag in enumerate(seq)))
        assert tags == [SOFTMAX_TAGS[i] for i in best]
    # Where the argmax is invalid, the two decodings part: I-PER after O.
    scores = numpy.log(numpy.array([[0.6, 0.1, 0.1, 0.1, 0.1], [0.3, 0.05, 0.55, 0.05, 0.05]], dtype="float32"))
    assert decode_tags([scores], SOFTMAX_TAGS, "argmax") == [["O", "I-PER"]]  # read leniently: a PER entity
    assert decode_tags([scores], SOFTMAX_TAGS, "constrained") == [["O", "O"]]  # 0.6 x 0.3 > 0.1 x 0.55
    assert decode_tags([], SOFTMAX_TAGS, "constrained") == []
    with pytest.raises(ValueError, match="unknown decoding 'beam'"):
        decode_tags([scores], SOFTMAX_TAGS, "beam")


def test_softmax_cells_with_a_constrained_decoding_give_a_row_and_its_comparisons():
    from bench.aggregate import aggregate

    rng = numpy.random.default_rng(8)
    cells = []
    for seed in (0, 1, 2):
        ease = rng.random(300)
        cell = _training_cell("main", "softmax", 1.0, seed, ease < 0.80, 0.8)
        constrained = ease < 0.84
        cell["constrained"] = {
            "f1": float(constrained.mean()),
            "precision": float(constrained.mean()),
            "recall": float(constrained.mean()),
            "sentence_counts": _counts(constrained),
        }
        cells.append(cell)
        cells.append(_training_cell("main", "crf", 1.0, seed, ease < 0.86, 0.8))
    agg = aggregate(cells)
    row = agg["systems"]["conll2003"]["softmax_constrained"]
    assert row["title"].startswith("BERT-softmax decoded to valid IOB2 sequences")
    assert row["f1"]["mean"] == pytest.approx(numpy.mean([c["constrained"]["f1"] for c in cells if "constrained" in c]))
    assert row["train_seconds"] == agg["systems"]["conll2003"]["softmax"]["train_seconds"]  # the same training
    pairs = {(c["a"], c["b"]): c for c in agg["comparisons"]}
    assert pairs[("softmax_constrained", "softmax")]["delta_f1"] > 0
    assert ("crf", "softmax_constrained") in pairs and ("crf", "softmax") in pairs


def test_last_epoch_slope_is_the_dev_change_from_one_epoch_before_the_end():
    curve = [{"words_seen": 50 * k, "dev_f1": f1} for k, f1 in enumerate([0.5, 0.7, 0.80, 0.84, 0.85, 0.86], 1)]
    # 100 words an epoch: from the checkpoint at 200 words (0.84 dev F1) to the last at 300 (0.86).
    assert last_epoch_slope(curve, 100) == pytest.approx(2.0)
    assert last_epoch_slope(curve, 50) == pytest.approx(1.0)  # 0.85 -> 0.86 in one epoch of 50 words
    assert last_epoch_slope(curve, 1000) == pytest.approx(100 * 0.36 / 0.25)  # a run of a quarter of an epoch
    assert last_epoch_slope(curve[:1], 100) is None


def test_the_readme_table_marks_what_the_intervals_do_not_separate_and_replaces_only_its_markers(tmp_path):
    from bench.report import README_BEGIN, README_END, summary_table, write_readme_table

    def system(
        f1: float, sd: float, seconds: Tuple[float, float, float], cpus: Tuple[str, ...] = ("test cpu",)
    ) -> Dict[str, Any]:
        mean, low, high = seconds
        time = {
            "reached": 3,
            "runs": 3,
            "train_seconds": {"mean": mean, "min": low, "max": high, "n": 3},
            "train_cpus": list(cpus),
        }
        return {"f1": {"mean": f1, "sd": sd, "n": 3}, "to_common": time}

    def versus(delta: float, low: float, high: float) -> Dict[str, Any]:  # BiLSTM-CRF minus the system
        return {"delta_f1": delta, "ci_low": low, "ci_high": high}

    ratio = {"median": 1.2, "min": 1.1, "max": 1.3, "n": 5}
    agg = {
        "systems": {
            "conll2003": {
                "bilstm_crf": system(0.88, 0.002, (300.0, 250.0, 350.0)),
                "idcnn_crf": system(0.875, 0.001, (320.0, 300.0, 340.0)),
                "spacy_ner": system(0.87, 0.003, (600.0, 550.0, 650.0)),
                # trained in a session on another machine: its seconds are shown, never set against BiLSTM-CRF's
                "softmax": system(0.86, 0.003, (310.0, 290.0, 330.0), ("other cpu",)),
                "softmax_constrained": system(0.865, 0.003, (310.0, 290.0, 330.0), ("other cpu", "test cpu")),
            }
        },
        "versus_bilstm": {
            "conll2003": {"idcnn_crf": versus(0.005, -0.001, 0.011), "spacy_ner": versus(0.01, 0.004, 0.016)}
        },
        "common_threshold": {"conll2003": 0.896},
        "timing_cpu": {"conll2003": "test cpu"},
        "speed": {
            "cpu": {
                "conll2003": {
                    "device_name": "test cpu",
                    "over_bilstm": {
                        "bilstm_crf": {"infer": {"median": 1.0, "min": 1.0, "max": 1.0, "n": 5}},
                        "idcnn_crf": {"infer": ratio},
                        "spacy_ner": {"infer": {"median": 1.02, "min": 0.95, "max": 1.05, "n": 5}},
                    },
                }
            }
        },
    }
    text = summary_table(agg)
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in text.splitlines() if line.startswith("|")]
    rows = {row[0]: row[1:] for row in cells}
    f1 = rows["test F1, CoNLL-2003 English (all-MiniLM-L6-v2, uncased)"]
    assert f1[:3] == ["88.00 ± 0.20 (n=3)", "87.50 ± 0.10 (n=3)<br>≈ -0.50 [-1.10, +0.10]", "–"]
    assert f1[3] == "87.00 ± 0.30 (n=3)<br>-1.00 [-1.60, -0.40]"  # the interval excludes 0: no ≈
    seconds = rows["training seconds to dev F1 89.6, CoNLL-2003, CPU (test cpu)"]
    assert seconds[:4] == ["300 (250–350)", "≈ 320 (300–340)", "–", "600 (550–650)"]
    assert seconds[4] == "310 (290–330) on other cpu: not compared"  # overlaps BiLSTM-CRF's range, yet no ≈
    assert seconds[5] == "310 (290–330): seeds on 2 CPU models, not compared"
    speed = rows["inference speed over BiLSTM-CRF's, CoNLL-2003, CPU (test cpu)"]
    assert speed[:4] == ["1", "1.20x [1.10, 1.30]", "–", "≈ 1.02x [0.95, 1.05]"]
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{README_BEGIN}\nold table\n{README_END}\nafter\n", encoding="utf8")
    write_readme_table(readme, agg)
    assert readme.read_text(encoding="utf8") == f"# title\n\nbefore\n{README_BEGIN}\n{text}\n{README_END}\nafter\n"
    readme.write_text("no markers\n", encoding="utf8")
    with pytest.raises(ValueError, match="README.md: no '<!-- bench report: table -->'"):
        write_readme_table(readme, agg)


def test_time_to_threshold_takes_the_first_checkpoint_that_reaches_it():
    curve = [
        {"words_seen": 100, "train_seconds": 10.0, "dev_f1": 0.50},
        {"words_seen": 200, "train_seconds": 21.0, "dev_f1": 0.80},
        {"words_seen": 300, "train_seconds": 30.0, "dev_f1": 0.78},
        {"words_seen": 400, "train_seconds": 41.0, "dev_f1": 0.90},
    ]
    assert time_to(curve, 0.8) == {"words_seen": 200, "train_seconds": 21.0}
    assert time_to(curve, 0.95 * 0.90) == {"words_seen": 400, "train_seconds": 41.0}
    assert time_to(curve, 0.91) is None
    assert common_threshold([0.9123, 0.8871, 0.95]) == pytest.approx(0.887)


def test_learning_rate_grid_picks_the_best_dev_f1_and_breaks_ties_low():
    assert choose_point({(None, 1.0): 0.80, (None, 5.0): 0.85, (None, 20.0): 0.84}) == (None, 5.0)
    assert choose_point({(None, 20.0): 0.85, (None, 1.0): 0.85, (None, 5.0): 0.70}) == (None, 1.0)
    assert choose_point({(1e-4, 5.0): 0.85, (2e-5, 5.0): 0.85, (2e-5, 20.0): 0.85}) == (2e-5, 5.0)


RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4)
SCALES = (0.2, 1.0, 5.0, 20.0, 50.0, 100.0)


def test_the_grid_extends_until_the_best_point_has_a_worse_neighbour_on_every_side():
    # Dev F1 peaks at (5e-5, x50): a grid of {2e-5, 5e-5, 1e-4} x {1, 5, 20} has its best at the edge, x20.
    def dev(rate: float, scale: float) -> float:
        return 0.9 - (numpy.log10(rate / 5e-5)) ** 2 - 0.01 * (numpy.log10(scale / 50.0)) ** 2

    results = {(rate, scale): dev(rate, scale) for rate in (2e-5, 5e-5, 1e-4) for scale in (1.0, 5.0, 20.0)}
    assert grid_extension(results, RATES, SCALES) == [(5e-5, 50.0)]  # rates both sides tried; the scale above not
    assert optimum_sides(results, RATES, SCALES) == {
        "rate below": "worse",
        "rate above": "worse",
        "scale below": "worse",
        "scale above": "untried",
    }
    rounds = 0
    while grid_extension(results, RATES, SCALES):
        results.update((point, dev(*point)) for point in grid_extension(results, RATES, SCALES))
        rounds += 1
    assert rounds == 2 and choose_point(results) == (5e-5, 50.0)  # x50, then its neighbours at 2e-5/1e-4 and x100
    assert set(optimum_sides(results, RATES, SCALES).values()) == {"worse"}
    # At a ladder's end the grid stops and says so; without a ladder, the axis is not tuned.
    edge = {(None, 1.0): 0.7, (None, 5.0): 0.8, (None, 20.0): 0.9}
    assert grid_extension(edge, (), (1.0, 5.0, 20.0)) == []
    assert optimum_sides(edge, (), (1.0, 5.0, 20.0)) == {
        "rate below": "not tuned",
        "rate above": "not tuned",
        "scale below": "worse",
        "scale above": "ladder end",
    }


def _corpus(scales=(1.0, 20.0), systems=("bilstm_crf", "spacy_ner"), **grid: Any) -> CorpusSpec:
    rule = BudgetRule(1.0, 1.0, 1.0)
    return CorpusSpec(
        "msra", "zh", "characters", Limits(), rule, rule, scales, (0,), 5, 10, 100, grid_systems=systems, **grid
    )


MSRA_SYSTEMS = ("bilstm_crf", "idcnn_crf", "idcnn_strubell", "idcnn_sized", "crf", "spacy_ner")
MAIN_SETTINGS = {name: "x1" for name in MSRA_SYSTEMS}
UNDECIDED_PAIR_SEEDS = [("bilstm_crf", 3), ("bilstm_crf", 4), ("idcnn_crf", 3), ("idcnn_crf", 4)]


def _main_cell(key: CellKey) -> Dict[str, Any]:
    """A main cell on 400 test items where BiLSTM-CRF and IDCNN-CRF are alike
    and spaCy ner far behind: of the key pairs only the first is undecided."""
    ease = numpy.random.default_rng(9).random(400)
    shares = {"bilstm_crf": 0.85, "idcnn_crf": 0.85, "spacy_ner": 0.5}
    cell = _training_cell("main", key.system, 1.0, key.seed, ease < shares.get(key.system, 0.8), 0.8)
    cell.update(cell_id=key.cell_id, corpus="msra", setting=key.setting)
    return cell


def test_the_main_stage_adds_seeds_for_a_key_pair_its_seeds_leave_undecided(tmp_path):
    from bench.cell_plan import main_keys

    corpus = _corpus(scales=(1.0,), extra_seeds=(3, 4))
    store = CellStore(tmp_path)
    first = main_keys(corpus, MAIN_SETTINGS, store, "h")
    assert {k.seed for k in first} == {0} and len(first) == 6  # this corpus has one seed (seed 0)
    for key in first:
        store.write(_main_cell(key))
    keys = main_keys(corpus, MAIN_SETTINGS, store, "h")
    assert sorted((k.system, k.seed) for k in keys if k.seed in (3, 4)) == UNDECIDED_PAIR_SEEDS
    assert main_keys(corpus, MAIN_SETTINGS, store, "other") == first  # cells of other package code decide nothing


def test_one_run_of_the_main_stage_also_runs_the_extra_seeds_its_first_seeds_call_for(tmp_path):
    from bench.cell_plan import main_keys
    from bench.runner import run_stage

    corpus = _corpus(scales=(1.0,), extra_seeds=(3, 4))
    store = CellStore(tmp_path)
    trained: List[Tuple[str, int]] = []

    def train(spec: CellSpec) -> Dict[str, Any]:
        trained.append((spec.key.system, spec.key.seed))
        return _main_cell(spec.key)

    def plan() -> Tuple[List[CellKey], List[str]]:
        return main_keys(corpus, MAIN_SETTINGS, store, "h"), []

    def run_keys(keys: List[CellKey]) -> Dict[str, List[str]]:
        specs = [CellSpec(key=k, corpus_dir="c", model_dir="m", transformer=None, threads=1) for k in keys]
        return run_cells(specs, store, "h", train)

    assert run_stage("main", plan, run_keys) == []
    # the six first-seed cells, then the undecided pair's extra seeds
    assert len(trained) == 10 and trained[6:] == UNDECIDED_PAIR_SEEDS
    trained.clear()
    assert run_stage("main", plan, run_keys) == [] and trained == []  # a second run finds every cell done


def test_a_corpus_without_a_grid_is_reported_once_when_the_main_stage_plans_twice():
    from bench.runner import run_stage

    rounds = iter([["a"], []])

    def plan():
        return next(rounds), ["msra: no complete grid"]  # round 1 runs a cell, so round 2 plans again

    def run_keys(keys):
        return {"ran": keys, "skipped": [], "failed": []}

    assert run_stage("main", plan, run_keys) == ["msra: no complete grid"]


def test_the_subprocess_runner_keeps_the_task_files_of_settings_with_dots_apart(tmp_path, monkeypatch):
    import bench.runner as runner_module

    seen = []

    def fake_run(command, cwd, env):
        spec_path, out_path = command[-2], command[-1]
        seen.append((spec_path, out_path))
        Path(out_path).write_text(json.dumps({"from": Path(spec_path).name}))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(runner_module.subprocess, "run", fake_run)
    run = runner_module.subprocess_runner(tmp_path)
    results = []
    for setting in ("x1-lr0.001", "x1-lr0.002"):
        key = CellKey("msra", "grid", "bilstm_crf", setting, 0)
        results.append(run(CellSpec(key=key, corpus_dir="c", model_dir="m", transformer=None, threads=1)))
    assert [r["from"] for r in results] == ["x1-lr0.001-seed0.spec.json", "x1-lr0.002-seed0.spec.json"]
    assert len({path for pair in seen for path in pair}) == 4


def _put_grid_cell(store: CellStore, key: CellKey, dev_f1: float, package: str = "h") -> None:
    """A grid cell with only what planning reads (the store's writer would ask for a whole training cell)."""
    cell = {**_micro_cell(key, package), "head_lr_scale": setting_scale(key.setting), "dev_f1_best": dev_f1}
    store.path(key).parent.mkdir(parents=True, exist_ok=True)
    store.path(key).write_text(json.dumps(cell))


def test_the_planned_grid_grows_from_its_cells_and_the_main_stage_waits_for_it(tmp_path):
    corpus = _corpus(
        scales=(1.0, 5.0), systems=("bilstm_crf",), grid_rates=(5e-5,), rate_ladder=RATES, scale_ladder=SCALES
    )
    store = CellStore(tmp_path)
    first = grid_keys(corpus, store, "h")
    assert [k.setting for k in first] == ["x1-lr5e-05", "x5-lr5e-05"]
    for key, f1 in zip(first, (0.80, 0.85)):
        _put_grid_cell(store, key, f1)
    grown = grid_keys(corpus, store, "h")  # the best, x5 at 5e-5, needs its neighbours: 2e-5, 1e-4 and x20
    assert [k.setting for k in grown] == ["x1-lr5e-05", "x5-lr5e-05", "x5-lr2e-05", "x5-lr0.0001", "x20-lr5e-05"]
    with pytest.raises(MissingGridError, match="msra/grid/bilstm_crf/x5-lr2e-05/seed0"):
        chosen_settings(corpus, store, "h")
    for key, f1 in zip(grown[2:], (0.83, 0.84, 0.82)):
        _put_grid_cell(store, key, f1)
    # Every side of x5 at 5e-5 is worse: the grid is complete, its keys those it ran.
    assert sorted(grid_keys(corpus, store, "h")) == sorted(grown)
    assert chosen_settings(corpus, store, "h")["bilstm_crf"] == "x5-lr5e-05"
    assert setting_rate("x5-lr5e-05") == 5e-5 and setting_rate("x5") is None and setting_scale("x5-lr5e-05") == 5.0
    with pytest.raises(ValueError, match="not a learning-rate setting: 'lr5'"):
        setting_scale("lr5")


def test_plan_shows_placeholders_only_for_the_corpus_whose_grid_is_not_complete(tmp_path, capsys):
    """``bench plan --stage main`` over two corpora: MSRA's grid complete (its
    rates peak at 2e-3), CoNLL's not run: MSRA's main cells are at the grid's
    choice, only CoNLL's are placeholders."""
    from bench.__main__ import main as bench_main
    from bench.budgets import corpus_spec

    msra = corpus_spec("msra", False)
    store = CellStore(tmp_path / "cells")
    package = package_hash()
    while True:  # the grid grows until each best point has worse neighbours
        missing = [key for key in grid_keys(msra, store, package) if not store.is_done(key, package)]
        if not missing:
            break
        for key in missing:
            _put_grid_cell(store, key, 0.8 - abs(numpy.log2(setting_rate(key.setting) / 2e-3)) / 100, package)
    assert bench_main(["plan", "--stage", "main", "--corpora", "conll2003,msra", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("#")] == [
        "# main: conll2003's grid is not complete; settings shown are placeholders"
    ]
    cells = [line.split()[1] for line in printed if line.split()[0] in ("todo", "done", "stale")]
    msra_main = [cell_id for cell_id in cells if cell_id.startswith("msra/main/")]
    assert len(msra_main) == 14 and all("/x1-lr0.002/" in cell_id for cell_id in msra_main), msra_main


def test_main_stage_reads_each_systems_choice_from_the_grid_cells(tmp_path):
    corpus = _corpus()
    store = CellStore(tmp_path)
    f1 = {("bilstm_crf", "x1"): 0.70, ("bilstm_crf", "x20"): 0.75, ("spacy_ner", "x1"): 0.72, ("spacy_ner", "x20"): 0.6}
    keys = grid_keys(corpus)
    assert sorted((k.system, k.setting) for k in keys) == sorted(f1)
    for key in keys[:-1]:
        store.path(key).parent.mkdir(parents=True, exist_ok=True)
        store.path(key).write_text(
            json.dumps(
                {
                    **_micro_cell(key, "h"),
                    "head_lr_scale": float(key.setting[1:]),
                    "dev_f1_best": f1[key.system, key.setting],
                }
            )
        )
    with pytest.raises(MissingGridError, match=keys[-1].cell_id):
        chosen_settings(corpus, store, "h")
    last = keys[-1]
    cell = {
        **_micro_cell(last, "h"),
        "head_lr_scale": float(last.setting[1:]),
        "dev_f1_best": f1[last.system, last.setting],
    }
    store.path(last).write_text(json.dumps(cell))
    chosen = chosen_settings(corpus, store, "h")
    assert chosen["bilstm_crf"] == "x20" and chosen["spacy_ner"] == "x1"
    assert chosen["crf"] == "x1"  # not in this grid: the first point
    with pytest.raises(MissingGridError):  # grid cells of other package code do not count
        chosen_settings(corpus, store, "other")


# ---------------------------------------------------------------- training rules


def _recorder(f1s: List[float], budget: Budget, plan_steps: int, words_per_step: int) -> TrainingRecorder:
    scores = iter(f1s)
    saved: List[int] = []
    recorder = TrainingRecorder(
        budget, plan_steps, lambda: {"f1": next(scores), "precision": 0.0, "recall": 0.0}, lambda: saved.append(1)
    )
    for _ in range(plan_steps):
        if recorder.step(words_per_step, 1.0, 0.0):
            break
    return recorder


def test_recorder_trains_past_the_minimum_until_patience_runs_out():
    budget = Budget(min_words=400, max_words=2000, eval_every=100, patience=0.25)
    # Best at 500 words; at 700, 200 words without a gain is 29% >= 25% of 700: stop.
    recorder = _recorder([0.1, 0.2, 0.3, 0.4, 0.5, 0.45, 0.49, 0.5, 0.6], budget, 20, 100)
    assert recorder.stopped_by == "patience" and recorder.words_seen == 700
    assert recorder.best.words_seen == 500 and recorder.result()["dev_f1_best"] == 0.5
    # Still improving: it runs to the cap, where the schedule ends.
    recorder = _recorder([0.01 * i for i in range(1, 30)], budget, 20, 100)
    assert recorder.stopped_by == "cap" and recorder.words_seen == 2000
    # Never before the minimum, however flat the curve.
    recorder = _recorder([0.5] * 30, budget, 20, 100)
    assert recorder.stopped_by == "patience" and recorder.words_seen == 400
    # A fixed budget (the grid) evaluates once, at its end.
    recorder = _recorder([0.3], Budget(300, 300, 300), 10, 100)
    assert recorder.stopped_by == "budget" and len(recorder.curve) == 1


def test_warmup_is_the_configs_at_most_a_tenth_of_the_minimum_budget():
    assert warmup_steps(250, 1112) == 111
    assert warmup_steps(250, 5000) == 250
    assert warmup_steps(0, 1000) == 0
    assert warmup_steps(250, 5) == 1


def test_softmax_follows_the_configs_schedule_with_its_head_scaled():
    torch = pytest.importorskip("torch")
    from bench.softmax import build_optimizer
    from bench.systems import learn_rates

    rates = learn_rates("conll2003", 50, 5)
    assert rates[0] == 0.0 and max(rates) == pytest.approx(5e-5) and rates[5] == pytest.approx(5e-5)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(2, 2)
            self.classifier = torch.nn.Linear(2, 3)

    optimizer, scheduler = build_optimizer(Model(), "conll2003", rates, 20.0)
    for step in range(12):
        body, head = (group["lr"] for group in optimizer.param_groups)
        assert body == pytest.approx(rates[step]) and head == pytest.approx(20 * rates[step])
        optimizer.step()
        scheduler.step()


def test_a_base_rate_and_a_constant_schedule_reach_the_configs_and_the_softmax_rates(tmp_path):
    from bench.systems import build_config, learn_rates, with_base_rate

    decaying = learn_rates("conll2003", 20, 5, base_rate=1e-4)
    assert decaying[5] == pytest.approx(1e-4) and decaying[-1] < 1e-5  # the configs' decay, at the new rate
    constant = learn_rates("conll2003", 20, 5, base_rate=1e-4, constant=True)
    assert constant[:6] == pytest.approx([0.0, 2e-5, 4e-5, 6e-5, 8e-5, 1e-4]) and constant[5:] == [1e-4] * 15
    config = build_config("msra", "bilstm_crf", tmp_path, None, 400, 20, 1.0, 0, base_rate=4e-3, constant_rate=True)
    assert dict(config["training"]["optimizer"]["learn_rate"]) == {
        "@schedules": "bench.warmup_constant.v1",
        "warmup_steps": 20,
        "total_steps": 400,
        "initial_rate": 4e-3,
    }
    as_configured = build_config("msra", "bilstm_crf", tmp_path, None, 400, 20, 1.0, 0)
    assert as_configured["training"]["optimizer"]["learn_rate"]["@schedules"] == "warmup_linear.v1"
    assert with_base_rate(0.001, 2e-3) == 2e-3 and with_base_rate(0.001, None) == 0.001
    with pytest.raises(ValueError, match="cannot set the base rate of the schedule 'compounding.v1'"):
        with_base_rate({"@schedules": "compounding.v1", "start": 1, "stop": 2}, 1e-3)


@pytest.fixture(scope="module")
def msra_tiny(tmp_path_factory):
    """A tiny MSRA-shaped corpus folder from bench/tiny.py."""
    from bench.docbins import prepare_corpus

    folder = tmp_path_factory.mktemp("msra")
    prepare_corpus("msra", folder / "no-data", folder / "corpus", Limits(dev_fraction=0.1), allow_tiny=True)
    return folder / "corpus"


def _params(nodes) -> List[numpy.ndarray]:
    return [node.get_param(name).copy() for node in nodes for name in node.param_names if node.has_param(name)]


def _ner_delta(corpus_dir: Path, scale: float):
    """The largest weight change of spaCy ner's tok2vec and of the rest of its
    model after one training step with the head at ``scale``."""
    from spacy.training import Example

    from bench.docbins import bare_doc, load_docs
    from bench.train_spacy import init_pipeline, ner_tok2vec, train_step

    nlp, optimizer, _ = init_pipeline("msra", "spacy_ner", corpus_dir, None, 10, 0, scale)
    model = nlp.get_pipe("ner").model
    tok2vec = list(ner_tok2vec(model).walk())
    head = [node for node in model.walk() if all(node is not t for t in tok2vec)]
    before = [_params(tok2vec), _params(head)]
    docs = load_docs(corpus_dir / "train.spacy", nlp.vocab)[:4]
    train_step(nlp, [Example(bare_doc(d), d) for d in docs], optimizer, 0.0, scale)
    after = [_params(tok2vec), _params(head)]
    return [max(float(numpy.abs(a - b).max()) for a, b in zip(new, old)) for new, old in zip(after, before)]


def test_spacy_ner_head_learns_at_the_scaled_rate_and_its_tok2vec_at_the_rate(msra_tiny):
    """Adam's first step moves every weight by the learning rate times
    g / (|g| + eps), plus weight decay, all scaled alike: a head at x20 moves 20
    times as far. The tok2vec must move as far at both scales (at the first
    step only weight decay moves it: spaCy starts ner's output layer at zero)."""
    (t2v_1, head_1), (t2v_20, head_20) = _ner_delta(msra_tiny, 1.0), _ner_delta(msra_tiny, 20.0)
    assert head_1 > 0 and t2v_1 > 0
    assert head_20 == pytest.approx(20 * head_1, rel=1e-3)
    assert t2v_20 == pytest.approx(t2v_1, rel=1e-3)


def test_the_pretrained_row_starts_from_weights_pretrained_on_the_training_text_alone(msra_tiny, tmp_path):
    """``pretrain_tok2vec`` reads train.spacy's texts only, and the pipeline's
    tok2vec starts from the weights it saved, not from a fresh initialisation."""
    import srsly

    from bench.docbins import load_docs
    from bench.train_spacy import RAW_TEXT, init_pipeline, pretrain_tok2vec

    weights = pretrain_tok2vec("msra", "pretrained", msra_tiny, tmp_path / "pretrain", 0)
    texts = [line["text"] for line in srsly.read_jsonl(tmp_path / "pretrain" / RAW_TEXT)]
    assert texts == [doc.text for doc in load_docs(msra_tiny / "train.spacy", Vocab())]
    saved = srsly.msgpack_loads(weights.read_bytes())["params"]

    def tok2vec_params(nlp: Any) -> List[numpy.ndarray]:
        data = srsly.msgpack_loads(nlp.get_pipe("crf_ner").model.get_ref("tok2vec").to_bytes())["params"]
        return [numpy.asarray(v) for node in data for v in node.values()]

    started, _, _ = init_pipeline("msra", "pretrained", msra_tiny, None, 10, 0, 1.0, 0, init_tok2vec=weights)
    fresh, _, _ = init_pipeline("msra", "words", msra_tiny, None, 10, 0, 1.0, 0)
    expected = [numpy.asarray(v) for node in saved for v in node.values()]
    assert len(expected) == len(tok2vec_params(started)) > 0
    assert all(numpy.array_equal(a, b) for a, b in zip(tok2vec_params(started), expected))
    assert not all(numpy.array_equal(a, b) for a, b in zip(tok2vec_params(fresh), expected))
    with pytest.raises(ValueError, match="run pretrain_tok2vec first"):
        init_pipeline("msra", "pretrained", msra_tiny, None, 10, 0, 1.0, 0)


def test_each_seed_initializes_its_own_weights(msra_tiny):
    from bench.train_spacy import init_pipeline

    def weights(seed: int) -> List[numpy.ndarray]:
        nlp, _, _ = init_pipeline("msra", "crf", msra_tiny, None, 10, 0, 1.0, seed)
        return _params(nlp.get_pipe("crf_ner").model.walk())

    first, again, other = weights(0), weights(0), weights(1)
    assert all(numpy.array_equal(a, b) for a, b in zip(first, again))
    assert not all(numpy.array_equal(a, b) for a, b in zip(first, other))


def test_training_timers_time_the_crf_and_put_the_layers_back(msra_tiny):
    from spacy.training import Example

    from bench.docbins import bare_doc, load_docs
    from bench.timing import infer_breakdown, training_timers
    from bench.train_spacy import init_pipeline, train_step

    nlp, optimizer, dropout = init_pipeline("msra", "bilstm_crf", msra_tiny, None, 10, 0, 1.0)
    model = nlp.get_pipe("crf_ner").model
    crf, encoder = model.get_ref("crf"), model.get_ref("encoder")
    docs = load_docs(msra_tiny / "train.spacy", nlp.vocab)[:4]
    with training_timers(nlp) as timers:
        assert model.get_ref("crf") is not crf
        train_step(nlp, [Example(bare_doc(d), d) for d in docs], optimizer, dropout, 1.0)
    assert timers["crf"].forward > 0 and timers["crf"].backward > 0 and timers["encoder"].backward > 0
    assert model.get_ref("crf") is crf and model.get_ref("encoder") is encoder
    assert all(node.name != "timed(crf)" for node in model.walk())
    parts = infer_breakdown(nlp, docs, 2)
    assert {"crf_ner", "crf_ner.viterbi", "crf_ner.emissions"} <= set(parts)


# ---------------------------------------------------------------- report


def _training_cell(stage: str, system: str, scale: float, seed: int, correct: numpy.ndarray, best: float):
    key = CellKey("conll2003", stage, system, f"x{scale:g}", seed)
    counts = _counts(correct)
    f1 = float(correct.mean())
    curve = [
        {"words_seen": 100 * k, "train_seconds": 10.0 * k + seed, "dev_f1": best * k / 4, "step": k}
        for k in range(1, 5)
    ]
    return {
        **_micro_cell(key, "h"),
        "device_name": "test cpu",
        "head_lr_scale": scale,
        "words_seen": 400,
        "epochs": 1.0,
        "train_seconds": 40.0 + seed,
        "train_words_per_s": 10.0,
        "dev_f1_best": best,
        "f1": f1,
        "precision": f1,
        "recall": f1,
        "learning_curve": curve,
        "stopped_by": "cap",
        "seqeval_agrees": True,
        "sentence_counts": counts,
        "test_fingerprint": "fp",
        "budget": {"min_words": 200, "max_words": 400, "eval_every": 100, "patience": 0.25},
        "schedule": {"warmup_steps": 4, "total_steps": 40},
        "config": {"grad_clip": 1.0},
        "data": {"splits": {s: {"sentences": 50, "words": 400} for s in ("train", "dev", "test")}},
        "transformer": {"_name_or_path": "tiny", "weights_sha256": "abc"},
    }


def test_training_seconds_come_from_one_cpu_model_and_other_models_are_never_compared():
    from bench.aggregate import head_to_head, system_summary, timing_cpu
    from bench.report import _time_cell

    def runs(system: str, cpus: str) -> List[Dict[str, Any]]:
        # seed k reaches dev F1 0.45 after 20 + k seconds (curve: 0.225, 0.45, 0.675, 0.9 every 10 s)
        made = [_training_cell("main", system, 20.0, seed, numpy.ones(10, bool), 0.9) for seed in range(len(cpus))]
        return [{**cell, "device_name": cpu} for cell, cpu in zip(made, cpus)]

    # seeds 3 and 4 of the pair ran in a session on CPU "B", where `ner` ran all of its seeds
    main = {"bilstm_crf": runs("bilstm_crf", "AAABB"), "idcnn_crf": runs("idcnn_crf", "AAABB")}
    main["spacy_ner"] = runs("spacy_ner", "BBBBB")
    assert timing_cpu(main) == "A"  # BiLSTM-CRF's most frequent, though B has more runs in all
    assert timing_cpu({"bilstm_crf": runs("bilstm_crf", "AB"), "idcnn_crf": runs("idcnn_crf", "B")}) == "B"
    assert timing_cpu({"bilstm_crf": runs("bilstm_crf", "BA")}) == "A"
    assert timing_cpu({"spacy_ner": main["spacy_ner"]}) == "B" and timing_cpu({}) is None

    systems = {name: system_summary("conll2003", name, cells, 0.45, "A") for name, cells in main.items()}
    bilstm = systems["bilstm_crf"]
    assert bilstm["f1"]["n"] == 5 and bilstm["train_cpus"] == ["A", "B"]  # accuracy: every seed
    assert bilstm["to_common"]["train_seconds"] == {"mean": 21.0, "sd": 1.0, "min": 20.0, "max": 22.0, "n": 3}
    assert (bilstm["to_common"]["train_cpus"], bilstm["to_common"]["other_cpu_runs"]) == (["A"], 2)
    assert systems["spacy_ner"]["to_common"]["train_cpus"] == ["B"]  # no run on A: its own CPU's seconds
    agg = {"systems": {"conll2003": systems}, "timing_cpu": {"conll2003": "A"}}
    assert _time_cell(agg, "conll2003", "bilstm_crf") == "21 (20–22), 3 of 5 seeds"
    assert _time_cell(agg, "conll2003", "idcnn_crf") == "≈ 21 (20–22), 3 of 5 seeds"
    assert _time_cell(agg, "conll2003", "spacy_ner") == "22 (20–24) on B: not compared"
    pair = head_to_head({"conll2003": main})["conll2003"]
    assert pair["bilstm_crf"]["train_cpus"] == ["A"] and pair["idcnn_crf"]["other_cpu_runs"] == 2


def _synthetic_cells(folder: Path) -> None:
    store = CellStore(folder)
    rng = numpy.random.default_rng(3)
    for system, p in (("bilstm_crf", 0.9), ("idcnn_crf", 0.85), ("spacy_ner", 0.7), ("softmax", 0.88), ("crf", 0.87)):
        for scale in (1.0, 20.0):
            store.write(_training_cell("grid", system, scale, 0, rng.random(300) < p, p - 0.01 * scale / 20))
        for seed in (0, 1, 2):
            store.write(_training_cell("main", system, 1.0, seed, rng.random(300) < p, p))


@pytest.mark.slow
def test_report_is_deterministic_and_holds_the_comparisons(tmp_path):
    from bench.report import write_report

    _synthetic_cells(tmp_path / "cells")
    outputs = []
    for run in ("a", "b"):
        paths = write_report(
            tmp_path / "cells", tmp_path / run / "b.md", tmp_path / run / "img", tmp_path / run / "agg.json"
        )
        outputs.append({p.relative_to(tmp_path / run).as_posix(): p.read_bytes() for p in paths})
    assert outputs[0] == outputs[1]
    assert {"b.md", "agg.json", "img/learning_curves.png", "img/time_to_f1.png"} <= set(outputs[0])
    aggregate = json.loads(outputs[0]["agg.json"])
    pairs = {(c["a"], c["b"]) for c in aggregate["comparisons"]}
    assert {
        ("bilstm_crf", "idcnn_crf"),
        ("bilstm_crf", "spacy_ner"),
        ("bilstm_crf", "softmax"),
        ("crf", "softmax"),
    } <= pairs
    for entry in aggregate["comparisons"]:
        assert {"a", "b", "corpus", "delta_f1", "ci_low", "ci_high"} <= set(entry)
        assert entry["ci_low"] <= entry["delta_f1"] <= entry["ci_high"]
    assert aggregate["grid"]["conll2003"]["bilstm_crf"]["chosen"] == "x1"
    page = outputs[0]["b.md"].decode("utf8")
    bilstm_vs_ner = next(c for c in aggregate["comparisons"] if (c["a"], c["b"]) == ("bilstm_crf", "spacy_ner"))
    assert f"{100 * bilstm_vs_ner['ci_low']:+.2f}" in page
    assert "15 of 15 runs stopped at the cap." in page
    target = next(t for t in aggregate["targets"] if t["name"] == "conll2003_f1_bilstm_crf_vs_spacy_ner")
    assert target["met"] is (bilstm_vs_ner["ci_low"] > 0)


def test_the_chinese_features_are_named_from_what_the_grid_and_main_cells_record():
    from bench.aggregate import token_features
    from bench.report import corpus_name

    def msra_cell(stage: str, embed: Optional[str]) -> Dict[str, Any]:
        cell = {**_training_cell(stage, "bilstm_crf", 1.0, 0, numpy.ones(4, dtype=bool), 0.9), "corpus": "msra"}
        if embed is not None:
            cell["config"] = {"grad_clip": 1.0, "tok2vec": {"embed": {"@architectures": embed}}}
        return cell

    ngram = "spacy-bilstm-crf.CharNgramEmbed.v1"
    cells = [msra_cell("main", ngram), msra_cell("grid", ngram), msra_cell("ablation", "spacy.MultiHashEmbed.v2")]
    agg = {"token_features": token_features(cells)}
    assert agg["token_features"] == {"msra": ["CharNgramEmbed"]}  # the ablation's rows are not the corpus's features
    assert corpus_name(agg, "msra") == "MSRA Chinese (CharNgramEmbed + CNN tok2vec)"
    # cells of the first run did not record their tok2vec: the page names no features it cannot show
    assert token_features([msra_cell("main", None)]) == {}
    assert corpus_name({}, "msra") == "MSRA Chinese (CNN tok2vec)"
    assert corpus_name(agg, "conll2003") == "CoNLL-2003 English (all-MiniLM-L6-v2, uncased)"


def test_comparisons_recompute_the_seed_and_document_interval_from_the_cells_and_claim_only_outside_zero():
    from bench.aggregate import comparisons
    from bench.report import comparison_line

    rng = numpy.random.default_rng(6)
    documents = [30, 50, 20, 60, 40] * 4  # 800 test sentences in 20 documents
    ease = rng.random(800)
    main: Dict[str, Dict[str, List[Dict[str, Any]]]] = {"conll2003": {}}
    for system, shares in (("bilstm_crf", (0.84, 0.80, 0.87)), ("idcnn_crf", (0.83, 0.82, 0.82))):
        main["conll2003"][system] = [
            _training_cell("main", system, 1.0, seed, ease < share, 0.8) for seed, share in enumerate(shares)
        ]
        for cell in main["conll2003"][system]:
            cell["data"]["splits"]["test"] = {"sentences": 800, "words": 8000, "documents": documents}
    (entry,) = comparisons(main, [("bilstm_crf", "idcnn_crf")])
    a, b = (Counts.of([c["sentence_counts"] for c in main["conll2003"][name]]) for name in ("bilstm_crf", "idcnn_crf"))
    expected = hierarchical_bootstrap(a, b, documents)
    assert (entry["ci_low"], entry["ci_high"], entry["delta_f1"]) == (
        expected["ci_low"],
        expected["ci_high"],
        expected["delta_f1"],
    )
    sentences = paired_bootstrap(a, b)
    assert (entry["sentence_ci_low"], entry["sentence_ci_high"]) == (sentences["ci_low"], sentences["ci_high"])
    assert (entry["items"], entry["n_items"], entry["sentences"]) == ("documents", 20, 800)
    # The seeds disagree: the sentence interval alone would claim a difference, the two-level one does not.
    assert entry["sentence_ci_low"] > 0 and entry["ci_low"] < 0 < entry["ci_high"]
    line = comparison_line(entry)
    assert line.startswith("no difference detected at 3 seeds (the interval includes 0): bilstm_crf − idcnn_crf")
    assert "3 vs 3 seeds, 800 test sentences in 20 documents" in line
    main["conll2003"]["idcnn_crf"][0]["data"]["splits"]["test"]["documents"] = [400, 400]
    with pytest.raises(ValueError, match="different test documents"):
        comparisons(main, [("bilstm_crf", "idcnn_crf")])


def _ablation_cell(system: str, seed: int, correct: numpy.ndarray, dev: float, package: str = "h"):
    cell = _training_cell("ablation", system, 1.0, seed, correct, dev)
    key = CellKey("msra", "ablation", system, "x1", seed)
    cell.update(cell_id=key.cell_id, corpus="msra", package_hash=package, model_bytes=2_000_000, test_seconds=4.0)
    cell.update(stopped_by="budget", best={"train_seconds": 30.0 + seed}, loadavg_before=[2.0 + seed, 0, 0])
    cell["config"] = {"pipeline": ["ner" if system == "ner_words" else "crf_ner"]}
    cell["data"] = {**cell["data"], "notes": {"dev_source": "the last 5% of train.txt"}}
    cell["torch_threads"] = 1
    return cell


def test_ablation_rows_compare_with_the_default_and_the_page_says_the_split_is_not_sighans():
    from bench.aggregate import ablation_summary
    from bench.report import chinese_section
    from bench.targets import chinese_default_target

    rng = numpy.random.default_rng(5)
    hits = {"words": 0.9, "bigrams": 0.8, "chars": 0.6, "ner_words": 0.85}
    devs = {"words": 0.88, "bigrams": 0.79, "chars": 0.62, "ner_words": 0.78}
    cells = [_ablation_cell(name, 0, rng.permutation(300) < 300 * p, devs[name]) for name, p in hits.items()]
    cells += [_ablation_cell("words", seed, rng.permutation(300) < 270, 0.87) for seed in (1, 2)]
    entry = ablation_summary(cells)["msra"]
    assert list(entry["rows"]) == ["words", "bigrams", "chars", "ner_words"]  # ABLATIONS' order
    words = entry["rows"]["words"]
    assert words["seeds"] == [0, 1, 2] and words["f1"]["n"] == 3 and words["kind"] == "crf_ner"
    assert entry["rows"]["ner_words"]["kind"] == "ner"
    assert words["to_best_seconds"]["mean"] == 31.0 and words["loadavg_before"] == 4.0
    assert words["test_words_per_s"]["mean"] == 100.0  # 400 test characters in 4 s
    assert words["pretrain_seconds"]["n"] == 0
    # dev ranks words > bigrams > ner_words > chars, test words > ner_words > bigrams > chars
    assert entry["dev_vs_test"]["spearman"] == pytest.approx(0.8)
    assert entry["dev_vs_test"]["best_by_dev"] == entry["dev_vs_test"]["best_by_test"] == "words"
    pairs = [(c["a"], c["b"], c["runs_a"], c["runs_b"]) for c in entry["comparisons"]]
    assert pairs == [("words", b, 3, 1) for b in ("bigrams", "chars", "ner_words")]
    for c in entry["comparisons"]:
        assert c["ci_low"] <= c["delta_f1"] <= c["ci_high"]

    agg = {"ablation": {"msra": entry}, "systems": {}}
    page = chinese_section(agg)
    assert "**This test split is not SIGHAN's.**" in page and "4,365 and 172,601" in page
    assert "at least 0.5 epochs (200 characters) and at most 1 epoch (400 characters), stopping" in page
    assert "1 torch thread per cell" in page
    assert "Seeds: `words` 3, `bigrams` 1" in page
    assert f"| `words` | `chars` | {100 * entry['comparisons'][1]['delta_f1']:+.2f} |" in page
    target = chinese_default_target(agg)
    assert target["value"] == pytest.approx(words["f1"]["mean"])
    assert target["met"] is (words["f1"]["mean"] >= 0.88)
    one_seed = ablation_summary(cells[:4])["msra"]
    assert chinese_default_target({"ablation": {"msra": one_seed}})["met"] is None  # needs three seeds
    assert "No ablation cells yet" in chinese_section({"ablation": {}, "systems": {}})


def test_spearman_matches_a_brute_force_rank_correlation():
    from bench.aggregate import _spearman

    assert _spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert _spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert _spearman([1, 2], [1, 2]) is None
    rng = numpy.random.default_rng(0)
    for _ in range(20):
        xs, ys = rng.permutation(6).tolist(), rng.permutation(6).tolist()  # no ties: 1 - 6 sum d^2 / n(n^2 - 1)
        d2 = sum((x - y) ** 2 for x, y in zip(xs, ys))
        assert _spearman(xs, ys) == pytest.approx(1 - 6 * d2 / (6 * 35))
    assert _spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(numpy.corrcoef([0.5, 0.5, 2], [0, 1, 2])[0, 1])


def test_report_says_how_the_runs_stopped():
    from bench.report import schedule_text, stopping_note

    def agg(min_words: int, reasons: List[str]) -> Dict[str, Any]:
        main = {"min_words": min_words, "max_words": 300, "eval_every": 50, "patience": 0.25}
        slope_a = {"mean": 0.3, "min": 0.3, "max": 0.3, "n": 1}
        slope_b = {"mean": 0.05, "min": -0.04, "max": 0.14, "n": 2}
        return {
            "budgets": {"msra": {"main": main, "epoch_words": 100}},
            "systems": {
                "msra": {
                    "a": {"stopped_by": reasons[:1], "last_epoch_dev_slope": slope_a},
                    "b": {"stopped_by": reasons[1:], "last_epoch_dev_slope": slope_b},
                }
            },
        }

    fixed = stopping_note(agg(300, ["budget", "budget", "budget"]), "msra")
    assert "a fixed budget of 3 epochs, no early stopping" in fixed and "3 of 3 runs stopped so." in fixed
    open_ended = stopping_note(agg(100, ["patience", "cap", "cap"]), "msra")
    assert "25% of the characters seen" in open_ended and "2 of 3 runs stopped at the cap." in open_ended
    assert "the learning rate's schedule ends at 0" in open_ended
    assert "dev F1 changed by -0.04 to +0.30 points per epoch over the runs (`a` +0.30, `b` +0.05 on average)" in (
        open_ended
    )
    assert stopping_note({"budgets": {}, "systems": {"msra": {}}}, "msra") == ""
    # a constant rate after the warm-up: a run at the cap is still at the base rate, and the setup says so
    constant = agg(100, ["patience", "cap", "cap"])
    constant["budgets"]["msra"]["main"]["constant_rate"] = True
    assert "(3 epochs), its learning rate still the base rate (held constant after the warm-up), with a new best" in (
        stopping_note(constant, "msra")
    )
    assert "schedule ends at 0" not in stopping_note(constant, "msra")
    assert schedule_text(constant).startswith("after it the base rate is held constant (no decay)")
    assert schedule_text(agg(100, [])) == "the configs' schedule ends at the budget's cap"
    constant["budgets"]["conll2003"] = agg(100, [])["budgets"]["msra"]
    assert schedule_text(constant) == (
        "after it the base rate is held constant on MSRA and decays to 0 at the budget's cap on CoNLL-2003"
    )


def test_time_to_f1_shows_the_seeds_range_only_for_several_runs():
    from bench.report import seconds_range

    assert seconds_range({"mean": 900.4, "min": 800.0, "max": 1_000.0, "n": 3}) == "900 (800–1,000)"
    assert seconds_range({"mean": 676.0, "min": 676.0, "max": 676.0, "n": 1}) == "676"
    assert seconds_range({"mean": None, "min": None, "max": None, "n": 0}) == "–"
    assert seconds_range(None) == "–"


def test_time_to_f1_figure_lists_every_system_and_says_which_missed_the_mark():
    from bench.figures import time_bars

    def to_common(reached: int, runs: int, seconds: List[float], cpu: str = "test cpu") -> Dict[str, Any]:
        stats = {"mean": sum(seconds) / len(seconds), "min": min(seconds), "max": max(seconds)} if seconds else {}
        time = {"reached": reached, "runs": runs, "train_seconds": {"mean": None, **stats}, "train_cpus": [cpu]}
        return {"to_common": time}

    systems = {
        "bilstm_crf": to_common(3, 3, [300.0, 330.0, 360.0]),
        "idcnn_strubell": to_common(0, 1, []),
        "softmax": to_common(2, 3, [1_000.0, 1_200.0]),
    }
    assert time_bars(systems) == [
        ("bilstm_crf", 330.0, 30.0, 30.0, ""),
        ("idcnn_strubell", 0.0, 0.0, 0.0, "not reached (0/1 runs)"),
        ("softmax", 1_100.0, 100.0, 100.0, "2/3 runs"),
    ]
    # systems trained on different CPU models: every bar names its CPU
    systems["spacy_ner"] = to_common(1, 1, [500.0], "other cpu")
    assert [note for *_, note in time_bars(systems)] == [
        "test cpu",
        "not reached (0/1 runs); test cpu",
        "2/3 runs; test cpu",
        "other cpu",
    ]


def test_report_says_which_corpus_has_no_grid():
    from bench.report import grid_section

    agg = {"grid": {"conll2003": {}}, "systems": {"msra": {}, "conll2003": {}}, "provenance": {"quick": False}}
    text = grid_section(agg)
    assert "MSRA Chinese (CNN tok2vec): no grid cells in this run (the benchmark's plan has one" in text
    assert "CoNLL-2003 English (all-MiniLM-L6-v2, uncased): no grid cells" not in text


def test_report_answers_speed_per_device_and_never_mixes_devices():
    from bench.report import answers

    def entry(name: str, threads: int, train: float, infer: float) -> Dict[str, Any]:
        def rounds(x: float) -> Dict[str, Any]:
            return {"median": x, "min": x - 0.1, "max": x + 0.1, "n": 5}

        return {
            "device_name": name,
            "torch_threads": threads,
            "idcnn_over_bilstm": {"train": rounds(train), "infer": rounds(infer)},
        }

    agg = {
        "systems": {},
        "comparisons": [],
        "common_threshold": {},
        "speed": {
            "cpu": {"msra": entry("AMD EPYC", 2, 1.21, 1.16)},
            "cuda": {"msra": entry("NVIDIA H200", 16, 1.0, 1.22)},
        },
    }
    text = "\n".join(answers(agg))
    assert "MSRA Chinese (CNN tok2vec), CPU (AMD EPYC, 2 threads): IDCNN-CRF over BiLSTM-CRF inference" in text
    assert "characters/s, per interleaved round: 1.16 [1.06, 1.26]" in text
    assert "GPU (NVIDIA H200): IDCNN-CRF over BiLSTM-CRF inference characters/s, per interleaved round: 1.22" in text
    assert "GPU (NVIDIA H200): in interleaved training bursts IDCNN-CRF runs at 1.00 [0.90, 1.10]" in text
    assert "not trained to an F1 on this device" in text
    # the CPU's training ratio belongs to the time-to-F1 sentence, which needs trained systems: none here
    assert text.count("in interleaved training bursts") == 1 and "1.21" not in text


def test_head_to_head_races_bilstm_and_idcnn_to_the_highest_mark_both_reach():
    from bench.aggregate import head_to_head
    from bench.report import trains_faster

    def run(points: List[tuple]) -> Dict[str, Any]:
        curve = [{"words_seen": 100 * (k + 1), "train_seconds": s, "dev_f1": f} for k, (s, f) in enumerate(points)]
        return {"dev_f1_best": max(f for _, f in points), "learning_curve": curve, "device_name": "test cpu"}

    main = {
        "conll2003": {
            # IDCNN-CRF is quicker to 0.80, BiLSTM-CRF to 0.90; the least accurate run of the pair peaks at 0.9012
            "bilstm_crf": [run([(10, 0.70), (20, 0.85), (30, 0.91)]), run([(12, 0.75), (22, 0.90), (32, 0.92)])],
            "idcnn_crf": [run([(8, 0.82), (18, 0.86), (40, 0.9012)]), run([(9, 0.81), (19, 0.84), (41, 0.95)])],
            "spacy_ner": [run([(10, 0.5), (20, 0.8)])],
        }
    }
    pair = head_to_head(main)["conll2003"]
    assert pair["threshold"] == pytest.approx(0.901)
    assert pair["bilstm_crf"]["train_seconds"]["mean"] == pytest.approx(31.0)  # 30 and 32: 22 s gave 0.90 < 0.901
    assert pair["idcnn_crf"]["train_seconds"]["mean"] == pytest.approx(40.5)
    assert pair["bilstm_crf"]["train_cpus"] == pair["idcnn_crf"]["train_cpus"] == ["test cpu"]
    assert head_to_head({"msra": {"bilstm_crf": main["conll2003"]["bilstm_crf"]}}) == {}

    def to(mean: float, low: float, high: float, words: float, cpus: List[str]) -> Dict[str, Any]:
        seconds = {"mean": mean, "min": low, "max": high}
        return {"train_seconds": seconds, "words_seen": {"mean": words}, "train_cpus": cpus}

    common, quicker = to(20.0, 20.0, 20.0, 200.0, ["test cpu"]), to(8.5, 8.0, 9.0, 100.0, ["test cpu"])
    agg = {"common_threshold": {"conll2003": 0.8}, "head_to_head": {"conll2003": pair}, "speed": {}}
    text = trains_faster(agg, "conll2003", {"bilstm_crf": {"to_common": common}, "idcnn_crf": {"to_common": quicker}})
    assert text.startswith(
        "**IDCNN-CRF** reaches dev F1 80.0 (the common mark) sooner on test cpu: BiLSTM-CRF after 20 s"
    )
    assert (
        "; **BiLSTM-CRF** reaches dev F1 90.1 (the highest both reach on every seed) sooner on test cpu: "
        "BiLSTM-CRF after 31 s" in text
    )
    # Seeds whose ranges overlap name no winner, whichever mean is lower.
    close = to(18.0, 15.0, 21.0, 180.0, ["test cpu"])
    text = trains_faster(agg, "conll2003", {"bilstm_crf": {"to_common": common}, "idcnn_crf": {"to_common": close}})
    assert text.startswith(
        "no difference detected in the time to dev F1 80.0 (the common mark) on test cpu (the seeds' ranges"
    )
    # Seconds from different CPU models name no winner either, however far apart.
    elsewhere = to(8.5, 8.0, 9.0, 100.0, ["other cpu"])
    text = trains_faster(
        {**agg, "head_to_head": {}},
        "conll2003",
        {"bilstm_crf": {"to_common": common}, "idcnn_crf": {"to_common": elsewhere}},
    )
    assert text == (
        "the time to dev F1 80.0 (the common mark) is not compared: BiLSTM-CRF trained on test cpu, IDCNN-CRF on "
        "other cpu, and seconds on different CPU models do not compare."
    )
    mixed = to(8.5, 8.0, 9.0, 100.0, ["other cpu", "test cpu"])
    text = trains_faster(
        {**agg, "head_to_head": {}},
        "conll2003",
        {"bilstm_crf": {"to_common": common}, "idcnn_crf": {"to_common": mixed}},
    )
    assert "IDCNN-CRF on other cpu and test cpu (seeds on each), and seconds" in text
    # where the pair's mark is the common mark, one race is enough
    agg["common_threshold"]["conll2003"] = pair["threshold"]
    assert "highest both reach" not in trains_faster(
        agg, "conll2003", {"bilstm_crf": {"to_common": common}, "idcnn_crf": {"to_common": quicker}}
    )


def test_provenance_says_when_a_cell_read_no_weights():
    from bench.aggregate import provenance

    cells = []
    for sha in ("53aa51172d142c89", None):
        cell = _micro_cell(CellKey("conll2003", "micro", "heads", "cpu", 0), "h")
        cell["transformer"] = {"_name_or_path": "minilm", "num_hidden_layers": 6, "hidden_size": 384}
        if sha:
            cell["transformer"]["weights_sha256"] = sha
        cells.append(cell)
    assert provenance(cells)["transformers"] == [
        "minilm: 6 layers, width 384, config only, no weights read",
        "minilm: 6 layers, width 384, weights sha256 53aa51172d14",
    ]


def test_a_mixed_report_says_which_cells_ran_which_package():
    from bench.aggregate import provenance
    from bench.report import _mixed_packages_text

    old = _micro_cell(CellKey("msra", "micro", "heads", "cpu", 0), "aaaaaaaaaaaaold")
    new = _micro_cell(CellKey("msra", "micro", "heads", "cuda", 0), "bbbbbbbbbbbbnew")
    new["device"] = "cuda"
    also_new = _micro_cell(CellKey("conll2003", "micro", "heads", "cpu", 0), "bbbbbbbbbbbbnew")
    agg = {"provenance": provenance([old, new, also_new])}
    assert agg["provenance"]["package_hashes_by_stage"] == {
        "conll2003/micro (cpu)": ["bbbbbbbbbbbbnew"],
        "msra/micro (cpu)": ["aaaaaaaaaaaaold"],
        "msra/micro (cuda)": ["bbbbbbbbbbbbnew"],
    }
    assert _mixed_packages_text(agg) == [
        ">",
        "> - package `aaaaaaaaaaaa`: `msra/micro (cpu)`",
        "> - package `bbbbbbbbbbbb`: `conll2003/micro (cpu)`, `msra/micro (cuda)`",
    ]


def test_bench_keeps_to_its_rules():
    """Issue 8: no sys.path edits, no tests/ imports, no patching of crf_ner,
    and no span/tag conversion of its own."""
    for path in sorted((REPO / "bench").glob("*.py")):
        text = path.read_text(encoding="utf8")
        assert "sys.path" not in text, path
        assert not re.search(r"^\s*(from|import) tests\b", text, re.M), path
        assert not re.search(r"crf_ner\.\w+\s*=", text), path
        assert not re.search(r"^def \w*(spans_to_tags|tags_to_spans|bio_to_spans)\b", text, re.M), path


# ---------------------------------------------------------------- the quick run


@pytest.mark.slow
def test_quick_benchmark_runs_end_to_end(tmp_path):
    """``python -m bench run --quick``: every stage runs on tiny data, the cells
    are written, the aggregate holds the comparisons and issue 12's CPU
    ratios, and a second report from the same cells is identical."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cells = load_cells(tmp_path / "cells")
    stages = {(c["corpus"], c["stage"]) for c in cells}
    assert {("conll2003", "grid"), ("conll2003", "main"), ("msra", "main"), ("conll2003", "speed")} <= stages
    assert {("msra", "speed"), ("any", "micro"), ("msra", "ablation")} <= stages
    grid: Dict[str, Optional[int]] = {}
    for cell in cells:
        if cell["stage"] in ("grid", "main"):
            assert 0.0 <= cell["f1"] <= 1.0 and cell["seqeval_agrees"], cell["cell_id"]
            assert len(cell["sentence_counts"]["tp"].split()) == cell["data"]["splits"]["test"]["sentences"]
        if cell["stage"] == "grid":  # a fixed budget: the same batches for every system
            grid.setdefault(cell["corpus"], cell["words_seen"])
            assert cell["words_seen"] == grid[cell["corpus"]]
    aggregate = json.loads((tmp_path / "aggregate.json").read_text(encoding="utf8"))
    assert {(c["corpus"], c["a"], c["b"]) for c in aggregate["comparisons"]} >= {
        ("conll2003", "bilstm_crf", "softmax"),
        ("msra", "bilstm_crf", "spacy_ner"),
        ("conll2003", "softmax_constrained", "softmax"),
        ("conll2003", "crf", "softmax_constrained"),
    }
    softmax_cells = [c for c in cells if c["system"] == "softmax" and c["stage"] == "main"]
    assert softmax_cells and all(0.0 <= c["constrained"]["f1"] <= 1.0 for c in softmax_cells)
    assert aggregate["systems"]["conll2003"]["softmax_constrained"]["seeds"] == [c["seed"] for c in softmax_cells]
    for corpus in ("conll2003", "msra"):
        ratios = aggregate["cpu_ratios"][corpus]["bilstm_crf"]
        for key in ("train_over_ner", "infer_over_ner", "crf_share_of_step", "crf_share_of_inference"):
            assert isinstance(ratios[key], float) and ratios[key] > 0, (corpus, key)
    page = (tmp_path / "benchmarks.md").read_text(encoding="utf8")
    assert "## Answers" in page and "Its figures mean nothing" in page and "CPU ratios" in page
    assert "## Chinese (MSRA): features and recipe" in page and "not SIGHAN's" in page
    assert set(aggregate["ablation"]["msra"]["rows"]) == {c["system"] for c in cells if c["stage"] == "ablation"}
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "report",
            "--cells-dir",
            str(tmp_path / "cells"),
            "--md",
            str(tmp_path / "again.md"),
            "--img",
            str(tmp_path / "img2"),
            "--json",
            str(tmp_path / "again.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "again.md").read_text(encoding="utf8") == page.replace("img/", "img2/")
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "aggregate.json").read_bytes()


@pytest.mark.slow
def test_breakdown_profiles_each_system_per_layer(tmp_path):
    """``python -m bench breakdown``: per system, chars/s and microseconds per
    character of each timed layer, the rest as "other", ratios to ``ner``."""
    from bench.__main__ import main as bench_main
    from bench.tiny import tiny_splits

    lines = []
    for sentence in tiny_splits("msra")["train"]:
        tags = ["O"] * len(sentence.tokens)
        for start, end, label in sentence.spans:
            tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
        lines += [f"{char} {tag}" for char, tag in zip(sentence.tokens, tags)] + [""]
    (tmp_path / "msra").mkdir()
    (tmp_path / "msra" / "test.txt").write_text("\n".join(lines), encoding="utf8")
    out = tmp_path / "breakdown.json"
    code = bench_main(
        ["breakdown", "--data", str(tmp_path), "--sentences", "40", "--batch-size", "8", "--threads", "1",
         "--systems", "spacy_ner,bilstm_crf", "--hidden-width", "8", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    found = json.loads(out.read_text())
    assert set(found["systems"]) == {"spacy_ner", "bilstm_crf"} and found["sentences"] == 40
    crf = found["systems"]["bilstm_crf"]
    train = crf["training"]
    assert set(train["parts_us_per_char"]) == {"tok2vec", "encoder", "emission", "crf"}
    timed = sum(p["forward"] + p["backward"] for p in train["parts_us_per_char"].values())
    assert timed + train["other_us_per_char"] == pytest.approx(train["us_per_char"])
    assert 0 < train["crf_share"] < 1 and train["other_us_per_char"] > 0
    assert 0 < crf["inference"]["viterbi_share"] < 1
    assert set(crf["inference"]["parts_us_per_char"]) >= {"crf_ner.emissions", "crf_ner.viterbi"}
    assert found["systems"]["spacy_ner"]["train_over_ner"] == 1.0
    assert crf["train_over_ner"] > 0 and crf["infer_over_ner"] > 0


def test_calibration_metrics_exact():
    from bench.calibration import kept_scores, reliability

    conf = numpy.array([0.95, 0.95, 0.55, 0.55, 0.15])
    correct = numpy.array([True, False, True, True, False])
    rows, ece = reliability(conf, correct)
    filled = [(r["low"], r["count"], r["confidence"], r["precision"]) for r in rows if r["count"]]
    assert filled == [(0.1, 1, 0.15, 0.0), (0.5, 2, 0.55, 1.0), (0.9, 2, 0.95, 0.5)]
    assert ece == pytest.approx((1 * 0.15 + 2 * 0.45 + 2 * 0.45) / 5)
    by_t = {row["t"]: (row["kept"], row["p"], row["r"]) for row in kept_scores(conf, correct, n_gold=4)}
    assert by_t[0.0] == (5, 0.6, 0.75) and by_t[0.5] == (4, 0.75, 0.75) and by_t[0.9] == (2, 0.5, 0.25)


def test_contention_reads_msra_sentences_and_runs_commands_in_a_cgroup(tmp_path):
    from bench.contention import _in_group, msra_texts

    path = tmp_path / "train.txt"
    path.write_text("中 B-LOC\n国 E-LOC\n\n\n好 O\n\n人 O\n", encoding="utf8")
    assert msra_texts(path, 10) == ["中国", "好", "人"]
    assert msra_texts(path, 2) == ["中国", "好"]
    command = [sys.executable, "-c", "import sys; print(sys.argv[1:])", "a b", "$HOME"]
    assert _in_group(command, None) == command
    group = tmp_path / "group"
    group.mkdir()
    done = subprocess.run(_in_group(command, group), capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['a b', '$HOME']"  # the arguments pass through unchanged
    assert (group / "cgroup.procs").read_text().strip().isdigit()  # the shell joined the group, then ran it


def test_contention_summary_medians_ratios_and_targets():
    from bench.contention import summarize
    from bench.report import contention_section

    def run(mode, policy, busy, value, round_index=0, quota=None):
        figure = {"annotate_docs_per_s": value} if mode == "annotate" else {"threads": 1}
        return {
            "mode": mode,
            "policy": policy,
            "competitors": busy,
            "round": round_index,
            "cgroup_quota_cpus": quota,
            "docs_per_s": value / 2,
            **figure,
        }

    runs = [
        run("annotate", "old", 0, 800),
        run("annotate", "old", 0, 760, 1),
        run("annotate", "old", 2, 50),
        run("annotate", "auto", 0, 790),
        run("annotate", "auto", 0, 770, 1),
        run("annotate", "auto", 2, 470),
        run("annotate", "auto", 1, 700),
        run("annotate", "auto", 0, 780, quota=1.0),
    ]
    result = {
        "runs": runs,
        "sentences": 4000,
        "characters": 180000,
        "cgroup_quota_cpus": 1.0,
        "package_hash": "abc" * 10,
        "machine": {"torch_threads": 2},
    }
    summary = summarize(result)
    old, new = summary["rows"]["annotate/old"], summary["rows"]["annotate/auto"]
    assert old["busy0"]["docs_per_s"] == 780 and new["busy0"]["docs_per_s"] == 780  # medians of two rounds
    assert new["busy0"]["whole_command_docs_per_s"] == 390
    assert new["busy2"]["over_quiet"] == pytest.approx(470 / 780)
    assert old["busy2"]["over_quiet"] == pytest.approx(50 / 780)
    assert new["quota"]["docs_per_s"] == 780
    targets = {t["target"]: t for t in summary["targets"]}
    assert targets["annotate: with 2 busy processes, >= 0.5x quiet"]["met"] is True
    assert targets["annotate: with 1 busy process, >= 0.9x quiet"]["met"] is False  # 700 / 780
    assert targets["annotate: quiet docs/s no lower than the old policy's"]["met"] is True
    assert targets["pipe: with 2 busy processes, >= 0.5x quiet"]["met"] is None
    text = contention_section(summary)
    assert "| `annotate` | old: torch's own (a thread per core) | 780 (1.00x) | – | 50 (0.06x) | – |" in text
    assert "quiet, cgroup quota 1 CPU" in text and "2 round(s)" in text


def test_onnx_summary_targets_and_section_follow_the_result():
    from bench.onnx import summarize
    from bench.report import onnx_section

    def chars(median, over_torch, over_ner):
        ratio = lambda value: {"median": value, "min": value - 0.05, "max": value + 0.05}  # noqa: E731
        return {
            "median": median,
            "min": median - 10,
            "max": median + 10,
            "over_torch": ratio(over_torch),
            "over_ner": ratio(over_ner),
        }

    accuracy = {"ents_p": 0.9, "ents_r": 0.8, "ents_f": 0.85}
    result = {
        "package_hash": "f" * 64,
        "ner_steps": 300,
        "speed": {
            "rounds": 5,
            "characters": 1000,
            "chars_per_s": {
                "torch": chars(1000, 1.0, 1.1),
                "onnx_float": chars(960, 0.96, 1.05),
                "onnx_int8": chars(1300, 1.3, 1.4),
                "spacy_ner": chars(900, 0.9, 1.0),
            },
        },
        "accuracy": {
            "torch": accuracy,
            "onnx_float": {**accuracy, "f1_minus_torch": 0.0, "docs_differing_from_torch": 0},
            "onnx_int8": {**accuracy, "ents_f": 0.846, "f1_minus_torch": -0.004, "docs_differing_from_torch": 7},
            "test_docs": 10,
        },
        "install": {
            "base": {"requirements": ["spacy-bilstm-crf"], "site_packages_mb": 300.0},
            **{
                name: {
                    "requirements": [f"spacy-bilstm-crf[{name}]"],
                    "site_packages_mb": size,
                    "mb_over_base": size - 300.0,
                    "import_runtime_seconds": {"median": seconds},
                    "import_spacy_and_load_seconds": {"median": seconds},
                    "peak_rss_mb": {"median": 500.0},
                }
                for name, size, seconds in (("torch", 1100.0, 2.0), ("onnx", 400.0, 1.0))
            },
            "onnx_over_torch": {"mb_over_base": 100.0 / 800.0, "import_spacy_and_load": 0.5},
        },
    }
    targets = {t["target"].split(" ")[0] + " " + t["target"].split(" ")[1]: t for t in summarize(result)["targets"]}
    assert targets["ONNX float"]["met"] is False  # 0.96x < 0.97x
    assert targets["int8 >="]["met"] is False  # 1.3x, but F1 -0.4 points
    assert targets["int8 >="]["f1_change_points"] == pytest.approx(-0.4)
    assert targets["install <="]["met"] is True and targets["install <="]["value"] == 0.125
    assert targets["import <="]["met"] is True
    section = onnx_section(summarize(result))
    assert "| exported, int8 ONNX | 1,300 [1,290, 1,310] | 1.30x [1.25, 1.35] | 1.40x [1.35, 1.45] |" in section
    assert "| exported, int8 ONNX | 90.00 | 80.00 | 84.60 | -0.40 | 7 |" in section
    assert "| ONNX float inference >= 0.97x the torch pipeline | 0.96 | **not met** |" in section
