"""Entity-level P/R/F1 with spaCy's scorer, cross-checked with seqeval, and
the per-sentence counts that the paired bootstrap resamples."""

import warnings
from typing import Any, Dict, List, Sequence

from spacy.scorer import get_ner_prf
from spacy.tokens import Doc
from spacy.training import Example

from .docbins import doc_spans
from .tags import bio_tags

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


def sentence_counts(gold: Sequence[Doc], pred: Sequence[Doc]) -> Dict[str, List[int]]:
    """True positives, false positives and false negatives of each sentence
    (an entity counts if its start, end and label match)."""
    counts: Dict[str, List[int]] = {"tp": [], "fp": [], "fn": []}
    for g, p in zip(gold, pred):
        gold_set, pred_set = set(doc_spans(g)), set(doc_spans(p))
        counts["tp"].append(len(gold_set & pred_set))
        counts["fp"].append(len(pred_set - gold_set))
        counts["fn"].append(len(gold_set - pred_set))
    return counts


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def seqeval_scores(gold: Sequence[Doc], pred: Sequence[Doc]) -> Dict[str, Any]:
    """The same figures from seqeval on the IOB2 tags of the same docs."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    y_true = [bio_tags(len(doc), doc_spans(doc)) for doc in gold]
    y_pred = [bio_tags(len(doc), doc_spans(doc)) for doc in pred]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "precision": float(precision_score(y_true, y_pred, zero_division=0)),
            "recall": float(recall_score(y_true, y_pred, zero_division=0)),
            "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        }


def score_docs(gold: Sequence[Doc], pred: Sequence[Doc], full: bool = True) -> Dict[str, Any]:
    """spaCy's figures; with ``full``, also seqeval's, the largest difference
    between them and the per-sentence counts (whose micro F1 must equal spaCy's)."""
    scores = spacy_scores(gold, pred)
    if not full:
        return scores
    check = seqeval_scores(gold, pred)
    counts = sentence_counts(gold, pred)
    from_counts = f1_from_counts(sum(counts["tp"]), sum(counts["fp"]), sum(counts["fn"]))
    if abs(from_counts - scores["f1"]) > AGREEMENT_TOLERANCE:
        raise AssertionError(f"per-sentence counts give F1 {from_counts}, spaCy's scorer {scores['f1']}")
    scores["seqeval"] = check
    scores["seqeval_max_abs_diff"] = max(abs(scores[k] - check[k]) for k in ("precision", "recall", "f1"))
    scores["seqeval_agrees"] = scores["seqeval_max_abs_diff"] <= AGREEMENT_TOLERANCE
    scores["sentence_counts"] = counts
    return scores
