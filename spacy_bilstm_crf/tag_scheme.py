"""Entity tag schemes: names, tag inventories, allowed transitions, spans <-> tags.

The one place in the package that knows how tags encode entities. It imports
neither torch nor Thinc nor spaCy (numpy only), so the converter, the
component, the CRF layer and the benchmarks all share it.

Schemes (``X`` is an entity label, ``O`` is outside any entity):

* ``BIO`` (IOB2): ``B-X`` opens an entity, ``I-X`` continues it.
* ``IOB1``: ``I-X`` opens an entity too; ``B-X`` only opens one that directly
  follows an entity of the same label.
* ``BILUO``: ``B-X`` begin, ``I-X`` inside, ``L-X`` last, ``U-X`` unit (a
  one-token entity). The scheme spaCy uses internally.
* ``BIOES``: as BILUO, with ``E-X`` (end) and ``S-X`` (single).
* ``BMES``: as BIOES, with ``M-X`` (middle) for inside.

Names are case-insensitive; ``IOB2``, ``BILOU`` and ``IOBES`` are accepted as
spellings of ``BIO``, ``BILUO`` and ``BIOES``. When reading, BILUO and BIOES
accept each other's last and unit prefixes (``E``/``L``, ``S``/``U``).

Reading tags (:func:`tags_to_spans`) is strict by default: an ill-formed
sequence raises :class:`TagSequenceError` naming the position, the tag and the
kind of problem. With ``lenient=True`` it is repaired and each repair is
recorded as a :class:`Repair`. The kinds:

* ``unknown_tag``: neither ``O`` nor PREFIX-LABEL with a prefix of the scheme.
  Lenient: read as ``O``.
* ``orphan_continuation``: an inside or last tag (``I-``, ``M-``, ``L-``,
  ``E-``) that continues no open entity of its label. Lenient: it opens a new
  entity (an orphan last tag is a one-token entity); so in BIO an ``I-X``
  after ``O`` reads as ``B-X``.
* ``misplaced_begin`` (IOB1): ``B-X`` not directly after an entity of label
  ``X``. Lenient: it opens a new entity.
* ``unclosed_entity`` (BILUO, BIOES, BMES): an entity not closed by its last
  tag before ``O``, a new entity or the end. Lenient: the entity ends at the
  last token of its run.
* ``split_entity_tail`` (BILUO, BIOES, BMES; lenient only): the sentence opens
  with continuation tags of label ``X`` while the previous sentence ended with
  an entity of label ``X`` (``after_entity``): a sentence split cut one entity
  in two and its head was read in the previous sentence. That opening run (up
  to and including its last tag) is read as ``O`` so the entity counts once.
"""

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy

OUTSIDE = "O"
Span = Tuple[int, int, str]
"""An entity: (start token, end token exclusive, label)."""

# Roles of a tag in an entity.
BEGIN, INSIDE, LAST, UNIT = "begin", "inside", "last", "unit"
_START, _END = "<start>", "<end>"

REPAIR_KINDS: Tuple[str, ...] = (
    "malformed_line",
    "unknown_tag",
    "orphan_continuation",
    "misplaced_begin",
    "unclosed_entity",
    "split_entity_tail",
)


@dataclass(frozen=True)
class Scheme:
    """A tag scheme: its canonical name and the prefix of each role.

    ``prefixes`` is the order of a label's tags in the tag inventory. Schemes
    without last/unit prefixes (BIO, IOB1) are *open*: an entity ends where
    the next tag does not continue it.
    """

    name: str
    prefixes: Tuple[str, ...]
    begin: str
    inside: str
    last: Optional[str] = None
    unit: Optional[str] = None
    synonyms: Tuple[Tuple[str, str], ...] = ()  # extra prefixes accepted when reading

    @property
    def closed(self) -> bool:
        """Whether entities end with an explicit last or unit tag."""
        return self.last is not None

    def role(self, prefix: str) -> Optional[str]:
        """The role of ``prefix`` when reading, or None if it is not one of the scheme's."""
        for role, own in ((BEGIN, self.begin), (INSIDE, self.inside), (LAST, self.last), (UNIT, self.unit)):
            if prefix == own:
                return role
        return dict(self.synonyms).get(prefix)

    def prefix(self, role: str) -> str:
        """The prefix written for ``role`` (BIO and IOB1 write inside for last, begin for unit)."""
        if role == LAST:
            return self.last or self.inside
        if role == UNIT:
            return self.unit or self.begin
        return self.begin if role == BEGIN else self.inside

    def __str__(self) -> str:
        return self.name


SCHEMES: Dict[str, Scheme] = {
    scheme.name: scheme
    for scheme in (
        Scheme("BIO", ("B", "I"), "B", "I"),
        Scheme("IOB1", ("B", "I"), "B", "I"),
        Scheme("BILUO", ("B", "I", "L", "U"), "B", "I", "L", "U", (("E", LAST), ("S", UNIT))),
        Scheme("BIOES", ("B", "I", "E", "S"), "B", "I", "E", "S", (("L", LAST), ("U", UNIT))),
        Scheme("BMES", ("B", "M", "E", "S"), "B", "M", "E", "S"),
    )
}
ALIASES: Dict[str, str] = {"IOB2": "BIO", "BILOU": "BILUO", "IOBES": "BIOES"}
SCHEME_NAMES: Tuple[str, ...] = tuple(SCHEMES)


class TagSequenceError(ValueError):
    """An ill-formed tag sequence: ``index``, ``tag`` and ``kind`` say where and what."""

    def __init__(self, detail: str, *, index: int, tag: str, kind: str) -> None:
        self.detail = detail
        self.index = index
        self.tag = tag
        self.kind = kind
        super().__init__(f"position {index}: {detail}")


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


def get_scheme(name: Union[str, Scheme]) -> Scheme:
    """The scheme called ``name`` (any case, or an accepted spelling); a
    ValueError names the valid ones otherwise."""
    if isinstance(name, Scheme):
        return name
    if isinstance(name, str):
        key = name.upper()
        key = ALIASES.get(key, key)
        if key in SCHEMES:
            return SCHEMES[key]
    valid = ", ".join(SCHEME_NAMES)
    spellings = ", ".join(f"{alias} for {target}" for alias, target in ALIASES.items())
    raise ValueError(f"Unknown tag scheme {name!r}: expected one of {valid} (any case; also {spellings}).")


def scheme_name(name: Union[str, Scheme]) -> str:
    """The canonical name of a scheme, e.g. ``"bilou"`` -> ``"BILUO"``."""
    return get_scheme(name).name


# Characters no label may hold. Labels reach HTML (displaCy's pages too, which
# do not escape them) and terminals, and a saved label comes from whoever made
# the pipeline: markup and quotes, and in _UNSAFE_CATEGORIES control (escape
# sequences), format (invisible and bidirectional overrides) and surrogate
# characters.
LABEL_FORBIDDEN = frozenset("<>&\"'`")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def validate_label(label: object) -> str:
    """Return the label, or raise a ValueError if it cannot name an entity:
    labels are non-empty strings without whitespace, control or format
    characters, or any of ``< > & " ' ```."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"Entity labels must be non-empty strings, got {label!r}.")
    problem = _label_problem(label)
    if problem:
        raise ValueError(f"Entity label {label!r} holds {problem}")
    return label


@lru_cache(maxsize=1024)
def _label_problem(label: str) -> str:
    """What is wrong with a non-empty string as a label; "" if nothing (cached:
    labels are checked in prediction too)."""
    if label != label.strip() or any(ch.isspace() for ch in label):
        return "whitespace."
    for ch in label:
        if ch in LABEL_FORBIDDEN or unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            kind = "the character" if ch in LABEL_FORBIDDEN else f"the {unicodedata.category(ch)} character"
            return (
                f"{kind} {ch!r} (U+{ord(ch):04X}): labels may not hold control or format characters, "
                "nor any of < > & \" ' `, as they reach HTML pages and terminals."
            )
    return ""


def split_tag(tag: str) -> Tuple[str, Optional[str]]:
    """Split ``"B-PER"`` into ``("B", "PER")`` and ``"O"`` into ``("O", None)``."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, label = tag.partition("-")
    if not sep or not prefix or not label:
        raise ValueError(f"Malformed tag {tag!r}: expected 'O' or PREFIX-LABEL.")
    return prefix, label


def join_tag(prefix: str, label: Optional[str]) -> str:
    """``join_tag("B", "PER") == "B-PER"``; ``join_tag("O", None) == "O"``."""
    return OUTSIDE if prefix == OUTSIDE or label is None else f"{prefix}-{label}"


def make_tags(labels: Iterable[str], scheme: Union[str, Scheme]) -> List[str]:
    """The tag inventory for ``labels``: ``O`` first (tag 0), then each label's
    tags in the order of the scheme's prefixes."""
    prefixes = get_scheme(scheme).prefixes
    return [OUTSIDE] + [f"{prefix}-{label}" for label in labels for prefix in prefixes]


@lru_cache(maxsize=64)
def tag_index(labels: Tuple[str, ...], scheme: str) -> Dict[str, int]:
    """Tag -> id in ``make_tags(labels, scheme)``; cached, as it is asked per doc."""
    return {tag: i for i, tag in enumerate(make_tags(labels, scheme))}


def _parse(tag: str, scheme: Scheme) -> Tuple[str, Optional[str]]:
    """(role, label) of a tag; role ``O`` for outside. ValueError if unknown."""
    prefix, label = split_tag(tag)
    if prefix == OUTSIDE:
        return OUTSIDE, None
    role = scheme.role(prefix)
    if role is None:
        raise ValueError(f"Tag {tag!r} is not a {scheme.name} tag.")
    return role, label


def _is_allowed(scheme: Scheme, prev: Tuple[str, Optional[str]], curr: Tuple[str, Optional[str]]) -> bool:
    """Whether tag ``curr`` may follow tag ``prev`` (each a (role, label));
    the roles ``_START`` and ``_END`` stand for the sequence's boundaries."""
    (prev_role, prev_label), (curr_role, curr_label) = prev, curr
    same_entity = prev_role in (BEGIN, INSIDE) and prev_label == curr_label
    if scheme.closed:
        open_entity = prev_role in (BEGIN, INSIDE)
        if curr_role in (INSIDE, LAST):
            return same_entity
        return not open_entity  # O, begin, unit and the end close nothing
    if scheme.name == "IOB1":
        # I- opens or continues; B- only opens an entity right after one of its label.
        return same_entity if curr_role == BEGIN else True
    return same_entity if curr_role == INSIDE else True  # BIO


def allowed_transitions(
    tags: Sequence[str], scheme: Union[str, Scheme]
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Boolean masks of the transitions a well-formed tag sequence may take.

    Returns ``(transitions, start, end)`` of shapes (K, K), (K,), (K,):
    ``transitions[i, j]`` says whether tag ``j`` may follow tag ``i``,
    ``start[j]`` whether a sequence may begin with tag ``j`` and ``end[i]``
    whether it may end with tag ``i``.
    """
    spec = get_scheme(scheme)
    parsed = [_parse(tag, spec) for tag in tags]
    n_tags = len(tags)
    transitions = numpy.zeros((n_tags, n_tags), dtype=bool)
    start = numpy.zeros((n_tags,), dtype=bool)
    end = numpy.zeros((n_tags,), dtype=bool)
    for j, curr in enumerate(parsed):
        start[j] = _is_allowed(spec, (_START, None), curr)
        end[j] = _is_allowed(spec, curr, (_END, None))
        for i, prev in enumerate(parsed):
            transitions[i, j] = _is_allowed(spec, prev, curr)
    return transitions, start, end


def continuation_tags(tags: Sequence[str], scheme: Union[str, Scheme]) -> numpy.ndarray:
    """(K,) bool: the tags that continue an open entity and so cannot stand
    where an entity must not go on (after a fixed entity, at a sentence start)."""
    spec = get_scheme(scheme)
    return numpy.array([_parse(tag, spec)[0] in (INSIDE, LAST) for tag in tags], dtype=bool)


def is_valid_sequence(tags: Sequence[str], scheme: Union[str, Scheme]) -> bool:
    """Whether ``tags`` is a well-formed sequence under ``scheme``."""
    try:
        tags_to_spans(tags, scheme)
    except (TagSequenceError, ValueError):
        return False
    return True


class _Reader:
    """Reads one sentence's tags; raises on a problem or records a repair."""

    def __init__(self, tags: Sequence[str], scheme: Scheme, lenient: bool, repairs: Optional[List[Repair]]) -> None:
        self.tags = tags
        self.scheme = scheme
        self.lenient = lenient
        self.repairs = repairs

    def problem(self, kind: str, index: int, detail: str) -> None:
        tag = self.tags[index]
        if not self.lenient:
            raise TagSequenceError(detail, index=index, tag=tag, kind=kind)
        if self.repairs is not None:
            self.repairs.append(Repair(kind=kind, tag=tag, detail=detail, index=index))

    def parse(self) -> List[Tuple[str, str]]:
        """(role, label) per token; role ``O`` for outside and unknown tags."""
        parsed: List[Tuple[str, str]] = []
        for i, tag in enumerate(self.tags):
            if tag == OUTSIDE:
                parsed.append((OUTSIDE, ""))
                continue
            prefix, sep, label = tag.partition("-")
            role = self.scheme.role(prefix) if sep and label else None
            if role is None:
                accepted = ", ".join(f"{p}-" for p in self.scheme.prefixes)
                self.problem(
                    "unknown_tag",
                    i,
                    f"unknown tag {tag!r}: {self.scheme.name} tags are O or {accepted} followed by a label",
                )
                parsed.append((OUTSIDE, ""))
            else:
                parsed.append((role, label))
        return parsed

    def previous(self, index: int) -> str:
        return "the sentence start" if index == 0 else repr(self.tags[index - 1])


def tags_to_spans(
    tags: Sequence[str],
    scheme: Union[str, Scheme],
    *,
    lenient: bool = False,
    repairs: Optional[List[Repair]] = None,
    after_entity: Optional[str] = None,
) -> List[Span]:
    """Entity spans of one sentence's ``tags`` read in ``scheme``.

    Ill-formed input raises :class:`TagSequenceError`; with ``lenient=True``
    it is repaired as the module docstring says and a :class:`Repair` is
    appended to ``repairs``. ``after_entity`` is the label of the entity the
    previous sentence of the same document ended with, if any.
    """
    spec = get_scheme(scheme)
    reader = _Reader(tags, spec, lenient, repairs)
    parsed = reader.parse()
    if spec.closed:
        return _closed_spans(reader, parsed, after_entity)
    return _open_spans(reader, parsed)


def _open_spans(reader: _Reader, parsed: List[Tuple[str, str]]) -> List[Span]:
    """BIO and IOB1: an entity runs until a tag that does not continue it."""
    iob1 = reader.scheme.name == "IOB1"
    spans: List[Span] = []
    start, label = -1, ""
    for i, (role, kind) in enumerate(parsed):
        if role == OUTSIDE:
            if start >= 0:
                spans.append((start, i, label))
                start = -1
            continue
        continues = start >= 0 and kind == label
        if role == INSIDE and continues:
            continue
        if role == INSIDE and not iob1:
            reader.problem(
                "orphan_continuation",
                i,
                f"{reader.tags[i]!r} does not continue an entity (it follows {reader.previous(i)}); "
                f"in BIO an entity starts with B-{kind} (lenient mode reads it as B-{kind}; "
                "for IOB1 data use scheme IOB1)",
            )
        if role == BEGIN and iob1 and not continues:
            reader.problem(
                "misplaced_begin",
                i,
                f"{reader.tags[i]!r} follows {reader.previous(i)}; in IOB1 an entity starts with "
                f"I-{kind}, and B-{kind} only directly after another {kind} entity (lenient mode "
                "starts a new entity there; for IOB2 data use scheme BIO)",
            )
        if start >= 0:
            spans.append((start, i, label))
        start, label = i, kind
    if start >= 0:
        spans.append((start, len(parsed), label))
    return spans


def _split_tail_end(parsed: List[Tuple[str, str]], label: str) -> int:
    """End of the opening run of continuation tags of label ``label``."""
    j = 0
    while j < len(parsed) and parsed[j][0] in (INSIDE, LAST) and parsed[j][1] == label:
        j += 1
        if parsed[j - 1][0] == LAST:
            break
    return j


def _closed_spans(reader: _Reader, parsed: List[Tuple[str, str]], after_entity: Optional[str]) -> List[Span]:
    """BILUO, BIOES and BMES: an entity is closed by its last tag."""
    closer = reader.scheme.prefix(LAST)
    spans: List[Span] = []
    first = 0
    if after_entity and parsed and parsed[0][0] in (INSIDE, LAST) and parsed[0][1] == after_entity:
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
        reader.problem(
            "unclosed_entity",
            i,
            f"{reader.tags[i]!r} cannot follow {reader.tags[i - 1]!r}: the entity opened "
            f"by {reader.tags[start]!r} must first be closed by {closer}-{label} "
            f"(lenient mode ends it at {reader.tags[i - 1]!r})",
        )
        spans.append((start, i, label))

    for i in range(first, len(parsed)):
        role, kind = parsed[i]
        if role == OUTSIDE:
            if start >= 0:
                close_open(i)
                start = -1
            continue
        if role in (BEGIN, UNIT):
            if start >= 0:
                close_open(i)
            if role == UNIT:
                spans.append((i, i + 1, kind))
                start = -1
            else:
                start, label = i, kind
            continue
        if start >= 0 and kind == label:
            if role == LAST:
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
        if role == LAST:
            spans.append((i, i + 1, kind))
        else:
            start, label = i, kind
    if start >= 0:
        last = len(parsed) - 1
        reader.problem(
            "unclosed_entity",
            last,
            f"the sequence ends at {reader.tags[last]!r} inside the entity opened by "
            f"{reader.tags[start]!r}, which must be closed by {closer}-{label} "
            "(lenient mode ends it at the last token)",
        )
        spans.append((start, len(parsed), label))
    return spans


def spans_to_tags(length: int, spans: Iterable[Span], scheme: Union[str, Scheme]) -> List[str]:
    """Tags in ``scheme`` for ``length`` tokens with non-overlapping ``spans``.

    Raises ValueError for a span outside ``0..length``, overlapping spans and
    labels that are empty or hold whitespace.
    """
    spec = get_scheme(scheme)
    tags = [OUTSIDE] * length
    prev_end, prev_label = -1, ""
    for start, end, label in sorted(spans):
        if not 0 <= start < end <= length:
            raise ValueError(f"Entity span ({start}, {end}, {label!r}) is outside 0..{length}.")
        if start < prev_end:
            raise ValueError(f"Entity span ({start}, {end}, {label!r}) overlaps the previous span.")
        validate_label(label)
        if end - start == 1 and spec.closed:
            tags[start] = f"{spec.prefix(UNIT)}-{label}"
        else:
            first = spec.begin
            if spec.name == "IOB1" and not (start == prev_end and label == prev_label):
                first = spec.inside
            tags[start] = f"{first}-{label}"
            for i in range(start + 1, end - 1):
                tags[i] = f"{spec.inside}-{label}"
            if end - start > 1:
                tags[end - 1] = f"{spec.prefix(LAST)}-{label}"
        prev_end, prev_label = end, label
    return tags


def convert_biluo(tags: Sequence[Optional[str]], scheme: Union[str, Scheme]) -> List[Optional[str]]:
    """Rewrite a BILUO tag sequence (as spaCy's ``Example.get_aligned_ner``
    gives it; None, ``""`` or ``"-"`` where the annotation is missing, kept as
    None) in ``scheme``. In IOB1 an entity opens with ``I-`` unless it directly
    follows one of the same label."""
    spec = get_scheme(scheme)
    biluo = SCHEMES["BILUO"]
    out: List[Optional[str]] = []
    prev_role, prev_label = OUTSIDE, None
    for tag in tags:
        if tag in (None, "", "-"):
            out.append(None)
            prev_role, prev_label = OUTSIDE, None
            continue
        role, label = _parse(str(tag), biluo)
        if role == OUTSIDE:
            out.append(OUTSIDE)
        elif spec.name == "IOB1" and role in (BEGIN, UNIT):
            adjacent = prev_role in (LAST, UNIT) and prev_label == label
            out.append(join_tag(spec.begin if adjacent else spec.inside, label))
        else:
            out.append(join_tag(spec.prefix(role), label))
        prev_role, prev_label = role, label
    return out


def detect_scheme(tag_sequences: Iterable[Union[str, Sequence[str]]]) -> str:
    """Guess the scheme from tags: one sentence's tags, or a list of sentences.

    ``M-`` => BMES; ``E-``/``S-`` => BIOES (BILUO when only ``L-``/``U-``);
    otherwise IOB1 when some ``I-X`` opens an entity and every ``B-X`` directly
    follows an ``X`` entity, else BIO (IOB2, possibly with IOB1 leftovers that
    strict reading reports as ``orphan_continuation``). Tags that are not
    PREFIX-LABEL are ignored here.
    """
    items = list(tag_sequences)
    sequences: List[Sequence[str]]
    if items and all(isinstance(item, str) for item in items):
        sequences = [items]  # type: ignore[list-item]
    else:
        sequences = items  # type: ignore[assignment]
    prefixes = set()
    i_opens = b_opens = False
    for tags in sequences:
        prev_label = ""
        for tag in tags:
            if len(tag) < 3 or tag[1] != "-":
                prev_label = ""
                continue
            prefix, label = tag[0], tag[2:]
            prefixes.add(prefix)
            if prefix == "I" and label != prev_label:
                i_opens = True
            if prefix == "B" and label != prev_label:
                b_opens = True
            prev_label = label
    if "M" in prefixes:
        return "BMES"
    if prefixes & {"E", "S"}:
        return "BIOES"
    if prefixes & {"L", "U"}:
        return "BILUO"
    return "IOB1" if i_opens and not b_opens else "BIO"


def count_labels(spans: Iterable[Span], counts: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """Add the number of spans per label to ``counts`` (a new dict by default)."""
    result: Dict[str, int] = {} if counts is None else counts
    for _, _, label in spans:
        result[label] = result.get(label, 0) + 1
    return result


def entity_tags(length: int, label: str, scheme: Union[str, Scheme]) -> List[str]:
    """The tags of one entity of ``length`` tokens, e.g. ``B-X I-X L-X`` (BILUO) or ``B-X I-X I-X`` (BIO)."""
    return spans_to_tags(length, [(0, length, label)], scheme)


def candidate_spans(
    marginals: numpy.ndarray, tags: Sequence[str], scheme: Union[str, Scheme], threshold: float
) -> List[Span]:
    """The spans that may be entities with probability >= ``threshold``,
    given the token marginals ``marginals`` (T, K) over ``tags``.

    A span (s, e, X) is an entity only if every token s..e-1 takes its tag of
    :func:`entity_tags` and token e does not continue it, so its probability
    is at most the smallest of those tokens' marginals (and of one minus the
    marginal that token e continues it). This returns every span whose bound
    is >= ``threshold``: no span that reaches the threshold is missed. Each
    begin (or unit) tag whose marginal reaches the threshold is extended
    while the inside marginals stay at or above it, so the cost is the number
    of such starts times the length of their runs, not T squared.
    """
    spec = get_scheme(scheme)
    probs = numpy.asarray(marginals, dtype="float64")
    n_tokens = len(probs)
    if probs.ndim != 2 or probs.shape[1] != len(tags):
        raise ValueError(f"Marginals of shape {probs.shape} do not match {len(tags)} tags.")
    index = {tag: i for i, tag in enumerate(tags)}
    labels = list(dict.fromkeys(label for _, label in map(split_tag, tags) if label is not None))
    floor = threshold - 1e-6  # the bound is a sum of floats: do not lose a span to rounding
    spans: List[Span] = []
    for label in labels:
        begin, inside = index[join_tag(spec.begin, label)], index[join_tag(spec.inside, label)]
        last, unit = index[join_tag(spec.prefix(LAST), label)], index[join_tag(spec.prefix(UNIT), label)]
        continuing = sorted({inside, last})
        ended = numpy.ones(n_tokens + 1)  # ended[t]: P(token t does not continue an entity of label)
        ended[:n_tokens] = 1.0 - probs[:, continuing].sum(axis=1)
        starts = numpy.nonzero(numpy.maximum(probs[:, begin], probs[:, unit]) >= floor)[0]
        for start in starts.tolist():
            if probs[start, unit] >= floor and ended[start + 1] >= floor:
                spans.append((start, start + 1, label))
            if probs[start, begin] < floor:
                continue
            for stop in range(start + 1, n_tokens):  # token ``stop`` is the span's last
                if probs[stop, last] >= floor and ended[stop + 1] >= floor:
                    spans.append((start, stop + 1, label))
                if probs[stop, inside] < floor:
                    break
    return sorted(set(spans))
