"""bench/: the maths of its summaries, its schema and targets, and the quick run
end to end (what CI runs of the benchmark)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import spread
from bench.crf_bench import linear_fit
from bench.schema import SchemaError, validate
from bench.systems import CEILING, TRAINED
from bench.targets import check_targets

REPO = Path(__file__).resolve().parents[1]


def test_spread_gives_median_and_range():
    stats = spread([3.0, 1.0, 2.0, 10.0])
    assert stats == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4, "values": [3.0, 1.0, 2.0, 10.0]}
    assert spread([])["median"] is None


def test_linear_fit_tells_linear_from_quadratic():
    lengths = [250, 500, 1000, 2000, 4000]
    linear = linear_fit(lengths, [0.5 + 2e-3 * n for n in lengths])
    assert linear["seconds_per_token"] == pytest.approx(2e-3)
    assert linear["intercept_seconds"] == pytest.approx(0.5)
    assert linear["r2"] == pytest.approx(1.0)
    quadratic = linear_fit(lengths, [1e-6 * n * n for n in lengths])
    assert quadratic["loglog_slope"] == pytest.approx(2.0)
    assert linear_fit(lengths, [1e-5 * n for n in lengths])["loglog_slope"] == pytest.approx(1.0)


def _trained(**overrides):
    entry = {
        "f1": 0.9,
        "precision": 0.9,
        "recall": 0.9,
        "train_words_per_s": 100.0,
        "infer_words_per_s": 900.0,
        "encoder_only_words_per_s": 1000.0,
        "infer_over_encoder": 0.9,
        "peak_rss_mb": 1.0,
        "peak_rss_train_mb": 1.0,
        "peak_rss_infer_mb": 1.0,
        "train_seconds": 1.0,
        "words_seen": 10,
        "per_type": {},
        "seqeval": {},
        "seqeval_agrees": True,
        "learning_curve": [{"words": 10, "dev_f1": 0.5}],
        "latency_ms": {},
        "infer_words_per_s_spread": {},
    }
    entry.update(overrides)
    return entry


def _results(systems):
    return {
        "schema_version": 1,
        "mode": "full",
        "commit": "x",
        "date": "d",
        "machine": {"cpu_model": "c", "logical_cores": 2, "torch_threads": 2, "versions": {}},
        "settings": {},
        "corpora": {"msra": {"systems": systems}},
        "crf_bench": {},
        "targets": [],
        "duration_seconds": 1.0,
    }


def test_validate_names_missing_and_null_figures():
    results = _results({"bilstm_crf": _trained(f1=None, recall=None)})
    del results["corpora"]["msra"]["systems"]["bilstm_crf"]["words_seen"]
    with pytest.raises(SchemaError) as error:
        validate(results, {"msra": ["bilstm_crf", "encoder_only"]}, TRAINED, micro=False)
    message = str(error.value)
    assert "corpora.msra.systems.bilstm_crf.f1 (not a number: None)" in message
    assert "corpora.msra.systems.bilstm_crf.recall (not a number: None)" in message
    assert "corpora.msra.systems.bilstm_crf.words_seen" in message
    assert "corpora.msra.systems.encoder_only" in message
    with pytest.raises(SchemaError, match="crf_bench.crf"):
        validate(_results({}), {}, TRAINED, micro=True)


def test_validate_lets_a_partial_run_without_the_encoder_alone_skip_ratios():
    results = _results({"bilstm_crf": _trained(encoder_only_words_per_s=None, infer_over_encoder=None)})
    validate(results, {"msra": ["bilstm_crf"]}, TRAINED, micro=False, ceilings=CEILING)
    with pytest.raises(SchemaError, match="infer_over_encoder"):
        validate(results, {"msra": ["bilstm_crf", "encoder_only"]}, TRAINED, micro=False, ceilings=CEILING)


def test_check_targets_computes_gaps_and_ratios():
    results = _results({})
    results["corpora"] = {
        "conll2003": {
            "systems": {
                "bilstm_crf": _trained(f1=0.90, infer_over_encoder=0.93, train_words_per_s=90.0),
                "idcnn_crf": _trained(f1=0.89, infer_over_encoder=0.94, train_words_per_s=110.0),
                "spacy_ner": _trained(f1=0.88, train_words_per_s=100.0),
                "softmax": _trained(f1=0.897),
            }
        }
    }
    results["crf_bench"] = {"heads": {"conll2003": {"idcnn_speedup_infer": 3.5, "idcnn_speedup_train": 2.0}}}
    targets = {t["name"]: t for t in check_targets(results)}
    assert targets["conll_f1_vs_spacy_ner"]["value"] == pytest.approx(0.02)
    assert targets["conll_f1_vs_spacy_ner"]["met"] is True
    assert targets["conll_f1_vs_softmax"]["value"] == pytest.approx(0.003)
    assert targets["conll_f1_vs_softmax"]["met"] is False
    assert targets["conll_infer_ratio_bilstm_crf"]["met"] is True
    assert targets["conll_infer_ratio_idcnn_crf"]["met"] is False
    assert targets["idcnn_head_speedup_infer"]["met"] is True
    assert targets["idcnn_head_speedup_train"]["met"] is False
    assert targets["conll_train_speed_bilstm_crf"]["value"] == pytest.approx(0.9)
    assert targets["conll_train_speed_idcnn_crf"]["met"] is True
    assert targets["conll_train_speed_crf"]["met"] is None  # no figure: not claimed either way
    assert targets["msra_f1_vs_spacy_ner"]["met"] is None


def test_quick_benchmark_runs_end_to_end(tmp_path):
    """``bench/run.py --quick``: every system trains and is measured, the JSON
    validates (run.py checks it and exits 1 otherwise) and the report renders."""
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [results_path] = tmp_path.glob("quick-*.json")
    results = json.loads(results_path.read_text(encoding="utf8"))
    assert results["mode"] == "quick"
    for corpus, entry in results["corpora"].items():
        seen = set()
        for name, system in entry["systems"].items():
            assert "error" not in system, (corpus, name)
            if name in TRAINED:
                assert 0.0 <= system["f1"] <= 1.0
                assert system["seqeval_agrees"], (corpus, name)
                seen.add(system["words_seen"])
        # the same batches for every system, cut at the first that reaches the budget
        [words_seen] = seen
        assert words_seen >= results["settings"]["corpora"][corpus]["budget_words"]
    crf = results["crf_bench"]["crf"]
    assert {row["length"] for row in crf["rows"]} == set(results["settings"]["crf"]["lengths"])
    [report] = tmp_path.glob("quick-*-report.md")
    text = report.read_text(encoding="utf8")
    assert "## Answers" in text and "Its figures mean nothing" in text
    assert len(list(tmp_path.glob("quick-*-img/*.png"))) == 3
