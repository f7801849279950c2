"""The pipeline that annotates: loading it, in this process or in a worker,
and the entities of the docs it makes as output records."""

from typing import Any, Dict, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc

from .records import RecordId

CONFIDENCE_DIGITS = 6


def doc_entities(doc: Doc, spans_key: Optional[str] = None) -> List[Dict[str, Any]]:
    """``doc.ents`` as {start, end (character offsets), label, text}. With
    ``spans_key``, each gets the ``confidence`` of the span in
    ``doc.spans[spans_key]`` with the same tokens and label (its
    ``attrs["scores"]`` entry, rounded to 6 digits), or null if there is none."""
    entities: List[Dict[str, Any]] = [
        {"start": ent.start_char, "end": ent.end_char, "label": ent.label_, "text": ent.text} for ent in doc.ents
    ]
    if spans_key is not None:
        scores = span_scores(doc, spans_key)
        for entity, ent in zip(entities, doc.ents):
            score = scores.get((ent.start, ent.end, ent.label_))
            entity["confidence"] = None if score is None else round(score, CONFIDENCE_DIGITS)
    return entities


def span_scores(doc: Doc, spans_key: str) -> Dict[Tuple[int, int, str], float]:
    """(start token, end token, label) -> score of the scored spans under ``spans_key``."""
    if spans_key not in doc.spans:
        raise ValueError(
            f"--spans-key {spans_key!r}: the pipeline set no doc.spans[{spans_key!r}] "
            f"(keys set: {', '.join(sorted(doc.spans)) or 'none'})"
        )
    group = doc.spans[spans_key]
    scores = group.attrs.get("scores")
    if scores is None:
        raise ValueError(f"--spans-key {spans_key!r}: doc.spans[{spans_key!r}] has no attrs['scores']")
    if len(scores) != len(group):
        raise ValueError(f"--spans-key {spans_key!r}: {len(group)} spans but {len(scores)} scores")
    return {(span.start, span.end, span.label_): float(score) for span, score in zip(group, scores)}


def output_record(id_field: str, record_id: RecordId, entities: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One line (or row) of the output."""
    return {id_field: record_id, "entities": entities}


def load_pipeline(model: str, code: Optional[str] = None, gpu: bool = False) -> Language:
    """``spacy.load(model)``, after importing ``code`` (a Python file that
    registers custom components) and, with ``gpu``, ``spacy.require_gpu()``."""
    import spacy

    if code is not None:
        spacy.util.import_file("annotate_code", code)
    if gpu:
        spacy.require_gpu()
    return spacy.load(model)
