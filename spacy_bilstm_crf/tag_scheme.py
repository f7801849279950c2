"""Tag schemes for CRF tagging: tag inventories, allowed transitions, spans.

A tag scheme maps a set of entity labels to per-token tags. ``BILUO`` (the
scheme spaCy uses internally) has ``B-``, ``I-``, ``L-`` and ``U-`` tags per
label; ``BIO`` has ``B-`` and ``I-``. Both have a single ``O`` tag, which is
always tag 0.
"""

from functools import lru_cache
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy

SCHEMES: Dict[str, Tuple[str, ...]] = {
    "BILUO": ("B", "I", "L", "U"),
    "BIO": ("B", "I"),
}

OUTSIDE = "O"
_BILUO_TO_BIO = {"B": "B", "I": "I", "L": "I", "U": "B"}
EntitySpan = Tuple[int, int, str]  # (start token, end token exclusive, label)


def validate_scheme(scheme: str) -> str:
    """Return the scheme name, or raise a ValueError naming the valid ones."""
    if scheme not in SCHEMES:
        valid = ", ".join(sorted(SCHEMES))
        raise ValueError(f"Unknown tag scheme {scheme!r}: expected one of {valid}.")
    return scheme


def validate_label(label: object) -> str:
    """Return the label, or raise a ValueError if it cannot name an entity."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"Entity labels must be non-empty strings, got {label!r}.")
    if label != label.strip():
        raise ValueError(f"Entity label {label!r} has leading or trailing whitespace.")
    return label


def make_tags(labels: Iterable[str], scheme: str) -> List[str]:
    """The tag inventory for ``labels``: ``O`` first, then prefixes per label."""
    prefixes = SCHEMES[validate_scheme(scheme)]
    return [OUTSIDE] + [f"{p}-{label}" for label in labels for p in prefixes]


@lru_cache(maxsize=64)
def tag_index(labels: Tuple[str, ...], scheme: str) -> Dict[str, int]:
    """Tag -> id for ``make_tags(labels, scheme)``; cached, as it is asked per doc."""
    return {tag: i for i, tag in enumerate(make_tags(labels, scheme))}


def split_tag(tag: str) -> Tuple[str, Optional[str]]:
    """Split ``"B-PER"`` into ``("B", "PER")`` and ``"O"`` into ``("O", None)``."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, label = tag.partition("-")
    if not sep or not label:
        raise ValueError(f"Malformed tag {tag!r}: expected 'O' or PREFIX-LABEL.")
    return prefix, label


def _is_allowed(scheme: str, prev: str, prev_label: Optional[str], curr: str, curr_label: Optional[str]) -> bool:
    """Whether tag ``curr`` may follow tag ``prev``; ``prev == "START"`` and
    ``curr == "END"`` stand for the sequence boundaries."""
    if scheme == "BILUO":
        opens = prev in ("START", OUTSIDE, "L", "U")  # no entity is open
        if curr == "END" or curr in (OUTSIDE, "B", "U"):
            return opens
        # I- and L- continue an open entity of the same label.
        return prev in ("B", "I") and prev_label == curr_label
    # BIO
    if curr == "END" or curr in (OUTSIDE, "B"):
        return True
    return prev in ("B", "I") and prev_label == curr_label


def allowed_transitions(tags: Sequence[str], scheme: str) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Boolean masks of the transitions a valid tag sequence may take.

    Returns ``(transitions, start, end)``: ``transitions[i, j]`` says whether
    tag ``j`` may follow tag ``i``, ``start[j]`` whether a sequence may begin
    with tag ``j`` and ``end[i]`` whether it may end with tag ``i``.
    """
    validate_scheme(scheme)
    parts = [split_tag(tag) for tag in tags]
    n_tags = len(tags)
    transitions = numpy.zeros((n_tags, n_tags), dtype=bool)
    start = numpy.zeros((n_tags,), dtype=bool)
    end = numpy.zeros((n_tags,), dtype=bool)
    for j, (curr, curr_label) in enumerate(parts):
        start[j] = _is_allowed(scheme, "START", None, curr, curr_label)
        end[j] = _is_allowed(scheme, curr, curr_label, "END", None)
        for i, (prev, prev_label) in enumerate(parts):
            transitions[i, j] = _is_allowed(scheme, prev, prev_label, curr, curr_label)
    return transitions, start, end


def is_valid_sequence(tags: Sequence[str], scheme: str) -> bool:
    """Whether ``tags`` is a well-formed sequence under ``scheme``."""
    prev, prev_label = "START", None
    for tag in tags:
        curr, curr_label = split_tag(tag)
        if curr != OUTSIDE and curr not in SCHEMES[scheme]:
            return False
        if not _is_allowed(scheme, prev, prev_label, curr, curr_label):
            return False
        prev, prev_label = curr, curr_label
    return _is_allowed(scheme, prev, prev_label, "END", None)


def tags_to_spans(tags: Sequence[str], scheme: str) -> List[EntitySpan]:
    """Entity spans of a well-formed tag sequence; raise on an ill-formed one."""
    if not is_valid_sequence(tags, scheme):
        raise ValueError(f"Ill-formed {scheme} tag sequence: {list(tags)}")
    spans: List[EntitySpan] = []
    start = 0
    for i, tag in enumerate(tags):
        prefix, label = split_tag(tag)
        if prefix in ("B", "U"):
            start = i
        ends_here = prefix in ("L", "U") or (
            scheme == "BIO" and prefix in ("B", "I") and (i + 1 == len(tags) or split_tag(tags[i + 1])[0] != "I")
        )
        if ends_here and label is not None:
            spans.append((start, i + 1, label))
    return spans


def spans_to_tags(length: int, spans: Iterable[EntitySpan], scheme: str) -> List[str]:
    """Tags for a sequence of ``length`` tokens with the given entity spans."""
    validate_scheme(scheme)
    tags = [OUTSIDE] * length
    for start, end, label in spans:
        if any(tag != OUTSIDE for tag in tags[start:end]):
            raise ValueError(f"Overlapping entity span ({start}, {end}, {label!r}).")
        if scheme == "BILUO" and end - start == 1:
            tags[start] = f"U-{label}"
            continue
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
        if scheme == "BILUO":
            tags[end - 1] = f"L-{label}"
    return tags


def biluo_to_scheme(tag: str, scheme: str) -> str:
    """Rewrite one BILUO tag in ``scheme`` (``L-`` is ``I-`` and ``U-`` is
    ``B-`` in BIO). Only valid for tags of well-formed BILUO sequences."""
    if scheme == "BILUO" or tag == OUTSIDE:
        return tag
    prefix, label = split_tag(tag)
    return f"{_BILUO_TO_BIO[prefix]}-{label}"
