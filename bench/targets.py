"""The issue's targets, checked against one results JSON."""

from typing import Any, Dict, List, Optional

F1_MARGIN = 0.005  # "0.5 F1 above": half a point of F1 (scores are in 0..1)


def _system(results: Dict[str, Any], corpus: str, system: str) -> Optional[Dict[str, Any]]:
    return results.get("corpora", {}).get(corpus, {}).get("systems", {}).get(system)


def _value(results: Dict[str, Any], corpus: str, system: str, key: str) -> Optional[float]:
    entry = _system(results, corpus, system)
    value = None if entry is None else entry.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _target(name: str, text: str, value: Optional[float], goal: str, met: Optional[bool]) -> Dict[str, Any]:
    return {"name": name, "target": text, "value": value, "goal": goal, "met": met}


def _at_least(value: Optional[float], bound: float) -> Optional[bool]:
    return None if value is None else value >= bound


def check_targets(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One entry per target: the measured value, the goal, and whether it is met
    (None where a figure is missing)."""
    out: List[Dict[str, Any]] = []
    f1 = {s: _value(results, "conll2003", s, "f1") for s in ("bilstm_crf", "spacy_ner", "softmax")}
    for other in ("spacy_ner", "softmax"):
        ours, theirs = f1["bilstm_crf"], f1[other]
        gap = None if ours is None or theirs is None else ours - theirs
        out.append(
            _target(
                f"conll_f1_vs_{other}",
                f"CoNLL test: BERT-BiLSTM-CRF F1 at least 0.5 points above {other}",
                gap,
                f">= {F1_MARGIN}",
                _at_least(gap, F1_MARGIN),
            )
        )
    ours, theirs = (_value(results, "msra", s, "f1") for s in ("bilstm_crf", "spacy_ner"))
    gap = None if ours is None or theirs is None else ours - theirs
    out.append(
        _target(
            "msra_f1_vs_spacy_ner",
            "MSRA test: CNN-BiLSTM-CRF F1 above spaCy ner",
            gap,
            "> 0",
            None if gap is None else gap > 0,
        )
    )
    for system, bound in (("bilstm_crf", 0.90), ("idcnn_crf", 0.95)):
        value = _value(results, "conll2003", system, "infer_over_encoder")
        out.append(
            _target(
                f"conll_infer_ratio_{system}",
                f"CoNLL: {system} inference words/s at least {bound:.2f} of the transformer alone",
                value,
                f">= {bound}",
                _at_least(value, bound),
            )
        )
    heads = results.get("crf_bench", {}).get("heads", {}).get("conll2003") or {}
    for mode in ("infer", "train"):
        value = heads.get(f"idcnn_speedup_{mode}")
        out.append(
            _target(
                f"idcnn_head_speedup_{mode}",
                f"IDCNN head at least 3x the BiLSTM head's words/s ({mode}, heads alone, transformer width)",
                value,
                ">= 3",
                _at_least(value, 3.0),
            )
        )
    spacy_train = _value(results, "conll2003", "spacy_ner", "train_words_per_s")
    for system in ("bilstm_crf", "idcnn_crf", "crf"):
        value = _value(results, "conll2003", system, "train_words_per_s")
        rel = None if value is None or not spacy_train else value / spacy_train
        out.append(
            _target(
                f"conll_train_speed_{system}",
                f"CoNLL: {system} training words/s not below spaCy ner's (ratio)",
                rel,
                ">= 1",
                _at_least(rel, 1.0),
            )
        )
    crf = results.get("crf_bench", {}).get("crf", {})
    worst = None
    if crf.get("fits"):
        worst = max(abs(f["loglog_slope"] - 1.0) for f in crf["fits"].values())
    out.append(
        _target(
            "crf_linear",
            "CRF alone (NLL+backward, Viterbi) linear in length: R^2 >= 0.99, log-log slope 1 +- 0.15",
            worst,
            "<= 0.15 (largest |slope - 1|)",
            crf.get("linear"),
        )
    )
    for system in ("bilstm_crf", "idcnn_crf", "crf"):
        entry = _system(results, "conll2003", system) or {}
        share = (entry.get("crf_share_of_step") or {}).get("aggregate")
        out.append(
            _target(
                f"crf_share_{system}",
                f"CoNLL {system}: CRF (NLL forward + backward) share of a training step with the transformer",
                share,
                "< 0.05",
                None if share is None else share < 0.05,
            )
        )
    return out
