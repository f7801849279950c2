"""Entity-level P/R/F1 with spaCy's scorer, cross-checked with seqeval."""

import warnings
from typing import Any, Dict, List, Sequence

from spacy.scorer import get_ner_prf
from spacy.tokens import Doc
from spacy.training import Example

from .data import bio_tags

# spaCy and seqeval must agree to this precision (they count the same spans).
AGREEMENT_TOLERANCE = 1e-9


def spacy_scores(gold: Sequence[Doc], pred: Sequence[Doc]) -> Dict[str, Any]:
    """Micro P/R/F1 and per-type P/R/F1 from ``spacy.scorer.get_ner_prf``."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold docs but {len(pred)} predicted docs")
    prf = get_ner_prf([Example(p, g) for g, p in zip(gold, pred)])
    per_type = {
        label: {"precision": v["p"], "recall": v["r"], "f1": v["f"]}
        for label, v in sorted((prf.get("ents_per_type") or {}).items())
    }
    return {
        "precision": float(prf["ents_p"] or 0.0),
        "recall": float(prf["ents_r"] or 0.0),
        "f1": float(prf["ents_f"] or 0.0),
        "per_type": per_type,
    }


def seqeval_scores(gold: Sequence[Doc], pred: Sequence[Doc]) -> Dict[str, Any]:
    """The same figures from seqeval on the IOB2 tags of the same docs."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    y_true: List[List[str]] = [bio_tags(doc) for doc in gold]
    y_pred: List[List[str]] = [bio_tags(doc) for doc in pred]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
        result: Dict[str, Any] = {
            "precision": float(precision_score(y_true, y_pred, zero_division=0)),
            "recall": float(recall_score(y_true, y_pred, zero_division=0)),
            "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        }
    result["per_type"] = {
        label: {
            "precision": float(v["precision"]),
            "recall": float(v["recall"]),
            "f1": float(v["f1-score"]),
            "support": int(v["support"]),
        }
        for label, v in sorted(report.items())
        if not label.endswith("avg")
    }
    return result


def score_docs(gold: Sequence[Doc], pred: Sequence[Doc], with_seqeval: bool = True) -> Dict[str, Any]:
    """spaCy's figures, plus seqeval's and the largest difference between them."""
    scores = spacy_scores(gold, pred)
    if not with_seqeval:
        return scores
    check = seqeval_scores(gold, pred)
    diffs = [abs(scores[k] - check[k]) for k in ("precision", "recall", "f1")]
    for label, values in scores["per_type"].items():
        other = check["per_type"].get(label, {"precision": 0.0, "recall": 0.0, "f1": 0.0})
        diffs.extend(abs(values[k] - other[k]) for k in ("precision", "recall", "f1"))
    for label, values in check["per_type"].items():
        if label not in scores["per_type"] and values["f1"] > 0:
            diffs.append(values["f1"])
    scores["seqeval"] = check
    scores["seqeval_max_abs_diff"] = max(diffs) if diffs else 0.0
    scores["seqeval_agrees"] = scores["seqeval_max_abs_diff"] <= AGREEMENT_TOLERANCE
    return scores
