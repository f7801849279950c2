"""Entity tag schemes: detection, tags -> spans and spans -> tags.

Supported schemes (``TYPE`` is the entity label, ``O`` is outside):

* ``bio`` (IOB2): ``B-`` starts an entity, ``I-`` continues it.
* ``iob1``: ``I-`` also starts an entity when it follows ``O``, another type
  or the sentence start; ``B-`` always starts one (in pure IOB1 only between
  two adjacent entities of one type).
* ``bioes``: ``B-`` begin, ``I-`` inside, ``E-`` end, ``S-`` single token.
* ``bilou``: like ``bioes`` with ``L-`` (last) and ``U-`` (unit). Both
  readers accept ``E-``/``L-`` and ``S-``/``U-`` as synonyms.
* ``bmes``: ``B-`` begin, ``M-`` middle, ``E-`` end, ``S-`` single token.

Problems (each has a *kind*, used both for errors and repair counts):

* ``unknown_tag``: neither ``O`` nor PREFIX-TYPE with a prefix of the scheme.
  Lenient: read as ``O``.
* ``orphan_continuation``: ``I-``/``M-``/``E-``/``L-`` that continues no open
  entity of its type. Lenient: it starts a new entity (an orphan ``E-``/``L-``
  is a one-token entity), so an ``I-X`` after ``O`` in ``bio`` reads as ``B-X``.
* ``unclosed_entity`` (``bioes``/``bilou``/``bmes``): an entity not closed by
  ``E-``/``L-`` before ``O``, a new entity or the sentence end. Lenient: the
  entity ends at the last token of its ``B-``/``I-``/``M-`` run.
* ``split_entity_tail`` (``bioes``/``bilou``/``bmes``, lenient only): the
  sentence opens with continuation tags of type X while the previous sentence
  ended inside/with an entity of type X (``after_entity``): a sentence split
  cut one entity in two and its head was already read in the previous
  sentence. That opening run (up to and including its ``E-``/``L-``) is read
  as ``O`` so the entity is counted once. (The MSRA corpus has such cuts.)
"""

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

Span = Tuple[int, int, str]
"""An entity: (start token, end token exclusive, label)."""

SCHEMES: Tuple[str, ...] = ("bio", "iob1", "bioes", "bilou", "bmes")
REPAIR_KINDS: Tuple[str, ...] = (
    "malformed_line",
    "unknown_tag",
    "orphan_continuation",
    "unclosed_entity",
    "split_entity_tail",
)

_BEGIN, _INSIDE, _END, _SINGLE = "begin", "inside", "end", "single"
_BIES_ROLES = {"B": _BEGIN, "I": _INSIDE, "E": _END, "L": _END, "S": _SINGLE, "U": _SINGLE}
_ROLES: Dict[str, Dict[str, str]] = {
    "bio": {"B": _BEGIN, "I": _INSIDE},
    "iob1": {"B": _BEGIN, "I": _INSIDE},
    "bioes": _BIES_ROLES,
    "bilou": _BIES_ROLES,
    "bmes": {"B": _BEGIN, "M": _INSIDE, "E": _END, "S": _SINGLE},
}
# Prefixes written by spans_to_tags: (begin, inside, end, single).
_WRITE: Dict[str, Tuple[str, str, str, str]] = {
    "bio": ("B", "I", "I", "B"),
    "iob1": ("B", "I", "I", "B"),
    "bioes": ("B", "I", "E", "S"),
    "bilou": ("B", "I", "L", "U"),
    "bmes": ("B", "M", "E", "S"),
}


class ConversionError(ValueError):
    """Bad input data. ``str()`` names the file and 1-based line when known."""

    def __init__(
        self,
        detail: str,
        *,
        path: Optional[str] = None,
        line: Optional[int] = None,
        tag: Optional[str] = None,
        kind: Optional[str] = None,
        index: Optional[int] = None,
    ) -> None:
        self.detail = detail
        self.path = path
        self.line = line
        self.tag = tag
        self.kind = kind
        self.index = index
        where = ""
        if path is not None:
            where = f"{path}, line {line}: " if line is not None else f"{path}: "
        super().__init__(where + detail)


@dataclass(frozen=True)
class Repair:
    """One lenient repair: its kind, the tag (or line text) and where."""

    kind: str
    tag: str
    detail: str
    index: int = -1
    line: int = 0
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.path}, line {self.line}: " if self.path else ""
        return f"{where}[{self.kind}] {self.detail}"


def check_scheme(scheme: str) -> str:
    """Return ``scheme`` lower-cased, or raise ValueError naming the valid ones."""
    name = scheme.lower()
    if name == "biluo":
        name = "bilou"
    if name == "iob2":
        name = "bio"
    if name not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    return name


def detect_scheme(tag_sequences: Iterable[Union[str, Sequence[str]]]) -> str:
    """Guess the scheme from tags: one sentence's tags, or a list of sentences.

    ``M-`` => ``bmes``; ``E-``/``S-``/``L-``/``U-`` => ``bioes`` (``bilou`` when
    only ``L-``/``U-``); else ``iob1`` if some ``I-X`` opens an entity (after
    ``O``, another type or at sentence start), else ``bio``. Tags that are not
    PREFIX-TYPE are ignored here.
    """
    items = list(tag_sequences)
    sequences: List[Sequence[str]]
    if items and all(isinstance(item, str) for item in items):
        sequences = [items]  # type: ignore[list-item]
    else:
        sequences = items  # type: ignore[assignment]
    prefixes: Set[str] = set()
    i_opens = False
    for tags in sequences:
        prev_type = ""
        for tag in tags:
            if len(tag) < 3 or tag[1] != "-":
                prev_type = ""
                continue
            prefix, label = tag[0], tag[2:]
            prefixes.add(prefix)
            if prefix == "I" and label != prev_type:
                i_opens = True
            prev_type = label
    if "M" in prefixes:
        return "bmes"
    if prefixes & {"E", "S"}:
        return "bioes"
    if prefixes & {"L", "U"}:
        return "bilou"
    return "iob1" if i_opens else "bio"


def _describe_prefixes(scheme: str) -> str:
    return ", ".join(f"{p}-" for p in _ROLES[scheme])


class _Reader:
    """State shared while reading one sentence: raise or record problems."""

    def __init__(self, tags: Sequence[str], scheme: str, lenient: bool, repairs: Optional[List[Repair]]) -> None:
        self.tags = tags
        self.scheme = scheme
        self.lenient = lenient
        self.repairs = repairs

    def problem(self, kind: str, index: int, detail: str) -> None:
        tag = self.tags[index]
        if not self.lenient:
            raise ConversionError(detail, tag=tag, kind=kind, index=index)
        if self.repairs is not None:
            self.repairs.append(Repair(kind=kind, tag=tag, detail=detail, index=index))

    def parse(self) -> List[Tuple[str, str]]:
        """(role, type) per token; role ``"O"`` for outside."""
        roles = _ROLES[self.scheme]
        parsed: List[Tuple[str, str]] = []
        for i, tag in enumerate(self.tags):
            if tag == "O":
                parsed.append(("O", ""))
                continue
            role = roles.get(tag[0]) if len(tag) > 2 and tag[1] == "-" else None
            if role is None:
                self.problem(
                    "unknown_tag",
                    i,
                    f"unknown tag {tag!r}: {self.scheme} tags are O or "
                    f"{_describe_prefixes(self.scheme)} followed by a type",
                )
                parsed.append(("O", ""))
            else:
                parsed.append((role, tag[2:]))
        return parsed

    def previous(self, index: int) -> str:
        return "the sentence start" if index == 0 else repr(self.tags[index - 1])


def tags_to_spans(
    tags: Sequence[str],
    scheme: str,
    *,
    lenient: bool = False,
    repairs: Optional[List[Repair]] = None,
    after_entity: Optional[str] = None,
) -> List[Span]:
    """Entity spans of one sentence's ``tags`` read in ``scheme``.

    Ill-formed input raises :class:`ConversionError` (with ``index``, ``tag``
    and ``kind`` set); with ``lenient=True`` it is repaired as described in
    the module docstring and a :class:`Repair` is appended to ``repairs``.
    ``after_entity`` is the type of the entity the previous sentence of the
    same document ended with, if any (see ``split_entity_tail``).
    """
    name = check_scheme(scheme)
    reader = _Reader(tags, name, lenient, repairs)
    parsed = reader.parse()
    if name in ("bio", "iob1"):
        return _bio_spans(reader, parsed, iob1=name == "iob1")
    return _bies_spans(reader, parsed, after_entity)


def _bio_spans(reader: _Reader, parsed: List[Tuple[str, str]], iob1: bool) -> List[Span]:
    spans: List[Span] = []
    start, label = -1, ""
    for i, (role, kind) in enumerate(parsed):
        if role == "O":
            if start >= 0:
                spans.append((start, i, label))
                start = -1
            continue
        if role == _INSIDE and start >= 0 and kind == label:
            continue
        if role == _INSIDE and not iob1:
            reader.problem(
                "orphan_continuation",
                i,
                f"{reader.tags[i]!r} does not continue an entity (it follows "
                f"{reader.previous(i)}); in BIO an entity starts with B-{kind} "
                f"(lenient mode reads it as B-{kind}; IOB1 data: use scheme iob1)",
            )
        if start >= 0:
            spans.append((start, i, label))
        start, label = i, kind
    if start >= 0:
        spans.append((start, len(parsed), label))
    return spans


def _split_tail_end(parsed: List[Tuple[str, str]], label: str) -> int:
    """End of the opening run of continuation tags of type ``label``."""
    j = 0
    while j < len(parsed) and parsed[j][0] in (_INSIDE, _END) and parsed[j][1] == label:
        j += 1
        if parsed[j - 1][0] == _END:
            break
    return j


def _bies_spans(reader: _Reader, parsed: List[Tuple[str, str]], after_entity: Optional[str]) -> List[Span]:
    closer = _WRITE[reader.scheme][2]
    spans: List[Span] = []
    first = 0
    if after_entity and parsed and parsed[0][0] in (_INSIDE, _END) and parsed[0][1] == after_entity:
        if reader.lenient:
            first = _split_tail_end(parsed, after_entity)
            reader.problem(
                "split_entity_tail",
                0,
                f"sentence opens with {reader.tags[0]!r}, the tail of the {after_entity} "
                f"entity that ended the previous sentence: {first} token(s) read as O",
            )
    start, label = -1, ""

    def close_open(i: int) -> None:
        opener = reader.tags[start]
        reader.problem(
            "unclosed_entity",
            i,
            f"{reader.tags[i]!r} cannot follow {reader.tags[i - 1]!r}: the entity opened "
            f"by {opener!r} must first be closed by {closer}-{label} "
            f"(lenient mode ends it at {reader.tags[i - 1]!r})",
        )
        spans.append((start, i, label))

    for i in range(first, len(parsed)):
        role, kind = parsed[i]
        if role == "O":
            if start >= 0:
                close_open(i)
                start = -1
            continue
        if role in (_BEGIN, _SINGLE):
            if start >= 0:
                close_open(i)
            if role == _SINGLE:
                spans.append((i, i + 1, kind))
                start = -1
            else:
                start, label = i, kind
            continue
        if start >= 0 and kind == label:
            if role == _END:
                spans.append((start, i + 1, label))
                start = -1
            continue
        if start >= 0:
            close_open(i)
            start = -1
        repair = "lenient mode starts a new entity there"
        if i == 0 and after_entity == kind:
            repair = (
                f"it looks like the tail of the {kind} entity that ended the previous "
                "sentence, cut by a sentence split; lenient mode reads that tail as O"
            )
        reader.problem(
            "orphan_continuation",
            i,
            f"{reader.tags[i]!r} does not continue an open {kind} entity (it follows {reader.previous(i)}); {repair}",
        )
        if role == _END:
            spans.append((i, i + 1, kind))
        else:
            start, label = i, kind
    if start >= 0:
        last = len(parsed) - 1
        reader.problem(
            "unclosed_entity",
            last,
            f"the sentence ends at {reader.tags[last]!r} inside the entity opened by "
            f"{reader.tags[start]!r}, which must be closed by {closer}-{label} "
            f"(lenient mode ends it at the last token)",
        )
        spans.append((start, len(parsed), label))
    return spans


def spans_to_tags(length: int, spans: Iterable[Span], scheme: str) -> List[str]:
    """Tags in ``scheme`` for ``length`` tokens with non-overlapping ``spans``."""
    name = check_scheme(scheme)
    begin, inside, end_prefix, single = _WRITE[name]
    tags = ["O"] * length
    prev_end, prev_label = -1, ""
    for start, end, label in sorted(spans):
        if not 0 <= start < end <= length:
            raise ValueError(f"span ({start}, {end}, {label!r}) is outside 0..{length}")
        if start < prev_end:
            raise ValueError(f"span ({start}, {end}, {label!r}) overlaps the previous span")
        if not label or any(ch.isspace() for ch in label):
            raise ValueError(f"invalid entity label {label!r}")
        first = begin
        if name == "iob1":
            first = "B" if start == prev_end and label == prev_label else "I"
        if end - start == 1 and name not in ("bio", "iob1"):
            tags[start] = f"{single}-{label}"
        else:
            tags[start] = f"{first}-{label}"
            for i in range(start + 1, end - 1):
                tags[i] = f"{inside}-{label}"
            if end - start > 1:
                tags[end - 1] = f"{end_prefix}-{label}"
        prev_end, prev_label = end, label
    return tags


def count_labels(spans: Iterable[Span], counts: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """Add the number of spans per label to ``counts`` (a new dict by default)."""
    result: Dict[str, int] = {} if counts is None else counts
    for _, _, label in spans:
        result[label] = result.get(label, 0) + 1
    return result


__all__: List[str] = [
    "SCHEMES",
    "REPAIR_KINDS",
    "ConversionError",
    "Repair",
    "Span",
    "check_scheme",
    "count_labels",
    "detect_scheme",
    "spans_to_tags",
    "tags_to_spans",
]
